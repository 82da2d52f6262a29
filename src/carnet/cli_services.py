"""The wired services of one CLI command, opened from the environment and closed when it ends."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from carnet.domain.errors import CarnetError
from carnet.settings import load

if TYPE_CHECKING:
    from carnet.api.app import Services

_console = Console(stderr=True)


@contextmanager
def command_services() -> Iterator[Services]:
    """Build the services from ``CARNET_*``; close their database connections on the way out.

    Commands also run in-process (tests), where a pooled connection left to the garbage
    collector would outlive the command.

    Raises:
        typer.Exit: code 2, the configuration is refused (its message printed on stderr).
    """
    from carnet.api.app import build_services

    try:
        services = build_services(load(os.environ))
    except CarnetError as exc:
        _console.print(f"[red]Configuration error:[/red] {exc.message}")
        raise typer.Exit(2) from None
    try:
        yield services
    finally:
        services.store.engine.dispose()
