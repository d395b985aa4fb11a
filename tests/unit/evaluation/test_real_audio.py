"""The real-audio benchmark (evaluation/real_audio.py, scripts/real_benchmark.py): the
retrieval, chunk, probe and interval pieces checked by hand, then the command line end to
end on a tiny corpus of tones written here, and its one-line errors on bad input."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicrep.cli.real_benchmark import main
from musicrep.errors import ConfigError
from musicrep.evaluation import real_audio as ra
from tests.helpers import REPO

SR = 8000
SECONDS = 18.0  # >= 2 x 4.096 + 8 s: room for two chunks 8 s apart


# --------------------------------------------------------------------------- pieces


def test_retrieval_finds_identical_siblings_and_a_constant_embedding_scores_chance():
    emb = np.repeat(np.eye(4), 2, axis=0)  # track i's two chunks: the same one-hot vector
    s = ra.retrieval_scores(emb, ["a", "a", "b", "b"])
    assert s["pool_top1"].tolist() == [1, 1, 1, 1] and s["pool_mrr"].tolist() == [1, 1, 1, 1]
    assert s["within_top1"].tolist() == [1, 1, 1, 1]
    flat = ra.retrieval_scores(np.zeros((8, 3)), ["a", "a", "b", "b"])
    chance = ra.retrieval_chance(4, ["a", "a", "b", "b"])
    for k, v in chance.items():  # all ties, ranked at random: exactly chance
        assert flat[k].mean() == pytest.approx(v)
    assert chance["pool_top1"] == pytest.approx(1 / 7)
    assert chance["pool_mrr"] == pytest.approx(sum(1 / r for r in range(1, 8)) / 7)
    assert chance["within_top1"] == pytest.approx(1 / 3)


def test_within_scope_ranks_only_among_the_same_scope():
    # Track 1 (scope y) lies between track 0's two chunks: in the pool each of track 0's
    # chunks has both of track 1's nearer than its sibling (rank 3); within scope x only
    # track 2 competes, and it is farther (rank 1). Track 1 is alone in y: not scored.
    emb = np.array([[1, 0], [0.8, 0.6], [0.95, 0.31], [0.9, 0.44], [0, 1], [0.1, 1]], float)
    s = ra.retrieval_scores(emb, ["x", "y", "x"])
    assert s["pool_top1"][0] == 0 and s["pool_mrr"][0] == pytest.approx(1 / 3)
    assert s["within_top1"][0] == 1 and s["within_mrr"][0] == 1
    assert math.isnan(s["within_top1"][1]) and math.isnan(s["within_mrr"][1])
    assert s["within_top1"][2] == 1


def test_plan_chunks_gap_seed_and_short_files(tmp_path):
    tracks = []
    for i, secs in enumerate([SECONDS, 40.0, 12.0]):
        p = tmp_path / f"t{i}.wav"
        sf.write(p, np.zeros(int(secs * SR), np.float32), SR)
        tracks.append(ra.Track(f"t{i}", p))
    tracks.append(ra.Track("gone", tmp_path / "gone.wav"))
    chunks, dropped = ra.plan_chunks(tracks, seed=3)
    assert [d["track_id"] for d in dropped] == ["t2", "gone"]  # too short, missing
    assert len(chunks) == 4 and [c.track for c in chunks] == [0, 0, 1, 1]
    for a, b in (chunks[0:2], chunks[2:4]):
        assert b.start - (a.start + a.seconds) >= ra.DEFAULT_GAP_SECONDS - 1e-3
        assert a.start >= 0 and b.start + b.seconds <= (SECONDS if a.track == 0 else 40.0)
    again, _ = ra.plan_chunks(tracks, seed=3)
    other, _ = ra.plan_chunks(tracks, seed=4)
    assert [c.chunk_id for c in again] == [c.chunk_id for c in chunks]
    assert [c.chunk_id for c in other] != [c.chunk_id for c in chunks]
    alone, _ = ra.plan_chunks(tracks[1:2], seed=3)  # other tracks do not move a track's chunks
    assert [c.chunk_id for c in alone] == [c.chunk_id for c in chunks[2:4]]


def test_probe_folds_never_split_a_group_and_constant_groups_split_by_track():
    values = [{"g": "s", "artist": a, "album": al} for a, al in
              [("A", "x"), ("A", "x"), ("A", "y"), ("B", "z"), ("B", "z"), ("B", "w"),
               ("A", "v"), ("B", "u")]]
    plan = ra.plan_probe(values, "artist", "album", "g", min_per_class=2, folds=3, seed=0)
    (_, idx, _, fold), = plan.groups
    for album in {v["album"] for v in values}:
        assert len({int(f) for i, f in zip(idx, fold) if values[i]["album"] == album}) == 1
    same = [{**v, "album": "one"} for v in values]
    plan = ra.plan_probe(same, "artist", "album", "g", min_per_class=2, folds=3, seed=0)
    assert plan.n_tracks == 8 and any("split by track" in n for n in plan.notes)
    few = ra.plan_probe(values, "artist", "album", "g", min_per_class=5)
    assert few.n_tracks == 0 and "skipped" in few.notes[0]
    # a perfectly separable embedding is probed right; chance = the majority's share
    emb = np.array([[1.0, 0.0] if v["artist"] == "A" else [0.0, 1.0] for v in values])
    emb += np.random.default_rng(0).normal(0, 0.01, emb.shape)
    plan = ra.plan_probe(same, "artist", "album", "g", min_per_class=2, folds=4, seed=0)
    assert np.nanmean(ra.probe_scores(plan, emb, 8)) == 1.0
    assert ra.probe_chance(plan) == 0.5


def test_bootstrap_interval_skips_unscored_tracks():
    w = ra.bootstrap_weights(5, 200, seed=0)
    s = ra.bootstrap_interval(np.array([1.0, 1.0, np.nan, 1.0, 1.0]), w)
    assert s == {"mean": 1.0, "low": 1.0, "high": 1.0, "n": 4}
    s = ra.bootstrap_interval(np.array([0.0, 1.0, 0.0, 1.0, 1.0]), w)
    assert s["low"] < 0.6 < s["high"] and s["mean"] == 0.6


# --------------------------------------------------------------------------- the CLI


def _tone(freq: float, seed: int) -> np.ndarray:
    """A steady tone in a little noise: its two chunks have the same spectrum, other
    tracks' differ, so log-mel statistics find each sibling (the easy case)."""
    t = np.arange(int(SECONDS * SR)) / SR
    noise = np.random.default_rng(seed).normal(0, 0.01, t.size)
    return (0.3 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


@pytest.fixture()
def corpus(tmp_path) -> Path:
    """8 tracks: two soundtracks of 4 (one album each), two composers of 2 tracks in each."""
    root = tmp_path / "corpus"
    (root / "audio").mkdir(parents=True)
    rows = []
    for i in range(8):
        sf.write(root / "audio" / f"t{i}.wav", _tone(110.0 * 1.4 ** i, i), SR)
        game = "G1" if i < 4 else "G2"
        rows.append({"track_id": f"t{i}", "path": f"t{i}.wav", "genres": game,
                     "artist": f"{game}-{'a' if i % 4 < 2 else 'b'}", "album": game,
                     "title": f"tone {i}"})
    with open(root / "tracks.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def _run(capsys, *args) -> tuple[int, str, str]:
    try:
        code = main([*map(str, args), "--no-progress", "--bootstrap", "50", "--random-width",
                     "0.125"])
    except SystemExit as e:  # argparse's errors (one line too: cli.common.Parser)
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def _one_hot_anchor(chunks_csv: Path, path: Path, drop: int = 0) -> None:
    with open(chunks_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    tracks = sorted({r["track_id"] for r in rows})
    emb = np.array([np.eye(len(tracks))[tracks.index(r["track_id"])] for r in rows])
    np.savez(path, chunk_ids=np.array([r["chunk_id"] for r in rows])[drop:],
             embeddings=emb[drop:].astype(np.float32))


def test_cli_end_to_end(corpus, tmp_path, capsys):
    chunks = tmp_path / "chunks.csv"
    code, out, err = _run(capsys, corpus, "--write-chunks", chunks)
    assert code == 0 and "16 chunks" in out and not (tmp_path / "out").exists()
    assert chunks.read_text().splitlines()[0] == ",".join(ra.CHUNK_COLUMNS)
    _one_hot_anchor(chunks, tmp_path / "oracle.npz")
    code, out, err = _run(capsys, corpus, "--out", tmp_path / "out", "--models",
                          REPO / "models" / "contrastive_MF_gnr", "--anchor",
                          f"oracle={tmp_path / 'oracle.npz'}", "--min-per-class", "2",
                          "--label-column", "artist", "era")
    assert code == 0, err
    assert "| log-mel stats | baseline | 96 |" in out and "| chance |" in out
    assert "no column 'era': the era probe is skipped" in err
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    rows = {r["row"]: r["metrics"] for r in res["rows"]}
    assert set(rows) == {"contrastive_MF_gnr", "random init", "log-mel stats", "oracle"}
    assert res["chance"]["pool_top1"] == pytest.approx(1 / 15)
    assert res["chance"]["artist_acc"] == 0.5
    assert rows["oracle"]["pool_top1"] == {"mean": 1.0, "low": 1.0, "high": 1.0, "n": 8}
    assert rows["oracle"]["within_top1"]["mean"] == 1.0
    assert rows["log-mel stats"]["pool_top1"]["mean"] > 3 * res["chance"]["pool_top1"]
    for r in rows.values():  # every row probed on the same 8 tracks
        assert r["artist_acc"]["n"] == 8 and 0 <= r["artist_acc"]["mean"] <= 1
    md = (tmp_path / "out" / "results.md").read_text()
    assert "chance levels: pool top-1 0.067" in md and "artist acc" in md
    header = (tmp_path / "out" / "results.csv").read_text().splitlines()[0]
    assert header.startswith("row,kind,dim,trained_on,pool_top1,pool_top1_low,pool_top1_high")
    assert not list((tmp_path / "out").glob(".*.tmp"))
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 cut short")
    code, _, err = _run(capsys, corpus, "--out", tmp_path / "out", "--anchor",
                        f"x={tmp_path / 'broken.npz'}")
    assert code == 2 and (tmp_path / "out" / "results.md").read_text() == md  # kept


def _one_error_line(err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("real_benchmark: error:"), err
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_bad_inputs_are_one_line_and_exit_2(corpus, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = _run(capsys, tmp_path / "nowhere", "--out", out)
    assert code == 2
    _one_error_line(err, "nowhere")
    (tmp_path / "empty").mkdir()
    code, _, err = _run(capsys, tmp_path / "empty", "--out", out)
    assert code == 2
    _one_error_line(err, "tracks.csv", "file not found")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "tracks.csv").write_text("track_id,file\nx,y.wav\n")
    code, _, err = _run(capsys, bad, "--out", out)
    assert code == 2
    _one_error_line(err, "tracks.csv", "missing column 'path'")
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip file")
    code, _, err = _run(capsys, corpus, "--out", out, "--anchor", f"x={broken}")
    assert code == 2
    _one_error_line(err, str(broken), "not a readable .npz")
    chunks = tmp_path / "chunks.csv"
    assert _run(capsys, corpus, "--write-chunks", chunks)[0] == 0
    short = tmp_path / "short.npz"
    _one_hot_anchor(chunks, short, drop=1)
    code, _, err = _run(capsys, corpus, "--out", out, "--anchor", f"x={short}")
    assert code == 2
    _one_error_line(err, str(short), "lacks 1 of the 16 chunk ids")
    np.savez(tmp_path / "nokey.npz", embeddings=np.zeros((16, 3)))
    code, _, err = _run(capsys, corpus, "--out", out, "--anchor", f"x={tmp_path / 'nokey.npz'}")
    assert code == 2
    _one_error_line(err, "nokey.npz", "no array 'chunk_ids'")
    code, _, err = _run(capsys, corpus, "--out", out, "--anchor", "novalue")
    assert code == 2
    _one_error_line(err, "--anchor novalue: expected NAME=FILE.npz")
    assert not out.exists() or not list(out.iterdir())  # none of them wrote anything


def test_the_musicnn_anchor_reads_the_chunk_list_the_benchmark_writes(tmp_path):
    """bench/anchors/musicnn_embed.py runs in its own venv (TensorFlow); its torch- and
    TensorFlow-free parts are checked here: the columns it reads and its patches."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "musicnn_embed", REPO / "bench" / "anchors" / "musicnn_embed.py")
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    assert set(m.COLUMNS) <= set(ra.CHUNK_COLUMNS)
    p = tmp_path / "a.wav"
    sf.write(p, np.zeros(int(SECONDS * SR), np.float32), SR)
    chunks, _ = ra.plan_chunks([ra.Track("a", p)])
    ra.write_chunk_list(tmp_path / "chunks.csv", chunks)
    rows = m.read_chunks(tmp_path / "chunks.csv")
    assert [r["chunk_id"] for r in rows] == [c.chunk_id for c in chunks]
    rep = np.arange(257 * 96, dtype=np.float32).reshape(257, 96)  # 4.096 s at hop 256
    patches = m.patches(rep, 187)
    assert patches.shape == (2, 187, 96) and patches[1, -1, 0] == rep[-1, 0]


# ------------------------------------------------------------------ held-out tracks


def _dataset(root: Path, splits: dict[str, list[str]], relative: bool = False) -> Path:
    """What create_dataset.py leaves after import_audio.py: a Melon directory with its
    track_ids.csv, and a dataset whose splits.json lists the integer ids."""
    melon, data = root / "melon", root / "dataset"
    melon.mkdir(parents=True)
    data.mkdir()
    ids = [t for s in ("train", "val", "test") for t in splits[s]]
    with open(melon / "track_ids.csv", "w", newline="") as f:
        f.write("id,track_id,path\n" + "".join(f"{i},{t},{t}.wav\n" for i, t in enumerate(ids)))
    src = "../melon" if relative else str(melon)
    (data / "manifest.json").write_text(json.dumps({"source": {"generated": False,
                                                               "melon_dir": src}}))
    (data / "splits.json").write_text(json.dumps(
        {s: [ids.index(t) for t in splits[s]] for s in ("train", "val", "test")}))
    return data


def _add_works(corpus: Path, works: dict[str, str]) -> None:
    with open(corpus / "tracks.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["work"] = works.get(r["track_id"], r["track_id"])
    with open(corpus / "tracks.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


SPLIT = {"train": ["t0", "t1", "t4"], "val": ["t5"], "test": ["t2", "t3", "t6", "t7"]}


def test_a_split_is_read_by_the_collections_ids_and_shared_works_are_left_out(corpus,
                                                                               tmp_path):
    data = _dataset(tmp_path, SPLIT, relative=True)  # melon_dir relative to the dataset
    s = ra.read_split(data, "test")
    assert s.chosen == {"t2", "t3", "t6", "t7"} and s.others == {"t0", "t1", "t4", "t5"}
    c, info = ra.select_split(ra.read_corpus(corpus, None, ["work"]), s, "work")
    assert len(c.tracks) == 4 and "no column 'work'" in info["notes"][0]
    _add_works(corpus, {"t3": "w", "t5": "w"})  # one work on both sides
    c, info = ra.select_split(ra.read_corpus(corpus, None, ["work"]), s, "work")
    assert [t.track_id for t in c.tracks] == ["t2", "t6", "t7"]
    assert info["left_out_shared_group"] == [{"track_id": "t3", "work": "w"}]
    assert (info["split_tracks"], info["in_table"], info["scored"]) == (4, 4, 3)
    c, info = ra.select_split(ra.read_corpus(corpus, None, ["work"]), s, None)  # no check
    assert len(c.tracks) == 4 and info["left_out_shared_group"] == []
    with pytest.raises(ValueError, match="read without its 'work' column"):
        ra.select_split(ra.read_corpus(corpus, None, ["album"]), s, "work")


def test_split_errors_are_one_line(corpus, tmp_path):
    with pytest.raises(ConfigError, match="manifest.json: file not found"):
        ra.read_split(tmp_path, "test")
    data = _dataset(tmp_path, SPLIT)
    (tmp_path / "melon" / "track_ids.csv").unlink()
    with pytest.raises(ConfigError, match="holds no track_ids.csv"):
        ra.read_split(data, "test")
    other = _dataset(tmp_path / "o", {"train": ["x1"], "val": ["x2"], "test": ["x3"]})
    with pytest.raises(ConfigError, match="none of the 1 tracks of the test split"):
        ra.select_split(ra.read_corpus(corpus), ra.read_split(other, "test"), "work")


def test_cli_scores_only_the_held_out_tracks(corpus, tmp_path, capsys):
    _add_works(corpus, {"t3": "w", "t5": "w"})
    data = _dataset(tmp_path, SPLIT)
    chunks = tmp_path / "chunks.csv"
    code, _, err = _run(capsys, corpus, "--split-from", data, "--write-chunks", chunks,
                        "--out", tmp_path / "out", "--within", "", "--min-per-class", "2")
    assert code == 0, err
    assert "left out 1 test tracks whose 'work' also has tracks in the other splits" in err
    assert {r.split(",")[1] for r in chunks.read_text().splitlines()[1:]} == {"t2", "t6", "t7"}
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["settings"]["tracks"] == 3 and res["settings"]["split"]["scored"] == 3
    for r in res["rows"]:  # every row on the same three tracks
        assert r["metrics"]["pool_top1"]["n"] == 3
    assert "the test split of" in (tmp_path / "out" / "results.md").read_text()
    code, _, err = _run(capsys, corpus, "--split", "test", "--out", tmp_path / "o2")
    assert code == 2
    _one_error_line(err, "--split needs --split-from")
    code, _, err = _run(capsys, corpus, "--split-from", tmp_path / "nothing", "--out",
                        tmp_path / "o2")
    assert code == 2
    _one_error_line(err, "manifest.json: file not found")
