"""The PostgreSQL connection pool: no ping for a connection just used, a dead idle one replaced.

Against a real PostgreSQL server; a backend is ended with ``pg_terminate_backend`` from another
connection, as a server restart or a dropped proxy connection would end it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from carnet.store import engine as engine_module
from carnet.store.engine import make_engine

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url() -> str:
    """The test server's URL (no schema: these tests create no table)."""
    url = os.environ.get("CARNET_TEST_PG_URL")
    if not url:
        pytest.skip("CARNET_TEST_PG_URL is not set")
    return url


@pytest.fixture
def pg(pg_url: str) -> Iterator[tuple[Engine, list[int]]]:
    """A Carnet engine on PostgreSQL, and the list its pings are counted in."""
    engine = make_engine(pg_url)
    pings: list[int] = []
    ping = engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings.append(1)
        return bool(ping(dbapi_connection))

    engine.dialect.do_ping = counted  # type: ignore[method-assign]
    yield engine, pings
    engine.dispose()


def _backend(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(url: str, pid: int) -> None:
    admin = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()


def test_a_connection_used_again_at_once_is_not_pinged(pg: tuple[Engine, list[int]]) -> None:
    engine, pings = pg
    first = _backend(engine)
    for _ in range(5):
        assert _backend(engine) == first
    assert pings == []


def test_a_dead_idle_connection_is_replaced_before_use(
    pg: tuple[Engine, list[int]], pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, pings = pg
    dead = _backend(engine)
    _terminate(pg_url, dead)
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 0.0)  # it has been idle long enough
    assert _backend(engine) != dead
    assert pings == [1]


def test_a_connection_lost_between_close_uses_fails_once_then_the_pool_reconnects(
    pg: tuple[Engine, list[int]], pg_url: str
) -> None:
    engine, pings = pg
    dead = _backend(engine)
    _terminate(pg_url, dead)
    with pytest.raises(OperationalError):
        _backend(engine)
    assert _backend(engine) != dead
    assert pings == []
