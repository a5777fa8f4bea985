"""Model loading: the tiny test model, devices, errors, import hygiene, the embedded SmolLM2."""

import json
import os
import subprocess
import sys

import pytest
import torch

import ptlib
from ptlib import ModelError
from ptlib.model import resolve_device


def test_tiny_lm_is_frozen_in_eval_mode(tiny):
    assert not tiny.model.training
    assert all(not m.training for m in tiny.model.modules())
    assert all(not p.requires_grad for p in tiny.model.parameters())
    assert tiny.device == torch.device("cpu")
    assert tiny.embeddings.shape == (tiny.vocab_size, tiny.width) == (258, 32)
    assert tiny.model.get_output_embeddings().weight is tiny.embeddings  # tied
    assert tiny.tokenizer.pad_token_id is not None and tiny.tokenizer.eos_token_id is not None
    assert sum(p.numel() for p in tiny.model.parameters()) < 50_000


def test_tiny_lm_is_seeded_and_leaves_the_global_rng_alone():
    torch.manual_seed(0)
    state = torch.random.get_rng_state()
    a, b, c = ptlib.tiny_lm(seed=1), ptlib.tiny_lm(seed=1), ptlib.tiny_lm(seed=2)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a.embeddings, b.embeddings)
    assert not torch.equal(a.embeddings, c.embeddings)


def test_tiny_lm_sizes():
    lm = ptlib.tiny_lm(width=16, layers=1)
    assert lm.width == 16 and len(lm.model.model.layers) == 1


def test_byte_tokenizer_round_trips_text(tiny):
    text = "Côte d'Ivoire -> Yamoussoukro!"
    ids = tiny.tokenizer(text, add_special_tokens=False).input_ids
    assert len(ids) == len(text.encode("utf-8"))
    assert tiny.tokenizer.decode(ids) == text


def test_load_unknown_model_raises_model_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="no-such-org/no-such-model"):
        ptlib.load_lm("no-such-org/no-such-model", device="cpu")
    with pytest.raises(ModelError):
        ptlib.load_lm(str(tmp_path / "empty-folder"), device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_cuda_without_cuda_raises():
    with pytest.raises(ModelError, match="CUDA"):
        resolve_device("cuda")
    with pytest.raises(ModelError, match="CUDA"):
        ptlib.tiny_lm(device="cuda")


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ModelError, match="unknown device"):
        resolve_device("tpu9")


def test_importing_ptlib_has_no_side_effects(tmp_path):
    code = """
import json, sys, torch
before = torch.random.get_rng_state()
import ptlib
after = torch.random.get_rng_state()
print(json.dumps({
    "rng_same": bool(torch.equal(before, after)),
    "transformers": "transformers" in sys.modules,
    "modules": sorted(m for m in sys.modules if m.startswith("ptlib")),
}))
"""
    cache = tmp_path / "cache"
    env = dict(os.environ, PTLIB_CACHE=str(cache), HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True, cwd=tmp_path)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["rng_same"]
    assert not report["transformers"]  # no model code loaded, let alone a model
    assert "ptlib" in report["modules"]
    assert not cache.exists()  # nothing converted or downloaded


@pytest.mark.slow
def test_embedded_model_is_smollm2_and_frozen(smol):
    assert smol.width == 576 and smol.vocab_size == 49152
    assert len(smol.model.model.layers) == 30
    assert not smol.model.training
    assert all(not p.requires_grad for p in smol.model.parameters())
    assert smol.tokenizer.pad_token_id is not None
    norms = smol.embeddings.norm(dim=1)
    assert 2.5 < float(norms.mean()) < 4.0  # DESIGN: about 3.2


@pytest.mark.slow
@pytest.mark.parametrize(("prompt", "answer"), [("The capital of France is", " Paris"),
                                                ("The chemical symbol for gold is", " Au")])
def test_embedded_model_knows_things(smol, prompt, answer):
    ids = smol.tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = smol.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=2,
                                  do_sample=False, pad_token_id=smol.tokenizer.pad_token_id)
    text = smol.tokenizer.decode(out[0, ids.shape[1]:])
    assert text.startswith(answer), text


def test_a_cache_from_an_older_ptlib_loses_its_quantization_record(monkeypatch, tmp_path):
    """The dequantised cache once kept the GGUF ``quantization_config``, so every model loaded
    from it counted as quantized and PEFT's LoRA refused it: the record is dropped on use."""
    folder = tmp_path / ptlib.model.DEFAULT_MODEL
    folder.mkdir()
    gguf = {"quant_method": "gguf", "dequantize": False, "gguf_file": "x.gguf"}
    (folder / "config.json").write_text(json.dumps({"model_type": "llama",
                                                    "quantization_config": gguf}))
    monkeypatch.setenv(ptlib.model.CACHE_ENV, str(tmp_path))
    assert ptlib.model.embedded_model_dir() == folder
    assert json.loads((folder / "config.json").read_text()) == {"model_type": "llama"}


@pytest.mark.slow
def test_the_embedded_model_is_not_quantized_so_lora_adapts_it(smol):
    assert not getattr(smol.model, "is_quantized", False)
    assert not hasattr(smol.model.config, "quantization_config")
