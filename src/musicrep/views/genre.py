"""The genre view (the paper's "gnr"): a track's genre codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..data.h5io import LABEL_BLOCK, SplitInfo, iter_labels, read_split_info
from ..errors import ConfigError
from ..settings import TrainConfig
from .vocabulary import NOT_NPY, VocabularyView


class GenreView(VocabularyView):
    name, fields = "genre", ("genre_tokens", "genre_targets")
    input_field, target_field = "genre_tokens", "genre_targets"
    matrix_key, max_key = "embedding_matrix_file", "max_genres"

    @classmethod
    def matrix_path(cls, cfg: TrainConfig) -> Path:
        return cfg.resolved_embedding_matrix()

    def vocab_size(self, train: SplitInfo) -> int:
        try:
            n = read_n_genres(self.cfg.resolved_id2tag(), self.matrix_path(self.cfg))
        except (OSError, ValueError, TypeError) as e:
            raise ConfigError(f"config key 'id2tag_file': cannot read the genre vocabulary: {e}") from None
        return n if n is not None else train.max_label + 1

    def index_rows(self, path: str) -> Iterator[np.ndarray]:
        info = read_split_info(path)
        if info.max_label >= self.n_vocab:
            raise ValueError(f"{path}: genre index {info.max_label} is outside the vocabulary of {self.n_vocab} genres")
        return iter_labels(path, LABEL_BLOCK)

    def model_args(self) -> dict[str, Any]:
        return {"n_genres": self.n_vocab}


def read_n_genres(id2tag_file: str | Path | None, embedding_matrix_file: str | Path | None) -> int | None:
    """Vocabulary size from genres.json / an id2tag file (list, {"codes": [...]} or
    {id: tag}) or from the embedding matrix rows - 1; None if neither is given."""
    if id2tag_file is not None:
        obj = json.loads(Path(id2tag_file).read_text())
        if isinstance(obj, dict) and "codes" in obj:
            return len(obj["codes"])
        return len(obj)
    if embedding_matrix_file is not None and Path(embedding_matrix_file).is_file():
        try:
            return int(np.load(embedding_matrix_file, mmap_mode="r", allow_pickle=False).shape[0]) - 1
        except (ValueError, IndexError):
            raise ValueError(f"{embedding_matrix_file}: {NOT_NPY}") from None
    return None
