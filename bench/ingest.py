"""Ingest of transaction Bundles over HTTP beside the raw insert floor of the same data.

    .venv/bin/python bench/ingest.py                          # 20 Synthea bundles, SQLite
    .venv/bin/python bench/ingest.py --backend postgres --bundles 50
    .venv/bin/python bench/ingest.py --profile ingest-sqlite  # py-spy of the worker → bench/profiles/

A real ``carnet serve`` (sealing, policy and journal on) receives ``POST /fhir`` transaction
Bundles from ``--clients`` concurrent clients, each Bundle under its patient's token. Printed:
resources/s (wall), the **server's CPU per resource** (user + system of the serving processes,
from ``/proc``; on PostgreSQL its backends are extra), then the floor: the same resources
inserted as plain rows (parse the Bundle, one ``executemany`` per Bundle in one transaction; no
API, validation, sealing, index or journal) and its CPU per resource, and the ratio of the two
rates (issue 19's target: within 3×). The Synthea corpus of the shared data is used when
present, else generated patients.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from profile import sample, summarise

import load
from run import SYNTHEA, backend, bench_ingest, log, raw_floor, server, synthea_payloads

HERE = Path(__file__).resolve().parent


def main() -> None:
    """Run one ingest and its floor; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--bundles", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="carnet serve --workers (1 with --profile)")
    parser.add_argument("--synthea", type=Path, default=SYNTHEA if SYNTHEA.is_dir() else None)
    parser.add_argument(
        "--profile", default="", help="sample the worker with py-spy into bench/profiles/NAME.txt"
    )
    parser.add_argument("--gil", action="store_true", help="with --profile: only samples holding the GIL")
    args = parser.parse_args()
    if args.backend == "postgres" and not os.environ.get("CARNET_TEST_PG_URL"):
        raise SystemExit("set CARNET_TEST_PG_URL for --backend postgres")
    every = synthea_payloads(args.synthea, args.bundles + 4)
    # A few Bundles first, not counted: each worker builds its validation plans once (pydantic
    # schemas of the models met), a cost of the process, not of a resource.
    payloads, warm_up = every[: args.bundles], every[args.bundles :]
    workers = 1 if args.profile else args.workers
    load_before = os.getloadavg()
    with backend(args.backend) as settings, server(settings, workers=workers) as (client, pid):
        pids = load.worker_pids(pid)
        sampler = None
        tmp = tempfile.mkdtemp()
        out = Path(tmp) / "stacks.txt"
        if args.profile:
            sampler = sample(pids[-1], out, gil=args.gil)
        if warm_up:
            bench_ingest(client, settings, warm_up)
        cpu_before = load.cpu_seconds(pids)
        rate, count = bench_ingest(client, settings, payloads)
        cpu = load.cpu_seconds(pids) - cpu_before
        if sampler is not None:
            sampler.send_signal(2)  # SIGINT: py-spy writes what it sampled
            sampler.wait(timeout=60)
        started = time.process_time()
        floor = raw_floor(settings, payloads)
        floor_cpu = time.process_time() - started
    lines = [
        f"{args.backend}: {len(payloads)} {'Synthea' if args.synthea else 'generated'} bundles, {count:,} resources, "
        f"--workers {workers}; load average {' '.join(f'{v:.2f}' for v in load_before)} → "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}",
        f"ingest over HTTP: {rate:,.0f} resources/s, server CPU {1000 * cpu / count:.3f} ms/resource",
        f"raw floor (plain rows, executemany, one transaction per Bundle): {floor:,.0f} resources/s, "
        f"CPU {1000 * floor_cpu / count:.3f} ms/resource",
        f"floor / ingest: {floor / rate:.1f}× (target ≤ 3×); by CPU {cpu / max(floor_cpu, 1e-9):.1f}×",
    ]
    text = "\n".join(lines) + "\n"
    if args.profile:
        text += "\n" + summarise(out, 60)
        target = HERE / "profiles" / f"{args.profile}.txt"
        target.write_text(f"py-spy of one `carnet serve` worker under bench/ingest.py\n{text}")
        log(f"wrote {target}")
    shutil.rmtree(tmp, ignore_errors=True)
    print(text)


if __name__ == "__main__":
    main()
