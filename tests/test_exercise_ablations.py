"""The measure-it exercise checks (ptlib.course.exercises.ablations): runs that test what the
exercise asks pass and their numbers are printed; a run that changes more than the one setting,
or tests something else, fails with a message that names the setting, never the measurement.
Tiny random-init model, a few steps per run."""

import math

import pytest
from conftest import make_facts

import ptlib
from ptlib.course import exercises
from ptlib.course.exercises import ExerciseFailed
from ptlib.encoders import typical_token_norm

PAIRS = [("France", "Paris"), ("Japan", "Tokyo"), ("Peru", "Lima"), ("Cuba", "Havana"),
         ("Spain", "Madrid"), ("Italy", "Rome")]
MANUAL = ["The capital of {x} is", "{x}'s capital is"]
LR = 3e-3


@pytest.fixture(scope="module")
def split():
    facts = make_facts(PAIRS)
    return facts[:4], facts[4:]  # train, dev (also the test facts of the printout)


@pytest.fixture(scope="module")
def run(tiny, split):
    """Train on the tiny model: ``run(template, **config changes)`` -> TrainResult."""
    def train(template: str, **changes):
        config = ptlib.TrainConfig(**({"encoder": "free", "init": "normal_rescaled",
                                       "steps": 2, "batch_size": 2, "lr": LR, "eval_every": 1,
                                       "seed": 0} | changes))
        return ptlib.train(tiny, template, *split, config=config, show_progress=False)
    return train


def fails(check, *args, match: str) -> str:
    with pytest.raises(ExerciseFailed, match=match) as caught:
        check(*args)
    return str(caught.value)


@pytest.fixture(scope="module")
def scale_lr(tiny) -> float:
    return LR * math.sqrt(tiny.width) / typical_token_norm(tiny.embeddings.detach())


def test_scale_matched_run_passes_and_prints_both_runs(tiny, run, split, scale_lr, capsys):
    rescaled = run("[P][P] {x} [P]")
    mine = run("[P][P] {x} [P]", init="normal", lr=scale_lr)
    assert exercises.check_scale_matched_run(mine, tiny, LR, rescaled, split[1])
    printed = capsys.readouterr().out
    assert f"N(0,1) at lr {scale_lr:.3g}" in printed and "normal_rescaled" in printed
    assert printed.count("best dev EM") == 2 and printed.rstrip().endswith("correct")


def test_scale_matched_run_names_what_is_wrong_not_the_number(tiny, run, split, scale_lr):
    rescaled = run("[P][P] {x} [P]")
    wrong_lr = run("[P][P] {x} [P]", init="normal", lr=LR * 2)
    message = fails(exercises.check_scale_matched_run, wrong_lr, tiny, LR, rescaled, split[1],
                    match="not within 5% of the prediction")
    assert f"{scale_lr:g}" not in message and f"{scale_lr:.3g}" not in message
    fails(exercises.check_scale_matched_run, run("[P][P] {x} [P]", lr=scale_lr), tiny, LR,
          rescaled, split[1], match="init 'normal'")
    fails(exercises.check_scale_matched_run,
          run("[P][P] {x} [P]", init="normal", lr=scale_lr, seed=1), tiny, LR, rescaled,
          split[1], match=r"differs in \['seed'\]")
    fails(exercises.check_scale_matched_run, run("[P] {x} [P]", init="normal", lr=scale_lr),
          tiny, LR, rescaled, split[1], match="template")
    assert exercises.check_scale_matched_run(None, tiny, LR, rescaled, split[1]) is False


def test_placement_runs_pass_and_print_both(tiny, run, split, capsys):
    answer = {"bare": run("[P][P] {x} [P]"), "wrapped": run("[P][P] The capital of {x} is [P]")}
    assert exercises.check_placement_runs(answer, tiny, MANUAL, split[1])
    printed = capsys.readouterr().out
    assert "bare    '[P][P] {x} [P]'" in printed and "wrapped '[P][P] The capital" in printed


def test_placement_runs_fail_for_the_wrong_ablation(tiny, run, split):
    bare, wrapped = run("[P][P] {x} [P]"), run("[P][P] The capital of {x} is [P]")
    check = exercises.check_placement_runs
    fails(check, {"bare": run("[P][P] city {x} [P]"), "wrapped": wrapped}, tiny, MANUAL,
          split[1], match="has words in it")
    fails(check, {"bare": bare, "wrapped": run("[P][P] The city of {x} is [P]")}, tiny,
          MANUAL, split[1], match="manual templates word for word")
    fails(check, {"bare": bare, "wrapped": run("[P] The capital of {x} is [P]")}, tiny,
          MANUAL, split[1], match="same number of slots")
    fails(check, {"bare": bare, "wrapped": run("[P][P] The capital of {x} is [P]", seed=3)},
          tiny, MANUAL, split[1], match=r"differ in \['seed'\]")
    fails(check, {"plain": bare, "wrapped": wrapped}, tiny, MANUAL, split[1],
          match="'bare' and 'wrapped'")
    fails(check, [bare, wrapped], tiny, MANUAL, split[1], match="a dict")
    assert check(None, tiny, MANUAL, split[1]) is False
    assert check({"bare": None, "wrapped": None}, tiny, MANUAL, split[1]) is False


def test_length_runs_pass_and_print_by_length(tiny, run, split, capsys):
    answer = {3: run("[P][P][P] The capital of {x} is"), 1: run("[P] The capital of {x} is")}
    assert exercises.check_length_runs(answer, tiny, MANUAL, split[1])
    printed = capsys.readouterr().out
    assert printed.index("L =  1") < printed.index("L =  3")


def test_length_runs_fail_for_the_wrong_ablation(tiny, run, split):
    one = run("[P] The capital of {x} is")
    check = exercises.check_length_runs
    fails(check, {1: one}, tiny, MANUAL, split[1], match="at least two lengths")
    fails(check, {1: one, 2: run("[P][P][P] The capital of {x} is")}, tiny, MANUAL, split[1],
          match="under key 2 should have 2 slots")
    fails(check, {1: one, 2: run("The capital of {x} is [P][P]")}, tiny, MANUAL, split[1],
          match="all before the text")
    fails(check, {1: one, 2: run("[P][P] {x}'s capital is")}, tiny, MANUAL, split[1],
          match="the same manual template")
    fails(check, {1: one, 2: run("[P][P] The capital of {x} is", steps=3)}, tiny, MANUAL,
          split[1], match=r"differ in \['steps'\]")
