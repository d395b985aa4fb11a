"""The dataset directory and the corpus directory: every file name, in one place (a
torch-free leaf).

A dataset directory is what `create_dataset` writes (and `train_genre_w2v` adds to);
every later step finds its files through `DatasetLayout`. A corpus directory (the Melon
layout) may hold `GENERATED_MARKER`, written by this project's generators, so that each
later step can say the data is generated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "val", "test")

# Written by the corpus generators into the corpus (Melon) directory; copied into the
# dataset's manifest by create_dataset.
GENERATED_MARKER = "generated.json"
TRUTH_FILE = "generated_truth.json"  # the generator's planted labels (song_mood, ...)
# Written by import_audio into the corpus (Melon) directory: id,track_id,path, the integer
# id of each of the collection's own track ids (what the dataset's splits.json lists).
TRACK_IDS = "track_ids.csv"



def genre_w2v_name(dim: int = 128) -> str:
    """The genre word2vec matrix of `dim` dimensions (train_genre_w2v.py --dim)."""
    return f"embedding_matrix_{dim}.npy"


def tag_w2v_name(dim: int = 128) -> str:
    """The playlist-tag word2vec matrix of `dim` dimensions."""
    return f"tag_embedding_matrix_{dim}.npy"


GENRES = "genres.json"
GENRE_W2V = genre_w2v_name()
PLAYLIST_TAGS = "playlist_tags.json"  # the playlist-tags view's tokens
TAG_W2V = tag_w2v_name()
DERIVED_FILES = ("embedding_matrix_*.npy",)  # other --dim matrices: replaced with a rebuild
MANIFEST = "manifest.json"
SPLITS_FILE = "splits.json"
CF_PLAYLISTS = "cf_playlists.npy"
CF_PLAYLIST_IDS = "cf_playlist_ids.npy"
CONTINUATION = "continuation.json"
TRACK_TAGS = "track_tags.json"
POPULARITY = "popularity.json"
SKIPPED = "skipped.json"


def split_file(split: str) -> str:
    """`train.h5`, `val.h5` or `test.h5`."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return f"{split}.h5"


# Everything create_dataset writes (a rebuild replaces all of them together).
OUTPUT_FILES = (
    *(split_file(s) for s in SPLITS), GENRES, SPLITS_FILE, CF_PLAYLISTS, CF_PLAYLIST_IDS,
    CONTINUATION, TRACK_TAGS, POPULARITY, SKIPPED, GENRE_W2V, MANIFEST, PLAYLIST_TAGS, TAG_W2V,
)


@dataclass(frozen=True)
class DatasetLayout:
    """Paths of one dataset directory's files."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def split(self, name: str) -> Path:
        return self.root / split_file(name)

    @property
    def genres(self) -> Path:
        return self.root / GENRES

    @property
    def genre_w2v(self) -> Path:
        return self.root / GENRE_W2V

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def track_tags(self) -> Path:
        return self.root / TRACK_TAGS

    @property
    def playlist_tags(self) -> Path:
        return self.root / PLAYLIST_TAGS

    @property
    def tag_w2v(self) -> Path:
        return self.root / TAG_W2V

    def file(self, name: str) -> Path:
        """Any other file of the layout by its name constant (e.g. ``layout.CONTINUATION``)."""
        if name not in OUTPUT_FILES and name != TRUTH_FILE:
            raise ValueError(f"{name!r} is not a file of the dataset layout")
        return self.root / name


def corpus_dirs(manifest: dict | None, dataset_dir: Path | None = None) -> list[Path]:
    """Where the corpus a dataset was built from may be: the manifest's
    ``source.melon_dir`` (or a plain string ``source``, older manifests), as given and
    relative to the dataset directory; [] when the manifest names none."""
    src = (manifest or {}).get("source")
    corpus = src.get("melon_dir") if isinstance(src, dict) else src
    if not (isinstance(corpus, str) and corpus):
        return []
    return [Path(corpus)] + ([Path(dataset_dir) / corpus] if dataset_dir else [])


def corpus_origin(manifest: dict | None, dataset_dir: Path | None = None) -> tuple[str, dict | None]:
    """Where a dataset's tracks come from, by its manifest (create_dataset's
    `manifest.json`): ("generated", the generator's record), ("real", None) or
    ("unknown", None). The one rule every step uses.

    The manifest's ``source.generated`` decides; an older manifest (``source`` the corpus
    directory as given, or no flag) falls back to `GENERATED_MARKER` in that corpus
    directory (as given, or relative to the dataset directory).
    """
    src = (manifest or {}).get("source")
    if isinstance(src, dict) and isinstance(src.get("generated"), bool):
        return ("generated", src.get("generator")) if src["generated"] else ("real", None)
    for c in corpus_dirs(manifest, dataset_dir):
        marker = c / GENERATED_MARKER
        if marker.is_file():
            try:
                record = json.loads(marker.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                record = None
            return "generated", record
    return "unknown", None
