"""The networks of Ferraro et al. (2021): one audio CNN and the encoders/heads it is
trained against.

    AudioEncoder   mel crop (B, 1, 48, 256) -> z (B, 1024), z_d (B, 128)
    CFEncoder      CF vector (B, 301)       -> (B, 128)
    GenreEncoder   genre tokens (B, 10)     -> (B, 128)   (self-attention or mean)
    MultiModalModel  encoders by view name + heads: the container the trainer
                     optimises (and wraps in DDP); views.py builds it

The AudioEncoder's parameter names are those of the original code, so the authors'
published `audio_encoder.pt` files (plain state dicts) load with `strict=True`;
`checkpoint.load_audio_encoder` reads those and this project's checkpoints alike.

Input layout. A crop comes off disk as (frames=256, bands=48). The original trainers
turn it into the CNN's (48, 256) input with a plain reshape, which interleaves time
and frequency; the published checkpoints were trained that way and must be fed the
same way. New training uses the transpose. The choice travels with the model
(`AudioEncoder.input_layout`) and is saved in checkpoints and config.json.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..audio import INPUT_LAYOUTS

EMBED_DIM = 128

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


class CFEncoder(nn.Module):
    """Collaborative-filtering vector (B, cf_dim) -> (B, 128)."""

    def __init__(self, cf_dim: int = 301, dim: int = EMBED_DIM, dropout: float = 0.3):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(cf_dim, dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(dim, dim),
            nn.LayerNorm(dim),
        )

    def forward(self, cf: torch.Tensor) -> torch.Tensor:
        return self.net(cf)  # (B, 128)


class GenreEncoder(nn.Module):
    """Genre tokens (B, T<=10), index+1 with 0 = padding -> (B, 128).

    The token table starts from the genre word2vec matrix (row 0 = padding) and is
    fine-tuned. Parameter names and shapes are the original's (`embeddings`, `w_qs`,
    `w_ks`, `w_vs`, `fc`, `layer_norm`), so its saved tag encoders load with strict=True.

    aggregation "self" (the paper's), as the original: H heads of d_k = d_v = 128 each
    (not d_model / H), Q/K/V and output projections without biases, padding keys
    masked, dropout on the attention weights and on the projected outputs, LayerNorm
    (eps 1e-6). One deliberate difference: the original sums the outputs of all T
    positions, padding included, so a track's embedding depends on how many padding
    slots it has; here only its real tokens are summed.
    "mean": a bias-free projection of each token, averaged over the real tokens,
    dropout, LayerNorm (the original keeps the table frozen there; here it is tuned).
    """

    def __init__(
        self,
        embedding_matrix: np.ndarray | torch.Tensor,
        aggregation: str = "self",
        num_heads: int = 4,
        d_k: int = 128,
        dropout: float = 0.1,
    ):
        super().__init__()
        weights = torch.as_tensor(np.asarray(embedding_matrix), dtype=torch.float32)
        if weights.dim() != 2 or weights.shape[0] < 2:
            raise ValueError(
                f"embedding matrix must be (n_genres + 1, d), got {tuple(weights.shape)}"
            )
        self.aggregation = aggregation
        self.embeddings = nn.Embedding.from_pretrained(weights, freeze=False, padding_idx=0)
        d_model = weights.shape[1]
        if aggregation == "self":
            self.num_heads, self.d_k = num_heads, d_k
            self.w_qs = nn.Linear(d_model, num_heads * d_k, bias=False)
            self.w_ks = nn.Linear(d_model, num_heads * d_k, bias=False)
            self.w_vs = nn.Linear(d_model, num_heads * d_k, bias=False)
            self.fc = nn.Linear(num_heads * d_k, EMBED_DIM, bias=False)
            self.attn_dropout = nn.Dropout(dropout)
        elif aggregation == "mean":
            self.fc = nn.Linear(d_model, EMBED_DIM, bias=False)
        else:
            raise ValueError(f"aggregation must be 'self' or 'mean', got {aggregation!r}")
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(EMBED_DIM, eps=1e-6)

    def attend(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Self-attention ("self"): x (B, T, d), mask (B, T) True for real tokens ->
        (per-token outputs (B, T, 128), attention weights (B, H, T, T) after dropout)."""
        b, t, _ = x.shape
        h, d = self.num_heads, self.d_k
        q = self.w_qs(x).view(b, t, h, d).transpose(1, 2)  # (B, H, T, d_k)
        k = self.w_ks(x).view(b, t, h, d).transpose(1, 2)  # (B, H, T, d_k)
        v = self.w_vs(x).view(b, t, h, d).transpose(1, 2)  # (B, H, T, d_v)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d)  # (B, H, T, T)
        # A finite fill (not -inf) keeps tracks without any genre free of NaNs; their
        # outputs are discarded by the token mask afterwards anyway.
        att = att.masked_fill(~mask[:, None, None, :], torch.finfo(att.dtype).min)
        att = self.attn_dropout(att.softmax(dim=-1))  # training: drops query-key links
        y = (att @ v).transpose(1, 2).reshape(b, t, h * d)  # (B, T, H*d_v)
        return self.dropout(self.fc(y)), att  # (B, T, 128), (B, H, T, T)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # tokens: (B, T) int64
        mask = tokens > 0  # (B, T)
        x = self.embeddings(tokens)  # (B, T, d)
        keep = mask.unsqueeze(-1).to(x.dtype)  # (B, T, 1)
        if self.aggregation == "self":
            y = (self.attend(x, mask)[0] * keep).sum(1)  # (B, 128): real tokens only
        else:
            y = self.dropout((self.fc(x) * keep).sum(1) / keep.sum(1).clamp(min=1))  # (B, 128)
        return self.layer_norm(y)  # (B, 128)


class MultiModalModel(nn.Module):
    """Everything one training configuration optimises, in one module (one optimizer,
    one DDP wrapper, one state dict per part in checkpoints).

    encoders  view name -> encoder ("audio" first); `embed[view](encoder, batch)` runs it
    heads     target view name -> head on the audio embedding (baselines)

    forward(batch) -> {view: (B, 128) embedding} plus {f"{target}_head": (B, dim)}.
    Parts (checkpoint names): the view names and "<target>_head".
    """

    def __init__(
        self,
        encoders: dict[str, nn.Module],
        heads: dict[str, nn.Module],
        embed: dict[str, Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor]],
    ):
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.heads = nn.ModuleDict(heads)
        self.embed = embed  # how each view feeds its encoder from the batch

    @property
    def audio(self) -> AudioEncoder:
        return self.encoders["audio"]

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {v: self.embed[v](enc, batch) for v, enc in self.encoders.items()}  # (B, 128) each
        for target, head in self.heads.items():
            out[f"{target}_head"] = head(out["audio"])  # (B, target dim)
        return out

    def parts(self) -> dict[str, nn.Module]:
        return {**self.encoders, **{f"{t}_head": h for t, h in self.heads.items()}}

    def part_state_dicts(self) -> dict[str, dict[str, torch.Tensor]]:
        """{"audio": ..., "cf": ..., "cf_head": ...}: one plain state dict per part."""
        return {name: part.state_dict() for name, part in self.parts().items()}

    def load_part_state_dicts(self, parts: dict[str, dict[str, torch.Tensor]]) -> None:
        """Load every part strictly; ValueError (one line) naming the part that does not fit."""
        own = self.parts()
        if set(parts) != set(own):
            raise ValueError(f"checkpoint holds parts {sorted(parts)}, model has {sorted(own)}")
        for name, sd in parts.items():
            expected = set(own[name].state_dict())
            if set(sd) != expected:
                raise ValueError(_part_mismatch(name, set(sd), expected))
            try:
                own[name].load_state_dict(sd, strict=True)
            except RuntimeError as e:  # shapes: the first line says only "Error(s) in loading"
                detail = " ".join(str(e).split("\n")[1:]).strip() or str(e)
                raise ValueError(f"part '{name}': {detail}") from None


# Keys of the genre/tags encoder before it took the original's bias-free layout.
_OLD_GENRE_KEYS = ("attention.q.weight", "proj.weight")


def _part_mismatch(name: str, got: set[str], expected: set[str]) -> str:
    """One line on why a saved part's keys differ from the model's."""
    if any(k in got for k in _OLD_GENRE_KEYS) and "embedding.weight" in got:
        return (f"part '{name}' was saved by an earlier musicrep whose genre encoder had biased "
                "Q/K/V/output projections (keys 'attention.*', 'embedding.*', 'norm.*'); this "
                "version has the original's bias-free layout, which cannot continue it: train anew")
    extra, missing = sorted(got - expected), sorted(expected - got)
    return (f"part '{name}' does not match this model: unexpected keys {extra[:3]}, "
            f"missing keys {missing[:3]}")


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
