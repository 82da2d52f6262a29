"""Carnet on Citus: every table placed as declared, a record's requests routed to one shard group.

The placement tests run everywhere (they read the schema). The others run on the Citus cluster of
``.ci/citus-cluster.sh`` (``CARNET_TEST_CITUS_URL``): each statement a request sends is put through
``EXPLAIN`` and must be one task on one shard of the record's shard group (and, for the journal,
of its log's shard group).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from sqlalchemy import Connection, Engine, event, inspect, text
from starlette.testclient import TestClient
from typer.testing import CliRunner

from carnet.api.app import Services, build_services, create_app
from carnet.cli import app
from carnet.domain.errors import ConfigurationError
from carnet.settings import Settings
from carnet.store.distribution import LOCAL, PLACEMENTS, distribute, placed, placement
from carnet.store.engine import alembic_config, make_engine, upgrade
from carnet.store.tables import metadata
from carnet.testing import journal_entries
from minting import Mint

CITUS = [pytest.param("citus", marks=[pytest.mark.postgres, pytest.mark.citus])]
INS = "urn:oid:1.2.250.1.213.1.4.10"
LOINC = "http://loinc.org"


def _migrated_tables(tmp_path: Path) -> set[str]:
    engine = make_engine(f"sqlite:///{tmp_path / 'schema.sqlite3'}")
    upgrade(engine)
    names = set(inspect(engine).get_table_names())
    engine.dispose()
    return names


def test_every_table_has_a_placement(tmp_path: Path) -> None:
    """Each table the migrations create (and each declared in tables.py) is distributed or reference."""
    tables = _migrated_tables(tmp_path) | set(metadata.tables)
    missing = sorted(tables - set(PLACEMENTS) - LOCAL)
    assert not missing, f"declare a Citus placement in carnet.store.distribution.PLACEMENTS for {missing}"
    assert not set(PLACEMENTS) - tables, "PLACEMENTS names a table the schema does not have"


def test_every_key_includes_the_distribution_column() -> None:
    """Every primary key and unique constraint or index holds its table's distribution column."""
    for table in metadata.sorted_tables:
        spec = placement(table.name)
        if spec.kind == "reference":
            continue
        assert spec.column in table.c, f"{table.name} has no column {spec.column}"
        keys = [[c.name for c in table.primary_key.columns]]
        keys += [[c.name for c in index.columns] for index in table.indexes if index.unique]
        keys += [
            [c.name for c in constraint.columns]
            for constraint in table.constraints
            if constraint.__class__.__name__ == "UniqueConstraint"
        ]
        for columns in keys:
            if columns:
                assert spec.column in columns, f"{table.name}: key {columns} lacks {spec.column}"


def test_an_undeclared_table_is_refused() -> None:
    """A table without a placement is named in a clear configuration error."""
    with pytest.raises(ConfigurationError, match="carnet_new_table"):
        placement("carnet_new_table")


def test_distribute_refuses_a_database_without_citus(tmp_path: Path) -> None:
    """``carnet db distribute`` on SQLite says the database has no Citus extension."""
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    with engine.begin() as connection, pytest.raises(ConfigurationError, match="Citus"):
        distribute(connection)
    with pytest.raises(ConfigurationError, match="CARNET_DATABASE_DISTRIBUTED=citus"):
        upgrade(engine, "citus")
    engine.dispose()


# -- on a Citus cluster ------------------------------------------------------------------------


@pytest.mark.parametrize("database_url", CITUS, indirect=True)
def test_upgrade_places_every_table(services: Services) -> None:
    """After start-up every table is placed as declared, each group co-located."""
    with services.store.engine.connect() as connection:
        kinds = placed(connection)
        groups = dict(
            connection.execute(
                text(
                    "SELECT c.relname, p.colocationid FROM pg_dist_partition p JOIN pg_class c "
                    "ON c.oid = p.logicalrelid WHERE c.relnamespace = to_regnamespace(current_schema())"
                )
            ).all()
        )
        columns = dict(
            connection.execute(
                text(
                    "SELECT c.relname, column_to_column_name(p.logicalrelid, p.partkey) "
                    "FROM pg_dist_partition p JOIN pg_class c ON c.oid = p.logicalrelid "
                    "WHERE c.relnamespace = to_regnamespace(current_schema()) AND p.partkey IS NOT NULL"
                )
            ).all()
        )
    assert set(kinds) == set(PLACEMENTS)
    for name, spec in PLACEMENTS.items():
        assert kinds[name] == ("n" if spec.kind == "reference" else "h"), name
        if spec.kind == "distributed":
            assert columns[name] == spec.column
            assert groups[name] == groups[str(spec.colocate)], (
                f"{name} is not co-located with {spec.colocate}"
            )
    assert groups["resources"] == groups["journal_heads"], "the journal is not with the records"


@dataclass
class _Recorder:
    """Notes what is sent while ``recording`` is on (the fixtures' listeners look at the flag)."""

    recording: bool = False

    def forget(self) -> None:
        """Drop what was noted."""
        raise NotImplementedError

    @contextmanager
    def recorded(self) -> Iterator[None]:
        """Note what the block sends, and only that."""
        self.forget()
        self.recording = True
        try:
            yield
        finally:
            self.recording = False


#: The server's background threads (api/app.py ``start_background``): the checkpointer signs every
#: log's head every few seconds and the notification worker polls the outbox, whatever the request.
_BACKGROUND = frozenset({"carnet-checkpoints", "carnet-notify"})


def _in_background() -> bool:
    """Tell whether the statement being sent comes from a background thread, not from a request."""
    return threading.current_thread().name in _BACKGROUND


@dataclass
class Statements(_Recorder):
    """The SQL statements an engine sent while recording."""

    sent: list[tuple[str, Any]] = field(default_factory=list)

    def forget(self) -> None:
        """Drop the statements noted."""
        self.sent.clear()


@pytest.fixture
def statements(services: Services) -> Iterator[Statements]:
    """Record every statement the store's engine sends while ``recording`` is on."""
    seen = Statements()

    def before(_c: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, many: bool) -> None:
        if seen.recording and not _in_background():
            seen.sent.append((statement, parameters[0] if many else parameters))

    engine: Engine = services.store.engine
    event.listen(engine, "before_cursor_execute", before)
    yield seen
    event.remove(engine, "before_cursor_execute", before)


_SHARD = re.compile(r"\b[a-z_]+_(\d{6,})\b")


def _shard_groups(
    connection: Connection, statement: str, parameters: Any
) -> tuple[int, set[tuple[int, str]]]:
    """Return the task count of a statement and the ``(colocation, shard min)`` groups it touches."""
    plan = "\n".join(row[0] for row in connection.exec_driver_sql("EXPLAIN " + statement, parameters))
    tasks = [int(n) for n in re.findall(r"Task Count: (\d+)", plan)]
    shards = {int(s) for s in _SHARD.findall(plan)}
    groups: set[tuple[int, str]] = set()
    for shard in shards:
        row = connection.execute(
            text(
                "SELECT p.colocationid, s.shardminvalue FROM pg_dist_shard s "
                "JOIN pg_dist_partition p USING (logicalrelid) WHERE s.shardid = :s"
            ),
            {"s": shard},
        ).first()
        if row is not None:
            groups.add((int(row[0]), str(row[1])))
    return max(tasks, default=0), groups


def _routed(services: Services, sent: list[tuple[str, Any]]) -> list[tuple[int, str]]:
    """Explain every distributed statement: each must be one task; return the groups touched."""
    keep = ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")
    touched: set[tuple[int, str]] = set()
    explained = 0
    with services.store.engine.connect() as connection:
        for statement, parameters in sent:
            if not statement.lstrip().upper().startswith(keep):
                continue
            tasks, groups = _shard_groups(connection, statement, parameters)
            if not groups and tasks == 0:
                continue  # not about a distributed table (e.g. the pool's ping)
            assert tasks == 1, f"{tasks} tasks for: {statement}"
            explained += 1
            touched |= groups
    assert explained, "no distributed statement was sent"
    return sorted(touched)


def _colocation(services: Services, table: str) -> int:
    with services.store.engine.connect() as connection:
        return int(
            connection.execute(
                text("SELECT colocationid FROM pg_dist_partition WHERE logicalrelid = CAST(:t AS regclass)"),
                {"t": table},
            ).scalar_one()
        )


def _open_record(client: TestClient, auth: Mint, nir: str) -> tuple[str, dict[str, str]]:
    headers = auth(kind="patient", identifier=f"{INS}|{nir}")
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": INS, "value": nir}],
        "birthDate": "1984-03-12",
    }
    response = client.post("/fhir/Patient", json=patient, headers=headers)
    assert response.status_code == 201, response.text
    patient_id = response.json()["id"]
    return patient_id, auth(kind="patient", patient=patient_id)


def _observation(patient_id: str, code: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2026-01-02",
        "valueQuantity": {"value": 70, "unit": "kg"},
    }


def _requests_on_an_observation(
    client: TestClient, patient_id: str, headers: dict[str, str]
) -> tuple[str, dict[str, Callable[[], httpx.Response]]]:
    """Create an Observation in the record; return its id and, by name, the requests that reach it."""
    made = client.post("/fhir/Observation", json=_observation(patient_id, "29463-7"), headers=headers)
    assert made.status_code == 201, made.text
    observation_id = made.json()["id"]
    url = f"/fhir/Observation/{observation_id}"
    changed = {**_observation(patient_id, "29463-7"), "id": observation_id, "status": "amended"}
    return observation_id, {
        "read": lambda: client.get(url, headers=headers),
        "patient": lambda: client.get(f"/fhir/Patient/{patient_id}", headers=headers),
        "vread": lambda: client.get(f"{url}/_history/1", headers=headers),
        "history": lambda: client.get(f"{url}/_history", headers=headers),
        "search": lambda: client.get(f"/fhir/Observation?patient=Patient/{patient_id}", headers=headers),
        "everything": lambda: client.get(f"/fhir/Patient/{patient_id}/$everything", headers=headers),
        "update": lambda: client.put(url, json=changed, headers=headers),
        "journal": lambda: client.get(f"/fhir/AuditEvent?patient=Patient/{patient_id}", headers=headers),
        "delete": lambda: client.delete(url, headers=headers),
    }


@pytest.mark.parametrize("database_url", CITUS, indirect=True)
def test_a_records_requests_touch_one_shard_group(
    client: TestClient, auth: Mint, services: Services, statements: Statements
) -> None:
    """Write, search, $everything, journal read and proof: each statement is one task in the record's shard group.

    The record's journal entries and its log are in that group too, and so is a new resource's
    location (its id starts with the record shard's log key): nothing in the locations' group.
    """
    patient_id, headers = _open_record(client, auth, "2840312345678")
    _open_record(client, auth, "1750599123456")  # a second record, likely on another shard
    record = _colocation(services, "resources")
    where = _colocation(services, "resource_locations")
    requests = {
        "create": lambda: client.post(
            "/fhir/Observation", json=_observation(patient_id, "29463-7"), headers=headers
        ),
        "search": lambda: client.get(
            f"/fhir/Observation?patient=Patient/{patient_id}&code={LOINC}|29463-7", headers=headers
        ),
        "everything": lambda: client.get(f"/fhir/Patient/{patient_id}/$everything", headers=headers),
        "journal": lambda: client.get(f"/fhir/AuditEvent?patient=Patient/{patient_id}", headers=headers),
    }
    event_id = ""
    for name, send in requests.items():
        with statements.recorded():
            response = send()
        assert response.status_code in (200, 201), f"{name}: {response.text}"
        if name == "journal":
            event_id = response.json()["entry"][0]["resource"]["id"]
        groups = _routed(services, statements.sent)
        assert len({g for g in groups if g[0] == record}) == 1, f"{name}: record groups {groups}"
        located = {g for g in groups if g[0] == where}
        assert not located, f"{name}: location shards {groups}"
        assert {g[0] for g in groups} == {record}, f"{name}: {groups}"
        mine = {g for g in groups if g[0] == record}
    with statements.recorded():
        response = client.get(f"/fhir/AuditEvent/{event_id}/$proof", headers=headers)
    assert response.status_code == 200, response.text
    assert _routed(services, statements.sent) == sorted(mine), "the proof is not in the record's shard group"


@pytest.mark.parametrize("database_url", CITUS, indirect=True)
def test_a_resource_cannot_move_to_another_record(client: TestClient, auth: Mint) -> None:
    """An update naming another record's patient is refused (422) and the resource stays where it was."""
    first, headers = _open_record(client, auth, "2840312345678")
    second, _ = _open_record(client, auth, "1750599123456")
    created = client.post("/fhir/Observation", json=_observation(first, "29463-7"), headers=headers).json()
    moved = {**_observation(second, "29463-7"), "id": created["id"]}
    response = client.put(f"/fhir/Observation/{created['id']}", json=moved, headers=headers)
    assert response.status_code in (403, 422), response.text
    again = client.get(f"/fhir/Observation/{created['id']}", headers=headers).json()
    assert again["subject"]["reference"] == f"Patient/{first}"


@pytest.mark.parametrize("database_url", CITUS, indirect=True)
def test_ins_lookup_works_across_shards(client: TestClient, auth: Mint) -> None:
    """Finding one's record by INS (a lookup across every shard) answers on Citus wherever the record lives."""
    nirs = ("2840312345678", "1750599123456", "2690175111222", "1891299333444", "2010101010101")
    opened = {nir: _open_record(client, auth, nir)[0] for nir in nirs}
    for nir, patient_id in opened.items():
        caller = auth(kind="patient", identifier=f"{INS}|{nir}")
        found = client.get(f"/fhir/Patient?identifier={INS}|{nir}", headers=caller)
        assert found.status_code == 200, found.text
        assert [e["resource"]["id"] for e in found.json()["entry"]] == [patient_id]


def _contents(client: TestClient, auth: Mint, paths: dict[str, str]) -> dict[str, bytes]:
    """GET each path as its record's patient; return the bodies."""
    found = {}
    for path, patient_id in paths.items():
        response = client.get(f"/fhir/{path}", headers=auth(kind="patient", patient=patient_id))
        assert response.status_code == 200, response.text
        found[path] = response.content
    return found


@pytest.mark.parametrize("database_url", CITUS, indirect=True)
def test_db_distribute_converts_a_single_node_store(settings: Settings, auth: Mint) -> None:
    """A store written on one node, converted by ``carnet db distribute``, answers byte-identical resources."""
    single = replace(settings, database_distributed="none")
    wired = build_services(single)
    paths: dict[str, str] = {}
    with TestClient(create_app(single, wired), base_url="http://testserver") as client:
        # Five records: one at least (all but 1 in 4**5 = 1,024 times) is not in the first shard.
        for nir in ("2840312345678", "1750599123456", "2690175111222", "1891299333444", "2010101010101"):
            patient_id, headers = _open_record(client, auth, nir)
            created = client.post(
                "/fhir/Observation", json=_observation(patient_id, "29463-7"), headers=headers
            )
            paths[f"Patient/{patient_id}"] = paths[f"Observation/{created.json()['id']}"] = patient_id
        before = _contents(client, auth, paths)
        before_entries = {p: len(journal_entries(wired, p)) for p in set(paths.values())}
    with wired.store.engine.connect() as connection:
        assert placed(connection) == {}
    wired.store.engine.dispose()
    env = {
        "CARNET_DATA_DIR": str(settings.data_dir),
        "CARNET_KEY_DIR": str(settings.key_dir),
        "CARNET_DATABASE_URL": settings.effective_database_url,
    }
    result = CliRunner().invoke(app, ["db", "distribute"], env=env)
    assert result.exit_code == 0, result.output
    rewired = build_services(settings)
    with rewired.store.engine.connect() as connection:
        assert set(placed(connection)) == set(PLACEMENTS)
        # The coordinator's own heap of the table (queries now read the shards on the workers).
        local = connection.execute(text("SELECT pg_relation_size('resources')")).scalar_one()
    assert local == 0, "the coordinator's local copy was not emptied"
    with TestClient(create_app(settings, rewired), base_url="http://testserver") as client:
        after = _contents(client, auth, paths)
        # Each record's journal: the entries written before the conversion (in the store's one
        # log, now a legacy log) and the reads just made (in the log of the record's shard).
        for patient_id in set(paths.values()):
            entries = journal_entries(rewired, patient_id)
            assert len(entries) > before_entries[patient_id], patient_id
    with rewired.store.session() as session:
        logs = {p: rewired.journal.logs_of(session, p) for p in set(paths.values())}
    assert rewired.journal.shards >= 2
    # Its shard's log, then the one log of the single-node store (now a legacy log).
    with rewired.store.session() as session:
        assert logs == {
            p: (own,) if own == 0 else (own, 0)
            for p, own in ((p, rewired.journal.log_of(session, p)) for p in logs)
        }
    assert any(len(found) == 2 for found in logs.values()), logs
    rewired.journal.issue_checkpoints()
    rewired.store.engine.dispose()
    assert after == before
    verify = CliRunner().invoke(
        app, ["audit", "verify", "--database", settings.effective_database_url], env=env
    )
    assert verify.exit_code == 0, verify.output


@pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_restore_point_needs_citus(services: Services, settings: Settings) -> None:
    """``carnet db restore-point`` on a single-node database says it has no Citus extension (exit 1)."""
    env = {"CARNET_DATA_DIR": str(settings.data_dir), "CARNET_DATABASE_URL": settings.effective_database_url}
    result = CliRunner().invoke(app, ["db", "restore-point", "nightly"], env=env)
    assert (result.exit_code, "no Citus extension" in result.output) == (1, True), result.output


@pytest.mark.parametrize("database_url", CITUS, indirect=True)
def test_restore_point_is_written_on_every_node(services: Services, settings: Settings) -> None:
    """On Citus the restore point is created cluster-wide and its coordinator WAL position is printed."""
    env = {"CARNET_DATA_DIR": str(settings.data_dir), "CARNET_DATABASE_URL": settings.effective_database_url}
    result = CliRunner().invoke(app, ["db", "restore-point", "drill-1"], env=env)
    assert result.exit_code == 0, result.output
    assert re.search(
        r"restore point drill-1 created on every node \(coordinator WAL [0-9A-F]+/[0-9A-F]+\)", result.output
    )
    bad = CliRunner().invoke(app, ["db", "restore-point", "x'; DROP TABLE resources; --"], env=env)
    assert (bad.exit_code, "restore point name" in bad.output) == (1, True)


@pytest.mark.parametrize("database_url", CITUS, indirect=True)
def test_a_read_by_bare_id_probes_one_shard(
    client: TestClient, auth: Mint, services: Services, statements: Statements
) -> None:
    """Read, vread, history, update and delete by bare id: one shard group, the record's.

    The id starts with the record shard's log key: its location is read on that shard (and a
    Patient's in its own record). An id without a key (a store converted by ``carnet db
    distribute``) is still found by one probe of the locations' group.
    """
    patient_id, headers = _open_record(client, auth, "2840312345678")
    _open_record(client, auth, "1750599123456")
    _, on_it = _requests_on_an_observation(client, patient_id, headers)
    record, where = _colocation(services, "resources"), _colocation(services, "resource_locations")
    requests = {name: on_it[name] for name in ("read", "patient", "vread", "history", "update", "delete")}
    for name, send in requests.items():
        with statements.recorded():
            response = send()
        assert response.status_code in (200, 204), f"{name}: {response.text}"
        groups = _routed(services, statements.sent)  # every statement one task
        assert [g[0] for g in groups] == [record], f"{name}: {groups}"
    with services.store.engine.begin() as connection:  # an id without a log key, as before 0023
        connection.execute(
            text(
                "INSERT INTO resource_locations (resource_id, resource_type, patient_id) "
                "VALUES ('older-id', 'Observation', :p)"
            ),
            {"p": patient_id},
        )
    with statements.recorded(), services.store.session() as session:
        assert session.locate("Observation", "older-id") == patient_id
    assert {g[0] for g in _routed(services, statements.sent)} == {where}


@pytest.mark.parametrize(
    "database_url",
    [pytest.param("postgres", marks=pytest.mark.postgres), *CITUS],
    indirect=True,
)
def test_no_table_takes_values_from_a_sequence(services: Services) -> None:
    """No column defaults to a sequence: every key is written by Carnet, so shard moves and new nodes copy no counter."""
    with services.store.engine.connect() as connection:
        defaults = connection.execute(
            text(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND column_default LIKE 'nextval(%'"
            )
        ).all()
        sequences = connection.execute(
            text(
                "SELECT sequence_name FROM information_schema.sequences WHERE sequence_schema = current_schema()"
            )
        ).all()
    assert (defaults, sequences) == ([], [])


@pytest.mark.parametrize("database_url", CITUS, indirect=True)
def test_a_distributed_store_drops_its_sequence_on_every_node(database_url: str) -> None:
    """A store distributed at revision 0016 (a serial log number), upgraded: no node keeps the sequence or the default."""
    engine = make_engine(database_url)
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0016")
    with engine.begin() as connection:
        distribute(connection)
    upgrade(engine)
    check = (
        "SELECT count(*) FROM pg_class WHERE relname = 'journal_heads_shard_seq' "
        "AND relnamespace = '{schema}'::regnamespace"
    )
    with engine.connect() as connection:
        schema = connection.execute(text("SELECT current_schema()")).scalar_one()
        defaults = connection.execute(
            text("SELECT count(*) FROM pg_attrdef WHERE adrelid = CAST('journal_heads' AS regclass)")
        ).scalar_one()
        nodes = connection.execute(
            text("SELECT result FROM run_command_on_all_nodes(:c)"), {"c": check.format(schema=schema)}
        ).all()
        # Migration 0022 moved the journal, distributed on its log number, into the record group.
        journal, records = (
            connection.execute(
                text("SELECT colocationid FROM pg_dist_partition WHERE logicalrelid = CAST(:t AS regclass)"),
                {"t": name},
            ).scalar_one()
            for name in ("journal_entries", "patient_keys")
        )
    engine.dispose()
    assert journal == records
    assert defaults == 0
    assert len(nodes) >= 3, nodes
    assert [row[0] for row in nodes] == ["0"] * len(nodes), nodes


@dataclass
class Remote(_Recorder):
    """What the coordinator sent to the workers while ``recording`` (``citus.log_remote_commands``)."""

    commands: list[str] = field(default_factory=list)

    def forget(self) -> None:
        """Drop the commands noted."""
        self.commands.clear()

    def nodes(self) -> set[str]:
        """The workers that received a command."""
        return set(re.findall(r"on server \S+@([\w.]+:\d+)", "\n".join(self.commands)))

    def two_phase(self) -> bool:
        """Whether a transaction was committed in two phases (PREPARE TRANSACTION on the workers)."""
        return any("PREPARE TRANSACTION" in command for command in self.commands)


@pytest.fixture
def remote(services: Services) -> Iterator[Remote]:
    """Log, on every connection of the store's engine, the commands the coordinator sends to workers."""
    seen = Remote()
    hooked: set[int] = set()

    def note(diagnostic: Any) -> None:
        if seen.recording and not _in_background():
            # The command, then the worker it went to ("on server user@host:port connectionId: n").
            seen.commands.append(f"{diagnostic.message_primary or ''} {diagnostic.message_detail or ''}")

    def checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if id(dbapi_connection) in hooked:
            return
        hooked.add(id(dbapi_connection))
        dbapi_connection.add_notice_handler(note)
        dbapi_connection.execute("SET citus.log_remote_commands TO on")
        dbapi_connection.commit()

    engine: Engine = services.store.engine
    engine.dispose()  # every connection from now on is hooked
    event.listen(engine, "checkout", checkout)
    yield seen
    event.remove(engine, "checkout", checkout)


@pytest.mark.parametrize("database_url", CITUS, indirect=True)
def test_a_records_requests_commit_on_one_worker_without_two_phase_commit(
    client: TestClient, auth: Mint, services: Services, remote: Remote
) -> None:
    """Create, read, search, update, delete, journal read and proof: one worker, committed in one phase.

    The record's journal entry is written in the record's shard group, and a new resource's id
    starts with its record shard's log key, its location written in that group too: the
    request's whole transaction is on the record's worker. So is a new record's (its Patient
    needs no location), and a transaction Bundle's opening a record with its resources. The
    control: a write to a reference table (every node) is committed in two phases.
    """
    patient_id, headers = _open_record(client, auth, "2840312345678")
    observation_id, on_it = _requests_on_an_observation(client, patient_id, headers)
    assert services.store.logs.token_in(observation_id), observation_id  # "<log key>.<uuid>"
    requests = {
        "create": lambda: _create_several(client, patient_id, headers),
        **{
            name: on_it[name]
            for name in ("read", "patient", "search", "everything", "update", "journal", "delete")
        },
    }
    workers: set[str] = set()
    event_id = ""
    for name, send in requests.items():
        with remote.recorded():
            response = send()
        assert response.status_code in (200, 201, 204), f"{name}: {response.text}"
        if name == "journal":
            event_id = response.json()["entry"][0]["resource"]["id"]
        assert not remote.two_phase(), f"{name} was committed in two phases: {remote.commands}"
        assert any("COMMIT" in c for c in remote.commands), f"{name}: no commit seen: {remote.commands}"
        workers |= remote.nodes()  # the record's worker (its journal entry included)
    assert len(workers) == 1, workers
    with remote.recorded():
        proof = client.get(f"/fhir/AuditEvent/{event_id}/$proof", headers=headers)
    assert proof.status_code == 200, proof.text
    assert not remote.two_phase(), remote.commands
    assert remote.nodes() <= workers, remote.commands
    for nir in ("1750599123456", "2690175111222", "1840399000123"):  # new records, on either worker
        with remote.recorded():
            _open_record(client, auth, nir)
        # (Its INS lookup reads every worker; it writes on one.)
        assert not remote.two_phase(), f"a new record was committed in two phases: {remote.commands}"
    nir = "1770599000011"
    with remote.recorded():
        opened = client.post(
            "/fhir", json=_opening_bundle(nir), headers=auth(kind="patient", identifier=f"{INS}|{nir}")
        )
    assert opened.status_code == 200, opened.text
    assert not remote.two_phase(), f"the Bundle was committed in two phases: {remote.commands}"
    observation = opened.json()["entry"][0]["response"]["location"].split("/")[1]
    assert services.store.logs.token_in(observation), observation
    with services.store.engine.connect() as connection:
        nodes = connection.execute(
            text("SELECT count(*) FROM pg_dist_node WHERE noderole = 'primary' AND groupid > 0")
        ).scalar_one()
    if nodes < 2:
        return  # one worker: nothing is ever committed in two phases
    # The control: a write on every node.
    with remote.recorded(), services.store.engine.begin() as connection:
        connection.execute(text("UPDATE journal_logs SET legacy = legacy"))
    assert remote.two_phase(), f"the detector sees no two-phase commit: {remote.commands}"


def _create_several(client: TestClient, patient_id: str, headers: dict[str, str]) -> Any:
    """Create eight Observations (each location on either worker if ids carried no log key); return the last answer."""
    for _ in range(8):
        response = client.post("/fhir/Observation", json=_observation(patient_id, "8302-2"), headers=headers)
        assert response.status_code == 201, response.text
    return response


def _opening_bundle(nir: str) -> dict[str, Any]:
    """A transaction Bundle: a patient opens their record and writes an Observation in it (urn:uuid)."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111",
                "resource": {**_observation("x", "29463-7"), "subject": {"reference": "urn:uuid:2"}},
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "fullUrl": "urn:uuid:2",
                "resource": {"resourceType": "Patient", "identifier": [{"system": INS, "value": nir}]},
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
