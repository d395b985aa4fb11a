"""Train/validation/test splits, multilabel-stratified on the genre matrix.

As in the paper: 10% of the tracks go to test first, then 10% of the rest to validation
(about 81/9/10), each step a multilabel stratified shuffle split (iterative
stratification), so every genre keeps its share in every split.
"""

from __future__ import annotations

import numpy as np
from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit


def stratified_split(
    y: np.ndarray, test_size: float = 0.1, val_size: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split rows of the (N, G) multi-hot matrix `y`; returns sorted row indices.

    Args:
        y: multi-hot genre matrix, one row per track.
        test_size: fraction of all tracks for test.
        val_size: fraction of the remaining (non-test) tracks for validation.
        seed: the same seed gives the same split.
    """
    if not (0 < test_size < 1 and 0 < val_size < 1):
        raise ValueError(f"test_size and val_size must be in (0, 1), got {test_size}, {val_size}")
    n = y.shape[0]
    if n < 10:
        raise ValueError(f"need at least 10 tracks to split, got {n}")
    split = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
    rest, test = next(split.split(np.zeros(n), y))
    split = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=val_size, random_state=seed)
    train, val = next(split.split(np.zeros(len(rest)), y[rest]))
    return np.sort(rest[train]), np.sort(rest[val]), np.sort(test)
