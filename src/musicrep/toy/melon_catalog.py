"""The Melon corpus's catalogue: its genres (names, codes and the hidden audio parameters
of every genre) and its artists -> albums -> songs, with genres, hidden mood and
popularity. Everything the mels and playlists are later drawn from. A preset
(:class:`~musicrep.toy.world.MelonPreset`) may then reshape the popularity over the same
ranking (niche genres, a heavier tail) and write wrong genres for some artists into the
metadata; the catalogue's own draws never change with the preset."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..audio import N_MELS
from .world import (MELON_GENRES, MELON_SYLLABLES, MELON_WORDS_ADJ, MELON_WORDS_NOUN,
                    MOOD_CENTER_SPREAD, SECOND_MAJOR_RATE, ZIPF_EXPONENT, MelonPreset,
                    MelonSalt, genre_popularity, seeded_rng, zipf_popularity)


def genre_code(major: int, detail: int = 0) -> str:
    """Melon genre code: "GN" + 2-digit major (1-based) + 2-digit detail (00 = major)."""
    return f"GN{major + 1:02d}{detail:02d}"


# --------------------------------------------------------------------------- genres


def make_genres(n_major: int, seed: int) -> dict[str, Any]:
    """Genre vocabulary plus the hidden audio parameters of every genre."""
    rng = seeded_rng(seed, MelonSalt.GENRE)
    b = np.linspace(0.0, 1.0, N_MELS)
    majors = []
    for k in range(n_major):
        if k < len(MELON_GENRES):
            name, word, dnames = MELON_GENRES[k]
        else:
            name, word = f"Genre {k + 1}", f"genre{k + 1}"
            dnames = [f"Genre {k + 1} Style {d + 1}" for d in range(4)]
        n_det = int(rng.integers(2, 5))
        majors.append({"name": name, "word": word, "details": list(dnames[:n_det])})

    weights = genre_popularity(n_major, rng)  # mildly skewed, like a real catalogue

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
    # Each genre's mood lean, e.g. dance leans energetic.
    mood_center = rng.uniform(-MOOD_CENTER_SPREAD, MOOD_CENTER_SPREAD, size=n_major)
    return {"majors": majors, "weights": weights, "env": env, "rhythm": rhythm,
            "details": details, "mood_center": mood_center}


def genre_table(genres: dict[str, Any]) -> dict[str, str]:
    """genre_gn_all.json: code -> name for every major and detail code."""
    table: dict[str, str] = {}
    for k, m in enumerate(genres["majors"]):
        table[genre_code(k)] = m["name"]
        for d, dname in enumerate(m["details"], start=1):
            table[genre_code(k, d)] = dname
    return table


# -------------------------------------------------------------------------- catalog


def _name(rng: np.random.Generator, n_syl: tuple[int, int] = (2, 3)) -> str:
    parts = rng.choice(MELON_SYLLABLES, size=int(rng.integers(n_syl[0], n_syl[1] + 1)))
    return "".join(parts).capitalize()


def _title(rng: np.random.Generator) -> str:
    if rng.random() < 0.5:
        return f"{rng.choice(MELON_WORDS_ADJ)} {rng.choice(MELON_WORDS_NOUN)}"
    return f"{rng.choice(MELON_WORDS_NOUN)} of {rng.choice(MELON_WORDS_ADJ)} {rng.choice(MELON_WORDS_NOUN)}"


def make_catalog(songs: int, genres: dict[str, Any], seed: int) -> dict[str, Any]:
    """Artists -> albums -> songs, with genres, hidden mood and popularity."""
    rng = seeded_rng(seed, MelonSalt.CATALOG)
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
        if n_major > 1 and rng.random() < SECOND_MAJOR_RATE:  # a second major
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
            "song_gn_gnr_basket": [genre_code(k) for k in mj],
            "song_gn_dtl_gnr_basket": [genre_code(k, d) for k, d in dt],
            "issue_date": al_date[s_album[i]],
        })

    # Hidden mood: genre lean + artist lean + song noise, clipped to [-1, 1].
    mood = np.clip(genres["mood_center"][s_major] + a_mood[s_artist]
                   + rng.normal(0.0, 0.45, size=songs), -1.0, 1.0)
    # Popularity: Zipf over a random ranking of songs.
    rank = rng.permutation(songs)
    pop = zipf_popularity(rank)
    return {"meta": meta, "majors": majors_of, "details": details_of, "mood": mood,
            "pop": pop, "rank": rank, "artist_major": a_major, "song_artist": s_artist}


# ------------------------------------------------------------------ preset changes


def niche_majors(song_major: Sequence[Any], majors: Sequence[Any], count: int) -> list[Any]:
    """The `count` niche genres: those of `majors` with the fewest songs whose primary
    major is theirs (`song_major`, one per song), ties to the later genre. At least one
    genre always stays mainstream. Works on indices or codes alike, so the checks
    (musicrep.study.checks) find the same genres from the truth file of any preset."""
    count = max(0, min(count, len(majors) - 1))
    n = {g: 0 for g in majors}
    for g in song_major:
        if g in n:
            n[g] += 1
    order = sorted(range(len(majors)), key=lambda j: (n[majors[j]], -j))
    return sorted((majors[j] for j in order[:count]), key=list(majors).index)


def preset_popularity(cat: dict[str, Any], n_major: int, preset: MelonPreset) -> list[int]:
    """Reshape `cat`'s popularity for `preset` (in place) and return the niche genres.

    The ranking is the catalogue's own draw: songs of the niche genres are moved to its
    bottom, each group keeping its drawn order, and the Zipf exponent is the preset's.
    G0 leaves the popularity exactly as drawn."""
    primary = [mj[0] for mj in cat["majors"]]
    niche = niche_majors(primary, list(range(n_major)), preset.niche_majors)
    if not niche and preset.zipf_exponent == ZIPF_EXPONENT:
        return []
    is_niche = np.isin(primary, niche)
    order = np.lexsort((cat["rank"], is_niche))  # mainstream first, by the drawn rank
    rank = np.empty(len(primary), dtype=np.int64)
    rank[order] = np.arange(len(primary))
    cat["rank"] = rank
    cat["pop"] = zipf_popularity(rank, preset.zipf_exponent)
    return niche


def misgenre_artists(cat: dict[str, Any], genres: dict[str, Any], rate: float,
                     seed: int) -> dict[int, tuple[int, int]]:
    """Write a wrong major genre into song_meta for a share `rate` of the artists (in
    place): every song whose main artist is one of them names the wrong major (and one
    of its detail genres) instead of the true one. The true genres (`cat["majors"]`,
    `cat["details"]`: the audio and the playlists) are untouched. Drawn from the
    METADATA stream. Returns {artist id: (true major, written major)}."""
    n_major = len(genres["majors"])
    a_major = cat["artist_major"]
    if rate <= 0 or n_major < 2:
        return {}
    rng = seeded_rng(seed, MelonSalt.METADATA)
    n_artists = len(a_major)
    chosen = np.sort(rng.choice(n_artists, size=round(rate * n_artists), replace=False))
    wrong: dict[int, tuple[int, int, int]] = {}  # artist -> (true, written major, detail)
    for a in chosen:
        g = int(a_major[a])
        w = int(rng.choice([k for k in range(n_major) if k != g]))
        wrong[int(a)] = (g, w, int(rng.integers(1, len(genres["majors"][w]["details"]) + 1)))
    for i, song in enumerate(cat["meta"]):
        a = int(cat["song_artist"][i])
        if a not in wrong:
            continue
        g, w, dw = wrong[a]
        majors = list(dict.fromkeys(w if k == g else k for k in cat["majors"][i]))
        details = list(dict.fromkeys((w, dw) if k == g else (k, d) for k, d in cat["details"][i]))
        song["song_gn_gnr_basket"] = [genre_code(k) for k in majors]
        song["song_gn_dtl_gnr_basket"] = [genre_code(k, d) for k, d in details]
    return {a: (g, w) for a, (g, w, _) in wrong.items()}
