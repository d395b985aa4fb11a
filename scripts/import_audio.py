#!/usr/bin/env python
"""Build a Melon-format directory from your own audio files, genre labels and playlists.

Options and exit codes: musicrep.cli.import_audio (`--help`).
"""

import sys

from musicrep.cli.import_audio import main

if __name__ == "__main__":
    sys.exit(main())
