#!/usr/bin/env python
"""Write a generated corpus in the Melon Playlist Dataset layout (see musicrep.toy.melon).

Options and exit codes: musicrep.cli.make_toy_melon (`--help`).
"""

import sys

from musicrep.cli.make_toy_melon import main

if __name__ == "__main__":
    sys.exit(main())
