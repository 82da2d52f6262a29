"""What a single read and a single create send to the database: a ceiling per request, per backend.

The statements are counted at the engine (``before_cursor_execute``) around one request of the
real app. On PostgreSQL each statement is a round trip to the server: the journal append is two
(the log's head read and locked, then entries, nodes and head written in one statement). A change
that adds statements to these paths fails here; one that removes some lowers the ceilings.
"""

from __future__ import annotations

from starlette.testclient import TestClient

from carnet.api.app import Services
from carnet.domain.consent import ConsentKind, consent_for
from carnet.store.distribution import is_citus
from journal_requests import GP, open_record, professional, weight
from minting import Mint
from statements import sent_statements


def _journal(statements: list[str]) -> list[str]:
    return [s for s in statements if "journal_" in s]


def test_a_single_read_and_create_stay_within_their_statements(
    client: TestClient, auth: Mint, services: Services
) -> None:
    patient_id, headers = open_record(client, auth, "1850575000011")
    made = client.post("/fhir/Observation", json=weight(patient_id, 72.0), headers=headers)
    assert made.status_code == 201, made.text
    postgres = services.store.engine.dialect.name == "postgresql"
    with services.store.engine.connect() as connection:
        citus = is_citus(connection)  # the locations are apart from the records: located, then read
    with sent_statements(services.store.engine) as read:
        answer = client.get(f"/fhir/Observation/{made.json()['id']}", headers=headers)
    assert answer.status_code == 200, answer.text
    with sent_statements(services.store.engine) as create:
        assert (
            client.post("/fhir/Observation", json=weight(patient_id, 73.0), headers=headers).status_code
            == 201
        )
    # SQLite and Citus: the journal's head, entries, nodes and head update; PostgreSQL: head, then
    # one statement (on Citus that statement would commit in two phases: store/journal.py); a
    # create's new rows in one statement before the head (store/journal_append.py).
    single = postgres and not services.store.logs.distributed
    assert len(_journal(read)) == (2 if single else 4), _journal(read)
    assert len(_journal(create)) == (2 if single else 4), _journal(create)
    # The rest: the resource located with its current version, the key (the BEGINs are not statements).
    assert len(read) <= (4 + citus + (0 if single else 2) if postgres else 6), read
    assert len(create) <= (4 if single else 9 if postgres else 11), create
    # Both entries are in the journal, in order, after the record's opening and first write.
    events = client.get(f"/fhir/AuditEvent?patient=Patient/{patient_id}", headers=headers)
    assert events.status_code == 200, events.text
    assert [e["resource"]["action"] for e in events.json()["entry"][:2]] == ["C", "R"]


def test_a_professionals_read_reads_the_patient_and_consents_in_one_query(
    client: TestClient, auth: Mint, services: Services
) -> None:
    """The policy's view of the record (closed? which authorisations?) costs one query, and still decides."""
    patient_id, headers = open_record(client, auth, "1850575000012")
    made = client.post("/fhir/Observation", json=weight(patient_id, 72.0), headers=headers)
    path = f"/fhir/Observation/{made.json()['id']}"
    assert client.get(path, headers=professional(auth, GP)).status_code == 404  # no authorisation yet
    consent = consent_for(ConsentKind.AUTHORISATION, patient_id, GP, now=services.records.clock())
    assert client.post("/fhir/Consent", json=consent, headers=headers).status_code == 201
    with sent_statements(services.store.engine) as read:
        answer = client.get(path, headers=professional(auth, GP))
    assert answer.status_code == 200, answer.text
    state = [s for s in read if "resources.resource_type IN" in s]
    assert len(state) == 1, read
    assert [s for s in read if "resources.deleted" in s] == state, read  # no search of one type
    closed = client.post(f"/fhir/Patient/{patient_id}/$close", headers=headers)
    assert closed.status_code == 200, closed.text
    # Read in the same query, the closed Patient stops the professional's access at the next request.
    assert client.get(path, headers=professional(auth, GP)).status_code == 404
