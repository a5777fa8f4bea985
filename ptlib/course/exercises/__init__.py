"""Self-checks for the exercises that end each notebook.

Most exercises are *build-it* exercises: the learner writes a function (or a module) that builds
one piece of P-Tuning, and the check calls it on the notebook's own tensors and on small random
cases, comparing the result with ptlib's implementation, computed here, inside the check. The
*measure-it* exercises have the learner train runs that test a hypothesis (an ablation); their
check confirms the runs vary the one setting asked for and prints what they measured, never what
it should be. The rest ask for a number, whose reference is also computed here. Nothing is
printed or computed in the notebook before the learner answers. Every check ends in one of
three ways:

- not answered (``None``, or a function that returns ``None`` / raises ``NotImplementedError``,
  as the placeholders do): prints a reminder and returns False, so notebooks run top to bottom;
- wrong: raises ``ExerciseFailed`` (an ``AssertionError``) saying what differed (a shape, a
  maximum difference, which slot or step), never the expected value;
- right: prints "correct" and returns True.

Checks are grouped by topic, not by notebook (``objective``, ``discrete_search``, ...), so a
notebook can be inserted or renumbered without touching them. Worked solutions live in
``notebooks/solutions/``, one notebook per course notebook, and run in CI.
"""

from ptlib.course.exercises.ablations import (
    check_length_runs,
    check_placement_runs,
    check_scale_matched_run,
)
from ptlib.course.exercises.core import ExerciseFailed
from ptlib.course.exercises.deep_prompts import (
    check_lora_size,
    check_prefix_mlp_size,
    check_split_deep_prompt,
)
from ptlib.course.exercises.discrete_problem import (
    check_googol_length,
    check_path,
    check_template_spread,
)
from ptlib.course.exercises.discrete_search import (
    check_capitalised_count,
    check_hotflip,
    check_local_optimum,
)
from ptlib.course.exercises.initialisation import (
    check_adamw,
    check_rescaled_init,
)
from ptlib.course.exercises.objective import (
    check_target_length,
    check_target_scores,
    check_template_exact_match,
)
from ptlib.course.exercises.relaxation import (
    check_h0,
    check_snap,
    check_train_step,
)
from ptlib.course.exercises.reparameterisation import (
    check_lstm_encoder,
    check_lstm_size,
    check_moved_positions,
)
from ptlib.course.exercises.using_prompts import (
    check_generate,
)

__all__ = [
    "ExerciseFailed",
    "check_adamw",
    "check_capitalised_count",
    "check_generate",
    "check_googol_length",
    "check_h0",
    "check_hotflip",
    "check_length_runs",
    "check_local_optimum",
    "check_lora_size",
    "check_lstm_encoder",
    "check_lstm_size",
    "check_moved_positions",
    "check_path",
    "check_placement_runs",
    "check_prefix_mlp_size",
    "check_rescaled_init",
    "check_scale_matched_run",
    "check_snap",
    "check_split_deep_prompt",
    "check_target_length",
    "check_target_scores",
    "check_template_exact_match",
    "check_template_spread",
    "check_train_step",
]
