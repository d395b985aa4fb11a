"""The real-audio benchmark: can an encoder's embeddings of real recordings find a second
excerpt of the same recording, and does a linear probe on them name a label (the
composer within a soundtrack), with 95% intervals over tracks.

Why these tasks. The models this project trains on generated data must be checked on
real music, and real music comes without the labels the paper's tasks need. Two
excerpts of one recording share its instruments, key, tempo and production, so an
embedding that carries any of that finds the sibling excerpt among all others: a
label-free test any folder of recordings supports (``same-recording retrieval``).
A soundtrack's shared mastering is a shortcut there, so the same retrieval is also
scored among the tracks of each soundtrack only (``within``). The labelled task is a
probe: a logistic regression on track embeddings, cross-validated with splits grouped
by album, so that no album is on both sides of a split.

The pieces, each a pure function so the CLI (``musicrep.cli.real_benchmark``) and the
tests call the same code:

- ``read_corpus``: tracks.csv (track_id, path and the named columns) and the audio folder;
  ``read_split`` / ``select_split``: only the tracks a dataset put in one split (its
  test tracks, which a model trained on that dataset never saw), less any that share a
  work with the other splits;
- ``plan_chunks``: two chunks per track at seeded positions, at least ``gap`` seconds
  apart (end of one to start of the other); their ids carry track, start and length, so
  embeddings made for another plan never match by accident; ``write_chunk_list``
  writes the chunks.csv an external anchor script reads;
- ``decode_chunks``: each chunk's 48-band mel frames (``musicrep.audio``, the encoder's
  own front end); ``logmel_stats``, ``encode_mels`` and ``random_encoder`` turn them into
  the rows' embeddings; ``read_anchor`` reads an external ``.npz``;
- ``retrieval_scores`` / ``retrieval_chance``, ``plan_probe`` / ``probe_scores``:
  per-track values; ``bootstrap_interval`` their mean with a percentile interval.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..audio import (
    CROP_FRAMES,
    HOP_SIZE,
    N_MELS,
    SAMPLE_RATE,
    AudioError,
    load_audio,
    mel_spectrogram_db,
    mel_to_frames,
)
from ..data.importer import read_table
from ..errors import ConfigError

if TYPE_CHECKING:
    import torch

    from ..model.audio_cnn import AudioEncoder

__all__ = [
    "CHUNK_COLUMNS",
    "CONFIDENCE",
    "DEFAULT_CHUNK_SECONDS",
    "DEFAULT_GAP_SECONDS",
    "Chunk",
    "Corpus",
    "ProbePlan",
    "SplitTracks",
    "Track",
    "audio_duration",
    "bootstrap_interval",
    "bootstrap_weights",
    "chunk_id",
    "chunk_positions",
    "decode_chunks",
    "encode_mels",
    "logmel_stats",
    "plan_chunks",
    "plan_probe",
    "probe_chance",
    "probe_scores",
    "random_encoder",
    "read_anchor",
    "read_corpus",
    "read_split",
    "retrieval_chance",
    "retrieval_scores",
    "select_split",
    "windows_per_chunk",
    "write_chunk_list",
]

#: one CNN input: 256 frames x 256 hop at 16 kHz (the encoder sees each chunk whole)
DEFAULT_CHUNK_SECONDS = CROP_FRAMES * HOP_SIZE / SAMPLE_RATE  # 4.096
DEFAULT_GAP_SECONDS = 8.0
CONFIDENCE = 0.95
TABLE = "tracks.csv"
#: the columns of chunks.csv, in order (the anchor scripts read them by name)
CHUNK_COLUMNS = ("chunk_id", "track_id", "file", "start_s", "seconds")
_END_MARGIN = 0.05  # s kept clear of a file's end: headers round their durations


@dataclass(frozen=True)
class Track:
    """One row of tracks.csv: its id, its audio file and the columns the benchmark reads."""

    track_id: str
    file: Path
    values: dict[str, str] = field(default_factory=dict)


@dataclass
class Corpus:
    """tracks.csv read: the tracks in table order and the columns the table has."""

    table: Path
    tracks: list[Track]
    columns: frozenset[str]


@dataclass(frozen=True)
class Chunk:
    """One excerpt: ``track`` is its track's position in the benchmark's track list."""

    chunk_id: str
    track: int
    track_id: str
    file: Path
    start: float
    seconds: float


def _header(table: Path) -> list[str]:
    with open(table, newline="", encoding="utf-8") as f:
        return [c.strip() for c in next(csv.reader(f), [])]


def read_corpus(corpus_dir: Path, audio_dir: Path | None = None,
                columns: Sequence[str] = ()) -> Corpus:
    """Read ``corpus_dir/tracks.csv``: ``track_id`` and ``path`` (relative to ``audio_dir``,
    default ``corpus_dir/audio`` as ``scripts/real_music.py`` writes it, else the corpus
    folder itself) and the named ``columns`` where the table has them (absent ones are
    reported through ``Corpus.columns``, so a task that needs one can be skipped with its
    reason). Raises ConfigError, one line naming the file, for a missing table, a missing
    required column or a duplicated track_id."""
    corpus_dir = Path(corpus_dir)
    table = corpus_dir / TABLE
    if not corpus_dir.is_dir():
        raise ConfigError(f"{corpus_dir}: no such folder (expected the corpus folder that "
                          f"holds {TABLE} and audio/)")
    if not table.is_file():
        raise ConfigError(f"{table}: file not found (expected the corpus folder written by "
                          "scripts/real_music.py: tracks.csv with track_id,path,... and audio/)")
    if audio_dir is None:
        audio_dir = corpus_dir / "audio" if (corpus_dir / "audio").is_dir() else corpus_dir
    required = ("track_id", "path")
    optional = tuple(dict.fromkeys(c for c in columns if c and c not in required))
    rows = read_table(table, required, optional)
    present = frozenset(_header(table))
    tracks, seen = [], set()
    for n, r in enumerate(rows, start=2):
        if not r["track_id"] or not r["path"]:
            raise ConfigError(f"{table}: line {n}: empty track_id or path")
        if r["track_id"] in seen:
            raise ConfigError(f"{table}: line {n}: track_id '{r['track_id']}' appears twice")
        seen.add(r["track_id"])
        p = Path(r["path"])
        values = {c: r[c] for c in optional}
        values["track_id"] = r["track_id"]
        tracks.append(Track(r["track_id"], p if p.is_absolute() else Path(audio_dir) / p, values))
    if not tracks:
        raise ConfigError(f"{table}: no tracks (the table has a header only)")
    return Corpus(table, tracks, present | {"track_id"})


# ---------------------------------------------------------------------- a dataset's split


@dataclass(frozen=True)
class SplitTracks:
    """The collection's track ids a dataset put in one split, and in its other splits
    (what a model trained on that dataset has seen, its validation tracks included)."""

    dataset: Path
    split: str
    chosen: frozenset[str]
    others: frozenset[str]


def _read_json_file(path: Path, what: str) -> object:
    if not path.is_file():
        raise ConfigError(f"{path}: file not found (expected {what})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: not readable JSON ({type(e).__name__}; expected {what})"
                          ) from None


def _track_id_map(manifest: Path, content: dict) -> tuple[Path, dict[int, str]]:
    """The import_audio directory a dataset was built from (``layout.corpus_dirs``) and
    its map of integer id -> the collection's track id (``layout.TRACK_IDS``)."""
    from ..layout import TRACK_IDS, corpus_dirs

    dirs = corpus_dirs(content, manifest.parent)
    path = next((d / TRACK_IDS for d in dirs if (d / TRACK_IDS).is_file()), None)
    if path is None:
        where = f"from {dirs[0]}, which holds no {TRACK_IDS}" if dirs else "from no named folder"
        raise ConfigError(f"{manifest}: the dataset was built {where} (not written by "
                          "import_audio.py, or moved); only a dataset built from an "
                          "import_audio.py directory maps to tracks.csv")
    try:
        rows = read_table(path, ("id", "track_id"), ())
        return path, {int(r["id"]): r["track_id"] for r in rows}
    except ValueError:
        raise ConfigError(f"{path}: column id holds a value that is not an integer") from None


def read_split(dataset_dir: Path, split: str) -> SplitTracks:
    """The tracks of ``split`` in the dataset ``create_dataset`` wrote to ``dataset_dir``,
    by the collection's own track ids: its ``splits.json`` lists integer ids, which the
    ``import_audio`` directory it was built from (the manifest's ``source.melon_dir``)
    maps back (``track_ids.csv``). So a model trained on the dataset's train split is
    scored on tracks it never saw. ConfigError, one line naming the file, otherwise."""
    from ..layout import MANIFEST, SPLITS, SPLITS_FILE

    dataset_dir = Path(dataset_dir)
    if split not in SPLITS:
        raise ConfigError(f"--split {split}: expected one of {', '.join(SPLITS)}")
    manifest = dataset_dir / MANIFEST
    m = _read_json_file(manifest, "the manifest of a dataset create_dataset.py wrote")
    if not isinstance(m, dict):
        raise ConfigError(f"{manifest}: expected a JSON object (create_dataset.py's manifest)")
    splits = _read_json_file(dataset_dir / SPLITS_FILE, "train/val/test lists of track ids")
    if not isinstance(splits, dict) or not all(isinstance(splits.get(s), list) for s in SPLITS):
        raise ConfigError(f"{dataset_dir / SPLITS_FILE}: expected lists {', '.join(SPLITS)}")
    ids_file, names = _track_id_map(manifest, m)
    unknown = [i for s in SPLITS for i in splits[s] if i not in names]
    if unknown:
        raise ConfigError(f"{dataset_dir / SPLITS_FILE}: id {unknown[0]} is not in {ids_file} "
                          f"({len(unknown)} such ids; was the import rerun after the dataset "
                          "was built?)")
    return SplitTracks(dataset_dir, split, frozenset(names[i] for i in splits[split]),
                       frozenset(names[i] for s in SPLITS if s != split for i in splits[s]))


def select_split(corpus: Corpus, split: SplitTracks, group: str | None
                 ) -> tuple[Corpus, dict]:
    """``corpus`` restricted to the tracks of ``split``, less each one that shares a
    ``group`` value (a work: a mass's movements, a tune's versions) with a track of the
    other splits, so no work is both trained on and scored. Returns the restricted corpus
    and a record of what was left out and why (results.json's ``split``). ConfigError when
    no track of the table is in the split."""
    by_id = {t.track_id: t for t in corpus.tracks}
    in_split = [t for t in corpus.tracks if t.track_id in split.chosen]
    info: dict = {"dataset": str(split.dataset), "split": split.split,
                  "split_tracks": len(split.chosen), "in_table": len(in_split),
                  "group_column": group, "left_out_shared_group": []}
    if not in_split:
        raise ConfigError(f"{corpus.table}: none of the {len(split.chosen)} tracks of the "
                          f"{split.split} split of {split.dataset} is in this table (a dataset "
                          "built from another collection?)")
    notes = []
    if len(in_split) < len(split.chosen):
        notes.append(f"{len(split.chosen) - len(in_split)} tracks of the {split.split} split "
                     f"are not in {corpus.table}")
    if group and group in corpus.columns:
        if any(group not in t.values for t in corpus.tracks):
            raise ValueError(f"select_split: {corpus.table} was read without its '{group}' "
                             "column (pass it to read_corpus)")
        seen = {by_id[t].values.get(group, "") for t in split.others if t in by_id}
        seen.discard("")
        unknown = sum(t not in by_id for t in split.others)
        if unknown:
            notes.append(f"{unknown} tracks of the other splits are not in the table: their "
                         f"'{group}' cannot be checked")
        shared = [t for t in in_split if t.values.get(group, "") in seen]
        info["left_out_shared_group"] = [{"track_id": t.track_id, group: t.values[group]}
                                         for t in shared]
        if shared:
            notes.append(f"left out {len(shared)} {split.split} tracks whose '{group}' also has "
                         f"tracks in the other splits (e.g. {shared[0].values[group]})")
        in_split = [t for t in in_split if t not in shared]
    elif group:
        notes.append(f"{corpus.table} has no column '{group}': tracks of one work may be on "
                     "both sides of the split")
    if not in_split:
        raise ConfigError(f"{corpus.table}: every track of the {split.split} split shares its "
                          f"'{group}' with the other splits; nothing is left to score")
    info.update(scored=len(in_split), notes=notes)
    return Corpus(corpus.table, in_split, corpus.columns), info


# ---------------------------------------------------------------------- the chunks


def audio_duration(path: Path) -> float:
    """Seconds of audio in ``path`` from its header (soundfile, else librosa/audioread).
    AudioError naming the file when it is missing or neither can read it."""
    import soundfile as sf

    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    with contextlib.suppress(Exception):  # libsndfile cannot read it: try audioread
        return float(sf.info(str(path)).duration)
    try:
        import librosa

        return float(librosa.get_duration(path=str(path)))
    except Exception as e:  # noqa: BLE001 -- any decoder error is this file's problem
        line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise AudioError(f"{path}: cannot read its duration ({line})") from None


def chunk_positions(duration: float, seconds: float, gap: float,
                    rng: np.random.Generator) -> tuple[float, float] | None:
    """Two starts (s), uniform over every pair of ``seconds``-long windows inside
    ``duration`` with at least ``gap`` s between them; None when the file is too short.
    Two uniform draws on the slack, sorted, give that uniform pair (order statistics)."""
    slack = duration - _END_MARGIN - 2 * seconds - gap
    if slack < 0:
        return None
    a, b = np.sort(rng.uniform(0.0, slack, size=2))
    return round(float(a), 3), round(float(b) + seconds + gap, 3)


def chunk_id(track_id: str, start: float, seconds: float) -> str:
    """``TRACK@START+SECONDS``: another plan (seed, length) gives other ids."""
    return f"{track_id}@{start:.3f}+{seconds:g}"


def plan_chunks(tracks: Sequence[Track], seconds: float = DEFAULT_CHUNK_SECONDS,
                gap: float = DEFAULT_GAP_SECONDS, seed: int = 0, progress: bool = False,
                ) -> tuple[list[Chunk], list[dict[str, str]]]:
    """Two chunks per usable track: (chunks, dropped tracks with their reason).

    Positions come from a stream seeded by (``seed``, the track id's CRC-32), so a
    track's chunks do not move when other tracks are added or removed. Chunk k of
    track i is ``chunks[2 i' + k]`` where i' counts the kept tracks."""
    from tqdm import tqdm

    chunks: list[Chunk] = []
    dropped: list[dict[str, str]] = []
    for i, t in enumerate(tqdm(tracks, desc="durations", unit="track", disable=not progress)):
        try:
            duration = audio_duration(t.file)
        except AudioError as e:
            dropped.append({"track_id": t.track_id, "reason": str(e)})
            continue
        rng = np.random.default_rng([seed, zlib.crc32(t.track_id.encode("utf-8"))])
        starts = chunk_positions(duration, seconds, gap, rng)
        if starts is None:
            dropped.append({"track_id": t.track_id, "reason": (
                f"{t.file}: {duration:.1f} s, shorter than two {seconds:g} s chunks "
                f"{gap:g} s apart")})
            continue
        chunks.extend(Chunk(chunk_id(t.track_id, s, seconds), i, t.track_id, t.file, s,
                            seconds) for s in starts)
    return chunks, dropped


def write_chunk_list(path: Path, chunks: Sequence[Chunk]) -> None:
    """chunks.csv (``CHUNK_COLUMNS``; ``file`` absolute), written atomically."""
    from ..io import atomic_path

    with atomic_path(Path(path)) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(CHUNK_COLUMNS)
        for c in chunks:
            w.writerow([c.chunk_id, c.track_id, str(Path(c.file).resolve()), f"{c.start:.3f}",
                        f"{c.seconds:g}"])


def windows_per_chunk(seconds: float) -> int:
    """How many non-overlapping 256-frame encoder inputs a chunk holds (at least 1)."""
    frames = 1 + round(seconds * SAMPLE_RATE) // HOP_SIZE
    return max(1, frames // CROP_FRAMES)


def decode_chunks(chunks: Sequence[Chunk], progress: bool = False,
                  ) -> tuple[np.ndarray, dict[int, str]]:
    """((n, W x 256, 48) float32 mel frames, {track position: why it failed}).

    W = ``windows_per_chunk``; the frames past W x 256 are not used. A chunk that cannot
    be decoded fails its track (both chunks' rows stay zero and must be dropped)."""
    from tqdm import tqdm

    if not chunks:
        return np.zeros((0, CROP_FRAMES, N_MELS), np.float32), {}
    need = windows_per_chunk(chunks[0].seconds) * CROP_FRAMES
    out = np.zeros((len(chunks), need, N_MELS), np.float32)
    failed: dict[int, str] = {}
    for k, c in enumerate(tqdm(chunks, desc="decode chunks", unit="chunk", disable=not progress)):
        if c.track in failed:
            continue
        try:
            y = load_audio(c.file, SAMPLE_RATE, offset=c.start, duration=c.seconds)
            frames = mel_to_frames(mel_spectrogram_db(y))
        except (AudioError, ValueError) as e:
            failed[c.track] = str(e)
            continue
        if len(frames) < need:
            failed[c.track] = (f"{c.file}: chunk at {c.start:.3f} s gave {len(frames)} mel "
                               f"frames, fewer than {need}")
            continue
        out[k] = frames[:need]
    return out, failed


# ---------------------------------------------------------------------- the rows


def logmel_stats(mels: np.ndarray) -> np.ndarray:
    """(n, 96): mean and standard deviation of each of the 48 dB bands over a chunk's
    frames, the plain-feature baseline (the encoder's own front end, no learning)."""
    m = np.asarray(mels, np.float64)
    return np.concatenate([m.mean(axis=1), m.std(axis=1)], axis=1).astype(np.float32)


def random_encoder(width: float, seed: int = 0) -> AudioEncoder:
    """The paper's CNN at ``width`` with seeded random weights, in eval mode: the
    untrained reference a trained encoder must beat. The global torch RNG is untouched."""
    import torch

    from ..model.audio_cnn import AudioEncoder

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AudioEncoder(width=width)
    return model.eval()


def encode_mels(model: torch.nn.Module, mels: np.ndarray, layer: str,
                device: torch.device | str, bf16: bool = False,
                batch_size: int = 64, progress: bool = False, desc: str = "encode") -> np.ndarray:
    """(n, d) chunk embeddings: the mean of the encoder's outputs over each chunk's
    256-frame windows (one window at the default 4.096 s), made by the same
    ``inference.embed.embed_stream`` as every track embedding."""
    from tqdm import tqdm

    from ..inference.embed import embed_stream

    stream = embed_stream(model, mels, layer, device, batch_size, bf16=bf16)
    rows = list(tqdm(stream, total=len(mels), desc=desc, unit="chunk", disable=not progress))
    return np.stack(rows).astype(np.float32, copy=False)


def read_anchor(path: Path, chunk_ids: Sequence[str]) -> np.ndarray:
    """(len(chunk_ids), d) rows of an external embedding file, in ``chunk_ids`` order.

    The ``.npz`` holds ``chunk_ids`` (n,) str and ``embeddings`` (n, d) float (rows of
    other ids are ignored). ConfigError, one line naming the file and what was
    expected, for anything else: not a readable npz, a missing key, wrong shapes,
    duplicated ids, ids of the plan it lacks (made for another chunk list?) or values
    that are not finite."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found (expected an .npz with chunk_ids and "
                          "embeddings)")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 -- zip/npy errors all mean "not a readable npz"
        line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"{path}: not a readable .npz ({line}; expected arrays chunk_ids "
                          "and embeddings)") from None
    for key in ("chunk_ids", "embeddings"):
        if key not in data:
            raise ConfigError(f"{path}: no array '{key}' (found {', '.join(sorted(data)) or 'none'}"
                              "; expected chunk_ids (n,) str and embeddings (n, d))")
    ids, emb = data["chunk_ids"], data["embeddings"]
    if ids.ndim != 1 or emb.ndim != 2 or len(ids) != len(emb) or emb.dtype.kind not in "fiu":
        raise ConfigError(f"{path}: chunk_ids {ids.shape} and embeddings {emb.shape} "
                          f"({emb.dtype}): expected (n,) ids and (n, d) numbers")
    index = {str(x): i for i, x in enumerate(ids.tolist())}
    if len(index) != len(ids):
        raise ConfigError(f"{path}: chunk_ids holds duplicated ids")
    missing = [c for c in chunk_ids if c not in index]
    if missing:
        raise ConfigError(f"{path}: lacks {len(missing)} of the {len(chunk_ids)} chunk ids, "
                          f"e.g. '{missing[0]}' (made from another chunk list? rerun its "
                          "script on this run's --write-chunks file)")
    rows = emb[[index[c] for c in chunk_ids]].astype(np.float32)
    if not np.isfinite(rows).all():
        raise ConfigError(f"{path}: embeddings hold NaN or infinite values")
    return rows


# ---------------------------------------------------------------------- retrieval


def _cosines(emb: np.ndarray) -> np.ndarray:
    x = np.asarray(emb, np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)  # a zero row: all ties
    return x @ x.T


def _sibling_ranks(sims: np.ndarray, sibling: np.ndarray,
                   allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per query: expected top-1 hit and reciprocal rank of its sibling among the allowed
    candidates, ties broken at random (so a constant embedding scores exactly chance)."""
    n = len(sims)
    s = np.where(allowed, sims, -np.inf)
    s[np.arange(n), np.arange(n)] = -np.inf
    target = sims[np.arange(n), sibling][:, None]
    greater = (s > target).sum(axis=1)
    ties = (s == target).sum(axis=1) - 1  # the sibling itself is not a tie
    top1 = (greater == 0) / (ties + 1.0)
    rr = np.array([np.mean(1.0 / np.arange(g + 1, g + t + 2)) for g, t in zip(greater, ties)])
    return top1, rr


def _per_track(values: np.ndarray) -> np.ndarray:
    """(2N,) per-query values, chunks of a track adjacent -> (N,) track means."""
    return values.reshape(-1, 2).mean(axis=1)


def retrieval_scores(emb: np.ndarray, scope: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Same-recording retrieval, per track (the mean of its two queries).

    ``emb`` (2N, d): rows 2i and 2i+1 are track i's chunks. Each chunk queries all other
    chunks by cosine; ``pool_*`` rank its sibling among all 2N - 1, ``within_*`` among
    the chunks of tracks with the same ``scope`` value (NaN for a track alone in its
    scope, where retrieval is trivial). Returns (N,) arrays pool_top1, pool_mrr and,
    with ``scope``, within_top1, within_mrr."""
    n = len(emb)
    if n % 2 or n < 4:
        raise ValueError(f"retrieval_scores: expected 2 chunks for each of >= 2 tracks, got {n}")
    sims = _cosines(emb)
    sibling = np.arange(n) ^ 1
    top1, rr = _sibling_ranks(sims, sibling, np.ones((n, n), bool))
    out = {"pool_top1": _per_track(top1), "pool_mrr": _per_track(rr)}
    if scope is not None:
        chunk_scope = np.repeat(np.asarray(scope, dtype=object), 2)
        same = chunk_scope[:, None] == chunk_scope[None, :]
        top1, rr = _sibling_ranks(sims, sibling, same)
        alone = same.sum(axis=1) <= 2
        out["within_top1"] = _per_track(np.where(alone, np.nan, top1))
        out["within_mrr"] = _per_track(np.where(alone, np.nan, rr))
    return out


def _chance(candidates: int) -> tuple[float, float]:
    """Top-1 and MRR of a random ranking of ``candidates`` with one relevant item."""
    return 1.0 / candidates, float(np.mean(1.0 / np.arange(1, candidates + 1)))


def retrieval_chance(n_tracks: int, scope: Sequence[str] | None = None) -> dict[str, float]:
    """The values of ``retrieval_scores`` for embeddings that carry nothing (a random
    ranking): pool over 2N - 1 candidates; within, averaged over the tracks that count."""
    top1, mrr = _chance(2 * n_tracks - 1)
    out = {"pool_top1": top1, "pool_mrr": mrr}
    if scope is not None:
        sizes = Counter(scope)
        vals = [_chance(2 * sizes[s] - 1) for s in scope if sizes[s] > 1]
        out["within_top1"] = float(np.mean([v[0] for v in vals])) if vals else math.nan
        out["within_mrr"] = float(np.mean([v[1] for v in vals])) if vals else math.nan
    return out


# ---------------------------------------------------------------------- the probe


@dataclass
class ProbePlan:
    """Who is scored on a labelled task and in which fold: fixed before any embedding, so
    every row is scored on the same tracks and splits. ``groups`` lists, per scope, the
    track positions, their labels and their fold numbers."""

    label: str
    groups: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]
    n_tracks: int
    notes: list[str]


def _scope_folds(labels: np.ndarray, groups: np.ndarray, folds: int,
                 seed: int) -> np.ndarray | str:
    """Fold number of each track (grouped, stratified), or why the scope cannot be split."""
    import warnings

    from sklearn.model_selection import StratifiedGroupKFold

    # sklearn refuses more folds than the largest label has tracks
    k = min(folds, len(set(groups.tolist())), max(Counter(labels.tolist()).values()))
    if k < 2:
        return "fewer than 2 groups to split"
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    fold = np.full(len(labels), -1)
    with warnings.catch_warnings():  # "least populated class has fewer members than n_splits"
        warnings.simplefilter("ignore", UserWarning)
        for f, (_, test) in enumerate(cv.split(np.zeros(len(labels)), labels, groups)):
            fold[test] = f
    return fold


def plan_probe(values: Sequence[dict[str, str]], label: str, group: str, within: str | None,
               min_per_class: int = 4, folds: int = 5, seed: int = 0) -> ProbePlan:
    """The folds of the ``label`` probe over tracks' column ``values``.

    Within each ``within`` value (the whole corpus when None), labels with at least
    ``min_per_class`` tracks are kept; a scope with fewer than two such labels is left
    out (noted). Folds are grouped by ``group``: no group value is on both sides. Where
    ``group`` takes one value within a scope it cannot carry the label there, and that
    scope is split by track (noted)."""
    scopes: dict[str, list[int]] = {}
    for i, v in enumerate(values):
        if v.get(label, ""):
            scopes.setdefault(v.get(within, "") if within else "all", []).append(i)
    plan, notes, n = [], [], 0
    for name, idx in sorted(scopes.items()):
        counts = Counter(values[i][label] for i in idx)
        keep = [i for i in idx if counts[values[i][label]] >= min_per_class]
        classes = sorted({values[i][label] for i in keep})
        if len(classes) < 2:
            notes.append(f"{name}: skipped ({len(classes)} {label} value(s) with >= "
                         f"{min_per_class} tracks)")
            continue
        y = np.array([values[i][label] for i in keep], dtype=object)
        g = np.array([values[i].get(group, "") for i in keep], dtype=object)
        if len(set(g.tolist())) == 1:
            notes.append(f"{name}: one {group} value ('{g[0]}'), so it cannot leak "
                         f"{label} there: split by track")
            g = np.arange(len(keep)).astype(object)
        fold = _scope_folds(y.astype(str), g.astype(str), folds, seed)
        if isinstance(fold, str):
            notes.append(f"{name}: skipped ({fold})")
            continue
        plan.append((name, np.array(keep), y, fold))
        n += len(keep)
        notes.append(f"{name}: {len(keep)} tracks, {len(classes)} {label} values, "
                     f"{int(fold.max()) + 1} folds")
    return ProbePlan(label, plan, n, notes)


def probe_scores(plan: ProbePlan, track_emb: np.ndarray, n_tracks: int,
                 seed: int = 0) -> np.ndarray:
    """(N,) 1.0 where the out-of-fold prediction is right, 0.0 where wrong, NaN for tracks
    outside the plan. The probe: standardised features, logistic regression (C = 1,
    lbfgs, seeded), fitted on the other folds of the track's scope."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    out = np.full(n_tracks, np.nan)
    for _, idx, y, fold in plan.groups:
        x = np.asarray(track_emb[idx], np.float64)
        for f in range(int(fold.max()) + 1):
            tr, te = fold != f, fold == f
            if len(set(y[tr])) < 2:  # one class left to learn: that is the prediction
                pred = np.full(te.sum(), y[tr][0], dtype=object)
            else:
                scaler = StandardScaler().fit(x[tr])
                clf = LogisticRegression(C=1.0, max_iter=2000, random_state=seed)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    clf.fit(scaler.transform(x[tr]), y[tr].astype(str))
                pred = clf.predict(scaler.transform(x[te]))
            out[idx[te]] = (pred.astype(str) == y[te].astype(str)).astype(float)
    return out


def probe_chance(plan: ProbePlan) -> float:
    """The majority label's share in each scope, over the planned tracks: what always
    guessing a scope's most common label scores."""
    if not plan.n_tracks:
        return math.nan
    return sum(Counter(y.tolist()).most_common(1)[0][1] for _, _, y, _ in plan.groups) / plan.n_tracks


# ---------------------------------------------------------------------- intervals


def bootstrap_weights(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) draw counts of a bootstrap over n tracks, one matrix shared by every
    row and metric so that all are scored on the same resampled corpora."""
    rng = np.random.default_rng([seed, 0xB007])
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)


def bootstrap_interval(values: np.ndarray, weights: np.ndarray) -> dict[str, float | None]:
    """Mean of per-track ``values`` (NaN = not scored) and its percentile interval: each
    replicate's weighted mean over the scored tracks it drew."""
    v = np.asarray(values, np.float64)
    ok = np.isfinite(v)
    if not ok.any():
        return {"mean": None, "low": None, "high": None, "n": 0}
    w = weights[:, ok]
    total = w.sum(axis=1)
    reps = (w @ v[ok])[total > 0] / total[total > 0]
    tail = 100 * (1 - CONFIDENCE) / 2
    lo, hi = np.percentile(reps, [tail, 100 - tail]) if len(reps) else (math.nan, math.nan)
    return {"mean": float(v[ok].mean()), "low": float(lo), "high": float(hi), "n": int(ok.sum())}
