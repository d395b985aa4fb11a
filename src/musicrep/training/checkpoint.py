"""Checkpoint files: atomic writes, RNG state, and the original-format export.

A training checkpoint (`last.pt`, `best.pt`, `epoch_XXXX.pt`) is a dict:

    format       "musicrep-checkpoint/1"
    epoch        completed epochs
    global_step  optimizer steps so far
    models       {part: state dict}: one per view encoder ("audio", "cf", "genre",
                 "tags") and per head ("cf_head", "genre_head", "tags_head"); only the
                 parts the configuration has (views.py, models.MultiModalModel)
    optimizer    Adam state dict
    rng          {"torch": [state per rank], "cuda": [state per rank] or None}
    config       the TrainConfig as a dict
    model_args   {"width", "input_layout"} and each view's sizes ("cf_dim", "n_genres", ...)
    best_val     best validation loss so far, val_loss this epoch's

Everything in it is a tensor or plain Python value, so it loads with
torch.load(weights_only=True). `audio_encoder.pt` is the audio part alone, as a plain
state dict: the format of the authors' published files.

Checkpoints written before views existed have the same format and part names, so they
load; a checkpoint that does not fit the run fails with one line (a ConfigError).
This module also owns resuming: `training_state` builds the dict, `load_resume_point`
reads last.pt (refusing, before anything is written, a damaged file or a run whose
config differs: `check_resumable`), `check_model_args` refuses data of other sizes,
`restore` puts a checkpoint back.

Every file is written by `save_atomic`: under a temporary name, then renamed, so a full
disk or a crash leaves the previous file under the real name as it was.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from ..settings import TrainConfig
from ..io import atomic_path
from ..model.audio_cnn import CONV_BLOCKS, AudioEncoder
from . import run_files

FORMAT = "musicrep-checkpoint/1"
# What resuming reads from a checkpoint: without one of them the file is not resumable.
RESUME_FIELDS = ("epoch", "global_step", "models", "optimizer", "rng", "best_val")

# Keys that change the model's structure or meaning: a resume must not mix them.
RESUME_KEYS = (
    "encoder",
    "objective",
    "views",
    "pairs",
    "targets",
    "aggregation",
    "num_heads",
    "width",
    "input_layout",
    "max_genres",
    "max_tags",
    "select_on",  # best_val and best_epoch are of the selected loss: not comparable across
)


def save_atomic(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file beside `path`, then rename over it, so a crash or a
    full disk never leaves a half-written checkpoint under the real name. A failed write
    raises OSError with one line naming `path`; what was under `path` is unchanged."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
    except (OSError, RuntimeError) as e:
        cause = _os_error(e)
        if cause is None:  # not the file system: a bug, keep the traceback
            raise
        raise OSError(cause.errno, f"cannot write {path} ({cause.strerror or cause})") from None


def _os_error(e: BaseException | None) -> OSError | None:
    """The OSError behind `e` (torch's zip writer reports a failed write as a RuntimeError
    whose context is the OSError)."""
    while e is not None:
        if isinstance(e, OSError):
            return e
        e = e.__cause__ or e.__context__
    return None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A training checkpoint; ValueError (one line) for anything else."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 -- pickle/zip errors say little about what was wrong
        raise ValueError(f"{path}: not a readable torch file ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path}: not a musicrep training checkpoint (format {FORMAT!r})")
    missing = [k for k in RESUME_FIELDS if k not in ckpt]
    if missing or not isinstance(ckpt["models"], dict):
        raise ValueError(f"{path}: damaged training checkpoint (no {', '.join(missing) or 'models dict'})")
    return ckpt


def load_resume_point(last: Path, cfg: TrainConfig) -> dict[str, Any] | None:
    """The checkpoint `last` (a run's last.pt) to resume from, None when there is none.
    A damaged or foreign file, or one trained with another config (`check_resumable`),
    is a ConfigError (one line) that offers best.pt or a fresh start."""
    if not last.is_file():
        return None
    try:
        ckpt = load_checkpoint(last)
    except ValueError as e:
        best = last.with_name(run_files.BEST)
        way_out = f"copy {best.name} over it to resume from the best epoch, or " if best.is_file() else ""
        raise ConfigError(f"{e}; {way_out}remove it to start the run over") from None
    check_resumable(ckpt, cfg, last)
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


def training_state(
    model: Any,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    *,
    epoch: int,
    global_step: int,
    best_val: float,
    val_loss: float,
    rng_states: list[dict[str, Any]],
    model_args: dict[str, Any],
) -> dict[str, Any]:
    """The checkpoint dict (see the module docstring); rng_states: one per rank."""
    return {
        "format": FORMAT,
        "epoch": epoch,
        "global_step": global_step,
        "models": model.part_state_dicts(),
        "optimizer": optimizer.state_dict(),
        "rng": {
            "torch": [s["torch"] for s in rng_states],
            "cuda": [s["cuda"] for s in rng_states] if rng_states[0]["cuda"] is not None else None,
        },
        "config": cfg.to_dict(),
        "model_args": model_args,
        "best_val": best_val,
        "val_loss": val_loss,
    }


def check_resumable(ckpt: dict[str, Any], cfg: TrainConfig, path: Path) -> None:
    """ConfigError (one line) when `ckpt` was trained with another model than `cfg`.
    Keys a checkpoint lacks (written before they existed) are not compared."""
    saved = ckpt.get("config", {})
    for key in RESUME_KEYS:
        if key in saved and saved[key] != getattr(cfg, key):
            raise ConfigError(
                f"config key '{key}' is {json.dumps(getattr(cfg, key))} but {path} was trained "
                f"with {json.dumps(saved[key])}; use another experiment_name or remove {path.parent}"
            )


def check_model_args(ckpt: dict[str, Any], args: dict[str, Any], path: Path) -> None:
    """ConfigError (one line) when the data give the model other sizes (cf_dim, n_genres,
    ...: `args`, from views.model_args) than those `ckpt` was trained with, for example
    after the dataset was rebuilt. Sizes a checkpoint lacks are not compared."""
    saved = ckpt.get("model_args") or {}
    for key, value in args.items():
        if key in saved and saved[key] != value:
            raise ConfigError(
                f"the data give {key} = {json.dumps(value)} but {path} was trained with {key} = "
                f"{json.dumps(saved[key])} (was the dataset rebuilt?); use another experiment_name "
                f"or remove {path.parent}"
            )


def restore(
    ckpt: dict[str, Any], model: Any, optimizer: torch.optim.Optimizer, cfg: TrainConfig, rank: int, world: int, path: Path
) -> tuple[int, float]:
    """Load parts, optimizer and this rank's RNG; returns (global_step, best_val)."""
    try:
        model.load_part_state_dicts(ckpt["models"])
        optimizer.load_state_dict(ckpt["optimizer"])
    except (KeyError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{path} does not fit this run ({first}); use another experiment_name or remove {path.parent}") from None
    rng = ckpt["rng"]
    if len(rng["torch"]) == world:
        cuda = rng["cuda"][rank] if rng.get("cuda") else None
        set_rng_state({"torch": rng["torch"][rank], "cuda": cuda})
    else:  # resumed with another number of processes: reseed, deterministically
        torch.manual_seed(cfg.seed + 1 + rank + 7919 * int(ckpt["epoch"]))
    return int(ckpt["global_step"]), float(ckpt["best_val"])


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
        sidecar = path.with_name(run_files.CONFIG)
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
