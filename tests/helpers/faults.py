"""Tools of the fault tests: a child process with the default Ctrl-C handling, and an
object whose unpickling leaves a trace (proof that a pickle was executed)."""

from __future__ import annotations

import signal
from pathlib import Path


def default_sigint() -> None:
    """Popen preexec_fn: give the child the default Ctrl-C handling.

    A shell starts background jobs (`make test &`, nohup) with SIGINT ignored, and an
    ignored signal stays ignored across exec: Python then installs no KeyboardInterrupt
    handler, and the Ctrl-C tests would test nothing. A user's terminal never does this.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Boom:
    """Unpickling this creates a file: proof that a pickle was executed."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))
