"""FastAPI's own OpenTelemetry is off: a request's URL (its query string can name a patient) goes to no collector."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from fastapi import FastAPI
from opentelemetry import trace
from starlette.testclient import TestClient

from carnet.api.app import Services, create_app
from carnet.settings import Settings


class _ConfiguredProvider:
    """A tracer provider as an OpenTelemetry SDK installs it; records any tracer asked of it."""

    def __init__(self) -> None:
        self.asked: list[Any] = []

    def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
        self.asked.append(args)
        raise AssertionError("a tracer was asked for")


def test_no_request_reaches_a_configured_tracer(
    settings: Settings, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a tracer provider configured in the process, serving requests asks it for no tracer."""
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        pytest.skip("this FastAPI has no telemetry of its own")
    provider = _ConfiguredProvider()
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    app = create_app(settings, services, background=False)
    with TestClient(app) as client:
        assert client.get("/fhir/metadata").status_code == 200
        assert client.get("/fhir/Observation/abc?patient=1850575000011").status_code == 401
    assert provider.asked == []
