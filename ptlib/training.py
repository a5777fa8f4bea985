"""Train a continuous prompt: the loop, one optimizer step, and the result it returns.

The LM stays frozen; only the prompt encoder learns. Each step builds a batch of train facts,
runs the encoder once to get the (L, d) prompt, writes it into every example's slots, and
minimises the mean over examples of -log P(y | x, P). Batches are drawn from a per-epoch
permutation fixed by (seed, epoch), so a resumed run sees exactly the batches it would have.
The precision the LM runs at is resolved once, at the start, and travels with the result.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ptlib import distributed
from ptlib.checkpoint import load_state, save_state
from ptlib.data import Fact
from ptlib.deep_prompt import prefix_length
from ptlib.distributed import Ranks
from ptlib.encoders import ENCODERS, PromptEncoder, prompt_keyword
from ptlib.errors import ConfigError, TrainingError
from ptlib.history import History
from ptlib.identity import facts_hash, model_identity
from ptlib.interrupt import InterruptFlag, TrainingInterrupted, deferred_interrupt
from ptlib.model import LM, compile_layers
from ptlib.objective import Evaluation, batch_scores, evaluate, make_batch
from ptlib.precision import DEFAULT_PRECISION, frozen_model, resolve_precision
from ptlib.progress import end_early, progress
from ptlib.run_state import RunState, check_resumable, check_same_origin
from ptlib.template import Template, parse_template
from ptlib.train_config import TrainConfig, learning_rate

CHECKPOINT_FILE = "checkpoint.safetensors"
RESUME_IF_PRESENT = "if_present"  # resume= value: resume when there is a checkpoint, else start


@dataclass
class TrainResult:
    """What ``train`` returns: the best-on-dev prompt, the encoder and the full history."""

    config: TrainConfig
    template: str
    encoder: PromptEncoder      # the encoder as it ended (kept so training can go on)
    prompt: torch.Tensor        # (L, d) best-on-dev vectors, fp32 on CPU
    best_step: int
    best_dev_exact_match: float
    history: History
    trajectory: list[torch.Tensor]  # (L, d) prompt at each evaluation, for pictures
    precision: str = "fp32"     # the precision the LM ran at ("auto" resolved)

    @property
    def deep(self) -> bool:
        """Whether ``prompt`` is a deep prompt (L, D) rather than input vectors (L, d)."""
        return ENCODERS[self.config.encoder].deep

    def prompt_argument(self, device: torch.device | str = "cpu") -> dict:
        """The best prompt as the keyword ``evaluate`` and ``generate`` take it by."""
        return {prompt_keyword(self.config.encoder): self.prompt.to(device)}

    def evaluate(self, lm: LM, facts: list[Fact], precision: str | None = None) -> Evaluation:
        """EM and NLL of the best prompt on ``facts``, at the precision it was trained and
        chosen at unless ``precision`` says otherwise."""
        return evaluate(lm, parse_template(self.template), facts,
                        precision=precision or self.precision,
                        **self.prompt_argument(lm.device))


def default_label(config: TrainConfig) -> str:
    """A progress label that tells runs apart: ``train free (normal), seed 2``."""
    init = f" ({config.init})" if config.encoder == "free" else ""
    return f"train {config.encoder}{init}, seed {config.seed}"


def batch_facts(facts: list[Fact], config: TrainConfig, step: int, micro: int) -> list[Fact]:
    """The facts of one micro-batch: a slice of the epoch's permutation, fixed by the seed (a
    batch that runs past the end of an epoch goes on in the next epoch's permutation)."""
    start = (step * config.grad_accum + micro) * config.batch_size
    picked, order, order_epoch = [], None, None
    for position in range(start, start + config.batch_size):
        epoch, offset = divmod(position, len(facts))
        if epoch != order_epoch:
            generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
            order, order_epoch = torch.randperm(len(facts), generator=generator), epoch
        picked.append(facts[int(order[offset])])
    return picked


class _Loop:
    """One call of ``train``: the run's state, where it is saved, how dev is scored."""

    def __init__(self, lm: LM, template: Template, facts: tuple[list[Fact], list[Fact]],
                 config: TrainConfig, precision: str, checkpoint_dir: str | Path | None,
                 initial_prompt: torch.Tensor | None,
                 on_eval: Callable[[History], None] | None):
        self.lm, self.template, self.config, self.precision = lm, template, config, precision
        self.on_eval = on_eval
        self.train_facts, self.dev_facts = facts
        self.ranks = distributed.current()
        self.run = RunState(lm, template, config, initial_prompt)
        self.path = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir else None
        self.meta = {"config": config.as_dict(), "template": template.text,
                     "model": model_identity(lm),
                     "facts": {"train": facts_hash(self.train_facts),
                               "dev": facts_hash(self.dev_facts)}}
        self.interrupt = InterruptFlag()

    def resume(self, mode: bool | str) -> None:
        """Continue from the checkpoint in the folder, made for this model, these facts, this
        template and config; with ``mode`` ``RESUME_IF_PRESENT``, start afresh when there is
        none."""
        if self.path is None:
            raise ConfigError("resume needs the checkpoint folder (checkpoint_dir; the CLI's "
                              "--out)")
        if not self.path.exists():
            if mode == RESUME_IF_PRESENT:
                return
            raise ConfigError(f"no checkpoint to resume in {self.path.parent} (no "
                              f"{CHECKPOINT_FILE}): check the folder, or use resume="
                              f"{RESUME_IF_PRESENT!r} (--resume-if-present) to start one there")
        tensors, meta = load_state(self.path)
        saved = meta.get("run", {})
        check_same_origin(saved, self.meta["model"], self.meta["facts"])
        check_resumable(saved, self.config, self.template, meta.get("step", 0))
        self.run.restore(tensors, meta)

    def save(self) -> None:
        if self.path is not None and self.ranks.is_main:
            tensors, meta = self.run.state()
            save_state(self.path, tensors, meta | {"run": self.meta})
        distributed.barrier(self.ranks)  # no rank runs ahead of the checkpoint

    def stop_if_interrupted(self) -> None:
        """After a Ctrl-C (``ptlib.interrupt``): save, then raise ``TrainingInterrupted``."""
        if self.interrupt.requested:
            self.save()
            raise TrainingInterrupted(self.run.step, self.path)

    def evaluate_dev(self) -> bool:
        """Record a dev evaluation of the current prompt; True when patience has run out."""
        run = self.run
        run.encoder.eval()
        prompt = run.encoder.export()  # (L, d)
        result = evaluate_sharded(self.lm, self.template, self.dev_facts,
                                  prompt.to(self.lm.device), self.precision, self.ranks,
                                  prompt_keyword(self.config.encoder))
        run.encoder.train()
        run.history.eval_step.append(run.step)
        run.history.dev_exact_match.append(result.exact_match)
        run.history.dev_nll.append(result.nll)
        run.trajectory.append(prompt)
        score = (result.exact_match, -result.nll)
        if score > run.best:
            run.best, run.best_step, run.best_prompt = score, run.step, prompt
            run.evals_since_best = 0
        else:
            run.evals_since_best += 1
        if self.on_eval is not None:
            self.on_eval(run.history)
        patience = self.config.patience
        return patience is not None and run.evals_since_best >= patience

    def step(self) -> float:
        """One optimizer step, recorded in the history; returns its loss."""
        run, config = self.run, self.config
        lr = learning_rate(config, run.step)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        micro_batches = [batch_facts(self.train_facts, config, run.step, micro)
                         for micro in range(config.grad_accum)]
        try:
            loss, grad_norm = training_step(self.lm, self.template, micro_batches, run.encoder,
                                            run.optimizer, self.precision,
                                            config.max_grad_norm, self.ranks)
        except TrainingError as err:
            raise TrainingError(f"step {run.step + 1} (lr {lr:g}): {err}") from err
        run.step += 1
        with torch.no_grad():
            vectors = run.encoder().float()  # (L, d)
        if not torch.isfinite(vectors).all():
            raise TrainingError(f"step {run.step} (lr {lr:g}): the prompt is no longer finite: "
                                "lower the learning rate or enable max_grad_norm; the last "
                                "checkpoint is kept")
        norm = vectors.norm(dim=1).mean().item()
        for name, value in (("step", run.step), ("loss", loss), ("lr", lr),
                            ("grad_norm", grad_norm), ("prompt_norm", norm)):
            getattr(run.history, name).append(value)
        return loss

    def run_to_end(self, bar) -> None:
        """Train until ``steps`` (or patience) with ``bar`` counting steps, evaluating dev and
        saving on the config's schedule, and save at the end."""
        run, config = self.run, self.config
        started = time.perf_counter() - run.elapsed
        if run.step == 0 and not run.history.eval_step:
            self.evaluate_dev()
            self.save()  # a checkpoint from step 0 on
        self.stop_if_interrupted()
        run.encoder.train()
        while run.step < config.steps:
            loss = self.step()
            run.elapsed = time.perf_counter() - started
            run.history.seconds.append(run.elapsed)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")
            stop = False
            if run.step % config.eval_every == 0 or run.step == config.steps:
                stop = self.evaluate_dev()
                bar.set_postfix(loss=f"{loss:.3f}",
                                dev_em=f"{run.history.dev_exact_match[-1]:.2f}")
            if _saves_now(config, run.step, evaluated=run.history.eval_step[-1] == run.step):
                self.save()
            if stop:
                end_early(bar)  # patience ran out: the run is complete, not cut short
                break
            self.stop_if_interrupted()
        bar.close()
        self.save()
        self.stop_if_interrupted()

    def result(self) -> TrainResult:
        run = self.run
        return TrainResult(self.config, self.template.text, run.encoder, run.best_prompt,
                           run.best_step, run.best[0], run.history, run.trajectory,
                           self.precision)


def check_facts(train_facts: list[Fact], dev_facts: list[Fact], config: TrainConfig) -> None:
    if not train_facts or not dev_facts:
        raise ConfigError("train needs at least one train fact and one dev fact")
    if config.batch_size > len(train_facts):
        raise ConfigError(f"batch_size {config.batch_size} is larger than the "
                          f"{len(train_facts)} train facts: use batch_size <= "
                          f"{len(train_facts)}")


def _check_resume(resume) -> None:
    if not (isinstance(resume, bool) or resume == RESUME_IF_PRESENT):
        raise ConfigError(f"resume must be True, False or {RESUME_IF_PRESENT!r}, got {resume!r}")


def train(lm: LM, template: str | Template, train_facts: list[Fact], dev_facts: list[Fact],
          config: TrainConfig | None = None, checkpoint_dir: str | Path | None = None,
          resume: bool | str = False, show_progress: bool = True,
          on_eval: Callable[[History], None] | None = None,
          progress_label: str | None = None,
          initial_prompt: torch.Tensor | None = None) -> TrainResult:
    """Train a prompt encoder on ``train_facts``, keeping the prompt that scores best on
    ``dev_facts``. With ``checkpoint_dir``, state is saved atomically after the first
    evaluation (step 0), then at every evaluation (or every ``checkpoint_every`` steps), and on
    Ctrl-C at the next step boundary (``ptlib.interrupt``). ``resume=True`` continues from the
    last save, which must be there and be of the same model, facts, template and config (only
    more ``steps`` may be asked for: a finished run is extended); ``resume="if_present"``
    starts afresh when the folder has no checkpoint. ``on_eval`` is called with the history
    after each dev evaluation (live plots). ``progress_label`` names the progress bar (default
    ``train <encoder> (<init>), seed <seed>``). ``initial_prompt`` (L, d) starts free vectors
    from given values, e.g. a prompt imported from a PEFT adapter.
    """
    config = config or TrainConfig()
    template = parse_template(getattr(template, "text", template), require_slots=True)
    if ENCODERS[config.encoder].deep:
        prefix_length(template)
    check_facts(train_facts, dev_facts, config)
    _check_resume(resume)
    precision = resolve_precision(config.precision)
    if config.compile:
        compile_layers(frozen_model(lm, precision))
    loop = _Loop(lm, template, (train_facts, dev_facts), config, precision, checkpoint_dir,
                 initial_prompt, on_eval)
    if resume:
        loop.resume(resume)
    bar = progress(total=config.steps, initial=loop.run.step,
                   desc=progress_label or default_label(config),
                   disable=not (show_progress and loop.ranks.is_main))
    with deferred_interrupt(enabled=not loop.ranks.distributed) as loop.interrupt:
        try:
            loop.run_to_end(bar)
        finally:
            bar.close()
    return loop.result()


def _saves_now(config: TrainConfig, step: int, evaluated: bool) -> bool:
    """A checkpoint after this step: every ``checkpoint_every`` steps, or at every evaluation
    when that is 0."""
    if config.checkpoint_every:
        return step % config.checkpoint_every == 0
    return evaluated


def training_step(lm: LM, template: Template, micro_batches: list[list[Fact]],
                  encoder: PromptEncoder, optimizer: torch.optim.Optimizer,
                  precision: str = DEFAULT_PRECISION, max_grad_norm: float | None = None,
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
        prompt = {prompt_keyword(encoder.kind): encoder()}  # (L, d) or deep (L, D), fp32
        logprob = batch_scores(lm, batch, precision=precision, **prompt).logprob  # (b,)
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
                     precision: str = DEFAULT_PRECISION, ranks: Ranks | None = None,
                     keyword: str = "prompt") -> Evaluation:
    """``evaluate`` of the prompt (the (L, d) ``prompt``, or with ``keyword="deep_prompt"`` a
    deep prompt (L, D)) on ``facts``, each rank scoring its shard; every rank gets the metrics
    of the whole list."""
    ranks = ranks or distributed.current()
    given = {keyword: prompt}
    if not ranks.distributed:
        return evaluate(lm, template, facts, precision=precision, **given)
    mine = distributed.shard(facts, ranks)
    part = evaluate(lm, template, mine, precision=precision, **given) if mine else None
    parts = distributed.all_gather(part, ranks)
    sizes = [len(distributed.shard(facts, distributed.Ranks(r, ranks.world)))
             for r in range(ranks.world)]
    return distributed.combine_shards(parts, sizes)
