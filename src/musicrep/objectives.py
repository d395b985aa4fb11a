"""Training objectives: what a run optimises, over the views it names.

An objective declares the views whose encoders it needs (`views`), the heads it
trains (`targets`), the batch fields it reads (`fields`: the dataset reads only those)
and turns the model's outputs into named loss terms plus their sum "loss". The Trainer
is the same for all of them. The paper's six configurations:

    baseline     MF      mse_cf                         audio -> CF vector
                 gnr     bce_genre                      audio -> multi-hot genres
                 MF_gnr  mse_cf + bce_genre
    contrastive  MF      ntxent_audio_cf
                 gnr     ntxent_audio_genre
                 MF_gnr  ntxent_audio_genre + ntxent_audio_cf + ntxent_cf_genre

Any other set of views works the same way (e.g. tags: ntxent_audio_tags, bce_tags).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from .config import TrainConfig
from .losses import gather_with_grad, nt_xent
from .views import VIEWS

Batch = dict[str, torch.Tensor]
LOSSES = {"mse": ("mse", F.mse_loss), "bce": ("bce", F.binary_cross_entropy_with_logits)}


class Objective:
    """Base class: subclasses set the attributes below and return {"loss": total,
    term: value, ...} from __call__(model outputs, batch)."""

    name: str = "objective"
    views: tuple[str, ...] = ("audio",)  # encoders the model needs
    targets: tuple[str, ...] = ()  # views a head on the audio embedding predicts
    fields: tuple[str, ...] = ("audio",)  # batch fields read from the split files
    terms: tuple[str, ...] = ()
    uses_gather: bool = False  # True when the loss sees other ranks' embeddings

    def __call__(self, out: Batch, batch: Batch) -> Batch:
        raise NotImplementedError


class BaselineObjective(Objective):
    """Supervised heads on the audio embedding, one per target view, with the loss its
    view declares (MSE to the CF vector, BCE-with-logits to multi-hot genres/tags)."""

    def __init__(self, targets: Sequence[str]):
        self.targets = tuple(targets)
        self.name = "baseline_" + "_".join(self.targets)
        self.fields = ("audio", *(VIEWS[t].target_field for t in self.targets))
        self.terms = tuple(f"{LOSSES[VIEWS[t].target_loss][0]}_{t}" for t in self.targets)

    def __call__(self, out: Batch, batch: Batch) -> Batch:
        terms = {}
        for t, term in zip(self.targets, self.terms):
            loss = LOSSES[VIEWS[t].target_loss][1]
            terms[term] = loss(out[f"{t}_head"].float(), batch[VIEWS[t].target_field].float())
        return {"loss": sum(terms.values()), **terms}


class ContrastiveObjective(Objective):
    """Sum of NT-Xent losses between pairs of views."""

    def __init__(
        self,
        pairs: Sequence[Sequence[str]],
        temperature: float = 0.1,
        gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        self.pairs = tuple((a, b) for a, b in pairs)
        self.temperature = temperature
        self.gather = gather
        self.uses_gather = gather is not None
        self.views = tuple(dict.fromkeys(["audio", *(v for p in self.pairs for v in p)]))
        self.fields = tuple(VIEWS[v].input_field for v in self.views)
        self.terms = tuple(f"ntxent_{a}_{b}" for a, b in self.pairs)
        self.name = "contrastive_" + "_".join(self.views[1:])

    def __call__(self, out: Batch, batch: Batch) -> Batch:
        # Gather each view once (under DDP: the global batch), then compare.
        z = {v: self.gather(out[v]) if self.gather else out[v] for v in self.views}
        terms = {f"ntxent_{a}_{b}": nt_xent(z[a], z[b], self.temperature) for a, b in self.pairs}
        return {"loss": sum(terms.values()), **terms}


def make_objective(cfg: TrainConfig, distributed: bool = False) -> Objective:
    """The objective of a validated config (its resolved views, pairs, targets)."""
    if cfg.objective == "baseline":
        objective: Objective = BaselineObjective(cfg.targets)
    else:
        gather = gather_with_grad if (distributed and cfg.gather_distributed) else None
        objective = ContrastiveObjective(cfg.pairs, cfg.contrastive_temperature, gather)
    objective.name = cfg.run_name
    return objective
