"""The patient portal's research page: the studies that may use or used the record, and one-click opt-out."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from carnet.api.app import Services
from carnet.demo import seed_population
from carnet.services.research_ports import ExportStatus
from research_population import ADMIN, RESEARCHER, approved_study, registration


def _csrf(text: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', text)
    assert found is not None
    return found.group(1)


def _export(services: Services) -> None:
    job = services.research.start(RESEARCHER, "s1")
    assert services.research.run(RESEARCHER, job.export_id).status is ExportStatus.DONE


def test_patient_sees_studies_and_opts_out_in_one_click(client: TestClient, services: Services) -> None:
    """The page lists approved studies (not unapproved ones) and each export; one click leaves a study for good."""
    patients = seed_population(services.records, patients=2, seed=2026)
    approved_study(services, "s1", privacy={"k": 2, "maxSuppression": 0.0})
    approved_study(services, "s2", legalBasis="consent", title="Étude sur consentement")
    services.studies.register(ADMIN, "s3", registration(title="Pas encore autorisée"))
    _export(services)
    me = patients[0]
    token = _csrf(client.get("/login").text)
    signed = client.post(
        "/login",
        data={"csrf_token": token, "kind": "patient", "identifier": f"{me.ins_system}|{me.ins_value}"},
        follow_redirects=False,
    )
    assert signed.status_code == 303
    page = client.get("/patient/studies")
    assert page.status_code == 200
    assert '<html lang="fr">' in page.text
    assert "Pas encore autorisée" not in page.text
    assert re.search(r'id="study-status-s1">Inclus dans cette étude<', page.text)
    assert re.search(r'id="study-status-s2">Non inclus dans cette étude<', page.text)
    assert "CHU de Nantes" in page.text
    assert page.text.count(">Extrait<") == 1
    left = client.post(
        "/patient/studies/s1/opt-out", data={"csrf_token": _csrf(page.text)}, follow_redirects=False
    )
    assert (left.status_code, left.headers["location"]) == (303, "/patient/studies")
    _export(services)
    after = client.get("/patient/studies")
    assert re.search(r'id="study-status-s1">Non inclus dans cette étude<', after.text)
    assert "Écarté : vous vous étiez opposé" in after.text
    refused = client.post("/patient/studies/s1/opt-in", data={}, follow_redirects=False)
    assert refused.status_code == 403
    client.get("/language/en?next=/patient/studies")
    english = client.get("/patient/studies")
    assert "Left out: you had left the study" in english.text
    assert (
        client.post("/patient/studies/nope/opt-out", data={"csrf_token": _csrf(english.text)}).status_code
        == 404
    )
