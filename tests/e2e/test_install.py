"""Installed, not only checked out: a non-editable build of the package, used from a
folder outside the repository, runs its console scripts, `load_encoder`, the HEAR API
and the study's plan (whose configs ship as package data)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """`pip install --no-deps .` (a wheel built from the checkout, not an editable link)
    into a fresh target folder."""
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--no-compile", "--target", str(target), str(REPO)],
                       capture_output=True, text=True, cwd=build, timeout=300, check=False,
                       env=dict(os.environ, PIP_NO_INPUT="1", TMPDIR=str(build)))
    assert r.returncode == 0, r.stderr[-2000:]
    assert (target / "musicrep" / "configs" / "contrastive_MF_gnr.json").is_file()
    return target


def _run(installed: Path, cwd: Path, *cmd: str) -> subprocess.CompletedProcess:
    # PYTHONPATH puts the installed copy before the checkout's editable link.
    env = dict(os.environ, PYTHONPATH=str(installed), OPENBLAS_NUM_THREADS="1")
    return subprocess.run(list(cmd), capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300, check=False)


def test_installed_package_works_outside_the_repository(installed, tmp_path):
    code = f"""
import numpy as np, musicrep, musicrep.hear as hear
assert musicrep.__file__.startswith({str(installed)!r}), musicrep.__file__
from musicrep import load_encoder
enc = load_encoder({str(REPO / "models" / "contrastive_MF_gnr")!r})
v = enc.embed(np.random.default_rng(0).normal(size=16000 * 5).astype(np.float32) * 0.1, 16000)
assert v.shape == (128,) and np.isfinite(v).all()
model = hear.load_model({str(REPO / "models" / "contrastive_MF_gnr" / "audio_encoder.pt")!r})
import torch
emb = hear.get_scene_embeddings(torch.zeros(2, model.sample_rate * 2), model)
assert emb.shape[0] == 2
print("ok", musicrep.__version__)
"""
    r = _run(installed, tmp_path, sys.executable, "-W", "ignore", "-c", code)
    assert r.returncode == 0 and "ok 0.1.0" in r.stdout, r.stderr[-2000:]

    r = _run(installed, tmp_path, str(installed / "bin" / "musicrep-encode"), "--help")
    assert r.returncode == 0 and "--checkpoint" in r.stdout, r.stderr[-2000:]

    r = _run(installed, tmp_path, sys.executable, "-m", "musicrep.cli.study",
             "--study-dir", str(tmp_path / "study"), "--plan-only")
    assert r.returncode == 0 and "training runs" in r.stdout, (r.stdout + r.stderr)[-2000:]
