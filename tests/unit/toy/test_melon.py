"""Tests of the generated Melon-layout corpus (musicrep.toy.melon and its CLI).

Small corpora (a few hundred songs, 300 frames) keep the whole file to a few seconds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from musicrep.audio import N_MELS
from musicrep.data.melon import mel_path
from musicrep.toy.melon import make_toy_melon
from musicrep.toy.melon_mels import BAD_BANDS, DEFECT_KINDS

from tests.helpers import REPO

SMALL = {"songs": 120, "playlists": 60, "frames": 300}

PLAYLIST_KEYS = {"id": int, "plylst_title": str, "tags": list, "songs": list,
                 "like_cnt": int, "updt_date": str}
SONG_KEYS = {"id": int, "song_name": str, "album_id": int, "album_name": str,
             "artist_id_basket": list, "artist_name_basket": list,
             "song_gn_gnr_basket": list, "song_gn_dtl_gnr_basket": list, "issue_date": str}


@pytest.fixture(scope="module")
def defect_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy") / "melon"
    return out, make_toy_melon(out, seed=0, defects=True, **SMALL)


@pytest.fixture(scope="module")
def clean_corpus(tmp_path_factory):
    """Bigger and defect-free: enough songs per genre to check the planted structure."""
    out = tmp_path_factory.mktemp("toy") / "melon"
    return out, make_toy_melon(out, songs=400, playlists=150, frames=300, n_major=4, seed=3)


def _load(out: Path, name: str):
    return json.loads((out / name).read_text(encoding="utf-8"))


def _tree_hash(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _mel_kind(path: Path, frames: int) -> str | None:
    """How a reader would judge a mel file: a defect kind, or None when usable."""
    if not path.exists():
        return "missing"
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError):
        return "corrupt"
    if x.ndim != 2 or x.shape[0] != N_MELS:
        return "bad_bands"
    if x.shape[1] < frames:
        return "short"
    if np.isnan(x).any():
        return "nan"
    if not x.any():
        return "zeros"
    return None


# ------------------------------------------------------------------------- layout


def test_layout_and_field_types(defect_corpus):
    out, summ = defect_corpus
    for name in ("train.json", "val.json", "test.json", "song_meta.json", "genre_gn_all.json"):
        assert (out / name).is_file(), name
    assert not list(out.parent.glob("melon.tmp-*")), "temporary build dir left behind"

    genres = _load(out, "genre_gn_all.json")
    assert isinstance(genres, dict)
    assert all(re.fullmatch(r"GN\d{4}", c) and isinstance(n, str) and n for c, n in genres.items())
    majors = sorted(c for c in genres if c.endswith("00"))
    assert majors == [f"GN{k:02d}00" for k in range(1, 9)]
    for m in majors:
        n_det = sum(1 for c in genres if c[:4] == m[:4] and not c.endswith("00"))
        assert 2 <= n_det <= 4
    assert len(genres) == summ["genre_codes"]

    meta = _load(out, "song_meta.json")
    assert [s["id"] for s in meta] == list(range(SMALL["songs"]))
    n_two = 0
    for s in meta:
        assert set(s) == set(SONG_KEYS)
        for k, typ in SONG_KEYS.items():
            assert isinstance(s[k], typ), (k, s[k])
        assert all(isinstance(a, int) for a in s["artist_id_basket"])
        assert all(isinstance(a, str) for a in s["artist_name_basket"])
        assert len(s["artist_id_basket"]) == len(s["artist_name_basket"]) >= 1
        dt.datetime.strptime(s["issue_date"], "%Y%m%d")
        if s["id"] in summ["defects"]["empty_genre"]:
            continue
        gn, dtl = s["song_gn_gnr_basket"], s["song_gn_dtl_gnr_basket"]
        assert 1 <= len(gn) <= 2 and 1 <= len(dtl) <= 2
        assert all(c in genres and c.endswith("00") for c in gn)
        # every detail code belongs to one of the song's majors
        assert all(c in genres and not c.endswith("00") and c[:4] + "00" in gn for c in dtl)
        n_two += len(gn) == 2
    assert 0 < n_two < 0.4 * len(meta)
    assert not any("mood" in k for s in meta for k in s), "mood must stay hidden"

    ids, counts = [], {}
    for split in ("train", "val", "test"):
        pls = _load(out, f"{split}.json")
        counts[split] = len(pls)
        for p in pls:
            assert set(p) == set(PLAYLIST_KEYS)
            for k, typ in PLAYLIST_KEYS.items():
                assert isinstance(p[k], typ), (k, p[k])
            assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.000", p["updt_date"])
            assert p["tags"] and all(isinstance(t, str) and t for t in p["tags"])
            assert p["plylst_title"] and p["like_cnt"] >= 0
            assert 1 <= len(p["songs"]) <= 60 and len(set(p["songs"])) == len(p["songs"])
            assert all(isinstance(x, int) and 0 <= x < SMALL["songs"] for x in p["songs"])
            ids.append(p["id"])
    assert len(ids) == len(set(ids)) == SMALL["playlists"]
    assert counts == summ["splits"]
    assert counts["train"] == 48 and counts["val"] == counts["test"] == 6


def test_every_song_in_a_playlist(defect_corpus, clean_corpus):
    for _, summ in (defect_corpus, clean_corpus):
        assert summ["songs_in_playlists"] == summ["songs"]


def test_mels_shape_dtype_range(clean_corpus):
    out, summ = clean_corpus
    assert all(not v for v in summ["defects"].values())
    means = []
    for i in range(summ["songs"]):
        p = mel_path(out, i)
        assert p.parent.name == str(i // 1000)
        x = np.load(p)
        assert x.shape == (N_MELS, 300) and x.dtype == np.float32
        assert np.isfinite(x).all() and x.min() >= -100.0 and x.max() <= 20.0
        means.append(x.mean(axis=1))
    means = np.array(means)
    # dB of mel power: loud low bands, much quieter high bands, tens of dB of range
    assert -40 < means.mean() < 0
    assert means[:, :8].mean() > means[:, -8:].mean() + 20


def test_mel_dtype_option(tmp_path):
    out = tmp_path / "f16"
    make_toy_melon(out, songs=12, playlists=4, frames=64, mel_dtype=np.float16)
    assert np.load(mel_path(out, 3)).dtype == np.float16


# ------------------------------------------------------------------------ defects


def test_defects_exactly_as_summarised(defect_corpus):
    out, summ = defect_corpus
    bad = summ["defects"]
    assert tuple(bad) == DEFECT_KINDS and all(bad[k] for k in DEFECT_KINDS)
    all_bad = [i for ids in bad.values() for i in ids]
    assert len(all_bad) == len(set(all_bad)) == summ["n_defect_songs"]
    assert len(all_bad) <= 0.1 * SMALL["songs"]

    expect = {i: k for k, ids in bad.items() if k != "empty_genre" for i in ids}
    found = {}
    for i in range(SMALL["songs"]):
        kind = _mel_kind(mel_path(out, i), SMALL["frames"])
        if kind is not None:
            found[i] = kind
    assert found == expect
    for i in bad["bad_bands"]:
        assert np.load(mel_path(out, i)).shape[0] == BAD_BANDS

    meta = _load(out, "song_meta.json")
    empty = [s["id"] for s in meta if not s["song_gn_gnr_basket"]]
    assert empty == bad["empty_genre"]
    assert all(not meta[i]["song_gn_dtl_gnr_basket"] for i in empty)


# -------------------------------------------------------------------- determinism


def test_deterministic_for_a_seed(defect_corpus, tmp_path):
    out, _ = defect_corpus
    again = tmp_path / "again"
    make_toy_melon(again, seed=0, defects=True, **SMALL)
    assert _tree_hash(out) == _tree_hash(again)

    other = tmp_path / "other"
    make_toy_melon(other, seed=1, defects=True, **SMALL)
    h0, h1 = _tree_hash(out), _tree_hash(other)
    assert h0["song_meta.json"] != h1["song_meta.json"]
    assert h0["train.json"] != h1["train.json"]
    assert h0["arena_mel/0/5.npy"] != h1.get("arena_mel/0/5.npy")


# --------------------------------------------------------------- planted structure


def _features(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(band means, band means + band std + onset autocorrelation) of a mel."""
    e = x.mean(axis=0)
    on = np.maximum(np.diff(e), 0.0)
    on = on - on.mean()
    ac = np.correlate(on, on, "full")[len(on) - 1:][1:80] / (on @ on)
    m = x.mean(axis=1)
    return m, np.concatenate([m, x.std(axis=1), ac])


def test_audio_predicts_major_genre(clean_corpus):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out, summ = clean_corpus
    y = np.array(summ["truth"]["song_major"])
    feats = [_features(np.load(mel_path(out, i)).astype(np.float64)) for i in range(len(y))]
    f_mean = np.array([f[0] for f in feats])
    f_all = np.array([f[1] for f in feats])
    majority = np.bincount(y).max() / len(y)

    def acc(X):  # held-out accuracy, 5-fold
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        cv = StratifiedKFold(5, shuffle=True, random_state=0)
        return cross_val_score(clf, X, y, cv=cv).mean()

    a_mean, a_all = acc(f_mean), acc(f_all)
    # band means alone: informative but far from enough; the time structure adds a lot
    assert majority + 0.08 < a_mean < 0.7, (a_mean, majority)
    assert a_all > 0.75 and a_all > a_mean + 0.15, (a_all, a_mean)


def test_playlists_concentrate_on_theme(clean_corpus):
    out, summ = clean_corpus
    truth = summ["truth"]
    y = np.array(truth["song_major"])
    mood = np.array(truth["song_mood"])
    pls = [p for s in ("train", "val", "test") for p in _load(out, f"{s}.json")]
    meta = _load(out, "song_meta.json")

    # hidden theme: most songs of a playlist come from its theme genres
    in_theme = [np.mean([y[s] in truth["playlist_majors"][p["id"]] for s in p["songs"]])
                for p in pls]
    assert np.mean(in_theme) > 0.7

    # visible in the metadata too: the top genre of a playlist dominates it, far beyond
    # what a random set of songs of the same size shows
    def top_share(lists):
        out_ = []
        for lst in lists:
            c = Counter(g for s in lst for g in meta[s]["song_gn_gnr_basket"][:1])
            out_.append(c.most_common(1)[0][1] / len(lst))
        return np.mean(out_)

    rng = np.random.default_rng(0)
    shuffled = [rng.choice(len(meta), size=len(p["songs"]), replace=False) for p in pls]
    assert top_share([p["songs"] for p in pls]) > top_share(shuffled) + 0.25

    # mood: songs of a playlist are closer to its mood preference than random songs
    gap = [np.abs(mood[p["songs"]] - truth["playlist_mood"][p["id"]]).mean() for p in pls]
    gap_rand = [np.abs(mood[s] - truth["playlist_mood"][p["id"]]).mean()
                for p, s in zip(pls, shuffled, strict=True)]
    assert np.mean(gap) < 0.75 * np.mean(gap_rand)

    # tags carry the theme's genre word
    words = {"ballad", "dance", "hiphop", "rnb"}
    assert np.mean([bool(words & set(p["tags"])) for p in pls]) > 0.9


def test_popularity_is_skewed(clean_corpus):
    out, _ = clean_corpus
    pls = [p for s in ("train", "val", "test") for p in _load(out, f"{s}.json")]
    occ = np.array(sorted(Counter(s for p in pls for s in p["songs"]).values()))[::-1]
    assert occ[0] > 5 * np.median(occ)


# ---------------------------------------------------------------------- arguments


def test_refuses_nonempty_out_and_bad_args(tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        make_toy_melon(out, songs=12, playlists=4, frames=32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    with pytest.raises(ValueError):
        make_toy_melon(tmp_path / "x", songs=3)
    # an existing empty directory is fine
    empty = tmp_path / "empty"
    empty.mkdir()
    make_toy_melon(empty, songs=12, playlists=4, frames=32)
    assert (empty / "song_meta.json").is_file()


# ---------------------------------------------------------------------------- CLI


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/make_toy_melon.py", *args], check=False,
                          cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_cli_end_to_end(tmp_path):
    out = tmp_path / "cli"
    args = ["--out", str(out), "--songs", "30", "--playlists", "10", "--frames", "64",
            "--n-major", "3", "--seed", "5", "--defects"]
    r = _cli(*args)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip().splitlines()) == 1 and "30 songs" in r.stdout
    meta = _load(out, "song_meta.json")
    assert len(meta) == 30
    assert sum(len(_load(out, f"{s}.json")) for s in ("train", "val", "test")) == 10
    before = _tree_hash(out)

    # a second run into the same, now non-empty directory: refused, nothing written
    r = _cli(*args)
    assert r.returncode == 2
    assert "not empty" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert _tree_hash(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli"]

    # --force replaces it (another seed: the content changes)
    r = _cli(*args[:-3], "--seed", "6", "--defects", "--force")
    assert r.returncode == 0, r.stderr
    assert _tree_hash(out) != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli"]
