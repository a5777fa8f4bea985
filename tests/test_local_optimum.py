"""The local-optimum check scores single swaps as evaluate does, and tells an optimum from a
prompt one swap away from it (on the tiny model, with every allowed token as a candidate, so
the neighbourhood is exhaustive); the course runs it on every restart of a search."""

import pytest
import torch

from ptlib import SearchConfig, evaluate, parse_template, search
from ptlib.course.runs import restart_checks
from ptlib.discrete import allowed_tokens
from ptlib.local_optimum import check_neighbourhood, swap_gains

TEMPLATE = parse_template("[P] {x} [P]")


def _mean_logprob(lm, facts, slot_ids) -> float:
    return -evaluate(lm, TEMPLATE, facts, slot_ids=slot_ids, precision="fp32").nll


def test_swap_gains_are_differences_of_evaluated_objectives(tiny, four_facts):
    prompt = torch.tensor([40, 50])
    pool = torch.tensor([[40, 60, 70], [50, 80, 90]])  # each slot's first column: no change
    gains = swap_gains(tiny, TEMPLATE, four_facts, prompt, pool)
    assert gains.shape == (2, 3)
    assert gains[:, 0].abs().max() < 1e-5
    base = _mean_logprob(tiny, four_facts, prompt)
    swapped = torch.tensor([40, 80])
    expected = _mean_logprob(tiny, four_facts, swapped) - base
    assert float(gains[1, 1]) == pytest.approx(expected, abs=1e-4)


def test_a_climbed_prompt_is_an_optimum_and_one_swap_away_is_not(tiny, four_facts):
    allowed = allowed_tokens(tiny, [f.y for f in four_facts], exclude_capitalised=False)
    everything = int(allowed.sum())
    prompt = torch.tensor([40, 50])
    for _ in range(20):  # greedy ascent over the whole neighbourhood
        check = check_neighbourhood(tiny, TEMPLATE, four_facts, prompt, allowed, k=everything)
        if check.is_local_optimum:
            break
        slot, token, _ = check.best_swap
        prompt = prompt.clone()
        prompt[slot] = token
    assert check.is_local_optimum, "20 greedy swaps did not reach an optimum"
    assert "local optimum in AutoPrompt's neighbourhood" in check.describe()
    assert check.candidates.shape[1] == everything - 1  # the slot's own token is not tried
    slot, column = divmod(int(check.gains.argmin()), check.gains.shape[1])
    moved = prompt.clone()
    moved[slot] = check.candidates[slot, column]  # the worst single swap
    away = check_neighbourhood(tiny, TEMPLATE, four_facts, moved, allowed, k=everything)
    assert not away.is_local_optimum
    back = int((away.candidates[slot] == prompt[slot]).nonzero())
    assert away.gains[slot, back] > 0  # the way back improves
    assert away.describe().startswith("NOT a local optimum")


def test_every_restart_is_checked_and_a_capped_one_is_not_called_a_plateau(tiny, facts):
    """Two restarts, one stopped by its forward budget and one by patience: each row checks
    that restart's own best-on-dev prompt, as check_neighbourhood does on it alone."""
    allowed = allowed_tokens(tiny, [f.y for f in facts[:8]], exclude_capitalised=False)
    configs = [SearchConfig(method="random", iterations=50, num_candidates=3, batch_size=4,
                            max_forwards=40, eval_every=100, seed=0, precision="fp32"),
               SearchConfig(method="random", iterations=200, num_candidates=2, batch_size=2,
                            eval_every=1, patience=3, seed=1, precision="fp32")]
    results = [search(tiny, TEMPLATE, facts[:8], facts[8:], config, show_progress=False)
               for config in configs]
    rows = restart_checks(tiny, results, facts[:8], allowed, k=6)
    assert [(row.seed, row.stopped_by) for row in rows] == [(0, "budget"), (1, "patience")]
    assert rows[0].stop == "budget-stopped, not a plateau"
    assert rows[1].stop.startswith("plateau")
    for row, result in zip(rows, results, strict=True):
        alone = check_neighbourhood(tiny, TEMPLATE, facts[:8], result.slot_ids, allowed, k=6,
                                    precision="fp32")
        assert torch.equal(row.check.candidates, alone.candidates)
        assert row.improving == alone.improving
        assert row.prompt == result.prompt_text
        assert row.dev_exact_match == result.best_dev_exact_match
        assert row.describe().startswith(f"seed {row.seed}: dev EM ")
