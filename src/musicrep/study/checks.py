"""Manipulation checks of a generated corpus from the view inputs alone (torch-free, seconds):
how well the CF vectors and the genre metadata predict the true genre and the hidden mood,
overall, per popularity tercile and for niche against mainstream genres.

Why: the mechanism study (reports/mechanism/PLAN.md) needs corpora whose views do what the
paper says real data does (CF rich for popular tracks and noisy for the long tail, genre
metadata covering every track). These numbers show whether a generator preset does that
before any model is trained, and they are the only thing a preset may be tuned against:
tuning it on model results would build the hypothesis into the data.

What is measured, on the dataset's train and val tracks that have a CF vector (the test
tracks have none: they are the cold-start tracks), with out-of-fold predictions of a
seeded K-fold split:

* genre: one logistic regression per true major genre (``evaluation.probes.linear_probe``),
  macro ROC-AUC over the genres; the target is the generator's true genres
  (``song_major_genres`` of the truth file), which differ from the metadata in preset G2;
* mood: a ridge regression of the hidden mood (``evaluation.probes.mood_probe``), R^2;
* each from two inputs: ``cf`` (the dataset's cf_data) and ``genre_metadata`` (multi-hot
  over every genre code of the vocabulary, as the genre view reads the metadata);
* slices: the popularity terciles (``popularity.json`` playlist counts; ties broken by
  track id so the three parts have equal size), the niche genres' columns against the
  others (genre), and tracks of a niche genre against the others (mood). The niche genres
  are the truth file's ``niche_major_genres``; a corpus without them (G0) gets the same
  rule the generator uses (``toy.melon_catalog.niche_majors``: the genres with the fewest
  songs), so G0 and G1 are sliced alike.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.genres import multi_hot
from ..data.h5io import open_split, read_cf_known, read_labels
from ..errors import ConfigError
from ..evaluation.data import load_eval_data
from ..evaluation.metrics import macro_roc_pr_auc
from ..evaluation.probes import linear_probe, mood_probe
from ..evaluation.slices import TERCILES, terciles
from ..evaluation.slices import niche_genres as _niche
from ..layout import POPULARITY, DatasetLayout

# The slicing rules (TERCILES, terciles, the niche genres) are the evaluation's
# (evaluation.slices), so a corpus is sliced alike before and after training.
FOLDS = 5
INPUTS = ("cf", "genre_metadata")
#: What the presets are tuned to (PLAN.md): G1's CF must be noisy for genre, above all
#: for the niche genres, and still carry mood.
G1_TARGETS = {"cf genre ROC-AUC, all": ("<=", 0.85), "cf genre ROC-AUC, niche": ("<=", 0.70),
              "cf mood R^2, all": (">=", 0.30)}


@dataclass
class CheckData:
    """The view inputs and targets of the tracks the checks use (rows aligned)."""

    ids: np.ndarray  # (N,) track ids: train+val tracks with a CF vector
    cf: np.ndarray  # (N, D)
    metadata: np.ndarray  # (N, n_codes) multi-hot over the vocabulary
    genre: np.ndarray  # (N, M) true major genres, multi-hot
    major_codes: list[str]  # the M columns of `genre`
    primary: list[str]  # (N,) each track's first true major
    mood: np.ndarray  # (N,)
    playlists: np.ndarray  # (N,) popularity.json counts
    niche: list[str]  # niche major codes
    niche_source: str  # "truth" or "fewest songs"
    genre_target: str  # "truth" or "metadata" (no song_major_genres in the truth file)
    metadata_agreement: float  # share of tracks whose metadata majors equal the true ones
    without_cf: int  # train+val tracks left out: no CF vector
    truth_path: Path | None
    preset: str | None


def _read_cf(path: Path, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cf_data (N, D) float64, known (N,) bool) of a split, checked against its ids."""
    f, g = open_split(path, ("id", "cf_data"))
    with f:
        if not np.array_equal(np.asarray(g["id"][...]).reshape(-1), ids):
            raise ConfigError(f"{path}: dataset/id changed while reading")
        cf = np.asarray(g["cf_data"][...], dtype=np.float64)
    known, _ = read_cf_known(path)
    return cf, known


def _true_majors(truth: dict, path: Path, ids: np.ndarray) -> list[list[str]] | None:
    """Each track's true major codes from the truth file, or None when it has none."""
    songs = truth.get("song_major_genres")
    if songs is None:
        return None
    if not (isinstance(songs, list) and all(isinstance(s, list) and s and
                                            all(isinstance(c, str) for c in s) for s in songs)):
        raise ConfigError(f"{path}: 'song_major_genres' must be a list (one per song id) of "
                          "non-empty lists of genre codes")
    if ids.size and ids.max() >= len(songs):
        raise ConfigError(f"{path}: 'song_major_genres' has {len(songs)} songs but the dataset "
                          f"holds track id {int(ids.max())}: truth of another corpus?")
    return [songs[int(i)] for i in ids]


def load_check_data(dataset_dir: str | os.PathLike,
                    truth: str | os.PathLike | None = None) -> CheckData:
    """Read what the checks need from a created dataset and its corpus's truth file
    (found through the manifest unless `truth` names it). ConfigError naming the file
    when something is missing or malformed."""
    data = load_eval_data(dataset_dir, truth)
    if data.truth_path is None or data.mood is None:
        raise ConfigError(f"{dataset_dir}: no generated_truth.json found through the manifest: "
                          "the checks need a generated corpus (give the truth file)")
    if data.popularity is None:
        raise ConfigError(f"{DatasetLayout(Path(dataset_dir)).file(POPULARITY)}: missing "
                          "(the popularity terciles need it)")
    lay = DatasetLayout(Path(dataset_dir))
    vocab = json.loads(lay.genres.read_text(encoding="utf-8"))
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("ids", "cf", "meta", "major", "mood")}
    for split in ("train", "val"):
        ids = data.ids[split]
        cf, known = _read_cf(lay.split(split), ids)
        _, labels = read_labels(lay.split(split))
        parts["ids"].append(ids[known])
        parts["cf"].append(cf[known])
        parts["meta"].append(multi_hot(labels, len(vocab["codes"]))[known])
        parts["major"].append(data.genre_y[split][known])
        parts["mood"].append(data.mood[split][known])
    n_all = sum(data.ids[s].size for s in ("train", "val"))
    ids = np.concatenate(parts["ids"])
    if ids.size < 2 * FOLDS:
        raise ConfigError(f"{dataset_dir}: {ids.size} train/val tracks with a CF vector; "
                          f"the checks need at least {2 * FOLDS}")
    truth_obj = json.loads(data.truth_path.read_text(encoding="utf-8"))
    meta_codes = [c for c, m in zip(vocab["codes"], vocab.get("major") or
                                    [c.endswith("00") for c in vocab["codes"]]) if m]
    meta_major = np.concatenate(parts["major"])
    true = _true_majors(truth_obj, data.truth_path, ids)
    if true is None:  # no true genres: score against the metadata (and say so)
        true = [[meta_codes[j] for j in np.flatnonzero(row)] for row in meta_major]
        target = "metadata"
    else:
        target = "truth"
    codes = sorted({c for t in true for c in t} | set(meta_codes))
    col = {c: j for j, c in enumerate(codes)}
    genre = np.zeros((ids.size, len(codes)), dtype=np.uint8)
    for r, t in enumerate(true):
        genre[r, [col[c] for c in t]] = 1
    meta_as_codes = np.zeros_like(genre)
    meta_as_codes[:, [col[c] for c in meta_codes]] = meta_major
    niche, source = _niche(truth_obj, codes)
    gen = truth_obj.get("generator") if isinstance(truth_obj.get("generator"), dict) else {}
    return CheckData(
        ids=ids, cf=np.concatenate(parts["cf"]), metadata=np.concatenate(parts["meta"]),
        genre=genre, major_codes=codes, primary=[t[0] if t else "" for t in true],
        mood=np.concatenate(parts["mood"]),
        playlists=np.array([float(data.popularity.get(str(int(i)), 0)) for i in ids]),
        niche=niche, niche_source=source, genre_target=target,
        metadata_agreement=float(np.mean((genre == meta_as_codes).all(axis=1))),
        without_cf=int(n_all - ids.size), truth_path=data.truth_path,
        preset=gen.get("preset", "G0") if gen.get("generator") else None)


def _out_of_fold(x: np.ndarray, genre: np.ndarray, mood: np.ndarray, folds: int,
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold genre scores (N, M) and mood predictions (N,) of the linear probes."""
    rng = np.random.default_rng(seed)
    fold = rng.permutation(np.arange(len(mood)) % folds)
    scores = np.zeros(genre.shape, dtype=np.float64)
    pred = np.zeros(len(mood), dtype=np.float64)
    for k in range(folds):
        te, tr = fold == k, fold != k
        scores[te] = linear_probe(x[tr], genre[tr], x[te], seed=seed)
        items: dict[str, np.ndarray] = {}
        mood_probe(x[tr], mood[tr], x[te], mood[te], items=items)
        pred[te] = items["mood_pred"]
    return scores, pred


def _auc(y: np.ndarray, s: np.ndarray) -> float | None:
    return macro_roc_pr_auc(y, s)["roc_auc"] if y.size else None


def _r2(true: np.ndarray, pred: np.ndarray) -> float | None:
    if true.size < 2 or np.ptp(true) == 0:
        return None
    return float(1.0 - np.sum((true - pred) ** 2) / np.sum((true - true.mean()) ** 2))


def score(d: CheckData, scores: np.ndarray, pred: np.ndarray) -> dict[str, dict[str, Any]]:
    """Genre ROC-AUC and mood R^2 of one input's out-of-fold predictions, by slice."""
    tiers = terciles(d.playlists, d.ids)
    niche_col = np.isin(d.major_codes, d.niche)
    niche_row = np.isin(d.primary, d.niche)
    genre = {"all": _auc(d.genre, scores)}
    genre |= {t: _auc(d.genre[r], scores[r]) for t, r in tiers.items()}
    genre["niche"] = _auc(d.genre[:, niche_col], scores[:, niche_col]) if niche_col.any() else None
    genre["mainstream"] = _auc(d.genre[:, ~niche_col], scores[:, ~niche_col])
    mood = {"all": _r2(d.mood, pred)}
    mood |= {t: _r2(d.mood[r], pred[r]) for t, r in tiers.items()}
    mood["niche"] = _r2(d.mood[niche_row], pred[niche_row])
    mood["mainstream"] = _r2(d.mood[~niche_row], pred[~niche_row])
    return {"genre_roc_auc": genre, "mood_r2": mood}


def run_checks(dataset_dir: str | os.PathLike, truth: str | os.PathLike | None = None,
               folds: int = FOLDS, seed: int = 0) -> dict[str, Any]:
    """The checks of one dataset (see the module docstring), as a JSON-ready dict."""
    d = load_check_data(dataset_dir, truth)
    tiers = terciles(d.playlists, d.ids)
    out: dict[str, Any] = {
        "dataset": str(dataset_dir), "truth": str(d.truth_path), "preset": d.preset,
        "genre_target": d.genre_target, "tracks": int(d.ids.size),
        "tracks_without_cf": d.without_cf, "folds": folds, "seed": seed,
        "niche_major_genres": d.niche, "niche_source": d.niche_source,
        "niche_tracks": int(np.isin(d.primary, d.niche).sum()),
        "metadata_agreement": round(d.metadata_agreement, 4),
        "terciles": {t: {"tracks": int(r.size),
                         "playlists_min": float(d.playlists[r].min()),
                         "playlists_median": float(np.median(d.playlists[r])),
                         "playlists_max": float(d.playlists[r].max())} for t, r in tiers.items()},
        "inputs": {},
    }
    for name, x in (("cf", d.cf), ("genre_metadata", d.metadata.astype(np.float64))):
        scores, pred = _out_of_fold(x, d.genre, d.mood, folds, seed)
        out["inputs"][name] = score(d, scores, pred)
    return out


def g1_targets(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Whether a result meets the targets G1 was tuned to (G1_TARGETS)."""
    cf = result["inputs"]["cf"]
    have = {"cf genre ROC-AUC, all": cf["genre_roc_auc"]["all"],
            "cf genre ROC-AUC, niche": cf["genre_roc_auc"]["niche"],
            "cf mood R^2, all": cf["mood_r2"]["all"]}
    out = {}
    for k, (op, bound) in G1_TARGETS.items():
        v = have[k]
        ok = v is not None and (v <= bound if op == "<=" else v >= bound)
        out[k] = {"value": v, "target": f"{op} {bound:g}", "met": bool(ok)}
    return out


def _f(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def format_checks(result: dict[str, Any]) -> str:
    """A markdown summary of one dataset's checks."""
    cols = ("all", *TERCILES, "niche", "mainstream")
    head = (f"Manipulation checks: {result['dataset']} (preset {result['preset'] or 'unknown'}; "
            f"genre target: {result['genre_target']})")
    about = (f"{result['tracks']} train/val tracks with a CF vector "
             f"({result['tracks_without_cf']} without left out), {result['folds']}-fold "
             f"out-of-fold probes, seed {result['seed']}; niche genres "
             f"{', '.join(result['niche_major_genres']) or 'none'} ({result['niche_source']}; "
             f"{result['niche_tracks']} tracks); metadata names the true majors for "
             f"{100 * result['metadata_agreement']:.1f}% of tracks")
    lines = [
        head,
        about,
        "terciles (playlists per track, median): " + ", ".join(
            f"{t} {v['playlists_median']:g}" for t, v in result["terciles"].items()),
        "",
        "| input | measure | " + " | ".join(cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for name, m in result["inputs"].items():
        for measure, label in (("genre_roc_auc", "genre ROC-AUC"), ("mood_r2", "mood R^2")):
            lines.append(f"| {name} | {label} | "
                         + " | ".join(_f(m[measure][c]) for c in cols) + " |")
    lines += ["", "G1 targets: " + "; ".join(
        f"{k} {_f(v['value'])} ({v['target']}: {'met' if v['met'] else 'NOT met'})"
        for k, v in g1_targets(result).items())]
    return "\n".join(lines)
