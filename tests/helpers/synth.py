"""A dataset directory in create_dataset's layout, written directly with h5py.

Unit tests of the training and evaluation code use it where the planted structure of
the generated corpus is not needed: it is fast, and it only depends on the documented
file layout (the same layout the original create_dataset.py writes), so it also stands
for "HDF5 made by the original script".
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np


def write_synthetic_dataset(
    out: Path,
    n_train: int = 48,
    n_val: int = 16,
    n_test: int = 16,
    frames: int = 300,
    n_genres: int = 12,
    cf_dim: int = 301,
    seed: int = 0,
    w2v_dim: int = 128,
    zero_cf: int = 0,
) -> Path:
    """Write train/val/test.h5, genres.json and embedding_matrix_128.npy under `out`.
    zero_cf: that many train and val tracks (every third from the first) get an all-zero
    CF row, as for tracks in no training playlist; no cf_known flag, as in the original's
    files."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    next_id = 0
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        ids = np.arange(next_id, next_id + n, dtype=np.int32)[:, None]
        next_id += n
        label = np.full((n, 100), -1, dtype=np.int16)
        for i in range(n):
            k = int(rng.integers(1, 4))
            label[i, :k] = rng.choice(n_genres, size=k, replace=False)
        with h5py.File(out / f"{split}.h5", "w") as f:
            g = f.create_group("dataset")
            g["id"] = ids
            g["data"] = rng.normal(-30, 10, size=(n, frames, 48)).astype(np.float32)
            g["label"] = label
            if split != "test":
                cf = rng.normal(size=(n, cf_dim)).astype(np.float32)
                cf[: 3 * zero_cf : 3] = 0.0
                g["cf_data"] = cf
    codes = [f"GN{(i // 4 + 1):02d}{(i % 4):02d}" for i in range(n_genres)]
    (out / "genres.json").write_text(
        json.dumps({"codes": codes, "names": codes, "major": [c.endswith("00") for c in codes]})
    )
    emb = np.zeros((n_genres + 1, w2v_dim), dtype=np.float32)
    emb[1:] = rng.normal(size=(n_genres, w2v_dim))
    np.save(out / "embedding_matrix_128.npy", emb)
    return out
