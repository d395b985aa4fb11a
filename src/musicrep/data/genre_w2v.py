"""Genre word2vec: the initial embedding table of the genre encoder.

Sentences are the genre baskets of the training tracks (each track's major and detail
codes, in label order). We use track baskets rather than playlists' genre sets because
the genre encoder is the *metadata* view of a track: building it from playlists would
leak co-occurrence (the CF view) into it and blur the two modalities the method keeps
apart. Only training tracks are used, so validation and test labels stay unseen.

Output `embedding_matrix_128.npy`: (n_genres + 1, dim) float32, row 0 zeros (padding),
row i + 1 = the vector of genre index i of the dataset's vocabulary (genres.json).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .h5io import read_labels
from .tags import train_tag_embeddings_from_dataset
from .word2vec import train_token_embeddings
from ..layout import GENRES, genre_w2v_name, split_file
from ..io import write_npy


def genre_sentences(labels: np.ndarray) -> list[list[str]]:
    """(N, 100) -1-padded label rows -> one sentence of genre indices (as words) per track."""
    return [[str(int(i)) for i in row[row >= 0]] for row in labels]


def train_genre_embeddings(
    labels: np.ndarray, n_genres: int, dim: int = 128, seed: int = 0, epochs: int = 100
) -> np.ndarray:
    """Word2vec over the label rows; returns the (n_genres + 1, dim) matrix, row 0 zeros.

    Genres that never occur in `labels` keep zero rows. Deterministic for a seed (one
    worker thread and a stable hash).
    """
    return train_token_embeddings(genre_sentences(labels), n_genres, dim, seed, epochs, "genre label")


def dataset_inputs(dataset_dir: Path) -> tuple[Path, Path]:
    """(genres.json, train.h5) of a dataset directory; FileNotFoundError naming the
    first one missing (so a command can check before it starts the training)."""
    dataset_dir = Path(dataset_dir)
    genres_file, train_file = dataset_dir / GENRES, dataset_dir / split_file("train")
    for f in (genres_file, train_file):
        if not f.is_file():
            raise FileNotFoundError(f"{f}: not found (run scripts/create_dataset.py first)")
    return genres_file, train_file


def train_from_dataset(dataset_dir: Path, dim: int = 128, seed: int = 0, epochs: int = 100) -> Path:
    """Train on `train.h5` of a dataset directory and save the matrix next to it."""
    dataset_dir = Path(dataset_dir)
    genres_file, train_file = dataset_inputs(dataset_dir)
    n_genres = len(json.loads(genres_file.read_text())["codes"])
    _, labels = read_labels(train_file)
    if labels.max(initial=-1) >= n_genres:
        raise ValueError(f"{train_file}: label index {labels.max()} is outside the "
                         f"{n_genres}-genre vocabulary of {genres_file}")
    matrix = train_genre_embeddings(labels, n_genres, dim, seed, epochs)
    out = dataset_dir / genre_w2v_name(dim)
    write_npy(out, matrix)
    # the tags view's sibling matrix
    train_tag_embeddings_from_dataset(dataset_dir, dim, seed, epochs)
    return out
