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
from musicrep.training.early_stopping import EarlyStopping, selected_loss

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


MF_GNR = str(REPO / "configs" / "contrastive_MF_gnr.json")


def test_select_on_must_be_a_known_choice():
    raw = {"experiment_name": "x", "train_dataset_file": "a", "validation_dataset_file": "b",
           "objective": "contrastive", "encoder": "MF_gnr", "select_on": "genre"}
    with pytest.raises(ConfigError, match="'select_on' is \"genre\"; valid: \"sum\", \"audio\""):
        build_config(raw, check_files=False)


def test_audio_selection_can_pick_another_epoch_than_the_sum():
    """The watched loss under "audio" leaves out the terms without the audio view: when
    only ntxent_cf_genre keeps falling, the sum's best epoch is the last, the audio
    terms' is the first."""
    epochs = [  # ntxent_audio_genre, ntxent_audio_cf, ntxent_cf_genre per epoch
        (2.0, 2.0, 4.0), (2.1, 2.0, 3.0), (2.1, 2.1, 2.0)]
    audio_terms = ("ntxent_audio_genre", "ntxent_audio_cf")
    best = {}
    for select_on in ("sum", "audio"):
        early = EarlyStopping(patience=None, min_epochs=0, max_epochs=3, select_on=select_on)
        for e, (ag, ac, cg) in enumerate(epochs, 1):
            terms = {"loss": ag + ac + cg, "ntxent_audio_genre": ag, "ntxent_audio_cf": ac,
                     "ntxent_cf_genre": cg}
            early.update(e, selected_loss(terms, audio_terms, select_on))
        best[select_on] = (early.best_epoch, early.summary()["best_val_loss"], early.summary()["select_on"])
    assert best == {"sum": (3, pytest.approx(6.2), "sum"), "audio": (1, pytest.approx(4.0), "audio")}


def test_audio_selection_in_a_run(dataset, tmp_path):
    """A contrastive_MF_gnr run with select_on "audio": metrics.csv keeps the summed
    val_loss and adds val_selected, the sum of the two terms with the audio view
    (ntxent_cf_genre left out); best_epoch, best.pt and config.json's best_val_loss
    follow val_selected. A default run has no val_selected column."""
    args = [MF_GNR] + tiny(dataset, tmp_path, epochs=4, learning_rate=1.0, select_on="audio")
    assert main("train.py", args) == 0
    run = tmp_path / "contrastive_MF_gnr"
    rows = _rows(run)
    selected = [float(r["val_selected"]) for r in rows]
    for r, s in zip(rows, selected):
        assert s == pytest.approx(float(r["val_ntxent_audio_genre"]) + float(r["val_ntxent_audio_cf"]))
        assert float(r["val_loss"]) == pytest.approx(s + float(r["val_ntxent_cf_genre"]), rel=1e-5)
    info = json.loads((run / "config.json").read_text())["training"]
    assert info["select_on"] == "audio" and info["best_val_loss"] == pytest.approx(min(selected))
    assert info["best_epoch"] == 1 + selected.index(min(selected))
    assert load_checkpoint(run / "best.pt")["epoch"] == info["best_epoch"]

    plain = [MF_GNR] + tiny(dataset, tmp_path / "sum", epochs=1)
    assert main("train.py", plain) == 0
    row = _rows(tmp_path / "sum" / "contrastive_MF_gnr")[0]
    assert "val_selected" not in row and "val_loss" in row
