"""Config files, validation and the one-line errors of the three scripts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from musicrep.cli.train import main
from musicrep.errors import ConfigError
from musicrep.training.config import (
    PAPER_CONFIGS,
    SCRIPTS,
    build_config,
    load_config,
    parse_overrides,
)

from tests.helpers import REPO

CONFIGS = PAPER_CONFIGS


@pytest.mark.parametrize("name", list(CONFIGS))
def test_shipped_configs_have_paper_hyperparameters(name):
    cfg = load_config(REPO / "configs" / f"{name}.json", script=CONFIGS[name], check_files=False)
    assert cfg.experiment_name == name
    assert f"{cfg.objective}_{cfg.encoder}" == name
    assert (cfg.learning_rate, cfg.weight_decay, cfg.batch_size, cfg.epochs) == (
        1e-4,
        1e-4,
        128,
        400,
    )
    assert (cfg.contrastive_temperature, cfg.save_model_every) == (0.1, 20)
    assert (cfg.aggregation, cfg.num_heads, cfg.device) == ("self", 4, "auto")
    assert cfg.train_dataset_file == "data/toy/dataset/train.h5"
    assert cfg.validation_dataset_file == "data/toy/dataset/val.h5"
    assert cfg.width == 1.0 and cfg.input_layout == "transpose"


@pytest.fixture()
def files(tmp_path):
    for name in ("train.h5", "val.h5", "embedding_matrix_128.npy"):
        (tmp_path / name).write_bytes(b"")
    return tmp_path


def base(files: Path, **kw) -> dict:
    raw = {
        "experiment_name": "x",
        "train_dataset_file": str(files / "train.h5"),
        "validation_dataset_file": str(files / "val.h5"),
        "encoder": "MF",
    }
    raw.update(kw)
    return raw


def error(raw: dict, script: str = "single_train.py") -> str:
    with pytest.raises(ConfigError) as e:
        build_config(raw, script=script)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_defaults_and_script_objective(files):
    cfg = build_config(base(files), script="single_train.py")
    assert cfg.objective == "contrastive" and cfg.save_dir == "runs/" and cfg.seed == 0
    assert cfg.resolved_embedding_matrix() == files / "embedding_matrix_128.npy"
    assert build_config(base(files), script="baseline_train.py").objective == "baseline"
    # the original configs (only the original keys) load unchanged
    original = base(
        files,
        aggregation="self",
        num_heads=4,
        contrastive_temperature=0.1,
        epochs=400,
        batch_size=128,
        learning_rate=1e-4,
        device="cpu",
        id2tag_file=str(files / "train.h5"),
        log_interval=100,
        save_model_every=20,
    )
    build_config(original, script="single_train.py")


def test_error_messages(files):
    assert "'batch_sise'" in error(base(files, batch_sise=3)) and "batch_size" in error(
        base(files, batch_sise=3)
    )
    assert "'epochs' must be an integer" in error(base(files, epochs="10"))
    assert "'epochs' must be an integer" in error(base(files, epochs=2.5))
    assert "'bf16' must be \"auto\", true or false" in error(base(files, bf16=1))
    assert "'bf16'" in error(base(files, bf16="yes"))
    assert "'learning_rate' must be > 0" in error(base(files, learning_rate=0))
    assert "'encoder'" in error(base(files, encoder="audio")) and '"MF_gnr"' in error(
        base(files, encoder="audio")
    )
    msg = error(base(files, encoder="MF_gnr"), "single_train.py")
    assert "'encoder'" in msg and "train.py" in msg
    msg = error(base(files, objective="contrastive"), "baseline_train.py")
    assert "'objective'" in msg and "baseline" in msg
    assert "'experiment_name' is required" in error(
        {k: v for k, v in base(files).items() if k != "experiment_name"}
    )
    msg = error(base(files, train_dataset_file=str(files / "nope.h5")))
    assert "'train_dataset_file'" in msg and "nope.h5" in msg
    msg = error(base(files, encoder="gnr", embedding_matrix_file=str(files / "w2v.npy")))
    assert "'embedding_matrix_file'" in msg
    assert "'aggregation'" in error(base(files, aggregation="max"))
    assert "'input_layout'" in error(base(files, input_layout="transposed"))
    assert "'device'" in error(base(files, device="tpu"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda(files):
    msg = error(base(files, device="cuda"))
    assert "'device'" in msg and "CUDA is not available" in msg


def test_auto_device(files):
    cfg = build_config(base(files, device="auto"), script="single_train.py")
    from musicrep.precision import resolve_device

    assert resolve_device(cfg.device).type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_bf16_setting(files):
    assert build_config(base(files), script="single_train.py").bf16 == "auto"  # the default
    for value in ("auto", True, False):
        assert build_config(base(files, bf16=value), script="single_train.py").bf16 is value
    assert parse_overrides(["bf16=auto"]) == {"bf16": "auto"}


def test_overrides():
    assert parse_overrides(
        ["epochs=2", "bf16=true", "save_dir=/tmp/a b", "width=0.5", 'x="3"']
    ) == {"epochs": 2, "bf16": True, "save_dir": "/tmp/a b", "width": 0.5, "x": "3"}
    with pytest.raises(ConfigError):
        parse_overrides(["epochs"])


def test_main_exit_code_2_one_line(files, capsys, tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(base(files)))
    assert main("single_train.py", [str(path), "--set", "epochs=zero"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'epochs'" in err and "Traceback" not in err
    assert main("train.py", [str(path)]) == 2  # train.py trains MF_gnr only
    assert "'encoder'" in capsys.readouterr().err
    assert main("train.py", [str(tmp_path / "missing.json")]) == 2
    path.write_text("{not json")
    assert main("train.py", [str(path)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_script_exit_code_2_without_traceback(files, tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(base(files, encoder="MF", device="cpu", epochz=3)))
    for script in SCRIPTS:
        assert (REPO / script).is_file()
    cmd = [sys.executable, str(REPO / "baseline_train.py"), str(path)]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0
    assert "unknown config key 'epochz'" in r.stderr and "epochs" in r.stderr
