#!/usr/bin/env python
"""Benchmark audio encoders on real recordings (same-recording retrieval, a labelled probe).

Options and exit codes: musicrep.cli.real_benchmark (`--help`).
"""

import sys

from musicrep.cli.real_benchmark import main

if __name__ == "__main__":
    sys.exit(main())
