"""musicrep.study.stats: the weighted metrics equal the metric of the resampled test set, the
interval covers the truth about 95% of the time, and the paired test tells identical
from clearly different models."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, r2_score, roc_auc_score

from musicrep.study import stats
from musicrep.evaluation.metrics import macro_roc_pr_auc


def _resample(w_row: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(w_row.size), w_row.astype(int))


def test_weighted_metrics_equal_the_resampled_test_set():
    rng = np.random.default_rng(0)
    n = 200
    y = rng.random((n, 4)) < 0.25
    y[:, 3] = False  # never positive: never scored
    s = np.round(rng.normal(size=(n, 4)) + y, 1)  # rounding makes ties
    w = stats.bootstrap_weights(n, 5, rng)
    roc, pr = stats.auc_replicates(s, y, w)
    pred = np.round(rng.normal(size=n), 1)
    true = pred + rng.normal(size=n)
    r2, rho = stats.r2_replicates(pred, true, w), stats.spearman_replicates(pred, true, w)
    for b in range(5):
        i = _resample(w[b])
        assert roc[b] == pytest.approx(np.mean([roc_auc_score(y[i, j], s[i, j]) for j in range(3)]))
        assert r2[b] == pytest.approx(r2_score(true[i], pred[i]))
        assert rho[b] == pytest.approx(spearmanr(pred[i], true[i]).statistic)
    # AP ranks the copies of one item one after the other (distinct items keep their ties):
    # sklearn on the resample with each copy nudged below the previous one.
    s = rng.normal(size=(n, 4)) + y  # no ties between distinct items
    _, pr = stats.auc_replicates(s, y, w)
    for b in range(5):
        i = _resample(w[b])
        copy = np.concatenate([np.arange(c) for c in w[b].astype(int)])
        ap = [average_precision_score(y[i, j], s[i, j] - 1e-9 * copy) for j in range(3)]
        assert pr[b] == pytest.approx(np.mean(ap))
    # Weights of one: the full test set, as metrics.macro_roc_pr_auc reports it.
    full = macro_roc_pr_auc(y.astype(int), s)
    roc1, pr1 = stats.auc_replicates(s, y, np.ones((1, n)))
    assert (roc1[0], pr1[0]) == pytest.approx((full["roc_auc"], full["pr_auc"]))


def test_metric_replicates_maps_items_to_columns():
    rng = np.random.default_rng(1)
    items = {"genre_scores": rng.normal(size=(30, 2)), "genre_labels": np.tile([[1, 0], [0, 1]], (15, 1)),
             "recall@100": rng.random(7), "vote_map@100": rng.random(7)}
    out = stats.metric_replicates(items, np.ones((1, 30)), np.ones((1, 7)))
    assert set(out) == {"genre_roc_auc", "genre_pr_auc", "recall@100", "vote_map@100"}
    assert out["recall@100"][0] == pytest.approx(items["recall@100"].mean())


def _study(rng, mu, n=150, seeds=3, tau=0.0, b=400):
    """Per-playlist values of `seeds` runs whose true mean is mu (+ a seed offset): a
    difficulty per playlist that every run shares, plus each run's own noise."""
    offsets = rng.normal(0, tau, seeds) if tau else np.zeros(seeds)
    shared = rng.normal(0, 1, n)
    values = [mu + o + shared + rng.normal(0, 0.3, n) for o in offsets]
    w = stats.bootstrap_weights(n, b, rng)
    point = [v.mean() for v in values]
    reps = np.stack([stats.mean_replicates(v, w) for v in values])
    return point, reps, stats.seed_draws(seeds, b, rng)


def test_interval_covers_the_true_mean_about_95_percent():
    rng = np.random.default_rng(2)
    hits = 0
    trials = 200
    for _ in range(trials):
        point, reps, draws = _study(rng, mu=0.3)
        s = stats.summarize(point, reps, draws)
        hits += s["ci_low"] <= 0.3 <= s["ci_high"]
    assert 0.88 <= hits / trials <= 0.99


def test_seed_spread_widens_the_interval():
    rng = np.random.default_rng(3)
    calm = stats.summarize(*_study(rng, 0.0, tau=0.0))
    spread = stats.summarize(*_study(rng, 0.0, tau=0.5))
    assert spread["ci_high"] - spread["ci_low"] > 2 * (calm["ci_high"] - calm["ci_low"])
    assert spread["n_seeds"] == 3 and spread["std"] > calm["std"]


def test_paired_identical_models_differ_by_nothing():
    rng = np.random.default_rng(4)
    point, reps, draws = _study(rng, 0.5)
    d = stats.paired_difference(point, reps, point, reps, draws)
    assert d["diff"] == 0 and d["ci_low"] == 0 and d["ci_high"] == 0 and d["p_value"] == 1.0


def test_paired_same_distribution_gives_large_p_and_clear_shift_small_p():
    rng = np.random.default_rng(5)
    n, b = 300, 1000
    base = rng.normal(0, 1, (3, n))
    w = stats.bootstrap_weights(n, b, rng)
    draws = stats.seed_draws(3, b, rng)

    def run(values):
        return [v.mean() for v in values], np.stack([stats.mean_replicates(v, w) for v in values])

    a = run(base + rng.normal(0, 0.3, (3, n)))
    same = run(base + rng.normal(0, 0.3, (3, n)))  # same expected value, other noise
    shifted = run(base + 0.2 + rng.normal(0, 0.3, (3, n)))
    null = stats.paired_difference(*a, *same, draws)
    assert null["p_value"] > 0.05 and null["ci_low"] < 0 < null["ci_high"]
    diff = stats.paired_difference(*shifted, *a, draws)
    assert diff["p_value"] <= 2 / (b + 1) + 1e-12
    assert diff["ci_low"] > 0.1 and diff["diff"] == pytest.approx(0.2, abs=0.05)


def test_single_seed_has_no_std_and_missing_values_no_interval():
    s = stats.summarize([0.7], np.full((1, 10), 0.7), np.zeros((10, 1), int))
    assert s["std"] is None and s["mean"] == 0.7 and s["ci_low"] == pytest.approx(0.7)
    none = stats.summarize([np.nan], np.full((1, 10), np.nan), np.zeros((10, 1), int))
    assert none["mean"] is None and none["n_seeds"] == 0


def test_bootstrap_ap_is_not_biased_upwards():
    """The replicates' mean AP stays near the full-test AP (lumping copies would not)."""
    rng = np.random.default_rng(6)
    n = 400
    y = rng.random((n, 6)) < 0.1
    s = rng.normal(size=(n, 6)) + 0.8 * y
    _, pr = stats.auc_replicates(s, y, stats.bootstrap_weights(n, 400, rng))
    _, full = stats.auc_replicates(s, y, np.ones((1, n)))
    assert abs(pr.mean() - full[0]) < 0.006
