"""Peak resident memory of ptlib on CPU, each measurement in a fresh subprocess.

``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is the process's high-water mark, so every case
runs in its own interpreter (started by this script with ``--case NAME``):

- ``imports``: Python with torch, transformers and ptlib imported, nothing loaded;
- ``load``: the embedded SmolLM2-135M loaded (fp32, CPU), every weight read once;
- ``train_lstm_fp32`` / ``train_lstm_bf16``: ``ptlib.train`` for 20 steps at batch 16 with the
  LSTM encoder (ptlib's default, hidden d), frozen LM in fp32 or in bf16 (weights cast once);
- ``peft_train_mlp``: 20 steps of PEFT P-Tuning (its default MLP encoder) at batch 16 with the
  standard loop (full logits and the HF loss), for comparison.

Training's own cost is the difference from ``load``.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/memory.py           # ~3 min on 2 cores
    HF_HUB_OFFLINE=1 .venv/bin/python bench/memory.py --quick   # 3 steps

Writes ``bench/results/memory.json``.
"""

import argparse
import json
import os
import resource
import subprocess
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see peft_vs_ptlib.py; before torch
from _common import PeftHarness, peft_step, split_prefix_layout, write_result  # noqa: E402

CASES = ("imports", "load", "train_lstm_fp32", "train_lstm_bf16", "peft_train_mlp")
TASK = "capital_of"


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_case(case: str, steps: int) -> dict:
    """Run one case in this process and return its peak RSS (call in a fresh interpreter)."""
    import torch

    import ptlib

    torch.manual_seed(0)
    out = {"case": case}
    if case == "imports":
        import transformers  # noqa: F401
    else:
        lm = ptlib.load_lm(device="cpu")
        with torch.no_grad():  # touch every weight: safetensors loads may be lazily mapped
            out["weights_checksum"] = float(sum(p.double().sum() for p in lm.model.parameters()))
        task = ptlib.load_task(TASK)
        train, dev = task.split("train"), task.split("dev")
        out["after_load_mib"] = peak_mib()
        if case.startswith("train_lstm"):
            precision = case.rsplit("_", 1)[1]
            config = ptlib.TrainConfig(encoder="lstm", steps=steps, batch_size=16,
                                       eval_every=steps, precision=precision)
            result = ptlib.train(lm, "[P][P][P] {x} [P][P][P]", train, dev, config,
                                 show_progress=False)
            out["steps"] = len(result.history.step)
        elif case == "peft_train_mlp":
            from ptlib.training import TrainConfig, batch_facts

            num_virtual, text = split_prefix_layout("[P]" * 9 + " " + task.templates[0])
            harness = PeftHarness(lm.model)
            params = harness.add("mem", "mlp", None, num_virtual, seed=0)
            optimizer = torch.optim.AdamW(params, lr=3e-3)
            harness.model.train()
            order = TrainConfig(batch_size=16)
            for step in range(steps):
                peft_step(harness, optimizer, params, lm.tokenizer, text,
                          batch_facts(train, order, step, 0))
            out["steps"] = steps
    out["peak_mib"] = peak_mib()
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--case", choices=CASES, help="(internal) run one case and print JSON")
    args = parser.parse_args(argv)
    steps = 3 if args.quick else args.steps
    if args.case:
        print("RESULT " + json.dumps(run_case(args.case, steps)), flush=True)
        return
    results = {}
    for case in CASES:
        command = [sys.executable, __file__, "--case", case, "--steps", str(steps)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            raise RuntimeError(f"case {case} failed:\n{done.stderr[-3000:]}")
        results[case] = json.loads(lines[-1][len("RESULT "):])
        print(f"{case}: peak {results[case]['peak_mib']:.0f} MiB", flush=True)
    load = results["load"]["peak_mib"]
    for case in CASES:
        if case.startswith(("train", "peft")):
            results[case]["over_load_mib"] = results[case]["peak_mib"] - load
    write_result("memory", {"quick": args.quick, "steps": steps, "batch_size": 16,
                            "task": TASK, "cases": results,
                            "command": " ".join(["bench/memory.py"] + (argv or sys.argv[1:]))})


if __name__ == "__main__":
    main()
