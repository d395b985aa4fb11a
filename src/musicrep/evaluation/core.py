"""The paper's three downstream tasks on frozen track embeddings, plus reference rows.

1. Genre classification. A linear probe per major genre (standardised features,
   scikit-learn LogisticRegression, one-vs-rest, seeded), trained on train+val
   tracks and scored on test tracks: ROC-AUC and PR-AUC (average precision), macro
   over the major genres. A track counts as positive for a major genre when its
   labels hold the major code (GNxx00) or any of its detail codes (GNxxyy), so a
   track annotated only at the detail level is not a negative. Genres without a
   positive or without a negative among the test tracks have no AUC: they are left
   out of the macro average and counted.
2. Automatic tagging. The same probe and metrics on the top-50 playlist tags of
   ``track_tags.json`` (a song inherits the tags of the playlists containing it).
3. Cold-start playlist continuation. For each playlist of ``continuation.json``
   (tracks in train/val, "known", and in test, "held_out"), all test tracks are
   ranked by the cosine similarity of their embedding to the playlist's query: the
   mean of its known tracks' L2-normalised embeddings. The held-out tracks are the
   relevant items: Recall@100, R-precision, NDCG@100, MAP@100 (``musicrep.evaluation.metrics``)
   averaged over playlists. Rankings are computed for a batch of playlists at a
   time (a (batch, n_test) float32 block), never for all playlists at once.
   A second protocol, "vote" (PAPER.md section 8, as later work on Melon runs it):
   each known track retrieves its top-100 most similar test tracks; candidates are
   ranked by how many of the playlist's known tracks retrieved them, ties by the mean
   similarity to the known tracks that retrieved them, then by lower test row; the
   same four metrics (``vote_`` columns). When fewer than k+1 test tracks are
   candidates, every ranking finds every held-out track within k: both protocols are
   then left empty (with a note) instead of reporting a meaningless 1.0.
4. Mood (generated corpora only). When the generator's hidden truth
   ``generated_truth.json`` is found (``--truth`` or the dataset's manifest
   ``source.melon_dir``), a ridge-regression probe of the hidden per-song mood from
   the embeddings: R^2 and Spearman correlation on the test tracks.

Per-item outputs (``evaluate_embeddings(items=...)``, ``run_evaluation(per_item=True)``,
``evaluate.py --per-item``): what a bootstrap over test items needs, per model:
``genre_scores``/``genre_labels`` and ``tag_scores``/``tag_labels`` (n_test, C) probe
scores and truth, ``mood_pred``/``mood_true`` (n_test,), and for every continuation
column (both protocols) its value per scored playlist (n_playlists,), keyed by the
column name. ``write_items`` stores them as ``items.npz`` (keys ``<model>/<key>``).

Reference rows. "random-init": an untrained encoder of the same width and input
layout as the first model, initialised from ``seed``. "popularity": one ranking of
the test tracks for every playlist, by their count in ``popularity.json`` (the
number of playlists containing the track, over all playlists the dataset builder
read), ties by lower track id; it has no genre or tag columns. Test tracks are cold
start for the CF model, but not for this count: it includes the playlists being
evaluated, so the popularity row is an optimistic (oracle-flavoured) reference, not
a deployable cold-start system.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..inference.embed import DEFAULT_LAYER, embed_hdf5, resolve_checkpoint
from ..data.h5io import read_labels
from .metrics import hit_matrix, macro_roc_pr_auc, ranking_metrics, top_k
from .report import COLUMNS
from ..layout import SPLITS, TRUTH_FILE, corpus_origin

__all__ = [
    "PLAYLIST_BATCH",
    "VOTE_PER_TRACK",
    "continuation_vote_metrics",
    "dataset_is_generated",
    "find_truth_file",
    "load_embedding_file",
    "load_truth",
    "mood_probe",
    "read_items",
    "write_items",
    "split_embeddings",
    "ROW_KEYS",
    "EvalData",
    "EvalResult",
    "K",
    "continuation_metrics",
    "continuation_queries",
    "evaluate_embeddings",
    "continuation_degenerate",
    "linear_probe",
    "load_eval_data",
    "major_genre_targets",
    "model_names",
    "popularity_metrics",
    "random_init_encoder",
    "run_evaluation",
    "tag_targets",
]

K = 100
PLAYLIST_BATCH = 256  # playlists ranked per (batch, n_test) score block
VOTE_PER_TRACK = 100  # test tracks each known track retrieves in the vote protocol
VOTE_BLOCK = 1024  # known tracks per (block, n_test) similarity block
ROW_KEYS = COLUMNS  # the table's columns are owned by report.TASK_COLUMNS


def _note(msg: str) -> None:
    print(f"note: {msg}", file=sys.stderr)


def _read_json(path: Path, required_keys: Sequence[str] = ()) -> Any:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read JSON ({e})") from None
    for key in required_keys:
        if not isinstance(obj, dict) or key not in obj:
            raise ValueError(f"{path}: missing field '{key}'")
    return obj


def _read_labels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(ids (N,) int64, labels (N, W) int) of a split file."""
    return read_labels(path)  # the layout's one owner reads and checks it


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


def major_genre_targets(labels: np.ndarray, genres: dict) -> tuple[np.ndarray, list[str]]:
    """(N, W) -1-padded genre indices -> ((N, n_major) uint8 multi-hot, major codes).

    Column j is major genre j of the vocabulary (codes ending "00", in vocabulary
    order); a detail code GNxxyy also switches on its major GNxx00.
    """
    codes = list(genres["codes"])
    major_flags = list(genres.get("major") or [c.endswith("00") for c in codes])
    if len(major_flags) != len(codes):
        raise ValueError("genres.json: 'major' and 'codes' differ in length")
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
                    f"track_tags.json: track {t} has tag index {j} outside 0..{n_tags - 1}"
                )
            y[i, int(j)] = 1
    return y


def load_eval_data(dataset_dir: str | os.PathLike,
                   truth: str | os.PathLike | None = None) -> EvalData:
    """Read labels, ids and the side files of a dataset directory.

    train.h5, val.h5, test.h5 and genres.json are required (ValueError naming the file
    otherwise). Without track_tags.json the tagging columns are empty; without
    continuation.json or popularity.json the continuation columns, resp. the
    popularity row; without manifest.json the "dataset" entry is empty; each with a
    note on stderr.
    """
    root = Path(dataset_dir)
    if not root.is_dir():
        raise ValueError(f"{root}: no such dataset directory")
    for name in (*(f"{s}.h5" for s in SPLITS), "genres.json"):
        if not (root / name).is_file():
            raise ValueError(f"{root / name}: missing (required dataset file)")
    genres = _read_json(root / "genres.json", ("codes",))
    ids, genre_y = {}, {}
    majors: list[str] = []
    for s in SPLITS:
        ids[s], labels = _read_labels(root / f"{s}.h5")
        genre_y[s], majors = major_genre_targets(labels, genres)
    names_of = dict(zip(genres["codes"], genres.get("names") or genres["codes"]))

    tag_y = tag_names = None
    if (root / "track_tags.json").is_file():
        tt = _read_json(root / "track_tags.json", ("tags", "tracks"))
        tag_y = {s: tag_targets(ids[s], tt) for s in SPLITS}
        tag_names = list(tt["tags"])
    else:
        _note(f"{root / 'track_tags.json'} not found: tagging task skipped")

    playlists = None
    if (root / "continuation.json").is_file():
        playlists = _read_json(root / "continuation.json", ("playlists",))["playlists"]
    else:
        _note(f"{root / 'continuation.json'} not found: continuation task skipped")

    popularity = None
    if (root / "popularity.json").is_file():
        popularity = _read_json(root / "popularity.json")
        if not isinstance(popularity, dict):
            raise ValueError(f"{root / 'popularity.json'}: expected an object track id -> count")
    else:
        _note(f"{root / 'popularity.json'} not found: popularity reference skipped")

    manifest: dict = {}
    if (root / "manifest.json").is_file():
        manifest = _read_json(root / "manifest.json")
    else:
        _note(f"{root / 'manifest.json'} not found: results.json 'dataset' left empty")

    truth_path = Path(truth) if truth is not None else find_truth_file(root, manifest)
    if truth is not None and not truth_path.is_file():
        raise ValueError(f"{truth_path}: truth file not found")
    mood = load_truth(truth_path, ids) if truth_path is not None else None
    return EvalData(root, ids, genre_y, [str(names_of.get(c, c)) for c in majors],
                    tag_y, tag_names, playlists, popularity, manifest, mood,
                    dataset_is_generated(root, manifest) or truth_path is not None, truth_path)


def linear_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    seed: int = 0,
    c: float = 1.0,
    max_iter: int = 1000,
    n_jobs: int = 1,
) -> np.ndarray:
    """One-vs-rest logistic-regression probe: (N_test, C) decision scores.

    Features are standardised with the training mean and deviation. A label that is
    constant in training gets that constant as its score (it cannot be learned; its
    AUC comes out at chance instead of the label being silently dropped). ``n_jobs``
    fits that many labels in parallel (joblib processes).
    """
    from joblib import Parallel, delayed
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    xtr = scaler.transform(x_train).astype(np.float32, copy=False)
    xte = scaler.transform(x_test).astype(np.float32, copy=False)

    def fit_one(y: np.ndarray) -> np.ndarray:
        if y.min() == y.max():
            return np.full(xte.shape[0], float(y[0]))
        clf = LogisticRegression(C=c, max_iter=max_iter, random_state=seed)
        with warnings.catch_warnings():
            # A probe that stops at max_iter is still a valid (slightly less tuned)
            # linear classifier; the warning per label would flood the log.
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(xtr, y)
        return clf.decision_function(xte)

    if y_train.shape[1] == 0 or xtr.shape[0] == 0:
        return np.zeros((xte.shape[0], y_train.shape[1]), dtype=np.float64)
    cols = Parallel(n_jobs=n_jobs)(delayed(fit_one)(y_train[:, j]) for j in range(y_train.shape[1]))
    return np.stack(cols, axis=1).astype(np.float64)


def mood_probe(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
    alpha: float = 1.0, items: dict[str, np.ndarray] | None = None,
) -> dict[str, float | None]:
    """Ridge regression of a scalar (the hidden mood) from embeddings.

    Standardised features, ``Ridge(alpha)`` fitted on the training rows; returns the
    test-set ``r2`` and ``spearman`` (None when the test truth is constant). ``items``,
    when given, receives ``mood_pred`` and ``mood_true`` (n_test,).
    """
    from scipy.stats import spearmanr
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    reg = Ridge(alpha=alpha).fit(scaler.transform(x_train), y_train)
    pred = reg.predict(scaler.transform(x_test))
    if items is not None:
        items["mood_pred"], items["mood_true"] = np.asarray(pred, np.float64), np.asarray(y_test, np.float64)
    if len(y_test) < 2 or np.ptp(y_test) == 0:
        return {"r2": None, "spearman": None}
    rho = spearmanr(pred, y_test).statistic
    return {"r2": float(r2_score(y_test, pred)),
            "spearman": None if not np.isfinite(rho) else float(rho)}


def load_embedding_file(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(ids (N,) int64, embeddings (N, d) float32) of an ``.npz`` as encode.py --hdf5 writes.

    Never unpickles (``allow_pickle=False``). Raises ValueError naming the file for
    anything else: a pickle, a text file, missing ``ids``/``embeddings``, wrong shapes,
    non-integer ids, repeated ids or non-finite values.
    """
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: embedding file not found")
    expected = "expected an .npz with 'ids' (N,) and 'embeddings' (N, d)"
    try:
        z = np.load(path, allow_pickle=False)
    except ValueError:  # numpy's refusal of pickles; also what a text file gets
        raise ValueError(f"{path}: not an .npy/.npz file (pickled or text data is refused; "
                         f"{expected})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: not a readable .npz ({type(e).__name__}; {expected})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: a single array, {expected}")
    with z:
        missing = [k for k in ("ids", "embeddings") if k not in z.files]
        if missing:
            raise ValueError(f"{path}: missing array '{missing[0]}' ({expected})")
        try:
            ids, emb = z["ids"], z["embeddings"]
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(f"{path}: cannot read its arrays ({type(e).__name__}: object "
                             f"arrays are refused; {expected})") from None
    if ids.ndim == 2 and ids.shape[1] == 1:
        ids = ids[:, 0]
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{path}: 'ids' must be (N,) integers, got {ids.dtype} {ids.shape}")
    if emb.ndim != 2 or emb.shape[0] != ids.shape[0] or emb.shape[1] < 1:
        raise ValueError(f"{path}: 'embeddings' must be (N, d) with N = {ids.shape[0]} ids, "
                         f"got {emb.shape}")
    if not np.issubdtype(emb.dtype, np.floating):
        raise ValueError(f"{path}: 'embeddings' must be floating point, got {emb.dtype}")
    if np.unique(ids).size != ids.size:
        raise ValueError(f"{path}: 'ids' holds repeated track ids")
    emb = np.asarray(emb, dtype=np.float32)
    bad = ~np.isfinite(emb).all(axis=1)
    if bad.any():
        raise ValueError(f"{path}: non-finite embeddings for {int(bad.sum())} tracks "
                         f"(first id {int(ids[bad][0])})")
    return ids.astype(np.int64), emb


def split_embeddings(
    split_ids: dict[str, np.ndarray], ids: np.ndarray, emb: np.ndarray, source: str
) -> dict[str, np.ndarray]:
    """Rows of ``emb`` (one per id of ``ids``) for each split's ids, in split order.

    Every track of every split must have an embedding (ValueError naming ``source``,
    the split, how many are missing and the first missing id); extra ids are ignored.
    """
    sorted_ids, order = _index_of(np.asarray(ids, dtype=np.int64))
    out = {}
    for s, want in split_ids.items():
        pos = np.clip(np.searchsorted(sorted_ids, want), 0, max(0, sorted_ids.size - 1))
        found = sorted_ids[pos] == want if sorted_ids.size else np.zeros(len(want), bool)
        if not found.all():
            raise ValueError(f"{source}: no embedding for {int((~found).sum())} of the "
                             f"{len(want)} {s} tracks (first missing id {int(want[~found][0])})")
        out[s] = emb[order[pos]]
    return out


def find_truth_file(data_root: Path, manifest: dict) -> Path | None:
    """``generated_truth.json`` of the corpus a dataset was built from, or None.

    Looked for in the manifest's ``source.melon_dir`` (or a plain string ``source``),
    as given and relative to the dataset directory.
    """
    melon = _melon_dir_of(manifest)
    if melon is None:
        return None
    for cand in (Path(melon), data_root / melon):
        if (cand / TRUTH_FILE).is_file():
            return cand / TRUTH_FILE
    return None


def _melon_dir_of(manifest: dict) -> str | None:
    src = manifest.get("source")
    if isinstance(src, dict):
        src = src.get("melon_dir")
    return src if isinstance(src, str) and src else None


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
    obj = _read_json(path, ("song_mood",))
    mood = np.asarray(obj["song_mood"], dtype=np.float64)
    if mood.ndim != 1:
        raise ValueError(f"{path}: 'song_mood' must be a list of numbers")
    out = {}
    for s, ids in split_ids.items():
        if ids.size and (ids.min() < 0 or ids.max() >= mood.size):
            raise ValueError(f"{path}: 'song_mood' has {mood.size} songs but split {s} holds "
                             f"track id {int(ids.max())}: truth of another corpus?")
        out[s] = mood[ids]
    return out


def _index_of(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(ids, kind="stable")
    return ids[order], order


def _lookup(sorted_ids: np.ndarray, order: np.ndarray, wanted: Sequence[int]) -> np.ndarray:
    """Row positions of the ``wanted`` ids that exist (unknown ids dropped, repeats once)."""
    w = np.unique(np.asarray(list(wanted), dtype=np.int64))
    if w.size == 0 or sorted_ids.size == 0:
        return np.zeros(0, dtype=np.int64)
    pos = np.clip(np.searchsorted(sorted_ids, w), 0, sorted_ids.size - 1)
    found = sorted_ids[pos] == w
    return order[pos[found]]


def continuation_queries(
    playlists: Sequence[dict], known_ids: np.ndarray, test_ids: np.ndarray
) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """Map each playlist to (known rows in ``known_ids``, held-out columns in ``test_ids``).

    Track ids missing from the splits are ignored; a playlist left without a known or
    without a held-out track is skipped. Returns (known, held, n_skipped).
    """
    k_sorted, k_order = _index_of(np.asarray(known_ids, dtype=np.int64))
    t_sorted, t_order = _index_of(np.asarray(test_ids, dtype=np.int64))
    known, held = [], []
    skipped = 0
    for i, pl in enumerate(playlists):
        if not isinstance(pl, dict) or "known" not in pl or "held_out" not in pl:
            raise ValueError(f"continuation.json: playlist #{i} lacks 'known' or 'held_out'")
        kr = _lookup(k_sorted, k_order, pl["known"])
        hc = _lookup(t_sorted, t_order, pl["held_out"])
        if kr.size == 0 or hc.size == 0:
            skipped += 1
            continue
        known.append(kr)
        held.append(hc)
    return known, held, skipped


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _accumulate(total: dict[str, float], batch: dict[str, np.ndarray]) -> None:
    for key, v in batch.items():
        total[key] = total.get(key, 0.0) + float(v.sum())


def _ranking_batches(
    held: list[np.ndarray], n_test: int, k: int, batch_size: int, ranks_for,
    per_playlist: dict[str, list[np.ndarray]] | None = None,
) -> dict[str, float]:
    """Mean ranking metrics over playlists; ``per_playlist`` collects the per-row arrays."""
    total: dict[str, float] = {}
    for start in range(0, len(held), batch_size):
        batch_held = held[start : start + batch_size]
        n_rel = np.array([len(h) for h in batch_held])
        depth = min(n_test, int(max(k, n_rel.max())))  # R-precision needs depth R
        ranked = ranks_for(start, start + len(batch_held), depth)
        m = ranking_metrics(hit_matrix(ranked, batch_held), n_rel, k)
        _accumulate(total, m)
        if per_playlist is not None:
            for key, v in m.items():
                per_playlist.setdefault(key, []).append(np.asarray(v, np.float64))
    return {key: v / len(held) for key, v in total.items()} if held else {}


def _store_per_playlist(items: dict[str, np.ndarray] | None, parts: dict[str, list[np.ndarray]],
                        prefix: str = "") -> None:
    if items is not None:
        items.update({prefix + key: np.concatenate(v) for key, v in parts.items()})


def continuation_metrics(
    known_emb: np.ndarray,
    test_emb: np.ndarray,
    known: list[np.ndarray],
    held: list[np.ndarray],
    k: int = K,
    batch_size: int = 256,
    items: dict[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """Mean Recall@k, R-precision, NDCG@k, MAP@k over playlists, ranking all test tracks
    by cosine similarity to the mean normalised embedding of each playlist's known tracks.
    ``items``, when given, receives each metric per playlist (n_playlists,).
    """
    test_n = _l2(test_emb)

    def ranks_for(lo: int, hi: int, depth: int) -> np.ndarray:
        queries = _l2(np.stack([_l2(known_emb[rows]).mean(axis=0) for rows in known[lo:hi]]))
        return top_k(queries @ test_n.T, depth)  # one (batch, n_test) block at a time

    parts: dict[str, list[np.ndarray]] = {}
    out = _ranking_batches(held, test_n.shape[0], k, batch_size, ranks_for, parts)
    _store_per_playlist(items, parts)
    return out


def _vote_rankings(
    top_idx: np.ndarray, top_sim: np.ndarray, rows: Sequence[np.ndarray], depth: int
) -> np.ndarray:
    """(len(rows), depth) vote rankings, padded with -1 where fewer candidates exist.

    ``top_idx``/``top_sim`` (U, m): each known track's retrieved test columns and their
    similarities; ``rows[p]`` the known tracks (rows of ``top_idx``) of playlist p.
    """
    out = np.full((len(rows), depth), -1, dtype=np.int64)
    for p, r in enumerate(rows):
        cand, inv, votes = np.unique(top_idx[r].ravel(), return_inverse=True,
                                     return_counts=True)
        mean_sim = np.bincount(inv, weights=top_sim[r].ravel().astype(np.float64)) / votes
        order = np.lexsort((cand, -mean_sim, -votes))[:depth]  # votes, then similarity
        out[p, : order.size] = cand[order]
    return out


def continuation_vote_metrics(
    known_emb: np.ndarray,
    test_emb: np.ndarray,
    known: list[np.ndarray],
    held: list[np.ndarray],
    k: int = K,
    per_track: int = VOTE_PER_TRACK,
    batch_size: int = 256,
    block: int = VOTE_BLOCK,
    items: dict[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """The second continuation protocol (PAPER.md section 8), averaged over playlists.

    Each known track used by any playlist retrieves its ``per_track`` most cosine-
    similar test tracks (computed once per track, ``block`` tracks at a time, so one
    (block, n_test) float32 block exists at a time). A playlist's candidates are the
    union of its known tracks' retrievals, ranked by the number of its known tracks
    that retrieved them, ties by their mean similarity to those tracks, then by lower
    test row. Test tracks no known track retrieved are never ranked (they count as
    misses). Returns the metrics of ``ranking_metrics`` keyed with a ``vote_`` prefix;
    ``items``, when given, receives them per playlist under the same keys.
    """
    if not known:
        return {}
    test_n = _l2(test_emb)
    used = np.unique(np.concatenate(known))
    m = min(per_track, test_n.shape[0])
    top_idx = np.empty((used.size, m), dtype=np.int32)  # int32: 585k x 100 stays 234 MB
    top_sim = np.empty((used.size, m), dtype=np.float32)
    for start in range(0, used.size, block):
        q = _l2(known_emb[used[start : start + block]])
        sims = q @ test_n.T  # (block, n_test)
        idx = top_k(sims, m)
        top_idx[start : start + len(q)] = idx
        top_sim[start : start + len(q)] = np.take_along_axis(sims, idx, axis=1)
    local = [np.searchsorted(used, r) for r in known]  # playlist -> rows of top_idx

    def ranks_for(lo: int, hi: int, depth: int) -> np.ndarray:
        return _vote_rankings(top_idx, top_sim, local[lo:hi], depth)

    parts: dict[str, list[np.ndarray]] = {}
    m_out = _ranking_batches(held, test_n.shape[0], k, batch_size, ranks_for, parts)
    _store_per_playlist(items, parts, "vote_")
    return {f"vote_{key}": v for key, v in m_out.items()}


def popularity_metrics(
    test_ids: np.ndarray,
    popularity: dict[str, float],
    held: list[np.ndarray],
    k: int = K,
    batch_size: int = 256,
    items: dict[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """The same metrics for one global ranking of the test tracks by popularity count
    (descending; ties by lower track id; tracks absent from ``popularity`` count 0).
    ``items``, when given, receives them per playlist."""
    test_ids = np.asarray(test_ids, dtype=np.int64)
    counts = np.array([float(popularity.get(str(int(t)), 0)) for t in test_ids])
    order = np.lexsort((test_ids, -counts))

    def ranks_for(lo: int, hi: int, depth: int) -> np.ndarray:
        return np.broadcast_to(order[:depth], (hi - lo, depth))

    parts: dict[str, list[np.ndarray]] = {}
    out = _ranking_batches(held, len(test_ids), k, batch_size, ranks_for, parts)
    _store_per_playlist(items, parts)
    return out


def model_names(
    checkpoints: Sequence[str | os.PathLike], names: Sequence[str] | None = None
) -> list[str]:
    """Display names: given ``names``, else the run folder of each checkpoint.

    The folder is the checkpoint's parent (or the directory itself when a run
    directory is given; the grandparent when the parent is ``checkpoints/``).
    Repeated names get "-2", "-3" suffixes.
    """
    if names:
        if len(names) != len(checkpoints):
            raise ValueError(f"--names: {len(names)} names for {len(checkpoints)} models")
        base = [str(n) for n in names]
    else:
        base = []
        for c in checkpoints:
            p = Path(c).resolve()
            folder = p if p.is_dir() else p.parent
            if folder.name == "checkpoints":
                folder = folder.parent
            base.append(folder.name or p.stem)
    out, seen = [], {}
    for b in base:
        seen[b] = seen.get(b, 0) + 1
        out.append(b if seen[b] == 1 else f"{b}-{seen[b]}")
    return out


def random_init_encoder(width: float, input_layout: str, seed: int) -> torch.nn.Module:
    """An untrained AudioEncoder, initialised from ``seed`` without touching global RNG state."""
    from ..model.encoders import AudioEncoder

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AudioEncoder(width=width, input_layout=input_layout)
    return model.eval()


def evaluate_embeddings(
    emb: dict[str, np.ndarray],
    data: EvalData,
    seed: int = 0,
    k: int = K,
    batch_size: int = 256,
    queries: tuple[list[np.ndarray], list[np.ndarray]] | None = None,
    probe_max_train: int | None = None,
    probe_jobs: int = 1,
    items: dict[str, np.ndarray] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """All three tasks for one model's split embeddings {"train","val","test"}: (N, d).

    ``probe_max_train`` caps the probes' training set at a seeded random subset of
    train+val tracks (the full Melon train+val is 585k tracks; continuation always
    uses all of them). Returns (row, details): the row has ``ROW_KEYS`` (None where a
    task was skipped), details the counts behind it (labels scored/skipped, playlists).
    ``items``, when given, receives the per-item arrays of the module docstring.
    """
    row: dict[str, Any] = {key: None for key in ROW_KEYS}
    details: dict[str, Any] = {}
    x_tr = np.concatenate([emb["train"], emb["val"]])
    x_te = emb["test"]
    probe_rows = np.arange(len(x_tr))
    if probe_max_train is not None and probe_max_train < len(x_tr):
        rng = np.random.default_rng(seed)
        probe_rows = np.sort(rng.choice(len(x_tr), size=probe_max_train, replace=False))
    details["probe_train_tracks"] = len(probe_rows)
    x_probe = x_tr[probe_rows]

    def probe(y_parts: dict[str, np.ndarray], task: str) -> dict[str, Any]:
        y_tr = np.concatenate([y_parts["train"], y_parts["val"]])[probe_rows]
        scores = linear_probe(x_probe, y_tr, x_te, seed, n_jobs=probe_jobs)
        if items is not None:
            items[f"{task}_scores"], items[f"{task}_labels"] = scores, y_parts["test"]
        return macro_roc_pr_auc(y_parts["test"], scores)

    g = probe(data.genre_y, "genre")
    row["genre_roc_auc"], row["genre_pr_auc"] = g["roc_auc"], g["pr_auc"]
    details["genre_labels_scored"], details["genre_labels_skipped"] = g["n_scored"], g["n_skipped"]

    if data.tag_y is not None:
        t = probe(data.tag_y, "tag")
        row["tag_roc_auc"], row["tag_pr_auc"] = t["roc_auc"], t["pr_auc"]
        details["tag_labels_scored"], details["tag_labels_skipped"] = t["n_scored"], t["n_skipped"]

    if queries is not None and queries[0] and continuation_degenerate(len(x_te), k) is None:
        m = continuation_metrics(x_tr, x_te, queries[0], queries[1], k, batch_size, items)
        row.update({key: m[key] for key in (f"recall@{k}", "r_precision", f"ndcg@{k}", f"map@{k}")})
        row.update(continuation_vote_metrics(x_tr, x_te, queries[0], queries[1], k,
                                             batch_size=batch_size, items=items))
        details["playlists"] = len(queries[0])

    if data.mood is not None:
        y_mood = np.concatenate([data.mood["train"], data.mood["val"]])[probe_rows]
        mp = mood_probe(x_probe, y_mood, x_te, data.mood["test"], items=items)
        row["mood_r2"], row["mood_spearman"] = mp["r2"], mp["spearman"]
    return row, details


def continuation_degenerate(n_candidates: int, k: int = K) -> str | None:
    """Why continuation cannot be scored with ``n_candidates`` test tracks, or None.

    With k or fewer candidates every ranking holds every held-out track within its
    top k, so Recall@k is 1.0 even for a random ranking: not a result.
    """
    if n_candidates <= k:
        return (f"continuation not scored: the test split has {n_candidates} candidate "
                f"tracks, not more than k={k}, so any ranking (random included) would get "
                f"recall@{k} = 1.0; build a dataset with more than {k} test tracks")
    return None


@dataclass
class EvalResult:
    rows: list[dict[str, Any]]
    details: dict[str, dict[str, Any]]
    test_maps: dict[str, np.ndarray]  # model -> subsampled test embeddings (for plots)
    map_index: np.ndarray  # rows of the test split in the subsample
    checkpoints: dict[str, str]  # model name -> checkpoint (models given as checkpoints)
    sources: dict[str, str] = field(default_factory=dict)  # name -> embedding file(s)
    notes: list[str] = field(default_factory=list)  # caveats for the report
    items: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # per_item=True


def run_evaluation(
    data: EvalData,
    checkpoints: Sequence[str | os.PathLike],
    names: Sequence[str] | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
    layer: str = DEFAULT_LAYER,
    batch_size: int = 256,
    input_layout: str | None = None,
    map_points: int = 2000,
    progress: bool = True,
    probe_max_train: int | None = None,
    probe_jobs: int = 1,
    embeddings: Sequence[tuple[str, Sequence[str | os.PathLike]]] = (),
    per_item: bool = False,
) -> EvalResult:
    """Embed every split with each model and the random-init reference, run the tasks.

    ``embeddings``: precomputed sets as (name, [.npz files]); the files' ``ids`` must
    together cover every track of the three splits. Rows come in the order: the given
    models, the embedding sets, "random-init" (only when a model is given, as it copies
    the first model's architecture), "popularity". Raises ValueError/FileNotFoundError
    for a checkpoint that is missing or not an encoder, or a bad embedding file.
    ``per_item`` keeps each row's per-item arrays in ``EvalResult.items``.
    """
    from ..training.checkpoint import load_audio_encoder

    if not checkpoints and not embeddings:
        raise ValueError("no models and no embedding files given")
    labels = model_names(checkpoints, names) if checkpoints else []
    paths = [resolve_checkpoint(c) for c in checkpoints]
    # Precomputed sets are read (and checked) before any model is run.
    loaded: dict[str, dict[str, np.ndarray]] = {}
    sources: dict[str, str] = {}
    for set_name, files in embeddings:
        if set_name in labels or set_name in loaded:
            raise ValueError(f"--embeddings: name '{set_name}' is used twice")
        parts = [load_embedding_file(f) for f in files]
        ids = np.concatenate([p[0] for p in parts])
        if np.unique(ids).size != ids.size:
            raise ValueError(f"--embeddings {set_name}: the files repeat track ids")
        dims = {p[1].shape[1] for p in parts}
        if len(dims) != 1:
            raise ValueError(f"--embeddings {set_name}: the files differ in width {sorted(dims)}")
        source = ",".join(str(f) for f in files)
        loaded[set_name] = split_embeddings(data.ids, ids, np.concatenate([p[1] for p in parts]),
                                            source)
        sources[set_name] = source
    encoders = []
    for p in paths:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            encoders.append(load_audio_encoder(p, input_layout=input_layout, map_location="cpu"))
        for w in caught:
            _note(str(w.message))
    if encoders:
        ref_name = "random-init"
        while ref_name in labels or ref_name in loaded:
            ref_name += "'"
        first = encoders[0]
        encoders.append(random_init_encoder(first.width, first.input_layout, seed))
        labels.append(ref_name)

    notes: list[str] = []
    queries = None
    if data.playlists is not None:
        known_ids = np.concatenate([data.ids["train"], data.ids["val"]])
        known, held, skipped = continuation_queries(data.playlists, known_ids, data.ids["test"])
        if skipped:
            _note(f"continuation: {skipped} playlists without known or held-out tracks "
                  "in the splits skipped")
        queries = (known, held)
        why = continuation_degenerate(len(data.ids["test"]))
        if why is not None and known:
            print(f"warning: {why}", file=sys.stderr)
            notes.append(why)

    rng = np.random.default_rng(seed)
    n_test = len(data.ids["test"])
    map_index = np.sort(rng.choice(n_test, size=min(map_points, n_test), replace=False))

    def embed_all(name: str, enc: torch.nn.Module) -> dict[str, np.ndarray]:
        emb = {}
        for s in SPLITS:
            res = embed_hdf5(enc, data.root / f"{s}.h5", layer, device, batch_size,
                             progress=progress)
            if not np.array_equal(res["ids"], data.ids[s]):
                raise ValueError(f"{data.root / f'{s}.h5'}: ids changed while reading")
            bad = ~np.isfinite(res["embeddings"]).all(axis=1)
            if bad.any():
                raise ValueError(
                    f"{data.root / f'{s}.h5'}: model {name} gives non-finite embeddings for "
                    f"{int(bad.sum())} tracks (first id {int(res['ids'][bad][0])}; "
                    "NaN in dataset/data?)"
                )
            emb[s] = res["embeddings"]
        enc.cpu()
        return emb

    jobs = [(n, lambda n=n, e=e: embed_all(n, e)) for n, e in zip(labels, encoders)]
    jobs[len(paths):len(paths)] = [(n, lambda e=e: e) for n, e in loaded.items()]
    rows, details, maps, per = [], {}, {}, {}
    for name, get in jobs:
        emb = get()
        per[name] = {}
        row, det = evaluate_embeddings(emb, data, seed, K, PLAYLIST_BATCH, queries,
                                       probe_max_train, probe_jobs,
                                       per[name] if per_item else None)
        row["model"] = name
        rows.append(row)
        details[name] = det
        maps[name] = emb["test"][map_index]
        loaded.pop(name, None)  # free a precomputed set once scored

    if (queries is not None and queries[0] and data.popularity is not None
            and continuation_degenerate(n_test) is None):
        row = {key: None for key in ROW_KEYS}
        row["model"] = "popularity"
        per["popularity"] = {}
        row.update(popularity_metrics(data.ids["test"], data.popularity, queries[1], K,
                                      PLAYLIST_BATCH, per["popularity"] if per_item else None))
        rows.append(row)
        details["popularity"] = {"playlists": len(queries[1])}
    ckpts = {n: str(p) for n, p in zip(labels, paths)}
    return EvalResult(rows, details, maps, map_index, ckpts, sources, notes,
                      per if per_item else {})


def write_items(path: str | os.PathLike, items: dict[str, dict[str, np.ndarray]]) -> Path:
    """Per-item arrays of several models to one ``.npz`` (keys ``<model>/<key>``), atomically."""
    from ..io import atomic_path

    flat = {f"{model}/{key}": np.asarray(v) for model, arrays in items.items()
            for key, v in arrays.items()}
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **flat)
    return path


def read_items(path: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
    """What ``write_items`` wrote: {model: {key: array}} (never unpickles)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    with np.load(path, allow_pickle=False) as z:
        for name in z.files:
            model, _, key = name.rpartition("/")
            out.setdefault(model, {})[key] = z[name]
    return out
