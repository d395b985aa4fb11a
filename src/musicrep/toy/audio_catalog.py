"""The audio collection's catalogue: the hidden musical parameters of its genres (tempo,
drum pattern, timbres, scale, register, noise texture, detail signatures), its tracks
(genres, hidden mood, popularity, artist, album, file format) and its themed
playlists. Rendering them into sound is :mod:`musicrep.toy.audio_render`'s job."""

from __future__ import annotations

from typing import Any

import numpy as np

from .world import (AUDIO_GENRES, AUDIO_MOOD_TAGS, AUDIO_NOISE_TAGS, AUDIO_SYLLABLES,
                    MOOD_CENTER_SPREAD, NOISE_RATE, ONE_MAJOR_THEME_RATE, SECOND_MAJOR_RATE,
                    AudioSalt, genre_popularity, mood_word, seeded_rng, zipf_popularity)

SAMPLE_RATES = (22050, 44100)
FORMATS = ("wav", "flac", "ogg")
STEPS = 16  # grid steps per bar
SCALES = {"major": [0, 2, 4, 5, 7, 9, 11], "minor": [0, 2, 3, 5, 7, 8, 10],
          "penta": [0, 3, 5, 7, 10], "dorian": [0, 2, 3, 5, 7, 9, 10]}


# ----------------------------------------------------------------------- genres


def make_genres(n_major: int, seed: int) -> list[dict[str, Any]]:
    """The hidden musical parameters of every major genre and its details."""
    if not 2 <= n_major <= len(AUDIO_GENRES):
        raise ValueError(f"n_major must be between 2 and {len(AUDIO_GENRES)}, got {n_major}")
    rng = seeded_rng(seed, AudioSalt.GENRE)
    tempos = rng.permutation(np.linspace(70.0, 160.0, n_major))
    out = []
    for k in range(n_major):
        name, word, details = AUDIO_GENRES[k]
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
            "scale": str(rng.choice(list(SCALES))),
            "density": float(rng.uniform(0.15, 0.7)),   # lead notes per grid step
            "register": int(rng.integers(57, 79)),      # lead's MIDI centre
            "noise_band": (float(rng.uniform(200, 3000)), float(rng.uniform(1.3, 3.0))),
            "noise_gain": float(rng.uniform(0.0, 0.25)),
            "mood_center": float(rng.uniform(-MOOD_CENTER_SPREAD, MOOD_CENTER_SPREAD)),
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
    rng = seeded_rng(seed, AudioSalt.CATALOG)
    n_major = len(genres)
    weights = genre_popularity(n_major, rng)
    n_artists = max(n_major, n_tracks // 5)
    a_major = rng.choice(n_major, size=n_artists, p=weights)
    a_major[:n_major] = np.arange(n_major)  # every genre has an artist
    a_name = ["".join(rng.choice(AUDIO_SYLLABLES, size=int(rng.integers(2, 4)))).capitalize()
              for _ in range(n_artists)]
    rank = rng.permutation(n_tracks)
    tracks = []
    for i in range(n_tracks):
        a = int(rng.integers(0, n_artists)) if i >= n_artists else i
        g = int(a_major[a])
        majors = [g]
        if rng.random() < SECOND_MAJOR_RATE:
            majors.append(int(rng.choice([k for k in range(n_major) if k != g])))
        dets = [(m, int(rng.integers(0, len(genres[m]["details"])))) for m in majors]
        mood = float(np.clip(genres[g]["mood_center"] + rng.normal(0.0, 0.5), -1.0, 1.0))
        tracks.append({
            "index": i, "track_id": f"toy-{i:05d}", "majors": majors, "details": dets,
            "mood": mood, "pop": float(zipf_popularity(rank[i])),
            "artist": a_name[a], "album": f"{a_name[a]} vol. {int(rng.integers(1, 4))}",
            "title": f"{rng.choice(AUDIO_SYLLABLES).capitalize()}{rng.choice(AUDIO_SYLLABLES)} {i}",
            "sr": int(rng.choice(SAMPLE_RATES, p=[0.6, 0.4])),
            "channels": 2 if rng.random() < 0.35 else 1,
            "format": str(FORMATS[i % len(FORMATS)]),
        })
    return tracks


def make_playlists(n: int, tracks: list[dict], genres: list[dict], seed: int
                   ) -> list[dict[str, Any]]:
    """Themed playlists with a popularity skew; each has id, title, tags, tracks, theme."""
    rng = seeded_rng(seed, AudioSalt.PLAYLIST)
    n_major = len(genres)
    mood = np.array([t["mood"] for t in tracks])
    pop = np.array([t["pop"] for t in tracks])
    member = np.zeros((len(tracks), n_major), dtype=bool)
    for i, t in enumerate(tracks):
        member[i, t["majors"]] = True
    out = []
    for p in range(n):
        theme = [int(x) for x in rng.choice(n_major, size=1 if rng.random() < ONE_MAJOR_THEME_RATE else 2,
                                            replace=False)]
        pref = float(rng.uniform(-1.0, 1.0))
        size = int(rng.integers(8, 31))
        w = pop * np.exp(-0.5 * ((mood - pref) / 0.4) ** 2) * member[:, theme].any(axis=1)
        n_theme = min(size - int(rng.binomial(size, NOISE_RATE)), int(np.count_nonzero(w)))
        chosen = list(rng.choice(len(tracks), size=n_theme, replace=False, p=w / w.sum())) \
            if n_theme else []
        w2 = pop.copy()
        w2[chosen] = 0.0
        noise = list(rng.choice(len(tracks), size=min(size - n_theme, int(np.count_nonzero(w2))),
                                replace=False, p=w2 / w2.sum()))
        mw = mood_word(pref)
        tags = [genres[g]["word"] for g in theme]
        tags += list(rng.choice(AUDIO_MOOD_TAGS[mw], size=int(rng.integers(1, 3)), replace=False))
        tags += list(rng.choice(AUDIO_NOISE_TAGS, size=int(rng.integers(0, 2)), replace=False))
        out.append({
            "playlist_id": f"pl-{p:04d}",
            "title": f"{mw.capitalize()} {genres[theme[0]]['name']} mix",
            "tags": list(dict.fromkeys(str(t) for t in tags)),
            "tracks": [int(x) for x in rng.permutation(chosen + noise)],
            "theme": {"majors": theme, "mood": round(pref, 4)},
        })
    return out

