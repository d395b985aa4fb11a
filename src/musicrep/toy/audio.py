"""A generated music collection made of sound: audio files + tracks.csv + playlists.csv.

The counterpart of :mod:`musicrep.toy.melon` one step earlier in the chain: instead of mels
in the Melon layout it renders audio files and writes the two tables that
``scripts/import_audio.py`` reads, so audio -> mel -> training -> embedding of audio
files runs the way it does on a user's own collection. Nothing here sounds like real
music, and models trained on it are useless for real music.

Planted structure:

* Genres. ``n_major`` major genres, each with 2-3 detail genres. A major genre has its
  own tempo range, drum pattern (kick / snare / hi-hat on a 16-step grid), bass and lead
  waveforms (harmonic roll-off), scale, note density, register and a band of noise
  texture; a detail genre adds its own signature instrument (a tremolo pad at its own
  pitch) and shifts the tempo and swing. About 15 % of tracks have a second major
  genre and 20 % borrow another genre's drum pattern, so audio is evidence of genre,
  not proof.
* Mood. A hidden per-track value in [-1, 1] (calm .. energetic) that brightens the
  timbre, raises the level and drum velocity and adds notes. It is in no table.
* Playlists. Each has a theme (1-2 major genres, a mood preference), draws its tracks
  from the theme with a Zipf popularity skew and ~10 % noise tracks; title and tags
  come from the theme.

Files are wav, flac or ogg/vorbis (soundfile writes all three), at 22.05 or 44.1 kHz,
about a third stereo. Everything is deterministic in ``seed``: each track is rendered
from its own random stream (seed, track index), so rendering order and worker count do
not change the output. The output directory also holds ``generated.json`` (the
generated-data marker the importer carries into the Melon directory) and
``generated_truth.json`` (the hidden genres, moods and themes, keyed by track and
playlist ids; for evaluation only).
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..data.importer import LEVEL_SEP, LIST_SEP
from ..layout import GENERATED_MARKER, TRUTH_FILE
from ..io import write_json

GENERATOR = "musicrep.toy.audio.make_toy_audio"
SAMPLE_RATES = (22050, 44100)
FORMATS = ("wav", "flac", "ogg")
STEPS = 16  # grid steps per bar
_SALT_GENRE, _SALT_CATALOG, _SALT_PLAYLIST, _SALT_TRACK = 101, 103, 107, 109

# (major name, tag word, detail names); no "/" in names: it separates Major/Detail.
_GENRES: list[tuple[str, str, list[str]]] = [
    ("Electronic", "electronic", ["House", "Techno", "Ambient"]),
    ("Rock", "rock", ["Punk", "Hard Rock", "Indie Rock"]),
    ("Jazz", "jazz", ["Swing", "Bebop", "Fusion"]),
    ("Hip-hop", "hiphop", ["Boom Bap", "Trap", "Lo-fi"]),
    ("Classical", "classical", ["Baroque", "Romantic", "Minimal"]),
    ("Folk", "folk", ["Country", "Bluegrass", "Singer-songwriter"]),
    ("Reggae", "reggae", ["Roots", "Dub", "Ska"]),
    ("Pop", "pop", ["Synth-pop", "Ballad", "Dance-pop"]),
]
_SCALES = {"major": [0, 2, 4, 5, 7, 9, 11], "minor": [0, 2, 3, 5, 7, 8, 10],
           "penta": [0, 3, 5, 7, 10], "dorian": [0, 2, 3, 5, 7, 9, 10]}
_MOOD_TAGS = {"calm": ["chill", "calm", "sleep", "relax"], "mid": ["study", "cafe", "daily"],
              "energetic": ["workout", "party", "drive", "upbeat"]}
_NOISE_TAGS = ["favorites", "2010s", "summer", "night", "love", "retro", "new"]
_SYL = ["ka", "ri", "mo", "na", "se", "jin", "ho", "yu", "lo", "so", "min", "da", "ve", "tu"]


def _rng(seed: int, salt: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), salt, *[int(k) for k in key]])


def _mood_word(m: float) -> str:
    return "calm" if m < -0.3 else ("energetic" if m > 0.3 else "mid")


# ----------------------------------------------------------------------- genres


def make_genres(n_major: int, seed: int) -> list[dict[str, Any]]:
    """The hidden musical parameters of every major genre and its details."""
    if not 2 <= n_major <= len(_GENRES):
        raise ValueError(f"n_major must be between 2 and {len(_GENRES)}, got {n_major}")
    rng = _rng(seed, _SALT_GENRE)
    tempos = rng.permutation(np.linspace(70.0, 160.0, n_major))
    out = []
    for k in range(n_major):
        name, word, details = _GENRES[k]
        pattern = {  # 16-step onsets; each drum hits with its own probability per step
            "kick": (rng.random(STEPS) < 0.25) | (np.arange(STEPS) % rng.choice([4, 8]) == 0),
            "snare": (rng.random(STEPS) < 0.12) | (np.arange(STEPS) % 8 == rng.choice([4, 6])),
            "hat": rng.random(STEPS) < rng.uniform(0.2, 0.9),
        }
        out.append({
            "name": name, "word": word,
            "tempo": float(tempos[k]),
            "pattern": pattern,
            "drum_gain": float(rng.uniform(0.2, 1.0)),
            "bass_harm": float(rng.uniform(0.3, 2.0)),   # harmonic roll-off exponent
            "lead_harm": float(rng.uniform(0.6, 2.5)),
            "scale": str(rng.choice(list(_SCALES))),
            "density": float(rng.uniform(0.15, 0.7)),   # lead notes per grid step
            "register": int(rng.integers(57, 79)),      # lead's MIDI centre
            "noise_band": (float(rng.uniform(200, 3000)), float(rng.uniform(1.3, 3.0))),
            "noise_gain": float(rng.uniform(0.0, 0.25)),
            "mood_center": float(rng.uniform(-0.4, 0.4)),
            "details": [{
                "name": d,
                "pitch": int(rng.integers(40, 90)),      # signature pad, MIDI
                "tremolo": float(rng.uniform(2.0, 9.0)),  # Hz
                "gain": float(rng.uniform(0.08, 0.2)),
                "tempo_shift": float(rng.uniform(-8.0, 8.0)),
                "swing": float(rng.uniform(0.0, 0.3)),
            } for d in details[: int(rng.integers(2, 4))]],
        })
    return out


# ---------------------------------------------------------------------- catalogue


def make_catalog(n_tracks: int, genres: list[dict], seed: int) -> list[dict[str, Any]]:
    """Tracks with their genres, hidden mood, popularity, artist, album and file format."""
    rng = _rng(seed, _SALT_CATALOG)
    n_major = len(genres)
    weights = rng.permutation(1.0 / np.arange(1, n_major + 1) ** 0.5)
    weights /= weights.sum()
    n_artists = max(n_major, n_tracks // 5)
    a_major = rng.choice(n_major, size=n_artists, p=weights)
    a_major[:n_major] = np.arange(n_major)  # every genre has an artist
    a_name = ["".join(rng.choice(_SYL, size=int(rng.integers(2, 4)))).capitalize()
              for _ in range(n_artists)]
    rank = rng.permutation(n_tracks)
    tracks = []
    for i in range(n_tracks):
        a = int(rng.integers(0, n_artists)) if i >= n_artists else i
        g = int(a_major[a])
        majors = [g]
        if rng.random() < 0.15:
            majors.append(int(rng.choice([k for k in range(n_major) if k != g])))
        dets = [(m, int(rng.integers(0, len(genres[m]["details"])))) for m in majors]
        mood = float(np.clip(genres[g]["mood_center"] + rng.normal(0.0, 0.5), -1.0, 1.0))
        tracks.append({
            "index": i, "track_id": f"toy-{i:05d}", "majors": majors, "details": dets,
            "mood": mood, "pop": float(1.0 / (rank[i] + 1.0) ** 0.8),
            "artist": a_name[a], "album": f"{a_name[a]} vol. {int(rng.integers(1, 4))}",
            "title": f"{rng.choice(_SYL).capitalize()}{rng.choice(_SYL)} {i}",
            "sr": int(rng.choice(SAMPLE_RATES, p=[0.6, 0.4])),
            "channels": 2 if rng.random() < 0.35 else 1,
            "format": str(FORMATS[i % len(FORMATS)]),
        })
    return tracks


def make_playlists(n: int, tracks: list[dict], genres: list[dict], seed: int
                   ) -> list[dict[str, Any]]:
    """Themed playlists with a popularity skew; each has id, title, tags, tracks, theme."""
    rng = _rng(seed, _SALT_PLAYLIST)
    n_major = len(genres)
    mood = np.array([t["mood"] for t in tracks])
    pop = np.array([t["pop"] for t in tracks])
    member = np.zeros((len(tracks), n_major), dtype=bool)
    for i, t in enumerate(tracks):
        member[i, t["majors"]] = True
    out = []
    for p in range(n):
        theme = [int(x) for x in rng.choice(n_major, size=1 if rng.random() < 0.7 else 2,
                                            replace=False)]
        pref = float(rng.uniform(-1.0, 1.0))
        size = int(rng.integers(8, 31))
        w = pop * np.exp(-0.5 * ((mood - pref) / 0.4) ** 2) * member[:, theme].any(axis=1)
        n_theme = min(size - int(rng.binomial(size, 0.1)), int(np.count_nonzero(w)))
        chosen = list(rng.choice(len(tracks), size=n_theme, replace=False, p=w / w.sum())) \
            if n_theme else []
        w2 = pop.copy()
        w2[chosen] = 0.0
        noise = list(rng.choice(len(tracks), size=min(size - n_theme, int(np.count_nonzero(w2))),
                                replace=False, p=w2 / w2.sum()))
        mw = _mood_word(pref)
        tags = [genres[g]["word"] for g in theme]
        tags += list(rng.choice(_MOOD_TAGS[mw], size=int(rng.integers(1, 3)), replace=False))
        tags += list(rng.choice(_NOISE_TAGS, size=int(rng.integers(0, 2)), replace=False))
        out.append({
            "playlist_id": f"pl-{p:04d}",
            "title": f"{mw.capitalize()} {genres[theme[0]]['name']} mix",
            "tags": list(dict.fromkeys(str(t) for t in tags)),
            "tracks": [int(x) for x in rng.permutation(chosen + noise)],
            "theme": {"majors": theme, "mood": round(pref, 4)},
        })
    return out


# ---------------------------------------------------------------------- rendering


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


def render_track(track: dict, genres: list[dict], seconds: float, seed: int) -> np.ndarray:
    """The (n, channels) float32 signal of one track at ``track["sr"]``, peak <= 0.9."""
    rng = _rng(seed, _SALT_TRACK, track["index"])
    sr, n = track["sr"], round(seconds * track["sr"])
    g = genres[track["majors"][0]]
    m = track["mood"]
    bright = float(np.clip(0.5 + 0.4 * m + rng.normal(0.0, 0.1), 0.0, 1.0))
    energy = 1.0 + 0.5 * m
    dg, dd = track["details"][0]
    det = genres[dg]["details"][dd]
    rhythm = genres[int(rng.integers(0, len(genres)))] if rng.random() < 0.2 else g
    bpm = (g["tempo"] + det["tempo_shift"]) * rng.uniform(0.97, 1.03)
    step = 60.0 / bpm / 4.0  # a 16th note, seconds
    n_steps = int(seconds / step)
    onset = np.arange(n_steps) * step
    onset[1::2] += det["swing"] * step  # swing delays the off-steps
    pos = (onset * sr).astype(int)

    layers: list[tuple[np.ndarray, float]] = []  # (mono signal, pan in [-1, 1])

    def place(buf: np.ndarray, sample: np.ndarray, at: int, gain: float) -> None:
        end = min(n, at + sample.size)
        if at < end:
            buf[at:end] += gain * sample[: end - at]

    # Drums.
    kit = _drums(sr, bright, rng)
    drums = np.zeros(n, dtype=np.float32)
    pat = rhythm["pattern"]
    for s in range(n_steps):
        for name, hits in pat.items():
            if hits[s % STEPS] and rng.random() < 0.9 + 0.1 * m:
                place(drums, kit[name], pos[s], rhythm["drum_gain"] * energy * rng.uniform(0.7, 1.0))
    layers.append((drums, 0.0))

    # Bass and lead on the genre's scale; a second major genre lends its lead timbre.
    root = int(rng.integers(-6, 7))  # key: also moves the register
    scale = np.array(_SCALES[g["scale"]])
    bass = np.zeros(n, dtype=np.float32)
    for s in range(0, n_steps, 4):
        f0 = _midi_hz(36 + root + int(rng.choice(scale[:5])))
        place(bass, _tone(f0, int(4 * step * sr), sr, g["bass_harm"], bright * 0.5, rng), pos[s], 0.5)
    layers.append((bass, 0.0))
    lead_g = genres[track["majors"][-1]]
    lead = np.zeros(n, dtype=np.float32)
    density = np.clip(g["density"] * (1.0 + 0.4 * m), 0.05, 0.95)
    for s in range(n_steps):
        if rng.random() < density:
            deg = int(rng.integers(0, len(scale)))
            f0 = _midi_hz(g["register"] + root - 12 + scale[deg] + 12 * int(rng.integers(0, 2)))
            dur = int(step * sr * rng.choice([1, 2, 4]))
            place(lead, _tone(f0, dur, sr, lead_g["lead_harm"] - 0.8 * bright, bright, rng),
                  pos[s], 0.25 * energy)
    layers.append((lead, float(rng.uniform(-0.6, 0.6))))

    # Detail signature: a tremolo pad at the detail's own pitch, all through the track.
    t = np.arange(n, dtype=np.float32) / sr
    for dg, dd in track["details"]:
        d = genres[dg]["details"][dd]
        f = _midi_hz(d["pitch"])
        pad = (np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t)) \
            * (0.55 + 0.45 * np.sin(2 * np.pi * d["tremolo"] * t))
        layers.append((d["gain"] * pad.astype(np.float32), float(rng.uniform(-0.8, 0.8))))

    # Noise texture in the genre's band (vinyl hiss, wind, cymbal wash...).
    lo, ratio = g["noise_band"]
    noise = _shaped_noise(n, sr, lo, min(lo * ratio * (1.0 + bright), 0.45 * sr), rng)
    noise_gain = g["noise_gain"] * rng.uniform(0.3, 1.5) * (0.5 + 0.5 * bright)
    layers.append((0.3 * noise_gain * noise, 0.0))

    channels = track["channels"]
    out = np.zeros((n, channels), dtype=np.float32)
    for y, pan in layers:
        if channels == 1:
            out[:, 0] += y
        else:
            out[:, 0] += y * np.float32(np.sqrt((1.0 - pan) / 2.0))
            out[:, 1] += y * np.float32(np.sqrt((1.0 + pan) / 2.0))
    out = _eq(out, sr, rng)
    peak = float(np.abs(out).max()) or 1.0
    level = 0.9 * (0.55 + 0.45 * energy / 1.5)  # energetic tracks are louder
    return out * np.float32(level / peak)


def _render_job(track: dict, genres: list[dict], seconds: float, seed: int, path: str) -> None:
    import soundfile as sf

    y = render_track(track, genres, seconds, seed)
    fmt = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS")}
    container, subtype = fmt[track["format"]]
    sf.write(path, y, track["sr"], format=container, subtype=subtype)


# ------------------------------------------------------------------------- public


def make_toy_audio(out: Path, tracks: int = 500, playlists: int | None = None,
                   seconds: float = 30.0, n_major: int = 6, seed: int = 0,
                   workers: int = 1, *, force: bool = False, progress: bool = True
                   ) -> dict[str, Any]:
    """Render a generated collection to `out`; return a summary.

    Args:
        out: output directory: ``audio/``, ``tracks.csv``, ``playlists.csv``,
            ``generated.json``, ``generated_truth.json``. Built in a temporary sibling
            and renamed when complete; an existing non-empty `out` raises
            FileExistsError unless `force`.
        tracks: number of tracks (>= 10); playlists: number of playlists (default
            tracks // 2, at least 3); seconds: track length; n_major: major genres
            (2-8); seed: the one seed; workers: rendering processes.
    """
    from tqdm import tqdm

    t0 = time.perf_counter()
    out = Path(out)
    playlists = max(3, tracks // 2) if playlists is None else playlists
    if tracks < 10:
        raise ValueError("tracks must be at least 10")
    if playlists < 3:
        raise ValueError("playlists must be at least 3")
    if not 1.0 <= seconds <= 600.0:
        raise ValueError("seconds must be between 1 and 600")
    if seed < 0:
        raise ValueError("seed must be non-negative")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise FileExistsError(f"{out} exists and is not empty (use --force to replace it)")
    genres = make_genres(n_major, seed)
    cat = make_catalog(tracks, genres, seed)
    plist = make_playlists(playlists, cat, genres, seed)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{out.name}.tmp-", dir=out.parent))
    try:
        paths = []
        for t in cat:
            rel = f"audio/{t['index'] // 100:03d}/{t['track_id']}.{t['format']}"
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            paths.append(rel)
        jobs = [(t, genres, seconds, seed, str(tmp / p)) for t, p in zip(cat, paths)]
        bar = tqdm(total=len(jobs), desc="render", unit="track", disable=not progress)
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                for fut in [pool.submit(_render_job, *j) for j in jobs]:
                    fut.result()
                    bar.update(1)
        else:
            for j in jobs:
                _render_job(*j)
                bar.update(1)
        bar.close()
        _write_tables(tmp, cat, paths, plist, genres)
        write_json(tmp / GENERATED_MARKER, {
            "generator": GENERATOR, "seed": seed, "tracks": tracks, "playlists": playlists,
            "seconds": seconds, "n_major": n_major})
        write_json(tmp / TRUTH_FILE, {
            "generator": GENERATOR,
            "tracks": {t["track_id"]: {"majors": [genres[m]["name"] for m in t["majors"]],
                                       "mood": round(t["mood"], 4)} for t in cat},
            "playlists": {p["playlist_id"]: {"majors": [genres[m]["name"] for m in p["theme"]["majors"]],
                                             "mood": p["theme"]["mood"]} for p in plist},
        }, indent=None)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f"{out.name}.old-", dir=out.parent))
            os.replace(out, old / "x")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {
        "out": str(out), "seed": seed, "tracks": tracks, "playlists": playlists,
        "seconds": seconds, "n_major": n_major,
        "n_detail": sum(len(g["details"]) for g in genres),
        "formats": {f: sum(t["format"] == f for t in cat) for f in FORMATS},
        "stereo": sum(t["channels"] == 2 for t in cat),
        "sample_rates": {sr: sum(t["sr"] == sr for t in cat) for sr in SAMPLE_RATES},
        "memberships": sum(len(p["tracks"]) for p in plist),
        "elapsed": round(time.perf_counter() - t0, 1),
    }


def _write_tables(root: Path, cat: list[dict], paths: list[str], plist: list[dict],
                  genres: list[dict]) -> None:
    """tracks.csv and playlists.csv in the importer's input format."""
    with open(root / "tracks.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["track_id", "path", "genres", "artist", "album", "title"])
        for t, p in zip(cat, paths):
            labels = [f"{genres[m]['name']}{LEVEL_SEP}{genres[m]['details'][d]['name']}"
                      for m, d in t["details"]]
            w.writerow([t["track_id"], p, LIST_SEP.join(labels), t["artist"], t["album"], t["title"]])
    with open(root / "playlists.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["playlist_id", "track_id", "title", "tags"])
        for pl in plist:
            for i in pl["tracks"]:
                w.writerow([pl["playlist_id"], cat[i]["track_id"], pl["title"], LIST_SEP.join(pl["tags"])])
