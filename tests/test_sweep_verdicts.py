"""Seed runs keep their per-fact test outcomes, and every verdict between settings goes through
ptlib.stats (ptlib.course.runs.compare), on the tiny model."""

import dataclasses

import numpy as np
import pytest

from ptlib import Task, TrainConfig, evaluate, parse_template, stats
from ptlib.course import runs as sweep
from ptlib.errors import ConfigError

TEMPLATE = "[P] {x} [P]"


@pytest.fixture
def runs(tiny, facts):
    """Two settings, each over seeds 0 and 1, scored on the same 4 test facts."""
    config = TrainConfig(encoder="free", init="normal", steps=4, eval_every=2, lr=0.05,
                         batch_size=4)
    return {init: sweep.run_seeds(tiny, TEMPLATE, facts[:8], facts[8:], facts[8:],
                                  dataclasses.replace(config, init=init), [0, 1],
                                  show_progress=False)
            for init in ("normal", "vocab")}


def test_seed_runs_keep_per_fact_outcomes(runs, tiny, facts):
    for run in runs["normal"]:
        assert len(run.test_exact) == 4
        assert run.test_exact_match == pytest.approx(np.mean(run.test_exact))
        again = run.result.evaluate(tiny, facts[8:])
        assert again.exact == run.test_exact
    matrix = sweep.outcomes(runs["normal"])
    assert matrix.shape == (2, 4) and matrix.dtype == np.float64


def test_compare_is_the_stats_verdict(runs):
    a, b = runs["vocab"], runs["normal"]
    got = sweep.compare(a, b, "vocab", "N(0,1)")
    want = stats.verdict(stats.paired_difference(sweep.outcomes(a), sweep.outcomes(b)),
                         "vocab", "N(0,1)")
    assert got == want and got.outcome is stats.Outcome.TOO_FEW_SEEDS  # 2 seeds: no verdict
    assert "no verdict from 2 seeds" in got.text and "on 4 facts" in got.text
    spread = sweep.compare(a, b, "vocab", "N(0,1)", spread=True)
    assert spread == stats.verdict(stats.sd_ratio(sweep.outcomes(a), sweep.outcomes(b)),
                                   "vocab", "N(0,1)")


def test_compare_refuses_unpaired_seeds_and_speaks_plainly_about_one(runs):
    with pytest.raises(ConfigError, match=r"ran seeds \[0, 1\] but b ran \[1\]"):
        sweep.compare(runs["vocab"], runs["normal"][1:], "a", "b")
    one = sweep.compare(runs["vocab"][:1], runs["normal"][:1], "a", "b")
    assert one.outcome is stats.Outcome.TOO_FEW_SEEDS and one.winner is None
    assert one.seeds_needed is None
    assert one.text.startswith("no verdict from 1 seed:") and "on 4 facts" in one.text
    assert "a verdict needs at least 5 seeds" in one.text
    with pytest.raises(ConfigError, match="carry no per-fact test outcomes"):
        sweep.outcomes([dataclasses.replace(runs["vocab"][0], test_exact=[])])


def test_fixed_outcomes_pair_a_deterministic_baseline(runs):
    fixed = sweep.fixed_outcomes([True, False, True, True], [0, 1])
    np.testing.assert_array_equal(fixed, [[1, 0, 1, 1], [1, 0, 1, 1]])
    assert sweep.fixed_outcomes([True, False], 3).shape == (3, 2)
    verdict = sweep.compare(runs["vocab"], fixed, "vocab", "manual")
    paired = verdict.comparison  # the same facts, seed by seed
    assert paired.mean_a == pytest.approx(sweep.outcomes(runs["vocab"]).mean())
    assert paired.mean_b == pytest.approx(0.75) and paired.n_seeds == 2
    always, never = sweep.fixed_outcomes([True] * 6, 5), sweep.fixed_outcomes([False] * 6, 5)
    known = sweep.compare(never, always, "never", "always")
    assert (known.outcome, known.winner) == (stats.Outcome.AHEAD, "always")


def test_outcomes_at_an_earlier_evaluation(runs, tiny, facts):
    seed_runs = runs["normal"]
    assert sweep.midpoint_step(seed_runs) == 2
    at_start = sweep.outcomes_at(tiny, seed_runs, facts[8:], 0)
    for row, run in zip(at_start, seed_runs, strict=True):
        direct = evaluate(tiny, parse_template(TEMPLATE), facts[8:],
                          prompt=run.result.trajectory[0])
        np.testing.assert_array_equal(row, direct.exact)
    with pytest.raises(ConfigError, match="step 3 is not an evaluation step"):
        sweep.outcomes_at(tiny, seed_runs, facts[8:], 3)


def test_best_manual_is_chosen_on_dev(tiny, facts):
    templates = ["The capital of {x} is", "{x}:", "In {x} the capital is"]
    task = Task("capitals", facts, templates)
    dev = {text: evaluate(tiny, parse_template(text), task.split("dev")) for text in templates}
    text, scored = sweep.best_manual(tiny, task)
    best = max(dev.values(), key=lambda e: e.exact_match).exact_match
    assert dev[text].exact_match == best
    assert min(dev[t].nll for t in templates if dev[t].exact_match == best) == dev[text].nll
    test = evaluate(tiny, parse_template(text), task.split("test"))
    assert scored.exact == test.exact
