"""The API description is off by default and never loads third-party scripts (issue 11, item 5)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from carnet.api.app import Services, create_app
from carnet.domain.errors import ConfigurationError
from carnet.settings import Settings, load

DESCRIPTION_PATHS = ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect")


@pytest.fixture
def docs_client(settings: Settings, services: Services) -> Iterator[TestClient]:
    """The app in development mode with CARNET_API_DOCS=on."""
    enabled = dataclasses.replace(settings, api_docs=True)
    app = create_app(enabled, dataclasses.replace(services, settings=enabled), background=False)
    with TestClient(app, base_url="http://testserver") as client:
        yield client


@pytest.mark.parametrize("path", DESCRIPTION_PATHS)
def test_description_is_off_by_default(client: TestClient, path: str) -> None:
    """Without CARNET_API_DOCS, /docs, /redoc and /openapi.json are 404, for browsers and API clients."""
    assert client.get(path).status_code == 404
    assert client.get(path, headers={"Accept": "text/html"}).status_code == 404


def test_production_refuses_the_setting() -> None:
    """CARNET_API_DOCS=on stops a production start-up; development accepts it; other values are errors."""
    production = {
        "CARNET_MODE": "production",
        "CARNET_OIDC_ISSUER": "https://psc.example",
        "CARNET_OIDC_JWKS_FILE": "/nonexistent/jwks.json",
        "CARNET_DATA_DIR": "/srv/carnet/data",
        "CARNET_KEY_DIR": "/srv/carnet/keys",
        "CARNET_API_DOCS": "on",
    }
    with pytest.raises(ConfigurationError, match="CARNET_API_DOCS"):
        load(production)
    assert load({"CARNET_API_DOCS": "on"}).api_docs is True
    assert load({}).api_docs is False
    with pytest.raises(ConfigurationError, match="CARNET_API_DOCS"):
        load({"CARNET_API_DOCS": "yes please"})


def test_enabled_docs_load_nothing_from_another_origin(docs_client: TestClient) -> None:
    """When enabled, /docs is plain HTML: no script, no external URL, a CSP forbidding both."""
    page = docs_client.get("/docs")
    assert page.status_code == 200
    assert "<script" not in page.text.lower()
    assert re.findall(r"(?:src|href)=\"(?:https?:)?//", page.text) == []
    assert "cdn" not in page.text.lower()
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "script-src" not in page.headers["content-security-policy"]
    assert "/fhir/{resource_type}" in page.text


def test_enabled_schema_is_served_and_redoc_is_not(docs_client: TestClient) -> None:
    """When enabled, /openapi.json describes the FHIR routes; /redoc (a CDN page) stays off."""
    schema = docs_client.get("/openapi.json")
    assert schema.status_code == 200
    assert "/fhir/metadata" in schema.json()["paths"]
    assert docs_client.get("/redoc").status_code == 404
