"""Discrete prompt search: every slot holds a vocabulary token (p_i in V).

- ``manual_prompts``: EM of each hand-written template (paraphrase sensitivity);
  ``best_manual_template`` picks one on dev, and ``manual_start`` writes it as a slot template
  whose slots start at its own tokens, so a search can start from the manual prompt.
- ``search``: one greedy loop whose candidate prompts come from a registered proposer
  (``ptlib.proposers``: AutoPrompt, GCG, random). Everything else (candidates scored together
  on a fresh batch, a swap kept only when it improves, the best prompt on dev kept, its start
  included) is shared, so a comparison isolates the proposer. The loop stops at its iteration
  count, its forward budget or its patience, whichever comes first, and says which.

Cost is counted in sequence forwards: each (prompt, fact) row through the model is one, and a
backward pass counts as two (its usual cost). Dev evaluations are model selection shared by
every method and are not counted.
"""

import dataclasses
import math
import time
from dataclasses import dataclass, field

import torch

from ptlib.data import Fact, Task
from ptlib.errors import ConfigError, TemplateError
from ptlib.model import LM
from ptlib.objective import Evaluation, evaluate, make_batch, score_candidates
from ptlib.options import MAX_SEED, check_options, option
from ptlib.precision import DEFAULT_PRECISION, PRECISION_HELP, PRECISIONS, resolve_precision
from ptlib.progress import end_early, progress
from ptlib.proposers import PROPOSERS, SearchState, sample_facts
from ptlib.template import INPUT, SLOT, Template, encode_target, parse_template


def manual_prompts(lm: LM, task: Task, split: str = "test", precision: str = DEFAULT_PRECISION
                   ) -> list[dict]:
    """Exact match (EM), NLL and first-token rank of each of the task's manual templates
    on ``split``."""
    facts = task.split(split)
    rows = []
    for text in task.templates:
        result = evaluate(lm, parse_template(text), facts, precision=precision)
        rows.append({"template": text} | result.as_dict())
    return rows


def best_manual_template(lm: LM, task: Task, split: str = "dev",
                         precision: str = DEFAULT_PRECISION) -> tuple[str, Evaluation]:
    """The task's manual template with the best EM on ``split`` (ties: lower NLL, then file
    order), and its evaluation there. Choose on dev and keep test for the verdict: the best
    template on test is an optimistic bound, not a method."""
    facts = task.split(split)
    scored = [(evaluate(lm, parse_template(text), facts, precision=precision), index, text)
              for index, text in enumerate(task.templates)]
    result, _, text = min(scored, key=lambda row: (-row[0].exact_match, row[0].nll, row[1]))
    return text, result


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


# SearchConfig fields added after study records were written, with their defaults.
LATER_SEARCH_FIELDS = {"top_k": 256, "patience": None}


@dataclass
class SearchConfig:
    """Settings of a discrete search; a bad value raises ``ConfigError`` naming it."""

    method: str = option("autoprompt", "how candidates are proposed: autoprompt (one slot's "
                         "gradient-ranked swaps), gcg (random swaps among every slot's "
                         "gradient-ranked tokens) or random", lambda: tuple(PROPOSERS))
    iterations: int = option(50, "swap attempts", minimum=1)
    num_candidates: int = option(10, "candidate prompts scored per iteration (AutoPrompt: 10)",
                                 minimum=1)
    top_k: int = option(256, "gcg: each slot's candidate pool, its top-k tokens by the "
                             "gradient (autoprompt ranks num_candidates)", minimum=1)
    batch_size: int = option(16, "facts in the gradient batch and in each scoring batch",
                             minimum=1)
    full_batch: bool = option(False, "score on all train facts, so the objective never falls")
    eval_every: int = option(10, "iterations between dev evaluations", minimum=1)
    patience: int | None = option(None, "stop after this many dev evaluations without a better "
                                        "dev score (EM, then NLL); none never stops early",
                                  minimum=1)
    max_forwards: int | None = option(None, "stop once this many sequence forwards are spent "
                                            "(checked after each iteration, so the last one "
                                            "may pass it); none: run every iteration",
                                      minimum=1)
    exclude_capitalised: bool = option(True, "AutoPrompt's proper-noun filter on slot tokens")
    init_token: str = option(" the", "every slot starts as this token (if it is one token)")
    seed: int = option(0, f"slot choice, candidates and batches (0 to {MAX_SEED})", minimum=0,
                       maximum=MAX_SEED)
    precision: str = option(DEFAULT_PRECISION, PRECISION_HELP, PRECISIONS)

    def __post_init__(self):
        check_options(self)

    def identity(self) -> dict:
        """What a study record is matched on: the fields, less the ``LATER_SEARCH_FIELDS``
        that sit at their defaults (so records written before they existed still match)."""
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k not in LATER_SEARCH_FIELDS or v != LATER_SEARCH_FIELDS[k]}


@dataclass
class SearchHistory:
    """One entry per iteration, plus one per dev evaluation."""

    iteration: list[int] = field(default_factory=list)
    forwards: list[int] = field(default_factory=list)     # cumulative sequence forwards
    objective: list[float] = field(default_factory=list)  # mean log P(y|x,P) of the kept prompt
    accepted: list[bool] = field(default_factory=list)
    prompt: list[str] = field(default_factory=list)       # the kept prompt after the iteration
    eval_iteration: list[int] = field(default_factory=list)  # 0 is the starting prompt
    dev_exact_match: list[float] = field(default_factory=list)
    dev_nll: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def acceptance(self) -> tuple[float, float]:
        """The share of iterations that accepted a swap in the first and in the second half of
        the search: a search still accepting swaps at the end was stopped, not stuck."""
        half = len(self.accepted) // 2
        first, second = self.accepted[:half], self.accepted[half:]
        return sum(first) / max(1, len(first)), sum(second) / max(1, len(second))

    def last_accepted(self) -> int | None:
        """The iteration of the last accepted swap (None: the search never moved)."""
        taken = [i for i, took in zip(self.iteration, self.accepted, strict=True) if took]
        return taken[-1] if taken else None

    def dev_forwards(self) -> list[int]:
        """Sequence forwards spent by each dev evaluation (``eval_iteration``), 0 for the
        start: with ``dev_exact_match``, the search's dev curve against compute."""
        return [0] + [self.forwards[i - 1] for i in self.eval_iteration[1:]]


@dataclass
class SearchResult:
    """The best-on-dev discrete prompt and how the search got there."""

    config: SearchConfig
    template: str
    slot_ids: torch.Tensor   # (L,) best-on-dev slot tokens
    prompt_text: str         # the template with those tokens written in
    best_dev_exact_match: float
    forwards: int            # sequence forwards spent (the budget is checked after each
                             # iteration, so the last one may pass it by one iteration's cost)
    seconds: float
    history: SearchHistory
    stopped_by: str = "iterations"  # "iterations", "budget" or "patience"

    @property
    def seconds_per_iteration(self) -> float:
        return self.seconds / max(1, len(self.history.iteration))

    def evaluate(self, lm: LM, facts: list[Fact], precision: str | None = None):
        """EM and NLL of the best prompt on ``facts``, at the precision the search ran at
        (``config.precision``, resolved) unless ``precision`` says otherwise."""
        return evaluate(lm, parse_template(self.template), facts,
                        slot_ids=self.slot_ids.to(lm.device),
                        precision=precision or self.config.precision)


def prompt_text(lm: LM, template: Template, slot_ids: torch.Tensor) -> str:
    """The template with slot tokens written in (``{x}`` left as is), e.g. ``{x} thecapital``:
    the text the model reads, so whitespace right before a slot is dropped as in
    ``Template.chunks``."""
    tokens = iter(lm.tokenizer.decode([int(t)]) for t in slot_ids)
    return "".join(next(tokens) if chunk is None else chunk for chunk in template.chunks(INPUT))


def manual_start(lm: LM, manual: str, subjects: list[str]) -> tuple[str, torch.Tensor]:
    """The manual template (no slots) rewritten with a slot for each of its tokens, and those
    tokens as the slots' start: (slot template, (L,) ids). ``"The capital of {x} is"`` becomes
    ``"[P][P][P] {x} [P]"`` starting at its own tokens, so a search from there starts at the
    manual prompt exactly. ``TemplateError`` when the rewrite does not give the manual prompt's
    tokens for each of ``subjects`` (a tokenizer that merges across the subject's edges)."""
    template = parse_template(manual)
    if template.num_slots:
        raise TemplateError(f"manual_start needs a template without slots, got {manual!r}")
    before, after = manual.split(INPUT)
    tokenizer = lm.tokenizer
    before_ids = tokenizer(before.rstrip(), add_special_tokens=False).input_ids
    after_ids = tokenizer(after, add_special_tokens=False).input_ids
    text = (SLOT * len(before_ids) + (" " if before.endswith(" ") else "") + INPUT
            + (" " if after.startswith(" ") else "") + SLOT * len(after_ids))
    slots = parse_template(text.strip())
    ids = torch.tensor(before_ids + after_ids, dtype=torch.long)
    for subject in subjects:
        direct = tokenizer(template.render(subject), add_special_tokens=False).input_ids
        written = iter(ids.tolist())
        rebuilt = [token for chunk in slots.chunks(subject) for token in (
            [next(written)] if chunk is None
            else tokenizer(chunk, add_special_tokens=False).input_ids)]
        if rebuilt != direct:
            raise TemplateError(f"{manual!r} cannot be written as slots for subject "
                                f"{subject!r}: its tokens differ from the slot template's")
    return slots.text, ids


def _initial_slots(lm: LM, template: Template, config: SearchConfig,
                   allowed: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Every slot at ``config.init_token`` when it is one token, else random allowed tokens."""
    ids = lm.tokenizer(config.init_token, add_special_tokens=False).input_ids
    if len(ids) == 1:
        return torch.full((template.num_slots,), ids[0], dtype=torch.long)
    pool = allowed.nonzero().squeeze(1)
    return pool[torch.randint(len(pool), (template.num_slots,), generator=generator)]


class _SearchLoop:
    """One call of ``search``: the state proposers see, the history, the best prompt so far."""

    def __init__(self, lm: LM, template: Template, facts: tuple[list[Fact], list[Fact]],
                 config: SearchConfig, initial_slots: torch.Tensor | None):
        train_facts, self.dev_facts = facts
        generator = torch.Generator().manual_seed(config.seed)
        allowed = allowed_tokens(lm, [obj for f in train_facts for obj in f.accepted],
                                 config.exclude_capitalised)
        if initial_slots is None:
            initial_slots = _initial_slots(lm, template, config, allowed, generator)
        elif tuple(initial_slots.shape) != (template.num_slots,):
            raise ConfigError(f"initial_slots has shape {tuple(initial_slots.shape)}, but the "
                              f"template has {template.num_slots} slots")
        self.state = SearchState(lm, template, train_facts, allowed, config, generator,
                                 initial_slots.detach().cpu().long().clone())
        self.history, self.forwards, self.started = SearchHistory(), 0, time.perf_counter()
        self.best = ((-math.inf, -math.inf), self.state.slots.clone())  # ((EM, -NLL), slots)
        self.evals_since_best, self.stopped_by = 0, "iterations"

    def evaluate_dev(self, iteration: int) -> bool:
        """Score the current prompt on dev; True when patience has run out. Ties go to the
        later prompt (its train objective is no worse) but do not count as progress."""
        state = self.state
        result = evaluate(state.lm, state.template, self.dev_facts,
                          slot_ids=state.slots.to(state.lm.device),
                          precision=state.config.precision)
        history = self.history
        history.eval_iteration.append(iteration)
        history.dev_exact_match.append(result.exact_match)
        history.dev_nll.append(result.nll)
        score = (result.exact_match, -result.nll)
        self.evals_since_best = 0 if score > self.best[0] else self.evals_since_best + 1
        if score >= self.best[0]:
            self.best = (score, state.slots.clone())
        patience = state.config.patience
        return patience is not None and self.evals_since_best >= patience

    def iterate(self, iteration: int) -> None:
        """Propose, score the candidates and the current prompt on one batch, keep the best."""
        state, config = self.state, self.state.config
        proposal = PROPOSERS[config.method](state)
        trials = torch.cat([state.slots.unsqueeze(0), proposal.prompts])  # row 0: current
        size = len(state.train_facts) if config.full_batch else config.batch_size
        batch = make_batch(state.lm, state.template,
                           sample_facts(state.train_facts, size, state.generator))
        values = score_candidates(state.lm, batch, trials.to(state.lm.device),
                                  precision=config.precision)  # (1 + K,)
        self.forwards += proposal.forwards + trials.shape[0] * batch.size
        winner = int(values.argmax())
        accepted = winner > 0 and bool(values[winner] > values[0])
        if accepted:
            state.slots = trials[winner].clone()
        history = self.history
        history.iteration.append(iteration)
        history.forwards.append(self.forwards)
        history.objective.append(float(values[winner] if accepted else values[0]))
        history.accepted.append(accepted)
        history.prompt.append(prompt_text(state.lm, state.template, state.slots))

    def run(self, bar) -> None:
        """Iterate until the iterations, the budget or the patience run out."""
        config = self.state.config
        self.evaluate_dev(0)
        for iteration in bar:
            self.iterate(iteration)
            out_of_patience = iteration % config.eval_every == 0 and self.evaluate_dev(iteration)
            spent = config.max_forwards is not None and self.forwards >= config.max_forwards
            if spent or out_of_patience:
                self.stopped_by = "budget" if spent else "patience"
                end_early(bar)  # a budget or patience: the search is complete, not cut short
                break
        if self.history.eval_iteration[-1] != self.history.iteration[-1]:
            self.evaluate_dev(self.history.iteration[-1])

    def result(self) -> SearchResult:
        state = self.state
        (exact_match, _), slots = self.best
        return SearchResult(state.config, state.template.text, slots,
                            prompt_text(state.lm, state.template, slots), exact_match,
                            self.forwards, time.perf_counter() - self.started, self.history,
                            self.stopped_by)


def search(lm: LM, template: str | Template, train_facts: list[Fact], dev_facts: list[Fact],
           config: SearchConfig | None = None, show_progress: bool = True,
           progress_label: str | None = None,
           initial_slots: torch.Tensor | None = None) -> SearchResult:
    """Greedy discrete prompt search over the template's slots with the config's proposer,
    from ``initial_slots`` (L,) when given (e.g. ``manual_start``), else from
    ``config.init_token``. The best prompt on dev is kept, the start included, so a search
    never ends below where it started on dev. ``progress_label`` names the progress bar."""
    config = config or SearchConfig()
    # the result records the precision the search ran at, "auto" resolved
    config = dataclasses.replace(config, precision=resolve_precision(config.precision))
    template = parse_template(getattr(template, "text", template), require_slots=True)
    if not train_facts or not dev_facts:
        raise ConfigError("search needs at least one train fact and one dev fact")
    loop = _SearchLoop(lm, template, (train_facts, dev_facts), config, initial_slots)
    bar = progress(range(1, config.iterations + 1), disable=not show_progress,
                   desc=progress_label or f"search {config.method}")
    loop.run(bar)
    return loop.result()


def search_from_manual(lm: LM, task: Task, config: SearchConfig | None = None,
                       manual: str | None = None, show_progress: bool = True,
                       progress_label: str | None = None) -> SearchResult:
    """A search that starts at a manual template: ``manual``, or by default the task's manual
    template best on dev (at the search's precision), rewritten with a slot per token and the
    slots starting at its own tokens (``manual_start``). Searched on the task's train facts,
    kept on dev: the result is never below that template on dev. Its ``template`` is the slot
    template."""
    config = config or SearchConfig()
    if manual is None:
        manual, _ = best_manual_template(lm, task, "dev", resolve_precision(config.precision))
    template, start = manual_start(lm, manual, [fact.x for fact in task.facts])
    return search(lm, template, task.split("train"), task.split("dev"), config,
                  show_progress=show_progress, progress_label=progress_label,
                  initial_slots=start)
