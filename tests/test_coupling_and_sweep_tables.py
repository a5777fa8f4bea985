"""Helpers behind notebooks 04-06: encoder coupling (analysis), seed-run statistics (sweep) and
their figures (plots), on the tiny model."""

import math

import matplotlib
import pytest
import torch

from ptlib import TrainConfig, analysis, build_encoder
from ptlib.course import plots
from ptlib.course import runs as sweep

matplotlib.use("Agg")
TEMPLATE = "[P][P] {x} [P][P]"


def encoders(tiny, num_slots=5):
    return {kind: build_encoder(kind, num_slots, tiny.embeddings, seed=0)
            for kind in ("free", "mlp", "lstm")}


def test_position_coupling_pattern(tiny):
    built = encoders(tiny)
    for kind, encoder in built.items():
        matrix = analysis.position_coupling(encoder)
        assert matrix.shape == (5, 5)
        assert (matrix.diagonal() > 0).all()
        off = matrix - torch.diag(matrix.diagonal())
        if kind == "lstm":
            assert (off + torch.eye(5) > 0).all()  # every off-diagonal entry non-zero
        else:  # free vectors and the position-wise MLP: only the perturbed row moves
            assert torch.count_nonzero(off) == 0
    free = analysis.position_coupling(built["free"])
    torch.testing.assert_close(free, torch.eye(5))  # the identity, unit directions


def test_the_first_adamw_step_moves_free_vectors_by_lr_sqrt_d_and_encoders_in_proportion(tiny):
    built = encoders(tiny)
    d = tiny.embeddings.shape[1]
    pull = torch.randn(5, d, generator=torch.Generator().manual_seed(0))  # (L, d)
    start = {kind: encoder().detach().clone() for kind, encoder in built.items()}
    free = analysis.first_step_move(built["free"], 1e-3, pull)
    torch.testing.assert_close(free, torch.full((5,), 1e-3 * math.sqrt(d)), rtol=1e-3,
                               atol=0)  # every coordinate moves by lr
    for kind in ("mlp", "lstm"):  # at a small lr the move is first order: 10x lr, 10x move
        small, large = (analysis.first_step_move(built[kind], lr, pull) for lr in (1e-6, 1e-5))
        torch.testing.assert_close(large / small, torch.full((5,), 10.0), rtol=0.05, atol=0)
    for kind, encoder in built.items():  # the encoders themselves are left as they were
        torch.testing.assert_close(encoder().detach(), start[kind], rtol=0, atol=0)


def test_position_coupling_agrees_with_a_perturbation(tiny):
    encoder = build_encoder("lstm", 4, tiny.embeddings, seed=1)
    matrix = analysis.position_coupling(encoder)
    table = encoder.seed_embedding.weight
    with torch.no_grad():
        before = encoder().clone()
        saved = table.clone()
        table[1] += 1e-3 * torch.randn(tiny.width)
        moved = (encoder() - before).norm(dim=1)
        table.copy_(saved)
    assert ((moved > 0) == (matrix[:, 1] > 0)).all()


def test_update_coupling_pattern_and_no_side_effects(tiny):
    for kind, encoder in encoders(tiny).items():
        before = {k: v.clone() for k, v in encoder.state_dict().items()}
        matrix = analysis.update_coupling(encoder)
        assert matrix.shape == (5, 5) and torch.isfinite(matrix).all()
        off = matrix - torch.diag(matrix.diagonal())
        if kind == "free":
            torch.testing.assert_close(matrix, torch.eye(5))
        else:  # shared weights: a step aimed at one slot moves every slot
            assert (off + torch.eye(5) > 0).all()
        after = encoder.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)
        assert all(p.grad is None for p in encoder.parameters())


@pytest.fixture
def seed_runs(tiny, facts):
    config = TrainConfig(encoder="free", init="normal", steps=4, eval_every=2, lr=0.05,
                         batch_size=4)  # at most the 8 train facts
    return sweep.run_seeds(tiny, TEMPLATE, facts[:8], facts[8:], facts[8:], config, [0, 1],
                           show_progress=False)


def test_steps_to_level(seed_runs):
    result = seed_runs[0].result
    assert sweep.steps_to_level(result, -1.0) == 0
    assert sweep.steps_to_level(result, 1.5) is None
    best = max(result.history.dev_exact_match)
    step = sweep.steps_to_level(result, best)
    assert step in result.history.eval_step
    assert result.history.dev_exact_match[result.history.eval_step.index(step)] >= best


def test_run_statistics_and_table(seed_runs):
    stats = sweep.run_statistics(seed_runs, 0.9, level=-1.0)
    assert stats["n"] == 2 and 0.0 <= stats["min"] <= stats["mean"] <= stats["max"] <= 1.0
    assert stats["common_reach"] == [0, 0] and stats["mean_reach"] == 0
    assert stats["init_norm"] == pytest.approx(math.sqrt(32), rel=0.3)  # N(0, I) at width 32
    assert stats["moved"] > 0 and stats["final_norm"] > 0
    distances = [(run.result.trajectory[-1] - run.result.trajectory[0]).norm(dim=1).mean()
                 for run in seed_runs]  # embedding units, as the norms
    assert stats["moved"] == pytest.approx(float(sum(distances)) / 2)
    never = sweep.run_statistics(seed_runs, 0.9, level=2.0)
    assert never["common_reach"] == [None, None] and math.isinf(never["mean_reach"])
    text = sweep.format_run_table({"a": stats, "long name": never}, "init")
    lines = text.splitlines()
    assert len(lines) == 3 and lines[1].startswith("a ") and lines[2].startswith("long name")
    assert "-,-" in lines[2]


def test_new_figures_have_labels(seed_runs, tiny):
    histories = [run.result.history for run in seed_runs]
    figures = [
        plots.lr_sensitivity({"normal": {1e-3: [0.1, 0.2], 1e-2: [0.3]}}),
        plots.prompt_norm_curves({"normal": histories}, token_norm=1.0),
        plots.coupling_heatmaps({"lstm": analysis.position_coupling(encoders(tiny)["lstm"])}),
        plots.grouped_results_bars([
            {"task": "a", "method": "x", "mean": 0.2, "sd": 0.1},
            {"task": "a", "method": "y", "mean": 0.4, "sd": 0.0},
            {"task": "b", "method": "x", "mean": 0.5}]),
    ]
    for fig in figures:
        ax = fig.axes[0]
        assert ax.get_xlabel() and ax.get_ylabel()
        assert ax.get_title() or fig._suptitle is not None
        matplotlib.pyplot.close(fig)
