"""Padding-free forwards: a padded batch's real tokens packed end to end into a few long rows.

A ``Batch`` pads every example to the longest one (a quarter to a third of the course's tokens
are padding). ``pack`` lays the examples' real tokens one after another into rows of at most
``PACK_TOKENS`` tokens, an example never split across rows, and gives the index maps between
the two layouts. Each example's position ids restart at 0, which is how the model tells the
examples in one row apart: transformers builds a block-diagonal causal mask from position ids
that restart when no attention mask is passed (``find_packed_sequence_indices``), so a token
attends only to earlier tokens of its own example, exactly as in the padded batch. The few
filler tokens that end a row sit at position 0 each: every filler is an example of one token
that no real token can see.
"""

from dataclasses import dataclass

import torch

from ptlib.template import Batch

PACK_TOKENS = 256  # longest packed row (longer examples get a row of their own)


@dataclass
class Packing:
    """Where each packed token comes from, and where each target is predicted.

    R packed rows of C tokens; B examples padded to T in the batch; Ty target tokens.
    """

    source: torch.Tensor        # (R, C) long: flat index b * T + t into the padded batch
    position_ids: torch.Tensor  # (R, C) long: position within the token's own example
    targets: torch.Tensor       # (B, Ty) long: flat index r * C + c predicting target j of b

    def gather(self, padded: torch.Tensor) -> torch.Tensor:
        """``padded`` (B, T, ...) laid out packed: (R, C, ...). Fillers copy entry (0, 0)."""
        flat = padded.reshape(-1, *padded.shape[2:])  # (B * T, ...)
        return flat[self.source]


def _rows(lengths: list[int], capacity: int) -> tuple[list[int], list[int], int]:
    """Next-fit in the batch's own order: each example's packed row, its offset in that row,
    and the longest row's length."""
    capacity = max(capacity, *lengths)
    rows, offsets, row, used, longest = [], [], 0, 0, 0
    for length in lengths:
        if used + length > capacity:
            row, used = row + 1, 0
        rows.append(row)
        offsets.append(used)
        used += length
        longest = max(longest, used)
    return rows, offsets, longest


def pack(batch: Batch, capacity: int = PACK_TOKENS) -> Packing:
    """The packing of ``batch``'s real tokens into rows of at most ``capacity`` tokens (a row
    holds at least one whole example). Reads the B row lengths on the host (one small copy)."""
    mask = batch.attention_mask.bool()  # (B, T)
    size, width = mask.shape
    lengths = mask.sum(dim=1)  # (B,)
    host_lengths = lengths.tolist()
    rows, offsets, longest = _rows(host_lengths, capacity)
    device = mask.device
    example = torch.repeat_interleave(torch.arange(size, device=device), lengths,
                                      output_size=sum(host_lengths))  # (N,)
    starts = torch.cumsum(lengths, dim=0) - lengths  # (B,) first token of b in the stream
    within = torch.arange(example.numel(), device=device) - starts[example]  # (N,)
    first_real = mask.long().argmax(dim=1)  # (B,) padded column of b's first real token
    flat_starts = [row * longest + offset for row, offset in zip(rows, offsets, strict=True)]
    row_start = torch.tensor(flat_starts, device=device)  # (B,) flat packed index of b's start
    packed_at = row_start[example] + within  # (N,)
    total = (rows[-1] + 1) * longest
    source = torch.zeros(total, dtype=torch.long, device=device)
    source[packed_at] = example * width + first_real[example] + within
    position_ids = torch.zeros(total, dtype=torch.long, device=device)
    position_ids[packed_at] = within
    targets = row_start.unsqueeze(1) + batch.target_positions - first_real.unsqueeze(1)
    targets = torch.where(batch.target_mask, targets, row_start.unsqueeze(1))  # (B, Ty)
    return Packing(source.view(-1, longest), position_ids.view(-1, longest), targets)
