"""At which precision the frozen LM runs, decided once per run.

Every function that runs the LM takes ``precision``: ``"fp32"``, ``"bf16"``, or ``"auto"`` (the
one default everywhere), which ``resolve_precision`` turns into one of the two. A training run
or a search resolves it once, records it in its result, and its result scores prompts at that
same precision unless the caller asks for another (``TrainResult.evaluate``,
``SearchResult.evaluate``). Prompts, encoders, losses and optimizers are fp32 whatever the LM
runs at.

``"auto"`` is fp32 on every device. bf16 is faster where it is native (``hardware.native_bf16``)
but is opt-in (``precision="bf16"``): a faster default has to be shown to train as well as
fp32 first (``bench/bf16_accuracy.py``: ten seeds on four relations, paired on seeds and facts,
the pooled difference in exact match within +-0.05), and no run has shown that yet
(``bench/RESULTS.md``).
"""

import torch

from ptlib.errors import ConfigError

PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
PRECISIONS = ("auto", *PRECISION_DTYPES)  # what a config or a function accepts
DEFAULT_PRECISION = "auto"
PRECISION_HELP = ("frozen LM: auto (fp32, the accurate default), fp32, or bf16 (opt-in: its "
                  "weights cast to bf16 once; faster where bf16 is native)")


def resolve_precision(precision: str) -> str:
    """``"fp32"`` or ``"bf16"`` for ``precision``: ``"auto"`` is the accurate default, fp32 (see
    the module's docstring for why bf16 is opt-in)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return "fp32" if precision == "auto" else precision


def frozen_model(lm, precision: str = DEFAULT_PRECISION) -> torch.nn.Module:
    """The module that runs the frozen LM (a ``ptlib.LM``) at ``precision``: fp32 is the
    model as loaded; bf16 is a copy of its weights cast to bf16 once and kept
    (``LM.weights_in``), so no forward re-casts the weights the way autocast does."""
    resolved = resolve_precision(precision)
    return lm.model if resolved == "fp32" else lm.weights_in(PRECISION_DTYPES[resolved])
