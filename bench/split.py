"""Single reads from two processes on one store, in-process: CPU per read and journal batch sizes.

``bench/single.py`` drives a real ``carnet serve --workers 2`` with ``wrk``; uvicorn's workers
accept from one socket and split the 8 connections differently from run to run (100/0, 60/40,
50/50 %), and the server's CPU per read follows the split (2026-12-07: ~0.75 ms when one worker
served all 8, ~1.05 ms when both served 4; the journal's group commits are twice as small in
the second case). This bench fixes the split: two processes build the app on the same store
(SQLite file, or one PostgreSQL schema), open a record each and send ``--concurrency`` reads at
a time straight to the ASGI app (no socket, no uvicorn, access log off), so runs of the same
code agree to a few percent on a loaded machine. Per run it prints the CPU per read (both
processes: loop, worker threads, the journal's leader), the reads per second and the journal
units per batch of each process. Sealing, policy and journal are on. Usage::

    .venv/bin/python bench/split.py [--reads 3000] [--concurrency 4] [--backend sqlite|postgres] [--repeat 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from run import INS, backend, headers_for, heart_rate, log

from carnet.api.app import build_services, create_app
from carnet.settings import Settings


async def _serve_reads(settings: Settings, nir: str, reads: int, concurrency: int) -> dict[str, float]:
    """Open a record, warm up, wait for the parent's go, then time ``reads`` reads."""
    import httpx

    services = build_services(settings, migrate=False)
    app = create_app(settings, services, background=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
        headers = headers_for(settings, kind="patient", identifier=f"{INS}|{nir}")
        body = {"resourceType": "Patient", "identifier": [{"system": INS, "value": nir}]}
        opened = await client.post("/fhir/Patient", json=body, headers=headers)
        if opened.status_code != 201:
            raise SystemExit(f"opening the record answered {opened.status_code}: {opened.text[:300]}")
        patient_id = opened.json()["id"]
        headers = headers_for(settings, kind="patient", patient=patient_id)
        made = await client.post("/fhir/Observation", json=heart_rate(patient_id), headers=headers)
    path = f"/fhir/Observation/{made.json()['id']}"
    raw = [(b"host", b"bench"), (b"authorization", headers["Authorization"].encode())]

    async def read() -> None:
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": list(raw),
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 80),
            "state": {},
        }
        sent: list[Any] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            sent.append(message)

        await app(scope, receive, send)
        if sent[0]["status"] != 200:
            raise SystemExit(f"a read answered {sent[0]['status']}")

    async def client(count: int) -> None:
        for _ in range(count):
            await read()

    await asyncio.gather(*(client(50) for _ in range(concurrency)))
    group = services.records.gate.group
    batches, units = group.batches, group.units
    print("ready", flush=True)
    sys.stdin.readline()
    cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client(reads // concurrency) for _ in range(concurrency)))
    cpu, seconds = time.process_time() - cpu, time.perf_counter() - started
    services.store.engine.dispose()
    done = (reads // concurrency) * concurrency
    return {
        "cpu_ms": 1000 * cpu / done,
        "seconds": seconds,
        "reads": done,
        "units_per_batch": (group.units - units) / max(1, group.batches - batches),
    }


def child(arguments: list[str]) -> None:
    """One of the two processes (``split.py child DATA KEYS URL NIR READS CONCURRENCY``)."""
    import uvloop

    data, keys, url, nir, reads, concurrency = arguments
    logging.disable(logging.CRITICAL)  # the access log's cost is not what this bench measures
    settings = Settings(data_dir=Path(data), key_dir=Path(keys), database_url=url, api_rate_per_minute=0)
    print(json.dumps(uvloop.run(_serve_reads(settings, nir, int(reads), int(concurrency)))), flush=True)


def run_once(settings: Settings, reads: int, concurrency: int, run: int, processes: int = 2) -> str:
    """Start the two processes together (each opening a record of its own); one line of results."""
    url = settings.database_url or ""
    counts = (str(reads), str(concurrency))
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "child",
                str(settings.data_dir),
                str(settings.key_dir),
                url,
                nir,
                *counts,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for nir in (f"1850575{run:04d}11", f"2850575{run:04d}12")[:processes]
    ]
    for process in processes:
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            raise SystemExit("a process failed to start; run it alone to see why")
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("\n")
        process.stdin.flush()
    results = []
    for process in processes:
        assert process.stdout is not None
        results.append(json.loads(process.stdout.readline()))
        process.wait(timeout=60)
    cpu = sum(r["cpu_ms"] * r["reads"] for r in results) / sum(r["reads"] for r in results)
    rate = sum(r["reads"] for r in results) / max(r["seconds"] for r in results)
    batches = " and ".join(f"{r['units_per_batch']:.2f}" for r in results)
    return f"{cpu:.3f} ms CPU/read, {rate:,.0f} reads/s, journal units per batch {batches}"


def main() -> None:
    """Build a store, then time the two processes' reads ``--repeat`` times."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reads", type=int, default=3000, help="reads per process")
    parser.add_argument("--concurrency", type=int, default=4, help="reads at a time per process")
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--processes", type=int, choices=[1, 2], default=2)
    args = parser.parse_args()
    with backend(args.backend) as settings:
        build_services(settings).store.engine.dispose()  # migrated once, before the two start
        for run in range(args.repeat):
            line = run_once(settings, args.reads, args.concurrency, run, args.processes)
            log(f"run {run + 1}: {line}; load average {os.getloadavg()[0]:.2f}")
            print(f"| {args.backend} | {line} |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        child(sys.argv[2:])
    else:
        main()
