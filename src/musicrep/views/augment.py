"""The light augmentation of the audio-audio view's crops: gain, a smooth filter, noise.

Self-supervision (SimCLR, CLMR) contrasts two crops of the same track; without some
difference besides their position, the CNN could match them by level or timbre details
that say nothing about the music. Each crop is changed on its log-mel dB values
((frames, 48) as read from the split):

    gain    one offset in [-aug_gain_db, aug_gain_db] added to every bin (a louder or
            quieter recording)
    filter  a curve over the 48 bands, piecewise linear through FILTER_KNOTS evenly
            spaced knots each in [-aug_filter_db, aug_filter_db]: a spectral tilt with
            broad boosts and cuts, as an equaliser or another microphone would give
    noise   Gaussian, independent per time-frequency bin, its std drawn in
            [0, aug_noise_db]

The time shift is the crops' positions themselves (audio_pair.py). Every draw comes
from (seed, epoch, stream, track row) alone: the same seed gives the same tensors
whatever the number of DataLoader workers and after a resume. Validation draws from
epoch VAL_EPOCH, the same every epoch, so its loss is comparable across epochs.
Augmentation exists only in a run with the audio2 view (`first_crop_augmentation`):
every other config reads exactly the crops it read before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..settings import TrainConfig

PAIR_VIEW = "audio2"  # the audio-audio view (audio_pair.py), whose crops are augmented
FILTER_KNOTS = 5  # knots of the filter curve over the bands
# Streams: which crop a draw is for, so the two crops' draws are independent.
FIRST_CROP, SECOND_CROP = 1, 2
VAL_EPOCH = 0  # the draws of validation: training epochs count from 1


@dataclass(frozen=True)
class CropAugmentation:
    """Gain, filter and noise for log-mel crops, drawn per crop (module docstring)."""

    seed: int
    gain_db: float
    filter_db: float
    noise_db: float

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> CropAugmentation:
        return cls(cfg.seed, cfg.aug_gain_db, cfg.aug_filter_db, cfg.aug_noise_db)

    def __call__(self, crop: np.ndarray, epoch: int, stream: int, index: int) -> np.ndarray:
        """(frames, bands) float32 dB crop -> the augmented crop, same shape, float32."""
        rng = np.random.default_rng((self.seed, epoch, stream, index))
        frames, bands = crop.shape
        gain = rng.uniform(-self.gain_db, self.gain_db)  # ()
        knots = rng.uniform(-self.filter_db, self.filter_db, size=FILTER_KNOTS)  # (K,)
        at = np.linspace(0, bands - 1, FILTER_KNOTS)  # (K,) the knots' bands
        curve = np.interp(np.arange(bands), at, knots)  # (bands,)
        out = crop + (gain + curve).astype(np.float32)  # (frames, bands)
        if self.noise_db > 0:
            std = np.float32(rng.uniform(0.0, self.noise_db))
            out += std * rng.standard_normal((frames, bands), dtype=np.float32)  # (frames, bands)
        return out


def first_crop_augmentation(cfg: TrainConfig) -> CropAugmentation | None:
    """The augmentation of the `audio` view's training crop: only in a run with the audio2
    view (its pair's other crop) and `aug_first_crop`; None otherwise, so no other config
    changes."""
    if cfg.aug_first_crop and PAIR_VIEW in (cfg.views or []):
        return CropAugmentation.from_config(cfg)
    return None
