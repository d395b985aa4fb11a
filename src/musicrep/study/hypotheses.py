"""The mechanism study's hypotheses (reports/mechanism/PLAN.md, "Hypotheses" and "Tests
and decision rule"), computed from the runs' per-item arrays.

Each quantity is a contrast: a signed sum of terms, a term being one model's metric in
one setting, on every test track or on a slice of them (``evaluation.slices``). H1 is
Δ_G1(3-term, contrastive_MF) in true-genre ROC-AUC; H3 is that minus the same in G0
(paired by seed: the same seed, the same test tracks); H4 is that on the bottom
popularity tercile minus on the top one. For every contrast, over the seeds that all its
terms have:

* seed level: the per-seed contrast of the full-test values, a paired t-test over seeds
  (``stats.seed_ttest``, two-sided, as the plan pre-registers), and TOST against the
  margin (``stats.tost``);
* bootstrap: the same contrast per replicate with the same item weights for every term
  (``analysis.item_weights``; G0 and G1 share their test tracks, so their weights are the
  same), a slice taken inside each replicate, and the same seed draws
  (``analysis.seed_draws_for``): the 95% percentile interval and its p (``stats.contrast``).

The family H1-H4 is decided by the plan's rule (``decide``): Holm over the four seed-level
p-values and, separately, over the four TOST p-values (a hypothesis that could not be
tested counts as p = 1, so the family stays four); "supported" when the Holm-adjusted
p < 0.05, the interval excludes 0 and both point the predicted way (up); "absent" when
the interval lies inside the margin and the Holm-adjusted TOST p < 0.05; "contrary" when
both tests agree on the opposite direction; "inconclusive" otherwise. Everything else
(``EXPLORATORY``) is reported uncorrected.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..model.layers import DEFAULT_LAYER
from . import stats
from .analysis import ALPHA, MARGINS, Finished, seed_draws_for, verdict
from .mechanism_plan import GNR, MF, T3, TWO
from .plan import LAYERS, RANDOM, Plan

#: the smallest differences of interest (PLAN.md): ±0.01 ROC-AUC, ±0.05 mood R^2
CONTRAST_MARGINS = {**MARGINS, "true_genre_roc_auc": 0.01, "genre_roc_auc": 0.01}
#: the plan's words for the verdict of the seed-level test and the bootstrap together
#: (analysis.verdict): every hypothesis predicts a positive contrast
DECISIONS = {"higher": "supported", "lower": "contrary", "equivalent": "absent"}


@dataclass(frozen=True)
class Term:
    """One model's metric in one setting, on every test track (part None) or a slice."""

    sign: int
    setting: str
    model: str
    part: str | None = None


@dataclass(frozen=True)
class Contrast:
    """A pre-registered (FAMILY) or exploratory quantity: the signed sum of its terms."""

    name: str
    words: str
    metric: str
    terms: tuple[Term, ...]
    layer: str = DEFAULT_LAYER

    @property
    def margin(self) -> float | None:
        return CONTRAST_MARGINS.get(self.metric)


def delta(setting: str, a: str, b: str, part: str | None = None, sign: int = 1) -> tuple[Term, ...]:
    """Δ(a, b): model a minus model b in one setting (``sign`` -1: b minus a)."""
    return Term(sign, setting, a, part), Term(-sign, setting, b, part)


FAMILY: tuple[Contrast, ...] = (
    Contrast("H1", "G1: 3-term minus contrastive_MF, true-genre ROC-AUC", "true_genre_roc_auc",
             delta("G1", T3, MF)),
    Contrast("H2", "G1: 3-term minus contrastive_gnr, mood R^2", "mood_r2", delta("G1", T3, GNR)),
    Contrast("H3", "the H1 gain in G1 minus the same in G0 (paired by seed)", "true_genre_roc_auc",
             delta("G1", T3, MF) + delta("G0", T3, MF, sign=-1)),
    Contrast("H4", "G1: the H1 gain on the bottom popularity tercile minus on the top one",
             "true_genre_roc_auc", delta("G1", T3, MF, "bottom") + delta("G1", T3, MF, "top", -1)),
)


def _in(c: Contrast, setting: str, name: str, layer: str) -> Contrast:
    """``c`` with its G1 terms moved to ``setting`` (G0's stay: H3 in G2 is G2 minus G0)."""
    terms = tuple(replace(t, setting=setting) if t.setting == "G1" else t for t in c.terms)
    return Contrast(name, c.words.replace("G1", setting), c.metric, terms, layer)


def _exploratory() -> tuple[Contrast, ...]:
    out = [replace(h, name=f"{h.name} on z", layer="z") for h in FAMILY if "z" in LAYERS]
    niche = delta("G1", T3, MF, "niche") + delta("G1", T3, MF, "mainstream", -1)
    out.append(Contrast("H4 niche", "G1: the H1 gain on the niche genres' columns minus on the "
                        "mainstream ones", "true_genre_roc_auc", niche))
    for layer in LAYERS:
        suffix = "" if layer == DEFAULT_LAYER else " on z"
        out += [_in(h, "G2", f"{h.name} in G2{suffix}", layer) for h in FAMILY]
    for setting in ("G0", "G1"):
        for metric in ("true_genre_roc_auc", "mood_r2", "ndcg@100", "tag_roc_auc"):
            out.append(Contrast(f"3-term vs 2-term, {setting}", f"{setting}: 3-term minus 2-term "
                                "(the CF-genre term)", metric, delta(setting, T3, TWO)))
    for setting in ("G0", "G1", "G2"):
        for other in (MF, GNR):
            for metric in ("ndcg@100", "tag_roc_auc"):
                out.append(Contrast(f"3-term vs {other}, {setting}", f"{setting}: 3-term minus {other}",
                                    metric, delta(setting, T3, other)))
        for model in (T3, MF, GNR):
            out.append(Contrast(f"{model} vs floor, {setting}", f"{setting}: {model} minus the "
                                "untrained encoder", "true_genre_roc_auc", delta(setting, model, RANDOM)))
    return tuple(out)


#: Secondary quantities (PLAN.md: the family in G2 and on layer z, H4 on niche genres,
#: the 2-term model, continuation and tagging; and every model against the floor), all
#: exploratory: reported with uncorrected tests, no decision.
EXPLORATORY = _exploratory()


class RunValues:
    """Per-seed full-test values and bootstrap replicates of the evaluated runs, by setting,
    model and seed; each (run, layer, metric, slice) is computed once."""

    def __init__(self, found: dict[str, list[Finished]],
                 weights: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        self.runs = {(s, f.model, f.seed): f for s, fs in found.items() for f in fs if f.seed is not None}
        self.weights = weights
        self._cache: dict[tuple, tuple[float, np.ndarray]] = {}

    def seeds(self, setting: str, model: str) -> set[int]:
        return {seed for s, m, seed in self.runs if s == setting and m == model}

    def get(self, term: Term, metric: str, layer: str, seed: int) -> tuple[float, np.ndarray]:
        """(full-test value, (B,) replicates) of one term's run; KeyError when the run's
        arrays lack the metric or the slice."""
        key = (term.setting, term.model, seed, layer, metric, term.part)
        if key not in self._cache:
            items = self.runs[(term.setting, term.model, seed)].items[layer]
            w_t, w_p = self.weights[term.setting]
            ones_t, ones_p = np.ones((1, w_t.shape[1])), np.ones((1, w_p.shape[1]))
            point = stats.column_replicates(items, metric, ones_t, ones_p, term.part)[0]
            self._cache[key] = (float(point), stats.column_replicates(items, metric, w_t, w_p, term.part))
        return self._cache[key]


def evaluate(c: Contrast, values: RunValues, plan: Plan) -> dict[str, Any]:
    """One contrast over the seeds all its terms have: the per-seed values, the seed-level
    t-test (two-sided, and one-sided up for information) and TOST, the bootstrap."""
    from scipy import stats as st

    seeds = sorted(set.intersection(*(values.seeds(t.setting, t.model) for t in c.terms)))
    out: dict[str, Any] = {
        "name": c.name, "words": c.words, "metric": c.metric, "layer": c.layer, "margin": c.margin,
        "terms": [{"sign": t.sign, "setting": t.setting, "model": t.model, "slice": t.part or "all"}
                  for t in c.terms], "seeds": seeds, "estimate": None, "ci_low": None, "ci_high": None,
        "boot_p": None, "seed_diffs": None, "seed_sd": None, "seed_low": None, "seed_high": None,
        "seed_p": None, "seed_p_up": None, "tost_p": None, "why": None}
    try:
        parts = [[values.get(t, c.metric, c.layer, s) for s in seeds] for t in c.terms]
    except KeyError as e:
        out["why"] = f"not scored: the runs' arrays lack {e}"
        return out
    if not seeds:
        out["why"] = "not run: no seed has every run of the contrast"
        return out
    point = sum(t.sign * np.array([v for v, _ in p]) for t, p in zip(c.terms, parts))
    reps = sum(t.sign * np.stack([r for _, r in p]) for t, p in zip(c.terms, parts))
    boot = stats.contrast(point, reps, seed_draws_for(plan, len(seeds)))
    t = stats.seed_ttest(point)
    up = None if t["t"] is None else float(st.t.sf(t["t"], len(seeds) - 1))
    if t["p"] is not None and t["t"] is None:  # every seed gave the same contrast
        up = 0.0 if (t["mean"] or 0) > 0 else 1.0
    out.update(estimate=boot["diff"], ci_low=boot["ci_low"], ci_high=boot["ci_high"],
               boot_p=boot["p_value"], seed_diffs=[float(x) for x in point], seed_sd=t["sd"],
               seed_low=t["ci_low"], seed_high=t["ci_high"], seed_p=t["p"], seed_p_up=up,
               tost_p=stats.tost(point, c.margin) if c.margin else None,
               term_values=[{s: float(v) for s, (v, _) in zip(seeds, p)} for p in parts])
    return out


def _tests(r: dict[str, Any], p_seed: float | None, p_tost: float | None) -> str:
    """analysis.verdict on a contrast's row with the given seed-level and TOST p-values."""
    return verdict({"boot_low": r["ci_low"], "boot_high": r["ci_high"], "diff": r["estimate"],
                    "margin": r["margin"], "tost_p": r["tost_p"], "tost_p_used": p_tost}, p_seed, ALPHA)


def decide(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The plan's decision over the family's rows (``evaluate``): Holm-adjusted p-values
    and each hypothesis's verdict (supported, absent, contrary, inconclusive, not run)."""
    holm = stats.holm([1.0 if r["seed_p"] is None else r["seed_p"] for r in rows])
    holm_tost = stats.holm([1.0 if r["tost_p"] is None else r["tost_p"] for r in rows])
    for r, p, pt in zip(rows, holm, holm_tost):
        r["p_holm"], r["tost_p_holm"] = p, pt
        if r["estimate"] is None:
            r["tests"], r["verdict"] = "not run", "not run"
            continue
        r["tests"] = _tests(r, p, pt)
        r["verdict"] = DECISIONS.get(r["tests"], "inconclusive")
    return rows


def decide_family(values: RunValues, plan: Plan) -> list[dict[str, Any]]:
    """H1-H4 evaluated and decided."""
    return decide([evaluate(h, values, plan) for h in FAMILY])


def explore(values: RunValues, plan: Plan) -> list[dict[str, Any]]:
    """Every exploratory contrast that has runs, with its uncorrected verdict."""
    rows = []
    for c in EXPLORATORY:
        r = evaluate(c, values, plan)
        if r["estimate"] is None:
            continue
        r["tests"] = _tests(r, r["seed_p"], r["tost_p"])
        rows.append(r)
    return rows


def reading(rows: list[dict[str, Any]], planned_seeds: list[int]) -> list[str]:
    """The plan's "Reading", applied to the family's verdicts (no judgement added)."""
    v = {r["name"]: r["verdict"] for r in rows}
    out = []
    if v.get("H1") == "supported" and v.get("H3") == "supported":
        out.append("The mechanism is supported on this generator: H1 and H3 are supported.")
        if v.get("H4") == "supported":
            out.append("H4 is supported as well: the gain comes from the long tail, as the paper argues.")
        if v.get("H2") == "supported":
            out.append("H2 is supported: the CF term brings mood that the genre view lacks.")
    elif v.get("H1") == "supported":
        out.append("H1 is supported without H3: the 3-term gain does not depend on the views not "
                   "nesting, so it is not the paper's mechanism.")
    elif v.get("H1") == "absent":
        out.append("H1 is absent: even with CF noisy in the long tail, adding the genre term does "
                   "not buy true genre over CF alone on this generator.")
    else:
        out.append("No reading of the plan applies: every outcome is reported as measured, without "
                   "a conclusion beyond the tests.")
    short = [r["name"] for r in rows if r["seeds"] != planned_seeds]
    if short:
        out.append(f"Provisional: {', '.join(short)} ran on fewer seeds than the planned "
                   f"{planned_seeds} (the study stopped early, or is still running).")
    return out
