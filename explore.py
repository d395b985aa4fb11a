#!/usr/bin/env python
"""Write a static explorer page (index.html) for track embeddings.

Usage and options: musicrep.cli.explore (also installed as `musicrep-explore`).
"""

import sys

from musicrep.cli.explore import main

if __name__ == "__main__":
    sys.exit(main())
