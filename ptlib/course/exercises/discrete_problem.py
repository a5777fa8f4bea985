"""Exercise checks on the discrete problem:
the path between two tokens, the size of the search space, paraphrase spread."""


import torch

from ptlib.course.exercises.core import (
    NotAnswered,
    as_tensor,
    assert_close,
    call,
    check_number,
    embeddings_of,
    exercise,
    fail,
    nearest_ok,
)
from ptlib.data import load_task
from ptlib.discrete import manual_prompts
from ptlib.model import LM


@exercise("the path between two tokens")
def check_path(path_fn, lm: LM, token_a: int, token_b: int, alphas) -> None:
    """``path_fn(E, token_a, token_b, alphas)`` -> ``(points (S, d), snapped ids (S,))``."""
    generator = torch.Generator().manual_seed(0)
    small = torch.randn(12, 3, generator=generator)
    cases = [("the notebook's path", embeddings_of(lm), token_a, token_b,
              as_tensor(alphas, "alphas").float()),
             ("a small random E", small, 4, 9, torch.tensor([0.9, 0.0, 0.35, 1.0, 0.6]))]
    for first, (label, table, a, b, alpha) in enumerate(cases):
        got = call(path_fn, table.clone(), a, b, alpha.clone(), first=first == 0)
        if not isinstance(got, tuple | list) or len(got) != 2:
            fail("return a pair (points, snapped_ids)")
        points = (1 - alpha).unsqueeze(1) * table[a] + alpha.unsqueeze(1) * table[b]  # (S, d)
        assert_close(got[0], points, f"points on {label}", atol=1e-4,
               hint="alpha = 0 is token a, alpha = 1 is token b")
        ids = as_tensor(got[1], "snapped ids").long()
        ref = torch.cdist(points, table).argmin(dim=1)  # (S,) nearest by L2
        if ids.shape != ref.shape:
            fail(f"snapped ids on {label} have shape {tuple(ids.shape)}, expected "
                  f"{tuple(ref.shape)}")
        ok = nearest_ok(table, points, ids.clamp(0, len(table) - 1), ref) & (ids >= 0) & (
            ids < len(table))
        if not ok.all():
            fail(f"snapped ids on {label}: at {int((~ok).sum())} of {len(ok)} points your "
                  "token is not the nearest row of E by L2 distance")


@exercise("a googol of prompts")
def check_googol_length(answer, vocab_size: int) -> None:
    reference = max(length for length in range(1, 200) if vocab_size**length < 10**100)
    check_number(answer, reference, 0.0, "the length", "compare L * log10(|V|) with 100")


@exercise("paraphrase spread")
def check_template_spread(answer, lm: LM, task_name: str, split: str = "dev") -> None:
    if answer is None:
        raise NotAnswered
    rows = manual_prompts(lm, load_task(task_name), split=split)
    scores = [row["exact_match"] for row in rows]
    check_number(answer, max(scores) - min(scores), 1e-6, "the spread",
            "the best template's EM minus the worst one's")
