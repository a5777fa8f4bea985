"""Matplotlib figures for the course: each function returns a Figure with labelled axes.

Live curves during training go through ``LiveCurve``, which redraws one display handle instead
of clearing cell output.
"""

import matplotlib.pyplot as plt
import torch

from ptlib.analysis import PCA, PathLosses
from ptlib.discrete import SearchHistory
from ptlib.train import History


def token_norm_histogram(norms: torch.Tensor, marks: dict[str, float] | None = None):
    """Histogram of the token-embedding norms, with vertical lines at ``marks``."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.hist(norms.numpy(), bins=80, color="tab:blue", alpha=0.8)
    for (label, value), colour in zip((marks or {}).items(), ["tab:red", "tab:orange",
                                                               "tab:green", "tab:purple"],
                                      strict=False):
        ax.axvline(value, color=colour, linestyle="--", label=f"{label} ({value:.1f})")
    ax.set_xlabel("L2 norm of the embedding row")
    ax.set_ylabel("number of tokens")
    ax.set_title("How long are token embeddings?")
    if marks:
        ax.legend()
    fig.tight_layout()
    return fig


def path_plot(path: PathLosses, label_a: str, label_b: str):
    """Loss along the path a -> b: smooth when standing anywhere, steps when only on tokens."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(path.alpha, path.continuous, marker="o", ms=3, label="vector anywhere on the path")
    ax.step(path.alpha, path.discrete, where="mid", label="snapped to the nearest token")
    ax.set_xlabel(f"alpha (0 = {label_a!r}, 1 = {label_b!r})")
    ax.set_ylabel("mean NLL of the targets")
    ax.set_title("The loss between two tokens")
    ax.legend()
    fig.tight_layout()
    return fig


def search_curves(histories: dict[str, SearchHistory]):
    """Training objective of the kept prompt against sequence forwards spent."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name, history in histories.items():
        ax.plot(history.forwards, history.objective, label=name)
    ax.set_xlabel("sequence forwards spent")
    ax.set_ylabel("mean log P(y | x, P)")
    ax.set_title("Discrete search: objective against cost")
    ax.legend()
    fig.tight_layout()
    return fig


def training_curves(histories: dict[str, History], smooth: int = 5):
    """Training loss (smoothed) and dev P@1 per step, one line per run."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.5))
    for name, history in histories.items():
        loss = torch.tensor(history.loss)
        if smooth > 1 and len(loss) >= smooth:
            kernel = torch.ones(smooth) / smooth
            loss = torch.nn.functional.conv1d(loss.view(1, 1, -1), kernel.view(1, 1, -1)).view(-1)
        steps = history.step[len(history.step) - len(loss):]
        (line,) = left.plot(steps, loss.tolist(), label=name)
        right.plot(history.eval_step, history.dev_p_at_1, marker="o", ms=3,
                   color=line.get_color(), label=name)
    left.set_xlabel("step")
    left.set_ylabel("train loss (-log P(y|x,P))")
    left.set_title("Training loss")
    right.set_xlabel("step")
    right.set_ylabel("dev P@1")
    right.set_title("Dev P@1")
    right.set_ylim(-0.02, 1.02)
    right.legend(fontsize=8)
    fig.tight_layout()
    return fig


def seed_spread(groups: dict[str, list[History]]):
    """Dev P@1 curves, one panel per group (method or init), one line per seed."""
    fig, axes = plt.subplots(1, len(groups), figsize=(3.6 * len(groups), 3.2), sharey=True,
                             squeeze=False)
    for ax, (name, histories) in zip(axes[0], groups.items(), strict=True):
        for history in histories:
            ax.plot(history.eval_step, history.dev_p_at_1, alpha=0.8)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
    axes[0][0].set_ylabel("dev P@1")
    fig.suptitle("One line per seed")
    fig.tight_layout()
    return fig


def pca_picture(pca: PCA, token_points: torch.Tensor, trajectories: dict[str, list[torch.Tensor]],
                labels: dict[str, torch.Tensor] | None = None):
    """Tokens (grey) in the first two principal components of E, with each prompt's
    trajectory (a line per slot, from start to end marker) and optional labelled points."""
    fig, ax = plt.subplots(figsize=(6.5, 5))
    grey = pca.project(token_points)
    ax.scatter(grey[:, 0], grey[:, 1], s=2, color="lightgrey", label="tokens")
    for name, frames in trajectories.items():
        path = torch.stack([pca.project(frame) for frame in frames])  # (steps, L, 2)
        for slot in range(path.shape[1]):
            (line,) = ax.plot(path[:, slot, 0], path[:, slot, 1], alpha=0.7,
                              label=name if slot == 0 else None)
            ax.scatter(path[-1, slot, 0], path[-1, slot, 1], color=line.get_color(), marker="x")
    for text, point in (labels or {}).items():
        xy = pca.project(point.view(1, -1))[0]
        ax.annotate(text, xy.tolist(), fontsize=8)
        ax.scatter([xy[0]], [xy[1]], color="black", s=10)
    ax.set_xlabel("PC 1 of E")
    ax.set_ylabel("PC 2 of E")
    ax.set_title("Prompt vectors among the tokens (x: end of training)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def results_bars(rows: list[dict], value: str = "mean", error: str = "sd",
                 title: str = "Test P@1"):
    """Bar chart of ``rows`` (each with 'method', ``value`` and optionally ``error``)."""
    fig, ax = plt.subplots(figsize=(8, 3.5))
    names = [row["method"] for row in rows]
    heights = [row[value] for row in rows]
    errors = [row.get(error, 0.0) for row in rows]
    ax.bar(names, heights, yerr=errors, capsize=4, color="tab:blue", alpha=0.8)
    ax.set_ylabel("P@1")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


class LiveCurve:
    """A dev-P@1 curve that redraws in place while training runs (pass ``update`` as
    ``on_eval``). Outside a notebook, or with ``enabled=False``, it does nothing."""

    def __init__(self, title: str, enabled: bool = True):
        self.enabled = enabled
        self.handle = None
        if enabled:
            from IPython.display import display

            self.fig, self.ax = plt.subplots(figsize=(6, 3))
            self.ax.set_title(title)
            self.handle = display(self.fig, display_id=True)
            plt.close(self.fig)

    def update(self, history: History) -> None:
        if not self.enabled or self.handle is None:
            return
        self.ax.clear()
        self.ax.plot(history.eval_step, history.dev_p_at_1, marker="o")
        self.ax.set_xlabel("step")
        self.ax.set_ylabel("dev P@1")
        self.ax.set_ylim(-0.02, 1.02)
        self.handle.update(self.fig)
