"""Pretrain the word2vec embeddings that initialise the genre (and the tags) encoder.

    python train_genre_w2v.py --dataset-dir data/toy/dataset [--dim 128] [--seed 0]

Writes embedding_matrix_<dim>.npy next to the dataset's HDF5 files, and, when the
dataset has playlist_tags.json, tag_embedding_matrix_<dim>.npy for the tags view.

Exit status: 0 written; 2 a missing or malformed dataset file, or a dataset directory
that cannot be written (checked before training; one line); 1 writing failed (disk
full: one line naming the file); 130 Ctrl-C (one line). Each matrix is written under a
temporary name and renamed when complete.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data.genre_w2v import dataset_inputs, train_from_dataset
from ..errors import ConfigError
from ..io import write_error
from ..layout import tag_w2v_name
from .common import Parser, run

PROG = "train_genre_w2v"


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset-dir", required=True, help="output directory of scripts/create_dataset.py")
    p.add_argument("--dim", type=int, default=128, help="embedding size (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=100, help="word2vec passes; small corpora need many (default %(default)s)")
    a = p.parse_args(argv)
    if a.dim < 1 or a.epochs < 1 or a.seed < 0:
        p.error("--dim and --epochs must be >= 1 and --seed >= 0")
    return run(PROG, lambda: _train(a))


def _train(a: argparse.Namespace) -> int:
    dataset = Path(a.dataset_dir)
    try:
        dataset_inputs(dataset)
    except FileNotFoundError as e:
        raise ConfigError(str(e)) from None
    err = write_error(dataset)  # before the training, not after it
    if err is not None:
        raise ConfigError(f"--dataset-dir {dataset}: cannot write the embedding matrix "
                          f"there ({err.strerror or err})")
    print(f"{PROG}: training word2vec ({a.dim}-d, {a.epochs} epochs) on {dataset}",
          file=sys.stderr)
    try:
        out = train_from_dataset(dataset, a.dim, a.seed, a.epochs)
    except (FileNotFoundError, KeyError, ValueError) as e:
        raise ConfigError(str(e) if not isinstance(e, KeyError)
                          else f"{dataset}: missing key {e} in a dataset file") from None
    print(f"wrote {out}")
    tags = dataset / tag_w2v_name(a.dim)
    if tags.is_file():
        print(f"wrote {tags}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
