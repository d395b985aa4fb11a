"""Ranking metrics for playlist continuation, and deterministic batched top-k ranking.

All metrics use binary relevance: an item is relevant to a playlist when it is one
of the playlist's held-out tracks. With ``ranked`` the system's ranking (best first),
``rel_i`` = 1 when the item at rank ``i`` (1-based) is relevant, and ``R`` the number
of relevant items:

- Recall@k       = (sum_{i<=k} rel_i) / R
- R-precision    = (sum_{i<=R} rel_i) / R  (precision at depth R)
- NDCG@k         = DCG@k / IDCG@k, DCG@k = sum_{i<=k} rel_i / log2(i + 1),
                   IDCG@k = sum_{i<=min(R,k)} 1 / log2(i + 1) (all relevant items first)
- AP@k           = (1 / min(R, k)) * sum_{i<=k} P@i * rel_i, with P@i the precision at
                   depth i; MAP@k is its mean over playlists. The min(R, k) normaliser
                   makes a perfect top-k score 1 even when R > k.

For classification probes, ``macro_roc_pr_auc`` averages ROC-AUC and PR-AUC (average
precision, scikit-learn's step-wise definition) over labels, leaving out labels whose
ground truth has no positive or no negative (no AUC is defined for them).

The per-list functions (``recall_at_k`` etc.) are the readable definitions; the
vectorised ``ranking_metrics`` computes the same numbers for many lists at once from
a boolean hit matrix and is what the evaluation uses. Everything here is pure: no
state, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

__all__ = [
    "average_precision_at_k",
    "hit_matrix",
    "iter_top_k",
    "macro_roc_pr_auc",
    "ndcg_at_k",
    "r_precision",
    "rank_of",
    "ranking_metrics",
    "recall_at_k",
    "scorable_labels",
    "top_k",
]


def _hits(ranked: Iterable[int], relevant: Iterable[int]) -> tuple[np.ndarray, int]:
    """Boolean relevance of each ranked item, and the number of relevant items."""
    rel = {int(r) for r in relevant}
    if not rel:
        raise ValueError("ranking metric: the set of relevant items is empty")
    ranked = np.asarray(list(ranked) if not isinstance(ranked, np.ndarray) else ranked)
    hits = np.fromiter((int(x) in rel for x in ranked.ravel()), dtype=bool, count=ranked.size)
    return hits, len(rel)


def _check_k(k: int) -> int:
    if int(k) < 1:
        raise ValueError(f"ranking metric: k must be >= 1, got {k}")
    return int(k)


def recall_at_k(ranked: Sequence[int] | np.ndarray, relevant: Iterable[int], k: int) -> float:
    """Fraction of the relevant items found in the first ``k`` ranked items."""
    k = _check_k(k)
    hits, n_rel = _hits(ranked, relevant)
    return float(hits[:k].sum() / n_rel)


def r_precision(ranked: Sequence[int] | np.ndarray, relevant: Iterable[int]) -> float:
    """Precision at depth R = number of relevant items.

    A ranking shorter than R counts the missing positions as misses.
    """
    hits, n_rel = _hits(ranked, relevant)
    return float(hits[:n_rel].sum() / n_rel)


def ndcg_at_k(ranked: Sequence[int] | np.ndarray, relevant: Iterable[int], k: int) -> float:
    """Normalised discounted cumulative gain at ``k`` with binary relevance."""
    k = _check_k(k)
    hits, n_rel = _hits(ranked, relevant)
    hits = hits[:k]
    # Rank i (1-based) is discounted by log2(i + 1): positions 0..k-1 -> log2(2..k+1).
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = float((hits * discounts[: hits.size]).sum())
    idcg = float(discounts[: min(n_rel, k)].sum())
    return dcg / idcg


def average_precision_at_k(
    ranked: Sequence[int] | np.ndarray, relevant: Iterable[int], k: int
) -> float:
    """AP@k = sum over relevant positions i <= k of P@i, divided by min(R, k)."""
    k = _check_k(k)
    hits, n_rel = _hits(ranked, relevant)
    hits = hits[:k]
    precision_at_i = np.cumsum(hits) / np.arange(1, hits.size + 1)
    return float((precision_at_i * hits).sum() / min(n_rel, k))


def hit_matrix(ranked: np.ndarray, relevant: Sequence[Iterable[int]]) -> np.ndarray:
    """(P, K) boolean matrix: ``ranked[p, j]`` is one of ``relevant[p]``.

    ``ranked`` holds item indices, one ranking per row; ``relevant[p]`` the relevant
    item indices of row p. Works row by row with ``np.isin``, so its memory is that of
    ``ranked`` itself.
    """
    ranked = np.asarray(ranked)
    if ranked.ndim != 2 or ranked.shape[0] != len(relevant):
        raise ValueError(
            f"hit_matrix: ranked must be (P, K) with P = len(relevant) = {len(relevant)}, "
            f"got shape {ranked.shape}"
        )
    out = np.zeros(ranked.shape, dtype=bool)
    for p, rel in enumerate(relevant):
        out[p] = np.isin(ranked[p], np.fromiter((int(r) for r in rel), dtype=np.int64))
    return out


def ranking_metrics(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per-row Recall@k, R-precision, NDCG@k and AP@k from a (P, K) hit matrix.

    ``hits[p, j]`` says whether the item ranked j-th (0-based) for row p is relevant;
    ``n_relevant[p]`` is R for that row (it may exceed what ``hits`` shows). ``hits``
    must be at least ``max(k, max R)`` wide so that R-precision sees depth R, unless
    it already covers every candidate item (then deeper positions cannot be hits).
    Returns arrays of shape (P,) keyed ``recall@k``, ``r_precision``, ``ndcg@k``,
    ``map@k`` (the per-row AP@k; average it to get MAP@k).
    """
    k = _check_k(k)
    hits = np.asarray(hits, dtype=bool)
    n_rel = np.asarray(n_relevant, dtype=np.int64)
    if hits.ndim != 2 or n_rel.shape != (hits.shape[0],):
        raise ValueError(
            f"ranking_metrics: hits must be (P, K) and n_relevant (P,), got "
            f"{hits.shape} and {n_rel.shape}"
        )
    if np.any(n_rel < 1):
        raise ValueError("ranking_metrics: every row needs at least one relevant item")
    width = hits.shape[1]
    # A row whose relevant items are all visible already has every hit it can have,
    # so a shallower matrix is fine for it; otherwise R-precision would be undercounted.
    need = np.maximum(k, n_rel)
    short = (need > width) & (hits.sum(axis=1) < n_rel)
    if np.any(short):
        raise ValueError(
            f"ranking_metrics: hit matrix has depth {width} but a row needs depth "
            f"{int(need[short].max())} (max(k, R))"
        )
    kk = min(k, width)
    top = hits[:, :kk]
    cum = np.cumsum(top, axis=1)
    n_found = cum[:, -1] if kk else np.zeros(len(n_rel), dtype=np.int64)

    recall = n_found / n_rel

    # R-precision: hits among the first R positions, R differs per row.
    cum_all = np.cumsum(hits, axis=1)
    depth = np.minimum(n_rel, width)
    r_prec = cum_all[np.arange(len(n_rel)), depth - 1] / n_rel

    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (top * discounts[:kk]).sum(axis=1)
    ideal_cum = np.cumsum(discounts)
    idcg = ideal_cum[np.minimum(n_rel, k) - 1]
    ndcg = dcg / idcg

    precision_at_i = cum / np.arange(1, kk + 1)
    ap = (precision_at_i * top).sum(axis=1) / np.minimum(n_rel, k)

    return {
        f"recall@{k}": recall.astype(np.float64),
        "r_precision": r_prec.astype(np.float64),
        f"ndcg@{k}": ndcg.astype(np.float64),
        f"map@{k}": ap.astype(np.float64),
    }


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` largest scores of each row, best first.

    Deterministic: ties are broken by the lower column index, also at the k-th
    position (a plain partial selection would pick an arbitrary tied item there).
    NaN scores rank last. Rows where ties straddle the k-th position (rare with
    real-valued scores) are redone with a full stable sort of that row.
    """
    import torch  # its top-k selection is ~10x faster than np.argpartition on CPU

    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"top_k: scores must be 2-D (P, N), got shape {scores.shape}")
    n_rows, n_items = scores.shape
    k = min(_check_k(k), n_items)
    if n_items == 0 or n_rows == 0:
        return np.zeros((n_rows, k), dtype=np.int64)
    dtype = scores.dtype if scores.dtype in (np.float32, np.float64) else np.float64
    sc = np.ascontiguousarray(scores, dtype=dtype)
    if np.isnan(sc).any():
        sc = np.where(np.isnan(sc), -np.inf, sc)
    vals_t, part_t = torch.topk(torch.from_numpy(sc), k, dim=1, largest=True, sorted=False)
    vals, part = vals_t.numpy(), part_t.numpy()
    # Sort the selected items by score (descending), then by column index.
    order = np.lexsort((part, -vals), axis=-1)
    out = np.take_along_axis(part, order, axis=1).astype(np.int64, copy=False)
    if k < n_items:
        kth = vals.min(axis=1, keepdims=True)
        # More than k items at or above the k-th score: the selection among the tied
        # ones was arbitrary, so redo those rows exactly.
        for r in np.nonzero((sc >= kth).sum(axis=1) > k)[0]:
            out[r] = np.argsort(-sc[r], kind="stable")[:k]
    return out


def rank_of(scores: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """0-based positions that ``columns`` hold in the full ranking of one row of
    ``scores`` (N,), as ``top_k`` orders it: by descending score, ties by the lower
    column, NaN last. A position below k is a hit of ``top_k(scores, k)``.

    Counts instead of sorting: (len(columns), N) comparisons, no copy of the ranking.
    """
    s = np.asarray(scores)
    s = np.where(np.isnan(s), -np.inf, s) if np.isnan(s).any() else s
    cols = np.asarray(columns, dtype=np.int64)
    mine = s[cols][:, None]
    above = (s[None, :] > mine).sum(axis=1)
    tied_before = ((s[None, :] == mine) & (np.arange(s.size)[None, :] < cols[:, None])).sum(axis=1)
    return (above + tied_before).astype(np.int64)


def iter_top_k(
    queries: np.ndarray,
    items: np.ndarray,
    k: int | Sequence[int] | np.ndarray,
    batch_size: int = 256,
) -> Iterator[tuple[slice, np.ndarray]]:
    """Rank ``items`` for each query by inner product, in batches of queries.

    Yields ``(rows, indices)`` per batch, ``rows`` the slice of queries covered and
    ``indices`` a (len(rows), K) array of item indices, best first, where K is
    ``k`` (an int) or the largest of ``k[rows]`` (a per-query depth, e.g. max(100, R)
    for R-precision), capped at the number of items. Only one (batch, n_items)
    float32 score block exists at a time, so memory is bounded by ``batch_size``.
    Normalise ``queries`` and ``items`` beforehand to rank by cosine similarity.
    """
    queries = np.asarray(queries, dtype=np.float32)
    items = np.asarray(items, dtype=np.float32)
    if queries.ndim != 2 or items.ndim != 2 or queries.shape[1] != items.shape[1]:
        raise ValueError(
            f"iter_top_k: queries (P, d) and items (N, d) must share d, got "
            f"{queries.shape} and {items.shape}"
        )
    if batch_size < 1:
        raise ValueError(f"iter_top_k: batch_size must be >= 1, got {batch_size}")
    depth = np.broadcast_to(np.asarray(k, dtype=np.int64), (queries.shape[0],))
    for start in range(0, queries.shape[0], batch_size):
        rows = slice(start, min(start + batch_size, queries.shape[0]))
        scores = queries[rows] @ items.T
        yield rows, top_k(scores, int(depth[rows].max()))


def scorable_labels(y_true: np.ndarray) -> np.ndarray:
    """Columns of the (N, C) truth with both a positive and a negative row: the labels an
    AUC is defined for (the others are skipped by ``macro_roc_pr_auc``)."""
    positives = (np.asarray(y_true) > 0).sum(axis=0)
    return np.nonzero((positives > 0) & (positives < np.shape(y_true)[0]))[0]


def macro_roc_pr_auc(y_true: np.ndarray, scores: np.ndarray) -> dict[str, float | int | None]:
    """Macro ROC-AUC and PR-AUC over the columns of a multi-label problem.

    ``y_true`` (N, C) binary, ``scores`` (N, C) real. Columns whose truth is all 0 or
    all 1 are skipped and counted. Returns {"roc_auc", "pr_auc" (None if no column
    could be scored), "n_scored", "n_skipped"}.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    y_true = np.asarray(y_true)
    scores = np.asarray(scores, dtype=np.float64)
    if y_true.shape != scores.shape or y_true.ndim != 2:
        raise ValueError(
            f"macro_roc_pr_auc: y_true and scores must both be (N, C), got "
            f"{y_true.shape} and {scores.shape}"
        )
    usable = scorable_labels(y_true)
    if usable.size == 0:
        return {"roc_auc": None, "pr_auc": None, "n_scored": 0, "n_skipped": int(y_true.shape[1])}
    roc = [roc_auc_score(y_true[:, j] > 0, scores[:, j]) for j in usable]
    pr = [average_precision_score(y_true[:, j] > 0, scores[:, j]) for j in usable]
    return {
        "roc_auc": float(np.mean(roc)),
        "pr_auc": float(np.mean(pr)),
        "n_scored": int(usable.size),
        "n_skipped": int(y_true.shape[1] - usable.size),
    }
