"""Your own collection -> a Melon-format directory (audio files + a tracks table + playlists).

Input (CSV, or TSV when the file name ends in ``.tsv``/``.tab``):

- tracks table, one row per track: ``track_id`` (any string, unique), ``path`` (audio file
  relative to the audio directory), ``genres`` (``;``-separated labels, each ``Major`` or
  ``Major/Detail``; may be empty), optional ``artist`` (``;``-separated), ``album``,
  ``title``;
- playlists table, one row per membership: ``playlist_id``, ``track_id``, optional
  ``title`` and ``tags`` (``;``-separated; a playlist's tags are the union over its rows).
  Listening histories work the same way with user ids as playlist ids.

Output (the layout :mod:`musicrep.data.melon` reads, so ``create_dataset`` runs unchanged):

    song_meta.json       one record per track (integer ``id`` = row in track_ids.csv)
    genre_gn_all.json    code -> name; majors ``GNxx00``, details ``GNxxyy``
    train.json           every playlist (create_dataset splits by track, not playlist)
    arena_mel/{id // 1000}/{id}.npy   (48, T) float32 dB mels, musicrep.audio's front end
    track_ids.csv        id,track_id,path: the integer <-> string id map
    playlist_ids.csv     id,playlist_id
    import.json          the settings and counts of the import (resume checks them)
    import_skipped.json  every track whose audio was unusable, with its reason
    generated.json       only when the input came from a generator that marked it

Integer ids are stable across reruns into the same directory (a known ``track_id`` keeps
its id; new ones get the next free ids), and a mel already written for the same path
and settings is reused, so a rerun after Ctrl-C, or after adding files, continues.
Mels are computed by worker processes, each of which decodes one file at a time and
writes its mel itself; the parent only holds the tables and a bounded queue of small
results, so memory does not grow with the number of files (it grows with one file's
length per worker under ``segment="full"``).

Failure rules: any error decoding one file (whatever library raises it) is that
file's skip reason, never the end of the import. There are at most min(workers, usable
CPUs, tracks) workers; they ignore Ctrl-C (the parent stops them) and die with the
parent when it is killed. One import at a time writes an output (a lock beside it);
an output that cannot be written, or that is or holds an input (the audio directory,
a table), is refused before any work.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import (
    DB_FLOOR,
    FRAME_SIZE,
    MELON_SEGMENT,
    SAMPLE_RATE,
    AudioError,
    file_mel,
    load_audio,
    mel_spectrogram_db,
    n_frames_for,
)
from ..io import clean_stale_temp, output_lock, write_error, write_json, write_npy
from ..audio import N_MELS
from ..errors import ConfigError
from .melon import GENRE_NAMES, SONG_META, TRAIN_PLAYLISTS, mel_path
from ..layout import GENERATED_MARKER, TRACK_IDS, TRUTH_FILE
from ..workers import cap_workers, die_with_parent, usable_cpus

TRACK_COLUMNS = ("track_id", "path", "genres")
TRACK_OPTIONAL = ("artist", "album", "title")
PLAYLIST_COLUMNS = ("playlist_id", "track_id")
PLAYLIST_OPTIONAL = ("title", "tags")
LIST_SEP = ";"  # inside a cell: several genres, artists or tags
LEVEL_SEP = "/"  # inside a genre label: Major/Detail
SEGMENTS = ("melon", "start", "full")
#: Default minimum mel length: create_dataset keeps the first 1300 frames (~20.8 s).
MIN_FRAMES = 1300
#: Markers a generator leaves beside its audio; carried into the Melon directory.
MAX_CODES = 99  # two digits per level in GNxxyy


class CollectionError(ConfigError):
    """Bad input tables or output directory: a one-line message naming file/field."""


# ------------------------------------------------------------------------ tables


def read_table(path: Path, required: tuple[str, ...], optional: tuple[str, ...]) -> list[dict]:
    """Rows of a CSV/TSV table as dicts of stripped strings (optional columns "" if absent).

    Args:
        path: the table; ``.tsv``/``.tab`` are tab-separated, anything else comma.
        required: columns that must be present.
        optional: columns filled with "" when absent.
    Raises CollectionError naming the file and the missing column.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise CollectionError(f"{path}: file not found")
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_filter=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        kind = "TSV" if sep == "\t" else "CSV"
        raise CollectionError(f"{path}: cannot parse as {kind} ({first})") from None
    df.columns = [str(c).strip() for c in df.columns]
    for col in required:
        if col not in df.columns:
            raise CollectionError(
                f"{path}: missing column '{col}' (found {', '.join(df.columns) or 'none'}; "
                f"expected {', '.join(required)}"
                + (f" and optionally {', '.join(optional)})" if optional else ")")
            )
    cols = list(required) + list(optional)
    rows = []
    for rec in df.to_dict("records"):
        rows.append({c: str(rec.get(c, "")).strip() for c in cols})
    return rows


def split_list(cell: str) -> list[str]:
    """``"a; b;;c"`` -> ``["a", "b", "c"]`` (order kept, duplicates and blanks dropped)."""
    return list(dict.fromkeys(x.strip() for x in cell.split(LIST_SEP) if x.strip()))


def parse_label(label: str, where: str) -> tuple[str, str | None]:
    """``"Rock"`` -> ("Rock", None); ``"Rock/Punk"`` -> ("Rock", "Punk")."""
    parts = [p.strip() for p in label.split(LEVEL_SEP)]
    if len(parts) > 2:
        raise CollectionError(
            f"{where}: genre label '{label}' has more than one '{LEVEL_SEP}' "
            f"(expected 'Major' or 'Major{LEVEL_SEP}Detail')"
        )
    if not all(parts):
        raise CollectionError(f"{where}: genre label '{label}' has an empty part "
                           f"(expected 'Major' or 'Major{LEVEL_SEP}Detail')")
    return parts[0], (parts[1] if len(parts) == 2 else None)


@dataclass
class GenreCodes:
    """The label hierarchy as Melon codes: majors GNxx00 (sorted by name), details GNxxyy."""

    major: dict[str, str] = field(default_factory=dict)  # major name -> GNxx00
    detail: dict[tuple[str, str], str] = field(default_factory=dict)  # (major, detail) -> GNxxyy

    def names(self) -> dict[str, str]:
        """genre_gn_all.json: code -> name."""
        out = {code: name for name, code in self.major.items()}
        out.update({code: d for (_, d), code in self.detail.items()})
        return dict(sorted(out.items()))


def genre_codes(labels: list[tuple[str, str | None]], source: str) -> GenreCodes:
    """Assign codes to every (major, detail) label: deterministic (sorted names)."""
    majors = sorted({m for m, _ in labels})
    if len(majors) > MAX_CODES:
        raise CollectionError(f"{source}: {len(majors)} major genres; the GNxxyy codes allow {MAX_CODES}")
    codes = GenreCodes()
    for k, m in enumerate(majors, start=1):
        codes.major[m] = f"GN{k:02d}00"
        details = sorted({d for mm, d in labels if mm == m and d is not None})
        if len(details) > MAX_CODES:
            raise CollectionError(f"{source}: major genre '{m}' has {len(details)} detail genres; "
                               f"the GNxxyy codes allow {MAX_CODES}")
        for j, d in enumerate(details, start=1):
            codes.detail[(m, d)] = f"GN{k:02d}{j:02d}"
    return codes


@dataclass
class Collection:
    """The validated tables, with integer ids assigned."""

    tracks: list[dict]  # rows of the tracks table, plus "id" (int) and "labels"
    playlists: list[dict]  # {"id", "playlist_id", "title", "tags", "songs"}
    codes: GenreCodes


def read_collection(tracks_file: Path, playlists_file: Path,
                    known_ids: dict[str, int] | None = None) -> Collection:
    """Read and validate both tables.

    Args:
        tracks_file, playlists_file: the input tables (see the module docstring).
        known_ids: track_id -> integer id from an earlier import into the same
            directory; those ids are kept, new track ids get the next free integers.
    Raises CollectionError (one line naming file, line and field) for bad input.
    """
    tracks = read_table(tracks_file, TRACK_COLUMNS, TRACK_OPTIONAL)
    if not tracks:
        raise CollectionError(f"{tracks_file}: no tracks (the table has a header but no rows)")
    known_ids = dict(known_ids or {})
    next_id = max(known_ids.values(), default=-1) + 1
    seen: dict[str, int] = {}
    all_labels: list[tuple[str, str | None]] = []
    for line, row in enumerate(tracks, start=2):  # line 1 is the header
        where = f"{tracks_file} line {line}"
        tid = row["track_id"]
        if not tid:
            raise CollectionError(f"{where}: empty track_id")
        if tid in seen:
            raise CollectionError(f"{where}: track_id '{tid}' repeats line {seen[tid]}")
        seen[tid] = line
        if not row["path"]:
            raise CollectionError(f"{where}: empty path for track_id '{tid}'")
        row["labels"] = [parse_label(lab, where) for lab in split_list(row["genres"])]
        all_labels += row["labels"]
        if tid in known_ids:
            row["id"] = known_ids[tid]
        else:
            row["id"] = next_id
            next_id += 1
    codes = genre_codes(all_labels, str(tracks_file))

    id_of = {r["track_id"]: r["id"] for r in tracks}
    members = read_table(playlists_file, PLAYLIST_COLUMNS, PLAYLIST_OPTIONAL)
    playlists: dict[str, dict] = {}
    in_playlist: dict[str, set[int]] = {}
    for line, row in enumerate(members, start=2):
        where = f"{playlists_file} line {line}"
        if not row["playlist_id"]:
            raise CollectionError(f"{where}: empty playlist_id")
        if row["track_id"] not in id_of:
            raise CollectionError(f"{where}: track_id '{row['track_id']}' is not in {tracks_file}")
        pl = playlists.setdefault(row["playlist_id"], {
            "id": len(playlists), "playlist_id": row["playlist_id"], "title": "",
            "tags": [], "songs": []})
        pl["title"] = pl["title"] or row["title"]
        pl["tags"] = list(dict.fromkeys(pl["tags"] + split_list(row["tags"])))
        sid = id_of[row["track_id"]]
        seen_here = in_playlist.setdefault(row["playlist_id"], set())
        if sid not in seen_here:  # a repeated listen counts once
            seen_here.add(sid)
            pl["songs"].append(sid)
    if not playlists:
        raise CollectionError(f"{playlists_file}: no playlist rows")
    return Collection(tracks, list(playlists.values()), codes)


def song_meta(col: Collection) -> list[dict]:
    """song_meta.json records (Melon field names) in id order."""
    album_ids: dict[str, int] = {}
    artist_ids: dict[str, int] = {}
    out = []
    for r in sorted(col.tracks, key=lambda r: r["id"]):
        artists = split_list(r["artist"])
        album = r["album"]
        out.append({
            "id": r["id"],
            "song_name": r["title"],
            "album_id": album_ids.setdefault(album, len(album_ids)) if album else -1,
            "album_name": album,
            "artist_id_basket": [artist_ids.setdefault(a, len(artist_ids)) for a in artists],
            "artist_name_basket": artists,
            "song_gn_gnr_basket": list(dict.fromkeys(col.codes.major[m] for m, _ in r["labels"])),
            "song_gn_dtl_gnr_basket": list(dict.fromkeys(
                col.codes.detail[(m, d)] for m, d in r["labels"] if d is not None)),
            "issue_date": "",
        })
    return out


def playlist_records(col: Collection) -> list[dict]:
    """train.json records; like_cnt and updt_date are unknown, so they are not written."""
    return [{"id": p["id"], "plylst_title": p["title"] or p["playlist_id"], "tags": p["tags"],
             "songs": p["songs"]} for p in col.playlists]


# -------------------------------------------------------------------------- mels


def segment_mel(path: Path, segment: str) -> np.ndarray:
    """(48, T) dB mel of one file with musicrep.audio's front end, for a --segment mode.

    ``melon``: the 20-50 s window Melon used; a file shorter than 50 s gives its last
    30 s instead (the whole file when shorter than 30 s), so short tracks keep as many
    frames as they have. ``start``: the first 30 s. ``full``: the whole file.
    """
    duration = MELON_SEGMENT[1]
    if segment == "full":
        return file_mel(path)
    if segment == "start":
        return file_mel(path, (0.0, duration))
    if segment != "melon":
        raise ValueError(f"segment must be one of {SEGMENTS}, got {segment!r}")
    want = n_frames_for(round(duration * SAMPLE_RATE))
    try:
        mel = file_mel(path, MELON_SEGMENT)
        if mel.shape[1] >= want:
            return mel
    except AudioError as e:
        if "no audio samples" not in str(e) and "too short" not in str(e):
            raise
    # Shorter than offset + duration: the last `duration` seconds of the whole file.
    y = load_audio(path)[-round(duration * SAMPLE_RATE):]
    if y.size < FRAME_SIZE:
        return file_mel(path)  # raises the front end's own "too short" error
    return mel_spectrogram_db(y, SAMPLE_RATE)


def _reason(message: str) -> str:
    """A short tag for an AudioError message (the message itself goes in 'detail')."""
    for key, tag in (("no such file", "file_missing"), ("no audio samples", "no_audio"),
                     ("too short", "too_short"), ("NaN or infinite", "non_finite"),
                     ("cannot decode", "undecodable")):
        if key in message:
            return tag
    return "unreadable"


def _usable_mel(path: Path, min_frames: int) -> bool:
    """True when `path` holds a finished (48, T >= min_frames) float mel."""
    try:
        mel = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return False
    return mel.ndim == 2 and mel.shape[0] == N_MELS and mel.shape[1] >= min_frames \
        and np.issubdtype(mel.dtype, np.floating)


def mel_job(audio: str, out: str, segment: str, min_frames: int, reuse: bool) -> dict[str, Any]:
    """Worker: compute one track's mel and write it atomically to `out`.

    Returns {"status": "reused"|"written"|"skipped", "frames", "reason", "detail"};
    never raises for a bad audio file (the reason is returned instead): whatever a
    decoding library raises for one file (a sample rate of 0, samples of 1e38) is that
    file's reason. Only writing the mel (disk full), MemoryError and Ctrl-C stop it.
    """
    audio_p, out_p = Path(audio), Path(out)
    if reuse and _usable_mel(out_p, min_frames):
        return {"status": "reused", "frames": int(np.load(out_p, mmap_mode="r", allow_pickle=False).shape[1])}
    if audio_p.is_file() and audio_p.stat().st_size == 0:
        return {"status": "skipped", "reason": "empty_file", "detail": f"{audio_p}: 0 bytes"}
    try:
        mel = segment_mel(audio_p, segment)
    except AudioError as e:
        return {"status": "skipped", "reason": _reason(str(e)), "detail": str(e)}
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - any library's error for this one file
        why = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return {"status": "skipped", "reason": "undecodable",
                "detail": f"{audio_p}: cannot decode audio ({type(e).__name__}"
                          + (f": {why})" if why else ")")}
    if mel.shape[1] < min_frames:
        return {"status": "skipped", "reason": "too_short",
                "detail": f"{audio_p}: {mel.shape[1]} frames, need {min_frames}"}
    if not np.isfinite(mel).all():
        return {"status": "skipped", "reason": "non_finite", "detail": str(audio_p)}
    if mel.max() <= DB_FLOOR:  # digital silence: every band at the floor
        return {"status": "skipped", "reason": "silent", "detail": f"{audio_p}: all {DB_FLOOR:.0f} dB"}
    write_npy(out_p, mel)
    return {"status": "written", "frames": int(mel.shape[1])}


def bounded_map(pool: ProcessPoolExecutor | None, fn: Callable[..., Any], jobs: list[tuple],
                limit: int) -> Iterator[tuple[int, Any]]:
    """Run fn(*job) for every job with at most `limit` in flight (in this process when
    `pool` is None); yields (index, result) as they finish."""
    if pool is None:
        for i, job in enumerate(jobs):
            yield i, fn(*job)
        return
    pending: dict[Future, int] = {}
    it = iter(enumerate(jobs))
    while True:
        for i, job in it:
            pending[pool.submit(fn, *job)] = i
            if len(pending) >= limit:
                break
        if not pending:
            return
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        for fut in done:
            yield pending.pop(fut), fut.result()


def pool_worker_init() -> None:
    """Initializer of the decoding and rendering pools: the worker dies with its parent
    (a SIGKILLed command leaves no worker decoding on its own) and ignores Ctrl-C, which
    reaches every process of the terminal's group: the parent alone handles it, in one
    line, and stops the workers (`stop_pool`)."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def worker_pool(requested: int, items: int) -> tuple[ProcessPoolExecutor | None, int]:
    """(pool, n): a pool of n = min(requested, usable CPUs, items) workers (a note when
    fewer than requested), or (None, 1): the work then runs in this process."""
    if requested <= 1:
        return None, 1
    n = cap_workers(requested, items)
    return (ProcessPoolExecutor(n, initializer=pool_worker_init), n) if n > 1 else (None, 1)


def stop_pool(pool: ProcessPoolExecutor | None, finished: bool) -> None:
    """Shut a pool down: after the work, wait for it; after an error or Ctrl-C, cancel
    what has not started and end the running jobs now (their outputs are written under
    temporary names, so nothing half-written is left under a final one)."""
    if pool is None:
        return
    if finished:
        pool.shutdown(wait=True)
        return
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.join(5)


# ------------------------------------------------------------------------ driver


def _load_previous(out: Path, settings: dict) -> tuple[dict[str, int], dict[str, str]]:
    """Ids and paths of an earlier import into `out` (empty when `out` is new).

    Refuses a directory that holds something else (e.g. a real Melon directory) or an
    import made with other mel settings, so nothing the user had is mixed or replaced.
    """
    import pandas as pd

    if not out.exists():
        return {}, {}
    if not out.is_dir():
        raise CollectionError(f"{out}: exists and is not a directory")
    info = out / "import.json"
    if not info.is_file():
        if any(out.iterdir()):
            raise CollectionError(f"{out}: exists, is not empty and was not written by import_audio "
                               "(choose a new --out)")
        return {}, {}
    try:
        prev = json.loads(info.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CollectionError(f"{info}: not valid JSON; remove it or choose a new --out") from None
    for key, value in settings.items():
        if prev.get("settings", {}).get(key) != value:
            raise CollectionError(
                f"{out}: was imported with {key}={prev.get('settings', {}).get(key)!r}, not "
                f"{value!r}; use the same settings to resume, or a new --out")
    ids_file = out / TRACK_IDS
    if not ids_file.is_file():
        return {}, {}
    df = pd.read_csv(ids_file, dtype={"track_id": str, "path": str}, keep_default_na=False)
    return (dict(zip(df["track_id"], df["id"].astype(int))),
            dict(zip(df["track_id"], df["path"])))


def find_marker(*dirs: Path) -> Path | None:
    """The generated-data marker left by a generator in one of `dirs`, if any."""
    for d in dirs:
        if (Path(d) / GENERATED_MARKER).is_file():
            return Path(d) / GENERATED_MARKER
    return None


def import_collection(audio_dir: Path, tracks_file: Path, playlists_file: Path, out: Path,
                      workers: int = 2, segment: str = "melon", min_frames: int = MIN_FRAMES,
                      progress: bool = True) -> dict[str, Any]:
    """Build the Melon directory `out`; returns the summary written to import.json.

    Args:
        audio_dir: root the tracks table's paths are relative to.
        tracks_file, playlists_file: the input tables (CSV, or TSV by extension).
        out: the Melon directory to create or to resume.
        workers: decoding processes (0 or 1: in this process), at most the usable CPUs
            and the tracks (a note on stderr when fewer than asked).
        segment: "melon" (20-50 s), "start" (first 30 s) or "full".
        min_frames: tracks with fewer mel frames are skipped (create_dataset needs 1300).
        progress: show a tqdm bar on stderr.
    Raises CollectionError for bad tables, settings or output directories (one that
    cannot be written, or is or holds an input), OutputLocked while another import
    writes `out`, OSError when writing fails (disk full; naming the file).
    """
    audio_dir, out = Path(audio_dir), Path(out)
    if segment not in SEGMENTS:
        raise CollectionError(f"--segment must be one of {', '.join(SEGMENTS)}, got '{segment}'")
    if not audio_dir.is_dir():
        raise CollectionError(f"{audio_dir}: audio directory not found")
    _refuse_inputs_in(out, {"--audio-dir": audio_dir, "--tracks": Path(tracks_file),
                            "--playlists": Path(playlists_file)})
    _check_writable(out)
    with output_lock(out):  # a second import into `out` stops here, at once
        return _import_locked(audio_dir, Path(tracks_file), Path(playlists_file), out,
                              workers, segment, min_frames, progress)


def _refuse_inputs_in(out: Path, inputs: dict[str, Path]) -> None:
    """CollectionError when `out` is an input or holds one: the import writes files
    and folders in `out` (and removes its own stale ones), which could overwrite it."""
    target = out.resolve()
    for option, path in inputs.items():
        p = path.resolve()
        if p == target or target in p.parents:
            how = "is" if p == target else "holds"
            raise CollectionError(f"--out {out}: {how} the {option} {path}; the import writes "
                                  "there and could overwrite it (choose a new --out)")


def _check_writable(out: Path) -> None:
    """CollectionError when files cannot be written in `out` (when it is a directory)
    or beside it (its parent, created if missing): before any work, not after it."""
    for d in (out.parent, out) if out.is_dir() else (out.parent,):
        err = write_error(d)
        if err is not None:
            raise CollectionError(f"--out {out}: cannot write in {d} "
                                  f"({err.strerror or err})")


def _import_locked(audio_dir: Path, tracks_file: Path, playlists_file: Path, out: Path,
                   workers: int, segment: str, min_frames: int, progress: bool
                   ) -> dict[str, Any]:
    """import_collection's work, under the lock of `out`."""
    settings = {"segment": segment, "min_frames": int(min_frames),
                "sample_rate": SAMPLE_RATE, "n_mels": N_MELS}
    known_ids, known_paths = _load_previous(out, settings)
    col = read_collection(tracks_file, playlists_file, known_ids)

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "import.json", {"settings": settings, "finished": False})
    jobs = _mel_jobs(col, audio_dir, out, segment, min_frames, known_paths)
    # Record the id map before the mels, so an interrupted run resumes with the same ids.
    _write_id_maps(out, col)
    status, skipped, frames = _run_mel_jobs(col, jobs, workers, progress)
    marker = _write_melon_files(col, out, skipped, audio_dir, tracks_file)
    reasons = Counter(s["reason"] for s in skipped)
    usable = len(frames)
    summary = {
        "settings": settings,
        "finished": True,
        "audio_dir": str(audio_dir),
        "tracks_file": str(tracks_file),
        "playlists_file": str(playlists_file),
        "counts": {
            "tracks": len(col.tracks), "usable": usable, "written": status["written"],
            "reused": status["reused"], "skipped": len(skipped),
            "playlists": len(col.playlists),
            "memberships": sum(len(p["songs"]) for p in col.playlists),
            "no_genre": sum(1 for r in col.tracks if not r["labels"]),
            "major_genres": len(col.codes.major), "detail_genres": len(col.codes.detail),
        },
        "skipped_by_reason": dict(sorted(reasons.items())),
        "frames": {"min": int(min(frames)), "max": int(max(frames))} if frames else None,
        "generated": marker is not None,
    }
    write_json(out / "import.json", summary)
    return summary


def _mel_jobs(col: Collection, audio_dir: Path, out: Path, segment: str, min_frames: int,
              known_paths: dict) -> list[tuple]:
    """One decoding job per track (a file already imported from the same path is reused);
    the mel folders exist and hold no stale temp files."""
    jobs, folders = [], set()
    for r in col.tracks:
        target = mel_path(out, r["id"])
        folders.add(target.parent)
        reuse = known_paths.get(r["track_id"]) == r["path"]  # same file as before
        jobs.append((str(audio_dir / r["path"]), str(target), segment, int(min_frames), reuse))
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        clean_stale_temp(folder)
    return jobs


def _run_mel_jobs(col: Collection, jobs: list[tuple], workers: int, progress: bool
                  ) -> tuple[Counter, list[dict], list[int]]:
    """Decode every file into its mel (in `workers` processes); returns the status
    counts, the skipped tracks with their reasons and the usable tracks' frame counts."""
    from tqdm import tqdm

    status: Counter = Counter()
    skipped = []
    frames = []
    pool, n_workers = worker_pool(workers, len(jobs))
    finished = False
    bar = tqdm(total=len(jobs), desc="mels", unit="file", file=sys.stderr,
               disable=not progress, mininterval=0.5)
    try:
        for i, res in bounded_map(pool, mel_job, jobs, limit=4 * n_workers):
            r = col.tracks[i]
            status[res["status"]] += 1
            if res["status"] == "skipped":
                skipped.append({"track_id": r["track_id"], "id": r["id"], "path": r["path"],
                                "reason": res["reason"], "detail": res["detail"]})
            else:
                frames.append(res["frames"])
            bar.update(1)
        finished = True
    finally:
        bar.close()
        stop_pool(pool, finished)
    return status, skipped, frames


def _write_melon_files(col: Collection, out: Path, skipped: list[dict], audio_dir: Path,
                       tracks_file: Path) -> Path | None:
    """The Melon layout's metadata files, import_skipped.json, and the generator's marker
    (and truth) when the collection was generated; returns the marker found, if any."""
    write_json(out / SONG_META, song_meta(col), indent=None)
    write_json(out / GENRE_NAMES, col.codes.names())
    write_json(out / TRAIN_PLAYLISTS, playlist_records(col), indent=None)
    reasons = Counter(s["reason"] for s in skipped)
    write_json(out / "import_skipped.json", {
        "count": len(skipped), "by_reason": dict(sorted(reasons.items())),
        "tracks": sorted(skipped, key=lambda s: s["id"])})
    marker = find_marker(audio_dir, Path(tracks_file).parent)
    for name in (GENERATED_MARKER, TRUTH_FILE):
        (out / name).unlink(missing_ok=True)
    if marker is not None:
        shutil.copyfile(marker, out / GENERATED_MARKER)
        truth = marker.parent / TRUTH_FILE
        if truth.is_file():
            write_json(out / TRUTH_FILE, _truth_by_id(truth, col), indent=None)
    return marker


def _write_id_maps(out: Path, col: Collection) -> None:
    import pandas as pd

    from ..io import atomic_path

    tracks = pd.DataFrame([{"id": r["id"], "track_id": r["track_id"], "path": r["path"]}
                           for r in sorted(col.tracks, key=lambda r: r["id"])])
    pls = pd.DataFrame([{"id": p["id"], "playlist_id": p["playlist_id"]} for p in col.playlists])
    for name, df in ((TRACK_IDS, tracks), ("playlist_ids.csv", pls)):
        with atomic_path(out / name) as tmp:
            df.to_csv(tmp, index=False)


def _truth_by_id(truth_file: Path, col: Collection) -> dict:
    """A generator's hidden truth keyed by its string ids -> keyed by the integer ids."""
    truth = json.loads(truth_file.read_text(encoding="utf-8"))
    id_of = {r["track_id"]: r["id"] for r in col.tracks}
    pl_of = {p["playlist_id"]: p["id"] for p in col.playlists}
    return {
        "generator": truth.get("generator"),
        "tracks": {str(id_of[t]): v for t, v in truth.get("tracks", {}).items() if t in id_of},
        "playlists": {str(pl_of[p]): v for p, v in truth.get("playlists", {}).items()
                      if p in pl_of},
    }


#: Kept for callers of the earlier name: the CPUs this process may use.
cpu_workers = usable_cpus
