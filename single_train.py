"""Train the audio CNN contrastively against one other view: CF vectors (MF) or genres (gnr).

    python single_train.py CONFIG.json [--set key=value ...]

See musicrep.cli.train for options and exit codes, musicrep.training.config for the config keys.
"""

import sys

from musicrep.cli.train import main

if __name__ == "__main__":
    sys.exit(main("single_train.py"))
