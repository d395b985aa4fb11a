"""Is data loading the bottleneck of training? And does loading memory grow with the file?

1. Throughput, same process, same batch size, same Trainer:
     full step   = DataLoader over train.h5 (read crop, collate) + forward + backward + Adam
     model alone = forward + backward + Adam on one batch already in memory
     loader      = the DataLoader alone
   Full and model-only steps alternate one by one, so a shared machine's changing
   load affects both alike. The goal is full / model >= 0.9.
2. Peak RSS of iterating a DataLoader once over a 1,000-track and a 20,000-track
   train.h5, each measured in a fresh process: it should not grow with the file.

    python bench/train_throughput.py                       # small defaults, CPU-friendly
    python bench/train_throughput.py --width 1 --batch-size 128 --device cuda --bf16

The HDF5 files are written to a temporary directory (float16, --frames frames per
track to keep them small: 20,000 x 300 x 48 x 2 bytes = 576 MB) and removed after.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from musicrep.genres import LABEL_WIDTH
from musicrep.h5io import SplitWriter
from musicrep.melon import N_BANDS

N_GENRES = 30
CF_DIM = 301


def write_split(path: Path, n: int, frames: int, seed: int, cf: bool = True) -> None:
    """A split in create_dataset's layout, written in blocks (never all in RAM)."""
    rng = np.random.default_rng(seed)
    writer = SplitWriter(path, n, frames, CF_DIM if cf else None, "float16")
    for s in range(0, n, 1000):
        m = min(1000, n - s)
        lab = np.full((m, LABEL_WIDTH), -1, dtype=np.int16)
        k = rng.integers(1, 4, size=m)
        picks = np.argsort(rng.random((m, N_GENRES)), axis=1)[:, :3]
        lab[:, :3] = np.where(np.arange(3)[None, :] < k[:, None], picks, -1)
        writer.append(
            np.arange(s, s + m),
            rng.normal(-30, 10, size=(m, frames, N_BANDS)).astype(np.float16),
            lab,
            rng.normal(size=(m, CF_DIM)).astype(np.float32) if cf else None,
        )
    writer.close()


def write_dataset(out: Path, n_train: int, frames: int) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    write_split(out / "train.h5", n_train, frames, seed=0)
    write_split(out / "val.h5", 64, frames, seed=1)
    codes = [f"GN{i:04d}" for i in range(N_GENRES)]
    (out / "genres.json").write_text(
        json.dumps({"codes": codes, "names": codes, "major": [False] * N_GENRES})
    )
    emb = np.random.default_rng(2).normal(size=(N_GENRES + 1, 128)).astype(np.float32)
    emb[0] = 0
    np.save(out / "embedding_matrix_128.npy", emb)
    return out


def _status_mb(pid: str, field: str) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _pss_mb(pid: str) -> float:
    """Proportional set size: shared pages split among their users, so the sum over
    the main process and its workers is the memory they really take together."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _children() -> list[str]:
    pids = []
    for task in Path("/proc/self/task").iterdir():
        try:
            pids += (task / "children").read_text().split()
        except OSError:
            pass
    return pids


def rss_probe(train_file: str, batch_size: int, workers: int) -> None:
    """Child process: one pass of a DataLoader over the whole split; print memory.

    Peaks come from /proc (VmHWM, and PSS sampled every batch), not getrusage, whose
    ru_maxrss survives fork+exec and would report the parent's peak."""
    import torch
    from torch.utils.data import DataLoader

    from musicrep.config import build_config
    from musicrep.data import TrackDataset
    from musicrep.h5io import read_split_info
    from musicrep.views import make_views

    before = _status_mb("self", "VmRSS")
    cfg = build_config(
        {"experiment_name": "rss", "train_dataset_file": train_file, "validation_dataset_file": train_file,
         "objective": "contrastive", "encoder": "MF_gnr"},
    )
    views = make_views(cfg, read_split_info(train_file))
    ds = TrackDataset(train_file, views, ("audio", "cf", "genre_tokens", "genre_targets"))
    after_init = _status_mb("self", "VmRSS")
    peak_total = 0.0
    t0 = time.perf_counter()
    n = 0
    for i, batch in enumerate(
        DataLoader(
            ds,
            batch_size=batch_size,
            shuffle=True,
            num_workers=workers,
            generator=torch.Generator().manual_seed(0),
        )
    ):
        n += batch["audio"].shape[0]
        if i % 4 == 0:
            peak_total = max(peak_total, _pss_mb("self") + sum(_pss_mb(p) for p in _children()))
    seconds = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "tracks": len(ds),
                "samples": n,
                "before_mb": before,
                "after_init_mb": after_init,
                "peak_main_mb": _status_mb("self", "VmHWM"),
                "peak_total_pss_mb": peak_total,
                "samples_per_s": n / seconds,
            }
        )
    )


def throughput(args: argparse.Namespace, ds_dir: Path) -> dict[str, float]:
    import torch

    from musicrep.config import build_config
    from musicrep.trainer import Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = build_config(
        {
            "experiment_name": "bench",
            "train_dataset_file": str(ds_dir / "train.h5"),
            "validation_dataset_file": str(ds_dir / "val.h5"),
            "encoder": args.encoder,
            "objective": args.objective,
            "batch_size": args.batch_size,
            "width": args.width,
            "num_workers": args.workers,
            "device": args.device,
            "bf16": args.bf16,
            "channels_last": args.channels_last,
            "save_dir": str(ds_dir / "runs"),
        }
    )
    trainer = Trainer(cfg, log=lambda m: None)
    trainer.setup()
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
    warmup, steps = args.warmup, args.steps

    def batches(first_epoch: int) -> Iterator[dict]:
        """Batches of the real training loader, epoch after epoch."""
        epoch = first_epoch
        while True:
            yield from trainer.train_loader(epoch)
            epoch += 1

    def loader_rate(epoch: int) -> float:
        it = batches(epoch)
        next(it)
        t0 = time.perf_counter()
        n = 0
        for _ in range(steps):
            n += next(it)["audio"].shape[0]
        return n / (time.perf_counter() - t0)

    # Full steps and model-only steps alternate one by one (ABBA order), so that the
    # load of a shared machine, which drifts by the second, hits both alike.
    fixed = trainer._to_device(next(iter(trainer.train_loader(0))))  # in memory beforehand
    it = batches(1)
    for _ in range(warmup):
        trainer.train_step(next(it))
        trainer.train_step(fixed)
    times = {"full": 0.0, "model": 0.0}
    for i in range(2 * steps):
        kind = "full" if (i % 4) in (0, 3) else "model"
        sync()
        t0 = time.perf_counter()
        # full: read + crop + collate (+ copy to device) + step; model: step only
        trainer.train_step(next(it) if kind == "full" else fixed)
        sync()
        times[kind] += time.perf_counter() - t0
    n = steps * args.batch_size
    return {
        "model": n / times["model"],
        "full": n / times["full"],
        "loader": loader_rate(99),
        "device": str(trainer.device),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=20, help="timed steps of each kind")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="DataLoader workers for the full step. 0 (default) puts all loading on the "
        "critical path: the honest worst case. With workers, loading overlaps the "
        "model-only steps too, so the ratio is an upper bound.",
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--encoder", default="MF_gnr", choices=["MF", "gnr", "MF_gnr"])
    p.add_argument("--objective", default="contrastive", choices=["baseline", "contrastive"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="channels-last CNN (the config default; --no-channels-last to compare)")
    p.add_argument("--frames", type=int, default=300, help="frames per track in the written files")
    p.add_argument("--rss-sizes", default="1000,20000", help="tracks in the RSS files ('' to skip)")
    p.add_argument("--rss-workers", type=int, default=2)
    p.add_argument("--tmp", default=None, help="where to write the files (default: a temp dir)")
    p.add_argument(
        "--rss-probe", nargs=3, metavar=("FILE", "BATCH", "WORKERS"), help=argparse.SUPPRESS
    )
    args = p.parse_args()
    if args.rss_probe:
        rss_probe(args.rss_probe[0], int(args.rss_probe[1]), int(args.rss_probe[2]))
        return

    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="musicrep-bench-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        ds_dir = write_dataset(tmp / "small", 1000, args.frames)
        print(f"wrote 1,000-track dataset in {time.perf_counter() - t0:.1f}s", flush=True)
        tp = throughput(args, ds_dir)

        rss_rows = []
        for n in [int(s) for s in args.rss_sizes.split(",") if s]:
            d = ds_dir if n == 1000 else tmp / f"n{n}"
            if n != 1000:
                t0 = time.perf_counter()
                write_dataset(d, n, args.frames)
                print(f"wrote {n:,}-track train.h5 in {time.perf_counter() - t0:.1f}s", flush=True)
            size_mb = (d / "train.h5").stat().st_size / 2**20
            r = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--rss-probe",
                    str(d / "train.h5"),
                    str(args.batch_size),
                    str(args.rss_workers),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            row = json.loads(r.stdout.strip().splitlines()[-1])
            row["file_mb"] = size_mb
            rss_rows.append(row)

    print()
    print(
        f"Training step throughput  (width {args.width}, batch {args.batch_size}, {args.objective} {args.encoder}, "
        f"device {tp['device']}, {tp['threads']} torch threads, {args.workers} loader workers, "
        f"{args.steps} steps each, interleaved)"
    )
    print("| measurement                                   | samples/s |")
    print("|-----------------------------------------------|----------:|")
    print(f"| full step (HDF5 read + crop + fwd/bwd/Adam)   | {tp['full']:9.1f} |")
    print(f"| model alone (fwd/bwd/Adam, batch in memory)   | {tp['model']:9.1f} |")
    print(f"| DataLoader alone                              | {tp['loader']:9.1f} |")
    ratio = tp["full"] / tp["model"]
    print(f"| ratio full / model (goal >= 0.9)              | {ratio:9.2f} |")
    if rss_rows:
        print()
        print(
            f"Peak RSS of one DataLoader pass over train.h5  (batch {args.batch_size}, {args.rss_workers} workers, "
            f"{args.frames} frames/track, float16)"
        )
        print(
            "| tracks | file MB | RSS before MB | RSS after init MB | peak RSS main MB | peak PSS main+workers MB | samples/s |"
        )
        print(
            "|-------:|--------:|--------------:|------------------:|-----------------:|-------------------------:|----------:|"
        )
        for r in rss_rows:
            print(
                f"| {r['tracks']:6d} | {r['file_mb']:7.0f} | {r['before_mb']:13.0f} | {r['after_init_mb']:17.0f} "
                f"| {r['peak_main_mb']:16.0f} | {r['peak_total_pss_mb']:24.0f} | {r['samples_per_s']:9.0f} |"
            )


if __name__ == "__main__":
    main()
