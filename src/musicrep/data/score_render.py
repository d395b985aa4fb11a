"""Rendering one score to audio: a bounded window of it, its parts on drawn General
MIDI instruments, synthesised by fluidsynth with Debian's FluidR3 GM soundfont; a score
that cannot be rendered fails with its reason, never the run.

The tools: music21 (pinned in requirements.txt) parses the score and writes MIDI; the
``fluidsynth`` program (Debian package ``fluidsynth``) synthesises it. Installing a
system package needs root, so this module never does: without fluidsynth it says in
one line what to install. The soundfont comes from the Debian package
``fluid-soundfont-gm`` (MIT licence), fetched and unpacked like the soundtracks
(:mod:`musicrep.data.debian`, no root needed), so its version, SHA256 and licence are
facts the manifest records.

Why the window is bounded, and how: a whole movement can take minutes to expand and
export, some scores' repeats cannot be expanded at all (music21's MIDI writer then
raises), and one runaway score must not stall a run of hundreds. So, per score:

1. the score is cut to the measures that start within ``seconds * MAX_QPM / 60``
   quarter notes (no tempo up to 240 quarter notes a minute needs more for the window);
2. the excerpt's repeats are expanded; where music21 cannot (badly formed, or cut by
   step 1), the repeat signs are removed and it is played as written; the result is
   cut again as in step 1;
3. the audio is cut at ``seconds`` with a 1-s fade; a piece shorter than the window is
   played again whole (a chorale's next verse, a dance tune's next round), at most
   ``MAX_PASSES`` times; a render still shorter than the window is a failure;
4. all of it runs under a deadline (``timeout_s``: SIGALRM around music21, the
   subprocess timeout around fluidsynth).

Each render is scaled to one RMS (-20 dBFS, peaks below -0.2 dBFS), so loudness, which
would follow the number of parts, says nothing about the label.

Output: an Ogg Vorbis file (stereo, 22.05 kHz: the importer resamples to 16 kHz
anyway), written atomically, and the manifest record of the render (``render_one``);
:mod:`musicrep.data.score_set` runs the selection through it with a cache.
"""

from __future__ import annotations

import math
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError
from ..io import atomic_path
from .debian import (
    FetchError,
    PackageInfo,
    candidate,
    fetch,
    first_licence_named,
    sha256_of,
    unpack,
)
from .scores import GM_PROGRAMS, Score, draw_programs, file_rights, stable_int

MAX_QPM = 240
MAX_PASSES = 8
FADE_S = 1.0
TAIL_S = 0.5  # decay kept after the last sound
SILENCE_S = 5.0  # rendered beyond the window, for the silence trimmed from its start
CHANNELS = 2  # fluidsynth renders stereo
TARGET_RMS = 0.1  # -20 dBFS
PEAK = 0.975  # -0.2 dBFS
SILENT_RMS = 1e-4
SOUNDFONT_PACKAGE = "fluid-soundfont-gm"
SOUNDFONT_FILE = "usr/share/sounds/sf2/FluidR3_GM.sf2"
RENDER_VERSION = 1  # raise when this module changes what a render sounds like
AUDIO_FORMAT = ("OGG", "VORBIS")


class RenderTimeout(BaseException):
    """The deadline of one score passed. A BaseException, so that a library's
    ``except Exception`` cannot swallow it half-way through the score."""


class RenderFailed(Exception):
    """One score could not be rendered; its message is the manifest's reason."""


@dataclass(frozen=True)
class RenderSettings:
    """What the rendered set is: how many per label, and how each score is rendered."""

    per_label: int
    seconds: float = 30.0
    seed: int = 0
    timeout_s: float = 60.0
    sample_rate: int = 22050

    @property
    def quarters(self) -> float:
        """The excerpt's length in quarter notes (step 1 of the module docstring)."""
        return self.seconds * MAX_QPM / 60.0


@dataclass(frozen=True)
class Soundfont:
    """The fetched soundfont file and what its Debian package says about it."""

    path: Path
    package: PackageInfo
    sha256: str
    licence: str
    licence_from: str
    copyright: str

    def record(self) -> dict:
        """What the manifest says about it."""
        return {"package": self.package.name, "version": self.package.version,
                "deb_sha256": self.package.sha256, "file": SOUNDFONT_FILE, "sha256": self.sha256,
                "licence": self.licence, "licence_from": self.licence_from,
                "copyright": self.copyright}


@dataclass(frozen=True)
class Renderer:
    """The tools of a render run: music21 and its corpus, fluidsynth, the soundfont."""

    music21_version: str
    corpus: Path
    corpus_licence: str  # the statement of music21's corpus/license.txt
    fluidsynth: str
    fluidsynth_version: str
    soundfont: Soundfont

    def key(self, s: RenderSettings) -> str:
        """The cache folder of renders made with these tools and settings."""
        key = stable_int(self.music21_version, self.soundfont.package.sha256,
                         self.fluidsynth_version, s.seconds, s.seed, s.sample_rate,
                         sorted(GM_PROGRAMS), RENDER_VERSION)
        return f"{key:016x}"


# ------------------------------------------------------------------ the tools


class Tools(NamedTuple):
    """What renders with, besides the soundfont (``check_tools``)."""

    music21_version: str
    corpus: Path  # music21's corpus folder
    corpus_licence: str  # the statement of its license.txt
    fluidsynth: str  # the program's path
    fluidsynth_version: str


def check_tools() -> Tools:
    """music21 (and its corpus) and fluidsynth, or ConfigError in one line naming what to
    install: checked before anything is fetched."""
    try:
        import music21
    except ImportError:
        raise ConfigError("--scores: music21 is not installed in this Python (pip install -r "
                          "requirements.txt)") from None
    corpus = Path(music21.__file__).parent / "corpus"
    if not (corpus / "bach").is_dir():
        raise ConfigError(f"--scores: music21 {music21.__version__} has no corpus at {corpus} "
                          "(install it from PyPI, which ships the corpus)")
    synth = shutil.which("fluidsynth")
    if synth is None:
        raise ConfigError("--scores: this machine has no fluidsynth; install it with "
                          "`apt-get install fluidsynth` (as root)")
    r = subprocess.run([synth, "--version"], capture_output=True, text=True, timeout=30,
                       check=False)
    m = re.search(r"version\s+(\S+)", r.stdout)
    lic = corpus / "license.txt"
    text = lic.read_text(encoding="utf-8") if lic.is_file() else ""
    statement = " ".join(" ".join(ln for ln in text.splitlines()
                                  if not ln.startswith("#")).split())
    return Tools(music21.__version__, corpus, statement, synth, m.group(1) if m else "unknown")


def fetch_soundfont(cache: Path, info: PackageInfo | None = None) -> Soundfont:
    """The FluidR3 GM soundfont from Debian's ``fluid-soundfont-gm``, fetched and unpacked
    into `cache` (``debs/``, ``trees/``) like the soundtracks; its licence from the
    package's copyright file ("MIT" when it says it releases the font under the MIT
    licence, as this one does)."""
    info = info or candidate(SOUNDFONT_PACKAGE)
    deb, _ = fetch(info, cache / "debs")
    tree, _ = unpack(deb, cache / "trees")
    sf2 = tree / SOUNDFONT_FILE
    if not sf2.is_file():
        raise FetchError(f"{info.name} {info.version}: no {SOUNDFONT_FILE} in the package")
    cr = tree / "usr" / "share" / "doc" / info.name / "copyright"
    text = cr.read_text(encoding="utf-8", errors="replace") if cr.is_file() else ""
    licence = "MIT" if re.search(r"\bMIT licen[cs]e\b", text, re.IGNORECASE) else \
        first_licence_named(text)
    holder = re.search(r"Copyright ©\s*(.+)", text)  # the first: upstream's, not packaging's
    return Soundfont(sf2, info, sha256_of(sf2), licence, f"usr/share/doc/{info.name}/copyright",
                     holder.group(1).strip() if holder else "")


# ------------------------------------------------------------------ one score


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise RenderTimeout in the block after `seconds` (SIGALRM; a no-op off the main
    thread, where signals cannot be caught, and on systems without SIGALRM)."""
    main = threading.current_thread() is threading.main_thread()
    if not hasattr(signal, "setitimer") or not main:
        yield
        return

    def _expired(signum, frame):
        raise RenderTimeout(f"over the {seconds:g}-s limit")

    old = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def cut_to(score, quarters: float) -> bool:
    """Remove from every part what starts at or after `quarters` (measures, or the notes
    of a part without measures); True when anything was removed."""
    cut = False
    for part in score.parts:
        for el in list(part):
            if el.offset >= quarters:
                part.remove(el)
                cut = True
    return cut


def strip_repeats(score) -> None:
    """Remove repeat barlines, volta brackets and D.C./segno marks, so the score plays as
    written (music21's MIDI writer expands repeats itself and raises on bad ones)."""
    from music21 import bar, repeat, spanner, stream

    for m in score.recurse().getElementsByClass(stream.Measure):
        if isinstance(m.leftBarline, bar.Repeat):
            m.leftBarline = None
        if isinstance(m.rightBarline, bar.Repeat):
            m.rightBarline = bar.Barline("regular")
    for el in list(score.recurse().getElementsByClass((repeat.RepeatExpression,
                                                        spanner.RepeatBracket))):
        if el.activeSite is not None:
            el.activeSite.remove(el)
    for sp in list(score.spannerBundle.getByClass(spanner.RepeatBracket)):
        score.spannerBundle.remove(sp)


def _has_repeats(score) -> bool:
    from music21 import bar, repeat, spanner

    return bool(score.recurse().getElementsByClass((bar.Repeat, repeat.RepeatExpression,
                                                    spanner.RepeatBracket)))


def expand_or_strip(score) -> tuple[object, str]:
    """(the score with repeats expanded, "expanded"), or the score played as written with
    the reason music21 gave; ("none") when it has no repeats."""
    if not _has_repeats(score):
        return score, "none"
    try:
        return score.expandRepeats(), "expanded"
    except Exception as e:  # noqa: BLE001 - music21 raises several kinds for bad repeats
        strip_repeats(score)
        why = (str(e).strip().splitlines() or [""])[0][:120]
        return score, f"played as written ({type(e).__name__}: {why})"


def set_instruments(score, programs: list[int]) -> list[dict]:
    """Replace every instrument of part i by General MIDI program `programs[i]` (music21's
    defaults follow the encoding, hence the composer); returns what each part plays."""
    from music21 import instrument

    out = []
    for i, (part, prog) in enumerate(zip(score.parts, programs)):
        name = part.partName or f"part {i + 1}"
        for old in list(part.recurse().getElementsByClass(instrument.Instrument)):
            old.activeSite.remove(old)
        new = instrument.Instrument()
        new.midiProgram = prog
        new.instrumentName = GM_PROGRAMS[prog]
        part.insert(0, new)
        out.append({"part": name, "program": prog, "instrument": GM_PROGRAMS[prog]})
    return out


def score_to_midi(source: Path, midi: Path, score: Score, s: RenderSettings) -> dict:
    """Parse `source`, cut and expand it (steps 1-2), assign the drawn instruments and
    write `midi`. Returns the window, the instruments and the title."""
    from music21 import converter, stream

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = converter.parse(str(source))
        if isinstance(parsed, stream.Opus):  # one tune per voice (Josquin's ABC files)
            titles = {sc.metadata.title if sc.metadata else None for sc in parsed.scores}
            if len(titles) != 1:
                raise RenderFailed("the file holds several pieces")
            parsed = parsed.mergeScores()
        if not isinstance(parsed, stream.Score) or not parsed.parts:
            raise RenderFailed("no parts in the score")
        meta = parsed.metadata
        title = (meta.title or meta.movementName or "") if meta is not None else ""
        first = bool(cut_to(parsed, s.quarters))
        excerpt, repeats = expand_or_strip(parsed)
        second = bool(cut_to(excerpt, s.quarters))
        programs = draw_programs(s.seed, score.work, len(excerpt.parts))
        parts = set_instruments(excerpt, programs)
        measures = len(excerpt.parts[0].getElementsByClass(stream.Measure))
        excerpt.write("midi", fp=str(midi))
    return {"title": str(title).strip(), "instruments": parts,
            "window": {"quarters": s.quarters, "measures": measures, "repeats": repeats,
                       "whole_piece": not (first or second)}}


def synthesize(midi: Path, soundfont: Path, synth: str, sample_rate: int, seconds: float,
               timeout: float) -> np.ndarray:
    """(frames, 2) float32: at most `seconds` of fluidsynth's render of `midi`.

    fluidsynth writes raw samples to a pipe and is stopped once `seconds` are read: some
    MIDI files music21 writes keep its player running for ever (a file render of a 30-s
    hornpipe grew past 2 GB), so the length of the file cannot be trusted to end it.
    RenderFailed when it fails or `timeout` passes first."""
    need = round(seconds * sample_rate) * CHANNELS * 4
    argv = [synth, "-ni", "-q", "-g", "0.5", "-r", str(sample_rate), "-O", "float", "-T", "raw",
            "-o", "audio.file.endian=little", "-F", "-", str(soundfont), str(midi)]
    end = time.monotonic() + timeout
    late = RenderFailed(f"fluidsynth: over the {timeout:.0f} s left of the limit")
    chunks: list[bytes] = []
    got = 0
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err)
        try:
            while got < need:
                left = end - time.monotonic()
                if left <= 0:
                    raise late
                if not select.select([proc.stdout], [], [], left)[0]:
                    continue
                block = os.read(proc.stdout.fileno(), min(1 << 20, need - got))
                if not block:  # the render ended by itself
                    break
                chunks.append(block)
                got += len(block)
            if got >= need:  # enough: stop it
                proc.kill()
            try:
                proc.wait(timeout=max(end - time.monotonic(), 1.0))
            except subprocess.TimeoutExpired:
                raise late from None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        if got < need and proc.returncode != 0:
            err.seek(0)
            last = (err.read().decode("utf-8", "replace").strip().splitlines() or ["no message"])
            raise RenderFailed(f"fluidsynth exited {proc.returncode} ({last[-1]})")
    data = b"".join(chunks)
    frames = len(data) // (CHANNELS * 4)
    return np.frombuffer(data[: frames * CHANNELS * 4], dtype="<f4").reshape(frames, CHANNELS)


def trim_silence(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """`audio` without the silence before its first and after its last sound (more than
    60 dB below its peak), keeping ``TAIL_S`` of the decay: the silence a render ends
    with would otherwise be looped into the window."""
    level = np.max(np.abs(audio), axis=1) if len(audio) else np.zeros(0)
    loud = np.flatnonzero(level > 1e-3 * (level.max() if len(level) else 0.0))
    if len(loud) == 0:
        return audio[:0]
    return audio[loud[0]: min(len(audio), loud[-1] + 1 + round(TAIL_S * sample_rate))]


def fit_window(audio: np.ndarray, sample_rate: int, seconds: float,
               whole_piece: bool) -> tuple[np.ndarray, dict]:
    """Step 3 and the level: `audio` (frames, channels) trimmed of silence, played again
    while a whole piece is shorter than the window, cut at `seconds` with a fade, scaled
    to TARGET_RMS. RenderFailed when it is silent or, after that, shorter than the window."""
    n = round(seconds * sample_rate)
    audio = trim_silence(audio, sample_rate)
    if len(audio) == 0:
        raise RenderFailed("silent render")
    passes = 1
    if whole_piece and len(audio) < n:
        passes = min(MAX_PASSES, math.ceil(n / len(audio)))
        audio = np.concatenate([audio] * passes)
    if len(audio) < n:
        raise RenderFailed(f"{len(audio) / sample_rate:.1f} s, shorter than the "
                           f"{seconds:g}-s window" + (f" after playing it {passes} times"
                                                      if passes > 1 else ""))
    audio = audio[:n].astype(np.float32)
    fade = min(round(FADE_S * sample_rate), n)
    audio[n - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)[:, None]
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    if not np.isfinite(rms) or rms < SILENT_RMS:
        raise RenderFailed(f"silent render (RMS {rms:.1e})")
    gain = min(TARGET_RMS / rms, PEAK / float(np.max(np.abs(audio))))
    return audio * np.float32(gain), {"seconds": seconds, "passes": passes,
                                      "gain_db": round(20 * math.log10(gain), 2)}


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:160]}"


def render_one(score: Score, r: Renderer, s: RenderSettings, out: Path, work: Path) -> dict:
    """Render `score` into the audio file `out` (written atomically; `work` is a folder for
    its MIDI) and return its manifest record; RenderFailed or RenderTimeout when it
    cannot be rendered."""
    import soundfile as sf

    start = time.monotonic()
    midi = work / "score.mid"
    midi.unlink(missing_ok=True)
    try:
        with deadline(s.timeout_s):
            info = score_to_midi(r.corpus / score.path, midi, score, s)
    except (RenderFailed, RenderTimeout, OSError):
        raise
    except Exception as e:  # noqa: BLE001 - whatever music21 raises is this score's reason
        raise RenderFailed(f"music21: {_first_line(e)}") from None
    left = s.timeout_s - (time.monotonic() - start)
    if left <= 0:
        raise RenderTimeout(f"over the {s.timeout_s:g}-s limit")
    audio = synthesize(midi, r.soundfont.path, r.fluidsynth, s.sample_rate,
                       s.seconds + SILENCE_S, left)
    audio, window = fit_window(audio, s.sample_rate, s.seconds, info["window"]["whole_piece"])
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        sf.write(str(tmp), audio, s.sample_rate, format=AUDIO_FORMAT[0], subtype=AUDIO_FORMAT[1])
    name = PurePosixPath(score.path).name
    title = info["title"] if info["title"] and info["title"] != name else ""
    rights, rights_licence = file_rights(r.corpus / score.path)
    return {
        **score.fields(), "package": "music21", "version": r.music21_version,
        "source": f"music21 {r.music21_version} corpus: {score.path}",
        "sha256": sha256_of(out), "duration_s": round(len(audio) / s.sample_rate, 3),
        "sample_rate": s.sample_rate, "channels": int(audio.shape[1]),
        "format": "/".join(AUDIO_FORMAT),
        "title": title or PurePosixPath(name).stem,
        "title_from": "score" if title else "file name",
        "licence": f"music21 corpus terms; soundfont {r.soundfont.licence}",
        "licence_from": f"music21/corpus/license.txt; {r.soundfont.licence_from}",
        "file_rights": rights, "file_licence": rights_licence,
        "instruments": info["instruments"], "window": {**info["window"], **window},
        "render_s": round(time.monotonic() - start, 2),
    }


__all__ = ["AUDIO_FORMAT", "MAX_QPM", "SOUNDFONT_PACKAGE", "RenderFailed", "RenderSettings",
           "RenderTimeout", "Renderer", "Soundfont", "Tools", "check_tools", "cut_to", "deadline",
           "expand_or_strip", "fetch_soundfont", "fit_window", "render_one", "score_to_midi",
           "set_instruments", "strip_repeats", "synthesize"]
