"""One template language for every method, and the batch builder that serves them all.

A template is fixed text with exactly one input placeholder ``{x}`` and any number of prompt
slots ``[P]``. The target object is always appended after the template, separated by one space:

- manual prompt (no slots):          ``"The capital of {x} is"``
- P-Tuning's (3, x, 3) placement:    ``"[P][P][P] {x} [P][P][P]"``
- a manual prompt with slots added:  ``"The capital of {x} is [P][P]"``

AutoPrompt fills the slots with token ids, P-Tuning with vectors; both go through ``build_batch``.
"""

import functools
import re
from dataclasses import dataclass

import torch

from ptlib.errors import TemplateError

SLOT = "[P]"
INPUT = "{x}"
_PIECE = re.compile(r"(\[P\]|\{x\})")
_NEAR_SLOT = re.compile(r"\[\s*[pP]\s*\]")  # [p], [P ], [ P ]: meant as slots, read as text


@dataclass(frozen=True)
class Template:
    """A parsed template: ``pieces`` alternate text, ``INPUT`` and ``SLOT`` markers."""

    text: str
    pieces: tuple[str, ...]

    @property
    def num_slots(self) -> int:
        """How many prompt slots (L) the template holds."""
        return sum(piece == SLOT for piece in self.pieces)

    def chunks(self, subject: str) -> list[str | None]:
        """Split the filled-in template at its slots: text chunks, with ``None`` for each slot.

        Whitespace right before a slot is dropped: a slot stands for one whole token, and in
        ``"{x} [P]"`` the space would otherwise be encoded as a lone space token.
        """
        out: list[str | None] = []
        text = ""
        for piece in self.pieces:
            if piece == SLOT:
                text = text.rstrip()
                if text:
                    out.append(text)
                out.append(None)
                text = ""
            else:
                text += subject if piece == INPUT else piece
        if text:
            out.append(text)
        return out

    def render(self, subject: str, slot_text: str = SLOT) -> str:
        """The template as a string, with ``{x}`` filled and slots shown as ``slot_text``."""
        return "".join(slot_text if c is None else c for c in self.chunks(subject))


def parse_template(text: str, require_slots: bool = False) -> Template:
    """Parse ``text`` into a ``Template``; raise ``TemplateError`` naming what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise TemplateError(f"a template must be a non-empty string, got {text!r}")
    pieces = tuple(p for p in _PIECE.split(text) if p)
    if pieces.count(INPUT) != 1:
        raise TemplateError(
            f"template {text!r} must contain the input placeholder {INPUT} exactly once "
            f"(found {pieces.count(INPUT)})"
        )
    for piece in pieces:
        if piece not in (SLOT, INPUT) and ("{" in piece or "}" in piece):
            bad = re.search(r"\{[^}]*\}?|\}", piece).group(0)
            raise TemplateError(
                f"template {text!r} has an unknown placeholder {bad!r}: only {INPUT} and "
                f"{SLOT} are allowed"
            )
    _check_near_slots(text, pieces)
    if text != text.rstrip():
        raise TemplateError(
            f"template {text!r} ends with whitespace: the object is appended after one space"
        )
    template = Template(text, pieces)
    if require_slots and template.num_slots == 0:
        raise TemplateError(f"template {text!r} has no {SLOT} slots, but this method needs some")
    return template


def _check_near_slots(text: str, pieces: tuple[str, ...]) -> None:
    """A slot misspelt (``[p]``, ``[P ]``) would silently be literal text: refuse it."""
    for piece in pieces:
        near = _NEAR_SLOT.search(piece) if piece not in (SLOT, INPUT) else None
        if near:
            raise TemplateError(f"template {text!r} has {near.group(0)!r}, which is not a "
                                f"prompt slot: write {SLOT} (capital P, no spaces)")


@dataclass
class Batch:
    """Token ids and index tensors for B examples of one template, padded to length T.

    Slot positions hold ``pad`` ids until a method fills them; ``Ty`` is the longest target.
    """

    input_ids: torch.Tensor       # (B, T) long
    attention_mask: torch.Tensor  # (B, T) long, 1 on real tokens
    position_ids: torch.Tensor    # (B, T) long, cumsum(mask) - 1, so padding side is invisible
    slot_index: torch.Tensor      # (B, T) long, k at the k-th slot, -1 elsewhere
    target_ids: torch.Tensor      # (B, Ty) long, pad beyond each target's length
    target_positions: torch.Tensor  # (B, Ty) long, position whose logits predict target j
    target_mask: torch.Tensor     # (B, Ty) bool

    def to(self, device: torch.device) -> "Batch":
        """The same batch on ``device``."""
        return Batch(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))

    @property
    def size(self) -> int:
        return self.input_ids.shape[0]


def encode_target(tokenizer, obj: str) -> list[int]:
    """Token ids of the object as it follows the template: one space, then the object."""
    return tokenizer(" " + obj, add_special_tokens=False).input_ids


def encode_prompt_part(tokenizer, pad_id: int, template: Template, subject: str
                       ) -> tuple[list[int], list[int]]:
    """Ids of the template filled with ``subject`` (``pad_id`` at each slot) and their slot
    indices (k at the k-th slot, -1 elsewhere), encoded chunk by chunk between the slots."""
    ids, slots = [], []
    for chunk in template.chunks(subject):
        if chunk is None:
            slots.append(max(slots, default=-1) + 1)
            ids.append(pad_id)
        else:
            piece = tokenizer(chunk, add_special_tokens=False).input_ids
            ids.extend(piece)
            slots.extend([-1] * len(piece))
    return ids, slots


@functools.lru_cache(maxsize=2**16)
def _encode_example(tokenizer, pad_id: int, template: Template, subject: str, obj: str
                    ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Ids of one (prompt + target) sequence, its slot indices (``pad_id`` fills the slots)
    and its target ids.

    Cached per tokenizer, pad id, template and pair: training meets every fact once per epoch,
    and on a GPU the tokenising is CPU time the GPU waits for (``bench/batch_build.py`` measures
    it). A tokenizer changed in place after use (tokens added to it) is not noticed: load it
    anew."""
    ids, slots = encode_prompt_part(tokenizer, pad_id, template, subject)
    target = encode_target(tokenizer, obj)
    if not target:
        raise TemplateError(f"object {obj!r} of subject {subject!r} tokenises to nothing")
    return tuple(ids + target), tuple(slots + [-1] * len(target)), tuple(target)


def build_batch(tokenizer, template: Template, subjects: list[str], objects: list[str],
                padding_side: str = "left") -> Batch:
    """Encode (subject, object) pairs under ``template`` into one padded ``Batch``.

    The sequence is prompt followed by target; the logits at position p predict token p + 1,
    so target token j at position t_j is scored at ``target_positions = t_j - 1``. Training and
    evaluation both read these positions, so they always score the same thing.
    """
    if padding_side not in ("left", "right"):
        raise TemplateError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    if len(subjects) != len(objects) or not subjects:
        raise TemplateError("build_batch needs as many objects as subjects, and at least one")
    pad = tokenizer.pad_token_id
    pairs = zip(subjects, objects, strict=True)
    encoded = [_encode_example(tokenizer, pad, template, s, o) for s, o in pairs]
    width = max(len(ids) for ids, _, _ in encoded)
    target_width = max(len(t) for _, _, t in encoded)

    def padded(row: tuple, fill, length: int = width) -> list:
        gap = [fill] * (length - len(row))
        return gap + list(row) if padding_side == "left" else list(row) + gap

    input_ids = torch.tensor([padded(ids, pad) for ids, _, _ in encoded], dtype=torch.long)
    mask = torch.tensor([padded((1,) * len(ids), 0) for ids, _, _ in encoded], dtype=torch.long)
    slot_index = torch.tensor([padded(slots, -1) for _, slots, _ in encoded], dtype=torch.long)
    target_ids = torch.tensor([list(t) + [pad] * (target_width - len(t))
                               for _, _, t in encoded], dtype=torch.long)
    # target j of a row sits at (row start + len(ids) - len(target) + j); its logit one earlier
    ends = [(width if padding_side == "left" else len(ids)) - len(t) - 1
            for ids, _, t in encoded]
    target_positions = torch.tensor([[end + j for j in range(len(t))]
                                     + [0] * (target_width - len(t))
                                     for end, (_, _, t) in zip(ends, encoded, strict=True)],
                                    dtype=torch.long)
    target_mask = torch.tensor([[True] * len(t) + [False] * (target_width - len(t))
                                for _, _, t in encoded], dtype=torch.bool)
    position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)
    return Batch(input_ids, mask, position_ids, slot_index, target_ids, target_positions,
                 target_mask)
