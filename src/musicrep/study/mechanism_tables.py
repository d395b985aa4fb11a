"""results.md of the mechanism study, from its results.json content
(musicrep.study.mechanism_report): which runs exist, the manipulation checks, H1-H4 and
the plan's decision, the reading the plan's rule gives, the exploratory contrasts, and
per setting every model's rows, per-seed values and training runs."""

from __future__ import annotations

from typing import Any

from ..evaluation.report import GENERATED_NOTE
from ..model.layers import DEFAULT_LAYER
from .analysis import Finished
from .checks import format_checks
from .plan import LAYERS
from .report import _cell, _interval, _num, _p, _runs_table, _table, _task_tables, label


def _runs_section(results: dict[str, Any]) -> list[str]:
    """Which runs exist, block by block (the plan's order)."""
    rows = [[b["block"], str(b["planned"]), str(b["evaluated"]),
             ", ".join(b["missing"]) if b["missing"] else ""] for b in results["blocks"]]
    return ["## Which runs exist\n",
            "The runs go block by block in this order, seed by seed inside a block, so a study "
            "stopped early has every earlier block complete. A run counts once trained to the "
            "budget and evaluated.\n",
            _table(["block", "planned", "evaluated", "missing"], rows),
            "\n```\n" + results["plan_text"] + "\n```\n"]


def _checks_section(results: dict[str, Any]) -> list[str]:
    """The manipulation checks of each setting, and the shared splits."""
    out = ["## Manipulation checks (view inputs alone, before training)\n"]
    for s, info in results["settings"].items():
        if info["checks"]:
            out.append(f"### {s}\n\n" + format_checks(info["checks"]).replace(
                info["checks"]["dataset"], f"STUDY_DIR/{s}/data/dataset") + "\n")
    for g in results["splits"]:
        out.append(f"- Settings {' and '.join(g['settings'])}: splits.json "
                   f"{'identical (checked)' if g['equal'] else '**differ**'}.")
    return out


def _family_section(results: dict[str, Any]) -> list[str]:
    """H1-H4: the tests, Holm and the decision; and each hypothesis's per-seed contrasts."""
    head = ["hypothesis", "quantity", "seeds", "estimate", "bootstrap 95%", "boot p", "seed t p",
            "Holm p", "TOST p (margin)", "Holm TOST p", "verdict"]
    rows, seeds_rows = [], []
    for r in results["hypotheses"]:
        tost = "" if r["tost_p"] is None else f"{_p(r['tost_p'])} (±{r['margin']:g})"
        rows.append([r["name"], f"{r['words']} ({r['metric']}, {r['layer']})",
                     ", ".join(map(str, r["seeds"])), _num(r["estimate"], "+.4f"),
                     _interval(r["ci_low"], r["ci_high"]), _p(r["boot_p"]), _p(r["seed_p"]),
                     _p(r.get("p_holm")), tost, _p(r.get("tost_p_holm")), f"**{r['verdict']}**"])
        seeds_rows.append([r["name"], " ".join(f"{x:+.4f}" for x in r["seed_diffs"] or []),
                           _num(r["seed_sd"], ".4f"), _interval(r["seed_low"], r["seed_high"]),
                           _p(r["seed_p_up"]), r["why"] or ""])
    return ["\n## The pre-registered family H1-H4 (layer z_d, test tracks)\n",
            f"Seed-level p: paired t-test over seeds of the per-seed contrasts, two-sided as "
            f"PLAN.md pre-registers; Holm over the four at α = {results['alpha']:g} (a hypothesis "
            "that could not be tested counts as p = 1); TOST and its Holm likewise. Supported: "
            "Holm p < α, the bootstrap interval excludes 0 and both point up; absent: the interval "
            "inside the margin and Holm TOST p < α; contrary: both agree downwards; else "
            "inconclusive.\n",
            _table(head, rows),
            "\nPer-seed contrasts (seed order as listed above), their sd, the seed-level 95% "
            "t-interval and the one-sided p (up; for information, not used by the decision):\n",
            _table(["hypothesis", "per-seed contrast", "sd", "t 95%", "one-sided p", "note"], seeds_rows),
            "\nThe reading PLAN.md pre-registers, applied to these verdicts:\n",
            "\n".join(f"- {line}" for line in results["reading"]) + "\n"]


def _exploratory_section(results: dict[str, Any]) -> list[str]:
    """Every exploratory contrast, uncorrected."""
    head = ["contrast", "metric", "layer", "seeds", "estimate", "bootstrap 95%", "boot p", "seed t p",
            "TOST p", "tests say (uncorrected)"]
    rows = [[r["name"], r["metric"], r["layer"], ", ".join(map(str, r["seeds"])),
             _num(r["estimate"], "+.4f"), _interval(r["ci_low"], r["ci_high"]), _p(r["boot_p"]),
             _p(r["seed_p"]), _p(r["tost_p"]), r["tests"]] for r in results["exploratory"]]
    return ["\n## Exploratory (uncorrected, no decision)\n",
            "The family in G2 and on layer z, H4 on the niche genres, the 2-term model, "
            "continuation and tagging, each model against the untrained floor. \"bootstrap only\" / "
            "\"seeds only\": one of the two tests alone sees a difference.\n",
            _table(head, rows) if rows else "(none has runs yet)\n"]


def _seed_table(per_seed: dict[str, Any], layer: str) -> str:
    """Per model and seed the key metrics on one layer."""
    metrics = list(next(iter(per_seed.values()))[layer]) if per_seed else []
    rows = []
    for model, layers in per_seed.items():
        seeds = sorted({s for v in layers[layer].values() for s in v}, key=int)
        for seed in seeds:
            rows.append([label(model), seed] + [_num(layers[layer][m].get(seed), ".3f") for m in metrics])
    return _table(["model", "seed", *metrics], rows)


def _setting_section(s: str, info: dict[str, Any], runs: list[dict[str, Any]]) -> list[str]:
    """One setting: data, every model's summary rows per layer, per-seed values, runs."""
    out = [f"\n## Setting {s}\n",
           f"Split {info['splits']} tracks; {info['playlists']} scored playlists. Mean ± std over "
           "seeds [95% two-level bootstrap interval].\n"]
    for layer in LAYERS:
        what = "128-d projection, the default" if layer == DEFAULT_LAYER else "CNN output"
        out.append(f"\n### {s}, layer {layer} ({what})\n")
        out += _task_tables(info["rows"], layer, "model", _cell)
    if info["per_seed"]:
        out.append(f"\n### {s}: per-seed values, layer {DEFAULT_LAYER}\n\n"
                   + _seed_table(info["per_seed"], DEFAULT_LAYER))
    found = [Finished(r["model"], r["seed"], r["rows"], {},
                      {k: r.get(k) for k in ("lr", "training", "train_s", "eval_s", "late_gain")})
             for r in runs if r["setting"] == s]
    out.append(f"\n### {s}: training runs\n")
    out += _runs_table(found)
    return out


def format_mechanism(results: dict[str, Any]) -> str:
    """results.md: every section above, in reading order."""
    parts = ["# The mechanism study: does the 3-term model's gain come from views that do not nest? "
             "(generated corpora)\n", GENERATED_NOTE + "\n",
             f"Pre-registered in `{results['pre_registration']}` (hypotheses, tests, margins, decision "
             "rule, budget and its Deviations). The figure `hypotheses.png` shows H1-H4; "
             "`<setting>/errorbars_*.png` every model per setting.\n"]
    parts += _runs_section(results)
    parts += _checks_section(results)
    parts += _family_section(results)
    parts += _exploratory_section(results)
    for s, info in results["settings"].items():
        parts += _setting_section(s, info, results["runs"])
    parts.append("\n## Method\n\nThe contrasts: `musicrep.study.hypotheses`; the bootstrap, the "
                 "seed-level tests and Holm: `musicrep.study.stats`; the runs and their order: "
                 "`musicrep.study.mechanism` and `musicrep.study.mechanism_plan`.\n")
    return "\n".join(parts)
