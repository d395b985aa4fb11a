"""Can the training loader feed a GPU? The loader alone, per worker, before and after
the field cache.

    python bench/loader.py [--tracks 2048] [--frames 1300] [--dtype float32] [--workers 0,1,2]

Writes a train.h5 in create_dataset's default layout (float32, 1,300 frames per track,
one HDF5 chunk per track) and iterates whole epochs of the trainer's own training
DataLoader (contrastive MF_gnr fields: crop, CF vector and flag, genre tokens; collate;
batch 128), timing samples/s. Two datasets, epochs alternating so a shared machine's
load hits both alike:

    lookup   each item looks its fields up by name in the HDF5 group (h5py's name
             lookup costs about as much as reading the crop): the code before
    cached   each process looks the split's datasets up once (training/dataset.py)

The figure to compare with is what a GPU step consumes (bench/README.md, "GPU check":
an H200 trains width 1.0 at about 10,900 samples/s in bf16, 8,100 in fp32).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gpu_check import write_data
from train_throughput import make_trainer


def epoch_rate(tr, epoch: int) -> float:
    t0, n = time.perf_counter(), 0
    for b in tr.train_loader(epoch):
        n += b["audio"].shape[0]
    return n / (time.perf_counter() - t0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tracks", type=int, default=2048)
    p.add_argument("--frames", type=int, default=1300)
    p.add_argument("--workers", default="0,1,2")
    p.add_argument("--rounds", type=int, default=3, help="epochs of each kind per worker count")
    p.add_argument("--batch", type=int, default=128)
    a = p.parse_args()
    import torch

    from musicrep.training.dataset import TrackDataset

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    caps = torch.cpu.get_capabilities()
    print(f"CPU {cpu}, AVX512-BF16: {bool(caps.get('avx512_bf16'))}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory(prefix="musicrep-loader-") as tmp:
        ds = write_data(Path(tmp) / "ds", a.tracks, a.frames)
        args = argparse.Namespace(encoder="MF_gnr", objective="contrastive", device="cpu", channels_last=True)
        cached = make_trainer(ds, args, 0.125, a.batch, False)
        lookup = make_trainer(ds, args, 0.125, a.batch, False)
        old = lookup.train_set

        def group_lookup(self=old):  # the code before: the raw group, fields looked up per item
            TrackDataset._group(self)
            return self._h5["dataset"]

        old._group = group_lookup
        print(f"{a.tracks} tracks x {a.frames} frames float32, batch {a.batch}, whole epochs "
              f"({a.tracks // a.batch} batches, worker start-up included), {a.rounds} rounds\n")
        print("| workers | lookup samples/s | cached samples/s | cached / lookup | cached per worker |")
        print("|---:|---:|---:|---:|---:|")
        for w in (int(x) for x in a.workers.split(",")):
            rates: dict[str, list[float]] = {"lookup": [], "cached": []}
            for r in range(a.rounds):
                for name, tr in (("lookup", lookup), ("cached", cached))[:: 1 if r % 2 else -1]:
                    tr.cfg.num_workers = w
                    rates[name].append(epoch_rate(tr, 10 + r))
            lk, ca = (float(np.median(rates[k])) for k in ("lookup", "cached"))
            print(f"| {w} | {lk:,.0f} | {ca:,.0f} | {ca / lk:.2f} | {ca / max(w, 1):,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
