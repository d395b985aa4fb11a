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
reports/); prints the Markdown table. Exit status 2 for bad input (missing dataset
file, a checkpoint that is not an audio encoder, an embedding file that is pickled,
text or the wrong shape, an --out that cannot be written), with a one-line message;
--out is checked before any work.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..io import write_error
from ..model.layers import DEFAULT_LAYER, LAYERS

if TYPE_CHECKING:
    import torch

    from ..evaluation.data import EvalData
    from ..evaluation.run import EvalResult


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Evaluate audio encoders on genre, tagging and continuation."
    )
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
    p.add_argument("--probe-jobs", type=int, default=1, help="labels fitted in parallel")
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
    return args


def _check_writable(out: Path) -> str | None:
    """Why results cannot be written to ``out`` (created if missing), or None."""
    e = write_error(out)
    return None if e is None else f"{out}: output directory is not writable ({e.strerror or type(e).__name__})"


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    out = Path(args.out)
    problem = _check_writable(out)  # before the work, not after an hour of it
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    from ..evaluation.data import load_eval_data
    from ..evaluation.run import run_evaluation
    from ..precision import resolve_device

    try:
        device = resolve_device(args.device)
        data = load_eval_data(args.dataset, args.truth)
        result = run_evaluation(
            data, args.models, args.names, device=device, seed=args.seed, layer=args.layer,
            batch_size=args.batch_size, input_layout=args.input_layout,
            map_points=args.map_points, progress=not args.quiet,
            probe_max_train=args.probe_max_train, probe_jobs=args.probe_jobs,
            embeddings=args.embedding_sets, per_item=args.per_item,
        )
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    _write_outputs(args, out, data, result, device)
    if data.generated:
        print("note: generated corpus: models trained on it are useless for real music",
              file=sys.stderr)
    from ..evaluation.report import format_markdown

    print(format_markdown(result.rows), end="")
    for n in result.notes:
        print(f"Note: {n}")
    print(f"wrote results to {out}/", file=sys.stderr)
    return 0


def _write_outputs(args: argparse.Namespace, out: Path, data: EvalData, result: EvalResult,
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
    if not curves or plot_loss_curves(curves, out / "loss_curves.png",
                                      generated=generated) is None:
        if curves:
            print("note: the metrics.csv files hold no loss columns: no loss_curves.png",
                  file=sys.stderr)
        (out / "loss_curves.png").unlink(missing_ok=True)  # never leave a stale one


if __name__ == "__main__":
    sys.exit(main())
