"""Carnet on Citus with 1 and 2 workers beside plain PostgreSQL: reads by bare id, writes, two-phase commits.

Prints one Markdown table, the columns side by side (docs/scale.md). Usage::

    .venv/bin/python bench/citus.py [--seconds 8] [--writes 60]

It starts a private Citus cluster with ``.ci/citus-cluster.sh`` (a coordinator and two workers on
ports 5460-5462, 32 shards per table, ``fsync`` and ``synchronous_commit`` on, the coordinator's
automatic 2PC recovery off so that ``pg_dist_transaction`` keeps a row per two-phase commit) in a
temporary directory, runs once with the second worker removed and once with it added, then
destroys the cluster. The plain PostgreSQL column uses ``CARNET_TEST_PG_URL`` when it is set.

For each setup, on a fresh schema and ``carnet serve --workers 2``:

- ``wrk`` single reads by bare id (``GET /fhir/Observation/<id>``) and single creates, with the
  server's CPU per request and, on the private cluster, every PostgreSQL process's CPU per request;
- the record lookup alone, in SQL: ``resource_locations`` or, for an id carrying its log key
  (Citus), ``resource_places`` (one shard) against the former probe of
  every shard of ``resources`` (p50 of 200 each);
- new records, then creates, reads, updates and deletes sent one at a time: how many committed
  with a two-phase commit (a new row in
  ``pg_dist_transaction``) and the p50 latency of those that did and those that did not.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import load
from run import INS, headers_for, log, open_record, server
from sqlalchemy import Engine, create_engine, text

from carnet.api.app import build_services
from carnet.domain import fhirjson
from carnet.settings import Settings

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "citus-cluster.sh"
PORT = 5460
NODES = (PORT, PORT + 1, PORT + 2)
TICKS = os.sysconf("SC_CLK_TCK")


def _psql(port: int, statement: str) -> None:
    subprocess.run(
        [
            "psql",
            "-X",
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "postgres",
            "-d",
            "test",
            "-c",
            statement,
        ],
        check=True,
        capture_output=True,
    )


@contextmanager
def private_cluster() -> Iterator[tuple[str, Path]]:
    """A three-node cluster with durable commits; yield the coordinator URL and its data directory."""
    root = Path(tempfile.mkdtemp(prefix="carnet-citus-bench-"))
    shutil.chown(root, "postgres")
    env = {**os.environ, "CITUS_DIR": str(root / "nodes"), "CITUS_PORT": str(PORT), "CITUS_SHARDS": "32"}

    def script(*args: str) -> None:
        subprocess.run(["bash", str(SCRIPT), *args], env=env, check=True, capture_output=True)

    try:
        script("start")
        for port in NODES:
            for setting in ("fsync = on", "synchronous_commit = on", "full_page_writes = on"):
                _psql(port, f"ALTER SYSTEM SET {setting}")
        _psql(PORT, "ALTER SYSTEM SET citus.recover_2pc_interval = -1")
        script("stop")
        script("start")
        yield f"postgresql://postgres@127.0.0.1:{PORT}/test", root / "nodes"
    finally:
        script("destroy")
        shutil.rmtree(root, ignore_errors=True)


def cluster_cpu(nodes_dir: Path | None) -> float:
    """CPU seconds used so far by every PostgreSQL process of the private cluster (0 for the shared server)."""
    if nodes_dir is None:
        return 0.0
    total = 0
    for pid_file in nodes_dir.glob("n*/postmaster.pid"):
        postmaster = int(pid_file.read_text().split()[0])
        for pid in load.worker_pids(postmaster):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
            if pid == postmaster:  # its exited children (backends that closed)
                total += int(fields[13]) + int(fields[14])
    return total / TICKS


@contextmanager
def schema_on(base: str) -> Iterator[Settings]:
    """A fresh schema on ``base``; yield Carnet settings on it."""
    with tempfile.TemporaryDirectory() as tmp:
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        admin = create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1))
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = f"{base}?options=-csearch_path%3D{schema}"
        try:
            yield Settings(data_dir=Path(tmp) / "data", key_dir=Path(tmp) / "keys", database_url=url)
        finally:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


def _observation(patient_id: str, value: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2026-01-02",
        "valueQuantity": {"value": value, "unit": "kg"},
    }


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f} ms" if values else "—"


def _two_phase(engine: Engine, citus: bool) -> int:
    if not citus:
        return 0
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM pg_dist_transaction")).scalar_one())


def one_by_one(
    client: httpx.Client, settings: Settings, engine: Engine, citus: bool, writes: int
) -> dict[str, str]:
    """Creates, reads, updates then deletes, one at a time, each in a record of its own: 2PC share and p50 latencies.

    A read counts too: its journal entry is written in its transaction.
    """
    records = []
    opened: tuple[list[float], list[float]] = ([], [])
    for index in range(writes):
        nir = f"2{index:012d}"
        headers = headers_for(settings, kind="patient", identifier=f"{INS}|{nir}")
        body = {"resourceType": "Patient", "identifier": [{"system": INS, "value": nir}]}
        before = _two_phase(engine, citus)
        started = time.perf_counter()
        patient_id = client.post("/fhir/Patient", json=body, headers=headers).json()["id"]
        opened[int(_two_phase(engine, citus) > before)].append(time.perf_counter() - started)
        records.append((patient_id, headers_for(settings, kind="patient", patient=patient_id)))
    found: dict[str, str] = {}
    share = len(opened[1]) / writes
    found["open"] = f"{share:.0%} with 2PC; p50 {_ms(opened[0])} without, {_ms(opened[1])} with"
    made: list[tuple[str, str, dict[str, str]]] = []
    for kind in ("create", "read", "update", "delete"):
        single: list[float] = []
        double: list[float] = []
        for index, (patient_id, headers) in enumerate(records):
            before = _two_phase(engine, citus)
            started = time.perf_counter()
            if kind == "create":
                response = client.post(
                    "/fhir/Observation", json=_observation(patient_id, 70), headers=headers
                )
            elif kind == "read":
                response = client.get(f"/fhir/Observation/{made[index][0]}", headers=headers)
            elif kind == "update":
                resource_id = made[index][0]
                changed = {**_observation(patient_id, 71), "id": resource_id}
                response = client.put(f"/fhir/Observation/{resource_id}", json=changed, headers=headers)
            else:
                response = client.delete(f"/fhir/Observation/{made[index][0]}", headers=headers)
            elapsed = time.perf_counter() - started
            if response.status_code not in (200, 201, 204):
                raise SystemExit(f"{kind} failed: {response.status_code} {response.text[:300]}")
            if kind == "create":
                made.append((response.json()["id"], patient_id, headers))
            (double if _two_phase(engine, citus) > before else single).append(elapsed)
        share = len(double) / (len(single) + len(double))
        found[kind] = f"{share:.0%} with 2PC; p50 {_ms(single)} without, {_ms(double)} with"
    return found


def lookups(engine: Engine, ids: list[str]) -> str:
    """The record lookup alone: the locations (one shard) against every shard of ``resources``."""
    timed: dict[str, list[float]] = {"located": [], "fan-out": []}
    # An id "<log key>.<uuid>" (Citus, migration 0023) is located by its key, in its record's shard.
    located = (
        "SELECT patient_id FROM resource_locations WHERE resource_id = :i AND resource_type = 'Observation'"
    )
    placed = (
        "SELECT patient_id FROM resource_places WHERE log_key = :k AND resource_id = :i "
        "AND resource_type = 'Observation'"
    )
    fan_out = "SELECT patient_id FROM resources WHERE resource_type = 'Observation' AND resource_id = :i"
    with engine.connect() as connection:
        for _ in range(200 // max(1, len(ids)) + 1):
            for resource_id in ids:
                key, dot, _ = resource_id.partition(".")
                statements = {"located": placed if dot else located, "fan-out": fan_out}
                for name, statement in statements.items():
                    started = time.perf_counter()
                    connection.execute(text(statement), {"i": resource_id, "k": key}).first()
                    timed[name].append(time.perf_counter() - started)
    return f"{_ms(timed['located'])} (every shard of resources: {_ms(timed['fan-out'])})"


def run(name: str, base: str, nodes_dir: Path | None, args: argparse.Namespace) -> dict[str, str]:
    """Every measure on one setup."""
    citus = nodes_dir is not None
    found: dict[str, str] = {}
    with schema_on(base) as settings:
        services = build_services(settings)
        engine = services.store.engine
        with server(settings, workers=2) as (client, pid):
            log(f"[{name}] writes one at a time")
            found.update(one_by_one(client, settings, engine, citus, args.writes))
            patient_id, headers = open_record(client, settings, "1840312345678")
            created = client.post("/fhir/Observation", json=_observation(patient_id, 72), headers=headers)
            observation_id = created.json()["id"]
            with engine.connect() as connection:
                ids = [
                    str(r[0])
                    for r in connection.execute(
                        text(
                            "SELECT resource_id FROM resource_locations WHERE resource_type = 'Observation' "
                            "UNION ALL SELECT resource_id FROM resource_places WHERE resource_type = 'Observation'"
                        )
                    )
                ]
            found["lookup"] = lookups(engine, ids[:50])
            base_url = str(client.base_url).rstrip("/")
            for label, method, url, body in (
                ("read", "GET", f"{base_url}/fhir/Observation/{observation_id}", None),
                (
                    "create",
                    "POST",
                    f"{base_url}/fhir/Observation",
                    fhirjson.dumps(_observation(patient_id, 73)),
                ),
            ):
                log(f"[{name}] wrk {label}, {args.seconds} s")
                cpu = cluster_cpu(nodes_dir)
                result = load.wrk(
                    url,
                    headers=headers if method == "POST" else {"Authorization": headers["Authorization"]},
                    seconds=args.seconds,
                    connections=8,
                    server_pid=pid,
                    method=method,
                    body=body,
                    timeout=30,  # a loaded shared machine: slow answers are measured, not errors
                )
                database = (cluster_cpu(nodes_dir) - cpu) * 1000 / max(1, result.requests)
                found[f"wrk {label}"] = (
                    f"{result.requests_per_second:,.0f} requests/s (p50 {result.p50_ms:.0f} ms; "
                    f"server CPU {result.server_cpu_ms_per_request:.1f} ms"
                    + (f", database CPU {database:.1f} ms" if citus else "")
                    + " per request)"
                )
        engine.dispose()
    if citus:
        with create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1)).connect() as connection:
            connection.execute(text("SELECT recover_prepared_transactions()"))
    for key, value in found.items():
        log(f"  {key}: {value}")
    return found


ROWS = {
    "wrk read": "single read by bare id, `wrk` 8 connections",
    "lookup": "finding the record of a resource id, SQL alone (p50)",
    "wrk create": "single create, `wrk` 8 connections",
    "open": "new records (a Patient each) one at a time",
    "create": "creates one at a time, each in its own record",
    "read": "reads by bare id one at a time (with their journal entry)",
    "update": "updates one at a time",
    "delete": "deletes one at a time",
}


def main() -> None:
    """Run the three setups and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8, help="each wrk run")
    parser.add_argument("--writes", type=int, default=60, help="creates (and updates) sent one at a time")
    args = parser.parse_args()
    load.wrk_path()
    started = time.time()
    own = os.times()
    print(
        f"Machine: {os.cpu_count()} cores; load average at start {' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    columns: dict[str, dict[str, str]] = {}
    plain = os.environ.get("CARNET_TEST_PG_URL")
    if plain:
        columns["PostgreSQL 15"] = run("postgres", plain, None, args)
    else:
        log("CARNET_TEST_PG_URL is not set: no plain PostgreSQL column")
    with private_cluster() as (url, nodes_dir):
        _psql(PORT, f"SELECT citus_remove_node('127.0.0.1', {PORT + 2})")
        columns["Citus, 1 worker"] = run("citus-1", url, nodes_dir, args)
        _psql(PORT, f"SELECT citus_add_node('127.0.0.1', {PORT + 2})")
        columns["Citus, 2 workers"] = run("citus-2", url, nodes_dir, args)
    print("\n| measure | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for key, label in ROWS.items():
        print(f"| {label} | " + " | ".join(column.get(key, "—") for column in columns.values()) + " |")
    spent = os.times()
    print(
        f"\nload average at the end {' '.join(f'{v:.2f}' for v in os.getloadavg())}; "
        f"{time.time() - started:.0f} s wall, this process {spent.user - own.user + spent.system - own.system:.0f} s CPU"
    )


if __name__ == "__main__":
    main()
