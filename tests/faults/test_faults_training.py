"""Fault tests of the training scripts (issue #9), grouped by rule.

Each test damages a small synthetic dataset or run directory the way a user or the
machine would, runs a real training script, and checks the rule: a non-zero exit on a
broken result, nothing of the user's lost, one line and exit 2 for bad input, messages
that name the real cause.
"""

from __future__ import annotations

import csv
import os
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from musicrep.training.checkpoint import FORMAT
from musicrep.cli.train import main
from musicrep.errors import ConfigError
from musicrep.training.config import load_config, parse_overrides
from musicrep.io import output_lock
from musicrep.training.distributed import DistContext
from musicrep.training.trainer import Trainer

from tests.helpers import REPO
from tests.helpers.faults import Boom
from tests.helpers.synth import write_synthetic_dataset
from tests.helpers.training import tiny

CFG = {name: str(REPO / "configs" / f"{name}.json") for name in ("contrastive_MF", "contrastive_MF_gnr", "baseline_MF")}


@pytest.fixture
def ds(tmp_path) -> Path:
    return write_synthetic_dataset(tmp_path / "ds", n_train=24, n_val=8, n_test=4, frames=280)


PROGRESS = re.compile(r"\d+%\||it/s\]|s/it\]")  # tqdm's bar shares stderr


def one_line_error(err: str) -> str:
    """The single error line of a script's stderr (progress bars aside); no traceback."""
    lines = [ln for ln in re.split(r"[\r\n]", err) if ln.strip() and not PROGRESS.search(ln)]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    return lines[0]


def run_script(script: str, args: list[str], **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, str(REPO / script), *args], capture_output=True, text=True, env=env,
        cwd=REPO, timeout=300, **kw,
    )


class TestRule1NeverExitZeroOnEmptyOrWrong:
    def test_nan_in_a_validation_track_stops_the_run(self, ds, tmp_path, capsys):
        with h5py.File(ds / "val.h5", "r+") as f:
            f["dataset/data"][3, 100, 5] = np.nan
            bad_id = int(f["dataset/id"][3, 0])
        code = main("single_train.py", [CFG["contrastive_MF"]] + tiny(ds, tmp_path, epochs=2))
        err = capsys.readouterr().err
        assert code != 0
        line = one_line_error(err)
        assert "validation" in line and str(bad_id) in line and "val.h5" in line
        assert "learning_rate" not in line  # the data is the cause, not the optimiser
        assert not (tmp_path / "contrastive_MF" / "best.pt").exists()  # nothing of the epoch saved

    def test_nan_in_training_data_names_the_data(self, ds, tmp_path, capsys):
        with h5py.File(ds / "train.h5", "r+") as f:
            f["dataset/data"][:, 10, 3] = np.nan  # every crop may include it: every track bad
        code = main("single_train.py", [CFG["contrastive_MF"]] + tiny(ds, tmp_path))
        line = one_line_error(capsys.readouterr().err)
        assert code != 0 and "train.h5" in line and "track id" in line and "learning_rate" not in line

    def test_nan_in_one_cf_vector_names_that_track(self, ds, tmp_path, capsys):
        with h5py.File(ds / "train.h5", "r+") as f:
            f["dataset/cf_data"][5, 7] = np.inf
            bad_id = int(f["dataset/id"][5, 0])
        # 3 steps of 8: every training track is in epoch 1
        code = main("single_train.py", [CFG["contrastive_MF"]] + tiny(ds, tmp_path, max_steps_per_epoch=3))
        line = one_line_error(capsys.readouterr().err)
        assert code == 2 and f"track id {bad_id} " in line and "'cf'" in line and "learning_rate" not in line

    def test_divergence_on_finite_data_still_points_at_the_optimiser(self, ds, tmp_path, capsys):
        code = main("single_train.py", [CFG["contrastive_MF"]] + tiny(ds, tmp_path, learning_rate=1e30))
        line = one_line_error(capsys.readouterr().err)
        assert code == 1 and "finite data" in line and "learning_rate" in line


class TestRule2NeverLoseUserData:
    def test_failed_resume_leaves_the_finished_run_untouched(self, ds, tmp_path, capsys):
        assert main("single_train.py", [CFG["contrastive_MF"]] + tiny(ds, tmp_path)) == 0
        run = tmp_path / "contrastive_MF"
        before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
        # The dataset is rebuilt with another CF width, then the run is extended.
        write_synthetic_dataset(ds, n_train=24, n_val=8, n_test=4, frames=280, cf_dim=65)
        capsys.readouterr()
        code = main("single_train.py", [CFG["contrastive_MF"]] + tiny(ds, tmp_path, epochs=2))
        line = one_line_error(capsys.readouterr().err)
        assert code == 2 and "cf_dim" in line
        after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
        assert after == before

    def test_rerun_after_crash_before_first_checkpoint_has_one_row_per_epoch(self, ds, tmp_path):
        run = tmp_path / "contrastive_MF"
        run.mkdir()
        # What a crash between the metrics row and the first last.pt leaves behind.
        (run / "metrics.csv").write_text("epoch,train_loss,val_loss\n1,4.0,4.0\n")
        assert main("single_train.py", [CFG["contrastive_MF"]] + tiny(ds, tmp_path, epochs=2)) == 0
        with open(run / "metrics.csv") as f:
            assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2"]
        # ... and the earlier attempt's row is kept aside, not deleted.
        assert (run / "earlier_1" / "metrics.csv").read_text() == "epoch,train_loss,val_loss\n1,4.0,4.0\n"

    def test_fresh_start_over_a_run_without_last_pt_keeps_its_files(self, ds, tmp_path):
        args = [CFG["contrastive_MF"]] + tiny(ds, tmp_path)
        assert main("single_train.py", args) == 0
        run = tmp_path / "contrastive_MF"
        (run / "last.pt").unlink()  # e.g. removed to start over, as a damaged last.pt's message says
        before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
        assert main("single_train.py", args) == 0
        kept = {p.name: p.read_bytes() for p in (run / "earlier_1").iterdir() if p.is_file()}
        assert kept == before and (run / "last.pt").is_file() and (run / "earlier_1" / "tb").is_dir()

    def test_resume_drops_a_metrics_row_torn_by_a_crash(self, ds, tmp_path):
        assert main("single_train.py", [CFG["contrastive_MF"]] + tiny(ds, tmp_path)) == 0
        metrics = tmp_path / "contrastive_MF" / "metrics.csv"
        with open(metrics, "a") as f:
            f.write("2,3.9")  # a full disk cut the next row short
        assert main("single_train.py", [CFG["contrastive_MF"]] + tiny(ds, tmp_path, epochs=2)) == 0
        with open(metrics) as f:
            assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2"]

    def test_a_second_run_into_the_same_folder_stops(self, ds, tmp_path, capsys):
        run = tmp_path / "contrastive_MF"
        with output_lock(run):  # what a first run holds while it trains
            code = main("single_train.py", [CFG["contrastive_MF"]] + tiny(ds, tmp_path))
        line = one_line_error(capsys.readouterr().err)
        assert code == 2 and "another run" in line
        assert not run.exists() or not any(run.iterdir())

    def test_damaged_best_pt_stops_the_export_before_it_writes(self, ds, tmp_path, capsys):
        args = [CFG["contrastive_MF"]] + tiny(ds, tmp_path)
        assert main("single_train.py", args) == 0
        run = tmp_path / "contrastive_MF"
        (run / "audio_encoder.pt").unlink()  # an export that did not finish
        (run / "best.pt").write_bytes(b"not a checkpoint")
        config = (run / "config.json").read_bytes()
        capsys.readouterr()
        code = main("single_train.py", args)
        line = one_line_error(capsys.readouterr().err)
        assert code == 2 and "best.pt" in line
        assert not (run / "audio_encoder.pt").exists() and (run / "config.json").read_bytes() == config

    def test_disk_full_while_saving_keeps_the_previous_checkpoint(self, ds, tmp_path):
        assert main("single_train.py", [CFG["contrastive_MF"]] + tiny(ds, tmp_path)) == 0
        last = tmp_path / "contrastive_MF" / "last.pt"
        saved = last.read_bytes()

        def small_files():  # writes past 64 KB fail with EFBIG, as on a full disk
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

        p = run_script("single_train.py", [CFG["contrastive_MF"]] + tiny(ds, tmp_path, epochs=2),
                       preexec_fn=small_files)
        line = one_line_error(p.stderr)
        assert p.returncode != 0 and ".pt" in line and "intact" in line
        assert last.read_bytes() == saved
        assert not list(last.parent.glob(".*.tmp"))  # the half-written file is gone


class TestRule3OneLineExit2:
    def test_train_file_that_is_not_hdf5(self, ds, tmp_path, capsys):
        (ds / "train.h5").write_text("id,data\n1,2\n")
        code = main("single_train.py", [CFG["contrastive_MF"]] + tiny(ds, tmp_path))
        line = one_line_error(capsys.readouterr().err)
        assert code == 2 and "train.h5" in line

    @pytest.mark.parametrize("field, shape, dtype", [("data", None, None), ("cf_data", (8,), np.float32),
                                                     ("label", (8,), np.int16), ("label", (8, 100), np.float32)])
    def test_val_file_with_the_wrong_layout(self, ds, tmp_path, capsys, field, shape, dtype):
        with h5py.File(ds / "val.h5", "r+") as f:
            del f[f"dataset/{field}"]
            if shape is not None:
                f.create_dataset(f"dataset/{field}", data=np.zeros(shape, dtype))
        code = main("single_train.py", [CFG["contrastive_MF"]] + tiny(ds, tmp_path))
        line = one_line_error(capsys.readouterr().err)
        assert code == 2 and "val.h5" in line and field in line

    @pytest.mark.parametrize("kind", ["pickled", "text", "nan", "1-d"])
    def test_embedding_matrix_pickled_or_text(self, ds, tmp_path, capsys, kind):
        path = ds / "embedding_matrix_128.npy"
        if kind == "pickled":
            np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        elif kind == "text":
            path.write_text("0.1 0.2 0.3\n")
        else:
            m = np.load(path)
            m[2, 3] = np.nan
            np.save(path, m if kind == "nan" else m[:, 0])
        code = main("train.py", [CFG["contrastive_MF_gnr"]] + tiny(ds, tmp_path))
        line = one_line_error(capsys.readouterr().err)
        assert code == 2 and "embedding_matrix" in line

    @pytest.mark.parametrize("kind", ["corrupt", "foreign", "incomplete"])
    def test_corrupt_or_foreign_last_pt(self, ds, tmp_path, capsys, kind):
        assert main("single_train.py", [CFG["contrastive_MF"]] + tiny(ds, tmp_path)) == 0
        last = tmp_path / "contrastive_MF" / "last.pt"
        if kind == "corrupt":
            last.write_bytes(last.read_bytes()[:1000])
        elif kind == "foreign":
            torch.save({"weights": torch.zeros(3)}, last)
        else:  # our format, but cut down (written by other code, or edited)
            torch.save({"format": FORMAT, "epoch": 1}, last)
        capsys.readouterr()
        code = main("single_train.py", [CFG["contrastive_MF"]] + tiny(ds, tmp_path, epochs=2))
        line = one_line_error(capsys.readouterr().err)
        assert code == 2 and "last.pt" in line and "best.pt" in line

    def test_batch_size_one(self, ds, tmp_path, capsys):
        code = main("single_train.py", [CFG["contrastive_MF"]] + tiny(ds, tmp_path, batch_size=1))
        line = one_line_error(capsys.readouterr().err)
        assert code == 2 and "batch_size" in line

    def test_fewer_than_two_tracks_per_process(self, ds, tmp_path):
        # batch_size 2 over 2 DDP processes: one track each (checked before any collective)
        cfg = load_config(CFG["contrastive_MF"], parse_overrides(tiny(ds, tmp_path, batch_size=2)[1:]),
                          script="single_train.py")
        with pytest.raises(ConfigError, match="batch_size.*per process"):
            Trainer(cfg, DistContext(rank=0, world_size=2))

    @pytest.mark.parametrize("key, value", [("seed", -1), ("seed", 2**32), ("learning_rate", float("inf")),
                                            ("contrastive_temperature", float("inf"))])
    def test_config_values_that_would_only_fail_later(self, ds, tmp_path, capsys, key, value):
        code = main("single_train.py", [CFG["contrastive_MF"]] + tiny(ds, tmp_path, **{key: value}))
        line = one_line_error(capsys.readouterr().err)
        assert code == 2 and f"'{key}'" in line and "train_dataset_file" not in line

    def test_genre_vocabulary_file_of_the_wrong_shape(self, ds, tmp_path, capsys):
        (ds / "genres.json").write_text("12")
        code = main("train.py", [CFG["contrastive_MF_gnr"]] + tiny(ds, tmp_path))
        line = one_line_error(capsys.readouterr().err)
        assert code == 2 and "id2tag_file" in line

    def test_save_dir_that_cannot_be_written(self, ds, tmp_path, capsys):
        blocker = tmp_path / "not_a_dir"
        blocker.write_text("a file where the runs folder should be")
        code = main("single_train.py", [CFG["contrastive_MF"]] + tiny(ds, blocker / "runs"))
        line = one_line_error(capsys.readouterr().err)
        assert code == 2 and "save_dir" in line


class TestRule4MessagesNameTheCause:
    def test_dataset_without_manifest_warns(self, tmp_path, capsys):
        # create_dataset writes manifest.json last; without it the dataset may be partial.
        ds = write_synthetic_dataset(tmp_path / "ds", n_train=24, n_val=8, n_test=4, frames=280)
        assert not (ds / "manifest.json").exists()
        assert main("single_train.py", [CFG["contrastive_MF"]] + tiny(ds, tmp_path)) == 0
        captured = capsys.readouterr()
        assert "manifest.json" in captured.err + captured.out


class TestRule6NoPickle:
    def test_a_pickled_embedding_matrix_is_never_unpickled(self, ds, tmp_path, capsys):
        marker = tmp_path / "executed"
        np.save(ds / "embedding_matrix_128.npy", np.array([Boom(str(marker))], dtype=object),
                allow_pickle=True)
        (ds / "genres.json").unlink()  # the vocabulary size then comes from the matrix too
        assert main("train.py", [CFG["contrastive_MF_gnr"]] + tiny(ds, tmp_path)) == 2
        assert "embedding_matrix_128.npy" in one_line_error(capsys.readouterr().err)
        assert not marker.exists()
