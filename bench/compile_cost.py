"""What ``TrainConfig(compile=True)`` costs and buys in one course run, on this machine.

Two 60-step LSTM runs on capital_of (seeds 0 and 1, the course's defaults; precision "auto"
was bf16 where native when its results were recorded, and is fp32 now) in one fresh process,
timed end to end with their dev evaluations: the first run pays the
compilation (less when torch's on-disk compile cache is warm from an earlier process), the
second shows the steady speed. Run it once per mode, each in its own process:

    python bench/compile_cost.py plain
    python bench/compile_cost.py compile

It prints the wall time of each run and each run's best dev EM: compiled kernels round
differently, so in bf16 a compiled run need not end where the uncompiled one does.
"""

import json
import sys
import time

from ptlib import TrainConfig, load_lm, load_task, train

TEMPLATE = "[P][P][P] {x} [P][P][P]"


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "plain"
    if mode not in ("plain", "compile"):
        raise SystemExit("usage: python bench/compile_cost.py plain|compile")
    lm = load_lm()
    task = load_task("capital_of")
    report = {"mode": mode, "runs": []}
    for seed in (0, 1):
        config = TrainConfig(steps=60, eval_every=25, seed=seed, compile=mode == "compile")
        started = time.perf_counter()
        result = train(lm, TEMPLATE, task.split("train"), task.split("dev"), config,
                       show_progress=False)
        report["runs"].append({"seed": seed, "seconds": time.perf_counter() - started,
                               "best_dev_em": max(result.history.dev_exact_match)})
    print(json.dumps(report))


if __name__ == "__main__":
    main()
