"""Assemble a corpus of real music from Debian's free game soundtracks, as the input of
scripts/import_audio.py (audio + tracks.csv + playlists.csv + manifest.json).

    python scripts/real_music.py --out data/real_music [--cache DIR] [--packages A,B,...]
        [--min-seconds 30] [--scores N [--score-seconds 30] [--score-seed 0]
        [--score-timeout 60]]
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

--scores N adds compositions from music21's corpus rendered to audio: up to N scores per
label, the labels being four eras (medieval, renaissance, baroque, classical) and four
fiddle-tune forms (reel, jig, hornpipe, strathspey), so 8 x N renders of --score-seconds
each (~3 s of CPU a score). Each part plays a General MIDI instrument drawn per work,
independently of the label; fluidsynth renders it with the FluidR3 GM soundfont of
Debian's fluid-soundfont-gm (fetched into the cache like the soundtracks). Renders are
cached (OUT/cache/scores) and a rerun skips them; scores that fail are listed with their
reason in the manifest. `--packages ""` with --scores gives a corpus of scores only.
The default (--scores 0) renders nothing and needs neither music21 nor fluidsynth.

Exit status: 0 done; 2 no apt-get/apt-cache/dpkg-deb on this machine, a package apt does
not know (run `apt-get update` once), --scores without music21 or fluidsynth (the line
says what to install), or an --out holding files this tool did not write or that cannot
be written (one line each); 1 a download or unpack failed, writing failed, or no music
was found; 130 Ctrl-C (downloads, unpacked packages and renders finished so far are
kept; rerun to resume).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data.debian import FetchError, PackageInfo, candidate, fetch, require_tools, unpack
from ..data.real_corpus import (
    DEFAULT_PACKAGES,
    MIN_SECONDS,
    PackageResult,
    check_out_dir,
    scan_package,
    write_corpus,
)
from ..data.score_render import (
    SOUNDFONT_PACKAGE,
    Renderer,
    RenderSettings,
    Tools,
    check_tools,
    fetch_soundfont,
)
from ..data.score_set import ScoreSet, render_scores
from ..data.scores import list_scores, render_order
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
    p.add_argument("--scores", type=int, default=0, metavar="N",
                   help="also render up to N music21 scores per era and per fiddle-tune form "
                        "(default 0: none)")
    p.add_argument("--score-seconds", type=float, default=30.0,
                   help="length of each rendered window (default %(default)s)")
    p.add_argument("--score-seed", type=int, default=0,
                   help="seed of the selection and of the instruments (default %(default)s)")
    p.add_argument("--score-timeout", type=float, default=60.0,
                   help="seconds one score may take before it is recorded as failed "
                        "(default %(default)s)")
    a = p.parse_args(argv)
    packages = list(dict.fromkeys(x.strip() for x in a.packages.split(",") if x.strip()))
    if not packages and a.scores <= 0:
        p.error("--packages names no package (and no --scores to render)")
    if a.min_seconds < 0:
        p.error("--min-seconds must be >= 0")
    if a.scores < 0:
        p.error("--scores must be >= 0")
    if not 5 <= a.score_seconds <= 600:
        p.error("--score-seconds must be between 5 and 600")
    if a.score_timeout <= 0:
        p.error("--score-timeout must be > 0")
    return run(PROG, lambda: _build(a, packages),
               interrupted="interrupted: the packages fetched and scores rendered so far are "
                           "kept in the cache; rerun the same command to resume")


def _build(a: argparse.Namespace, packages: list[str]) -> int:
    require_tools()
    out = a.out.resolve()
    cache = (a.cache or a.out / "cache").resolve()
    check_out_dir(out)
    tools = check_tools() if a.scores else None  # music21 and fluidsynth, before any download
    infos = [candidate(name) for name in packages]  # every name checked before any download
    font = candidate(SOUNDFONT_PACKAGE) if a.scores else None
    for d in (out.parent, cache):
        e = write_error(d)
        if e is not None:
            raise ConfigError(f"{d}: cannot write there ({e.strerror or type(e).__name__})")
    with output_lock(out):
        check_out_dir(out)
        results: list[PackageResult] = []
        seen: dict[str, str] = {}
        try:
            for info in infos:
                deb, got = fetch(info, cache / "debs")
                tree, unpacked = unpack(deb, cache / "trees")
                r = scan_package(tree, info, cache / "members" / deb.stem, a.min_seconds, seen)
                results.append(r)
                _report(r, "cached" if got and unpacked else "cached, unpacked" if got
                        else "downloaded")
            scores = _render(a, tools, font, cache) if tools and font else None
        except FetchError as e:
            print(f"{PROG}: error: {e}", file=sys.stderr)
            return 1
        if not any(r.tracks for r in results) and not (scores and scores.tracks):
            print(f"{PROG}: error: no music found in {', '.join(packages) or 'the scores'} "
                  "(every audio file was dropped or failed; nothing written)", file=sys.stderr)
            return 1
        settings = {"packages": packages, "min_seconds": a.min_seconds,
                    "source": "Debian archive, through this machine's apt sources"}
        m = write_corpus(out, results, settings, scores)
    t = m["totals"]
    print(f"wrote {a.out}: {t['tracks']} tracks, {t['hours']:.2f} h, {t['playlists']} "
          f"playlists from {len(results)} packages"
          + (f" and {t['scores']} rendered scores ({t['score_failures']} failed)"
             if scores is not None else "")
          + f"; dropped {t['dropped']} files (listed in {a.out / 'manifest.json'})")
    print(f"next: python scripts/import_audio.py --audio-dir {a.out / 'audio'} --tracks "
          f"{a.out / 'tracks.csv'} --playlists {a.out / 'playlists.csv'} --out {a.out / 'melon'}")
    return 0


def _render(a: argparse.Namespace, tools: Tools, font: PackageInfo, cache: Path) -> ScoreSet:
    """The rendered scores: the soundfont fetched, the selection made, each score rendered
    or taken from the cache, and a summary line on stderr."""
    soundfont = fetch_soundfont(cache, font)
    renderer = Renderer(*tools, soundfont)
    scores, left_out = list_scores(tools.corpus)
    settings = RenderSettings(a.scores, a.score_seconds, a.score_seed, a.score_timeout)
    ss = render_scores(render_order(scores, a.score_seed), settings, renderer,
                       cache / "scores", progress=True)
    ss.left_out = left_out
    c = ss.counts()
    per = ", ".join(f"{k} {n}" for k, n in sorted({**c["era"], **c["form"]}.items()))
    print(f"music21 {tools.music21_version} scores: {len(ss.tracks)} rendered ({per}), {ss.reused} from "
          f"the cache, {len(ss.failures)} failed, {ss.seconds:.0f} s rendering; soundfont "
          f"{soundfont.package.name} {soundfont.package.version} ({soundfont.licence})",
          file=sys.stderr)
    return ss


def _report(r: PackageResult, how: str) -> None:
    s = r.summary()
    dropped = ", ".join(f"{n} {k}" for k, n in sorted(s["dropped"].items())) or "none"
    lic = ", ".join(f"{k} {n}" for k, n in s["licences"].items()) or "-"
    print(f"{s['package']} {s['version']} ({how}): {s['tracks']} tracks, {s['hours']:.2f} h, "
          f"{len(s['composers'])} composers, licences {lic}; dropped {dropped}", file=sys.stderr)
    if not r.tracks:
        print(f"note: {s['package']}: no music kept", file=sys.stderr)
