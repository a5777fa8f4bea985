"""A study's grid: its config file, the runs it plans, and the filters that narrow them.

A study config (``studies/course_study.json``) names a grid in *arms*, each a product of
relations, methods, seeds and optionally learning rates and step budgets. ``plan`` expands it
into ``RunSpec``s; a run shared by two arms is planned once.
"""

import dataclasses
import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ptlib.deep_prompt import prefix_length
from ptlib.discrete import SearchConfig
from ptlib.encoders import ENCODERS
from ptlib.errors import ConfigError, TemplateError
from ptlib.lora import LoRAConfig
from ptlib.template import INPUT, parse_template
from ptlib.train_config import TrainConfig

# method name -> what runs it: the manual baseline, a discrete search, or a TrainConfig's
# (encoder, init). The manual template is chosen on dev and ignores the seed (deterministic).
# A search is (proposer, start): "token" starts every slot at SearchConfig.init_token, "manual"
# starts at the manual template chosen on dev, written as slots (ptlib.discrete.manual_start).
MANUAL = "manual"
SEARCHES = {"autoprompt": ("autoprompt", "token"), "random": ("random", "token"),
            "autoprompt_manual": ("autoprompt", "manual"), "gcg_manual": ("gcg", "manual"),
            "random_manual": ("random", "manual")}
MANUAL_PLACEHOLDER = "{manual}"  # in a named template: the manual template chosen on dev
TRAINED = {"free_normal": ("free", "normal"), "free_rescaled": ("free", "normal_rescaled"),
           "free_uniform": ("free", "uniform"), "free_vocab": ("free", "vocab"),
           "lstm": ("lstm", None), "mlp": ("mlp", None),
           "prefix": ("prefix", None), "prefix_mlp": ("prefix_mlp", None)}
# The reference rows, on the manual template chosen on dev: k solved train facts before it
# (ptlib.few_shot; the seed picks them), and LoRA through PEFT (ptlib.lora; the study's
# ``lora`` settings, its ``train`` steps, batch size and evaluation schedule).
FEW_SHOT = {"few_shot_1": 1, "few_shot_3": 3, "few_shot_8": 8}
LORA = "lora"
METHODS = (MANUAL, *SEARCHES, *TRAINED, *FEW_SHOT, LORA)
ON_MANUAL = (MANUAL, *FEW_SHOT, LORA)  # run on the manual template chosen on dev, no slots
SEARCH_ITERATIONS = 1_000_000  # a search stops on its forward budget, never on this
FILTERS = ("arm", "relation", "method", "seed", "lr", "steps", "template")  # ``only`` fields
ARM_FIELDS = {"name", "relations", "methods", "seeds", "lr", "steps", "templates"}


@dataclass(frozen=True)
class RunSpec:
    """One run of the grid. ``seed`` is None for the deterministic manual baseline; ``lr`` is
    None for every method that does not train; ``steps`` is a search's training budget."""

    relation: str
    method: str
    seed: int | None
    lr: float | None
    steps: int | None
    template: str = ""  # a name in the study's ``templates``; "" is the study's template
    arms: tuple[str, ...] = ()  # the arms that asked for this run (not part of its identity)

    @property
    def label(self) -> str:
        """E.g. ``capital_of lstm seed=3 lr=0.003 steps=60 template=manual``."""
        parts = [self.relation, self.method]
        parts += [f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"
                  for name, value in (("seed", self.seed), ("lr", self.lr),
                                      ("steps", self.steps), ("template", self.template))
                  if value not in (None, "")]
        return " ".join(parts)


@dataclass
class StudyConfig:
    """A study grid, as written in its JSON file (see ``studies/course_study.json``)."""

    name: str                  # names the study in every record
    model: str                 # ptlib.load_lm name: "smollm2-135m", "tiny", an HF id or folder
    template: str              # the slot template of every search and training method
    results: Path              # the JSON-lines results file (relative paths: to the config)
    arms: list[dict]           # each: name, relations, methods, seeds; optional lr, steps lists
    train: dict = dataclasses.field(default_factory=dict)   # TrainConfig fields for every run
    search: dict = dataclasses.field(default_factory=dict)  # SearchConfig fields for searches
    search_budget: float = 1.0  # a search's forward cap, in training runs' forwards
    templates: dict = dataclasses.field(default_factory=dict)  # name -> another slot template
    lora: dict = dataclasses.field(default_factory=dict)  # LoRAConfig fields (r, alpha, ...)
    description: str = ""

    def __post_init__(self):
        self.results = Path(self.results)
        if not self.arms:
            raise ConfigError(f"study {self.name!r}: 'arms' is empty")
        for field_name in ("seed", "encoder", "init"):
            if field_name in self.train:
                raise ConfigError(f"study {self.name!r}: 'train' may not set {field_name!r}: "
                                  "the grid decides it")
        for field_name in ("method", "seed", "max_forwards", "iterations"):
            if field_name in self.search:
                raise ConfigError(f"study {self.name!r}: 'search' may not set "
                                  f"{field_name!r}: the grid decides it")
        TrainConfig(**self.train)  # a bad field or value fails here, naming it
        SearchConfig(**self.search)
        for field_name in ("seed", "steps", "lr"):
            if field_name in self.lora:
                raise ConfigError(f"study {self.name!r}: 'lora' may not set {field_name!r}: "
                                  "the grid and 'train' decide it")
        LoRAConfig(**self.lora)
        if not (isinstance(self.search_budget, int | float) and self.search_budget > 0):
            raise ConfigError(f"study {self.name!r}: search_budget must be a positive number, "
                              f"got {self.search_budget!r}")
        names = [arm.get("name") for arm in self.arms]
        for index, arm in enumerate(self.arms):
            where = f"study {self.name!r}, arm {arm.get('name', index)!r}"
            unknown = set(arm) - ARM_FIELDS
            if unknown:
                raise ConfigError(f"{where}: unknown fields {sorted(unknown)}")
            for needed in ("name", "relations", "methods", "seeds"):
                if not arm.get(needed):
                    raise ConfigError(f"{where}: needs a non-empty {needed!r}")
            bad = [m for m in arm["methods"] if m not in METHODS]
            if bad:
                raise ConfigError(f"{where}: unknown methods {bad}; choose from {METHODS}")
            if not all(isinstance(s, int) and s >= 0 for s in arm["seeds"]):
                raise ConfigError(f"{where}: seeds must be integers >= 0, got {arm['seeds']}")
            missing = set(arm.get("templates", [])) - set(self.templates)
            if missing:
                raise ConfigError(f"{where}: templates {sorted(missing)} are not among the "
                                  f"study's named templates {sorted(self.templates)}")
            if any(ENCODERS[TRAINED[m][0]].deep for m in arm["methods"] if m in TRAINED):
                self._check_prefix_templates(arm, where)
        if len(set(names)) != len(names):
            raise ConfigError(f"study {self.name!r}: arm names repeat: {names}")

    def _check_prefix_templates(self, arm: dict, where: str) -> None:
        """An arm with deep prompts runs on prefix templates only (``{manual}`` read as the
        input it will be filled around)."""
        for name in arm.get("templates") or [""]:
            text = self.template_text(name).replace(MANUAL_PLACEHOLDER, INPUT)
            try:
                prefix_length(parse_template(text))
            except TemplateError as err:
                raise ConfigError(f"{where}: {err}") from err

    def lora_config(self, seed: int, lr: float, steps: int) -> LoRAConfig:
        """The LoRA run of the grid at ``seed``, ``lr`` and ``steps``: the study's ``lora``
        settings, and from ``train`` the fields both kinds of run share (batch size,
        evaluation schedule, patience, clipping, weight decay, precision)."""
        shared = {f.name for f in dataclasses.fields(LoRAConfig)} & set(self.train)
        fields = {k: self.train[k] for k in shared} | self.lora
        return LoRAConfig(**fields | {"seed": seed, "lr": lr, "steps": steps})

    @classmethod
    def from_file(cls, path: str | Path) -> "StudyConfig":
        """Read a study config; ``results`` is resolved against the config's folder."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"cannot read study config {path}: {err}") from err
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - fields
        if unknown:
            raise ConfigError(f"study config {path}: unknown fields {sorted(unknown)}")
        config = cls(**raw)
        if not config.results.is_absolute():
            config.results = path.parent / config.results
        return config

    def template_text(self, name: str) -> str:
        """The slot template a run named ``name`` uses ("" is the study's ``template``); it may
        hold ``{manual}``, which a run fills with the manual template chosen on dev."""
        return self.templates[name] if name else self.template

    def search_config(self, method: str, seed: int, steps: int | None = None) -> SearchConfig:
        """The ``SearchConfig`` the study runs search ``method`` (e.g. ``"gcg_manual"``) with
        at ``seed``: its ``search`` settings, the method's proposer, and a forward cap of
        ``search_budget`` times a training run of ``steps`` (default: the study's), which with
        patience is what stops it."""
        train_batch = TrainConfig(**self.train).batch_size
        trained = 3 * (steps or self.steps) * train_batch  # forward + backward (two) per fact
        proposer, _ = SEARCHES[method]
        return SearchConfig(**self.search, method=proposer, iterations=SEARCH_ITERATIONS,
                            max_forwards=round(self.search_budget * trained), seed=seed)

    @property
    def steps(self) -> int:
        return TrainConfig(**self.train).steps

    @property
    def lr(self) -> float:
        return TrainConfig(**self.train).lr


def plan(config: StudyConfig, only: dict[str, list[str]] | None = None) -> list[RunSpec]:
    """Every run of the grid, once each, seed by seed (a partly run study has balanced cells):
    the manual baselines first, then seed 0 of every cell in arm order, then seed 1, ...
    ``only`` keeps the runs whose fields match (``{"relation": ["antonym"], "seed": ["0"]}``;
    ``arm`` matches any arm that asked for the run)."""
    specs: dict[tuple, RunSpec] = {}
    for arm in config.arms:
        grid = (arm["relations"], arm["methods"], arm["seeds"], arm.get("lr") or [None],
                arm.get("steps") or [None], arm.get("templates") or [""])
        for relation, method, seed, lr, steps, template in itertools.product(*grid):
            spec = _normalise(config, relation, method, seed, lr, steps, template)
            key = dataclasses.astuple(spec)[:6]
            known = specs.get(key)
            arms = (known.arms if known else ()) + (arm["name"],)
            specs[key] = dataclasses.replace(spec, arms=tuple(dict.fromkeys(arms)))
    order = {arm["name"]: i for i, arm in enumerate(config.arms)}
    ranked = sorted(specs.values(), key=lambda s: (
        -1 if s.seed is None else s.seed, min(order[a] for a in s.arms), s.relation,
        METHODS.index(s.method), s.lr or 0.0, s.steps or 0, s.template))
    return [spec for spec in ranked if _matches(spec, only or {})]


def _normalise(config: StudyConfig, relation: str, method: str, seed: int, lr: float | None,
               steps: int | None, template: str) -> RunSpec:
    """The run as it will be run: the manual baseline has no seed, lr, steps or slot template;
    a search no lr, and from the manual template no other template; a trained method the
    study's defaults where the arm gives none."""
    if method == MANUAL:
        return RunSpec(relation, method, None, None, None)
    if method in FEW_SHOT:
        return RunSpec(relation, method, seed, None, None)
    steps = int(steps) if steps is not None else config.steps
    if method in SEARCHES:
        start = SEARCHES[method][1]
        return RunSpec(relation, method, seed, None, steps, "" if start == "manual" else template)
    lr = float(lr) if lr is not None else config.lr
    return RunSpec(relation, method, seed, lr, steps, "" if method == LORA else template)


def _matches(spec: RunSpec, only: dict[str, list[str]]) -> bool:
    for name, wanted in only.items():
        if name not in FILTERS:
            raise ConfigError(f"only: unknown field {name!r}; choose from {FILTERS}")
        if name == "arm":
            if not set(spec.arms) & set(wanted):
                return False
            continue
        value = getattr(spec, name)
        if name == "lr":
            if value is None or not any(float(w) == value for w in wanted):
                return False
        elif str(value) not in wanted:
            return False
    return True


def parse_only(items: Iterable[str]) -> dict[str, list[str]]:
    """``["relation=antonym,capital_of", "seed=0"]`` -> ``{"relation": [...], "seed": ["0"]}``."""
    only: dict[str, list[str]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not values or name not in FILTERS:
            raise ConfigError(f"--only wants FIELD=VALUE[,VALUE...] with FIELD one of "
                              f"{FILTERS}, got {item!r}")
        only.setdefault(name, []).extend(v.strip() for v in values.split(","))
    return only
