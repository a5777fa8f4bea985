"""ptlib / PEFT P-Tuning step time on one GPU, interleaved in one process.

The step-time half of ``bench/peft_vs_ptlib.py`` (``_common.step_time``: same contenders, same
batches, same ratio statistics) on a random-init model of SmolLM2-135M's shape, or with
``--shape 1b`` a ~1B Llama shape; the embedded weights do not travel to a lent GPU machine, and
step time does not depend on them. ``DIR`` holds SmolLM2's config.json and tokenizer.json, as
for ``bench/gpu_check.py``. Each library runs with its defaults (ptlib ``precision="auto"``: fp32;
results recorded before bf16 became opt-in ran bf16 there; PEFT fp32), and ptlib also at the
opt-in ``precision="bf16"``.

    python bench/gpu_peft_ratio.py --assets DIR --out bench/gpu_peft_ratio_<gpu>.json
    python bench/gpu_peft_ratio.py --assets DIR --device cpu --quick   # smoke test, CPU
"""

import copy
import json
import sys

import torch
from _common import (
    PeftHarness,
    gpu_parser,
    llama_1b_config,
    smollm2_config,
    smollm2_tokenizer,
    step_time,
)

from ptlib import load_task
from ptlib.model import random_lm


def main(argv=None) -> None:
    parser = gpu_parser()
    parser.add_argument("--shape", choices=("smollm2", "1b"), default="smollm2")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--block", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="2 variants, 1 round of 1 step")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.block = 1, 1
    tokenizer = smollm2_tokenizer(args.assets)
    config = smollm2_config(args.assets)
    if args.shape == "1b":
        config = llama_1b_config(config.vocab_size)
    lm = random_lm(config, tokenizer, device=args.device, name=f"{args.shape}-shape")
    harness = PeftHarness(copy.deepcopy(lm.model))  # PEFT gets its own copy, as on CPU
    report = step_time(lm, harness, load_task("capital_of"), args.quick, args.batch_size, 3e-3,
                       args.rounds, args.block)
    device = torch.device(args.device)
    report |= {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "torch": torch.__version__, "shape": args.shape,
               "command": " ".join(["bench/gpu_peft_ratio.py", *(argv or sys.argv[1:])])}
    for key, value in report["ratios_ptlib_over_peft"].items():
        print(f"{key}: ptlib/PEFT = {value['median_of_round_ratios']:.3f} "
              f"(median s/step ptlib {value['median_step_s'][0]:.4f}, "
              f"PEFT {value['median_step_s'][1]:.4f})", flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
