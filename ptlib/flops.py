"""Model FLOPs of ptlib's work on a frozen causal LM, counting real tokens only.

Used to judge speed against a machine's own limit (achieved FLOP/s over the matmul rate at the
same shapes, or over a GPU's peak: MFU). Padding is never counted: since ``ptlib.packing`` the
model computes only real tokens plus the filler that ends a packed row.
"""

import torch

from ptlib.template import Batch

WORKLOADS = ("train", "eval", "score")


def body_parameters(model: torch.nn.Module) -> int:
    """Parameters of the transformer body: all but the token embedding and the LM head."""
    return sum(p.numel() for name, p in model.named_parameters()
               if "embed" not in name and "lm_head" not in name)


def useful_flops(model: torch.nn.Module, batch: Batch, workload: str) -> float:
    """FLOPs of one pass of ``batch`` through ``model``: the body's forward (2 x parameters per
    real token, plus attention scores over each example's own length), the LM head at the
    target positions only, and for ``train`` the activation backward of the same size again
    (the frozen LM has no weight gradients). ``workload`` is one of ``WORKLOADS``."""
    if workload not in WORKLOADS:
        raise ValueError(f"workload must be one of {WORKLOADS}, got {workload!r}")
    config = model.config
    lengths = batch.attention_mask.sum(dim=1).double()  # (B,) real tokens per example
    body = 2 * body_parameters(model) * lengths.sum()
    attention = 4 * config.hidden_size * config.num_hidden_layers * (lengths**2).sum()
    head = 2 * config.hidden_size * config.vocab_size * batch.target_mask.sum()
    forward = float(body + attention + head)
    return 2 * forward if workload == "train" else forward
