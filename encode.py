#!/usr/bin/env python
"""Embed audio files, or the tracks of a dataset split, with a trained audio encoder.

    python encode.py --checkpoint CKPT [--input-layout reference] FILES_OR_DIRS... \
        --out embeddings.npz [--chunks] [--layer z|z_d] [--segment melon] \
        [--batch-size N] [--device cpu|cuda|auto]
    python encode.py --checkpoint CKPT --hdf5 data/test.h5 --out test_emb.npz

CKPT is this project's checkpoint or exported `audio_encoder.pt`, a run directory, or
one of the authors' published plain state dicts (give `--input-layout reference` for
those if no config says so). Directories are searched recursively for audio files;
files are processed in sorted order.

Each file's mel is computed as Melon's (musicrep.audio) and its embedding is the mean
of the encoder outputs over non-overlapping 256-frame chunks (`--chunks` keeps one
row per chunk and adds `file_index`). `--layer z_d` (default) is the 128-d embedding
the training losses see; `--layer z` the 1024-d CNN output.

Output .npz: `embeddings` (N, d) float32 and `paths` (N,) str, or `ids` (N,) with
`--hdf5`; also `layer` and `checkpoint` strings. Files that cannot be read, are empty
or shorter than one frame are reported on stderr, skipped, and listed with their
reason in `<out>.skipped.json` (with the files that were padded: those shorter than
256 frames are padded with their own minimum dB value, with a note). Exit status: 0
when every file was encoded, 1 when any was skipped, 2 for a bad checkpoint or
arguments.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Embed audio files or an HDF5 dataset split with a trained audio encoder."
    )
    p.add_argument("inputs", nargs="*", metavar="FILES_OR_DIRS", help="audio files or directories")
    p.add_argument("--checkpoint", required=True, help="encoder checkpoint file or run directory")
    p.add_argument(
        "--input-layout",
        choices=("transpose", "reference"),
        default=None,
        help="how crops become CNN input; default: as saved with the model "
        "('reference' for plain state dicts without a config)",
    )
    p.add_argument("--hdf5", default=None, help="embed this dataset split (.h5) instead of files")
    p.add_argument("--out", required=True, help="output .npz path")
    p.add_argument("--chunks", action="store_true", help="keep one row per 256-frame chunk")
    p.add_argument("--layer", choices=("z", "z_d"), default="z_d", help="z_d (128-d, default) or z")
    p.add_argument(
        "--segment",
        default=None,
        help="'melon' for Melon's 20-50 s window, or OFFSET:DURATION in seconds; "
        "default: the whole file",
    )
    p.add_argument("--batch-size", type=int, default=128, help="chunks per forward pass")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.hdf5 and args.inputs:
        p.error("give either audio FILES_OR_DIRS or --hdf5, not both")
    if not args.hdf5 and not args.inputs:
        p.error("no input: give audio FILES_OR_DIRS or --hdf5 SPLIT.h5")
    if args.batch_size < 1:
        p.error("--batch-size must be >= 1")
    return args


def _segment(spec: str | None) -> tuple[float, float] | None:
    from musicrep.audio import MELON_SEGMENT

    if spec is None:
        return None
    if spec == "melon":
        return MELON_SEGMENT
    try:
        offset, duration = (float(x) for x in spec.split(":"))
    except ValueError:
        raise ValueError(f"--segment: expected 'melon' or OFFSET:DURATION, got {spec!r}") from None
    if offset < 0 or duration <= 0:
        raise ValueError(f"--segment: need OFFSET >= 0 and DURATION > 0, got {spec!r}")
    return offset, duration


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    from musicrep.io import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    # A file object, so numpy does not append ".npz" to the temporary name.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    from musicrep.embed import (
        embed_files,
        embed_hdf5,
        find_audio_files,
        resolve_checkpoint,
        resolve_device,
    )
    from musicrep.io import write_json
    from musicrep.models import load_audio_encoder

    try:
        segment = _segment(args.segment)
        device = resolve_device(args.device)
        ckpt = resolve_checkpoint(args.checkpoint)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            encoder = load_audio_encoder(ckpt, input_layout=args.input_layout, map_location="cpu")
        for w in caught:
            print(f"note: {w.message}", file=sys.stderr)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    out = Path(args.out)
    meta = {"layer": np.array(args.layer), "checkpoint": np.array(str(ckpt))}

    if args.hdf5:
        try:
            res = embed_hdf5(encoder, args.hdf5, args.layer, device, args.batch_size,
                             keep_chunks=args.chunks, progress=not args.quiet)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        _save_npz(out, {**res, **meta})
        print(f"wrote {out}: {len(res['ids'])} tracks, embeddings {res['embeddings'].shape}",
              file=sys.stderr)
        return 0

    files, missing = find_audio_files(args.inputs)
    for path, reason in missing:
        print(f"{path}: skipped: {reason}", file=sys.stderr)
    if not files and not missing:
        print("error: no audio files found in the given directories", file=sys.stderr)
        return 2
    res = embed_files(
        encoder, files, args.layer, device, args.batch_size, keep_chunks=args.chunks,
        segment=segment, progress=not args.quiet,
        on_problem=lambda kind, msg: print(msg if kind == "skipped" else f"note: {msg}",
                                           file=sys.stderr),
    )
    skipped = [{"path": p, "reason": r} for p, r in missing] + res.skipped
    arrays = {"embeddings": res.embeddings, "paths": np.array(res.paths, dtype=str), **meta}
    if res.file_index is not None:
        arrays["file_index"] = res.file_index
    _save_npz(out, arrays)
    write_json(Path(f"{out}.skipped.json"), {"skipped": skipped, "padded": res.padded})
    print(
        f"wrote {out}: {len(res.paths)} files encoded, {len(skipped)} skipped, "
        f"{len(res.padded)} padded; embeddings {res.embeddings.shape}",
        file=sys.stderr,
    )
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
