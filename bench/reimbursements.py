"""The reimbursement history (CNAM-HR): how fast Carnet writes, checks and reads it into lines.

Generates ``--patients`` synthetic CNAM-HR documents (``carnet generate --cnam-hr``), then times,
on one core: the generation; the intake check every write of a REMB document pays
(``check_reimbursements``: the header parse plus the full read, refusing a malformed one); and
the read into lines each timeline view pays per history; then ``recent_dispensations`` over
them. Prints documents per second, lines per second and per-document latency percentiles.
Usage::

    .venv/bin/python bench/reimbursements.py            # 200 patients
    .venv/bin/python bench/reimbursements.py --quick    # 40 patients
"""

from __future__ import annotations

import argparse
import base64
import time
from collections.abc import Callable

from run import log, percentile

from carnet.feeds.cnam_hr import read_reimbursements
from carnet.services.document_checks import check_reimbursements
from carnet.services.reimbursements import Timeline, TimelineLine, recent_dispensations
from carnet.synthetic import generate_population

REMB = {"type": {"coding": [{"code": "REMB"}]}}


def _histories(patients: int, seed: int) -> tuple[list[bytes], float]:
    started = time.perf_counter()
    found: list[bytes] = []
    for item in generate_population(patients, seed, cnam_hr=True):
        binaries = {entry["fullUrl"]: entry["resource"] for entry in item.bundle["entry"]}
        for entry in item.bundle["entry"]:
            resource = entry["resource"]
            if (
                resource["resourceType"] == "DocumentReference"
                and resource["type"]["coding"][0]["code"] == "REMB"
            ):
                url = resource["content"][0]["attachment"]["url"]
                found.append(base64.b64decode(binaries[url]["data"]))
    return found, time.perf_counter() - started


def _timed(documents: list[bytes], run: Callable[[bytes], object]) -> list[float]:
    times: list[float] = []
    for raw in documents:
        started = time.perf_counter()
        run(raw)
        times.append(time.perf_counter() - started)
    return times


def _report(name: str, times: list[float], lines: int) -> None:
    total = sum(times)
    print(
        f"{name:<22} {len(times) / total:8.0f} docs/s {lines / total:10.0f} lines/s  "
        f"p50 {percentile(times, 0.5) * 1000:6.2f} ms  p99 {percentile(times, 0.99) * 1000:6.2f} ms"
    )


def main() -> None:
    """Run the measures and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="40 patients")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    patients = 40 if args.quick else args.patients
    log(f"generating {patients} CNAM-HR histories…")
    documents, generation = _histories(patients, args.seed)
    histories = [read_reimbursements(raw) for raw in documents]
    lines = sum(len(h.lines) for h in histories)
    sizes = sorted(len(raw) for raw in documents)
    print(
        f"{len(documents)} CNAM-HR documents, {lines} lines ({lines / len(documents):.0f} per document), "
        f"{sizes[len(sizes) // 2] / 1000:.0f} KB median, {sizes[-1] / 1000:.0f} KB max"
    )
    print(f"{'generate (whole patient)':<22} {len(documents) / generation:8.0f} docs/s")
    _report("intake check", _timed(documents, lambda raw: check_reimbursements(REMB, raw, "bench")), lines)
    _report("read into lines", _timed(documents, read_reimbursements), lines)
    started = time.perf_counter()
    for history in histories:
        timeline = Timeline(
            lines=tuple(TimelineLine(line=line, document_id="d") for line in history.lines), documents=1
        )
        recent_dispensations(timeline, [])
    elapsed = time.perf_counter() - started
    print(f"{'recent dispensations':<22} {len(histories) / elapsed:8.0f} docs/s")


if __name__ == "__main__":
    main()
