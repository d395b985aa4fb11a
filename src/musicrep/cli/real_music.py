"""Assemble a corpus of real music from Debian's free game soundtracks, as the input of
scripts/import_audio.py (audio + tracks.csv + playlists.csv + manifest.json).

    python scripts/real_music.py --out data/real_music [--cache DIR] [--packages A,B,...]
        [--min-seconds 30]
    python scripts/import_audio.py --audio-dir data/real_music/audio \
        --tracks data/real_music/tracks.csv --playlists data/real_music/playlists.csv \
        --out data/real_music/melon

Packages are fetched with `apt-get download` and unpacked with `dpkg-deb -x` into the
cache (default OUT/cache; nothing is installed, root is not needed); a rerun reuses both.
Genre labels are the soundtracks, playlists one per (soundtrack, album, composer): stand-ins,
since real recordings carry neither (src/musicrep/data/real_corpus.py says why). Sound
effects, files under --min-seconds and byte-identical copies are dropped and listed with
their reason in OUT/manifest.json, which also records each track's package, version,
licence, SHA256 and duration. Keep the audio out of version control: an --out under the
repository's data/ (ignored by git, as above) or outside the repository.

Exit status: 0 done; 2 no apt-get/apt-cache/dpkg-deb on this machine, a package apt does
not know (run `apt-get update` once), or an --out holding files this tool did not write
or that cannot be written (one line each); 1 a download or unpack failed, writing failed,
or no music was found; 130 Ctrl-C (downloads and unpacked packages finished so far are
kept; rerun to resume).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data.debian import FetchError, candidate, fetch, require_tools, unpack
from ..data.real_corpus import (
    DEFAULT_PACKAGES,
    MIN_SECONDS,
    PackageResult,
    check_out_dir,
    scan_package,
    write_corpus,
)
from ..errors import ConfigError
from ..io import output_lock, write_error
from .common import Parser, run

PROG = "real_music"


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True,
                   help="corpus folder to create or update (keep it out of version control)")
    p.add_argument("--cache", type=Path, default=None,
                   help="downloaded and unpacked packages (default OUT/cache)")
    p.add_argument("--packages", default=",".join(DEFAULT_PACKAGES),
                   help="comma-separated Debian packages (default %(default)s)")
    p.add_argument("--min-seconds", type=float, default=MIN_SECONDS,
                   help="drop shorter files (default %(default)s)")
    a = p.parse_args(argv)
    packages = list(dict.fromkeys(x.strip() for x in a.packages.split(",") if x.strip()))
    if not packages:
        p.error("--packages names no package")
    if a.min_seconds < 0:
        p.error("--min-seconds must be >= 0")
    return run(PROG, lambda: _build(a, packages),
               interrupted="interrupted: the packages fetched so far are kept in the cache; "
                           "rerun the same command to resume")


def _build(a: argparse.Namespace, packages: list[str]) -> int:
    require_tools()
    out = a.out.resolve()
    cache = (a.cache or a.out / "cache").resolve()
    check_out_dir(out)
    infos = [candidate(name) for name in packages]  # every name checked before any download
    for d in (out.parent, cache):
        e = write_error(d)
        if e is not None:
            raise ConfigError(f"{d}: cannot write there ({e.strerror or type(e).__name__})")
    with output_lock(out):
        check_out_dir(out)
        results: list[PackageResult] = []
        seen: dict[str, str] = {}
        for info in infos:
            try:
                deb, got = fetch(info, cache / "debs")
                tree, unpacked = unpack(deb, cache / "trees")
                r = scan_package(tree, info, cache / "members" / deb.stem, a.min_seconds, seen)
            except FetchError as e:
                print(f"{PROG}: error: {e}", file=sys.stderr)
                return 1
            results.append(r)
            _report(r, "cached" if got and unpacked else "cached, unpacked" if got
                    else "downloaded")
        if not any(r.tracks for r in results):
            print(f"{PROG}: error: no music found in {', '.join(packages)} (every audio file "
                  "was dropped; nothing written)", file=sys.stderr)
            return 1
        settings = {"packages": packages, "min_seconds": a.min_seconds,
                    "source": "Debian archive, through this machine's apt sources"}
        m = write_corpus(out, results, settings)
    t = m["totals"]
    print(f"wrote {a.out}: {t['tracks']} tracks, {t['hours']:.2f} h, {t['playlists']} "
          f"playlists from {len(results)} packages; dropped {t['dropped']} files (listed in "
          f"{a.out / 'manifest.json'})")
    print(f"next: python scripts/import_audio.py --audio-dir {a.out / 'audio'} --tracks "
          f"{a.out / 'tracks.csv'} --playlists {a.out / 'playlists.csv'} --out {a.out / 'melon'}")
    return 0


def _report(r: PackageResult, how: str) -> None:
    s = r.summary()
    dropped = ", ".join(f"{n} {k}" for k, n in sorted(s["dropped"].items())) or "none"
    lic = ", ".join(f"{k} {n}" for k, n in s["licences"].items()) or "-"
    print(f"{s['package']} {s['version']} ({how}): {s['tracks']} tracks, {s['hours']:.2f} h, "
          f"{len(s['composers'])} composers, licences {lic}; dropped {dropped}", file=sys.stderr)
    if not r.tracks:
        print(f"note: {s['package']}: no music kept", file=sys.stderr)
