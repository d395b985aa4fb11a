"""Checkpoint files: atomic writes, RNG state, and the original-format export.

A training checkpoint (`last.pt`, `best.pt`, `epoch_XXXX.pt`) is a dict:

    format       "musicrep-checkpoint/1"
    epoch        completed epochs
    global_step  optimizer steps so far
    models       {"audio": state dict, "cf": ..., "genre": ..., "cf_head": ..., "genre_head": ...}
                 (only the parts the configuration has)
    optimizer    Adam state dict
    rng          {"torch": [state per rank], "cuda": [state per rank] or None}
    config       the TrainConfig as a dict
    model_args   {"width", "input_layout", "cf_dim", "n_genres"}
    best_val     best validation loss so far, val_loss this epoch's

Everything in it is a tensor or plain Python value, so it loads with
torch.load(weights_only=True). `audio_encoder.pt` is the audio part alone, as a plain
state dict: the format of the authors' published files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

FORMAT = "musicrep-checkpoint/1"


def save_atomic(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file beside `path`, then rename over it, so a crash
    never leaves a half-written checkpoint under the real name."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path}: not a musicrep training checkpoint")
    return ckpt


def rng_state() -> dict[str, Any]:
    """This process's torch RNG states (dropout; crops and shuffles are seeded apart)."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def export_audio_encoder(state_dict: dict[str, torch.Tensor], path: str | Path) -> None:
    """Write an audio encoder as a plain state dict (the original `audio_encoder.pt`)."""
    save_atomic({k: v.detach().cpu().clone() for k, v in state_dict.items()}, path)
