"""Search in one's own record reaches inside documents: a PDF's text, a CDA's narrative."""

from __future__ import annotations

import base64
import re

import pytest
from fpdf import FPDF
from starlette.testclient import TestClient

from carnet.api.app import Services
from carnet.demo import SeededPatient, seed_population
from carnet.domain.principal import ActorKind, Principal
from carnet.web.document_text import cda_text, document_text, pdf_text, snippet


@pytest.fixture
def patient(services: Services) -> SeededPatient:
    """One synthetic patient of the demo population."""
    return seed_population(services.records, patients=1, seed=2026)[0]


def _pdf(*lines: str) -> bytes:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    for line in lines:
        pdf.cell(0, 10, line, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def _sign_in(client: TestClient, patient: SeededPatient) -> str:
    token = re.findall(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)[0]
    identifier = f"{patient.ins_system}|{patient.ins_value}"
    client.post("/login", data={"csrf_token": token, "kind": "patient", "identifier": identifier})
    return re.findall(r'name="csrf_token" value="([^"]+)"', client.get("/patient/").text)[0]


def test_a_pdfs_words_are_found_with_a_snippet(client: TestClient, patient: SeededPatient) -> None:
    """An uploaded PDF is found by words of its text only (any case, no accents), dates and kind still apply."""
    token = _sign_in(client, patient)
    content = _pdf("Compte rendu de kinesitherapie", "Le patient presente une tendinite rotulienne droite.")
    added = client.post(
        "/patient/documents",
        data={"csrf_token": token, "title": "Courrier scanné"},
        files={"file": ("courrier.pdf", content, "application/pdf")},
        follow_redirects=False,
    )
    assert added.status_code == 303
    document_id = added.headers["location"].rsplit("/", 1)[1]
    found = client.get("/patient/search", params={"q": "TENDINITE rotulienne"}).text
    results = found.split('id="search-results"')[1]
    assert f'href="/patient/documents/{document_id}"' in results
    assert "Dans le document :" in results
    assert "tendinite rotulienne droite" in results
    mine = client.get("/patient/search", params={"q": "tendinite", "kind": "class-90"}).text
    assert f'href="/patient/documents/{document_id}"' in mine
    for narrowed in ({"kind": "allergy"}, {"until": "1990-01-01"}, {"author": "zzz-personne"}):
        assert 'id="no-results"' in client.get("/patient/search", params={"q": "tendinite", **narrowed}).text
    client.get("/language/en?next=/patient/search")
    assert "In the document:" in client.get("/patient/search", params={"q": "rotulienne"}).text


def test_a_cdas_narrative_is_found(client: TestClient, services: Services, patient: SeededPatient) -> None:
    """A word of a structured CDA's narrative that no title or metadata carries finds that document."""
    _sign_in(client, patient)
    holder = Principal(kind=ActorKind.PATIENT, subject="t", patient_id=patient.patient_id)
    records = services.records.records(holder)
    listing = client.get("/patient/documents").text
    for document in records.search(
        "DocumentReference", [("patient", f"Patient/{patient.patient_id}"), ("_count", "100")]
    ).resources:
        attachment = document["content"][0]["attachment"]
        if "xml" not in str(attachment.get("contentType")):
            continue
        url = str(attachment.get("url") or "")
        if not url.startswith("Binary/"):
            continue
        data = base64.b64decode(records.read("Binary", url.removeprefix("Binary/")).resource["data"])  # type: ignore[index]
        if b"structuredBody" not in data:
            continue
        words = [
            w for w in re.findall(r"[A-Za-zÀ-ÿ]{9,}", cda_text(data)) if w.lower() not in listing.lower()
        ]
        if not words:
            continue
        page = client.get("/patient/search", params={"q": words[0]}).text
        assert f'href="/patient/documents/{document["id"]}"' in page.split('id="search-results"')[1]
        return
    pytest.fail("no structured CDA with a word of its own in the demo record")


def test_text_extraction_is_bounded_and_safe() -> None:
    """Garbage, a truncated PDF or an XML bomb give no words rather than an error."""
    assert document_text(b"not a document", "application/octet-stream") == ""
    assert pdf_text(b"%PDF-1.4\n garbage") == ""
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">]><ClinicalDocument>&a;</ClinicalDocument>'
    assert cda_text(bomb) == ""
    assert "rotulienne" in pdf_text(_pdf("tendinite rotulienne"))
    assert snippet("un deux trois quatre cinq", "TROIS", around=1) == "… deux trois quatre …"
