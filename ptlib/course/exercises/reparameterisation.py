"""Exercise checks on reparameterisation: P-Tuning's LSTM encoder, which vectors move, its size."""


import torch
from torch import nn

from ptlib import encoders
from ptlib.analysis import position_coupling
from ptlib.course.exercises.core import (
    NotAnswered,
    assert_close,
    call,
    check_number,
    exercise,
    fail,
)


@exercise("P-Tuning's LSTM encoder")
def check_lstm_encoder(encoder_cls, num_slots: int, width: int, hidden: int) -> None:
    """``encoder_cls(num_slots, width, hidden)``: an nn.Module whose ``forward()`` gives
    (L, d); ptlib's ``LSTMEncoder`` weights are copied into it and the outputs compared."""
    if encoder_cls is None:
        raise NotAnswered
    for first, (num, wide, hid) in enumerate([(num_slots, width, hidden), (4, 12, 6)]):
        module = call(encoder_cls, num, wide, hid, first=first == 0)
        if not isinstance(module, nn.Module):
            fail(f"{encoder_cls!r} should build an nn.Module")
        if first == 0 and not list(module.parameters()):
            raise NotAnswered
        reference = encoders.LSTMEncoder(num, wide, hid, torch.Generator().manual_seed(first))
        mine, theirs = module.state_dict(), reference.state_dict()
        missing = sorted(set(theirs) - set(mine))
        extra = sorted(set(mine) - set(theirs))
        if missing or extra:
            fail(f"parameters missing: {missing or 'none'}; unexpected: {extra or 'none'}. "
                  "Name the parts seed_embedding, lstm and head, as in section 1")
        for key, value in theirs.items():
            if tuple(mine[key].shape) != tuple(value.shape):
                fail(f"{key} has shape {tuple(mine[key].shape)}, expected "
                      f"{tuple(value.shape)} (L={num}, d={wide}, hidden={hid})")
        module.load_state_dict(theirs)
        with torch.no_grad():
            got = call(module, first=False)
            ref = reference()
        assert_close(got, ref, f"the prompt (L={num}, d={wide}, hidden={hid})", atol=1e-5,
               hint="bidirectional, 2 layers, batch_first; then Linear, ReLU, Linear per row")


@exercise("which vectors move?")
def check_moved_positions(moved_fn) -> None:
    """``moved_fn(encoder, row)`` -> the sorted output positions that move when input row
    ``row`` is perturbed, for free vectors, the MLP and the LSTM, against the Jacobian."""
    table = torch.randn(20, 8, generator=torch.Generator().manual_seed(0))
    for first, (kind, row) in enumerate([("free", 1), ("mlp", 0), ("lstm", 2), ("mlp", 3)]):
        encoder = encoders.build_encoder(kind, 5, table, seed=first, init="normal",
                                         hidden_size=8)
        before = {k: v.clone() for k, v in encoder.state_dict().items()}
        got = call(moved_fn, encoder, row, first=first == 0)
        coupling = position_coupling(encoder)
        ref = [i for i in range(5) if coupling[i, row] > 1e-6]
        after = encoder.state_dict()
        if any(not torch.equal(before[k], after[k]) for k in before):
            fail("your function changed the encoder: put the perturbed row back afterwards")
        try:
            got = sorted(int(i) for i in got)
        except (TypeError, ValueError):
            fail(f"return a list of positions, got {type(got).__name__}")
        if got != ref:
            fail(f"wrong positions for the {kind} encoder when row {row} moves: perturb "
                  "seed_embedding.weight (or .vectors for free vectors) in place, rerun the "
                  "encoder, and keep the rows whose output changed")


@exercise("the size of a small LSTM encoder")
def check_lstm_size(answer, num_slots: int, width: int, hidden: int = 128) -> None:
    if answer is None:
        raise NotAnswered
    encoder = encoders.LSTMEncoder(num_slots, width, hidden, torch.Generator().manual_seed(0))
    check_number(answer, sum(p.numel() for p in encoder.parameters()), 0.0, "the count",
            "seed table L*d, two bi-LSTM layers of hidden/2 units per direction, the head")
