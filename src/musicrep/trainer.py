"""One Trainer for all six configurations; the objective is the pluggable part.

    trainer = Trainer(cfg)          # cfg: a validated TrainConfig
    result = trainer.fit()          # trains, resumes, or says it is already done

Outputs, under save_dir/experiment_name/:

    config.json            the config (and the data shapes) the run used
    last.pt                full state after the latest epoch (resume point)
    best.pt                full state at the lowest validation loss
    epoch_XXXX.pt          full state every save_model_every epochs and at the end
    audio_encoder.pt       final audio encoder, plain state dict (original format)
    audio_encoder_best.pt  the same from best.pt
    metrics.csv            one row per epoch: every loss term train/val, time, samples/s
    tb/                    TensorBoard scalars

Resume. Rerunning the same command continues from last.pt (model parts, Adam, epoch,
step, best loss, RNG states). Crops are drawn from (seed, epoch) and the shuffle from
(seed, epoch), so on CPU with a fixed seed an interrupted and resumed run ends with
exactly the weights of an uninterrupted one. An interrupted epoch is redone from its
start. When last.pt already holds `epochs` epochs and the export exists, the run is
complete: fit() says so and returns without training.

Distributed. Under torchrun each process trains on its shard (DistributedSampler)
with batch_size / world_size; DDP averages gradients. With gather_distributed the
contrastive loss all-gathers the embeddings so it sees the global batch, exactly as
one process with batch_size would (BatchNorm statistics stay per process).
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from .checkpoint import (
    FORMAT,
    export_audio_encoder,
    load_checkpoint,
    rng_state,
    save_atomic,
    set_rng_state,
)
from .config import ConfigError, TrainConfig, resolve_device
from .data import TrackDataset, read_n_genres, read_split_info
from .models import AudioEncoder, CFEncoder, GenreEncoder, MultiModalModel
from .objectives import Objective, make_objective
from .precision import use_bf16

# Keys that change the model's structure or meaning: a resume must not mix them.
RESUME_KEYS = (
    "encoder",
    "objective",
    "aggregation",
    "num_heads",
    "width",
    "input_layout",
    "max_genres",
)


class TrainingError(RuntimeError):
    """Training cannot go on (for example the loss became NaN)."""


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
    cuda = resolve_device(device).startswith("cuda")
    if cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return DistContext(rank, world, local)


@dataclass
class FitResult:
    out_dir: Path
    epochs_done: int
    skipped: bool  # True when the run was already complete
    best_val: float
    last_metrics: dict[str, float]


def _zero_linear(d_in: int, d_out: int) -> nn.Linear:
    """A regression head that starts at zero output.

    CF targets are small (BPR factors, std ~0.1) while a default-initialised head on the
    layer-normed 128-d embedding outputs std ~0.6; starting from zero spares the first
    few hundred steps that would otherwise only shrink the head.
    """
    head = nn.Linear(d_in, d_out)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return head


def build_model(
    cfg: TrainConfig,
    objective: Objective,
    cf_dim: int | None,
    n_genres: int,
    embedding_matrix: np.ndarray | None,
) -> MultiModalModel:
    """The audio encoder plus whatever the objective needs."""
    parts: dict[str, nn.Module] = {}
    if "cf" in objective.parts:
        parts["cf"] = CFEncoder(cf_dim)
    if "genre" in objective.parts:
        parts["genre"] = GenreEncoder(embedding_matrix, cfg.aggregation, cfg.num_heads)
    if "cf_head" in objective.parts:
        parts["cf_head"] = _zero_linear(128, cf_dim)
    if "genre_head" in objective.parts:
        parts["genre_head"] = nn.Linear(128, n_genres)
    return MultiModalModel(AudioEncoder(cfg.width, cfg.input_layout), **parts)


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        dist_ctx: DistContext | None = None,
        log: Callable[[str], None] | None = None,
    ):
        self.cfg = cfg
        self.dist = dist_ctx or DistContext()
        self._log = log or (lambda msg: print(msg, flush=True))
        self.out_dir = cfg.out_dir
        if cfg.batch_size % self.dist.world_size:
            raise ConfigError(
                f"config key 'batch_size' ({cfg.batch_size}) must be divisible by the "
                f"{self.dist.world_size} processes"
            )
        self.local_batch = cfg.batch_size // self.dist.world_size
        dev = resolve_device(cfg.device)
        if dev.startswith("cuda") and self.dist.enabled:
            dev = f"cuda:{self.dist.local_rank}"
        self.device = torch.device(dev)
        self.bf16 = use_bf16(cfg.bf16, self.device)  # "auto" decided once, for this device
        self.objective = make_objective(cfg, distributed=self.dist.enabled)
        self.writer = None  # TensorBoard, main process only, open during fit()
        self._setup_done = False

    def log(self, msg: str) -> None:
        if self.dist.is_main:
            self._log(msg)

    # ---------------------------------------------------------------- setup --------
    def setup(self) -> None:
        """Datasets, model, optimizer. Separate from __init__ so that a complete run is
        recognised without reading data, and so benchmarks can drive single steps."""
        if self._setup_done:
            return
        cfg, obj = self.cfg, self.objective
        train_info = read_split_info(cfg.train_dataset_file)
        try:
            n_genres_vocab = read_n_genres(
                cfg.resolved_id2tag(),
                cfg.resolved_embedding_matrix() if cfg.uses_genres else None,
            )
        except (OSError, ValueError) as e:
            raise ConfigError(
                f"config key 'id2tag_file': cannot read the genre vocabulary: {e}"
            ) from None
        self.n_genres = n_genres_vocab if n_genres_vocab is not None else train_info.max_label + 1
        self.embedding_matrix = None
        if "genre" in obj.parts:
            self.embedding_matrix = np.load(cfg.resolved_embedding_matrix())
            if self.embedding_matrix.shape[0] != self.n_genres + 1:
                raise ConfigError(
                    f"config key 'embedding_matrix_file': {cfg.resolved_embedding_matrix()} has "
                    f"{self.embedding_matrix.shape[0]} rows, expected n_genres + 1 = {self.n_genres + 1}"
                )
        self.cf_dim = train_info.cf_dim

        def dataset(path: str, train: bool, key: str) -> TrackDataset:
            try:
                return TrackDataset(
                    path,
                    crop_frames=cfg.crop_frames,
                    train=train,
                    seed=cfg.seed,
                    n_genres=self.n_genres,
                    max_genres=cfg.max_genres,
                    with_cf=obj.needs_cf,
                    with_genres=obj.needs_genres,
                )
            except (OSError, ValueError) as e:
                raise ConfigError(f"config key '{key}': {e}") from None

        self.train_set = dataset(cfg.train_dataset_file, True, "train_dataset_file")
        self.val_set = dataset(cfg.validation_dataset_file, False, "validation_dataset_file")
        if obj.needs_cf and self.val_set.info.cf_dim != self.cf_dim:
            raise ConfigError(
                "config key 'validation_dataset_file': its cf_data width differs from the train file's"
            )
        self.steps_per_epoch = (len(self.train_set) // self.dist.world_size) // self.local_batch
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"config key 'batch_size' ({cfg.batch_size}) exceeds the {len(self.train_set)} training tracks"
            )
        if cfg.max_steps_per_epoch:
            self.steps_per_epoch = min(self.steps_per_epoch, cfg.max_steps_per_epoch)

        # Same seed -> same initial weights on every rank (DDP also broadcasts rank 0's).
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg, obj, self.cf_dim, self.n_genres, self.embedding_matrix).to(
            self.device
        )
        if cfg.channels_last:
            self.model.audio.to(memory_format=torch.channels_last)
            self.model.channels_last = True
        # The training stream (dropout) gets its own seed per rank.
        torch.manual_seed(cfg.seed + 1 + self.dist.rank)
        self.ddp_model: nn.Module = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp_model = DDP(self.model, device_ids=ids)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
        )
        self.global_step = 0
        self.best_val = math.inf
        self._setup_done = True

    def train_loader(self, epoch: int) -> DataLoader:
        """The DataLoader of one epoch: shuffle and crops fixed by (seed, epoch)."""
        self.train_set.set_epoch(epoch)
        sampler = DistributedSampler(
            self.train_set,
            num_replicas=self.dist.world_size,
            rank=self.dist.rank,
            shuffle=True,
            seed=self.cfg.seed,
            drop_last=True,
        )
        sampler.set_epoch(epoch)
        return self._loader(self.train_set, sampler, drop_last=True, epoch=epoch)

    def val_loader(self) -> DataLoader:
        sampler = DistributedSampler(
            self.val_set, num_replicas=self.dist.world_size, rank=self.dist.rank, shuffle=False
        )
        return self._loader(self.val_set, sampler, drop_last=False, epoch=0)

    def _loader(
        self, ds: TrackDataset, sampler: DistributedSampler, drop_last: bool, epoch: int
    ) -> DataLoader:
        # Own generator: iterating a loader must not draw from the global RNG (dropout).
        gen = torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch)
        # More workers than cores only adds contention (and a DataLoader warning); the
        # crops do not depend on the worker count, so capping changes no result.
        workers = min(self.cfg.num_workers, _usable_cpus())
        return DataLoader(
            ds,
            batch_size=self.local_batch,
            sampler=sampler,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            drop_last=drop_last,
            generator=gen,
            prefetch_factor=4 if workers else None,
        )

    # ---------------------------------------------------------------- steps --------
    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        nb = self.device.type == "cuda"
        return {k: v.to(self.device, non_blocking=nb) for k, v in batch.items()}

    def forward_loss(
        self, batch: dict[str, torch.Tensor], model: nn.Module | None = None
    ) -> dict[str, torch.Tensor]:
        model = model or self.ddp_model
        with self._autocast():
            out = model(batch["audio"], batch.get("cf"), batch.get("tokens"))
            return self.objective(out, batch)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One optimizer step on a batch from the loader; returns detached loss terms."""
        batch = self._to_device(batch)
        terms = self.forward_loss(batch)
        loss = terms["loss"]
        if self.objective.uses_gather:
            # Each rank's loss covers the global batch but back-propagates only through
            # its own slice; times world size, DDP's average is the global gradient.
            loss = loss * self.dist.world_size
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.global_step += 1
        return {k: v.detach() for k, v in terms.items()}

    def _sync_buffers(self) -> None:
        # BatchNorm running statistics drift apart per rank; validate and save rank 0's.
        if self.dist.enabled:
            for b in self.model.buffers():
                dist.broadcast(b, 0)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        self._sync_buffers()
        self.model.eval()
        sums: dict[str, torch.Tensor] = {}
        count = torch.zeros((), dtype=torch.float64, device=self.device)
        for batch in self.val_loader():
            batch = self._to_device(batch)
            n = batch["audio"].shape[0]
            terms = self.forward_loss(batch, model=self.model)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0) + v.double() * n
            count += n
        self.model.train()
        keys = list(sums)  # the objective's order, the same on every rank
        vec = torch.stack([sums[k] for k in keys] + [count])
        if self.dist.enabled:
            dist.all_reduce(vec)
        return {k: float(vec[i] / vec[-1]) for i, k in enumerate(keys)}

    def train_epoch(self, epoch: int) -> tuple[dict[str, float], float]:
        """Returns (mean of every loss term, seconds spent)."""
        self.model.train()
        loader = self.train_loader(epoch)
        sums: dict[str, torch.Tensor] = {}
        bar = tqdm(
            total=self.steps_per_epoch,
            desc=f"epoch {epoch}/{self.cfg.epochs}",
            disable=not self.dist.is_main,
            dynamic_ncols=True,
            leave=False,
        )
        t0 = time.perf_counter()
        for step, batch in enumerate(_take(loader, self.steps_per_epoch), start=1):
            terms = self.train_step(batch)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0) + v.float()
            if step % self.cfg.log_interval == 0 or step == self.steps_per_epoch:
                running = {k: float(v) / step for k, v in sums.items()}
                if not math.isfinite(running["loss"]):
                    bar.close()
                    raise TrainingError(
                        f"loss became {running['loss']} at epoch {epoch}, step {step}; "
                        "try a lower learning_rate or a higher contrastive_temperature"
                    )
                bar.set_postfix(loss=f"{running['loss']:.4f}")
                if self.writer is not None:
                    for k, v in terms.items():
                        self.writer.add_scalar(f"train_step/{k}", float(v), self.global_step)
            bar.update(1)
        seconds = time.perf_counter() - t0
        bar.close()
        return {k: float(v) / self.steps_per_epoch for k, v in sums.items()}, seconds

    # ---------------------------------------------------------------- state --------
    def _state(self, epoch: int, val_loss: float) -> dict[str, Any]:
        states = [rng_state()]
        if self.dist.enabled:
            states = [None] * self.dist.world_size
            dist.all_gather_object(states, rng_state())
        return {
            "format": FORMAT,
            "epoch": epoch,
            "global_step": self.global_step,
            "models": self.model.part_state_dicts(),
            "optimizer": self.optimizer.state_dict(),
            "rng": {
                "torch": [s["torch"] for s in states],
                "cuda": [s["cuda"] for s in states] if states[0]["cuda"] is not None else None,
            },
            "config": self.cfg.to_dict(),
            "model_args": {
                "width": self.cfg.width,
                "input_layout": self.cfg.input_layout,
                "cf_dim": self.cf_dim,
                "n_genres": self.n_genres,
            },
            "best_val": self.best_val,
            "val_loss": val_loss,
        }

    def _restore(self, ckpt: dict[str, Any]) -> None:
        self.model.load_part_state_dicts(ckpt["models"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.global_step = int(ckpt["global_step"])
        self.best_val = float(ckpt["best_val"])
        rng = ckpt["rng"]
        if len(rng["torch"]) == self.dist.world_size:
            cuda = rng["cuda"][self.dist.rank] if rng.get("cuda") else None
            set_rng_state({"torch": rng["torch"][self.dist.rank], "cuda": cuda})
        else:  # resumed with another number of processes: reseed, deterministically
            torch.manual_seed(self.cfg.seed + 1 + self.dist.rank + 7919 * int(ckpt["epoch"]))

    def _check_resumable(self, ckpt: dict[str, Any], path: Path) -> None:
        saved = ckpt.get("config", {})
        for key in RESUME_KEYS:
            if key in saved and saved[key] != getattr(self.cfg, key):
                raise ConfigError(
                    f"config key '{key}' is {json.dumps(getattr(self.cfg, key))} but {path} was trained "
                    f"with {json.dumps(saved[key])}; use another experiment_name or remove {path.parent}"
                )

    def _write_config_json(self) -> None:
        info = self.cfg.to_dict()
        info.update(
            device_resolved=str(self.device),
            bf16_resolved=self.bf16,
            world_size=self.dist.world_size,
            cf_dim=getattr(self, "cf_dim", None),
            n_genres=getattr(self, "n_genres", None),
        )
        tmp = self.out_dir / ".config.json.tmp"
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        os.replace(tmp, self.out_dir / "config.json")

    def _export(self, final_audio: dict[str, torch.Tensor]) -> None:
        export_audio_encoder(final_audio, self.out_dir / "audio_encoder.pt")
        best = self.out_dir / "best.pt"
        if best.is_file():
            export_audio_encoder(
                load_checkpoint(best)["models"]["audio"], self.out_dir / "audio_encoder_best.pt"
            )
        self._write_config_json()

    # ---------------------------------------------------------------- metrics ------
    def _metrics_rows_upto(self, epoch: int) -> None:
        """Drop metrics rows after `epoch` (left by an interrupted run) before resuming."""
        path = self.out_dir / "metrics.csv"
        if not path.is_file():
            return
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            return
        kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= epoch]
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows(kept)

    def _append_metrics(self, row: dict[str, float]) -> None:
        path = self.out_dir / "metrics.csv"
        new = not path.is_file() or path.stat().st_size == 0
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)

    # ---------------------------------------------------------------- fit ----------
    def fit(self) -> FitResult:
        cfg, out = self.cfg, self.out_dir
        last_path = out / "last.pt"
        ckpt = load_checkpoint(last_path) if last_path.is_file() else None
        if ckpt is not None:
            self._check_resumable(ckpt, last_path)
        done = int(ckpt["epoch"]) if ckpt else 0

        if done >= cfg.epochs and (out / "audio_encoder.pt").is_file():
            self.log(
                f"{cfg.experiment_name}: already complete ({done}/{cfg.epochs} epochs) in {out}; "
                "nothing to do (raise 'epochs' to train further)"
            )
            return FitResult(out, done, True, float(ckpt["best_val"]), {})

        self.setup()
        if self.dist.is_main:
            out.mkdir(parents=True, exist_ok=True)
            self._write_config_json()
        if ckpt is not None:
            self._restore(ckpt)
            self.log(
                f"{cfg.experiment_name}: resuming from {last_path} (epoch {done}/{cfg.epochs})"
            )
            if self.dist.is_main:
                self._metrics_rows_upto(done)
        del ckpt

        self.writer = None
        if self.dist.is_main and done < cfg.epochs:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(
                str(out / "tb"), purge_step=self.global_step if done else None
            )

        self.log(
            f"{cfg.experiment_name}: {self.objective.name}, {len(self.train_set)} train / {len(self.val_set)} val "
            f"tracks, {self.steps_per_epoch} steps x {cfg.batch_size} per epoch, device {self.device}"
            + (", bf16 autocast" if self.bf16 else "")
            + (f", {self.dist.world_size} processes" if self.dist.enabled else "")
        )
        metrics: dict[str, float] = {}
        try:
            for epoch in range(done + 1, cfg.epochs + 1):
                train_terms, seconds = self.train_epoch(epoch)
                val_terms = self.validate()
                samples = self.steps_per_epoch * cfg.batch_size
                metrics = {"epoch": epoch}
                metrics.update({f"train_{k}": v for k, v in train_terms.items()})
                metrics.update({f"val_{k}": v for k, v in val_terms.items()})
                metrics.update(
                    time_s=round(seconds, 3), samples_per_s=round(samples / max(seconds, 1e-9), 2)
                )
                improved = val_terms["loss"] < self.best_val
                if improved:
                    self.best_val = val_terms["loss"]
                state = self._state(epoch, val_terms["loss"])  # collective under DDP
                if self.dist.is_main:
                    self._append_metrics(metrics)
                    for k, v in train_terms.items():
                        self.writer.add_scalar(f"train/{k}", v, self.global_step)
                    for k, v in val_terms.items():
                        self.writer.add_scalar(f"val/{k}", v, self.global_step)
                    self.writer.add_scalar(
                        "samples_per_s", metrics["samples_per_s"], self.global_step
                    )
                    self.writer.flush()
                    if epoch % cfg.save_model_every == 0 or epoch == cfg.epochs:
                        save_atomic(state, out / f"epoch_{epoch:04d}.pt")
                    if improved:
                        save_atomic(state, out / "best.pt")
                    save_atomic(state, last_path)  # last: it marks the epoch as done
                self.log(
                    f"epoch {epoch}/{cfg.epochs}  train {train_terms['loss']:.4f}  val {val_terms['loss']:.4f}"
                    f"  {metrics['samples_per_s']:.1f} samples/s" + ("  (best)" if improved else "")
                )
                del state
                if self.dist.enabled:
                    dist.barrier()
        except KeyboardInterrupt:
            self.log(f"\ninterrupted; rerun the same command to resume from {last_path}")
            raise
        finally:
            if self.writer is not None:
                self.writer.close()

        self._sync_buffers()
        if self.dist.enabled:
            self._check_ranks_agree()
        if self.dist.is_main:
            self._export(self.model.audio.state_dict())
            self.log(f"{cfg.experiment_name}: done; audio encoder in {out / 'audio_encoder.pt'}")
        if self.dist.enabled:
            dist.barrier()
        return FitResult(out, cfg.epochs, False, self.best_val, metrics)

    def _check_ranks_agree(self) -> None:
        # DDP keeps replicas equal; a mismatch means a bug, so fail loudly.
        total = sum(p.detach().double().sum() for p in self.model.parameters())
        sums = [None] * self.dist.world_size
        dist.all_gather_object(sums, float(total))
        if any(s != sums[0] for s in sums):
            raise TrainingError(f"ranks ended with different weights (parameter sums {sums})")


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):  # Linux: the cores this process may run on
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _take(loader: DataLoader, n: int) -> Iterator[dict[str, torch.Tensor]]:
    """The first n batches of a loader, without fetching an (n+1)-th."""
    return itertools.islice(loader, n)
