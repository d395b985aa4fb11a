"""Compositions from music21's corpus as real music with labels: which scores, their
label (an era for art music, a form for fiddle tunes), the work each belongs to, a
balanced seeded selection, and the General MIDI instruments each is played on.

Why scores: recordings with trustworthy style labels are rare under free licences, but
music21 (the field's standard toolkit, pinned in requirements.txt) ships ~3,000 encoded
compositions whose composer and form are facts of the file. Rendering them
(:mod:`musicrep.data.score_render`) gives audio whose label nobody had to guess.

The labels, one per score, from the collection it is in (``COLLECTIONS``, each with the
dates behind it):

- era, by composer: medieval = the Italian trecento (14th century) and Ciconia
  (c. 1370-1412); renaissance = Josquin (c. 1450-1521), Palestrina (1525-1594),
  Lusitano (fl. 1550s) and Monteverdi, whose works in the corpus are his madrigal
  books 3-5 (1592-1605), polyphonic madrigals of the late renaissance (his operas and
  later books, the early baroque, are not in it); baroque = J. S. Bach, Handel,
  Corelli; classical = Haydn, Mozart, Beethoven (his late quartets included, as usual
  in such a coarse scheme). Composers with too few scores for a balanced label
  (Schubert, Schumann, Chopin, Verdi: ~15 in all) or between eras (C. P. E. Bach) are
  left out.
- form, for the fiddle tunes of Ryan's Mammoth Collection (Boston, 1883): reel, jig,
  hornpipe or strathspey, from the file name (``AcaciaReel.abc``) and the ABC ``R:``
  (rhythm) field. A tune is kept when one of them names a form and the other does not
  name a different one; the ~30 files where they disagree (a "Jig" whose R: says reel),
  slip jigs (9/8, another dance) and clogs, flings and slides are left out.

A work groups the scores of one composition, so that a benchmark can split by work:
the mass of a Palestrina movement (its ``!!!OPR`` header), the quartet of a movement
(its folder), a tune's variants in several keys (``OldZipCoonReel_G``/``_A``), a
trecento piece's parts a/b; anything else is its own work.

Instruments are drawn per work from ``GM_PROGRAMS`` (one per part, seeded by the run's
seed and the work id only), never from the label or the composer: music21's own
defaults follow the encoding (Bach's chorales on piano, Palestrina sung), which would
let a model tell the era by timbre alone. Every label sees the same distribution of
instruments.

The selection (``render_order``) is a fixed order per label: round-robin over the
label's collections, within a collection round-robin over its works (shuffled by the
seed), so one mass or one composer cannot fill a label; the renderer takes scores in
this order until it has N per label, so a larger N keeps every score of a smaller one.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

ERAS = ("medieval", "renaissance", "baroque", "classical")
FORMS = ("reel", "jig", "hornpipe", "strathspey")
#: Score formats read, most preferred first (a piece encoded twice is taken once).
FORMATS = (".mxl", ".musicxml", ".xml", ".krn", ".abc")

#: General MIDI programs (0-based) the instruments are drawn from: keyboards, plucked,
#: bowed, sung, brass and woodwinds, each a timbre of every era's repertory or none.
GM_PROGRAMS: dict[int, str] = {
    0: "Acoustic Grand Piano", 6: "Harpsichord", 19: "Church Organ", 21: "Accordion",
    24: "Acoustic Guitar (nylon)", 40: "Violin", 42: "Cello", 48: "String Ensemble 1",
    52: "Choir Aahs", 56: "Trumpet", 60: "French Horn", 68: "Oboe", 71: "Clarinet",
    73: "Flute",
}


@dataclass(frozen=True)
class Collection:
    """One folder of music21's corpus and what labels its scores."""

    folder: str  # under music21/corpus
    era: str  # "" for the fiddle tunes (their label is a form)
    composer: str  # "" when each file names its own (trecento) or none is known
    title: str  # the album of its single-piece works
    why: str  # the dates behind the era, or where the form comes from


COLLECTIONS = (
    Collection("trecento", "medieval", "", "Trecento", "14th-century Italy (Landini, Jacopo "
               "da Bologna, Ciconia, ...); each file's header names its composer"),
    Collection("ciconia", "medieval", "Johannes Ciconia", "Ciconia", "c. 1370-1412"),
    Collection("josquin", "renaissance", "Josquin des Prez", "Josquin", "c. 1450-1521"),
    Collection("palestrina", "renaissance", "Giovanni Pierluigi da Palestrina",
               "Palestrina masses", "1525-1594"),
    Collection("lusitano", "renaissance", "Vicente Lusitano", "Lusitano", "fl. 1550s"),
    Collection("monteverdi", "renaissance", "Claudio Monteverdi", "Monteverdi madrigals",
               "madrigal books 3-5 (1592-1605): late-renaissance polyphony"),
    Collection("bach", "baroque", "Johann Sebastian Bach", "Bach chorales", "1685-1750"),
    Collection("handel", "baroque", "George Frideric Handel", "Handel", "1685-1759"),
    Collection("corelli", "baroque", "Arcangelo Corelli", "Corelli", "1653-1713"),
    Collection("haydn", "classical", "Joseph Haydn", "Haydn", "1732-1809"),
    Collection("mozart", "classical", "Wolfgang Amadeus Mozart", "Mozart", "1756-1791"),
    Collection("beethoven", "classical", "Ludwig van Beethoven", "Beethoven", "1770-1827"),
    Collection("ryansMammoth", "", "", "Ryan's Mammoth Collection",
               "fiddle tunes (Boston, 1883); form from the file name and the ABC R: field"),
)
_FORM_NAME = re.compile(r"(Reel|Jig|Hornpipe|Strathspey)(?:_[A-G])?$")
_KEY_VARIANT = re.compile(r"_[A-G]$")  # OldZipCoonReel_G: the tune in G
#: PMFC_12_10a-Credo PMFC12.10a, PMFC_23_15b-Kyrie Humano Generi b: parts a/b of one piece.
_PART_VARIANT = re.compile(r"(?<=\d)[a-z](?=[-\s.]|$)|\s[a-z]$")
_ANONYMOUS = re.compile(r"^\s*(anonymous|anon\.?)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Score:
    """One score of the corpus, labelled."""

    path: str  # relative to music21/corpus, '/'-separated
    collection: str
    work: str  # "<collection>/<work>": scores of one composition share it
    era: str
    form: str
    composer: str
    album: str

    @property
    def label(self) -> str:
        """The genre label: the era, or the form of a fiddle tune."""
        return self.era or self.form

    def fields(self) -> dict[str, str]:
        """What a track record takes from the selection (not from its render), so a cached
        render always carries the labels of the current code."""
        return {"track_id": self.track_id, "path": self.track_id + ".ogg",
                "genre": self.label, "era": self.era, "form": self.form, "work": self.work,
                "artist": self.composer,
                "artist_from": "file header" if self.collection == "trecento" else "collection",
                "album": self.album}

    @property
    def track_id(self) -> str:
        """``music21/<path without extension>``, spaces as '_' (dots kept: bwv1.6)."""
        stem = self.path[: -len(PurePosixPath(self.path).suffix)]
        return "music21/" + stem.replace(" ", "_")


def form_of(stem: str, rhythm: str) -> str:
    """The dance form of a fiddle tune from its file name and its ABC ``R:`` field, or ""
    when neither names one of ``FORMS`` or the two name different ones."""
    m = _FORM_NAME.search(stem)
    named = m.group(1).lower() if m else ""
    r = re.sub(r"[^a-z]", "", rhythm.lower())
    said = r if r in FORMS else ""
    if named and r and r != named:  # R: names another dance (reel, slip jig, ...)
        return ""
    return named or said


def _header(path: Path, limit: int = 4096) -> str:
    with open(path, "rb") as fh:
        return fh.read(limit).decode("utf-8", errors="replace")


def _abc_field(text: str, key: str) -> str:
    m = re.search(rf"^{key}:\s*(.*)$", text, re.MULTILINE)
    return m.group(1).strip() if m else ""


def _work_and_composer(c: Collection, rel: PurePosixPath, file: Path) -> tuple[str, str, str]:
    """(work, composer, album) of one score, from its place and its header only."""
    inner = rel.parts[1:]
    stem = rel.stem
    if c.folder == "palestrina":  # the mass, from the Humdrum header
        mass = re.search(r"^!!!OPR:\s*(.+)$", _header(file), re.MULTILINE)
        name = mass.group(1).strip() if mass else stem
        return f"{c.folder}/{name}", c.composer, name
    if len(inner) > 1:  # a folder per composition: its movements
        name = inner[0]
        return f"{c.folder}/{name}", c.composer, f"{c.title}: {name}"
    if c.folder == "trecento":
        m = re.search(r'<creator type="composer">\s*([^<]*?)\s*</creator>', _header(file, 20000))
        who = re.sub(r"\s*\([^)]*\)", "", m.group(1).splitlines()[0]).strip() if m else ""
        who = "" if _ANONYMOUS.match(who) else who
        return f"{c.folder}/{_PART_VARIANT.sub('', stem)}", who, c.title
    if c.folder == "bach" and not re.fullmatch(r"bwv\d+\.\d+", stem):  # not a chorale
        return f"{c.folder}/{stem}", c.composer, "Bach"
    if c.folder == "ryansMammoth":
        return f"{c.folder}/{_KEY_VARIANT.sub('', stem)}", c.composer, c.title
    return f"{c.folder}/{stem}", c.composer, c.title


def list_scores(root: Path) -> tuple[list[Score], dict[str, int]]:
    """Every labelled score under `root` (music21's corpus folder), in a stable order, and
    how many files were left out, by reason (see the module docstring)."""
    scores: list[Score] = []
    left_out: dict[str, int] = defaultdict(int)
    for c in COLLECTIONS:
        base = root / c.folder
        files = sorted(p for p in base.rglob("*") if p.is_file() and p.suffix in FORMATS)
        best: dict[tuple[str, ...], Path] = {}
        for p in files:  # one encoding per piece: the preferred format
            key = p.relative_to(base).with_suffix("").parts
            if key not in best or FORMATS.index(p.suffix) < FORMATS.index(best[key].suffix):
                best[key] = p
        for key in sorted(best):
            p = best[key]
            rel = PurePosixPath(c.folder, *p.relative_to(base).parts)
            if "choraleAnalyses" in rel.parts or rel.stem.endswith("_bak"):
                continue  # analyses, not scores; an editor's backup copy
            form = ""
            if not c.era:
                form = form_of(rel.stem, _abc_field(_header(p), "R"))
                if not form:
                    left_out[f"{c.folder}: no reel/jig/hornpipe/strathspey (or two)"] += 1
                    continue
            work, composer, album = _work_and_composer(c, rel, p)
            if form:
                album = f"{c.title}: {form}s"
            scores.append(Score(str(rel), c.folder, work, c.era, form, composer, album))
    return scores, dict(left_out)


def file_rights(path: Path, limit: int = 400) -> tuple[str, str]:
    """(the rights a score file states about itself as one line of at most `limit`
    characters, the licence they name), "" for either when there is none: the
    ``<rights>`` of MusicXML, the ``!!!YEC``/``!!!YEM`` records of Humdrum, the leading
    comment block of an ABC file when it names a copyright or licence. music21's corpus
    licence defers to these ("see the licenses embedded in individual compositions")."""
    from .debian import first_licence_named

    if path.suffix == ".mxl":
        import zipfile

        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if not n.startswith("META-INF")]
            text = z.read(names[0])[:200_000].decode("utf-8", "replace") if names else ""
    else:
        text = _header(path, 200_000)
    if path.suffix in (".mxl", ".xml", ".musicxml"):
        found = re.findall(r"<rights>\s*([^<]*?)\s*</rights>", text)
    elif path.suffix == ".krn":
        found = re.findall(r"^!!!YE[CM]:\s*(.*)$", text, re.MULTILINE)
    else:
        lines = text.splitlines()
        block = [ln.lstrip("% ") for ln in lines[: next((i for i, ln in enumerate(lines)
                                                          if ln.startswith("X:")), 0)]
                 if ln.startswith("%")]
        named = re.search(r"copyright|licen[cs]e", " ".join(block), re.IGNORECASE)
        found = block if named else []
    rights = " ".join(" ".join(x.split()) for x in found if x.strip())
    return rights[:limit], first_licence_named(rights)


def stable_int(*parts: object) -> int:
    """A 64-bit integer from `parts` that is the same in every process and Python version
    (``hash()`` of a string is salted per process)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")


def render_order(scores: list[Score], seed: int) -> dict[str, list[Score]]:
    """Label -> all its scores, in the order the renderer takes them (see the module
    docstring): round-robin over collections, then over works shuffled by `seed`, then
    a work's scores shuffled. The order does not depend on how many are taken."""
    by_label: dict[str, dict[str, dict[str, list[Score]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list)))
    for s in scores:
        by_label[s.label][s.collection][s.work].append(s)
    order: dict[str, list[Score]] = {}
    for label in sorted(by_label):
        queues = []
        for coll in sorted(by_label[label]):
            works = by_label[label][coll]
            rng = np.random.default_rng(stable_int(seed, label, coll))
            names = [sorted(works)[i] for i in rng.permutation(len(works))]
            ranked = {w: sorted(works[w], key=lambda x: x.path) for w in names}
            pieces = [[ranked[w][i] for i in rng.permutation(len(ranked[w]))] for w in names]
            queues.append(_round_robin(pieces))
        order[label] = _round_robin(queues)
    return order


def _round_robin(lists: list[list[Score]]) -> list[Score]:
    """One from each list in turn, until all are used up."""
    out: list[Score] = []
    for k in range(max((len(x) for x in lists), default=0)):
        out += [x[k] for x in lists if k < len(x)]
    return out


def draw_programs(seed: int, work: str, n_parts: int) -> list[int]:
    """The General MIDI program of each part of a score of `work`: drawn uniformly from
    ``GM_PROGRAMS``, seeded by (`seed`, `work`) only, so every score of a work has the
    same instruments and no label or composer can change the draw."""
    rng = np.random.default_rng(stable_int(seed, "instruments", work))
    programs = sorted(GM_PROGRAMS)
    return [programs[i] for i in rng.integers(0, len(programs), size=n_parts)]


__all__ = ["COLLECTIONS", "ERAS", "FORMS", "GM_PROGRAMS", "Collection", "Score", "draw_programs",
           "file_rights", "form_of", "list_scores", "render_order", "stable_int"]
