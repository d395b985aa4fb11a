"""Benchmark create_dataset: tracks/s and peak RSS on generated corpora of two sizes.

    python bench/create_dataset.py [--sizes 5000 20000] [--frames 700] [--dataset-frames 512]

Each size runs in its own process, so its peak RSS is its own. Streaming means the peak
must not grow with the corpus: the mels pass through in batches, only the metadata
(a few bytes per track) scales with the number of tracks.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def child(melon: str, out: str, frames: int, workers: int) -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from musicrep.data.builder import DatasetArgs, create_dataset

    t = time.perf_counter()
    m = create_dataset(DatasetArgs(melon, out, frames=frames, workers=workers, cf_factors=300,
                                   cf_epochs=10))
    dt = time.perf_counter() - t
    n = sum(m["counts"][f"{s}_tracks"] for s in ("train", "val", "test"))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"tracks": n, "seconds": dt, "peak_rss_mb": peak_mb}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000])
    p.add_argument("--frames", type=int, default=700, help="frames per generated mel")
    p.add_argument("--dataset-frames", type=int, default=512, help="create_dataset --frames")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        child(a.child[0], a.child[1], a.dataset_frames, a.workers)
        return
    from musicrep.toy.melon import make_toy_melon

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in a.sizes:
            melon, out = Path(tmp) / f"melon{n}", Path(tmp) / f"ds{n}"
            t = time.perf_counter()
            make_toy_melon(melon, songs=n, playlists=n // 2, frames=a.frames, seed=0)
            gen = time.perf_counter() - t
            r = subprocess.run([sys.executable, __file__, "--child", str(melon), str(out),
                                "--dataset-frames", str(a.dataset_frames), "--workers",
                                str(a.workers)], capture_output=True, text=True, check=True)
            res = json.loads(r.stdout.strip().splitlines()[-1])
            rows.append({"songs": n, "generate_s": gen, **res})
            shutil.rmtree(melon)
            shutil.rmtree(out)
    print(f"create_dataset, generated corpus ({a.frames} frames/mel -> {a.dataset_frames} kept), "
          f"{a.workers} reader threads, CF: BPR 300 factors, 10 epochs")
    print(f"{'songs':>7} {'tracks':>7} {'gen s':>7} {'build s':>8} {'tracks/s':>9} {'peak RSS MB':>12}")
    for r in rows:
        print(f"{r['songs']:>7} {r['tracks']:>7} {r['generate_s']:>7.1f} {r['seconds']:>8.1f} "
              f"{r['tracks'] / r['seconds']:>9.0f} {r['peak_rss_mb']:>12.0f}")
    if len(rows) > 1:
        print(f"peak RSS ratio largest/smallest: {rows[-1]['peak_rss_mb'] / rows[0]['peak_rss_mb']:.2f} "
              f"for {rows[-1]['songs'] / rows[0]['songs']:.0f}x the tracks")


if __name__ == "__main__":
    main()
