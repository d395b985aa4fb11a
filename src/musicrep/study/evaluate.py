"""Evaluating one encoder for the study: both layers from one pass, written as the run's
eval.json (rows per layer) and eval.npz (per-item arrays, the pipeline's file target).

Layers. Each run is evaluated on z_d (the 128-d projection the losses see, the
default) and on z (the CNN output before the projection, what the authors' own encode
script saved). Both come from one pass: the CNN gives each chunk's z, the projection
head maps it to z_d, and a track's embedding is the mean over its chunks, as in
musicrep.inference.embed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ..io import write_json
from ..layout import CONTINUATION, split_file
from .directory import StudyError
from .plan import LAYERS, Plan


def embed_both_layers(encoder: Any, data: Any, device: str, progress: bool) -> dict[str, dict[str, np.ndarray]]:
    """{layer: {split: (N, d)}} for z_d and z from one pass of the CNN per split."""
    import torch

    from ..inference.embed import embed_hdf5

    out: dict[str, dict[str, np.ndarray]] = {layer: {} for layer in LAYERS}
    for split, ids in data.ids.items():
        path = data.root / split_file(split)
        res = embed_hdf5(encoder, path, "z", device, 256, keep_chunks=True, progress=progress)
        if not np.array_equal(res["ids"], ids):
            raise StudyError(f"{path}: ids changed while reading")
        z = res["embeddings"]  # (chunks, z_dim), rows grouped by track in file order
        head = encoder.fc_audio.eval()
        dev = next(head.parameters()).device
        with torch.inference_mode():
            z_d = np.concatenate([head(torch.from_numpy(z[i:i + 8192]).to(dev)).float().cpu().numpy()
                                  for i in range(0, len(z), 8192)])
        starts = np.r_[0, np.nonzero(np.diff(res["file_index"]))[0] + 1]
        counts = np.diff(np.r_[starts, len(z)])[:, None]
        if len(starts) != len(ids):
            raise StudyError(f"{path}: a track gave no chunk")
        out["z"][split] = (np.add.reduceat(z, starts, axis=0) / counts).astype(np.float32)
        out["z_d"][split] = (np.add.reduceat(z_d, starts, axis=0) / counts).astype(np.float32)
    encoder.cpu()
    return out


def write_eval(folder: Path, rows: dict[str, dict], items: dict[str, dict], extra: dict) -> None:
    """eval.json (rows per layer and facts) then eval.npz (per-item arrays): the target."""
    from ..evaluation.items import write_items

    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "eval.json", {"rows": rows, **extra})
    write_items(folder / "eval.npz", items)


def evaluate_encoder(encoder: Any, data: Any, queries: Any, seed: int, folder: Path,
                     plan: Plan, device: str, progress: bool, extra: dict) -> None:
    """Both layers of ``encoder`` on every task, written to ``folder`` (eval.json, eval.npz)."""
    from ..evaluation.continuation import K, PLAYLIST_BATCH
    from ..evaluation.tasks import evaluate_embeddings

    t0 = time.perf_counter()
    embs = embed_both_layers(encoder, data, device, progress)
    rows, items = {}, {}
    for layer in LAYERS:
        items[layer] = {}
        rows[layer], _ = evaluate_embeddings(embs[layer], data, seed, K, PLAYLIST_BATCH, queries,
                                             None, plan.probe_jobs, items[layer])
    write_eval(folder, rows, items, {**extra, "seed": seed, "eval_s": time.perf_counter() - t0})


def playlist_queries(data: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Known and held-out test tracks of every scored playlist (the continuation task)."""
    from ..evaluation.continuation import continuation_degenerate, continuation_queries

    if data.playlists is None:
        raise StudyError(f"{data.root}: no {CONTINUATION}")
    known_ids = np.concatenate([data.ids["train"], data.ids["val"]])
    known, held, _ = continuation_queries(data.playlists, known_ids, data.ids["test"])
    why = continuation_degenerate(len(data.ids["test"]))
    if why or not known:
        raise StudyError(why or f"{data.root}: no playlist has known and held-out tracks")
    return known, held


def popularity_tag_scores(data: Any, items: dict[str, np.ndarray] | None = None) -> dict[str, float | None]:
    """The tagging columns of the popularity oracle: every tag of a test track scored by
    the track's playlist count (``popularity.json``). A track's tags are those of the
    playlists that hold it, so the count predicts how many tags it has; the count
    includes the evaluated playlists, so this is an oracle reference, not a model.
    ``items`` receives ``tag_scores`` and ``tag_labels`` for the study's bootstrap."""
    from ..evaluation.metrics import macro_roc_pr_auc
    from ..evaluation.tasks import TASK_COLUMNS

    labels = np.asarray(data.tag_y["test"])
    counts = np.array([float(data.popularity.get(str(int(t)), 0)) for t in data.ids["test"]])
    scores = np.repeat(counts[:, None], labels.shape[1], axis=1)
    if items is not None:
        items["tag_scores"], items["tag_labels"] = scores, labels
    got = macro_roc_pr_auc(labels, scores)
    roc_col, pr_col = TASK_COLUMNS["tagging"]
    return {roc_col: got["roc_auc"], pr_col: got["pr_auc"]}
