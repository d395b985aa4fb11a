"""Per-item outputs: the arrays behind each row, what a bootstrap over test items needs.

Per model (``evaluate_embeddings(items=...)``, ``run_evaluation(per_item=True)``,
``evaluate.py --per-item``): ``genre_scores``/``genre_labels`` and
``tag_scores``/``tag_labels`` (n_test, C) probe scores and truth, ``mood_pred``/
``mood_true`` (n_test,), and for every continuation column (both protocols) its value
per scored playlist (n_playlists,), keyed by the column name. ``write_items`` stores
them as ``items.npz`` (keys ``<model>/<key>``); ``read_items`` reads them back.

For the breakdowns (``evaluation.slices``): ``held_playlist``/``held_track``/
``held_rank`` (n_pairs,), each held-out test track of each scored playlist with its
0-based rank in the mean-query ranking (the popularity row: in its ranking), and the
test tracks' slices, ``tercile`` (n_test,) "top"/"middle"/"bottom" and ``niche``
(n_test,) bool. With a truth file also ``true_genre_*`` and ``true_detail_*``
scores and labels, and ``genre_niche``/``true_genre_niche`` (C,) bool: the niche
genres' label columns.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["read_items", "write_items"]


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
