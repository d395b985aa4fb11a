"""The playlist-tags view: the tags of the training playlists that hold a track."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..data.h5io import SplitInfo, read_ids
from ..data.tags import read_playlist_tags, tag_rows
from ..errors import ConfigError
from ..layout import PLAYLIST_TAGS, TAG_W2V
from ..settings import TrainConfig
from .vocabulary import VocabularyView


class TagsView(VocabularyView):
    """Playlist tags: the tags of the training playlists holding a track (top-N
    vocabulary of the training split; see tags.py, which writes playlist_tags.json)."""

    name, fields = "tags", ("tags_tokens", "tags_targets")
    input_field, target_field = "tags_tokens", "tags_targets"
    matrix_key, max_key = "tag_embedding_matrix_file", "max_tags"

    @classmethod
    def matrix_path(cls, cfg: TrainConfig) -> Path:
        return Path(cfg.tag_embedding_matrix_file or cfg.beside_train(TAG_W2V))

    def setup(self, train: SplitInfo) -> None:
        path = self.cfg.beside_train(PLAYLIST_TAGS)
        try:
            self.vocab, self.track_tags = read_playlist_tags(path)
        except (OSError, ValueError) as e:
            raise ConfigError(
                f"config key 'train_dataset_file': the tags view needs {path} "
                f"(written by scripts/create_dataset.py): {e}"
            ) from None
        super().setup(train)

    def vocab_size(self, train: SplitInfo) -> int:
        return len(self.vocab)

    def index_rows(self, path: str) -> Iterator[np.ndarray]:
        yield tag_rows(read_ids(path), self.track_tags)

    def model_args(self) -> dict[str, Any]:
        return {"n_tags": self.n_vocab}

