"""Views: the modalities of a track, each one small unit.

A view has a name, the batch fields it produces, how those fields are read from a
split file (a `FieldReader`, built once per split), its encoder (-> (B, 128)) and,
for baselines, a head target (a field the audio embedding is trained to predict).

    view    fields                            encoder                 head target
    audio   audio (crop_frames, 48)           AudioEncoder (the CNN)  -
    audio2  audio2 (crop_frames, 48): a       the audio view's CNN    -
            second crop, augmented
    cf      cf (cf_dim,), cf_known ()         CFEncoder               cf, MSE
    genre   genre_tokens (max_genres,),       GenreEncoder            genre_targets, BCE
            genre_targets (n_genres,)
    tags    tags_tokens (max_tags,),          GenreEncoder on tags    tags_targets, BCE
            tags_targets (n_tags,)

A view whose data some tracks lack names a `mask_field`: a per-track bool, False where
the track has none (cf_known: train/val tracks in no training playlist have an all-zero
CF vector). The objectives leave such tracks out of that view's loss terms. A view that
names `shares_encoder` has no encoder of its own: that view's embeds it (audio2, the
self-supervised audio-audio view, through the audio CNN).

Adding a modality = one module here with its View subclass (plus whatever writes its
data), registered in VIEWS below; the config names it in `views`/`targets`, and the model, the objectives, the
dataset and the Trainer pick it up from there (docs/extending.md).

Build order. `build_model` constructs the other encoders, then the heads, then the
audio CNN: the order the original layout of this project drew its initial weights in,
so the paper's six configurations start from exactly the same weights as before.
"""

from __future__ import annotations

from typing import Any

from ..data.h5io import SplitInfo
from ..model.multiview import MultiModalModel
from ..settings import TrainConfig
from .audio import AudioView
from .audio_pair import AudioPairView
from .base import FieldReader, View
from .cf import CFView
from .genre import GenreView
from .tags import TagsView
from .vocabulary import genre_tokens

__all__ = ["VIEWS", "FieldReader", "View", "build_model", "genre_tokens", "make_views", "model_args"]

# The registry: a new modality is one module of this package and one entry here.
VIEWS: dict[str, type[View]] = {
    v.name: v for v in (AudioView, CFView, GenreView, TagsView, AudioPairView)
}


def make_views(cfg: TrainConfig, train: SplitInfo) -> dict[str, View]:
    """Every view the run reads (encoders' and heads' targets), set up on the train split."""
    views = {name: VIEWS[name](cfg) for name in ["audio", *cfg.all_views]}
    for view in views.values():
        view.setup(train)
    return views


def build_model(views: dict[str, View], encoders: list[str], targets: list[str]) -> MultiModalModel:
    """The encoders of `encoders` and one head per target on the audio embedding; a view
    that shares another's encoder (audio2) gets none, and is embedded after the others."""
    shared = {v: views[v].shares_encoder for v in encoders if views[v].shares_encoder}
    others = {v: views[v].encoder() for v in encoders if v != "audio" and v not in shared}
    heads = {t: views[t].head() for t in targets}
    audio = views["audio"].encoder()  # last: see the module docstring
    embed = {v: views[v].embed for v in ["audio", *others, *shared]}
    return MultiModalModel({"audio": audio, **others}, heads, embed, shared)


def model_args(views: dict[str, View]) -> dict[str, Any]:
    return {k: v for view in views.values() for k, v in view.model_args().items()}
