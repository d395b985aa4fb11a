"""Encoding with each conv block's BatchNorm folded into its conv: how much faster, how close.

    python bench/fold_batchnorm.py                          # widths 0.125, 0.25, 1.0
    python bench/fold_batchnorm.py --threads 1 --clock cpu  # on a loaded machine

Every embedding path (`inference.embed.encode_pieces`: encode.py, evaluate.py, the
explorer, the HEAR API) runs an eval-mode encoder through `model.audio_cnn.fold_batchnorm`.
This measures the CNN alone on chunks already in memory, in the CPU micro-batch
(`embed.CPU_MICRO_BATCH`), plain and folded alternating batch by batch (so a changing
load hits both alike), and the largest difference of their `z_d` outputs. BatchNorm
running statistics are set by a few training-mode passes first, as after training.
"""

from __future__ import annotations

import argparse
import time

import torch

from musicrep.audio import N_MELS
from musicrep.inference.embed import CHUNK_FRAMES, CHUNK_SECONDS, CPU_MICRO_BATCH
from musicrep.model.audio_cnn import AudioEncoder, fold_batchnorm


def trained_like(width: float, seed: int) -> AudioEncoder:
    """An encoder whose BatchNorms hold non-trivial running statistics, in eval mode."""
    torch.manual_seed(seed)
    enc = AudioEncoder(width).train()
    with torch.no_grad():
        for _ in range(3):
            enc(torch.randn(32, 1, N_MELS, CHUNK_FRAMES) * 10 - 40)  # dB-like inputs
    return enc.eval().to(memory_format=torch.channels_last)


def measure(width: float, reps: int, clock, seed: int) -> tuple[float, float, float]:
    """(plain chunks/s, folded chunks/s, max |z_d difference|)."""
    plain = trained_like(width, seed)
    folded = fold_batchnorm(plain).to(memory_format=torch.channels_last)
    x = (torch.randn(CPU_MICRO_BATCH, 1, N_MELS, CHUNK_FRAMES) * 10 - 40).contiguous(
        memory_format=torch.channels_last)  # (B, 1, 48, 256)
    seconds = [0.0, 0.0]
    with torch.inference_mode():
        diff = float((plain(x)[1] - folded(x)[1]).abs().max())
        for i in range(reps + 1):
            order = (0, 1) if i % 2 else (1, 0)
            for k in order:
                t0 = clock()
                (plain, folded)[k](x)
                seconds[k] += (clock() - t0) if i else 0.0  # the first round warms up
    n = reps * CPU_MICRO_BATCH
    return n / seconds[0], n / seconds[1], diff


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--widths", default="0.125,0.25,1.0")
    p.add_argument("--reps", type=int, default=200, help="timed micro-batches per variant")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--clock", default="wall", choices=["wall", "cpu"])
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    clock = time.process_time if a.clock == "cpu" else time.perf_counter
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                if ln.startswith("model name")), "?")
    print(f"CPU {cpu}; {torch.get_num_threads()} torch threads, {a.clock} clock, fp32, "
          f"micro-batches of {CPU_MICRO_BATCH}")
    print("| width | plain, s of audio per s | folded | folded / plain | max abs z_d difference |")
    print("|---|---:|---:|---:|---:|")
    for w in (float(v) for v in a.widths.split(",")):
        plain, folded, diff = measure(w, max(1, int(a.reps / max(w, 0.125) / 8)), clock, a.seed)
        print(f"| {w} | {plain * CHUNK_SECONDS:,.0f} | {folded * CHUNK_SECONDS:,.0f} | "
              f"{folded / plain:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
