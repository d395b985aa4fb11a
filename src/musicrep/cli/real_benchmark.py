"""Benchmark audio encoders on real recordings: same-recording retrieval and a labelled
probe, with 95% bootstrap intervals over tracks (docs/real-benchmark.md).

    python scripts/real_benchmark.py CORPUS --out DIR [--models CKPT ...]
        [--anchor NAME=FILE.npz ...] [--write-chunks chunks.csv]
    python scripts/real_benchmark.py CORPUS --write-chunks chunks.csv   # the list only
    python scripts/real_benchmark.py CORPUS --split-from DATASET [--split test] --out DIR ...

CORPUS is a folder with tracks.csv (track_id, path relative to CORPUS/audio, and the
columns the tasks name: genres, artist, album, ...), as scripts/real_music.py writes it.

Rows: each checkpoint of --models (loaded as encode.py loads it), the same CNN with
seeded random weights (width of the first model, or --random-width), log-mel statistics
(mean and std of each of the encoder front end's 48 dB bands: 96 values), each
--anchor (an .npz of embeddings an external script computed for the chunks of
--write-chunks: arrays chunk_ids and embeddings), and the chance level.

Label-free: two chunks of --chunk-seconds (default 4.096 s, one encoder input) per
track, at positions seeded by --seed and the track id, at least --min-gap seconds
apart. Each chunk queries all other chunks by cosine: top-1 and MRR of its sibling over
the whole pool, and among the tracks of its own --within value (the soundtrack, whose
shared mastering is a shortcut). Labelled: for each --label-column, a logistic
regression on track embeddings (the mean of the two chunks) predicts the label within
each --within value, out of fold, folds grouped by --group-column; labels with fewer
than --min-per-class tracks and scopes with fewer than two labels are left out;
accuracy, chance = the majority label's share. A column the corpus lacks skips its
task with the reason printed. Intervals: percentile bootstrap over tracks (--bootstrap
replicates, seeded by --seed), one resampling shared by every row.

Held-out tracks: --split-from DATASET (a dataset create_dataset.py built from an
import_audio.py directory of this corpus) scores only the tracks of its --split (default
test), so a model trained on that dataset is scored on tracks it never saw, and every
other row on the same tracks; a track whose --split-group value (default work: a mass's
movements, a tune's versions) also has tracks in the other splits is left out (noted).

Outputs in --out: results.md (the table and its legend), results.csv, results.json
(settings, chance levels, per-scope probe notes, dropped tracks), each written
atomically after everything is computed, so a failed run leaves the previous results.
--write-chunks writes the chunk list (chunk_id, track_id, file, start_s, seconds) and,
without --out, stops there.

Exit status: 0 done; 2 bad input (no tracks.csv, a missing required column, a bad
checkpoint, an anchor file that is not an npz or lacks chunk ids: one line naming the
file); 1 writing failed or no track was usable; 130 interrupted (nothing written).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import json
import math
import platform
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConfigError
from ..evaluation import real_audio as ra
from ..io import InterruptGuard, atomic_path, output_lock, write_error
from ..layout import SPLITS
from ..model.layers import DEFAULT_LAYER, LAYERS
from .common import Parser, device_option, refuse_inputs_as_output, run

if TYPE_CHECKING:
    import torch

PROG = "real_benchmark"
RESULT_FILES = ("results.md", "results.csv", "results.json")
SHIPPED_WIDTH = 0.25  # random-init width when no model gives one: the shipped models'
RETRIEVAL = (("pool_top1", "pool top-1"), ("pool_mrr", "pool MRR"),
             ("within_top1", "within top-1"), ("within_mrr", "within MRR"))


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    a = p.parse_args(argv)
    if a.out is None and a.write_chunks is None:
        p.error("give --out DIR (the benchmark) and/or --write-chunks FILE (the chunk list)")
    if a.chunk_seconds < ra.DEFAULT_CHUNK_SECONDS - 1e-9:
        p.error(f"--chunk-seconds must be >= {ra.DEFAULT_CHUNK_SECONDS} (one encoder input)")
    if a.min_gap < 0 or a.bootstrap < 10 or a.min_per_class < 2 or a.folds < 2:
        p.error("--min-gap >= 0, --bootstrap >= 10, --min-per-class >= 2 and --folds >= 2")
    if a.random_width is not None and not 0 < a.random_width <= 4:
        p.error("--random-width must be in (0, 4]")
    if a.split_from is None and a.split is not None:
        p.error("--split needs --split-from DATASET")
    a.split = a.split or "test"
    a.anchors = _anchor_specs(p, a.anchor)
    return run(PROG, lambda: _bench(a))


def _parser() -> Parser:
    p = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("corpus", type=Path, help="corpus folder holding tracks.csv (and audio/)")
    p.add_argument("--audio-dir", type=Path, default=None,
                   help="folder the table's paths are relative to (default CORPUS/audio)")
    p.add_argument("--models", nargs="*", default=[], metavar="CKPT",
                   help="checkpoints or model folders (audio_encoder.pt), one row each")
    p.add_argument("--anchor", action="append", default=[], metavar="NAME=FILE.npz",
                   help="external embeddings of the chunk list (chunk_ids, embeddings)")
    p.add_argument("--out", type=Path, default=None, help="folder for results.md/.csv/.json")
    p.add_argument("--write-chunks", type=Path, default=None, metavar="FILE",
                   help="write the chunk list (CSV) for anchor scripts")
    p.add_argument("--chunk-seconds", type=float, default=ra.DEFAULT_CHUNK_SECONDS,
                   help="chunk length (default %(default)s s: one 256-frame encoder input)")
    p.add_argument("--min-gap", type=float, default=ra.DEFAULT_GAP_SECONDS,
                   help="seconds between a track's two chunks, at least (default %(default)s)")
    p.add_argument("--seed", type=int, default=0,
                   help="chunk positions, bootstrap, probe and random weights (default 0)")
    p.add_argument("--bootstrap", type=int, default=1000, help="replicates (default 1000)")
    p.add_argument("--within", default="genres",
                   help="column whose values scope 'within' retrieval and the probes "
                        "(default genres: the soundtrack); '' for none")
    p.add_argument("--label-column", nargs="*", default=["artist"], metavar="COLUMN",
                   help="columns a probe predicts, one task each (default artist: the composer)")
    p.add_argument("--group-column", default="album",
                   help="probe folds never split a value of this column (default album)")
    p.add_argument("--min-per-class", type=int, default=4,
                   help="tracks a label needs in its scope to be probed (default 4)")
    p.add_argument("--folds", type=int, default=5, help="probe folds, at most (default 5)")
    p.add_argument("--layer", choices=LAYERS, default=DEFAULT_LAYER,
                   help="encoder output read for checkpoints and random init (default z_d)")
    p.add_argument("--random-width", type=float, default=None,
                   help=f"width of the random-init CNN (default: the first model's, else "
                        f"{SHIPPED_WIDTH})")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="fp32",
                   help="encoder precision (default fp32: reproducible)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument("--split-from", type=Path, default=None, metavar="DATASET",
                   help="score only the tracks of one split of this dataset (create_dataset.py "
                        "output built from an import of this corpus)")
    p.add_argument("--split", choices=SPLITS, default=None,
                   help="the split --split-from scores (default test)")
    p.add_argument("--split-group", default="work", metavar="COLUMN",
                   help="with --split-from, leave out tracks whose value of this column also "
                        "has tracks in the other splits (default work; '' for no check)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _anchor_specs(p: Parser, specs: list[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for s in specs:
        name, sep, file = s.partition("=")
        if not sep or not name.strip() or not file.strip():
            p.error(f"--anchor {s}: expected NAME=FILE.npz")
        if name.strip() in out:
            p.error(f"--anchor {s}: the name {name.strip()} is given twice")
        out[name.strip()] = Path(file.strip())
    return out


@dataclass
class Row:
    """One row of the table: what it is and its per-track values per metric."""

    name: str
    kind: str
    source: str
    dim: int
    trained_on: str
    seconds: float
    values: dict[str, np.ndarray]


def _bench(a: argparse.Namespace) -> int:
    labels = [c for c in dict.fromkeys(a.label_column) if c]
    corpus = ra.read_corpus(a.corpus, a.audio_dir,
                            [a.within, a.group_column, a.split_group, *labels])
    corpus, split = _select(a, corpus)
    _check_outputs(a, corpus)
    dev = device_option(a.device)
    models = [_load(m, dev, a) for m in a.models]
    with output_lock(a.out) if a.out is not None else contextlib.nullcontext():
        progress = not a.no_progress
        chunks, dropped = ra.plan_chunks(corpus.tracks, a.chunk_seconds, a.min_gap, a.seed,
                                         progress)
        if a.write_chunks is not None:
            ra.write_chunk_list(a.write_chunks, chunks)
            print(f"wrote {a.write_chunks}: {len(chunks)} chunks of {a.chunk_seconds:g} s from "
                  f"{len(chunks) // 2} tracks ({len(dropped)} dropped)")
        if a.out is None:
            return 0
        anchors = {n: ra.read_anchor(f, [c.chunk_id for c in chunks]) for n, f in a.anchors.items()}
        mels, failed = ra.decode_chunks(chunks, progress)
        keep = np.array([c.track not in failed for c in chunks])
        dropped += [{"track_id": corpus.tracks[i].track_id, "reason": r} for i, r in failed.items()]
        chunks = [c for c, k in zip(chunks, keep) if k]
        if len(chunks) < 4:
            print(f"{PROG}: error: {len(chunks) // 2} usable tracks (at least 2 needed); "
                  f"dropped: {'; '.join(d['reason'] for d in dropped[:3])}", file=sys.stderr)
            return 1
        for d in dropped:
            print(f"note: {d['track_id']}: dropped: {d['reason']}", file=sys.stderr)
        tracks = [corpus.tracks[c.track] for c in chunks[::2]]
        tasks = _Tasks.make(a, corpus, tracks, labels)
        rows = [_model_row(m, mels[keep], a, tasks, progress) for m in models]
        rows.append(_random_row(a, models, dev, mels[keep], tasks, progress))
        rows.append(_row("log-mel stats", "baseline", "mean+std of 48 dB bands",
                         lambda: ra.logmel_stats(mels[keep]), tasks, "nothing"))
        rows += [_row(n, "anchor", str(a.anchors[n]), lambda e=e: e[keep], tasks, "external")
                 for n, e in anchors.items()]
        meta = {**_meta(a, corpus, chunks, dropped, tasks, dev), "split": split}
        md = _write_results(a.out, rows, tasks, meta)
    print(md)
    print(f"wrote {', '.join(str(a.out / f) for f in RESULT_FILES)}")
    return 0


def _select(a: argparse.Namespace, corpus: ra.Corpus) -> tuple[ra.Corpus, dict | None]:
    """The corpus, or with --split-from only the tracks of that split (notes printed)."""
    if a.split_from is None:
        return corpus, None
    corpus, info = ra.select_split(corpus, ra.read_split(a.split_from, a.split),
                                   a.split_group or None)
    for n in info["notes"]:
        print(f"note: {n}", file=sys.stderr)
    print(f"scoring the {info['scored']} tracks of the {a.split} split of {a.split_from} "
          f"({info['split_tracks']} in the split)", file=sys.stderr)
    return corpus, info


def _check_outputs(a: argparse.Namespace, corpus: ra.Corpus) -> None:
    """Every output writable and none of them an input, before any work."""
    inputs = [corpus.table, *a.anchors.values(), *a.models]
    if a.write_chunks is not None:
        refuse_inputs_as_output(a.write_chunks, inputs, "--write-chunks")
        e = write_error(a.write_chunks.parent)
        if e is not None:
            raise ConfigError(f"--write-chunks {a.write_chunks}: cannot write there "
                              f"({e.strerror or type(e).__name__})")
    if a.out is not None:
        for f in RESULT_FILES:
            refuse_inputs_as_output(a.out / f, inputs)
        e = write_error(a.out)
        if e is not None:
            raise ConfigError(f"--out {a.out}: cannot write there ({e.strerror or type(e).__name__})")


@dataclass
class _Model:
    name: str
    source: str
    encoder: object  # musicrep.inference.Encoder


def _load(path: str, dev: torch.device, a: argparse.Namespace) -> _Model:
    """A checkpoint loaded as encode.py loads it; ConfigError naming it when it cannot be."""
    from ..inference.encoder import load_encoder

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the generated-data warning: the row says it
        try:
            enc = load_encoder(path, device=dev, precision=a.precision, layer=a.layer)
        except (ValueError, FileNotFoundError) as e:
            raise ConfigError(f"--models: {e}") from None
    p = Path(path)
    name = p.parent.name if p.is_file() and p.suffix == ".pt" and p.parent.name else p.name
    return _Model(name, str(path), enc)


@dataclass
class _Tasks:
    """What every row is scored on: the scope of each track, the probes' plans, the
    chance levels, the shared bootstrap weights, and the notes of what was skipped."""

    scope: list[str] | None
    probes: list[ra.ProbePlan]
    chance: dict[str, float]
    weights: np.ndarray
    seed: int
    notes: list[str]

    @classmethod
    def make(cls, a: argparse.Namespace, corpus: ra.Corpus, tracks: list[ra.Track],
             labels: list[str]) -> _Tasks:
        notes: list[str] = []
        within = a.within if a.within and a.within in corpus.columns else None
        if a.within and within is None:
            notes.append(f"{corpus.table} has no column '{a.within}': within-scope retrieval "
                         "skipped; probes run over the whole corpus")
        values = [t.values for t in tracks]
        scope = [v.get(within, "") for v in values] if within else None
        chance = ra.retrieval_chance(len(tracks), scope)
        if scope is not None and math.isnan(chance["within_top1"]):
            notes.append(f"no '{within}' value holds two usable tracks: within-scope "
                         "retrieval skipped")
            scope = None
            chance = ra.retrieval_chance(len(tracks))
        probes = []
        for label in labels:
            if label not in corpus.columns:
                notes.append(f"{corpus.table} has no column '{label}': the {label} probe is "
                             "skipped")
            elif a.group_column not in corpus.columns:
                notes.append(f"{corpus.table} has no column '{a.group_column}' (--group-column)"
                             f": the {label} probe is skipped (--group-column track_id splits "
                             "by track)")
            else:
                plan = ra.plan_probe(values, label, a.group_column, within, a.min_per_class,
                                     a.folds, a.seed)
                notes += [f"{label} probe: {n}" for n in plan.notes]
                if plan.n_tracks:
                    probes.append(plan)
                    chance[f"{label}_acc"] = ra.probe_chance(plan)
                else:
                    notes.append(f"{label} probe skipped: no scope has two labels with "
                                 f">= {a.min_per_class} tracks")
        for n in notes:
            print(f"note: {n}", file=sys.stderr)
        weights = ra.bootstrap_weights(len(tracks), a.bootstrap, a.seed)
        return cls(scope, probes, chance, weights, a.seed, notes)


def _row(name: str, kind: str, source: str, embed, tasks: _Tasks, trained_on: str = "") -> Row:
    """Embed (timed), then score: retrieval and every probe, per track."""
    t0 = time.perf_counter()
    emb = embed()
    seconds = time.perf_counter() - t0
    values = ra.retrieval_scores(emb, tasks.scope)
    track_emb = emb.reshape(len(emb) // 2, 2, -1).mean(axis=1)
    for plan in tasks.probes:
        values[f"{plan.label}_acc"] = ra.probe_scores(plan, track_emb, len(track_emb), tasks.seed)
    return Row(name, kind, source, int(emb.shape[1]), trained_on, seconds, values)


def _model_row(m: _Model, mels: np.ndarray, a: argparse.Namespace, tasks: _Tasks,
               progress: bool) -> Row:
    enc = m.encoder
    return _row(m.name, "checkpoint", m.source,
                lambda: ra.encode_mels(enc.model, mels, enc.layer, enc.device, enc.bf16,
                                       progress=progress, desc=m.name),
                tasks, enc.provenance["data"])


def _random_row(a: argparse.Namespace, models: list[_Model], dev: torch.device, mels: np.ndarray,
                tasks: _Tasks, progress: bool) -> Row:
    from ..inference.embed import resolve_bf16

    width = a.random_width or (models[0].encoder.model.width if models else SHIPPED_WIDTH)
    model = ra.random_encoder(width, a.seed).to(dev)
    bf16 = resolve_bf16(a.precision, dev)
    return _row("random init", "baseline", f"AudioEncoder(width={width:g}), seed {a.seed}",
                lambda: ra.encode_mels(model, mels, a.layer, dev, bf16, progress=progress,
                                       desc="random init"), tasks, "nothing")


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _meta(a: argparse.Namespace, corpus: ra.Corpus, chunks: list[ra.Chunk],
          dropped: list[dict], tasks: _Tasks, dev: torch.device) -> dict:
    from ..version import __version__

    ids = "\n".join(c.chunk_id for c in chunks).encode("utf-8")
    return {
        "corpus": str(corpus.table.parent), "tracks": len(chunks) // 2,
        "tracks_in_table": len(corpus.tracks), "dropped": dropped,
        "chunk_seconds": a.chunk_seconds, "min_gap_seconds": a.min_gap,
        "chunks_sha256": hashlib.sha256(ids).hexdigest(), "seed": a.seed,
        "bootstrap": a.bootstrap, "confidence": ra.CONFIDENCE,
        "within": a.within if tasks.scope is not None else None, "label_columns": [p.label for p in tasks.probes],
        "group_column": a.group_column, "min_per_class": a.min_per_class, "folds": a.folds,
        "layer": a.layer, "precision": a.precision, "device": str(dev), "cpu": _cpu(),
        "musicrep": __version__, "notes": tasks.notes,
    }


# ------------------------------------------------------------------------- outputs


def _columns(tasks: _Tasks) -> list[tuple[str, str]]:
    cols = [c for c in RETRIEVAL if c[0] in tasks.chance]
    return cols + [(f"{p.label}_acc", f"{p.label} acc") for p in tasks.probes]


def _cell(s: dict) -> str:
    if s["mean"] is None:
        return ""
    return f"{s['mean']:.3f} [{s['low']:.3f}, {s['high']:.3f}]"


def _summaries(rows: list[Row], tasks: _Tasks) -> list[dict]:
    out = []
    for r in rows:
        metrics = {k: ra.bootstrap_interval(v, tasks.weights) for k, v in r.values.items()}
        out.append({"row": r.name, "kind": r.kind, "source": r.source, "dim": r.dim,
                    "trained_on": r.trained_on, "embed_seconds": round(r.seconds, 2),
                    "metrics": metrics})
    return out


def _markdown(summary: list[dict], tasks: _Tasks, meta: dict) -> str:
    cols = _columns(tasks)
    head = ["row", "kind", "dim", *[t for _, t in cols]]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for s in summary:
        cells = [_cell(s["metrics"][k]) if k in s["metrics"] else "" for k, _ in cols]
        lines.append(f"| {s['row']} | {s['kind']} | {s['dim']} | " + " | ".join(cells) + " |")
    chance = [f"{tasks.chance[k]:.3f}" for k, _ in cols]
    lines.append("| chance | - | - | " + " | ".join(chance) + " |")
    return "\n".join(lines) + "\n"


def _split_line(split: dict | None) -> str:
    if split is None:
        return ""
    left = len(split["left_out_shared_group"])
    return (f"Tracks: the {split['split']} split of {split['dataset']} ({split['scored']} "
            f"scored of its {split['split_tracks']}"
            + (f"; {left} left out because their '{split['group_column']}' has tracks in "
               "the other splits" if left else "")
            + "): a model trained on that dataset has not seen them.")


def _legend(tasks: _Tasks, meta: dict) -> str:
    chance = ", ".join(f"{t} {tasks.chance[k]:.3f}" for k, t in _columns(tasks))
    n = meta["tracks"]
    text = [
        (f"{n} tracks of {meta['corpus']}, two {meta['chunk_seconds']:g} s chunks each, at "
         f"least {meta['min_gap_seconds']:g} s apart, positions seeded by {meta['seed']}. "
         f"Cells: mean [95% percentile bootstrap interval over tracks, {meta['bootstrap']} "
         "replicates shared by every row]."),
        _split_line(meta.get("split")),
        (f"- pool top-1 / MRR: each chunk queries the other {2 * n - 1} by cosine; top-1 is "
         "the share whose nearest chunk is the other chunk of the same recording, MRR the "
         "mean reciprocal rank of that chunk (ties ranked at random)."),
        (f"- within top-1 / MRR: the same among the chunks of tracks with the query's "
         f"'{meta['within']}' value only (what a source shares, such as a soundtrack's "
         "mastering, is a shortcut the pool rewards)." if tasks.scope is not None else ""),
        (f"- {', '.join(p.label for p in tasks.probes)} acc: out-of-fold accuracy of a "
         "logistic regression (standardised, C = 1) on track embeddings (the mean of the two "
         f"chunks), fitted within each '{meta['within'] or 'corpus'}' value, folds grouped by "
         f"'{meta['group_column']}'; chance = the majority label's share; the probe is "
         "fitted once, the interval resamples the tracks scored." if tasks.probes else ""),
        ("- rows: checkpoint = a trained encoder (trained_on in results.json), random init = "
         "the same CNN with seeded random weights, log-mel stats = mean and std of the 48 "
         "dB mel bands (96 values), anchor = external embeddings of the same chunks."),
        f"- chance levels: {chance}.",
        (f"CPU: {meta['cpu']}; device {meta['device']}, precision {meta['precision']}, "
         f"layer {meta['layer']}."),
    ]
    return "\n".join(t for t in text if t) + "\n"


def _csv(summary: list[dict], tasks: _Tasks) -> str:
    keys = [k for k, _ in _columns(tasks)]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["row", "kind", "dim", "trained_on",
                *[f"{k}{s}" for k in keys for s in ("", "_low", "_high")]])
    for s in summary:
        vals = []
        for k in keys:
            m = s["metrics"].get(k, {"mean": None, "low": None, "high": None})
            vals += ["" if m[x] is None else f"{m[x]:.6f}" for x in ("mean", "low", "high")]
        w.writerow([s["row"], s["kind"], s["dim"], s["trained_on"], *vals])
    w.writerow(["chance", "-", "", "", *[x for k in keys
                                         for x in (f"{tasks.chance[k]:.6f}", "", "")]])
    return buf.getvalue()


def _write_results(out: Path, rows: list[Row], tasks: _Tasks, meta: dict) -> str:
    """results.md/.csv/.json, built in memory, then each renamed into place (Ctrl-C held
    off between the renames). Returns the Markdown table."""
    summary = _summaries(rows, tasks)
    table = _markdown(summary, tasks, meta)
    notes = ("\nNotes:\n" + "".join(f"- {n}\n" for n in meta["notes"])) if meta["notes"] else ""
    md = f"# Real-audio benchmark\n\n{table}\n{_legend(tasks, meta)}{notes}"
    chance = {k: (None if math.isnan(v) else v) for k, v in tasks.chance.items()}
    payload = {"settings": meta, "chance": chance, "rows": summary,
               "probes": {p.label: p.notes for p in tasks.probes}}
    texts = {"results.md": md, "results.csv": _csv(summary, tasks),
             "results.json": json.dumps(payload, indent=1, ensure_ascii=False) + "\n"}
    out.mkdir(parents=True, exist_ok=True)
    guard = InterruptGuard()
    with guard.installed(), guard.committing(), contextlib.ExitStack() as stack:
        # renamed as the stack unwinds, all inside committing(); a failed write renames none
        tmps = {n: stack.enter_context(atomic_path(out / n)) for n in RESULT_FILES}
        for n, tmp in tmps.items():
            tmp.write_text(texts[n], encoding="utf-8")
    return table
