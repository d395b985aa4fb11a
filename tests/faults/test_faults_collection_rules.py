"""Fault tests of the collection commands: import_audio, make_toy_audio, make_toy_melon,
train_genre_w2v and create_dataset, black-box through their command lines.

Grouped by rule: bounded worker processes that die with their parent; one writer per
output; one bad audio file never stops an import; one line (never a traceback) for a
full disk, an output that cannot be written and Ctrl-C; an output is never one of the
inputs; a small collection says at creation which tasks it is too small for.

A full disk is simulated with RLIMIT_FSIZE in the child (and SIGXFSZ ignored), so a
write past the limit fails with EFBIG as it would with ENOSPC. The inputs are tiny
generated WAV files and corpora, so each test takes seconds.
"""

from __future__ import annotations

import csv
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicrep.data.builder import DatasetArgs, create_dataset
from musicrep.data.minimums import CONTINUATION_K, TRAIN_BATCH_SIZE, dataset_warnings
from musicrep.io import output_lock
from musicrep.toy.melon import make_toy_melon
from musicrep.workers import usable_cpus

from tests.helpers import REPO

SCRIPTS = {
    "import_audio": REPO / "scripts" / "import_audio.py",
    "make_toy_audio": REPO / "scripts" / "make_toy_audio.py",
    "make_toy_melon": REPO / "scripts" / "make_toy_melon.py",
    "create_dataset": REPO / "scripts" / "create_dataset.py",
    "train_genre_w2v": REPO / "train_genre_w2v.py",
}
FAST_CLI = ("--frames", "256", "--cf-factors", "8", "--cf-epochs", "3", "--workers", "2")
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
# A pool needs two usable CPUs (with one, the work runs in the command's own process).
NEEDS_A_POOL = pytest.mark.skipif(usable_cpus() < 2, reason="one usable CPU: no worker pool")


# ------------------------------------------------------------------------------ tools


def _cmd(prog: str, *args: str) -> list[str]:
    return [sys.executable, str(SCRIPTS[prog]), *map(str, args)]


def _cli(prog: str, *args: str, preexec: Callable[[], None] | None = None
         ) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(prog, *args), capture_output=True, text=True, cwd=REPO, env=ENV,
                          preexec_fn=preexec, timeout=300)


def _popen(prog: str, *args: str, group: bool = False) -> subprocess.Popen:
    """A child with the default Ctrl-C handling (a background shell ignores SIGINT) and,
    with `group`, its own process group: a terminal's Ctrl-C reaches the whole group."""
    def pre() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if group:
            os.setpgrp()
    return subprocess.Popen(_cmd(prog, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO, env=ENV, preexec_fn=pre)


def _file_size_limit(nbytes: int) -> Callable[[], None]:
    """preexec_fn: files cannot grow past `nbytes` (a full disk, as EFBIG)."""
    def pre() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return pre


def _error_line(r: subprocess.CompletedProcess, prog: str, code: int) -> str:
    """The exit status and the one-line error (progress bars and notes may precede it)."""
    assert r.returncode == code, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith(f"{prog}: "), line
    return line


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state, ppid, ...), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def _children(pid: int) -> list[int]:
    """Live child processes of `pid` (psutil may not be installed: /proc)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat(int(d))
            if st is not None and int(st[1]) == pid and st[0] != "Z":
                out.append(int(d))
    return out


def _alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] != "Z"


def _wait_for(cond: Callable[[], bool], p: subprocess.Popen, what: str, seconds: float = 60
              ) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert p.poll() is None, f"the command ended before {what}: {p.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.002)


def _max_children_until_exit(p: subprocess.Popen) -> int:
    most = 0
    while p.poll() is None:
        most = max(most, len(_children(p.pid)))
        time.sleep(0.002)
    return most


def _tree(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def _tone(seconds: float, sr: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * rng.uniform(100, 1000) * t)
            + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def _collection(root: Path, seconds: list[float], sr: int = 16000) -> Path:
    """`root` with music/ (one WAV per entry of `seconds`), tracks.csv and playlists.csv."""
    (root / "music").mkdir(parents=True)
    with open(root / "tracks.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["track_id", "path", "genres"])
        for i, sec in enumerate(seconds):
            sf.write(root / "music" / f"t{i}.wav", _tone(sec, sr, i), sr)
            w.writerow([f"t{i}", f"t{i}.wav", "Rock" if i % 2 else "Pop"])
    with open(root / "playlists.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["playlist_id", "track_id"])
        for i in range(len(seconds)):
            w.writerow([f"p{i % 2}", f"t{i}"])
    return root


def _import_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["--audio-dir", root / "music", "--tracks", root / "tracks.csv", "--playlists",
            root / "playlists.csv", "--out", out, "--segment", "full", "--min-frames", "60",
            *extra]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A small finished dataset (no word2vec yet) for train_genre_w2v."""
    base = tmp_path_factory.mktemp("w2v")
    make_toy_melon(base / "melon", songs=80, playlists=40, frames=300, seed=1)
    create_dataset(DatasetArgs(str(base / "melon"), str(base / "dataset"), frames=256,
                               cf_factors=8, cf_epochs=3, workers=2))
    return base / "dataset"


# ----------------------------------------------------------------- rule 1: workers


class TestBoundedWorkers:
    def test_import_starts_at_most_the_cpus_or_tracks_and_says_so(self, tmp_path):
        root = _collection(tmp_path, [1.0, 1.0, 1.0])
        p = _popen("import_audio", *_import_args(root, tmp_path / "out", "--workers", "5000",
                                                 "--quiet"))
        most = _max_children_until_exit(p)
        _, err = p.communicate()
        n = min(usable_cpus(), 3)
        assert p.returncode == 0, err
        assert most <= n, f"{most} worker processes for 3 tracks on {usable_cpus()} CPUs"
        assert f"note: --workers 5000: using {n}" in err

    def test_make_toy_audio_starts_at_most_the_cpus(self, tmp_path):
        p = _popen("make_toy_audio", "--out", tmp_path / "c", "--tracks", "10", "--seconds",
                   "1", "--workers", "5000")
        most = _max_children_until_exit(p)
        _, err = p.communicate()
        n = min(usable_cpus(), 10)
        assert p.returncode == 0, err
        assert most <= n and f"note: --workers 5000: using {n}" in err

    @NEEDS_A_POOL
    def test_sigkill_of_the_import_leaves_no_worker_running(self, tmp_path):
        root = _collection(tmp_path, [120.0, 120.0], sr=8000)  # seconds of decoding each
        p = _popen("import_audio", *_import_args(root, tmp_path / "out", "--workers", "2",
                                                 "--quiet"))
        _wait_for(lambda: len(_children(p.pid)) >= 2, p, "the workers")
        workers = _children(p.pid)
        p.kill()  # SIGKILL: no clean-up runs in the parent
        p.communicate()
        deadline = time.monotonic() + 10
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [w for w in workers if _alive(w)], "workers outlived the killed import"


# ------------------------------------------------------------- rule 2: one writer


class TestOneWriterPerOutput:
    def test_a_second_import_into_the_same_out_exits_2_at_once(self, tmp_path):
        root = _collection(tmp_path, [1.0, 1.0])
        out = tmp_path / "out"
        with output_lock(out):  # a first import in progress
            t0 = time.monotonic()
            r = _cli("import_audio", *_import_args(root, out, "--workers", "0", "--quiet"))
            took = time.monotonic() - t0
        line = _error_line(r, "import_audio", 2)
        assert len(r.stderr.strip().splitlines()) == 1
        assert "another run is writing it" in line and str(out) in line
        assert not out.exists() and took < 30


# ----------------------------------------------------------- rule 3: bad audio files


def _broken_wavs(music: Path) -> dict[str, str]:
    """WAV files that used to escape the importer as library errors: track id -> file."""
    sf.write(music / "sr0.wav", _tone(1.0, 16000, 7), 16000)
    raw = bytearray((music / "sr0.wav").read_bytes())
    raw[24:32] = bytes(8)  # the header's sample rate and byte rate: 0
    (music / "sr0.wav").write_bytes(bytes(raw))
    sf.write(music / "huge.wav", np.full(22050 * 2, 1e38, np.float32), 22050, subtype="FLOAT")
    return {"sr0": "sr0.wav", "huge": "huge.wav"}


def _add_tracks(root: Path, tracks: dict[str, str]) -> None:
    with open(root / "tracks.csv", "a", newline="") as f:
        csv.writer(f).writerows([t, path, "Rock"] for t, path in tracks.items())


class TestOneBadFileNeverStopsTheImport:
    def test_zero_sample_rate_and_huge_samples_are_skip_reasons(self, tmp_path):
        root = _collection(tmp_path, [1.0, 1.0, 1.0])
        _add_tracks(root, _broken_wavs(root / "music"))
        out = tmp_path / "out"
        for workers in ("2", "0"):  # the rerun too (it used to crash on every rerun)
            r = _cli("import_audio", *_import_args(root, out, "--workers", workers, "--quiet"))
            assert r.returncode == 0, r.stderr[-2000:]
            assert "Traceback" not in r.stderr
        report = json.loads((out / "import_skipped.json").read_text())
        skipped = {t["track_id"]: t for t in report["tracks"]}
        assert set(skipped) == {"sr0", "huge"}
        for tid, t in skipped.items():
            assert t["reason"] and f"{tid}.wav" in t["detail"], t
        assert json.loads((out / "import.json").read_text())["counts"]["usable"] == 3

    def test_an_unknown_library_error_of_one_file_is_its_skip_reason(self, tmp_path):
        """Whatever a decoding library raises for one file (here an error type nothing in
        musicrep knows) is that file's reason; the workers inherit the decoder below."""
        root = _collection(tmp_path, [1.0, 1.0, 1.0])
        out = tmp_path / "out"
        code = (
            "import sys\n"
            "import musicrep.data.importer as imp\n"
            "from musicrep.cli.import_audio import main\n"
            "class SomeLibraryError(RuntimeError): pass\n"
            "real = imp.segment_mel\n"
            "def segment_mel(path, segment):\n"
            "    if path.name == 't1.wav':\n"
            "        raise SomeLibraryError('internal error -3 in the decoder')\n"
            "    return real(path, segment)\n"
            "imp.segment_mel = segment_mel\n"
            "sys.exit(main(sys.argv[1:]))\n")
        r = subprocess.run([sys.executable, "-c", code, *map(str, _import_args(
            root, out, "--workers", "2", "--quiet"))], capture_output=True, text=True,
            cwd=REPO, env=ENV, timeout=300)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
        [t] = json.loads((out / "import_skipped.json").read_text())["tracks"]
        assert t["track_id"] == "t1" and t["reason"] == "undecodable"
        assert "t1.wav" in t["detail"] and "SomeLibraryError" in t["detail"]


# ------------------------------------------------- rule 4: one line, never a traceback


class TestDiskFull:
    def test_create_dataset_is_one_line_and_never_a_segfault(self, make_melon, tmp_path):
        root, _ = make_melon()
        out = tmp_path / "ds"
        for limit in (100_000, 3_000_000):  # while appending, and at the final flush
            r = _cli("create_dataset", "--melon-dir", root, "--out-dir", out, *FAST_CLI,
                     preexec=_file_size_limit(limit))
            line = _error_line(r, "create_dataset", 1)  # 139 was the segfault
            assert f"{out / 'train.h5'}: File too large" in line and "unchanged" in line
            assert not out.exists()
            assert not list(tmp_path.glob(".ds*")), list(tmp_path.glob(".ds*"))

    def test_import_names_the_mel_it_could_not_write(self, tmp_path):
        root = _collection(tmp_path, [3.0, 3.0, 3.0])
        out = tmp_path / "out"
        r = _cli("import_audio", *_import_args(root, out, "--workers", "2", "--quiet"),
                 preexec=_file_size_limit(10_000))  # a mel is ~36 kB
        line = _error_line(r, "import_audio", 1)
        assert str(out / "arena_mel") in line and ("File too large" in line or "disk full" in line)
        assert not list((out / "arena_mel").rglob("*.npy"))  # nothing half-written
        r = _cli("import_audio", *_import_args(root, out, "--workers", "0", "--quiet"))
        assert r.returncode == 0, r.stderr  # the rerun completes the import

    @pytest.mark.parametrize("prog, args, limit", [
        ("make_toy_melon", ("--songs", "12", "--playlists", "4", "--frames", "64"), 8_000),
        ("make_toy_audio", ("--tracks", "10", "--seconds", "1", "--workers", "2"), 20_000),
    ])
    def test_generators_are_one_line_and_leave_nothing(self, tmp_path, prog, args, limit):
        out = tmp_path / "corpus"
        r = _cli(prog, "--out", out, *args, preexec=_file_size_limit(limit))
        line = _error_line(r, prog, 1)
        assert f"{prog}: error: {out}" in line
        assert list(tmp_path.iterdir()) == []  # no corpus, no temporary directory

    def test_train_genre_w2v_names_the_matrix(self, dataset, tmp_path):
        ds = shutil.copytree(dataset, tmp_path / "ds")
        before = _tree(ds)
        r = _cli("train_genre_w2v", "--dataset-dir", ds, "--epochs", "2",
                 preexec=_file_size_limit(1_000))
        line = _error_line(r, "train_genre_w2v", 1)
        assert str(ds / "embedding_matrix_128.npy") in line and "disk full" in line
        assert _tree(ds) == before


class TestOutputThatCannotBeWritten:
    """An output under a regular file cannot be created (even as root): exit 2, one
    line, before any work."""

    def test_import_audio(self, tmp_path):
        root = _collection(tmp_path, [1.0])
        (tmp_path / "file").write_text("x")
        r = _cli("import_audio", *_import_args(root, tmp_path / "file" / "out", "--quiet"))
        line = _error_line(r, "import_audio", 2)
        assert "cannot write in" in line and str(tmp_path / "file") in line

    def test_create_dataset(self, make_melon, tmp_path):
        root, _ = make_melon()
        (tmp_path / "file").write_text("x")
        r = _cli("create_dataset", "--melon-dir", root, "--out-dir", tmp_path / "file" / "ds",
                 *FAST_CLI)
        line = _error_line(r, "create_dataset", 2)
        assert "cannot create the output directory" in line and "metadata" not in r.stderr

    @pytest.mark.parametrize("prog", ["make_toy_melon", "make_toy_audio"])
    def test_generators(self, tmp_path, prog):
        (tmp_path / "file").write_text("x")
        r = _cli(prog, "--out", tmp_path / "file" / "out", "--tracks" if prog ==
                 "make_toy_audio" else "--songs", "10")
        line = _error_line(r, prog, 2)
        assert "cannot be written" in line and "render" not in r.stderr


class TestCtrlC:
    @NEEDS_A_POOL
    def test_import_audio_stops_its_workers_in_one_line(self, tmp_path):
        root = _collection(tmp_path, [120.0, 120.0, 1.0], sr=8000)
        out = tmp_path / "out"
        p = _popen("import_audio", *_import_args(root, out, "--workers", "2", "--quiet"),
                   group=True)
        _wait_for(lambda: len(_children(p.pid)) >= 2, p, "the workers")
        workers = _children(p.pid)
        os.killpg(p.pid, signal.SIGINT)  # as a terminal does: to every process of the group
        _, err = p.communicate(timeout=60)
        assert p.returncode == 130, err
        assert "Traceback" not in err and err.strip().splitlines() == [
            f"import_audio: interrupted: the mels written so far are kept in {out}; "
            "rerun the same command to resume"]
        time.sleep(0.5)
        assert not [w for w in workers if _alive(w)]
        for mel in (out / "arena_mel").rglob("*.npy"):  # every final name is complete
            assert np.load(mel).shape[0] == 48

    def test_train_genre_w2v(self, dataset, tmp_path):
        ds = shutil.copytree(dataset, tmp_path / "ds")
        before = _tree(ds)
        p = _popen("train_genre_w2v", "--dataset-dir", ds, "--epochs", "1000000", "--dim", "16")
        assert "training word2vec" in p.stderr.readline()  # the work has begun
        time.sleep(0.3)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
        assert p.returncode == 130, err
        assert err.strip().splitlines() == ["train_genre_w2v: interrupted"]
        assert _tree(ds) == before

    @pytest.mark.parametrize("prog, args, started", [
        ("make_toy_melon", ("--songs", "200", "--playlists", "20", "--frames", "500"),
         lambda out: list(out.parent.glob(f"{out.name}.tmp-*/arena_mel"))),
        ("make_toy_audio", ("--tracks", "40", "--seconds", "10", "--workers", "2"),
         lambda out: list(out.parent.glob(f"{out.name}.tmp-*/audio/000/*.*"))),
    ])
    def test_generators_leave_nothing(self, tmp_path, prog, args, started):
        out = tmp_path / "corpus"
        p = _popen(prog, "--out", out, *args, group=True)
        _wait_for(lambda: started(out), p, "the first files")
        p.send_signal(signal.SIGSTOP)  # the interrupt lands mid-work however fast it runs
        os.killpg(p.pid, signal.SIGINT)
        p.send_signal(signal.SIGCONT)
        _, err = p.communicate(timeout=60)
        assert p.returncode == 130, err
        assert "Traceback" not in err
        assert err.strip().splitlines()[-1] == f"{prog}: interrupted: {out} is unchanged"
        assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------ rule 5: inputs are not outputs


class TestAnInputIsNeverTheOutput:
    def test_import_out_equal_to_the_audio_dir(self, tmp_path):
        root = _collection(tmp_path, [1.0, 1.0])
        before = _tree(root)
        r = _cli("import_audio", *_import_args(root, root / "music", "--quiet"))
        line = _error_line(r, "import_audio", 2)
        assert "is the --audio-dir" in line
        assert _tree(root) == before

    def test_import_out_holding_the_tables(self, tmp_path):
        root = _collection(tmp_path, [1.0, 1.0])
        before = _tree(root)
        r = _cli("import_audio", *_import_args(root, root, "--quiet"))
        line = _error_line(r, "import_audio", 2)
        assert "holds the --audio-dir" in line or "holds the --tracks" in line
        assert _tree(root) == before

    @pytest.mark.parametrize("where", ["same", "parent"])
    def test_create_dataset_out_dir_is_or_holds_the_melon_dir(self, make_melon, where):
        root, _ = make_melon()
        out = root if where == "same" else root.parent
        before = _tree(root)
        r = _cli("create_dataset", "--melon-dir", root, "--out-dir", out, "--overwrite",
                 *FAST_CLI)
        line = _error_line(r, "create_dataset", 2)
        assert ("is the --melon-dir" if where == "same" else "contains the --melon-dir") in line
        assert _tree(root) == before


# ------------------------------------------------------- rule 6: small collections


class TestSmallCollectionsSayWhatTheyCannotGive:
    def test_a_tiny_dataset_warns_at_creation_and_in_the_manifest(self, make_melon, tmp_path):
        root, _ = make_melon(songs=40, playlists=14)
        out = tmp_path / "ds"
        r = _cli("create_dataset", "--melon-dir", root, "--out-dir", out, "--frames", "256",
                 "--cf-factors", "300", "--cf-epochs", "3", "--workers", "2")
        assert r.returncode == 0, r.stderr[-2000:]
        manifest = json.loads((out / "manifest.json").read_text())
        warnings = manifest["warnings"]
        c = manifest["counts"]
        printed = [ln.removeprefix("warning: ") for ln in r.stderr.splitlines()
                   if ln.startswith("warning: ")]
        assert printed == warnings
        by_task = {w.split(":")[0]: w for w in warnings}
        assert f"has {c['train_tracks']} tracks" in by_task["training"]
        assert f"batch_size {TRAIN_BATCH_SIZE}" in by_task["training"]
        assert "--cf-factors 300" in by_task["CF"]
        assert f"> {CONTINUATION_K} test tracks" in by_task["continuation"]
        assert f"{len(warnings)} warnings above" in r.stdout

    def test_enough_tracks_give_no_warning_and_factors_below_the_playlists(self):
        rng = np.random.default_rng(0)
        n_known, n_test, g = 400, 150, 5
        known = rng.random((n_known, g)) < 0.3
        test = rng.random((n_test, g)) < 0.3
        names = [f"g{i}" for i in range(g)]
        ok = dataset_warnings({"train": 300, "val": 100, "test": n_test},
                              (known, test, names), (known, test, names), 20,
                              (32, 200, 400), generated=True)
        assert ok == []
        test[:, 2] = False  # genre g2 has no positive test track
        bad = dataset_warnings({"train": 300, "val": 1, "test": n_test},
                               (known, test, names), None, 0, (200, 200, 400), generated=True)
        assert [w.split(":")[0] for w in bad] == ["validation", "genre probe", "continuation",
                                                  "CF"]
        assert "1 of 5 major genres cannot be scored (g2)" in bad[1]
