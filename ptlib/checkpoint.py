"""Atomic single-file storage: tensors in safetensors, everything else as JSON in its header.

One file per checkpoint means one ``os.replace`` makes it appear whole or not at all: an
interrupted write never leaves a half checkpoint behind. Prompt files for inference use the same
format with the (L, d) vectors, the template and the model's width.
"""

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ptlib.atomic import atomic_file
from ptlib.errors import ModelError, PTLibError

META_KEY = "ptlib"


def save_state(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    """Write ``tensors`` and JSON-able ``meta`` to ``path`` atomically (temp file + replace)."""
    path = Path(path)
    plain = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    with atomic_file(path) as staging:
        save_file(plain, staging, metadata={META_KEY: json.dumps(meta)})
    return path


def load_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a file written by ``save_state``: (tensors, meta)."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = json.loads((handle.metadata() or {}).get(META_KEY, "{}"))
        tensors = load_file(str(path))
    except (OSError, SafetensorError, json.JSONDecodeError) as err:
        raise PTLibError(f"{path}: not a readable ptlib file ({err})") from err
    if not isinstance(meta, dict):
        raise PTLibError(f"{path}: its ptlib metadata is not a JSON object")
    return tensors, meta


def save_prompt(path: str | Path, prompt: torch.Tensor, template: str, model_name: str) -> Path:
    """Save exported prompt vectors (L, d) with the template they fill and the model's name."""
    meta = {"kind": "prompt", "template": template, "model": model_name,
            "num_slots": prompt.shape[0], "width": prompt.shape[1]}
    return save_state(path, {"prompt": prompt.float()}, meta)


def load_prompt(path: str | Path, width: int | None = None) -> tuple[torch.Tensor, dict]:
    """Load prompt vectors (L, d) and their metadata; check the width against the model's."""
    tensors, meta = load_state(path)
    if meta.get("kind") != "prompt" or "prompt" not in tensors:
        raise PTLibError(f"{path}: not a prompt file (written by ptlib.save_prompt)")
    prompt = tensors["prompt"]
    if width is not None and prompt.shape[1] != width:
        raise ModelError(
            f"{path}: prompt width {prompt.shape[1]} does not match the model's width {width} "
            f"(it was trained for {meta.get('model')!r})"
        )
    return prompt, meta
