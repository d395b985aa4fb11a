"""The mechanism study's report: which runs exist, the manipulation checks, H1-H4 with
Holm and the plan's decision, the exploratory contrasts, and per setting every model's
rows and per-seed values; results.json, results.md, results.csv and plots in
``STUDY_DIR/report/`` (the markdown is musicrep.study.mechanism_tables).

It reads whatever runs have finished, so a study stopped early (or still running) gets a
report of what exists, and says which runs are missing. The report is built in a
temporary folder beside report/ and swapped in whole: the previous report stays until
the new one is complete.

The corpora are generated: the numbers say what the objectives do on data with planted
structure, nothing about real music, and the models are useless for real music.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..evaluation.report import GENERATED_NOTE
from ..io import swap_in_dir, temp_dir_beside, write_json
from ..layout import GENERATED_MARKER, SPLITS
from .analysis import ALPHA, Finished, compute_statistics, item_weights, read_finished
from .directory import Layout, StudyError, log
from .hypotheses import FAMILY, RunValues, decide_family, explore, reading
from .mechanism import finished_runs, splits_equal
from .mechanism_plan import (
    MechanismPlan,
    describe_mechanism,
    estimate_mechanism,
    measured_costs,
    run_folder,
    run_order,
    setting_layout,
    setting_plan,
)
from .plan import LAYERS, POPULARITY, RANDOM, Plan
from .report import dataset_manifest, held_out_tracks, measured_budget, plot_errorbars, write_csv

#: the metrics whose per-seed values results.json and results.md list per model
KEY_METRICS = ("true_genre_roc_auc", "true_genre_roc_auc@bottom", "true_genre_roc_auc@top",
               "true_genre_roc_auc@niche", "true_genre_roc_auc@mainstream", "genre_roc_auc",
               "mood_r2", "ndcg@100", "tag_roc_auc", "true_detail_roc_auc")
PLOT_TASKS = ("true_genre", "mood", "continuation", "tagging")


def collect_mechanism(root: Path, mplan: MechanismPlan) -> tuple[dict[str, list[Finished]], list[dict]]:
    """Per setting the evaluated runs of the plan (and the popularity oracle), and the
    state of every planned run: "evaluated", "started" (a training without its final
    evaluation) or "missing"."""
    done = finished_runs(root, mplan)
    found: dict[str, list[Finished]] = {s: [] for s in mplan.settings}
    status = []
    for run in run_order(mplan):
        folder = run_folder(root, mplan, run)
        state = "missing"
        if run in done:
            found[run.setting].append(read_finished(folder, run.config, run.seed))
            state = "evaluated"
        elif (folder / "last.pt").is_file() or (folder / "config.json").is_file():
            state = "started"
        status.append({"block": run.block, "setting": run.setting, "model": run.config,
                       "seed": run.seed, "state": state})
    for setting in mplan.settings:
        pop = read_finished(setting_layout(root, setting).reference(POPULARITY), POPULARITY, None)
        if pop is not None:
            found[setting].append(pop)
    return found, status


def block_summary(mplan: MechanismPlan, status: list[dict]) -> list[dict[str, Any]]:
    """Per block: runs planned, evaluated, and the labels of the missing ones."""
    out = []
    for b in mplan.blocks:
        rows = [r for r in status if r["block"] == b["name"]]
        out.append({"block": b["name"], "planned": len(rows),
                    "evaluated": sum(r["state"] == "evaluated" for r in rows),
                    "missing": [f"{r['setting']} {r['model']} seed{r['seed']}"
                                + (" (started)" if r["state"] == "started" else "")
                                for r in rows if r["state"] != "evaluated"]})
    return out


def setting_facts(root: Path, layout: Layout, found: list[Finished]) -> dict[str, Any]:
    """What the report says about one setting's data: generator, split, checks."""
    from .checks import g1_targets

    checks = json.loads(layout.checks.read_text()) if layout.checks.is_file() else None
    gen = layout.melon / GENERATED_MARKER
    manifest = dataset_manifest(layout, root)
    scored = next((f.items[LAYERS[0]]["recall@100"] for f in found if f.model != POPULARITY), None)
    return {"generator": json.loads(gen.read_text()) if gen.is_file() else None,
            "splits": {s: (manifest.get("counts") or {}).get(f"{s}_tracks") for s in SPLITS},
            "playlists": None if scored is None else len(scored), "checks": checks,
            "targets": g1_targets(checks) if checks else None, "dataset_manifest": manifest}


def per_seed_values(found: list[Finished]) -> dict[str, Any]:
    """{model: {layer: {metric: {seed: value}}}} of KEY_METRICS, from each run's row."""
    out: dict[str, Any] = {}
    for f in found:
        if f.seed is None:
            continue
        for layer in LAYERS:
            cell = out.setdefault(f.model, {}).setdefault(layer, {})
            for m in KEY_METRICS:
                v = f.rows[layer].get(m)
                cell.setdefault(m, {})[str(f.seed)] = v
    return out


def setting_statistics(layout: Layout, plan: Plan, found: list[Finished]
                       ) -> tuple[list[dict], list[dict], tuple[np.ndarray, np.ndarray] | None]:
    """Summary rows and paired comparisons (study.analysis) of one setting, and its item
    weights ((B, n_test), (B, n_playlists)); empty without an evaluated encoder."""
    runs = [f for f in found if f.model != POPULARITY]
    if not runs:
        return [], [], None
    held = held_out_tracks(layout) if plan.playlist_resampling == "clustered" else None
    summary, comparisons = compute_statistics(found, plan, held)
    items = runs[0].items[LAYERS[0]]
    weights = item_weights(plan, len(items["genre_labels"]), len(items["recall@100"]), held)
    return summary, comparisons, weights


def analyse(root: Path, mplan: MechanismPlan) -> tuple[dict[str, Any], dict[str, list[Finished]]]:
    """results.json's content, from the finished runs; and the runs it was built from."""
    found, status = collect_mechanism(root, mplan)
    if not any(f.model not in (RANDOM, POPULARITY) for fs in found.values() for f in fs):
        raise StudyError(f"{root}: no finished and evaluated training run to report on")
    settings, weights = {}, {}
    for s in mplan.settings:
        layout, plan = setting_layout(root, s), setting_plan(mplan, s)
        summary, comparisons, w = setting_statistics(layout, plan, found[s])
        if w is not None:
            weights[s] = w
        for r in summary:
            r["setting"] = s
        settings[s] = {**setting_facts(root, layout, found[s]), "rows": summary,
                       "comparisons": comparisons, "per_seed": per_seed_values(found[s]),
                       "budget": measured_budget(layout, [f for f in found[s] if f.model != RANDOM])}
    values = RunValues({s: fs for s, fs in found.items() if s in weights}, weights)
    family = decide_family(values, mplan.budget)
    planned = sorted({seed for _, _, ss in mplan.blocks[0]["runs"] for seed in ss})
    results = {
        "generated_corpus": True, "note": GENERATED_NOTE, "pre_registration": "reports/mechanism/PLAN.md",
        "plan": asdict(mplan), "estimate": estimate_mechanism(mplan, measured_costs(root, mplan)),
        "plan_text": describe_mechanism(mplan, measured_costs(root, mplan)),
        "blocks": block_summary(mplan, status), "runs_status": status, "splits": splits_equal(root, mplan),
        "alpha": ALPHA, "margins": {h.name: h.margin for h in FAMILY}, "hypotheses": family,
        "reading": reading(family, planned), "exploratory": explore(values, mplan.budget),
        "settings": settings, "layers": list(LAYERS),
        "runs": [{"setting": s, "model": f.model, "seed": f.seed, "lr": f.info.get("lr"),
                  "training": f.info.get("training"), "train_s": f.info.get("train_s"),
                  "eval_s": f.info.get("eval_s"), "late_gain": f.info.get("late_gain"), "rows": f.rows}
                 for s, fs in found.items() for f in fs],
    }
    return results, found


def plot_family(rows: list[dict[str, Any]], out: Path) -> Path:
    """hypotheses.png: per hypothesis the per-seed contrasts (dots), the estimate with
    its bootstrap 95% interval, the equivalence margin (band) and 0."""
    from ..evaluation.report import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, len(rows), figsize=(2.6 * len(rows), 3.6), squeeze=False)
    for ax, r in zip(axes[0], rows):
        ax.axhline(0.0, color="0.3", lw=0.8)
        if r["margin"]:
            ax.axhspan(-r["margin"], r["margin"], color="C2", alpha=0.15, label="margin")
        if r["estimate"] is not None:
            lo = r["ci_low"] if r["ci_low"] is not None else r["estimate"]
            hi = r["ci_high"] if r["ci_high"] is not None else r["estimate"]
            ax.errorbar([0], [r["estimate"]], yerr=[[r["estimate"] - lo], [hi - r["estimate"]]],
                        fmt="o", capsize=4, color="C0")
            d = r["seed_diffs"] or []
            ax.scatter(np.full(len(d), 0.25), d, s=10, color="C1", zorder=3)
        ax.set_xlim(-0.5, 0.75)
        ax.set_xticks([])
        ax.set_title(f"{r['name']}: {r['verdict']}", fontsize="medium")
        ax.set_xlabel(r["metric"], fontsize="small")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("H1-H4 (layer z_d): estimate and 95% bootstrap interval, seeds as dots, "
                 "margin shaded (generated corpora)", fontsize="medium")
    return save_figure(fig, out / "hypotheses.png")


def write_mechanism_report(root: Path, mplan: MechanismPlan) -> Path:
    """Build report/ from the finished runs (see the module docstring); returns report/."""
    from .mechanism_tables import format_mechanism

    root = Path(root)
    results, found = analyse(root, mplan)
    final = root / "report"
    tmp = temp_dir_beside(final)
    try:
        write_json(tmp / "results.json", results)
        write_csv(tmp / "results.csv", [r for s in results["settings"].values() for r in s["rows"]],
                  keys=("setting", "model", "layer", "n_seeds"))
        (tmp / "results.md").write_text(format_mechanism(results), encoding="utf-8")
        plot_family(results["hypotheses"], tmp)
        for s, info in results["settings"].items():
            if info["rows"]:
                (tmp / s).mkdir()
                plot_errorbars(info["rows"], found[s], tmp / s, PLOT_TASKS)
        swap_in_dir(tmp, final)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    done = sum(b["evaluated"] for b in results["blocks"])
    log(f"== report in {final} ({done} of {sum(b['planned'] for b in results['blocks'])} runs evaluated)")
    return final
