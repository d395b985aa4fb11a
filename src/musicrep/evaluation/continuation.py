"""Cold-start playlist continuation: the two ranking protocols and the popularity row.

For each playlist of ``continuation.json`` (tracks in train/val, "known", and in test,
"held_out"), all test tracks are ranked by the cosine similarity of their embedding to
the playlist's query: the mean of its known tracks' L2-normalised embeddings. The
held-out tracks are the relevant items: Recall@100, R-precision, NDCG@100, MAP@100
(``musicrep.evaluation.metrics``) averaged over playlists. Rankings are computed for a
batch of playlists at a time (a (batch, n_test) float32 block), never for all
playlists at once.

A second protocol, "vote" (PAPER.md section 8, as later work on Melon runs it): each
known track retrieves its top-100 most similar test tracks; candidates are ranked by
how many of the playlist's known tracks retrieved them, ties by the mean similarity to
the known tracks that retrieved them, then by lower test row; the same four metrics
(``vote_`` columns). When fewer than k+1 test tracks are candidates, every ranking
finds every held-out track within k: both protocols are then left empty (with a note)
instead of reporting a meaningless 1.0.

Reference row "popularity": one ranking of the test tracks for every playlist, by their
count in ``popularity.json`` (the number of playlists containing the track, over all
playlists the dataset builder read), ties by lower track id. Test tracks are cold start
for the CF model, but not for this count: it includes the playlists being evaluated,
so the popularity row is an optimistic (oracle-flavoured) reference, not a deployable
cold-start system.

Per-item output (``items``): each metric per playlist, and for the mean-query protocol
and the popularity row the rank of every held-out track in its playlist's ranking
(``HELD_KEYS``: one entry per (playlist, held-out track) pair, in playlist order), so a
held-out track's slice (``evaluation.slices``) can be scored on its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .metrics import hit_matrix, rank_of, ranking_metrics, top_k

__all__ = [
    "HELD_KEYS",
    "K",
    "PLAYLIST_BATCH",
    "VOTE_BLOCK",
    "VOTE_PER_TRACK",
    "continuation_degenerate",
    "continuation_metrics",
    "continuation_queries",
    "continuation_vote_metrics",
    "l2_normalise",
    "popularity_metrics",
    "vote_rankings",
]

K = 100  # the cutoff of every continuation metric (Recall@K, NDCG@K, MAP@K)
PLAYLIST_BATCH = 256  # playlists ranked per (batch, n_test) score block
VOTE_PER_TRACK = 100  # test tracks each known track retrieves in the vote protocol
VOTE_BLOCK = 1024  # known tracks per (block, n_test) similarity block
#: The per-item arrays of the (playlist, held-out track) pairs: the scored playlist's
#: index, the held-out track's test row, and its 0-based rank in the playlist's ranking
#: of every test track (a hit of Recall@k when below k).
HELD_KEYS = ("held_playlist", "held_track", "held_rank")


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


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32); all-zero rows stay zero."""
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


def _store_ranks(items: dict[str, np.ndarray] | None, held: list[np.ndarray],
                 ranks: list[np.ndarray]) -> None:
    """The (playlist, held-out track, rank) pairs into ``items`` (``HELD_KEYS``)."""
    if items is None:
        return
    sizes = [len(h) for h in held]
    playlist = np.repeat(np.arange(len(held), dtype=np.int64), sizes)
    track = np.concatenate(held).astype(np.int64) if held else np.zeros(0, np.int64)
    rank = np.concatenate(ranks).astype(np.int64) if ranks else np.zeros(0, np.int64)
    items.update(zip(HELD_KEYS, (playlist, track, rank)))


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
    ``items``, when given, receives each metric per playlist (n_playlists,) and the rank
    of every held-out track (``HELD_KEYS``).
    """
    test_n = l2_normalise(test_emb)
    ranks: list[np.ndarray] = []

    def ranks_for(lo: int, hi: int, depth: int) -> np.ndarray:
        queries = l2_normalise(np.stack([l2_normalise(known_emb[rows]).mean(axis=0)
                                         for rows in known[lo:hi]]))
        scores = queries @ test_n.T  # one (batch, n_test) block at a time
        if items is not None:
            ranks.extend(rank_of(row, h) for row, h in zip(scores, held[lo:hi]))
        return top_k(scores, depth)

    parts: dict[str, list[np.ndarray]] = {}
    out = _ranking_batches(held, test_n.shape[0], k, batch_size, ranks_for, parts)
    _store_per_playlist(items, parts)
    _store_ranks(items, held, ranks)
    return out


def vote_rankings(
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
    test_n = l2_normalise(test_emb)
    used = np.unique(np.concatenate(known))
    m = min(per_track, test_n.shape[0])
    top_idx = np.empty((used.size, m), dtype=np.int32)  # int32: 585k x 100 stays 234 MB
    top_sim = np.empty((used.size, m), dtype=np.float32)
    for start in range(0, used.size, block):
        q = l2_normalise(known_emb[used[start : start + block]])
        sims = q @ test_n.T  # (block, n_test)
        idx = top_k(sims, m)
        top_idx[start : start + len(q)] = idx
        top_sim[start : start + len(q)] = np.take_along_axis(sims, idx, axis=1)
    local = [np.searchsorted(used, r) for r in known]  # playlist -> rows of top_idx

    def ranks_for(lo: int, hi: int, depth: int) -> np.ndarray:
        return vote_rankings(top_idx, top_sim, local[lo:hi], depth)

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
    ``items``, when given, receives them per playlist and the rank of every held-out
    track (``HELD_KEYS``)."""
    test_ids = np.asarray(test_ids, dtype=np.int64)
    counts = np.array([float(popularity.get(str(int(t)), 0)) for t in test_ids])
    order = np.lexsort((test_ids, -counts))

    def ranks_for(lo: int, hi: int, depth: int) -> np.ndarray:
        return np.broadcast_to(order[:depth], (hi - lo, depth))

    parts: dict[str, list[np.ndarray]] = {}
    out = _ranking_batches(held, len(test_ids), k, batch_size, ranks_for, parts)
    _store_per_playlist(items, parts)
    position = np.empty(len(test_ids), dtype=np.int64)
    position[order] = np.arange(len(test_ids))
    _store_ranks(items, held, [position[h] for h in held])
    return out


def continuation_degenerate(n_candidates: int, k: int = K,
                            task: str = "continuation") -> str | None:
    """Why continuation cannot be scored with ``n_candidates`` test tracks, or None.

    With k or fewer candidates every ranking holds every held-out track within its
    top k, so Recall@k is 1.0 even for a random ranking: not a result. ``task`` heads
    the sentence (each protocol is a task of its own in the report).
    """
    if n_candidates <= k:
        return (f"{task} not scored: the test split has {n_candidates} candidate "
                f"tracks, not more than k={k}, so any ranking (random included) would get "
                f"recall@{k} = 1.0; build a dataset with more than {k} test tracks")
    return None


