"""cProfile of reading one 500-resource record in-process: ``$everything`` and the searches of ``run.py``.

Works on a store cached by ``bench/run.py --cache DIR`` (a fresh copy of it, nothing changed),
through the whole ASGI application (token, policy, journal, sealing, JSON) without a socket, one
request at a time, on an event loop in the main thread with ``offload`` run inline (so that
cProfile, which sees one thread, sees all the work; the server runs it in worker threads). Prints p50/p95 and CPU per request of each kind, then cProfile's top functions
by own time and by cumulative time, for the kind(s) asked. Usage::

    .venv/bin/python bench/profile_record.py --cache /work/bench-cache [--backend postgres] \\
        [--store 10000] [--rounds 50] [--only everything] > bench/profiles/record-sqlite.txt
    .venv/bin/python bench/profile_record.py --cache /work/bench-cache --explain   # SQL plans too
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import io
import json
import os
import pstats
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from profile_feed import _standard
from run import SEARCHES, cache_dir, cached_backend, headers_for, log, percentile
from sqlalchemy import event

import carnet.offload
from carnet.api.app import build_services, create_app


async def inline(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """``offload`` without the thread: the work runs where cProfile looks."""
    return fn(*args, **kwargs)


class Client:
    """A synchronous face on ``httpx.AsyncClient`` over the ASGI app, on one event loop (this thread)."""

    def __init__(self, app: Any) -> None:
        self.loop = asyncio.new_event_loop()
        transport = httpx.ASGITransport(app=app)
        self.client = httpx.AsyncClient(transport=transport, base_url="http://carnet.test")

    def get(self, url: str, headers: dict[str, str]) -> httpx.Response:
        """One GET, run to its end."""
        return self.loop.run_until_complete(self.client.get(url, headers=headers))

    def close(self) -> None:
        """Close the client and the loop."""
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()


def measure(client: Client, urls: dict[str, str], headers: dict[str, str], rounds: int) -> None:
    """Time each kind of request ``rounds`` times; print p50, p95 and CPU per request."""
    for name, url in urls.items():
        wall: list[float] = []
        cpu = time.process_time()
        for _ in range(rounds):
            started = time.perf_counter()
            answer = client.get(url, headers=headers)
            wall.append(1000 * (time.perf_counter() - started))
            if answer.status_code != 200:
                raise SystemExit(f"{name}: {answer.status_code} {answer.text[:300]}")
        cpu_ms = 1000 * (time.process_time() - cpu) / rounds
        print(
            f"{name}: p50 {percentile(wall, 0.5):.1f} ms, p95 {percentile(wall, 0.95):.1f} ms, "
            f"CPU {cpu_ms:.1f} ms/request (in-process, one at a time)"
        )


def statements(client: Client, engine: Any, url: str, headers: dict[str, str]) -> list[tuple[str, Any]]:
    """The SQL statements one request runs (with their parameters)."""
    seen: list[tuple[str, Any]] = []

    def keep(_conn: object, _cursor: object, statement: str, parameters: Any, *_: object) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", keep)
    try:
        client.get(url, headers=headers)
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    return seen


def explain(engine: Any, statement: str, parameters: Any) -> str:
    """EXPLAIN QUERY PLAN (SQLite) or EXPLAIN ANALYZE (PostgreSQL) of one SELECT."""
    sqlite = engine.dialect.name == "sqlite"
    prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN (ANALYZE, BUFFERS) "
    with engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        cursor = raw.cursor()
        cursor.execute(prefix + statement, parameters)
        rows = cursor.fetchall()
    return "\n".join(("  " + " | ".join(str(c) for c in row)) for row in rows)


def main() -> None:
    """Parse arguments, open the cached record, measure, profile, print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--store", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--only", help="profile this kind only (everything, or a search's name)")
    parser.add_argument("--explain", action="store_true", help="print the plans of the SELECTs too")
    parser.add_argument("--top", type=int, default=35)
    args = parser.parse_args()
    directory = cache_dir(args.cache, args.backend, args.store)
    info = json.loads((directory / "ready.json").read_text())
    print(
        f"{args.backend}, store of {args.store:,} patients, record of {info['resources']} resources; "
        f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    with cached_backend(args.backend, directory, args.store) as cached:
        # One principal sends hundreds of requests a minute here: no rate limit (as run.py's server).
        settings = dataclasses.replace(cached, api_rate_per_minute=0)
        services = build_services(settings)
        app = create_app(settings, services, background=False)
        patient_id = info["patient_id"]
        headers = headers_for(settings, kind="patient", patient=patient_id)
        urls = {"everything": f"/fhir/Patient/{patient_id}/$everything"}
        urls.update({name: url.format(p=patient_id) for name, url in SEARCHES.items()})
        carnet.offload.run_in_threadpool = inline  # type: ignore[assignment]
        client = Client(app)
        if True:
            for url in urls.values():
                client.get(url, headers=headers)  # warm: caches, prepared statements
            measure(client, urls, headers, args.rounds)
            chosen = {k: v for k, v in urls.items() if args.only is None or k == args.only}
            for name, url in chosen.items():
                profile = _standard("cProfile").Profile()
                profile.enable()
                for _ in range(args.rounds):
                    client.get(url, headers=headers)
                profile.disable()
                for order in ("tottime", "cumulative"):
                    out = io.StringIO()
                    pstats.Stats(profile, stream=out).sort_stats(order).print_stats(args.top)
                    text = out.getvalue()
                    text = text[text.index("ncalls") :] if "ncalls" in text else text
                    print(f"\n## {name}: {args.rounds} requests, by {order}\n")
                    print(text.replace(str(Path.cwd()) + "/", ""))
            if args.explain:
                for name, url in chosen.items():
                    print(f"\n## {name}: SQL statements and plans\n")
                    for statement, parameters in statements(client, services.store.engine, url, headers):
                        print(statement.strip().replace("\n", " ")[:400])
                        if statement.lstrip().upper().startswith("SELECT"):
                            print(explain(services.store.engine, statement, parameters))
        client.close()
        services.store.engine.dispose()
    log("done")


if __name__ == "__main__":
    main()
