"""The embedding ``.npz`` format: its one writer and its one reader.

What ``encode.py --out x.npz`` writes, ``evaluate.py --embeddings`` scores and
``explore.py --embeddings`` shows. A valid file is an ``.npz`` (never a pickle; no
member is ever unpickled) holding:

- ``embeddings`` (N, d), d >= 1, floating point, every value finite (read as float32);
- row labels, one of: ``ids`` (M,) integer track ids (``encode.py --hdf5``; an (M, 1)
  column is accepted too; no id twice), or ``paths`` (M,) the encoded files' paths
  (``encode.py`` on audio files). A file with both is labelled by its ``ids``;
- ``file_index`` (N,) integers in 0..M-1, only when the rows are per chunk
  (``--chunks``): each row's position in ``ids``/``paths``. Without it M = N;
- any other members: metadata (``checkpoint``, ``layer``, ``trained_on``, ... as
  encode.py writes them), read where they hold plain arrays, otherwise ignored.

This is the union of what the evaluation's and the explorer's readers accepted before
they were one: the evaluation needs track ids and one row per track
(``load_embedding_file``), the explorer one row per track (``per_track_rows``).
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "EmbeddingFile",
    "load_embedding_file",
    "load_embedding_set",
    "per_track_rows",
    "read_embedding_file",
    "split_embeddings",
    "write_embedding_file",
]

_EXPECTED = "expected an .npz with 'ids' (N,) and 'embeddings' (N, d)"
_DATA = ("embeddings", "ids", "paths", "file_index")


@dataclass
class EmbeddingFile:
    """One embedding file as ``read_embedding_file`` checked it."""

    path: Path
    embeddings: np.ndarray  # (N, d) float32
    ids: np.ndarray | None  # (M,) int64 track ids, or None for a file of paths
    paths: np.ndarray | None  # (M,) the encoded files, when there are no ids
    file_index: np.ndarray | None = None  # (N,) int64 row -> label position (per chunk)
    meta: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def labels(self) -> np.ndarray:
        """The row labels: ``ids`` when the file has them, else ``paths``."""
        return self.ids if self.ids is not None else self.paths


def write_embedding_file(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` (the members above) as an uncompressed ``.npz``, atomically."""
    from ..io import atomic_path

    path = Path(path)
    # A file object, so numpy does not append ".npz" to the temporary name.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return path


def _open(path: Path) -> np.lib.npyio.NpzFile:
    if not path.is_file():
        raise ValueError(f"{path}: embedding file not found")
    try:
        z = np.load(path, allow_pickle=False)
    except ValueError:  # numpy's refusal of pickles; also what a text file gets
        raise ValueError(f"{path}: not an .npy/.npz file (pickled or text data is refused; "
                         f"{_EXPECTED})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: not a readable .npz ({type(e).__name__}; {_EXPECTED})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: a single array, {_EXPECTED}")
    return z


def _members(path: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(data members, readable metadata members) of the file, nothing unpickled."""
    with _open(path) as z:
        if "ids" not in z.files and "paths" not in z.files:
            raise ValueError(f"{path}: missing array 'ids' ({_EXPECTED})")
        if "embeddings" not in z.files:
            raise ValueError(f"{path}: missing array 'embeddings' ({_EXPECTED})")
        try:
            data = {k: z[k] for k in _DATA if k in z.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            why = ("object arrays are refused" if isinstance(e, ValueError)
                   else "the file is damaged or truncated")
            raise ValueError(f"{path}: cannot read its arrays ({type(e).__name__}: {why}; "
                             f"{_EXPECTED})") from None
        meta = {}
        for k in z.files:
            if k not in _DATA:
                try:
                    meta[k] = z[k]
                except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error):
                    pass  # metadata that is not a plain array: not needed, never unpickled
    return data, meta


def _row_labels(path: Path, data: dict[str, np.ndarray]) -> tuple[np.ndarray | None,
                                                                  np.ndarray | None, int]:
    """(ids, paths, M) with the label rules of the module docstring."""
    if "ids" not in data:
        paths = data["paths"]
        if paths.ndim != 1:
            raise ValueError(f"{path}: 'paths' must be (N,), got {paths.shape}")
        return None, paths, paths.shape[0]
    ids = data["ids"]
    if ids.ndim == 2 and ids.shape[1] == 1:
        ids = ids[:, 0]
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{path}: 'ids' must be (N,) integers, got {ids.dtype} {ids.shape}")
    return ids, None, ids.shape[0]


def _file_index(path: Path, data: dict[str, np.ndarray], n_rows: int,
                n_labels: int) -> np.ndarray | None:
    if "file_index" not in data:
        return None
    fi = data["file_index"]
    if fi.shape != (n_rows,) or not np.issubdtype(fi.dtype, np.integer):
        raise ValueError(f"{path}: 'file_index' must be ({n_rows},) integers, one per row "
                         f"of 'embeddings', got {fi.dtype} {fi.shape}")
    if fi.size and (fi.min() < 0 or fi.max() >= n_labels):
        raise ValueError(f"{path}: 'file_index' must index its {n_labels} ids/paths")
    return fi.astype(np.int64)


def read_embedding_file(path: str | os.PathLike) -> EmbeddingFile:
    """Read and check an embedding file; ValueError naming the file for anything that
    is not valid (module docstring): a pickle, a text file, missing members, wrong
    shapes, non-integer or repeated ids, non-finite values."""
    path = Path(path)
    data, meta = _members(path)
    ids, paths, n_labels = _row_labels(path, data)
    emb = data["embeddings"]
    has_index = "file_index" in data
    if emb.ndim != 2 or emb.shape[1] < 1 or (not has_index and emb.shape[0] != n_labels):
        raise ValueError(f"{path}: 'embeddings' must be (N, d) with N = {n_labels} ids, "
                         f"got {emb.shape}")
    file_index = _file_index(path, data, emb.shape[0], n_labels)
    if not np.issubdtype(emb.dtype, np.floating):
        raise ValueError(f"{path}: 'embeddings' must be floating point, got {emb.dtype}")
    if ids is not None and np.unique(ids).size != ids.size:
        raise ValueError(f"{path}: 'ids' holds repeated track ids")
    emb = np.asarray(emb, dtype=np.float32)
    bad = ~np.isfinite(emb).all(axis=1)
    if bad.any():
        labels = ids if ids is not None else paths
        first = labels[bad.nonzero()[0][0] if file_index is None else file_index[bad][0]]
        what = f"first id {int(first)}" if ids is not None else f"first path {first}"
        raise ValueError(f"{path}: non-finite embeddings for {int(bad.sum())} "
                         f"{'tracks' if file_index is None else 'rows'} ({what})")
    return EmbeddingFile(path, emb, None if ids is None else ids.astype(np.int64), paths,
                         file_index, meta)


def load_embedding_file(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(ids (N,) int64, embeddings (N, d) float32) of a file the evaluation can score:
    one with track ids and one row per track (as encode.py --hdf5 writes it without
    --chunks). Raises ValueError naming the file otherwise."""
    f = read_embedding_file(path)
    if f.ids is None:
        raise ValueError(f"{f.path}: missing array 'ids' ({_EXPECTED})")
    if f.embeddings.shape[0] != f.ids.shape[0]:  # per-chunk rows
        raise ValueError(f"{f.path}: 'embeddings' must be (N, d) with N = {f.ids.shape[0]} "
                         f"ids, got {f.embeddings.shape}")
    return f.ids, f.embeddings


def per_track_rows(f: EmbeddingFile) -> EmbeddingFile:
    """``f`` itself when it holds one row per track or file; ValueError for per-chunk rows."""
    if f.file_index is not None:
        raise ValueError(f"{f.path}: holds per-chunk rows; encode without --chunks")
    return f


def split_embeddings(
    split_ids: dict[str, np.ndarray], ids: np.ndarray, emb: np.ndarray, source: str
) -> dict[str, np.ndarray]:
    """Rows of ``emb`` (one per id of ``ids``) for each split's ids, in split order.

    Every track of every split must have an embedding (ValueError naming ``source``,
    the split, how many are missing and the first missing id); extra ids are ignored.
    """
    ids = np.asarray(ids, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    out = {}
    for s, want in split_ids.items():
        pos = np.clip(np.searchsorted(sorted_ids, want), 0, max(0, sorted_ids.size - 1))
        found = sorted_ids[pos] == want if sorted_ids.size else np.zeros(len(want), bool)
        if not found.all():
            raise ValueError(f"{source}: no embedding for {int((~found).sum())} of the "
                             f"{len(want)} {s} tracks (first missing id {int(want[~found][0])})")
        out[s] = emb[order[pos]]
    return out


def load_embedding_set(name: str, files: Sequence[str | os.PathLike],
                       split_ids: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], str]:
    """One ``--embeddings NAME=FILE[,FILE...]`` set: (its rows per split, its source).

    The files together must hold every track of every split, none twice, all of one
    width (ValueError naming the set otherwise). The source is the files joined by commas.
    """
    parts = [load_embedding_file(f) for f in files]
    ids = np.concatenate([p[0] for p in parts])
    if np.unique(ids).size != ids.size:
        raise ValueError(f"--embeddings {name}: the files repeat track ids")
    dims = {p[1].shape[1] for p in parts}
    if len(dims) != 1:
        raise ValueError(f"--embeddings {name}: the files differ in width {sorted(dims)}")
    source = ",".join(str(f) for f in files)
    return split_embeddings(split_ids, ids, np.concatenate([p[1] for p in parts]), source), source
