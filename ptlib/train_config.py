"""What decides a training run: ``TrainConfig``, its identity and its learning-rate schedule."""

import dataclasses
import math
from dataclasses import dataclass

from ptlib.encoders import ENCODERS, FREE_INITS
from ptlib.errors import ConfigError
from ptlib.options import MAX_SEED, check_options, option
from ptlib.precision import DEFAULT_PRECISION, PRECISION_HELP, PRECISIONS

SCHEDULES = ("constant", "linear", "cosine")
DEFAULT_INIT = "normal_rescaled"

# TrainConfig fields added after checkpoints and study records were written, with their
# defaults: left out of a config's identity while at the default, so those still match.
LATER_FIELDS = {"compile": False}


@dataclass
class TrainConfig:
    """Everything that decides a training run; a bad value raises ``ConfigError`` naming it."""

    encoder: str = option("lstm", "prompt encoder", lambda: tuple(ENCODERS))
    init: str = option(DEFAULT_INIT, "free vectors' initial values (free encoder only)",
                       FREE_INITS)
    init_phrase: str = option("", "text whose tokens seed the slots when init is phrase")
    hidden_size: int | None = option(None, "lstm/mlp/prefix_mlp width; none means the model "
                                           "width d (prefix_mlp: the kv width)", minimum=1)
    steps: int = option(200, "optimizer steps", minimum=1)
    batch_size: int = option(16, "facts per micro-batch", minimum=1)
    grad_accum: int = option(1, "micro-batches per optimizer step", minimum=1)
    lr: float = option(3e-3, "peak AdamW learning rate", above=0)
    weight_decay: float = option(0.0, "AdamW decoupled weight decay", minimum=0)
    warmup_steps: int = option(0, "steps of linear warmup from 0 to lr", minimum=0)
    schedule: str = option("constant", "after warmup: constant, or linear/cosine decay to 0",
                           SCHEDULES)
    max_grad_norm: float | None = option(1.0, "clip the encoder's gradient norm to this; none "
                                              "for no clipping", above=0)
    eval_every: int = option(25, "steps between dev evaluations (also one at step 0)",
                             minimum=1)
    patience: int | None = option(None, "stop after this many evaluations without a better "
                                        "dev score; none never stops early", minimum=1)
    seed: int = option(0, f"encoder init and batch order (0 to {MAX_SEED})", minimum=0,
                       maximum=MAX_SEED)
    precision: str = option(DEFAULT_PRECISION, PRECISION_HELP, PRECISIONS)
    checkpoint_every: int = option(0, "steps between checkpoints when a folder is given; 0 "
                                      "saves at every evaluation", minimum=0)
    compile: bool = option(False, "torch.compile the frozen LM's decoder layers (opt-in: "
                                  "faster steps after a one-time compile; the kernels round "
                                  "differently, so a run ends elsewhere than uncompiled)")

    def __post_init__(self):
        check_options(self)
        if self.hidden_size is not None and not ENCODERS[self.encoder].has_hidden_size:
            raise ConfigError(f"hidden_size sets the width of a reparameterising encoder "
                              f"(lstm, mlp, prefix_mlp); {self.encoder!r} has none (leave it "
                              "None)")
        if self.encoder == "free":
            if self.init == "phrase" and not self.init_phrase.strip():
                raise ConfigError("init 'phrase' needs a non-empty init_phrase")
        elif self.init != DEFAULT_INIT or self.init_phrase:
            raise ConfigError(f"init and init_phrase choose the start of free vectors; the "
                              f"{self.encoder!r} encoder draws its own parameters (use "
                              "encoder='free', or leave init and init_phrase at their defaults)")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def identity(self) -> dict:
        """What a checkpoint or a study record is matched on: ``as_dict`` less the
        ``LATER_FIELDS`` that sit at their defaults. ``compile=True`` stays in: compiled
        kernels round differently, so a compiled run ends elsewhere than an uncompiled one."""
        return config_identity(self.as_dict())


def config_identity(config: dict) -> dict:
    """``TrainConfig.identity`` of a config stored as a dict (a checkpoint's, a record's)."""
    return {k: v for k, v in config.items() if k not in LATER_FIELDS or v != LATER_FIELDS[k]}


def learning_rate(config: TrainConfig, step: int) -> float:
    """The learning rate used for 0-based ``step``: warmup, then the schedule."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.steps - config.warmup_steps)
    done = (step - config.warmup_steps) / span
    if config.schedule == "linear":
        return config.lr * (1.0 - done)
    if config.schedule == "cosine":
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * done))
    return config.lr
