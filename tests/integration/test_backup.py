"""The restore drill: `carnet backup`, a shred, the database lost, `carnet restore` (issue 11, item 10)."""

from __future__ import annotations

import base64
import os
import sqlite3
import stat
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from starlette.testclient import TestClient

from carnet.api.app import Services, build_services, create_app
from carnet.domain.principal import ActorKind, Principal
from carnet.settings import Settings
from minting import Mint
from records import open_record, post

ADMIN = Principal(kind=ActorKind.ADMIN, subject="admin:test")
PDF = b"%PDF-1.4\n% a test document for the restore drill\n%%EOF\n"
SIMPLIFIED = (
    "https://profiles.ihe.net/ITI/MHD/StructureDefinition/IHE.MHD.SimplifiedPublish.DocumentReference"
)


def _carnet(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CARNET_DATA_DIR": str(settings.data_dir),
        "CARNET_KEY_DIR": str(settings.key_dir),
        "CARNET_DATABASE_URL": settings.effective_database_url,
        # Wide enough that rich never wraps an error naming a long temporary path.
        "COLUMNS": "1000",
    }
    return subprocess.run(
        [sys.executable, "-m", "carnet", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def _fill(client: TestClient, auth: Mint) -> tuple[str, dict[str, str], list[str]]:
    """Create a record with an Observation and a PDF document; return its id, headers and read URLs."""
    patient_id, headers = open_record(client, auth, name=[{"family": "Lefèvre", "given": ["Anaïs"]}])
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "glycémie 1.05 g/L"},
        "valueQuantity": {"value": 1.050, "unit": "g/L"},
        "subject": {"reference": f"Patient/{patient_id}"},
    }
    made = post(client, "/fhir/Observation", observation, headers)
    assert made.status_code == 201, made.text
    document = {
        "resourceType": "DocumentReference",
        "meta": {"profile": [SIMPLIFIED]},
        "masterIdentifier": {
            "system": "urn:ietf:rfc:3986",
            "value": f"urn:oid:1.2.250.1.999.{patient_id[:8]}",
        },
        "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "11488-4"}]},
        "category": [{"coding": [{"system": "urn:oid:1.2.250.1.213.1.1.4.1", "code": "10"}]}],
        "subject": {"reference": f"Patient/{patient_id}"},
        "date": "2024-05-02T10:00:00+02:00",
        "content": [
            {"attachment": {"contentType": "application/pdf", "data": base64.b64encode(PDF).decode()}}
        ],
    }
    stored = post(client, "/fhir/DocumentReference", document, headers)
    assert stored.status_code == 201, stored.text
    urls = [
        f"/fhir/Patient/{patient_id}",
        f"/fhir/Observation/{made.json()['id']}",
        f"/fhir/DocumentReference/{stored.json()['id']}",
        f"/fhir/{stored.json()['content'][0]['attachment']['url']}",
    ]
    return patient_id, headers, urls


def _lose_the_database(settings: Settings) -> None:
    url = settings.effective_database_url
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    schema = url.rsplit("%3D", 1)[1]
    engine = create_engine("postgresql+psycopg://" + url.split("://", 1)[1].split("?", 1)[0])
    with engine.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def test_restore_drill(settings: Settings, services: Services, client: TestClient, auth: Mint) -> None:
    """A restored store reads byte-identical resources and documents, stays erased, and its journal verifies."""
    kept = [_fill(client, auth) for _ in range(2)]
    victim_id, _, victim_urls = _fill(client, auth)
    victim_headers = auth(kind="patient", patient=victim_id)  # the identity index is erased with the record
    before = {url: client.get(url, headers=headers).content for _, headers, urls in kept for url in urls}
    assert all(before.values())
    assert PDF in before.values()
    services.journal.issue_checkpoints()  # every log's (on Citus, one per record shard)
    database_backup = settings.data_dir.parent / "backups" / "drill.backup"
    made = _carnet(settings, "backup", "--out", str(database_backup))
    assert made.returncode == 0, made.stderr
    key_backup = settings.data_dir.parent / "key-backups" / "keys.tar.gz"
    keyed = _carnet(settings, "keys", "backup", "--out", str(key_backup))
    assert keyed.returncode == 0, keyed.stderr
    assert stat.S_IMODE(database_backup.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_backup.stat().st_mode) == 0o600
    with tarfile.open(key_backup) as archive:
        names = archive.getnames()
    assert any(name.startswith("./shares/") for name in names)
    assert not any("sqlite" in name for name in names)

    services.key_service.shred(ADMIN, victim_id)
    client.__exit__(None, None, None)  # the server stops before its database is restored (docs/operations.md)
    services.store.engine.dispose()
    _lose_the_database(settings)
    restored = _carnet(settings, "restore", str(database_backup), "--yes")
    assert restored.returncode == 0, restored.stderr
    assert "1 record(s) shredded since the backup erased again" in restored.stderr

    fresh = build_services(settings)
    try:
        with TestClient(create_app(settings, fresh), base_url="http://testserver") as after:
            for _, headers, urls in kept:
                for url in urls:
                    read = after.get(url, headers=headers)
                    assert (read.status_code, read.content) == (200, before[url]), url
            for url in victim_urls:
                assert after.get(url, headers=victim_headers).status_code == 410, url
        fresh.journal.issue_checkpoints()  # as the restored server's checkpointer would
        with fresh.store.engine.connect() as connection:
            left = connection.execute(
                text("SELECT count(*) FROM identities WHERE patient_id = :p"), {"p": victim_id}
            ).scalar_one()
        assert left == 0
    finally:
        fresh.store.engine.dispose()
    verified = _carnet(settings, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_backup_refuses_to_overwrite(settings: Settings, services: Services) -> None:
    """`carnet backup --out` an existing file, or `carnet restore` of a missing one, fails with a clear message."""
    existing = settings.data_dir.parent / "exists.backup"
    existing.write_bytes(b"keep me")
    refused = _carnet(settings, "backup", "--out", str(existing))
    assert refused.returncode == 1
    assert "exists already" in refused.stderr
    assert existing.read_bytes() == b"keep me"
    missing = _carnet(settings, "restore", str(settings.data_dir.parent / "nothing.backup"), "--yes")
    assert missing.returncode == 1
    assert "is not a file" in missing.stderr


def test_backup_under_concurrent_writes_is_consistent(
    settings: Settings, services: Services, client: TestClient, auth: Mint
) -> None:
    """`carnet backup` taken while records are being written gives a copy whose journal verifies."""
    if not settings.effective_database_url.startswith("sqlite"):
        pytest.skip("pg_dump's snapshot is PostgreSQL's own guarantee; the drill covers restoring it")
    patient_id, headers = open_record(client, auth)
    stop = threading.Event()
    written = 0

    def write() -> None:
        nonlocal written
        while not stop.is_set():
            body = {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": f"pouls {60 + written % 40}"},
                "subject": {"reference": f"Patient/{patient_id}"},
            }
            assert post(client, "/fhir/Observation", body, headers).status_code == 201
            written += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        while written < 5:
            time.sleep(0.05)
        services.journal.checkpoint(0)  # a checkpoint signed while the writes go on
        copy = settings.data_dir.parent / "backups" / "online.sqlite3"
        made = _carnet(settings, "backup", "--out", str(copy))
    finally:
        stop.set()
        writer.join()
    assert made.returncode == 0, made.stderr
    verified = _carnet(settings, "audit", "verify", "--database", f"sqlite:///{copy}")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    with sqlite3.connect(copy) as connection:
        versions = connection.execute("SELECT count(*) FROM resource_versions").fetchone()[0]
    assert versions >= 5
