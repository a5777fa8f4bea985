"""Matplotlib figures for the course: each function returns a Figure with a title, axes labelled
with their units, and a legend placed outside the data (``_legend_outside``) so it hides none.

Live curves during training go through ``LiveCurve``, which redraws one display handle instead
of clearing cell output.
"""

import matplotlib.pyplot as plt
import torch
from matplotlib.text import Text

from ptlib.analysis import PCA, PathLosses
from ptlib.discrete import SearchHistory
from ptlib.history import History

EXACT_MATCH = "exact match (EM, fraction of facts)"
# Marker lines that may coincide stay distinguishable by their dash pattern, not colour alone.
LINE_STYLES = ["--", ":", "-.", (0, (6, 2, 1, 2, 1, 2))]
# Hollow markers of different shapes: curves that lie on top of each other stay visible.
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "*"]


def _marker(index: int) -> dict:
    return {"marker": MARKERS[index % len(MARKERS)], "markersize": 5, "markerfacecolor": "none"}


def _steps_axis(ax) -> None:
    """An x axis of training steps: whole numbers only."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("training step")


def _exact_match_axis(ax, values, label: str) -> None:
    """A y axis of EM from 0, up to 1 or a little above the largest value when all are small."""
    top = max((float(v) for v in values), default=0.0)
    ax.set_ylim(-0.02, min(1.02, max(0.1, 1.15 * top)))
    ax.set_ylabel(label)
NLL = "mean NLL of the targets (nats)"


def _legend_outside(ax, **kwargs):
    """A legend to the right of ``ax``, outside the plotting area, so it covers no data."""
    return ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
                     fontsize=8, **kwargs)


def token_norm_histogram(norms: torch.Tensor, marks: dict[str, float] | None = None):
    """Histogram of the token-embedding norms, with vertical lines at ``marks``."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.hist(norms.numpy(), bins=80, color="tab:blue", alpha=0.8)
    for (label, value), colour, style in zip((marks or {}).items(),
                                             ["tab:red", "tab:orange", "tab:green", "tab:purple"],
                                             LINE_STYLES, strict=False):
        ax.axvline(value, color=colour, linestyle=style, lw=1.6, label=f"{label} ({value:.1f})")
    ax.set_xlabel("L2 norm of the vector (embedding units)")
    ax.set_ylabel("number of tokens")
    ax.set_title("How long are token embeddings?")
    if marks:
        _legend_outside(ax, title="vertical lines")
    fig.tight_layout()
    return fig


def path_plot(path: PathLosses, label_a: str, label_b: str):
    """Loss along the path a -> b: smooth when standing anywhere, steps when only on tokens."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(path.alpha, path.continuous, marker="o", ms=3, label="vector anywhere on the path")
    ax.step(path.alpha, path.discrete, where="mid", label="snapped to the nearest token")
    ax.set_xlabel(f"alpha, position on the path (0 = {label_a!r}, 1 = {label_b!r})")
    ax.set_ylabel(NLL)
    ax.set_title("The loss between two tokens")
    _legend_outside(ax)
    fig.tight_layout()
    return fig


def search_curves(histories: dict[str, SearchHistory]):
    """Training objective of the kept prompt against sequence forwards spent."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name, history in histories.items():
        ax.plot(history.forwards, history.objective, label=name)
    ax.set_xlabel("cost: sequence forwards spent (a backward counts as two)")
    ax.set_ylabel("mean log P(y | x, P) (nats)")
    ax.set_title("Discrete search: objective against cost")
    _legend_outside(ax, title="search")
    fig.tight_layout()
    return fig


def training_curves(histories: dict[str, History], smooth: int = 5, title: str | None = None):
    """Training loss (smoothed) and dev EM per step, one line per run; ``title`` above both."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.5))
    for name, history in histories.items():
        loss = torch.tensor(history.loss)
        if smooth > 1 and len(loss) >= smooth:
            kernel = torch.ones(smooth) / smooth
            loss = torch.nn.functional.conv1d(loss.view(1, 1, -1), kernel.view(1, 1, -1)).view(-1)
        steps = history.step[len(history.step) - len(loss):]
        (line,) = left.plot(steps, loss.tolist(), label=name)
        right.plot(history.eval_step, history.dev_exact_match, color=line.get_color(), label=name,
                   **_marker(len(right.lines)))
    _steps_axis(left)
    _steps_axis(right)
    left.set_ylabel("train loss, -log P(y|x,P) (nats)")
    left.set_title(f"Training loss ({smooth}-step moving mean)" if smooth > 1 else "Training loss")
    right.set_ylabel(f"dev {EXACT_MATCH}")
    right.set_title("Dev EM")
    right.set_ylim(-0.02, 1.02)
    _legend_outside(right)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def seed_spread(groups: dict[str, list[History]]):
    """Dev EM curves, one panel per group (method or init), one line per seed."""
    fig, axes = plt.subplots(1, len(groups), figsize=(3.6 * len(groups), 3.2), sharey=True,
                             squeeze=False)
    for ax, (name, histories) in zip(axes[0], groups.items(), strict=True):
        for index, history in enumerate(histories):
            ax.plot(history.eval_step, history.dev_exact_match, alpha=0.8, **_marker(index))
        ax.set_title(name, fontsize=10)
        _steps_axis(ax)
    _exact_match_axis(axes[0][0], [v for histories in groups.values() for history in histories
                              for v in history.dev_exact_match], f"dev {EXACT_MATCH}")
    fig.suptitle("Dev EM during training: one panel per setting, one line per seed")
    fig.tight_layout()
    return fig


def _labels_apart(ax, points: dict[str, tuple[float, float]], size: float = 8.0):
    """Label ``points`` (text -> data xy) beside their dots, moving a label up (joined to its dot
    by a thin line) while it overlaps one already placed. Call once the layout is settled."""
    renderer = ax.figure.canvas.get_renderer()
    placed = []  # window extents of the labels placed so far
    for text, xy in sorted(points.items(), key=lambda item: item[1][1]):
        ax.scatter([xy[0]], [xy[1]], color="black", s=12, zorder=4)
        label = ax.annotate(repr(text), xy=xy, xytext=(5, 0), textcoords="offset points",
                            fontsize=size, va="center", zorder=5,
                            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                                  "alpha": 0.8})
        lift = 0.0
        while any(Text.get_window_extent(label, renderer).overlaps(box) for box in placed):
            lift += 0.6 * size
            label.set_position((5, lift))
        if lift:  # redraw it with a line to its dot
            label.remove()
            label = ax.annotate(repr(text), xy=xy, xytext=(5, lift), textcoords="offset points",
                                fontsize=size, va="center", zorder=5,
                                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                                      "alpha": 0.8},
                                arrowprops={"arrowstyle": "-", "color": "0.35", "lw": 0.6})
        placed.append(Text.get_window_extent(label, renderer))  # the text, not its line


def pca_picture(pca: PCA, token_points: torch.Tensor, trajectories: dict[str, list[torch.Tensor]],
                labels: dict[str, torch.Tensor] | None = None):
    """Tokens (grey) in the first two principal components of E, with each prompt vector's
    training trajectory (one colour per slot, from a circle at the start to a cross at the end)
    and optional labelled tokens.

    Left: the whole token cloud. Right: a zoom on the box the trajectories span, where their
    movement is visible. Labels that would overlap are moved apart, joined to their dots.
    """
    fig, (whole, zoom) = plt.subplots(1, 2, figsize=(13, 5.2),
                                      layout="constrained")
    grey = pca.project(token_points)  # (N, 2)
    paths = {name: torch.stack([pca.project(frame) for frame in frames])  # (steps, L, 2)
             for name, frames in trajectories.items()}
    for ax in (whole, zoom):
        ax.scatter(grey[:, 0], grey[:, 1], s=2, color="lightgrey", label="tokens (a sample)",
                   zorder=1)
    for number, (name, path) in enumerate(paths.items()):
        style = ["-", "--", ":", "-."][number % 4]
        for slot in range(path.shape[1]):
            colour = f"C{slot % 10}"
            tag = f"{name}, slot {slot + 1}" if len(paths) > 1 else f"slot {slot + 1}"
            for ax in (whole, zoom):
                ax.plot(path[:, slot, 0], path[:, slot, 1], color=colour, linestyle=style,
                        lw=1.6, zorder=3, label=tag if ax is zoom else None)
                ax.scatter(path[0, slot, 0], path[0, slot, 1], marker="o", s=26,
                           facecolors="none", edgecolors=colour, zorder=3)
                ax.scatter(path[-1, slot, 0], path[-1, slot, 1], color=colour, marker="x",
                           s=40, zorder=3)
    points = torch.cat([path.reshape(-1, 2) for path in paths.values()])  # every frame, (S, 2)
    low, high = points.min(dim=0).values, points.max(dim=0).values
    margin = ((high - low).max() * 0.15).clamp(min=1e-3)
    zoom.set_xlim(float(low[0] - margin), float(high[0] + margin))
    zoom.set_ylim(float(low[1] - margin), float(high[1] + margin))
    whole.indicate_inset_zoom(zoom, edgecolor="black")
    projected = {text: tuple(pca.project(point.view(1, -1))[0].tolist())
                 for text, point in (labels or {}).items()}
    fig.canvas.draw()  # settle the layout, so labels are spaced in their final coordinates
    _labels_apart(whole, projected)
    _labels_apart(zoom, {text: xy for text, xy in projected.items()
                         if low[0] - margin <= xy[0] <= high[0] + margin
                         and low[1] - margin <= xy[1] <= high[1] + margin})
    for ax in (whole, zoom):
        ax.set_xlabel("PC 1 of E (embedding units)")
        ax.set_ylabel("PC 2 of E (embedding units)")
    whole.set_title("All tokens; the box is the zoom on the right", fontsize=10)
    zoom.set_title("Zoom: each slot from o (start) to x (end of training)", fontsize=10)
    _legend_outside(zoom)
    fig.suptitle("Prompt vectors among the tokens, in the first two principal components of E")
    return fig


def results_bars(rows: list[dict], value: str = "mean", error: str = "sd",
                 title: str = "Test EM"):
    """Bar chart of ``rows`` (each with 'method', ``value`` and optionally ``error``)."""
    fig, ax = plt.subplots(figsize=(8, 3.5))
    names = [row["method"] for row in rows]
    heights = [row[value] for row in rows]
    errors = [row.get(error, 0.0) for row in rows]
    ax.bar(names, heights, yerr=errors, capsize=4, color="tab:blue", alpha=0.8)
    ax.set_xlabel("method")
    ax.set_ylabel(EXACT_MATCH)
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


class LiveCurve:
    """A dev-EM curve that redraws in place while training runs (pass ``update`` as
    ``on_eval``). Outside a notebook, or with ``enabled=False``, it does nothing.

    The axes are drawn once (title, labels, limits); ``update`` only moves the line's data, so
    nothing set up here is lost between redraws.
    """

    def __init__(self, title: str, enabled: bool = True, steps: int | None = None):
        self.enabled = enabled
        self.handle = None
        if enabled:
            from IPython.display import display

            self.fig, self.ax = plt.subplots(figsize=(6, 3))
            self.ax.set_title(title)
            self.ax.set_xlabel("training step")
            self.ax.set_ylabel(f"dev {EXACT_MATCH}")
            self.ax.set_ylim(-0.02, 1.02)
            if steps:
                self.ax.set_xlim(0, steps)
            (self.line,) = self.ax.plot([], [], marker="o", color="tab:blue")
            self.fig.tight_layout()
            self.handle = display(self.fig, display_id=True)
            plt.close(self.fig)

    def update(self, history: History) -> None:
        if not self.enabled or self.handle is None:
            return
        self.line.set_data(history.eval_step, history.dev_exact_match)
        if history.eval_step and max(history.eval_step) > self.ax.get_xlim()[1]:
            self.ax.set_xlim(0, max(history.eval_step) * 1.05)
        self.handle.update(self.fig)


def template_bars(rows_by_task: dict[str, list[dict]], baselines: dict[str, float] | None = None,
                  value: str = "exact_match", title: str = "Manual templates: EM per paraphrase"):
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
    ax.set_ylabel(EXACT_MATCH if value == "exact_match" else value)
    ax.set_title(title)
    _legend_outside(ax)
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
    _legend_outside(ax)
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
    for (name, values), colour, style in zip(distances.items(), ["tab:blue", "tab:red",
                                                                  "tab:green", "tab:purple"],
                                             LINE_STYLES, strict=False):
        for index, value in enumerate(values.tolist()):
            ax.axvline(value, color=colour, linestyle=style, alpha=0.8,
                       label=f"{name} (one line per vector)" if index == 0 else None)
    ax.set_xlabel("L2 distance to the nearest token (embedding units)")
    ax.set_ylabel("number of sampled tokens")
    ax.set_title("Prompt vectors against the token-to-token gap")
    _legend_outside(ax)
    fig.tight_layout()
    return fig


def lr_sensitivity(values: dict[str, dict[float, list[float]]], ylabel: str = f"test {EXACT_MATCH}",
                   title: str = "Sensitivity to the learning rate"):
    """One line per group (e.g. init) of the mean of ``values[group][lr]`` (one value per seed)
    against the learning rate (log axis), with each seed's value as a dot."""
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    for index, (name, by_lr) in enumerate(values.items()):
        rates = sorted(by_lr)
        means = [sum(by_lr[r]) / len(by_lr[r]) for r in rates]
        counts = sorted({len(by_lr[r]) for r in rates})
        seeds = " or ".join(str(n) for n in counts)
        several = max(counts) > 1
        line = (f"{name} (mean of {seeds} seeds)" if several
                else f"{name} (one seed per rate)")
        ax.plot(rates, means, color=f"C{index}", label=line, **_marker(index))
        if several:
            for rate in rates:
                ax.scatter([rate] * len(by_lr[rate]), by_lr[rate], color=f"C{index}", alpha=0.4,
                           s=14, label=f"{name}: one seed" if rate == rates[0] else None)
    ax.set_xscale("log")
    ax.set_xlabel("AdamW learning rate (log scale)")
    _exact_match_axis(ax, [v for by_lr in values.values() for runs in by_lr.values() for v in runs],
                 ylabel)
    ax.set_title(title)
    _legend_outside(ax)
    fig.tight_layout()
    return fig


def prompt_norm_curves(groups: dict[str, list[History]], token_norm: float | None = None):
    """Mean L2 norm of the L prompt vectors after each step (log axis), one colour per group
    (e.g. init), one line per seed; a dashed line at the typical token norm."""
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    for index, (name, histories) in enumerate(groups.items()):
        for run, history in enumerate(histories):
            ax.plot(history.step, history.prompt_norm, color=f"C{index}", alpha=0.8, lw=1.8,
                    zorder=3, label=name if run == 0 else None)
    if token_norm is not None:  # under the curves: a curve at the token norm stays visible
        ax.axhline(token_norm, color="black", linestyle=":", lw=1.2, zorder=2,
                   label=f"mean token norm ({token_norm:.1f})")
    ax.set_yscale("log")
    _steps_axis(ax)
    ax.set_ylabel("mean L2 norm of the L vectors\n(embedding units, log scale)")
    ax.set_title("Prompt norm during training (one line per seed)")
    _legend_outside(ax)
    fig.tight_layout()
    return fig


def kv_norm_plot(model_norms: torch.Tensor, prompts: dict[str, torch.Tensor]):
    """Keys (left) and values (right) per layer: the median per-head L2 norm the model computes
    for real tokens (black), and each deep prompt's (one colour per prompt), on a log axis.
    Every tensor is (layers, 2), as ``analysis.model_kv_norms`` and ``deep_prompt_kv_norms``
    give them."""
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.4), sharey=True)
    layers = range(model_norms.shape[0])
    for column, (ax, what) in enumerate(zip(axes, ("keys", "values"), strict=True)):
        ax.plot(layers, model_norms[:, column], color="black", lw=2.0, zorder=3,
                label="the model's own, real tokens")
        for index, (name, norms) in enumerate(prompts.items()):
            ax.plot(layers, norms[:, column], color=f"C{index}", lw=1.6, **_marker(index),
                    linestyle=("-", "--", ":")[index % 3], label=name)  # coinciding stay apart
        ax.set_yscale("log")
        ax.set_xlabel("layer")
        ax.set_title(f"{what}: median norm of one head")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("L2 norm (log scale)")
    _legend_outside(axes[1])
    fig.tight_layout()
    return fig


def coupling_heatmaps(matrices: dict[str, torch.Tensor],
                      updates: dict[str, torch.Tensor] | None = None):
    """Heatmaps of how prompt positions depend on each other, one column per encoder, each
    panel scaled to its own maximum (so the colour reads 0 to 1 of that panel's largest entry).

    Top row, ``matrices``: the (L, L) function Jacobian norms ||d theta_i / d s_j|| from
    ``analysis.position_coupling``. Bottom row (optional), ``updates``: the (L, L) update
    coupling J J^T from ``analysis.update_coupling``, how far a step aimed at slot j moves slot i.
    """
    rows = [(r"function: $\Vert(\partial\theta_i/\partial s_j)\,u_j\Vert$",
             "input row j (seed $s_j$)", r"output vector $\theta_i$", matrices)]
    if updates:
        rows.append((r"update step: $\Vert J_i J_j^\top u_j\Vert$", "slot j the step aims at",
                     "slot i that moves", updates))
    columns = max(len(panels) for *_, panels in rows)
    fig, axes = plt.subplots(len(rows), columns, figsize=(3.1 * columns + 1.2, 3.0 * len(rows)),
                             squeeze=False, layout="constrained")
    image = None
    for row, (what, xlabel, ylabel, panels) in enumerate(rows):
        for column, (name, matrix) in enumerate(panels.items()):
            ax = axes[row][column]
            shown = matrix / matrix.max().clamp(min=1e-12)
            image = ax.imshow(shown.numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
            ax.set_title(f"{name}\n{what}", fontsize=9)
            ticks = list(range(matrix.shape[0]))
            ax.set_xticks(ticks, [str(t + 1) for t in ticks], fontsize=8)
            ax.set_yticks(ticks, [str(t + 1) for t in ticks], fontsize=8)
            ax.set_xlabel(xlabel, fontsize=8)
            if column == 0:
                ax.set_ylabel(ylabel, fontsize=8)
        for column in range(len(panels), columns):
            axes[row][column].set_visible(False)
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8,
                 label="entry / the panel's largest entry (0 to 1)")
    fig.suptitle("Which prompt positions depend on which (positions numbered 1 to L)")
    return fig


def grouped_results_bars(rows: list[dict], group: str = "task", series: str = "method",
                         value: str = "mean", error: str = "sd", title: str = "Test EM"):
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
    ax.set_ylabel(EXACT_MATCH)
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    _legend_outside(ax, title=series)
    fig.tight_layout()
    return fig
