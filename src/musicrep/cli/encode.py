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
are empty or shorter than one frame, whose samples are too large to analyse (float
WAVs holding 1e38s: the mel overflows), whose header is damaged (a sample rate of 0),
or whose embedding is not finite, are reported on stderr, skipped, and listed with
their reason in `<out>.skipped.json` (with the files that were padded: those shorter
than 256 frames are padded with their own minimum dB value, with a note). With
`--hdf5`, tracks whose embedding is not finite (NaN in the split's mels) are left out
of the .npz, named on stderr and listed by id in `<out>.skipped.json`. No NaN row is
ever written. A model trained on the generated corpus gets a warning: it is useless
for real music.

--out may not be one of the inputs (an audio file given or found in a directory, the
--hdf5 split, the checkpoint or its config.json), nor may `<out>.skipped.json`: that
is refused before any work, since writing it would destroy the input.

Exit status: 0 when every file was encoded, 1 when any was skipped (or none could be
encoded: then nothing is written) or an output could not be written (disk full: the
previous files under the final names are kept), 2 for a bad checkpoint, arguments,
device or --out, 130 interrupted (nothing written). Errors are one line, never a
traceback.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..io import write_error
from ..model.layers import DEFAULT_LAYER, LAYERS
from .common import Parser, refuse_inputs_as_output, run

PROG = "encode.py"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(
        prog=PROG,
        description="Embed audio files or an HDF5 dataset split with a trained audio encoder.",
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
    try:
        args.segment = _segment(args.segment)
    except ValueError as e:
        p.error(str(e))
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
    if not (offset >= 0 and duration > 0) or not np.isfinite(offset + duration):
        raise ValueError(f"--segment: need OFFSET >= 0 and DURATION > 0, got {spec!r}")
    return offset, duration


def _check_writable(out: Path) -> None:
    """Fail before any work when ``out`` cannot be written (not after an hour of encoding)."""
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a directory; give a .npz file path")
    e = write_error(out.parent)
    if e is not None:
        raise ConfigError(f"--out {out}: cannot write in {out.parent} ({e.strerror or e})")


def _report_path(out: Path) -> Path:
    return Path(f"{out}.skipped.json")


def _refuse_inputs(out: Path, args: argparse.Namespace, files: list[Path]) -> None:
    """ConfigError, before any work, when --out or its report would replace an input:
    an audio file, the split, the checkpoint or the config.json read with it."""
    from ..inference.embed import resolve_checkpoint
    from ..inference.encoder import run_config_path

    try:
        ckpt = resolve_checkpoint(args.checkpoint)
    except FileNotFoundError as e:
        raise ConfigError(str(e)) from None
    inputs = [*files, ckpt, *([Path(args.hdf5)] if args.hdf5 else [])]
    config = run_config_path(ckpt)
    if config is not None:
        inputs.append(config)
    refuse_inputs_as_output(out, inputs)
    refuse_inputs_as_output(_report_path(out), inputs, option=f"--out {out}: its report")


def _load(args: argparse.Namespace):
    """The Encoder, its warnings printed; any load problem is a one-line ConfigError."""
    from ..inference.encoder import load_encoder

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            enc = load_encoder(args.checkpoint, device=args.device, precision=args.precision,
                               layer=args.layer, input_layout=args.input_layout,
                               batch_size=args.batch_size)
    except (ValueError, FileNotFoundError) as e:
        raise ConfigError(str(e)) from None
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    return enc


def _written(final: Path, write: Callable[[], object]) -> None:
    """Call ``write``; an OSError from it (disk full, ...) names ``final``, not a
    temporary name the user never gave."""
    try:
        write()
    except OSError as e:
        raise OSError(e.errno, e.strerror or str(e), str(final)) from None


def _write_outputs(out: Path, arrays: dict[str, np.ndarray], report: dict) -> None:
    """The .npz and its report, each under its final name only when both are complete:
    a failed write (disk full) or Ctrl-C leaves the previous files as they were."""
    from ..evaluation.embeddings import write_embedding_file
    from ..io import atomic_path, write_json

    report_path = _report_path(out)
    with atomic_path(report_path) as tmp:
        _written(report_path, lambda: write_json(tmp, report))
        _written(out, lambda: write_embedding_file(out, arrays))


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    return run(PROG, lambda: _run(args), interrupted="interrupted; nothing written")


def _run(args: argparse.Namespace) -> int:
    from ..inference.embed import find_audio_files

    out = Path(args.out)
    _check_writable(out)
    files, missing = ([], []) if args.hdf5 else find_audio_files(args.inputs)
    _refuse_inputs(out, args, files)
    enc = _load(args)
    if args.hdf5:
        return _run_hdf5(args, enc, out)
    return _run_files(args, enc, out, files, missing)


def _run_hdf5(args: argparse.Namespace, enc, out: Path) -> int:
    """Embed a split's tracks; those whose embedding is not finite are named and left
    out (exit 1), the others written: one damaged track never loses the split's work."""
    from ..inference.embed import embed_hdf5

    skipped: list[dict] = []
    try:
        res = embed_hdf5(enc.model, args.hdf5, args.layer, enc.device, args.batch_size,
                         keep_chunks=args.chunks, progress=not args.quiet,
                         precision=enc.info["precision"], skipped=skipped)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if skipped:
        ids = ", ".join(str(s["id"]) for s in skipped[:10])
        more = f" and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        print(f"{args.hdf5}: skipped {len(skipped)} tracks: {skipped[0]['reason']} "
              f"(ids {ids}{more})", file=sys.stderr)
    if len(res["ids"]) == 0:
        why = "none of its tracks could be encoded" if skipped else "the split holds no tracks"
        print(f"{PROG}: error: {args.hdf5}: {why}; nothing written", file=sys.stderr)
        return 1
    _write_outputs(out, {**res, **enc.npz_metadata(args.segment)}, {"skipped": skipped})
    print(f"wrote {out}: {len(res['ids'])} tracks, {len(skipped)} skipped, embeddings "
          f"{res['embeddings'].shape}", file=sys.stderr)
    return 1 if skipped else 0


def _run_files(args: argparse.Namespace, enc, out: Path, files: list[Path],
               missing: list[tuple[str, str]]) -> int:
    for path, reason in missing:
        print(f"{path}: skipped: {reason}", file=sys.stderr)
    if not files:
        what = "none of the given inputs exist" if missing else \
            "no audio files found in the given directories"
        raise ConfigError(f"{what}; nothing written")
    print(f"encoding {len(files)} files with {enc.checkpoint} ({enc.info['precision']})",
          file=sys.stderr, flush=True)
    res = enc.embed_files(
        files, keep_chunks=args.chunks, segment=args.segment, progress=not args.quiet,
        on_problem=lambda kind, msg: print(msg if kind == "skipped" else f"note: {msg}",
                                           file=sys.stderr),
    )
    skipped = [{"path": p, "reason": r} for p, r in missing] + res.skipped
    if not res.paths:
        print(f"{PROG}: error: none of the {len(files)} audio files could be encoded "
              f"(reasons above); nothing written", file=sys.stderr)
        return 1
    arrays = {"embeddings": res.embeddings, "paths": np.array(res.paths, dtype=str),
              **enc.npz_metadata(args.segment)}
    if res.file_index is not None:
        arrays["file_index"] = res.file_index
    _write_outputs(out, arrays, {"skipped": skipped, "padded": res.padded})
    print(
        f"wrote {out}: {len(res.paths)} files encoded, {len(skipped)} skipped, "
        f"{len(res.padded)} padded; embeddings {res.embeddings.shape}",
        file=sys.stderr,
    )
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
