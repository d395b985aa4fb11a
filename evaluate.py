#!/usr/bin/env python
"""Evaluate audio encoders on genre, tagging and continuation; write tables and plots.

Usage and options: src/musicrep/cli/evaluate.py.
"""

import sys

from musicrep.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
