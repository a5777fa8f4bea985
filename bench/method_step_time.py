"""Seconds per training step of every trained method the course's study compares, as ratios to
P-Tuning's LSTM, timed interleaved in one process (``_common.interleave``).

The contenders train exactly what the study's ``deep`` and ``reference`` arms train, at their
settings (batch 8, fp32, seed 0, the embedded SmolLM2-135M unless ``--model``): token-sized free
vectors, the LSTM, the deep prefix and prefix tuning's MLP, all on ``[P][P][P]`` before the
manual template chosen on dev, and LoRA (r 8 on the query and value projections) on that
template. Each step is the library's own: ``ptlib.training.training_step`` for the prompts and
``ptlib.lora.LoRARun.train_step`` for LoRA. Beside each: trainable parameters, training FLOPs
per step (``ptlib.flops``) and the share of this machine's matmul rate at the step's shapes
(``_common.matmul_rate``) that the step reaches.

    python bench/method_step_time.py [--task capital_of] [--rounds 5] [--block 3]

Writes ``bench/results/method_step_time.json`` and ``.md`` (its section of ``bench/RESULTS.md``).
"""

import argparse
import json
import statistics
import time

import _common
import torch

import ptlib
from ptlib.deep_prompt import deep_shape
from ptlib.discrete import best_manual_template
from ptlib.encoders import build_encoder
from ptlib.flops import run_train_flops, trainable_parameters
from ptlib.lora import LoRAConfig, LoRARun
from ptlib.objective import make_batch
from ptlib.training import TrainConfig, batch_facts, training_step

PRECISION = "fp32"  # the study's
BATCH_SIZE = 8  # the study's
PROMPTS = {"free vectors (token-sized)": ("free", "normal_rescaled"), "LSTM": ("lstm", None),
           "deep prefix": ("prefix", None), "prefix tuning's MLP": ("prefix_mlp", None)}
REFERENCE = "LSTM"
FLOP_STEPS = 8  # training FLOPs per step: the mean over the run's first steps, replayed


def prompt_contender(lm, template, facts, encoder_name, init, lr):
    """(run n steps -> n durations, trainable parameters) for one prompt encoder."""
    options = {"init": init} if init else {}
    config = TrainConfig(encoder=encoder_name, batch_size=BATCH_SIZE, seed=0, lr=lr,
                         precision=PRECISION, **options)
    if encoder_name.startswith("prefix"):
        options["deep_shape"] = deep_shape(lm.model)
    encoder = build_encoder(encoder_name, template.num_slots, lm.embeddings, seed=0,
                            **options).to(lm.device)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=lr)
    step = iter(range(10**9))

    def run(n: int) -> list[float]:
        times = []
        for _ in range(n):
            micro = [batch_facts(facts, config, next(step), 0)]
            started = time.perf_counter()
            training_step(lm, template, micro, encoder, optimizer, precision=PRECISION,
                          max_grad_norm=config.max_grad_norm)
            times.append(time.perf_counter() - started)
        return times

    return run, trainable_parameters(encoder), config


def lora_contender(lm, manual, facts, dev):
    """(run n steps -> n durations, trainable parameters) for the study's LoRA row."""
    config = LoRAConfig(batch_size=BATCH_SIZE, seed=0)
    lora = LoRARun(lm, manual, (facts, dev), config)

    def run(n: int) -> list[float]:
        times = []
        for _ in range(n):
            started = time.perf_counter()
            lora.train_step()
            times.append(time.perf_counter() - started)
        return times

    return run, lora.trainable, config, lora.lm.model


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="capital_of")
    parser.add_argument("--model", default=None, help="default: the embedded SmolLM2-135M")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--block", type=int, default=3, help="steps per contender per round")
    parser.add_argument("--lr", type=float, default=3e-3)
    args = parser.parse_args(argv)

    lm = ptlib.load_lm(args.model) if args.model else ptlib.load_lm()
    task = ptlib.load_task(args.task)
    facts, dev = task.split("train"), task.split("dev")
    manual_text, _ = best_manual_template(lm, task, "dev", PRECISION)
    manual = ptlib.parse_template(manual_text)
    template = ptlib.parse_template("[P][P][P] " + manual_text)
    contenders, trainable, counted = {}, {}, {}  # counted: how ptlib.flops replays the run
    for name, (encoder_name, init) in PROMPTS.items():
        contenders[name], trainable[name], config = prompt_contender(lm, template, facts,
                                                                     encoder_name, init, args.lr)
        counted[name] = {"template": template, "config": config}
    contenders["LoRA r 8"], trainable["LoRA r 8"], config, model = lora_contender(lm, manual,
                                                                                 facts, dev)
    counted["LoRA r 8"] = {"template": manual, "config": config, "model": model,
                           "body_trainable": trainable["LoRA r 8"]}

    times = _common.interleave(contenders, args.rounds, args.block, warmup=2)
    first = batch_facts(facts, TrainConfig(batch_size=BATCH_SIZE, seed=0), 0, 0)
    rate = _common.matmul_rate(lm, make_batch(lm, template, first), torch.float32) * 1e9
    rows = {}
    for name, blocks in times.items():
        replayed = run_train_flops(lm, train_facts=facts, steps=FLOP_STEPS, **counted[name])
        flops = replayed / FLOP_STEPS
        median = statistics.median(t for block in blocks for t in block)
        rows[name] = {"trainable_parameters": trainable[name], "median_step_s": median,
                      "train_flops_per_step": flops, "share_of_matmul_rate": flops / median / rate,
                      "ratio_to_lstm": _common.ratio_stats(blocks, times[REFERENCE])}
    path = _common.write_result("method_step_time", {
        "command": f"python bench/method_step_time.py --rounds {args.rounds} --block "
                   f"{args.block}",
        "task": task.name, "manual_template": manual_text, "batch_size": BATCH_SIZE,
        "precision": PRECISION, "matmul_gflops": rate / 1e9,
        "matmul_rate_method": _common.MATMUL_RATE_METHOD, "methods": rows})
    report = markdown(json.loads(path.read_text()))
    (_common.RESULTS_DIR / "method_step_time.md").write_text(report)
    print(report)


def markdown(data: dict) -> str:
    """The section of ``bench/RESULTS.md`` from the result file: what ran, then one row per
    method."""
    machine = data["machine"]
    where = (f"{machine['date'][:10]}, {machine['cpu']} ({machine['cores']} cores, "
             f"{machine['torch_threads']} threads, one-minute load average "
             f"{machine['load_average'][0]:.1f} as it started)")
    what = (f"The study's settings ({data['task']}, batch {data['batch_size']}, "
            f"{data['precision']}, seed 0): the prompts on "
            f"`[P][P][P] {data['manual_template']}`, LoRA (r 8, query and value projections) "
            "on the manual template; each step the library's own, interleaved in one process")
    lines = ["## Seconds per training step of each method (`bench/method_step_time.py`)", "",
             f"Command: `{data['command']}`, {where}. {what}. A deep prompt's slots "
             "are not tokens and LoRA's template has none, hence their fewer FLOPs per step. "
             "This machine's matmul rate at the step's shapes: "
             f"{data['matmul_gflops']:.1f} GFLOP/s.", "",
             "| method | trainable parameters | step time / LSTM's (median of rounds) | median "
             "step (s) | GFLOP per step | share of the matmul rate |", "|---|---|---|---|---|---|"]
    lines += [f"| {name} | {row['trainable_parameters']:,} | "
              f"{row['ratio_to_lstm']['median_of_round_ratios']:.2f} | "
              f"{row['median_step_s']:.3f} | {row['train_flops_per_step'] / 1e9:.1f} | "
              f"{row['share_of_matmul_rate']:.2f} |" for name, row in data["methods"].items()]
    return "\n".join(lines) + "\n"

if __name__ == "__main__":
    main()
