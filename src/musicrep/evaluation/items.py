"""Per-item outputs: the arrays behind each row, what a bootstrap over test items needs.

Per model (``evaluate_embeddings(items=...)``, ``run_evaluation(per_item=True)``,
``evaluate.py --per-item``): ``genre_scores``/``genre_labels`` and
``tag_scores``/``tag_labels`` (n_test, C) probe scores and truth, ``mood_pred``/
``mood_true`` (n_test,), and for every continuation column (both protocols) its value
per scored playlist (n_playlists,), keyed by the column name. ``write_items`` stores
them as ``items.npz`` (keys ``<model>/<key>``); ``read_items`` reads them back.
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
