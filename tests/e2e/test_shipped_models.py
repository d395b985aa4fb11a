"""Every checkpoint shipped in models/ loads and embeds a generated audio clip."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from musicrep.training.config import PAPER_CONFIGS
from musicrep.training.checkpoint import load_audio_encoder
from musicrep.model.audio_cnn import AudioEncoder

from tests.helpers import REPO

CONFIGS = list(PAPER_CONFIGS)


def test_models_dir_has_all_six_configurations():
    for name in CONFIGS:
        folder = REPO / "models" / name
        assert (folder / "audio_encoder.pt").is_file(), name
        cfg = json.loads((folder / "config.json").read_text())
        assert cfg["experiment_name"] == name
        assert (folder / "audio_encoder.pt").stat().st_size < 5_000_000


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_checkpoint_loads_strictly(name):
    enc = load_audio_encoder(REPO / "models" / name / "audio_encoder.pt")
    cfg = json.loads((REPO / "models" / name / "config.json").read_text())
    assert enc.input_layout == cfg["input_layout"] == "transpose"
    assert enc.width == cfg["width"]
    fresh = AudioEncoder(width=enc.width)
    fresh.load_state_dict(enc.state_dict(), strict=True)


def test_encode_py_embeds_a_clip_with_every_shipped_model(tmp_path):
    rng = np.random.default_rng(0)
    t = np.arange(22050 * 12) / 22050  # 12 s at 22.05 kHz stereo: resampled, mixed down
    mono = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sign(np.sin(2 * np.pi * 2 * t))) / 2
    clip = np.stack([mono, mono + 0.01 * rng.standard_normal(len(t))], axis=1)
    sf.write(tmp_path / "clip.wav", clip.astype(np.float32), 22050)
    for name in CONFIGS:
        out = tmp_path / f"{name}.npz"
        r = subprocess.run(
            [sys.executable, str(REPO / "encode.py"), "--checkpoint",
             str(REPO / "models" / name / "audio_encoder.pt"), str(tmp_path / "clip.wav"),
             "--out", str(out), "--quiet"],
            capture_output=True, text=True, cwd=REPO,
        )
        assert r.returncode == 0, r.stderr
        d = np.load(out)
        assert d["embeddings"].shape == (1, 128) and np.isfinite(d["embeddings"]).all()
        assert str(d["paths"][0]).endswith("clip.wav")

