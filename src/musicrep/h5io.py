"""The HDF5 split files: the original's layout, written in batches, atomically.

One file per split with group `dataset`:
    id       (N, 1)        int32
    data     (N, F, 48)    float32 or float16 -- the first F frames, frames x bands
    cf_data  (N, 301)      float32 -- train and val only (test tracks are cold-start)
    label    (N, 100)      int16   -- genre vocabulary indices, -1 padded
Files written by the original create_dataset.py and by this one are interchangeable.
The file's root attribute `manifest` holds the creation arguments as JSON.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from .genres import LABEL_WIDTH
from .melon import N_BANDS


class SplitWriter:
    """Append tracks to a split file; it gets its final name only on `close()`.

    Datasets start at `capacity` rows (the number of candidate tracks) and are cut to
    the rows actually written, since skipped tracks are only known while reading.
    """

    def __init__(
        self,
        path: Path,
        capacity: int,
        frames: int,
        cf_dim: int | None,
        dtype: str = "float32",
        manifest: dict | None = None,
    ) -> None:
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")
        self.n = 0
        self._f = h5py.File(self.tmp, "w")
        self._f.attrs["manifest"] = json.dumps(manifest or {})
        g = self._f.create_group("dataset")
        cap = max(capacity, 1)
        self._id = g.create_dataset("id", (cap, 1), np.int32, maxshape=(None, 1), chunks=(4096, 1))
        # One chunk per track: training reads one random crop of one track at a time.
        self._data = g.create_dataset(
            "data", (cap, frames, N_BANDS), np.dtype(dtype), maxshape=(None, frames, N_BANDS),
            chunks=(1, frames, N_BANDS),
        )
        self._label = g.create_dataset(
            "label", (cap, LABEL_WIDTH), np.int16, maxshape=(None, LABEL_WIDTH),
            chunks=(1024, LABEL_WIDTH),
        )
        self._cf = None
        if cf_dim is not None:
            self._cf = g.create_dataset(
                "cf_data", (cap, cf_dim), np.float32, maxshape=(None, cf_dim), chunks=(256, cf_dim)
            )

    def append(
        self, ids: np.ndarray, data: np.ndarray, labels: np.ndarray, cf: np.ndarray | None = None
    ) -> None:
        """Write a batch: ids (B,), data (B, F, 48), labels (B, 100), cf (B, D)."""
        b = len(ids)
        if b == 0:
            return
        end = self.n + b
        if end > self._id.shape[0]:
            for d in (self._id, self._data, self._label, self._cf):
                if d is not None:
                    d.resize(end, axis=0)
        self._id[self.n:end, 0] = ids
        self._data[self.n:end] = data
        self._label[self.n:end] = labels
        if self._cf is not None:
            if cf is None:
                raise ValueError(f"{self.path}: this split has cf_data, but no CF rows were given")
            self._cf[self.n:end] = cf
        self.n = end

    def close(self) -> None:
        """Cut to the rows written, close, and move to the final name."""
        for d in (self._id, self._data, self._label, self._cf):
            if d is not None:
                d.resize(self.n, axis=0)
        self._f.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        """Close and delete the temporary file (used on errors and interrupts)."""
        try:
            self._f.close()
        finally:
            self.tmp.unlink(missing_ok=True)
