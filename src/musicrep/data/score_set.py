"""The rendered part of the real corpus: which scores of the selection are rendered, the
cache that makes a rerun resume, and what the manifest says about the set.

The renderer takes each label's scores in the selection's order
(:func:`musicrep.data.scores.render_order`) until it has ``per_label`` of them; a score
that fails (:mod:`musicrep.data.score_render` says how a render can fail) is recorded
with its reason and the next one is taken, until a label has had ``per_label +
SPARE_FAILURES`` failures (a collection that fails throughout costs a bounded time,
never the run).

Cache: ``<cache>/<key>/<track_id>.ogg`` with a ``.json`` beside it holding the manifest
record, or a ``.failed.json`` holding why it failed. ``key`` (``Renderer.key``) hashes
every input that changes a render, so renders with other settings or tools never mix.
A rerun reuses a render whose audio still has its recorded SHA256, and does not retry a
failure unless the timeout grew. Audio and records appear under their names only when
complete (``atomic_path``), and the MIDI and WAV of the score in progress live in a
temporary folder removed at the end (or by the next run), so a killed render leaves no
half file.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..io import clean_stale_temp, write_json
from .debian import sha256_of
from .score_render import (
    AUDIO_FORMAT,
    FADE_S,
    MAX_PASSES,
    MAX_QPM,
    RENDER_VERSION,
    Renderer,
    RenderFailed,
    RenderSettings,
    RenderTimeout,
    render_one,
)
from .scores import GM_PROGRAMS, Score

SPARE_FAILURES = 10  # a label stops after per_label + this many failures


@dataclass
class ScoreSet:
    """The rendered scores of a run: manifest records (with ``cached_file``) and failures."""

    settings: RenderSettings
    renderer: Renderer
    tracks: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    available: dict[str, int] = field(default_factory=dict)  # label -> scores in the corpus
    left_out: dict[str, int] = field(default_factory=dict)  # reason -> files of the corpus
    reused: int = 0
    seconds: float = 0.0  # time spent rendering in this run

    def counts(self) -> dict[str, dict[str, int]]:
        """Rendered scores per era and per form, and works per label."""
        works = {t["work"]: t["genre"] for t in self.tracks}
        return {"era": dict(Counter(t["era"] for t in self.tracks if t["era"])),
                "form": dict(Counter(t["form"] for t in self.tracks if t["form"])),
                "works": dict(Counter(works.values()))}

    def summary(self) -> dict:
        """The manifest's ``scores`` section (the per-score records go with the tracks)."""
        r = self.renderer
        return {
            "source": f"music21 {r.music21_version} (PyPI), its corpus folder",
            "corpus_licence": r.corpus_licence, "soundfont": r.soundfont.record(),
            "synthesizer": {"program": "fluidsynth", "version": r.fluidsynth_version},
            "settings": {**asdict(self.settings), "max_qpm": MAX_QPM, "max_passes": MAX_PASSES,
                         "fade_s": FADE_S, "target_rms_dbfs": -20.0,
                         "format": "/".join(AUDIO_FORMAT), "render_version": RENDER_VERSION,
                         "programs": {str(k): v for k, v in GM_PROGRAMS.items()}},
            "labels": {"era": "from the composer (musicrep.data.scores.COLLECTIONS)",
                       "form": "fiddle tunes: file name and ABC R: field"},
            "available": self.available, "left_out": self.left_out,
            "rendered": len(self.tracks), "counts": self.counts(), "reused": self.reused,
            "render_seconds": round(self.seconds, 1), "failed": len(self.failures),
            "failures": self.failures,
        }


def _cached(audio: Path, rec_file: Path, fail_file: Path,
            timeout: float) -> tuple[dict | None, dict | None]:
    """(record, None) for a complete earlier render, (None, failure) for an earlier failure
    not to retry, (None, None) when the score is to be rendered."""
    if rec_file.is_file() and audio.is_file():
        try:
            rec = json.loads(rec_file.read_text(encoding="utf-8"))
        except ValueError:
            rec = {}
        if rec.get("sha256") == sha256_of(audio):
            return rec, None
    if fail_file.is_file():
        try:
            failure = json.loads(fail_file.read_text(encoding="utf-8"))
        except ValueError:
            return None, None
        if float(failure.get("timeout_s", 0)) >= timeout:
            return None, failure
    return None, None


def render_scores(order: dict[str, list[Score]], s: RenderSettings, r: Renderer, cache: Path,
                  progress: bool = True) -> ScoreSet:
    """Up to ``s.per_label`` rendered scores per label, taken in `order`
    (``scores.render_order``): a failed score is recorded and the next one taken (at most
    ``per_label + SPARE_FAILURES`` failures a label). Renders are cached under
    ``cache/<key>`` and reused by a rerun."""
    from tqdm import tqdm

    root = cache / r.key(s)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".render.*.tmpdir"):
        shutil.rmtree(stale, ignore_errors=True)
    out = ScoreSet(s, r, available={k: len(v) for k, v in order.items()})
    work = Path(tempfile.mkdtemp(prefix=".render.", suffix=".tmpdir", dir=root))
    total = sum(min(s.per_label, len(q)) for q in order.values())
    bar = tqdm(total=total, desc="render scores", unit="score", file=sys.stderr,
               disable=not progress)
    try:
        for label, queue in order.items():
            got = failed = 0
            for score in queue:
                if got >= s.per_label or failed >= s.per_label + SPARE_FAILURES:
                    break
                rec = _one(score, s, r, root, work, out)
                got, failed = got + (rec is not None), failed + (rec is None)
                bar.update(rec is not None)
                bar.set_postfix_str(f"{label}, {len(out.failures)} failed", refresh=False)
    finally:
        bar.close()
        shutil.rmtree(work, ignore_errors=True)
    return out


def _one(score: Score, s: RenderSettings, r: Renderer, root: Path, work: Path,
         out: ScoreSet) -> dict | None:
    """One score, from the cache or rendered; its record (also added to `out`), or None
    with its failure added to `out`."""
    audio = root / (score.track_id + ".ogg")
    rec_file, fail_file = audio.with_name(audio.name[:-4] + ".json"), \
        audio.with_name(audio.name[:-4] + ".failed.json")
    rec, failure = _cached(audio, rec_file, fail_file, s.timeout_s)
    if rec is None and failure is None:
        audio.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temp(audio.parent)
        start = time.monotonic()
        try:
            rec = render_one(score, r, s, audio, work)
            write_json(rec_file, rec)
            fail_file.unlink(missing_ok=True)
        except (RenderFailed, RenderTimeout) as e:
            failure = {"track_id": score.track_id, "corpus_path": score.path, "work": score.work,
                       "label": score.label, "reason": str(e) or type(e).__name__,
                       "timeout_s": s.timeout_s}
            write_json(fail_file, failure)
        out.seconds += time.monotonic() - start
    else:
        out.reused += 1
    if rec is None:
        out.failures.append(failure)
        return None
    rec = {**rec, **score.fields(), "cached_file": str(audio)}
    out.tracks.append(rec)
    return rec


__all__ = ["ScoreSet", "render_scores"]
