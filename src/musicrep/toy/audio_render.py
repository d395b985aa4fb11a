"""Rendering one track of the audio collection into sound: drums on the genre's
16-step pattern, bass and lead on its scale, the detail genres' tremolo pads and a band
of noise texture, mixed to mono or stereo through a random per-track EQ; and writing it
as a wav, flac or ogg file. Each track comes from its own random stream (seed, track
index), so rendering order and worker count do not change the output."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .audio_catalog import SCALES, STEPS
from .world import BORROWED_RHYTHM_RATE, AudioSalt, seeded_rng


def _midi_hz(m: float) -> float:
    return 440.0 * 2.0 ** ((m - 69.0) / 12.0)


def _tone(f0: float, n: int, sr: int, rolloff: float, bright: float, rng: np.random.Generator
          ) -> np.ndarray:
    """A harmonic note of n samples: partial k at 1/k**rolloff, fewer partials when dark."""
    t = np.arange(n, dtype=np.float32) / sr
    y = np.zeros(n, dtype=np.float32)
    n_harm = max(1, min(12, int((0.45 * sr) // f0), int(3 + 9 * bright)))
    for k in range(1, n_harm + 1):
        y += np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)).astype(np.float32) / k ** rolloff
    attack = min(n, int(0.005 * sr))
    env = np.exp(-t * rng.uniform(3.0, 8.0)).astype(np.float32)
    env[:attack] *= np.linspace(0.0, 1.0, attack, dtype=np.float32)
    return y * env


def _shaped_noise(n: int, sr: int, lo: float, hi: float, rng: np.random.Generator) -> np.ndarray:
    """White noise band-limited to [lo, hi] Hz (FFT mask), unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n).astype(np.float32))
    f = np.fft.rfftfreq(n, 1.0 / sr)
    spec[(f < lo) | (f > hi)] = 0.0
    y = np.fft.irfft(spec, n).astype(np.float32)
    return y / (np.sqrt(np.mean(y ** 2)) + 1e-9)


def _eq(y: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A random smooth EQ curve (tilt and a few broad bumps over log frequency), the
    per-track "mix" that keeps the band means from naming the genre on their own."""
    spec = np.fft.rfft(y, axis=0)
    f = np.fft.rfftfreq(y.shape[0], 1.0 / sr)
    x = np.log2(np.maximum(f, 20.0) / 1000.0)  # octaves around 1 kHz
    curve = rng.normal(0.0, 2.5) * x  # dB
    for _ in range(3):
        curve += rng.normal(0.0, 5.0) * np.exp(-0.5 * ((x - rng.uniform(-5.0, 3.5)) / rng.uniform(0.4, 1.2)) ** 2)
    spec *= (10.0 ** (curve / 20.0))[:, None]
    return np.fft.irfft(spec, y.shape[0], axis=0).astype(np.float32)


def _drums(sr: int, bright: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One-shot kick, snare and hi-hat samples."""
    t = np.arange(int(0.25 * sr), dtype=np.float32) / sr
    kick = np.sin(2 * np.pi * (45.0 * t + 60.0 * (1 - np.exp(-t * 30.0)) / 30.0)) * np.exp(-t * 14.0)
    snare = (0.6 * _shaped_noise(t.size, sr, 800.0, 6000.0, rng) * np.exp(-t * 22.0)
             + 0.4 * np.sin(2 * np.pi * 190.0 * t) * np.exp(-t * 30.0))
    th = t[: int(0.06 * sr)]
    hat = _shaped_noise(th.size, sr, 5000.0 + 3000.0 * bright, 0.45 * sr, rng) * np.exp(-th * 70.0)
    return {"kick": kick.astype(np.float32), "snare": snare.astype(np.float32),
            "hat": (0.5 * hat).astype(np.float32)}



@dataclass(frozen=True)
class _Take:
    """What every layer of one track shares: its grid, its mood and its random stream."""

    sr: int
    n: int  # samples
    step: float  # a 16th note, seconds
    pos: np.ndarray  # sample position of every grid step (swing applied)
    mood: float
    bright: float
    energy: float
    rng: np.random.Generator

    @property
    def n_steps(self) -> int:
        return self.pos.size


def render_track(track: dict, genres: list[dict], seconds: float, seed: int) -> np.ndarray:
    """The (n, channels) float32 signal of one track at ``track["sr"]``, peak <= 0.9."""
    rng = seeded_rng(seed, AudioSalt.TRACK, track["index"])
    sr, n = track["sr"], round(seconds * track["sr"])
    g = genres[track["majors"][0]]
    m = track["mood"]
    bright = float(np.clip(0.5 + 0.4 * m + rng.normal(0.0, 0.1), 0.0, 1.0))
    energy = 1.0 + 0.5 * m
    dg, dd = track["details"][0]
    det = genres[dg]["details"][dd]
    rhythm = genres[int(rng.integers(0, len(genres)))] if rng.random() < BORROWED_RHYTHM_RATE else g
    bpm = (g["tempo"] + det["tempo_shift"]) * rng.uniform(0.97, 1.03)
    step = 60.0 / bpm / 4.0  # a 16th note, seconds
    n_steps = int(seconds / step)
    onset = np.arange(n_steps) * step
    onset[1::2] += det["swing"] * step  # swing delays the off-steps
    take = _Take(sr, n, step, (onset * sr).astype(int), m, bright, energy, rng)

    layers: list[tuple[np.ndarray, float]] = []  # (mono signal, pan in [-1, 1])
    layers.append(_drum_layer(take, rhythm))
    # A second major genre lends its lead timbre.
    layers += _bass_and_lead(take, g, genres[track["majors"][-1]])
    layers += _pads(take, [genres[dg]["details"][dd] for dg, dd in track["details"]])
    layers.append(_noise_layer(take, g))
    return _mix(take, layers, track["channels"])


def _place(buf: np.ndarray, sample: np.ndarray, at: int, gain: float) -> None:
    """Add `gain` * `sample` to `buf` from sample `at` on, cut at the end of `buf`."""
    end = min(buf.size, at + sample.size)
    if at < end:
        buf[at:end] += gain * sample[: end - at]


def _drum_layer(take: _Take, rhythm: dict) -> tuple[np.ndarray, float]:
    """Drums: the rhythm genre's pattern, each hit with its own velocity."""
    rng, m = take.rng, take.mood
    kit = _drums(take.sr, take.bright, rng)
    drums = np.zeros(take.n, dtype=np.float32)
    pat = rhythm["pattern"]
    for s in range(take.n_steps):
        for name, hits in pat.items():
            if hits[s % STEPS] and rng.random() < 0.9 + 0.1 * m:
                _place(drums, kit[name], take.pos[s],
                       rhythm["drum_gain"] * take.energy * rng.uniform(0.7, 1.0))
    return drums, 0.0


def _bass_and_lead(take: _Take, g: dict, lead_g: dict) -> list[tuple[np.ndarray, float]]:
    """Bass and lead on the genre's scale; the lead has `lead_g`'s timbre."""
    rng, sr, step, pos, bright, m = take.rng, take.sr, take.step, take.pos, take.bright, take.mood
    root = int(rng.integers(-6, 7))  # key: also moves the register
    scale = np.array(SCALES[g["scale"]])
    bass = np.zeros(take.n, dtype=np.float32)
    for s in range(0, take.n_steps, 4):
        f0 = _midi_hz(36 + root + int(rng.choice(scale[:5])))
        _place(bass, _tone(f0, int(4 * step * sr), sr, g["bass_harm"], bright * 0.5, rng), pos[s], 0.5)
    lead = np.zeros(take.n, dtype=np.float32)
    density = np.clip(g["density"] * (1.0 + 0.4 * m), 0.05, 0.95)
    for s in range(take.n_steps):
        if rng.random() < density:
            deg = int(rng.integers(0, len(scale)))
            f0 = _midi_hz(g["register"] + root - 12 + scale[deg] + 12 * int(rng.integers(0, 2)))
            dur = int(step * sr * rng.choice([1, 2, 4]))
            _place(lead, _tone(f0, dur, sr, lead_g["lead_harm"] - 0.8 * bright, bright, rng),
                   pos[s], 0.25 * take.energy)
    return [(bass, 0.0), (lead, float(rng.uniform(-0.6, 0.6)))]


def _pads(take: _Take, details: list[dict]) -> list[tuple[np.ndarray, float]]:
    """Detail signatures: a tremolo pad at each detail's own pitch, all through the track."""
    t = np.arange(take.n, dtype=np.float32) / take.sr
    layers = []
    for d in details:
        f = _midi_hz(d["pitch"])
        pad = (np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t)) \
            * (0.55 + 0.45 * np.sin(2 * np.pi * d["tremolo"] * t))
        layers.append((d["gain"] * pad.astype(np.float32), float(take.rng.uniform(-0.8, 0.8))))
    return layers


def _noise_layer(take: _Take, g: dict) -> tuple[np.ndarray, float]:
    """Noise texture in the genre's band (vinyl hiss, wind, cymbal wash...)."""
    rng, sr, bright = take.rng, take.sr, take.bright
    lo, ratio = g["noise_band"]
    noise = _shaped_noise(take.n, sr, lo, min(lo * ratio * (1.0 + bright), 0.45 * sr), rng)
    noise_gain = g["noise_gain"] * rng.uniform(0.3, 1.5) * (0.5 + 0.5 * bright)
    return 0.3 * noise_gain * noise, 0.0


def _mix(take: _Take, layers: list[tuple[np.ndarray, float]], channels: int) -> np.ndarray:
    """The panned layers, EQ'd and scaled to the track's level."""
    out = np.zeros((take.n, channels), dtype=np.float32)
    for y, pan in layers:
        if channels == 1:
            out[:, 0] += y
        else:
            out[:, 0] += y * np.float32(np.sqrt((1.0 - pan) / 2.0))
            out[:, 1] += y * np.float32(np.sqrt((1.0 + pan) / 2.0))
    out = _eq(out, take.sr, take.rng)
    peak = float(np.abs(out).max()) or 1.0
    level = 0.9 * (0.55 + 0.45 * take.energy / 1.5)  # energetic tracks are louder
    return out * np.float32(level / peak)


def write_track(track: dict, genres: list[dict], seconds: float, seed: int, path: str) -> None:
    """Render one track and write it to `path` in its format (a worker's job)."""
    import soundfile as sf

    y = render_track(track, genres, seconds, seed)
    fmt = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS")}
    container, subtype = fmt[track["format"]]
    try:
        sf.write(path, y, track["sr"], format=container, subtype=subtype)
    except sf.SoundFileError as e:  # libsndfile keeps no errno: a system error is a failed
        # write (disk full), as an OSError naming the file (it is not the input's fault)
        why = str(e).strip().rstrip(".") or "system error"
        raise OSError(None, f"cannot write the audio file ({why}): is the disk full?",
                      str(path)) from None
