"""How a discrete search proposes candidate prompts: the registry and its proposers.

A proposer gets the search's state (the current slot tokens, the train facts, the tokens a slot
may hold, a generator) and returns whole candidate prompts (K, L) with the sequence forwards it
spent making them; the search loop (``ptlib.discrete``) scores them and keeps a better one.

- ``autoprompt``: one random slot, its top-k tokens by the first-order estimate E @ (-grad) of
  the loss change (AutoPrompt's HotFlip step);
- ``gcg``: each slot's top-k tokens by the same estimate, then K random single swaps spread
  over all slots (Greedy Coordinate Gradient, Zou et al. 2023); candidates whose slot tokens
  do not survive decoding and re-tokenising are dropped;
- ``random``: one random slot, k allowed tokens drawn uniformly (no gradient: its cost is 0).

A backward pass counts as two forwards (its usual cost), so a gradient on B facts costs 3 B.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ptlib.data import Fact
from ptlib.model import LM
from ptlib.objective import batch_scores, make_batch
from ptlib.precision import DEFAULT_PRECISION
from ptlib.template import SLOT, Template

if TYPE_CHECKING:
    from ptlib.discrete import SearchConfig


@dataclass
class SearchState:
    """What a proposer sees: the current prompt and everything it may use to improve it."""

    lm: LM
    template: Template
    train_facts: list[Fact]
    allowed: torch.Tensor        # (V,) bool: tokens a slot may hold
    config: "SearchConfig"
    generator: torch.Generator   # the search's only source of randomness
    slots: torch.Tensor          # (L,) the current prompt's slot tokens


@dataclass
class Proposal:
    """Candidate prompts to score against the current one."""

    prompts: torch.Tensor  # (K, L) slot tokens; K may be 0 (nothing worth scoring)
    forwards: int          # sequence forwards spent making the proposal


Proposer = Callable[[SearchState], Proposal]
PROPOSERS: dict[str, Proposer] = {}


def register_proposer(name: str):
    """Decorator: make a proposer usable as ``SearchConfig(method=name)``."""
    def register(proposer: Proposer) -> Proposer:
        PROPOSERS[name] = proposer
        return proposer
    return register


def sample_facts(facts: list[Fact], size: int, generator: torch.Generator) -> list[Fact]:
    """``size`` facts drawn without replacement (all of them when there are fewer)."""
    if size >= len(facts):
        return list(facts)
    return [facts[int(i)] for i in torch.randperm(len(facts), generator=generator)[:size]]


def slot_gradient(lm: LM, template: Template, facts: list[Fact], slot_ids: torch.Tensor,
                  precision: str = DEFAULT_PRECISION) -> torch.Tensor:
    """Gradient of the mean loss with respect to the slot embeddings: (L, d)."""
    batch = make_batch(lm, template, facts)
    prompt = lm.embeddings[slot_ids.to(lm.device)].detach().float().requires_grad_(True)
    loss = -batch_scores(lm, batch, prompt=prompt, precision=precision).logprob.mean()
    (grad,) = torch.autograd.grad(loss, prompt)
    return grad


def hotflip_candidates(lm: LM, grad_at_slot: torch.Tensor, allowed: torch.Tensor, k: int
                       ) -> torch.Tensor:
    """Top-k allowed tokens by E @ (-grad): the largest first-order loss decrease. (k,)"""
    return hotflip_pools(lm, grad_at_slot[None], allowed, k)[0]


def hotflip_pools(lm: LM, grad: torch.Tensor, allowed: torch.Tensor, k: int) -> torch.Tensor:
    """Each slot's top-k allowed tokens by E @ (-grad_i), for grad (L, d): (L, k)."""
    gain = -grad.float() @ lm.embeddings.float().T  # (L, V)
    gain = gain.masked_fill(~allowed.to(gain.device), -torch.inf)
    return gain.topk(min(k, int(allowed.sum())), dim=1).indices.cpu()


def random_candidates(allowed: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k distinct allowed tokens drawn uniformly: (k,)."""
    pool = allowed.nonzero().squeeze(1)
    return pool[torch.randperm(len(pool), generator=generator)[:k]]


def one_slot_swaps(slot_ids: torch.Tensor, position: int, tokens: torch.Tensor) -> torch.Tensor:
    """The prompt ``slot_ids`` (L,) with slot ``position`` set to each of ``tokens`` (k,):
    (k, L), one prompt per row."""
    prompts = slot_ids.repeat(len(tokens), 1)
    prompts[:, position] = tokens.to(prompts.device)
    return prompts


def slot_runs(template: Template) -> list[range]:
    """The template's runs of consecutive slots (whitespace between slots is dropped, as in
    ``Template.chunks``), as ranges of slot indices: ``"[P][P] {x} [P]"`` gives
    ``[range(0, 2), range(2, 3)]``."""
    runs, start, index = [], None, 0
    for piece in template.pieces:
        if piece == SLOT:
            start = index if start is None else start
            index += 1
        elif start is not None and piece.strip():  # text or the input: the run ends
            runs.append(range(start, index))
            start = None
    return runs + ([range(start, index)] if start is not None else [])


def survives_retokenisation(tokenizer, template: Template, slot_ids: torch.Tensor) -> bool:
    """True when each run of consecutive slot tokens (L,) decodes to text that tokenises back
    to the same ids: a prompt that could be written down and read back as itself."""
    ids = [int(t) for t in slot_ids]
    for run in slot_runs(template):
        tokens = ids[run.start:run.stop]
        if tokenizer(tokenizer.decode(tokens), add_special_tokens=False).input_ids != tokens:
            return False
    return True


@register_proposer("autoprompt")
def propose_hotflip(state: SearchState) -> Proposal:
    """AutoPrompt: one random slot, its top-k tokens by E @ (-grad) on a sampled batch."""
    config = state.config
    position = int(torch.randint(state.template.num_slots, (1,), generator=state.generator))
    grad_facts = sample_facts(state.train_facts, config.batch_size, state.generator)
    grad = slot_gradient(state.lm, state.template, grad_facts, state.slots, config.precision)
    tokens = hotflip_candidates(state.lm, grad[position], state.allowed, config.num_candidates)
    return Proposal(one_slot_swaps(state.slots, position, tokens), 3 * len(grad_facts))


@register_proposer("gcg")
def propose_gcg(state: SearchState) -> Proposal:
    """GCG: every slot's top-``top_k`` tokens by E @ (-grad) on a sampled batch, then
    ``num_candidates`` random single swaps across all slots; those that do not survive
    re-tokenising are dropped (duplicates are kept: they cost a row, not a wrong answer)."""
    config, generator = state.config, state.generator
    grad_facts = sample_facts(state.train_facts, config.batch_size, generator)
    grad = slot_gradient(state.lm, state.template, grad_facts, state.slots, config.precision)
    pools = hotflip_pools(state.lm, grad, state.allowed, config.top_k)  # (L, k)
    count = config.num_candidates
    positions = torch.randint(pools.shape[0], (count,), generator=generator)  # (K,)
    picks = torch.randint(pools.shape[1], (count,), generator=generator)  # (K,)
    prompts = state.slots.repeat(count, 1)  # (K, L)
    prompts[torch.arange(count), positions] = pools[positions, picks]
    keep = [survives_retokenisation(state.lm.tokenizer, state.template, row) for row in prompts]
    return Proposal(prompts[torch.tensor(keep, dtype=torch.bool)], 3 * len(grad_facts))


@register_proposer("random")
def propose_random(state: SearchState) -> Proposal:
    """Random search: one random slot, k distinct allowed tokens drawn uniformly; free."""
    position = int(torch.randint(state.template.num_slots, (1,), generator=state.generator))
    tokens = random_candidates(state.allowed, state.config.num_candidates, state.generator)
    return Proposal(one_slot_swaps(state.slots, position, tokens), 0)
