"""Reading a Melon Playlist Dataset directory (or the generated corpus in its layout).

A Melon directory holds `train.json` (and optionally `val.json`, `test.json`): lists of
playlists; `song_meta.json`: one record per song; `genre_gn_all.json`: genre code ->
name; and the mel spectrograms at `arena_mel/{id // 1000}/{id}.npy`, (48, T) in dB.

Two kinds of problems are told apart:
- the metadata is malformed (bad JSON, a missing or mistyped field): that is fatal, and
  `MelonFormatError` names the file, the record and the field;
- one track is unusable (its mel is missing, corrupt, all zero, too short...): the real
  dataset has about 1% of these, so the track is skipped with a `TrackSkip` reason and
  the caller records it in its report.

Mels are read one at a time (`load_mel`); nothing here holds all of them in memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import N_MELS  # the mel front end owns the band count

SONG_META = "song_meta.json"
GENRE_NAMES = "genre_gn_all.json"
TRAIN_PLAYLISTS = "train.json"  # the playlists CF, tags and the importer use
PLAYLIST_FILES = (TRAIN_PLAYLISTS, "val.json", "test.json")
MEL_DIR = "arena_mel"


class MelonFormatError(ValueError):
    """Malformed metadata: the message names the file, the record and the field."""


class TrackSkip(Exception):
    """One track cannot be used; `reason` is a short machine-readable tag."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Playlist:
    id: int
    songs: tuple[int, ...]
    tags: tuple[str, ...]
    source: str  # the file it came from, e.g. "train.json"


@dataclass(frozen=True)
class Song:
    id: int
    genres: tuple[str, ...]  # major codes (GNxx00)
    detail_genres: tuple[str, ...]  # detail codes (GNxxyy)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise MelonFormatError(f"{path}: file not found")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise MelonFormatError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except UnicodeDecodeError as e:
        raise MelonFormatError(f"{path}: not UTF-8 text ({e.reason})") from None


def _field(path: Path, i: int, rec: Any, key: str, kind: type, item_kind: type | None = None):
    """Return rec[key] checked against `kind` (and `item_kind` for list items)."""
    if not isinstance(rec, dict):
        raise MelonFormatError(f"{path}: record {i} is {type(rec).__name__}, expected an object")
    if key not in rec:
        raise MelonFormatError(f"{path}: record {i} (id {rec.get('id', '?')}) has no field '{key}'")
    value = rec[key]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if ok and item_kind is not None:
        ok = all(isinstance(v, item_kind) and not isinstance(v, bool) for v in value)
    if not ok:
        want = f"list of {item_kind.__name__}" if item_kind else kind.__name__
        raise MelonFormatError(
            f"{path}: record {i} (id {rec.get('id', '?')}) field '{key}' is "
            f"{json.dumps(value)[:60]}, expected {want}"
        )
    return value


def _json_list(path: Path) -> list:
    data = _read_json(path)
    if not isinstance(data, list):
        raise MelonFormatError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return data


def read_playlists(root: Path, files: tuple[str, ...] = PLAYLIST_FILES) -> list[Playlist]:
    """Playlists of the named files that exist under `root`; `train.json` is required."""
    root = Path(root)
    if not (root / TRAIN_PLAYLISTS).is_file():
        raise MelonFormatError(f"{root / 'train.json'}: file not found (is this a Melon directory?)")
    out: list[Playlist] = []
    for name in files:
        path = root / name
        if not path.is_file():
            continue
        for i, rec in enumerate(_json_list(path)):
            pid = _field(path, i, rec, "id", int)
            songs = _field(path, i, rec, "songs", list, int)
            tags = _field(path, i, rec, "tags", list, str)
            out.append(Playlist(pid, tuple(songs), tuple(tags), name))
    return out


def read_song_meta(root: Path) -> list[Song]:
    """The genre baskets of every song in `song_meta.json`."""
    path = Path(root) / SONG_META
    songs = []
    for i, rec in enumerate(_json_list(path)):
        sid = _field(path, i, rec, "id", int)
        gnr = _field(path, i, rec, "song_gn_gnr_basket", list, str)
        dtl = _field(path, i, rec, "song_gn_dtl_gnr_basket", list, str)
        songs.append(Song(sid, tuple(gnr), tuple(dtl)))
    return songs


def read_genre_names(root: Path) -> dict[str, str]:
    """`genre_gn_all.json`: code -> name for every genre code."""
    path = Path(root) / GENRE_NAMES
    data = _read_json(path)
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise MelonFormatError(f"{path}: expected an object mapping genre code to name")
    return data


def mel_path(root: Path, song_id: int) -> Path:
    return Path(root) / MEL_DIR / str(song_id // 1000) / f"{song_id}.npy"


def load_mel(root: Path, song_id: int, min_frames: int = 0) -> np.ndarray:
    """The (48, T) dB mel of one song, checked; raises TrackSkip when it is unusable."""
    path = mel_path(root, song_id)
    if not path.is_file():
        raise TrackSkip("mel_missing", str(path))
    try:
        mel = np.load(path, allow_pickle=False)
    except Exception as e:  # truncated files raise ValueError, OSError, EOFError...
        raise TrackSkip("mel_unreadable", f"{path}: {type(e).__name__}") from None
    if mel.ndim != 2 or mel.shape[0] != N_MELS:
        raise TrackSkip("wrong_shape", f"{path}: shape {mel.shape}, expected ({N_MELS}, T)")
    if not np.issubdtype(mel.dtype, np.floating):
        raise TrackSkip("wrong_dtype", f"{path}: dtype {mel.dtype}, expected float")
    if mel.shape[1] < min_frames:
        raise TrackSkip("too_short", f"{path}: {mel.shape[1]} frames, need {min_frames}")
    if not np.isfinite(mel).all():
        raise TrackSkip("non_finite", f"{path}: NaN or inf values")
    if not mel.any():
        raise TrackSkip("all_zero", str(path))
    return mel
