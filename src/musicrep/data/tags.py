"""The playlist-tags view's data: which tags each track has, and their word2vec.

A track's tags are the tags of the *training* playlists (Melon's train.json) that hold
it; nothing from val.json/test.json playlists is used. The vocabulary is the N most
frequent tags over the tracks of the training split (each track counts a tag once), so
validation and test tracks shape nothing. Tracks of the train and val splits get their
tags (test tracks are cold-start, as for CF). Within a track, tags are in vocabulary
order (most frequent first), so a track with more than `max_tags` keeps its most common.

    playlist_tags.json  {"tags": [tag, ...], "tracks": {"<id>": [index, ...]},
                         "playlists": "train.json", "vocabulary_split": "train"}
    tag_embedding_matrix_128.npy  (n_tags + 1, 128), row 0 zeros: the encoder's start

create_dataset writes the first (`write_playlist_tags`); train_genre_w2v.py the second.
Datasets made without them still train the paper's six configurations.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from ..io import write_json, write_npy
from .h5io import read_ids
from .word2vec import train_token_embeddings
from .melon import TRAIN_PLAYLISTS, Playlist
from ..layout import PLAYLIST_TAGS, split_file, tag_w2v_name

N_VIEW_TAGS = 100  # vocabulary size of the tags view


def write_playlist_tags(out: Path, playlists: list[Playlist], split_of: dict[int, str], n_tags: int = N_VIEW_TAGS) -> dict:
    """Write `out/playlist_tags.json` (see the module docstring); returns its content."""
    tags_of: dict[int, set[str]] = {t: set() for t, s in split_of.items() if s != "test"}
    for pl in playlists:
        if pl.source != TRAIN_PLAYLISTS:
            continue
        for song in pl.songs:
            if song in tags_of:
                tags_of[song].update(pl.tags)
    count = Counter(tag for t, tags in tags_of.items() if split_of[t] == "train" for tag in tags)
    vocab = [t for t, _ in sorted(count.items(), key=lambda kv: (-kv[1], kv[0]))[:n_tags]]
    index = {t: i for i, t in enumerate(vocab)}
    content = {
        "tags": vocab,
        "tracks": {str(t): sorted(index[x] for x in tags if x in index) for t, tags in sorted(tags_of.items())},
        "playlists": TRAIN_PLAYLISTS,
        "vocabulary_split": "train",
    }
    write_json(out / PLAYLIST_TAGS, content, indent=None)
    return content


def read_playlist_tags(path: Path) -> tuple[list[str], dict[int, list[int]]]:
    """(vocabulary, {track id: [tag index, ...]}) of a playlist_tags.json."""
    obj = json.loads(Path(path).read_text())
    if not isinstance(obj, dict) or not isinstance(obj.get("tags"), list) or not isinstance(obj.get("tracks"), dict):
        raise ValueError(f"{path}: expected an object with 'tags' (list) and 'tracks' (object)")  # noqa: TRY004
    vocab = obj["tags"]
    if not vocab:
        raise ValueError(f"{path}: the tag vocabulary is empty (no training playlist has tags)")
    tracks = {int(k): [int(i) for i in v] for k, v in obj["tracks"].items()}
    bad = [i for v in tracks.values() for i in v if not 0 <= i < len(vocab)]
    if bad:
        raise ValueError(f"{path}: tag index {bad[0]} is outside the {len(vocab)}-tag vocabulary")
    return vocab, tracks


def tag_rows(ids: np.ndarray, track_tags: dict[int, list[int]]) -> np.ndarray:
    """(N,) track ids -> (N, W) int16 tag indices, -1 padded (no tags: all -1)."""
    rows = [track_tags.get(int(t), []) for t in ids]
    out = np.full((len(rows), max([1, *map(len, rows)])), -1, dtype=np.int16)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def train_tag_embeddings_from_dataset(dataset_dir: Path, dim: int = 128, seed: int = 0, epochs: int = 100) -> Path | None:
    """Word2vec over the training tracks' tag sets -> tag_embedding_matrix_<dim>.npy;
    None when the dataset has no playlist_tags.json (made before the tags view)."""
    dataset_dir = Path(dataset_dir)
    if not (dataset_dir / PLAYLIST_TAGS).is_file():
        return None
    if not json.loads((dataset_dir / PLAYLIST_TAGS).read_text()).get("tags"):
        print(f"note: {dataset_dir / PLAYLIST_TAGS}: no training playlist has tags; no tag word2vec", file=sys.stderr)
        return None
    vocab, tracks = read_playlist_tags(dataset_dir / PLAYLIST_TAGS)
    rows = tag_rows(read_ids(dataset_dir / split_file("train")), tracks)
    matrix = train_token_embeddings([[str(i) for i in r[r >= 0]] for r in rows], len(vocab), dim, seed, epochs)
    out = dataset_dir / tag_w2v_name(dim)
    write_npy(out, matrix)
    return out
