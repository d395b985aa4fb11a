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
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from musicrep.data.genres import LABEL_WIDTH
from musicrep.data.h5io import SplitWriter
from musicrep.audio import N_MELS

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
            rng.normal(-30, 10, size=(m, frames, N_MELS)).astype(np.float16),
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

    from musicrep.training.config import build_config
    from musicrep.training.dataset import TrackDataset
    from musicrep.data.h5io import read_split_info
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


def make_trainer(ds_dir: Path, args: argparse.Namespace, width: float, batch: int, bf16: bool,
                 workers: int = 0):
    """A set-up Trainer over the bench dataset (same seed, so same initial weights)."""
    from musicrep.training.config import build_config
    from musicrep.training.trainer import Trainer

    cfg = build_config(
        {
            "experiment_name": "bench",
            "train_dataset_file": str(ds_dir / "train.h5"),
            "validation_dataset_file": str(ds_dir / "val.h5"),
            "encoder": args.encoder,
            "objective": args.objective,
            "batch_size": batch,
            "width": width,
            "num_workers": workers,
            "device": args.device,
            "bf16": bf16,
            "channels_last": args.channels_last,
            "save_dir": str(ds_dir / "runs"),
        }
    )
    trainer = Trainer(cfg, log=lambda m: None)
    trainer.setup()
    return trainer


def batches(trainer, first_epoch: int) -> Iterator[dict]:
    """Batches of the trainer's real training loader, epoch after epoch."""
    epoch = first_epoch
    while True:
        yield from trainer.train_loader(epoch)
        epoch += 1


CLOCK: Callable[[], float] = time.perf_counter  # --clock cpu: time.process_time


def interleaved(kinds: dict[str, Callable[[], int]], rounds: int, sync: Callable[[], None]
                ) -> dict[str, float]:
    """samples/s of each kind, the kinds run one step each per round in a rotating order,
    so that a shared machine's drifting load hits all of them alike. With --clock cpu
    the seconds are this process's CPU time: on one thread, time waiting for a core
    taken by other programs does not count (worker processes' CPU time is not seen)."""
    names = list(kinds)
    seconds = dict.fromkeys(names, 0.0)
    samples = dict.fromkeys(names, 0)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            sync()
            t0 = CLOCK()
            samples[name] += kinds[name]()
            sync()
            seconds[name] += CLOCK() - t0
    return {n: samples[n] / seconds[n] for n in names}


def precision_throughput(args: argparse.Namespace, ds_dir: Path, width: float, batch: int,
                         steps: int) -> list[dict[str, float]]:
    """fp32 and bf16, full step and model alone, interleaved: one dict per repeat."""
    import torch

    kinds: dict[str, Callable[[], int]] = {}
    for bf16 in (False, True):
        tr = make_trainer(ds_dir, args, width, batch, bf16)
        fixed = tr.to_device(next(iter(tr.train_loader(0))))  # in memory beforehand
        it = batches(tr, 1)
        tag = "bf16" if bf16 else "fp32"

        def full(tr=tr, it=it) -> int:  # read + crop + collate (+ copy) + step
            b = next(it)
            tr.train_step(b)
            return b["audio"].shape[0]

        def model(tr=tr, fixed=fixed) -> int:  # step only
            tr.train_step(fixed)
            return fixed["audio"].shape[0]

        kinds[f"{tag} full"], kinds[f"{tag} model"] = full, model
        for _ in range(args.warmup):
            full(), model()
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    return [interleaved(kinds, steps, sync) for _ in range(args.repeats)]


def knob_threads(args: argparse.Namespace, ds_dir: Path, width: float, batch: int,
                 steps: int) -> list[dict[str, float]]:
    """Model-alone bf16 steps with 1 and 2 torch threads, interleaved."""
    import torch

    tr = make_trainer(ds_dir, args, width, batch, True)
    fixed = tr.to_device(next(iter(tr.train_loader(0))))
    default = torch.get_num_threads()

    def step_with(n: int) -> Callable[[], int]:
        def run() -> int:
            torch.set_num_threads(n)
            tr.train_step(fixed)
            torch.set_num_threads(default)
            return batch
        return run

    kinds = {f"{n} threads": step_with(n) for n in sorted({1, default})}
    for k in kinds.values():
        k()
    return [interleaved(kinds, steps, lambda: None) for _ in range(args.repeats)]


def knob_workers(args: argparse.Namespace, ds_dir: Path, width: float, batch: int,
                 steps: int) -> list[dict[str, float]]:
    """Full bf16 steps with 0, 1, 2 DataLoader workers. Each measurement is `steps`
    consecutive steps from a fresh loader (worker start-up included, as in every epoch
    of training), the worker counts in a rotating order."""
    tr = make_trainer(ds_dir, args, width, batch, True)
    fixed = tr.to_device(next(iter(tr.train_loader(0))))
    tr.train_step(fixed)

    def run_with(w: int) -> Callable[[], int]:
        def run() -> int:
            tr.cfg.num_workers = w  # read when the loader is built
            it = iter(tr.train_loader(7))
            for _ in range(steps):
                tr.train_step(next(it))
            del it
            return steps * batch
        return run

    def model_alone() -> int:
        for _ in range(steps):
            tr.train_step(fixed)
        return steps * batch

    kinds = {"model alone": model_alone} | {f"{w} workers": run_with(w) for w in (0, 1, 2)}
    return [interleaved(kinds, 2, lambda: None) for _ in range(args.repeats)]


def knob_compile(args: argparse.Namespace, ds_dir: Path, width: float, batch: int,
                 steps: int) -> tuple[float, list[dict[str, float]]]:
    """Model-alone bf16 steps, eager against torch.compile (inductor); compile seconds."""
    import torch

    eager = make_trainer(ds_dir, args, width, batch, True)
    comp = make_trainer(ds_dir, args, width, batch, True)
    comp.ddp_model = torch.compile(comp.model)
    fixed = eager.to_device(next(iter(eager.train_loader(0))))
    t0 = time.perf_counter()
    for _ in range(2):  # first call compiles forward and backward
        comp.train_step(fixed)
    compile_s = time.perf_counter() - t0
    eager.train_step(fixed)
    def step_of(tr) -> Callable[[], int]:
        def run() -> int:
            tr.train_step(fixed)
            return batch
        return run

    kinds = {"eager": step_of(eager), "compiled": step_of(comp)}
    return compile_s, [interleaved(kinds, steps, lambda: None) for _ in range(args.repeats)]


def spread(values: list[float]) -> str:
    """median [min-max] of a list of figures."""
    v = sorted(values)
    return f"{v[len(v) // 2]:.2f} [{v[0]:.2f}-{v[-1]:.2f}]"


def print_rows(title: str, reps: list[dict[str, float]], ratios: dict[str, tuple[str, str]]) -> None:
    """One table: samples/s per kind (median over repeats) and ratios with their spread."""
    print(f"\n{title}  ({len(reps)} repeats: median [min-max])")
    print("| measurement | samples/s |")
    print("|---|---:|")
    for k in reps[0]:
        print(f"| {k} | {spread([r[k] for r in reps])} |")
    for label, (num, den) in ratios.items():
        print(f"| **{label}** | **{spread([r[num] / r[den] for r in reps])}** |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--settings",
        default="0.25:16:20,1.0:32:4",
        help="comma-separated width:batch:steps; steps = timed steps of each kind per repeat",
    )
    p.add_argument("--repeats", type=int, default=3, help="repeats of each interleaved measurement")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument(
        "--knobs",
        default="",
        help="also measure, at the first setting with bf16: any of threads,workers,compile",
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument(
        "--clock",
        default="wall",
        choices=["wall", "cpu"],
        help="wall: elapsed seconds; cpu: this process's CPU seconds (use with --threads 1 "
        "on a loaded machine: waiting for a core then does not count)",
    )
    p.add_argument("--encoder", default="MF_gnr", choices=["MF", "gnr", "MF_gnr"])
    p.add_argument("--objective", default="contrastive", choices=["baseline", "contrastive"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="channels-last CNN (the config default; --no-channels-last to compare)")
    p.add_argument("--frames", type=int, default=300, help="frames per track in the written files")
    p.add_argument("--rss-sizes", default="", help="tracks in the RSS files, e.g. 1000,20000 ('' skips)")
    p.add_argument("--rss-workers", type=int, default=2)
    p.add_argument("--tmp", default=None, help="where to write the files (default: a temp dir)")
    p.add_argument(
        "--rss-probe", nargs=3, metavar=("FILE", "BATCH", "WORKERS"), help=argparse.SUPPRESS
    )
    args = p.parse_args()
    if args.rss_probe:
        rss_probe(args.rss_probe[0], int(args.rss_probe[1]), int(args.rss_probe[2]))
        return
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    settings = []
    for item in args.settings.split(","):
        w, b, n = item.split(":")
        settings.append((float(w), int(b), int(n)))
    knobs = {k for k in args.knobs.split(",") if k}
    if knobs - {"threads", "workers", "compile"}:
        p.error(f"--knobs: unknown {sorted(knobs - {'threads', 'workers', 'compile'})}")

    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="musicrep-bench-") as tmp:
        tmp = Path(tmp)
        ds_dir = write_dataset(tmp / "small", 1000, args.frames)
        head = (f"{args.objective} {args.encoder}, device {args.device}, "
                f"{torch.get_num_threads()} torch threads, 0 loader workers, {args.clock} clock")
        from flops import cnn_flops, matmul_peak

        peak = {tag: matmul_peak(dt, clock=CLOCK)
                for tag, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
        for width, batch, steps in settings:
            reps = precision_throughput(args, ds_dir, width, batch, steps)
            print_rows(
                f"Training steps, width {width}, batch {batch}, {head}, {steps} steps of each kind",
                reps,
                {
                    "bf16 / fp32, full step": ("bf16 full", "fp32 full"),
                    "bf16 / fp32, model alone": ("bf16 model", "fp32 model"),
                    "full / model, fp32 (goal >= 0.9)": ("fp32 full", "fp32 model"),
                    "full / model, bf16 (goal >= 0.9)": ("bf16 full", "bf16 model"),
                },
            )
            flops = cnn_flops(width, train=True)
            print(f"\nCNN training FLOPs at width {width}: {flops / 1e9:.3f} GFLOP/sample; "
                  "fraction of the matmul peak measured in this run (model alone, median):")
            for tag in ("fp32", "bf16"):
                rate = sorted(r[f"{tag} model"] for r in reps)[len(reps) // 2]
                print(f"  {tag}: {rate * flops / 1e9:.1f} GFLOP/s of {peak[tag] / 1e9:.1f} "
                      f"= {rate * flops / peak[tag]:.0%}")
        width, batch, steps = settings[0]
        where = f"width {width}, batch {batch}, bf16"
        if "threads" in knobs:
            reps = knob_threads(args, ds_dir, width, batch, steps)
            names = list(reps[0])
            print_rows(f"Model-alone steps by torch threads, {where}", reps,
                       {f"{names[-1]} / {names[0]}": (names[-1], names[0])} if len(names) > 1 else {})
        if "workers" in knobs:
            reps = knob_workers(args, ds_dir, width, batch, steps)
            print_rows(
                f"Full steps by DataLoader workers ({steps} steps from a fresh loader), {where}",
                reps,
                {f"full / model, {w} workers": (f"{w} workers", "model alone") for w in (0, 1, 2)},
            )
        if "compile" in knobs:
            compile_s, reps = knob_compile(args, ds_dir, width, batch, steps)
            print_rows(f"Model-alone steps, torch.compile (first 2 steps: {compile_s:.0f} s), {where}",
                       reps, {"compiled / eager": ("compiled", "eager")})

        rss_rows = []
        for n in [int(s) for s in args.rss_sizes.split(",") if s]:
            d = ds_dir if n == 1000 else tmp / f"n{n}"
            if n != 1000:
                write_dataset(d, n, args.frames)
            size_mb = (d / "train.h5").stat().st_size / 2**20
            r = subprocess.run(
                [sys.executable, __file__, "--rss-probe", str(d / "train.h5"),
                 str(settings[0][1]), str(args.rss_workers)],
                capture_output=True,
                text=True,
                check=True,
            )
            row = json.loads(r.stdout.strip().splitlines()[-1])
            row["file_mb"] = size_mb
            rss_rows.append(row)

    if rss_rows:
        print()
        print(
            f"Peak RSS of one DataLoader pass over train.h5  (batch {settings[0][1]}, {args.rss_workers} workers, "
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
