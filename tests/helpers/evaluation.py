"""A small evaluation dataset: synthetic splits plus hand-made tag, continuation,
popularity and manifest files, for the evaluation tests and their fault tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.helpers.synth import write_synthetic_dataset


def make_eval_dataset(root: Path, n_test: int = 120) -> Path:
    """Synthetic splits (1 chunk per track) plus small hand-made side files.

    Ids 0-15 train, 16-19 val, then ``n_test`` test tracks; more than k = 100 test
    tracks by default, so continuation is scored.
    """
    ds = write_synthetic_dataset(root, n_train=16, n_val=4, n_test=n_test, frames=256,
                                 n_genres=8)
    rng = np.random.default_rng(0)
    n = 20 + n_test
    tracks = {str(i): sorted(rng.choice(3, size=int(rng.integers(0, 3)), replace=False).tolist())
              for i in range(n)}
    (ds / "track_tags.json").write_text(json.dumps({"tags": ["calm", "party", "rain"],
                                                     "tracks": tracks}))
    playlists = [{"id": p, "known": rng.choice(20, 3, replace=False).tolist(),
                  "held_out": rng.choice(np.arange(20, n), 2, replace=False).tolist()}
                 for p in range(6)]
    (ds / "continuation.json").write_text(json.dumps({"playlists": playlists}))
    popularity = {str(i): int(rng.integers(0, 9)) for i in range(n)}
    (ds / "popularity.json").write_text(json.dumps(popularity))
    (ds / "manifest.json").write_text(json.dumps({"source": "synthetic", "tracks": n}))
    return ds
