"""A corpus of real music from Debian's game soundtracks, written as the two tables
``import_audio`` reads (tracks.csv, playlists.csv) plus the audio they name.

Why these: Debian ships several free game soundtracks as packages, so anyone with apt can
fetch the same files (checked against the archive's SHA256), each with a licence in its
copyright file. The defaults (``DEFAULT_PACKAGES``) are six soundtracks of ~20-65 tracks
each; 0ad-data (1.4 GB), supertuxkart-data (630 MB) and widelands-data (380 MB) also hold
music but are mostly other game data, so they are left out (``--packages`` can add them).

What is music: an audio file under a music folder (``music``, ``cdtracks``, ``albums``,
...; zip/pk3 archives are opened), at least ``min_seconds`` long (30 s: Melon's segment
is 20-50 s; shorter files are jingles and stingers), and not a byte-identical copy of
one already kept. Audio under a sound-effect folder (``sounds``, ``sfx``, ...) or outside
any music folder is dropped, and so are files a soundtrack's entry excludes by name;
every dropped file is listed in the manifest with its reason.

What the labels are, honestly: real recordings come with no genre labels or playlists, so
the two views the method needs are stand-ins, and results on this corpus must be read
as such. The genre label of a track is its soundtrack (one label per package: "Battle
for Wesnoth", "HyperRogue", ...): a game's music shares a brief, an instrumentation and
often a composer, so it is the closest thing to a style label these files carry, and it
is a fact about the file, not a guess. The playlists are the finest grouping the files
themselves declare: one per (soundtrack, album, composer), from tags, the soundtrack's
album.json or its copyright file; the tracks of an album whose composer is unknown share
one more. They are not listening data: their co-occurrence says "same composer on the
same album", so the CF view here learns composer identity, a finer and partly different
signal from the soundtrack label, and playlist continuation means "more by this composer".

Metadata (``describe``), most trusted first. Composer: the soundtrack's table (file-name
rules and tag spellings, each backed by the package's own copyright file or tags), the
copyright stanza naming the file alone with one holder, album.json, the file's tag.
Album: album.json, else the soundtrack (album tags here are URLs and notes as often as
albums). Title: album.json, the tag (unless several files carry the same one: a copied
tag), the file name. The manifest records where each value came from, all raw tags, and
for every file: the package and version, its path in the package, licence (from
``usr/share/doc/PKG/copyright``, see :mod:`musicrep.data.debian`), SHA256 and duration.

Output folder (``write_corpus``): ``audio/<package>/...`` (hard links into the cache, a
copy where the cache is on another file system), ``tracks.csv``, ``playlists.csv``,
``manifest.json`` (written last: its presence means the folder is complete). Rendered
scores (``--scores``, :mod:`musicrep.data.score_set`) add their audio under
``audio/music21/``, a ``scores`` section to the manifest, and the columns ``work``,
``era`` and ``form`` to tracks.csv (the importer ignores columns it does not know). The cache
(``cache/debs``: the .deb files, ``cache/trees``: unpacked, ``cache/members``: audio taken
out of archives) is reused by a rerun.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import warnings
import zipfile
import zlib
from collections import Counter, defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from ..audio import AUDIO_EXTENSIONS
from ..errors import ConfigError
from ..io import atomic_path, recover_dir, swap_in_dir, temp_dir_beside, write_json
from ..version import __version__
from .debian import (
    DONE_MARK,
    CopyrightFile,
    FetchError,
    PackageInfo,
    parse_copyright,
    sha256_of,
)

if TYPE_CHECKING:
    from .score_set import ScoreSet

DEFAULT_PACKAGES = ("wesnoth-1.16-music", "ufoai-music", "warzone2100-music", "nexuiz-music",
                    "singularity-music", "hyperrogue-music")
MIN_SECONDS = 30.0
MUSIC_DIRS = frozenset({"music", "musics", "cdtracks", "soundtrack", "soundtracks", "albums",
                        "ost", "bgm"})
EFFECT_DIRS = frozenset({"sound", "sounds", "sfx", "effects", "voice", "voices", "ambience",
                         "ambient", "speech"})
ARCHIVES = frozenset({".zip", ".pk3", ".pk4"})
MANIFEST = "manifest.json"
TRACKS = "tracks.csv"
PLAYLISTS = "playlists.csv"
AUDIO = "audio"
MADE_BY = "real_music"
TRACK_COLUMNS = ("track_id", "path", "genres", "artist", "album", "title")


@dataclass(frozen=True)
class Soundtrack:
    """How one package's music is labelled: its genre label, files to leave out, and
    composers its tags or file names spell inconsistently.

    ``composers`` maps a file-name glob to the composer; each entry is backed by the
    package itself (the holder its copyright stanza lists under that name or handle,
    or the tag its sibling files carry), never by outside knowledge. ``aliases`` maps
    a tag's spelling to the one name of that person. ``versions`` maps the path of a
    remake (from the music folder on, no extension) to the path of the track it remakes,
    as its own title says ("Menu Theme - Enhanced", "SixtyFour_Revisited"): the two
    share a ``work``, so a split by work keeps a tune and its remake on one side.
    """

    label: str
    exclude: dict[str, str] = field(default_factory=dict)  # file-name glob -> reason
    composers: dict[str, str] = field(default_factory=dict)  # file-name glob -> composer
    aliases: dict[str, str] = field(default_factory=dict)  # tag value -> composer
    versions: dict[str, str] = field(default_factory=dict)  # remake path -> original path


CRYSTAN = 'Christian "Crystan" Hoffmann'
ELYSIS = 'Gerd "elysis" Raudenbusch'
SOUNDTRACKS = {
    "wesnoth-1.16-music": Soundtrack("Battle for Wesnoth"),
    "ufoai-music": Soundtrack(
        "UFO Alien Invasion",
        exclude={"dynamictest-*": "a test loop of the game's dynamic-music engine, not a track"},
        # Half the files are untagged; their names carry the handle of one holder of
        # the copyright stanza that lists them.
        composers={"Crystan-*": CRYSTAN, "van_*": 'Manuel "Vanethian" Marino',
                   "Psymong*": "Simon Green (Psymong)", "Marine*": '"Marine" Baklund',
                   "*Slippycurb*": "Slippycurb", "karlmacklin_*": "Karl Macklin",
                   "azrael*": "azrael1322", "David0*": "David Reeves (Destructavator)",
                   "Alex*": "Alex Parker"},
        aliases={"www.indiedb.com/members/crystan": CRYSTAN, "paulb": "Paul Bee"}),
    "warzone2100-music": Soundtrack("Warzone 2100", versions={
        # album.json titles "Menu Theme - Enhanced" and "Track 3 - Enhanced"
        "music/albums/aftermath_soundtrack/menu_enhanced": "music/menu",
        "music/albums/aftermath_soundtrack/track3_enhanced":
            "music/albums/original_soundtrack/track3"}),
    "nexuiz-music": Soundtrack("Nexuiz", aliases={
        "Gerd (elysis) Raudenbusch": ELYSIS, "elysis": ELYSIS, "www.elysis.de": ELYSIS},
        versions={"cdtracks/sixtyfour_revisited": "cdtracks/sixtyfour_"}),  # tag titles
    "singularity-music": Soundtrack("Endgame Singularity"),
    "hyperrogue-music": Soundtrack("HyperRogue"),
}
#: Tag values that name nobody.
NO_ARTIST = frozenset({"", "<unknown>", "unknown", "unknown artist", "various", "various artists"})


def soundtrack_for(package: str) -> Soundtrack:
    """The package's entry, or one named after the package for a package not in the table."""
    if package in SOUNDTRACKS:
        return SOUNDTRACKS[package]
    return Soundtrack(re.sub(r"-(music|data)$", "", package))


# ------------------------------------------------------------------- finding the music


def where_is(parts: tuple[str, ...]) -> str:
    """'music', 'effect' or 'elsewhere' for a file whose folders are `parts` (file name
    excluded). A music folder wins over an effect folder above it (nexuiz keeps its
    soundtrack in ``sound/cdtracks``)."""
    low = [p.lower() for p in parts]
    if any(p in MUSIC_DIRS for p in low):
        return "music"
    if any(p in EFFECT_DIRS for p in low):
        return "effect"
    return "elsewhere"


def short_path(parts: tuple[str, ...]) -> str:
    """The path kept for a music file: from its first music folder on."""
    low = [p.lower() for p in parts[:-1]]
    first = next(i for i, p in enumerate(low) if p in MUSIC_DIRS)
    return "/".join(parts[first:])


@dataclass
class Found:
    """An audio file found in a package: where it is in the package and in the cache."""

    source: str  # path in the package; "archive.pk3:member" for archive members
    logical: str  # the path copyright patterns are matched against
    file: Path


def _archive_members(archive: Path, rel: str, members_root: Path) -> list[Found]:
    """The audio members of a zip/pk3 `archive`, taken out into `members_root/rel` once
    (built beside and renamed, so an interrupted run leaves nothing half-written)."""
    final = members_root / rel
    if not (final / DONE_MARK).is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_dir_beside(final)
        try:
            _take_audio_out(archive, tmp)
            (tmp / DONE_MARK).write_text(archive.name + "\n", encoding="utf-8")
            if final.exists():
                shutil.rmtree(final)
            os.rename(tmp, final)
        except (zipfile.BadZipFile, zlib.error, EOFError) as e:
            raise FetchError(f"{archive}: cannot read the archive ({e}); delete the cache "
                             "folder's copy and rerun") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    base = str(PurePosixPath(rel).parent)
    return [Found(f"{rel}:{p.relative_to(final).as_posix()}",
                  f"{base}/{p.relative_to(final).as_posix()}", p)
            for p in sorted(final.rglob("*")) if p.is_file() and p.name != DONE_MARK]


def _take_audio_out(archive: Path, into: Path) -> None:
    """Copy the audio members of a zip archive into the folder `into`."""
    with zipfile.ZipFile(archive) as z:
        for info in z.infolist():
            name = PurePosixPath(info.filename)
            if info.is_dir() or name.suffix.lower() not in AUDIO_EXTENSIONS:
                continue
            if name.is_absolute() or ".." in name.parts:
                continue  # would escape the folder; never an audio track
            target = into.joinpath(*name.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)


def find_audio(tree: Path, members_root: Path) -> list[Found]:
    """Every audio file in an unpacked package, archives opened, in a stable order."""
    found = []
    for p in sorted(tree.rglob("*")):
        if not p.is_file() or p.is_symlink():
            continue
        rel = p.relative_to(tree).as_posix()
        ext = p.suffix.lower()
        if ext in AUDIO_EXTENSIONS:
            found.append(Found(rel, rel, p))
        elif ext in ARCHIVES and zipfile.is_zipfile(p):
            found.extend(_archive_members(p, rel, members_root))
    return found


# ------------------------------------------------------------------ probing one file


@dataclass
class Probe:
    duration: float | None
    sample_rate: int = 0
    channels: int = 0
    format: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    error: str = ""


TAG_FIELDS = ("title", "artist", "album", "date", "genre", "copyright", "license", "comment")


def probe(path: Path) -> Probe:
    """Duration, format and tags, from the header (soundfile; librosa/audioread when
    libsndfile cannot open the file, which gives no tags)."""
    import soundfile as sf

    why = "libsndfile reports no samples"
    try:
        with sf.SoundFile(str(path)) as f:
            tags = {k: str(getattr(f, k, "") or "").strip() for k in TAG_FIELDS}
            if f.frames > 0 and f.samplerate > 0:
                return Probe(f.frames / f.samplerate, int(f.samplerate), int(f.channels),
                             f"{f.format}/{f.subtype}", {k: v for k, v in tags.items() if v})
    except Exception as e:  # noqa: BLE001 - any decoder error: try the other decoder
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
    try:
        import librosa

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Probe(float(librosa.get_duration(path=str(path))), format="audioread")
    except Exception as e:  # noqa: BLE001 - the file's problem, reported as its reason
        line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return Probe(None, error=f"undecodable (soundfile: {why}; audioread: {line})")


# ------------------------------------------------------------------ metadata


def humanize(stem: str) -> str:
    """A title from a file name: ``breaking_the_chains`` -> ``Breaking the chains``."""
    words = re.sub(r"[_\s]+|(?<=[a-z0-9])-(?=[a-z])", " ", stem).strip()
    return words[:1].upper() + words[1:] if words.islower() else words


def single_holder(holders: str) -> str:
    """The one person a copyright field names (years, URLs and e-mails removed), or ""
    when it names several: a group stanza does not say which of them wrote a file."""
    if not holders or ";" in holders:
        return ""
    name = re.sub(r"\(?\s*(https?://|www\.)\S*\)?|<[^>]*>", "", holders)
    name = re.sub(r"^[\d\s,\-–]+", "", name).strip(" ,")
    return "" if re.search(r"\band\b|,|&", name) else name


def _album_json(directory: Path, cache: dict[Path, dict]) -> dict:
    if directory not in cache:
        p = directory / "album.json"
        try:
            cache[directory] = json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}
        except (OSError, ValueError):
            cache[directory] = {}
    return cache[directory]


def describe(found: Found, pr: Probe, st: Soundtrack, lic_author: str,
             albums: dict[Path, dict], copied_titles: set[str]) -> dict[str, str]:
    """artist/album/title, each with where it came from (``*_from``).

    Composer: the soundtrack's table, the copyright stanza naming this file alone with
    one holder, album.json, the file's tag (aliases resolved). Album: album.json, else
    the soundtrack (a package is one soundtrack; its album tags are URLs and notes as
    often as albums, so they stay in the manifest's tags only). Title: album.json, the
    tag unless several files of the package carry it (a copied tag), the file name.
    """
    aj = _album_json(found.file.parent, albums)
    entry = next((t for t in aj.get("tracks", []) if t.get("filename") == found.file.name), {})
    tag_artist = pr.tags.get("artist", "").strip()
    tag_artist = "" if tag_artist.lower() in NO_ARTIST else st.aliases.get(tag_artist, tag_artist)
    rule = next((c for g, c in st.composers.items() if fnmatch(found.file.name, g)), "")
    tag_title = pr.tags.get("title", "").strip()
    choices = {
        "artist": [(rule, "soundtrack table"), (lic_author, "copyright file"),
                   (entry.get("author") or aj.get("author"), "album.json"), (tag_artist, "tag")],
        "album": [(aj.get("title"), "album.json"), (st.label, "soundtrack")],
        "title": [(entry.get("title"), "album.json"),
                  ("" if tag_title in copied_titles else tag_title, "tag"),
                  (humanize(found.file.stem), "file name")],
    }
    out = {}
    for key, options in choices.items():
        value, how = next(((str(v).strip(), h) for v, h in options if v and str(v).strip()),
                          ("", "unknown"))
        out[key], out[f"{key}_from"] = value, how
    return out


# ------------------------------------------------------------------ one package


@dataclass
class PackageResult:
    info: PackageInfo
    soundtrack: Soundtrack
    copyright_format: str
    tracks: list[dict]
    dropped: list[dict]

    def summary(self) -> dict:
        """Counts for the manifest and the summary line."""
        secs = sum(t["duration_s"] for t in self.tracks)
        return {
            "package": self.info.name, "version": self.info.version,
            "soundtrack": self.soundtrack.label, "copyright_format": self.copyright_format,
            "tracks": len(self.tracks), "hours": round(secs / 3600, 3),
            "composers": sorted({t["artist"] for t in self.tracks if t["artist"]}),
            "licences": dict(Counter(t["licence"] or "unknown" for t in self.tracks)),
            "dropped": dict(Counter(d["reason"].split(" (")[0] for d in self.dropped)),
        }


def read_copyright(tree: Path, package: str) -> CopyrightFile:
    p = tree / "usr" / "share" / "doc" / package / "copyright"
    if not p.is_file():
        return CopyrightFile(False)
    return parse_copyright(p.read_text(encoding="utf-8", errors="replace"))


def scan_package(tree: Path, info: PackageInfo, members_root: Path,
                 min_seconds: float = MIN_SECONDS, seen: dict[str, str] | None = None,
                 soundtrack: Soundtrack | None = None) -> PackageResult:
    """The music of one unpacked package: kept tracks (manifest records) and dropped files.

    Args:
        tree: the unpacked package (``dpkg-deb -x``).
        info: its name and version (what the manifest records).
        members_root: where audio taken out of its archives is cached.
        min_seconds: shorter files are dropped.
        seen: sha256 -> track_id of tracks kept so far (across packages); updated.
        soundtrack: its label and exclusions (default: ``soundtrack_for(info.name)``).
    """
    st = soundtrack or soundtrack_for(info.name)
    seen = {} if seen is None else seen
    cr = read_copyright(tree, info.name)
    kept, dropped = [], []
    for f in find_audio(tree, members_root):
        parts = PurePosixPath(f.logical).parts
        drop = {"package": info.name, "source": f.source}
        kind = where_is(parts[:-1])
        if kind != "music":
            dropped.append({**drop, "reason": "sound effect" if kind == "effect"
                            else "not under a music folder"})
            continue
        why = next((r for g, r in st.exclude.items() if fnmatch(f.file.name, g)), None)
        if why:
            dropped.append({**drop, "reason": f"excluded ({why})"})
            continue
        pr = probe(f.file)
        if pr.duration is None:
            dropped.append({**drop, "reason": pr.error})
            continue
        if pr.duration < min_seconds:
            dropped.append({**drop, "reason": f"under {min_seconds:g} s",
                            "duration_s": round(pr.duration, 2)})
            continue
        digest = sha256_of(f.file)
        if digest in seen:
            dropped.append({**drop, "reason": f"duplicate (same bytes as {seen[digest]})"})
            continue
        path = f"{info.name}/{short_path(parts)}"
        seen[digest] = str(PurePosixPath(path).with_suffix(""))
        kept.append((f, pr, digest, path))
    titles = Counter(pr.tags.get("title", "").strip() for _, pr, _, _ in kept)
    copied = {t for t, n in titles.items() if t and n > 1}
    tracks, albums = [], {}
    for f, pr, digest, path in kept:
        lic = cr.licence_for(f.logical)
        author = single_holder(lic.copyright) if lic.explicit else ""
        track_id = seen[digest]
        original = st.versions.get(track_id.split("/", 1)[1])
        tracks.append({
            "track_id": track_id, "path": path, "package": info.name,
            "version": info.version, "source": f.source, "sha256": digest,
            "duration_s": round(pr.duration, 3), "sample_rate": pr.sample_rate,
            "channels": pr.channels, "format": pr.format, "genre": st.label,
            **describe(f, pr, st, author, albums, copied),
            "licence": lic.licence, "licence_from": lic.how, "copyright": lic.copyright,
            "tags": pr.tags, "cached_file": str(f.file),
            **({"work": f"{info.name}/{original}"} if original else {}),
        })
    return PackageResult(info, st, "DEP-5" if cr.dep5 else "free text", tracks, dropped)


# ------------------------------------------------------------------ the tables


def genre_label(label: str) -> str:
    """A soundtrack name as the importer's label: no '/' (Major/Detail) nor ';' (list)."""
    return re.sub(r"\s*[/;]\s*", " - ", label).strip()


def playlist_key(t: dict) -> tuple[str, str, str]:
    return (t["package"], t["album"], t["artist"])


def table_rows(tracks: list[dict], works: bool = False) -> tuple[list[dict], list[dict]]:
    """tracks.csv and playlists.csv rows: genre = soundtrack (or a rendered score's era or
    form), one playlist per (source, album, composer) (see the module docstring for why).
    With `works`, rows also carry ``work``, ``era`` and ``form`` (a recording is its own
    work, unless its soundtrack lists it as a remake: ``Soundtrack.versions``); the
    importer reads the columns it knows and ignores these."""
    rows = []
    for t in tracks:
        row = {"track_id": t["track_id"], "path": t["path"], "genres": genre_label(t["genre"]),
               "artist": t["artist"].replace(";", ","), "album": t["album"], "title": t["title"]}
        if works:
            row.update(work=t.get("work", t["track_id"]), era=t.get("era", ""),
                       form=t.get("form", ""))
        rows.append(row)
    groups: dict[tuple, list[str]] = defaultdict(list)
    for t in tracks:
        groups[playlist_key(t)].append(t["track_id"])
    playlists = []
    for (package, album, artist), ids in groups.items():
        pid = "/".join(x for x in (package, album, artist or "unknown composer"))
        title = f"{album}: {artist}" if artist else album
        playlists += [{"playlist_id": pid, "track_id": i, "title": title if k == 0 else "",
                       "tags": ""} for k, i in enumerate(ids)]
    return rows, playlists


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed: copy
        shutil.copyfile(src, dst)


def check_out_dir(out: Path) -> None:
    """ConfigError unless `out` is new, empty, or a folder this tool wrote (its manifest,
    or only a cache and its own outputs from an interrupted run)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"--out {out}: is a file, expected a folder")
    ours = {MANIFEST, TRACKS, PLAYLISTS, AUDIO, "cache"}
    manifest = out / MANIFEST
    if manifest.is_file():
        try:
            if json.loads(manifest.read_text(encoding="utf-8")).get("made_by") == MADE_BY:
                return
        except (OSError, ValueError):
            pass
    other = sorted(p.name for p in out.iterdir() if p.name not in ours
                   and not p.name.startswith("."))
    if other or manifest.is_file():
        raise ConfigError(f"--out {out}: holds files real_music did not write "
                          f"({', '.join(other[:3]) or MANIFEST}); give a new or empty folder")


def write_corpus(out: Path, results: list[PackageResult], settings: dict,
                 scores: ScoreSet | None = None) -> dict:
    """Write audio/, tracks.csv, playlists.csv and manifest.json into `out` (manifest last).

    `scores`, when given, adds the rendered scores (:mod:`musicrep.data.score_set`):
    their audio under ``audio/music21/``, their rows (and the ``work``, ``era`` and
    ``form`` columns for every row), and a ``scores`` section in the manifest.
    The audio folder is built beside the old one and swapped in, so a rerun never leaves
    the folder without complete audio; the tables and the manifest are renamed into place.
    Returns the manifest.
    """
    out.mkdir(parents=True, exist_ok=True)
    rendered = scores.tracks if scores is not None else []
    tracks = [t for r in results for t in r.tracks] + rendered
    audio = out / AUDIO
    recover_dir(audio)
    tmp = temp_dir_beside(audio)
    try:
        for t in tracks:
            _link_or_copy(Path(t["cached_file"]), tmp / t["path"])
        swap_in_dir(tmp, audio)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows, playlists = table_rows(tracks, works=scores is not None)
    _write_csv(out / TRACKS, rows, list(rows[0]) if rows else list(TRACK_COLUMNS))
    _write_csv(out / PLAYLISTS, playlists, ["playlist_id", "track_id", "title", "tags"])
    labels = {"genres": "the soundtrack (one label per package)",
              "playlists": "one per (soundtrack, album, composer)"}
    summary = scores.summary() if scores is not None else None
    if summary is not None:
        labels.update(genres="the soundtrack (one label per package); for a rendered score "
                      "its era or, for a fiddle tune, its form", scores=summary["labels"],
                      playlists="one per (soundtrack or music21, album, composer)")
    manifest = {
        "made_by": MADE_BY, "musicrep_version": __version__, **settings, "labels": labels,
        "totals": {"tracks": len(tracks),
                   "hours": round(sum(t["duration_s"] for t in tracks) / 3600, 3),
                   "playlists": len({p["playlist_id"] for p in playlists}),
                   "dropped": sum(len(r.dropped) for r in results),
                   **({"scores": len(rendered), "score_failures": len(scores.failures)}
                      if scores is not None else {})},
        "packages": [{**r.summary(), "architecture": r.info.architecture,
                      "deb_sha256": r.info.sha256, "deb_size": r.info.size} for r in results],
        **({"scores": summary} if summary is not None else {}),
        "tracks": [{k: v for k, v in t.items() if k != "cached_file"} for t in tracks],
        "dropped": [d for r in results for d in r.dropped],
    }
    write_json(out / MANIFEST, manifest)
    return manifest


# ------------------------------------------------------------------ rights


def licence_summary(manifest: dict, track_ids: Collection[str] | None = None) -> dict:
    """What ``manifest`` (``write_corpus``'s) says about the rights of some of its tracks
    (all when ``track_ids`` is None): the tracks per licence; per source (package or
    music21) its version and licences; for rendered scores the music21 corpus terms, the
    soundfont's package, version, licence and copyright, the synthesiser, and the rights
    score files state about themselves. A model trained on these tracks inherits the
    question of these terms, so its card lists them (``cli/real_model_card.py``)."""
    tracks = [t for t in manifest.get("tracks", [])
              if track_ids is None or t.get("track_id") in track_ids]
    sources: dict[str, dict] = {}
    for t in tracks:
        src = sources.setdefault(t.get("package", "unknown"),
                                 {"version": t.get("version", ""), "tracks": 0,
                                  "licences": Counter()})
        src["tracks"] += 1
        src["licences"][t.get("licence") or "unknown"] += 1
    out: dict = {
        "tracks": len(tracks),
        "licences": dict(Counter(t.get("licence") or "unknown" for t in tracks).most_common()),
        "sources": {k: {**v, "licences": dict(v["licences"].most_common())}
                    for k, v in sorted(sources.items())},
        "file_rights": dict(Counter(" ".join(t["file_rights"].split())
                                    for t in tracks if t.get("file_rights")).most_common()),
    }
    sc = manifest.get("scores")
    if sc and any("era" in t or "form" in t for t in tracks):
        out["scores"] = {"source": sc.get("source", ""),
                         "corpus_licence": sc.get("corpus_licence", ""),
                         "soundfont": sc.get("soundfont", {}),
                         "synthesizer": sc.get("synthesizer", {})}
    return out


__all__ = ["DEFAULT_PACKAGES", "MIN_SECONDS", "SOUNDTRACKS", "PackageResult", "Soundtrack",
           "check_out_dir", "find_audio", "licence_summary", "probe", "scan_package",
           "single_holder", "soundtrack_for", "table_rows", "where_is", "write_corpus"]
