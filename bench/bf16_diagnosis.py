"""Which part of training through the bf16 copy of the frozen LM loses, and what fixes it?

Precision VARIANTS of the frozen LM's forward, built from the fp32 model without editing
ptlib: ``ptlib.objective.frozen_model`` is patched so that ``precision="bf16"`` returns the
variant chosen with ``use_variant`` (``precision="fp32"`` stays the model as loaded), so
``ptlib.train.train``, ``training_step`` and ``evaluate`` run the variant unchanged.

    fp32                      the model as loaded (reference)
    bf16_cast                 today's bf16: ``LM.weights_in(bf16)``, eager attention; stream,
                              norms, attention, head and the gradient all bf16
    autocast                  fp32 weights (eager attention) under torch.autocast(cpu, bf16)
    bf16_matmul_fp32_stream   every decoder Linear holds a bf16 weight copy, casts its input
                              to bf16 and returns fp32; stream, norms, RoPE, attention
                              (scores, softmax, P@V) and the LM head are fp32
    bf16_matmul_all           as above but the LM head is a bf16 Linear too (bf16 logits)
    bf16_fp32_head            bf16_cast with the final RMSNorm and LM head in fp32
    bf16_fp32_residual        the bf16 decoder layers (norms, attention, MLP all bf16) but the
                              residual stream between them is fp32: x += f(x.to(bf16)).float();
                              final norm and head bf16 (as bf16_cast)
    bf16_fp32_residual_head   bf16_fp32_residual with the final norm and head in fp32
    stream_bf16_attn          bf16_matmul_fp32_stream with the attention core in bf16 (q, k, v
                              cast to bf16 after RoPE; scores, softmax output, P@V in bf16)
    stream_bf16_norm          bf16_matmul_fp32_stream with every RMSNorm run in bf16 (its
                              fp32 input rounded to bf16, the bf16 norm, bf16 output)
    bf16_fp32_attn            bf16_cast with only the attention core in fp32 (q, k, v cast to
                              fp32 after the bf16 RoPE; scores, softmax, P@V fp32; output
                              cast back to bf16 for o_proj)
    stream_bf16_mlp           bf16_matmul_fp32_stream with gate/up returning bf16, so
                              SiLU(gate) * up is computed in bf16
    fp32_input_round          (a sensitivity floor, not a candidate) the fp32 model with H_0
                              rounded to bf16 values in the forward only: how much the fp32
                              gradient moves under a bf16-sized perturbation of its input

Subcommands (each appends finished units to bench/results/bf16_diagnosis.jsonl and skips
units already there):

    diagnose   loss difference, gradient cosine and relative gradient-norm error w.r.t. the
               (L, d) prompt, against fp32, at the LSTM's initial prompt and after 20 and 60
               fp32 training steps (seed 0), on batches of element_symbol and capital_of
    train      the course recipe (LSTM, 60 steps, batch 8, lr 3e-3, eval_every 10, template
               [P][P][P] {x} [P][P][P]) per (relation, seed, variant); best-on-dev prompt scored
               on test at fp32 and at the variant's own precision, per-fact outcomes kept
    compare    paired differences vs fp32 (ptlib.stats) from the recorded training units
    speed      interleaved timing of one training step (batch 16 of capital_of, LSTM)

    .venv/bin/python bench/bf16_diagnosis.py diagnose --emulate   # from the repository root
"""

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

torch.set_num_threads(1)

from _common import RESULTS_DIR, interleave, ratio_stats  # noqa: E402

import ptlib  # noqa: E402
import ptlib.objective as objective  # noqa: E402
from ptlib import TrainConfig, load_lm, stats, train  # noqa: E402
from ptlib.data import load_task as _load_task  # noqa: E402
from ptlib.encoders import build_encoder  # noqa: E402
from ptlib.template import parse_template  # noqa: E402
from ptlib.training import training_step  # noqa: E402

BF16 = torch.bfloat16
aten = torch.ops.aten
TEMPLATE = "[P][P][P] {x} [P][P][P]"
RECIPE = {"encoder": "lstm", "steps": 60, "batch_size": 8, "lr": 3e-3, "eval_every": 10}
OUT = RESULTS_DIR / "bf16_diagnosis.jsonl"
VARIANTS = ("fp32", "bf16_cast", "autocast", "bf16_matmul_fp32_stream", "bf16_matmul_all",
            "bf16_fp32_head", "bf16_fp32_residual", "bf16_fp32_residual_head",
            "stream_bf16_attn", "stream_bf16_norm", "stream_bf16_mlp", "bf16_fp32_attn",
            "fp32_input_round")


DATA_DIR = Path(__file__).resolve().parent.parent / "data"  # this checkout's tasks


def load_task(name: str):
    return _load_task(name, data_dir=DATA_DIR)


# ----------------------------------------------------------------------------- mechanisms

class BF16Linear(nn.Module):
    """A Linear run as a bf16 matmul inside an fp32 network: the weight (and bias) is a bf16
    copy made once; the input is cast to bf16, multiplied (fp32 accumulation inside the
    kernel, result rounded to bf16) and the result cast to ``out_dtype`` (fp32). Backward:
    the incoming fp32 gradient is cast to bf16, multiplied by the bf16 weight, and the
    input-gradient comes back as fp32 for the fp32 residual stream to accumulate."""

    def __init__(self, linear: nn.Linear, out_dtype: torch.dtype = torch.float32):
        super().__init__()
        self.register_buffer("weight", linear.weight.detach().to(BF16), persistent=False)
        bias = None if linear.bias is None else linear.bias.detach().to(BF16)
        self.register_buffer("bias", bias, persistent=False)
        self.out_dtype = out_dtype
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(BF16), self.weight, self.bias).to(self.out_dtype)


def bf16_linears(module: nn.Module, skip: tuple = ()) -> nn.Module:
    """Replace every nn.Linear under ``module`` (but those in ``skip``) by a BF16Linear."""
    for name, child in module.named_children():
        if isinstance(child, nn.Linear) and not any(child is s for s in skip):
            setattr(module, name, BF16Linear(child))
        else:
            bf16_linears(child, skip)
    return module


class FP32Residual(nn.Module):
    """One bf16 decoder layer (norms, attention, MLP in bf16, exactly as in the bf16 copy) but
    with an fp32 residual stream: x = x + attn(norm1(x.bf16)).float(); x = x + mlp(norm2(
    x.bf16)).float(). Isolates the rounding of the residual additions."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, hidden_states, attention_mask=None, position_embeddings=None, **kwargs):
        layer = self.layer
        cos, sin = position_embeddings
        h = layer.input_layernorm(hidden_states.to(BF16))
        attn, _ = layer.self_attn(hidden_states=h, attention_mask=attention_mask,
                                  position_embeddings=(cos.to(BF16), sin.to(BF16)), **kwargs)
        hidden_states = hidden_states + attn.float()
        h = layer.post_attention_layernorm(hidden_states.to(BF16))
        return hidden_states + layer.mlp(h).float()


class RoundInput(nn.Module):
    """``layer`` with its hidden-state input rounded to bf16 values in the forward only (the
    gradient passes unrounded): x + (x.bf16().float() - x).detach()."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, hidden_states, *args, **kwargs):
        rounded = hidden_states.to(BF16).float()
        return self.layer(hidden_states + (rounded - hidden_states).detach(), *args, **kwargs)


class CastIn(nn.Module):
    """``module`` applied to its input cast to ``dtype``."""

    def __init__(self, module: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.module, self.dtype = module, dtype

    def forward(self, x):
        return self.module(x.to(self.dtype))


class Autocast(nn.Module):
    """The model's forward under torch.autocast(cpu, bf16); the hooks ptlib registers go on
    the inner model's decoder and input embedding."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.inner = model

    def get_decoder(self):
        return self.inner.get_decoder()

    def get_input_embeddings(self):
        return self.inner.get_input_embeddings()

    def forward(self, **kwargs):
        with torch.autocast("cpu", dtype=BF16):
            return self.inner(**kwargs)


def _install_bf16_core() -> None:
    """Let an attention module with ``_bf16_core`` set run the eager attention core in bf16:
    q, k, v (after RoPE) and the additive mask cast to bf16, the output cast back to fp32.
    Others (the bf16 copy's eager attention) call the original function unchanged."""
    import transformers.models.llama.modeling_llama as llama

    if getattr(llama.eager_attention_forward, "_bf16_core_patch", False):
        return
    original = llama.eager_attention_forward

    def eager(module, query, key, value, attention_mask, *args, **kwargs):
        if getattr(module, "_fp32_core", False):
            out, weights = original(module, query.float(), key.float(), value.float(),
                                    attention_mask if attention_mask is None
                                    else attention_mask.float(), *args, **kwargs)
            return out.to(BF16), weights
        if not getattr(module, "_bf16_core", False):
            return original(module, query, key, value, attention_mask, *args, **kwargs)
        mask = attention_mask
        if mask is not None and mask.is_floating_point():
            mask = mask.clamp(min=torch.finfo(BF16).min).to(BF16)
        out, weights = original(module, query.to(BF16), key.to(BF16), value.to(BF16), mask,
                                *args, **kwargs)
        return out.float(), weights

    eager._bf16_core_patch = True
    llama.eager_attention_forward = eager


def _eager(model: nn.Module) -> nn.Module:
    model.set_attn_implementation("eager")
    return model


def _copy32(lm) -> nn.Module:
    """A frozen deep copy of the fp32 model."""
    model = copy.deepcopy(lm.model)
    model.eval()
    model.requires_grad_(False)
    return model


def build_variant(lm, name: str) -> nn.Module:
    if name == "fp32":
        return lm.model
    bf16 = lm.weights_in(BF16)  # the bf16 copy ptlib uses (eager attention)
    if name == "bf16_cast":
        return bf16
    if name == "autocast":
        return Autocast(_eager(_copy32(lm)))
    if name in ("bf16_matmul_fp32_stream", "bf16_matmul_all"):
        model = _copy32(lm)  # attention stays the fp32 model's choice (SDPA, fp32)
        bf16_linears(model.model)
        if name == "bf16_matmul_all":
            model.lm_head = BF16Linear(model.lm_head)
        return model
    if name == "bf16_fp32_head":
        model = copy.deepcopy(bf16)
        model.model.norm = CastIn(lm.model.model.norm, torch.float32)  # fp32 norm weights
        model.lm_head = lm.model.lm_head  # the fp32 head (tied to the fp32 embedding)
        return model
    if name in ("bf16_fp32_residual", "bf16_fp32_residual_head"):
        model = _eager(_copy32(lm))  # fp32 embedding, eager (additive float) mask
        model.model.layers = nn.ModuleList(FP32Residual(layer) for layer in bf16.model.layers)
        if name == "bf16_fp32_residual":
            model.model.norm = CastIn(bf16.model.norm, BF16)
            model.lm_head = bf16.lm_head
        return model
    if name in ("stream_bf16_attn", "stream_bf16_norm", "stream_bf16_mlp"):
        model = _copy32(lm)
        if name == "stream_bf16_attn":
            _install_bf16_core()
            _eager(model)  # additive float mask, the eager core (patched per module)
            for layer in model.model.layers:
                layer.self_attn._bf16_core = True
        if name == "stream_bf16_mlp":
            for layer in model.model.layers:
                layer.mlp.gate_proj = BF16Linear(layer.mlp.gate_proj, BF16)
                layer.mlp.up_proj = BF16Linear(layer.mlp.up_proj, BF16)
        if name == "stream_bf16_norm":
            for layer, cast in zip(model.model.layers, bf16.model.layers, strict=True):
                layer.input_layernorm = CastIn(cast.input_layernorm, BF16)
                layer.post_attention_layernorm = CastIn(cast.post_attention_layernorm, BF16)
        bf16_linears(model.model)  # the remaining nn.Linear (skips those already replaced)
        return model
    if name == "bf16_fp32_attn":
        _install_bf16_core()
        model = copy.deepcopy(bf16)  # eager attention, patched per module
        for layer in model.model.layers:
            layer.self_attn._fp32_core = True
        return model
    if name == "fp32_input_round":
        model = _copy32(lm)
        model.model.layers[0] = RoundInput(model.model.layers[0])
        return model
    raise ValueError(f"unknown variant {name!r}")


_MODELS: dict = {}
_CURRENT = {"name": "bf16_cast", "lm": None}
_original_frozen_model = objective.frozen_model


def use_variant(lm, name: str) -> None:
    """From now on ``precision="bf16"`` anywhere in ptlib runs variant ``name``."""
    if name not in _MODELS:
        _MODELS[name] = build_variant(lm, name)
    _CURRENT["name"] = name


def _patched_frozen_model(lm, precision: str):
    if precision == "bf16":
        return _MODELS[_CURRENT["name"]]
    return _original_frozen_model(lm, precision)


objective.frozen_model = _patched_frozen_model


def precision_of(variant: str) -> str:
    return "fp32" if variant == "fp32" else "bf16"


class EmulateBF16Matmul(TorchDispatchMode):
    """bf16 matrix multiplies computed as fp32 multiplies of the same bf16 values, the result
    rounded to bf16 once: what a native bf16 GEMM with fp32 accumulation (oneDNN on AVX512-BF16
    / AMX) returns, up to summation order. Every other op runs as it is (bf16 elementwise ops,
    norms, softmax, casts unchanged). For the ACCURACY runs only: this machine has no native
    bf16 (no avx512_bf16/amx; PyTorch's fallback bf16 GEMM is 8x slower than fp32 here), so
    without it a bf16 training run takes minutes. Active in forward and backward."""

    OPS = {aten.mm.default, aten.addmm.default, aten.bmm.default, aten.baddbmm.default,
           aten.mv.default, aten.addmv.default, aten.dot.default}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.OPS and any(isinstance(a, torch.Tensor) and a.dtype == BF16
                                    for a in args):
            up = [a.float() if isinstance(a, torch.Tensor) and a.dtype == BF16 else a
                  for a in args]
            return func(*up, **kwargs).to(BF16)
        return func(*args, **kwargs)


EMULATE = {"on": False}


def check_emulation(lm, variants: list[str]) -> None:
    """Native bf16 against emulated (EmulateBF16Matmul) on one batch at the step-60 prompt:
    the emulation is faithful when cos(native, emulated) is far closer to 1 than
    cos(native, fp32)."""
    template = parse_template(TEMPLATE)
    prompts = torch.load(RESULTS_DIR / "bf16_diagnosis_prompts.pt")
    facts = load_task("element_symbol").split("train")
    order = torch.randperm(len(facts), generator=torch.Generator().manual_seed(1234)).tolist()
    batch = objective.make_batch(lm, template, [facts[i] for i in order[:16]])
    for pname in ("step60", "step20"):
        loss32, g32 = grad_at(lm, batch, prompts[pname], "fp32")
        for v in variants:
            if v == "fp32":
                continue
            t0 = time.perf_counter()
            loss_n, g_n = grad_at(lm, batch, prompts[pname], v)
            t1 = time.perf_counter()
            with EmulateBF16Matmul():
                loss_e, g_e = grad_at(lm, batch, prompts[pname], v)
            t2 = time.perf_counter()

            def cos(a, b):
                return F.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()
            rec = {"kind": "emucheck", "key": f"{pname}|{v}", "variant": v, "prompt": pname,
                   "loss_native": loss_n, "loss_emulated": loss_e, "loss_fp32": loss32,
                   "cos_native_emulated": cos(g_n, g_e), "cos_native_fp32": cos(g_n, g32),
                   "cos_emulated_fp32": cos(g_e, g32), "seconds_native": t1 - t0,
                   "seconds_emulated": t2 - t1}
            append(rec)
            print(rec, flush=True)


# ----------------------------------------------------------------------------- records

def done_units(kind: str) -> dict:
    units = {}
    if OUT.exists():
        for line in OUT.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if rec.get("kind") == kind:
                units[rec["key"]] = rec
    return units


def append(rec: dict) -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("a") as handle:
        handle.write(json.dumps(rec) + "\n")


def check_import() -> None:
    here = Path(__file__).resolve().parent.parent
    where = Path(ptlib.__file__).resolve()
    if here not in where.parents:
        raise SystemExit(f"ptlib imported from {where}, not from {here}: set PYTHONPATH")


# ----------------------------------------------------------------------------- diagnose

def grad_at(lm, batch, prompt: torch.Tensor, variant: str) -> tuple[float, torch.Tensor]:
    if variant != "fp32":
        use_variant(lm, variant)
    p = prompt.detach().clone().requires_grad_(True)
    logprob = objective.batch_scores(lm, batch, prompt=p, precision=precision_of(variant)).logprob
    loss = -logprob.mean()
    loss.backward()
    return loss.item(), p.grad.detach().clone()


def diagnose(lm, variants: list[str], batches_per_task: int, batch_size: int,
             tasks: tuple[str, ...] = ("element_symbol", "capital_of"),
             prompt_names: tuple[str, ...] = ("step0", "step20", "step60")) -> None:
    done = done_units("diagnose")
    template = parse_template(TEMPLATE)
    # prompts: the LSTM's initial prompt and after 20 and 60 fp32 steps (seed 0, element_symbol)
    prompts_path = RESULTS_DIR / "bf16_diagnosis_prompts.pt"
    if prompts_path.exists():
        prompts = torch.load(prompts_path)
    else:
        task = load_task("element_symbol")
        config = TrainConfig(**RECIPE, seed=0, precision="fp32")
        result = train(lm, TEMPLATE, task.split("train"), task.split("dev"), config,
                       show_progress=False)
        steps = result.history.eval_step
        prompts = {f"step{s}": result.trajectory[steps.index(s)] for s in (0, 20, 60)}
        torch.save(prompts, prompts_path)
    for task_name in tasks:
        facts = load_task(task_name).split("train")
        generator = torch.Generator().manual_seed(1234)
        order = torch.randperm(len(facts), generator=generator).tolist()
        for b in range(batches_per_task):
            chosen = [facts[i] for i in order[b * batch_size:(b + 1) * batch_size]]
            batch = objective.make_batch(lm, template, chosen)
            for pname, prompt in prompts.items():
                if pname not in prompt_names:
                    continue
                ref_loss, ref_grad = None, None
                for variant in ["fp32"] + [v for v in variants if v != "fp32"]:
                    key = f"{task_name}|b{b}|{pname}|{variant}" + ("|emu" if EMULATE["on"]
                                                                    else "")
                    if key in done and variant != "fp32":
                        continue
                    loss, grad = grad_at(lm, batch, prompt, variant)
                    if variant == "fp32":
                        ref_loss, ref_grad = loss, grad
                        if key in done:
                            continue
                    cos = F.cosine_similarity(grad.flatten(), ref_grad.flatten(), dim=0).item()
                    slot_cos = F.cosine_similarity(grad, ref_grad, dim=1).tolist()
                    rel = ((grad - ref_grad).norm() / ref_grad.norm()).item()
                    rec = {"kind": "diagnose", "key": key, "task": task_name, "batch": b,
                           "prompt": pname, "variant": variant, "emulated": EMULATE["on"],
                           "loss": loss,
                           "loss_diff": loss - ref_loss, "grad_cos": cos,
                           "slot_cos": slot_cos, "grad_rel_err": rel,
                           "grad_norm": grad.norm().item(), "ref_grad_norm": ref_grad.norm().item()}
                    append(rec)
                    print(f"{key}: loss {loss:.4f} (diff {loss - ref_loss:+.4f}), cos {cos:.4f}, "
                          f"rel err {rel:.3f}", flush=True)


def diagnose_table(emulated: bool = True) -> list[dict]:
    """Per (variant, prompt): over the (relation, batch) units, the mean |loss diff|, the
    median and minimum gradient cosine, and the median relative gradient error."""
    recs = [r for r in done_units("diagnose").values()
            if bool(r.get("emulated")) == emulated and r["variant"] != "fp32"]
    rows = []
    keys = sorted({(r["variant"], r["prompt"]) for r in recs},
                  key=lambda k: (VARIANTS.index(k[0]) if k[0] in VARIANTS else 99, k[1]))
    for variant, pname in keys:
        sel = [r for r in recs if r["variant"] == variant and r["prompt"] == pname]
        rows.append({"variant": variant, "prompt": pname, "n": len(sel),
                     "mean_abs_loss_diff": statistics.fmean(abs(r["loss_diff"]) for r in sel),
                     "median_grad_cos": statistics.median(r["grad_cos"] for r in sel),
                     "min_grad_cos": min(r["grad_cos"] for r in sel),
                     "median_grad_rel_err": statistics.median(r["grad_rel_err"] for r in sel),
                     "cos_by_unit": {f"{r['task']}|b{r['batch']}": round(r["grad_cos"], 4)
                                     for r in sel}})
    return rows


def markdown_tables() -> str:
    lines = []
    for emulated in (True, False):
        rows = diagnose_table(emulated)
        if not rows:
            continue
        lines += [f"Diagnostics ({'emulated bf16 GEMM' if emulated else 'native bf16 GEMM'}): "
                  "vs fp32, over relation x batch units", "",
                  "| variant | prompt | n | mean abs loss diff | median grad cos | min grad cos "
                  "| median rel grad err |", "|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['variant']} | {r['prompt']} | {r['n']} | "
                         f"{r['mean_abs_loss_diff']:.4f} | {r['median_grad_cos']:.4f} | "
                         f"{r['min_grad_cos']:.4f} | {r['median_grad_rel_err']:.3f} |")
        lines.append("")
    rows = compare()
    if rows:
        lines += ["Training outcomes (test EM; paired over seeds and facts vs fp32-trained, "
                  "fp32-scored)", "",
                  "| relation | variant | scored at | n seeds | variant EM | fp32 EM | "
                  "difference | 95% CI | verdict |", "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['task']} | {r['variant']} | {r['scored_at']} | {r['n_seeds']} | "
                         f"{r['variant_em']:.3f} | {r['fp32_em']:.3f} | {r['difference']:+.3f}"
                         f" | {r['ci'][0]:+.3f} to {r['ci'][1]:+.3f} | {r['verdict']} |")
        lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- train

def train_unit(lm, task, seed: int, variant: str) -> dict:
    started = time.perf_counter()
    if variant != "fp32":
        use_variant(lm, variant)
    config = TrainConfig(**RECIPE, seed=seed, precision=precision_of(variant))
    result = train(lm, TEMPLATE, task.split("train"), task.split("dev"), config,
                   show_progress=False)
    seconds = time.perf_counter() - started
    test32 = result.evaluate(lm, task.split("test"), precision="fp32")
    own = test32 if variant == "fp32" else result.evaluate(lm, task.split("test"),
                                                           precision="bf16")
    return {"kind": "train", "key": train_key(task.name, seed, variant), "task": task.name,
            "seed": seed, "variant": variant, "emulated": EMULATE["on"], "recipe": RECIPE,
            "template": TEMPLATE,
            "test_exact_fp32": [int(h) for h in test32.exact], "test_em_fp32": test32.exact_match,
            "test_exact_own": [int(h) for h in own.exact], "test_em_own": own.exact_match,
            "test_nll_fp32": test32.nll, "best_step": result.best_step,
            "best_dev_em": result.best_dev_exact_match, "dev_em": result.history.dev_exact_match,
            "dev_nll": result.history.dev_nll, "loss": result.history.loss,
            "train_seconds": seconds}


def train_key(task_name: str, seed: int, variant: str) -> str:
    """fp32 units are the same with or without emulation (no bf16 GEMM in them)."""
    emu = "|emu" if EMULATE["on"] and variant != "fp32" else ""
    return f"{task_name}|{seed}|{variant}{emu}"


def run_training(lm, tasks: list[str], seeds: list[int], variants: list[str]) -> None:
    done = done_units("train")
    for task_name in tasks:
        task = load_task(task_name)
        for seed in seeds:
            for variant in variants:
                key = train_key(task_name, seed, variant)
                if key in done:
                    continue
                rec = train_unit(lm, task, seed, variant)
                append(rec)
                print(f"{key}: test EM fp32-scored {rec['test_em_fp32']:.3f}, own "
                      f"{rec['test_em_own']:.3f}, best step {rec['best_step']}, "
                      f"{rec['train_seconds']:.0f} s", flush=True)


def compare(tasks: list[str] | None = None) -> list[dict]:
    """Each variant (native and emulated runs apart) minus fp32, paired over the seeds both
    have and the test facts, scored at fp32 and at the variant's own precision."""
    recs = done_units("train")
    by = {}
    for r in recs.values():
        label = r["variant"] + (" (emulated)" if r.get("emulated") and r["variant"] != "fp32"
                                else "")
        by.setdefault((r["task"], label), {})[r["seed"]] = r
    rows = []
    for task_name in (tasks or sorted({t for t, _ in by})):
        base_runs = by.get((task_name, "fp32"), {})
        labels = sorted((lab for t, lab in by if t == task_name and lab != "fp32"),
                        key=lambda lab: (VARIANTS.index(lab.split()[0]), lab))
        for label in labels:
            runs = by[task_name, label]
            seeds = sorted(set(runs) & set(base_runs))
            if len(seeds) < 2:
                continue
            base = [base_runs[s]["test_exact_fp32"] for s in seeds]
            for scoring in ("fp32", "own"):
                mine = [runs[s][f"test_exact_{scoring}"] for s in seeds]
                d = stats.paired_difference(mine, base)
                rows.append({"task": task_name, "variant": label, "scored_at": scoring,
                             "seeds": seeds, "n_seeds": len(seeds), "variant_em": d.mean_a,
                             "fp32_em": d.mean_b, "difference": d.difference,
                             "ci": [d.low, d.high],
                             "per_seed_em": [statistics.fmean(runs[s][f"test_exact_{scoring}"])
                                             for s in seeds],
                             "fp32_per_seed_em": [statistics.fmean(b) for b in base],
                             "verdict": str(stats.verdict(d, label, "fp32"))})
    return rows


# ----------------------------------------------------------------------------- speed

def speed(lm, variants: list[str], rounds: int, block: int) -> dict:
    template = parse_template(TEMPLATE)
    facts = load_task("capital_of").split("train")
    batches = [facts[i:i + 16] for i in range(0, len(facts) - 15, 16)]

    def contender(variant: str):
        encoder = build_encoder("lstm", template.num_slots, lm.embeddings, 0)
        optimizer = torch.optim.AdamW(encoder.parameters(), lr=3e-3)
        state = {"i": 0}
        if variant != "fp32":
            use_variant(lm, variant)

        def run(n: int) -> list[float]:
            if variant != "fp32":
                use_variant(lm, variant)
            times = []
            for _ in range(n):
                facts16 = batches[state["i"] % len(batches)]
                state["i"] += 1
                start = time.perf_counter()
                training_step(lm, template, [facts16], encoder, optimizer,
                              precision_of(variant), 1.0)
                times.append(time.perf_counter() - start)
            return times
        return run

    times = interleave({v: contender(v) for v in variants}, rounds=rounds, block=block,
                       warmup=2)
    result = {"kind": "speed", "key": f"speed|{time.time():.0f}", "variants": variants,
              "rounds": rounds, "block": block, "threads": torch.get_num_threads(),
              "median_step_s": {v: statistics.median(t for b in times[v] for t in b)
                                for v in variants},
              "fp32_over_variant": {v: ratio_stats(times["fp32"], times[v])
                                    for v in variants if v != "fp32"},
              "times": times}
    append(result)
    for v in variants:
        extra = "" if v == "fp32" else (
            f", fp32/variant {result['fp32_over_variant'][v]['median_of_round_ratios']:.2f}x")
        print(f"{v}: median step {result['median_step_s'][v]:.3f} s{extra}", flush=True)
    return result


# ----------------------------------------------------------------------------- main

def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("diagnose", "train", "compare", "speed", "check",
                                            "check-emu"))
    parser.add_argument("--emulate", action="store_true",
                        help="diagnose/train: bf16 GEMMs emulated in fp32 (EmulateBF16Matmul)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--tasks", default=None, help="relations, comma-separated (default: "
                        "element_symbol; diagnose: element_symbol,capital_of)")
    parser.add_argument("--seeds", default="0-9")
    parser.add_argument("--batches", type=int, default=3, help="diagnose: batches per task")
    parser.add_argument("--prompts", default="step0,step20,step60", help="diagnose: prompts")
    parser.add_argument("--batch-size", type=int, default=16, help="diagnose: facts per batch")
    parser.add_argument("--rounds", type=int, default=6, help="speed: interleaved rounds")
    parser.add_argument("--block", type=int, default=3, help="speed: steps per block")
    args = parser.parse_args(argv)
    check_import()
    variants = args.variants.split(",")
    args.tasks = args.tasks if args.command == "diagnose" else args.tasks or "element_symbol"
    lo, _, hi = args.seeds.partition("-")
    seeds = list(range(int(lo), int(hi or lo) + 1))
    if args.command == "compare":
        for row in compare(args.tasks.split(",")):
            print(f"{row['task']} {row['variant']} scored at {row['scored_at']}: "
                  f"{row['variant_em']:.3f} vs fp32 {row['fp32_em']:.3f}; {row['verdict']}")
        print(markdown_tables())
        return
    lm = load_lm(device="cpu")
    print(f"ptlib from {ptlib.__file__}; threads {torch.get_num_threads()}; emulate "
          f"{args.emulate}", flush=True)
    EMULATE["on"] = args.emulate
    if args.command == "check-emu":
        check_emulation(lm, variants)
        return
    if args.emulate:
        with EmulateBF16Matmul():
            return dispatch(args, lm, variants, seeds)
    return dispatch(args, lm, variants, seeds)


def dispatch(args, lm, variants, seeds) -> None:
    if args.command == "check":
        template = parse_template(TEMPLATE)
        facts = load_task("capital_of").split("train")[:8]
        batch = objective.make_batch(lm, template, facts)
        prompt = build_encoder("lstm", template.num_slots, lm.embeddings, 0).export()
        for v in variants:
            loss, grad = grad_at(lm, batch, prompt, v)
            print(v, loss, grad.norm().item(), flush=True)
    elif args.command == "diagnose":
        diagnose(lm, variants, args.batches, args.batch_size,
                 tuple((args.tasks or "element_symbol,capital_of").split(",")),
                 tuple(args.prompts.split(",")))
    elif args.command == "train":
        run_training(lm, args.tasks.split(","), seeds, variants)
    elif args.command == "speed":
        speed(lm, variants, args.rounds, args.block)


if __name__ == "__main__":
    main()
