"""Copy the demo's trained encoders into models/ and write their model cards.

Options and exit codes: musicrep.cli.export_models (`--help`).
"""

import sys

from musicrep.cli.export_models import main

if __name__ == "__main__":
    sys.exit(main())
