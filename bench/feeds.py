"""A sustained HL7 v2 feed over MLLP: documents of about 100 KB of CDA per second, end to end.

A real ``carnet serve`` (``--workers``, 2 by default, each listening on the MLLP port; sealing,
policy and journal on) listens for a registered lab feed over MLLP (``CARNET_MLLP_PORT``);
``--connections`` clients each send ORU^R01 messages one after the other on their own TCP
connection, each carrying a distinct CDA level 1 document of about 100 KB (a base64 PDF-like
body) for one of ``--patients`` open records. Every message must
come back ``AA``. Prints documents per second and ACK latency percentiles. Usage::

    .venv/bin/python bench/feeds.py                 # 2,000 messages, 8 connections, SQLite
    .venv/bin/python bench/feeds.py --quick         # 300 messages
    CARNET_TEST_PG_URL=… .venv/bin/python bench/feeds.py --backend postgres
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import load
from run import backend, log, percentile

from carnet.api.app import build_services
from carnet.domain.feeds import FeedKind
from carnet.domain.principal import ActorKind, Identifier, Principal
from carnet.feeds import mllp
from carnet.synthetic.hl7v2 import hl7v2_message

INS_ROOT = "1.2.250.1.213.1.4.10"
CDA = """<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <id root="2.25.{number}"/>
  <code code="11502-2" codeSystem="2.16.840.1.113883.6.1" displayName="CR d'examens biologiques"/>
  <title>Compte rendu de biologie {number}</title>
  <effectiveTime value="20261206090000+0100"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
  <languageCode code="fr-FR"/>
  <recordTarget><patientRole><id root="{root}" extension="{ins}"/></patientRole></recordTarget>
  <component><nonXMLBody><text mediaType="application/pdf" representation="B64">{body}</text></nonXMLBody></component>
</ClinicalDocument>
"""


def _ins(number: int) -> str:
    return f"2{number:014d}"


def open_lab(services: Any, patients: int) -> None:
    """Register the bench's lab feed (class 10, sender MSH-3^MSH-4 checked over plain TCP) and open ``patients`` records."""
    services.feeds.add(
        "bench-lab",
        name="Bench lab",
        kind=FeedKind.HL7V2,
        classes=frozenset({"10"}),
        sender="DPI-HOPITAL^HOPITAL-A",
    )
    for number in range(patients):
        ins = _ins(number)
        patient = Principal(
            kind=ActorKind.PATIENT,
            subject=f"p{number}",
            identifier=Identifier(system=f"urn:oid:{INS_ROOT}", value=ins),
        )
        services.records.records(patient).create(
            {"resourceType": "Patient", "identifier": [{"system": f"urn:oid:{INS_ROOT}", "value": ins}]}
        )


def _messages(count: int, patients: int, size: int) -> list[bytes]:
    rng = random.Random(7)
    now = datetime.now(UTC)
    out = []
    for number in range(count):
        pdf = rng.randbytes(size * 3 // 4)  # base64 makes it about ``size`` bytes
        ins = _ins(number % patients)
        cda = CDA.format(
            number=10_000_000 + number, root=INS_ROOT, ins=ins, body=base64.b64encode(pdf).decode()
        )
        out.append(
            hl7v2_message(
                cda.encode(),
                ins=(INS_ROOT, ins),
                type_code="11502-2",
                type_label="CR d'examens biologiques",
                control_id=f"B{number}",
                sent_at=now,
            )
        )
    return out


async def _client(port: int, messages: list[bytes], latencies: list[float]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    frames = mllp.read_frames(reader, max_bytes=1 << 20)
    accepted = 0
    for message in messages:
        started = time.perf_counter()
        writer.write(mllp.frame(message))
        await writer.drain()
        ack = await anext(frames)
        latencies.append(time.perf_counter() - started)
        accepted += b"MSA|AA|" in ack
    writer.close()
    return accepted


async def _burst(port: int, messages: list[bytes], connections: int) -> tuple[int, list[float], float]:
    shares = [messages[i::connections] for i in range(connections)]
    latencies: list[float] = []
    started = time.perf_counter()
    counts = await asyncio.gather(*(_client(port, share, latencies) for share in shares))
    return sum(counts), latencies, time.perf_counter() - started


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    """Run the feed bench and print its numbers."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", default="sqlite", choices=("sqlite", "postgres"))
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--patients", type=int, default=50)
    parser.add_argument("--size", type=int, default=100_000, help="CDA body size in bytes")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--workers", type=int, default=2, help="carnet serve --workers: each listens on the MLLP port"
    )
    args = parser.parse_args()
    if args.quick:
        args.messages = 300
    with backend(args.backend) as settings:
        services = build_services(settings)
        open_lab(services, args.patients)
        services.store.engine.dispose()
        log(f"building {args.messages} messages of ~{args.size // 1000} KB")
        messages = _messages(args.messages, args.patients, args.size)
        http, port = _free_port(), _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CARNET_")}
        env.update(
            CARNET_DATA_DIR=str(settings.data_dir),
            CARNET_KEY_DIR=str(settings.key_dir),
            CARNET_HOST="127.0.0.1",
            CARNET_PORT=str(http),
            CARNET_MLLP_PORT=str(port),
            CARNET_MLLP_FEED="bench-lab",
        )
        if settings.database_url:
            env["CARNET_DATABASE_URL"] = settings.database_url
        log_path = Path(settings.data_dir) / "serve.log"
        with log_path.open("wb") as output:
            server = subprocess.Popen(
                [sys.executable, "-m", "carnet", "serve", "--workers", str(args.workers)],
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    asyncio.run(asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1))
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit(
                            f"carnet serve did not start:\n{log_path.read_text()[-2000:]}"
                        ) from None
                    time.sleep(0.2)
            # Every worker listening before the burst: connections opened while only the first
            # listens all go to it (runs split 99/1 between the workers, at ~3/4 of the rate).
            while load.listeners(port) < args.workers:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(
                        f"only {load.listeners(port)} worker(s) listen:\n{log_path.read_text()[-2000:]}"
                    )
                time.sleep(0.1)
            warm = max(20, args.connections * 2)
            asyncio.run(_burst(port, messages[:warm], args.connections))
            pids = load.worker_pids(server.pid)
            cpu = load.cpu_seconds(pids)
            per_process = [load.cpu_seconds([p]) for p in pids]
            database = load.BackendCPU(settings.database_url)
            own = time.process_time()
            # The connections each worker serves, sampled once the burst's connections are open.
            held: list[int] = []
            sampler = threading.Timer(0.3, lambda: held.extend(load.connections_of(pids, port)))
            sampler.start()
            accepted, latencies, seconds = asyncio.run(_burst(port, messages[warm:], args.connections))
            sampler.join()
            cpu = load.cpu_seconds(pids) - cpu
            used = [load.cpu_seconds([p]) - b for p, b in zip(pids, per_process, strict=True)]
            database_cpu = database.used()
            client_share = (time.process_time() - own) / seconds / (os.cpu_count() or 1)
        finally:
            server.terminate()
            server.wait(timeout=30)
        sent = len(messages) - warm
        # Each worker listens on the MLLP port with SO_REUSEPORT; the kernel hashes each connection to
        # one of them, and the workers even the connections out (carnet.feeds.mllp.Balance).
        split = "/".join(f"{100 * u / max(sum(used), 1e-9):.0f}" for u in used if u > 0.01 * sum(used))
        connections = (
            "/".join(str(n) for n, u in zip(held, used, strict=False) if u > 0.01 * sum(used)) or "–"
        )
        print(
            f"## HL7 v2 over MLLP, {args.backend}, {args.workers} worker(s), {args.connections} connections, "
            f"~{args.size // 1000} KB CDA\n"
        )
        print(
            f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}; the bench's clients used "
            f"{client_share:.0%} of the cores\n"
        )
        print(
            "| messages | AA | seconds | documents/s | server CPU ms/document | PostgreSQL backends' CPU "
            "ms/document | ACK p50 ms | ACK p95 ms | ACK p99 ms | CPU split between workers % | "
            "connections per worker |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        print(
            f"| {sent} | {accepted} | {seconds:.1f} | {accepted / seconds:.0f} | {1000 * cpu / max(sent, 1):.1f} | "
            f"{1000 * database_cpu / max(sent, 1):.1f} | "
            f"{percentile(latencies, 0.5) * 1000:.0f} | {percentile(latencies, 0.95) * 1000:.0f} | "
            f"{percentile(latencies, 0.99) * 1000:.0f} | {split} | {connections} |"
        )
        if accepted != sent:
            raise SystemExit(f"{sent - accepted} messages were not acknowledged AA")


if __name__ == "__main__":
    main()
