"""The README's code blocks, found by what they contain, so tests run them as written."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_block(language: str, containing: str) -> str:
    """The first ```language block of README.md whose text contains ``containing``."""
    parts = README.read_text(encoding="utf-8").split(f"```{language}\n")[1:]
    for part in parts:
        code = part.split("```", 1)[0]
        if containing in code:
            return code
    raise AssertionError(f"README.md has no ```{language} block containing {containing!r}")
