"""The generator's hidden truth (``generated_truth.json``) as the evaluation reads it:
the per-song mood, true major and detail genres, and the niche genres.

Why: on a generated corpus the metadata can be wrong on purpose (preset G2 misnames the
major genre of a fifth of the artists) while the audio and the playlists follow the
true genres, so what an embedding learned is measured against the truth, beside the
metadata labels. On presets G0 and G1 the truth equals the metadata and so do the
scores. A dataset without a truth file (the real Melon data, your own collection) has
none of this, and its evaluation is as it was.

The file holds, indexed by song id: ``song_mood`` (required), ``song_major_genres`` and
``song_detail_genres`` (lists of genre codes), and for presets other than G0
``niche_major_genres`` (``toy.melon`` writes it). A truth file without the genre lists
gives empty label matrices, so their tasks say why they are not scored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .slices import niche_genres

__all__ = ["Truth", "read_truth", "truth_mood"]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_ids(path: Path, key: str, size: int, split_ids: dict[str, np.ndarray]) -> None:
    """ConfigError when a split holds a track id the truth's ``key`` list does not cover."""
    for s, ids in split_ids.items():
        if ids.size and (ids.min() < 0 or ids.max() >= size):
            raise ConfigError(f"{path}: '{key}' has {size} songs but split {s} holds "
                              f"track id {int(ids.max())}: truth of another corpus?")


def truth_mood(obj: dict, path: Path, split_ids: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Hidden per-song mood for each split's ids from the truth file's JSON ``obj`` (read
    from ``path``): ``song_mood``, a list indexed by song id."""
    moods = obj["song_mood"]
    if not (isinstance(moods, list) and all(_is_number(v) for v in moods)):
        raise ConfigError(f"{path}: 'song_mood' must be a list of finite numbers, one per song id")
    mood = np.asarray(moods, dtype=np.float64)
    _check_ids(path, "song_mood", mood.size, split_ids)
    return {s: mood[ids] for s, ids in split_ids.items()}


def _song_codes(obj: dict, key: str, path: Path,
                split_ids: dict[str, np.ndarray]) -> list | None:
    """The truth's per-song code lists under ``key``, checked (None: the file has none)."""
    songs = obj.get(key)
    if songs is None:
        return None
    if not (isinstance(songs, list) and all(isinstance(s, list) and all(isinstance(c, str)
                                                                        for c in s) for s in songs)):
        raise ConfigError(f"{path}: '{key}' must be a list (one per song id) of lists of "
                          "genre codes")
    _check_ids(path, key, len(songs), split_ids)
    return songs


def _multi_hot(songs: list | None, split_ids: dict[str, np.ndarray], first: list[str]
               ) -> tuple[dict[str, np.ndarray], list[str]]:
    """Per split (N, C) uint8 targets of the codes of each track, and the C codes:
    ``first`` in its order, then every other code of the dataset's tracks, sorted."""
    if songs is None:
        return {s: np.zeros((len(ids), 0), dtype=np.uint8) for s, ids in split_ids.items()}, []
    used = {c for ids in split_ids.values() for i in ids for c in songs[int(i)]}
    codes = list(first) + sorted(used - set(first))
    col = {c: j for j, c in enumerate(codes)}
    y = {}
    for s, ids in split_ids.items():
        y[s] = np.zeros((len(ids), len(codes)), dtype=np.uint8)
        for r, i in enumerate(ids):
            y[s][r, [col[c] for c in songs[int(i)]]] = 1
    return y, codes


@dataclass
class Truth:
    """What the evaluation reads from a truth file, per split of the dataset."""

    mood: dict[str, np.ndarray]  # split -> (N,)
    genre_y: dict[str, np.ndarray]  # split -> (N, M) true major genres; M = 0: none given
    genre_codes: list[str]
    detail_y: dict[str, np.ndarray]  # split -> (N, D) true detail genres; D = 0: none given
    detail_codes: list[str]
    primary: list[str] | None  # test tracks' first true major ("" if none); None: no majors
    niche: list[str]  # niche major codes
    niche_source: str  # "truth", "fewest songs" or "none"


def read_truth(obj: dict, path: Path, split_ids: dict[str, np.ndarray],
               major_codes: list[str]) -> Truth:
    """Everything the tasks use from the truth file's JSON ``obj`` (read from ``path``,
    with ``song_mood``) for the dataset's tracks.

    The true majors' columns are the dataset's major codes (``major_codes``, the
    metadata targets' order) followed by any other true major code, so on a corpus whose
    metadata is the truth the two target matrices are equal. ConfigError naming the
    file when a list has the wrong shape or misses a track.
    """
    mood = truth_mood(obj, path, split_ids)
    majors = _song_codes(obj, "song_major_genres", path, split_ids)
    details = _song_codes(obj, "song_detail_genres", path, split_ids)
    genre_y, genre_codes = _multi_hot(majors, split_ids, major_codes if majors else [])
    detail_y, detail_codes = _multi_hot(details, split_ids, [])
    primary = None
    if majors is not None:
        primary = [majors[int(i)][0] if majors[int(i)] else "" for i in split_ids["test"]]
    niche, source = niche_genres(obj, genre_codes) if majors is not None else ([], "none")
    return Truth(mood, genre_y, genre_codes, detail_y, detail_codes, primary, niche, source)
