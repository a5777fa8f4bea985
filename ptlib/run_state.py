"""The state of one training run that a checkpoint holds: encoder, optimizer, history, best
prompt and trajectory, saved and restored as a unit, and the rule for what may resume it."""

import math

import torch

from ptlib.deep_prompt import deep_shape
from ptlib.encoders import ENCODERS, DeepPrefix, FreeVectors, PromptEncoder, build_encoder
from ptlib.errors import ConfigError, ModelError
from ptlib.history import History
from ptlib.identity import model_differences
from ptlib.model import LM
from ptlib.template import Template
from ptlib.train_config import TrainConfig, config_identity


class RunState:
    """The mutable state of one training run."""

    def __init__(self, lm: LM, template: Template, config: TrainConfig,
                 initial_prompt: torch.Tensor | None = None):
        self.encoder = initial_encoder(lm, template, config, initial_prompt).to(lm.device)
        self.optimizer = torch.optim.AdamW(self.encoder.parameters(), lr=config.lr,
                                           weight_decay=config.weight_decay)
        self.step = 0
        self.history = History()
        self.trajectory: list[torch.Tensor] = []  # (L, d) prompt at each evaluation
        self.best = (-1.0, -math.inf)  # (dev EM, -dev NLL)
        self.best_step = 0
        self.best_prompt = self.encoder.export()  # (L, d)
        self.evals_since_best = 0
        self.elapsed = 0.0

    def state(self) -> tuple[dict, dict]:
        """(tensors, JSON-able meta) for ``ptlib.checkpoint.save_state``."""
        tensors = {f"encoder.{k}": v for k, v in self.encoder.state_dict().items()}
        optim = self.optimizer.state_dict()
        for index, slots in optim["state"].items():
            for key, value in slots.items():
                tensors[f"optim.{index}.{key}"] = torch.as_tensor(value)
        tensors["best_prompt"] = self.best_prompt
        tensors |= {f"trajectory.{i}": t for i, t in enumerate(self.trajectory)}
        meta = {"step": self.step, "history": self.history.as_dict(), "best": list(self.best),
                "best_step": self.best_step, "evals_since_best": self.evals_since_best,
                "elapsed": self.elapsed, "param_groups": optim["param_groups"],
                "trajectory": len(self.trajectory)}
        return tensors, meta

    def restore(self, tensors: dict, meta: dict) -> None:
        """Take the state saved by ``state`` (meta from any ptlib version: old key names are
        mapped by ``History.from_dict``)."""
        prefix = "encoder."
        try:
            self.encoder.load_state_dict({k[len(prefix):]: v for k, v in tensors.items()
                                          if k.startswith(prefix)})
        except RuntimeError as err:
            problems = [line.strip() for line in str(err).splitlines()[1:]]
            raise ModelError(f"the checkpoint's encoder does not fit this model and template "
                             f"({' '.join(problems)}): use a fresh folder or the model it "
                             "was written for") from err
        state: dict = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value
        self.optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        self.step = meta["step"]
        self.history = History.from_dict(meta["history"])
        self.best = tuple(meta["best"])
        self.best_step = meta["best_step"]
        self.evals_since_best = meta["evals_since_best"]
        self.elapsed = meta["elapsed"]
        self.best_prompt = tensors["best_prompt"]
        self.trajectory = [tensors[f"trajectory.{i}"] for i in range(meta["trajectory"])]


SEEDABLE = {"free": FreeVectors, "prefix": DeepPrefix}  # encoders initial_prompt can start


def initial_encoder(lm: LM, template: Template, config: TrainConfig,
                    initial_prompt: torch.Tensor | None) -> PromptEncoder:
    """The config's encoder, or free vectors (L, d) or a deep prefix (L, D) starting from
    ``initial_prompt``."""
    deep = ENCODERS[config.encoder].deep
    shape = deep_shape(lm.model) if deep else None
    if initial_prompt is None:
        phrase_ids = lm.tokenizer(config.init_phrase, add_special_tokens=False).input_ids
        return build_encoder(config.encoder, template.num_slots, lm.embeddings, config.seed,
                             config.init, config.hidden_size, phrase_ids, shape)
    if config.encoder not in SEEDABLE:
        raise ConfigError(f"initial_prompt seeds free vectors or a deep prefix; the "
                          f"{config.encoder!r} encoder generates its prompt from its own "
                          "parameters (use encoder='free' or 'prefix')")
    expected = (template.num_slots, shape.width if deep else lm.width)
    if tuple(initial_prompt.shape) != expected:
        raise ConfigError(f"initial_prompt has shape {tuple(initial_prompt.shape)}, but the "
                          f"template and model need (L, {'D' if deep else 'd'}) = {expected}")
    return SEEDABLE[config.encoder](initial_prompt.detach().float().cpu())


def check_resumable(saved: dict, config: TrainConfig, template: Template,
                    done_steps: int) -> None:
    """A checkpoint resumes under the same config and template; only ``steps`` may grow (the
    run is extended, its history continued) and only on a constant schedule after warmup, so
    no step's learning rate changes."""
    if saved.get("template") != template.text:
        raise ConfigError(f"the checkpoint was written for template {saved.get('template')!r}, "
                          f"not {template.text!r}: use a fresh folder or the same template")
    before, now = config_identity(dict(saved.get("config") or {})), config.identity()
    changed = sorted(k for k in now.keys() | before.keys()
                     if k != "steps" and before.get(k) != now.get(k))
    if changed:
        raise ConfigError(f"the checkpoint was written with other settings ({', '.join(changed)}"
                          "); only steps may change on resume: use a fresh folder otherwise")
    if now["steps"] == before.get("steps"):
        return
    if now["steps"] < done_steps:
        raise ConfigError(f"the checkpoint has already run {done_steps} steps; steps="
                          f"{now['steps']} cannot shorten it")
    if config.schedule != "constant":
        raise ConfigError(f"a {config.schedule!r} schedule is spread over the steps, so "
                          "extending the run would change its learning rates: start a new run")


def check_same_origin(saved: dict, model: dict, facts: str) -> None:
    """A checkpoint resumes on the model it was written for (``ptlib.identity.model_identity``)
    and on the same train and dev facts (``facts_hash``); a checkpoint from before these were
    recorded is not held to them."""
    differences = model_differences(saved.get("model") or {}, model)
    if differences:
        raise ModelError(f"the checkpoint was written for another model "
                         f"({'; '.join(differences)}): use a fresh folder or the same model")
    if saved.get("facts") not in (None, facts):
        raise ConfigError("the checkpoint was trained on other train/dev facts (another task or "
                          "file, or an edited one): use a fresh folder or the same task")
