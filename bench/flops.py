"""A physical reference for the throughput benches: the audio CNN's FLOPs per sample
and the machine's measured matmul peak, so samples/s can be read as a fraction of
what the hardware can do.

    python bench/flops.py            # prints both, for width 1.0 and 0.25

FLOPs are counted by torch.utils.flop_counter.FlopCounterMode from the real module
(convolutions and linear layers; BatchNorm, ReLU, pooling are not counted, they are
memory-bound and a few % of the work). A multiply-add counts as 2 FLOPs.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from musicrep.audio import N_MELS
from musicrep.audio import CROP_FRAMES
from musicrep.model.audio_cnn import AudioEncoder


def cnn_flops(width: float, train: bool = False, batch: int = 4) -> float:
    """FLOPs per sample of the audio encoder on one 48 x 256 crop: the forward pass,
    or with `train` forward + backward (weight and activation gradients)."""
    model = AudioEncoder(width).train(train)
    x = torch.randn(batch, 1, N_MELS, CROP_FRAMES)  # (B, 1, 48, 256)
    with FlopCounterMode(display=False) as counter:
        if train:
            model(x)[1].sum().backward()
        else:
            with torch.no_grad():
                model(x)
    return counter.get_total_flops() / batch


def matmul_peak(
    dtype: torch.dtype,
    n: int = 1024,
    seconds: float = 3.0,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Best FLOP/s of an n x n x n matmul in `dtype` on the CPU with torch's current
    threads, over repeats for about `seconds` (best, not mean: the machine may be shared).
    `clock` = time.process_time measures CPU time instead (meaningful on one thread)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b  # warm-up (oneDNN/BLAS kernel selection)
    best = float("inf")
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = clock()
        a @ b
        best = min(best, clock() - t0)
    return 2 * n**3 / best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--clock", default="wall", choices=["wall", "cpu"])
    args = p.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    print("| width | forward GFLOP/sample | train (fwd+bwd) GFLOP/sample | train / forward |")
    print("|---:|---:|---:|---:|")
    for w in (1.0, 0.25):
        f, t = cnn_flops(w), cnn_flops(w, train=True)
        print(f"| {w} | {f / 1e9:.3f} | {t / 1e9:.3f} | {t / f:.2f} |")
    print(f"\nmatmul peak, {torch.get_num_threads()} threads, {args.clock} clock:")
    for dt in (torch.float32, torch.bfloat16):
        print(f"  {str(dt):15s} {matmul_peak(dt, clock=clock) / 1e9:7.1f} GFLOP/s")


if __name__ == "__main__":
    main()
