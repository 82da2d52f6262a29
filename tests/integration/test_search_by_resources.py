"""A search without token filters costs its record's resources, whatever plan PostgreSQL keeps.

psycopg prepares a statement at its fifth use, and PostgreSQL then plans it once for every record
(a generic plan) from the average record. In a store of small records that is about one resource
of a type per record, and the former join of ``resources`` to ``resource_versions`` was planned
as a nested loop that read, for each version of the record, all its resources of the type and
compared their ids: ``Observation?date=ge`` in a record of 368 Observations compared 67,528 rows
(24 ms instead of 0.5, ``bench/run.py --quick``). On PostgreSQL such a search now looks each
current version up by its primary key (``store/repository.py`` ``_search_by_resources``). Here
the same rows come back on every backend, and on PostgreSQL the generic plan scans each row of
the record once, not once per version.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text

from carnet.api.app import Services
from carnet.services.ports import StoredVersion
from statements import plain_postgres, sent_with_parameters

PATIENT = "p-search-by-resources"
OBSERVATIONS = 300
SMALL_RECORDS = 600


def _version(
    patient_id: str, resource_type: str, resource_id: str, version_id: int = 1, *, deleted: bool = False
) -> StoredVersion:
    return StoredVersion(
        patient_id=patient_id,
        resource_type=resource_type,
        resource_id=resource_id,
        version_id=version_id,
        last_updated=datetime(2026, 12, 7, tzinfo=UTC),
        deleted=deleted,
        sealed=os.urandom(64),
    )


def _fill(services: Services) -> None:
    """One record of a Patient and ``OBSERVATIONS`` Observations, beside ``SMALL_RECORDS`` of a Patient each."""
    with services.store.session(write=True) as session:
        session.write_version(_version(PATIENT, "Patient", PATIENT))
        for number in range(OBSERVATIONS):
            session.write_version(_version(PATIENT, "Observation", f"obs-{number:05d}"))
        for number in range(SMALL_RECORDS):
            patient_id = f"p-small-{number:05d}"
            session.write_version(_version(patient_id, "Patient", patient_id))


def test_searches_without_tokens_find_the_current_versions_on_every_backend(services: Services) -> None:
    """A type, every type, and ids: each resource's current version once, deleted ones left out."""
    with services.store.session(write=True) as session:
        session.write_version(_version(PATIENT, "Patient", PATIENT))
        for number in range(5):
            session.write_version(_version(PATIENT, "Observation", f"obs-{number:05d}"))
        session.write_version(_version(PATIENT, "Observation", "obs-00001", version_id=2))
        session.write_version(_version(PATIENT, "Observation", "obs-00002", version_id=2, deleted=True))
        session.write_version(_version("p-other", "Observation", "obs-other"))
    with services.store.session() as session:

        def found(resource_type: str | None, ids: list[str]) -> list[tuple[str, str, int]]:
            versions = session.search(PATIENT, resource_type, ids, [])
            return [(v.resource_type, v.resource_id, v.version_id) for v in versions]

        observations = [("Observation", f"obs-0000{n}", 2 if n == 1 else 1) for n in (0, 1, 3, 4)]
        assert found("Observation", []) == observations
        assert found(None, []) == [*observations, ("Patient", PATIENT, 1)]
        assert found("Observation", ["obs-00001", "obs-00002", "obs-other"]) == [
            ("Observation", "obs-00001", 2)
        ]
        assert found(None, [PATIENT, "obs-00004"]) == [
            ("Observation", "obs-00004", 1),
            ("Patient", PATIENT, 1),
        ]


def test_a_typed_search_reads_its_rows_once_under_a_generic_plan(services: Services) -> None:
    """On plain PostgreSQL, analysed, the generic plan of a search of 300 Observations scans < 1,500 rows."""
    engine = services.store.engine
    if not plain_postgres(engine):
        pytest.skip("generic plans are plain PostgreSQL's (SQLite plans each statement; Citus per shard)")
    _fill(services)
    with engine.connect() as connection:
        connection.execute(text("ANALYZE resources"))
        connection.execute(text("ANALYZE resource_versions"))
        connection.commit()
    with (
        sent_with_parameters(engine, lambda statement: "resource_versions" in statement) as seen,
        services.store.session() as session,
    ):
        assert len(session.search(PATIENT, "Observation", [], [])) == OBSERVATIONS
    statement, parameters = seen[-1]
    scanned = _scanned_rows(_generic_plan(engine, statement, parameters))
    # The join form scanned 45,300 rows here: for each of the 300 versions, 150 resources on average.
    assert scanned < 5 * OBSERVATIONS, f"the search scanned {scanned} rows for {OBSERVATIONS}"


def _generic_plan(engine: Engine, statement: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The executed generic plan of ``statement``, prepared as psycopg prepares it (a ``$n`` per name)."""
    names: list[str] = []

    def numbered(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    prepared = re.sub(r"%\((\w+)\)s", numbered, statement)
    values = ", ".join(["%s"] * len(names))
    with engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        assert isinstance(raw, psycopg.Connection)
        raw.execute("SET plan_cache_mode = force_generic_plan")
        raw.execute(f"PREPARE probe AS {prepared}".encode())
        try:
            cursor = psycopg.ClientCursor(raw)
            explain = f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE probe({values})"
            cursor.execute(explain.encode(), [parameters[name] for name in names])
            row = cursor.fetchone()
        finally:
            raw.execute("DEALLOCATE probe")
            raw.execute("RESET plan_cache_mode")
    assert row is not None
    plan = json.loads(row[0]) if isinstance(row[0], str) else row[0]
    return dict(plan[0]["Plan"])


def _scanned_rows(node: Mapping[str, Any]) -> int:
    """The rows the plan's scans returned, over all their loops (the tree below ``node`` included)."""
    own = node["Actual Rows"] * node["Actual Loops"] if node["Node Type"].endswith("Scan") else 0
    return int(own + sum(_scanned_rows(child) for child in node.get("Plans", ())))
