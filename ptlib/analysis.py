"""Where prompt vectors sit relative to the vocabulary, and what the loss looks like between
tokens.

E is the (V, d) embedding matrix; "the token manifold" here means its V rows. Functions take
(L, d) prompt vectors and answer: which tokens are closest, how far off the nearest token each
vector is, what norm it has against the token-norm distribution, what is lost by snapping it to
its nearest token, and how the loss changes along a path between two tokens. For deep prompts
the same question one level down: how long are a prompt's keys and values at each layer, against
the keys and values the model computes for real tokens there.
"""

import copy
from dataclasses import dataclass

import torch

from ptlib.data import Fact
from ptlib.deep_prompt import DeepShape, deep_shape, layer_keys_values
from ptlib.model import LM, cache_keyword
from ptlib.objective import evaluate
from ptlib.precision import DEFAULT_PRECISION
from ptlib.template import Template


def token_norms(lm: LM) -> torch.Tensor:
    """L2 norm of every row of E: (V,)."""
    return lm.embeddings.detach().float().norm(dim=1).cpu()


def _similarity(lm: LM, vectors: torch.Tensor, metric: str) -> torch.Tensor:
    """(L, V) similarity of each vector to each token: cosine, or negative L2 distance."""
    table = lm.embeddings.detach().float().cpu()  # (V, d)
    vectors = vectors.detach().float().cpu()  # (L, d)
    if metric == "cosine":
        return torch.nn.functional.normalize(vectors, dim=1) @ \
            torch.nn.functional.normalize(table, dim=1).T
    if metric == "l2":
        return -torch.cdist(vectors, table)
    raise ValueError(f"metric must be 'cosine' or 'l2', got {metric!r}")


def nearest_tokens(lm: LM, vectors: torch.Tensor, k: int = 5, metric: str = "cosine"
                   ) -> list[list[tuple[str, float]]]:
    """For each of the L vectors, its k nearest tokens as (text, cosine or L2 distance)."""
    values, ids = _similarity(lm, vectors, metric).topk(k, dim=1)  # (L, k)
    sign = 1.0 if metric == "cosine" else -1.0
    return [[(lm.tokenizer.decode([int(i)]), sign * float(v)) for v, i in zip(row_v, row_i,
                                                                              strict=True)]
            for row_v, row_i in zip(values, ids, strict=True)]


def nearest_token_ids(lm: LM, vectors: torch.Tensor, metric: str = "l2") -> torch.Tensor:
    """The id of each vector's nearest token: (L,)."""
    return _similarity(lm, vectors, metric).argmax(dim=1)


def distance_to_vocab(lm: LM, vectors: torch.Tensor) -> torch.Tensor:
    """L2 distance from each vector to its nearest token: (L,)."""
    return (-_similarity(lm, vectors, "l2")).min(dim=1).values


def token_gap(lm: LM, sample: int = 2000, seed: int = 0) -> torch.Tensor:
    """For a random sample of tokens, the L2 distance to their nearest *other* token: (sample,).
    The yardstick for "off the token manifold": how far apart real tokens sit."""
    generator = torch.Generator().manual_seed(seed)
    table = lm.embeddings.detach().float().cpu()
    picked = torch.randperm(table.shape[0], generator=generator)[:sample]
    distances = torch.cdist(table[picked], table)  # (sample, V)
    distances[torch.arange(len(picked)), picked] = torch.inf
    return distances.min(dim=1).values


@dataclass
class PCA:
    """A 2-D principal-component view fitted on token embeddings."""

    mean: torch.Tensor        # (d,)
    components: torch.Tensor  # (2, d)

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """(N, d) -> (N, 2)."""
        return (points.detach().float().cpu() - self.mean) @ self.components.T


def fit_pca(lm: LM, sample: int = 5000, seed: int = 0) -> PCA:
    """Fit a 2-D PCA on a random sample of the rows of E."""
    generator = torch.Generator().manual_seed(seed)
    table = lm.embeddings.detach().float().cpu()
    rows = table[torch.randperm(table.shape[0], generator=generator)[:sample]]
    mean = rows.mean(dim=0)
    _, _, basis = torch.pca_lowrank(rows - mean, q=2, center=False)  # basis: (d, 2)
    return PCA(mean, basis.T.contiguous())


def discretisation_gap(lm: LM, template: Template, facts: list[Fact], prompt: torch.Tensor,
                       precision: str = DEFAULT_PRECISION) -> dict:
    """EM of the continuous prompt against its projection onto the nearest tokens (L2)."""
    ids = nearest_token_ids(lm, prompt)
    continuous = evaluate(lm, template, facts, prompt=prompt.to(lm.device), precision=precision)
    snapped = evaluate(lm, template, facts, slot_ids=ids.to(lm.device), precision=precision)
    return {"continuous_exact_match": continuous.exact_match,
            "snapped_exact_match": snapped.exact_match, "continuous_nll": continuous.nll,
            "snapped_nll": snapped.nll,
            "snapped_tokens": [lm.tokenizer.decode([int(i)]) for i in ids]}


@dataclass
class PathLosses:
    """The loss along the segment from token a to token b in one slot."""

    alpha: torch.Tensor       # (S,) position along the path, 0 at a, 1 at b
    continuous: torch.Tensor  # (S,) loss with the slot holding (1 - alpha) E[a] + alpha E[b]
    discrete: torch.Tensor    # (S,) loss with the slot holding the token nearest that point
    snapped: list[str]        # (S,) the nearest token's text at each alpha


def path_losses(lm: LM, template: Template, facts: list[Fact], slot_ids: torch.Tensor,
                position: int, token_a: int, token_b: int, points: int = 21) -> PathLosses:
    """Mean NLL over ``facts`` as slot ``position`` moves from token a to token b.

    Standing anywhere (continuous) the loss is a smooth curve; allowed to stand only on tokens
    (each point snapped to its nearest token) it is a step function.
    """
    table = lm.embeddings.detach().float()
    base = table[slot_ids.to(table.device)]  # (L, d)
    alphas = torch.linspace(0.0, 1.0, points)
    continuous, discrete, snapped = [], [], []
    token_nll: dict[int, float] = {}  # neighbouring points often snap to the same token
    for alpha in alphas.tolist():
        point = (1 - alpha) * table[token_a] + alpha * table[token_b]  # (d,)
        prompt = base.clone()
        prompt[position] = point
        continuous.append(evaluate(lm, template, facts, prompt=prompt).nll)
        nearest = int(nearest_token_ids(lm, point.unsqueeze(0))[0])
        if nearest not in token_nll:
            ids = slot_ids.clone()
            ids[position] = nearest
            token_nll[nearest] = evaluate(lm, template, facts, slot_ids=ids.to(lm.device)).nll
        discrete.append(token_nll[nearest])
        snapped.append(lm.tokenizer.decode([nearest]))
    return PathLosses(alphas, torch.tensor(continuous), torch.tensor(discrete), snapped)


def _text_ids(lm: LM, text: str) -> torch.Tensor:
    """``text`` tokenised as templates are (no special tokens): (1, T) on the LM's device."""
    ids = lm.tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
    return ids.to(lm.device)


@torch.no_grad()
def next_token_top_k(lm: LM, text: str, k: int = 5) -> list[tuple[str, float]]:
    """The k most probable next tokens after ``text``, as (token text, probability).

    One forward of the (1, T) token ids; the softmax of the last position's logits (V,) is
    ranked. ``text`` is tokenised without special tokens, as every template is.
    """
    logits = lm.model(input_ids=_text_ids(lm, text)).logits[0, -1].float()  # (V,)
    probs, ids = torch.softmax(logits, dim=-1).topk(k)  # (k,), (k,)
    return [(lm.tokenizer.decode([int(i)]), float(p)) for p, i in zip(probs, ids, strict=True)]


@torch.no_grad()
def greedy_continuation(lm: LM, text: str, max_new_tokens: int = 5) -> str:
    """The greedy (argmax at every step) continuation of ``text``: the new tokens, decoded.

    Runs ``max_new_tokens`` full forwards of the growing (1, T + t) ids (no KV cache: meant for a
    handful of tokens), so it is exactly the model's next-token argmax, step after step.
    """
    ids = _text_ids(lm, text)  # (1, T)
    start = ids.shape[1]
    for _ in range(max_new_tokens):
        logits = lm.model(input_ids=ids).logits[0, -1]  # (V,)
        ids = torch.cat([ids, logits.argmax().view(1, 1)], dim=1)  # (1, T + t + 1)
    return lm.tokenizer.decode(ids[0, start:].tolist())


def _head_norms(states: torch.Tensor) -> torch.Tensor:
    """The L2 norm of every head's vector, flattened: (N,) from (..., head_dim) keys or
    values (N: the product of the leading dimensions, heads and positions)."""
    return states.float().norm(dim=-1).flatten()


@torch.no_grad()
def model_kv_norms(lm: LM, texts: list[str]) -> torch.Tensor:
    """How long the keys and values the frozen model caches for real tokens are, per layer:
    (layers, 2), column 0 keys and column 1 values, each the median over the texts' tokens and
    the key/value heads of one head's L2 norm (``head_dim`` numbers).

    The scale a deep prompt's entries meet at each layer. Each text runs alone (no padding,
    tokenised as templates are); keys are read after the rotary embedding, which keeps norms.
    """
    if not texts:
        raise ValueError("model_kv_norms needs at least one text")
    layers = deep_shape(lm.model).layers
    per_layer: list[list[torch.Tensor]] = [[] for _ in range(layers)]
    for text in texts:
        out = lm.model(input_ids=_text_ids(lm, text), use_cache=True)
        cache = getattr(out, cache_keyword(lm.model))
        for layer in range(layers):
            entry = cache.layers[layer]
            per_layer[layer].append(torch.stack([  # (2, kv_heads * T)
                _head_norms(entry.keys[0]), _head_norms(entry.values[0])]))
    return torch.stack([torch.cat(norms, dim=1).median(dim=1).values.cpu()
                        for norms in per_layer])


def deep_prompt_kv_norms(prompt: torch.Tensor, shape: DeepShape) -> torch.Tensor:
    """How long a deep prompt's keys and values are, per layer: (layers, 2) from the (L, D)
    prompt, laid out as ``model_kv_norms`` (the median over its L entries and the key/value
    heads of one head's L2 norm). An N(0, 1) prompt gives about sqrt(head_dim) everywhere."""
    pairs = layer_keys_values(prompt.detach().float().cpu(), shape, rows=1)
    return torch.tensor([[_head_norms(keys).median(), _head_norms(values).median()]
                         for keys, values in pairs])


def position_coupling(encoder: torch.nn.Module, seed: int = 0) -> torch.Tensor:
    """How strongly each output prompt vector depends on each input row: (L, L).

    theta = encoder() is the (L, d) prompt and s is the (L, d) table the encoder names as its
    ``position_inputs``: the seed embedding of an LSTM or MLP encoder, or the vectors themselves
    for free vectors. Entry (i, j) is ||(d theta_i / d s_j) u_j||, the speed at which output
    vector i moves when input row j moves along a random unit direction u_j (fixed by ``seed``),
    computed exactly by one Jacobian-vector product per row (L in all, cheap at any width).
    Off-diagonal entries are the coupling between positions: zero for free vectors and for the
    position-wise MLP, non-zero everywhere for the bidirectional LSTM.
    """
    name = encoder.position_inputs
    table = dict(encoder.named_parameters())[name].detach()  # (L, d)
    generator = torch.Generator().manual_seed(seed)

    def produce(rows: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(encoder, {name: rows}, ())  # (L, d)

    columns = []
    for row in range(table.shape[0]):
        direction = torch.zeros_like(table)  # (L, d), non-zero only in row j
        draw = torch.randn(table.shape[1], generator=generator)
        direction[row] = (draw / draw.norm()).to(table)
        _, moved = torch.autograd.functional.jvp(produce, table, direction)  # (L, d)
        columns.append(moved.norm(dim=1))  # (L,)
    return torch.stack(columns, dim=1)  # (L, L): [i, j]


def update_coupling(encoder: torch.nn.Module, seed: int = 0) -> torch.Tensor:
    """How a gradient step aimed at one output vector moves the others: (L, L).

    J = d theta / d phi is the Jacobian of the (L, d) prompt with respect to all the encoder's
    parameters phi, J_i its rows for output vector i. A loss that only cares about slot j along a
    random unit direction u_j (fixed by ``seed``) has gradient J_j^T u_j; one plain gradient step
    along it moves output i, to first order, by J_i J_j^T u_j. Entry (i, j) is that movement's
    norm per unit learning rate, computed exactly (one backward and one Jacobian-vector product
    per slot). Free vectors give a diagonal (each slot owns its parameters); the MLP and the LSTM
    give dense matrices, because their weights are shared by every slot.
    """
    named = [(name, p) for name, p in encoder.named_parameters() if p.requires_grad]
    names, params = [name for name, _ in named], [p for _, p in named]
    generator = torch.Generator().manual_seed(seed)

    def produce(*values: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(encoder, dict(zip(names, values, strict=True)), ())

    columns = []
    for slot in range(encoder().shape[0]):
        draw = torch.randn(encoder().shape[1], generator=generator)
        direction = (draw / draw.norm()).to(params[0])  # (d,)
        grads = torch.autograd.grad(encoder()[slot] @ direction, params, allow_unused=True)
        grads = tuple(torch.zeros_like(p) if g is None else g
                      for p, g in zip(params, grads, strict=True))
        _, moved = torch.autograd.functional.jvp(produce, tuple(p.detach() for p in params),
                                                 grads)  # (L, d)
        columns.append(moved.norm(dim=1))  # (L,)
    return torch.stack(columns, dim=1)  # (L, L): [i, j]


def first_step_move(encoder: torch.nn.Module, lr: float, pull: torch.Tensor) -> torch.Tensor:
    """How far the first AdamW step (weight decay 0) at ``lr`` moves each prompt vector: (L,).

    The loss is <pull, theta> for the (L, d) prompt theta = encoder(), so the pull (L, d) is
    the direction the loss drives the prompt. At its first step AdamW moves every trainable
    parameter by lr times the sign of its gradient (m/sqrt(v) is +-1), whatever the gradient's
    size: free vectors' coordinates move by lr each, a vector by lr * sqrt(d); an encoder's
    prompt moves by the sum of all its weights' moves carried through the network, which is
    the effective step size a reparameterisation gives a learning rate. Works on a copy: the
    encoder is left as it was. Returns the L2 distance each output vector moved."""
    fresh = copy.deepcopy(encoder)
    optimizer = torch.optim.AdamW([p for p in fresh.parameters() if p.requires_grad], lr=lr,
                                  weight_decay=0.0)
    before = fresh().detach().clone()  # (L, d)
    (fresh() * pull).sum().backward()
    optimizer.step()
    return (fresh().detach() - before).norm(dim=1)  # (L,)
