"""The package's shape, checked: imports point down the layers, and nothing imports in a
cycle (every import statement counts: module level, inside functions, under
TYPE_CHECKING). The order of layers is written here once.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import REPO

PKG = REPO / "src" / "musicrep"

# Lowest first. A module may import its own layer and the ones before it, never a later
# one. Top-level leaves are torch-free constants, errors and helpers anything may use.
LAYERS = [
    {"version", "errors", "layout", "audio", "settings", "io", "precision", "workers"},
    {"data"},
    {"toy"},
    {"model"},
    {"views"},
    {"training"},
    {"inference"},
    {"evaluation"},
    {"study"},
    {"cli"},
    {"hear", "__init__"},
]
MAX_TOP_LEVEL_MODULES = 12


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_package(name: str) -> bool:
    return (PKG.parent / name.replace(".", "/") / "__init__.py").is_file()


def _imports(path: Path) -> set[str]:
    """Every musicrep module this file imports, resolved to module names."""
    return _imports_in(path.read_text(encoding="utf-8"), _module_name(path), path.name == "__init__.py")


def _imports_in(source: str, name: str, is_package: bool) -> set[str]:
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "musicrep"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "musicrep":
                continue
            for alias in node.names:  # `from pkg import module` imports that module
                sub = f"{target}.{alias.name}"
                found.add(sub if _is_package(sub) or (PKG.parent / (sub.replace(".", "/") + ".py")).is_file()
                          else target)
    found.discard(name)
    return found


def _layer(module: str) -> int:
    parts = module.split(".")
    key = parts[1] if len(parts) > 1 else "__init__"
    for i, names in enumerate(LAYERS):
        if key in names:
            return i
    raise AssertionError(f"{module}: not in any layer of tests/test_layering.py")


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in sorted(PKG.rglob("*.py"))}


def _upward(graph: dict[str, set[str]]) -> list[str]:
    return [f"{m} -> {t}" for m, targets in graph.items() for t in sorted(targets)
            if _layer(t) > _layer(m)]


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in graph.get(m, ()):
            if state.get(t) == 1:
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m)
    return cycles


def test_imports_point_down():
    upward = _upward(_graph())
    assert not upward, "imports that point up a layer:\n" + "\n".join(upward)


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_top_level_is_small():
    top = sorted(p.stem for p in PKG.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top
    subpackages = {p.parent.name for p in PKG.glob("*/__init__.py")}
    assert subpackages == set().union(*LAYERS) - {p for p in top} - {"__init__"}, subpackages


def test_the_checks_catch_what_they_should():
    """An upward import inside a function, and a cycle through `from . import x`."""
    src = "def f():\n    from ..training.config import load_config\n"
    graph = {"musicrep.data.genres": _imports_in(src, "musicrep.data.genres", False)}
    assert graph["musicrep.data.genres"] == {"musicrep.training.config"}
    assert _upward(graph) == ["musicrep.data.genres -> musicrep.training.config"]
    a = _imports_in("from . import cf\n", "musicrep.data.tags", False)
    b = _imports_in("from .tags import x\n", "musicrep.data.cf", False)
    assert a == {"musicrep.data.cf"} and b == {"musicrep.data.tags"}
    assert _cycles({"musicrep.data.tags": a, "musicrep.data.cf": b})
