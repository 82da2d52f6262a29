"""The access journal's costs: overhead on a record open and on ingest, checkpoints under load, verify speed.

In-process (service layer, no HTTP), sealing on, on SQLite and (when ``CARNET_TEST_PG_URL`` is set)
PostgreSQL. "Without journal" switches the journal write off in this process only, to measure its
share; the product has no such switch. Usage::

    .venv/bin/python bench/journal.py            # prints a Markdown table per backend
    .venv/bin/python bench/journal.py --quick
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from run import backend, log, percentile

from carnet.api.app import Services, build_services
from carnet.audit.verify import verify_journal
from carnet.domain.journal import Entry
from carnet.domain.principal import ActorKind, Identifier, Principal
from carnet.services.gate import Gate
from carnet.services.records import Records

INS = "urn:oid:1.2.250.1.213.1.4.10"


@contextmanager
def journal_off() -> Iterator[None]:
    """Switch the journal write off in this process (for the with/without comparison only)."""
    record, apart = Gate._journal, Gate._journal_apart
    Gate._journal = lambda self, call, session, error: None  # type: ignore[method-assign]
    Gate._journal_apart = lambda self, call, error: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        Gate._journal, Gate._journal_apart = record, apart  # type: ignore[method-assign]


def _observation(patient_id: str, value: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "valueQuantity": {"value": value, "unit": "kg"},
    }


def open_patient(services: Services) -> tuple[str, Records]:
    """A new record and its patient's access."""
    ins = Identifier(system=INS, value=uuid.uuid4().hex[:15])
    principal = Principal(kind=ActorKind.PATIENT, subject=f"pat:{ins.value}", identifier=ins)
    patient = {"resourceType": "Patient", "identifier": [{"system": ins.system, "value": ins.value}]}
    patient_id = services.records.records(principal).create(patient).stored.resource_id
    return patient_id, services.records.records(dataclasses.replace(principal, patient_id=patient_id))


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    """Milliseconds per call."""
    out: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def bench_open(services: Services, resources: int, runs: int) -> tuple[list[float], list[float]]:
    """``$everything`` on a record of ``resources`` Observations, with and without the journal."""
    patient_id, records = open_patient(services)
    from carnet.services.records import EntryRequest

    entries = [
        EntryRequest(method="POST", url="Observation", resource=_observation(patient_id, i), full_url=None)
        for i in range(resources)
    ]
    records.transaction(entries)
    with_journal = timed(lambda: records.everything(patient_id), runs)
    with journal_off():
        without = timed(lambda: records.everything(patient_id), runs)
    return with_journal, without


def bench_ingest(services: Services, bundles: int, size: int) -> tuple[float, float]:
    """Resources/s for transactions of ``size`` Observations, with and without the journal."""
    from carnet.services.records import EntryRequest

    def ingest() -> float:
        patient_id, records = open_patient(services)
        start = time.perf_counter()
        for _ in range(bundles):
            records.transaction(
                [
                    EntryRequest(
                        method="POST", url="Observation", resource=_observation(patient_id, i), full_url=None
                    )
                    for i in range(size)
                ]
            )
        return bundles * size / (time.perf_counter() - start)

    with_journal = ingest()
    with journal_off():
        without = ingest()
    return with_journal, without


def bench_reads(services: Services, reads: int) -> tuple[float, float]:
    """Single reads per second (one entry each), with and without the journal."""
    patient_id, records = open_patient(services)
    made = records.create(_observation(patient_id, 1)).stored.resource_id

    def rate() -> float:
        start = time.perf_counter()
        for _ in range(reads):
            records.read("Observation", made)
        return reads / (time.perf_counter() - start)

    with_journal = rate()
    with journal_off():
        without = rate()
    return with_journal, without


def bench_concurrent_reads(services: Services, threads: int, reads: int) -> tuple[float, float]:
    """Reads per second from ``threads`` threads (the entries of concurrent reads share commits)."""
    patient_id, records = open_patient(services)
    made = records.create(_observation(patient_id, 1)).stored.resource_id

    def rate() -> float:
        def worker() -> None:
            for _ in range(reads):
                services.records.records(records.actor).read("Observation", made)

        pool = [threading.Thread(target=worker) for _ in range(threads)]
        start = time.perf_counter()
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        return threads * reads / (time.perf_counter() - start)

    with_journal = rate()
    with journal_off():
        without = rate()
    return with_journal, without


def bench_checkpoints(services: Services, seconds: float) -> tuple[float, float, int, list[float]]:
    """Reads from 2 threads for ``seconds`` while the checkpointer runs every second.

    Returns reads/s, the largest gap between checkpoints (s), how many were issued, and the
    sign-and-store latencies (ms).
    """
    patient_id, records = open_patient(services)
    made = records.create(_observation(patient_id, 1)).stored.resource_id
    stop = threading.Event()
    count = [0]

    def load() -> None:
        while not stop.is_set():
            records_ = services.records.records(records.actor)
            records_.read("Observation", made)
            count[0] += 1

    latencies: list[float] = []
    stamps: list[float] = []

    def checkpointer() -> None:
        while not stop.wait(1.0):
            start = time.perf_counter()
            if services.journal.issue_checkpoints():
                latencies.append((time.perf_counter() - start) * 1000)
                stamps.append(time.perf_counter())

    threads = [threading.Thread(target=load) for _ in range(2)] + [threading.Thread(target=checkpointer)]
    begin = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    gaps = [b - a for a, b in zip([begin, *stamps], stamps, strict=False)]
    return count[0] / seconds, max(gaps) if gaps else float("inf"), len(stamps), latencies


def bench_verify(services: Services, entries: int) -> float:
    """``audit verify`` entries/s over a journal of ``entries`` appended entries."""
    patient_id, _ = open_patient(services)
    now = datetime.now(UTC)
    with services.store.session(write=True) as session:
        key = services.records.vault.key(session, patient_id, now)
        batch = [
            (
                key,
                Entry(
                    recorded=now,
                    patient_id=patient_id,
                    actor_kind="professional",
                    actor_id="810001234567",
                    action="read",
                    resource_type="Observation",
                    targets=("Observation/x/_history/1",),
                    reasons=("authorised",),
                ),
            )
            for _ in range(entries)
        ]
        for start in range(0, entries, 1000):
            services.journal.append(session, batch[start : start + 1000])
    services.journal.issue_checkpoints()
    with services.store.session() as session:
        total = sum(1 for _ in session.journal_rows(0))
        start = time.perf_counter()
        reports = verify_journal(session, services.journal.signer.verifier_key, services.journal.base_origin)
        elapsed = time.perf_counter() - start
    assert all(r.verdict.ok for r in reports)
    return total / elapsed


def run(name: str, quick: bool) -> list[tuple[str, str]]:
    """Every journal measure on one backend."""
    rows: list[tuple[str, str]] = []
    with backend(name) as settings:
        services = build_services(settings)
        try:
            size = 200 if quick else 500
            log(f"{name}: $everything on a {size}-resource record")
            with_j, without = bench_open(services, size, 20 if quick else 50)
            rows.append(
                (
                    f"`$everything`, {size} resources (p50 / p95), with journal",
                    f"{statistics.median(with_j):.1f} / {percentile(with_j, 0.95):.1f} ms",
                )
            )
            rows.append(
                (
                    "… without journal",
                    f"{statistics.median(without):.1f} / {percentile(without, 0.95):.1f} ms",
                )
            )
            log(f"{name}: single reads")
            reads_with, reads_without = bench_reads(services, 200 if quick else 1000)
            rows.append(("single reads/s, with / without journal", f"{reads_with:.0f} / {reads_without:.0f}"))
            log(f"{name}: concurrent reads")
            many_with, many_without = bench_concurrent_reads(services, 8, 50 if quick else 200)
            rows.append(
                ("reads/s from 8 threads, with / without journal", f"{many_with:.0f} / {many_without:.0f}")
            )
            log(f"{name}: ingest")
            ingest_with, ingest_without = bench_ingest(services, 5 if quick else 20, 100)
            rows.append(
                (
                    "ingest (100-resource transactions), with / without journal",
                    f"{ingest_with:.0f} / {ingest_without:.0f} resources/s",
                )
            )
            log(f"{name}: checkpoints under load")
            rate, gap, issued, latencies = bench_checkpoints(services, 5.0 if quick else 15.0)
            rows.append(
                (
                    "checkpoints every 1 s under 2 reading threads",
                    f"{issued} issued, largest gap {gap:.2f} s, sign+store p50 {statistics.median(latencies) if latencies else 0:.1f} ms, {rate:.0f} reads/s",
                )
            )
            log(f"{name}: audit verify")
            count = 20_000 if quick else 100_000
            rows.append(
                (
                    f"`audit verify` over ≥ {count:,} entries",
                    f"{bench_verify(services, count):,.0f} entries/s",
                )
            )
        finally:
            services.store.engine.dispose()
    return rows


def main() -> None:
    """Run and print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    backends = ["sqlite"] + (["postgres"] if os.environ.get("CARNET_TEST_PG_URL") else [])
    for name in backends:
        rows = run(name, args.quick)
        print(f"\n### {name}\n\n| measure | value |\n|---|---|")
        for label, value in rows:
            print(f"| {label} | {value} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
