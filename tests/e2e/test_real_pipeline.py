"""The real-audio pipeline of `make real-bench` / `make real-train`: the model card of a
model trained on real recordings (the licences of the audio it heard, from the corpus
manifest), and one slow slice on real files: a few tracks of a Debian soundtrack and
three rendered music21 scores, imported, split, and benchmarked on the held-out tracks."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from musicrep.cli.real_model_card import main as card_main
from tests.helpers import REPO

HAVE_APT = all(shutil.which(t) for t in ("apt-get", "apt-cache", "dpkg-deb"))


# ------------------------------------------------------------------------ the card


def _track(tid: str, licence: str, package: str = "game-music", **extra) -> dict:
    return {"track_id": tid, "package": package, "version": "1.0-1", "licence": licence,
            **extra}


def _fake_run(tmp_path: Path, data: str = "real") -> tuple[Path, Path, Path]:
    """A finished run whose dataset came from an import of a 5-track corpus."""
    corpus, melon, dataset, run = (tmp_path / n for n in ("corpus", "melon", "dataset", "run"))
    for d in (corpus, melon, dataset, run):
        d.mkdir()
    tracks = [_track("a", "GPL-2+"), _track("b", "CC-BY-SA-3.0"),
              _track("c", "CC-BY-3.0"),  # the test track: its licence is not the model's
              _track("s1", "music21 corpus terms; soundfont MIT", "music21", era="baroque",
                     file_rights="Copyright 2000, J. M.  Rights  reserved"),
              _track("s2", "music21 corpus terms; soundfont MIT", "music21", form="jig")]
    (corpus / "manifest.json").write_text(json.dumps({"tracks": tracks, "scores": {
        "source": "music21 10.5.1 (PyPI), its corpus folder", "corpus_licence": "BSD terms",
        "soundfont": {"package": "fluid-soundfont-gm", "version": "3.1-5.3", "licence": "MIT",
                      "copyright": "2000-2002, 2008 Frank Wen"},
        "synthesizer": {"program": "fluidsynth", "version": "2.3.1"}}}))
    ids = ["a", "b", "s1", "s2", "c"]
    (melon / "track_ids.csv").write_text(
        "id,track_id,path\n" + "".join(f"{i},{t},{t}.ogg\n" for i, t in enumerate(ids)))
    (dataset / "manifest.json").write_text(json.dumps({"source": {"generated": False,
                                                                  "melon_dir": str(melon)}}))
    (dataset / "splits.json").write_text(json.dumps({"train": [0, 1, 2], "val": [3],
                                                     "test": [4]}))
    (run / "config.json").write_text(json.dumps({
        "objective": "contrastive", "views": ["audio", "audio2"], "pairs": [["audio", "audio2"]],
        "contrastive_temperature": 0.1, "learning_rate": 0.001, "weight_decay": 0.0001,
        "batch_size": 32, "seed": 1, "width": 0.25, "input_layout": "transpose",
        "provenance": {"data": data, "dataset_manifest": str(dataset / "manifest.json"),
                       "train_tracks": 3, "val_tracks": 1}}))
    (run / "metrics.csv").write_text("epoch,val_loss,val_ntxent_audio_audio2\n1,3.5,3.5\n"
                                     "2,3.25,3.25\n")
    return run, corpus, dataset


def _bench(out: Path, dataset: Path, name: str = "run") -> Path:
    out.mkdir()
    m = {"mean": 0.5, "low": 0.25, "high": 0.75, "n": 1}
    (out / "results.json").write_text(json.dumps({
        "settings": {"tracks": 1, "split": {"dataset": str(dataset), "split": "test"}},
        "chance": {"pool_top1": 0.333},
        "rows": [{"row": name, "kind": "checkpoint", "metrics": {"pool_top1": m}},
                 {"row": "log-mel stats", "kind": "baseline", "metrics": {"pool_top1": m}}]}))
    return out


def test_the_card_lists_the_licences_of_the_audio_the_model_heard(tmp_path, capsys):
    run, corpus, dataset = _fake_run(tmp_path)
    bench = _bench(tmp_path / "bench", dataset)
    code = card_main([str(run), "--corpus", str(corpus), "--benchmark", str(bench),
                      "--out", str(tmp_path / "card.md")])
    assert code == 0, capsys.readouterr().err
    card = (tmp_path / "card.md").read_text()
    assert card.startswith("## run (trained on REAL recordings)")
    assert ("licences of the 4 training tracks" in card and "GPL-2+ 1" in card
            and "CC-BY-SA-3.0 1" in card and "CC-BY-3.0" not in card)  # c is a test track
    assert "game-music 1.0-1: 2 tracks" in card and "music21 1.0-1: 2 tracks" in card
    assert "fluid-soundfont-gm 3.1-5.3 (MIT" in card and '"BSD terms"' in card
    assert '1 score file(s) state: "Copyright 2000, J. M. Rights reserved"' in card
    assert "pool_top1 0.500 [0.250, 0.750]" in card and "log-mel stats:" in card
    assert "its 1 test tracks were held out" in card
    assert "2 epochs; final validation loss 3.250 (ntxent_audio_audio2 3.250)" in card


def test_the_card_refuses_generated_data_and_a_benchmark_of_other_tracks(tmp_path, capsys):
    run, corpus, _ = _fake_run(tmp_path, data="generated")
    assert card_main([str(run), "--corpus", str(corpus)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "provenance.data is 'generated', not 'real'" in err
    cfg = json.loads((run / "config.json").read_text())
    cfg["provenance"]["data"] = "real"
    (run / "config.json").write_text(json.dumps(cfg))
    other = _bench(tmp_path / "bench", tmp_path / "another-dataset")
    assert card_main([str(run), "--corpus", str(corpus), "--benchmark", str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "did not score the test split of" in err
    assert card_main([str(tmp_path / "nothing"), "--corpus", str(corpus)]) == 2
    assert "config.json: file not found" in capsys.readouterr().err


# ----------------------------------------------------------- a slice on real files


def _cli(script: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / script), *args],
                          capture_output=True, text=True, timeout=timeout, check=False,
                          cwd=REPO)


def _real_corpus(out: Path, cache: Path) -> None:
    """8 tracks of singularity-music and three rendered scores (a Bach chorale, a jig, a
    Palestrina movement), written as scripts/real_music.py writes a corpus."""
    from musicrep.data.debian import FetchError, candidate, fetch, unpack
    from musicrep.data.real_corpus import scan_package, write_corpus
    from musicrep.data.score_render import Renderer, RenderSettings, check_tools, fetch_soundfont
    from musicrep.data.score_set import render_scores
    from musicrep.data.scores import list_scores

    try:
        info = candidate("singularity-music")
        deb, _ = fetch(info, cache / "debs")
        font = fetch_soundfont(cache)
    except FetchError as e:
        pytest.skip(f"cannot fetch from the Debian archive (no network?): {e}")
    tree, _ = unpack(deb, cache / "trees")
    result = scan_package(tree, info, cache / "members", 30.0, {})
    result.tracks = result.tracks[:8]
    tools = check_tools()
    by = {s.path: s for s in list_scores(tools.corpus)[0]}
    picked = [by[p] for p in ("bach/bwv1.6.mxl", "ryansMammoth/FastenTheWigOnHerJig.abc",
                              "palestrina/Agnus_01.krn")]
    scores = render_scores({s.label: [s] for s in picked}, RenderSettings(per_label=1),
                           Renderer(*tools, font), cache / "scores", progress=False)
    assert len(scores.tracks) == 3, scores.failures
    write_corpus(out, [result], {"packages": [info.name], "min_seconds": 30.0}, scores)


@pytest.mark.slow
def test_a_slice_of_the_real_benchmark_on_held_out_tracks(tmp_path):
    """MUSICREP_DEB_CACHE keeps the package (52 MB), the soundfont (120 MB) and the
    renders between runs; about a minute with them cached."""
    if not HAVE_APT:
        pytest.skip("needs apt-get, apt-cache and dpkg-deb to fetch the soundtrack")
    if shutil.which("fluidsynth") is None:
        pytest.skip("needs fluidsynth to render the scores (apt-get install fluidsynth)")
    pytest.importorskip("music21", reason="needs music21 (pip install -r requirements.txt)")
    cache = Path(os.environ.get("MUSICREP_DEB_CACHE", tmp_path / "cache"))
    corpus, melon, data = tmp_path / "corpus", tmp_path / "melon", tmp_path / "dataset"
    _real_corpus(corpus, cache)
    r = _cli("import_audio.py", "--audio-dir", str(corpus / "audio"), "--tracks",
             str(corpus / "tracks.csv"), "--playlists", str(corpus / "playlists.csv"),
             "--out", str(melon), "--workers", "1", "--quiet")
    assert r.returncode == 0 and "11 of 11 tracks with mels" in r.stdout, r.stderr
    r = _cli("create_dataset.py", "--melon-dir", str(melon), "--out-dir", str(data),
             "--test-size", "0.3", "--val-size", "0.15", "--cf-factors", "2", "--workers", "1")
    assert r.returncode == 0, r.stderr
    r = _cli("real_benchmark.py", str(corpus), "--split-from", str(data), "--models",
             str(REPO / "models" / "contrastive_MF_gnr"), "--out", str(tmp_path / "out"),
             "--bootstrap", "50", "--no-progress")
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    splits = json.loads((data / "splits.json").read_text())
    with open(melon / "track_ids.csv", newline="") as f:
        name = {int(x["id"]): x["track_id"] for x in csv.DictReader(f)}
    test = {name[i] for i in splits["test"]}
    assert res["settings"]["tracks"] == len(test) == res["settings"]["split"]["scored"]
    assert {r["row"] for r in res["rows"]} == {"contrastive_MF_gnr", "random init",
                                               "log-mel stats"}
    with open(corpus / "tracks.csv", newline="") as f:
        works = {x["track_id"]: x["work"] for x in csv.DictReader(f)}
    heard = {works[name[i]] for s in ("train", "val") for i in splits[s]}
    assert not heard & {works[t] for t in test}  # no work on both sides
