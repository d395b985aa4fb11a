"""When does `baseline_MF` leave its plateau? The CF head's initialisation, before and after.

    python bench/cf_head_init.py OUT_DIR [--variants zero,current] [--seeds 0,1,2,3,4]
        [--precisions fp32] [--dataset data/toy/dataset] [--epochs N] [--width W]
        [--batch-size B] [--lr LR]

Trains `configs/baseline_MF.json` at the demo's budget (epochs, width, batch and lr as
the Makefile's DEMO_EPOCHS / DEMO_WIDTH / DEMO_BATCH / DEMO_LR set them, read from
there; the flags override) once per variant x precision x seed, each run in
OUT_DIR/<variant>/<precision>/seed<N> (resumable: a finished run is read back, an
interrupted one resumes from its last.pt), then prints, per run, the first epoch whose
validation MSE falls below 90 % of the targets' variance (the MSE of predicting the
train split's mean CF vector: what a model that ignores the audio scores) and the
final ratio.

Variants of `views.cf.CFView.head` (the objective, MSE to the CF vector, is the same):

    zero      weight and bias zero (the code before issue 24): no gradient reaches the
              audio encoder through the head until the head's weight has grown
    torch     PyTorch's default nn.Linear initialisation (the original code's)
    small     weight N(0, 0.01^2), bias zero: outputs at the CF targets' scale
    scaled    PyTorch's default, output multiplied by 0.1 (the targets' std): Adam's steps
              move the prediction 10x less
    current   the head as views/cf.py has it now
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn

from musicrep.cli.train import main as train_main
from musicrep.data.h5io import CF_DATA, GROUP, read_cf_known
from musicrep.views import cf as cf_view

REPO = Path(__file__).resolve().parent.parent
LEAVE = 0.9  # "left the plateau": validation MSE below this fraction of the targets' variance


def zero_head(self) -> nn.Module:
    head = nn.Linear(128, self.cf_dim)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return head


def torch_head(self) -> nn.Module:
    return nn.Linear(128, self.cf_dim)  # PyTorch's default: U(+-1/sqrt(128)) weight and bias


def small_head(self) -> nn.Module:
    head = nn.Linear(128, self.cf_dim)
    nn.init.normal_(head.weight, std=0.01)  # output std ~0.1 on a layer-normed input: the targets' scale
    nn.init.zeros_(head.bias)
    return head


class _Scaled(nn.Linear):
    """PyTorch's default Linear whose output is multiplied by a fixed 0.1 (the targets' std)."""

    def forward(self, x):
        return super().forward(x) * 0.1


def scaled_head(self) -> nn.Module:
    return _Scaled(128, self.cf_dim)


CURRENT_HEAD = cf_view.CFView.head
VARIANTS = {"zero": zero_head, "torch": torch_head, "small": small_head, "scaled": scaled_head,
            "current": CURRENT_HEAD}


def target_variance(dataset: Path) -> float:
    """MSE of the train split's mean CF vector on the validation split's known rows."""
    def rows(split: str) -> np.ndarray:
        path = dataset / f"{split}.h5"
        known, _ = read_cf_known(str(path))
        with h5py.File(path, "r") as f:
            return np.asarray(f[GROUP][CF_DATA], dtype=np.float64)[known]
    mean = rows("train").mean(axis=0)
    return float(((rows("val") - mean) ** 2).mean())


def val_mse(run: Path) -> list[float]:
    with open(run / "baseline_MF" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    key = next(k for k in rows[0] if k.startswith("val_") and "mse" in k)
    return [float(r[key]) for r in rows]


def demo_budget() -> dict[str, str]:
    """The demo's training budget as the Makefile sets it (its one owner): DEMO_EPOCHS,
    DEMO_WIDTH, DEMO_BATCH and DEMO_LR, as {"epochs", "width", "batch_size", "learning_rate"}."""
    keys = {"DEMO_EPOCHS": "epochs", "DEMO_WIDTH": "width", "DEMO_BATCH": "batch_size",
            "DEMO_LR": "learning_rate"}
    found = {}
    for line in (REPO / "Makefile").read_text().splitlines():
        m = re.match(r"(DEMO_[A-Z]+) \?= (\S+)$", line)
        if m and m.group(1) in keys:
            found[keys[m.group(1)]] = m.group(2)
    if len(found) != len(keys):
        raise SystemExit(f"Makefile: expected {', '.join(keys)} as 'NAME ?= value' lines")
    return found


def train(run: Path, variant: str, precision: str, seed: int, dataset: Path,
          budget: dict[str, str]) -> None:
    cf_view.CFView.head = VARIANTS[variant]
    torch.manual_seed(seed)
    sets = [f"{k}={v}" for k, v in budget.items()] + [
            f"bf16={'true' if precision == 'bf16' else 'false'}", f"seed={seed}",
            f"save_dir={run}", f"train_dataset_file={dataset / 'train.h5'}",
            f"validation_dataset_file={dataset / 'val.h5'}"]
    rc = train_main("baseline_train.py", [str(REPO / "configs" / "baseline_MF.json"), "--set", *sets])
    cf_view.CFView.head = CURRENT_HEAD
    if rc != 0:
        raise SystemExit(f"{run}: training exited {rc}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--variants", default="zero,current")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--precisions", default="fp32")
    p.add_argument("--dataset", type=Path, default=REPO / "data" / "toy" / "dataset")
    budget = demo_budget()
    for flag, key in (("--epochs", "epochs"), ("--width", "width"), ("--batch-size", "batch_size"),
                      ("--lr", "learning_rate")):
        p.add_argument(flag, dest=key, default=budget[key], help=f"default: the demo's, {budget[key]}")
    a = p.parse_args()
    budget = {k: str(getattr(a, k)) for k in budget}
    var = target_variance(a.dataset)
    caps = torch.cpu.get_capabilities()
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print(f"CPU {cpu}, AVX512-BF16: {bool(caps.get('avx512_bf16'))}; targets' variance {var:.5f}; "
          + ", ".join(f"{k} {v}" for k, v in budget.items()))
    results = []
    for precision in a.precisions.split(","):
        for seed in (int(s) for s in a.seeds.split(",")):
            for variant in a.variants.split(","):  # interleaved: load hits both alike
                run = a.out / variant / precision / f"seed{seed}"
                done = run / "result.json"
                if not done.exists():
                    train(run, variant, precision, seed, a.dataset, budget)
                    mse = val_mse(run)
                    left = next((i + 1 for i, m in enumerate(mse) if m < LEAVE * var), None)
                    done.write_text(json.dumps({"variant": variant, "precision": precision, "seed": seed,
                                                "val_mse": mse, "target_variance": var, "left_at": left,
                                                "budget": budget}))
                result = json.loads(done.read_text())
                if result.get("budget", budget) != budget:
                    raise SystemExit(f"{done}: trained at {result['budget']}, not {budget}: use another OUT_DIR")
                results.append(result)
    print(f"\nfirst epoch with validation MSE < {LEAVE:.0%} of the targets' variance "
          f"({budget['epochs']} epochs; '-' = never), and the last epoch's MSE / variance")
    print("| variant | precision | " + " | ".join(f"seed {s}" for s in a.seeds.split(",")) + " | left |")
    print("|---|---|" + "---:|" * (len(a.seeds.split(",")) + 1))
    for precision in a.precisions.split(","):
        for variant in a.variants.split(","):
            rs = [r for r in results if r["variant"] == variant and r["precision"] == precision]
            cells = [f"{r['left_at'] or '-'} ({r['val_mse'][-1] / r['target_variance']:.2f})" for r in rs]
            n_left = sum(r["left_at"] is not None for r in rs)
            print(f"| {variant} | {precision} | " + " | ".join(cells) + f" | {n_left}/{len(rs)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
