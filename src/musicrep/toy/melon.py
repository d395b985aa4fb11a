"""A generated stand-in for the Melon Playlist Dataset, in exactly its file layout.

The real Melon corpus (Kakao Arena) can no longer be downloaded, so the pipeline is
developed and tested on a corpus written by :func:`make_toy_melon`. The layout is the
real one (``train.json``/``val.json``/``test.json``, ``song_meta.json``,
``genre_gn_all.json``, ``arena_mel/{id // 1000}/{id}.npy`` with 48 x T float32 dB
mels), so every reader that works here works unchanged on the real data.

What makes it useful rather than just well-formed is the structure planted in it:

* Genres. ``n_major`` major genres (``GN0100``, ``GN0200``, ...) each with 2-4
  detail genres (``GN0101``, ...). Every song has one major genre (about 15 % have
  two) and 1-2 detail genres; artists and albums are tied to genres.
* Audio. Each major genre has its own spectral envelope and its own rhythm (a pulse
  train with a genre-specific period, decay, accent pattern and off-beat); each detail
  genre adds a narrow-band signature, partly static and partly switched on and off
  in time. The envelopes overlap and every song gets its own gain, tilt and random
  spectral shape, so the per-band mean of a mel only partly reveals the genre; the
  time structure (which leaves band means unchanged: the pulses are zero-mean in
  time) carries the rest.
* Mood. A hidden per-song scalar in [-1, 1] ("calm" .. "energetic") that tilts the
  spectrum brighter, raises the level and strengthens the pulses. It is in no
  metadata field.
* Playlists. Each playlist has a theme (1-2 major genres and a mood preference) and
  draws most of its songs from the theme, preferring songs whose mood is near the
  preference, with a Zipf popularity skew and ~10 % noise songs. Tags and titles are
  derived from the theme. Hence playlist co-occurrence (CF) carries genre *and* mood,
  while the genre metadata carries genre only.

Unlike the real val/test files, val.json and test.json keep every playlist's songs
and tags complete (no masking): the pipeline builds its CF matrix from all playlists.

``defects=True`` plants the real dataset's problems (missing, corrupt, all-zero,
too-short, wrong-band-count and NaN mel files; songs with empty genre baskets) and the
returned summary names the affected ids so tests can check a reader skips exactly
those. The hidden truth (per-song genres and mood, playlist themes) is returned in the
summary's ``"truth"`` entry and written to ``generated_truth.json``, next to
``generated.json`` (the generator and its arguments). Neither file is part of the
Melon layout: dataset creation and training never read them, only evaluation does
(the mood probe) and the "generated corpus" labels of its reports.

Everything is deterministic in ``seed``: the same arguments give byte-identical files.
Each song's mel is drawn from its own random stream (seeded by ``seed`` and the song
id), generated and written one song at a time, so memory stays small.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..layout import GENERATED_MARKER, TRUTH_FILE
from ..audio import N_MELS
from ..data.melon import mel_path  # the layout is defined once, by the reader

#: Frames of the "too short" defect (capped at half the requested length).
SHORT_FRAMES = 100
#: Band count of the "wrong band count" defect.
BAD_BANDS = 40
#: Kinds of planted defects, in the order the summary lists them.
DEFECT_KINDS = ("missing", "corrupt", "zeros", "short", "bad_bands", "nan", "empty_genre")
#: Fraction of songs per defect kind (7 kinds -> about 3.5 % of songs in total).
DEFECT_RATE = 0.005

# Stream salts: each consumer of randomness gets its own stream so that changing one
# part of the generator does not reshuffle the others.
_SALT_GENRE, _SALT_CATALOG, _SALT_PLAYLIST, _SALT_DEFECT, _SALT_MEL = 11, 23, 37, 41, 53

# Readable genre names in Melon's spirit (English). Majors beyond this list get
# generic names.
_GENRES: list[tuple[str, str, list[str]]] = [
    ("Ballad", "ballad", ["'80s-'90s Ballad", "'00s Ballad", "'10s Ballad", "Acoustic Ballad"]),
    ("Dance", "dance", ["'80s-'90s Dance", "'00s Dance", "'10s Dance", "Electro Pop"]),
    ("Rap/Hip-hop", "hiphop", ["Old School", "Trap", "Boom Bap", "Alternative Hip-hop"]),
    ("R&B/Soul", "rnb", ["Contemporary R&B", "Neo Soul", "Funk", "Classic Soul"]),
    ("Indie", "indie", ["Indie Pop", "Indie Folk", "Lo-fi", "Dream Pop"]),
    ("Rock/Metal", "rock", ["Hard Rock", "Punk", "Heavy Metal", "Modern Rock"]),
    ("Trot", "trot", ["Classic Trot", "Modern Trot", "Semi-trot", "Trot Medley"]),
    ("Folk/Blues", "folk", ["Folk", "Blues", "Country", "Bluegrass"]),
    ("Electronica", "edm", ["House", "Techno", "Ambient", "Drum & Bass"]),
    ("Jazz", "jazz", ["Swing", "Bebop", "Fusion", "Vocal Jazz"]),
    ("Classical", "classical", ["Baroque", "Romantic", "Opera", "Chamber Music"]),
    ("OST", "ost", ["Drama OST", "Film OST", "Game OST", "Animation OST"]),
]

_MOOD_TAGS = {
    "calm": ["chill", "calm", "relax", "sleep", "rainy day", "healing", "night", "sad"],
    "mid": ["cafe", "daily", "commute", "study", "weekend", "mood"],
    "energetic": ["energetic", "workout", "party", "drive", "upbeat", "running", "festival"],
}
_MOOD_TITLE = {
    "calm": ["Chill", "Calm", "Quiet", "Late-night", "Rainy-day", "Soft"],
    "mid": ["Everyday", "Cafe", "Weekend", "Commute", "Afternoon", "Easy"],
    "energetic": ["Energetic", "Workout", "Party", "Driving", "Upbeat", "Hype"],
}
_NOISE_TAGS = ["favorites", "2010s", "memories", "spring", "summer", "autumn", "winter",
               "love", "best", "hits", "retro", "new", "korean", "classic", "my list"]
_TITLE_SUFFIX = ["mix", "playlist", "collection", "for today", "picks", "vibes",
                 "selection", "songs", "favourites", "time"]
_WORDS_ADJ = ["Blue", "Golden", "Silent", "Lost", "Bright", "Falling", "Endless", "Paper",
              "Electric", "Velvet", "Midnight", "Summer", "Broken", "Little", "Wild",
              "Secret", "Crystal", "Hidden", "Warm", "Neon", "Lonely", "Sweet", "Last"]
_WORDS_NOUN = ["Night", "River", "Heart", "Dream", "City", "Road", "Rain", "Moon", "Letter",
               "Garden", "Light", "Window", "Story", "Train", "Sky", "Song", "Shadow",
               "Morning", "Ocean", "Star", "Memory", "Flower", "Wave", "Fire"]
_SYLLABLES = ["ka", "ri", "mo", "na", "se", "jin", "ho", "yu", "lee", "so", "min", "da",
              "ra", "ten", "vo", "lu", "ne", "kai", "po", "zen", "mi", "ta", "shin", "el"]


def _rng(seed: int, salt: int, *key: int) -> np.random.Generator:
    """An independent random stream for (seed, salt, key...)."""
    return np.random.default_rng([int(seed), salt, *[int(k) for k in key]])


def _code(major: int, detail: int = 0) -> str:
    """Melon genre code: "GN" + 2-digit major (1-based) + 2-digit detail (00 = major)."""
    return f"GN{major + 1:02d}{detail:02d}"


# --------------------------------------------------------------------------- genres


def _make_genres(n_major: int, seed: int) -> dict[str, Any]:
    """Genre vocabulary plus the hidden audio parameters of every genre."""
    rng = _rng(seed, _SALT_GENRE)
    b = np.linspace(0.0, 1.0, N_MELS)
    majors = []
    for k in range(n_major):
        if k < len(_GENRES):
            name, word, dnames = _GENRES[k]
        else:
            name, word = f"Genre {k + 1}", f"genre{k + 1}"
            dnames = [f"Genre {k + 1} Style {d + 1}" for d in range(4)]
        n_det = int(rng.integers(2, 5))
        majors.append({"name": name, "word": word, "details": list(dnames[:n_det])})

    # Popularity of genres: mildly skewed, like a real catalogue (not all equal).
    weights = 1.0 / np.arange(1, n_major + 1) ** 0.5
    weights = rng.permutation(weights)
    weights /= weights.sum()

    # Spectral envelopes: a shared falling slope plus a few genre-specific broad bumps
    # of a few dB. The bumps are deliberately small compared with the per-song
    # variation added later, so the envelopes overlap.
    base = 2.0 - 52.0 * b ** 1.15
    env = np.empty((n_major, N_MELS))
    for k in range(n_major):
        shape = np.zeros(N_MELS)
        for _ in range(3):
            c, w, a = rng.uniform(0.05, 0.95), rng.uniform(0.08, 0.22), rng.normal(0, 1.2)
            shape += a * np.exp(-0.5 * ((b - c) / w) ** 2)
        env[k] = base + shape

    # Rhythm: tempo periods geometrically spaced between 16 and 56 frames (about 67 to
    # 234 BPM at 62.5 frames/s), shuffled over genres, so each genre has its own beat.
    if n_major == 1:
        periods = np.array([32.0])
    else:
        periods = 16.0 * (56.0 / 16.0) ** (np.arange(n_major) / (n_major - 1))
    periods = rng.permutation(periods)
    rhythm = []
    for k in range(n_major):
        c_kick = rng.uniform(0.03, 0.45)
        c_off = rng.uniform(0.5, 0.95)
        rhythm.append({
            "period": float(periods[k]),
            "tau": float(rng.uniform(1.5, 6.0)),          # decay of each onset, frames
            "accent": rng.uniform(0.35, 1.0, size=4),       # 4-beat bar accent pattern
            "amp": float(rng.uniform(5.0, 9.0)),            # onset height, dB
            "kick": np.exp(-0.5 * ((b - c_kick) / rng.uniform(0.08, 0.25)) ** 2),
            "off_amp": float(rng.choice([0.0, rng.uniform(2.0, 5.0)])),
            "off": np.exp(-0.5 * ((b - c_off) / rng.uniform(0.08, 0.2)) ** 2),
        })

    # Detail genres: a narrow-band signature at a random band (anywhere: details of
    # different majors overlap in frequency, so a bump alone does not name a major).
    details = []  # flat list over (major, detail)
    for k in range(n_major):
        for d in range(len(majors[k]["details"])):
            details.append({
                "major": k, "index": d + 1,
                "center": float(rng.uniform(0.04, 0.96)),
                "width": float(rng.uniform(0.012, 0.03)),
                "static": float(rng.uniform(0.5, 1.25)),  # always-on part, dB
                "gated": float(rng.uniform(4.0, 7.0)),    # switched on/off in time, dB
                "rate": float(rng.uniform(16.0, 64.0)),   # gate segment length, frames
            })
    mood_center = rng.uniform(-0.4, 0.4, size=n_major)  # e.g. dance leans energetic
    return {"majors": majors, "weights": weights, "env": env, "rhythm": rhythm,
            "details": details, "mood_center": mood_center}


def _genre_table(genres: dict[str, Any]) -> dict[str, str]:
    """genre_gn_all.json: code -> name for every major and detail code."""
    table: dict[str, str] = {}
    for k, m in enumerate(genres["majors"]):
        table[_code(k)] = m["name"]
        for d, dname in enumerate(m["details"], start=1):
            table[_code(k, d)] = dname
    return table


# -------------------------------------------------------------------------- catalog


def _name(rng: np.random.Generator, n_syl: tuple[int, int] = (2, 3)) -> str:
    parts = rng.choice(_SYLLABLES, size=int(rng.integers(n_syl[0], n_syl[1] + 1)))
    return "".join(parts).capitalize()


def _title(rng: np.random.Generator) -> str:
    if rng.random() < 0.5:
        return f"{rng.choice(_WORDS_ADJ)} {rng.choice(_WORDS_NOUN)}"
    return f"{rng.choice(_WORDS_NOUN)} of {rng.choice(_WORDS_ADJ)} {rng.choice(_WORDS_NOUN)}"


def _make_catalog(songs: int, genres: dict[str, Any], seed: int) -> dict[str, Any]:
    """Artists -> albums -> songs, with genres, hidden mood and popularity."""
    rng = _rng(seed, _SALT_CATALOG)
    n_major = len(genres["majors"])
    n_det = np.array([len(m["details"]) for m in genres["majors"]])

    n_artists = max(min(songs, 2 * n_major), songs // 6)
    # Cover every genre with an artist first so small corpora still hold all genres.
    a_major = rng.choice(n_major, size=n_artists, p=genres["weights"])
    a_major[: min(n_major, n_artists)] = np.arange(min(n_major, n_artists))
    a_detail = np.array([rng.integers(1, n_det[g] + 1) for g in a_major])  # favourite style
    a_mood = rng.normal(0.0, 0.3, size=n_artists)
    a_name = []
    for _ in range(n_artists):
        nm = _name(rng) + (" " + _name(rng, (1, 2)) if rng.random() < 0.6 else "")
        a_name.append(nm)

    n_albums = max(n_artists, songs // 3)
    al_artist = np.concatenate([np.arange(n_artists),
                                rng.integers(0, n_artists, size=n_albums - n_artists)])
    al_name = [_title(rng) for _ in range(n_albums)]
    start = _dt.date(1985, 1, 1).toordinal()
    stop = _dt.date(2020, 4, 1).toordinal()
    al_date = [_dt.date.fromordinal(int(o)).strftime("%Y%m%d")
               for o in rng.integers(start, stop, size=n_albums)]

    s_album = np.concatenate([np.arange(min(n_albums, songs)),
                              rng.integers(0, n_albums, size=max(0, songs - n_albums))])
    s_album = rng.permutation(s_album)
    s_artist = al_artist[s_album]
    s_major = a_major[s_artist]
    meta, majors_of, details_of = [], [], []
    for i in range(songs):
        g = int(s_major[i])
        mj = [g]
        if n_major > 1 and rng.random() < 0.15:  # ~15 % of songs have a second major
            mj.append(int(rng.choice([k for k in range(n_major) if k != g])))
        if rng.random() < 0.7:  # mostly the artist's own style
            d1 = int(a_detail[s_artist[i]])
        else:
            d1 = int(rng.integers(1, n_det[g] + 1))
        dt = [(g, d1)]
        if len(mj) == 2 and rng.random() < 0.5:
            dt.append((mj[1], int(rng.integers(1, n_det[mj[1]] + 1))))
        elif rng.random() < 0.35 and n_det[g] > 1:
            d2 = int(rng.choice([d for d in range(1, n_det[g] + 1) if d != d1]))
            dt.append((g, d2))
        majors_of.append(mj)
        details_of.append(dt)
        artists = [int(s_artist[i])]
        if rng.random() < 0.1:  # featuring artist
            other = int(rng.integers(0, n_artists))
            if other != artists[0]:
                artists.append(other)
        meta.append({
            "id": i,
            "song_name": _title(rng),
            "album_id": int(s_album[i]),
            "album_name": al_name[s_album[i]],
            "artist_id_basket": artists,
            "artist_name_basket": [a_name[a] for a in artists],
            "song_gn_gnr_basket": [_code(k) for k in mj],
            "song_gn_dtl_gnr_basket": [_code(k, d) for k, d in dt],
            "issue_date": al_date[s_album[i]],
        })

    # Hidden mood: genre lean + artist lean + song noise, clipped to [-1, 1].
    mood = np.clip(genres["mood_center"][s_major] + a_mood[s_artist]
                   + rng.normal(0.0, 0.45, size=songs), -1.0, 1.0)
    # Popularity: Zipf over a random ranking of songs.
    rank = rng.permutation(songs)
    pop = 1.0 / (rank + 1.0) ** 0.8
    return {"meta": meta, "majors": majors_of, "details": details_of, "mood": mood,
            "pop": pop}


# ------------------------------------------------------------------------ playlists


def _mood_word(m: float) -> str:
    return "calm" if m < -0.3 else ("energetic" if m > 0.3 else "mid")


def _make_playlists(n: int, cat: dict[str, Any], genres: dict[str, Any],
                    seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Themed playlists; returns (records, hidden themes)."""
    rng = _rng(seed, _SALT_PLAYLIST)
    songs = len(cat["meta"])
    n_major = len(genres["majors"])
    mood = cat["mood"]
    pop = cat["pop"]
    in_major = np.zeros((songs, n_major), dtype=bool)  # true genres, even if basket empty
    for i, mj in enumerate(cat["majors"]):
        in_major[i, mj] = True

    records, themes, lists = [], [], []
    for _ in range(n):
        k = 1 if (n_major == 1 or rng.random() < 0.7) else 2
        theme = [int(x) for x in rng.choice(n_major, size=k, replace=False, p=genres["weights"])]
        mpref = float(rng.uniform(-1.0, 1.0))
        size = int(rng.integers(10, 61))
        n_noise = int(rng.binomial(size, 0.1))
        # Theme songs: popular songs of the theme's genres whose mood is near mpref.
        w = pop * np.exp(-0.5 * ((mood - mpref) / 0.35) ** 2) * in_major[:, theme].any(axis=1)
        n_theme = min(size - n_noise, int(np.count_nonzero(w)))
        chosen = rng.choice(songs, size=n_theme, replace=False, p=w / w.sum()) if n_theme else []
        # Noise songs: popular songs from anywhere.
        w2 = pop.copy()
        w2[chosen] = 0.0
        n_noise = min(n_noise, int(np.count_nonzero(w2)))
        noise = rng.choice(songs, size=n_noise, replace=False, p=w2 / w2.sum()) if n_noise else []
        lists.append(rng.permutation(np.concatenate([chosen, noise]).astype(int)).tolist())
        themes.append({"majors": theme, "mood": mpref})

    # Coverage: give every song that no playlist picked a place in a fitting playlist
    # (theme genre, nearby mood), as long as there is room, so no song is orphaned.
    count = np.zeros(songs, dtype=int)
    for lst in lists:
        count[lst] += 1
    th_major = np.zeros((n, n_major), dtype=bool)
    for p, th in enumerate(themes):
        th_major[p, th["majors"]] = True
    th_mood = np.array([th["mood"] for th in themes])
    for s in rng.permutation(np.flatnonzero(count == 0)):
        fit = th_major[:, cat["majors"][s]].any(axis=1)
        w = np.exp(-0.5 * ((th_mood - mood[s]) / 0.35) ** 2) * (fit + 0.02)
        for p in rng.choice(n, size=min(n, 8), replace=False, p=w / w.sum()):
            lst = lists[p]
            if len(lst) < 60:
                lst.insert(int(rng.integers(0, len(lst) + 1)), int(s))
            else:
                # Full: replace the song that occurs most often elsewhere.
                j = int(np.argmax(count[lst]))
                if count[lst[j]] <= 1:
                    continue
                count[lst[j]] -= 1
                lst[j] = int(s)
            count[s] += 1
            break

    start = _dt.datetime(2005, 1, 1).timestamp()
    stop = _dt.datetime(2020, 4, 20).timestamp()
    for p in range(n):
        th = themes[p]
        mw = _mood_word(th["mood"])
        words = [genres["majors"][g]["word"] for g in th["majors"]]
        tags = list(words) if rng.random() < 0.8 else words[:1]
        tags += list(rng.choice(_MOOD_TAGS[mw], size=int(rng.integers(1, 3)), replace=False))
        if rng.random() < 0.3:  # a detail-genre tag, lower-cased
            g = th["majors"][0]
            tags.append(str(rng.choice(genres["majors"][g]["details"])).lower())
        tags += list(rng.choice(_NOISE_TAGS, size=int(rng.integers(0, 3)), replace=False))
        tags = list(dict.fromkeys(str(t) for t in tags))  # dedupe, keep order
        gname = genres["majors"][th["majors"][0]]["name"]
        title = f"{rng.choice(_MOOD_TITLE[mw])} {gname} {rng.choice(_TITLE_SUFFIX)}"
        ts = _dt.datetime.fromtimestamp(float(rng.uniform(start, stop)), tz=_dt.timezone.utc)
        records.append({
            "id": p,
            "plylst_title": title,
            "tags": tags,
            "songs": [int(s) for s in lists[p]],
            "like_cnt": int(np.exp(rng.normal(1.5, 1.6))) if rng.random() > 0.15 else 0,
            "updt_date": ts.strftime("%Y-%m-%d %H:%M:%S") + ".000",
        })
    return records, themes


# ----------------------------------------------------------------------------- mels


def _song_mel(i: int, frames: int, seed: int, cat: dict[str, Any],
              genres: dict[str, Any]) -> np.ndarray:
    """The (48, frames) float32 dB mel of song i, from its own random stream."""
    rng = _rng(seed, _SALT_MEL, i)
    T = frames
    b = np.linspace(0.0, 1.0, N_MELS, dtype=np.float32)
    t = np.arange(T, dtype=np.float32)
    mj = cat["majors"][i]
    g = mj[0]
    m = float(cat["mood"][i])
    env_all = genres["env"]

    # Static spectrum: genre envelope (a second major blends in), then per-song gain,
    # tilt and a random smooth shape that mask the genre in the band means; the mood
    # brightens and raises the level.
    env = env_all[g] if len(mj) == 1 else 0.65 * env_all[g] + 0.35 * env_all[mj[1]]
    env = env.astype(np.float32)
    env = env + rng.normal(0.0, 6.0) + 3.0 * m                 # gain
    env = env + (rng.normal(0.0, 5.0) + 6.0 * m) * (b - 0.5)   # spectral tilt
    for _ in range(6):                                         # song timbre
        c, w, a = rng.uniform(0, 1), rng.uniform(0.05, 0.2), rng.normal(0, 4.0)
        env = env + a * np.exp(-0.5 * ((b - c) / w) ** 2)

    mel = rng.standard_normal((N_MELS, T), dtype=np.float32) * 3.0  # frame noise
    mel += env[:, None]

    # Detail signatures: a narrow band that is always a little raised and, in
    # segments (an instrument that comes and goes), raised more.
    for gk, d in cat["details"][i]:
        dp = next(x for x in genres["details"] if x["major"] == gk and x["index"] == d)
        prof = np.exp(-0.5 * ((b - dp["center"]) / dp["width"]) ** 2).astype(np.float32)
        n_seg = int(np.ceil(T / dp["rate"])) + 1
        gate = (rng.random(n_seg) < 0.55).astype(np.float32)
        gate = gate[np.minimum((t / dp["rate"]).astype(int), n_seg - 1)]
        gate -= gate.mean()  # the switching shows in time, not in the band mean
        mel += prof[:, None] * (dp["static"] + dp["gated"] * gate)[None, :]

    # Rhythm: decaying onsets at the genre's period with its bar accent pattern, and an
    # optional off-beat in higher bands. Made zero-mean over time so the rhythm leaves
    # the band means untouched: it is information only the time axis carries.
    # A minority of songs borrow another genre's groove (a ballad with a dance beat):
    # audio is evidence of genre, not proof of it.
    rg = g
    if len(env_all) > 1 and rng.random() < 0.2:
        rg = int(rng.integers(0, len(env_all)))
    r = genres["rhythm"][rg]
    period = r["period"] * rng.uniform(0.96, 1.04)
    pos = t + rng.uniform(0.0, period)
    phase = pos % period
    beat = (pos // period).astype(int) % 4
    pulse = (r["accent"][beat] * np.exp(-phase / r["tau"])).astype(np.float32)
    pulse -= pulse.mean()
    amp = r["amp"] * rng.uniform(0.75, 1.25) * (1.0 + 0.35 * m)
    mel += (amp * r["kick"]).astype(np.float32)[:, None] * pulse[None, :]
    if r["off_amp"] > 0:
        off = np.exp(-((pos + period / 2) % period) / 1.5).astype(np.float32)
        off -= off.mean()
        mel += (r["off_amp"] * r["off"]).astype(np.float32)[:, None] * off[None, :]

    # Slow loudness changes (phrases), common to all bands.
    knots = np.arange(0, T + 64, 64, dtype=np.float32)
    mel += np.interp(t, knots, rng.normal(0.0, 2.0, size=knots.size)).astype(np.float32)[None, :]

    # Essentia's lin2db floors at -100 dB; loud mixes peak around +20 dB.
    np.clip(mel, -100.0, 20.0, out=mel)
    return mel


def _write_defect_mel(path: Path, kind: str, mel: np.ndarray, rng: np.random.Generator,
                      dtype: Any) -> None:
    """Write the defective version of a mel (kind is one of the file defects)."""
    if kind == "missing":
        return
    if kind == "corrupt":
        if rng.random() < 0.5:  # a truncated download: a valid header, half the data
            buf = io.BytesIO()
            np.save(buf, mel.astype(dtype))
            raw = buf.getvalue()
            path.write_bytes(raw[: len(raw) // 2])
        else:  # garbage bytes that are not an .npy at all
            path.write_bytes(rng.integers(0, 256, size=4096, dtype=np.uint8).tobytes())
        return
    if kind == "zeros":
        arr = np.zeros_like(mel)
    elif kind == "short":
        arr = mel[:, : min(SHORT_FRAMES, max(1, mel.shape[1] // 2))]
    elif kind == "bad_bands":
        arr = mel[:BAD_BANDS]
    elif kind == "nan":
        arr = mel.copy()
        a = int(rng.integers(0, arr.shape[1]))
        arr[:, a: a + max(1, arr.shape[1] // 10)] = np.nan  # a NaN block
        arr[rng.integers(0, N_MELS, 5), rng.integers(0, arr.shape[1], 5)] = np.nan
    else:
        raise ValueError(f"unknown defect kind {kind!r}")
    np.save(path, np.ascontiguousarray(arr).astype(dtype))


# ------------------------------------------------------------------------- public


def _dump_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")


#: Side files outside the Melon layout (the contract shared by every generator).


def _truth_json(cat: dict[str, Any], themes: list[dict[str, Any]], plist: list[dict[str, Any]],
                generator: dict[str, Any]) -> dict[str, Any]:
    """The hidden truth, keyed so evaluation can read it without this module."""
    return {
        "generator": generator,
        "song_mood": [round(float(x), 4) for x in cat["mood"]],  # index = song id
        "song_major_genres": [[_code(k) for k in mj] for mj in cat["majors"]],
        "song_detail_genres": [[_code(k, d) for k, d in dt] for dt in cat["details"]],
        "playlist_themes": {str(pl["id"]): {"major_genres": [_code(k) for k in th["majors"]],
                                            "mood": round(th["mood"], 4)}
                            for pl, th in zip(plist, themes)},
    }


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise FileExistsError(f"{out} exists and is not empty (pass force=True to replace it)")


def make_toy_melon(out: Path, songs: int = 2000, playlists: int = 1000, frames: int = 1876,
                   n_major: int = 8, seed: int = 0, defects: bool = False,
                   mel_dtype: Any = np.float32, *, force: bool = False) -> dict[str, Any]:
    """Write a Melon-layout corpus with planted structure to `out`; return a summary.

    The corpus is built in a temporary sibling directory and renamed to `out` at the
    end, so `out` never holds a half-written corpus. If `out` exists and is not empty,
    FileExistsError is raised unless `force` is true (then it is replaced).

    Returns a dict with the counts (``songs``, ``playlists``, ``splits``, ``genre_codes``,
    ``n_major``, ``n_detail``, ``frames``, ``songs_in_playlists``, ...), ``defects``
    (defect kind -> sorted song ids; every kind present, empty lists when
    ``defects=False``) and ``truth`` (the hidden per-song major genre and mood and the
    playlist themes; also written to ``generated_truth.json``).
    """
    t0 = time.perf_counter()
    out = Path(out)
    if songs < 10:
        raise ValueError("songs must be at least 10")
    if playlists < 3:
        raise ValueError("playlists must be at least 3 (one per split)")
    if frames < 16:
        raise ValueError("frames must be at least 16")
    if not 1 <= n_major <= 99:
        raise ValueError("n_major must be between 1 and 99")
    if seed < 0:
        raise ValueError("seed must be non-negative")
    _check_out(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)

    genres = _make_genres(n_major, seed)
    cat = _make_catalog(songs, genres, seed)
    plist, themes = _make_playlists(playlists, cat, genres, seed)

    # Defects: disjoint random song sets, one per kind.
    bad: dict[str, list[int]] = {k: [] for k in DEFECT_KINDS}
    drng = _rng(seed, _SALT_DEFECT)
    if defects:
        per_kind = max(1, round(DEFECT_RATE * songs))
        pick = drng.permutation(songs)[: per_kind * len(DEFECT_KINDS)]
        for j, kind in enumerate(DEFECT_KINDS):
            bad[kind] = sorted(int(x) for x in pick[j * per_kind:(j + 1) * per_kind])
    mel_defect = {i: k for k, ids in bad.items() if k != "empty_genre" for i in ids}
    meta = cat["meta"]
    for i in bad["empty_genre"]:
        meta[i]["song_gn_gnr_basket"] = []
        meta[i]["song_gn_dtl_gnr_basket"] = []

    # Splits: random ~80/10/10 of playlists, each split non-empty.
    prng = _rng(seed, _SALT_PLAYLIST, 1)
    order = prng.permutation(playlists)
    n_test = max(1, round(0.1 * playlists))
    n_val = max(1, round(0.1 * playlists))
    split_idx = {"train": np.sort(order[n_test + n_val:]),
                 "val": np.sort(order[n_test:n_test + n_val]),
                 "test": np.sort(order[:n_test])}

    tmp = Path(tempfile.mkdtemp(prefix=f"{out.name}.tmp-", dir=out.parent))
    try:
        for split, idx in split_idx.items():
            _dump_json(tmp / f"{split}.json", [plist[p] for p in idx])
        _dump_json(tmp / "song_meta.json", meta)
        _dump_json(tmp / "genre_gn_all.json", _genre_table(genres))
        generator = {"generator": "musicrep.toy.melon.make_toy_melon", "seed": seed, "songs": songs,
                     "playlists": playlists, "frames": frames, "n_major": n_major,
                     "defects": defects, "mel_dtype": np.dtype(mel_dtype).name}
        _dump_json(tmp / GENERATED_MARKER, generator)
        _dump_json(tmp / TRUTH_FILE, _truth_json(cat, themes, plist, generator))
        for folder in range((songs - 1) // 1000 + 1):
            (tmp / "arena_mel" / str(folder)).mkdir(parents=True)
        for i in range(songs):
            mel = _song_mel(i, frames, seed, cat, genres)
            path = mel_path(tmp, i)
            if i in mel_defect:
                _write_defect_mel(path, mel_defect[i], mel, _rng(seed, _SALT_DEFECT, i), mel_dtype)
            else:
                np.save(path, mel.astype(mel_dtype, copy=False))
        # Swap in atomically; a replaced corpus is moved aside first and then deleted.
        if out.exists():
            if out.is_dir() and not any(out.iterdir()):
                out.rmdir()
            else:
                old = Path(tempfile.mkdtemp(prefix=f"{out.name}.old-", dir=out.parent))
                os.replace(out, old / "x")
                os.replace(tmp, out)
                shutil.rmtree(old, ignore_errors=True)
        if not out.exists():
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    in_pl = np.zeros(songs, dtype=bool)
    for pl in plist:
        in_pl[pl["songs"]] = True
    n_det = sum(len(m["details"]) for m in genres["majors"])
    return {
        "out": str(out),
        "seed": seed,
        "songs": songs,
        "playlists": playlists,
        "splits": {k: int(v.size) for k, v in split_idx.items()},
        "frames": frames,
        "n_bands": N_MELS,
        "n_major": n_major,
        "n_detail": n_det,
        "genre_codes": n_major + n_det,
        "songs_in_playlists": int(in_pl.sum()),
        "playlist_song_slots": int(sum(len(pl["songs"]) for pl in plist)),
        "defects": bad,
        "n_defect_songs": int(sum(len(v) for v in bad.values())),
        "seconds": round(time.perf_counter() - t0, 2),
        "truth": {
            "song_major": [int(mj[0]) for mj in cat["majors"]],
            "song_majors": [list(mj) for mj in cat["majors"]],
            "song_mood": [round(float(x), 4) for x in cat["mood"]],
            "playlist_majors": {int(p): th["majors"] for p, th in enumerate(themes)},
            "playlist_mood": {int(p): round(th["mood"], 4) for p, th in enumerate(themes)},
        },
    }
