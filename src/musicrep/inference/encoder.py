"""The library API: embed audio in memory or on disk with a trained encoder.

    from musicrep import load_encoder
    enc = load_encoder("models/contrastive_MF_gnr")       # a .pt file or a model folder
    v = enc.embed(y, sr)                                   # (D,) for (samples,) or (channels, samples)
    rows, starts = enc.embed_chunks(y, sr)                 # (n, D), (n,) start times in s
    v = enc.embed_file("song.mp3")                         # decoded in blocks, any length

The caller's sample rate is required and the audio is resampled to 16 kHz here, so a
signal at another rate can never be framed as if it were 16 kHz. One chunk is 256 mel
frames = 4.096 s; a track's embedding is the mean over its non-overlapping chunks (the
paper's protocol); the last partial chunk is dropped, and audio shorter than one chunk
is padded with its own quietest level. Embeddings are NOT L2-normalised (``z_d`` is a
LayerNorm output, norm about 11); normalise them before reading dot products as cosines.

``enc.info`` says what the model is: width, input layout, layer, and what it was
trained on (``config.json["provenance"]["data"]`` of its run: "generated", "real" or
"unknown"). Loading a model trained on the generated corpus warns once
(``GeneratedDataWarning``): such models are useless for real music.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..audio import (
    FRAME_SIZE,
    INPUT_LAYOUTS,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    SAMPLE_RATE,
    AudioError,
    iter_mel_frames,
    resample,
)
from ..model.audio_cnn import AudioEncoder
from ..model.layers import EMBED_DIM
from ..precision import resolve_device
from ..training.checkpoint import load_audio_encoder
from .embed import (
    CHUNK_FRAMES,
    CHUNK_SECONDS,
    DEFAULT_LAYER,
    LAYERS,
    NON_FINITE,
    FileEmbeddings,
    chunk_frame_blocks,
    embed_files,
    encode_pieces,
    resolve_bf16,
    resolve_checkpoint,
)

__all__ = [
    "AUTHORS_MODELS_URL",
    "Encoder",
    "GeneratedDataWarning",
    "load_encoder",
    "read_provenance",
    "run_config",
    "run_config_path",
]

AUTHORS_MODELS_URL = "https://github.com/andrebola/contrastive-mir-learning/tree/master/models"


class GeneratedDataWarning(UserWarning):
    """The model was trained on the generated corpus: its embeddings mean nothing for real music."""


def generated_warning(checkpoint: str | os.PathLike) -> str:
    return (
        f"{checkpoint} was trained on the GENERATED corpus (synthetic mels in the Melon "
        "layout), not on real music: its embeddings are useless for real audio. Use the "
        f"authors' checkpoints ({AUTHORS_MODELS_URL}, with --input-layout reference) "
        "or train on your own collection"
    )


_warned: set[str] = set()  # checkpoints already warned about in this process


def run_config(checkpoint: str | os.PathLike) -> dict[str, Any] | None:
    """The run's config.json for a checkpoint file: beside it, or one folder up from a
    ``checkpoints/`` subfolder; None when there is none.

    Raises ValueError naming the file when it is unreadable or of the wrong shape (not
    a JSON object, an ``input_layout`` that is not one of INPUT_LAYOUTS, a
    ``provenance`` that is not an object): the config says how to feed the model, so
    a damaged one is refused rather than half-read.
    """
    path = run_config_path(checkpoint)
    if path is None:
        return None
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: unreadable config ({_one_line(e)})") from None
    _check_config(path, cfg)
    return cfg


def run_config_path(checkpoint: str | os.PathLike) -> Path | None:
    """Where ``run_config`` reads a checkpoint's config.json (None: there is none), so a
    command can tell that file is one of its inputs."""
    p = Path(checkpoint)
    for folder in (p.parent, p.parent.parent if p.parent.name == "checkpoints" else None):
        if folder is not None and (folder / "config.json").is_file():
            return folder / "config.json"
    return None


def _check_config(path: Path, cfg: Any) -> None:
    """ValueError naming `path` when the config's keys read here have the wrong shape."""
    if not isinstance(cfg, dict):  # a ValueError, as every bad-input problem of loading
        kind = type(cfg).__name__
        raise ValueError(f"{path}: expected a JSON object (the run's config), got a {kind}")  # noqa: TRY004
    layout = cfg.get("input_layout")
    if layout is not None and layout not in INPUT_LAYOUTS:
        raise ValueError(f"{path}: input_layout: expected one of {list(INPUT_LAYOUTS)}, "
                         f"got {layout!r}")
    prov = cfg.get("provenance")
    if prov is not None and not isinstance(prov, dict):
        raise ValueError(f"{path}: provenance: expected a JSON object, got a "
                         f"{type(prov).__name__}")


def _one_line(e: BaseException | str, limit: int = 300) -> str:
    """A message on one line (library errors often span many), cut at ``limit``."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_provenance(config: dict[str, Any] | None) -> dict[str, Any]:
    """``config["provenance"]`` with "data" always present ("unknown" when missing)."""
    prov = (config or {}).get("provenance")
    prov = dict(prov) if isinstance(prov, dict) else {}
    if prov.get("data") not in ("generated", "real", "unknown"):
        prov["data"] = "unknown"
    return prov


def _as_float(audio: np.ndarray | torch.Tensor) -> np.ndarray:
    """The caller's samples as float32 on the [-1, 1] scale the decoders give.

    Integer arrays are PCM and are scaled by their full scale, as a WAV decoder does:
    signed n-bit by 2**(n-1) (int16 by 32768, int32 by 2**31), unsigned as offset
    binary (uint8: (x - 128) / 128). Left unscaled they would be mels 90 dB too loud,
    and the embedding quietly different. 64-bit integers are no PCM format (and are
    what a Python list of ints becomes), so their scale is unknown: refused, as are
    bool and complex arrays, which are not sampled audio.
    """
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu()
        if audio.dtype == torch.bfloat16:  # numpy has no bfloat16
            audio = audio.float()
        audio = audio.numpy()
    y = np.asarray(audio)
    kind = y.dtype.kind
    if kind == "f":
        with np.errstate(over="ignore"):
            out = y.astype(np.float32)
        if np.isfinite(y).all() and not np.isfinite(out).all():
            raise ValueError(f"audio samples too large for float32 (peak |sample| "
                             f"{float(np.max(np.abs(y))):.3g}; expected samples in [-1, 1])")
        return out
    if kind in "iu" and y.dtype.itemsize <= 4:
        half = 2.0 ** (8 * y.dtype.itemsize - 1)
        offset = half if kind == "u" else 0.0
        return ((y.astype(np.float64) - offset) / half).astype(np.float32)
    if kind in "iu":
        raise ValueError(
            f"audio of dtype {y.dtype}: no PCM format has 64-bit samples, so its scale is "
            "unknown; pass float samples in [-1, 1] (e.g. y / 32768 for 16-bit values) "
            "or an int16/int32 array"
        )
    if kind == "b":
        raise ValueError("audio of dtype bool is not a signal; pass float samples in "
                         "[-1, 1] or integer PCM (int16, int32, uint8)")
    if kind == "c":
        raise ValueError(f"audio of dtype {y.dtype} is complex; pass the real-valued "
                         "signal (float samples in [-1, 1] or integer PCM)")
    raise ValueError(f"audio must be an array of numbers, got dtype {y.dtype}")


def _mono(audio: np.ndarray | torch.Tensor, sr: int) -> np.ndarray:
    """Validate the caller's audio and return a mono float32 signal at 16 kHz."""
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or not (
        MIN_SAMPLE_RATE <= int(sr) <= MAX_SAMPLE_RATE
    ):
        raise ValueError(
            f"sr must be the audio's sample rate in Hz (an integer {MIN_SAMPLE_RATE}-"
            f"{MAX_SAMPLE_RATE}), got {sr!r}"
        )
    y = _as_float(audio)
    if y.size == 0:
        raise ValueError(f"empty audio: no samples (shape {y.shape})")
    if y.ndim == 2:
        if y.shape[0] > y.shape[1]:
            raise ValueError(
                f"audio of shape {y.shape} looks like (samples, channels); "
                "pass (channels, samples), e.g. audio.T"
            )
        y = y.mean(axis=0)  # channels -> mono, as the decoders mix
    elif y.ndim != 1:
        raise ValueError(f"audio must be 1-D (samples,) or 2-D (channels, samples), got {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError("audio contains NaN or infinite samples")
    y = resample(y, int(sr), SAMPLE_RATE)
    if not np.isfinite(y).all():
        raise ValueError(f"audio samples too large: resampling from {int(sr)} Hz overflows "
                         "to NaN or infinite values (expected samples in [-1, 1])")
    if y.size < FRAME_SIZE:
        raise ValueError(
            f"audio too short: {y.size} samples at {SAMPLE_RATE} Hz, fewer than one "
            f"{FRAME_SIZE}-sample frame"
        )
    return y


class Encoder:
    """A loaded audio encoder with the settings to embed audio the way it was trained.

    Build it with ``load_encoder``. Attributes: ``model`` (the AudioEncoder, eval mode),
    ``device``, ``layer``, ``bf16``, ``checkpoint``, ``config`` (its run's config.json or
    None), ``provenance``; properties ``dim``, ``sample_rate``, ``info``.
    """

    sample_rate: int = SAMPLE_RATE  # what the CNN's mels are computed at (input is resampled)
    chunk_seconds: float = CHUNK_SECONDS

    def __init__(
        self,
        model: AudioEncoder,
        device: torch.device,
        layer: str = DEFAULT_LAYER,
        bf16: bool = False,
        checkpoint: str | os.PathLike | None = None,
        config: dict[str, Any] | None = None,
        batch_size: int = 128,
    ):
        if layer not in LAYERS:
            raise ValueError(f"layer must be one of {LAYERS}, got {layer!r}")
        self.model = model.to(device).eval()
        self.device, self.layer, self.bf16 = device, layer, bf16
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.config = config
        self.provenance = read_provenance(config)
        self.batch_size = batch_size

    @property
    def dim(self) -> int:
        """Embedding size: 128 for z_d; the CNN output width (2 x channels) for z."""
        return EMBED_DIM if self.layer == "z_d" else int(self.model.z_dim)

    @property
    def info(self) -> dict[str, Any]:
        """What this encoder is and how it embeds (plain JSON-able values)."""
        return {
            "checkpoint": self.checkpoint,
            "width": self.model.width,
            "input_layout": self.model.input_layout,
            "layer": self.layer,
            "dim": self.dim,
            "sample_rate": self.sample_rate,
            "chunk_frames": CHUNK_FRAMES,
            "chunk_seconds": CHUNK_SECONDS,
            "normalised": False,
            "precision": "bf16" if self.bf16 else "fp32",
            "device": str(self.device),
            "trained_on": self.provenance["data"],
            "provenance": self.provenance,
        }

    def npz_metadata(self, segment: tuple[float, float] | None = None) -> dict[str, np.ndarray]:
        """Scalar arrays (no pickles) that describe embeddings made by this encoder."""
        seg = "whole file" if segment is None else f"{segment[0]:g}:{segment[1]:g}"
        return {
            "checkpoint": np.array(self.checkpoint or ""),
            "layer": np.array(self.layer),
            "segment": np.array(seg),
            "chunk_frames": np.array(CHUNK_FRAMES),
            "chunk_seconds": np.array(CHUNK_SECONDS),
            "normalised": np.array(False),
            "precision": np.array(self.info["precision"]),
            "trained_on": np.array(self.provenance["data"]),
            "provenance": np.array(json.dumps(self.provenance, sort_keys=True)),
        }

    def _encode(self, chunk_blocks: Iterable[np.ndarray]) -> np.ndarray:
        pieces = ((None, c) for c in chunk_blocks)
        outs = [o for _, o in encode_pieces(self.model, pieces, self.layer, self.device,
                                            self.batch_size, self.bf16)]
        rows = np.concatenate(outs) if outs else np.zeros((0, self.dim), np.float32)
        bad = int((~np.isfinite(rows).all(axis=1)).sum())
        if bad:  # never hand NaN rows to the caller (or to HEAR, which calls this)
            raise ValueError(f"{NON_FINITE}: {bad} of {len(rows)} chunks, from the model "
                             f"{self.checkpoint}")
        return rows

    def _signal_chunks(self, y16: np.ndarray) -> Iterator[np.ndarray]:
        """(k, 256, 48) chunk blocks of a 16 kHz signal, its mel computed in 30 s blocks."""
        step = 30 * SAMPLE_RATE
        blocks = (y16[i : i + step] for i in range(0, len(y16), step))
        return chunk_frame_blocks(iter_mel_frames(blocks))

    def embed_chunks(
        self, audio: np.ndarray | torch.Tensor, sr: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-chunk embeddings of audio in memory.

        Args:
            audio: (samples,) or (channels, samples) array (channels are averaged):
                float samples in [-1, 1], or integer PCM (int16, int32, uint8, ...),
                scaled to [-1, 1] by its full scale. bool, complex and 64-bit integer
                arrays are refused (ValueError).
            sr: its sample rate in Hz (required; resampled to 16 kHz here).
        Returns:
            ((n, dim) float32 embeddings, (n,) float64 chunk start times in seconds).
            Chunks are 4.096 s and do not overlap; a last partial chunk is dropped and
            audio shorter than one chunk gives one padded chunk starting at 0.
        Raises:
            ValueError: empty, too short, non-finite or too large samples, a bad dtype
                or sample rate, or an embedding that is not finite.
        """
        rows = self._encode(self._signal_chunks(_mono(audio, sr)))
        return rows, np.arange(len(rows)) * CHUNK_SECONDS

    def embed(self, audio: np.ndarray | torch.Tensor, sr: int) -> np.ndarray:
        """(dim,) float32: the mean of ``embed_chunks`` (the track's embedding)."""
        rows, _ = self.embed_chunks(audio, sr)
        return rows.mean(axis=0, dtype=np.float64).astype(np.float32)

    def embed_files(
        self,
        paths: Iterable[str | os.PathLike],
        keep_chunks: bool = False,
        segment: tuple[float, float] | None = None,
        progress: bool = False,
        on_problem=None,
    ) -> FileEmbeddings:
        """Many files, bad ones skipped and listed (see ``embed.embed_files``)."""
        return embed_files(self.model, paths, self.layer, self.device, self.batch_size,
                           keep_chunks=keep_chunks, segment=segment, progress=progress,
                           on_problem=on_problem, precision="bf16" if self.bf16 else "fp32")

    def embed_file(
        self, path: str | os.PathLike, segment: tuple[float, float] | None = None
    ) -> np.ndarray:
        """(dim,) embedding of an audio file, decoded in blocks (any length, any rate).

        ``segment`` = (offset, duration) in seconds, e.g. ``audio.MELON_SEGMENT``.
        Raises ``AudioError`` (a ValueError) naming the file and the cause when it
        cannot be used, its embedding not being finite included.
        """
        res = self.embed_files([path], segment=segment)
        if res.skipped:
            raise AudioError(f"{path}: {res.skipped[0]['reason']}")
        return res.embeddings[0]


def load_encoder(
    path: str | os.PathLike,
    device: str | torch.device | None = None,
    precision: str = "auto",
    layer: str = DEFAULT_LAYER,
    input_layout: str | None = None,
    batch_size: int = 128,
) -> Encoder:
    """Load an encoder for embedding.

    Args:
        path: a checkpoint file (``audio_encoder.pt``, ``best.pt``, ...) or a model/run
            folder holding one (``models/contrastive_MF_gnr``).
        device: "cpu", "cuda", "cuda:N" or None/"auto" (the GPU when there is one).
        precision: "auto" (bf16 where the hardware runs it natively), "fp32" or "bf16".
        layer: "z_d" (128-d, default) or "z" (the CNN output).
        input_layout: "reference" for the authors' published checkpoints; None takes
            the layout saved with the weights (refused when there is none).
        batch_size: chunks per forward pass.

    Warns once per checkpoint (``GeneratedDataWarning``) when its run was trained on
    the generated corpus. Raises FileNotFoundError or ValueError naming the file, with
    a one-line message: for a file that is not a PyTorch checkpoint, a config.json of
    the wrong shape, weights that are not finite, an unknown or absent device.
    """
    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {LAYERS}, got {layer!r}")
    if input_layout is not None and input_layout not in INPUT_LAYOUTS:
        raise ValueError(f"input_layout must be one of {INPUT_LAYOUTS}, got {input_layout!r}")
    ckpt = resolve_checkpoint(path)
    dev = _device(device)
    bf16 = resolve_bf16(precision, dev)
    config = run_config(ckpt)  # before the weights: a damaged config.json is named as such
    try:
        model = load_audio_encoder(ckpt, input_layout=input_layout, map_location="cpu")
    except ValueError as e:
        raise ValueError(_load_problem(ckpt, e)) from None
    _check_finite_weights(ckpt, model)
    enc = Encoder(model, dev, layer, bf16, ckpt, config, batch_size)
    if enc.provenance["data"] == "generated" and str(ckpt) not in _warned:
        _warned.add(str(ckpt))
        warnings.warn(generated_warning(ckpt), GeneratedDataWarning, stacklevel=2)
    return enc


def _device(name: str | torch.device | None) -> torch.device:
    """``resolve_device`` with one-line ValueErrors for a name torch does not know and for
    a device that is not there (a missing GPU index fails only later, mid-work)."""
    text = "auto" if name is None else str(name)
    try:
        dev = resolve_device(text)
    except RuntimeError:  # torch's own message lists two dozen backends
        raise ValueError(f"device {text!r}: expected cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {text!r}: there are {torch.cuda.device_count()} CUDA "
                         "devices (cuda:0 ...)")
    if dev.type == "mps" and torch.backends.mps.is_available():
        return dev
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {text!r}: expected cpu, cuda, cuda:N or auto")
    return dev


def _load_problem(ckpt: Path, e: ValueError) -> str:
    """One line for a checkpoint that failed to load.

    torch.load's own messages run to a dozen lines, and the one for a file that is not
    a checkpoint advises ``weights_only=False``, which would execute whatever the file
    holds: the file is named as not a PyTorch checkpoint instead, with the first
    sentence of the cause.
    """
    cause = e.__cause__
    if cause is None or "not a readable torch file" not in str(e):
        return _one_line(e)  # a torch file, but not an encoder's: its own message
    if isinstance(cause, OSError):
        return f"{ckpt}: cannot read ({cause.strerror or _one_line(cause)})"
    size = ckpt.stat().st_size if ckpt.is_file() else 0
    if size == 0:
        return f"{ckpt}: not a PyTorch checkpoint (the file is empty: 0 bytes)"
    text = _one_line(cause)
    code = re.search(r"Unsupported global: GLOBAL (\S+)", str(cause))
    if code:
        return (f"{ckpt}: not a checkpoint of weights (it pickles the Python object "
                f"{code.group(1)}, which is not loaded: unpickling runs code; save the "
                "model's state_dict() instead)")
    first = text.split(". ")[0].rstrip(".")
    # The unpickler reads garbage as opcodes: a KeyError or "Unsupported operand" says
    # only that the bytes are not a pickle.
    if isinstance(cause, KeyError) or "weights only load failed" in first.lower():
        first = "unrecognised contents"
    return _one_line(f"{ckpt}: not a PyTorch checkpoint ({size} bytes; "
                     f"{type(cause).__name__}: {first})")


def _check_finite_weights(ckpt: Path, model: AudioEncoder) -> None:
    """ValueError when a weight holds NaN or inf: every embedding would be NaN."""
    bad = [k for k, v in model.state_dict().items()
           if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise ValueError(f"{ckpt}: weights are not finite (NaN or inf in "
                         f"{', '.join(bad[:3])}{more}); a diverged training?")
