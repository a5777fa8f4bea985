"""PEFT prompt adapters in and out, checked against the installed peft on a tiny random Llama.

Every comparison with PEFT uses right-padded batches: PEFT ignores position_ids for prompt
methods (it numbers positions 0..L+T-1), which matches ptlib's positions only when padding comes
after the real tokens.
"""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import ptlib
import ptlib.peft_adapter as pa
from ptlib.errors import ConfigError, ModelError, TemplateError
from ptlib.objective import evaluate, input_embeddings, make_batch, score, target_logits
from ptlib.template import encode_target, parse_template

peft = pytest.importorskip("peft")
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing`:FutureWarning")
transformers = pytest.importorskip("transformers")

TEMPLATE = "[P][P][P] {x} is the capital of"
L = 3
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, tiny):
    """The tiny LM saved as a from_pretrained-loadable folder (config, weights, tokenizer)."""
    folder = tmp_path_factory.mktemp("tiny-base")
    tiny.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    return folder


def load_base(base_dir):
    """A fresh copy of the tiny LM as PEFT sees it (fp32, eval mode)."""
    return transformers.AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()


def random_prompt(tiny, seed=0) -> torch.Tensor:
    """(L, d) vectors of about the embeddings' scale."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(L, tiny.width, generator=generator) * tiny.embeddings.std()


def peft_inputs(tiny, facts, input_text):
    """What a PEFT user feeds: the input text's ids, then the target's, right-padded.
    (input_ids (B, T - L), attention_mask (B, T - L))."""
    rows = [tiny.tokenizer(input_text.replace("{x}", f.x), add_special_tokens=False).input_ids
            + encode_target(tiny.tokenizer, f.y) for f in facts]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tiny.tokenizer.pad_token_id)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = torch.tensor(row), 1
    return ids, mask


@torch.no_grad()
def peft_target_logits(model, batch, ids, mask) -> torch.Tensor:
    """PEFT's logits at ptlib's target positions: (B, Ty, V). PEFT prepends L rows, so its
    output has the same length T as ptlib's sequence and the same positions."""
    logits = model(input_ids=ids, attention_mask=mask).logits  # (B, T, V)
    index = batch.target_positions.unsqueeze(-1).expand(-1, -1, logits.shape[-1])
    return logits.gather(1, index).float()


@torch.no_grad()
def ptlib_target_logits(tiny, batch, prompt) -> torch.Tensor:
    """ptlib's logits at the target positions with ``prompt`` in the slots: (B, Ty, V)."""
    return target_logits(tiny, batch, input_embeddings(tiny, batch, prompt=prompt))


def compare(tiny, model, facts, prompt, input_text=" {x} is the capital of") -> float:
    """Max |logit difference| between PEFT's model and ptlib on a right-padded batch."""
    batch = make_batch(tiny, parse_template(TEMPLATE), facts, padding_side="right")
    ids, mask = peft_inputs(tiny, facts, input_text)
    assert torch.equal(ids, batch.input_ids[:, L:]), "the documented input recipe drifted"
    assert torch.equal(mask, batch.attention_mask[:, L:])
    theirs = peft_target_logits(model, batch, ids, mask)
    ours = ptlib_target_logits(tiny, batch, prompt)
    assert theirs.shape == ours.shape
    return (theirs - ours).abs().max().item()


def peft_train(model, tiny, facts, steps=3):
    """A few AdamW steps of PEFT's own training on the facts (so the adapter is not at init)."""
    ids, mask = peft_inputs(tiny, facts, " {x} is the capital of")
    labels = ids.masked_fill(mask == 0, -100)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


# --- (a) export -> PeftModel.from_pretrained -> same logits ----------------------------------


def test_exported_adapter_gives_ptlibs_logits_in_peft(tmp_path, tiny, base_dir, facts):
    prompt = random_prompt(tiny)
    folder = pa.export_peft_adapter(tmp_path / "adapter", prompt, TEMPLATE, tiny,
                                    base_model_path=base_dir)
    assert {p.name for p in folder.iterdir()} == {pa.CONFIG_FILE, pa.WEIGHTS_FILE,
                                                  pa.TEMPLATE_FILE}
    model = peft.PeftModel.from_pretrained(load_base(base_dir), folder)
    assert model.active_peft_config.peft_type == "PROMPT_TUNING"
    record = json.loads((folder / pa.TEMPLATE_FILE).read_text())
    diff = compare(tiny, model, facts, prompt, record["input_text"])
    print(f"export -> PeftModel.from_pretrained: max |logit diff| {diff:.3g}")
    assert diff <= TOLERANCE
    other = compare(tiny, model, facts, random_prompt(tiny, seed=5), record["input_text"])
    assert other > 1e-3, "another prompt must change the logits, or this test proves nothing"


def test_exported_adapter_loads_its_base_by_itself(tmp_path, tiny, base_dir, four_facts):
    """AutoPeftModelForCausalLM finds the base through base_model_name_or_path."""
    prompt = random_prompt(tiny, seed=1)
    folder = pa.export_peft_adapter(tmp_path / "adapter", prompt, TEMPLATE, tiny,
                                    base_model_path=base_dir)
    model = peft.AutoPeftModelForCausalLM.from_pretrained(folder).eval()
    diff = compare(tiny, model, four_facts, prompt)
    print(f"export -> AutoPeftModelForCausalLM: max |logit diff| {diff:.3g}")
    assert diff <= TOLERANCE


# --- (b) PEFT-made adapters -> import -> same vectors and logits -----------------------------


def peft_config(kind):
    if kind == "PROMPT_TUNING":
        return peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=L)
    return peft.PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=L,
                                    encoder_hidden_size=16)


@pytest.mark.parametrize("kind", ["PROMPT_TUNING", "P_TUNING"])
def test_peft_trained_adapter_imports_exactly(tmp_path, tiny, base_dir, facts, kind):
    torch.manual_seed(0)  # PEFT draws its init from the global RNG
    model = peft_train(peft.get_peft_model(load_base(base_dir), peft_config(kind)), tiny, facts)
    model.save_pretrained(tmp_path / "adapter")
    vectors, info = pa.import_peft_adapter(tmp_path / "adapter", lm=tiny)

    stored = load_file(tmp_path / "adapter" / pa.WEIGHTS_FILE)[pa.TENSOR_KEY]
    with torch.no_grad():
        live = model.get_prompt_embedding_to_save("default")  # P_TUNING: the encoder's output
    assert torch.equal(vectors, stored) and torch.equal(vectors, live)
    assert (info.peft_type, info.num_virtual_tokens, info.token_dim) == (kind, L, tiny.width)
    assert info.base_model == str(base_dir) and info.template is None

    diff = compare(tiny, model, facts, vectors)  # the live PEFT model, encoder and all
    print(f"{kind}: PEFT-trained -> import: max |logit diff| {diff:.3g}")
    assert diff <= TOLERANCE
    template = parse_template(TEMPLATE)
    ours = evaluate(tiny, template, facts, prompt=vectors)  # left-padded, ptlib's default
    batch = make_batch(tiny, template, facts, padding_side="right")
    theirs = score(peft_target_logits(model, batch, batch.input_ids[:, L:],
                                      batch.attention_mask[:, L:]), batch)
    print(f"{kind}: |nll diff| {abs(ours.nll + theirs.logprob.mean().item()):.3g}")
    assert ours.nll == pytest.approx(-theirs.logprob.mean().item(), abs=TOLERANCE)
    assert ours.exact == theirs.exact.tolist()


# --- (c) round trip ---------------------------------------------------------------------------


def test_round_trip_gives_identical_vectors(tmp_path, tiny, base_dir):
    prompt = random_prompt(tiny, seed=2)
    pa.export_peft_adapter(tmp_path, prompt, parse_template(TEMPLATE), tiny,
                           base_model_path=base_dir)
    vectors, info = pa.import_peft_adapter(tmp_path, lm=tiny)
    assert torch.equal(vectors, prompt) and vectors.dtype == torch.float32
    assert info.template == TEMPLATE and info.peft_type == "PROMPT_TUNING"
    assert info.base_model == str(base_dir)


def test_base_model_defaults_to_the_lm_name_never_a_cache_path(tmp_path, tiny):
    pa.export_peft_adapter(tmp_path / "a", random_prompt(tiny), TEMPLATE, tiny)
    assert pa.import_peft_adapter(tmp_path / "a")[1].base_model == tiny.name
    embedded = dataclasses.replace(tiny, name=ptlib.model.DEFAULT_MODEL)  # same model object
    pa.export_peft_adapter(tmp_path / "b", random_prompt(tiny), TEMPLATE, embedded)
    assert pa.import_peft_adapter(tmp_path / "b")[1].base_model == "smollm2-135m"
    pa.export_peft_adapter(tmp_path / "c", random_prompt(tiny), TEMPLATE, embedded,
                           base_model_path=tmp_path / "models" / "smol")
    assert pa.import_peft_adapter(tmp_path / "c")[1].base_model == str(tmp_path / "models/smol")


# --- (d) clear errors -------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "{x} [P][P][P]",                # slots after the input
    "[P][P][P] {x} [P][P][P]",      # P-Tuning's (3, x, 3)
    "[P] {x} is [P]",               # a slot after the input
    "Capital: [P][P] {x}",          # text before the slots
    "[P] of [P] {x}",               # text between the slots
    "The capital of {x} is",        # no slots at all
])
def test_non_prepend_template_is_refused(tmp_path, tiny, text):
    prompt = torch.zeros(max(1, parse_template(text).num_slots), tiny.width)
    with pytest.raises(ConfigError, match="only prepend virtual tokens"):
        pa.export_peft_adapter(tmp_path, prompt, text, tiny)
    assert not any(tmp_path.iterdir()), "nothing may be written for a refused template"


def test_prompt_that_does_not_fit_is_refused(tmp_path, tiny):
    with pytest.raises(TemplateError, match="expected \\(3, 32\\)"):
        pa.export_peft_adapter(tmp_path, torch.zeros(2, tiny.width), TEMPLATE, tiny)
    with pytest.raises(ModelError, match="width 31"):
        pa.export_peft_adapter(tmp_path, torch.zeros(L, tiny.width - 1), TEMPLATE, tiny)


def edit_config(**changes):
    def edit(folder):
        path = folder / pa.CONFIG_FILE
        path.write_text(json.dumps(json.loads(path.read_text()) | changes))
    return edit


def replace_weights(tensors):
    return lambda folder: save_file(tensors, folder / pa.WEIGHTS_FILE)


BAD_ADAPTERS = {
    "no config": (lambda f: (f / pa.CONFIG_FILE).unlink(), ModelError, "no adapter_config"),
    "no weights": (lambda f: (f / pa.WEIGHTS_FILE).unlink(), ModelError, "no adapter_model"),
    "broken config": (lambda f: (f / pa.CONFIG_FILE).write_text("{"), ModelError, "JSON"),
    "broken weights": (lambda f: (f / pa.WEIGHTS_FILE).write_bytes(b"xx"), ModelError,
                       "safetensors"),
    "lora type": (edit_config(peft_type="LORA"), ConfigError, "peft_type is 'LORA'"),
    "other task": (edit_config(task_type="SEQ_CLS"), ConfigError, "task_type is 'SEQ_CLS'"),
    "count mismatch": (edit_config(num_virtual_tokens=4), ConfigError, "num_virtual_tokens is 4"),
    "dim mismatch": (edit_config(token_dim=64), ConfigError, "token_dim is 64"),
    "other key": (replace_weights({"weight": torch.zeros(L, 32)}), ModelError,
                  "no 'prompt_embeddings'"),
}


@pytest.mark.parametrize("case", list(BAD_ADAPTERS))
def test_bad_adapter_is_refused(tmp_path, tiny, case):
    damage, error, message = BAD_ADAPTERS[case]
    pa.export_peft_adapter(tmp_path, random_prompt(tiny), TEMPLATE, tiny)
    damage(tmp_path)
    with pytest.raises(error, match=message):
        pa.import_peft_adapter(tmp_path, lm=tiny)


def test_missing_folder_is_refused(tmp_path):
    with pytest.raises(ModelError, match="no such adapter folder"):
        pa.import_peft_adapter(tmp_path / "nowhere")


def test_adapter_for_another_width_is_refused(tmp_path, tiny):
    pa.export_peft_adapter(tmp_path, random_prompt(tiny), TEMPLATE, tiny)
    wider = ptlib.tiny_lm(width=48)
    with pytest.raises(ModelError, match="width 48"):
        pa.import_peft_adapter(tmp_path, lm=wider)


def test_a_real_lora_adapter_is_refused(tmp_path, base_dir):
    """LoRA changes the model's weights, which no prompt can hold (PREFIX_TUNING imports as a
    deep prompt: tests/test_deep_prompt.py)."""
    config = peft.LoraConfig(task_type="CAUSAL_LM", r=2, target_modules=["q_proj"])
    peft.get_peft_model(load_base(base_dir), config).save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="peft_type is 'LORA'"):
        pa.import_peft_adapter(tmp_path)
