"""The training loop: config validation, schedules, frozen-LM invariance, determinism, resume,
non-finite losses and best-on-dev selection, on the tiny model."""

import dataclasses
import math
import signal

import pytest
import torch

import ptlib
from ptlib import ConfigError, ModelError, TemplateError, TrainConfig, TrainingError, train
from ptlib import training as train_module
from ptlib.checkpoint import load_state, save_state
from ptlib.identity import facts_hash, model_identity
from ptlib.interrupt import TrainingInterrupted
from ptlib.model import compile_layers
from ptlib.objective import Evaluation
from ptlib.options import MAX_SEED
from ptlib.precision import resolve_precision
from ptlib.run_state import check_resumable
from ptlib.train_config import learning_rate
from ptlib.training import CHECKPOINT_FILE, batch_facts

TEMPLATE = "[P][P] {x} [P]"
ENCODERS = [("free", "normal_rescaled"), ("free", "vocab"), ("lstm", "normal_rescaled"),
            ("mlp", "normal_rescaled")]
ENCODER_IDS = ["free", "free-vocab", "lstm", "mlp"]


def config(**overrides) -> TrainConfig:
    # fp32 pinned: these tests compare exact values, whatever the default precision becomes
    settings = {"encoder": "free", "steps": 6, "batch_size": 4, "eval_every": 3, "lr": 1e-2,
                "precision": "fp32"}
    return TrainConfig(**(settings | overrides))


def run(lm, facts, cfg, **kwargs):
    return train(lm, TEMPLATE, facts[:8], facts[8:], cfg, show_progress=False, **kwargs)


# --- config --------------------------------------------------------------------------------

BAD_VALUES = [
    ("steps", -1), ("steps", 0), ("steps", 1.5), ("steps", True), ("batch_size", 0),
    ("grad_accum", 0), ("eval_every", 0), ("encoder", "gru"), ("init", "xavier"),
    ("schedule", "step"), ("precision", "fp16"), ("lr", 0), ("lr", -1e-3), ("lr", math.nan),
    ("lr", math.inf), ("lr", "1e-3"), ("warmup_steps", -1), ("checkpoint_every", -1),
    ("seed", -1), ("seed", 0.5), ("weight_decay", -0.1), ("max_grad_norm", 0),
    ("max_grad_norm", math.nan), ("hidden_size", 0), ("patience", 0),
]


@pytest.mark.parametrize(("field", "value"), BAD_VALUES, ids=[f"{f}={v!r}" for f, v in BAD_VALUES])
def test_bad_config_value_raises_config_error_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**{field: value})


def test_phrase_init_needs_a_phrase():
    with pytest.raises(ConfigError, match="init_phrase"):
        TrainConfig(encoder="free", init="phrase")
    assert TrainConfig(encoder="free", init="phrase", init_phrase="capital").init == "phrase"


def test_default_config_is_valid_and_serialisable():
    cfg = TrainConfig()
    assert cfg.as_dict()["encoder"] == "lstm"
    assert TrainConfig(**cfg.as_dict()) == cfg


def test_the_default_precision_is_fp32_and_bf16_is_asked_for():
    # bf16 becomes the default only once it is shown to train as well as fp32 (ptlib.precision)
    assert TrainConfig().precision == "auto" and resolve_precision("auto") == "fp32"
    assert resolve_precision("bf16") == "bf16" and resolve_precision("fp32") == "fp32"
    with pytest.raises(ConfigError, match="precision must be one of"):
        resolve_precision("fp16")


# --- learning-rate schedule ----------------------------------------------------------------

@pytest.mark.parametrize(("schedule", "step", "expected"), [
    ("constant", 0, 0.5), ("constant", 1, 1.0), ("constant", 2, 1.0), ("constant", 9, 1.0),
    ("linear", 0, 0.5), ("linear", 1, 1.0), ("linear", 2, 1.0), ("linear", 6, 0.5),
    ("linear", 9, 1 / 8),
    ("cosine", 1, 1.0), ("cosine", 2, 1.0), ("cosine", 6, 0.5),
    ("cosine", 4, 0.5 * (1 + math.cos(math.pi / 4))),
    ("cosine", 9, 0.5 * (1 + math.cos(7 * math.pi / 8))),
])
def test_learning_rate_values(schedule, step, expected):
    cfg = TrainConfig(lr=1.0, steps=10, warmup_steps=2, schedule=schedule)
    assert learning_rate(cfg, step) == pytest.approx(expected)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_decaying_schedules_fall_but_stay_positive(schedule):
    cfg = TrainConfig(lr=3e-3, steps=50, warmup_steps=5, schedule=schedule)
    rates = [learning_rate(cfg, s) for s in range(cfg.steps)]
    assert rates[:5] == pytest.approx([3e-3 * (s + 1) / 5 for s in range(5)])
    assert max(rates) == pytest.approx(3e-3)
    assert all(a >= b for a, b in zip(rates[4:], rates[5:], strict=False))
    assert all(r > 0 for r in rates)


def test_recorded_lr_follows_the_schedule(tiny, facts):
    cfg = config(steps=6, warmup_steps=2, schedule="cosine", lr=0.05)
    result = run(tiny, facts, cfg)
    assert result.history.lr == pytest.approx([learning_rate(cfg, s) for s in range(6)])


# --- the loop ------------------------------------------------------------------------------

@pytest.mark.parametrize(("encoder", "init"), ENCODERS, ids=ENCODER_IDS)
def test_train_keeps_the_lm_frozen_and_records_history(tiny, facts, encoder, init):
    before = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    cfg = config(encoder=encoder, init=init, steps=6, eval_every=4)
    result = run(tiny, facts, cfg)

    after = tiny.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None and not p.requires_grad for p in tiny.model.parameters())
    assert not tiny.model.training

    h = result.history
    assert h.step == [1, 2, 3, 4, 5, 6]
    for name in ("loss", "lr", "grad_norm", "prompt_norm", "seconds"):
        assert len(getattr(h, name)) == 6, name
    assert all(math.isfinite(x) and x > 0 for x in h.loss)
    assert all(math.isfinite(x) for x in h.grad_norm + h.prompt_norm)
    assert h.seconds == sorted(h.seconds)
    assert h.eval_step == [0, 4, 6]  # initial prompt, every eval_every steps, the last step
    assert len(h.dev_exact_match) == len(h.dev_nll) == len(result.trajectory) == 3
    assert all(0.0 <= p <= 1.0 for p in h.dev_exact_match)

    L = ptlib.parse_template(TEMPLATE).num_slots
    assert result.prompt.shape == (L, tiny.width)
    assert result.prompt.dtype == torch.float32 and result.prompt.device.type == "cpu"
    assert not result.prompt.requires_grad
    assert result.template == TEMPLATE and result.config == cfg
    # The encoder learned: the final prompt is not the initial one.
    assert not torch.equal(result.trajectory[0], result.trajectory[-1])
    # The trajectory's last entry is the encoder as it ended.
    torch.testing.assert_close(result.trajectory[-1], result.encoder.export())


@pytest.mark.parametrize(("encoder", "lr"), [("free", 0.1), ("lstm", 0.01), ("mlp", 0.01)])
def test_loss_falls_when_overfitting_four_facts(tiny, four_facts, encoder, lr):
    cfg = TrainConfig(encoder=encoder, steps=30, batch_size=4, lr=lr, eval_every=10)
    result = train(tiny, TEMPLATE, four_facts, four_facts, cfg, show_progress=False)
    loss = result.history.loss
    # Each batch is all four facts, so the losses are comparable step to step.
    assert loss[-1] < loss[0] - 0.3
    assert sum(loss[-5:]) / 5 < sum(loss[:5]) / 5
    assert result.history.dev_nll[-1] < result.history.dev_nll[0] - 0.3
    assert result.best_step == 30  # the dev NLL kept improving


@pytest.mark.parametrize("encoder", ["free", "lstm", "mlp"])
def test_same_seed_gives_bit_identical_runs(tiny, facts, encoder):
    cfg = config(encoder=encoder, steps=4)
    first, second = run(tiny, facts, cfg), run(tiny, facts, cfg)
    assert torch.equal(first.prompt, second.prompt)
    assert torch.equal(first.encoder.export(), second.encoder.export())
    assert first.history.loss == second.history.loss
    other = run(tiny, facts, config(encoder=encoder, steps=4, seed=1))
    assert not torch.equal(first.encoder.export(), other.encoder.export())
    assert first.history.loss != other.history.loss


def test_batches_cover_each_fact_once_per_epoch(facts):
    cfg = TrainConfig(batch_size=4, seed=3)
    epoch = [f for step in range(3) for f in batch_facts(facts, cfg, step, 0)]
    assert sorted(epoch, key=lambda f: f.x) == sorted(facts, key=lambda f: f.x)
    assert epoch != facts  # shuffled
    assert epoch == [f for step in range(3) for f in batch_facts(facts, cfg, step, 0)]
    assert batch_facts(facts, cfg, 0, 0) != batch_facts(facts, TrainConfig(batch_size=4), 0, 0)
    # grad_accum splits the same stream of facts into micro-batches.
    accum = TrainConfig(batch_size=2, grad_accum=2, seed=3)
    assert batch_facts(facts, accum, 0, 0) + batch_facts(facts, accum, 0, 1) == \
        batch_facts(facts, cfg, 0, 0)


def test_grad_accum_matches_one_big_batch(tiny, facts):
    big = run(tiny, facts, config(steps=3, batch_size=4, grad_accum=1, lr=0.05))
    accum = run(tiny, facts, config(steps=3, batch_size=2, grad_accum=2, lr=0.05))
    assert accum.history.loss == pytest.approx(big.history.loss, abs=1e-4)
    torch.testing.assert_close(accum.encoder.export(), big.encoder.export(), atol=1e-4, rtol=0)


def test_best_on_dev_prompt_is_the_one_recorded_at_best_step(tiny, facts):
    result = run(tiny, facts, config(steps=8, eval_every=2, lr=0.05))
    h = result.history
    index = h.eval_step.index(result.best_step)
    assert torch.equal(result.prompt, result.trajectory[index])
    assert result.best_dev_exact_match == h.dev_exact_match[index]
    scores = list(zip(h.dev_exact_match, [-n for n in h.dev_nll], strict=True))
    assert index == scores.index(max(scores))  # (P@1, then lower NLL); earliest on a tie
    dev = result.evaluate(tiny, facts[8:])
    assert dev.exact_match == h.dev_exact_match[index]
    assert dev.nll == pytest.approx(h.dev_nll[index], abs=1e-5)


def test_best_prompt_is_not_simply_the_last(tiny, facts, monkeypatch):
    # A scripted dev score that peaks at the second evaluation.
    script = iter([0.1, 0.5, 0.2, 0.3])
    original = train_module.evaluate

    def scripted(*args, **kwargs):
        real = original(*args, **kwargs)
        return Evaluation(next(script), real.nll, real.mean_first_rank, real.exact)

    monkeypatch.setattr(train_module, "evaluate", scripted)
    result = run(tiny, facts, config(steps=6, eval_every=2, lr=0.05))
    assert result.history.eval_step == [0, 2, 4, 6]
    assert result.best_step == 2 and result.best_dev_exact_match == 0.5
    assert torch.equal(result.prompt, result.trajectory[1])
    assert not torch.equal(result.prompt, result.trajectory[-1])


def test_patience_stops_early(tiny, facts, monkeypatch):
    constant = Evaluation(0.0, 1.0, 1.0, [False])
    monkeypatch.setattr(train_module, "evaluate", lambda *a, **k: constant)
    result = run(tiny, facts, config(steps=20, eval_every=3, patience=2))
    # Evals at 0 (best), 3 (no better), 6 (no better: patience spent).
    assert result.history.eval_step == [0, 3, 6]
    assert result.history.step[-1] == 6
    assert result.best_step == 0


def test_on_eval_sees_the_history(tiny, facts):
    seen = []
    run(tiny, facts, config(steps=4, eval_every=2), on_eval=lambda h: seen.append(h.eval_step[:]))
    assert seen == [[0], [0, 2], [0, 2, 4]]


def test_train_rejects_bad_input(tiny, facts):
    with pytest.raises(TemplateError, match="slots"):
        train(tiny, "The capital of {x} is", facts, facts, config(), show_progress=False)
    with pytest.raises(TemplateError, match="slots"):
        train(tiny, ptlib.parse_template("The capital of {x} is"), facts, facts, config(),
              show_progress=False)
    with pytest.raises(ConfigError):
        train(tiny, TEMPLATE, [], facts, config(), show_progress=False)
    with pytest.raises(ConfigError):
        train(tiny, TEMPLATE, facts, [], config(), show_progress=False)


# --- checkpoints, resume, failures ---------------------------------------------------------



def test_a_run_with_a_checkpoint_dir_saves_its_state(tiny, facts, tmp_path):
    result = run(tiny, facts, config(steps=2, eval_every=1), checkpoint_dir=tmp_path)
    tensors, meta = load_state(tmp_path / CHECKPOINT_FILE)
    assert meta["step"] == 2
    assert meta["run"] == {"config": result.config.as_dict(), "template": TEMPLATE,
                           "model": model_identity(tiny),
                           "facts": {"train": facts_hash(facts[:8]),
                                     "dev": facts_hash(facts[8:])}}
    assert torch.equal(tensors["best_prompt"], result.prompt)
    assert meta["trajectory"] == 3


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("encoder", ["free", "lstm", "mlp"])
def test_resume_after_interruption_equals_an_uninterrupted_run(tiny, facts, tmp_path, encoder):
    cfg = config(encoder=encoder, steps=10, eval_every=3, checkpoint_every=5, lr=0.05)
    whole = run(tiny, facts, cfg)

    def stop_at_six(history):
        if history.eval_step[-1] == 6:
            raise Interrupt  # as if the kernel died after step 6; the last save was at step 5

    with pytest.raises(Interrupt):
        run(tiny, facts, cfg, checkpoint_dir=tmp_path, on_eval=stop_at_six)
    _, meta = load_state(tmp_path / CHECKPOINT_FILE)
    assert meta["step"] == 5  # there really is a half-way checkpoint to resume from
    assert len(meta["history"]["loss"]) == 5

    resumed = run(tiny, facts, cfg, checkpoint_dir=tmp_path, resume=True)
    assert torch.equal(resumed.encoder.export(), whole.encoder.export())
    assert torch.equal(resumed.prompt, whole.prompt)
    assert resumed.best_step == whole.best_step
    assert resumed.history.step == whole.history.step
    assert resumed.history.loss == whole.history.loss
    assert resumed.history.eval_step == whole.history.eval_step
    assert resumed.history.dev_nll == whole.history.dev_nll
    assert len(resumed.trajectory) == len(whole.trajectory)
    assert all(torch.equal(a, b) for a, b in zip(resumed.trajectory, whole.trajectory,
                                                 strict=True))
    _, meta = load_state(tmp_path / CHECKPOINT_FILE)
    assert meta["step"] == 10


def test_resume_into_a_folder_without_a_checkpoint_says_so(tiny, facts, tmp_path):
    with pytest.raises(ConfigError, match=r"no checkpoint to resume in .*mistyped.*if_present"):
        run(tiny, facts, config(steps=3), checkpoint_dir=tmp_path / "mistyped", resume=True)
    with pytest.raises(ConfigError, match="resume needs the checkpoint folder"):
        run(tiny, facts, config(steps=3), resume=True)
    with pytest.raises(ConfigError, match="resume must be True, False or 'if_present'"):
        run(tiny, facts, config(steps=3), checkpoint_dir=tmp_path, resume="yes")


def test_resume_if_present_starts_fresh_without_a_checkpoint(tiny, facts, tmp_path):
    cfg = config(steps=3)
    fresh = run(tiny, facts, cfg, checkpoint_dir=tmp_path / "new", resume="if_present")
    assert torch.equal(fresh.encoder.export(), run(tiny, facts, cfg).encoder.export())
    assert (tmp_path / "new" / CHECKPOINT_FILE).is_file()
    again = run(tiny, facts, config(steps=4), checkpoint_dir=tmp_path / "new",
                resume="if_present")
    assert again.history.step == [1, 2, 3, 4] and again.history.loss[:3] == fresh.history.loss


def test_a_checkpoint_exists_from_step_0(tiny, facts, tmp_path):
    def crash_at_first_evaluation_after_0(history):
        if history.eval_step[-1] == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        run(tiny, facts, config(steps=6), checkpoint_dir=tmp_path,
            on_eval=crash_at_first_evaluation_after_0)
    _, meta = load_state(tmp_path / CHECKPOINT_FILE)
    assert meta["step"] == 0 and meta["history"]["eval_step"] == [0]


def test_resume_on_other_facts_is_refused(tiny, facts, tmp_path):
    run(tiny, facts, config(steps=2), checkpoint_dir=tmp_path)
    with pytest.raises(ConfigError, match="other train/dev facts"):
        train(tiny, TEMPLATE, facts[1:9], facts[9:], config(steps=2), checkpoint_dir=tmp_path,
              resume=True, show_progress=False)


def test_resume_on_another_model_is_a_model_error_naming_the_shapes(tiny, facts, tmp_path):
    run(tiny, facts, config(steps=2), checkpoint_dir=tmp_path)
    wider = ptlib.tiny_lm(width=64)
    with pytest.raises(ModelError, match=r"another model .*embedding shape \(V, d\) "
                                         r"\(258, 32\), not \(258, 64\)"):
        run(wider, facts, config(steps=2), checkpoint_dir=tmp_path, resume=True)
    renamed = dataclasses.replace(tiny, name="other")
    with pytest.raises(ModelError, match="model 'tiny-llama-32x2', not 'other'"):
        run(renamed, facts, config(steps=2), checkpoint_dir=tmp_path, resume=True)


def test_an_old_checkpoint_on_another_model_names_the_size_mismatch(tiny, facts, tmp_path):
    """A checkpoint from before the model was recorded: the encoder's shapes still tell."""
    run(tiny, facts, config(steps=2), checkpoint_dir=tmp_path)
    path = tmp_path / CHECKPOINT_FILE
    tensors, meta = load_state(path)
    del meta["run"]["model"]
    save_state(path, tensors, meta)
    with pytest.raises(ModelError, match=r"does not fit this model .*size mismatch .*\[3, 32\]"):
        run(ptlib.tiny_lm(width=64), facts, config(steps=2), checkpoint_dir=tmp_path,
            resume=True)


def test_ctrl_c_saves_at_the_step_boundary_and_the_run_resumes(tiny, facts, tmp_path,
                                                               python_sigint):
    cfg = config(steps=6, eval_every=1, checkpoint_every=4)
    whole = run(tiny, facts, cfg)

    def ctrl_c_at_step_2(history):
        if history.eval_step[-1] == 2:
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(TrainingInterrupted, match=r"after step 2; the run is saved in .*resume"):
        run(tiny, facts, cfg, checkpoint_dir=tmp_path, on_eval=ctrl_c_at_step_2)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    _, meta = load_state(tmp_path / CHECKPOINT_FILE)
    assert meta["step"] == 2  # saved at the boundary, not at the last scheduled save (0)
    resumed = run(tiny, facts, cfg, checkpoint_dir=tmp_path, resume=True)
    assert resumed.history.loss == whole.history.loss
    assert torch.equal(resumed.encoder.export(), whole.encoder.export())
    with pytest.raises(TrainingInterrupted, match="nothing was saved"):
        run(tiny, facts, cfg, on_eval=ctrl_c_at_step_2)


def test_a_batch_larger_than_the_train_facts_is_refused_before_training(tiny, facts):
    with pytest.raises(ConfigError, match="batch_size 100000000 is larger than the 8 train"):
        run(tiny, facts, config(batch_size=100_000_000))


def test_the_largest_seed_trains(tiny, facts):
    result = run(tiny, facts, config(steps=2, seed=MAX_SEED))
    assert result.history.step == [1, 2]


def test_resume_of_a_finished_run_returns_it(tiny, facts, tmp_path):
    cfg = config(steps=4)
    first = run(tiny, facts, cfg, checkpoint_dir=tmp_path)
    again = run(tiny, facts, cfg, checkpoint_dir=tmp_path, resume=True)
    assert torch.equal(first.prompt, again.prompt)
    assert again.history.loss == first.history.loss


@pytest.mark.parametrize("change", [{"lr": 0.02}, {"seed": 1}, {"encoder": "mlp"}])
def test_resume_with_another_config_raises(tiny, facts, tmp_path, change):
    cfg = config(steps=4)
    run(tiny, facts, cfg, checkpoint_dir=tmp_path)
    with pytest.raises(ConfigError, match=f"other settings \\({next(iter(change))}\\)"):
        run(tiny, facts, config(**({"steps": 4} | change)), checkpoint_dir=tmp_path, resume=True)


def test_a_finished_run_resumed_with_more_steps_is_extended(tiny, facts, tmp_path):
    run(tiny, facts, config(steps=4), checkpoint_dir=tmp_path)
    extended = run(tiny, facts, config(steps=8), checkpoint_dir=tmp_path, resume=True)
    straight = run(tiny, facts, config(steps=8))
    assert extended.history.step == list(range(1, 9))
    assert extended.history.loss == straight.history.loss
    assert torch.equal(extended.encoder.export(), straight.encoder.export())


def test_a_run_cannot_be_shortened_or_extended_on_a_decaying_schedule(tiny, facts, tmp_path):
    run(tiny, facts, config(steps=4), checkpoint_dir=tmp_path / "a")
    with pytest.raises(ConfigError, match="already run 4 steps"):
        run(tiny, facts, config(steps=2), checkpoint_dir=tmp_path / "a", resume=True)
    run(tiny, facts, config(steps=4, schedule="linear"), checkpoint_dir=tmp_path / "b")
    with pytest.raises(ConfigError, match="'linear' schedule"):
        run(tiny, facts, config(steps=8, schedule="linear"), checkpoint_dir=tmp_path / "b",
            resume=True)


def test_initial_prompt_starts_free_vectors_from_given_values(tiny, facts):
    start = torch.randn(3, tiny.width, generator=torch.Generator().manual_seed(5))
    result = run(tiny, facts, config(steps=2), initial_prompt=start)
    assert torch.equal(result.trajectory[0], start)
    with pytest.raises(ConfigError, match=r"shape \(2, 32\)"):
        run(tiny, facts, config(steps=2), initial_prompt=start[:2])
    with pytest.raises(ConfigError, match="seeds free vectors"):
        run(tiny, facts, config(steps=2, encoder="lstm"), initial_prompt=start)


def test_resume_with_another_template_raises(tiny, facts, tmp_path):
    cfg = config(steps=2)
    run(tiny, facts, cfg, checkpoint_dir=tmp_path)
    with pytest.raises(ConfigError, match="template"):
        train(tiny, "[P] {x} [P][P]", facts[:8], facts[8:], cfg, checkpoint_dir=tmp_path,
              resume=True, show_progress=False)


def test_non_finite_loss_raises_naming_the_step_and_keeps_the_checkpoint(tiny, facts, tmp_path,
                                                                       monkeypatch):
    original = train_module.batch_scores
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        scores = original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 4:  # the 4th training step's batch
            scores.logprob = scores.logprob * math.nan
        return scores

    cfg = config(steps=10, eval_every=5, checkpoint_every=2)
    monkeypatch.setattr(train_module, "batch_scores", poisoned)
    with pytest.raises(TrainingError, match="step 4"):
        run(tiny, facts, cfg, checkpoint_dir=tmp_path)
    assert calls["n"] == 4
    tensors, meta = load_state(tmp_path / CHECKPOINT_FILE)
    assert meta["step"] == 2
    assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_FILE]  # no temp files left

    # The kept checkpoint resumes once the problem is gone.
    monkeypatch.setattr(train_module, "batch_scores", original)
    resumed = run(tiny, facts, cfg, checkpoint_dir=tmp_path, resume=True)
    assert resumed.history.step == list(range(1, 11))
    assert torch.equal(resumed.encoder.export(), run(tiny, facts, cfg).encoder.export())


def test_huge_learning_rate_never_returns_a_non_finite_prompt(tiny, facts):
    # Either training reports the failure as a TrainingError, or every number stays finite.
    cfg = config(steps=5, lr=1e30, max_grad_norm=None)
    try:
        result = run(tiny, facts, cfg)
    except TrainingError as err:
        assert "step" in str(err)
    else:
        assert all(math.isfinite(x) for x in result.history.loss)
        assert torch.isfinite(result.prompt).all()


def test_a_prompt_that_turns_non_finite_stops_training_naming_the_step(tiny, facts, tmp_path,
                                                                       monkeypatch):
    def finite_loss_but_infinite_prompt(lm, template, micro_batches, encoder, *args, **kwargs):
        with torch.no_grad():
            encoder.vectors.fill_(math.inf)
        return 1.0, 1.0

    monkeypatch.setattr(train_module, "training_step", finite_loss_but_infinite_prompt)
    with pytest.raises(TrainingError, match="step 1 .*the prompt is no longer finite"):
        run(tiny, facts, config(steps=3), checkpoint_dir=tmp_path)
    tensors, meta = load_state(tmp_path / CHECKPOINT_FILE)
    assert meta["step"] == 0 and torch.isfinite(tensors["encoder.vectors"]).all()


def test_bf16_training_keeps_the_encoder_and_the_loss_in_fp32(tiny, facts):
    before = {name: p.clone() for name, p in tiny.model.named_parameters()}
    result = run(tiny, facts, config(steps=3, precision="bf16", encoder="lstm"))
    assert all(math.isfinite(loss) for loss in result.history.loss)
    assert all(p.dtype == torch.float32 for p in result.encoder.parameters())
    assert result.prompt.dtype == torch.float32
    assert all(torch.equal(p, before[name]) for name, p in tiny.model.named_parameters())


# --- opt-in compilation ----------------------------------------------------------------------


def test_compile_layers_keeps_the_logits_and_compiles_once():
    lm = ptlib.tiny_lm(seed=3)  # compiled in place: never the shared fixture
    ids = torch.tensor([[5, 9, 17, 33, 2, 71]])
    before = lm.model(input_ids=ids).logits
    compile_layers(lm.model, backend="aot_eager")
    compiled = [layer._compiled_call_impl for layer in lm.model.model.layers]
    assert all(c is not None for c in compiled)
    torch.testing.assert_close(lm.model(input_ids=ids).logits, before)
    compile_layers(lm.model, backend="aot_eager")
    assert [layer._compiled_call_impl for layer in lm.model.model.layers] == compiled


def test_compile_layers_names_a_model_without_decoder_layers():
    with pytest.raises(ptlib.ModelError, match="Linear has no decoder layer list"):
        compile_layers(torch.nn.Linear(2, 2))


def test_compiled_training_follows_the_eager_run(facts):
    """The real path (inductor, about half a minute on two CPU cores): same losses, same
    prompt, up to the fused kernels' rounding."""
    cfg = config(steps=3, eval_every=3)
    eager = run(ptlib.tiny_lm(seed=4), facts, cfg)
    compiled = run(ptlib.tiny_lm(seed=4), facts, config(steps=3, eval_every=3, compile=True))
    assert compiled.history.loss == pytest.approx(eager.history.loss, rel=1e-5)
    torch.testing.assert_close(compiled.prompt, eager.prompt, rtol=1e-4, atol=1e-5)


def test_a_checkpoint_from_before_compile_resumes_but_switching_compile_is_refused(
        tiny, facts, tmp_path):
    """A checkpoint written before the compile field existed resumes (compile=False is its
    identity); switching compile on resume is refused: compiled kernels round differently."""
    saved = {"template": TEMPLATE, "config": config(steps=4).as_dict()}
    with pytest.raises(ConfigError, match=r"other settings \(compile\)"):
        check_resumable(saved, config(steps=4, compile=True),
                                      ptlib.parse_template(TEMPLATE), 4)
    run(tiny, facts, config(steps=4), checkpoint_dir=tmp_path)
    path = tmp_path / CHECKPOINT_FILE
    tensors, meta = load_state(path)
    del meta["run"]["config"]["compile"]
    save_state(path, tensors, meta)
    extended = run(tiny, facts, config(steps=6), checkpoint_dir=tmp_path, resume=True)
    assert extended.history.step == list(range(1, 7))


def test_identity_leaves_out_later_fields_only_at_their_defaults():
    assert "compile" not in config().identity()
    assert config(compile=True).identity()["compile"] is True
    assert config().identity() == {k: v for k, v in config().as_dict().items() if k != "compile"}
