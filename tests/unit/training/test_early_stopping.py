"""Early stopping: `patience` stops a run once validation loss stalls; the best-by-validation
model is what best.pt and audio_encoder_best.pt hold; a stopped run counts as complete."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from musicrep.training.checkpoint import load_checkpoint
from musicrep.cli.train import main
from musicrep.errors import ConfigError
from musicrep.training.config import build_config

from tests.helpers import REPO
from tests.helpers.synth import write_synthetic_dataset
from tests.helpers.training import tiny

CONFIG = str(REPO / "configs" / "contrastive_MF.json")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("synth"), n_train=32, n_val=12, n_test=4)


def _rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_patience_must_be_positive():
    raw = {"experiment_name": "x", "train_dataset_file": "a", "validation_dataset_file": "b",
           "objective": "contrastive", "encoder": "MF", "patience": 0}
    with pytest.raises(ConfigError, match="'patience' must be > 0"):
        build_config(raw, check_files=False)


def test_stops_when_validation_stalls_and_keeps_the_best(dataset, tmp_path, capsys):
    # lr 1.0 makes Adam jump around: the validation loss stops improving within a few
    # epochs, so patience 1 ends the run well before the 12-epoch maximum.
    args = [CONFIG] + tiny(dataset, tmp_path, epochs=12, patience=1, learning_rate=1.0)
    assert main("single_train.py", args) == 0
    run = tmp_path / "contrastive_MF"
    rows = _rows(run)
    val = [float(r["val_loss"]) for r in rows]
    info = json.loads((run / "config.json").read_text())["training"]
    n, best = len(rows), info["best_epoch"]
    assert info["stopped_early"] and n == info["epochs_run"] < 12
    assert best == 1 + val.index(min(val)) and n - best == 1  # stopped `patience` after the best
    assert all(v >= min(val) for v in val[best:])
    assert [int(r["best_epoch"]) for r in rows][-1] == best
    assert info["best_val_loss"] == pytest.approx(min(val))

    ckpt_best, ckpt_last = load_checkpoint(run / "best.pt"), load_checkpoint(run / "last.pt")
    assert ckpt_best["epoch"] == best and ckpt_last["epoch"] == n and ckpt_last["best_epoch"] == best
    exported = torch.load(run / "audio_encoder_best.pt", weights_only=True)
    for k, v in ckpt_best["models"]["audio"].items():
        assert torch.equal(exported[k], v)
    final = torch.load(run / "audio_encoder.pt", weights_only=True)
    assert any(not torch.equal(final[k], v) for k, v in ckpt_best["models"]["audio"].items())

    # The stopped run is complete: a rerun does nothing.
    capsys.readouterr()
    assert main("single_train.py", args) == 0
    assert "already complete (stopped early" in capsys.readouterr().out
    assert len(_rows(run)) == n

    # More patience resumes it from last.pt (it is not complete for that setting).
    more = [CONFIG] + tiny(dataset, tmp_path, epochs=n + 1, patience=50, learning_rate=1.0)
    assert main("single_train.py", more) == 0
    assert [int(r["epoch"]) for r in _rows(run)] == list(range(1, n + 2))


def test_without_patience_all_epochs_run(dataset, tmp_path):
    args = [CONFIG] + tiny(dataset, tmp_path, epochs=3, learning_rate=1.0)
    assert main("single_train.py", args) == 0
    info = json.loads((tmp_path / "contrastive_MF" / "config.json").read_text())["training"]
    assert info["epochs_run"] == 3 and not info["stopped_early"] and info["patience"] is None


def test_no_early_stop_before_min_epochs(dataset, tmp_path):
    """A run whose loss stalls early is not stopped before `min_epochs`; after that,
    `patience` decides as usual. Raising `min_epochs` over a stopped run resumes it."""
    short = [CONFIG] + tiny(dataset, tmp_path, epochs=12, patience=1, learning_rate=1.0)
    assert main("single_train.py", short) == 0
    run = tmp_path / "contrastive_MF"
    stopped_at = len(_rows(run))
    assert stopped_at < 6  # patience 1 alone stops this run early (as the test above)

    longer = [CONFIG] + tiny(dataset, tmp_path, epochs=12, patience=1, min_epochs=6, learning_rate=1.0)
    assert main("single_train.py", longer) == 0
    rows = _rows(run)
    val = [float(r["val_loss"]) for r in rows]
    info = json.loads((run / "config.json").read_text())["training"]
    n = len(rows)
    assert [int(r["epoch"]) for r in rows] == list(range(1, n + 1))  # resumed, not restarted
    assert n == info["epochs_run"] >= 6 and info["min_epochs"] == 6
    # it stops at the first epoch >= 6 that is `patience` past the best so far (or at the cap)
    best_so_far = [1 + val.index(min(val[:e])) for e in range(1, n + 1)]
    expect = next((e for e in range(6, 13) if e <= n and e - best_so_far[e - 1] >= 1), 12)
    assert n == expect and info["stopped_early"] == (n < 12)


def test_min_epochs_must_not_be_negative():
    raw = {"experiment_name": "x", "train_dataset_file": "a", "validation_dataset_file": "b",
           "objective": "contrastive", "encoder": "MF", "min_epochs": -1}
    with pytest.raises(ConfigError, match="'min_epochs' must be >= 0"):
        build_config(raw, check_files=False)
