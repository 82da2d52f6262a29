"""A research pipeline as a SMART backend service: client_credentials + private_key_jwt, then a study's $export.

The operator registers the pipeline with ``carnet apps add --kind backend --acts-as study:<id>``;
the pipeline gets its token from ``/auth/token`` (RS384 client assertion) and runs the whole
bulk-data exchange over HTTP with that token only. A token without the read scope of what it
exports, or used for another study, is refused 403 and nothing is exported.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc.jwk import RSAKey
from sqlalchemy import func, select
from starlette.testclient import TestClient
from typer.testing import CliRunner

from carnet.api.app import Services, create_app
from carnet.cli import app as cli_app
from carnet.domain.errors import AccessDenied
from carnet.research.pseudonyms import pseudonym
from carnet.services.research_queries import parse_question
from carnet.services.research_studies import study_key_id
from carnet.settings import Settings
from carnet.store.tables import exports
from minting import Mint
from research_population import approved_study, load

BASE = "http://127.0.0.1"
ASYNC = {"Prefer": "respond-async"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The test settings, with the FHIR base URL the in-process client uses (the token's audience)."""
    return dataclasses.replace(settings, base_url=f"{BASE}/fhir")


@pytest.fixture
def client(settings: Settings, services: Services) -> Iterator[TestClient]:
    """The real app in-process, on the loopback."""
    with TestClient(create_app(settings, services), base_url=BASE) as test_client:
        yield test_client


def _register(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: RSAKey) -> None:
    """``carnet apps add``: the pipeline of study s1, its public JWK Set, system/*.rs."""
    for name in [k for k in os.environ if k.startswith("CARNET_") and not k.startswith("CARNET_TEST_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CARNET_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("CARNET_KEY_DIR", str(settings.key_dir))
    monkeypatch.setenv("CARNET_DATABASE_URL", settings.effective_database_url)
    jwks = tmp_path / "pipeline.jwks.json"
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    added = CliRunner().invoke(
        cli_app,
        ["apps", "add", "Pipeline s1", "--kind", "backend", "--client-id", "pipe-s1", "--jwks", str(jwks),
         "--acts-as", "study:s1", "--scope", "system/*.rs"],
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    unbound = CliRunner().invoke(
        cli_app,
        ["apps", "add", "Unbound", "--kind", "backend", "--client-id", "pipe-any", "--jwks", str(jwks),
         "--acts-as", "researcher", "--scope", "system/*.rs"],
    )  # fmt: skip
    assert unbound.exit_code == 1  # a pipeline is registered for one study


def _token(client: TestClient, key: RSAKey, scope: str) -> dict[str, str]:
    token_url = f"{BASE}/auth/token"
    backend = OAuth2Client(
        client_id="pipe-s1",
        client_secret=key,
        token_endpoint_auth_method=PrivateKeyJWT(token_url, alg="RS384"),
        transport=client._transport,
        base_url=BASE,
    )
    token = backend.fetch_token(token_url, grant_type="client_credentials", scope=scope)
    assert token["scope"] == scope
    return {"Authorization": f"Bearer {token['access_token']}"}


def _wait(client: TestClient, location: str, headers: dict[str, str]) -> dict[str, Any]:
    progress = []
    for _ in range(600):
        status = client.get(location, headers=headers)
        if status.status_code == 200:
            return dict(status.json())
        assert status.status_code == 202, status.text[:300]
        progress.append(status.headers["X-Progress"])
        time.sleep(0.05)
    raise AssertionError("the export did not finish")


def _exports(services: Services) -> int:
    with services.store.session() as session:
        return int(session._c.execute(select(func.count()).select_from(exports)).scalar_one())


def test_pipeline_exports_its_study_with_its_token_only(
    client: TestClient,
    auth: Mint,
    services: Services,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Registered by the CLI, the pipeline gets a system/*.rs token and kicks off, polls, downloads and cancels."""
    approved_study(services, privacy={"k": 2, "maxSuppression": 0.0})
    approved_study(services, "s2")
    members = load(client, auth, 6, choose=False)
    key = RSAKey.generate_key(2048, parameters={"kid": "pipe-1", "alg": "RS384"})
    _register(settings, tmp_path, monkeypatch, key)
    token = _token(client, key, "system/*.rs")

    kick_off = client.get("/fhir/Group/s1/$export?_type=Condition,Observation", headers={**token, **ASYNC})
    assert kick_off.status_code == 202, kick_off.text[:300]
    manifest = _wait(client, kick_off.headers["Content-Location"], token)
    lines: list[dict[str, Any]] = []
    for item in manifest["output"]:
        got = client.get(item["url"], headers=token)
        assert got.status_code == 200
        assert got.headers["content-type"].startswith("application/fhir+ndjson")
        lines.extend(orjson.loads(line) for line in got.content.splitlines() if line)
    with services.store.session() as session:
        study_key = services.records.vault.key(session, study_key_id("s1"), services.records.clock())
    assert {r["id"] for r in lines if r["resourceType"] == "Patient"} == {
        pseudonym(study_key, f"Patient/{m.patient_id}") for m in members
    }
    assert {r["resourceType"] for r in lines} == {"Patient", "Condition", "Observation"}
    assert [r for r in lines if {"identifier", "name", "birthDate", "address", "telecom"} & set(r)] == []
    # A person's researcher token does not reach the pipeline's export, and the pipeline cancels it.
    first = manifest["output"][0]["url"]
    assert client.get(first, headers=auth(kind="researcher", sub="researcher:1")).status_code == 404
    status_url = kick_off.headers["Content-Location"]
    assert client.delete(status_url, headers=token).status_code == 202
    assert client.get(first, headers=token).status_code == 404
    assert client.get(status_url, headers=token).status_code == 409
    # The system-level kick-off names the study as a parameter: the same export.
    system = client.get("/fhir/$export?study=s1&_type=Condition", headers={**token, **ASYNC})
    assert system.status_code == 202, system.text[:300]
    outputs = _wait(client, system.headers["Content-Location"], token)["output"]
    assert {o["type"] for o in outputs} == {"Patient", "Condition"}
    assert sum(o["count"] for o in outputs if o["type"] == "Patient") == len(members)
    assert _exports(services) == 2

    # Refused 403, nothing exported: another study; a token that does not read every type it would export.
    narrow = _token(client, key, "system/Observation.rs")
    refusals = [
        ("/fhir/Group/s2/$export", token, "not for s2"),
        ("/fhir/$export?study=s2", token, "not for s2"),
        ("/fhir/Patient/$export?study=s2", token, "not for s2"),
        (
            "/fhir/Group/s1/$export",
            narrow,
            "do not read AllergyIntolerance, Condition, Immunization, Patient",
        ),
        ("/fhir/Group/s1/$export?_type=Observation", narrow, "do not read Patient"),
    ]
    for url, headers, reason in refusals:
        refused = client.get(url, headers={**headers, **ASYNC})
        assert (refused.status_code, refused.json()["resourceType"]) == (403, "OperationOutcome"), url
        assert reason in refused.text, refused.text[:300]
        assert "Content-Location" not in refused.headers
    assert _exports(services) == 2
    # Nor does it ask another study's aggregate questions.
    pipeline = services.apps.principal(token["Authorization"].removeprefix("Bearer "))
    with pytest.raises(AccessDenied) as other:
        services.research_queries.ask(pipeline, "s2", parse_question({"kind": "count", "epsilon": 0.1}))
    assert other.value.reasons == ("app-other-study",)
