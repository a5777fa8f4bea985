"""Atomic single-file checkpoints and prompt files."""

import json

import pytest
import torch
from safetensors.torch import save_file

from ptlib import ModelError, PTLibError, load_prompt, save_prompt
from ptlib import checkpoint as checkpoint_module
from ptlib.checkpoint import load_state, save_state


def tensors(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {
        "encoder.vectors": torch.randn(3, 8, generator=generator),
        "optim.0.step": torch.tensor(5.0),
        "optim.0.exp_avg": torch.randn(3, 8, generator=generator),
        "counts": torch.arange(4),
    }


META = {"step": 5, "history": {"loss": [3.5, 2.25]}, "best": [0.5, -1.25], "name": "ünï",
        "nested": {"none": None, "flag": True}}


def test_save_and_load_state_round_trip(tmp_path):
    path = save_state(tmp_path / "run" / "state.safetensors", tensors(), META)
    assert path == tmp_path / "run" / "state.safetensors" and path.is_file()
    loaded, meta = load_state(path)
    assert meta == META
    assert loaded.keys() == tensors().keys()
    for key, value in tensors().items():
        assert torch.equal(loaded[key], value) and loaded[key].dtype == value.dtype


def test_save_state_accepts_non_contiguous_and_grad_tensors(tmp_path):
    weight = torch.randn(4, 6, requires_grad=True)
    path = save_state(tmp_path / "s.safetensors", {"t": weight.t(), "w": weight * 2}, {})
    loaded, meta = load_state(path)
    assert meta == {}
    assert torch.equal(loaded["t"], weight.detach().t())
    assert torch.equal(loaded["w"], weight.detach() * 2)


def test_overwrite_replaces_the_file(tmp_path):
    path = tmp_path / "state.safetensors"
    save_state(path, tensors(0), {"step": 1})
    save_state(path, tensors(1), {"step": 2})
    loaded, meta = load_state(path)
    assert meta == {"step": 2}
    assert torch.equal(loaded["encoder.vectors"], tensors(1)["encoder.vectors"])
    assert [p.name for p in tmp_path.iterdir()] == ["state.safetensors"]


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_failed_write_leaves_the_previous_file_and_no_temp_file(tmp_path, monkeypatch, error):
    path = tmp_path / "state.safetensors"
    save_state(path, tensors(0), {"step": 1})
    before = path.read_bytes()

    def half_write(data, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"half a checkpoint")
        raise error

    monkeypatch.setattr(checkpoint_module, "save_file", half_write)
    with pytest.raises(type(error)):
        save_state(path, tensors(1), {"step": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["state.safetensors"]
    monkeypatch.undo()
    assert load_state(path)[1] == {"step": 1}


def test_failed_first_write_leaves_nothing(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("no space left on device")

    monkeypatch.setattr(checkpoint_module, "save_file", fail)
    with pytest.raises(OSError):
        save_state(tmp_path / "state.safetensors", tensors(), {})
    assert list(tmp_path.iterdir()) == []


def test_save_and_load_prompt_round_trip(tmp_path):
    prompt = torch.randn(3, 16)
    path = save_prompt(tmp_path / "prompt.safetensors", prompt, "[P] {x} [P][P]", "tiny")
    loaded, meta = load_prompt(path, width=16)
    assert torch.equal(loaded, prompt) and loaded.dtype == torch.float32
    assert meta == {"kind": "prompt", "template": "[P] {x} [P][P]", "model": "tiny",
                    "num_slots": 3, "width": 16}
    assert torch.equal(load_prompt(path)[0], prompt)  # width check is optional


def test_save_prompt_stores_fp32(tmp_path):
    prompt = torch.randn(2, 8).to(torch.bfloat16)
    loaded, _ = load_prompt(save_prompt(tmp_path / "p.safetensors", prompt, "{x} [P][P]", "m"))
    assert loaded.dtype == torch.float32
    assert torch.equal(loaded, prompt.float())


def test_prompt_width_mismatch_raises_model_error(tmp_path):
    path = save_prompt(tmp_path / "prompt.safetensors", torch.randn(2, 16), "{x} [P][P]", "tiny")
    with pytest.raises(ModelError, match="width 16") as info:
        load_prompt(path, width=576)
    assert "576" in str(info.value) and "tiny" in str(info.value)


def test_a_state_file_is_not_a_prompt_file(tmp_path):
    path = save_state(tmp_path / "state.safetensors", tensors(), {"step": 3})
    with pytest.raises(PTLibError, match="not a prompt file"):
        load_prompt(path)
    plain = tmp_path / "plain.safetensors"
    save_file({"prompt": torch.randn(2, 4)}, str(plain))  # no ptlib metadata at all
    with pytest.raises(PTLibError, match="not a prompt file"):
        load_prompt(plain)


@pytest.mark.parametrize("content", [
    b"", b"garbage" * 10, b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":1}",
    json.dumps({"prompt": [1, 2]}).encode(),
])
def test_garbage_file_raises_ptlib_error(tmp_path, content):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(content)
    with pytest.raises(PTLibError, match="broken.safetensors"):
        load_state(path)
    with pytest.raises(PTLibError):
        load_prompt(path)


def test_truncated_file_raises_ptlib_error(tmp_path):
    path = save_prompt(tmp_path / "prompt.safetensors", torch.randn(4, 32), "{x} [P]", "tiny")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(PTLibError):
        load_prompt(path)


def test_missing_file_raises_ptlib_error(tmp_path):
    with pytest.raises(PTLibError, match="nothing.safetensors"):
        load_state(tmp_path / "nothing.safetensors")
    with pytest.raises(PTLibError):
        load_prompt(tmp_path / "nothing.safetensors")


def test_non_object_metadata_raises_ptlib_error(tmp_path):
    path = tmp_path / "odd.safetensors"
    save_file({"prompt": torch.randn(2, 4)}, str(path), metadata={"ptlib": "[1, 2]"})
    with pytest.raises(PTLibError):
        load_prompt(path)


def test_unparsable_metadata_raises_ptlib_error(tmp_path):
    path = tmp_path / "odd.safetensors"
    save_file({"prompt": torch.randn(2, 4)}, str(path), metadata={"ptlib": "not json"})
    with pytest.raises(PTLibError, match="odd.safetensors"):
        load_prompt(path)


def test_save_state_accepts_tensors_that_share_memory(tmp_path):
    shared = torch.randn(3, 4)
    path = save_state(tmp_path / "s.safetensors", {"a": shared, "b": shared, "c": shared[0]}, {})
    loaded, _ = load_state(path)
    assert torch.equal(loaded["a"], shared) and torch.equal(loaded["b"], shared)
    assert torch.equal(loaded["c"], shared[0])
