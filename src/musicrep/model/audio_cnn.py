"""The audio CNN of Ferraro et al. (2021): a mel crop (B, 1, 48, 256) -> z (B, 1024 x
width), z_d (B, 128).

Its parameter names are those of the original code, so the authors' published
`audio_encoder.pt` files (plain state dicts) load with `strict=True`;
`training.checkpoint.load_audio_encoder` reads those and this project's checkpoints alike.

Input layout. A crop comes off disk as (frames=256, bands=48). The original trainers
turn it into the CNN's (48, 256) input with a plain reshape, which interleaves time
and frequency; the published checkpoints were trained that way and must be fed the
same way. New training uses the transpose. The choice travels with the model
(`AudioEncoder.input_layout`) and is saved in checkpoints and config.json.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..audio import INPUT_LAYOUTS
from .layers import EMBED_DIM

# (out_channels, max-pool kernel) of the seven conv blocks, at width 1.0.
# Pools shrink (48, 256) -> (24,128) -> (12,64) -> (6,32) -> (3,16) -> (3,8) -> (3,4) -> (1,2).
CONV_BLOCKS: tuple[tuple[int, tuple[int, int]], ...] = (
    (128, (2, 2)),
    (128, (2, 2)),
    (256, (2, 2)),
    (256, (2, 2)),
    (256, (1, 2)),
    (256, (1, 2)),
    (512, (2, 2)),
)



def scaled_channels(channels: int, width: float) -> int:
    """Conv channels at a width multiplier (at least 1)."""
    return max(1, round(channels * width))


def crop_to_input(crop: torch.Tensor, layout: str = "transpose") -> torch.Tensor:
    """Turn mel crops (B, frames, bands) as stored on disk into CNN input (B, 1, bands, frames).

    "transpose" swaps the axes (correct). "reference" is the original code's plain
    reshape of the same memory to (bands, frames), which mixes time and frequency; only
    use it for models trained that way (the published checkpoints).
    """
    if crop.dim() != 3:
        raise ValueError(f"expected a (B, frames, bands) crop, got shape {tuple(crop.shape)}")
    b, t, f = crop.shape
    if layout == "transpose":
        return crop.transpose(1, 2).unsqueeze(1)  # (B, 1, bands, frames)
    if layout == "reference":
        return crop.reshape(b, 1, f, t)  # (B, 1, bands, frames), values interleaved
    raise ValueError(f"input_layout must be one of {INPUT_LAYOUTS}, got {layout!r}")


class ConvBlock(nn.Module):
    """Conv 3x3 -> BatchNorm -> ReLU -> MaxPool. Attribute names match the original."""

    def __init__(self, c_in: int, c_out: int, pool: tuple[int, int]):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)
        self.bn = nn.BatchNorm2d(c_out)
        self.pool = nn.MaxPool2d(pool)  # no parameters, so no state-dict keys

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.relu(self.bn(self.conv(x))))


class AudioEncoder(nn.Module):
    """The paper's CNN. `AudioEncoder()` is exactly the published model (3,989,762 params).

    `width` scales the conv channels (for small, fast models in tests and on CPU);
    the head keeps its 512 hidden units and 128-d output at every width.
    """

    def __init__(self, width: float = 1.0, input_layout: str = "transpose"):
        super().__init__()
        if input_layout not in INPUT_LAYOUTS:
            raise ValueError(f"input_layout must be one of {INPUT_LAYOUTS}, got {input_layout!r}")
        if not width > 0:
            raise ValueError(f"width must be > 0, got {width}")
        self.width = float(width)
        self.input_layout = input_layout
        layers: list[nn.Module] = [nn.BatchNorm2d(1)]  # learned input normalisation
        c_in = 1
        for c, pool in CONV_BLOCKS:
            c_out = scaled_channels(c, width)
            layers.append(ConvBlock(c_in, c_out, pool))
            c_in = c_out
        self.audio_encoder = nn.Sequential(*layers)
        self.z_dim = c_in * 1 * 2  # the last block leaves (C, 1, 2)
        self.fc_audio = nn.Sequential(
            nn.Linear(self.z_dim, 512),  # 0
            nn.BatchNorm1d(512),  # 1
            nn.ReLU(),  # 2
            nn.Dropout(0.5),  # 3
            nn.Linear(512, EMBED_DIM),  # 4
            nn.LayerNorm(EMBED_DIM, eps=1e-6),  # 5
        )

    def to_input(self, crop: torch.Tensor) -> torch.Tensor:
        """(B, 256 frames, 48 bands) crop -> (B, 1, 48, 256) in this model's layout."""
        return crop_to_input(crop, self.input_layout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # x: (B, 1, 48, 256)
        h = self.audio_encoder(x)  # (B, 512, 1, 2) at width 1
        z = h.flatten(1)  # (B, 1024)
        z_d = self.fc_audio(z)  # (B, 128)
        return z, z_d

    def encode(self, crop: torch.Tensor) -> torch.Tensor:
        """Convenience for evaluation: (B, frames, bands) crops -> (B, 128) embeddings."""
        return self(self.to_input(crop))[1]


def fold_batchnorm(encoder: nn.Module) -> nn.Module:
    """An inference copy of ``encoder`` with each conv block's BatchNorm folded into its conv.

    In eval mode a BatchNorm is a fixed per-channel affine map, so it can live in the
    preceding conv's weights and bias (torch's ``fuse_conv_bn_eval``). On CPU the
    BatchNorm pass over the large early feature maps costs about a quarter of encoding
    time at width 0.25 (bench/README, "BatchNorm folded for inference"); folded, the
    outputs agree to float rounding (about 1e-6). The given encoder is left as it is
    (it may still be trained); anything other than an ``AudioEncoder`` is returned
    unchanged.
    """
    if not isinstance(encoder, AudioEncoder) or encoder.training:
        return encoder
    folded = copy.deepcopy(encoder)
    for block in folded.audio_encoder:
        if isinstance(block, ConvBlock):
            block.conv = fuse_conv_bn_eval(block.conv, block.bn)
            block.bn = nn.Identity()
    return folded


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
