"""The code blocks of README.md and docs/*.md, found by what they contain, so tests run
them as written."""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import REPO

README = REPO / "README.md"
DOCS = REPO / "docs"

# A fenced block, possibly indented (inside a list item): its closing fence has the
# same indent as its opening one.
_FENCE = re.compile(r"^([ \t]*)```([\w+-]*)[^\n]*\n(.*?)^\1```[ \t]*$", re.MULTILINE | re.DOTALL)
_COMMENT = re.compile(r"^\s*<!--\s*(.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str  # dedented, as a reader would paste it
    comment: str  # the HTML comment directly before the block ("" when none)

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def doc_pages() -> list[Path]:
    """README.md, then every docs/*.md in name order: the order blocks are searched in."""
    return [README, *sorted(DOCS.glob("*.md"))]


def _resolve(page: str | Path) -> Path:
    p = Path(page)
    if not p.suffix:
        p = p.with_suffix(".md")
    for cand in (p, REPO / p, DOCS / p):
        if cand.is_file():
            return cand.resolve()
    raise AssertionError(f"no documentation page {page!r}")


def code_blocks(page: str | Path) -> list[Block]:
    """Every fenced block of one page, in order."""
    path = _resolve(page)
    text = path.read_text(encoding="utf-8")
    blocks = []
    for m in _FENCE.finditer(text):
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        c = _COMMENT.match(before)
        blocks.append(Block(
            page=path, line=text.count("\n", 0, m.start()) + 1, language=m.group(2),
            code=textwrap.dedent(m.group(3)), comment=c.group(1) if c else "",
        ))
    return blocks


def readme_block(language: str, containing: str, page: str | Path | None = None) -> str:
    """The first ```language block whose text contains ``containing``: in ``page`` when
    given (a path, or a docs page name such as "embedding"), else in README.md and then
    docs/*.md in name order."""
    pages = [_resolve(page)] if page is not None else doc_pages()
    for p in pages:
        for b in code_blocks(p):
            if b.language == language and containing in b.code:
                return b.code
    where = pages[0].name if page is not None else "README.md or docs/*.md"
    raise AssertionError(f"{where} has no ```{language} block containing {containing!r}")
