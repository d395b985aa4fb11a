"""The study (issue #11): does contrasting audio with CF *and* genres beat the rest here?

    python scripts/study.py --study-dir runs/study [--publish reports/study]
    python scripts/study.py --study-dir runs/study_smoke --smoke      # minutes, same files
    python scripts/study.py --study-dir runs/study --report-only      # tables from finished runs
    python scripts/study.py --study-dir runs/study --plan-only        # the plan and its estimate

A thin command line over musicrep.study (the pipeline, its files and the report are
described there). Exit codes: 0 done, 2 bad input or study directory (one line on
stderr), 1 training failed, 130 interrupted (rerun the same command to resume).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..study.directory import Layout, log
from ..study.pipeline import run_study
from ..study.plan import FULL, SMOKE, describe, load_plan
from ..study.report import write_report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="study.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--study-dir", default="runs/study", help="where every run and the report go "
                   "(default: runs/study; the full study belongs outside the work tree)")
    p.add_argument("--smoke", action="store_true", help="the tiny plan: same pipeline in minutes")
    p.add_argument("--report-only", action="store_true", help="rebuild report/ from finished runs")
    p.add_argument("--plan-only", action="store_true", help="print the plan and its estimate, then stop")
    p.add_argument("--publish", default=None, help="copy the finished report/ to this directory")
    p.add_argument("--reading", default=None, help="markdown file with the reading of the results "
                   "(becomes results.md's 'Reading'; the Makefile passes reports/study_reading.md)")
    p.add_argument("--device", default="auto", help="evaluation device (training: config 'auto')")
    p.add_argument("--quiet", action="store_true", help="no progress bars while embedding")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the study (or only its plan or report); returns the process exit code."""
    a = build_parser().parse_args(argv)
    from ..data.builder import DatasetError

    layout = Layout(Path(a.study_dir))
    plan = SMOKE if a.smoke else FULL
    try:
        if a.plan_only:
            log(describe(plan))
            return 0
        if a.report_only:
            plan = load_plan(layout)
        else:
            run_study(layout, plan, a.device, progress=not a.quiet)
        write_report(layout, plan, Path(a.publish) if a.publish else None,
                     Path(a.reading) if a.reading else None)
    except KeyboardInterrupt:
        print(f"\ninterrupted; rerun the same command to resume ({layout.root})", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, DatasetError) as e:
        # StudyError, ConfigError, MelonFormatError, unusable files or directories
        print(f"study.py: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # TrainingError: the loss became NaN
        print(f"study.py: training failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
