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
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..audio import (
    FRAME_SIZE,
    SAMPLE_RATE,
    AudioError,
    iter_mel_frames,
    resample,
)
from ..training.checkpoint import load_audio_encoder
from .embed import (
    CHUNK_FRAMES,
    CHUNK_SECONDS,
    DEFAULT_LAYER,
    LAYERS,
    FileEmbeddings,
    chunk_frame_blocks,
    embed_files,
    encode_pieces,
    resolve_bf16,
    resolve_checkpoint,
)
from ..precision import resolve_device
from ..model.audio_cnn import AudioEncoder
from ..model.layers import EMBED_DIM

__all__ = [
    "AUTHORS_MODELS_URL",
    "Encoder",
    "GeneratedDataWarning",
    "load_encoder",
    "read_provenance",
    "run_config",
]

AUTHORS_MODELS_URL = "https://github.com/andrebola/contrastive-mir-learning/tree/master/models"
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 768000


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
    ``checkpoints/`` subfolder; None when there is none or it is not a JSON object."""
    p = Path(checkpoint)
    for folder in (p.parent, p.parent.parent if p.parent.name == "checkpoints" else None):
        if folder is not None and (folder / "config.json").is_file():
            try:
                cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise ValueError(f"{folder / 'config.json'}: unreadable config ({e})") from None
            return cfg if isinstance(cfg, dict) else None
    return None


def read_provenance(config: dict[str, Any] | None) -> dict[str, Any]:
    """``config["provenance"]`` with "data" always present ("unknown" when missing)."""
    prov = (config or {}).get("provenance")
    prov = dict(prov) if isinstance(prov, dict) else {}
    if prov.get("data") not in ("generated", "real", "unknown"):
        prov["data"] = "unknown"
    return prov


def _mono(audio: np.ndarray | torch.Tensor, sr: int) -> np.ndarray:
    """Validate the caller's audio and return a mono float32 signal at 16 kHz."""
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or not (
        MIN_SAMPLE_RATE <= int(sr) <= MAX_SAMPLE_RATE
    ):
        raise ValueError(
            f"sr must be the audio's sample rate in Hz (an integer {MIN_SAMPLE_RATE}-"
            f"{MAX_SAMPLE_RATE}), got {sr!r}"
        )
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().float().numpy()
    y = np.asarray(audio, dtype=np.float32)
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
        return np.concatenate(outs) if outs else np.zeros((0, self.dim), np.float32)

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
            audio: (samples,) or (channels, samples) float array (channels are averaged).
            sr: its sample rate in Hz (required; resampled to 16 kHz here).
        Returns:
            ((n, dim) float32 embeddings, (n,) float64 chunk start times in seconds).
            Chunks are 4.096 s and do not overlap; a last partial chunk is dropped and
            audio shorter than one chunk gives one padded chunk starting at 0.
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
        Raises ``AudioError`` naming the file and the cause when it cannot be used.
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
    the generated corpus. Raises FileNotFoundError or ValueError naming the file.
    """
    ckpt = resolve_checkpoint(path)
    dev = resolve_device(None if device is None else str(device))
    model = load_audio_encoder(ckpt, input_layout=input_layout, map_location="cpu")
    enc = Encoder(model, dev, layer, resolve_bf16(precision, dev), ckpt, run_config(ckpt),
                  batch_size)
    if enc.provenance["data"] == "generated" and str(ckpt) not in _warned:
        _warned.add(str(ckpt))
        warnings.warn(generated_warning(ckpt), GeneratedDataWarning, stacklevel=2)
    return enc
