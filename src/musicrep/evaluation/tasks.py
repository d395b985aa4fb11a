"""The downstream tasks, registered once: what each needs, how it is scored, its columns.

``TASKS`` holds one ``Task`` per downstream task, in table order. A task names the data
it reads (a field of ``EvalData``, or the continuation ``queries``; where that is None
the task is skipped and its columns stay empty), its scoring function (embeddings and
data in, its column values and details out, or None when it cannot be scored), its
columns, whether it is optional (left out of the Markdown table when no row has a
value: only some datasets have it) and its sentences in the legend of results.md.
The tables, the bar plots and the study's intervals all read the columns from here.
A task also says, from the data alone, why it cannot be scored on a dataset (its
``blocker``; ``not_scored`` gathers them): a label probe needs a label with both a
positive and a negative test track, continuation more than k test tracks and a playlist
spanning the splits, mood two test tracks of different moods.

A task may also name one of its columns to break down (``breakdown``): that column is
scored again on each slice of the test tracks (``evaluation.slices``: popularity
terciles, niche against mainstream genres), as ``<column>@<slice>`` (``BREAKDOWN_COLUMNS``,
in results.json and results.csv, and in a section of results.md of their own).

Adding a downstream task: load its data in ``evaluation.data`` (an ``EvalData``
field), write its scoring function, and add one ``Task`` entry; keep its per-item
arrays (``inp.items``) for the study's bootstrap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..layout import CONTINUATION, GENRES, TRACK_TAGS
from .continuation import (
    HELD_KEYS,
    PLAYLIST_BATCH,
    K,
    continuation_degenerate,
    continuation_metrics,
    continuation_vote_metrics,
)
from .metrics import macro_roc_pr_auc, scorable_labels
from .probes import linear_probe, mood_probe
from .slices import SLICES, auc_by_slice, r2_by_slice, recall_by_slice, slice_column

if TYPE_CHECKING:
    from .data import EvalData

__all__ = [
    "BREAKDOWNS",
    "BREAKDOWN_COLUMNS",
    "BREAKDOWN_LEGEND",
    "COLUMNS",
    "LABEL_PROBES",
    "LEGEND",
    "OPTIONAL_TASKS",
    "ROW_KEYS",
    "SECTION_TASKS",
    "TASKS",
    "TASK_COLUMNS",
    "TRUTH_LEGEND",
    "Task",
    "TaskInput",
    "applicable_tasks",
    "evaluate_embeddings",
    "not_scored",
    "task_data",
]


@dataclass
class TaskInput:
    """One model's embeddings and the data the tasks score them with."""

    data: EvalData
    queries: tuple[list[np.ndarray], list[np.ndarray]] | None  # (known rows, held columns)
    x_known: np.ndarray  # (n_train + n_val, d): train then val tracks
    x_test: np.ndarray  # (n_test, d)
    probe_rows: np.ndarray  # rows of x_known the probes are trained on
    x_probe: np.ndarray  # x_known[probe_rows]
    seed: int = 0
    k: int = K
    batch_size: int = PLAYLIST_BATCH
    probe_jobs: int = 1
    items: dict[str, np.ndarray] = field(default_factory=dict)  # receives the per-item arrays

    def needed(self, name: str) -> Any:
        """What a task's ``needs`` names: ``queries`` or a field of ``data``."""
        return self.queries if name == "queries" else getattr(self.data, name)

    def train_targets(self, parts: dict[str, np.ndarray]) -> np.ndarray:
        """Per-split targets -> the probes' training targets (rows of ``probe_rows``)."""
        return np.concatenate([parts["train"], parts["val"]])[self.probe_rows]


#: Task -> the prefix of its per-item arrays ``<prefix>_scores``/``_labels`` (and
#: ``_niche``): the label probes, the tasks scored per test track and label.
LABEL_PROBES = {"genre": "genre", "tagging": "tag", "true_genre": "true_genre",
                "true_detail": "true_detail"}

Scores = tuple[dict[str, Any], dict[str, Any]]  # (column values, details)
Queries = tuple[list[np.ndarray], list[np.ndarray]]
# Why a task cannot be scored on a dataset (one sentence), or None: (data, queries, k).
Blocker = Callable[["EvalData", Queries, int], "str | None"]


@dataclass(frozen=True)
class Task:
    """One downstream task: its data, its scoring, its columns and its legend."""

    name: str  # also the bar plot's file name, bars_<name>.png
    needs: str  # a field of EvalData, or "queries"; None there: the task is skipped
    score: Callable[[TaskInput], Scores | None]  # None: not scored (columns stay empty)
    columns: tuple[str, ...]
    legend: str  # its text in results.md's legend, wrapped as printed there; joined to
    #              the previous task's with a space, or a line break when it starts with one
    optional: bool = False  # only some datasets have it
    blocker: Blocker | None = None  # called only when the task's data is there
    breakdown: str | None = None  # its column scored per slice of the test tracks


def _at(column: str, by_slice: dict[str, Any]) -> dict[str, Any]:
    """Slice values -> breakdown columns ``<column>@<slice>``."""
    return {slice_column(column, name): v for name, v in by_slice.items()}


def _probe(inp: TaskInput, parts: dict[str, np.ndarray], prefix: str,
           codes: list[str] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A linear probe of label targets: (macro AUCs, its ROC-AUC per slice). ``codes``
    name the label columns (genre codes), so the niche genres' columns are known."""
    scores = linear_probe(inp.x_probe, inp.train_targets(parts), inp.x_test, inp.seed,
                          n_jobs=inp.probe_jobs)
    labels = parts["test"]
    inp.items[f"{prefix}_scores"], inp.items[f"{prefix}_labels"] = scores, labels
    slices, by_slice = inp.data.slices, {}
    if slices is not None and codes is not None:
        niche = None
        if slices.niche is not None and len(codes) == labels.shape[1]:
            niche = inp.items[f"{prefix}_niche"] = np.isin(codes, slices.niche_majors)
        by_slice = auc_by_slice(scores, labels, slices, niche)
    return macro_roc_pr_auc(labels, scores), by_slice


def _probe_scores(inp: TaskInput, parts: dict[str, np.ndarray], task: str, prefix: str,
                  codes: list[str] | None = None) -> Scores:
    """A label probe's columns ``<task>_roc_auc``/``_pr_auc`` (and the ROC-AUC per slice
    when ``codes`` are given) and its counts of labels scored and skipped."""
    g, by_slice = _probe(inp, parts, prefix, codes)
    return ({f"{task}_roc_auc": g["roc_auc"], f"{task}_pr_auc": g["pr_auc"],
             **_at(f"{task}_roc_auc", by_slice)},
            {f"{task}_labels_scored": g["n_scored"], f"{task}_labels_skipped": g["n_skipped"]})


def score_genre(inp: TaskInput) -> Scores:
    """Genre classification: the linear probe per major genre, macro ROC-AUC and PR-AUC."""
    return _probe_scores(inp, inp.data.genre_y, "genre", LABEL_PROBES["genre"],
                         inp.data.major_codes)


def score_true_genre(inp: TaskInput) -> Scores:
    """The genre probe against the generator's true major genres (generated corpora)."""
    return _probe_scores(inp, inp.data.true_genre_y, "true_genre", LABEL_PROBES["true_genre"],
                         inp.data.true_genre_codes)


def score_true_detail(inp: TaskInput) -> Scores:
    """The same probe on the generator's true detail genres (sub-genres): what the
    genre view (and the audio) knows and the playlists do not."""
    return _probe_scores(inp, inp.data.true_detail_y, "true_detail",
                         LABEL_PROBES["true_detail"])


def score_tags(inp: TaskInput) -> Scores:
    """Automatic tagging: the same probe on the top-50 playlist tags."""
    return _probe_scores(inp, inp.data.tag_y, "tag", LABEL_PROBES["tagging"])


def _continuation_scored(inp: TaskInput) -> bool:
    return bool(inp.queries[0]) and continuation_degenerate(len(inp.x_test), inp.k) is None


def score_continuation(inp: TaskInput) -> Scores | None:
    """Cold-start continuation, mean-query protocol (None: too few test tracks)."""
    if not _continuation_scored(inp):
        return None
    k = inp.k
    m = continuation_metrics(inp.x_known, inp.x_test, inp.queries[0], inp.queries[1], k,
                             inp.batch_size, inp.items)
    by_slice = {}
    if inp.data.slices is not None:
        by_slice = recall_by_slice(*(inp.items[key] for key in HELD_KEYS), k, inp.data.slices)
    return ({**{key: m[key] for key in (f"recall@{k}", "r_precision", f"ndcg@{k}", f"map@{k}")},
             **_at(f"recall@{k}", by_slice)},
            {"playlists": len(inp.queries[0])})


def score_continuation_vote(inp: TaskInput) -> Scores | None:
    """Cold-start continuation, vote protocol (None: too few test tracks)."""
    if not _continuation_scored(inp):
        return None
    return (continuation_vote_metrics(inp.x_known, inp.x_test, inp.queries[0], inp.queries[1],
                                      inp.k, batch_size=inp.batch_size, items=inp.items), {})


def score_mood(inp: TaskInput) -> Scores:
    """Mood (generated corpora): the ridge probe of the hidden per-song mood."""
    mood = inp.data.mood
    mp = mood_probe(inp.x_probe, inp.train_targets(mood), inp.x_test,
                    mood["test"], items=inp.items)
    by_slice = {}
    if inp.data.slices is not None:
        by_slice = r2_by_slice(inp.items["mood_pred"], inp.items["mood_true"], inp.data.slices)
    return {"mood_r2": mp["r2"], "mood_spearman": mp["spearman"], **_at("mood_r2", by_slice)}, {}


def _labels_blocker(task: str, y_test: np.ndarray, what: str) -> str | None:
    """A probe's AUCs need a label with a positive and a negative test track."""
    if scorable_labels(y_test).size:
        return None
    if y_test.shape[1] == 0:
        return f"{task} not scored: the dataset has no {what}"
    return (f"{task} not scored: none of the {y_test.shape[1]} {what} has both a positive and "
            f"a negative among the {y_test.shape[0]} test tracks (a label is scored when at "
            "least one test track has it and one does not: at least 2 test tracks)")


def _genre_blocker(data: EvalData, queries: Queries | None, k: int = K) -> str | None:
    return _labels_blocker("genre", data.genre_y["test"], "major genres")


def _tag_blocker(data: EvalData, queries: Queries | None, k: int = K) -> str | None:
    return _labels_blocker("tagging", data.tag_y["test"], "tags")


def _truth_blocker(task: str, field_name: str, key: str, what: str) -> Blocker:
    """A truth probe's blocker: the truth file lists no such genres (``key``), or none
    has a positive and a negative test track."""
    def blocker(data: EvalData, queries: Queries | None, k: int = K) -> str | None:
        y_test = getattr(data, field_name)["test"]
        if y_test.shape[1] == 0:
            return f"{task} not scored: the truth file {data.truth_path} has no '{key}'"
        return _labels_blocker(task, y_test, what)

    return blocker


def _continuation_blocker(task: str) -> Blocker:
    def blocker(data: EvalData, queries: Queries, k: int = K) -> str | None:
        why = continuation_degenerate(len(data.ids["test"]), k, task)
        if why is None and not queries[0]:
            why = (f"{task} not scored: no playlist of {CONTINUATION} has tracks both in "
                   "train/val and in test")
        return why

    return blocker


def _mood_blocker(data: EvalData, queries: Queries | None, k: int = K) -> str | None:
    test = data.mood["test"]
    if len(test) >= 2 and np.ptp(test) > 0:
        return None
    return (f"mood not scored: R^2 needs at least 2 test tracks of different moods; the "
            f"test split has {len(test)} track(s), all of one mood")


TASKS: tuple[Task, ...] = (
    Task("genre", "genre_y", score_genre, ("genre_roc_auc", "genre_pr_auc"),
         # the genre entry describes both probes (tagging is the same probe on tags)
         "Genre and tagging: linear probe (standardised features, logistic regression "
         "one-vs-rest)\ntrained on train+val embeddings, scored on test tracks; ROC-AUC "
         "and PR-AUC (average\nprecision) macro over major genres / the top-50 playlist "
         "tags.", blocker=_genre_blocker, breakdown="genre_roc_auc"),
    Task("tagging", "tag_y", score_tags, ("tag_roc_auc", "tag_pr_auc"), "",
         blocker=_tag_blocker),
    Task("continuation", "queries", score_continuation,
         (f"recall@{K}", "r_precision", f"ndcg@{K}", f"map@{K}"),
         "Continuation: for each\nplaylist with tracks in train/val and in test, all test "
         "tracks ranked by cosine\nsimilarity to the mean of the playlist's known tracks' "
         "normalised embeddings; held-out\ntest tracks scored with Recall@100, "
         "R-precision, NDCG@100, MAP@100 (mean over playlists).",
         blocker=_continuation_blocker("continuation"), breakdown=f"recall@{K}"),
    Task("continuation_vote", "queries", score_continuation_vote,
         (f"vote_recall@{K}", "vote_r_precision", f"vote_ndcg@{K}", f"vote_map@{K}"),
         "\nvote_*: the same metrics for the second protocol (each known track retrieves "
         "its 100\nmost similar test tracks; candidates ranked by how many known tracks "
         "retrieved them,\nties by mean similarity).",
         blocker=_continuation_blocker("continuation_vote")),
    Task("mood", "mood", score_mood, ("mood_r2", "mood_spearman"),
         "mood (generated corpora only): ridge probe of the generator's\nhidden per-song "
         "mood, R^2 and Spearman on test tracks.", optional=True, blocker=_mood_blocker,
         breakdown="mood_r2"),
    # The truth probes explain themselves in BREAKDOWN_LEGEND, printed only where they
    # have values: the legend above stays what it was for every other dataset.
    Task("true_genre", "true_genre_y", score_true_genre,
         ("true_genre_roc_auc", "true_genre_pr_auc"), "", optional=True,
         blocker=_truth_blocker("true_genre", "true_genre_y", "song_major_genres",
                                "true major genres"), breakdown="true_genre_roc_auc"),
    Task("true_detail", "true_detail_y", score_true_detail,
         ("true_detail_roc_auc", "true_detail_pr_auc"), "", optional=True,
         blocker=_truth_blocker("true_detail", "true_detail_y", "song_detail_genres",
                                "true detail genres")),
)

TASK_COLUMNS: dict[str, tuple[str, ...]] = {t.name: t.columns for t in TASKS}
COLUMNS = ("model", *(c for t in TASKS for c in t.columns))
#: The columns broken down by slice, in table order, and their per-slice columns.
BREAKDOWNS = tuple(t.breakdown for t in TASKS if t.breakdown)
BREAKDOWN_COLUMNS = tuple(slice_column(c, s) for c in BREAKDOWNS for s in SLICES)
ROW_KEYS = (*COLUMNS, *BREAKDOWN_COLUMNS)  # a result row: the model, every column
#: Tasks that only some datasets have: left out of the Markdown table when no row has them.
OPTIONAL_TASKS = tuple(t.name for t in TASKS if t.optional)
# The file a task's data comes from, for "the dataset has no ..." (optional tasks: none).
_SOURCE = {"genre_y": GENRES, "tag_y": TRACK_TAGS, "queries": CONTINUATION}


def task_data(task: Task, data: EvalData, queries: Queries | None) -> Any:
    """The data ``task`` scores with (None: the dataset lacks it)."""
    return queries if task.needs == "queries" else getattr(data, task.needs)


def applicable_tasks(data: EvalData, queries: Queries | None) -> list[str]:
    """The tasks a report has for this dataset: every task but the optional ones whose
    data it lacks (mood without a generator's truth)."""
    return [t.name for t in TASKS
            if not (t.optional and task_data(t, data, queries) is None)]


def not_scored(data: EvalData, queries: Queries | None, k: int = K) -> dict[str, str]:
    """Why each applicable task cannot be scored on this dataset: task name -> one
    sentence naming what it lacks. Decided by the data alone (labels, split sizes,
    playlists), so it is known before any model is run, and holds for every row."""
    out = {}
    applicable = applicable_tasks(data, queries)
    for t in TASKS:
        if t.name not in applicable:
            continue
        if task_data(t, data, queries) is None:
            out[t.name] = f"{t.name} not scored: the dataset has no {_SOURCE[t.needs]}"
        elif t.blocker is not None and (why := t.blocker(data, queries, k)):
            out[t.name] = why
    return out


_REFERENCE_LEGEND = """\
random-init: untrained encoder of the first model's architecture. popularity: test
tracks ranked by their playlist count in popularity.json (which includes the evaluated
playlists, so it is an optimistic reference). Empty cells: not applicable."""


def _legend() -> str:
    text = ""
    for t in TASKS:
        if t.legend:
            text += t.legend if not text or t.legend.startswith("\n") else " " + t.legend
    return text + "\n" + _REFERENCE_LEGEND


#: The legend under the results table: every task's text, then the reference rows'.
LEGEND = _legend()

#: The tasks whose columns TRUTH_LEGEND explains (their legend above is empty).
SECTION_TASKS = ("true_genre", "true_detail")
#: results.md's section for the truth probes and the breakdown columns (printed only
#: where one of them has a value): its text on the truth probes ...
TRUTH_LEGEND = """\
true_genre, true_detail (generated corpora only): the genre probe trained and scored on
the generator's true major genres (song_major_genres of generated_truth.json) and on
its true detail genres (song_detail_genres) instead of the metadata labels; on a corpus
whose metadata is the truth (presets G0, G1) true_genre equals genre."""
#: ... and on the breakdown columns.
BREAKDOWN_LEGEND = """\
By slice: each column again on a part of the test tracks. top, middle, bottom: the
popularity terciles (playlist count in popularity.json, ties by track id; equal parts).
niche, mainstream (generated corpora only): the generator's niche major genres
(niche_major_genres of the truth file, else its rule: the genres with the fewest songs)
against the others; for the genre probes the niche genres' columns over all test
tracks, for mood and continuation the test tracks whose first true major genre is
niche. Recall@100 of a slice: per playlist the share of its held-out tracks in the
slice ranked within the first 100, averaged over the playlists holding one. all: the
column over every test track."""


def evaluate_embeddings(
    emb: dict[str, np.ndarray],
    data: EvalData,
    seed: int = 0,
    k: int = K,
    batch_size: int = 256,
    queries: tuple[list[np.ndarray], list[np.ndarray]] | None = None,
    probe_max_train: int | None = None,
    probe_jobs: int = 1,
    items: dict[str, np.ndarray] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every task of ``TASKS`` for one model's split embeddings {"train","val","test"}: (N, d).

    ``probe_max_train`` caps the probes' training set at a seeded random subset of
    train+val tracks (the full Melon train+val is 585k tracks; continuation always
    uses all of them). Returns (row, details): the row has ``ROW_KEYS`` (None where a
    task or a slice was skipped), details the counts behind it (labels scored/skipped,
    playlists, the slices' sizes). ``items``, when given, receives the per-item arrays
    (``evaluation.items``); the tasks keep them either way, as the breakdown columns are
    scored from them.
    """
    row: dict[str, Any] = {key: None for key in ROW_KEYS}
    details: dict[str, Any] = {}
    x_tr = np.concatenate([emb["train"], emb["val"]])
    probe_rows = np.arange(len(x_tr))
    if probe_max_train is not None and probe_max_train < len(x_tr):
        rng = np.random.default_rng(seed)
        probe_rows = np.sort(rng.choice(len(x_tr), size=probe_max_train, replace=False))
    details["probe_train_tracks"] = len(probe_rows)
    inp = TaskInput(data, queries, x_tr, emb["test"], probe_rows, x_tr[probe_rows], seed, k,
                    batch_size, probe_jobs, {} if items is None else items)
    for task in TASKS:
        if inp.needed(task.needs) is None:
            continue
        scored = task.score(inp)
        if scored is not None:
            row.update(scored[0])
            details.update(scored[1])
    if data.slices is not None:
        details.update(data.slices.facts())
        inp.items.update(data.slices.items())
    return row, details
