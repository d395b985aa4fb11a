"""The HDF5 split files: the one owner of their layout (open, validate, read, write).

One file per split with group `dataset`:
    id       (N, 1)        int32
    data     (N, F, 48)    float32 or float16 -- the first F frames, frames x bands
    cf_data  (N, 301)      float32 -- train and val only (test tracks are cold-start)
    cf_known (N,)          uint8   -- with cf_data: 1 = the track is in the CF training
                                      matrix, 0 = no interaction (its cf_data row is zero)
    label    (N, 100)      int16   -- genre vocabulary indices, -1 padded
Files written by the original create_dataset.py and by this one are interchangeable
(`cf_known` is an extra field the original code never reads). Files without it (the
original's, and this project's before it) are read by `read_cf_known` as "a track is
known unless its cf_data row is all zero": what `implicit` leaves for a track it never
saw. The original's LightFM leaves such tracks at their random initial values instead,
which no reader can tell apart; the explicit flag does not depend on the library.
The file's root attribute `manifest` holds the creation arguments as JSON.

Readers open a split with `open_split` (which checks the group and the fields asked
for) and never load `data` whole: the full Melon train split is ~130 GB.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .genres import LABEL_WIDTH
from ..audio import N_MELS
from ..io import naming_os_errors

LABEL_BLOCK = 8192  # rows of `label` handled at a time (bounds memory on the full split)
# The layout's names: the group and its per-track fields (see the module docstring).
GROUP, IDS, DATA, CF_DATA, CF_KNOWN, LABEL = "dataset", "id", "data", "cf_data", "cf_known", "label"


def open_split(path: str | os.PathLike, fields: tuple[str, ...] = ("id", "data")) -> tuple[h5py.File, h5py.Group]:
    """Open a split read-only and check it: group `dataset` with `fields`, `data`
    (N, frames, 48), and every per-track field with N rows. Returns (file, group); the
    caller closes the file. Raises ValueError naming the file and what is wrong."""
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{path}: not a readable HDF5 file ({e})") from None
    try:
        if "dataset" not in f:
            raise ValueError(f"{path}: no group 'dataset'")
        g = f["dataset"]
        for name in fields:
            if name not in g:
                raise ValueError(f"{path}: missing field dataset/{name}")
        if "data" in g and (g["data"].ndim != 3 or g["data"].shape[2] != N_MELS):
            raise ValueError(f"{path}: dataset/data must be (N, frames, {N_MELS}), got {g['data'].shape}")
        for name, kinds, what in (("label", "iu", "integers"), ("cf_data", "fiu", "numbers")):
            if name in g and (g[name].ndim != 2 or g[name].dtype.kind not in kinds):
                raise ValueError(f"{path}: dataset/{name} must be (N, width) {what}, got {g[name].dtype} {g[name].shape}")
        rows = {name: g[name].shape[0] for name in ("id", "data", "label", "cf_data", CF_KNOWN) if name in g}
        if len(set(rows.values())) > 1:
            raise ValueError(f"{path}: per-track fields differ in rows: {rows}")
    except BaseException:
        f.close()
        raise
    return f, g


@dataclass(frozen=True)
class SplitInfo:
    n_tracks: int
    n_frames: int
    n_bands: int
    cf_dim: int | None  # None when the split has no cf_data (test)
    max_label: int  # largest genre index present, -1 if none
    dtype: str


def read_split_info(path: str | os.PathLike) -> SplitInfo:
    """Shapes of a training split (needs data and label), from metadata and `label`."""
    f, g = open_split(path, ("data", "label"))
    with f:
        n, frames, bands = g["data"].shape
        cf_dim = g["cf_data"].shape[1] if "cf_data" in g else None
        max_label = -1
        for block in _blocks(g["label"], LABEL_BLOCK):
            max_label = max(max_label, int(block.max(initial=-1)))
        return SplitInfo(n, frames, bands, cf_dim, max_label, str(g["data"].dtype))


def _blocks(d: h5py.Dataset, rows: int) -> Iterator[np.ndarray]:
    for start in range(0, d.shape[0], rows):
        yield d[start : start + rows]


def iter_labels(path: str | os.PathLike, rows: int = LABEL_BLOCK) -> Iterator[np.ndarray]:
    """`label` of a split in blocks of (rows, 100) int16, -1 padded."""
    f, g = open_split(path, ("label",))
    with f:
        yield from _blocks(g["label"], rows)


def read_ids(path: str | os.PathLike) -> np.ndarray:
    """(N,) int64 track ids of a split (its `id`, stored (N, 1) or (N,))."""
    f, g = open_split(path, ("id",))
    with f:
        return np.asarray(g["id"][...]).reshape(-1).astype(np.int64)


def cf_rows_known(cf: np.ndarray) -> np.ndarray:
    """(N, D) CF vectors -> (N,) bool: the fallback rule, known unless all zero."""
    return (np.asarray(cf) != 0).any(1)


def read_cf_known(path: str | os.PathLike) -> tuple[np.ndarray, bool]:
    """((N,) bool: the track has a CF vector, stored?) of a split with cf_data.

    The stored `cf_known` flag when the file has one (stored = True); otherwise derived
    from the rows, a track being known unless its cf_data row is all zero (read in
    blocks: the full train split's cf_data is ~600 MB)."""
    f, g = open_split(path, ("cf_data",))
    with f:
        if CF_KNOWN in g:
            return np.asarray(g[CF_KNOWN][...]).reshape(-1) > 0, True
        return np.concatenate([cf_rows_known(b) for b in _blocks(g["cf_data"], LABEL_BLOCK)]
                              or [np.zeros(0, bool)]), False


def read_labels(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(ids (N,) int64, labels (N, W) as stored) of a split."""
    f, g = open_split(path, ("id", "label"))
    with f:
        ids = np.asarray(g["id"][...]).reshape(-1).astype(np.int64)
        labels = np.asarray(g["label"][...])  # int16 as stored: (N, 100) stays small
    if labels.ndim != 2 or labels.shape[0] != ids.shape[0]:
        raise ValueError(f"{path}: dataset/label must be (N, width) with N = {ids.shape[0]}")
    return ids, labels


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    """A write that fails (disk full, I/O error) leaves as an OSError naming `path`:
    h5py raises OSError, or from a flush a RuntimeError with the errno in its text."""
    try:
        with naming_os_errors(path):
            yield
    except RuntimeError as e:
        found = re.search(r"errno = (\d+)", str(e))
        if found is None:
            raise
        err = int(found.group(1))
        raise OSError(err, os.strerror(err), str(path)) from e


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
            "data", (cap, frames, N_MELS), np.dtype(dtype), maxshape=(None, frames, N_MELS),
            chunks=(1, frames, N_MELS),
        )
        self._label = g.create_dataset(
            "label", (cap, LABEL_WIDTH), np.int16, maxshape=(None, LABEL_WIDTH),
            chunks=(1024, LABEL_WIDTH),
        )
        self._cf = self._cf_known = None
        if cf_dim is not None:
            self._cf = g.create_dataset(
                "cf_data", (cap, cf_dim), np.float32, maxshape=(None, cf_dim), chunks=(256, cf_dim)
            )
            self._cf_known = g.create_dataset(CF_KNOWN, (cap,), np.uint8, maxshape=(None,), chunks=(4096,))

    def append(
        self,
        ids: np.ndarray,
        data: np.ndarray,
        labels: np.ndarray,
        cf: np.ndarray | None = None,
        cf_known: np.ndarray | None = None,
    ) -> None:
        """Write a batch: ids (B,), data (B, F, 48), labels (B, 100), cf (B, D) and
        cf_known (B,) bool (None: known unless the cf row is all zero)."""
        b = len(ids)
        if b == 0:
            return
        with _writing(self.path):  # a write that fails (disk full) names the split
            self._append(ids, data, labels, cf, cf_known)

    def _append(self, ids: np.ndarray, data: np.ndarray, labels: np.ndarray,
                cf: np.ndarray | None, cf_known: np.ndarray | None) -> None:
        end = self.n + len(ids)
        if end > self._id.shape[0]:
            for d in (self._id, self._data, self._label, self._cf, self._cf_known):
                if d is not None:
                    d.resize(end, axis=0)
        self._id[self.n:end, 0] = ids
        self._data[self.n:end] = data
        self._label[self.n:end] = labels
        if self._cf is not None:
            if cf is None:
                raise ValueError(f"{self.path}: this split has cf_data, but no CF rows were given")
            self._cf[self.n:end] = cf
            known = cf_rows_known(cf) if cf_known is None else np.asarray(cf_known, bool)
            self._cf_known[self.n:end] = known
        self.n = end

    def close(self) -> None:
        """Cut to the rows written, close, and move to the final name.

        A write that fails (disk full) raises OSError naming the split file, from the
        flush, while the file is still open, so that `abort` can still close it.
        """
        with _writing(self.path):
            for d in (self._id, self._data, self._label, self._cf, self._cf_known):
                if d is not None:
                    d.resize(self.n, axis=0)
            self._f.flush()
            self._f.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        """Close and delete the temporary file (used on errors and interrupts).

        The data HDF5 still holds in its caches are sent to /dev/null: written to the
        full disk they would fail again, and an HDF5 file whose close failed crashes
        the interpreter at exit (a segfault, exit 139, instead of the one-line error).
        """
        try:
            if self._f:  # still open
                handle = self._f.id.get_vfd_handle()
                if isinstance(handle, int):  # the POSIX driver's file descriptor
                    null = os.open(os.devnull, os.O_WRONLY)
                    try:
                        os.dup2(null, handle)
                    finally:
                        os.close(null)
                self._f.close()
        finally:
            self.tmp.unlink(missing_ok=True)
