"""The command line, end to end on the tiny random model: flags parse by their config types,
train/search/eval write their files, a run resumes and extends, bad input gets a clear error."""

import json

import pytest

import ptlib
from ptlib.cli import build_parser, main

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
    assert "{free,lstm,mlp}" in text and "{constant,linear,cosine}" in text
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
    assert found["forwards"] > 0 and (out / "slot_ids.pt").is_file()
    assert main(["eval", *TINY, "--template", "The capital of {x} is", "--split", "dev",
                 "--out", str(tmp_path / "manual")]) == 0
    direct = ptlib.evaluate(ptlib.tiny_lm(), ptlib.parse_template("The capital of {x} is"),
                            ptlib.load_task("capital_of").split("dev"))
    assert _metrics(tmp_path / "manual")["dev"] == pytest.approx(direct.as_dict())
