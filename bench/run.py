"""Carnet benchmarks: ingest, document submission, record opening, memory, and the raw floor.

Prints numbers (a Markdown table per backend); they are copied into docs/performance.md.
Sealing is always on. Usage::

    .venv/bin/python bench/run.py                 # SQLite, and PostgreSQL if CARNET_TEST_PG_URL is set
    .venv/bin/python bench/run.py --quick         # small sizes, a minute or two
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Column, LargeBinary, MetaData, String, Table, create_engine, insert, text

from carnet.api.app import Services, build_services
from carnet.api.auth import issue_token
from carnet.api.fhir import parse_entries
from carnet.domain import fhirjson
from carnet.domain.principal import ActorKind, Identifier, Principal
from carnet.settings import Settings
from carnet.synthetic import generate_population

INS = "urn:oid:1.2.250.1.213.1.4.10"
CLIENTS = 4  # concurrent HTTP clients for the document submissions


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
        url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
        try:
            yield Settings(data_dir=root / "data", key_dir=root / "keys", database_url=url)
        finally:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


@contextmanager
def server(settings: Settings) -> Iterator[httpx.Client]:
    """Run ``carnet serve`` (uvicorn) on a free port against ``settings``; yield a keep-alive client."""
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
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "carnet", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
    try:
        deadline = time.monotonic() + 180
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
        yield client
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


def bench_ingest(client: httpx.Client, settings: Settings, patients: int) -> tuple[float, int, list[bytes]]:
    """POST generated patients as transaction bundles over HTTP; return resources/s."""
    bundles = list(generate_population(patients, seed=7, documents_per_patient=2))
    payloads = [p.to_json() for p in bundles]
    count = sum(len(p.bundle["entry"]) for p in bundles)
    started = time.perf_counter()
    for item, payload in zip(bundles, payloads, strict=True):
        headers = headers_for(settings, kind="patient", identifier=f"{item.ins[0]}|{item.ins[1]}")
        response = client.post("/fhir", content=payload, headers=headers)
        if response.status_code != 200:
            raise SystemExit(f"ingest failed: {response.status_code} {response.text[:300]}")
    elapsed = time.perf_counter() - started
    return count / elapsed, count, payloads


def raw_floor(settings: Settings, payloads: list[bytes]) -> float:
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
    for payload in payloads:
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


def bench_documents(client: httpx.Client, settings: Settings, documents: int) -> float:
    """ITI-65 submissions of documents holding a ~100 KB PDF inside a CDA: documents/s."""
    item = next(iter(generate_population(1, seed=11, documents_per_patient=documents, pdf_bytes=100_000)))
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    entries = {e["fullUrl"]: e["resource"] for e in item.bundle["entry"]}
    for entry in entries.values():
        if entry["resourceType"] == "DocumentReference":
            binary = entries[entry["content"][0]["attachment"]["url"]]
            pairs.append((entry, binary))
    patient_id, headers = open_record(client, settings, "1850575000011")
    payloads = [iti65_bundle(patient_id, d, b) for d, b in pairs]
    size = statistics.mean(len(base64.b64decode(b["data"])) for _, b in pairs)
    log(f"  {len(payloads)} documents of {size / 1000:.0f} KB on average")
    base = str(client.base_url)

    def submit(chunk: list[bytes]) -> None:
        with httpx.Client(base_url=base, timeout=120) as own:
            for payload in chunk:
                response = own.post("/fhir", content=payload, headers=headers)
                if response.status_code != 200:
                    raise SystemExit(f"ITI-65 failed: {response.status_code} {response.text[:300]}")

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        list(pool.map(submit, [payloads[i::CLIENTS] for i in range(CLIENTS)]))
    return len(payloads) / (time.perf_counter() - started)


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


def bench_open(
    client: httpx.Client, settings: Settings, services: Services, store: int, rounds: int, offset: int
) -> dict[str, float]:
    """Fill a store to ``store`` patients, add a 500-resource patient, time $everything and ITI-67."""
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
    client.post(
        "/fhir",
        json={"resourceType": "Bundle", "type": "transaction", "entry": observations},
        headers=headers,
    )
    total = client.get(f"/fhir/Patient/{patient_id}/$everything", headers=headers).json()["total"]
    timings: dict[str, list[float]] = {"everything": [], "iti67": []}
    for _ in range(rounds):
        for name, url in (
            ("everything", f"/fhir/Patient/{patient_id}/$everything"),
            ("iti67", f"/fhir/DocumentReference?patient={patient_id}&status=current"),
        ):
            t0 = time.perf_counter()
            reply = client.get(url, headers=headers)
            timings[name].append(1000 * (time.perf_counter() - t0))
            if reply.status_code != 200:
                raise SystemExit(f"{name} failed: {reply.status_code}")
    return {
        "resources": total,
        "fill_rate": fill_rate,
        "everything_p50": percentile(timings["everything"], 0.5),
        "everything_p95": percentile(timings["everything"], 0.95),
        "iti67_p50": percentile(timings["iti67"], 0.5),
        "iti67_p95": percentile(timings["iti67"], 0.95),
    }


def run(name: str, args: argparse.Namespace) -> list[tuple[str, str]]:
    """Run every benchmark on one backend; return (measure, value) rows."""
    rows: list[tuple[str, str]] = []
    with backend(name) as settings:
        services = build_services(settings)
        with server(settings) as client:
            log(f"[{name}] ingest of {args.ingest} generated patients through transaction bundles")
            rate, count, payloads = bench_ingest(client, settings, args.ingest)
            rows.append(
                ("(a) ingest, transaction bundles over HTTP", f"{rate:,.0f} resources/s ({count} resources)")
            )
            floor = raw_floor(settings, payloads)
            rows.append(
                ("(e) raw floor: same resources, plain rows, no API, no sealing", f"{floor:,.0f} resources/s")
            )
            rows.append(("(e) ratio raw floor / Carnet ingest", f"{floor / rate:.1f}x"))
            log(f"[{name}] ITI-65 document submission")
            docs = bench_documents(client, settings, args.documents)
            rows.append(
                (
                    f"(b) ITI-65, one ~100 KB PDF-in-CDA per bundle, {CLIENTS} clients",
                    f"{docs:,.0f} documents/s",
                )
            )
            grown = 0
            for store in args.stores:
                log(f"[{name}] record opening in a store of {store} patients")
                measured = bench_open(client, settings, services, store - grown, args.rounds, grown)
                grown = store
                rows.append(
                    (
                        f"store of {store:,} patients: fill rate (service layer)",
                        f"{measured['fill_rate']:,.0f} resources/s",
                    )
                )
                rows.append(
                    (
                        f"(c) $everything, {int(measured['resources'])}-resource patient, {store:,} patients",
                        f"p50 {measured['everything_p50']:.1f} ms, p95 {measured['everything_p95']:.1f} ms",
                    )
                )
                rows.append(
                    (
                        f"(c) ITI-67 DocumentReference search, {store:,} patients",
                        f"p50 {measured['iti67_p50']:.1f} ms, p95 {measured['iti67_p95']:.1f} ms",
                    )
                )
        services.store.engine.dispose()
    return rows


def main() -> None:
    """Parse arguments, run the benchmarks, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    args.ingest = 10 if args.quick else 50
    args.documents = 30 if args.quick else 200
    args.stores = [100, 1000] if args.quick else [1000, 10000]
    args.rounds = 20 if args.quick else 60
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if "postgres" in backends and not os.environ.get("CARNET_TEST_PG_URL"):
        log("CARNET_TEST_PG_URL is not set: PostgreSQL skipped")
        backends.remove("postgres")
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.platform()}"
    )
    for name in backends:
        rows = run(name, args)
        print(f"\n### {name}\n\n| measure | value |\n|---|---|")
        for measure, value in rows:
            print(f"| {measure} | {value} |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n(d) peak RSS of the benchmark process: {peak:,.0f} MB")


if __name__ == "__main__":
    main()
