"""The HEAR API (Holistic Evaluation of Audio Representations, hearbenchmark.com), so
its evaluation kit and tools that follow the same convention can load our encoders:

    import torch
    from musicrep import hear
    model = hear.load_model("models/contrastive_MF_gnr")            # or an audio_encoder.pt
    audio = torch.rand(3, 2 * model.sample_rate) * 2 - 1            # (n_sounds, n_samples)
    scene = hear.get_scene_embeddings(audio, model)                 # (3, 128)
    emb, ts = hear.get_timestamp_embeddings(audio, model)           # (3, 41, 128), (3, 41) ms

Model options. The HEAR kit passes ``--model-options '{"hop_ms": 250}'`` to
``load_model(path, **options)``; the accepted ones are ``MODEL_OPTIONS``:
``input_layout`` ("reference" for the authors' published ``audio_encoder.pt``, which
carry no layout; a model of this project has its own), ``hop_ms``, ``layer`` ("z_d" or
"z"), ``precision`` ("auto", "fp32", "bf16"), ``batch_size`` and ``device``. Any other
name is refused, so a typo cannot silently give the defaults.

Audio is float (n_sounds, n_samples) in [-1, 1] at ``model.sample_rate`` (16 kHz, the
rate of the Melon mels).

Timestamp embeddings: one every ``hop_ms`` milliseconds (default 50, HEAR's advice:
MAESTRO note onsets are scored with a 50 ms tolerance), at t = 0, hop, 2 hop, ... up
to the sound's duration, so n = floor(duration_ms / hop_ms) + 1. Each is the CNN's
output for the 256-frame (4.096 s) mel window centred on t (to within half a 16 ms
frame), the mel padded beyond both ends of the sound with the sound's own minimum dB
(its quietest level, as ``track_chunks`` pads short tracks), so the first and last
timestamps cover the start and the end. ``hop_ms`` is at most 2048 (half a window):
then every instant of the sound lies in some window and the last window, starting
less than one hop before the end, reaches past it.

Cost: every timestamp is one CNN forward of a 4.096 s window, so the cost grows as
1 / hop_ms. Measured for one 10 s sound on a shared 2-core CPU (fp32, load 5-6, so
upper bounds), shipped width-0.25 models / the paper's width 1.0: 50 ms (201 windows)
4.4-9.4 s / 21-23 s; 250 ms (41) 0.7-1.9 s / 4.3-5.4 s; 2048 ms (5) 0.35 s /
0.6-0.7 s; the paper's non-overlapping 4.096 s chunks (2, the old stamps) 0.3-0.4 s /
0.4-0.5 s. The default is HEAR's 50 ms all the same: the HEAR kit runs on a GPU, where
batched windows make it cheap, and its transcription tasks need it; on a CPU pass
``{"hop_ms": 250}`` (five times fewer forwards) or more.

Scene embeddings are the paper's track embedding, whatever ``hop_ms`` is: the mean
over the sound's non-overlapping 4.096 s chunks (a sound shorter than one chunk is
padded to one), exactly what ``load_encoder(...).embed`` and ``encode.py`` give; a
last partial chunk is not used, as in the paper's evaluation. Embeddings are not
L2-normalised. Non-finite embeddings raise ValueError rather than reach the kit.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from .audio import CROP_FRAMES, FRAME_SIZE, HOP_SIZE, N_MELS, mel_spectrogram_db, mel_to_frames
from .inference.embed import PRECISIONS, embed_stream, encode_pieces, resolve_bf16
from .inference.encoder import Encoder, load_encoder

__all__ = [
    "DEFAULT_HOP_MS",
    "MODEL_OPTIONS",
    "HearModel",
    "get_scene_embeddings",
    "get_timestamp_embeddings",
    "load_model",
    "timestamps_ms",
]

MODEL_OPTIONS = ("batch_size", "device", "hop_ms", "input_layout", "layer", "precision")
DEFAULT_HOP_MS = 50.0
MAX_HOP_MS = 1000.0 * CROP_FRAMES * HOP_SIZE / Encoder.sample_rate / 2  # 2048 ms
FRAME_MS = 1000.0 * HOP_SIZE / Encoder.sample_rate  # 16 ms between mel frames
MAX_PEAK = 4.0  # 12 dB over full scale: beyond, the floats are not [-1, 1] audio


def _check_hop(hop_ms: Any) -> float:
    if isinstance(hop_ms, bool) or not isinstance(hop_ms, (int, float)) or not (
        FRAME_MS <= hop_ms <= MAX_HOP_MS
    ):
        raise ValueError(
            f"model option hop_ms must be a number of milliseconds from {FRAME_MS:g} (one "
            f"mel frame) to {MAX_HOP_MS:g} (half a window), got {hop_ms!r}"
        )
    return float(hop_ms)


class HearModel(torch.nn.Module):
    """An Encoder with the attributes HEAR asks for (a torch Module holding the CNN).

    ``.to()``, ``.cuda()`` and ``.cpu()`` move the weights and keep the encoder's
    ``device`` (and its "auto" bf16 choice) in step, so embedding runs where the
    weights are. A device that holds no data ("meta"), an unknown device name, CUDA
    without a GPU, or a dtype other than float32 is refused with ValueError before
    anything moves.
    """

    def __init__(self, encoder: Encoder, hop_ms: float = DEFAULT_HOP_MS, precision: str = "auto"):
        super().__init__()
        self.encoder = encoder
        self.cnn = encoder.model  # registered, so .to()/.parameters() reach the weights
        self.sample_rate = encoder.sample_rate
        self.scene_embedding_size = encoder.dim
        self.timestamp_embedding_size = encoder.dim
        self.hop_ms = hop_ms
        self.precision = precision

    @property
    def hop_ms(self) -> float:
        """Milliseconds between timestamp embeddings (checked when set)."""
        return self._hop_ms

    @hop_ms.setter
    def hop_ms(self, value: float) -> None:
        self._hop_ms = _check_hop(value)

    @property
    def device(self) -> torch.device:
        """Where the weights are, hence where the CNN runs."""
        return self.encoder.device

    def to(self, *args: Any, **kwargs: Any) -> HearModel:
        try:
            device, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"HearModel.to: not a device or dtype ({e}); use 'cpu', "
                             "'cuda' or 'cuda:N'") from None
        if dtype is not None and dtype != torch.float32:
            raise ValueError(f"HearModel.to: the weights stay float32, got {dtype}; load "
                             "with the model option precision='bf16' for bfloat16 compute")
        if device is not None:
            _check_device(device)
        return super().to(*args, **kwargs)

    def cuda(self, device: int | torch.device | None = None) -> HearModel:
        if isinstance(device, int):
            device = torch.device("cuda", device)
        return self.to(device if device is not None else "cuda")

    def cpu(self) -> HearModel:
        return self.to("cpu")

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> HearModel:
        """Every move (to, cuda, cpu, ...) goes through here: follow the weights."""
        super()._apply(fn, *args, **kwargs)
        dev = next(self.cnn.parameters()).device
        if dev != self.encoder.device:
            self.encoder.device = dev
            if dev.type != "meta":
                self.encoder.bf16 = resolve_bf16(self.precision, dev)
        return self


def _check_device(device: torch.device) -> None:
    if device.type == "meta":
        raise ValueError("HearModel.to: the 'meta' device holds no weights; use 'cpu' or 'cuda'")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"HearModel.to: device {str(device)!r} requested but CUDA is not "
                         "available")


def _missing_layout(path: str | os.PathLike) -> ValueError:
    return ValueError(
        f"{path}: a plain state dict with no input layout saved with it; pass it as a "
        """model option: --model-options '{"input_layout": "reference"}' for the authors' """
        'published checkpoints ("transpose" for a model trained by this project)'
    )


def load_model(model_file_path: str | os.PathLike = "", **model_options: Any) -> HearModel:
    """Load a checkpoint file or model folder; ``model_options`` are the HEAR kit's
    ``--model-options`` JSON (see the module docstring and ``MODEL_OPTIONS``).

    Raises ValueError for an unknown option or a bad value, naming what is accepted,
    and FileNotFoundError for a missing file.
    """
    if not str(model_file_path):
        raise ValueError("model_file_path: give a checkpoint file or model folder")
    unknown = sorted(set(model_options) - set(MODEL_OPTIONS))
    if unknown:
        raise ValueError(
            f"unknown model option(s) {', '.join(map(repr, unknown))}; accepted: "
            f"{', '.join(MODEL_OPTIONS)}"
        )
    hop_ms = _check_hop(model_options.pop("hop_ms", DEFAULT_HOP_MS))
    precision = model_options.get("precision", "auto")
    if precision not in PRECISIONS:
        raise ValueError(f"model option precision must be one of {PRECISIONS}, got {precision!r}")
    try:
        encoder = load_encoder(model_file_path, **model_options)
    except ValueError as e:
        # load_audio_encoder words this case for the command line (--input-layout),
        # which the HEAR kit cannot pass.
        if model_options.get("input_layout") is None and "no input layout" in str(e):
            raise _missing_layout(model_file_path) from None
        raise
    return HearModel(encoder, hop_ms, precision)


def _check_audio(audio: Any, model: HearModel) -> np.ndarray:
    """HEAR's audio tensor -> (n_sounds, n_samples) float32 numpy on the CPU."""
    if not isinstance(model, HearModel):
        raise TypeError(f"model must be what hear.load_model returns, got {type(model).__name__}")
    weight = next(model.cnn.parameters())
    if weight.device.type == "meta" or weight.dtype != torch.float32:
        raise ValueError(f"the model's weights are {weight.dtype} on {weight.device}: load "
                         "it again (hear.load_model) and move it with .to('cpu'/'cuda')")
    if not isinstance(audio, torch.Tensor) or audio.dim() != 2:
        raise ValueError("audio must be a float tensor of shape (n_sounds, n_samples)")
    if not audio.is_floating_point():
        raise ValueError(f"audio must be float samples in [-1, 1], got {audio.dtype}")
    if audio.shape[0] and audio.shape[1] < FRAME_SIZE:
        raise ValueError(f"audio too short: {audio.shape[1]} samples at {model.sample_rate} "
                         f"Hz, fewer than one {FRAME_SIZE}-sample frame")
    y = audio.detach().cpu().float().numpy()
    if not np.isfinite(y).all():
        raise ValueError("audio contains NaN or infinite samples")
    if y.size and np.abs(y).max() > MAX_PEAK:
        raise ValueError(f"audio peaks at {np.abs(y).max():.4g}: expected float samples in "
                         "[-1, 1] (integer PCM must be divided by its full scale, e.g. 32768)")
    return y


def _finite(emb: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(emb).all(axis=tuple(range(1, emb.ndim)))
    if bad.any():
        raise ValueError(f"the model gave NaN or infinite embeddings for sound(s) "
                         f"{np.flatnonzero(bad).tolist()}: its weights are broken")
    return emb


def _frames(y: np.ndarray) -> np.ndarray:
    """(T, 48) mel frames of one 16 kHz sound; frame j is centred on t = 16 j ms."""
    return mel_to_frames(mel_spectrogram_db(y))


def timestamps_ms(n_samples: int, sample_rate: int, hop_ms: float) -> np.ndarray:
    """(n,) float64 timestamps 0, hop, 2 hop, ... <= the duration, n = floor(d/hop) + 1."""
    duration_ms = 1000.0 * n_samples / sample_rate
    n = math.floor(duration_ms / hop_ms + 1e-9) + 1
    return hop_ms * np.arange(n)


def _windows(frames: np.ndarray, ts: np.ndarray, batch: int) -> Iterator[np.ndarray]:
    """(k, 256, 48) mel windows centred on the timestamps ``ts``, ``batch`` at a time.

    The mel is padded by half a window at both ends with its own minimum dB. A window
    of frames [s, s + 256) spans the frame centres 16 s to 16 (s + 255) ms, so its
    centre is 16 (s + 127.5) ms: s = round(t / 16 - 127.5), within 8 ms of t.
    """
    half = CROP_FRAMES // 2
    pad = np.full((half, N_MELS), frames.min(), dtype=np.float32)
    padded = np.concatenate([pad, frames, pad])
    starts = np.rint(ts / FRAME_MS - (CROP_FRAMES - 1) / 2).astype(np.int64) + half
    starts = np.clip(starts, 0, len(padded) - CROP_FRAMES)
    for i in range(0, len(starts), batch):
        yield np.stack([padded[s : s + CROP_FRAMES] for s in starts[i : i + batch]])


def _encode(
    model: HearModel, pieces: Iterator[tuple[int, np.ndarray]]
) -> Iterator[tuple[int, np.ndarray]]:
    """(sound, windows) pieces -> (sound, outputs), batched across sounds on the model's device."""
    enc = model.encoder
    return encode_pieces(enc.model, pieces, enc.layer, enc.device, enc.batch_size, enc.bf16)


def get_timestamp_embeddings(
    audio: torch.Tensor, model: HearModel
) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_sounds, n_samples) -> ((n_sounds, n, D) float32, (n_sounds, n) float32 ms):
    one embedding every ``model.hop_ms``, at t = k hop_ms, from the 4.096 s window
    centred on t (see the module docstring)."""
    y = _check_audio(audio, model)
    ts = timestamps_ms(y.shape[1], model.sample_rate, model.hop_ms)
    emb = np.zeros((len(y), len(ts), model.timestamp_embedding_size), np.float32)
    batch = model.encoder.batch_size
    pieces = ((i, w) for i, x in enumerate(y) for w in _windows(_frames(x), ts, batch))
    filled = np.zeros(len(y), dtype=np.int64)
    for i, out in _encode(model, pieces):
        emb[i, filled[i] : filled[i] + len(out)] = out
        filled[i] += len(out)
    stamps = np.broadcast_to(ts.astype(np.float32), (len(y), len(ts))).copy()
    return (torch.from_numpy(_finite(emb)).to(audio.device),
            torch.from_numpy(stamps).to(audio.device))


def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """(n_sounds, n_samples) -> (n_sounds, D) float32: each sound's mean over its
    non-overlapping 4.096 s chunks, the paper's track embedding (independent of hop_ms)."""
    y = _check_audio(audio, model)
    enc = model.encoder
    means = embed_stream(enc.model, (_frames(x) for x in y), enc.layer, enc.device,
                         enc.batch_size, bf16=enc.bf16)
    emb = np.zeros((len(y), model.scene_embedding_size), np.float32)
    for i, row in enumerate(means):
        emb[i] = row
    return torch.from_numpy(_finite(emb)).to(audio.device)
