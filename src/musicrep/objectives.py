"""Training objectives: what each of the paper's six configurations optimises.

An objective names the model parts it needs (beyond the audio encoder), the batch
fields it reads, and turns the model's outputs into named loss terms plus their sum
"loss". The Trainer is the same for all of them.

    baseline     MF      mse_cf                         audio -> CF vector
                 gnr     bce_genre                      audio -> multi-hot genres
                 MF_gnr  mse_cf + bce_genre
    contrastive  MF      ntxent_audio_cf
                 gnr     ntxent_audio_genre
                 MF_gnr  ntxent_audio_genre + ntxent_audio_cf + ntxent_cf_genre
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from .config import TrainConfig
from .losses import gather_with_grad, nt_xent

Batch = dict[str, torch.Tensor]


class Objective:
    """Base class. Subclasses set `parts`, `needs_cf`, `needs_genres`, `terms`, and
    return {"loss": total, term: value, ...} from __call__."""

    name: str = "objective"
    parts: tuple[str, ...] = ()  # of "cf", "genre", "cf_head", "genre_head"
    terms: tuple[str, ...] = ()
    needs_cf: bool = False
    needs_genres: bool = False
    uses_gather: bool = False  # True when the loss sees other ranks' embeddings

    def __call__(self, out: Batch, batch: Batch) -> Batch:
        raise NotImplementedError


class BaselineObjective(Objective):
    """Supervised heads on the audio embedding: MSE to the CF vector, BCE-with-logits
    to the multi-hot genres, or their sum."""

    def __init__(self, targets: Sequence[str]):
        if not targets or set(targets) - {"cf", "genre"}:
            raise ValueError(f"baseline targets must be 'cf' and/or 'genre', got {targets}")
        self.targets = tuple(targets)
        self.name = "baseline_" + "_".join(self.targets)
        self.parts = tuple(t + "_head" for t in self.targets)
        self.needs_cf = "cf" in self.targets
        self.needs_genres = "genre" in self.targets
        self.terms = tuple({"cf": "mse_cf", "genre": "bce_genre"}[t] for t in self.targets)

    def __call__(self, out: Batch, batch: Batch) -> Batch:
        terms = {}
        if "cf" in self.targets:
            terms["mse_cf"] = F.mse_loss(out["cf_pred"].float(), batch["cf"].float())
        if "genre" in self.targets:
            terms["bce_genre"] = F.binary_cross_entropy_with_logits(
                out["genre_logits"].float(), batch["genres"].float()
            )
        return {"loss": sum(terms.values()), **terms}


class ContrastiveObjective(Objective):
    """Sum of NT-Xent losses between pairs of views ("audio", "cf", "genre")."""

    def __init__(
        self,
        pairs: Sequence[tuple[str, str]],
        temperature: float = 0.1,
        gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        self.pairs = tuple(pairs)
        self.temperature = temperature
        self.gather = gather
        self.uses_gather = gather is not None
        views = sorted({v for p in self.pairs for v in p} - {"audio"})
        if set(views) - {"cf", "genre"}:
            raise ValueError(f"contrastive views must be audio, cf, genre; got {self.pairs}")
        self.parts = tuple(views)
        self.needs_cf = "cf" in views
        self.needs_genres = "genre" in views
        self.terms = tuple(f"ntxent_{a}_{b}" for a, b in self.pairs)
        self.name = "contrastive_" + "_".join(views)

    def __call__(self, out: Batch, batch: Batch) -> Batch:
        views = {v for p in self.pairs for v in p}
        # Gather each view once (under DDP: the global batch), then compare.
        z = {v: self.gather(out[v]) if self.gather else out[v] for v in views}
        terms = {f"ntxent_{a}_{b}": nt_xent(z[a], z[b], self.temperature) for a, b in self.pairs}
        return {"loss": sum(terms.values()), **terms}


def make_objective(cfg: TrainConfig, distributed: bool = False) -> Objective:
    """The objective of a config: `objective` x `encoder`."""
    if cfg.objective == "baseline":
        targets = {"MF": ["cf"], "gnr": ["genre"], "MF_gnr": ["cf", "genre"]}[cfg.encoder]
        objective: Objective = BaselineObjective(targets)
        objective.name = f"baseline_{cfg.encoder}"
        return objective
    pairs = {
        "MF": [("audio", "cf")],
        "gnr": [("audio", "genre")],
        "MF_gnr": [("audio", "genre"), ("audio", "cf"), ("cf", "genre")],
    }[cfg.encoder]
    gather = gather_with_grad if (distributed and cfg.gather_distributed) else None
    objective = ContrastiveObjective(pairs, cfg.contrastive_temperature, gather)
    objective.name = f"contrastive_{cfg.encoder}"
    return objective
