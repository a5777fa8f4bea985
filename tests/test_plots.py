"""Every course figure (ptlib.course.plots, study_plots) has a title, labelled axes and a legend
that covers no data; the figures the issue named keep what they were missing (LiveCurve's
title, PCA zoom, labels)."""

import math

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.text import Text

from ptlib.analysis import PCA, PathLosses
from ptlib.course import plots, study_plots
from ptlib.discrete import SearchHistory
from ptlib.history import History

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def history(seed: int, steps: int = 30, every: int = 10, norm: float = 24.0) -> History:
    generator = torch.Generator().manual_seed(seed)
    record = History()
    for step in range(1, steps + 1):
        record.step.append(step)
        noise = float(torch.rand(1, generator=generator))
        record.loss.append(5 * math.exp(-step / 30) + 0.3 * noise)
        record.prompt_norm.append(norm + 0.05 * step)
        record.seconds.append(0.6 * step)
    for step in range(0, steps + 1, every):
        record.eval_step.append(step)
        record.dev_exact_match.append(step / steps * (0.5 + 0.1 * seed))
        record.dev_nll.append(1.0)
    return record


def search_history(cost: int) -> SearchHistory:
    record = SearchHistory()
    for iteration in range(1, 20):
        record.iteration.append(iteration)
        record.forwards.append(iteration * cost)
        record.objective.append(-5 + math.log(iteration))
    return record


def pca_and_points():
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randn(500, 16, generator=generator)  # (N, d)
    pca = PCA(tokens.mean(0), torch.linalg.svd(tokens - tokens.mean(0))[2][:2])
    start = tokens[:1] + 0.05 * torch.randn(3, 16, generator=generator)  # (L, d), close together
    frames = [start + 0.01 * step for step in range(8)]  # a short, slow trajectory
    labels = {" capital": tokens[10], " city": tokens[10] + 1e-3, " is": tokens[11],
              " of": start[0] + 0.02}  # " of" falls inside the zoom
    return pca, tokens, frames, labels


def every_figure():
    pca, tokens, frames, labels = pca_and_points()
    alpha = torch.linspace(0, 1, 9)
    eye = torch.eye(4)
    return {
        "token_norm_histogram": plots.token_norm_histogram(
            3 + torch.rand(1000), {"median token": 3.2, "N(0, I) draw": 24.0}),
        "path_plot": plots.path_plot(PathLosses(alpha, 3 + alpha, (3 + alpha).round(),
                                                ["a"] * 9), " a", " b"),
        "search_curves": plots.search_curves({"random": search_history(11),
                                              "autoprompt": search_history(14)}),
        "training_curves": plots.training_curves({"free": history(0), "lstm": history(1)}),
        "seed_spread": plots.seed_spread({"free": [history(0), history(1)], "lstm": [history(2)]}),
        "pca_picture": plots.pca_picture(pca, tokens, {"free vectors": frames}, labels),
        "results_bars": plots.results_bars([{"method": "a", "mean": 0.3, "sd": 0.1},
                                            {"method": "b", "mean": 0.5}]),
        "template_bars": plots.template_bars({"capital_of": [{"exact_match": 0.9},
                                                             {"exact_match": 1.0}]},
                                             {"capital_of": 0.1}),
        "search_space_plot": plots.search_space_plot(49152, 8, {"per day": 1e5}),
        "distance_to_vocab_histogram": plots.distance_to_vocab_histogram(
            torch.rand(200) + 1, {"before": torch.rand(3) + 2, "after": torch.rand(3) + 3}),
        "lr_sensitivity": plots.lr_sensitivity({"normal": {3e-4: [0.1], 3e-3: [0.2]}}),
        "prompt_norm_curves": plots.prompt_norm_curves(
            {"normal": [history(0, norm=24.0)], "rescaled": [history(1, norm=3.0)]}, 3.2),
        "coupling_heatmaps": plots.coupling_heatmaps({"free": eye, "lstm": torch.rand(4, 4)},
                                                     {"free": eye, "lstm": torch.rand(4, 4)}),
        "kv_norm_plot": plots.kv_norm_plot(
            torch.tensor([[9.0, 0.3], [14.0, 4.0], [13.0, 9.0]]),
            {"N(0, 1) prefix": torch.full((3, 2), 8.0)}),
        "grouped_results_bars": plots.grouped_results_bars([
            {"task": "a", "method": "x", "mean": 0.9, "sd": 0.1},
            {"task": "a", "method": "y", "mean": 1.0, "sd": 0.0},
            {"task": "b", "method": "x", "mean": 0.5}]),
        "study_strip": study_plots.study_strip(STUDY_ROWS),
        "compute_to_quality": study_plots.compute_to_quality(CURVES),
        "prompt_length_plot": study_plots.prompt_length_plot(LENGTH_ROWS),
        "lr_plot": study_plots.lr_plot(LR_ROWS, token_norm=3.2),
    }


CURVES = {  # relation -> method -> Study.dev_curves: (forwards, dev EM) per seed
    "capital_of": {"manual": [([0], [0.3])],
                   "lstm": [([0, 240, 480], [0.0, 0.2, 0.5]), ([0, 240, 480], [0.1, 0.4, 0.3])],
                   "gcg_manual": [([0, 1000, 9000], [0.3, 0.35, 0.4])]},
    "antonym": {"manual": [([0], [0.5])], "lstm": [([0, 240], [0.0, 0.6])]},
}
STUDY_ROWS = [  # as ptlib.course.study.Study.summary_rows gives them
    {"relation": "capital_of", "method": "lstm", "seed_means": [0.4, 0.45, 0.45], "mean": 0.43,
     "low": 0.35, "high": 0.5},
    {"relation": "capital_of", "method": "manual", "seed_means": [0.27], "mean": 0.27,
     "low": 0.16, "high": 0.38},
    {"relation": "antonym", "method": "lstm", "seed_means": [0.8, 0.9], "mean": 0.85,
     "low": float("nan"), "high": float("nan")}]  # two seeds: no interval

LENGTH_ROWS = [  # as ptlib.course.study.Study.length_rows gives them
    {"relation": relation, "method": method, "length": length, "seed_means": [m - 0.05, m + 0.05],
     "mean": m, "low": m - 0.1, "high": m + 0.1,
     "trainable_parameters": None if method == "free_rescaled" and length == 1 else length * width}
    for relation in ("capital_of", "antonym")
    for method, width, base in (("prefix", 11_520, 0.5), ("free_rescaled", 576, 0.3))
    for length, m in ((1, base), (3, base + 0.1), (10, base + 0.2))]

LR_ROWS = [  # as ptlib.course.study.Study.lr_rows gives them
    {"relation": relation, "method": method, "lr": lr, "steps": steps,
     "seed_means": [m - 0.05, m + 0.05], "mean": m, "final_norms": [norm, None]}
    for relation in ("capital_of", "antonym")
    for method, m, norm in (("lstm", 0.4, 100.0), ("free_rescaled", 0.5, 3.2))
    for lr, steps in ((3e-4, 60), (3e-3, 60), (3e-2, 60), (3e-3, 240))]


@pytest.fixture(scope="module")
def figures():
    made = every_figure()
    for fig in made.values():
        fig.canvas.draw()
    yield made
    for fig in made.values():
        plt.close(fig)


def test_every_plot_function_is_covered():
    public = {name for module in (plots, study_plots) for name, value in vars(module).items()
              if callable(value) and not name.startswith("_")
              and value.__module__ == module.__name__
              and not isinstance(value, type) and name not in {"LiveCurve"}}
    assert public == set(every_figure())  # a new figure must join the checks below
    plt.close("all")


def test_every_figure_has_a_title_and_labelled_axes(figures):
    for name, fig in figures.items():
        axes = [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
        assert fig.get_suptitle() or all(ax.get_title() for ax in axes), name
        for ax in axes:
            assert ax.get_xlabel(), (name, ax.get_title())
        assert any(ax.get_ylabel() for ax in axes), name


def test_no_legend_covers_data(figures):
    for name, fig in figures.items():
        renderer = fig.canvas.get_renderer()
        plotting_areas = [ax.get_window_extent(renderer) for ax in fig.axes if ax.get_visible()]
        for ax in fig.axes:
            legend = ax.get_legend()
            if legend is None:
                continue
            box = legend.get_window_extent(renderer)
            assert not any(box.overlaps(area) for area in plotting_areas), name


def test_the_lr_figure_calls_a_single_seed_a_seed_not_a_mean(figures):
    labels = [text.get_text() for text in figures["lr_sensitivity"].axes[0].get_legend().texts]
    assert labels == ["normal (one seed per rate)"]
    several = plots.lr_sensitivity({"normal": {3e-4: [0.1, 0.3], 3e-3: [0.2, 0.4]}})
    labels = [text.get_text() for text in several.axes[0].get_legend().texts]
    assert labels == ["normal (mean of 2 seeds)", "normal: one seed"]
    plt.close(several)


def test_the_prompt_norm_figure_keeps_the_token_norm_line_in_view(figures):
    ax = figures["prompt_norm_curves"].axes[0]
    low, high = ax.get_ylim()
    assert low < 3.2 < high
    assert "mean token norm (3.2)" in [text.get_text() for text in ax.get_legend().texts]


def test_the_kv_norm_figure_draws_keys_and_values_per_layer(figures):
    keys, values = figures["kv_norm_plot"].axes
    assert [keys.get_title(), values.get_title()] == ["keys: median norm of one head",
                                                      "values: median norm of one head"]
    model_line, prompt_line = values.get_lines()
    assert list(model_line.get_ydata()) == [0.3, 4.0, 9.0]  # the values column, per layer
    assert list(prompt_line.get_xdata()) == [0, 1, 2]
    assert [t.get_text() for t in values.get_legend().texts] == [
        "the model's own, real tokens", "N(0, 1) prefix"]


def test_the_pca_zoom_frames_the_trajectories(figures):
    whole, zoom = figures["pca_picture"].axes[:2]
    (x0, x1), (y0, y1) = zoom.get_xlim(), zoom.get_ylim()
    (wx0, wx1), (wy0, wy1) = whole.get_xlim(), whole.get_ylim()
    assert (x1 - x0) < (wx1 - wx0) / 3 and (y1 - y0) < (wy1 - wy0) / 3  # a real zoom ...
    for line in zoom.get_lines():  # ... holding every trajectory whole
        xs, ys = line.get_data()
        assert all(x0 <= x <= x1 for x in xs) and all(y0 <= y <= y1 for y in ys)


def test_pca_labels_do_not_overlap(figures):
    fig = figures["pca_picture"]
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes[:2]:
        boxes = [Text.get_window_extent(text, renderer) for text in ax.texts]  # without lines
        for index, box in enumerate(boxes):
            assert not any(box.overlaps(other) for other in boxes[index + 1:])


def test_the_coupling_colorbar_says_what_the_colour_is(figures):
    fig = figures["coupling_heatmaps"]
    colorbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(colorbars) == 1
    assert colorbars[0].get_ylabel() == "entry / the panel's largest entry (0 to 1)"


def test_interval_bars_reach_the_interval_and_are_absent_without_one():
    bars = study_plots._interval_bars([{"mean": 0.4, "low": 0.3, "high": 0.6},
                                      {"mean": 0.85, "low": float("nan"), "high": float("nan")}])
    assert np.allclose(bars, [[0.1, 0.0], [0.2, 0.0]])


def test_the_study_strip_shows_every_seed_apart(figures):
    fig = figures["study_strip"]
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["capital_of", "antonym"]
    dots = [line for line in panels[0].get_lines() if line.get_marker() == "o"]
    xs = [x for line in dots for x in line.get_xdata()]
    assert len(xs) == 4 and len(set(xs)) == 4  # two equal scores (0.45) drawn side by side


def test_the_live_curve_keeps_its_title_and_labels(monkeypatch):
    shown = []

    class Handle:
        def update(self, fig):
            shown.append(fig)

    monkeypatch.setattr("IPython.display.display", lambda fig, display_id=False: Handle())
    live = plots.LiveCurve("Free vectors: dev EM while training", steps=40)
    record = history(0, steps=40)
    live.update(record)
    live.update(record)
    assert len(shown) == 2
    assert live.ax.get_title() == "Free vectors: dev EM while training"
    assert live.ax.get_xlabel() == "training step"
    assert live.ax.get_ylabel().startswith("dev exact match")
    assert list(live.line.get_xdata()) == record.eval_step
    plt.close(live.fig)


def test_compute_to_quality_shows_the_best_so_far_and_the_manual_level(figures):
    fig = figures["compute_to_quality"]
    left = fig.axes[0]
    assert left.get_xscale() == "log" and left.get_title() == "capital_of"
    manual = [line for line in left.get_lines() if line.get_linestyle() == "--"]
    assert len(manual) == 1 and manual[0].get_ydata()[0] == 0.3
    mean_lstm = next(line for line in left.get_lines() if line.get_label() == "lstm (2 seeds)")
    x, y = mean_lstm.get_xdata(), mean_lstm.get_ydata()
    # at 300 forwards seed 0 has reached 0.2 and seed 1 0.4 (its best so far, not its last)
    at = np.searchsorted(x, 300)
    assert y[at] == pytest.approx(0.3)
    drawn = ~np.isnan(y)
    assert y[drawn][-1] == pytest.approx((0.5 + 0.4) / 2)  # seed 1 keeps its best 0.4, not 0.3
    assert x[drawn].max() <= 480 < x.max()  # the LSTM's line ends where its runs did (480),
    # not at the axis' end (the search's 9,000 forwards)
    gcg = next(line for line in left.get_lines() if line.get_label() == "gcg_manual (1 seeds)")
    assert np.nanmax(gcg.get_xdata()[~np.isnan(gcg.get_ydata())]) > 8000
