"""The probes: what a frozen embedding linearly encodes.

Genre classification and automatic tagging use ``linear_probe``: one logistic
regression per label (standardised features, scikit-learn LogisticRegression,
one-vs-rest, seeded), trained on train+val tracks and scored on test tracks, then
ROC-AUC and PR-AUC macro over the labels (``musicrep.evaluation.metrics``). Mood
(generated corpora only) uses ``mood_probe``: a ridge regression of the generator's
hidden per-song mood, scored by R^2 and Spearman correlation on the test tracks.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["PROBE", "linear_probe", "mood_probe"]

#: what ``linear_probe`` fits, as results.json's settings record it
PROBE = "StandardScaler + LogisticRegression(C=1, lbfgs) per label"


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
