"""What a training run records as it goes: one entry per step and one per dev evaluation."""

import dataclasses
from dataclasses import dataclass, field

from ptlib.legacy import renamed


@dataclass
class History:
    """Per-step and per-evaluation records of one run (lists line up by index)."""

    step: list[int] = field(default_factory=list)          # 1-based optimizer step
    loss: list[float] = field(default_factory=list)        # mean -log P(y | x, P) of the batch
    lr: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)   # before clipping
    prompt_norm: list[float] = field(default_factory=list)  # mean L2 norm of the L vectors
    seconds: list[float] = field(default_factory=list)     # wall time since the run started
    eval_step: list[int] = field(default_factory=list)     # 0 is the initial prompt
    dev_exact_match: list[float] = field(default_factory=list)  # dev EM at each eval_step
    dev_nll: list[float] = field(default_factory=list)     # dev mean NLL at each eval_step

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "History":
        """A history saved by ``as_dict``, by this or an older ptlib (``ptlib.legacy``)."""
        return cls(**renamed(data))
