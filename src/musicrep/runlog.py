"""What a training run writes besides checkpoints: config.json (with provenance),
metrics.csv, TensorBoard scalars and the exported audio encoder. Main process only.

config.json holds the config, the data shapes, and `provenance` (the shared contract
with encode/explorer/report, who read `provenance.data` and treat a missing key as
"unknown"):

    {"data": "generated" | "real" | "unknown", "dataset_manifest": path | null,
     "generator": {...} | null, "train_tracks": int, "val_tracks": int,
     "epochs": int, "width": float}

"unknown" when no manifest.json sits beside the train file.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import torch

from .checkpoint import export_audio_encoder, load_checkpoint


def provenance(train_file: str | Path, train_tracks: int, val_tracks: int, epochs: int, width: float) -> dict[str, Any]:
    """The run's provenance from the dataset's manifest.json (see the module docstring)."""
    manifest = Path(train_file).with_name("manifest.json")
    data, generator, manifest_path = "unknown", None, None
    if manifest.is_file():
        manifest_path = str(manifest)
        try:
            source = json.loads(manifest.read_text()).get("source")
        except (OSError, ValueError, AttributeError):
            source = None
        if isinstance(source, dict) and "generated" in source:
            data = "generated" if source["generated"] else "real"
            generator = source.get("generator") if source["generated"] else None
        elif isinstance(source, str):  # older manifests: the Melon directory as given
            marker = Path(source) / "generated.json"
            if marker.is_file():
                data = "generated"
                try:
                    generator = json.loads(marker.read_text())
                except (OSError, ValueError):
                    generator = None
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

    def write_config(self, info: dict[str, Any]) -> None:
        """config.json, atomically."""
        tmp = self.out_dir / ".config.json.tmp"
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        os.replace(tmp, self.out_dir / "config.json")

    def keep_metrics_upto(self, epoch: int) -> None:
        """Drop metrics rows after `epoch` (left by an interrupted run) before resuming."""
        if not self.metrics.is_file():
            return
        with open(self.metrics, newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            return
        kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= epoch]
        with open(self.metrics, "w", newline="") as f:
            csv.writer(f).writerows(kept)

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
        """audio_encoder.pt (final), audio_encoder_best.pt (from best.pt), config.json."""
        export_audio_encoder(final_audio, self.out_dir / "audio_encoder.pt")
        best = self.out_dir / "best.pt"
        if best.is_file():
            export_audio_encoder(load_checkpoint(best)["models"]["audio"], self.out_dir / "audio_encoder_best.pt")
        self.write_config(info)
