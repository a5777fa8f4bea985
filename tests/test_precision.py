"""The bf16 path against fp32 on a small random model: after a few training steps, the prompt's
gradient points the same way, and wherever fp32 is confident the bf16 argmax agrees with it.
(bf16 is opt-in: precision="bf16". On a CPU without native bf16 it runs emulated, slower but
with the same rounding, so this test runs everywhere.)"""

import pytest
import torch

import ptlib
from ptlib.objective import batch_scores, make_batch, prompted_logits
from ptlib.precision import resolve_precision

TEMPLATE = "[P][P] {x} [P]"
COSINE = 0.99   # smallest cosine between the bf16 and fp32 gradients w.r.t. the prompt
MARGIN = 0.05   # where fp32's top logit leads the second by more, bf16's argmax must agree


@pytest.fixture(scope="module")
def small():
    return ptlib.tiny_lm(seed=3, width=64, layers=4)


def prompt_after_training(lm, facts) -> torch.Tensor:
    config = ptlib.TrainConfig(encoder="free", steps=4, batch_size=8, eval_every=4, lr=0.05,
                               precision="fp32")
    return ptlib.train(lm, TEMPLATE, facts[:8], facts[8:], config, show_progress=False).prompt


def prompt_gradient(lm, batch, prompt: torch.Tensor, precision: str) -> torch.Tensor:
    leaf = prompt.clone().requires_grad_(True)
    (-batch_scores(lm, batch, prompt=leaf, precision=precision).logprob.mean()).backward()
    return leaf.grad  # (L, d)


def test_bf16_training_gradients_follow_fp32(small, facts):
    batch = make_batch(small, ptlib.parse_template(TEMPLATE), facts)
    prompt = prompt_after_training(small, facts)  # (L, d)
    fp32, bf16 = (prompt_gradient(small, batch, prompt, p) for p in ("fp32", "bf16"))
    cosine = torch.nn.functional.cosine_similarity(fp32.flatten(), bf16.flatten(), dim=0)
    assert cosine > COSINE


def test_bf16_argmax_agrees_wherever_fp32_is_confident(small, facts):
    batch = make_batch(small, ptlib.parse_template(TEMPLATE), facts)
    prompt = prompt_after_training(small, facts)
    with torch.no_grad():
        fp32, bf16 = (prompted_logits(small, batch, prompt=prompt, precision=p)
                      for p in ("fp32", "bf16"))  # (B, Ty, V) each
    top_two = fp32.topk(2, dim=-1).values
    confident = batch.target_mask & (top_two[..., 0] - top_two[..., 1] > MARGIN)
    assert confident.sum() > 0.5 * batch.target_mask.sum()  # the check covers most targets
    assert torch.equal(fp32.argmax(-1)[confident], bf16.argmax(-1)[confident])


def test_auto_is_resolved_once_and_carried_with_the_result(small, facts):
    config = ptlib.TrainConfig(encoder="free", steps=1, batch_size=8, eval_every=1)
    result = ptlib.train(small, TEMPLATE, facts[:8], facts[8:], config, show_progress=False)
    assert result.precision == resolve_precision("auto") == "fp32"
    assert config.precision == "auto"
    scored = result.evaluate(small, facts[8:])  # at the run's precision unless told otherwise
    same = ptlib.evaluate(small, ptlib.parse_template(TEMPLATE), facts[8:],
                          prompt=result.prompt, precision=result.precision)
    assert scored.exact == same.exact and scored.nll == same.nll
