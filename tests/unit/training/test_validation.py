"""Validation that scales: `val_every` and `max_val_tracks` (a seeded subset: the same
tracks every epoch and after a resume)."""

from __future__ import annotations

import csv
import math
import subprocess
import sys

import numpy as np
import pytest

from musicrep.errors import ConfigError
from musicrep.training.config import build_config
from musicrep.training.loaders import val_subset
from musicrep.training.trainer import Trainer
from tests.helpers import REPO
from tests.helpers.synth import write_synthetic_dataset
from tests.helpers.training import tiny


def test_val_subset_is_seeded_and_bounded():
    a, b = val_subset(100, 10, seed=3), val_subset(100, 10, seed=3)
    assert a is not None and np.array_equal(a, b) and len(a) == 10 == len(set(a.tolist()))
    assert np.all(np.diff(a) > 0) and a.max() < 100
    assert not np.array_equal(a, val_subset(100, 10, seed=4))
    assert val_subset(100, None, 0) is None and val_subset(10, 10, 0) is None


def _config(ds, runs, **kw) -> dict:
    return {"experiment_name": "val", "train_dataset_file": str(ds / "train.h5"),
            "validation_dataset_file": str(ds / "val.h5"), "save_dir": str(runs), "encoder": "MF",
            "objective": "contrastive", "width": 0.125, "batch_size": 8, "num_workers": 0,
            "device": "cpu", "max_steps_per_epoch": 2, **kw}


def test_subset_validation_reads_only_the_subset(tmp_path):
    ds = write_synthetic_dataset(tmp_path / "ds", n_train=32, n_val=16, frames=280)
    tr = Trainer(build_config(_config(ds, tmp_path / "runs", max_val_tracks=5), script="single_train.py"),
                 log=lambda m: None)
    tr.setup()
    seen = [int(i) for b in tr.val_loader() for i in b["index"]]
    assert seen == val_subset(16, 5, 0).tolist()
    full = Trainer(build_config(_config(ds, tmp_path / "runs2"), script="single_train.py"), log=lambda m: None)
    full.setup()
    assert sum(len(b["index"]) for b in full.val_loader()) == 16


@pytest.mark.parametrize("key", ["val_every", "max_val_tracks"])
def test_zero_is_refused(tmp_path, key):
    ds = write_synthetic_dataset(tmp_path / "ds", n_train=16, n_val=8, frames=280)
    with pytest.raises(ConfigError, match=key):
        build_config(_config(ds, tmp_path / "runs", **{key: 0}), script="single_train.py")


def _metrics(run) -> list[dict]:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_val_every_validates_on_schedule_and_resumes_the_same(tmp_path):
    ds = write_synthetic_dataset(tmp_path / "ds", n_train=32, n_val=16, frames=280)
    cfg = str(REPO / "configs" / "contrastive_MF.json")

    def train(save, epochs):
        args = tiny(ds, save, epochs=epochs, val_every=2, max_val_tracks=6)
        r = subprocess.run([sys.executable, str(REPO / "single_train.py"), cfg, *args],
                           capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
        assert r.returncode == 0, r.stderr[-2000:]
        return save / "contrastive_MF"

    straight = train(tmp_path / "a", 3)
    rows = _metrics(straight)
    assert [math.isnan(float(r["val_loss"])) for r in rows] == [True, False, False]  # 1 skipped, 2 and last
    assert [int(r["best_epoch"]) for r in rows] == [0, 2, int(rows[2]["best_epoch"])]
    # 1 epoch (validated: the run's last), then resumed to 3: the same subset and the same
    # training, so epochs 2 and 3 match the straight run exactly
    train(tmp_path / "b", 1)
    resumed = _metrics(train(tmp_path / "b", 3))
    assert not math.isnan(float(resumed[0]["val_loss"]))
    assert [r["val_loss"] for r in resumed[1:]] == [r["val_loss"] for r in rows[1:]]
