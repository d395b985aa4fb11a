"""Audio files -> Melon-style mel spectrograms: framing, levels, band placement, decoding."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from musicrep.audio import (
    DB_FLOOR,
    MELON_SEGMENT,
    N_MELS,
    SAMPLE_RATE,
    AudioError,
    file_mel,
    mel_spectrogram_db,
    mel_to_frames,
    n_frames_for,
)


def _sine(freq: float, seconds: float, sr: int = SAMPLE_RATE, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _band_nearest(freq: float) -> int:
    """Index of the Slaney mel band whose centre is closest to ``freq`` (0-8 kHz, 48 bands)."""
    import librosa

    centres = librosa.mel_frequencies(N_MELS + 2, fmin=0.0, fmax=SAMPLE_RATE / 2, htk=False)[1:-1]
    return int(np.abs(centres - freq).argmin())


def test_frame_count_and_shape() -> None:
    # Centred framing, hop 256: 30 s = 480000 samples -> 1 + 480000 // 256 = 1 + 1875 = 1876
    # frames, the length of the Melon mels.
    mel = mel_spectrogram_db(np.zeros(30 * SAMPLE_RATE, dtype=np.float32) + 1e-3)
    assert mel.shape == (48, 1876) and mel.dtype == np.float32
    # 1000 samples -> 1 + 3 = 4 frames.
    assert mel_spectrogram_db(np.ones(1000, dtype=np.float32)).shape == (48, 4)
    assert n_frames_for(1000) == 4
    assert mel_to_frames(mel).shape == (1876, 48)


def test_db_levels_plausible() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.1, 2 * SAMPLE_RATE).astype(np.float32)
    mel = mel_spectrogram_db(noise)
    # Mel *power* in dB (20 log10 of power): white noise at -20 dBFS sits well above the
    # floor and below loud levels.
    assert -80 < mel.mean() < 20
    assert mel.max() < 60 and mel.min() > -120
    # Digital silence reaches exactly the documented floor: power 1e-10 -> -200 dB.
    silent = mel_spectrogram_db(np.zeros(4000, dtype=np.float32))
    assert DB_FLOOR == pytest.approx(-200.0)
    assert np.all(silent == np.float32(DB_FLOOR))
    # 20 dB more amplitude is +40 dB on this (power-squared) scale.
    louder = mel_spectrogram_db(noise * 10)
    assert (louder - mel).mean() == pytest.approx(40.0, abs=0.5)


def test_sine_peaks_in_right_band() -> None:
    mel = mel_spectrogram_db(_sine(1000.0, 1.0))
    assert int(mel.mean(axis=1).argmax()) == _band_nearest(1000.0)
    mel = mel_spectrogram_db(_sine(3000.0, 1.0))
    assert int(mel.mean(axis=1).argmax()) == _band_nearest(3000.0)


@pytest.mark.parametrize(
    "name, sr, channels, kw",
    [
        ("stereo44k.wav", 44100, 2, {}),
        ("mono22k.flac", 22050, 1, {}),
        ("stereo48k.ogg", 48000, 2, {"format": "OGG", "subtype": "VORBIS"}),
        ("mono48k.opus", 48000, 1, {"format": "OGG", "subtype": "OPUS"}),
        ("mono44k.mp3", 44100, 1, {"format": "MP3"}),
    ],
)
def test_formats_rates_channels(tmp_path, name, sr, channels, kw) -> None:
    y = _sine(1000.0, 2.0, sr)
    data = np.stack([y] * channels, axis=1) if channels > 1 else y
    path = tmp_path / name
    sf.write(path, data, sr, **kw)
    mel = file_mel(path)
    # 2 s at 16 kHz = 32000 samples -> 126 frames (lossy codecs may pad a few ms).
    assert mel.shape[0] == 48 and abs(mel.shape[1] - 126) <= 3
    assert int(mel.mean(axis=1).argmax()) == _band_nearest(1000.0)


def test_stereo_equals_mono_mix(tmp_path) -> None:
    left, right = _sine(1000.0, 1.0, 44100), _sine(2500.0, 1.0, 44100, amp=0.2)
    sf.write(tmp_path / "st.wav", np.stack([left, right], axis=1), 44100, subtype="FLOAT")
    sf.write(tmp_path / "mono.wav", (left + right) / 2, 44100, subtype="FLOAT")
    np.testing.assert_allclose(
        file_mel(tmp_path / "st.wav"), file_mel(tmp_path / "mono.wav"), atol=1e-3
    )


def test_segment_option(tmp_path) -> None:
    sf.write(tmp_path / "x.wav", _sine(500.0, 4.0), SAMPLE_RATE)
    # Whole file: 64000 samples -> 251 frames; 1 s window from 1 s: 16000 -> 63 frames.
    assert file_mel(tmp_path / "x.wav").shape == (48, 251)
    assert file_mel(tmp_path / "x.wav", segment=(1.0, 1.0)).shape == (48, 63)
    assert MELON_SEGMENT == (20.0, 30.0)
    with pytest.raises(AudioError, match="no audio samples"):
        file_mel(tmp_path / "x.wav", segment=MELON_SEGMENT)  # file ends before 20 s


def test_bad_files_raise_with_path(tmp_path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    with pytest.raises(AudioError, match="bad.wav: cannot decode"):
        file_mel(bad)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), SAMPLE_RATE)
    with pytest.raises(AudioError, match="no audio samples"):
        file_mel(empty)
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(300, dtype=np.float32), SAMPLE_RATE)
    with pytest.raises(AudioError, match="too short"):
        file_mel(short)
    with pytest.raises(AudioError, match="no such file"):
        file_mel(tmp_path / "missing.wav")


def test_mel_feeds_the_encoder() -> None:
    from musicrep.inference.embed import track_chunks
    from musicrep.model.audio_cnn import AudioEncoder

    frames = mel_to_frames(mel_spectrogram_db(_sine(440.0, 4.2)))  # 1 + 67200 // 256 = 263
    assert frames.shape == (263, 48)
    chunks, padded = track_chunks(frames)  # one full 256-frame chunk, tail dropped
    assert chunks.shape == (1, 256, 48) and not padded
    enc = AudioEncoder(width=0.125).eval()
    with torch.inference_mode():
        z, z_d = enc(enc.to_input(torch.from_numpy(chunks)))
    assert z.shape == (1, enc.z_dim) and z_d.shape == (1, 128)
    assert torch.isfinite(z_d).all()
