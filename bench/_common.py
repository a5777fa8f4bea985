"""The benchmarks' one helper module: everything two bench scripts share lives here.

Not a benchmark itself. Scripts run as ``python bench/<script>.py`` with ptlib installed, so
``bench/`` is on ``sys.path`` and they ``import _common``; no bench script imports another.

- results: machine facts (``ptlib.hardware.machine_info`` plus what bench adds), writing
  ``bench/results/<name>.json`` and reading recorded results under today's metric names;
- timing: every comparison on a shared machine is timed *interleaved*: the contenders take
  turns in short blocks inside one process, so a burst of load from another job hits them
  alike, and results are reported as ratios, never as absolute times from separate runs;
- ptlib's training step as the timed benchmarks run it, and this machine's matmul rate at the
  step's own shapes;
- the lent-GPU scripts' model shapes and arguments;
- the PEFT side of ``peft_vs_ptlib.py``'s step-time comparison (``gpu_peft_ratio.py`` runs the
  same on a GPU; ``memory.py`` measures PEFT's training step).
"""

import argparse
import json
import os
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# after the offline switches
import torch  # noqa: E402
from transformers import LlamaConfig, PreTrainedTokenizerFast  # noqa: E402

import ptlib  # noqa: E402
from ptlib import hardware  # noqa: E402
from ptlib.course.runs import summarise  # noqa: E402
from ptlib.encoders import PromptEncoder, build_encoder  # noqa: E402
from ptlib.legacy import RENAMED_KEYS  # noqa: E402
from ptlib.packing import pack  # noqa: E402
from ptlib.precision import resolve_precision  # noqa: E402
from ptlib.provenance import ptlib_fingerprint as ptlib_fingerprint  # noqa: E402  (re-exported)
from ptlib.template import SLOT, Template, encode_target, parse_template  # noqa: E402
from ptlib.training import TrainConfig, batch_facts, training_step  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"


# ---------------------------------------------------------------------------------------------
# Results: machine facts, writing and reading them.
# ---------------------------------------------------------------------------------------------


def machine_info() -> dict:
    """``ptlib.hardware.machine_info`` (CPU, flags, cores, threads, versions, date, load) plus
    the version of PEFT, which the benchmarks compare against (None where it is absent)."""
    try:
        import peft

        peft_version = peft.__version__
    except ImportError:
        peft_version = None
    return hardware.machine_info() | {"peft": peft_version}


def write_result(name: str, data: dict) -> Path:
    """Write ``bench/results/<name>.json`` (with machine facts) and return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {"benchmark": name, "machine": machine_info()} | data
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path.relative_to(BENCH_DIR.parent)}")
    return path


# Results recorded before the metric was named exact match keep its old names (they are data):
# ``ptlib.legacy.RENAMED_KEYS`` holds those names, and bench's keys put these words before or
# after them ("manual_test_...", "..._ptlib").
_RECORDED_PREFIXES = ("manual_", "last_", "average_", "train_", "majority_")
_RECORDED_SUFFIXES = ("_ptlib", "_peft_style")
RECORDED_KEYS = (RENAMED_KEYS
                 | {p + old: p + new for old, new in RENAMED_KEYS.items()
                    for p in _RECORDED_PREFIXES}
                 | {old + s: new + s for old, new in RENAMED_KEYS.items()
                    for s in _RECORDED_SUFFIXES})


def _renamed(value):
    if isinstance(value, dict):
        return {RECORDED_KEYS.get(key, key): _renamed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_renamed(item) for item in value]
    return value


def read_result(path: Path) -> dict | None:
    """A recorded result (JSON) with every key in today's name (``RECORDED_KEYS``), or None
    where there is no such file."""
    return _renamed(json.loads(path.read_text())) if path.exists() else None


# ---------------------------------------------------------------------------------------------
# Timing: interleaved contenders, their ratios, summaries.
# ---------------------------------------------------------------------------------------------


def interleave(contenders: dict[str, Callable[[int], list[float]]], rounds: int, block: int,
               warmup: int = 1) -> dict[str, list[list[float]]]:
    """Time contenders in turns: each round runs ``block`` steps of every contender in order.

    ``contenders[name](n)`` runs n steps and returns n per-step durations in seconds. The
    first ``warmup`` steps of each contender are run once before the timed rounds and dropped.
    The order inside a round alternates direction each round (A B C, C B A, ...) so no
    contender always follows the same one. Returns, per contender, one list of durations per
    round.
    """
    names = list(contenders)
    if warmup:
        for name in names:
            contenders[name](warmup)
    times: dict[str, list[list[float]]] = {name: [] for name in names}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            times[name].append(list(contenders[name](block)))
        print(f"  round {r + 1}/{rounds} done", flush=True)
    return times


def ratio_stats(numerator: list[list[float]], denominator: list[list[float]]) -> dict:
    """Ratio of two contenders' step times from interleaved rounds.

    ``median_of_round_ratios``: per round, mean(A) / mean(B), then the median over rounds (the
    headline: each round's pair ran close together in time). ``ratio_of_medians``: median
    step of A over median step of B over all steps. Both step medians are reported too.
    """
    per_round = [statistics.fmean(a) / statistics.fmean(b)
                 for a, b in zip(numerator, denominator, strict=True)]
    flat_a = [t for block in numerator for t in block]
    flat_b = [t for block in denominator for t in block]
    return {
        "median_of_round_ratios": statistics.median(per_round),
        "round_ratios": per_round,
        "ratio_of_medians": statistics.median(flat_a) / statistics.median(flat_b),
        "median_step_s": [statistics.median(flat_a), statistics.median(flat_b)],
    }


class Stopwatch:
    """``with Stopwatch() as w: ...`` then ``w.seconds``."""

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        return False


def mean_sd(values: list[float]) -> dict:
    """``ptlib.course.runs.summarise`` (mean, sample sd, min, max, n) plus the values
    themselves."""
    return summarise(values) | {"values": list(values)}


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a wall-clock timer measures it; nothing on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------
# ptlib's training step as the timed benchmarks run it.
# ---------------------------------------------------------------------------------------------

SPEED_TEXT = " {x} ->"       # the text after PEFT's virtual tokens (ANCHORS' measurement)
SPEED_SLOTS = 9              # virtual tokens in the step-time comparison
SPEED_TEMPLATE = SLOT * SPEED_SLOTS + SPEED_TEXT  # the same token sequence as a ptlib template
WORKLOAD_SIZES = {"train": 16, "eval": 32, "score": 16}  # facts per batch (roofline.py)
COURSE_TEMPLATE = "[P][P][P] {x} [P][P][P]"  # the course's (3, x, 3) layout


def lstm_trainer(lm: ptlib.LM, template: Template) -> tuple[PromptEncoder, torch.optim.Optimizer]:
    """ptlib's default encoder (LSTM, seed 0) for ``template`` on the LM's device, and its
    AdamW at lr 1e-3: what every timed ``training_step`` trains."""
    encoder = build_encoder("lstm", template.num_slots, lm.embeddings, seed=0).to(lm.device)
    return encoder, torch.optim.AdamW(encoder.parameters(), lr=1e-3)


def timed_steps(lm: ptlib.LM, rows, steps: int, warmup: int) -> float:
    """Mean seconds of ``steps`` of ptlib's own ``training_step`` on ``rows`` (LSTM, bf16,
    ``COURSE_TEMPLATE``) after ``warmup`` steps (kernel selection, compilation)."""
    template = parse_template(COURSE_TEMPLATE)
    encoder, optimizer = lstm_trainer(lm, template)
    for step in range(warmup + steps):
        if step == warmup:
            synchronize(lm.device)
            started = time.perf_counter()
        training_step(lm, template, [rows], encoder, optimizer, precision="bf16")
    synchronize(lm.device)
    return (time.perf_counter() - started) / steps


def _matmul_seconds(shapes: list[tuple[int, int, int]], dtype: torch.dtype,
                    device: torch.device, repeats: int) -> float:
    """Median seconds of one pass of (m, k) @ (k, n) products at ``shapes``, after a warm-up."""
    operands = [(torch.randn(m, k, dtype=dtype, device=device),
                 torch.randn(k, n, dtype=dtype, device=device)) for m, k, n in shapes]
    timings = []
    for _ in range(repeats + 1):  # the first round warms the kernels up and is dropped
        synchronize(device)
        started = time.perf_counter()
        for a, b in operands:
            a @ b
        synchronize(device)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings[1:])


# Recorded with every result that divides by ``matmul_rate``: results without it were measured
# by the earlier rate, which timed one layer's products beside the head's unweighted.
MATMUL_RATE_METHOD = "layer-weighted"


def matmul_rate(lm: ptlib.LM, batch, dtype: torch.dtype, repeats: int = 5) -> float:
    """GFLOP/s of the matrix multiplies a forward of this batch runs, at their shapes and in
    their mix: each projection of one layer at (R*C, d), the packed tokens
    (``ptlib.packing``), weighted by the number of layers, and the head at (B*Ty, d), the
    target positions, once. (Timing one layer beside the head without the weighting would let
    the head, a thin product that streams the whole (d, V) matrix, dominate the rate.)"""
    config = lm.model.config
    d, ff = config.hidden_size, config.intermediate_size
    kv = config.num_key_value_heads * (d // config.num_attention_heads)
    rows, targets = pack(batch).source.numel(), batch.target_ids.numel()
    layer = [(rows, d, d), (rows, d, kv), (rows, d, kv), (rows, d, d), (rows, d, ff),
             (rows, d, ff), (rows, ff, d)]
    head = [(targets, d, config.vocab_size)]
    layers = config.num_hidden_layers
    flops = layers * sum(2 * m * k * n for m, k, n in layer) + 2 * targets * d * config.vocab_size
    seconds = (layers * _matmul_seconds(layer, dtype, lm.device, repeats)
               + _matmul_seconds(head, dtype, lm.device, repeats))
    return flops / seconds / 1e9


# ---------------------------------------------------------------------------------------------
# The lent-GPU scripts: model shapes from .gpu_assets/, their common arguments.
# ---------------------------------------------------------------------------------------------

DENSE_BF16_PEAK = 989e12  # H100/H200 SXM dense bf16 tensor-core peak, FLOP/s


def smollm2_tokenizer(assets: Path) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_file=str(assets / "tokenizer.json"),
                                   eos_token="<|im_end|>", pad_token="<|im_end|>")


def smollm2_config(assets: Path) -> LlamaConfig:
    return LlamaConfig(**json.loads((assets / "config.json").read_text()))


def llama_1b_config(vocab: int) -> LlamaConfig:
    return LlamaConfig(vocab_size=vocab, hidden_size=2048, intermediate_size=8192,
                       num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                       max_position_embeddings=2048, tie_word_embeddings=True)


def gpu_parser() -> argparse.ArgumentParser:
    """The arguments of every single-GPU script: ``--assets DIR`` (SmolLM2's config.json and
    tokenizer.json), ``--out FILE.json`` and ``--device`` (cuda; cpu for a smoke test)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--assets", type=Path, required=True)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--device", default="cuda")
    return parser


# ---------------------------------------------------------------------------------------------
# PEFT side: adapters on a second copy of the model, batches, the training step; and the
# interleaved step-time comparison ptlib / PEFT.
# ---------------------------------------------------------------------------------------------

MATCHED_HIDDEN = 128         # PEFT encoder_hidden_size for the matched-width comparison


def split_prefix_layout(template: str) -> tuple[int, Template]:
    """``"[P]" * L + text`` -> (L, text as a slot-free Template). PEFT can only prepend."""
    parsed = parse_template(template)
    count = 0
    while count < len(parsed.pieces) and parsed.pieces[count] == SLOT:
        count += 1
    rest = "".join(parsed.pieces[count:])
    if SLOT in parsed.pieces[count:]:
        raise ValueError(f"PEFT can only prepend virtual tokens; {template!r} has inner slots")
    return count, parse_template(rest)


class PeftHarness:
    """One ``PeftModelForCausalLM`` over its own copy of the LM; adapters added per run."""

    def __init__(self, base_model: torch.nn.Module):
        self.base = base_model
        self.model = None

    def add(self, name: str, encoder: str, hidden: int | None, num_virtual: int, seed: int):
        """Add a P-Tuning adapter (seeded like a user would: torch.manual_seed) and make it
        active. Returns its trainable parameters."""
        from peft import PromptEncoderConfig, get_peft_model

        config = PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=num_virtual,
                                     encoder_reparameterization_type=encoder.upper(),
                                     encoder_hidden_size=hidden)
        torch.manual_seed(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.model is None:
                self.model = get_peft_model(self.base, config, adapter_name=name)
            else:
                self.model.add_adapter(name, config)
        self.model.to(self.base.device)  # the new prompt encoder joins the LM's device
        self.use(name)
        return list(self.model.prompt_encoder[name].parameters())

    def use(self, name: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model.set_adapter(name)

    def remove(self, name: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model.delete_adapter(name)

    def encoder(self, name: str) -> torch.nn.Module:
        return self.model.prompt_encoder[name]

    @torch.no_grad()
    def prompt_vectors(self) -> torch.Tensor:
        """The active adapter's virtual-token vectors: (L, d)."""
        return self.model.get_prompt(batch_size=1)[0].detach().float().clone()


def peft_batch(tokenizer, text: Template, facts: list[ptlib.Fact],
               device: torch.device | str = "cpu") -> dict:
    """Right-padded prompt + target ids with labels -100 off the target (the standard recipe),
    on ``device``.

    The prompt text and the target are tokenised separately, exactly as ptlib does, so both
    libraries see the same token ids.
    """
    rows = []
    for fact in facts:
        prompt = tokenizer(text.render(fact.x), add_special_tokens=False).input_ids
        rows.append((prompt, encode_target(tokenizer, fact.y)))
    width = max(len(p) + len(t) for p, t in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (prompt, target) in enumerate(rows):
        ids = prompt + target
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention[i, : len(ids)] = 1
        labels[i, len(prompt) : len(ids)] = torch.tensor(target)
    return {"input_ids": input_ids.to(device), "attention_mask": attention.to(device),
            "labels": labels.to(device)}


def peft_step(harness: PeftHarness, optimizer, params, tokenizer, text: Template,
              facts: list[ptlib.Fact]) -> float:
    """One standard PEFT training step; returns the loss (mean over target tokens)."""
    batch = peft_batch(tokenizer, text, facts, harness.model.device)
    loss = harness.model(**batch).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def speed_variants(quick: bool) -> list[dict]:
    """Each variant: an encoder kind and, per library, its hidden size (None: the default)."""
    rows = [
        # PEFT's LSTM hidden h is per direction (output 2h); ptlib's is the total (h/2 each
        # way), so PEFT h=128 and ptlib 256 are the same network.
        {"key": "mlp_matched", "encoder": "mlp", "peft_hidden": MATCHED_HIDDEN,
         "ptlib_hidden": MATCHED_HIDDEN},
        {"key": "lstm_matched", "encoder": "lstm", "peft_hidden": MATCHED_HIDDEN,
         "ptlib_hidden": 2 * MATCHED_HIDDEN},
        {"key": "mlp_default", "encoder": "mlp", "peft_hidden": None, "ptlib_hidden": None},
        {"key": "lstm_default", "encoder": "lstm", "peft_hidden": None, "ptlib_hidden": None},
    ]
    return rows[:2] if quick else rows


def ptlib_contender(lm, template, facts, dev, encoder, hidden, precision, batch_size, lr):
    """Run n steps of ``ptlib.train`` and return n per-step durations.

    One extra first step is run and dropped (it follows encoder construction and the step-0
    dev evaluation); durations are differences of ``history.seconds``.
    """
    state = {"seed": 0}

    def run(n: int) -> list[float]:
        config = TrainConfig(encoder=encoder, hidden_size=hidden, steps=n + 1,
                             batch_size=batch_size, lr=lr, eval_every=10_000,
                             precision=precision, seed=state["seed"])
        state["seed"] += 1
        result = ptlib.train(lm, template, facts, dev, config, show_progress=False)
        seconds = result.history.seconds
        return [b - a for a, b in zip(seconds[:-1], seconds[1:], strict=True)]

    return run


def peft_contender(harness, name, tokenizer, text, facts, lr, batch_size):
    """Run n standard PEFT steps on adapter ``name``; the batches follow ptlib's order."""
    state = {"step": 0}
    params = [p for p in harness.encoder(name).parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    order = TrainConfig(batch_size=batch_size)

    def run(n: int) -> list[float]:
        harness.use(name)
        harness.model.train()
        out = []
        for _ in range(n):
            batch = batch_facts(facts, order, state["step"], 0)
            start = time.perf_counter()
            peft_step(harness, optimizer, params, tokenizer, text, batch)
            out.append(time.perf_counter() - start)
            state["step"] += 1
        return out

    return run


def step_time(lm, harness, task, quick, batch_size, lr, rounds, block) -> dict:
    """Seconds per training step, ptlib (fp32 and bf16) over PEFT, for each of
    ``speed_variants``, all contenders interleaved (``interleave``, ``ratio_stats``)."""
    facts, dev = task.split("train"), task.split("dev")[:1]
    default_precision = resolve_precision(ptlib.TrainConfig().precision)
    template = SPEED_TEMPLATE
    num_virtual, text = split_prefix_layout(template)
    contenders, params = {}, {}
    for v in speed_variants(quick):
        name = f"peft_{v['key']}"
        harness.add(name, v["encoder"], v["peft_hidden"], num_virtual, seed=0)
        params[name] = sum(p.numel() for p in harness.encoder(name).parameters())
        contenders[name] = peft_contender(harness, name, lm.tokenizer, text, facts, lr,
                                          batch_size)
        encoder = ptlib.build_encoder(v["encoder"], num_virtual, lm.embeddings, 0,
                                      hidden_size=v["ptlib_hidden"])
        for precision in ("fp32", "bf16"):
            params[f"ptlib_{v['key']}_{precision}"] = sum(p.numel() for p in encoder.parameters())
            contenders[f"ptlib_{v['key']}_{precision}"] = ptlib_contender(
                lm, template, facts, dev, v["encoder"], v["ptlib_hidden"], precision,
                batch_size, lr)
    print(f"step time: {len(contenders)} contenders, {rounds} rounds of {block} steps",
          flush=True)
    times = interleave(contenders, rounds=rounds, block=block, warmup=1)
    ratios = {}
    for v in speed_variants(quick):
        for precision in ("fp32", "bf16"):
            ratios[f"{v['key']}_{precision}"] = ratio_stats(
                times[f"ptlib_{v['key']}_{precision}"], times[f"peft_{v['key']}"])
    if not quick:
        # Each library as shipped: ptlib's default (LSTM, hidden d, precision "auto", resolved:
        # fp32 since bf16 became opt-in; bf16 where native in results recorded before) against
        # PEFT's default (MLP, hidden d, fp32).
        ratios["defaults_vs_defaults"] = ratio_stats(
            times[f"ptlib_lstm_default_{default_precision}"], times["peft_mlp_default"])
    for v in speed_variants(quick):
        harness.remove(f"peft_{v['key']}")
    return {"task": task.name, "template_ptlib": template, "peft_text": text.text,
            "ptlib_default_precision": default_precision,
            "num_virtual_tokens": num_virtual, "batch_size": batch_size, "lr": lr,
            "rounds": rounds, "block": block, "variants": speed_variants(quick),
            "encoder_params": params, "times": times, "ratios_ptlib_over_peft": ratios}
