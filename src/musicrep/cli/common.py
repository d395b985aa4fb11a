"""What every command line shares: one-line errors, never a traceback.

`Parser` is argparse with its usage block kept for --help: a bad option is one line,
`PROG: error: ... (see PROG --help)`, exit 2. `run` calls a command's body and turns
what escapes into one line and the documented exit status:

    ConfigError (bad input, worded for the user)           -> exit 2
    OSError (disk full, unwritable place, vanished input)  -> exit 1, naming the file
    KeyboardInterrupt (Ctrl-C)                              -> exit 130
    OutputLocked (another run writes the same output)       -> exit 2

so a new entry point inherits the rules by calling `run(prog, body)`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NoReturn

from ..errors import ConfigError
from ..io import OutputLocked


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (the usage block stays in --help)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def os_error_line(e: OSError) -> str:
    """An OSError as one line: the file, then why."""
    where = e.filename if e.filename is not None else ""
    why = e.strerror or str(e) or type(e).__name__
    return f"{where}: {why}" if where else why


def run(prog: str, body: Callable[[], int], interrupted: str = "interrupted") -> int:
    """Call `body` and return its exit status; what escapes it becomes one line on stderr."""
    try:
        return body()
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return 130
    except (ConfigError, OutputLocked) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"{prog}: error: {os_error_line(e)}", file=sys.stderr)
        return 1


def device_option(name: str, option: str = "--device"):
    """The torch device a `--device` value names (auto, cpu, cuda, cuda:N), checked before
    any work; ConfigError naming `option` for a name torch does not know or a device
    this machine lacks (which torch would only report mid-work)."""
    import torch

    from ..precision import resolve_device

    try:
        dev = resolve_device(name)
    except ValueError:  # a CUDA device where CUDA is not available
        raise ConfigError(f"{option} {name}: CUDA is not available on this machine") from None
    except RuntimeError:  # torch's "Expected one of cpu, cuda, ipu, xpu, ..."
        raise ConfigError(f"{option} {name}: not a device (expected auto, cpu, cuda or "
                          "cuda:N)") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"{option} {name}: expected auto, cpu, cuda or cuda:N")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"{option} {name}: this machine has {torch.cuda.device_count()} "
                          "CUDA device(s)")
    return dev


def refuse_inputs_as_output(out: Path, inputs: Iterable[Path], option: str = "--out") -> None:
    """ConfigError when the output `out` is (or would replace) one of the files the command
    reads: writing it would destroy an input."""
    target = Path(out).resolve()
    for p in inputs:
        try:
            same = Path(p).resolve() == target
        except OSError:
            continue
        if same:
            raise ConfigError(f"{option} {out}: is one of the command's inputs ({p}); "
                              "give a new path so the input is not overwritten")
