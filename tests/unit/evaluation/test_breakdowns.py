"""What each view uniquely knows (issue 21 item 4): genre against the generator's true
genres, the true detail genres, and the breakdowns per popularity tercile and niche
genre, with the per-(playlist, held-out track) ranks behind continuation's.

On corpora of presets G1 and G2 from one generator seed (the same catalogue, mels and
truth; G2's metadata misnames a fifth of the artists' major genre), built here with
short mels and a test split of more than 100 tracks so that continuation is scored. The
embeddings are each track's per-band mel mean and deviation: real features of the
generated audio, which follows the true genres.
"""

from __future__ import annotations

import json
import runpy
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from musicrep.data.builder import DatasetArgs, create_dataset
from musicrep.data.h5io import open_split
from musicrep.evaluation.continuation import continuation_queries, popularity_metrics
from musicrep.evaluation.data import load_eval_data
from musicrep.evaluation.items import read_items
from musicrep.evaluation.metrics import rank_of, top_k
from musicrep.evaluation.slices import (
    SLICES,
    TERCILES,
    TrackSlices,
    auc_by_slice,
    r2_by_slice,
    recall_by_slice,
)
from musicrep.evaluation.tasks import (
    BREAKDOWN_COLUMNS,
    COLUMNS,
    ROW_KEYS,
    TRUTH_LEGEND,
    evaluate_embeddings,
    not_scored,
)
from musicrep.layout import TRUTH_FILE
from musicrep.study.stats import metric_replicates, r2_replicates
from musicrep.toy.melon import make_toy_melon

from tests.helpers import REPO
from tests.helpers.evaluation import make_eval_dataset

CORPUS = {"songs": 480, "playlists": 300, "frames": 256, "seed": 0}
DATASET = {"frames": 256, "cf_factors": 16, "cf_epochs": 10, "workers": 1, "test_size": 0.3}


def _mel_stats(dataset: Path, ids: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per split (N, 96): each track's per-band mean and deviation of its mel."""
    out = {}
    for split, want in ids.items():
        f, g = open_split(dataset / f"{split}.h5", ("id", "data"))
        with f:
            assert np.array_equal(np.asarray(g["id"][...]).reshape(-1), want)
            x = np.asarray(g["data"][...], dtype=np.float32)
        out[split] = np.concatenate([x.mean(axis=1), x.std(axis=1)], axis=1)
    return out


def _queries(data):
    known_ids = np.concatenate([data.ids["train"], data.ids["val"]])
    known, held, _ = continuation_queries(data.playlists, known_ids, data.ids["test"])
    return known, held


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict[str, Path]:
    """preset -> its dataset directory (the corpus beside it, found by the manifest)."""
    root = tmp_path_factory.mktemp("presets")
    out = {}
    for preset in ("G1", "G2"):
        make_toy_melon(root / preset / "melon", preset=preset, **CORPUS)
        create_dataset(DatasetArgs(melon_dir=str(root / preset / "melon"),
                                   out_dir=str(root / preset / "dataset"), **DATASET))
        out[preset] = root / preset / "dataset"
    return out


@pytest.fixture(scope="module")
def scored(corpora) -> dict[str, tuple]:
    """preset -> (data, row, details, items) of the mel-statistics embeddings."""
    out = {}
    for preset, ds in corpora.items():
        data = load_eval_data(ds)
        items: dict[str, np.ndarray] = {}
        row, det = evaluate_embeddings(_mel_stats(ds, data.ids), data, seed=0,
                                       queries=_queries(data), items=items)
        out[preset] = (data, row, det, items)
    return out


def _truth(data) -> dict:
    return json.loads(data.truth_path.read_text(encoding="utf-8"))


# ------------------------------------------------------------------ the true genres


def test_true_genres_equal_the_metadata_on_g0_g1_and_differ_on_g2(tiny_dataset, scored):
    for data in (load_eval_data(tiny_dataset), scored["G1"][0]):
        assert data.true_genre_codes == data.major_codes
        for s in data.ids:
            assert np.array_equal(data.true_genre_y[s], data.genre_y[s])
    data = scored["G2"][0]
    wrong = set(_truth(data)["metadata_errors"]["songs"])
    m = len(data.major_codes)
    for s, ids in data.ids.items():
        differ = ((data.true_genre_y[s][:, :m] != data.genre_y[s]).any(axis=1)
                  | data.true_genre_y[s][:, m:].any(axis=1))
        # exactly the songs of the misnamed artists have other metadata than truth
        assert set(ids[differ].tolist()) == wrong & set(ids.tolist())
    assert (data.true_detail_y["train"].sum(axis=0) > 0).sum() > 10  # the sub-genres


def test_true_genre_columns(scored):
    _, g1, det1, _ = scored["G1"]
    for col in ("roc_auc", "pr_auc"):
        assert g1[f"true_genre_{col}"] == g1[f"genre_{col}"]
    for s in SLICES:
        assert g1[f"true_genre_roc_auc@{s}"] == g1[f"genre_roc_auc@{s}"]
    assert det1["true_genre_labels_scored"] == det1["genre_labels_scored"] > 0
    _, g2, det2, items2 = scored["G2"]
    # the audio follows the true genres: they are predicted better than the metadata
    assert g2["true_genre_roc_auc"] > g2["genre_roc_auc"] + 0.02
    for row, det in ((g1, det1), (g2, det2)):
        assert row["true_detail_roc_auc"] > 0.7 and det["true_detail_labels_scored"] > 10
    # the study's bootstrap reproduces the new probes' columns from the per-item arrays
    n = len(items2["genre_labels"])
    full = metric_replicates(items2, np.ones((1, n)), np.ones((1, items2["recall@100"].size)))
    for col in ("true_genre_roc_auc", "true_genre_pr_auc", "true_detail_roc_auc",
                "true_detail_pr_auc"):
        assert full[col][0] == pytest.approx(g2[col], abs=1e-9), col


def test_a_truth_file_without_genre_lists_says_why(corpora, tmp_path):
    ds = corpora["G2"]
    data = load_eval_data(ds)
    path = tmp_path / TRUTH_FILE
    path.write_text(json.dumps({"song_mood": _truth(data)["song_mood"]}))
    bare = load_eval_data(ds, truth=path)
    why = not_scored(bare, _queries(bare))
    assert why["true_genre"] == f"true_genre not scored: the truth file {path} has no " \
                                "'song_major_genres'"
    assert "has no 'song_detail_genres'" in why["true_detail"]
    assert bare.slices.niche is None and bare.slices.tercile is not None
    assert np.array_equal(bare.mood["test"], data.mood["test"])


# ---------------------------------------------------------------- ranks and slices


def test_rank_of_is_the_position_top_k_gives():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=40).astype(np.float32)  # many ties
    scores[[3, 17]] = np.nan
    order = top_k(scores[None, :], 40)[0]
    cols = np.array([17, 0, 3, 39, 5, 5])
    assert rank_of(scores, cols).tolist() == [int(np.flatnonzero(order == c)[0]) for c in cols]


def _ndcg(ranks: np.ndarray, k: int) -> float:
    gain = (1.0 / np.log2(ranks[ranks < k] + 2.0)).sum()
    return gain / (1.0 / np.log2(np.arange(min(len(ranks), k)) + 2.0)).sum()


def test_held_out_ranks_reproduce_the_continuation_columns(scored):
    data, row, det, items = scored["G1"]
    assert row["recall@100"] is not None and len(data.ids["test"]) > 100
    held = _queries(data)[1]
    assert len(held) == det["playlists"]
    for name, it in (("model", items), ("popularity", {})):
        if name == "popularity":
            popularity_metrics(data.ids["test"], data.popularity, held, 100, items=it)
        pl, track, rank = it["held_playlist"], it["held_track"], it["held_rank"]
        assert np.array_equal(track, np.concatenate(held)) and pl.size == track.size
        assert rank.min() >= 0 and rank.max() < len(data.ids["test"])
        for p in range(len(held)):
            r = rank[pl == p]
            assert it["recall@100"][p] == pytest.approx(np.mean(r < 100))
            assert it["ndcg@100"][p] == pytest.approx(_ndcg(r, 100))
    # popularity: the rank is the test track's place by its playlist count
    counts = np.array([data.popularity.get(str(int(t)), 0) for t in data.ids["test"]])
    r = it["held_rank"]
    assert np.all(np.diff(counts[it["held_track"]][np.argsort(r)]) <= 0)


def test_terciles_and_niche_slices(scored):
    data, _, det, items = scored["G2"]
    sl = data.slices
    counts = np.array([data.popularity.get(str(int(t)), 0) for t in data.ids["test"]])
    sizes = [int((sl.tercile == t).sum()) for t in TERCILES]
    assert max(sizes) - min(sizes) <= 1 and det["tercile_tracks"] == dict(zip(TERCILES, sizes))
    for upper, lower in pairwise(TERCILES):
        assert counts[sl.tercile == upper].min() >= counts[sl.tercile == lower].max()
    truth = _truth(data)
    assert list(sl.niche_majors) == sorted(truth["niche_major_genres"]) == det["niche_major_genres"]
    primary = [truth["song_major_genres"][int(i)][0] for i in data.ids["test"]]
    assert sl.niche.tolist() == [p in truth["niche_major_genres"] for p in primary]
    assert np.array_equal(items["tercile"], sl.tercile) and np.array_equal(items["niche"], sl.niche)
    assert items["true_genre_niche"].tolist() == [c in sl.niche_majors
                                                  for c in data.true_genre_codes]


def _macro_auc(y: np.ndarray, s: np.ndarray) -> float:
    cols = [j for j in range(y.shape[1]) if 0 < y[:, j].sum() < len(y)]
    return float(np.mean([roc_auc_score(y[:, j], s[:, j]) for j in cols]))


def test_breakdown_values_are_the_metric_on_the_slice(scored):
    data, row, _, items = scored["G2"]
    masks = data.slices.track_masks()
    for probe in ("genre", "true_genre"):
        s, y = items[f"{probe}_scores"], items[f"{probe}_labels"]
        for t in TERCILES:
            assert row[f"{probe}_roc_auc@{t}"] == pytest.approx(_macro_auc(y[masks[t]], s[masks[t]]))
        niche = items[f"{probe}_niche"]
        assert row[f"{probe}_roc_auc@niche"] == pytest.approx(_macro_auc(y[:, niche], s[:, niche]))
        assert row[f"{probe}_roc_auc@mainstream"] == pytest.approx(
            _macro_auc(y[:, ~niche], s[:, ~niche]))
    for name, mask in masks.items():  # R^2 on a slice: the study's weighted R^2 with 0/1 weights
        want = r2_replicates(items["mood_pred"], items["mood_true"], mask[None, :].astype(float))
        assert row[f"mood_r2@{name}"] == pytest.approx(want[0])
        pl, track, rank = items["held_playlist"], items["held_track"], items["held_rank"]
        per_playlist = [np.mean(rank[(pl == p) & mask[track]] < 100)
                        for p in np.unique(pl[mask[track]])]
        assert row[f"recall@100@{name}"] == pytest.approx(np.mean(per_playlist))
    assert row["genre_roc_auc@bottom"] != row["genre_roc_auc@top"]


def test_slice_metrics_by_hand():
    sl = TrackSlices(np.array(["top", "top", "middle", "bottom"]),
                     np.array([True, False, False, True]), ("GN0100",), "truth")
    # playlists 0 and 1; held-out tracks with their ranks (k = 2: a hit is rank 0 or 1)
    playlist, track, rank = np.array([0, 0, 1, 1, 1]), np.array([0, 3, 1, 2, 3]), np.array([1, 5, 0, 2, 1])
    got = recall_by_slice(playlist, track, rank, 2, sl)
    # top: p0 {0: hit} -> 1, p1 {1: hit} -> 1; middle: p1 {2: miss} -> 0; bottom: p0 {3: miss},
    # p1 {3: hit} -> 0.5; niche (tracks 0, 3): p0 1/2, p1 1/1 -> 0.75; mainstream: p1 1/2
    assert got == {"top": 1.0, "middle": 0.0, "bottom": 0.5, "niche": 0.75, "mainstream": 0.5}
    labels = np.array([[1, 0], [0, 1], [1, 0], [0, 1]])
    scores = np.array([[0.9, 0.1], [0.2, 0.3], [0.4, 0.8], [0.6, 0.7]])
    by = auc_by_slice(scores, labels, sl, np.array([True, False]))
    assert by["top"] == 1.0 and by["middle"] is None and by["bottom"] is None  # one track each
    # niche column 0: positives 0.9, 0.4, negatives 0.2, 0.6 -> 3/4; column 1: 0.3, 0.7 vs 0.1, 0.8
    assert by["niche"] == 0.75 and by["mainstream"] == 0.5
    r2 = r2_by_slice(np.array([1.0, 2.0, 3.0, 5.0]), np.array([1.0, 2.0, 3.0, 4.0]), sl)
    assert r2["top"] == 1.0 and r2["middle"] is None and r2["niche"] == pytest.approx(1 - 1 / 4.5)


# ------------------------------------------------------------------------- outputs


def _evaluate(*args) -> int:
    main = runpy.run_path(str(REPO / "evaluate.py"))["main"]
    return main([str(a) for a in args] + ["--device", "cpu", "--quiet"])


def _npz(path: Path, data, emb: dict[str, np.ndarray]) -> Path:
    ids = np.concatenate([data.ids[s] for s in ("train", "val", "test")])
    np.savez(path, ids=ids, embeddings=np.concatenate([emb[s] for s in ("train", "val", "test")]))
    return path


def test_evaluate_writes_the_new_columns_and_arrays(corpora, tmp_path, capsys):
    ds = corpora["G2"]
    data = load_eval_data(ds)
    npz = _npz(tmp_path / "mel.npz", data, _mel_stats(ds, data.ids))
    out = tmp_path / "r"
    assert _evaluate("--dataset", ds, "--embeddings", f"mel={npz}", "--out", out, "--per-item") == 0
    assert "not scored" not in capsys.readouterr().err
    result = json.loads((out / "results.json").read_text())
    rows = {r["model"]: r for r in result["rows"]}
    assert all(tuple(r) == ROW_KEYS for r in result["rows"])
    assert all(rows["mel"][c] is not None for c in BREAKDOWN_COLUMNS)
    pop = rows["popularity"]
    assert pop["recall@100@top"] is not None and pop["genre_roc_auc@top"] is None
    assert result["details"]["mel"]["niche_source"] == "truth"
    assert (out / "results.csv").read_text().splitlines()[0] == ",".join(ROW_KEYS)
    md = (out / "results.md").read_text()
    table = md.split("\n\n")[2 if "Generated corpus" in md else 1]
    assert table.splitlines()[0].endswith("| true_genre_roc_auc | true_genre_pr_auc | "
                                          "true_detail_roc_auc | true_detail_pr_auc |")
    assert "## Truth probes and breakdowns" in md and TRUTH_LEGEND in md
    assert "### true_genre_roc_auc by slice" in md and "| model | all | top | middle" in md
    items = read_items(out / "items.npz")
    for key in ("held_playlist", "held_track", "held_rank", "tercile", "niche",
                "true_genre_scores", "true_genre_niche", "true_detail_labels"):
        assert key in items["mel"], key
    assert "held_rank" in items["popularity"] and "tercile" in items["popularity"]


def test_a_dataset_without_truth_keeps_its_table(tmp_path, capsys):
    ds = make_eval_dataset(tmp_path / "ds")
    data = load_eval_data(ds)
    rng = np.random.default_rng(0)
    emb = {s: rng.normal(size=(len(data.ids[s]), 6)).astype(np.float32) for s in data.ids}
    out = tmp_path / "r"
    assert _evaluate("--dataset", ds, "--embeddings", f"x={_npz(tmp_path / 'x.npz', data, emb)}",
                     "--out", out) == 0
    assert "true_" not in capsys.readouterr().err
    md = (out / "results.md").read_text()
    head = md.split("\n## ")[0]
    assert "true_" not in head and TRUTH_LEGEND not in md  # main table and legend as before
    assert "### genre_roc_auc by slice" in md and "niche" not in md.split("by slice")[1]
    row = json.loads((out / "results.json").read_text())["rows"][0]
    assert all(row[c] is None for c in COLUMNS if c.startswith("true_"))
    assert row["genre_roc_auc@top"] is not None and row["genre_roc_auc@niche"] is None


def test_the_study_evaluation_passes_them_through(corpora, tmp_path):
    from musicrep.evaluation.run import random_init_encoder
    from musicrep.study.evaluate import evaluate_encoder, playlist_queries
    from musicrep.study.plan import LAYERS, SMOKE

    data = load_eval_data(corpora["G2"])
    encoder = random_init_encoder(0.125, "transpose", 0)
    evaluate_encoder(encoder, data, playlist_queries(data), 0, tmp_path, SMOKE, "cpu", False, {})
    rows = json.loads((tmp_path / "eval.json").read_text())["rows"]
    items = read_items(tmp_path / "eval.npz")
    for layer in LAYERS:
        assert rows[layer]["true_genre_roc_auc"] is not None
        assert all(rows[layer][c] is not None for c in BREAKDOWN_COLUMNS)
        for key in ("held_rank", "tercile", "niche", "true_genre_scores", "true_detail_scores"):
            assert key in items[layer], key
