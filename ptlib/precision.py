"""At which precision the frozen LM runs, decided once per run.

Every function that runs the LM takes ``precision``: ``"fp32"``, ``"bf16"``, or ``"auto"`` (the
one default everywhere), which ``resolve_precision`` turns into one of the two for a device.
A training run or a search resolves it once, records it in its result, and its result scores
prompts at that same precision unless the caller asks for another (``TrainResult.evaluate``,
``SearchResult.evaluate``). Prompts, encoders, losses and optimizers are fp32 whatever the LM
runs at.
"""

import torch

from ptlib.errors import ConfigError
from ptlib.hardware import native_bf16

PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
PRECISIONS = ("auto", *PRECISION_DTYPES)  # what a config or a function accepts
DEFAULT_PRECISION = "auto"


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``"fp32"`` or ``"bf16"`` for ``precision`` on ``device``: ``"auto"`` means bf16 where bf16
    matrix multiplies are native (CUDA, CPUs with AVX512-BF16 or AMX: ``native_bf16``) and fp32
    elsewhere. The accuracy check behind this default is ``bench/bf16_accuracy.py``."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(torch.device(device).type) else "fp32"


def frozen_model(lm, precision: str = DEFAULT_PRECISION) -> torch.nn.Module:
    """The module that runs the frozen LM (a ``ptlib.LM``) at ``precision``: fp32 is the
    model as loaded; bf16 is a copy of its weights cast to bf16 once and kept
    (``LM.weights_in``), so no forward re-casts the weights the way autocast does."""
    resolved = resolve_precision(precision, lm.device)
    return lm.model if resolved == "fp32" else lm.weights_in(PRECISION_DTYPES[resolved])
