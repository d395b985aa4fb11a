"""Build a Melon-format directory from your own audio files, genre labels and playlists.

    python scripts/import_audio.py --audio-dir music/ --tracks tracks.csv \
        --playlists playlists.csv --out data/mine/melon [--workers N] \
        [--segment melon|start|full] [--min-frames 1300]

Then `scripts/create_dataset.py --melon-dir data/mine/melon ...` and everything after
runs unchanged. Tables and output layout: src/musicrep/data/importer.py and
docs/own-collection.md. Rerunning the same command resumes: finished
mels are reused. Unusable audio is skipped and listed in <out>/import_skipped.json.

Exit status: 0 done (even with skipped files); 1 no usable track at all, or writing
failed (disk full: one line naming the file; rerun to resume); 2 bad input (one line
naming the file, line and field), an --out that cannot be written or is (or holds) an
input, or another import writing the same --out; 130 Ctrl-C (one line; the mels
written so far are kept, a rerun resumes). --workers is at most the usable CPUs and the
tracks (a note says so when it asks for more).
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one BLAS thread per worker process

from ..data.importer import MIN_FRAMES, SEGMENTS, import_collection
from ..workers import usable_cpus
from .common import Parser, run

PROG = "import_audio"


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--audio-dir", type=Path, required=True, help="root of the paths in --tracks")
    p.add_argument("--tracks", type=Path, required=True,
                   help="track_id,path,genres[,artist,album,title] (.csv, or .tsv/.tab)")
    p.add_argument("--playlists", type=Path, required=True,
                   help="playlist_id,track_id[,title,tags] (.csv, or .tsv/.tab)")
    p.add_argument("--out", type=Path, required=True, help="Melon directory to create or resume")
    p.add_argument("--workers", type=int, default=usable_cpus(),
                   help="decoding processes, at most the usable CPUs (default %(default)s)")
    p.add_argument("--segment", choices=SEGMENTS, default="melon",
                   help="melon: 20-50 s (a file under 50 s gives its last 30 s); "
                   "start: first 30 s; full: whole file (default %(default)s)")
    p.add_argument("--min-frames", type=int, default=MIN_FRAMES,
                   help="skip tracks with fewer mel frames (create_dataset keeps %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    if a.workers < 0 or a.min_frames < 1:
        p.error("--workers must be >= 0 and --min-frames >= 1")
    return run(PROG, lambda: _import(a),
               interrupted=f"interrupted: the mels written so far are kept in {a.out}; "
                           "rerun the same command to resume")


def _import(a: argparse.Namespace) -> int:
    try:
        s = import_collection(a.audio_dir, a.tracks, a.playlists, a.out, workers=a.workers,
                              segment=a.segment, min_frames=a.min_frames, progress=not a.quiet)
    except (MemoryError, BrokenProcessPool) as e:  # a worker out of memory (killed or not)
        why = "out of memory" if isinstance(e, MemoryError) else "a decoding worker died"
        print(f"{PROG}: error: {why} (very long files with --segment full?); try fewer "
              "--workers and rerun: finished mels are reused", file=sys.stderr)
        return 1
    c = s["counts"]
    why = ", ".join(f"{k} {v}" for k, v in s["skipped_by_reason"].items()) or "none"
    print(f"wrote {a.out}: {c['usable']} of {c['tracks']} tracks with mels "
          f"({c['written']} computed, {c['reused']} reused), {c['playlists']} playlists, "
          f"{c['major_genres']} major + {c['detail_genres']} detail genres; "
          f"skipped {c['skipped']} ({why}; listed in {a.out / 'import_skipped.json'})"
          + ("; generated data" if s["generated"] else ""))
    if c["no_genre"]:
        print(f"note: {c['no_genre']} tracks have no genre label; create_dataset will skip them",
              file=sys.stderr)
    if c["usable"] == 0:
        print(f"{PROG}: error: no track has usable audio; nothing to train on", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
