"""make_toy_audio: rendered collection in the importer's format, deterministic, structured;
and the whole audio -> Melon -> create_dataset chain on it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.stats import spearmanr

from musicrep.audio import file_mel
from musicrep.data.builder import DatasetArgs, create_dataset
from musicrep.data.importer import import_collection, read_collection, read_table
from musicrep.toy.audio import GENERATOR, make_toy_audio

from tests.helpers import REPO


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("toy_audio") / "c"
    return out, make_toy_audio(out, tracks=48, seconds=4.0, seed=3, workers=2, progress=False)


def test_files_and_tables_in_importer_format(collection) -> None:
    out, s = collection
    col = read_collection(out / "tracks.csv", out / "playlists.csv")  # raises if malformed
    assert len(col.tracks) == 48 and len(col.playlists) == s["playlists"] == 24
    assert all(len(p["songs"]) >= 5 for p in col.playlists)
    assert all(p["title"] and p["tags"] for p in col.playlists)
    seen = {"fmt": set(), "sr": set(), "ch": set()}
    for r in col.tracks:
        assert r["labels"] and all(d is not None for _, d in r["labels"])  # Major/Detail
        info = sf.info(out / r["path"])
        seen["fmt"].add(info.format)
        seen["sr"].add(info.samplerate)
        seen["ch"].add(info.channels)
        assert abs(info.duration - 4.0) < 0.01
    assert seen == {"fmt": {"WAV", "FLAC", "OGG"}, "sr": {22050, 44100}, "ch": {1, 2}}
    marker = json.loads((out / "generated.json").read_text())
    assert marker == {"generator": GENERATOR, "seed": 3, "tracks": 48, "playlists": 24,
                      "seconds": 4.0, "n_major": 6}


def test_deterministic_in_the_seed(collection, tmp_path) -> None:
    out, _ = collection
    again = tmp_path / "again"
    make_toy_audio(again, tracks=48, seconds=4.0, seed=3, workers=1, progress=False)
    for name in ("tracks.csv", "playlists.csv", "generated_truth.json"):
        assert (again / name).read_bytes() == (out / name).read_bytes()
    for r in read_table(out / "tracks.csv", ("path",), ())[:6]:  # decoded samples agree
        np.testing.assert_array_equal(sf.read(again / r["path"])[0], sf.read(out / r["path"])[0])
    other = tmp_path / "other"
    make_toy_audio(other, tracks=48, seconds=4.0, seed=4, workers=1, progress=False)
    assert (other / "tracks.csv").read_bytes() != (out / "tracks.csv").read_bytes()


def test_genre_and_mood_are_audible(collection) -> None:
    """The mel carries the hidden structure: a nearest-centroid genre guess beats the
    majority class, and the level rises with the hidden mood (energy)."""
    out, _ = collection
    truth = json.loads((out / "generated_truth.json").read_text())["tracks"]
    feats, major, mood, level = [], [], [], []
    for r in read_table(out / "tracks.csv", ("track_id", "path"), ()):
        mel = file_mel(out / r["path"])
        feats.append(np.concatenate([mel.mean(1), mel.std(1)]))
        major.append(truth[r["track_id"]]["majors"][0])
        mood.append(truth[r["track_id"]]["mood"])
        level.append(float(mel.mean()))
    x = np.asarray(feats)
    x = (x - x.mean(0)) / (x.std(0) + 1e-9)
    y = np.asarray(major)
    hits = 0
    for i in range(len(x)):  # leave-one-out nearest centroid
        rest = np.arange(len(x)) != i
        classes = sorted(set(y[rest]))
        cent = np.stack([x[rest & (y == c)].mean(0) for c in classes])
        hits += classes[int(np.argmin(((cent - x[i]) ** 2).sum(1)))] == y[i]
    majority = max(np.unique(y, return_counts=True)[1]) / len(y)
    assert hits / len(y) > majority + 0.2
    assert spearmanr(level, mood).statistic > 0.4


def test_refuses_non_empty_out(collection) -> None:
    out, _ = collection
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "make_toy_audio.py"), "--out",
                        str(out), "--tracks", "10"], check=False, capture_output=True, text=True)
    assert r.returncode == 2 and "exists and is not empty" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert (out / "tracks.csv").is_file()


def test_audio_to_dataset_chain(tmp_path) -> None:
    """make_toy_audio -> import_collection -> create_dataset, with the generated marker
    and hidden truth carried over under the integer ids."""
    col = tmp_path / "collection"
    make_toy_audio(col, tracks=24, seconds=21.5, seed=0, workers=2, progress=False)
    melon = tmp_path / "melon"
    s = import_collection(col, col / "tracks.csv", col / "playlists.csv", melon, workers=2,
                          progress=False)
    assert s["counts"]["usable"] == 24 and s["generated"] and s["frames"]["min"] >= 1300
    assert json.loads((melon / "generated.json").read_text())["generator"] == GENERATOR
    truth = json.loads((melon / "generated_truth.json").read_text())
    assert sorted(map(int, truth["tracks"])) == list(range(24))
    m = create_dataset(DatasetArgs(melon_dir=str(melon), out_dir=str(tmp_path / "ds"),
                                   cf_factors=8, cf_epochs=5, workers=2))
    c = m["counts"]
    assert c["train_tracks"] + c["val_tracks"] + c["test_tracks"] == 24
    assert c["skipped_tracks"] == 0 and c["genres"] == s["counts"]["major_genres"] + s["counts"]["detail_genres"]
