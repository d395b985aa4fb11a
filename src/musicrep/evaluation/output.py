"""The output folder of ``evaluate.py``: one run's files, replaced as a whole.

A run writes its files into a fresh folder beside ``--out`` and renames it into place
at the end (``io.temp_dir_beside``, ``io.swap_in_dir``), under a lock beside it
(``io.output_lock``), so that

- the folder holds one run's files only: an earlier run's ``items.npz`` or
  ``bars_mood.png`` never sits beside new tables that did not produce it;
- a failed or interrupted run leaves the earlier results as they were;
- a second run into the same folder is refused at once instead of mixing files.

What evaluate did not write (``OUTPUT_NAMES``) is the user's: ``reports/`` of this
repository, for one, holds the study's results. Those entries are kept through the swap
as hard links in the new folder (nothing is copied or moved, so a kill at any moment
loses none of them). Refused before any work (``ConfigError``): an ``--out`` that is
or holds one of the run's inputs or the current directory (both would be replaced),
and one holding user files on another file system or more than ``MAX_KEPT`` of them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from fnmatch import fnmatch
from pathlib import Path

from ..errors import ConfigError

__all__ = ["MAX_KEPT", "OUTPUT_NAMES", "check_out_dir", "is_output", "keep_user_files",
           "user_entries"]

#: What evaluate.py writes into --out (glob patterns); everything else is the user's.
OUTPUT_NAMES = ("results.md", "results.csv", "results.json", "items.npz",
                "embedding_maps.png", "loss_curves.png", "bars_*.png")
#: The most user files an --out may hold: past this, it is not a folder for results.
MAX_KEPT = 10_000


def is_output(name: str) -> bool:
    """Whether an entry of --out is evaluate's (a result, or a temporary one of an
    interrupted write): the swap replaces these."""
    return any(fnmatch(name, pat) or fnmatch(name, f".{pat}.*.tmp") for pat in OUTPUT_NAMES)


def user_entries(out: Path) -> list[Path]:
    """The entries of an existing --out that evaluate did not write."""
    if not out.is_dir():
        return []
    return sorted(p for p in out.iterdir() if not is_output(p.name))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_out_dir(out: Path, shown: str, inputs: Iterable[str | os.PathLike]) -> None:
    """Refuse an --out (resolved ``out``, given as ``shown``) that the swap would harm;
    ConfigError naming the option. Called before any work."""
    for p in inputs:
        if _inside(Path(p).resolve(), out):
            raise ConfigError(f"--out {shown}: {'is' if Path(p).resolve() == out else 'holds'} "
                              f"the input {p}, and the output folder is replaced as a whole; "
                              "give a folder of its own, e.g. reports/NAME")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {shown}: exists and is not a directory")
    if _inside(Path.cwd().resolve(), out):
        raise ConfigError(f"--out {shown}: is (or holds) the current directory, and the "
                          "folder is replaced as a whole; give a folder of its own")
    kept = user_entries(out)
    device = out.stat().st_dev if kept else 0
    for count, path in enumerate((p for entry in kept for p in _tree(entry)), start=1):
        if count > MAX_KEPT:
            raise ConfigError(f"--out {shown}: holds more than {MAX_KEPT} files evaluate.py did "
                              "not write, and the folder is replaced as a whole; give a "
                              "folder of its own")
        if os.lstat(path).st_dev != device:
            raise ConfigError(f"--out {shown}: holds {path}, on another file system, which "
                              "cannot be kept when the folder is replaced; give a folder of "
                              "its own")


def _tree(entry: Path):
    """``entry`` and, for a real directory, everything under it."""
    yield entry
    if entry.is_dir() and not entry.is_symlink():
        for root, dirs, files in os.walk(entry):
            for name in dirs + files:
                yield Path(root, name)


def keep_user_files(out: Path, shown: str, new: Path) -> None:
    """Hard-link the user's entries of ``out`` into ``new``, the folder about to replace
    it (ConfigError naming the entry when the file system refuses a link)."""
    for entry in user_entries(out):
        dst = new / entry.name
        try:
            if entry.is_symlink():
                os.symlink(os.readlink(entry), dst)
            elif entry.is_dir():
                shutil.copytree(entry, dst, symlinks=True, copy_function=os.link)
            else:
                os.link(entry, dst)
        except shutil.Error as e:
            first = e.args[0][0] if e.args and e.args[0] else ("", "", str(e))
            raise ConfigError(f"--out {shown}: cannot keep {first[0]} in the new folder "
                              f"({first[2]}); move it out of --out or give another --out") from None
        except OSError as e:
            raise ConfigError(f"--out {shown}: cannot keep {entry} in the new folder "
                              f"({e.strerror or e}); move it out of --out or give another "
                              "--out") from None
    if out.is_dir():
        shutil.copymode(out, new)
