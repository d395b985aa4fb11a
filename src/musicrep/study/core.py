"""The study (issue #11): does contrasting audio with CF *and* genres beat the rest here?

    python scripts/study.py --study-dir runs/study [--publish reports/study]
    python scripts/study.py --study-dir runs/study_smoke --smoke      # minutes, same files
    python scripts/study.py --study-dir runs/study --report-only      # tables from finished runs
    python scripts/study.py --study-dir runs/study --plan-only        # the plan and its estimate

Pipeline, every step a file under the study directory, so a rerun skips what is
finished and an interrupted training resumes from its last.pt:

    study.json                         the plan (a directory holds one plan: another is refused)
    data/melon/                        the generated corpus (musicrep.toy.melon, no defects)
    data/dataset/                      create_dataset, then genre and tag word2vec
    runs/<config>/lr<lr>/seed<k>/      one training run (early stopping on validation loss)
        eval.json, eval.npz            its evaluation, both layers: rows and per-item arrays
    runs/random-init/seed<k>/eval.*    untrained encoder of the same width, per seed
    runs/popularity/eval.*             the popularity ranking (continuation only)
    grid.json                          the learning rate chosen per objective family
    report/                            results.md/.csv/.json and plots (musicrep.study.stats)

Learning rate. The paper's 1e-4 is far too slow at this budget (the contrastive models
stay at chance), so each objective family (regression/classification baselines,
contrastive) gets the lr with the lowest best validation loss over a small grid, run on
seed 0 of one representative config (baseline_MF_gnr, contrastive_MF_gnr); that run is
also the config's seed-0 run of the study. Every run is evaluated with its
best-by-validation encoder (audio_encoder_best.pt, exported from best.pt), like the
original, which kept the best model; audio_encoder.pt is the last epoch's.

Layers. Each run is evaluated on z_d (the 128-d projection the losses see, the
default) and on z (the CNN output before the projection, what the authors' own encode
script saved). Both come from one pass: the CNN gives each chunk's z, the projection
head maps it to z_d, and a track's embedding is the mean over its chunks, as in
musicrep.inference.embed.

The corpus is generated: the numbers say what the objectives do on data with planted
structure, nothing about real music, and the models are useless for real music.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_path, swap_in_dir, temp_dir_beside, write_json
from ..evaluation.report import GENERATED_NOTE, TASK_COLUMNS
from ..training.config import shipped_config

LAYERS = ("z_d", "z")
REFERENCE = "contrastive_MF_gnr"  # the paper's model: compared against every other row
RANDOM, POPULARITY = "random-init", "popularity"
READING_PLACEHOLDER = (
    "<!-- READING: placeholder. The integrator writes the reading of the full study here "
    "(which differences are outside noise, what the corpus plants, whether the paper's "
    "claim holds on it). -->\n_The reading of these results is not written yet._"
)
# Measured on the 2-core development machine: contrastive_MF at width 0.25, batch 32,
# bf16 trains about 5 s per epoch of the demo corpus's ~1440 training tracks; validation
# (forward only) and evaluation cost per track is a guess from the same runs.
SECONDS_PER_TRAIN_TRACK = 5.0 / 1440
SECONDS_PER_VAL_TRACK = SECONDS_PER_TRAIN_TRACK / 3
# evaluation, both layers, per dataset track of 5 chunks: the demo evaluated 7 encoders
# on 2000 tracks in ~3.5 min (~15 ms per track, embedding and probes)
SECONDS_PER_EVAL_TRACK = 0.015
TYPICAL_EPOCH_FRACTION = 0.7  # runs usually stop early at about this share of the cap


@dataclass
class Plan:
    """Everything that decides the study's numbers (written to study.json)."""

    name: str
    songs: int
    playlists: int
    melon_frames: int  # frames per generated song
    dataset_frames: int  # frames kept per track by create_dataset (5 chunks at 1300)
    test_size: float
    val_size: float
    cf_factors: int
    cf_epochs: int
    configs: list[str]
    grid_configs: dict[str, str]  # family -> the config its lr grid runs on
    lr_grid: dict[str, list[float]]  # family -> learning rates tried on seed 0
    seeds: list[int]
    max_epochs: int
    patience: int
    min_epochs: int  # no early stop before this epoch (the starting plateau: trainer.py)
    batch_size: int
    width: float
    bf16: str | bool
    n_boot: int
    max_steps_per_epoch: int | None = None
    num_workers: int = 4
    probe_jobs: int = 1
    data_seed: int = 0
    stats_seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


STUDY_CONFIGS = ["baseline_MF", "baseline_gnr", "baseline_MF_gnr", "contrastive_MF",
                 "contrastive_gnr", "contrastive_MF_gnr", "contrastive_MF_gnr_tags",
                 "contrastive_tags"]
GRID_CONFIGS = {"baseline": "baseline_MF_gnr", "contrastive": "contrastive_MF_gnr"}

# The full study. 4000 songs with a 20% test split give 800 test tracks (the demo has
# 185) and 2880 training tracks: 90 steps of 32 per epoch, ~10 s at width 0.25 in bf16,
# so 28 runs to at most 30 epochs fit the ~2.5 h budget on the 2-core machine. No run
# stops before epoch 15: baseline_MF's MSE and contrastive_MF's NT-Xent can sit on their
# starting plateau for 5-10 epochs, which patience 4 alone mistook for convergence.
FULL = Plan(
    name="full", songs=4000, playlists=2000, melon_frames=1876, dataset_frames=1300,
    test_size=0.2, val_size=0.1, cf_factors=300, cf_epochs=50,
    configs=STUDY_CONFIGS, grid_configs=GRID_CONFIGS,
    lr_grid={"baseline": [3e-4, 1e-3, 3e-3], "contrastive": [3e-4, 1e-3, 3e-3]},
    seeds=[0, 1, 2], max_epochs=30, patience=4, min_epochs=15, batch_size=32, width=0.25, bf16="auto",
    n_boot=1000, probe_jobs=2,
)
# The same pipeline in a few minutes: tiny corpus (just over 100 test tracks, so the
# continuation is scored), one chunk per track, width 0.125, 2 steps per epoch, 2 seeds.
SMOKE = Plan(
    name="smoke", songs=600, playlists=300, melon_frames=400, dataset_frames=300,
    test_size=0.2, val_size=0.1, cf_factors=32, cf_epochs=30,
    configs=STUDY_CONFIGS, grid_configs=GRID_CONFIGS,
    lr_grid={"baseline": [1e-3, 3e-3], "contrastive": [1e-3, 3e-3]},
    seeds=[0, 1], max_epochs=2, patience=1, min_epochs=1, batch_size=32, width=0.125, bf16="auto",
    n_boot=200, max_steps_per_epoch=2, num_workers=0,
)


class StudyError(ValueError):
    """Bad input or state of the study directory (one line)."""


def log(msg: str) -> None:
    print(msg, flush=True)


def lr_name(lr: float) -> str:
    return f"lr{lr:g}"


def family_of(config: str) -> str:
    """"baseline" or "contrastive": the config's objective."""
    path = shipped_config(config)
    try:
        objective = json.loads(path.read_text())["objective"]
    except (OSError, ValueError, KeyError) as e:
        raise StudyError(f"{path}: cannot read its 'objective' ({e})") from None
    return objective


# ------------------------------------------------------------------ plan and layout ----
@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def melon(self) -> Path:
        return self.root / "data" / "melon"

    @property
    def dataset(self) -> Path:
        return self.root / "data" / "dataset"

    def run(self, config: str, lr: float, seed: int) -> Path:
        return self.root / "runs" / config / lr_name(lr) / f"seed{seed}"

    def reference(self, name: str, seed: int | None = None) -> Path:
        return self.root / "runs" / name / ("" if seed is None else f"seed{seed}")

    @property
    def report(self) -> Path:
        return self.root / "report"


def check_plan(layout: Layout, plan: Plan) -> None:
    """Write study.json, or refuse a directory that was started with another plan."""
    path = layout.root / "study.json"
    want = asdict(plan)
    if path.is_file():
        try:
            have = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise StudyError(f"{path}: unreadable ({e})") from None
        diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
        if diff:
            k = diff[0]
            raise StudyError(f"{path}: this study directory holds the '{have.get('name')}' plan, "
                             f"which differs in '{k}' ({json.dumps(have.get(k))} there, "
                             f"{json.dumps(want.get(k))} now); use another --study-dir")
        return
    layout.root.mkdir(parents=True, exist_ok=True)
    write_json(path, want)


def load_plan(layout: Layout) -> Plan:
    path = layout.root / "study.json"
    if not path.is_file():
        raise StudyError(f"{path}: not found: {layout.root} is not a study directory")
    try:
        return Plan(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as e:
        raise StudyError(f"{path}: not a study plan ({e})") from None


def run_list(plan: Plan, lrs: dict[str, float] | None) -> list[tuple[str, float | None, int]]:
    """(config, lr, seed) of every training run: the grid first, then the study's runs
    (lr None while the family's grid is undecided)."""
    out: list[tuple[str, float | None, int]] = []
    for family, config in plan.grid_configs.items():
        out += [(config, lr, plan.seeds[0]) for lr in plan.lr_grid[family]]
    for config in plan.configs:
        lr = (lrs or {}).get(family_of(config))
        for seed in plan.seeds:
            if (config, lr, seed) not in out:
                out.append((config, lr, seed))
    return out


def estimate(plan: Plan) -> dict[str, Any]:
    """Expected and maximal training time, from the measured cost per track."""
    n_test = round(plan.songs * plan.test_size)
    n_val = round((plan.songs - n_test) * plan.val_size)
    n_train = plan.songs - n_test - n_val
    steps = n_train // plan.batch_size
    if plan.max_steps_per_epoch:
        steps = min(steps, plan.max_steps_per_epoch)
    epoch_s = steps * plan.batch_size * SECONDS_PER_TRAIN_TRACK + n_val * SECONDS_PER_VAL_TRACK
    # grid runs other than the one reused as seed 0, plus configs x seeds
    n_runs = len(plan.configs) * len(plan.seeds) + sum(len(v) - 1 for v in plan.lr_grid.values())
    n_eval = len(plan.configs) * len(plan.seeds) + len(plan.seeds)  # + random-init per seed
    eval_s = n_eval * plan.songs * SECONDS_PER_EVAL_TRACK * plan.dataset_frames / 1300
    cap = n_runs * plan.max_epochs * epoch_s
    return {"train_tracks": n_train, "val_tracks": n_val, "test_tracks": n_test,
            "steps_per_epoch": steps, "epoch_s": epoch_s, "runs": n_runs, "evaluations": n_eval,
            "max_epochs": plan.max_epochs, "train_s_max": cap,
            "train_s_typical": cap * TYPICAL_EPOCH_FRACTION, "eval_s": eval_s}


def describe(plan: Plan) -> str:
    e = estimate(plan)
    grid = "; ".join(f"{f} ({plan.grid_configs[f]}, seed {plan.seeds[0]}): "
                     + ", ".join(f"{lr:g}" for lr in lrs) for f, lrs in plan.lr_grid.items())
    hours = lambda s: f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.1f} min"  # noqa: E731
    return "\n".join([
        f"study plan '{plan.name}' (generated corpus: models are useless for real music)",
        f"  corpus: {plan.songs} songs, {plan.playlists} playlists; split test {plan.test_size:g}, "
        f"val {plan.val_size:g} of the rest: ~{e['train_tracks']} train / {e['val_tracks']} val / "
        f"{e['test_tracks']} test tracks",
        f"  configs: {', '.join(plan.configs)}; seeds {plan.seeds}",
        f"  training: width {plan.width:g}, batch {plan.batch_size}, bf16 {plan.bf16}, at most "
        f"{plan.max_epochs} epochs, early stopping patience {plan.patience} from epoch {plan.min_epochs} "
        f"({e['steps_per_epoch']} steps per epoch)",
        f"  lr grid: {grid}",
        f"  {e['runs']} training runs, {e['evaluations']} evaluations (both layers: z_d, z); "
        f"bootstrap {plan.n_boot} replicates",
        f"  estimate on the 2-core machine: ~{e['epoch_s']:.0f} s per epoch; training "
        f"~{hours(e['train_s_typical'])} (at most {hours(e['train_s_max'])} if no run stops "
        f"early), evaluation ~{hours(e['eval_s'])}",
    ])


# ------------------------------------------------------------------ data -----------------
def build_data(layout: Layout, plan: Plan) -> None:
    """Generated corpus, dataset, word2vec matrices; each skipped when already there."""
    from ..data.builder import DatasetArgs, create_dataset
    from ..data.genre_w2v import train_from_dataset
    from ..layout import TAG_W2V as TAG_MATRIX
    from ..toy.melon import make_toy_melon

    if not (layout.melon / "song_meta.json").is_file():
        log(f"== corpus: {plan.songs} songs, {plan.playlists} playlists -> {layout.melon}")
        make_toy_melon(layout.melon, songs=plan.songs, playlists=plan.playlists,
                       frames=plan.melon_frames, seed=plan.data_seed, force=layout.melon.exists())
    if not (layout.dataset / "manifest.json").is_file():
        log(f"== dataset -> {layout.dataset}")
        create_dataset(DatasetArgs(
            melon_dir=str(layout.melon), out_dir=str(layout.dataset), frames=plan.dataset_frames,
            cf_factors=plan.cf_factors, cf_epochs=plan.cf_epochs, seed=plan.data_seed,
            test_size=plan.test_size, val_size=plan.val_size, workers=2))
    if not (layout.dataset / TAG_MATRIX).is_file():
        log("== genre and tag word2vec")
        train_from_dataset(layout.dataset, dim=128, seed=plan.data_seed)


# ------------------------------------------------------------------ training -------------
def train_run(layout: Layout, plan: Plan, config: str, lr: float, seed: int) -> dict[str, Any]:
    """Train (or resume, or find complete) one run; returns its config.json 'training'."""
    from ..training.config import load_config, script_for
    from ..training.trainer import Trainer

    out = layout.run(config, lr, seed)
    overrides = {
        "train_dataset_file": str(layout.dataset / "train.h5"),
        "validation_dataset_file": str(layout.dataset / "val.h5"),
        "save_dir": str(out.parent), "experiment_name": out.name, "seed": seed,
        "epochs": plan.max_epochs, "patience": plan.patience, "min_epochs": plan.min_epochs,
        "learning_rate": lr,
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


# ------------------------------------------------------------------ evaluation -----------
def embed_both_layers(encoder: Any, data: Any, device: str, progress: bool) -> dict[str, dict[str, np.ndarray]]:
    """{layer: {split: (N, d)}} for z_d and z from one pass of the CNN per split."""
    import torch

    from ..inference.embed import embed_hdf5

    out: dict[str, dict[str, np.ndarray]] = {layer: {} for layer in LAYERS}
    for split, ids in data.ids.items():
        res = embed_hdf5(encoder, data.root / f"{split}.h5", "z", device, 256, keep_chunks=True,
                         progress=progress)
        if not np.array_equal(res["ids"], ids):
            raise StudyError(f"{data.root / f'{split}.h5'}: ids changed while reading")
        z = res["embeddings"]  # (chunks, z_dim), rows grouped by track in file order
        head = encoder.fc_audio.eval()
        dev = next(head.parameters()).device
        with torch.inference_mode():
            z_d = np.concatenate([head(torch.from_numpy(z[i:i + 8192]).to(dev)).float().cpu().numpy()
                                  for i in range(0, len(z), 8192)])
        starts = np.r_[0, np.nonzero(np.diff(res["file_index"]))[0] + 1]
        counts = np.diff(np.r_[starts, len(z)])[:, None]
        if len(starts) != len(ids):
            raise StudyError(f"{data.root / f'{split}.h5'}: a track gave no chunk")
        out["z"][split] = (np.add.reduceat(z, starts, axis=0) / counts).astype(np.float32)
        out["z_d"][split] = (np.add.reduceat(z_d, starts, axis=0) / counts).astype(np.float32)
    encoder.cpu()
    return out


def write_eval(folder: Path, rows: dict[str, dict], items: dict[str, dict], extra: dict) -> None:
    """eval.json (rows per layer and facts) then eval.npz (per-item arrays): the target."""
    from ..evaluation.core import write_items

    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "eval.json", {"rows": rows, **extra})
    write_items(folder / "eval.npz", items)


def evaluate_encoder(encoder: Any, data: Any, queries: Any, seed: int, folder: Path,
                     plan: Plan, device: str, progress: bool, extra: dict) -> None:
    from ..evaluation.core import K, PLAYLIST_BATCH, evaluate_embeddings

    t0 = time.perf_counter()
    embs = embed_both_layers(encoder, data, device, progress)
    rows, items = {}, {}
    for layer in LAYERS:
        items[layer] = {}
        rows[layer], _ = evaluate_embeddings(embs[layer], data, seed, K, PLAYLIST_BATCH, queries,
                                             None, plan.probe_jobs, items[layer])
    write_eval(folder, rows, items, {**extra, "seed": seed, "eval_s": time.perf_counter() - t0})


def _queries(data: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
    from ..evaluation.core import continuation_degenerate, continuation_queries

    if data.playlists is None:
        raise StudyError(f"{data.root}: no continuation.json")
    known_ids = np.concatenate([data.ids["train"], data.ids["val"]])
    known, held, _ = continuation_queries(data.playlists, known_ids, data.ids["test"])
    why = continuation_degenerate(len(data.ids["test"]))
    if why or not known:
        raise StudyError(why or f"{data.root}: no playlist has known and held-out tracks")
    return known, held


# ------------------------------------------------------------------ the pipeline ---------
def run_study(layout: Layout, plan: Plan, device: str = "auto", progress: bool = True) -> dict[str, Any]:
    """Every step of the module docstring that is not finished yet; returns grid.json."""
    from ..training.checkpoint import load_audio_encoder
    from ..precision import resolve_device
    from ..evaluation.core import K, PLAYLIST_BATCH, load_eval_data, popularity_metrics, random_init_encoder

    check_plan(layout, plan)
    log(describe(plan))
    t0 = time.perf_counter()
    build_data(layout, plan)
    data = load_eval_data(layout.dataset)
    queries = _queries(data)
    dev = resolve_device(device)

    def evaluate_run(config: str, lr: float, seed: int) -> None:
        run = layout.run(config, lr, seed)
        if evaluated(run):
            return
        enc = load_audio_encoder(run / "audio_encoder_best.pt")
        log(f"== evaluate {config} {lr_name(lr)} seed{seed} (best-by-validation encoder)")
        evaluate_encoder(enc, data, queries, seed, run, plan, dev, progress,
                         {"model": config, "lr": lr, "checkpoint": "audio_encoder_best.pt"})

    lrs: dict[str, float] | None = None
    grid_path = layout.root / "grid.json"
    if grid_path.is_file():
        lrs = {f: g["chosen"] for f, g in json.loads(grid_path.read_text()).items()}
    todo = run_list(plan, lrs)
    done = 0
    for i, (config, lr, seed) in enumerate(todo, 1):
        if lr is None:  # the grid is finished by now: decide the learning rates
            if lrs is None:
                grid = choose_lrs(layout, plan)
                write_json(grid_path, grid)
                lrs = {f: g["chosen"] for f, g in grid.items()}
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
        grid = choose_lrs(layout, plan)
        write_json(grid_path, grid)
        lrs = {f: g["chosen"] for f, g in grid.items()}
    if done:
        log(f"== {done} runs were already finished and evaluated (skipped)")

    width = plan.width
    for seed in plan.seeds:
        folder = layout.reference(RANDOM, seed)
        if not (folder / "eval.npz").is_file():
            log(f"== evaluate {RANDOM} seed{seed}")
            enc = random_init_encoder(width, "transpose", seed)
            evaluate_encoder(enc, data, queries, seed, folder, plan, dev, progress, {"model": RANDOM})
    folder = layout.reference(POPULARITY)
    if not (folder / "eval.npz").is_file() and data.popularity is not None:
        items: dict[str, np.ndarray] = {}
        row = popularity_metrics(data.ids["test"], data.popularity, queries[1], K, PLAYLIST_BATCH, items)
        write_eval(folder, {layer: row for layer in LAYERS}, {layer: items for layer in LAYERS},
                   {"model": POPULARITY, "seed": None})
    log(f"== study steps done in {time.perf_counter() - t0:.0f} s")
    return json.loads(grid_path.read_text())


# ------------------------------------------------------------------ report ---------------
@dataclass
class Finished:
    """What the report reads from one evaluated run."""

    model: str
    seed: int | None
    rows: dict[str, dict[str, Any]]  # layer -> row
    items: dict[str, dict[str, np.ndarray]]  # layer -> per-item arrays
    info: dict[str, Any]  # the eval.json facts, plus the run's training summary


def collect(layout: Layout, plan: Plan) -> tuple[list[Finished], list[str], dict]:
    """Evaluated runs of the plan (chosen lr), and the runs still missing."""
    from ..evaluation.core import read_items

    grid_path = layout.root / "grid.json"
    grid = json.loads(grid_path.read_text()) if grid_path.is_file() else {}
    lrs = {f: g["chosen"] for f, g in grid.items()}
    found, missing = [], []

    def read(folder: Path, model: str, seed: int | None, label: str) -> None:
        if not (folder / "eval.npz").is_file():
            missing.append(label)
            return
        info = json.loads((folder / "eval.json").read_text())
        if (folder / "config.json").is_file():
            info["training"] = json.loads((folder / "config.json").read_text()).get("training")
            info["train_s"] = _train_seconds(folder / "metrics.csv")
            info["late_gain"] = late_gain(folder / "metrics.csv")
        found.append(Finished(model, seed, info.pop("rows"), read_items(folder / "eval.npz"), info))

    for config in plan.configs:
        lr = lrs.get(family_of(config))
        for seed in plan.seeds:
            if lr is None:
                missing.append(f"{config} seed{seed} (lr grid unfinished)")
            else:
                read(layout.run(config, lr, seed), config, seed, f"{config} {lr_name(lr)} seed{seed}")
    for seed in plan.seeds:
        read(layout.reference(RANDOM, seed), RANDOM, seed, f"{RANDOM} seed{seed}")
    read(layout.reference(POPULARITY), POPULARITY, None, POPULARITY)
    return found, missing, grid


def _train_seconds(metrics_csv: Path) -> float | None:
    try:
        with open(metrics_csv, newline="") as f:
            return float(sum(float(r["time_s"]) for r in csv.DictReader(f)))
    except (OSError, ValueError, KeyError):
        return None


LATE_EPOCHS = 5


def late_gain(metrics_csv: Path, last: int = LATE_EPOCHS) -> float | None:
    """How far from converged a run was when it ended: the share of its whole validation
    improvement (first epoch to best) that came in its last ``last`` epochs. Near 0: the
    loss had flattened; large: the run was still improving when the cap stopped it."""
    try:
        with open(metrics_csv, newline="") as f:
            val = [float(r["val_loss"]) for r in csv.DictReader(f)]
    except (OSError, ValueError, KeyError):
        return None
    if len(val) <= last or not all(math.isfinite(v) for v in val):
        return None
    best, before = min(val), min(val[:-last])
    total = val[0] - best
    return (before - best) / total if total > 0 else 0.0


def metric_columns() -> list[str]:
    return [c for cols in TASK_COLUMNS.values() for c in cols]


def compute_statistics(found: list[Finished], plan: Plan) -> tuple[list[dict], list[dict]]:
    """Summary rows (model x layer) and paired comparisons against REFERENCE."""
    from . import stats

    any_items = next(f.items[LAYERS[0]] for f in found if f.model != POPULARITY)
    n_test = len(any_items["genre_labels"])
    n_pl = len(any_items["recall@100"])
    rng = np.random.default_rng(plan.stats_seed)
    w_t = stats.bootstrap_weights(n_test, plan.n_boot, rng)
    w_p = stats.bootstrap_weights(n_pl, plan.n_boot, rng)

    def draws(n: int) -> np.ndarray:  # the same draws for every model with n seeds
        return stats.seed_draws(n, plan.n_boot, np.random.default_rng([plan.stats_seed, n]))

    models = list(dict.fromkeys(f.model for f in found))
    # (model, layer) -> {seed: (point row, replicates)}
    per: dict[tuple[str, str], dict[Any, tuple[dict, dict]]] = {}
    for f in found:
        for layer in LAYERS:
            reps = stats.metric_replicates(f.items[layer], w_t, w_p)
            per.setdefault((f.model, layer), {})[f.seed] = (f.rows[layer], reps)

    def arrays(model: str, layer: str, col: str, seeds: list) -> tuple[np.ndarray, np.ndarray] | None:
        runs = per[(model, layer)]
        if model == POPULARITY:  # one deterministic ranking: the same for every seed
            row, reps = runs[None]
            runs = {s: (row, reps) for s in seeds}
        vals = [runs[s][0].get(col) for s in seeds]
        if any(v is None for v in vals) or any(col not in runs[s][1] for s in seeds):
            return None
        return np.array(vals, np.float64), np.stack([runs[s][1][col] for s in seeds])

    summary, comparisons = [], []
    for layer in LAYERS:
        for model in models:
            seeds = list(per[(model, layer)])
            row: dict[str, Any] = {"model": model, "layer": layer, "n_seeds": len(seeds)}
            for col in metric_columns():
                got = arrays(model, layer, col, seeds)
                s = stats.summarize(*got, draws(len(seeds))) if got else None
                row[col] = None if s is None or s["mean"] is None else {k: s[k] for k in ("mean", "std", "ci_low", "ci_high")}
            summary.append(row)
        if (REFERENCE, layer) not in per:
            continue
        ref_seeds = list(per[(REFERENCE, layer)])
        for model in models:
            if model == REFERENCE:
                continue
            seeds = ref_seeds if model == POPULARITY else [s for s in ref_seeds if s in per[(model, layer)]]
            comp: dict[str, Any] = {"model": REFERENCE, "versus": model, "layer": layer,
                                    "n_seeds": len(seeds)}
            for col in metric_columns():
                a, b = arrays(REFERENCE, layer, col, seeds), arrays(model, layer, col, seeds)
                comp[col] = (stats.paired_difference(*a, *b, draws(len(seeds)))
                             if a is not None and b is not None and seeds else None)
            comparisons.append(comp)
    return summary, comparisons


def _cell(v: dict | None) -> str:
    if not v:
        return ""
    std = "" if v["std"] is None else f" ± {v['std']:.3f}"
    ci = "" if v["ci_low"] is None else f" [{v['ci_low']:.3f}, {v['ci_high']:.3f}]"
    return f"{v['mean']:.3f}{std}{ci}"


def _diff_cell(v: dict | None) -> str:
    if not v or v["diff"] is None:
        return ""
    return f"{v['diff']:+.3f} [{v['ci_low']:+.3f}, {v['ci_high']:+.3f}] p={v['p_value']:.3g}"


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _task_tables(records: list[dict], layer: str, name: str, cell: Any) -> list[str]:
    """One markdown table per task of the records (summary rows or comparisons) of a layer;
    a task none of them has a value for is left out."""
    out = []
    for task, cols in TASK_COLUMNS.items():
        rows = [[r[name], str(r["n_seeds"])] + [cell(r[c]) for c in cols]
                for r in records if r["layer"] == layer and any(r[c] for c in cols)]
        if rows:
            out.append(f"\n{task}\n\n" + _table([name, "seeds", *cols], rows))
    return out


def format_report(plan: Plan, grid: dict, summary: list[dict], comparisons: list[dict],
                  found: list[Finished], missing: list[str], data_info: dict, budget: dict,
                  reading: str | None = None) -> str:
    from . import stats

    parts = ["# The study: paired comparisons over seeds and test items (generated corpus)\n",
             GENERATED_NOTE + "\n"]
    gen = data_info.get("generator") or {}
    parts.append("## Setup\n")
    parts.append(
        f"- Data origin: generated by `{gen.get('generator', 'musicrep.toy.melon.make_toy_melon')}` "
        f"(seed {gen.get('seed', plan.data_seed)}, {plan.songs} songs, {plan.playlists} playlists, "
        f"no defects); split {data_info.get('splits')} tracks (test {plan.test_size:g}, "
        f"val {plan.val_size:g} of the rest); {data_info.get('playlists')} test playlists scored.\n"
        f"- Runs: {', '.join(plan.configs)}; seeds {plan.seeds}; width {plan.width:g} (the paper: 1.0), "
        f"batch {plan.batch_size}, bf16 {plan.bf16} (resolved: {budget.get('bf16')}), at most "
        f"{plan.max_epochs} epochs with early stopping (patience {plan.patience}, not before epoch "
        f"{plan.min_epochs}) on validation "
        f"loss; each run is evaluated with its best-by-validation encoder.\n"
        f"- Budget: plan '{plan.name}'; training {budget['train_h']:.2f} h and evaluation "
        f"{budget['eval_h']:.2f} h of measured time ({budget['runs']} training runs, "
        f"{budget['epochs']} epochs in all).\n"
        f"- Statistics: mean ± std over seeds [95% interval]; the interval is a two-level "
        f"bootstrap ({plan.n_boot} replicates, seed {plan.stats_seed}) over test items (tracks "
        f"for genre, tagging and mood; playlists for continuation) and seeds. Differences are "
        f"{REFERENCE} minus the row, paired over the same items and seeds, with a percentile "
        f"bootstrap p-value (smallest possible {2 / (plan.n_boot + 1):.3g}). See below.\n")
    parts.append("### Learning rate grid (seed %d, best validation loss)\n" % plan.seeds[0])
    rows = []
    for family, g in grid.items():
        for r in g["grid"]:
            mark = " (chosen)" if r["lr"] == g["chosen"] else ""
            rows.append([family, g["config"], f"{r['lr']:g}{mark}",
                         "" if r["best_val_loss"] is None else f"{r['best_val_loss']:.4f}",
                         str(r["best_epoch"]), str(r["epochs_run"])])
    parts.append(_table(["family", "config", "lr", "best val loss", "best epoch", "epochs run"], rows))
    if missing:
        parts.append(f"\n**Missing ({len(missing)}, left out of every table):** {', '.join(missing)}\n")

    for layer in LAYERS:
        what = "128-d projection, the default" if layer == "z_d" else "CNN output before the projection"
        parts.append(f"\n## Results, layer {layer} ({what})\n")
        parts += _task_tables(summary, layer, "model", _cell)
        parts.append(f"\n### Paired differences, {REFERENCE} minus row (layer {layer})\n")
        parts += _task_tables(comparisons, layer, "versus", _diff_cell)

    parts.append("\n## Runs\n")
    rows = []
    for f in found:
        t = f.info.get("training") or {}
        if not t:
            continue
        rows.append([f.model, str(f.seed), f"{f.info.get('lr', ''):g}" if f.info.get("lr") else "",
                     str(t.get("epochs_run")), str(t.get("best_epoch")),
                     "yes" if t.get("stopped_early") else "no",
                     "" if t.get("best_val_loss") is None else f"{t['best_val_loss']:.4f}",
                     "" if f.info.get("late_gain") is None else f"{100 * f.info['late_gain']:.0f}%",
                     "" if f.info.get("train_s") is None else f"{f.info['train_s']:.0f}"])
    parts.append(f"'last {LATE_EPOCHS}': the share of the run's validation-loss improvement (first "
                 f"epoch to best) made in its last {LATE_EPOCHS} epochs; near 0% the loss had "
                 "flattened, a large share means the epoch cap stopped a run still improving.\n")
    parts.append(_table(["config", "seed", "lr", "epochs run", "best epoch", "stopped early",
                         "best val loss", f"last {LATE_EPOCHS}", "train s"], rows))
    parts.append("\n## Method\n\n" + stats.__doc__.split("\n\n", 1)[1].strip() + "\n")
    parts.append("\n## Reading\n\n" + (reading.strip() if reading else READING_PLACEHOLDER) + "\n")
    return "\n".join(parts)


def write_csv(path: Path, summary: list[dict]) -> None:
    cols = metric_columns()
    buf = ["model,layer,n_seeds," + ",".join(f"{c}_{k}" for c in cols for k in ("mean", "std", "ci_low", "ci_high"))]
    for r in summary:
        cells = [r["model"], r["layer"], str(r["n_seeds"])]
        for c in cols:
            v = r[c] or {}
            cells += ["" if v.get(k) is None else repr(float(v[k])) for k in ("mean", "std", "ci_low", "ci_high")]
        buf.append(",".join(cells))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(buf) + "\n", encoding="utf-8")


def plot_errorbars(summary: list[dict], found: list[Finished], out: Path) -> list[Path]:
    """One figure per layer and task: mean with the 95% interval, seeds as dots."""
    from ..evaluation.report import pyplot, save_figure

    plt = pyplot()
    written = []
    for layer in LAYERS:
        for task, cols in TASK_COLUMNS.items():
            rows = [r for r in summary if r["layer"] == layer and any(r[c] for c in cols)]
            if not rows:
                continue
            fig, axes = plt.subplots(1, len(cols), figsize=(3.2 * len(cols), 3.6), squeeze=False)
            for ax, col in zip(axes[0], cols):
                have = [r for r in rows if r[col]]
                x = np.arange(len(have))
                mean = np.array([r[col]["mean"] for r in have])
                lo = np.array([r[col]["ci_low"] if r[col]["ci_low"] is not None else r[col]["mean"] for r in have])
                hi = np.array([r[col]["ci_high"] if r[col]["ci_high"] is not None else r[col]["mean"] for r in have])
                ax.errorbar(x, mean, yerr=[mean - lo, hi - mean], fmt="o", capsize=3, color="C0")
                for i, r in enumerate(have):
                    seeds = [f.rows[layer].get(col) for f in found if f.model == r["model"]]
                    seeds = [s for s in seeds if s is not None]
                    ax.scatter(np.full(len(seeds), i + 0.15), seeds, s=8, color="C1", zorder=3)
                ax.set_xticks(x, [r["model"] for r in have], rotation=60, ha="right", fontsize="small")
                ax.set_title(col, fontsize="medium")
                ax.grid(axis="y", alpha=0.3)
            fig.suptitle(f"{task}, layer {layer}: mean and 95% interval, seeds as dots (generated corpus)")
            written.append(save_figure(fig, out / f"errorbars_{layer}_{task}.png"))
    return written


def read_reading(path: Path | None) -> str | None:
    """The hand-written reading of the results (markdown), or None when no file is named."""
    if path is None:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise StudyError(f"{path}: cannot read the reading ({e.__class__.__name__}); expected a UTF-8 markdown file")
    if not text.strip():
        raise StudyError(f"{path}: the reading is empty; expected the markdown text for results.md's 'Reading'")
    return text


def write_report(layout: Layout, plan: Plan, publish: Path | None = None,
                 reading: Path | None = None) -> Path:
    """Build report/ from the finished runs (and copy it to ``publish``); returns report/.

    ``reading``: a markdown file written by whoever reads the finished study; it becomes the
    'Reading' section of results.md and results.json's "reading" (otherwise a placeholder).
    """
    text = read_reading(reading)  # before any work, so a bad path fails at once
    found, missing, grid = collect(layout, plan)
    if not any(f.model not in (RANDOM, POPULARITY) for f in found):
        raise StudyError(f"{layout.root}: no finished and evaluated training run to report on")
    summary, comparisons = compute_statistics(found, plan)
    manifest = {}
    if (layout.dataset / "manifest.json").is_file():
        # the report is committed: paths inside the study directory say STUDY_DIR, not
        # where this machine keeps it
        raw = (layout.dataset / "manifest.json").read_text()
        raw = raw.replace(json.dumps(str(layout.root.resolve()))[1:-1], "STUDY_DIR")
        manifest = json.loads(raw)
    gen_path = layout.melon / "generated.json"
    trained = [f for f in found if f.info.get("training")]
    first_cfg = next((layout.run(f.model, f.info["lr"], f.seed) / "config.json" for f in trained), None)
    bf16 = json.loads(first_cfg.read_text()).get("bf16_resolved") if first_cfg else None
    all_runs = list((layout.root / "runs").glob("*/lr*/seed*/metrics.csv"))
    budget = {
        "train_h": sum(_train_seconds(p) or 0.0 for p in all_runs) / 3600,
        "eval_h": sum(f.info.get("eval_s") or 0.0 for f in found) / 3600,
        "runs": len(all_runs),
        "epochs": sum(max(0, len(p.read_text().splitlines()) - 1) for p in all_runs),
        "bf16": bf16,
    }
    data_info = {
        "generator": json.loads(gen_path.read_text()) if gen_path.is_file() else None,
        "splits": {s: (manifest.get("counts") or {}).get(f"{s}_tracks") for s in ("train", "val", "test")},
        "playlists": len(next(f.items[LAYERS[0]]["recall@100"] for f in found)),
    }
    md = format_report(plan, grid, summary, comparisons, found, missing, data_info, budget, text)
    out = layout.report
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "results.md") as tmp:
        tmp.write_text(md, encoding="utf-8")
    write_csv(out / "results.csv", summary)
    runs = [{"model": f.model, "seed": f.seed, "lr": f.info.get("lr"), "training": f.info.get("training"),
             "train_s": f.info.get("train_s"), "eval_s": f.info.get("eval_s"),
             "late_gain": f.info.get("late_gain"),
             "rows": f.rows} for f in found]
    write_json(out / "results.json", {
        "generated_corpus": True, "note": GENERATED_NOTE, "plan": asdict(plan), "data": data_info,
        "dataset_manifest": manifest, "lr_grid": grid, "budget": budget, "layers": list(LAYERS),
        "reference": REFERENCE, "missing": missing, "rows": summary, "comparisons": comparisons,
        "runs": runs, "method": "see musicrep.study.stats (two-level bootstrap over test items and seeds)",
        "reading": text,
    })
    plot_errorbars(summary, found, out)
    log(f"== report in {out} ({len(found)} evaluated runs, {len(missing)} missing)")
    if publish is not None:
        publish = Path(publish)
        publish.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_dir_beside(publish)
        shutil.copytree(out, tmp, dirs_exist_ok=True)
        swap_in_dir(tmp, publish)  # the previous copy is replaced only once this one is whole
        log(f"== report copied to {publish}")
    return out


# ------------------------------------------------------------------ command line ---------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="study.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--study-dir", default="runs/study", help="where every run and the report go "
                   "(default: runs/study; the full study belongs outside the work tree)")
    p.add_argument("--smoke", action="store_true", help="the tiny plan: same pipeline in minutes")
    p.add_argument("--report-only", action="store_true", help="rebuild report/ from finished runs")
    p.add_argument("--plan-only", action="store_true", help="print the plan and its estimate, then stop")
    p.add_argument("--publish", default=None, help="copy the finished report/ to this directory")
    p.add_argument("--reading", default=None, help="markdown file with the reading of the results "
                   "(becomes results.md's 'Reading'; the Makefile passes reports/study_reading.md)")
    p.add_argument("--device", default="auto", help="evaluation device (training: config 'auto')")
    p.add_argument("--quiet", action="store_true", help="no progress bars while embedding")
    a = p.parse_args(argv)
    from ..data.builder import DatasetError

    layout = Layout(Path(a.study_dir))
    plan = SMOKE if a.smoke else FULL
    try:
        if a.plan_only:
            log(describe(plan))
            return 0
        if a.report_only:
            plan = load_plan(layout)
        else:
            run_study(layout, plan, a.device, progress=not a.quiet)
        write_report(layout, plan, Path(a.publish) if a.publish else None,
                     Path(a.reading) if a.reading else None)
    except KeyboardInterrupt:
        print(f"\ninterrupted; rerun the same command to resume ({layout.root})", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, DatasetError) as e:
        # StudyError, ConfigError, MelonFormatError, unusable files or directories
        print(f"study.py: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # TrainingError: the loss became NaN
        print(f"study.py: training failed: {e}", file=sys.stderr)
        return 1
    return 0
