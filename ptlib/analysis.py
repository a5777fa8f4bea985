"""Where prompt vectors sit relative to the vocabulary, and what the loss looks like between
tokens.

E is the (V, d) embedding matrix; "the token manifold" here means its V rows. Functions take
(L, d) prompt vectors and answer: which tokens are closest, how far off the nearest token each
vector is, what norm it has against the token-norm distribution, what is lost by snapping it to
its nearest token, and how the loss changes along a path between two tokens.
"""

from dataclasses import dataclass

import torch

from ptlib.data import Fact
from ptlib.model import LM
from ptlib.objective import evaluate
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
                       precision: str = "fp32") -> dict:
    """P@1 of the continuous prompt against its projection onto the nearest tokens (L2)."""
    ids = nearest_token_ids(lm, prompt)
    continuous = evaluate(lm, template, facts, prompt=prompt.to(lm.device), precision=precision)
    snapped = evaluate(lm, template, facts, slot_ids=ids.to(lm.device), precision=precision)
    return {"continuous_p_at_1": continuous.p_at_1, "snapped_p_at_1": snapped.p_at_1,
            "continuous_nll": continuous.nll, "snapped_nll": snapped.nll,
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
    for alpha in alphas.tolist():
        point = (1 - alpha) * table[token_a] + alpha * table[token_b]  # (d,)
        prompt = base.clone()
        prompt[position] = point
        continuous.append(evaluate(lm, template, facts, prompt=prompt).nll)
        nearest = int(nearest_token_ids(lm, point.unsqueeze(0))[0])
        ids = slot_ids.clone()
        ids[position] = nearest
        discrete.append(evaluate(lm, template, facts, slot_ids=ids.to(lm.device)).nll)
        snapped.append(lm.tokenizer.decode([nearest]))
    return PathLosses(alphas, torch.tensor(continuous), torch.tensor(discrete), snapped)
