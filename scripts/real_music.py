#!/usr/bin/env python
"""Assemble a corpus of real music (Debian's free game soundtracks) for import_audio.py.

Options and exit codes: musicrep.cli.real_music (`--help`).
"""

import sys

from musicrep.cli.real_music import main

if __name__ == "__main__":
    sys.exit(main())
