"""The rendered part of the real corpus (scripts/real_music.py --scores): the labels of
music21's scores, the selection, instruments drawn independently of the label, the
bounded window, the cache, the tables it adds, and its refusals; one slow test renders
three real scores with fluidsynth."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicrep.data import score_set
from musicrep.data.debian import PackageInfo
from musicrep.data.importer import read_collection
from musicrep.data.real_corpus import write_corpus
from musicrep.data.score_render import (
    MAX_QPM,
    Renderer,
    RenderFailed,
    RenderSettings,
    RenderTimeout,
    Soundfont,
    cut_to,
    deadline,
    expand_or_strip,
    fit_window,
    set_instruments,
    synthesize,
    trim_silence,
)
from musicrep.data.scores import (
    COLLECTIONS,
    ERAS,
    GM_PROGRAMS,
    draw_programs,
    file_rights,
    form_of,
    list_scores,
    render_order,
)
from tests.helpers import REPO

SCRIPT = REPO / "scripts" / "real_music.py"
HAVE_APT = all(shutil.which(t) for t in ("apt-get", "apt-cache", "dpkg-deb"))
SR = 8000


# -------------------------------------------------------------------- labels and works


def test_the_form_of_a_fiddle_tune_needs_its_name_or_rhythm_and_no_contradiction():
    assert form_of("AcaciaReel", "reel") == "reel"
    assert form_of("OldZipCoonReel_G", "") == "reel"  # the tune in G, no R: field
    assert form_of("MissMcLeod", "REEL") == "reel"  # only the R: field names it
    assert form_of("HighlandRegimentStrathspey", "strathspey") == "strathspey"
    assert form_of("AnnieHughesJig", "reel") == ""  # the two disagree: left out
    assert form_of("AndrewCareysSlipjig", "slip jig") == ""  # another dance
    assert form_of("RideAMileSlipjig", "") == ""
    assert form_of("SomeClog", "clog") == ""


def test_every_era_has_its_composers_and_the_mapping_is_the_documented_one():
    era = {c.folder: c.era for c in COLLECTIONS}
    assert {e for e in era.values() if e} == set(ERAS)
    assert era["trecento"] == era["ciconia"] == "medieval"
    assert era["palestrina"] == era["monteverdi"] == era["josquin"] == "renaissance"
    assert era["bach"] == era["handel"] == era["corelli"] == "baroque"
    assert era["mozart"] == era["haydn"] == era["beethoven"] == "classical"
    assert era["ryansMammoth"] == ""  # fiddle tunes carry a form instead
    assert all(c.why for c in COLLECTIONS)  # every entry says why


def _write(path: Path, text: str = "x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _fake_corpus(root: Path) -> Path:
    """A corpus folder with each case list_scores handles, headers only."""
    mass = "!!!COM: Palestrina\n!!!OPR: Missa Brevis\n**kern\n"
    _write(root / "palestrina/Agnus_01.krn", mass)
    _write(root / "palestrina/Kyrie_01.krn", mass)
    _write(root / "palestrina/Kyrie_02.krn", "!!!OPR: Missa Papae Marcelli\n!!!YEC: Copyright "
                                             "2000, J. M.\n!!!YEM: Rights reserved.\n")
    for ext in (".krn", ".mxl"):  # one piece in two encodings: taken once
        _write(root / f"beethoven/opus18no1/movement1{ext}")
    _write(root / "beethoven/opus18no1/movement2.mxl")
    _write(root / "mozart/k80/movement1.mxl")
    _write(root / "bach/bwv1.6.mxl")
    _write(root / "bach/bwv846.mxl")
    _write(root / "bach/choraleAnalyses/riemenschneider001.mxl")
    creator = '<creator type="composer">{}</creator><rights>CC-BY-SA 3.0 license</rights>'
    _write(root / "trecento/PMFC_12_10a-Credo PMFC12.10a.xml", creator.format("Anonymous"))
    _write(root / "trecento/PMFC_12_10b-Credo PMFC12.10b.xml", creator.format("Anonymous"))
    _write(root / "trecento/PMFC_04-Cara mi donna.xml",
           creator.format("Francesco Landini\n(c. 1325 - 1397)"))
    _write(root / "trecento/PMFC_04-Cara mi donna_bak.xml", creator.format("X"))
    tune = "X: 1\nT:{}\nR:{}\nK:G\nGABc|\n"
    _write(root / "ryansMammoth/AcaciaReel.abc", tune.format("Acacia", "reel"))
    _write(root / "ryansMammoth/OldZipCoonReel_G.abc", tune.format("Old Zip Coon", "reel"))
    _write(root / "ryansMammoth/OldZipCoonReel_A.abc", tune.format("Old Zip Coon", "reel"))
    _write(root / "ryansMammoth/AnnieHughesJig.abc", tune.format("Annie", "reel"))
    _write(root / "ryansMammoth/BonnyStrathspey.abc", tune.format("Bonny", "strathspey"))
    _write(root / "josquin/milleRegrets.abc", "% Copyright (C) 1999 L. C.\n% under the GNU "
                                             "General Public License version 2 or later\nX:1\n")
    return root


def test_list_scores_labels_groups_into_works_and_leaves_out_what_it_should(tmp_path):
    root = _fake_corpus(tmp_path / "corpus")
    scores, left_out = list_scores(root)
    by = {s.path: s for s in scores}
    assert "beethoven/opus18no1/movement1.mxl" in by and "beethoven/opus18no1/movement1.krn" \
        not in by
    assert not [p for p in by if "choraleAnalyses" in p or "_bak" in p]
    assert left_out == {"ryansMammoth: no reel/jig/hornpipe/strathspey (or two)": 1}  # Annie
    work = {p: s.work for p, s in by.items()}
    # Movements of a mass, a quartet's movements, a tune's keys, parts a/b: one work each.
    assert work["palestrina/Agnus_01.krn"] == work["palestrina/Kyrie_01.krn"] == \
        "palestrina/Missa Brevis"
    assert work["palestrina/Kyrie_02.krn"] == "palestrina/Missa Papae Marcelli"
    assert work["beethoven/opus18no1/movement2.mxl"] == "beethoven/opus18no1"
    assert work["ryansMammoth/OldZipCoonReel_G.abc"] == work["ryansMammoth/OldZipCoonReel_A.abc"]
    assert work["trecento/PMFC_12_10a-Credo PMFC12.10a.xml"] == \
        work["trecento/PMFC_12_10b-Credo PMFC12.10b.xml"]
    cara = by["trecento/PMFC_04-Cara mi donna.xml"]
    assert (cara.composer, cara.era, cara.label) == ("Francesco Landini", "medieval", "medieval")
    assert by["trecento/PMFC_12_10a-Credo PMFC12.10a.xml"].composer == ""  # anonymous
    assert cara.track_id == "music21/trecento/PMFC_04-Cara_mi_donna"
    assert by["bach/bwv1.6.mxl"].track_id == "music21/bach/bwv1.6"  # the dot stays
    assert (by["bach/bwv1.6.mxl"].album, by["bach/bwv846.mxl"].album) == ("Bach chorales", "Bach")
    reel = by["ryansMammoth/AcaciaReel.abc"]
    assert (reel.era, reel.form, reel.label, reel.composer) == ("", "reel", "reel", "")
    assert reel.fields()["genre"] == "reel" and reel.fields()["path"].endswith(".ogg")
    assert by["palestrina/Agnus_01.krn"].composer == "Giovanni Pierluigi da Palestrina"
    assert file_rights(root / "palestrina/Kyrie_02.krn") == \
        ("Copyright 2000, J. M. Rights reserved.", "")
    assert file_rights(root / "josquin/milleRegrets.abc")[1] == "GPL-2+"
    assert file_rights(root / "trecento/PMFC_04-Cara mi donna.xml")[1] == "CC-BY-SA-3.0"


def test_the_order_is_balanced_seeded_and_a_larger_n_keeps_a_smaller_ones(tmp_path):
    scores, _ = list_scores(_fake_corpus(tmp_path / "corpus"))
    order = render_order(scores, seed=0)
    assert set(order) == {"renaissance", "classical", "baroque", "medieval", "reel",
                          "strathspey"}
    assert sorted(s.path for q in order.values() for s in q) == sorted(s.path for s in scores)
    # Round-robin: the first renaissance scores come from two collections, the first
    # two palestrina scores from two masses, before a mass gives a second movement.
    ren = order["renaissance"]
    assert {s.collection for s in ren[:2]} == {"josquin", "palestrina"}
    pal = [x for x in ren if x.collection == "palestrina"]
    assert len({x.work for x in pal[:2]}) == 2
    assert render_order(scores, seed=0) == order  # deterministic
    assert render_order(list(reversed(scores)), seed=0) == order  # whatever the input order
    many = [s for q in render_order(scores, seed=1).values() for s in q]
    assert sorted(s.path for s in many) == sorted(s.path for s in scores)


# -------------------------------------------------------------------- instruments


def test_instruments_are_drawn_per_work_and_independently_of_the_label():
    assert draw_programs(0, "bach/bwv1.6", 4) == draw_programs(0, "bach/bwv1.6", 4)
    assert draw_programs(0, "bach/bwv1.6", 4)[:2] == draw_programs(0, "bach/bwv1.6", 2)
    assert set(draw_programs(0, "x", 500)) == set(GM_PROGRAMS)
    # The label is no input, so works of any label see one distribution: the draws for
    # 3,000 baroque and 3,000 reel works are uniform and alike (chi-square, 13 d.o.f.).
    k = len(GM_PROGRAMS)
    hist = {}
    for label, prefix in (("baroque", "bach/bwv"), ("reel", "ryansMammoth/Tune")):
        draws = [p for i in range(3000) for p in draw_programs(0, f"{prefix}{i}", 2)]
        counts = Counter(draws)
        hist[label] = np.array([counts[p] for p in sorted(GM_PROGRAMS)], dtype=float)
        expected = len(draws) / k
        assert ((hist[label] - expected) ** 2 / expected).sum() < 40  # p ~ 2e-4 at 13 d.o.f.
    a, b = (h / h.sum() for h in hist.values())
    assert 0.5 * np.abs(a - b).sum() < 0.03  # total variation distance between labels
    assert draw_programs(1, "bach/bwv1.6", 8) != draw_programs(0, "bach/bwv1.6", 8)


def _score(measures: int = 200, parts: int = 2, start_repeat_at: int | None = None):
    m21 = pytest.importorskip("music21")
    from music21 import bar, instrument, meter, note, stream

    score = stream.Score()
    for k in range(parts):
        part = stream.Part()
        part.partName = f"voice {k}"
        part.insert(0, instrument.Piano())
        for i in range(1, measures + 1):
            m = stream.Measure(number=i)
            if i == 1:
                m.timeSignature = meter.TimeSignature("4/4")
            if i == 40:
                m.insert(0, instrument.Violin())  # a change mid-piece: replaced too
            m.append(note.Note(60 + k * 4 + i % 5, quarterLength=4))
            part.append(m)
        if start_repeat_at is not None:
            part.getElementsByClass(stream.Measure)[start_repeat_at].leftBarline = \
                bar.Repeat(direction="start")  # never closed: music21 cannot expand it
        score.insert(0, part)
    assert m21
    return score


def test_the_drawn_programs_replace_every_instrument_of_the_encoding():
    from music21 import instrument

    s = _score(measures=50)
    got = set_instruments(s, [52, 6])
    assert [g["program"] for g in got] == [52, 6] and got[0]["part"] == "voice 0"
    for part, prog in zip(s.parts, [52, 6]):
        found = list(part.recurse().getElementsByClass(instrument.Instrument))
        assert [i.midiProgram for i in found] == [prog]


# -------------------------------------------------------------------- the bounded window


def test_a_long_score_is_cut_to_the_window_before_anything_else():
    s = _score(measures=200)
    quarters = RenderSettings(1, seconds=30).quarters
    assert quarters == 30 * MAX_QPM / 60
    assert cut_to(s, quarters)
    from music21 import stream

    for part in s.parts:
        ms = part.getElementsByClass(stream.Measure)
        assert len(ms) == 30 and max(m.offset for m in ms) < quarters
    assert not cut_to(s, quarters)  # nothing more to cut


def test_repeats_music21_cannot_expand_are_removed_so_the_midi_can_be_written(tmp_path):
    s = _score(measures=8, start_repeat_at=2)
    out, how = expand_or_strip(s)
    assert how.startswith("played as written (ExpanderException")
    out.write("midi", fp=str(tmp_path / "x.mid"))  # music21's writer would raise otherwise
    assert (tmp_path / "x.mid").stat().st_size > 0
    assert expand_or_strip(_score(measures=4))[1] == "none"


def _tone(seconds: float, amp: float = 0.3, lead: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    x = (amp * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    x = np.concatenate([np.zeros(int(lead * SR), np.float32), x])
    return np.stack([x, x], axis=1)


def test_the_audio_window_is_cut_faded_looped_and_levelled():
    audio, info = fit_window(_tone(50, lead=2.0), SR, 30.0, whole_piece=False)
    assert audio.shape == (30 * SR, 2) and info["passes"] == 1
    assert abs(float(audio[0, 0])) < 0.05  # the leading silence is gone: starts with sound
    assert np.abs(audio[-1]).max() < 1e-3  # faded out
    rms = np.sqrt(np.mean(audio[: 20 * SR] ** 2))
    assert rms == pytest.approx(0.1, rel=0.05)  # -20 dBFS
    loud, _ = fit_window(_tone(50, amp=0.9), SR, 30.0, False)
    quiet, _ = fit_window(_tone(50, amp=0.01), SR, 30.0, False)
    assert np.sqrt(np.mean(loud ** 2)) == pytest.approx(np.sqrt(np.mean(quiet ** 2)), rel=1e-3)
    short, info = fit_window(_tone(8), SR, 30.0, whole_piece=True)  # played again: 4 passes
    assert short.shape == (30 * SR, 2) and info["passes"] == 4
    with pytest.raises(RenderFailed, match="shorter than the 30-s window"):
        fit_window(_tone(8), SR, 30.0, whole_piece=False)  # an excerpt is never looped
    with pytest.raises(RenderFailed, match="shorter than the 30-s window after playing it 8"):
        fit_window(_tone(2), SR, 30.0, whole_piece=True)
    with pytest.raises(RenderFailed, match="silent"):
        fit_window(np.zeros((40 * SR, 2), np.float32), SR, 30.0, True)
    padded = np.concatenate([_tone(3, lead=1.0), np.zeros((3 * SR, 2), np.float32)])
    assert abs(len(trim_silence(padded, SR)) - 3.5 * SR) <= 2  # the sound and 0.5 s of tail


def test_a_runaway_score_meets_its_deadline():
    start = time.monotonic()
    with pytest.raises(RenderTimeout), deadline(0.2):
        while True:
            pass
    assert time.monotonic() - start < 5
    with deadline(5):  # a block that ends in time is untouched, and the alarm is cleared
        pass
    time.sleep(0.01)


def _fake_synth(tmp_path: Path, body: str) -> str:
    p = tmp_path / "fakesynth"
    p.write_text(f"#!/bin/sh\n{body}\n")
    p.chmod(0o755)
    return str(p)


def test_synthesis_reads_a_bounded_window_even_from_a_render_that_never_ends(tmp_path):
    """Some MIDI files keep fluidsynth's player running for ever: the render is read from
    a pipe and the process stopped once the window is read."""
    start = time.monotonic()
    endless = _fake_synth(tmp_path, "exec cat /dev/zero")
    audio = synthesize(tmp_path / "x.mid", tmp_path / "x.sf2", endless, SR, 3.0, timeout=30)
    assert audio.shape == (3 * SR, 2) and audio.dtype == np.float32
    assert time.monotonic() - start < 10
    short = _fake_synth(tmp_path, "head -c 800 /dev/zero")  # ends by itself: 100 frames
    assert synthesize(tmp_path / "x.mid", tmp_path / "x.sf2", short, SR, 3.0, 30).shape == \
        (100, 2)
    broken = _fake_synth(tmp_path, "echo 'fluidsynth: error: bad soundfont' >&2; exit 3")
    with pytest.raises(RenderFailed, match="exited 3 .fluidsynth: error: bad soundfont"):
        synthesize(tmp_path / "x.mid", tmp_path / "x.sf2", broken, SR, 3.0, 30)
    stuck = _fake_synth(tmp_path, "exec sleep 30")
    with pytest.raises(RenderFailed, match="over the 1 s left"):
        synthesize(tmp_path / "x.mid", tmp_path / "x.sf2", stuck, SR, 3.0, 1.0)


# -------------------------------------------------------------------- cache and tables


def _renderer(tmp_path: Path) -> Renderer:
    font = Soundfont(tmp_path / "x.sf2", PackageInfo("fluid-soundfont-gm", "3.1-5.3", "all", 1,
                                                      "0" * 64), "1" * 64, "MIT", "copyright", "")
    return Renderer("10.5.1", tmp_path / "corpus", "the corpus terms", "fluidsynth", "2.3.1", font)


def _fake_render_one(calls: list, fail: set):
    def render(score, r, s, out, work):
        calls.append(score.path)
        if score.path in fail:
            raise RenderFailed("music21: ExpanderException: bad")
        out.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(out), _tone(1), SR, format="OGG", subtype="VORBIS")
        from musicrep.data.debian import sha256_of

        return {**score.fields(), "package": "music21", "sha256": sha256_of(out),
                "duration_s": 1.0, "title": "T", "instruments": [], "window": {}}
    return render


def test_renders_are_cached_failures_recorded_and_the_tables_gain_work_era_form(tmp_path,
                                                                              monkeypatch):
    scores, _ = list_scores(_fake_corpus(tmp_path / "corpus"))
    order = render_order(scores, 0)
    calls: list[str] = []
    bad = {order["reel"][0].path}
    monkeypatch.setattr(score_set, "render_one", _fake_render_one(calls, bad))
    r, s = _renderer(tmp_path), RenderSettings(per_label=1)
    first = score_set.render_scores(order, s, r, tmp_path / "cache", progress=False)
    c = first.counts()
    assert c["era"] == dict.fromkeys(("renaissance", "classical", "baroque", "medieval"), 1)
    assert c["form"] == {"reel": 1, "strathspey": 1}  # the failed reel was replaced
    assert [f["reason"] for f in first.failures] == ["music21: ExpanderException: bad"]
    assert len(calls) == 7 and first.reused == 0
    calls.clear()
    again = score_set.render_scores(order, s, r, tmp_path / "cache", progress=False)
    assert calls == [] and again.reused == 7 and len(again.failures) == 1  # nothing redone
    longer = RenderSettings(per_label=1, timeout_s=120)  # a longer limit retries the failure
    score_set.render_scores(order, longer, r, tmp_path / "cache", progress=False)
    assert calls == sorted(bad)
    assert not list((tmp_path / "cache").rglob("*.tmp*"))  # no half file, no work folder

    out = tmp_path / "out"
    m = write_corpus(out, [], {"packages": []}, again)
    col = read_collection(out / "tracks.csv", out / "playlists.csv")
    assert len(col.tracks) == 6
    with open(out / "tracks.csv", encoding="utf-8") as fh:
        header = fh.readline().strip().split(",")
    assert header == ["track_id", "path", "genres", "artist", "album", "title", "work", "era",
                      "form"]
    rec = next(t for t in m["tracks"] if t["form"] == "reel")
    assert (out / "audio" / rec["path"]).is_file() and rec["genre"] == "reel"
    saved = json.loads((out / "manifest.json").read_text())
    assert saved["scores"]["failed"] == 1 and saved["totals"]["scores"] == 6
    assert saved["scores"]["soundfont"]["licence"] == "MIT"


# -------------------------------------------------------------------- the command line


def _cli(args: list[str], env: dict | None = None, timeout: float = 120):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)


def test_bad_score_options_are_one_line_each(tmp_path):
    for args, why in ((["--scores", "-1"], "--scores must be >= 0"),
                      (["--packages", ""], "--packages names no package"),
                      (["--scores", "2", "--score-seconds", "2"], "--score-seconds must be")):
        r = _cli(["--out", str(tmp_path / "o"), *args])
        assert r.returncode == 2 and why in r.stderr and r.stderr.count("\n") == 1, r.stderr


@pytest.mark.skipif(not HAVE_APT, reason="needs apt-get, apt-cache and dpkg-deb (checked first)")
def test_without_fluidsynth_it_says_what_to_install(tmp_path):
    pytest.importorskip("music21")
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for tool in ("apt-get", "apt-cache", "dpkg-deb"):
        (bin_ / tool).symlink_to(shutil.which(tool))
    r = _cli(["--out", str(tmp_path / "o"), "--packages", "", "--scores", "2"],
             env={**os.environ, "PATH": str(bin_)})
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == ("real_music: error: --scores: this machine has no fluidsynth; "
                                "install it with `apt-get install fluidsynth` (as root)")
    assert not (tmp_path / "o").exists()


# -------------------------------------------------------------------- real renders


@pytest.mark.slow
def test_three_real_scores_render_to_music(tmp_path):
    """Renders a Bach chorale, a jig and a Palestrina movement with fluidsynth and the
    FluidR3 soundfont (fetched: 120 MB; MUSICREP_DEB_CACHE keeps it between runs)."""
    pytest.importorskip("music21", reason="needs music21 (pip install -r requirements.txt)")
    if not HAVE_APT:
        pytest.skip("needs apt-get, apt-cache and dpkg-deb to fetch fluid-soundfont-gm")
    if shutil.which("fluidsynth") is None:
        pytest.skip("needs fluidsynth (apt-get install fluidsynth)")
    from musicrep.data.debian import FetchError
    from musicrep.data.score_render import check_tools, fetch_soundfont, score_to_midi

    tools = check_tools()
    corpus = tools.corpus
    cache = Path(os.environ.get("MUSICREP_DEB_CACHE", tmp_path / "cache"))
    try:
        font = fetch_soundfont(cache)
    except FetchError as e:
        pytest.skip(f"cannot fetch the soundfont (no network to the Debian archive?): {e}")
    r = Renderer(*tools, font)
    scores, _ = list_scores(corpus)
    by = {s.path: s for s in scores}
    picked = [by["bach/bwv1.6.mxl"], by["ryansMammoth/FastenTheWigOnHerJig.abc"],
              by["palestrina/Agnus_01.krn"]]
    order = {s.label: [s] for s in picked}
    s = RenderSettings(per_label=1, seconds=30.0)
    got = score_set.render_scores(order, s, r, tmp_path / "renders", progress=False)
    assert got.failures == [] and len(got.tracks) == 3
    for t in got.tracks:
        audio, sr = sf.read(t["cached_file"])
        assert sr == 22050 and audio.shape == (30 * sr, 2)
        assert np.sqrt(np.mean(audio ** 2)) == pytest.approx(0.1, rel=0.1)  # not silent
        level = np.abs(audio).max(axis=1)[: 28 * sr].reshape(28, sr).max(axis=1)
        assert (level > 0.01).mean() > 0.8  # sound through the window, not one blip
        assert [i["program"] for i in t["instruments"]] == \
            draw_programs(0, t["work"], len(t["instruments"]))
        assert t["licence"] == "music21 corpus terms; soundfont MIT"
    assert by["palestrina/Agnus_01.krn"].track_id in {t["track_id"] for t in got.tracks}
    # The MIDI carries exactly the drawn programs.
    from music21 import midi

    info = score_to_midi(corpus / "bach/bwv1.6.mxl", tmp_path / "b.mid", by["bach/bwv1.6.mxl"], s)
    mf = midi.MidiFile()
    mf.open(str(tmp_path / "b.mid"))
    mf.read()
    mf.close()
    progs = sorted({e.data for t in mf.tracks for e in t.events
                    if e.type == midi.ChannelVoiceMessages.PROGRAM_CHANGE})
    assert progs == sorted({i["program"] for i in info["instruments"]})
    again = score_set.render_scores(order, s, r, tmp_path / "renders", progress=False)
    assert again.reused == 3
