"""The frame every exercise check shares: the decorator, and how a learner's answer is called,
compared and failed."""

import functools
import math
import numbers

import torch

from ptlib.model import LM


class ExerciseFailed(AssertionError):
    """A wrong answer: the message says what differed, not what the answer is."""


class NotAnswered(Exception):
    pass


def exercise(title: str):
    """Wrap a check: add the exercise's title, turn a placeholder into a reminder."""

    def wrap(check):
        @functools.wraps(check)
        def run(*args, name: str | None = None, **kwargs) -> bool:
            label = name or title
            try:
                check(*args, **kwargs)
            except NotAnswered:
                print(f"{label}: not answered yet. Write your answer in the cell above, then "
                      "rerun this cell (stuck? this notebook's worked solutions are in "
                      "notebooks/solutions/).")
                return False
            except ExerciseFailed as err:
                err.args = (f"{label}: {err.args[0]}",)
                raise
            print(f"{label}: correct")
            return True

        return run

    return wrap


def fail(message: str):
    raise ExerciseFailed(message)


def call(fn, *args, first: bool = True):
    """Call the learner's code; a placeholder (None result on the first call) is unanswered."""
    if fn is None:
        raise NotAnswered
    try:
        result = fn(*args)
    except NotImplementedError:
        raise NotAnswered from None
    except Exception as err:
        raise ExerciseFailed(f"your code raised {type(err).__name__}: {err}") from err
    if result is None:
        if first:
            raise NotAnswered
        fail("your code returned None for one of the test cases")
    return result


def as_tensor(value, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        fail(f"{what} should be a tensor, got {type(value).__name__}")


def assert_close(got, ref: torch.Tensor, what: str, atol: float = 1e-5, rtol: float = 1e-5,
           hint: str = "") -> None:
    """Fail with the shape or the largest difference when ``got`` is not ``ref``."""
    got = as_tensor(got, what)
    if tuple(got.shape) != tuple(ref.shape):
        fail(f"{what} has shape {tuple(got.shape)}, expected {tuple(ref.shape)}."
              f"{' Hint: ' + hint if hint else ''}")
    if ref.dtype == torch.bool or not ref.is_floating_point():
        wrong = got.to(torch.float64) != ref.to(torch.float64)
        if wrong.any():
            where = tuple(wrong.nonzero()[0].tolist())
            fail(f"{what} differs at {int(wrong.sum())} of {wrong.numel()} entries (first at "
                  f"index {where}).{' Hint: ' + hint if hint else ''}")
        return
    got, ref = got.double(), ref.double()
    gap = (got - ref).abs()
    allowed = atol + rtol * ref.abs()
    if not torch.isfinite(got).all() or (gap > allowed).any():
        where = tuple(int(i) for i in torch.unravel_index(gap.nan_to_num(math.inf).argmax(),
                                                           gap.shape))
        fail(f"{what} differs: max |difference| {gap.nan_to_num(math.inf).max().item():.3g} "
              f"at index {where} (tolerance {atol:g}).{' Hint: ' + hint if hint else ''}")


def check_number(answer, reference: float, rel_tol: float, what: str, hint: str) -> None:
    if answer is None:
        raise NotAnswered
    if isinstance(answer, torch.Tensor) and answer.numel() == 1:
        answer = answer.item()
    if isinstance(answer, bool) or not isinstance(answer, numbers.Real):
        fail(f"{what} should be a number, got {type(answer).__name__}")
    if not math.isclose(float(answer), float(reference), rel_tol=rel_tol, abs_tol=rel_tol):
        within = ("equal to" if not rel_tol else f"within {rel_tol:.0%} of" if rel_tol >= 0.01
                  else f"within {rel_tol:g} of")
        fail(f"{answer!r} is not {within} the reference. Hint: {hint}")


def embeddings_of(lm: LM) -> torch.Tensor:
    return lm.embeddings.detach().float().cpu()  # (V, d)


def nearest_ok(table: torch.Tensor, points: torch.Tensor, got: torch.Tensor,
                ref: torch.Tensor) -> torch.Tensor:
    """Per point: the learner's token is as near (L2) as the reference's (ties allowed)."""
    d_got = (table[got] - points).norm(dim=1)
    d_ref = (table[ref] - points).norm(dim=1)
    return (got == ref) | (d_got <= d_ref * (1 + 1e-5) + 1e-6)
