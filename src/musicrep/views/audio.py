"""The audio view: a `crop_frames` crop of the mel, and the CNN."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.h5io import DATA, SplitInfo
from ..model.audio_cnn import AudioEncoder
from .augment import FIRST_CROP, CropAugmentation, first_crop_augmentation
from .base import Batch, FieldReader, View


class CropReader(FieldReader):
    """audio: a `crop_frames` crop of the mel, drawn from (seed, epoch) for the whole
    split when training (so workers and resumes see the same crops), centred otherwise;
    changed by `augment` when given (only in a run with the audio2 view: augment.py)."""

    field, stream = "audio", FIRST_CROP  # the batch field; the augmentation's stream

    def __init__(self, info: SplitInfo, crop_frames: int, train: bool, seed: int,
                 augment: CropAugmentation | None = None):
        self.n, self.frames, self.crop = info.n_tracks, info.n_frames, crop_frames
        self.train, self.seed, self.augment = train, seed, augment
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if not self.train:
            self.starts = np.full(self.n, (self.frames - self.crop) // 2, dtype=np.int64)
        else:
            span = self.frames - self.crop + 1
            self.starts = np.random.default_rng((self.seed, epoch)).integers(0, span, size=self.n)

    def read(self, g: Any, index: int) -> Batch:
        s = int(self.starts[index])
        # (crop_frames, 48): only these rows are read
        crop = np.asarray(g[DATA][index, s : s + self.crop], dtype=np.float32)
        if self.augment is not None:
            crop = self.augment(crop, self.epoch, self.stream, index)
        return {self.field: torch.from_numpy(crop)}


class AudioView(View):
    name, fields, input_field = "audio", ("audio",), "audio"

    def setup(self, train: SplitInfo) -> None:
        self.channels_last = self.cfg.channels_last

    def reader(self, path: str, info: SplitInfo, train: bool, fields: set[str]) -> FieldReader:
        self.check_frames(path, info)
        augment = first_crop_augmentation(self.cfg) if train else None
        return CropReader(info, self.cfg.crop_frames, train, self.cfg.seed, augment)

    def check_frames(self, path: str, info: SplitInfo) -> None:
        """ValueError (one line) when the split's tracks are shorter than a crop."""
        if info.n_frames < self.cfg.crop_frames:
            raise ValueError(
                f"{path}: tracks have {info.n_frames} frames, fewer than the {self.cfg.crop_frames}-frame crop"
            )

    def encoder(self) -> nn.Module:
        enc = AudioEncoder(self.cfg.width, self.cfg.input_layout)
        if self.cfg.channels_last:  # ~1.4x faster training on CPU (bench/README.md)
            enc.to(memory_format=torch.channels_last)
        return enc

    def embed(self, encoder: nn.Module, batch: Batch) -> torch.Tensor:
        x = encoder.to_input(batch[self.input_field])  # (B, 1, 48, 256)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return encoder(x)[1]  # z_d: (B, 128)

    def model_args(self) -> dict[str, Any]:
        return {"width": self.cfg.width, "input_layout": self.cfg.input_layout}
