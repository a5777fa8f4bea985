"""A committed, resumable study: the many-seed runs behind the course's verdicts.

The notebooks can afford two or three seeds on two CPU cores; a verdict needs more. A study
config (``studies/course_study.json``) names a grid in *arms*, each a product of relations,
methods, seeds and optionally learning rates and step budgets. ``plan`` expands it into
``RunSpec``s (a run shared by two arms is run once), ``run_study`` runs those not yet in the
results file, and appends each finished run as one JSON line: its full config, seed, dev curve,
per-fact test outcomes (for paired statistics), wall time and machine. So a study stops at any
point and resumes where it stopped, and grows run by run (``limit``, ``only``).

A run's identity (``key``) is a hash of everything that decides its outcome: the relation and
its facts, the method, the model, the template and the resolved config, seed included. Change
the config or the data and the old lines no longer count for the new plan (they stay in the
file, unread). A crash mid-write leaves at most a partial last line: reading ignores it, and
the runner cuts it off before it appends.

``Study`` reads the results back: ``matrices`` gives the (S, F) outcome matrices of
``ptlib.stats`` for methods of one relation on their common seeds, ``compare`` the verdict, and
``summary_table`` the relation x method table of mean EM with intervals.

    python -m ptlib.study studies/course_study.json --limit 1      # run one more run
    python -m ptlib.study studies/course_study.json --only relation=antonym --only seed=0,1
    python -m ptlib.study studies/course_study.json --plan         # what is left, no runs
    python -m ptlib.study studies/course_study.json --summary      # the table, no runs
"""

import argparse
import dataclasses
import functools
import hashlib
import itertools
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ptlib import stats
from ptlib.data import Fact, Task, load_task
from ptlib.discrete import SearchConfig, search
from ptlib.errors import ConfigError, DataError
from ptlib.model import LM, cpuinfo_field, load_lm
from ptlib.objective import Evaluation, evaluate
from ptlib.template import parse_template
from ptlib.train import TrainConfig, train

COURSE_STUDY = Path(__file__).resolve().parents[1] / "studies" / "course_study.json"

# method name -> what runs it: the manual baseline, a discrete search, or a TrainConfig's
# (encoder, init). The manual template is chosen on dev and ignores the seed (deterministic).
MANUAL = "manual"
SEARCHES = {"autoprompt": "autoprompt", "random": "random"}
TRAINED = {"free_normal": ("free", "normal"), "free_rescaled": ("free", "normal_rescaled"),
           "free_uniform": ("free", "uniform"), "free_vocab": ("free", "vocab"),
           "lstm": ("lstm", None), "mlp": ("mlp", None)}
METHODS = (MANUAL, *SEARCHES, *TRAINED)
SEARCH_ITERATIONS = 1_000_000  # a search stops on its forward budget, never on this
FILTERS = ("arm", "relation", "method", "seed", "lr", "steps")  # fields ``only`` may name


@dataclass(frozen=True)
class RunSpec:
    """One run of the grid. ``seed`` is None for the deterministic manual baseline; ``lr`` is
    None for every method that does not train; ``steps`` is a search's training budget."""

    relation: str
    method: str
    seed: int | None
    lr: float | None
    steps: int | None
    arms: tuple[str, ...] = ()  # the arms that asked for this run (not part of its identity)

    @property
    def label(self) -> str:
        """E.g. ``capital_of lstm seed=3 lr=0.003 steps=60``."""
        parts = [self.relation, self.method]
        parts += [f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"
                  for name, value in (("seed", self.seed), ("lr", self.lr),
                                      ("steps", self.steps)) if value is not None]
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
        names = [arm.get("name") for arm in self.arms]
        for index, arm in enumerate(self.arms):
            where = f"study {self.name!r}, arm {arm.get('name', index)!r}"
            unknown = set(arm) - {"name", "relations", "methods", "seeds", "lr", "steps"}
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
        if len(set(names)) != len(names):
            raise ConfigError(f"study {self.name!r}: arm names repeat: {names}")

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
        lrs = arm.get("lr") or [None]
        budgets = arm.get("steps") or [None]
        for relation, method, seed, lr, steps in itertools.product(
                arm["relations"], arm["methods"], arm["seeds"], lrs, budgets):
            spec = _normalise(config, relation, method, seed, lr, steps)
            key = dataclasses.astuple(spec)[:5]
            known = specs.get(key)
            arms = (known.arms if known else ()) + (arm["name"],)
            specs[key] = dataclasses.replace(spec, arms=tuple(dict.fromkeys(arms)))
    order = {arm["name"]: i for i, arm in enumerate(config.arms)}
    ranked = sorted(specs.values(), key=lambda s: (
        -1 if s.seed is None else s.seed, min(order[a] for a in s.arms), s.relation,
        METHODS.index(s.method), s.lr or 0.0, s.steps or 0))
    return [spec for spec in ranked if _matches(spec, only or {})]


def _normalise(config: StudyConfig, relation: str, method: str, seed: int, lr: float | None,
               steps: int | None) -> RunSpec:
    """The run as it will be run: the manual baseline has no seed, lr or steps; a search no
    lr; a trained method the study's defaults where the arm gives none."""
    if method == MANUAL:
        return RunSpec(relation, method, None, None, None)
    steps = int(steps) if steps is not None else config.steps
    if method in SEARCHES:
        return RunSpec(relation, method, seed, None, steps)
    return RunSpec(relation, method, seed, float(lr) if lr is not None else config.lr, steps)


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


# ---- running ----

def _facts_sha(facts: list[Fact]) -> str:
    text = "\n".join(f"{f.x}\t{f.y}\t{'|'.join(f.alternatives)}" for f in facts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _resolved(config: StudyConfig, spec: RunSpec, task: Task) -> dict:
    """The full config that decides the run's outcome (what its key hashes)."""
    if spec.method == MANUAL:
        return {"choose_on": "dev", "templates": list(task.templates)}
    if spec.method in SEARCHES:
        train_batch = TrainConfig(**config.train).batch_size
        budget = 3 * spec.steps * train_batch  # forward + backward (two) per fact per step
        return dataclasses.asdict(SearchConfig(**config.search, method=SEARCHES[spec.method],
                                               iterations=SEARCH_ITERATIONS,
                                               max_forwards=budget, seed=spec.seed))
    encoder, init = TRAINED[spec.method]
    fields = dict(config.train, lr=spec.lr, steps=spec.steps, seed=spec.seed, encoder=encoder)
    if init is not None:
        fields["init"] = init
    return TrainConfig(**fields).identity()


def run_key(config: StudyConfig, spec: RunSpec, task: Task) -> str:
    """What identifies a run: relation, its facts, method, model, template, resolved config."""
    identity = {"relation": spec.relation, "task": _facts_sha(task.facts),
                "method": spec.method, "model": config.model,
                "template": None if spec.method == MANUAL else config.template,
                "config": _resolved(config, spec, task)}
    text = json.dumps(identity, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def machine() -> dict:
    """Where a run ran: enough to compare wall times between records."""
    cpu = cpuinfo_field("model name") or platform.processor() or ""
    return {"platform": platform.platform(), "machine": platform.machine(), "cpu": cpu,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__}


def _evaluation(result: Evaluation, facts: list[Fact]) -> dict:
    return {"em": result.p_at_1, "nll": result.nll, "facts": len(facts),
            "facts_sha": _facts_sha(facts), "exact": [int(hit) for hit in result.exact],
            "first_rank": [int(rank) for rank in result.first_rank]}


def run_one(lm: LM, config: StudyConfig, spec: RunSpec, task: Task) -> dict:
    """Run one spec and return its record (one line of the results file)."""
    train_facts, dev_facts, test_facts = (task.split(s) for s in ("train", "dev", "test"))
    resolved = _resolved(config, spec, task)
    started = time.perf_counter()
    if spec.method == MANUAL:
        scored = [(evaluate(lm, parse_template(text), dev_facts), i, text)
                  for i, text in enumerate(task.templates)]
        dev, _, prompt = min(scored, key=lambda row: (-row[0].p_at_1, row[0].nll, row[1]))
        test = evaluate(lm, parse_template(prompt), test_facts)
        curve = {"step": [0], "em": [dev.p_at_1], "nll": [dev.nll]}
        best_dev, template = dev.p_at_1, prompt
    elif spec.method in SEARCHES:
        result = search(lm, config.template, train_facts, dev_facts,
                        SearchConfig(**resolved), show_progress=False)
        test = result.evaluate(lm, test_facts)
        curve = {"step": result.history.eval_iteration, "em": result.history.dev_p_at_1,
                 "forwards": result.forwards}
        best_dev, prompt, template = result.best_dev_p_at_1, result.prompt_text, config.template
    else:
        result = train(lm, config.template, train_facts, dev_facts, TrainConfig(**resolved),
                       show_progress=False)
        test = result.evaluate(lm, test_facts)
        history = result.history
        curve = {"step": history.eval_step, "em": history.dev_p_at_1, "nll": history.dev_nll,
                 "best_step": result.best_step,
                 "prompt_norm": [float(p.norm(dim=1).mean()) for p in result.trajectory]}
        best_dev, prompt, template = result.best_dev_p_at_1, None, config.template
    wall = time.perf_counter() - started
    return {"key": run_key(config, spec, task), "study": config.name,
            "relation": spec.relation, "method": spec.method, "seed": spec.seed,
            "lr": spec.lr, "steps": spec.steps, "model": config.model, "template": template,
            "prompt": prompt, "config": resolved, "dev_curve": curve, "best_dev_em": best_dev,
            "test": _evaluation(test, test_facts), "wall_seconds": round(wall, 3),
            "machine": machine()}


def read_results(path: str | Path, repair: bool = False) -> list[dict]:
    """The records of a results file, in file order ([] when it does not exist).

    A last line that is not a whole JSON record (a crash mid-write) is ignored, and with
    ``repair=True`` cut off the file so the next append starts on a clean line. A bad line
    elsewhere is corruption, not a crash, and raises ``DataError`` naming it."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    *complete, tail = data.split(b"\n")  # tail: what follows the last newline, if anything
    records, good_end = [], 0
    for number, line in enumerate(complete, start=1):
        if line.strip():
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or "key" not in record:
                    raise ValueError("not a run record")
            except ValueError as err:
                if number == len(complete) and not tail.strip():
                    break  # a garbled last line: treated as the partial write it must be
                raise DataError(f"{path}, line {number}: not a run record ({err}); a crash "
                                "only ever leaves a partial LAST line") from err
            records.append(record)
        good_end += len(line) + 1
    if repair and good_end < len(data):
        with open(path, "r+b") as handle:
            handle.truncate(good_end)
    return records


def append_result(path: str | Path, record: dict) -> None:
    """Append one record as one line, flushed to disk before returning."""
    line = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
    with open(path, "ab") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


@contextmanager
def _locked(path: Path):
    """Hold ``<results>.lock`` so that two runners never append to one file."""
    lock = path.with_name(path.name + ".lock")
    handle = open(lock, "w")  # noqa: SIM115 (held for the whole block)
    try:
        try:
            import fcntl
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # not POSIX: no lock, one runner at a time by convention
            pass
        except OSError as err:
            raise ConfigError(f"another study runner is writing {path} (lock {lock})") from err
        yield
    finally:
        handle.close()
        lock.unlink(missing_ok=True)


def run_study(config: StudyConfig | str | Path, lm: LM | None = None, *,
              limit: int | None = None, only: dict[str, list[str]] | None = None,
              log: Callable[[str], None] | None = print) -> list[dict]:
    """Run the planned runs that the results file lacks, appending each as it finishes.

    ``limit`` stops after that many new runs; ``only`` narrows the plan (see ``plan``). The
    model is loaded only if a run is left to do and ``lm`` is None. Returns the new records.
    """
    if not isinstance(config, StudyConfig):
        config = StudyConfig.from_file(config)
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ConfigError(f"limit must be an integer >= 0, got {limit!r}")
    say = log or (lambda _: None)
    config.results.parent.mkdir(parents=True, exist_ok=True)
    tasks: dict[str, Task] = {}
    new: list[dict] = []
    with _locked(config.results):
        done = {record["key"] for record in read_results(config.results, repair=True)}
        pending = []
        for spec in plan(config, only):
            task = tasks.setdefault(spec.relation, load_task(spec.relation))
            if run_key(config, spec, task) not in done:
                pending.append(spec)
        todo = pending if limit is None else pending[:limit]
        say(f"study {config.name}: {len(pending)} runs to do"
            + (f", running {len(todo)} (limit {limit})" if limit is not None else ""))
        if todo and lm is None:
            lm = load_lm(config.model)
        for number, spec in enumerate(todo, start=1):
            record = run_one(lm, config, spec, tasks[spec.relation])
            append_result(config.results, record)
            new.append(record)
            say(f"[{number}/{len(todo)}] {spec.label}: test EM {record['test']['em']:.3f}, "
                f"{record['wall_seconds']:.1f} s")
    return new


# ---- reading a study back ----

def _parse_label(label: str) -> tuple[str, dict]:
    """``"free_normal lr=0.03 steps=240"`` -> ``("free_normal", {"lr": 0.03, "steps": 240})``."""
    method, *parts = label.split()
    fields = {}
    for part in parts:
        name, _, value = part.partition("=")
        if name not in ("lr", "steps") or not value:
            raise ConfigError(f"method label {label!r}: after the method only lr=... and "
                              "steps=... may follow")
        fields[name] = float(value) if name == "lr" else int(value)
    if method not in METHODS:
        raise ConfigError(f"method label {label!r}: unknown method {method!r}")
    return method, fields


class Study:
    """A study's config and the records of its current plan, for statistics."""

    def __init__(self, config: StudyConfig, records: list[dict]):
        self.config = config
        tasks = {name: load_task(name) for name in {s.relation for s in plan(config)}}
        keys = {run_key(config, spec, tasks[spec.relation]) for spec in plan(config)}
        self.records = [record for record in records if record["key"] in keys]
        self.stale = len(records) - len(self.records)  # lines of an older config or data

    @classmethod
    def load(cls, config: StudyConfig | str | Path = COURSE_STUDY) -> "Study":
        if not isinstance(config, StudyConfig):
            config = StudyConfig.from_file(config)
        return cls(config, read_results(config.results))

    def select(self, relation: str, label: str) -> list[dict]:
        """Records of ``relation`` and a method label (``"lstm"``, ``"lstm lr=0.03"``); lr and
        steps default to the study's training defaults for methods that have them."""
        method, fields = _parse_label(label)
        lr = fields.get("lr", self.config.lr)
        steps = fields.get("steps", self.config.steps)
        chosen = []
        for record in self.records:
            if record["relation"] != relation or record["method"] != method:
                continue
            if record["lr"] is not None and not np.isclose(record["lr"], lr):
                continue
            if record["steps"] is not None and record["steps"] != steps:
                continue
            chosen.append(record)
        return sorted(chosen, key=lambda r: -1 if r["seed"] is None else r["seed"])

    def matrices(self, relation: str, labels: list[str]) -> tuple[dict[str, np.ndarray],
                                                                   list[int]]:
        """(S, F) test outcome matrices of ``labels`` on ``relation``, on the seeds every
        seeded method has (the manual baseline repeated once per seed), and those seeds."""
        chosen = {label: self.select(relation, label) for label in labels}
        empty = [label for label, records in chosen.items() if not records]
        if empty:
            raise DataError(f"study {self.config.name}: no runs of {empty} on {relation} yet")
        shas = {r["test"]["facts_sha"] for records in chosen.values() for r in records}
        if len(shas) > 1:
            raise DataError(f"{relation}: runs were scored on different test facts")
        seeded = [records for records in chosen.values() if records[0]["seed"] is not None]
        seeds = sorted(set.intersection(*(set(r["seed"] for r in records)
                                          for records in seeded))) if seeded else [0, 1]
        out = {}
        for label, records in chosen.items():
            if records[0]["seed"] is None:
                out[label] = np.tile(np.asarray(records[0]["test"]["exact"], float),
                                     (len(seeds), 1))
            else:
                by_seed = {r["seed"]: r["test"]["exact"] for r in records}
                out[label] = np.asarray([by_seed[s] for s in seeds], dtype=float)
        return out, seeds

    def compare(self, relation: str, label_a: str, label_b: str, *,
                spread: bool = False) -> stats.Verdict:
        """``stats.verdict`` for two method labels on one relation, paired by seed and fact."""
        found, _ = self.matrices(relation, [label_a, label_b])
        a, b = found[label_a], found[label_b]
        name_a, name_b = f"{label_a} ({relation})", f"{label_b} ({relation})"
        if spread:
            return stats.verdict(stats.sd_ratio(a, b), name_a, name_b)
        return stats.verdict(stats.paired_difference(a, b), name_a, name_b)

    def summary_rows(self, labels: list[str] | None = None) -> list[dict]:
        """One row per (relation, method label) with runs: mean test EM, its 95% interval
        (``stats.paired_difference`` against zero: seeds and facts resampled), seed sd, number
        of seeds and each seed's EM (``seed_means``, for a strip plot). ``labels`` default to
        the methods at the study's defaults."""
        relations = list(dict.fromkeys(r["relation"] for r in self.records))
        labels = labels or [m for m in METHODS if any(r["method"] == m for r in self.records)]
        rows = []
        for relation in relations:
            for label in labels:
                records = self.select(relation, label)
                if not records:
                    continue
                matrix = np.asarray([r["test"]["exact"] for r in records], dtype=float)
                seeds = len(records) if records[0]["seed"] is not None else 0
                if len(matrix) == 1:  # one row: facts alone decide the interval
                    matrix = np.tile(matrix, (2, 1))
                interval = stats.paired_difference(matrix, np.zeros_like(matrix))
                rows.append({"relation": relation, "method": label, "seeds": seeds,
                             "mean": interval.difference, "low": interval.low,
                             "high": interval.high,
                             "sd": float(matrix.mean(axis=1).std(ddof=1)) if seeds > 1
                             else 0.0, "facts": matrix.shape[1],
                             "seed_means": [float(np.mean(r["test"]["exact"])) for r in records],
                             "wall_seconds": float(np.mean([r["wall_seconds"]
                                                            for r in records]))})
        return rows

    def summary_table(self, labels: list[str] | None = None) -> str:
        """The relation x method table of mean test EM with 95% intervals, as text."""
        rows = self.summary_rows(labels)
        if not rows:
            return f"study {self.config.name}: no results yet ({self.config.results})"
        width = max(len("method"), *(len(row["method"]) for row in rows))
        lines = [f"{'relation':18s} {'method':{width}s} seeds  mean EM  95% interval   "
                 "seed sd  facts  s/run"]
        for row in rows:
            seeds = "-" if row["seeds"] == 0 else str(row["seeds"])
            lines.append(f"{row['relation']:18s} {row['method']:{width}s} {seeds:>5s}  "
                         f"{row['mean']:7.3f}  [{row['low']:.3f}, {row['high']:.3f}]  "
                         f"{row['sd']:7.3f}  {row['facts']:5d}  {row['wall_seconds']:5.0f}")
        lines.append("(seeds '-': deterministic, one run. The interval resamples seeds and "
                     "test facts; with one run, test facts only)")
        return "\n".join(lines)


# The notes' claims the course's study decides, by the notebook that discusses each:
# (claim, method label A, label B, spread). A label is a method with, optionally, lr=... and
# steps=... (default: the study's training).
CLAIMS_BY_NOTEBOOK = {
    "02": [("local search: AutoPrompt against the manual template chosen on dev",
            "autoprompt", "manual", False)],
    "03": [("the relaxation: free vectors (token-sized) against AutoPrompt at the same budget",
            "free_rescaled", "autoprompt", False)],
    "04": [("random init, level: token-sized against N(0,1) free vectors",
            "free_rescaled", "free_normal", False),
           ("random init, spread: token-sized against N(0,1) free vectors",
            "free_rescaled", "free_normal", True),
           ("scale against learning rate: N(0,1) at lr 0.03 against token-sized at lr 0.003",
            "free_normal lr=0.03", "free_rescaled lr=0.003", False),
           ("the notes' slow-learning-rate fix: N(0,1) at lr 0.0003 for 240 steps against lr "
            "0.003", "free_normal lr=0.0003 steps=240", "free_normal lr=0.003", False)],
    "05": [("reparameterisation, level: LSTM against N(0,1) free vectors",
            "lstm", "free_normal", False),
           ("reparameterisation, spread: LSTM against N(0,1) free vectors",
            "lstm", "free_normal", True),
           ("reparameterisation, level: LSTM against token-sized free vectors",
            "lstm", "free_rescaled", False),
           ("reparameterisation, spread: LSTM against token-sized free vectors",
            "lstm", "free_rescaled", True),
           ("the LSTM against the MLP", "lstm", "mlp", False)],
    "06": [("the LSTM against the manual template chosen on dev", "lstm", "manual", False)],
}
COURSE_CLAIMS = [claim for claims in CLAIMS_BY_NOTEBOOK.values() for claim in claims]


def claim_verdicts(study: "Study", claims: list[tuple] = COURSE_CLAIMS,
                   relations: list[str] | None = None) -> list[tuple[str, str, object]]:
    """(relation, claim, Verdict or a reason string) for every claim on every relation that
    has runs; a claim whose runs are missing gets the reason instead of a verdict."""
    relations = relations or list(dict.fromkeys(r["relation"] for r in study.records))
    out = []
    for relation in relations:
        for claim, label_a, label_b, spread in claims:
            try:
                verdict = study.compare(relation, label_a, label_b, spread=spread)
            except (DataError, ConfigError) as err:
                verdict = f"not in the study yet ({err})"
            out.append((relation, claim, verdict))
    return out


def format_claims(verdicts: list[tuple[str, str, object]], missing: bool = False) -> str:
    """The claim verdicts as text, grouped by relation; ``missing`` keeps claims not yet run."""
    lines, current = [], None
    for relation, claim, verdict in verdicts:
        if isinstance(verdict, str) and not missing:
            continue
        if relation != current:
            lines.append(f"{relation}:")
            current = relation
        lines.append(f"- {claim}:\n    {verdict}")
    return "\n".join(lines)


def claim_tally(verdicts: list[tuple[str, str, object]],
                claims: list[tuple] = COURSE_CLAIMS) -> str:
    """Each claim's verdicts counted over relations: the claim, then one line per outcome (which
    method was ahead or steadier, on how many relations; where the runs could not tell or did
    not compare). ``verdicts`` as ``claim_verdicts`` gives them."""
    labels = {claim: (label_a, label_b) for claim, label_a, label_b, _ in claims}
    outcomes: dict[str, dict[str, list[str]]] = {}
    for relation, claim, verdict in verdicts:
        outcome = "no runs in the study" if isinstance(verdict, str) else verdict.label
        for label in labels[claim]:
            outcome = outcome.replace(f"{label} ({relation})", label)
        outcomes.setdefault(claim, {}).setdefault(outcome, []).append(relation)
    lines = []
    for claim, by_outcome in outcomes.items():
        total = sum(len(relations) for relations in by_outcome.values())
        lines.append(f"- {claim}:")
        lines += [f"    {outcome} on {len(relations)} of {total} ({', '.join(relations)})"
                  for outcome, relations in sorted(by_outcome.items(), key=lambda kv: -len(kv[1]))]
    return "\n".join(lines)


def course_study() -> "Study | None":
    """The course's study as its files are now; None when its config is not here (ptlib
    installed without the repository). Loaded once per state of the results file, so the
    cells of a notebook share one read."""
    if not COURSE_STUDY.exists():
        return None
    config = StudyConfig.from_file(COURSE_STUDY)
    results = config.results
    stamp = (results.stat().st_mtime_ns, results.stat().st_size) if results.exists() else None
    return _study_as_of(COURSE_STUDY, stamp)


@functools.lru_cache(maxsize=1)
def _study_as_of(path: Path, stamp: tuple | None) -> "Study":
    return Study.load(path)


def course_rows() -> list[dict]:
    """``Study.summary_rows()`` of the course's study (for ``plots.study_strip``); empty when
    its config or results are not here."""
    study = course_study()
    return study.summary_rows() if study is not None else []


def course_verdicts(notebook: str | None = None) -> str:
    """What the course's study says, as text for a notebook cell: for the claims ``notebook``
    ("02" to "06") discusses, or with None the relation x method table and every claim, a
    tally over relations and then each verdict. Says so instead when the study config or its
    results are not here."""
    study = course_study()
    if study is None:
        return "The course's study config is not here (ptlib installed without the repository)."
    planned = len(plan(study.config))
    if not study.records:
        return (f"No results from the course's study here yet ({study.config.results.name}): "
                "`make study` runs it, and its verdicts then print here.")
    claims = COURSE_CLAIMS if notebook is None else CLAIMS_BY_NOTEBOOK[notebook]
    header = (f"The course's study ({study.config.results.name}): {len(study.records)} of "
              f"{planned} planned runs recorded.")
    verdicts = claim_verdicts(study, claims)
    table = "" if notebook is not None else f"{study.summary_table()}\n\n"
    tally = claim_tally(verdicts, claims)
    detail = format_claims(verdicts) or "none of these claims run yet"
    return f"{header}\n{table}Over the relations:\n{tally}\n\nRelation by relation:\n{detail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ptlib.study",
        description="Run, resume or summarise a study (one JSON line per finished run).")
    parser.add_argument("config", nargs="?", default=str(COURSE_STUDY),
                        help="study config JSON (default: the course's study)")
    parser.add_argument("--limit", type=int, default=None, help="run at most this many runs")
    parser.add_argument("--only", action="append", default=[], metavar="FIELD=VALUE[,VALUE]",
                        help=f"keep runs whose FIELD ({', '.join(FILTERS)}) is one of the "
                             "values; repeatable")
    parser.add_argument("--plan", action="store_true", help="list the runs left; run nothing")
    parser.add_argument("--summary", action="store_true",
                        help="print the relation x method table; run nothing")
    args = parser.parse_args(argv)
    try:
        config = StudyConfig.from_file(args.config)
        only = parse_only(args.only)
        if args.summary:
            print(Study.load(config).summary_table())
            return 0
        if args.plan:
            done = {r["key"] for r in read_results(config.results)}
            tasks: dict[str, Task] = {}
            left = [s for s in plan(config, only) if run_key(
                config, s, tasks.setdefault(s.relation, load_task(s.relation))) not in done]
            for spec in left:
                print(spec.label)
            print(f"{len(left)} runs left of {len(plan(config, only))} planned")
            return 0
        run_study(config, limit=args.limit, only=only)
    except (ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
