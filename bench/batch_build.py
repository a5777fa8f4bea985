"""What building one training batch costs on the CPU, with and without the tokenisation cache.

Every training step turns its facts into a padded ``Batch`` (``ptlib.template.build_batch``).
On a GPU that CPU work is time the GPU waits, so it is measured here at a GPU-sized batch:
cold (the per-fact cache cleared before each call and every row a different fact, drawn from
all tasks: every row tokenised, as before the cache) and warm (every fact seen before, as from
the second epoch on).

    python bench/batch_build.py [--batch 1024] [--repeats 7]
"""

import argparse
import json
import statistics
import time

from _common import machine_info

from ptlib import template as templates
from ptlib.data import list_tasks, load_task
from ptlib.model import load_lm

TEMPLATE = "[P][P][P] {x} [P][P][P]"


def seconds(build, repeats: int, clear: bool) -> float:
    times = []
    for _ in range(repeats):
        if clear:
            templates._encode_example.cache_clear()
        started = time.perf_counter()
        build()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    tokenizer = load_lm().tokenizer
    distinct = list(dict.fromkeys(f for name in list_tasks() for f in load_task(name).facts))
    rows = [distinct[i % len(distinct)] for i in range(args.batch)]
    template = templates.parse_template(TEMPLATE)

    def build():
        return templates.build_batch(tokenizer, template, [f.x for f in rows],
                                     [f.y for f in rows])

    report = {"batch": args.batch, "distinct_facts": min(args.batch, len(distinct)),
              "cold_ms": 1e3 * seconds(build, args.repeats, clear=True),
              "warm_ms": 1e3 * seconds(build, args.repeats, clear=False),
              "machine": machine_info()["cpu"]}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
