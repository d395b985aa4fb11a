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
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

__all__ = [
    "AUDIO_EXTENSIONS",
    "DB_FLOOR",
    "FRAME_SIZE",
    "HOP_SIZE",
    "MAX_SAMPLE_RATE",
    "MELON_SEGMENT",
    "MIN_SAMPLE_RATE",
    "N_MELS",
    "POWER_FLOOR",
    "SAMPLE_RATE",
    "AudioError",
    "file_frames",
    "file_mel",
    "iter_audio_blocks",
    "iter_mel_frames",
    "load_audio",
    "mel_filterbank",
    "mel_spectrogram_db",
    "mel_to_frames",
    "n_frames_for",
    "resample",
]

SAMPLE_RATE = 16000
FRAME_SIZE = 512
HOP_SIZE = 256
N_MELS = 48
CROP_FRAMES = 256  # frames per training crop and per embedding chunk: the CNN sees (48, 256)
# How a (frames, 48) crop becomes the CNN's (48, frames) input: "transpose" (correct) or
# "reference" (the original code's plain reshape, which interleaves time and frequency;
# its published checkpoints need it).
INPUT_LAYOUTS = ("transpose", "reference")
POWER_FLOOR = 1e-10
DB_FLOOR = float(20.0 * np.log10(POWER_FLOOR))  # -200 dB
MELON_SEGMENT: tuple[float, float] = (20.0, 30.0)  # (offset s, duration s): 20-50 s
# Sample rates accepted from a file header or a caller: below 1 kHz is not music (and a
# header claiming 1 Hz would resample to 16000 times its length); above 768 kHz is no
# format in use. A rate outside is a damaged header, reported as the file's problem.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 768000
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


def _decode_error(path: Path, err: BaseException) -> AudioError:
    """An AudioError naming why `path` (which exists) could not be decoded.

    libsndfile reports some unreadable files as "File does not exist or is not a
    regular file"; the file does exist here, so that text would send the user looking
    in the wrong place: it is replaced by what is known (size, extension).
    """
    reason = _first_line(err)
    if "does not exist" in reason.lower() or "no such file" in reason.lower():
        reason = "libsndfile and audioread do not recognise its contents"
    size = path.stat().st_size
    if size == 0:
        return AudioError(f"{path}: cannot decode audio (the file is empty: 0 bytes)")
    return AudioError(
        f"{path}: cannot decode audio: corrupt or unsupported {path.suffix or 'file'} "
        f"({size} bytes; {reason})"
    )


def _check_rate(path: Path, sr: int) -> int:
    """The file's sample rate, or an AudioError when its header gives an unusable one."""
    if not MIN_SAMPLE_RATE <= int(sr) <= MAX_SAMPLE_RATE:
        raise AudioError(f"{path}: sample rate {sr} Hz in the file header is not usable "
                         f"(expected {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz): damaged header?")
    return int(sr)


def _finite_signal(path: Path, y: np.ndarray, sr: int | None = None) -> np.ndarray:
    """``y`` unchanged, or an AudioError when it holds NaN or infinite samples.

    ``sr`` given: ``y`` is the resampler's output from ``sr`` Hz, whose samples were all
    finite, so a non-finite one means the samples were too large to resample (values
    near float32's limit, 3.4e38, where audio is expected in [-1, 1])."""
    if np.isfinite(y).all():
        return y
    if sr is None:
        raise AudioError(f"{path}: audio contains NaN or infinite samples")
    raise AudioError(f"{path}: audio samples too large: resampling from {sr} Hz overflows "
                     "to NaN or infinite values (expected samples in [-1, 1])")


def _resampled(path: Path, y: np.ndarray, sr: int, target_sr: int) -> np.ndarray:
    """``resample`` for a file's signal: any failure is an AudioError naming the file."""
    try:
        out = resample(y, sr, target_sr)
    # soxr and librosa raise several unrelated types for input they cannot handle; any
    # of them is this one file's problem, never the batch's.
    except Exception as e:  # noqa: BLE001
        raise AudioError(f"{path}: cannot resample from {sr} Hz ({_first_line(e)})") from None
    return _finite_signal(path, out, sr)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _check_window(path: Path, offset: float, duration: float | None) -> None:
    if offset < 0 or (duration is not None and duration <= 0):
        raise AudioError(f"{path}: offset must be >= 0 and duration > 0")
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if not path.is_file():
        raise AudioError(f"{path}: not a regular file")
    if not os.access(path, os.R_OK):
        raise AudioError(f"{path}: permission denied (not readable)")


def resample(y: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a mono signal (soxr, high quality); float32 out, a copy-free no-op if equal."""
    if int(orig_sr) <= 0:
        raise ValueError(f"sample rate must be a positive integer, got {orig_sr!r}")
    y = np.asarray(y, dtype=np.float32)
    if int(orig_sr) == int(target_sr):
        return y
    import librosa

    out = librosa.resample(y, orig_sr=int(orig_sr), target_sr=int(target_sr), res_type="soxr_hq")
    return np.asarray(out, dtype=np.float32)


def load_audio(
    path: str | os.PathLike,
    sample_rate: int = SAMPLE_RATE,
    offset: float = 0.0,
    duration: float | None = None,
) -> np.ndarray:
    """Decode ``path`` to a mono float32 signal at ``sample_rate``.

    ``offset`` and ``duration`` (seconds) select a window of the file; a window past
    the end gives whatever audio is there (possibly none). Raises ``AudioError``
    (message starting with the path) when the file is missing, cannot be decoded, or
    holds no samples or non-finite samples. Holds the whole signal: for long files use
    ``iter_audio_blocks``.
    """
    path = Path(path)
    _check_window(path, offset, duration)
    try:
        data, sr = _read_soundfile(path, offset, duration)
    # soundfile and audioread raise many unrelated exception types for undecodable
    # input; any of them means "cannot decode", reported with its first line.
    except Exception as sf_err:  # noqa: BLE001 -- libsndfile failed: try audioread
        try:
            data, sr = _read_librosa(path, offset, duration)
        except Exception:  # noqa: BLE001
            raise _decode_error(path, sf_err) from None
    if data.size == 0:
        where = " in the requested segment" if offset else ""
        raise AudioError(f"{path}: no audio samples{where}")
    sr = _check_rate(path, sr)
    y = _finite_signal(path, data.mean(axis=1, dtype=np.float64).astype(np.float32))
    return _resampled(path, y, sr, sample_rate)


BLOCK_SECONDS = 30.0  # decoding block of iter_audio_blocks: bounds memory on long files


def iter_audio_blocks(
    path: str | os.PathLike,
    sample_rate: int = SAMPLE_RATE,
    offset: float = 0.0,
    duration: float | None = None,
    block_seconds: float = BLOCK_SECONDS,
) -> Iterator[np.ndarray]:
    """Decode ``path`` block by block: mono float32 blocks at ``sample_rate``.

    The concatenated blocks equal ``load_audio`` of the same window (up to the
    resampler's rounding), but memory holds one block of about ``block_seconds``, so an
    hour-long file costs no more than a short one. Files libsndfile cannot read go
    through librosa/audioread whole (bounded by the file's length, not the block).
    Raises ``AudioError`` as ``load_audio`` does; the first block is checked before
    anything is yielded.
    """
    import soundfile as sf
    import soxr

    path = Path(path)
    _check_window(path, offset, duration)
    try:
        f = sf.SoundFile(str(path))
    except Exception as sf_err:  # noqa: BLE001 -- not for libsndfile: decode it whole
        try:
            data, sr = _read_librosa(path, offset, duration)
        except Exception:  # noqa: BLE001
            raise _decode_error(path, sf_err) from None
        if data.size == 0:
            raise AudioError(f"{path}: no audio samples" + (" in the requested segment"
                                                              if offset else ""))
        sr = _check_rate(path, sr)
        y = _finite_signal(path, data.mean(axis=1, dtype=np.float64).astype(np.float32))
        y = _resampled(path, y, sr, sample_rate)
        step = max(1, int(block_seconds * sample_rate))
        for start in range(0, len(y), step):
            yield y[start : start + step]
        return
    with f:
        sr = _check_rate(path, f.samplerate)
        start = round(offset * sr)
        if start > 0 and f.frames >= 0 and start >= f.frames:
            raise AudioError(f"{path}: no audio samples in the requested segment")
        try:
            if start > 0:
                f.seek(start)
        except Exception as e:  # noqa: BLE001
            raise _decode_error(path, e) from None
        left = -1 if duration is None else round(duration * sr)
        try:
            stream = None if sr == sample_rate else soxr.ResampleStream(
                sr, sample_rate, 1, dtype="float32", quality="HQ")
        except Exception as e:  # noqa: BLE001 -- see _resampled
            raise AudioError(f"{path}: cannot resample from {sr} Hz ({_first_line(e)})") from None
        step = max(1, int(block_seconds * sr))
        total = 0
        while left != 0:
            n = step if left < 0 else min(step, left)
            try:
                data = f.read(frames=n, dtype="float32", always_2d=True)
            except Exception as e:  # noqa: BLE001
                raise _decode_error(path, e) from None
            last = len(data) < n or (left > 0 and left - len(data) == 0)
            if left > 0:
                left -= len(data)
            y = _finite_signal(path, data.mean(axis=1, dtype=np.float64).astype(np.float32))
            total += len(y)
            if stream is not None:
                try:
                    y = stream.resample_chunk(y, last=last)
                except Exception as e:  # noqa: BLE001 -- see _resampled
                    raise AudioError(f"{path}: cannot resample from {sr} Hz "
                                     f"({_first_line(e)})") from None
                y = _finite_signal(path, y, sr)
            if len(y):
                yield y
            if last:
                break
        if total == 0:
            where = " in the requested segment" if offset else ""
            raise AudioError(f"{path}: no audio samples{where}")


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

    ``y`` is a mono signal at 16 kHz (resample first: ``resample``); any other
    ``sample_rate`` raises ValueError, since the frame and hop sizes are fixed in
    samples and would silently cover other durations. T = 1 + len(y) // 256.
    """
    import librosa

    if sample_rate != SAMPLE_RATE:
        raise ValueError(
            f"mel_spectrogram_db: the signal must be at {SAMPLE_RATE} Hz, got {sample_rate}; "
            "resample it first (musicrep.audio.resample)"
        )
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(
            f"mel_spectrogram_db: expected a non-empty 1-D signal, got shape {y.shape}"
        )
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below
        spec = librosa.stft(
            y,
            n_fft=FRAME_SIZE,
            hop_length=HOP_SIZE,
            window=_hann(),
            center=True,
            pad_mode="constant",
        )
        mel = _power_to_db(spec)
    return _finite_mel(mel, y)


def _hann() -> np.ndarray:
    """Symmetric Hann (Essentia's definition), no window normalisation."""
    import scipy.signal

    return scipy.signal.get_window("hann", FRAME_SIZE, fftbins=False)


def _finite_mel(mel: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``mel`` unchanged, or an AudioError when it is not finite.

    The signal was finite (the decoders check), so a non-finite mel means the STFT of
    float32 samples overflowed: samples near float32's limit (a float WAV holding
    1e38s, say), where audio is expected in [-1, 1]. Passing it on would give NaN
    embeddings or NaN dataset rows with nothing said."""
    if np.isfinite(mel).all():
        return mel
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    raise AudioError(f"audio samples too large: the mel spectrogram overflows to NaN or "
                     f"infinite values (peak |sample| {peak:.3g}; expected samples in [-1, 1])")


def _power_to_db(spec: np.ndarray) -> np.ndarray:
    """(257, T) complex STFT -> (48, T) float32 mel dB."""
    power = np.abs(spec).astype(np.float64) ** 2
    mel_power = mel_filterbank(SAMPLE_RATE) @ power
    return (20.0 * np.log10(np.maximum(mel_power, POWER_FLOOR))).astype(np.float32)


def iter_mel_frames(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """16 kHz signal blocks -> (t, 48) mel frame blocks (frames x bands), streamed.

    The concatenated output equals ``mel_to_frames(mel_spectrogram_db(whole signal))``:
    frame i is centred on sample 256 i with zero padding at both ends, so the carry
    between blocks is the last 256 samples. Memory holds about one input block.
    """
    import librosa

    half = FRAME_SIZE // 2
    carry = np.zeros(half, dtype=np.float32)  # the centred first frame's zero padding
    window = _hann()
    n_seen = 0

    def frames(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = (len(buf) - FRAME_SIZE) // HOP_SIZE + 1
        if n <= 0:
            return np.zeros((0, N_MELS), np.float32), buf
        used = buf[: (n - 1) * HOP_SIZE + FRAME_SIZE]
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below
            spec = librosa.stft(used, n_fft=FRAME_SIZE, hop_length=HOP_SIZE, window=window,
                                center=False)
            mel = _power_to_db(spec)
        return mel_to_frames(_finite_mel(mel, used)), buf[n * HOP_SIZE :]

    for block in blocks:
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        n_seen += len(block)
        out, carry = frames(np.concatenate([carry, block]))
        if len(out):
            yield out
    if n_seen == 0:
        return
    out, _ = frames(np.concatenate([carry, np.zeros(half, dtype=np.float32)]))
    if len(out):
        yield out


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
    frames, n_samples = file_frames(path, segment)
    return np.ascontiguousarray(frames.T)


def file_frames(
    path: str | os.PathLike,
    segment: tuple[float, float] | None = None,
    block_seconds: float = BLOCK_SECONDS,
) -> tuple[np.ndarray, int]:
    """(T, 48) mel frames of a file and its length in 16 kHz samples, decoded in blocks.

    As ``file_mel`` (same errors), in the (frames, bands) layout the encoder takes.
    """
    offset, duration = (0.0, None) if segment is None else (float(segment[0]), float(segment[1]))
    try:
        blocks = list(iter_mel_frames(_counted(iter_audio_blocks(
            path, SAMPLE_RATE, offset, duration, block_seconds), counter := [0])))
    except AudioError as e:  # the mel's own errors do not know the file: name it
        if str(e).startswith(f"{path}: "):
            raise
        raise AudioError(f"{path}: {e}") from None
    if counter[0] < FRAME_SIZE:
        raise AudioError(too_short_message(path, counter[0]))
    return np.concatenate(blocks), counter[0]


def too_short_message(path: str | os.PathLike, n_samples: int) -> str:
    return (f"{path}: too short ({n_samples} samples at {SAMPLE_RATE} Hz, "
            f"fewer than one {FRAME_SIZE}-sample frame)")


def _counted(blocks: Iterable[np.ndarray], counter: list[int]) -> Iterator[np.ndarray]:
    """Pass blocks through, adding their lengths to counter[0]."""
    for b in blocks:
        counter[0] += len(b)
        yield b
