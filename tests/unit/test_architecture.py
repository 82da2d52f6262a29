"""The shape of the code: no import cycle, no oversized module, no borrowed private names.

The import graph is built with grimp (the library under import-linter), type-only imports
(``if TYPE_CHECKING:``) included: a cycle through a type annotation is still a cycle for a reader.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import grimp

import carnet

SOURCE = Path(carnet.__file__).parent
MAX_LINES = 800


def _import_graph() -> dict[str, list[str]]:
    graph = grimp.build_graph("carnet", exclude_type_checking_imports=False)
    return {
        module: sorted(graph.find_modules_directly_imported_by(module)) for module in sorted(graph.modules)
    }


def _cycles(graph: Mapping[str, list[str]]) -> list[list[str]]:
    """Return the strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle_under_carnet() -> None:
    """No module of carnet imports, directly or not, one that imports it back (type-only imports count)."""
    assert _cycles(_import_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The cycle check itself reports a two-module and a three-module cycle, and nothing in a chain."""
    graph = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["e"], "e": ["d"], "f": ["a"]}
    assert sorted(_cycles(graph)) == [["a", "b", "c"], ["d", "e"]]


def _modules() -> list[Path]:
    return sorted(SOURCE.rglob("*.py"))


def test_no_module_over_800_lines() -> None:
    """Every module stays under 800 lines (STYLE: split a module by concept before that)."""
    long = {
        str(p.relative_to(SOURCE)): n
        for p in _modules()
        if (n := len(p.read_text("utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def _borrowed_private_names(path: Path) -> list[str]:
    """The ``from carnet.x import _name`` of one module, where ``_name`` is private to another module."""
    borrowed: list[str] = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if not isinstance(node, ast.ImportFrom) or node.level or not (node.module or "").startswith("carnet"):
            continue
        borrowed += [
            f"{node.module}.{a.name}"
            for a in node.names
            if a.name.startswith("_") and not a.name.startswith("__")
        ]
    return borrowed


def test_no_module_imports_another_modules_private_names() -> None:
    """Shared internals live in ``_modules`` with public names: no module imports another's ``_name``."""
    borrowed = {
        str(p.relative_to(SOURCE)): names for p in _modules() if (names := _borrowed_private_names(p))
    }
    assert borrowed == {}
