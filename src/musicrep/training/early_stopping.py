"""Early stopping: the best epoch so far and when to stop (torch-free).

With `patience` set, training stops once the validation loss has not improved for
`patience` epochs, but never before epoch `min_epochs`; `epochs` (`max_epochs` here) is
then the maximum. Without `patience` every epoch runs.

Which validation loss: `select_on` "sum" (the default) watches the summed loss of every
term; "audio" watches only the terms that involve the audio view (`selected_loss`), so
that best.pt, early stopping and an lr grid judge what the audio encoder learned, not a
term such as ntxent_cf_genre that trains only the other encoders. The summed loss is
logged either way.

    early = EarlyStopping(patience=5, min_epochs=10, max_epochs=400)
    for epoch in ...:
        improved = early.update(epoch, selected_loss(val_terms, audio_terms, select_on))
        if early.stopped:
            break
"""

from __future__ import annotations

import math
from typing import Any

SELECTED = "selected"  # the validation term that holds the watched loss (metrics.csv val_selected)


def selected_loss(val_terms: dict[str, float], audio_terms: tuple[str, ...] | list[str],
                  select_on: str) -> float:
    """The validation loss that picks the best epoch: ``val_terms["loss"]`` for "sum", the
    sum of ``audio_terms`` (the objective's terms that involve the audio view) for "audio"."""
    if select_on == "sum":
        return val_terms["loss"]
    if select_on == "audio":
        return float(sum(val_terms[t] for t in audio_terms))
    raise ValueError(f"select_on must be 'sum' or 'audio', got {select_on!r}")


class EarlyStopping:
    """The bookkeeping of early stopping: epochs run, best epoch, best validation loss."""

    def __init__(self, patience: int | None, min_epochs: int, max_epochs: int,
                 select_on: str = "sum") -> None:
        self.patience = patience
        self.select_on = select_on  # recorded in the summary: what best_val_loss is
        self.min_epochs = min_epochs
        self.max_epochs = max_epochs
        self.epochs_run = 0
        self.best_epoch = 0  # epoch of best.pt (0: none yet)
        self.best_value = math.inf

    def resume(self, epochs_run: int, best_epoch: int, best_value: float) -> None:
        """Continue from a checkpoint's epoch, best epoch and best validation loss."""
        self.epochs_run, self.best_epoch, self.best_value = epochs_run, best_epoch, best_value

    def update(self, epoch: int, val_loss: float) -> bool:
        """Record epoch `epoch`'s validation loss; True when it is the best so far."""
        improved = val_loss < self.best_value
        if improved:
            self.best_value, self.best_epoch = val_loss, epoch
        self.epochs_run = epoch
        return improved

    def skip(self, epoch: int) -> bool:
        """Record epoch `epoch` as run without validation (val_every > 1); never best."""
        self.epochs_run = epoch
        return False

    @property
    def stopped(self) -> bool:
        """True when `patience` epochs have passed since the best validation loss (and the run
        is at least `min_epochs` long)."""
        return (self.patience is not None and self.min_epochs <= self.epochs_run < self.max_epochs
                and self.epochs_run - self.best_epoch >= self.patience)

    def summary(self) -> dict[str, Any]:
        """config.json's `training` entry."""
        return {
            "epochs_run": self.epochs_run, "max_epochs": self.max_epochs,
            "patience": self.patience, "min_epochs": self.min_epochs, "best_epoch": self.best_epoch,
            "best_val_loss": self.best_value if math.isfinite(self.best_value) else None,
            "stopped_early": self.stopped,
            "select_on": self.select_on,  # "audio": best_val_loss sums the audio terms only
        }
