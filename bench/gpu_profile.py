"""Where the time of a soft-prompt training step goes on a GPU, and how close it gets to the limit.

Run on a CUDA machine: ``python bench/gpu_profile.py --assets DIR --out FILE.json``
(``--device cpu --quick`` smoke-tests it here on the SmolLM2 shape). For the ~1B Llama shape in
bf16 it profiles one step of the course's rows and lists the top kernels, then times
``ptlib.train.training_step`` on three kinds of batch, each plain and with the opt-in
``ptlib.model.compile_layers`` (``TrainConfig.compile``):

- the course's rows (``[P]x3 {x} [P]x3`` on capital_of, about T = 17 with a third padding),
- the same rows without padding (one fact repeated: the ceiling packing could reach),
- long rows (about 100-130 tokens per row, like a sentence-classification input).

Each row gives tokens/s, MFU against the H100/H200 dense bf16 peak, and the rate of the
step's own matrix multiplies measured in the same run (``bench/roofline.matmul_rate``), so
the step is judged against what this GPU does at these shapes, not only against the datasheet.
"""

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check import (  # noqa: E402
    DENSE_BF16_PEAK,
    TEMPLATE,
    flops_per_step,
    llama_1b_config,
    smollm2_config,
    smollm2_tokenizer,
    timed_steps,
)
from roofline import matmul_rate  # noqa: E402

from ptlib.data import Fact, load_task  # noqa: E402
from ptlib.model import compile_layers, random_lm  # noqa: E402
from ptlib.objective import make_batch  # noqa: E402
from ptlib.template import parse_template  # noqa: E402


def measure(lm, rows, label: str, steps: int, warmup: int) -> dict:
    batch = make_batch(lm, parse_template(TEMPLATE), rows)
    started = time.perf_counter()
    seconds = timed_steps(lm, rows, steps, warmup)
    flops = flops_per_step(lm, batch)
    limit = matmul_rate(lm, batch, torch.bfloat16) * 1e9
    row = {"variant": label, "batch": batch.size, "seq_len": batch.input_ids.shape[1],
           "real_tokens": int(batch.attention_mask.sum()), "seconds_per_step": seconds,
           "tokens_per_s": int(batch.attention_mask.sum()) / seconds,
           "tflops": flops / seconds / 1e12, "mfu": flops / seconds / DENSE_BF16_PEAK,
           "matmul_tflops_at_these_shapes": limit / 1e12,
           "fraction_of_matmul_rate": flops / seconds / limit,
           "wall_s_incl_warmup": time.perf_counter() - started}
    print(json.dumps(row), flush=True)
    return row


def profile(lm, rows) -> list[dict]:
    timed_steps(lm, rows, steps=1, warmup=2)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if lm.device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        timed_steps(lm, rows, steps=2, warmup=0)
    events = sorted(prof.key_averages(), key=lambda e: e.device_time_total or e.cpu_time_total,
                    reverse=True)
    top = [{"name": e.key[:90], "device_ms": e.device_time_total / 1e3 / 2,
            "cpu_ms": e.cpu_time_total / 1e3 / 2, "calls": e.count // 2} for e in events[:15]]
    for row in top:
        print(json.dumps(row), flush=True)
    return top


def batches(facts: list[Fact], size: int) -> dict[str, list[Fact]]:
    """The three kinds of batch: course rows, unpadded rows, long rows (about 4x fewer)."""
    course = [facts[i % len(facts)] for i in range(size)]
    long_rows = [Fact(" ".join(facts[(i + j) % len(facts)].x for j in range(36 + i % 8)),
                      facts[i % len(facts)].y) for i in range(max(2, size // 8))]
    return {"course rows": course, "no padding": [Fact("France", "Paris")] * size,
            "long rows": long_rows}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--assets", type=Path, required=True)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--quick", action="store_true",
                        help="SmolLM2 shape, batch 8, 1 timed step: a smoke test for a CPU")
    args = parser.parse_args()
    tokenizer = smollm2_tokenizer(args.assets)
    shape = smollm2_config(args.assets) if args.quick else llama_1b_config(len(tokenizer))
    size, steps, warmup = (8, 1, 1) if args.quick else (args.batch, 8, 3)
    lm = random_lm(shape, tokenizer, device=args.device, dtype=torch.bfloat16,
                   name="smollm2-shape" if args.quick else "llama-1b")
    kinds = batches(load_task("capital_of").split("train"), size)
    report = {"gpu": torch.cuda.get_device_name(0) if lm.device.type == "cuda" else "cpu",
              "torch": torch.__version__, "model": lm.name, "rows": [], "errors": []}
    report["top_kernels"] = profile(lm, kinds["course rows"])
    for compiled in (False, True):
        if compiled:
            compile_layers(lm.model)
        for kind, rows in kinds.items():
            label = f"{'compile_layers' if compiled else 'plain'}, {kind}"
            try:
                report["rows"].append(measure(lm, rows, label, steps,
                                              warmup + (2 if compiled else 0)))
            except Exception:  # a failed variant is recorded; the others still run
                report["errors"].append({"variant": label, "error": traceback.format_exc()})
                print(report["errors"][-1]["error"], flush=True)
            if args.out:
                args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
