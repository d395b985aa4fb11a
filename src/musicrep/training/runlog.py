"""What a training run writes besides checkpoints: config.json (with provenance),
metrics.csv, TensorBoard scalars and the exported audio encoder. Main process only.

config.json holds the config, the data shapes, and `provenance` (the shared contract
with encode/explorer/report, who read `provenance.data` and treat a missing key as
"unknown"):

    {"data": "generated" | "real" | "unknown", "dataset_manifest": path | null,
     "generator": {...} | null, "train_tracks": int, "val_tracks": int,
     "epochs": int, "width": float}

"unknown" when no manifest.json sits beside the train file.

Nothing of an earlier run is lost: config.json and metrics.csv are rewritten atomically,
and a fresh start in a folder that holds an earlier attempt's files (no last.pt to
resume from) moves them into `earlier_N/` first (`set_aside_earlier`).
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .checkpoint import export_audio_encoder, load_checkpoint
from ..errors import ConfigError
from ..layout import MANIFEST, corpus_origin
from ..io import atomic_path

# What a run writes into its folder (set aside as a whole by a fresh start).
RUN_FILES = ("config.json", "metrics.csv", "tb", "last.pt", "best.pt", "epoch_*.pt", "audio_encoder*.pt")


def check_writable(out_dir: Path) -> None:
    """Create the run folder and check a file can be written in it; ConfigError naming
    save_dir otherwise (before any data is read)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as e:
        why = e.strerror or e
        raise ConfigError(f"config key 'save_dir': cannot write the run folder {out_dir} ({why})") from None


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


class RunLog:
    """The run directory's log files. `tb_open` starts TensorBoard (purging steps after
    a resume point), `close` ends it."""

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self.metrics = self.out_dir / "metrics.csv"
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
        with atomic_path(self.out_dir / "config.json") as tmp:
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
        found = sorted({p for pattern in RUN_FILES for p in self.out_dir.glob(pattern)})
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

        self.writer = SummaryWriter(str(self.out_dir / "tb"), purge_step=resume_step)

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
                    self.writer.add_scalar(f"{prefix}/{k}", v, step)
            self.writer.add_scalar("samples_per_s", row["samples_per_s"], step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.writer = None

    def export(self, final_audio: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        """audio_encoder.pt (final), audio_encoder_best.pt (from best.pt), config.json.
        best.pt is read first: a damaged one stops the export before anything is written."""
        best, best_audio = self.out_dir / "best.pt", None
        if best.is_file():
            try:
                best_audio = load_checkpoint(best)["models"]["audio"]
            except (ValueError, KeyError) as e:  # damaged since it was written
                why = str(e) if isinstance(e, ValueError) else f"{best}: no audio part"
                raise ConfigError(f"{why}; remove it and rerun to export without it") from None
        export_audio_encoder(final_audio, self.out_dir / "audio_encoder.pt")
        if best_audio is not None:
            export_audio_encoder(best_audio, self.out_dir / "audio_encoder_best.pt")
        self.write_config(info)
