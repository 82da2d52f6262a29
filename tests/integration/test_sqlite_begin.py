"""How SQLite transactions begin: a store's writing session takes the write lock at once, others not.

The dialect sends the ``BEGIN`` itself (``store/engine.py``), without an engine event. A second,
raw connection to the same file probes the lock: its ``BEGIN IMMEDIATE`` fails at once while
another transaction holds SQLite's write lock.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from carnet.store.repository import SQLStore


def _is_write_locked(path: Path) -> bool:
    probe = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as error:
        return "locked" in str(error)
    finally:
        probe.close()
    return False


def test_a_writing_session_holds_the_write_lock_before_its_first_statement(
    sqlite_file_store: tuple[Engine, Path],
) -> None:
    """``session(write=True)`` begins with ``BEGIN IMMEDIATE``: no other writer gets in meanwhile."""
    engine, path = sqlite_file_store
    with SQLStore(engine).session(write=True):
        assert _is_write_locked(path)
    assert not _is_write_locked(path)


def test_a_reading_session_and_a_plain_transaction_take_no_write_lock(
    sqlite_file_store: tuple[Engine, Path],
) -> None:
    """A read session, and a transaction begun outside the store after a writing one, begin deferred."""
    engine, path = sqlite_file_store
    store = SQLStore(engine)
    with store.session(write=True):
        pass
    with store.session() as session:
        session.locate("Observation", "unknown")
        assert not _is_write_locked(path)
    with engine.begin() as connection:  # the same pooled connection: the IMMEDIATE was for one transaction
        connection.execute(text("SELECT 1"))
        assert not _is_write_locked(path)


def test_a_transaction_begun_outside_the_store_is_one_transaction(
    sqlite_file_store: tuple[Engine, Path],
) -> None:
    """``engine.begin()`` (migrations, the CLI) still runs in a transaction: an error undoes its writes."""
    engine, _ = sqlite_file_store

    def create_then_fail() -> None:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE scratch (n INTEGER)"))
            connection.execute(text("INSERT INTO scratch VALUES (1)"))
            raise RuntimeError("undo")

    with pytest.raises(RuntimeError):
        create_then_fail()
    with engine.connect() as connection:
        assert (
            connection.execute(text("SELECT count(*) FROM sqlite_master WHERE name = 'scratch'")).scalar()
            == 0
        )
