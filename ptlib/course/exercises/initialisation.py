"""Exercise checks on initialisation:
one AdamW step by hand, the rescaled normal init."""


import torch

from ptlib import encoders
from ptlib.course.exercises.core import (
    as_tensor,
    assert_close,
    call,
    embeddings_of,
    exercise,
    fail,
)
from ptlib.model import LM


@exercise("one AdamW step by hand")
def check_adamw(adamw_fn) -> None:
    """``adamw_fn(theta, grad, m, v, step, lr, beta1, beta2, eps, weight_decay)`` ->
    ``(theta, m, v)`` after the step-th update, against ``torch.optim.AdamW``, 3 steps."""
    generator = torch.Generator().manual_seed(0)
    settings = [(0.1, (0.9, 0.999), 1e-8, 0.0, "weight_decay = 0"),
                (0.05, (0.8, 0.99), 1e-3, 0.1, "weight_decay = 0.1, other betas and eps")]
    for index, (lr, (beta1, beta2), eps, decay, label) in enumerate(settings):
        start = torch.randn(3, 4, generator=generator, dtype=torch.float64)
        reference = start.clone().requires_grad_(True)
        optimizer = torch.optim.AdamW([reference], lr=lr, betas=(beta1, beta2), eps=eps,
                                      weight_decay=decay)
        theta, m, v = start.clone(), torch.zeros_like(start), torch.zeros_like(start)
        for step in range(1, 4):
            grad = 10.0 ** step * torch.randn(3, 4, generator=generator, dtype=torch.float64)
            reference.grad = grad.clone()
            optimizer.step()
            got = call(adamw_fn, theta.clone(), grad.clone(), m.clone(), v.clone(), step, lr,
                        beta1, beta2, eps, decay, first=index == 0 and step == 1)
            if not isinstance(got, tuple | list) or len(got) != 3:
                fail("return a triple (theta, m, v)")
            hint = ("step 1 matched: the bias corrections use the step number"
                    if step > 1 else "m and v are running means; divide by 1 - beta ** step")
            if decay:
                hint += "; AdamW shrinks theta by lr * weight_decay * theta, apart from m and v"
            assert_close(got[0], reference.detach(), f"theta after step {step} ({label})",
                   atol=1e-9, rtol=1e-7, hint=hint)
            theta, m, v = (as_tensor(x, "state").double() for x in got)


@exercise("the rescaled normal init")
def check_rescaled_init(init_fn, lm: LM) -> None:
    """``init_fn(num_slots, E, generator)`` -> (L, d), against ``init_free_vectors``."""
    table = embeddings_of(lm)
    for first, (num, seed) in enumerate([(6, 0), (3, 7)]):
        got = call(init_fn, num, table, torch.Generator().manual_seed(seed), first=first == 0)
        ref = encoders.init_free_vectors("normal_rescaled", num, table,
                                         torch.Generator().manual_seed(seed))
        got = as_tensor(got, "the vectors")
        if tuple(got.shape) == tuple(ref.shape):
            assert_close(got.float().norm(dim=1), ref.norm(dim=1), f"the row norms ({num} slots)",
                   atol=1e-3, hint="every row should be as long as the mean token norm of E")
        assert_close(got, ref, f"the vectors ({num} slots, seed {seed})", atol=1e-5,
               hint="draw torch.randn((L, d), generator=generator) once, then rescale each row")
