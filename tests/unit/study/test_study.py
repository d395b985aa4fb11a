"""The study pipeline (musicrep.study) end to end on a very small plan: the lr grid picks
per family and its winner is reused, every run and reference is evaluated on both layers,
the report has intervals and paired comparisons, and a rerun trains nothing."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

from musicrep.cli.study import main
from musicrep.evaluation.tasks import TASK_COLUMNS
from musicrep.study.analysis import collect, compute_statistics, late_gain, metric_columns
from musicrep.study.directory import Layout, StudyError
from musicrep.study.pipeline import evaluated, run_study, score_popularity_tags, trained
from musicrep.study.plan import LAYERS, POPULARITY, RANDOM, REFERENCE, SMOKE, STUDY_CONFIGS, check_plan
from musicrep.study.report import held_out_tracks, write_report

# Two configs (the reference and one baseline), two seeds, a two-lr grid for the
# contrastive family, one step per epoch: the whole pipeline in about a minute.
PLAN = replace(
    SMOKE, name="test", songs=560, playlists=240,
    configs=["baseline_MF", "contrastive_MF_gnr"],
    grid_configs={"baseline": "baseline_MF", "contrastive": "contrastive_MF_gnr"},
    lr_grid={"baseline": [3e-3], "contrastive": [1e-3, 3e-3]},
    max_epochs=2, max_steps_per_epoch=1, n_boot=50,
)


def _targets(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in root.glob("runs/**/*") if p.name in ("eval.npz", "last.pt")}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("study") / "s"
    layout = Layout(root)
    run_study(layout, PLAN, device="cpu", progress=False)
    write_report(layout, PLAN, publish=root.parent / "published")
    return layout


def test_runs_grid_and_reuse(finished):
    root = finished.root
    grid = json.loads((root / "grid.json").read_text())
    chosen = grid["contrastive"]["chosen"]
    assert chosen in (1e-3, 3e-3) and [r["lr"] for r in grid["contrastive"]["grid"]] == [1e-3, 3e-3]
    assert grid["baseline"]["chosen"] == 3e-3
    other = 1e-3 if chosen == 3e-3 else 3e-3
    # the grid's winner is the config's seed-0 run; the loser is not trained on seed 1
    assert (finished.run("contrastive_MF_gnr", chosen, 1) / "eval.npz").is_file()
    assert not finished.run("contrastive_MF_gnr", other, 1).exists()
    for seed in PLAN.seeds:
        assert (finished.reference(RANDOM, seed) / "eval.npz").is_file()
        info = json.loads((finished.run("baseline_MF", 3e-3, seed) / "config.json").read_text())
        assert info["training"]["epochs_run"] <= 2 and info["patience"] == 1
        # new studies select on the audio terms: contrastive_MF_gnr leaves out ntxent_cf_genre
        run = finished.run("contrastive_MF_gnr", chosen, seed)
        info = json.loads((run / "config.json").read_text())
        assert info["select_on"] == "audio" and info["training"]["select_on"] == "audio"
        header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
        assert "val_selected" in header and "val_loss" in header
    assert json.loads((root / "study.json").read_text()) == json.loads(json.dumps(asdict(PLAN)))


def test_report_rows_and_comparisons(finished):
    out = finished.report
    text = (out / "results.json").read_text()
    result = json.loads(text)
    assert result["generated_corpus"] is True and result["missing"] == []
    # no machine paths in a report that gets committed
    assert str(finished.root.resolve()) not in text and "STUDY_DIR/data/melon" in text
    rows = {(r["model"], r["layer"]): r for r in result["rows"]}
    models = ["baseline_MF", "contrastive_MF_gnr", RANDOM, POPULARITY]
    assert set(rows) == {(m, layer) for m in models for layer in LAYERS}
    for (model, layer), r in rows.items():
        assert r["n_seeds"] == (1 if model == POPULARITY else 2)
        for col in metric_columns():
            v = r[col]
            if model == POPULARITY and col not in TASK_COLUMNS["continuation"] + TASK_COLUMNS["tagging"]:
                assert v is None
                continue
            assert v is not None, (model, layer, col)
            assert v["ci_low"] <= v["ci_high"]
            if model != POPULARITY:
                assert v["std"] >= 0
    assert rows[("baseline_MF", "z")]["genre_roc_auc"] != rows[("baseline_MF", "z_d")]["genre_roc_auc"]
    comps = {(c["versus"], c["layer"]): c for c in result["comparisons"]}
    assert set(comps) == {(m, layer) for m in models if m != REFERENCE for layer in LAYERS}
    for c in comps.values():
        assert c["model"] == REFERENCE and c["n_seeds"] == 2
        d = c["ndcg@100"]
        assert 0 < d["p_value"] <= 1 and d["ci_low"] <= d["ci_high"]
    # the difference is the difference of the seed means
    ref, base = rows[("contrastive_MF_gnr", "z_d")], rows[("baseline_MF", "z_d")]
    assert comps[("baseline_MF", "z_d")]["ndcg@100"]["diff"] == pytest.approx(
        ref["ndcg@100"]["mean"] - base["ndcg@100"]["mean"])

    header = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["model", "layer", "n_seeds"] and "mood_r2_ci_high" in header
    md = (out / "results.md").read_text()
    for text in ("generated corpus", "useless for real music", "Learning rate grid", "(chosen)",
                 "Paired differences", "## Reading", "READING: placeholder", "two-level",
                 "| popularity (oracle) |", "tested at the seed level", "Holm",
                 "its terms with the audio view", "with their shared held-out tracks"):
        assert text in md, text
    assert "| popularity |" not in md
    assert "The family of claims, layer z_d" in (out / "reanalysis.md").read_text()
    re = json.loads((out / "reanalysis.json").read_text())
    assert re["reference"] == REFERENCE and set(re["family"]) == set(LAYERS)
    pngs = sorted(p.name for p in out.glob("errorbars_*.png"))
    assert "errorbars_z_d_mood.png" in pngs and "errorbars_z_continuation_vote.png" in pngs
    published = out.parent.parent / "published"
    assert (published / "results.md").read_text() == md


def test_rerun_trains_nothing_and_report_only(finished, capsys):
    before = _targets(finished.root)
    run_study(finished, PLAN, device="cpu", progress=False)
    assert _targets(finished.root) == before
    assert "already finished and evaluated" in capsys.readouterr().out

    # A run interrupted after its last epoch but before export and evaluation resumes
    # from last.pt (no epoch retrained), exports and is evaluated; nothing else is touched.
    run = finished.run("baseline_MF", 3e-3, 1)
    lost = run / "eval.npz"
    for name in ("eval.npz", "eval.json", "audio_encoder.pt", "audio_encoder_best.pt"):
        (run / name).unlink()
    run_study(finished, PLAN, device="cpu", progress=False)
    after = _targets(finished.root)
    assert (run / "audio_encoder_best.pt").is_file() and "resuming from" in capsys.readouterr().out
    assert lost.is_file() and after.pop(lost) != before.pop(lost) and after == before

    assert main(["--study-dir", str(finished.root), "--report-only"]) == 0


def test_reading_goes_into_the_report(finished, tmp_path, capsys):
    """The hand-written reading replaces the placeholder in results.md and results.json;
    an empty or missing reading file is one line, exit 2, and the report is left as it was."""
    reading = tmp_path / "reading.md"
    reading.write_text("The baselines lead on genre; mood is within noise.\n", encoding="utf-8")
    before = (finished.report / "results.md").read_text()
    for bad, why in ((tmp_path / "absent.md", "cannot read"), (tmp_path / "empty.md", "empty")):
        if why == "empty":
            bad.write_text("  \n")
        assert main(["--study-dir", str(finished.root), "--report-only", "--reading", str(bad)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(bad) in err[0] and why in err[0]
        assert (finished.report / "results.md").read_text() == before
    try:
        assert main(["--study-dir", str(finished.root), "--report-only", "--reading", str(reading)]) == 0
        md = (finished.report / "results.md").read_text()
        assert "## Reading\n\nThe baselines lead on genre; mood is within noise.\n" in md
        assert "READING: placeholder" not in md
        assert json.loads((finished.report / "results.json").read_text())["reading"] == reading.read_text()
    finally:  # the module's other tests expect the placeholder
        write_report(finished, PLAN)


def test_other_plan_is_refused(finished, capsys):
    with pytest.raises(StudyError, match="differs in"):
        check_plan(finished, replace(PLAN, seeds=[0, 1, 2]))
    assert main(["--study-dir", str(finished.root), "--smoke"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "study.json" in err[0] and "another --study-dir" in err[0]


def test_report_only_without_runs_exits_2(tmp_path, capsys):
    assert main(["--study-dir", str(tmp_path / "none"), "--report-only"]) == 2
    assert "not a study directory" in capsys.readouterr().err


@pytest.mark.slow
def test_smoke_study_end_to_end(tmp_path):
    """What `make study STUDY_SMOKE=1` runs: every config, the same report files."""
    assert main(["--smoke", "--study-dir", str(tmp_path / "smoke"), "--quiet"]) == 0
    report = tmp_path / "smoke" / "report"
    result = json.loads((report / "results.json").read_text())
    assert {r["model"] for r in result["rows"]} == set(STUDY_CONFIGS) | {RANDOM, POPULARITY}
    for name in ("results.md", "results.csv", "errorbars_z_d_genre.png"):
        assert (report / name).is_file()


def test_late_gain_says_how_far_from_converged(tmp_path):
    """Share of the validation improvement made in the last epochs: 0 for a flat tail,
    large for a run the cap stopped while still improving, None when it cannot be said."""
    def run(val):
        p = tmp_path / f"m{len(list(tmp_path.iterdir()))}.csv"
        p.write_text("epoch,val_loss\n" + "".join(f"{i},{v}\n" for i, v in enumerate(val, 1)))
        return late_gain(p, last=2)

    assert run([4.0, 2.0, 1.0, 1.0, 1.0]) == 0.0
    assert run([4.0, 3.0, 2.5, 2.0, 1.0]) == pytest.approx(1.5 / 3.0)
    assert run([4.0, 1.0, 1.2, 1.1, 1.3]) == 0.0  # early stopping: the best is before the tail
    assert run([4.0, 3.0]) is None  # no epochs before the last ones
    assert run([4.0, 5.0, 6.0, 7.0]) == 0.0  # never improved
    assert run([4.0, float("nan"), 3.0, 2.0]) is None


def test_a_run_stopped_before_min_epochs_is_not_finished(tmp_path):
    """trained(): complete at the cap, or stopped early at or after min_epochs; evaluated():
    eval.npz newer than last.pt, so a run trained further is evaluated again."""
    plan = replace(PLAN, max_epochs=30, min_epochs=15)
    run = tmp_path / "run"
    run.mkdir()

    def training(epochs_run, stopped):
        (run / "config.json").write_text(json.dumps({"training": {"epochs_run": epochs_run, "stopped_early": stopped}}))
        return trained(run, plan)

    assert not trained(run, plan)  # no config.json yet
    assert training(30, False) and training(18, True) and training(15, True)
    assert not training(7, True) and not training(20, False)  # stopped on the plateau; interrupted

    assert not evaluated(run)
    (run / "last.pt").write_bytes(b"x")
    (run / "eval.npz").write_bytes(b"x")
    assert evaluated(run)
    t = (run / "eval.npz").stat().st_mtime_ns
    os.utime(run / "last.pt", ns=(t + 10**9, t + 10**9))  # trained again after the evaluation
    assert not evaluated(run)


def test_clustered_resampling_widens_the_continuation_intervals(finished):
    """With the held-out tracks shared between playlists, the two-way resampling gives
    continuation intervals at least as wide as playlists alone (on average over the
    models), and leaves the track tasks' intervals as they were."""
    found, _, _ = collect(finished, PLAN)
    held = held_out_tracks(finished)
    width = {}
    for how in ("playlists", "clustered"):
        summary, _ = compute_statistics(found, replace(PLAN, playlist_resampling=how, n_boot=200), held)
        width[how] = {(r["model"], r["layer"], c): r[c]["ci_high"] - r[c]["ci_low"]
                      for r in summary for c in ("ndcg@100", "genre_roc_auc") if r.get(c)}
    ndcg = [k for k in width["playlists"] if k[2] == "ndcg@100"]
    assert np.mean([width["clustered"][k] / width["playlists"][k] for k in ndcg]) > 1.1
    genre = [k for k in width["playlists"] if k[2] == "genre_roc_auc"]
    assert all(width["clustered"][k] == width["playlists"][k] for k in genre)
    with pytest.raises(StudyError, match="held-out tracks"):
        compute_statistics(found, PLAN, None)


def test_popularity_tags_from_a_regenerated_corpus(finished, tmp_path):
    """The first study's popularity oracle on tags, recomputed without its runs: the
    corpus regenerated with short mels is the study's (the same split, playlists and
    popularity row) and scores tags exactly as the pipeline's own popularity row; a
    results.json whose popularity row differs is refused."""
    results = json.loads((finished.report / "results.json").read_text())
    got = score_popularity_tags(results, tmp_path / "corpus")
    pop = next(r for r in results["rows"] if r["model"] == POPULARITY and r["layer"] == LAYERS[0])
    for col in TASK_COLUMNS["tagging"]:
        assert got[col]["mean"] == pytest.approx(pop[col]["mean"], abs=1e-12)
        assert got[col]["ci_low"] <= got[col]["mean"] <= got[col]["ci_high"]
    assert 0 < got["spearman_tag_count_playlist_count"] <= 1
    for r in results["runs"]:
        if r["model"] == POPULARITY:
            r["rows"][LAYERS[0]]["ndcg@100"] += 0.01
    with pytest.raises(StudyError, match="not the study's"):
        score_popularity_tags(results, tmp_path / "corpus")
