"""The prepared device check: run through bench/gpu_check.sh (which sets the paths).

Makes its own small data (a train.h5 in create_dataset's default layout: float32, 1,300
frames per track), then measures, each section on its own so one failure does not sink
the rest (a failed section is written as such, and the exit status is 1):

  training   samples/s at width 1.0, batch 128 (contrastive MF_gnr), fp32 and bf16: the
             model alone (a batch already in GPU memory) and full steps (the trainer's
             own HDF5 DataLoader with 0, 4, 8, 16 workers); the loader alone per worker
             count (read, crop, genre tokens, collate, pinned copy to the GPU); the
             loader's share of a full step; peak GPU memory; FLOP fraction of the GPU's
             measured bf16 matmul peak.
  encoding   seconds of audio per second, decode included (files -> embeddings, as
             encode.py) and excluded (mel frames already in memory -> embeddings).
  ddp        torchrun --nproc_per_node=N on the GPUs present: the trainer's fit under
             DDP and the global-batch NT-Xent gather checked against the ungathered loss.

--dry-run runs every section on the CPU at tiny sizes (the suite's check of this file).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import torch

from flops import cnn_flops
from train_throughput import make_trainer

ROOT = Path(__file__).resolve().parents[1]
NOMINAL_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense, datasheets


def sizes(dry: bool) -> dict:
    if dry:
        return dict(tracks=48, frames=300, width=0.125, batch=8, workers=(0, 1), steps=3,
                    warm=1, files=2, seconds=6.0, ddp_steps=2)
    return dict(tracks=8192, frames=1300, width=1.0, batch=128, workers=(0, 4, 8, 16),
                steps=20, warm=3, files=24, seconds=30.0, ddp_steps=20)


def write_data(out: Path, n: int, frames: int, n_val: int = 64) -> Path:
    """train.h5 / val.h5 / genres.json / embedding_matrix_128.npy, random but well formed."""
    rng = np.random.default_rng(0)
    out.mkdir(parents=True, exist_ok=True)
    n_genres = 30
    for split, count in (("train", n), ("val", n_val)):
        with h5py.File(out / f"{split}.h5", "w") as f:
            g = f.create_group("dataset")
            g["id"] = np.arange(count, dtype=np.int32)[:, None]
            data = g.create_dataset("data", (count, frames, 48), np.float32, chunks=(1, frames, 48))
            for s in range(0, count, 256):
                m = min(256, count - s)
                data[s:s + m] = rng.standard_normal((m, frames, 48), dtype=np.float32) * 10 - 30
            label = np.full((count, 100), -1, dtype=np.int16)
            label[:, :3] = np.argsort(rng.random((count, n_genres)), axis=1)[:, :3]
            g["label"] = label
            g["cf_data"] = rng.standard_normal((count, 301), dtype=np.float32)
    codes = [f"GN{i + 1:02d}00" for i in range(n_genres)]
    (out / "genres.json").write_text(json.dumps({"codes": codes, "names": codes, "major": [True] * n_genres}))
    emb = rng.standard_normal((n_genres + 1, 128)).astype(np.float32)
    emb[0] = 0
    np.save(out / "embedding_matrix_128.npy", emb)
    return out


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def rate(fn: Callable[[], int], n: int, warm: int, device: str) -> float:
    """samples/s of `fn` (returns samples done) over n calls after `warm` untimed ones."""
    for _ in range(warm):
        fn()
    sync(device)
    t0, done = time.perf_counter(), 0
    for _ in range(n):
        done += fn()
    sync(device)
    return done / (time.perf_counter() - t0)


def epoch_rate(tr, epoch: int, step: bool, device: str) -> float:
    """samples/s of one whole epoch of the trainer's loader from a fresh iterator (worker
    start-up included, as in training), with a training step per batch or (loader alone)
    only the pinned copy to the device."""
    sync(device)
    t0, done = time.perf_counter(), 0
    for b in tr.train_loader(epoch):
        if step:
            tr.train_step(b)
        else:
            tr.to_device(b)
        done += b["audio"].shape[0]
    sync(device)
    return done / (time.perf_counter() - t0)


def gpu_matmul_peak(device: str, dry: bool) -> float:
    """Measured bf16 FLOP/s of a large matmul (random data): the practical ceiling."""
    n = 512 if dry else 8192
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    reps = 2 if dry else 20
    for _ in range(3):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def training(ds: Path, sz: dict, device: str, dry: bool) -> dict:
    args = argparse.Namespace(encoder="MF_gnr", objective="contrastive", device=device, channels_last=True)
    out: dict = {"width": sz["width"], "batch": sz["batch"], "tracks": sz["tracks"],
                 "frames_per_track": sz["frames"], "by_precision": {}}
    for bf16 in (False, True):
        tag = "bf16" if bf16 else "fp32"
        tr = make_trainer(ds, args, sz["width"], sz["batch"], bf16)
        fixed = tr.to_device(next(iter(tr.train_loader(0))))
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()

        def model_step() -> int:
            tr.train_step(fixed)
            return sz["batch"]

        row: dict = {"model_alone": rate(model_step, sz["steps"], sz["warm"], device)}
        if device == "cuda":
            row["gpu_mem_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
        row["full_step"], row["loader_alone"] = {}, {}  # the loader alone: measured with fp32 only
        for w in sz["workers"]:
            tr.cfg.num_workers = w  # read when the loader is built
            for kind in ("loader_alone", "full_step") if not bf16 else ("full_step",):
                row[kind][str(w)] = epoch_rate(tr, w + (1 if kind == "full_step" else 0),
                                               kind == "full_step", device)
        row["loader_share_of_step"] = {
            w: max(0.0, 1 - f / row["model_alone"]) for w, f in row["full_step"].items()}
        out["by_precision"][tag] = row
    flops = cnn_flops(sz["width"], train=True)
    out["cnn_train_gflop_per_sample"] = flops / 1e9
    if device == "cuda":
        peak = gpu_matmul_peak(device, dry)
        out["bf16_matmul_peak_tflops_measured"] = peak / 1e12
        bf = out["by_precision"]["bf16"]["model_alone"]
        out["bf16_model_alone_tflops"] = bf * flops / 1e12
        out["bf16_fraction_of_measured_peak"] = bf * flops / peak
        name = torch.cuda.get_device_name()
        nominal = next((v for k, v in NOMINAL_BF16_TFLOPS.items() if k in name), None)
        if nominal:
            out["bf16_fraction_of_datasheet_peak"] = bf * flops / (nominal * 1e12)
            out["datasheet_bf16_tflops"] = nominal
    return out


def write_audio(out: Path, n: int, seconds: float) -> list[Path]:
    """n 44.1 kHz stereo WAV files: noise plus tones (they decode like music, sound like none)."""
    import soundfile as sf

    rng = np.random.default_rng(1)
    sr = 44100
    t = np.arange(int(seconds * sr)) / sr
    paths = []
    for i in range(n):
        y = 0.05 * rng.standard_normal(t.size)
        for f in rng.uniform(80, 4000, size=4):
            y += 0.1 * np.sin(2 * np.pi * f * t)
        paths.append(out / f"track_{i:03d}.wav")
        sf.write(paths[-1], np.stack([y, np.roll(y, 50)], axis=1).astype(np.float32) * 0.5, sr)
    return paths


def encoding(tmp: Path, sz: dict, device: str) -> dict:
    from musicrep.audio import SAMPLE_RATE, file_frames
    from musicrep.inference.embed import embed_files, embed_stream
    from musicrep.model.audio_cnn import AudioEncoder

    adir = tmp / "audio"
    adir.mkdir()
    paths = write_audio(adir, sz["files"], sz["seconds"])
    torch.manual_seed(0)
    enc = AudioEncoder(1.0).eval().to(device)
    audio_s = len(paths) * sz["seconds"]
    out: dict = {"files": len(paths), "seconds_per_file": sz["seconds"], "format": "WAV 44.1 kHz stereo",
                 "width": 1.0}
    embed_files(enc, paths[:1], device=device, progress=False, precision="fp32")  # warm-up
    frames = [file_frames(p)[0] for p in paths]
    for precision in ("fp32", "bf16"):
        bf16 = precision == "bf16"
        sync(device)
        t0 = time.perf_counter()
        res = embed_files(enc, paths, device=device, progress=False, precision=precision)
        sync(device)
        incl = audio_s / (time.perf_counter() - t0)
        if res.skipped or not np.isfinite(res.embeddings).all():
            raise RuntimeError(f"encoding {precision}: skipped {res.skipped} or non-finite output")
        list(embed_stream(enc, frames[:2], device=device, bf16=bf16))  # warm-up
        sync(device)
        t0 = time.perf_counter()
        embs = list(embed_stream(enc, frames, device=device, bf16=bf16))
        sync(device)
        excl = audio_s / (time.perf_counter() - t0)
        out[precision] = {"audio_s_per_s_decode_included": incl, "audio_s_per_s_decode_excluded": excl,
                          "rows": len(embs)}
    out["mel_sample_rate"] = SAMPLE_RATE
    return out


DDP_WORKER = """
import json, sys, torch, torch.distributed as dist
from musicrep.training.config import load_config, parse_overrides
from musicrep.model.losses import gather_with_grad, nt_xent
from musicrep.training.distributed import init_distributed
from musicrep.training.trainer import Trainer
cfg = load_config(sys.argv[1], parse_overrides(sys.argv[3:]), script="train.py")
ctx = init_distributed(cfg.device)
if not dist.is_initialized():  # torchrun with one process: a 1-rank group, so the gather runs
    dist.init_process_group(backend="nccl" if cfg.device.startswith("cuda") else "gloo")
rank, world = dist.get_rank(), dist.get_world_size()
dev = torch.device(f"cuda:{ctx.local_rank}" if cfg.device.startswith("cuda") else "cpu")
g = torch.Generator().manual_seed(0)
w = torch.randn(8, 4, generator=g)
xa, xb = torch.randn(4 * world, 8, generator=g), torch.randn(4 * world, 8, generator=g)
ref = w.clone().requires_grad_()
nt_xent(xa @ ref, xb @ ref, 0.1).backward()
loc = w.clone().to(dev).requires_grad_()
sl = slice(4 * rank, 4 * rank + 4)
loss = nt_xent(gather_with_grad(xa[sl].to(dev) @ loc), gather_with_grad(xb[sl].to(dev) @ loc), 0.1)
(loss * world).backward()
grad = loc.grad.clone(); dist.all_reduce(grad)
gather_ok = bool(torch.allclose(grad.cpu() / world, ref.grad, atol=1e-5))
t = Trainer(cfg, ctx)
res = t.fit()
if rank == 0:
    json.dump({"world_size": world, "gather_grad_matches": gather_ok,
               "trainer_uses_gather": t.objective.uses_gather, "local_batch": t.local_batch,
               "steps": t.global_step, "val_loss": res.best_val}, open(sys.argv[2], "w"))
dist.destroy_process_group()
"""


def ddp(ds: Path, tmp: Path, sz: dict, device: str) -> dict:
    n = torch.cuda.device_count() if device == "cuda" else 1
    worker = tmp / "ddp_worker.py"
    worker.write_text(DDP_WORKER)
    result = tmp / "ddp.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
           str(worker), str(ROOT / "configs" / "contrastive_MF_gnr.json"), str(result),
           f"train_dataset_file={ds / 'train.h5'}", f"validation_dataset_file={ds / 'val.h5'}",
           f"save_dir={tmp / 'runs'}", f"width={sz['width']}", f"batch_size={sz['batch']}",
           "epochs=1", f"max_steps_per_epoch={sz['ddp_steps']}", "num_workers=4",
           f"device={device}", "gather_distributed=true", "bf16=true"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT, check=False,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    if r.returncode != 0:
        raise RuntimeError(f"torchrun exit {r.returncode}: {r.stderr[-1500:]}")
    out = json.loads(result.read_text())
    out["nproc_per_node"] = n
    out["seconds"] = time.perf_counter() - t0
    if not out["gather_grad_matches"]:
        raise RuntimeError(f"gathered NT-Xent gradient differs from the global-batch one: {out}")
    return out


def environment(device: str) -> dict:
    cpu = platform.processor()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    caps = torch.cpu.get_capabilities()
    env = {"torch": torch.__version__, "python": platform.python_version(), "cpu": cpu,
           "cpu_cores": len(os.sched_getaffinity(0)), "cpu_avx512_bf16": bool(caps.get("avx512_bf16")),
           "device": device, "date": time.strftime("%Y-%m-%d")}
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name()
        env["gpus"] = torch.cuda.device_count()
        env["cuda"] = torch.version.cuda
    return env


def markdown(res: dict) -> str:
    e = res["environment"]
    lines = [f"# GPU check ({'dry run, ' if res['dry_run'] else ''}{e.get('gpu', 'CPU')}, {e['date']})", "",
             f"torch {e['torch']}, CPU {e['cpu']} ({e['cpu_cores']} cores, AVX512-BF16: "
             f"{e['cpu_avx512_bf16']}); total {res['seconds']:.0f} s", ""]
    tr = res.get("training")
    if isinstance(tr, dict) and "by_precision" in tr:
        ws = list(next(iter(tr["by_precision"].values()))["full_step"])
        lines += [f"## Training, width {tr['width']}, batch {tr['batch']} (contrastive MF_gnr), samples/s", "",
                  "| precision | model alone | " + " | ".join(f"full, {w} workers" for w in ws)
                  + " | " + " | ".join(f"loader alone, {w} w" for w in ws) + " | GPU mem peak GiB |",
                  "|---|" + "---:|" * (2 * len(ws) + 2)]
        for tag, row in tr["by_precision"].items():
            lines.append(f"| {tag} | {row['model_alone']:.0f} | "
                         + " | ".join(f"{row['full_step'][w]:.0f}" for w in ws) + " | "
                         + " | ".join(f"{row['loader_alone'].get(w, float('nan')):.0f}" for w in ws)
                         + f" | {row.get('gpu_mem_peak_gib', float('nan')):.2f} |")
        lines.append("")
        for tag, row in tr["by_precision"].items():
            lines.append(f"- loader's share of a full step, {tag}: " + ", ".join(
                f"{w} workers {s:.0%}" for w, s in row["loader_share_of_step"].items()))
        if "bf16_fraction_of_measured_peak" in tr:
            lines.append(f"- CNN training {tr['cnn_train_gflop_per_sample']:.2f} GFLOP/sample; bf16 model alone "
                         f"{tr['bf16_model_alone_tflops']:.0f} TFLOP/s = {tr['bf16_fraction_of_measured_peak']:.1%} "
                         f"of the measured bf16 matmul peak ({tr['bf16_matmul_peak_tflops_measured']:.0f} TFLOP/s)"
                         + (f", {tr['bf16_fraction_of_datasheet_peak']:.1%} of the datasheet's "
                            f"{tr['datasheet_bf16_tflops']:.0f}" if "bf16_fraction_of_datasheet_peak" in tr else ""))
        lines.append("")
    enc = res.get("encoding")
    if isinstance(enc, dict) and "fp32" in enc:
        lines += [f"## Encoding, width 1.0, {enc['files']} files of {enc['seconds_per_file']:.0f} s "
                  f"({enc['format']}), seconds of audio per second", "",
                  "| precision | decode included | decode excluded |", "|---|---:|---:|"]
        for p in ("fp32", "bf16"):
            lines.append(f"| {p} | {enc[p]['audio_s_per_s_decode_included']:.0f} | "
                         f"{enc[p]['audio_s_per_s_decode_excluded']:.0f} |")
        lines.append("")
    d = res.get("ddp")
    if isinstance(d, dict) and "world_size" in d:
        lines += [f"## DDP: torchrun --nproc_per_node={d['nproc_per_node']}", "",
                  f"world size {d['world_size']}, {d['steps']} trainer steps (local batch {d['local_batch']}, "
                  f"trainer gathers: {d['trainer_uses_gather']}), gathered NT-Xent gradient equals the "
                  f"global-batch gradient: {d['gather_grad_matches']}; {d['seconds']:.0f} s", ""]
    for name in ("training", "encoding", "ddp"):
        if isinstance(res.get(name), str):
            lines += [f"## {name}: FAILED", "", "```", res[name][-2000:], "```", ""]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="folder for gpu_check.json and gpu_check.md")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: checks the script runs")
    p.add_argument("--only", default="training,encoding,ddp", help="comma-separated sections")
    args = p.parse_args()
    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible (use --dry-run on a CPU)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    sz = sizes(args.dry_run)
    t_start = time.perf_counter()
    res: dict = {"dry_run": args.dry_run, "sizes": sz, "environment": environment(device)}
    failed = []
    with tempfile.TemporaryDirectory(prefix="musicrep-gpu-check-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        ds = write_data(tmp / "ds", sz["tracks"], sz["frames"])
        res["data_seconds"] = time.perf_counter() - t0
        print(f"data: {sz['tracks']} tracks x {sz['frames']} frames in {res['data_seconds']:.0f} s")
        sections = {"training": lambda: training(ds, sz, device, args.dry_run),
                    "encoding": lambda: encoding(tmp, sz, device),
                    "ddp": lambda: ddp(ds, tmp, sz, device)}
        for name in args.only.split(","):
            t0 = time.perf_counter()
            try:
                res[name] = sections[name]()
            except Exception:  # noqa: BLE001 - recorded in the summary, exit 1 below
                res[name] = traceback.format_exc()
                failed.append(name)
            print(f"{name}: {'FAILED' if name in failed else 'done'} in {time.perf_counter() - t0:.0f} s")
            res["seconds"] = time.perf_counter() - t_start
            (args.out / "gpu_check.json").write_text(json.dumps(res, indent=1))
    res["seconds"] = time.perf_counter() - t_start
    res["failed"] = failed
    (args.out / "gpu_check.json").write_text(json.dumps(res, indent=1))
    md = markdown(res)
    (args.out / "gpu_check.md").write_text(md + "\n")
    print(md)
    if failed:
        print(f"gpu_check: failed sections: {', '.join(failed)} (tracebacks in gpu_check.json)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
