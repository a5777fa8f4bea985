"""Is a discrete prompt a local optimum of the greedy search that found it?

Greedy coordinate ascent (AutoPrompt, random search) stops changing a prompt when no swap it
tries improves the objective on the facts it scores. That a search *stopped* says little: it may
have run out of budget, or its sampled batches may have hidden a better swap. This module asks
the question directly: every prompt that differs in exactly one slot, taking one of that slot's
top-k HotFlip candidates (the gradient on all the facts), scored on all the facts. Only when
none beats the prompt is it a local optimum *in AutoPrompt's neighbourhood* (of size L x k; a
swap outside the top-k could still help).
"""

from dataclasses import dataclass

import torch

from ptlib.data import Fact
from ptlib.model import LM
from ptlib.objective import make_batch, score_candidates
from ptlib.precision import DEFAULT_PRECISION
from ptlib.proposers import hotflip_candidates, one_slot_swaps, slot_gradient
from ptlib.template import Template


def swap_gains(lm: LM, template: Template, facts: list[Fact], slot_ids: torch.Tensor,
               pool: torch.Tensor, precision: str = DEFAULT_PRECISION) -> torch.Tensor:
    """Change in mean log P(y | x, P) over ``facts`` when slot i of ``slot_ids`` (L,) takes
    ``pool[i, j]`` (pool: (L, k) token ids): (L, k), positive where the swap helps.

    All 1 + L k prompts run through ``score_candidates`` on one batch of the facts, so the
    prompt's own score and its neighbours' come from the same forwards.
    """
    num, width = pool.shape
    slot_ids = slot_ids.detach().cpu().long()
    swaps = [one_slot_swaps(slot_ids, slot, pool[slot]) for slot in range(num)]  # (k, L) each
    trials = torch.cat([slot_ids[None], *swaps])  # (1 + L k, L); row 0 is the prompt itself
    values = score_candidates(lm, make_batch(lm, template, facts), trials.to(lm.device),
                              precision=precision).cpu()  # (1 + L k,)
    return (values[1:] - values[0]).view(num, width)


@dataclass
class NeighbourhoodCheck:
    """The outcome of ``check_neighbourhood`` for one prompt."""

    candidates: torch.Tensor  # (L, k) token ids tried in each slot (the prompt's own excluded)
    gains: torch.Tensor       # (L, k) change in mean log P over the facts per single swap
    facts: int                # facts scored

    @property
    def improving(self) -> int:
        """Single swaps that raise the objective."""
        return int((self.gains > 0).sum())

    @property
    def is_local_optimum(self) -> bool:
        """True when no single swap among the candidates raises the objective."""
        return self.improving == 0

    @property
    def best_swap(self) -> tuple[int, int, float]:
        """(slot, token id, gain) of the swap with the largest gain."""
        slot, column = divmod(int(self.gains.argmax()), self.gains.shape[1])
        return slot, int(self.candidates[slot, column]), float(self.gains[slot, column])

    def describe(self) -> str:
        """One line: a local optimum in the neighbourhood, or how many swaps improve."""
        size = f"{self.gains.numel()} single swaps (top-{self.gains.shape[1]} HotFlip " \
               f"candidates in each of {self.gains.shape[0]} slots) on {self.facts} facts"
        if self.is_local_optimum:
            return f"local optimum in AutoPrompt's neighbourhood: none of {size} improves it"
        slot, _, gain = self.best_swap
        return (f"NOT a local optimum: {self.improving} of {size} improve it, the best "
                f"(slot {slot}) by {gain:+.3f} mean log P")


def check_neighbourhood(lm: LM, template: Template, facts: list[Fact], slot_ids: torch.Tensor,
                        allowed: torch.Tensor, k: int = 100, precision: str = DEFAULT_PRECISION
                        ) -> NeighbourhoodCheck:
    """Score every single-slot swap of ``slot_ids`` (L,) among each slot's top-``k`` allowed
    HotFlip candidates, the gradient and the scores both over all of ``facts``.

    ``allowed``: (V,) bool, the tokens a slot may hold (``discrete.allowed_tokens``). A slot's
    current token is never its own candidate (that swap changes nothing).
    """
    slot_ids = slot_ids.detach().cpu().long()
    k = min(k, int(allowed.sum()) - 1)  # every slot gets the same number of candidates
    grad = slot_gradient(lm, template, facts, slot_ids, precision)  # (L, d)
    pool = []
    for slot in range(len(slot_ids)):
        others = allowed.clone()
        others[slot_ids[slot]] = False
        pool.append(hotflip_candidates(lm, grad[slot], others, k))
    candidates = torch.stack(pool)  # (L, k)
    gains = swap_gains(lm, template, facts, slot_ids, candidates, precision)
    return NeighbourhoodCheck(candidates, gains, len(facts))
