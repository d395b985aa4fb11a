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
    track_tags.json            top-50 playlist tags (counted on train+val tracks) and each
                               track's tags
    playlist_tags.json         the tags view's: training playlists' tags (tags.py)
    popularity.json            track id -> number of playlists containing it
    skipped.json               every skipped track and playlist with its reason, and the
                               train/val tracks without a CF vector (below)
    manifest.json              source, arguments, counts, version, and `warnings`: the
                               tasks a split is too small for (minimums.py; also on
                               stderr) (written last)

Tracks without a CF vector: a train/val track that no train.json playlist holds gets an
all-zero CF row (cf.py). It is written with `cf_known = 0` (h5io.py), counted in the
manifest (`<split>_tracks_without_cf`) and listed in skipped.json; training keeps it out
of every CF loss term (objectives.py) and uses it everywhere else.

Failure rules (docs/failures.md): every argument is
checked before any work; the dataset is built in a temporary directory beside the output
and swapped in only when complete, so an error, Ctrl-C or a kill never leaves a partial
dataset under the output name nor removes the previous one; a lock file beside the
output keeps a second run out; a split with no usable track is an error, never a
dataset. `manifest.json` (written last) marks a finished dataset. An output directory
that is (or contains) the Melon directory is refused: the swap would delete the input.
A write that fails (disk full) leaves as an OSError naming the output file.
"""

from __future__ import annotations

import math
import shutil
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..version import __version__
from .cf import train_cf
from ..audio import CROP_FRAMES
from .genres import GenreVocab, build_vocab, label_row, multi_hot
from .h5io import SplitWriter
from ..io import (
    InterruptGuard,
    OutputLocked,
    naming_os_errors,
    output_lock,
    recover_dir,
    swap_in_dir,
    temp_dir_beside,
    write_error,
    write_json,
    write_npy,
)
from .melon import (
    SONG_META,
    TRAIN_PLAYLISTS,
    MelonFormatError,
    Playlist,
    TrackSkip,
    _read_json,
    load_mel,
    mel_path,
    read_genre_names,
    read_playlists,
    read_song_meta,
)
from .minimums import dataset_warnings, major_genre_matrix
from .splits import stratified_split
from .tags import write_playlist_tags
from .. import layout as L
from ..layout import DERIVED_FILES, GENERATED_MARKER, OUTPUT_FILES, SPLITS

N_TOP_TAGS = 50
TAG_VOCABULARY_SPLITS = "train+val"  # track_tags.json: the splits its top tags are counted on
# Files later steps derive from a dataset inside its directory (train_genre_w2v.py
# --dim N); a rebuild replaces them along with the dataset.
DTYPES = ("float32", "float16")
CF_ALGORITHMS = ("bpr", "als")
MIN_FRAMES = CROP_FRAMES  # a track must hold at least one training crop
MIN_TRACKS = 10
_INTERRUPT = InterruptGuard()


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


def _int_arg(errors: list[str], flag: str, value, lo: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        errors.append(f"{flag} must be an integer >= {lo}, got {value!r}")


def validate_args(args: DatasetArgs) -> None:
    """Check every argument before any work; raises DatasetError naming each bad option."""
    errors: list[str] = []
    if args.dtype not in DTYPES:
        errors.append(f"--dtype must be one of {', '.join(DTYPES)}, got {args.dtype!r}")
    if args.cf_algorithm not in CF_ALGORITHMS:
        errors.append(f"--cf-algorithm must be one of {', '.join(CF_ALGORITHMS)}, "
                      f"got {args.cf_algorithm!r}")
    _int_arg(errors, "--frames", args.frames, MIN_FRAMES)
    _int_arg(errors, "--cf-factors", args.cf_factors, 1)
    _int_arg(errors, "--cf-epochs", args.cf_epochs, 1)
    _int_arg(errors, "--cf-seed", args.cf_seed, 0)
    _int_arg(errors, "--seed", args.seed, 0)
    _int_arg(errors, "--workers", args.workers, 1)
    _int_arg(errors, "batch_size", args.batch_size, 1)
    for flag, value in (("--test-size", args.test_size), ("--val-size", args.val_size)):
        if not isinstance(value, (int, float)) or not 0 < value < 1:
            errors.append(f"{flag} must be a fraction strictly between 0 and 1, got {value!r}")
    lr = args.cf_learning_rate
    if not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        errors.append(f"--cf-learning-rate must be a positive number, got {lr!r}")
    if not args.melon_dir or not Path(args.melon_dir).is_dir():
        errors.append(f"{args.melon_dir or '--melon-dir'}: Melon directory not found")
    elif not mel_path(Path(args.melon_dir), 0).parents[1].is_dir():
        errors.append(f"{mel_path(Path(args.melon_dir), 0).parents[1]}: mel directory not "
                      "found; the mels (arena_mel/<id // 1000>/<id>.npy) are missing")
    if not args.out_dir:
        errors.append("--out-dir is empty")
    if errors:
        raise DatasetError("; ".join(errors))


def source_provenance(melon_dir: str) -> dict:
    """The manifest's `source`: the generator's marker file if the corpus has one."""
    path = Path(melon_dir) / GENERATED_MARKER
    generator = _read_json(path) if path.is_file() else None
    if generator is not None and not isinstance(generator, dict):
        raise MelonFormatError(f"{path}: expected a JSON object, got {type(generator).__name__}")
    return {"generated": generator is not None, "generator": generator, "melon_dir": melon_dir}


def _check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse an output that is not ours to replace (called under the output lock)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise DatasetError(f"{out}: exists and is not a directory")
    if (out / L.MANIFEST).exists() and not overwrite:
        raise DatasetError(f"{out}: already holds a finished dataset (manifest.json); "
                           "pass --overwrite to rebuild it")
    # The new dataset replaces the whole directory: never take a user's files with it.
    foreign = sorted(p.name for p in out.iterdir()
                     if p.name not in OUTPUT_FILES and not p.name.endswith(".tmp")
                     and not any(fnmatch(p.name, pat) for pat in DERIVED_FILES))
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise DatasetError(f"{out}: holds files that are not part of a dataset ({shown}); "
                           "move them or choose another --out-dir")


def _out_location(out_dir: str, melon_dir: str) -> Path:
    """The real output path (a symlink is followed), with its parent created and
    checked writable (the build goes beside it); never the Melon directory or one
    holding it, which the swap would delete."""
    out = Path(out_dir).resolve()
    melon = Path(melon_dir).resolve()
    if out == melon or out in melon.parents:
        how = "is" if out == melon else "contains"
        raise DatasetError(f"--out-dir {out_dir}: {how} the --melon-dir {melon_dir}; the "
                           "dataset replaces that directory, which would delete its input "
                           "(choose another --out-dir)")
    err = write_error(out.parent)
    if err is not None:
        raise DatasetError(f"{out}: cannot create the output directory "
                           f"({out.parent}: {err.strerror or err})")
    return out


def _playlist_side_files(
    playlists: list[Playlist], split_of: dict[int, str]
) -> tuple[list[dict], dict, dict]:
    """Continuation pairs, track tags and popularity over the written tracks. A track
    has the tags of every playlist holding it; the top-N_TOP_TAGS vocabulary is counted
    on the train and val tracks only (each counts a tag once)."""
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
    # The vocabulary is counted on the train+val tracks (the tagging probe's training
    # side): which tags are scored must not depend on the test tracks' labels.
    for t, tags in track_tags.items():
        if split_of[t] != "test":
            tag_count.update(tags)
    top = [t for t, _ in sorted(tag_count.items(), key=lambda kv: (-kv[1], kv[0]))[:N_TOP_TAGS]]
    tag_index = {t: i for i, t in enumerate(top)}
    tags_json = {
        "tags": top,
        "vocabulary_split": TAG_VOCABULARY_SPLITS,
        "tracks": {str(t): sorted(tag_index[x] for x in tags if x in tag_index)
                   for t, tags in sorted(track_tags.items())},
    }
    pop_json = {str(t): popularity[t] for t in sorted(split_of)}
    return continuation, tags_json, pop_json


def _read_mel_frames(root: Path, song_id: int, frames: int, dtype: str = "float32") -> np.ndarray:
    """The first `frames` frames as (frames, 48) in the output dtype; TrackSkip if unusable."""
    mel = load_mel(root, song_id, min_frames=frames)[:, :frames]  # (48, frames)
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(mel.T, dtype=dtype)  # (frames, 48)
    # load_mel saw finite values in the file's dtype; they may still not fit the output's.
    if not np.isfinite(out).all():
        raise TrackSkip("overflows_dtype", f"{mel_path(root, song_id)}: values up to "
                        f"{float(np.abs(mel).max()):.3g} do not fit {dtype}")
    return out


def _skip_summary(skips: list[dict]) -> str:
    """'12 too_short, 1 mel_missing' for a list of skip records."""
    return ", ".join(f"{n} {r}" for r, n in Counter(s["reason"] for s in skips).most_common())


def _check_split_written(name: str, n_candidates: int, written: np.ndarray,
                         skips: list[dict], frames: int) -> None:
    """A split with no track is an error: there is nothing to train or evaluate on."""
    if len(written):
        return
    msg = f"{name} split: none of its {n_candidates} tracks could be written"
    if skips:
        msg += f" ({_skip_summary(skips)}; e.g. {skips[0]['detail'] or skips[0]['id']})"
        if Counter(s["reason"] for s in skips).most_common(1)[0][0] == "too_short":
            msg += f"; the mels are shorter than --frames {frames}"
    raise DatasetError(msg)


def _write_split(
    name: str,
    out: Path,
    root: Path,
    ids: np.ndarray,
    labels: np.ndarray,
    cf: np.ndarray | None,
    cf_known: np.ndarray | None,
    args: DatasetArgs,
    pool: ThreadPoolExecutor,
    skipped: list[dict],
) -> np.ndarray:
    """Stream one split's mels into `<name>.h5`; returns the ids written. cf (N, D) and
    cf_known (N,) are row-aligned with ids (None for the test split)."""
    manifest = {"split": name, "version": __version__, **asdict(args)}
    writer = SplitWriter(out / L.split_file(name), len(ids), args.frames,
                         None if cf is None else cf.shape[1], args.dtype, manifest)
    written = []

    def read(song_id: int) -> np.ndarray | TrackSkip:
        try:
            return _read_mel_frames(root, int(song_id), args.frames, args.dtype)
        except TrackSkip as e:
            return e

    bar = tqdm(total=len(ids), desc=L.split_file(name), unit="track", file=sys.stderr)
    try:
        for start in range(0, len(ids), args.batch_size):
            _INTERRUPT.check()
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
                    None if cf_known is None else cf_known[rows],
                )
                written.extend(int(batch[i]) for i in ok)
            bar.update(len(batch))
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()  # now, not at exit after the error message
    return np.asarray(written, dtype=np.int64)


def _read_corpus(root: Path) -> tuple[list, dict, list, Counter, list[dict]]:
    """Songs (ids checked unique), genre names, the usable playlists, the playlist
    entries without a song_meta.json record, and the skipped playlists."""
    songs = read_song_meta(root)
    names = read_genre_names(root)
    playlists = read_playlists(root)
    seen: set[int] = set()
    for s in songs:
        if s.id in seen:
            raise MelonFormatError(f"{root / SONG_META}: song id {s.id} appears twice")
        seen.add(s.id)
    # Playlist entries without a song_meta.json record cannot be used; count them.
    unknown_songs = Counter(x for pl in playlists for x in pl.songs if x not in seen)
    empty = [pl.id for pl in playlists if not pl.songs]
    skipped_playlists = [{"id": pid, "reason": "empty_playlist"} for pid in empty]
    skipped_playlists += [{"id": pl.id, "reason": "no_song_in_meta"} for pl in playlists
                          if pl.songs and not any(x in seen for x in pl.songs)]
    playlists = [pl for pl in playlists if any(x in seen for x in pl.songs)]
    return songs, names, playlists, unknown_songs, skipped_playlists


def _candidates(root: Path, songs: list, names: dict, skipped: list[dict]
                ) -> tuple[GenreVocab, Counter, np.ndarray, np.ndarray]:
    """The genre vocabulary, unknown codes, and the ids and label rows of the songs that
    pass the cheap checks (a genre, a mel file): so the split sees usable tracks."""
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
    if len(cand_ids) < MIN_TRACKS:
        raise DatasetError(f"{root}: only {len(cand_ids)} usable tracks of {len(songs)} in "
                           f"song_meta.json ({_skip_summary(skipped) or 'none skipped'}); "
                           f"need at least {MIN_TRACKS}")
    return vocab, unknown_codes, np.asarray(cand_ids, dtype=np.int64), np.stack(cand_labels)


def _split(args: DatasetArgs, ids: np.ndarray, labels: np.ndarray, n_codes: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of train, val and test: multilabel stratified, none empty."""
    parts = stratified_split(multi_hot(labels, n_codes), args.test_size, args.val_size, args.seed)
    print(f"split: {len(parts[0])} train, {len(parts[1])} val, {len(parts[2])} test tracks",
          file=sys.stderr)
    for name, rows in zip(SPLITS, parts):
        if len(rows) == 0:
            raise DatasetError(f"{name} split: 0 of {len(ids)} tracks with --test-size "
                               f"{args.test_size} --val-size {args.val_size}")
    return parts


def _fit_cf(args: DatasetArgs, root: Path, playlists: list, cf_ids: np.ndarray):
    """CF on the train.json playlists over the non-test tracks."""
    try:
        return train_cf(
            [pl for pl in playlists if pl.source == TRAIN_PLAYLISTS], cf_ids, args.cf_algorithm,
            args.cf_factors, args.cf_epochs, args.cf_learning_rate, seed=args.cf_seed,
        )
    except ValueError as e:  # no train.json playlist holds a train/val track
        raise DatasetError(f"{root / TRAIN_PLAYLISTS}: {e}") from None


def _write_splits(args: DatasetArgs, out: Path, root: Path, ids: np.ndarray, labels: np.ndarray,
                  parts: tuple, cf, skipped: list[dict]
                  ) -> tuple[dict[str, np.ndarray], dict[str, list[int]]]:
    """The three HDF5 splits; returns the written ids per split and, per train/val split,
    the written tracks with no CF vector."""
    cf_row = {int(t): j for j, t in enumerate(cf.track_ids)}
    cf_known = cf.track_interactions > 0  # (T,) False: in no train.json playlist
    written: dict[str, np.ndarray] = {}
    without_cf: dict[str, list[int]] = {}  # split -> written tracks with no CF vector
    with ThreadPoolExecutor(max(1, args.workers)) as pool:
        for name, rows in zip(SPLITS, parts):
            split_cf = split_known = None
            if name != "test":
                j = np.asarray([cf_row[int(t)] for t in ids[rows]], dtype=np.int64)
                split_cf, split_known = cf.track_vectors[j], cf_known[j]
            n_skipped = len(skipped)
            written[name] = _write_split(name, out, root, ids[rows], labels[rows], split_cf,
                                         split_known, args, pool, skipped)
            _check_split_written(name, len(rows), written[name], skipped[n_skipped:],
                                 args.frames)
            if name != "test":
                without_cf[name] = [int(t) for t in written[name] if not cf_known[cf_row[int(t)]]]
    if any(without_cf.values()):
        print(f"CF: {len(without_cf['train'])} train and {len(without_cf['val'])} val tracks are in "
              "no train.json playlist: all-zero CF vector, flagged (cf_known = 0) and kept out "
              "of the CF loss terms (listed in skipped.json)", file=sys.stderr)
    return written, without_cf


def _skipped_json(skipped: list[dict], unknown_codes: Counter, skipped_playlists: list[dict],
                  unknown_songs: Counter, without_cf: dict[str, list[int]]) -> dict:
    """skipped.json: every track and playlist left out, and why."""
    return {
        "count": len(skipped),
        "by_reason": dict(sorted(Counter(s["reason"] for s in skipped).items())),
        "unknown_genre_codes": dict(sorted(unknown_codes.items())),
        "tracks": sorted(skipped, key=lambda s: s["id"]),
        "playlists": skipped_playlists,
        "playlist_songs_not_in_meta": {
            "count": len(unknown_songs),
            "occurrences": sum(unknown_songs.values()),
            "ids": sorted(unknown_songs),
        },
        # Written and used for training, but with no CF vector (not in the CF loss terms).
        "tracks_without_cf": {
            "count": sum(len(v) for v in without_cf.values()),
            "reason": "in no train.json playlist: all-zero CF vector, cf_known = 0",
            **{name: sorted(v) for name, v in without_cf.items()},
        },
    }


def _build(args: DatasetArgs, out: Path) -> dict:
    """Build the dataset into the empty directory `out`; returns the manifest."""
    root = Path(args.melon_dir)
    source = source_provenance(args.melon_dir)
    songs, names, playlists, unknown_songs, skipped_playlists = _read_corpus(root)
    skipped: list[dict] = []
    vocab, unknown_codes, ids, labels = _candidates(root, songs, names, skipped)
    parts = _split(args, ids, labels, len(vocab.codes))
    cf = _fit_cf(args, root, playlists, np.sort(np.concatenate([ids[parts[0]], ids[parts[1]]])))
    written, without_cf = _write_splits(args, out, root, ids, labels, parts, cf, skipped)

    split_of = {int(t): name for name in SPLITS for t in written[name]}
    continuation, tags_json, pop_json = _playlist_side_files(playlists, split_of)
    warnings = _size_warnings(args, vocab, ids, labels, written, tags_json, len(continuation),
                              cf, source["generated"])
    write_json(out / L.GENRES, vocab.to_json())
    write_json(out / L.SPLITS_FILE, {k: v.tolist() for k, v in written.items()}, indent=None)
    write_npy(out / L.CF_PLAYLISTS, cf.playlist_vectors)
    write_npy(out / L.CF_PLAYLIST_IDS, cf.playlist_ids)
    write_json(out / L.CONTINUATION, {"playlists": continuation}, indent=None)
    write_json(out / L.TRACK_TAGS, tags_json, indent=None)
    write_json(out / L.POPULARITY, pop_json, indent=None)
    write_playlist_tags(out, playlists, split_of)  # what the tags view reads
    write_json(out / L.SKIPPED, _skipped_json(skipped, unknown_codes, skipped_playlists,
                                              unknown_songs, without_cf))
    manifest = {
        "format": "musicrep-dataset",
        "version": __version__,
        "source": source,
        "args": asdict(args),
        "counts": {
            "songs_in_meta": len(songs),
            "playlists": len(playlists) + len(skipped_playlists),
            **{f"{k}_tracks": len(v) for k, v in written.items()},
            "skipped_tracks": len(skipped),
            "skipped_playlists": len(skipped_playlists),
            "playlist_songs_not_in_meta": len(unknown_songs),
            "cf_playlists": len(cf.playlist_ids),
            **{f"{k}_tracks_without_cf": len(v) for k, v in without_cf.items()},
            "continuation_playlists": len(continuation),
            "genres": len(vocab.codes),
            "major_genres": sum(vocab.major),
        },
        "skipped_by_reason": dict(sorted(Counter(s["reason"] for s in skipped).items())),
        "frames": args.frames,
        "cf_dim": int(cf.track_vectors.shape[1]),
        "warnings": warnings,
    }
    write_json(out / L.MANIFEST, manifest)
    return manifest


def _size_warnings(args: DatasetArgs, vocab: GenreVocab, ids: np.ndarray, labels: np.ndarray,
                   written: dict[str, np.ndarray], tags_json: dict, n_continuation: int, cf,
                   generated: bool) -> list[str]:
    """The tasks the written splits are too small for (minimums.py), each also printed
    as a `warning:` line: a small collection says at creation what it cannot give."""
    row_of = {int(t): i for i, t in enumerate(ids)}
    known = np.concatenate([written["train"], written["val"]])
    test = written["test"]

    def genre_y(split_ids: np.ndarray) -> np.ndarray:
        rows = labels[[row_of[int(t)] for t in split_ids]] if len(split_ids) else labels[:0]
        return major_genre_matrix(rows, vocab.codes)[0]

    def tag_y(split_ids: np.ndarray) -> np.ndarray:
        y = np.zeros((len(split_ids), len(tags_json["tags"])), dtype=bool)
        for i, t in enumerate(split_ids):
            y[i, tags_json["tracks"].get(str(int(t)), [])] = True
        return y

    majors = major_genre_matrix(labels[:0], vocab.codes)[1]
    names = dict(zip(vocab.codes, vocab.names))
    warnings = dataset_warnings(
        {k: len(v) for k, v in written.items()},
        (genre_y(known), genre_y(test), [f"{names[c]} ({c})" for c in majors]),
        (tag_y(known), tag_y(test), list(tags_json["tags"])) if tags_json["tags"] else None,
        n_continuation,
        (args.cf_factors, len(cf.playlist_ids), int((cf.track_interactions > 0).sum())),
        generated,
    )
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    return warnings


def create_dataset(args: DatasetArgs) -> dict:
    """Build the dataset directory `args.out_dir` from the Melon directory `args.melon_dir`.

    All arguments are checked first. The build runs in a temporary directory beside the
    output, under a lock, and replaces the output only when complete; on any error or
    interrupt the temporary directory is removed and the output is as it was.
    Returns the manifest. Raises MelonFormatError for malformed metadata and
    DatasetError for unusable arguments, data or output directories.
    """
    validate_args(args)
    out = _out_location(args.out_dir, args.melon_dir)
    try:
        with output_lock(out), _INTERRUPT.installed():
            recover_dir(out)  # what a killed run left beside `out`
            _check_out_dir(out, args.overwrite)
            tmp = temp_dir_beside(out)
            try:
                with naming_os_errors(out, tmp):  # named where the user will look
                    manifest = _build(args, tmp)
                with _INTERRUPT.committing():
                    swap_in_dir(tmp, out)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except OutputLocked as e:
        raise DatasetError(str(e)) from None
    return manifest
