"""One evaluation run: every model and embedding set on every task, plus reference rows.

``run_evaluation`` embeds the train, val and test tracks of the dataset with each
model (``musicrep.inference.embed``), reads the precomputed embedding sets
(``evaluation.embeddings``) and scores each on the tasks of ``evaluation.tasks``.

Reference rows. "random-init": an untrained encoder of the same width and input
layout as the first model, initialised from ``seed``. "popularity": one ranking of
the test tracks for every playlist by their count in ``popularity.json``
(``evaluation.continuation``); it has no genre or tag columns, and its Recall@k per
slice of the test tracks as the models have theirs (``evaluation.slices``). Their names
(``REFERENCE_ROWS``) are never given to a model or an embedding set, and no two rows
share a name (``row_names``): a row is known by its name in every output.

Before any model runs, the tasks the dataset cannot score are known
(``tasks.not_scored``): when that is every task, ``NothingScorable`` is raised with
the reasons; otherwise each reason is a note and a line under the table.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..inference.embed import embed_hdf5, resolve_checkpoint
from ..layout import SPLITS, DatasetLayout
from ..model.layers import DEFAULT_LAYER
from .continuation import (
    HELD_KEYS,
    PLAYLIST_BATCH,
    K,
    continuation_degenerate,
    continuation_queries,
    popularity_metrics,
)
from .data import EvalData, note
from .embeddings import load_embedding_set
from .slices import recall_by_slice, slice_column
from .tasks import ROW_KEYS, TASKS, applicable_tasks, evaluate_embeddings, not_scored, task_data

__all__ = ["REFERENCE_ROWS", "EvalResult", "NothingScorable", "check_encoder_config",
           "encoder_load_error", "model_names", "random_init_encoder", "row_names",
           "run_evaluation"]

Queries = tuple[list[np.ndarray], list[np.ndarray]]

#: The reference rows' names: no model or embedding set may take them.
REFERENCE_ROWS = ("random-init", "popularity")


class NothingScorable(Exception):
    """No task can be scored on the dataset; ``reasons`` holds one sentence per task."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


def model_names(
    checkpoints: Sequence[str | os.PathLike], names: Sequence[str] | None = None
) -> list[str]:
    """Display names: given ``names``, else the run folder of each checkpoint.

    The folder is the checkpoint's parent (or the directory itself when a run
    directory is given; the grandparent when the parent is ``checkpoints/``).
    Repeated names get "-2", "-3" suffixes (``run_evaluation`` refuses them instead,
    ``row_names``: a suffix could equal another row's name).
    """
    base = _base_names(checkpoints, names)
    out, seen = [], {}
    for b in base:
        seen[b] = seen.get(b, 0) + 1
        out.append(b if seen[b] == 1 else f"{b}-{seen[b]}")
    return out


def _base_names(checkpoints: Sequence[str | os.PathLike],
                names: Sequence[str] | None) -> list[str]:
    """``names`` as given, else each checkpoint's run folder (see ``model_names``)."""
    if names:
        if len(names) != len(checkpoints):
            raise ConfigError(f"--names: {len(names)} names for {len(checkpoints)} models")
        return [str(n) for n in names]
    base = []
    for c in checkpoints:
        p = Path(c).resolve()
        folder = p if p.is_dir() else p.parent
        if folder.name == "checkpoints":
            folder = folder.parent
        base.append(folder.name or p.stem)
    return base


def row_names(checkpoints: Sequence[str | os.PathLike], names: Sequence[str] | None,
              set_names: Sequence[str]) -> list[str]:
    """The models' row names (``names``, else their run folders), checked against each
    other, the embedding sets' names and ``REFERENCE_ROWS``.

    Every output (the tables, results.json's details, items.npz) is keyed by the row
    name, so two rows of one name would overwrite each other's data: ConfigError
    naming the option instead of a suffix the user did not choose.
    """
    base = _base_names(checkpoints, names)
    option = "--names" if names else "--models"
    model_of: dict[str, int] = {}
    for i, n in enumerate(base):
        given = n if names else f"{checkpoints[i]} (named after its run folder)"
        if not n.strip():
            raise ConfigError(f"{option}: an empty name")
        if n in REFERENCE_ROWS:
            raise ConfigError(f"{option} {given}: '{n}' is a reference row's name "
                              f"({', '.join(REFERENCE_ROWS)}); give the models other --names")
        if n in model_of:
            raise ConfigError(f"{option}: two models named '{n}' ({checkpoints[model_of[n]]} "
                              f"and {checkpoints[i]}); give each its own name with --names")
        model_of[n] = i
    seen_sets: set[str] = set()
    for n in set_names:
        if n in REFERENCE_ROWS:
            raise ConfigError(f"--embeddings {n}=...: '{n}' is a reference row's name "
                              f"({', '.join(REFERENCE_ROWS)}); choose another name")
        if n in model_of:
            raise ConfigError(f"--embeddings {n}=...: '{n}' is also the name of the model "
                              f"{checkpoints[model_of[n]]}; choose another name")
        if n in seen_sets:
            raise ConfigError(f"--embeddings: the name '{n}' is given twice")
        seen_sets.add(n)
    return base


def check_encoder_config(checkpoint: Path, input_layout: str | None) -> None:
    """ConfigError naming the ``config.json`` beside a checkpoint when it is valid JSON
    of the wrong shape (the loader reads its ``input_layout`` when none is given)."""
    from ..audio import INPUT_LAYOUTS
    from ..training.run_files import CONFIG

    sidecar = Path(checkpoint).with_name(CONFIG)
    if input_layout is not None or not sidecar.is_file():
        return
    try:
        cfg = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{sidecar}: unreadable config beside the weights ({e})") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{sidecar}: expected a JSON object (a run's config), "
                          f"got {type(cfg).__name__}")
    layout = cfg.get("input_layout")
    if layout is not None and layout not in INPUT_LAYOUTS:
        raise ConfigError(f"{sidecar}: 'input_layout' is {json.dumps(layout)[:40]}, expected "
                          f"one of {', '.join(INPUT_LAYOUTS)}")


def encoder_load_error(path: str | os.PathLike, e: ValueError) -> ConfigError:
    """The loader's ValueError about ``path`` as one line. torch's own reason for a file
    it cannot unpickle runs over many lines and suggests ``weights_only=False`` (which
    would execute the file): only its type is kept."""
    text = str(e)
    if text.startswith(f"{path}: not a readable torch file") and e.__cause__ is not None:
        return ConfigError(f"{path}: not a readable torch file ({type(e.__cause__).__name__}); "
                           "expected a checkpoint (best.pt, last.pt) or an exported "
                           "audio_encoder.pt")
    return ConfigError(text.strip().splitlines()[0] if text.strip() else type(e).__name__)


def random_init_encoder(width: float, input_layout: str, seed: int) -> torch.nn.Module:
    """An untrained AudioEncoder, initialised from ``seed`` without touching global RNG state."""
    from ..model.audio_cnn import AudioEncoder

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AudioEncoder(width=width, input_layout=input_layout)
    return model.eval()


@dataclass
class EvalResult:
    """What ``run_evaluation`` returns: the table rows and what the report needs besides."""

    rows: list[dict[str, Any]]
    details: dict[str, dict[str, Any]]
    test_maps: dict[str, np.ndarray]  # model -> subsampled test embeddings (for plots)
    map_index: np.ndarray  # rows of the test split in the subsample
    checkpoints: dict[str, str]  # model name -> checkpoint (models given as checkpoints)
    sources: dict[str, str] = field(default_factory=dict)  # name -> embedding file(s)
    notes: list[str] = field(default_factory=list)  # caveats for the report
    items: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # per_item=True


def _load_sets(
    data: EvalData, embeddings: Sequence[tuple[str, Sequence[str | os.PathLike]]],
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, str]]:
    """The precomputed sets (name -> split embeddings) and their sources, all checked."""
    loaded: dict[str, dict[str, np.ndarray]] = {}
    sources: dict[str, str] = {}
    for set_name, files in embeddings:
        loaded[set_name], sources[set_name] = load_embedding_set(set_name, files, data.ids)
    return loaded, sources


def _load_encoders(paths: Sequence[Path], input_layout: str | None) -> list[torch.nn.Module]:
    """The given models' encoders (on the CPU); their load warnings become notes."""
    from ..training.checkpoint import load_audio_encoder

    encoders = []
    for p in paths:
        check_encoder_config(p, input_layout)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                encoders.append(load_audio_encoder(p, input_layout=input_layout,
                                                   map_location="cpu"))
            except ValueError as e:
                raise encoder_load_error(p, e) from None
        for w in caught:
            note(str(w.message))
    return encoders


def _queries(data: EvalData) -> Queries | None:
    """The continuation queries of the dataset's playlists (None without playlists)."""
    if data.playlists is None:
        return None
    known_ids = np.concatenate([data.ids["train"], data.ids["val"]])
    known, held, skipped = continuation_queries(data.playlists, known_ids, data.ids["test"])
    if skipped:
        note(f"continuation: {skipped} playlists without known or held-out tracks "
             "in the splits skipped")
    return known, held


def _unscored(data: EvalData, queries: Queries | None) -> list[str]:
    """Why tasks cannot be scored (one sentence each); NothingScorable when none can.

    Each reason is a note, except where the task's file is missing: ``load_eval_data``
    already said so.
    """
    why = not_scored(data, queries)
    if len(why) == len(applicable_tasks(data, queries)):
        raise NothingScorable(list(why.values()))
    for t in TASKS:
        if t.name in why and task_data(t, data, queries) is not None:
            note(why[t.name])
    return list(why.values())


def _embed_splits(name: str, enc: torch.nn.Module, data: EvalData, layer: str,
                  device: torch.device | str, batch_size: int,
                  progress: bool) -> dict[str, np.ndarray]:
    """One model's embeddings of the three splits, checked against the dataset's ids."""
    lay = DatasetLayout(data.root)
    emb = {}
    for s in SPLITS:
        res = embed_hdf5(enc, lay.split(s), layer, device, batch_size, progress=progress)
        if not np.array_equal(res["ids"], data.ids[s]):
            raise ValueError(f"{lay.split(s)}: ids changed while reading")
        bad = ~np.isfinite(res["embeddings"]).all(axis=1)
        if bad.any():
            raise ValueError(
                f"{lay.split(s)}: model {name} gives non-finite embeddings for "
                f"{int(bad.sum())} tracks (first id {int(res['ids'][bad][0])}; "
                "NaN in dataset/data?)"
            )
        emb[s] = res["embeddings"]
    enc.cpu()
    return emb


def _popularity_row(data: EvalData, queries: Queries | None,
                    items: dict[str, np.ndarray] | None) -> dict[str, Any] | None:
    """The popularity reference row, or None where continuation is not scored."""
    if (queries is None or not queries[0] or data.popularity is None
            or continuation_degenerate(len(data.ids["test"])) is not None):
        return None
    row = {key: None for key in ROW_KEYS}
    row["model"] = REFERENCE_ROWS[1]
    own: dict[str, np.ndarray] = {} if items is None else items
    row.update(popularity_metrics(data.ids["test"], data.popularity, queries[1], K,
                                  PLAYLIST_BATCH, own))
    if data.slices is not None:  # its Recall@k per slice, as the models' (tasks.py)
        by_slice = recall_by_slice(*(own[key] for key in HELD_KEYS), K, data.slices)
        row.update({slice_column(f"recall@{K}", name): v for name, v in by_slice.items()})
        own.update(data.slices.items())
    return row


def run_evaluation(
    data: EvalData,
    checkpoints: Sequence[str | os.PathLike],
    names: Sequence[str] | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
    layer: str = DEFAULT_LAYER,
    batch_size: int = 256,
    input_layout: str | None = None,
    map_points: int = 2000,
    progress: bool = True,
    probe_max_train: int | None = None,
    probe_jobs: int = 1,
    embeddings: Sequence[tuple[str, Sequence[str | os.PathLike]]] = (),
    per_item: bool = False,
) -> EvalResult:
    """Embed every split with each model and the random-init reference, run the tasks.

    ``embeddings``: precomputed sets as (name, [.npz files]); the files' ``ids`` must
    together cover every track of the three splits. Rows come in the order: the given
    models, the embedding sets, "random-init" (only when a model is given, as it copies
    the first model's architecture), "popularity". Raises ValueError/FileNotFoundError
    for a checkpoint that is missing or not an encoder, or a bad embedding file
    (ConfigError for names that collide, ``row_names``), and NothingScorable, before
    any model runs, when the dataset can score no task.
    ``per_item`` keeps each row's per-item arrays in ``EvalResult.items``.
    """
    if not checkpoints and not embeddings:
        raise ConfigError("no models and no embedding files given")
    labels = row_names(checkpoints, names, [n for n, _ in embeddings])
    paths = [resolve_checkpoint(c) for c in checkpoints]
    # Precomputed sets are read (and checked) before any model is run.
    loaded, sources = _load_sets(data, embeddings)
    encoders = _load_encoders(paths, input_layout)
    if encoders:
        first = encoders[0]
        encoders.append(random_init_encoder(first.width, first.input_layout, seed))
        labels.append(REFERENCE_ROWS[0])

    queries = _queries(data)
    notes = _unscored(data, queries)  # before any model runs
    rng = np.random.default_rng(seed)
    n_test = len(data.ids["test"])
    map_index = np.sort(rng.choice(n_test, size=min(map_points, n_test), replace=False))

    jobs: list[tuple[str, Callable[[], dict[str, np.ndarray]]]] = [
        (n, lambda n=n, e=e: _embed_splits(n, e, data, layer, device, batch_size, progress))
        for n, e in zip(labels, encoders)]
    jobs[len(paths):len(paths)] = [(n, lambda e=e: e) for n, e in loaded.items()]
    rows, details, maps, per = [], {}, {}, {}
    for name, get in jobs:
        emb = get()
        per[name] = {}
        row, det = evaluate_embeddings(emb, data, seed, K, PLAYLIST_BATCH, queries,
                                       probe_max_train, probe_jobs,
                                       per[name] if per_item else None)
        row["model"] = name
        rows.append(row)
        details[name] = det
        maps[name] = emb["test"][map_index]
        loaded.pop(name, None)  # free a precomputed set once scored

    pop_items: dict[str, np.ndarray] = {}
    row = _popularity_row(data, queries, pop_items if per_item else None)
    if row is not None:
        per[REFERENCE_ROWS[1]] = pop_items
        rows.append(row)
        details[REFERENCE_ROWS[1]] = {"playlists": len(queries[1])}
    ckpts = {n: str(p) for n, p in zip(labels, paths)}
    return EvalResult(rows, details, maps, map_index, ckpts, sources, notes,
                      per if per_item else {})
