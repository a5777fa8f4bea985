"""Train a continuous prompt: the config, the loop, the result with its full history.

The LM stays frozen; only the prompt encoder learns. Each step builds a batch of train facts,
runs the encoder once to get the (L, d) prompt, writes it into every example's slots, and
minimises the mean over examples of -log P(y | x, P). Batches are drawn from a per-epoch
permutation fixed by (seed, epoch), so a resumed run sees exactly the batches it would have.
"""

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ptlib import distributed
from ptlib.checkpoint import load_state, save_state
from ptlib.data import Fact
from ptlib.distributed import Ranks
from ptlib.encoders import ENCODERS, FREE_INITS, FreeVectors, PromptEncoder, build_encoder
from ptlib.errors import ConfigError, TrainingError
from ptlib.model import LM, compile_layers
from ptlib.objective import (
    PRECISIONS,
    Evaluation,
    batch_scores,
    evaluate,
    frozen_model,
    make_batch,
    resolve_precision,
)
from ptlib.options import check_choices, option
from ptlib.progress import end_early, progress
from ptlib.template import Template, parse_template

SCHEDULES = ("constant", "linear", "cosine")
CHECKPOINT_FILE = "checkpoint.safetensors"


# TrainConfig fields added after checkpoints and study records were written, with their
# defaults: left out of a config's identity while at the default, so those still match.
LATER_FIELDS = {"compile": False}


@dataclass
class TrainConfig:
    """Everything that decides a training run; a bad value raises ``ConfigError`` naming it."""

    encoder: str = option("lstm", "prompt encoder", lambda: tuple(ENCODERS))
    init: str = option("normal_rescaled", "free vectors' initial values", FREE_INITS)
    init_phrase: str = option("", "text whose tokens seed the slots when init is phrase")
    hidden_size: int | None = option(None, "lstm/mlp width; none means the model width d")
    steps: int = option(200, "optimizer steps")
    batch_size: int = option(16, "facts per micro-batch")
    grad_accum: int = option(1, "micro-batches per optimizer step")
    lr: float = option(3e-3, "peak AdamW learning rate")
    weight_decay: float = option(0.0, "AdamW decoupled weight decay")
    warmup_steps: int = option(0, "steps of linear warmup from 0 to lr")
    schedule: str = option("constant", "after warmup: constant, or linear/cosine decay to 0",
                           SCHEDULES)
    max_grad_norm: float | None = option(1.0, "clip the encoder's gradient norm to this; none "
                                               "for no clipping")
    eval_every: int = option(25, "steps between dev evaluations (also one at step 0)")
    patience: int | None = option(None, "stop after this many evaluations without a better "
                                        "dev score; none never stops early")
    seed: int = option(0, "encoder init and batch order")
    precision: str = option("auto", "frozen LM: auto (bf16 where native: CUDA, CPUs with "
                                    "AVX512-BF16 or AMX; else fp32), fp32, or bf16 (its weights "
                                    "cast to bf16 once)", PRECISIONS)
    checkpoint_every: int = option(0, "steps between checkpoints when a folder is given; 0 "
                                      "saves at every evaluation")
    compile: bool = option(False, "torch.compile the frozen LM's decoder layers (opt-in: "
                                  "faster steps after a one-time compile; the kernels round "
                                  "differently, so a run ends elsewhere than uncompiled)")

    def __post_init__(self):
        check_choices(self)
        for name in ("steps", "batch_size", "grad_accum", "eval_every"):
            _positive(name, getattr(self, name))
        for name in ("warmup_steps", "checkpoint_every", "seed"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ConfigError(f"{name} must be an integer >= 0, got {getattr(self, name)!r}")
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a positive finite number, got {self.lr!r}")
        if not (isinstance(self.weight_decay, int | float) and self.weight_decay >= 0):
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ConfigError(f"max_grad_norm must be positive or None, got {self.max_grad_norm!r}")
        if self.hidden_size is not None:
            _positive("hidden_size", self.hidden_size)
        if self.patience is not None:
            _positive("patience", self.patience)
        if self.init == "phrase" and self.encoder == "free" and not self.init_phrase.strip():
            raise ConfigError("init 'phrase' needs a non-empty init_phrase")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def identity(self) -> dict:
        """What a checkpoint or a study record is matched on: ``as_dict`` less the
        ``LATER_FIELDS`` that sit at their defaults. ``compile=True`` stays in: compiled
        kernels round differently, and in bf16 a 60-step course run ends elsewhere
        (``bench/compile_cost.py``, seed 0 on capital_of: best dev EM 0.464 uncompiled, 0.536
        compiled)."""
        return _identity(self.as_dict())


def _identity(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in LATER_FIELDS or v != LATER_FIELDS[k]}


def _positive(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


@dataclass
class History:
    """Per-step and per-evaluation records of one run (lists line up by index)."""

    step: list[int] = field(default_factory=list)          # 1-based optimizer step
    loss: list[float] = field(default_factory=list)        # mean -log P(y | x, P) of the batch
    lr: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)   # before clipping
    prompt_norm: list[float] = field(default_factory=list)  # mean L2 norm of the L vectors
    seconds: list[float] = field(default_factory=list)     # wall time since the run started
    eval_step: list[int] = field(default_factory=list)     # 0 is the initial prompt
    dev_p_at_1: list[float] = field(default_factory=list)
    dev_nll: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    """What ``train`` returns: the best-on-dev prompt, the encoder and the full history."""

    config: TrainConfig
    template: str
    encoder: PromptEncoder      # the encoder as it ended (kept so training can go on)
    prompt: torch.Tensor        # (L, d) best-on-dev vectors, fp32 on CPU
    best_step: int
    best_dev_p_at_1: float
    history: History
    trajectory: list[torch.Tensor]  # (L, d) prompt at each evaluation, for pictures

    def evaluate(self, lm: LM, facts: list[Fact], precision: str = "fp32") -> Evaluation:
        """P@1 and NLL of the best prompt on ``facts``."""
        return evaluate(lm, parse_template(self.template), facts,
                        prompt=self.prompt.to(lm.device), precision=precision)


def learning_rate(config: TrainConfig, step: int) -> float:
    """The learning rate used for 0-based ``step``: warmup, then the schedule."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.steps - config.warmup_steps)
    done = (step - config.warmup_steps) / span
    if config.schedule == "linear":
        return config.lr * (1.0 - done)
    if config.schedule == "cosine":
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * done))
    return config.lr


def default_label(config: TrainConfig) -> str:
    """A progress label that tells runs apart: ``train free (normal), seed 2``."""
    init = f" ({config.init})" if config.encoder == "free" else ""
    return f"train {config.encoder}{init}, seed {config.seed}"


def batch_facts(facts: list[Fact], config: TrainConfig, step: int, micro: int) -> list[Fact]:
    """The facts of one micro-batch: a slice of the epoch's permutation, fixed by the seed."""
    start = (step * config.grad_accum + micro) * config.batch_size
    picked, order, order_epoch = [], None, None
    for position in range(start, start + config.batch_size):
        epoch, offset = divmod(position, len(facts))
        if epoch != order_epoch:
            generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
            order, order_epoch = torch.randperm(len(facts), generator=generator), epoch
        picked.append(facts[int(order[offset])])
    return picked


class _Run:
    """The mutable state of one training run, saved and restored as a unit."""

    def __init__(self, lm: LM, template: Template, config: TrainConfig,
                 initial_prompt: torch.Tensor | None = None):
        self.encoder = _initial_encoder(lm, template, config, initial_prompt).to(lm.device)
        self.optimizer = torch.optim.AdamW(self.encoder.parameters(), lr=config.lr,
                                           weight_decay=config.weight_decay)
        self.step = 0
        self.history = History()
        self.trajectory: list[torch.Tensor] = []
        self.best = (-1.0, -math.inf)  # (dev P@1, -dev NLL)
        self.best_step = 0
        self.best_prompt = self.encoder.export()
        self.evals_since_best = 0
        self.elapsed = 0.0

    def state(self) -> tuple[dict, dict]:
        tensors = {f"encoder.{k}": v for k, v in self.encoder.state_dict().items()}
        optim = self.optimizer.state_dict()
        for index, slots in optim["state"].items():
            for key, value in slots.items():
                tensors[f"optim.{index}.{key}"] = torch.as_tensor(value)
        tensors["best_prompt"] = self.best_prompt
        tensors |= {f"trajectory.{i}": t for i, t in enumerate(self.trajectory)}
        meta = {"step": self.step, "history": self.history.as_dict(), "best": list(self.best),
                "best_step": self.best_step, "evals_since_best": self.evals_since_best,
                "elapsed": self.elapsed, "param_groups": optim["param_groups"],
                "trajectory": len(self.trajectory)}
        return tensors, meta

    def restore(self, tensors: dict, meta: dict) -> None:
        prefix = "encoder."
        self.encoder.load_state_dict({k[len(prefix):]: v for k, v in tensors.items()
                                      if k.startswith(prefix)})
        state: dict = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value
        self.optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        self.step = meta["step"]
        self.history = History(**meta["history"])
        self.best = tuple(meta["best"])
        self.best_step = meta["best_step"]
        self.evals_since_best = meta["evals_since_best"]
        self.elapsed = meta["elapsed"]
        self.best_prompt = tensors["best_prompt"]
        self.trajectory = [tensors[f"trajectory.{i}"] for i in range(meta["trajectory"])]


def _initial_encoder(lm: LM, template: Template, config: TrainConfig,
                     initial_prompt: torch.Tensor | None) -> PromptEncoder:
    """The config's encoder, or free vectors starting from ``initial_prompt`` (L, d)."""
    if initial_prompt is None:
        phrase_ids = lm.tokenizer(config.init_phrase, add_special_tokens=False).input_ids
        return build_encoder(config.encoder, template.num_slots, lm.embeddings, config.seed,
                             config.init, config.hidden_size, phrase_ids)
    if config.encoder != "free":
        raise ConfigError(f"initial_prompt seeds free vectors; the {config.encoder!r} encoder "
                          "generates its prompt from its own parameters (use encoder='free')")
    expected = (template.num_slots, lm.width)
    if tuple(initial_prompt.shape) != expected:
        raise ConfigError(f"initial_prompt has shape {tuple(initial_prompt.shape)}, but the "
                          f"template and model need (L, d) = {expected}")
    return FreeVectors(initial_prompt.detach().float().cpu())


def _check_resumable(saved: dict, config: TrainConfig, template: Template,
                     done_steps: int) -> None:
    """A checkpoint resumes under the same config and template; only ``steps`` may grow (the
    run is extended, its history continued) and only on a constant schedule after warmup, so
    no step's learning rate changes."""
    if saved.get("template") != template.text:
        raise ConfigError(f"the checkpoint was written for template {saved.get('template')!r}, "
                          f"not {template.text!r}: use a fresh folder or the same template")
    before, now = _identity(dict(saved.get("config") or {})), config.identity()
    changed = sorted(k for k in now.keys() | before.keys()
                     if k != "steps" and before.get(k) != now.get(k))
    if changed:
        raise ConfigError(f"the checkpoint was written with other settings ({', '.join(changed)}"
                          "); only steps may change on resume: use a fresh folder otherwise")
    if now["steps"] == before.get("steps"):
        return
    if now["steps"] < done_steps:
        raise ConfigError(f"the checkpoint has already run {done_steps} steps; steps="
                          f"{now['steps']} cannot shorten it")
    if config.schedule != "constant":
        raise ConfigError(f"a {config.schedule!r} schedule is spread over the steps, so "
                          "extending the run would change its learning rates: start a new run")


def train(lm: LM, template: str | Template, train_facts: list[Fact], dev_facts: list[Fact],
          config: TrainConfig | None = None, checkpoint_dir: str | Path | None = None,
          resume: bool = False, show_progress: bool = True,
          on_eval: Callable[[History], None] | None = None,
          progress_label: str | None = None,
          initial_prompt: torch.Tensor | None = None) -> TrainResult:
    """Train a prompt encoder on ``train_facts``, keeping the prompt that scores best on
    ``dev_facts``. With ``checkpoint_dir``, state is saved atomically at every evaluation (or
    every ``checkpoint_every`` steps) and ``resume=True`` continues from the last save; a
    finished run resumed with more ``steps`` is extended. ``on_eval`` is called with the history
    after each dev evaluation (live plots). ``progress_label`` names the progress bar (default
    ``train <encoder> (<init>), seed <seed>``). ``initial_prompt`` (L, d) starts free vectors
    from given values, e.g. a prompt imported from a PEFT adapter.
    """
    config = config or TrainConfig()
    template = parse_template(getattr(template, "text", template), require_slots=True)
    if not train_facts or not dev_facts:
        raise ConfigError("train needs at least one train fact and one dev fact")
    precision = resolve_precision(config.precision, lm.device)
    if config.compile:
        compile_layers(frozen_model(lm, precision))
    ranks = distributed.current()
    run = _Run(lm, template, config, initial_prompt)
    path = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir else None
    if resume and path is not None and path.exists():
        tensors, meta = load_state(path)
        _check_resumable(meta.get("run", {}), config, template, meta.get("step", 0))
        run.restore(tensors, meta)
    run_meta = {"config": config.as_dict(), "template": template.text}

    def save() -> None:
        if path is not None and ranks.is_main:
            tensors, meta = run.state()
            save_state(path, tensors, meta | {"run": run_meta})
        distributed.barrier(ranks)  # no rank runs ahead of the checkpoint

    def evaluate_dev() -> bool:
        """Record a dev evaluation; return True when patience has run out."""
        run.encoder.eval()
        prompt = run.encoder.export()
        result = evaluate_sharded(lm, template, dev_facts, prompt.to(lm.device), precision,
                                  ranks)
        run.encoder.train()
        run.history.eval_step.append(run.step)
        run.history.dev_p_at_1.append(result.p_at_1)
        run.history.dev_nll.append(result.nll)
        run.trajectory.append(prompt)
        score = (result.p_at_1, -result.nll)
        if score > run.best:
            run.best, run.best_step, run.best_prompt = score, run.step, prompt
            run.evals_since_best = 0
        else:
            run.evals_since_best += 1
        if on_eval is not None:
            on_eval(run.history)
        return config.patience is not None and run.evals_since_best >= config.patience

    started = time.perf_counter() - run.elapsed
    if run.step == 0 and not run.history.eval_step:
        evaluate_dev()
    run.encoder.train()
    bar = progress(total=config.steps, initial=run.step,
                   desc=progress_label or default_label(config),
                   disable=not (show_progress and ranks.is_main))
    while run.step < config.steps:
        loss, grad_norm = _optimizer_step(lm, template, train_facts, config, run, precision)
        run.step += 1
        run.elapsed = time.perf_counter() - started
        _record_step(run, loss, grad_norm, learning_rate(config, run.step - 1))
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}")
        stop = False
        if run.step % config.eval_every == 0 or run.step == config.steps:
            stop = evaluate_dev()
            bar.set_postfix(loss=f"{loss:.3f}", dev_p1=f"{run.history.dev_p_at_1[-1]:.2f}")
            if not config.checkpoint_every:
                save()
        if config.checkpoint_every and run.step % config.checkpoint_every == 0:
            save()
        if stop:
            end_early(bar)  # patience ran out: the run is complete, not cut short
            break
    bar.close()
    save()
    return TrainResult(config, template.text, run.encoder, run.best_prompt, run.best_step,
                       run.best[0], run.history, run.trajectory)


def training_step(lm: LM, template: Template, micro_batches: list[list[Fact]],
                  encoder: PromptEncoder, optimizer: torch.optim.Optimizer,
                  precision: str = "fp32", max_grad_norm: float | None = None,
                  ranks: Ranks | None = None) -> tuple[float, float]:
    """One optimizer step of a prompt encoder on a frozen LM: (mean loss, grad norm).

    For each micro-batch of B facts, this rank takes its shard (all of it on one process), runs
    the encoder once for the (L, d) prompt, writes it into every example's slots and adds
    sum_b -log P(y_b | x_b, P) / (B * len(micro_batches)) to the gradient. Gradients and the
    loss are summed over ranks, so every rank holds the single-process values; the gradient is
    clipped to ``max_grad_norm`` (None: not clipped) and ``optimizer`` steps. The training loop
    and the benchmarks share this function.
    """
    ranks = ranks or distributed.current()
    optimizer.zero_grad(set_to_none=True)
    total = torch.zeros((), device=lm.device)
    for facts in micro_batches:
        mine = distributed.shard(facts, ranks)
        if not mine:
            continue
        batch = make_batch(lm, template, mine)
        prompt = encoder()  # (L, d), fp32
        logprob = batch_scores(lm, batch, prompt=prompt, precision=precision).logprob  # (b,)
        loss = -logprob.sum() / (len(facts) * len(micro_batches))
        loss.backward()
        total += loss.detach()
    distributed.all_reduce_gradients(encoder, ranks)
    total = distributed.all_reduce_sum(total, ranks).item()
    if not math.isfinite(total):
        raise TrainingError(f"non-finite loss ({total}): lower the learning rate or enable "
                            "max_grad_norm; the last checkpoint is kept")
    limit = max_grad_norm if max_grad_norm is not None else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(encoder.parameters(), limit).item()
    if not math.isfinite(grad_norm):
        raise TrainingError("non-finite gradient norm; the last checkpoint is kept")
    optimizer.step()
    return total, grad_norm


def evaluate_sharded(lm: LM, template: Template, facts: list[Fact], prompt: torch.Tensor,
                     precision: str = "fp32", ranks: Ranks | None = None) -> Evaluation:
    """``evaluate`` of the (L, d) prompt on ``facts``, each rank scoring its shard; every rank
    gets the metrics of the whole list."""
    ranks = ranks or distributed.current()
    if not ranks.distributed:
        return evaluate(lm, template, facts, prompt=prompt, precision=precision)
    mine = distributed.shard(facts, ranks)
    part = evaluate(lm, template, mine, prompt=prompt, precision=precision) if mine else None
    parts = distributed.all_gather(part, ranks)
    sizes = [len(distributed.shard(facts, distributed.Ranks(r, ranks.world)))
             for r in range(ranks.world)]
    return distributed.combine_shards(parts, sizes)


def _optimizer_step(lm: LM, template: Template, facts: list[Fact], config: TrainConfig,
                    run: _Run, precision: str) -> tuple[float, float]:
    """Step ``run.step`` of the run: its learning rate, its micro-batches, one training step."""
    lr = learning_rate(config, run.step)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    micro_batches = [batch_facts(facts, config, run.step, micro)
                     for micro in range(config.grad_accum)]
    try:
        return training_step(lm, template, micro_batches, run.encoder, run.optimizer,
                             precision, config.max_grad_norm, distributed.current())
    except TrainingError as err:
        raise TrainingError(f"step {run.step + 1} (lr {lr:g}): {err}") from err


def _record_step(run: _Run, loss: float, grad_norm: float, lr: float) -> None:
    with torch.no_grad():
        norm = run.encoder().float().norm(dim=1).mean().item()
    history = run.history
    history.step.append(run.step)
    history.loss.append(loss)
    history.lr.append(lr)
    history.grad_norm.append(grad_norm)
    history.prompt_norm.append(norm)
    history.seconds.append(run.elapsed)
