"""Training end to end on a tiny synthetic dataset: all six configurations, outputs,
resume determinism, skip when complete, and the datasets."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from musicrep.training.checkpoint import load_checkpoint
from musicrep.cli.train import main
from musicrep.training.config import PAPER_CONFIGS, build_config
from musicrep.training.dataset import TrackDataset
from musicrep.data.h5io import read_split_info
from musicrep.training.checkpoint import load_audio_encoder
from musicrep.model.audio_cnn import AudioEncoder
from musicrep.views import genre_tokens, make_views

from tests.helpers import REPO
from tests.helpers.synth import write_synthetic_dataset
from tests.helpers.training import tiny, train_straight_and_resumed

CONFIGS = PAPER_CONFIGS
TERMS = {
    "baseline_MF": ["mse_cf"],
    "baseline_gnr": ["bce_genre"],
    "baseline_MF_gnr": ["mse_cf", "bce_genre"],
    "contrastive_MF": ["ntxent_audio_cf"],
    "contrastive_gnr": ["ntxent_audio_genre"],
    "contrastive_MF_gnr": ["ntxent_audio_genre", "ntxent_audio_cf", "ntxent_cf_genre"],
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_synthetic_dataset(
        tmp_path_factory.mktemp("synth"), n_train=32, n_val=12, n_test=4, frames=300
    )


@pytest.mark.parametrize("name", list(CONFIGS))
def test_each_config_trains_and_exports(name, dataset, tmp_path, capsys):
    args = [str(REPO / "configs" / f"{name}.json")] + tiny(dataset, tmp_path)
    assert main(CONFIGS[name], args) == 0
    out = tmp_path / name
    for f in (
        "last.pt",
        "best.pt",
        "epoch_0001.pt",
        "audio_encoder.pt",
        "audio_encoder_best.pt",
        "config.json",
        "metrics.csv",
    ):
        assert (out / f).is_file(), f
    assert any((out / "tb").iterdir())

    sd = torch.load(out / "audio_encoder.pt", weights_only=True)
    AudioEncoder(width=0.125).load_state_dict(sd, strict=True)  # plain, original-format keys
    enc = load_audio_encoder(out / "audio_encoder.pt")  # layout from config.json beside it
    assert enc.width == 0.125 and enc.input_layout == "transpose"
    assert load_audio_encoder(out / "best.pt").width == 0.125  # a full checkpoint loads too

    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["epoch"] == 1 and ckpt["global_step"] == 2 and ckpt["optimizer"]["state"]
    parts = {"audio"} | {"MF": {"cf"}, "gnr": {"genre"}, "MF_gnr": {"cf", "genre"}}[
        name.split("_", 1)[1]
    ]
    if name.startswith("baseline"):
        parts = {"audio"} | {p + "_head" for p in parts - {"audio"}}
    assert set(ckpt["models"]) == parts
    for p in parts:
        assert ckpt["models"][p]

    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1
    for term in ["loss"] + TERMS[name]:
        for split in ("train", "val"):
            assert np.isfinite(float(rows[0][f"{split}_{term}"]))
    assert float(rows[0]["samples_per_s"]) > 0 and float(rows[0]["time_s"]) > 0

    # Rerunning the finished run does nothing and succeeds.
    capsys.readouterr()
    mtime = (out / "last.pt").stat().st_mtime_ns
    assert main(CONFIGS[name], args) == 0
    assert "already complete" in capsys.readouterr().out
    assert (out / "last.pt").stat().st_mtime_ns == mtime


def test_resume_gives_identical_weights(dataset, tmp_path):
    straight, resumed = tmp_path / "a", tmp_path / "b"
    a, b = train_straight_and_resumed(dataset, tmp_path, "contrastive_MF_gnr", "train.py", 3)
    assert a["epoch"] == b["epoch"] == 2
    for part in a["models"]:
        for k, v in a["models"][part].items():
            assert torch.equal(v, b["models"][part][k]), f"{part}.{k}"
    for i, s in a["optimizer"]["state"].items():
        for k, v in s.items():
            assert torch.equal(v, b["optimizer"]["state"][i][k])
    sa = torch.load(straight / "contrastive_MF_gnr" / "audio_encoder.pt", weights_only=True)
    sb = torch.load(resumed / "contrastive_MF_gnr" / "audio_encoder.pt", weights_only=True)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    with open(resumed / "contrastive_MF_gnr" / "metrics.csv") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2"]


def test_resume_refuses_a_different_model(dataset, tmp_path, capsys):
    cfg = str(REPO / "configs" / "contrastive_MF.json")
    assert main("single_train.py", [cfg] + tiny(dataset, tmp_path)) == 0
    capsys.readouterr()
    assert main("single_train.py", [cfg] + tiny(dataset, tmp_path, epochs=2, width=0.25)) == 2
    err = capsys.readouterr().err
    assert "'width'" in err and "Traceback" not in err


def test_dataset_crops_tokens_and_float16(tmp_path):
    ds_dir = write_synthetic_dataset(
        tmp_path / "d", n_train=20, n_val=4, n_test=2, frames=280, n_genres=6
    )
    with h5py.File(ds_dir / "train.h5", "r+") as f:  # float16 mels, as create_dataset may write
        data = f["dataset/data"][:]
        del f["dataset/data"]
        f["dataset/data"] = data.astype(np.float16)
        label = f["dataset/label"][:]
    cfg = build_config(
        {"experiment_name": "x", "train_dataset_file": str(ds_dir / "train.h5"),
         "validation_dataset_file": str(ds_dir / "val.h5"), "objective": "baseline",
         "encoder": "MF_gnr", "seed": 3},
        check_files=False,
    )
    views = make_views(cfg, read_split_info(ds_dir / "train.h5"))
    ds = TrackDataset(ds_dir / "train.h5", views, ("audio", "genre_tokens", "genre_targets"))
    assert set(ds[0]) == {"audio", "genre_tokens", "genre_targets", "index"}  # no cf: not asked
    item = ds[5]
    assert item["audio"].dtype == torch.float32 and item["audio"].shape == (256, 48)
    crops = ds.readers[0]  # the audio view's reader
    s = int(crops.starts[5])
    assert torch.allclose(
        item["audio"], torch.from_numpy(data[5, s : s + 256].astype(np.float16).astype(np.float32))
    )
    real = label[5][label[5] >= 0]
    assert (
        item["genre_tokens"][: len(real)].tolist() == (real + 1).tolist()
        and item["genre_tokens"][len(real) :].eq(0).all()
    )
    assert item["genre_targets"].nonzero().flatten().tolist() == sorted(real.tolist())

    # crops: fixed by (seed, epoch), change across epochs, same with worker processes
    def batches(workers: int) -> list[torch.Tensor]:
        ds.set_epoch(2)
        return [b["audio"] for b in DataLoader(ds, batch_size=5, num_workers=workers)]

    single, multi = batches(0), batches(2)
    assert all(torch.equal(x, y) for x, y in zip(single, multi))
    starts2 = crops.starts.copy()
    ds.set_epoch(3)
    assert not np.array_equal(starts2, crops.starts)

    val = TrackDataset(ds_dir / "val.h5", views, ("audio",), train=False)
    assert (val.readers[0].starts == (280 - 256) // 2).all() and set(val[0]) == {"audio", "index"}


def test_genre_tokens_vectorised():
    labels = np.array([[3, -1, 5, -1], [-1, -1, -1, -1], [0, 1, 2, 4]], dtype=np.int16)
    assert genre_tokens(labels, max_tokens=3).tolist() == [[4, 6, 0], [0, 0, 0], [1, 2, 3]]


def _weights(out: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a run's last.pt (model parts and Adam state), by name."""
    ckpt = load_checkpoint(out / "last.pt")
    tensors = {f"{p}.{k}": v for p, sd in ckpt["models"].items() for k, v in sd.items()}
    for i, s in ckpt["optimizer"]["state"].items():
        tensors.update({f"adam.{i}.{k}": v for k, v in s.items() if torch.is_tensor(v)})
    return tensors


def test_bf16_deterministic_float32_checkpoints(dataset, tmp_path):
    """bf16 autocast on CPU: same seed, same weights; weights and checkpoints stay
    float32; config.json records what was used; and autocast really was on (the
    weights differ from a float32 run's)."""
    cfg = str(REPO / "configs" / "contrastive_MF_gnr.json")
    runs = {}
    for name, bf16 in (("a", True), ("b", True), ("fp32", False)):
        args = [cfg] + tiny(dataset, tmp_path / name, bf16=bf16, max_steps_per_epoch=3)
        assert main("train.py", args) == 0
        runs[name] = tmp_path / name / "contrastive_MF_gnr"
    a, b, fp32 = (_weights(runs[n]) for n in ("a", "b", "fp32"))
    assert a.keys() == b.keys() and len(a) > 10
    for k in a:
        assert torch.equal(a[k], b[k]), k
        if a[k].is_floating_point():
            assert a[k].dtype == torch.float32, k
    assert any(not torch.equal(a[k], fp32[k]) for k in a if k.startswith("audio."))
    sd = torch.load(runs["a"] / "audio_encoder.pt", weights_only=True)
    assert all(v.dtype == torch.float32 for v in sd.values() if v.is_floating_point())
    with open(runs["a"] / "metrics.csv") as f:
        row = next(csv.DictReader(f))
    assert np.isfinite(float(row["train_loss"])) and np.isfinite(float(row["val_loss"]))
    for name, expected in (("a", True), ("fp32", False)):
        info = json.loads((runs[name] / "config.json").read_text())
        assert info["bf16_resolved"] is expected and info["bf16"] is expected


def test_bf16_auto_follows_what_torch_reports(dataset, tmp_path):
    """The default "auto" turns bf16 on exactly where torch reports native bf16."""
    caps = torch.cpu.get_capabilities()
    native = bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))
    cfg = str(REPO / "configs" / "contrastive_MF.json")
    assert main("single_train.py", [cfg] + tiny(dataset, tmp_path, max_steps_per_epoch=1)) == 0
    info = json.loads((tmp_path / "contrastive_MF" / "config.json").read_text())
    assert info["bf16"] == "auto" and info["bf16_resolved"] is native


def test_tracks_without_cf_vector_are_out_of_cf_terms_in_training(tmp_path, capsys):
    """A split where no track has a CF vector (all-zero rows, no cf_known flag: the
    original's files): the CF terms are 0, every other term trains as usual, no NaN."""
    ds_dir = write_synthetic_dataset(tmp_path / "d", n_train=16, n_val=8, n_test=2, frames=280)
    for split in ("train", "val"):
        with h5py.File(ds_dir / f"{split}.h5", "r+") as f:
            f["dataset/cf_data"][...] = 0.0
    for name in ("contrastive_MF_gnr", "baseline_MF_gnr"):
        args = [str(REPO / "configs" / f"{name}.json")] + tiny(ds_dir, tmp_path / "runs")
        assert main(CONFIGS[name], args) == 0
        with open(tmp_path / "runs" / name / "metrics.csv") as f:
            row = {k: float(v) for k, v in next(csv.DictReader(f)).items()}
        cf_terms = [t for t in TERMS[name] if t.endswith("_cf") or "_cf_" in t]
        other = [t for t in TERMS[name] if t not in cf_terms]
        assert cf_terms and all(row[f"{s}_{t}"] == 0.0 for t in cf_terms for s in ("train", "val"))
        assert all(row[f"{s}_{t}"] > 0 for t in other for s in ("train", "val"))
        assert all(np.isfinite(v) for v in row.values())
    assert "16 of 16 tracks have no CF vector (all-zero cf_data rows)" in capsys.readouterr().err

    cfg = build_config(
        {"experiment_name": "x", "train_dataset_file": str(ds_dir / "train.h5"),
         "validation_dataset_file": str(ds_dir / "val.h5"), "objective": "contrastive", "encoder": "MF"},
        check_files=False,
    )
    views = make_views(cfg, read_split_info(ds_dir / "train.h5"))
    item = TrackDataset(ds_dir / "train.h5", views, ("audio", "cf", "cf_known"))[3]
    assert item["cf_known"].dtype == torch.bool and not item["cf_known"]
