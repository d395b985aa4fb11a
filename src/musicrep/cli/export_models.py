"""Copy the demo's trained encoders into models/ and write their model cards.

    python scripts/export_models.py [--runs runs] [--report reports/demo] [--out models]

For each configuration: models/<name>/audio_encoder.pt (plain state dict, original
format) and config.json; models/README.md gets one card per checkpoint with its data,
config, epochs and its metrics on the generated test split (from evaluate.py's
results.json).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

from ..training.config import PAPER_CONFIGS
from ..io import atomic_path
from ..evaluation.tasks import COLUMNS

CONFIGS = list(PAPER_CONFIGS)
METRICS = COLUMNS[1:]  # every metric column of the evaluation's tables

HEADER = """# Pre-trained audio encoders (trained on GENERATED data)

These checkpoints were trained by this repository's own pipeline (`make demo`) on the
**generated corpus** (`scripts/make_toy_melon.py`: {songs} songs in the Melon layout,
seed 0), **not on the Melon Playlist Dataset**. They show that the pipeline works and
give `encode.py` something to load; they have not heard real music and their
embeddings mean nothing for real audio.

Each folder holds `audio_encoder.pt` (a plain state dict with the original code's keys,
loadable with `strict=True` into `musicrep.model.audio_cnn.AudioEncoder(width=...)`) and the
`config.json` of its run (whose `input_layout` tells `encode.py` how to feed it, and
whose `provenance` says what it was trained on: `"data": "generated"`, the generator
and its seed and sizes, train/val track counts, epochs, width). Keep the two files
together: a plain state dict moved away from its `config.json` is refused unless
`--input-layout` is given. `encode.py`, `load_encoder` and the explorer warn when they
load one of these models, and the `.npz` from `encode.py` records `trained_on`.
They are reduced-width CNNs (`width` {width}: {params:,} parameters, against 3,989,762
for the paper's width 1.0), trained for {epochs} epochs at lr {lr} and batch {batch}
(bf16 {bf16}) instead of 400 epochs at lr 1e-4, so that the demo runs on a CPU.

- **Train on Melon**: run the steps of docs/pipeline.md with `--melon-dir` pointing
  at the real dataset and the configs as they are (width 1.0, 400 epochs).
- **Use the authors' published checkpoints** (trained on Melon; the `audio_encoder.pt`
  files in https://github.com/andrebola/contrastive-mir-learning/tree/master/models):
  they are plain state dicts with the same keys, trained on the original code's
  reshaped input:
  `python encode.py --checkpoint path/to/audio_encoder.pt --input-layout reference FILES --out emb.npz`.
- **Models trained on real recordings** (none is shipped yet) go in a folder of their own
  here, like these, with the card `scripts/real_model_card.py` writes added at the end of
  this file: their data and held-out split, their scores on the held-out tracks, and the
  licences of the audio they heard, from the corpus manifest
  ([Training on the real corpus](../docs/real-benchmark.md#training-on-the-real-corpus)).

Metrics below are on the generated test split ({test} tracks; continuation over
{playlists} playlists), from `reports/demo/results.json`; see docs/results.md for
the full table with the reference rows.
"""


def card(name: str, cfg: dict, row: dict, metrics_csv: Path) -> str:
    with open(metrics_csv) as f:
        rows = list(csv.DictReader(f))
    last = rows[-1]
    losses = ", ".join(f"{k[4:]} {float(v):.3f}" for k, v in last.items()
                       if k.startswith("val_") and k != "val_loss")
    lines = [
        f"## {name}",
        "",
        f"- objective: {cfg['objective']} against `{cfg['encoder']}`; "
        + (f"temperature {cfg['contrastive_temperature']}; "
           if cfg["objective"] == "contrastive" else "")
        + f"Adam lr {cfg['learning_rate']}, "
        f"weight decay {cfg['weight_decay']}, batch {cfg['batch_size']}, seed {cfg['seed']}",
        f"- width {cfg['width']}, input layout `{cfg['input_layout']}`, {len(rows)} epochs; "
        f"final validation loss {float(last['val_loss']):.3f} ({losses})",
        "- test split: " + ", ".join(f"{m} {row[m]:.3f}" for m in METRICS if row.get(m) is not None),
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="runs")
    p.add_argument("--report", default="reports/demo")
    p.add_argument("--out", default="models")
    a = p.parse_args()
    runs, out = Path(a.runs), Path(a.out)
    results = json.loads((Path(a.report) / "results.json").read_text())
    rows = {r["model"]: r for r in results["rows"]}
    missing = [n for n in CONFIGS if n not in rows or not (runs / n / "audio_encoder.pt").is_file()]
    if missing:
        print(f"error: no finished run or result for {', '.join(missing)} "
              f"(run `make demo` first)", file=sys.stderr)
        return 2
    import torch

    cards = []
    for name in CONFIGS:
        cfg = json.loads((runs / name / "config.json").read_text())
        cfg = cfg.get("config", cfg)
        if cfg.get("provenance", {}).get("data") != "generated":
            print(f"error: {runs / name / 'config.json'}: provenance.data is not 'generated'; "
                  "this script writes the model cards of the demo's generated-data models", file=sys.stderr)
            return 2
        bf16_used = "on" if cfg.get("bf16_resolved") else "off"
        (out / name).mkdir(parents=True, exist_ok=True)
        for f in ("audio_encoder.pt", "config.json"):
            with atomic_path(out / name / f) as tmp:
                shutil.copyfile(runs / name / f, tmp)
        cards.append(card(name, cfg, rows[name], runs / name / "metrics.csv"))
    sd = torch.load(out / CONFIGS[0] / "audio_encoder.pt", weights_only=True)
    params = sum(v.numel() for k, v in sd.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    counts = results["dataset"]["counts"]
    header = HEADER.format(
        songs=counts["songs_in_meta"], width=cfg["width"], params=params, epochs=cfg["epochs"],
        lr=cfg["learning_rate"], batch=cfg["batch_size"], bf16=bf16_used,
        test=counts["test_tracks"], playlists=counts["continuation_playlists"],
    )
    with atomic_path(out / "README.md") as tmp:
        tmp.write_text(header + "\n" + "\n".join(cards))
    print(f"wrote {len(CONFIGS)} checkpoints and {out / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
