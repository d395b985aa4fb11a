"""Worker processes, bounded: how many to start, and that they die with their parent.

A command asked for `--workers 5000` on a 2-core machine must not fork 1,500 processes:
`cap_workers` gives min(requested, usable CPUs, work items) and says so when it caps.
Pool workers call `die_with_parent` first, so a SIGKILL of the command (which runs no
clean-up) does not leave them decoding on their own.
"""

from __future__ import annotations

import os
import signal
import sys


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def cap_workers(requested: int, items: int, option: str = "--workers", quiet: bool = False) -> int:
    """min(requested, usable CPUs, items), at least 1; a note on stderr when it is fewer
    than requested (naming `option`), unless `quiet`."""
    cpus = usable_cpus()
    n = max(1, min(requested, cpus, max(items, 1)))
    if n < requested and not quiet:
        why = f"{cpus} usable CPUs" if n == cpus else f"{items} work items"
        print(f"note: {option} {requested}: using {n} ({why})", file=sys.stderr)
    return n


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (a pool initializer).

    Elsewhere nothing is done: the pool's own shutdown is then the only clean-up.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    PR_SET_PDEATHSIG = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)
