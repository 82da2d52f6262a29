"""Crypto-shredding reaches backups: a database backup taken before a shred, restored with the
current key directory, does not open the shredded record (issue 11, item 1)."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pkcs11
import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from carnet.api.app import Services, build_services, create_app
from carnet.api.auth import issue_token
from carnet.crypto.aead import AESGCMCipher
from carnet.crypto.shares import ShareLedger
from carnet.domain.errors import RecordShredded
from carnet.domain.principal import ActorKind, Principal
from carnet.services.vault import Vault
from carnet.settings import Settings
from minting import Mint
from records import open_record, post
from softhsm import create_token, is_available

ADMIN = Principal(kind=ActorKind.ADMIN, subject="admin:test")


@dataclasses.dataclass(frozen=True, slots=True)
class Record:
    """A patient's record with one Observation, and the patient's headers."""

    patient_id: str
    observation_id: str
    headers: dict[str, str]
    identifier: str


def _record(client: TestClient, auth: Mint) -> Record:
    patient_id, headers = open_record(client, auth, name=[{"family": "Roux"}])
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "tension 12/8"},
        "subject": {"reference": f"Patient/{patient_id}"},
    }
    response = post(client, "/fhir/Observation", observation, headers)
    assert response.status_code == 201, response.text
    created = client.get(f"/fhir/Patient/{patient_id}", headers=headers).json()["identifier"][0]
    identifier = f"{created['system']}|{created['value']}"
    return Record(
        patient_id=patient_id, observation_id=response.json()["id"], headers=headers, identifier=identifier
    )


def _sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def _pg_target(url: str) -> tuple[str, str]:
    """Split a test PostgreSQL URL into (libpq URL without options, schema)."""
    match = re.search(r"options=-csearch_path%3D(\w+)", url)
    assert match is not None, url
    return url.split("?", 1)[0], unquote(match.group(1))


def copy_database(url: str, backup: Path) -> None:
    """Back the database up as an operator would without Carnet: SQLite's backup API, or pg_dump."""
    if url.startswith("sqlite"):
        with sqlite3.connect(_sqlite_path(url)) as source, sqlite3.connect(backup) as target:
            source.backup(target)
        return
    base, schema = _pg_target(url)
    subprocess.run(["pg_dump", "--format=custom", f"--schema={schema}", f"--file={backup}", base], check=True)


def put_database_back(url: str, backup: Path) -> None:
    """Replace the database by the backup (the server stopped)."""
    if url.startswith("sqlite"):
        path = _sqlite_path(url)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(backup, path)
        return
    base, schema = _pg_target(url)
    subprocess.run(["psql", "-q", "-c", f'DROP SCHEMA "{schema}" CASCADE', base], check=True)
    subprocess.run(["pg_restore", "--no-owner", f"--dbname={base}", str(backup)], check=True)


def _audit_verify(settings: Settings) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CARNET_DATA_DIR": str(settings.data_dir),
        "CARNET_KEY_DIR": str(settings.key_dir),
        "CARNET_DATABASE_URL": settings.effective_database_url,
    }
    return subprocess.run(
        [sys.executable, "-m", "carnet", "audit", "verify"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def _shred_then_restore(settings: Settings, services: Services, client: TestClient, auth: Mint) -> None:
    """Back up, shred the victim, restore the backup with the current keys; check what opens."""
    victim, other = _record(client, auth), _record(client, auth)
    services.journal.issue_checkpoints()  # every log's (on Citus, one per record shard)
    backup = settings.data_dir.parent / "backup.db"
    copy_database(settings.effective_database_url, backup)
    services.key_service.shred(ADMIN, victim.patient_id)
    client.__exit__(None, None, None)  # the server stops before its database is restored (docs/operations.md)
    services.store.engine.dispose()
    close = getattr(services.keys, "close", None)  # a PKCS#11 session: one login per process
    if close is not None:
        close()
    put_database_back(settings.effective_database_url, backup)
    restored = build_services(settings)
    try:
        with TestClient(create_app(settings, restored), base_url="http://testserver") as after:
            read = after.get(f"/fhir/Observation/{victim.observation_id}", headers=victim.headers)
            assert read.status_code == 410, read.text
            assert after.get(f"/fhir/Patient/{victim.patient_id}", headers=victim.headers).status_code == 410
            everything = after.get(f"/fhir/Patient/{victim.patient_id}/$everything", headers=victim.headers)
            assert everything.status_code == 410
            search = after.get(
                "/fhir/Patient", params={"identifier": victim.identifier}, headers=victim.headers
            )
            assert (search.status_code, search.json()["total"]) == (200, 0)
            kept = after.get(f"/fhir/Observation/{other.observation_id}", headers=other.headers)
            assert kept.status_code == 200
            assert kept.json()["code"] == {"text": "tension 12/8"}
        restored.journal.issue_checkpoints()  # as the restored server's checkpointer would
    finally:
        restored.store.engine.dispose()
    verified = _audit_verify(settings)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_backup_taken_before_a_shred_stays_erased(
    settings: Settings, services: Services, client: TestClient, auth: Mint
) -> None:
    """A database backup restored after a shred (current key directory) answers 410 for that record only."""
    _shred_then_restore(settings, services, client, auth)


@pytest.fixture
def hsm_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings on a SQLite file with the KEKs in a fresh SoftHSM2 token."""
    if not is_available():
        if os.environ.get("CI") == "true":
            pytest.fail("SoftHSM2 is not installed; CI must install it before running the tests.")
        pytest.skip("SoftHSM2 is not installed (apt-get install -y softhsm2)")
    monkeypatch.delenv("SOFTHSM2_CONF", raising=False)
    module, label, pin = create_token(tmp_path / "hsm")
    yield Settings(
        data_dir=tmp_path / "data",
        key_dir=tmp_path / "keys",
        database_url=f"sqlite:///{tmp_path / 'data' / 'carnet.sqlite3'}",
        key_provider="pkcs11",
        pkcs11_module=module,
        pkcs11_token=label,
        pkcs11_pin=pin,
    )
    pkcs11.unload(module)


def test_backup_taken_before_a_shred_stays_erased_with_an_hsm(hsm_settings: Settings) -> None:
    """The same with the KEKs in a PKCS#11 token: the share in the key directory is what the shred destroys."""

    def auth(**claims: Any) -> dict[str, str]:
        claims.setdefault("sub", f"{claims.get('kind', 'patient')}:{uuid.uuid4().hex[:8]}")
        token = issue_token(hsm_settings, claims, now=datetime.now(UTC), lifetime=timedelta(hours=1))
        return {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}

    services = build_services(hsm_settings)
    try:
        with TestClient(create_app(hsm_settings, services), base_url="http://testserver") as client:
            _shred_then_restore(hsm_settings, services, client, auth)
    finally:
        services.store.engine.dispose()


def test_shred_destroys_the_share_and_the_key_row(
    settings: Settings, services: Services, client: TestClient, auth: Mint
) -> None:
    """After a shred the key row has no wrapped key and no share id, and the share is gone from the ledger."""
    victim = _record(client, auth)
    with services.store.engine.connect() as connection:
        share_id = connection.execute(
            text("SELECT share_id FROM patient_keys WHERE patient_id = :p"), {"p": victim.patient_id}
        ).scalar_one()
    ledger = ShareLedger(settings.key_dir / "shares")
    assert ledger.get(share_id) is not None
    services.key_service.shred(ADMIN, victim.patient_id)
    assert ledger.get(share_id) is None
    with services.store.engine.connect() as connection:
        row = connection.execute(
            text("SELECT wrapped_key, share_id, status FROM patient_keys WHERE patient_id = :p"),
            {"p": victim.patient_id},
        ).one()
    assert tuple(row) == (None, None, "shredded")


def test_rotation_splits_keys_stored_before_shares(
    settings: Settings, services: Services, client: TestClient, auth: Mint
) -> None:
    """A key wrapped whole (a store from before migration 0004) still opens, and one rotation gives it a share."""
    record = _record(client, auth)
    vault = Vault(keys=services.keys, shares=ShareLedger(settings.key_dir / "shares"), cipher=AESGCMCipher())
    with services.store.session(write=True) as session:
        row = session.get_key(record.patient_id)
        assert row is not None
        assert row.wrapped is not None
        whole = services.keys.wrap(vault.key(session, record.patient_id, datetime.now(UTC)))
        assert session.rewrap_key(record.patient_id, row.wrapped, whole)
    fresh = build_services(settings)  # no key cached from before
    try:
        with TestClient(create_app(settings, fresh), base_url="http://testserver") as after:
            url = f"/fhir/Observation/{record.observation_id}"
            assert after.get(url, headers=record.headers).status_code == 200
            fresh.key_service.rotate(ADMIN)
            with fresh.store.session() as session:
                row = session.get_key(record.patient_id)
            assert row is not None
            assert row.wrapped is not None
            assert row.wrapped.share_id is not None
            assert after.get(url, headers=record.headers).status_code == 200
    finally:
        fresh.store.engine.dispose()


def test_a_shred_elsewhere_takes_effect_at_the_next_read_of_a_remembered_key(
    settings: Settings, services: Services, client: TestClient, auth: Mint
) -> None:
    """A record key this process keeps unwrapped is refused at the next read once another process shreds it."""
    victim, other = _record(client, auth), _record(client, auth)
    assert client.get(f"/fhir/Observation/{victim.observation_id}", headers=victim.headers).status_code == 200
    assert len(services.records.vault.opened) >= 2  # both records' keys are remembered here
    elsewhere = build_services(settings)  # another worker: its own remembered keys
    try:
        elsewhere.key_service.shred(ADMIN, victim.patient_id)
    finally:
        elsewhere.store.engine.dispose()
    read = client.get(f"/fhir/Observation/{victim.observation_id}", headers=victim.headers)
    assert read.status_code in (404, 410), read.text
    assert "tension" not in read.text
    with services.store.session() as session, pytest.raises(RecordShredded):
        services.records.vault.key(session, victim.patient_id, datetime.now(UTC))
    assert client.get(f"/fhir/Observation/{other.observation_id}", headers=other.headers).status_code == 200


def test_a_rotation_elsewhere_is_followed_at_the_next_read(
    settings: Settings, services: Services, client: TestClient, auth: Mint
) -> None:
    """After another process re-wraps every key under a new KEK, a remembered key is unwrapped again."""
    record = _record(client, auth)
    assert client.get(f"/fhir/Observation/{record.observation_id}", headers=record.headers).status_code == 200
    with services.store.session() as session:
        before = session.get_key(record.patient_id)
    elsewhere = build_services(settings)
    try:
        elsewhere.key_service.rotate(ADMIN)
    finally:
        elsewhere.store.engine.dispose()
    with services.store.session() as session:
        after = session.get_key(record.patient_id)
    assert before is not None
    assert after is not None
    assert before.wrapped != after.wrapped
    read = client.get(f"/fhir/Observation/{record.observation_id}", headers=record.headers)
    assert (read.status_code, read.json()["code"]) == (200, {"text": "tension 12/8"})
    assert services.records.vault.opened.get(record.patient_id, after.wrapped or before.wrapped) is not None
