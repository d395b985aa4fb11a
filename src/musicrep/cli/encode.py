"""Embed audio files, or the tracks of a dataset split, with a trained audio encoder.

    python encode.py --checkpoint CKPT [--input-layout reference] FILES_OR_DIRS... \
        --out embeddings.npz [--chunks] [--layer z|z_d] [--segment melon] \
        [--precision auto|fp32|bf16] [--batch-size N] [--device cpu|cuda|auto]
    python encode.py --checkpoint CKPT --hdf5 data/test.h5 --out test_emb.npz

A thin command line over ``musicrep.load_encoder``. CKPT is this project's checkpoint
or exported `audio_encoder.pt` (its run's config.json beside it says the input layout),
a model/run directory, or one of the authors' published plain state dicts (give
`--input-layout reference`: a plain state dict with no layout saved is refused, not
guessed). Directories are searched recursively for audio files; files are processed
in sorted order and decoded in 30 s blocks, so memory does not grow with duration.

Each file's mel is computed as Melon's (musicrep.audio) and its embedding is the mean
of the encoder outputs over non-overlapping 256-frame (4.096 s) chunks; the last
partial chunk is dropped (`--chunks` keeps one row per chunk and adds `file_index`).
`--layer z_d` (default) is the 128-d embedding the training losses see; `--layer z`
the CNN output (1024-d at width 1.0, 256-d at the shipped models' width 0.25).
Embeddings are not L2-normalised.

Output .npz (no pickles): `embeddings` (N, d) float32 and `paths` (N,) str, or `ids`
(N,) with `--hdf5`; metadata `checkpoint`, `layer`, `segment`, `chunk_frames`,
`chunk_seconds`, `normalised`, `precision`, `trained_on` ("generated", "real" or
"unknown") and `provenance` (the run's provenance as JSON). Files that cannot be read,
are empty or shorter than one frame are reported on stderr, skipped, and listed with
their reason in `<out>.skipped.json` (with the files that were padded: those shorter
than 256 frames are padded with their own minimum dB value, with a note). A model
trained on the generated corpus gets a warning: it is useless for real music.

Exit status: 0 when every file was encoded, 1 when any was skipped (or none could be
encoded: then nothing is written), 2 for a bad checkpoint, arguments or --out,
130 interrupted (nothing written).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

from ..io import write_error
from ..model.layers import DEFAULT_LAYER, LAYERS


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
        help="how crops become CNN input; default: as saved with the model (its "
        "config.json); 'reference' for the authors' published checkpoints",
    )
    p.add_argument("--hdf5", default=None, help="embed this dataset split (.h5) instead of files")
    p.add_argument("--out", required=True, help="output .npz path")
    p.add_argument("--chunks", action="store_true", help="keep one row per 256-frame chunk")
    p.add_argument("--layer", choices=LAYERS, default=DEFAULT_LAYER,
                   help="z_d (128-d, default) or z (the CNN output, 2 x 512 x width)")
    p.add_argument(
        "--segment",
        default=None,
        help="'melon' for Melon's 20-50 s window, or OFFSET:DURATION in seconds; "
        "default: the whole file",
    )
    p.add_argument("--batch-size", type=int, default=128, help="chunks per forward pass")
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="auto (default): bfloat16 where the hardware runs it natively; fp32 forces "
        "float32 (embeddings agree to cosine >= 0.999)",
    )
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
    from ..audio import MELON_SEGMENT

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


def _check_writable(out: Path) -> None:
    """Fail before any work when ``out`` cannot be written (not after an hour of encoding)."""
    if out.is_dir():
        raise ValueError(f"--out {out}: is a directory; give a .npz file path")
    e = write_error(out.parent)
    if e is not None:
        raise ValueError(f"--out {out}: cannot write in {out.parent} ({e.strerror or e})")


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("encode.py: interrupted; nothing written", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    from ..evaluation.embeddings import write_embedding_file
    from ..inference.embed import embed_hdf5, find_audio_files
    from ..inference.encoder import load_encoder
    from ..io import write_json

    out = Path(args.out)
    try:
        segment = _segment(args.segment)
        _check_writable(out)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            enc = load_encoder(args.checkpoint, device=args.device, precision=args.precision,
                               layer=args.layer, input_layout=args.input_layout,
                               batch_size=args.batch_size)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    meta = enc.npz_metadata(segment)

    if args.hdf5:
        try:
            res = embed_hdf5(enc.model, args.hdf5, args.layer, enc.device, args.batch_size,
                             keep_chunks=args.chunks, progress=not args.quiet,
                             precision=enc.info["precision"])
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if len(res["ids"]) == 0:
            print(f"error: {args.hdf5}: the split holds no tracks; nothing written",
                  file=sys.stderr)
            return 1
        write_embedding_file(out, {**res, **meta})
        print(f"wrote {out}: {len(res['ids'])} tracks, embeddings {res['embeddings'].shape}",
              file=sys.stderr)
        return 0

    files, missing = find_audio_files(args.inputs)
    for path, reason in missing:
        print(f"{path}: skipped: {reason}", file=sys.stderr)
    if not files:
        what = "none of the given inputs exist" if missing else \
            "no audio files found in the given directories"
        print(f"error: {what}; nothing written", file=sys.stderr)
        return 2
    print(f"encoding {len(files)} files with {enc.checkpoint} ({enc.info['precision']})",
          file=sys.stderr, flush=True)
    res = enc.embed_files(
        files, keep_chunks=args.chunks, segment=segment, progress=not args.quiet,
        on_problem=lambda kind, msg: print(msg if kind == "skipped" else f"note: {msg}",
                                           file=sys.stderr),
    )
    skipped = [{"path": p, "reason": r} for p, r in missing] + res.skipped
    if not res.paths:
        print(f"error: none of the {len(files)} audio files could be encoded "
              f"(reasons above); nothing written", file=sys.stderr)
        return 1
    arrays = {"embeddings": res.embeddings, "paths": np.array(res.paths, dtype=str), **meta}
    if res.file_index is not None:
        arrays["file_index"] = res.file_index
    write_embedding_file(out, arrays)
    write_json(Path(f"{out}.skipped.json"), {"skipped": skipped, "padded": res.padded})
    print(
        f"wrote {out}: {len(res.paths)} files encoded, {len(skipped)} skipped, "
        f"{len(res.padded)} padded; embeddings {res.embeddings.shape}",
        file=sys.stderr,
    )
    return 1 if skipped else 0



if __name__ == "__main__":
    sys.exit(main())
