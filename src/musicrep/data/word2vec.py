"""Word2vec over "sentences" of vocabulary indices: the one core behind the genre and the
playlist-tags encoders' initial token tables (gensim, deterministic for a seed).
"""

from __future__ import annotations

import zlib

import numpy as np


def _stable_hash(text: str) -> int:
    # gensim seeds each word vector with hash(word + seed); Python's str hash changes
    # between processes, so the same seed would not give the same vectors.
    return zlib.crc32(text.encode("utf-8"))


def train_token_embeddings(
    sentences: list[list[str]], n_tokens: int, dim: int = 128, seed: int = 0, epochs: int = 100, what: str = "token"
) -> np.ndarray:
    """Word2vec over sentences of vocabulary indices (as words), one per track; returns
    the (n_tokens + 1, dim) matrix, row 0 zeros (padding), row i + 1 = index i. Used for
    the genre and the tags view alike."""
    from gensim.models import Word2Vec  # here: the training path imports tags, not gensim

    sentences = [s for s in sentences if s]
    if not sentences:
        raise ValueError(f"no training track has a {what}: cannot train word2vec")
    window = max(len(s) for s in sentences)
    model = Word2Vec(
        sentences, vector_size=dim, window=window, min_count=1, seed=seed, workers=1,
        epochs=epochs, hashfxn=_stable_hash,
    )
    matrix = np.zeros((n_tokens + 1, dim), dtype=np.float32)
    for word in model.wv.index_to_key:
        matrix[int(word) + 1] = model.wv[word]
    return matrix
