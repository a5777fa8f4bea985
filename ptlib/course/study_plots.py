"""Figures of the course's study: every seed of every (relation, method) cell."""

import matplotlib.pyplot as plt

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
