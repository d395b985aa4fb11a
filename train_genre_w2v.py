"""Pretrain the word2vec embeddings that initialise the genre (and the tags) encoder.

Options and exit codes: musicrep.cli.genre_w2v (`--help`).
"""

import sys

from musicrep.cli.genre_w2v import main

if __name__ == "__main__":
    sys.exit(main())
