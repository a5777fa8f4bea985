"""Files written before the metric had one name still load: a checkpoint whose history says
``dev_p_at_1``, study records that say ``em`` and ``best_dev_em``, and the deprecated
``Evaluation.p_at_1``, which warns."""

import json

import pytest

import ptlib
from ptlib.checkpoint import load_state, save_state
from ptlib.course.study import read_results
from ptlib.legacy import renamed
from ptlib.training import CHECKPOINT_FILE

TEMPLATE = "[P] {x} [P]"


def test_renamed_maps_old_keys_at_any_depth_and_leaves_values_alone():
    old = {"best_dev_em": 0.5, "test": {"em": 0.25, "exact": [1, 0]},
           "dev_curve": {"em": [0.1, 0.5]}, "history": [{"dev_p_at_1": [0.0]}],
           "first_token_p_at_1": 0.75, "note": "em"}
    assert renamed(old) == {"best_dev_exact_match": 0.5,
                            "test": {"exact_match": 0.25, "exact": [1, 0]},
                            "dev_curve": {"exact_match": [0.1, 0.5]},
                            "history": [{"dev_exact_match": [0.0]}],
                            "first_token_p_at_1": 0.75, "note": "em"}


def test_a_checkpoint_written_with_the_old_history_key_resumes(tiny, facts, tmp_path):
    config = ptlib.TrainConfig(encoder="free", steps=2, batch_size=4, eval_every=1)
    first = ptlib.train(tiny, TEMPLATE, facts[:8], facts[8:], config, checkpoint_dir=tmp_path,
                        show_progress=False)
    path = tmp_path / CHECKPOINT_FILE
    tensors, meta = load_state(path)
    meta["history"]["dev_p_at_1"] = meta["history"].pop("dev_exact_match")  # as written before
    save_state(path, tensors, meta)
    longer = ptlib.TrainConfig(encoder="free", steps=3, batch_size=4, eval_every=1)
    resumed = ptlib.train(tiny, TEMPLATE, facts[:8], facts[8:], longer, checkpoint_dir=tmp_path,
                          resume=True, show_progress=False)
    assert resumed.history.dev_exact_match[:3] == first.history.dev_exact_match
    assert len(resumed.history.dev_exact_match) == 4


def test_study_records_with_the_old_keys_read_with_the_new_names(tmp_path):
    path = tmp_path / "results.jsonl"
    old = {"key": "k1", "best_dev_em": 0.5, "test": {"em": 0.25, "exact": [1, 0, 0, 0]},
           "dev_curve": {"step": [0, 10], "em": [0.0, 0.5]}}
    path.write_text(json.dumps(old) + "\n")
    (record,) = read_results(path)
    assert record["best_dev_exact_match"] == 0.5 and record["test"]["exact_match"] == 0.25
    assert record["dev_curve"]["exact_match"] == [0.0, 0.5]


def test_the_committed_study_reads_with_the_new_names():
    """The course's study was written with ``em``; read back, its records say exact_match."""
    from pathlib import Path

    results = Path(__file__).resolve().parents[1] / "studies" / "course_study.jsonl"
    if not results.exists():
        pytest.skip("the course's study results are not in this checkout")
    records = read_results(results)
    assert records and all("exact_match" in record["test"] for record in records)
    assert not any("em" in record["test"] for record in records)


def test_the_old_metric_name_still_works_and_warns(tiny, facts):
    result = ptlib.evaluate(tiny, ptlib.parse_template("The capital of {x} is"), facts)
    with pytest.warns(DeprecationWarning, match="exact_match"):
        assert result.p_at_1 == result.exact_match
    assert "p_at_1" not in result.as_dict() and "exact_match" in result.as_dict()
