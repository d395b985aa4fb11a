"""Ranking metrics against numbers worked out by hand, and the batched top-k ranking."""

from __future__ import annotations

import math

import numpy as np
import pytest

from musicrep.evaluation.metrics import (
    average_precision_at_k,
    hit_matrix,
    iter_top_k,
    ndcg_at_k,
    r_precision,
    ranking_metrics,
    recall_at_k,
    top_k,
)

# Example A: ranking of 6 items, relevant = {2, 5, 9}; item 9 is never ranked.
#   rank:      1  2  3  4  5  6
#   item:      5  1  2  7  8  3
#   relevant:  1  0  1  0  0  0
RANKED_A = [5, 1, 2, 7, 8, 3]
REL_A = {2, 5, 9}

# Example B: relevant = {4}, found at rank 3.
RANKED_B = [0, 1, 4, 2]
REL_B = {4}


def test_recall_by_hand() -> None:
    # k=2: items {5,1}, 1 relevant of 3 -> 1/3. k=3: {5,1,2} -> 2/3. k=6 still 2/3.
    assert recall_at_k(RANKED_A, REL_A, 2) == pytest.approx(1 / 3)
    assert recall_at_k(RANKED_A, REL_A, 3) == pytest.approx(2 / 3)
    assert recall_at_k(RANKED_A, REL_A, 6) == pytest.approx(2 / 3)
    # B: k=2 misses the only relevant item (rank 3) -> 0; k=3 -> 1.
    assert recall_at_k(RANKED_B, REL_B, 2) == 0.0
    assert recall_at_k(RANKED_B, REL_B, 3) == 1.0


def test_r_precision_by_hand() -> None:
    # A: R=3, first 3 = {5,1,2} -> 2 hits -> 2/3.
    assert r_precision(RANKED_A, REL_A) == pytest.approx(2 / 3)
    # B: R=1, first 1 = {0} -> 0.
    assert r_precision(RANKED_B, REL_B) == 0.0
    # Ranking shorter than R: [7] against {7, 8} -> 1 hit in depth 2 -> 1/2.
    assert r_precision([7], {7, 8}) == pytest.approx(0.5)


def test_ndcg_by_hand() -> None:
    # A, k=3: DCG = 1/log2(2) + 1/log2(4) = 1 + 0.5 = 1.5
    #         IDCG (min(R,k)=3 ideal hits) = 1 + 1/log2(3) + 1/log2(4) = 1 + 0.63093 + 0.5
    idcg = 1 + 1 / math.log2(3) + 0.5
    assert ndcg_at_k(RANKED_A, REL_A, 3) == pytest.approx(1.5 / idcg)
    # A, k=1: DCG = 1 (item 5 relevant), IDCG = 1 -> 1.
    assert ndcg_at_k(RANKED_A, REL_A, 1) == pytest.approx(1.0)
    # B, k=4: DCG = 1/log2(4) = 0.5, IDCG (R=1) = 1 -> 0.5.
    assert ndcg_at_k(RANKED_B, REL_B, 4) == pytest.approx(0.5)


def test_average_precision_by_hand() -> None:
    # A, k=6: hits at ranks 1 and 3: P@1 = 1/1, P@3 = 2/3; normaliser min(R=3, 6) = 3
    #   AP = (1 + 2/3) / 3 = 5/9 = 0.5556
    assert average_precision_at_k(RANKED_A, REL_A, 6) == pytest.approx(5 / 9)
    # A, k=2: only rank 1 hits: P@1 = 1; normaliser min(3, 2) = 2 -> 1/2.
    assert average_precision_at_k(RANKED_A, REL_A, 2) == pytest.approx(0.5)
    # B, k=4: hit at rank 3: P@3 = 1/3, normaliser 1 -> 1/3.
    assert average_precision_at_k(RANKED_B, REL_B, 4) == pytest.approx(1 / 3)
    # Perfect top-2 with R=5 > k: (1 + 1) / min(5, 2) = 1.
    assert average_precision_at_k([1, 2, 3], {1, 2, 7, 8, 9}, 2) == pytest.approx(1.0)


def test_empty_relevant_and_bad_k_rejected() -> None:
    with pytest.raises(ValueError, match="empty"):
        recall_at_k([1, 2], set(), 1)
    with pytest.raises(ValueError, match="k must be"):
        ndcg_at_k([1, 2], {1}, 0)


def test_vectorised_matches_per_list() -> None:
    ranked = np.array([RANKED_A, RANKED_B + [6, 6]])
    relevant = [REL_A, REL_B]
    hits = hit_matrix(ranked, relevant)
    assert hits.tolist()[0] == [True, False, True, False, False, False]
    out = ranking_metrics(hits, np.array([3, 1]), k=3)
    assert out["recall@3"] == pytest.approx([2 / 3, 1.0])
    assert out["r_precision"] == pytest.approx([2 / 3, 0.0])
    assert out["ndcg@3"] == pytest.approx(
        [ndcg_at_k(RANKED_A, REL_A, 3), ndcg_at_k(RANKED_B, REL_B, 3)]
    )
    assert out["map@3"] == pytest.approx(
        [average_precision_at_k(RANKED_A, REL_A, 3), average_precision_at_k(RANKED_B, REL_B, 3)]
    )


def test_vectorised_random_agrees() -> None:
    rng = np.random.default_rng(1)
    n_items, k = 40, 10
    ranked, relevant = [], []
    for _ in range(25):
        ranked.append(rng.permutation(n_items)[:30])
        relevant.append(set(rng.choice(n_items, size=int(rng.integers(1, 20)), replace=False)))
    ranked = np.array(ranked)
    out = ranking_metrics(hit_matrix(ranked, relevant), np.array([len(r) for r in relevant]), k)
    for p in range(len(ranked)):
        assert out[f"recall@{k}"][p] == pytest.approx(recall_at_k(ranked[p], relevant[p], k))
        assert out["r_precision"][p] == pytest.approx(r_precision(ranked[p], relevant[p]))
        assert out[f"ndcg@{k}"][p] == pytest.approx(ndcg_at_k(ranked[p], relevant[p], k))
        assert out[f"map@{k}"][p] == pytest.approx(
            average_precision_at_k(ranked[p], relevant[p], k)
        )


def test_ranking_metrics_rejects_too_shallow() -> None:
    # R = 5 relevant but only depth 3 shown and not all found: R-precision undefined.
    with pytest.raises(ValueError, match="depth"):
        ranking_metrics(np.array([[True, False, False]]), np.array([5]), k=3)


def test_top_k_order_and_ties() -> None:
    scores = np.array(
        [
            [0.1, 0.9, 0.5, 0.9, 0.2],  # tie 0.9 at cols 1 and 3 -> lower index first
            [1.0, 1.0, 1.0, 1.0, 0.0],  # all tied at the k-th position -> cols 0, 1
        ]
    )
    assert top_k(scores, 2).tolist() == [[1, 3], [0, 1]]
    assert top_k(scores, 3).tolist() == [[1, 3, 2], [0, 1, 2]]
    # k larger than the number of items: everything, sorted.
    assert top_k(scores[:1], 10).tolist() == [[1, 3, 2, 4, 0]]
    # NaN ranks last.
    assert top_k(np.array([[np.nan, 0.0, 1.0]]), 3).tolist() == [[2, 1, 0]]


def test_iter_top_k_batches_match_full_sort() -> None:
    rng = np.random.default_rng(0)
    q = rng.normal(size=(7, 4)).astype(np.float32)
    items = rng.normal(size=(20, 4)).astype(np.float32)
    full = np.argsort(-(q @ items.T), axis=1, kind="stable")
    depths = np.array([3, 3, 5, 3, 3, 3, 8])
    seen = 0
    for rows, idx in iter_top_k(q, items, depths, batch_size=3):
        width = int(depths[rows].max())
        assert idx.shape == (rows.stop - rows.start, width)
        assert (idx == full[rows, :width]).all()
        seen += idx.shape[0]
    assert seen == 7
