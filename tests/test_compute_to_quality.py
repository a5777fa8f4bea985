"""Compute to quality from a study (Study.compute_rows, compute_curves, compute_table), on a
synthetic study whose dev curves are written out: how much compute each method spends, and
when each run first reaches the manual template's dev EM."""

import pytest
from test_study import write_config

from ptlib import load_task
from ptlib.course.study import Study, append_result, compute_table, plan, run_key

ARMS = [{"name": "main", "relations": ["capital_of"],
         "methods": ["manual", "free_rescaled", "autoprompt_manual"], "seeds": [0, 1]}]
CURVES = {  # (method, seed) -> (forwards at each evaluation, dev EM), stopped_by
    ("free_rescaled", 0): (([0, 100, 200], [0.0, 0.5, 0.6]), None),
    ("free_rescaled", 1): (([0, 100, 200], [0.0, 0.2, 0.4]), None),
    ("autoprompt_manual", 0): (([0, 300, 900], [0.5, 0.5, 0.55]), "patience"),
    ("autoprompt_manual", 1): (([0, 300, 600, 1500], [0.5, 0.5, 0.5, 0.5]), "budget"),
}
MANUAL_DEV = 0.5


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Study:
    config = write_config(tmp_path_factory.mktemp("compute"), arms=ARMS)
    task = load_task("capital_of")
    for spec in plan(config):
        (forwards, dev), stopped = CURVES.get((spec.method, spec.seed), (([0], [MANUAL_DEV]),
                                                                          None))
        record = {"key": run_key(config, spec, task), "relation": spec.relation,
                  "method": spec.method, "seed": spec.seed, "lr": spec.lr, "steps": spec.steps,
                  "template_name": spec.template, "wall_seconds": 1.0,
                  "best_dev_exact_match": max(dev),
                  "dev_curve": {"exact_match": dev} | ({} if spec.method == "manual"
                                                       else {"forwards": forwards}),
                  "test": {"exact": [1, 0, 0, 0], "facts_sha": "synthetic"}}
        if stopped:
            record["stopped_by"] = stopped
        append_result(config.results, record)
    return Study.load(config)


def test_compute_rows_give_the_spend_and_the_first_reach_of_the_manual_level(study):
    rows = {row["method"]: row for row in study.compute_rows(
        ["manual", "free_rescaled", "autoprompt_manual", "lstm"])}
    assert set(rows) == {"manual", "free_rescaled", "autoprompt_manual"}  # lstm has no runs
    free = rows["free_rescaled"]
    assert (free["runs"], free["median_forwards"]) == (2, 200)
    assert free["best_dev_em"] == pytest.approx(0.5)  # mean of 0.6 and 0.4
    assert (free["median_forwards_to_manual"], free["reached"]) == (100, "1/2")
    search = rows["autoprompt_manual"]
    assert search["median_forwards"] == pytest.approx((900 + 1500) / 2)
    assert search["median_forwards_to_manual"] == 0  # it starts at the manual template
    assert search["stopped_by"] == {"patience": 1, "budget": 1}
    assert rows["manual"]["median_forwards"] == 0 and rows["manual"]["test_em"] == 0.25


def test_compute_table_and_curves(study):
    rows = study.compute_rows(["free_rescaled", "autoprompt_manual"])
    lines = compute_table(rows).splitlines()
    assert len(lines) == 2 + len(rows) and lines[0].startswith("relation")
    assert "patience 1, budget 1" in lines[2] and "(1/2)" in lines[1]
    curves = study.compute_curves(["free_rescaled", "lstm"])
    assert list(curves) == ["capital_of"] and list(curves["capital_of"]) == ["free_rescaled"]
    assert sorted(curves["capital_of"]["free_rescaled"]) == sorted(
        CURVES["free_rescaled", seed][0] for seed in (0, 1))
    assert study.compute_rows(["free_rescaled"], relations=["antonym"]) == []
