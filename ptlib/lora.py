"""LoRA through PEFT: the fine-tuning reference row beside P-Tuning, on the same objective.

A deep copy of the frozen LM (the caller's ``lm.model`` is never touched) gets low-rank
adapters through ``peft.LoraConfig`` and ``peft.get_peft_model``: each target module's weight W
(out, in) acts as W + (alpha / r) B A, with A (r, in) drawn from the seed and B (out, r) zero,
so training starts at the frozen model exactly. It is trained as a prompt is
(``ptlib.training``): the mean over a batch of -log P(y | x) under a manual template, batches
from ``ptlib.training.batch_facts`` (the same per-epoch seeded order, so P-Tuning and LoRA at
one seed see the same facts at every step), AdamW with gradient clipping, a dev evaluation at
step 0 and every ``eval_every`` steps, the best state on dev kept (exact match, then -NLL),
optional patience. Every score comes from ``ptlib.objective.evaluate`` run on the adapted model
wrapped in an ``LM``, so it is computed as every other row's is.

Default target modules, the attention's query and value projections where the model has them
(the first group its decoder layers hold, ``TARGET_GROUPS``): ``q_proj`` + ``v_proj`` (Llama,
SmolLM2, Mistral, Qwen, Gemma, OPT), ``qkv_proj`` (Phi-3: q, k and v fused), ``c_attn`` (GPT-2:
fused, so k is adapted too) and ``query_key_value`` (GPT-NeoX, Falcon, BLOOM: fused). Other
models: pass ``target_modules``.

Compute: ``ptlib.flops.train_step_flops`` per step (forward and activation backward through the
whole network, 2 x parameters per token each, plus the adapters' weight gradients); dev
evaluations are not counted. fp32 only. PEFT is an optional dependency (ptlib's ``course``
extra), imported on first use.
"""

import copy
import dataclasses
import math
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ptlib.data import Fact
from ptlib.errors import ConfigError, TrainingError
from ptlib.few_shot import manual_template
from ptlib.flops import total_parameters, train_step_flops, trainable_parameters
from ptlib.history import History
from ptlib.model import LM, decoder_layers
from ptlib.objective import Evaluation, batch_scores, evaluate, make_batch
from ptlib.options import MAX_SEED, check_options, option
from ptlib.progress import end_early, progress
from ptlib.template import Template
from ptlib.training import batch_facts, check_facts

PRECISION = "fp32"  # the only precision LoRA runs at here
TARGET_GROUPS = (("q_proj", "v_proj"), ("qkv_proj",), ("c_attn",), ("query_key_value",))


@dataclass
class LoRAConfig:
    """Everything that decides a LoRA run; a bad value raises ``ConfigError`` naming it."""

    r: int = option(8, "rank of each adapter B A", minimum=1)
    alpha: float = option(16, "the update is scaled by alpha / r", above=0)
    dropout: float = option(0.0, "dropout on each adapter's input while training (0 to <1)",
                            minimum=0)
    target_modules: tuple[str, ...] | None = option(
        None, "names of the linear modules adapted; none: the attention query and value "
              "projections of the model's family (TARGET_GROUPS)")
    steps: int = option(200, "optimizer steps", minimum=1)
    batch_size: int = option(16, "facts per step", minimum=1)
    lr: float = option(1e-3, "AdamW learning rate (constant)", above=0)
    weight_decay: float = option(0.0, "AdamW decoupled weight decay", minimum=0)
    max_grad_norm: float | None = option(1.0, "clip the adapters' gradient norm to this; none "
                                              "for no clipping", above=0)
    eval_every: int = option(25, "steps between dev evaluations (also one at step 0)",
                             minimum=1)
    patience: int | None = option(None, "stop after this many evaluations without a better "
                                        "dev score; none never stops early", minimum=1)
    seed: int = option(0, f"adapter init, dropout and batch order (0 to {MAX_SEED})",
                       minimum=0, maximum=MAX_SEED)
    precision: str = option(PRECISION, "the adapted model's precision: fp32 only")

    def __post_init__(self):
        check_options(self)
        if self.dropout >= 1:
            raise ConfigError(f"dropout must be a number < 1, got {self.dropout!r}")
        if self.precision != PRECISION:
            raise ConfigError(f"precision must be 'fp32', got {self.precision!r}: LoRA here "
                              "trains and scores its own fp32 copy of the model (compare it "
                              "with prompts trained at precision='fp32')")
        self.target_modules = _checked_targets(self.target_modules)

    @property
    def grad_accum(self) -> int:
        """One micro-batch per step (what ``ptlib.training.batch_facts`` reads)."""
        return 1

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _checked_targets(targets) -> tuple[str, ...] | None:
    """``target_modules`` as a tuple of names (a list from JSON is fine), or None."""
    if targets is None:
        return None
    if isinstance(targets, str) or not isinstance(targets, list | tuple):
        raise ConfigError(f"target_modules must be a tuple of module names such as "
                          f"('q_proj', 'v_proj'), or None, got {targets!r}")
    if not targets or not all(isinstance(t, str) and t for t in targets):
        raise ConfigError(f"target_modules must name at least one module, each a non-empty "
                          f"string, got {targets!r}")
    return tuple(targets)


def linear_module_names(model: torch.nn.Module) -> set[str]:
    """The last name of every linear module in the model's decoder layers (``q_proj``,
    ``c_attn``, ...): what a target module may be. GPT-2's ``Conv1D`` counts as linear."""
    from transformers.pytorch_utils import Conv1D

    return {name.rsplit(".", 1)[-1] for name, module in decoder_layers(model).named_modules()
            if isinstance(module, torch.nn.Linear | Conv1D)}


def default_target_modules(model: torch.nn.Module) -> tuple[str, ...]:
    """The first of ``TARGET_GROUPS`` whose names the model's decoder layers all hold."""
    names = linear_module_names(model)
    for group in TARGET_GROUPS:
        if set(group) <= names:
            return group
    raise ConfigError(f"no attention query/value projection found in {type(model).__name__} "
                      f"(looked for {TARGET_GROUPS}): set LoRAConfig.target_modules to some of "
                      f"its linear modules, {sorted(names)}")


def target_modules(model: torch.nn.Module, config: LoRAConfig) -> tuple[str, ...]:
    """The config's target modules, checked against the model, or the model's default."""
    if config.target_modules is None:
        return default_target_modules(model)
    names = linear_module_names(model)
    missing = [t for t in config.target_modules if t not in names]
    if missing:
        raise ConfigError(f"target_modules {missing} are not linear modules of "
                          f"{type(model).__name__}'s decoder layers: choose from "
                          f"{sorted(names)}")
    return config.target_modules


def _peft():
    try:
        import peft
    except ImportError as err:
        raise ConfigError("LoRA needs the peft package: pip install 'peft>=0.13' (it comes "
                          "with ptlib's course extra)") from err
    return peft


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Draw from torch's global RNG seeded with ``seed`` inside, and leave the caller's RNG
    (CPU, and the CUDA device in use) as it was outside."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def adapt(lm: LM, config: LoRAConfig) -> tuple[LM, tuple[str, ...]]:
    """A copy of ``lm`` with fresh LoRA adapters (A drawn from the global RNG: call inside
    ``seeded``), and the target module names. Only the adapters are trainable; the copy stays
    in eval mode (no dropout in the base model, as for a prompt on the frozen LM)."""
    peft = _peft()
    targets = target_modules(lm.model, config)
    settings = peft.LoraConfig(r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout,
                               target_modules=list(targets), bias="none")
    with warnings.catch_warnings():  # transformers' own deprecation notice, raised via PEFT
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing",
                                category=FutureWarning)
        wrapped = peft.get_peft_model(copy.deepcopy(lm.model), settings)
    model = wrapped.get_base_model().float().eval()  # the transformers model, adapters inside
    name = f"{lm.name}+lora(r={config.r}, {'+'.join(targets)})"
    return LM(model, lm.tokenizer, lm.device, name), targets


def _adapter_dropout(model: torch.nn.Module, training: bool) -> None:
    """Switch the adapters' dropout on (training) or off; the base model stays in eval."""
    for name, module in model.named_modules():
        if name.endswith("lora_dropout"):
            module.train(training)


@dataclass
class LoRAResult:
    """What ``train_lora`` returns: the adapted model at its best dev state, and the run."""

    config: LoRAConfig
    template: str
    target_modules: tuple[str, ...]
    lm: LM                     # the adapted copy, holding the best-on-dev adapters
    best_step: int
    best_dev_exact_match: float
    history: History           # per step and per dev evaluation (prompt_norm stays empty)
    trainable_parameters: int  # the adapters: sum over targets of r * (in + out)
    total_parameters: int      # the adapted model, adapters included (tied tensors once)
    train_flops: float         # ``train_step_flops`` summed over the steps taken
    test: Evaluation | None = None  # on ``test_facts``, when given

    def evaluate(self, facts: list[Fact], batch_size: int = 32) -> Evaluation:
        """EM and NLL of the best-on-dev adapted model on ``facts`` (``ptlib.evaluate``)."""
        return evaluate(self.lm, manual_template(self.template), facts,
                        batch_size=batch_size, precision=PRECISION)


class LoRARun:
    """One LoRA run: the adapted model, its optimizer, the history and the best state.
    ``train_lora`` drives it; ``bench/method_step_time.py`` times its ``train_step``."""

    def __init__(self, lm: LM, template: Template, facts: tuple[list[Fact], list[Fact]],
                 config: LoRAConfig):
        self.template, self.config = template, config
        self.train_facts, self.dev_facts = facts
        self.lm, self.targets = adapt(lm, config)
        self.params = {n: p for n, p in self.lm.model.named_parameters() if p.requires_grad}
        self.trainable = trainable_parameters(self.lm.model)
        self.optimizer = torch.optim.AdamW(self.params.values(), lr=config.lr,
                                           weight_decay=config.weight_decay)
        self.history, self.step, self.flops = History(), 0, 0.0
        self.best, self.best_step, self.best_state = (-math.inf, -math.inf), 0, {}
        self.evals_since_best = 0

    def evaluate_dev(self) -> bool:
        """Record a dev evaluation of the current adapters; True when patience has run out."""
        result = evaluate(self.lm, self.template, self.dev_facts, precision=PRECISION)
        self.history.eval_step.append(self.step)
        self.history.dev_exact_match.append(result.exact_match)
        self.history.dev_nll.append(result.nll)
        score = (result.exact_match, -result.nll)
        if score > self.best:
            self.best, self.best_step, self.evals_since_best = score, self.step, 0
            self.best_state = {n: p.detach().clone() for n, p in self.params.items()}
        else:
            self.evals_since_best += 1
        patience = self.config.patience
        return patience is not None and self.evals_since_best >= patience

    def train_step(self) -> float:
        """One AdamW step on the next batch, recorded in the history; returns its loss."""
        facts = batch_facts(self.train_facts, self.config, self.step, 0)
        batch = make_batch(self.lm, self.template, facts)
        self.optimizer.zero_grad(set_to_none=True)
        _adapter_dropout(self.lm.model, True)
        logprob = batch_scores(self.lm, batch, precision=PRECISION).logprob  # (B,)
        _adapter_dropout(self.lm.model, False)
        loss = -logprob.mean()
        if not torch.isfinite(loss):
            raise TrainingError(f"step {self.step + 1}: non-finite loss ({loss.item()}): "
                                "lower the learning rate or enable max_grad_norm")
        loss.backward()
        limit = self.config.max_grad_norm or math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params.values(), limit).item()
        self.optimizer.step()
        self.step += 1
        self.flops += train_step_flops(self.lm.model, batch, self.trainable)
        for name, value in (("step", self.step), ("loss", loss.item()), ("lr", self.config.lr),
                            ("grad_norm", grad_norm)):
            getattr(self.history, name).append(value)
        return loss.item()

    def restore_best(self) -> None:
        """Put the best-on-dev adapter weights back into the model."""
        with torch.no_grad():
            for name, value in self.best_state.items():
                self.params[name].copy_(value)


def _run_to_end(run: LoRARun, bar) -> None:
    """Evaluate at step 0, then step until ``steps`` or patience, evaluating on schedule."""
    config, started = run.config, time.perf_counter()
    run.evaluate_dev()
    while run.step < config.steps:
        loss = run.train_step()
        run.history.seconds.append(time.perf_counter() - started)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}")
        if (run.step % config.eval_every == 0 or run.step == config.steps) \
                and run.evaluate_dev():
            end_early(bar)
            break
    run.restore_best()


def train_lora(lm: LM, template: str | Template, train_facts: list[Fact],
               dev_facts: list[Fact], config: LoRAConfig | None = None,
               test_facts: list[Fact] | None = None, show_progress: bool = True
               ) -> LoRAResult:
    """Fine-tune LoRA adapters on a copy of ``lm`` under the manual ``template`` (see the
    module docstring), keeping the state that scores best on ``dev_facts``; with
    ``test_facts``, the result's ``test`` is that state's evaluation on them. Deterministic
    given ``config.seed`` on CPU; the caller's global RNG is left as it was."""
    config = config or LoRAConfig()
    template = manual_template(template)
    check_facts(train_facts, dev_facts, config)
    bar = progress(total=config.steps, desc=f"train lora r={config.r}, seed {config.seed}",
                   disable=not show_progress)
    with seeded(config.seed, lm.device):
        run = LoRARun(lm, template, (train_facts, dev_facts), config)
        try:
            _run_to_end(run, bar)
        finally:
            bar.close()
    result = LoRAResult(config, template.text, run.targets, run.lm, run.best_step, run.best[0],
                        run.history, run.trainable, total_parameters(run.lm.model), run.flops)
    if test_facts:
        result.test = result.evaluate(test_facts)
    return result
