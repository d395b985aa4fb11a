"""Write a generated corpus in the Melon Playlist Dataset layout (see musicrep.toy.melon).

    python scripts/make_toy_melon.py --out data/toy_melon [--songs 2000] [--playlists 1000]
        [--frames 1876] [--n-major 8] [--seed 0] [--preset G0|G1|G2] [--defects] [--force]

--preset changes only the playlists and the genre metadata (the mels, mood and
popularity ranking stay the same draws): G0 (default) every playlist genre-gated, the
corpus as first built; G1 mostly mood-themed playlists, a heavier popularity tail with
niche genres at its bottom, unplaced songs put anywhere (CF noisy for the long tail);
G2 G1 plus a wrong major genre in song_meta.json for about 20% of the artists.

Prints a one-line summary. Refuses (exit code 2, nothing written) when --out exists and
is not empty, unless --force is given, or when it cannot be written. Exit 1 when writing
fails (disk full: one line naming --out), 130 on Ctrl-C (one line); either way nothing
is left under --out's name (the corpus is built beside it and renamed when complete).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ConfigError
from ..toy.melon import make_toy_melon
from ..toy.world import DEFAULT_PRESET, MELON_PRESETS
from .common import Parser, run

PROG = "make_toy_melon"


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog=PROG, description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="corpus directory to create")
    ap.add_argument("--songs", type=int, default=2000)
    ap.add_argument("--playlists", type=int, default=1000)
    ap.add_argument("--frames", type=int, default=1876, help="mel frames per song (T)")
    ap.add_argument("--n-major", type=int, default=8, help="number of major genres")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--preset", choices=list(MELON_PRESETS), default=DEFAULT_PRESET,
                    help="playlists and genre metadata only (default %(default)s): G0 every "
                    "playlist genre-gated; G1 mostly mood-themed playlists, a long popularity "
                    "tail, niche genres at its bottom; G2 G1 plus a wrong genre in song_meta "
                    "for 20%% of the artists")
    ap.add_argument("--defects", action="store_true",
                    help="plant missing/corrupt/zero/short/wrong-shape/NaN mels and empty genres")
    ap.add_argument("--force", action="store_true", help="replace a non-empty --out")
    a = ap.parse_args(argv)
    return run(PROG, lambda: _make(a), interrupted=f"interrupted: {a.out} is unchanged")


def _make(a: argparse.Namespace) -> int:
    try:
        s = make_toy_melon(a.out, songs=a.songs, playlists=a.playlists, frames=a.frames,
                           n_major=a.n_major, seed=a.seed, defects=a.defects, force=a.force,
                           preset=a.preset)
    except FileExistsError:
        raise ConfigError(f"{a.out} exists and is not empty (use --force to replace it)") from None
    except ValueError as e:
        raise ConfigError(str(e)) from None
    sp = s["splits"]
    bad = ", ".join(f"{k} {len(v)}" for k, v in s["defects"].items()) if a.defects else "none"
    print(f"wrote {s['out']} (preset {s['preset']}): {s['songs']} songs, "
          f"{s['playlists']} playlists "
          f"(train {sp['train']} / val {sp['val']} / test {sp['test']}), "
          f"{s['genre_codes']} genre codes ({s['n_major']} major), mels 48x{s['frames']}, "
          f"{s['songs_in_playlists']} songs in playlists, defects: {bad}; {s['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
