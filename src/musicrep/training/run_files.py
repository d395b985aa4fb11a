"""The names of what a training run writes into its folder, save_dir/experiment_name/:

    config.json            the config (and the data shapes) the run used
    last.pt                full state after the latest epoch (resume point)
    best.pt                full state at the lowest validation loss
    epoch_XXXX.pt          full state every save_model_every epochs and at the end
    audio_encoder.pt       final audio encoder, plain state dict (original format)
    audio_encoder_best.pt  the same from best.pt
    metrics.csv            one row per epoch: every loss term train/val, time, samples/s
    tb/                    TensorBoard scalars

Which checkpoints are written when is save_policy.py; config.json, metrics.csv and tb/
are runlog.py; the checkpoints' content is checkpoint.py.
"""

from __future__ import annotations

CONFIG = "config.json"
METRICS = "metrics.csv"
TENSORBOARD = "tb"
LAST = "last.pt"
BEST = "best.pt"
AUDIO_ENCODER = "audio_encoder.pt"
AUDIO_ENCODER_BEST = "audio_encoder_best.pt"


def epoch_checkpoint(epoch: int) -> str:
    """`epoch_0020.pt`: the checkpoint kept for `epoch`."""
    return f"epoch_{epoch:04d}.pt"


# What a run writes into its folder (set aside as a whole by a fresh start: runlog.py).
RUN_FILES = (CONFIG, METRICS, TENSORBOARD, LAST, BEST, "epoch_*.pt", "audio_encoder*.pt")
