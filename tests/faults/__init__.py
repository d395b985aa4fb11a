"""Fault tests of issue #9, one file per area, grouped by rule."""

import signal


def default_sigint() -> None:
    """Popen preexec_fn: give the child the default Ctrl-C handling.

    A shell starts background jobs (`make test &`, nohup) with SIGINT ignored, and an
    ignored signal stays ignored across exec: Python then installs no KeyboardInterrupt
    handler, and the Ctrl-C tests would test nothing. A user's terminal never does this.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
