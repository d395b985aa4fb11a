"""create_dataset: a Melon directory -> the HDF5 splits and side files training reads.

Steps (PAPER.md section 2):
1. read the metadata; tracks without a mel file or without a known genre are skipped;
2. genre vocabulary and label rows; multilabel-stratified test/val/train split;
3. CF vectors from the `train.json` playlists over the non-test tracks;
4. stream the mels (read in parallel, checked, first `frames` frames, frames x bands)
   into `train.h5`, `val.h5`, `test.h5`; unusable mels are skipped and reported;
5. side files for training and evaluation, then `manifest.json` last.

Output directory:
    train.h5 val.h5 test.h5    the splits (see h5io.py)
    genres.json                vocabulary: codes, names, major flags (position = index)
    splits.json                track ids per split (as written)
    cf_playlists.npy           (P, D) playlist vectors; cf_playlist_ids.npy (P,)
    continuation.json          playlists with known (train/val) and held-out (test) tracks
    track_tags.json            top-50 playlist tags and each track's tags
    playlist_tags.json         the tags view's: training playlists' tags (tags.py)
    popularity.json            track id -> number of playlists containing it
    skipped.json               every skipped track and playlist with its reason
    manifest.json              source, arguments, counts, version (written last)

Every file is written under a temporary name and renamed when complete, so a file under
a final name is always whole; `manifest.json` marks a finished dataset.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import __version__
from .cf import train_cf
from .genres import build_vocab, label_row, multi_hot
from .h5io import SplitWriter
from .io import clean_stale_temp, write_json, write_npy
from .melon import (
    MelonFormatError,
    Playlist,
    TrackSkip,
    load_mel,
    mel_path,
    read_genre_names,
    read_playlists,
    read_song_meta,
)
from .splits import stratified_split
from .tags import TAG_MATRIX, TAGS_FILE, write_playlist_tags

N_TOP_TAGS = 50
SPLITS = ("train", "val", "test")
OUTPUT_FILES = (
    "train.h5", "val.h5", "test.h5", "genres.json", "splits.json", "cf_playlists.npy",
    "cf_playlist_ids.npy", "continuation.json", "track_tags.json", "popularity.json",
    "skipped.json", "embedding_matrix_128.npy", "manifest.json",
)
OUTPUT_FILES += (TAGS_FILE, TAG_MATRIX)  # the playlist-tags view's files (tags.py)


@dataclass
class DatasetArgs:
    melon_dir: str
    out_dir: str
    frames: int = 1300
    cf_algorithm: str = "bpr"
    cf_factors: int = 300
    cf_epochs: int = 50
    cf_learning_rate: float = 0.05
    cf_seed: int = 42
    seed: int = 0
    test_size: float = 0.1
    val_size: float = 0.1
    dtype: str = "float32"
    workers: int = 4
    batch_size: int = 64
    overwrite: bool = False


class DatasetError(RuntimeError):
    """A problem with the arguments or the output directory (one-line message)."""


def _prepare_out_dir(out: Path, overwrite: bool) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DatasetError(f"{out}: cannot create the output directory ({e.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise DatasetError(f"{out}: output directory is not writable")
    if (out / "manifest.json").exists() and not overwrite:
        raise DatasetError(f"{out}: already holds a finished dataset (manifest.json); "
                           "pass --overwrite to rebuild it")
    clean_stale_temp(out)
    # Start clean: an earlier, interrupted run may have finished some files; mixing them
    # with this run's would give a dataset no single run made.
    for name in OUTPUT_FILES:
        (out / name).unlink(missing_ok=True)


def _playlist_side_files(
    playlists: list[Playlist], split_of: dict[int, str]
) -> tuple[list[dict], dict, dict]:
    """Continuation pairs, track tags and popularity over the written tracks."""
    continuation = []
    tag_count: Counter = Counter()
    track_tags: dict[int, set[str]] = {t: set() for t in split_of}
    popularity: Counter = Counter()
    for pl in playlists:
        songs = [s for s in dict.fromkeys(pl.songs) if s in split_of]
        known = [s for s in songs if split_of[s] != "test"]
        held = [s for s in songs if split_of[s] == "test"]
        if known and held:
            continuation.append({"id": pl.id, "known": known, "held_out": held})
        for s in songs:
            popularity[s] += 1
            track_tags[s].update(pl.tags)
    for tags in track_tags.values():
        tag_count.update(tags)
    top = [t for t, _ in sorted(tag_count.items(), key=lambda kv: (-kv[1], kv[0]))[:N_TOP_TAGS]]
    tag_index = {t: i for i, t in enumerate(top)}
    tags_json = {
        "tags": top,
        "tracks": {str(t): sorted(tag_index[x] for x in tags if x in tag_index)
                   for t, tags in sorted(track_tags.items())},
    }
    pop_json = {str(t): popularity[t] for t in sorted(split_of)}
    return continuation, tags_json, pop_json


def _read_mel_frames(root: Path, song_id: int, frames: int) -> np.ndarray:
    mel = load_mel(root, song_id, min_frames=frames)
    return np.ascontiguousarray(mel[:, :frames].T)  # (48, T) -> (frames, 48)


def _write_split(
    name: str,
    out: Path,
    root: Path,
    ids: np.ndarray,
    labels: np.ndarray,
    cf: np.ndarray | None,
    args: DatasetArgs,
    pool: ThreadPoolExecutor,
    skipped: list[dict],
) -> np.ndarray:
    """Stream one split's mels into `<name>.h5`; returns the ids written."""
    manifest = {"split": name, "version": __version__, **asdict(args)}
    writer = SplitWriter(out / f"{name}.h5", len(ids), args.frames,
                         None if cf is None else cf.shape[1], args.dtype, manifest)
    written = []

    def read(song_id: int) -> np.ndarray | TrackSkip:
        try:
            return _read_mel_frames(root, int(song_id), args.frames)
        except TrackSkip as e:
            return e

    try:
        bar = tqdm(total=len(ids), desc=f"{name}.h5", unit="track", file=sys.stderr)
        for start in range(0, len(ids), args.batch_size):
            batch = ids[start:start + args.batch_size]
            results = list(pool.map(read, batch))
            ok = [i for i, r in enumerate(results) if not isinstance(r, TrackSkip)]
            for i, r in enumerate(results):
                if isinstance(r, TrackSkip):
                    skipped.append({"id": int(batch[i]), "reason": r.reason, "detail": r.detail})
            if ok:
                rows = start + np.asarray(ok)
                writer.append(
                    batch[ok],
                    np.stack([results[i] for i in ok]).astype(args.dtype, copy=False),
                    labels[rows],
                    None if cf is None else cf[rows],
                )
                written.extend(int(batch[i]) for i in ok)
            bar.update(len(batch))
        bar.close()
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return np.asarray(written, dtype=np.int64)


def create_dataset(args: DatasetArgs) -> dict:
    """Build the dataset directory `args.out_dir` from the Melon directory `args.melon_dir`.

    Returns the manifest. Raises MelonFormatError for malformed metadata and
    DatasetError for unusable arguments or output directories.
    """
    root, out = Path(args.melon_dir), Path(args.out_dir)
    if args.dtype not in ("float32", "float16"):
        raise DatasetError(f"--dtype must be float32 or float16, got {args.dtype}")
    if args.frames < 256:
        raise DatasetError(f"--frames must be at least 256 (one training crop), got {args.frames}")
    if not root.is_dir():
        raise DatasetError(f"{root}: Melon directory not found")
    _prepare_out_dir(out, args.overwrite)

    songs = read_song_meta(root)
    names = read_genre_names(root)
    playlists = read_playlists(root)
    seen: set[int] = set()
    for s in songs:
        if s.id in seen:
            raise MelonFormatError(f"{root / 'song_meta.json'}: song id {s.id} appears twice")
        seen.add(s.id)

    skipped: list[dict] = []
    empty = [pl.id for pl in playlists if not pl.songs]
    skipped_playlists = [{"id": pid, "reason": "empty_playlist"} for pid in empty]
    playlists = [pl for pl in playlists if pl.songs]

    # Cheap checks first (a stat and the metadata), so the split sees usable tracks.
    vocab, unknown_codes = build_vocab([s.genres + s.detail_genres for s in songs], names)
    index = vocab.index
    cand_ids, cand_labels = [], []
    for s in tqdm(songs, desc="metadata", unit="song", file=sys.stderr, mininterval=1):
        row = label_row(s.genres + s.detail_genres, index)
        if row[0] < 0:
            skipped.append({"id": s.id, "reason": "no_genre", "detail": ""})
        elif not mel_path(root, s.id).is_file():
            skipped.append({"id": s.id, "reason": "mel_missing",
                            "detail": str(mel_path(root, s.id))})
        else:
            cand_ids.append(s.id)
            cand_labels.append(row)
    if len(cand_ids) < 10:
        raise DatasetError(f"{root}: only {len(cand_ids)} usable tracks; need at least 10")
    ids = np.asarray(cand_ids, dtype=np.int64)
    labels = np.stack(cand_labels)

    train_i, val_i, test_i = stratified_split(
        multi_hot(labels, len(vocab.codes)), args.test_size, args.val_size, args.seed
    )
    print(f"split: {len(train_i)} train, {len(val_i)} val, {len(test_i)} test tracks",
          file=sys.stderr)

    # CF on train.json playlists over the non-test tracks.
    cf_ids = np.sort(np.concatenate([ids[train_i], ids[val_i]]))
    cf = train_cf(
        [pl for pl in playlists if pl.source == "train.json"], cf_ids, args.cf_algorithm,
        args.cf_factors, args.cf_epochs, args.cf_learning_rate, seed=args.cf_seed,
    )
    cf_row = {int(t): j for j, t in enumerate(cf.track_ids)}

    written: dict[str, np.ndarray] = {}
    with ThreadPoolExecutor(max(1, args.workers)) as pool:
        for name, rows in zip(SPLITS, (train_i, val_i, test_i)):
            split_cf = None
            if name != "test":
                split_cf = cf.track_vectors[[cf_row[int(t)] for t in ids[rows]]]
            written[name] = _write_split(name, out, root, ids[rows], labels[rows], split_cf,
                                         args, pool, skipped)

    split_of = {int(t): name for name in SPLITS for t in written[name]}
    continuation, tags_json, pop_json = _playlist_side_files(playlists, split_of)
    write_json(out / "genres.json", vocab.to_json())
    write_json(out / "splits.json", {k: v.tolist() for k, v in written.items()}, indent=None)
    write_npy(out / "cf_playlists.npy", cf.playlist_vectors)
    write_npy(out / "cf_playlist_ids.npy", cf.playlist_ids)
    write_json(out / "continuation.json", {"playlists": continuation}, indent=None)
    write_json(out / "track_tags.json", tags_json, indent=None)
    write_json(out / "popularity.json", pop_json, indent=None)
    write_playlist_tags(out, playlists, split_of)  # what the tags view reads

    reasons = Counter(s["reason"] for s in skipped)
    write_json(out / "skipped.json", {
        "count": len(skipped),
        "by_reason": dict(sorted(reasons.items())),
        "unknown_genre_codes": dict(sorted(unknown_codes.items())),
        "tracks": sorted(skipped, key=lambda s: s["id"]),
        "playlists": skipped_playlists,
    })
    manifest = {
        "format": "musicrep-dataset",
        "version": __version__,
        "source": str(args.melon_dir),
        "args": asdict(args),
        "counts": {
            "songs_in_meta": len(songs),
            "playlists": len(playlists) + len(empty),
            **{f"{k}_tracks": len(v) for k, v in written.items()},
            "skipped_tracks": len(skipped),
            "skipped_playlists": len(empty),
            "cf_playlists": len(cf.playlist_ids),
            "continuation_playlists": len(continuation),
            "genres": len(vocab.codes),
            "major_genres": sum(vocab.major),
        },
        "skipped_by_reason": dict(sorted(reasons.items())),
        "frames": args.frames,
        "cf_dim": int(cf.track_vectors.shape[1]),
    }
    write_json(out / "manifest.json", manifest)
    return manifest
