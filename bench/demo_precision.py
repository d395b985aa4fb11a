"""The demo's table with bf16 on and off, side by side (issue #10: learning is unchanged).

    make clean-demo && make demo                       # bf16 "auto" (on on this CPU)
    cp -r reports/demo runs /somewhere/bf16/
    make clean-demo && make demo DEMO_BF16=false       # float32
    python bench/demo_precision.py --bf16 /somewhere/bf16 --fp32 .

Each root holds `reports/demo/results.json` and `runs/<config>/metrics.csv` of one
`make demo`. Prints a markdown table: per model the test metrics of both runs and their
final validation loss, and whether the two runs rank the models the same way.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from musicrep.training.config import PAPER_CONFIGS

CONFIGS = list(PAPER_CONFIGS)

METRICS = ("genre_roc_auc", "tag_roc_auc", "ndcg@100", "mood_r2")


def load(root: Path) -> tuple[dict[str, dict], dict[str, float]]:
    """(model -> results row, model -> final validation loss) of one demo output root."""
    rows = {r["model"]: r for r in json.loads((root / "reports/demo/results.json").read_text())["rows"]}
    val = {}
    for name in CONFIGS:
        with open(root / "runs" / name / "metrics.csv") as f:
            val[name] = float(list(csv.DictReader(f))[-1]["val_loss"])
    return rows, val


def ranking(rows: dict[str, dict], metric: str) -> list[str]:
    return sorted(CONFIGS, key=lambda m: -(rows[m].get(metric) or 0.0))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bf16", type=Path, required=True, help="root of the bf16 demo")
    p.add_argument("--fp32", type=Path, required=True, help="root of the float32 demo")
    a = p.parse_args()
    try:
        (b_rows, b_val), (f_rows, f_val) = load(a.bf16), load(a.fp32)
    except (OSError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    metrics = [m for m in METRICS if b_rows[CONFIGS[0]].get(m) is not None]
    head = ["model"] + [f"{m} {tag}" for m in metrics for tag in ("bf16", "fp32")] + ["val loss bf16", "val loss fp32"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name in CONFIGS + ["random-init"]:
        cells = [name]
        for m in metrics:
            cells += [f"{r[name][m]:.3f}" if r.get(name, {}).get(m) is not None else "" for r in (b_rows, f_rows)]
        cells += [f"{v[name]:.3f}" if name in v else "" for v in (b_val, f_val)]
        print("| " + " | ".join(cells) + " |")
    for m in metrics:
        same = ranking(b_rows, m) == ranking(f_rows, m)
        print(f"\n{m}: models ranked {'identically' if same else 'differently'} "
              f"(bf16: {', '.join(ranking(b_rows, m))}; fp32: {', '.join(ranking(f_rows, m))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
