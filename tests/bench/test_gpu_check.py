"""bench/gpu_check.sh, the prepared device check, in its CPU dry-run mode: every section
(training with loaders, encoding of audio files, torchrun) must run and give figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.helpers import REPO


def test_gpu_check_dry_run_measures_every_section(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable)
    r = subprocess.run([str(REPO / "bench" / "gpu_check.sh"), "--dry-run", str(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=400, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "gpu_check.json").read_text())
    assert res["failed"] == [] and res["dry_run"] is True
    for tag in ("fp32", "bf16"):
        row = res["training"]["by_precision"][tag]
        assert row["model_alone"] > 0 and set(row["full_step"]) == {"0", "1"}
        assert all(v > 0 for v in row["full_step"].values())
    assert all(v > 0 for v in res["training"]["by_precision"]["fp32"]["loader_alone"].values())
    for p in ("fp32", "bf16"):
        assert res["encoding"][p]["rows"] == 2
        assert res["encoding"][p]["audio_s_per_s_decode_excluded"] > 0
    assert res["ddp"]["gather_grad_matches"] is True and res["ddp"]["steps"] == 2
    md = (tmp_path / "gpu_check.md").read_text()
    assert "## Training" in md and "## Encoding" in md and "## DDP" in md


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the check would run for real")
def test_gpu_check_without_a_gpu_says_so(tmp_path):
    r = subprocess.run([str(REPO / "bench" / "gpu_check.sh"), str(tmp_path)], capture_output=True,
                       text=True, env=dict(os.environ, PYTHON=sys.executable), timeout=120, check=False)
    assert r.returncode == 2 and "no CUDA device" in r.stderr and "Traceback" not in r.stderr
