"""Fault tests of encode.py and the embedding API (``musicrep.load_encoder``): inputs are
never destroyed, results are finite or an error, one bad file never sinks a batch,
every failure is one line, and in-memory audio of any common dtype means what it says.

Black-box through the command line for encode.py: its entry point ``main(argv)`` with
stderr captured (``cli``), and a real process (``encode``) where the process itself
matters (a file-size limit, warnings printed on the real stderr); through the API for
Encoder.embed / embed_file. Inputs are tiny generated files; the model is a random
width-0.125 encoder.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import struct
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import soundfile as sf
import torch

from musicrep import load_encoder
from musicrep.audio import AudioError, file_frames
from musicrep.model.audio_cnn import AudioEncoder
from tests.helpers import REPO
from tests.helpers.synth import write_synthetic_dataset

ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
FAST = ("--quiet", "--precision", "fp32", "--device", "cpu")


def encode(*args: object, preexec_fn=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "encode.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=ENV,
                          check=False, preexec_fn=preexec_fn)


def cli(capsys, *args: object) -> tuple[int, str]:
    """encode.py's main(argv) in this process: (exit status, stderr). An exception that
    escapes it (a traceback for the user) fails the test."""
    from musicrep.cli.encode import main

    capsys.readouterr()
    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:  # argparse errors
        rc = e.code
    return rc, capsys.readouterr().err


def one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def tone(seconds: float = 5.0, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)


@pytest.fixture(scope="module")
def enc(model_dir):
    return load_encoder(model_dir, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> dict[str, Path]:
    """A good song and the files that used to sink a batch or give NaN embeddings."""
    d = tmp_path_factory.mktemp("audio")
    files = {"song": d / "song.wav", "huge": d / "huge.wav", "huge22": d / "huge22.wav",
             "sr0": d / "sr0.wav"}
    sf.write(files["song"], tone(), 16000)
    # Finite float samples near float32's limit: the STFT overflows (NaN mel).
    sf.write(files["huge"], np.full(16000 * 5, 3e38, np.float32), 16000, subtype="FLOAT")
    # At 22.05 kHz the resampler overflows first.
    sf.write(files["huge22"], np.full(22050 * 5, 1e38, np.float32), 22050, subtype="FLOAT")
    # A WAV header whose sample rate field is 0 (bytes 24-27 of the canonical header).
    data = bytearray(files["song"].read_bytes())
    fmt = data.find(b"fmt ")
    struct.pack_into("<I", data, fmt + 12, 0)
    files["sr0"].write_bytes(bytes(data))
    return files


class TestNeverDestroyAnInput:
    @pytest.mark.parametrize("which", ["file", "in_dir", "report", "checkpoint", "config"])
    def test_out_that_would_replace_an_input_is_refused(self, which, model_dir, tmp_path,
                                                        capsys):
        music = tmp_path / "music"
        music.mkdir()
        song = music / "song.wav"
        sf.write(song, tone(), 16000)
        inputs: list[Path] = [song]
        out = {"file": song, "in_dir": song, "checkpoint": model_dir / "audio_encoder.pt",
               "config": model_dir / "config.json", "report": tmp_path / "emb.npz"}[which]
        if which == "in_dir":
            inputs = [music]
        if which == "report":
            report = tmp_path / "emb.npz.skipped.json"
            report.write_text('{"mine": 1}')
            inputs.append(report)
        before = {p: p.read_bytes() for p in [song, *model_dir.iterdir(), *inputs] if p.is_file()}
        rc, err = cli(capsys, "--checkpoint", model_dir, *inputs, "--out", out, *FAST)
        assert rc == 2, err
        line = one_line(err)
        assert line.startswith("encode.py: error: --out") and "inputs" in line
        assert "encoding" not in err  # refused before any work
        assert {p: p.read_bytes() for p in before} == before

    def test_out_that_is_the_hdf5_split_is_refused(self, model_dir, tmp_path):
        """In a real process: the exit status the shell sees."""
        ds = write_synthetic_dataset(tmp_path / "ds", n_train=1, n_val=1, n_test=2, frames=300)
        split = ds / "test.h5"
        before = split.read_bytes()
        r = encode("--checkpoint", model_dir, "--hdf5", split, "--out", split, *FAST)
        assert r.returncode == 2 and "inputs" in one_line(r.stderr)
        assert split.read_bytes() == before


class TestFiniteResultsOrAnError:
    def test_huge_samples_are_skipped_not_nan(self, model_dir, audio, tmp_path):
        """Also: a damaged header and a resampler overflow (rule 3) in the same batch, in
        a real process, whose stderr has one line per skip, no warnings, no traceback."""
        out = tmp_path / "emb.npz"
        r = encode("--checkpoint", model_dir, audio["sr0"], audio["song"], audio["huge"],
                   audio["huge22"], "--out", out, *FAST)
        assert r.returncode == 1, r.stderr
        assert "Traceback" not in r.stderr and "Warning" not in r.stderr, r.stderr
        assert f"{audio['huge']}: skipped: audio samples too large" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 5  # encoding, 3 skipped, wrote
        with np.load(out) as z:
            assert [Path(p).name for p in z["paths"]] == ["song.wav"]
            assert np.isfinite(z["embeddings"]).all()
        reasons = {Path(s["path"]).name: s["reason"] for s in
                   json.loads(Path(f"{out}.skipped.json").read_text())["skipped"]}
        assert reasons.keys() == {"sr0.wav", "huge.wav", "huge22.wav"}
        assert "mel spectrogram overflows" in reasons["huge.wav"]
        assert "sample rate 0 Hz" in reasons["sr0.wav"]
        assert "resampling from 22050 Hz overflows" in reasons["huge22.wav"]

    def test_api_raises_instead_of_returning_nan(self, enc, audio):
        with pytest.raises(ValueError, match="too large"):
            enc.embed(np.full(16000 * 5, 3e38, np.float32), 16000)
        with pytest.raises(ValueError, match="too large"):
            enc.embed(np.full(22050 * 5, 1e38, np.float32), 22050)
        with pytest.raises(ValueError, match="too large for float32"):
            enc.embed(np.full(16000 * 5, 1e300), 16000)
        for name in ("huge", "huge22"):
            with pytest.raises(ValueError, match=f"{audio[name]}: audio samples too large"):
                enc.embed_file(audio[name])
        assert np.isfinite(enc.embed_file(audio["song"])).all()

    def test_nan_weights_are_refused_at_load(self, tmp_path, audio, capsys):
        d = tmp_path / "diverged"
        d.mkdir()
        sd = AudioEncoder(width=0.125).state_dict()
        sd["fc_audio.4.weight"][0, 0] = float("nan")
        torch.save(sd, d / "audio_encoder.pt")
        (d / "config.json").write_text('{"input_layout": "transpose"}')
        with pytest.raises(ValueError, match="weights are not finite"):
            load_encoder(d, device="cpu")
        rc, err = cli(capsys, "--checkpoint", d, audio["song"], "--out", tmp_path / "e.npz",
                      *FAST)
        assert rc == 2 and "weights are not finite" in one_line(err)
        assert not (tmp_path / "e.npz").exists()

    def test_non_finite_embedding_is_an_error_in_the_api(self, model_dir, audio):
        """A model that overflows on some input (weights finite): embed, embed_chunks and
        embed_file raise; embed_files lists the file as skipped. The last layer's output
        is made to overflow by scaling a finite weight to float32's limit."""
        e = load_encoder(model_dir, device="cpu", precision="fp32", layer="z")
        with torch.no_grad():
            for m in e.model.modules():
                if isinstance(m, torch.nn.Conv2d):
                    m.weight.mul_(3e38)
        y = tone()
        with pytest.raises(ValueError, match="embedding is not finite"):
            e.embed(y, 16000)
        with pytest.raises(ValueError, match="embedding is not finite"):
            e.embed_chunks(y, 16000)
        with pytest.raises(ValueError, match=f"{audio['song']}: embedding is not finite"):
            e.embed_file(audio["song"])
        res = e.embed_files([audio["song"]])
        assert res.paths == [] and res.embeddings.shape[0] == 0
        assert res.skipped[0]["reason"].startswith("embedding is not finite")

    def test_hdf5_nan_tracks_are_named_and_left_out(self, model_dir, tmp_path, capsys):
        ds = write_synthetic_dataset(tmp_path / "ds", n_train=1, n_val=1, n_test=4, frames=300)
        split = ds / "test.h5"
        with h5py.File(split, "r+") as f:
            ids = f["dataset/id"][...].reshape(-1)
            f["dataset/data"][1, 5, 3] = np.nan
        out = tmp_path / "test.npz"
        rc, err = cli(capsys, "--checkpoint", model_dir, "--hdf5", split, "--out", out, *FAST)
        assert rc == 1, err
        assert "skipped 1 tracks: embedding is not finite" in err and f"(ids {ids[1]})" in err
        with np.load(out) as z:
            assert z["ids"].tolist() == [ids[0], ids[2], ids[3]]
            assert np.isfinite(z["embeddings"]).all() and len(z["embeddings"]) == 3
        report = json.loads(Path(f"{out}.skipped.json").read_text())
        assert report["skipped"] == [{"id": int(ids[1]),
                                      "reason": "embedding is not finite (NaN or infinite values)"}]
        # --chunks: rows and file_index of the kept tracks only.
        rc, err = cli(capsys, "--checkpoint", model_dir, "--hdf5", split, "--out", out,
                      "--chunks", *FAST)
        assert rc == 1, err
        with np.load(out) as z:
            assert z["ids"].tolist() == [ids[0], ids[2], ids[3]]
            assert z["file_index"].tolist() == [0, 1, 2]
            assert np.isfinite(z["embeddings"]).all()

    def test_hdf5_all_nan_writes_nothing(self, model_dir, tmp_path, capsys):
        ds = write_synthetic_dataset(tmp_path / "ds", n_train=1, n_val=1, n_test=2, frames=300)
        with h5py.File(ds / "test.h5", "r+") as f:
            f["dataset/data"][:, 0, 0] = np.nan
        out = tmp_path / "test.npz"
        rc, err = cli(capsys, "--checkpoint", model_dir, "--hdf5", ds / "test.h5", "--out",
                      out, *FAST)
        assert rc == 1 and "none of its tracks could be encoded" in err
        assert not out.exists()

    def test_embed_hdf5_raises_by_default(self, enc, tmp_path):
        from musicrep.inference.embed import embed_hdf5

        ds = write_synthetic_dataset(tmp_path / "ds", n_train=1, n_val=1, n_test=2, frames=300)
        with h5py.File(ds / "test.h5", "r+") as f:
            f["dataset/data"][0, 0, 0] = np.inf
            first = int(f["dataset/id"][0].reshape(-1)[0])
        with pytest.raises(ValueError, match=rf"not finite.*1 of 2 tracks \(ids {first};"):
            embed_hdf5(enc.model, ds / "test.h5", progress=False, precision="fp32")


class TestOneBadFileNeverSinksTheBatch:
    """The batch itself: TestFiniteResultsOrAnError.test_huge_samples_are_skipped_not_nan."""

    def test_audio_front_end_raises_audio_error(self, audio):
        """What the importer also relies on: these are AudioErrors naming the file."""
        for name, why in (("sr0", "sample rate 0 Hz"), ("huge22", "resampling"),
                          ("huge", "mel spectrogram overflows")):
            with pytest.raises(AudioError, match=f"^{audio[name]}: .*{why}"):
                file_frames(audio[name])


class TestOneLineNeverATraceback:
    @pytest.mark.parametrize("device,expect", [
        ("bogus", "device 'bogus': expected cpu, cuda, cuda:N or auto"),
        ("cuda:99", "device 'cuda:99'"),
        pytest.param("cuda", "CUDA is not available", marks=pytest.mark.skipif(
            torch.cuda.is_available(), reason="a GPU is here: cuda is a valid device")),
    ])
    def test_bad_device(self, device, expect, model_dir, audio, tmp_path, capsys):
        rc, err = cli(capsys, "--checkpoint", model_dir, audio["song"], "--out",
                      tmp_path / "e.npz", "--quiet", "--device", device)
        assert rc == 2 and expect in one_line(err)

    def test_missing_checkpoint(self, audio, tmp_path, capsys):
        rc, err = cli(capsys, "--checkpoint", tmp_path / "nope.pt", audio["song"], "--out",
                      tmp_path / "e.npz", *FAST)
        assert rc == 2
        assert one_line(err) == (f"encode.py: error: {tmp_path / 'nope.pt'}: no such "
                                      "checkpoint file or run directory")

    @pytest.mark.parametrize("content", [b"not a torch file at all" * 10, b"",
                                         b"PK\x03\x04" + bytes(40)])
    def test_garbage_checkpoint(self, content, audio, tmp_path, capsys):
        ckpt = tmp_path / "audio_encoder.pt"
        ckpt.write_bytes(content)
        rc, err = cli(capsys, "--checkpoint", ckpt, "--input-layout", "transpose", audio["song"],
                      "--out", tmp_path / "e.npz", *FAST)
        assert rc == 2
        line = one_line(err)
        assert line.startswith(f"encode.py: error: {ckpt}: not a PyTorch checkpoint (")
        assert "weights_only" not in line

    def test_mismatched_state_dict_is_one_line(self, audio, tmp_path, capsys):
        sd = AudioEncoder(width=0.125).state_dict()
        sd["fc_audio.4.weight"] = torch.ones(3, 3)
        ckpt = tmp_path / "audio_encoder.pt"
        torch.save(sd, ckpt)
        rc, err = cli(capsys, "--checkpoint", ckpt, "--input-layout", "transpose", audio["song"],
                      "--out", tmp_path / "e.npz", *FAST)
        assert rc == 2
        line = one_line(err)
        assert "does not match the architecture" in line and "fc_audio.4.weight" in line
        assert "not a PyTorch checkpoint" not in line

    def test_pickled_module_is_named_not_loaded(self, audio, tmp_path, capsys):
        ckpt = tmp_path / "model.pt"
        torch.save(torch.nn.Linear(2, 2), ckpt)
        rc, err = cli(capsys, "--checkpoint", ckpt, "--input-layout", "transpose", audio["song"],
                      "--out", tmp_path / "e.npz", *FAST)
        assert rc == 2
        line = one_line(err)
        assert "torch.nn.modules.linear.Linear" in line and "state_dict()" in line

    @pytest.mark.parametrize("config,expect", [
        ("[1, 2]", "expected a JSON object"),
        ('{"input_layout": 5}', "input_layout: expected one of"),
        ('{"input_layout": "transpose", "provenance": "x"}', "provenance: expected a JSON"),
    ])
    def test_config_of_the_wrong_shape(self, config, expect, model_dir, audio, tmp_path, capsys):
        d = tmp_path / "model"
        d.mkdir()
        (d / "audio_encoder.pt").write_bytes((model_dir / "audio_encoder.pt").read_bytes())
        (d / "config.json").write_text(config)
        rc, err = cli(capsys, "--checkpoint", d, audio["song"], "--out", tmp_path / "e.npz",
                      *FAST)
        assert rc == 2
        line = one_line(err)
        assert str(d / "config.json") in line and expect in line

    def test_disk_full_names_the_file_and_keeps_the_previous_one(self, model_dir, audio,
                                                                 tmp_path):
        out = tmp_path / "emb.npz"
        out.write_bytes(b"the user's previous result")

        def small_files() -> None:  # writes past 2000 bytes fail with EFBIG
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))

        r = encode("--checkpoint", model_dir, audio["song"], "--out", out, *FAST,
                   preexec_fn=small_files)
        assert r.returncode == 1, r.stderr
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert lines[-1] == f"encode.py: error: {out}: File too large", r.stderr
        assert "Traceback" not in r.stderr
        assert out.read_bytes() == b"the user's previous result"
        assert not Path(f"{out}.skipped.json").exists()
        assert not list(tmp_path.glob(".*.tmp"))

    def test_bad_arguments_are_one_line(self, model_dir, audio, tmp_path, capsys):
        for extra in (["--segment", "1:nan"], ["--batch-size", "0"], ["--layer", "q"]):
            rc, err = cli(capsys, "--checkpoint", model_dir, audio["song"], "--out",
                          tmp_path / "e.npz", "--quiet", *extra)
            assert rc == 2
            assert one_line(err).startswith("encode.py: error:")


class TestAudioOfAnyCommonDtype:
    def test_integer_pcm_is_scaled_like_a_decoder(self, enc):
        y = tone()
        ref = enc.embed(np.round(y * 32767) / 32768, 16000)
        for pcm in (np.round(y * 32767).astype(np.int16),
                    (np.round(y * 32767).astype(np.int32) << 16),
                    torch.from_numpy(np.round(y * 32767).astype(np.int16))):
            v = enc.embed(pcm, 16000)
            cos = float(v @ ref / np.linalg.norm(v) / np.linalg.norm(ref))
            assert cos > 0.99999, (pcm.dtype, cos)
        u8 = (np.round(y * 127) + 128).astype(np.uint8)
        v = enc.embed(u8, 16000)
        ref8 = enc.embed((u8.astype(np.float64) - 128) / 128, 16000)
        np.testing.assert_allclose(v, ref8, rtol=1e-5, atol=1e-5)

    @pytest.mark.parametrize("bad,match", [
        (np.ones(16000, dtype=bool), "dtype bool"),
        (np.ones(16000, dtype=np.complex64), "complex"),
        (np.ones(16000, dtype=np.int64), "64-bit"),
        (np.array(["a"] * 16000), "array of numbers"),
        (np.zeros(0, np.float32), "empty audio"),
        (np.zeros((2, 0), np.float32), "empty audio"),
    ])
    def test_refused_dtypes_and_empty(self, enc, bad, match):
        with pytest.raises(ValueError, match=match):
            enc.embed(bad, 16000)
