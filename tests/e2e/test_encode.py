"""encode.py: audio files and dataset splits -> embeddings .npz, with bad input reported."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from musicrep.audio import file_mel, mel_to_frames
from musicrep.inference.embed import track_chunks
from musicrep.model.audio_cnn import AudioEncoder

from tests.helpers import REPO
from tests.helpers.synth import write_synthetic_dataset

ENCODE = REPO / "encode.py"


def _encode_main():
    return runpy.run_path(str(ENCODE))["main"]


@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory) -> Path:
    """A random width-0.125 encoder saved as a plain (original-format) state dict, with
    the config.json that says its layout ('reference', as the authors' files)."""
    path = tmp_path_factory.mktemp("ckpt") / "audio_encoder.pt"
    torch.manual_seed(0)
    torch.save(AudioEncoder(width=0.125).state_dict(), path)
    (path.parent / "config.json").write_text('{"input_layout": "reference"}')
    return path


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("audio")
    sr = 44100
    t = np.arange(int(6.0 * sr)) / sr  # 6 s -> 376 frames at 16 kHz: one full chunk
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    sf.write(d / "tone.wav", np.stack([tone, tone * 0.5], axis=1), sr)
    (d / "sub").mkdir()
    rng = np.random.default_rng(0)
    # 3 s at 16 kHz -> 188 frames < 256: padded, with a note.
    sf.write(d / "sub" / "noise.flac", rng.normal(0, 0.1, 3 * 16000), 16000)
    (d / "bad.wav").write_bytes(b"this is not audio")
    sf.write(d / "empty.wav", np.zeros(0), 16000)
    (d / "notes.txt").write_text("not an audio extension: ignored in directories")
    return d


def test_cli_files_with_bad_and_short(encoder_file, audio_dir, tmp_path) -> None:
    out = tmp_path / "emb.npz"
    proc = subprocess.run(
        [sys.executable, str(ENCODE), "--checkpoint", str(encoder_file), str(audio_dir),
         "--out", str(out), "--device", "cpu", "--quiet", "--precision", "fp32"],
        check=False, capture_output=True, text=True, timeout=120,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
    )
    assert proc.returncode == 1, proc.stderr
    assert "bad.wav: skipped" in proc.stderr and "empty.wav: skipped" in proc.stderr
    assert "noise.flac: only 188 frames" in proc.stderr and "padded" in proc.stderr

    with np.load(out) as npz:
        emb, paths = npz["embeddings"], npz["paths"]
        assert str(npz["layer"]) == "z_d"
    assert emb.shape == (2, 128) and emb.dtype == np.float32
    assert [Path(p).name for p in paths] == ["noise.flac", "tone.wav"]  # sorted full paths

    report = json.loads(Path(f"{out}.skipped.json").read_text())
    reasons = {Path(s["path"]).name: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"bad.wav", "empty.wav"}
    assert "cannot decode" in reasons["bad.wav"] and "no audio samples" in reasons["empty.wav"]
    assert [Path(p["path"]).name for p in report["padded"]] == ["noise.flac"]

    # The stored embedding is the mean over chunks of the encoder's z_d, recomputed here
    # by hand (its config.json says 'reference' layout).
    enc = AudioEncoder(width=0.125, input_layout="reference")
    enc.load_state_dict(torch.load(encoder_file, weights_only=True))
    chunks, _ = track_chunks(mel_to_frames(file_mel(audio_dir / "tone.wav")))
    with torch.inference_mode():
        expected = enc.eval()(enc.to_input(torch.from_numpy(chunks)))[1].mean(0).numpy()
    np.testing.assert_allclose(emb[1], expected, rtol=1e-4, atol=1e-5)


def test_cli_non_encoder_checkpoint(audio_dir, tmp_path) -> None:
    bogus = tmp_path / "optimizer.pt"
    torch.save({"state": {}, "param_groups": []}, bogus)
    proc = subprocess.run(
        [sys.executable, str(ENCODE), "--checkpoint", str(bogus), str(audio_dir / "tone.wav"),
         "--out", str(tmp_path / "x.npz")],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("encode.py: error:") and "optimizer.pt" in lines[0]
    assert not (tmp_path / "x.npz").exists()


def test_chunks_layer_and_clean_exit(encoder_file, audio_dir, tmp_path, capsys) -> None:
    main = _encode_main()
    tone = str(audio_dir / "tone.wav")
    noise = str(audio_dir / "sub" / "noise.flac")
    assert main(["--checkpoint", str(encoder_file), tone, noise, "--out",
                 str(tmp_path / "m.npz"), "--layer", "z", "--quiet", "--device", "cpu"]) == 0
    assert main(["--checkpoint", str(encoder_file), tone, noise, "--out",
                 str(tmp_path / "c.npz"), "--layer", "z", "--chunks", "--quiet",
                 "--device", "cpu"]) == 0
    means, per_chunk = np.load(tmp_path / "m.npz"), np.load(tmp_path / "c.npz")
    z_dim = AudioEncoder(width=0.125).z_dim
    assert means["embeddings"].shape == (2, z_dim)
    # noise.flac (sorted first) pads to 1 chunk; tone.wav has 376 frames -> 1 chunk.
    assert per_chunk["file_index"].tolist() == [0, 1]
    for i in range(2):
        rows = per_chunk["embeddings"][per_chunk["file_index"] == i]
        np.testing.assert_allclose(rows.mean(0), means["embeddings"][i], rtol=1e-5, atol=1e-6)
    assert json.loads((tmp_path / "m.npz.skipped.json").read_text())["skipped"] == []


def test_hdf5_split(encoder_file, tmp_path) -> None:
    ds = write_synthetic_dataset(tmp_path / "ds", n_train=4, n_val=2, n_test=3, frames=600)
    main = _encode_main()
    out = tmp_path / "test.npz"
    assert main(["--checkpoint", str(encoder_file), "--hdf5", str(ds / "test.h5"),
                 "--out", str(out), "--quiet", "--device", "cpu", "--batch-size", "4"]) == 0
    with np.load(out) as npz:
        assert npz["ids"].tolist() == [6, 7, 8]
        assert npz["embeddings"].shape == (3, 128)
    out_c = tmp_path / "test_chunks.npz"
    assert main(["--checkpoint", str(encoder_file), "--hdf5", str(ds / "test.h5"), "--chunks",
                 "--out", str(out_c), "--quiet", "--device", "cpu"]) == 0
    with np.load(out_c) as npz, np.load(out) as means:
        # 600 frames -> 2 chunks per track (frames 0-511), tail of 88 frames unused.
        assert npz["file_index"].tolist() == [0, 0, 1, 1, 2, 2]
        np.testing.assert_allclose(
            npz["embeddings"].reshape(3, 2, -1).mean(1), means["embeddings"], rtol=1e-5, atol=1e-6
        )
    assert main(["--checkpoint", str(encoder_file), "--hdf5", str(tmp_path / "nope.h5"),
                 "--out", str(out), "--quiet"]) == 2


def test_resolve_checkpoint_and_file_discovery(tmp_path) -> None:
    from musicrep.inference.embed import find_audio_files, resolve_checkpoint

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("epoch_0002.pt", "epoch_0010.pt"):
        (run / "checkpoints" / name).write_bytes(b"")
    assert resolve_checkpoint(run) == run / "checkpoints" / "epoch_0010.pt"
    (run / "best.pt").write_bytes(b"")
    assert resolve_checkpoint(run) == run / "best.pt"
    (run / "audio_encoder.pt").write_bytes(b"")
    assert resolve_checkpoint(run) == run / "audio_encoder.pt"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        resolve_checkpoint(tmp_path / "nowhere")

    music = tmp_path / "music"
    (music / "b").mkdir(parents=True)
    for rel in ("b/2.MP3", "a.flac", "._a.flac", "cover.jpg"):
        (music / rel).write_bytes(b"")
    files, missing = find_audio_files([music, music / "a.flac", tmp_path / "gone.wav"])
    assert [f.relative_to(music).as_posix() for f in files] == ["a.flac", "b/2.MP3"]
    assert missing == [(str(tmp_path / "gone.wav"), "no such file or directory")]
