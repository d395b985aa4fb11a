"""One Trainer for every configuration; the views and the objective are the pluggable parts.

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
start. When last.pt already holds `epochs` epochs (or stopped early) and the export
exists, the run is complete: fit() says so and returns without training.

Early stopping. With `patience` set, training stops once the validation loss has not
improved for `patience` epochs, but never before epoch `min_epochs`; `epochs` is then the
maximum. best.pt (and its export
audio_encoder_best.pt) holds the best-by-validation model, audio_encoder.pt the last
epoch's. metrics.csv has a `best_epoch` column; config.json a `training` entry (epochs
run, best epoch, best validation loss, whether it stopped early).

Faults. Everything a resume needs (last.pt, the config, the data's sizes) is checked
before anything is written; a fresh start sets an earlier attempt's files aside
(runlog.py); the run folder is locked against a second run; a NaN/inf loss names the
track that caused it, when the data hold it. Bad input is a ConfigError (exit 2).

Distributed. Under torchrun each process trains on its shard (DistributedSampler)
with batch_size / world_size; DDP averages gradients. With gather_distributed the
contrastive loss all-gathers the embeddings so it sees the global batch, exactly as
one process with batch_size would (BatchNorm statistics stay per process).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from .checkpoint import (
    check_model_args,
    load_resume_point,
    restore,
    rng_state,
    save_atomic,
    training_state,
)
from ..errors import ConfigError
from ..precision import resolve_device
from ..settings import TrainConfig
from .dataset import TrackDataset
from ..data.h5io import read_split_info
from ..io import OutputLocked, output_lock
from .objectives import make_objective
from .runlog import RunLog, check_writable, provenance
from ..views.base import View, build_model, make_views, model_args
from ..precision import use_bf16


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
    cuda = resolve_device(device).type == "cuda"
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
    best_epoch: int = 0  # epoch of best.pt (0: none yet)
    stopped_early: bool = False


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
        if self.local_batch < 2:  # NT-Xent contrasts within the batch; BatchNorm needs 2
            raise ConfigError(
                f"config key 'batch_size' ({cfg.batch_size}) gives {self.local_batch} track per process; "
                "at least 2 per process are needed"
            )
        dev = resolve_device(cfg.device)
        if dev.type == "cuda" and self.dist.enabled:
            dev = torch.device("cuda", self.dist.local_rank)
        self.device = dev
        self.bf16 = use_bf16(cfg.bf16, self.device)  # "auto" decided once, for this device
        self.objective = make_objective(cfg, distributed=self.dist.enabled)
        self.runlog = RunLog(self.out_dir)  # config.json, metrics, TensorBoard (main process)
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
        try:
            self.views: dict[str, View] = make_views(cfg, read_split_info(cfg.train_dataset_file))
        except (OSError, ValueError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"config key 'train_dataset_file': {e}") from None

        def dataset(path: str, train: bool, key: str) -> TrackDataset:
            try:
                return TrackDataset(path, self.views, obj.fields, train=train)
            except (OSError, ValueError) as e:
                raise ConfigError(f"config key '{key}': {e}") from None

        self.train_set = dataset(cfg.train_dataset_file, True, "train_dataset_file")
        self.val_set = dataset(cfg.validation_dataset_file, False, "validation_dataset_file")
        self.steps_per_epoch = (len(self.train_set) // self.dist.world_size) // self.local_batch
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"config key 'batch_size' ({cfg.batch_size}) exceeds the {len(self.train_set)} training tracks"
            )
        if cfg.max_steps_per_epoch:
            self.steps_per_epoch = min(self.steps_per_epoch, cfg.max_steps_per_epoch)

        # Same seed -> same initial weights on every rank (DDP also broadcasts rank 0's).
        torch.manual_seed(cfg.seed)
        self.model = build_model(self.views, cfg.views, cfg.targets).to(self.device)
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
        self.best_epoch = self.epochs_run = 0
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
            return self.objective(model(batch), batch)

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
        loader = self.val_loader()
        # A full-size val split takes many minutes (about 17 at Melon's size on 2 cores).
        for batch in tqdm(loader, total=len(loader), desc="validation", disable=not self.dist.is_main,
                          dynamic_ncols=True, leave=False):
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
        recent: list[torch.Tensor] = []  # rows since the last check: where a NaN came from
        for step, batch in enumerate(_take(loader, self.steps_per_epoch), start=1):
            recent.append(batch["index"])
            terms = self.train_step(batch)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0) + v.float()
            if step % self.cfg.log_interval == 0 or step == self.steps_per_epoch:
                running = {k: float(v) / step for k, v in sums.items()}
                if not math.isfinite(running["loss"]):
                    bar.close()
                    rows = torch.cat(recent).tolist()
                    raise self._nonfinite_loss("training", running["loss"], epoch, rows)
                recent.clear()
                bar.set_postfix(loss=f"{running['loss']:.4f}")
                self.runlog.step_scalars(terms, self.global_step)
            bar.update(1)
        seconds = time.perf_counter() - t0
        bar.close()
        return {k: float(v) / self.steps_per_epoch for k, v in sums.items()}, seconds

    # ---------------------------------------------------------------- state --------
    def _state(self, epoch: int, val_loss: float) -> dict[str, Any]:
        states = [rng_state()]
        if self.dist.enabled:  # collective: every rank's RNG goes into rank 0's file
            states = [None] * self.dist.world_size
            dist.all_gather_object(states, rng_state())
        state = training_state(
            self.model, self.optimizer, self.cfg, epoch=epoch, global_step=self.global_step,
            best_val=self.best_val, val_loss=val_loss, rng_states=states,
            model_args=model_args(self.views),
        )
        state["best_epoch"] = self.best_epoch  # early stopping resumes from it
        return state

    def _nonfinite_loss(self, split: str, value: float, epoch: int, rows: list[int] | None = None
                        ) -> ConfigError | TrainingError:
        """The error for a NaN/inf `split` loss: a ConfigError naming the file and the track
        when the data fed to the model (`rows`, default all) hold the NaN/inf, else a
        TrainingError (the optimisation diverged)."""
        train = split == "training"
        ds, key = (self.train_set, "train_dataset_file") if train else (self.val_set, "validation_dataset_file")
        bad = ds.find_nonfinite(rows)
        if bad is None:
            return TrainingError(
                f"{split} loss became {value} at epoch {epoch} on finite data; "
                "try a lower learning_rate or a higher contrastive_temperature"
            )
        row, track, field = bad
        who = f"track id {track} (row {row})" if track is not None else f"row {row}"
        return ConfigError(
            f"config key '{key}': {ds.path}: {who} holds NaN/inf in its '{field}' input, which made "
            f"the {split} loss {value} at epoch {epoch}; rebuild the dataset without it"
        )

    def _run_info(self) -> dict[str, Any]:
        """config.json: the config, the data shapes, the provenance."""
        info = self.cfg.to_dict()
        info.update(device_resolved=str(self.device), world_size=self.dist.world_size,
                    bf16_resolved=self.bf16)
        info.update(model_args(self.views))
        info["provenance"] = provenance(
            self.cfg.train_dataset_file, len(self.train_set), len(self.val_set), self.cfg.epochs, self.cfg.width
        )
        info["training"] = {
            "epochs_run": self.epochs_run, "max_epochs": self.cfg.epochs,
            "patience": self.cfg.patience, "min_epochs": self.cfg.min_epochs, "best_epoch": self.best_epoch,
            "best_val_loss": self.best_val if math.isfinite(self.best_val) else None,
            "stopped_early": _stopped_early(self.cfg, self.epochs_run, self.best_epoch),
        }
        return info

    # ---------------------------------------------------------------- fit ----------
    def fit(self) -> FitResult:
        """Train, resume, or say that the run is complete (see the module docstring)."""
        check_writable(self.out_dir)
        with self._run_lock():
            return self._fit()

    @contextlib.contextmanager
    def _run_lock(self) -> Iterator[None]:
        """The main process locks the run folder (io.output_lock) so that a second run into
        it stops at once; every rank learns the outcome, so a refused run stops on all."""
        with contextlib.ExitStack() as stack:
            refused = None
            if self.dist.is_main:
                try:
                    stack.enter_context(output_lock(self.out_dir))
                except OutputLocked as e:
                    refused = str(e)
            if self.dist.enabled:
                box = [refused]
                dist.broadcast_object_list(box, 0)
                refused = box[0]
            if refused:
                raise ConfigError(f"config key 'experiment_name': {refused}")
            yield

    def _fit(self) -> FitResult:
        cfg, out = self.cfg, self.out_dir
        last_path = out / "last.pt"
        ckpt = load_resume_point(last_path, cfg)  # damaged, foreign, other config: one line
        done = int(ckpt["epoch"]) if ckpt else 0
        # Checkpoints from before early stopping lack best_epoch: count from the resume point.
        best_epoch = int(ckpt.get("best_epoch", done)) if ckpt else 0
        stopped = _stopped_early(cfg, done, best_epoch)
        if (done >= cfg.epochs or stopped) and (out / "audio_encoder.pt").is_file():
            why = f"stopped early at epoch {done}, best {best_epoch}" if stopped else f"{done}/{cfg.epochs} epochs"
            self.log(
                f"{cfg.experiment_name}: already complete ({why}) in {out}; "
                "nothing to do (raise 'epochs', 'patience' or 'min_epochs' to train further)"
            )
            return FitResult(out, done, True, float(ckpt["best_val"]), {}, best_epoch, stopped)

        # Setup: data, model, optimizer, the resume point (all checked before anything is
        # written), then the run log.
        self.setup()
        if ckpt is not None:
            check_model_args(ckpt, model_args(self.views), last_path)
            self.global_step, self.best_val = restore(
                ckpt, self.model, self.optimizer, cfg, self.dist.rank, self.dist.world_size, last_path
            )
            self.best_epoch, self.epochs_run = best_epoch, done
        runlog = self.runlog = RunLog(out)
        info = self._run_info()
        earlier = runlog.begin(info, done if ckpt else None) if self.dist.is_main else None
        if earlier is not None:
            self.log(f"{cfg.experiment_name}: no last.pt to resume from; earlier files moved to {earlier}")
        if ckpt is not None:
            self.log(f"{cfg.experiment_name}: resuming from {last_path} (epoch {done}/{cfg.epochs})")
        if info["provenance"]["data"] == "unknown":
            self.log(f"warning: no manifest.json beside {cfg.train_dataset_file} (an interrupted "
                     "create_dataset?): data provenance unknown")
        del ckpt
        if self.dist.is_main and done < cfg.epochs:
            runlog.tb_open(self.global_step if done else None)
        self.log(
            f"{cfg.experiment_name}: {self.objective.name}, {len(self.train_set)} train / {len(self.val_set)} val "
            f"tracks, {self.steps_per_epoch} steps x {cfg.batch_size} per epoch, device {self.device}"
            + (", bf16 autocast" if self.bf16 else "")
            + (f", {self.dist.world_size} processes" if self.dist.enabled else "")
        )

        # Epoch loop: train, validate, log, save.
        metrics: dict[str, float] = {}
        try:
            # A run that stopped early but was cut off before its export trains no more.
            for epoch in range(done + 1, (done if stopped else cfg.epochs) + 1):
                train_terms, seconds = self.train_epoch(epoch)
                val_terms = self.validate()
                if not math.isfinite(val_terms["loss"]):  # before anything of the epoch is saved
                    raise self._nonfinite_loss("validation", val_terms["loss"], epoch)
                samples = self.steps_per_epoch * cfg.batch_size
                metrics = {"epoch": epoch}
                metrics.update({f"train_{k}": v for k, v in train_terms.items()})
                metrics.update({f"val_{k}": v for k, v in val_terms.items()})
                metrics.update(time_s=round(seconds, 3), samples_per_s=round(samples / max(seconds, 1e-9), 2))
                improved = val_terms["loss"] < self.best_val
                if improved:
                    self.best_val, self.best_epoch = val_terms["loss"], epoch
                self.epochs_run = epoch
                metrics["best_epoch"] = self.best_epoch
                state = self._state(epoch, val_terms["loss"])  # collective under DDP
                if self.dist.is_main:
                    runlog.epoch(metrics, train_terms, val_terms, self.global_step)
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
                if _stopped_early(cfg, epoch, self.best_epoch):
                    self.log(f"{cfg.experiment_name}: early stop at epoch {epoch}: validation loss "
                             f"not improved for {cfg.patience} epochs (best epoch {self.best_epoch}, "
                             f"{self.best_val:.4f})")
                    break
        except KeyboardInterrupt:
            self.log(f"\ninterrupted; rerun the same command to resume from {last_path}")
            raise
        except OSError as e:  # a full disk, an unreadable chunk: every write so far is atomic
            cause = (str(e).strip().splitlines() or [type(e).__name__])[-1]  # DataLoader wraps
            kept = (f"the previous checkpoint {last_path} is intact: rerun to resume from it"
                    if last_path.is_file() else "no checkpoint was written yet")
            raise TrainingError(f"{cause}; {kept}") from None
        finally:
            runlog.close()

        # Export: the final audio encoder in the original format.
        self._sync_buffers()
        if self.dist.enabled:
            self._check_ranks_agree()
        if self.dist.is_main:
            runlog.export(self.model.audio.state_dict(), self._run_info())
            self.log(f"{cfg.experiment_name}: done; audio encoder in {out / 'audio_encoder.pt'}")
        if self.dist.enabled:
            dist.barrier()
        return FitResult(out, self.epochs_run, False, self.best_val, metrics, self.best_epoch,
                         _stopped_early(cfg, self.epochs_run, self.best_epoch))

    def _check_ranks_agree(self) -> None:
        # DDP keeps replicas equal; a mismatch means a bug, so fail loudly.
        total = sum(p.detach().double().sum() for p in self.model.parameters())
        sums = [None] * self.dist.world_size
        dist.all_gather_object(sums, float(total))
        if any(s != sums[0] for s in sums):
            raise TrainingError(f"ranks ended with different weights (parameter sums {sums})")


def _stopped_early(cfg: TrainConfig, epochs_run: int, best_epoch: int) -> bool:
    """True when `patience` epochs have passed since the best validation loss (and the run
    is at least `min_epochs` long)."""
    return (cfg.patience is not None and cfg.min_epochs <= epochs_run < cfg.epochs
            and epochs_run - best_epoch >= cfg.patience)


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):  # Linux: the cores this process may run on
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _take(loader: DataLoader, n: int) -> Iterator[dict[str, torch.Tensor]]:
    """The first n batches of a loader, without fetching an (n+1)-th."""
    return itertools.islice(loader, n)
