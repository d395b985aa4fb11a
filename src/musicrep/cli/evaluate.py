"""Evaluate audio encoders on the paper's three tasks and write tables and plots.

    python evaluate.py --dataset data/dataset --models models/*/audio_encoder.pt \
        [--names A B ...] [--out reports] [--device auto] [--seed 0] [--layer z_d]
    python evaluate.py --dataset data/dataset --embeddings NAME=all.npz \
        OTHER=train.npz,val.npz,test.npz [--models ...]

Each model (a checkpoint file, an exported or published `audio_encoder.pt`, or a run
directory) embeds the train, val and test tracks of the dataset (mean over
non-overlapping 256-frame chunks); then genre classification and tagging (linear
probes, ROC-AUC / PR-AUC) and cold-start playlist continuation (Recall@100,
R-precision, NDCG@100, MAP@100; two protocols, see musicrep.evaluation.continuation) are run.
--embeddings scores precomputed embeddings instead (an .npz with `ids` and
`embeddings`, as `encode.py --hdf5` writes; several files of one set joined by
commas; every track of the three splits needs a row). On a generated corpus whose
hidden truth is found (`--truth`, or the manifest's source directory) a `mood`
column is added. Reference rows: a random-init encoder of
the first model's architecture (seeded) and a popularity ranking. A model's name is
its run folder (the checkpoint's parent) unless --names is given.

Writes results.md, results.csv, results.json (with --per-item also items.npz, the
per-item data behind each row: see musicrep.evaluation.items), bars_*.png, embedding_maps.png and,
when the runs' metrics.csv files are found, loss_curves.png to --out (default
reports/); prints the Markdown table. The folder is built beside --out and swapped in
when complete (musicrep.evaluation.output): it then holds this run's results only, a
failed or interrupted run leaves the earlier ones as they were, files evaluate.py did
not write are kept, and a second run into the same --out is refused while one runs.

Exit status (docs/failures.md): 0 done; 2 bad input, one line naming the option or
file, before any work: a missing dataset, checkpoint or embedding file, a file of the
wrong kind or shape, an unknown --device, row names that collide with each other or
with the reference rows, an --out that cannot be written, is or holds an input, or is
locked by another run; 1 nothing could be scored (one line per task with what it
needs) or an output could not be written (disk full; the line names the file); 130
Ctrl-C. A task that cannot be scored while others are is one note line with why.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..io import InterruptGuard, output_lock, recover_dir, swap_in_dir, temp_dir_beside, write_error
from ..model.layers import DEFAULT_LAYER, LAYERS
from ..workers import cap_workers
from .common import Parser, device_option, run

if TYPE_CHECKING:
    import torch

    from ..evaluation.data import EvalData
    from ..evaluation.run import EvalResult

PROG = "evaluate.py"
_INTERRUPT = InterruptGuard()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(prog=PROG,
               description="Evaluate audio encoders on genre, tagging and continuation.")
    p.add_argument("--dataset", required=True,
                   help="dataset directory (train/val/test.h5 and side files)")
    p.add_argument("--models", nargs="+", default=[], help="checkpoints or run directories")
    p.add_argument("--embeddings", nargs="+", default=[], metavar="NAME=FILE[,FILE...]",
                   help="precomputed embeddings to score: .npz files with 'ids' and "
                   "'embeddings' (as encode.py --hdf5 writes them)")
    p.add_argument("--truth", default=None,
                   help="generated corpus's generated_truth.json (default: found via the "
                   "dataset manifest's source directory)")
    p.add_argument("--names", nargs="+", default=None, help="display names, one per model")
    p.add_argument("--out", default="reports", help="output directory (default: reports)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--seed", type=int, default=0, help="probe, random-init and plot seed")
    p.add_argument("--layer", choices=LAYERS, default=DEFAULT_LAYER,
                   help="embedding read out: z_d (128-d, default) or z (CNN output)")
    p.add_argument("--input-layout", choices=("transpose", "reference"), default=None,
                   help="override every model's input layout (default: as saved)")
    p.add_argument("--batch-size", type=int, default=256, help="chunks per forward pass")
    p.add_argument("--map-points", type=int, default=2000, help="test tracks in the embedding maps")
    p.add_argument("--probe-max-train", type=int, default=None,
                   help="train the probes on at most this many train+val tracks (seeded "
                   "subset; default: all)")
    p.add_argument("--probe-jobs", type=int, default=1,
                   help="labels fitted in parallel (at most the usable CPUs and the labels)")
    p.add_argument("--per-item", action="store_true",
                   help="also write items.npz: per model the probe scores and labels per "
                   "test track, mood predictions and truth, continuation metrics per "
                   "playlist (what a bootstrap over test items needs)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if not args.models and not args.embeddings:
        p.error("give --models, --embeddings or both")
    sets = []
    for spec in args.embeddings:
        name, sep, files = spec.partition("=")
        if not sep or not name or not files or any(not f for f in files.split(",")):
            p.error(f"--embeddings: '{spec}' is not NAME=FILE[,FILE...]")
        sets.append((name, files.split(",")))
    args.embedding_sets = sets
    if args.names and len(args.names) != len(args.models):
        p.error(f"--names: {len(args.names)} names for {len(args.models)} models")
    if args.batch_size < 1:
        p.error("--batch-size must be >= 1")
    if args.probe_max_train is not None and args.probe_max_train < 1:
        p.error("--probe-max-train must be >= 1")
    if args.probe_jobs < 1:
        p.error("--probe-jobs must be >= 1")
    if args.map_points < 1:
        p.error("--map-points must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    return run(PROG, lambda: _evaluate(args),
               interrupted=f"interrupted; {args.out} is as it was")


def _inputs(args: argparse.Namespace) -> list[str]:
    """Every path the run reads that the user named (the found truth file comes later)."""
    return [args.dataset, *args.models, *(f for _, files in args.embedding_sets for f in files),
            *([args.truth] if args.truth else [])]


def _evaluate(args: argparse.Namespace) -> int:
    from ..evaluation.output import check_out_dir
    from ..evaluation.run import row_names

    # Everything that can be refused is refused here, before any work.
    row_names(args.models, args.names, [n for n, _ in args.embedding_sets])
    device = device_option(args.device)
    out = Path(args.out).resolve()
    check_out_dir(out, args.out, _inputs(args))
    e = write_error(out.parent)
    if e is not None:
        raise ConfigError(f"{args.out}: output directory is not writable "
                          f"({e.strerror or type(e).__name__})")
    with output_lock(out), _INTERRUPT.installed():
        recover_dir(out)  # what a killed run left beside it
        check_out_dir(out, args.out, _inputs(args))  # again: recovery may have restored it
        data, result = _score(args, out, device)
        if result is None:
            return 1
        tmp = temp_dir_beside(out)
        try:
            _write_outputs(args, tmp, data, result, device, out)
            with _INTERRUPT.committing():
                swap_in_dir(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    if data.generated:
        print("note: generated corpus: models trained on it are useless for real music",
              file=sys.stderr)
    from ..evaluation.report import format_markdown

    print(format_markdown(result.rows), end="")
    for n in result.notes:
        print(f"Note: {n}")
    print(f"wrote results to {args.out.rstrip('/')}/", file=sys.stderr)
    return 0


def _score(args: argparse.Namespace, out: Path,
           device: torch.device) -> tuple[EvalData, EvalResult | None]:
    """Load the dataset and score every model and set; (data, None) when no task can be
    scored (its reasons printed, one line each). Bad input is a ConfigError."""
    from ..evaluation.data import load_eval_data
    from ..evaluation.output import check_out_dir
    from ..evaluation.run import NothingScorable, run_evaluation

    try:
        data = load_eval_data(args.dataset, args.truth)
        if data.truth_path is not None:
            check_out_dir(out, args.out, [data.truth_path])
        labels = max(len(data.major_names), len(data.tag_names or ()))
        jobs = cap_workers(args.probe_jobs, labels, "--probe-jobs")
        result = run_evaluation(
            data, args.models, args.names, device=device, seed=args.seed, layer=args.layer,
            batch_size=args.batch_size, input_layout=args.input_layout,
            map_points=args.map_points, progress=not args.quiet,
            probe_max_train=args.probe_max_train, probe_jobs=jobs,
            embeddings=args.embedding_sets, per_item=args.per_item,
        )
    except NothingScorable as e:
        for reason in e.reasons:
            print(f"{PROG}: error: {reason}", file=sys.stderr)
        return data, None
    except (ValueError, FileNotFoundError) as e:  # bad input, worded by the library
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(str(e)) from None
    return data, result


def _write_outputs(args: argparse.Namespace, tmp: Path, data: EvalData, result: EvalResult,
                   device: torch.device, out: Path) -> None:
    """results.md/.csv/.json, items.npz (--per-item) and the plots into ``tmp``, then the
    user's files of ``out`` (linked). A write that fails names the file under --out."""
    from ..evaluation.output import keep_user_files

    try:
        _write_results(args, tmp, data, result, device)
    except OSError as e:
        where = Path(e.filename) if e.filename else None
        if where is not None and tmp in where.parents:
            where = Path(args.out) / where.relative_to(tmp)
        raise OSError(e.errno, f"{e.strerror or e}; {args.out} is as it was",
                      None if where is None else str(where)) from e
    keep_user_files(out, args.out, tmp)


def _write_results(args: argparse.Namespace, out: Path, data: EvalData, result: EvalResult,
                   device: torch.device) -> None:
    """results.md/.csv/.json, items.npz (--per-item) and the plots, under ``out``."""
    from ..evaluation.continuation import K
    from ..evaluation.items import write_items
    from ..evaluation.probes import PROBE
    from ..evaluation.report import plot_embedding_maps, plot_metric_bars, write_tables

    extra = {
        "details": result.details,
        "checkpoints": result.checkpoints,
        "embedding_files": result.sources,
        "settings": {"layer": args.layer, "seed": args.seed, "k": K, "device": str(device),
                     "dataset_dir": str(Path(args.dataset).resolve()),
                     "probe": PROBE,
                     "probe_max_train": args.probe_max_train,
                     "test_candidates": len(data.ids["test"]),
                     "truth": None if data.truth_path is None else str(data.truth_path)},
    }
    gen = data.generated
    write_tables(out, result.rows, data.manifest, extra, generated=gen, notes=result.notes)
    if args.per_item:
        write_items(out / "items.npz", result.items)
    plot_metric_bars(result.rows, out, generated=gen)
    plot_embedding_maps(result.test_maps, data.genre_y["test"][result.map_index],
                        data.major_names, out / "embedding_maps.png", generated=gen)
    _plot_curves(result.checkpoints, out, gen)


def _plot_curves(checkpoints: dict[str, str], out: Path, generated: bool) -> None:
    """Training curves of the given models (``checkpoints`` holds no reference rows)."""
    from ..evaluation.report import find_metrics_csv, plot_loss_curves

    curves = {}
    for name, ckpt in checkpoints.items():
        found = find_metrics_csv(ckpt)
        if found is not None:
            curves[name] = found
    missing = [n for n in checkpoints if n not in curves]
    if missing:
        print(f"note: no metrics.csv next to the checkpoint of {', '.join(missing)}: "
              "no training curve for it", file=sys.stderr)
    if curves and plot_loss_curves(curves, out / "loss_curves.png",
                                   generated=generated) is None:
        print("note: the metrics.csv files hold no loss columns: no loss_curves.png",
              file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
