"""Single creates and single reads over HTTP with ``wrk`` (the wrk part of ``bench/run.py``, alone).

A real ``carnet serve --workers 2`` (sealing, policy and journal on), one open record, then
``wrk`` with 8 connections: ``POST /fhir/Observation`` (each create a write of its own, journaled,
sharing durable commits with the concurrent ones), then ``GET /fhir/Observation/{id}``. Prints
requests per second, p50/p99 and the **server's CPU time per request** (on PostgreSQL, the
database backends' apart), which a machine loaded by
other work inflates much less than wall-clock figures, and the part of it spent on the workers'
event loop threads (uvicorn, the middlewares, routing, the response: the HTTP layer; the record
work runs in worker threads). ``--repeat N`` alternates N runs of each. Usage::

    .venv/bin/python bench/single.py [--seconds 10] [--backend sqlite|postgres] [--workers 2] [--repeat 1]
        [--only create|read]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import load
from run import backend, fhirjson, heart_rate, log, open_record, server


def loop_cpu_seconds(server_pid: int) -> float:
    """CPU seconds used so far by the main thread (the event loop's) of the server and its workers."""
    total = 0
    for pid in load.worker_pids(server_pid):
        try:
            fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / load.TICKS


def measured(server_pid: int, url: str, database_url: str | None = None, **wrk_arguments: Any) -> str:
    """One wrk run described, with the event loop threads' CPU per request beside the server's.

    Also each process's share of the server's CPU over the run: uvicorn's workers accept from
    one socket, and one worker may get most of the connections (its batches of journal entries
    grow, the other's vanish), which changes the figures from run to run.
    """
    pids = load.worker_pids(server_pid)
    before = loop_cpu_seconds(server_pid)
    per_process = [load.cpu_seconds([p]) for p in pids]
    database = load.BackendCPU(database_url)
    result = load.wrk(url, server_pid=server_pid, **wrk_arguments)
    database_ms = 1000 * database.used() / max(1, result.requests)
    loop_ms = 1000 * (loop_cpu_seconds(server_pid) - before) / max(1, result.requests)
    used = [load.cpu_seconds([p]) - b for p, b in zip(pids, per_process, strict=True)]
    shares = "/".join(f"{100 * u / max(sum(used), 1e-9):.0f}" for u in used if u > 0.01 * sum(used))
    errors = f", {result.errors} errors" if result.errors else ""
    backends = f"; PostgreSQL backends {database_ms:.2f} ms/request" if database_url else ""
    return f"{result.describe()}; event loop {loop_ms:.2f} ms/request{backends}; CPU split {shares} %{errors}"


def main() -> None:
    """Run the creates, then the reads, and print one table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each, alternated")
    parser.add_argument("--only", choices=["create", "read"], help="run only the creates or only the reads")
    parser.add_argument(
        "--timeout",
        type=int,
        default=10,
        help="seconds before wrk counts an answer as failed (a loaded machine)",
    )
    args = parser.parse_args()
    with backend(args.backend) as settings, server(settings, workers=args.workers) as (client, pid):
        patient_id, headers = open_record(client, settings, "1850575000011")
        observation = heart_rate(patient_id)
        made = client.post("/fhir/Observation", content=fhirjson.dumps(observation), headers=headers)
        assert made.status_code == 201, made.text
        base = str(client.base_url).rstrip("/")
        rows: list[tuple[str, str]] = []

        def read_run() -> str:
            log(f"single reads, {args.connections} connections, {args.seconds} s")
            return measured(
                pid,
                f"{base}/fhir/Observation/{made.json()['id']}",
                settings.database_url,
                headers={"Authorization": headers["Authorization"]},
                seconds=args.seconds,
                connections=args.connections,
                timeout=args.timeout,
            )

        for _ in range(args.repeat):
            if args.only == "read":
                rows.append(("single read", read_run()))
                continue
            log(f"single creates, {args.connections} connections, {args.seconds} s")
            create = measured(
                pid,
                f"{base}/fhir/Observation",
                settings.database_url,
                headers=headers,
                seconds=args.seconds,
                connections=args.connections,
                method="POST",
                body=fhirjson.dumps(observation),
                timeout=args.timeout,
            )
            if args.only == "create":
                rows.append(("single create", create))
                continue
            rows += [("single create", create), ("single read", read_run())]
    print(
        f"## {args.backend}, --workers {args.workers}, {args.connections} connections, {args.seconds} s; "
        f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}\n"
    )
    print("| measure | result |\n|---|---|")
    for name, row in sorted(rows, key=lambda r: r[0]):
        print(f"| {name} | {row} |")


if __name__ == "__main__":
    main()
