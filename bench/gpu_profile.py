"""Where the time of a soft-prompt training step goes on a GPU, and how close it gets to the limit.

Run on a CUDA machine: ``python bench/gpu_profile.py --assets DIR --out FILE.json``
(``--device cpu --quick`` smoke-tests it here on the SmolLM2 shape). For the ~1B Llama shape in
bf16 it profiles a few steps of each kind of batch (wall time, the device's busy time, the top
operators by their own device time), then times ``ptlib.training.training_step`` on two kinds of
batch, each plain and with the opt-in ``ptlib.model.compile_layers`` (``TrainConfig.compile``):

- the course's rows (``[P]x3 {x} [P]x3`` on capital_of, about 10 real tokens of T = 16),
- long rows (about 100-130 tokens per row, like a sentence-classification input).

Both are packed without padding into rows of at most ``ptlib.packing.PACK_TOKENS`` tokens.

Each row gives tokens/s, MFU against the H100/H200 dense bf16 peak, and the rate of the
step's own matrix multiplies measured in the same run (``bench/_common.matmul_rate``), so
the step is judged against what this GPU does at these shapes, not only against the datasheet.
"""

import functools
import json
import time
import traceback
from unittest import mock

import torch
from _common import (
    COURSE_TEMPLATE,
    DENSE_BF16_PEAK,
    MATMUL_RATE_METHOD,
    gpu_parser,
    llama_1b_config,
    matmul_rate,
    smollm2_config,
    smollm2_tokenizer,
    timed_steps,
)

from ptlib import objective, packing
from ptlib.data import Fact, load_task
from ptlib.flops import useful_flops
from ptlib.model import compile_layers, random_lm
from ptlib.objective import make_batch
from ptlib.template import parse_template


def measure(lm, rows, label: str, steps: int, warmup: int) -> dict:
    batch = make_batch(lm, parse_template(COURSE_TEMPLATE), rows)
    started = time.perf_counter()
    seconds = timed_steps(lm, rows, steps, warmup)
    flops = useful_flops(lm.model, batch, "train")
    packed = objective.pack(batch).source.shape  # (R, C), as the step packs it
    limit = matmul_rate(lm, batch, torch.bfloat16) * 1e9
    row = {"variant": label, "batch": batch.size, "seq_len": batch.input_ids.shape[1],
           "packed_rows": packed[0], "packed_len": packed[1],
           "real_tokens": int(batch.attention_mask.sum()), "seconds_per_step": seconds,
           "tokens_per_s": int(batch.attention_mask.sum()) / seconds,
           "tflops": flops / seconds / 1e12, "mfu": flops / seconds / DENSE_BF16_PEAK,
           "matmul_tflops_at_these_shapes": limit / 1e12,
           "fraction_of_matmul_rate": flops / seconds / limit,
           "matmul_rate_method": MATMUL_RATE_METHOD,
           "wall_s_incl_warmup": time.perf_counter() - started}
    print(json.dumps(row), flush=True)
    return row


def profile(lm, rows, steps: int = 3) -> dict:
    """Where ``steps`` training steps go: wall time per step, the device's busy time per step
    (the sum of its kernels' and copies' time) and the top operators by the device time of the
    kernels they launch."""
    timed_steps(lm, rows, steps=1, warmup=2)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if lm.device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        step_s = timed_steps(lm, rows, steps=steps, warmup=0)
    events = prof.key_averages()
    on_device = [e for e in events if e.device_type != torch.autograd.DeviceType.CPU]
    busy_s = sum(e.self_device_time_total for e in on_device) / 1e6 / steps  # kernels, copies
    operators = [e for e in events if e.device_type == torch.autograd.DeviceType.CPU]
    ranked = sorted(operators, key=lambda e: e.self_device_time_total or e.self_cpu_time_total,
                    reverse=True)
    top = [{"name": e.key[:90], "self_device_ms": e.self_device_time_total / 1e3 / steps,
            "self_cpu_ms": e.self_cpu_time_total / 1e3 / steps, "calls": e.count // steps}
           for e in ranked[:20]]
    summary = {"step_s": step_s, "device_busy_s": busy_s,
               "busy_fraction": busy_s / step_s, "top_self": top}
    print(json.dumps(summary, indent=1), flush=True)
    return summary


def batches(facts: list[Fact], size: int) -> dict[str, list[Fact]]:
    """The two kinds of batch: course rows, and long rows (8x fewer)."""
    course = [facts[i % len(facts)] for i in range(size)]
    long_rows = [Fact(" ".join(facts[(i + j) % len(facts)].x for j in range(36 + i % 8)),
                      facts[i % len(facts)].y) for i in range(max(2, size // 8))]
    return {"course rows": course, "long rows": long_rows}


def main() -> None:
    parser = gpu_parser()
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--quick", action="store_true",
                        help="SmolLM2 shape, batch 8, 1 timed step: a smoke test for a CPU")
    parser.add_argument("--profile-only", action="store_true",
                        help="only where the steps of course rows and long rows go")
    args = parser.parse_args()
    tokenizer = smollm2_tokenizer(args.assets)
    shape = smollm2_config(args.assets) if args.quick else llama_1b_config(len(tokenizer))
    size, steps, warmup = (8, 1, 1) if args.quick else (args.batch, 8, 3)
    lm = random_lm(shape, tokenizer, device=args.device, dtype=torch.bfloat16,
                   name="smollm2-shape" if args.quick else "llama-1b")
    kinds = batches(load_task("capital_of").split("train"), size)
    report = {"gpu": torch.cuda.get_device_name(0) if lm.device.type == "cuda" else "cpu",
              "torch": torch.__version__, "model": lm.name, "rows": [], "errors": []}
    report["profile"] = {kind: profile(lm, kinds[kind]) for kind in ("course rows", "long rows")}
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    if args.profile_only:
        return
    variants = [("plain", kind) for kind in kinds]
    variants += [("plain, one example a row (the padded layout)", "course rows")]
    variants += [("compile_layers", kind) for kind in kinds]
    for way, kind in variants:
        label = f"{way}, {kind}"
        if way == "compile_layers":
            compile_layers(lm.model)
        capacity = 1 if "one example a row" in way else packing.PACK_TOKENS
        try:
            with mock.patch.object(objective, "pack",
                                   functools.partial(packing.pack, capacity=capacity)):
                report["rows"].append(measure(lm, kinds[kind], label, steps,
                                              warmup + (2 if way == "compile_layers" else 0)))
        except Exception:  # a failed variant is recorded; the others still run
            report["errors"].append({"variant": label, "error": traceback.format_exc()})
            print(report["errors"][-1]["error"], flush=True)
        if args.out:
            args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
