"""Discrete prompt search: every slot holds a vocabulary token (p_i in V).

- ``manual_prompts``: P@1 of each hand-written template (paraphrase sensitivity).
- ``search``: one greedy loop whose candidate prompts come from a registered proposer
  (``PROPOSERS``): ``"autoprompt"`` picks a slot and ranks tokens for it by the first-order
  estimate E @ (-grad) of the loss change (AutoPrompt's HotFlip step); ``"random"`` picks a slot
  and draws tokens uniformly from the allowed vocabulary. Everything else (candidates scored
  together on a fresh batch, a swap kept only when it improves, the best prompt on dev kept) is
  shared, so the comparison isolates the value of the gradient. A proposer returns whole
  candidate prompts (K, L), so one that changes several slots at once fits the same loop.

Cost is counted in sequence forwards: each (prompt, fact) row through the model is one, and a
backward pass counts as two (its usual cost). Dev evaluations are model selection shared by
both methods and are not counted.
"""

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ptlib.data import Fact, Task
from ptlib.errors import ConfigError
from ptlib.model import LM
from ptlib.objective import (
    PRECISIONS,
    batch_scores,
    evaluate,
    make_batch,
    resolve_precision,
    score_candidates,
)
from ptlib.options import check_choices, option
from ptlib.progress import end_early, progress
from ptlib.template import INPUT, Template, encode_target, parse_template


def manual_prompts(lm: LM, task: Task, split: str = "test", precision: str = "fp32"
                   ) -> list[dict]:
    """P@1, NLL and first-token rank of each of the task's manual templates on ``split``."""
    facts = task.split(split)
    rows = []
    for text in task.templates:
        result = evaluate(lm, parse_template(text), facts, precision=precision)
        rows.append({"template": text} | result.as_dict())
    return rows


def allowed_tokens(lm: LM, gold_objects: list[str], exclude_capitalised: bool = True
                   ) -> torch.Tensor:
    """Which tokens may fill a slot: (V,) bool.

    Never allowed: rows of E past the tokenizer's vocabulary (padding some models add to round
    V up), special tokens, every token of a gold object of the training data (a prompt must not
    simply say the answer), and, optionally, capitalised tokens (proper nouns).
    """
    tokenizer = lm.tokenizer
    allowed = torch.zeros(lm.vocab_size, dtype=torch.bool)
    allowed[: min(len(tokenizer), lm.vocab_size)] = True
    allowed[[i for i in tokenizer.all_special_ids if i < lm.vocab_size]] = False
    for obj in set(gold_objects):
        allowed[encode_target(tokenizer, obj)] = False
        allowed[tokenizer(obj, add_special_tokens=False).input_ids] = False
    if exclude_capitalised:
        texts = tokenizer.convert_ids_to_tokens(list(range(min(len(tokenizer), lm.vocab_size))))
        texts += [""] * (lm.vocab_size - len(texts))
        decoded = [tokenizer.convert_tokens_to_string([t]).strip() if t else "" for t in texts]
        allowed &= torch.tensor([not (s[:1].isalpha() and s[:1].isupper()) for s in decoded])
    return allowed


@dataclass
class SearchConfig:
    """Settings of a discrete search; a bad value raises ``ConfigError`` naming it."""

    method: str = option("autoprompt", "how candidates are proposed: autoprompt "
                         "(gradient-ranked swaps) or random", lambda: tuple(PROPOSERS))
    iterations: int = option(50, "swap attempts")
    num_candidates: int = option(10, "candidate prompts scored per iteration (AutoPrompt: 10)")
    batch_size: int = option(16, "facts in the gradient batch and in each scoring batch")
    full_batch: bool = option(False, "score on all train facts, so the objective never falls")
    eval_every: int = option(10, "iterations between dev evaluations")
    max_forwards: int | None = option(None, "stop once this many sequence forwards are spent; "
                                            "none: run every iteration")
    exclude_capitalised: bool = option(True, "AutoPrompt's proper-noun filter on slot tokens")
    init_token: str = option(" the", "every slot starts as this token (if it is one token)")
    seed: int = option(0, "slot choice, candidates and batches")
    precision: str = option("auto", "frozen LM: auto (bf16 where native, as in TrainConfig), "
                                    "fp32, or bf16 (its weights cast to bf16 once)", PRECISIONS)

    def __post_init__(self):
        check_choices(self)
        for name in ("iterations", "num_candidates", "batch_size", "eval_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.max_forwards is not None and self.max_forwards < 1:
            raise ConfigError(f"max_forwards must be positive or None, got {self.max_forwards!r}")


@dataclass
class SearchHistory:
    """One entry per iteration, plus one per dev evaluation."""

    iteration: list[int] = field(default_factory=list)
    forwards: list[int] = field(default_factory=list)     # cumulative sequence forwards
    objective: list[float] = field(default_factory=list)  # mean log P(y|x,P) of the kept prompt
    accepted: list[bool] = field(default_factory=list)
    prompt: list[str] = field(default_factory=list)       # the kept prompt after the iteration
    eval_iteration: list[int] = field(default_factory=list)
    dev_p_at_1: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class SearchResult:
    """The best-on-dev discrete prompt and how the search got there."""

    config: SearchConfig
    template: str
    slot_ids: torch.Tensor   # (L,) best-on-dev slot tokens
    prompt_text: str         # the template with those tokens written in
    best_dev_p_at_1: float
    forwards: int            # sequence forwards spent
    seconds: float
    history: SearchHistory

    @property
    def seconds_per_iteration(self) -> float:
        return self.seconds / max(1, len(self.history.iteration))

    def evaluate(self, lm: LM, facts: list[Fact], precision: str = "fp32"):
        return evaluate(lm, parse_template(self.template), facts,
                        slot_ids=self.slot_ids.to(lm.device), precision=precision)


def prompt_text(lm: LM, template: Template, slot_ids: torch.Tensor) -> str:
    """The template with slot tokens written in (``{x}`` left as is), e.g. ``{x} thecapital``:
    the text the model reads, so whitespace right before a slot is dropped as in
    ``Template.chunks``."""
    tokens = iter(lm.tokenizer.decode([int(t)]) for t in slot_ids)
    return "".join(next(tokens) if chunk is None else chunk for chunk in template.chunks(INPUT))


def _initial_slots(lm: LM, template: Template, config: SearchConfig,
                   allowed: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    ids = lm.tokenizer(config.init_token, add_special_tokens=False).input_ids
    if len(ids) == 1:
        return torch.full((template.num_slots,), ids[0], dtype=torch.long)
    pool = allowed.nonzero().squeeze(1)
    return pool[torch.randint(len(pool), (template.num_slots,), generator=generator)]


def _sample(facts: list[Fact], size: int, generator: torch.Generator) -> list[Fact]:
    if size >= len(facts):
        return list(facts)
    return [facts[int(i)] for i in torch.randperm(len(facts), generator=generator)[:size]]


def slot_gradient(lm: LM, template: Template, facts: list[Fact], slot_ids: torch.Tensor,
                  precision: str = "fp32") -> torch.Tensor:
    """Gradient of the mean loss with respect to the slot embeddings: (L, d)."""
    batch = make_batch(lm, template, facts)
    prompt = lm.embeddings[slot_ids.to(lm.device)].detach().float().requires_grad_(True)
    loss = -batch_scores(lm, batch, prompt=prompt, precision=precision).logprob.mean()
    (grad,) = torch.autograd.grad(loss, prompt)
    return grad


def hotflip_candidates(lm: LM, grad_at_slot: torch.Tensor, allowed: torch.Tensor, k: int
                       ) -> torch.Tensor:
    """Top-k allowed tokens by E @ (-grad): the largest first-order loss decrease. (k,)"""
    gain = lm.embeddings.float() @ (-grad_at_slot.float())  # (V,)
    gain = gain.masked_fill(~allowed.to(gain.device), -torch.inf)
    return gain.topk(min(k, int(allowed.sum()))).indices.cpu()


def random_candidates(allowed: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k distinct allowed tokens drawn uniformly: (k,)."""
    pool = allowed.nonzero().squeeze(1)
    return pool[torch.randperm(len(pool), generator=generator)[:k]]


@dataclass
class SearchState:
    """What a proposer sees: the current prompt and everything it may use to improve it."""

    lm: LM
    template: Template
    train_facts: list[Fact]
    allowed: torch.Tensor        # (V,) bool: tokens a slot may hold
    config: SearchConfig
    generator: torch.Generator   # the search's only source of randomness
    slots: torch.Tensor          # (L,) the current prompt's slot tokens


@dataclass
class Proposal:
    """Candidate prompts to score against the current one."""

    prompts: torch.Tensor  # (K, L) slot tokens
    forwards: int          # sequence forwards spent making the proposal


Proposer = Callable[[SearchState], Proposal]
PROPOSERS: dict[str, Proposer] = {}


def register_proposer(name: str):
    """Decorator: make a proposer usable as ``SearchConfig(method=name)``."""
    def register(proposer: Proposer) -> Proposer:
        PROPOSERS[name] = proposer
        return proposer
    return register


def one_slot_swaps(slot_ids: torch.Tensor, position: int, tokens: torch.Tensor) -> torch.Tensor:
    """The prompt ``slot_ids`` (L,) with slot ``position`` set to each of ``tokens`` (k,):
    (k, L), one prompt per row."""
    prompts = slot_ids.repeat(len(tokens), 1)
    prompts[:, position] = tokens.to(prompts.device)
    return prompts


@register_proposer("autoprompt")
def propose_hotflip(state: SearchState) -> Proposal:
    """AutoPrompt: one random slot, its top-k tokens by E @ (-grad) on a sampled batch."""
    config = state.config
    position = int(torch.randint(state.template.num_slots, (1,), generator=state.generator))
    grad_facts = _sample(state.train_facts, config.batch_size, state.generator)
    grad = slot_gradient(state.lm, state.template, grad_facts, state.slots, config.precision)
    tokens = hotflip_candidates(state.lm, grad[position], state.allowed, config.num_candidates)
    return Proposal(one_slot_swaps(state.slots, position, tokens), 3 * len(grad_facts))


@register_proposer("random")
def propose_random(state: SearchState) -> Proposal:
    """Random search: one random slot, k distinct allowed tokens drawn uniformly; free."""
    position = int(torch.randint(state.template.num_slots, (1,), generator=state.generator))
    tokens = random_candidates(state.allowed, state.config.num_candidates, state.generator)
    return Proposal(one_slot_swaps(state.slots, position, tokens), 0)


def search(lm: LM, template: str | Template, train_facts: list[Fact], dev_facts: list[Fact],
           config: SearchConfig | None = None, show_progress: bool = True,
           progress_label: str | None = None) -> SearchResult:
    """Greedy discrete prompt search over the template's slots, with the config's proposer
    (AutoPrompt or random swaps). ``progress_label`` names the progress bar."""
    config = config or SearchConfig()
    # the result records the precision the search ran at, "auto" resolved for this device
    config = dataclasses.replace(config, precision=resolve_precision(config.precision, lm.device))
    template = parse_template(getattr(template, "text", template), require_slots=True)
    if not train_facts or not dev_facts:
        raise ConfigError("search needs at least one train fact and one dev fact")
    generator = torch.Generator().manual_seed(config.seed)
    allowed = allowed_tokens(lm, [obj for f in train_facts for obj in f.accepted],
                             config.exclude_capitalised)
    state = SearchState(lm, template, train_facts, allowed, config, generator,
                        _initial_slots(lm, template, config, allowed, generator))
    history, forwards, started = SearchHistory(), 0, time.perf_counter()
    score_size = len(train_facts) if config.full_batch else config.batch_size
    best = (-1.0, state.slots.clone())

    def dev_eval(iteration: int) -> None:
        nonlocal best
        p_at_1 = evaluate(lm, template, dev_facts, slot_ids=state.slots.to(lm.device),
                          precision=config.precision).p_at_1
        history.eval_iteration.append(iteration)
        history.dev_p_at_1.append(p_at_1)
        if p_at_1 >= best[0]:  # ties go to the later prompt (better train objective)
            best = (p_at_1, state.slots.clone())

    dev_eval(0)
    bar = progress(range(1, config.iterations + 1), disable=not show_progress,
                   desc=progress_label or f"search {config.method}")
    for iteration in bar:
        proposal = PROPOSERS[config.method](state)
        trials = torch.cat([state.slots.unsqueeze(0), proposal.prompts])  # row 0: current
        batch = make_batch(lm, template, _sample(train_facts, score_size, generator))
        values = score_candidates(lm, batch, trials.to(lm.device), precision=config.precision)
        forwards += proposal.forwards + trials.shape[0] * batch.size
        winner = int(values[1:].argmax()) + 1
        accepted = bool(values[winner] > values[0])
        if accepted:
            state.slots = trials[winner].clone()
        history.iteration.append(iteration)
        history.forwards.append(forwards)
        history.objective.append(float(values[winner] if accepted else values[0]))
        history.accepted.append(accepted)
        history.prompt.append(prompt_text(lm, template, state.slots))
        if iteration % config.eval_every == 0:
            dev_eval(iteration)
        if config.max_forwards is not None and forwards >= config.max_forwards:
            end_early(bar)  # the budget is spent: the search is complete, not cut short
            break
    if history.eval_iteration[-1] != history.iteration[-1]:
        dev_eval(history.iteration[-1])
    return SearchResult(config, template.text, best[1], prompt_text(lm, template, best[1]),
                        best[0], forwards, time.perf_counter() - started, history)
