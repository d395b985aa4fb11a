"""Early stopping: the best epoch so far and when to stop (torch-free).

With `patience` set, training stops once the validation loss has not improved for
`patience` epochs, but never before epoch `min_epochs`; `epochs` (`max_epochs` here) is
then the maximum. Without `patience` every epoch runs.

    early = EarlyStopping(patience=5, min_epochs=10, max_epochs=400)
    for epoch in ...:
        improved = early.update(epoch, val_loss)   # True: save best.pt
        if early.stopped:
            break
"""

from __future__ import annotations

import math
from typing import Any


class EarlyStopping:
    """The bookkeeping of early stopping: epochs run, best epoch, best validation loss."""

    def __init__(self, patience: int | None, min_epochs: int, max_epochs: int) -> None:
        self.patience = patience
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
        }
