"""ptlib.generate: cached, batched generation after a prompt, and the ``generate`` command."""

import io
import json

import pytest
import torch

import ptlib
from ptlib import cli
from ptlib.data import Fact
from ptlib.errors import ConfigError, DataError, TemplateError
from ptlib.generate import encode_prompts, generate, generate_ids
from ptlib.objective import make_batch, prompted_logits
from ptlib.template import parse_template

MANUAL = "The capital of {x} is"
SLOTTED = "[P] {x} [P][P]"
SUBJECTS = ["France", "Ho", "the Federal Republic of Germany"]


@pytest.fixture(scope="module")
def lm():
    return ptlib.tiny_lm()


def _reference_ids(lm, text: str, steps: int) -> list[int]:
    """Greedy by hand, no cache: a full forward of the growing sequence at every step."""
    ids = lm.tokenizer(text, add_special_tokens=False).input_ids
    new = []
    with torch.no_grad():
        for _ in range(steps):
            logits = lm.model(input_ids=torch.tensor([ids + new]), use_cache=False).logits
            token = int(logits[0, -1].argmax())
            new.append(token)
            if token == lm.tokenizer.eos_token_id or "\n" in lm.tokenizer.decode([token]):
                break
    return new


def test_greedy_with_cache_equals_uncached_reference(lm):
    for subject in SUBJECTS:
        got = generate_ids(lm, MANUAL, [subject], max_new_tokens=6, precision="fp32")[0]
        assert got == _reference_ids(lm, MANUAL.replace("{x}", subject), 6)
    texts = generate(lm, MANUAL, SUBJECTS, max_new_tokens=6, precision="fp32")
    assert len(texts) == len(SUBJECTS) and all(isinstance(t, str) for t in texts)


@pytest.mark.parametrize("kind", ["prompt", "slot_ids"])
def test_left_padding_changes_no_generation(lm, kind):
    torch.manual_seed(0)
    given = {"prompt": torch.randn(3, lm.width) * 0.5} if kind == "prompt" \
        else {"slot_ids": torch.tensor([70, 80, 90])}
    batched = generate_ids(lm, SLOTTED, SUBJECTS, max_new_tokens=6, precision="fp32", **given)
    for subject, row in zip(SUBJECTS, batched, strict=True):
        assert generate_ids(lm, SLOTTED, [subject], max_new_tokens=6, precision="fp32",
                            **given)[0] == row
    assert encode_prompts(lm.tokenizer, parse_template(SLOTTED), SUBJECTS).attention_mask[
        :2, 0].tolist() == [0, 0]  # the shorter rows really are left-padded


def test_first_token_is_what_the_objective_scores(lm):
    torch.manual_seed(1)
    prompt = torch.randn(3, lm.width)
    first = [row[0] for row in generate_ids(lm, SLOTTED, SUBJECTS, prompt=prompt,
                                            max_new_tokens=1, precision="fp32")]
    template = parse_template(SLOTTED)
    for obj in ["Paris", "x"]:  # any object: the first target position is the same
        batch = make_batch(lm, template, [Fact(s, obj) for s in SUBJECTS])
        logits = prompted_logits(lm, batch, prompt=prompt, precision="fp32")  # (B, Ty, V)
        assert logits[:, 0].argmax(dim=-1).tolist() == first


def test_sampling_is_seeded(lm):
    def sample(seed: int) -> list[str]:
        return generate(lm, MANUAL, SUBJECTS, max_new_tokens=6, greedy=False,
                        temperature=5.0, seed=seed, precision="fp32", stop_at_newline=False)
    assert sample(3) == sample(3)
    assert sample(3) != sample(4)


def test_bad_requests_are_refused(lm):
    with pytest.raises(ConfigError):
        generate(lm, MANUAL, ["France"], max_new_tokens=0)
    with pytest.raises(DataError):
        generate(lm, MANUAL, [])
    with pytest.raises(TemplateError):
        generate(lm, SLOTTED, ["France"])  # slots but no prompt
    with pytest.raises(TemplateError):
        generate(lm, SLOTTED, ["France"], prompt=torch.zeros(2, lm.width))  # L = 2, not 3
    with pytest.raises(ConfigError):
        generate(lm, MANUAL, ["France"], greedy=False, temperature=0.0)


def _run_cli(monkeypatch, capsys, argv: list[str], stdin: str) -> tuple[int, list[str], str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out.split("\n")[:-1], err  # not splitlines: an output may hold "\r"


def test_cli_generate_prints_one_line_per_input(monkeypatch, capsys):
    argv = ["generate", "--model", "tiny", "--template", MANUAL, "--max-new-tokens", "3"]
    code, lines, _ = _run_cli(monkeypatch, capsys, argv, "France\nGermany\n")
    assert code == 0 and len(lines) == 2
    code, lines, _ = _run_cli(monkeypatch, capsys, [*argv, "--jsonl"], "France\nGermany\n")
    assert code == 0
    assert [json.loads(line)["input"] for line in lines] == ["France", "Germany"]
    assert all(isinstance(json.loads(line)["output"], str) for line in lines)


def test_cli_generate_with_a_saved_prompt(monkeypatch, capsys, tmp_path, lm):
    path = ptlib.save_prompt(tmp_path / "p.safetensors", torch.randn(3, lm.width), SLOTTED, lm)
    argv = ["generate", "--model", "tiny", "--prompt", str(path), "--max-new-tokens", "2"]
    code, lines, _ = _run_cli(monkeypatch, capsys, argv, "France\nHo\n")
    expected = generate(lm, SLOTTED, ["France", "Ho"], prompt=ptlib.load_prompt(path)[0],
                        max_new_tokens=2)
    assert code == 0 and lines == expected


def test_cli_refuses_a_prompt_saved_for_another_model(monkeypatch, capsys, tmp_path):
    other = ptlib.tiny_lm(width=32, layers=1)  # named tiny-llama-32x1; --model tiny is 32x2
    facts = [Fact("France", "Paris"), Fact("Italy", "Rome")]
    result = ptlib.train(other, SLOTTED, facts, facts,
                         ptlib.TrainConfig(steps=1, batch_size=2, eval_every=1000))
    path = ptlib.save_prompt(tmp_path / "p.safetensors", result.prompt, SLOTTED, other)
    capsys.readouterr()  # the training's progress bar
    argv = ["generate", "--model", "tiny", "--prompt", str(path)]
    code, lines, err = _run_cli(monkeypatch, capsys, argv, "France\n")
    assert code == 2 and lines == []
    assert err.startswith("error: ") and "another model" in err and len(err.splitlines()) == 1


def test_cli_generate_with_a_saved_slots_file(monkeypatch, capsys, tmp_path, lm):
    ids = torch.tensor([70, 80, 90])
    path = ptlib.save_slots(tmp_path / "s.safetensors", ids, SLOTTED, lm)
    argv = ["generate", "--model", "tiny", "--prompt", str(path), "--max-new-tokens", "2",
            "--sample", "--temperature", "2", "--seed", "5"]
    code, lines, _ = _run_cli(monkeypatch, capsys, argv, "France\n\nHo\n")  # blank line skipped
    expected = generate(lm, SLOTTED, ["France", "Ho"], slot_ids=ids, max_new_tokens=2,
                        greedy=False, temperature=2.0, seed=5)
    assert code == 0 and lines == expected
