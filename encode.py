#!/usr/bin/env python
"""Embed audio files, or the tracks of a dataset split, with a trained encoder.

Usage and options: musicrep.cli.encode (also installed as `musicrep-encode`).
"""

import sys

from musicrep.cli.encode import main

if __name__ == "__main__":
    sys.exit(main())
