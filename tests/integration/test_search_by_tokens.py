"""A search with token filters within a record costs its matches, whatever the planner knows.

On PostgreSQL the typed searches with token filters are driven by their matches (the ids the
blind index gives, then each one's current version by primary key, ``store/repository.py``
``_search_by_tokens``). The earlier ``IN (SELECT …)`` form was planned, without statistics (a new
or fast-growing record before the next ``ANALYZE``; the test server runs without autovacuum), as
nested loops over every resource of the type in the record for each of them: an ITI-65
resubmission check in a record of 150 documents read ~40,000 buffers (34 ms), of 300 documents
129 ms. Here the same rows come back on every backend, and on PostgreSQL the pages read stay
near the number of matches.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import pytest

from carnet.api.app import Services
from carnet.services.ports import StoredVersion
from statements import plain_postgres, sent_with_parameters

PATIENT = "p-search-by-tokens"
DOCUMENTS = 300


def _hash(kind: str, number: int) -> bytes:
    return f"{kind}{number:05d}".encode().ljust(16, b".")


def _fill(services: Services) -> None:
    """A record of ``DOCUMENTS`` DocumentReferences: each its own identifier, one of three statuses."""
    now = datetime(2026, 12, 7, tzinfo=UTC)
    with services.store.session(write=True) as session:
        for number in range(DOCUMENTS):
            resource_id = f"doc-{number:05d}"
            session.write_version(
                StoredVersion(
                    patient_id=PATIENT,
                    resource_type="DocumentReference",
                    resource_id=resource_id,
                    version_id=1,
                    last_updated=now,
                    deleted=False,
                    sealed=os.urandom(64),
                )
            )
            tokens = {("identifier", _hash("id", number)), ("status", _hash("status", number % 3))}
            session.set_tokens(PATIENT, "DocumentReference", resource_id, tokens, new=True)


def test_token_searches_find_the_same_rows_on_every_backend(services: Services) -> None:
    """One filter, two filters (intersected), a filter with several values, and ids with a filter."""
    _fill(services)
    with services.store.session() as session:

        def found(ids: list[str], filters: list[tuple[str, list[bytes]]]) -> list[str]:
            return [v.resource_id for v in session.search(PATIENT, "DocumentReference", ids, filters)]

        assert found([], [("identifier", [_hash("id", 123)])]) == ["doc-00123"]
        assert found([], [("identifier", [_hash("id", 7), _hash("id", 5)])]) == ["doc-00005", "doc-00007"]
        both = [("identifier", [_hash("id", 4), _hash("id", 5)]), ("status", [_hash("status", 1)])]
        assert found([], both) == ["doc-00004"]  # 4 % 3 == 1, 5 % 3 == 2
        assert len(found([], [("status", [_hash("status", 0)])])) == DOCUMENTS // 3
        assert found(["doc-00010", "doc-00011"], [("status", [_hash("status", 2)])]) == ["doc-00011"]
        assert found([], [("identifier", [_hash("id", DOCUMENTS + 1)])]) == []
        assert found([], [("identifier", [_hash("id", 1)]), ("status", [_hash("status", 0)])]) == []


def test_a_token_search_reads_pages_for_its_matches_not_the_record(services: Services) -> None:
    """On plain PostgreSQL without statistics, an identifier search in a record of 300 reads < 200 pages."""
    engine = services.store.engine
    if not plain_postgres(engine):
        pytest.skip(
            "the page count is plain PostgreSQL's plan (SQLite plans from the matches; Citus per shard)"
        )
    _fill(services)
    with (
        sent_with_parameters(engine, lambda statement: "search_tokens" in statement) as seen,
        services.store.session() as session,
    ):
        filters = [("identifier", [_hash("id", 200)])]
        assert [v.resource_id for v in session.search(PATIENT, "DocumentReference", [], filters)] == [
            "doc-00200"
        ]
    statement, parameters = seen[-1]
    with engine.connect() as connection:
        cursor = connection.connection.dbapi_connection.cursor()
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, parameters)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    top = plan[0]["Plan"]
    pages = top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0)
    assert pages < 200, f"the search read {pages} pages for one match in a record of {DOCUMENTS}"
