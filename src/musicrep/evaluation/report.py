"""Evaluation outputs: results tables (Markdown, CSV, JSON) and PNG plots.

Files written under the output directory, each atomically (temporary file, then
rename), so a crash never leaves a truncated table or image under its final name:

    results.md          the table with a short legend (and, where they have values, the
                        truth probes' and the breakdown columns' section)
    results.csv         the same rows and the breakdown columns, empty cells where a task
                        does not apply
    results.json        {"dataset": manifest, "rows": [...], "details": ..., "settings": ...}
    bars_genre.png, bars_tagging.png, bars_continuation.png   metric bars per task
    embedding_maps.png  2-D PCA of a test subsample per model, coloured by major genre
    loss_curves.png     training losses from each run's metrics.csv (when found)

A new output file gets its name into ``evaluation.output.OUTPUT_NAMES`` too: what
is not listed there is taken for the user's and kept beside the results.

Plots use matplotlib's Agg backend, so no display is needed. The columns, the bar
plots' tasks and the legend come from the task registry (``evaluation.tasks``);
``TASK_COLUMNS`` is importable from here too.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_path, write_json
from .slices import SLICES, slice_column
from .tasks import (
    BREAKDOWN_LEGEND,
    BREAKDOWNS,
    COLUMNS,
    LEGEND,
    OPTIONAL_TASKS,
    ROW_KEYS,
    SECTION_TASKS,
    TASK_COLUMNS,
    TRUTH_LEGEND,
)

__all__ = [
    "GENERATED_NOTE",
    "TASK_COLUMNS",
    "find_metrics_csv",
    "format_breakdowns",
    "format_markdown",
    "table_columns",
    "plot_embedding_maps",
    "plot_loss_curves",
    "plot_metric_bars",
    "read_loss_curves",
    "write_tables",
]

GENERATED_NOTE = (
    "Generated corpus: these numbers come from data written by a generator, not from "
    "real music; models trained on it are useless for real music."
)

def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def table_columns(rows: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    """COLUMNS without the optional tasks that no row has a value for."""
    drop = {c for t in OPTIONAL_TASKS for c in TASK_COLUMNS[t]
            if all(r.get(c) is None for r in rows)}
    return tuple(c for c in COLUMNS if c not in drop)


def format_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The results as a Markdown table (4 decimals, empty where not applicable)."""
    cols = table_columns(rows)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def format_breakdowns(rows: Sequence[dict[str, Any]]) -> str:
    """results.md's section for the truth probes and the breakdown columns: its text,
    then per broken-down column a table of the rows that have it by slice (the slices
    some row has). "" when none of these columns has a value."""
    truth = any(r.get(c) is not None for t in SECTION_TASKS for c in TASK_COLUMNS[t]
                for r in rows)
    tables = []
    for col in BREAKDOWNS:
        have = [r for r in rows if any(r.get(slice_column(col, s)) is not None for s in SLICES)]
        shown = [s for s in SLICES if any(r.get(slice_column(col, s)) is not None for r in have)]
        if not have:
            continue
        head = ("model", "all", *shown)
        lines = [f"### {col} by slice", "", "| " + " | ".join(head) + " |",
                 "|" + "|".join("---" for _ in head) + "|"]
        lines += ["| " + " | ".join([str(r["model"]), _fmt(r.get(col)),
                                     *(_fmt(r.get(slice_column(col, s))) for s in shown)]) + " |"
                  for r in have]
        tables.append("\n".join(lines) + "\n")
    if not truth and not tables:
        return ""
    text = ([TRUTH_LEGEND] if truth else []) + ([BREAKDOWN_LEGEND] if tables else [])
    return ("\n## Truth probes and breakdowns\n\n" + "\n\n".join(text) + "\n"
            + "".join("\n" + t for t in tables))


def _clean(v: Any) -> Any:
    """JSON-safe value: NaN -> None, numpy scalars -> Python."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def write_tables(
    out_dir: str | os.PathLike,
    rows: Sequence[dict[str, Any]],
    manifest: dict,
    extra: dict[str, Any] | None = None,
    generated: bool = False,
    notes: Sequence[str] = (),
) -> dict[str, Path]:
    """Write results.md, results.csv and results.json; return their paths.

    ``generated`` marks results on a generated corpus (a line saying so heads
    results.md); ``notes`` are printed under the table (e.g. why a task is empty).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clean_rows = [{c: _clean(r.get(c)) for c in ROW_KEYS} for r in rows]
    paths = {"md": out / "results.md", "csv": out / "results.csv", "json": out / "results.json"}

    title = "# Evaluation results (generated corpus)" if generated else "# Evaluation results"
    head = f"{title}\n\n" + (f"{GENERATED_NOTE}\n\n" if generated else "")
    tail = "".join(f"\nNote: {n}\n" for n in notes)
    md = head + format_markdown(clean_rows) + "\n" + LEGEND + "\n" + tail
    md += format_breakdowns(clean_rows)
    with atomic_path(paths["md"]) as tmp:
        tmp.write_text(md, encoding="utf-8")

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(ROW_KEYS)
    for r in clean_rows:
        w.writerow(["" if r[c] is None else r[c] for c in ROW_KEYS])
    with atomic_path(paths["csv"]) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")

    payload = {"dataset": manifest, "generated_corpus": bool(generated), "rows": clean_rows,
               "notes": list(notes)}
    if extra:
        payload.update(extra)
    write_json(paths["json"], payload)
    return paths


def save_figure(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def _corpus_suffix(generated: bool) -> str:
    return " (generated corpus)" if generated else ""


def plot_metric_bars(rows: Sequence[dict[str, Any]], out_dir: str | os.PathLike,
                     generated: bool = False) -> list[Path]:
    """One grouped bar chart per task (models x metrics); tasks with no values are skipped.

    ``generated`` adds "(generated corpus)" to every title.
    """
    plt = pyplot()
    out = Path(out_dir)
    written = []
    for task, cols in TASK_COLUMNS.items():
        models = [r for r in rows if any(r.get(c) is not None for c in cols)]
        if not models:
            continue
        fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(cols) * max(1, len(models)) / 2, 3.6))
        width = 0.8 / len(models)
        x = np.arange(len(cols))
        for i, r in enumerate(models):
            vals = [np.nan if r.get(c) is None else float(r[c]) for c in cols]
            ax.bar(x + (i - (len(models) - 1) / 2) * width, vals, width, label=str(r["model"]))
        ax.set_xticks(x, cols)
        lowest = min((float(r[c]) for r in models for c in cols if r.get(c) is not None),
                     default=0.0)
        ax.set_ylim(min(0.0, lowest), 1)  # R^2 of the mood probe can be negative
        ax.set_title(f"{task}{_corpus_suffix(generated)}")
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.grid(axis="y", alpha=0.3)
        written.append(save_figure(fig, out / f"bars_{task}.png"))
    return written


def plot_embedding_maps(
    embeddings: dict[str, np.ndarray],
    genre_y: np.ndarray,
    genre_names: Sequence[str],
    path: str | os.PathLike,
    generated: bool = False,
) -> Path:
    """2-D PCA of each model's test-embedding subsample, coloured by major genre.

    ``genre_y`` (n, n_major) multi-hot for the same rows; a track is coloured by its
    first major genre, grey when it has none. PCA is deterministic and fast, and
    keeps global structure, which is what a comparison across models needs.
    """
    from sklearn.decomposition import PCA

    plt = pyplot()
    n = len(embeddings)
    cols = min(3, n)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 4.0 * nrows), squeeze=False)
    has = genre_y.sum(axis=1) > 0
    first = np.where(has, genre_y.argmax(axis=1), -1)
    cmap = plt.get_cmap("tab20", max(1, len(genre_names)))
    for ax, (name, emb) in zip(axes.ravel(), embeddings.items()):
        emb = np.asarray(emb, dtype=np.float64)
        if emb.shape[0] >= 2 and np.isfinite(emb).all() and emb.std(axis=0).max() > 0:
            xy = PCA(n_components=2, random_state=0).fit_transform(emb)
        else:
            xy = np.zeros((emb.shape[0], 2))
        if (~has).any():
            ax.scatter(xy[~has, 0], xy[~has, 1], s=4, c="lightgrey", label="no major genre")
        for g in np.unique(first[has]):
            sel = first == g
            ax.scatter(xy[sel, 0], xy[sel, 1], s=4, color=cmap(int(g)), label=str(genre_names[g]))
        ax.set_title(str(name), fontsize="medium")
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    if handles:
        fig.legend(
            handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize="x-small",
            markerscale=3, bbox_to_anchor=(0.5, -0.02 - 0.02 * math.ceil(len(labels) / 6)),
        )
    fig.suptitle("Test embeddings (PCA), coloured by major genre" + _corpus_suffix(generated))
    return save_figure(fig, Path(path))


def find_metrics_csv(checkpoint: str | os.PathLike) -> Path | None:
    """The ``metrics.csv`` of the run a checkpoint belongs to, or None.

    Looked for beside the checkpoint (where the run's config.json is), then one level
    up for checkpoints kept in a ``checkpoints/`` subfolder.
    """
    p = Path(checkpoint)
    folder = p if p.is_dir() else p.parent
    candidates = [folder / "metrics.csv"]
    if folder.name == "checkpoints":
        candidates.append(folder.parent / "metrics.csv")
    return next((c for c in candidates if c.is_file()), None)


def read_loss_curves(
    path: str | os.PathLike,
) -> tuple[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """(x name, {column: (x, y)}) for the loss columns of a run's metrics.csv.

    Loss columns: names containing "loss" and the per-term columns the trainer writes
    (prefixed "train_" or "val_", e.g. train_ntxent_audio_cf).

    The x axis is "epoch" when that column exists, else "step" or "global_step",
    else the row number. Non-numeric and empty cells are left out.
    """
    with open(path, newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    if not table:
        return "row", {}
    fields = list(table[0].keys())
    x_name = next((c for c in ("epoch", "step", "global_step") if c in fields), None)

    def num(v: Any) -> float:
        try:
            return float(v)
        except (TypeError, ValueError):
            return float("nan")

    xs = np.array([num(r[x_name]) for r in table]) if x_name else np.arange(len(table), dtype=float)
    curves = {}
    for c in fields:
        if c is None or not ("loss" in c.lower() or c.startswith(("train_", "val_"))):
            continue
        ys = np.array([num(r.get(c)) for r in table])
        keep = np.isfinite(ys) & np.isfinite(xs)
        if keep.any():
            curves[c] = (xs[keep], ys[keep])
    return x_name or "row", curves


def plot_loss_curves(csv_paths: dict[str, Path], path: str | os.PathLike,
                     generated: bool = False) -> Path | None:
    """One panel per model with its loss columns against epochs; None if nothing to plot."""
    data = {}
    for name, p in csv_paths.items():
        try:
            x_name, curves = read_loss_curves(p)
        except (OSError, csv.Error, UnicodeDecodeError):
            continue
        if curves:
            data[name] = (x_name, curves)
    if not data:
        return None
    plt = pyplot()
    n = len(data)
    cols = min(3, n)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.5 * cols, 3.4 * nrows), squeeze=False,
                             layout="constrained")
    for ax, (name, (x_name, curves)) in zip(axes.ravel(), data.items()):
        for col, (x, y) in curves.items():
            ax.plot(x, y, label=col)
        ax.set_title(str(name), fontsize="medium")
        ax.set_xlabel(x_name)
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.suptitle("Training curves" + _corpus_suffix(generated))
    return save_figure(fig, Path(path))
