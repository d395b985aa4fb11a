"""Write the model card of an encoder trained on real recordings: its data and split, its
training, its scores on the held-out tracks, and the licences of the audio it heard.

    python scripts/real_model_card.py RUN --corpus CORPUS [--benchmark DIR ...] [--out FILE]

RUN is a training run folder (config.json, metrics.csv, audio_encoder.pt) whose dataset
create_dataset.py built from an import_audio.py directory of CORPUS, the folder
scripts/real_music.py wrote (tracks.csv, manifest.json). The run's config.json names its
dataset (provenance.dataset_manifest); the dataset's split says which tracks the model
heard (train and val) and which it did not (test); CORPUS/manifest.json gives each
track's licence, source package and version, and for rendered scores the music21 corpus
terms, the soundfont's licence and the rights a score file states about itself. Each
--benchmark DIR (scripts/real_benchmark.py --split-from ... output) adds the run's row
and the reference rows of its results.json.

Why a card lists licences: whether trained weights are a derivative of the audio they
were trained on is not settled, so the card states the terms of that audio (only the
tracks the model heard) and leaves the judgement to whoever publishes or uses the model.
A card goes in models/README.md below the model's folder name (models/README.md, its
header).

Exit status: 0 written; 2 bad input (a run without config.json, a run not trained on real
recordings, a dataset or corpus that cannot be read, a results.json without the run's
row: one line naming the file); 1 writing failed.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from ..data.real_corpus import licence_summary
from ..errors import ConfigError
from ..evaluation import real_audio as ra
from ..io import atomic_path
from .common import Parser, run

PROG = "real_model_card"


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="training run folder (config.json, metrics.csv)")
    p.add_argument("--corpus", type=Path, required=True,
                   help="the corpus folder scripts/real_music.py wrote (manifest.json)")
    p.add_argument("--benchmark", type=Path, nargs="*", default=[], metavar="DIR",
                   help="scripts/real_benchmark.py --out folders whose results.json has the run")
    p.add_argument("--name", default=None, help="the card's heading (default: the run folder)")
    p.add_argument("--out", type=Path, default=None, help="card file (default: stdout)")
    a = p.parse_args(argv)
    return run(PROG, lambda: _card(a))


def _json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: file not found (expected {what})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise ConfigError(f"{path}: not valid JSON (expected {what})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object ({what})")
    return data


def _card(a: argparse.Namespace) -> int:
    cfg = _json(a.run / "config.json", "the config.json of a training run")
    cfg = cfg.get("config", cfg)
    prov = cfg.get("provenance") or {}
    if prov.get("data") != "real":
        raise ConfigError(f"{a.run / 'config.json'}: provenance.data is "
                          f"{prov.get('data')!r}, not 'real': this card is for models trained "
                          "on real recordings (the demo's: scripts/export_models.py)")
    if not prov.get("dataset_manifest"):
        raise ConfigError(f"{a.run / 'config.json'}: provenance names no dataset_manifest")
    dataset = Path(prov["dataset_manifest"]).parent
    split = ra.read_split(dataset, "test")
    manifest = _json(a.corpus / "manifest.json", "the manifest.json scripts/real_music.py "
                     "writes")
    known = {t.get("track_id") for t in manifest.get("tracks", [])}
    heard = split.others & known
    if not heard:
        raise ConfigError(f"{a.corpus / 'manifest.json'}: none of the {len(split.others)} "
                          f"train/val tracks of {dataset} is in this corpus")
    rows = [_bench_row(d, a.run.name, dataset) for d in a.benchmark]
    text = card_text(a.name or a.run.name, cfg, _last_metrics(a.run / "metrics.csv"), split, a.corpus,
                     licence_summary(manifest, heard), rows)
    if a.out is None:
        print(text, end="")
        return 0
    with atomic_path(a.out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    print(f"wrote {a.out}", file=sys.stderr)
    return 0


def _last_metrics(path: Path) -> tuple[int, dict[str, str]]:
    """(epochs in metrics.csv, its last row)."""
    if not path.is_file():
        raise ConfigError(f"{path}: file not found (expected the run's metrics.csv)")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ConfigError(f"{path}: no epoch rows (an unfinished run?)")
    return len(rows), rows[-1]


def _bench_row(out: Path, name: str, dataset: Path) -> tuple[Path, dict, dict]:
    """(results.json, the run's row, the whole file) of one benchmark folder, which must
    have scored a split of the run's own dataset (else its tracks may be ones it heard)."""
    path = out / "results.json"
    res = _json(path, "the results.json scripts/real_benchmark.py writes")
    row = next((r for r in res.get("rows", []) if r.get("row") == name), None)
    if row is None:
        raise ConfigError(f"{path}: no row '{name}' (benchmark the run with --models first)")
    split = (res.get("settings") or {}).get("split") or {}
    if (not split.get("dataset") or split.get("split") != "test"
            or Path(split["dataset"]).resolve() != dataset.resolve()):
        raise ConfigError(f"{path}: did not score the test split of {dataset}, the run's "
                          "dataset (run scripts/real_benchmark.py with --split-from "
                          f"{dataset} --split test)")
    return path, row, res


def _metrics_line(row: dict) -> str:
    cells = [f"{k} {m['mean']:.3f} [{m['low']:.3f}, {m['high']:.3f}]"
             for k, m in row["metrics"].items() if m.get("mean") is not None]
    return ", ".join(cells)


def _bench_lines(rows: list[tuple[Path, dict, dict]]) -> list[str]:
    lines = []
    for path, row, res in rows:
        st = res.get("settings", {})
        split = st.get("split") or {}
        lines.append(f"- held-out benchmark (`{path}`, {st.get('tracks')} tracks of the "
                     f"{split.get('split', '?')} split): {_metrics_line(row)}")
        refs = [r for r in res.get("rows", []) if r.get("kind") != "checkpoint"]
        for r in refs:
            lines.append(f"  - {r['row']}: {_metrics_line(r)}")
        chance = ", ".join(f"{k} {v:.3f}" for k, v in (res.get("chance") or {}).items()
                           if v is not None)
        lines.append(f"  - chance: {chance}")
    return lines


def _licence_lines(lic: dict, corpus: Path) -> list[str]:
    per = ", ".join(f"{k} {n}" for k, n in lic["licences"].items())
    lines = [(f"- licences of the {lic['tracks']} training tracks "
              f"(`{corpus / 'manifest.json'}`, tracks per licence): {per}")]
    for src, v in lic["sources"].items():
        lic_src = ", ".join(f"{k} {n}" for k, n in v["licences"].items())
        lines.append(f"  - {src} {v['version']}: {v['tracks']} tracks ({lic_src})")
    sc = lic.get("scores")
    if sc:
        sf = sc.get("soundfont", {})
        syn = sc.get("synthesizer", {})
        lines.append(f"  - rendered scores: {sc['source']}; soundfont {sf.get('package', '?')} "
                     f"{sf.get('version', '?')} ({sf.get('licence', '?')}, "
                     f"{sf.get('copyright', '')}), synthesised by {syn.get('program', '?')} "
                     f"{syn.get('version', '')}; the corpus terms: \"{sc['corpus_licence']}\"")
    for rights, n in lic["file_rights"].items():
        lines.append(f"  - {n} score file(s) state: \"{rights}\"")
    return lines


def card_text(name: str, cfg: dict, metrics: tuple[int, dict[str, str]],
              split: ra.SplitTracks, corpus: Path, lic: dict,
              bench: list[tuple[Path, dict, dict]]) -> str:
    """The card (Markdown, one section of models/README.md)."""
    epochs, last = metrics
    prov = cfg["provenance"]
    losses = ", ".join(f"{k[4:]} {float(v):.3f}" for k, v in last.items()
                       if k.startswith("val_") and k not in ("val_loss", "val_selected") and v)
    pairs = "; ".join(" - ".join(p) for p in cfg.get("pairs") or [])
    val = last.get("val_loss") or ""
    lines = [
        f"## {name} (trained on REAL recordings)",
        "",
        (f"- data: {prov['train_tracks']} train + {prov['val_tracks']} val tracks of the real "
         f"corpus `{corpus}` (dataset `{split.dataset}`); its {len(split.chosen)} test "
         "tracks were held out and are what the benchmark below scores"),
        f"- objective: {cfg.get('objective')} over views {', '.join(cfg.get('views') or [])}"
        + (f" (pairs {pairs})" if pairs else "")
        + f"; temperature {cfg.get('contrastive_temperature')}; Adam lr {cfg.get('learning_rate')}, "
        f"weight decay {cfg.get('weight_decay')}, batch {cfg.get('batch_size')}, seed {cfg.get('seed')}",
        f"- width {cfg.get('width')}, input layout `{cfg.get('input_layout')}`, {epochs} epochs"
        + (f"; final validation loss {float(val):.3f} ({losses})" if val else ""),
        *_bench_lines(bench),
        *_licence_lines(lic, corpus),
        ("- whether trained weights are a derivative of their training audio is not settled; "
         "the terms above are those of the audio this model heard (its train and val tracks), "
         "for whoever publishes or uses it to judge"),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
