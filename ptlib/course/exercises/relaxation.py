"""Exercise checks on the continuous relaxation:
H_0 with free vectors, one training step, snapping to tokens."""

import math
import numbers

import torch

from ptlib import encoders
from ptlib.course.exercises.core import (
    as_tensor,
    assert_close,
    call,
    embeddings_of,
    exercise,
    fail,
    nearest_ok,
)
from ptlib.data import Fact
from ptlib.model import LM
from ptlib.objective import (
    batch_scores,
    input_embeddings,
    make_batch,
)
from ptlib.template import Template


@exercise("H_0 = [theta, E(x)]")
def check_h0(h0_fn, lm: LM, template: Template, facts: list[Fact], seed: int = 0) -> None:
    """``h0_fn(E, input_ids (B, T), slot_index (B, T), theta (L, d) or (B, L, d))`` ->
    (B, T, d), against ``ptlib.objective.input_embeddings``."""
    batch = make_batch(lm, template, facts)  # on the model's device
    cpu = batch.to(torch.device("cpu"))
    generator = torch.Generator().manual_seed(seed)
    num, width = template.num_slots, lm.width
    shared = torch.randn(num, width, generator=generator)  # (L, d)
    per_row = torch.randn(batch.size, num, width, generator=generator)  # (B, L, d)
    table = embeddings_of(lm)
    for first, (label, theta) in enumerate([("theta of shape (L, d)", shared),
                                            ("theta of shape (B, L, d)", per_row)]):
        got = call(h0_fn, table, cpu.input_ids.clone(), cpu.slot_index.clone(),
                    theta.clone(), first=first == 0)
        with torch.no_grad():
            ref = input_embeddings(lm, batch, prompt=theta.to(lm.device)).float().cpu()
        got = as_tensor(got, "H_0")
        if tuple(got.shape) == tuple(ref.shape):
            in_slot = cpu.slot_index >= 0
            assert_close(got[~in_slot], ref[~in_slot], f"H_0 outside the slots ({label})",
                   hint="token positions take their row of E")
            assert_close(got[in_slot], ref[in_slot], f"H_0 in the slots ({label})",
                   hint="the k-th slot of row b takes theta[k] (or theta[b, k])")
        assert_close(got, ref, f"H_0 ({label})")


@exercise("one training step")
def check_train_step(step_fn, lm: LM, template: Template, facts: list[Fact], seed: int = 0,
                     lr: float = 1e-2) -> None:
    """``step_fn(lm, batch, theta, optimizer)`` -> the batch's mean -log P(y | x, theta), after
    one AdamW step on theta. Two steps, against a reference run from the same start."""
    generator = torch.Generator().manual_seed(seed)
    start = encoders.init_free_vectors("normal_rescaled", template.num_slots, lm.embeddings,
                                       generator).to(lm.device)
    half = max(1, len(facts) // 2)
    batches = [make_batch(lm, template, facts[:half]), make_batch(lm, template, facts[half:])]
    batches = [b for b in batches if b.size]
    mine = start.clone().requires_grad_(True)
    theirs = start.clone().requires_grad_(True)
    mine_opt = torch.optim.AdamW([mine], lr=lr, weight_decay=0.0)
    theirs_opt = torch.optim.AdamW([theirs], lr=lr, weight_decay=0.0)
    for step, batch in enumerate(batches):
        got = call(step_fn, lm, batch, mine, mine_opt, first=step == 0)
        theirs_opt.zero_grad(set_to_none=True)
        loss = -batch_scores(lm, batch, prompt=theirs).logprob.mean()
        loss.backward()
        theirs_opt.step()
        if isinstance(got, torch.Tensor):
            got = got.detach().float().mean().item() if got.numel() == 1 else None
        if not isinstance(got, numbers.Real):
            fail("return the loss as a number (a float or a one-element tensor)")
        if not math.isclose(float(got), loss.item(), rel_tol=1e-4, abs_tol=1e-4):
            fail(f"step {step + 1}: the loss you returned is not the batch's mean "
                  f"-log P(y | x, theta) (yours / reference = {float(got) / loss.item():.3g})")
        hint = ("gradients from the previous step left over? (zero them before backward)"
                if step else "minimise the loss: loss.backward(), then optimizer.step()")
        assert_close(mine.detach(), theirs.detach(), f"theta after step {step + 1}", atol=1e-5,
               hint=hint)


@exercise("snap to the nearest tokens")
def check_snap(snap_fn, lm: LM, vectors: torch.Tensor) -> None:
    """``snap_fn(E, vectors (L, d))`` -> ``(ids (L,), distances (L,))``, L2."""
    small = torch.tensor([[1.0, 0.0], [5.0, 3.0], [-2.0, 1.0]])  # cosine and L2 disagree
    cases = [("the trained vectors", embeddings_of(lm), vectors.detach().float().cpu()),
             ("a small E", small, torch.tensor([[4.0, 1.0], [-1.0, 0.2]]))]
    for first, (label, table, points) in enumerate(cases):
        got = call(snap_fn, table.clone(), points.clone(), first=first == 0)
        if not isinstance(got, tuple | list) or len(got) != 2:
            fail("return a pair (ids, distances)")
        ref_ids = torch.cdist(points, table).argmin(dim=1)
        ref_dist = torch.cdist(points, table).min(dim=1).values
        ids = as_tensor(got[0], "ids").long()
        if ids.shape != ref_ids.shape:
            fail(f"ids on {label} have shape {tuple(ids.shape)}, expected "
                  f"{tuple(ref_ids.shape)}")
        ids = ids.clamp(0, len(table) - 1)
        if not nearest_ok(table, points, ids, ref_ids).all():
            fail(f"ids on {label}: not the nearest token by L2 distance (cosine ranks "
                  "directions, not points)")
        assert_close(got[1], ref_dist, f"distances on {label}", atol=1e-3, rtol=1e-4,
               hint="the L2 distance from each vector to its nearest token")
