"""Many runs of one recipe: several seeds (or learning rates, inits), and their statistics.

``run_seeds`` trains the same config under each seed and evaluates each best-on-dev prompt on
the test facts; ``summarise`` gives mean, sd, min and max; ``steps_to_fraction`` measures
convergence speed from a run's dev curve.
"""

import dataclasses
import statistics
from dataclasses import dataclass

from ptlib.data import Fact
from ptlib.model import LM
from ptlib.train import TrainConfig, TrainResult, train


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
    """First evaluated step whose dev P@1 reaches ``fraction`` of the run's best dev P@1
    (None when the best is 0: the run never got anywhere)."""
    history = result.history
    best = max(history.dev_p_at_1)
    if best <= 0:
        return None
    for step, value in zip(history.eval_step, history.dev_p_at_1, strict=True):
        if value >= fraction * best:
            return step
    return None


@dataclass
class SeedRun:
    """One seed's outcome."""

    seed: int
    result: TrainResult
    test_p_at_1: float
    test_nll: float


def run_seeds(lm: LM, template: str, train_facts: list[Fact], dev_facts: list[Fact],
              test_facts: list[Fact], config: TrainConfig, seeds: list[int],
              show_progress: bool = True) -> list[SeedRun]:
    """Train ``config`` once per seed; evaluate each best-on-dev prompt on ``test_facts``."""
    runs = []
    for seed in seeds:
        seeded = dataclasses.replace(config, seed=seed)
        result = train(lm, template, train_facts, dev_facts, seeded, show_progress=show_progress)
        test = result.evaluate(lm, test_facts)
        runs.append(SeedRun(seed, result, test.p_at_1, test.nll))
    return runs


def seed_table(runs: list[SeedRun], fraction: float = 0.9) -> dict:
    """Summary of a list of seed runs: test P@1 statistics and convergence steps."""
    reach = [steps_to_fraction(run.result, fraction) for run in runs]
    return {
        "test_p_at_1": summarise([run.test_p_at_1 for run in runs]),
        "best_dev_p_at_1": summarise([run.result.best_dev_p_at_1 for run in runs]),
        "steps_to_fraction": reach,
        "final_loss": summarise([run.result.history.loss[-1] for run in runs]),
    }
