"""Intervals and paired comparisons for the study: pure functions on per-item results.

What is resampled. A model's score on a metric depends on two random things: the test
items it is scored on (tracks for genre, tagging and mood; playlists for continuation)
and the training seed. The interval of a model's mean over seeds accounts for both with
a two-level (hierarchical) bootstrap. Replicate b

  1. draws test items with replacement: one multinomial weight vector over the test
     tracks and one over the scored playlists (``bootstrap_weights``), shared by every
     model, seed and layer, so that replicate b scores all of them on the same items;
  2. draws S seeds with replacement from the model's S seeds (``seed_draws``);
  3. recomputes the metric of each drawn seed's run on the weighted items (a weight of
     c counts an item c times: exactly the metric of the resampled test set) and
     averages them.

The 95% interval is the 2.5 and 97.5 percentiles of the B replicates. ``mean`` and
``std`` are the mean and the standard deviation (ddof 1) of the seeds' full-test
values. With 3 seeds the seed level has few distinct draws, so the interval reflects
the seed spread only roughly; a model whose seeds disagree gets a wider interval.

Paired comparison of models A and B (``paired_difference``): per replicate, the same
item weights and the same seed draw over their common seeds give the difference of
seed means, D_b = mean_j [A_{s_j}(w_b) - B_{s_j}(w_b)]. Pairing removes the shared
item difficulty, so the interval of D is narrower than one from two separate intervals.
The interval is the percentile interval of D_b; the two-sided p-value is that of the
percentile bootstrap test of "no difference",
p = min(1, 2 * min(1 + #{D_b <= 0}, 1 + #{D_b >= 0}) / (B + 1)),
so identical models get p = 1 and the smallest p possible is 2 / (B + 1). A contrast
of more runs (``contrast``: a difference of differences between two corpora that share
their test tracks, or between two slices of the test tracks, ``column_replicates``) is
resampled the same way: the same item weights and seed draw for every run in it.

Shared held-out tracks (``clustered_playlist_weights``). The continuation playlists
are not independent: many of them hold the same held-out test tracks, so resampling
playlists alone understates the variance of a continuation metric. With the plan's
``playlist_resampling`` "clustered", replicate b weights playlist p by its own draw
times the mean draw of its held-out tracks in the track weights of step 1 (a two-way,
"pigeonhole" bootstrap over playlists and tracks, Owen 2007). It is conservative: when
every playlist holds tracks of its own it counts that randomness twice (about twice
the variance), and it cannot see how a track moves a playlist's score, since only
per-playlist values are kept.

Seed-level tests (``seed_ttest``, ``tost``, ``holm``). With S seeds the seed level of
the bootstrap has few distinct draws (10 for S = 3) and its variance is (S - 1) / S of
the seeds' sample variance, so the bootstrap alone overstates how sure a difference
is. Beside it: a paired t-test over seeds (the per-seed differences of the full-test
values, S - 1 degrees of freedom), two one-sided t-tests (TOST) against an
equivalence margin, and Holm's correction over a family of claims. They treat the
test items as fixed; the bootstrap resamples them: the study claims an effect only
where both agree.

Metrics are recomputed from the arrays ``evaluation.evaluate_embeddings(items=...)``
writes: macro ROC-AUC and average precision over the labels that have a positive and a
negative among the test tracks (a replicate that loses all positives of a rare label
keeps that label's full-test value), ridge-probe R^2 and Spearman of the mood,
and the mean of per-playlist continuation metrics. With weights all 1 every function
returns what ``musicrep.evaluation.metrics`` / ``evaluation`` report for the full test set.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..evaluation.slices import slice_masks
from ..evaluation.tasks import LABEL_PROBES, TASK_COLUMNS

__all__ = [
    "CONFIDENCE",
    "auc_replicates",
    "bootstrap_weights",
    "clustered_playlist_weights",
    "column_replicates",
    "contrast",
    "holm",
    "mean_replicates",
    "metric_replicates",
    "paired_difference",
    "r2_replicates",
    "seed_draws",
    "seed_ttest",
    "spearman_replicates",
    "summarize",
    "tost",
]

CONFIDENCE = 0.95
#: tasks scored per test track (the rest, continuation, per playlist)
TRACK_TASKS = (*LABEL_PROBES, "mood")
_ITEM_KEYS = LABEL_PROBES  # task -> prefix of its items arrays (the registry's)


def bootstrap_weights(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) float64 counts: how often each of n items is drawn in each replicate."""
    if n == 0:
        return np.zeros((n_boot, 0))
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)


def clustered_playlist_weights(held: Sequence[np.ndarray], w_tracks: np.ndarray,
                               w_playlists: np.ndarray) -> np.ndarray:
    """(B, n_playlists) weights of the two-way bootstrap over playlists and tracks.

    Args:
        held: per scored playlist, the column indices of its held-out test tracks
            (``evaluation.continuation.continuation_queries``).
        w_tracks: (B, n_test) track weights (``bootstrap_weights``), the same that
            resample the track tasks.
        w_playlists: (B, n_playlists) playlist weights.
    Returns w_playlists times, per playlist, the mean of its held-out tracks' weights:
    playlists that share tracks move together. With track weights of one it is
    ``w_playlists``; a playlist without held-out tracks keeps its own weight.
    """
    from scipy.sparse import csr_matrix

    w_tracks, w_playlists = np.atleast_2d(w_tracks), np.atleast_2d(w_playlists)
    sizes = np.array([len(h) for h in held])
    if len(held) != w_playlists.shape[1]:
        raise ValueError(f"{len(held)} playlists' held-out tracks for {w_playlists.shape[1]} playlist weights")
    rows = np.repeat(np.arange(len(held)), sizes)
    cols = np.concatenate([np.asarray(h, np.int64) for h in held]) if len(held) else np.zeros(0, np.int64)
    vals = np.repeat(1.0 / np.maximum(sizes, 1), sizes)
    mean_of = csr_matrix((vals, (rows, cols)), shape=(len(held), w_tracks.shape[1]))
    share = np.asarray((mean_of @ w_tracks.T).T)  # (B, n_playlists)
    share[:, sizes == 0] = 1.0
    return w_playlists * share


def seed_ttest(diffs: Sequence[float]) -> dict[str, float | int | None]:
    """Paired t-test over seeds of the per-seed differences ``diffs`` (A_s - B_s).

    Returns {"n", "mean", "sd", "t", "p" (two-sided), "ci_low", "ci_high" (the 95%
    t-interval)}; p and the interval are None with fewer than two seeds. Differences
    that are all equal have sd 0: p is 1 when they are 0, else 0 (the interval is the
    value itself).
    """
    from scipy import stats as st

    d = np.asarray(diffs, np.float64)
    n = int(d.size)
    out: dict[str, float | int | None] = {"n": n, "mean": float(d.mean()) if n else None, "sd": None,
                                          "t": None, "p": None, "ci_low": None, "ci_high": None}
    if n < 2 or not np.isfinite(d).all():
        return out
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    out["sd"] = sd
    if np.ptp(d) == 0:  # all equal (sd may come out as a rounding residue)
        out.update(p=1.0 if mean == 0 else 0.0, ci_low=mean, ci_high=mean)
        return out
    se = sd / np.sqrt(n)
    t = mean / se
    q = float(st.t.ppf(0.5 + CONFIDENCE / 2, n - 1))
    out.update(t=float(t), p=float(2 * st.t.sf(abs(t), n - 1)), ci_low=float(mean - q * se),
               ci_high=float(mean + q * se))
    return out


def tost(diffs: Sequence[float], margin: float) -> float | None:
    """p-value of two one-sided t-tests that the mean seed difference lies inside
    (-margin, +margin): the larger of the two one-sided p-values (equivalence at level
    a when p < a, i.e. when the (1 - 2a) t-interval lies inside the margin). None with
    fewer than two seeds."""
    from scipy import stats as st

    d = np.asarray(diffs, np.float64)
    if d.size < 2 or not np.isfinite(d).all():
        return None
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if np.ptp(d) == 0:
        return 0.0 if abs(mean) < margin else 1.0
    se, df = sd / np.sqrt(d.size), d.size - 1
    p_above_lower = float(st.t.sf((mean + margin) / se, df))  # H0: mean <= -margin
    p_below_upper = float(st.t.cdf((mean - margin) / se, df))  # H0: mean >= +margin
    return max(p_above_lower, p_below_upper)


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (familywise error): the k-th smallest of m
    p-values times (m - k + 1), made monotone and capped at 1. None entries (a claim
    that could not be tested) are left out of m and stay None."""
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    order = sorted(idx, key=lambda i: pvalues[i])
    m = len(order)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * float(pvalues[i])))
        out[i] = running
    return out


def seed_draws(n_seeds: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_seeds) indices of the seeds drawn with replacement in each replicate."""
    return rng.integers(0, n_seeds, size=(n_boot, n_seeds))


def _binary_auc_ap(score: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC-AUC and average precision of one label under weights w (B, n); NaN where the
    weighted sample lacks a positive or a negative.

    Distinct items with tied scores share one threshold (as sklearn). The c copies of
    one item that a replicate draws are ranked one after the other instead: lumping
    them would give every copy of a positive the precision after all c, which biases
    bootstrap AP upwards. With weights of one both agree with sklearn.
    """
    from scipy.special import digamma

    order = np.argsort(-score, kind="stable")  # descending score
    s, pos = score[order], y[order].astype(np.float64)
    ws = w[:, order]
    last = np.r_[s[1:] != s[:-1], True]  # last position of each group of tied scores
    single = np.diff(np.r_[-1, np.nonzero(last)[0]]) == 1  # groups of one distinct item
    tp = np.cumsum(ws * pos, axis=1)[:, last]  # (B, G) weight of positives above each threshold
    fp = np.cumsum(ws * (1.0 - pos), axis=1)[:, last]
    n_pos, n_neg = tp[:, -1], fp[:, -1]
    dtp = np.diff(tp, axis=1, prepend=0.0)
    dfp = np.diff(fp, axis=1, prepend=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        # ROC: a negative counts the positives above it, and half of those tied with it.
        roc = (dfp * (tp - dtp / 2)).sum(axis=1) / (n_pos * n_neg)
        # groups of several distinct items: every positive at the precision after the group
        multi = ~single
        tpm, fpm = tp[:, multi], fp[:, multi]
        lumped = (dtp[:, multi] * np.where(tpm + fpm > 0, tpm / np.maximum(tpm + fpm, 1e-300), 0.0)).sum(axis=1)
        # one positive item drawn c times after a positives among b items: sum_i (a+i)/(b+i)
        one = single & (pos[last] > 0)
        c = dtp[:, one]
        a = tp[:, one] - c
        b = a + fp[:, one]
        spread = (c - (b - a) * (digamma(b + c + 1) - digamma(b + 1))).sum(axis=1)
        ap = (lumped + spread) / n_pos
    bad = (n_pos <= 0) | (n_neg <= 0)
    roc[bad], ap[bad] = np.nan, np.nan
    return roc, ap


def auc_replicates(scores: np.ndarray, labels: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Macro ROC-AUC and macro average precision per replicate.

    Args:
        scores: (n, C) probe scores of the test tracks.
        labels: (n, C) binary truth.
        w: (B, n) item weights (``bootstrap_weights``; a row of ones is the full test set).
    Returns (roc (B,), pr (B,)): the mean over the labels that have a positive and a
    negative in the full test set (as ``metrics.macro_roc_pr_auc``; NaN when none has).
    A replicate in which such a label lacks a positive or a negative keeps that label's
    full-test value: the macro average stays over one label set (dropping rare labels,
    which score low, would bias the replicates upwards).
    """
    scores, labels, w = np.asarray(scores, np.float64), np.asarray(labels) > 0, np.atleast_2d(w)
    cols = [j for j in range(scores.shape[1]) if labels[:, j].any() and not labels[:, j].all()]
    if not cols:
        return np.full(w.shape[0], np.nan), np.full(w.shape[0], np.nan)
    ones = np.ones((1, scores.shape[0]))
    roc = np.empty((w.shape[0], len(cols)))
    pr = np.empty_like(roc)
    for i, j in enumerate(cols):
        roc[:, i], pr[:, i] = _binary_auc_ap(scores[:, j], labels[:, j], w)
        full_roc, full_pr = _binary_auc_ap(scores[:, j], labels[:, j], ones)
        lost = ~np.isfinite(roc[:, i])
        roc[lost, i], pr[lost, i] = full_roc[0], full_pr[0]
    return roc.mean(axis=1), pr.mean(axis=1)


def mean_replicates(values: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(B,) weighted means of per-item values (n,) under weights (B, n)."""
    w = np.atleast_2d(w)
    return w @ np.asarray(values, np.float64) / w.sum(axis=1)


def r2_replicates(pred: np.ndarray, true: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(B,) coefficient of determination of ``pred`` for ``true`` on each weighted sample."""
    w = np.atleast_2d(w)
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    total = w.sum(axis=1, keepdims=True)
    mean = (w * true).sum(axis=1, keepdims=True) / total
    ss_tot = (w * (true - mean) ** 2).sum(axis=1)
    ss_res = (w * (true - pred) ** 2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.nan)


def _weighted_ranks(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(B, n) mid-ranks each item would have in the resample that w describes
    (an item drawn c times occupies c tied places)."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    starts = np.r_[0, np.nonzero(xs[1:] != xs[:-1])[0] + 1]
    group = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, xs.size]))
    gsum = np.add.reduceat(w[:, order], starts, axis=1)  # (B, G) weight of each tie group
    before = np.cumsum(gsum, axis=1) - gsum
    ranks = np.empty_like(w)
    ranks[:, order] = before[:, group] + (gsum[:, group] + 1.0) / 2.0
    return ranks


def spearman_replicates(pred: np.ndarray, true: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(B,) Spearman correlation on each weighted sample (Pearson of the mid-ranks)."""
    w = np.atleast_2d(w)
    rx = _weighted_ranks(np.asarray(pred, np.float64), w)
    ry = _weighted_ranks(np.asarray(true, np.float64), w)
    total = w.sum(axis=1, keepdims=True)
    dx = rx - (w * rx).sum(axis=1, keepdims=True) / total
    dy = ry - (w * ry).sum(axis=1, keepdims=True) / total
    cov = (w * dx * dy).sum(axis=1)
    var = (w * dx * dx).sum(axis=1) * (w * dy * dy).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(var > 0, cov / np.sqrt(var), np.nan)


def metric_replicates(
    items: dict[str, np.ndarray], w_tracks: np.ndarray, w_playlists: np.ndarray,
) -> dict[str, np.ndarray]:
    """Every metric column that ``items`` supports, per replicate.

    Args:
        items: one run's per-item arrays (``evaluate_embeddings(items=...)``).
        w_tracks: (B, n_test) weights over test tracks.
        w_playlists: (B, n_playlists) weights over the scored playlists.
    Returns {column of ``report.TASK_COLUMNS``: (B,)}; columns whose arrays are absent
    (a skipped task, the popularity row's probes) are left out.
    """
    out: dict[str, np.ndarray] = {}
    for task, prefix in _ITEM_KEYS.items():
        if f"{prefix}_scores" in items:
            roc, pr = auc_replicates(items[f"{prefix}_scores"], items[f"{prefix}_labels"], w_tracks)
            out[TASK_COLUMNS[task][0]], out[TASK_COLUMNS[task][1]] = roc, pr
    if "mood_pred" in items:
        r2_col, rho_col = TASK_COLUMNS["mood"]
        out[r2_col] = r2_replicates(items["mood_pred"], items["mood_true"], w_tracks)
        out[rho_col] = spearman_replicates(items["mood_pred"], items["mood_true"], w_tracks)
    for task in ("continuation", "continuation_vote"):
        for col in TASK_COLUMNS[task]:
            if col in items:
                out[col] = mean_replicates(items[col], w_playlists)
    return out


def _percentiles(x: np.ndarray) -> tuple[float | None, float | None]:
    x = x[np.isfinite(x)]
    if x.size == 0:
        return None, None
    tail = 100 * (1 - CONFIDENCE) / 2
    lo, hi = np.percentile(x, [tail, 100 - tail])
    return float(lo), float(hi)


def _seed_mean(reps: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """(B,) mean over each replicate's drawn seeds; reps (S, B), draws (B, S)."""
    b = np.arange(reps.shape[1])[:, None]
    return reps[draws, b].mean(axis=1)


def summarize(point: Sequence[float], reps: np.ndarray, draws: np.ndarray) -> dict[str, float | int | None]:
    """Mean, std and 95% interval of a model's metric over its seeds.

    Args:
        point: (S,) the metric of each seed's run on the full test set.
        reps: (S, B) the same on each bootstrap replicate of the test items.
        draws: (B, S) seed draws (``seed_draws(S, B, rng)``).
    Returns {"n_seeds", "mean", "std" (None for one seed), "ci_low", "ci_high"}.
    """
    point = np.asarray(point, np.float64)
    ok = np.isfinite(point)
    if not ok.any():
        return {"n_seeds": 0, "mean": None, "std": None, "ci_low": None, "ci_high": None}
    lo, hi = _percentiles(_seed_mean(np.asarray(reps, np.float64), draws))
    return {
        "n_seeds": int(point.size),
        "mean": float(point.mean()),
        "std": float(point.std(ddof=1)) if point.size > 1 else None,
        "ci_low": lo,
        "ci_high": hi,
    }


def paired_difference(
    point_a: Sequence[float], reps_a: np.ndarray, point_b: Sequence[float], reps_b: np.ndarray,
    draws: np.ndarray,
) -> dict[str, float | None]:
    """Difference A - B of seed means, paired over the same items and seeds.

    Args:
        point_a, point_b: (S,) full-test values of the common seeds, in the same order.
        reps_a, reps_b: (S, B) their replicates on the same item weights.
        draws: (B, S) seed draws.
    Returns {"diff", "ci_low", "ci_high", "p_value"} (None when a side has no value).
    """
    d_point = np.asarray(point_a, np.float64) - np.asarray(point_b, np.float64)
    if d_point.size == 0 or not np.isfinite(d_point).all():
        return {"diff": None, "ci_low": None, "ci_high": None, "p_value": None}
    return contrast(d_point, np.asarray(reps_a, np.float64) - np.asarray(reps_b, np.float64), draws)


def contrast(point: Sequence[float], reps: np.ndarray, draws: np.ndarray) -> dict[str, float | None]:
    """Any per-seed contrast of runs scored on the same items (a difference, a difference
    of differences), as ``paired_difference`` treats A - B.

    Args:
        point: (S,) the contrast of each seed's full-test values.
        reps: (S, B) the same contrast of their replicates (same item weights, so every
            run in it is scored on the same resampled items).
        draws: (B, S) seed draws.
    Returns {"diff" (mean over seeds), "ci_low", "ci_high", "p_value"} (None without a
    finite value per seed).
    """
    d_point = np.asarray(point, np.float64)
    if d_point.size == 0 or not np.isfinite(d_point).all():
        return {"diff": None, "ci_low": None, "ci_high": None, "p_value": None}
    d = _seed_mean(np.asarray(reps, np.float64), draws)
    d = d[np.isfinite(d)]
    lo, hi = _percentiles(d)
    n = d.size
    p = min(1.0, 2.0 * min(1 + int((d <= 0).sum()), 1 + int((d >= 0).sum())) / (n + 1))
    return {"diff": float(d_point.mean()), "ci_low": lo, "ci_high": hi, "p_value": p}


def _task_of(column: str) -> str:
    for task, cols in TASK_COLUMNS.items():
        if column in cols:
            return task
    raise ValueError(f"{column!r} is no metric column (evaluation.tasks.TASK_COLUMNS)")


def column_replicates(items: dict[str, np.ndarray], column: str, w_tracks: np.ndarray,
                      w_playlists: np.ndarray | None = None, part: str | None = None) -> np.ndarray:
    """(B,) replicates of one metric column of one run, on every test track or on the
    slice ``part`` (``evaluation.slices``: a tercile, niche or mainstream).

    The slice is taken inside each replicate: a label probe's AUC over the slice's rows
    (a tercile) or columns (niche genres), with the same track weights restricted to it,
    so the replicate is the metric of the resampled slice; with weights all 1 it is the
    ``<column>@<part>`` value of the evaluation. Continuation has no sliced replicates
    (its per-playlist values do not split by track).
    """
    task, w = _task_of(column), np.atleast_2d(w_tracks)
    if task in _ITEM_KEYS:
        prefix = _ITEM_KEYS[task]
        scores, labels = items[f"{prefix}_scores"], items[f"{prefix}_labels"]
        if part is not None:
            rows, cols = slice_masks(items, part, prefix)
            if rows is not None:
                scores, labels, w = scores[rows], labels[rows], w[:, rows]
            if cols is not None:
                scores, labels = scores[:, cols], labels[:, cols]
        roc, pr = auc_replicates(scores, labels, w)
        return roc if column == TASK_COLUMNS[task][0] else pr
    if task == "mood":
        pred, true = items["mood_pred"], items["mood_true"]
        if part is not None:
            rows, _ = slice_masks(items, part)
            pred, true, w = pred[rows], true[rows], w[:, rows]
        fn = r2_replicates if column == TASK_COLUMNS["mood"][0] else spearman_replicates
        return fn(pred, true, w)
    if part is not None:
        raise ValueError(f"{column}: continuation has no replicates by slice")
    if w_playlists is None:
        raise ValueError(f"{column}: continuation needs the playlist weights")
    return mean_replicates(items[column], w_playlists)
