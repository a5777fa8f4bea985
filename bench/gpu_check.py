"""GPU path check: ptlib end to end on CUDA in bf16, then throughput and MFU.

Run on a CUDA machine: ``python bench/gpu_check.py --assets DIR --out FILE.json``. ``DIR`` holds
SmolLM2's config.json and tokenizer.json (the 540 MB weights do not travel to a lent GPU
machine, so the SmolLM2-shaped model here is random-init: same architecture, same cost).

1. A real training run through ``ptlib.train`` (LSTM encoder in fp32, the frozen LM's weights
   cast to bf16 once): loss before and after, seconds per step, LM unchanged; then the same
   run with ``TrainConfig(compile=True)`` (the opt-in ``torch.compile`` of the decoder layers).
2. bf16 against fp32 on the same prompt: difference in mean NLL.
3. A deep prompt (``encoder="prefix"``: every layer's keys and values, through the model's KV
   cache) and LoRA through PEFT (``ptlib.train_lora``, fp32), each a short real run.
4. Soft-prompt training throughput (tokens/s) and model-FLOPs utilisation for the SmolLM2 shape
   and a ~1B Llama shape at several batch sizes. FLOPs per token: forward 2N plus
   activation-gradient 2N (the LM is frozen, so no weight gradients), N the transformer-body
   parameters, plus the LM head at target positions and attention scores. The frozen LM in
   bf16 (ptlib's default on CUDA); fp32 weights were measured in an earlier run. Model FLOPs
   count real tokens only (``ptlib.flops.useful_flops``).

``--device cpu --quick`` smoke-tests the script on a CPU (few steps, small batches).
"""

import json
import platform
import time

import torch
from _common import (
    COURSE_TEMPLATE,
    DENSE_BF16_PEAK,
    gpu_parser,
    llama_1b_config,
    smollm2_config,
    smollm2_tokenizer,
    timed_steps,
)

from ptlib.data import load_task
from ptlib.flops import useful_flops
from ptlib.lora import LoRAConfig, train_lora
from ptlib.model import random_lm
from ptlib.objective import evaluate, make_batch
from ptlib.precision import resolve_precision
from ptlib.template import parse_template
from ptlib.training import TrainConfig, train

DEEP_TEMPLATE = "[P][P][P] {x}"  # a deep prompt's slots all come first


def throughput(lm, facts, batch_size: int, steps: int = 10, warmup: int = 3) -> dict:
    rows = [facts[i % len(facts)] for i in range(batch_size)]
    batch = make_batch(lm, parse_template(COURSE_TEMPLATE), rows)
    seconds = timed_steps(lm, rows, steps, warmup)
    flops = useful_flops(lm.model, batch, "train")
    return {"batch": batch_size, "seq_len": batch.input_ids.shape[1],
            "seconds_per_step": seconds,
            "tokens_per_s": int(batch.attention_mask.sum()) / seconds,
            "tflops": flops / seconds / 1e12, "mfu": flops / seconds / DENSE_BF16_PEAK,
            "peak_mem_gib": (torch.cuda.max_memory_allocated() / 2**30
                             if lm.device.type == "cuda" else None)}


def lm_checksum(lm) -> float:
    return sum(float(p.double().sum()) for p in lm.model.parameters())


def training_run(lm, task, steps: int, compile_layers: bool, encoder: str = "lstm",
                 template: str = COURSE_TEMPLATE) -> dict:
    """``ptlib.train`` end to end at the defaults (bf16 on CUDA), with or without compile;
    ``encoder="prefix"`` with a prefix template trains a deep prompt (every layer's keys and
    values, run as the model's KV cache)."""
    before = lm_checksum(lm)
    config = TrainConfig(encoder=encoder, steps=steps, batch_size=16, lr=3e-3,
                         eval_every=max(1, steps // 3), precision="auto", compile=compile_layers)
    started = time.perf_counter()
    result = train(lm, template, task.split("train"), task.split("dev"), config,
                   show_progress=False)
    seconds = time.perf_counter() - started
    tail = min(10, steps)
    return {"model": lm.name, "encoder": encoder, "template": template,
            "precision": resolve_precision("auto"),
            "compile": compile_layers, "steps": config.steps,
            "loss_first": sum(result.history.loss[:tail]) / tail,
            "loss_last": sum(result.history.loss[-tail:]) / tail,
            "seconds_per_step_incl_evals_and_compile": seconds / config.steps,
            "dev_em": result.history.dev_exact_match, "prompt": result.prompt,
            "lm_unchanged": lm_checksum(lm) == before,
            "lm_grads_none": all(p.grad is None for p in lm.model.parameters())}


def lora_run(lm, task, steps: int) -> dict:
    """LoRA through PEFT (``ptlib.train_lora``, fp32, r 8 on q and v) end to end on the device:
    it adapts a copy, so the frozen LM must come out unchanged."""
    before = lm_checksum(lm)
    started = time.perf_counter()
    result = train_lora(lm, "The capital of {x} is", task.split("train"), task.split("dev"),
                        LoRAConfig(steps=steps, batch_size=16, eval_every=max(1, steps // 3)),
                        show_progress=False)
    seconds = time.perf_counter() - started
    return {"model": lm.name, "method": "lora", "steps": steps,
            "trainable_parameters": result.trainable_parameters,
            "train_tflops": result.train_flops / 1e12,
            "seconds_per_step_incl_evals": seconds / steps,
            "dev_em": result.history.dev_exact_match,
            "lm_unchanged": lm_checksum(lm) == before}


def training_section(args, task, tokenizer, steps: int, report: dict) -> None:
    """A training run eager and compiled, then its prompt's dev NLL at bf16 against fp32."""
    report["training_runs"] = []
    for compiled in (False, True):  # a fresh model each: compile_layers works in place
        lm = random_lm(smollm2_config(args.assets), tokenizer, seed=0, device=args.device,
                       name="smollm2-135m-shape (random init)")
        run = training_run(lm, task, steps, compiled)
        prompt = run.pop("prompt").to(lm.device)
        report["training_runs"].append(run)
        print(json.dumps(run), flush=True)
    dev = task.split("dev")
    template = parse_template(COURSE_TEMPLATE)
    fp32 = evaluate(lm, template, dev, prompt=prompt, precision="fp32").nll
    bf16 = evaluate(lm, template, dev, prompt=prompt, precision="bf16").nll
    report["bf16_vs_fp32_dev_nll"] = {"fp32": fp32, "bf16": bf16,
                                      "relative_difference": abs(bf16 - fp32) / abs(fp32)}
    print(json.dumps(report["bf16_vs_fp32_dev_nll"]), flush=True)


def deep_and_lora_section(args, task, tokenizer, steps: int, report: dict) -> None:
    """A deep-prompt run and a LoRA run on one random-init model of SmolLM2's shape."""
    lm = random_lm(smollm2_config(args.assets), tokenizer, seed=0, device=args.device,
                   name="smollm2-135m-shape (random init)")
    deep = training_run(lm, task, steps, False, encoder="prefix", template=DEEP_TEMPLATE)
    deep.pop("prompt")
    report["deep_prompt_run"] = deep
    print(json.dumps(deep), flush=True)
    report["lora_run"] = lora_run(lm, task, steps)
    print(json.dumps(report["lora_run"]), flush=True)


def throughput_section(args, task, tokenizer, report: dict) -> None:
    """Training throughput and MFU in bf16 at SmolLM2's shape and a 1B Llama shape, by
    batch size (one shape and one size with ``--quick``); the report is saved after each."""
    on_cuda = torch.device(args.device).type == "cuda"
    report["throughput"] = []
    facts = task.split("train")
    shapes = [("smollm2-135m", smollm2_config(args.assets), [16, 128, 512, 2048]),
              ("llama-1b", llama_1b_config(len(tokenizer)), [16, 128, 512, 1024, 2048])]
    for name, shape, sizes in shapes[:1] if args.quick else shapes:
        model = random_lm(shape, tokenizer, seed=0, device=args.device, dtype=torch.bfloat16,
                          name=name)
        params = sum(p.numel() for p in model.model.parameters())
        for size in sizes[:1] if args.quick else sizes:
            if on_cuda:
                torch.cuda.reset_peak_memory_stats()
            row = {"model": name, "params": params, "weights": "torch.bfloat16"}
            row |= throughput(model, facts, size, steps=1 if args.quick else 10)
            report["throughput"].append(row)
            print(json.dumps(row), flush=True)
            if args.out:
                args.out.write_text(json.dumps(report, indent=2))
        del model
        if on_cuda:
            torch.cuda.empty_cache()


def main() -> None:
    parser = gpu_parser()
    parser.add_argument("--train-steps", type=int, default=120)
    parser.add_argument("--quick", action="store_true", help="a smoke test for a CPU")
    args = parser.parse_args()
    on_cuda = torch.device(args.device).type == "cuda"
    report = {"gpu": torch.cuda.get_device_name(0) if on_cuda else "cpu",
              "torch": torch.__version__, "python": platform.python_version()}
    import transformers
    report["transformers"] = transformers.__version__
    print(json.dumps(report), flush=True)
    task = load_task("capital_of")
    tokenizer = smollm2_tokenizer(args.assets)
    steps = 3 if args.quick else args.train_steps
    training_section(args, task, tokenizer, steps, report)
    deep_and_lora_section(args, task, tokenizer, steps, report)
    throughput_section(args, task, tokenizer, report)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))

if __name__ == "__main__":
    main()
