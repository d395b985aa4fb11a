"""Writing a generated corpus so that its directory is never half-written: it is built
in a temporary sibling and renamed into place when complete; a place that cannot be
written is refused before any work, and a write that fails (disk full) names the
output."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ConfigError
from ..io import naming_os_errors, write_error


def check_out(out: Path, force: bool, hint: str) -> None:
    """Refuse an `out` that exists and is not empty unless `force` (FileExistsError;
    `hint` says how to force: the message ends "(<hint> to replace it)"), and one whose
    parent (created if missing) cannot be written (ConfigError)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise FileExistsError(f"{out} exists and is not empty ({hint} to replace it)")
    err = write_error(out.parent)
    if err is not None:
        raise ConfigError(f"{out}: cannot be written ({out.parent}: {err.strerror or err})")


@contextmanager
def building(out: Path) -> Iterator[Path]:
    """A new temporary directory beside `out` to build the corpus in; renamed to `out`
    when the block completes, removed when it fails (Ctrl-C included)."""
    tmp = Path(tempfile.mkdtemp(prefix=f"{out.name}.tmp-", dir=out.parent))
    try:
        with naming_os_errors(out, tmp):  # a failed write names the output, not tmp
            yield tmp
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(tmp: Path, out: Path) -> None:
    # Swap in atomically; a replaced corpus is moved aside first and then deleted.
    if out.exists():
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        else:
            old = Path(tempfile.mkdtemp(prefix=f"{out.name}.old-", dir=out.parent))
            os.replace(out, old / "x")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
    if not out.exists():
        os.replace(tmp, out)
