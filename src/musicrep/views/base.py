"""What every view is: the `View` base class and the `FieldReader` a view reads one
track's fields with (see the package docstring for the views there are)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ..data.h5io import SplitInfo
from ..errors import ConfigError
from ..settings import TrainConfig

Batch = dict[str, torch.Tensor]


class FieldReader:
    """Reads one view's fields of one track of one split (prepared per split)."""

    def set_epoch(self, epoch: int) -> None:
        """Called before each epoch (training crops change per epoch)."""

    def read(self, g: Any, index: int) -> Batch:  # g: the open file's `dataset` group
        raise NotImplementedError


class View:
    """Base class. `setup` reads what the view needs from the train split (sizes,
    vocabularies) once per run; the rest uses it. Errors are ConfigErrors naming a key."""

    name: ClassVar[str]
    fields: ClassVar[tuple[str, ...]]  # every field it can produce
    input_field: ClassVar[str]  # what its encoder reads
    target_field: ClassVar[str | None] = None  # what a baseline head predicts
    target_loss: ClassVar[str] = "mse"  # "mse" | "bce"
    mask_field: ClassVar[str | None] = None  # (B,) bool: False where a track lacks this view
    # The view whose encoder embeds this one's input (audio2: a second crop through the
    # audio CNN); such a view has no encoder, no parameters and no checkpoint part of its own.
    shares_encoder: ClassVar[str | None] = None

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg

    @classmethod
    def encoder_files(cls, cfg: TrainConfig) -> dict[str, str]:
        """{config key: path} of files its encoder starts from (checked by load_config)."""
        return {}

    def setup(self, train: SplitInfo) -> None:
        pass

    def reader(self, path: str, info: SplitInfo, train: bool, fields: set[str]) -> FieldReader:
        raise NotImplementedError

    def encoder(self) -> nn.Module:
        raise NotImplementedError

    def embed(self, encoder: nn.Module, batch: Batch) -> torch.Tensor:
        return encoder(batch[self.input_field])  # (B, 128)

    def head(self) -> nn.Module:
        raise ConfigError(f"config key 'targets': the {self.name} view has no head target")

    def model_args(self) -> dict[str, Any]:
        """Sizes saved with checkpoints (what rebuilding the parts needs)."""
        return {}
