"""evaluate.py and the evaluation tasks: hand-checked pieces, then the CLI end to end."""

from __future__ import annotations

import json
import math
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

from musicrep.evaluation.continuation import (
    continuation_metrics,
    continuation_queries,
    popularity_metrics,
)
from musicrep.evaluation.data import load_eval_data, major_genre_targets
from musicrep.evaluation.run import model_names
from musicrep.evaluation.tasks import COLUMNS, OPTIONAL_TASKS, ROW_KEYS, TASK_COLUMNS
from musicrep.evaluation.metrics import macro_roc_pr_auc
from musicrep.model.audio_cnn import AudioEncoder
from musicrep.evaluation.report import find_metrics_csv

from tests.helpers import REPO
from tests.helpers.evaluation import make_eval_dataset


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
    return make_eval_dataset(tmp_path / "ds")


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
    assert result["dataset"] == {"source": "synthetic", "tracks": 140}
    assert result["generated_corpus"] is False and "generated corpus" not in captured.out
    rows = {r["model"]: r for r in result["rows"]}
    assert list(rows) == ["alpha", "beta", "random-init", "popularity"]
    for r in result["rows"]:
        assert tuple(r) == ROW_KEYS
    no_truth = {c for t in OPTIONAL_TASKS for c in TASK_COLUMNS[t]}  # no truth here
    scored = [k for k in COLUMNS[1:] if k not in no_truth]
    for name in ("alpha", "beta", "random-init"):
        assert all(isinstance(rows[name][k], float) and 0 <= rows[name][k] <= 1
                   for k in scored), rows[name]
        assert rows[name]["mood_r2"] is None
    pop = rows["popularity"]
    assert all(pop[k] is None
               for k in ("genre_roc_auc", "genre_pr_auc", "tag_roc_auc", "tag_pr_auc"))
    assert isinstance(pop["ndcg@100"], float)

    header = (out / "results.csv").read_text().splitlines()[0]
    assert header == ",".join(ROW_KEYS)
    md = (out / "results.md").read_text()
    assert "| random-init |" in md and "| popularity |" in md
    assert "vote_recall@100" in md and "mood_r2" not in md  # no truth: no mood column
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
    assert rc == 2 and len(err) == 1 and "cf_encoder.pt" in err[0]
    assert err[0].startswith("evaluate.py: error:")
    rc = main(["--dataset", str(tmp_path / "nowhere"), "--models", str(bogus), "--quiet"])
    assert rc == 2


def test_probe_finds_planted_genre_signal(eval_dataset) -> None:
    """Embeddings that carry the major genre give a near-perfect probe; noise does not."""
    from musicrep.evaluation.tasks import evaluate_embeddings

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


# ------------------------------------------------------------- the vote protocol


def test_vote_protocol_by_hand() -> None:
    """Each known track retrieves its top-2 test tracks; candidates ranked by votes,
    ties by mean similarity (hand-checked on unit vectors in the plane)."""
    from musicrep.evaluation.continuation import continuation_vote_metrics, vote_rankings

    ang = np.deg2rad
    vec = lambda a: np.array([np.cos(ang(a)), np.sin(ang(a))], dtype=np.float32)  # noqa: E731
    test = np.stack([vec(0), vec(10), vec(50), vec(90), vec(180)])  # test rows 0..4
    known = np.stack([vec(5), vec(45), vec(70)])
    # top-2 per known track: k0 (5 deg) -> rows 0, 1; k1 (45) -> rows 2, 1; k2 (70) -> rows 2, 3
    # playlist {k0, k1, k2}: votes row1=2, row2=2, row0=1, row3=1. Ties: row2's mean cos
    # (cos 5 + cos 20)/2 = 0.968 beats row1's (cos 5 + cos 35)/2 = 0.908; row0 cos 5 = 0.996
    # beats row3 cos 20 = 0.940.
    from musicrep.evaluation.metrics import top_k

    sims = (known / np.linalg.norm(known, axis=1, keepdims=True)) @ test.T
    idx = top_k(sims, 2)
    ranked = vote_rankings(idx, np.take_along_axis(sims, idx, 1), [np.array([0, 1, 2])], 5)
    assert ranked.tolist() == [[2, 1, 0, 3, -1]]  # row 4 never retrieved: padded

    m = continuation_vote_metrics(known, test, [np.array([0, 1, 2])], [np.array([3, 4])],
                                  k=2, per_track=2)
    # ranking [2, 1]: no hit in the top 2 -> recall 0; with k=4 row 3 is 4th -> recall 0.5
    assert m["vote_recall@2"] == 0.0
    m4 = continuation_vote_metrics(known, test, [np.array([0, 1, 2])], [np.array([3, 4])],
                                   k=4, per_track=2)
    assert m4["vote_recall@4"] == pytest.approx(0.5)
    assert m4["vote_ndcg@4"] == pytest.approx((1 / math.log2(5)) / (1 + 1 / math.log2(3)))


# ------------------------------------------------------ precomputed embeddings


def _npz(path: Path, **arrays) -> Path:
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def test_evaluate_cli_scores_precomputed_embeddings(eval_dataset, tmp_path, capsys) -> None:
    """--embeddings NAME=FILE: no checkpoint; the planted set beats the noise set."""
    data = load_eval_data(eval_dataset)
    rng = np.random.default_rng(1)
    ids = np.concatenate([data.ids[s] for s in ("train", "val", "test")])
    y = np.concatenate([data.genre_y[s] for s in ("train", "val", "test")]).astype(np.float32)
    noise = rng.normal(size=(len(ids), 8)).astype(np.float32)
    planted = noise * 0.1
    planted[:, : y.shape[1]] += 3 * y
    perm = rng.permutation(len(ids))  # order of the file need not match the splits
    good = _npz(tmp_path / "good.npz", ids=ids[perm], embeddings=planted[perm])
    # A set split over two files, as encode.py --hdf5 writes one per split.
    part1 = _npz(tmp_path / "a.npz", ids=ids[:20], embeddings=noise[:20])
    part2 = _npz(tmp_path / "b.npz", ids=ids[20:], embeddings=noise[20:])
    out = tmp_path / "r"
    main = runpy.run_path(str(REPO / "evaluate.py"))["main"]
    rc = main(["--dataset", str(eval_dataset), "--embeddings", f"planted={good}",
               f"noise={part1},{part2}", "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    result = json.loads((out / "results.json").read_text())
    rows = {r["model"]: r for r in result["rows"]}
    assert list(rows) == ["planted", "noise", "popularity"]  # no random-init without a model
    assert rows["planted"]["genre_roc_auc"] > 0.95 > rows["noise"]["genre_roc_auc"]
    assert isinstance(rows["noise"]["vote_map@100"], float)
    assert result["embedding_files"]["noise"] == f"{part1},{part2}"

    # Missing tracks are named.
    short = _npz(tmp_path / "short.npz", ids=ids[:-1], embeddings=planted[:-1])
    rc = main(["--dataset", str(eval_dataset), "--embeddings", f"x={short}", "--out",
               str(tmp_path / "r2"), "--quiet"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 2 and len(err) == 1 and "short.npz" in err[0] and "first missing id" in err[0]


# ---------------------------------------------- ground truth and generated labels


def test_mood_column_from_generated_truth(toy_melon, tiny_dataset, tmp_path, capsys) -> None:
    """A dataset built from the toy corpus finds generated_truth.json through its
    manifest; a set that carries the mood scores a high R^2, noise does not."""
    melon, summary = toy_melon
    assert (melon / "generated_truth.json").is_file() and (melon / "generated.json").is_file()
    data = load_eval_data(tiny_dataset)
    assert data.generated and data.mood is not None
    truth = np.asarray(summary["truth"]["song_mood"])
    assert np.allclose(data.mood["test"], truth[data.ids["test"]])

    rng = np.random.default_rng(0)
    ids = np.concatenate([data.ids[s] for s in ("train", "val", "test")])
    mood = truth[ids]
    noise = rng.normal(size=(len(ids), 6)).astype(np.float32)
    carries = noise.copy()
    carries[:, 0] = mood + 0.05 * noise[:, 0]
    a = _npz(tmp_path / "mood.npz", ids=ids, embeddings=carries)
    b = _npz(tmp_path / "noise.npz", ids=ids, embeddings=noise)
    out = tmp_path / "r"
    main = runpy.run_path(str(REPO / "evaluate.py"))["main"]
    rc = main(["--dataset", str(tiny_dataset), "--embeddings", f"mood={a}", f"noise={b}",
               "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    result = json.loads((out / "results.json").read_text())
    rows = {r["model"]: r for r in result["rows"]}
    assert rows["mood"]["mood_r2"] > 0.9 and rows["mood"]["mood_spearman"] > 0.9
    assert rows["noise"]["mood_r2"] < 0.2
    md = (out / "results.md").read_text()
    assert md.startswith("# Evaluation results (generated corpus)") and "| mood_r2 |" in md
    assert result["generated_corpus"] is True
    assert "useless for real music" in captured.err

    # --truth pointing elsewhere is honoured; a missing one is one line, exit 2.
    rc = main(["--dataset", str(tiny_dataset), "--embeddings", f"mood={a}", "--truth",
               str(tmp_path / "none.json"), "--out", str(out), "--quiet"])
    assert rc == 2 and "none.json" in capsys.readouterr().err


def test_generated_flag_from_manifest_source(eval_dataset) -> None:
    from musicrep.evaluation.data import dataset_is_generated

    assert dataset_is_generated(eval_dataset, {"source": {"generated": True}})
    assert not dataset_is_generated(eval_dataset, {"source": {"generated": False,
                                                              "melon_dir": "x"}})
    (eval_dataset / "melon").mkdir()
    assert not dataset_is_generated(eval_dataset, {"source": "melon"})
    (eval_dataset / "melon" / "generated.json").write_text("{}")
    assert dataset_is_generated(eval_dataset, {"source": "melon"})  # fallback: the marker
