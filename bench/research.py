"""A research study's bulk export over a generated population: resources/s and peak RSS.

Loads ``--patients`` generated patients (each opens their record with a transaction Bundle,
in-process, sealing on) in a child process, then, in a fresh process that did nothing else,
registers and approves a public-interest study and runs its export (cohort pass, then the
pseudonymised, k-anonymous, journaled export pass). Prints one Markdown row: patients,
resources read, resources exported, seconds, resources/s, peak RSS of the exporting process.
Peak RSS should not grow with the number of patients (records are walked in batches by id).
Usage::

    .venv/bin/python bench/research.py                      # 10,000 patients on SQLite
    .venv/bin/python bench/research.py --patients 1000
    .venv/bin/python bench/research.py --cache ~/.cache/carnet-bench   # load once, export many times
    CARNET_TEST_PG_URL=postgresql://… .venv/bin/python bench/research.py --backend postgres

With ``--cache DIR`` (SQLite), the loaded population is kept in ``DIR/sqlite-<N>`` (its database
and key directory) and every run exports from a fresh copy of it: loading 10,000 patients takes
a while on a small machine, the export is what is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from run import backend, log
from sqlalchemy import event

from carnet.api.app import build_services
from carnet.api.fhir import parse_entries
from carnet.domain.principal import ActorKind, Identifier, Principal
from carnet.services.research_ports import ExportStatus
from carnet.settings import Settings
from carnet.synthetic import generate_population

ADMIN = Principal(kind=ActorKind.ADMIN, subject="admin:bench")
DPO = Principal(kind=ActorKind.DPO, subject="dpo:bench")
RESEARCHER = Principal(kind=ActorKind.RESEARCHER, subject="researcher:bench")
STUDY = {
    "title": "Bench",
    "sponsor": "Carnet",
    "purpose": "Measure the export.",
    "legalBasis": "public-interest",
    "approvalReference": "BENCH-1",
    "period": {"start": "2020-01-01", "end": "2099-12-31"},
    "data": {
        "types": ["Condition", "Observation", "Immunization", "AllergyIntolerance", "MedicationStatement"]
    },
    "privacy": {"k": 5, "epsilon": 1.0, "dateShiftDays": 30, "maxSuppression": 0.05},
}


def load(settings: Settings, patients: int) -> None:
    """Open one record per generated patient, in-process (no HTTP)."""
    services = build_services(settings)
    started = time.perf_counter()
    for index, item in enumerate(generate_population(patients, 7, documents_per_patient=0)):
        system, value = item.ins
        principal = Principal(
            kind=ActorKind.PATIENT,
            subject=f"patient:{value}",
            identifier=Identifier(system=system, value=value),
        )
        services.records.records(principal).transaction(parse_entries(orjson.loads(item.to_json())))
        if index % 500 == 499:
            log(f"loaded {index + 1} patients ({time.perf_counter() - started:.0f} s)")
    services.store.engine.dispose()


def export(settings: Settings) -> dict[str, float]:
    """Register, approve and export the study; return the measures."""
    services = build_services(settings)
    services.studies.register(ADMIN, "bench", STUDY)
    services.studies.approve(DPO, "bench")
    with services.store.session() as session:
        records = session.count_keys() - 3  # the directory's, the index's and the study's keys
    statements = {"all": 0, "offset": 0}

    def count(_conn: object, _cursor: object, statement: str, parameters: object, *_: object) -> None:
        # SQLite's dialect writes "LIMIT ? OFFSET ?" for every LIMIT: an OFFSET of 0 skips nothing.
        statements["all"] += 1
        if re.search(r"\bOFFSET\b", statement, re.IGNORECASE):
            offset = list(parameters)[-1] if isinstance(parameters, (list, tuple)) else None
            statements["offset"] += offset != 0

    event.listen(services.store.engine, "before_cursor_execute", count)
    started, cpu = time.perf_counter(), time.process_time()
    job = services.research.start(RESEARCHER, "bench")
    done = services.research.run(RESEARCHER, job.export_id)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    load = os.getloadavg()[0]
    if done.status is not ExportStatus.DONE or done.summary is None:
        raise SystemExit(f"the export failed: {done.error}")
    exported = sum(done.summary["types"].values())
    services.store.engine.dispose()
    return {
        "records": records,
        "patients": done.summary["patients"],
        "suppressed": done.summary["suppressed"],
        "exported": exported,
        "seconds": seconds,
        "cpu": cpu,
        "load": load,
        "statements": statements["all"],
        "offset_statements": statements["offset"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_child(settings: Settings, patients: int, step: str) -> str:
    """Run one step (load, export) in a fresh child process; return what it printed."""
    shared = json.dumps(
        {
            "data_dir": str(settings.data_dir),
            "key_dir": str(settings.key_dir),
            "database_url": settings.database_url,
        }
    )
    me = [sys.executable, __file__, "--patients", str(patients), "--settings", shared, "--step", step]
    return subprocess.run(me, check=True, capture_output=step == "export", text=True).stdout


def cached_run(root: Path, patients: int) -> dict[str, float]:
    """Load the population into ``root`` once (kept), then export from a fresh copy of it."""
    if not (root / "loaded").exists():
        shutil.rmtree(root, ignore_errors=True)
        settings = Settings(data_dir=root / "data", key_dir=root / "keys")
        started = time.perf_counter()
        run_child(settings, patients, "load")
        (root / "loaded").write_text(f"{patients} patients loaded in {time.perf_counter() - started:.0f} s\n")
    log(f"population: {(root / 'loaded').read_text().strip()} ({root})")
    with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
        copy = Path(tmp)
        shutil.copytree(root / "data", copy / "data")
        shutil.copytree(root / "keys", copy / "keys")
        return dict(
            json.loads(run_child(Settings(data_dir=copy / "data", key_dir=copy / "keys"), patients, "export"))
        )


def main() -> None:
    """Parse the arguments; load in a child process, export in another, print the row."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--cache", type=Path, help="keep the loaded population here (SQLite)")
    parser.add_argument("--step", choices=("load", "export"), help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step is not None:
        raw = json.loads(args.settings)
        settings = Settings(
            data_dir=Path(raw["data_dir"]), key_dir=Path(raw["key_dir"]), database_url=raw["database_url"]
        )
        if args.step == "load":
            load(settings, args.patients)
        else:
            print(json.dumps(export(settings)))
        return
    started = time.perf_counter()
    if args.cache is not None:
        if args.backend != "sqlite":
            raise SystemExit("--cache keeps a SQLite population only.")
        m = cached_run(args.cache.expanduser() / f"sqlite-{args.patients}", args.patients)
    else:
        with backend(args.backend) as settings:
            run_child(settings, args.patients, "load")
            log(f"loaded {args.patients} patients in {time.perf_counter() - started:.0f} s")
            m = json.loads(run_child(settings, args.patients, "export"))
    print(
        "| backend | patients | exported patients (suppressed) | resources exported | s | resources/s "
        "| resources/CPU-s | peak RSS | SQL statements (skipping rows by OFFSET) | load average |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.backend} | {m['records']:,} | {m['patients']:,} ({m['suppressed']:,}) | {m['exported']:,} | "
        f"{m['seconds']:.1f} | {m['exported'] / m['seconds']:,.0f} | {m['exported'] / m['cpu']:,.0f} | "
        f"{m['peak_rss_mb']:.0f} MB | {m['statements']:,} ({m['offset_statements']}) | {m['load']:.1f} |"
    )


if __name__ == "__main__":
    main()
