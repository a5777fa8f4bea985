"""Exercise checks on discrete search:
HotFlip candidates, local optima, the capitalised-token filter."""

import math

import torch

from ptlib.course.exercises.core import (
    NotAnswered,
    as_tensor,
    call,
    check_number,
    embeddings_of,
    exercise,
    fail,
)
from ptlib.data import Fact
from ptlib.discrete import allowed_tokens
from ptlib.local_optimum import swap_gains
from ptlib.model import LM
from ptlib.proposers import random_candidates
from ptlib.template import Template


def _hotflip_reference(table: torch.Tensor, grad: torch.Tensor, allowed: torch.Tensor,
                       k: int) -> tuple[torch.Tensor, torch.Tensor]:
    gain = (table @ (-grad.T)).T  # (L, V)
    gain = gain.masked_fill(~allowed, -math.inf)
    return gain, gain.topk(k, dim=1).indices  # (L, V), (L, k)


@exercise("HotFlip candidates for every slot")
def check_hotflip(hotflip_fn, lm: LM, grad: torch.Tensor, allowed: torch.Tensor, k: int
                  ) -> None:
    """``hotflip_fn(E, grad (L, d), allowed (V,), k)`` -> (L, k) ids, best first."""
    generator = torch.Generator().manual_seed(0)
    small = torch.randn(30, 5, generator=generator)
    small_allowed = torch.rand(30, generator=generator) > 0.3
    cases = [("the notebook's gradient", embeddings_of(lm), grad.detach().float().cpu(),
              allowed.cpu(), k),
             ("a small random case", small, torch.randn(3, 5, generator=generator),
              small_allowed, 4)]
    for first, (label, table, g, mask, kk) in enumerate(cases):
        got = call(hotflip_fn, table.clone(), g.clone(), mask.clone(), kk, first=first == 0)
        ids = as_tensor(got, "candidates").long()
        gain, ref = _hotflip_reference(table, g, mask, kk)
        if tuple(ids.shape) != tuple(ref.shape):
            fail(f"candidates on {label} have shape {tuple(ids.shape)}, expected "
                  f"{tuple(ref.shape)}: one row of k token ids per slot")
        if (ids < 0).any() or (ids >= len(table)).any():
            fail(f"candidates on {label} hold ids outside 0..|V|-1")
        for slot in range(len(g)):
            row = ids[slot]
            if not mask[row].all():
                fail(f"slot {slot} on {label}: a candidate is a token that is not allowed")
            if len(set(row.tolist())) != kk:
                fail(f"slot {slot} on {label}: the candidates repeat a token")
            kept, best = gain[slot, row], gain[slot, ref[slot]]
            if not torch.allclose(kept.sort(descending=True).values, best, atol=1e-5):
                fail(f"slot {slot} on {label}: these are not the k allowed tokens with the "
                      "largest E @ (-grad) (did you use the gradient's sign and the right slot?)")
            if not torch.allclose(kept, best, atol=1e-5):
                fail(f"slot {slot} on {label}: the right tokens, in the wrong order "
                      "(best first)")


def _climb(lm: LM, template: Template, facts: list[Fact], prompt: torch.Tensor,
           candidates: torch.Tensor, gains: torch.Tensor, rounds: int = 12
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy ascent over single swaps from ``candidates`` (``gains``: those of ``prompt``)
    until none helps: (prompt, its gains)."""
    for _ in range(rounds):
        best = int(gains.argmax())
        if gains.view(-1)[best] <= 0:
            break
        slot, column = divmod(best, candidates.shape[1])
        prompt = prompt.clone()
        prompt[slot] = candidates[slot, column]
        gains = swap_gains(lm, template, facts, prompt, candidates)  # (L, k)
    return prompt, gains


def _as_bool(got) -> bool:
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = bool(got.item())
    if not isinstance(got, bool):
        fail(f"return True or False, got {type(got).__name__}")
    return got


@exercise("is it a local optimum?")
def check_local_optimum(optimum_fn, lm: LM, template: Template, facts: list[Fact],
                        slot_ids: torch.Tensor, allowed: torch.Tensor, k: int = 3,
                        seed: int = 0) -> None:
    """``optimum_fn(lm, template, facts, slot_ids (L,), candidates (L, k))`` -> bool.

    Cases: the given prompt with random allowed candidates; the prompt a greedy ascent over
    those candidates ends at (a local optimum by construction); and that optimum with one slot
    moved to a worse candidate, whose way back is among the candidates (not an optimum).
    """
    margin = 1e-5  # gains closer to 0 than this are too close to call
    generator = torch.Generator().manual_seed(seed)
    prompt = slot_ids.detach().cpu().long()
    candidates = torch.stack([random_candidates(allowed.cpu(), k, generator)
                              for _ in range(len(prompt))])  # (L, k)
    got = _as_bool(call(optimum_fn, lm, template, facts, prompt.clone(), candidates.clone()))
    gains = swap_gains(lm, template, facts, prompt, candidates)  # (L, k)
    top = gains.max().item()
    if abs(top) > margin and got != (top < 0):
        fail("wrong for the prompt you were given: a prompt is a local optimum when no "
              "single-slot swap from the candidates raises the mean log P(y | x, P) over the facts")
    optimum, gains = _climb(lm, template, facts, prompt, candidates, gains)
    # The ascent took some candidates into the prompt: swapping them in again changes nothing,
    # so replace them by their slot's worst candidate.
    cleaned, worse = candidates.clone(), gains.clone()
    for slot in range(len(prompt)):
        idle = gains[slot] > -margin
        cleaned[slot, idle] = candidates[slot, int(gains[slot].argmin())]
        worse[slot, idle] = gains[slot].min()
    if worse.max().item() < -margin:
        got = _as_bool(call(optimum_fn, lm, template, facts, optimum.clone(), cleaned.clone(),
                             first=False))
        if not got:
            fail("wrong for a prompt where no swap helps (every swap lowers the mean log P)")
        slot, column = divmod(int(worse.argmax()), k)  # the least harmful swap
        moved = optimum.clone()
        moved[slot] = cleaned[slot, column]
        back = cleaned.clone()
        back[slot, column] = optimum[slot]  # the way back, which helps
        got = _as_bool(call(optimum_fn, lm, template, facts, moved, back, first=False))
        if got:
            fail(f"wrong for a prompt where swapping slot {slot} back helps: check every "
                  "slot's candidates, and compare with the prompt's own score")


@exercise("the capitalised-token filter")
def check_capitalised_count(answer, lm: LM, gold_objects: list[str]) -> None:
    if answer is None:
        raise NotAnswered
    strict = allowed_tokens(lm, gold_objects)
    loose = allowed_tokens(lm, gold_objects, exclude_capitalised=False)
    check_number(answer, int(loose.sum() - strict.sum()), 0.0, "the count",
            "count the True entries of both masks and subtract")
