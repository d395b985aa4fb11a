"""The mechanism study's runner (reports/mechanism/PLAN.md): the three corpora, their
manipulation checks, and every run of the plan in its order, resumably.

    python scripts/study.py --mechanism --study-dir DIR [--smoke]

Every step is a file under the study directory, so a rerun skips what is finished and an
interrupted training resumes from its last.pt:

    mechanism.json                       the plan (another plan is refused)
    G0/, G1/, G2/                        one study directory per setting (study.pipeline):
        study.json                       the setting's plan (preset, configs, seeds)
        data/melon/, data/dataset/       the corpus (make_toy_melon --preset) and dataset
        checks.json                      the manipulation checks (study.checks), before training
        runs/<config>/lr<lr>/seed<k>/    one training run, eval.json and eval.npz
        runs/random-init/seed<k>/        the floor: an untrained encoder of the same width
        runs/popularity/                 the popularity oracle
    report/                              results.md/.csv/.json and plots (study.mechanism_report)

Before any training: every dataset is built and checked, the settings that must share
their split (G0 and G1: H3 pairs their test tracks) are compared (splits.json equal, or
StudyError), and G1's checks are held against their targets (the gate: the full plan
stops when one is missed, as PLAN.md pre-registers; the smoke plan only reports it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..io import write_json
from ..layout import SPLITS_FILE
from .directory import Layout, StudyError, log
from .mechanism_plan import (
    MechanismPlan,
    MechRun,
    check_mechanism_plan,
    describe_mechanism,
    estimate_mechanism,
    hours,
    measured_costs,
    run_folder,
    run_order,
    setting_layout,
    setting_plan,
)
from .pipeline import (
    build_data,
    evaluate_popularity,
    evaluate_random_init,
    evaluate_run,
    evaluated,
    train_run,
    trained,
)
from .plan import RANDOM, Plan, check_plan


def finished_runs(root: Path, mplan: MechanismPlan) -> set[MechRun]:
    """The runs of the plan that are trained (to the plan's budget) and evaluated."""
    plan = mplan.budget
    done = set()
    for run in run_order(mplan):
        folder = run_folder(root, mplan, run)
        if run.config == RANDOM:
            ok = (folder / "eval.npz").is_file()
        else:
            ok = evaluated(folder) and trained(folder, plan)
        if ok:
            done.add(run)
    return done


def setting_checks(layout: Layout) -> dict[str, Any]:
    """The manipulation checks of one setting's dataset (checks.json; computed once)."""
    from .checks import run_checks

    if not layout.checks.is_file():
        log(f"== manipulation checks of {layout.dataset}")
        write_json(layout.checks, run_checks(layout.dataset))
    return json.loads(layout.checks.read_text())


def splits_equal(root: Path, mplan: MechanismPlan) -> list[dict[str, Any]]:
    """For each group of settings that must share a split: whether their splits.json are
    equal (the settings without a dataset yet are left out)."""
    out = []
    for group in mplan.shared_splits:
        files = [setting_layout(root, s).dataset / SPLITS_FILE for s in group]
        if not all(f.is_file() for f in files):
            continue
        first = json.loads(files[0].read_text())
        out.append({"settings": list(group),
                    "equal": all(json.loads(f.read_text()) == first for f in files[1:])})
    return out


def gate(checks: dict[str, dict[str, Any]]) -> list[str]:
    """G1's targets that its checks miss (PLAN.md: then no model is trained)."""
    from .checks import g1_targets

    if "G1" not in checks:
        return []
    return [f"{k} {v['value']:.3f} (target {v['target']})" if v["value"] is not None else f"{k} n/a"
            for k, v in g1_targets(checks["G1"]).items() if not v["met"]]


@dataclass
class Context:
    """What the runs of one study share: the settings' layouts, plans and evaluation data."""

    root: Path
    mplan: MechanismPlan
    device: str
    progress: bool
    layouts: dict[str, Layout] = field(default_factory=dict)
    plans: dict[str, Plan] = field(default_factory=dict)
    data: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def eval_data(self, setting: str) -> tuple[Any, Any]:
        """(EvalData, playlist queries) of a setting, loaded once."""
        from ..evaluation.data import load_eval_data
        from .evaluate import playlist_queries

        if setting not in self.data:
            data = load_eval_data(self.layouts[setting].dataset)
            self.data[setting] = (data, playlist_queries(data))
        return self.data[setting]


def prepare_settings(ctx: Context) -> dict[str, dict[str, Any]]:
    """Every setting's plan, data and checks, the shared splits and the gate (before any
    training); returns the checks by setting."""
    checks = {}
    for setting in ctx.mplan.settings:
        layout, plan = setting_layout(ctx.root, setting), setting_plan(ctx.mplan, setting)
        check_plan(layout, plan)
        build_data(layout, plan)
        ctx.layouts[setting], ctx.plans[setting] = layout, plan
        checks[setting] = setting_checks(layout)
    for group in splits_equal(ctx.root, ctx.mplan):
        if not group["equal"]:
            raise StudyError(f"{ctx.root}: settings {' and '.join(group['settings'])} have different "
                             f"{SPLITS_FILE}; H3 pairs their test tracks (PLAN.md), so they must not")
        log(f"== splits: {' and '.join(group['settings'])} have identical {SPLITS_FILE} (checked)")
    missed = gate(checks)
    if missed and ctx.mplan.gate:
        raise StudyError(f"manipulation checks: G1 misses its targets ({'; '.join(missed)}); PLAN.md: no "
                         f"model is trained (revise the preset against the checks alone); the checks "
                         f"are in {ctx.layouts['G1'].checks}")
    if missed:
        log(f"== manipulation checks: G1 misses {'; '.join(missed)} (plan '{ctx.mplan.name}': reported, "
            "not enforced)")
    for setting in ctx.mplan.settings:
        data, queries = ctx.eval_data(setting)
        evaluate_popularity(ctx.layouts[setting], data, queries)
    return checks


def do_run(ctx: Context, run: MechRun) -> None:
    """Train (or resume) and evaluate one run, or evaluate one floor."""
    layout, plan = ctx.layouts[run.setting], ctx.plans[run.setting]
    data, queries = ctx.eval_data(run.setting)
    if run.config == RANDOM:
        evaluate_random_init(layout, plan, data, queries, run.seed, ctx.device, ctx.progress)
        return
    lr = ctx.mplan.learning_rate
    folder = layout.run(run.config, lr, run.seed)
    if not trained(folder, plan):
        train_run(layout, plan, run.config, lr, run.seed)
    evaluate_run(layout, plan, data, queries, (run.config, lr, run.seed), ctx.device, ctx.progress)


def run_mechanism(root: Path, mplan: MechanismPlan, device: str = "auto", progress: bool = True,
                  after_block: Callable[[str], None] | None = None) -> None:
    """Every step of the module docstring that is not finished yet, in the plan's order.
    ``after_block(name)`` is called when a block in which something ran is complete (the
    command line writes the report after the primary family)."""
    from ..precision import resolve_device

    root = Path(root)
    check_mechanism_plan(root, mplan)
    done = finished_runs(root, mplan)
    log(describe_mechanism(mplan, measured_costs(root, mplan), done))
    t0 = time.perf_counter()
    ctx = Context(root, mplan, resolve_device(device), progress)
    prepare_settings(ctx)
    order = run_order(mplan)
    ran: set[str] = set()
    for i, run in enumerate(order, 1):
        if run not in done:
            log(f"== [{i}/{len(order)}] {run.block}: {run.label}"
                + (" (floor: untrained encoder)" if run.config == RANDOM else ""))
            do_run(ctx, run)
            done.add(run)
            ran.add(run.block)
            left = estimate_mechanism(mplan, measured_costs(root, mplan), done)["left_s"]
            log(f"== {len(done)}/{len(order)} runs finished; ~{hours(left)} left (measured)")
        last_of_block = i == len(order) or order[i].block != run.block
        if last_of_block and run.block in ran and after_block is not None:
            after_block(run.block)
    log(f"== mechanism study steps done in {time.perf_counter() - t0:.0f} s "
        f"({len(done)} of {len(order)} runs finished)")
