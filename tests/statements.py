"""The SQL statements an engine sends within a block, as the store tests count them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event

from carnet.store.distribution import is_citus


@contextmanager
def sent_statements(engine: Engine, kept: Callable[[str], bool] | None = None) -> Iterator[list[str]]:
    """Note each statement ``engine`` sends within the block (those ``kept`` accepts), its
    whitespace folded to single spaces (``before_cursor_execute``: the driver-level statements
    of the store are seen too)."""
    seen: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if kept is None or kept(statement):
            seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


@contextmanager
def sent_with_parameters(engine: Engine, kept: Callable[[str], bool]) -> Iterator[list[tuple[str, Any]]]:
    """As :func:`sent_statements`, each statement kept as sent with its parameters (to ``EXPLAIN`` it)."""
    seen: list[tuple[str, Any]] = []

    def note(_conn: object, _cursor: object, statement: str, parameters: Any, *_: object) -> None:
        if kept(statement):
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def plain_postgres(engine: Engine) -> bool:
    """Whether ``engine`` is PostgreSQL without Citus (whose plans the plan tests read)."""
    if engine.dialect.name == "sqlite":
        return False
    with engine.connect() as connection:
        return not is_citus(connection)
