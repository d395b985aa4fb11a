"""Build the HDF5 train/val/test splits, CF vectors and side files from a Melon directory.

Options and exit codes: musicrep.cli.create_dataset (`--help`).
"""

import sys

from musicrep.cli.create_dataset import main

if __name__ == "__main__":
    sys.exit(main())
