"""Discrete search from a given start, run to its plateau: the manual prompt written as slots,
the best-on-dev prompt never below its start, patience, and the GCG proposer's candidates, on
the tiny model."""

import pytest
import torch

from ptlib import (
    SearchConfig,
    TemplateError,
    evaluate,
    load_task,
    parse_template,
    search,
    search_from_manual,
)
from ptlib import proposers as proposers_module
from ptlib.discrete import SearchHistory, allowed_tokens, best_manual_template, manual_start
from ptlib.proposers import SearchState, propose_gcg, slot_runs, survives_retokenisation

MANUAL = "The capital of {x} is"


def test_the_manual_start_is_the_manual_prompt_token_for_token(tiny, facts):
    template, ids = manual_start(tiny, MANUAL, [f.x for f in facts])
    assert template.startswith("[P]") and " {x} " in template
    assert parse_template(template).num_slots == len(ids)
    manual = evaluate(tiny, parse_template(MANUAL), facts, precision="fp32")
    written = evaluate(tiny, parse_template(template), facts, slot_ids=ids, precision="fp32")
    assert written.exact == manual.exact and written.nll == pytest.approx(manual.nll, abs=1e-5)


def test_a_manual_start_needs_a_template_without_slots(tiny):
    with pytest.raises(TemplateError, match="without slots"):
        manual_start(tiny, "{x} [P]", ["France"])


@pytest.mark.parametrize("method", ["autoprompt", "gcg", "random"])
def test_a_search_never_ends_below_its_start_on_dev(tiny, facts, method):
    template, ids = manual_start(tiny, MANUAL, [f.x for f in facts])
    cfg = SearchConfig(method=method, iterations=6, num_candidates=4, top_k=8, batch_size=4,
                       eval_every=2, seed=3, precision="fp32")
    result = search(tiny, template, facts[:8], facts[8:], cfg, show_progress=False,
                    initial_slots=ids)
    start = evaluate(tiny, parse_template(MANUAL), facts[8:], precision="fp32")
    assert result.history.eval_iteration[0] == 0
    assert result.history.dev_exact_match[0] == start.exact_match  # the start, scored first
    assert result.best_dev_exact_match >= start.exact_match
    assert result.best_dev_exact_match == max(result.history.dev_exact_match)


def test_a_start_of_the_wrong_length_is_refused(tiny, facts):
    with pytest.raises(Exception, match="initial_slots has shape"):
        search(tiny, "{x} [P][P]", facts[:4], facts[4:], SearchConfig(iterations=1),
               show_progress=False, initial_slots=torch.tensor([5, 6, 7]))


def test_patience_stops_a_search_that_no_longer_improves_on_dev(tiny, facts):
    cfg = SearchConfig(method="random", iterations=200, num_candidates=2, batch_size=2,
                       eval_every=1, patience=3, seed=0)
    result = search(tiny, "{x} [P][P]", facts[:8], facts[8:], cfg, show_progress=False)
    history = result.history
    assert result.stopped_by == "patience" and len(history.iteration) < 200
    scores = list(zip(history.dev_exact_match, (-nll for nll in history.dev_nll), strict=True))
    best_before_last_three = max(scores[:-3])
    assert all(score <= best_before_last_three for score in scores[-3:])


def test_a_search_says_what_stopped_it(tiny, facts):
    budget = SearchConfig(method="random", iterations=50, num_candidates=3, batch_size=4,
                          max_forwards=40, eval_every=100)
    assert search(tiny, "{x} [P][P]", facts[:8], facts[8:], budget,
                  show_progress=False).stopped_by == "budget"
    plain = SearchConfig(method="random", iterations=2, num_candidates=3, batch_size=4)
    assert search(tiny, "{x} [P][P]", facts[:8], facts[8:], plain,
                  show_progress=False).stopped_by == "iterations"


def test_slot_runs_follow_the_template():
    assert slot_runs(parse_template("[P][P] {x} [P]")) == [range(0, 2), range(2, 3)]
    assert slot_runs(parse_template("[P] [P]{x} is [P] [P]")) == [range(0, 2), range(2, 4)]
    assert slot_runs(parse_template("The {x} [P]")) == [range(0, 1)]


class MergingTokenizer:
    """Token 1 is "a", 2 is "b", 3 is "ab": decoding [1, 2] gives "ab", which encodes as [3]."""

    text = {1: "a", 2: "b", 3: "ab"}

    def decode(self, ids):
        return "".join(self.text[i] for i in ids)

    def __call__(self, text, add_special_tokens=False):
        ids, i = [], 0
        while i < len(text):  # greedy longest match: "ab" is one token
            ids.append(3 if text[i:i + 2] == "ab" else {"a": 1, "b": 2}[text[i]])
            i += 2 if ids[-1] == 3 else 1
        return type("Encoded", (), {"input_ids": ids})()


def test_retokenisation_drops_slot_tokens_that_read_back_as_others():
    template = parse_template("[P][P] {x} [P]")
    tokenizer = MergingTokenizer()
    assert not survives_retokenisation(tokenizer, template, torch.tensor([1, 2, 1]))  # "ab"
    assert survives_retokenisation(tokenizer, template, torch.tensor([3, 1, 2]))  # "aba", "b"
    assert survives_retokenisation(tokenizer, template, torch.tensor([2, 1, 1]))  # "ba", "a"


def test_gcg_candidates_are_single_swaps_from_each_slots_top_k_that_survive(tiny, facts,
                                                                             monkeypatch):
    template = parse_template("[P][P][P] {x} [P]")
    config = SearchConfig(method="gcg", num_candidates=64, top_k=5, batch_size=4)
    allowed = allowed_tokens(tiny, [f.y for f in facts[:8]])
    slots = torch.tensor([token for token in allowed.nonzero().squeeze(1)[:4].tolist()])
    state = SearchState(tiny, template, facts[:8], allowed, config,
                        torch.Generator().manual_seed(0), slots)
    pools = []
    real_pools = proposers_module.hotflip_pools
    monkeypatch.setattr(proposers_module, "hotflip_pools",
                        lambda *a, **k: pools.append(real_pools(*a, **k)) or pools[-1])
    proposal = propose_gcg(state)
    assert proposal.forwards == 3 * 4 and 0 < len(proposal.prompts) <= 64
    (pool,) = pools  # (L, top_k)
    for prompt in proposal.prompts:
        changed = (prompt != slots).nonzero().squeeze(1).tolist()
        assert len(changed) <= 1  # one slot swapped (or a pick equal to the current token)
        for position in changed:
            assert int(prompt[position]) in pool[position].tolist()
        assert survives_retokenisation(tiny.tokenizer, template, prompt)
    assert len({tuple(int(i) for i in (p != slots).nonzero()) for p in proposal.prompts}) > 1


def test_search_from_manual_starts_at_the_template_chosen_on_dev_or_the_one_given(tiny):
    task = load_task("capital_of")
    cfg = SearchConfig(method="gcg", iterations=3, num_candidates=4, top_k=8, batch_size=4,
                       eval_every=1, seed=0, precision="fp32")
    chosen, on_dev = best_manual_template(tiny, task, "dev", "fp32")
    result = search_from_manual(tiny, task, cfg, show_progress=False)
    assert result.history.dev_exact_match[0] == on_dev.exact_match
    assert result.history.dev_nll[0] == pytest.approx(on_dev.nll, abs=1e-5)
    assert result.best_dev_exact_match >= on_dev.exact_match
    assert parse_template(result.template).num_slots > 0
    other = next(text for text in task.templates if text != chosen)
    given = search_from_manual(tiny, task, cfg, manual=other, show_progress=False)
    start = evaluate(tiny, parse_template(other), task.split("dev"), precision="fp32")
    assert given.history.dev_nll[0] == pytest.approx(start.nll, abs=1e-5)


def test_a_history_tells_how_often_each_half_accepted_and_the_last_accepted_swap():
    history = SearchHistory(iteration=[1, 2, 3, 4, 5], accepted=[True, False, False, True, False])
    assert history.acceptance() == (0.5, 1 / 3)  # halves: iterations 1-2 and 3-5
    assert history.last_accepted() == 4
    idle = SearchHistory(iteration=[1, 2], accepted=[False, False])
    assert idle.acceptance() == (0.0, 0.0) and idle.last_accepted() is None
    assert SearchHistory().acceptance() == (0.0, 0.0)  # no iteration at all
