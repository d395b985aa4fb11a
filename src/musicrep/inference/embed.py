"""Track embeddings from a trained audio encoder: for dataset splits and for audio files.

A track's embedding is the mean of the encoder's outputs over the non-overlapping
256-frame chunks of its mel (the evaluation protocol of the paper): a dataset track
of F = 1300 frames gives 5 chunks (frames 0-1279; the last 20 frames are not used). A
track shorter than one chunk is padded up to 256 frames with its own minimum dB value,
its quietest level, rather than 0 dB, which on this scale is a loud signal.

Two layers can be read out: ``z_d``, the 128-d output of the projection head that the
contrastive and baseline losses see (the default everywhere: it is "the learned audio
embedding" of the paper), or ``z``, the flattened CNN output before the head: 1024-d
at width 1.0, 2 x round(512 x width) in general (256-d for the shipped width-0.25
models). One chunk is 256 frames x 256 samples hop at 16 kHz = 4.096 s.

Work is streamed: tracks are read from HDF5 a few at a time, audio files are decoded
in blocks of 30 s, chunks are pushed through the encoder in batches of ``batch_size``
chunks, and only the (N, d) result is kept, so memory stays bounded for the full
650k-track dataset and for hour-long files.

Precision: "auto" (default) runs the CNN under bfloat16 autocast where
``precision.use_bf16("auto", device)`` says the hardware does it natively (embeddings
agree with float32 to cosine >= 0.999, tested); "fp32" forces float32, "bf16" forces
bfloat16. Outputs are float32 either way.

Embeddings are not L2-normalised: ``z_d`` is a LayerNorm output (norm about
sqrt(128) = 11.3 times the LayerNorm gain); normalise before using dot products as
cosines.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from ..audio import (
    AUDIO_EXTENSIONS,
    CROP_FRAMES,
    FRAME_SIZE,
    HOP_SIZE,
    N_MELS,
    SAMPLE_RATE,
    AudioError,
    iter_audio_blocks,
    iter_mel_frames,
    too_short_message,
)
from ..data.h5io import DATA, IDS, open_split, read_ids
from ..model.audio_cnn import fold_batchnorm
from ..model.layers import DEFAULT_LAYER, LAYERS
from ..precision import use_bf16

__all__ = [
    "CHUNK_FRAMES",
    "CHUNK_SECONDS",
    "DEFAULT_LAYER",
    "LAYERS",
    "NON_FINITE",
    "PRECISIONS",
    "FileEmbeddings",
    "chunk_frame_blocks",
    "embed_files",
    "embed_hdf5",
    "embed_stream",
    "encode_chunks",
    "find_audio_files",
    "read_split_ids",
    "resolve_bf16",
    "resolve_checkpoint",
    "track_chunks",
]

CHUNK_FRAMES = CROP_FRAMES  # evaluation chunks are exactly the CNN's training crops
CHUNK_SECONDS = CHUNK_FRAMES * HOP_SIZE / SAMPLE_RATE  # 4.096 s of audio per chunk
PRECISIONS = ("auto", "fp32", "bf16")


def resolve_bf16(precision: str, device: torch.device | str) -> bool:
    """Whether to embed under bf16 autocast: "fp32" no, "bf16" yes, "auto" as
    ``precision.use_bf16("auto", device)`` decides (the one owner of that choice)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return use_bf16("auto", device)
    return precision == "bf16"


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file as given, or the encoder file inside a run directory.

    In a directory (or its ``checkpoints/`` subfolder) the first found of
    ``audio_encoder.pt`` (the exported plain state dict), ``best.pt``, ``last.pt`` and
    the highest ``epoch_*.pt`` is used. Raises FileNotFoundError naming the path.
    """
    p = Path(path)
    if p.is_file():
        return p
    if not p.is_dir():
        raise FileNotFoundError(f"{p}: no such checkpoint file or run directory")
    for folder in (p, p / "checkpoints"):
        for name in ("audio_encoder.pt", "best.pt", "last.pt"):
            if (folder / name).is_file():
                return folder / name
        epochs = sorted(
            folder.glob("epoch_*.pt"),
            key=lambda q: int("".join(ch for ch in q.stem if ch.isdigit()) or -1),
        )
        if epochs:
            return epochs[-1]
    raise FileNotFoundError(
        f"{p}: run directory holds no audio_encoder.pt, best.pt, last.pt or epoch_*.pt"
    )


def track_chunks(frames: np.ndarray, chunk: int = CHUNK_FRAMES) -> tuple[np.ndarray, bool]:
    """(F, 48) frames x bands -> ((n, chunk, 48) float32 chunks, padded?).

    n = F // chunk non-overlapping chunks from the start; the tail shorter than a chunk
    is dropped. When F < chunk the single chunk is padded with the track's minimum
    value (its quietest dB level). Raises ValueError for an empty or mis-shaped track.
    """
    frames = np.asarray(frames)
    if frames.ndim != 2 or frames.shape[1] != N_MELS:
        raise ValueError(f"expected (frames, {N_MELS}) mel frames, got shape {frames.shape}")
    n_frames = frames.shape[0]
    if n_frames == 0:
        raise ValueError("track has no frames")
    if n_frames < chunk:
        out = np.full((1, chunk, N_MELS), frames.min(), dtype=np.float32)
        out[0, :n_frames] = frames
        return out, True
    n = n_frames // chunk
    chunks = np.ascontiguousarray(frames[: n * chunk], dtype=np.float32)
    return chunks.reshape(n, chunk, N_MELS), False


# On CPU this CNN runs fastest channels-last in micro-batches of a few chunks, whose
# activations stay in the caches: batches of 8 encode 1.1-1.6x faster than 32 (bench/README,
# "Encoding throughput"); GPUs prefer large batches.
CPU_MICRO_BATCH = 8
# Why a track or file is left out when the encoder's output for it holds NaN or inf (a
# mel with NaNs in a dataset, or a model whose outputs overflow): such rows are never
# written or returned, since every similarity computed from them would be NaN.
NON_FINITE = "embedding is not finite (NaN or infinite values)"


@torch.inference_mode()
def encode_chunks(
    encoder: torch.nn.Module,
    chunks: np.ndarray,
    layer: str = DEFAULT_LAYER,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    bf16: bool = False,
) -> np.ndarray:
    """(M, 256, 48) chunks -> (M, d) float32 encoder outputs of ``layer``, in batches.

    The encoder must be in eval mode (BatchNorm running statistics, no dropout); its
    own ``to_input`` applies its input layout. ``bf16`` runs it under bfloat16
    autocast (weights stay float32; outputs are cast back to float32).
    """
    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {LAYERS}, got {layer!r}")
    device = torch.device(device)
    step = batch_size if device.type == "cuda" else min(batch_size, CPU_MICRO_BATCH)
    encoder.to(memory_format=torch.channels_last)
    outs = []
    for start in range(0, len(chunks), step):
        block = np.ascontiguousarray(chunks[start : start + step], dtype=np.float32)
        x = encoder.to_input(torch.from_numpy(block).to(device))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            z, z_d = encoder(x.contiguous(memory_format=torch.channels_last))
        outs.append((z if layer == "z" else z_d).float().cpu().numpy())
    if not outs:
        raise ValueError("encode_chunks: no chunks given")
    return np.concatenate(outs)


def encode_pieces(
    encoder: torch.nn.Module,
    pieces: Iterable[tuple[Any, np.ndarray]],
    layer: str = DEFAULT_LAYER,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    bf16: bool = False,
) -> Iterator[tuple[Any, np.ndarray]]:
    """Encode (key, (k, 256, 48) chunks) pieces in order; yield (key, (k, d) outputs).

    Chunks of consecutive pieces are pooled until at least ``batch_size`` of them wait,
    then encoded together, so memory holds about one batch plus one piece. An eval-mode
    ``AudioEncoder`` runs with its BatchNorms folded into the convs (``fold_batchnorm``).
    """
    encoder = fold_batchnorm(encoder)
    buffer: list[tuple[Any, np.ndarray]] = []
    waiting = 0

    def flush() -> Iterator[tuple[Any, np.ndarray]]:
        out = encode_chunks(encoder, np.concatenate([c for _, c in buffer]), layer, device,
                            batch_size, bf16)
        start = 0
        for key, ch in buffer:
            yield key, out[start : start + len(ch)]
            start += len(ch)

    for key, chunks in pieces:
        buffer.append((key, chunks))
        waiting += len(chunks)
        if waiting >= batch_size:
            yield from flush()
            buffer, waiting = [], 0
    if buffer:
        yield from flush()


def embed_stream(
    encoder: torch.nn.Module,
    tracks: Iterable[np.ndarray],
    layer: str = DEFAULT_LAYER,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    keep_chunks: bool = False,
    bf16: bool = False,
) -> Iterator[np.ndarray]:
    """Embed (F, 48) tracks in order; yield (d,) means, or (n_chunks, d) if ``keep_chunks``."""
    pieces = ((None, track_chunks(frames)[0]) for frames in tracks)
    for _, out in encode_pieces(encoder, pieces, layer, device, batch_size, bf16):
        yield out if keep_chunks else out.mean(axis=0)


def chunk_frame_blocks(
    frame_blocks: Iterable[np.ndarray], stats: dict[str, int] | None = None
) -> Iterator[np.ndarray]:
    """(t, 48) frame blocks of one track -> (k, 256, 48) chunk blocks, as ``track_chunks``.

    Full chunks leave as soon as their frames have arrived; the tail shorter than a
    chunk is dropped, except for a track shorter than one chunk, which is padded (one
    chunk, at the end). ``stats`` (if given) receives "frames" and "padded" (0/1).
    """
    stats = {} if stats is None else stats
    stats.update(frames=0, padded=0)
    rest = np.zeros((0, N_MELS), dtype=np.float32)
    emitted = 0
    for block in frame_blocks:
        stats["frames"] += len(block)
        rest = np.concatenate([rest, np.asarray(block, dtype=np.float32)])
        k = len(rest) // CHUNK_FRAMES
        if k:
            yield rest[: k * CHUNK_FRAMES].reshape(k, CHUNK_FRAMES, N_MELS)
            rest = rest[k * CHUNK_FRAMES :]
            emitted += k
    if not emitted and len(rest):
        stats["padded"] = 1
        yield track_chunks(rest)[0]


def _open_split(path: Path) -> tuple[h5py.File, h5py.Group]:
    return open_split(path, (IDS, DATA))  # the layout's one owner checks it


def read_split_ids(path: str | os.PathLike) -> np.ndarray:
    """(N,) int64 track ids of a split file (its ``dataset/id``, (N, 1) or (N,))."""
    return read_ids(path)


def embed_hdf5(
    encoder: torch.nn.Module,
    path: str | os.PathLike,
    layer: str = DEFAULT_LAYER,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    keep_chunks: bool = False,
    progress: bool = True,
    precision: str = "auto",
    skipped: list[dict[str, Any]] | None = None,
) -> dict[str, np.ndarray]:
    """Embed every track of a split file (``dataset/data`` (N, F, 48)).

    ``precision`` is "auto", "fp32" or "bf16" (see the module docstring).

    Returns {"ids": (N,) int64, "embeddings": (N, d) float32}; with ``keep_chunks``
    the embeddings are one row per chunk and "file_index" (rows,) int64 gives each
    row's track position in ``ids``. Tracks are read ``batch_size // chunks-per-track``
    at a time, so memory does not grow with N (beyond the result).

    A track whose embedding is not finite (NaN in its mel, say) is never returned as a
    row: with ``skipped`` None this raises ValueError naming the split and the track
    ids; with a list, those tracks are left out of the result (``ids`` included) and
    ``{"id", "reason"}`` is appended to it for each.
    """
    from tqdm import tqdm

    path = Path(path)
    bf16 = resolve_bf16(precision, device)
    encoder.to(device).eval()
    f, g = _open_split(path)
    with f:
        ids = np.asarray(g[IDS][...]).reshape(-1).astype(np.int64)
        data = g[DATA]
        n, n_frames = data.shape[0], data.shape[1]
        per_track = max(1, n_frames // CHUNK_FRAMES)
        rows_per_read = max(1, batch_size // per_track)

        def tracks() -> Iterator[np.ndarray]:
            for start in range(0, n, rows_per_read):
                block = np.asarray(data[start : start + rows_per_read], dtype=np.float32)
                yield from block

        result: np.ndarray | None = None
        chunk_rows: list[np.ndarray] = []
        bad: list[int] = []  # positions of tracks whose embedding is not finite
        stream = embed_stream(encoder, tracks(), layer, device, batch_size, keep_chunks, bf16)
        bar = tqdm(stream, total=n, desc=f"embed {path.name}", unit="track", disable=not progress)
        for i, emb in enumerate(bar):
            if not np.isfinite(emb).all():
                bad.append(i)
            if keep_chunks:
                chunk_rows.append(emb)
                continue
            if result is None:
                result = np.empty((n, emb.shape[-1]), dtype=np.float32)
            result[i] = emb
    keep = _drop_non_finite(path, ids, bad, skipped)
    ids = ids[keep]
    dim = _output_dim(encoder, layer)
    if keep_chunks:
        kept = [chunk_rows[i] for i in np.flatnonzero(keep)]
        if not kept:
            empty = np.zeros((0, dim), np.float32)
            return {"ids": ids, "embeddings": empty, "file_index": np.zeros(0, np.int64)}
        return {"ids": ids, "embeddings": np.concatenate(kept),
                "file_index": np.concatenate([np.full(len(x), j, dtype=np.int64)
                                              for j, x in enumerate(kept)])}
    if result is None:
        result = np.zeros((0, dim), dtype=np.float32)
    # (A full-dataset result is large: copied only when rows were dropped.)
    return {"ids": ids, "embeddings": result if keep.all() else result[keep]}


def _drop_non_finite(path: Path, ids: np.ndarray, bad: list[int],
                     skipped: list[dict[str, Any]] | None) -> np.ndarray:
    """(N,) bool: the tracks to keep. Non-finite ones raise (``skipped`` None) or are
    listed in ``skipped``, so no NaN row ever reaches an embedding file."""
    keep = np.ones(len(ids), dtype=bool)
    if not bad:
        return keep
    if skipped is None:
        shown = ", ".join(str(int(ids[i])) for i in bad[:10])
        more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise ValueError(f"{path}: {NON_FINITE} for {len(bad)} of {len(ids)} tracks "
                         f"(ids {shown}{more}; NaN in dataset/data?)")
    keep[bad] = False
    skipped.extend({"id": int(ids[i]), "reason": NON_FINITE} for i in bad)
    return keep


def find_audio_files(
    inputs: Iterable[str | os.PathLike],
) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files and directories (recursively) into audio files, sorted, de-duplicated.

    Given files are kept whatever their extension (the decoder decides); directories
    contribute files with a known audio extension, except hidden ones (names starting
    with ".", such as macOS "._song.mp3" metadata files, which are not audio). Returns
    (files, missing) where missing lists (path, reason) for inputs that do not exist.
    """
    files: set[Path] = set()
    missing: list[tuple[str, str]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files.update(
                q for q in p.rglob("*")
                if q.is_file() and q.suffix.lower() in AUDIO_EXTENSIONS
                and not q.name.startswith(".")
            )
        elif p.is_file():
            files.add(p)
        else:
            missing.append((str(p), "no such file or directory"))
    return sorted(files, key=lambda q: str(q)), missing


@dataclass
class FileEmbeddings:
    """Result of ``embed_files``: rows for the encoded files and what happened to the rest."""

    embeddings: np.ndarray  # (N, d) or (chunks, d) float32
    paths: list[str]  # (N,) encoded files, in order
    file_index: np.ndarray | None = None  # (chunks,) row -> position in paths
    skipped: list[dict] = field(default_factory=list)  # {"path", "reason"}
    padded: list[dict] = field(default_factory=list)  # {"path", "frames"}


def embed_files(
    encoder: torch.nn.Module,
    files: Iterable[str | os.PathLike],
    layer: str = DEFAULT_LAYER,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    keep_chunks: bool = False,
    segment: tuple[float, float] | None = None,
    progress: bool = True,
    on_problem: Callable[[str, str], None] | None = None,
    precision: str = "auto",
) -> FileEmbeddings:
    """Decode each file in blocks, compute its mel as Melon's and embed it; never stops
    on a bad file.

    Args:
        encoder: an AudioEncoder (put in eval mode here).
        files: audio files, in the order of the result.
        layer: "z_d" (128-d) or "z".
        device, batch_size: where and how many chunks per forward pass.
        keep_chunks: one row per 4.096 s chunk (with ``file_index``) instead of means.
        segment: (offset, duration) seconds, e.g. ``audio.MELON_SEGMENT``; None: whole file.
        progress: show a tqdm bar over files.
        on_problem: called as (kind, message) for each "skipped" or "padded" file.
        precision: "auto", "fp32" or "bf16".

    Unreadable, empty and shorter-than-one-frame files, and files whose embedding is
    not finite (``NON_FINITE``), are skipped and listed in ``skipped`` with the reason;
    files shorter than 256 frames are padded (see ``track_chunks``) and listed in
    ``padded``. Memory holds one decoding block, one batch and the result, whatever
    the files' durations.
    """
    files = [Path(p) for p in files]
    bf16 = resolve_bf16(precision, device)
    encoder.to(device).eval()
    log = _ProblemLog(on_problem)
    pieces = _file_pieces(files, segment, progress, log)
    # Per file: the running sum of chunk outputs (means) or the rows (chunks).
    sums: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    rows: dict[int, list[np.ndarray]] = {}
    for i, out in encode_pieces(encoder, pieces, layer, device, batch_size, bf16):
        if keep_chunks:
            rows.setdefault(i, []).append(out)
        else:
            sums[i] = sums.get(i, 0.0) + out.sum(axis=0, dtype=np.float64)
            counts[i] = counts.get(i, 0) + len(out)
    for i in sorted((set(rows) | set(counts)) - log.failed):
        outputs = rows[i] if keep_chunks else [sums[i]]
        if not all(np.isfinite(o).all() for o in outputs):
            log.skip(i, files[i], NON_FINITE)
    done = [i for i in range(len(files)) if i not in log.failed and (i in rows or i in counts)]
    ok = [str(files[i]) for i in done]
    dim = _output_dim(encoder, layer)
    file_index = None
    if keep_chunks:
        parts = [np.concatenate(rows[i]) for i in done]
        embeddings = np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)
        file_index = np.concatenate(
            [np.full(len(x), j, dtype=np.int64) for j, x in enumerate(parts)]
        ) if parts else np.zeros(0, dtype=np.int64)
    else:
        embeddings = np.array([sums[i] / counts[i] for i in done]).reshape(-1, dim)
    return FileEmbeddings(embeddings.astype(np.float32), ok, file_index, log.skipped, log.padded)


@dataclass
class _ProblemLog:
    """What embed_files tells about the files it skipped or padded."""

    on_problem: Callable[[str, str], None] | None
    skipped: list[dict] = field(default_factory=list)
    padded: list[dict] = field(default_factory=list)
    failed: set[int] = field(default_factory=set)

    def skip(self, i: int, p: Path, e: AudioError | str) -> None:
        reason = str(e)
        reason = reason[len(str(p)) + 2 :] if reason.startswith(f"{p}: ") else reason
        self.skipped.append({"path": str(p), "reason": reason})
        self.failed.add(i)
        if self.on_problem:
            self.on_problem("skipped", f"{p}: skipped: {reason}")

    def pad(self, p: Path, frames: int) -> None:
        self.padded.append({"path": str(p), "frames": frames})
        if self.on_problem:
            self.on_problem("padded", f"{p}: only {frames} frames (< {CHUNK_FRAMES}); "
                            "padded with its minimum dB value")


def _file_pieces(files: list[Path], segment: tuple[float, float] | None, progress: bool,
                 log: _ProblemLog) -> Iterator[tuple[int, np.ndarray]]:
    """(file position, (k, 256, 48) chunks) as each file is decoded in blocks; a file that
    fails is logged and left out, one too short for a chunk is padded (and logged)."""
    from tqdm import tqdm

    for i, p in enumerate(tqdm(files, desc="encode", unit="file", disable=not progress)):
        counted = [0]

        def blocks(p: Path = p, counted: list[int] = counted) -> Iterator[np.ndarray]:
            for b in iter_audio_blocks(p, SAMPLE_RATE, *(segment or (0.0, None))):
                counted[0] += len(b)
                yield b

        stats: dict[str, int] = {}
        held: list[np.ndarray] = []  # a short file's chunks wait for the length check
        try:
            for ch in chunk_frame_blocks(iter_mel_frames(blocks()), stats):
                if stats["padded"]:
                    held.append(ch)
                else:
                    yield i, ch
            if counted[0] < FRAME_SIZE:
                raise AudioError(too_short_message(p, counted[0]))
        except AudioError as e:
            log.skip(i, p, e)
            continue
        if stats["padded"]:
            log.pad(p, stats["frames"])
        yield from ((i, ch) for ch in held)


def _output_dim(encoder: torch.nn.Module, layer: str) -> int:
    """Width of ``layer`` without running the model (for empty outputs)."""
    from ..model.layers import EMBED_DIM

    if layer == "z":
        return int(getattr(encoder, "z_dim", 1024))
    return EMBED_DIM
