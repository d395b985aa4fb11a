"""The Melon corpus's mel spectrograms: each song's (48, T) dB mel drawn from its own
random stream (genre envelope and rhythm, detail signatures, mood), and the planted file
defects of the real dataset (missing, corrupt, all-zero, too-short, wrong-band-count and
NaN mels; songs with empty genre baskets)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import N_MELS
from ..data.melon import mel_path  # the layout is defined once, by the reader
from .world import BORROWED_RHYTHM_RATE, MelonSalt, seeded_rng

#: Frames of the "too short" defect (capped at half the requested length).
SHORT_FRAMES = 100
#: Band count of the "wrong band count" defect.
BAD_BANDS = 40
#: Kinds of planted defects, in the order the summary lists them.
DEFECT_KINDS = ("missing", "corrupt", "zeros", "short", "bad_bands", "nan", "empty_genre")
#: Fraction of songs per defect kind (7 kinds -> about 3.5 % of songs in total).
DEFECT_RATE = 0.005


# ----------------------------------------------------------------------------- mels


def song_mel(i: int, frames: int, seed: int, cat: dict[str, Any],
             genres: dict[str, Any]) -> np.ndarray:
    """The (48, frames) float32 dB mel of song i, from its own random stream."""
    rng = seeded_rng(seed, MelonSalt.MEL, i)
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
    if len(env_all) > 1 and rng.random() < BORROWED_RHYTHM_RATE:
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


def write_mels(root: Path, frames: int, seed: int, cat: dict[str, Any], genres: dict[str, Any],
               bad: dict[str, list[int]], mel_dtype: Any) -> None:
    """Every song's mel file under `root` (the defective version for the songs of a file
    defect in `bad`), one song at a time."""
    songs = len(cat["meta"])
    mel_defect = {i: k for k, ids in bad.items() if k != "empty_genre" for i in ids}
    for folder in range((songs - 1) // 1000 + 1):
        mel_path(root, folder * 1000).parent.mkdir(parents=True)
    for i in range(songs):
        mel = song_mel(i, frames, seed, cat, genres)
        path = mel_path(root, i)
        if i in mel_defect:
            write_defect_mel(path, mel_defect[i], mel, seeded_rng(seed, MelonSalt.DEFECT, i),
                             mel_dtype)
        else:
            np.save(path, mel.astype(mel_dtype, copy=False))


# -------------------------------------------------------------------------- defects


def pick_defects(songs: int, seed: int, defects: bool) -> dict[str, list[int]]:
    """Defects: disjoint random song sets, one per kind (defect kind -> sorted song ids;
    every kind present, empty lists when `defects` is false)."""
    bad: dict[str, list[int]] = {k: [] for k in DEFECT_KINDS}
    drng = seeded_rng(seed, MelonSalt.DEFECT)
    if defects:
        per_kind = max(1, round(DEFECT_RATE * songs))
        pick = drng.permutation(songs)[: per_kind * len(DEFECT_KINDS)]
        for j, kind in enumerate(DEFECT_KINDS):
            bad[kind] = sorted(int(x) for x in pick[j * per_kind:(j + 1) * per_kind])
    return bad


def write_defect_mel(path: Path, kind: str, mel: np.ndarray, rng: np.random.Generator,
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

