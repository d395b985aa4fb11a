"""Which checkpoints a run keeps, and the final export (main process only).

After every epoch: `epoch_XXXX.pt` every `save_model_every` epochs and at the last epoch,
`best.pt` when the validation loss improved, then `last.pt`, written last because it
marks the epoch as done. At the end the audio encoder is exported in the original
format: `audio_encoder.pt` (the final model) and `audio_encoder_best.pt` (from best.pt).
Every write is atomic (checkpoint.save_atomic).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from . import run_files
from .checkpoint import export_audio_encoder, load_checkpoint, save_atomic


class SavePolicy:
    """The checkpoints of the run folder `out_dir`."""

    def __init__(self, out_dir: Path, save_every: int, epochs: int) -> None:
        self.out_dir = Path(out_dir)
        self.save_every = save_every
        self.epochs = epochs
        self.last = self.out_dir / run_files.LAST
        self.best = self.out_dir / run_files.BEST
        self.audio_encoder = self.out_dir / run_files.AUDIO_ENCODER

    def save(self, state: dict[str, Any], epoch: int, improved: bool) -> None:
        """The checkpoints of a finished epoch (`state`: checkpoint.training_state)."""
        if epoch % self.save_every == 0 or epoch == self.epochs:
            save_atomic(state, self.out_dir / run_files.epoch_checkpoint(epoch))
        if improved:
            save_atomic(state, self.best)
        save_atomic(state, self.last)  # last: it marks the epoch as done

    def exported(self) -> bool:
        """Whether the final export exists (with last.pt's epochs: the run is complete)."""
        return self.audio_encoder.is_file()

    def export(self, final_audio: dict[str, torch.Tensor]) -> None:
        """audio_encoder.pt (final) and audio_encoder_best.pt (from best.pt). best.pt is
        read first: a damaged one stops the export before anything is written."""
        best_audio = None
        if self.best.is_file():
            try:
                best_audio = load_checkpoint(self.best)["models"]["audio"]
            except (ValueError, KeyError) as e:  # damaged since it was written
                why = str(e) if isinstance(e, ValueError) else f"{self.best}: no audio part"
                raise ConfigError(f"{why}; remove it and rerun to export without it") from None
        export_audio_encoder(final_audio, self.audio_encoder)
        if best_audio is not None:
            export_audio_encoder(best_audio, self.out_dir / run_files.AUDIO_ENCODER_BEST)
