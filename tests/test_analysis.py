"""Where vectors sit relative to the vocabulary (ptlib.analysis), on the tiny random-init LM."""

import pytest
import torch

from ptlib import Fact, analysis, parse_template
from ptlib.objective import evaluate

FACTS = [Fact("ab", "c"), Fact("de", "f"), Fact("gh", "i")]
TOKENS = [70, 71, 72]  # three byte tokens, used as the slot contents


def test_token_rows_are_their_own_nearest_tokens(tiny):
    rows = tiny.embeddings.detach()[TOKENS]  # (3, d)
    assert analysis.nearest_token_ids(tiny, rows).tolist() == TOKENS
    assert analysis.nearest_token_ids(tiny, rows, metric="cosine").tolist() == TOKENS
    torch.testing.assert_close(analysis.distance_to_vocab(tiny, rows), torch.zeros(3),
                               atol=1e-3, rtol=0)  # cdist's matmul route: ~4e-5 off zero
    for row, token in zip(analysis.nearest_tokens(tiny, rows, k=3), TOKENS, strict=True):
        assert len(row) == 3
        assert row[0] == (tiny.tokenizer.decode([token]), pytest.approx(1.0, abs=1e-5))
        assert row[0][1] >= row[1][1] >= row[2][1]  # cosine, descending
    with pytest.raises(ValueError, match="metric"):
        analysis.nearest_token_ids(tiny, rows, metric="dot")


def test_distance_to_vocab_is_the_smallest_row_distance(tiny):
    vectors = torch.randn(4, tiny.width, generator=torch.Generator().manual_seed(0))
    expected = torch.cdist(vectors, tiny.embeddings.detach().float()).min(dim=1).values
    torch.testing.assert_close(analysis.distance_to_vocab(tiny, vectors), expected)
    gaps = analysis.token_gap(tiny, sample=50)
    assert gaps.shape == (50,) and (gaps > 0).all()  # the token itself is excluded


def test_pca_has_orthonormal_components(tiny):
    pca = analysis.fit_pca(tiny, sample=200)
    assert pca.components.shape == (2, tiny.width)
    torch.testing.assert_close(pca.components @ pca.components.T, torch.eye(2), atol=1e-4,
                               rtol=0)
    assert pca.project(tiny.embeddings[:7]).shape == (7, 2)


def test_a_prompt_made_of_token_rows_has_no_discretisation_gap(tiny):
    template = parse_template("[P] {x}[P][P]")
    prompt = tiny.embeddings.detach()[TOKENS]  # (3, d): standing exactly on tokens
    gap = analysis.discretisation_gap(tiny, template, FACTS, prompt)
    assert gap["snapped_tokens"] == [tiny.tokenizer.decode([t]) for t in TOKENS]
    assert gap["snapped_exact_match"] == gap["continuous_exact_match"]
    assert gap["snapped_nll"] == pytest.approx(gap["continuous_nll"], abs=1e-4)


def test_path_losses_meet_at_the_tokens_and_score_each_snapped_token_once(tiny, monkeypatch):
    template = parse_template("[P] {x}[P][P]")
    calls = {"prompt": 0, "slot_ids": 0}

    def counting_evaluate(*args, **kwargs):
        calls["slot_ids" if kwargs.get("slot_ids") is not None else "prompt"] += 1
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(analysis, "evaluate", counting_evaluate)
    path = analysis.path_losses(tiny, template, FACTS, torch.tensor(TOKENS), position=1,
                                token_a=80, token_b=90, points=9)
    assert path.alpha.shape == path.continuous.shape == path.discrete.shape == (9,)
    assert path.snapped[0] == tiny.tokenizer.decode([80])
    assert path.snapped[-1] == tiny.tokenizer.decode([90])
    # At the ends the slot holds a token's own row, so both curves agree there.
    assert path.continuous[0] == pytest.approx(float(path.discrete[0]), abs=1e-4)
    assert path.continuous[-1] == pytest.approx(float(path.discrete[-1]), abs=1e-4)
    # The discrete curve is a step function of the snapped token.
    for i in range(8):
        if path.snapped[i] == path.snapped[i + 1]:
            assert path.discrete[i] == path.discrete[i + 1]
    assert calls["prompt"] == 9
    assert calls["slot_ids"] == len(set(path.snapped)) < 9
