"""The study's plan: which configs, seeds and learning rates, how long each run trains,
and what that costs (``--plan-only`` prints it).

Selection. With ``select_on`` "audio" (new studies), best.pt, early stopping and the lr
grid look at the validation terms that involve the audio view only: in contrastive_MF_gnr
the ntxent_cf_genre term trains the CF and genre encoders and says nothing about the
audio embedding that the study evaluates.

Learning rate. The paper's 1e-4 is far too slow at this budget (the contrastive models
stay at chance), so each objective family (regression/classification baselines,
contrastive) gets the lr with the lowest best validation loss over a small grid, run on
seed 0 of one representative config (baseline_MF_gnr, contrastive_MF_gnr); that run is
also the config's seed-0 run of the study.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..model.layers import DEFAULT_LAYER
from ..model.layers import LAYERS as EMBEDDING_LAYERS
from ..io import write_json
from ..training.config import shipped_config
from .directory import Layout, StudyError

# both layers of every run, the default first
LAYERS = (DEFAULT_LAYER, *(layer for layer in EMBEDDING_LAYERS if layer != DEFAULT_LAYER))
REFERENCE = "contrastive_MF_gnr"  # the paper's model: compared against every other row
RANDOM, POPULARITY = "random-init", "popularity"
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
    # which validation loss picks best.pt, early stopping and the lr grid (training config
    # `select_on`): "sum" of every term, or "audio", the terms with the audio view. A
    # study.json without the key was run on the sum (the first study, reports/study/).
    select_on: str = "sum"
    # continuation intervals: "playlists" resampled alone (the first study), or
    # "clustered", playlists and their shared held-out tracks (stats.clustered_playlist_weights)
    playlist_resampling: str = "playlists"
    # the generator's preset (toy.world.MELON_PRESETS): G0, the corpus of the first study,
    # or G1/G2 of the mechanism study (musicrep.study.mechanism)
    preset: str = "G0"


STUDY_CONFIGS = ["baseline_MF", "baseline_gnr", "baseline_MF_gnr", "contrastive_MF",
                 "contrastive_gnr", "contrastive_MF_gnr", "contrastive_MF_gnr_tags",
                 "contrastive_tags"]
GRID_CONFIGS = {"baseline": "baseline_MF_gnr", "contrastive": "contrastive_MF_gnr"}

# New studies select on the audio terms and resample continuation with its shared tracks;
# the first study (reports/study/) ran with select_on "sum" and playlists alone, and its
# study.json, lacking both keys, loads with those defaults.
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
    n_boot=1000, probe_jobs=2, select_on="audio", playlist_resampling="clustered",
)
# The same pipeline in a few minutes: tiny corpus (just over 100 test tracks, so the
# continuation is scored), one chunk per track, width 0.125, 2 steps per epoch, 2 seeds.
SMOKE = Plan(
    name="smoke", songs=600, playlists=300, melon_frames=400, dataset_frames=300,
    test_size=0.2, val_size=0.1, cf_factors=32, cf_epochs=30,
    configs=STUDY_CONFIGS, grid_configs=GRID_CONFIGS,
    lr_grid={"baseline": [1e-3, 3e-3], "contrastive": [1e-3, 3e-3]},
    seeds=[0, 1], max_epochs=2, patience=1, min_epochs=1, batch_size=32, width=0.125, bf16="auto",
    n_boot=200, max_steps_per_epoch=2, num_workers=0, select_on="audio",
    playlist_resampling="clustered",
)



def family_of(config: str) -> str:
    """"baseline" or "contrastive": the config's objective."""
    path = shipped_config(config)
    try:
        objective = json.loads(path.read_text())["objective"]
    except (OSError, ValueError, KeyError) as e:
        raise StudyError(f"{path}: cannot read its 'objective' ({e})") from None
    return objective


def check_plan(layout: Layout, plan: Plan) -> None:
    """Write study.json, or refuse a directory that was started with another plan."""
    check_saved(layout.plan, asdict(plan), lambda d: asdict(Plan(**d)), "study", layout.root)


def check_saved(path: Path, want: dict[str, Any], complete: Callable[[dict], dict],
                what: str, root: Path) -> None:
    """Write ``want`` to ``path`` (a plan file), or refuse when the file there holds
    another plan. ``complete`` fills in the defaults of keys an older file lacks (a
    study.json written before a key existed loads with its default), so only a real
    difference refuses."""
    if path.is_file():
        try:
            have = complete(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise StudyError(f"{path}: unreadable as a {what} plan ({e})") from None
        want = json.loads(json.dumps(want))  # tuples as lists, as the file has them
        diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
        if diff:
            k = diff[0]
            raise StudyError(f"{path}: this {what} directory holds the '{have.get('name')}' plan, "
                             f"which differs in '{k}' ({json.dumps(have.get(k))} there, "
                             f"{json.dumps(want.get(k))} now); use another --study-dir")
        return
    root.mkdir(parents=True, exist_ok=True)
    write_json(path, want)


def load_plan(layout: Layout) -> Plan:
    path = layout.plan
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


def split_sizes(plan: Plan) -> tuple[int, int, int]:
    """(train, val, test) tracks the plan's corpus is expected to give (no defects)."""
    n_test = round(plan.songs * plan.test_size)
    n_val = round((plan.songs - n_test) * plan.val_size)
    return plan.songs - n_test - n_val, n_val, n_test


def estimate(plan: Plan) -> dict[str, Any]:
    """Expected and maximal training time, from the measured cost per track."""
    n_train, n_val, n_test = split_sizes(plan)
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
        f"({e['steps_per_epoch']} steps per epoch), selected on the {plan.select_on} "
        f"validation loss{' terms' if plan.select_on == 'audio' else ''}",
        f"  lr grid: {grid}",
        f"  {e['runs']} training runs, {e['evaluations']} evaluations (both layers: {', '.join(LAYERS)}); "
        f"bootstrap {plan.n_boot} replicates (continuation: {plan.playlist_resampling})",
        f"  estimate on the 2-core machine: ~{e['epoch_s']:.0f} s per epoch; training "
        f"~{hours(e['train_s_typical'])} (at most {hours(e['train_s_max'])} if no run stops "
        f"early), evaluation ~{hours(e['eval_s'])}",
    ])
