"""Exercise checks on the objective:
scores from logits, the tokens of an object, a manual template's EM."""


import torch

from ptlib.course.exercises.core import (
    NotAnswered,
    as_tensor,
    assert_close,
    call,
    check_number,
    exercise,
    fail,
)
from ptlib.data import Fact
from ptlib.model import LM
from ptlib.objective import (
    evaluate,
    input_embeddings,
    make_batch,
    score,
    target_logits,
)
from ptlib.template import Template, encode_target, parse_template


@exercise("the objective from logits")
def check_target_scores(score_fn, lm: LM, template: Template, facts: list[Fact]) -> None:
    """``score_fn(logits (B, Ty, V), target_ids (B, Ty), target_mask (B, Ty))`` ->
    ``(logprob (B,), exact (B,) bool)``, against ``ptlib.objective.score``."""
    batch = make_batch(lm, template, facts)
    with torch.no_grad():
        logits = target_logits(lm, batch, input_embeddings(lm, batch)).cpu()  # (B, Ty, V)
    cases = [("the notebook's batch", logits, batch.to(torch.device("cpu")))]
    generator = torch.Generator().manual_seed(0)
    fake = torch.randn(4, 3, 7, generator=generator)  # (B, Ty, V) with padded targets
    lengths = torch.tensor([3, 1, 2, 1])
    mask = torch.arange(3) < lengths.unsqueeze(1)  # (B, Ty)
    targets = fake.argmax(dim=-1).masked_fill(~mask, 0)  # greedy is right on real tokens...
    targets[0, 1] = (targets[0, 1] + 1) % 7  # ... except row 0's second token
    fake[1, 1:, 0] = -10.0  # row 1: the padding id is never the argmax at padded positions
    cases.append(("a small padded batch", fake, _FakeBatch(targets, mask)))
    for first, (label, case_logits, case_batch) in enumerate(cases):
        got = call(score_fn, case_logits.clone(), case_batch.target_ids.clone(),
                    case_batch.target_mask.clone(), first=first == 0)
        if not isinstance(got, tuple | list) or len(got) != 2:
            fail("return a pair (logprob, exact)")
        ref = score(case_logits, case_batch)
        hint = "sum log_softmax over the real target tokens only (target_mask)"
        assert_close(got[0], ref.logprob, f"logprob on {label}", atol=1e-4, hint=hint)
        assert_close(as_tensor(got[1], "exact").bool(), ref.exact, f"exact on {label}",
               hint="every real target token must be the argmax; padding does not count")


class _FakeBatch:
    def __init__(self, target_ids: torch.Tensor, target_mask: torch.Tensor):
        self.target_ids, self.target_mask = target_ids, target_mask


@exercise("tokens of an object")
def check_target_length(answer, tokenizer, obj: str) -> None:
    check_number(answer, len(encode_target(tokenizer, obj)), 0.0, "the token count",
            f"encode {' ' + obj!r} with add_special_tokens=False: the leading space counts")


@exercise("another manual template")
def check_template_exact_match(answer, lm: LM, template_text: str, facts: list[Fact]) -> None:
    if answer is None:
        raise NotAnswered
    reference = evaluate(lm, parse_template(template_text), facts).exact_match
    check_number(answer, reference, 1e-6, "the EM",
            "ptlib.evaluate(lm, parse_template(text), facts) returns an Evaluation")
