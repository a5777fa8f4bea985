"""Deep prompts: L keys and values written into every attention layer (P-Tuning v2, prefix tuning).

An input-layer prompt (P-Tuning v1) is L vectors at the input only, and the model computes
every layer's keys and values from them. A deep prompt gives each attention layer its own L
keys and values, free parameters that every real token attends to. ptlib holds one as a
(L, D) tensor, D = layers * 2 * kv_heads * head_dim, laid out as PEFT's PREFIX_TUNING stores
it: row i is virtual token i's key at layer 0, its value at layer 0, its key at layer 1, ...,
each kv_heads * head_dim wide. Export to PEFT is then a copy.

How it runs: the prompt enters as the model's own KV cache, one ``DynamicCache`` whose layer l
holds the prompt's keys and values, the mechanism transformers supports for every family and
PEFT uses. The keys are taken as given (they are never rotated), and the real tokens sit at
positions L, L + 1, ... as PEFT numbers them, so logits equal PEFT's. For packed batches
(``ptlib.packing``) a 4D additive mask lets every token see all L prefix entries and only the
earlier tokens of its own example: transformers' own packed-sequence detection is off when a
cache is given, so this mask is built here.

Templates: a deep prompt is a prefix, so every ``[P]`` comes first (``"[P][P][P] {x}"``,
``"[P][P] The capital of {x} is"``). Its slots are not tokens at any layer: they are taken out
of the batch (``without_slots``), and L is their count.
"""

from dataclasses import dataclass

import torch

from ptlib.errors import ModelError, TemplateError
from ptlib.model import cache_keyword, decoder_layers
from ptlib.template import INPUT, Batch, Template


@dataclass(frozen=True)
class DeepShape:
    """Where a deep prompt's D numbers per virtual token go."""

    layers: int
    kv_heads: int
    head_dim: int

    @property
    def kv_width(self) -> int:
        """Width of one key (or value) at one layer: kv_heads * head_dim (PEFT's token_dim)."""
        return self.kv_heads * self.head_dim

    @property
    def width(self) -> int:
        """D: every layer's key and value for one virtual token."""
        return self.layers * 2 * self.kv_width


def _text_config(model: torch.nn.Module):
    """The config of the model's text decoder (the model's own for a text-only LM)."""
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def deep_shape(model: torch.nn.Module) -> DeepShape:
    """The ``DeepShape`` of a transformers causal LM, read from its config and layer list."""
    config = _text_config(model)
    heads = getattr(config, "num_attention_heads", None)
    if not heads:
        raise ModelError(f"{type(model).__name__}: its config gives no num_attention_heads")
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return DeepShape(len(decoder_layers(model)), kv_heads, head_dim)


def prefix_length(template: Template) -> int:
    """L for a deep prompt on ``template``: its slots, which must all come before any text.

    ``TemplateError`` for a template without slots or with a slot after text: a deep prompt
    sits before the input at every layer, so a slot elsewhere has no meaning."""
    count = template.num_slots
    chunks = template.chunks(INPUT)
    if count and all(chunk is None for chunk in chunks[:count]) \
            and None not in chunks[count:]:
        return count
    raise TemplateError(
        f"template {template.text!r} cannot hold a deep prompt: deep prompts are prefixes at "
        f"every layer, so write all the [P] slots at the very start, e.g. '[P][P][P] {{x}}' "
        f"or '[P][P] The capital of {{x}} is'")


def without_slots(batch: Batch) -> Batch:
    """``batch`` with its slot tokens masked out (a deep prompt's slots are not tokens):
    ``attention_mask`` (B, T) 0 at the slots, ``position_ids`` recounted from the first real
    token. Target positions are unchanged: the slots come before every target.
    ``TemplateError`` when the slots do not open every example."""
    is_slot = batch.slot_index >= 0  # (B, T)
    length = int(is_slot.sum(dim=1).max())
    opening = batch.position_ids < length  # (B, T): the first L real tokens of each example
    if bool(((is_slot != opening) & batch.attention_mask.bool()).any()):
        raise TemplateError("a deep prompt needs its slots to open every example (a template "
                            "like '[P][P][P] {x}'), but this batch has them elsewhere")
    mask = batch.attention_mask * ~is_slot  # (B, T)
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    return Batch(batch.input_ids, mask, positions, torch.full_like(batch.slot_index, -1),
                 batch.target_ids, batch.target_positions, batch.target_mask)


def check_deep_prompt(prompt: torch.Tensor, shape: DeepShape, num_slots: int) -> None:
    """The prompt must be (L, D) for the template's L slots and the model's D."""
    expected = (num_slots, shape.width)
    if tuple(prompt.shape) != expected:
        raise TemplateError(
            f"the deep prompt has shape {tuple(prompt.shape)}, but the template and model need "
            f"(L, D) = {expected} (D = {shape.layers} layers x 2 x {shape.kv_heads} kv heads x "
            f"{shape.head_dim})")


def layer_keys_values(prompt: torch.Tensor, shape: DeepShape, rows: int
                      ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each layer's (keys, values) of the (L, D) prompt for ``rows`` sequences: two
    (rows, kv_heads, L, head_dim) views, in PEFT's layout (row-major over layer, key/value)."""
    length = prompt.shape[0]
    split = prompt.view(length, shape.layers * 2, shape.kv_heads, shape.head_dim)
    per_entry = split.permute(1, 2, 0, 3)  # (layers * 2, kv_heads, L, head_dim)
    expanded = per_entry.unsqueeze(1).expand(-1, rows, -1, -1, -1)
    return [(expanded[2 * layer], expanded[2 * layer + 1]) for layer in range(shape.layers)]


def prefix_cache(model: torch.nn.Module, prompt: torch.Tensor, rows: int):
    """A ``DynamicCache`` holding the (L, D) prompt as every layer's first L keys and values,
    for ``rows`` sequences, in the model's weight dtype. Differentiable in ``prompt``."""
    from transformers import DynamicCache

    dtype = model.get_input_embeddings().weight.dtype
    cache = DynamicCache(config=model.config)
    pairs = layer_keys_values(prompt.to(dtype), deep_shape(model), rows)
    for layer, (keys, values) in enumerate(pairs):
        cache.update(keys, values, layer)
    return cache


def packed_prefix_mask(position_ids: torch.Tensor, length: int, dtype: torch.dtype,
                       window: int | None = None) -> torch.Tensor:
    """Additive attention mask (R, 1, C, L + C) for packed rows whose ``position_ids`` (R, C)
    restart at 0 with each example: 0 where a token may look (the L prefix entries, and the
    earlier tokens of its own example), the dtype's minimum elsewhere. With a sliding
    ``window`` W, a token at absolute position q (L + its position) sees only entries at
    positions above q - W, prefix entries included, as the model's own sliding mask does."""
    starts = torch.diff(position_ids, dim=1, prepend=position_ids[:, :1] - 1) != 1
    example = starts.cumsum(dim=1)  # (R, C): which example each packed token belongs to
    columns = torch.arange(position_ids.shape[1], device=position_ids.device)
    causal = columns.unsqueeze(0) <= columns.unsqueeze(1)  # (C, C): key column <= query row
    body = (example.unsqueeze(2) == example.unsqueeze(1)) & causal  # (R, C, C)
    prefix = torch.arange(length, device=position_ids.device).expand(*body.shape[:2], length)
    if window is None:
        prefix_seen = torch.ones(prefix.shape, dtype=torch.bool, device=prefix.device)
    else:
        query = position_ids.unsqueeze(2) + length  # (R, C, 1) absolute query positions
        prefix_seen = prefix > query - window
        body = body & (position_ids.unsqueeze(1) > position_ids.unsqueeze(2) - window)
    allowed = torch.cat([prefix_seen, body], dim=2)  # (R, C, L + C)
    blocked = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return blocked.masked_fill(~allowed, torch.finfo(dtype).min).unsqueeze(1)


def attention_masks(config, position_ids: torch.Tensor, length: int, dtype: torch.dtype):
    """What the model's forward takes as ``attention_mask`` for packed rows after an L-entry
    prefix: one (R, 1, C, L + C) mask, windowed when the model slides its attention
    (``sliding_window``: Mistral, Phi-3), or for models that mix layer types (Gemma-2, Qwen2's
    ``layer_types``) a dict of one mask per type, the sliding ones windowed."""
    window = getattr(config, "sliding_window", None)
    kinds = getattr(config, "layer_types", None)
    if not kinds:
        return packed_prefix_mask(position_ids, length, dtype, window)
    return {kind: packed_prefix_mask(position_ids, length, dtype,
                                     window if kind == "sliding_attention" else None)
            for kind in set(kinds)}


def deep_forward_arguments(model: torch.nn.Module, prompt: torch.Tensor,
                           position_ids: torch.Tensor) -> dict:
    """The keyword arguments that make one forward of ``model`` on packed rows (position ids
    (R, C), restarting at 0 per example) see the (L, D) deep prompt: the prefix cache, the
    packed prefix mask, and positions moved on by L (the prompt holds positions 0..L-1)."""
    length = prompt.shape[0]
    dtype = model.get_input_embeddings().weight.dtype
    return {cache_keyword(model): prefix_cache(model, prompt, position_ids.shape[0]),
            "attention_mask": attention_masks(_text_config(model), position_ids, length, dtype),
            "position_ids": position_ids + length}
