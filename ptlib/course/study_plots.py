"""Figures of the course's study: every seed of every (relation, method) cell, and how much
compute each method spends to reach its dev quality."""

import matplotlib.pyplot as plt
import numpy as np

from ptlib.course.plots import EXACT_MATCH


def study_strip(rows: list[dict]):
    """Every seed of the course's study visible: one panel per relation, one column per method,
    a dot per seed's test EM (spread sideways so equal scores stay apart) and the mean with its
    95% interval as a bar beside them. ``rows``: ``Study.summary_rows()``."""
    relations = list(dict.fromkeys(row["relation"] for row in rows))
    fig, axes = plt.subplots(1, len(relations), figsize=(3.2 * len(relations), 3.6),
                             sharey=True, squeeze=False)
    for ax, relation in zip(axes[0], relations, strict=True):
        mine = [row for row in rows if row["relation"] == relation]
        for column, row in enumerate(mine):
            values = row["seed_means"]
            offsets = [0.25 * (i / max(1, len(values) - 1) - 0.5) for i in range(len(values))]
            ax.plot([column - 0.1 + o for o in offsets], values, "o", markersize=4,
                    markerfacecolor="none", color="tab:blue")
            ax.errorbar(column + 0.25, row["mean"], capsize=3, color="black", fmt="_",
                        yerr=[[row["mean"] - row["low"]], [row["high"] - row["mean"]]])
        ax.set_xticks(range(len(mine)), [row["method"] for row in mine], rotation=60,
                      ha="right", fontsize=8)
        ax.set_title(relation, fontsize=10)
        ax.set_xlabel("method")
        ax.set_ylim(-0.02, 1.02)
    axes[0][0].set_ylabel(f"test {EXACT_MATCH}")
    fig.suptitle("The course's study: each seed (circles), mean and 95% interval (black)")
    fig.tight_layout()
    return fig


Curves = list[tuple[list[int], list[float]]]  # per seed: (forwards at each evaluation, dev EM)


def _best_so_far(curve: tuple[list[int], list[float]], budgets: np.ndarray) -> np.ndarray:
    """The best dev EM a run had reached by each budget (forwards): (B,), NaN before its
    first evaluation."""
    forwards, values = np.asarray(curve[0], float), np.maximum.accumulate(curve[1])
    where = np.searchsorted(forwards, budgets, side="right") - 1  # (B,) last eval <= budget
    return np.where(where >= 0, values[np.clip(where, 0, None)], np.nan)


def compute_to_quality(curves: dict[str, dict[str, Curves]]):
    """Dev exact match against compute: one panel per relation, one colour per method; thin
    lines are seeds' best-so-far dev EM, the thick line their mean, over forward-pass
    equivalents on a log axis. A method at 0 forwards (the manual template) is a dashed
    level. ``curves``: relation -> method -> ``Study.dev_curves``."""
    relations = list(curves)
    fig, axes = plt.subplots(1, len(relations), figsize=(3.6 * len(relations), 3.6),
                             sharey=True, squeeze=False)
    top = max((f for methods in curves.values() for runs in methods.values()
               for forwards, _ in runs for f in forwards), default=10)
    budgets = np.geomspace(10, max(top, 100), 200)
    for ax, relation in zip(axes[0], relations, strict=True):
        for index, (method, runs) in enumerate(curves[relation].items()):
            colour = f"C{index}"
            if runs and max(runs[0][0]) == 0:
                ax.axhline(np.mean([values[0] for _, values in runs]), color=colour,
                           linestyle="--", label=method)
                continue
            reached = np.array([_best_so_far(run, budgets) for run in runs])  # (S, B)
            for row in reached:
                ax.plot(budgets, row, color=colour, linewidth=0.5, alpha=0.35)
            ax.plot(budgets, np.nanmean(reached, axis=0) if len(runs) else budgets * np.nan,
                    color=colour, linewidth=2, label=f"{method} ({len(runs)} seeds)")
        ax.set_xscale("log")
        ax.set_xlabel("forward-pass equivalents (backward = 2)")
        ax.set_title(relation, fontsize=10)
        ax.set_ylim(-0.02, 1.02)
    axes[0][0].set_ylabel(f"best dev {EXACT_MATCH} so far")
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.suptitle("Compute to quality: dev exact match against forward passes spent")
    fig.tight_layout()
    return fig
