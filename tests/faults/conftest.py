"""Fixtures the fault tests share."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from musicrep.model.audio_cnn import AudioEncoder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A random width-0.125 encoder with its config.json, as training exports it."""
    d = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    torch.save(AudioEncoder(width=0.125).state_dict(), d / "audio_encoder.pt")
    (d / "config.json").write_text(json.dumps({"input_layout": "transpose"}))
    return d
