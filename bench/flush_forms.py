"""One feed document's writes on PostgreSQL, sent three ways: client and server CPU of each.

The rows a feed's document writes (3 resource versions, one of them a sealed ~137 KB Binary,
their current rows and locations, 6 blind-index rows, a journal entry, 2 tree nodes, the log's
head), on tables shaped as Carnet's, each time in its own transaction, sent as:

- ``statements``: one INSERT per table (``executemany`` where several rows), then the head's
  UPDATE (Carnet before ``store/journal_append.py`` wrote them all at once);
- ``arrays``: one statement, each table's rows as one array per column (``unnest``) in a
  data-modifying CTE (``bytea`` arrays in binary);
- ``values``: one statement, each table's rows as multi-row ``VALUES`` in a CTE.

Prints per transaction this process's CPU (``process_time``: psycopg's Python) and the server
backend's (``/proc``), which share the machine's cores under load. Runs in a schema of its own,
dropped at the end. Usage::

    CARNET_TEST_PG_URL=postgresql://… .venv/bin/python bench/flush_forms.py [--transactions 300]
"""

# The SQL is built from this module's fixed table and column names; every value is a parameter.
# ruff: noqa: S608

from __future__ import annotations

import argparse
import datetime
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import load
import psycopg

COLUMNS = {
    "rv": ("patient_id", "resource_type", "resource_id", "version_id", "deleted", "last_updated", "sealed"),
    "r": ("patient_id", "resource_type", "resource_id", "version_id", "deleted", "last_updated"),
    "loc": ("resource_id", "resource_type", "patient_id"),
    "st": ("patient_id", "resource_type", "resource_id", "param", "value_hash"),
    "je": ("log_key", "shard", "seq", "patient_id", "recorded_at", "commitment", "sealed"),
    "jn": ("log_key", "shard", "level", "idx", "digest"),
}
TYPES = {
    "patient_id": "VARCHAR(64)",
    "resource_type": "VARCHAR(64)",
    "resource_id": "VARCHAR(64)",
    "version_id": "INTEGER",
    "deleted": "BOOLEAN",
    "last_updated": "TIMESTAMPTZ",
    "sealed": "BYTEA",
    "param": "VARCHAR(64)",
    "value_hash": "BYTEA",
    "log_key": "VARCHAR(64)",
    "shard": "INTEGER",
    "seq": "BIGINT",
    "recorded_at": "TIMESTAMPTZ",
    "commitment": "BYTEA",
    "level": "INTEGER",
    "idx": "BIGINT",
    "digest": "BYTEA",
}
SCHEMA = """
CREATE TABLE rv (patient_id VARCHAR(64), resource_type VARCHAR(64), resource_id VARCHAR(64), version_id INTEGER,
  deleted BOOLEAN, last_updated TIMESTAMPTZ, sealed BYTEA, PRIMARY KEY (patient_id, resource_type, resource_id, version_id));
CREATE TABLE r (patient_id VARCHAR(64), resource_type VARCHAR(64), resource_id VARCHAR(64), version_id INTEGER,
  deleted BOOLEAN, last_updated TIMESTAMPTZ, PRIMARY KEY (patient_id, resource_type, resource_id));
CREATE TABLE loc (resource_id VARCHAR(64), resource_type VARCHAR(64), patient_id VARCHAR(64),
  PRIMARY KEY (resource_id, resource_type));
CREATE TABLE st (patient_id VARCHAR(64), resource_type VARCHAR(64), resource_id VARCHAR(64), param VARCHAR(64),
  value_hash BYTEA);
CREATE INDEX ON st (patient_id, resource_type, param, value_hash);
CREATE TABLE je (log_key VARCHAR(64), shard INTEGER, seq BIGINT, patient_id VARCHAR(64), recorded_at TIMESTAMPTZ,
  commitment BYTEA, sealed BYTEA, PRIMARY KEY (log_key, shard, seq));
CREATE TABLE jn (log_key VARCHAR(64), shard INTEGER, level INTEGER, idx BIGINT, digest BYTEA,
  PRIMARY KEY (log_key, shard, level, idx));
CREATE TABLE jh (log_key VARCHAR(64), shard INTEGER, size BIGINT, peaks BYTEA, PRIMARY KEY (log_key, shard));
INSERT INTO jh VALUES ('0', 0, 0, '');
"""
DOCUMENT = os.urandom(137_000)
HEAD = "UPDATE jh SET size = %s, peaks = %s WHERE log_key = %s AND shard = %s"


class Document:
    """The rows of the n-th document."""

    def __init__(self, n: int) -> None:
        now = datetime.datetime.now(datetime.UTC)
        kinds = ("Binary", "DocumentReference", "Provenance")
        ids = [f"d{n}-{k}" for k in range(3)]
        common = [
            {"patient_id": "p", "resource_type": t, "resource_id": i} for t, i in zip(kinds, ids, strict=True)
        ]
        self.n = n
        self.rows: dict[str, list[dict[str, Any]]] = {
            "rv": [
                {**c, "version_id": 1, "deleted": False, "last_updated": now, "sealed": s}
                for c, s in zip(common, (DOCUMENT, os.urandom(700), os.urandom(700)), strict=True)
            ],
            "r": [{**c, "version_id": 1, "deleted": False, "last_updated": now} for c in common],
            "loc": [
                {"resource_id": i, "resource_type": t, "patient_id": "p"}
                for t, i in zip(kinds, ids, strict=True)
            ],
            "st": [{**common[1], "param": f"p{k}", "value_hash": os.urandom(16)} for k in range(6)],
            "je": [
                {
                    "log_key": "0",
                    "shard": 0,
                    "seq": n,
                    "patient_id": "p",
                    "recorded_at": now,
                    "commitment": os.urandom(32),
                    "sealed": os.urandom(300),
                }
            ],
            "jn": [
                {"log_key": "0", "shard": 0, "level": k, "idx": n, "digest": os.urandom(32)} for k in range(2)
            ],
        }


def statements(cursor: psycopg.Cursor[Any], document: Document) -> None:
    """One INSERT per table, then the head."""
    for table, rows in document.rows.items():
        columns = COLUMNS[table]
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
        if len(rows) == 1:
            cursor.execute(sql, tuple(rows[0].values()))
        else:
            cursor.executemany(sql, [tuple(r.values()) for r in rows])
    cursor.execute(HEAD, (document.n, b"x" * 64, "0", 0))


def arrays(cursor: psycopg.Cursor[Any], document: Document) -> None:
    """One statement, an array per column."""
    parts, parameters = [], {}
    for j, (table, rows) in enumerate(document.rows.items()):
        columns = COLUMNS[table]
        placeholders = ", ".join(
            f"%(i{j}_{c}){'b' if TYPES[c] == 'BYTEA' else 's'}::{TYPES[c]}[]" for c in columns
        )
        parts.append(f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({placeholders})")
        parameters.update({f"i{j}_{c}": [r[c] for r in rows] for c in columns})
    head = "UPDATE jh SET size = %(s)s, peaks = %(p)s WHERE log_key = %(k)s AND shard = %(h)s"
    parameters.update({"s": document.n, "p": b"x" * 64, "k": "0", "h": 0})
    cursor.execute(
        "WITH " + ", ".join(f"w{j} AS ({p})" for j, p in enumerate(parts)) + " " + head, parameters
    )


def values(cursor: psycopg.Cursor[Any], document: Document) -> None:
    """One statement, multi-row VALUES."""
    parts, parameters = [], []
    for table, rows in document.rows.items():
        columns = COLUMNS[table]
        one = "(" + ", ".join(f"%s::{TYPES[c]}" for c in columns) + ")"
        parts.append(f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([one] * len(rows))}")
        for row in rows:
            parameters.extend(row.values())
    parameters.extend((document.n, b"x" * 64, "0", 0))
    cursor.execute(
        "WITH " + ", ".join(f"w{j} AS ({p})" for j, p in enumerate(parts)) + " " + HEAD, parameters
    )


def main() -> None:
    """Create the tables, time each form twice (alternated), print one table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transactions", type=int, default=300)
    args = parser.parse_args()
    schema = f"flush_{uuid.uuid4().hex[:8]}"
    connection = psycopg.connect(os.environ["CARNET_TEST_PG_URL"])
    backend = connection.info.backend_pid
    cursor = connection.cursor()
    cursor.execute(f'CREATE SCHEMA "{schema}"')
    cursor.execute(f'SET search_path TO "{schema}"')
    cursor.execute(SCHEMA)
    connection.commit()
    n = 0
    lines = []
    forms: list[Callable[[psycopg.Cursor[Any], Document], None]] = [statements, arrays, values]
    try:
        for form in forms * 2:
            timed = backend_cpu = 0.0
            for index in range(10 + args.transactions):
                n += 1
                document = Document(n)  # built outside the timed part
                if index == 10:  # after a warm-up (psycopg prepares a statement at its 5th use)
                    backend_cpu, timed = load.cpu_seconds([backend]), 0.0
                started = time.process_time()
                form(cursor, document)
                connection.commit()
                timed += time.process_time() - started
            backend_cpu = load.cpu_seconds([backend]) - backend_cpu
            per = 1000 / args.transactions
            lines.append(f"| {form.__name__} | {timed * per:.2f} | {backend_cpu * per:.2f} |")
    finally:
        cursor.execute(f'DROP SCHEMA "{schema}" CASCADE')
        connection.commit()
        connection.close()
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}\n")
    print("| form | client CPU ms/document | server backend CPU ms/document |\n|---|---|---|")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
