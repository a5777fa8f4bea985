"""Deep prompts (every layer's keys and values, ``ptlib.deep_prompt``) on the tiny Llama.

The reference for every packed forward is the model fed one example at a time, unpadded, with
the prompt as its KV cache, a 2D mask of ones and positions L, L + 1, ...: the way PEFT's
PREFIX_TUNING feeds it. PEFT itself is the second reference.
"""

import copy

import pytest
import torch
from conftest import deep_reference_logits

import ptlib
import ptlib.peft_adapter as pa
from ptlib import analysis
from ptlib.checkpoint import prompt_argument, read_prompt_file
from ptlib.deep_prompt import deep_shape, layer_keys_values, packed_prefix_mask
from ptlib.encoders import ENCODERS, build_encoder
from ptlib.errors import ConfigError, TemplateError
from ptlib.objective import make_batch, prompted_logits
from ptlib.template import parse_template

peft = pytest.importorskip("peft")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

TEMPLATE = "[P][P][P] The {x} is"
L = 3


def deep_prompt(lm, seed=0, length=L) -> torch.Tensor:
    """A random (L, D) deep prompt."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(length, deep_shape(lm.model).width, generator=generator)


def test_the_shape_is_read_from_the_model(tiny):
    shape = deep_shape(tiny.model)  # tiny_lm: 2 layers, 4 heads of 8, 2 key/value heads
    assert (shape.layers, shape.kv_heads, shape.head_dim) == (2, 2, 8)
    assert shape.width == 2 * 2 * 2 * 8


def test_the_layout_is_pefts(tiny):
    """Row i holds layer 0's key, layer 0's value, layer 1's key, ... of virtual token i."""
    shape = deep_shape(tiny.model)
    prompt = torch.arange(L * shape.width, dtype=torch.float32).view(L, shape.width)
    pairs = layer_keys_values(prompt, shape, rows=2)
    keys, values = pairs[1]  # layer 1
    assert keys.shape == (2, shape.kv_heads, L, shape.head_dim)
    start = 2 * shape.kv_width  # layer 1's key begins after layer 0's key and value
    torch.testing.assert_close(keys[0, 0, 2], prompt[2, start : start + shape.head_dim])
    torch.testing.assert_close(values[1, 1, 0],
                               prompt[0, start + shape.kv_width + shape.head_dim :
                                      start + shape.kv_width + 2 * shape.head_dim])


def test_the_packed_mask_shows_the_prefix_to_all_and_each_example_only_itself():
    positions = torch.tensor([[0, 1, 2, 0, 1, 0]])  # three examples packed in one row
    mask = packed_prefix_mask(positions, 2, torch.float32)[0, 0] == 0  # (C, L + C) allowed
    assert mask[:, :2].all()  # the prefix, for every token
    body = mask[:, 2:]
    assert body[2].tolist() == [True, True, True, False, False, False]
    assert body[4].tolist() == [False, False, False, True, True, False]
    assert body[5].tolist() == [False, False, False, False, False, True]


@pytest.mark.parametrize("side", ["left", "right"])
def test_packed_logits_equal_the_models_own_forward_with_the_prefix(tiny, facts, side):
    batch = make_batch(tiny, parse_template(TEMPLATE), facts, padding_side=side)
    prompt = deep_prompt(tiny)
    with torch.no_grad():
        ours = prompted_logits(tiny, batch, deep_prompt=prompt, precision="fp32")
        theirs = deep_reference_logits(tiny.model, batch, prompt)
    real = batch.target_mask
    torch.testing.assert_close(ours[real], theirs[real], rtol=0, atol=1e-5)
    with torch.no_grad():
        other = prompted_logits(tiny, batch, deep_prompt=deep_prompt(tiny, seed=1))
    assert (other - ours)[real].abs().max() > 1e-3, "another prompt must change the logits"


def test_logits_equal_pefts_prefix_tuning(tiny, facts):
    """PEFT's PREFIX_TUNING model holding the same (L, D) values gives the same logits."""
    prompt = deep_prompt(tiny, seed=2)
    model = peft.get_peft_model(copy.deepcopy(tiny.model), peft.PrefixTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=L)).eval()
    with torch.no_grad():
        model.prompt_encoder["default"].embedding.weight.copy_(prompt)
    batch = make_batch(tiny, parse_template(TEMPLATE), facts, padding_side="right")
    ids = batch.input_ids[:, L:]  # right-padded: the slots are the first L columns
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=batch.attention_mask[:, L:]).logits
        ours = prompted_logits(tiny, batch, deep_prompt=prompt)
    index = (batch.target_positions - L).clamp(min=0).unsqueeze(-1)
    index = index.expand(-1, -1, logits.shape[-1])
    theirs = logits.gather(1, index)
    torch.testing.assert_close(ours[batch.target_mask], theirs[batch.target_mask], rtol=0,
                               atol=1e-5)


@pytest.mark.parametrize("template", ["{x} [P][P]", "[P] {x} [P]", "The [P] {x} is"])
def test_slots_anywhere_but_first_are_refused(tiny, facts, template):
    prompt = deep_prompt(tiny, length=parse_template(template).num_slots)
    with pytest.raises(TemplateError, match="deep prompts are prefixes"):
        ptlib.evaluate(tiny, parse_template(template), facts, deep_prompt=prompt)
    with pytest.raises(TemplateError, match="deep prompts are prefixes"):
        ptlib.train(tiny, template, facts, facts, ptlib.TrainConfig(encoder="prefix", steps=1,
                                                                   batch_size=2),
                    show_progress=False)
    with pytest.raises(TemplateError, match="deep prompts are prefixes"):
        ptlib.generate(tiny, template, ["a"], deep_prompt=prompt)
    batch = make_batch(tiny, parse_template(template), facts)
    with pytest.raises(TemplateError, match="open every example"):
        prompted_logits(tiny, batch, deep_prompt=prompt)


def test_a_wrong_shape_and_two_prompts_at_once_are_refused(tiny, facts):
    template = parse_template(TEMPLATE)
    with pytest.raises(TemplateError, match=r"\(L, D\)"):
        ptlib.evaluate(tiny, template, facts, deep_prompt=torch.zeros(L, tiny.width))
    with pytest.raises(ConfigError, match="give one prompt"):
        ptlib.evaluate(tiny, template, facts, deep_prompt=deep_prompt(tiny),
                       prompt=torch.zeros(L, tiny.width))


@pytest.mark.parametrize("kind", ["prefix", "prefix_mlp"])
def test_deep_encoders_train_and_their_export_reproduces_them(tiny, facts, kind):
    config = ptlib.TrainConfig(encoder=kind, steps=12, batch_size=4, lr=3e-2, eval_every=4,
                               precision="fp32", seed=3)
    result = ptlib.train(tiny, TEMPLATE, facts, facts, config, show_progress=False)
    assert result.deep and result.prompt.shape == (L, deep_shape(tiny.model).width)
    assert result.history.dev_nll[-1] < result.history.dev_nll[0]  # dev = train facts here
    again = ptlib.train(tiny, TEMPLATE, facts, facts, config, show_progress=False)
    assert torch.equal(again.prompt, result.prompt)  # the seed decides everything
    evaluation = result.evaluate(tiny, facts)
    assert evaluation.exact_match == sum(evaluation.exact) / len(facts)
    with torch.no_grad():
        assert torch.equal(result.encoder.export(), result.encoder().detach())


def test_prefix_mlp_is_prefix_tunings_reparameterisation(tiny):
    shape = deep_shape(tiny.model)
    encoder = build_encoder("prefix_mlp", L, tiny.embeddings, seed=0, hidden_size=24,
                            deep_shape=shape)
    assert encoder.seed_embedding.weight.shape == (L, shape.kv_width)
    assert [m.out_features for m in encoder.mlp if hasattr(m, "out_features")] == [24,
                                                                                  shape.width]
    assert isinstance(encoder.mlp[1], torch.nn.Tanh)
    assert ENCODERS["prefix"].deep and not ENCODERS["lstm"].deep
    with pytest.raises(ConfigError, match="has none"):
        ptlib.TrainConfig(encoder="prefix", hidden_size=8)


def test_a_resumed_deep_run_ends_where_an_unbroken_one_does(tiny, facts, tmp_path):
    config = ptlib.TrainConfig(encoder="prefix", steps=8, batch_size=4, lr=3e-2, eval_every=4,
                               precision="fp32")
    whole = ptlib.train(tiny, TEMPLATE, facts, facts, config, show_progress=False)
    half = ptlib.TrainConfig(**(config.as_dict() | {"steps": 4}))
    ptlib.train(tiny, TEMPLATE, facts, facts, half, checkpoint_dir=tmp_path,
                show_progress=False)
    resumed = ptlib.train(tiny, TEMPLATE, facts, facts, config, checkpoint_dir=tmp_path,
                          resume=True, show_progress=False)
    assert torch.equal(resumed.prompt, whole.prompt)
    assert resumed.history.loss == whole.history.loss


def test_a_deep_prompt_file_round_trips_and_is_checked(tiny, facts, tmp_path):
    prompt = deep_prompt(tiny)
    path = ptlib.save_prompt(tmp_path / "p.safetensors", prompt, TEMPLATE, tiny, deep=True)
    values, meta = read_prompt_file(path, tiny)
    assert meta["kind"] == "deep_prompt" and torch.equal(values, prompt)
    given = prompt_argument(values, meta)
    assert list(given) == ["deep_prompt"]
    direct = ptlib.evaluate(tiny, parse_template(TEMPLATE), facts, deep_prompt=prompt)
    assert ptlib.evaluate(tiny, parse_template(meta["template"]), facts, **given) == direct
    with pytest.raises(ptlib.FileError, match="deep_prompt="):
        ptlib.load_prompt(path, lm=tiny)
    with pytest.raises(ptlib.ModelError, match="width"):
        ptlib.save_prompt(tmp_path / "q.safetensors", prompt[:, :-1], TEMPLATE, tiny, deep=True)
    with pytest.raises(TemplateError, match="deep prompts are prefixes"):
        ptlib.save_prompt(tmp_path / "r.safetensors", prompt, "{x} [P][P][P]", tiny, deep=True)


def test_generation_starts_with_what_teacher_forcing_ranks_first(tiny, facts):
    """Greedy generation with a deep prompt continues with the argmax the scoring path gives
    at the first target position, for every subject of a left-padded batch."""
    prompt = deep_prompt(tiny, seed=4)
    template = parse_template(TEMPLATE)
    batch = make_batch(tiny, template, facts)
    with torch.no_grad():
        first = prompted_logits(tiny, batch, deep_prompt=prompt)[:, 0].argmax(dim=-1)
    from ptlib.generate import generate_ids

    generated = generate_ids(tiny, template, [f.x for f in facts], deep_prompt=prompt,
                             max_new_tokens=3, stop_at_newline=False)
    assert [row[0] for row in generated] == first.tolist()
    alone = [generate_ids(tiny, template, [f.x], deep_prompt=prompt, max_new_tokens=3,
                          stop_at_newline=False)[0] for f in facts]
    assert alone == generated  # padding changes no generation


def test_peft_exports_and_imports_prefix_tuning_exactly(tiny, facts, tmp_path):
    prompt = deep_prompt(tiny, seed=5)
    folder = pa.export_peft_adapter(tmp_path / "adapter", prompt, TEMPLATE, tiny, deep=True)
    vectors, info = pa.import_peft_adapter(folder, lm=tiny)
    assert torch.equal(vectors, prompt) and info.peft_type == "PREFIX_TUNING"
    assert info.keyword == "deep_prompt" and info.template == TEMPLATE

    model = peft.PeftModel.from_pretrained(copy.deepcopy(tiny.model), folder).eval()
    batch = make_batch(tiny, parse_template(TEMPLATE), facts, padding_side="right")
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids[:, L:],
                       attention_mask=batch.attention_mask[:, L:]).logits
        ours = prompted_logits(tiny, batch, deep_prompt=vectors)
    index = (batch.target_positions - L).clamp(min=0).unsqueeze(-1)
    index = index.expand(-1, -1, logits.shape[-1])
    real = batch.target_mask
    torch.testing.assert_close(ours[real], logits.gather(1, index)[real], rtol=0, atol=1e-5)


def test_a_peft_trained_prefix_imports_as_its_own_values(tiny, facts, tmp_path):
    torch.manual_seed(0)  # PEFT draws its init from the global RNG
    model = peft.get_peft_model(copy.deepcopy(tiny.model), peft.PrefixTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=L, prefix_projection=True,
        encoder_hidden_size=16))
    model.save_pretrained(tmp_path)
    vectors, info = pa.import_peft_adapter(tmp_path, lm=tiny)
    with torch.no_grad():
        live = model.get_prompt_embedding_to_save("default")  # the projection's output
    assert torch.equal(vectors, live) and vectors.shape == (L, deep_shape(tiny.model).width)
    wider = ptlib.tiny_lm(width=48)
    with pytest.raises(ptlib.ModelError, match="needs width"):
        pa.import_peft_adapter(tmp_path, lm=wider)


def _projected_norms(lm, text: str) -> torch.Tensor:
    """(layers, 2) median per-head norms of each layer's k_proj and v_proj outputs for ``text``,
    read by forward hooks: the cache's keys before the rotary embedding, which keeps norms."""
    shape = deep_shape(lm.model)
    outputs = {}
    hooks = [getattr(layer.self_attn, name).register_forward_hook(
        lambda _m, _i, out, key=(index, name): outputs.__setitem__(key, out))
        for index, layer in enumerate(lm.model.model.layers) for name in ("k_proj", "v_proj")]
    ids = lm.tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        lm.model(input_ids=ids)
    for hook in hooks:
        hook.remove()
    return torch.tensor([[outputs[(layer, name)].view(-1, shape.head_dim).norm(dim=-1).median()
                          for name in ("k_proj", "v_proj")] for layer in range(shape.layers)])


def test_the_models_kv_norms_are_its_projections_norms(tiny):
    text = "The capital of Peru is"
    norms = analysis.model_kv_norms(tiny, [text])
    assert norms.shape == (deep_shape(tiny.model).layers, 2)
    assert torch.allclose(norms, _projected_norms(tiny, text), rtol=1e-5)
    with pytest.raises(ValueError, match="at least one text"):
        analysis.model_kv_norms(tiny, [])


def test_a_deep_prompts_kv_norms_are_read_per_layer_key_and_value(tiny):
    shape = deep_shape(tiny.model)
    scale = torch.arange(1, 2 * shape.layers + 1, dtype=torch.float32)  # one per layer and k/v
    prompt = torch.ones(3, shape.layers * 2, shape.kv_width) * scale[:, None]  # (L, 2 layers, kv)
    norms = analysis.deep_prompt_kv_norms(prompt.view(3, shape.width), shape)
    expected = scale.view(shape.layers, 2) * shape.head_dim ** 0.5  # each head: head_dim equal
    assert torch.allclose(norms, expected)
