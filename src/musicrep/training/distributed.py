"""Where a process sits in a torchrun run, and the collectives the trainer needs.

Under torchrun each process trains on its shard (DistributedSampler) with batch_size /
world_size; DDP averages gradients. With gather_distributed the contrastive loss
all-gathers the embeddings so it sees the global batch, exactly as one process with
batch_size would (BatchNorm statistics stay per process). Every helper here is a no-op
(or the local value) in a single-process run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from ..errors import ConfigError
from ..precision import resolve_device
from .faults import TrainingError


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistContext:
    """Join the process group torchrun describes in the environment (gloo on CPU,
    nccl on CUDA); a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = resolve_device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return DistContext(rank, world, local)


def local_batch_size(batch_size: int, ctx: DistContext) -> int:
    """Each process's share of the global `batch_size`; a ConfigError when the processes
    do not divide it or get fewer than 2 tracks each."""
    if batch_size % ctx.world_size:
        raise ConfigError(
            f"config key 'batch_size' ({batch_size}) must be divisible by the "
            f"{ctx.world_size} processes"
        )
    local = batch_size // ctx.world_size
    if local < 2:  # NT-Xent contrasts within the batch; BatchNorm needs 2
        raise ConfigError(
            f"config key 'batch_size' ({batch_size}) gives {local} track per process; "
            "at least 2 per process are needed"
        )
    return local


def process_device(name: str, ctx: DistContext) -> torch.device:
    """This process's device: `name` resolved; under torchrun on CUDA, the local rank's GPU."""
    dev = resolve_device(name)
    if dev.type == "cuda" and ctx.enabled:
        dev = torch.device("cuda", ctx.local_rank)
    return dev


def wrap_ddp(model: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    """`model` in DistributedDataParallel under torchrun (which averages the gradients), else
    `model` itself."""
    if not ctx.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return DDP(model, device_ids=ids)


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def from_main(ctx: DistContext, value: Any) -> Any:
    """The main process's `value`, on every rank."""
    if not ctx.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, 0)
    return box[0]


def gather(ctx: DistContext, value: Any) -> list[Any]:
    """Every rank's `value`, in rank order (collective)."""
    if not ctx.enabled:
        return [value]
    values = [None] * ctx.world_size
    dist.all_gather_object(values, value)
    return values


def sum_over_ranks(ctx: DistContext, vec: torch.Tensor) -> torch.Tensor:
    """`vec` summed over the ranks, in place."""
    if ctx.enabled:
        dist.all_reduce(vec)
    return vec


def sync_buffers(ctx: DistContext, model: nn.Module) -> None:
    # BatchNorm running statistics drift apart per rank; validate and save rank 0's.
    if ctx.enabled:
        for b in model.buffers():
            dist.broadcast(b, 0)


def check_ranks_agree(ctx: DistContext, model: nn.Module) -> None:
    # DDP keeps replicas equal; a mismatch means a bug, so fail loudly.
    if not ctx.enabled:
        return
    total = sum(p.detach().double().sum() for p in model.parameters())
    sums = gather(ctx, float(total))
    if any(s != sums[0] for s in sums):
        raise TrainingError(f"ranks ended with different weights (parameter sums {sums})")
