"""Views of a set of vocabulary items per track (genres, playlist tags): tokens for the
encoder, multi-hot targets for a head, a word2vec-initialised token table."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..data.h5io import SplitInfo
from ..errors import ConfigError
from ..model.metadata import GenreEncoder
from ..settings import TrainConfig
from .base import Batch, FieldReader, View


def genre_tokens(labels: np.ndarray, max_tokens: int = 10) -> np.ndarray:
    """(N, L) indices padded with -1 -> (N, max_tokens) int64 tokens: index + 1,
    0 = padding, real labels first in their stored order."""
    valid = labels >= 0
    order = np.argsort(~valid, axis=1, kind="stable")[:, :max_tokens]  # real labels first
    compact = np.take_along_axis(labels, order, axis=1).astype(np.int64)
    tokens = np.where(np.take_along_axis(valid, order, axis=1), compact + 1, 0)
    out = np.zeros((labels.shape[0], max_tokens), dtype=np.int64)
    out[:, : tokens.shape[1]] = tokens
    return out


class TokenReader(FieldReader):
    """Tokens (encoder input) and multi-hot (head target) of a vocabulary view, prepared
    for the whole split at construction from -1-padded index rows given in blocks."""

    def __init__(self, name: str, blocks: Iterator[np.ndarray], n_vocab: int, max_tokens: int, fields: set[str]):
        self.tokens_field, self.targets_field = f"{name}_tokens", f"{name}_targets"
        self.n_vocab = n_vocab
        tokens, labels = [], []
        for block in blocks:
            tokens.append(genre_tokens(block, max_tokens).astype(np.int16))
            # multi-hot needs every label, but only as many columns as are used
            k = max(1, int((block >= 0).sum(1).max(initial=0)))
            labels.append(-np.sort(-block, axis=1)[:, :k])  # real labels first
        width = max(b.shape[1] for b in labels)
        self.tokens = np.concatenate(tokens) if self.tokens_field in fields else None
        self.labels = None  # (N, most labels of any track) int16, -1 pad
        if self.targets_field in fields:
            self.labels = np.concatenate(
                [np.pad(b, ((0, 0), (0, width - b.shape[1])), constant_values=-1) for b in labels]
            ).astype(np.int16)

    def read(self, g: Any, index: int) -> Batch:
        item = {}
        if self.tokens is not None:
            item[self.tokens_field] = torch.from_numpy(self.tokens[index].astype(np.int64))
        if self.labels is not None:
            multi_hot = np.zeros(self.n_vocab, dtype=np.float32)
            row = self.labels[index]
            multi_hot[row[row >= 0]] = 1.0
            item[self.targets_field] = torch.from_numpy(multi_hot)
        return item


class VocabularyView(View):
    """A set of vocabulary items per track (genres, tags), encoded like the paper's genre
    view: word2vec-initialised token table + self-attention (or mean). Subclasses say
    where the vocabulary, the matrix and each split's index rows come from."""

    target_loss = "bce"
    matrix_key: ClassVar[str]  # config key of the word2vec matrix
    max_key: ClassVar[str]  # config key of the tokens per track

    @classmethod
    def matrix_path(cls, cfg: TrainConfig) -> Path:
        raise NotImplementedError

    @classmethod
    def encoder_files(cls, cfg: TrainConfig) -> dict[str, str]:
        return {cls.matrix_key: str(cls.matrix_path(cfg))}

    def vocab_size(self, train: SplitInfo) -> int:
        raise NotImplementedError

    def index_rows(self, path: str) -> Iterator[np.ndarray]:
        """(rows, L) -1-padded vocabulary indices of a split, in blocks."""
        raise NotImplementedError

    def setup(self, train: SplitInfo) -> None:
        self.matrix = None
        if self.name in (self.cfg.views or []):  # an encoder: starts from word2vec
            path = self.matrix_path(self.cfg)
            self.matrix = load_matrix(path, self.matrix_key)
        self.n_vocab = self.vocab_size(train)
        if self.matrix is not None:
            if self.matrix.shape[0] != self.n_vocab + 1:
                raise ConfigError(
                    f"config key '{self.matrix_key}': {path} has {self.matrix.shape[0]} rows, "
                    f"expected vocabulary size + 1 = {self.n_vocab + 1}"
                )

    def reader(self, path: str, info: SplitInfo, train: bool, fields: set[str]) -> FieldReader:
        return TokenReader(self.name, self.index_rows(path), self.n_vocab, getattr(self.cfg, self.max_key), fields)

    def encoder(self) -> nn.Module:
        return GenreEncoder(self.matrix, self.cfg.aggregation, self.cfg.num_heads)

    def head(self) -> nn.Module:
        return nn.Linear(128, self.n_vocab)


NOT_NPY = "not a plain NumPy .npy matrix (text and pickled files are refused)"


def load_matrix(path: Path, key: str) -> np.ndarray:
    """A word2vec matrix (n + 1, d) of finite numbers from a .npy file, never unpickled;
    anything else is a ConfigError naming the config key `key` and the file."""
    try:
        matrix = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        raise ConfigError(f"config key '{key}': {path}: {NOT_NPY}") from None
    if not isinstance(matrix, np.ndarray) or matrix.ndim != 2 or matrix.dtype.kind not in "fiu":
        raise ConfigError(f"config key '{key}': {path}: {NOT_NPY}")
    if not np.isfinite(matrix).all():
        raise ConfigError(f"config key '{key}': {path}: holds NaN/inf values")
    return matrix
