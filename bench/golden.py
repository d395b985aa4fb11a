"""Golden weights: are the six paper configs' trained weights unchanged by a refactor?

    python bench/golden.py --work DIR --record golden.json   # before the change
    python bench/golden.py --work DIR --check golden.json    # after: exit 1 on any change

Through the command lines only (so it survives any move of library code): a small
generated corpus (300 songs, 150 playlists, seed 0), create_dataset, the genre word2vec,
then each of the six configs of the paper trained for 2 epochs at width 0.125, batch 16,
fp32 (bf16 off, so the result does not depend on the CPU's bf16 support), 0 workers,
by the script the paper names for it. Each exported `audio_encoder.pt` is reduced to a
SHA-256 per tensor: equal hashes are bit-identical weights. On CPU training is
deterministic, so the same code gives the same hashes on the same machine kind.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import torch

from musicrep.training.config import PAPER_CONFIGS as SCRIPTS  # config -> the script the paper names

ROOT = Path(__file__).resolve().parents[1]


def run(*cmd: str) -> None:
    subprocess.run([sys.executable, *cmd], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def tensor_hashes(path: Path) -> dict[str, str]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: hashlib.sha256(v.contiguous().numpy().tobytes()).hexdigest()[:16]
            for k, v in sorted(state.items())}


def build(work: Path) -> dict[str, dict[str, str]]:
    melon, ds, runs = work / "melon", work / "dataset", work / "runs"
    if not (ds / "embedding_matrix_128.npy").exists():
        run("scripts/make_toy_melon.py", "--out", str(melon), "--songs", "300", "--playlists", "150",
            "--seed", "0", "--force")
        run("scripts/create_dataset.py", "--melon-dir", str(melon), "--out-dir", str(ds), "--seed", "0",
            "--overwrite")
        run("train_genre_w2v.py", "--dataset-dir", str(ds), "--seed", "0")
    out = {}
    for name, script in SCRIPTS.items():
        run(script, f"configs/{name}.json", "--set", "epochs=2", "width=0.125", "batch_size=16",
            "bf16=false", "num_workers=0", f"save_dir={runs}",
            f"train_dataset_file={ds / 'train.h5'}", f"validation_dataset_file={ds / 'val.h5'}")
        out[name] = tensor_hashes(runs / name / "audio_encoder.pt")
        print(f"{name}: {len(out[name])} tensors", flush=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, required=True, help="scratch folder (must not hold old runs)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--record", type=Path)
    g.add_argument("--check", type=Path)
    args = p.parse_args()
    if (args.work / "runs").exists():
        print(f"--work {args.work}: holds runs/ from before; give an empty folder", file=sys.stderr)
        return 2
    hashes = build(args.work)
    if args.record:
        args.record.write_text(json.dumps(hashes, indent=1))
        return 0
    want = json.loads(args.check.read_text())
    bad = [f"{c}/{k}" for c in want for k in want[c] if hashes.get(c, {}).get(k) != want[c][k]]
    bad += [f"{c}/{k} (new)" for c in hashes for k in hashes[c] if k not in want.get(c, {})]
    print("bit-identical: all six configs" if not bad else f"changed: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
