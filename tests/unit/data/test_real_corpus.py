"""scripts/real_music.py: Debian copyright files, what counts as music, the tables and manifest
it writes (read back by the importer), and its refusals; one slow end-to-end run fetches a
real package and imports two of its tracks."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicrep.data.debian import FetchError, PackageInfo, first_licence_named, parse_copyright
from musicrep.data.importer import read_collection
from musicrep.data.real_corpus import (
    Soundtrack,
    check_out_dir,
    find_audio,
    licence_summary,
    scan_package,
    short_path,
    single_holder,
    table_rows,
    where_is,
    write_corpus,
)
from musicrep.errors import ConfigError
from tests.helpers import REPO

SCRIPT = REPO / "scripts" / "real_music.py"
IMPORT = REPO / "scripts" / "import_audio.py"
HAVE_APT = all(shutil.which(t) for t in ("apt-get", "apt-cache", "dpkg-deb"))
SR = 8000

DEP5 = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: fake

Files: *
Copyright: 2011-2021 Game Author <game@example.org>
License: GPL-2+

Files: music/theme.flac
       data/sound/cdtracks/z.wav
Copyright: Ann Composer (http://ann.example.org)
License: CC-BY-SA-3.0

Files: music/albums/*
Copyright: Bob One
           Cid Two
License: CC-BY-4.0
 Attribution 4.0 International.

Files: music/albums/a1/t2.flac
Copyright: 2020, Bob One <bob@example.org>
License: CC0-1.0
"""

CC_TEXT = """This package was debianized by someone.
Copyright (C) 2007-2008 Max Composer

License

   THE WORK IS PROVIDED UNDER THE TERMS OF THIS CREATIVE COMMONS PUBLIC LICENSE.
   e. "License Elements" means: Attribution, ShareAlike.
   ... with the same License Elements as this License (e.g., Attribution-ShareAlike 3.0 US)

Debian packaging is licensed under GPLv2 or later.
"""


# -------------------------------------------------------------------- copyright files


def test_dep5_last_matching_stanza_wins_and_patterns_match_path_tails():
    cr = parse_copyright(DEP5)
    assert cr.dep5 and len(cr.stanzas) == 4
    theme = cr.licence_for("usr/share/games/fake/music/theme.flac")
    assert (theme.licence, theme.how, theme.explicit) == ("CC-BY-SA-3.0", "Files: music/theme.flac", True)
    assert single_holder(theme.copyright) == "Ann Composer"
    # A later, more specific stanza overrides a wildcard one; the wildcard one names a group.
    assert cr.licence_for("usr/share/games/fake/music/albums/a1/t2.flac").licence == "CC0-1.0"
    t1 = cr.licence_for("usr/share/games/fake/music/albums/a1/t1.flac")
    assert (t1.licence, t1.explicit, single_holder(t1.copyright)) == ("CC-BY-4.0", False, "")
    # Patterns match whole trailing path parts only: "music/theme.flac" is not "xmusic/...".
    assert cr.licence_for("usr/share/xmusic/theme.flac").licence == "GPL-2+"
    assert cr.licence_for("anything/else.ogg").how == "Files: *"


def test_free_text_copyright_gives_the_first_licence_it_names():
    cr = parse_copyright(CC_TEXT)
    assert not cr.dep5
    m = cr.licence_for("usr/share/games/x/music/a.ogg")
    assert (m.licence, m.copyright, m.explicit) == ("CC-BY-SA-3.0", "2007-2008 Max Composer", False)
    wesnoth = ("License:\n  This program is free software; you can redistribute it under the terms "
               "of the GNU General Public License version 2\n  or at your option any later "
               "version.\n\n  The fonts are under the GNU Lesser General Public License "
               "version 2.1.\n")
    assert first_licence_named(wesnoth) == "GPL-2+"
    assert first_licence_named("under the GNU General Public License version 3 only") == "GPL-3"
    assert first_licence_named("Released under CC-BY-SA 4.0, see below.") == "CC-BY-SA-4.0"
    assert first_licence_named("Library: GNU Library General Public License, version 2") == "LGPL-2"
    assert first_licence_named("All rights reserved.") == ""
    assert parse_copyright("All rights reserved.\n").licence_for("a/music/b.ogg").how == \
        "copyright file text names no known licence"


def test_music_folders_win_over_effect_folders_and_name_the_kept_path():
    assert where_is(("usr", "share", "hyperrogue", "music")) == "music"
    assert where_is(("usr", "share", "hyperrogue", "sounds")) == "effect"
    assert where_is(("data", "sound", "cdtracks")) == "music"  # nexuiz's soundtrack folder
    assert where_is(("usr", "share", "games", "x", "data")) == "elsewhere"
    assert short_path(("usr", "share", "games", "wz", "music", "albums", "a", "t.opus")) == \
        "music/albums/a/t.opus"
    assert short_path(("data", "sound", "cdtracks", "x.ogg")) == "cdtracks/x.ogg"
    assert single_holder("Shawn Parrotte (http://www.shawnparrotte.com)") == "Shawn Parrotte"
    assert single_holder("2011-2021 Zeno Rogue <zeno@example.org>") == "Zeno Rogue"
    assert single_holder("Ann; Bob") == "" and single_holder("Ann and Bob") == ""


# -------------------------------------------------------------------- a package tree


def _tone(seconds: float, seed: int) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * rng.uniform(200, 1500) * t)).astype(np.float32)


def _fake_package(root: Path) -> Path:
    """An unpacked package with every case: tagged music, album.json music, an archive,
    a sound effect, a file outside music folders, a short one, a copy, an excluded one,
    a broken one."""
    tree = root / "tree"
    g = tree / "usr/share/games/fake"
    doc = tree / "usr/share/doc/fake-music"
    for d in (g / "music/albums/a1", g / "sounds", g / "data", doc):
        d.mkdir(parents=True)
    (doc / "copyright").write_text(DEP5, encoding="utf-8")
    with sf.SoundFile(g / "music/theme.flac", "w", SR, 1, format="FLAC") as f:
        f.title, f.artist = "The Theme", "Tag Artist"
        f.write(_tone(31, 0))
    sf.write(g / "music/plain_song-name.wav", _tone(32, 1), SR)
    for i, (name, artist) in enumerate((("tagged.flac", "paulb"), ("tagged2.flac", "<Unknown>"))):
        with sf.SoundFile(g / "music" / name, "w", SR, 1, format="FLAC") as f:
            f.title, f.artist, f.album = "Shared", artist, "http://junk.example.org"
            f.write(_tone(31, 10 + i))
    sf.write(g / "music/short.wav", _tone(5, 2), SR)
    shutil.copyfile(g / "music/plain_song-name.wav", g / "music/zz_copy.wav")
    sf.write(g / "music/dynamictest-1.wav", _tone(31, 3), SR)
    (g / "music/broken.ogg").write_bytes(b"OggS" + bytes(2000))
    sf.write(g / "sounds/boom.wav", _tone(31, 4), SR)
    sf.write(g / "data/loose.wav", _tone(31, 5), SR)
    for i, name in enumerate(("t1.flac", "t2.flac")):
        sf.write(g / "music/albums/a1" / name, _tone(31 + i, 6 + i), SR)
    (g / "music/albums/a1/album.json").write_text(json.dumps({
        "title": "First Album", "author": "Album Author",
        "tracks": [{"filename": "t1.flac", "title": "Track One", "author": "Bob One"}]}))
    sf.write(root / "z.wav", _tone(33, 8), SR)
    with zipfile.ZipFile(g / "data/music.pk3", "w") as z:
        z.write(root / "z.wav", "sound/cdtracks/z.wav")
        z.writestr("sound/cdtracks/readme.txt", "not audio")
    return tree


INFO = PackageInfo("fake-music", "1:2.0-1", "all", 123, "0" * 64)
ST = Soundtrack("Fake Game", exclude={"dynamictest-*": "a test loop"},
                composers={"plain_*": "Rule Composer"}, aliases={"paulb": "Paul Bee"})


def _scan(tmp_path: Path):
    tree = _fake_package(tmp_path)
    return scan_package(tree, INFO, tmp_path / "members", 30.0, {}, ST)


def test_scan_keeps_music_and_lists_every_dropped_file_with_its_reason(tmp_path):
    r = _scan(tmp_path)
    kept = {t["track_id"].removeprefix("fake-music/"): t for t in r.tracks}
    assert sorted(kept) == ["cdtracks/z", "music/albums/a1/t1", "music/albums/a1/t2",
                            "music/plain_song-name", "music/tagged", "music/tagged2",
                            "music/theme"]
    reasons = {d["source"].rsplit("/", 1)[-1]: d["reason"] for d in r.dropped}
    assert reasons["boom.wav"] == "sound effect"
    assert reasons["loose.wav"] == "not under a music folder"
    assert reasons["short.wav"] == "under 30 s"
    assert reasons["zz_copy.wav"] == "duplicate (same bytes as fake-music/music/plain_song-name)"
    assert reasons["dynamictest-1.wav"] == "excluded (a test loop)"
    assert reasons["broken.ogg"].startswith("undecodable")
    assert len(r.dropped) == 6

    def meta(key: str) -> tuple:
        t = kept[key]
        return tuple(t[k] for k in ("artist", "artist_from", "album", "album_from", "title",
                                    "title_from", "licence", "licence_from"))

    # The copyright stanza naming the file alone beats its artist tag; the title tag stays.
    assert meta("music/theme") == ("Ann Composer", "copyright file", "Fake Game", "soundtrack",
                                   "The Theme", "tag", "CC-BY-SA-3.0", "Files: music/theme.flac")
    # A tag's spelling resolved by the soundtrack's aliases; a junk artist tag names nobody;
    # a title tag two files share names neither; album tags are not used.
    assert meta("music/tagged")[:6] == ("Paul Bee", "tag", "Fake Game", "soundtrack", "Tagged",
                                        "file name")
    assert meta("music/tagged2")[:2] == ("", "unknown")
    assert meta("music/tagged")[6:] == ("GPL-2+", "Files: *")
    assert meta("music/albums/a1/t1") == ("Bob One", "album.json", "First Album", "album.json",
                                          "Track One", "album.json", "CC-BY-4.0",
                                          "Files: music/albums/*")
    assert meta("music/albums/a1/t2")[:6] == ("Bob One", "copyright file", "First Album",
                                              "album.json", "T2", "file name")
    assert kept["music/albums/a1/t2"]["licence"] == "CC0-1.0"
    assert meta("music/plain_song-name")[:2] == ("Rule Composer", "soundtrack table")
    assert kept["music/plain_song-name"]["title"] == "Plain song name"
    z = kept["cdtracks/z"]  # from the archive; its licence found by the archive's folder
    assert z["source"] == "usr/share/games/fake/data/music.pk3:sound/cdtracks/z.wav"
    assert (z["licence"], z["artist"], z["path"]) == ("CC-BY-SA-3.0", "Ann Composer",
                                                       "fake-music/cdtracks/z.wav")
    for t in r.tracks:
        assert t["sha256"] == hashlib.sha256(Path(t["cached_file"]).read_bytes()).hexdigest()
        assert t["duration_s"] == pytest.approx(sf.info(t["cached_file"]).duration, abs=1e-3)
        assert (t["package"], t["version"], t["genre"]) == ("fake-music", "1:2.0-1", "Fake Game")
    assert kept["music/tagged"]["tags"]["album"] == "http://junk.example.org"  # kept raw
    s = r.summary()
    assert (s["tracks"], s["copyright_format"]) == (7, "DEP-5")
    assert s["composers"] == ["Ann Composer", "Bob One", "Paul Bee", "Rule Composer"]
    assert s["licences"] == {"CC-BY-SA-3.0": 2, "CC-BY-4.0": 1, "CC0-1.0": 1, "GPL-2+": 3}


def test_a_remake_shares_the_work_of_the_track_it_remakes(tmp_path):
    st = Soundtrack("Fake Game", versions={"music/tagged2": "music/tagged"})
    r = scan_package(_fake_package(tmp_path), INFO, tmp_path / "members", 30.0, {}, st)
    work = {row["track_id"].removeprefix("fake-music/"): row["work"]
            for row in table_rows(r.tracks, works=True)[0]}
    assert work["music/tagged2"] == work["music/tagged"] == "fake-music/music/tagged"
    assert work["music/theme"] == "fake-music/music/theme"  # a recording is its own work
    assert "work" not in table_rows(r.tracks)[0][0]  # a soundtrack-only table has no works


def test_the_licence_summary_counts_only_the_tracks_asked_for(tmp_path):
    r = _scan(tmp_path)
    m = write_corpus(tmp_path / "out", [r], {"packages": ["fake-music"], "min_seconds": 30.0})
    everything = licence_summary(m)
    assert everything["licences"] == {"GPL-2+": 3, "CC-BY-SA-3.0": 2, "CC-BY-4.0": 1,
                                      "CC0-1.0": 1}
    assert everything["sources"]["fake-music"]["version"] == "1:2.0-1"
    some = licence_summary(m, {"fake-music/music/theme", "fake-music/cdtracks/z"})
    assert some["tracks"] == 2 and some["licences"] == {"CC-BY-SA-3.0": 2}
    assert "scores" not in some and some["file_rights"] == {}


def test_archive_audio_is_taken_out_once_and_a_broken_archive_is_one_error(tmp_path):
    tree = tmp_path / "tree" / "data"
    tree.mkdir(parents=True)
    sf.write(tmp_path / "a.wav", _tone(1, 0), SR)
    with zipfile.ZipFile(tree / "music.pk3", "w") as z:  # stored: its bytes are the file's
        z.write(tmp_path / "a.wav", "music/a.wav")
        z.writestr("music/notes.txt", "not audio")
    first = find_audio(tmp_path / "tree", tmp_path / "members")
    assert [f.source for f in first] == ["data/music.pk3:music/a.wav"]
    assert first[0].logical == "data/music/a.wav"
    assert first[0].file.read_bytes() == (tmp_path / "a.wav").read_bytes()
    stamp = first[0].file.stat().st_mtime_ns
    again = find_audio(tmp_path / "tree", tmp_path / "members")  # reused, not rewritten
    assert [f.file for f in again] == [first[0].file]
    assert again[0].file.stat().st_mtime_ns == stamp

    data = bytearray((tree / "music.pk3").read_bytes())
    at = data.index(b"RIFF") + 1000  # inside the stored WAV's samples: its CRC fails
    data[at: at + 10] = bytes(x ^ 0xFF for x in data[at: at + 10])
    (tree / "music.pk3").write_bytes(bytes(data))
    with pytest.raises(FetchError, match="music.pk3: cannot read the archive"):
        find_audio(tmp_path / "tree", tmp_path / "fresh")
    assert not list((tmp_path / "fresh").rglob("*.wav"))  # nothing half-written is left


def test_the_tables_are_what_the_importer_reads_and_a_rewrite_is_identical(tmp_path):
    r = _scan(tmp_path)
    out = tmp_path / "out"
    m = write_corpus(out, [r], {"packages": ["fake-music"], "min_seconds": 30.0})
    col = read_collection(out / "tracks.csv", out / "playlists.csv")
    assert len(col.tracks) == 7
    assert {tuple(t["labels"]) for t in col.tracks} == {(("Fake Game", None),)}
    by_id = {t["id"]: t["track_id"].removeprefix("fake-music/") for t in col.tracks}
    got = {pl["title"]: sorted(by_id[i] for i in pl["songs"]) for pl in col.playlists}
    assert got == {  # one per (soundtrack, album, composer)
        "Fake Game: Ann Composer": ["cdtracks/z", "music/theme"],
        "First Album: Bob One": ["music/albums/a1/t1", "music/albums/a1/t2"],
        "Fake Game: Rule Composer": ["music/plain_song-name"],
        "Fake Game: Paul Bee": ["music/tagged"],
        "Fake Game": ["music/tagged2"],  # composer unknown
    }
    for t in col.tracks:  # every path is a link to the very file the manifest describes
        rec = next(x for x in m["tracks"] if x["track_id"] == t["track_id"])
        data = (out / "audio" / t["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == rec["sha256"]
        for key in ("package", "version", "licence", "sha256", "duration_s", "source"):
            assert rec[key] not in ("", None), key
    saved = json.loads((out / "manifest.json").read_text())
    assert saved["made_by"] == "real_music" and saved["totals"]["tracks"] == 7
    assert len(saved["dropped"]) == 6 and "cached_file" not in saved["tracks"][0]
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    write_corpus(out, [r], {"packages": ["fake-music"], "min_seconds": 30.0})
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert not [p for p in [*tmp_path.iterdir(), *out.iterdir()] if p.name.startswith(".")]


def test_an_out_folder_with_other_files_is_refused(tmp_path):
    check_out_dir(tmp_path / "new")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="notes.txt"):
        check_out_dir(tmp_path / "mine")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        check_out_dir(tmp_path / "f")


# -------------------------------------------------------------------- the command line


def _cli(args: list[str], env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)


def test_without_package_tools_it_says_so_in_one_line(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    r = _cli(["--out", str(tmp_path / "o")], env={**os.environ, "PATH": str(empty)})
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "no apt-get, apt-cache, dpkg-deb" in r.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(not HAVE_APT, reason="needs apt-cache (a Debian or Ubuntu machine)")
def test_a_package_apt_does_not_know_is_refused_before_any_download(tmp_path):
    r = _cli(["--out", str(tmp_path / "o"), "--packages", "singularity-music,no-such-pkg-xyz"])
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == ("real_music: error: no-such-pkg-xyz: apt knows no such package "
                                "(run `apt-get update` once, or check the name against "
                                "`apt-cache search`)")
    assert not (tmp_path / "o").exists()


def test_a_foreign_out_folder_is_refused(tmp_path):
    if not HAVE_APT:
        pytest.skip("needs apt-get, apt-cache and dpkg-deb (checked first)")
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "thesis.tex").write_text("x")
    r = _cli(["--out", str(tmp_path / "o"), "--packages", "singularity-music"])
    assert r.returncode == 2 and "thesis.tex" in r.stderr and r.stderr.count("\n") == 1
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["thesis.tex"]


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_APT, reason="needs apt-get, apt-cache and dpkg-deb")
def test_a_real_package_end_to_end_then_import_two_tracks(tmp_path):
    """Fetches singularity-music (52 MB; MUSICREP_DEB_CACHE keeps it between runs), checks
    what the corpus says about it, and imports two of its tracks."""
    cache = Path(os.environ.get("MUSICREP_DEB_CACHE", tmp_path / "cache"))
    out = tmp_path / "real"
    r = _cli(["--out", str(out), "--cache", str(cache), "--packages", "singularity-music"],
             timeout=1200)
    if r.returncode == 1 and "apt-get download failed" in r.stderr:
        pytest.skip(f"no network to the Debian archive: {r.stderr.strip()}")
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "manifest.json").read_text())
    pkg = m["packages"][0]
    assert pkg["package"] == "singularity-music" and pkg["tracks"] >= 10
    assert set(pkg["licences"]) == {"CC-BY-SA-3.0"}
    assert all(t["duration_s"] >= 30 for t in m["tracks"])
    with open(out / "tracks.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["genres"] for r in rows} == {"Endgame Singularity"}
    two = rows[:2]
    with open(tmp_path / "t.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(two)
    with open(tmp_path / "p.csv", "w", newline="") as fh:
        fh.write("playlist_id,track_id\n" + "".join(f"p,{x['track_id']}\n" for x in two))
    again = _cli(["--out", str(out), "--cache", str(cache), "--packages", "singularity-music"])
    assert again.returncode == 0 and "(cached)" in again.stderr
    imp = subprocess.run([sys.executable, str(IMPORT), "--audio-dir", str(out / "audio"),
                          "--tracks", str(tmp_path / "t.csv"), "--playlists",
                          str(tmp_path / "p.csv"), "--out", str(tmp_path / "melon"),
                          "--workers", "1", "--quiet"], capture_output=True, text=True,
                         timeout=600, check=False)
    assert imp.returncode == 0, imp.stderr
    assert "2 of 2 tracks with mels" in imp.stdout
