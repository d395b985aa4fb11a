"""The encoders of the other views (Ferraro et al. 2021), each -> (B, 128):

    CFEncoder      CF vector (B, 301)     -> (B, 128)
    GenreEncoder   vocabulary tokens (B, k) -> (B, 128)  (self-attention or mean; the genre
                   and the playlist-tags views)
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .layers import EMBED_DIM


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
