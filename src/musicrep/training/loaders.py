"""The DataLoaders of a run: this process's shard, shuffles and crops fixed by (seed, epoch).

Crops are drawn from (seed, epoch) (dataset.py) and the shuffle from (seed, epoch), and
no loader draws from the global RNG (dropout's), so an interrupted and resumed run sees
exactly the batches of an uninterrupted one, whatever the number of workers.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from torch.utils.data.distributed import DistributedSampler

from ..errors import ConfigError
from ..settings import TrainConfig
from .dataset import TrackDataset
from .distributed import DistContext


def steps_per_epoch(n_tracks: int, ctx: DistContext, batch_size: int, cfg: TrainConfig) -> int:
    """Optimizer steps per epoch: the full batches of `batch_size` (per process) in this
    process's shard of `n_tracks`, at most max_steps_per_epoch."""
    steps = (n_tracks // ctx.world_size) // batch_size
    if steps == 0:
        raise ConfigError(
            f"config key 'batch_size' ({cfg.batch_size}) exceeds the {n_tracks} training tracks"
        )
    if cfg.max_steps_per_epoch:
        steps = min(steps, cfg.max_steps_per_epoch)
    return steps


def train_loader(ds: TrackDataset, ctx: DistContext, cfg: TrainConfig, batch_size: int,
                 device: torch.device, epoch: int) -> DataLoader:
    """The DataLoader of one epoch: shuffle and crops fixed by (seed, epoch)."""
    ds.set_epoch(epoch)
    sampler = DistributedSampler(
        ds,
        num_replicas=ctx.world_size,
        rank=ctx.rank,
        shuffle=True,
        seed=cfg.seed,
        drop_last=True,
    )
    sampler.set_epoch(epoch)
    return _loader(ds, sampler, cfg, batch_size, device, drop_last=True, epoch=epoch)


def val_loader(ds: TrackDataset, ctx: DistContext, cfg: TrainConfig, batch_size: int,
               device: torch.device) -> DataLoader:
    """The validation DataLoader: every track of this process's shard (or of the seeded
    subset, with max_val_tracks), centred crops."""
    subset = val_subset(len(ds), cfg.max_val_tracks, cfg.seed)
    data = ds if subset is None else Subset(ds, subset.tolist())
    sampler = DistributedSampler(data, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=False)
    return _loader(data, sampler, cfg, batch_size, device, drop_last=False, epoch=0)


def val_subset(n_tracks: int, max_tracks: int | None, seed: int) -> np.ndarray | None:
    """The validation tracks (sorted rows) when a run validates on at most `max_tracks`
    of `n_tracks`; None for all. Drawn from `seed` alone, so every epoch and every resume
    sees the same tracks."""
    if max_tracks is None or max_tracks >= n_tracks:
        return None
    return np.sort(np.random.default_rng((seed, 7919)).choice(n_tracks, size=max_tracks, replace=False))


def _loader(ds: TrackDataset, sampler: DistributedSampler, cfg: TrainConfig, batch_size: int,
            device: torch.device, drop_last: bool, epoch: int) -> DataLoader:
    # Own generator: iterating a loader must not draw from the global RNG (dropout).
    gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    # More workers than cores only adds contention (and a DataLoader warning); the
    # crops do not depend on the worker count, so capping changes no result.
    workers = min(cfg.num_workers, usable_cpus())
    return DataLoader(
        ds,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=drop_last,
        generator=gen,
        prefetch_factor=4 if workers else None,
    )


def usable_cpus() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):  # Linux: the cores this process may run on
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def take(loader: DataLoader, n: int) -> Iterator[dict[str, torch.Tensor]]:
    """The first n batches of a loader, without fetching an (n+1)-th."""
    return itertools.islice(loader, n)
