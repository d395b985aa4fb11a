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
from .directory import Layout, StudyError, lr_name
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
    grid = json.loads(layout.grid.read_text()) if layout.grid.is_file() else {}
    lrs = {f: g["chosen"] for f, g in grid.items()}
    found, missing = [], []

    def read(folder: Path, model: str, seed: int | None, label: str) -> None:
        f = read_finished(folder, model, seed)
        if f is None:
            missing.append(label)
        else:
            found.append(f)

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


def read_finished(folder: Path, model: str, seed: int | None) -> Finished | None:
    """One evaluated run (its eval.json, eval.npz and training summary), or None when
    it has no eval.npz yet."""
    from ..evaluation.items import read_items

    if not (folder / "eval.npz").is_file():
        return None
    info = json.loads((folder / "eval.json").read_text())
    if (folder / "config.json").is_file():
        info["training"] = json.loads((folder / "config.json").read_text()).get("training")
        info["train_s"] = train_seconds(folder / "metrics.csv")
        info["late_gain"] = late_gain(folder / "metrics.csv")
    return Finished(model, seed, info.pop("rows"), read_items(folder / "eval.npz"), info)


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
    loss had flattened; large: the run was still improving when the cap stopped it. The
    loss is the one the run selected on (``val_selected`` when there is one)."""
    try:
        with open(metrics_csv, newline="") as f:
            rows = list(csv.DictReader(f))
        # the loss that picked the best epoch: the audio terms' under select_on "audio"
        key = "val_selected" if rows and "val_selected" in rows[0] else "val_loss"
        val = [float(r[key]) for r in rows]
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


def item_weights(plan: Plan, n_test: int, n_pl: int,
                 held: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The bootstrap's item weights of a study: (B, n_test) over the test tracks and (B,
    n_pl) over the scored playlists, the first draws of the plan's ``stats_seed``. Two
    corpora with the same test tracks get the same weights (the mechanism study's G0
    and G1). ``held``: each scored playlist's held-out test-track columns, needed when
    the plan resamples continuation "clustered" (playlists with their shared tracks)."""
    rng = np.random.default_rng(plan.stats_seed)
    w_t = stats.bootstrap_weights(n_test, plan.n_boot, rng)
    w_p = stats.bootstrap_weights(n_pl, plan.n_boot, rng)
    if plan.playlist_resampling == "clustered":
        if held is None or len(held) != n_pl:
            raise StudyError(f"clustered continuation resampling needs the {n_pl} scored playlists' "
                             f"held-out tracks, got {None if held is None else len(held)}")
        w_p = stats.clustered_playlist_weights(held, w_t, w_p)
    elif plan.playlist_resampling != "playlists":
        raise StudyError(f"plan key 'playlist_resampling' is {plan.playlist_resampling!r}; "
                         "expected 'playlists' or 'clustered'")
    return w_t, w_p


def seed_draws_for(plan: Plan, n_seeds: int) -> np.ndarray:
    """The seed draws of every statistic over ``n_seeds`` seeds: the same for every model
    (and contrast) with that many seeds, so paired quantities share them."""
    return stats.seed_draws(n_seeds, plan.n_boot, np.random.default_rng([plan.stats_seed, n_seeds]))


def compute_statistics(found: list[Finished], plan: Plan,
                       held: list[np.ndarray] | None = None) -> tuple[list[dict], list[dict]]:
    """Summary rows (model x layer) and paired comparisons against REFERENCE.

    ``held``: each scored playlist's held-out test-track columns; needed when the plan
    resamples continuation "clustered" (playlists with their shared tracks)."""
    any_items = next(f.items[LAYERS[0]] for f in found if f.model != POPULARITY)
    w_t, w_p = item_weights(plan, len(any_items["genre_labels"]), len(any_items["recall@100"]), held)

    def draws(n: int) -> np.ndarray:  # the same draws for every model with n seeds
        return seed_draws_for(plan, n)

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


# ------------------------------------------------------------------ re-analysis ----------
# The first study's reading claimed effects where the paired bootstrap interval excluded
# 0. With three seeds that bootstrap is too sure (stats.py, "Seed-level tests"), so every
# claim is tested again from the per-run values that results.json keeps: a paired t-test
# over seeds beside the bootstrap, Holm's correction over the family of claims, and
# equivalence margins for "no difference". The per-item outputs are not needed: the
# bootstrap's intervals are taken as results.json has them.

ALPHA = 0.05
#: the metrics the re-analysis tests (the reading's, and genre PR-AUC, where the paper's
#: model leads)
REANALYSIS_METRICS = ("genre_roc_auc", "genre_pr_auc", "tag_roc_auc", "ndcg@100", "vote_ndcg@100", "mood_r2")
#: smallest differences of interest: "no difference" is claimed only inside +-margin.
#: ROC-AUC and NDCG@100 0.01, mood R^2 0.05 (both NDCG protocols and both ROC-AUCs alike);
#: genre PR-AUC has none (no equivalence verdict).
MARGINS = {"genre_roc_auc": 0.01, "tag_roc_auc": 0.01, "ndcg@100": 0.01, "vote_ndcg@100": 0.01,
           "mood_r2": 0.05}


@dataclass(frozen=True)
class Claim:
    """One claim of the first study's reading: REFERENCE against ``versus`` on ``metric``
    is "higher", "lower", or "equivalent" (the difference inside +-MARGINS[metric])."""

    metric: str
    versus: str
    kind: str
    words: str  # what the first reading said


def _claims(metric: str, kind: str, words: str, *versus: str) -> tuple[Claim, ...]:
    return tuple(Claim(metric, v, kind, words) for v in versus)


#: The family Holm's correction runs over: every comparison the first reading
#: (reports/study_reading.md before the re-analysis) called a difference or "no
#: difference" / "within noise", on layer z_d. Its comparisons with the popularity
#: oracle are left out (an oracle is not a comparator), and so is "layer z leads to the
#: same conclusions", which the re-analysis checks by testing the same family on z.
FAMILY: tuple[Claim, ...] = (
    *_claims("genre_roc_auc", "equivalent", "genre: no difference among the models that learned",
             "baseline_gnr", "baseline_MF_gnr", "contrastive_MF", "contrastive_gnr",
             "contrastive_MF_gnr_tags"),
    *_claims("genre_roc_auc", "higher", "genre: beats only these", "baseline_MF", "contrastive_tags", RANDOM),
    *_claims("ndcg@100", "lower", "continuation: the CF view alone is the best model", "contrastive_MF"),
    *_claims("vote_ndcg@100", "lower", "continuation (vote protocol): the same", "contrastive_MF"),
    *_claims("ndcg@100", "equivalent", "continuation: within noise of the baselines that see genres",
             "baseline_gnr", "baseline_MF_gnr"),
    *_claims("ndcg@100", "higher", "continuation: adding CF to the genre view helps", "contrastive_gnr"),
    *_claims("tag_roc_auc", "lower", "tagging: contrastive_MF leads", "contrastive_MF"),
    *_claims("tag_roc_auc", "equivalent", "tagging: the rest is within noise", "baseline_gnr",
             "baseline_MF_gnr", "contrastive_gnr", "contrastive_MF_gnr_tags", "contrastive_tags"),
    *_claims("mood_r2", "lower", "mood: adding genres to CF removes about half of it", "contrastive_MF"),
    *_claims("mood_r2", "higher", "mood: gains over the genre-only models", "baseline_gnr",
             "contrastive_gnr"),
)


def _seed_values(results: dict, model: str, layer: str, metric: str) -> dict[Any, float]:
    """{seed: full-test value} of one model's runs (popularity: one run, seed None)."""
    out = {}
    for r in results["runs"]:
        v = (r.get("rows") or {}).get(layer, {}).get(metric) if r["model"] == model else None
        if v is not None and math.isfinite(v):
            out[r["seed"]] = float(v)
    return out


def seed_differences(results: dict, versus: str, layer: str, metric: str) -> np.ndarray | None:
    """Per-seed differences REFERENCE - ``versus`` over their common seeds (a one-run
    reference row such as popularity is the same for every seed); None when none."""
    ref = _seed_values(results, results["reference"], layer, metric)
    other = _seed_values(results, versus, layer, metric)
    if list(other) == [None]:
        other = dict.fromkeys(ref, other[None])
    seeds = [s for s in ref if s in other]
    return np.array([ref[s] - other[s] for s in seeds]) if seeds else None


def verdict(c: dict, p_seed: float | None, alpha: float = ALPHA) -> str:
    """What a comparison ``c`` (``compare``) supports, with ``p_seed`` as the seed-level
    p-value of the direction (the t-test's) and of equivalence (``c["tost_p"]``, or a
    Holm-adjusted one): "higher"/"lower" (the bootstrap interval excludes 0 and the
    seed-level test agrees), "equivalent" (the bootstrap interval lies inside the margin
    and TOST says so), "bootstrap only" / "seeds only" (one of the two alone sees a
    difference), "inconclusive" (neither)."""
    lo, hi, mean = c["boot_low"], c["boot_high"], c["diff"]
    boot = None if lo is None else ("higher" if lo > 0 else "lower" if hi < 0 else None)
    seeds = None if p_seed is None or p_seed >= alpha or mean == 0 else ("higher" if mean > 0 else "lower")
    if boot and boot == seeds:
        return boot
    m, tost_p = c["margin"], c.get("tost_p_used", c["tost_p"])
    if m and lo is not None and -m < lo and hi < m and tost_p is not None and tost_p < alpha:
        return "equivalent"
    if boot:
        return "bootstrap only"
    return "seeds only" if seeds else "inconclusive"


def compare(results: dict, versus: str, layer: str, metric: str) -> dict[str, Any]:
    """REFERENCE against ``versus`` on one metric and layer: the bootstrap's difference,
    interval and p (as results.json has them), the seed-level t-test, TOST against the
    metric's margin, and the (uncorrected) verdict."""
    boot = next((c.get(metric) for c in results["comparisons"]
                 if c["versus"] == versus and c["layer"] == layer), None) or {}
    d = seed_differences(results, versus, layer, metric)
    t = stats.seed_ttest(d) if d is not None else {}
    margin = MARGINS.get(metric)
    c = {"versus": versus, "layer": layer, "metric": metric,
         "diff": boot.get("diff", t.get("mean")), "boot_low": boot.get("ci_low"),
         "boot_high": boot.get("ci_high"), "boot_p": boot.get("p_value"),
         "n_seeds": t.get("n", 0), "seed_diffs": None if d is None else [float(x) for x in d],
         "seed_sd": t.get("sd"), "seed_low": t.get("ci_low"), "seed_high": t.get("ci_high"),
         "seed_p": t.get("p"), "margin": margin,
         "tost_p": stats.tost(d, margin) if (d is not None and margin) else None}
    c["verdict"] = verdict(c, c["seed_p"]) if c["diff"] is not None else "not run"
    return c


def check_family(results: dict, layer: str, family: tuple[Claim, ...] = FAMILY,
                alpha: float = ALPHA) -> list[dict[str, Any]]:
    """Every claim of ``family`` on ``layer``: its comparison, the p-value that tests it
    (the seed-level t-test's for a difference, TOST's for "equivalent"), the Holm-adjusted
    p over the claims that could be tested, and whether the claim holds (the adjusted
    test and the bootstrap agree with it). A claim whose model was not run is "not run"."""
    rows = []
    for claim in family:
        c = compare(results, claim.versus, layer, claim.metric)
        c.update(claim=claim.kind, words=claim.words)
        c["p_claim"] = None if c["verdict"] == "not run" else (
            c["tost_p"] if claim.kind == "equivalent" else c["seed_p"])
        rows.append(c)
    for c, adj in zip(rows, stats.holm([c["p_claim"] for c in rows])):
        c["p_holm"] = adj
        if adj is None:
            c["decision"] = "not run" if c["verdict"] == "not run" else "untestable"
            continue
        if c["claim"] == "equivalent":
            c["decision"] = verdict({**c, "tost_p_used": adj}, None, alpha)
        else:
            c["decision"] = verdict({**c, "tost_p_used": None}, adj, alpha)
        c["holds"] = c["decision"] == c["claim"]
    return rows


def noise(results: dict, layer: str, metrics: tuple[str, ...] = REANALYSIS_METRICS) -> list[dict[str, Any]]:
    """Per trained model and metric: the seeds' std, and how much of the bootstrap
    interval the seeds alone account for (1.96 x std / sqrt(n) over the interval's
    half-width: near or above 1, the seeds, not the test items, set the interval)."""
    out = []
    for r in results["rows"]:
        if r["layer"] != layer or r["n_seeds"] < 2:
            continue
        for m in metrics:
            v = r.get(m)
            if not v or v.get("std") is None or v.get("ci_low") is None:
                continue
            half = (v["ci_high"] - v["ci_low"]) / 2
            seed_half = 1.96 * v["std"] / math.sqrt(r["n_seeds"])
            out.append({"model": r["model"], "metric": m, "std": v["std"], "half_width": half,
                        "seed_share": seed_half / half if half > 0 else None})
    return out


def reanalyse(results: dict, popularity_tags: dict | None = None) -> dict[str, Any]:
    """The re-analysis of a finished study's results.json (see above): the family of
    claims on each layer, every comparison of REANALYSIS_METRICS, the noise table, and the
    popularity oracle on tagging (``popularity_tags``, or the results' own popularity row
    where the study scored it)."""
    layers = results["layers"]
    models = list(dict.fromkeys(r["model"] for r in results["rows"] if r["model"] != results["reference"]))
    comparisons = [compare(results, m, layer, metric) for layer in layers
                   for metric in REANALYSIS_METRICS for m in models]
    if popularity_tags is None:
        pop = next((r for r in results["rows"] if r["model"] == POPULARITY and r["layer"] == layers[0]), {})
        if pop.get("tag_roc_auc"):
            popularity_tags = {c: pop[c] for c in TASK_COLUMNS["tagging"]}
    return {
        "reference": results["reference"], "alpha": ALPHA, "margins": MARGINS,
        "metrics": list(REANALYSIS_METRICS), "claim_layer": layers[0],
        "family": {layer: check_family(results, layer) for layer in layers},
        "comparisons": [c for c in comparisons if c["verdict"] != "not run"],
        "noise": {layer: noise(results, layer) for layer in layers},
        "popularity_tags": popularity_tags,
    }
