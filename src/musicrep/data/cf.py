"""Collaborative-filtering track vectors from playlist co-occurrence.

The original factorised the playlist x track matrix with LightFM (WARP loss, 300
components) and used the 300 item factors plus the item bias, 301 numbers, as the CF
view of a track. LightFM no longer builds on current Pythons; `implicit`'s BPR is also a
ranking loss, and its item factors already end in a bias column (the user factors hold a
1 there), so 300 factors give the same 301-d shape. ALS has no bias: it is trained with
`factors + 1` factors to keep the width.

Only non-test tracks are in the matrix: test tracks are the cold-start tracks. A
train/val track that no training playlist holds has no interaction to learn from:
implicit leaves its factors, bias column included, at exactly zero. Such a track's CF
vector is no information, not a point in the CF space, so `CFResult.track_interactions`
says which tracks they are (0 interactions), create_dataset flags them (`cf_known`, see
h5io.py) and the training objectives keep them out of every CF loss term.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .melon import Playlist


@dataclass
class CFResult:
    track_ids: np.ndarray  # (T,) the matrix's columns
    track_vectors: np.ndarray  # (T, factors + 1) float32; all zero where interactions == 0
    track_interactions: np.ndarray  # (T,) int64: playlists holding each track
    playlist_ids: np.ndarray  # (P,) playlists with at least one track in the matrix
    playlist_vectors: np.ndarray  # (P, factors + 1) float32


def interaction_matrix(
    playlists: list[Playlist], track_ids: np.ndarray
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Binary playlist x track matrix over `track_ids`; rows of empty playlists dropped."""
    col = {int(t): j for j, t in enumerate(track_ids)}
    rows, cols, kept = [], [], []
    for pl in playlists:
        js = sorted({col[s] for s in pl.songs if s in col})
        if js:
            rows.extend([len(kept)] * len(js))
            cols.extend(js)
            kept.append(pl.id)
    m = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(kept), len(track_ids))
    )
    return m, np.asarray(kept, dtype=np.int64)


def train_cf(
    playlists: list[Playlist],
    track_ids: np.ndarray,
    algorithm: str = "bpr",
    factors: int = 300,
    epochs: int = 50,
    learning_rate: float = 0.05,
    regularization: float = 0.01,
    seed: int = 42,
    show_progress: bool = True,
) -> CFResult:
    """Factorise the playlist x track matrix of `track_ids`; deterministic for a seed.

    One thread: implicit's multi-threaded updates race (hogwild), so only a single
    thread gives the same vectors for the same seed. The CPU model always: implicit's
    GPU build (chosen by default where CUDA is found) ignores `num_threads`, draws other
    numbers and returns GPU matrices instead of numpy arrays.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit warns and slows down otherwise
    from implicit.als import AlternatingLeastSquares
    from implicit.bpr import BayesianPersonalizedRanking

    matrix, playlist_ids = interaction_matrix(playlists, track_ids)
    if matrix.nnz == 0:
        raise ValueError("no playlist contains any of the CF tracks: cannot train CF")
    if algorithm == "bpr":
        model = BayesianPersonalizedRanking(
            factors=factors, learning_rate=learning_rate, regularization=regularization,
            iterations=epochs, random_state=seed, num_threads=1, use_gpu=False,
        )
    elif algorithm == "als":
        model = AlternatingLeastSquares(
            factors=factors + 1, regularization=regularization, iterations=epochs,
            random_state=seed, num_threads=1, use_gpu=False,
        )
    else:
        raise ValueError(f"cf algorithm '{algorithm}' unknown; expected 'bpr' or 'als'")
    model.fit(matrix, show_progress=show_progress)
    interactions = np.asarray(matrix.getnnz(axis=0), dtype=np.int64)  # (T,)
    vectors = np.array(model.item_factors, dtype=np.float32)  # (T, factors + 1)
    # implicit already leaves these at zero; say so here rather than rely on it, since
    # "all-zero row" is how files without the cf_known flag are read (h5io.py).
    vectors[interactions == 0] = 0.0
    return CFResult(
        track_ids=np.asarray(track_ids),
        track_vectors=vectors,
        track_interactions=interactions,
        playlist_ids=playlist_ids,
        playlist_vectors=np.asarray(model.user_factors, dtype=np.float32),
    )
