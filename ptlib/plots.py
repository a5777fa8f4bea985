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


def template_bars(rows_by_task: dict[str, list[dict]], baselines: dict[str, float] | None = None,
                  value: str = "p_at_1", title: str = "Manual templates: P@1 per paraphrase"):
    """Grouped bars: one group per task, one bar per manual template (``rows_by_task[task]`` is
    ``discrete.manual_prompts``' list of rows), with each task's majority-class baseline
    (``baselines[task]``) drawn as a black horizontal tick across its group."""
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(rows_by_task)), 3.8))
    width = 0.8 / max(len(rows) for rows in rows_by_task.values())
    for group, (task, rows) in enumerate(rows_by_task.items()):
        for index, row in enumerate(rows):
            ax.bar(group - 0.4 + width * (index + 0.5), row[value], width=width * 0.9,
                   color=f"C{index}", label=f"template {index + 1}" if group == 0 else None)
        if baselines and task in baselines:
            ax.hlines(baselines[task], group - 0.45, group + 0.45, color="black", linewidth=2,
                      label="majority class" if group == 0 else None)
    ax.set_xticks(range(len(rows_by_task)))
    ax.set_xticklabels(list(rows_by_task), rotation=20)
    ax.set_xlabel("task")
    ax.set_ylabel("P@1" if value == "p_at_1" else value)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def search_space_plot(vocab_size: int, max_length: int = 20,
                      budgets: dict[str, float] | None = None):
    """log10 of the number of discrete prompts, |V|^L, against the prompt length L = 1..max_length,
    with a horizontal line per budget (e.g. prompts one could score in a day or a year)."""
    import math

    lengths = list(range(1, max_length + 1))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(lengths, [length * math.log10(vocab_size) for length in lengths], marker="o", ms=3,
            label=f"|V|^L, |V| = {vocab_size:,}")
    for (label, count), colour in zip((budgets or {}).items(),
                                      ["tab:red", "tab:orange", "tab:green"], strict=False):
        ax.axhline(math.log10(count), color=colour, linestyle="--", label=label)
    ax.set_xticks(lengths)
    ax.set_xlabel("prompt length L (tokens)")
    ax.set_ylabel("log10(number of prompts)")
    ax.set_title("The discrete search space grows as |V|^L")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def distance_to_vocab_histogram(gaps: torch.Tensor, distances: dict[str, torch.Tensor]):
    """How far prompt vectors sit from the token set, against how far tokens sit from each other.

    ``gaps``: (N,) L2 distance from each sampled token to its nearest other token
    (``analysis.token_gap``), drawn as a histogram. ``distances``: name -> (L,) L2 distance from
    each prompt vector to its nearest token (``analysis.distance_to_vocab``), one dashed vertical
    line per vector, one colour per name.
    """
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.hist(gaps.numpy(), bins=60, color="lightgrey", label="token to nearest other token")
    for (name, values), colour in zip(distances.items(), ["tab:blue", "tab:red", "tab:green",
                                                           "tab:purple"], strict=False):
        for index, value in enumerate(values.tolist()):
            ax.axvline(value, color=colour, linestyle="--", alpha=0.8,
                       label=f"{name} (one line per vector)" if index == 0 else None)
    ax.set_xlabel("L2 distance to the nearest token")
    ax.set_ylabel("number of sampled tokens")
    ax.set_title("Prompt vectors against the token-to-token gap")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def lr_sensitivity(values: dict[str, dict[float, list[float]]], ylabel: str = "test P@1",
                   title: str = "Sensitivity to the learning rate"):
    """One line per group (e.g. init) of the mean of ``values[group][lr]`` (one value per seed)
    against the learning rate (log axis), with each seed's value as a dot."""
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    for index, (name, by_lr) in enumerate(values.items()):
        rates = sorted(by_lr)
        means = [sum(by_lr[r]) / len(by_lr[r]) for r in rates]
        ax.plot(rates, means, marker="o", color=f"C{index}", label=f"{name} (mean)")
        for rate in rates:
            ax.scatter([rate] * len(by_lr[rate]), by_lr[rate], color=f"C{index}", alpha=0.4, s=14)
    ax.set_xscale("log")
    ax.set_xlabel("AdamW learning rate (log scale)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def prompt_norm_curves(groups: dict[str, list[History]], token_norm: float | None = None):
    """Mean L2 norm of the L prompt vectors after each step (log axis), one colour per group
    (e.g. init), one line per seed; a dashed line at the typical token norm."""
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    for index, (name, histories) in enumerate(groups.items()):
        for run, history in enumerate(histories):
            ax.plot(history.step, history.prompt_norm, color=f"C{index}", alpha=0.8,
                    label=name if run == 0 else None)
    if token_norm is not None:
        ax.axhline(token_norm, color="black", linestyle="--",
                   label=f"mean token norm ({token_norm:.1f})")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("mean L2 norm of the prompt vectors")
    ax.set_title("Prompt norm during training")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def coupling_heatmaps(matrices: dict[str, torch.Tensor]):
    """One panel per encoder: the (L, L) matrix of ||d theta_i / d s_j|| from
    ``analysis.position_coupling``, each panel scaled to its own maximum."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(3.4 * len(matrices), 3.2),
                             squeeze=False)
    for ax, (name, matrix) in zip(axes[0], matrices.items(), strict=True):
        shown = matrix / matrix.max().clamp(min=1e-12)
        image = ax.imshow(shown.numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("input row j (seed position)")
        ax.set_ylabel("output vector i")
        ticks = list(range(matrix.shape[0]))
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="||d theta_i / d s_j|| / max")
    fig.suptitle("Which outputs depend on which inputs")
    return fig


def grouped_results_bars(rows: list[dict], group: str = "task", series: str = "method",
                         value: str = "mean", error: str = "sd", title: str = "Test P@1"):
    """Grouped bars: one group per ``row[group]`` (e.g. task), one bar per ``row[series]``
    (e.g. method) with height ``row[value]`` and error bar ``row.get(error, 0)``."""
    groups = list(dict.fromkeys(row[group] for row in rows))
    names = list(dict.fromkeys(row[series] for row in rows))
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(max(7.0, 2.2 * len(groups)), 3.8))
    labelled = set()
    for row in rows:
        index = names.index(row[series])
        where = groups.index(row[group]) - 0.4 + width * (index + 0.5)
        ax.bar(where, row[value], width=width * 0.9, yerr=row.get(error) or 0.0, capsize=2,
               color=f"C{index}", label=None if row[series] in labelled else row[series])
        labelled.add(row[series])
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_xlabel(group)
    ax.set_ylabel("P@1")
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig
