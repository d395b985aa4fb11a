"""What a training run writes besides checkpoints: config.json (with provenance),
metrics.csv, TensorBoard scalars (main process only); and the guards of the run folder
(`check_writable`, `run_lock`) taken before anything is written.

config.json holds the config, the data shapes (`run_info`), and `provenance` (the shared
contract with encode/explorer/report, who read `provenance.data` and treat a missing key
as "unknown"):

    {"data": "generated" | "real" | "unknown", "dataset_manifest": path | null,
     "generator": {...} | null, "train_tracks": int, "val_tracks": int,
     "epochs": int, "width": float}

"unknown" when no manifest.json sits beside the train file.

Nothing of an earlier run is lost: config.json and metrics.csv are rewritten atomically,
and a fresh start in a folder that holds an earlier attempt's files (no last.pt to
resume from) moves them into `earlier_N/` first (`set_aside_earlier`).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from ..io import OutputLocked, atomic_path, output_lock, write_error
from ..layout import MANIFEST, corpus_origin
from ..settings import TrainConfig
from . import run_files
from .distributed import DistContext, from_main


def check_writable(out_dir: Path) -> None:
    """Create the run folder and check a file can be written in it; ConfigError naming
    save_dir otherwise (before any data is read)."""
    e = write_error(out_dir)
    if e is not None:
        why = e.strerror or e
        raise ConfigError(f"config key 'save_dir': cannot write the run folder {out_dir} ({why})")


@contextlib.contextmanager
def run_lock(out_dir: Path, ctx: DistContext) -> Iterator[None]:
    """The main process locks the run folder (io.output_lock) so that a second run into
    it stops at once; every rank learns the outcome, so a refused run stops on all."""
    with contextlib.ExitStack() as stack:
        refused = None
        if ctx.is_main:
            try:
                stack.enter_context(output_lock(out_dir))
            except OutputLocked as e:
                refused = str(e)
        refused = from_main(ctx, refused)
        if refused:
            raise ConfigError(f"config key 'experiment_name': {refused}")
        yield


def provenance(train_file: str | Path, train_tracks: int, val_tracks: int, epochs: int, width: float) -> dict[str, Any]:
    """The run's provenance from the dataset's manifest.json (see the module docstring)."""
    manifest = Path(train_file).with_name(MANIFEST)
    data, generator, manifest_path = "unknown", None, None
    if manifest.is_file():
        manifest_path = str(manifest)
        try:
            content = json.loads(manifest.read_text())
        except (OSError, ValueError):
            content = None
        if isinstance(content, dict):
            data, generator = corpus_origin(content)
    return {
        "data": data,
        "dataset_manifest": manifest_path,
        "generator": generator,
        "train_tracks": int(train_tracks),
        "val_tracks": int(val_tracks),
        "epochs": int(epochs),
        "width": float(width),
    }


def run_info(cfg: TrainConfig, device: torch.device, world_size: int, bf16: bool,
             model_args: dict[str, Any], train_tracks: int, val_tracks: int,
             training: dict[str, Any]) -> dict[str, Any]:
    """config.json: the config, the data shapes, the provenance, `training` (the early
    stopping summary)."""
    info = cfg.to_dict()
    info.update(device_resolved=str(device), world_size=world_size, bf16_resolved=bf16)
    info.update(model_args)
    info["provenance"] = provenance(cfg.train_dataset_file, train_tracks, val_tracks, cfg.epochs, cfg.width)
    info["training"] = training
    return info


def epoch_row(epoch: int, train: dict[str, float], val: dict[str, float], seconds: float,
              samples: int, best_epoch: int) -> dict[str, float]:
    """An epoch's metrics.csv row: every loss term train/val, time, samples/s, best epoch."""
    row: dict[str, float] = {"epoch": epoch}
    row.update({f"train_{k}": v for k, v in train.items()})
    row.update({f"val_{k}": v for k, v in val.items()})
    row.update(time_s=round(seconds, 3), samples_per_s=round(samples / max(seconds, 1e-9), 2))
    row["best_epoch"] = best_epoch
    return row


class RunLog:
    """The run directory's log files. `tb_open` starts TensorBoard (purging steps after
    a resume point), `close` ends it."""

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self.metrics = self.out_dir / run_files.METRICS
        self.writer = None

    def begin(self, info: dict[str, Any], resume_epoch: int | None) -> Path | None:
        """Start writing, once every check has passed: a fresh start (`resume_epoch`
        None) first sets an earlier attempt's files aside (returns where to); a resume
        drops the metrics rows after `resume_epoch`. Then config.json."""
        earlier = self.set_aside_earlier() if resume_epoch is None else None
        if resume_epoch is not None:
            self.keep_metrics_upto(resume_epoch)
        self.write_config(info)
        return earlier

    def write_config(self, info: dict[str, Any]) -> None:
        """config.json, atomically."""
        with atomic_path(self.out_dir / run_files.CONFIG) as tmp:
            tmp.write_text(json.dumps(info, indent=2) + "\n")

    def keep_metrics_upto(self, epoch: int) -> None:
        """Drop metrics rows after `epoch` (left by an interrupted run, or torn by a full
        disk) before resuming; the file is replaced atomically."""
        if not self.metrics.is_file():
            return
        with open(self.metrics, newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            return
        kept = [rows[0]] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= epoch
                            and len(r) == len(rows[0])]
        with atomic_path(self.metrics) as tmp, open(tmp, "w", newline="") as f:
            csv.writer(f).writerows(kept)

    def set_aside_earlier(self) -> Path | None:
        """Before a fresh start (no last.pt): move what an earlier attempt left (a crash
        before its first checkpoint, or a run whose last.pt was removed) into a new
        `earlier_N/`, so that nothing is overwritten or mixed into the new metrics.
        Returns that folder, None when there was nothing."""
        found = sorted({p for pattern in run_files.RUN_FILES for p in self.out_dir.glob(pattern)})
        if not found:
            return None
        n = 1
        while (self.out_dir / f"earlier_{n}").exists():
            n += 1
        keep = self.out_dir / f"earlier_{n}"
        keep.mkdir()
        for p in found:
            os.rename(p, keep / p.name)
        return keep

    def tb_open(self, resume_step: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.out_dir / run_files.TENSORBOARD), purge_step=resume_step)

    def step_scalars(self, terms: dict[str, Any], step: int) -> None:
        if self.writer is not None:
            for k, v in terms.items():
                self.writer.add_scalar(f"train_step/{k}", float(v), step)

    def epoch(self, row: dict[str, float], train: dict[str, float], val: dict[str, float], step: int) -> None:
        """One metrics.csv row and the epoch's TensorBoard scalars."""
        new = not self.metrics.is_file() or self.metrics.stat().st_size == 0
        with open(self.metrics, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)
        if self.writer is not None:
            for prefix, terms in (("train", train), ("val", val)):
                for k, v in terms.items():
                    if v == v:  # not NaN: an epoch without validation (val_every) has none
                        self.writer.add_scalar(f"{prefix}/{k}", v, step)
            self.writer.add_scalar("samples_per_s", row["samples_per_s"], step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.writer = None
