"""Track embeddings from a trained audio encoder: for dataset splits and for audio files.

A track's embedding is the mean of the encoder's outputs over the non-overlapping
256-frame chunks of its mel (the evaluation protocol of the paper): a dataset track
of F = 1300 frames gives 5 chunks (frames 0-1279; the last 20 frames are not used). A
track shorter than one chunk is padded up to 256 frames with its own minimum dB value,
its quietest level, rather than 0 dB, which on this scale is a loud signal.

Two layers can be read out: ``z_d``, the 128-d output of the projection head that the
contrastive and baseline losses see (the default everywhere: it is "the learned audio
embedding" of the paper), or ``z``, the 1024-d flattened CNN output before the head.

Work is streamed: tracks are read from HDF5 a few at a time, chunks are pushed through
the encoder in batches of ``batch_size`` chunks, and only the (N, d) result is kept,
so memory stays bounded for the full 650k-track dataset.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch

from .audio import AUDIO_EXTENSIONS, N_MELS, AudioError, file_mel, mel_to_frames
from .h5io import open_split, read_ids

__all__ = [
    "CHUNK_FRAMES",
    "DEFAULT_LAYER",
    "LAYERS",
    "FileEmbeddings",
    "embed_files",
    "embed_hdf5",
    "embed_stream",
    "encode_chunks",
    "find_audio_files",
    "read_split_ids",
    "resolve_checkpoint",
    "resolve_device",
    "track_chunks",
]

CHUNK_FRAMES = 256
LAYERS = ("z", "z_d")
DEFAULT_LAYER = "z_d"


def resolve_device(name: str | None = None) -> torch.device:
    """``None`` or "auto": the GPU when there is one, else the CPU; otherwise as named."""
    from .config import resolve_device as resolve_name

    dev = torch.device(resolve_name(name or "auto"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return dev


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


CPU_MICRO_BATCH = 32


@torch.inference_mode()
def encode_chunks(
    encoder: torch.nn.Module,
    chunks: np.ndarray,
    layer: str = DEFAULT_LAYER,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
) -> np.ndarray:
    """(M, 256, 48) chunks -> (M, d) float32 encoder outputs of ``layer``, in batches.

    The encoder must be in eval mode (BatchNorm running statistics, no dropout); its
    own ``to_input`` applies its input layout.
    """
    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {LAYERS}, got {layer!r}")
    device = torch.device(device)
    # On CPU this CNN runs ~2.5x faster channels-last in micro-batches of 32 than in
    # contiguous batches of 128+ (cache-sized activations); GPUs prefer large batches.
    step = batch_size if device.type == "cuda" else min(batch_size, CPU_MICRO_BATCH)
    encoder.to(memory_format=torch.channels_last)
    outs = []
    for start in range(0, len(chunks), step):
        block = np.ascontiguousarray(chunks[start : start + step], dtype=np.float32)
        x = encoder.to_input(torch.from_numpy(block).to(device))
        z, z_d = encoder(x.contiguous(memory_format=torch.channels_last))
        outs.append((z if layer == "z" else z_d).float().cpu().numpy())
    if not outs:
        raise ValueError("encode_chunks: no chunks given")
    return np.concatenate(outs)


def embed_stream(
    encoder: torch.nn.Module,
    tracks: Iterable[np.ndarray],
    layer: str = DEFAULT_LAYER,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    keep_chunks: bool = False,
) -> Iterator[np.ndarray]:
    """Embed (F, 48) tracks in order; yield (d,) means, or (n_chunks, d) if ``keep_chunks``.

    Chunks of consecutive tracks are pooled until at least ``batch_size`` of them wait,
    then encoded together, so memory holds about one batch plus one track's chunks.
    """
    buffer: list[np.ndarray] = []
    waiting = 0

    def flush() -> Iterator[np.ndarray]:
        out = encode_chunks(encoder, np.concatenate(buffer), layer, device, batch_size)
        start = 0
        for ch in buffer:
            part = out[start : start + len(ch)]
            start += len(ch)
            yield part if keep_chunks else part.mean(axis=0)

    for frames in tracks:
        chunks, _ = track_chunks(frames)
        buffer.append(chunks)
        waiting += len(chunks)
        if waiting >= batch_size:
            yield from flush()
            buffer, waiting = [], 0
    if buffer:
        yield from flush()


def _open_split(path: Path) -> tuple[h5py.File, h5py.Group]:
    return open_split(path, ("id", "data"))  # the layout's one owner checks it


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
) -> dict[str, np.ndarray]:
    """Embed every track of a split file (``dataset/data`` (N, F, 48)).

    Returns {"ids": (N,) int64, "embeddings": (N, d) float32}; with ``keep_chunks``
    the embeddings are one row per chunk and "file_index" (rows,) int64 gives each
    row's track position in ``ids``. Tracks are read ``batch_size // chunks-per-track``
    at a time, so memory does not grow with N (beyond the result).
    """
    from tqdm import tqdm

    path = Path(path)
    encoder.to(device).eval()
    f, g = _open_split(path)
    with f:
        ids = np.asarray(g["id"][...]).reshape(-1).astype(np.int64)
        data = g["data"]
        n, n_frames = data.shape[0], data.shape[1]
        per_track = max(1, n_frames // CHUNK_FRAMES)
        rows_per_read = max(1, batch_size // per_track)

        def tracks() -> Iterator[np.ndarray]:
            for start in range(0, n, rows_per_read):
                block = np.asarray(data[start : start + rows_per_read], dtype=np.float32)
                yield from block

        result: np.ndarray | None = None
        file_index: list[np.ndarray] = []
        chunk_rows: list[np.ndarray] = []
        stream = embed_stream(encoder, tracks(), layer, device, batch_size, keep_chunks)
        bar = tqdm(stream, total=n, desc=f"embed {path.name}", unit="track", disable=not progress)
        for i, emb in enumerate(bar):
            if keep_chunks:
                chunk_rows.append(emb)
                file_index.append(np.full(len(emb), i, dtype=np.int64))
                continue
            if result is None:
                result = np.empty((n, emb.shape[-1]), dtype=np.float32)
            result[i] = emb
    if keep_chunks:
        if not chunk_rows:
            empty = np.zeros((0, _output_dim(encoder, layer)), np.float32)
            return {"ids": ids, "embeddings": empty, "file_index": np.zeros(0, np.int64)}
        return {"ids": ids, "embeddings": np.concatenate(chunk_rows),
                "file_index": np.concatenate(file_index)}
    if result is None:
        result = np.zeros((0, _output_dim(encoder, layer)), dtype=np.float32)
    return {"ids": ids, "embeddings": result}


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
) -> FileEmbeddings:
    """Compute each file's mel (``audio.file_mel``) and embed it; never stops on a bad file.

    Unreadable, empty and shorter-than-one-frame files are skipped and listed in
    ``skipped`` with the reason; files shorter than 256 frames are padded (see
    ``track_chunks``) and listed in ``padded``. ``on_problem(kind, message)`` is called
    for each ("skipped" or "padded") as it happens, e.g. to print it.
    """
    from tqdm import tqdm

    files = [Path(p) for p in files]
    encoder.to(device).eval()
    ok: list[str] = []
    skipped: list[dict] = []
    padded: list[dict] = []

    def mels() -> Iterator[np.ndarray]:
        for p in tqdm(files, desc="encode", unit="file", disable=not progress):
            try:
                frames = mel_to_frames(file_mel(p, segment=segment))
            except AudioError as e:
                reason = str(e)
                reason = reason[len(str(p)) + 2 :] if reason.startswith(f"{p}: ") else reason
                skipped.append({"path": str(p), "reason": reason})
                if on_problem:
                    on_problem("skipped", f"{p}: skipped: {reason}")
                continue
            if frames.shape[0] < CHUNK_FRAMES:
                padded.append({"path": str(p), "frames": int(frames.shape[0])})
                if on_problem:
                    on_problem(
                        "padded",
                        f"{p}: only {frames.shape[0]} frames (< {CHUNK_FRAMES}); padded with "
                        "its minimum dB value",
                    )
            ok.append(str(p))
            yield frames

    rows: list[np.ndarray] = []
    index: list[np.ndarray] = []
    for i, emb in enumerate(embed_stream(encoder, mels(), layer, device, batch_size, keep_chunks)):
        rows.append(emb if keep_chunks else emb[None])
        if keep_chunks:
            index.append(np.full(len(emb), i, dtype=np.int64))
    if rows:
        embeddings = np.concatenate(rows).astype(np.float32)
    else:
        dim = _output_dim(encoder, layer)
        embeddings = np.zeros((0, dim), dtype=np.float32)
    file_index = None
    if keep_chunks:
        file_index = np.concatenate(index) if index else np.zeros(0, dtype=np.int64)
    return FileEmbeddings(embeddings, ok, file_index, skipped, padded)


def _output_dim(encoder: torch.nn.Module, layer: str) -> int:
    """Width of ``layer`` without running the model (for empty outputs)."""
    if layer == "z":
        return int(getattr(encoder, "z_dim", 1024))
    return 128
