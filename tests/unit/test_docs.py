"""Documentation stays true to the code: CLI commands, settings, the error tree, dependencies, Makefile."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path
from typing import Any

import typer.main

from carnet.cli import app
from carnet.domain import errors
from carnet.settings import KNOWN, Settings

REPO = Path(__file__).resolve().parents[2]


def _commands(group: typer.Typer, prefix: str = "carnet") -> list[str]:
    click_group = typer.main.get_command(group)
    names: list[str] = []
    for name, command in getattr(click_group, "commands", {}).items():
        if hasattr(command, "commands"):
            names.extend(f"{prefix} {name} {sub}" for sub in command.commands)
        else:
            names.append(f"{prefix} {name}")
    return names


def test_every_cli_command_is_in_the_readme() -> None:
    """The README's command table names every `carnet` subcommand."""
    readme = (REPO / "README.md").read_text()
    missing = [c for c in _commands(app) if f"`{c}" not in readme]
    assert missing == []


def test_every_setting_is_documented() -> None:
    """docs/configuration.md lists every CARNET_* variable the settings accept."""
    doc = (REPO / "docs" / "configuration.md").read_text()
    assert [k for k in sorted(KNOWN) if k not in doc] == []


# -- the exception tree ------------------------------------------------------------------------

_TREE_LINE = re.compile(r"^(?P<indent>[│ ]*)(?:[├└]── )?(?P<name>[A-Z]\w+)\b")


def _drawn_tree() -> dict[str, str | None]:
    """Read the tree drawn in ``carnet.domain.errors``'s docstring: each class and its parent."""
    doc = errors.__doc__ or ""
    block = doc.split("::", 1)[1].split("\n\n")[1]
    parents: dict[str, str | None] = {}
    stack: list[str] = []
    for line in block.splitlines():
        match = _TREE_LINE.match(line.strip("\n").removeprefix("    "))
        if match is None:
            continue
        depth = len(match.group("indent")) // 4 + (1 if "──" in line else 0)
        del stack[depth:]
        parents[match.group("name")] = stack[-1] if stack else None
        stack.append(match.group("name"))
    return parents


def _carnet_errors() -> dict[str, type[errors.CarnetError]]:
    """Every subclass of CarnetError defined in carnet.domain.errors."""
    found: dict[str, type[errors.CarnetError]] = {}
    todo: list[type[errors.CarnetError]] = [errors.CarnetError]
    while todo:
        cls = todo.pop()
        if cls.__module__ == errors.__name__:
            found[cls.__name__] = cls
            todo.extend(cls.__subclasses__())
    return found


#: Errors allowed outside the tree, each with its reason.
ELSEWHERE = {
    # The witness is a program of its own (``carnet witness serve``, run by a third party): its
    # refusals are HTTP answers of the tlog-witness protocol, never raised into Carnet's services.
    "src/carnet/witness/state.py: Refusal",
}


def _error_classes_elsewhere() -> list[str]:
    """Classes outside domain/errors.py whose base is one of its errors (read from the source)."""
    names = set(_carnet_errors())
    outside = []
    for path in sorted((REPO / "src" / "carnet").rglob("*.py")):
        if path.name == "errors.py" and path.parent.name == "domain":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
                if bases & names:
                    outside.append(f"{path.relative_to(REPO)}: {node.name}")
    return outside


def test_the_error_tree_is_drawn_as_it_is() -> None:
    """The tree in domain/errors.py's docstring has every CarnetError subclass, under its real parent."""
    classes = _carnet_errors()
    actual = {
        name: (cls.__base__.__name__ if cls is not errors.CarnetError else None)
        for name, cls in classes.items()
    }
    assert _drawn_tree() == actual


def test_every_error_lives_in_the_one_tree() -> None:
    """No module outside carnet.domain.errors subclasses one of its errors (one exception tree)."""
    assert [c for c in _error_classes_elsewhere() if c not in ELSEWHERE] == []


def test_the_drawn_tree_parser_sees_nesting() -> None:
    """The tree reader places a twice-indented class under its parent (so the comparison means something)."""
    parents = _drawn_tree()
    assert (parents["CarnetError"], parents["NotFound"], parents["Gone"]) == (None, "CarnetError", "NotFound")


# -- dependencies ------------------------------------------------------------------------------

_REQUIREMENT_NAME = re.compile(r"^[A-Za-z0-9._-]+")


def _pyproject() -> dict[str, Any]:
    with (REPO / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def _names(requirements: list[str]) -> set[str]:
    """The distribution names of requirement strings (``psycopg[binary]>=3.1`` → ``psycopg``)."""
    names = set()
    for requirement in requirements:
        match = _REQUIREMENT_NAME.match(requirement)
        assert match is not None, requirement
        names.add(match.group(0).lower())
    return names


def _documented(section: str) -> set[str]:
    """Package names in the first column of a docs/dependencies.md table (outside parentheses)."""
    text = (REPO / "docs" / "dependencies.md").read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in body.splitlines():
        if not line.startswith("| `"):
            continue
        first = re.sub(r"\([^)]*\)", "", line.split("|")[1])
        names |= {re.sub(r"\[.*\]$", "", n).lower() for n in re.findall(r"`([^`]+)`", first)}
    return names


def test_every_runtime_dependency_has_a_row() -> None:
    """docs/dependencies.md explains every runtime dependency of pyproject.toml, and only those."""
    declared = _names(_pyproject()["project"]["dependencies"])
    assert _documented("Runtime (Python, from PyPI)") == declared


def test_every_development_dependency_has_a_row() -> None:
    """docs/dependencies.md explains every development dependency of pyproject.toml, and only those."""
    declared = _names(_pyproject()["project"]["optional-dependencies"]["dev"])
    assert _documented("Development and tests") == declared


# -- the Makefile --------------------------------------------------------------------------------


def _make_comment(target: str) -> str:
    """The ``##`` comment lines just above a Makefile target."""
    lines = (REPO / "Makefile").read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    comment = []
    for line in reversed(lines[:index]):
        if not line.startswith("##"):
            break
        comment.insert(0, line.removeprefix("##").strip())
    return " ".join(comment)


def test_make_demo_names_the_data_directory_it_uses() -> None:
    """The Makefile's demo comment names the directory the default settings write to."""
    assert f"{Settings().data_dir}" in _make_comment("demo")


def test_make_test_long_says_what_it_runs() -> None:
    """The test-long comment names the soaks that carry the slow marker."""
    comment = _make_comment("test-long")
    named = ("kill -9" in comment, "policy" in comment, "fuzzed" in comment, "corpus" in comment)
    assert named == (True, True, True, True)
