"""The embedded database's files are private to the service account (issue 11, item 7)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sqlalchemy import text

from carnet.store.engine import make_engine, upgrade


def _modes(directory: Path) -> dict[str, int]:
    return {
        p.name: stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir() if p.name.startswith("carnet")
    }


def test_sqlite_database_wal_and_shm_are_0600(tmp_path: Path) -> None:
    """A new SQLite store's database, -wal and -shm files are created 0600, whatever the umask."""
    previous = os.umask(0o022)
    try:
        engine = make_engine(f"sqlite:///{tmp_path / 'carnet.sqlite3'}")
        upgrade(engine)
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE t (x INTEGER)"))
            connection.execute(text("INSERT INTO t VALUES (1)"))
        with engine.connect() as connection:  # a connection open: -wal and -shm exist
            connection.execute(text("SELECT x FROM t")).all()
            modes = _modes(tmp_path)
        engine.dispose()
    finally:
        os.umask(previous)
    assert set(modes) >= {"carnet.sqlite3", "carnet.sqlite3-wal", "carnet.sqlite3-shm"}
    assert set(modes.values()) == {0o600}


def test_existing_world_readable_database_is_tightened(tmp_path: Path) -> None:
    """A database file left 0644 by an older version is made 0600 when the store opens it."""
    path = tmp_path / "carnet.sqlite3"
    path.touch(mode=0o644)
    os.chmod(path, 0o644)
    make_engine(f"sqlite:///{path}").dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
