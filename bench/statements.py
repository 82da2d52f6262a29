"""SQL statements, round trips and CPU per single read and single create, in-process (no HTTP).

Builds the services on a fresh store (sealing, policy and journal on), opens one record as its
patient, then runs ``--requests`` creates of an Observation and as many reads of one, one after
the other in this thread. For each it prints, per request: the statements sent through the
engine (``before_cursor_execute``, an ``executemany`` counted once), the transactions, the
**round trips to the database** (statements + ``BEGIN`` + ``COMMIT``/``ROLLBACK`` + pool
pings; on SQLite they are calls into the library, not network trips), this process's CPU and,
on PostgreSQL, the CPU of the server backends it talked to (from ``/proc``). The statements of
one request of each kind are listed with ``--show``. Usage::

    .venv/bin/python bench/statements.py [--requests 500] [--backend sqlite|postgres] [--threads 1] [--show]
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import load
from run import INS, backend, heart_rate, log
from sqlalchemy import Engine, event

from carnet.api.app import build_services
from carnet.domain.principal import ActorKind, Identifier, Principal


class Meter:
    """Counts what an engine sends to its database, and which PostgreSQL backends it used.

    It wraps the dialect's calls into the driver rather than listening to engine events: with
    any engine event listened to, SQLAlchemy dispatches four events around every statement,
    CPU that the server without the meter does not spend. The checkout is a pool event (free).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.counts: Counter[str] = Counter()
        self.statements: list[str] = []
        self.backends: set[int] = set()
        self.postgres = engine.dialect.name == "postgresql"
        dialect: Any = engine.dialect
        for name in ("do_execute", "do_executemany", "do_execute_no_params"):
            setattr(dialect, name, self._statement(getattr(dialect, name)))
        for name in ("begin", "commit", "rollback", "ping"):
            setattr(dialect, f"do_{name}", self._counter(name, getattr(dialect, f"do_{name}")))
        event.listen(engine, "checkout", self._checkout)

    def _statement(self, call: Any) -> Any:
        def counted(cursor: object, statement: str, *rest: object) -> Any:
            self.counts["statements"] += 1
            self.statements.append(" ".join(statement.split())[:140])
            return call(cursor, statement, *rest)

        return counted

    def _counter(self, name: str, call: Any) -> Any:
        def counted(*args: object) -> Any:
            self.counts[name] += 1
            return call(*args)

        return counted

    def _checkout(self, dbapi_connection: Any, _record: object, _proxy: object) -> None:
        if self.postgres:
            self.backends.add(int(dbapi_connection.info.backend_pid))

    def reset(self) -> None:
        """Forget what was counted so far."""
        self.counts.clear()
        self.statements.clear()

    @property
    def round_trips(self) -> int:
        """Statements, transaction starts and ends, and pings.

        The ``BEGIN`` is sent by the driver (psycopg) or the dialect (SQLite), not as a statement.
        """
        c = self.counts
        return c["statements"] + c["begin"] + c["commit"] + c["rollback"] + c["ping"]

    def backend_cpu(self) -> float:
        """CPU seconds used so far by the PostgreSQL backends this engine's connections talk to."""
        return load.cpu_seconds(sorted(self.backends)) if self.backends else 0.0


def measure(meter: Meter, label: str, requests: int, run: Any, show: bool, threads: int = 1) -> str:
    """Run one request to warm up (listing its statements), then ``requests`` of them; one table row.

    With ``threads`` > 1 the requests are spread over that many threads at once (group commit
    then shares transactions between them, as under a served load).
    """
    meter.reset()
    run()
    if show:
        log(f"statements of one {label}:")
        for statement in meter.statements:
            log(f"    {statement}")
    meter.reset()
    backend_before = meter.backend_cpu()
    started, cpu = time.perf_counter(), time.process_time()
    if threads == 1:
        for _ in range(requests):
            run()
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(lambda _: run(), range(requests)))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    backend_cpu = meter.backend_cpu() - backend_before
    c, n = meter.counts, requests
    pg = f"{backend_cpu / n * 1000:.2f}" if meter.postgres else "–"
    return (
        f"| {label} | {c['statements'] / n:.1f} | {(c['begin']) / n:.1f} | {meter.round_trips / n:.1f} "
        f"| {cpu / n * 1000:.2f} | {pg} | {seconds / n * 1000:.2f} |"
    )


def main() -> None:
    """Print one table: statements, transactions, round trips and CPU per read and per create."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--threads", type=int, default=1, help="requests at once (in threads)")
    parser.add_argument("--show", action="store_true", help="list the statements of one request of each kind")
    args = parser.parse_args()
    with backend(args.backend) as settings:
        services = build_services(settings)
        nir = "1850575000011"
        opener = Principal(kind=ActorKind.PATIENT, subject=nir, identifier=Identifier(system=INS, value=nir))
        patient = services.records.records(opener).create(
            {"resourceType": "Patient", "identifier": [{"system": INS, "value": nir}]}
        )
        patient_id = patient.stored.resource_id
        principal = Principal(kind=ActorKind.PATIENT, subject=nir, patient_id=patient_id)
        observation = heart_rate(patient_id)
        records = services.records.records(principal)
        made = records.create(observation)
        meter = Meter(services.store.engine)
        rows = [
            measure(
                meter,
                "single create",
                args.requests,
                lambda: records.create(observation),
                args.show,
                args.threads,
            ),
            measure(
                meter,
                "single read",
                args.requests,
                lambda: records.read("Observation", made.stored.resource_id),
                args.show,
                args.threads,
            ),
        ]
        services.store.engine.dispose()
    print(
        f"## {args.backend}, in-process, {args.threads} thread(s), {args.requests} requests each; "
        f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}\n"
    )
    print(
        "| request | statements | transactions | round trips | carnet CPU ms | PostgreSQL backend CPU ms "
        "| wall ms |\n|---|---|---|---|---|---|---|"
    )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
