"""Self-checks for the exercises that end each notebook.

Most exercises are *build-it* exercises: the learner writes a function (or a module) that builds
one piece of P-Tuning, and the check calls it on the notebook's own tensors and on small random
cases, comparing the result with ptlib's implementation, computed here, inside the check. The
rest ask for a number, whose reference is also computed here. Nothing is printed or computed in
the notebook before the learner answers. Every check ends in one of three ways:

- not answered (``None``, or a function that returns ``None`` / raises ``NotImplementedError``,
  as the placeholders do): prints a reminder and returns False, so notebooks run top to bottom;
- wrong: raises ``ExerciseFailed`` (an ``AssertionError``) saying what differed (a shape, a
  maximum difference, which slot or step), never the expected value;
- right: prints "correct" and returns True.

Worked solutions live in ``notebooks/solutions/NN_solutions.ipynb``, and run in CI.
"""

import functools
import math
import numbers

import torch
from torch import nn

from ptlib import encoders
from ptlib.analysis import position_coupling
from ptlib.data import Fact, load_task
from ptlib.discrete import allowed_tokens, manual_prompts, random_candidates
from ptlib.local_optimum import swap_gains
from ptlib.model import LM
from ptlib.objective import (
    batch_scores,
    evaluate,
    input_embeddings,
    make_batch,
    score,
    target_logits,
)
from ptlib.template import Template, encode_target, parse_template


class ExerciseFailed(AssertionError):
    """A wrong answer: the message says what differed, not what the answer is."""


class _NotAnswered(Exception):
    pass


def exercise(title: str, notebook: str):
    """Wrap a check: add the exercise's title, turn a placeholder into a reminder."""

    def wrap(check):
        @functools.wraps(check)
        def run(*args, name: str | None = None, **kwargs) -> bool:
            label = name or title
            try:
                check(*args, **kwargs)
            except _NotAnswered:
                print(f"{label}: not answered yet. Write your answer in the cell above, then "
                      f"rerun this cell (stuck? see solutions/{notebook}_solutions.ipynb).")
                return False
            except ExerciseFailed as err:
                err.args = (f"{label}: {err.args[0]}",)
                raise
            print(f"{label}: correct")
            return True

        return run

    return wrap


def _fail(message: str):
    raise ExerciseFailed(message)


def _call(fn, *args, first: bool = True):
    """Call the learner's code; a placeholder (None result on the first call) is unanswered."""
    if fn is None:
        raise _NotAnswered
    try:
        result = fn(*args)
    except NotImplementedError:
        raise _NotAnswered from None
    except Exception as err:
        raise ExerciseFailed(f"your code raised {type(err).__name__}: {err}") from err
    if result is None:
        if first:
            raise _NotAnswered
        _fail("your code returned None for one of the test cases")
    return result


def _tensor(value, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        _fail(f"{what} should be a tensor, got {type(value).__name__}")


def _close(got, ref: torch.Tensor, what: str, atol: float = 1e-5, rtol: float = 1e-5,
           hint: str = "") -> None:
    """Fail with the shape or the largest difference when ``got`` is not ``ref``."""
    got = _tensor(got, what)
    if tuple(got.shape) != tuple(ref.shape):
        _fail(f"{what} has shape {tuple(got.shape)}, expected {tuple(ref.shape)}."
              f"{' Hint: ' + hint if hint else ''}")
    if ref.dtype == torch.bool or not ref.is_floating_point():
        wrong = got.to(torch.float64) != ref.to(torch.float64)
        if wrong.any():
            where = tuple(wrong.nonzero()[0].tolist())
            _fail(f"{what} differs at {int(wrong.sum())} of {wrong.numel()} entries (first at "
                  f"index {where}).{' Hint: ' + hint if hint else ''}")
        return
    got, ref = got.double(), ref.double()
    gap = (got - ref).abs()
    allowed = atol + rtol * ref.abs()
    if not torch.isfinite(got).all() or (gap > allowed).any():
        where = tuple(int(i) for i in torch.unravel_index(gap.nan_to_num(math.inf).argmax(),
                                                           gap.shape))
        _fail(f"{what} differs: max |difference| {gap.nan_to_num(math.inf).max().item():.3g} "
              f"at index {where} (tolerance {atol:g}).{' Hint: ' + hint if hint else ''}")


def _number(answer, reference: float, rel_tol: float, what: str, hint: str) -> None:
    if answer is None:
        raise _NotAnswered
    if isinstance(answer, torch.Tensor) and answer.numel() == 1:
        answer = answer.item()
    if isinstance(answer, bool) or not isinstance(answer, numbers.Real):
        _fail(f"{what} should be a number, got {type(answer).__name__}")
    if not math.isclose(float(answer), float(reference), rel_tol=rel_tol, abs_tol=rel_tol):
        within = ("equal to" if not rel_tol else f"within {rel_tol:.0%} of" if rel_tol >= 0.01
                  else f"within {rel_tol:g} of")
        _fail(f"{answer!r} is not {within} the reference. Hint: {hint}")


def _embeddings(lm: LM) -> torch.Tensor:
    return lm.embeddings.detach().float().cpu()  # (V, d)


# ------------------------------------------------------------------ 00: the model and the objective


@exercise("Exercise 1 (the objective from logits)", "00")
def check_target_scores(score_fn, lm: LM, template: Template, facts: list[Fact]) -> None:
    """``score_fn(logits (B, Ty, V), target_ids (B, Ty), target_mask (B, Ty))`` ->
    ``(logprob (B,), exact (B,) bool)``, against ``ptlib.objective.score``."""
    batch = make_batch(lm, template, facts)
    with torch.no_grad():
        logits = target_logits(lm, batch, input_embeddings(lm, batch)).cpu()  # (B, Ty, V)
    cases = [("the notebook's batch", logits, batch.to(torch.device("cpu")))]
    generator = torch.Generator().manual_seed(0)
    fake = torch.randn(4, 3, 7, generator=generator)  # (B, Ty, V) with padded targets
    lengths = torch.tensor([3, 1, 2, 1])
    mask = torch.arange(3) < lengths.unsqueeze(1)  # (B, Ty)
    targets = fake.argmax(dim=-1).masked_fill(~mask, 0)  # greedy is right on real tokens...
    targets[0, 1] = (targets[0, 1] + 1) % 7  # ... except row 0's second token
    fake[1, 1:, 0] = -10.0  # row 1: the padding id is never the argmax at padded positions
    cases.append(("a small padded batch", fake, _FakeBatch(targets, mask)))
    for first, (label, case_logits, case_batch) in enumerate(cases):
        got = _call(score_fn, case_logits.clone(), case_batch.target_ids.clone(),
                    case_batch.target_mask.clone(), first=first == 0)
        if not isinstance(got, tuple | list) or len(got) != 2:
            _fail("return a pair (logprob, exact)")
        ref = score(case_logits, case_batch)
        hint = "sum log_softmax over the real target tokens only (target_mask)"
        _close(got[0], ref.logprob, f"logprob on {label}", atol=1e-4, hint=hint)
        _close(_tensor(got[1], "exact").bool(), ref.exact, f"exact on {label}",
               hint="every real target token must be the argmax; padding does not count")


class _FakeBatch:
    def __init__(self, target_ids: torch.Tensor, target_mask: torch.Tensor):
        self.target_ids, self.target_mask = target_ids, target_mask


@exercise("Exercise 2 (tokens of an object)", "00")
def check_target_length(answer, tokenizer, obj: str) -> None:
    _number(answer, len(encode_target(tokenizer, obj)), 0.0, "the token count",
            f"encode {' ' + obj!r} with add_special_tokens=False: the leading space counts")


@exercise("Exercise 3 (another manual template)", "00")
def check_template_p_at_1(answer, lm: LM, template_text: str, facts: list[Fact]) -> None:
    if answer is None:
        raise _NotAnswered
    reference = evaluate(lm, parse_template(template_text), facts).p_at_1
    _number(answer, reference, 1e-6, "the P@1",
            "ptlib.evaluate(lm, parse_template(text), facts) returns an Evaluation")


# ------------------------------------------------------------------ 01: the discrete problem


def _nearest_ok(table: torch.Tensor, points: torch.Tensor, got: torch.Tensor,
                ref: torch.Tensor) -> torch.Tensor:
    """Per point: the learner's token is as near (L2) as the reference's (ties allowed)."""
    d_got = (table[got] - points).norm(dim=1)
    d_ref = (table[ref] - points).norm(dim=1)
    return (got == ref) | (d_got <= d_ref * (1 + 1e-5) + 1e-6)


@exercise("Exercise 1 (the path between two tokens)", "01")
def check_path(path_fn, lm: LM, token_a: int, token_b: int, alphas) -> None:
    """``path_fn(E, token_a, token_b, alphas)`` -> ``(points (S, d), snapped ids (S,))``."""
    generator = torch.Generator().manual_seed(0)
    small = torch.randn(12, 3, generator=generator)
    cases = [("the notebook's path", _embeddings(lm), token_a, token_b,
              _tensor(alphas, "alphas").float()),
             ("a small random E", small, 4, 9, torch.tensor([0.9, 0.0, 0.35, 1.0, 0.6]))]
    for first, (label, table, a, b, alpha) in enumerate(cases):
        got = _call(path_fn, table.clone(), a, b, alpha.clone(), first=first == 0)
        if not isinstance(got, tuple | list) or len(got) != 2:
            _fail("return a pair (points, snapped_ids)")
        points = (1 - alpha).unsqueeze(1) * table[a] + alpha.unsqueeze(1) * table[b]  # (S, d)
        _close(got[0], points, f"points on {label}", atol=1e-4,
               hint="alpha = 0 is token a, alpha = 1 is token b")
        ids = _tensor(got[1], "snapped ids").long()
        ref = torch.cdist(points, table).argmin(dim=1)  # (S,) nearest by L2
        if ids.shape != ref.shape:
            _fail(f"snapped ids on {label} have shape {tuple(ids.shape)}, expected "
                  f"{tuple(ref.shape)}")
        ok = _nearest_ok(table, points, ids.clamp(0, len(table) - 1), ref) & (ids >= 0) & (
            ids < len(table))
        if not ok.all():
            _fail(f"snapped ids on {label}: at {int((~ok).sum())} of {len(ok)} points your "
                  "token is not the nearest row of E by L2 distance")


@exercise("Exercise 2 (a googol of prompts)", "01")
def check_googol_length(answer, vocab_size: int) -> None:
    reference = max(length for length in range(1, 200) if vocab_size**length < 10**100)
    _number(answer, reference, 0.0, "the length", "compare L * log10(|V|) with 100")


@exercise("Exercise 3 (paraphrase spread)", "01")
def check_template_spread(answer, lm: LM, task_name: str, split: str = "dev") -> None:
    if answer is None:
        raise _NotAnswered
    rows = manual_prompts(lm, load_task(task_name), split=split)
    scores = [row["p_at_1"] for row in rows]
    _number(answer, max(scores) - min(scores), 1e-6, "the spread",
            "the best template's P@1 minus the worst one's")


# ------------------------------------------------------------------ 02: discrete search


def _hotflip_reference(table: torch.Tensor, grad: torch.Tensor, allowed: torch.Tensor,
                       k: int) -> tuple[torch.Tensor, torch.Tensor]:
    gain = (table @ (-grad.T)).T  # (L, V)
    gain = gain.masked_fill(~allowed, -math.inf)
    return gain, gain.topk(k, dim=1).indices  # (L, V), (L, k)


@exercise("Exercise 1 (HotFlip candidates for every slot)", "02")
def check_hotflip(hotflip_fn, lm: LM, grad: torch.Tensor, allowed: torch.Tensor, k: int
                  ) -> None:
    """``hotflip_fn(E, grad (L, d), allowed (V,), k)`` -> (L, k) ids, best first."""
    generator = torch.Generator().manual_seed(0)
    small = torch.randn(30, 5, generator=generator)
    small_allowed = torch.rand(30, generator=generator) > 0.3
    cases = [("the notebook's gradient", _embeddings(lm), grad.detach().float().cpu(),
              allowed.cpu(), k),
             ("a small random case", small, torch.randn(3, 5, generator=generator),
              small_allowed, 4)]
    for first, (label, table, g, mask, kk) in enumerate(cases):
        got = _call(hotflip_fn, table.clone(), g.clone(), mask.clone(), kk, first=first == 0)
        ids = _tensor(got, "candidates").long()
        gain, ref = _hotflip_reference(table, g, mask, kk)
        if tuple(ids.shape) != tuple(ref.shape):
            _fail(f"candidates on {label} have shape {tuple(ids.shape)}, expected "
                  f"{tuple(ref.shape)}: one row of k token ids per slot")
        if (ids < 0).any() or (ids >= len(table)).any():
            _fail(f"candidates on {label} hold ids outside 0..|V|-1")
        for slot in range(len(g)):
            row = ids[slot]
            if not mask[row].all():
                _fail(f"slot {slot} on {label}: a candidate is a token that is not allowed")
            if len(set(row.tolist())) != kk:
                _fail(f"slot {slot} on {label}: the candidates repeat a token")
            kept, best = gain[slot, row], gain[slot, ref[slot]]
            if not torch.allclose(kept.sort(descending=True).values, best, atol=1e-5):
                _fail(f"slot {slot} on {label}: these are not the k allowed tokens with the "
                      "largest E @ (-grad) (did you use the gradient's sign and the right slot?)")
            if not torch.allclose(kept, best, atol=1e-5):
                _fail(f"slot {slot} on {label}: the right tokens, in the wrong order "
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
        _fail(f"return True or False, got {type(got).__name__}")
    return got


@exercise("Exercise 2 (is it a local optimum?)", "02")
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
    got = _as_bool(_call(optimum_fn, lm, template, facts, prompt.clone(), candidates.clone()))
    gains = swap_gains(lm, template, facts, prompt, candidates)  # (L, k)
    top = gains.max().item()
    if abs(top) > margin and got != (top < 0):
        _fail("wrong for the prompt you were given: a prompt is a local optimum when no "
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
        got = _as_bool(_call(optimum_fn, lm, template, facts, optimum.clone(), cleaned.clone(),
                             first=False))
        if not got:
            _fail("wrong for a prompt where no swap helps (every swap lowers the mean log P)")
        slot, column = divmod(int(worse.argmax()), k)  # the least harmful swap
        moved = optimum.clone()
        moved[slot] = cleaned[slot, column]
        back = cleaned.clone()
        back[slot, column] = optimum[slot]  # the way back, which helps
        got = _as_bool(_call(optimum_fn, lm, template, facts, moved, back, first=False))
        if got:
            _fail(f"wrong for a prompt where swapping slot {slot} back helps: check every "
                  "slot's candidates, and compare with the prompt's own score")


@exercise("Exercise 3 (the capitalised-token filter)", "02")
def check_capitalised_count(answer, lm: LM, gold_objects: list[str]) -> None:
    if answer is None:
        raise _NotAnswered
    strict = allowed_tokens(lm, gold_objects)
    loose = allowed_tokens(lm, gold_objects, exclude_capitalised=False)
    _number(answer, int(loose.sum() - strict.sum()), 0.0, "the count",
            "count the True entries of both masks and subtract")


# ------------------------------------------------------------------ 03: continuous relaxation


@exercise("Exercise 1 (H_0 = [theta, E(x)])", "03")
def check_h0(h0_fn, lm: LM, template: Template, facts: list[Fact], seed: int = 0) -> None:
    """``h0_fn(E, input_ids (B, T), slot_index (B, T), theta (L, d) or (B, L, d))`` ->
    (B, T, d), against ``ptlib.objective.input_embeddings``."""
    batch = make_batch(lm, template, facts)  # on the model's device
    cpu = batch.to(torch.device("cpu"))
    generator = torch.Generator().manual_seed(seed)
    num, width = template.num_slots, lm.width
    shared = torch.randn(num, width, generator=generator)  # (L, d)
    per_row = torch.randn(batch.size, num, width, generator=generator)  # (B, L, d)
    table = _embeddings(lm)
    for first, (label, theta) in enumerate([("theta of shape (L, d)", shared),
                                            ("theta of shape (B, L, d)", per_row)]):
        got = _call(h0_fn, table, cpu.input_ids.clone(), cpu.slot_index.clone(),
                    theta.clone(), first=first == 0)
        with torch.no_grad():
            ref = input_embeddings(lm, batch, prompt=theta.to(lm.device)).float().cpu()
        got = _tensor(got, "H_0")
        if tuple(got.shape) == tuple(ref.shape):
            in_slot = cpu.slot_index >= 0
            _close(got[~in_slot], ref[~in_slot], f"H_0 outside the slots ({label})",
                   hint="token positions take their row of E")
            _close(got[in_slot], ref[in_slot], f"H_0 in the slots ({label})",
                   hint="the k-th slot of row b takes theta[k] (or theta[b, k])")
        _close(got, ref, f"H_0 ({label})")


@exercise("Exercise 2 (one training step)", "03")
def check_train_step(step_fn, lm: LM, template: Template, facts: list[Fact], seed: int = 0,
                     lr: float = 1e-2) -> None:
    """``step_fn(lm, batch, theta, optimizer)`` -> the batch's mean -log P(y | x, theta), after
    one AdamW step on theta. Two steps, against a reference run from the same start."""
    generator = torch.Generator().manual_seed(seed)
    start = encoders.init_free_vectors("normal_rescaled", template.num_slots, lm.embeddings,
                                       generator).to(lm.device)
    half = max(1, len(facts) // 2)
    batches = [make_batch(lm, template, facts[:half]), make_batch(lm, template, facts[half:])]
    batches = [b for b in batches if b.size]
    mine = start.clone().requires_grad_(True)
    theirs = start.clone().requires_grad_(True)
    mine_opt = torch.optim.AdamW([mine], lr=lr, weight_decay=0.0)
    theirs_opt = torch.optim.AdamW([theirs], lr=lr, weight_decay=0.0)
    for step, batch in enumerate(batches):
        got = _call(step_fn, lm, batch, mine, mine_opt, first=step == 0)
        theirs_opt.zero_grad(set_to_none=True)
        loss = -batch_scores(lm, batch, prompt=theirs).logprob.mean()
        loss.backward()
        theirs_opt.step()
        if isinstance(got, torch.Tensor):
            got = got.detach().float().mean().item() if got.numel() == 1 else None
        if not isinstance(got, numbers.Real):
            _fail("return the loss as a number (a float or a one-element tensor)")
        if not math.isclose(float(got), loss.item(), rel_tol=1e-4, abs_tol=1e-4):
            _fail(f"step {step + 1}: the loss you returned is not the batch's mean "
                  f"-log P(y | x, theta) (yours / reference = {float(got) / loss.item():.3g})")
        hint = ("gradients from the previous step left over? (zero them before backward)"
                if step else "minimise the loss: loss.backward(), then optimizer.step()")
        _close(mine.detach(), theirs.detach(), f"theta after step {step + 1}", atol=1e-5,
               hint=hint)


@exercise("Exercise 3 (snap to the nearest tokens)", "03")
def check_snap(snap_fn, lm: LM, vectors: torch.Tensor) -> None:
    """``snap_fn(E, vectors (L, d))`` -> ``(ids (L,), distances (L,))``, L2."""
    small = torch.tensor([[1.0, 0.0], [5.0, 3.0], [-2.0, 1.0]])  # cosine and L2 disagree
    cases = [("the trained vectors", _embeddings(lm), vectors.detach().float().cpu()),
             ("a small E", small, torch.tensor([[4.0, 1.0], [-1.0, 0.2]]))]
    for first, (label, table, points) in enumerate(cases):
        got = _call(snap_fn, table.clone(), points.clone(), first=first == 0)
        if not isinstance(got, tuple | list) or len(got) != 2:
            _fail("return a pair (ids, distances)")
        ref_ids = torch.cdist(points, table).argmin(dim=1)
        ref_dist = torch.cdist(points, table).min(dim=1).values
        ids = _tensor(got[0], "ids").long()
        if ids.shape != ref_ids.shape:
            _fail(f"ids on {label} have shape {tuple(ids.shape)}, expected "
                  f"{tuple(ref_ids.shape)}")
        ids = ids.clamp(0, len(table) - 1)
        if not _nearest_ok(table, points, ids, ref_ids).all():
            _fail(f"ids on {label}: not the nearest token by L2 distance (cosine ranks "
                  "directions, not points)")
        _close(got[1], ref_dist, f"distances on {label}", atol=1e-3, rtol=1e-4,
               hint="the L2 distance from each vector to its nearest token")


# ------------------------------------------------------------------ 04: the initialisation setback


@exercise("Exercise 1 (one AdamW step by hand)", "04")
def check_adamw(adamw_fn) -> None:
    """``adamw_fn(theta, grad, m, v, step, lr, beta1, beta2, eps, weight_decay)`` ->
    ``(theta, m, v)`` after the step-th update, against ``torch.optim.AdamW``, 3 steps."""
    generator = torch.Generator().manual_seed(0)
    settings = [(0.1, (0.9, 0.999), 1e-8, 0.0, "weight_decay = 0"),
                (0.05, (0.8, 0.99), 1e-3, 0.1, "weight_decay = 0.1, other betas and eps")]
    for index, (lr, (beta1, beta2), eps, decay, label) in enumerate(settings):
        start = torch.randn(3, 4, generator=generator, dtype=torch.float64)
        reference = start.clone().requires_grad_(True)
        optimizer = torch.optim.AdamW([reference], lr=lr, betas=(beta1, beta2), eps=eps,
                                      weight_decay=decay)
        theta, m, v = start.clone(), torch.zeros_like(start), torch.zeros_like(start)
        for step in range(1, 4):
            grad = 10.0 ** step * torch.randn(3, 4, generator=generator, dtype=torch.float64)
            reference.grad = grad.clone()
            optimizer.step()
            got = _call(adamw_fn, theta.clone(), grad.clone(), m.clone(), v.clone(), step, lr,
                        beta1, beta2, eps, decay, first=index == 0 and step == 1)
            if not isinstance(got, tuple | list) or len(got) != 3:
                _fail("return a triple (theta, m, v)")
            hint = ("step 1 matched: the bias corrections use the step number"
                    if step > 1 else "m and v are running means; divide by 1 - beta ** step")
            if decay:
                hint += "; AdamW shrinks theta by lr * weight_decay * theta, apart from m and v"
            _close(got[0], reference.detach(), f"theta after step {step} ({label})",
                   atol=1e-9, rtol=1e-7, hint=hint)
            theta, m, v = (_tensor(x, "state").double() for x in got)


@exercise("Exercise 2 (the rescaled normal init)", "04")
def check_rescaled_init(init_fn, lm: LM) -> None:
    """``init_fn(num_slots, E, generator)`` -> (L, d), against ``init_free_vectors``."""
    table = _embeddings(lm)
    for first, (num, seed) in enumerate([(6, 0), (3, 7)]):
        got = _call(init_fn, num, table, torch.Generator().manual_seed(seed), first=first == 0)
        ref = encoders.init_free_vectors("normal_rescaled", num, table,
                                         torch.Generator().manual_seed(seed))
        got = _tensor(got, "the vectors")
        if tuple(got.shape) == tuple(ref.shape):
            _close(got.float().norm(dim=1), ref.norm(dim=1), f"the row norms ({num} slots)",
                   atol=1e-3, hint="every row should be as long as the mean token norm of E")
        _close(got, ref, f"the vectors ({num} slots, seed {seed})", atol=1e-5,
               hint="draw torch.randn((L, d), generator=generator) once, then rescale each row")


@exercise("Exercise 3 (a random vector at the token scale)", "04")
def check_token_scale_norm(answer, lm: LM) -> None:
    table = _embeddings(lm)
    _number(answer, table.std().item() * math.sqrt(table.shape[1]), 0.02, "the norm",
            "the norm of N(0, sigma^2 I_d) is about sigma * sqrt(d)")


# ------------------------------------------------------------------ 05: reparameterisation


@exercise("Exercise 1 (P-Tuning's LSTM encoder)", "05")
def check_lstm_encoder(encoder_cls, num_slots: int, width: int, hidden: int) -> None:
    """``encoder_cls(num_slots, width, hidden)``: an nn.Module whose ``forward()`` gives
    (L, d); ptlib's ``LSTMEncoder`` weights are copied into it and the outputs compared."""
    if encoder_cls is None:
        raise _NotAnswered
    for first, (num, wide, hid) in enumerate([(num_slots, width, hidden), (4, 12, 6)]):
        module = _call(encoder_cls, num, wide, hid, first=first == 0)
        if not isinstance(module, nn.Module):
            _fail(f"{encoder_cls!r} should build an nn.Module")
        if first == 0 and not list(module.parameters()):
            raise _NotAnswered
        reference = encoders.LSTMEncoder(num, wide, hid, torch.Generator().manual_seed(first))
        mine, theirs = module.state_dict(), reference.state_dict()
        missing = sorted(set(theirs) - set(mine))
        extra = sorted(set(mine) - set(theirs))
        if missing or extra:
            _fail(f"parameters missing: {missing or 'none'}; unexpected: {extra or 'none'}. "
                  "Name the parts seed_embedding, lstm and head, as in section 1")
        for key, value in theirs.items():
            if tuple(mine[key].shape) != tuple(value.shape):
                _fail(f"{key} has shape {tuple(mine[key].shape)}, expected "
                      f"{tuple(value.shape)} (L={num}, d={wide}, hidden={hid})")
        module.load_state_dict(theirs)
        with torch.no_grad():
            got = _call(module, first=False)
            ref = reference()
        _close(got, ref, f"the prompt (L={num}, d={wide}, hidden={hid})", atol=1e-5,
               hint="bidirectional, 2 layers, batch_first; then Linear, ReLU, Linear per row")


@exercise("Exercise 2 (which vectors move?)", "05")
def check_moved_positions(moved_fn) -> None:
    """``moved_fn(encoder, row)`` -> the sorted output positions that move when input row
    ``row`` is perturbed, for free vectors, the MLP and the LSTM, against the Jacobian."""
    table = torch.randn(20, 8, generator=torch.Generator().manual_seed(0))
    for first, (kind, row) in enumerate([("free", 1), ("mlp", 0), ("lstm", 2), ("mlp", 3)]):
        encoder = encoders.build_encoder(kind, 5, table, seed=first, init="normal",
                                         hidden_size=8)
        before = {k: v.clone() for k, v in encoder.state_dict().items()}
        got = _call(moved_fn, encoder, row, first=first == 0)
        coupling = position_coupling(encoder)
        ref = [i for i in range(5) if coupling[i, row] > 1e-6]
        after = encoder.state_dict()
        if any(not torch.equal(before[k], after[k]) for k in before):
            _fail("your function changed the encoder: put the perturbed row back afterwards")
        try:
            got = sorted(int(i) for i in got)
        except (TypeError, ValueError):
            _fail(f"return a list of positions, got {type(got).__name__}")
        if got != ref:
            _fail(f"wrong positions for the {kind} encoder when row {row} moves: perturb "
                  "seed_embedding.weight (or .vectors for free vectors) in place, rerun the "
                  "encoder, and keep the rows whose output changed")


@exercise("Exercise 3 (the size of a small LSTM encoder)", "05")
def check_lstm_size(answer, num_slots: int, width: int, hidden: int = 128) -> None:
    if answer is None:
        raise _NotAnswered
    encoder = encoders.LSTMEncoder(num_slots, width, hidden, torch.Generator().manual_seed(0))
    _number(answer, sum(p.numel() for p in encoder.parameters()), 0.0, "the count",
            "seed table L*d, two bi-LSTM layers of hidden/2 units per direction, the head")


# ------------------------------------------------------------------ 06: results and beyond


@torch.no_grad()
def _greedy_logits(lm: LM, template: Template, prompt: torch.Tensor, subject: str,
                   tokens: list[int]) -> list[torch.Tensor]:
    """Next-token logits (V,) before each of ``tokens``, with the prompt in the slots."""
    ids, slots = [], []
    for chunk in template.chunks(subject):
        if chunk is None:
            slots.append(len(ids))
            ids.append(lm.tokenizer.pad_token_id)
        else:
            ids.extend(lm.tokenizer(chunk, add_special_tokens=False).input_ids)
    embed = lm.model.get_input_embeddings()
    h0 = embed(torch.tensor(ids, device=lm.device)).clone()  # (T, d)
    h0[slots] = prompt.to(h0)
    whole = torch.cat([h0, embed(torch.tensor(tokens, device=lm.device, dtype=torch.long))])
    logits = lm.model(inputs_embeds=whole.unsqueeze(0)).logits[0].float()  # (T + n, V)
    return list(logits[len(ids) - 1 : len(ids) - 1 + len(tokens)].cpu())


@exercise("Exercise 1 (answer with a soft prompt)", "06")
def check_generate(generate_fn, lm: LM, template: Template, prompt: torch.Tensor,
                   facts: list[Fact], max_facts: int = 4) -> None:
    """``generate_fn(lm, template, prompt (L, d), subject, n)`` -> n greedy token ids, with
    the prompt vectors written into the slots; compared step by step with the model's argmax."""
    template = parse_template(getattr(template, "text", template))
    for first, fact in enumerate(facts[:max_facts]):
        count = len(encode_target(lm.tokenizer, fact.y))
        got = _call(generate_fn, lm, template, prompt, fact.x, count, first=first == 0)
        got = [int(t) for t in _tensor(got, "token ids").reshape(-1).tolist()]
        if len(got) != count:
            _fail(f"subject {fact.x!r}: {len(got)} tokens for n = {count}")
        steps = _greedy_logits(lm, template, prompt, fact.x, got)
        for index, (token, logits) in enumerate(zip(got, steps, strict=True)):
            if logits[token] < logits.max() - 1e-4:
                where = "the first token" if index == 0 else f"token {index + 1}"
                hint = ("build H_0 as build_batch does: each text chunk of template.chunks(x) "
                        "tokenised on its own, prompt rows at the slots" if index == 0 else
                        "append the embedding of each chosen token and run again")
                _fail(f"subject {fact.x!r}: {where} is not the model's argmax. Hint: {hint}")


@exercise("Exercise 2 (the majority class)", "06")
def check_majority(answer, task_name: str, split: str = "test") -> None:
    if answer is None:
        raise _NotAnswered
    _number(answer, load_task(task_name).majority_p_at_1(split), 1e-9, "the P@1",
            "Task.majority_p_at_1 answers the most frequent train object")


@exercise("Exercise 3 (the size of a saved prompt)", "06")
def check_prompt_bytes(answer, template_text: str, width: int) -> None:
    _number(answer, parse_template(template_text).num_slots * width * 4, 0.0, "the size",
            "slots x width x 4 bytes per fp32 number")
