"""The manipulation checks (musicrep.study.checks, study.py --checks): what the CF vectors
and the genre metadata of a created dataset tell about the true genre and the mood.

On the session's tiny G0 dataset and on a G2 dataset of the same size built here: the
checks must see what the presets plant (G0: metadata equal to the truth, CF carrying
genre; G2: metadata wrong for a fifth of the artists, CF noisier for genre).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from musicrep.cli.study import main
from musicrep.data.builder import DatasetArgs, create_dataset
from musicrep.study.checks import TERCILES, format_checks, run_checks
from musicrep.toy.melon import make_toy_melon

from tests.helpers import REPO

# The size of the session's tiny corpus and dataset (tests/conftest.py), short mels.
G2_CORPUS = {"songs": 480, "playlists": 300, "frames": 256, "seed": 0}
G2_DATASET = {"frames": 256, "cf_factors": 32, "cf_epochs": 30, "workers": 2}


@pytest.fixture(scope="module")
def g2_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("g2")
    make_toy_melon(root / "melon", preset="G2", **G2_CORPUS)
    create_dataset(DatasetArgs(melon_dir=str(root / "melon"), out_dir=str(root / "dataset"),
                               **G2_DATASET))
    return root / "dataset"


@pytest.fixture(scope="module")
def checked(tiny_dataset, g2_dataset) -> dict[str, dict]:
    return {"G0": run_checks(tiny_dataset), "G2": run_checks(g2_dataset)}


def test_checks_report_every_slice(checked):
    for name, r in checked.items():
        assert r["preset"] == name and r["genre_target"] == "truth"
        assert r["tracks"] > 100 and len(r["niche_major_genres"]) == 2
        sizes = [r["terciles"][t]["tracks"] for t in TERCILES]
        assert sum(sizes) == r["tracks"] and max(sizes) - min(sizes) <= 1
        med = [r["terciles"][t]["playlists_median"] for t in TERCILES]
        assert med[0] >= med[1] >= med[2]
        for inp in ("cf", "genre_metadata"):
            for v in r["inputs"][inp]["genre_roc_auc"].values():
                assert v is not None and 0.0 <= v <= 1.0
            assert all(v is not None and v <= 1.0 for v in r["inputs"][inp]["mood_r2"].values())
    # G0's niche genres come from the generator's rule, G2's from its truth file
    assert checked["G0"]["niche_source"] == "fewest songs"
    assert checked["G2"]["niche_source"] == "truth"


def test_checks_see_what_the_presets_plant(checked):
    g0, g2 = checked["G0"], checked["G2"]
    # G0: the metadata is the truth; CF carries genre and mood
    assert g0["metadata_agreement"] == 1.0
    assert g0["inputs"]["genre_metadata"]["genre_roc_auc"]["all"] > 0.99
    assert g0["inputs"]["cf"]["genre_roc_auc"]["all"] > 0.85
    assert g0["inputs"]["cf"]["mood_r2"]["all"] > 0.2
    # G2: a fifth of the artists misnamed, so the metadata probe falls; CF is noisier,
    # noisiest for the niche genres at the bottom of the popularity tail
    assert 0.7 < g2["metadata_agreement"] < 0.9
    meta0, meta2 = (r["inputs"]["genre_metadata"]["genre_roc_auc"]["all"] for r in (g0, g2))
    assert meta2 < meta0 - 0.01
    cf0, cf2 = g0["inputs"]["cf"]["genre_roc_auc"], g2["inputs"]["cf"]["genre_roc_auc"]
    assert cf2["all"] < cf0["all"] - 0.05
    assert cf2["niche"] < cf2["mainstream"] - 0.1 and cf0["niche"] > 0.95


def test_format_lists_inputs_and_targets(checked):
    text = format_checks(checked["G2"])
    assert "| cf | genre ROC-AUC |" in text and "| genre_metadata | mood R^2 |" in text
    assert "G1 targets:" in text


def _study(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/study.py", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)


def test_cli_checks(g2_dataset, tmp_path):
    out = tmp_path / "checks.json"
    r = _study("--checks", str(g2_dataset), "--checks-json", str(out))
    assert r.returncode == 0, r.stderr
    assert "| cf | genre ROC-AUC |" in r.stdout
    saved = json.loads(out.read_text())
    assert saved["preset"] == "G2" and set(saved["inputs"]) == {"cf", "genre_metadata"}


def test_cli_checks_refusals(g2_dataset, tmp_path, capsys):
    # an input as --checks-json (a dataset file, the truth file): refused, input unchanged
    truth = g2_dataset.parent / "melon" / "generated_truth.json"  # found via the manifest
    for target in (g2_dataset / "popularity.json", truth):
        before = target.read_bytes()
        assert main(["--checks", str(g2_dataset), "--checks-json", str(target)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "--checks-json" in err, err
        assert target.read_bytes() == before
    # no dataset there; a truth file that does not exist: one line, exit 2
    for args in (["--checks", str(tmp_path)],
                 ["--checks", str(g2_dataset), "--truth", str(tmp_path / "none.json")]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, (args, err)
    with pytest.raises(SystemExit) as e:
        main(["--checks-json", str(tmp_path / "x.json")])
    assert e.value.code == 2 and "--checks" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
