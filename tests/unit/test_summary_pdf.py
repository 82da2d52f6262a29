"""The printable summary: a real PDF, in French or English, with every part of the record."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import pytest
from pypdf import PdfReader

from carnet.synthetic import generate_population
from carnet.web import summary_pdf as module
from carnet.web.summary_pdf import summary_pdf

PRINTED = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)


def _text(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    return "\n".join(page.extract_text() or "" for page in reader.pages)


def _record(seed: int = 11) -> list[dict[str, Any]]:
    patient = next(iter(generate_population(1, seed, documents_per_patient=9)))
    return [entry["resource"] for entry in patient.bundle["entry"]]


def _resources() -> list[dict[str, Any]]:
    return [
        {
            "resourceType": "Patient",
            "id": "p1",
            "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.10", "value": "279035121518989"}],
            "name": [{"use": "official", "family": "Lefèvre-Œuvray", "given": ["Éloïse"]}],
            "gender": "female",
            "birthDate": "1979-03-12",
            "address": [{"text": "3 rue de l'Église, 19100 Brive-la-Gaillarde"}],
        },
        {
            "resourceType": "AllergyIntolerance",
            "clinicalStatus": {"coding": [{"code": "active"}]},
            "criticality": "high",
            "code": {"text": "Pénicilline"},
            "reaction": [{"manifestation": [{"text": "Œdème de Quincke"}]}],
            "recordedDate": "2019-05-02",
        },
        {
            "resourceType": "MedicationStatement",
            "status": "active",
            "medicationCodeableConcept": {"text": "LÉVOTHYROX 75 µg"},
            "dosage": [{"text": "1 cp le matin à jeun"}],
            "effectivePeriod": {"start": "2020-01-01"},
        },
        {
            "resourceType": "MedicationStatement",
            "status": "completed",
            "medicationCodeableConcept": {"text": "AMOXICILLINE ancienne"},
        },
        {
            "resourceType": "Condition",
            "clinicalStatus": {"coding": [{"code": "active"}]},
            "code": {"text": "Hypothyroïdie"},
            "onsetDateTime": "2019-12-01",
        },
        {
            "resourceType": "Immunization",
            "status": "completed",
            "vaccineCode": {"text": "REPEVAX"},
            "occurrenceDateTime": "2021-05-12",
        },
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}], "text": "Poids"},
            "effectiveDateTime": "2024-03-01T10:00:00+01:00",
            "valueQuantity": {"value": 61.5, "unit": "kg"},
        },
        {
            "resourceType": "DocumentReference",
            "id": "d1",
            "status": "current",
            "type": {
                "coding": [
                    {"system": "http://loinc.org", "code": "42348-3", "display": "Directives anticipées"}
                ]
            },
            "category": [
                {
                    "coding": [
                        {
                            "system": "urn:oid:1.2.250.1.213.1.1.4.1",
                            "code": "90",
                            "display": "Document du patient",
                        }
                    ]
                }
            ],
            "date": "2024-02-02T10:00:00Z",
            "author": [{"display": "Éloïse Lefèvre-Œuvray"}],
            "content": [
                {
                    "attachment": {
                        "contentType": "application/pdf",
                        "url": "Binary/b1",
                        "title": "Mes directives ≥ 2024 — 5 €",
                    }
                }
            ],
        },
        {
            "resourceType": "RelatedPerson",
            "name": [{"family": "Lefèvre", "given": ["Gaël"]}],
            "relationship": [{"coding": [{"code": "NOK", "display": "personne de confiance"}]}],
            "telecom": [{"system": "phone", "value": "06 39 98 21 83"}],
        },
    ]


def test_summary_is_a_pdf_with_every_part_in_french() -> None:
    """The French summary parses back and prints identity, allergies, treatments… with accents."""
    pdf = summary_pdf(_resources(), "fr", printed=PRINTED)
    assert pdf.startswith(b"%PDF-")
    text = _text(pdf)
    for expected in (
        "Synthèse du dossier médical",
        "Éloïse Lefèvre-Œuvray",
        "12/03/1979",
        "279035121518989",
        "Pénicilline",
        "Œdème de Quincke",
        "LÉVOTHYROX 75 µg",
        "Hypothyroïdie",
        "REPEVAX",
        "61,5 kg",
        "Mes directives ≥ 2024 — 5 €",
        "Directives anticipées",
        "Gaël Lefèvre",
        "personne de confiance",
        "28/11/2026",
    ):
        assert expected in text, expected
    assert "AMOXICILLINE ancienne" not in text  # a finished treatment is not current


def test_summary_in_english() -> None:
    """The English summary uses English headings and dates."""
    text = _text(summary_pdf(_resources(), "en", printed=PRINTED))
    assert "Medical record summary" in text
    assert "Current treatments" in text
    assert "1979-03-12" in text
    assert "61.5 kg" in text


def test_generated_record_summary() -> None:
    """A whole synthetic record prints on several pages with its documents and measures."""
    resources = _record()
    pdf = summary_pdf(resources, "fr", printed=PRINTED)
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) >= 2
    text = _text(pdf)
    assert "Documents" in text
    assert "Mesures récentes" in text
    name = next(r for r in resources if r["resourceType"] == "Patient")["name"][0]["family"]
    assert name in text


def test_empty_record_and_unknown_language() -> None:
    """No resources still gives a valid PDF saying nothing is recorded, in French by default."""
    text = _text(summary_pdf([], "de", printed=PRINTED))
    assert "Aucune information enregistrée." in text


def test_characters_outside_the_font_do_not_break_printing() -> None:
    """Glyphs DejaVu lacks print as '?' and the PDF is still produced."""
    resources = _resources()
    resources[1]["code"] = {"text": "Allergie 漢字 test"}
    text = _text(summary_pdf(resources, "fr", printed=PRINTED))
    assert "Allergie ?? test" in text


def test_without_dejavu_falls_back_to_latin1(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the DejaVu font the summary prints with Helvetica, accents kept, others replaced."""
    monkeypatch.setattr(module, "FONT_DIRS", ())
    text = _text(summary_pdf(_resources(), "fr", printed=PRINTED))
    assert "Pénicilline" in text
    assert "Synthèse du dossier médical" in text
