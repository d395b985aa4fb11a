"""Fault tests of evaluate.py, grouped by the rule of issue #9 they check."""

from __future__ import annotations

import json
import pickle
import runpy
from pathlib import Path

import numpy as np
import pytest

from musicrep.evaluation.data import load_eval_data

from tests.helpers import REPO
from tests.helpers.evaluation import make_eval_dataset


def _main():
    return runpy.run_path(str(REPO / "evaluate.py"))["main"]


def _one_error_line(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1, err
    assert err[0].startswith("evaluate.py: error:") and "Traceback" not in err[0]
    return err[0]


def _good_npz(ds: Path, path: Path) -> Path:
    data = load_eval_data(ds)
    ids = np.concatenate([data.ids[s] for s in ("train", "val", "test")])
    emb = np.random.default_rng(0).normal(size=(len(ids), 8)).astype(np.float32)
    with open(path, "wb") as f:
        np.savez(f, ids=ids, embeddings=emb)
    return path


class TestRule1NeverExitZeroOnEmptyOrWrong:
    def test_test_split_not_larger_than_k_gives_no_continuation_numbers(self, tmp_path,
                                                                         capsys) -> None:
        """12 test tracks <= k=100: any ranking would get recall@100 = 1.0. The columns
        stay empty, a warning names k and the candidate count, the report says why."""
        ds = make_eval_dataset(tmp_path / "ds", n_test=12)
        npz = _good_npz(ds, tmp_path / "e.npz")
        out = tmp_path / "r"
        rc = _main()(["--dataset", str(ds), "--embeddings", f"x={npz}", "--out", str(out),
                      "--quiet"])
        captured = capsys.readouterr()
        assert rc == 0
        assert "12 candidate tracks" in captured.err and "k=100" in captured.err
        result = json.loads((out / "results.json").read_text())
        for row in result["rows"]:
            assert row["recall@100"] is None and row["vote_recall@100"] is None, row
        assert [r["model"] for r in result["rows"]] == ["x"]  # no popularity row either
        assert "continuation not scored" in (out / "results.md").read_text()
        assert "continuation not scored" in captured.out
        assert result["settings"]["test_candidates"] == 12


class TestRule2NeverLoseUserData:
    def test_failed_evaluation_keeps_previous_results(self, tmp_path, capsys) -> None:
        ds = make_eval_dataset(tmp_path / "ds")
        out = tmp_path / "r"
        out.mkdir()
        (out / "results.md").write_text("previous")
        bad = tmp_path / "bad.npz"
        bad.write_text("not an npz")
        rc = _main()(["--dataset", str(ds), "--embeddings", f"x={bad}", "--out", str(out),
                      "--quiet"])
        assert rc == 2 and (out / "results.md").read_text() == "previous"
        capsys.readouterr()


class TestRule3OneLineExit2:
    @pytest.mark.parametrize("kind", ["pickled", "text", "npy", "wrong_shape", "object",
                                      "no_ids", "nan"])
    def test_bad_embedding_file(self, kind, tmp_path, capsys) -> None:
        ds = make_eval_dataset(tmp_path / "ds")
        path = tmp_path / f"{kind}.npz"
        ids = np.arange(140)
        if kind == "pickled":
            path.write_bytes(pickle.dumps({"ids": ids, "embeddings": np.zeros((140, 4))}))
        elif kind == "text":
            path.write_text("0 0.1 0.2\n1 0.3 0.4\n")
        elif kind == "npy":
            np.save(open(path, "wb"), np.zeros((140, 4)))
        elif kind == "wrong_shape":
            np.savez(open(path, "wb"), ids=ids, embeddings=np.zeros((139, 4)))
        elif kind == "object":
            np.savez(open(path, "wb"), ids=ids,
                     embeddings=np.array([np.zeros(4)] * 140 + [None], dtype=object)[:140])
        elif kind == "no_ids":
            np.savez(open(path, "wb"), embeddings=np.zeros((140, 4)))
        elif kind == "nan":
            e = np.zeros((140, 4))
            e[3, 1] = np.nan
            np.savez(open(path, "wb"), ids=ids, embeddings=e)
        rc = _main()(["--dataset", str(ds), "--embeddings", f"x={path}", "--out",
                      str(tmp_path / "r"), "--quiet"])
        line = _one_error_line(capsys)
        assert rc == 2 and path.name in line

    def test_out_not_writable_is_refused_before_the_work(self, tmp_path, capsys) -> None:
        ds = make_eval_dataset(tmp_path / "ds")
        blocker = tmp_path / "file"
        blocker.write_text("x")
        # A file where the output directory should be: refused at once, even though the
        # embedding file (which would be read first by the work) does not exist.
        rc = _main()(["--dataset", str(ds), "--embeddings", f"x={tmp_path / 'missing.npz'}",
                      "--out", str(blocker / "sub"), "--quiet"])
        line = _one_error_line(capsys)
        assert rc == 2 and "not writable" in line and "file" in line


class TestRule4MessagesNameTheCause:
    def test_pickle_is_called_a_pickle(self, tmp_path, capsys) -> None:
        ds = make_eval_dataset(tmp_path / "ds")
        path = tmp_path / "p.npz"
        path.write_bytes(pickle.dumps([1, 2, 3]))
        _main()(["--dataset", str(ds), "--embeddings", f"x={path}", "--quiet",
                 "--out", str(tmp_path / "r")])
        assert "pickled" in _one_error_line(capsys)


class TestRule6NoPickle:
    def test_pickled_npz_payload_is_never_executed(self, tmp_path, capsys) -> None:
        """An .npz whose member is a pickled object array: refused without unpickling."""
        ds = make_eval_dataset(tmp_path / "ds")
        marker = tmp_path / "executed"

        class Evil:
            def __reduce__(self):
                return (Path.touch, (marker,))

        arr = np.empty(1, dtype=object)
        arr[0] = Evil()
        path = tmp_path / "evil.npz"
        np.savez(open(path, "wb"), ids=np.arange(140), embeddings=arr)
        rc = _main()(["--dataset", str(ds), "--embeddings", f"x={path}", "--quiet",
                      "--out", str(tmp_path / "r")])
        assert rc == 2 and not marker.exists()
        _one_error_line(capsys)
