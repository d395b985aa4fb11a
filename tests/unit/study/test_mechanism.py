"""The mechanism study (reports/mechanism/PLAN.md): the run order (the pre-registered family
first, seed by seed), the plan files, and H1-H4 on hand-made per-item arrays: a planted
difference is found with its sign, the slices and the difference in differences are
resampled as the plan says, Holm runs over the four, and the decision rule gives
supported / absent / contrary / inconclusive. The whole pipeline on a tiny plan is the
slow test at the end (``make mechanism STUDY_SMOKE=1`` runs the full smoke)."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import numpy as np
import pytest

from musicrep.cli.study import main
from musicrep.evaluation.slices import TrackSlices, auc_by_slice, r2_by_slice
from musicrep.study import stats
from musicrep.study.analysis import Finished
from musicrep.study.directory import Layout, StudyError
from musicrep.study.hypotheses import (
    EXPLORATORY,
    FAMILY,
    RunValues,
    decide,
    decide_family,
    explore,
    reading,
)
from musicrep.study.mechanism_plan import (
    FULL_MECHANISM,
    GNR,
    MF,
    SMOKE_MECHANISM,
    T3,
    TWO,
    check_mechanism_plan,
    describe_mechanism,
    estimate_mechanism,
    load_mechanism_plan,
    run_order,
    setting_plan,
)
from musicrep.study.plan import FULL, RANDOM, check_plan, load_plan

N_TEST, N_PL, C, B = 300, 12, 4, 400
PLAN = replace(FULL_MECHANISM.budget, n_boot=B)


# ------------------------------------------------------------------ the plan and its order


def test_the_family_runs_first_and_seed_by_seed():
    order = run_order(FULL_MECHANISM)
    blocks = [r.block for r in order]
    assert blocks == sorted(blocks, key=[b["name"] for b in FULL_MECHANISM.blocks].index)
    primary = [r for r in order if r.block == "primary"]
    assert len(primary) == 25 and order[:25] == primary
    # seed by seed: every comparison of seed k is complete before seed k+1 starts
    assert [r.seed for r in primary] == [s for s in range(5) for _ in range(5)]
    assert {(r.setting, r.config) for r in primary[:5]} == {
        ("G1", T3), ("G1", MF), ("G1", GNR), ("G0", T3), ("G0", MF)}
    trainings = [r for r in order if r.config != RANDOM]
    floors = [r for r in order if r.config == RANDOM]
    assert len(trainings) == 43 and len(floors) == 15 and len(set(order)) == len(order)
    # PLAN.md's seeds: 5 for the family's models, 3 for the rest, a floor per setting and seed
    g0 = setting_plan(FULL_MECHANISM, "G0")
    assert g0.preset == "G0" and g0.configs == [T3, MF, GNR, TWO] and g0.seeds == [0, 1, 2, 3, 4]
    assert {r.seed for r in order if (r.setting, r.config) == ("G2", GNR)} == {0, 1, 2}


def test_the_budget_is_the_deviation_of_plan_md():
    p = FULL_MECHANISM.budget
    assert (p.songs, p.playlists, p.test_size, p.val_size, p.cf_factors, p.cf_epochs) == (
        2000, 1000, 0.2, 0.1, 300, 50)
    assert (p.width, p.batch_size, p.bf16, p.select_on, FULL_MECHANISM.learning_rate) == (
        0.125, 32, False, "audio", 1e-3)
    assert p.max_epochs == p.patience == p.min_epochs == 20  # fixed: no early stop
    # PLAN.md "Deviations", the gate (2026-11-28): lifted for the full run, reported instead
    assert not FULL_MECHANISM.gate and not SMOKE_MECHANISM.gate
    text = describe_mechanism(FULL_MECHANISM)
    assert "1. primary" in text and "in all ~" in text
    est = estimate_mechanism(FULL_MECHANISM)
    assert est["total_s"] > est["blocks"][0]["s"] > 0
    done = set(run_order(FULL_MECHANISM)[:25])
    assert estimate_mechanism(FULL_MECHANISM, done=done)["left_s"] < est["total_s"] - est["blocks"][0]["s"] + 1


def test_plan_files_refuse_another_plan(tmp_path):
    check_mechanism_plan(tmp_path, FULL_MECHANISM)
    check_mechanism_plan(tmp_path, FULL_MECHANISM)  # the same plan: accepted
    assert load_mechanism_plan(tmp_path) == FULL_MECHANISM
    with pytest.raises(StudyError, match="differs in 'blocks'"):
        check_mechanism_plan(tmp_path, replace(FULL_MECHANISM, blocks=FULL_MECHANISM.blocks[:1]))
    with pytest.raises(StudyError, match="not a mechanism study"):
        load_mechanism_plan(tmp_path / "nothing")


def test_an_older_study_json_loads_with_the_defaults(tmp_path):
    """A study.json written before a key existed (preset) is the same plan, not another."""
    layout = Layout(tmp_path)
    old = asdict(FULL)
    del old["preset"]
    layout.plan.write_text(json.dumps(old))
    check_plan(layout, FULL)
    assert load_plan(layout).preset == "G0"
    with pytest.raises(StudyError, match="differs in 'preset'"):
        check_plan(layout, replace(FULL, preset="G1"))


# ------------------------------------------------------------------ hand-made runs


def _items(rng: np.random.Generator, truth: dict, noise: float, bottom_noise: float,
           mood_noise: float) -> dict[str, np.ndarray]:
    """One run's per-item arrays: probe scores = labels + noise (more noise, lower AUC)."""
    labels, tercile = truth["labels"], truth["tercile"]
    sd = np.where(tercile == "bottom", bottom_noise, noise)[:, None]
    scores = labels + rng.normal(size=labels.shape) * sd
    return {"true_genre_scores": scores, "true_genre_labels": labels,
            "true_genre_niche": np.array([True, False, False, False]), "tercile": tercile,
            "niche": truth["niche"],
            "mood_true": truth["mood"], "mood_pred": truth["mood"] + rng.normal(size=N_TEST) * mood_noise,
            "ndcg@100": rng.uniform(0.2, 0.3, N_PL)}


def _truth(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"labels": (rng.uniform(size=(N_TEST, C)) < 0.4).astype(np.uint8),
            "tercile": np.repeat(np.array(["top", "middle", "bottom"]), N_TEST // 3),
            "niche": rng.uniform(size=N_TEST) < 0.2, "mood": rng.normal(size=N_TEST)}


# noise per model: (overall, bottom tercile, mood); lower noise, better model
G1_MODELS = {T3: (0.6, 0.6, 0.5), MF: (0.9, 1.6, 0.5), GNR: (0.6, 0.6, 1.5)}
G0_MODELS = {T3: (0.6, 0.6, 0.5), MF: (0.62, 0.62, 0.5)}


def _runs(models: dict, truth: dict, seeds=range(5), offset: int = 0) -> list[Finished]:
    out = []
    for seed in seeds:
        for k, (model, noise) in enumerate(models.items()):
            rng = np.random.default_rng([seed, k, offset])
            items = _items(rng, truth, *noise)
            out.append(Finished(model, seed, {"z_d": {}, "z": {}}, {"z_d": items, "z": items}, {}))
    return out


def _values(found: dict[str, list[Finished]]) -> RunValues:
    rng = np.random.default_rng(0)
    w = (stats.bootstrap_weights(N_TEST, B, rng), stats.bootstrap_weights(N_PL, B, rng))
    return RunValues(found, {s: w for s in found})


@pytest.fixture(scope="module")
def planted() -> list[dict]:
    truth = _truth()
    values = _values({"G1": _runs(G1_MODELS, truth), "G0": _runs(G0_MODELS, truth, offset=1)})
    return decide_family(values, PLAN)


def test_planted_differences_are_found_with_their_sign(planted):
    by = {r["name"]: r for r in planted}
    # H1: the 3-term model is less noisy than contrastive_MF in G1; H2: than gnr on mood
    for name in ("H1", "H2", "H3", "H4"):
        r = by[name]
        assert r["seeds"] == [0, 1, 2, 3, 4] and r["estimate"] > 0, name
        assert r["ci_low"] > 0 and r["seed_p"] < 0.01 and r["verdict"] == "supported", name
        assert r["estimate"] == pytest.approx(np.mean(r["seed_diffs"]))
    # H4 is the gain on the bottom tercile (MF's noise is worst there) minus on the top one
    assert by["H4"]["estimate"] > 0.05
    assert by["H3"]["estimate"] < by["H1"]["estimate"]  # G0's small gain is taken off
    assert reading(planted, [0, 1, 2, 3, 4])[:3] == [
        "The mechanism is supported on this generator: H1 and H3 are supported.",
        "H4 is supported as well: the gain comes from the long tail, as the paper argues.",
        "H2 is supported: the CF term brings mood that the genre view lacks."]


def test_contrasts_are_the_sum_of_their_terms():
    """H3 = Δ_G1 - Δ_G0 seed by seed; H4 = Δ_bottom - Δ_top, with each slice's AUC."""
    truth = _truth()
    found = {"G1": _runs(G1_MODELS, truth, seeds=[0, 1]), "G0": _runs(G0_MODELS, truth, [0, 1], 1)}
    values = _values(found)
    rows = {r["name"]: r for r in decide_family(values, PLAN)}
    from sklearn.metrics import roc_auc_score

    def auc(setting, model, seed, rows_mask=slice(None)):
        f = next(f for f in found[setting] if (f.model, f.seed) == (model, seed))
        y, s = f.items["z_d"]["true_genre_labels"][rows_mask], f.items["z_d"]["true_genre_scores"][rows_mask]
        return np.mean([roc_auc_score(y[:, j], s[:, j]) for j in range(C)])

    bottom, top = truth["tercile"] == "bottom", truth["tercile"] == "top"
    for i, seed in enumerate([0, 1]):
        h1 = auc("G1", T3, seed) - auc("G1", MF, seed)
        assert rows["H1"]["seed_diffs"][i] == pytest.approx(h1)
        assert rows["H3"]["seed_diffs"][i] == pytest.approx(h1 - auc("G0", T3, seed) + auc("G0", MF, seed))
        h4 = (auc("G1", T3, seed, bottom) - auc("G1", MF, seed, bottom)
              - auc("G1", T3, seed, top) + auc("G1", MF, seed, top))
        assert rows["H4"]["seed_diffs"][i] == pytest.approx(h4)


def test_slice_replicates_equal_the_evaluation_breakdown():
    """With weights of one, a sliced replicate is the evaluation's <column>@<slice>."""
    truth = _truth(3)
    items = _items(np.random.default_rng(1), truth, 0.8, 1.2, 0.7)
    slices = TrackSlices(truth["tercile"], truth["niche"], ("GN0100",), "truth")
    by_auc = auc_by_slice(items["true_genre_scores"], items["true_genre_labels"], slices,
                          items["true_genre_niche"])
    by_r2 = r2_by_slice(items["mood_pred"], items["mood_true"], slices)
    ones = np.ones((1, N_TEST))
    for part in ("top", "middle", "bottom", "niche", "mainstream"):
        got = stats.column_replicates(items, "true_genre_roc_auc", ones, None, part)[0]
        assert got == pytest.approx(by_auc[part]), part
        got = stats.column_replicates(items, "mood_r2", ones, None, part)[0]
        assert got == pytest.approx(by_r2[part]), part
    with pytest.raises(ValueError, match="no replicates by slice"):
        stats.column_replicates(items, "ndcg@100", ones, np.ones((1, N_PL)), "top")


def test_identical_models_are_absent_and_a_reversal_is_contrary():
    truth = _truth()
    same = {T3: (0.6, 0.6, 0.5), MF: (0.6, 0.6, 0.5), GNR: (0.6, 0.6, 0.5)}
    found = {"G1": _runs(same, truth), "G0": _runs({T3: same[T3], MF: same[MF]}, truth, offset=1)}
    # the same arrays for every model of a seed: every contrast is exactly 0
    for runs in found.values():
        for f in runs:
            f.items.update(next(g for g in runs if g.seed == f.seed).items)
    rows = {r["name"]: r for r in decide_family(_values(found), PLAN)}
    for name in ("H1", "H2", "H3", "H4"):
        assert rows[name]["estimate"] == 0 and rows[name]["verdict"] == "absent", name
    assert reading(list(rows.values()), [0, 1, 2, 3, 4])[0].startswith("H1 is absent")
    worse = {T3: G1_MODELS[MF], MF: G1_MODELS[T3], GNR: G1_MODELS[GNR]}
    rows = {r["name"]: r for r in decide_family(_values({"G1": _runs(worse, truth)}), PLAN)}
    assert rows["H1"]["estimate"] < 0 and rows["H1"]["verdict"] == "contrary"
    # no G0 run: H3 cannot be tested; it counts as p = 1 in Holm and is "not run"
    assert rows["H3"]["verdict"] == "not run" and rows["H3"]["p_holm"] == 1.0


def _row(name: str, seed_p: float | None, lo: float, hi: float, tost_p: float | None = 0.5) -> dict:
    est = None if seed_p is None else (lo + hi) / 2
    return {"name": name, "estimate": est, "ci_low": lo, "ci_high": hi, "seed_p": seed_p,
            "tost_p": tost_p, "margin": 0.01, "seeds": [0, 1, 2, 3, 4]}


def test_holm_runs_over_the_four_and_both_tests_must_agree():
    rows = decide([_row("H1", 0.01, 0.01, 0.03), _row("H2", 0.02, 0.01, 0.05),
                   _row("H3", 0.04, 0.002, 0.02), _row("H4", 0.001, -0.01, 0.02)])
    # Holm: sorted 0.001, 0.01, 0.02, 0.04 times 4, 3, 2, 1 (monotone)
    assert [r["p_holm"] for r in rows] == pytest.approx([0.03, 0.04, 0.04, 0.004])
    assert [r["verdict"] for r in rows] == ["supported", "supported", "supported", "inconclusive"]
    assert rows[3]["tests"] == "seeds only"  # the interval includes 0: the bootstrap disagrees
    rows = decide([_row("H1", 0.02, 0.01, 0.03), _row("H2", None, 0, 0), _row("H3", 0.5, 0.001, 0.02),
                   _row("H4", 0.5, -0.004, 0.004, tost_p=0.01)])
    assert rows[0]["p_holm"] == pytest.approx(0.08) and rows[0]["verdict"] == "inconclusive"
    assert rows[1]["verdict"] == "not run" and rows[2]["tests"] == "bootstrap only"
    # TOST is Holm-adjusted over the four as well: 0.01 x 4 < 0.05, interval inside ±0.01
    assert rows[3]["tost_p_holm"] == pytest.approx(0.04) and rows[3]["verdict"] == "absent"


def test_reading_follows_the_plan():
    def rows(**v):
        return [{"name": n, "verdict": v.get(n, "inconclusive"), "seeds": [0, 1]} for n in FAMILY_NAMES]

    assert reading(rows(H1="supported"), [0, 1])[0].startswith("H1 is supported without H3")
    assert reading(rows(H1="contrary", H3="supported"), [0, 1])[0].startswith("No reading")
    out = reading(rows(H1="supported", H3="supported"), [0, 1, 2])
    assert len(out) == 2 and out[1].startswith("Provisional")


FAMILY_NAMES = [h.name for h in FAMILY]


def test_exploratory_contrasts_cover_the_plans_secondary_list():
    names = {c.name for c in EXPLORATORY}
    assert {"H1 on z", "H4 niche", "H1 in G2", "H3 in G2", "3-term vs 2-term, G1"} <= names
    h3_g2 = next(c for c in EXPLORATORY if c.name == "H3 in G2")
    assert {t.setting for t in h3_g2.terms} == {"G2", "G0"}
    truth = _truth()
    rows = explore(_values({"G1": _runs(G1_MODELS, truth, seeds=[0, 1])}), PLAN)
    assert rows and all(r["tests"] for r in rows)
    assert {r["name"] for r in rows} >= {"H1 on z", "H4 niche", f"3-term vs {MF}, G1"}


# ------------------------------------------------------------------ the whole pipeline


TINY = replace(
    SMOKE_MECHANISM, name="mechanism-test", settings=["G0", "G1"],
    budget=replace(SMOKE_MECHANISM.budget, songs=420, playlists=200, test_size=0.3, max_epochs=1,
                   patience=1, min_epochs=1, max_steps_per_epoch=1, n_boot=50),
    blocks=[{"name": "primary", "runs": [["G1", T3, [0, 1]], ["G1", MF, [0, 1]], ["G1", GNR, [0, 1]],
                                         ["G0", T3, [0, 1]], ["G0", MF, [0, 1]]]},
            {"name": "floors", "runs": [["G1", RANDOM, [0]]]}],
)


@pytest.mark.slow
def test_tiny_mechanism_end_to_end(tmp_path, monkeypatch, capsys):
    """Data, checks, splits, runs in order, resume, report (a few minutes on 2 cores)."""
    import musicrep.study.mechanism_plan as mp
    from musicrep.study.mechanism import run_mechanism
    from musicrep.study.mechanism_report import write_mechanism_report

    root = tmp_path / "mech"
    run_mechanism(root, TINY, "cpu", progress=False)
    out = write_mechanism_report(root, TINY)
    results = json.loads((out / "results.json").read_text())
    assert [b["evaluated"] for b in results["blocks"]] == [10, 1]
    assert results["splits"] == [{"settings": ["G0", "G1"], "equal": True}]
    assert [r["name"] for r in results["hypotheses"]] == FAMILY_NAMES
    assert all(r["seeds"] == [0, 1] and r["verdict"] for r in results["hypotheses"])
    assert results["settings"]["G1"]["checks"]["preset"] == "G1"
    # H1's bootstrap is the study's paired comparison of the same runs (same weights, draws)
    h1 = results["hypotheses"][0]
    comp = next(c for c in results["settings"]["G1"]["comparisons"]
                if c["versus"] == MF and c["layer"] == "z_d")["true_genre_roc_auc"]
    assert (h1["ci_low"], h1["ci_high"], h1["boot_p"]) == (comp["ci_low"], comp["ci_high"], comp["p_value"])
    assert results["settings"]["G1"]["per_seed"][T3]["z_d"]["true_genre_roc_auc"].keys() == {"0", "1"}
    assert (out / "hypotheses.png").is_file() and (out / "G1" / "errorbars_z_d_true_genre.png").is_file()
    text = (out / "results.md").read_text()
    assert "## Which runs exist" in text and "H4" in text and str(root) not in text
    # a rerun trains nothing; the command line rebuilds the report from what exists
    stamps = {p: p.stat().st_mtime_ns for p in root.glob("*/runs/**/eval.npz")}
    run_mechanism(root, TINY, "cpu", progress=False)
    assert stamps == {p: p.stat().st_mtime_ns for p in root.glob("*/runs/**/eval.npz")}
    monkeypatch.setattr(mp, "SMOKE_MECHANISM", TINY)
    assert main(["--mechanism", "--study-dir", str(root), "--report-only"]) == 0
    assert main(["--mechanism", "--study-dir", str(root), "--smoke", "--plan-only"]) == 0
    assert "1. primary" in capsys.readouterr().out
    assert main(["--mechanism", "--study-dir", str(root)]) == 2  # another plan: refused
    assert "differs in" in capsys.readouterr().err


def test_the_gate_names_the_targets_g1_misses():
    from musicrep.study.mechanism import gate

    def checks(genre_all: float, niche: float, mood: float) -> dict:
        return {"inputs": {"cf": {"genre_roc_auc": {"all": genre_all, "niche": niche},
                                  "mood_r2": {"all": mood}}}}

    # the values of G1 at this budget's split (PLAN.md, Deviations): the overall target missed
    assert gate({"G1": checks(0.856, 0.690, 0.699)}) == ["cf genre ROC-AUC, all 0.856 (target <= 0.85)"]
    assert gate({"G1": checks(0.849, 0.671, 0.704), "G0": checks(0.99, 0.99, 0.7)}) == []
    assert gate({"G0": checks(0.99, 0.99, 0.7)}) == []  # only G1 has targets
