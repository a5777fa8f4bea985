"""The template language (``{x}`` once, ``[P]`` slots) and the batch builder every method uses."""

import re

import pytest
import torch

from ptlib import TemplateError, build_batch, parse_template
from ptlib.template import INPUT, SLOT, encode_target

SUBJECTS = ["France", "Japan", "United Kingdom", "Peru"]
OBJECTS = ["Paris", "Tokyo", "London", "Lima"]

TEMPLATES = [
    ("The capital of {x} is", 0),
    ("{x}'s capital city is", 0),
    ("{x}[P]", 1),
    ("[P]{x}", 1),
    ("The capital of {x} is [P][P]", 2),
    ("[P][P][P] {x} [P][P][P]", 6),
    ("[P] a [P] {x} b [P] c", 3),
]


@pytest.mark.parametrize(("text", "slots"), TEMPLATES)
def test_parse_counts_slots_and_keeps_the_text(text, slots):
    template = parse_template(text)
    assert template.num_slots == slots
    assert template.text == text
    assert "".join(template.pieces) == text
    assert template.pieces.count(INPUT) == 1
    assert template.pieces.count(SLOT) == slots


@pytest.mark.parametrize("text", ["The capital is", "[P][P] is", "{x} and {x}", "{x}{x}[P]"])
def test_input_placeholder_must_appear_exactly_once(text):
    with pytest.raises(TemplateError, match="exactly once"):
        parse_template(text)


@pytest.mark.parametrize("text", ["{x} is {y}", "{y} {x}", "{X} {x}", "{x} is {", "{x} is }",
                                  "{x} {object}", "{ x } {x}", "{x} [P] {}"])
def test_unknown_placeholder_is_rejected(text):
    with pytest.raises(TemplateError, match="unknown placeholder"):
        parse_template(text)


@pytest.mark.parametrize("text", ["{x} is ", "{x} is\t", "{x} is\n", "[P] {x} [P] "])
def test_trailing_whitespace_is_rejected(text):
    with pytest.raises(TemplateError, match="whitespace"):
        parse_template(text)


@pytest.mark.parametrize("text", ["", "   ", None, 3, ["{x}"]])
def test_empty_or_non_string_template_is_rejected(text):
    with pytest.raises(TemplateError):
        parse_template(text)


def test_require_slots():
    with pytest.raises(TemplateError, match="no \\[P\\] slots"):
        parse_template("The capital of {x} is", require_slots=True)
    assert parse_template("The capital of {x} is [P]", require_slots=True).num_slots == 1


def test_template_error_is_a_value_error():
    # Callers that catch ValueError keep working.
    with pytest.raises(ValueError):
        parse_template("no input here")


def test_chunks_and_render():
    template = parse_template("[P][P] {x} is [P]")
    assert template.chunks("France") == [None, None, " France is", None]
    assert template.render("France") == "[P][P] France is[P]"  # what the model reads
    assert template.render("France", slot_text="_") == "__ France is_"
    manual = parse_template("The capital of {x} is")
    assert manual.chunks("Peru") == ["The capital of Peru is"]
    assert manual.render("Peru") == "The capital of Peru is"


def test_subject_text_is_literal():
    # A subject that looks like markup is data, not a slot or placeholder.
    template = parse_template("{x} is")
    assert template.chunks("[P]{x}") == ["[P]{x} is"]
    assert template.render("[P]") == "[P] is"


@pytest.fixture(params=["left", "right"])
def side(request):
    return request.param


@pytest.mark.parametrize("text", [t for t, _ in TEMPLATES])
def test_build_batch_invariants(tiny, side, text):
    tokenizer = tiny.tokenizer
    template = parse_template(text)
    batch = build_batch(tokenizer, template, SUBJECTS, OBJECTS, padding_side=side)
    B, T = batch.input_ids.shape
    assert B == len(SUBJECTS) == batch.size
    for field in ("attention_mask", "position_ids", "slot_index"):
        assert getattr(batch, field).shape == (B, T)
    Ty = batch.target_ids.shape[1]
    assert batch.target_positions.shape == batch.target_mask.shape == (B, Ty)
    assert batch.target_mask.dtype == torch.bool

    mask = batch.attention_mask.bool()
    for row, (subject, obj) in enumerate(zip(SUBJECTS, OBJECTS, strict=True)):
        real = mask[row].nonzero().squeeze(1)
        n = len(real)
        # Real tokens are contiguous, at the end (left padding) or the start (right padding).
        expected = torch.arange(T - n, T) if side == "left" else torch.arange(n)
        assert torch.equal(real, expected)
        assert batch.input_ids[row, ~mask[row]].eq(tokenizer.pad_token_id).all()

        # Targets: the object after one space; each target position points at the token before.
        target = encode_target(tokenizer, obj)
        assert int(batch.target_mask[row].sum()) == len(target)
        assert batch.target_ids[row, : len(target)].tolist() == target
        assert tokenizer.decode(target) == " " + obj
        positions = batch.target_positions[row, batch.target_mask[row]]
        following = batch.input_ids[row, positions + 1]
        assert torch.equal(following, batch.target_ids[row, : len(target)])
        assert int(positions[-1]) + 1 == int(real[-1])  # the target ends the sequence
        assert mask[row, positions].all() and mask[row, positions + 1].all()

        # Slots: numbered 0..L-1 left to right, filled with pad until a method writes them.
        slots = batch.slot_index[row]
        assert slots[slots >= 0].tolist() == list(range(template.num_slots))
        assert mask[row, slots >= 0].all()
        assert batch.input_ids[row, slots >= 0].eq(tokenizer.pad_token_id).all()
        assert slots[~mask[row]].eq(-1).all()

        # Positions count real tokens only, so the padding side is invisible to the model.
        cumsum = batch.attention_mask[row].cumsum(0) - 1
        assert torch.equal(batch.position_ids[row, mask[row]], cumsum[mask[row]])
        assert batch.position_ids[row, mask[row]].tolist() == list(range(n))

        # The text at the non-slot real positions is the rendered template and the target.
        text_ids = batch.input_ids[row, mask[row] & (slots < 0)].tolist()
        assert tokenizer.decode(text_ids) == template.render(subject, slot_text="") + " " + obj


def test_left_and_right_batches_hold_the_same_sequences(tiny):
    template = parse_template("[P] {x} is [P][P]")
    left = build_batch(tiny.tokenizer, template, SUBJECTS, OBJECTS, "left")
    right = build_batch(tiny.tokenizer, template, SUBJECTS, OBJECTS, "right")
    assert torch.equal(left.target_ids, right.target_ids)
    assert torch.equal(left.target_mask, right.target_mask)
    for row in range(len(SUBJECTS)):
        lm, rm = left.attention_mask[row].bool(), right.attention_mask[row].bool()
        assert torch.equal(left.input_ids[row, lm], right.input_ids[row, rm])
        assert torch.equal(left.slot_index[row, lm], right.slot_index[row, rm])
        assert torch.equal(left.position_ids[row, lm], right.position_ids[row, rm])
    # Padding is really there: the rows differ in length.
    assert left.attention_mask.sum(1).unique().numel() > 1


def test_whitespace_before_a_slot_is_not_encoded(tiny):
    spaced = build_batch(tiny.tokenizer, parse_template("[P] {x} is [P][P]"), SUBJECTS, OBJECTS)
    tight = build_batch(tiny.tokenizer, parse_template("[P] {x} is[P][P]"), SUBJECTS, OBJECTS)
    assert torch.equal(spaced.input_ids, tight.input_ids)
    assert torch.equal(spaced.slot_index, tight.slot_index)


def test_multi_token_targets_of_different_lengths_are_masked(tiny):
    template = parse_template("{x} is")
    batch = build_batch(tiny.tokenizer, template, ["a", "b"], ["x", "a much longer object"])
    lengths = batch.target_mask.sum(1).tolist()
    assert lengths == [len(" x"), len(" a much longer object")]  # one byte token per character
    assert batch.target_ids[0, ~batch.target_mask[0]].eq(tiny.tokenizer.pad_token_id).all()


def test_build_batch_rejects_bad_input(tiny):
    template = parse_template("{x} is")
    with pytest.raises(TemplateError, match="padding_side"):
        build_batch(tiny.tokenizer, template, ["a"], ["b"], padding_side="middle")
    with pytest.raises(TemplateError):
        build_batch(tiny.tokenizer, template, ["a", "b"], ["c"])
    with pytest.raises(TemplateError):
        build_batch(tiny.tokenizer, template, [], [])


def test_batch_to_keeps_values(tiny):
    batch = build_batch(tiny.tokenizer, parse_template("[P] {x} is"), SUBJECTS, OBJECTS)
    moved = batch.to(torch.device("cpu"))
    for field in batch.__dataclass_fields__:
        assert torch.equal(getattr(moved, field), getattr(batch, field))


@pytest.mark.parametrize(("text", "near"), [("[P ] {x}", "[P ]"), ("{x} [p]", "[p]"),
                                            ("[ P]{x} [P]", "[ P]"), ("{x} is [ p ]", "[ p ]")])
def test_a_misspelt_slot_is_a_template_error_not_literal_text(text, near):
    with pytest.raises(TemplateError, match=f"has '{re.escape(near)}', which is not a prompt "
                                            r"slot: write \[P\]"):
        parse_template(text)
