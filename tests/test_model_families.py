"""ptlib works with any causal LM, not only Llama-shaped ones.

Tiny random-init models of six families (Llama, GPT-2, Qwen2, Gemma-2 with final-logit
soft-capping, Mistral, Phi-3), each with a padded embedding table (more rows than the tokenizer
has tokens, as many real models have), go through what every method needs: target logits that
equal the model's own forward, padding on either side giving the same scores, slot filters that
never propose a padded row, manual evaluation, one AutoPrompt iteration, one LSTM training step
and a prompt save/load, and a deep prompt (every layer's keys and values) whose packed logits
equal the model's own forward with the prompt as its KV cache.
"""

import pytest
import torch
from conftest import deep_reference_logits, padded_target_logits
from transformers import (
    Gemma2Config,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    Phi3Config,
    Qwen2Config,
)

from ptlib import SearchConfig, TrainConfig, evaluate, load_prompt, save_prompt, search, train
from ptlib.deep_prompt import deep_shape
from ptlib.discrete import allowed_tokens
from ptlib.model import byte_tokenizer, decoder_layers, random_lm
from ptlib.objective import input_embeddings, make_batch, prompted_logits, target_logits
from ptlib.template import parse_template

PADDED_ROWS = 6  # embedding rows beyond the tokenizer's vocabulary
SOFTCAP = 0.5    # small enough that Gemma-2's tanh capping changes every logit

DECODER = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256}


def _config(family: str, vocab: int, pad: int, eos: int):
    special = {"pad_token_id": pad, "eos_token_id": eos, "bos_token_id": None}
    if family == "gpt2":
        return GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=256,
                          **special)
    if family == "gemma2":
        return Gemma2Config(vocab_size=vocab, head_dim=8, final_logit_softcapping=SOFTCAP,
                            sliding_window=16, **DECODER, **special)
    classes = {"llama": LlamaConfig, "qwen2": Qwen2Config, "mistral": MistralConfig,
               "phi3": Phi3Config}
    return classes[family](vocab_size=vocab, tie_word_embeddings=family != "mistral",
                           **DECODER, **special)


FAMILIES = ["llama", "gpt2", "qwen2", "gemma2", "mistral", "phi3"]
FACTS = [("France", "Paris"), ("Japan", "Tokyo"), ("Peru", "Lima"), ("Cuba", "Havana"),
         ("Egypt", "Cairo"), ("Chile", "Santiago")]


@pytest.fixture(scope="module", params=FAMILIES)
def family_lm(request):
    tokenizer = byte_tokenizer()
    config = _config(request.param, len(tokenizer) + PADDED_ROWS, tokenizer.pad_token_id,
                     tokenizer.eos_token_id)
    return random_lm(config, tokenizer, seed=0, name=f"tiny-{request.param}")


@pytest.fixture
def facts():
    from ptlib import Fact

    return [Fact(x, y) for x, y in FACTS]


@pytest.mark.parametrize("side", ["left", "right"])
def test_target_logits_equal_the_models_own_forward(family_lm, facts, side):
    template = parse_template("[P] {x} [P] is")
    batch = make_batch(family_lm, template, facts, padding_side=side)
    prompt = torch.randn(2, family_lm.width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        embeds = input_embeddings(family_lm, batch, prompt=prompt)
        ours = target_logits(family_lm, batch, embeds)
        in_one_call = prompted_logits(family_lm, batch, prompt=prompt)  # the training path
        theirs = padded_target_logits(family_lm.model, batch, embeds)
    real = batch.target_mask  # (B, Ty): entries past a target's length are unspecified
    torch.testing.assert_close(ours[real], theirs[real], rtol=0, atol=1e-5)
    torch.testing.assert_close(in_one_call[real], theirs[real], rtol=0, atol=1e-5)
    if family_lm.name == "tiny-gemma2":
        assert ours.abs().max() <= SOFTCAP + 1e-6  # the soft-capping was applied


def test_left_and_right_padding_give_the_same_scores(family_lm, facts):
    template = parse_template("The capital of {x} is")
    scores = {}
    for side in ("left", "right"):
        batch = make_batch(family_lm, template, facts, padding_side=side)
        with torch.no_grad():
            logits = target_logits(family_lm, batch, input_embeddings(family_lm, batch))
        scores[side] = logits.masked_fill(~batch.target_mask.unsqueeze(-1), 0)
    torch.testing.assert_close(scores["left"], scores["right"], rtol=0, atol=1e-5)


def test_slot_filters_never_propose_padded_rows(family_lm):
    allowed = allowed_tokens(family_lm, ["Paris"], exclude_capitalised=True)
    assert allowed.shape == (family_lm.vocab_size,)
    assert not allowed[len(family_lm.tokenizer):].any()
    assert allowed[: len(family_lm.tokenizer)].any()


def test_every_method_runs(family_lm, facts, tmp_path):
    manual = evaluate(family_lm, parse_template("The capital of {x} is"), facts)
    assert manual.exact_match == sum(manual.exact) / len(facts) and manual.nll > 0

    found = search(family_lm, "{x} [P][P]", facts[:4], facts[4:],
                   SearchConfig(iterations=1, num_candidates=4, batch_size=4),
                   show_progress=False)
    assert found.forwards > 0 and int(found.slot_ids.max()) < len(family_lm.tokenizer)

    trained = train(family_lm, "[P] {x} [P]", facts[:4], facts[4:],
                    TrainConfig(encoder="lstm", steps=1, batch_size=4, hidden_size=16),
                    show_progress=False)
    assert trained.history.step == [1] and torch.isfinite(torch.tensor(trained.history.loss))

    path = save_prompt(tmp_path / "p.safetensors", trained.prompt, trained.template,
                       family_lm.name)
    loaded, meta = load_prompt(path, width=family_lm.width)
    assert torch.equal(loaded, trained.prompt) and meta["template"] == "[P] {x} [P]"
    again = evaluate(family_lm, parse_template(meta["template"]), facts[4:], prompt=loaded)
    assert again.nll == pytest.approx(trained.evaluate(family_lm, facts[4:]).nll, abs=1e-6)


def test_the_decoder_layers_are_found_in_every_family(family_lm):
    """``decoder_layers`` is what compiling and FSDP sharding wrap, one module per block."""
    layers = decoder_layers(family_lm.model)
    assert isinstance(layers, torch.nn.ModuleList)
    assert len(layers) == family_lm.model.config.num_hidden_layers
    assert all(any(p.numel() for p in layer.parameters()) for layer in layers)


@pytest.mark.parametrize("side", ["left", "right"])
def test_deep_prompt_logits_equal_the_models_own_forward(family_lm, facts, side):
    template = parse_template("[P][P] {x} is")
    batch = make_batch(family_lm, template, facts, padding_side=side)
    width = deep_shape(family_lm.model).width
    prompt = torch.randn(2, width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = prompted_logits(family_lm, batch, deep_prompt=prompt, precision="fp32")
        theirs = deep_reference_logits(family_lm.model, batch, prompt)
    real = batch.target_mask
    torch.testing.assert_close(ours[real], theirs[real], rtol=0, atol=1e-5)


def test_a_deep_prompt_trains_in_every_family(family_lm, facts):
    trained = train(family_lm, "[P][P] {x} is", facts[:4], facts[4:],
                    TrainConfig(encoder="prefix_mlp", steps=1, batch_size=4, hidden_size=16),
                    show_progress=False)
    assert trained.deep and trained.history.step == [1]
    assert trained.prompt.shape == (2, deep_shape(family_lm.model).width)
    assert torch.isfinite(torch.tensor(trained.history.loss)).all()
