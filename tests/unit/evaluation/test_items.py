"""Per-item outputs of the evaluation (what the study bootstraps) and the layer option:
the items reproduce every number of the row they belong to, for z_d and for z."""

from __future__ import annotations

import json
import runpy

import numpy as np
import pytest
import torch

from musicrep.evaluation.data import load_eval_data
from musicrep.evaluation.items import read_items
from musicrep.evaluation.run import run_evaluation
from musicrep.evaluation.tasks import COLUMNS
from musicrep.model.audio_cnn import AudioEncoder
from musicrep.study.stats import metric_replicates

from tests.helpers import REPO
from tests.helpers.evaluation import make_eval_dataset


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("items")
    ds = make_eval_dataset(root / "ds")
    torch.manual_seed(3)
    path = root / "m" / "audio_encoder.pt"
    path.parent.mkdir()
    torch.save(AudioEncoder(width=0.125).state_dict(), path)
    (path.parent / "config.json").write_text('{"input_layout": "transpose"}')
    return ds, path


@pytest.mark.parametrize("layer", ["z_d", "z"])
def test_items_reproduce_the_rows(setup, layer):
    ds, ckpt = setup
    data = load_eval_data(ds)
    res = run_evaluation(data, [ckpt], ["m"], layer=layer, progress=False, per_item=True)
    assert set(res.items) == {"m", "random-init", "popularity"}
    n_test = len(data.ids["test"])
    width = 128 if layer == "z_d" else AudioEncoder(width=0.125).z_dim
    assert res.test_maps["m"].shape[1] == width  # the layer asked for was read out
    for row in res.rows:
        items = res.items[row["model"]]
        if row["model"] != "popularity":
            assert items["genre_scores"].shape == items["genre_labels"].shape == (n_test, len(data.major_names))
            assert items["tag_scores"].shape[0] == n_test
        assert items["recall@100"].shape == (res.details[row["model"]]["playlists"],)
        full = metric_replicates(items, np.ones((1, n_test)), np.ones((1, items["recall@100"].size)))
        # every column of the tasks (the breakdowns': test_breakdowns.py)
        scored = {k: v for k, v in row.items() if k in COLUMNS[1:] and v is not None}
        assert set(full) == set(scored)
        for k, v in scored.items():
            assert full[k][0] == pytest.approx(v, abs=1e-9), (row["model"], k)


def test_z_and_z_d_differ(setup):
    ds, ckpt = setup
    data = load_eval_data(ds)
    a = run_evaluation(data, [ckpt], ["m"], layer="z_d", progress=False)
    b = run_evaluation(data, [ckpt], ["m"], layer="z", progress=False)
    assert a.rows[0]["genre_roc_auc"] != b.rows[0]["genre_roc_auc"]


def test_cli_writes_items_npz(setup, tmp_path, capsys):
    ds, ckpt = setup
    out = tmp_path / "r"
    main = runpy.run_path(str(REPO / "evaluate.py"))["main"]
    assert main(["--dataset", str(ds), "--models", str(ckpt), "--names", "m", "--out", str(out),
                 "--device", "cpu", "--quiet", "--per-item", "--layer", "z"]) == 0
    items = read_items(out / "items.npz")
    rows = {r["model"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert set(items) == set(rows)
    assert items["m"]["vote_ndcg@100"].mean() == pytest.approx(rows["m"]["vote_ndcg@100"])
