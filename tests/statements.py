"""The SQL statements an engine sends within a block, as the store tests count them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, event


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
