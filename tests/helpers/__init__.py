"""Helpers shared by the test folders: synthetic datasets, documentation blocks, a
headless browser, tiny trainings, evaluation datasets and fault tools.

Tests import them absolutely (``from tests.helpers.synth import write_synthetic_dataset``),
never from each other's test files. ``REPO`` is the repository root, computed here once,
so moving a test file to another folder cannot break its paths.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
