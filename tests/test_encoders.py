"""Prompt encoders (free vectors with every init, LSTM, MLP): shapes, inits, seeding, export."""

import math

import pytest
import torch

from ptlib import ConfigError, build_encoder, evaluate, parse_template
from ptlib.encoders import FREE_INITS, LSTMEncoder, MLPEncoder, typical_token_norm
from ptlib.objective import input_embeddings, make_batch, target_logits

PHRASE = [40, 41, 42]
VARIANTS = [("free", init) for init in FREE_INITS] + [("lstm", None), ("mlp", None)]
IDS = [f"{kind}-{init}" if init else kind for kind, init in VARIANTS]


def make(tiny, kind, init, num_slots=4, seed=0, **kwargs):
    extra = {"init": init} if init else {}
    if init == "phrase":
        extra["phrase_ids"] = PHRASE
    return build_encoder(kind, num_slots, tiny.embeddings, seed, **extra, **kwargs)


@pytest.mark.parametrize(("kind", "init"), VARIANTS, ids=IDS)
def test_output_shape_dtype_and_export(tiny, kind, init):
    encoder = make(tiny, kind, init, num_slots=5)
    out = encoder()
    assert out.shape == (5, tiny.width)
    assert out.dtype == torch.float32
    assert out.requires_grad  # trainable
    assert torch.isfinite(out).all()
    assert encoder.num_slots == 5 and encoder.width == tiny.width

    exported = encoder.export()
    with torch.no_grad():
        assert torch.equal(exported, encoder())
    # With autograd on, the LSTM runs another CPU kernel (differences ~1e-8).
    torch.testing.assert_close(exported, out.detach(), atol=1e-6, rtol=0)
    assert not exported.requires_grad and exported.grad_fn is None
    assert exported.device.type == "cpu" and exported.dtype == torch.float32
    exported.add_(1.0)  # a copy: changing it leaves the encoder alone
    assert torch.equal(encoder().detach(), out.detach())


@pytest.mark.parametrize(("kind", "init"), VARIANTS, ids=IDS)
def test_same_seed_same_parameters_different_seed_different(tiny, kind, init):
    torch.manual_seed(123)
    first = make(tiny, kind, init, seed=7).state_dict()
    torch.manual_seed(456)  # the global RNG must not matter
    again = make(tiny, kind, init, seed=7).state_dict()
    other = make(tiny, kind, init, seed=8).state_dict()
    assert first.keys() == again.keys() == other.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    if init == "phrase":  # the phrase init has no randomness by design
        assert all(torch.equal(first[k], other[k]) for k in first)
    else:
        assert not all(torch.equal(first[k], other[k]) for k in first)


@pytest.mark.parametrize(("kind", "init"), VARIANTS, ids=IDS)
def test_exported_prompt_reproduces_the_encoders_logits(tiny, facts, kind, init):
    template = parse_template("[P][P] {x} is [P][P]")
    encoder = make(tiny, kind, init)
    batch = make_batch(tiny, template, facts[:4])
    with torch.no_grad():
        live = target_logits(tiny, batch, input_embeddings(tiny, batch, prompt=encoder()))
        kept = target_logits(tiny, batch, input_embeddings(tiny, batch, prompt=encoder.export()))
    assert torch.equal(live, kept)
    with torch.no_grad():
        by_encoder = evaluate(tiny, template, facts, prompt=encoder())
    by_export = evaluate(tiny, template, facts, prompt=encoder.export())
    assert by_encoder == by_export


def test_normal_rescaled_rows_have_the_mean_token_norm(tiny):
    target = tiny.embeddings.float().norm(dim=1).mean().item()
    assert typical_token_norm(tiny.embeddings) == pytest.approx(target)
    vectors = make(tiny, "free", "normal_rescaled", num_slots=8)()
    torch.testing.assert_close(vectors.norm(dim=1), torch.full((8,), target), rtol=1e-5, atol=0)


def test_normal_init_is_far_off_the_token_scale(tiny):
    vectors = make(tiny, "free", "normal", num_slots=64)().detach()
    assert vectors.mean().abs() < 0.1
    assert vectors.std() == pytest.approx(1.0, rel=0.1)
    assert vectors.norm(dim=1).mean() == pytest.approx(math.sqrt(tiny.width), rel=0.1)


def test_uniform_init_range(tiny):
    vectors = make(tiny, "free", "uniform", num_slots=64)().detach()
    assert vectors.min() >= -0.5 and vectors.max() < 0.5
    assert vectors.min() < -0.4 and vectors.max() > 0.4


def test_vocab_init_rows_are_token_embeddings(tiny):
    vectors = make(tiny, "free", "vocab", num_slots=6)().detach()
    for row in vectors:
        assert (tiny.embeddings == row).all(dim=1).any()


@pytest.mark.parametrize(("num_slots", "expected"), [(3, PHRASE), (1, PHRASE[:1]),
                                                      (5, PHRASE + PHRASE[:2])])
def test_phrase_init_equals_the_phrase_tokens_embeddings(tiny, num_slots, expected):
    vectors = make(tiny, "free", "phrase", num_slots=num_slots)().detach()
    assert torch.equal(vectors, tiny.embeddings[expected])


def test_phrase_init_without_a_phrase_raises(tiny):
    with pytest.raises(ConfigError, match="phrase"):
        build_encoder("free", 3, tiny.embeddings, 0, init="phrase")
    with pytest.raises(ConfigError, match="phrase"):
        build_encoder("free", 3, tiny.embeddings, 0, init="phrase", phrase_ids=[])


def test_unknown_kind_init_and_bad_sizes_raise(tiny):
    with pytest.raises(ConfigError, match="unknown encoder"):
        build_encoder("gru", 3, tiny.embeddings, 0)
    with pytest.raises(ConfigError, match="unknown init"):
        build_encoder("free", 3, tiny.embeddings, 0, init="xavier")
    with pytest.raises(ConfigError, match="slot"):
        build_encoder("free", 0, tiny.embeddings, 0)
    with pytest.raises(ConfigError, match="hidden_size"):
        build_encoder("lstm", 3, tiny.embeddings, 0, hidden_size=7)
    with pytest.raises(ConfigError, match="hidden_size"):
        build_encoder("mlp", 3, tiny.embeddings, 0, hidden_size=-4)


def test_hidden_size_is_used(tiny):
    lstm = build_encoder("lstm", 3, tiny.embeddings, 0, hidden_size=16)
    assert isinstance(lstm, LSTMEncoder) and lstm.lstm.hidden_size == 8
    assert lstm.lstm.bidirectional and lstm.lstm.num_layers == 2
    mlp = build_encoder("mlp", 3, tiny.embeddings, 0, hidden_size=20)
    assert isinstance(mlp, MLPEncoder) and mlp.mlp[0].out_features == 20
    default = build_encoder("lstm", 3, tiny.embeddings, 0)
    assert default.lstm.hidden_size == tiny.width // 2


def test_lstm_couples_positions_and_mlp_does_not(tiny):
    # P-Tuning's point: with the bi-LSTM every output vector depends on every seed position.
    for kind, coupled in (("lstm", True), ("mlp", False)):
        encoder = build_encoder(kind, 4, tiny.embeddings, 0)
        out = encoder()
        (grad,) = torch.autograd.grad(out[0].sum(), encoder.seed_embedding.weight)
        assert grad[0].abs().sum() > 0
        assert bool(grad[1:].abs().sum() > 0) is coupled


def test_encoders_are_fp32_over_a_bf16_embedding_matrix(tiny):
    embeddings = tiny.embeddings.detach().to(torch.bfloat16)
    for kind, init in VARIANTS:
        extra = {"init": init, "phrase_ids": PHRASE} if init else {}
        assert build_encoder(kind, 2, embeddings, 0, **extra).export().dtype == torch.float32
