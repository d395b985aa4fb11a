"""How big a dataset must be for each task: the one table of minimum sizes.

create_dataset checks a new dataset against it and warns (stderr and the manifest's
`warnings`) when a split is too small for a task, so a collection of 30 tracks says at
creation what it cannot give instead of producing empty or meaningless numbers later.
The evaluation and training may import the constants from here (a data-level module:
below both in the layering).

Each minimum is the size below which a task cannot be run or its number means nothing,
not a size that makes it statistically reliable:

- training: one full batch of train tracks (the trainer drops incomplete batches and
  refuses batch_size > train tracks); the shipped configs use batch_size 128;
- validation: 2 val tracks (a contrastive loss over one track has no negative: 0);
- genre probe (and the tag probe alike): per major genre (per tag), at least one
  positive and one negative test track, else its ROC-AUC/PR-AUC is undefined and the
  label is left out; and a positive and a negative among train+val tracks, else the
  probe cannot learn it and scores it at chance;
- mood (generated corpora only): 3 test tracks (Spearman over 2 is always +-1);
- playlist continuation: more than k = 100 test tracks (with k or fewer every ranking
  has Recall@100 = 1) and one playlist with tracks both in train/val and in test;
- CF: fewer factors than the playlists and than the train/val tracks of the CF matrix
  (its rank is at most the smaller of the two: extra factors carry no information).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..settings import TrainConfig

#: Train tracks for one training batch of the shipped configs (their batch_size).
TRAIN_BATCH_SIZE: int = TrainConfig.batch_size
#: Val tracks for a validation loss that is not trivially 0 (a contrastive batch of 2).
MIN_VAL_TRACKS = 2
#: Positive and negative tracks a probe label needs in test (and in train+val).
MIN_PROBE_POSITIVES = 1
MIN_PROBE_NEGATIVES = 1
#: Test tracks the mood probe needs (Spearman of 2 points is always +-1).
MIN_MOOD_TEST_TRACKS = 3
#: The continuation metrics' cutoff: scored only with more test tracks than this.
CONTINUATION_K = 100
#: Playlists with tracks both in train/val and in test that continuation needs.
MIN_CONTINUATION_PLAYLISTS = 1

#: (task, what it needs), for documentation and the summary of the warnings.
MINIMUMS: tuple[tuple[str, str], ...] = (
    ("training", f"train tracks >= batch_size ({TRAIN_BATCH_SIZE} in the shipped configs)"),
    ("validation", f"val tracks >= {MIN_VAL_TRACKS}"),
    ("genre probe", f"per major genre >= {MIN_PROBE_POSITIVES} positive and "
                    f">= {MIN_PROBE_NEGATIVES} negative test track, and both in train+val"),
    ("tag probe", f"per top tag >= {MIN_PROBE_POSITIVES} positive and "
                  f">= {MIN_PROBE_NEGATIVES} negative test track, and both in train+val"),
    ("mood probe", f"test tracks >= {MIN_MOOD_TEST_TRACKS} (generated corpora only)"),
    ("continuation", f"test tracks > {CONTINUATION_K} and >= {MIN_CONTINUATION_PLAYLISTS} "
                     "playlist with tracks in train/val and in test"),
    ("CF", "--cf-factors < the playlists and < the train/val tracks of the CF matrix"),
)


def major_genre_matrix(labels: np.ndarray, codes: tuple[str, ...] | list[str]
                       ) -> tuple[np.ndarray, list[str]]:
    """(N, W) -1-padded vocabulary indices -> ((N, n_major) bool, the major codes).

    A track is positive for major genre GNxx00 when it holds that code or one of its
    detail codes GNxxyy, as the evaluation's genre targets count it.
    """
    majors = [c for c in codes if c.endswith("00")]
    col = {c: j for j, c in enumerate(majors)}
    to_col = np.array([col.get(c[:4] + "00", -1) for c in codes] or [-1], dtype=np.int64)
    y = np.zeros((len(labels), len(majors)), dtype=bool)
    rows, pos = np.nonzero(np.asarray(labels) >= 0)
    cols = to_col[np.asarray(labels)[rows, pos].astype(np.int64)]
    keep = cols >= 0
    y[rows[keep], cols[keep]] = True
    return y, majors


def _unscorable(train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """(C,) bool: labels a probe cannot score (test) or cannot learn (train+val)."""
    def lacks(y: np.ndarray) -> np.ndarray:
        pos = y.sum(0)
        return (pos < MIN_PROBE_POSITIVES) | (len(y) - pos < MIN_PROBE_NEGATIVES)

    return lacks(test) | lacks(train)


def _probe_warning(task: str, unit: str, names: list[str], known: np.ndarray,
                   test: np.ndarray) -> str | None:
    bad = _unscorable(known, test)
    if not len(names) or not bad.any():
        return None
    shown = ", ".join(n for n, b in zip(names, bad) if b)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return (f"{task}: {int(bad.sum())} of {len(names)} {unit} cannot be scored ({shown}): each "
            f"needs >= {MIN_PROBE_POSITIVES} positive and >= {MIN_PROBE_NEGATIVES} negative "
            f"track in test ({len(test)} tracks) and in train+val ({len(known)} tracks)")


def dataset_warnings(
    sizes: Mapping[str, int],
    genres: tuple[np.ndarray, np.ndarray, list[str]],
    tags: tuple[np.ndarray, np.ndarray, list[str]] | None,
    continuation_playlists: int,
    cf: tuple[int, int, int],
    generated: bool,
) -> list[str]:
    """What a new dataset is too small for, one sentence per task (empty: nothing).

    Args:
        sizes: split -> tracks written.
        genres, tags: (train+val targets (N, C) bool, test targets, label names).
        continuation_playlists: playlists with tracks in train/val and in test.
        cf: (--cf-factors, playlists in the CF matrix, train/val tracks in it).
        generated: the corpus is generated (the mood probe exists).
    """
    out: list[str] = []
    n_train, n_val, n_test = sizes["train"], sizes["val"], sizes["test"]
    if n_train < TRAIN_BATCH_SIZE:
        out.append(f"training: the train split has {n_train} tracks, fewer than one batch of "
                   f"the shipped configs (batch_size {TRAIN_BATCH_SIZE}); training needs "
                   f"batch_size <= {n_train} (a smaller batch_size in the config)")
    if n_val < MIN_VAL_TRACKS:
        out.append(f"validation: the val split has {n_val} track; the validation loss needs "
                   f">= {MIN_VAL_TRACKS} (a contrastive loss over one track is 0)")
    for task, unit, target in (("genre probe", "major genres", genres),
                               ("tag probe", "top tags", tags)):
        if target is not None:
            msg = _probe_warning(task, unit, target[2], target[0], target[1])
            if msg:
                out.append(msg)
    if generated and n_test < MIN_MOOD_TEST_TRACKS:
        out.append(f"mood probe: the test split has {n_test} tracks; R^2 and Spearman need "
                   f">= {MIN_MOOD_TEST_TRACKS}")
    if n_test <= CONTINUATION_K or continuation_playlists < MIN_CONTINUATION_PLAYLISTS:
        out.append(f"continuation: cannot be scored with {n_test} test tracks and "
                   f"{continuation_playlists} playlists with tracks in train/val and in test; "
                   f"it needs > {CONTINUATION_K} test tracks (k = {CONTINUATION_K}) and "
                   f">= {MIN_CONTINUATION_PLAYLISTS} such playlist")
    factors, cf_playlists, cf_tracks = cf
    if factors >= min(cf_playlists, cf_tracks):
        out.append(f"CF: --cf-factors {factors} is not below the {cf_playlists} playlists and "
                   f"{cf_tracks} train/val tracks of the CF matrix (its rank is at most "
                   f"{min(cf_playlists, cf_tracks)}); use --cf-factors < "
                   f"{min(cf_playlists, cf_tracks)}")
    return out
