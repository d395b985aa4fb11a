"""bench/melon_scale.py: the Melon-size generator writes a corpus the readers accept."""

from __future__ import annotations

import json
import runpy

import numpy as np

from musicrep.data.melon import load_mel, read_genre_names, read_playlists, read_song_meta

from tests.helpers import REPO

BENCH = runpy.run_path(str(REPO / "bench" / "melon_scale.py"))


def test_generator_sizes_layout_and_marker(tmp_path) -> None:
    out = tmp_path / "melon"
    BENCH["generate"](out, 0.001, seed=0)
    n = BENCH["sizes"](0.001)
    songs = read_song_meta(out)
    playlists = read_playlists(out)
    genres = read_genre_names(out)
    assert len(songs) == n["songs"] and len(playlists) == n["playlists"]
    assert len(genres) == 254 and sum(c.endswith("00") for c in genres) == 30
    assert all(s.genres and s.detail_genres for s in songs)
    lengths = np.array([len(p.songs) for p in playlists])
    assert 1 <= lengths.min() and lengths.max() <= 200 and 20 < lengths.mean() < 50
    counts = np.bincount(np.concatenate([p.songs for p in playlists]), minlength=len(songs))
    assert counts.max() > 20 * np.median(counts[counts > 0])  # popularity skew
    mel = load_mel(out, 7, min_frames=256)
    assert mel.shape == (48, 300) and mel.dtype == np.float16
    marker = json.loads((out / "generated.json").read_text())
    assert marker["generator"] == "bench.melon_scale.generate" and marker["seed"] == 0


def test_refuses_nonempty_work_dir(tmp_path, capsys) -> None:
    (tmp_path / "x").write_text("user file")
    rc = BENCH["main"](["--scale", "0.001", "--work-dir", str(tmp_path)])
    assert rc == 2 and "not empty" in capsys.readouterr().err
    assert (tmp_path / "x").read_text() == "user file"


def test_fit_table_exponents_from_run_tables(tmp_path, capsys) -> None:
    """--fit: scales side by side; time exponent 1.5 and flat RSS are recovered."""
    paths = []
    for scale in (0.01, 0.1, 1.0):
        n = BENCH["sizes"](scale)
        rows = [{"stage": "create_dataset", "seconds": round(2e-4 * n["songs"] ** 1.5, 1),
                 "peak_rss_mb": 500.0, "disk_mb": 1.0, "cf_per_epoch_s": 1e-5 * n["songs"]}]
        path = tmp_path / f"t{scale}.json"
        path.write_text(json.dumps({"scale": scale, "sizes": n, "rows": rows}))
        paths.append(str(path))
    assert BENCH["main"](["--fit", *paths]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("| create_dataset |"))
    assert line.endswith("| 1.50 | 0.00 |") and "649,091 tracks" in out
    cf = next(x for x in out.splitlines() if x.startswith("| cf_per_epoch_s |"))
    assert "| 1.00 |" in cf
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert BENCH["main"](["--fit", str(bad)]) == 2
    assert "bad.json" in capsys.readouterr().err
