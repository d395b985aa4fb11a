"""A generated stand-in for the Melon Playlist Dataset, in exactly its file layout.

The real Melon corpus (Kakao Arena) can no longer be downloaded, so the pipeline is
developed and tested on a corpus written by :func:`make_toy_melon`. The layout is the
real one (``train.json``/``val.json``/``test.json``, ``song_meta.json``,
``genre_gn_all.json``, ``arena_mel/{id // 1000}/{id}.npy`` with 48 x T float32 dB
mels), so every reader that works here works unchanged on the real data.

What makes it useful rather than just well-formed is the structure planted in it:

* Genres. ``n_major`` major genres (``GN0100``, ``GN0200``, ...) each with 2-4
  detail genres (``GN0101``, ...). Every song has one major genre (about 15 % have
  two) and 1-2 detail genres; artists and albums are tied to genres.
* Audio. Each major genre has its own spectral envelope and its own rhythm (a pulse
  train with a genre-specific period, decay, accent pattern and off-beat); each detail
  genre adds a narrow-band signature, partly static and partly switched on and off
  in time. The envelopes overlap and every song gets its own gain, tilt and random
  spectral shape, so the per-band mean of a mel only partly reveals the genre; the
  time structure (which leaves band means unchanged: the pulses are zero-mean in
  time) carries the rest.
* Mood. A hidden per-song scalar in [-1, 1] ("calm" .. "energetic") that tilts the
  spectrum brighter, raises the level and strengthens the pulses. It is in no
  metadata field.
* Playlists. Each playlist has a theme (1-2 major genres and a mood preference) and
  draws most of its songs from the theme, preferring songs whose mood is near the
  preference, with a Zipf popularity skew and ~10 % noise songs. Tags and titles are
  derived from the theme. Hence playlist co-occurrence (CF) carries genre *and* mood,
  while the genre metadata carries genre only.

Presets (``preset``, :data:`~musicrep.toy.world.MELON_PRESETS`) change only the
playlists and the genre metadata; the catalogue, the mels, the mood and the popularity
ranking are the same draws in all of them. ``G0`` (the default) is the corpus described
above, byte for byte: every playlist is genre-gated, so CF carries genre for every
track and the views nest. ``G1`` themes most playlists on a mood alone, gives
popularity a heavier tail with a few niche genres at its bottom and puts a song no
playlist picked into a random playlist: CF is rich for popular tracks and close to
noise for the long tail, while the genre metadata still covers every track. ``G2`` is
G1 with a wrong major genre in ``song_meta.json`` for about 20 % of the artists; the
audio and the playlists follow the true genre, which the truth file keeps
(``song_major_genres``). The truth file of G1 and G2 also names the preset's settings
(``preset``), the niche genres (``niche_major_genres``) and the metadata errors
(``metadata_errors``: the changed artists and songs); G0's is unchanged.

Unlike the real val/test files, val.json and test.json keep every playlist's songs
and tags complete (no masking): the pipeline builds its CF matrix from all playlists.

``defects=True`` plants the real dataset's problems (missing, corrupt, all-zero,
too-short, wrong-band-count and NaN mel files; songs with empty genre baskets) and the
returned summary names the affected ids so tests can check a reader skips exactly
those. The hidden truth (per-song genres and mood, playlist themes) is returned in the
summary's ``"truth"`` entry and written to ``generated_truth.json``, next to
``generated.json`` (the generator and its arguments). Neither file is part of the
Melon layout: dataset creation and training never read them, only evaluation does
(the mood probe) and the "generated corpus" labels of its reports.

Everything is deterministic in ``seed``: the same arguments give byte-identical files.
Each song's mel is drawn from its own random stream (seeded by ``seed`` and the song
id), generated and written one song at a time, so memory stays small.

The parts: :mod:`~musicrep.toy.melon_catalog` (genres, artists, albums, songs),
:mod:`~musicrep.toy.melon_playlists` (themed playlists), :mod:`~musicrep.toy.melon_mels`
(mels and the planted defects); :mod:`~musicrep.toy.world` holds the vocabulary and
rates shared with the audio generator. This module writes the corpus.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import N_MELS
from ..data.melon import GENRE_NAMES, PLAYLIST_FILES, SONG_META
from ..layout import GENERATED_MARKER, TRUTH_FILE
from .melon_catalog import (genre_code, genre_table, make_catalog, make_genres,
                            misgenre_artists, preset_popularity)
from .melon_mels import pick_defects, write_mels
from .melon_playlists import make_playlists
from .output import building, check_out
from .world import DEFAULT_PRESET, MelonPreset, MelonSalt, melon_preset, seeded_rng

GENERATOR = "musicrep.toy.melon.make_toy_melon"


def make_toy_melon(out: Path, songs: int = 2000, playlists: int = 1000, frames: int = 1876,
                   n_major: int = 8, seed: int = 0, defects: bool = False,
                   mel_dtype: Any = np.float32, *, force: bool = False,
                   preset: str = DEFAULT_PRESET) -> dict[str, Any]:
    """Write a Melon-layout corpus with planted structure to `out`; return a summary.

    The corpus is built in a temporary sibling directory and renamed to `out` at the
    end, so `out` never holds a half-written corpus. If `out` exists and is not empty,
    FileExistsError is raised unless `force` is true (then it is replaced).

    Returns a dict with the counts (``songs``, ``playlists``, ``splits``, ``genre_codes``,
    ``n_major``, ``n_detail``, ``frames``, ``songs_in_playlists``, ...), ``defects``
    (defect kind -> sorted song ids; every kind present, empty lists when
    ``defects=False``) and ``truth`` (the hidden per-song major genre and mood and the
    playlist themes; also written to ``generated_truth.json``). `preset` (G0, G1, G2; see
    the module docstring) changes only the playlists and the genre metadata.
    """
    t0 = time.perf_counter()
    out = Path(out)
    _check_args(songs, playlists, frames, n_major, seed)
    pre = melon_preset(preset)
    check_out(out, force, "pass force=True")
    out.parent.mkdir(parents=True, exist_ok=True)

    genres = make_genres(n_major, seed)
    cat = make_catalog(songs, genres, seed)
    niche = preset_popularity(cat, n_major, pre)
    errors = misgenre_artists(cat, genres, pre.artist_genre_error_rate, seed)
    plist, themes = make_playlists(playlists, cat, genres, seed, pre)
    bad = pick_defects(songs, seed, defects)
    for i in bad["empty_genre"]:
        cat["meta"][i]["song_gn_gnr_basket"] = []
        cat["meta"][i]["song_gn_dtl_gnr_basket"] = []
    split_idx = _split_playlists(playlists, seed)

    generator = {"generator": GENERATOR, "seed": seed, "songs": songs,
                 "playlists": playlists, "frames": frames, "n_major": n_major,
                 "defects": defects, "mel_dtype": np.dtype(mel_dtype).name}
    if preset != DEFAULT_PRESET:  # G0's record stays as it was before presets existed
        generator["preset"] = preset
    extra = _preset_truth(cat, pre, niche, errors) if preset != DEFAULT_PRESET else {}
    with building(out) as tmp:
        for name in PLAYLIST_FILES:  # train.json, val.json, test.json
            _dump_json(tmp / name, [plist[p] for p in split_idx[Path(name).stem]])
        _dump_json(tmp / SONG_META, cat["meta"])
        _dump_json(tmp / GENRE_NAMES, genre_table(genres))
        _dump_json(tmp / GENERATED_MARKER, generator)
        _dump_json(tmp / TRUTH_FILE, _truth_json(cat, themes, plist, generator) | extra)
        write_mels(tmp, frames, seed, cat, genres, bad, mel_dtype)
    summary = _summary(out, seed, frames, genres, cat, plist, themes, split_idx, bad, t0)
    summary["preset"] = preset
    summary["truth"] |= {"niche_majors": niche,
                         "wrong_genre_artists": {a: w for a, (_, w) in errors.items()}}
    return summary


def _check_args(songs: int, playlists: int, frames: int, n_major: int, seed: int) -> None:
    if songs < 10:
        raise ValueError("songs must be at least 10")
    if playlists < 3:
        raise ValueError("playlists must be at least 3 (one per split)")
    if frames < 16:
        raise ValueError("frames must be at least 16")
    if not 1 <= n_major <= 99:
        raise ValueError("n_major must be between 1 and 99")
    if seed < 0:
        raise ValueError("seed must be non-negative")


def _split_playlists(playlists: int, seed: int) -> dict[str, np.ndarray]:
    """Splits: random ~80/10/10 of playlists, each split non-empty."""
    prng = seeded_rng(seed, MelonSalt.PLAYLIST, 1)
    order = prng.permutation(playlists)
    n_test = max(1, round(0.1 * playlists))
    n_val = max(1, round(0.1 * playlists))
    return {"train": np.sort(order[n_test + n_val:]),
            "val": np.sort(order[n_test:n_test + n_val]),
            "test": np.sort(order[:n_test])}


def _dump_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")


def _truth_json(cat: dict[str, Any], themes: list[dict[str, Any]], plist: list[dict[str, Any]],
                generator: dict[str, Any]) -> dict[str, Any]:
    """The hidden truth, keyed so evaluation can read it without this module."""
    return {
        "generator": generator,
        "song_mood": [round(float(x), 4) for x in cat["mood"]],  # index = song id
        "song_major_genres": [[genre_code(k) for k in mj] for mj in cat["majors"]],
        "song_detail_genres": [[genre_code(k, d) for k, d in dt] for dt in cat["details"]],
        "playlist_themes": {str(pl["id"]): {"major_genres": [genre_code(k) for k in th["majors"]],
                                            "mood": round(th["mood"], 4)}
                            for pl, th in zip(plist, themes)},
    }


def _preset_truth(cat: dict[str, Any], preset: MelonPreset, niche: list[int],
                  errors: dict[int, tuple[int, int]]) -> dict[str, Any]:
    """The truth file's entries of a preset other than G0: its settings, the niche
    genres and, when the metadata has errors, which artists and songs it misnames."""
    wrong_songs = [i for i, a in enumerate(cat["song_artist"]) if int(a) in errors]
    return {
        "preset": asdict(preset),
        "niche_major_genres": [genre_code(k) for k in niche],
        "metadata_errors": {
            "artist_rate": preset.artist_genre_error_rate,
            "artists": {str(a): {"true": genre_code(g), "written": genre_code(w)}
                        for a, (g, w) in sorted(errors.items())},
            "songs": wrong_songs,
        },
    }


def _summary(out: Path, seed: int, frames: int, genres: dict[str, Any], cat: dict[str, Any],
             plist: list[dict[str, Any]], themes: list[dict[str, Any]],
             split_idx: dict[str, np.ndarray], bad: dict[str, list[int]], t0: float
             ) -> dict[str, Any]:
    """make_toy_melon's return value."""
    songs, n_major = len(cat["meta"]), len(genres["majors"])
    in_pl = np.zeros(songs, dtype=bool)
    for pl in plist:
        in_pl[pl["songs"]] = True
    n_det = sum(len(m["details"]) for m in genres["majors"])
    return {
        "out": str(out),
        "seed": seed,
        "songs": songs,
        "playlists": len(plist),
        "splits": {k: int(v.size) for k, v in split_idx.items()},
        "frames": frames,
        "n_bands": N_MELS,
        "n_major": n_major,
        "n_detail": n_det,
        "genre_codes": n_major + n_det,
        "songs_in_playlists": int(in_pl.sum()),
        "playlist_song_slots": int(sum(len(pl["songs"]) for pl in plist)),
        "defects": bad,
        "n_defect_songs": int(sum(len(v) for v in bad.values())),
        "seconds": round(time.perf_counter() - t0, 2),
        "truth": {
            "song_major": [int(mj[0]) for mj in cat["majors"]],
            "song_majors": [list(mj) for mj in cat["majors"]],
            "song_mood": [round(float(x), 4) for x in cat["mood"]],
            "playlist_majors": {int(p): th["majors"] for p, th in enumerate(themes)},
            "playlist_mood": {int(p): round(th["mood"], 4) for p, th in enumerate(themes)},
        },
    }
