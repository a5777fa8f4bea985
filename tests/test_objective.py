"""The objective: log P(y | x, P) of multi-token targets, exact-match P@1 and first-token rank,
checked against computations done by hand from the full model's logits."""

import math

import pytest
import torch
from conftest import padded_target_logits

import ptlib
from ptlib import Fact, TemplateError, evaluate, parse_template
from ptlib.objective import (
    batch_scores,
    input_embeddings,
    make_batch,
    prompted_logits,
    score,
    score_candidates,
    target_logits,
)
from ptlib.template import build_batch, encode_target

ATOL = 1e-5
TEMPLATES = ["The capital of {x} is", "[P] {x} [P][P]", "{x}'s capital city is [P]"]


def random_prompt(lm, num_slots, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(num_slots, lm.width, generator=generator) * 0.5


def by_hand(lm, template, fact, prompt=None):
    """(log P(y | x, P), every target token is argmax, rank of the first target token), from the
    full model's logits of one unpadded sequence, computed without ptlib's objective code."""
    tokenizer = lm.tokenizer
    ids = []  # token ids, None at a slot
    for chunk in template.chunks(fact.x):
        if chunk is None:
            ids.append(None)
        else:
            ids.extend(tokenizer(chunk, add_special_tokens=False).input_ids)
    target = tokenizer(" " + fact.y, add_special_tokens=False).input_ids
    ids += target
    weight = lm.embeddings.detach()
    rows, slot = [], 0
    for token in ids:
        if token is None:
            rows.append(prompt[slot])
            slot += 1
        else:
            rows.append(weight[token])
    with torch.no_grad():
        logits = lm.model(inputs_embeds=torch.stack(rows).unsqueeze(0)).logits[0]  # (T, V)
    logp = torch.log_softmax(logits.double(), dim=-1)
    first = len(ids) - len(target)
    total, exact = 0.0, True
    for j, token in enumerate(target):
        predicting = logits[first + j - 1]  # logits at p predict token p + 1
        total += float(logp[first + j - 1, token])
        exact &= int(predicting.argmax()) == token
    head = logits[first - 1]
    rank = 1 + int((head > head[target[0]]).sum())
    return total, exact, rank


@pytest.mark.parametrize("text", TEMPLATES)
def test_logprob_matches_a_log_softmax_by_hand(tiny, facts, text):
    template = parse_template(text)
    prompt = random_prompt(tiny, template.num_slots) if template.num_slots else None
    batch = make_batch(tiny, template, facts[:5])
    with torch.no_grad():
        scores = batch_scores(tiny, batch, prompt=prompt)
    for row, fact in enumerate(facts[:5]):
        logprob, exact, rank = by_hand(tiny, template, fact, prompt)
        assert float(scores.logprob[row]) == pytest.approx(logprob, abs=ATOL)
        assert bool(scores.exact[row]) == exact
        assert int(scores.first_rank[row]) == rank
    assert (scores.logprob < 0).all()


def test_target_logits_match_the_full_logits(tiny, facts):
    template = parse_template("{x} is [P]")
    prompt = random_prompt(tiny, 1)
    batch = make_batch(tiny, template, facts[:4])
    with torch.no_grad():
        embeds = input_embeddings(tiny, batch, prompt=prompt)
        picked = target_logits(tiny, batch, embeds)  # (B, Ty, V)
        expected = padded_target_logits(tiny.model, batch, embeds)
    assert picked.dtype == torch.float32
    real = batch.target_mask  # (B, Ty): entries past a target's length are unspecified
    assert not real.all()  # some targets are shorter than others
    torch.testing.assert_close(picked[real], expected[real], atol=ATOL, rtol=0)


@pytest.mark.parametrize("text", TEMPLATES)
def test_padding_side_does_not_change_scores(tiny, facts, text):
    # DESIGN: without position_ids = cumsum(mask) - 1, a left-padded row drifts from the unpadded
    # one. Rows of different lengths make sure there is padding on both sides.
    template = parse_template(text)
    prompt = random_prompt(tiny, template.num_slots, seed=1) if template.num_slots else None
    chosen = [facts[0], Fact("United Kingdom of Great Britain", "London"), facts[4]]
    results = {}
    with torch.no_grad():
        for side in ("left", "right"):
            batch = build_batch(tiny.tokenizer, template, [f.x for f in chosen],
                                [f.y for f in chosen], padding_side=side)
            assert not batch.attention_mask.bool().all()  # there is padding
            results[side] = batch_scores(tiny, batch, prompt=prompt)
        alone = [batch_scores(tiny, build_batch(tiny.tokenizer, template, [f.x], [f.y]),
                              prompt=prompt) for f in chosen]
    single = torch.cat([s.logprob for s in alone])
    for side in ("left", "right"):
        torch.testing.assert_close(results[side].logprob, single, atol=ATOL, rtol=0)
        assert torch.equal(results[side].exact, torch.cat([s.exact for s in alone]))
        assert torch.equal(results[side].first_rank, torch.cat([s.first_rank for s in alone]))


def test_score_on_handmade_logits(tiny):
    # Two facts, targets of 3 and 2 tokens; build logits where we choose what is argmax.
    template = parse_template("{x} is")
    batch = build_batch(tiny.tokenizer, template, ["a", "b"], ["xy", "z"])
    targets = batch.target_ids
    B, Ty = targets.shape
    V = tiny.vocab_size
    logits = torch.zeros(B, Ty, V)
    logits.scatter_(2, targets.unsqueeze(-1), 5.0)  # every target token is argmax...
    assert batch.target_mask.sum(1).tolist() == [3, 2]
    logits[1, 2] = 0.0  # ...and row 1's padding position favours a token that is not pad
    logits[1, 2, 77] = 9.0
    scores = score(logits, batch)
    assert scores.exact.tolist() == [True, True]  # padding never counts against a row
    assert scores.first_rank.tolist() == [1, 1]
    expected0 = 3 * (5.0 - torch.logsumexp(torch.tensor([5.0] + [0.0] * (V - 1)), 0))
    assert float(scores.logprob[0]) == pytest.approx(float(expected0), abs=ATOL)

    # Row 0: its last target token loses to another token; its first token is still argmax.
    other = (int(targets[0, 2]) + 1) % V
    logits[0, 2, other] = 6.0
    # Row 1: two tokens beat its first (only) target token -> rank 3.
    first = int(targets[1, 0])
    logits[1, 0, (first + 1) % V] = 7.0
    logits[1, 0, (first + 2) % V] = 6.0
    scores = score(logits, batch)
    assert scores.exact.tolist() == [False, False]
    assert scores.first_rank.tolist() == [1, 3]


def greedy_fact(lm, template, subject, tokens=3):
    """A fact whose object is the model's own greedy continuation of the rendered prompt."""
    continuation = ptlib.analysis.greedy_continuation(lm, template.render(subject), tokens)
    assert continuation.startswith(" ") and continuation.isascii(), continuation
    return Fact(subject, continuation[1:])


def test_exact_match_against_the_models_greedy_continuation(tiny):
    # The random tiny model tends to repeat its last token, so a subject ending in a space makes
    # the greedy continuation start with the space every target starts with.
    template = parse_template("{x}")
    hit = greedy_fact(tiny, template, "France ")
    wrong_last = Fact(hit.x, hit.y[:-1] + ("q" if hit.y[-1] != "q" else "z"))
    wrong_first = Fact("Peru", "Lima")
    result = evaluate(tiny, template, [hit, wrong_last, wrong_first])
    assert result.exact == [True, False, False]
    assert result.exact_match == pytest.approx(1 / 3)
    for fact, exact in zip([hit, wrong_last, wrong_first], result.exact, strict=True):
        assert by_hand(tiny, template, fact)[1] == exact


def test_first_rank_is_one_iff_the_first_token_is_argmax(tiny, facts):
    template = parse_template("{x}")
    hit = greedy_fact(tiny, template, "Norway ")
    chosen = [hit] + facts[:6]
    batch = make_batch(tiny, template, chosen)
    with torch.no_grad():
        embeds = input_embeddings(tiny, batch)
        logits = target_logits(tiny, batch, embeds)
        scores = score(logits, batch)
    first_is_argmax = logits[:, 0].argmax(-1) == batch.target_ids[:, 0]
    assert torch.equal(scores.first_rank == 1, first_is_argmax)
    assert first_is_argmax.any() and not first_is_argmax.all()  # both cases occur
    assert (scores.first_rank >= 1).all() and (scores.first_rank <= tiny.vocab_size).all()
    # An exact match implies rank 1.
    assert not (scores.exact & (scores.first_rank != 1)).any()


def test_evaluate_aggregates_per_fact_scores(tiny, facts):
    template = parse_template("[P] {x} [P]")
    prompt = random_prompt(tiny, 2, seed=3)
    whole = evaluate(tiny, template, facts, prompt=prompt, batch_size=32)
    chunked = evaluate(tiny, template, facts, prompt=prompt, batch_size=5)
    assert whole.nll == pytest.approx(chunked.nll, abs=ATOL)
    assert whole.exact == chunked.exact and len(whole.exact) == len(facts)
    assert whole.mean_first_rank == pytest.approx(chunked.mean_first_rank)
    assert whole.exact_match == pytest.approx(sum(whole.exact) / len(facts))
    expected = -sum(by_hand(tiny, template, f, prompt)[0] for f in facts) / len(facts)
    assert whole.nll == pytest.approx(expected, abs=ATOL)
    assert set(whole.as_dict()) == {"exact_match", "first_token_p_at_1", "nll", "mean_first_rank"}


@pytest.mark.parametrize("max_rows", [1, 7, 512])
def test_score_candidates_matches_a_loop(tiny, facts, max_rows):
    template = parse_template("[P] {x} is [P][P]")
    batch = make_batch(tiny, template, facts[:6])
    generator = torch.Generator().manual_seed(0)
    candidates = torch.randint(2, tiny.vocab_size, (5, 3), generator=generator)
    batched = score_candidates(tiny, batch, candidates, max_rows=max_rows)
    assert batched.shape == (5,)
    with torch.no_grad():
        looped = torch.stack([batch_scores(tiny, batch, slot_ids=c).logprob.mean()
                              for c in candidates])
    torch.testing.assert_close(batched, looped, atol=ATOL, rtol=0)
    assert looped.unique().numel() == 5  # the candidates really differ


def test_slot_ids_equal_their_embeddings_as_a_prompt(tiny, facts):
    template = parse_template("[P] {x} [P]")
    batch = make_batch(tiny, template, facts[:4])
    slot_ids = torch.tensor([70, 90])
    with torch.no_grad():
        by_ids = batch_scores(tiny, batch, slot_ids=slot_ids)
        by_vectors = batch_scores(tiny, batch, prompt=tiny.embeddings[slot_ids])
        per_row = batch_scores(tiny, batch, slot_ids=slot_ids.expand(4, -1))
    assert torch.equal(by_ids.logprob, by_vectors.logprob)
    assert torch.equal(by_ids.logprob, per_row.logprob)


def test_input_embeddings_write_exactly_the_slots(tiny, facts):
    template = parse_template("[P][P] {x} is [P]")
    batch = make_batch(tiny, template, facts[:3])
    prompt = random_prompt(tiny, 3).requires_grad_(True)
    embeds = input_embeddings(tiny, batch, prompt=prompt)
    assert embeds.shape == (*batch.input_ids.shape, tiny.width)
    plain = tiny.embeddings[batch.input_ids]
    in_slot = batch.slot_index >= 0
    assert torch.equal(embeds[~in_slot], plain[~in_slot])
    assert torch.equal(embeds[in_slot], prompt[batch.slot_index[in_slot]].detach())
    assert int(in_slot.sum()) == 3 * 3

    # Differentiable in the prompt: each slot vector appears once per row.
    embeds.sum().backward()
    assert torch.equal(prompt.grad, torch.full_like(prompt, 3.0))
    assert tiny.embeddings.grad is None

    # A per-row (B, L, d) prompt.
    per_row = torch.stack([random_prompt(tiny, 3, seed=s) for s in range(3)])
    embeds = input_embeddings(tiny, batch, prompt=per_row)
    for row in range(3):
        slots = batch.slot_index[row]
        assert torch.equal(embeds[row, slots >= 0], per_row[row])


def test_gradient_reaches_the_prompt_through_the_model(tiny, facts):
    template = parse_template("[P] {x} [P]")
    prompt = random_prompt(tiny, 2).requires_grad_(True)
    loss = -batch_scores(tiny, make_batch(tiny, template, facts[:4]), prompt=prompt).logprob.mean()
    loss.backward()
    assert prompt.grad is not None and prompt.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny.model.parameters())


@pytest.mark.parametrize(("text", "num_slots"), [("[P] {x} [P]", 3), ("[P] {x} [P]", 1),
                                                 ("{x} is", 1)])
def test_slot_count_mismatch_raises(tiny, facts, text, num_slots):
    batch = make_batch(tiny, parse_template(text), facts[:2])
    with pytest.raises(TemplateError, match="slots"):
        input_embeddings(tiny, batch, prompt=random_prompt(tiny, num_slots))
    with pytest.raises(TemplateError, match="slots"):
        input_embeddings(tiny, batch, slot_ids=torch.arange(2, 2 + num_slots))


def test_training_and_evaluation_score_the_same_thing(tiny, facts):
    # The loss train() minimises is the NLL evaluate() reports, for the same prompt and facts.
    template = parse_template("[P][P] {x} [P]")
    prompt = random_prompt(tiny, 3, seed=5)
    batch = make_batch(tiny, template, facts)
    with torch.no_grad():
        train_loss = -batch_scores(tiny, batch, prompt=prompt).logprob.mean()
    reported = evaluate(tiny, template, facts, prompt=prompt)
    assert float(train_loss) == pytest.approx(reported.nll, abs=ATOL)

    # End to end: the first step's recorded loss is the dev NLL of the initial prompt when the
    # batch is the whole (train = dev) set.
    config = ptlib.TrainConfig(encoder="free", steps=1, batch_size=len(facts), eval_every=1,
                               precision="fp32")
    result = ptlib.train(tiny, template, facts, facts, config, show_progress=False)
    assert result.history.eval_step[0] == 0
    assert result.history.loss[0] == pytest.approx(result.history.dev_nll[0], abs=1e-4)
    initial = evaluate(tiny, template, facts, prompt=result.trajectory[0])
    assert initial.nll == pytest.approx(result.history.dev_nll[0], abs=ATOL)


def test_bf16_is_close_to_fp32_and_casts_the_weights_once(tiny, facts):
    template = parse_template("[P] {x} is")
    prompt = random_prompt(tiny, 1)
    fp32 = evaluate(tiny, template, facts, prompt=prompt, precision="fp32")
    bf16 = evaluate(tiny, template, facts, prompt=prompt, precision="bf16")
    assert bf16.nll == pytest.approx(fp32.nll, rel=0.02) and bf16.nll != fp32.nll
    copy = tiny.weights_in(torch.bfloat16)
    assert copy is tiny.weights_in(torch.bfloat16) and copy is not tiny.model
    assert tiny.model.get_input_embeddings().weight.dtype == torch.float32  # left as it was
    assert all(p.dtype == torch.bfloat16 and not p.requires_grad for p in copy.parameters())
    with pytest.raises(ValueError, match="precision"):
        evaluate(tiny, template, facts, prompt=prompt, precision="fp16")


def test_the_cpu_bf16_copy_uses_eager_attention_with_the_same_logits(tiny, facts):
    copy = tiny.weights_in(torch.bfloat16)
    assert copy.config._attn_implementation == "eager"
    assert tiny.model.config._attn_implementation != "eager"  # fp32 keeps the model's choice
    batch = make_batch(tiny, parse_template("{x} is"), facts)
    with torch.no_grad():
        eager = prompted_logits(tiny, batch, precision="bf16")
        copy.set_attn_implementation(tiny.model.config._attn_implementation)
        try:
            default = prompted_logits(tiny, batch, precision="bf16")
        finally:
            copy.set_attn_implementation("eager")
    real = batch.target_mask  # masked targets sit on padding, where the two kernels differ
    gap = (eager - default)[real].abs().max()
    assert gap < 0.02, gap


def test_target_of_one_token_per_byte(tiny):
    # The byte tokenizer the unit tests rely on: one token per character, a leading space token.
    ids = encode_target(tiny.tokenizer, "Paris")
    assert len(ids) == len(" Paris")
    assert tiny.tokenizer.decode(ids) == " Paris"


def test_a_template_with_slots_needs_a_prompt(tiny, four_facts):
    with pytest.raises(TemplateError, match="no prompt was given"):
        evaluate(tiny, parse_template("{x} [P][P]"), four_facts)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_prompt_is_never_scored(tiny, four_facts, bad):
    prompt = random_prompt(tiny, 2)
    prompt[0, 3] = bad
    with pytest.raises(ptlib.ConfigError, match="non-finite values"):
        evaluate(tiny, parse_template("{x} [P][P]"), four_facts, prompt=prompt)
