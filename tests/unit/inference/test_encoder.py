"""The Python API (musicrep.load_encoder) and the HEAR API, on shipped and random models."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from musicrep import load_encoder
from musicrep.audio import file_mel, mel_to_frames
from musicrep.inference.embed import CHUNK_FRAMES, CHUNK_SECONDS, embed_stream
from musicrep.inference.encoder import GeneratedDataWarning
from musicrep.model.audio_cnn import AudioEncoder

from tests.helpers import REPO
from tests.helpers.docs import readme_block

SHIPPED = REPO / "models" / "contrastive_MF_gnr"


def _song(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    notes = 220 * 2 ** (np.floor(t * 2) % 12 / 12)  # a new pitch every 0.5 s
    return (0.3 * np.sin(2 * np.pi * notes * t) + 0.02 * rng.standard_normal(len(t))).astype(
        np.float32)


@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
    """A random-init width-0.125 encoder saved with a config.json (layout transpose)."""
    d = tmp_path_factory.mktemp("random_model")
    torch.manual_seed(1)
    torch.save(AudioEncoder(width=0.125).state_dict(), d / "audio_encoder.pt")
    (d / "config.json").write_text(json.dumps({"input_layout": "transpose"}))
    return d


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_embed_matches_the_file_path_and_the_stream(random_model, tmp_path):
    enc = load_encoder(random_model, device="cpu", precision="fp32")
    y = _song(20.0, 16000)
    sf.write(tmp_path / "s.wav", y, 16000, subtype="FLOAT")  # no PCM rounding
    rows, starts = enc.embed_chunks(y, 16000)
    n_frames = 1 + len(y) // 256
    assert rows.shape == (n_frames // CHUNK_FRAMES, 128) and rows.dtype == np.float32
    assert CHUNK_SECONDS == 4.096 and np.allclose(starts, 4.096 * np.arange(len(rows)))
    # The same numbers as the whole-mel route (frames -> chunks -> encoder -> mean).
    whole = next(embed_stream(enc.model, [mel_to_frames(file_mel(tmp_path / "s.wav"))]))
    np.testing.assert_allclose(enc.embed(y, 16000), whole, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(enc.embed_file(tmp_path / "s.wav"), whole, rtol=1e-4, atol=1e-5)
    info = enc.info
    assert info["normalised"] is False and info["chunk_seconds"] == 4.096
    assert info["width"] == 0.125 and info["input_layout"] == "transpose"
    assert info["trained_on"] == "unknown"  # no provenance key: unknown, not guessed
    assert enc.dim == 128 and enc.sample_rate == 16000


def test_sample_rate_is_applied_not_assumed(random_model):
    enc = load_encoder(random_model, device="cpu", precision="fp32")
    y16 = _song(10.0, 16000)
    y44 = _song(10.0, 44100)
    stereo = np.stack([y44, y44])  # (channels, samples)
    e16, e44, es = enc.embed(y16, 16000), enc.embed(y44, 44100), enc.embed(stereo, 44100)
    assert _cos(e16, e44) > 0.99 and np.allclose(e44, es, atol=1e-5)
    # Frames follow the declared rate: 10 s at 44.1 kHz is 2 chunks, as at 16 kHz.
    assert len(enc.embed_chunks(y44, 44100)[0]) == len(enc.embed_chunks(y16, 16000)[0]) == 2
    assert len(enc.embed_chunks(y44, 16000)[0]) == 6  # the same samples read as 27.6 s
    with pytest.raises(ValueError, match="sample rate"):
        enc.embed(y16, 16000.5)
    with pytest.raises(ValueError, match=r"\(samples, channels\)"):
        enc.embed(stereo.T, 44100)
    with pytest.raises(ValueError, match="too short"):
        enc.embed(np.zeros(100, np.float32), 16000)
    # Shorter than one chunk: one padded chunk starting at 0.
    rows, starts = enc.embed_chunks(y16[:16000], 16000)
    assert rows.shape == (1, 128) and starts.tolist() == [0.0]


def test_z_layer_width_and_shipped_provenance_warning(tmp_path):
    # The warning is once per checkpoint and process, and other tests load SHIPPED: a
    # copy at a path not loaded before warns afresh.
    shipped = tmp_path / SHIPPED.name
    shutil.copytree(SHIPPED, shipped)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        enc = load_encoder(shipped, device="cpu", layer="z")
        load_encoder(shipped / "audio_encoder.pt", device="cpu")  # same file: no 2nd warning
    gen = [w for w in caught if issubclass(w.category, GeneratedDataWarning)]
    assert len(gen) == 1 and "GENERATED" in str(gen[0].message)
    assert enc.dim == 256 == enc.model.z_dim  # width 0.25: 2 x 128 channels, not 1024
    assert enc.info["trained_on"] == "generated"
    prov = enc.info["provenance"]
    assert prov["generator"]["generator"] == "musicrep.toy.make_toy_melon"
    cfg = json.loads((SHIPPED / "config.json").read_text())
    assert prov["epochs"] == cfg["epochs"] and prov["width"] == 0.25 and prov["train_tracks"] > 0


@pytest.mark.parametrize("which", ["shipped", "random"])
def test_bf16_agrees_with_fp32_per_track(which, random_model, tmp_path):
    model = SHIPPED if which == "shipped" else random_model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GeneratedDataWarning)
        fp32 = load_encoder(model, device="cpu", precision="fp32")
        bf16 = load_encoder(model, device="cpu", precision="bf16")
    assert not fp32.bf16 and bf16.bf16
    tracks = [_song(9.0, 22050, seed=i) * (0.2 + i) for i in range(6)]
    a = np.stack([fp32.embed(y, 22050) for y in tracks])
    b = np.stack([bf16.embed(y, 22050) for y in tracks])
    assert not np.array_equal(a, b)  # bf16 really ran
    assert _cos(a, b).min() >= 0.999, _cos(a, b)


def test_readme_api_example_runs(tmp_path, monkeypatch):
    code = readme_block("python", "load_encoder")
    sf.write(tmp_path / "song.wav", np.stack([_song(9.0, 44100)] * 2, axis=1), 44100)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").symlink_to(REPO / "models")
    scope: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GeneratedDataWarning)
        exec(code, scope)  # the README's own lines, unchanged
    assert scope["emb"].shape == (128,) and np.isfinite(scope["emb"]).all()
    assert scope["rows"].shape == (2, 128) and scope["starts"].tolist() == [0.0, 4.096]
    np.testing.assert_allclose(scope["same"], scope["emb"], rtol=1e-3, atol=1e-3)


# ---------------------------------------------------------------------------------- HEAR


def test_hear_api_shapes_dtypes_and_short_sounds(random_model):
    from musicrep import hear

    model = hear.load_model(str(random_model), device="cpu")
    assert isinstance(model, torch.nn.Module) and model.sample_rate == 16000
    assert model.scene_embedding_size == model.timestamp_embedding_size == 128
    audio = torch.from_numpy(np.stack([_song(9.0, 16000, seed=s) for s in range(3)]))
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    assert emb.shape == (3, 181, 128) and emb.dtype == torch.float32  # every 50 ms, 0 to 9 s
    assert ts.shape == (3, 181) and ts.dtype == torch.float32
    assert torch.allclose(ts[0], 50.0 * torch.arange(181, dtype=torch.float32))
    scene = hear.get_scene_embeddings(audio, model)
    enc = load_encoder(str(random_model), device="cpu")
    expected = torch.from_numpy(np.stack([enc.embed(a.numpy(), 16000) for a in audio]))
    assert scene.shape == (3, 128) and torch.allclose(scene, expected, atol=1e-5)
    short = torch.from_numpy(np.stack([_song(0.5, 16000, seed=s) for s in range(2)]))
    emb, ts = hear.get_timestamp_embeddings(short, model)
    assert emb.shape == (2, 11, 128) and torch.isfinite(emb).all()
    assert torch.allclose(ts, 50.0 * torch.arange(11, dtype=torch.float32).expand(2, 11))
    assert hear.get_scene_embeddings(short, model).shape == (2, 128)


def test_readme_hear_example_runs(monkeypatch, tmp_path):
    code = readme_block("python", "musicrep import hear")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").symlink_to(REPO / "models")
    scope: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GeneratedDataWarning)
        exec(code, scope)
    assert tuple(scope["scene"].shape) == (2, 128)
    assert tuple(scope["emb"].shape) == (2, 41, 128) and tuple(scope["ts"].shape) == (2, 41)
