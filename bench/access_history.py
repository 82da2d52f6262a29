"""The patient's access history page: how long it takes to tell a record's journal as visits.

In-process (the real app over httpx's ASGI transport, no network), SQLite, sealing on. One
synthetic patient; a physician the patient authorised reads documents in ``--visits`` sittings
of ``--reads`` reads each (an hour apart, so each sitting is one visit); then the patient opens
``/patient/access`` (its first page: the journal read back until 30 whole visits), walks every
older page (``?before=``) to the journal's start, and the grouping alone is timed on the newest
1,000 AuditEvents; then a search in the record that reads inside the documents (words no title
holds). Prints Markdown tables. Usage::

    .venv/bin/python bench/access_history.py            # 10 visits x 100 reads
    .venv/bin/python bench/access_history.py --visits 40 --reads 50   # 2,000 reads, 2 pages
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from starlette.testclient import TestClient

from carnet.api.app import build_services, create_app
from carnet.demo import demo_people, seed_population
from carnet.domain.consent import ConsentKind
from carnet.domain.principal import ActorKind, Principal
from carnet.services.choices import record_choice
from carnet.settings import Settings
from carnet.web.access_visits import group_visits, read_access

DOCTOR = "810001234567"


def main() -> None:
    """Seed, read, and time the history page and the grouping."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--visits", type=int, default=10)
    parser.add_argument("--reads", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="carnet-bench-history-"))
    settings = Settings(
        data_dir=root / "data",
        key_dir=root / "keys",
        api_rate_per_minute=6_000_000,
        api_burst=100_000,
        login_rate_per_minute=100_000,
    )
    services = build_services(settings)
    patient = seed_population(services.records, patients=1, seed=2026)[0]
    holder = Principal(kind=ActorKind.PATIENT, subject="bench", patient_id=patient.patient_id)
    record_choice(services.records, holder, patient.patient_id, ConsentKind.AUTHORISATION, DOCTOR)
    doctor = Principal(
        kind=ActorKind.PROFESSIONAL, subject=f"idnps:{DOCTOR}", professional_id=DOCTOR, profession="10"
    )
    documents = [
        str(d["id"])
        for d in services.records.records(holder)
        .search("DocumentReference", [("patient", f"Patient/{patient.patient_id}")])
        .resources
    ]
    clock_start = services.records.gate.clock()
    for visit in range(args.visits):
        # Each sitting an hour after the last: the gate's clock is moved, as time would.
        moment = clock_start + timedelta(hours=visit - args.visits)
        services.records.gate.clock = lambda moment=moment: moment
        reads = services.records.records(doctor)
        for index in range(args.reads):
            reads.read("DocumentReference", documents[index % len(documents)])
    services.records.gate.clock = lambda: clock_start
    with TestClient(
        create_app(settings, services, demo_people=demo_people()), base_url="http://testserver"
    ) as client:
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
        assert token is not None
        client.post(
            "/login",
            data={
                "csrf_token": token.group(1),
                "kind": "patient",
                "identifier": f"{patient.ins_system}|{patient.ins_value}",
            },
        )
        pages = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            page = client.get("/patient/access")
            pages.append(time.perf_counter() - started)
            assert page.status_code == 200
        shown = page.text.count('class="visit ')
        walks, pages_walked = [], 0
        for _ in range(args.rounds):
            started, path, pages_walked = time.perf_counter(), "/patient/access", 0
            while path:
                answer = client.get(path)
                pages_walked += 1
                older = re.search(
                    r'href="(/patient/access\?[^"]*before=[^"]+)" id="access-older"', answer.text
                )
                path = older.group(1).replace("&amp;", "&") if older else ""
            walks.append(time.perf_counter() - started)
        searches = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            found = client.get("/patient/search", params={"q": "zzzz-nowhere"})  # every document read
            searches.append(time.perf_counter() - started)
            assert found.status_code == 200
        documents_read = len(documents)
    events = (
        services.records.records(holder)
        .search("AuditEvent", [("patient", f"Patient/{patient.patient_id}"), ("_count", "1000")])
        .resources
    )
    groupings = []
    for _ in range(args.rounds):
        started = time.perf_counter()
        visits = group_visits(read_access(e, holder.subject) for e in events)
        groupings.append(time.perf_counter() - started)
    print(
        f"| newest entries grouped alone | visits on the first page | GET /patient/access (median of {args.rounds}) | grouping alone |"
    )
    print("|---|---|---|---|")
    print(
        f"| {len(events)} ({len(visits)} visits incl. the patient's own) | {shown} "
        f"| {statistics.median(pages) * 1000:.0f} ms | {statistics.median(groupings) * 1000:.1f} ms |"
    )
    print()
    print(
        f"| every page walked ({pages_walked} pages, median of {args.rounds}) | search inside {documents_read} documents |"
    )
    print("|---|---|")
    print(f"| {statistics.median(walks) * 1000:.0f} ms | {statistics.median(searches) * 1000:.0f} ms |")
    services.store.engine.dispose()


if __name__ == "__main__":
    main()
