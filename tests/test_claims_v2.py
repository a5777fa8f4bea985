"""The claims and study views of the second study's arms (deep prompts, prompt length, the
reference rows), on a synthetic study whose answers are known: every claim's labels read the
runs of their arm, rows per prompt length, the cost table, the note on arms with no rows yet,
and the prompt-length figure."""

import math

import matplotlib
import numpy as np
import pytest
from test_study import course_root_with, write_config

from ptlib import load_task, stats
from ptlib.course import claims, evidence, study_plots
from ptlib.course.study import Study, append_result, plan, run_key
from ptlib.errors import ConfigError

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SEEDS = list(range(5))
RELATIONS = ("capital_of", "antonym")
FACTS = 40
TEMPLATES = {"prepend_1": "[P] {manual}", "prepend_3": "[P][P][P] {manual}",
             "prepend_10": "[P]" * 10 + " {manual}", "manual_wrapped": "[P] {manual} [P]"}
ARMS = [
    {"name": "main", "relations": list(RELATIONS), "methods": ["manual", "free_rescaled", "lstm"],
     "seeds": SEEDS},
    {"name": "deep", "relations": list(RELATIONS),
     "methods": ["prefix", "prefix_mlp", "free_rescaled", "lstm"], "seeds": SEEDS,
     "templates": ["prepend_3"]},
    {"name": "prompt_length", "relations": ["capital_of"], "methods": ["prefix", "free_rescaled"],
     "seeds": SEEDS, "templates": ["prepend_1", "prepend_10"]},
    {"name": "reference", "relations": list(RELATIONS), "methods": ["few_shot_8", "lora"],
     "seeds": SEEDS, "lr": [0.001]},
    {"name": "deep_lr", "relations": ["capital_of"], "methods": ["prefix"], "seeds": SEEDS,
     "templates": ["prepend_3"], "lr": [0.03]},
    {"name": "search", "relations": list(RELATIONS),
     "methods": ["autoprompt_manual", "gcg_manual"], "seeds": SEEDS},
    {"name": "lr_grid", "relations": ["capital_of"], "methods": ["free_rescaled", "lstm"],
     "seeds": SEEDS, "lr": [0.0003, 0.03]},
    {"name": "placement", "relations": ["capital_of"], "methods": ["lstm"], "seeds": SEEDS,
     "templates": ["manual_wrapped"]},  # planned, never written: an arm with no rows
]
LEVEL = {  # (method, template) -> chance of an exact match on each test fact
    ("manual", ""): 0.4, ("free_rescaled", ""): 0.5, ("lstm", ""): 0.6,
    ("prefix", "prepend_3"): 0.9, ("prefix_mlp", "prepend_3"): 0.9,
    ("free_rescaled", "prepend_3"): 0.3, ("lstm", "prepend_3"): 0.35,
    ("prefix", "prepend_1"): 0.5, ("prefix", "prepend_10"): 0.95,
    ("free_rescaled", "prepend_1"): 0.2, ("free_rescaled", "prepend_10"): 0.4,
    ("few_shot_8", ""): 0.45, ("lora", ""): 0.97,
    ("autoprompt_manual", ""): 0.45, ("gcg_manual", ""): 0.5,
}
WIDTH = {"prefix": 11_520, "free_rescaled": 576}  # trainable numbers per virtual token


def exact(relation: str, method: str, template: str, seed: int | None) -> list[int]:
    draws = np.random.default_rng([RELATIONS.index(relation), list(LEVEL).index(
        (method, template)), 99 if seed is None else seed])
    return (draws.random(FACTS) < LEVEL[method, template]).astype(int).tolist()


def trainable(method: str, template: str) -> int | None:
    """What a synthetic record says its run trained (None: the record carries no count)."""
    if method == "manual":
        return None
    if method in ("few_shot_8", "lora"):
        return 0 if method == "few_shot_8" else 460_800
    length = TEMPLATES[template].count("[P]") if template else 6
    return length * WIDTH.get(method, 2_000_000)


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    """A v2-like study config whose results hold every planned run but the placement arm's."""
    written = write_config(tmp_path_factory.mktemp("claims_v2"), arms=ARMS, templates=TEMPLATES,
                           lora={"r": 8})
    tasks = {relation: load_task(relation) for relation in RELATIONS}
    for spec in plan(written):
        if spec.arms == ("placement",):
            continue
        record = {"key": run_key(written, spec, tasks[spec.relation]),
                  "relation": spec.relation, "method": spec.method, "seed": spec.seed,
                  "lr": spec.lr, "steps": spec.steps, "template_name": spec.template,
                  "wall_seconds": 1.0, "trainable_parameters": trainable(spec.method,
                                                                         spec.template),
                  "test": {"exact": exact(spec.relation, spec.method, spec.template, spec.seed),
                           "facts_sha": f"synthetic {spec.relation}"}}
        if spec.method == "lora":
            record["train_flops"] = 1.5e15
        append_result(written.results, record)
    return written


@pytest.fixture(scope="module")
def loaded(config) -> Study:
    return Study.load(config)


NEW_CLAIMS = ["deep_prefix_vs_free", "deep_prefix_vs_lstm", "prefix_mlp_vs_prefix",
              "prefix_mlp_vs_prefix_spread", "lora_vs_lstm", "lora_vs_manual",
              "few_shot_vs_manual", "few_shot_vs_lora"]


def picked(loaded: Study, relation: str, label: str) -> set[tuple]:
    return {(r["method"], r["template_name"], r["lr"]) for r in loaded.select(relation, label)}


def test_each_new_claims_labels_read_the_runs_of_their_arm(loaded):
    wanted = {"prefix template=prepend_3": ("prefix", "prepend_3", 0.003),
              "prefix_mlp template=prepend_3": ("prefix_mlp", "prepend_3", 0.003),
              "free_rescaled template=prepend_3": ("free_rescaled", "prepend_3", 0.003),
              "lstm template=prepend_3": ("lstm", "prepend_3", 0.003),
              "lstm": ("lstm", "", 0.003), "manual": ("manual", "", None),
              "lora lr=0.001": ("lora", "", 0.001), "few_shot_8": ("few_shot_8", "", None)}
    for claim_id in NEW_CLAIMS:
        claim = claims.CLAIMS[claim_id]
        for label in (claim.label_a, claim.label_b):
            for relation in RELATIONS:
                assert picked(loaded, relation, label) == {wanted[label]}, (claim_id, label)
    assert loaded.select("capital_of", "lora") == []  # at the study's lr: no such runs
    assert len(loaded.select("capital_of", "prefix template=prepend_10")) == len(SEEDS)


SEARCH_AND_LR_CLAIMS = ["autoprompt_vs_manual", "gcg_vs_manual", "gcg_vs_autoprompt",
                        "relaxation_vs_autoprompt", "relaxation_vs_gcg",
                        "lstm_vs_rescaled_slow", "lstm_vs_rescaled_fast",
                        "deep_prefix_fast_vs_free", "deep_prefix_fast_vs_lstm"]


def test_the_search_and_learning_rate_claims_read_the_second_studys_arms(loaded):
    wanted = {"autoprompt_manual": ("autoprompt_manual", "", None),
              "gcg_manual": ("gcg_manual", "", None), "manual": ("manual", "", None),
              "free_rescaled": ("free_rescaled", "", 0.003),
              "lstm lr=0.0003": ("lstm", "", 0.0003),
              "free_rescaled lr=0.0003": ("free_rescaled", "", 0.0003),
              "lstm lr=0.03": ("lstm", "", 0.03),
              "free_rescaled lr=0.03": ("free_rescaled", "", 0.03),
              "prefix lr=0.03 template=prepend_3": ("prefix", "prepend_3", 0.03),
              "free_rescaled template=prepend_3": ("free_rescaled", "prepend_3", 0.003),
              "lstm template=prepend_3": ("lstm", "prepend_3", 0.003)}
    for claim_id in SEARCH_AND_LR_CLAIMS:
        claim = claims.CLAIMS[claim_id]
        for label in (claim.label_a, claim.label_b):
            assert picked(loaded, "capital_of", label) == {wanted[label]}, (claim_id, label)
    gcg = {item.relation: item.verdict for item in claims.claim_verdicts(loaded,
                                                                          ["gcg_vs_manual"])}
    assert gcg["capital_of"].comparison.n_seeds == len(SEEDS)
    for claim_id in ("placement_free", "placement_lstm"):  # the placement arm has no rows here
        claim = claims.CLAIMS[claim_id]
        assert claim.label_a.endswith("template=manual_wrapped")
        assert claim.label_b == claim.label_a.split()[0]
        assert loaded.select("capital_of", claim.label_a) == []


def test_the_new_claims_are_decided_in_the_direction_the_runs_were_drawn(loaded):
    verdicts = {(item.claim_id, item.relation): item.verdict
                for item in claims.claim_verdicts(loaded, NEW_CLAIMS)}
    assert len(verdicts) == len(NEW_CLAIMS) * len(RELATIONS)
    for relation in RELATIONS:
        for claim_id, winner in [("deep_prefix_vs_free", "prefix template=prepend_3"),
                                 ("deep_prefix_vs_lstm", "prefix template=prepend_3"),
                                 ("lora_vs_lstm", "lora lr=0.001"),
                                 ("lora_vs_manual", "lora lr=0.001"),
                                 ("few_shot_vs_lora", "lora lr=0.001")]:
            verdict = verdicts[claim_id, relation]
            assert (verdict.outcome, verdict.winner) == (stats.Outcome.AHEAD, winner), claim_id
        level = verdicts["prefix_mlp_vs_prefix", relation].comparison
        assert level.n_seeds == len(SEEDS) and level.n_facts == FACTS


def test_course_evidence_reads_a_study_config_and_keeps_claims_not_run(config, tmp_path):
    path = config.results.parent / "study.json"
    text = evidence.course_evidence(["deep_prefix_vs_free", "random_init_level"], config=path)
    deep = [row for row in text.rows if row.claim_id == "deep_prefix_vs_free"]
    assert deep and all(row.outcome is not None for row in deep)
    absent = [row for row in text.rows if row.claim_id == "random_init_level"]
    assert absent and all(row.outcome is None and "not in the study" in row.reason
                          for row in absent)  # no free_normal runs: kept, with the reason
    root = course_root_with(config, tmp_path / "course")  # the config in its studies/
    relative = evidence.course_evidence(["deep_prefix_vs_free"], root=root,
                                        config=claims.COURSE_STUDY)
    assert relative.heading == text.heading and relative.rows == deep
    table = evidence.course_evidence(NEW_CLAIMS, config=path)
    drawn = evidence.comparable(table.rows)
    assert drawn and all(not math.isnan(row.estimate) for row in drawn)
    assert {row.claim_id for row in table.rows} == set(NEW_CLAIMS)
    bare = evidence.course_evidence(NEW_CLAIMS, config=path.with_name("absent.json"))
    assert bare.rows == [] and evidence.comparable(bare.rows) == []
    assert "not here" in bare.heading


def test_rows_per_prompt_length_hold_every_seed_and_the_recorded_cost(loaded):
    assert loaded.prefix_templates() == {"prepend_1": 1, "prepend_3": 3, "prepend_10": 10}
    rows = loaded.length_rows(["prefix", "free_rescaled"])
    capital = [(row["method"], row["length"]) for row in rows if row["relation"] == "capital_of"]
    assert capital == [("prefix", 1), ("prefix", 3), ("prefix", 10), ("free_rescaled", 1),
                       ("free_rescaled", 3), ("free_rescaled", 10)]
    antonym = [(row["method"], row["length"]) for row in rows if row["relation"] == "antonym"]
    assert antonym == [("prefix", 3), ("free_rescaled", 3)]  # only the deep arm there
    row = next(row for row in rows if (row["relation"], row["method"], row["length"]) == (
        "capital_of", "prefix", 10))
    assert row["label"] == "prefix template=prepend_10" and row["template"] == "prepend_10"
    assert row["seed_means"] == [np.mean(exact("capital_of", "prefix", "prepend_10", seed))
                                 for seed in SEEDS]
    assert row["trainable_parameters"] == 10 * WIDTH["prefix"] and row["train_flops"] is None
    assert loaded.length_rows(["prefix"], relations=["antonym"]) == [
        r for r in loaded.length_rows(["prefix"]) if r["relation"] == "antonym"]


def test_the_cost_table_shows_parameters_and_flops_where_recorded(loaded):
    text = loaded.cost_table(["manual", "few_shot_8", "lora lr=0.001",
                              "prefix template=prepend_3"])
    lines = text.splitlines()
    assert len(lines) == 2 + 4 * len(RELATIONS)
    lora = next(line for line in lines if line.startswith("capital_of") and "lora" in line)
    assert "460,800" in lora and "1.5e+15" in lora
    manual = next(line for line in lines if line.startswith("antonym") and "manual" in line)
    assert manual.split()[-2:] == ["-", "-"]  # not recorded
    prefix = next(line for line in lines if "prefix" in line)
    assert f"{3 * WIDTH['prefix']:,}" in prefix
    assert "no runs" in loaded.cost_table(["lstm template=manual_wrapped"])


def test_the_arms_note_names_empty_and_partial_arms_and_the_command(loaded, config):
    progress = loaded.arm_progress()
    assert progress["placement"] == (0, len(SEEDS))
    assert progress["deep"] == (len(RELATIONS) * 4 * len(SEEDS),) * 2
    note = loaded.arms_note(["deep", "placement"])
    assert "no rows yet for the arms placement" in note and "deep" not in note.split(":")[1]
    assert "`make study`" in note and 'STUDY="--only arm=placement"' in note
    assert loaded.arms_note(["deep", "reference"]).startswith("Every run of the arms deep")
    with pytest.raises(ConfigError, match="has no arms"):
        loaded.arms_note(["no_such_arm"])
    half = Study(config, loaded.records[: len(loaded.records) // 2])
    assert "runs recorded so far:" in half.arms_note(["deep", "reference"])


def test_the_prompt_length_figure_has_two_log_panels_per_relation(loaded):
    rows = loaded.length_rows(["prefix", "free_rescaled"])
    fig = study_plots.prompt_length_plot(rows)
    assert len(fig.axes) == 2 * len(RELATIONS)
    left, right = fig.axes[:2]
    assert left.get_xscale() == right.get_xscale() == "log"
    assert [tick.get_text() for tick in left.get_xticklabels()] == ["1", "3", "10"]
    assert right.get_legend() is not None and fig.get_suptitle()
    plt.close(fig)
    with pytest.raises(ConfigError, match="no rows"):
        study_plots.prompt_length_plot([])
