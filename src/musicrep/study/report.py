"""The study's report: results.md, results.csv and results.json, reanalysis.md and
reanalysis.json (seed-level tests of the reading's claims), one error-bar plot per layer
and task, the published copy (``--publish``) and the hand-written reading
(``--reading``), all from the finished runs (musicrep.study.analysis); or, for a study
whose run folder is gone, everything but results.json/.csv again from its results.json
(``reanalyse_results``, ``--reanalyse``).

The corpus is generated: the numbers say what the objectives do on data with planted
structure, nothing about real music, and the models are useless for real music.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..evaluation.report import GENERATED_NOTE
from ..evaluation.tasks import TASK_COLUMNS
from ..model.layers import DEFAULT_LAYER
from ..io import atomic_path, swap_in_dir, temp_dir_beside, write_json
from ..layout import GENERATED_MARKER, MANIFEST, SPLITS
from . import stats
from .analysis import (LATE_EPOCHS, Finished, collect, compute_statistics, metric_columns, reanalyse,
                       train_seconds)
from .directory import Layout, StudyError, log
from .plan import LAYERS, POPULARITY, RANDOM, REFERENCE, Plan

READING_PLACEHOLDER = (
    "<!-- READING: placeholder. The integrator writes the reading of the full study here "
    "(which differences are outside noise, what the corpus plants, whether the paper's "
    "claim holds on it). -->\n_The reading of these results is not written yet._"
)


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


#: how a reference row is named in tables and plots: the popularity counts include the
#: evaluated playlists, so it is an oracle, not a model to beat
LABELS = {POPULARITY: "popularity (oracle)"}
ORACLE_NOTE = ("`popularity (oracle)`: the test tracks ranked (continuation), and every tag "
               "scored (tagging), by their playlist count, which includes the evaluated "
               "playlists: an upper reference that no model could use, not a comparator.")


def label(model: str) -> str:
    """The name a row is shown under (``LABELS``)."""
    return LABELS.get(model, model)


def _task_tables(records: list[dict], layer: str, name: str, cell: Any) -> list[str]:
    """One markdown table per task of the records (summary rows or comparisons) of a layer;
    a task none of them has a value for is left out."""
    out = []
    for task, cols in TASK_COLUMNS.items():
        rows = [[label(r[name]), str(r["n_seeds"])] + [cell(r[c]) for c in cols]
                for r in records if r["layer"] == layer and any(r[c] for c in cols)]
        if rows:
            out.append(f"\n{task}\n\n" + _table([name, "seeds", *cols], rows))
    return out


def _num(v: float | None, fmt: str = "+.3f") -> str:
    return "" if v is None else format(v, fmt)


def _p(v: float | None) -> str:
    return "" if v is None else f"{v:.3g}"


def _interval(lo: float | None, hi: float | None) -> str:
    return "" if lo is None else f"[{lo:+.3f}, {hi:+.3f}]"


def family_table(rows: list[dict]) -> str:
    """The claims of the family on one layer: the claim, the bootstrap, the seed-level
    tests, the Holm-adjusted p and the decision."""
    head = ["claim (reference vs row)", "metric", "row", "claimed", "difference", "bootstrap 95%",
            "seed t p", "TOST p (margin)", "Holm p", "supported"]
    out = []
    for c in rows:
        tost = "" if c["tost_p"] is None or c["claim"] != "equivalent" else f"{c['tost_p']:.3g} (±{c['margin']:g})"
        holds = {True: "**yes**", False: f"no ({c['decision']})"}.get(c.get("holds"), c["decision"])
        out.append([c["words"], c["metric"], label(c["versus"]), c["claim"], _num(c["diff"]),
                    _interval(c["boot_low"], c["boot_high"]), _p(c["seed_p"]), tost,
                    _p(c["p_holm"]), holds])
    return _table(head, out)


def comparison_table(rows: list[dict]) -> str:
    """Every comparison of one layer and metric, uncorrected (exploratory)."""
    head = ["reference minus", "difference", "bootstrap 95%", "boot p", "seed diffs", "seed t p",
            "seed t 95%", "TOST p", "verdict (uncorrected)"]
    out = [[label(c["versus"]), _num(c["diff"]), _interval(c["boot_low"], c["boot_high"]),
            _p(c["boot_p"]), " ".join(f"{x:+.3f}" for x in c["seed_diffs"] or []), _p(c["seed_p"]),
            _interval(c["seed_low"], c["seed_high"]), _p(c["tost_p"]), c["verdict"]] for c in rows]
    return _table(head, out)


def format_report(plan: Plan, grid: dict, summary: list[dict], comparisons: list[dict],
                  found: list[Finished], missing: list[str], data_info: dict, budget: dict,
                  reading: str | None = None, reanalysis: dict | None = None) -> str:
    """results.md: setup, lr grid, per layer the results and paired differences, the
    seed-level tests of the reading's claims (``reanalysis``), runs, method and reading."""
    parts = ["# The study: paired comparisons over seeds and test items (generated corpus)\n",
             GENERATED_NOTE + "\n"]
    parts.append("## Setup\n")
    parts.append(_setup(plan, data_info, budget))
    parts.append("### Learning rate grid (seed %d, best validation loss)\n" % plan.seeds[0])
    parts.append(_grid_table(grid))
    if missing:
        parts.append(f"\n**Missing ({len(missing)}, left out of every table):** {', '.join(missing)}\n")

    for layer in LAYERS:
        what = "128-d projection, the default" if layer == DEFAULT_LAYER else "CNN output before the projection"
        parts.append(f"\n## Results, layer {layer} ({what})\n")
        parts += _task_tables(summary, layer, "model", _cell)
        if any(r["model"] == POPULARITY and r["layer"] == layer for r in summary):
            parts.append("\n" + ORACLE_NOTE + "\n")
        parts.append(f"\n### Paired differences, {REFERENCE} minus row (layer {layer})\n")
        parts += _task_tables(comparisons, layer, "versus", _diff_cell)
    if reanalysis is not None:
        parts.append(format_family(reanalysis))

    parts.append("\n## Runs\n")
    parts += _runs_table(found)
    parts.append("\n## Method\n\n" + stats.__doc__.split("\n\n", 1)[1].strip() + "\n")
    parts.append("\n## Reading\n\n" + (reading.strip() if reading else READING_PLACEHOLDER) + "\n")
    return "\n".join(parts)


def _setup(plan: Plan, data_info: dict, budget: dict) -> str:
    """The Setup section: data origin, runs, budget and statistics."""
    gen = data_info.get("generator") or {}
    return (
        f"- Data origin: generated by `{gen.get('generator', 'musicrep.toy.melon.make_toy_melon')}` "
        f"(seed {gen.get('seed', plan.data_seed)}, {plan.songs} songs, {plan.playlists} playlists, "
        f"no defects); split {data_info.get('splits')} tracks (test {plan.test_size:g}, "
        f"val {plan.val_size:g} of the rest); {data_info.get('playlists')} test playlists scored.\n"
        f"- Runs: {', '.join(plan.configs)}; seeds {plan.seeds}; width {plan.width:g} (the paper: 1.0), "
        f"batch {plan.batch_size}, bf16 {plan.bf16} (resolved: {budget.get('bf16')}), at most "
        f"{plan.max_epochs} epochs with early stopping (patience {plan.patience}, not before epoch "
        f"{plan.min_epochs}) on validation "
        f"loss{_selection(plan)}; each run is evaluated with its best-by-validation encoder.\n"
        f"- Budget: plan '{plan.name}'; training {budget['train_h']:.2f} h and evaluation "
        f"{budget['eval_h']:.2f} h of measured time ({budget['runs']} training runs, "
        f"{budget['epochs']} epochs in all).\n"
        f"- Statistics: mean ± std over seeds [95% interval]; the interval is a two-level "
        f"bootstrap ({plan.n_boot} replicates, seed {plan.stats_seed}) over test items (tracks "
        f"for genre, tagging and mood; playlists{_clustered(plan)} for continuation) and seeds. "
        f"Differences are "
        f"{REFERENCE} minus the row, paired over the same items and seeds, with a percentile "
        f"bootstrap p-value (smallest possible {2 / (plan.n_boot + 1):.3g}). See below.\n")


def _selection(plan: Plan) -> str:
    """What the validation loss was (nothing to add for the sum of every term)."""
    return " (its terms with the audio view: select_on \"audio\")" if plan.select_on == "audio" else ""


def _clustered(plan: Plan) -> str:
    return (" with their shared held-out tracks (two-way)" if plan.playlist_resampling == "clustered"
            else "")


def format_family(re: dict) -> str:
    """results.md's section on the reading's claims: the family on each layer."""
    parts = ["\n## The reading's claims, tested at the seed level\n",
             f"Each claim of the family (`musicrep.study.analysis.FAMILY`) is supported only "
             f"when the paired bootstrap interval and the seed-level test agree, the latter "
             f"Holm-adjusted over the family at {re['alpha']:g}: a difference needs the interval to "
             f"exclude 0 and the paired t-test over seeds; \"equivalent\" needs the interval "
             f"inside the margin and two one-sided t-tests over seeds (TOST). Margins: "
             + ", ".join(f"{m} ±{v:g}" for m, v in re["margins"].items())
             + ". Every comparison, uncorrected, and the noise table: `reanalysis.md`.\n"]
    for layer, rows in re["family"].items():
        held = sum(1 for c in rows if c.get("holds"))
        tested = sum(1 for c in rows if "holds" in c)
        parts.append(f"\nLayer {layer}: {held} of {tested} claims supported.\n\n" + family_table(rows))
    return "\n".join(parts)


def format_reanalysis(re: dict, results: dict, summary: list[dict]) -> str:
    """reanalysis.md: what was redone and what could not be, the family of claims on each
    layer, tagging beside the popularity oracle, seeds against items, every comparison."""
    plan = results["plan"]
    ref = re["reference"]
    parts = ["# The study re-analysed: seed-level tests, Holm, equivalence margins\n",
             GENERATED_NOTE + "\n",
             "Made by `python scripts/study.py --reanalyse results.json` from the per-run values "
             "results.json keeps (every seed's full-test metrics, the bootstrap's paired intervals); "
             "no run is trained or evaluated again, and the same file gives the same tables.\n",
             "## What is redone, and what cannot be\n",
             f"- Differences are `{ref}` minus the row, per seed (the same seed numbers paired) "
             f"and as the bootstrap's paired difference of seed means. Seeds: {plan['seeds']}.",
             "- Seed level: a paired t-test over the seeds' full-test differences "
             f"({len(plan['seeds']) - 1} degrees of freedom), two-sided; equivalence by two one-sided "
             "t-tests (TOST) against the margin. The bootstrap: the committed two-level interval and "
             "p (its seed level has few distinct draws with three seeds and understates the seed "
             "variance by (S-1)/S, so it alone is too sure).",
             f"- A difference is supported when the bootstrap's 95% interval excludes 0 *and* the "
             f"seed-level test gives p < {re['alpha']:g} in the same direction; \"equivalent\" when "
             "the interval lies inside the margin *and* TOST gives p < "
             f"{re['alpha']:g}. Margins (smallest differences of interest): "
             + ", ".join(f"{m} ±{v:g}" for m, v in re["margins"].items()) + "; genre PR-AUC has none.",
             "- The family: every comparison the first reading called a difference or \"no "
             "difference\" (`musicrep.study.analysis.FAMILY`, below), Holm-adjusted together at "
             f"{re['alpha']:g}; its claims against the popularity oracle are dropped (an oracle is "
             "not a comparator).",
             "- Cannot be redone: the per-item outputs (each run's eval.npz) lived in the study "
             "directory, which is gone, so the bootstrap is not rerun. In particular the "
             "continuation intervals treat playlists as independent although many share "
             "held-out tracks (too narrow); the clustered resampling "
             "(`stats.clustered_playlist_weights`) is the plan's default for new studies and "
             "needs those outputs.",
             f"- The first pass (before `min_epochs`): {FIRST_PASS}",
             f"- Selection: these runs picked best.pt, early stopping and the lr grid on the summed "
             f"validation loss (select_on \"{plan.get('select_on', 'sum')}\"); new studies use "
             "\"audio\", the terms with the audio view.\n"]
    for layer, rows in re["family"].items():
        held = sum(1 for c in rows if c.get("holds"))
        tested = sum(1 for c in rows if "holds" in c)
        parts.append(f"## The family of claims, layer {layer}: {held} of {tested} supported\n")
        parts.append(family_table(rows))
    parts.append(_tagging_section(re, summary))
    parts.append(_noise_section(re))
    parts.append("## Every comparison (uncorrected: exploratory)\n")
    parts.append("Verdicts without Holm's correction; \"bootstrap only\": the interval excludes 0 "
                 "but the seed-level test does not agree; \"seeds only\": the reverse.\n")
    for layer in results["layers"]:
        for metric in re["metrics"]:
            rows = [c for c in re["comparisons"] if c["layer"] == layer and c["metric"] == metric]
            if rows:
                parts.append(f"\n### {metric}, layer {layer}\n\n" + comparison_table(rows))
    return "\n".join(parts) + "\n"


def _tagging_section(re: dict, summary: list[dict]) -> str:
    """Tagging beside the popularity oracle: the tag labels are a popularity proxy."""
    layer = re["claim_layer"]
    cols = TASK_COLUMNS["tagging"]
    rows = [[label(r["model"]), str(r["n_seeds"])] + [_cell(r.get(c)) for c in cols]
            for r in summary if r["layer"] == layer and r.get(cols[0])]
    pop = re["popularity_tags"] or {}
    text = ["\n## Tagging beside the popularity oracle\n"]
    if not pop:
        text.append("The study did not score the popularity oracle on tags, and no "
                    f"{POPULARITY_TAGS} lies beside results.json (`--popularity-corpus` makes it).\n")
    else:
        rho = pop.get("spearman_tag_count_playlist_count")
        text.append(
            "A track's tags are those of the playlists that hold it, so the number of its tags "
            "follows its playlist count" + (f" (Spearman {rho:.2f} over the test tracks)" if rho is not None else "")
            + ": scoring every tag by the playlist count alone (`popularity (oracle)`, "
            + (pop.get("how") or "") + ") beats every model on tag ROC-AUC. The tagging task "
            "here measures popularity more than tags.\n")
    text.append(f"Layer {layer}; mean ± std over seeds [95% interval]:\n\n"
                + _table(["model", "seeds", *cols], rows))
    return "\n".join(text)


def _noise_section(re: dict) -> str:
    """Per trained model and metric: the seeds' std and their share of the interval."""
    metrics = ("genre_roc_auc", "tag_roc_auc", "ndcg@100", "mood_r2")
    text = ["\n## Seeds against test items\n",
            "Per model: the seeds' std, and 1.96 x std / sqrt(seeds) over the interval's "
            "half-width (\"seed share\"): near or above 1 the seeds, not the test items, set the "
            "interval.\n"]
    for layer, rows in re["noise"].items():
        models = list(dict.fromkeys(r["model"] for r in rows))
        cell = {(r["model"], r["metric"]): r for r in rows}
        body = []
        for m in models:
            line = [label(m)]
            for metric in metrics:
                r = cell.get((m, metric))
                line.append("" if r is None else f"{r['std']:.3f} ({r['seed_share']:.2f})"
                            if r["seed_share"] is not None else f"{r['std']:.3f}")
            body.append(line)
        text.append(f"\nLayer {layer}: std over seeds (seed share)\n\n"
                    + _table(["model", *metrics], body))
    return "\n".join(text)


def _grid_table(grid: dict) -> str:
    """The lr grid: per family each lr's best validation loss, the chosen one marked."""
    rows = []
    for family, g in grid.items():
        for r in g["grid"]:
            mark = " (chosen)" if r["lr"] == g["chosen"] else ""
            rows.append([family, g["config"], f"{r['lr']:g}{mark}",
                         "" if r["best_val_loss"] is None else f"{r['best_val_loss']:.4f}",
                         str(r["best_epoch"]), str(r["epochs_run"])])
    return _table(["family", "config", "lr", "best val loss", "best epoch", "epochs run"], rows)


def _runs_table(found: list[Finished]) -> list[str]:
    """The Runs section's note and table: each trained run's epochs, loss and time."""
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
    note = (f"'last {LATE_EPOCHS}': the share of the run's validation-loss improvement (first "
            f"epoch to best) made in its last {LATE_EPOCHS} epochs; near 0% the loss had "
            "flattened, a large share means the epoch cap stopped a run still improving.\n")
    return [note, _table(["config", "seed", "lr", "epochs run", "best epoch", "stopped early",
                          "best val loss", f"last {LATE_EPOCHS}", "train s"], rows)]


def write_csv(path: Path, summary: list[dict], keys: tuple[str, ...] = ("model", "layer", "n_seeds")) -> None:
    """results.csv: per model and layer (the row's ``keys``) each metric's mean, std and interval."""
    cols = metric_columns()
    buf = [",".join(keys) + "," + ",".join(f"{c}_{k}" for c in cols for k in ("mean", "std", "ci_low", "ci_high"))]
    for r in summary:
        cells = [str(r[k]) for k in keys]
        for c in cols:
            v = r[c] or {}
            cells += ["" if v.get(k) is None else repr(float(v[k])) for k in ("mean", "std", "ci_low", "ci_high")]
        buf.append(",".join(cells))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(buf) + "\n", encoding="utf-8")


def plot_errorbars(summary: list[dict], found: list[Finished], out: Path,
                   tasks: tuple[str, ...] | None = None) -> list[Path]:
    """One figure per layer and task (``tasks``, default every task): mean with the 95%
    interval, seeds as dots."""
    from ..evaluation.report import pyplot, save_figure

    plt = pyplot()
    written = []
    for layer in LAYERS:
        for task, cols in TASK_COLUMNS.items():
            if tasks is not None and task not in tasks:
                continue
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
                ax.set_xticks(x, [label(r["model"]) for r in have], rotation=60, ha="right", fontsize="small")
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


def dataset_manifest(layout: Layout, root: Path | None = None) -> dict:
    """The dataset's manifest, its paths inside the study directory (``root``, default
    the layout's) saying STUDY_DIR ({} when there is none)."""
    manifest = {}
    if (layout.dataset / MANIFEST).is_file():
        # the report is committed: paths inside the study directory say STUDY_DIR, not
        # where this machine keeps it
        raw = (layout.dataset / MANIFEST).read_text()
        where = Path(root if root is not None else layout.root).resolve()
        raw = raw.replace(json.dumps(str(where))[1:-1], "STUDY_DIR")
        manifest = json.loads(raw)
    return manifest


def measured_budget(layout: Layout, found: list[Finished]) -> dict[str, Any]:
    """Measured training and evaluation hours, runs and epochs, and the bf16 the runs used."""
    trained = [f for f in found if f.info.get("training")]
    first_cfg = next((layout.run(f.model, f.info["lr"], f.seed) / "config.json" for f in trained), None)
    bf16 = json.loads(first_cfg.read_text()).get("bf16_resolved") if first_cfg else None
    all_runs = list(layout.runs.glob("*/lr*/seed*/metrics.csv"))
    return {
        "train_h": sum(train_seconds(p) or 0.0 for p in all_runs) / 3600,
        "eval_h": sum(f.info.get("eval_s") or 0.0 for f in found) / 3600,
        "runs": len(all_runs),
        "epochs": sum(max(0, len(p.read_text().splitlines()) - 1) for p in all_runs),
        "bf16": bf16,
    }


def publish_report(out: Path, publish: Path) -> None:
    """Copy report/ to ``publish`` (the committed copy, e.g. reports/study)."""
    publish.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir_beside(publish)
    shutil.copytree(out, tmp, dirs_exist_ok=True)
    swap_in_dir(tmp, publish)  # the previous copy is replaced only once this one is whole
    log(f"== report copied to {publish}")


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
    held = held_out_tracks(layout) if plan.playlist_resampling == "clustered" else None
    summary, comparisons = compute_statistics(found, plan, held)
    manifest = dataset_manifest(layout)
    gen_path = layout.melon / GENERATED_MARKER
    budget = measured_budget(layout, found)
    data_info = {
        "generator": json.loads(gen_path.read_text()) if gen_path.is_file() else None,
        "splits": {s: (manifest.get("counts") or {}).get(f"{s}_tracks") for s in SPLITS},
        "playlists": len(next(f.items[LAYERS[0]]["recall@100"] for f in found)),
    }
    runs = [{"model": f.model, "seed": f.seed, "lr": f.info.get("lr"), "training": f.info.get("training"),
             "train_s": f.info.get("train_s"), "eval_s": f.info.get("eval_s"),
             "late_gain": f.info.get("late_gain"),
             "rows": f.rows} for f in found]
    results = {
        "generated_corpus": True, "note": GENERATED_NOTE, "plan": asdict(plan), "data": data_info,
        "dataset_manifest": manifest, "lr_grid": grid, "budget": budget, "layers": list(LAYERS),
        "reference": REFERENCE, "missing": missing, "rows": summary, "comparisons": comparisons,
        "runs": runs, "method": "see musicrep.study.stats (two-level bootstrap over test items and seeds)",
        "reading": text,
    }
    out = layout.report
    out.mkdir(parents=True, exist_ok=True)
    write_outputs(out, plan, results, found, text)
    write_csv(out / "results.csv", summary)
    write_json(out / "results.json", results)
    log(f"== report in {out} ({len(found)} evaluated runs, {len(missing)} missing)")
    if publish is not None:
        publish_report(out, Path(publish))
    return out


def held_out_tracks(layout: Layout) -> list[np.ndarray]:
    """The scored playlists' held-out test-track columns, from the study's dataset (what
    the clustered continuation resampling needs)."""
    from ..evaluation.data import load_eval_data
    from .evaluate import playlist_queries

    return playlist_queries(load_eval_data(layout.dataset))[1]


def write_outputs(out: Path, plan: Plan, results: dict, found: list[Finished], reading: str | None,
                  popularity_tags: dict | None = None) -> dict:
    """results.md, reanalysis.md, reanalysis.json and the plots of ``results`` (a
    results.json's content) into ``out``; returns the re-analysis. ``popularity_tags``:
    the popularity oracle's tagging row where the study did not score it."""
    re = reanalyse(results, popularity_tags)
    summary = with_popularity_tags(results["rows"], re["popularity_tags"])
    md = format_report(plan, results["lr_grid"], summary, results["comparisons"], found,
                       results["missing"], results["data"], results["budget"], reading, re)
    with atomic_path(out / "results.md") as tmp:
        tmp.write_text(md, encoding="utf-8")
    with atomic_path(out / REANALYSIS_MD) as tmp:
        tmp.write_text(format_reanalysis(re, results, summary), encoding="utf-8")
    write_json(out / REANALYSIS_JSON, {"generated_corpus": True, "note": GENERATED_NOTE,
                                       "first_pass": FIRST_PASS, **re, "reading": reading})
    plot_errorbars(summary, found, out)
    return re


def with_popularity_tags(rows: list[dict], tags: dict | None) -> list[dict]:
    """The summary rows with the popularity oracle's tagging columns filled in from
    ``tags`` (where the study's own popularity row lacks them)."""
    if not tags:
        return rows
    out = []
    for r in rows:
        if r["model"] == POPULARITY and not r.get(TASK_COLUMNS["tagging"][0]):
            r = {**r, **{c: tags[c] for c in TASK_COLUMNS["tagging"] if c in tags}}
        out.append(r)
    return out


REANALYSIS_MD, REANALYSIS_JSON = "reanalysis.md", "reanalysis.json"
POPULARITY_TAGS = "popularity_tags.json"  # the oracle's tagging row, scored on the regenerated corpus
FIRST_PASS = ("not recorded: the first pass (early stopping with patience 4 alone) was never "
              "written to results.json; the file was first committed after the runs that had "
              "stopped before epoch 15 were resumed under min_epochs, and git history holds no "
              "earlier version (git log reports/study/results.json). Its numbers cannot be published.")


def load_results(path: Path) -> dict:
    """A finished study's results.json; StudyError (one line) when it is not one."""
    try:
        results = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else e.__class__.__name__
        raise StudyError(f"{path}: cannot read a study's results.json ({why})") from None
    need = ("plan", "rows", "comparisons", "runs", "layers", "reference", "lr_grid", "data", "budget")
    if not isinstance(results, dict) or any(k not in results for k in need):
        lacks = [k for k in need if not isinstance(results, dict) or k not in results]
        raise StudyError(f"{path}: not a study's results.json (no {', '.join(map(repr, lacks))})")
    try:
        Plan(**results["plan"])
    except TypeError as e:
        raise StudyError(f"{path}: its 'plan' is not a study plan ({e})") from None
    # A study finished before a task was registered has no column for it: not scored.
    for part in ("rows", "comparisons"):
        for record in results[part] if isinstance(results[part], list) else ():
            if isinstance(record, dict):
                for col in metric_columns():
                    record.setdefault(col, None)
    return results


def reanalyse_results(path: Path, reading: Path | None = None) -> Path:
    """Rebuild results.md, reanalysis.md/.json and the plots beside ``path`` (a finished
    study's results.json) from what it holds: no run is trained or evaluated again, and
    results.json and results.csv are left as they are. The popularity oracle's tagging row
    comes from popularity_tags.json beside it when there is one. ``reading`` replaces the
    reading results.json holds."""
    text = read_reading(reading)
    results = load_results(path)
    out = Path(path).parent
    pop_file = out / POPULARITY_TAGS
    pop = json.loads(pop_file.read_text(encoding="utf-8")) if pop_file.is_file() else None
    found = [Finished(r["model"], r["seed"], r["rows"], {}, {k: r.get(k) for k in
                      ("lr", "training", "train_s", "eval_s", "late_gain")}) for r in results["runs"]]
    write_outputs(out, Plan(**results["plan"]), results, found,
                  text if text is not None else results.get("reading"), pop)
    log(f"== re-analysis of {path} in {out} ({REANALYSIS_MD}, results.md, plots)")
    return out
