"""Render a generated music collection: audio files + tracks.csv + playlists.csv (see musicrep.toy.audio).

    python scripts/make_toy_audio.py --out data/toy_audio/collection [--tracks 500]
        [--playlists N] [--seconds 30] [--n-major 6] [--seed 0] [--workers N] [--force]

The output is the input of scripts/import_audio.py (--audio-dir OUT --tracks
OUT/tracks.csv --playlists OUT/playlists.csv). It is generated data: models trained on
it are useless for real music. Refuses (exit 2, nothing written) when --out exists and
is not empty, unless --force is given, or when it cannot be written. Exit 1 when writing
fails (disk full: one line), 130 on Ctrl-C (one line); either way nothing is left under
--out's name. --workers is at most the usable CPUs and the tracks (a note says so).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from ..errors import ConfigError
from ..toy.audio import make_toy_audio
from ..workers import usable_cpus
from .common import Parser, run

PROG = "make_toy_audio"


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog=PROG, description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="collection directory to create")
    ap.add_argument("--tracks", type=int, default=500)
    ap.add_argument("--playlists", type=int, default=None, help="default: tracks // 2")
    ap.add_argument("--seconds", type=float, default=30.0, help="length of every track")
    ap.add_argument("--n-major", type=int, default=6, help="major genres (2-8)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=usable_cpus(),
                    help="rendering processes, at most the usable CPUs (default %(default)s)")
    ap.add_argument("--force", action="store_true", help="replace a non-empty --out")
    a = ap.parse_args(argv)
    if a.workers < 0:
        ap.error("--workers must be >= 0")
    return run(PROG, lambda: _make(a), interrupted=f"interrupted: {a.out} is unchanged")


def _make(a: argparse.Namespace) -> int:
    try:
        s = make_toy_audio(a.out, tracks=a.tracks, playlists=a.playlists, seconds=a.seconds,
                           n_major=a.n_major, seed=a.seed, workers=a.workers, force=a.force)
    except (FileExistsError, ValueError) as e:
        raise ConfigError(str(e)) from None
    fmts = ", ".join(f"{v} {k}" for k, v in s["formats"].items())
    print(f"wrote {s['out']}: {s['tracks']} tracks of {s['seconds']:g} s ({fmts}; "
          f"{s['stereo']} stereo), {s['playlists']} playlists, {s['n_major']} major + "
          f"{s['n_detail']} detail genres; {s['elapsed']} s. Generated data: models trained "
          "on it are useless for real music.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
