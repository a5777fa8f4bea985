"""The evidence view of the course's claims (ptlib.course.evidence): rows that carry each
verdict's numbers and outcome, a pooled row per claim, rows without a verdict kept with their
reason, a compact table and a forest plot, on a synthetic study whose answers are known."""

import dataclasses
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from test_study import course_root_with, write_config

from ptlib import load_task, stats
from ptlib.course import claims, evidence
from ptlib.course.study import METHODS, Study, append_result, plan, run_key

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SEEDS = 6
RELATIONS = ("capital_of", "antonym")
FACTS = 30
ARMS = [  # LSTM and N(0,1) vectors on two relations; the MLP on one, with 3 seeds only
    {"name": "main", "relations": ["capital_of", "antonym"],
     "methods": ["manual", "free_normal", "lstm"], "seeds": list(range(SEEDS))},
    {"name": "few", "relations": ["capital_of"], "methods": ["mlp"], "seeds": [0, 1, 2]},
]
LEVEL = {  # (relation, method) -> chance of an exact match on each test fact
    ("capital_of", "lstm"): 0.8, ("capital_of", "free_normal"): 0.2,
    ("capital_of", "mlp"): 0.8, ("capital_of", "manual"): 0.5,
    ("antonym", "lstm"): 0.5, ("antonym", "manual"): 0.5,
}
LEVEL_CLAIM = "lstm_vs_normal_level"  # lstm ahead on capital_of, the same mean on antonym


def exact(relation: str, method: str, seed: int | None) -> list[int]:
    """A run's per-fact test outcomes (F,), drawn from ``LEVEL``. On antonym, N(0,1) vectors
    score exactly as the LSTM does under the next seed: the same mean over seeds, so the
    difference is 0 and no interval may exclude it."""
    if (relation, method) == ("antonym", "free_normal"):
        return exact(relation, "lstm", (seed + 1) % SEEDS)
    draws = np.random.default_rng([RELATIONS.index(relation), METHODS.index(method),
                                   SEEDS if seed is None else seed])
    return (draws.random(FACTS) < LEVEL[relation, method]).astype(int).tolist()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """The synthetic study's config, its results file holding one record per planned run."""
    config = write_config(tmp_path_factory.mktemp("evidence"), arms=ARMS)
    tasks = {relation: load_task(relation) for relation in RELATIONS}
    for spec in plan(config):
        append_result(config.results, {
            "key": run_key(config, spec, tasks[spec.relation]), "relation": spec.relation,
            "method": spec.method, "seed": spec.seed, "lr": spec.lr, "steps": spec.steps,
            "template_name": spec.template, "wall_seconds": 1.0,
            "test": {"exact": exact(spec.relation, spec.method, spec.seed),
                     "facts_sha": f"synthetic {spec.relation}"}})
    return config


@pytest.fixture(scope="module")
def rows(synthetic) -> list[evidence.EvidenceRow]:
    return evidence.claim_evidence(Study.load(synthetic))


def picked(rows, claim_id: str) -> dict[str, evidence.EvidenceRow]:
    return {row.relation: row for row in rows if row.claim_id == claim_id}


def test_rows_carry_each_relations_verdict_and_a_pooled_row(rows, synthetic):
    level = picked(rows, LEVEL_CLAIM)
    in_study = dict.fromkeys(record["relation"] for record in Study.load(synthetic).records)
    assert list(level) == [*in_study, evidence.POOLED]  # the study's order, then pooled
    ahead, same, pooled = level["capital_of"], level["antonym"], level[evidence.POOLED]
    assert (ahead.outcome, ahead.winner) == (stats.Outcome.AHEAD, "lstm")
    assert (same.outcome, same.winner) == (stats.Outcome.UNDECIDED, None)
    assert same.estimate == pytest.approx(0.0, abs=1e-12) and same.low < 0 < same.high
    assert sorted(pooled.pooled_over) == sorted(RELATIONS) and pooled.where == "pooled (2)"
    assert (pooled.n_seeds, pooled.n_facts) == (SEEDS, 2 * FACTS)
    assert ahead.comparison == "lstm − free_normal"
    assert picked(rows, "lstm_vs_normal_spread")["capital_of"].comparison == (
        "sd lstm / sd free_normal")
    loaded = Study.load(synthetic)
    verdict = loaded.compare("capital_of", "lstm", "free_normal")
    assert (ahead.low, ahead.high) == (verdict.comparison.low, verdict.comparison.high)


def test_each_interval_holds_the_difference_computed_from_the_records(rows, synthetic):
    records = Study.load(synthetic).records
    means = {}
    for relation in ("capital_of", "antonym"):
        for method in ("lstm", "free_normal"):
            means[relation, method] = np.mean([r["test"]["exact"] for r in records
                                               if (r["relation"], r["method"]) == (relation,
                                                                                  method)])
    level = picked(rows, LEVEL_CLAIM)
    for relation in ("capital_of", "antonym"):
        row = level[relation]
        wanted = means[relation, "lstm"] - means[relation, "free_normal"]
        assert row.estimate == pytest.approx(wanted)
        assert row.low <= wanted <= row.high
    pooled = level[evidence.POOLED]  # equal fact counts: the mean of the two differences
    wanted = np.mean([means[r, "lstm"] - means[r, "free_normal"]
                      for r in ("capital_of", "antonym")])
    assert pooled.estimate == pytest.approx(wanted) and pooled.low <= wanted <= pooled.high


def test_rows_without_a_verdict_are_kept_with_the_reason(rows):
    mlp = picked(rows, "lstm_vs_mlp")
    assert sorted(mlp) == sorted(RELATIONS)  # one relation compared: nothing to pool
    few, absent = mlp["capital_of"], mlp["antonym"]
    assert few.outcome is stats.Outcome.TOO_FEW_SEEDS and few.n_seeds == 3
    assert "a verdict needs at least 5 seeds" in few.reason and not np.isnan(few.estimate)
    assert np.isnan(few.low) and np.isnan(few.high)  # no interval from fewer than 5 seeds
    assert evidence._numbers(few) == f"{few.estimate:+.3f} (no interval from 3 seeds)"
    assert absent.outcome is None and np.isnan(absent.estimate) and absent.n_seeds == 0
    assert absent.reason.startswith("not in the study yet") and "mlp" in absent.reason
    assert not picked(rows, LEVEL_CLAIM)["capital_of"].reason  # a verdict needs no reason
    assert sorted(picked(rows, "random_init_level")) == sorted(RELATIONS)  # no token-sized
    # runs: both relations kept, neither pooled


def test_the_summary_counts_each_outcome_in_plain_words(rows):
    said = evidence.claim_summaries(rows)
    assert list(said) == list(claims.CLAIMS)
    assert said[LEVEL_CLAIM].startswith(
        "lstm − free_normal: ahead on 1 of 2 relations, cannot tell on 1; pooled over 2: +")
    assert said["lstm_vs_mlp"] == ("lstm − mlp: ahead on 0 of 2 relations, too few seeds on 1, "
                                   "not in the study on 1")
    behind = evidence.claim_summaries([
        evidence.EvidenceRow("c", r, "a", "b", False, -0.2, -0.3, -0.1, 5, 9,
                             stats.Outcome.AHEAD, "b") for r in ("x", "y")])
    assert behind == {"c": "a − b: ahead on 0 of 2 relations, behind on 2"}


def test_the_table_stays_short_for_every_claim(rows):
    table = evidence.EvidenceTable(rows, "a heading")
    text = repr(table)
    assert len(text.splitlines()) <= evidence.MAX_LINES
    assert text.splitlines()[0] == "a heading" and f"({len(rows)} rows" in text
    page = table._repr_html_()
    assert page.count("<table") == 1 and len(page.splitlines()) <= evidence.MAX_LINES
    assert page.count("<tr") == len(rows) + 1  # one line per row, and the header
    assert page.count('colspan="3"') == sum(np.isnan(row.estimate) for row in rows)
    many = evidence.EvidenceTable([dataclasses.replace(rows[0], claim_id=f"claim {i}")
                                   for i in range(100)], "a heading")
    lines = repr(many).splitlines()
    assert len(lines) == evidence.MAX_LINES and lines[-2] == "... and 43 more"


def test_the_forest_plot_has_a_row_per_comparison_and_the_no_difference_lines(rows):
    fig = evidence.forest_plot(rows)
    levels, spreads = fig.axes[:2]
    drawn = [row for row in rows if not np.isnan(row.estimate)]
    ticks = [len(ax.get_yticks()) for ax in (levels, spreads)]
    assert ticks == [sum(not r.spread for r in drawn), sum(r.spread for r in drawn)]
    assert sum(ticks) == len(drawn)

    def vertical_at(ax, x: float) -> bool:
        return any(list(line.get_xdata()) == [x, x] and line.get_linestyle() == "--"
                   for line in ax.get_lines())

    assert vertical_at(levels, 0.0) and vertical_at(spreads, 1.0)
    assert spreads.get_xscale() == "log" and levels.get_xscale() == "linear"
    bold = [tick.get_text() for tick in levels.get_yticklabels()
            if tick.get_fontweight() == "bold"]
    assert bold == [f"{row.claim_id}: pooled (2)" for row in drawn
                    if row.pooled_over and not row.spread]
    assert levels.get_legend() is not None and fig.get_suptitle()
    plt.close(fig)


def test_course_evidence_reads_the_course_study_or_a_config(synthetic, tmp_path):
    root = course_root_with(synthetic, tmp_path / "course")
    table = evidence.course_evidence([LEVEL_CLAIM], root=root)
    assert [row.claim_id for row in table.rows] == [LEVEL_CLAIM] * 3
    assert table.heading.startswith("The course's study (results.jsonl)")
    again = evidence.course_evidence([LEVEL_CLAIM], config=synthetic.results.parent /
                                     "study.json")
    assert again.rows == table.rows
    (tmp_path / "bare" / "notebooks").mkdir(parents=True)
    (tmp_path / "bare" / "studies").mkdir()
    empty = evidence.course_evidence(root=tmp_path / "bare")
    assert empty.rows == [] and "not here" in repr(empty)


def test_the_committed_study_renders():
    """The committed (older) course study, read through the evidence view: every claim."""
    table = evidence.course_evidence(root=ROOT)
    if not table.rows:
        pytest.skip("the course's study has no results in this checkout")
    assert len(repr(table).splitlines()) <= evidence.MAX_LINES
    assert table._repr_html_().count("<table") == 1
    assert {row.claim_id for row in table.rows} == set(claims.CLAIMS)
    plt.close(evidence.forest_plot(table.rows))


class FigureRecorder:
    """A stand-in for report.Recorder: keeps the names of the figures it was given."""

    def __init__(self):
        self.names = []

    def figure(self, fig, name):
        self.names.append(name)
        return fig


def test_show_evidence_prints_the_claims_shows_the_table_and_records_the_plot(synthetic,
                                                                             capsys):
    recorder, before = FigureRecorder(), set(plt.get_fignums())
    table = evidence.show_evidence([LEVEL_CLAIM], config=synthetic.results.parent /
                                   "study.json", recorder=recorder, name="claims")
    printed = capsys.readouterr().out
    claim = claims.CLAIMS[LEVEL_CLAIM]
    assert printed.startswith(f"- {LEVEL_CLAIM}: {claim.text}")
    sentence = evidence.claim_summaries(table.rows)[LEVEL_CLAIM]
    assert printed.count(sentence) == 2  # the table as text, then under the plot
    assert printed.index("In words:") < printed.rindex(sentence)
    drawn = set(plt.get_fignums()) - before
    assert recorder.names == ["claims"] and len(drawn) == 1  # the forest plot
    assert [row.claim_id for row in table.rows] == [LEVEL_CLAIM] * 3
    for number in drawn:
        plt.close(number)


def test_show_evidence_says_when_there_is_nothing_to_draw(synthetic, capsys):
    recorder = FigureRecorder()
    table = evidence.show_evidence(["lora_vs_manual"], config=synthetic.results.parent /
                                   "study.json", recorder=recorder)
    assert "Nothing to draw yet" in capsys.readouterr().out
    assert recorder.names == [] and evidence.comparable(table.rows) == []


def test_a_summary_row_gives_a_runs_median_time_and_an_interval_inside_0_1(synthetic):
    loaded = Study.load(synthetic)
    paused = [dict(r) for r in loaded.records]
    lstm = [r for r in paused if (r["relation"], r["method"]) == ("capital_of", "lstm")]
    lstm[0]["wall_seconds"] = 3600.0  # one run stopped by kill -STOP for an hour
    for record in [r for r in paused if (r["relation"], r["method"]) == ("antonym", "lstm")]:
        record["test"] = dict(record["test"], exact=[0] * FACTS)
    record = next(r for r in paused if (r["relation"], r["method"], r["seed"]) ==
                  ("antonym", "lstm", 0))
    record["test"] = dict(record["test"], exact=[1] * 10 + [0] * (FACTS - 10))  # one seed
    # scores, five do not: the scaled and stretched bootstrap interval reaches below 0
    rows = {(row["relation"], row["method"]): row
            for row in Study(loaded.config, paused).summary_rows()}
    assert rows["capital_of", "lstm"]["wall_seconds"] == 1.0  # the median: the pause is gone
    floor = rows["antonym", "lstm"]
    assert floor["mean"] == pytest.approx(10 / (FACTS * SEEDS))
    assert floor["low"] == 0.0 < floor["high"] <= 1.0  # an exact match is never below 0
    for row in rows.values():
        if row["seeds"] == 0 or row["seeds"] >= stats.MIN_SEEDS:  # mlp's 3 seeds: no interval
            assert 0.0 <= row["low"] <= row["mean"] <= row["high"] <= 1.0, row["method"]


def test_the_markdown_table_gives_each_claims_pooled_row_and_the_command_prints_it(
        synthetic, tmp_path, capsys):
    root = course_root_with(synthetic, tmp_path / "course")
    table = evidence.course_evidence([LEVEL_CLAIM, "lstm_vs_mlp"], root=root)
    lines = table.markdown().splitlines()
    assert lines[0] == table.heading and lines[2].startswith("| claim | comparison |")
    level, mlp = lines[4], lines[5]
    pooled = picked(table.rows, LEVEL_CLAIM)[evidence.POOLED]
    assert level.startswith(f"| {LEVEL_CLAIM} | lstm − free_normal | {evidence._numbers(pooled)}"
                            " (pooled (2)) | 6 × 60 | ahead |")
    assert level.endswith("| ahead on 1 of 2 relations, cannot tell on 1 |")
    assert "(no interval from 3 seeds) (capital_of) | 3 × 30 | too few seeds |" in mlp
    assert evidence.main([str(synthetic.results.parent / "study.json")]) == 0
    printed = capsys.readouterr().out
    assert "| lstm_vs_normal_level |" in printed and "| random_init_level |" in printed
    assert evidence.main([str(tmp_path / "absent.json")]) == 2
    assert "no study config at" in capsys.readouterr().err


def test_a_row_in_one_line_gives_its_verdict_numbers_and_size_or_its_reason(rows):
    level = picked(rows, LEVEL_CLAIM)["capital_of"]
    assert evidence.describe_row(level) == (
        f"ahead: lstm − free_normal {evidence._numbers(level)}, {SEEDS} seeds × {FACTS} facts")
    absent = picked(rows, "lstm_vs_mlp")["antonym"]
    assert evidence.describe_row(absent) == f"not in the study: {absent.reason}"
