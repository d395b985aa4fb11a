"""musicnn embeddings of the real-audio benchmark's chunks: an external anchor row for
scripts/real_benchmark.py (`--anchor musicnn=FILE.npz`).

musicnn (Pons & Serra 2019, PyPI `musicnn` 0.1.0) is a tagging CNN trained on the Million
Song Dataset (`MSD_musicnn`): a published model that has heard real music, so its row says
what a useful embedding scores on the benchmark. It needs TensorFlow, which this project
must not depend on: run this script in its OWN virtual environment, outside the
repository, never in the project's .venv:

    python3 -m venv /work/anchors/musicnn-venv
    /work/anchors/musicnn-venv/bin/pip install --no-deps musicnn==0.1.0
    /work/anchors/musicnn-venv/bin/pip install tensorflow-cpu==2.15.1 'numpy<2' librosa==0.10.2.post1 tqdm

(musicnn 0.1.0 declares `tensorflow>=1.14` and `numpy<1.17`, which cannot be installed
on Python 3.11: hence --no-deps for it alone; the second line brings TensorFlow's and
librosa's own dependencies.) Then, from the repository root:

    python scripts/real_benchmark.py CORPUS --write-chunks chunks.csv
    /work/anchors/musicnn-venv/bin/python bench/anchors/musicnn_embed.py chunks.csv --out musicnn.npz
    python scripts/real_benchmark.py CORPUS --models models/*/ --anchor musicnn=musicnn.npz --out DIR

What it computes, per chunk (chunk_id, file, start_s, seconds of chunks.csv): the audio
at 16 kHz mono (librosa), musicnn's own input (96-band mel, n_fft 512, hop 256,
float16, log10(1 + 10000 x), as musicnn.extractor.batch_data makes it), cut into 3 s
patches (187 frames) that cover the chunk (two for 4.096 s: frames 0-186 and 70-256),
and the mean over the patches of the `--feature` layer (default `penultimate`: the
200-d dense layer before the tag outputs; `mean_pool` / `max_pool`: the 753-d temporal
poolings of the mid-end).

The weights are loaded loudly. musicnn's own extractor initialises every variable at
random, then tries to restore the checkpoint and, for MSD_musicnn, swallows any
failure: a broken install silently gives a random network. Here no variable is
initialised; every graph variable must be in the checkpoint with its shape, the
restore must succeed, and each restored value is compared with the checkpoint's, or
the script stops (exit 1) naming what failed.

Output .npz: `chunk_ids` (n,) str, `embeddings` (n, d) float32, and `model`, `feature`,
`weights_sha256` (of the checkpoint's data file), `musicnn`, `tensorflow`. Written
atomically (a temporary name, renamed when complete). Exit: 0 done, 2 bad input (one
line), 1 the model could not be loaded or a chunk could not be decoded.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

PROG = "musicnn_embed"
COLUMNS = ("chunk_id", "file", "start_s", "seconds")
MODELS = ("MSD_musicnn", "MTT_musicnn")
FEATURES = ("penultimate", "mean_pool", "max_pool")


class Failure(Exception):
    """One line for the user, and the exit status."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def read_chunks(path: Path) -> list[dict[str, str]]:
    """The rows of chunks.csv (exit 2 naming the file when it is missing or malformed)."""
    if not path.is_file():
        raise Failure(f"{path}: file not found (expected real_benchmark.py --write-chunks "
                      "output)", 2)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    missing = [c for c in COLUMNS if rows and c not in rows[0]]
    if not rows or missing:
        raise Failure(f"{path}: expected columns {', '.join(COLUMNS)} and at least one row "
                      f"(missing: {', '.join(missing) or 'rows'})", 2)
    return rows


def build_model(model: str, n_frames: int) -> tuple:
    """(session, input, is_training, {feature: tensor}, weights sha256) with the published
    weights restored and checked; Failure (exit 1) if anything is off."""
    import musicnn
    import tensorflow as tf
    from musicnn import models

    tf.compat.v1.disable_eager_execution()
    ckpt = os.path.join(os.path.dirname(musicnn.__file__), model) + os.sep
    data_file = Path(ckpt + ".data-00000-of-00001")
    if not data_file.is_file():
        raise Failure(f"{data_file}: missing: the musicnn package has no {model} weights", 1)
    reader = tf.compat.v1.train.NewCheckpointReader(ckpt)
    shapes = reader.get_variable_to_shape_map()
    tf.compat.v1.reset_default_graph()
    with tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, n_frames, 96])
        is_training = tf.compat.v1.placeholder(tf.bool)
        out = models.define_model(x, is_training, model, 50)
    feats = {"mean_pool": out[6], "max_pool": out[7], "penultimate": out[8]}
    graph_vars = tf.compat.v1.global_variables()
    bad = [v.op.name for v in graph_vars
           if v.op.name not in shapes or list(shapes[v.op.name]) != v.shape.as_list()]
    if bad or not graph_vars:
        raise Failure(f"{ckpt}: the checkpoint does not match the graph ({len(bad)} "
                      f"variables missing or of another shape, e.g. {bad[:3]})", 1)
    sess = tf.compat.v1.Session()
    # No initializer runs: a variable the restore misses fails when used, never random.
    tf.compat.v1.train.Saver(var_list=graph_vars).restore(sess, ckpt)
    for v in graph_vars:
        if not np.array_equal(sess.run(v), reader.get_tensor(v.op.name)):
            raise Failure(f"{ckpt}: {v.op.name} differs from the checkpoint after restore", 1)
    digest = hashlib.sha256(data_file.read_bytes()).hexdigest()
    print(f"{PROG}: {model}: {len(graph_vars)} variables restored and checked from {ckpt}",
          file=sys.stderr)
    return sess, x, is_training, feats, digest


def musicnn_input(file: str, start: float, seconds: float) -> np.ndarray:
    """(T, 96) musicnn log-mel of one chunk, as musicnn.extractor.batch_data computes it."""
    import librosa
    from musicnn import configuration as config

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa's audioread fallback notice
        y, sr = librosa.load(file, sr=config.SR, mono=True, offset=start, duration=seconds)
    mel = librosa.feature.melspectrogram(y=y, sr=sr, hop_length=config.FFT_HOP,
                                         n_fft=config.FFT_SIZE, n_mels=config.N_MELS).T
    return np.log10(10000 * mel.astype(np.float16) + 1)


def patches(rep: np.ndarray, n_frames: int) -> np.ndarray:
    """(k, n_frames, 96): the fewest evenly spaced 3 s patches that cover the chunk."""
    if len(rep) < n_frames:
        raise ValueError(f"{len(rep)} frames, fewer than one {n_frames}-frame patch")
    k = -(-len(rep) // n_frames)
    starts = np.linspace(0, len(rep) - n_frames, k).round().astype(int)
    return np.stack([rep[s:s + n_frames] for s in starts])


def embed(rows: list[dict[str, str]], model: str, feature: str) -> tuple[np.ndarray, str]:
    """(n, d) mean-pooled features of every chunk, and the weights' sha256."""
    import librosa
    from musicnn import configuration as config
    from tqdm import tqdm

    n_frames = int(librosa.time_to_frames(3, sr=config.SR, n_fft=config.FFT_SIZE,
                                          hop_length=config.FFT_HOP)) + 1
    sess, x, is_training, feats, digest = build_model(model, n_frames)
    out = []
    for r in tqdm(rows, desc="musicnn", unit="chunk"):
        try:
            batch = patches(musicnn_input(r["file"], float(r["start_s"]), float(r["seconds"])),
                            n_frames)
        except Exception as e:  # noqa: BLE001 -- any decoder error: this chunk's, named
            line = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise Failure(f"{r['file']}: chunk {r['chunk_id']}: {line}", 1) from None
        f = sess.run(feats[feature], feed_dict={x: batch, is_training: False})
        out.append(np.asarray(f, np.float64).reshape(len(batch), -1).mean(axis=0))
    emb = np.asarray(out, np.float32)
    if not np.isfinite(emb).all():
        raise Failure("musicnn gave NaN or infinite features", 1)
    return emb, digest


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez to a temporary name beside ``path``, renamed when complete."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 -> what open() would give
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("chunks", type=Path, help="chunks.csv from real_benchmark.py --write-chunks")
    p.add_argument("--out", type=Path, required=True, help="the .npz to write")
    p.add_argument("--model", choices=MODELS, default="MSD_musicnn")
    p.add_argument("--feature", choices=FEATURES, default="penultimate")
    a = p.parse_args(argv)
    try:
        if a.out.resolve() == a.chunks.resolve():
            raise Failure(f"--out {a.out}: is the chunk list; give a new path", 2)
        rows = read_chunks(a.chunks)
        a.out.parent.mkdir(parents=True, exist_ok=True)
        emb, digest = embed(rows, a.model, a.feature)
        from importlib.metadata import version

        import tensorflow as tf

        write_npz(a.out, {"chunk_ids": np.array([r["chunk_id"] for r in rows]),
                          "embeddings": emb, "model": np.array(a.model),
                          "feature": np.array(a.feature), "weights_sha256": np.array(digest),
                          "musicnn": np.array(version("musicnn")),
                          "tensorflow": np.array(tf.__version__)})
    except Failure as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted (nothing written)", file=sys.stderr)
        return 130
    except OSError as e:
        print(f"{PROG}: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(f"wrote {a.out}: {len(emb)} chunks x {emb.shape[1]} ({a.model} {a.feature})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
