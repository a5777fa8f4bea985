"""Does training at ``precision="bf16"`` change what the course measures? fp32 against bf16.

The same runs at both precisions: the LSTM encoder on the (3, x, 3) template, the course's
recipe of notebooks 04/05 (60 steps, batch 8, lr 3e-3, best-on-dev prompt), on four relations
and three seeds. Each (relation, seed, precision) run scores the test facts, and the per-fact
exact-match outcomes of bf16 and fp32 are compared with ``ptlib.stats`` (paired on seeds and
facts), per relation and over all four. Finished runs are appended to
``bench/results/bf16_accuracy.jsonl``, so an interrupted run resumes where it stopped; only runs
recorded by the same ptlib code (``ptlib.provenance.ptlib_fingerprint``) are reused.

    .venv/bin/python bench/bf16_accuracy.py          # about 7 minutes on an idle 2-core CPU
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
from _common import RESULTS_DIR, ptlib_fingerprint, write_result

from ptlib import TrainConfig, load_lm, load_task, stats, train

TASKS = ("capital_of", "country_language", "element_symbol", "antonym")
SEEDS = (0, 1, 2)
PRECISIONS = ("fp32", "bf16")
TEMPLATE = "[P][P][P] {x} [P][P][P]"
RECIPE = {"encoder": "lstm", "steps": 60, "batch_size": 8, "lr": 3e-3, "eval_every": 10}
MARGIN = 0.05  # an EM difference smaller than this counts as no change worth a learner's notice


def finished(path: Path, fingerprint: str) -> dict:
    """Runs already in the results file from this ptlib code, by (task, seed, precision)."""
    runs, stale = {}, 0
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                run = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by an interruption
                continue
            if run.get("ptlib") != fingerprint:
                stale += 1
                continue
            runs[run["task"], run["seed"], run["precision"]] = run
    if stale:
        print(f"{stale} recorded runs came from other ptlib code: they run again", flush=True)
    return runs


def run_one(lm, task, seed: int, precision: str, recipe: dict) -> dict:
    started = time.perf_counter()
    config = TrainConfig(**recipe, seed=seed, precision=precision)
    result = train(lm, TEMPLATE, task.split("train"), task.split("dev"), config,
                   show_progress=False)
    test = result.evaluate(lm, task.split("test"), precision=precision)
    return {"task": task.name, "seed": seed, "precision": precision,
            "ptlib": ptlib_fingerprint(), "config": config.as_dict(),
            "test_exact": [int(hit) for hit in test.exact], "test_em": test.exact_match,
            "best_step": result.best_step, "seconds": time.perf_counter() - started}


def compare(runs: dict, tasks: tuple[str, ...], seeds: tuple[int, ...]) -> dict:
    """bf16 minus fp32 EM, paired on seeds and facts, over ``tasks`` (facts side by side)."""
    matrices = {p: np.hstack([[runs[t, s, p]["test_exact"] for s in seeds] for t in tasks])
                for p in PRECISIONS}
    difference = stats.paired_difference(matrices["bf16"], matrices["fp32"])
    return {"tasks": list(tasks), "fp32_em": difference.mean_b, "bf16_em": difference.mean_a,
            "difference": difference.difference, "ci": [difference.low, difference.high],
            "within_margin": -MARGIN < difference.low and difference.high < MARGIN,
            "verdict": str(stats.verdict(difference, "bf16", "fp32"))}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: one relation, two seeds, 5 steps (its own file)")
    args = parser.parse_args(argv)
    tasks, seeds = (TASKS[:1], SEEDS[:2]) if args.quick else (TASKS, SEEDS)
    recipe = RECIPE | {"steps": 5, "eval_every": 5} if args.quick else RECIPE
    path = RESULTS_DIR / ("bf16_accuracy.quick.jsonl" if args.quick else "bf16_accuracy.jsonl")
    lm = load_lm(device="cpu")
    runs = finished(path, ptlib_fingerprint())
    for name in tasks:
        task = load_task(name)
        for seed in seeds:
            for precision in PRECISIONS:
                if (name, seed, precision) in runs:
                    continue
                run = run_one(lm, task, seed, precision, recipe)
                runs[name, seed, precision] = run
                with path.open("a") as handle:
                    handle.write(json.dumps(run) + "\n")
                print(f"{name} seed {seed} {precision}: EM {run['test_em']:.3f} in "
                      f"{run['seconds']:.0f} s", flush=True)
    rows = [compare(runs, (name,), seeds) for name in tasks] + [compare(runs, tasks, seeds)]
    for row in rows:
        print(f"{'+'.join(row['tasks'])}: fp32 {row['fp32_em']:.3f}, bf16 {row['bf16_em']:.3f};"
              f" {row['verdict']}; within +-{MARGIN}: {row['within_margin']}")
    seconds = {p: sum(r["seconds"] for k, r in runs.items() if k[2] == p) for p in PRECISIONS}
    write_result("bf16_accuracy", {"command": "python bench/bf16_accuracy.py",
                                   "quick": args.quick,
                                   "template": TEMPLATE, "recipe": recipe, "seeds": seeds,
                                   "margin": MARGIN, "comparisons": rows,
                                   "seconds_per_precision": seconds})


if __name__ == "__main__":
    main()
