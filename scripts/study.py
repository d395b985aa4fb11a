#!/usr/bin/env python
"""The study of issue #11: every config, several seeds, trained to convergence on one
generated corpus, with intervals and paired comparisons (see musicrep.study).

    python scripts/study.py --study-dir DIR [--smoke] [--report-only] [--plan-only] [--publish reports/study]

Generated data: the models it trains are useless for real music.
"""

import sys

from musicrep.cli.study import main

if __name__ == "__main__":
    sys.exit(main())
