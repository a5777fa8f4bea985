"""Eager attention against PyTorch's SDPA for the bf16 training step on this CPU.

``ptlib.model._prefer_fast_attention`` switches a bf16 model on a CPU to eager attention. This
times one ``training_step`` of the LSTM encoder at the course's batch of 16 (capital_of, the
``roofline.py`` template, packed into one row) with each implementation, alternated round by
round in one process, and prints the median seconds of each.

    .venv/bin/python bench/cpu_attention.py      # about a minute on 2 cores
"""

import statistics
import time

import torch
from _common import SPEED_TEMPLATE, WORKLOAD_SIZES, lstm_trainer

from ptlib import load_lm, load_task
from ptlib.template import parse_template
from ptlib.training import training_step


def main(rounds: int = 8) -> None:
    lm = load_lm(device="cpu")
    model = lm.weights_in(torch.bfloat16)  # what precision="bf16" runs
    template = parse_template(SPEED_TEMPLATE)
    facts = load_task("capital_of").split("train")[: WORKLOAD_SIZES["train"]]
    encoder, optimizer = lstm_trainer(lm, template)
    times = {"eager": [], "sdpa": []}
    for _ in range(rounds + 1):  # the first round warms up and is dropped
        for implementation, seconds in times.items():
            model.set_attn_implementation(implementation)
            started = time.perf_counter()
            training_step(lm, template, [facts], encoder, optimizer, "bf16")
            seconds.append(time.perf_counter() - started)
    model.set_attn_implementation("eager")
    for implementation, seconds in times.items():
        print(f"{implementation}: median {statistics.median(seconds[1:]):.3f} s per bf16 "
              f"training step ({rounds} rounds)")


if __name__ == "__main__":
    main()
