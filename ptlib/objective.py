"""The objective every method optimises: log P(y | x, P) of the target tokens.

``input_embeddings`` writes a prompt into the slots (token ids for discrete methods, vectors for
continuous ones), ``target_logits`` runs the frozen LM and applies the LM head only at the
positions that predict target tokens, and ``score`` turns those logits into per-example
log-likelihood, exact-match P@1 under teacher forcing and the rank of the first target token.
"""

from contextlib import nullcontext
from dataclasses import dataclass

import torch

from ptlib.data import Fact
from ptlib.errors import ConfigError, DataError, TemplateError
from ptlib.model import LM
from ptlib.template import Batch, Template, build_batch


def autocast_context(device: torch.device, precision: str):
    """bf16 autocast of the frozen LM for ``precision="bf16"``; nothing for ``"fp32"``."""
    if precision == "fp32":
        return nullcontext()
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise ConfigError(f"precision must be 'fp32' or 'bf16', got {precision!r}")


def _check_slots(batch: Batch, num_slots: int) -> None:
    expected = int(batch.slot_index.max()) + 1
    if num_slots != expected:
        raise TemplateError(f"the prompt has {num_slots} slots but the template has {expected}")


def input_embeddings(lm: LM, batch: Batch, prompt: torch.Tensor | None = None,
                     slot_ids: torch.Tensor | None = None) -> torch.Tensor:
    """H_0 for the batch: (B, T, d).

    ``slot_ids``: (L,) or (B, L) token ids written into the slots (discrete prompts).
    ``prompt``: (L, d) or (B, L, d) vectors written into the slots (continuous prompts); the
    result stays differentiable with respect to it.
    """
    ids = batch.input_ids
    in_slot = batch.slot_index >= 0  # (B, T)
    if prompt is None and slot_ids is None and bool(in_slot.any()):
        raise TemplateError("the template has prompt slots [P] but no prompt was given: pass "
                            "prompt= (vectors) or slot_ids= (tokens), or use a manual template")
    slot = batch.slot_index.clamp(min=0)  # (B, T)
    if slot_ids is not None:
        _check_slots(batch, slot_ids.shape[-1])
        per_row = slot_ids.expand(batch.size, -1).to(ids.device)  # (B, L)
        ids = torch.where(in_slot, per_row.gather(1, slot), ids)
    embeds = lm.model.get_input_embeddings()(ids)  # (B, T, d)
    if prompt is None:
        return embeds
    _check_slots(batch, prompt.shape[-2])
    per_row = prompt.expand(batch.size, -1, -1)  # (B, L, d)
    gathered = per_row.gather(1, slot.unsqueeze(-1).expand(-1, -1, embeds.shape[-1]))
    return torch.where(in_slot.unsqueeze(-1), gathered.to(embeds.dtype), embeds)


def target_logits(lm: LM, batch: Batch, embeds: torch.Tensor,
                  precision: str = "fp32") -> torch.Tensor:
    """Logits at the target-predicting positions only: (B, Ty, V), fp32.

    One call of the model's own forward, so whatever it applies after its LM head (Gemma-2's
    final logit soft-capping, a logit scale) is applied here too; ``logits_to_keep`` asks it for
    the K positions some row needs instead of full (B, T, V) logits.
    """
    kept = batch.target_positions.unique()  # (K,) sorted
    with autocast_context(lm.device, precision):
        logits = lm.model(
            inputs_embeds=embeds,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            logits_to_keep=kept,
            use_cache=False,
        ).logits  # (B, K, V)
    where = torch.searchsorted(kept, batch.target_positions)  # (B, Ty) index into K
    return logits.gather(1, where.unsqueeze(-1).expand(-1, -1, logits.shape[-1])).float()


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
                 slot_ids: torch.Tensor | None = None, precision: str = "fp32") -> Scores:
    """Forward one batch with a prompt (vectors, ids, or none for a manual template)."""
    embeds = input_embeddings(lm, batch, prompt=prompt, slot_ids=slot_ids)
    return score(target_logits(lm, batch, embeds, precision), batch)


def make_batch(lm: LM, template: Template, facts: list[Fact],
               padding_side: str = "left") -> Batch:
    """``build_batch`` for facts, on the LM's device."""
    batch = build_batch(lm.tokenizer, template, [f.x for f in facts], [f.y for f in facts],
                        padding_side)
    return batch.to(lm.device)


@dataclass
class Evaluation:
    """Metrics over a list of facts."""

    p_at_1: float           # fraction of facts whose whole target is the greedy argmax
    nll: float              # mean over facts of -log P(y | x, P)
    mean_first_rank: float  # mean rank of the first target token (1 is best)
    exact: list[bool]       # per fact, in input order

    def as_dict(self) -> dict:
        return {"p_at_1": self.p_at_1, "nll": self.nll, "mean_first_rank": self.mean_first_rank}


@torch.no_grad()
def evaluate(lm: LM, template: Template, facts: list[Fact], prompt: torch.Tensor | None = None,
             slot_ids: torch.Tensor | None = None, batch_size: int = 32,
             precision: str = "fp32") -> Evaluation:
    """P@1, NLL and first-token rank of a prompt over ``facts``, in batches."""
    if not facts:
        raise DataError("evaluate needs at least one fact")
    logprob, exact, ranks = [], [], []
    for start in range(0, len(facts), batch_size):
        batch = make_batch(lm, template, facts[start : start + batch_size])
        scores = batch_scores(lm, batch, prompt=prompt, slot_ids=slot_ids, precision=precision)
        logprob.append(scores.logprob.cpu())
        exact.append(scores.exact.cpu())
        ranks.append(scores.first_rank.cpu())
    logprob, exact, ranks = torch.cat(logprob), torch.cat(exact), torch.cat(ranks)
    return Evaluation(
        p_at_1=exact.float().mean().item(),
        nll=-logprob.mean().item(),
        mean_first_rank=ranks.float().mean().item(),
        exact=exact.tolist(),
    )


@torch.no_grad()
def score_candidates(lm: LM, batch: Batch, candidates: torch.Tensor, max_rows: int = 512,
                     precision: str = "fp32") -> torch.Tensor:
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
