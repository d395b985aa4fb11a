"""A generated music collection made of sound: audio files + tracks.csv + playlists.csv.

The counterpart of :mod:`musicrep.toy.melon` one step earlier in the chain: instead of mels
in the Melon layout it renders audio files and writes the two tables that
``scripts/import_audio.py`` reads, so audio -> mel -> training -> embedding of audio
files runs the way it does on a user's own collection. Nothing here sounds like real
music, and models trained on it are useless for real music.

Planted structure:

* Genres. ``n_major`` major genres, each with 2-3 detail genres. A major genre has its
  own tempo range, drum pattern (kick / snare / hi-hat on a 16-step grid), bass and lead
  waveforms (harmonic roll-off), scale, note density, register and a band of noise
  texture; a detail genre adds its own signature instrument (a tremolo pad at its own
  pitch) and shifts the tempo and swing. About 15 % of tracks have a second major
  genre and 20 % borrow another genre's drum pattern, so audio is evidence of genre,
  not proof.
* Mood. A hidden per-track value in [-1, 1] (calm .. energetic) that brightens the
  timbre, raises the level and drum velocity and adds notes. It is in no table.
* Playlists. Each has a theme (1-2 major genres, a mood preference), draws its tracks
  from the theme with a Zipf popularity skew and ~10 % noise tracks; title and tags
  come from the theme.

Files are wav, flac or ogg/vorbis (soundfile writes all three), at 22.05 or 44.1 kHz,
about a third stereo. Everything is deterministic in ``seed``: each track is rendered
from its own random stream (seed, track index), so rendering order and worker count do
not change the output. The output directory also holds ``generated.json`` (the
generated-data marker the importer carries into the Melon directory) and
``generated_truth.json`` (the hidden genres, moods and themes, keyed by track and
playlist ids; for evaluation only).

The parts: :mod:`~musicrep.toy.audio_catalog` (genres, tracks, playlists),
:mod:`~musicrep.toy.audio_render` (sound); :mod:`~musicrep.toy.world` holds the
vocabulary and rates shared with the Melon generator. This module writes the collection.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

from ..data.importer import LEVEL_SEP, LIST_SEP, bounded_map, stop_pool, worker_pool
from ..io import write_json
from ..layout import GENERATED_MARKER, TRUTH_FILE
from .audio_catalog import FORMATS, SAMPLE_RATES, make_catalog, make_genres, make_playlists
from .audio_render import write_track
from .output import building, check_out

GENERATOR = "musicrep.toy.audio.make_toy_audio"


def make_toy_audio(out: Path, tracks: int = 500, playlists: int | None = None,
                   seconds: float = 30.0, n_major: int = 6, seed: int = 0,
                   workers: int = 1, *, force: bool = False, progress: bool = True
                   ) -> dict[str, Any]:
    """Render a generated collection to `out`; return a summary.

    Args:
        out: output directory: ``audio/``, ``tracks.csv``, ``playlists.csv``,
            ``generated.json``, ``generated_truth.json``. Built in a temporary sibling
            and renamed when complete; an existing non-empty `out` raises
            FileExistsError unless `force`.
        tracks: number of tracks (>= 10); playlists: number of playlists (default
            tracks // 2, at least 3); seconds: track length; n_major: major genres
            (2-8); seed: the one seed; workers: rendering processes, at most the
            usable CPUs and the tracks (a note on stderr when fewer than asked).
    Raises ValueError for bad arguments, ConfigError for an `out` that cannot be
    written, OSError (naming `out`) when writing fails.
    """
    t0 = time.perf_counter()
    out = Path(out)
    playlists = max(3, tracks // 2) if playlists is None else playlists
    _check_args(tracks, playlists, seconds, seed)
    check_out(out, force, "use --force")
    genres = make_genres(n_major, seed)
    cat = make_catalog(tracks, genres, seed)
    plist = make_playlists(playlists, cat, genres, seed)

    out.parent.mkdir(parents=True, exist_ok=True)
    with building(out) as tmp:
        paths = []
        for t in cat:
            rel = f"audio/{t['index'] // 100:03d}/{t['track_id']}.{t['format']}"
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            paths.append(rel)
        jobs = [(t, genres, seconds, seed, str(tmp / p)) for t, p in zip(cat, paths)]
        _render_all(jobs, workers, progress)
        _write_tables(tmp, cat, paths, plist, genres)
        write_json(tmp / GENERATED_MARKER, {
            "generator": GENERATOR, "seed": seed, "tracks": tracks, "playlists": playlists,
            "seconds": seconds, "n_major": n_major})
        write_json(tmp / TRUTH_FILE, _truth_json(cat, plist, genres), indent=None)
    return {
        "out": str(out), "seed": seed, "tracks": tracks, "playlists": playlists,
        "seconds": seconds, "n_major": n_major,
        "n_detail": sum(len(g["details"]) for g in genres),
        "formats": {f: sum(t["format"] == f for t in cat) for f in FORMATS},
        "stereo": sum(t["channels"] == 2 for t in cat),
        "sample_rates": {sr: sum(t["sr"] == sr for t in cat) for sr in SAMPLE_RATES},
        "memberships": sum(len(p["tracks"]) for p in plist),
        "elapsed": round(time.perf_counter() - t0, 1),
    }


def _check_args(tracks: int, playlists: int, seconds: float, seed: int) -> None:
    if tracks < 10:
        raise ValueError("tracks must be at least 10")
    if playlists < 3:
        raise ValueError("playlists must be at least 3")
    if not 1.0 <= seconds <= 600.0:
        raise ValueError("seconds must be between 1 and 600")
    if seed < 0:
        raise ValueError("seed must be non-negative")


def _render_all(jobs: list[tuple], workers: int, progress: bool) -> None:
    """Run every write_track job, in up to `workers` processes (bounded by the CPUs and
    the jobs; they die with this process, and Ctrl-C or an error stops them at once)."""
    from tqdm import tqdm

    pool, n = worker_pool(workers, len(jobs))
    finished = False
    bar = tqdm(total=len(jobs), desc="render", unit="track", disable=not progress)
    try:
        for _ in bounded_map(pool, write_track, jobs, limit=4 * n):
            bar.update(1)
        finished = True
    finally:
        bar.close()
        stop_pool(pool, finished)


def _truth_json(cat: list[dict], plist: list[dict], genres: list[dict]) -> dict[str, Any]:
    """The hidden genres and moods of tracks and playlist themes, by their ids."""
    return {
        "generator": GENERATOR,
        "tracks": {t["track_id"]: {"majors": [genres[m]["name"] for m in t["majors"]],
                                   "mood": round(t["mood"], 4)} for t in cat},
        "playlists": {p["playlist_id"]: {"majors": [genres[m]["name"] for m in p["theme"]["majors"]],
                                         "mood": p["theme"]["mood"]} for p in plist},
    }


def _write_tables(root: Path, cat: list[dict], paths: list[str], plist: list[dict],
                  genres: list[dict]) -> None:
    """tracks.csv and playlists.csv in the importer's input format."""
    with open(root / "tracks.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["track_id", "path", "genres", "artist", "album", "title"])
        for t, p in zip(cat, paths):
            labels = [f"{genres[m]['name']}{LEVEL_SEP}{genres[m]['details'][d]['name']}"
                      for m, d in t["details"]]
            w.writerow([t["track_id"], p, LIST_SEP.join(labels), t["artist"], t["album"], t["title"]])
    with open(root / "playlists.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["playlist_id", "track_id", "title", "tags"])
        for pl in plist:
            for i in pl["tracks"]:
                w.writerow([pl["playlist_id"], cat[i]["track_id"], pl["title"], LIST_SEP.join(pl["tags"])])
