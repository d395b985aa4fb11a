"""Melon-scale rehearsal: every pipeline stage on a generated corpus F times Melon's size.

    python bench/melon_scale.py --scale 0.01 [--work-dir DIR] [--keep] [--table PATH]
    python bench/melon_scale.py --fit reports/bench/melon_scale_*.json   # side by side

Melon (Kakao Arena): 649,091 tracks, 148,826 playlists, 30,652 tags, 254 genre codes
(30 major, 224 detail). At ``--scale F`` the songs, playlists and tag vocabulary are F
times those (the genre codes stay 30 + 224); playlist lengths follow a log-normal of
Melon's mean (~35 songs, 1-200) with a Zipf popularity skew over songs. Mels are short
(300 frames, float16) so the disk fits: about 60 KB per track with the dataset.

Each stage runs in its own process (``--stage NAME``, launched by this script) and is
measured for wall seconds, peak RSS (``os.wait4`` of that process: the largest resident
size of it or any child it waited for; parallel workers are not summed) and the disk
size of what it wrote:

    generate        the corpus (vectorised; writes generated.json, no truth file)
    create_dataset  scripts' create_dataset (BPR 300 factors, --cf-epochs epochs),
                    --frames 256 --dtype float16; its metadata part (everything before
                    the first mel is written) and its CF fit are timed separately
    genre_w2v       train_genre_w2v.py
    train           train.py contrastive_MF_gnr, width 0.25, --train-steps steps (200)
                    of batch --train-batch (16) over the full train.h5 (one epoch
                    capped by max_steps_per_epoch), then validation over val.h5
    embed_gen       generated 128-d embeddings for every track (an .npz as encode.py
                    writes), genre-structured so the probes have something to find
    evaluate        evaluate.py --embeddings on the full-size splits, --probe-jobs 2

The table (stage, tracks, seconds, peak RSS, disk, notes) is printed and written to
``--table`` (Markdown, plus a .json beside it). The work directory is removed at the
end unless ``--keep``. Free disk is checked first; the run refuses if it does not fit.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MELON = {"songs": 649_091, "playlists": 148_826, "tags": 30_652}
N_MAJOR, N_DETAIL = 30, 224
MEL_FRAMES = 300  # short mels keep 650k tracks on one disk
DATASET_FRAMES = 256  # one training crop
MEAN_PLAYLIST_LEN = 35.0
STAGES = ("generate", "create_dataset", "genre_w2v", "train", "embed_gen", "evaluate")


def sizes(scale: float) -> dict[str, int]:
    """Corpus sizes at ``scale`` x Melon (songs, playlists, tag vocabulary)."""
    return {"songs": max(2000, round(scale * MELON["songs"])),
            "playlists": max(600, round(scale * MELON["playlists"])),
            "tags": max(100, round(scale * MELON["tags"]))}


def disk_needed(songs: int) -> int:
    """Bytes the run writes at most: mels, the float16 dataset, JSON, embeddings, slack."""
    mel = 48 * MEL_FRAMES * 2 + 128
    split = 48 * DATASET_FRAMES * 2 + 301 * 4 + 100 * 2 + 64
    return int(songs * (mel + split + 1500) * 1.15) + (200 << 20)


# ------------------------------------------------------------------------ generate


def generate(out: Path, scale: float, seed: int) -> dict:
    """A Melon-layout corpus at ``scale``; every random choice from ``seed``."""
    from musicrep.audio import N_MELS
    from musicrep.data.melon import mel_path
    from musicrep.layout import GENERATED_MARKER

    n = sizes(scale)
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    n_songs, n_pl, n_tags = n["songs"], n["playlists"], n["tags"]

    # Genres: 30 majors with 224 detail codes spread over them (7 or 8 each).
    det_per_major = np.full(N_MAJOR, N_DETAIL // N_MAJOR)
    det_per_major[: N_DETAIL % N_MAJOR] += 1
    table = {}
    for k in range(N_MAJOR):
        table[f"GN{k + 1:02d}00"] = f"Major {k + 1}"
        for d in range(1, det_per_major[k] + 1):
            table[f"GN{k + 1:02d}{d:02d}"] = f"Detail {k + 1}.{d}"
    gw = 1.0 / np.arange(1, N_MAJOR + 1) ** 0.8
    major = rng.choice(N_MAJOR, size=n_songs, p=gw / gw.sum())
    detail = 1 + (rng.random(n_songs) * det_per_major[major]).astype(int)
    second = rng.random(n_songs) < 0.15
    major2 = rng.integers(0, N_MAJOR, size=n_songs)
    artist = rng.integers(0, max(1, n_songs // 6), size=n_songs)
    album = rng.integers(0, max(1, n_songs // 3), size=n_songs)
    meta = []
    for i in range(n_songs):
        g = [f"GN{major[i] + 1:02d}00"]
        if second[i] and major2[i] != major[i]:
            g.append(f"GN{major2[i] + 1:02d}00")
        meta.append({"id": i, "song_name": f"Song {i}", "album_id": int(album[i]),
                     "album_name": f"Album {album[i]}", "artist_id_basket": [int(artist[i])],
                     "artist_name_basket": [f"Artist {artist[i]}"], "song_gn_gnr_basket": g,
                     "song_gn_dtl_gnr_basket": [f"GN{major[i] + 1:02d}{detail[i]:02d}"],
                     "issue_date": "20100101"})
    (out / "song_meta.json").write_text(json.dumps(meta), encoding="utf-8")
    (out / "genre_gn_all.json").write_text(json.dumps(table), encoding="utf-8")
    del meta

    # Playlists: log-normal lengths, songs by Zipf popularity, mostly from one theme
    # genre (so CF and genres correlate as in real playlists), tags Zipf over the vocab.
    lengths = np.clip(rng.lognormal(np.log(MEAN_PLAYLIST_LEN) - 0.5, 1.0, size=n_pl),
                      1, 200).astype(int)
    pop = 1.0 / (rng.permutation(n_songs) + 10.0) ** 0.9
    by_major = [np.flatnonzero(major == k) for k in range(N_MAJOR)]
    # Cumulative popularity per genre, built once: sampling by searchsorted keeps the
    # generator linear (rng.choice(p=...) would rebuild it for every playlist).
    cdf_major = [np.cumsum(pop[ix]) / pop[ix].sum() for ix in by_major]
    theme = rng.choice(N_MAJOR, size=n_pl, p=gw / gw.sum())
    tw = 1.0 / np.arange(1, n_tags + 1) ** 1.0
    tags_of = rng.choice(n_tags, size=(n_pl, 4), p=tw / tw.sum())
    n_tag = rng.integers(1, 5, size=n_pl)
    all_pop = pop / pop.sum()
    n_theme = rng.binomial(lengths, 0.8)
    theme_songs = [by_major[t][np.minimum(np.searchsorted(cdf_major[t], rng.random(m)),
                                          len(by_major[t]) - 1)]
                   if len(by_major[t]) else np.zeros(0, int) for t, m in zip(theme, n_theme)]
    noise = rng.choice(n_songs, size=int((lengths - n_theme).sum()), p=all_pop)
    cut = np.concatenate([[0], np.cumsum(lengths - n_theme)])
    records = []
    for p in range(n_pl):
        songs = list(dict.fromkeys(np.concatenate([theme_songs[p], noise[cut[p]:cut[p + 1]]])
                                   .tolist()))
        records.append({"id": p, "plylst_title": f"Playlist {p}",
                        "tags": list(dict.fromkeys(f"tag{t}" for t in tags_of[p, : n_tag[p]])),
                        "songs": songs, "like_cnt": 0,
                        "updt_date": "2019-01-01 00:00:00.000"})
    order = rng.permutation(n_pl)
    n_ho = max(1, n_pl // 10)
    parts = {"test.json": order[:n_ho], "val.json": order[n_ho:2 * n_ho],
             "train.json": order[2 * n_ho:]}
    for name, idx in parts.items():
        (out / name).write_text(json.dumps([records[i] for i in np.sort(idx)]), encoding="utf-8")
    slots = int(sum(len(r["songs"]) for r in records))
    del records, theme_songs

    # Mels: (48, 300) float16, a genre-dependent band profile plus noise, 1000 songs a block.
    prof = rng.normal(-30, 8, size=(N_MAJOR, N_MELS)).astype(np.float32)
    for start in range(0, n_songs, 1000):
        ids = np.arange(start, min(start + 1000, n_songs))
        block = rng.standard_normal((len(ids), N_MELS, MEL_FRAMES), dtype=np.float32) * 6
        block += prof[major[ids]][:, :, None]
        block = block.astype(np.float16)
        mel_path(out, int(ids[0])).parent.mkdir(parents=True, exist_ok=True)
        for j, i in enumerate(ids):
            np.save(mel_path(out, int(i)), block[j])
    marker = {"generator": "bench.melon_scale.generate", "seed": seed, "scale": scale, **n,
              "frames": MEL_FRAMES, "n_major": N_MAJOR, "n_detail": N_DETAIL}
    (out / GENERATED_MARKER).write_text(json.dumps(marker), encoding="utf-8")
    return {"playlist_song_slots": slots}


def generate_embeddings(dataset: Path, out: Path, seed: int, dim: int = 128) -> dict:
    """Embeddings for every track of the dataset: genre centroid + noise, as an .npz."""
    import h5py

    rng = np.random.default_rng(seed)
    centroids = rng.normal(size=(400, dim)).astype(np.float32)
    ids, embs = [], []
    for s in ("train", "val", "test"):
        with h5py.File(dataset / f"{s}.h5", "r") as f:
            i = np.asarray(f["dataset/id"][...]).reshape(-1).astype(np.int64)
            lab = np.asarray(f["dataset/label"][:, 0]).astype(np.int64)  # first genre index
        e = centroids[np.clip(lab, 0, 399)] + rng.normal(size=(len(i), dim)).astype(np.float32) * 2
        ids.append(i)
        embs.append(e.astype(np.float32))
    with open(out, "wb") as f:
        np.savez(f, ids=np.concatenate(ids), embeddings=np.concatenate(embs))
    return {}


# --------------------------------------------------------------------------- stages


def run_stage(stage: str, work: Path, args: argparse.Namespace) -> dict:
    """Run one stage in this process; return extra measurements."""
    scale, seed, cf_epochs = args.scale, args.seed, args.cf_epochs
    melon, ds, run = work / "melon", work / "dataset", work / "runs"
    py = sys.executable
    if stage == "generate":
        return generate(melon, scale, seed)
    if stage == "create_dataset":
        # Time the metadata part and the CF fit from inside, without changing the pipeline.
        import musicrep.data.builder as dsm

        marks: dict = {}
        t0 = time.perf_counter()
        orig_cf, orig_write = dsm.train_cf, dsm._write_split

        def timed_cf(*a, **kw):
            t = time.perf_counter()
            r = orig_cf(*a, **kw)
            marks["cf_seconds"] = round(time.perf_counter() - t, 1)
            marks["cf_per_epoch_s"] = round(marks["cf_seconds"] / cf_epochs, 2)
            return r

        def timed_write(*a, **kw):
            if "metadata_seconds" not in marks:
                marks["metadata_seconds"] = round(time.perf_counter() - t0, 1)
                marks["metadata_peak_rss_mb"] = _self_rss_mb()
            return orig_write(*a, **kw)

        dsm.train_cf, dsm._write_split = timed_cf, timed_write
        dsm.create_dataset(dsm.DatasetArgs(
            melon_dir=str(melon), out_dir=str(ds), frames=DATASET_FRAMES, dtype="float16",
            cf_factors=300, cf_epochs=cf_epochs, seed=seed, workers=2))
        return marks
    if stage == "genre_w2v":
        _check([py, str(REPO / "train_genre_w2v.py"), "--dataset-dir", str(ds),
                "--seed", str(seed)])
        return {}
    if stage == "train":
        _check([py, str(REPO / "train.py"), str(REPO / "configs/contrastive_MF_gnr.json"),
                "--set", "epochs=1", "width=0.25", f"batch_size={args.train_batch}",
                "num_workers=2", f"max_steps_per_epoch={args.train_steps}", f"seed={seed}", "device=cpu",
                f"train_dataset_file={ds / 'train.h5'}",
                f"validation_dataset_file={ds / 'val.h5'}", f"save_dir={run}"])
        import csv

        with open(run / "contrastive_MF_gnr" / "metrics.csv", newline="") as f:
            last = list(csv.DictReader(f))[-1]
        return {"samples_per_s": float(last["samples_per_s"]), "steps": args.train_steps,
                "batch": args.train_batch}
    if stage == "embed_gen":
        return generate_embeddings(ds, work / "emb.npz", seed)
    if stage == "evaluate":
        _check([py, str(REPO / "evaluate.py"), "--dataset", str(ds), "--embeddings",
                f"generated={work / 'emb.npz'}", "--out", str(work / "eval"), "--probe-jobs",
                "2", "--seed", str(seed), "--quiet"])
        return {}
    raise ValueError(f"unknown stage {stage}")


def _check(cmd: list[str]) -> None:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    res = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=False)
    if res.returncode != 0:
        raise SystemExit(f"stage command failed ({res.returncode}): {' '.join(cmd[:3])} ...")


def _self_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _du_mb(path: Path) -> float:
    if not path.exists():
        return 0.0
    if path.is_file():
        return round(path.stat().st_size / 2**20, 1)
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return round(total / 2**20, 1)


STAGE_OUTPUT = {"generate": "melon", "create_dataset": "dataset", "genre_w2v":
                "dataset/embedding_matrix_128.npy", "train": "runs", "embed_gen": "emb.npz",
                "evaluate": "eval"}


def measure(stage: str, work: Path, args: argparse.Namespace) -> dict:
    """Launch ``stage`` in a child process; its seconds, peak RSS and output size."""
    extra = work / f".{stage}.json"
    cmd = [sys.executable, __file__, "--stage", stage, "--scale", str(args.scale),
           "--work-dir", str(work), "--seed", str(args.seed), "--cf-epochs", str(args.cf_epochs),
           "--train-steps", str(args.train_steps), "--train-batch", str(args.train_batch)]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"stage {stage} failed with exit code {proc.returncode}")
    row = {"stage": stage, "seconds": round(seconds, 1),
           "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
           "disk_mb": _du_mb(work / STAGE_OUTPUT[stage])}
    if extra.is_file():
        row.update(json.loads(extra.read_text()))
    return row


def format_table(scale: float, tracks: int, rows: list[dict]) -> str:
    lines = [f"melon_scale --scale {scale}: {tracks} tracks", "",
             "| stage | tracks | seconds | peak RSS (MB) | disk (MB) | notes |",
             "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        notes = ", ".join(f"{k}={v}" for k, v in r.items()
                          if k not in ("stage", "seconds", "peak_rss_mb", "disk_mb"))
        lines.append(f"| {r['stage']} | {tracks} | {r['seconds']} | {r['peak_rss_mb']} | "
                     f"{r['disk_mb']} | {notes} |")
    return "\n".join(lines) + "\n"


def growth_exponent(tracks: list[int], values: list[float]) -> float | None:
    """Least-squares slope of log(value) against log(tracks); None under two points."""
    pts = [(t, v) for t, v in zip(tracks, values) if v and v > 0]
    if len(pts) < 2:
        return None
    x, y = np.log([t for t, _ in pts]), np.log([v for _, v in pts])
    return round(float(np.polyfit(x, y, 1)[0]), 2) + 0.0  # + 0.0: no '-0.00'


def fit_table(results: list[dict]) -> str:
    """Scales side by side (seconds / peak RSS MB / disk MB) with growth exponents.

    ``results`` are the .json files the runs wrote; the exponents are fitted over every
    scale given (time and peak RSS against tracks).
    """
    results = sorted(results, key=lambda r: r["scale"])
    tracks = [r["sizes"]["songs"] for r in results]
    head = " | ".join(f"{r['scale']:g} ({t:,} tracks)" for r, t in zip(results, tracks))
    lines = [f"| stage | {head} | time exp | RSS exp |",
             "|---|" + "---|" * len(results) + "---:|---:|"]
    by_stage = [{row["stage"]: row for row in r["rows"]} for r in results]
    for stage in STAGES:
        rows = [b.get(stage) for b in by_stage]
        cells = [f"{r['seconds']} / {r['peak_rss_mb']:.0f} / {r['disk_mb']:.0f}" if r else "-"
                 for r in rows]
        exps = [growth_exponent(tracks, [r[key] if r else 0 for r in rows])
                for key in ("seconds", "peak_rss_mb")]
        lines.append(f"| {stage} | " + " | ".join(cells) + " | "
                     + " | ".join("-" if e is None else f"{e:.2f}" for e in exps) + " |")
    # The figures measured inside a stage (create_dataset's parts, training's rate).
    for key in ("metadata_seconds", "metadata_peak_rss_mb", "cf_seconds", "cf_per_epoch_s",
                "samples_per_s"):
        vals = [next((row[key] for row in b.values() if key in row), None) for b in by_stage]
        if any(v is not None for v in vals):
            e = growth_exponent(tracks, [v or 0 for v in vals])
            lines.append(f"| {key} | " + " | ".join("-" if v is None else f"{v}" for v in vals)
                         + f" | {'-' if e is None else f'{e:.2f}'} | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, help="fraction of Melon's size")
    p.add_argument("--fit", nargs="+", metavar="JSON",
                   help="instead of a run: the tables of earlier runs (.json) side by side "
                        "with fitted growth exponents")
    p.add_argument("--work-dir", default=None, help="where the files go (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the generated files")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    p.add_argument("--cf-epochs", type=int, default=50, help="BPR epochs (default 50)")
    p.add_argument("--train-steps", type=int, default=200, help="training steps (default 200)")
    p.add_argument("--train-batch", type=int, default=16, help="training batch (default 16)")
    p.add_argument("--table", default=None,
                   help="Markdown table path (default reports/bench/melon_scale_<F>.md)")
    p.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.fit:
        results = []
        for path in args.fit:
            try:
                results.append(json.loads(Path(path).read_text(encoding="utf-8")))
            except (OSError, ValueError) as e:
                print(f"error: {path}: not a melon_scale table ({e})", file=sys.stderr)
                return 2
            if not {"scale", "sizes", "rows"} <= set(results[-1]):
                print(f"error: {path}: not a melon_scale table (needs scale, sizes, rows)",
                      file=sys.stderr)
                return 2
        print(fit_table(results), end="")
        return 0
    if args.scale is None or not 0 < args.scale <= 2:
        p.error("--scale must be in (0, 2]")
    if args.cf_epochs < 1 or args.train_steps < 1 or args.train_batch < 2:
        p.error("--cf-epochs and --train-steps must be >= 1, --train-batch >= 2")

    if args.stage:  # child process: one stage
        work = Path(args.work_dir)
        extra = run_stage(args.stage, work, args)
        (work / f".{args.stage}.json").write_text(json.dumps(extra))
        return 0

    n = sizes(args.scale)
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="melon_scale_"))
    if work.exists() and any(work.iterdir()):
        print(f"error: {work}: work directory is not empty", file=sys.stderr)
        return 2
    work.mkdir(parents=True, exist_ok=True)
    need, free = disk_needed(n["songs"]), shutil.disk_usage(work).free
    if need > free:
        print(f"error: {work}: needs about {need / 2**30:.1f} GiB of disk at scale "
              f"{args.scale}, {free / 2**30:.1f} GiB free", file=sys.stderr)
        return 2
    table = Path(args.table or REPO / "reports" / "bench" / f"melon_scale_{args.scale:g}.md")
    print(f"scale {args.scale}: {n['songs']} songs, {n['playlists']} playlists, {n['tags']} "
          f"tags; work dir {work}; needs ~{need / 2**30:.1f} GiB", file=sys.stderr)
    rows = []
    try:
        for stage in STAGES:
            print(f"== {stage}", file=sys.stderr)
            rows.append(measure(stage, work, args))
            print(f"   {rows[-1]}", file=sys.stderr)
    finally:
        tracks = n["songs"]
        text = format_table(args.scale, tracks, rows)
        table.parent.mkdir(parents=True, exist_ok=True)
        table.write_text(text, encoding="utf-8")
        table.with_suffix(".json").write_text(json.dumps(
            {"scale": args.scale, "sizes": n, "rows": rows}, indent=1), encoding="utf-8")
        print(text)
        print(f"wrote {table}", file=sys.stderr)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
