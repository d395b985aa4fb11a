"""The CF view: the track's collaborative-filtering vector (and whether it has one)."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.h5io import CF_DATA, CF_KNOWN, SplitInfo, read_cf_known
from ..errors import ConfigError
from ..model.metadata import CFEncoder
from .base import Batch, FieldReader, View


class RowReader(FieldReader):
    """One row of a per-track HDF5 dataset (cf_data) as a float32 field."""

    def __init__(self, dataset: str, field: str):
        self.dataset, self.field = dataset, field

    def read(self, g: Any, index: int) -> Batch:
        return {self.field: torch.from_numpy(np.asarray(g[self.dataset][index], dtype=np.float32))}


class CFReader(RowReader):
    """cf: the CF vector; cf_known: whether the track has one (h5io.read_cf_known: the
    stored flag, else "not an all-zero row"), read for the whole split at once."""

    def __init__(self, path: str):
        super().__init__(CF_DATA, "cf")
        self.known, stored = read_cf_known(path)  # (N,) bool
        missing = int((~self.known).sum())
        if missing:
            how = "cf_known = 0" if stored else "all-zero cf_data rows"
            print(f"note: {path}: {missing} of {len(self.known)} tracks have no CF vector ({how}); "
                  "they are left out of the CF loss terms", file=sys.stderr)

    def read(self, g: Any, index: int) -> Batch:
        return {**super().read(g, index), CF_KNOWN: torch.tensor(bool(self.known[index]))}


class CFView(View):
    name, fields, input_field, target_field = "cf", ("cf", CF_KNOWN), "cf", "cf"
    mask_field = CF_KNOWN  # the batch field is named as the file's dataset

    def setup(self, train: SplitInfo) -> None:
        if train.cf_dim is None:
            raise ConfigError(
                f"config key 'train_dataset_file': {self.cfg.train_dataset_file}: no dataset/cf_data, needed by the cf view"
            )
        self.cf_dim = train.cf_dim

    def reader(self, path: str, info: SplitInfo, train: bool, fields: set[str]) -> FieldReader:
        if info.cf_dim != self.cf_dim:
            raise ValueError(f"{path}: dataset/cf_data is {info.cf_dim}-d, the train split's {self.cf_dim}-d")
        return CFReader(path)

    def encoder(self) -> nn.Module:
        return CFEncoder(self.cf_dim)

    def head(self) -> nn.Module:
        # Zero-initialised: CF targets are small (BPR factors, std ~0.1) while a default
        # head on the layer-normed embedding outputs std ~0.6, and the first steps' large
        # gradients then hold the run back. Measured at the demo's budget (fp32, seed 0,
        # bench/cf_head_init.py): zero and a small N(0, 0.01^2) weight leave the MSE
        # plateau at epoch 10; PyTorch's default init, and the default scaled by 0.1,
        # never within 15 epochs. The zero weight does not block learning under Adam.
        head = nn.Linear(128, self.cf_dim)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        return head

    def model_args(self) -> dict[str, Any]:
        return {"cf_dim": self.cf_dim}
