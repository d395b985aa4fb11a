"""Slices of the test tracks, and a metric restricted to each: popularity terciles and
niche against mainstream genres (the breakdown columns, ``<column>@<slice>``).

Why: the paper's argument for contrasting audio with CF *and* genre metadata is about
where CF is weak, the long tail, and the mechanism study (reports/mechanism/PLAN.md, H4)
tests it on these slices. The same rules serve the manipulation checks
(``study.checks``), so a corpus is sliced alike before and after training.

- Terciles (``TERCILES``): the test tracks ordered by their playlist count in
  ``popularity.json`` (most first, ties by lower track id) and cut into three parts of
  equal size (to one track): ``top``, ``middle``, ``bottom``.
- Niche (``NICHE_SLICES``): the generator's niche major genres, from the truth file
  (``niche_major_genres``); a truth file without them (preset G0) gets the generator's
  own rule (``toy.melon_catalog.niche_majors``: the genres with the fewest songs), so
  G0 and G1 are sliced alike. A test track is niche when its first true major genre is.
  A genre probe's niche slice is its niche genres' columns over every test track (a
  track-row slice would leave each niche column almost without negatives); mood and
  continuation slice the test tracks (continuation: the held-out tracks of each
  playlist).

A slice value is the metric computed on that slice alone: macro ROC-AUC over the labels
with a positive and a negative in it, R^2 around the slice's own mean, and Recall@k over
the held-out tracks in the slice, averaged over the playlists that hold one. None where
a slice has nothing to score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..toy.melon_catalog import niche_majors
from ..toy.world import MELON_PRESETS
from .metrics import macro_roc_pr_auc

__all__ = ["DEFAULT_NICHE", "NICHE_SLICES", "SLICES", "TERCILES", "TrackSlices", "auc_by_slice",
           "make_slices", "niche_genres", "r2", "r2_by_slice", "recall_by_slice", "slice_column",
           "slice_masks", "terciles"]

TERCILES = ("top", "middle", "bottom")
NICHE_SLICES = ("niche", "mainstream")
SLICES = (*TERCILES, *NICHE_SLICES)
#: How many niche genres a truth file without ``niche_major_genres`` gets (G1's count).
DEFAULT_NICHE = MELON_PRESETS["G1"].niche_majors


def slice_column(column: str, name: str) -> str:
    """The breakdown column of ``column`` on slice ``name``: ``<column>@<name>``."""
    return f"{column}@{name}"


def terciles(playlists: np.ndarray, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Row indices of the popularity terciles (most playlists first); ties broken by
    track id, so the parts have equal size (to one)."""
    order = np.lexsort((np.asarray(ids), -np.asarray(playlists, dtype=np.float64)))
    return dict(zip(TERCILES, np.array_split(order, 3)))


def niche_genres(truth: dict, codes: Sequence[str]) -> tuple[list[str], str]:
    """The niche major codes and where they come from: the truth file's
    ``niche_major_genres`` ("truth", those among ``codes``), else the generator's rule
    over the primary majors of every song of ``song_major_genres`` ("fewest songs"),
    else none ("none")."""
    listed = truth.get("niche_major_genres")
    if isinstance(listed, list) and all(isinstance(c, str) for c in listed):
        return sorted(c for c in listed if c in codes), "truth"
    songs = truth.get("song_major_genres")
    if not isinstance(songs, list) or not songs:
        return [], "none"
    primary = [s[0] for s in songs if isinstance(s, list) and s]
    universe = sorted(set(primary) | set(codes))
    return niche_majors(primary, universe, DEFAULT_NICHE), "fewest songs"


@dataclass(frozen=True)
class TrackSlices:
    """Which slice each test track (row of the test split) belongs to."""

    tercile: np.ndarray | None  # (n_test,) "top" / "middle" / "bottom"; None: no popularity
    niche: np.ndarray | None  # (n_test,) bool, first true major is niche; None: no truth
    niche_majors: tuple[str, ...] = ()
    niche_source: str = "none"

    def track_masks(self) -> dict[str, np.ndarray]:
        """Slice name -> (n_test,) bool mask, for the slices this dataset has."""
        out = {}
        if self.tercile is not None:
            out |= {t: self.tercile == t for t in TERCILES}
        if self.niche is not None:
            out |= {"niche": self.niche, "mainstream": ~self.niche}
        return out

    def items(self) -> dict[str, np.ndarray]:
        """The per-item arrays a bootstrap over slices needs: ``tercile``, ``niche``."""
        out = {}
        if self.tercile is not None:
            out["tercile"] = self.tercile
        if self.niche is not None:
            out["niche"] = self.niche
        return out

    def facts(self) -> dict[str, object]:
        """What results.json's details say about the slices."""
        out: dict[str, object] = {}
        if self.tercile is not None:
            out["tercile_tracks"] = {t: int((self.tercile == t).sum()) for t in TERCILES}
        if self.niche is not None:
            out |= {"niche_major_genres": list(self.niche_majors),
                    "niche_source": self.niche_source, "niche_tracks": int(self.niche.sum())}
        return out


def make_slices(test_ids: np.ndarray, popularity: dict[str, float] | None,
                primary: Sequence[str] | None, niche: Sequence[str] = (),
                niche_source: str = "none") -> TrackSlices:
    """The test tracks' slices: terciles from ``popularity`` (None: no terciles), niche
    from each track's first true major ``primary`` (None: no niche slices)."""
    tercile = None
    if popularity is not None and len(test_ids):
        counts = np.array([float(popularity.get(str(int(t)), 0)) for t in test_ids])
        tercile = np.empty(len(test_ids), dtype="<U6")
        for name, rows in terciles(counts, test_ids).items():
            tercile[rows] = name
    is_niche = None if primary is None else np.isin(np.asarray(primary, dtype=str), list(niche))
    return TrackSlices(tercile, is_niche, tuple(niche), niche_source)


def _auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    return macro_roc_pr_auc(labels, scores)["roc_auc"] if labels.size else None


def auc_by_slice(scores: np.ndarray, labels: np.ndarray, slices: TrackSlices,
                 niche_columns: np.ndarray | None) -> dict[str, float | None]:
    """Macro ROC-AUC of a probe per slice: terciles restrict the test tracks,
    niche/mainstream the label columns (``niche_columns``, None: no niche slices)."""
    out: dict[str, float | None] = {}
    if slices.tercile is not None:
        out |= {t: _auc(labels[slices.tercile == t], scores[slices.tercile == t])
                for t in TERCILES}
    if slices.niche is not None and niche_columns is not None:
        out["niche"] = _auc(labels[:, niche_columns], scores[:, niche_columns])
        out["mainstream"] = _auc(labels[:, ~niche_columns], scores[:, ~niche_columns])
    return out


def r2(true: np.ndarray, pred: np.ndarray) -> float | None:
    """R^2 of ``pred`` around the mean of ``true`` (None: fewer than 2 values, or constant)."""
    if true.size < 2 or np.ptp(true) == 0:
        return None
    return float(1.0 - np.sum((true - pred) ** 2) / np.sum((true - true.mean()) ** 2))


def r2_by_slice(pred: np.ndarray, true: np.ndarray, slices: TrackSlices) -> dict[str, float | None]:
    """R^2 of a regression probe on the test tracks of each slice."""
    return {name: r2(true[m], pred[m]) for name, m in slices.track_masks().items()}


def recall_by_slice(playlist: np.ndarray, track: np.ndarray, rank: np.ndarray, k: int,
                    slices: TrackSlices) -> dict[str, float | None]:
    """Recall@k per slice from the (playlist, held-out track, rank) pairs: per playlist
    the share of its held-out tracks in the slice ranked within the first k, averaged
    over the playlists holding one (None: no held-out track in the slice)."""
    out: dict[str, float | None] = {}
    n_pl = int(playlist.max()) + 1 if playlist.size else 0
    hit = (rank < k).astype(np.float64)
    for name, mask in slices.track_masks().items():
        sel = mask[track]
        held = np.bincount(playlist[sel], minlength=n_pl)
        if not held.any():
            out[name] = None
            continue
        found = np.bincount(playlist[sel], weights=hit[sel], minlength=n_pl)
        out[name] = float(np.mean(found[held > 0] / held[held > 0]))
    return out


def slice_masks(items: dict[str, np.ndarray], name: str, prefix: str | None = None
                ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(test-track rows, label columns) of slice ``name`` in one run's per-item arrays
    (``evaluation.items``), by the rules above: a tercile restricts the rows
    (``tercile``); niche/mainstream restricts a label probe's columns
    (``<prefix>_niche``) when ``prefix`` names one, else the rows (``niche``). None: not
    restricted. KeyError when the arrays lack what the slice needs (a dataset without
    popularity or truth)."""
    if name in TERCILES:
        return np.asarray(items["tercile"]) == name, None
    if name not in NICHE_SLICES:
        raise ValueError(f"slice must be one of {', '.join(SLICES)}, got {name!r}")
    key = f"{prefix}_niche" if prefix is not None else "niche"
    niche = np.asarray(items[key]).astype(bool)
    mask = niche if name == "niche" else ~niche
    return (None, mask) if prefix is not None else (mask, None)
