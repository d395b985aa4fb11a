"""Audio encoder architecture, the original state-dict names, loading, other encoders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from musicrep.model.audio_cnn import AudioEncoder, count_parameters, crop_to_input

from musicrep.model.metadata import CFEncoder, GenreEncoder
from musicrep.training.checkpoint import load_audio_encoder

from tests.helpers import REPO

# Keys, shapes and dtypes of the authors' published audio_encoder.pt state dicts
# (a copy of shared/reference/original_audio_encoder_state_dict.tsv).
MANIFEST = REPO / "tests" / "data" / "original_audio_encoder_state_dict.tsv"
# The same for the original's self-attention genre ("tag") encoder with its 249-code
# vocabulary (its trainers save it as tag_encoder_att_epoch_N.pt), read off its model code.
GENRE_MANIFEST = MANIFEST.with_name("original_genre_encoder_state_dict.tsv")


def read_manifest(path: Path = MANIFEST) -> list[tuple[str, tuple[int, ...], str]]:
    rows = []
    for line in path.read_text().strip().splitlines()[1:]:
        key, shape, dtype = line.split("\t")
        dims = () if shape == "scalar" else tuple(int(s) for s in shape.split("x"))
        rows.append((key, dims, dtype))
    return rows


def manifest_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with exactly the original's keys, shapes and dtypes, random values."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, dims, dtype in read_manifest():
        if dtype == "int64":
            sd[key] = torch.tensor(7, dtype=torch.int64).reshape(dims)
        elif key.endswith("running_var"):
            sd[key] = torch.rand(dims, generator=g) + 0.5
        else:
            sd[key] = torch.randn(dims, generator=g)
    return sd


def test_paper_model_size_and_shapes():
    m = AudioEncoder().eval()
    assert count_parameters(m) == 3_989_762
    with torch.no_grad():
        z, z_d = m(torch.randn(2, 1, 48, 256))  # (B, 1, 48, 256)
    assert z.shape == (2, 1024) and z_d.shape == (2, 128)


def test_state_dict_matches_original_manifest():
    rows = read_manifest()
    sd = AudioEncoder().state_dict()
    assert list(sd) == [k for k, _, _ in rows]
    for key, dims, dtype in rows:
        assert tuple(sd[key].shape) == dims, key
        assert str(sd[key].dtype) == f"torch.{dtype}", key


def test_original_plain_state_dict_loads_strict(tmp_path):
    sd = manifest_state_dict()
    path = tmp_path / "audio_encoder.pt"
    torch.save(sd, path)
    with pytest.raises(ValueError, match="audio_encoder.pt.*input.layout reference"):
        load_audio_encoder(path)  # no layout anywhere: refused, not guessed
    m = load_audio_encoder(path, input_layout="reference")  # the authors' reshape
    assert m.input_layout == "reference" and m.width == 1.0 and not m.training
    for k, v in m.state_dict().items():
        assert torch.equal(v, sd[k])
    assert load_audio_encoder(path, input_layout="transpose").input_layout == "transpose"
    # a fresh model also accepts it with strict=True
    AudioEncoder().load_state_dict(sd, strict=True)


def test_width_is_inferred_and_sidecar_layout_used(tmp_path):
    m = AudioEncoder(width=0.125, input_layout="transpose")
    assert count_parameters(m) < 400_000
    torch.save(m.state_dict(), tmp_path / "audio_encoder.pt")
    (tmp_path / "config.json").write_text('{"input_layout": "transpose", "width": 0.125}')
    loaded = load_audio_encoder(tmp_path / "audio_encoder.pt")
    assert loaded.width == 0.125 and loaded.input_layout == "transpose"


def test_load_rejects_other_files_by_name(tmp_path):
    bad = tmp_path / "not_audio.pt"
    torch.save({"weight": torch.zeros(3)}, bad)
    with pytest.raises(ValueError, match="not_audio.pt.*not an audio-encoder"):
        load_audio_encoder(bad)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"hello")
    with pytest.raises(ValueError, match="junk.pt"):
        load_audio_encoder(junk)


def test_input_layouts():
    crop = torch.arange(2 * 256 * 48, dtype=torch.float32).reshape(2, 256, 48)  # (B, frames, bands)
    t = crop_to_input(crop, "transpose")
    assert t.shape == (2, 1, 48, 256)
    assert torch.equal(t[1, 0, 5, 100], crop[1, 100, 5])  # band 5 at frame 100
    r = crop_to_input(crop, "reference")
    assert r.shape == (2, 1, 48, 256)
    assert torch.equal(r.flatten(1), crop.flatten(1))  # same memory order: the original's reshape
    assert not torch.equal(r, t)
    with pytest.raises(ValueError):
        crop_to_input(crop, "bogus")


def test_cf_encoder_shape():
    assert CFEncoder(301)(torch.randn(4, 301)).shape == (4, 128)


@pytest.mark.parametrize("aggregation", ["self", "mean"])
def test_genre_encoder_ignores_padding(aggregation):
    emb = np.random.default_rng(0).normal(size=(13, 128)).astype(np.float32)
    emb[0] = 0
    enc = GenreEncoder(emb, aggregation=aggregation, num_heads=4).eval()
    assert torch.allclose(enc.embeddings.weight[1:], torch.from_numpy(emb[1:]))
    assert enc.embeddings.weight.requires_grad  # fine-tuned
    tokens = torch.tensor([[3, 5, 0, 0, 0, 0, 0, 0, 0, 0], [0] * 10])
    with torch.no_grad():
        y = enc(tokens)
        y_short = enc(tokens[:1, :2])  # same track, no padding at all
    assert y.shape == (2, 128)
    assert torch.isfinite(y).all()  # a track without genres stays finite
    assert torch.allclose(y[0], y_short[0], atol=1e-5)
    if aggregation == "self":
        assert enc.w_qs.out_features == 4 * 128  # d_k = 128 per head


def test_genre_encoder_has_the_original_layout():
    rows = read_manifest(GENRE_MANIFEST)
    enc = GenreEncoder(np.zeros((250, 128), dtype=np.float32), aggregation="self", num_heads=4)
    sd = enc.state_dict()
    assert [(k, tuple(v.shape), str(v.dtype)) for k, v in sd.items()] == [
        (k, dims, f"torch.{dtype}") for k, dims, dtype in rows
    ]  # no bias in Q/K/V or the output projection
    g = torch.Generator().manual_seed(0)
    saved = {k: torch.randn(dims, generator=g) for k, dims, _ in rows}
    enc.load_state_dict(saved, strict=True)  # an original tag_encoder_att_*.pt loads
    assert enc.layer_norm.eps == 1e-6
    assert [k for k in GenreEncoder(np.zeros((250, 128)), "mean").state_dict()] == [
        "embeddings.weight", "fc.weight", "layer_norm.weight", "layer_norm.bias"
    ]


def test_attention_dropout_is_active_in_training_only():
    emb = np.random.default_rng(1).normal(size=(40, 128)).astype(np.float32)
    enc = GenreEncoder(emb, aggregation="self", num_heads=4)
    g = torch.Generator().manual_seed(2)
    tokens = torch.randint(1, 40, (64, 10), generator=g)
    tokens[:, 7:] = 0  # 7 real tokens per track
    mask = tokens > 0
    x = enc.embeddings(tokens).detach()
    with torch.no_grad():
        enc.train()
        _, att = enc.attend(x, mask)  # (B, H, T, T)
        real = att[:, :, :7, :7]
        dropped = (real == 0).float().mean().item()
        assert 0.08 < dropped < 0.12  # p = 0.1, on the weights themselves
        assert att[..., 7:].abs().max() < 1e-30  # padding keys get no weight
        # the kept weights are scaled by 1 / (1 - p): rows sum to 1 only on average
        assert abs(real.sum(-1).mean().item() - 1.0) < 0.02
        enc.dropout.p = 0.0  # the output dropout off: what remains random is the attention's
        assert not torch.equal(enc(tokens), enc(tokens))
        enc.eval()
        _, att = enc.attend(x, mask)
        assert (att[:, :, :7, :7] > 0).all()
        assert torch.allclose(att.sum(-1), torch.ones(64, 4, 10), atol=1e-5)
        assert torch.equal(enc(tokens), enc(tokens))


def test_checkpoint_with_the_old_genre_layout_fails_in_one_line(tmp_path):
    from musicrep.training.checkpoint import restore
    from musicrep.errors import ConfigError
    from musicrep.model.multiview import MultiModalModel

    emb = np.zeros((13, 128), dtype=np.float32)
    model = MultiModalModel({"genre": GenreEncoder(emb)}, {}, {})
    # the genre part as the earlier version of this project saved it
    old = {"embedding.weight": torch.zeros(13, 128), "norm.weight": torch.ones(128),
           "norm.bias": torch.zeros(128)}
    for n in ("q", "k", "v"):
        old |= {f"attention.{n}.weight": torch.zeros(512, 128), f"attention.{n}.bias": torch.zeros(512)}
    old |= {"attention.proj.weight": torch.zeros(128, 512), "attention.proj.bias": torch.zeros(128)}
    with pytest.raises(ValueError, match="part 'genre' was saved by an earlier musicrep") as e:
        model.load_part_state_dicts({"genre": old})
    assert "\n" not in str(e.value)
    path = tmp_path / "run" / "last.pt"
    with pytest.raises(ConfigError) as e:
        restore({"models": {"genre": old}}, model, None, None, 0, 1, path)
    assert "\n" not in str(e.value) and "train anew" in str(e.value) and str(path) in str(e.value)
    # other mismatches are named too, in one line
    bad = dict(model.part_state_dicts()["genre"])
    bad["fc.weight"] = torch.zeros(128, 256)
    with pytest.raises(ValueError, match=r"part 'genre': .*fc.weight") as e:
        model.load_part_state_dicts({"genre": bad})
    assert "\n" not in str(e.value)
