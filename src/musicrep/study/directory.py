"""The study directory: where each step of the pipeline writes its file, and the one-line
error and progress messages about it (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PLAN_FILE = "study.json"  # the plan: a directory holds one plan, another is refused
GRID_FILE = "grid.json"  # the learning rate chosen per objective family
CHECKS_FILE = "checks.json"  # the manipulation checks of the dataset (study.checks)


class StudyError(ValueError):
    """Bad input or state of the study directory (one line)."""


def log(msg: str) -> None:
    print(msg, flush=True)


def lr_name(lr: float) -> str:
    return f"lr{lr:g}"


@dataclass(frozen=True)
class Layout:
    """Where each step of the study writes its files (musicrep.study.pipeline lists them)."""

    root: Path

    @property
    def melon(self) -> Path:
        return self.root / "data" / "melon"

    @property
    def dataset(self) -> Path:
        return self.root / "data" / "dataset"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def run(self, config: str, lr: float, seed: int) -> Path:
        return self.runs / config / lr_name(lr) / f"seed{seed}"

    def reference(self, name: str, seed: int | None = None) -> Path:
        return self.runs / name / ("" if seed is None else f"seed{seed}")

    @property
    def plan(self) -> Path:
        return self.root / PLAN_FILE

    @property
    def grid(self) -> Path:
        return self.root / GRID_FILE

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def checks(self) -> Path:
        return self.root / CHECKS_FILE
