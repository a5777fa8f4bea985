"""Prompt encoders: modules whose ``forward()`` returns the L prompt vectors, (L, d).

- ``FreeVectors``: theta_1..theta_L trained directly, with the inits the literature uses.
- ``LSTMEncoder``: P-Tuning v1's reparameterisation, embedding(L, d) -> 2-layer bi-LSTM -> MLP.
- ``MLPEncoder``: PEFT's default P-Tuning reparameterisation, embedding(L, d) -> 3-layer MLP.

Each runs once per step; the (L, d) output is broadcast over the batch. ``export()`` gives the
plain vectors to keep for inference (the encoder is dropped), and they reproduce the encoder's
logits exactly.

Deep prompts (``ptlib.deep_prompt``) have encoders too, whose ``forward()`` returns (L, D),
every layer's keys and values for L virtual tokens (``deep = True``):

- ``DeepPrefix`` (``prefix``): the (L, D) values trained directly (P-Tuning v2);
- ``PrefixMLP`` (``prefix_mlp``): prefix tuning's reparameterisation, embedding(L, kv) ->
  Linear -> tanh -> Linear(D), as PEFT's PREFIX_TUNING with ``prefix_projection``.

Encoders are registered by name in ``ENCODERS``: a new one is one ``PromptEncoder`` subclass
with ``@register_encoder("name")`` and a ``build`` classmethod reading the ``EncoderOptions``
it needs; ``TrainConfig(encoder="name")`` and the CLI then accept it.
"""

import math
from dataclasses import dataclass

import torch
from torch import nn

from ptlib.deep_prompt import DeepShape
from ptlib.errors import ConfigError

FREE_INITS = ("normal", "normal_rescaled", "uniform", "vocab", "phrase")
ENCODERS: dict[str, type["PromptEncoder"]] = {}


@dataclass(frozen=True)
class EncoderOptions:
    """The settings an encoder's ``build`` may read (each encoder ignores the others)."""

    init: str = "normal_rescaled"     # free vectors: one of FREE_INITS
    phrase_ids: tuple[int, ...] = ()  # free vectors, init "phrase": tokens that seed the slots
    hidden_size: int | None = None    # lstm/mlp/prefix_mlp width; None: d (prefix_mlp: kv)
    deep_shape: DeepShape | None = None  # deep encoders: the model's layers, kv heads, head dim


def register_encoder(name: str):
    """Class decorator: make a ``PromptEncoder`` subclass buildable as ``encoder=name``."""
    def register(cls: type["PromptEncoder"]) -> type["PromptEncoder"]:
        ENCODERS[name] = cls
        cls.kind = name
        return cls
    return register


class PromptEncoder(nn.Module):
    """Base class: ``forward()`` -> (L, d) prompt vectors.

    ``position_inputs`` names the (L, d) parameter whose row i is position i's own input
    (what ``ptlib.analysis.position_coupling`` perturbs).
    """

    kind: str
    num_slots: int
    width: int
    position_inputs: str
    deep: bool = False        # True: forward() is a deep prompt (L, D), not input vectors (L, d)
    has_hidden_size: bool = False  # True: built with a hidden width (EncoderOptions.hidden_size)

    @classmethod
    def build(cls, num_slots: int, embeddings: torch.Tensor, generator: torch.Generator,
              options: EncoderOptions) -> "PromptEncoder":
        """A new encoder for L slots over E (V, d), drawn from ``generator``."""
        raise NotImplementedError

    @torch.no_grad()
    def export(self) -> torch.Tensor:
        """The prompt vectors to keep for inference, detached: (L, d) fp32 on CPU."""
        return self().detach().float().cpu().clone()


def typical_token_norm(embeddings: torch.Tensor) -> float:
    """Mean L2 norm of the rows of E (V, d): the scale a prompt vector should have."""
    return embeddings.float().norm(dim=1).mean().item()


def init_free_vectors(init: str, num_slots: int, embeddings: torch.Tensor,
                      generator: torch.Generator, phrase_ids: list[int] | None = None
                      ) -> torch.Tensor:
    """Initial values of free prompt vectors: (L, d).

    - ``normal``: N(0, I), the PyTorch and PEFT default (norm ~sqrt(d), far off the token scale);
    - ``normal_rescaled``: normal directions scaled to the mean token norm of E;
    - ``uniform``: U(-0.5, 0.5) per element (Lester et al.);
    - ``vocab``: rows of E for L tokens sampled uniformly from the vocabulary;
    - ``phrase``: rows of E for ``phrase_ids`` (OptiPrompt's init from a manual prompt),
      repeated or cut to L.
    """
    vocab, width = embeddings.shape
    shape = (num_slots, width)
    source = embeddings.detach().float().cpu()
    if init == "normal":
        return torch.randn(shape, generator=generator)
    if init == "normal_rescaled":
        direction = torch.randn(shape, generator=generator)
        return direction / direction.norm(dim=1, keepdim=True) * typical_token_norm(source)
    if init == "uniform":
        return torch.rand(shape, generator=generator) - 0.5
    if init == "vocab":
        return source[torch.randint(vocab, (num_slots,), generator=generator)].clone()
    if init == "phrase":
        if not phrase_ids:
            raise ConfigError("init 'phrase' needs init_phrase: text whose tokens seed the slots")
        repeats = math.ceil(num_slots / len(phrase_ids))
        return source[torch.tensor((phrase_ids * repeats)[:num_slots])].clone()
    raise ConfigError(f"unknown init {init!r}: choose one of {FREE_INITS}")


@register_encoder("free")
class FreeVectors(PromptEncoder):
    """theta in R^{L x d}, each row an independent trainable vector."""

    position_inputs = "vectors"

    def __init__(self, initial: torch.Tensor):
        super().__init__()
        self.num_slots, self.width = initial.shape
        self.vectors = nn.Parameter(initial.float().clone())  # (L, d)

    @classmethod
    def build(cls, num_slots, embeddings, generator, options):
        return cls(init_free_vectors(options.init, num_slots, embeddings, generator,
                                     list(options.phrase_ids)))

    def forward(self) -> torch.Tensor:
        return self.vectors  # (L, d)


class ReparameterisedEncoder(PromptEncoder):
    """Base of encoders that generate the prompt from L trainable seed embeddings (L, d) through
    a network of width ``hidden_size`` (default: the model width d)."""

    position_inputs = "seed_embedding.weight"
    has_hidden_size = True

    @classmethod
    def build(cls, num_slots, embeddings, generator, options):
        width = embeddings.shape[1]
        return cls(num_slots, width, options.hidden_size or width, generator)


@register_encoder("lstm")
class LSTMEncoder(ReparameterisedEncoder):
    """P-Tuning v1: h_i = MLP(biLSTM(e_1..e_L))_i, so every vector depends on every position.

    ``hidden`` is the LSTM's output width (hidden // 2 units per direction) and the MLP's
    width; the official code uses hidden = d.
    """

    def __init__(self, num_slots: int, width: int, hidden: int, generator: torch.Generator):
        super().__init__()
        if hidden < 2 or hidden % 2:
            raise ConfigError(f"hidden_size must be an even number >= 2, got {hidden}")
        self.num_slots, self.width = num_slots, width
        self.seed_embedding = nn.Embedding(num_slots, width)  # (L, d), N(0, 1) like the paper
        self.lstm = nn.LSTM(width, hidden // 2, num_layers=2, bidirectional=True,
                            batch_first=True)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, width))
        _reset_parameters(self, generator)

    def forward(self) -> torch.Tensor:
        seeds = self.seed_embedding.weight.unsqueeze(0)  # (1, L, d)
        states, _ = self.lstm(seeds)  # (1, L, hidden)
        return self.head(states).squeeze(0)  # (L, d)


@register_encoder("mlp")
class MLPEncoder(ReparameterisedEncoder):
    """PEFT's P-Tuning default: h_i = MLP(e_i); positions share weights but not inputs."""

    def __init__(self, num_slots: int, width: int, hidden: int, generator: torch.Generator):
        super().__init__()
        if hidden < 1:
            raise ConfigError(f"hidden_size must be positive, got {hidden}")
        self.num_slots, self.width = num_slots, width
        self.seed_embedding = nn.Embedding(num_slots, width)  # (L, d)
        self.mlp = nn.Sequential(
            nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, width),
        )
        _reset_parameters(self, generator)

    def forward(self) -> torch.Tensor:
        return self.mlp(self.seed_embedding.weight)  # (L, d)


def _deep_shape(options: EncoderOptions) -> DeepShape:
    if options.deep_shape is None:
        raise ConfigError("a deep prompt encoder needs the model's DeepShape "
                          "(build_encoder(..., deep_shape=ptlib.deep_prompt.deep_shape(model)))")
    return options.deep_shape


@register_encoder("prefix")
class DeepPrefix(PromptEncoder):
    """P-Tuning v2's deep prompt: every layer's L keys and values, (L, D), trained directly;
    drawn N(0, 1) as PEFT's PREFIX_TUNING embedding is."""

    position_inputs = "vectors"
    deep = True

    def __init__(self, initial: torch.Tensor):
        super().__init__()
        self.num_slots, self.width = initial.shape
        self.vectors = nn.Parameter(initial.float().clone())  # (L, D)

    @classmethod
    def build(cls, num_slots, embeddings, generator, options):
        shape = _deep_shape(options)
        return cls(torch.randn((num_slots, shape.width), generator=generator))

    def forward(self) -> torch.Tensor:
        return self.vectors  # (L, D)


@register_encoder("prefix_mlp")
class PrefixMLP(PromptEncoder):
    """Prefix tuning's reparameterisation: P = W_2 tanh(W_1 e_i + b_1) + b_2 for L seed
    embeddings e_i of the kv width (PEFT's token_dim); hidden width ``hidden_size`` (default:
    the kv width, PEFT's default encoder_hidden_size). Returns (L, D)."""

    position_inputs = "seed_embedding.weight"
    deep = True
    has_hidden_size = True

    def __init__(self, num_slots: int, shape: DeepShape, hidden: int,
                 generator: torch.Generator):
        super().__init__()
        if hidden < 1:
            raise ConfigError(f"hidden_size must be positive, got {hidden}")
        self.num_slots, self.width = num_slots, shape.width
        self.seed_embedding = nn.Embedding(num_slots, shape.kv_width)  # (L, kv)
        self.mlp = nn.Sequential(nn.Linear(shape.kv_width, hidden), nn.Tanh(),
                                 nn.Linear(hidden, shape.width))
        _reset_parameters(self, generator)

    @classmethod
    def build(cls, num_slots, embeddings, generator, options):
        shape = _deep_shape(options)
        return cls(num_slots, shape, options.hidden_size or shape.kv_width, generator)

    def forward(self) -> torch.Tensor:
        return self.mlp(self.seed_embedding.weight)  # (L, D)


def _uniform_(params, bound: float, generator: torch.Generator) -> None:
    for param in params:
        param.copy_((torch.rand(param.shape, generator=generator) * 2 - 1) * bound)


def _reset_parameters(module: nn.Module, generator: torch.Generator) -> None:
    """Redraw every parameter from ``generator`` with PyTorch's default scales, so an encoder's
    init depends on its seed alone, not on the global RNG."""
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, nn.Embedding):
                sub.weight.copy_(torch.randn(sub.weight.shape, generator=generator))
            elif isinstance(sub, nn.Linear):
                _uniform_(sub.parameters(), 1.0 / math.sqrt(sub.in_features), generator)
            elif isinstance(sub, nn.LSTM):
                _uniform_(sub.parameters(), 1.0 / math.sqrt(sub.hidden_size), generator)


def build_encoder(kind: str, num_slots: int, embeddings: torch.Tensor, seed: int,
                  init: str = "normal_rescaled", hidden_size: int | None = None,
                  phrase_ids: list[int] | None = None, deep_shape: DeepShape | None = None
                  ) -> PromptEncoder:
    """Build a registered prompt encoder (``ENCODERS``: free, lstm, mlp, prefix, prefix_mlp,
    ...) for L slots over E (V, d); deep encoders need the model's ``deep_shape``. Its
    parameters depend on ``seed`` alone, never on the global RNG."""
    if kind not in ENCODERS:
        raise ConfigError(f"unknown encoder {kind!r}: choose one of {tuple(ENCODERS)}")
    if num_slots < 1:
        raise ConfigError(f"a prompt encoder needs at least one slot, got {num_slots}")
    options = EncoderOptions(init, tuple(phrase_ids or ()), hidden_size, deep_shape)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # nn constructors draw from the global RNG
        return ENCODERS[kind].build(num_slots, embeddings, generator, options)


def prompt_keyword(kind: str) -> str:
    """The keyword that the objective, ``evaluate`` and ``generate`` take the prompt of a
    ``kind`` encoder by: ``deep_prompt`` for deep encoders, ``prompt`` for the others."""
    return "deep_prompt" if ENCODERS[kind].deep else "prompt"
