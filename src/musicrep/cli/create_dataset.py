"""Build the HDF5 train/val/test splits, CF vectors and side files from a Melon directory.

    python scripts/create_dataset.py --melon-dir data/toy/melon --out-dir data/toy/dataset

Works unchanged on the real Melon Playlist Dataset and on the generated corpus
(scripts/make_toy_melon.py). See src/musicrep/dataset_builder.py for the output layout.

Exit codes: 0 dataset written; 2 bad arguments, metadata or output directory (one that
cannot be written, or is or holds the --melon-dir), a split with no usable track, or
another run holds the output (one line on stderr); 1 the system failed (disk full, I/O
error; one line naming the file); 130 interrupted. On every non-zero exit the output
directory is as it was before the run. A split too small for a task (training, a
probe, continuation, the CF factors) is a `warning:` line and an entry of the
manifest's `warnings` (sizes: src/musicrep/data/minimums.py).
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit (CF) is slower with BLAS threads

from ..data.builder import DatasetArgs, DatasetError, create_dataset
from ..data.melon import MelonFormatError
from ..errors import ConfigError
from .common import Parser, os_error_line, run

PROG = "create_dataset"


def main(argv: list[str] | None = None) -> int:
    d = DatasetArgs(melon_dir="", out_dir="")
    p = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--melon-dir", required=True, help="Melon directory (train.json, song_meta.json, arena_mel/...)")
    p.add_argument("--out-dir", required=True, help="where to write the dataset")
    p.add_argument("--frames", type=int, default=d.frames, help="frames kept per track (default %(default)s)")
    p.add_argument("--cf-algorithm", choices=["bpr", "als"], default=d.cf_algorithm)
    p.add_argument("--cf-factors", type=int, default=d.cf_factors, help="CF vectors have factors + 1 dims")
    p.add_argument("--cf-epochs", type=int, default=d.cf_epochs)
    p.add_argument("--cf-learning-rate", type=float, default=d.cf_learning_rate)
    p.add_argument("--cf-seed", type=int, default=d.cf_seed)
    p.add_argument("--seed", type=int, default=d.seed, help="split seed (default %(default)s)")
    p.add_argument("--test-size", type=float, default=d.test_size)
    p.add_argument("--val-size", type=float, default=d.val_size, help="fraction of the non-test tracks")
    p.add_argument("--dtype", choices=["float32", "float16"], default=d.dtype)
    p.add_argument("--workers", type=int, default=d.workers, help="threads reading mels")
    p.add_argument("--overwrite", action="store_true", help="rebuild a finished dataset")
    a = p.parse_args(argv)
    args = DatasetArgs(**{k: v for k, v in vars(a).items()})
    return run(PROG, lambda: _create(args),
               interrupted=f"interrupted: {args.out_dir} is unchanged (the partial build "
                           "was removed)")


def _create(args: DatasetArgs) -> int:
    try:
        m = create_dataset(args)
    except (MelonFormatError, DatasetError) as e:
        raise ConfigError(str(e)) from None
    except OSError as e:
        print(f"{PROG}: error: {os_error_line(e)}; {args.out_dir} is unchanged", file=sys.stderr)
        return 1
    c = m["counts"]
    print(f"wrote {args.out_dir}: {c['train_tracks']} train, {c['val_tracks']} val, "
          f"{c['test_tracks']} test tracks, {c['genres']} genres, CF {m['cf_dim']}-d; "
          f"skipped {c['skipped_tracks']} tracks {m['skipped_by_reason']}, "
          f"{c['skipped_playlists']} playlists and {c['playlist_songs_not_in_meta']} playlist "
          f"song ids not in song_meta.json (listed in skipped.json)"
          + (f"; {len(m['warnings'])} warnings above (in manifest.json)" if m["warnings"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
