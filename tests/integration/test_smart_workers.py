"""``carnet serve --workers 2``: an app the patient revokes in the portal is refused by both workers at once.

The real command runs two uvicorn worker processes on one listening socket, each with its own app,
token verifier and caches, over one SQLite store. The app's requests are sent concurrently on fresh
connections so that both workers serve them (the kernel hands each connection to whichever worker
accepts first); before the revocation every one is answered 200, after it every one is a 401.
"""

from __future__ import annotations

import html
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from carnet.api.app import build_services
from carnet.demo import seed_population
from carnet.domain.principal import ActorKind, Principal
from carnet.services.apps import AppKind
from carnet.settings import Settings
from served import free_port, serve_env, wait_until_up

REQUESTS = 24


@dataclass(frozen=True, slots=True, kw_only=True)
class Granted:
    """A server of two workers, a patient who granted an app, and the app's tokens."""

    base: str
    patient_id: str
    identifier: str
    access_token: str
    refresh_token: str


@pytest.fixture
def granted(tmp_path: Path) -> Iterator[Granted]:
    """Seed a patient, register and grant an app, then start ``carnet serve --workers 2`` on that store."""
    port = free_port()
    env = serve_env(tmp_path, port)
    settings = Settings(
        data_dir=tmp_path / "data", key_dir=tmp_path / "keys", base_url=env["CARNET_BASE_URL"]
    )
    services = build_services(settings)
    try:
        patient = seed_population(services.records, patients=1, seed=2026)[0]
        services.apps.register(
            name="Tensio",
            kind=AppKind.PUBLIC,
            redirect_uris=("http://127.0.0.1:9/callback",),
            scopes=("launch/patient", "offline_access", "patient/Observation.rs"),
            client_id="tensio",
            loopback_http=True,
        )
        holder = Principal(kind=ActorKind.PATIENT, subject="patient:holder", patient_id=patient.patient_id)
        services.apps.grant(holder, "tensio", ("patient/Observation.rs",), None)
        tokens = services.apps.issue(
            client_id="tensio",
            patient_id=patient.patient_id,
            subject="patient:holder",
            scope="launch/patient offline_access patient/Observation.rs",
            family="workers-test",
            refresh=True,
        )
    finally:
        services.store.engine.dispose()
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "carnet", "serve", "--workers", "2"],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_up(process, f"{env['CARNET_BASE_URL']}/metadata", log)
        yield Granted(
            base=f"http://127.0.0.1:{port}",
            patient_id=patient.patient_id,
            identifier=f"{patient.ins_system}|{patient.ins_value}",
            access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"],
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _statuses(granted: Granted, token: str) -> list[httpx.Response]:
    """Send the app's read concurrently, each on a fresh connection; return the answers."""

    def one(_: int) -> httpx.Response:
        with httpx.Client(base_url=granted.base, timeout=30) as client:
            return client.get(
                "/fhir/Observation",
                params={"patient": granted.patient_id},
                headers={"Authorization": f"Bearer {token}", "Connection": "close"},
            )

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, range(REQUESTS)))


def _csrf(text: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', text)
    assert found is not None
    return found.group(1)


def test_a_revocation_in_the_portal_holds_on_both_workers_at_once(granted: Granted) -> None:
    """Before: every worker serves the app (200). Revoked in « Mes applications »: every worker answers 401 invalid_token."""
    assert {answer.status_code for answer in _statuses(granted, granted.access_token)} == {200}

    with httpx.Client(base_url=granted.base, timeout=30, follow_redirects=True) as browser:
        page = browser.get("/login")
        browser.post(
            "/login",
            data={"csrf_token": _csrf(page.text), "kind": "patient", "identifier": granted.identifier},
        )
        apps = browser.get("/patient/apps")
        assert "Tensio" in apps.text
        done = browser.post(
            "/patient/apps/tensio/revoke", data={"csrf_token": _csrf(apps.text)}, follow_redirects=False
        )
        assert done.status_code == 303

        after = _statuses(granted, granted.access_token)
        assert {answer.status_code for answer in after} == {401}
        assert all('error="invalid_token"' in answer.headers["www-authenticate"] for answer in after)
        refreshed = httpx.post(
            f"{granted.base}/auth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": granted.refresh_token,
                "client_id": "tensio",
            },
        )
        assert (refreshed.status_code, refreshed.json()["error"]) == (400, "invalid_grant")
        history = html.unescape(browser.get("/patient/access").text)
    assert "Tensio, application connectée" in history
    assert "Vous avez révoqué l'accès de cette application" in history
