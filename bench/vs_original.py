"""Side by side with the authors' trainer: one epoch of contrastive MF_gnr, whole processes.

    python bench/vs_original.py --original PATH [--tracks 640] [--repeats 3] [--work DIR] [--threads T]
    python bench/vs_original.py --original PATH --smoke      # a few tracks, one repeat: does it run?

PATH is a local copy of andrebola/contrastive-mir-learning (a clone, or ``git archive``
of one); it is never modified: it is copied into the work directory and the copy is
patched where the authors' code cannot run as it is (each patch is printed, see PATCHES).

One generated dataset in the layout both read (group ``dataset``: ``id`` (N, 1) int32,
``data`` (N, 1300, 48) float32, ``cf_data`` (N, 301) float32, ``label`` (N, 100) int16
-1 padded), plus genres.json and embedding_matrix_128.npy beside it. Then, interleaved
(original, ours, original, ours, ...), each a fresh interpreter in a fresh folder:

    original  train.py with its configs/contrastive_MF_gnr.json, where train/validation
              files point at the generated ones, epochs 1, batch_size 32, device cpu and
              log_interval 1 (one line per step, to count them); its working directory is
              the run folder (it reads embedding_matrix_128.npy and writes runs/ there)
    ours      train.py configs/contrastive_MF_gnr.json --set epochs=1 batch_size=32
              width=1.0 device=cpu num_workers=0 (bf16 "auto", the default)

Measured per process: wall seconds from start to exit (interpreter start, imports, data
loading, the epoch, validation, saving) and peak RSS from ``os.wait4`` of the process
(the largest resident size of it or of a child it waited for, e.g. the original's two
DataLoader workers; not summed). Both must exit 0 and train N // 32 steps, else exit 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from musicrep import layout
from musicrep.audio import N_MELS
from musicrep.data.genres import LABEL_WIDTH, GenreVocab

REPO = Path(__file__).resolve().parents[1]
BATCH = 32
ORIGINAL_FRAMES = 1300  # the original's data_loader draws crops from [0, 1300 - 256)
CF_DIM = 301  # the original's CFEncoder(301, 128)
N_GENRES = 249  # the authors' genre vocabulary (their embedding matrix has 250 rows)
ORIGINAL_CONFIG = "configs/contrastive_MF_gnr.json"
ORIGINAL_IMPORTS = ("torch", "numpy", "h5py", "librosa", "torch.utils.tensorboard")
GET_ORIGINAL = ("git clone https://github.com/andrebola/contrastive-mir-learning, "
                "then --original PATH_OF_THE_CLONE")


@dataclass(frozen=True)
class Patch:
    """One textual change to the scratch copy of the original; `when`: "always", or
    "cuda-build" (only when the interpreter's torch is built with CUDA)."""

    file: str
    old: str
    new: str
    why: str
    when: str = "always"


PATCHES = (
    Patch("trainer.py", "self.save_model_loc = '/data1/playlists/models/contrastive'",
          "self.save_model_loc = 'checkpoints'",
          "checkpoint folder hard-coded to /data1/playlists/models/contrastive (created with "
          "mkdir without parents: fails where /data1 is absent); now checkpoints/ in the run folder"),
    Patch("utils.py", "s = s * (1 - torch.eye(len(s), len(s)).cuda())",
          "s = s * (1 - torch.eye(len(s), len(s)).to(s.device))",
          "contrastive_loss moves its mask with .cuda() and falls back to the CPU only on the "
          "AssertionError of a CPU-only torch; a CUDA-built torch raises RuntimeError without "
          "a GPU, or puts the mask on the GPU while training runs on the CPU", "cuda-build"),
)


def write_dataset(root: Path, n_train: int, n_val: int, seed: int = 0) -> Path:
    """train.h5 and val.h5 in create_dataset's layout (the original's too), genres.json
    and the genre word2vec matrix; random mels (dB-like), 1-4 genres and a CF vector per track."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    ids = iter(range(n_train + n_val))
    for split, n in (("train", n_train), ("val", n_val)):
        with h5py.File(root / layout.split_file(split), "w") as f:
            g = f.create_group("dataset")
            g["id"] = np.array([[next(ids)] for _ in range(n)], dtype=np.int32)
            data = g.create_dataset("data", (n, ORIGINAL_FRAMES, N_MELS), dtype=np.float32)
            for start in range(0, n, 64):  # blocks of 64 tracks: 16 MB at a time
                rows = min(64, n - start)
                data[start:start + rows] = rng.normal(-30, 10, (rows, ORIGINAL_FRAMES, N_MELS))
            g["cf_data"] = rng.normal(0, 0.1, (n, CF_DIM)).astype(np.float32)
            label = np.full((n, LABEL_WIDTH), -1, dtype=np.int16)
            for i in range(n):
                k = int(rng.integers(1, 5))
                label[i, :k] = rng.choice(N_GENRES, size=k, replace=False)
            g["label"] = label
    codes = tuple(f"GN{i // 10 + 1:02d}{i % 10:02d}" for i in range(N_GENRES))
    (root / layout.GENRES).write_text(json.dumps(GenreVocab(codes, codes).to_json()))
    w2v = np.zeros((N_GENRES + 1, 128), dtype=np.float32)  # row 0: padding
    w2v[1:] = rng.normal(0, 0.3, (N_GENRES, 128))
    np.save(root / layout.GENRE_W2V, w2v)
    return root


def probe_python(python: str) -> bool:
    """Checks that `python` imports what the original imports; returns whether its torch
    is built with CUDA."""
    code = f"import {', '.join(ORIGINAL_IMPORTS)}; print(torch.backends.cuda.is_built())"
    r = subprocess.run([python, "-c", code], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{python} cannot import what the original needs ({', '.join(ORIGINAL_IMPORTS)}):\n"
                         + r.stderr.strip().splitlines()[-1])
    return r.stdout.strip().endswith("True")


def prepare_original(src: Path, dest: Path, cuda_build: bool) -> list[Patch]:
    """Copy the original to `dest` (without .git) and apply the patches it needs there."""
    if not (src / "train.py").is_file() or not (src / ORIGINAL_CONFIG).is_file():
        raise SystemExit(f"{src}: no train.py and {ORIGINAL_CONFIG}: not a copy of the original ({GET_ORIGINAL})")
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".git", "__pycache__"))
    applied = []
    for p in PATCHES:
        if p.when == "cuda-build" and not cuda_build:
            continue
        path = dest / p.file
        text = path.read_text()
        if text.count(p.old) != 1:
            raise SystemExit(f"{src / p.file}: expected one line {p.old!r} to patch; another version of the original?")
        path.write_text(text.replace(p.old, p.new))
        applied.append(p)
    return applied


def original_command(copy: Path, data: Path, run_dir: Path, python: str) -> list[str]:
    """The run folder (config, genre matrix, checkpoints/) and the command, run in it."""
    cfg = json.loads((copy / ORIGINAL_CONFIG).read_text())
    cfg.update(train_dataset_file=str(data / layout.split_file("train")),
               validation_dataset_file=str(data / layout.split_file("val")),
               epochs=1, batch_size=BATCH, device="cpu", log_interval=1)
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(cfg, indent=2))
    # Read from the working directory by the original (not a config key).
    (run_dir / layout.GENRE_W2V).symlink_to(data / layout.GENRE_W2V)
    return [python, str(copy / "train.py"), "config.json"]


def ours_command(data: Path, run_dir: Path) -> list[str]:
    return [sys.executable, str(REPO / "train.py"), str(REPO / "configs/contrastive_MF_gnr.json"), "--set",
            "epochs=1", f"batch_size={BATCH}", "width=1.0", "device=cpu", "num_workers=0",
            f"train_dataset_file={data / layout.split_file('train')}",
            f"validation_dataset_file={data / layout.split_file('val')}", f"save_dir={run_dir / 'save'}"]


def measure(cmd: list[str], run_dir: Path, env: dict[str, str]) -> dict:
    """Run `cmd` in `run_dir`; wall seconds, peak RSS (MB), exit code, output files."""
    run_dir.mkdir(parents=True, exist_ok=True)
    out, err = run_dir / "stdout.txt", run_dir / "stderr.txt"
    with open(out, "w") as fo, open(err, "w") as fe:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=run_dir, env=env, stdout=fo, stderr=fe)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    return {"wall_s": wall, "rss_mb": usage.ru_maxrss / 1024, "rc": os.waitstatus_to_exitcode(status),
            "stdout": out, "stderr": err}


def tail(path: Path, lines: int = 25) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def check_original(run: dict, steps: int) -> str | None:
    """None when the run trained `steps` steps and validated; else what went wrong."""
    text = run["stdout"].read_text(errors="replace")
    done = len(re.findall(r"^Train Epoch: 1 \[", text, flags=re.M))
    if done != steps or "====> Val average pairwise loss" not in text:
        return f"trained {done} steps (expected {steps}), validation {'ran' if 'Val' in text else 'missing'}"
    return None


def check_ours(run: dict, run_dir: Path, steps: int) -> str | None:
    """As check_original, from our run's last.pt; also records bf16_resolved."""
    from musicrep.training import run_files
    from musicrep.training.checkpoint import load_checkpoint

    out = run_dir / "save" / "contrastive_MF_gnr"
    try:
        ckpt = load_checkpoint(out / run_files.LAST)
        run["bf16"] = json.loads((out / run_files.CONFIG).read_text())["bf16_resolved"]
    except (OSError, ValueError, KeyError) as e:
        return f"no readable last.pt / config.json: {e}"
    if ckpt["global_step"] != steps or ckpt["epoch"] != 1:
        return f"trained {ckpt['global_step']} steps in {ckpt['epoch']} epochs (expected {steps} in 1)"
    return None


def machine() -> dict:
    """CPU model, cores, native bf16 (torch's detection and /proc/cpuinfo flags)."""
    from musicrep.precision import bf16_native

    import torch

    info = {"cpu": platform.processor() or platform.machine(), "flags": set()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                info["cpu"] = value.strip()
            elif key.strip() == "flags":
                info["flags"] = set(value.split())
    except OSError:
        pass
    caps = torch.cpu.get_capabilities()
    info.update(logical=os.cpu_count(), physical=caps.get("num_physical_cores"),
                bf16_native=bf16_native("cpu"), torch=torch.__version__,
                bf16_flags=sorted(info["flags"] & {"avx512_bf16", "amx_bf16"}) or ["none"])
    return info


def table(runs: dict[str, list[dict]], info: dict, args: argparse.Namespace, n_val: int,
          patches: list[Patch]) -> str:
    """The Markdown report: machine, setting, per-side medians and the ratios."""
    med = {s: {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "rss_mb")} for s, rs in runs.items()}
    bf16 = {r.get("bf16") for r in runs["ours"]}
    lines = [
        f"CPU: {info['cpu']}, {info['logical']} logical / {info['physical']} physical cores; "
        f"AVX512-BF16/AMX-BF16 flags: {', '.join(info['bf16_flags'])}; torch {info['torch']}, "
        f"native bf16 by torch's detection: {'yes' if info['bf16_native'] else 'no'}",
        f"ours: bf16 \"auto\" resolved to {'bf16 autocast' if bf16 == {True} else 'float32' if bf16 == {False} else bf16}",
        f"threads: {args.threads or 'torch default'}; {args.tracks} train / {n_val} val tracks x "
        f"{ORIGINAL_FRAMES} frames, batch {BATCH}, {args.tracks // BATCH} steps + validation, "
        f"{args.repeats} repeat(s) interleaved",
        "patches to the original: " + ("; ".join(f"{p.file}: {p.why}" for p in patches) or "none"),
        "",
        "| side | runs | wall s median | wall s min-max | peak RSS MB median | peak RSS MB min-max |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for side, rs in runs.items():
        w, m = [r["wall_s"] for r in rs], [r["rss_mb"] for r in rs]
        lines.append(f"| {side} | {len(rs)} | {med[side]['wall_s']:.1f} | {min(w):.1f}-{max(w):.1f} "
                     f"| {med[side]['rss_mb']:.0f} | {min(m):.0f}-{max(m):.0f} |")
    ratio = {k: med["original"][k] / med["ours"][k] for k in ("wall_s", "rss_mb")}
    lines.append(f"| **original / ours** | | **{ratio['wall_s']:.2f}** | | **{ratio['rss_mb']:.2f}** | |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--original", type=Path, help="a local copy of andrebola/contrastive-mir-learning")
    p.add_argument("--tracks", type=int, default=640, help="training tracks (steps: tracks // 32)")
    p.add_argument("--repeats", type=int, default=3, help="runs per side, interleaved")
    p.add_argument("--work", type=Path, help="scratch folder (kept); default a temp folder, removed")
    p.add_argument("--threads", type=int, help="OMP_NUM_THREADS for both sides (default: torch's own)")
    p.add_argument("--original-python", default=sys.executable, help="interpreter for the original")
    p.add_argument("--smoke", action="store_true", help="64 tracks, 1 repeat: checks that the script works")
    args = p.parse_args(argv)
    if args.smoke:
        args.tracks, args.repeats = 64, 1
    if args.tracks < BATCH:
        p.error(f"--tracks must be at least the batch size {BATCH}")
    return args


def run_all(args: argparse.Namespace, work: Path) -> int:
    """Data, the original's copy, the interleaved runs, the checks and the table."""
    n_val = max(1, args.tracks // 8 // BATCH) * BATCH  # whole batches: the original drops the rest
    steps = args.tracks // BATCH
    patches = prepare_original(args.original, work / "original", probe_python(args.original_python))
    for p in patches:
        print(f"patched {p.file}: {p.old!r} -> {p.new!r} ({p.why})")
    data = write_dataset(work / "data", args.tracks, n_val)
    env = dict(os.environ)
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    runs: dict[str, list[dict]] = {"original": [], "ours": []}
    for i in range(1, args.repeats + 1):
        for side in runs:
            run_dir = work / f"{side}_{i}"
            run_dir.mkdir()
            cmd = (original_command(work / "original", data, run_dir, args.original_python)
                   if side == "original" else ours_command(data, run_dir))
            run = measure(cmd, run_dir, env)
            problem = (f"exit code {run['rc']}" if run["rc"] != 0 else
                       check_original(run, steps) if side == "original" else check_ours(run, run_dir, steps))
            if problem:
                print(f"{side} run {i} failed: {problem}\n--- stderr tail:\n{tail(run['stderr'])}"
                      f"\n--- stdout tail:\n{tail(run['stdout'], 8)}", file=sys.stderr)
                return 1
            print(f"{side} run {i}: {run['wall_s']:.1f} s, peak RSS {run['rss_mb']:.0f} MB, {steps} steps", flush=True)
            runs[side].append(run)
    print()
    print(table(runs, machine(), args, n_val, patches))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.original is None:
        print(f"skipped: no --original copy given ({GET_ORIGINAL})")
        return 0
    args.original = args.original.resolve()
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
        if any(args.work.iterdir()):
            raise SystemExit(f"{args.work}: not empty (the runs need fresh folders)")
        return run_all(args, args.work.resolve())
    with tempfile.TemporaryDirectory(prefix="vs_original_") as tmp:
        return run_all(args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
