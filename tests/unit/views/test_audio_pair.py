"""The audio-audio view (audio2): two crops of one track, their augmentation (seeded,
only in runs with the view), training and resuming through the real trainer, its
combinations with the other views, and its one-line config errors."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from musicrep.cli.train import main
from musicrep.data.h5io import read_split_info
from musicrep.training.checkpoint import load_checkpoint
from musicrep.training.config import build_config, load_config
from musicrep.training.dataset import TrackDataset
from musicrep.training.objectives import make_objective
from musicrep.views import make_views
from musicrep.views.audio_pair import second_starts

from tests.helpers import REPO
from tests.helpers.synth import write_synthetic_dataset
from tests.helpers.training import tiny, train_straight_and_resumed

CONFIG = REPO / "configs" / "contrastive_audio.json"
FRAMES, CROP = 300, 256
NO_AUG = {"aug_gain_db": 0.0, "aug_filter_db": 0.0, "aug_noise_db": 0.0}


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return write_synthetic_dataset(
        tmp_path_factory.mktemp("pair"), n_train=24, n_val=8, n_test=4, frames=280
    )


@pytest.fixture(scope="module")
def coded(tmp_path_factory) -> Path:
    """A split whose every value says where it is: track * 1000 + frame (+ band / 100)."""
    path = tmp_path_factory.mktemp("coded") / "train.h5"
    n = 12
    data = (
        np.arange(n)[:, None, None] * 1000.0
        + np.arange(FRAMES)[None, :, None]
        + np.arange(48)[None, None, :] / 100.0
    ).astype(np.float32)  # (n, frames, 48)
    with h5py.File(path, "w") as f:
        g = f.create_group("dataset")
        g["id"] = np.arange(n, dtype=np.int32)[:, None]
        g["data"] = data
        g["label"] = np.full((n, 100), -1, dtype=np.int16)
    return path


def pair_dataset(path: Path, train: bool = True, **keys) -> TrackDataset:
    raw = {
        "experiment_name": "x",
        "train_dataset_file": str(path),
        "validation_dataset_file": str(path),
        "objective": "contrastive",
        "views": ["audio", "audio2"],
    } | keys
    cfg = build_config(raw, check_files=False)
    views = make_views(cfg, read_split_info(path))
    return TrackDataset(path, views, make_objective(cfg).fields, train=train)


def where(crop: torch.Tensor) -> tuple[set[int], int]:
    """(tracks, first frame) a crop of the coded split was read from."""
    tracks = set((crop[:, 0] // 1000).long().tolist())
    return tracks, int(crop[0, 0] % 1000)


def test_two_crops_come_from_the_same_track_at_other_positions(coded):
    ds = pair_dataset(coded, aug_min_shift=10, **NO_AUG)
    ds.set_epoch(1)
    moved = 0
    for i in range(len(ds)):
        item = ds[i]
        assert set(item) == {"audio", "audio2", "index"} and item["audio2"].shape == (CROP, 48)
        (ta, sa), (tb, sb) = where(item["audio"]), where(item["audio2"])
        assert ta == tb == {i}  # the same track, a contiguous crop each
        assert torch.equal(
            item["audio2"][:, 0] % 1000, torch.arange(sb, sb + CROP, dtype=torch.float32)
        )
        assert abs(sa - sb) >= 10
        moved += sa != sb
    assert moved == len(ds)
    # the first crop is exactly the audio view's usual crop (no augmentation configured)
    assert all(where(ds[i]["audio"])[1] == ds.readers[0].starts[i] for i in range(len(ds)))


def test_second_starts_keep_apart_and_cover_every_allowed_position():
    span, rng = 45, np.random.default_rng(0)
    first = np.repeat(np.arange(span), 400)
    for gap in (0, 1, 7, span // 2):
        s = second_starts(first, span, gap, rng)
        assert s.min() >= 0 and s.max() < span and (np.abs(s - first) >= gap).all()
        for f0 in (0, span // 2, span - 1):  # every allowed position is drawn
            allowed = {p for p in range(span) if abs(p - f0) >= gap}
            assert set(s[first == f0].tolist()) == allowed


def test_augmentation_is_seeded_and_changes_both_crops(coded):
    def items(seed: int, epoch: int, **keys) -> list[dict]:
        ds = pair_dataset(coded, seed=seed, **keys)
        ds.set_epoch(epoch)
        return [ds[i] for i in range(4)]

    a, again, other_seed, other_epoch = items(0, 1), items(0, 1), items(1, 1), items(0, 2)
    for field in ("audio", "audio2"):
        assert all(torch.equal(x[field], y[field]) for x, y in zip(a, again))
        assert not any(torch.equal(x[field], y[field]) for x, y in zip(a, other_seed))
        assert not any(torch.equal(x[field], y[field]) for x, y in zip(a, other_epoch))
    plain = items(0, 1, **NO_AUG)
    for x, p in zip(a, plain):  # same positions, changed values: both crops augmented
        for field in ("audio", "audio2"):
            diff = (x[field] - p[field]).double()
            assert diff.abs().max() > 0.01 and diff.abs().max() < 40
    # aug_first_crop false: the first crop is the plain one, the second still augmented
    firsts = items(0, 1, aug_first_crop=False)
    assert all(
        torch.equal(x["audio"], p["audio"]) and not torch.equal(x["audio2"], p["audio2"])
        for x, p in zip(firsts, plain)
    )


def test_crops_do_not_depend_on_workers_and_validation_is_fixed(coded):
    ds = pair_dataset(coded)

    def batches(workers: int) -> list[dict]:
        ds.set_epoch(3)
        return list(DataLoader(ds, batch_size=4, num_workers=workers))

    for x, y in zip(batches(0), batches(2)):
        assert torch.equal(x["audio"], y["audio"]) and torch.equal(x["audio2"], y["audio2"])
    val = pair_dataset(coded, train=False)
    first = [val[i] for i in range(len(val))]
    val.set_epoch(5)  # validation does not move with the epoch
    assert all(torch.equal(x["audio2"], val[i]["audio2"]) for i, x in enumerate(first))
    centred = (FRAMES - CROP) // 2
    assert all(
        torch.equal(x["audio"][:, 0], torch.arange(centred, centred + CROP) + i * 1000.0)
        for i, x in enumerate(first)
    )  # the usual validation crop, plain


def test_runs_without_the_view_read_plain_crops(coded):
    """No augmentation outside the audio2 view: another config's audio crop is raw."""
    cfg = build_config(
        {
            "experiment_name": "x",
            "train_dataset_file": str(coded),
            "objective": "baseline",
            "validation_dataset_file": str(coded),
            "targets": ["genre"],
        },
        check_files=False,
    )
    views = make_views(cfg, read_split_info(coded))
    ds = TrackDataset(coded, views, ("audio",))
    ds.set_epoch(1)
    for i in range(len(ds)):
        s = int(ds.readers[0].starts[i])
        assert where(ds[i]["audio"]) == ({i}, s) and ds[i]["audio"][0, 1] % 1 == pytest.approx(
            0.01, abs=1e-3
        )


def test_contrastive_audio_trains_learns_and_resumes_exactly(synth, tmp_path):
    a, b = train_straight_and_resumed(synth, tmp_path, "contrastive_audio", "single_train.py", 3)
    assert a["epoch"] == b["epoch"] == 2 and set(a["models"]) == {"audio"}  # no part of its own
    for k, v in a["models"]["audio"].items():
        assert torch.equal(v, b["models"]["audio"][k]), k
    for i, s in a["optimizer"]["state"].items():
        assert all(torch.equal(v, b["optimizer"]["state"][i][k]) for k, v in s.items())
    rows = (tmp_path / "a" / "contrastive_audio" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert "train_ntxent_audio_audio2" in header and "val_ntxent_audio_audio2" in header
    losses = [float(r.split(",")[header.index("train_loss")]) for r in rows[1:]]
    assert all(np.isfinite(losses)) and all(0 < x < np.log(2 * 8) + 1 for x in losses)
    exported = torch.load(
        tmp_path / "a" / "contrastive_audio" / "audio_encoder.pt", weights_only=True
    )
    assert all(torch.equal(exported[k], a["models"]["audio"][k]) for k in exported)


@pytest.mark.parametrize("others", [["genre"], ["cf"]])
def test_audio_pair_combines_with_other_views(others, synth, tmp_path):
    views = ["audio", "audio2", *others]
    pairs = [["audio", "audio2"], ["audio", others[0]]]
    base = json.loads(CONFIG.read_text()) | {"views": views, "pairs": pairs}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(base))
    assert main("train.py", [str(path)] + tiny(synth, tmp_path, max_steps_per_epoch=1)) == 0
    ckpt = load_checkpoint(tmp_path / "contrastive_audio" / "last.pt")
    assert set(ckpt["models"]) == {"audio", *others}
    header = (tmp_path / "contrastive_audio" / "metrics.csv").read_text().splitlines()[0]
    assert f"train_ntxent_audio_{others[0]}" in header and "train_ntxent_audio_audio2" in header
    objective = make_objective(load_config(path, check_files=False))
    assert set(objective.audio_terms) == {"ntxent_audio_audio2", f"ntxent_audio_{others[0]}"}


def test_a_split_without_cf_or_genres_trains(tmp_path):
    """What an unlabelled collection gives: no cf_data, every label -1; audio-audio
    needs neither."""
    for split, n in (("train", 16), ("val", 4)):
        with h5py.File(tmp_path / f"{split}.h5", "w") as f:
            g = f.create_group("dataset")
            g["id"] = np.arange(n, dtype=np.int32)[:, None]
            g["data"] = np.random.default_rng(n).normal(-30, 10, (n, 280, 48)).astype(np.float32)
            g["label"] = np.full((n, 100), -1, dtype=np.int16)
    assert main("single_train.py", [str(CONFIG)] + tiny(tmp_path, tmp_path / "runs")) == 0
    assert load_checkpoint(tmp_path / "runs" / "contrastive_audio" / "last.pt")["epoch"] == 1


@pytest.mark.parametrize(
    ("bad", "key"),
    [
        ({"aug_gain_db": -1}, "'aug_gain_db'"),
        ({"aug_filter_db": "loud"}, "'aug_filter_db'"),
        ({"aug_noise_db": float("inf")}, "'aug_noise_db'"),
        ({"aug_min_shift": -2}, "'aug_min_shift'"),
        ({"aug_min_shift": 1.5}, "'aug_min_shift'"),
        ({"aug_min_shift": 20}, "'aug_min_shift'"),  # 280 frames: two crops at most 12 apart
        ({"aug_first_crop": "yes"}, "'aug_first_crop'"),
        ({"aug_gain": 3}, "'aug_gain'"),
        ({"views": ["audio2", "audio"]}, "'views'"),
    ],
)
def test_bad_augmentation_keys_are_one_line(bad, key, synth, tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(json.loads(CONFIG.read_text()) | bad))
    assert main("single_train.py", [str(path)] + tiny(synth, tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert key in err and err.count("\n") == 0 and "Traceback" not in err, err


def test_audio2_is_no_baseline_target(synth, tmp_path, capsys):
    path = tmp_path / "c.json"
    raw = json.loads((REPO / "configs" / "baseline_MF.json").read_text())
    path.write_text(
        json.dumps({k: v for k, v in raw.items() if k != "encoder"} | {"targets": ["audio2"]})
    )
    assert main("baseline_train.py", [str(path)] + tiny(synth, tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert "'targets'" in err and "audio2" in err and err.count("\n") == 0
