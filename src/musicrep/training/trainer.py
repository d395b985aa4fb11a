"""One Trainer for every configuration; the views and the objective are the pluggable parts.

    trainer = Trainer(cfg)          # cfg: a validated TrainConfig
    result = trainer.fit()          # trains, resumes, or says it is already done

`fit` is the whole run on one screen: resume (or find the run complete), then for each
epoch train, validate, log, save and check early stopping; at the end export the audio
encoder. The parts live beside it: the run folder's files (run_files.py), which
checkpoints are kept and the export (save_policy.py), config.json, metrics.csv and
TensorBoard (runlog.py), early stopping (early_stopping.py), torchrun (distributed.py),
the batches (loaders.py), the one-line errors (faults.py).

Resume. Rerunning the same command continues from last.pt (model parts, Adam, epoch,
step, best loss, RNG states). Crops are drawn from (seed, epoch) and the shuffle from
(seed, epoch), so on CPU with a fixed seed an interrupted and resumed run ends with
exactly the weights of an uninterrupted one. An interrupted epoch is redone from its
start. When last.pt already holds `epochs` epochs (or stopped early) and the export
exists, the run is complete: fit() says so and returns without training.

Early stopping. With `patience` set, training stops once the validation loss has not
improved for `patience` epochs, but never before epoch `min_epochs`; `epochs` is then the
maximum. best.pt (and its export audio_encoder_best.pt) holds the best-by-validation
model, audio_encoder.pt the last epoch's. `select_on` "audio" makes the watched loss the
sum of the terms that involve the audio view, logged as metrics.csv's `val_selected`
(early_stopping.py). metrics.csv has a `best_epoch` column; config.json a `training` entry (epochs
run, best epoch, best validation loss, whether it stopped early).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..layout import MANIFEST
from ..precision import use_bf16
from ..settings import TrainConfig
from ..views import build_model, model_args
from . import loaders
from .checkpoint import check_model_args, load_resume_point, restore, rng_state, training_state
from .dataset import open_splits
from .distributed import (DistContext, barrier, check_ranks_agree, gather, local_batch_size,
                          process_device, sum_over_ranks, sync_buffers, wrap_ddp)
from .early_stopping import SELECTED, EarlyStopping, selected_loss
from .faults import epoch_faults, nonfinite_loss
from .objectives import make_objective
from .runlog import RunLog, check_writable, epoch_row, run_info, run_lock
from .save_policy import SavePolicy


@dataclass
class FitResult:
    """What `Trainer.fit` did."""

    out_dir: Path
    epochs_done: int
    skipped: bool  # True when the run was already complete
    best_val: float
    last_metrics: dict[str, float]
    best_epoch: int = 0  # epoch of best.pt (0: none yet)
    stopped_early: bool = False


class Trainer:
    """One run of one config: `setup` (data, model, optimizer), the steps, and `fit`."""

    def __init__(self, cfg: TrainConfig, dist_ctx: DistContext | None = None,
                 log: Callable[[str], None] | None = None):
        self.cfg = cfg
        self.dist = dist_ctx or DistContext()
        self._log = log or (lambda msg: print(msg, flush=True))
        self.out_dir = cfg.out_dir
        self.local_batch = local_batch_size(cfg.batch_size, self.dist)
        self.device = process_device(cfg.device, self.dist)
        self.bf16 = use_bf16(cfg.bf16, self.device)  # "auto" decided once, for this device
        self.objective = make_objective(cfg, distributed=self.dist.enabled)
        self.runlog = RunLog(self.out_dir)  # config.json, metrics, TensorBoard (main process)
        self.saver = SavePolicy(self.out_dir, cfg.save_model_every, cfg.epochs)
        self.early = EarlyStopping(cfg.patience, cfg.min_epochs, cfg.epochs, cfg.select_on)
        self.global_step = 0
        self._setup_done = False

    def log(self, msg: str) -> None:
        if self.dist.is_main:
            self._log(msg)

    # ---------------------------------------------------------------- fit ----------
    def fit(self) -> FitResult:
        """Train, resume, or say that the run is complete (see the module docstring)."""
        cfg, early = self.cfg, self.early
        check_writable(self.out_dir)
        with run_lock(self.out_dir, self.dist):
            ckpt = load_resume_point(self.saver.last, cfg)  # damaged, foreign, other config: one line
            if ckpt is not None:
                done = int(ckpt["epoch"])
                # Checkpoints from before early stopping lack best_epoch: count from the resume point.
                early.resume(done, int(ckpt.get("best_epoch", done)), float(ckpt["best_val"]))
            if self._already_complete():
                return self._result(skipped=True, metrics={})
            self._begin(ckpt)
            del ckpt

            metrics: dict[str, float] = {}
            # A run that stopped early but was cut off before its export trains no more.
            epochs = range(early.epochs_run + 1, (early.epochs_run if early.stopped else cfg.epochs) + 1)
            with contextlib.closing(self.runlog), epoch_faults(self.saver.last, self.log):
                for epoch in epochs:
                    train_terms, seconds = self.train_epoch(epoch)
                    validated = epoch % cfg.val_every == 0 or epoch == cfg.epochs
                    val_terms = self.validate() if validated else dict.fromkeys(train_terms, math.nan)
                    if validated and not math.isfinite(val_terms["loss"]):  # before anything is saved
                        raise nonfinite_loss("validation", val_terms["loss"], epoch, self.val_set,
                                             "validation_dataset_file")
                    watched = selected_loss(val_terms, self.objective.audio_terms, cfg.select_on)
                    if cfg.select_on != "sum":  # metrics.csv's val_selected: what picked best.pt
                        val_terms = {**val_terms, SELECTED: watched}
                    improved = early.update(epoch, watched) if validated else early.skip(epoch)
                    metrics = epoch_row(epoch, train_terms, val_terms, seconds,
                                        self.steps_per_epoch * cfg.batch_size, early.best_epoch)
                    self._save(epoch, val_terms["loss"], improved, metrics, train_terms, val_terms)
                    val_text = f"{val_terms['loss']:.4f}" if validated else "-"
                    if validated and cfg.select_on != "sum":
                        val_text += f" ({cfg.select_on} terms {watched:.4f})"
                    self.log(
                        f"epoch {epoch}/{cfg.epochs}  train {train_terms['loss']:.4f}  val {val_text}"
                        f"  {metrics['samples_per_s']:.1f} samples/s" + ("  (best)" if improved else "")
                    )
                    barrier(self.dist)
                    if early.stopped:
                        self.log(f"{cfg.experiment_name}: early stop at epoch {epoch}: validation loss "
                                 f"not improved for {cfg.patience} epochs (best epoch {early.best_epoch}, "
                                 f"{early.best_value:.4f})")
                        break
            self._export()
            return self._result(skipped=False, metrics=metrics)

    def _already_complete(self) -> bool:
        """True (and says so) when last.pt holds every epoch, or stopped early, and the
        export exists."""
        cfg, early, done = self.cfg, self.early, self.early.epochs_run
        if not ((done >= cfg.epochs or early.stopped) and self.saver.exported()):
            return False
        why = (f"stopped early at epoch {done}, best {early.best_epoch}" if early.stopped
               else f"{done}/{cfg.epochs} epochs")
        self.log(
            f"{cfg.experiment_name}: already complete ({why}) in {self.out_dir}; "
            "nothing to do (raise 'epochs', 'patience' or 'min_epochs' to train further)"
        )
        return True

    def _begin(self, ckpt: dict[str, Any] | None) -> None:
        """Setup: data, model, optimizer, the resume point `ckpt` (all checked before
        anything is written), then the run log."""
        cfg, done, last = self.cfg, self.early.epochs_run, self.saver.last
        self.setup()
        if ckpt is not None:
            check_model_args(ckpt, model_args(self.views), last)
            self.global_step, _ = restore(
                ckpt, self.model, self.optimizer, cfg, self.dist.rank, self.dist.world_size, last
            )
        runlog = self.runlog = RunLog(self.out_dir)
        info = self.run_info()
        earlier = runlog.begin(info, done if ckpt else None) if self.dist.is_main else None
        if earlier is not None:
            self.log(f"{cfg.experiment_name}: no {last.name} to resume from; earlier files moved to {earlier}")
        if ckpt is not None:
            self.log(f"{cfg.experiment_name}: resuming from {last} (epoch {done}/{cfg.epochs})")
        if info["provenance"]["data"] == "unknown":
            self.log(f"warning: no {MANIFEST} beside {cfg.train_dataset_file} (an interrupted "
                     "create_dataset?): data provenance unknown")
        if self.dist.is_main and done < cfg.epochs:
            runlog.tb_open(self.global_step if done else None)
        self.log(
            f"{cfg.experiment_name}: {self.objective.name}, {len(self.train_set)} train / {len(self.val_set)} val "
            f"tracks, {self.steps_per_epoch} steps x {cfg.batch_size} per epoch, device {self.device}"
            + (", bf16 autocast" if self.bf16 else "")
            + (f", {self.dist.world_size} processes" if self.dist.enabled else "")
        )

    def _save(self, epoch: int, val_loss: float, improved: bool, row: dict[str, float],
              train_terms: dict[str, float], val_terms: dict[str, float]) -> None:
        """The epoch's metrics row, TensorBoard scalars and checkpoints (save_policy.py)."""
        state = training_state(
            self.model, self.optimizer, self.cfg, epoch=epoch, global_step=self.global_step,
            best_val=self.early.best_value, val_loss=val_loss,
            rng_states=gather(self.dist, rng_state()),  # collective: every rank's RNG goes into rank 0's file
            model_args=model_args(self.views),
        )
        state["best_epoch"] = self.early.best_epoch  # early stopping resumes from it
        if self.dist.is_main:
            self.runlog.epoch(row, train_terms, val_terms, self.global_step)
            self.saver.save(state, epoch, improved)

    def _export(self) -> None:
        """The final audio encoder in the original format, and the final config.json."""
        sync_buffers(self.dist, self.model)
        check_ranks_agree(self.dist, self.model)
        if self.dist.is_main:
            final_audio, info = self.model.audio.state_dict(), self.run_info()
            self.saver.export(final_audio)
            self.runlog.write_config(info)
            self.log(f"{self.cfg.experiment_name}: done; audio encoder in {self.saver.audio_encoder}")
        barrier(self.dist)

    def _result(self, skipped: bool, metrics: dict[str, float]) -> FitResult:
        e = self.early
        return FitResult(self.out_dir, e.epochs_run, skipped, e.best_value, metrics, e.best_epoch, e.stopped)

    def run_info(self) -> dict[str, Any]:
        """config.json: the config, the data shapes, the provenance, the training summary."""
        return run_info(self.cfg, self.device, self.dist.world_size, self.bf16, model_args(self.views),
                        len(self.train_set), len(self.val_set), self.early.summary())

    # ---------------------------------------------------------------- setup --------
    def setup(self) -> None:
        """Datasets, model, optimizer. Separate from __init__ so that a complete run is
        recognised without reading data, and so benchmarks can drive single steps."""
        if self._setup_done:
            return
        cfg = self.cfg
        self.views, self.train_set, self.val_set = open_splits(cfg, self.objective.fields)
        self.steps_per_epoch = loaders.steps_per_epoch(len(self.train_set), self.dist, self.local_batch, cfg)
        # Same seed -> same initial weights on every rank (DDP also broadcasts rank 0's).
        torch.manual_seed(cfg.seed)
        self.model = build_model(self.views, cfg.views, cfg.targets).to(self.device)
        # The training stream (dropout) gets its own seed per rank.
        torch.manual_seed(cfg.seed + 1 + self.dist.rank)
        self.ddp_model: nn.Module = wrap_ddp(self.model, self.dist, self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.learning_rate,
                                          weight_decay=cfg.weight_decay)
        self._setup_done = True

    def train_loader(self, epoch: int) -> DataLoader:
        """The DataLoader of one epoch: shuffle and crops fixed by (seed, epoch)."""
        return loaders.train_loader(self.train_set, self.dist, self.cfg, self.local_batch, self.device, epoch)

    def val_loader(self) -> DataLoader:
        return loaders.val_loader(self.val_set, self.dist, self.cfg, self.local_batch, self.device)

    # ---------------------------------------------------------------- steps --------
    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        nb = self.device.type == "cuda"
        return {k: v.to(self.device, non_blocking=nb) for k, v in batch.items()}

    def forward_loss(
        self, batch: dict[str, torch.Tensor], model: nn.Module | None = None
    ) -> dict[str, torch.Tensor]:
        model = model or self.ddp_model
        autocast = (torch.autocast(device_type=self.device.type, dtype=torch.bfloat16) if self.bf16
                    else contextlib.nullcontext())
        with autocast:
            return self.objective(model(batch), batch)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One optimizer step on a batch from the loader; returns detached loss terms."""
        batch = self.to_device(batch)
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

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        sync_buffers(self.dist, self.model)
        self.model.eval()
        sums: dict[str, torch.Tensor] = {}
        count = torch.zeros((), dtype=torch.float64, device=self.device)
        loader = self.val_loader()
        # A full-size val split takes many minutes (about 17 at Melon's size on 2 cores).
        for batch in tqdm(loader, total=len(loader), desc="validation", disable=not self.dist.is_main,
                          dynamic_ncols=True, leave=False):
            batch = self.to_device(batch)
            n = batch["audio"].shape[0]
            terms = self.forward_loss(batch, model=self.model)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0) + v.double() * n
            count += n
        self.model.train()
        keys = list(sums)  # the objective's order, the same on every rank
        vec = sum_over_ranks(self.dist, torch.stack([sums[k] for k in keys] + [count]))
        return {k: float(vec[i] / vec[-1]) for i, k in enumerate(keys)}

    def train_epoch(self, epoch: int) -> tuple[dict[str, float], float]:
        """Returns (mean of every loss term, seconds spent)."""
        self.model.train()
        loader = self.train_loader(epoch)
        sums: dict[str, torch.Tensor] = {}
        bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {epoch}/{self.cfg.epochs}",
                   disable=not self.dist.is_main, dynamic_ncols=True, leave=False)
        t0 = time.perf_counter()
        recent: list[torch.Tensor] = []  # rows since the last check: where a NaN came from
        for step, batch in enumerate(loaders.take(loader, self.steps_per_epoch), start=1):
            recent.append(batch["index"])
            terms = self.train_step(batch)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0) + v.float()
            if step % self.cfg.log_interval == 0 or step == self.steps_per_epoch:
                running = {k: float(v) / step for k, v in sums.items()}
                if not math.isfinite(running["loss"]):
                    bar.close()
                    rows = torch.cat(recent).tolist()
                    raise nonfinite_loss("training", running["loss"], epoch, self.train_set,
                                         "train_dataset_file", rows)
                recent.clear()
                bar.set_postfix(loss=f"{running['loss']:.4f}")
                self.runlog.step_scalars(terms, self.global_step)
            bar.update(1)
        seconds = time.perf_counter() - t0
        bar.close()
        return {k: float(v) / self.steps_per_epoch for k, v in sums.items()}, seconds
