"""The data pipeline: Melon reader, splits, CF, HDF5 files, skip report, atomic output."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from musicrep.data import builder as dataset_mod
from musicrep.data.cf import train_cf
from musicrep.data.builder import DatasetArgs, DatasetError, create_dataset
from musicrep.data.genres import multi_hot
from musicrep.data.h5io import read_cf_known
from musicrep.data.melon import (
    MelonFormatError,
    Playlist,
    TrackSkip,
    load_mel,
    read_playlists,
    read_song_meta,
)
from musicrep.data.splits import stratified_split

from tests.helpers import REPO

FAST = dict(frames=256, cf_factors=8, cf_epochs=5, workers=2)


def _h5(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {k: f["dataset"][k][:] for k in f["dataset"]}


# --- reader -----------------------------------------------------------------------------


def test_reader_parses_generated_corpus(toy_melon):
    root, summary = toy_melon
    songs = read_song_meta(root)
    playlists = read_playlists(root)
    assert len(songs) == summary["songs"]
    assert {p.source for p in playlists} == {"train.json", "val.json", "test.json"}
    assert all(isinstance(s, int) for p in playlists for s in p.songs)
    good = next(s.id for s in songs if s.genres and s.id not in _defect_ids(summary))
    mel = load_mel(root, good, min_frames=256)
    assert mel.shape[0] == 48 and mel.dtype == np.float32


def _defect_ids(summary: dict) -> set[int]:
    return {i for ids in summary["defects"].values() for i in ids}


@pytest.mark.parametrize("kind, reason", [
    ("missing", "mel_missing"), ("corrupt", "mel_unreadable"), ("zeros", "all_zero"),
    ("short", "too_short"), ("bad_bands", "wrong_shape"), ("nan", "non_finite"),
])
def test_load_mel_names_each_defect(toy_melon, kind, reason):
    root, summary = toy_melon
    ids = summary["defects"][kind]
    assert ids, f"the generated corpus planted no '{kind}' defect"
    for song_id in ids:
        with pytest.raises(TrackSkip) as e:
            load_mel(root, song_id, min_frames=300)
        assert e.value.reason == reason


def test_malformed_json_names_the_file(make_melon):
    root, _ = make_melon()
    (root / "song_meta.json").write_text('[{"id": 0, "song_name": "a"')
    with pytest.raises(MelonFormatError, match=r"song_meta\.json: not valid JSON"):
        read_song_meta(root)


def test_missing_field_names_record_and_field(make_melon):
    root, _ = make_melon()
    playlists = json.loads((root / "train.json").read_text())
    del playlists[3]["songs"]
    (root / "train.json").write_text(json.dumps(playlists))
    with pytest.raises(MelonFormatError, match=r"train\.json: record 3 \(id \d+\) has no field 'songs'"):
        read_playlists(root)


def test_mistyped_field_is_named(make_melon):
    root, _ = make_melon()
    meta = json.loads((root / "song_meta.json").read_text())
    meta[5]["song_gn_gnr_basket"] = "GN0100"
    (root / "song_meta.json").write_text(json.dumps(meta))
    with pytest.raises(MelonFormatError, match=r"record 5 .*'song_gn_gnr_basket'.*expected list of str"):
        read_song_meta(root)


# --- splits and CF ----------------------------------------------------------------------


def test_stratified_split_is_disjoint_balanced_and_seeded():
    rng = np.random.default_rng(0)
    n, g = 2000, 12
    labels = np.full((n, 100), -1, np.int16)
    labels[:, 0] = rng.integers(0, 4, n)
    labels[:, 1] = 4 + rng.integers(0, 8, n)
    y = multi_hot(labels, g)
    tr, va, te = stratified_split(y, 0.1, 0.1, seed=0)
    assert len(set(tr) | set(va) | set(te)) == n == len(tr) + len(va) + len(te)
    assert abs(len(te) - 200) <= 5 and abs(len(va) - 180) <= 5
    for part, frac in ((tr, 0.81), (va, 0.09), (te, 0.10)):
        share = y[part].sum(0) / y.sum(0)  # each genre's share in this split
        assert np.all(np.abs(share - frac) < 0.03), share
    again = stratified_split(y, 0.1, 0.1, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip((tr, va, te), again))
    other = stratified_split(y, 0.1, 0.1, seed=1)
    assert not np.array_equal(te, other[2])


def test_cf_is_seeded_and_has_the_bias_column(toy_melon):
    playlists = [p for p in read_playlists(toy_melon[0]) if p.source == "train.json"]
    ids = np.arange(200)
    a = train_cf(playlists, ids, "bpr", factors=16, epochs=10, seed=42, show_progress=False)
    b = train_cf(playlists, ids, "bpr", factors=16, epochs=10, seed=42, show_progress=False)
    c = train_cf(playlists, ids, "bpr", factors=16, epochs=10, seed=7, show_progress=False)
    assert a.track_vectors.shape == (200, 17) and a.track_vectors.dtype == np.float32
    np.testing.assert_array_equal(a.track_vectors, b.track_vectors)
    assert not np.array_equal(a.track_vectors, c.track_vectors)
    np.testing.assert_allclose(a.playlist_vectors[:, -1], 1.0)  # user side of the item bias
    als = train_cf(playlists, ids, "als", factors=16, epochs=3, seed=42, show_progress=False)
    assert als.track_vectors.shape == (200, 17)


def test_cf_runs_on_cpu_and_zeroes_tracks_without_interactions(toy_melon):
    playlists = [p for p in read_playlists(toy_melon[0]) if p.source == "train.json"]
    in_playlists = sorted({s for p in playlists for s in p.songs})
    unseen = 10**7  # no playlist holds it
    ids = np.asarray([*in_playlists[:60], unseen])
    for algorithm in ("bpr", "als"):
        cf = train_cf(playlists, ids, algorithm, factors=8, epochs=5, show_progress=False)
        # numpy on the host (implicit's GPU build would hand back its own matrix type)
        assert type(cf.track_vectors) is np.ndarray and type(cf.playlist_vectors) is np.ndarray
        assert cf.track_interactions[-1] == 0 and (cf.track_interactions[:-1] > 0).all()
        expected = [sum(s in p.songs for p in playlists) for s in ids[:5]]
        assert cf.track_interactions[:5].tolist() == expected
        assert not cf.track_vectors[-1].any()  # factors and bias column
        assert np.abs(cf.track_vectors[:-1]).sum(1).min() > 0

    # implicit itself never updates an unseen item: its row, bias column included, stays
    # zero, which is what datasets made before the cf_known flag hold (h5io.py).
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    from musicrep.data.cf import interaction_matrix

    matrix, _ = interaction_matrix(playlists, ids)
    model = BayesianPersonalizedRanking(factors=8, iterations=5, random_state=0, num_threads=1)
    model.fit(matrix, show_progress=False)
    assert not np.asarray(model.item_factors)[-1].any()


# --- the built dataset --------------------------------------------------------------------


def test_dataset_files_have_the_original_layout(tiny_dataset, toy_melon):
    root, _ = toy_melon
    genres = json.loads((tiny_dataset / "genres.json").read_text())
    meta = {s.id: s for s in read_song_meta(root)}
    ids_seen = set()
    for split in ("train", "val", "test"):
        d = _h5(tiny_dataset / f"{split}.h5")
        n = len(d["id"])
        assert d["id"].shape == (n, 1) and d["id"].dtype == np.int32
        assert d["data"].shape == (n, 300, 48) and d["data"].dtype == np.float32
        assert d["label"].shape == (n, 100) and d["label"].dtype == np.int16
        assert ("cf_data" in d) == (split != "test")
        if split != "test":
            assert d["cf_data"].shape == (n, 33) and d["cf_data"].dtype == np.float32
        ids = d["id"][:, 0]
        assert not ids_seen & set(ids.tolist())
        ids_seen |= set(ids.tolist())
        # data is the first frames of the mel, transposed to frames x bands
        sid = int(ids[0])
        np.testing.assert_array_equal(d["data"][0], load_mel(root, sid)[:, :300].T)
        # labels decode to the song's genre codes
        codes = {genres["codes"][i] for i in d["label"][0] if i >= 0}
        assert codes == set(meta[sid].genres + meta[sid].detail_genres)
    splits = json.loads((tiny_dataset / "splits.json").read_text())
    n_train, n_val, n_test = (len(splits[k]) for k in ("train", "val", "test"))
    total = n_train + n_val + n_test
    assert 0.07 < n_test / total < 0.13 and 0.06 < n_val / total < 0.12
    manifest = json.loads((tiny_dataset / "manifest.json").read_text())
    assert manifest["counts"]["train_tracks"] == n_train
    with h5py.File(tiny_dataset / "train.h5") as f:
        assert json.loads(f.attrs["manifest"])["seed"] == 0


def test_every_major_genre_is_in_every_split(tiny_dataset):
    genres = json.loads((tiny_dataset / "genres.json").read_text())
    majors = {i for i, m in enumerate(genres["major"]) if m}
    for split in ("train", "val", "test"):
        labels = _h5(tiny_dataset / f"{split}.h5")["label"]
        assert majors <= set(labels[labels >= 0].tolist()), split


def test_skip_report_lists_exactly_the_planted_defects(tiny_dataset, toy_melon):
    _, summary = toy_melon
    report = json.loads((tiny_dataset / "skipped.json").read_text())
    by_id = {t["id"]: t["reason"] for t in report["tracks"]}
    expected = {"missing": "mel_missing", "corrupt": "mel_unreadable", "zeros": "all_zero",
                "short": "too_short", "bad_bands": "wrong_shape", "nan": "non_finite",
                "empty_genre": "no_genre"}
    for kind, reason in expected.items():
        for song_id in summary["defects"][kind]:
            assert by_id.get(song_id) == reason, (kind, song_id)
    assert set(by_id) == _defect_ids(summary)
    assert report["count"] == len(by_id) == sum(report["by_reason"].values())
    written = set().union(*json.loads((tiny_dataset / "splits.json").read_text()).values())
    assert not written & set(by_id)


def test_side_files_for_evaluation(tiny_dataset):
    splits = {k: set(v) for k, v in json.loads((tiny_dataset / "splits.json").read_text()).items()}
    cont = json.loads((tiny_dataset / "continuation.json").read_text())["playlists"]
    assert len(cont) > 20
    for pl in cont:
        assert pl["known"] and pl["held_out"]
        assert set(pl["known"]) <= splits["train"] | splits["val"]
        assert set(pl["held_out"]) <= splits["test"]
    tags = json.loads((tiny_dataset / "track_tags.json").read_text())
    assert 0 < len(tags["tags"]) <= 50
    assert set(map(int, tags["tracks"])) == set().union(*splits.values())
    pop = json.loads((tiny_dataset / "popularity.json").read_text())
    assert sum(pop.values()) > 0
    pv = np.load(tiny_dataset / "cf_playlists.npy")
    assert pv.shape == (len(np.load(tiny_dataset / "cf_playlist_ids.npy")), 33)


def test_tracks_in_no_training_playlist_are_flagged_and_counted(make_melon, tmp_path):
    root, summary = make_melon()
    playlists = json.loads((root / "train.json").read_text())
    dropped = set(range(0, 80, 6)) - _defect_ids(summary)  # taken out of every train.json playlist
    for pl in playlists:
        pl["songs"] = [s for s in pl["songs"] if s not in dropped]
    (root / "train.json").write_text(json.dumps(playlists))
    in_train_json = {s for pl in playlists for s in pl["songs"]}
    out = tmp_path / "out"
    manifest = create_dataset(DatasetArgs(str(root), str(out), **FAST))

    report = json.loads((out / "skipped.json").read_text())["tracks_without_cf"]
    for split in ("train", "val"):
        d = _h5(out / f"{split}.h5")
        ids = d["id"][:, 0]
        expected = ~np.isin(ids, list(in_train_json))  # no interaction in the CF matrix
        assert d["cf_known"].dtype == np.uint8
        np.testing.assert_array_equal(d["cf_known"] == 0, expected)
        assert not d["cf_data"][expected].any() and d["cf_data"][~expected].any(1).all()
        assert manifest["counts"][f"{split}_tracks_without_cf"] == expected.sum()
        assert report[split] == sorted(ids[expected].tolist())
        assert (read_cf_known(out / f"{split}.h5")[0] == ~expected).all()
    assert report["count"] == sum(manifest["counts"][f"{s}_tracks_without_cf"] for s in ("train", "val"))
    assert manifest["counts"]["train_tracks_without_cf"] >= 1  # the check above saw some
    assert "cf_known" not in _h5(out / "test.h5")

    # A file without the flag (the original code's) is read by the all-zero-row rule.
    old = tmp_path / "old_train.h5"
    shutil.copy(out / "train.h5", old)
    with h5py.File(old, "a") as f:
        del f["dataset/cf_known"]
    known, stored = read_cf_known(old)
    assert not stored and (known == read_cf_known(out / "train.h5")[0]).all()


def test_tag_vocabulary_is_counted_on_train_and_val_tracks_only():
    split_of = {1: "train", 2: "train", 3: "val", 4: "test", 5: "test", 6: "test"}
    playlists = [
        Playlist(10, (1, 2, 4), ("shared",), "train.json"),
        Playlist(11, (3,), ("val_only",), "val.json"),
        # the most frequent tags over all tracks, but carried by test tracks only
        Playlist(12, (4, 5, 6), ("on_test_tracks",), "train.json"),
        Playlist(13, (4, 5, 6, 1), ("in_test_playlist",), "test.json"),
    ]
    _, tags, _ = dataset_mod._playlist_side_files(playlists, split_of)
    assert tags["tags"] == ["shared", "in_test_playlist", "val_only"]  # by train+val count
    assert "on_test_tracks" not in tags["tags"]
    assert tags["vocabulary_split"] == "train+val"
    # test tracks still have their labels within that vocabulary (the probe scores them)
    assert tags["tracks"]["4"] == [0, 1] and tags["tracks"]["5"] == [1]


def test_same_seed_same_dataset(make_melon, tmp_path):
    root, _ = make_melon()
    outs = []
    for i in range(2):
        out = tmp_path / f"out{i}"
        create_dataset(DatasetArgs(str(root), str(out), **FAST))
        outs.append(out)
    for name in ("train.h5", "val.h5", "test.h5"):
        a, b = _h5(outs[0] / name), _h5(outs[1] / name)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    assert (outs[0] / "splits.json").read_text() == (outs[1] / "splits.json").read_text()


# --- bad input and interruption -----------------------------------------------------------


def test_unknown_genre_code_and_empty_playlist_are_reported(make_melon, tmp_path):
    root, _ = make_melon()
    meta = json.loads((root / "song_meta.json").read_text())
    meta[0]["song_gn_gnr_basket"] = ["GN9900"]
    meta[0]["song_gn_dtl_gnr_basket"] = ["GN9901"]
    meta[1]["song_gn_dtl_gnr_basket"].append("GN9901")
    (root / "song_meta.json").write_text(json.dumps(meta))
    playlists = json.loads((root / "train.json").read_text())
    playlists[0]["songs"] = []
    (root / "train.json").write_text(json.dumps(playlists))
    out = tmp_path / "out"
    create_dataset(DatasetArgs(str(root), str(out), **FAST))
    report = json.loads((out / "skipped.json").read_text())
    assert report["unknown_genre_codes"] == {"GN9900": 1, "GN9901": 2}
    assert {"id": meta[0]["id"], "reason": "no_genre", "detail": ""} in report["tracks"]
    assert report["playlists"] == [{"id": playlists[0]["id"], "reason": "empty_playlist"}]
    assert "GN9901" not in json.loads((out / "genres.json").read_text())["codes"]


def test_interrupted_run_leaves_no_final_files_and_rerun_is_clean(make_melon, tmp_path, monkeypatch):
    root, _ = make_melon()
    out = tmp_path / "out"
    calls = {"n": 0}
    real = dataset_mod._read_mel_frames

    def interrupted(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 30:  # partway through train.h5
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(dataset_mod, "_read_mel_frames", interrupted)
    with pytest.raises(KeyboardInterrupt):
        create_dataset(DatasetArgs(str(root), str(out), **FAST))
    assert not out.exists()  # built beside it, never under its name
    assert not list(tmp_path.glob(".out.*"))  # the partial build and the lock are gone
    monkeypatch.setattr(dataset_mod, "_read_mel_frames", real)
    create_dataset(DatasetArgs(str(root), str(out), **FAST))
    assert (out / "manifest.json").is_file()
    assert not list(out.glob(".*"))


def test_finished_dataset_is_not_overwritten_by_accident(make_melon, tmp_path):
    root, _ = make_melon()
    out = tmp_path / "out"
    create_dataset(DatasetArgs(str(root), str(out), **FAST))
    with pytest.raises(DatasetError, match="already holds a finished dataset"):
        create_dataset(DatasetArgs(str(root), str(out), **FAST))
    create_dataset(DatasetArgs(str(root), str(out), overwrite=True, **FAST))


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / script), *args], capture_output=True,
                          text=True, cwd=REPO)


def test_cli_reports_bad_input_in_one_line(make_melon, tmp_path):
    root, _ = make_melon()
    (root / "train.json").write_text("[{")
    r = _run("scripts/create_dataset.py", "--melon-dir", str(root), "--out-dir", str(tmp_path / "o"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("create_dataset: error: ")
    assert "train.json: not valid JSON" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o" / "manifest.json").exists()

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    r = _run("scripts/create_dataset.py", "--melon-dir", str(root), "--out-dir", str(blocker / "x"))
    assert r.returncode == 2 and "cannot create the output directory" in r.stderr


def test_cli_end_to_end_with_word2vec(make_melon, tmp_path):
    root, summary = make_melon(defects=True)
    out = tmp_path / "ds"
    r = _run("scripts/create_dataset.py", "--melon-dir", str(root), "--out-dir", str(out),
             "--frames", "256", "--cf-factors", "16", "--cf-epochs", "5", "--dtype", "float16")
    assert r.returncode == 0, r.stderr
    assert "skipped" in r.stdout and "skipped.json" in r.stdout
    assert _h5(out / "val.h5")["data"].dtype == np.float16
    mats = []
    for _ in range(2):
        r = _run("train_genre_w2v.py", "--dataset-dir", str(out), "--seed", "3")
        assert r.returncode == 0, r.stderr
        mats.append(np.load(out / "embedding_matrix_128.npy"))
    np.testing.assert_array_equal(mats[0], mats[1])  # separate processes, same seed
    n_genres = len(json.loads((out / "genres.json").read_text())["codes"])
    assert mats[0].shape == (n_genres + 1, 128)
    assert not mats[0][0].any()


def test_genre_word2vec_groups_detail_genres_by_major(tiny_dataset):
    # Details of one major genre share their context (the major) in the track baskets,
    # so word2vec should put them next to each other.
    m = np.load(tiny_dataset / "embedding_matrix_128.npy")
    codes = json.loads((tiny_dataset / "genres.json").read_text())["codes"]
    v = m[1:] / np.linalg.norm(m[1:], axis=1, keepdims=True)
    sim = v @ v.T
    details = [i for i, c in enumerate(codes) if not c.endswith("00")]
    same = 0
    for d in details:
        nearest = max((j for j in details if j != d), key=lambda j: sim[d, j])
        same += codes[nearest][:4] == codes[d][:4]
    assert same / len(details) >= 0.7, f"{same}/{len(details)}"


def test_manifest_names_its_source_and_whether_it_was_generated(make_melon, tmp_path):
    root, _ = make_melon()
    marker = {"generator": "musicrep.toy.melon.make_toy_melon", "seed": 1, "songs": 80}
    (root / "generated.json").write_text(json.dumps(marker))
    m = create_dataset(DatasetArgs(str(root), str(tmp_path / "gen"), **FAST))
    assert m["source"] == {"generated": True, "generator": marker, "melon_dir": str(root)}
    assert json.loads((tmp_path / "gen" / "manifest.json").read_text())["source"] == m["source"]

    (root / "generated.json").unlink()  # real Melon has no marker
    m = create_dataset(DatasetArgs(str(root), str(tmp_path / "real"), **FAST))
    assert m["source"] == {"generated": False, "generator": None, "melon_dir": str(root)}

    (root / "generated.json").write_text("[1, 2]")
    with pytest.raises(MelonFormatError, match="generated.json: expected a JSON object"):
        create_dataset(DatasetArgs(str(root), str(tmp_path / "bad"), **FAST))
