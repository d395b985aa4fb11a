"""The study re-analysed from its results.json (musicrep.study.analysis.reanalyse and
`study.py --reanalyse`): seed-level paired t-tests beside the bootstrap, Holm over the
reading's family of claims, equivalence margins, the popularity row as an oracle; the
command rewrites results.md, reanalysis.* and the plots, never results.json, and its
failures are one line."""

from __future__ import annotations

import json
import resource
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from musicrep.cli.study import main
from musicrep.study.analysis import FAMILY, MARGINS, Claim, check_family, reanalyse, seed_differences
from musicrep.study.plan import POPULARITY, RANDOM, REFERENCE
from musicrep.study.report import format_reanalysis, load_results, with_popularity_tags

from tests.helpers import REPO

COMMITTED = REPO / "reports" / "study" / "results.json"


@pytest.fixture(scope="module")
def committed() -> dict:
    return load_results(COMMITTED)


def test_family_is_the_first_readings_claims(committed):
    """Every claim names a trained model of the study and a metric with a margin where it
    claims "no difference"; no claim is against the popularity oracle."""
    models = {r["model"] for r in committed["runs"]}
    assert len(FAMILY) == 22
    for c in FAMILY:
        assert c.versus in models and c.versus != POPULARITY and c.kind in ("higher", "lower", "equivalent")
        assert c.kind != "equivalent" or c.metric in MARGINS


def test_committed_study_supports_one_claim(committed):
    """On the committed numbers only "beats random-init on genre" survives on both layers;
    the CF-view lead on continuation is the bootstrap's alone (seed-level p 0.048, Holm
    0.77), and the seed differences are those of the runs' own rows."""
    re = reanalyse(committed)
    for layer in ("z_d", "z"):
        held = [(c["metric"], c["versus"]) for c in re["family"][layer] if c.get("holds")]
        assert held == [("genre_roc_auc", RANDOM)], layer
    ndcg = next(c for c in re["family"]["z_d"] if c["metric"] == "ndcg@100" and c["versus"] == "contrastive_MF")
    assert ndcg["decision"] == "bootstrap only" and ndcg["seed_p"] == pytest.approx(0.048, abs=5e-4)
    assert ndcg["p_holm"] > 0.5 and ndcg["boot_high"] < 0
    rows = {(r["model"], r["seed"]): r["rows"]["z_d"]["ndcg@100"] for r in committed["runs"]}
    want = [rows[(REFERENCE, s)] - rows[("contrastive_MF", s)] for s in (0, 1, 2)]
    assert ndcg["seed_diffs"] == pytest.approx(want)
    assert np.mean(want) == pytest.approx(ndcg["diff"])
    # the popularity row is one run, compared with each of the reference's seeds
    pop = seed_differences(committed, POPULARITY, "z_d", "ndcg@100")
    assert pop.shape == (3,) and np.all(pop < 0)


def _made_up(ref: list[float], others: dict[str, tuple[list[float], tuple[float, float]]]) -> dict:
    """A results.json with one metric (genre_roc_auc) on one layer: the reference's seed
    values and, per other model, its seed values and the bootstrap interval."""
    runs = [{"model": REFERENCE, "seed": s, "rows": {"z_d": {"genre_roc_auc": v}}} for s, v in enumerate(ref)]
    comparisons = []
    for model, (vals, (lo, hi)) in others.items():
        runs += [{"model": model, "seed": s, "rows": {"z_d": {"genre_roc_auc": v}}} for s, v in enumerate(vals)]
        diff = float(np.mean(ref) - np.mean(vals))
        comparisons.append({"model": REFERENCE, "versus": model, "layer": "z_d",
                            "genre_roc_auc": {"diff": diff, "ci_low": lo, "ci_high": hi, "p_value": 0.01}})
    return {"reference": REFERENCE, "layers": ["z_d"], "runs": runs, "comparisons": comparisons, "rows": []}


def test_a_claim_needs_the_bootstrap_and_the_seeds():
    results = _made_up([0.90, 0.91, 0.92], {
        "clear": ([0.80, 0.81, 0.82], (0.08, 0.12)),  # both see +0.1
        "one_seed": ([0.70, 0.91, 0.92], (0.01, 0.25)),  # one seed drives it: the t-test does not agree
        "same": ([0.901, 0.909, 0.921], (-0.004, 0.004)),  # inside +-0.01 both ways
    })
    family = (Claim("genre_roc_auc", "clear", "higher", "a"), Claim("genre_roc_auc", "one_seed", "higher", "b"),
              Claim("genre_roc_auc", "same", "equivalent", "c"), Claim("genre_roc_auc", "absent", "higher", "d"))
    rows = check_family(results, "z_d", family)
    assert [r["decision"] for r in rows] == ["higher", "bootstrap only", "equivalent", "not run"]
    assert [r.get("holds") for r in rows] == [True, False, True, None]
    # Holm runs over the three tested claims: the smallest p times 3, and so on
    ps = sorted(r["p_claim"] for r in rows[:3])
    assert min(r["p_holm"] for r in rows[:3]) == pytest.approx(3 * ps[0])
    # a lone seed-level difference is not an effect either
    results = _made_up([0.90, 0.91, 0.92], {"tight": ([0.895, 0.905, 0.915], (-0.002, 0.012))})
    (row,) = check_family(results, "z_d", (Claim("genre_roc_auc", "tight", "higher", "e"),))
    assert row["seed_p"] < 0.05 and row["decision"] != "higher" and not row["holds"]


def test_reanalysis_is_deterministic_and_names_the_oracle(committed):
    tags = {"tag_roc_auc": {"n_seeds": 1, "mean": 0.74, "std": None, "ci_low": 0.73, "ci_high": 0.75},
            "tag_pr_auc": {"n_seeds": 1, "mean": 0.7, "std": None, "ci_low": 0.69, "ci_high": 0.72},
            "spearman_tag_count_playlist_count": 0.96, "how": "made up"}
    a, b = reanalyse(committed, tags), reanalyse(json.loads(COMMITTED.read_text()), tags)
    assert json.dumps(a) == json.dumps(b)
    summary = with_popularity_tags(committed["rows"], tags)
    md = format_reanalysis(a, committed, summary)
    assert md == format_reanalysis(b, committed, summary)
    assert "| popularity (oracle) | 1 | 0.740 [0.730, 0.750] |" in md and "| popularity |" not in md
    assert "1 of 22 supported" in md and "not recorded" in md and "Spearman 0.96" in md
    assert committed["rows"] == load_results(COMMITTED)["rows"]  # the input is not modified


def _copy(tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    shutil.copy(COMMITTED, folder / "results.json")
    return folder


def test_reanalyse_command_writes_beside_results_json(tmp_path):
    folder = _copy(tmp_path)
    reading = tmp_path / "reading.md"
    reading.write_text("Only random-init is beaten on genre.\n", encoding="utf-8")
    before = (folder / "results.json").read_bytes()
    assert main(["--reanalyse", str(folder / "results.json"), "--reading", str(reading)]) == 0
    assert (folder / "results.json").read_bytes() == before
    md = (folder / "results.md").read_text()
    assert "## Reading\n\nOnly random-init is beaten on genre.\n" in md
    assert "| popularity (oracle) |" in md and "Layer z_d: 1 of 22 claims supported." in md
    re = json.loads((folder / "reanalysis.json").read_text())
    assert re["reading"] == reading.read_text() and re["popularity_tags"] is None
    assert json.dumps(re["family"]) == json.dumps(json.loads(json.dumps(reanalyse(load_results(COMMITTED))["family"])))
    assert (folder / "reanalysis.md").is_file() and (folder / "errorbars_z_d_mood.png").is_file()


def _exit_code(args: list[str]) -> int:
    """main's exit code, whether it returns it or argparse exits."""
    try:
        return main(args)
    except SystemExit as e:
        return int(e.code)


@pytest.mark.parametrize("args, why", [
    (["--reanalyse", "{missing}"], "cannot read"),
    (["--reanalyse", "{empty}"], "not a study's results.json"),
    (["--reanalyse", "{results}", "--smoke"], "leave out --smoke"),
    (["--popularity-corpus", "x"], "goes with --reanalyse"),
    (["--reanalyse", "{results}", "--reading", "{missing}"], "cannot read the reading"),
])
def test_reanalyse_bad_input_is_one_line(tmp_path, capsys, args, why):
    folder = _copy(tmp_path)
    (tmp_path / "empty.json").write_text("{}")
    paths = {"missing": tmp_path / "absent.json", "empty": tmp_path / "empty.json",
             "results": folder / "results.json"}
    code = _exit_code([a.format(**paths) for a in args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and why in err[0] and err[0].startswith("study.py: error:"), err
    assert not (folder / "results.md").exists() and not (folder / "reanalysis.md").exists()


def test_reanalyse_on_a_full_disk_exits_1_and_keeps_the_old_report(tmp_path):
    """The first file that does not fit: one line naming it, exit 1; results.md as it was."""
    folder = _copy(tmp_path)
    (folder / "results.md").write_text("the earlier report\n")

    def full_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))

    r = subprocess.run([sys.executable, "-m", "musicrep.cli.study", "--reanalyse", str(folder / "results.json")],
                       capture_output=True, text=True, cwd=REPO, preexec_fn=full_disk, timeout=300)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert len(err) == 1 and err[0].startswith("study.py: error:") and "results.md" in err[0], err
    assert (folder / "results.md").read_text() == "the earlier report\n"
