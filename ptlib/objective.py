"""The objective every method optimises: log P(y | x, P) of the target tokens.

``input_embeddings`` writes a prompt into the slots (token ids for discrete methods, vectors for
continuous ones), ``target_logits`` runs the frozen LM on the batch's real tokens packed
without padding (``ptlib.packing``) and applies the LM head only at the positions that predict
target tokens, and ``score`` turns those logits into per-example log-likelihood, exact match
(EM) under teacher forcing and the rank of the first target token.
"""

import warnings
from dataclasses import dataclass, field

import torch

from ptlib.data import Fact
from ptlib.deep_prompt import (
    check_deep_prompt,
    deep_forward_arguments,
    deep_shape,
    prefix_length,
    without_slots,
)
from ptlib.errors import ConfigError, DataError, TemplateError
from ptlib.model import LM
from ptlib.packing import pack
from ptlib.precision import DEFAULT_PRECISION, frozen_model
from ptlib.template import Batch, Template, build_batch, parse_template


def _check_slots(batch: Batch, num_slots: int) -> None:
    expected = int(batch.slot_index.max()) + 1
    if num_slots != expected:
        raise TemplateError(f"the prompt has {num_slots} slots but the template has {expected}")


def _slot_token_ids(batch: Batch, slot_ids: torch.Tensor | None) -> torch.Tensor:
    """The batch's input ids with ``slot_ids`` (L,) or (B, L) written into the slots: (B, T)."""
    if slot_ids is None:
        return batch.input_ids
    _check_slots(batch, slot_ids.shape[-1])
    per_row = slot_ids.expand(batch.size, -1).to(batch.input_ids.device)  # (B, L)
    slot = batch.slot_index.clamp(min=0)  # (B, T)
    return torch.where(batch.slot_index >= 0, per_row.gather(1, slot), batch.input_ids)


def _place_prompt(embeds: torch.Tensor, slot_index: torch.Tensor, prompt: torch.Tensor,
                  size: int) -> torch.Tensor:
    """``embeds`` (..., d) with the prompt (L, d), or one per example (B, L, d), written where
    ``slot_index`` (...) marks a slot.

    Each of the ``size`` examples holds the L slots in order, and its tokens come before the
    next example's in both the padded and the packed layout, so the k-th slot token in reading
    order takes row k of the (B * L, d) example-major prompt rows. Only those B * L rows are
    written: the gradient of a shared prompt is a sum over the examples, not an accumulation
    of every token of the batch into L rows."""
    rows = prompt.expand(size, -1, -1).reshape(-1, prompt.shape[-1])  # (B * L, d)
    not_slot = (slot_index < 0).reshape(-1).to(torch.uint8)
    where = torch.argsort(not_slot, stable=True)[: rows.shape[0]]  # slot tokens, in order
    flat = embeds.reshape(-1, embeds.shape[-1]).index_put((where,), rows.to(embeds.dtype))
    return flat.view_as(embeds)


def _write_prompt(embeds: torch.Tensor, batch: Batch, prompt: torch.Tensor) -> torch.Tensor:
    """``embeds`` (B, T, d) with the prompt (L, d) or (B, L, d) written into the slots."""
    _check_slots(batch, prompt.shape[-2])
    return _place_prompt(embeds, batch.slot_index, prompt, batch.size)


def _require_prompt(batch: Batch, prompt, slot_ids, deep_prompt=None) -> None:
    """Exactly one prompt for a template with slots, none for a manual one."""
    given = sum(p is not None for p in (prompt, slot_ids, deep_prompt))
    if given > 1:
        raise ConfigError("give one prompt: prompt= (vectors), slot_ids= (tokens) or "
                          "deep_prompt= (every layer's prefix), not several")
    if not given and bool((batch.slot_index >= 0).any()):
        raise TemplateError("the template has prompt slots [P] but no prompt was given: pass "
                            "prompt= (vectors), slot_ids= (tokens) or deep_prompt=, or use a "
                            "manual template")


def input_embeddings(lm: LM, batch: Batch, prompt: torch.Tensor | None = None,
                     slot_ids: torch.Tensor | None = None) -> torch.Tensor:
    """H_0 for the batch: (B, T, d).

    ``slot_ids``: (L,) or (B, L) token ids written into the slots (discrete prompts).
    ``prompt``: (L, d) or (B, L, d) vectors written into the slots (continuous prompts); the
    result stays differentiable with respect to it.
    """
    _require_prompt(batch, prompt, slot_ids)
    embeds = lm.model.get_input_embeddings()(_slot_token_ids(batch, slot_ids))  # (B, T, d)
    return embeds if prompt is None else _write_prompt(embeds, batch, prompt)


def _hidden_at_targets(targets: torch.Tensor):
    """A forward hook for the decoder body: its last hidden states (R, C, d) cut down to the
    target-predicting positions, (1, B * Ty, d), so the LM head runs there only."""
    def hook(_module, _args, output):
        hidden = output.last_hidden_state
        output.last_hidden_state = hidden.reshape(1, -1, hidden.shape[-1])[:, targets.reshape(-1)]
        return output
    return hook


def _packed_logits(model: torch.nn.Module, batch: Batch, ids: torch.Tensor | None = None,
                   embeds: torch.Tensor | None = None, prompt: torch.Tensor | None = None,
                   deep_prompt: torch.Tensor | None = None) -> torch.Tensor:
    """One call of the model's own forward on the batch packed without padding
    (``ptlib.packing``): token ``ids`` (B, T), with ``prompt`` (L, d) or (B, L, d) written into
    the slots by a hook on the input embedding, or H_0 ``embeds`` (B, T, d); or with a
    ``deep_prompt`` (L, D) as every layer's prefix (``ptlib.deep_prompt``; the slots are taken
    out of the batch). The LM head runs at the target-predicting positions only. Returns
    (B, Ty, V), fp32."""
    if deep_prompt is not None:
        batch = without_slots(batch)
    packing = pack(batch)
    hooks = [model.get_decoder().register_forward_hook(_hidden_at_targets(packing.targets))]
    if prompt is not None:
        slot_index = packing.gather(batch.slot_index)  # (R, C)
        hooks.append(model.get_input_embeddings().register_forward_hook(
            lambda _module, _args, out: _place_prompt(out, slot_index, prompt, batch.size)))
    inputs = ({"input_ids": packing.gather(ids)} if embeds is None
              else {"inputs_embeds": packing.gather(embeds)})
    inputs |= ({"position_ids": packing.position_ids} if deep_prompt is None
               else deep_forward_arguments(model, deep_prompt, packing.position_ids))
    try:
        logits = model(**inputs, use_cache=False).logits
    finally:
        for hook in hooks:
            hook.remove()
    return logits.view(*batch.target_ids.shape, -1).float()  # (B, Ty, V)


def target_logits(lm: LM, batch: Batch, embeds: torch.Tensor,
                  precision: str = DEFAULT_PRECISION) -> torch.Tensor:
    """Logits at the target-predicting positions only, given H_0 ``embeds`` (B, T, d):
    (B, Ty, V), fp32; entries past a target's length (``target_mask`` False) are unspecified.

    One call of the model's own forward, so whatever it applies after its LM head (Gemma-2's
    final logit soft-capping, a logit scale) is applied here too; the head runs only at the
    positions that predict a target token, and no padding is computed (``ptlib.packing``).
    """
    model = frozen_model(lm, precision)
    dtype = model.get_input_embeddings().weight.dtype
    return _packed_logits(model, batch, embeds=embeds.to(dtype))


def prompted_logits(lm: LM, batch: Batch, prompt: torch.Tensor | None = None,
                    slot_ids: torch.Tensor | None = None, precision: str = DEFAULT_PRECISION,
                    deep_prompt: torch.Tensor | None = None) -> torch.Tensor:
    """``target_logits(lm, batch, input_embeddings(lm, batch, prompt, slot_ids))`` as ONE call
    of the model: (B, Ty, V), fp32.

    The token ids go in, and a forward hook on the input embedding writes the prompt vectors
    into the slots, so embed -> body -> head run inside the model's own call. That is what lets
    a sharded model (FSDP) gather its embedding table, and it is the path training and
    evaluation use everywhere. A ``deep_prompt`` (L, D) goes in as every layer's prefix
    instead (``ptlib.deep_prompt``): the batch's L slots must open every example.
    """
    _require_prompt(batch, prompt, slot_ids, deep_prompt)
    model = frozen_model(lm, precision)
    if deep_prompt is not None:
        _check_slots(batch, deep_prompt.shape[0])
        check_deep_prompt(deep_prompt, deep_shape(model), deep_prompt.shape[0])
        return _packed_logits(model, batch, ids=batch.input_ids, deep_prompt=deep_prompt)
    ids = _slot_token_ids(batch, slot_ids)
    if prompt is not None:
        _check_slots(batch, prompt.shape[-2])
    return _packed_logits(model, batch, ids=ids, prompt=prompt)


@dataclass
class Scores:
    """Per-example results of one batch."""

    logprob: torch.Tensor     # (B,) sum over target tokens of log P(y_j | x, P, y_<j)
    exact: torch.Tensor       # (B,) bool: every target token is the argmax (teacher forcing)
    first_rank: torch.Tensor  # (B,) long: 1 + number of tokens scored above the first target


def score(logits: torch.Tensor, batch: Batch) -> Scores:
    """Score ``logits`` (B, Ty, V) against the batch's targets."""
    logp = torch.log_softmax(logits, dim=-1)  # (B, Ty, V)
    gold = batch.target_ids.unsqueeze(-1)  # (B, Ty, 1)
    token_logp = logp.gather(-1, gold).squeeze(-1) * batch.target_mask  # (B, Ty)
    hit = (logits.argmax(dim=-1) == batch.target_ids) | ~batch.target_mask  # (B, Ty)
    first_gold = logits[:, 0].gather(-1, gold[:, 0])  # (B, 1)
    first_rank = 1 + (logits[:, 0] > first_gold).sum(dim=-1)  # (B,)
    return Scores(token_logp.sum(dim=-1), hit.all(dim=-1), first_rank)


def batch_scores(lm: LM, batch: Batch, prompt: torch.Tensor | None = None,
                 slot_ids: torch.Tensor | None = None, precision: str = DEFAULT_PRECISION,
                 deep_prompt: torch.Tensor | None = None) -> Scores:
    """Forward one batch with a prompt (vectors, ids, a deep prompt, or none for a manual
    template)."""
    return score(prompted_logits(lm, batch, prompt, slot_ids, precision, deep_prompt), batch)


def make_batch(lm: LM, template: Template, facts: list[Fact],
               padding_side: str = "left") -> Batch:
    """``build_batch`` for facts, on the LM's device."""
    batch = build_batch(lm.tokenizer, template, [f.x for f in facts], [f.y for f in facts],
                        padding_side)
    return batch.to(lm.device)


@dataclass
class Evaluation:
    """Metrics over a list of facts.

    ``exact_match`` (EM): every object token is the greedy argmax under teacher forcing. The
    papers' P@1 (LAMA, P-Tuning) scores the first object token only: ``first_token_p_at_1``.
    EM and the first-token metrics take the best over a fact's accepted objects
    (``Fact.accepted``: ``y`` and its alternatives); NLL is always on the canonical ``y``, the
    object training targets.
    """

    exact_match: float      # fraction of facts with some accepted object wholly argmax
    nll: float              # mean over facts of -log P(y | x, P), canonical y
    mean_first_rank: float  # mean over facts of the best first-token rank (1 is best)
    exact: list[bool]       # per fact, in input order: exact match of some accepted object
    first_token_p_at_1: float = float("nan")  # fraction of facts with best first-token rank 1
    first_rank: list[int] = field(default_factory=list)  # per fact: best first-token rank

    @property
    def p_at_1(self) -> float:
        """Deprecated name of ``exact_match`` (which is not the papers' first-token P@1)."""
        warnings.warn("Evaluation.p_at_1 is exact match: use Evaluation.exact_match (the "
                      "papers' P@1 is first_token_p_at_1)", DeprecationWarning, stacklevel=2)
        return self.exact_match

    def as_dict(self) -> dict:
        """The summary metrics, by their names."""
        return {"exact_match": self.exact_match, "first_token_p_at_1": self.first_token_p_at_1,
                "nll": self.nll, "mean_first_rank": self.mean_first_rank}


def _object_rows(facts: list[Fact]) -> tuple[list[Fact], torch.Tensor]:
    """One (subject, object) row per accepted object, canonical first: (rows, (R,) fact index).

    A list of facts without alternatives comes back as itself, so it costs nothing extra.
    """
    if not any(f.alternatives for f in facts):
        return facts, torch.arange(len(facts))
    rows = [Fact(f.x, obj) for f in facts for obj in f.accepted]
    owner = [i for i, f in enumerate(facts) for _ in f.accepted]
    return rows, torch.tensor(owner)


@torch.no_grad()
def evaluate(lm: LM, template: str | Template, facts: list[Fact],
             prompt: torch.Tensor | None = None,
             slot_ids: torch.Tensor | None = None, batch_size: int = 32,
             precision: str = DEFAULT_PRECISION, deep_prompt: torch.Tensor | None = None
             ) -> Evaluation:
    """Exact match, NLL and first-token rank of a prompt over ``facts``, in batches, under
    ``template`` (text or ``Template``): vectors ``prompt`` (L, d), token ids ``slot_ids``
    (L,), a ``deep_prompt`` (L, D) (its template's slots must all come first), or none for a
    manual template.

    Each accepted object of a fact is one row, scored in the same batches as any other; the
    per-fact exact match and first-token rank are the best over the fact's rows, the NLL that
    of its canonical row.
    """
    if not facts:
        raise DataError("evaluate needs at least one fact")
    template = parse_template(getattr(template, "text", template))
    vectors = prompt if prompt is not None else deep_prompt
    if vectors is not None and not torch.isfinite(vectors).all():
        raise ConfigError("the prompt holds non-finite values (NaN or inf), so it cannot be "
                          "scored: evaluate a prompt from a run that stayed finite")
    if deep_prompt is not None:
        prefix_length(template)
    rows, owner = _object_rows(facts)
    logprob, exact, ranks = [], [], []
    for start in range(0, len(rows), batch_size):
        batch = make_batch(lm, template, rows[start : start + batch_size])
        scores = batch_scores(lm, batch, prompt=prompt, slot_ids=slot_ids, precision=precision,
                              deep_prompt=deep_prompt)
        logprob.append(scores.logprob.cpu())
        exact.append(scores.exact.cpu())
        ranks.append(scores.first_rank.cpu())
    logprob, exact, ranks = torch.cat(logprob), torch.cat(exact), torch.cat(ranks)  # (R,)
    if len(rows) != len(facts):  # best over each fact's rows; NLL from its first (canonical) row
        first_row = torch.ones_like(owner, dtype=torch.bool)
        first_row[1:] = owner[1:] != owner[:-1]
        logprob = logprob[first_row]
        exact = torch.zeros(len(facts), dtype=torch.bool).scatter_reduce(
            0, owner, exact, reduce="amax")
        ranks = torch.full((len(facts),), ranks.max().item(), dtype=ranks.dtype).scatter_reduce(
            0, owner, ranks, reduce="amin")
    return Evaluation(
        exact_match=exact.float().mean().item(),
        nll=-logprob.mean().item(),
        mean_first_rank=ranks.float().mean().item(),
        exact=exact.tolist(),
        first_token_p_at_1=(ranks == 1).float().mean().item(),
        first_rank=ranks.tolist(),
    )


@torch.no_grad()
def score_candidates(lm: LM, batch: Batch, candidates: torch.Tensor, max_rows: int = 512,
                     precision: str = DEFAULT_PRECISION) -> torch.Tensor:
    """Mean log P(y | x, P) over the batch for each of K discrete prompts at once: (K,).

    ``candidates``: (K, L) slot token ids. The K x B (prompt, example) rows run in as few
    forwards as ``max_rows`` allows, instead of one forward per candidate.
    """
    num, size = candidates.shape[0], batch.size
    per_forward = max(1, max_rows // size)
    means = []
    for start in range(0, num, per_forward):
        chunk = candidates[start : start + per_forward]  # (k, L)
        tiled = _tile(batch, chunk.shape[0])
        rows = chunk.repeat_interleave(size, dim=0)  # (k * B, L)
        scores = batch_scores(lm, tiled, slot_ids=rows, precision=precision)
        means.append(scores.logprob.view(chunk.shape[0], size).mean(dim=1))
    return torch.cat(means)


def _tile(batch: Batch, times: int) -> Batch:
    """The batch repeated ``times`` over: rows ordered prompt-major (k * B + b)."""
    fields = batch.__dataclass_fields__
    return Batch(*(getattr(batch, f).repeat(times, *([1] * (getattr(batch, f).dim() - 1)))
                   for f in fields))
