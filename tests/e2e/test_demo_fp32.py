"""`make demo` in float32 (the path every CPU without native bf16 takes): every trained
model beats random initialisation.

On a CPU with AVX512-BF16 the demo runs in bf16 and would never show a regression of
the fp32 path (issue 24: `baseline_MF` stayed on its plateau in fp32 only). This runs
the demo's own Makefile targets, budget and seeds with DEMO_BF16=false into a temporary
folder (about 20 minutes on 2 cores: `make test-slow`).
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.helpers import REPO

TRAINED = ("baseline_MF", "baseline_gnr", "baseline_MF_gnr",
           "contrastive_MF", "contrastive_gnr", "contrastive_MF_gnr")


@pytest.mark.slow
def test_fp32_demo_every_trained_model_beats_random_init(tmp_path):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    cmd = ["make", "-C", str(REPO), "demo", "DEMO_BF16=false", f"DEMO_DATA={tmp_path / 'data'}",
           f"DEMO_RUNS={tmp_path / 'runs'}", f"DEMO_REPORT={tmp_path / 'report'}"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in TRAINED:  # the runs really were float32
        cfg = json.loads((tmp_path / "runs" / name / "config.json").read_text())
        assert cfg["bf16_resolved"] is False, (name, cfg["bf16_resolved"])
    rows = {r["model"]: r for r in json.loads((tmp_path / "report" / "results.json").read_text())["rows"]}
    random = rows["random-init"]
    for name in TRAINED:
        for metric in ("genre_roc_auc", "ndcg@100"):
            assert rows[name][metric] > random[metric], (name, metric, rows[name][metric], random[metric])
