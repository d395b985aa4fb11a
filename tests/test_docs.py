"""README.md and docs/*.md: every code block runs in the suite, every command line in them
names a script that exists and options it accepts, every relative link resolves.

Python blocks are run either here (RUN_HERE) or by the test that owns them
(RUN_ELSEWHERE, recipes): a block none of them runs fails the suite, unless an HTML
comment `<!-- not run: reason -->` directly before it says why it cannot run.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
import warnings
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import REPO
from tests.helpers.docs import DOCS, README, Block, code_blocks, doc_pages, readme_block

README_MAX_LINES = 210
LANGUAGES = {"python", "py", "bash", "sh", "csv", "bibtex", ""}

# Blocks that another test runs, found there with readme_block(language, containing):
# (language, containing) -> that test. Each must find exactly the block it names.
RUN_ELSEWHERE = {
    ("python", "load_encoder"): "tests/unit/inference/test_encoder.py::test_readme_api_example_runs",
    ("python", "musicrep import hear"): "tests/unit/inference/test_encoder.py::test_readme_hear_example_runs",
    ("bash", "explore.py"): "tests/e2e/test_explore.py::readme_pages",
}
# `<!-- recipe: NAME -->` blocks run by tests/unit/data/test_importer.py::test_readme_recipe_NAME.
RECIPE_TESTS = REPO / "tests" / "unit" / "data" / "test_importer.py"

ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def all_blocks() -> list[Block]:
    return [b for page in doc_pages() for b in code_blocks(page)]


def _is_python(b: Block) -> bool:
    return b.language in ("python", "py")


# --------------------------------------------------------------- python blocks run here


def _emb_npz(work: Path) -> None:
    """An emb.npz with the keys the block reads, as encode.py writes them (its keys are
    tested in test_shipped_models and test_encode; running it here would double this
    test's time)."""
    rng = np.random.default_rng(0)
    np.savez(work / "emb.npz", embeddings=rng.normal(size=(2, 128)).astype(np.float32),
             paths=np.array(["song.mp3", "albums/a.flac"]))


# containing -> what the block's folder needs before it runs (cwd is that folder).
RUN_HERE = {
    'np.load("emb.npz")': _emb_npz,
}


def _find(language_ok, containing: str) -> list[Block]:
    return [b for b in all_blocks() if language_ok(b) and containing in b.code]


@pytest.mark.parametrize("containing", sorted(RUN_HERE))
def test_python_block_runs(containing, tmp_path, monkeypatch):
    (block,) = _find(_is_python, containing)
    RUN_HERE[containing](tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").symlink_to(REPO / "models")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(block.code, block.where, "exec"), {"__name__": "docs_block"})  # noqa: S102


# ----------------------------------------------------- every python block is run somewhere


def _runner(b: Block) -> str | None:
    """What runs the python block ``b``, or None."""
    if b.comment.startswith("recipe:"):
        name = b.comment.split(":", 1)[1].strip()
        test = f"test_readme_recipe_{name}"
        assert f"def {test}(" in RECIPE_TESTS.read_text(encoding="utf-8"), (b.where, test)
        return f"tests/unit/data/test_importer.py::{test}"
    for (language, containing), test in RUN_ELSEWHERE.items():
        if b.language == language and containing in b.code:
            return test
    for containing in RUN_HERE:
        if containing in b.code:
            return f"tests/test_docs.py::test_python_block_runs[{containing}]"
    return None


def test_every_python_block_is_run_by_a_test():
    unrun, no_reason = [], []
    for b in all_blocks():
        if not _is_python(b):
            continue
        if b.comment.startswith("not run:"):
            if not b.comment[len("not run:"):].strip():
                no_reason.append(b.where)
        elif _runner(b) is None:
            unrun.append(b.where)
    assert not (unrun or no_reason), (
        f"python blocks no test runs: {unrun}; `<!-- not run: -->` without a reason: "
        f"{no_reason}. Add a block to RUN_HERE (with what its folder needs) or "
        "RUN_ELSEWHERE, or mark it <!-- not run: reason -->")


@pytest.mark.parametrize(("language", "containing"), sorted(RUN_ELSEWHERE))
def test_run_elsewhere_entries_find_their_block(language, containing):
    """The owning test reads its block with readme_block(language, containing): that call
    must return the one block the entry stands for, and the test must make it."""
    matches = _find(lambda b: b.language == language, containing)
    assert len(matches) == 1, (containing, [b.where for b in matches])
    assert readme_block(language, containing) == matches[0].code
    test_file = REPO / RUN_ELSEWHERE[(language, containing)].split("::")[0]
    assert f'readme_block("{language}", "{containing}")' in test_file.read_text(encoding="utf-8")


@pytest.mark.parametrize("containing", sorted(RUN_HERE))
def test_run_here_entries_find_one_block(containing):
    assert len(_find(_is_python, containing)) == 1, containing


def test_blocks_have_known_languages():
    odd = [(b.where, b.language) for b in all_blocks() if b.language not in LANGUAGES]
    assert not odd, f"blocks in a language nothing checks: {odd}"


# --------------------------------------------------------------------- shell blocks


SHELL_BUILTINS = {"cd", "export", "source", ".", "echo", "set", "unset", "mkdir", "ls"}
PYTHONS = {"python", "python3", ".venv/bin/python"}


def _commands(b: Block) -> list[tuple[str, list[str]]]:
    """(line, argv) for each command of a shell block: continuations joined, comments,
    blank lines and leading VAR=value assignments dropped."""
    out = []
    for line in re.sub(r"\\\n", " ", b.code).splitlines():
        args = shlex.split(line, comments=True)
        while args and re.fullmatch(r"[A-Za-z_]\w*=.*", args[0]):
            args = args[1:]
        if args:
            out.append((line.strip(), args))
    return out


def _shell_commands() -> list[tuple[str, str, list[str]]]:
    return [(b.where, line, args) for b in all_blocks() if b.language in ("bash", "sh")
            for line, args in _commands(b)]


@cache
def _help(argv: tuple[str, ...]) -> str:
    r = subprocess.run([sys.executable, *argv, "--help"], cwd=REPO, capture_output=True,
                       text=True, env=ENV, timeout=120, check=False)
    assert r.returncode == 0, (argv, r.stderr[-2000:])
    return r.stdout + r.stderr


@cache
def _console_scripts() -> dict[str, str]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return data["project"]["scripts"]


@cache
def _makefile() -> tuple[set[str], set[str]]:
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    targets = {t for m in re.finditer(r"^([^\s:#=][^:#=]*?)\s*:(?!=)", text, re.MULTILINE)
               for t in m.group(1).split()}
    variables = set(re.findall(r"^([A-Za-z_]\w*)\s*[?:+]?=", text, re.MULTILINE))
    return targets, variables


def _module_file(module: str) -> Path | None:
    base = REPO / "src" / Path(*module.split("."))
    for cand in (base.with_suffix(".py"), base / "__main__.py"):
        if cand.is_file():
            return cand
    return None


def _flags(args: list[str]) -> list[str]:
    """The --options of an argument list (`[--workers 8]` counts, `--set k=v` gives --set)."""
    return [a.strip("[]").split("=", 1)[0] for a in args if a.lstrip("[").startswith("--")]


def _check_options(name: str, help_argv: tuple[str, ...], args: list[str]) -> list[str]:
    """Every --option of ``args`` appears in the --help text of ``name``."""
    flags = _flags(args)
    if not flags:
        return []
    text = _help(help_argv)
    return [f"{flag} is not an option of {name}" for flag in flags
            if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text)]


def _check_python(args: list[str]) -> list[str]:
    rest = args[1:]
    if rest[:1] == ["-c"]:
        return []  # inline code: nothing to resolve
    if rest[:1] == ["-m"]:
        module = rest[1]
        if not _module_file(module):
            return [f"no module {module} under src/"]
        return _check_options(f"-m {module}", ("-m", module), rest[2:])
    script = rest[0]
    if not (script.endswith(".py") and (REPO / script).is_file()):
        return [f"{script} is not a script of the repository"]
    return _check_options(script, (script,), rest[1:])


def _check_make(args: list[str]) -> list[str]:
    targets, variables = _makefile()
    goals = [a for a in args[1:] if not a.startswith("-") and "=" not in a]
    problems = [] if goals else ["no make target"]
    problems += [f"the Makefile has no target {g}" for g in goals if g not in targets]
    problems += [f"the Makefile has no variable {a.split('=', 1)[0]}" for a in args[1:]
                 if "=" in a and a.split("=", 1)[0] not in variables]
    return problems


def _check_command(args: list[str]) -> list[str]:
    prog = args[0]
    if prog in SHELL_BUILTINS:
        return []
    if prog in PYTHONS:
        problems = _check_python(args)
    elif prog == "make":
        problems = _check_make(args)
    elif prog in _console_scripts():
        module, func = _console_scripts()[prog].split(":")
        call = (f"import sys; sys.argv = [{prog!r}, '--help']; "  # _help appends --help
                f"from {module} import {func}; sys.exit({func}())")
        problems = ([f"{module} not found"] if not _module_file(module)
                    else _check_options(prog, ("-c", call), args[1:]))
    else:
        return [f"{prog} is a command this test does not know"]
    # a config a command names must exist
    return problems + [f"no {a}" for a in args[1:]
                       if re.fullmatch(r"configs/[\w.-]+\.json", a) and not (REPO / a).is_file()]


def test_shell_blocks_name_scripts_and_options_that_exist():
    commands = _shell_commands()
    assert commands
    problems = [f"{where}: `{line}`: {p}" for where, line, args in commands
                for p in _check_command(args)]
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------- links


_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCED = re.compile(r"^([ \t]*)```.*?^\1```[ \t]*$", re.MULTILINE | re.DOTALL)


def _prose(page: Path) -> str:
    return _FENCED.sub("", page.read_text(encoding="utf-8"))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@cache
def _anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for h in re.findall(r"^#{1,6}\s+(.*?)\s*#*\s*$", _prose(page), re.MULTILINE):
        s = _slug(h)
        out.add(s if s not in seen else f"{s}-{seen[s]}")
        seen[s] = seen.get(s, 0) + 1
    return out


def _links(page: Path) -> list[str]:
    return [t for t in _LINK.findall(_prose(page)) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: p.name)
def test_relative_links_resolve(page):
    bad = []
    for target in _links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            bad.append(f"{target}: no heading #{anchor} in {dest.name}")
    assert not bad, f"{page.name}: {bad}"


def test_readme_is_short_and_links_every_docs_page():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES})"
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in _links(README)}
    missing = [p.name for p in sorted(DOCS.glob("*.md")) if p.resolve() not in linked]
    assert not missing, f"README.md does not link {missing}"


def test_the_module_map_names_every_module():
    """docs/architecture.md's module map stays true: every module of the package is listed."""
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    pkg = REPO / "src" / "musicrep"
    missing = [str(p.relative_to(pkg)) for p in sorted(pkg.rglob("*.py"))
               if f"`{p.relative_to(pkg).as_posix()}`" not in text]
    assert not missing, f"docs/architecture.md's module map lacks {missing}"
