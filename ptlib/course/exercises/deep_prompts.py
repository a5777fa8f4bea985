"""Exercise checks on deep prompts and the reference rows: a deep prompt's layout, per layer;
what prefix tuning's MLP and a LoRA adapter train."""

import torch

from ptlib.course.exercises.core import (
    NotAnswered,
    assert_close,
    call,
    check_number,
    exercise,
    fail,
)
from ptlib.deep_prompt import DeepShape, deep_shape, layer_keys_values
from ptlib.encoders import build_encoder
from ptlib.flops import trainable_parameters
from ptlib.lora import LoRAConfig, target_modules
from ptlib.model import LM, decoder_layers

LAYOUT = ("row i is virtual token i: its key at layer 0, its value at layer 0, its key at "
          "layer 1, ..., each kv_heads * head_dim wide; split each of those into kv_heads "
          "heads of head_dim")


@exercise("a deep prompt, layer by layer")
def check_split_deep_prompt(split_fn, prompt: torch.Tensor, layers: int, kv_heads: int,
                            head_dim: int) -> None:
    """``split_fn(prompt (L, D), layers, kv_heads, head_dim)`` -> one (keys, values) pair per
    layer, each (kv_heads, L, head_dim); compared with ``ptlib.deep_prompt``'s own split on the
    notebook's prompt and on small random ones."""
    generator = torch.Generator().manual_seed(0)
    cases = [(prompt.detach().float().cpu(), layers, kv_heads, head_dim)]
    for length, shape in ((3, (2, 2, 4)), (1, (3, 1, 2))):
        width = DeepShape(*shape).width
        cases.append((torch.randn(length, width, generator=generator), *shape))
    for first, (tensor, n_layers, heads, size) in enumerate(cases):
        got = call(split_fn, tensor.clone(), n_layers, heads, size, first=first == 0)
        where = f"(L={tensor.shape[0]}, {n_layers} layers, {heads} kv heads of {size})"
        try:
            pairs = list(got)
        except TypeError:
            fail(f"return a list of (keys, values) pairs, got {type(got).__name__}")
        if len(pairs) != n_layers:
            fail(f"{len(pairs)} pairs for {n_layers} layers {where}: one pair per layer")
        reference = layer_keys_values(tensor, DeepShape(n_layers, heads, size), rows=1)
        for layer, (pair, (keys, values)) in enumerate(zip(pairs, reference, strict=True)):
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                fail(f"layer {layer}: expected a pair (keys, values) {where}")
            for name, mine, theirs in (("keys", pair[0], keys), ("values", pair[1], values)):
                assert_close(mine, theirs[0], f"layer {layer}'s {name} tensor {where}", atol=0.0,
                             rtol=0.0, hint=LAYOUT)


@exercise("what prefix tuning's MLP trains")
def check_prefix_mlp_size(answer, lm: LM, num_slots: int, hidden_size: int | None = None
                          ) -> None:
    """The trainable parameters of a ``prefix_mlp`` encoder for ``num_slots`` virtual tokens
    on ``lm`` (hidden width ``hidden_size``, default the kv width), counted on one built
    here."""
    if answer is None:
        raise NotAnswered
    encoder = build_encoder("prefix_mlp", num_slots, lm.embeddings, seed=0,
                            hidden_size=hidden_size, deep_shape=deep_shape(lm.model))
    check_number(answer, trainable_parameters(encoder), 0.0, "the count",
                 "the seed embedding (L x kv width), Linear(kv width, hidden) and "
                 "Linear(hidden, D), each with its bias: count the trained encoder's "
                 "parameters (result.encoder), not the (L, D) prompt it produces")


def lora_parameters(lm: LM, r: int, targets: tuple[str, ...] | None = None) -> int:
    """A rank-``r`` LoRA adapter's parameters on ``lm``'s modules named ``targets`` (default:
    the model's query and value projections, as ``ptlib.lora`` picks them): r * (in + out)
    for each adapted weight of every decoder layer (A is (r, in), B is (out, r))."""
    names = set(target_modules(lm.model, LoRAConfig(r=r, target_modules=targets)))
    return sum(r * (module.in_features + module.out_features)
               for name, module in decoder_layers(lm.model).named_modules()
               if name.rsplit(".", 1)[-1] in names and isinstance(module, torch.nn.Linear))


@exercise("what a LoRA adapter trains")
def check_lora_size(answer, lm: LM, r: int = 8, targets: tuple[str, ...] | None = None
                    ) -> None:
    """The trainable parameters of a rank-``r`` LoRA adapter on ``lm``'s modules named
    ``targets`` (default: its query and value projections), as PEFT counts them."""
    check_number(answer, lora_parameters(lm, r, targets), 0.0, "the count",
                 "each adapted weight W (out, in) gets A (r, in) and B (out, r), no bias; "
                 "count them over every adapted module of every layer (with grouped-query "
                 "attention the key and value projections are narrower than the query's)")
