"""Torch datasets over the HDF5 splits written by create_dataset (the original layout).

One file per split, group `dataset`:
    id       (N, 1)      int32
    data     (N, F, 48)  float32 or float16   mel, frames x bands
    cf_data  (N, 301)    float32              train/val only
    label    (N, 100)    int16                genre indices, padded with -1

The split is never loaded into RAM (the full Melon train split is ~130 GB). Each
process opens its own read-only h5py handle on first use and reads only the frames
of the crop it needs. What is small and needed for every item (genre tokens, the
compacted label rows) is prepared once, vectorised, at construction.

Crops. Training takes a fresh random 256-frame crop per track per epoch; the crop
starts are drawn for the whole split from a generator seeded by (seed, epoch), so a
run is the same whatever the number of DataLoader workers and after a resume.
Validation uses the centred crop of every track.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

LABEL_BLOCK = 8192  # rows of `label` handled at a time at construction (bounds memory)


@dataclass(frozen=True)
class SplitInfo:
    n_tracks: int
    n_frames: int
    n_bands: int
    cf_dim: int | None  # None when the split has no cf_data (test)
    max_label: int  # largest genre index present, -1 if none
    dtype: str


def read_split_info(path: str | Path) -> SplitInfo:
    """Shapes of a split file, read from metadata only."""
    with h5py.File(path, "r") as f:
        if "dataset" not in f or "data" not in f["dataset"] or "label" not in f["dataset"]:
            raise ValueError(
                f"{path}: expected an HDF5 file with group 'dataset' holding 'data' and 'label'"
            )
        g = f["dataset"]
        n, frames, bands = g["data"].shape
        cf_dim = g["cf_data"].shape[1] if "cf_data" in g else None
        max_label = -1
        label = g["label"]
        for start in range(0, label.shape[0], LABEL_BLOCK):
            max_label = max(max_label, int(label[start : start + LABEL_BLOCK].max(initial=-1)))
        return SplitInfo(n, frames, bands, cf_dim, max_label, str(g["data"].dtype))


def genre_tokens(labels: np.ndarray, max_tokens: int = 10) -> np.ndarray:
    """(N, L) genre indices padded with -1 -> (N, max_tokens) int64 tokens: index + 1,
    0 = padding, real labels first in their stored order."""
    valid = labels >= 0
    order = np.argsort(~valid, axis=1, kind="stable")[:, :max_tokens]  # real labels first
    compact = np.take_along_axis(labels, order, axis=1).astype(np.int64)
    tokens = np.where(np.take_along_axis(valid, order, axis=1), compact + 1, 0)
    out = np.zeros((labels.shape[0], max_tokens), dtype=np.int64)
    out[:, : tokens.shape[1]] = tokens
    return out


def read_n_genres(
    id2tag_file: str | Path | None, embedding_matrix_file: str | Path | None
) -> int | None:
    """Vocabulary size from genres.json / an id2tag file (list, {"codes": [...]} or
    {id: tag}) or from the embedding matrix rows - 1; None if neither is given."""
    if id2tag_file is not None:
        obj = json.loads(Path(id2tag_file).read_text())
        if isinstance(obj, dict) and "codes" in obj:
            return len(obj["codes"])
        return len(obj)
    if embedding_matrix_file is not None and Path(embedding_matrix_file).is_file():
        return int(np.load(embedding_matrix_file, mmap_mode="r").shape[0]) - 1
    return None


class TrackDataset(Dataset):
    """One split. Items are dicts of tensors:

    audio   (crop_frames, 48) float32   crop as stored: frames x bands
    cf      (cf_dim,) float32           if with_cf
    tokens  (max_genres,) int64         if with_genres: genre index + 1, 0 = pad
    genres  (n_genres,) float32         if with_genres: multi-hot
    index   () int64                    row in the file
    """

    def __init__(
        self,
        path: str | Path,
        *,
        crop_frames: int = 256,
        train: bool = True,
        seed: int = 0,
        n_genres: int | None = None,
        max_genres: int = 10,
        with_cf: bool = True,
        with_genres: bool = True,
    ):
        self.path = str(path)
        self.info = read_split_info(path)
        self.crop_frames = crop_frames
        self.train = train
        self.seed = seed
        self.with_cf = with_cf
        self.with_genres = with_genres
        if self.info.n_tracks == 0:
            raise ValueError(f"{path}: the split holds no tracks")
        if self.info.n_frames < crop_frames:
            raise ValueError(
                f"{path}: tracks have {self.info.n_frames} frames, fewer than the {crop_frames}-frame crop"
            )
        if with_cf and self.info.cf_dim is None:
            raise ValueError(f"{path}: no dataset/cf_data, needed by the MF encoder")
        self.n_genres = n_genres if n_genres is not None else self.info.max_label + 1
        if self.info.max_label >= self.n_genres:
            raise ValueError(
                f"{path}: genre index {self.info.max_label} is outside the vocabulary of {self.n_genres} genres"
            )

        # Genre tokens and compacted labels for the whole split, in blocks.
        self.tokens: np.ndarray | None = None  # (N, max_genres) int16
        self.labels: np.ndarray | None = None  # (N, most labels of any track) int16, -1 pad
        if with_genres:
            tokens, labels = [], []
            with h5py.File(self.path, "r") as f:
                lab = f["dataset/label"]
                for start in range(0, lab.shape[0], LABEL_BLOCK):
                    block = lab[start : start + LABEL_BLOCK]
                    tokens.append(genre_tokens(block, max_genres).astype(np.int16))
                    # multi-hot needs every label, but only as many columns as are used
                    k = max(1, int((block >= 0).sum(1).max(initial=0)))
                    labels.append(-np.sort(-block, axis=1)[:, :k])  # real labels first
            width = max(b.shape[1] for b in labels)
            self.tokens = np.concatenate(tokens)
            self.labels = np.concatenate(
                [np.pad(b, ((0, 0), (0, width - b.shape[1])), constant_values=-1) for b in labels]
            ).astype(np.int16)

        self.epoch = 0
        self.starts = self._crop_starts(0)
        self._h5: h5py.File | None = None
        self._pid: int | None = None

    # -- crops --------------------------------------------------------------------------
    def _crop_starts(self, epoch: int) -> np.ndarray:
        n, span = self.info.n_tracks, self.info.n_frames - self.crop_frames + 1
        if not self.train:
            return np.full(n, (self.info.n_frames - self.crop_frames) // 2, dtype=np.int64)
        return np.random.default_rng((self.seed, epoch)).integers(0, span, size=n)

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's crops. Call before creating the epoch's DataLoader iterator
        (workers are forked with the dataset as it is then)."""
        self.epoch = epoch
        self.starts = self._crop_starts(epoch)

    # -- file handle --------------------------------------------------------------------
    def _file(self) -> h5py.File:
        # One handle per process: a handle inherited through fork must not be used.
        if self._h5 is None or self._pid != os.getpid():
            self._h5 = h5py.File(self.path, "r")
            self._pid = os.getpid()
            self._data = self._h5["dataset/data"]
            self._cf = self._h5["dataset/cf_data"] if self.with_cf else None
        return self._h5

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for k in ("_h5", "_data", "_cf"):
            state.pop(k, None)
        state["_h5"], state["_pid"] = None, None
        return state

    def close(self) -> None:
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5 = None

    # -- items --------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.info.n_tracks

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        self._file()
        s = int(self.starts[index])
        crop = self._data[
            index, s : s + self.crop_frames
        ]  # (crop_frames, 48), only these rows read
        item = {
            "audio": torch.from_numpy(np.asarray(crop, dtype=np.float32)),
            "index": torch.tensor(index),
        }
        if self.with_cf:
            item["cf"] = torch.from_numpy(np.asarray(self._cf[index], dtype=np.float32))
        if self.with_genres:
            item["tokens"] = torch.from_numpy(self.tokens[index].astype(np.int64))
            multi_hot = np.zeros(self.n_genres, dtype=np.float32)
            row = self.labels[index]
            multi_hot[row[row >= 0]] = 1.0
            item["genres"] = torch.from_numpy(multi_hot)
        return item
