"""Tiny trainings for tests: `--set` overrides that make a run take seconds on the CPU,
and a run trained straight versus stopped and resumed (the resume checks)."""

from __future__ import annotations

import json
from pathlib import Path

from musicrep.cli.train import main
from musicrep.training.checkpoint import load_checkpoint

from tests.helpers import REPO


def tiny(ds: Path, save_dir: Path, **kw) -> list[str]:
    """`--set` arguments for a width-0.125, 1-epoch, 2-step CPU run on the dataset ``ds``,
    saving under ``save_dir``; ``kw`` overrides or adds keys."""
    values = {
        "train_dataset_file": str(ds / "train.h5"),
        "validation_dataset_file": str(ds / "val.h5"),
        "save_dir": str(save_dir),
        "width": 0.125,
        "batch_size": 8,
        "epochs": 1,
        "max_steps_per_epoch": 2,
        "num_workers": 0,
        "save_model_every": 1,
        "log_interval": 1,
        "device": "cpu",
    }
    values.update(kw)
    return ["--set"] + [
        f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in values.items()
    ]


def train_straight_and_resumed(ds: Path, tmp_path: Path, name: str, script: str, steps: int) -> tuple[dict, dict]:
    """configs/<name>.json for 2 epochs straight, and for 1 epoch then resumed to 2;
    returns both final last.pt checkpoints."""
    cfg = str(REPO / "configs" / f"{name}.json")
    straight, resumed = tmp_path / "a", tmp_path / "b"
    assert main(script, [cfg] + tiny(ds, straight, epochs=2, max_steps_per_epoch=steps)) == 0
    assert main(script, [cfg] + tiny(ds, resumed, epochs=1, max_steps_per_epoch=steps)) == 0
    assert main(script, [cfg] + tiny(ds, resumed, epochs=2, max_steps_per_epoch=steps)) == 0
    return tuple(load_checkpoint(d / name / "last.pt") for d in (straight, resumed))
