"""The evaluation's data: what a dataset directory holds besides the audio.

``load_eval_data`` reads the track ids of each split, the genre targets (multi-hot over
the major genres: a track counts as positive for a major genre when its labels hold the
major code GNxx00 or any of its detail codes GNxxyy, so a track annotated only at the
detail level is not a negative), the tag targets (the top-50 playlist tags of
``track_tags.json``: a song inherits the tags of the playlists containing it), the
continuation playlists, the popularity counts, the manifest, and on a generated corpus
the generator's hidden truth (``generated_truth.json``, found with ``--truth`` or
through the manifest's source directory; ``evaluation.truth``): the per-song mood and
the true major and detail genres. It also places every test track in its slices
(``evaluation.slices``: popularity tercile, niche genre). Every file name comes from
``musicrep.layout``.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.h5io import read_labels
from ..errors import ConfigError
from ..layout import (
    CONTINUATION,
    GENRES,
    POPULARITY,
    SPLITS,
    TRACK_TAGS,
    TRUTH_FILE,
    DatasetLayout,
    corpus_dirs,
    corpus_origin,
)
from .slices import TrackSlices, make_slices
from .truth import read_truth, truth_mood

__all__ = [
    "EvalData",
    "dataset_is_generated",
    "find_truth_file",
    "load_eval_data",
    "load_truth",
    "major_genre_targets",
    "note",
    "tag_targets",
]


def note(msg: str) -> None:
    """A ``note:`` line on stderr (a task or file skipped, a caveat)."""
    print(f"note: {msg}", file=sys.stderr)


def _read_json(path: Path, required_keys: Sequence[str] = ()) -> Any:
    """The JSON in ``path``; with ``required_keys``, an object holding them."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read JSON ({e})") from None
    if required_keys and not isinstance(obj, dict):
        raise ConfigError(f"{path}: expected a JSON object with "
                          f"{', '.join(repr(k) for k in required_keys)}, got {_kind(obj)}")
    for key in required_keys:
        if key not in obj:
            raise ConfigError(f"{path}: missing field '{key}'")
    return obj


def _kind(obj: Any) -> str:
    """A JSON value's kind, for messages: "a list", "a string", ..."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(obj), type(obj).__name__)


def _expect(ok: bool, path: Path, what: str) -> None:
    """ConfigError "``path``: ``what``" unless ``ok``: valid JSON of the wrong shape."""
    if not ok:
        raise ConfigError(f"{path}: {what}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int_list(v: Any) -> bool:
    return isinstance(v, list) and all(_is_int(x) for x in v)


@dataclass
class EvalData:
    """Everything the tasks need besides the embeddings; optional parts may be None."""

    root: Path
    ids: dict[str, np.ndarray]  # split -> (N,) track ids
    genre_y: dict[str, np.ndarray]  # split -> (N, n_major) uint8
    major_names: list[str]
    tag_y: dict[str, np.ndarray] | None  # split -> (N, n_tags) uint8
    tag_names: list[str] | None
    playlists: list[dict] | None  # continuation.json "playlists"
    popularity: dict[str, float] | None
    manifest: dict = field(default_factory=dict)
    mood: dict[str, np.ndarray] | None = None  # split -> (N,) hidden mood (generated only)
    generated: bool = False  # the dataset was built from a generated corpus
    truth_path: Path | None = None
    major_codes: list[str] = field(default_factory=list)  # the codes of genre_y's columns
    # The truth file's genres (None without a truth file; (N, 0) when it lists none):
    true_genre_y: dict[str, np.ndarray] | None = None  # split -> (N, n_true_major) uint8
    true_genre_codes: list[str] = field(default_factory=list)
    true_detail_y: dict[str, np.ndarray] | None = None  # split -> (N, n_true_detail) uint8
    true_detail_codes: list[str] = field(default_factory=list)
    slices: TrackSlices | None = None  # the test tracks' slices (breakdown columns)


def major_genre_targets(labels: np.ndarray, genres: dict) -> tuple[np.ndarray, list[str]]:
    """(N, W) -1-padded genre indices -> ((N, n_major) uint8 multi-hot, major codes).

    Column j is major genre j of the vocabulary (codes ending "00", in vocabulary
    order); a detail code GNxxyy also switches on its major GNxx00.
    """
    codes = list(genres["codes"])
    major_flags = list(genres.get("major") or [c.endswith("00") for c in codes])
    if len(major_flags) != len(codes):
        raise ValueError(f"{GENRES}: 'major' and 'codes' differ in length")
    majors = [c for c, m in zip(codes, major_flags) if m]
    col_of_major = {c: j for j, c in enumerate(majors)}
    # vocabulary index -> major column (or -1 when the code's major is not in the vocabulary)
    to_col = np.array([col_of_major.get(c[:4] + "00", -1) for c in codes], dtype=np.int64)
    labels = np.asarray(labels)
    # Work on the few set entries only (a handful per track), not on an int64 copy of
    # the whole (N, 100) padded matrix.
    rows, pos = np.nonzero(labels >= 0)
    idx = labels[rows, pos].astype(np.int64)
    if idx.size and idx.max() >= len(codes):
        raise ValueError(
            f"genre label index {int(idx.max())} is outside the vocabulary of {len(codes)} codes"
        )
    cols = to_col[idx]
    y = np.zeros((labels.shape[0], len(majors)), dtype=np.uint8)
    keep = cols >= 0
    y[rows[keep], cols[keep]] = 1
    return y, majors


def tag_targets(ids: np.ndarray, track_tags: dict) -> np.ndarray:
    """(N,) track ids -> (N, n_tags) uint8 from track_tags.json; unknown tracks have no tags."""
    n_tags = len(track_tags["tags"])
    tracks = track_tags["tracks"]
    y = np.zeros((len(ids), n_tags), dtype=np.uint8)
    for i, t in enumerate(ids):
        for j in tracks.get(str(int(t)), ()):
            if not 0 <= int(j) < n_tags:
                raise ValueError(
                    f"{TRACK_TAGS}: track {t} has tag index {j} outside 0..{n_tags - 1}"
                )
            y[i, int(j)] = 1
    return y



def _present(path: Path, skipped: str) -> bool:
    """Whether an optional side file exists; if not, a note says what is ``skipped``."""
    if path.is_file():
        return True
    note(f"{path} not found: {skipped}")
    return False


def _read_genres(path: Path) -> dict:
    """genres.json: ``codes`` (strings), and ``names``/``major`` of the same length."""
    genres = _read_json(path, ("codes",))
    codes = genres["codes"]
    _expect(isinstance(codes, list) and all(isinstance(c, str) for c in codes), path,
            "'codes' must be a list of genre codes (strings)")
    for key, kind in (("names", str), ("major", bool)):
        v = genres.get(key)
        _expect(v is None or (isinstance(v, list) and len(v) == len(codes)
                              and all(isinstance(x, kind) for x in v)), path,
                f"'{key}' must be a list of {len(codes)} {kind.__name__} values, one per code")
    return genres


def _read_track_tags(path: Path) -> dict:
    """track_tags.json: ``tags`` (strings) and ``tracks`` (track id -> tag indices)."""
    tt = _read_json(path, ("tags", "tracks"))
    _expect(isinstance(tt["tags"], list), path, "'tags' must be a list of tag names")
    _expect(isinstance(tt["tracks"], dict) and all(_int_list(v) for v in tt["tracks"].values()),
            path, "'tracks' must map track ids to lists of tag indices")
    return tt


def _read_playlists(path: Path) -> list[dict]:
    """continuation.json's ``playlists``: objects with ``known`` and ``held_out`` id lists."""
    playlists = _read_json(path, ("playlists",))["playlists"]
    _expect(isinstance(playlists, list), path, "'playlists' must be a list")
    for i, pl in enumerate(playlists):
        if not (isinstance(pl, dict) and _int_list(pl.get("known"))
                and _int_list(pl.get("held_out"))):
            raise ConfigError(f"{path}: playlist #{i} must be an object with 'known' and "
                              "'held_out' lists of track ids")
    return playlists


def _read_popularity(path: Path) -> dict[str, float]:
    popularity = _read_json(path)
    _expect(isinstance(popularity, dict) and all(_is_number(v) for v in popularity.values()),
            path, "expected an object mapping track id to a count")
    return popularity


def _split_targets(lay: DatasetLayout) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray],
                                                 list[str], list[str]]:
    """(ids per split, major-genre targets per split, major genre names, their codes)."""
    genres = _read_genres(lay.genres)
    ids, genre_y = {}, {}
    majors: list[str] = []
    for s in SPLITS:
        ids[s], labels = read_labels(lay.split(s))  # the layout's one owner reads and checks it
        genre_y[s], majors = major_genre_targets(labels, genres)
    names_of = dict(zip(genres["codes"], genres.get("names") or genres["codes"]))
    return ids, genre_y, [str(names_of.get(c, c)) for c in majors], majors


def load_eval_data(dataset_dir: str | os.PathLike,
                   truth: str | os.PathLike | None = None) -> EvalData:
    """Read labels, ids and the side files of a dataset directory.

    train.h5, val.h5, test.h5 and genres.json are required (ValueError naming the file
    otherwise). Without track_tags.json the tagging columns are empty; without
    continuation.json or popularity.json the continuation columns, resp. the
    popularity row; without manifest.json the "dataset" entry is empty; each with a
    note on stderr. With a truth file (``truth``, else found through the manifest) also
    its mood and true genres (``evaluation.truth``); the test tracks' slices always
    (``evaluation.slices``; what the dataset has of them).
    """
    root = Path(dataset_dir)
    lay = DatasetLayout(root)
    required = (*(lay.split(s) for s in SPLITS), lay.genres)
    if not root.is_dir() or not any(p.is_file() for p in required):
        raise ConfigError(f"{root}: no dataset here ({', '.join(p.name for p in required)}); "
                          "run create_dataset first")
    for path in required:
        if not path.is_file():
            raise ConfigError(f"{path}: missing (required dataset file)")
    ids, genre_y, major_names, major_codes = _split_targets(lay)

    tag_y = tag_names = None
    if _present(lay.track_tags, "tagging task skipped"):
        tt = _read_track_tags(lay.track_tags)
        tag_y = {s: tag_targets(ids[s], tt) for s in SPLITS}
        tag_names = [str(t) for t in tt["tags"]]
    playlists = popularity = None
    if _present(lay.file(CONTINUATION), "continuation task skipped"):
        playlists = _read_playlists(lay.file(CONTINUATION))
    if _present(lay.file(POPULARITY), "popularity reference skipped"):
        popularity = _read_popularity(lay.file(POPULARITY))
    manifest: dict = {}
    if _present(lay.manifest, "results.json 'dataset' left empty"):
        manifest = _read_json(lay.manifest)
        _expect(isinstance(manifest, dict), lay.manifest,
                f"expected a JSON object (create_dataset's manifest), got {_kind(manifest)}")

    truth_path = Path(truth) if truth is not None else find_truth_file(root, manifest)
    if truth is not None and not truth_path.is_file():
        raise ConfigError(f"{truth_path}: truth file not found")
    got = None
    if truth_path is not None:
        got = read_truth(_read_json(truth_path, ("song_mood",)), truth_path, ids, major_codes)
    data = EvalData(root, ids, genre_y, major_names, tag_y, tag_names, playlists, popularity,
                    manifest, None if got is None else got.mood,
                    dataset_is_generated(root, manifest) or truth_path is not None, truth_path,
                    major_codes)
    if got is not None:
        data.true_genre_y, data.true_genre_codes = got.genre_y, got.genre_codes
        data.true_detail_y, data.true_detail_codes = got.detail_y, got.detail_codes
    data.slices = make_slices(ids["test"], popularity, None if got is None else got.primary,
                              () if got is None else got.niche,
                              "none" if got is None else got.niche_source)
    return data


def find_truth_file(data_root: Path, manifest: dict) -> Path | None:
    """``generated_truth.json`` of the corpus a dataset was built from, or None.

    Looked for in the manifest's ``source.melon_dir`` (or a plain string ``source``),
    as given and relative to the dataset directory.
    """
    return next((c / TRUTH_FILE for c in corpus_dirs(manifest, data_root)
                 if (c / TRUTH_FILE).is_file()), None)


def dataset_is_generated(data_root: Path, manifest: dict) -> bool:
    """True when the dataset's manifest says its source was generated.

    The manifest's ``source.generated`` decides; a manifest without it falls back to
    the presence of ``generated.json`` in the source Melon directory.
    """
    return corpus_origin(manifest, data_root)[0] == "generated"


def load_truth(path: Path, split_ids: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Hidden per-song mood for each split's ids from ``generated_truth.json``.

    The file holds ``song_mood``: a list indexed by song id (toy.py writes it).
    """
    return truth_mood(_read_json(path, ("song_mood",)), path, split_ids)
