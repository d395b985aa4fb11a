"""Write a static explorer page (index.html) for track embeddings.

    python explore.py --embeddings emb.npz [more.npz ...] [--dataset DIR] --out DIR
    python explore.py --checkpoint CKPT --dataset DIR --out DIR
    python explore.py --best-of reports/demo/results.json --dataset DIR --out DIR

The page is self-contained (inline script and data, no network): a PCA / t-SNE map of
the tracks coloured by major genre (with --dataset; else by folder), hover for the id
or path and genres, click for the 10 nearest neighbours by cosine. With --dataset the
embeddings must carry track ids (`encode.py --hdf5`, one .npz per split; the file
format: musicrep.evaluation.embeddings), or give
--checkpoint to embed the dataset's three splits here; a playlist chooser then shows
a playlist's known tracks and its top cold-start candidates among the test tracks,
held-out hits marked. --best-of takes the model with the highest ndcg@100 of an
evaluate.py results.json. Exit codes: 0 written, 2 bad input (one line), 130
interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Write a static explorer page for track embeddings.")
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
    try:
        res = json.loads(results.read_text(encoding="utf-8"))
        ckpts = res.get("checkpoints") or res["settings"]["checkpoints"]
        rows = [r for r in res["rows"] if r.get("model") in ckpts and r.get("ndcg@100") is not None]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{results}: not an evaluate.py results.json ({e})") from None
    if not rows:
        raise ValueError(f"{results}: no model row with ndcg@100 and a checkpoint")
    best = max(rows, key=lambda r: r["ndcg@100"])
    print(f"best model by ndcg@100: {best['model']} ({best['ndcg@100']:.4f})", file=sys.stderr)
    return ckpts[best["model"]]


def _embed_dataset(ckpt: str, dataset: Path, args: argparse.Namespace) -> tuple[dict, dict]:
    import warnings

    from ..inference.embed import embed_hdf5
    from ..inference.encoder import load_encoder
    from ..layout import SPLITS, DatasetLayout

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        enc = load_encoder(ckpt, device=args.device, input_layout=args.input_layout)
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
    try:
        return _run(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("explore.py: interrupted; nothing written", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    from ..evaluation.explore import build_page, playlist_view, write_explorer

    dataset = Path(args.dataset) if args.dataset else None
    if args.embeddings:
        from ..evaluation.embeddings import per_track_rows, read_embedding_file

        parts = [per_track_rows(read_embedding_file(p)) for p in args.embeddings]
        if len({d.ids is not None for d in parts}) > 1:
            raise ValueError("--embeddings: mix of files with ids and with paths")
        emb = np.concatenate([d.embeddings for d in parts]).astype(np.float32)
        key = "ids" if parts[0].ids is not None else "paths"
        names = np.concatenate([d.labels for d in parts])
        meta = parts[0].meta
        info = {k: str(meta[k]) for k in ("checkpoint", "layer", "trained_on") if k in meta}
        data = {key: names, "embeddings": emb}
    else:
        ckpt = args.checkpoint or _best_of(Path(args.best_of))
        data, enc_info = _embed_dataset(ckpt, dataset, args)
        info = {k: enc_info[k] for k in ("checkpoint", "layer", "trained_on")}
        key = "ids"

    emb = data["embeddings"]
    if emb.ndim != 2 or len(emb) == 0:
        raise ValueError(f"no embeddings to show (shape {emb.shape})")
    rows = np.arange(len(emb))
    if len(emb) > args.max_points:
        rng = np.random.default_rng(args.seed)
        rows = np.sort(rng.choice(len(emb), args.max_points, replace=False))
        print(f"note: {len(emb)} tracks; showing a seeded subsample of {len(rows)}",
              file=sys.stderr)
    emb = emb[rows]
    names = data[key][rows]

    genres = playlists = None
    title = "musicrep explorer"
    if dataset is not None:
        if key != "ids":
            raise ValueError("--dataset needs embeddings with track ids (encode.py --hdf5)")
        from ..evaluation.data import load_eval_data

        ev = load_eval_data(dataset)
        of_id = {}
        for s, ids in ev.ids.items():
            for t, y in zip(ids, ev.genre_y[s]):
                of_id[int(t)] = [ev.major_names[j] for j in np.flatnonzero(y)]
        ids = names.astype(np.int64)
        genres = [of_id.get(int(t), []) for t in ids]
        if ev.playlists:
            playlists = playlist_view(emb, ids, ev.ids["test"], ev.playlists, args.max_playlists)
        labels = [f"track {int(t)}" for t in ids]
        title = f"musicrep explorer: {dataset.name}"
    else:
        labels = [str(p) for p in names]
    page = build_page(emb, labels, genres, playlists, title, info, args.seed)
    path = write_explorer(page, args.out)
    print(f"wrote {path}: {page.n_points} tracks, {len(playlists or [])} playlists",
          file=sys.stderr)
    return 0



if __name__ == "__main__":
    sys.exit(main())
