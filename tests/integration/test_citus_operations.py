"""Operations on a Citus cluster of its own: add a worker and rebalance under load; kill -9 a node.

Each test runs a real ``carnet serve`` (forked, see tests/served.py) on a private three-node
cluster started by ``.ci/citus-cluster.sh`` in a temporary directory on other ports, so moving
shards or killing nodes never disturbs the shared test cluster. Writer threads create
Observations in their own records over HTTP while reader threads search them; afterwards every
write answered ``201`` must read back, ``carnet audit verify`` must pass, no prepared (two-phase)
transaction may be left on any node, and every stored Observation must have its journal entry and
every journalled create its Observation (nothing half-applied).

These need the vendored build (or Citus installed) and take minutes: ``make test-long``.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import OperationalError
from starlette.testclient import TestClient
from typer.testing import CliRunner

from carnet.api.app import build_services, create_app
from carnet.api.auth import issue_token
from carnet.cli import app as carnet_cli
from carnet.settings import Settings
from carnet.store.tables import metadata
from carnet.testing import journal_entries
from served import ForkedServer, free_port, serve_env

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / ".ci" / "citus-cluster.sh"
VENDOR = REPO.parent / "shared" / "vendor" / "citus"
INSTALLED = Path("/usr/lib/postgresql/15/lib/citus.so")
INS = "urn:oid:1.2.250.1.213.1.4.10"
LOINC = "http://loinc.org"
WRITERS = 4
#: The longest a request may wait while a shard group moves (docs/operations.md): Citus blocks
#: writes to a moving shard group only for its final catch-up, under a second here; readers never.
PAUSE_SECONDS = 10.0


@dataclass
class Cluster:
    """A private coordinator and workers: their data directory, ports and the coordinator's URL."""

    root: Path
    port: int
    env: dict[str, str]

    @property
    def url(self) -> str:
        """The coordinator's URL (database ``test``)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/test"

    def script(self, *args: str) -> None:
        """Run .ci/citus-cluster.sh with this cluster's directory and ports."""
        subprocess.run(["bash", str(SCRIPT), *args], env=self.env, check=True, capture_output=True)

    def sql(self, statement: str, port: int | None = None, **params: object) -> list[Any]:
        """Run one statement on a node (the coordinator by default) and return its rows."""
        engine = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port or self.port}/test")
        try:
            with engine.begin() as connection:
                result = connection.execute(text(statement), params)
                return list(result.all()) if result.returns_rows else []
        finally:
            engine.dispose()

    def kill9(self, port: int) -> None:
        """SIGKILL a node's postmaster and every one of its processes (a crash), then start it again."""
        data = self.root / f"n{port}"
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
        children = [
            int(entry.name)
            for entry in Path("/proc").iterdir()
            if entry.name.isdigit() and _parent(int(entry.name)) == postmaster
        ]
        for pid in [postmaster, *children]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + 60
        while any(Path(f"/proc/{pid}").exists() for pid in [postmaster, *children]):
            assert time.monotonic() < deadline, "the killed node's processes did not exit"
            time.sleep(0.1)
        self.script("start")


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1
    return int(stat.rsplit(")", 1)[1].split()[1])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A private three-node cluster (skipped when neither the vendored build nor Citus is here)."""
    if not VENDOR.is_dir() and not INSTALLED.exists():
        pytest.skip(f"{VENDOR} is absent and Citus is not installed")
    del tmp_path_factory
    # Outside pytest's 0700 temporary tree: the nodes run as user postgres.
    root = Path(tempfile.mkdtemp(prefix="carnet-citus-ops-"))
    shutil.chown(root, "postgres")
    port = 5470
    env = {
        **os.environ,
        "CITUS_DIR": str(root / "nodes"),
        "CITUS_PORT": str(port),
        "CITUS_SHARDS": "8",
        # Commits answered only once their WAL is written out: a kill -9 of a node then loses no
        # acknowledged write (with it off, Citus answers before, and the kill loses the last ones).
        "CITUS_SYNCHRONOUS_COMMIT": "on",
    }
    made = Cluster(root=root / "nodes", port=port, env=env)
    made.script("start")
    try:
        yield made
    finally:
        made.script("destroy")
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Load:
    """Writers and readers running against a server, and what they saw."""

    url: str
    writers: list[tuple[str, dict[str, str]]]
    stop: threading.Event = field(default_factory=threading.Event)
    acked: dict[str, tuple[str, int]] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    #: Monotonic times of successful answers, and of failures (503, dropped connection).
    answered: list[float] = field(default_factory=list)
    failures: list[float] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)
    #: The server's environment and schema (for the registrar: ``carnet feeds add`` as an operator).
    env: dict[str, str] = field(default_factory=dict)
    schema: str = ""
    #: Feeds whose registration was acknowledged (``carnet feeds add`` exited 0).
    registered: list[str] = field(default_factory=list)

    def start(self, readers: int = 2, *, registrar: bool = False) -> None:
        """Start one writer per record, ``readers`` reader threads and, if asked, a registrar.

        The registrar's writes go to a reference table (``feeds``): each commits on every node,
        in two phases — the multi-node work a kill -9 must not leave half-applied.
        """
        for index, (patient_id, headers) in enumerate(self.writers):
            self.threads.append(threading.Thread(target=self._write, args=(index, patient_id, headers)))
        if registrar:
            self.threads.append(threading.Thread(target=self._register))
        for index in range(readers):
            patient_id, headers = self.writers[index % len(self.writers)]
            self.threads.append(threading.Thread(target=self._read, args=(patient_id, headers)))
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        """Stop every thread and wait for them."""
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def longest_wait(self) -> float:
        """The longest time between two successful answers (the pause the clients saw)."""
        times = sorted(self.answered)
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def _write(self, index: int, patient_id: str, headers: dict[str, str]) -> None:
        value = index * 1_000_000
        with httpx.Client(timeout=60) as http:
            while not self.stop.is_set():
                value += 1
                while not self.stop.is_set():  # a 503 (transient) is retried, as a feed does
                    try:
                        response = http.post(
                            f"{self.url}/Observation", json=_observation(patient_id, value), headers=headers
                        )
                    except httpx.TransportError as exc:
                        self._failed(f"write: {exc!r}")
                        time.sleep(0.1)
                        continue
                    if response.status_code == 201:
                        self.acked[response.json()["id"]] = (patient_id, value)
                        self._answered()
                        break
                    self._failed(f"write {response.status_code}: {response.text[:200]}")
                    if response.status_code != 503:
                        break
                    time.sleep(0.1)

    def _register(self) -> None:
        while not self.stop.is_set():
            feed_id = f"reg-{uuid.uuid4().hex[:10]}"
            command = [sys.executable, "-m", "carnet", "feeds", "add", feed_id, "--name", "Registrar"]
            done = subprocess.run(
                [*command, "--kind", "cda", "--classes", "10"],
                env={**os.environ, **self.env},
                capture_output=True,
                text=True,
                timeout=120,
            )
            if done.returncode == 0:
                self.registered.append(feed_id)
                self._answered()
            else:  # the node killed mid-registration: its outcome is unknown, never half-applied
                self._failed(f"register: {done.stderr[-200:]}")
                time.sleep(0.2)

    def _read(self, patient_id: str, headers: dict[str, str]) -> None:
        with httpx.Client(timeout=60) as http:
            while not self.stop.is_set():
                try:
                    response = http.get(
                        f"{self.url}/Observation?patient=Patient/{patient_id}", headers=headers
                    )
                except httpx.TransportError as exc:
                    self._failed(f"read: {exc!r}")
                    time.sleep(0.1)
                    continue
                if response.status_code == 200:
                    self._answered()
                else:
                    self._failed(f"read {response.status_code}: {response.text[:200]}")
                    time.sleep(0.1)

    def _answered(self) -> None:
        self.answered.append(time.monotonic())

    def _failed(self, what: str) -> None:
        self.failed.append(what)
        self.failures.append(time.monotonic())

    def refused(self) -> list[str]:
        """Failures other than a transient 503 or a dropped connection (those are retried)."""
        transient = ("write 503", "read 503", "write:", "read:", "register:")
        return [f for f in self.failed if not f.startswith(transient)]


def _observation(patient_id: str, value: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "29463-7"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "valueQuantity": {"value": value, "unit": "kg"},
    }


def _headers(key_dir: Path, **claims: str) -> dict[str, str]:
    claims = {"sub": f"{claims['kind']}:{uuid.uuid4().hex[:8]}", **claims}
    token = issue_token(Settings(key_dir=key_dir), claims, now=datetime.now(UTC), lifetime=timedelta(hours=4))
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}


@pytest.fixture
def served(cluster: Cluster, tmp_path: Path) -> Iterator[tuple[ForkedServer, Load]]:
    """A server on a fresh schema of the private cluster, its records opened, no load yet."""
    schema = f"ops_{uuid.uuid4().hex[:12]}"
    cluster.sql(f'CREATE SCHEMA "{schema}"')
    url = f"{cluster.url}?options=-csearch_path%3D{schema}"
    server = ForkedServer(serve_env(tmp_path, free_port(), url), tmp_path / "server.log")
    server.env["CARNET_CHECKPOINT_SECONDS"] = "1"
    server.env["CARNET_API_RATE_PER_MINUTE"] = "6000000"  # the load is one caller per thread
    server.env["CARNET_API_BURST"] = "100000"
    server.start()
    key_dir = Path(server.env["CARNET_KEY_DIR"])
    writers = []
    with httpx.Client(timeout=60) as http:
        for _ in range(WRITERS):
            value = uuid.uuid4().hex
            headers = _headers(key_dir, kind="patient", identifier=f"{INS}|{value}")
            patient = {"resourceType": "Patient", "identifier": [{"system": INS, "value": value}]}
            response = http.post(f"{server.url}/Patient", json=patient, headers=headers)
            assert response.status_code == 201, response.text
            patient_id = response.json()["id"]
            writers.append((patient_id, _headers(key_dir, kind="patient", patient=patient_id)))
    try:
        yield server, Load(url=server.url, writers=writers, env=server.env, schema=schema)
    finally:
        server.stop()
        cluster.sql(f'DROP SCHEMA "{schema}" CASCADE')


def _check_nothing_lost(cluster: Cluster, server: ForkedServer, load: Load) -> None:
    """Every acknowledged write reads back; no prepared transaction is left; the journal verifies."""
    with httpx.Client(timeout=60) as http:
        for observation_id, (patient_id, value) in load.acked.items():
            headers = dict(load.writers)[patient_id]
            response = http.get(f"{server.url}/Observation/{observation_id}", headers=headers)
            assert response.status_code == 200, f"acknowledged {observation_id} lost: {response.text}"
            assert response.json()["valueQuantity"]["value"] == value
    cluster.sql("SELECT recover_prepared_transactions()")
    for port in (cluster.port, cluster.port + 1, cluster.port + 2):
        left = cluster.sql("SELECT gid FROM pg_prepared_xacts", port)
        assert left == [], f"prepared transactions left on {port}: {left}"
    _check_journal_matches(server)
    deadline = time.monotonic() + 60
    while True:  # the server signs a checkpoint every second once the journal grew
        result = CliRunner().invoke(carnet_cli, ["audit", "verify"], env=server.env)
        if result.exit_code == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert result.exit_code == 0, result.output


def _check_moves_left_no_copy(cluster: Cluster, server: ForkedServer, load: Load) -> None:
    """After shard moves: one placement per shard, no copy left on a node, no key stored twice, every log contiguous.

    A move copies a shard to its new node by logical replication, switches the metadata, then drops
    the old copy (deferred: ``citus_cleanup_orphaned_resources``). A copy left behind, a row replayed
    twice, or a journal append racing the switch would show here.
    """
    cleaner = create_engine(
        f"postgresql+psycopg://postgres@127.0.0.1:{cluster.port}/test", isolation_level="AUTOCOMMIT"
    )
    try:
        with cleaner.connect() as connection:  # a procedure that commits as it goes
            connection.execute(text("CALL citus_cleanup_orphaned_resources()"))
    finally:
        cleaner.dispose()
    assert cluster.sql("SELECT count(*) FROM pg_dist_cleanup")[0][0] == 0, "a moved shard's old copy remains"
    doubled = cluster.sql(
        "SELECT shardid FROM pg_dist_placement JOIN pg_dist_shard USING (shardid) "
        "JOIN pg_dist_partition USING (logicalrelid) WHERE partmethod = 'h' "
        "GROUP BY shardid HAVING count(*) > 1"
    )  # a reference table has a placement on every node; a distributed shard one
    assert doubled == [], f"distributed shards with two placements: {doubled}"
    engine = create_engine(
        server.env["CARNET_DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
    )
    try:
        with engine.connect() as connection:
            schema = connection.execute(text("SELECT current_schema()")).scalar_one()
            for table in metadata.sorted_tables:
                key = list(table.primary_key.columns)
                if not key:
                    continue  # search_tokens: no key (a resource's rows are replaced whole)
                twice = connection.execute(
                    select(*key).group_by(*key).having(func.count() > 1).limit(1)
                ).first()
                assert twice is None, f"{table.name}: key {tuple(twice)} stored twice"
            logs = connection.execute(
                text(
                    "SELECT h.shard, h.size, count(e.seq), coalesce(min(e.seq), 0), coalesce(max(e.seq), -1) "
                    "FROM journal_heads h LEFT JOIN journal_entries e ON e.log_key = h.log_key AND e.shard = h.shard "
                    "GROUP BY h.shard, h.size"
                )
            ).all()
            observations = connection.execute(
                text("SELECT count(*) FROM resources WHERE resource_type = 'Observation'")
            ).scalar_one()
            # Each resource's location: by its id's log key (resource_places), a Patient none.
            located = connection.execute(
                text(
                    "SELECT (SELECT count(*) FROM resource_locations) + (SELECT count(*) FROM resource_places), "
                    "(SELECT count(*) FROM resources WHERE resource_type <> 'Patient')"
                )
            ).one()
    finally:
        engine.dispose()
    for shard, size, count, first, last in logs:
        assert (count, first, last) == (size, 0, size - 1), (
            f"log {shard}: {count} entries {first}..{last}, head {size}"
        )
    assert located[0] == located[1], f"{located[0]} locations for {located[1]} resources"
    # A 503 wrote nothing; a write whose answer was lost (a dropped connection) may have been stored.
    lost_answers = sum(1 for f in load.failed if f.startswith("write:"))
    assert len(load.acked) <= observations <= len(load.acked) + lost_answers, (
        f"{observations} Observations stored for {len(load.acked)} acknowledged ({lost_answers} answers lost)"
    )
    # On each worker, every shard table of the schema is a placement the coordinator knows there.
    for node in cluster.sql(
        "SELECT nodeport, groupid FROM pg_dist_node WHERE noderole = 'primary' AND groupid > 0"
    ):
        port, group = int(node[0]), int(node[1])
        # Citus hides shard tables from catalog queries on a worker unless asked not to.
        shown = create_engine(
            f"postgresql+psycopg://postgres@127.0.0.1:{port}/test"
            "?options=-ccitus.override_table_visibility%3Doff"
        )
        try:
            with shown.connect() as connection:
                names = connection.execute(
                    text(
                        "SELECT relname FROM pg_class WHERE relkind = 'r' "
                        "AND relnamespace = CAST(:s AS regnamespace)"
                    ),
                    {"s": schema},
                ).scalars()
                physical = {int(n.rsplit("_", 1)[1]) for n in names if n.rsplit("_", 1)[-1].isdigit()}
        finally:
            shown.dispose()
        known = {
            int(row[0])
            for row in cluster.sql(
                "SELECT p.shardid FROM pg_dist_placement p JOIN pg_dist_shard s USING (shardid) "
                "JOIN pg_class c ON c.oid = s.logicalrelid "
                "WHERE p.groupid = :g AND c.relnamespace = CAST(:s AS regnamespace)",
                g=group,
                s=schema,
            )
        }
        assert physical == known, f"worker {port}: stray shard copies {sorted(physical - known)}"


def _check_journal_matches(server: ForkedServer) -> None:
    """Each stored Observation has its journalled create and its location, and each journalled create its Observation."""
    settings = Settings(
        data_dir=Path(server.env["CARNET_DATA_DIR"]),
        key_dir=Path(server.env["CARNET_KEY_DIR"]),
        database_url=server.env["CARNET_DATABASE_URL"],
    )
    services = build_services(settings, migrate=False)
    try:
        with services.store.engine.connect() as connection:
            stored = {
                (str(p), f"Observation/{i}/_history/{v}")
                for p, i, v in connection.execute(
                    text(
                        "SELECT patient_id, resource_id, version_id FROM resource_versions "
                        "WHERE resource_type = 'Observation'"
                    )
                )
            }
            # Each resource has its location (a Patient none), each location its resource.
            located = {
                tuple(row)
                for table in ("resource_locations", "resource_places")
                for row in connection.execute(
                    text(f"SELECT patient_id, resource_type, resource_id FROM {table}")  # noqa: S608
                )
            }
            current = set(
                connection.execute(
                    text(
                        "SELECT patient_id, resource_type, resource_id FROM resources "
                        "WHERE resource_type <> 'Patient'"
                    )
                )
            )
        assert located == current, (
            f"half-applied creates: {len(current - located)} resources without location, "
            f"{len(located - current)} locations without resource"
        )
        journalled = set()
        for patient_id in {p for p, _ in stored}:
            for entry in journal_entries(services, patient_id):
                if entry.action == "create" and entry.resource_type == "Observation":
                    journalled |= {(patient_id, target) for target in entry.targets}
    finally:
        services.store.engine.dispose()
    assert stored, "no Observation was stored: the load wrote nothing"
    assert stored == journalled, (
        f"half-applied: {len(stored - journalled)} stored without entry, "
        f"{len(journalled - stored)} journalled without resource"
    )


def test_add_a_worker_and_rebalance_under_load(cluster: Cluster, served: tuple[ForkedServer, Load]) -> None:
    """A third worker joins and shards move to it while writers and readers run: nothing lost, short pauses."""
    server, load = served
    third = cluster.port + 3
    cluster.script("add-worker", str(third))
    load.start()
    time.sleep(3)
    cluster.sql("SELECT citus_add_node('127.0.0.1', :p)", p=third)
    started = time.monotonic()
    cluster.sql("SELECT citus_rebalance_start(shard_transfer_mode => 'auto')")
    cluster.sql("SELECT citus_rebalance_wait()")
    moved_in = time.monotonic() - started
    time.sleep(2)
    load.finish()
    placements = cluster.sql(
        "SELECT count(*) FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid) WHERE n.nodeport = :p",
        p=third,
    )
    assert placements[0][0] > 0, "no shard moved to the new worker"
    assert load.refused() == [], load.refused()[:5]
    assert load.acked, "no write was acknowledged during the rebalance"
    pause = load.longest_wait()
    print(
        f"rebalance: {moved_in:.1f} s, {len(load.acked)} writes acknowledged, "
        f"{len(load.failed)} transient failures retried, longest wait {pause:.2f} s"
    )
    assert pause <= PAUSE_SECONDS
    _check_nothing_lost(cluster, server, load)
    _check_moves_left_no_copy(cluster, server, load)
    # Leave the cluster as the other tests expect it: two workers.
    cluster.sql("SELECT citus_drain_node('127.0.0.1', :p)", p=third)
    cluster.sql("SELECT citus_remove_node('127.0.0.1', :p)", p=third)


@pytest.mark.parametrize("node", ["worker", "coordinator"])
def test_kill9_of_a_node_during_writes_leaves_nothing_half_applied(
    cluster: Cluster, served: tuple[ForkedServer, Load], node: str
) -> None:
    """kill -9 of a worker, or of the coordinator, during writes: recovery leaves no half write.

    Beside the records' writers a registrar adds feeds (a reference table: every node, two-phase
    commit); afterwards every node holds the same feeds, each acknowledged one among them.

    Since migration 0023 each of these writes commits on its record's worker in one phase (before,
    a create's location was on the other worker half the time: a two-phase commit to recover).
    """
    server, load = served
    load.start(readers=1, registrar=True)
    deadline = time.monotonic() + 60
    while len(load.acked) < 20 or not load.registered:
        assert time.monotonic() < deadline, f"no writes acknowledged: {load.failed[:3]}"
        time.sleep(0.1)
    cluster.kill9(cluster.port + 1 if node == "worker" else cluster.port)
    at_restart = len(load.acked)
    deadline = time.monotonic() + 60
    while len(load.acked) < at_restart + 20:  # writes go on against the restarted node
        assert time.monotonic() < deadline, f"no write acknowledged after the restart: {load.failed[-3:]}"
        time.sleep(0.1)
    load.finish()
    _check_nothing_lost(cluster, server, load)
    _check_registrations_everywhere_or_nowhere(cluster, load)


def _check_registrations_everywhere_or_nowhere(cluster: Cluster, load: Load) -> None:
    """Every node's copy of the reference table ``feeds`` holds the same feeds, acknowledged ones included."""
    assert load.registered, f"no registration acknowledged: {load.failed[-3:]}"
    listed = "SELECT coalesce(string_agg(feed_id, ',' ORDER BY feed_id), '') FROM %s"
    rows = cluster.sql(
        "SELECT nodeport, result FROM run_command_on_placements(:table, :command)",
        table=f'"{load.schema}".feeds',
        command=listed,
    )
    copies = {port: set(filter(None, result.split(","))) for port, result in rows}
    assert len(copies) >= 2, f"the reference table is on one node only: {rows}"
    first = next(iter(copies.values()))
    assert all(copy == first for copy in copies.values()), f"the nodes' copies differ: {copies}"
    missing = set(load.registered) - first
    assert not missing, f"acknowledged registrations lost: {sorted(missing)}"


PSQL = ("psql", "-X", "-h", "127.0.0.1", "-U", "postgres", "-d", "test")


def _as_postgres(command: str) -> None:
    subprocess.run(["su", "postgres", "-s", "/bin/bash", "-c", command], check=True, capture_output=True)


def _promoted(port: int) -> bool:
    engine = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/test")
    try:
        with engine.connect() as connection:
            return not connection.execute(text("SELECT pg_is_in_recovery()")).scalar_one()
    except OperationalError:  # still starting
        return False
    finally:
        engine.dispose()


def test_restore_every_node_to_a_restore_point(tmp_path: Path) -> None:
    """Base backups + WAL archives restored to a ``carnet db restore-point``: what came before is back, what came after is not."""
    if not VENDOR.is_dir() and not INSTALLED.exists():
        pytest.skip(f"{VENDOR} is absent and Citus is not installed")
    root = Path(tempfile.mkdtemp(prefix="carnet-citus-pitr-"))
    shutil.chown(root, "postgres")
    port = 5490
    ports = (port, port + 1, port + 2)
    bin_dir = "/usr/lib/postgresql/15/bin"
    made = Cluster(
        root=root / "nodes",
        port=port,
        env={**os.environ, "CITUS_DIR": str(root / "nodes"), "CITUS_PORT": str(port)},
    )
    try:
        made.script("start")
        for node in ports:  # continuous archiving on every node (a restart applies archive_mode)
            archive = root / "archive" / f"n{node}"
            _as_postgres(f"mkdir -p '{archive}'")
            for setting in ("archive_mode = on", f"archive_command = 'cp %p {archive}/%f'"):
                subprocess.run(
                    [*PSQL, "-p", str(node), "-c", f"ALTER SYSTEM SET {setting}"],
                    check=True,
                    capture_output=True,
                )
        made.script("stop")
        made.script("start")
        settings = Settings(data_dir=tmp_path / "data", key_dir=tmp_path / "keys", database_url=made.url)
        services = build_services(settings)
        for node in ports:
            _as_postgres(
                f"{bin_dir}/pg_basebackup -h 127.0.0.1 -p {node} -U postgres -D '{root}/base/n{node}' -X stream"
            )
        key_dir = settings.key_dir
        env = {
            "CARNET_DATA_DIR": str(settings.data_dir),
            "CARNET_KEY_DIR": str(settings.key_dir),
            "CARNET_DATABASE_URL": made.url,
        }
        with TestClient(create_app(settings, services), base_url="http://testserver") as client:
            before, after = [], []
            for kept in (True, False):
                for _ in range(3):
                    value = uuid.uuid4().hex
                    headers = _headers(key_dir, kind="patient", identifier=f"{INS}|{value}")
                    patient = {"resourceType": "Patient", "identifier": [{"system": INS, "value": value}]}
                    created = client.post("/fhir/Patient", json=patient, headers=headers)
                    assert created.status_code == 201, created.text
                    patient_id = created.json()["id"]
                    reader = _headers(key_dir, kind="patient", patient=patient_id)
                    made_obs = client.post(
                        "/fhir/Observation", json=_observation(patient_id, 70), headers=reader
                    )
                    assert made_obs.status_code == 201, made_obs.text
                    (before if kept else after).append((f"Observation/{made_obs.json()['id']}", reader))
                if kept:
                    services.journal.issue_checkpoints()  # every log: on Citus one per record shard
                    marked = CliRunner().invoke(carnet_cli, ["db", "restore-point", "drill"], env=env)
                    assert marked.exit_code == 0, marked.output
            contents = {path: client.get(f"/fhir/{path}", headers=h).content for path, h in before}
        services.store.engine.dispose()
        for node in ports:  # close the WAL segment holding the restore point so it is archived
            made.sql("SELECT pg_switch_wal()", node)
        time.sleep(3)
        made.script("stop")
        for node in ports:
            data = root / "nodes" / f"n{node}"
            shutil.rmtree(data)
            shutil.copytree(root / "base" / f"n{node}", data)
            with (data / "postgresql.auto.conf").open("a") as conf:
                conf.write(
                    f"restore_command = 'cp {root}/archive/n{node}/%f %p'\n"
                    "recovery_target_name = 'drill'\nrecovery_target_action = 'promote'\n"
                )
            (data / "recovery.signal").touch()
            subprocess.run(["chown", "-R", "postgres", str(data)], check=True)
            _as_postgres(f"{bin_dir}/pg_ctl -D '{data}' -l '{root}/nodes/n{node}.log' start")
        deadline = time.monotonic() + 120
        while not all(_promoted(node) for node in ports):
            assert time.monotonic() < deadline, "the nodes did not finish recovery"
            time.sleep(0.5)
        restored = build_services(settings)
        try:
            with TestClient(create_app(settings, restored), base_url="http://testserver") as client:
                for path, headers in before:
                    response = client.get(f"/fhir/{path}", headers=headers)
                    assert (response.status_code, response.content) == (200, contents[path]), path
                for path, headers in after:
                    assert client.get(f"/fhir/{path}", headers=headers).status_code in (403, 404), path
            verified = CliRunner().invoke(carnet_cli, ["audit", "verify", "--offline"], env=env)
            assert verified.exit_code == 0, verified.output
        finally:
            restored.store.engine.dispose()
    finally:
        made.script("destroy")
        shutil.rmtree(root, ignore_errors=True)
