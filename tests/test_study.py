"""The resumable study runner (ptlib.course.study) on the tiny model: a study interrupted by a
limit, a crash mid-write and an exception resumes to the same results file as an uninterrupted
one."""

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

import ptlib
from ptlib import stats
from ptlib.course import claims, evidence, study
from ptlib.course.study import runner as study_runner
from ptlib.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]
TINY_STUDY = {
    "name": "tiny_study",
    "model": "tiny",
    "template": "[P] {x} [P]",
    "results": "results.jsonl",
    "train": {"steps": 2, "batch_size": 4, "eval_every": 1},
    "search": {"num_candidates": 3, "batch_size": 4, "eval_every": 1},
    "arms": [
        {"name": "main", "relations": ["capital_of"],
         "methods": ["manual", "autoprompt", "free_normal", "lstm"], "seeds": [0, 1]},
        {"name": "lr_grid", "relations": ["capital_of"], "methods": ["free_normal"],
         "seeds": [0, 1], "lr": [0.003, 0.03]},
    ],
}
RUNS = 1 + 3 * 2 + 2  # manual once; 3 seeded methods x 2 seeds; lr 0.03 x 2 (0.003 is shared)


def write_config(folder, **changes):
    path = folder / "study.json"
    path.write_text(json.dumps(TINY_STUDY | changes))
    return study.StudyConfig.from_file(path)


def without_wall_time(records):
    """Records less what differs between two runs of the same spec: time and machine load."""
    timing = ("wall_seconds", "cpu_seconds", "machine")
    return [{k: v for k, v in record.items() if k not in timing} for record in records]


def course_root_with(config, folder):
    """A course repository at ``folder`` whose study is ``config`` (its results file kept)."""
    (folder / "notebooks").mkdir(parents=True, exist_ok=True)
    (folder / claims.COURSE_STUDY).parent.mkdir(exist_ok=True)
    raw = json.loads((config.results.parent / "study.json").read_text())
    raw["results"] = str(config.results)
    (folder / claims.COURSE_STUDY).write_text(json.dumps(raw))
    return folder


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The tiny study run in one go, loading the model by name (ptlib.load_lm("tiny"))."""
    config = write_config(tmp_path_factory.mktemp("whole"))
    new = study.run_study(config, log=None)
    return config, study.read_results(config.results), new


def test_plan_expands_dedupes_and_orders_the_grid(tmp_path):
    config = write_config(tmp_path)
    specs = study.plan(config)
    assert len(specs) == RUNS
    assert specs[0].label == "capital_of manual" and specs[0].seed is None
    assert [s.seed for s in specs[1:]] == sorted(s.seed for s in specs[1:])  # seed by seed
    shared = [s for s in specs if s.method == "free_normal" and s.lr == 0.003]
    assert [s.arms for s in shared] == [("main", "lr_grid")] * 2
    assert {s.steps for s in specs if s.method != "manual"} == {2}
    only = study.plan(config, study.parse_only(["method=free_normal", "lr=0.03"]))
    assert [s.label for s in only] == ["capital_of free_normal seed=0 lr=0.03 steps=2",
                                       "capital_of free_normal seed=1 lr=0.03 steps=2"]
    assert len(study.plan(config, {"arm": ["lr_grid"]})) == 4


def test_uninterrupted_study_writes_one_record_per_run(uninterrupted):
    config, records, new = uninterrupted
    assert len(records) == len(new) == RUNS
    assert len({r["key"] for r in records}) == RUNS
    lstm = next(r for r in records if r["method"] == "lstm")
    assert lstm["config"]["encoder"] == "lstm" and lstm["config"]["seed"] == lstm["seed"]
    assert lstm["dev_curve"]["step"] == [0, 1, 2]
    assert len(lstm["dev_curve"]["exact_match"]) == 3
    test = lstm["test"]
    assert len(test["exact"]) == len(test["first_rank"]) == test["facts"]
    assert test["exact_match"] == pytest.approx(np.mean(test["exact"]))
    assert lstm["wall_seconds"] > 0 and lstm["cpu_seconds"] > 0
    assert lstm["machine"]["cores"] >= 1
    assert lstm["precision"] in ("fp32", "bf16") and lstm["commit"]  # what made the record
    manual = next(r for r in records if r["method"] == "manual")
    assert manual["seed"] is None and manual["template"] in manual["config"]["templates"]
    search = next(r for r in records if r["method"] == "autoprompt")
    assert search["config"]["max_forwards"] == 3 * 2 * 4  # the training budget
    assert search["forwards"] <= 3 * 2 * 4 + 4 * 4  # + one scoring batch
    assert search["dev_curve"]["forwards"][-1] <= search["forwards"]


def test_interrupted_study_resumes_to_the_same_file(uninterrupted, tmp_path, tiny,
                                                    monkeypatch):
    whole_config, whole, _ = uninterrupted
    config = write_config(tmp_path)

    # 1. a limit of 2 runs
    assert len(study.run_study(config, tiny, limit=2, log=None)) == 2
    # 2. a crash mid-write: half a record, no newline
    with open(config.results, "ab") as handle:
        handle.write(b'{"key": "0123", "relation": "capi')
    assert len(study.read_results(config.results)) == 2  # the partial line is ignored
    # 3. an exception after 3 more runs
    real, calls = study_runner.run_one, []

    def failing(*args, **kwargs):
        if len(calls) == 3:
            raise RuntimeError("power cut")
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(study_runner, "run_one", failing)
    with pytest.raises(RuntimeError, match="power cut"):
        study.run_study(config, tiny, log=None)
    monkeypatch.setattr(study_runner, "run_one", real)
    assert len(study.read_results(config.results)) == 5
    assert not config.results.with_name("results.jsonl.lock").exists()

    # resume: the rest, and the same file as the uninterrupted study
    messages = []
    assert len(study.run_study(config, tiny, log=messages.append)) == RUNS - 5
    assert messages[0] == f"study tiny_study: {RUNS - 5} runs to do"
    resumed = study.read_results(config.results)
    assert without_wall_time(resumed) == without_wall_time(whole)
    assert config.results.read_bytes().endswith(b"\n")
    # and once more: nothing left to do, the file untouched
    before = config.results.read_bytes()
    assert study.run_study(config, tiny, log=None) == []
    assert config.results.read_bytes() == before
    assert whole_config.results != config.results


def test_read_results_repairs_only_a_partial_last_line(tmp_path):
    path = tmp_path / "r.jsonl"
    assert study.read_results(path) == []
    study.append_result(path, {"key": "a", "n": 1})
    study.append_result(path, {"key": "b", "n": 2})
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"key": "c", "n"')
    assert [r["key"] for r in study.read_results(path)] == ["a", "b"]
    assert path.read_bytes() != whole  # reading alone changes nothing
    study.read_results(path, repair=True)
    assert path.read_bytes() == whole
    path.write_bytes(whole + b'{"key": "c"}')  # whole JSON but no newline: still partial
    assert [r["key"] for r in study.read_results(path, repair=True)] == ["a", "b"]
    assert path.read_bytes() == whole
    path.write_bytes(b'{"key": "a"}\nnot json\n{"key": "b"}\n')
    with pytest.raises(DataError, match="line 2: not a run record"):
        study.read_results(path)


def test_a_second_runner_is_refused(tmp_path):
    config = write_config(tmp_path)
    with study.records.locked(config.results):
        with pytest.raises(ConfigError, match="another study runner is writing"):
            study.run_study(config, log=None)


def test_study_reads_back_into_paired_outcome_matrices(uninterrupted):
    config, records, _ = uninterrupted
    loaded = study.Study.load(config)
    assert len(loaded.records) == RUNS and loaded.stale == 0
    found, seeds = loaded.matrices("capital_of", ["manual", "lstm", "free_normal lr=0.03"])
    assert seeds == [0, 1]
    facts = records[0]["test"]["facts"]
    assert {m.shape for m in found.values()} == {(2, facts)}
    np.testing.assert_array_equal(found["manual"][0], found["manual"][1])  # deterministic
    lstm = [r for r in records if r["method"] == "lstm"]
    np.testing.assert_array_equal(found["lstm"], [r["test"]["exact"] for r in lstm])
    verdict = loaded.compare("capital_of", "lstm", "free_normal")
    assert isinstance(verdict, stats.Verdict) and verdict.outcome is stats.Outcome.TOO_FEW_SEEDS
    assert verdict.comparison.n_seeds == 2 and "no verdict from 2 seeds" in verdict.text
    assert isinstance(loaded.compare("capital_of", "lstm", "manual", spread=True), stats.Verdict)
    with pytest.raises(DataError, match="no runs of"):
        loaded.matrices("capital_of", ["mlp"])
    table = loaded.summary_table()
    lines = table.splitlines()
    assert lines[0].startswith("relation") and "95% interval" in lines[0]
    methods = [line.split()[1] for line in lines[1:-1]]
    assert methods == ["manual", "autoprompt", "free_normal", "lstm"]
    assert all(line.split()[4:7] == ["(<", "5", "seeds)"] for line in lines[2:-1])
    for row in loaded.summary_rows():
        if row["seeds"]:  # two seeds: no interval
            assert math.isnan(row["low"]) and math.isnan(row["high"])
        else:  # the deterministic manual row: test facts alone give its interval
            assert row["low"] <= row["mean"] <= row["high"]
        assert len(row["seed_means"]) == max(row["seeds"], 1)
        assert row["mean"] == pytest.approx(np.mean(row["seed_means"]))


def test_a_changed_config_makes_old_records_stale(uninterrupted, tmp_path):
    config, records, _ = uninterrupted
    changed = write_config(tmp_path, train={"steps": 3, "batch_size": 4, "eval_every": 1})
    changed.results.write_text(config.results.read_text())
    loaded = study.Study.load(changed)
    assert len(records) == RUNS
    assert len(loaded.records) == 1 and loaded.records[0]["method"] == "manual"
    assert loaded.stale == RUNS - 1  # steps changed every run but the manual baseline


@pytest.mark.parametrize("change, message", [
    ({"arms": []}, "'arms' is empty"),
    ({"arms": [{"name": "a", "relations": ["capital_of"], "methods": ["gpt"],
                "seeds": [0]}]}, "unknown methods"),
    ({"arms": [{"name": "a", "relations": ["capital_of"], "methods": ["lstm"],
                "seeds": [0], "lrs": [1]}]}, "unknown fields"),
    ({"arms": [{"name": "a", "relations": ["capital_of"], "methods": ["lstm"],
                "seeds": []}]}, "needs a non-empty 'seeds'"),
    ({"train": {"seed": 3}}, "may not set 'seed'"),
    ({"train": {"lr": -1}}, "lr must be positive"),
    ({"search": {"max_forwards": 10}}, "may not set 'max_forwards'"),
])
def test_bad_configs_are_refused(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        write_config(tmp_path, **change)


def test_parse_only_refuses_unknown_fields():
    assert study.parse_only(["seed=0,1", "seed=2"]) == {"seed": ["0", "1", "2"]}
    with pytest.raises(ConfigError, match="FIELD=VALUE"):
        study.parse_only(["colour=red"])


def test_command_line_plan_and_summary(uninterrupted, capsys):
    config, _, _ = uninterrupted
    path = str(config.results.parent / "study.json")
    assert study_runner.main([path, "--plan"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"0 runs left of {RUNS} planned")
    assert study_runner.main([path, "--summary"]) == 0
    assert "capital_of" in capsys.readouterr().out
    assert study_runner.main([path, "--only", "colour=red"]) == 2


def test_the_course_study_config_is_valid():
    config = study.StudyConfig.from_file(ROOT / claims.COURSE_STUDY)
    specs = study.plan(config)
    main = [s for s in specs if "main" in s.arms]
    relations = {s.relation for s in main}
    assert {"capital_of", "country_language", "element_symbol", "antonym"} < relations
    seeded = {(s.relation, s.method) for s in main if s.seed is not None}
    for cell in seeded:
        assert sum((s.relation, s.method) == cell for s in main) >= 10
    assert {s.lr for s in specs if "lr_grid" in s.arms} == {3e-4, 3e-3, 3e-2}
    assert {s.steps for s in specs if "long" in s.arms} == {4 * config.steps}


TEST_CLAIMS = {
    "encoder": claims.Claim("encoder", "lstm", "free_normal"),
    "mlp": claims.Claim("mlp", "mlp", "lstm"),
    "lr": claims.Claim("lr", "free_normal lr=0.03", "free_normal", spread=True),
}


def test_claim_verdicts_skip_what_is_not_run_yet(uninterrupted, monkeypatch):
    config, _, _ = uninterrupted
    loaded = study.Study.load(config)
    monkeypatch.setattr(claims, "CLAIMS", TEST_CLAIMS)
    verdicts = claims.claim_verdicts(loaded, ["encoder", "mlp", "lr"])
    assert [(item.relation, item.claim_id) for item in verdicts] == [
        ("capital_of", "encoder"), ("capital_of", "mlp"), ("capital_of", "lr")]
    assert isinstance(verdicts[0].verdict, stats.Verdict)
    assert isinstance(verdicts[2].verdict, stats.Verdict)
    assert verdicts[1].verdict is None and verdicts[1].missing.startswith("not in the study yet")
    with pytest.raises(ConfigError, match="unknown claims"):
        claims.claim_verdicts(loaded, ["no_such_claim"])


def test_every_course_claim_is_decided_from_the_tiny_study(uninterrupted):
    config, _, _ = uninterrupted
    everything = claims.claim_verdicts(study.Study.load(config))
    assert [item.claim_id for item in everything] == list(claims.CLAIMS)
    decided = {item.claim_id for item in everything if item.verdict is not None}
    assert {"lstm_vs_normal_level", "lstm_vs_manual"} <= decided
    assert "random_init_level" not in decided  # the tiny study has no free_rescaled runs
    assert "autoprompt_vs_manual" not in decided  # its search starts from " the", not manual


def test_course_evidence_reads_the_named_claims_or_says_why_there_is_nothing(uninterrupted,
                                                                           tmp_path):
    config, _, _ = uninterrupted
    root = course_root_with(config, tmp_path / "course")
    table = evidence.course_evidence(["lstm_vs_normal_level"], root=root)
    assert table.heading == (f"The course's study (results.jsonl): {RUNS} of {RUNS} planned "
                             "runs recorded.")
    assert {row.claim_id for row in table.rows} == {"lstm_vs_normal_level"}  # only the named one
    assert {row.claim_id for row in evidence.course_evidence(root=root).rows} == set(claims.CLAIMS)
    empty = tmp_path / "empty"
    (empty / "notebooks").mkdir(parents=True)
    (empty / "studies").mkdir()
    raw = json.loads((config.results.parent / "study.json").read_text())
    (empty / claims.COURSE_STUDY).write_text(json.dumps(raw))  # no results file
    nothing = evidence.course_evidence(["random_init_level"], root=empty)
    assert nothing.rows == [] and nothing.heading.startswith(
        "No results from the course's study here yet")
    (empty / claims.COURSE_STUDY).unlink()
    assert "not here" in evidence.course_evidence(["random_init_level"], root=empty).heading
    assert claims.course_rows(root=empty) == []


def test_course_rows_give_each_seed_for_the_strip_plot(uninterrupted, tmp_path):
    config, records, _ = uninterrupted
    root = course_root_with(config, tmp_path)
    rows = {row["method"]: row for row in claims.course_rows(root=root)}
    lstm = [r for r in records if r["method"] == "lstm"]
    assert rows["lstm"]["seed_means"] == [float(np.mean(r["test"]["exact"])) for r in lstm]
    assert rows["manual"]["seeds"] == 0 and len(rows["manual"]["seed_means"]) == 1
    chosen = claims.course_rows(root=root, labels=["lstm", "free_normal lr=0.03"])
    assert [row["method"] for row in chosen] == ["lstm", "free_normal lr=0.03"]


def test_the_course_study_is_read_once_per_state_of_its_results(uninterrupted, tmp_path):
    config, _, _ = uninterrupted
    root = course_root_with(config, tmp_path)
    first = claims.course_study(root)
    assert claims.course_study(root) is first  # the cells of a notebook share one read
    lines = config.results.read_text().splitlines(keepends=True)
    config.results.write_text("".join(lines[:-1]))  # the results file changed: read again
    again = claims.course_study(root)
    assert again is not first and len(again.records) == len(first.records) - 1
    config.results.write_text("".join(lines))


def test_compile_enters_a_run_key_only_when_on(uninterrupted):
    """Records written before TrainConfig.compile existed keep their keys; compiled runs round
    differently, so they are other runs."""
    config, _, _ = uninterrupted
    spec = next(s for s in study.plan(config) if s.method == "lstm")
    task = ptlib.load_task(spec.relation)
    key = study.run_key(config, spec, task)
    assert study.run_key(dataclasses.replace(config, train=config.train | {"compile": False}),
                         spec, task) == key
    assert study.run_key(dataclasses.replace(config, train=config.train | {"compile": True}),
                         spec, task) != key


FROM_MANUAL = TINY_STUDY | {
    "name": "tiny_from_manual",
    "search": {"num_candidates": 3, "batch_size": 4, "eval_every": 1, "patience": 2},
    "search_budget": 3,
    "templates": {"wrapped": "[P] {manual} [P]"},
    "arms": [{"name": "main", "relations": ["capital_of"],
              "methods": ["manual", "autoprompt_manual", "gcg_manual", "lstm"], "seeds": [0]},
             {"name": "placement", "relations": ["capital_of"], "methods": ["lstm"],
              "seeds": [0], "templates": ["wrapped"]}],
}


def test_searches_from_the_manual_prompt_and_named_templates(tmp_path):
    path = tmp_path / "study.json"
    path.write_text(json.dumps(FROM_MANUAL))
    config = study.StudyConfig.from_file(path)
    specs = study.plan(config)
    assert [s.label for s in specs] == [
        "capital_of manual", "capital_of autoprompt_manual seed=0 steps=2",
        "capital_of gcg_manual seed=0 steps=2", "capital_of lstm seed=0 lr=0.003 steps=2",
        "capital_of lstm seed=0 lr=0.003 steps=2 template=wrapped"]
    records = {r["method"] + r["template_name"]: r for r in study.run_study(config, log=None)}
    manual = records["manual"]
    for method in ("autoprompt_manual", "gcg_manual"):
        found = records[method]
        assert found["start_template"] == manual["template"]  # chosen on dev
        assert found["best_dev_exact_match"] >= manual["best_dev_exact_match"]
        assert found["dev_curve"]["exact_match"][0] == manual["best_dev_exact_match"]
        assert found["stopped_by"] in ("budget", "patience")
        assert found["forwards"] >= found["config"]["max_forwards"] or (
            found["stopped_by"] == "patience")
        assert found["config"]["max_forwards"] == 3 * 3 * 2 * 4  # 3x a training run's forwards
    wrapped = records["lstmwrapped"]
    assert wrapped["template"] == f"[P] {manual['template']} [P]"
    assert records["lstm"]["template"] == "[P] {x} [P]"
    loaded = study.Study.load(config)
    assert [r["template_name"] for r in loaded.select("capital_of", "lstm template=wrapped")] == [
        "wrapped"]
    assert [r["template_name"] for r in loaded.select("capital_of", "lstm")] == [""]


def test_the_old_study_keys_survive_the_new_fields():
    """Records of the committed study were keyed before SearchConfig had top_k and patience and
    before studies had named templates: the plan still finds every one of them."""
    config = study.StudyConfig.from_file(ROOT / "studies" / "course_study.json")  # the first
    loaded = study.Study.load(config)
    if not loaded.records and loaded.stale == 0:
        pytest.skip("the course's study has no results in this checkout")
    assert loaded.stale == 0 and len(loaded.records) == len(study.plan(config))


REFERENCE = TINY_STUDY | {
    "name": "tiny_reference",
    "templates": {"prepend": "[P][P] {manual}"},
    "lora": {"r": 2},
    "arms": [{"name": "deep", "relations": ["capital_of"], "methods": ["prefix", "lstm"],
              "seeds": [0], "templates": ["prepend"]},
             {"name": "reference", "relations": ["capital_of"],
              "methods": ["manual", "few_shot_1", "lora"], "seeds": [0, 1], "lr": [0.001]}],
}


def test_deep_prompts_few_shot_and_lora_runs(tmp_path):
    path = tmp_path / "study.json"
    path.write_text(json.dumps(REFERENCE))
    config = study.StudyConfig.from_file(path)
    assert [s.label for s in study.plan(config)] == [
        "capital_of manual", "capital_of lstm seed=0 lr=0.003 steps=2 template=prepend",
        "capital_of prefix seed=0 lr=0.003 steps=2 template=prepend",
        "capital_of few_shot_1 seed=0", "capital_of lora seed=0 lr=0.001 steps=2",
        "capital_of few_shot_1 seed=1", "capital_of lora seed=1 lr=0.001 steps=2"]
    records = study.run_study(config, log=None)
    by = {(r["method"], r["seed"]): r for r in records}
    manual = by["manual", None]["template"]
    assert by["prefix", 0]["template"] == f"[P][P] {manual}"
    assert by["prefix", 0]["trainable_parameters"] == 2 * 64  # L x D on the tiny Llama
    shot = by["few_shot_1", 0]
    assert shot["prompt"].endswith(manual) and shot["prompt"].count("\n") == 1
    assert by["few_shot_1", 1]["prompt"] != shot["prompt"]  # the seed picks the example
    lora = by["lora", 0]
    assert lora["config"]["r"] == 2 and lora["config"]["lr"] == 0.001
    assert lora["target_modules"] == ["q_proj", "v_proj"] and lora["train_flops"] > 0
    assert lora["dev_curve"]["exact_match"][0] == by["manual", None]["best_dev_exact_match"]
    assert study.run_study(config, log=None) == []  # every key found again
    loaded = study.Study.load(config)  # the labels the course's claims use read these runs
    for label, method, count in [("prefix template=prepend", "prefix", 1),
                                 ("lstm template=prepend", "lstm", 1),
                                 ("few_shot_1", "few_shot_1", 2), ("lora lr=0.001", "lora", 2)]:
        chosen = loaded.select("capital_of", label)
        assert [r["method"] for r in chosen] == [method] * count, label
    assert loaded.select("capital_of", "lstm") == []  # on the study's template: not run here
    assert loaded.prefix_templates() == {"prepend": 2}
    rows = loaded.length_rows(["prefix"])
    assert [(row["length"], row["trainable_parameters"]) for row in rows] == [(2, 2 * 64)]
    assert "lora lr=0.001" in loaded.cost_table(["few_shot_1", "lora lr=0.001"])


@pytest.mark.parametrize("change, message", [
    ({"templates": {"prepend": "[P] {manual} [P]"}}, "deep prompts are prefixes"),
    ({"lora": {"seed": 1}}, "'lora' may not set 'seed'"),
    ({"lora": {"r": 0}}, "r must be"),
])
def test_bad_reference_configs_are_refused(tmp_path, change, message):
    path = tmp_path / "study.json"
    path.write_text(json.dumps(REFERENCE | change))
    with pytest.raises(ConfigError, match=message):
        study.StudyConfig.from_file(path)


def test_a_live_run_is_set_beside_the_studys_record_of_it(uninterrupted):
    """A notebook's live run of a study config finds the study's record and agrees with it on
    every test fact; a changed outcome, another config and another thread count are named."""
    config, records, _ = uninterrupted
    loaded = study.Study.load(config)
    record = next(r for r in records if r["method"] == "lstm" and r["seed"] == 0)
    task = ptlib.load_task("capital_of")
    lm = ptlib.load_lm("tiny")
    result = ptlib.train(lm, record["template"], task.split("train"), task.split("dev"),
                         ptlib.TrainConfig(**record["config"]), show_progress=False)
    exact = result.evaluate(lm, task.split("test")).exact
    assert loaded.same_run("capital_of", result) == record
    line = loaded.compare_live("capital_of", result, exact)
    assert line.startswith("lstm, seed 0: live test EM") and "the same outcome on all" in line
    flipped = [not exact[0], *exact[1:]]
    assert f"1 of {len(exact)} facts differ" in loaded.compare_live("capital_of", result, flipped)
    other = dataclasses.replace(result, config=dataclasses.replace(result.config, steps=3))
    assert loaded.same_run("capital_of", other) is None
    assert "no run of this config" in loaded.compare_live("capital_of", other, exact)
    elsewhere = [r | {"machine": r["machine"] | {"torch_threads": 99}} for r in records]
    moved = study.Study(loaded.config, elsewhere).compare_live("capital_of", result, flipped)
    assert "torch threads 99 there" in moved


def test_a_live_search_is_set_beside_the_studys_record_of_it(uninterrupted):
    """The tiny study's AutoPrompt run, repeated with the config the study gives it, is found
    and agrees on every test fact; its dev curve against forwards starts at 0."""
    config, records, _ = uninterrupted
    loaded = study.Study.load(config)
    record = next(r for r in records if r["method"] == "autoprompt" and r["seed"] == 1)
    search_config = config.search_config("autoprompt", seed=1)
    assert search_config.identity() == record["config"]
    task = ptlib.load_task("capital_of")
    lm = ptlib.load_lm("tiny")
    result = ptlib.search(lm, record["template"], task.split("train"), task.split("dev"),
                          search_config, show_progress=False)
    assert loaded.same_run("capital_of", result) == record
    exact = result.evaluate(lm, task.split("test")).exact
    line = loaded.compare_live("capital_of", result, exact)
    assert line.startswith("autoprompt search, seed 1:") and "the same outcome on all" in line
    forwards = result.history.dev_forwards()
    assert forwards[0] == 0 and forwards == record["dev_curve"]["forwards"]
    assert len(forwards) == len(result.history.dev_exact_match)
