"""Discrete prompt search: the allowed vocabulary, HotFlip candidates, the greedy acceptance rule,
forward counting, and manual-prompt evaluation, on the tiny model."""


import pytest
import torch

from ptlib import ConfigError, SearchConfig, Task, TemplateError, evaluate, parse_template, search
from ptlib import discrete as discrete_module
from ptlib.discrete import allowed_tokens, manual_prompts, prompt_text
from ptlib.objective import batch_scores, make_batch
from ptlib.proposers import hotflip_candidates, random_candidates, slot_gradient

TEMPLATE = "{x} is [P][P]"


def token(lm, char):
    (ids,) = [lm.tokenizer(char, add_special_tokens=False).input_ids]
    assert len(ids) == 1
    return ids[0]


# --- the allowed vocabulary ----------------------------------------------------------------

@pytest.mark.parametrize("exclude_capitalised", [True, False])
def test_allowed_tokens(tiny, exclude_capitalised):
    allowed = allowed_tokens(tiny, ["Paris", "Rome"], exclude_capitalised=exclude_capitalised)
    assert allowed.shape == (tiny.vocab_size,) and allowed.dtype == torch.bool
    for special in tiny.tokenizer.all_special_ids:
        assert not allowed[special]
    for char in " ParisRome":  # every token of a gold object, and the space before it
        assert not allowed[token(tiny, char)], char
    for char in "bcdfgz.,1":  # ordinary tokens stay
        assert allowed[token(tiny, char)], char
    for char in "BCDFGZ":
        assert bool(allowed[token(tiny, char)]) is not exclude_capitalised, char
    assert not allowed[token(tiny, "P")]  # gold beats exclude_capitalised=False


# --- HotFlip -------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 5, 20])
def test_hotflip_candidates_are_the_brute_force_top_k(tiny, k):
    generator = torch.Generator().manual_seed(k)
    grad = torch.randn(tiny.width, generator=generator)
    allowed = torch.rand(tiny.vocab_size, generator=generator) < 0.5
    got = hotflip_candidates(tiny, grad, allowed, k)
    assert got.shape == (k,)
    gains = {i: float(tiny.embeddings[i] @ -grad) for i in range(tiny.vocab_size) if allowed[i]}
    expected = sorted(gains, key=gains.get, reverse=True)[:k]
    assert got.tolist() == expected
    assert all(allowed[got])


def test_hotflip_never_returns_a_disallowed_token(tiny):
    allowed = torch.zeros(tiny.vocab_size, dtype=torch.bool)
    allowed[[10, 20, 30]] = True
    got = hotflip_candidates(tiny, torch.randn(tiny.width), allowed, 5)
    assert all(allowed[got])


def test_random_candidates_are_distinct_and_allowed(tiny):
    allowed = allowed_tokens(tiny, ["Paris"])
    generator = torch.Generator().manual_seed(0)
    got = random_candidates(allowed, 10, generator)
    assert got.shape == (10,) and got.unique().numel() == 10
    assert allowed[got].all()
    again = random_candidates(allowed, 10, torch.Generator().manual_seed(0))
    assert torch.equal(got, again)


def test_slot_gradient_matches_a_finite_difference(tiny, facts):
    template = parse_template(TEMPLATE)
    slot_ids = torch.tensor([token(tiny, "a"), token(tiny, "b")])
    grad = slot_gradient(tiny, template, facts[:4], slot_ids)
    assert grad.shape == (2, tiny.width)
    assert all(p.grad is None for p in tiny.model.parameters())
    batch = make_batch(tiny, template, facts[:4])
    base = tiny.embeddings[slot_ids].detach().double()
    direction = torch.randn(2, tiny.width, generator=torch.Generator().manual_seed(0)).double()
    direction /= direction.norm()
    eps = 3e-3  # small next to the token norm (~0.1), large next to fp32 noise in the loss

    def loss(prompt):
        with torch.no_grad():
            return -batch_scores(tiny, batch, prompt=prompt.float()).logprob.double().mean()

    numeric = (loss(base + eps * direction) - loss(base - eps * direction)) / (2 * eps)
    analytic = (grad.double() * direction).sum()
    assert float(numeric) == pytest.approx(float(analytic), rel=0.01)


# --- search --------------------------------------------------------------------------------

@pytest.fixture
def recorded(monkeypatch):
    """Record every call of score_candidates made by search: (candidates, values)."""
    calls = []
    original = discrete_module.score_candidates

    def spy(lm, batch, candidates, *args, **kwargs):
        values = original(lm, batch, candidates, *args, **kwargs)
        calls.append((candidates.clone(), values.clone(), batch.size))
        return values

    monkeypatch.setattr(discrete_module, "score_candidates", spy)
    return calls


@pytest.mark.parametrize("method", ["autoprompt", "random"])
def test_full_batch_objective_never_falls_and_swaps_strictly_improve(tiny, facts, method,
                                                                      recorded):
    cfg = SearchConfig(method=method, iterations=8, num_candidates=6, batch_size=4,
                       full_batch=True, eval_every=4, seed=1)
    result = search(tiny, TEMPLATE, facts[:8], facts[8:], cfg, show_progress=False)
    h = result.history
    assert h.iteration == list(range(1, 9)) and len(recorded) == 8
    for i, (candidates, values, size) in enumerate(recorded):
        assert size == 8  # every train fact, every iteration
        assert candidates.shape == (7, 2)
        changed = (candidates[1:] != candidates[0]).sum(1)
        assert (changed <= 1).all()  # each trial swaps one slot
        best = float(values[1:].max())
        assert h.accepted[i] == (best > float(values[0]))
        if h.accepted[i]:
            assert h.objective[i] == pytest.approx(best, abs=0)
            assert h.objective[i] > float(values[0])  # strictly better than the kept prompt
        else:
            assert h.objective[i] == pytest.approx(float(values[0]), abs=0)
            if i:
                assert h.prompt[i] == h.prompt[i - 1]
        if i:  # row 0 is the prompt kept after the previous iteration, scored again
            assert float(values[0]) == pytest.approx(h.objective[i - 1], abs=1e-5)
    assert all(b >= a - 1e-5 for a, b in zip(h.objective, h.objective[1:], strict=False))
    assert any(h.accepted)  # the test exercises both branches
    assert h.objective[-1] > float(recorded[0][1][0])


@pytest.mark.parametrize("method", ["autoprompt", "random"])
def test_forwards_are_counted_as_documented(tiny, facts, method, recorded):
    cfg = SearchConfig(method=method, iterations=4, num_candidates=5, batch_size=3, eval_every=2)
    result = search(tiny, TEMPLATE, facts[:8], facts[8:], cfg, show_progress=False)
    per_gradient = 3 * cfg.batch_size if method == "autoprompt" else 0  # backward counts 2
    expected, total = [], 0
    for candidates, _, size in recorded:
        assert size == cfg.batch_size  # not full_batch: a fresh batch of batch_size facts
        total += per_gradient + candidates.shape[0] * size
        expected.append(total)
    assert result.history.forwards == expected
    assert result.forwards == expected[-1] == 4 * (per_gradient + 6 * 3)


def test_max_forwards_stops_the_search(tiny, facts):
    cfg = SearchConfig(method="random", iterations=50, num_candidates=3, batch_size=4,
                       max_forwards=40, eval_every=100)
    result = search(tiny, TEMPLATE, facts[:8], facts[8:], cfg, show_progress=False)
    # 16 forwards per iteration: stops at the first count >= 40, the third iteration.
    assert result.history.forwards == [16, 32, 48]
    assert result.history.eval_iteration == [0, 3]  # a last dev evaluation at the stop


@pytest.mark.parametrize("method", ["autoprompt", "random"])
def test_search_result(tiny, facts, method):
    cfg = SearchConfig(method=method, iterations=6, num_candidates=4, batch_size=4, eval_every=3)
    train_facts, dev_facts = facts[:8], facts[8:]
    result = search(tiny, TEMPLATE, train_facts, dev_facts, cfg, show_progress=False)
    h = result.history
    assert result.slot_ids.shape == (2,) and result.slot_ids.dtype == torch.long
    allowed = allowed_tokens(tiny, [f.y for f in train_facts])
    assert allowed[result.slot_ids].all()
    assert result.prompt_text.startswith("{x} is")  # the space before a slot is not encoded
    assert result.prompt_text == prompt_text(tiny, parse_template(TEMPLATE), result.slot_ids)
    assert len(h.iteration) == len(h.forwards) == len(h.objective) == len(h.accepted) == 6
    assert len(h.prompt) == 6
    assert h.eval_iteration == [0, 3, 6] and len(h.dev_exact_match) == 3
    assert result.best_dev_exact_match == max(h.dev_exact_match)
    assert result.evaluate(tiny, dev_facts).exact_match == result.best_dev_exact_match
    assert result.seconds >= 0 and result.seconds_per_iteration == result.seconds / 6
    # Same seed, same search.
    again = search(tiny, TEMPLATE, train_facts, dev_facts, cfg, show_progress=False)
    assert again.history.objective == h.objective and torch.equal(again.slot_ids, result.slot_ids)


def test_initial_slots_use_init_token_when_it_is_one_token(tiny, facts, recorded):
    cfg = SearchConfig(method="random", iterations=1, num_candidates=2, batch_size=2,
                       init_token="q")
    search(tiny, TEMPLATE, facts[:4], facts[4:6], cfg, show_progress=False)
    first_prompt = recorded[0][0][0]
    assert first_prompt.tolist() == [token(tiny, "q")] * 2


def test_prompt_text_writes_the_tokens_into_the_slots(tiny):
    template = parse_template("[P] {x} is [P][P]")
    ids = torch.tensor([token(tiny, c) for c in "abc"])
    assert prompt_text(tiny, template, ids) == "a {x} isbc"  # as encoded: no space before a slot


BAD_SEARCH = [("method", "beam"), ("iterations", 0), ("num_candidates", 0), ("batch_size", 0),
              ("eval_every", 0), ("iterations", True), ("max_forwards", 0),
              ("precision", "fp16")]


@pytest.mark.parametrize(("field", "value"), BAD_SEARCH, ids=[f"{f}={v!r}" for f, v in BAD_SEARCH])
def test_bad_search_config_raises_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        SearchConfig(**{field: value})


def test_search_rejects_bad_input(tiny, facts):
    cfg = SearchConfig(iterations=1)
    with pytest.raises(TemplateError, match="slots"):
        search(tiny, "The capital of {x} is", facts, facts, cfg, show_progress=False)
    with pytest.raises(TemplateError, match="slots"):
        search(tiny, parse_template("The capital of {x} is"), facts, facts, cfg,
               show_progress=False)
    with pytest.raises(ConfigError):
        search(tiny, TEMPLATE, [], facts, cfg, show_progress=False)
    with pytest.raises(ConfigError):
        search(tiny, TEMPLATE, facts, [], cfg, show_progress=False)


def test_manual_prompts_evaluate_each_template(tiny, facts):
    templates = ["The capital of {x} is", "{x}'s capital city is"]
    task = Task("capitals", facts * 1, templates)
    rows = manual_prompts(tiny, task, split="train")
    assert [r["template"] for r in rows] == templates
    for row, text in zip(rows, templates, strict=True):
        expected = evaluate(tiny, parse_template(text), task.split("train"))
        assert row["exact_match"] == expected.exact_match
        assert row["nll"] == pytest.approx(expected.nll)
        assert row["mean_first_rank"] == pytest.approx(expected.mean_first_rank)
    assert rows[0]["nll"] != rows[1]["nll"]  # paraphrases score differently

