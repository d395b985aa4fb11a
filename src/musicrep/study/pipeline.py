"""The study's pipeline: which runs exist, and training and evaluating each of them,
resumably.

    python scripts/study.py --study-dir runs/study [--publish reports/study]

Every step is a file under the study directory, so a rerun skips what is finished and
an interrupted training resumes from its last.pt:

    study.json                         the plan (a directory holds one plan: another is refused)
    data/melon/                        the generated corpus (musicrep.toy.melon, no defects)
    data/dataset/                      create_dataset, then genre and tag word2vec
    runs/<config>/lr<lr>/seed<k>/      one training run (early stopping on validation loss)
        eval.json, eval.npz            its evaluation, both layers: rows and per-item arrays
    runs/random-init/seed<k>/eval.*    untrained encoder of the same width, per seed
    runs/popularity/eval.*             the popularity ranking (continuation) and the playlist
                                       count as the score of every tag (tagging): an oracle
                                       reference, its counts include the evaluated playlists
    grid.json                          the learning rate chosen per objective family
    report/                            results.md/.csv/.json and plots (musicrep.study.report)

Every run is evaluated with its best-by-validation encoder (audio_encoder_best.pt,
exported from best.pt), like the original, which kept the best model; audio_encoder.pt
is the last epoch's.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..io import write_json
from ..layout import MANIFEST, TAG_W2V, DatasetLayout
from ..training.config import shipped_config
from .directory import Layout, StudyError, log, lr_name
from .evaluate import evaluate_encoder, playlist_queries, popularity_tag_scores, write_eval
from .plan import LAYERS, POPULARITY, RANDOM, Plan, check_plan, describe, family_of, run_list

def build_data(layout: Layout, plan: Plan) -> None:
    """Generated corpus, dataset, word2vec matrices; each skipped when already there."""
    from ..data.builder import DatasetArgs, create_dataset
    from ..data.genre_w2v import train_from_dataset
    from ..data.melon import SONG_META
    from ..toy.melon import make_toy_melon

    if not (layout.melon / SONG_META).is_file():
        log(f"== corpus: {plan.songs} songs, {plan.playlists} playlists, preset {plan.preset} "
            f"-> {layout.melon}")
        make_toy_melon(layout.melon, songs=plan.songs, playlists=plan.playlists,
                       frames=plan.melon_frames, seed=plan.data_seed, force=layout.melon.exists(),
                       preset=plan.preset)
    if not (layout.dataset / MANIFEST).is_file():
        log(f"== dataset -> {layout.dataset}")
        create_dataset(DatasetArgs(
            melon_dir=str(layout.melon), out_dir=str(layout.dataset), frames=plan.dataset_frames,
            cf_factors=plan.cf_factors, cf_epochs=plan.cf_epochs, seed=plan.data_seed,
            test_size=plan.test_size, val_size=plan.val_size, workers=2))
    if not (layout.dataset / TAG_W2V).is_file():
        log("== genre and tag word2vec")
        train_from_dataset(layout.dataset, dim=128, seed=plan.data_seed)


def train_run(layout: Layout, plan: Plan, config: str, lr: float, seed: int) -> dict[str, Any]:
    """Train (or resume, or find complete) one run; returns its config.json 'training'."""
    from ..training.config import load_config, script_for
    from ..training.trainer import Trainer

    out, files = layout.run(config, lr, seed), DatasetLayout(layout.dataset)
    overrides = {
        "train_dataset_file": str(files.split("train")),
        "validation_dataset_file": str(files.split("val")),
        "save_dir": str(out.parent), "experiment_name": out.name, "seed": seed,
        "epochs": plan.max_epochs, "patience": plan.patience, "min_epochs": plan.min_epochs,
        "select_on": plan.select_on, "learning_rate": lr,
        "batch_size": plan.batch_size, "width": plan.width, "bf16": plan.bf16,
        "num_workers": plan.num_workers, "max_steps_per_epoch": plan.max_steps_per_epoch,
        "save_model_every": plan.max_epochs,
    }
    path = shipped_config(config)
    cfg = load_config(path, overrides)
    cfg = load_config(path, overrides, script=script_for(cfg))
    Trainer(cfg).fit()
    return json.loads((out / "config.json").read_text())["training"]


def trained(run: Path, plan: Plan) -> bool:
    """The run's training is complete under ``plan`` (a run that stopped early before
    ``plan.min_epochs``, e.g. under an earlier rule, is not: it resumes from last.pt)."""
    try:
        t = json.loads((run / "config.json").read_text())["training"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    n = t.get("epochs_run") or 0
    return n >= plan.max_epochs or (bool(t.get("stopped_early")) and n >= plan.min_epochs)


def evaluated(run: Path) -> bool:
    """eval.npz exists and is newer than the training state it evaluates."""
    ev, last = run / "eval.npz", run / "last.pt"
    return ev.is_file() and (not last.is_file() or ev.stat().st_mtime_ns >= last.stat().st_mtime_ns)


def best_val(run: Path) -> float | None:
    """The best validation loss of a finished run (config.json 'training')."""
    try:
        return json.loads((run / "config.json").read_text())["training"]["best_val_loss"]
    except (OSError, ValueError, KeyError):
        return None


def choose_lrs(layout: Layout, plan: Plan) -> dict[str, Any]:
    """grid.json: per family the grid's best validation losses and the chosen lr (lowest
    loss; a tie goes to the smaller lr)."""
    out: dict[str, Any] = {}
    for family, config in plan.grid_configs.items():
        rows = []
        for lr in plan.lr_grid[family]:
            run = layout.run(config, lr, plan.seeds[0])
            info = json.loads((run / "config.json").read_text())["training"]
            rows.append({"lr": lr, "best_val_loss": info["best_val_loss"],
                         "best_epoch": info["best_epoch"], "epochs_run": info["epochs_run"]})
        finite = [r for r in rows if r["best_val_loss"] is not None and math.isfinite(r["best_val_loss"])]
        if not finite:
            raise StudyError(f"lr grid of {config}: no run has a finite validation loss")
        chosen = min(finite, key=lambda r: (r["best_val_loss"], r["lr"]))["lr"]
        out[family] = {"config": config, "seed": plan.seeds[0], "grid": rows, "chosen": chosen}
    return out




def decide_lrs(layout: Layout, plan: Plan) -> dict[str, float]:
    """Choose the learning rates from the finished grid (grid.json); family -> lr."""
    grid = choose_lrs(layout, plan)
    write_json(layout.grid, grid)
    return {f: g["chosen"] for f, g in grid.items()}


def run_study(layout: Layout, plan: Plan, device: str = "auto", progress: bool = True) -> dict[str, Any]:
    """Every step of the module docstring that is not finished yet; returns grid.json."""
    from ..evaluation.data import load_eval_data
    from ..precision import resolve_device

    check_plan(layout, plan)
    log(describe(plan))
    t0 = time.perf_counter()
    build_data(layout, plan)
    data = load_eval_data(layout.dataset)
    queries = playlist_queries(data)
    dev = resolve_device(device)

    def evaluate_this(config: str, lr: float, seed: int) -> None:
        evaluate_run(layout, plan, data, queries, (config, lr, seed), dev, progress)

    train_all(layout, plan, evaluate_this)
    evaluate_references(layout, plan, data, queries, dev, progress)
    log(f"== study steps done in {time.perf_counter() - t0:.0f} s")
    return json.loads(layout.grid.read_text())


def train_all(layout: Layout, plan: Plan, evaluate_run: Callable[[str, float, int], None]) -> None:
    """Train and evaluate every run of ``run_list`` not finished yet: the lr grid first,
    whose finish decides each family's learning rate (grid.json) for the rest."""
    lrs: dict[str, float] | None = None
    if layout.grid.is_file():
        lrs = {f: g["chosen"] for f, g in json.loads(layout.grid.read_text()).items()}
    todo = run_list(plan, lrs)
    done = 0
    for i, (config, lr, seed) in enumerate(todo, 1):
        if lr is None:  # the grid is finished by now: decide the learning rates
            if lrs is None:
                lrs = decide_lrs(layout, plan)
                log("== lr chosen on validation loss: " + ", ".join(f"{f} {v:g}" for f, v in lrs.items()))
            lr = lrs[family_of(config)]
            if (config, lr, seed) in todo[:i - 1]:
                continue  # the grid's winning run is this config's seed-0 run
        run = layout.run(config, lr, seed)
        if evaluated(run) and trained(run, plan):
            done += 1
            continue
        log(f"== [{i}/{len(todo)}] train {config} {lr_name(lr)} seed{seed}")
        train_run(layout, plan, config, lr, seed)
        evaluate_run(config, lr, seed)
    if lrs is None:  # every config was a grid config: decide anyway, for the report
        lrs = decide_lrs(layout, plan)
    if done:
        log(f"== {done} runs were already finished and evaluated (skipped)")


def evaluate_run(layout: Layout, plan: Plan, data: Any, queries: Any,
                 run_key: tuple[str, float, int], device: str, progress: bool) -> None:
    """Evaluate one finished training run (config, lr, seed) with its best-by-validation
    encoder, unless its eval.npz is already newer than its training state."""
    from ..training.checkpoint import load_audio_encoder

    config, lr, seed = run_key
    run = layout.run(config, lr, seed)
    if evaluated(run):
        return
    enc = load_audio_encoder(run / "audio_encoder_best.pt")
    log(f"== evaluate {config} {lr_name(lr)} seed{seed} (best-by-validation encoder)")
    evaluate_encoder(enc, data, queries, seed, run, plan, device, progress,
                     {"model": config, "lr": lr, "checkpoint": "audio_encoder_best.pt"})


def evaluate_random_init(layout: Layout, plan: Plan, data: Any, queries: Any, seed: int,
                         device: str, progress: bool) -> None:
    """The floor of one seed: an untrained encoder of the plan's width (skipped when done)."""
    from ..evaluation.run import random_init_encoder

    folder = layout.reference(RANDOM, seed)
    if not (folder / "eval.npz").is_file():
        log(f"== evaluate {RANDOM} seed{seed}")
        enc = random_init_encoder(plan.width, "transpose", seed)
        evaluate_encoder(enc, data, queries, seed, folder, plan, device, progress, {"model": RANDOM})


def evaluate_references(layout: Layout, plan: Plan, data: Any, queries: Any, device: str,
                        progress: bool) -> None:
    """The rows every model is compared with: an untrained encoder of the plan's width per
    seed, and the popularity oracle (continuation; the playlist count as every tag's score)."""
    for seed in plan.seeds:
        evaluate_random_init(layout, plan, data, queries, seed, device, progress)
    evaluate_popularity(layout, data, queries)


def evaluate_popularity(layout: Layout, data: Any, queries: Any) -> None:
    """The popularity oracle's row (skipped when done, or without popularity.json)."""
    from ..evaluation.continuation import K, PLAYLIST_BATCH, popularity_metrics

    folder = layout.reference(POPULARITY)
    if not (folder / "eval.npz").is_file() and data.popularity is not None:
        items: dict[str, np.ndarray] = {}
        row = popularity_metrics(data.ids["test"], data.popularity, queries[1], K, PLAYLIST_BATCH, items)
        if data.tag_y is not None:
            row.update(popularity_tag_scores(data, items))
        write_eval(folder, {layer: row for layer in LAYERS}, {layer: items for layer in LAYERS},
                   {"model": POPULARITY, "seed": None})


# The corpus is deterministic in the plan, and its metadata (genres, playlists, tags, the
# split) do not depend on the mel length: a corpus of short mels is the study's corpus as
# far as popularity and tags go, built in about a minute instead of the study's hour.
SHORT_FRAMES = 256  # create_dataset's smallest --frames


def score_popularity_tags(results: dict, work: Path) -> dict[str, Any]:
    """The popularity oracle's tagging row for a finished study whose runs did not score
    it (the first study): its corpus regenerated in ``work`` with short mels, checked
    against ``results`` (split sizes, scored playlists, the popularity continuation row
    to 1e-12; StudyError otherwise), and every tag of a test track scored by its playlist
    count, with the interval over the study's own bootstrap draws of the test tracks."""
    from scipy.stats import spearmanr

    from ..data.builder import DatasetArgs, create_dataset
    from ..data.melon import SONG_META
    from ..evaluation.continuation import K, PLAYLIST_BATCH, popularity_metrics
    from ..evaluation.data import load_eval_data
    from ..toy.melon import make_toy_melon
    from . import stats

    plan = Plan(**results["plan"])
    gen = (results.get("data") or {}).get("generator") or {}
    melon, dataset = Path(work) / "melon", Path(work) / "dataset"
    if not (melon / SONG_META).is_file():
        log(f"== corpus (short mels): {plan.songs} songs, {plan.playlists} playlists -> {melon}")
        make_toy_melon(melon, songs=plan.songs, playlists=plan.playlists, frames=SHORT_FRAMES,
                       n_major=gen.get("n_major", 8), seed=plan.data_seed, force=melon.exists())
    if not (dataset / MANIFEST).is_file():
        log(f"== dataset (short mels, no useful CF) -> {dataset}")
        create_dataset(DatasetArgs(melon_dir=str(melon), out_dir=str(dataset), frames=SHORT_FRAMES,
                                   cf_factors=8, cf_epochs=1, seed=plan.data_seed,
                                   test_size=plan.test_size, val_size=plan.val_size, workers=1,
                                   overwrite=dataset.exists()))
    data = load_eval_data(dataset)
    held = playlist_queries(data)[1]
    want_splits = (results.get("data") or {}).get("splits") or {}
    have_splits = {s: len(v) for s, v in data.ids.items()}
    pop_row = next((r["rows"][results["layers"][0]] for r in results["runs"] if r["model"] == POPULARITY), None)
    row = popularity_metrics(data.ids["test"], data.popularity, held, K, PLAYLIST_BATCH)
    same = (have_splits == want_splits and len(held) == results["data"].get("playlists")
            and pop_row is not None and all(abs(row[k] - pop_row[k]) <= 1e-12 for k in row if k in pop_row))
    if not same:
        raise StudyError(f"{work}: the regenerated corpus is not the study's (splits {have_splits} vs "
                         f"{want_splits}, {len(held)} playlists vs {results['data'].get('playlists')}, "
                         "or another popularity row); remove it and rerun")
    items: dict[str, np.ndarray] = {}
    point = popularity_tag_scores(data, items)
    w_t = stats.bootstrap_weights(len(data.ids["test"]), plan.n_boot, np.random.default_rng(plan.stats_seed))
    reps = dict(zip(point, stats.auc_replicates(items["tag_scores"], items["tag_labels"], w_t)))
    one_seed = np.zeros((plan.n_boot, 1), np.int64)
    out: dict[str, Any] = {c: stats.summarize([point[c]], reps[c][None], one_seed) for c in point}
    counts, labels = items["tag_scores"][:, 0], items["tag_labels"]
    out.update(
        spearman_tag_count_playlist_count=float(spearmanr(labels.sum(axis=1), counts).statistic),
        n_test=len(counts),
        how=(f"one deterministic score, interval over the study's {plan.n_boot} bootstrap draws of "
             "the test tracks; no paired difference: the models' per-item scores are gone"),
        checked=(f"corpus regenerated with {SHORT_FRAMES}-frame mels: split sizes {have_splits}, "
                 f"{len(held)} scored playlists and the popularity continuation row equal the study's"),
    )
    return out
