"""The command line, end to end on the tiny random model: flags parse by their config types,
train/search/eval write their files, a run resumes and extends, bad input gets a clear error."""

import dataclasses
import json
import math
import os
import signal

import pytest
import torch

import ptlib
from ptlib import training as train_module
from ptlib.checkpoint import read_prompt_file, save_prompt
from ptlib.cli import _write, build_parser, main
from ptlib.data import split_of
from ptlib.options import MAX_SEED

TINY = ["--task", "capital_of", "--model", "tiny"]


def _metrics(out) -> dict:
    return json.loads((out / "metrics.json").read_text())


def test_flags_parse_by_their_config_types():
    args = build_parser().parse_args(
        ["train", *TINY, "--hidden-size", "128", "--max-grad-norm", "none", "--patience", "3",
         "--lr", "1e-2", "--encoder", "mlp"])
    assert (args.hidden_size, args.max_grad_norm, args.patience) == (128, None, 3)
    assert args.lr == 0.01 and args.encoder == "mlp"
    search = build_parser().parse_args(["search", *TINY, "--max-forwards", "100",
                                        "--no-exclude-capitalised", "--max-forwards", "none"])
    assert search.max_forwards is None and search.exclude_capitalised is False


def test_every_config_flag_is_documented_and_choices_are_listed():
    text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "{free,lstm,mlp,prefix,prefix_mlp}" in text and "{constant,linear,cosine}" in text
    for action in build_parser()._subparsers._group_actions[0].choices["search"]._actions:
        assert action.help, f"{action.option_strings} has no help"


@pytest.mark.parametrize(("argv", "message"), [
    (["train", *TINY, "--hidden-size", "12.5"], "invalid int or none value: '12.5'"),
    (["train", *TINY, "--encoder", "gru"], "invalid choice: 'gru'"),
    (["train", *TINY, "--stepz", "3"], "unrecognized arguments: --stepz"),
])
def test_a_bad_flag_exits_2_naming_it(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_bad_value_is_a_ptlib_error_not_a_traceback(capsys):
    assert main(["train", *TINY, "--steps", "0"]) == 2
    assert "steps must be a positive integer" in capsys.readouterr().err


def test_train_then_resume_extends_the_run_then_eval_the_prompt(tmp_path, capsys):
    out = tmp_path / "run"
    flags = [*TINY, "--out", str(out), "--batch-size", "4", "--eval-every", "2",
             "--hidden-size", "16"]
    assert main(["train", *flags, "--steps", "2"]) == 0
    assert _metrics(out)["steps_done"] == 2
    assert main(["train", *flags, "--steps", "4", "--resume"]) == 0
    extended = _metrics(out)
    assert extended["steps_done"] == 4 and extended["config"]["steps"] == 4
    assert main(["eval", *TINY, "--prompt", str(out / "prompt.safetensors"), "--out",
                 str(tmp_path / "eval")]) == 0
    assert _metrics(tmp_path / "eval")["test"] == extended["test"]
    capsys.readouterr()
    assert main(["train", *flags, "--steps", "4", "--lr", "0.1", "--resume"]) == 2
    assert "only steps may change on resume" in capsys.readouterr().err


def test_search_and_manual_eval(tmp_path):
    out = tmp_path / "search"
    assert main(["search", *TINY, "--iterations", "2", "--num-candidates", "3",
                 "--batch-size", "4", "--out", str(out)]) == 0
    found = _metrics(out)
    assert found["forwards"] > 0 and sorted(p.name for p in out.iterdir()) == [
        "metrics.json", "prompt.safetensors"]
    assert main(["eval", *TINY, "--template", "The capital of {x} is", "--split", "dev",
                 "--out", str(tmp_path / "manual")]) == 0
    direct = ptlib.evaluate(ptlib.tiny_lm(), ptlib.parse_template("The capital of {x} is"),
                            ptlib.load_task("capital_of").split("dev"))
    assert _metrics(tmp_path / "manual")["dev"] == pytest.approx(direct.as_dict())


# --- nothing silently wrong ------------------------------------------------------------------


def _error(argv, capsys) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    return capsys.readouterr().err


def test_a_huge_seed_is_a_config_error_not_an_overflow(capsys):
    assert f"seed must be an integer <= {MAX_SEED}" in _error(
        ["train", *TINY, "--steps", "1", "--seed", str(2**64)], capsys)


def test_a_batch_larger_than_the_train_facts_is_refused_not_a_hang(capsys):
    err = _error(["train", *TINY, "--steps", "1", "--batch-size", "100000000"], capsys)
    assert "batch_size 100000000 is larger than the 87 train facts" in err


def test_out_naming_a_file_is_a_config_error(tmp_path, capsys):
    (tmp_path / "taken").write_text("a file")
    assert "is a file: --out names a folder" in _error(
        ["eval", *TINY, "--template", "{x} is", "--out", str(tmp_path / "taken")], capsys)


def test_a_folder_without_a_model_says_so(tmp_path, capsys):
    err = _error(["eval", "--task", "capital_of", "--model", str(tmp_path), "--template",
                  "{x} is"], capsys)
    assert "the folder holds no model (no config.json)" in err and "sentencepiece" not in err


def test_an_empty_reported_split_is_refused_before_training(tmp_path, capsys):
    subjects = [f"s{i}" for i in range(40) if split_of(f"s{i}") != "test"][:8]
    path = tmp_path / "few.tsv"
    path.write_text("".join(f"{x}\tobject{x}\n" for x in subjects))
    flags = ["--task", str(path), "--task-template", "{x} is", "--model", "tiny"]
    err = _error(["train", *flags, "--steps", "1", "--batch-size", "2"], capsys)
    assert "task 'few' has no facts in its test split" in err


def test_resume_into_a_mistyped_folder_says_there_is_no_checkpoint(tmp_path, capsys):
    flags = [*TINY, "--steps", "1", "--batch-size", "4", "--out", str(tmp_path / "runz")]
    assert "no checkpoint to resume in" in _error(["train", *flags, "--resume"], capsys)
    assert main(["train", *flags, "--resume-if-present"]) == 0
    assert (tmp_path / "runz" / "checkpoint.safetensors").is_file()


def test_ctrl_c_saves_and_exits_130_with_one_line_saying_how_to_resume(tmp_path, capsys,
                                                                      monkeypatch,
                                                                      python_sigint):
    original = train_module._Loop.evaluate_dev

    def ctrl_c_after_step_1(loop):
        stop = original(loop)
        if loop.run.step == 1:
            signal.raise_signal(signal.SIGINT)
        return stop

    monkeypatch.setattr(train_module._Loop, "evaluate_dev", ctrl_c_after_step_1)
    flags = [*TINY, "--steps", "3", "--eval-every", "1", "--batch-size", "4", "--out",
             str(tmp_path)]
    capsys.readouterr()
    assert main(["train", *flags]) == 130
    err = capsys.readouterr().err
    message = [line for line in err.splitlines() if line and not line.startswith("train lstm")]
    assert len(message) == 1 and "Traceback" not in err  # one line after the progress bar
    assert message[0].startswith("interrupted after step 1") and "--resume" in message[0]
    monkeypatch.undo()
    assert main(["train", *flags, "--resume"]) == 0
    assert _metrics(tmp_path)["steps_done"] == 3


def test_a_search_prompt_file_is_read_by_eval(tmp_path):
    out = tmp_path / "search"
    assert main(["search", *TINY, "--iterations", "2", "--num-candidates", "2",
                 "--batch-size", "4", "--out", str(out)]) == 0
    ids, meta = read_prompt_file(out / "prompt.safetensors", ptlib.tiny_lm())
    assert meta["kind"] == "slots" and ids.shape == (meta["num_slots"],)
    assert main(["eval", *TINY, "--prompt", str(out / "prompt.safetensors"), "--out",
                 str(tmp_path / "eval")]) == 0
    assert _metrics(tmp_path / "eval")["test"] == _metrics(out)["test"]
    assert _metrics(tmp_path / "eval")["prompt_kind"] == "slots"


def test_search_reports_forwards_beside_its_budget(tmp_path):
    assert main(["search", *TINY, "--iterations", "5", "--num-candidates", "2",
                 "--batch-size", "4", "--max-forwards", "10", "--out", str(tmp_path)]) == 0
    found = _metrics(tmp_path)
    assert found["max_forwards"] == 10 and found["stopped_by"] == "budget"
    assert found["forwards"] >= 10  # checked after each iteration: the overshoot is visible


def test_eval_refuses_a_prompt_for_another_model_unless_allowed(tmp_path, tiny, capsys):
    other = dataclasses.replace(tiny, name="another-model")
    path = save_prompt(tmp_path / "p.safetensors", torch.randn(2, tiny.width), "[P] {x} [P]",
                       other)
    flags = [*TINY, "--prompt", str(path)]
    assert "saved for another model (model 'another-model'" in _error(["eval", *flags], capsys)
    assert main(["eval", *flags, "--allow-other-model"]) == 0


def test_eval_refuses_a_manual_template_with_slots(capsys):
    assert "without [P] slots" in _error(["eval", *TINY, "--template", "{x} [P]"], capsys)


def test_output_is_strict_json_with_non_finite_numbers_as_null(tmp_path, capsys):
    _write(str(tmp_path), {"nll": math.inf, "curve": [1.0, math.nan], "ok": 0.5})
    for text in (capsys.readouterr().out, (tmp_path / "metrics.json").read_text()):
        assert json.loads(text, parse_constant=pytest.fail) == {
            "nll": None, "curve": [1.0, None], "ok": 0.5}


def test_every_file_the_cli_writes_follows_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        out = tmp_path / "run"
        assert main(["train", *TINY, "--steps", "1", "--batch-size", "4", "--out",
                     str(out)]) == 0
    finally:
        os.umask(previous)
    assert {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()} == {
        "metrics.json": 0o640, "prompt.safetensors": 0o640, "checkpoint.safetensors": 0o640}
    assert out.stat().st_mode & 0o777 == 0o750
