"""Back the database up while it serves, and restore it (keys are never part of it).

- **SQLite**: SQLite's online backup API copies the whole database in one step, inside one read
  transaction (WAL: writers go on meanwhile), so the copy is one consistent snapshot; the copy is
  then checked with ``PRAGMA quick_check``. Restoring copies the backup into the configured
  database with the same API, as one write transaction: stop the servers first.
- **PostgreSQL**: ``pg_dump --format=custom`` (a consistent snapshot: one repeatable-read
  transaction), and ``pg_restore --clean --if-exists --single-transaction``. A ``search_path``
  given in the URL's ``options`` (one schema per store) limits both to that schema.

A backup holds sealed bytes, keyed hashes and wrapped record keys: nothing opens without the key
directory (KEKs and erasure shares), which is backed up apart (``carnet keys backup``,
docs/operations.md). Backup files are written 0600.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from carnet.domain.errors import ConfigurationError, InvalidRequest

Step = Callable[[str], None]

_SEARCH_PATH = re.compile(r"(?:^|&)options=[^&]*?-csearch_path(?:%3D|=)([A-Za-z0-9_]+)")


@dataclass(frozen=True, slots=True, kw_only=True)
class BackupReport:
    """What a backup or a restore did."""

    path: Path
    size: int
    kind: str  # "sqlite" or "postgresql"


def _sqlite_file(url: str) -> Path:
    if not url.startswith("sqlite:///"):
        raise ConfigurationError("Backups of SQLite need a file database (sqlite:///path).")
    return Path(url.removeprefix("sqlite:///"))


def _libpq(url: str) -> tuple[str, list[str]]:
    """Return the URL for the PostgreSQL client tools and the ``--schema`` option they need."""
    plain = "postgresql://" + url.split("://", 1)[1]
    query = plain.split("?", 1)[1] if "?" in plain else ""
    match = _SEARCH_PATH.search(query)
    return plain, [f"--schema={unquote(match.group(1))}"] if match else []


def _run(command: list[str], what: str) -> None:
    tool = command[0]
    if shutil.which(tool) is None:
        raise ConfigurationError(f"{tool} is not installed; install the PostgreSQL client tools.")
    # The command is a fixed client tool with our own arguments (a URL and file names), no shell.
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        # The tools' messages name tables and servers, never row contents (all sealed anyway).
        detail = done.stderr.strip().splitlines()[-1:] or ["no message"]
        raise ConfigurationError(f"{what} failed: {detail[0]}")


def _private(path: Path) -> None:
    os.chmod(path, 0o600)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup_database(url: str, destination: Path, *, step: Step | None = None) -> BackupReport:
    """Write a consistent copy of the database at ``url`` to ``destination`` (a new file).

    Raises:
        InvalidRequest: ``destination`` exists. ConfigurationError: the copy failed.
    """
    say = step or (lambda _message: None)
    if destination.exists():
        raise InvalidRequest(f"{destination} exists already; choose a new backup file name.")
    destination.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = destination.with_name(destination.name + ".partial")
    partial.unlink(missing_ok=True)
    # Created 0600 before any byte is written.
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        if url.startswith("sqlite"):
            kind = "sqlite"
            say("Copying the SQLite database (one consistent snapshot)")
            with sqlite3.connect(_sqlite_file(url)) as source, sqlite3.connect(partial) as target:
                source.backup(target)
                say("Checking the copy (PRAGMA quick_check)")
                checked = target.execute("PRAGMA quick_check").fetchone()
                if checked is None or checked[0] != "ok":
                    raise ConfigurationError("The backup copy fails SQLite's quick_check; try again.")
            source.close()
            target.close()
        elif url.startswith("postgresql"):
            kind = "postgresql"
            plain, schema = _libpq(url)
            say("Dumping the PostgreSQL database with pg_dump (one consistent snapshot)")
            _run(["pg_dump", "--format=custom", *schema, f"--file={partial}", plain], "pg_dump")
        else:
            raise ConfigurationError("CARNET_DATABASE_URL must start with sqlite:// or postgresql://.")
        _private(partial)
        partial.replace(destination)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return BackupReport(path=destination, size=destination.stat().st_size, kind=kind)


def restore_database(url: str, source: Path, *, step: Step | None = None) -> BackupReport:
    """Replace the database at ``url`` by the backup ``source`` (stop the servers first).

    Raises:
        InvalidRequest: ``source`` is missing or is not a backup of this kind of database.
        ConfigurationError: the restore failed.
    """
    say = step or (lambda _message: None)
    if not source.is_file():
        raise InvalidRequest(f"{source} is not a file; give the path of a backup made by `carnet backup`.")
    if url.startswith("sqlite"):
        kind = "sqlite"
        target = _sqlite_file(url)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as backup:
                checked = backup.execute("PRAGMA quick_check").fetchone()
                if checked is None or checked[0] != "ok":
                    raise InvalidRequest(f"{source} fails SQLite's quick_check; use another backup.")
                say("Copying the backup into the database (one transaction)")
                if not target.exists():
                    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                with sqlite3.connect(target) as live:
                    backup.backup(live)
                live.close()
            backup.close()
        except sqlite3.DatabaseError:
            raise InvalidRequest(
                f"{source} is not a SQLite backup; use a file made by `carnet backup`."
            ) from None
    elif url.startswith("postgresql"):
        kind = "postgresql"
        plain, _ = _libpq(url)  # the dump holds one schema's objects, and the schema itself
        say("Restoring the PostgreSQL database with pg_restore (one transaction)")
        _run(
            [
                "pg_restore",
                "--clean",
                "--if-exists",
                "--no-owner",
                "--single-transaction",
                "--exit-on-error",
                f"--dbname={plain}",
                str(source),
            ],
            "pg_restore",
        )
    else:
        raise ConfigurationError("CARNET_DATABASE_URL must start with sqlite:// or postgresql://.")
    return BackupReport(path=source, size=source.stat().st_size, kind=kind)


def backup_key_directory(key_dir: Path, destination: Path) -> BackupReport:
    """Write the key directory (KEK files, erasure shares, signing keys) to a new 0600 tar file.

    Keep it apart from the database backups, on other media, and for a bounded time: a key
    backup and a database backup both older than a shred still open the shredded record
    (docs/security.md).

    Raises:
        InvalidRequest: ``destination`` exists or lies inside the key directory.
    """
    if destination.exists():
        raise InvalidRequest(f"{destination} exists already; choose a new backup file name.")
    if destination.resolve().is_relative_to(key_dir.resolve()):
        raise InvalidRequest("Write the key backup outside the key directory.")
    destination.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = destination.with_name(destination.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle, tarfile.open(fileobj=handle, mode="w:gz") as archive:
            archive.add(
                key_dir, arcname=".", filter=lambda info: None if info.name.endswith(".lock") else info
            )
        _private(partial)
        partial.replace(destination)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return BackupReport(path=destination, size=destination.stat().st_size, kind="keys")
