"""Audio file -> 48-band mel spectrogram in dB, computed as the Melon Playlist Dataset's.

The Melon mels (``arena_mel/{id//1000}/{id}.npy``) were made with Essentia from 16 kHz
mono audio: frames of 512 samples, hop 256, Hann window, 48 mel bands on the Slaney
mel scale with unit-area triangles (Essentia's ``slaneyMel`` / ``unit_tri`` /
``linear`` weighting, which is librosa's ``htk=False, norm="slaney"``), mel *power*
bands, and ``2 * lin2db`` = 20 * log10(mel power). This module reproduces that chain
with soundfile + librosa so that a user's own audio can be fed to encoders trained on
Melon (or to the authors' published checkpoints):

- decoding: soundfile (libsndfile: wav, flac, ogg/vorbis, ogg/opus, mp3, aiff, ...),
  falling back to librosa/audioread for anything else it can open;
- channels are averaged to mono (Essentia's MonoLoader mixes the same way), then
  resampled to 16 kHz (soxr, high quality);
- framing as Essentia's FrameCutter with its defaults: the first frame is centred on
  sample 0 with zero padding, so a signal of n samples gives 1 + n // 256 frames
  (30 s -> 1876 frames, the Melon length);
- a symmetric Hann window without normalisation (Essentia's ``hann`` and the
  ``normalized=False`` its mel extractors use), magnitude spectrum squared;
- dB floor: mel powers below 1e-10 are clipped to 1e-10 before the log, so silence
  reads -200 dB. This is Essentia's ``lin2db`` silence cutoff (power 1e-10 ->
  -100 dB) times 2, the same value Melon's all-silent frames carry.

Melon used the 20-50 s segment of each song; ``MELON_SEGMENT`` = (20.0, 30.0) gives the
same (offset, duration) window, while the default is the whole file. The result is
(48, T) float32, bands x frames like the arena_mel files; ``mel_to_frames`` gives the
(T, 48) frames x bands layout of the HDF5 datasets and the encoder's crops.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

__all__ = [
    "AUDIO_EXTENSIONS",
    "DB_FLOOR",
    "FRAME_SIZE",
    "HOP_SIZE",
    "MELON_SEGMENT",
    "N_MELS",
    "POWER_FLOOR",
    "SAMPLE_RATE",
    "AudioError",
    "file_mel",
    "load_audio",
    "mel_filterbank",
    "mel_spectrogram_db",
    "mel_to_frames",
    "n_frames_for",
]

SAMPLE_RATE = 16000
FRAME_SIZE = 512
HOP_SIZE = 256
N_MELS = 48
POWER_FLOOR = 1e-10
DB_FLOOR = float(20.0 * np.log10(POWER_FLOOR))  # -200 dB
MELON_SEGMENT: tuple[float, float] = (20.0, 30.0)  # (offset s, duration s): 20-50 s
AUDIO_EXTENSIONS = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".w64", ".caf"}
)


class AudioError(ValueError):
    """An audio file that cannot be turned into a mel spectrogram; the message says why."""


def n_frames_for(n_samples: int) -> int:
    """Number of mel frames for a 16 kHz signal of ``n_samples`` (centred framing)."""
    return 1 + int(n_samples) // HOP_SIZE


def _read_soundfile(path: Path, offset: float, duration: float | None) -> tuple[np.ndarray, int]:
    import soundfile as sf

    with sf.SoundFile(str(path)) as f:
        sr = int(f.samplerate)
        start = round(offset * sr)
        if start > 0:
            if f.frames >= 0 and start >= f.frames:
                return np.zeros((0, f.channels), dtype=np.float32), sr
            f.seek(start)
        n = -1 if duration is None else round(duration * sr)
        data = f.read(frames=n, dtype="float32", always_2d=True)
    return data, sr


def _read_librosa(path: Path, offset: float, duration: float | None) -> tuple[np.ndarray, int]:
    import librosa

    # librosa warns when it falls back from soundfile to audioread; the caller already
    # knows, and the warnings would bury the one-line reason we report.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y, sr = librosa.load(str(path), sr=None, mono=False, offset=offset, duration=duration)
    y = np.asarray(y, dtype=np.float32)
    # librosa gives (channels, n) or (n,); bring it to soundfile's (n, channels).
    data = y[:, None] if y.ndim == 1 else y.T
    return data, int(sr)


def load_audio(
    path: str | os.PathLike,
    sample_rate: int = SAMPLE_RATE,
    offset: float = 0.0,
    duration: float | None = None,
) -> np.ndarray:
    """Decode ``path`` to a mono float32 signal at ``sample_rate``.

    ``offset`` and ``duration`` (seconds) select a window of the file; a window past
    the end gives whatever audio is there (possibly none). Raises ``AudioError``
    (message starting with the path) when the file cannot be decoded or holds no
    samples or non-finite samples.
    """
    path = Path(path)
    if offset < 0 or (duration is not None and duration <= 0):
        raise AudioError(f"{path}: offset must be >= 0 and duration > 0")
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        data, sr = _read_soundfile(path, offset, duration)
    # soundfile and audioread raise many unrelated exception types for undecodable
    # input; any of them means "cannot decode", reported with its first line.
    except Exception as sf_err:  # noqa: BLE001 -- libsndfile failed: try audioread
        try:
            data, sr = _read_librosa(path, offset, duration)
        except Exception:  # noqa: BLE001
            text = str(sf_err).strip()
            reason = text.splitlines()[0] if text else type(sf_err).__name__
            raise AudioError(f"{path}: cannot decode audio ({reason})") from None
    if data.size == 0:
        where = " in the requested segment" if offset else ""
        raise AudioError(f"{path}: no audio samples{where}")
    y = data.mean(axis=1, dtype=np.float64).astype(np.float32)
    if not np.isfinite(y).all():
        raise AudioError(f"{path}: audio contains NaN or infinite samples")
    if sr != sample_rate:
        import librosa

        y = librosa.resample(y, orig_sr=sr, target_sr=sample_rate, res_type="soxr_hq")
        y = np.asarray(y, dtype=np.float32)
    return y


def mel_filterbank(
    sample_rate: int = SAMPLE_RATE, n_fft: int = FRAME_SIZE, n_mels: int = N_MELS
) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) Slaney-scale filters with unit-area triangles, 0 to Nyquist."""
    import librosa

    return librosa.filters.mel(
        sr=sample_rate,
        n_fft=n_fft,
        n_mels=n_mels,
        fmin=0.0,
        fmax=sample_rate / 2.0,
        htk=False,
        norm="slaney",
        dtype=np.float64,
    )


def mel_spectrogram_db(y: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(48, T) float32 mel spectrogram in dB (20 * log10 of mel power, floor -200 dB).

    ``y`` is a mono signal already at ``sample_rate`` (16 kHz for Melon-compatible
    output); T = 1 + len(y) // 256.
    """
    import librosa
    import scipy.signal

    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(
            f"mel_spectrogram_db: expected a non-empty 1-D signal, got shape {y.shape}"
        )
    # Symmetric Hann (Essentia's definition), no window normalisation.
    window = scipy.signal.get_window("hann", FRAME_SIZE, fftbins=False)
    spec = librosa.stft(
        y,
        n_fft=FRAME_SIZE,
        hop_length=HOP_SIZE,
        window=window,
        center=True,
        pad_mode="constant",
    )
    power = np.abs(spec).astype(np.float64) ** 2
    mel_power = mel_filterbank(sample_rate) @ power
    return (20.0 * np.log10(np.maximum(mel_power, POWER_FLOOR))).astype(np.float32)


def mel_to_frames(mel: np.ndarray) -> np.ndarray:
    """(48, T) bands x frames -> contiguous (T, 48) frames x bands (the HDF5 layout)."""
    mel = np.asarray(mel)
    if mel.ndim != 2 or mel.shape[0] != N_MELS:
        raise ValueError(f"mel_to_frames: expected shape ({N_MELS}, T), got {mel.shape}")
    return np.ascontiguousarray(mel.T)


def file_mel(
    path: str | os.PathLike,
    segment: tuple[float, float] | None = None,
) -> np.ndarray:
    """Mel spectrogram (48, T) float32 in dB of an audio file, Melon settings.

    ``segment`` = (offset, duration) in seconds restricts the analysis to that window
    (``MELON_SEGMENT`` for Melon's 20-50 s); None (default) analyses the whole file.
    Raises ``AudioError`` for unreadable or empty files, and for signals shorter than
    one analysis frame (512 samples = 32 ms at 16 kHz).
    """
    offset, duration = (0.0, None) if segment is None else (float(segment[0]), float(segment[1]))
    y = load_audio(path, SAMPLE_RATE, offset=offset, duration=duration)
    if y.size < FRAME_SIZE:
        raise AudioError(
            f"{path}: too short ({y.size} samples at {SAMPLE_RATE} Hz, "
            f"fewer than one {FRAME_SIZE}-sample frame)"
        )
    return mel_spectrogram_db(y, SAMPLE_RATE)
