"""Audio files -> embeddings: seconds of audio per second, stage by stage.

    python bench/encode_throughput.py                  # width 1.0, 8 files of 30 s
    python bench/encode_throughput.py --threads 1 --clock cpu   # on a loaded machine

Writes --files generated MP3s (44.1 kHz stereo, seeded noise and tones: they only need
to decode like real music, they sound like none) to a temp dir, then runs the stages of
`encode.py` on them one file at a time, timing each:

    decode+resample   audio.load_audio: MP3 decode, stereo -> mono, 44.1 -> 16 kHz (soxr)
    mel               audio.mel_spectrogram_db: STFT, mel filterbank, dB
    CNN               embed.embed_stream: 256-frame chunks through the audio encoder,
                      fp32 and bf16 autocast (interleaved file by file)

and the model alone: the CNN's forward on chunks already in memory, in encode.py's CPU
micro-batches of 32 and in batches of 8, fp32 and bf16. With bench/flops.py's FLOP count and matmul peak measured in
the same run, the CNN's rate is put against what the machine can do.
"""

from __future__ import annotations

import argparse
import inspect
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from flops import cnn_flops, matmul_peak
from musicrep.audio import SAMPLE_RATE, load_audio, mel_spectrogram_db, mel_to_frames
from musicrep.inference.embed import CHUNK_FRAMES, CHUNK_SECONDS, CPU_MICRO_BATCH, embed_stream
from musicrep.audio import N_MELS
from musicrep.model.audio_cnn import AudioEncoder



def write_files(out: Path, n: int, seconds: float, seed: int, sr: int = 44100) -> list[Path]:
    """n MP3 files of `seconds` each: pink-ish noise plus a few tones, stereo."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    paths = []
    for i in range(n):
        y = np.cumsum(rng.normal(size=t.size)) * 1e-3
        y -= np.convolve(y, np.ones(64) / 64, mode="same")  # drop the random walk's drift
        for f in rng.uniform(80, 4000, size=4):
            y += 0.1 * np.sin(2 * np.pi * f * t) * (1 + np.sin(2 * np.pi * rng.uniform(0.2, 2) * t))
        stereo = np.stack([y, np.roll(y, 100)], axis=1)
        stereo = (0.5 * stereo / np.abs(stereo).max()).astype(np.float32)
        paths.append(out / f"track_{i:03d}.mp3")
        sf.write(paths[-1], stereo, sr, format="MP3")
    return paths


def embed_cnn(encoder: AudioEncoder, frames: np.ndarray, bf16: bool) -> np.ndarray:
    """One track's (F, 48) frames -> its (128,) embedding, as encode.py computes it."""
    # Pass bf16 where embed_stream takes it (it then owns the autocast), else autocast here.
    kw = {"bf16": bf16} if "bf16" in inspect.signature(embed_stream).parameters else {}
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return next(embed_stream(encoder, [frames], **kw))


def timed(clock: Callable[[], float], fn: Callable[[], object]) -> tuple[float, object]:
    t0 = clock()
    out = fn()
    return clock() - t0, out


def ceiling(encoder: AudioEncoder, clock: Callable[[], float], reps: int, batch: int
            ) -> dict[bool, float]:
    """Chunks/s of the CNN alone, fp32 (False) and bf16 (True): channels-last batches
    already in memory, the two precisions alternating batch by batch."""
    x = torch.randn(batch, 1, N_MELS, CHUNK_FRAMES).contiguous(
        memory_format=torch.channels_last
    )  # (B, 1, 48, 256)
    seconds = {False: 0.0, True: 0.0}
    with torch.inference_mode():
        for i in range(reps + 1):
            for bf16 in (False, True) if i % 2 else (True, False):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    dt, _ = timed(clock, lambda: encoder(x))
                seconds[bf16] += dt if i else 0.0  # the first round is a warm-up
    return {bf16: reps * batch / s for bf16, s in seconds.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=8)
    p.add_argument("--seconds", type=float, default=30.0, help="length of each file")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                   help="cpu: this process's CPU seconds (with --threads 1 on a loaded machine)")
    p.add_argument("--reps", type=int, default=20, help="timed batches of 32 chunks for the ceiling")
    p.add_argument("--micro-batches", default="4,8,32",
                   help="CPU micro-batch sizes for the CNN-alone ceiling (embed.CPU_MICRO_BATCH is added)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.manual_seed(args.seed)
    encoder = AudioEncoder(args.width).eval().to(memory_format=torch.channels_last)

    with tempfile.TemporaryDirectory(prefix="musicrep-encode-bench-") as tmp:
        paths = write_files(Path(tmp), args.files, args.seconds, args.seed)
        secs = {"decode+resample": 0.0, "mel": 0.0, "CNN fp32": 0.0, "CNN bf16": 0.0}
        audio_s = 0.0
        chunks = 0
        cos = []
        # warm-up: librosa's first import and resampler set-up, oneDNN kernel selection
        warm = mel_to_frames(mel_spectrogram_db(load_audio(paths[0], SAMPLE_RATE)))
        embed_cnn(encoder, warm, False)
        embed_cnn(encoder, warm, True)
        for i, path in enumerate(paths):
            dt, y = timed(clock, lambda: load_audio(path, SAMPLE_RATE))
            secs["decode+resample"] += dt
            audio_s += y.size / SAMPLE_RATE
            dt, mel = timed(clock, lambda: mel_to_frames(mel_spectrogram_db(y)))
            secs["mel"] += dt
            chunks += mel.shape[0] // CHUNK_FRAMES
            emb = {}
            for bf16 in ((False, True) if i % 2 == 0 else (True, False)):
                dt, emb[bf16] = timed(clock, lambda: embed_cnn(encoder, mel, bf16))
                secs["CNN bf16" if bf16 else "CNN fp32"] += dt
            a, b = emb[False], emb[True]
            cos.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))

    # the CNN alone at encode.py's CPU micro-batch and the others given (a 30 s file is 7 chunks)
    sizes = sorted({CPU_MICRO_BATCH, *(int(b) for b in args.micro_batches.split(","))})
    ceils = {b: ceiling(encoder, clock, max(1, args.reps * 32 // b), b) for b in sizes}
    peak = {bf16: matmul_peak(torch.bfloat16 if bf16 else torch.float32, clock=clock)
            for bf16 in (False, True)}
    fwd = cnn_flops(args.width)

    print(
        f"\nEncoding {args.files} MP3 files of {args.seconds:.0f} s (44.1 kHz stereo), width "
        f"{args.width}, {torch.get_num_threads()} torch threads, {args.clock} clock; "
        f"{fwd / 1e9:.3f} GFLOP forward per 4.1 s chunk"
    )
    print("| stage | s of audio per s | share of the fp32 / bf16 pipeline |")
    print("|---|---:|---:|")
    total = {bf16: secs["decode+resample"] + secs["mel"] + secs[f"CNN {'bf16' if bf16 else 'fp32'}"]
             for bf16 in (False, True)}
    for k, v in secs.items():
        share = " / ".join(
            f"{v / total[b]:.0%}" if (not k.startswith("CNN") or k.endswith("bf16" if b else "fp32"))
            else "-" for b in (False, True)
        )
        print(f"| {k} | {audio_s / v:,.0f} | {share} |")
    for bf16 in (False, True):
        tag = "bf16" if bf16 else "fp32"
        print(f"| **files -> embeddings, {tag}** | **{audio_s / total[bf16]:,.0f}** | |")
    for b, ceil in ceils.items():
        for bf16 in (False, True):
            tag = "bf16" if bf16 else "fp32"
            print(f"| CNN alone, batches of {b}, {tag} | {ceil[bf16] * CHUNK_SECONDS:,.0f} | |")
    ceil = ceils[CPU_MICRO_BATCH]
    print(f"\nbf16 / fp32: CNN in the pipeline {secs['CNN fp32'] / secs['CNN bf16']:.2f}, "
          f"alone {ceil[True] / ceil[False]:.2f}, whole pipeline {total[False] / total[True]:.2f}; "
          f"embedding cosine bf16 vs fp32: min {min(cos):.5f}")
    print("\n| CNN forward | chunks/s | GFLOP/s | matmul peak GFLOP/s | fraction of peak |")
    print("|---|---:|---:|---:|---:|")
    for bf16 in (False, True):
        tag = "bf16" if bf16 else "fp32"
        cnn_rate = chunks / secs[f"CNN {tag}"]
        rows = [(f"in the pipeline, {tag}", cnn_rate)]
        rows += [(f"alone, batches of {b}, {tag}", c[bf16]) for b, c in ceils.items()]
        for name, rate in rows:
            print(f"| {name} | {rate:,.1f} | {rate * fwd / 1e9:,.1f} | {peak[bf16] / 1e9:,.1f} "
                  f"| {rate * fwd / peak[bf16]:.0%} |")


if __name__ == "__main__":
    main()
