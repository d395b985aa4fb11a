"""The genre vocabulary and the per-track genre label arrays.

A track's labels are the vocabulary indices of its major and detail genre codes, stored
as the original does: int16, padded with -1 to a fixed width of 100.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

LABEL_WIDTH = 100


@dataclass(frozen=True)
class GenreVocab:
    codes: tuple[str, ...]
    names: tuple[str, ...]

    @property
    def index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.codes)}

    @property
    def major(self) -> list[bool]:
        """Major genre codes end in '00' (GNxx00); the rest are detail genres."""
        return [c.endswith("00") for c in self.codes]

    def to_json(self) -> dict:
        return {"codes": list(self.codes), "names": list(self.names), "major": self.major}

    @classmethod
    def from_json(cls, obj: dict) -> GenreVocab:
        return cls(tuple(obj["codes"]), tuple(obj["names"]))


def build_vocab(baskets: list[tuple[str, ...]], names: dict[str, str]) -> tuple[GenreVocab, Counter]:
    """Vocabulary of the codes used by `baskets` that `names` knows, sorted.

    Returns the vocabulary and a count of the codes that `names` does not know (they are
    left out of the labels and reported, not silently dropped).
    """
    used = Counter(c for b in baskets for c in b)
    unknown = Counter({c: n for c, n in used.items() if c not in names})
    codes = tuple(sorted(c for c in used if c in names))
    return GenreVocab(codes, tuple(names[c] for c in codes)), unknown


def label_row(basket: tuple[str, ...], index: dict[str, int]) -> np.ndarray:
    """One track's int16 label row: known codes' indices in basket order, -1 padded."""
    idx = list(dict.fromkeys(index[c] for c in basket if c in index))[:LABEL_WIDTH]
    row = np.full(LABEL_WIDTH, -1, dtype=np.int16)
    row[: len(idx)] = idx
    return row


def multi_hot(labels: np.ndarray, n_genres: int) -> np.ndarray:
    """(N, 100) -1-padded label rows -> (N, n_genres) uint8 multi-hot matrix."""
    out = np.zeros((labels.shape[0], n_genres), dtype=np.uint8)
    rows, cols = np.nonzero(labels >= 0)
    out[rows, labels[rows, cols]] = 1
    return out
