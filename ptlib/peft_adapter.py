"""Prompts in and out of Hugging Face PEFT adapters, without needing PEFT installed.

PEFT keeps a soft prompt as a folder with ``adapter_config.json`` and
``adapter_model.safetensors``, the latter holding one tensor ``prompt_embeddings``: (L, d) for
its input-layer types (PROMPT_TUNING, P_TUNING), (L, D) for PREFIX_TUNING, every layer's keys
and values in the layout ``ptlib.deep_prompt`` uses. Its types only *prepend* L virtual tokens,
so a ptlib prompt maps onto them exactly when its template is a prepend template:
``"[P]" * L + " {x} ..."``, every slot before the input and no slot after it. P-Tuning's (3, x, 3)
placement, or any slot after ``{x}``, has no PEFT counterpart. An input-layer prompt exports as
PROMPT_TUNING, a deep prompt as PREFIX_TUNING (without ``prefix_projection``: the vectors, not
an encoder, are kept).

For such a template, PEFT's model fed the token ids of the text after the slots (the
``input_text`` written beside the adapter, encoded with ``add_special_tokens=False``) gives the
same logits as ptlib, **on right-padded batches**: PEFT ignores ``position_ids`` for prompt
methods and numbers positions 0..L+T-1, which equals ptlib's positions only when padding comes
after the real tokens (``build_batch(..., padding_side="right")``).
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ptlib.atomic import atomic_file
from ptlib.deep_prompt import deep_shape
from ptlib.errors import ConfigError, ModelError, TemplateError
from ptlib.model import LM
from ptlib.template import INPUT, Template, parse_template

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
TEMPLATE_FILE = "ptlib_template.json"
TENSOR_KEY = "prompt_embeddings"
PROMPT_TYPES = ("PROMPT_TUNING", "P_TUNING")  # input-layer prompts, (L, d)
DEEP_TYPE = "PREFIX_TUNING"  # every layer's keys and values, (L, D)
TASK_TYPE = "CAUSAL_LM"


@dataclass(frozen=True)
class PeftAdapterInfo:
    """What an imported adapter says about itself."""

    peft_type: str             # PROMPT_TUNING, P_TUNING or PREFIX_TUNING
    num_virtual_tokens: int    # L
    token_dim: int             # d; for PREFIX_TUNING one layer's key width, kv_heads * head_dim
    base_model: str | None     # base_model_name_or_path, as written
    template: str | None       # the ptlib template, when ptlib_template.json is beside it
    config: dict               # the whole adapter_config.json

    @property
    def keyword(self) -> str:
        """How ``evaluate`` and ``generate`` take the vectors: ``prompt`` or ``deep_prompt``."""
        return "deep_prompt" if self.peft_type == DEEP_TYPE else "prompt"


# ---------------------------------------------------------------------------------------------
# export


def prepend_input_text(template: str | Template) -> str:
    """The text after the slots of a prepend template, with ``{x}`` still in it.

    ``"[P][P][P] {x} is"`` gives ``" {x} is"``. Raises ``ConfigError`` for any template that
    is not L >= 1 slots followed by text: PEFT's prompt types only prepend virtual tokens.
    """
    template = parse_template(getattr(template, "text", template))
    count = template.num_slots
    chunks = template.chunks(INPUT)  # None per slot, text chunks (with "{x}") between them
    if count and len(chunks) == count + 1 and all(c is None for c in chunks[:count]):
        return chunks[count]
    raise ConfigError(
        f"template {template.text!r} cannot be a PEFT prompt adapter: PEFT's prompt types "
        f"(PROMPT_TUNING, P_TUNING) only prepend virtual tokens before the input, so only a "
        f"template whose [P] slots all come first, like '[P][P][P] {{x}} is', can be exported "
        f"(this one has {count} slot(s), "
        + ("none of them" if count == 0 else "not all of them") + " at the very start)"
    )


def base_model_source(lm: LM, base_model_path: str | os.PathLike | None = None) -> str:
    """What ``base_model_name_or_path`` should say: the given path, else the LM's name (the
    embedded model's ``smollm2-135m``, a hub id), never a path of this machine's cache."""
    if base_model_path is not None:
        return str(base_model_path)
    return lm.name


def adapter_config(lm: LM, num_virtual_tokens: int, base_model: str, deep: bool = False
                   ) -> dict:
    """An ``adapter_config.json`` for L virtual tokens on ``lm``: PROMPT_TUNING (width d), or
    with ``deep`` PREFIX_TUNING (token_dim and num_attention_heads are the key/value width and
    heads, as PEFT sets them for grouped-query attention)."""
    config = lm.model.config
    common = {
        "task_type": TASK_TYPE,
        "base_model_name_or_path": base_model,
        "revision": None,
        "inference_mode": True,
        "num_virtual_tokens": num_virtual_tokens,
        "num_transformer_submodules": 1,
        "modules_to_save": None,
        "auto_mapping": None,
    }
    if deep:
        shape = deep_shape(lm.model)
        return common | {"peft_type": DEEP_TYPE, "token_dim": shape.kv_width,
                         "num_attention_heads": shape.kv_heads, "num_layers": shape.layers,
                         "encoder_hidden_size": shape.kv_width, "prefix_projection": False}
    return common | {
        "peft_type": "PROMPT_TUNING",
        "token_dim": lm.width,
        "num_attention_heads": getattr(config, "num_attention_heads", None),
        "num_layers": getattr(config, "num_hidden_layers", None),
        "prompt_tuning_init": "RANDOM",
        "prompt_tuning_init_text": None,
        "tokenizer_name_or_path": None,
        "tokenizer_kwargs": None,
    }


def template_record(template: Template, input_text: str, lm: LM) -> dict:
    """The ``ptlib_template.json`` written beside the adapter: how to format inputs for it."""
    return {
        "template": template.text,
        "num_virtual_tokens": template.num_slots,
        "input_text": input_text,
        "add_special_tokens": False,
        "padding_side": "right",
        "target_prefix": " ",
        "model": lm.name,
        "usage": (
            "PEFT prepends the virtual tokens itself: feed the model "
            "tokenizer(input_text.replace('{x}', subject), add_special_tokens=False); "
            "the answer follows after one space (target_prefix). Pad batches on the right."
        ),
    }


def _check_prompt(prompt: torch.Tensor, template: Template, lm: LM, width: int) -> None:
    """The prompt must be (L, width): L slots of the template, width the LM's d (or D)."""
    if prompt.dim() != 2 or prompt.shape[0] != template.num_slots:
        raise TemplateError(
            f"prompt of shape {tuple(prompt.shape)} does not fill template {template.text!r}: "
            f"expected ({template.num_slots}, {width})"
        )
    if prompt.shape[1] != width:
        raise ModelError(
            f"prompt width {prompt.shape[1]} does not match the width {width} it has on "
            f"{lm.name!r}"
        )


def _write_json(path: Path, data: dict) -> None:
    with atomic_file(path) as staging:
        staging.write_text(json.dumps(data, indent=2))


def export_peft_adapter(folder: str | os.PathLike, prompt: torch.Tensor,
                        template: str | Template, lm: LM, *,
                        base_model_path: str | os.PathLike | None = None,
                        deep: bool = False) -> Path:
    """Write ``prompt`` (L, d) as a PEFT PROMPT_TUNING adapter in ``folder`` (with ``deep``, a
    deep prompt (L, D) as a PREFIX_TUNING adapter); return the folder.

    ``template`` must be a prepend template (``"[P]" * L + " {x} ..."``); any other raises
    ``ConfigError``. The folder gets ``adapter_config.json``, ``adapter_model.safetensors``
    (``prompt_embeddings``: (L, d) fp32) and ``ptlib_template.json`` (the input text to format).
    ``base_model_name_or_path`` is ``base_model_path`` when given, else the LM's name (for the
    embedded model ``smollm2-135m``: pass its folder, ``ptlib.model.embedded_model_dir()``, as
    ``base_model_path`` for ``AutoPeftModelForCausalLM`` to find it). Load it with
    ``PeftModel.from_pretrained(base, folder)`` and feed right-padded batches (PEFT ignores
    position_ids for prompt methods).
    """
    template = parse_template(getattr(template, "text", template))
    input_text = prepend_input_text(template)
    _check_prompt(prompt, template, lm, deep_shape(lm.model).width if deep else lm.width)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vectors = prompt.detach().float().cpu().contiguous().clone()  # (L, d) or (L, D)
    with atomic_file(folder / WEIGHTS_FILE) as staging:
        save_file({TENSOR_KEY: vectors}, staging, {"format": "pt"})
    _write_json(folder / TEMPLATE_FILE, template_record(template, input_text, lm))
    config = adapter_config(lm, template.num_slots, base_model_source(lm, base_model_path),
                            deep)
    _write_json(folder / CONFIG_FILE, config)  # last: its presence marks a finished adapter
    return folder


# ---------------------------------------------------------------------------------------------
# import


def read_adapter_config(folder: Path) -> dict:
    """``adapter_config.json`` of ``folder`` as a dict; ``ModelError`` when missing or bad."""
    path = folder / CONFIG_FILE
    if not folder.is_dir():
        raise ModelError(f"{folder}: no such adapter folder")
    if not path.is_file():
        raise ModelError(f"{folder}: no {CONFIG_FILE}, so not a PEFT adapter folder")
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"{path}: not readable JSON ({err})") from err
    if not isinstance(config, dict):
        raise ModelError(f"{path}: not a JSON object")
    return config


def check_adapter_config(config: dict, where: Path) -> None:
    """Accept only CAUSAL_LM prompt adapters that prepend to the input: ``ConfigError`` names
    the field otherwise."""
    peft_type = config.get("peft_type")
    if peft_type not in (*PROMPT_TYPES, DEEP_TYPE):
        raise ConfigError(
            f"{where}: peft_type is {peft_type!r}, but ptlib imports only soft prompts "
            f"({', '.join(PROMPT_TYPES)}, and {DEEP_TYPE} as a deep prompt): other types change "
            f"the model's weights (LORA, ...), which a prompt cannot hold"
        )
    if config.get("task_type") != TASK_TYPE:
        raise ConfigError(
            f"{where}: task_type is {config.get('task_type')!r}, but ptlib steers causal LMs "
            f"({TASK_TYPE!r})"
        )
    if config.get("num_transformer_submodules", 1) not in (None, 1):
        raise ConfigError(f"{where}: num_transformer_submodules must be 1 for a causal LM, "
                          f"got {config.get('num_transformer_submodules')!r}")
    count = config.get("num_virtual_tokens")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ConfigError(f"{where}: num_virtual_tokens must be a positive integer, got {count!r}")


def read_prompt_tensor(folder: Path) -> torch.Tensor:
    """``prompt_embeddings`` from ``adapter_model.safetensors``: (rows, d) fp32 on CPU."""
    path = folder / WEIGHTS_FILE
    if not path.is_file():
        raise ModelError(f"{folder}: no {WEIGHTS_FILE} (an old adapter_model.bin must be saved "
                         f"again with PEFT's save_pretrained(..., safe_serialization=True))")
    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as err:
        raise ModelError(f"{path}: not a readable safetensors file ({err})") from err
    if TENSOR_KEY not in tensors:
        raise ModelError(f"{path}: no {TENSOR_KEY!r} tensor (found {sorted(tensors)[:5]})")
    return tensors[TENSOR_KEY].detach().float().contiguous()


def _saved_width(config: dict) -> int | None:
    """The width the tensor must have: token_dim, or for PREFIX_TUNING num_layers x 2 x
    token_dim (every layer's key and value)."""
    width = config.get("token_dim")
    if config["peft_type"] != DEEP_TYPE or width is None:
        return width
    return config.get("num_layers", 0) * 2 * width


def check_prompt_shape(vectors: torch.Tensor, config: dict, where: Path,
                       lm: LM | None) -> None:
    """The tensor must be (num_virtual_tokens, width), width the config's and the LM's: d
    for an input-layer prompt, D for PREFIX_TUNING (``ptlib.deep_prompt``)."""
    count, width = config["num_virtual_tokens"], _saved_width(config)
    if vectors.dim() != 2 or vectors.shape[0] != count:
        raise ConfigError(
            f"{where}: {TENSOR_KEY} has shape {tuple(vectors.shape)}, but num_virtual_tokens is "
            f"{count}: expected ({count}, token_dim)"
        )
    if width is not None and vectors.shape[1] != width:
        name = "num_layers x 2 x token_dim" if config["peft_type"] == DEEP_TYPE else "token_dim"
        raise ConfigError(f"{where}: {TENSOR_KEY} has width {vectors.shape[1]}, but {name} "
                          f"is {width}")
    expected = None if lm is None else \
        deep_shape(lm.model).width if config["peft_type"] == DEEP_TYPE else lm.width
    if expected is not None and vectors.shape[1] != expected:
        raise ModelError(
            f"{where}: the adapter's vectors have width {vectors.shape[1]}, but {lm.name!r} "
            f"needs width {expected} (the adapter was made for "
            f"{config.get('base_model_name_or_path')!r})"
        )


def read_template(folder: Path, count: int) -> str | None:
    """The ptlib template written by ``export_peft_adapter``, when there is one and it fits."""
    path = folder / TEMPLATE_FILE
    if not path.is_file():
        return None
    try:
        text = json.loads(path.read_text()).get("template")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as err:
        raise ModelError(f"{path}: not a ptlib template record ({err})") from err
    prepend_input_text(text)
    if parse_template(text).num_slots != count:
        raise ConfigError(f"{path}: template {text!r} does not have {count} slots")
    return text


def import_peft_adapter(folder: str | os.PathLike, *,
                        lm: LM | None = None) -> tuple[torch.Tensor, PeftAdapterInfo]:
    """Read a PEFT PROMPT_TUNING, P_TUNING or PREFIX_TUNING adapter: (vectors fp32 on CPU,
    info).

    For P_TUNING (and PREFIX_TUNING with prefix_projection), PEFT saves the vectors its encoder
    produced (the encoder itself is dropped), so every type gives plain vectors: (L, d), usable
    as ``prompt=``, or for PREFIX_TUNING a deep prompt (L, D), usable as ``deep_prompt=``
    (``info.keyword`` says which), for a prepend template with L slots. Checks peft_type,
    task_type (CAUSAL_LM), the tensor's shape against the config, and against ``lm`` when
    given.
    """
    folder = Path(folder)
    config = read_adapter_config(folder)
    check_adapter_config(config, folder)
    vectors = read_prompt_tensor(folder)
    check_prompt_shape(vectors, config, folder, lm)
    info = PeftAdapterInfo(
        peft_type=config["peft_type"],
        num_virtual_tokens=vectors.shape[0],
        token_dim=vectors.shape[1],
        base_model=config.get("base_model_name_or_path"),
        template=read_template(folder, vectors.shape[0]),
        config=config,
    )
    return vectors, info
