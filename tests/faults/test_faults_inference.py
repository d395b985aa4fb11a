"""Fault tests of the inference side (encode.py, explore.py, the audio reader, the
encoder loader), grouped by the rule of issue #9 they check."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicrep.audio import AudioError, file_mel
from musicrep.inference.embed import embed_files

from tests.helpers import REPO
from tests.helpers.faults import default_sigint

ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}


def run(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / script), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=ENV, check=False)


def one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture(scope="module")
def song(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "song.wav"
    t = np.arange(16000 * 9) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 16000)
    return path


def write_long_wav(path: Path, minutes: float, sr: int = 16000) -> Path:
    """A long tone written a minute at a time (the test itself stays small)."""
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", samplerate=sr, channels=1, subtype="PCM_16") as f:
        for m in range(int(minutes)):
            t = np.arange(60 * sr) / sr
            f.write(0.2 * np.sin(2 * np.pi * (200 + 10 * m) * t) + 0.01 * rng.standard_normal(len(t)))
    return path


class TestRule1NeverExitZeroOnEmptyOrWrong:
    def test_mistyped_path_writes_nothing(self, model_dir, tmp_path):
        out = tmp_path / "emb.npz"
        r = run("encode.py", "--checkpoint", model_dir, tmp_path / "sogn.wav", "--out", out,
                "--quiet")
        assert r.returncode == 2, r.stderr
        assert "sogn.wav: skipped: no such file" in r.stderr and "nothing written" in r.stderr
        assert not out.exists() and not Path(f"{out}.skipped.json").exists()

    def test_nothing_encodable_writes_nothing(self, model_dir, tmp_path):
        (tmp_path / "a.wav").write_bytes(b"RIFF garbage")
        out = tmp_path / "emb.npz"
        r = run("encode.py", "--checkpoint", model_dir, tmp_path / "a.wav", "--out", out, "--quiet")
        assert r.returncode == 1 and "none of the 1 audio files could be encoded" in r.stderr
        assert not out.exists()

    def test_moved_weights_are_refused_not_guessed(self, model_dir, song, tmp_path):
        moved = tmp_path / "elsewhere" / "audio_encoder.pt"
        moved.parent.mkdir()
        moved.write_bytes((model_dir / "audio_encoder.pt").read_bytes())
        out = tmp_path / "moved.npz"
        r = run("encode.py", "--checkpoint", moved, song, "--out", out, "--quiet")
        assert r.returncode == 2 and not out.exists()
        line = one_line(r.stderr)
        assert str(moved) in line and "--input-layout reference" in line
        # With the layout given it is the same model as beside its config.json.
        ref = tmp_path / "ref.npz"
        assert run("encode.py", "--checkpoint", model_dir, song, "--out", ref, "--quiet",
                   "--precision", "fp32").returncode == 0
        assert run("encode.py", "--checkpoint", moved, "--input-layout", "transpose", song,
                   "--out", out, "--quiet", "--precision", "fp32").returncode == 0
        np.testing.assert_array_equal(np.load(out)["embeddings"], np.load(ref)["embeddings"])

    def test_npz_carries_provenance_and_shipped_model_warns(self, song, tmp_path):
        out = tmp_path / "emb.npz"
        r = run("encode.py", "--checkpoint", REPO / "models" / "baseline_MF", song, "--out", out,
                "--quiet")
        assert r.returncode == 0, r.stderr
        warn = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
        assert len(warn) == 1 and "GENERATED corpus" in warn[0]
        with np.load(out, allow_pickle=False) as z:
            assert str(z["trained_on"]) == "generated" and str(z["layer"]) == "z_d"
            assert json.loads(str(z["provenance"]))["data"] == "generated"
            assert float(z["chunk_seconds"]) == 4.096 and int(z["chunk_frames"]) == 256
            assert bool(z["normalised"]) is False and str(z["segment"]) == "whole file"


class TestRule2NeverLoseUserData:
    def test_ctrl_c_one_line_130_and_previous_output_kept(self, model_dir, tmp_path):
        long = write_long_wav(tmp_path / "long.wav", 4)
        out = tmp_path / "emb.npz"
        out.write_bytes(b"the user's previous result")
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "encode.py"), "--checkpoint", str(model_dir), str(long),
             str(long), "--out", str(out), "--quiet", "--precision", "fp32"],
            stderr=subprocess.PIPE, text=True, env=ENV, preexec_fn=default_sigint)
        first = proc.stderr.readline()  # "encoding N files ...": the work has started
        assert first.startswith("encoding"), first
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        rest = proc.stderr.read()
        assert proc.wait(timeout=60) == 130
        assert one_line(rest) == "encode.py: interrupted; nothing written"
        assert out.read_bytes() == b"the user's previous result"
        assert not list(tmp_path.glob(".emb.npz*"))  # no temporary left behind


class TestRule3OneLineExit2:
    def test_out_not_writable_is_checked_before_the_work(self, model_dir, song, tmp_path):
        blocker = tmp_path / "file"
        blocker.write_text("x")
        for out in (blocker / "emb.npz", tmp_path):
            t0 = time.monotonic()
            r = run("encode.py", "--checkpoint", model_dir, song, "--out", out, "--quiet")
            assert r.returncode == 2
            assert one_line(r.stderr).startswith(f"encode.py: error: --out {out}")
            assert "encoding" not in r.stderr and time.monotonic() - t0 < 60

    def test_explore_rejects_text_and_chunk_files(self, tmp_path):
        (tmp_path / "emb.npz").write_text("0.1 0.2\n")
        r = run("explore.py", "--embeddings", tmp_path / "emb.npz", "--out", tmp_path / "x")
        assert r.returncode == 2 and "emb.npz" in one_line(r.stderr)
        np.savez(tmp_path / "c.npz", embeddings=np.ones((2, 4), np.float32),
                 paths=np.array(["a", "b"]), file_index=np.zeros(2, np.int64))
        r = run("explore.py", "--embeddings", tmp_path / "c.npz", "--out", tmp_path / "x")
        assert r.returncode == 2 and "without --chunks" in one_line(r.stderr)
        assert not (tmp_path / "x").exists()


class TestRule4MessagesNameTheCause:
    def test_corrupt_file_is_not_called_missing(self, tmp_path):
        rng = np.random.default_rng(0)
        for name in ("song.mp3", "song.flac", "song.ogg"):
            bad = tmp_path / name
            bad.write_bytes(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
            with pytest.raises(AudioError) as e:
                file_mel(bad)
            msg = str(e.value)
            assert msg.startswith(f"{bad}: cannot decode audio") and "corrupt" in msg
            assert "does not exist" not in msg and "no such file" not in msg.lower()
        with pytest.raises(AudioError, match="no such file"):
            file_mel(tmp_path / "gone.mp3")
        (tmp_path / "empty.mp3").write_bytes(b"")
        with pytest.raises(AudioError, match="empty: 0 bytes"):
            file_mel(tmp_path / "empty.mp3")
        with pytest.raises(AudioError, match="not a regular file"):
            file_mel(tmp_path)


class TestRule5BoundedMemory:
    def test_peak_memory_does_not_grow_with_duration(self, model_dir, tmp_path):
        from musicrep.training.checkpoint import load_audio_encoder

        enc = load_audio_encoder(model_dir / "audio_encoder.pt")
        peaks = {}
        for minutes in (2, 20):
            path = write_long_wav(tmp_path / f"{minutes}.wav", minutes)
            tracemalloc.start()
            # batch_size bounds the chunks pooled before a forward pass (here 32, the
            # CPU micro-batch): memory is one decoding block plus one batch.
            res = embed_files(enc, [path], device="cpu", batch_size=32, progress=False,
                              precision="fp32")
            peaks[minutes] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert res.paths == [str(path)] and np.isfinite(res.embeddings).all()
        # Whole-file decoding grows ~10x here (and used 55 MB per minute of audio);
        # in blocks the peak stays about one 30 s block.
        assert peaks[20] < 1.5 * peaks[2], peaks
        assert peaks[20] < 200e6, peaks


class TestRule6NoPickle:
    def test_pickled_npz_is_refused(self, tmp_path):
        np.savez(tmp_path / "p.npz", embeddings=np.ones((3, 4), np.float32),
                 paths=np.array([{"a": 1}, None, 3], dtype=object))
        r = run("explore.py", "--embeddings", tmp_path / "p.npz", "--out", tmp_path / "x")
        assert r.returncode == 2 and "p.npz" in one_line(r.stderr)
        assert "pickle" in r.stderr.lower() and not (tmp_path / "x").exists()
