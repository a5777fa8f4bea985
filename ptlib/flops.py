"""Model FLOPs of ptlib's work on a frozen causal LM, counting real tokens only, and the
parameter counts that sit beside them in a results table.

Used to judge speed against a machine's own limit (achieved FLOP/s over the matmul rate at the
same shapes, or over a GPU's peak: MFU). Padding is never counted: since ``ptlib.packing`` the
model computes only real tokens plus the filler that ends a packed row.
"""

import torch

from ptlib.data import Fact
from ptlib.deep_prompt import without_slots
from ptlib.encoders import ENCODERS
from ptlib.model import LM
from ptlib.objective import make_batch
from ptlib.template import Batch, Template
from ptlib.training import batch_facts

WORKLOADS = ("train", "eval", "score")


def body_parameters(model: torch.nn.Module) -> int:
    """Parameters of the transformer body: all but the token embedding and the LM head."""
    return sum(p.numel() for name, p in model.named_parameters()
               if "embed" not in name and "lm_head" not in name)


def useful_flops(model: torch.nn.Module, batch: Batch, workload: str, prefix: int = 0) -> float:
    """FLOPs of one pass of ``batch`` through ``model``: the body's forward (2 x parameters per
    real token, plus attention scores over each example's own length and the ``prefix`` entries
    a deep prompt adds at every layer), the LM head at the target positions only, and for
    ``train`` the activation backward of the same size again (the frozen LM has no weight
    gradients). ``workload`` is one of ``WORKLOADS``. A deep prompt's slots are not tokens:
    pass its batch through ``ptlib.deep_prompt.without_slots`` and ``prefix`` = L."""
    if workload not in WORKLOADS:
        raise ValueError(f"workload must be one of {WORKLOADS}, got {workload!r}")
    config = model.config
    lengths = batch.attention_mask.sum(dim=1).double()  # (B,) real tokens per example
    body = 2 * body_parameters(model) * lengths.sum()
    attended = (lengths**2).sum() + prefix * lengths.sum()  # query-key pairs
    attention = 4 * config.hidden_size * config.num_hidden_layers * attended
    head = 2 * config.hidden_size * config.vocab_size * batch.target_mask.sum()
    forward = float(body + attention + head)
    return 2 * forward if workload == "train" else forward


def trainable_parameters(module: torch.nn.Module) -> int:
    """How many parameters a run updates: those with ``requires_grad``, a shared (tied) tensor
    counted once. A prompt encoder: all of its own; a LoRA-adapted model: its adapters only; a
    frozen LM, few-shot or a manual prompt: 0."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def total_parameters(module: torch.nn.Module) -> int:
    """Every parameter of ``module``, trainable or not, a shared (tied) tensor counted once."""
    return sum(p.numel() for p in module.parameters())


def train_step_flops(model: torch.nn.Module, batch: Batch, body_trainable: int = 0,
                     prefix: int = 0) -> float:
    """FLOPs of one training step on ``batch``: ``useful_flops(model, batch, "train", prefix)`` (the
    forward and the activation backward through the whole network, which a prompt needs as
    much as a LoRA adapter in the first layer does), plus the weight gradients of the
    ``body_trainable`` parameters that act on every real token (LoRA's adapters: 2 FLOPs per
    parameter per token, so an adapter weight costs the usual 6 per token in all, its forward
    being in ``body_parameters``). A prompt encoder runs once per step, not per token: its own
    FLOPs are not counted (``body_trainable=0``)."""
    tokens = float(batch.attention_mask.sum())
    return useful_flops(model, batch, "train", prefix) + 2.0 * body_trainable * tokens


def run_train_flops(lm: LM, template: Template, train_facts: list[Fact], config, steps: int,
                    model: torch.nn.Module | None = None, body_trainable: int = 0) -> float:
    """Training FLOPs of a run that took ``steps`` optimizer steps: ``train_step_flops`` summed
    over the micro-batches ``ptlib.training.batch_facts`` gives ``config`` (a ``TrainConfig``
    or a ``LoRAConfig``: its seed, batch size and gradient accumulation), replayed. ``model``
    is the network the steps ran through (default ``lm.model``). For a P-Tuning row:
    ``run_train_flops(lm, template, train, result.config, result.history.step[-1])``; dev
    evaluations are model selection, not counted (as in ``ptlib.discrete``). A deep prompt's
    run (``config.encoder`` deep) runs its batches without the slots and with an L-entry
    prefix at every layer, and is counted so."""
    model = lm.model if model is None else model
    deep = ENCODERS[config.encoder].deep if hasattr(config, "encoder") else False
    prefix = template.num_slots if deep else 0
    micro_batches = (batch_facts(train_facts, config, step, micro)
                     for step in range(steps) for micro in range(config.grad_accum))
    batches = (make_batch(lm, template, facts) for facts in micro_batches)
    return sum(train_step_flops(model, without_slots(batch) if deep else batch, body_trainable,
                                prefix) for batch in batches)
