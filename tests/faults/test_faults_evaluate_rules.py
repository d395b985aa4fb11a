"""Fault tests of evaluate.py and explore.py through their command lines, one class per
rule: inputs are never an output, bounded parallelism, one writer and one run per
output folder, one line for every bad input, row names that cannot collide, small
collections, and explorer labels that fit."""

from __future__ import annotations

import json
import os
import re
import resource
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from musicrep.evaluation.data import load_eval_data
from musicrep.io import output_lock
from musicrep.model.audio_cnn import AudioEncoder
from tests.helpers import REPO
from tests.helpers.evaluation import make_eval_dataset
from tests.helpers.faults import default_sigint
from tests.helpers.synth import write_synthetic_dataset

ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}


def _evaluate(*args) -> int:
    return runpy.run_path(str(REPO / "evaluate.py"))["main"]([*map(str, args), "--quiet"])


def _explore(*args) -> int:
    # One OpenMP thread: in-process, torch's and scikit-learn's OpenMP pools both spin,
    # and t-SNE on a busy 2-core machine takes ten times as long.
    with threadpool_limits(1):
        return runpy.run_path(str(REPO / "explore.py"))["main"]([*map(str, args), "--quiet"])


def _error_line(text: str, prog: str = "evaluate.py") -> str:
    """The one line of stderr that is not a note: the error, never a traceback."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("note:")]
    assert len(lines) == 1 and "Traceback" not in text, text
    assert lines[0].startswith(f"{prog}: "), lines[0]
    return lines[0]


def _disk_full_past_4kb() -> None:
    """Popen preexec_fn: writes past 4 kB fail with EFBIG (not a signal), as on a full disk."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


def _npz(path: Path, **arrays) -> Path:
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def _all_ids(ds: Path) -> np.ndarray:
    data = load_eval_data(ds)
    return np.concatenate([data.ids[s] for s in ("train", "val", "test")])


def _interrupt_while_locked(p: subprocess.Popen, lock: Path) -> str:
    """Ctrl-C `p` while it holds `lock` (the work runs under it); its stderr.

    Frozen while it holds the lock, so the interrupt lands mid-run however fast the
    machine is.
    """
    deadline = time.monotonic() + 120
    while not lock.exists() and p.poll() is None:
        assert time.monotonic() < deadline, "the run never took its lock"
        time.sleep(0.002)
    p.send_signal(signal.SIGSTOP)
    assert lock.exists(), "the run finished before the test saw it"
    p.send_signal(signal.SIGINT)
    p.send_signal(signal.SIGCONT)
    _, err = p.communicate(timeout=120)
    return err


def _beside(folder: Path) -> list[str]:
    """What a run left beside an output folder: its lock, builds, previous versions."""
    return sorted(p.name for p in folder.parent.glob(f".{folder.name}.*"))


def _fingerprint(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Path:
    """A 16/4/120 dataset with every side file (read only: tests must not change it)."""
    return make_eval_dataset(tmp_path_factory.mktemp("eval") / "ds")


@pytest.fixture(scope="module")
def emb(ds) -> Path:
    ids = _all_ids(ds)
    vec = np.random.default_rng(0).normal(size=(len(ids), 8)).astype(np.float32)
    return _npz(ds.parent / "emb.npz", ids=ids, embeddings=vec)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A random width-0.125 encoder in a run folder named "alpha", as training exports it."""
    d = tmp_path_factory.mktemp("runs") / "alpha"
    d.mkdir()
    torch.manual_seed(0)
    torch.save(AudioEncoder(width=0.125).state_dict(), d / "audio_encoder.pt")
    (d / "config.json").write_text(json.dumps({"input_layout": "transpose"}))
    return d


@pytest.fixture
def results(ds, emb, tmp_path) -> Path:
    """An output folder holding a finished evaluation."""
    out = tmp_path / "r"
    assert _evaluate("--dataset", ds, "--embeddings", f"x={emb}", "--out", out) == 0
    return out


class TestRule1InputsAreNeverTheOutput:
    @pytest.mark.parametrize("which", ["dataset", "dataset_parent", "npz", "run_folder"])
    def test_evaluate_refuses_an_out_that_is_or_holds_an_input(self, which, ds, emb, model,
                                                               capsys):
        out = {"dataset": ds, "dataset_parent": ds.parent, "npz": emb,
               "run_folder": model}[which]
        before = _fingerprint(out) if out.is_dir() else out.read_bytes()
        rc = _evaluate("--dataset", ds, "--embeddings", f"x={emb}", "--models", model,
                       "--out", out)
        line = _error_line(capsys.readouterr().err)
        assert rc == 2 and f"--out {out}" in line and "input" in line
        assert (_fingerprint(out) if out.is_dir() else out.read_bytes()) == before
        assert not _beside(out)

    def test_explore_refuses_an_out_that_is_an_input(self, ds, emb, tmp_path, capsys):
        for out in (emb, ds):
            rc = _explore("--embeddings", emb, "--dataset", ds, "--out", out)
            line = _error_line(capsys.readouterr().err, "explore.py")
            assert rc == 2 and f"--out {out}: is the input" in line
        page = tmp_path / "index.html"
        _npz(page, ids=_all_ids(ds), embeddings=np.ones((140, 2), np.float32))
        rc = _explore("--embeddings", page, "--out", tmp_path)  # would replace index.html
        assert rc == 2 and "holds the input" in _error_line(capsys.readouterr().err,
                                                            "explore.py")


class TestRule2BoundedParallelism:
    @pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux CPU affinity")
    def test_probe_jobs_is_capped_at_the_usable_cpus(self, ds, emb, tmp_path, capsys):
        previous = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(previous)})  # as `taskset -c N` would run it
        try:
            rc = _evaluate("--dataset", ds, "--embeddings", f"x={emb}", "--out",
                           tmp_path / "r", "--probe-jobs", "64")
        finally:
            os.sched_setaffinity(0, previous)
        err = capsys.readouterr().err
        assert rc == 0, err
        assert "note: --probe-jobs 64: using 1 (1 usable CPUs)" in err

    def test_probe_jobs_is_capped_at_the_labels(self, tmp_path, capsys):
        """One label to fit (one major genre, no tags): a second worker would idle."""
        if len(os.sched_getaffinity(0)) < 2:
            pytest.skip("needs 2 usable CPUs to tell the label cap from the CPU cap")
        ds = make_eval_dataset(tmp_path / "ds")
        codes = ["GN0100"] + [f"GN02{i:02d}" for i in range(1, 8)]  # GN0200 is not one
        (ds / "genres.json").write_text(json.dumps(
            {"codes": codes, "major": [c == "GN0100" for c in codes]}))
        (ds / "track_tags.json").unlink()
        ids = _all_ids(ds)
        npz = _npz(tmp_path / "e.npz", ids=ids,
                   embeddings=np.random.default_rng(0).normal(size=(len(ids), 4)))
        rc = _evaluate("--dataset", ds, "--embeddings", f"x={npz}", "--out", tmp_path / "r",
                       "--probe-jobs", "64")
        err = capsys.readouterr().err
        assert rc == 0, err
        assert "note: --probe-jobs 64: using 1 (1 work items)" in err
        row = json.loads((tmp_path / "r" / "results.json").read_text())["rows"][0]
        assert isinstance(row["genre_roc_auc"], float)  # the one label was scored


class TestRule3OneRunPerOutputFolder:
    def test_a_rerun_leaves_no_file_of_the_earlier_run_and_keeps_the_users(
            self, ds, emb, tmp_path, capsys):
        out = tmp_path / "r"
        assert _evaluate("--dataset", ds, "--embeddings", f"x={emb}", "--out", out,
                         "--per-item") == 0
        assert (out / "items.npz").is_file() and (out / "bars_continuation.png").is_file()
        (out / "study").mkdir()  # what the user keeps there, as reports/ holds the study
        (out / "study" / "table.md").write_text("the user's")
        (out / "reading.md").write_text("notes")
        (out / "link").symlink_to("study")
        # 12 test tracks: no continuation this time, so no bars_continuation*.png
        small = make_eval_dataset(tmp_path / "small", n_test=12)
        ids = _all_ids(small)
        npz = _npz(tmp_path / "s.npz", ids=ids, embeddings=np.ones((len(ids), 4), np.float32)
                   + np.arange(len(ids))[:, None])
        assert _evaluate("--dataset", small, "--embeddings", f"y={npz}", "--out", out) == 0
        capsys.readouterr()
        names = sorted(p.name for p in out.iterdir())
        assert names == ["bars_genre.png", "bars_tagging.png", "embedding_maps.png", "link",
                         "reading.md", "results.csv", "results.json", "results.md", "study"]
        assert (out / "study" / "table.md").read_text() == "the user's"
        assert os.readlink(out / "link") == "study"
        assert [r["model"] for r in json.loads((out / "results.json").read_text())["rows"]] \
            == ["y"]
        assert not _beside(out)

    def test_a_second_run_into_a_locked_folder_fails_at_once(self, ds, emb, results, capsys):
        before = _fingerprint(results)
        with output_lock(results.resolve()):  # another evaluate.py writing it
            t0 = time.monotonic()
            rc = _evaluate("--dataset", ds, "--embeddings", f"x={emb}", "--out", results)
        line = _error_line(capsys.readouterr().err)
        assert rc == 2 and "another run is writing it" in line and time.monotonic() - t0 < 30
        assert _fingerprint(results) == before
        with output_lock(results.resolve() / "page"):
            rc = _explore("--embeddings", emb, "--out", results / "page")
        assert rc == 2 and "another run" in _error_line(capsys.readouterr().err, "explore.py")

    def test_what_a_killed_run_left_beside_the_folder_is_removed(self, ds, emb, results,
                                                                 capsys):
        stale = results.parent / f".{results.name}.abc123.tmpdir"
        stale.mkdir()
        (stale / "results.json").write_text("{}")
        assert _evaluate("--dataset", ds, "--embeddings", f"x={emb}", "--out", results) == 0
        capsys.readouterr()
        assert not stale.exists() and not _beside(results)

    def test_disk_full_is_one_line_naming_the_file_and_keeps_the_earlier_results(
            self, ds, emb, results):
        before = _fingerprint(results)

        r = subprocess.run([sys.executable, str(REPO / "evaluate.py"), "--dataset", str(ds),
                            "--embeddings", f"x={emb}", "--out", str(results), "--quiet"],
                           capture_output=True, text=True, env=ENV, timeout=300,
                           preexec_fn=_disk_full_past_4kb, check=False)
        line = _error_line(r.stderr)
        assert r.returncode == 1, r.stderr
        assert re.fullmatch(rf"evaluate\.py: error: {re.escape(str(results))}/\S+\.png: "
                            rf"File too large; {re.escape(str(results))} is as it was", line)
        assert _fingerprint(results) == before and not _beside(results)

    def test_explore_disk_full_is_one_line_and_keeps_the_earlier_page(self, tmp_path):
        paths = np.array([f"/music/{g}/{i}.wav" for i, g in enumerate("aabbb")])
        npz = _npz(tmp_path / "p.npz", paths=paths,
                   embeddings=np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32))
        out = tmp_path / "page"
        out.mkdir()
        (out / "index.html").write_text("the earlier page")

        r = subprocess.run([sys.executable, str(REPO / "explore.py"), "--embeddings", str(npz),
                            "--out", str(out), "--quiet"], capture_output=True, text=True,
                           env=ENV, timeout=300, preexec_fn=_disk_full_past_4kb, check=False)
        line = _error_line(r.stderr, "explore.py")
        assert r.returncode == 1 and line.endswith(f"{out / 'index.html'}: File too large")
        assert [p.name for p in out.iterdir()] == ["index.html"]
        assert (out / "index.html").read_text() == "the earlier page"

    def test_ctrl_c_is_one_line_exit_130_and_keeps_the_earlier_results(self, ds, emb,
                                                                        results):
        before = _fingerprint(results)
        p = subprocess.Popen([sys.executable, str(REPO / "evaluate.py"), "--dataset", str(ds),
                              "--embeddings", f"x={emb}", "--out", str(results), "--quiet"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                             preexec_fn=default_sigint)
        err = _interrupt_while_locked(p, results.parent / f".{results.name}.lock")
        assert p.returncode == 130, err
        assert _error_line(err) == f"evaluate.py: interrupted; {results} is as it was"
        assert _fingerprint(results) == before and not _beside(results)


    def test_explore_ctrl_c_is_one_line_exit_130_and_keeps_the_earlier_page(self, ds, emb,
                                                                            tmp_path):
        out = tmp_path / "page"
        out.mkdir()
        (out / "index.html").write_text("the earlier page")
        p = subprocess.Popen([sys.executable, str(REPO / "explore.py"), "--embeddings",
                              str(emb), "--dataset", str(ds), "--out", str(out), "--quiet"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                             preexec_fn=default_sigint)
        err = _interrupt_while_locked(p, tmp_path / ".page.lock")
        assert p.returncode == 130, err
        assert _error_line(err, "explore.py") == "explore.py: interrupted; nothing written"
        assert [q.name for q in out.iterdir()] == ["index.html"]
        assert (out / "index.html").read_text() == "the earlier page"


class TestRule4OneLineForBadInput:
    @pytest.mark.parametrize("kind", ["float_ids", "int_embeddings", "one_d", "lengths",
                                      "truncated", "compressed_damaged"])
    def test_embedding_files_that_disagree_with_themselves(self, kind, ds, emb, tmp_path,
                                                           capsys):
        ids = _all_ids(ds)
        path = tmp_path / f"{kind}.npz"
        if kind == "float_ids":
            _npz(path, ids=ids.astype(float), embeddings=np.ones((len(ids), 4), np.float32))
        elif kind == "int_embeddings":
            _npz(path, ids=ids, embeddings=np.ones((len(ids), 4), np.int32))
        elif kind == "one_d":
            _npz(path, ids=ids, embeddings=np.ones(len(ids), np.float32))
        elif kind == "lengths":
            _npz(path, ids=ids[:-5], embeddings=np.ones((len(ids), 4), np.float32))
        elif kind == "truncated":
            path.write_bytes(emb.read_bytes()[: emb.stat().st_size // 2])
        else:  # a compressed member whose bytes were damaged: zlib's own error type
            np.savez_compressed(path, ids=ids,
                                embeddings=np.random.default_rng(0).normal(size=(140, 64)))
            raw = bytearray(path.read_bytes())
            start = raw.index(b"embeddings.npy") + 200
            raw[start:start + 400] = bytes(400)
            path.write_bytes(bytes(raw))
        rc = _evaluate("--dataset", ds, "--embeddings", f"x={path}", "--out", tmp_path / "r")
        line = _error_line(capsys.readouterr().err)
        assert rc == 2 and f"{path.name}:" in line
        rc = _explore("--embeddings", path, "--dataset", ds, "--out", tmp_path / "page")
        line = _error_line(capsys.readouterr().err, "explore.py")
        assert rc == 2 and f"{path.name}:" in line
        assert not (tmp_path / "r").exists() and not (tmp_path / "page").exists()

    @pytest.mark.parametrize("bad", ["device", "missing", "garbage", "config_list"])
    def test_model_inputs(self, bad, ds, model, tmp_path, capsys):
        ckpt, device, names = model, "cpu", bad
        if bad == "device":
            device, names = "bogus", "--device bogus"
        elif bad == "missing":
            ckpt, names = tmp_path / "gone.pt", "gone.pt"
        elif bad == "garbage":
            (tmp_path / "junk").mkdir()
            ckpt = tmp_path / "junk" / "audio_encoder.pt"
            ckpt.write_bytes(b"\x00garbage" * 64)
            names = "audio_encoder.pt"
        else:
            (tmp_path / "listcfg").mkdir()
            ckpt = tmp_path / "listcfg" / "audio_encoder.pt"
            ckpt.write_bytes((model / "audio_encoder.pt").read_bytes())
            (ckpt.parent / "config.json").write_text("[1, 2]")
            names = "config.json"
        rc = _evaluate("--dataset", ds, "--models", ckpt, "--device", device,
                       "--out", tmp_path / "r")
        line = _error_line(capsys.readouterr().err)
        assert rc == 2 and names in line
        rc = _explore("--checkpoint", ckpt, "--dataset", ds, "--device", device,
                      "--out", tmp_path / "page")
        line = _error_line(capsys.readouterr().err, "explore.py")
        assert rc == 2 and names in line
        assert not (tmp_path / "r").exists() and not (tmp_path / "page").exists()

    @pytest.mark.parametrize("content", ['[{"rows": []}]', '{"rows": {}, "checkpoints": []}',
                                         '{"rows": [{"model": ["a"]}], "checkpoints": {}}'])
    def test_best_of_results_of_the_wrong_shape(self, content, ds, tmp_path, capsys):
        res = tmp_path / "results.json"
        res.write_text(content)
        rc = _explore("--best-of", res, "--dataset", ds, "--out", tmp_path / "page")
        line = _error_line(capsys.readouterr().err, "explore.py")
        assert rc == 2 and f"--best-of {res}" in line

    @pytest.mark.parametrize("name, content", [
        ("truth", '[0.1, 0.2]'),
        ("truth", '{"song_mood": {"0": 1}}'),
        ("truth", '{"song_mood": ["calm"]}'),
        ("continuation.json", '{"playlists": {"id": 0}}'),
        ("continuation.json", '{"playlists": [{"known": "0 1", "held_out": [20]}]}'),
        ("track_tags.json", '{"tags": ["a"], "tracks": [[0]]}'),
        ("popularity.json", '[1, 2, 3]'),
        ("manifest.json", '["not", "a", "manifest"]'),
        ("genres.json", '{"codes": "GN0100"}'),
    ])
    def test_side_files_of_the_wrong_shape(self, name, content, emb, tmp_path, capsys):
        ds = make_eval_dataset(tmp_path / "ds")
        extra = []
        if name == "truth":
            path = tmp_path / "generated_truth.json"
            extra = ["--truth", path]
        else:
            path = ds / name
        path.write_text(content)
        rc = _evaluate("--dataset", ds, "--embeddings", f"x={emb}", "--out", tmp_path / "r",
                       *extra)
        line = _error_line(capsys.readouterr().err)
        assert rc == 2 and f"{path}:" in line

    def test_a_missing_dataset_says_to_create_it(self, emb, model, tmp_path, capsys):
        nowhere = tmp_path / "data" / "dataset"
        for prog, run in (
                ("evaluate.py", lambda: _evaluate("--dataset", nowhere, "--embeddings",
                                                  f"x={emb}", "--out", tmp_path / "r")),
                ("explore.py", lambda: _explore("--checkpoint", model, "--dataset", nowhere,
                                                "--out", tmp_path / "page"))):
            assert run() == 2
            line = _error_line(capsys.readouterr().err, prog)
            assert line == (f"{prog}: error: {nowhere}: no dataset here (train.h5, val.h5, "
                            "test.h5, genres.json); run create_dataset first")


class TestRule5NamesCannotCollide:
    @pytest.mark.parametrize("case", ["popularity", "random-init", "twice", "model_and_set",
                                      "two_models", "names_reserved"])
    def test_colliding_names_are_refused(self, case, ds, emb, model, tmp_path, capsys):
        other = tmp_path / "elsewhere" / "alpha"  # a second run folder named alpha
        other.mkdir(parents=True)
        (other / "audio_encoder.pt").write_bytes((model / "audio_encoder.pt").read_bytes())
        args = {"popularity": ["--embeddings", f"popularity={emb}"],
                "random-init": ["--embeddings", f"random-init={emb}"],
                "twice": ["--embeddings", f"x={emb}", f"x={emb}"],
                "model_and_set": ["--models", model, "--embeddings", f"alpha={emb}"],
                "two_models": ["--models", model, other],
                "names_reserved": ["--models", model, "--names", "popularity"]}[case]
        rc = _evaluate("--dataset", ds, *args, "--out", tmp_path / "r")
        line = _error_line(capsys.readouterr().err)
        assert rc == 2 and not (tmp_path / "r").exists()
        option = {"two_models": "--models", "names_reserved": "--names"}.get(case, "--embeddings")
        name = {"twice": "x", "model_and_set": "alpha", "two_models": "alpha",
                "names_reserved": "popularity"}.get(case, case)
        assert line.startswith(f"evaluate.py: error: {option}") and f"'{name}'" in line


class TestRule6SmallCollections:
    def test_nothing_scorable_is_exit_1_with_one_line_per_task(self, tmp_path, capsys):
        """30/2/1 tracks: no task can be scored; each says what it would need."""
        ds = write_synthetic_dataset(tmp_path / "ds", n_train=30, n_val=2, n_test=1,
                                     frames=256, n_genres=8)
        (ds / "track_tags.json").write_text(json.dumps(
            {"tags": ["a", "b"], "tracks": {str(i): [i % 2] for i in range(33)}}))
        (ds / "continuation.json").write_text(json.dumps(
            {"playlists": [{"id": 0, "known": [0, 1], "held_out": [32]}]}))
        (ds / "popularity.json").write_text(json.dumps({str(i): 1 for i in range(33)}))
        (ds / "manifest.json").write_text("{}")
        npz = _npz(tmp_path / "e.npz", ids=np.arange(33),
                   embeddings=np.random.default_rng(0).normal(size=(33, 4)).astype(np.float32))
        out = tmp_path / "r"
        out.mkdir()
        (out / "results.md").write_text("earlier")
        rc = _evaluate("--dataset", ds, "--embeddings", f"x={npz}", "--out", out)
        captured = capsys.readouterr()
        assert rc == 1 and "Traceback" not in captured.err and captured.out == ""
        lines = captured.err.strip().splitlines()
        assert [ln.split(":")[2].strip() for ln in lines] == [
            "genre not scored", "tagging not scored", "continuation not scored",
            "continuation_vote not scored"]
        assert all(ln.startswith("evaluate.py: error: ") for ln in lines)
        assert "1 test tracks" in lines[0] and "at least 2 test tracks" in lines[0]
        assert "more than 100 test tracks" in lines[2] and "more than 100" in lines[3]
        assert [p.name for p in out.iterdir()] == ["results.md"]
        assert (out / "results.md").read_text() == "earlier" and not _beside(out)

    def test_some_tasks_scored_is_exit_0_with_one_note_per_unscored_task(self, tmp_path,
                                                                          capsys):
        ds = make_eval_dataset(tmp_path / "ds", n_test=12)
        ids = _all_ids(ds)
        npz = _npz(tmp_path / "e.npz", ids=ids,
                   embeddings=np.random.default_rng(0).normal(size=(len(ids), 4)))
        rc = _evaluate("--dataset", ds, "--embeddings", f"x={npz}", "--out", tmp_path / "r")
        err = capsys.readouterr().err
        assert rc == 0, err
        notes = [ln for ln in err.splitlines() if "not scored" in ln]
        why = ("not scored: the test split has 12 candidate tracks, not more than k=100, so "
               "any ranking (random included) would get recall@100 = 1.0; build a dataset "
               "with more than 100 test tracks")
        assert notes == [f"note: continuation {why}", f"note: continuation_vote {why}"]


class TestRule7ExplorerLabels:
    def test_files_are_shown_below_their_shared_folder(self, tmp_path):
        paths = np.array([f"/home/someone/music/collection/{g}/track {i}.wav"
                          for i, g in enumerate(["jazz", "rock", "jazz", "pop", "rock"])])
        npz = _npz(tmp_path / "p.npz", paths=paths,
                   embeddings=np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32))
        assert _explore("--embeddings", npz, "--out", tmp_path / "page") == 0
        d = _payload(tmp_path / "page" / "index.html")
        assert d["labels"] == ["jazz/track 0.wav", "rock/track 1.wav", "jazz/track 2.wav",
                               "pop/track 3.wav", "rock/track 4.wav"]
        assert d["groups"] == ["jazz", "pop", "rock"] and d["colour_by"] == "folder"

    def test_playlists_are_shown_by_their_titles(self, emb, tmp_path, capsys):
        ds = make_eval_dataset(tmp_path / "ds")
        melon = tmp_path / "melon"
        melon.mkdir()
        playlists = json.loads((ds / "continuation.json").read_text())["playlists"]
        (melon / "train.json").write_text(json.dumps(
            [{"id": p["id"], "plylst_title": f"Rainy day {p['id']}", "songs": [], "tags": []}
             for p in playlists if p["id"] != 3]))  # one playlist without a title
        (ds / "manifest.json").write_text(json.dumps({"source": {"melon_dir": "../melon"}}))
        assert _explore("--embeddings", emb, "--dataset", ds, "--out", tmp_path / "page") == 0
        names = [p["name"] for p in _payload(tmp_path / "page" / "index.html")["playlists"]]
        assert names == ["Rainy day 0", "Rainy day 1", "Rainy day 2", "playlist 3",
                         "Rainy day 4", "Rainy day 5"]
        (ds / "manifest.json").write_text(json.dumps({"source": {"melon_dir": "../gone"}}))
        assert _explore("--embeddings", emb, "--dataset", ds, "--out", tmp_path / "page") == 0
        assert "playlists are shown by id" in capsys.readouterr().err
        names = [p["name"] for p in _payload(tmp_path / "page" / "index.html")["playlists"]]
        assert names == [f"playlist {i}" for i in range(6)]


def _payload(page: Path) -> dict:
    text = page.read_text(encoding="utf-8")
    return json.loads(re.search(r"const D = (\{.*?\});\n", text, re.DOTALL).group(1))
