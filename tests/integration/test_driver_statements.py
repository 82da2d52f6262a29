"""The hot statements (journal head, entries, nodes; buffered inserts) go straight to the driver.

``store/connected.py`` sends them on the transaction's DBAPI cursor, through the dialect, when
nothing listens to the engine's statements; errors are still SQLAlchemy's, and a listener
(a test counting statements) still sees every one.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Connection, event, func, select
from sqlalchemy.exc import IntegrityError

from carnet.api.app import Services
from carnet.domain.principal import ActorKind, Identifier, Principal
from carnet.store.connected import insert_many
from carnet.store.tables import journal_entries, journal_heads

INS = "urn:oid:1.2.250.1.213.1.4.8"


@pytest.fixture
def through_sqlalchemy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statements sent through SQLAlchemy's execution (``exec_driver_sql``, ``execute``) meanwhile."""
    seen: list[str] = []
    for name in ("exec_driver_sql", "execute"):
        original = getattr(Connection, name)

        def noted(
            self: Connection, statement: Any, *args: Any, _original: Any = original, **kwargs: Any
        ) -> Any:
            seen.append(str(statement))
            return _original(self, statement, *args, **kwargs)

        monkeypatch.setattr(Connection, name, noted)
    return seen


def _read_twice(services: Services) -> None:
    nir = "1850575000011"
    opener = Principal(kind=ActorKind.PATIENT, subject=nir, identifier=Identifier(system=INS, value=nir))
    patient = services.records.records(opener).create(
        {"resourceType": "Patient", "identifier": [{"system": INS, "value": nir}]}
    )
    patient_id = patient.stored.resource_id
    records = services.records.records(Principal(kind=ActorKind.PATIENT, subject=nir, patient_id=patient_id))
    made = records.create(
        {"resourceType": "Basic", "code": {"text": "x"}, "subject": {"reference": f"Patient/{patient_id}"}}
    )
    for _ in range(2):
        assert records.read("Basic", made.stored.resource_id).resource_id == made.stored.resource_id


def test_the_journal_skips_sqlalchemys_execution_when_nothing_listens(
    services: Services, through_sqlalchemy: list[str]
) -> None:
    """Reads and creates journal their entries without one statement through ``exec_driver_sql``."""
    _read_twice(services)
    assert [s for s in through_sqlalchemy if "journal_" in s and "unnest" not in s] == []
    assert [s for s in through_sqlalchemy if "SAVEPOINT" in s] == []  # each create's own savepoint
    with services.store.engine.connect() as connection:
        entries = connection.execute(select(func.count()).select_from(journal_entries)).scalar_one()
        heads = connection.execute(select(func.sum(journal_heads.c.size))).scalar_one()
    assert entries == heads >= 4  # two creates, two reads: each head counts what was written


def test_a_listener_sees_the_statements_sent_to_the_driver(
    services: Services, through_sqlalchemy: list[str]
) -> None:
    """With a ``before_cursor_execute`` listener, the same statements go through SQLAlchemy and are seen."""
    seen: list[str] = []

    def note(_c: object, _cursor: object, statement: str, *_: object) -> None:
        seen.append(statement)

    event.listen(services.store.engine, "before_cursor_execute", note)
    _read_twice(services)
    assert any("journal_heads" in s for s in seen)
    assert any("journal_heads" in s for s in through_sqlalchemy)


def test_a_row_inserted_twice_on_the_drivers_path_raises_sqlalchemys_integrity_error(
    services: Services,
) -> None:
    """The driver's error is wrapped as SQLAlchemy's, which ``flush`` turns into ``Conflict``; the pool goes on."""
    head = {"log_key": "twice", "shard": 0, "size": 0, "peaks": b""}
    engine = services.store.engine
    with pytest.raises(IntegrityError), engine.connect() as connection, connection.begin():
        insert_many(connection, journal_heads, [head, dict(head)])
    with engine.connect() as connection, connection.begin():
        insert_many(connection, journal_heads, [head])
        connection.rollback()


def test_a_savepoint_sent_to_the_driver_undoes_only_its_block(services: Services) -> None:
    """``SAVEPOINT`` / ``ROLLBACK TO`` / ``RELEASE`` as plain SQL: a failed block's rows go, the rest stay."""
    heads = [{"log_key": f"k{n}", "shard": 0, "size": n, "peaks": b""} for n in range(3)]
    with services.store.engine.connect() as connection, connection.begin():
        insert_many(connection, journal_heads, [heads[0]])

        def fail_in_a_savepoint() -> None:
            with connection.begin_nested():
                insert_many(connection, journal_heads, [heads[1]])
                raise RuntimeError("undone")

        with pytest.raises(RuntimeError):
            fail_in_a_savepoint()
        with connection.begin_nested():
            insert_many(connection, journal_heads, [heads[2]])
        kept = connection.execute(
            select(journal_heads.c.log_key).where(journal_heads.c.log_key.in_(["k0", "k1", "k2"]))
        )
        assert sorted(row[0] for row in kept) == ["k0", "k2"]
        connection.rollback()


def test_a_statement_outside_a_transaction_begins_one_as_sqlalchemy_would(services: Services) -> None:
    """Without ``begin()``, an insert still runs in the transaction SQLAlchemy begins, undone at close."""
    with services.store.engine.connect() as connection:
        insert_many(connection, journal_heads, [{"log_key": "loose", "shard": 0, "size": 0, "peaks": b""}])
        assert connection.in_transaction()
    with services.store.engine.connect() as connection:
        assert (
            connection.execute(select(journal_heads).where(journal_heads.c.log_key == "loose")).first()
            is None
        )


def _record(services: Services) -> tuple[str, str]:
    """A record opened by its patient, with one Basic resource: their ids."""
    nir = "1850575000011"
    opener = Principal(kind=ActorKind.PATIENT, subject=nir, identifier=Identifier(system=INS, value=nir))
    patient_id = (
        services.records.records(opener)
        .create({"resourceType": "Patient", "identifier": [{"system": INS, "value": nir}]})
        .stored.resource_id
    )
    records = services.records.records(Principal(kind=ActorKind.PATIENT, subject=nir, patient_id=patient_id))
    made = records.create(
        {"resourceType": "Basic", "code": {"text": "x"}, "subject": {"reference": f"Patient/{patient_id}"}}
    )
    return patient_id, made.stored.resource_id


def test_a_writes_queries_skip_sqlalchemys_execution_and_find_the_same_rows(
    services: Services, through_sqlalchemy: list[str]
) -> None:
    """The key's, the policy's, the INS's and the searches' queries go to the driver, lists of up to 16
    values as that many parameters; a longer list goes through SQLAlchemy, to the same rows."""
    patient_id, basic_id = _record(services)
    token = ("code", b"h" * 16)
    with services.store.session(write=True) as session:
        session.set_tokens(patient_id, "Basic", basic_id, {token})
    others = [bytes([n]) * 16 for n in range(16)]
    through_sqlalchemy.clear()
    with services.store.session() as session:
        assert session.find_identities(b"\0" * 32) == []
        assert session.get_key(patient_id) is not None
        assert [v.resource_type for v in session.current_of_types(patient_id, ["Patient", "Consent"])] == [
            "Patient"
        ]
        basics = session.search(patient_id, "Basic", [], [])
        assert [v.resource_id for v in basics] == [basic_id]
        assert session.current(patient_id, "Basic", basic_id) == basics[0]
        assert session.search(patient_id, "Basic", [basic_id], []) == basics
        assert session.search(patient_id, "Basic", [], [(token[0], [token[1], *others[:15]])]) == basics
        assert session.search(patient_id, None, [basic_id], [(token[0], [token[1]])]) == basics
    assert [s for s in through_sqlalchemy if s.lstrip().upper().startswith("SELECT")] == []
    with services.store.session() as session:  # 17 values: expanding parameters, through SQLAlchemy
        ids = [basic_id] + [f"none-{n}" for n in range(16)]
        assert session.search(patient_id, "Basic", ids, []) == basics
        assert session.search(patient_id, "Basic", [], [(token[0], [token[1], *others])]) == basics
        assert session.current_of_types(patient_id, ["Patient"] + [f"T{n}" for n in range(16)])[
            0
        ].resource_type == ("Patient")
    assert len([s for s in through_sqlalchemy if s.lstrip().upper().startswith("SELECT")]) == 3
