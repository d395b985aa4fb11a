#!/usr/bin/env python
"""Write the model card of an encoder trained on real recordings (data, split, held-out
scores, the licences of its training audio).

Options and exit codes: musicrep.cli.real_model_card (`--help`).
"""

import sys

from musicrep.cli.real_model_card import main

if __name__ == "__main__":
    sys.exit(main())
