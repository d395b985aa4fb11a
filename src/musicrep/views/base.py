"""Views: the modalities of a track, each one small unit.

A view has a name, the batch fields it produces, how those fields are read from a
split file (a `FieldReader`, built once per split), its encoder (-> (B, 128)) and,
for baselines, a head target (a field the audio embedding is trained to predict).

    view    fields                            encoder                 head target
    audio   audio (crop_frames, 48)           AudioEncoder (the CNN)  -
    cf      cf (cf_dim,), cf_known ()         CFEncoder               cf, MSE
    genre   genre_tokens (max_genres,),       GenreEncoder            genre_targets, BCE
            genre_targets (n_genres,)
    tags    tags_tokens (max_tags,),          GenreEncoder on tags    tags_targets, BCE
            tags_targets (n_tags,)

A view whose data some tracks lack names a `mask_field`: a per-track bool, False where
the track has none (cf_known: train/val tracks in no training playlist have an all-zero
CF vector). The objectives leave such tracks out of that view's loss terms.

Adding a modality = one View subclass here (plus whatever writes its data), registered
in VIEWS; the config names it in `views`/`targets`, and the model, the objectives, the
dataset and the Trainer pick it up from there (docs/extending.md).

Build order. `build_model` constructs the other encoders, then the heads, then the
audio CNN: the order the original layout of this project drew its initial weights in,
so the paper's six configurations start from exactly the same weights as before.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..settings import TrainConfig
from ..data.h5io import CF_DATA, CF_KNOWN, DATA, LABEL_BLOCK, SplitInfo, iter_labels, read_cf_known, read_ids, read_split_info
from ..model.encoders import AudioEncoder, CFEncoder, GenreEncoder, MultiModalModel
from ..data.tags import read_playlist_tags, tag_rows
from ..layout import PLAYLIST_TAGS, TAG_W2V

Batch = dict[str, torch.Tensor]


# ------------------------------------------------------------------ readers ---------
class FieldReader:
    """Reads one view's fields of one track of one split (prepared per split)."""

    def set_epoch(self, epoch: int) -> None:
        """Called before each epoch (training crops change per epoch)."""

    def read(self, g: Any, index: int) -> Batch:  # g: the open file's `dataset` group
        raise NotImplementedError


class CropReader(FieldReader):
    """audio: a `crop_frames` crop of the mel, drawn from (seed, epoch) for the whole
    split when training (so workers and resumes see the same crops), centred otherwise."""

    def __init__(self, info: SplitInfo, crop_frames: int, train: bool, seed: int):
        self.n, self.frames, self.crop = info.n_tracks, info.n_frames, crop_frames
        self.train, self.seed = train, seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        if not self.train:
            self.starts = np.full(self.n, (self.frames - self.crop) // 2, dtype=np.int64)
        else:
            span = self.frames - self.crop + 1
            self.starts = np.random.default_rng((self.seed, epoch)).integers(0, span, size=self.n)

    def read(self, g: Any, index: int) -> Batch:
        s = int(self.starts[index])
        crop = g[DATA][index, s : s + self.crop]  # (crop_frames, 48): only these rows read
        return {"audio": torch.from_numpy(np.asarray(crop, dtype=np.float32))}


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


# ------------------------------------------------------------------ views -----------
class View:
    """Base class. `setup` reads what the view needs from the train split (sizes,
    vocabularies) once per run; the rest uses it. Errors are ConfigErrors naming a key."""

    name: ClassVar[str]
    fields: ClassVar[tuple[str, ...]]  # every field it can produce
    input_field: ClassVar[str]  # what its encoder reads
    target_field: ClassVar[str | None] = None  # what a baseline head predicts
    target_loss: ClassVar[str] = "mse"  # "mse" | "bce"
    mask_field: ClassVar[str | None] = None  # (B,) bool: False where a track lacks this view

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg

    @classmethod
    def encoder_files(cls, cfg: TrainConfig) -> dict[str, str]:
        """{config key: path} of files its encoder starts from (checked by load_config)."""
        return {}

    def setup(self, train: SplitInfo) -> None:
        pass

    def reader(self, path: str, info: SplitInfo, train: bool, fields: set[str]) -> FieldReader:
        raise NotImplementedError

    def encoder(self) -> nn.Module:
        raise NotImplementedError

    def embed(self, encoder: nn.Module, batch: Batch) -> torch.Tensor:
        return encoder(batch[self.input_field])  # (B, 128)

    def head(self) -> nn.Module:
        raise ConfigError(f"config key 'targets': the {self.name} view has no head target")

    def model_args(self) -> dict[str, Any]:
        """Sizes saved with checkpoints (what rebuilding the parts needs)."""
        return {}


class AudioView(View):
    name, fields, input_field = "audio", ("audio",), "audio"

    def setup(self, train: SplitInfo) -> None:
        self.channels_last = self.cfg.channels_last

    def reader(self, path: str, info: SplitInfo, train: bool, fields: set[str]) -> FieldReader:
        if info.n_frames < self.cfg.crop_frames:
            raise ValueError(
                f"{path}: tracks have {info.n_frames} frames, fewer than the {self.cfg.crop_frames}-frame crop"
            )
        return CropReader(info, self.cfg.crop_frames, train, self.cfg.seed)

    def encoder(self) -> nn.Module:
        enc = AudioEncoder(self.cfg.width, self.cfg.input_layout)
        if self.cfg.channels_last:  # ~1.4x faster training on CPU (bench/README.md)
            enc.to(memory_format=torch.channels_last)
        return enc

    def embed(self, encoder: nn.Module, batch: Batch) -> torch.Tensor:
        x = encoder.to_input(batch["audio"])  # (B, 1, 48, 256)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return encoder(x)[1]  # z_d: (B, 128)

    def model_args(self) -> dict[str, Any]:
        return {"width": self.cfg.width, "input_layout": self.cfg.input_layout}


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
        # head on the layer-normed embedding outputs std ~0.6; starting at zero spares
        # the first few hundred steps that would otherwise only shrink the head.
        head = nn.Linear(128, self.cf_dim)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        return head

    def model_args(self) -> dict[str, Any]:
        return {"cf_dim": self.cf_dim}


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


VIEWS: dict[str, type[View]] = {v.name: v for v in (AudioView, CFView, GenreView, TagsView)}


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


def make_views(cfg: TrainConfig, train: SplitInfo) -> dict[str, View]:
    """Every view the run reads (encoders' and heads' targets), set up on the train split."""
    views = {name: VIEWS[name](cfg) for name in ["audio", *cfg.all_views]}
    for view in views.values():
        view.setup(train)
    return views


def build_model(views: dict[str, View], encoders: list[str], targets: list[str]) -> MultiModalModel:
    """The encoders of `encoders` and one head per target on the audio embedding."""
    others = {v: views[v].encoder() for v in encoders if v != "audio"}
    heads = {t: views[t].head() for t in targets}
    audio = views["audio"].encoder()  # last: see the module docstring
    embed = {v: views[v].embed for v in ["audio", *others]}
    return MultiModalModel({"audio": audio, **others}, heads, embed)


def model_args(views: dict[str, View]) -> dict[str, Any]:
    return {k: v for view in views.values() for k, v in view.model_args().items()}
