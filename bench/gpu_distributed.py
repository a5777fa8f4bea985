"""The distributed training path on CUDA with nccl, as torchrun starts it (issue 14, item 4).

Run on a GPU machine, one process per GPU (a single GPU proves the nccl path at world size 1):

    torchrun --nproc-per-node $(nvidia-smi -L | wc -l) bench/gpu_distributed.py \\
        --assets DIR --out bench/gpu_distributed_<gpu>.json [--shard-lm]

``DIR`` holds SmolLM2's config.json and tokenizer.json, as for ``bench/gpu_check.py``: the
weights do not travel to a lent GPU machine, so the model is random-init with the same shape.
Every rank trains the LSTM encoder with ``ptlib.train`` (bf16, dev evaluation split across
ranks) and rank 0 writes what it measured: the backend, the world size, seconds per step, the
loss before and after, and the peak GPU memory of each rank.
"""

import argparse
import json
import time
from pathlib import Path

import torch
import torch.distributed as dist
from _common import smollm2_config, smollm2_tokenizer, synchronize

from ptlib import TrainConfig, distributed, load_task, train
from ptlib.model import random_lm

TEMPLATE = "[P][P][P] {x} [P][P][P]"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--assets", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--shard-lm", action="store_true")
    parser.add_argument("--cpu", action="store_true", help="gloo on CPU: a smoke test here")
    args = parser.parse_args()
    ranks = distributed.init_from_env()
    if not dist.is_initialized():  # world size 1: still go through the backend, with the
        # rendezvous torchrun describes in MASTER_ADDR / MASTER_PORT (env://)
        dist.init_process_group("gloo" if args.cpu else "nccl")
    device = "cpu" if args.cpu else f"cuda:{ranks.local_rank}"
    if not args.cpu:
        torch.cuda.set_device(device)
    # bf16 at load: a sharded model cannot be cast afterwards (LM.weights_in)
    lm = random_lm(smollm2_config(args.assets), smollm2_tokenizer(args.assets),
                   device="cpu" if args.shard_lm else device, dtype=torch.bfloat16,
                   name="smollm2-shape")
    if args.shard_lm:
        distributed.shard_lm(lm.model)
        lm.model.to(device)
        lm.device = torch.device(device)
    task = load_task("capital_of")
    config = TrainConfig(encoder="lstm", steps=args.steps, batch_size=16, eval_every=25,
                         precision="bf16")
    synchronize(lm.device)
    started = time.perf_counter()
    result = train(lm, TEMPLATE, task.split("train"), task.split("dev"), config,
                   show_progress=False)
    synchronize(lm.device)
    seconds = (time.perf_counter() - started) / args.steps
    peak = distributed.all_gather(None if args.cpu else
                                  torch.cuda.max_memory_allocated() / 2**30, ranks)
    if ranks.is_main:
        report = {"gpu": "cpu" if args.cpu else torch.cuda.get_device_name(0),
                  "torch": torch.__version__,
                  "backend": dist.get_backend(), "world": dist.get_world_size(),
                  "shard_lm": args.shard_lm, "steps": args.steps,
                  "seconds_per_step_incl_evals": seconds,
                  "loss_first": result.history.loss[0], "loss_last": result.history.loss[-1],
                  "peak_gib_per_rank": peak}
        print(json.dumps(report, indent=2))
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    dist.barrier()  # as distributed.finish: no rank tears down while a peer is mid-collective
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
