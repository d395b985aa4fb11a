"""Train the audio CNN contrastively against CF vectors and genres at once (three NT-Xent terms).

    python train.py CONFIG.json [--set key=value ...]

See musicrep.cli.train for options and exit codes, musicrep.training.config for the config keys.
"""

import sys

from musicrep.cli.train import main

if __name__ == "__main__":
    sys.exit(main("train.py"))
