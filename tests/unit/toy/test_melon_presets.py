"""Presets of the generated Melon corpus (musicrep.toy.world.MELON_PRESETS): G0 is the
corpus as it was before presets existed, byte for byte; G1 and G2 change only the
playlists and the genre metadata, never the mels, the mood or the true genres.

Small corpora with short mels keep the file to a few seconds.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from musicrep.toy.melon import make_toy_melon
from musicrep.toy.melon_catalog import genre_code, niche_majors

from tests.helpers import REPO

# A tiny corpus with every planted defect, and what the generator wrote for it before
# presets existed (commit 5293d18, run from a worktree of that commit).
TINY = {"songs": 30, "playlists": 10, "frames": 32, "n_major": 3, "seed": 5, "defects": True}
TINY_JSON_SHA256 = {
    "generated.json":
        "86cbc40ccdf9f5543e6b07e6443c5d6e444c6d8c91c2aa3482029fe0f2d48074",
    "generated_truth.json":
        "4799c7e893857fd6ded6f376599faa625339f4ef43c74c94e993935c47ae25c6",
    "genre_gn_all.json":
        "253ccc143cee02fcbd7683bc9c1cc3112d3403b56d8d738a9d0a049c51665f64",
    "song_meta.json":
        "398ea9f40b85c0e98b5ce2780d045c75f8f2314d3e4fbfec265000c9e3fd097e",
    "test.json":
        "57f12d8adc4f896d7d5d58cca34f3fa27ee1984a1ddfaf4f38ad9092759e2ceb",
    "train.json":
        "2f3955174cf4f2525d16988608b00dc47cb501087988f51574e63b99783ce5bb",
    "val.json":
        "be8a422e4e7036b1dbd9e370ab08874143db463fca12f00e6d5d1fb6d0a9ffcd",
}
# sha256 over the "path sha256\n" lines of every arena_mel file, in path order
TINY_MELS_SHA256 = "8507e574035e6513040f4f4cf9469c453e0e4aeffbf8fc2bb37a25d53ad45990"

# Bigger (for the rates), with mels of 16 frames: the mels are the slow part.
MID = {"songs": 600, "playlists": 300, "frames": 16, "seed": 1}


def _load(out: Path, name: str):
    return json.loads((out / name).read_text(encoding="utf-8"))


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _mels_sha(root: Path) -> str:
    lines = "".join(f"{p.relative_to(root).as_posix()} {_sha(p)}\n"
                    for p in sorted((root / "arena_mel").rglob("*")) if p.is_file())
    return hashlib.sha256(lines.encode()).hexdigest()


def _playlists(out: Path) -> list[dict]:
    return sorted((p for s in ("train", "val", "test") for p in _load(out, f"{s}.json")),
                  key=lambda p: p["id"])


@pytest.fixture(scope="module")
def mid(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    root = tmp_path_factory.mktemp("presets")
    return {name: (root / name, make_toy_melon(root / name, preset=name, **MID))
            for name in ("G0", "G1", "G2")}


# ------------------------------------------------------------------------------ G0


@pytest.mark.parametrize("preset", [None, "G0"])
def test_g0_is_the_corpus_before_presets(preset, tmp_path):
    out = tmp_path / "g0"
    kw = {} if preset is None else {"preset": preset}
    summary = make_toy_melon(out, **TINY, **kw)
    got = {p.name: _sha(p) for p in sorted(out.glob("*.json"))}
    assert got == TINY_JSON_SHA256
    assert _mels_sha(out) == TINY_MELS_SHA256
    assert summary["preset"] == "G0"
    assert "preset" not in _load(out, "generated.json")


# ------------------------------------------------------- what a preset may change


def test_presets_keep_mels_mood_and_true_genres(mid):
    g0 = mid["G0"][0]
    truth0 = _load(g0, "generated_truth.json")
    for name in ("G1", "G2"):
        out = mid[name][0]
        assert _mels_sha(out) == _mels_sha(g0), name
        assert _load(out, "genre_gn_all.json") == _load(g0, "genre_gn_all.json")
        truth = _load(out, "generated_truth.json")
        for key in ("song_mood", "song_major_genres", "song_detail_genres"):
            assert truth[key] == truth0[key], (name, key)
        assert truth["generator"]["preset"] == name
        # the playlists are what changes
        assert [p["songs"] for p in _playlists(out)] != [p["songs"] for p in _playlists(g0)]
    # G1 leaves the metadata as G0 wrote it; G2 only the genre baskets differ
    assert _load(mid["G1"][0], "song_meta.json") == _load(g0, "song_meta.json")
    genre_keys = {"song_gn_gnr_basket", "song_gn_dtl_gnr_basket"}
    for s0, s2 in zip(_load(g0, "song_meta.json"), _load(mid["G2"][0], "song_meta.json"),
                      strict=True):
        assert {k: v for k, v in s0.items() if k not in genre_keys} == \
               {k: v for k, v in s2.items() if k not in genre_keys}


def test_g1_playlists_mostly_mood_themed_with_a_long_tail(mid):
    out, summ = mid["G1"]
    truth = _load(out, "generated_truth.json")
    themes = truth["playlist_themes"]
    gated = np.mean([bool(t["major_genres"]) for t in themes.values()])
    assert 0.25 < gated < 0.45, gated
    # a mood-themed playlist names no genre in its tags, and its songs follow the mood
    words = {"ballad", "dance", "hiphop", "rnb", "indie", "rock", "trot", "folk"}
    mood = np.array(truth["song_mood"])
    for p in _playlists(out):
        if not themes[str(p["id"])]["major_genres"]:
            assert not words & set(p["tags"]), p["tags"]
    mood_lists = [p for p in _playlists(out) if not themes[str(p["id"])]["major_genres"]]
    gap = np.mean([np.abs(mood[p["songs"]] - themes[str(p["id"])]["mood"]).mean()
                   for p in mood_lists])
    rng = np.random.default_rng(0)
    gap_rand = np.mean([np.abs(mood[rng.choice(len(mood), len(p["songs"]))]
                               - themes[str(p["id"])]["mood"]).mean() for p in mood_lists])
    assert gap < 0.8 * gap_rand

    # the niche genres: the smallest, listed in the truth, at the bottom of the tail
    primary = [mj[0] for mj in summ["truth"]["song_majors"]]
    niche = summ["truth"]["niche_majors"]
    assert len(niche) == 2 and niche == niche_majors(primary, list(range(8)), 2)
    assert truth["niche_major_genres"] == [genre_code(k) for k in niche]
    count = Counter(s for p in _playlists(out) for s in p["songs"])
    n_pl = np.array([count[i] for i in range(MID["songs"])])
    is_niche = np.isin(primary, niche)
    assert np.median(n_pl[is_niche]) <= 2 < np.median(n_pl[~is_niche]), (
        np.median(n_pl[is_niche]), np.median(n_pl[~is_niche]))
    # heavier tail than G0: the top songs hold a larger share of all placements
    count0 = Counter(s for p in _playlists(mid["G0"][0]) for s in p["songs"])

    def top_share(c: Counter) -> float:
        v = np.sort(np.array(list(c.values())))[::-1]
        return v[: len(v) // 20].sum() / v.sum()

    assert top_share(count) > top_share(count0)
    # every song still has a place (put anywhere)
    assert summ["songs_in_playlists"] >= 0.99 * MID["songs"]


def test_g2_metadata_errors_are_per_artist_and_truth_intact(mid):
    out, summ = mid["G2"]
    meta = _load(out, "song_meta.json")
    truth = _load(out, "generated_truth.json")
    errors = truth["metadata_errors"]
    n_artists = len({s["artist_id_basket"][0] for s in meta})
    assert abs(len(errors["artists"]) / n_artists - 0.2) < 0.03
    wrong_songs = set(errors["songs"])
    assert wrong_songs
    for s in meta:
        true = truth["song_major_genres"][s["id"]]
        written = s["song_gn_gnr_basket"]
        a = str(s["artist_id_basket"][0])
        # every detail code still belongs to a written major
        assert all(c[:4] + "00" in written for c in s["song_gn_dtl_gnr_basket"])
        if a in errors["artists"]:
            e = errors["artists"][a]
            assert s["id"] in wrong_songs and e["true"] == true[0] != e["written"]
            assert written[0] == e["written"] and true[0] not in written
        else:
            assert s["id"] not in wrong_songs and written == true
    # the playlists follow the true genre: G2's playlists are G1's
    assert [p["songs"] for p in _playlists(out)] == [p["songs"] for p in _playlists(mid["G1"][0])]
    assert summ["truth"]["wrong_genre_artists"]


# --------------------------------------------------------------------------- CLI


def test_cli_preset_option(tmp_path):
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "scripts/make_toy_melon.py", *args], cwd=REPO,
                              capture_output=True, text=True, timeout=120, check=False)

    out = tmp_path / "g2"
    r = cli("--out", str(out), "--songs", "40", "--playlists", "12", "--frames", "16",
            "--preset", "G2")
    assert r.returncode == 0, r.stderr
    assert "(preset G2)" in r.stdout
    assert _load(out, "generated.json")["preset"] == "G2"
    r = cli("--out", str(tmp_path / "bad"), "--preset", "G9")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "--preset" in r.stderr and not (tmp_path / "bad").exists()
