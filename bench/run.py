"""Carnet benchmarks: ingest, document submission, record opening, memory, and the raw floor.

Prints numbers (a Markdown table per backend); they are copied into docs/performance.md.
Sealing is always on. Usage::

    .venv/bin/python bench/run.py                 # SQLite, and PostgreSQL if CARNET_TEST_PG_URL is set
    .venv/bin/python bench/run.py --quick         # small sizes, a minute or two
    .venv/bin/python bench/run.py --cache /work/bench-cache --backend sqlite   # full size, store kept

``--cache DIR`` keeps the filled store (10,000 small records and the 500-resource one; 1,000 with
``--quick``) and measures every run on a fresh copy of it, since filling it is what takes long.
``--build-cache`` only builds it. SQLite: ``DIR/sqlite-<N>/`` holds the database and key directory,
copied per run. PostgreSQL: the store is the database ``carnet_bench_<N>`` on the server of
``CARNET_TEST_PG_URL`` (``DIR/postgres-<N>/`` holds its key directory); each run measures on
``CREATE DATABASE … TEMPLATE carnet_bench_<N>``, dropped afterwards. To move the PostgreSQL cache to
another server: ``pg_dump -Fc carnet_bench_10000 > DIR/postgres-10000/dump`` there
``createdb carnet_bench_10000 && pg_restore -d carnet_bench_10000 DIR/postgres-10000/dump``.
Without ``wrk`` (``apt-get install wrk``) the single read and create rows say "not measured".
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import load
from sqlalchemy import Column, LargeBinary, MetaData, String, Table, create_engine, insert, make_url, text

from carnet.api.app import Services, build_services
from carnet.api.auth import issue_token
from carnet.api.fhir import parse_entries
from carnet.domain import fhirjson
from carnet.domain.principal import ActorKind, Identifier, Principal
from carnet.settings import Settings
from carnet.synthetic import generate_population

INS = "urn:oid:1.2.250.1.213.1.4.10"
CLIENTS = 4  # concurrent HTTP clients for ingest and document submissions
WARM_UP = 8  # ITI-65 documents sent first, not counted (two per client)
SYNTHEA = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "external" / "synthea-fhir-r4-smart" / "bundles"
)


def log(message: str) -> None:
    """Progress on stderr (the results go to stdout)."""
    print(message, file=sys.stderr, flush=True)


@contextmanager
def backend(name: str) -> Iterator[Settings]:
    """A fresh store on SQLite (temp dir) or PostgreSQL (a new schema)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if name == "sqlite":
            yield Settings(data_dir=root / "data", key_dir=root / "keys")
            return
        base = os.environ["CARNET_TEST_PG_URL"]
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        admin = create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1))
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        # The application name finds the store's backends (``load.backend_pids``) for their CPU.
        url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}&application_name={schema}"
        try:
            yield Settings(data_dir=root / "data", key_dir=root / "keys", database_url=url)
        finally:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


def pg_url(database: str) -> str:
    """``CARNET_TEST_PG_URL`` pointing at another database of the same server."""
    url = make_url(os.environ["CARNET_TEST_PG_URL"]).set(database=database)
    return url.render_as_string(hide_password=False)


def pg_admin() -> Any:
    """An autocommit engine on the test database (CREATE/DROP DATABASE cannot run in a transaction)."""
    base = os.environ["CARNET_TEST_PG_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
    return create_engine(base, isolation_level="AUTOCOMMIT")


def analyse(settings: Settings) -> None:
    """``VACUUM ANALYZE`` the store's tables on PostgreSQL (nothing on SQLite).

    The test server runs with ``autovacuum = off``: without statistics the planner takes a
    record's token search for one row and re-reads every matching token per resource (55 ms at
    10,000 patients instead of ~1 ms). A production server's autovacuum does this by itself.
    """
    url = settings.effective_database_url
    if not url.startswith("postgresql"):
        return
    engine = create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    with engine.connect() as connection:
        tables = connection.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        ).scalars()
        for table in list(tables):
            connection.execute(text(f'VACUUM ANALYZE "{table}"'))
    engine.dispose()


def cache_dir(root: Path, name: str, store: int) -> Path:
    """Where the cached store of ``store`` patients on backend ``name`` lives."""
    return root.expanduser().resolve() / f"{name}-{store}"


def cache_settings(name: str, directory: Path, store: int) -> Settings:
    """The settings of the cached store itself (built in place, never measured on)."""
    url = pg_url(f"carnet_bench_{store}") if name == "postgres" else ""
    return Settings(data_dir=directory / "data", key_dir=directory / "keys", database_url=url)


@contextmanager
def cached_backend(name: str, directory: Path, store: int) -> Iterator[Settings]:
    """A fresh copy of the cached store: files copied (SQLite), or a database from its template."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(directory / "keys", root / "keys")
        if name == "sqlite":
            shutil.copytree(directory / "data", root / "data")
            yield Settings(data_dir=root / "data", key_dir=root / "keys")
            return
        (root / "data").mkdir()
        copy = f"carnet_bench_run_{uuid.uuid4().hex[:12]}"
        admin = pg_admin()
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{copy}" TEMPLATE "carnet_bench_{store}"'))
        try:
            yield Settings(data_dir=root / "data", key_dir=root / "keys", database_url=pg_url(copy))
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{copy}" WITH (FORCE)'))
            admin.dispose()


def build_cache(name: str, directory: Path, store: int, workers: int) -> dict[str, Any]:
    """Fill the cached store once (kept); return what ``ready.json`` records about it."""
    ready = directory / "ready.json"
    if ready.exists():
        return dict(json.loads(ready.read_text()))
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    settings = cache_settings(name, directory, store)
    if name == "postgres":
        admin = pg_admin()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "carnet_bench_{store}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "carnet_bench_{store}"'))
        admin.dispose()
    log(f"[{name}] building the cached store of {store:,} patients in {directory}")
    started = time.perf_counter()
    services = build_services(settings)
    with server(settings, workers=workers) as (client, _):
        built = fill_store(client, settings, services, store, 0)
    services.store.engine.dispose()
    analyse(settings)  # the copies inherit the statistics
    info = {**dataclasses.asdict(built), "store": store, "seconds": round(time.perf_counter() - started)}
    ready.write_text(json.dumps(info, indent=1) + "\n")
    log(f"[{name}] cached store built in {info['seconds']} s")
    return info


@contextmanager
def server(settings: Settings, workers: int = 1) -> Iterator[tuple[httpx.Client, int]]:
    """Run ``carnet serve --workers N`` (uvicorn) on a free port; yield a keep-alive client and its pid.

    With N > 1 the pid is the workers' parent (see ``load.worker_pids``).
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **{
            k: v for k, v in os.environ.items() if not k.startswith("CARNET_") or k.startswith("CARNET_TEST_")
        },
        "CARNET_DATA_DIR": str(settings.data_dir),
        "CARNET_KEY_DIR": str(settings.key_dir),
        "CARNET_DATABASE_URL": settings.effective_database_url,
        "CARNET_PORT": str(port),
        "CARNET_BASE_URL": f"http://127.0.0.1:{port}/fhir",
        "CARNET_API_RATE_PER_MINUTE": "0",  # one principal sends thousands of requests a second here
    }
    log_path = Path(settings.data_dir) / "serve.log"
    log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with log_path.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "carnet", "serve", "--workers", str(workers)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
    try:
        deadline = time.monotonic() + 180
        # Every worker started, not only the first to answer: the connections of a load opened
        # while one worker alone accepts from the shared socket all stay with it.
        while log_path.read_text(errors="replace").count("Application startup complete") < workers:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start:\n{log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
        while True:
            try:
                if client.get("/fhir/metadata").status_code == 200:
                    break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        "the server did not start; run `carnet serve` by hand to see why"
                    ) from None
                time.sleep(0.2)
        yield client, process.pid
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=30)


def headers_for(settings: Settings, **claims: str) -> dict[str, str]:
    """Development-token headers."""
    token = issue_token(
        settings, {"sub": "bench", **claims}, now=datetime.now(UTC), lifetime=timedelta(hours=4)
    )
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}


def percentile(values: list[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` fall."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def synthea_payloads(directory: Path | None, patients: int) -> list[tuple[str, bytes]]:
    """Synthea transaction bundles (``--synthea``), or generated ones: ``(patient identifier, bytes)``."""
    out: list[tuple[str, bytes]] = []
    if directory is not None and directory.is_dir():
        for path in sorted(p for p in directory.iterdir() if p.suffix == ".json")[:patients]:
            raw = path.read_bytes()
            patient = next(
                e["resource"]
                for e in fhirjson.loads(raw)["entry"]
                if e["resource"]["resourceType"] == "Patient"
            )
            ident = next(i for i in patient["identifier"] if i.get("system") and i.get("value"))
            out.append((f"{ident['system']}|{ident['value']}", raw))
        return out
    for item in generate_population(patients, seed=7, documents_per_patient=2):
        out.append((f"{item.ins[0]}|{item.ins[1]}", item.to_json()))
    return out


def bench_ingest(
    client: httpx.Client, settings: Settings, payloads: list[tuple[str, bytes]]
) -> tuple[float, int]:
    """POST transaction bundles over HTTP from ``CLIENTS`` concurrent clients; return resources/s."""
    count = sum(len(fhirjson.loads(p)["entry"]) for _, p in payloads)
    jobs = [(headers_for(settings, kind="patient", identifier=ident), p) for ident, p in payloads]
    try:
        elapsed = load.post_all(str(client.base_url.join("/fhir")), jobs, CLIENTS)
    except load.AnswerError as failure:
        raise SystemExit(f"ingest failed: {failure}") from failure
    return count / elapsed, count


def raw_floor(settings: Settings, payloads: list[tuple[str, bytes]]) -> float:
    """Insert the same resources as plain JSON rows, no API, no sealing, one transaction per bundle."""
    engine = create_engine(
        settings.effective_database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    )
    table = Table(
        "raw_floor",
        MetaData(),
        Column("patient_id", String(64)),
        Column("resource_type", String(64)),
        Column("resource_id", String(64)),
        Column("body", LargeBinary),
    )
    table.metadata.create_all(engine)
    count = 0
    started = time.perf_counter()
    for _, payload in payloads:
        bundle = fhirjson.loads(payload)
        patient_id = str(uuid.uuid4())
        rows = [
            {
                "patient_id": patient_id,
                "resource_type": e["resource"]["resourceType"],
                "resource_id": str(uuid.uuid4()),
                "body": fhirjson.dumps(e["resource"]),
            }
            for e in bundle["entry"]
        ]
        with engine.begin() as connection:
            connection.execute(insert(table), rows)
        count += len(rows)
    elapsed = time.perf_counter() - started
    engine.dispose()
    return count / elapsed


def iti65_bundle(patient_id: str, document: dict[str, Any], binary: dict[str, Any]) -> bytes:
    """An ITI-65 provide-document bundle: SubmissionSet + DocumentReference + Binary."""
    doc_url = "urn:uuid:" + str(uuid.uuid4())
    bin_url = "urn:uuid:" + str(uuid.uuid4())
    document = {**document, "subject": {"reference": f"Patient/{patient_id}"}}
    document["content"] = [
        {**document["content"][0], "attachment": {**document["content"][0]["attachment"], "url": bin_url}}
    ]
    document.pop("author", None)
    document.pop("context", None)
    submission = {
        "resourceType": "List",
        "status": "current",
        "mode": "working",
        "subject": {"reference": f"Patient/{patient_id}"},
        "entry": [{"item": {"reference": doc_url}}],
    }
    return fhirjson.dumps(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": "urn:uuid:" + str(uuid.uuid4()),
                    "resource": submission,
                    "request": {"method": "POST", "url": "List"},
                },
                {
                    "fullUrl": doc_url,
                    "resource": document,
                    "request": {"method": "POST", "url": "DocumentReference"},
                },
                {"fullUrl": bin_url, "resource": binary, "request": {"method": "POST", "url": "Binary"}},
            ],
        }
    )


def open_record(client: httpx.Client, settings: Settings, nir: str) -> tuple[str, dict[str, str]]:
    """Create a bare record; return its id and the patient's headers."""
    headers = headers_for(settings, kind="patient", identifier=f"{INS}|{nir}")
    body = {"resourceType": "Patient", "identifier": [{"system": INS, "value": nir}]}
    patient_id = client.post("/fhir/Patient", json=body, headers=headers).json()["id"]
    return patient_id, headers_for(settings, kind="patient", patient=patient_id)


def heart_rate(patient_id: str) -> dict[str, Any]:
    """The Observation the single-create benches post (a heart rate in the patient's record)."""
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2024-05-01T10:00:00+02:00",
        "valueQuantity": {"value": 72, "unit": "/min"},
    }


def bench_documents(
    client: httpx.Client, settings: Settings, documents: int, pid: int
) -> tuple[float, float, float]:
    """ITI-65 submissions of documents holding a ~100 KB PDF inside a CDA.

    Returns documents/s, the server's CPU milliseconds per document, and the share of the
    machine's cores the clients (this process's threads) used meanwhile.
    """
    item = next(
        iter(generate_population(1, seed=11, documents_per_patient=documents + WARM_UP, pdf_bytes=100_000))
    )
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    entries = {e["fullUrl"]: e["resource"] for e in item.bundle["entry"]}
    for entry in entries.values():
        if entry["resourceType"] == "DocumentReference":
            binary = entries[entry["content"][0]["attachment"]["url"]]
            pairs.append((entry, binary))
    patient_id, headers = open_record(client, settings, "1850575000011")
    payloads = [iti65_bundle(patient_id, d, b) for d, b in pairs]
    size = statistics.mean(len(base64.b64decode(b["data"])) for _, b in pairs)
    # A few documents first, not counted: each worker meets the document path once (its
    # validation plans, the CDA and PDF readers), a cost of the process, not of the documents.
    warm_up, payloads = payloads[:WARM_UP], payloads[WARM_UP:]
    try:
        load.post_all(str(client.base_url.join("/fhir")), [(headers, p) for p in warm_up], CLIENTS)
    except load.AnswerError as failure:
        raise SystemExit(f"ITI-65 failed: {failure}") from failure
    log(f"  {len(payloads)} documents of {size / 1000:.0f} KB on average")
    pids = load.worker_pids(pid)
    before, own = load.cpu_seconds(pids), time.process_time()
    try:
        elapsed = load.post_all(str(client.base_url.join("/fhir")), [(headers, p) for p in payloads], CLIENTS)
    except load.AnswerError as failure:
        raise SystemExit(f"ITI-65 failed: {failure}") from failure
    server_ms = 1000 * (load.cpu_seconds(pids) - before) / len(payloads)
    client_share = (time.process_time() - own) / elapsed / (os.cpu_count() or 1)
    return len(payloads) / elapsed, server_ms, client_share


def fill(services: Services, patients: int, progress: Callable[[int], None], offset: int = 0) -> None:
    """Add small records (a Patient and 10 Observations each) through the service layer."""
    for index in range(patients):
        nir = f"1{offset + index:012d}"
        principal = Principal(
            kind=ActorKind.PATIENT, subject=nir, identifier=Identifier(system=INS, value=nir)
        )
        entries = [
            {
                "fullUrl": "urn:uuid:p",
                "resource": {"resourceType": "Patient", "identifier": [{"system": INS, "value": nir}]},
                "request": {"method": "POST", "url": "Patient"},
            }
        ]
        for day in range(10):
            entries.append(
                {
                    "resource": {
                        "resourceType": "Observation",
                        "status": "final",
                        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
                        "subject": {"reference": "urn:uuid:p"},
                        "effectiveDateTime": f"2024-01-{day + 1:02d}",
                        "valueQuantity": {"value": 70 + day, "unit": "kg"},
                    },
                    "request": {"method": "POST", "url": "Observation"},
                }
            )
        services.records.records(principal).transaction(parse_entries({"entry": entries}))
        if index % 500 == 499:
            progress(index + 1)


SEARCHES = {
    "ITI-67 DocumentReference?status=current": "/fhir/DocumentReference?patient={p}&status=current",
    "Observation?code": "/fhir/Observation?patient={p}&code=http://loinc.org|2339-0&_count=50",
    "Observation?date=ge": "/fhir/Observation?patient={p}&date=ge2023-06-01&_count=50",
    "Condition (all)": "/fhir/Condition?patient={p}",
}


@dataclasses.dataclass
class Filled:
    """A store filled to N patients, one of whom has a 500-resource record."""

    patient_id: str
    observation_id: str
    resources: int
    fill_rate: float


@dataclasses.dataclass
class Opened:
    """A 500-resource record in a filled store, and what reading it measured."""

    patient_id: str
    headers: dict[str, str]
    observation_id: str
    resources: int
    fill_rate: float
    everything: list[float]
    searches: dict[str, list[float]]
    #: Server CPU milliseconds per request, by kind ("everything" and each search).
    cpu_ms: dict[str, float]


def fill_store(
    client: httpx.Client, settings: Settings, services: Services, store: int, offset: int
) -> Filled:
    """Fill a store to ``store`` patients, the last one's record holding 500 resources."""
    started = time.perf_counter()
    fill(services, store - 1, lambda n: log(f"  filled {n}/{store}"), offset)
    fill_rate = (store - 1) * 11 / (time.perf_counter() - started)
    item = next(iter(generate_population(1, seed=99 + offset, documents_per_patient=40)))
    headers = headers_for(settings, kind="patient", identifier=f"{item.ins[0]}|{item.ins[1]}")
    response = client.post("/fhir", content=item.to_json(), headers=headers)
    patient_location = next(
        e["response"]["location"]
        for e in response.json()["entry"]
        if e["response"]["location"].startswith("Patient/")
    )
    patient_id = patient_location.split("/")[1]
    headers = headers_for(settings, kind="patient", patient=patient_id)
    total = client.get(f"/fhir/Patient/{patient_id}/$everything", headers=headers).json()["total"]
    extra = max(0, 500 - total)
    observations = [
        {
            "resource": {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
                "subject": {"reference": f"Patient/{patient_id}"},
                "effectiveDateTime": f"2023-{1 + i % 12:02d}-{1 + i % 28:02d}",
                "valueQuantity": {"value": 5.5, "unit": "mmol/L"},
            },
            "request": {"method": "POST", "url": "Observation"},
        }
        for i in range(extra)
    ]
    reply = client.post(
        "/fhir",
        json={"resourceType": "Bundle", "type": "transaction", "entry": observations},
        headers=headers,
    ).json()
    observation_id = reply["entry"][0]["response"]["location"].split("/")[1]
    total = client.get(f"/fhir/Patient/{patient_id}/$everything", headers=headers).json()["total"]
    return Filled(patient_id, observation_id, total, fill_rate)


def bench_open(client: httpx.Client, settings: Settings, filled: Filled, rounds: int, pid: int) -> Opened:
    """Time ``$everything`` and searches within the 500-resource record, one client, ``rounds`` each.

    Besides the wall-clock latencies, the server's CPU per request of each kind is kept (the steady
    figure on a shared machine; PostgreSQL's backends are not counted).
    """
    patient_id = filled.patient_id
    headers = headers_for(settings, kind="patient", patient=patient_id)
    urls = {"everything": f"/fhir/Patient/{patient_id}/$everything"}
    urls.update({name: url.format(p=patient_id) for name, url in SEARCHES.items()})
    timings: dict[str, list[float]] = {name: [] for name in urls}
    cpu: dict[str, float] = dict.fromkeys(urls, 0.0)
    pids = load.worker_pids(pid)
    for _ in range(rounds):
        for name, url in urls.items():
            before = load.cpu_seconds(pids)
            t0 = time.perf_counter()
            answer = client.get(url, headers=headers)
            timings[name].append(1000 * (time.perf_counter() - t0))
            cpu[name] += load.cpu_seconds(pids) - before
            if answer.status_code != 200:
                raise SystemExit(f"{name} failed: {answer.status_code} {answer.text[:300]}")
    everything = timings.pop("everything")
    return Opened(
        patient_id,
        headers,
        filled.observation_id,
        filled.resources,
        filled.fill_rate,
        everything,
        timings,
        {name: 1000 * seconds / rounds for name, seconds in cpu.items()},
    )


@dataclasses.dataclass
class Row:
    """One line of the results: a measure, its target, what was measured, and whether it is met."""

    measure: str
    target: str
    measured: str
    met: bool | None


def p50_p95(values: list[float], cpu_ms: float) -> str:
    """``p50 x ms, p95 y ms (server CPU z ms/request)``."""
    return (
        f"p50 {percentile(values, 0.5):.1f} ms, p95 {percentile(values, 0.95):.1f} ms "
        f"(server CPU {cpu_ms:.1f} ms/request)"
    )


def run(name: str, args: argparse.Namespace) -> list[Row]:
    """Run every benchmark on one backend; return its rows."""
    rows: list[Row] = []
    cached: dict[str, Any] | None = None
    if args.cache is not None:
        directory = cache_dir(args.cache, name, args.store)
        cached = build_cache(name, directory, args.store, args.workers)
        if args.build_cache:
            return rows
    with cached_backend(name, directory, args.store) if cached else backend(name) as settings:
        services = build_services(settings)
        with server(settings, workers=args.workers) as (client, pid):
            every = synthea_payloads(args.synthea, args.ingest + 4)
            payloads = every[: args.ingest]
            # Four Bundles first, not counted: each worker builds its validation plans and loads
            # the models it meets once (a cost of the process, not of the resources).
            bench_ingest(client, settings, every[args.ingest :])
            log(f"[{name}] ingest of {len(payloads)} transaction bundles, {CLIENTS} clients")
            rate, count = bench_ingest(client, settings, payloads)
            rows.append(
                Row(
                    f"ingest of {'Synthea' if args.synthea else 'generated'} transaction bundles "
                    f"({count:,} resources, {CLIENTS} clients)",
                    "≥ 2,000 resources/s",
                    f"{rate:,.0f} resources/s",
                    rate >= 2000,
                )
            )
            floor = raw_floor(settings, payloads)
            rows.append(
                Row(
                    "ingest vs raw insert floor (plain rows, one client, no API or sealing)",
                    "within 3×",
                    f"floor {floor:,.0f} resources/s = {floor / rate:.1f}× ingest",
                    floor / rate <= 3,
                )
            )
            log(f"[{name}] ITI-65 document submission")
            docs, server_ms, client_share = bench_documents(client, settings, args.documents, pid)
            rows.append(
                Row(
                    f"ITI-65, one ~100 KB PDF-in-CDA per bundle, {CLIENTS} clients",
                    "≥ 300 documents/s",
                    f"{docs:,.0f} documents/s (server CPU {server_ms:.1f} ms/document; "
                    f"clients {client_share:.0%} of the cores)",
                    docs >= 300,
                )
            )
            log(f"[{name}] record opening in a store of {args.store} patients")
            if cached is not None:
                keys = ("patient_id", "observation_id", "resources", "fill_rate")
                filled = Filled(*(cached[k] for k in keys))
            else:
                filled = fill_store(client, settings, services, args.store, 0)
                analyse(settings)
            opened = bench_open(client, settings, filled, args.rounds, pid)
            rows.append(
                Row(
                    "fill rate of the store (service layer, in-process"
                    + (", when the cache was built)" if cached else ")"),
                    "—",
                    f"{opened.fill_rate:,.0f} resources/s",
                    None,
                )
            )
            rows.append(
                Row(
                    f"$everything of a {opened.resources}-resource record, store of {args.store:,} patients",
                    "p95 ≤ 30 ms",
                    p50_p95(opened.everything, opened.cpu_ms["everything"]),
                    percentile(opened.everything, 0.95) <= 30,
                )
            )
            for search, values in opened.searches.items():
                rows.append(
                    Row(
                        f"search within the record: {search}",
                        "p95 ≤ 20 ms",
                        p50_p95(values, opened.cpu_ms[search]),
                        percentile(values, 0.95) <= 20,
                    )
                )
            base = str(client.base_url).rstrip("/")
            if shutil.which("wrk") is None:
                for measure, target in (
                    ("single read", "≥ 1,500 requests/s"),
                    ("single create", "≥ 1,000 requests/s"),
                ):
                    rows.append(
                        Row(measure, target, "not measured: wrk is absent (apt-get install wrk)", None)
                    )
                services.store.engine.dispose()
                return rows
            log(f"[{name}] single reads with wrk, {args.connections} connections, {args.seconds} s")
            read = load.wrk(
                f"{base}/fhir/Observation/{opened.observation_id}",
                headers={"Authorization": opened.headers["Authorization"]},
                seconds=args.seconds,
                connections=args.connections,
                server_pid=pid,
            )
            rows.append(
                Row(
                    f"single read, {args.connections} connections, --workers {args.workers}",
                    "≥ 1,500 requests/s",
                    read.describe(),
                    read.requests_per_second >= 1500,
                )
            )
            log(f"[{name}] single creates with wrk")
            body = fhirjson.dumps(heart_rate(opened.patient_id))
            create = load.wrk(
                f"{base}/fhir/Observation",
                headers=opened.headers,
                seconds=args.seconds,
                connections=args.connections,
                server_pid=pid,
                method="POST",
                body=body,
            )
            rows.append(
                Row(
                    f"single create, {args.connections} connections, --workers {args.workers}",
                    "≥ 1,000 requests/s",
                    create.describe(),
                    create.requests_per_second >= 1000,
                )
            )
            sizes = load.rss_mb(load.worker_pids(pid))
            workers = {p: v for p, v in sizes.items() if p != pid} or sizes
            peak = max(hwm for _, hwm in workers.values())
            rows.append(
                Row(
                    f"server RSS per worker under this load ({len(workers)} workers)",
                    "≤ 300 MB",
                    ", ".join(f"{rss:,.0f} MB (peak {hwm:,.0f})" for rss, hwm in workers.values()),
                    peak <= 300,
                )
            )
        services.store.engine.dispose()
    for row in rows:
        log(f"  {row.measure}: {row.measured} (target {row.target})")
    return rows


def main() -> None:
    """Parse arguments, run the benchmarks, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (make bench)")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--workers", type=int, default=2, help="carnet serve --workers")
    parser.add_argument(
        "--synthea",
        type=Path,
        default=SYNTHEA if SYNTHEA.is_dir() else None,
        help="a folder of Synthea transaction bundles (default: the external corpus when present; "
        "else generated patients)",
    )
    parser.add_argument("--store", type=int, help="patients in the store (10,000; 1,000 with --quick)")
    parser.add_argument(
        "--cache",
        type=Path,
        help="keep the filled store in this folder and measure on a fresh copy of it (see above)",
    )
    parser.add_argument(
        "--build-cache", action="store_true", help="with --cache: build the store, measure nothing"
    )
    args = parser.parse_args()
    if args.build_cache and args.cache is None:
        parser.error("--build-cache needs --cache DIR")
    args.ingest = 10 if args.quick else 100
    args.documents = 60 if args.quick else 300
    args.store = args.store or (1000 if args.quick else 10000)
    args.rounds = 20 if args.quick else 100
    args.seconds = 5 if args.quick else 15
    args.connections = 8
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if "postgres" in backends and not os.environ.get("CARNET_TEST_PG_URL"):
        log("CARNET_TEST_PG_URL is not set: PostgreSQL skipped")
        backends.remove("postgres")
    if shutil.which("wrk") is None:
        log("wrk is absent: the single read and create rows are not measured (apt-get install wrk)")
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.platform()}; load average at start {' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    for name in backends:
        rows = run(name, args)
        if args.build_cache:
            continue
        print(f"\n### {name} ({'quick' if args.quick else 'full'} sizes)\n")
        print("| measure | target | measured | met |\n|---|---|---|---|")
        for row in rows:
            met = "—" if row.met is None else ("yes" if row.met else "**no**")
            print(f"| {row.measure} | {row.target} | {row.measured} | {met} |")
        print(f"\nload average after {name}: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS of the benchmark process itself: {peak:,.0f} MB")


if __name__ == "__main__":
    main()
