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

Any other set of views works the same way (e.g. tags: ntxent_audio_tags, bce_tags; the
self-supervised audio-audio view: ntxent_audio_audio2, two crops of each track).

Tracks without data for a view (its `mask_field`, e.g. cf_known: no CF vector) are left
out of every term of that view: its regression term averages over the other tracks
only, and its NT-Xent terms drop them as anchors, positives and negatives (losses.py).
Every other term uses them as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ..model.losses import gather_with_grad, nt_xent
from ..settings import TrainConfig
from ..views import VIEWS

Batch = dict[str, torch.Tensor]
LOSSES = {"mse": ("mse", F.mse_loss), "bce": ("bce", F.binary_cross_entropy_with_logits)}


def with_mask_fields(fields: Sequence[str], views: Sequence[str]) -> tuple[str, ...]:
    """`fields` plus the mask field of each view that has one."""
    masks = (VIEWS[v].mask_field for v in views)
    return tuple(dict.fromkeys([*fields, *(m for m in masks if m)]))


def view_keep(batch: Batch, view: str) -> torch.Tensor | None:
    """(B,) bool: the tracks that have `view`'s data; None when all do (no mask field,
    or a batch built without it)."""
    field = VIEWS[view].mask_field
    return batch[field].bool() if field and field in batch else None


def masked_mean_loss(loss: Callable[..., torch.Tensor], pred: torch.Tensor, target: torch.Tensor,
                     keep: torch.Tensor | None) -> torch.Tensor:
    """loss(pred, target) averaged over the kept rows only; (B, D) inputs, keep (B,) or
    None. 0 (zero gradients) when no row is kept."""
    if keep is None:
        return loss(pred, target)
    per = loss(pred, target, reduction="none")  # (B, D)
    rows = keep.to(per.dtype).unsqueeze(1)  # (B, 1)
    return (per * rows).sum() / (rows.sum() * per.shape[1]).clamp(min=1)


class Objective:
    """Base class: subclasses set the attributes below and return {"loss": total,
    term: value, ...} from __call__(model outputs, batch)."""

    name: str = "objective"
    views: tuple[str, ...] = ("audio",)  # encoders the model needs
    targets: tuple[str, ...] = ()  # views a head on the audio embedding predicts
    fields: tuple[str, ...] = ("audio",)  # batch fields read from the split files
    terms: tuple[str, ...] = ()
    # the terms that involve the audio view (what `select_on: "audio"` sums)
    audio_terms: tuple[str, ...] = ()
    uses_gather: bool = False  # True when the loss sees other ranks' embeddings

    def __call__(self, out: Batch, batch: Batch) -> Batch:
        raise NotImplementedError


class BaselineObjective(Objective):
    """Supervised heads on the audio embedding, one per target view, with the loss its
    view declares (MSE to the CF vector, BCE-with-logits to multi-hot genres/tags)."""

    def __init__(self, targets: Sequence[str]):
        self.targets = tuple(targets)
        self.name = "baseline_" + "_".join(self.targets)
        self.fields = with_mask_fields(("audio", *(VIEWS[t].target_field for t in self.targets)), self.targets)
        self.terms = tuple(f"{LOSSES[VIEWS[t].target_loss][0]}_{t}" for t in self.targets)
        self.audio_terms = self.terms  # every head sits on the audio embedding

    def __call__(self, out: Batch, batch: Batch) -> Batch:
        terms = {}
        for t, term in zip(self.targets, self.terms):
            loss = LOSSES[VIEWS[t].target_loss][1]
            pred, target = out[f"{t}_head"].float(), batch[VIEWS[t].target_field].float()
            terms[term] = masked_mean_loss(loss, pred, target, view_keep(batch, t))
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
        self.fields = with_mask_fields([VIEWS[v].input_field for v in self.views], self.views)
        self.terms = tuple(f"ntxent_{a}_{b}" for a, b in self.pairs)
        # the audio2 view's crops go through the audio CNN too (views.AudioPairView)
        on_audio = {v for v in self.views if v == "audio" or VIEWS[v].shares_encoder == "audio"}
        self.audio_terms = tuple(f"ntxent_{a}_{b}" for a, b in self.pairs if on_audio & {a, b})
        self.name = "contrastive_" + "_".join(self.views[1:])

    def __call__(self, out: Batch, batch: Batch) -> Batch:
        # Gather each view once (under DDP: the global batch), then compare.
        z = {v: self.gather(out[v]) if self.gather else out[v] for v in self.views}
        keep = {v: self._keep(batch, v) for v in self.views}  # (global B,) bool or None
        terms = {}
        for a, b in self.pairs:
            masks = [k for k in (keep[a], keep[b]) if k is not None]
            both = masks[0] & masks[-1] if masks else None  # tracks that have both views
            terms[f"ntxent_{a}_{b}"] = nt_xent(z[a], z[b], self.temperature, both)
        return {"loss": sum(terms.values()), **terms}

    def _keep(self, batch: Batch, view: str) -> torch.Tensor | None:
        keep = view_keep(batch, view)
        if keep is None or not self.gather:
            return keep
        return self.gather(keep.float()) > 0.5  # the global batch's, in the views' order


def make_objective(cfg: TrainConfig, distributed: bool = False) -> Objective:
    """The objective of a validated config (its resolved views, pairs, targets)."""
    if cfg.objective == "baseline":
        objective: Objective = BaselineObjective(cfg.targets)
    else:
        gather = gather_with_grad if (distributed and cfg.gather_distributed) else None
        objective = ContrastiveObjective(cfg.pairs, cfg.contrastive_temperature, gather)
    objective.name = cfg.run_name
    return objective
