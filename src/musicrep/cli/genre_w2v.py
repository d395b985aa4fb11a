"""Pretrain the word2vec embeddings that initialise the genre (and the tags) encoder.

    python train_genre_w2v.py --dataset-dir data/toy/dataset [--dim 128] [--seed 0]

Writes embedding_matrix_<dim>.npy next to the dataset's HDF5 files, and, when the
dataset has playlist_tags.json, tag_embedding_matrix_<dim>.npy for the tags view.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data.genre_w2v import train_from_dataset
from ..layout import tag_w2v_name


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset-dir", required=True, help="output directory of scripts/create_dataset.py")
    p.add_argument("--dim", type=int, default=128, help="embedding size (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=100, help="word2vec passes; small corpora need many (default %(default)s)")
    a = p.parse_args(argv)
    try:
        out = train_from_dataset(a.dataset_dir, a.dim, a.seed, a.epochs)
    except (FileNotFoundError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    tags = Path(a.dataset_dir) / tag_w2v_name(a.dim)
    if tags.is_file():
        print(f"wrote {tags}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
