"""Issue #9 fault tests for dataset creation (create_dataset and scripts/create_dataset.py).

Grouped by the rule they check. Each builds a small generated corpus (the `make_melon`
fixture) or reads the shared one, and runs the real code, in-process or as a subprocess
where the process boundary is the point (exit codes, signals, a second process).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from musicrep.data.builder import DatasetArgs, DatasetError, create_dataset
from musicrep.io import InterruptGuard, output_lock
from musicrep.data.melon import mel_path

from tests.helpers import REPO
from tests.helpers.faults import Boom, default_sigint

SCRIPT = REPO / "scripts" / "create_dataset.py"
FAST = dict(frames=256, cf_factors=8, cf_epochs=3, workers=2)
FAST_CLI = ("--frames", "256", "--cf-factors", "8", "--cf-epochs", "3", "--workers", "2")


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          cwd=REPO, **kw)


def _script_main():
    """scripts/create_dataset.py's main(), loaded in-process (fast: no interpreter start)."""
    spec = importlib.util.spec_from_file_location("create_dataset_script", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


def _fingerprint(directory: Path) -> dict[str, str]:
    """name -> sha256 of every file in `directory`: equal fingerprints, same dataset."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.iterdir())}


def _one_error_line(stderr: str) -> str:
    """The last stderr line, checked to be the one-line error (progress bars may precede)."""
    assert "Traceback" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    return last


def _no_leftovers(out: Path) -> None:
    """Nothing of a run is left beside `out`: no temporary directory, no lock file."""
    assert not list(out.parent.glob(f".{out.name}.*")), list(out.parent.glob(f".{out.name}*"))


@pytest.fixture
def finished(make_melon, tmp_path) -> tuple[Path, Path, dict[str, str]]:
    """A Melon directory, a finished dataset built from it, and the dataset's fingerprint."""
    root, _ = make_melon()
    out = tmp_path / "dataset"
    create_dataset(DatasetArgs(str(root), str(out), **FAST))
    return root, out, _fingerprint(out)


class TestRule1NeverExitZeroOnEmptyOrWrong:
    def test_frames_longer_than_every_mel_is_an_error_not_an_empty_dataset(self, make_melon,
                                                                           tmp_path):
        root, _ = make_melon()  # mels of 300 frames
        out = tmp_path / "ds"
        r = _cli("--melon-dir", str(root), "--out-dir", str(out), "--cf-factors", "8",
                 "--cf-epochs", "3", "--frames", "5000")
        assert r.returncode == 2, r.stderr
        line = _one_error_line(r.stderr)
        assert line.startswith("create_dataset: error: train split: none of its")
        assert "too_short" in line and "shorter than --frames 5000" in line
        assert not out.exists()
        _no_leftovers(out)

    @pytest.mark.parametrize("dtype, value", [("float32", 1e39), ("float16", 7e4)])
    def test_values_that_overflow_the_output_dtype_are_skipped(self, make_melon, tmp_path,
                                                              dtype, value):
        root, _ = make_melon()
        meta = json.loads((root / "song_meta.json").read_text())
        victim = meta[3]["id"]
        mel = np.load(mel_path(root, victim)).astype(np.float64)  # (48, T), fits float64
        mel[5, 10] = value
        np.save(mel_path(root, victim), mel)
        out = tmp_path / "ds"
        manifest = create_dataset(DatasetArgs(str(root), str(out), dtype=dtype, **FAST))
        report = json.loads((out / "skipped.json").read_text())
        reasons = {t["id"]: t["reason"] for t in report["tracks"]}
        assert reasons[victim] == "overflows_dtype"
        assert manifest["skipped_by_reason"]["overflows_dtype"] == 1
        for split in ("train", "val", "test"):
            with h5py.File(out / f"{split}.h5", "r") as f:
                assert victim not in f["dataset/id"][:, 0]
                assert np.isfinite(f["dataset/data"][:]).all(), split


class TestRule2NeverLoseUserData:
    def test_overwrite_with_broken_song_meta_keeps_the_finished_dataset(self, finished):
        root, out, before = finished
        (root / "song_meta.json").write_text('[{"id": 1,')
        r = _cli("--melon-dir", str(root), "--out-dir", str(out), "--overwrite", *FAST_CLI)
        assert r.returncode == 2
        assert "song_meta.json: not valid JSON" in _one_error_line(r.stderr)
        assert _fingerprint(out) == before
        _no_leftovers(out)

    def test_overwrite_failing_late_keeps_the_finished_dataset(self, finished):
        root, out, before = finished  # fails only after CF, while writing the splits
        with pytest.raises(DatasetError, match="train split: none of its"):
            create_dataset(DatasetArgs(str(root), str(out), overwrite=True,
                                       **(FAST | dict(frames=5000))))
        assert _fingerprint(out) == before
        _no_leftovers(out)

    def test_overwrite_replaces_the_dataset_and_leaves_nothing_beside_it(self, finished):
        root, out, before = finished
        (out / "embedding_matrix_64.npy").write_bytes(b"")  # derived from the old dataset
        create_dataset(DatasetArgs(str(root), str(out), overwrite=True, **(FAST | dict(seed=5))))
        after = _fingerprint(out)
        assert set(after) == set(before) - {"embedding_matrix_128.npy"}
        assert after["splits.json"] != before["splits.json"]  # another split seed
        _no_leftovers(out)

    def test_a_second_run_into_a_locked_output_fails_in_one_line(self, finished):
        root, out, before = finished
        with output_lock(out):  # a first run in progress
            r = _cli("--melon-dir", str(root), "--out-dir", str(out), "--overwrite", *FAST_CLI)
        assert r.returncode == 2
        line = _one_error_line(r.stderr)
        assert line.startswith("create_dataset: error: ") and "another run is writing it" in line
        assert _fingerprint(out) == before
        _no_leftovers(out)  # the lock file went with the first run

    def test_what_a_killed_swap_left_is_repaired(self, finished):
        root, out, before = finished
        # A run killed between the two renames of the swap: the old dataset is aside,
        # nothing under the output name, and a half-built directory beside it.
        os.rename(out, out.parent / f".{out.name}.x1.old")
        (out.parent / f".{out.name}.x2.tmpdir").mkdir()
        (out.parent / f".{out.name}.x2.tmpdir" / "train.h5").write_text("partial")
        with pytest.raises(DatasetError, match="already holds a finished dataset"):
            create_dataset(DatasetArgs(str(root), str(out), **FAST))
        assert _fingerprint(out) == before
        _no_leftovers(out)

    def test_files_that_are_not_a_datasets_are_never_replaced(self, finished):
        root, out, before = finished
        (out / "embedding_matrix_64.npy").write_bytes(b"")  # train_genre_w2v.py --dim 64: ours
        (out / "my_notes.txt").write_text("mine")
        with pytest.raises(DatasetError, match="not part of a dataset \\(my_notes.txt\\)"):
            create_dataset(DatasetArgs(str(root), str(out), overwrite=True, **FAST))
        assert (out / "my_notes.txt").read_text() == "mine"


class TestRule3OneLineExit2:
    @pytest.mark.parametrize("flag, value", [
        ("--test-size", "1.5"), ("--test-size", "0"), ("--val-size", "0"),
        ("--val-size", "nan"), ("--cf-factors", "0"), ("--cf-epochs", "0"),
        ("--cf-learning-rate", "-0.1"), ("--workers", "-2"), ("--workers", "0"),
        ("--frames", "0"), ("--frames", "-300"), ("--seed", "-1"), ("--cf-seed", "-1"),
    ])
    def test_bad_argument_is_refused_before_any_work(self, finished, capsys, flag, value):
        root, out, before = finished
        main = _script_main()
        code = main(["--melon-dir", str(root), "--out-dir", str(out), "--overwrite",
                     *FAST_CLI, flag, value])
        err = capsys.readouterr().err
        assert code == 2
        assert err.count("\n") == 1 and err.startswith(f"create_dataset: error: {flag} must be"), err
        assert "metadata" not in err  # no work started
        assert _fingerprint(out) == before

    def test_missing_melon_dir_is_one_line(self, tmp_path, capsys):
        code = _script_main()(["--melon-dir", str(tmp_path / "nope"),
                               "--out-dir", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "Melon directory not found" in err
        assert not (tmp_path / "o").exists()

    def test_ctrl_c_that_a_library_turned_into_its_own_error_is_still_ctrl_c(self):
        """h5py's type conversion, interrupted in a logging callback, raises TypeError from
        the KeyboardInterrupt (seen once in the Ctrl-C test below): after Ctrl-C, the guard
        re-raises any error as KeyboardInterrupt, so the run still exits 130. Without
        Ctrl-C, errors pass through unchanged."""
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as a terminal run
        try:
            guard = InterruptGuard()
            with pytest.raises(KeyboardInterrupt) as got:
                with guard.installed():
                    try:
                        os.kill(os.getpid(), signal.SIGINT)  # the guard's handler raises here
                        time.sleep(5)
                    except KeyboardInterrupt:
                        raise TypeError("Operation not defined for data type class") from None
            assert isinstance(got.value.__cause__, TypeError)
            with pytest.raises(TypeError):
                with guard.installed():
                    raise TypeError("a real error, no Ctrl-C")
            assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
        finally:
            signal.signal(signal.SIGINT, previous)

    def test_ctrl_c_mid_run_is_one_line_exit_130_and_keeps_the_old_dataset(
            self, toy_melon, tiny_dataset, tmp_path):
        out = tmp_path / "ds"
        shutil.copytree(tiny_dataset, out)  # a finished dataset the rerun must not lose
        before = _fingerprint(out)
        p = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--melon-dir", str(toy_melon[0]), "--out-dir", str(out),
             "--overwrite", "--frames", "256", "--cf-factors", "8", "--cf-epochs", "3",
             "--workers", "1", "--dtype", "float16"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=default_sigint)
        partial = f".{out.name}.*.tmpdir/.train.h5.tmp"
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(partial)) and p.poll() is None:
            assert time.monotonic() < deadline, "the run never started writing train.h5"
            time.sleep(0.002)
        # Freeze it mid-write, so the interrupt lands there however fast the machine is.
        p.send_signal(signal.SIGSTOP)
        assert list(tmp_path.glob(partial)), "the run finished train.h5 before the test saw it"
        p.send_signal(signal.SIGINT)
        p.send_signal(signal.SIGCONT)
        _, err = p.communicate(timeout=60)
        assert p.returncode == 130, err
        line = _one_error_line(err)
        assert line.startswith("create_dataset: interrupted: ") and "unchanged" in line
        assert _fingerprint(out) == before
        _no_leftovers(out)


class TestRule4MessagesNameTheCause:
    def test_missing_mel_directory_is_named(self, make_melon, tmp_path, capsys):
        root, _ = make_melon()
        shutil.rmtree(root / "arena_mel")
        code = _script_main()(["--melon-dir", str(root), "--out-dir", str(tmp_path / "o"),
                               *FAST_CLI])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1
        assert "arena_mel: mel directory not found" in err and "mels" in err

    def test_too_few_usable_tracks_names_the_skip_reasons(self, make_melon, tmp_path):
        root, _ = make_melon()
        for p in (root / "arena_mel").rglob("*.npy"):
            p.unlink()
        with pytest.raises(DatasetError, match=r"only 0 usable tracks of 80 in song_meta.json "
                                               r"\(80 mel_missing\)"):
            create_dataset(DatasetArgs(str(root), str(tmp_path / "o"), **FAST))

    def test_playlist_songs_not_in_song_meta_are_reported(self, make_melon, tmp_path):
        root, _ = make_melon()
        playlists = json.loads((root / "train.json").read_text())
        playlists[0]["songs"] += [900001, 900002]
        playlists[1]["songs"] += [900001]
        playlists[2]["songs"] = [900003]  # nothing usable left in it
        (root / "train.json").write_text(json.dumps(playlists))
        out = tmp_path / "ds"
        manifest = create_dataset(DatasetArgs(str(root), str(out), **FAST))
        report = json.loads((out / "skipped.json").read_text())
        assert report["playlist_songs_not_in_meta"] == {
            "count": 3, "occurrences": 4, "ids": [900001, 900002, 900003]}
        assert {"id": playlists[2]["id"], "reason": "no_song_in_meta"} in report["playlists"]
        assert manifest["counts"]["playlist_songs_not_in_meta"] == 3


class TestRule6NoPickle:
    def test_a_pickled_mel_is_skipped_unread(self, make_melon, tmp_path):
        root, _ = make_melon()
        victim = json.loads((root / "song_meta.json").read_text())[4]["id"]
        marker = tmp_path / "executed"
        np.save(mel_path(root, victim), np.array([Boom(str(marker))], dtype=object),
                allow_pickle=True)
        out = tmp_path / "ds"
        create_dataset(DatasetArgs(str(root), str(out), **FAST))
        reasons = {t["id"]: t["reason"] for t in
                   json.loads((out / "skipped.json").read_text())["tracks"]}
        assert reasons[victim] == "mel_unreadable"
        assert not marker.exists()
