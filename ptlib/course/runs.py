"""Many runs of one recipe: several seeds (or learning rates, inits), and their statistics.

``run_seeds`` trains the same config under each seed and evaluates each best-on-dev prompt on
the test facts, keeping every fact's outcome; ``summarise`` gives mean, sd, min and max;
``steps_to_fraction`` measures convergence speed from a run's dev curve.

Verdicts between two settings come from ``ptlib.stats`` and nowhere else: ``compare`` pairs two
settings' per-seed, per-fact test outcomes (exact match, EM) and returns ``stats.verdict`` of
the difference in mean EM or, with ``spread=True``, of the ratio of seed standard deviations
("steadier"). ``outcomes_at`` gives the outcomes of the prompt each run held at an earlier
evaluation (faster convergence is a higher EM there), ``fixed_outcomes`` repeats a
deterministic baseline's outcomes once per seed, and ``best_manual`` picks a task's manual
template on dev and scores it on test.

``restart_checks`` runs ``local_optimum.check_neighbourhood`` on every restart of a discrete
search, not only the best, and says which restarts stopped on a plateau (patience) and which on
a cap (the forward budget or the iteration count).
"""

import dataclasses
import statistics
from dataclasses import dataclass, field

import numpy as np
import torch

from ptlib import stats
from ptlib.data import Fact, Task
from ptlib.discrete import SearchResult, best_manual_template
from ptlib.errors import ConfigError
from ptlib.local_optimum import NeighbourhoodCheck, check_neighbourhood
from ptlib.model import LM
from ptlib.objective import Evaluation, evaluate
from ptlib.template import parse_template
from ptlib.train_config import TrainConfig
from ptlib.training import TrainResult, train


def summarise(values: list[float]) -> dict:
    """Mean, sample sd (0 for one value), min, max and n of ``values``."""
    if not values:
        raise ValueError("summarise needs at least one value")
    return {
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def steps_to_fraction(result: TrainResult, fraction: float = 0.9) -> int | None:
    """First evaluated step whose dev EM reaches ``fraction`` of the run's best dev EM
    (None when the best is 0: the run never got anywhere)."""
    history = result.history
    best = max(history.dev_exact_match)
    if best <= 0:
        return None
    for step, value in zip(history.eval_step, history.dev_exact_match, strict=True):
        if value >= fraction * best:
            return step
    return None


@dataclass
class SeedRun:
    """One seed's outcome."""

    seed: int
    result: TrainResult
    test_exact_match: float  # exact match (EM) of the best-on-dev prompt on the test facts
    test_nll: float
    test_exact: list[bool] = field(default_factory=list)  # per test fact, in order: EM hit


def run_seeds(lm: LM, template: str, train_facts: list[Fact], dev_facts: list[Fact],
              test_facts: list[Fact], config: TrainConfig, seeds: list[int],
              show_progress: bool = True) -> list[SeedRun]:
    """Train ``config`` once per seed; evaluate each best-on-dev prompt on ``test_facts``."""
    runs = []
    for seed in seeds:
        seeded = dataclasses.replace(config, seed=seed)
        result = train(lm, template, train_facts, dev_facts, seeded, show_progress=show_progress)
        test = result.evaluate(lm, test_facts)
        runs.append(SeedRun(seed, result, test.exact_match, test.nll, list(test.exact)))
    return runs


def seed_table(runs: list[SeedRun], fraction: float = 0.9) -> dict:
    """Summary of a list of seed runs: test EM statistics and convergence steps."""
    reach = [steps_to_fraction(run.result, fraction) for run in runs]
    return {
        "test_exact_match": summarise([run.test_exact_match for run in runs]),
        "best_dev_exact_match": summarise([run.result.best_dev_exact_match for run in runs]),
        "steps_to_fraction": reach,
        "final_loss": summarise([run.result.history.loss[-1] for run in runs]),
    }


def steps_to_level(result: TrainResult, level: float) -> int | None:
    """First evaluated step whose dev EM reaches the absolute ``level`` (None if it never does).

    Unlike ``steps_to_fraction``, whose target is each run's own best, this compares runs
    against one common target, e.g. 90% of the best dev EM any run of a grid reached.
    """
    history = result.history
    for step, value in zip(history.eval_step, history.dev_exact_match, strict=True):
        if value >= level:
            return step
    return None


def run_statistics(runs: list[SeedRun], fraction: float = 0.9,
                   level: float | None = None) -> dict:
    """One setting's seed runs as one flat dict, for tables comparing inits or encoders.

    Keys: ``mean``, ``sd``, ``min``, ``max``, ``n`` of test EM; ``best_dev`` (mean best dev
    EM); ``own_reach`` (per seed, ``steps_to_fraction``) and ``common_reach`` (per seed,
    ``steps_to_level(level)``; all None without a level) and ``mean_reach`` (mean of
    ``common_reach``, inf when a seed never got there); ``init_norm`` and ``final_norm``, the
    mean L2 norm of the (L, d) prompt at the first and last evaluation; ``moved``, how far the
    vectors travelled: the mean over seeds and slots of ||theta_T - theta_0||, in the same
    embedding units as the norms (a ratio to the start would explode for an encoder that starts
    near zero).
    """
    table = seed_table(runs, fraction)
    reach = [None if level is None else steps_to_level(run.result, level) for run in runs]
    first = [run.result.trajectory[0] for run in runs]  # (L, d) each, at step 0
    last = [run.result.trajectory[-1] for run in runs]  # (L, d) each, at the last evaluation
    moved = [(b - a).norm(dim=1).mean().item() for a, b in zip(first, last, strict=True)]
    return table["test_exact_match"] | {
        "best_dev": table["best_dev_exact_match"]["mean"],
        "own_reach": table["steps_to_fraction"],
        "common_reach": reach,
        "mean_reach": (float("inf") if None in reach else statistics.fmean(reach)),
        "init_norm": statistics.fmean(a.norm(dim=1).mean().item() for a in first),
        "final_norm": statistics.fmean(b.norm(dim=1).mean().item() for b in last),
        "moved": statistics.fmean(moved),
    }


def format_run_table(rows: dict[str, dict], label: str = "setting") -> str:
    """A fixed-width text table of ``run_statistics`` rows, one line per setting; the prompt's
    norm at the start and end and the distance it moved share the embedding's units."""

    def steps(values: list) -> str:
        return ",".join("-" if value is None else str(value) for value in values)

    width = max(len(label), *(len(name) for name in rows))
    lines = [f"{label:{width}s} | test EM  mean    sd   min   max | best dev | steps to target:"
             f" own best / common | prompt norm start   end | moved"]
    for name, row in rows.items():
        lines.append(
            f"{name:{width}s} |          {row['mean']:5.3f} {row['sd']:5.3f} {row['min']:5.3f}"
            f" {row['max']:5.3f} |    {row['best_dev']:5.3f} | {steps(row['own_reach']):>20s}"
            f" / {steps(row['common_reach']):<8s}|             {row['init_norm']:5.1f}"
            f" {row['final_norm']:5.1f} | {row['moved']:5.1f}")
    return "\n".join(lines)


# ---- verdicts: every comparison goes through ptlib.stats ----

Runs = list[SeedRun] | stats.Outcomes  # seed runs, or an (S, F) outcome matrix


def outcomes(runs: list[SeedRun]) -> np.ndarray:
    """The (S, F) matrix of per-fact test outcomes (1.0 an exact match, 0.0 a miss), one row
    per seed in the runs' order."""
    missing = [run.seed for run in runs if not run.test_exact]
    if missing:
        raise ConfigError(f"seed runs {missing} carry no per-fact test outcomes (test_exact): "
                          "make them with run_seeds")
    return np.array([run.test_exact for run in runs], dtype=float)


def fixed_outcomes(exact: list[bool], seeds: list[int] | int) -> np.ndarray:
    """A deterministic method's per-fact outcomes (F,), repeated once per seed: (S, F).

    A manual template scores the same under every seed, so against S seed runs it is S equal
    rows: pairing by fact still holds, and its seed spread is 0."""
    count = seeds if isinstance(seeds, int) else len(seeds)
    return np.tile(np.asarray(exact, dtype=float), (count, 1))


def outcomes_at(lm: LM, runs: list[SeedRun], facts: list[Fact], step: int) -> np.ndarray:
    """Per-fact outcomes on ``facts`` of the prompt each run held at evaluation step ``step``
    (from its trajectory), not its best-on-dev prompt: (S, F). A higher EM at an early step is
    faster convergence, measured on the same facts and seeds for every method."""
    rows = []
    for run in runs:
        steps = run.result.history.eval_step
        if step not in steps:
            raise ConfigError(f"step {step} is not an evaluation step of seed {run.seed}'s run "
                              f"(evaluated at {steps})")
        prompt = run.result.trajectory[steps.index(step)]  # (L, d)
        result = evaluate(lm, parse_template(run.result.template), facts,
                          prompt=prompt.to(lm.device))
        rows.append(result.exact)
    return np.array(rows, dtype=float)


def midpoint_step(runs: list[SeedRun]) -> int:
    """The evaluation step nearest half of the runs' step budget (shared by all the runs)."""
    shared = set.intersection(*(set(run.result.history.eval_step) for run in runs))
    half = runs[0].result.config.steps / 2
    return min(sorted(shared), key=lambda step: (abs(step - half), step))


def _matrix(runs: Runs, name: str) -> tuple[np.ndarray, list[int] | None]:
    if isinstance(runs, list) and runs and isinstance(runs[0], SeedRun):
        return outcomes(runs), [run.seed for run in runs]
    return np.asarray(runs, dtype=float), None


def compare(a: Runs, b: Runs, name_a: str, name_b: str, *, spread: bool = False,
            unit: str = "EM") -> stats.Verdict:
    """``stats.verdict`` on two settings scored on the same test facts under the same seeds.

    ``a`` and ``b`` are lists of ``SeedRun`` (their seeds must match, in order) or (S, F)
    outcome matrices. By default the verdict is on the difference in mean EM
    (``stats.paired_difference``); with ``spread=True`` on the ratio of seed standard
    deviations (``stats.sd_ratio``: which is steadier). Below ``stats.MIN_SEEDS`` seeds (one
    seed included) the verdict gives the two means and no interval.
    """
    (matrix_a, seeds_a), (matrix_b, seeds_b) = _matrix(a, name_a), _matrix(b, name_b)
    if seeds_a is not None and seeds_b is not None and seeds_a != seeds_b:
        raise ConfigError(f"{name_a} ran seeds {seeds_a} but {name_b} ran {seeds_b}: a paired "
                          "verdict needs the same seeds")
    if matrix_a.ndim == 2 and matrix_a.shape == matrix_b.shape and matrix_a.shape[0] == 1:
        return stats.too_few_seeds(name_a, name_b, (matrix_a.mean(), matrix_b.mean()), 1,
                                   matrix_a.shape[1], unit)
    if spread:
        return stats.verdict(stats.sd_ratio(matrix_a, matrix_b), name_a, name_b)
    return stats.verdict(stats.paired_difference(matrix_a, matrix_b), name_a, name_b,
                         unit=unit)


def best_manual(lm: LM, task: Task, choose_on: str = "dev", score_on: str = "test"
                ) -> tuple[str, Evaluation]:
    """The task's manual template chosen on ``choose_on`` (``discrete.best_manual_template``)
    and its evaluation on ``score_on``."""
    text, _ = best_manual_template(lm, task, choose_on)
    return text, evaluate(lm, parse_template(text), task.split(score_on))


# ---- restarts of a discrete search: is each one a local optimum? ----

# SearchResult.stopped_by -> why a restart stopped, in words: only patience is a plateau
STOPS = {"patience": "plateau (patience ran out on dev)",
         "budget": "budget-stopped, not a plateau",
         "iterations": "iteration-capped, not a plateau"}


@dataclass(frozen=True)
class RestartCheck:
    """One restart of a search and the local-optimum check of its best-on-dev prompt."""

    seed: int                  # the restart's SearchConfig.seed
    prompt: str                # its best-on-dev prompt, as text
    dev_exact_match: float     # that prompt's dev EM
    stopped_by: str            # SearchResult.stopped_by: "patience", "budget" or "iterations"
    check: NeighbourhoodCheck  # every single swap of that prompt, scored on the facts

    @property
    def stop(self) -> str:
        """Why the restart stopped, in words (``STOPS``)."""
        return STOPS[self.stopped_by]

    @property
    def improving(self) -> int:
        """Single swaps that raise the objective on the facts."""
        return self.check.improving

    @property
    def is_local_optimum(self) -> bool:
        """True when none of the single swaps tried raises the objective."""
        return self.check.is_local_optimum

    def describe(self) -> str:
        """One line: seed, dev EM, why it stopped, and the check."""
        return (f"seed {self.seed}: dev EM {self.dev_exact_match:.2f}, {self.stop}; "
                f"{self.check.describe()}")


def restart_checks(lm: LM, results: list[SearchResult], facts: list[Fact],
                   allowed: torch.Tensor, k: int = 100) -> list[RestartCheck]:
    """``check_neighbourhood`` on each restart's best-on-dev prompt (its ``slot_ids``), over
    ``facts`` (e.g. the train facts the search climbed on), at the precision it searched at:
    one row per restart, in order. ``allowed``: (V,) bool, the tokens a slot may hold;
    ``k``: HotFlip candidates per slot. The prompt checked is the one kept on dev, which a
    search may have passed before it stopped."""
    return [RestartCheck(result.config.seed, result.prompt_text, result.best_dev_exact_match,
                         result.stopped_by,
                         check_neighbourhood(lm, parse_template(result.template), facts,
                                             result.slot_ids, allowed, k=k,
                                             precision=result.config.precision))
            for result in results]
