"""Write a static explorer page (index.html) for track embeddings.

    python explore.py --embeddings emb.npz [more.npz ...] [--dataset DIR] --out DIR
    python explore.py --checkpoint CKPT --dataset DIR --out DIR
    python explore.py --best-of reports/demo/results.json --dataset DIR --out DIR

The page is self-contained (inline script and data, no network): a PCA / t-SNE map of
the tracks coloured by major genre (with --dataset; else by folder), hover for the id
or path (below the folder all files share) and genres, click for the 10 nearest
neighbours by cosine. With --dataset the embeddings must carry track ids (`encode.py
--hdf5`, one .npz per split; the file format: musicrep.evaluation.embeddings), or give
--checkpoint to embed the dataset's three splits here; a playlist chooser then shows
a playlist (by its title, where the corpus the dataset was built from is found) with
its known tracks and its top cold-start candidates among the test tracks, held-out
hits marked. --best-of takes the model with the highest ndcg@100 of an evaluate.py
results.json.

Exit codes: 0 written; 2 bad input, one line naming the file or option, before any
work (a missing dataset, checkpoint or file, one of the wrong kind or shape, an
unknown --device, an --out that is an input, cannot be written or is being written by
another run); 1 the page could not be written (disk full; the line names it); 130
interrupted (nothing written). index.html is replaced only when complete.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..io import output_lock, write_error
from .common import Parser, device_option, run

PROG = "explore.py"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(prog=PROG, description="Write a static explorer page for track embeddings.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--embeddings", nargs="+", help=".npz files from encode.py (no --chunks)")
    src.add_argument("--checkpoint", help="embed the --dataset splits with this model")
    src.add_argument("--best-of", metavar="RESULTS_JSON",
                     help="the best model (ndcg@100) of an evaluate.py results.json")
    p.add_argument("--dataset", help="dataset directory (genres, playlists, splits)")
    p.add_argument("--out", required=True, help="output directory for index.html")
    p.add_argument("--input-layout", choices=("transpose", "reference"), default=None,
                   help="for --checkpoint: 'reference' for the authors' published files")
    p.add_argument("--max-points", type=int, default=5000,
                   help="seeded subsample above this many tracks (t-SNE cost)")
    p.add_argument("--max-playlists", type=int, default=300)
    p.add_argument("--seed", type=int, default=0, help="subsample, PCA and t-SNE seed")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if (args.checkpoint or args.best_of) and not args.dataset:
        p.error("--checkpoint and --best-of need --dataset")
    if args.max_points < 2 or args.max_playlists < 0:
        p.error("--max-points must be >= 2 and --max-playlists >= 0")
    return args


def _best_of(results: Path) -> str:
    """The checkpoint of the row with the highest ndcg@100 in an evaluate.py results.json."""
    try:
        res = json.loads(results.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"--best-of {results}: cannot read JSON "
                          f"({getattr(e, 'strerror', None) or e})") from None
    ckpts = res.get("checkpoints") if isinstance(res, dict) else None
    if not (isinstance(ckpts, dict) and isinstance(res.get("rows"), list)):
        raise ConfigError(f"--best-of {results}: not an evaluate.py results.json (expected an "
                          "object with 'rows' and 'checkpoints')")
    rows = [r for r in res["rows"] if isinstance(r, dict) and isinstance(r.get("model"), str)
            and isinstance(ckpts.get(r["model"]), str)
            and isinstance(r.get("ndcg@100"), (int, float))]
    if not rows:
        raise ConfigError(f"--best-of {results}: no model row with ndcg@100 and a checkpoint")
    best = max(rows, key=lambda r: r["ndcg@100"])
    print(f"best model by ndcg@100: {best['model']} ({best['ndcg@100']:.4f})", file=sys.stderr)
    return ckpts[best["model"]]


def _embed_dataset(ckpt: str, dataset: Path, args: argparse.Namespace) -> tuple[dict, dict]:
    import warnings

    from ..evaluation.run import check_encoder_config, encoder_load_error
    from ..inference.embed import embed_hdf5, resolve_checkpoint
    from ..inference.encoder import load_encoder
    from ..layout import SPLITS, DatasetLayout

    try:
        path = resolve_checkpoint(ckpt)
    except FileNotFoundError as e:
        raise ConfigError(str(e)) from None
    check_encoder_config(path, args.input_layout)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            enc = load_encoder(path, device=args.device, input_layout=args.input_layout)
    except ValueError as e:
        raise encoder_load_error(path, e) from None
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    ids, emb = [], []
    lay = DatasetLayout(dataset)
    for split in SPLITS:
        res = embed_hdf5(enc.model, lay.split(split), enc.layer, enc.device,
                         progress=not args.quiet, precision=enc.info["precision"])
        ids.append(res["ids"])
        emb.append(res["embeddings"])
    return {"ids": np.concatenate(ids), "embeddings": np.concatenate(emb)}, enc.info


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    return run(PROG, lambda: _run(args), interrupted="interrupted; nothing written")


def _check_out(args: argparse.Namespace) -> Path:
    """--out, refused before any work when it is an input or index.html in it is, or
    when it cannot be written."""
    out = Path(args.out)
    inputs = [*(args.embeddings or []), *(x for x in (args.checkpoint, args.best_of,
                                                       args.dataset) if x)]
    for target in (out, out / "index.html"):
        for p in inputs:
            if Path(p).resolve() == target.resolve():
                raise ConfigError(f"--out {args.out}: {'is' if target == out else 'holds'} "
                                  f"the input {p}; give a folder of its own")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {args.out}: exists and is not a directory")
    e = write_error(out.resolve().parent)
    if e is not None:
        raise ConfigError(f"--out {args.out}: cannot be written "
                          f"({e.strerror or type(e).__name__})")
    return out


def _read_files(paths: list[str]) -> tuple[dict[str, np.ndarray], str, dict[str, str]]:
    """The --embeddings files joined: (arrays, "ids" or "paths", model facts)."""
    from ..evaluation.embeddings import per_track_rows, read_embedding_file

    try:
        parts = [per_track_rows(read_embedding_file(p)) for p in paths]
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if len({d.ids is not None for d in parts}) > 1:
        raise ConfigError("--embeddings: mix of files with ids and with paths")
    if len({d.embeddings.shape[1] for d in parts}) > 1:
        raise ConfigError(f"--embeddings: the files differ in width "
                          f"{sorted({d.embeddings.shape[1] for d in parts})}")
    key = "ids" if parts[0].ids is not None else "paths"
    meta = parts[0].meta
    info = {k: str(meta[k]) for k in ("checkpoint", "layer", "trained_on") if k in meta}
    data = {key: np.concatenate([d.labels for d in parts]),
            "embeddings": np.concatenate([d.embeddings for d in parts]).astype(np.float32)}
    return data, key, info


def _run(args: argparse.Namespace) -> int:
    from ..evaluation.explore import write_explorer

    out = _check_out(args)
    if args.checkpoint or args.best_of:
        device_option(args.device)
    with output_lock(out.resolve()):
        dataset = Path(args.dataset) if args.dataset else None
        ev = _load_dataset(dataset) if dataset is not None else None  # before any work
        if args.embeddings:
            data, key, info = _read_files(args.embeddings)
        else:
            ckpt = args.checkpoint or _best_of(Path(args.best_of))
            data, enc_info = _embed_dataset(ckpt, dataset, args)
            info = {k: enc_info[k] for k in ("checkpoint", "layer", "trained_on")}
            key = "ids"
        page, n_playlists = _page(args, data, key, info, ev)
        path = write_explorer(page, out)
    print(f"wrote {path}: {page.n_points} tracks, {n_playlists} playlists", file=sys.stderr)
    return 0


def _load_dataset(dataset: Path) -> Any:
    from ..evaluation.data import load_eval_data

    try:
        return load_eval_data(dataset)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _page(args: argparse.Namespace, data: dict[str, np.ndarray], key: str, info: dict,
          ev: Any) -> tuple[Any, int]:
    """The page's data: a subsample of at most --max-points tracks, their labels, genres
    and playlists (with a dataset)."""
    from ..evaluation.explore import build_page, path_labels, playlist_titles, playlist_view

    emb = data["embeddings"]
    if emb.ndim != 2 or len(emb) == 0:
        raise ConfigError(f"no embeddings to show (shape {emb.shape})")
    rows = np.arange(len(emb))
    if len(emb) > args.max_points:
        rng = np.random.default_rng(args.seed)
        rows = np.sort(rng.choice(len(emb), args.max_points, replace=False))
        print(f"note: {len(emb)} tracks; showing a seeded subsample of {len(rows)}",
              file=sys.stderr)
    emb = emb[rows]
    names = data[key][rows]

    genres = playlists = folders = None
    title = "musicrep explorer"
    if ev is not None:
        if key != "ids":
            raise ConfigError("--dataset needs embeddings with track ids (encode.py --hdf5)")
        of_id = {}
        for s, ids in ev.ids.items():
            for t, y in zip(ids, ev.genre_y[s]):
                of_id[int(t)] = [ev.major_names[j] for j in np.flatnonzero(y)]
        ids = names.astype(np.int64)
        genres = [of_id.get(int(t), []) for t in ids]
        if ev.playlists and args.max_playlists:
            titles = playlist_titles(ev.root, ev.manifest)
            if titles is None:
                print("note: the corpus the dataset was built from is not found: playlists "
                      "are shown by id", file=sys.stderr)
            playlists = playlist_view(emb, ids, ev.ids["test"], ev.playlists,
                                      args.max_playlists, titles=titles)
        labels = [f"track {int(t)}" for t in ids]
        title = f"musicrep explorer: {ev.root.name}"
    else:
        labels, folders = path_labels([str(p) for p in names])
    page = build_page(emb, labels, genres, playlists, title, info, args.seed, folders=folders)
    return page, len(playlists or [])


if __name__ == "__main__":
    sys.exit(main())
