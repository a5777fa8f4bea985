"""Generate text after a prompt: the trained or searched prompt put to use on new subjects.

``generate`` fills a template with each subject, writes the prompt into its slots (vectors
(L, d) for a continuous prompt, token ids (L,) for a discrete one, nothing for a manual
template) and continues the text greedily or by sampling. All subjects go in one left-padded
batch of the template's tokens (no object is appended), with ``position_ids = cumsum(mask) - 1``
so the padding is invisible and the prompt sits at the positions it was trained at; one
forward over the prompt fills the model's KV cache, then each new token is one cached step.
"""

import torch

from ptlib.deep_prompt import prefix_cache, prefix_length, without_slots
from ptlib.errors import ConfigError, DataError, TemplateError
from ptlib.model import LM, cache_keyword
from ptlib.objective import input_embeddings
from ptlib.precision import DEFAULT_PRECISION, frozen_model
from ptlib.template import Batch, Template, encode_prompt_part, parse_template


def encode_prompts(tokenizer, template: Template, subjects: list[str]) -> Batch:
    """The template filled with each subject, left-padded to length T, with NO object: a
    ``Batch`` whose ``input_ids`` (B, T) hold the pad id at padding and at slots,
    ``attention_mask`` (B, T), ``position_ids`` (B, T) = cumsum(mask) - 1 (clamped at 0),
    ``slot_index`` (B, T) (k at the k-th slot, -1 elsewhere) and empty (B, 0) targets."""
    pad = tokenizer.pad_token_id
    rows = [_encode_prompt(tokenizer, pad, template, subject) for subject in subjects]
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids, _ in rows])
    mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids, _ in rows])
    slot_index = torch.tensor([[-1] * (width - len(s)) + s for _, s in rows])
    position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)
    empty = torch.zeros(len(rows), 0, dtype=torch.long)
    return Batch(input_ids, mask, position_ids, slot_index, empty, empty.clone(),
                 empty.bool())


def _encode_prompt(tokenizer, pad_id: int, template: Template, subject: str
                   ) -> tuple[list[int], list[int]]:
    """``encode_prompt_part``, refusing a filled template that encodes to nothing."""
    ids, slots = encode_prompt_part(tokenizer, pad_id, template, subject)
    if not ids:
        raise TemplateError(f"template {template.text!r} filled with {subject!r} is empty")
    return ids, slots


def _check_request(template: Template, inputs: list[str], prompt, slot_ids, deep_prompt,
                   max_new_tokens: int, greedy: bool, temperature: float) -> None:
    """Refuse what cannot be generated, each with a one-line message."""
    if not isinstance(inputs, list | tuple) or not inputs:
        raise DataError("generate needs a non-empty list of input strings")
    if not all(isinstance(x, str) for x in inputs):
        raise DataError("generate takes inputs as strings (one subject each)")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    if not greedy and not temperature > 0:
        raise ConfigError(f"temperature must be > 0 for sampling, got {temperature!r}")
    prompts = [p for p in (prompt, slot_ids, deep_prompt) if p is not None]
    if len(prompts) > 1:
        raise ConfigError("give one prompt: prompt= (vectors), slot_ids= (tokens) or "
                          "deep_prompt=, not several")
    if not prompts and template.num_slots:
        raise TemplateError("the template has prompt slots [P] but no prompt was given: pass "
                            "prompt= (vectors), slot_ids= (tokens) or deep_prompt=, or use a "
                            "manual template")
    if deep_prompt is not None:
        prefix_length(template)
    want = 1 if slot_ids is not None else 2
    if prompts and (prompts[0].dim() != want or prompts[0].shape[0] != template.num_slots):
        raise TemplateError(f"the prompt has shape {tuple(prompts[0].shape)} but template "
                            f"{template.text!r} has {template.num_slots} slots")


def _next_tokens(logits: torch.Tensor, greedy: bool, temperature: float,
                 generator: torch.Generator | None) -> torch.Tensor:
    """The next token of each row from its last logits (B, V): argmax, or a draw from
    softmax(logits / temperature). Returns (B,) long."""
    if greedy:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _stops(lm: LM, tokens: torch.Tensor, stop_at_newline: bool) -> torch.Tensor:
    """(B,) bool: which of the tokens (B,) end their row (EOS, or one holding a newline)."""
    stop = tokens == lm.tokenizer.eos_token_id
    if stop_at_newline:
        text = [lm.tokenizer.decode([t]) for t in tokens.tolist()]
        stop |= torch.tensor(["\n" in t for t in text], device=tokens.device)
    return stop


def _cache_from(model: torch.nn.Module, out) -> dict:
    """The KV cache of ``out`` as the keyword the model's forward takes it by."""
    keyword = cache_keyword(model)
    return {keyword: getattr(out, keyword)}


def _first_forward(lm: LM, model: torch.nn.Module, batch: Batch, prompt, slot_ids,
                   deep_prompt) -> tuple:
    """The forward over the (B, T) prompt batch that fills the KV cache: (output, attention
    mask, position ids), the mask and positions to extend at each new token. A deep prompt
    (L, D) is the cache's first L entries at every layer, its slots leave the batch, and the
    real tokens sit at positions L, L + 1, ... (``ptlib.deep_prompt``)."""
    to_device = {k: None if v is None else v.to(lm.device)
                 for k, v in (("prompt", prompt), ("slot_ids", slot_ids))}
    extra = {}
    if deep_prompt is not None:
        batch = without_slots(batch)
        length = deep_prompt.shape[0]
        extra = {cache_keyword(model): prefix_cache(model, deep_prompt.to(lm.device),
                                                     batch.size)}
        mask = torch.cat([batch.attention_mask.new_ones(batch.size, length),
                          batch.attention_mask], dim=1)  # (B, L + T)
        positions = batch.position_ids + length
    else:
        mask, positions = batch.attention_mask, batch.position_ids  # (B, T)
    embeds = input_embeddings(lm, batch, **to_device)  # (B, T, d)
    dtype = model.get_input_embeddings().weight.dtype
    out = model(inputs_embeds=embeds.to(dtype), attention_mask=mask, position_ids=positions,
                use_cache=True, **extra)
    return out, mask, positions


@torch.no_grad()
def generate_ids(lm: LM, template: str | Template, inputs: list[str],
                 prompt: torch.Tensor | None = None, slot_ids: torch.Tensor | None = None,
                 max_new_tokens: int = 8, greedy: bool = True, temperature: float = 1.0,
                 seed: int = 0, precision: str = DEFAULT_PRECISION,
                 stop_at_newline: bool = True, deep_prompt: torch.Tensor | None = None
                 ) -> list[list[int]]:
    """The new token ids of each input, up to and including the token that stopped it (EOS
    or a newline), at most ``max_new_tokens``: one list per input. See ``generate``."""
    template = parse_template(getattr(template, "text", template))
    _check_request(template, inputs, prompt, slot_ids, deep_prompt, max_new_tokens, greedy,
                   temperature)
    model = frozen_model(lm, precision)
    batch = encode_prompts(lm.tokenizer, template, list(inputs)).to(lm.device)
    generator = None if greedy else torch.Generator(device=lm.device).manual_seed(seed)
    out, mask, positions = _first_forward(lm, model, batch, prompt, slot_ids, deep_prompt)
    done = torch.zeros(batch.size, dtype=torch.bool, device=lm.device)
    new = []
    for step in range(max_new_tokens):
        tokens = _next_tokens(out.logits[:, -1], greedy, temperature, generator)  # (B,)
        new.append(torch.where(done, -1, tokens))
        done |= _stops(lm, tokens, stop_at_newline)
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, mask.new_ones(batch.size, 1)], dim=1)  # (B, T + step + 1)
        positions = positions[:, -1:] + 1  # (B, 1): each row continues from its last position
        out = model(input_ids=tokens.unsqueeze(1), attention_mask=mask, position_ids=positions,
                    use_cache=True, **_cache_from(model, out))
    ids = torch.stack(new, dim=1).tolist()  # (B, N), -1 after a row stopped
    return [[t for t in row if t >= 0] for row in ids]


def generate(lm: LM, template: str | Template, inputs: list[str],
             prompt: torch.Tensor | None = None, slot_ids: torch.Tensor | None = None,
             max_new_tokens: int = 8, greedy: bool = True, temperature: float = 1.0,
             seed: int = 0, precision: str = DEFAULT_PRECISION,
             stop_at_newline: bool = True, deep_prompt: torch.Tensor | None = None
             ) -> list[str]:
    """Continue ``template`` filled with each of ``inputs`` (B subjects): one string each.

    ``template``: text or ``Template`` with ``{x}`` and optional ``[P]`` slots (L of them).
    ``prompt``: continuous prompt vectors (L, d) written into the slots; or ``slot_ids``: a
    discrete prompt's token ids (L,); or ``deep_prompt``: every layer's prefix (L, D), for a
    template whose slots all come first; or none, for a manual template without slots.
    The batch (B, T) is left-padded, with ``position_ids = cumsum(mask) - 1``; one forward over
    it fills the KV cache, then each of at most ``max_new_tokens`` steps feeds (B, 1) new ids.
    ``greedy`` takes the argmax; otherwise tokens are drawn from softmax(logits /
    ``temperature``) with a generator seeded by ``seed`` (same seed, same text). A row stops at
    EOS (not included in its text) or, with ``stop_at_newline``, at a token holding a newline
    (its text is cut before that newline); nothing else is stripped.
    """
    rows = generate_ids(lm, template, inputs, prompt, slot_ids, max_new_tokens, greedy,
                        temperature, seed, precision, stop_at_newline, deep_prompt)
    eos = lm.tokenizer.eos_token_id
    texts = [lm.tokenizer.decode([t for t in row if t != eos]) for row in rows]
    return [text.split("\n", 1)[0] if stop_at_newline else text for text in texts]
