"""Command line shared by baseline_train.py, single_train.py and train.py.

    python train.py configs/contrastive_MF_gnr.json [--set key=value ...]
    torchrun --nproc_per_node=2 train.py configs/contrastive_MF_gnr.json

Exit codes: 0 trained or already complete, 2 bad config, arguments or input files
(one line on stderr, no traceback), 1 training failed (diverged, disk full: one line),
130 interrupted (rerun to resume).
"""

from __future__ import annotations

import argparse
import sys

from ..errors import ConfigError
from ..training.config import SCRIPTS, load_config, parse_overrides


def build_parser(script: str) -> argparse.ArgumentParser:
    objective, accepts = SCRIPTS[script]
    p = argparse.ArgumentParser(
        prog=script,
        description=f"Train the {objective} objective ({accepts}) of "
        "Ferraro et al. (2021). Rerunning resumes from save_dir/experiment_name/last.pt.",
    )
    p.add_argument("config", help="JSON config file (see configs/)")
    p.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help='override config keys; values are JSON (2, true, "x"), else taken as strings',
    )
    return p


def main(script: str, argv: list[str] | None = None) -> int:
    """Run one training script; returns the process exit code."""
    args = build_parser(script).parse_args(argv)
    try:
        cfg = load_config(args.config, parse_overrides(args.overrides), script=script)
    except ConfigError as e:
        print(f"{script}: error: {e}", file=sys.stderr)
        return 2

    # Heavy imports only once the config is known to be good.
    import torch.distributed as dist

    from ..training.distributed import init_distributed
    from ..training.faults import TrainingError
    from ..training.trainer import Trainer

    ctx = None
    try:
        ctx = init_distributed(cfg.device)
        Trainer(cfg, ctx).fit()
        return 0
    except ConfigError as e:
        if ctx is None or ctx.is_main:
            print(f"{script}: error: {e}", file=sys.stderr)
        return 2
    except (TrainingError, OSError) as e:  # OSError: a write outside the epoch loop (disk full)
        print(f"{script}: training failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
