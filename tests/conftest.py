"""Shared fixtures: a generated Melon-format corpus and the dataset built from it.

Session-scoped, so the whole suite pays for corpus generation, CF and the HDF5 writing
once. Tests that damage a corpus make their own small one (`make_melon`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from musicrep.data.builder import DatasetArgs, create_dataset
from musicrep.data.genre_w2v import train_from_dataset
from musicrep.toy.melon import make_toy_melon

# Small but structured: enough tracks per genre for the split, the CF and a learning check.
TOY = dict(songs=480, playlists=300, frames=400, seed=0)
TOY_DATASET = dict(frames=300, cf_factors=32, cf_epochs=30, workers=2)


@pytest.fixture(scope="session")
def toy_melon(tmp_path_factory) -> tuple[Path, dict]:
    """A generated Melon directory with planted defects, and its summary."""
    out = tmp_path_factory.mktemp("toy") / "melon"
    summary = make_toy_melon(out, defects=True, **TOY)
    return out, summary


@pytest.fixture(scope="session")
def tiny_dataset(toy_melon, tmp_path_factory) -> Path:
    """create_dataset + genre word2vec on the toy corpus: a complete dataset directory."""
    out = tmp_path_factory.mktemp("dataset") / "dataset"
    create_dataset(DatasetArgs(melon_dir=str(toy_melon[0]), out_dir=str(out), **TOY_DATASET))
    train_from_dataset(out, dim=128, seed=0)
    return out


@pytest.fixture
def make_melon(tmp_path):
    """Factory for a small throwaway corpus a test may damage."""

    def make(**kw) -> tuple[Path, dict]:
        opts = dict(songs=80, playlists=40, frames=300, seed=1) | kw
        out = tmp_path / f"melon{len(list(tmp_path.iterdir()))}"
        return out, make_toy_melon(out, **opts)

    return make
