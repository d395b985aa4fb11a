"""The container the trainer optimises (and wraps in DDP): the encoders by view name and
the baselines' heads on the audio embedding; views/ builds it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .audio_cnn import AudioEncoder


class MultiModalModel(nn.Module):
    """Everything one training configuration optimises, in one module (one optimizer,
    one DDP wrapper, one state dict per part in checkpoints).

    encoders  view name -> encoder ("audio" first); `embed[view](encoder, batch)` runs it
    heads     target view name -> head on the audio embedding (baselines)
    shared    view name -> the view whose encoder embeds it (a second audio crop through
              the audio CNN): such a view has no encoder, so no part, of its own

    forward(batch) -> {view: (B, 128) embedding} plus {f"{target}_head": (B, dim)}.
    Parts (checkpoint names): the encoders' view names and "<target>_head".
    """

    def __init__(
        self,
        encoders: dict[str, nn.Module],
        heads: dict[str, nn.Module],
        embed: dict[str, Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor]],
        shared: dict[str, str] | None = None,
    ):
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.heads = nn.ModuleDict(heads)
        self.embed = embed  # how each view feeds its encoder from the batch, in forward's order
        self.shared = dict(shared or {})
        unknown = {v: e for v, e in self.shared.items() if e not in self.encoders}
        if unknown:
            raise ValueError(f"views {unknown} share encoders the model lacks ({sorted(encoders)})")

    @property
    def audio(self) -> AudioEncoder:
        return self.encoders["audio"]

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {v: self.embed[v](self.encoders[self.shared.get(v, v)], batch)  # (B, 128) each
               for v in self.embed}
        for target, head in self.heads.items():
            out[f"{target}_head"] = head(out["audio"])  # (B, target dim)
        return out

    def parts(self) -> dict[str, nn.Module]:
        return {**self.encoders, **{f"{t}_head": h for t, h in self.heads.items()}}

    def part_state_dicts(self) -> dict[str, dict[str, torch.Tensor]]:
        """{"audio": ..., "cf": ..., "cf_head": ...}: one plain state dict per part."""
        return {name: part.state_dict() for name, part in self.parts().items()}

    def load_part_state_dicts(self, parts: dict[str, dict[str, torch.Tensor]]) -> None:
        """Load every part strictly; ValueError (one line) naming the part that does not fit."""
        own = self.parts()
        if set(parts) != set(own):
            raise ValueError(f"checkpoint holds parts {sorted(parts)}, model has {sorted(own)}")
        for name, sd in parts.items():
            expected = set(own[name].state_dict())
            if set(sd) != expected:
                raise ValueError(_part_mismatch(name, set(sd), expected))
            try:
                own[name].load_state_dict(sd, strict=True)
            except RuntimeError as e:  # shapes: the first line says only "Error(s) in loading"
                detail = " ".join(str(e).split("\n")[1:]).strip() or str(e)
                raise ValueError(f"part '{name}': {detail}") from None


# Keys of the genre/tags encoder before it took the original's bias-free layout.
_OLD_GENRE_KEYS = ("attention.q.weight", "proj.weight")


def _part_mismatch(name: str, got: set[str], expected: set[str]) -> str:
    """One line on why a saved part's keys differ from the model's."""
    if any(k in got for k in _OLD_GENRE_KEYS) and "embedding.weight" in got:
        return (f"part '{name}' was saved by an earlier musicrep whose genre encoder had biased "
                "Q/K/V/output projections (keys 'attention.*', 'embedding.*', 'norm.*'); this "
                "version has the original's bias-free layout, which cannot continue it: train anew")
    extra, missing = sorted(got - expected), sorted(expected - got)
    return (f"part '{name}' does not match this model: unexpected keys {extra[:3]}, "
            f"missing keys {missing[:3]}")
