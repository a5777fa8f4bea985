"""Figures of the course's study: every seed of every (relation, method) cell, how much
compute each method spends to reach its dev quality, and test EM against the prompt's length
and trainable parameters and against the learning rate."""

import matplotlib.pyplot as plt
import numpy as np

from ptlib.course.plots import EXACT_MATCH, MARKERS, _legend_outside
from ptlib.errors import ConfigError


def _interval_bars(rows: list[dict]) -> np.ndarray:
    """(2, N) distances from each row's mean down to ``low`` and up to ``high``, for
    ``errorbar``; 0 (no bar) where a row has no interval (fewer than 5 seeds)."""
    bars = np.array([[row["mean"] - row["low"] for row in rows],
                     [row["high"] - row["mean"] for row in rows]])  # (2, N)
    return np.nan_to_num(bars, nan=0.0)


def study_strip(rows: list[dict]):
    """Every seed of the course's study visible: one panel per relation, stacked, one column
    per method (the same column in every panel), a dot per seed's test EM (spread sideways so
    equal scores stay apart) and the mean with its 95% interval as a bar beside them (no bar
    below 5 seeds). ``rows``: ``Study.summary_rows()``."""
    relations = list(dict.fromkeys(row["relation"] for row in rows))
    methods = list(dict.fromkeys(row["method"] for row in rows))
    fig, axes = plt.subplots(len(relations), 1, figsize=(max(6.0, 0.8 * len(methods) + 2),
                                                          1.7 * len(relations) + 1.6),
                             sharex=True, sharey=True, squeeze=False)
    for ax, relation in zip(axes[:, 0], relations, strict=True):
        for row in (row for row in rows if row["relation"] == relation):
            column, values = methods.index(row["method"]), row["seed_means"]
            offsets = [0.25 * (i / max(1, len(values) - 1) - 0.5) for i in range(len(values))]
            ax.plot([column - 0.1 + o for o in offsets], values, "o", markersize=4,
                    markerfacecolor="none", color="tab:blue")
            ax.errorbar(column + 0.25, row["mean"], capsize=3, color="black", fmt="_",
                        yerr=_interval_bars([row]))
        ax.set_title(relation, fontsize=10)
        ax.set_xlabel("method", fontsize=8)
        ax.set_ylabel("test EM", fontsize=8)
        ax.set_ylim(-0.02, 1.02)
    bottom = axes[-1][0]
    bottom.set_xticks(range(len(methods)), [m.replace(" ", "\n") for m in methods],
                      rotation=45, ha="right", fontsize=8)
    fig.suptitle("The course's study: test exact match (EM) of each seed (circles), mean and 95% "
                 "interval (black)", fontsize=10)
    fig.tight_layout()
    return fig


Curves = list[tuple[list[int], list[float]]]  # per seed: (forwards at each evaluation, dev EM)


def _best_so_far(curve: tuple[list[int], list[float]], budgets: np.ndarray) -> np.ndarray:
    """The best dev EM a run had reached by each budget (forwards): (B,), NaN before its
    first evaluation; past its last evaluation, its final best (it spent no more)."""
    forwards, values = np.asarray(curve[0], float), np.maximum.accumulate(curve[1])
    where = np.searchsorted(forwards, budgets, side="right") - 1  # (B,) last eval <= budget
    return np.where(where >= 0, values[np.clip(where, 0, None)], np.nan)


def _until(values: np.ndarray, budgets: np.ndarray, last: float) -> np.ndarray:
    """``values`` (B,) cut to NaN past the budget ``last``: a line ends where its runs did."""
    return np.where(budgets <= last, values, np.nan)


def compute_to_quality(curves: dict[str, dict[str, Curves]]):
    """Dev exact match against compute: one panel per relation, one colour per method; thin
    lines are seeds' best-so-far dev EM, the thick line their mean, over forward-pass
    equivalents on a log axis. A seed's line ends at the forwards its run spent; the mean
    carries a finished run's final best until the last seed has finished. A method at 0
    forwards (the manual template) is a dashed level. ``curves``: relation -> method ->
    ``Study.dev_curves``."""
    relations = list(curves)
    fig, axes = plt.subplots(1, len(relations), figsize=(3.6 * len(relations), 3.6),
                             sharey=True, squeeze=False)
    top = max((f for methods in curves.values() for runs in methods.values()
               for forwards, _ in runs for f in forwards), default=10)
    ends = [max(forwards) for methods in curves.values() for runs in methods.values()
            for forwards, _ in runs]  # every run's last evaluation is a point of the lines
    budgets = np.union1d(np.geomspace(10, max(top, 100), 200), [e for e in ends if e >= 10])
    for ax, relation in zip(axes[0], relations, strict=True):
        for index, (method, runs) in enumerate(curves[relation].items()):
            colour = f"C{index}"
            if runs and max(runs[0][0]) == 0:
                ax.axhline(np.mean([values[0] for _, values in runs]), color=colour,
                           linestyle="--", label=method)
                continue
            reached = np.array([_best_so_far(run, budgets) for run in runs])  # (S, B)
            ends = [max(forwards) for forwards, _ in runs]  # (S,) what each run spent
            for row, end in zip(reached, ends, strict=True):
                ax.plot(budgets, _until(row, budgets, end), color=colour, linewidth=0.5,
                        alpha=0.35)
            mean = np.nanmean(reached, axis=0) if len(runs) else budgets * np.nan  # (B,)
            ax.plot(budgets, _until(mean, budgets, max(ends, default=0)), color=colour,
                    linewidth=2, label=f"{method} ({len(runs)} seeds)")
        ax.set_xscale("log")
        ax.set_xlabel("forward-pass equivalents (backward = 2)")
        ax.set_title(relation, fontsize=10)
        ax.set_ylim(-0.02, 1.02)
    axes[0][0].set_ylabel(f"best dev {EXACT_MATCH} so far")
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.suptitle("Compute to quality: dev exact match against forward passes spent")
    fig.tight_layout()
    return fig


def _relations_and_methods(rows: list[dict], figure: str, where: str
                           ) -> tuple[list[str], list[str]]:
    """The relations and methods of a figure's rows, in order of first appearance;
    ``ConfigError`` naming the figure when there are no rows (the study has no runs of these
    methods ``where`` yet)."""
    if not rows:
        raise ConfigError(f"{figure}: no rows to draw (the study has no runs of these methods "
                          f"{where} yet)")
    return (list(dict.fromkeys(row["relation"] for row in rows)),
            list(dict.fromkeys(row["method"] for row in rows)))


def prompt_length_plot(rows: list[dict]):
    """Test EM against the prompt's length and its cost: one row of panels per relation, on
    the left against L virtual tokens, on the right against the trainable parameters a run
    updates, both on log axes. One colour and marker per method: a hollow dot per seed, the
    mean joined across lengths, its 95% interval as a bar. ``rows``:
    ``Study.length_rows(...)`` (rows without a recorded parameter count are left out of the
    right panel). Returns the Figure."""
    relations, methods = _relations_and_methods(
        rows, "prompt_length_plot", "on its prefix templates")
    lengths = sorted({row["length"] for row in rows})
    fig, axes = plt.subplots(len(relations), 2, figsize=(10, 3.2 * len(relations)),
                             sharey=True, squeeze=False)
    for (left, right), relation in zip(axes, relations, strict=True):
        for index, method in enumerate(methods):
            mine = sorted((row for row in rows
                           if (row["relation"], row["method"]) == (relation, method)),
                          key=lambda row: row["length"])
            style = {"color": f"C{index}", "marker": MARKERS[index % len(MARKERS)]}
            _length_series(left, mine, "length", style, method)
            _length_series(right, [row for row in mine
                                   if row["trainable_parameters"] is not None],
                           "trainable_parameters", style, method)
        left.set_xscale("log")
        left.set_xticks(lengths, [str(length) for length in lengths])
        left.minorticks_off()
        left.set_xlabel("prompt length L (virtual tokens, log scale)")
        left.set_ylabel(f"{relation}\ntest {EXACT_MATCH}", fontsize=8)
        left.set_ylim(-0.02, 1.02)
        right.set_xscale("log")
        right.set_xlabel("trainable parameters (log scale)")
    _legend_outside(axes[0][1], title="method")
    fig.suptitle("Test EM against prompt length and trainable parameters "
                 "(circles: seeds; line: mean; bars: 95% interval)")
    fig.tight_layout()
    return fig


def _length_series(ax, rows: list[dict], x: str, style: dict, label: str) -> None:
    """One method on one panel: each seed, the mean line over ``x``, the intervals."""
    if not rows:
        return
    xs = np.array([float(row[x]) for row in rows])  # (N,)
    for value, row in zip(xs, rows, strict=True):
        seeds = row["seed_means"]
        spread = value * np.exp(0.06 * (np.arange(len(seeds)) - (len(seeds) - 1) / 2)
                                / max(1, len(seeds) - 1))  # side by side on the log axis
        ax.plot(spread, seeds, style["marker"], color=style["color"], markersize=3,
                markerfacecolor="none", alpha=0.6)
    means = np.array([row["mean"] for row in rows])
    ax.errorbar(xs, means, yerr=_interval_bars(rows), color=style["color"], marker=style["marker"],
                markersize=6, capsize=3, linewidth=1.5, label=label)


def lr_plot(rows: list[dict], token_norm: float | None = None):
    """Test EM against the learning rate: one panel per relation, one colour and marker per
    method; a hollow dot per seed, the seeds' mean joined across learning rates, a solid
    line for the study's shortest step budget and dashed lines for longer ones. With
    ``token_norm`` (the mean token embedding norm), a second row of panels gives each seed's
    final prompt norm in token norms (log scale; a dotted line at one token), the median
    joined: how far each method's vectors grew at each rate. ``rows``:
    ``Study.lr_rows(...)``. Returns the Figure."""
    relations, methods = _relations_and_methods(rows, "lr_plot", "across learning rates")
    budgets = sorted({row["steps"] for row in rows})
    lrs = sorted({row["lr"] for row in rows})
    panels = 1 if token_norm is None else 2
    fig, axes = plt.subplots(panels, len(relations), sharex=True, sharey="row", squeeze=False,
                             figsize=(4.4 * len(relations) + 1.6, 3.6 * panels))
    for column, relation in enumerate(relations):
        for index, method in enumerate(methods):
            for steps in budgets:
                mine = sorted((row for row in rows if (row["relation"], row["method"],
                                                       row["steps"]) == (relation, method, steps)),
                              key=lambda row: row["lr"])
                style = {"index": index, "dashed": steps != budgets[0],
                         "label": f"{method}, {steps} steps"}
                _lr_series(axes[0][column], mine, "seed_means", np.mean, **style)
                if token_norm is not None:
                    scaled = [row | {"norms": [n / token_norm for n in row["final_norms"]
                                               if n is not None]} for row in mine]
                    _lr_series(axes[1][column], [row for row in scaled if row["norms"]],
                               "norms", np.median, **style)
        axes[0][column].set_title(relation, fontsize=10)
        axes[0][column].set_ylim(-0.02, 1.02)
        axes[-1][column].set_xscale("log")
        axes[-1][column].set_xticks(lrs, [f"{lr:g}" for lr in lrs])
        axes[-1][column].minorticks_off()
        for ax in axes[:, column]:
            ax.set_xlabel("learning rate (log scale)")
        if token_norm is not None:
            axes[1][column].set_yscale("log")
            axes[1][column].axhline(1.0, color="black", linestyle=":", lw=1.0)
    axes[0][0].set_ylabel(f"test {EXACT_MATCH}")
    if token_norm is not None:
        axes[1][0].set_ylabel("final prompt norm\n(token norms, log scale)")
    handles = {}  # label -> line, from every panel (a budget may be run on one relation only)
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    axes[0][-1].legend(handles.values(), handles.keys(), loc="upper left", fontsize=8,
                       bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, title="method, steps")
    fig.suptitle("Test EM against learning rate (circles: seeds; line: their mean"
                 + ("; below: final prompt norm, line: median)" if token_norm else ")"))
    fig.tight_layout()
    return fig


def _lr_series(ax, rows: list[dict], field: str, centre, index: int, dashed: bool,
               label: str) -> None:
    """One method at one step budget: each seed's ``field`` value side by side at its lr,
    and ``centre`` (mean or median) of the seeds joined across learning rates."""
    if not rows:
        return
    colour, marker = f"C{index}", MARKERS[index % len(MARKERS)]
    for row in rows:
        values = row[field]
        spread = row["lr"] * np.exp(0.08 * (np.arange(len(values)) - (len(values) - 1) / 2)
                                    / max(1, len(values) - 1) + (0.12 if dashed else -0.12))
        ax.plot(spread, values, marker, color=colour, markersize=3.5, markerfacecolor="none",
                alpha=0.7)
    ax.plot([row["lr"] for row in rows], [centre(row[field]) for row in rows], color=colour,
            linestyle="--" if dashed else "-", linewidth=1.8, label=label)
