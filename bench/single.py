"""Single creates and single reads over HTTP with ``wrk`` (the wrk part of ``bench/run.py``, alone).

A real ``carnet serve --workers 2`` (sealing, policy and journal on), one open record, then
``wrk`` with 8 connections: ``POST /fhir/Observation`` (each create a write of its own, journaled,
sharing durable commits with the concurrent ones), then ``GET /fhir/Observation/{id}``. Prints
requests per second, p50/p99 and the **server's CPU time per request**, which a machine loaded by
other work inflates much less than wall-clock figures. Usage::

    .venv/bin/python bench/single.py [--seconds 10] [--backend sqlite|postgres] [--workers 2]
"""

from __future__ import annotations

import argparse
import os

import load
from run import backend, fhirjson, heart_rate, log, open_record, server


def main() -> None:
    """Run the creates, then the reads, and print one table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
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
        log(f"single creates, {args.connections} connections, {args.seconds} s")
        create = load.wrk(
            f"{base}/fhir/Observation",
            headers=headers,
            seconds=args.seconds,
            connections=args.connections,
            server_pid=pid,
            method="POST",
            body=fhirjson.dumps(observation),
            timeout=args.timeout,
        )
        log(f"single reads, {args.connections} connections, {args.seconds} s")
        read = load.wrk(
            f"{base}/fhir/Observation/{made.json()['id']}",
            headers={"Authorization": headers["Authorization"]},
            seconds=args.seconds,
            connections=args.connections,
            server_pid=pid,
            timeout=args.timeout,
        )
    print(
        f"## {args.backend}, --workers {args.workers}, {args.connections} connections, {args.seconds} s; "
        f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}\n"
    )
    print("| measure | result |\n|---|---|")
    print(f"| single create | {create.describe()}{f', {create.errors} errors' if create.errors else ''} |")
    print(f"| single read | {read.describe()}{f', {read.errors} errors' if read.errors else ''} |")


if __name__ == "__main__":
    main()
