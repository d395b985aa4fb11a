"""Render a generated music collection: audio files + tracks.csv + playlists.csv (see musicrep.toy.audio).

    python scripts/make_toy_audio.py --out data/toy_audio/collection [--tracks 500]
        [--playlists N] [--seconds 30] [--n-major 6] [--seed 0] [--workers N] [--force]

The output is the input of scripts/import_audio.py (--audio-dir OUT --tracks
OUT/tracks.csv --playlists OUT/playlists.csv). It is generated data: models trained on
it are useless for real music. Refuses (exit 2, nothing written) when --out exists and
is not empty, unless --force is given.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from ..data.importer import cpu_workers
from ..toy.audio import make_toy_audio


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="collection directory to create")
    ap.add_argument("--tracks", type=int, default=500)
    ap.add_argument("--playlists", type=int, default=None, help="default: tracks // 2")
    ap.add_argument("--seconds", type=float, default=30.0, help="length of every track")
    ap.add_argument("--n-major", type=int, default=6, help="major genres (2-8)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=cpu_workers(), help="rendering processes")
    ap.add_argument("--force", action="store_true", help="replace a non-empty --out")
    a = ap.parse_args(argv)
    try:
        s = make_toy_audio(a.out, tracks=a.tracks, playlists=a.playlists, seconds=a.seconds,
                           n_major=a.n_major, seed=a.seed, workers=a.workers, force=a.force)
    except FileExistsError as e:
        print(f"make_toy_audio: error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"make_toy_audio: error: {e}", file=sys.stderr)
        return 2
    fmts = ", ".join(f"{v} {k}" for k, v in s["formats"].items())
    print(f"wrote {s['out']}: {s['tracks']} tracks of {s['seconds']:g} s ({fmts}; "
          f"{s['stereo']} stereo), {s['playlists']} playlists, {s['n_major']} major + "
          f"{s['n_detail']} detail genres; {s['elapsed']} s. Generated data: models trained "
          "on it are useless for real music.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
