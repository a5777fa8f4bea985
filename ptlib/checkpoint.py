"""Atomic single-file storage: tensors in safetensors, everything else as JSON in its header.

One file per checkpoint means one ``os.replace`` makes it appear whole or not at all: an
interrupted write never leaves a half checkpoint behind. Every file carries a content hash
(sha256 over its tensors' names, dtypes, shapes and bytes and its metadata JSON), checked on
load: a damaged or edited file is a ``DamagedFileError`` naming it; a file from before the hash
loads with a warning. Prompt files for inference use the same format: continuous prompts
(kind ``prompt``: the (L, d) vectors), deep prompts (kind ``deep_prompt``: every layer's keys
and values, (L, D)) and discrete ones (kind ``slots``: the (L,) token ids),
with the template they fill and what they were made for (``ptlib.identity``), so that loading
one into another model or template is refused unless asked for.
"""

import dataclasses
import hashlib
import json
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ptlib.atomic import atomic_file
from ptlib.data import Task
from ptlib.deep_prompt import deep_shape, prefix_length
from ptlib.errors import ConfigError, DamagedFileError, FileError, ModelError, TemplateError
from ptlib.identity import facts_hash, model_differences, model_identity
from ptlib.model import LM
from ptlib.template import Template, parse_template

META_KEY = "ptlib"
HASH_KEY = "ptlib_sha256"
HEADER_KEYS = {META_KEY, HASH_KEY, "format"}  # "format": written by other safetensors writers
# a prompt file's kind -> its tensor, named as the keyword evaluate and generate take it by
PROMPT_TENSORS = {"prompt": "prompt", "slots": "slot_ids", "deep_prompt": "deep_prompt"}


def content_hash(tensors: dict[str, torch.Tensor], meta_text: str) -> str:
    """sha256 over each tensor's name, dtype, shape and bytes, in name order, then the
    metadata JSON text."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name]
        digest.update(json.dumps([name, str(tensor.dtype), list(tensor.shape)]).encode())
        digest.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    digest.update(meta_text.encode())
    return digest.hexdigest()


def save_state(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    """Write ``tensors`` and JSON-able ``meta`` to ``path`` atomically (temp file + replace)."""
    path = Path(path)
    plain = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    text = json.dumps(meta)
    with atomic_file(path) as staging:
        save_file(plain, staging, metadata={META_KEY: text, HASH_KEY: content_hash(plain, text)})
    return path


def load_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a file written by ``save_state``: (tensors, meta), its content hash checked."""
    path = Path(path)
    if not path.is_file():
        raise FileError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        tensors = load_file(str(path))
        text = header.get(META_KEY, "{}")
        meta = json.loads(text)
    except (OSError, SafetensorError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DamagedFileError(f"{path}: not a readable ptlib file: damaged, or of another "
                               f"format ({err})") from err
    unknown = sorted(set(header) - HEADER_KEYS)
    if unknown:
        raise DamagedFileError(f"{path}: unexpected header entries {unknown}: damaged, or not "
                               "written by ptlib")
    if not isinstance(meta, dict):
        raise DamagedFileError(f"{path}: its ptlib metadata is not a JSON object")
    _check_hash(path, tensors, text, header.get(HASH_KEY))
    return tensors, meta


def _check_hash(path: Path, tensors: dict[str, torch.Tensor], text: str,
                stored: str | None) -> None:
    """``DamagedFileError`` when the content hash does not match; a warning when the file has
    none (written by a ptlib from before the hash)."""
    if stored is None:
        warnings.warn(f"{path}: written without a content hash (by an older ptlib), so damage "
                      "to it cannot be detected: save it again to add one", stacklevel=3)
        return
    if content_hash(tensors, text) != stored:
        raise DamagedFileError(f"{path}: its content does not match the hash written with it "
                               "(the file was damaged or edited): use another copy or rerun")


def prompt_width(lm: LM, kind: str) -> int:
    """The width a ``kind`` prompt has on ``lm``: d, or D for a deep prompt."""
    return deep_shape(lm.model).width if kind == "deep_prompt" else lm.width


def _check_vectors(prompt: torch.Tensor, template: Template, model: LM | str,
                   kind: str) -> None:
    """A prompt to save must be finite (L, d) (a deep prompt: (L, D)), L the template's slots,
    d (D) the model's width."""
    if not isinstance(prompt, torch.Tensor) or prompt.dim() != 2 or prompt.shape[1] == 0:
        shape = tuple(prompt.shape) if isinstance(prompt, torch.Tensor) else type(prompt)
        raise TemplateError(f"a prompt is (L, d) vectors, got {shape}: for template "
                            f"{template.text!r}, L = {template.num_slots}")
    if prompt.shape[0] != template.num_slots:
        raise TemplateError(f"the prompt has {prompt.shape[0]} vectors but template "
                            f"{template.text!r} has {template.num_slots} slots")
    if isinstance(model, LM) and prompt.shape[1] != prompt_width(model, kind):
        raise ModelError(f"prompt width {prompt.shape[1]} does not match the width "
                         f"{prompt_width(model, kind)} of a {kind} on {model.name!r}")
    if not torch.isfinite(prompt).all():
        raise ConfigError("the prompt holds non-finite values (NaN or inf): it was not saved; "
                          "save a prompt from a run that stayed finite")


def _made_for(model: LM | str, task: Task | None, config) -> dict:
    """What a prompt file records about its origin: the model's name and, given an ``LM``,
    its tokenizer fingerprint and embedding shape; the task's name and facts hash; the config
    (a ``TrainConfig`` or ``SearchConfig``) as a dict."""
    if isinstance(model, LM):
        identity = model_identity(model)
        made = {"model": identity["name"], "tokenizer": identity["tokenizer"],
                "embedding": identity["embedding"]}
    elif isinstance(model, str):
        made = {"model": model}
    else:
        raise ConfigError(f"model must be an LM or a model name, got {type(model).__name__}")
    if task is not None:
        made["task"] = {"name": task.name, "facts": facts_hash(task.facts)}
    if config is not None:
        made["config"] = dataclasses.asdict(config)
    return made


def save_prompt(path: str | Path, prompt: torch.Tensor, template: str | Template,
                model: LM | str, *, task: Task | None = None, config=None,
                deep: bool = False) -> Path:
    """Save prompt vectors (L, d), or with ``deep`` a deep prompt (L, D), with the template
    they fill and what they were made for: ``model`` is the ``LM`` (its name, tokenizer
    fingerprint and embedding shape are recorded) or just its name; ``task`` (its name and
    facts hash) and ``config`` (a ``TrainConfig``) are optional. A prompt that does not fit
    the template (or, given an ``LM``, the model), or is not finite, is refused."""
    parsed = parse_template(getattr(template, "text", template), require_slots=True)
    kind = "deep_prompt" if deep else "prompt"
    if deep:
        prefix_length(parsed)
    _check_vectors(prompt, parsed, model, kind)
    meta = {"kind": kind, "template": parsed.text, "num_slots": prompt.shape[0],
            "width": prompt.shape[1]} | _made_for(model, task, config)
    return save_state(path, {PROMPT_TENSORS[kind]: prompt.detach().float()}, meta)


def save_slots(path: str | Path, slot_ids: torch.Tensor, template: str | Template,
               model: LM | str, *, task: Task | None = None, config=None) -> Path:
    """Save a discrete prompt, its slot token ids (L,), like ``save_prompt`` (``config``: a
    ``SearchConfig``); evaluate it with ``evaluate(..., slot_ids=ids)``."""
    parsed = parse_template(getattr(template, "text", template), require_slots=True)
    if not isinstance(slot_ids, torch.Tensor) or slot_ids.dim() != 1 \
            or slot_ids.shape[0] != parsed.num_slots:
        raise TemplateError(f"slot ids must be (L,) = ({parsed.num_slots},) for template "
                            f"{parsed.text!r}, got {getattr(slot_ids, 'shape', slot_ids)}")
    meta = {"kind": "slots", "template": parsed.text, "num_slots": parsed.num_slots} \
        | _made_for(model, task, config)
    return save_state(path, {"slot_ids": slot_ids.detach().long()}, meta)


def _check_saved_values(path: Path, values: torch.Tensor, meta: dict) -> None:
    """A prompt file's tensor fits its template: (L, d) finite vectors or (L,) ids."""
    try:
        slots = parse_template(meta.get("template"), require_slots=True).num_slots
    except TemplateError as err:
        raise FileError(f"{path}: its template cannot be used ({err})") from err
    want_dims = 1 if meta["kind"] == "slots" else 2
    if values.dim() != want_dims or values.shape[0] != slots:
        raise FileError(f"{path}: holds a tensor of shape {tuple(values.shape)}, which does not "
                        f"fill its template's {slots} slots")
    if values.is_floating_point() and not torch.isfinite(values).all():
        raise FileError(f"{path}: the prompt holds non-finite values (NaN or inf)")


def _check_model(path: Path, meta: dict, lm: LM, allow_other_model: bool) -> None:
    """``ModelError`` naming what differs when the file was made for another model than
    ``lm`` (its name, tokenizer fingerprint or embedding shape), unless ``allow_other_model``."""
    saved = {"name": meta.get("model"), "tokenizer": meta.get("tokenizer"),
             "embedding": meta.get("embedding")}
    differences = model_differences(saved, model_identity(lm))
    if differences and not allow_other_model:
        raise ModelError(f"{path}: saved for another model ({'; '.join(differences)}): load "
                         "it into that model, or pass allow_other_model=True (--allow-other-"
                         "model) to transfer it deliberately")


def read_prompt_file(path: str | Path, lm: LM | None = None, *, width: int | None = None,
                     template: str | None = None, allow_other_model: bool = False
                     ) -> tuple[torch.Tensor, dict]:
    """Any kind of prompt file, checked: (vectors (L, d) fp32, meta) for kind ``prompt``,
    (deep prompt (L, D) fp32, meta) for ``deep_prompt``, (token ids (L,) long, meta) for
    ``slots``. Given ``lm``, the file must have been made for it (name, tokenizer fingerprint,
    embedding shape) unless ``allow_other_model``, and must fit it; given ``template``, it
    must be the file's. ``prompt_argument`` turns the result into ``evaluate``'s keyword."""
    path = Path(path)
    tensors, meta = load_state(path)
    key = PROMPT_TENSORS.get(meta.get("kind"))
    if key is None or key not in tensors:
        raise FileError(f"{path}: not a prompt file (written by ptlib.save_prompt or "
                        "ptlib.save_slots)")
    values = tensors[key]
    _check_saved_values(path, values, meta)
    if template is not None and getattr(template, "text", template) != meta["template"]:
        raise TemplateError(f"{path}: saved for template {meta['template']!r}, not "
                            f"{getattr(template, 'text', template)!r}")
    if lm is not None:
        _check_model(path, meta, lm, allow_other_model)
        width = prompt_width(lm, meta["kind"]) if width is None else width
    if width is not None and values.dim() == 2 and values.shape[1] != width:
        raise ModelError(f"{path}: prompt width {values.shape[1]} does not match the model's "
                         f"width {width} (it was trained for {meta.get('model')!r})")
    if lm is not None and values.dim() == 1 and (values.min() < 0
                                                 or values.max() >= lm.vocab_size):
        raise ModelError(f"{path}: its token ids {values.tolist()} are not all in the "
                         f"vocabulary of {lm.name!r} (0 to {lm.vocab_size - 1})")
    return values, meta


def load_prompt(path: str | Path, width: int | None = None, *, lm: LM | None = None,
                template: str | None = None, allow_other_model: bool = False
                ) -> tuple[torch.Tensor, dict]:
    """Load prompt vectors (L, d) and their metadata, checked as ``read_prompt_file`` does
    (``width``: the model's d, when no ``lm`` is given)."""
    values, meta = read_prompt_file(path, lm, width=width, template=template,
                                    allow_other_model=allow_other_model)
    if meta["kind"] != "prompt":
        what = {"slots": "a discrete prompt (slot token ids)",
                "deep_prompt": "a deep prompt (every layer's keys and values)"}[meta["kind"]]
        raise FileError(f"{path}: holds {what}, not (L, d) vectors: read it with "
                        f"ptlib.read_prompt_file and evaluate it with "
                        f"{PROMPT_TENSORS[meta['kind']]}=")
    return values, meta


def prompt_argument(values: torch.Tensor, meta: dict, device: torch.device | str = "cpu"
                    ) -> dict:
    """A prompt file's tensor as the keyword ``evaluate`` and ``generate`` take it by:
    ``{"prompt": ...}``, ``{"deep_prompt": ...}`` or ``{"slot_ids": ...}``."""
    return {PROMPT_TENSORS[meta["kind"]]: values.to(device)}
