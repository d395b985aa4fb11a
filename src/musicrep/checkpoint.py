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

import json
import os
from pathlib import Path
from typing import Any

import torch

from .models import CONV_BLOCKS, AudioEncoder

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


def _strip_prefix(sd: dict[str, Any], prefix: str) -> dict[str, Any]:
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def _is_audio_state_dict(sd: Any) -> bool:
    return (
        isinstance(sd, dict)
        and "audio_encoder.1.conv.weight" in sd
        and all(isinstance(v, torch.Tensor) for v in sd.values())
    )


def load_audio_encoder(
    path: str | Path,
    input_layout: str | None = None,
    map_location: str | torch.device = "cpu",
) -> AudioEncoder:
    """Load an AudioEncoder from the original format or from this project's files.

    Args:
        path: a plain state dict (the authors' `audio_encoder.pt`, or the one this
            project exports) or a training checkpoint (`last.pt`, `best.pt`, `epoch_*.pt`).
        input_layout: "transpose" or "reference"; None takes the layout saved with the
            weights: the checkpoint's own, else the `input_layout` of the `config.json`
            beside a plain state dict (this project writes one with every export).
        map_location: where the tensors are loaded.

    The width is inferred from the tensor shapes. A plain state dict with no layout
    anywhere is refused (ValueError) rather than guessed: the two layouts give different
    embeddings. The authors' published files need `input_layout="reference"`.
    The model is returned in eval mode.
    """
    path = Path(path)
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # pickle/zip errors say little about what was wrong
        raise ValueError(f"{path}: not a readable torch file ({type(e).__name__}: {e})") from e

    saved_layout = None
    if isinstance(obj, dict) and "models" in obj and isinstance(obj["models"], dict):
        sd = obj["models"].get("audio")
        saved_layout = (obj.get("model_args") or {}).get("input_layout")
    else:
        sd = obj
    if isinstance(sd, dict):
        sd = _strip_prefix(sd, "module.")  # saved from a DDP-wrapped model
    if not _is_audio_state_dict(sd):
        raise ValueError(
            f"{path}: not an audio-encoder state dict (expected keys like "
            "'audio_encoder.1.conv.weight' or a musicrep checkpoint with models['audio'])"
        )

    layout = input_layout or saved_layout
    if layout is None:
        sidecar = path.with_name("config.json")
        if sidecar.is_file():
            try:
                layout = json.loads(sidecar.read_text()).get("input_layout")
            except (OSError, ValueError) as e:
                raise ValueError(f"{sidecar}: unreadable config beside the weights ({e})") from None
    if layout is None:
        raise ValueError(
            f"{path}: plain state dict with no input layout saved with it (no config.json "
            "beside it); give --input-layout reference for the authors' published "
            "checkpoints, or transpose for one trained by this project"
        )

    width = sd["audio_encoder.1.conv.weight"].shape[0] / CONV_BLOCKS[0][0]
    model = AudioEncoder(width=width, input_layout=layout)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise ValueError(
            f"{path}: audio-encoder state dict does not match the architecture: {e}"
        ) from e
    return model.eval()
