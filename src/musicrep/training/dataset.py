"""The torch dataset over one HDF5 split (layout: h5io.py), reading only the fields asked for.

Which fields exist and how each is read belongs to the views (views.py): the audio crop,
the CF vector, genre tokens / multi-hot, tag tokens / multi-hot. A dataset is built from
the views of a run and the fields its objective asks for; each view prepares a
`FieldReader` for the split once (vectorised, e.g. all genre tokens), and an item is the
union of the readers' fields plus `index` (the row in the file).

The split is never loaded into RAM. Each process opens its own read-only h5py handle on
first use and reads only the frames of the crop it needs. Training crops are drawn for
the whole split from (seed, epoch), so a run is the same whatever the number of
DataLoader workers and after a resume; validation uses the centred crop.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from tqdm import tqdm
from torch.utils.data import Dataset

from ..data.h5io import GROUP, IDS, read_split_info
from ..errors import ConfigError
from ..settings import TrainConfig
from ..views import FieldReader, View, make_views


class TrackDataset(Dataset):
    """One split; items are {field: tensor} for the requested fields, plus `index`.

    Args:
        path: the split file.
        views: {name: View} set up on the train split (views.make_views).
        fields: the batch fields to read (objective.fields); views owning none are not read.
        train: random crops per epoch (else centred).
    """

    def __init__(self, path: str | Path, views: dict[str, View], fields: tuple[str, ...], train: bool = True):
        self.path = str(path)
        self.info = read_split_info(path)
        self.train = train
        if self.info.n_tracks == 0:
            raise ValueError(f"{path}: the split holds no tracks")
        wanted = set(fields)
        unknown = wanted - {f for v in views.values() for f in v.fields}
        if unknown:
            raise ValueError(f"no view produces the field(s) {sorted(unknown)}")
        self.readers: list[FieldReader] = [
            v.reader(self.path, self.info, train, wanted) for v in views.values() if wanted & set(v.fields)
        ]
        self.epoch = 0
        self._h5: h5py.File | None = None
        self._pid: int | None = None
        self._fields: _Fields | None = None

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's crops. Call before creating the epoch's DataLoader iterator
        (workers are forked with the dataset as it is then)."""
        self.epoch = epoch
        for r in self.readers:
            r.set_epoch(epoch)

    def _group(self) -> _Fields:
        # One handle per process: a handle inherited through fork must not be used.
        if self._h5 is None or self._pid != os.getpid():
            self._h5 = h5py.File(self.path, "r")
            self._pid = os.getpid()
            self._fields = _Fields(self._h5[GROUP])
        return self._fields

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_h5"], state["_pid"], state["_fields"] = None, None, None
        return state

    def close(self) -> None:
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5 = None

    def __len__(self) -> int:
        return self.info.n_tracks

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        g = self._group()
        item = {"index": torch.tensor(index)}
        for r in self.readers:
            item.update(r.read(g, index))
        return item

    def find_nonfinite(self, rows: Iterable[int] | None = None) -> tuple[int, int | None, str] | None:
        """The first item of `rows` (default: every row) that holds a NaN or inf in what
        the model is fed (the crop, the CF vector, ...), as (row, track id or None when
        the file has no `id`, field); None when all are finite. Used to name the track
        behind a non-finite loss."""
        rows = range(len(self)) if rows is None else list(rows)
        desc = f"looking for NaN/inf in {Path(self.path).name}"
        with tqdm(rows, desc=desc, leave=False, disable=len(rows) < 1000) as bar:
            for row in map(int, bar):
                for field, t in self[row].items():
                    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                        g = self._group()
                        track = int(np.asarray(g[IDS][row]).reshape(-1)[0]) if IDS in g else None
                        return row, track, field
        return None


class _Fields(dict):
    """The split's HDF5 datasets by name, looked up once per process: h5py's name lookup
    costs about as much as reading a 256-frame crop, and every item reads 2-3 fields."""

    def __init__(self, group: h5py.Group):
        super().__init__()
        self.group = group

    def __missing__(self, name: str) -> h5py.Dataset:
        self[name] = self.group[name]
        return self[name]

    def __contains__(self, name: object) -> bool:
        return name in self.group


def open_splits(cfg: TrainConfig, fields: tuple[str, ...]) -> tuple[dict[str, View], TrackDataset, TrackDataset]:
    """A run's views (set up on the train split) and its train and validation datasets
    reading `fields`; a file that cannot be read is a ConfigError naming its config key."""
    try:
        views = make_views(cfg, read_split_info(cfg.train_dataset_file))
    except ConfigError:
        raise
    except (OSError, ValueError) as e:
        raise ConfigError(f"config key 'train_dataset_file': {e}") from None
    train = _open_split(cfg.train_dataset_file, views, fields, True, "train_dataset_file")
    val = _open_split(cfg.validation_dataset_file, views, fields, False, "validation_dataset_file")
    return views, train, val


def _open_split(path: str | Path, views: dict[str, View], fields: tuple[str, ...], train: bool,
                key: str) -> TrackDataset:
    try:
        return TrackDataset(path, views, fields, train=train)
    except (OSError, ValueError) as e:
        raise ConfigError(f"config key '{key}': {e}") from None
