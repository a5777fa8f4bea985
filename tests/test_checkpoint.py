"""Atomic single-file checkpoints and prompt files: content hashes, what a prompt was made for,
and the checks on load."""

import dataclasses
import json
import math
import warnings

import pytest
import torch
from safetensors.torch import save_file

import ptlib
from ptlib import ConfigError, ModelError, PTLibError, TemplateError, load_prompt, save_prompt
from ptlib import checkpoint as checkpoint_module
from ptlib.checkpoint import load_state, read_prompt_file, save_slots, save_state
from ptlib.errors import DamagedFileError, FileError
from ptlib.model import byte_tokenizer


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
    with pytest.warns(UserWarning, match="content hash"), \
            pytest.raises(PTLibError, match="not a prompt file"):
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
    path = save_prompt(tmp_path / "prompt.safetensors", torch.randn(4, 32),
                       "[P][P] {x} [P][P]", "tiny")
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


# --- content hashes ---------------------------------------------------------------------------


def test_a_flipped_data_byte_is_a_damaged_file_error_naming_the_file(tmp_path):
    path = save_state(tmp_path / "state.safetensors", tensors(), META)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10  # inside the last tensor's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedFileError, match=r"state\.safetensors: its content does not match"):
        load_state(path)


def test_an_edited_step_count_is_a_damaged_file_error(tmp_path):
    path = save_state(tmp_path / "state.safetensors", tensors(), META)
    with checkpoint_module.safe_open(str(path), framework="pt") as handle:
        header = handle.metadata()
    loaded, meta = load_state(path)
    header[checkpoint_module.META_KEY] = json.dumps(meta | {"step": 50})  # the hash kept as is
    save_file(loaded, str(path), metadata=header)
    with pytest.raises(DamagedFileError, match="state.safetensors"):
        load_state(path)


def test_every_single_byte_flip_of_a_prompt_file_is_refused(tmp_path, tiny):
    path = save_prompt(tmp_path / "p.safetensors", torch.randn(2, tiny.width), "[P] {x} [P]",
                       tiny)
    original = path.read_bytes()
    for position in range(len(original)):
        data = bytearray(original)
        data[position] ^= 0x01
        path.write_bytes(bytes(data))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a flip must never pass as an old file
            with pytest.raises(FileError):
                load_prompt(path, lm=tiny)


def test_a_file_without_a_hash_still_loads_with_a_warning(tmp_path):
    path = tmp_path / "old.safetensors"
    meta = {"kind": "prompt", "template": "{x} [P][P]", "model": "m", "num_slots": 2, "width": 4}
    prompt = torch.randn(2, 4)
    save_file({"prompt": prompt}, str(path), metadata={"ptlib": json.dumps(meta)})
    with pytest.warns(UserWarning, match="old.safetensors: written without a content hash"):
        loaded, read = load_prompt(path, width=4)
    assert torch.equal(loaded, prompt) and read == meta


# --- what a prompt file says about itself ----------------------------------------------------


def test_a_prompt_file_records_the_model_task_and_config(tmp_path, tiny):
    task = ptlib.Task("capitals", [ptlib.Fact("France", "Paris")], ["{x} is"])
    config = ptlib.TrainConfig(encoder="free")
    path = save_prompt(tmp_path / "p.safetensors", torch.randn(2, tiny.width), "[P] {x} [P]",
                       tiny, task=task, config=config)
    _, meta = load_prompt(path, lm=tiny)
    assert meta["model"] == tiny.name and meta["embedding"] == [tiny.vocab_size, tiny.width]
    assert len(meta["tokenizer"]) == 16 and meta["task"]["name"] == "capitals"
    assert meta["config"] == config.as_dict() and len(meta["task"]["facts"]) == 16


def other_tokenizer_lm(tiny):
    tokenizer = byte_tokenizer()
    tokenizer.add_tokens(["<extra>"])
    return dataclasses.replace(tiny, tokenizer=tokenizer)


@pytest.mark.parametrize(("other", "says"), [
    (lambda tiny: dataclasses.replace(tiny, name="another-model"), "model 'tiny-llama-32x2'"),
    (other_tokenizer_lm, "tokenizer fingerprint"),
    (lambda tiny: ptlib.tiny_lm(width=64), r"embedding shape \(V, d\) \(258, 32\), not \(258, 64"),
], ids=["name", "tokenizer", "shape"])
def test_a_prompt_for_another_model_is_refused_naming_what_differs(tmp_path, tiny, other, says):
    path = save_prompt(tmp_path / "p.safetensors", torch.randn(2, tiny.width), "[P] {x} [P]",
                       tiny)
    with pytest.raises(ModelError, match=f"saved for another model .*{says}.*allow_other_model"):
        load_prompt(path, lm=other(tiny))


def test_allow_other_model_transfers_a_prompt_of_the_same_width_only(tmp_path, tiny):
    prompt = torch.randn(2, tiny.width)
    path = save_prompt(tmp_path / "p.safetensors", prompt, "[P] {x} [P]", tiny)
    renamed = dataclasses.replace(tiny, name="another-model")
    assert torch.equal(load_prompt(path, lm=renamed, allow_other_model=True)[0], prompt)
    with pytest.raises(ModelError, match="prompt width 32 does not match the model's width 64"):
        load_prompt(path, lm=ptlib.tiny_lm(width=64), allow_other_model=True)


def test_a_prompt_for_another_template_is_refused(tmp_path, tiny):
    path = save_prompt(tmp_path / "p.safetensors", torch.randn(2, tiny.width), "[P] {x} [P]",
                       tiny)
    with pytest.raises(TemplateError, match=r"saved for template '\[P\] \{x\} \[P\]', not"):
        load_prompt(path, lm=tiny, template="[P][P] {x}")
    assert load_prompt(path, lm=tiny, template=ptlib.parse_template("[P] {x} [P]"))[1]


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_prompt_is_refused_at_save_and_at_load(tmp_path, bad):
    prompt = torch.randn(2, 4)
    prompt[1, 2] = bad
    with pytest.raises(ConfigError, match="non-finite"):
        save_prompt(tmp_path / "p.safetensors", prompt, "{x} [P][P]", "m")
    assert not (tmp_path / "p.safetensors").exists()
    meta = {"kind": "prompt", "template": "{x} [P][P]", "model": "m", "num_slots": 2, "width": 4}
    path = tmp_path / "written-elsewhere.safetensors"
    save_file({"prompt": prompt}, str(path), metadata={"ptlib": json.dumps(meta)})
    with pytest.warns(UserWarning), pytest.raises(FileError, match="non-finite"):
        load_prompt(path)


@pytest.mark.parametrize(("prompt", "says"), [
    (torch.randn(8), r"\(L, d\) vectors, got \(8,\)"),
    (torch.randn(2, 0), r"\(L, d\) vectors, got \(2, 0\)"),
    (torch.randn(3, 8), "3 vectors but template '{x} \\[P\\]\\[P\\]' has 2 slots"),
], ids=["1-D", "no-width", "too-many-vectors"])
def test_a_prompt_that_does_not_fill_the_template_is_refused_at_save(tmp_path, prompt, says):
    with pytest.raises(TemplateError, match=says):
        save_prompt(tmp_path / "p.safetensors", prompt, "{x} [P][P]", "m")


def test_a_slots_file_round_trips_and_is_not_read_as_vectors(tmp_path, tiny):
    ids = torch.tensor([5, 70])
    path = save_slots(tmp_path / "s.safetensors", ids, "[P] {x} [P]", tiny)
    loaded, meta = read_prompt_file(path, tiny)
    assert torch.equal(loaded, ids) and meta["kind"] == "slots"
    with pytest.raises(FileError, match="discrete prompt"):
        load_prompt(path)
    with pytest.raises(TemplateError, match=r"\(L,\) = \(2,\)"):
        save_slots(tmp_path / "t.safetensors", torch.tensor([5]), "[P] {x} [P]", tiny)
    big = save_slots(tmp_path / "big.safetensors", torch.tensor([5, 9999]), "[P] {x} [P]",
                     "elsewhere")
    with pytest.raises(ModelError, match="not all in the vocabulary"):
        read_prompt_file(big, tiny, allow_other_model=True)
