"""Real learning checks on the planted generated corpus, through the real scripts.

The corpus plants genre in the audio (spectral envelope, rhythm, detail signatures) and
genre and mood in the playlists. Two levels:

- default suite: a short contrastive run on the shared tiny dataset lowers its
  validation loss (every term together) within a few epochs;
- slow (`make test-slow`): at the demo's scale, the audio terms themselves fall and the
  trained encoder separates genres better than the same CNN at random initialisation.
  The CNN needs a few hundred steps on a corpus of a few thousand tracks before its
  audio terms leave chance level; on a few hundred tracks it memorises tracks instead.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from musicrep.cli.train import main
from musicrep.data.builder import DatasetArgs, create_dataset
from musicrep.evaluation.data import load_eval_data
from musicrep.evaluation.run import run_evaluation
from musicrep.data.genre_w2v import train_from_dataset
from musicrep.toy.melon import make_toy_melon


def _train(dataset: Path, save_dir: Path, *overrides: str) -> Path:
    argv = [
        "configs/contrastive_MF_gnr.json", "--set",
        f"train_dataset_file={dataset / 'train.h5'}",
        f"validation_dataset_file={dataset / 'val.h5'}",
        f"save_dir={save_dir}", "width=0.25", "num_workers=0", *overrides,
    ]
    assert main("train.py", argv) == 0
    return save_dir / "contrastive_MF_gnr"


def _column(run: Path, key: str) -> list[float]:
    with open(run / "metrics.csv") as f:
        return [float(r[key]) for r in csv.DictReader(f)]


def test_contrastive_run_lowers_validation_loss(tiny_dataset, tmp_path):
    run = _train(tiny_dataset, tmp_path, "epochs=4", "batch_size=16")
    val = _column(run, "val_loss")
    assert len(val) == 4
    assert val[-1] < 0.9 * val[0], val


@pytest.fixture(scope="module")
def demo_scale(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("learn")
    make_toy_melon(root / "melon", songs=2000, playlists=1000, frames=1400, seed=0)
    data = root / "dataset"
    create_dataset(DatasetArgs(str(root / "melon"), str(data), cf_epochs=50, workers=2))
    train_from_dataset(data)
    # The demo's budget (Makefile DEMO_EPOCHS, DEMO_BATCH, DEMO_LR; bf16 "auto" by default).
    run = _train(data, root / "runs", "epochs=15", "batch_size=32", "learning_rate=1e-3")
    return data, run


@pytest.mark.slow
def test_audio_losses_fall_at_demo_scale(demo_scale):
    _, run = demo_scale
    for term in ("val_ntxent_audio_genre", "val_ntxent_audio_cf"):
        val = _column(run, term)
        assert min(val[-2:]) < 0.95 * val[1], (term, val)


@pytest.mark.slow
def test_trained_encoder_beats_random_init(demo_scale):
    data, run = demo_scale
    result = run_evaluation(load_eval_data(data), [run / "audio_encoder.pt"],
                            names=["contrastive"], seed=0, progress=False)
    rows = {r["model"]: r for r in result.rows}
    trained, random = rows["contrastive"], rows["random-init"]
    assert trained["genre_roc_auc"] > random["genre_roc_auc"] + 0.05, rows
    assert trained["ndcg@100"] > random["ndcg@100"], rows
