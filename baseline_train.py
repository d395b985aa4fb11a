"""Train a baseline: the audio CNN regresses CF vectors and/or classifies genres (MSE / BCE).

    python baseline_train.py CONFIG.json [--set key=value ...]

See musicrep.cli.train for options and exit codes, musicrep.training.config for the config keys.
"""

import sys

from musicrep.cli.train import main

if __name__ == "__main__":
    sys.exit(main("baseline_train.py"))
