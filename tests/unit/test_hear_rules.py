"""The HEAR API's rules: model options as the HEAR kit passes them, the authors' plain
state dicts, timestamps every hop_ms over the whole sound, devices, non-finite values.

All on a random-init width-0.125 encoder and a few seconds of audio, so each test
takes about a second on a CPU.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from musicrep import hear, load_encoder
from musicrep.model.audio_cnn import AudioEncoder

SR = 16000


@pytest.fixture(scope="module")
def plain_state_dict(tmp_path_factory):
    """A random encoder saved as the authors publish theirs: a bare state dict, no config."""
    d = tmp_path_factory.mktemp("plain")
    torch.manual_seed(3)
    torch.save(AudioEncoder(width=0.125).state_dict(), d / "audio_encoder.pt")
    return d / "audio_encoder.pt"


@pytest.fixture(scope="module")
def model_dir(plain_state_dict, tmp_path_factory):
    """The same weights in a model folder whose config.json gives the layout."""
    d = tmp_path_factory.mktemp("model")
    (d / "audio_encoder.pt").write_bytes(plain_state_dict.read_bytes())
    (d / "config.json").write_text(json.dumps({"input_layout": "transpose"}))
    return d


def _load(path, **options) -> hear.HearModel:
    return hear.load_model(str(path), device="cpu", precision="fp32", **options)


def _tone(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (0.05 * np.sin(2 * np.pi * 330 * t) + 0.01 * rng.standard_normal(len(t))).astype(
        np.float32)


# ------------------------------------------------------------------------- model options


def test_heareval_model_options_reach_the_model(plain_state_dict):
    # heareval's runner: load_model(path, **json.loads(--model-options)).
    options = json.loads('{"input_layout": "reference", "hop_ms": 100, "layer": "z", '
                         '"precision": "fp32", "batch_size": 8, "device": "cpu"}')
    model = hear.load_model(str(plain_state_dict), **options)
    assert model.hop_ms == 100.0
    assert model.encoder.layer == "z" and model.encoder.batch_size == 8
    assert model.cnn.input_layout == "reference" and model.encoder.bf16 is False
    assert model.scene_embedding_size == model.timestamp_embedding_size == model.cnn.z_dim
    emb, ts = hear.get_timestamp_embeddings(torch.from_numpy(_tone(1.0))[None], model)
    assert emb.shape == (1, 11, model.cnn.z_dim) and ts.shape == (1, 11)


def test_unknown_model_option_is_refused_naming_the_accepted_ones(model_dir):
    with pytest.raises(ValueError) as e:
        hear.load_model(str(model_dir), hop_size=50)
    msg = str(e.value)
    assert "'hop_size'" in msg and "\n" not in msg
    for name in hear.MODEL_OPTIONS:
        assert name in msg


@pytest.mark.parametrize("hop", [0, 10, 2049, 4096, "50", True, float("nan")])
def test_bad_hop_ms_is_refused(model_dir, hop):
    with pytest.raises(ValueError, match="hop_ms"):
        _load(model_dir, hop_ms=hop)


def test_hop_ms_set_on_the_model_is_checked_too(model_dir):
    model = _load(model_dir)
    model.hop_ms = 500
    _, ts = hear.get_timestamp_embeddings(torch.from_numpy(_tone(1.0))[None], model)
    assert ts.tolist() == [[0.0, 500.0, 1000.0]]
    with pytest.raises(ValueError, match="hop_ms"):
        model.hop_ms = 0


def test_bad_precision_is_refused(model_dir):
    with pytest.raises(ValueError, match="precision"):
        hear.load_model(str(model_dir), precision="fp16")


def test_plain_state_dict_without_layout_says_the_model_option(plain_state_dict):
    with pytest.raises(ValueError) as e:
        hear.load_model(str(plain_state_dict))
    msg = str(e.value)
    assert """--model-options '{"input_layout": "reference"}'""" in msg
    assert "--input-layout" not in msg and "\n" not in msg and str(plain_state_dict) in msg


def test_plain_state_dict_with_the_layout_option_embeds(plain_state_dict):
    audio = torch.from_numpy(np.stack([_tone(2.0, s) for s in range(2)]))
    ref = _load(plain_state_dict, input_layout="reference", hop_ms=500)
    tra = _load(plain_state_dict, input_layout="transpose", hop_ms=500)
    e_ref, _ = hear.get_timestamp_embeddings(audio, ref)
    e_tra, _ = hear.get_timestamp_embeddings(audio, tra)
    assert e_ref.shape == (2, 5, 128) and torch.isfinite(e_ref).all()
    assert not torch.allclose(e_ref, e_tra)  # the option really changes how it is fed


# ---------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize("seconds,hop,n", [(3.0, 50, 61), (3.0, 250, 13), (3.0, 160, 19),
                                            (2.0, 2048, 1), (0.5, 50, 11)])
def test_hop_ms_sets_the_timestamps(model_dir, seconds, hop, n):
    # n = floor(duration / hop) + 1 stamps at k * hop ms, every sound alike.
    model = _load(model_dir, hop_ms=hop)
    audio = torch.from_numpy(np.stack([_tone(seconds, s) for s in range(2)]))
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    assert emb.shape == (2, n, 128) and emb.dtype == torch.float32
    assert ts.shape == (2, n) and ts.dtype == torch.float32
    assert torch.equal(ts[0], ts[1])
    np.testing.assert_allclose(ts[0].numpy(), hop * np.arange(n))
    assert ts[0, -1] <= 1000 * seconds < ts[0, -1] + hop
    assert torch.isfinite(emb).all()


def test_default_hop_is_hears_50_ms(model_dir):
    model = _load(model_dir)
    _, ts = hear.get_timestamp_embeddings(torch.from_numpy(_tone(2.0))[None], model)
    assert model.hop_ms == hear.DEFAULT_HOP_MS == 50.0 and ts.shape == (1, 41)
    assert torch.allclose(torch.diff(ts), torch.full((1, 40), 50.0))


def test_first_and_last_timestamps_cover_the_start_and_the_end(model_dir):
    """A loud burst in the last (first) 0.3 s changes the last (first) timestamp's
    embedding and leaves the windows that do not reach it as they were; the old
    non-overlapping chunks never saw the end of a 6 s sound."""
    model = _load(model_dir, hop_ms=500)
    base = _tone(6.0)
    end, start = base.copy(), base.copy()
    burst = 0.8 * np.sign(np.sin(2 * np.pi * 1000 * np.arange(int(0.3 * SR)) / SR))
    end[-len(burst):] += burst
    start[: len(burst)] += burst
    emb, ts = hear.get_timestamp_embeddings(torch.from_numpy(np.stack([base, end, start])), model)
    assert ts[0, 0] == 0.0 and ts[0, -1] == 6000.0  # 13 stamps, 0 .. 6000 ms
    diff = (emb - emb[0]).norm(dim=-1) / emb[0].norm(dim=-1)
    # A window spans t +- 2048 ms: the burst at 5.7-6.0 s reaches stamps t >= 3652 ms,
    # the one at 0-0.3 s stamps t <= 2348 ms.
    reach_end, reach_start = ts[0] >= 3652 + 16, ts[0] <= 2348 - 16
    assert diff[1, -1] > 0.01 and diff[2, 0] > 0.01
    assert diff[1][~(ts[0] >= 3652 - 16)].max() < 1e-4
    assert diff[2][~(ts[0] <= 2348 + 16)].max() < 1e-4
    assert (diff[1][reach_end] > 1e-3).all() and (diff[2][reach_start] > 1e-3).all()


def test_scene_embedding_is_the_papers_track_embedding(model_dir):
    # The mean over non-overlapping 4.096 s chunks, whatever hop_ms, as load_encoder.embed.
    enc = load_encoder(model_dir, device="cpu", precision="fp32")
    sounds = np.stack([_tone(9.0, s) for s in range(2)])
    for hop in (50, 1000):
        scene = hear.get_scene_embeddings(torch.from_numpy(sounds), _load(model_dir, hop_ms=hop))
        assert scene.shape == (2, 128) and scene.dtype == torch.float32
        for x, row in zip(sounds, scene.numpy()):
            np.testing.assert_allclose(row, enc.embed(x, SR), rtol=1e-4, atol=1e-5)


def test_hear_validator_checks(model_dir):
    """What hear-validator asks of a torch model, on fewer sounds: white noise in
    [-1, 1], regular stamps at most 50 ms apart, sizes as advertised."""
    model = _load(model_dir)
    assert isinstance(model, torch.nn.Module) and model.sample_rate == 16000
    assert isinstance(model.scene_embedding_size, int)
    assert isinstance(model.timestamp_embedding_size, int)
    assert model.to("cpu") is model
    emb, ts = hear.get_timestamp_embeddings(torch.rand(3, 2 * SR) * 2 - 1, model)
    assert emb.dtype == torch.float32 and emb.shape[:2] == ts.shape and emb.shape[0] == 3
    assert emb.shape[2] == model.timestamp_embedding_size
    d = torch.diff(ts)
    assert d.mean() <= 50.0 and torch.all((d - d.mean()).abs() < 1e-3)
    scene = hear.get_scene_embeddings(torch.rand(2, int(3.74 * SR)) * 2 - 1, model)
    assert scene.dtype == torch.float32 and scene.shape == (2, model.scene_embedding_size)


def test_no_sounds_give_empty_outputs(model_dir):
    model = _load(model_dir)
    emb, ts = hear.get_timestamp_embeddings(torch.zeros(0, SR), model)
    assert emb.shape == (0, 21, 128) and ts.shape == (0, 21)
    assert hear.get_scene_embeddings(torch.zeros(0, SR), model).shape == (0, 128)


# ------------------------------------------------------------------------------- devices


def test_to_keeps_the_encoders_device_in_step(model_dir):
    model = _load(model_dir, hop_ms=1000)
    audio = torch.from_numpy(_tone(1.0))[None]
    before, _ = hear.get_timestamp_embeddings(audio, model)
    model.encoder.device = torch.device("meta")  # stale, as after a move it did not see
    assert model.cpu() is model
    assert model.encoder.device == model.device == torch.device("cpu")
    assert model.to(torch.device("cpu")) is model and model.to("cpu", torch.float32) is model
    assert model.encoder.device == next(model.cnn.parameters()).device
    after, _ = hear.get_timestamp_embeddings(audio, model)
    assert torch.equal(before, after)


@pytest.mark.parametrize("target,match", [
    (("meta",), "meta"), (("bogus",), "not a device"), ((torch.float16,), "float32"),
    ((torch.device("meta"),), "meta"),
])
def test_unusable_device_or_dtype_is_refused_before_moving(model_dir, target, match):
    model = _load(model_dir, hop_ms=1000)
    with pytest.raises(ValueError, match=match):
        model.to(*target)
    w = next(model.cnn.parameters())
    assert w.device.type == "cpu" and w.dtype == torch.float32
    emb, _ = hear.get_timestamp_embeddings(torch.from_numpy(_tone(1.0))[None], model)
    assert torch.isfinite(emb).all()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_refused(model_dir):
    model = _load(model_dir)
    for move in (lambda: model.cuda(), lambda: model.to("cuda:0")):
        with pytest.raises(ValueError, match="CUDA is not available"):
            move()
    assert model.encoder.device.type == "cpu"


def test_weights_moved_behind_its_back_are_refused(model_dir):
    model = _load(model_dir)
    model.cnn.half()  # not through HearModel.to
    with pytest.raises(ValueError, match="float16"):
        hear.get_scene_embeddings(torch.from_numpy(_tone(1.0))[None], model)


# --------------------------------------------------------------------- audio and values


@pytest.mark.parametrize("audio,match", [
    (torch.zeros(2, SR, dtype=torch.int16), "float"),
    (torch.full((1, SR), 32767.0), "peaks"),
    (torch.tensor([[0.0, float("nan")] * SR]), "NaN"),
    (torch.zeros(1, 100), "too short"),
    (torch.zeros(SR), "shape"),
])
def test_bad_audio_is_refused(model_dir, audio, match):
    model = _load(model_dir)
    for call in (hear.get_timestamp_embeddings, hear.get_scene_embeddings):
        with pytest.raises(ValueError, match=match):
            call(audio, model)


def test_non_finite_embeddings_raise(model_dir):
    model = _load(model_dir, hop_ms=500)
    with torch.no_grad():
        next(model.cnn.parameters()).fill_(float("nan"))
    audio = torch.from_numpy(_tone(1.0))[None]
    for call in (hear.get_timestamp_embeddings, hear.get_scene_embeddings):
        with pytest.raises(ValueError, match="(?i)nan|finite"):
            call(audio, model)
