"""Writing outputs atomically: a file appears under its final name only when complete.

Files: `atomic_path` (a temporary name, renamed at the end). Whole directories:
`output_lock` (one writer at a time), `temp_dir_beside` and `swap_in_dir` (build beside
the output, rename it in, and drop the previous one only after that), `InterruptGuard`
(a Ctrl-C is never lost, and never splits the swap).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import numpy as np


def _chmod_plain(path: str | Path, mode: int) -> None:
    """Give `path` the permissions open()/mkdir() would: `mode` less the umask."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path next to `final`; rename it to `final` if the block succeeds.

    The temporary name ends in `.tmp` so a later run (or `clean_stale_temp`) can tell an
    interrupted output from a finished one.
    """
    final = Path(final)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    _chmod_plain(tmp, 0o666)  # mkstemp makes it private (0600); give it open()'s mode
    tmp_path = Path(tmp)
    try:
        with naming_os_errors(final):
            yield tmp_path
            os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def naming_os_errors(path: str | Path, build_dir: str | Path | None = None) -> Iterator[None]:
    """An OSError that names no file (a write that failed half-way: disk full, EFBIG)
    leaves the block naming `path`, so the one-line error says which output failed; one
    naming a file inside `build_dir` (the temporary directory `path` is built in, gone
    by the time the user reads the error) names that file under `path` instead.

    The reason is the errno's plain text where there is one (h5py's own is several
    lines long); other errors that name a file pass unchanged.
    """
    try:
        yield
    except OSError as e:
        if e.filename is not None:
            try:
                rel = Path(e.filename).relative_to(build_dir) if build_dir else None
            except (TypeError, ValueError):
                rel = None
            if rel is None:
                raise
            raise OSError(e.errno, e.strerror, str(Path(path) / rel)) from e
        why = os.strerror(e.errno) if e.errno else (str(e).strip().splitlines() or [""])[0]
        if not e.errno and " written" in why:  # numpy's short write: "N requested and M written"
            why = f"the write was cut short ({why}): is the disk full?"
        raise OSError(e.errno, why or type(e).__name__, str(path)) from e


def write_json(path: Path, obj: Any, indent: int | None = 1) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent, ensure_ascii=False) + "\n", encoding="utf-8")


def write_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def clean_stale_temp(directory: Path) -> list[Path]:
    """Remove temporary files an interrupted run left in `directory`; return them."""
    stale = sorted(Path(directory).glob(".*.tmp"))
    for p in stale:
        p.unlink()
    return stale


# --- whole directories --------------------------------------------------------------------
# Everything lives beside the target (same file system, so renames are atomic) under names
# derived from it: `.<name>.lock`, `.<name>.<random>.tmpdir` (a build in progress) and
# `.<name>.<random>.old` (the previous version during the swap).


class OutputLocked(RuntimeError):
    """Another process holds the lock of an output directory."""


def _sibling(final: Path, suffix: str) -> Path:
    return final.parent / f".{final.name}{suffix}"


@contextmanager
def output_lock(final: Path) -> Iterator[None]:
    """Hold an exclusive lock on the output `final` (a file beside it) for the block.

    Fails at once with OutputLocked when another process holds it: waiting would only
    make the second run overwrite what the first one just finished. The lock file is
    removed on exit; a process that opened it just before is told apart by the inode.
    """
    final = Path(final)
    path = _sibling(final, ".lock")
    f: TextIO = open(path, "a+")
    try:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            # The holder may have unlinked the file between our open and flock.
            if os.stat(path).st_ino != os.fstat(f.fileno()).st_ino:
                raise BlockingIOError
        except (BlockingIOError, FileNotFoundError):
            raise OutputLocked(f"{final}: another run is writing it (lock {path.name}); "
                               "wait for it to finish") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            path.unlink(missing_ok=True)  # while still holding the lock
    finally:
        f.close()


def recover_dir(final: Path) -> None:
    """Finish or undo what a killed run left beside `final` (call under `output_lock`).

    A build in progress (`.tmpdir`) is removed. A previous version (`.old`) is put back
    when `final` is missing (the run died between the two renames of `swap_in_dir`),
    otherwise removed (the swap had completed).
    """
    final = Path(final)
    for d in final.parent.glob(f".{glob_escape(final.name)}.*.tmpdir"):
        shutil.rmtree(d, ignore_errors=True)
    for d in sorted(final.parent.glob(f".{glob_escape(final.name)}.*.old")):
        if not final.exists():
            os.rename(d, final)
        else:
            shutil.rmtree(d, ignore_errors=True)


def glob_escape(name: str) -> str:
    """`name` with the glob wildcards quoted, for Path.glob."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def temp_dir_beside(final: Path) -> Path:
    """A new empty directory next to `final`, to build its replacement in."""
    final = Path(final)
    tmp = tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmpdir", dir=final.parent)
    _chmod_plain(tmp, 0o777)  # mkdtemp makes it private (0700); give it mkdir's mode
    return Path(tmp)


def swap_in_dir(tmp: Path, final: Path) -> None:
    """Rename the complete directory `tmp` to `final`; the previous `final` is removed last.

    At every moment either the previous or the new directory is under `final`'s name,
    except between two renames, which `recover_dir` repairs.
    """
    tmp, final = Path(tmp), Path(final)
    if not final.exists():
        os.rename(tmp, final)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
    os.rename(final, old)  # replaces the empty placeholder directory
    os.rename(tmp, final)
    shutil.rmtree(old)


class InterruptGuard:
    """Ctrl-C that cannot get lost, and a commit step it cannot cut in two.

    Python drops a KeyboardInterrupt raised inside a garbage-collector callback
    ("Exception ignored in ..."), so a run could go on and finish after Ctrl-C. Inside
    `installed()`, SIGINT is also remembered and `check()` raises it again; inside
    `committing()` it is only remembered, so a rename sequence completes, and a Ctrl-C
    that arrives then is ignored (the work is done). A library may also turn the
    KeyboardInterrupt into an error of its own (h5py's type conversion, interrupted in
    a logging callback, raises TypeError): any error that leaves `installed()` after
    Ctrl-C is re-raised as the KeyboardInterrupt it came from. Outside the main thread,
    or when SIGINT is not Python's default handler, nothing is installed.
    """

    def __init__(self) -> None:
        self._hit = threading.Event()
        self._raise = True

    def _unraisable(self, info) -> None:
        # The swallowed case: already remembered, so stay quiet (no "Exception ignored").
        if not (self._hit.is_set() and isinstance(info.exc_value, KeyboardInterrupt)):
            self._default_unraisable(info)

    def _handler(self, signum, frame) -> None:
        self._hit.set()
        if self._raise:
            raise KeyboardInterrupt

    def check(self) -> None:
        """Raise KeyboardInterrupt if Ctrl-C came, even if it was swallowed."""
        if self._hit.is_set() and self._raise:
            raise KeyboardInterrupt

    @contextmanager
    def installed(self) -> Iterator[InterruptGuard]:
        self._hit.clear()
        self._raise = True
        if (threading.current_thread() is not threading.main_thread()
                or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
            yield self
            return
        self._default_unraisable = sys.unraisablehook
        sys.unraisablehook = self._unraisable
        signal.signal(signal.SIGINT, self._handler)
        try:
            yield self
        except Exception as e:
            if self._hit.is_set() and self._raise:
                raise KeyboardInterrupt from e  # the error is what Ctrl-C became
            raise
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            sys.unraisablehook = self._default_unraisable

    @contextmanager
    def committing(self) -> Iterator[None]:
        """Check once more, then hold Ctrl-C off until the block ends."""
        self.check()
        self._raise = False
        try:
            yield
        finally:
            self._hit.clear()


def write_error(directory: Path) -> OSError | None:
    """Create `directory` if missing and write (then remove) a temporary file in it: the
    OSError that says why an output cannot go there, or None. Commands call it before any
    work, so that a read-only place fails at once, not after an hour of work; each words
    its own one-line error."""
    import tempfile

    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-check.", suffix=".tmp"):
            pass
    except OSError as e:
        return e
    return None
