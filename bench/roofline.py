"""Where the time of ptlib's CPU work goes, judged against this machine's own matmul rate.

Three workloads on the embedded SmolLM2 and capital_of's train facts, with the step-time
template of ``peft_vs_ptlib.py`` (9 slots + `` {x} ->``):

- ``train``: one ``ptlib.training.training_step`` of the LSTM encoder at batch 16;
- ``eval``: one forward-only evaluation batch of 32 facts (``batch_scores`` under no_grad);
- ``score``: AutoPrompt candidate scoring, 10 candidates (+ the current prompt) x 16 facts.

Each runs in four variants: ``fp32``; ``bf16_autocast``, fp32 weights under
``torch.autocast`` (what ptlib's ``precision="bf16"`` did before 2026-11-30, kept here as the
reference); ``bf16``, ptlib's ``precision="bf16"`` now: the frozen LM's weights cast to bf16
once (``LM.weights_in``), no autocast; and ``bf16_compiled``, the same on a second copy of the
LM whose decoder layers are compiled (``compile_layers``, the opt-in ``TrainConfig.compile``;
compilation happens in the warm-up, outside the timings). The contenders are timed
interleaved, round by round, in one process.

Reported per (workload, precision): the median seconds; the useful GFLOP/s, counting only real
tokens (padding excluded): the transformer body's forward, 2 x params x tokens plus attention,
the LM head at target positions, and for ``train`` the activation backward of the same size;
the matmul GFLOP/s this machine reaches at the same matrix shapes in the same dtype, measured
in the same run; the fraction of it the workload reaches; and the padding share (since
``ptlib.packing``, only the filler that ends a packed row). Then the top operators of each
training step by self CPU time (torch.profiler).

    .venv/bin/python bench/roofline.py            # about 3 minutes on 2 cores

Run it with OpenMP's default waiting, as a notebook runs: with ``OMP_WAIT_POLICY=PASSIVE`` (what
the other benchmarks set, see ``peft_vs_ptlib.py``) the bf16 training step took 0.461 s
(``bench/results/roofline_omp_passive.json``) against 0.323 s with the default
(``bench/results/roofline.json``), both on an idle machine: its many small elementwise
operators pay for every thread wake-up.
"""

import argparse
import os
import statistics
import time

import torch
from _common import (
    MATMUL_RATE_METHOD,
    SPEED_TEMPLATE,
    WORKLOAD_SIZES,
    lstm_trainer,
    matmul_rate,
    write_result,
)

from ptlib import load_lm, load_task
from ptlib.flops import useful_flops
from ptlib.model import compile_layers
from ptlib.objective import batch_scores, make_batch, score_candidates
from ptlib.packing import pack
from ptlib.template import parse_template
from ptlib.training import training_step

PRECISIONS = ("fp32", "bf16_autocast", "bf16", "bf16_compiled")  # compiled: compile_layers
CANDIDATES = 10


class Workloads:
    """The three workloads, runnable in each precision against a shared set of inputs."""

    def __init__(self, lm, facts, compiled_lm):
        self.lm = lm
        self.compiled_lm = compiled_lm  # another copy, its bf16 decoder layers compiled
        self.template = parse_template(SPEED_TEMPLATE)
        self.facts = facts
        self.encoders = {}
        for precision in PRECISIONS:
            self.encoders[precision] = lstm_trainer(lm, self.template)
        generator = torch.Generator().manual_seed(0)
        self.candidates = torch.randint(lm.vocab_size, (CANDIDATES + 1, 9),
                                        generator=generator)

    def rows(self, workload: str) -> list:
        return self.facts[: WORKLOAD_SIZES[workload]]

    def batch(self, workload: str):
        return make_batch(self.lm, self.template, self.rows(workload))

    def run(self, workload: str, precision: str) -> None:
        autocast = torch.autocast("cpu", dtype=torch.bfloat16,
                                  enabled=precision == "bf16_autocast")
        ptlib_precision = "bf16" if precision in ("bf16", "bf16_compiled") else "fp32"
        lm = self.compiled_lm if precision == "bf16_compiled" else self.lm
        with autocast:
            self._run(lm, workload, precision, ptlib_precision)

    def _run(self, lm, workload: str, precision: str, ptlib_precision: str) -> None:
        if workload == "train":
            encoder, optimizer = self.encoders[precision]
            training_step(lm, self.template, [self.rows("train")], encoder, optimizer,
                          ptlib_precision)
            return
        with torch.no_grad():
            batch = self.batch(workload)
            if workload == "eval":
                prompt = self.encoders[precision][0]()
                batch_scores(lm, batch, prompt=prompt, precision=ptlib_precision)
            else:
                score_candidates(lm, batch, self.candidates, precision=ptlib_precision)


def timed(work: Workloads, rounds: int) -> dict:
    """Median seconds of every (workload, precision), interleaved round by round."""
    times = {(w, p): [] for w in WORKLOAD_SIZES for p in PRECISIONS}
    for key in times:  # warm-up: first calls allocate and pick kernels
        work.run(*key)
    for _ in range(rounds):
        for key in times:
            started = time.perf_counter()
            work.run(*key)
            times[key].append(time.perf_counter() - started)
    return {key: statistics.median(values) for key, values in times.items()}


def top_operators(work: Workloads, precision: str, count: int = 8) -> list[dict]:
    activities = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=activities) as prof:
        work.run("train", precision)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [{"op": e.key, "self_ms": e.self_cpu_time_total / 1e3,
             "share": e.self_cpu_time_total / total, "calls": e.count} for e in events[:count]]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="2 rounds (a smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds = 2
    lm, compiled = load_lm(device="cpu"), load_lm(device="cpu")
    compile_layers(compiled.weights_in(torch.bfloat16))
    work = Workloads(lm, load_task("capital_of").split("train"), compiled)
    seconds = timed(work, args.rounds)
    rows = []
    for workload in WORKLOAD_SIZES:
        batch = work.batch(workload)
        flops = useful_flops(lm.model, batch, workload)
        if workload == "score":
            flops *= CANDIDATES + 1
        padding = 1 - batch.attention_mask.sum().item() / pack(batch).source.numel()
        limits = {torch.float32: matmul_rate(lm, batch, torch.float32),
                  torch.bfloat16: matmul_rate(lm, batch, torch.bfloat16)}
        for precision in PRECISIONS:
            limit = limits[torch.float32 if precision == "fp32" else torch.bfloat16]
            rate = flops / seconds[workload, precision] / 1e9
            rows.append({"workload": workload, "precision": precision,
                         "seconds": seconds[workload, precision], "useful_gflops": rate,
                         "matmul_gflops": limit, "fraction_of_matmul": rate / limit,
                         "padding_share": padding,
                         "speedup_vs_fp32": seconds[workload, "fp32"]
                         / seconds[workload, precision]})
            print(f"{workload:5s} {precision:13s} {seconds[workload, precision]:7.3f} s  "
                  f"useful {rate:6.1f} GFLOP/s of matmul {limit:6.1f} "
                  f"({rate / limit:.2f}); padding {padding:.2f}; "
                  f"{rows[-1]['speedup_vs_fp32']:.2f}x fp32", flush=True)
    operators = {precision: top_operators(work, precision) for precision in PRECISIONS}
    for precision, ops in operators.items():
        print(f"top operators, training step, {precision}:")
        for op in ops:
            print(f"  {op['op'][:40]:40s} {op['self_ms']:8.1f} ms  {100 * op['share']:5.1f}%")
    write_result("roofline", {"command": "python bench/roofline.py",
                              "matmul_rate_method": MATMUL_RATE_METHOD,
                              "template": SPEED_TEMPLATE,
                              "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
                              "batch_sizes": WORKLOAD_SIZES, "candidates": CANDIDATES,
                              "rounds": args.rounds, "rows": rows,
                              "top_operators_train": operators})


if __name__ == "__main__":
    main()
