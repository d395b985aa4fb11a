"""Views: the authors' config files, encoder shorthand vs explicit views, the playlist-tags
view end to end (data, word2vec, training, resume), old checkpoints, run provenance."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from musicrep.training.checkpoint import load_checkpoint, save_atomic
from musicrep.cli.train import main
from musicrep.training.config import PAPER_CONFIGS, load_config
from musicrep.data.melon import Playlist
from musicrep.data.tags import read_playlist_tags, write_playlist_tags
from musicrep.layout import PLAYLIST_TAGS as TAGS_FILE, TAG_W2V as TAG_MATRIX

from tests.helpers import REPO
from tests.helpers.synth import write_synthetic_dataset
from tests.helpers.training import tiny, train_straight_and_resumed

AUTHORS = REPO / "tests" / "data" / "authors_configs"
TAG_CONFIGS = {"contrastive_tags": "single_train.py", "contrastive_MF_gnr_tags": "train.py"}
# The mechanism study's (reports/mechanism/PLAN.md): the paper's views without the cf-genre term.
MECHANISM_CONFIGS = {"contrastive_MF_gnr_2term": "train.py"}
# Self-supervised: the audio-audio view alone (test_audio_pair.py).
SELF_SUPERVISED_CONFIGS = {"contrastive_audio": "single_train.py"}


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    """A dataset as the original create_dataset.py wrote it: no playlist_tags.json."""
    return write_synthetic_dataset(tmp_path_factory.mktemp("synth"), n_train=24, n_val=8, n_test=4, frames=280)


def weights(run: Path) -> dict[str, dict[str, torch.Tensor]]:
    return load_checkpoint(run / "last.pt")["models"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for part, sd in a.items():
        for k, v in sd.items():
            assert torch.equal(v, b[part][k]), f"{part}.{k}"


@pytest.mark.parametrize("name", list(PAPER_CONFIGS))
def test_authors_config_files_train_one_step(name, synth, tmp_path):
    raw = json.loads((AUTHORS / f"{name}.json").read_text())
    assert not raw["train_dataset_file"].endswith(".h5") and raw["device"] == "cuda"
    assert ("encoder" in raw) == (name != "contrastive_MF_gnr")  # their 3-loss file has none
    args = [str(AUTHORS / f"{name}.json")] + tiny(synth, tmp_path, max_steps_per_epoch=1)
    assert main(PAPER_CONFIGS[name], args) == 0
    ckpt = load_checkpoint(tmp_path / raw["experiment_name"] / "last.pt")
    assert ckpt["global_step"] == 1
    assert ckpt["config"]["encoder"] == raw.get("encoder", "MF_gnr")


@pytest.mark.parametrize(
    ("script", "shorthand", "explicit"),
    [
        ("train.py", {"encoder": "MF_gnr"}, {"views": ["audio", "cf", "genre"]}),  # default: all pairs
        ("baseline_train.py", {"encoder": "MF_gnr"}, {"targets": ["cf", "genre"]}),
    ],
)
def test_encoder_shorthand_equals_explicit_views(script, shorthand, explicit, synth, tmp_path):
    """The paper's `encoder` and the equivalent views/pairs (targets) give the same run:
    the same loss terms and bit-identical weights."""
    runs = {}
    for tag, keys in (("a", shorthand), ("b", explicit)):
        cfg = json.loads((REPO / "configs" / f"{'baseline' if 'baseline' in script else 'contrastive'}_MF_gnr.json").read_text())
        cfg = {k: v for k, v in cfg.items() if k != "encoder"} | keys
        path = tmp_path / f"{tag}.json"
        path.write_text(json.dumps(cfg))
        assert main(script, [str(path)] + tiny(synth, tmp_path / tag, max_steps_per_epoch=3)) == 0
        runs[tag] = tmp_path / tag / cfg["experiment_name"]
    assert_same_weights(weights(runs["a"]), weights(runs["b"]))
    cols = [(r / "metrics.csv").read_text().splitlines()[0].split(",") for r in runs.values()]
    assert sorted(cols[0]) == sorted(cols[1])


def test_config_script_query_for_every_shipped_config():
    expected = dict(PAPER_CONFIGS) | TAG_CONFIGS | MECHANISM_CONFIGS | SELF_SUPERVISED_CONFIGS
    for name, script in expected.items():
        r = subprocess.run(
            [sys.executable, "-m", "musicrep.training.config", "script", str(REPO / "configs" / f"{name}.json")],
            capture_output=True, text=True, check=False,
        )
        assert r.returncode == 0 and r.stdout.strip() == script, (name, r.stderr)
    assert sorted(p.stem for p in (REPO / "configs").glob("*.json")) == sorted(expected)


def test_bad_views_and_pairs_are_one_line(synth, tmp_path, capsys):
    base = json.loads((REPO / "configs" / "contrastive_tags.json").read_text())
    for bad, key in (
        ({"views": ["audio", "lyrics"]}, "'views'"),
        ({"views": ["cf", "audio"]}, "'views'"),
        ({"views": ["audio", "cf", "genre"], "pairs": [["audio", "cf"]]}, "'views'"),
        ({"views": ["audio", "cf"], "pairs": [["audio", "audio"]]}, "'pairs'"),
        ({"encoder": "MF"}, "'encoder'"),
    ):
        path = tmp_path / "c.json"
        path.write_text(json.dumps(base | bad))
        assert main("train.py", [str(path)] + tiny(synth, tmp_path)) == 2
        err = capsys.readouterr().err.strip()
        assert key in err and err.count("\n") == 0 and "Traceback" not in err, err


def test_tags_config_on_a_dataset_without_tags_says_so(synth, tmp_path, capsys):
    args = [str(REPO / "configs" / "contrastive_tags.json")] + tiny(synth, tmp_path)
    assert main("single_train.py", args) == 2
    err = capsys.readouterr().err.strip()
    assert "tag_embedding_matrix_file" in err and err.count("\n") == 0


def test_playlist_tags_use_training_playlists_and_split_only(tmp_path):
    split_of = {1: "train", 2: "train", 3: "val", 4: "test"}
    playlists = [
        Playlist(10, (1, 2), ("rock", "night"), "train.json"),
        Playlist(11, (1, 3), ("rock",), "train.json"),
        Playlist(12, (3,), ("valonly",), "train.json"),  # only a val track: not in the vocabulary
        Playlist(13, (1, 2, 3), ("leak",), "val.json"),  # not a training playlist
        Playlist(14, (4,), ("cold",), "train.json"),  # test tracks get nothing
    ]
    content = write_playlist_tags(tmp_path, playlists, split_of)
    assert content["tags"] == ["night", "rock"]  # 2 train tracks each: the name breaks the tie
    vocab, tracks = read_playlist_tags(tmp_path / TAGS_FILE)
    named = {t: sorted(vocab[i] for i in idx) for t, idx in tracks.items()}
    assert named == {1: ["night", "rock"], 2: ["night", "rock"], 3: ["rock"]}


def test_create_dataset_writes_the_tags_view_data(tiny_dataset):
    vocab, tracks = read_playlist_tags(tiny_dataset / TAGS_FILE)
    splits = json.loads((tiny_dataset / "splits.json").read_text())
    assert set(tracks) == set(splits["train"]) | set(splits["val"])  # no test track
    matrix = np.load(tiny_dataset / TAG_MATRIX)
    assert matrix.shape == (len(vocab) + 1, 128) and not matrix[0].any() and matrix[1:].any()


@pytest.mark.parametrize("name", list(TAG_CONFIGS))
def test_tags_configs_train(name, tiny_dataset, tmp_path):
    args = [str(REPO / "configs" / f"{name}.json")] + tiny(tiny_dataset, tmp_path, max_steps_per_epoch=1)
    assert main(TAG_CONFIGS[name], args) == 0
    ckpt = load_checkpoint(tmp_path / name / "last.pt")
    assert {"audio", "tags"} <= set(ckpt["models"]) and ckpt["model_args"]["n_tags"] > 0
    header = (tmp_path / name / "metrics.csv").read_text().splitlines()[0]
    assert "train_ntxent_audio_tags" in header


def test_two_term_config_trains_only_the_audio_terms(synth, tmp_path):
    """contrastive_MF_gnr_2term (the mechanism study): the paper's three views, without
    the cf-genre term."""
    name = "contrastive_MF_gnr_2term"
    args = [str(REPO / "configs" / f"{name}.json")] + tiny(synth, tmp_path, max_steps_per_epoch=1)
    assert main(MECHANISM_CONFIGS[name], args) == 0
    header = (tmp_path / name / "metrics.csv").read_text().splitlines()[0]
    assert "train_ntxent_audio_cf" in header and "train_ntxent_audio_genre" in header
    assert "ntxent_cf_genre" not in header


def test_interrupted_tags_run_resumes_to_identical_weights(tiny_dataset, tmp_path):
    a, b = train_straight_and_resumed(tiny_dataset, tmp_path, "contrastive_MF_gnr_tags", "train.py", 2)
    assert a["epoch"] == b["epoch"] == 2
    assert_same_weights(a["models"], b["models"])


def test_checkpoint_from_before_views_resumes_or_fails_in_one_line(synth, tmp_path, capsys):
    cfg = str(REPO / "configs" / "contrastive_MF_gnr.json")
    assert main("train.py", [cfg] + tiny(synth, tmp_path, max_steps_per_epoch=1)) == 0
    last = tmp_path / "contrastive_MF_gnr" / "last.pt"
    ckpt = load_checkpoint(last)
    for key in ("views", "pairs", "targets", "max_tags", "tag_embedding_matrix_file"):
        del ckpt["config"][key]  # what a checkpoint of the earlier layout holds
    save_atomic(ckpt, last)
    assert main("train.py", [cfg] + tiny(synth, tmp_path, epochs=2, max_steps_per_epoch=1)) == 0
    assert load_checkpoint(last)["epoch"] == 2

    ckpt = load_checkpoint(last)
    ckpt["models"]["lyrics"] = ckpt["models"].pop("genre")  # a part this run does not have
    save_atomic(ckpt, last)
    capsys.readouterr()
    assert main("train.py", [cfg] + tiny(synth, tmp_path, epochs=3, max_steps_per_epoch=1)) == 2
    err = capsys.readouterr().err.strip()
    assert "last.pt" in err and "lyrics" in err and err.count("\n") == 0


def test_config_json_provenance(synth, tmp_path):
    cfg = str(REPO / "configs" / "baseline_MF.json")
    assert main("baseline_train.py", [cfg] + tiny(synth, tmp_path / "a", max_steps_per_epoch=1)) == 0
    prov = json.loads((tmp_path / "a" / "baseline_MF" / "config.json").read_text())["provenance"]
    assert prov == {"data": "unknown", "dataset_manifest": None, "generator": None,
                    "train_tracks": 24, "val_tracks": 8, "epochs": 1, "width": 0.125}

    ds = write_synthetic_dataset(tmp_path / "gen", n_train=16, n_val=8, n_test=2, frames=280)
    generator = {"generator": "musicrep.toy.melon.make_toy_melon", "seed": 3, "songs": 40}
    source = {"generated": True, "generator": generator, "melon_dir": "somewhere"}
    (ds / "manifest.json").write_text(json.dumps({"source": source}))
    assert main("baseline_train.py", [cfg] + tiny(ds, tmp_path / "b", max_steps_per_epoch=1)) == 0
    prov = json.loads((tmp_path / "b" / "baseline_MF" / "config.json").read_text())["provenance"]
    assert prov["data"] == "generated" and prov["generator"] == generator
    assert prov["dataset_manifest"] == str(ds / "manifest.json") and prov["train_tracks"] == 16


def test_paper_configs_resolve_to_the_papers_terms():
    pairs = load_config(REPO / "configs" / "contrastive_MF_gnr.json", check_files=False).pairs
    assert pairs == [["audio", "genre"], ["audio", "cf"], ["cf", "genre"]]
    both = load_config(REPO / "configs" / "contrastive_MF_gnr_tags.json", check_files=False)
    assert both.views == ["audio", "cf", "genre", "tags"] and len(both.pairs) == 6
    # the mechanism study's 2-term variant: the paper's views, only the two audio terms
    two = load_config(REPO / "configs" / "contrastive_MF_gnr_2term.json", check_files=False)
    assert two.views == ["audio", "cf", "genre"] and two.pairs == pairs[:2]
