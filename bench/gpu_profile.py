"""Where the time of a soft-prompt training step goes on a GPU, and what speeds it up.

Run on a CUDA machine after ``bench/gpu_check.py``:
``python bench/gpu_profile.py --assets DIR --out FILE.json``. For the ~1B Llama shape at one
large batch it (1) profiles one step and lists the top CUDA kernels, (2) times the plain step,
(3) the step with the transformer body compiled by ``torch.compile``, and (4) the plain step on
a batch without padding (every row the same length), each as tokens/s and MFU.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check import (  # noqa: E402
    DENSE_BF16_PEAK,
    TEMPLATE,
    flops_per_step,
    llama_1b_config,
    smollm2_tokenizer,
)

from ptlib.data import Fact, load_task  # noqa: E402
from ptlib.encoders import build_encoder  # noqa: E402
from ptlib.model import random_lm  # noqa: E402
from ptlib.objective import make_batch  # noqa: E402
from ptlib.template import parse_template  # noqa: E402
from ptlib.train import training_step  # noqa: E402


def timed_steps(lm, rows, encoder, optimizer, steps: int = 8, warmup: int = 3) -> float:
    template = parse_template(TEMPLATE)
    for step in range(warmup + steps):
        if step == warmup:
            torch.cuda.synchronize()
            started = time.perf_counter()
        training_step(lm, template, [rows], encoder, optimizer, precision="bf16")
    torch.cuda.synchronize()
    return (time.perf_counter() - started) / steps


def measure(lm, rows, label: str) -> dict:
    template = parse_template(TEMPLATE)
    batch = make_batch(lm, template, rows)
    encoder = build_encoder("lstm", template.num_slots, lm.embeddings, seed=0).to(lm.device)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=1e-3)
    seconds = timed_steps(lm, rows, encoder, optimizer)
    flops = flops_per_step(lm, batch)
    row = {"variant": label, "batch": batch.size, "seq_len": batch.input_ids.shape[1],
           "real_tokens": int(batch.attention_mask.sum()), "seconds_per_step": seconds,
           "tokens_per_s": int(batch.attention_mask.sum()) / seconds,
           "mfu": flops / seconds / DENSE_BF16_PEAK}
    print(json.dumps(row), flush=True)
    return row


def profile(lm, rows) -> list[dict]:
    template = parse_template(TEMPLATE)
    encoder = build_encoder("lstm", template.num_slots, lm.embeddings, seed=0).to(lm.device)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=1e-3)
    timed_steps(lm, rows, encoder, optimizer, steps=1, warmup=2)
    activities = [torch.profiler.ProfilerActivity.CUDA, torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=activities) as prof:
        timed_steps(lm, rows, encoder, optimizer, steps=2, warmup=0)
    events = sorted(prof.key_averages(), key=lambda e: e.device_time_total, reverse=True)
    top = [{"name": e.key[:90], "cuda_ms": e.device_time_total / 1e3 / 2, "calls": e.count // 2}
           for e in events[:15]]
    for row in top:
        print(json.dumps(row), flush=True)
    return top


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--assets", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batch", type=int, default=1024)
    args = parser.parse_args()
    tokenizer = smollm2_tokenizer(args.assets)
    lm = random_lm(llama_1b_config(len(tokenizer)), tokenizer, device="cuda",
                   dtype=torch.bfloat16, name="llama-1b")
    facts = load_task("capital_of").split("train")
    padded = [facts[i % len(facts)] for i in range(args.batch)]
    same = [Fact("France", "Paris")] * args.batch  # every row the same length: no padding
    report = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
              "top_kernels": profile(lm, padded),
              "rows": [measure(lm, padded, "plain, padded batch"),
                       measure(lm, same, "plain, no padding")]}
    lm.model.model = torch.compile(lm.model.model, dynamic=False)
    report["rows"].append(measure(lm, padded, "torch.compile body, padded batch"))
    report["rows"].append(measure(lm, same, "torch.compile body, no padding"))
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
