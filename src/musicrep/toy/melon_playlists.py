"""The Melon corpus's playlists: each has a hidden theme (1-2 major genres and a mood
preference, or with a preset such as G1 often a mood alone), draws most of its songs
from the theme with a popularity skew, and gets tags and a title derived from the theme;
then every song no playlist picked is placed in a fitting playlist (G0) or a random one
(G1, G2)."""

from __future__ import annotations

import datetime as _dt
from typing import Any

import numpy as np

from .world import (MELON_MOOD_TAGS, MELON_MOOD_TITLE, MELON_NOISE_TAGS, MELON_TITLE_SUFFIX,
                    MELON_PRESETS, NOISE_RATE, ONE_MAJOR_THEME_RATE, MelonPreset, MelonSalt,
                    mood_word, seeded_rng)


def make_playlists(n: int, cat: dict[str, Any], genres: dict[str, Any], seed: int,
                   preset: MelonPreset = MELON_PRESETS["G0"]
                   ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Themed playlists; returns (records, hidden themes). A theme's ``majors`` is empty
    for a playlist themed on a mood alone."""
    rng = seeded_rng(seed, MelonSalt.PLAYLIST)
    weights = genres["weights"]
    if preset.themes_follow_popularity:
        weights = np.zeros(len(weights))
        for mj, p in zip(cat["majors"], cat["pop"], strict=True):
            weights[mj[0]] += p  # a song counts for its main genre
        weights = np.maximum(weights, 1e-9 * weights.sum())  # a genre without songs
        weights /= weights.sum()
    lists, themes = _draw_lists(n, cat, genres, rng, preset.genre_gated_rate, weights)
    _cover_orphans(lists, themes, cat, len(genres["majors"]), rng, preset.orphans == "random")
    return _records(lists, themes, genres, rng), themes


def _draw_lists(n: int, cat: dict[str, Any], genres: dict[str, Any], rng: np.random.Generator,
                gated_rate: float, theme_weights: np.ndarray
                ) -> tuple[list[list[int]], list[dict[str, Any]]]:
    """The song lists of `n` playlists and their themes: a share `gated_rate` themed on
    genres (drawn by `theme_weights`) and a mood, the rest on a mood alone (with 1.0, as
    in G0, no draw decides it)."""
    songs = len(cat["meta"])
    n_major = len(genres["majors"])
    mood = cat["mood"]
    pop = cat["pop"]
    in_major = np.zeros((songs, n_major), dtype=bool)  # true genres, even if basket empty
    for i, mj in enumerate(cat["majors"]):
        in_major[i, mj] = True

    themes, lists = [], []
    for _ in range(n):
        theme: list[int] = []
        if gated_rate >= 1.0 or rng.random() < gated_rate:
            k = 1 if (n_major == 1 or rng.random() < ONE_MAJOR_THEME_RATE) else 2
            theme = [int(x) for x in rng.choice(n_major, size=k, replace=False,
                                                p=theme_weights)]
        mpref = float(rng.uniform(-1.0, 1.0))
        size = int(rng.integers(10, 61))
        n_noise = int(rng.binomial(size, NOISE_RATE))
        # Theme songs: popular songs of the theme's genres (any song when the theme is a
        # mood alone) whose mood is near mpref.
        w = pop * np.exp(-0.5 * ((mood - mpref) / 0.35) ** 2)
        if theme:
            w = w * in_major[:, theme].any(axis=1)
        n_theme = min(size - n_noise, int(np.count_nonzero(w)))
        chosen = rng.choice(songs, size=n_theme, replace=False, p=w / w.sum()) if n_theme else []
        # Noise songs: popular songs from anywhere.
        w2 = pop.copy()
        w2[chosen] = 0.0
        n_noise = min(n_noise, int(np.count_nonzero(w2)))
        noise = rng.choice(songs, size=n_noise, replace=False, p=w2 / w2.sum()) if n_noise else []
        lists.append(rng.permutation(np.concatenate([chosen, noise]).astype(int)).tolist())
        themes.append({"majors": theme, "mood": mpref})
    return lists, themes


def _cover_orphans(lists: list[list[int]], themes: list[dict[str, Any]], cat: dict[str, Any],
                   n_major: int, rng: np.random.Generator, anywhere: bool = False) -> None:
    """Coverage: give every song that no playlist picked a place in a fitting playlist
    (theme genre, nearby mood), as long as there is room, so no song is orphaned. With
    `anywhere`, the place is a random playlist instead: such a song's co-occurrences
    then say nothing about it, as for a real long-tail track. Edits `lists` in place."""
    n = len(lists)
    mood = cat["mood"]
    count = np.zeros(len(cat["meta"]), dtype=int)
    for lst in lists:
        count[lst] += 1
    th_major = np.zeros((n, n_major), dtype=bool)
    for p, th in enumerate(themes):
        th_major[p, th["majors"]] = True
    th_mood = np.array([th["mood"] for th in themes])
    for s in rng.permutation(np.flatnonzero(count == 0)):
        if anywhere:
            w = np.ones(n)
        else:
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


def _records(lists: list[list[int]], themes: list[dict[str, Any]], genres: dict[str, Any],
             rng: np.random.Generator) -> list[dict[str, Any]]:
    """The playlist records of the Melon layout: tags and title from the theme (a theme
    of a mood alone gets no genre word)."""
    records = []
    start = _dt.datetime(2005, 1, 1).timestamp()
    stop = _dt.datetime(2020, 4, 20).timestamp()
    for p in range(len(lists)):
        th = themes[p]
        mw = mood_word(th["mood"])
        words = [genres["majors"][g]["word"] for g in th["majors"]]
        tags = (list(words) if rng.random() < 0.8 else words[:1]) if words else []
        tags += list(rng.choice(MELON_MOOD_TAGS[mw], size=int(rng.integers(1, 3)), replace=False))
        if words and rng.random() < 0.3:  # a detail-genre tag, lower-cased
            g = th["majors"][0]
            tags.append(str(rng.choice(genres["majors"][g]["details"])).lower())
        tags += list(rng.choice(MELON_NOISE_TAGS, size=int(rng.integers(0, 3)), replace=False))
        tags = list(dict.fromkeys(str(t) for t in tags))  # dedupe, keep order
        gname = f" {genres['majors'][th['majors'][0]]['name']}" if words else ""
        title = f"{rng.choice(MELON_MOOD_TITLE[mw])}{gname} {rng.choice(MELON_TITLE_SUFFIX)}"
        ts = _dt.datetime.fromtimestamp(float(rng.uniform(start, stop)), tz=_dt.timezone.utc)
        records.append({
            "id": p,
            "plylst_title": title,
            "tags": tags,
            "songs": [int(s) for s in lists[p]],
            "like_cnt": int(np.exp(rng.normal(1.5, 1.6))) if rng.random() > 0.15 else 0,
            "updt_date": ts.strftime("%Y-%m-%d %H:%M:%S") + ".000",
        })
    return records
