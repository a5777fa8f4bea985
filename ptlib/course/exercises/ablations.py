"""Exercise checks on measuring: runs the learner trains to test a hypothesis (the AdamW
scale prediction, the placement of the slots, the prompt's length). A check confirms the runs
test what the exercise asks (the recipe, the one setting that varies) and prints what they
measured; it never says what the measurement should be."""

import math

from ptlib.course.exercises.core import NotAnswered, exercise, fail
from ptlib.data import Fact
from ptlib.encoders import typical_token_norm
from ptlib.model import LM
from ptlib.template import INPUT, SLOT, parse_template
from ptlib.training import TrainResult

RECIPE = ("encoder", "init", "steps", "batch_size", "lr", "seed", "eval_every")


def _results(answer, what: str, first: bool = True) -> list[TrainResult]:
    """The learner's runs as a list of ``TrainResult``; None (the placeholder) is unanswered."""
    if answer is None or (isinstance(answer, dict) and not answer):
        raise NotAnswered
    runs = list(answer.values()) if isinstance(answer, dict) else [answer]
    for run in runs:
        if run is None and first:
            raise NotAnswered
        if not isinstance(run, TrainResult):
            fail(f"{what} should be what ptlib.train returns (a TrainResult), got "
                 f"{type(run).__name__}")
    return runs


def _differing(a: TrainResult, b: TrainResult) -> list[str]:
    """The ``RECIPE`` fields whose values differ between two runs' configs."""
    return [name for name in RECIPE if getattr(a.config, name) != getattr(b.config, name)]


def _same_recipe(runs: list[TrainResult], varied: str) -> None:
    """Fail unless every run trains with the first run's recipe and the templates differ."""
    for run in runs[1:]:
        if _differing(runs[0], run):
            fail(f"the runs differ in {_differing(runs[0], run)}: an ablation changes "
                 f"{varied} only, so keep the other settings equal")
    if len({run.template for run in runs}) != len(runs):
        fail(f"two of the runs have the same template: vary {varied}")


def _manual_inside(template_text: str, manual_templates: list[str]) -> str | None:
    """The manual template whose words the slot template carries around its input, if any."""
    words = " ".join(template_text.replace(SLOT, " ").split())
    return next((manual for manual in manual_templates if " ".join(manual.split()) == words),
                None)


def _report(runs: dict[str, TrainResult], lm: LM, test_facts: list[Fact]) -> None:
    """Print each run's best dev EM, its step and its test EM: the learner's measurement."""
    for label, run in runs.items():
        test = run.evaluate(lm, test_facts).exact_match
        print(f"  {label}: best dev EM {run.best_dev_exact_match:.3f} at step "
              f"{run.best_step} of {run.config.steps}; test EM {test:.3f} "
              f"({len(test_facts)} facts)")


@exercise("the AdamW scale prediction, tested")
def check_scale_matched_run(answer, lm: LM, lr: float, rescaled: TrainResult,
                            test_facts: list[Fact]) -> None:
    """``answer``: one ``TrainResult`` of N(0,1) free vectors trained at ``lr`` times the
    ratio of an N(0,1) vector's norm (sqrt(d)) to a token's, with the recipe of ``rescaled``
    (the notebook's token-scale run at ``lr``) otherwise. Prints both runs side by side."""
    run = _results(answer, "your run")[0]
    if (run.config.encoder, run.config.init) != ("free", "normal"):
        fail(f"train free vectors with init 'normal' (yours: encoder {run.config.encoder!r}, "
             f"init {run.config.init!r})")
    width = lm.embeddings.shape[1]
    wanted = lr * math.sqrt(width) / typical_token_norm(lm.embeddings.detach())
    if not math.isclose(run.config.lr, wanted, rel_tol=0.05):
        fail(f"learning rate {run.config.lr:g} is not within 5% of the prediction's: scale the "
             "notebook's lr by an N(0,1) vector's norm over the mean token norm (section 2)")
    others = [name for name in _differing(run, rescaled) if name not in ("init", "lr")]
    if others or run.template != rescaled.template:
        fail(f"keep the recipe of the token-scale run: yours differs in "
             f"{others + (['template'] if run.template != rescaled.template else [])}")
    print(f"Your measurement (seed {run.config.seed}):")
    _report({f"N(0,1) at lr {run.config.lr:.3g}": run,
             f"token-scale (normal_rescaled) at lr {lr:g}": rescaled}, lm, test_facts)


@exercise("a placement ablation")
def check_placement_runs(answer, lm: LM, manual_templates: list[str],
                         test_facts: list[Fact]) -> None:
    """``answer``: {"bare": run, "wrapped": run}, two ``TrainResult`` of one recipe, the first
    on slots around the bare input (no words), the second on slots around one of the task's
    manual templates (``[P][P][P] {manual} [P][P][P]``). Prints both runs."""
    if not isinstance(answer, dict) and answer is not None:
        fail("answer with a dict {'bare': run, 'wrapped': run}")
    runs = _results(answer, "each run")
    if set(answer) != {"bare", "wrapped"}:
        fail(f"name the two runs 'bare' and 'wrapped' (yours: {sorted(answer)})")
    _same_recipe(runs, "the template")
    bare = parse_template(answer["bare"].template)
    if [chunk for chunk in bare.chunks("") if chunk and chunk.strip()]:
        fail(f"the bare template {answer['bare'].template!r} has words in it: slots and {INPUT} "
             "only")
    wrapped = answer["wrapped"].template
    if parse_template(wrapped).num_slots != bare.num_slots:
        fail("give both templates the same number of slots, so only the words differ")
    if _manual_inside(wrapped, manual_templates) is None:
        fail(f"the wrapped template {wrapped!r} should hold one of the task's manual templates "
             "word for word between its slots")
    print("Your measurement:")
    _report({f"bare    {answer['bare'].template!r}": answer["bare"],
             f"wrapped {wrapped!r}": answer["wrapped"]}, lm, test_facts)


@exercise("a prompt-length ablation")
def check_length_runs(answer, lm: LM, manual_templates: list[str],
                      test_facts: list[Fact]) -> None:
    """``answer``: {L: run} for at least two lengths L, each ``TrainResult`` of one recipe on
    ``[P]`` x L before one manual template (the same for every L). Prints the runs by L."""
    if not isinstance(answer, dict) and answer is not None:
        fail("answer with a dict {L: run}, one run per prompt length L")
    runs = _results(answer, "each run")
    if len(runs) < 2:
        fail("train at least two lengths")
    _same_recipe(runs, "the prompt length")
    words = set()
    for length, run in answer.items():
        template = parse_template(run.template)
        if template.num_slots != length or not run.template.startswith(SLOT * length):
            fail(f"the run under key {length!r} should have {length!r} slots, all before the "
                 f"text (its template: {run.template!r})")
        words.add(_manual_inside(run.template, manual_templates))
    if None in words or len(words) != 1:
        fail("put the same manual template of the task after the slots in every run")
    print("Your measurement:")
    _report({f"L = {length:2d}": answer[length] for length in sorted(answer)}, lm, test_facts)

