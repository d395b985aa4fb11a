"""Collecting the study's finished runs and their statistics: per model and layer the
mean, std and bootstrap interval over seeds, and the paired differences against the
reference model (the resampling itself is musicrep.study.stats)."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..evaluation.tasks import TASK_COLUMNS
from . import stats
from .directory import Layout, lr_name
from .plan import LAYERS, POPULARITY, RANDOM, REFERENCE, Plan, family_of


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
    from ..evaluation.items import read_items

    grid = json.loads(layout.grid.read_text()) if layout.grid.is_file() else {}
    lrs = {f: g["chosen"] for f, g in grid.items()}
    found, missing = [], []

    def read(folder: Path, model: str, seed: int | None, label: str) -> None:
        if not (folder / "eval.npz").is_file():
            missing.append(label)
            return
        info = json.loads((folder / "eval.json").read_text())
        if (folder / "config.json").is_file():
            info["training"] = json.loads((folder / "config.json").read_text()).get("training")
            info["train_s"] = train_seconds(folder / "metrics.csv")
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


def train_seconds(metrics_csv: Path) -> float | None:
    """A run's measured training time: the sum of its metrics.csv 'time_s' (None if unreadable)."""
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
    """Every task's metric columns, in table order."""
    return [c for cols in TASK_COLUMNS.values() for c in cols]


def compute_statistics(found: list[Finished], plan: Plan) -> tuple[list[dict], list[dict]]:
    """Summary rows (model x layer) and paired comparisons against REFERENCE."""
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
