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


def steps_to_level(result: TrainResult, level: float) -> int | None:
    """First evaluated step whose dev P@1 reaches the absolute ``level`` (None if it never does).

    Unlike ``steps_to_fraction``, whose target is each run's own best, this compares runs
    against one common target, e.g. 90% of the best dev P@1 any run of a grid reached.
    """
    history = result.history
    for step, value in zip(history.eval_step, history.dev_p_at_1, strict=True):
        if value >= level:
            return step
    return None


def run_statistics(runs: list[SeedRun], fraction: float = 0.9,
                   level: float | None = None) -> dict:
    """One setting's seed runs as one flat dict, for tables comparing inits or encoders.

    Keys: ``mean``, ``sd``, ``min``, ``max``, ``n`` of test P@1; ``best_dev`` (mean best dev
    P@1); ``own_reach`` (per seed, ``steps_to_fraction``) and ``common_reach`` (per seed,
    ``steps_to_level(level)``; all None without a level) and ``mean_reach`` (mean of
    ``common_reach``, inf when a seed never got there); ``init_norm`` and ``final_norm``, the
    mean L2 norm of the (L, d) prompt at the first and last evaluation; ``moved``, the mean over
    seeds and slots of ||theta_T - theta_0|| / ||theta_0||.
    """
    table = seed_table(runs, fraction)
    reach = [None if level is None else steps_to_level(run.result, level) for run in runs]
    first = [run.result.trajectory[0] for run in runs]  # (L, d) each, at step 0
    last = [run.result.trajectory[-1] for run in runs]  # (L, d) each, at the last evaluation
    moved = [((b - a).norm(dim=1) / a.norm(dim=1)).mean().item()
             for a, b in zip(first, last, strict=True)]
    return table["test_p_at_1"] | {
        "best_dev": table["best_dev_p_at_1"]["mean"],
        "own_reach": table["steps_to_fraction"],
        "common_reach": reach,
        "mean_reach": (float("inf") if None in reach else statistics.fmean(reach)),
        "init_norm": statistics.fmean(a.norm(dim=1).mean().item() for a in first),
        "final_norm": statistics.fmean(b.norm(dim=1).mean().item() for b in last),
        "moved": statistics.fmean(moved),
    }


def format_run_table(rows: dict[str, dict], label: str = "setting") -> str:
    """A fixed-width text table of ``run_statistics`` rows, one line per setting."""

    def steps(values: list) -> str:
        return ",".join("-" if value is None else str(value) for value in values)

    width = max(len(label), *(len(name) for name in rows))
    lines = [f"{label:{width}s} | test P@1 mean    sd   min   max | best dev | steps to target:"
             f" own best / common | prompt norm start   end  moved"]
    for name, row in rows.items():
        lines.append(
            f"{name:{width}s} |          {row['mean']:5.3f} {row['sd']:5.3f} {row['min']:5.3f}"
            f" {row['max']:5.3f} |    {row['best_dev']:5.3f} | {steps(row['own_reach']):>20s}"
            f" / {steps(row['common_reach']):<8s}|             {row['init_norm']:5.1f}"
            f" {row['final_norm']:5.1f} {row['moved']:6.1%}")
    return "\n".join(lines)
