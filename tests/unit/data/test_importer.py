"""scripts/import_audio.py: tables -> Melon directory, mels equal to musicrep.audio's, skips, resume."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicrep.audio import MELON_SEGMENT, SAMPLE_RATE, file_mel, load_audio, mel_spectrogram_db
from musicrep.data.importer import CollectionError, import_collection, read_collection
from musicrep.data.melon import mel_path, read_genre_names, read_playlists, read_song_meta

from tests.helpers import REPO

SCRIPT = REPO / "scripts" / "import_audio.py"
MIN_FRAMES = 60  # ~1 s: the tests use short files; the default (1300) is create_dataset's


def _signal(seconds: float, sr: int, channels: int, seed: int) -> np.ndarray:
    """A few tones plus noise: (n, channels), different in every channel."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    cols = []
    for _ in range(channels):
        f = rng.uniform(100, min(3000, sr / 3), size=3)
        y = sum(np.sin(2 * np.pi * fi * t) for fi in f) / 4 + 0.05 * rng.standard_normal(t.size)
        cols.append(y)
    return np.stack(cols, axis=1).astype(np.float32)


# name -> (sample rate, channels, seconds, soundfile format, subtype)
GOOD = {
    "a.wav": (8000, 1, 3.0, "WAV", "PCM_16"),
    "b.flac": (48000, 2, 3.0, "FLAC", "PCM_16"),
    "c.ogg": (44100, 2, 3.0, "OGG", "VORBIS"),
    "d.opus": (48000, 1, 3.0, "OGG", "OPUS"),
    "e.mp3": (22050, 2, 3.0, "MP3", "MPEG_LAYER_III"),
    "f.flac": (16000, 1, 3.0, "FLAC", "PCM_24"),
}


def _write_collection(root: Path) -> dict[str, str]:
    """Audio in every format plus broken files; tracks.csv and playlists.csv. Returns the
    expected skip reason per broken track id."""
    (root / "music" / "sub").mkdir(parents=True)
    for i, (name, (sr, ch, sec, fmt, sub)) in enumerate(GOOD.items()):
        sf.write(root / "music" / "sub" / name, _signal(sec, sr, ch, i), sr, format=fmt, subtype=sub)
    good = (root / "music" / "sub" / "a.wav").read_bytes()
    (root / "music" / "zero.wav").write_bytes(b"")
    (root / "music" / "garbage.mp3").write_bytes(np.random.default_rng(0).integers(
        0, 256, 5000, dtype=np.uint8).tobytes())
    (root / "music" / "truncated.wav").write_bytes(good[:40])  # cut inside the header
    sf.write(root / "music" / "nosamples.wav", np.zeros((0, 1), np.float32), 16000)
    sf.write(root / "music" / "short.wav", _signal(0.3, 16000, 1, 9), 16000)  # < MIN_FRAMES
    broken = {"zero": "empty_file", "garbage": "undecodable", "truncated": "undecodable",
              "nosamples": "no_audio",
              "short": "too_short", "missing": "file_missing"}
    rows = [("t-" + n.split(".")[0], f"sub/{n}", g) for n, g in zip(
        GOOD, ["Rock/Punk", "Rock;Jazz/Bebop", "Jazz/Swing", "Jazz", "Pop", "Rock/Indie Rock"])]
    rows += [("zero", "zero.wav", "Pop"), ("garbage", "garbage.mp3", "Rock"),
             ("truncated", "truncated.wav", "Pop"), ("nosamples", "nosamples.wav", "Pop"),
             ("short", "short.wav", "Jazz"),
             ("missing", "nowhere.flac", "Pop")]
    with open(root / "tracks.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["track_id", "path", "genres", "artist"])
        for tid, path, g in rows:
            w.writerow([tid, path, g, "Someone; Other" if tid == "t-a" else "Someone"])
    with open(root / "playlists.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["playlist_id", "track_id", "title", "tags"])
        w.writerow(["user-1", "t-a", "Mine", "rock;loud"])
        w.writerow(["user-1", "t-b", "", "rock;late"])
        w.writerow(["user-1", "t-a", "", ""])  # a repeated listen
        w.writerow(["user-2", "t-c", "", "jazz"])
        w.writerow(["user-2", "zero", "", ""])
    return broken


def _id_map(out: Path) -> dict[int, str]:
    """track_ids.csv as integer id -> track_id."""
    with open(out / "track_ids.csv", newline="") as f:
        return {int(r["id"]): r["track_id"] for r in csv.DictReader(f)}


def _import(root: Path, out: Path, **kw):
    opts = {"workers": 2, "segment": "full", "min_frames": MIN_FRAMES, "progress": False} | kw
    return import_collection(root / "music", root / "tracks.csv", root / "playlists.csv", out, **opts)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("collection")
    broken = _write_collection(root)
    out = root / "melon"
    summary = _import(root, out)
    return root, out, summary, broken


def test_mels_equal_the_front_end(imported) -> None:
    root, out, summary, _ = imported
    ids = {r["track_id"]: r["id"] for r in read_collection(root / "tracks.csv",
                                                            root / "playlists.csv").tracks}
    for name in GOOD:
        got = np.load(mel_path(out, ids["t-" + name.split(".")[0]]))
        want = file_mel(root / "music" / "sub" / name)
        assert got.dtype == np.float32 and got.shape == want.shape == (48, 1 + 3 * SAMPLE_RATE // 256)
        np.testing.assert_array_equal(got, want)
    assert summary["counts"]["usable"] == len(GOOD) and summary["counts"]["written"] == len(GOOD)


def test_skip_report_names_broken_files(imported) -> None:
    _, out, summary, broken = imported
    report = json.loads((out / "import_skipped.json").read_text())
    assert {t["track_id"]: t["reason"] for t in report["tracks"]} == broken
    assert report["count"] == len(broken) == summary["counts"]["skipped"]
    assert all(t["detail"] for t in report["tracks"])
    for t in report["tracks"]:  # no mel for a skipped track
        assert not mel_path(out, t["id"]).exists()
    assert not (out / "generated.json").exists()  # real recordings: no generated marker


def test_melon_layout_and_id_map(imported) -> None:
    out = imported[1]
    names = read_genre_names(out)
    assert names == {"GN0100": "Jazz", "GN0101": "Bebop", "GN0102": "Swing", "GN0200": "Pop",
                     "GN0300": "Rock", "GN0301": "Indie Rock", "GN0302": "Punk"}
    songs = {s.id: s for s in read_song_meta(out)}
    by_tid = {tid: i for i, tid in _id_map(out).items()}
    assert sorted(by_tid.values()) == list(range(12))  # table order
    s = songs[by_tid["t-b"]]
    assert s.genres == ("GN0300", "GN0100") and s.detail_genres == ("GN0101",)
    assert songs[by_tid["t-a"]].detail_genres == ("GN0302",)
    meta = {r["id"]: r for r in json.loads((out / "song_meta.json").read_text())}
    assert meta[by_tid["t-a"]]["artist_name_basket"] == ["Someone", "Other"]
    assert meta[by_tid["t-a"]]["artist_id_basket"] == [0, 1]
    pls = {p.id: p for p in read_playlists(out)}
    assert pls[0].songs == (by_tid["t-a"], by_tid["t-b"]) and pls[0].tags == ("rock", "loud", "late")
    assert pls[1].songs == (by_tid["t-c"], by_tid["zero"])
    assert json.loads((out / "train.json").read_text())[0]["plylst_title"] == "Mine"


def test_rerun_reuses_finished_mels(imported, tmp_path) -> None:
    root, out, first, _ = imported
    mels = sorted((out / "arena_mel").rglob("*.npy"))
    stamp = {p: p.stat().st_mtime_ns for p in mels}
    mels[0].unlink()  # as if interrupted before this one was written
    (mels[1].parent / ".x.npy.abc.tmp").write_bytes(b"half")  # a stale temp file
    again = _import(root, out)
    assert again["counts"]["reused"] == len(mels) - 1 and again["counts"]["written"] == 1
    assert again["counts"]["usable"] == first["counts"]["usable"]
    assert all(p.stat().st_mtime_ns == stamp[p] for p in mels[1:])
    assert not list((out / "arena_mel").rglob("*.tmp"))


def test_ids_stay_stable_when_tracks_are_added(tmp_path) -> None:
    root = tmp_path
    _write_collection(root)
    out = root / "melon"
    _import(root, out, workers=0)
    before = _id_map(out)
    lines = (root / "tracks.csv").read_text().splitlines()
    sf.write(root / "music" / "new.wav", _signal(2.0, 16000, 1, 42), 16000)
    (root / "tracks.csv").write_text("\n".join([lines[0], "new-one,new.wav,Blues"] + lines[1:]) + "\n")
    s = _import(root, out, workers=0)
    after = _id_map(out)
    assert all(after[i] == tid for i, tid in before.items())
    assert after[12] == "new-one" and s["counts"]["written"] == 1
    assert read_genre_names(out)["GN0100"] == "Blues"  # codes follow the (sorted) label set


def test_melon_segment_and_short_files(tmp_path) -> None:
    (tmp_path / "music").mkdir()
    sf.write(tmp_path / "music" / "long.flac", _signal(55.0, 22050, 1, 1), 22050)
    sf.write(tmp_path / "music" / "mid.wav", _signal(34.0, 16000, 2, 2), 16000)
    sf.write(tmp_path / "music" / "tiny.wav", _signal(5.0, 16000, 1, 3), 16000)
    (tmp_path / "tracks.csv").write_text(
        "track_id,path,genres\nL,long.flac,Rock\nM,mid.wav,Rock\nT,tiny.wav,Pop\n")
    (tmp_path / "playlists.csv").write_text("playlist_id,track_id\np,L\np,M\n")
    out = tmp_path / "melon"
    _import(tmp_path, out, segment="melon", workers=0)
    music = tmp_path / "music"
    np.testing.assert_array_equal(np.load(mel_path(out, 0)), file_mel(music / "long.flac", MELON_SEGMENT))
    last30 = load_audio(music / "mid.wav")[-30 * SAMPLE_RATE:]  # 34 s: its last 30 s
    np.testing.assert_array_equal(np.load(mel_path(out, 1)), mel_spectrogram_db(last30))
    np.testing.assert_array_equal(np.load(mel_path(out, 2)), file_mel(music / "tiny.wav"))
    assert np.load(mel_path(out, 0)).shape == (48, 1876) == np.load(mel_path(out, 1)).shape


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(SCRIPT), *args], check=False, capture_output=True,
                          text=True, env=env, cwd=REPO)


def _cli(root: Path, tracks: str, playlists: str, out: str = "out", *extra: str):
    (root / "music").mkdir(exist_ok=True)
    (root / "t.csv").write_text(tracks)
    pl_name = "p.tsv" if "\t" in playlists.splitlines()[0] else "p.csv"
    (root / pl_name).write_text(playlists)
    return _run("--audio-dir", str(root / "music"), "--tracks", str(root / "t.csv"),
                "--playlists", str(root / pl_name), "--out", str(root / out), "--workers", "0",
                "--quiet", *extra)


@pytest.mark.parametrize("tracks, playlists, words", [
    ("track_id,genres\nx,Rock\n", "playlist_id,track_id\np,x\n", ["t.csv", "missing column 'path'"]),
    ("track_id,path,genres\nx,x.wav,Rock\n", "playlist_id,track_id\np,x\np,y\n",
     ["p.csv line 3", "'y'", "not in"]),
    ("track_id,path,genres\nx,x.wav,Rock/Punk/Old\n", "playlist_id,track_id\np,x\n",
     ["t.csv line 2", "'Rock/Punk/Old'", "more than one '/'"]),
    ("track_id,path,genres\nx,x.wav,Rock\nx,y.wav,Pop\n", "playlist_id,track_id\np,x\n",
     ["t.csv line 3", "'x'", "repeats line 2"]),
    ("track_id,path,genres\nx,x.wav,Rock\n", "playlist_id\ttrack\np\tx\n",
     ["p.tsv", "missing column 'track_id'"]),
])
def test_bad_tables_exit_2_with_one_line(tmp_path, tracks, playlists, words) -> None:
    r = _cli(tmp_path, tracks, playlists)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert all(w in lines[0] for w in words), lines[0]
    assert not (tmp_path / "out").exists()


def test_tsv_by_extension_and_nothing_usable_exits_1(tmp_path) -> None:
    (tmp_path / "music").mkdir()
    (tmp_path / "music" / "x.wav").write_bytes(b"RIFF")
    r = _cli(tmp_path, "track_id,path,genres\nx,x.wav,Rock\n", "playlist_id\ttrack_id\tfoo\np\tx\t1\n")
    assert r.returncode == 1 and "no track has usable audio" in r.stderr
    report = json.loads((tmp_path / "out" / "import_skipped.json").read_text())
    assert [t["track_id"] for t in report["tracks"]] == ["x"]


def test_refuses_foreign_directory_and_changed_settings(tmp_path, imported) -> None:
    root = imported[0]
    foreign = tmp_path / "melon"
    foreign.mkdir()
    (foreign / "song_meta.json").write_text("[]")
    with pytest.raises(CollectionError, match="not written by import_audio"):
        _import(root, foreign)
    assert (foreign / "song_meta.json").read_text() == "[]"
    with pytest.raises(CollectionError, match="segment='full', not 'start'"):
        _import(root, imported[1], segment="start")


# --------------------------------- docs/own-collection.md recipes on small format fixtures

FORMATS = REPO / "tests" / "data" / "formats"
RECIPES = REPO / "docs" / "own-collection.md"


def _recipe(name: str) -> str:
    """The ```py block after `<!-- recipe: name -->` in docs/own-collection.md."""
    import re

    text = RECIPES.read_text(encoding="utf-8")
    m = re.search(rf"<!-- recipe: {name} -->\n```py\n(.*?)```", text, re.DOTALL)
    assert m, f"{RECIPES.name} has no recipe {name}"
    return m.group(1)


def _run_recipe(name: str, fixture: str, tmp_path: Path, monkeypatch) -> Path:
    import shutil

    work = tmp_path / "work"
    shutil.copytree(FORMATS / fixture, work / (fixture if fixture != "m3u" else ""),
                    dirs_exist_ok=True)
    monkeypatch.chdir(work)
    # The docs block is the code under test: run it as a reader would paste it.
    exec(compile(_recipe(name), f"docs recipe {name}", "exec"), {"__name__": "recipe"})  # noqa: S102
    return work


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_readme_recipe_fma(tmp_path, monkeypatch) -> None:
    work = _run_recipe("fma", "fma_metadata", tmp_path, monkeypatch)
    rows = {r["track_id"]: r for r in _rows(work / "tracks.csv")}
    assert {t: r["genres"] for t, r in rows.items()} == {
        "2": "Hip-Hop", "5": "Hip-Hop;Hip-Hop/Rap",
        "10": "Rock/Punk;Rock/Old-Time - Historic", "140": "Rock;International"}
    assert rows["10"]["path"] == "000/000010.mp3" and rows["10"]["artist"] == "Kurt Vile"
    (work / "p.csv").write_text("playlist_id,track_id\nalbum-1,2\nalbum-1,5\n")
    col = read_collection(work / "tracks.csv", work / "p.csv")  # the importer accepts it
    assert col.codes.detail[("Rock", "Old-Time - Historic")] == "GN0301"


def test_readme_recipe_jamendo(tmp_path, monkeypatch) -> None:
    work = _run_recipe("jamendo", "mtg_jamendo", tmp_path, monkeypatch)
    genres = {r["track_id"]: r["genres"] for r in _rows(work / "tracks.csv")}
    assert genres == {"track_0000214": "punkrock", "track_0000215": "metal;rock",
                      "track_0000948": "ambient", "track_0001029": ""}
    col = read_collection(work / "tracks.csv", work / "playlists.csv")
    songs = {p["playlist_id"]: p["songs"] for p in col.playlists}
    assert songs == {"energetic": [0, 1], "dark": [1], "calm": [2]}
    assert col.tracks[1]["path"] == "15/215.mp3"


def test_readme_recipe_m3u(tmp_path, monkeypatch, capsys) -> None:
    work = _run_recipe("m3u", "m3u", tmp_path, monkeypatch)
    assert "4 entries, 1 not in tracks.csv" in capsys.readouterr().out
    col = read_collection(work / "tracks.csv", work / "playlists.csv")
    songs = {p["playlist_id"]: p["songs"] for p in col.playlists}
    assert songs == {"Late Night": [2, 0], "Road Trip": [0, 1]}
