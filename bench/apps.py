"""What apps cost: an app token's lookup, a measures Bundle's check, a measure's intake, an app's read.

In-process (service layer, no HTTP), on SQLite and (when ``CARNET_TEST_PG_URL`` is set) PostgreSQL:

- ``token lookup``: :meth:`AppService.principal` (SHA-256, one indexed row, the app's registration);
- ``bundle check``: :func:`carnet.feeds.devices.read_measure_bundle` (pure);
- ``measure intake``: :func:`carnet.services.measures.submit_measures`, one new blood pressure per
  call (policy with the patient's grant, dedup lookup, sealed write, journal entry);
- ``duplicate``: the same measure again (found by its key, nothing written but the journal);
- ``app search``: an app's search of the record's Observations (the grant read from the Consents
  on every call) against the same search by the patient.

Usage::

    .venv/bin/python bench/apps.py           # prints a Markdown table per backend
    .venv/bin/python bench/apps.py --quick
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

from run import backend, log

from carnet.api.app import build_services
from carnet.demo import seed_population
from carnet.domain.principal import ActorKind, Principal
from carnet.feeds.devices import read_measure_bundle
from carnet.services.apps import AppKind
from carnet.services.measures import submit_measures

PROFILE = (
    "https://interop.esante.gouv.fr/ig/fhir/mesures/StructureDefinition/mesures-bundle-flux-alimentation"
)


def _bundle(patient_id: str, n: int) -> dict[str, Any]:
    def part(code: str, value: int) -> dict[str, Any]:
        return {
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "valueQuantity": {
                "value": value,
                "unit": "mmHg",
                "system": "http://unitsofmeasure.org",
                "code": "mm[Hg]",
            },
        }

    observation = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": f"2026-{1 + n // 28 % 12:02d}-{1 + n % 28:02d}T{n % 24:02d}:00:00Z",
        "component": [part("8480-6", 100 + n % 80), part("8462-4", 60 + n % 30)],
    }
    return {
        "resourceType": "Bundle",
        "meta": {"profile": [PROFILE]},
        "type": "transaction",
        "entry": [{"resource": observation, "request": {"method": "POST", "url": "Observation"}}],
    }


def _rate(label: str, count: int, work: Callable[[int], object]) -> tuple[str, float, float]:
    started = time.perf_counter()
    for n in range(count):
        work(n)
    elapsed = time.perf_counter() - started
    return label, count / elapsed, 1000 * elapsed / count


def run(name: str, count: int) -> list[tuple[str, float, float]]:
    """Measure each operation ``count`` times on a fresh store of backend ``name``."""
    with backend(name) as settings:
        services = build_services(settings)
        try:
            patient = seed_population(services.records, patients=1, seed=7)[0]
            apps = services.apps
            apps.register(
                name="Bench",
                kind=AppKind.PUBLIC,
                redirect_uris=("https://bench.example/cb",),
                scopes=("patient/Observation.crs",),
                client_id="bench",
            )
            holder = Principal(kind=ActorKind.PATIENT, subject="bench", patient_id=patient.patient_id)
            apps.grant(holder, "bench", ("patient/Observation.crs",), None)
            token = apps.issue(
                client_id="bench",
                patient_id=patient.patient_id,
                subject="bench",
                scope="patient/Observation.crs",
                family="bench",
                refresh=False,
            )["access_token"]
            app = apps.principal(token)
            rows = [
                _rate("token lookup", count * 5, lambda n: apps.principal(token)),
                _rate(
                    "bundle check", count * 5, lambda n: read_measure_bundle(_bundle(patient.patient_id, n))
                ),
                _rate(
                    "measure intake (new)",
                    count,
                    lambda n: submit_measures(services.records, app, _bundle(patient.patient_id, n)),
                ),
                _rate(
                    "measure intake (duplicate)",
                    count,
                    lambda n: submit_measures(services.records, app, _bundle(patient.patient_id, n)),
                ),
            ]
            query = [("patient", f"Patient/{patient.patient_id}"), ("code", "http://loinc.org|85354-9")]
            rows.append(
                _rate(
                    "search as the app",
                    max(count // 5, 5),
                    lambda n: services.records.records(app).search("Observation", query),
                )
            )
            rows.append(
                _rate(
                    "search as the patient",
                    max(count // 5, 5),
                    lambda n: services.records.records(holder).search("Observation", query),
                )
            )
            return rows
        finally:
            services.store.engine.dispose()


def main() -> None:
    """Print one Markdown table per backend."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    count = 50 if parser.parse_args().quick else 200
    backends = ["sqlite"] + (["postgres"] if os.environ.get("CARNET_TEST_PG_URL") else [])
    for name in backends:
        log(f"apps on {name}…")
        print(f"\n### {name}\n\n| operation | per second | ms each |\n|---|---|---|")
        for label, rate, ms in run(name, count):
            print(f"| {label} | {rate:,.0f} | {ms:.2f} |")


if __name__ == "__main__":
    main()
