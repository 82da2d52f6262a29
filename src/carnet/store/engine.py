"""Create the database engine: SQLite (WAL, every commit flushed) by default, PostgreSQL by URL."""

from __future__ import annotations

import contextlib
import os
import time
import weakref
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError, OperationalError

from carnet.domain.errors import ConfigurationError
from carnet.store.connected import execute_bare
from carnet.store.distribution import distribute, hold_schema_lock, is_citus
from carnet.store.wal_sync import SYNC_AFTER, WalSync
from carnet.store.writer_lock import sqlite_file

MIGRATIONS = Path(__file__).parent / "migrations"
#: A pooled PostgreSQL connection idle for longer than this is pinged before it is used again.
PING_AFTER_IDLE_SECONDS = 1.0


def sqlite_url(data_dir: Path) -> str:
    """Return the URL of the embedded database inside ``data_dir``."""
    return f"sqlite:///{data_dir / 'carnet.sqlite3'}"


def make_engine(url: str) -> Engine:
    """Create an engine for ``url`` with Carnet's connection settings.

    Raises:
        ConfigurationError: the URL is neither SQLite nor PostgreSQL.
    """
    if url.startswith("sqlite"):
        _make_private(url)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        database = sqlite_file(url)
        _configure_sqlite(engine, WalSync(database) if database is not None else None)
        _plain_savepoints(engine)
        return engine
    if url.startswith("postgresql"):
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        engine = create_engine(url, pool_size=10, max_overflow=10)
        _ping_when_idle(engine)
        _plain_savepoints(engine)
        return engine
    raise ConfigurationError("CARNET_DATABASE_URL must start with sqlite:// or postgresql://.")


def _plain_savepoints(engine: Engine) -> None:
    """Send ``SAVEPOINT``, ``RELEASE`` and ``ROLLBACK TO`` as plain SQL, not compiled statements.

    SQLAlchemy builds, compiles (through its cache) and executes a clause object for each: a
    single create's savepoint and its release cost ~10 % of its CPU. The names are SQLAlchemy's
    own (``sa_savepoint_<n>``), the SQL the same on SQLite and PostgreSQL.
    """
    dialect: Any = engine.dialect

    def do_savepoint(connection: Connection, name: str) -> None:
        execute_bare(connection, f"SAVEPOINT {name}")

    def do_release_savepoint(connection: Connection, name: str) -> None:
        execute_bare(connection, f"RELEASE SAVEPOINT {name}")

    def do_rollback_to_savepoint(connection: Connection, name: str) -> None:
        execute_bare(connection, f"ROLLBACK TO SAVEPOINT {name}")

    dialect.do_savepoint = do_savepoint
    dialect.do_release_savepoint = do_release_savepoint
    dialect.do_rollback_to_savepoint = do_rollback_to_savepoint


def _ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection that sat idle before handing it out; never one just used.

    SQLAlchemy's ``pool_pre_ping`` costs a round trip to the server at every checkout: two per
    single read (its transaction, then its journal's), a fifth of its round trips. A connection
    used less than :data:`PING_AFTER_IDLE_SECONDS` ago was alive then, so under load no ping is
    sent; an idle one (the server may have restarted, a proxy may have dropped it) is pinged,
    and a dead one replaced by a new connection before anything runs on it. A connection lost
    between two close uses fails the statement that meets it; SQLAlchemy then recognises the
    disconnection and replaces every older connection of the pool.
    """

    @event.listens_for(engine.pool, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["carnet_idle_since"] = time.monotonic()

    @event.listens_for(engine.pool, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("carnet_idle_since", None)
        if since is None or time.monotonic() - since <= PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:  # the pool discards this connection and connects anew
            raise DisconnectionError(f"an idle pooled connection is dead: {type(error).__name__}") from error


def _make_private(url: str) -> None:
    """Create the SQLite file 0600 (and tighten an existing one) before SQLite opens it.

    SQLite creates the ``-wal`` and ``-shm`` files with the mode of the database file, so they
    are 0600 too; those already there (from an older version) are tightened as well.
    """
    if not url.startswith("sqlite:///") or ":memory:" in url or "mode=memory" in url:
        return
    path = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
    if not path.parent.is_dir():
        return  # SQLite reports the missing directory itself
    # Created only when absent: closing a descriptor of a database already open in this process
    # would release the locks SQLite holds on it (https://www.sqlite.org/howtocorrupt.html 2.2).
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(f"{path}{suffix}", 0o600)


#: The ``BEGIN`` of the next transaction on a SQLite connection, kept in its ``info`` (once).
BEGIN_MODE = "carnet_begin"
#: SQLite's count of changed rows when the connection's transaction began, kept in its ``info``.
_CHANGES = "carnet_changes"


#: Per SQLite engine on a file: the flush of its WAL (``carnet.store.wal_sync``).
_WAL_SYNCS: weakref.WeakKeyDictionary[Engine, WalSync] = weakref.WeakKeyDictionary()


def wal_sync(engine: Engine) -> WalSync | None:
    """The WAL flush of a SQLite engine on a file, whose commits leave the flush to it (else None)."""
    return _WAL_SYNCS.get(engine)


def _configure_sqlite(engine: Engine, wal: WalSync | None) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The dialect's ``do_begin`` below decides when transactions start (pysqlite's own
        # implicit BEGIN would defer it past our first read).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        mode = cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        # In WAL mode every commit is flushed by ``do_commit`` below or by the store once its
        # writer lock is released (``carnet.store.wal_sync``); otherwise SQLite flushes it.
        flushed_here = wal is not None and str(mode).lower() == "wal"
        cursor.execute("PRAGMA synchronous=NORMAL" if flushed_here else "PRAGMA synchronous=FULL")
        if flushed_here:
            # No checkpoint inside COMMIT (so inside the writer lock): ``WalSync`` runs them
            # after the flush, mostly outside the lock (``carnet.store.wal_sync``).
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Temporary tables and sort spills stay in memory: nothing lands in a temp file.
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    # Every transaction begins here: ``BEGIN IMMEDIATE`` when the store opens a writing one
    # (``SQLStore._open`` puts it in the connection's info for that transaction only), else
    # ``BEGIN``. The engine's own ``begin`` event (SQLAlchemy's recipe) did the same, but any
    # engine event makes SQLAlchemy dispatch four events around every statement: ~10 % of a read.
    def do_begin(dbapi_connection: Any) -> None:
        mode = dbapi_connection.info.pop(BEGIN_MODE, None)
        dbapi_connection.execute(mode or "BEGIN")
        # A store's reading transaction: its commit is flushed only if it changed rows after all.
        dbapi_connection.info[_CHANGES] = dbapi_connection.total_changes if mode == "BEGIN" else None

    engine.dialect.do_begin = do_begin  # type: ignore[method-assign]
    if wal is None:
        return
    _WAL_SYNCS[engine] = wal

    # A commit that wrote is durable when this returns, unless the store flushes it itself right
    # after releasing its writer lock (``SYNC_AFTER`` in the connection's info, for this commit).
    # A store's reading transaction that changed no row wrote nothing to flush (any other
    # transaction is flushed: a migration's DDL changes no row).
    def do_commit(dbapi_connection: Any) -> None:
        info = dbapi_connection.info
        wrote = dbapi_connection.total_changes != info.pop(_CHANGES, None)
        dbapi_connection.commit()
        if not info.pop(SYNC_AFTER, False) and wrote:
            wal.sync()

    engine.dialect.do_commit = do_commit  # type: ignore[method-assign]


def alembic_config(url: str) -> Config:
    """Return an Alembic configuration for the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


#: SQLSTATE of a deadlock (``deadlock_detected``), and how often table placement is tried.
_DEADLOCK = "40P01"
_DISTRIBUTE_ATTEMPTS = 3


def upgrade(engine: Engine, distributed: str = "") -> list[str]:
    """Bring the schema to the newest migration; on Citus, distribute the tables not placed yet.

    ``distributed`` is ``""`` (distribute when the database has the Citus extension), ``"citus"``
    (it must) or ``"none"`` (never: a single-node store, for ``carnet db distribute`` later).
    Returns the tables distributed (or made reference) by this call.

    Raises:
        ConfigurationError: ``"citus"`` was asked and the database has no Citus extension.
    """
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        citus = distributed != "none" and is_citus(connection)
        if distributed == "citus" and not citus:
            raise ConfigurationError(
                "CARNET_DATABASE_DISTRIBUTED=citus but the database has no Citus extension "
                "(CREATE EXTENSION citus on the coordinator, see docs/operations.md)."
            )
        if citus:
            hold_schema_lock(connection)
            # DDL on distributed tables inside one transaction: one connection per worker.
            connection.exec_driver_sql("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    if not citus:
        return []
    attempt = 1
    while True:
        try:
            with engine.begin() as connection:
                return distribute(connection)
        except OperationalError as error:
            # Placing a table takes locks on every node; a query of another process on the same
            # tables (a server left running during a restore) can close a distributed deadlock
            # that Citus breaks by cancelling one side. The whole placement rolled back: again.
            if getattr(error.orig, "sqlstate", None) != _DEADLOCK or attempt == _DISTRIBUTE_ATTEMPTS:
                raise
        time.sleep(0.5 * attempt)
        attempt += 1
