#!/usr/bin/env python
"""Render a generated music collection: audio files + tracks.csv + playlists.csv (see musicrep.toy.audio).

Options and exit codes: musicrep.cli.make_toy_audio (`--help`).
"""

import sys

from musicrep.cli.make_toy_audio import main

if __name__ == "__main__":
    sys.exit(main())
