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


def test_seed_ttest_is_the_paired_t_test_over_seeds():
    from scipy.stats import ttest_rel

    a, b = np.array([0.61, 0.64, 0.60]), np.array([0.58, 0.63, 0.555])
    t = stats.seed_ttest(a - b)
    ref = ttest_rel(a, b)
    assert t["p"] == pytest.approx(ref.pvalue) and t["t"] == pytest.approx(ref.statistic)
    assert t["ci_low"] < t["mean"] < t["ci_high"] and t["n"] == 3
    assert stats.seed_ttest([0.02])["p"] is None  # one seed: no test
    same = stats.seed_ttest([0.1, 0.1, 0.1])
    assert same["p"] == 0.0 and same["ci_low"] == same["ci_high"] == pytest.approx(0.1)
    assert stats.seed_ttest([0.0, 0.0, 0.0])["p"] == 1.0


def test_tost_is_the_90_percent_interval_inside_the_margin():
    """Equivalence at 5% exactly when the 90% t-interval lies inside +-margin."""
    from scipy import stats as st

    rng = np.random.default_rng(7)
    for _ in range(50):
        d = rng.normal(rng.uniform(-0.01, 0.01), rng.uniform(0.0005, 0.006), 3)
        se = d.std(ddof=1) / np.sqrt(3)
        q = st.t.ppf(0.95, 2)
        inside = -0.01 < d.mean() - q * se and d.mean() + q * se < 0.01
        assert (stats.tost(d, 0.01) < 0.05) == inside
    assert stats.tost([0.001, 0.002], 0.01) < stats.tost([0.001, 0.009], 0.01)
    assert stats.tost([0.5], 0.01) is None


def test_holm_adjusts_step_down_and_skips_untested_claims():
    adj = stats.holm([0.01, None, 0.04, 0.03, 0.2])
    assert adj == [pytest.approx(0.04), None, pytest.approx(0.09), pytest.approx(0.09), pytest.approx(0.2)]
    assert stats.holm([0.5, 0.9]) == [pytest.approx(1.0), pytest.approx(1.0)]  # capped, monotone
    assert stats.holm([]) == []


def _sd_of_mean(values, w):
    return float(stats.mean_replicates(values, w).std())


def test_clustered_weights_follow_the_shared_tracks():
    """Playlists that share their held-out tracks move together: when a playlist's score
    is set by its (shared) track, resampling playlists alone understates the spread of the
    mean, and the two-way weights recover the spread of a resample of the tracks."""
    rng = np.random.default_rng(8)
    n_tracks, per_track, b = 40, 10, 2000
    held = [np.array([t]) for t in range(n_tracks) for _ in range(per_track)]  # 10 playlists per track
    track_value = rng.normal(0, 1, n_tracks)
    values = np.array([track_value[h[0]] for h in held]) + rng.normal(0, 0.05, len(held))
    w_t = stats.bootstrap_weights(n_tracks, b, rng)
    w_p = stats.bootstrap_weights(len(held), b, rng)
    ones = np.ones((3, n_tracks))
    assert np.array_equal(stats.clustered_playlist_weights(held, ones, w_p[:3]), w_p[:3])
    naive = _sd_of_mean(values, w_p)
    clustered = _sd_of_mean(values, stats.clustered_playlist_weights(held, w_t, w_p))
    truth = track_value.std() / np.sqrt(n_tracks)  # the tracks are the independent units
    assert naive < 0.5 * truth and 0.8 * truth < clustered < 1.4 * truth
    with pytest.raises(ValueError, match="playlists"):
        stats.clustered_playlist_weights(held[:5], w_t, w_p)
