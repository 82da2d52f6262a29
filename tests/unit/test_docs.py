"""Documentation stays true to the code: every CLI command and setting is documented."""

from __future__ import annotations

from pathlib import Path

import typer.main

from carnet.cli import app
from carnet.settings import KNOWN

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
