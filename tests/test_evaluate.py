"""evaluate.py and the evaluation tasks: hand-checked pieces, then the CLI end to end."""

from __future__ import annotations

import json
import math
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

from musicrep.evaluation import (
    ROW_KEYS,
    continuation_metrics,
    continuation_queries,
    load_eval_data,
    major_genre_targets,
    model_names,
    popularity_metrics,
)
from musicrep.metrics import macro_roc_pr_auc
from musicrep.models import AudioEncoder
from musicrep.report import find_metrics_csv

from .synth import write_synthetic_dataset

REPO = Path(__file__).resolve().parents[1]


def test_major_genre_targets_include_detail_codes() -> None:
    genres = {"codes": ["GN0100", "GN0101", "GN0200", "GN0305"]}
    labels = np.full((3, 100), -1, dtype=np.int16)
    labels[0, 0] = 1  # detail GN0101 -> its major GN0100
    labels[1, 0] = 3  # GN0305: its major GN0300 is not in the vocabulary -> nothing
    labels[2, :2] = [2, 0]  # GN0200 and GN0100
    y, majors = major_genre_targets(labels, genres)
    assert majors == ["GN0100", "GN0200"]
    assert y.tolist() == [[1, 0], [0, 0], [1, 1]]


def test_macro_auc_skips_constant_labels() -> None:
    y = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1], [0, 0, 1]])
    s = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.5], [0.4, 0.2, 0.5], [0.6, 0.4, 0.5]])
    out = macro_roc_pr_auc(y, s)
    # Only column 0 is scorable. Positives score 0.9, 0.4; negatives 0.2, 0.6.
    # ROC-AUC = pairs ranked right / all = (0.9>0.2, 0.9>0.6, 0.4>0.2, 0.4<0.6) = 3/4.
    # AP: ranking 0.9(+), 0.6(-), 0.4(+), 0.2(-): (1/1 + 2/3) / 2 = 5/6.
    assert out["roc_auc"] == pytest.approx(0.75)
    assert out["pr_auc"] == pytest.approx(5 / 6)
    assert (out["n_scored"], out["n_skipped"]) == (1, 2)


def test_continuation_by_hand() -> None:
    test_ids = np.array([10, 11, 12, 13])
    test_emb = np.array([[1, 0], [0, 1], [-1, 0], [0.7, 0.7]], dtype=np.float32)
    known_ids = np.array([1, 2, 3])
    known_emb = np.array([[1, 0.1], [0, 1], [0, 2]], dtype=np.float32)
    playlists = [
        {"id": 0, "known": [1], "held_out": [13]},
        {"id": 1, "known": [2, 3, 99], "held_out": [11, 12]},  # 99: not in any split
        {"id": 2, "known": [99], "held_out": [10]},  # no known track left: skipped
    ]
    known, held, skipped = continuation_queries(playlists, known_ids, test_ids)
    assert skipped == 1 and [h.tolist() for h in held] == [[3], [1, 2]]
    m = continuation_metrics(known_emb, test_emb, known, held, k=100, batch_size=1)
    # Playlist 0: query ~(1, 0.1) ranks 10, 13, 11, 12; held 13 at rank 2 (R = 1):
    #   recall 1, R-prec 0, NDCG 1/log2(3) = 0.6309, AP = (1/2)/1 = 0.5.
    # Playlist 1: query (0, 1) ranks 11 (1.0), 13 (0.707), then 10 and 12 tied at 0 (lower
    #   index first); held {11, 12} at ranks 1 and 4 (R = 2): recall 1, R-prec 1/2,
    #   NDCG (1 + 1/log2(5)) / (1 + 1/log2(3)) = 1.4307/1.6309 = 0.8772, AP (1 + 2/4)/2 = 0.75.
    ndcg0 = 1 / math.log2(3)
    ndcg1 = (1 + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert m["recall@100"] == pytest.approx(1.0)
    assert m["r_precision"] == pytest.approx((0 + 0.5) / 2)
    assert m["ndcg@100"] == pytest.approx((ndcg0 + ndcg1) / 2)
    assert m["map@100"] == pytest.approx((0.5 + 0.75) / 2)

    # Popularity 12:9, 10:5, 11:5 (tie -> lower id first), 13 absent (0):
    #   ranking 12, 10, 11, 13. Playlist 0: held 13 at rank 4 -> NDCG 1/log2(5), AP 1/4.
    #   Playlist 1: held {11, 12} at ranks 3 and 1 -> R-prec 1/2, AP (1/1 + 2/3)/2 = 5/6.
    p = popularity_metrics(test_ids, {"10": 5, "11": 5, "12": 9}, held, k=100)
    assert p["map@100"] == pytest.approx((0.25 + 5 / 6) / 2)
    assert p["r_precision"] == pytest.approx((0 + 0.5) / 2)


def test_model_names_and_metrics_csv(tmp_path) -> None:
    (tmp_path / "runA" / "checkpoints").mkdir(parents=True)
    (tmp_path / "runB").mkdir()
    (tmp_path / "runA" / "metrics.csv").write_text("epoch,loss\n1,2.0\n")
    a = tmp_path / "runA" / "checkpoints" / "best.pt"
    names = model_names([a, tmp_path / "runB", tmp_path / "runB" / "x.pt"])
    assert names == ["runA", "runB", "runB-2"]
    assert model_names([a], ["mine"]) == ["mine"]
    assert find_metrics_csv(a) == tmp_path / "runA" / "metrics.csv"
    assert find_metrics_csv(tmp_path / "runB" / "audio_encoder.pt") is None


def test_real_dataset_side_files(tiny_dataset) -> None:
    """The files create_dataset writes are read as the tasks expect."""
    data = load_eval_data(tiny_dataset)
    assert data.tag_y is not None and data.tag_y["train"].shape[1] == len(data.tag_names)
    assert data.playlists and data.popularity and data.manifest
    assert data.genre_y["test"].shape == (len(data.ids["test"]), len(data.major_names))
    known_ids = np.concatenate([data.ids["train"], data.ids["val"]])
    _, held, _ = continuation_queries(data.playlists, known_ids, data.ids["test"])
    assert len(held) > 0
    m = popularity_metrics(data.ids["test"], data.popularity, held)
    assert all(0.0 <= v <= 1.0 for v in m.values())


@pytest.fixture
def eval_dataset(tmp_path) -> Path:
    """Synthetic splits (1 chunk per track) plus small hand-made side files."""
    ds = write_synthetic_dataset(tmp_path / "ds", n_train=16, n_val=4, n_test=12, frames=256,
                                 n_genres=8)
    rng = np.random.default_rng(0)
    n = 32  # ids 0-15 train, 16-19 val, 20-31 test
    tracks = {str(i): sorted(rng.choice(3, size=int(rng.integers(0, 3)), replace=False).tolist())
              for i in range(n)}
    (ds / "track_tags.json").write_text(json.dumps({"tags": ["calm", "party", "rain"],
                                                     "tracks": tracks}))
    playlists = [{"id": p, "known": rng.choice(20, 3, replace=False).tolist(),
                  "held_out": rng.choice(np.arange(20, 32), 2, replace=False).tolist()}
                 for p in range(6)]
    (ds / "continuation.json").write_text(json.dumps({"playlists": playlists}))
    popularity = {str(i): int(rng.integers(0, 9)) for i in range(n)}
    (ds / "popularity.json").write_text(json.dumps(popularity))
    (ds / "manifest.json").write_text(json.dumps({"source": "synthetic", "tracks": n}))
    return ds


def test_evaluate_cli_end_to_end(eval_dataset, tmp_path, capsys) -> None:
    models = []
    for name, seed in (("alpha", 1), ("beta", 2)):
        (tmp_path / "models" / name).mkdir(parents=True)
        torch.manual_seed(seed)
        path = tmp_path / "models" / name / "audio_encoder.pt"
        torch.save(AudioEncoder(width=0.125).state_dict(), path)
        (path.parent / "config.json").write_text('{"input_layout": "transpose"}')
        models.append(str(path))
    (tmp_path / "models" / "alpha" / "metrics.csv").write_text(
        "epoch,train_loss,val_loss\n1,4.0,4.2\n2,3.1,3.6\n3,2.5,3.2\n"
    )
    out = tmp_path / "reports"
    main = runpy.run_path(str(REPO / "evaluate.py"))["main"]
    rc = main(["--dataset", str(eval_dataset), "--models", *models, "--out", str(out),
               "--device", "cpu", "--seed", "0", "--quiet"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err

    result = json.loads((out / "results.json").read_text())
    assert result["dataset"] == {"source": "synthetic", "tracks": 32}
    rows = {r["model"]: r for r in result["rows"]}
    assert list(rows) == ["alpha", "beta", "random-init", "popularity"]
    for r in result["rows"]:
        assert tuple(r) == ROW_KEYS
    for name in ("alpha", "beta", "random-init"):
        assert all(isinstance(rows[name][k], float) and 0 <= rows[name][k] <= 1
                   for k in ROW_KEYS[1:]), rows[name]
    pop = rows["popularity"]
    assert all(pop[k] is None
               for k in ("genre_roc_auc", "genre_pr_auc", "tag_roc_auc", "tag_pr_auc"))
    assert isinstance(pop["ndcg@100"], float)

    header = (out / "results.csv").read_text().splitlines()[0]
    assert header == ",".join(ROW_KEYS)
    md = (out / "results.md").read_text()
    assert "| random-init |" in md and "| popularity |" in md
    assert "| alpha |" in captured.out and "| popularity |" in captured.out
    for png in ("bars_genre.png", "bars_tagging.png", "bars_continuation.png",
                "embedding_maps.png", "loss_curves.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    assert "no metrics.csv next to the checkpoint of beta" in captured.err
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))



def test_evaluate_rejects_non_encoder(eval_dataset, tmp_path, capsys) -> None:
    bogus = tmp_path / "cf_encoder.pt"
    torch.save({"net.0.weight": torch.zeros(128, 301)}, bogus)
    main = runpy.run_path(str(REPO / "evaluate.py"))["main"]
    rc = main(["--dataset", str(eval_dataset), "--models", str(bogus), "--out",
               str(tmp_path / "r"), "--quiet"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 2 and len(err) == 1 and err[0].startswith("error:") and "cf_encoder.pt" in err[0]
    rc = main(["--dataset", str(tmp_path / "nowhere"), "--models", str(bogus), "--quiet"])
    assert rc == 2


def test_probe_finds_planted_genre_signal(eval_dataset) -> None:
    """Embeddings that carry the major genre give a near-perfect probe; noise does not."""
    from musicrep.evaluation import evaluate_embeddings

    data = load_eval_data(eval_dataset)
    rng = np.random.default_rng(0)
    planted, noise = {}, {}
    for s in ("train", "val", "test"):
        y = data.genre_y[s].astype(np.float32)
        noise[s] = rng.normal(size=(len(y), 16)).astype(np.float32)
        planted[s] = noise[s] * 0.1
        planted[s][:, : y.shape[1]] += 3 * y
    row, det = evaluate_embeddings(planted, data, seed=0)
    assert row["genre_roc_auc"] > 0.95 and det["genre_labels_scored"] == len(data.major_names)
    row_small, det_small = evaluate_embeddings(planted, data, seed=0, probe_max_train=12)
    assert det_small["probe_train_tracks"] == 12 and row_small["genre_roc_auc"] > 0.8
    row_noise, _ = evaluate_embeddings(noise, data, seed=0)
    assert row_noise["genre_roc_auc"] < row["genre_roc_auc"]
