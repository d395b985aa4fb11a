"""How training fails: one line that says what went wrong and what to do.

Everything a resume needs (last.pt, the config, the data's sizes) is checked before
anything is written; a fresh start sets an earlier attempt's files aside (runlog.py); the
run folder is locked against a second run; a NaN/inf loss names the track that caused it,
when the data hold it (`nonfinite_loss`). Bad input is a ConfigError (exit 2), a run that
cannot go on a TrainingError (exit 1); an interrupted or failed epoch loop says how to
resume (`epoch_faults`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from .dataset import TrackDataset


class TrainingError(RuntimeError):
    """Training cannot go on (for example the loss became NaN)."""


def nonfinite_loss(split: str, value: float, epoch: int, ds: TrackDataset, key: str,
                   rows: list[int] | None = None) -> ConfigError | TrainingError:
    """The error for a NaN/inf `split` loss: a ConfigError naming the file (config key
    `key`) and the track when the data fed to the model (`rows` of `ds`, default all) hold
    the NaN/inf, else a TrainingError (the optimisation diverged)."""
    bad = ds.find_nonfinite(rows)
    if bad is None:
        return TrainingError(
            f"{split} loss became {value} at epoch {epoch} on finite data; "
            "try a lower learning_rate or a higher contrastive_temperature"
        )
    row, track, field = bad
    who = f"track id {track} (row {row})" if track is not None else f"row {row}"
    return ConfigError(
        f"config key '{key}': {ds.path}: {who} holds NaN/inf in its '{field}' input, which made "
        f"the {split} loss {value} at epoch {epoch}; rebuild the dataset without it"
    )


@contextlib.contextmanager
def epoch_faults(last: Path, log: Callable[[str], None]) -> Iterator[None]:
    """Around the epoch loop: Ctrl-C says how to resume; a file-system error (a full disk,
    an unreadable chunk) becomes a TrainingError saying whether `last` (every write so
    far is atomic) is there to resume from."""
    try:
        yield
    except KeyboardInterrupt:
        log(f"\ninterrupted; rerun the same command to resume from {last}")
        raise
    except OSError as e:
        cause = (str(e).strip().splitlines() or [type(e).__name__])[-1]  # DataLoader wraps
        kept = (f"the previous checkpoint {last} is intact: rerun to resume from it"
                if last.is_file() else "no checkpoint was written yet")
        raise TrainingError(f"{cause}; {kept}") from None
