"""Training on several processes with torch.distributed, as the standard launchers start them.

``torchrun --nproc-per-node N -m ptlib train ...`` (or ``accelerate launch``) sets RANK,
WORLD_SIZE and LOCAL_RANK; ``init_from_env`` joins the process group (nccl on CUDA, gloo on the
CPU). Training then splits each global micro-batch (drawn from the seeded epoch order, the same
on every rank) into one contiguous shard per rank, so the global batch, and with it the result
and its resume, does not depend on the number of processes: each rank adds
sum_b -log P(y_b | x_b, P) / B_global over its shard, and the encoder's gradients are summed
over ranks before clipping. Dev evaluation is split the same way and the shards' metrics are
combined on every rank, so all ranks take the same best-prompt and early-stop decisions. Rank 0
writes checkpoints; the others wait for it.

The prompt encoder is small and replicated. A frozen LM too big for one device can be sharded
with FSDP2 (``shard_lm``): each decoder layer and the root are ``fully_shard``-ed, so a rank
holds 1/N of the weights and gathers a layer's only while running it. That needs
embed -> body -> head to run inside one call of the model, which ``ptlib.objective`` does.

Why plain torch.distributed and not DeepSpeed ZeRO-3: the trainable part (the encoder) is tiny
and the frozen part needs only parameter sharding, which FSDP2 gives per layer; ZeRO-3's
parameter partitioning is known to break PEFT's prompt methods, and accelerate's FSDP2
``prepare`` expects the sharded model to be the one being trained.
"""

import dataclasses
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ptlib.errors import ConfigError
from ptlib.model import decoder_layers


@dataclass(frozen=True)
class Ranks:
    """Where this process stands: its rank, the number of processes and its local rank."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on the process that writes files and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def current() -> Ranks:
    """This process's ranks: from the process group when one is running, else one process."""
    if not (dist.is_available() and dist.is_initialized()):
        return Ranks()
    return Ranks(dist.get_rank(), dist.get_world_size(),
                 int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def init_from_env(backend: str | None = None) -> Ranks:
    """Join the process group a launcher described in RANK / WORLD_SIZE / LOCAL_RANK (a no-op
    without them, or with WORLD_SIZE=1). ``backend``: nccl on CUDA, gloo otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend)
    return current()


def device_for(ranks: Ranks, device: str) -> str:
    """``auto`` on a multi-process CUDA run means this process's own GPU (cuda:LOCAL_RANK)."""
    if device == "auto" and ranks.distributed and torch.cuda.is_available():
        return f"cuda:{ranks.local_rank}"
    return device


def shard(items: list, ranks: Ranks) -> list:
    """This rank's contiguous share of ``items``: sizes differ by at most one, and the shards
    of ranks 0..N-1 concatenate back to ``items``."""
    base, extra = divmod(len(items), ranks.world)
    start = ranks.rank * base + min(ranks.rank, extra)
    return items[start : start + base + (ranks.rank < extra)]


def all_reduce_sum(value: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """``value`` summed over ranks (in place, returned); unchanged on one process."""
    if ranks.distributed:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def all_reduce_gradients(module: torch.nn.Module, ranks: Ranks) -> None:
    """Sum every trainable parameter's gradient over ranks (a rank whose shard was empty
    contributes zeros)."""
    if not ranks.distributed:
        return
    for param in module.parameters():
        if param.requires_grad:
            if param.grad is None:
                param.grad = torch.zeros_like(param)
            dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)


def all_gather(value, ranks: Ranks) -> list:
    """One picklable ``value`` from each rank, in rank order (``[value]`` on one process)."""
    if not ranks.distributed:
        return [value]
    gathered = [None] * ranks.world
    dist.all_gather_object(gathered, value)
    return gathered


def barrier(ranks: Ranks) -> None:
    if ranks.distributed:
        dist.barrier()


def finish(ranks: Ranks, wait_for_peers: bool = True) -> None:
    """Leave the process group ``init_from_env`` joined (a no-op on one process).

    By default every rank waits for the others first: a gloo rank that tears its group down
    while a peer still has a collective in flight aborts the process ("terminate called without
    an active exception"). After an error, pass ``wait_for_peers=False``: a peer may be stuck in
    another collective and the barrier would never complete."""
    if ranks.distributed and dist.is_initialized():
        if wait_for_peers:
            dist.barrier()
        dist.destroy_process_group()


def combine_shards(parts: list, sizes: list[int]):
    """One dataclass of metrics from per-shard ones: float fields averaged with the shards'
    sizes as weights, list fields concatenated in shard order (empty shards are skipped)."""
    kept = [(part, size) for part, size in zip(parts, sizes, strict=True) if size]
    if not kept:
        raise ConfigError("no shard holds any item")
    total = sum(size for _, size in kept)
    values = {}
    for field in dataclasses.fields(kept[0][0]):
        column = [getattr(part, field.name) for part, _ in kept]
        if isinstance(column[0], list):
            values[field.name] = [item for part in column for item in part]
        else:
            values[field.name] = sum(v * size for v, (_, size) in zip(column, kept,
                                                                       strict=True)) / total
    return type(kept[0][0])(**values)


def shard_lm(model: torch.nn.Module) -> torch.nn.Module:
    """Shard a frozen transformers causal LM over the ranks with FSDP2: one ``fully_shard``
    group per decoder layer, then the root (embeddings, final norm and a tied LM head stay in
    one group). Returns the same module, sharded in place."""
    from torch.distributed.fsdp import fully_shard

    for layer in decoder_layers(model):
        fully_shard(layer)
    fully_shard(model)
    return model
