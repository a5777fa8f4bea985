"""Packed forwards compute what padded ones do, with no padding and no example split."""

import functools

import pytest
import torch
from conftest import padded_target_logits
from hypothesis import given
from hypothesis import strategies as st

import ptlib.objective
from ptlib.objective import batch_scores, make_batch, prompted_logits
from ptlib.packing import _rows, pack
from ptlib.template import build_batch, parse_template

TEMPLATE = "[P] {x} [P] is"


@given(st.lists(st.integers(1, 40), min_size=1, max_size=30), st.integers(1, 80))
def test_rows_hold_whole_examples_in_order_within_capacity(lengths, capacity):
    rows, offsets, longest = _rows(lengths, capacity)
    assert rows == sorted(rows) and rows[0] == 0  # the batch's order, row after row
    used = {}
    for row, offset, length in zip(rows, offsets, lengths, strict=True):
        assert offset == used.get(row, 0)  # each example starts where the last one ended
        used[row] = offset + length
    assert longest == max(used.values()) <= max(capacity, *lengths)
    for row in range(1, rows[-1] + 1):  # next-fit: a new row only when the next did not fit
        first = rows.index(row)
        assert used[row - 1] + lengths[first] > max(capacity, *lengths)


@pytest.mark.parametrize("side", ["left", "right"])
def test_packed_rows_are_the_examples_real_tokens_end_to_end(tiny, facts, side):
    batch = build_batch(tiny.tokenizer, parse_template(TEMPLATE), [f.x for f in facts[:6]],
                        [f.y for f in facts[:6]], padding_side=side)
    packing = pack(batch, capacity=30)
    ids, positions = packing.gather(batch.input_ids), packing.position_ids  # (R, C)
    real = [batch.input_ids[b, batch.attention_mask[b].bool()].tolist() for b in range(6)]
    assert ids.shape[0] > 1 and ids.shape[1] <= 30  # several rows, none past the capacity
    runs = []  # a run of positions 0, 1, 2, ... is one example (or one filler token)
    for row_ids, row_positions in zip(ids.tolist(), positions.tolist(), strict=True):
        for token, position in zip(row_ids, row_positions, strict=True):
            if position == 0:
                runs.append([])
            runs[-1].append(token)
    assert [run for run in runs if len(run) > 1] == real  # every example whole, in order
    assert sum(len(run) == 1 for run in runs) == ids.numel() - sum(map(len, real))  # fillers
    flat_ids = ids.reshape(-1)
    for b in range(6):  # each target is predicted where its padded position said
        for j in range(int(batch.target_mask[b].sum())):
            assert flat_ids[packing.targets[b, j] + 1] == batch.target_ids[b, j]


def test_many_packed_rows_give_the_padded_forward_and_its_gradient(tiny, facts, monkeypatch):
    template = parse_template(TEMPLATE)
    batch = make_batch(tiny, template, facts[:8])
    prompt = torch.randn(2, tiny.width, generator=torch.Generator().manual_seed(0),
                         requires_grad=True)
    embeds = tiny.model.get_input_embeddings()(batch.input_ids)  # (B, T, d)
    in_slot = (batch.slot_index >= 0).unsqueeze(-1)
    embeds = torch.where(in_slot, prompt[batch.slot_index.clamp(min=0)], embeds)
    padded = padded_target_logits(tiny.model, batch, embeds)  # (B, Ty, V)
    (padded_grad,) = torch.autograd.grad(padded[batch.target_mask].logsumexp(-1).sum(), prompt)
    monkeypatch.setattr(ptlib.objective, "pack", functools.partial(pack, capacity=24))
    assert pack(batch, capacity=24).source.shape[0] >= 4  # really split across rows
    packed = prompted_logits(tiny, batch, prompt=prompt)
    (packed_grad,) = torch.autograd.grad(packed[batch.target_mask].logsumexp(-1).sum(), prompt)
    real = batch.target_mask
    torch.testing.assert_close(packed[real], padded[real], rtol=0, atol=1e-5)
    torch.testing.assert_close(packed_grad, padded_grad, rtol=1e-4, atol=1e-6)


def test_scores_do_not_depend_on_how_the_rows_are_packed(tiny, facts, monkeypatch):
    batch = make_batch(tiny, parse_template("{x} is [P][P]"), facts[:8])
    slot_ids = torch.arange(3, 3 + 16).view(8, 2)  # a different prompt per example
    one_row = batch_scores(tiny, batch, slot_ids=slot_ids)
    monkeypatch.setattr(ptlib.objective, "pack", functools.partial(pack, capacity=1))
    one_example_a_row = batch_scores(tiny, batch, slot_ids=slot_ids)
    torch.testing.assert_close(one_row.logprob, one_example_a_row.logprob, rtol=0, atol=1e-5)
    assert torch.equal(one_row.exact, one_example_a_row.exact)
