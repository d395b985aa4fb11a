"""The audio-audio view ("audio2"): a second crop of the same track, through the same CNN.

Self-supervision in the manner of SimCLR / CLMR, for recordings that have no playlists
and no genres: the pair ["audio", "audio2"] is an NT-Xent term between two crops of each
track (model/losses.py), both embedded by the one audio encoder. The view has no
encoder of its own (`shares_encoder`), so the run's parts, checkpoints and exported
`audio_encoder.pt` are exactly those of the audio view, and it combines with the other
views through `pairs` like any of them (audio-audio + genre, audio-audio + cf).

The second crop starts at another position, drawn from (seed, epoch) for the whole
split (so workers and resumes see the same crops), at least `aug_min_shift` frames
from the first crop's start (uniform over the positions that allow). Both crops are
augmented (augment.py): the second always, the first (the `audio` field, which the
run's other pairs share) unless `aug_first_crop` is false. Validation pairs the centred
first crop, plain, with a second crop and augmentation drawn once from the seed, the
same every epoch.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from ..data.h5io import SplitInfo
from ..errors import ConfigError
from .audio import AudioView, CropReader
from .augment import PAIR_VIEW, SECOND_CROP, VAL_EPOCH, CropAugmentation
from .base import FieldReader


def second_starts(first: np.ndarray, span: int, min_shift: int,
                  rng: np.random.Generator) -> np.ndarray:
    """(N,) starts of the second crops: uniform over the `span` start positions that lie
    at least `min_shift` frames from `first` (N,). Needs 2 * min_shift <= span (then
    every first start leaves one)."""
    if min_shift == 0:
        return rng.integers(0, span, size=len(first))
    left = np.maximum(0, first - min_shift + 1)  # (N,) positions 0 .. first - min_shift
    right = np.maximum(0, span - first - min_shift)  # (N,) first + min_shift .. span - 1
    u = rng.integers(0, left + right)  # (N,)
    return np.where(u < left, u, first + min_shift + (u - left))


class SecondCropReader(CropReader):
    """audio2: the second crop of each track (module docstring), augmented."""

    field, stream = PAIR_VIEW, SECOND_CROP

    def __init__(self, info: SplitInfo, crop_frames: int, train: bool, seed: int,
                 augment: CropAugmentation, min_shift: int):
        self.min_shift = min_shift
        super().__init__(info, crop_frames, train, seed, augment)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch if self.train else VAL_EPOCH)  # self.starts: the first crops'
        rng = np.random.default_rng((self.seed, self.epoch, self.stream))
        self.starts = second_starts(self.starts, self.frames - self.crop + 1, self.min_shift, rng)


class AudioPairView(AudioView):
    """A second crop of the track, embedded by the audio view's CNN."""

    name, fields, input_field = PAIR_VIEW, (PAIR_VIEW,), PAIR_VIEW
    shares_encoder = "audio"

    def setup(self, train: SplitInfo) -> None:
        super().setup(train)
        span = train.n_frames - self.cfg.crop_frames + 1
        if span > 0 and 2 * self.cfg.aug_min_shift > span:
            raise ConfigError(
                f"config key 'aug_min_shift' is {self.cfg.aug_min_shift}, but the train split's "
                f"{train.n_frames}-frame tracks let two {self.cfg.crop_frames}-frame crops start "
                f"at most {span // 2} frames apart for every first crop"
            )

    def reader(self, path: str, info: SplitInfo, train: bool, fields: set[str]) -> FieldReader:
        self.check_frames(path, info)
        span = info.n_frames - self.cfg.crop_frames + 1
        if 2 * self.cfg.aug_min_shift > span:
            raise ValueError(f"{path}: {info.n_frames}-frame tracks are too short for crops "
                             f"'aug_min_shift' = {self.cfg.aug_min_shift} frames apart")
        augment = CropAugmentation.from_config(self.cfg)
        return SecondCropReader(info, self.cfg.crop_frames, train, self.cfg.seed, augment,
                                self.cfg.aug_min_shift)

    def encoder(self) -> nn.Module:
        raise TypeError("the audio2 view has no encoder: the audio view's embeds it "
                        "(shares_encoder)")
