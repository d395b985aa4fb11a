"""The study (issue #11): does contrasting audio with CF *and* genres beat the rest here?

    python scripts/study.py --study-dir runs/study [--publish reports/study]
    python scripts/study.py --study-dir runs/study_smoke --smoke      # minutes, same files
    python scripts/study.py --study-dir runs/study --report-only      # tables from finished runs
    python scripts/study.py --study-dir runs/study --plan-only        # the plan and its estimate
    python scripts/study.py --reanalyse reports/study/results.json    # seed-level tests, no training
    python scripts/study.py --checks DATA_DIR [--checks-json FILE]    # view checks, no training
    python scripts/study.py --mechanism --study-dir DIR [--smoke]     # the mechanism study
    python scripts/study.py --mechanism --study-dir DIR --report-only # its report from what ran

A thin command line over musicrep.study (the pipeline, its files and the report are
described there). Exit codes: 0 done, 2 bad input or study directory (one line on
stderr), 1 training failed or a file could not be written, 130 interrupted (rerun the
same command to resume).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..io import write_json
from ..study.directory import Layout, log
from ..study.pipeline import run_study
from ..study.plan import FULL, SMOKE, describe, load_plan
from ..study.report import POPULARITY_TAGS, load_results, reanalyse_results, write_report
from .common import Parser, os_error_line, refuse_inputs_as_output


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="study.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--study-dir", default=None, help="where every run and the report go "
                   "(default: runs/study, with --mechanism runs/mechanism; the full study belongs "
                   "outside the work tree)")
    p.add_argument("--smoke", action="store_true", help="the tiny plan: same pipeline in minutes")
    p.add_argument("--mechanism", action="store_true",
                   help="the mechanism study of reports/mechanism/PLAN.md instead: corpora G0, G1, "
                   "G2, their manipulation checks, the contrastive configs x seeds in the plan's "
                   "order (the pre-registered family first), H1-H4 with Holm and TOST; with "
                   "--plan-only, --report-only and --smoke")
    p.add_argument("--report-only", action="store_true", help="rebuild report/ from finished runs")
    p.add_argument("--plan-only", action="store_true", help="print the plan and its estimate, then stop")
    p.add_argument("--publish", default=None, help="copy the finished report/ to this directory")
    p.add_argument("--reading", default=None, help="markdown file with the reading of the results "
                   "(becomes results.md's 'Reading'; the Makefile passes reports/study_reading.md)")
    p.add_argument("--reanalyse", default=None, metavar="RESULTS_JSON",
                   help="re-analyse a finished study's results.json without training: seed-level "
                   "tests, Holm over the reading's claims, equivalence margins; rewrites results.md, "
                   "reanalysis.md/.json and the plots beside it (results.json stays as it is)")
    p.add_argument("--popularity-corpus", default=None, metavar="DIR",
                   help="with --reanalyse: regenerate the study's corpus (short mels, about a minute) "
                   f"in DIR and score the popularity oracle on tags ({POPULARITY_TAGS} beside "
                   "results.json)")
    p.add_argument("--checks", default=None, metavar="DATASET_DIR",
                   help="manipulation checks of a created dataset of a generated corpus, no "
                   "training (seconds): true genre (ROC-AUC) and hidden mood (R^2) probed from "
                   "the CF vectors and from the genre metadata, overall, per popularity tercile "
                   "and for niche genres; prints a table")
    p.add_argument("--truth", default=None, metavar="FILE",
                   help="with --checks: the corpus's generated_truth.json (default: found "
                   "through the dataset's manifest)")
    p.add_argument("--checks-json", default=None, metavar="FILE",
                   help="with --checks: also write the values as JSON to FILE")
    p.add_argument("--device", default="auto", help="evaluation device (training: config 'auto')")
    p.add_argument("--quiet", action="store_true", help="no progress bars while embedding")
    return p


def reanalyse(a: argparse.Namespace) -> None:
    """--reanalyse: the popularity oracle's tag row first when asked, then the tables."""
    path = Path(a.reanalyse)
    if a.popularity_corpus:
        from ..study.pipeline import score_popularity_tags

        scored = score_popularity_tags(load_results(path), Path(a.popularity_corpus))
        write_json(path.parent / POPULARITY_TAGS, scored)
    reanalyse_results(path, Path(a.reading) if a.reading else None)


def checks(a: argparse.Namespace) -> None:
    """--checks: the table on stdout, the values in --checks-json when asked."""
    from ..study.checks import format_checks, run_checks

    dataset, out = Path(a.checks), Path(a.checks_json) if a.checks_json else None
    if out is not None:  # before the work, and again once the truth file is found
        inputs = [dataset, *(dataset.iterdir() if dataset.is_dir() else ())]
        refuse_inputs_as_output(out, inputs + ([Path(a.truth)] if a.truth else []),
                                "--checks-json")
    result = run_checks(dataset, a.truth)
    if out is not None:
        refuse_inputs_as_output(out, [Path(result["truth"])], "--checks-json")
        write_json(out, result)
    print(format_checks(result))


def mechanism(a: argparse.Namespace, layout: Layout) -> None:
    """--mechanism: the plan, the runs (the report after the family and at the end), or
    the report alone."""
    from ..study.mechanism import finished_runs, run_mechanism
    from ..study.mechanism_plan import (
        FULL_MECHANISM,
        SMOKE_MECHANISM,
        describe_mechanism,
        load_mechanism_plan,
        measured_costs,
    )
    from ..study.mechanism_report import write_mechanism_report

    root = layout.root
    if a.report_only:
        write_mechanism_report(root, load_mechanism_plan(root))
        return
    mplan = SMOKE_MECHANISM if a.smoke else FULL_MECHANISM
    if a.plan_only:
        started = (root / "mechanism.json").is_file()
        log(describe_mechanism(mplan, measured_costs(root, mplan) if started else None,
                               finished_runs(root, mplan) if started else frozenset()))
        return
    first, last = mplan.blocks[0]["name"], mplan.blocks[-1]["name"]

    def after_block(name: str) -> None:  # a report as soon as the family is complete
        if name == first and name != last:
            write_mechanism_report(root, mplan)

    run_mechanism(root, mplan, a.device, progress=not a.quiet, after_block=after_block)
    write_mechanism_report(root, mplan)


def main(argv: list[str] | None = None) -> int:
    """Run the study (or only its plan, report, re-analysis or checks); returns the exit code."""
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.checks and (a.smoke or a.report_only or a.plan_only or a.publish or a.reanalyse):
        parser.error("--checks reads a dataset alone: leave out --smoke, --report-only, "
                     "--plan-only, --publish and --reanalyse")
    if (a.truth or a.checks_json) and not a.checks:
        parser.error("--truth and --checks-json go with --checks")
    if a.reanalyse and (a.smoke or a.report_only or a.plan_only or a.publish):
        parser.error("--reanalyse works on a results.json alone: leave out --smoke, "
                     "--report-only, --plan-only and --publish")
    if a.popularity_corpus and not a.reanalyse:
        parser.error("--popularity-corpus goes with --reanalyse")
    if a.mechanism and (a.checks or a.reanalyse or a.publish or a.reading):
        parser.error("--mechanism goes with --study-dir, --smoke, --plan-only, --report-only, "
                     "--device and --quiet only (reports/mechanism/ is written by hand after the run)")
    from ..data.builder import DatasetError

    default_dir = "runs/mechanism" + ("_smoke" if a.smoke else "") if a.mechanism else "runs/study"
    layout = Layout(Path(a.study_dir or default_dir))
    plan = SMOKE if a.smoke else FULL
    try:
        if a.mechanism:
            mechanism(a, layout)
            return 0
        if a.checks:
            checks(a)
            return 0
        if a.reanalyse:
            reanalyse(a)
            return 0
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
    except OSError as e:  # a full disk or an unwritable report folder
        print(f"study.py: error: {os_error_line(e)}", file=sys.stderr)
        return 1
    except RuntimeError as e:  # TrainingError: the loss became NaN
        print(f"study.py: training failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
