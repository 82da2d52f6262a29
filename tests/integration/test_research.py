"""Research on the patient's terms: study exports, choices, pseudonyms, k-anonymity, DP budget, journal."""

from __future__ import annotations

import base64
import hashlib
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import event, func, select
from starlette.testclient import TestClient

from carnet.api.app import Services
from carnet.domain.consent import ConsentKind, consent_for
from carnet.domain.errors import AccessDenied, InvalidRequest, NotFound, RecordShredded
from carnet.research.deidentify import QI_EXTENSION, concept_tokens
from carnet.research.kanon import generalise, traits_of
from carnet.research.pseudonyms import pseudonym
from carnet.services.research_ports import ExportStatus
from carnet.services.research_queries import parse_question
from carnet.services.research_studies import study_key_id
from carnet.store.tables import export_parts, exports
from minting import Mint
from research_population import ADMIN, DPO, RESEARCHER, Member, approved_study, load, output, registration

POPULATION = 30


def _export(
    services: Services, study_id: str = "s1", **params: Any
) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    job = services.research.start(RESEARCHER, study_id, **params)
    done = services.research.run(RESEARCHER, job.export_id)
    assert done.status is ExportStatus.DONE, done.error
    return job.export_id, output(services.exports, job.export_id)


def _study_key(services: Services, study_id: str = "s1") -> bytes:
    with services.store.session() as session:
        return services.records.vault.key(session, study_key_id(study_id), datetime.now(UTC))


def _qi(patient: dict[str, Any]) -> tuple[str, str, str]:
    fields = {e["url"]: e["valueString"] for e in patient["extension"][0]["extension"]}
    assert patient["extension"][0]["url"] == QI_EXTENSION
    return (fields["ageBand"], patient.get("gender", "*"), fields["area"])


@pytest.fixture
def population(client: TestClient, auth: Mint, services: Services) -> list[Member]:
    """A generated population with random research choices, and an approved public-interest study."""
    approved_study(services)
    return load(client, auth, POPULATION)


def test_opted_out_patients_are_in_no_export_and_no_answer(
    services: Services, population: list[Member]
) -> None:
    """Opted-out patients appear in 0 exports and 0 aggregate answers; the others are in (unless suppressed)."""
    key = _study_key(services)
    _, out = _export(services)
    exported = {p["id"] for p in out["Patient"]}
    by_pseudonym = {pseudonym(key, f"Patient/{m.patient_id}"): m for m in population}
    out_of_study = {m.patient_id for m in population if m.choice in ("out-study", "out-all")}
    assert 0 < len(out_of_study) < len(population)
    assert not {by_pseudonym[p].patient_id for p in exported} & out_of_study
    # Every other resource of the export belongs to an exported patient.
    subjects = {
        r["subject"]["reference"] for t, rs in out.items() if t != "Patient" for r in rs if "subject" in r
    }
    assert subjects <= {f"Patient/{p}" for p in exported}
    study = services.studies.get("s1")
    cohort = {
        next(s.resource_id for s in opened if s.resource_type == "Patient")
        for _, opened in services.research.cohort(RESEARCHER, study)
        if opened is not None
    }
    assert cohort == {m.patient_id for m in population} - out_of_study


def test_a_patient_who_opts_out_is_absent_from_the_next_export(
    client: TestClient, auth: Mint, services: Services
) -> None:
    """One click (an opt-out Consent) and the next export leaves the patient out; the journal names the study."""
    approved_study(services, privacy={"k": 2, "maxSuppression": 0.0})
    members = load(client, auth, 8, choose=False)
    key = _study_key(services)
    first_id, first = _export(services)
    target = members[0]
    mine = pseudonym(key, f"Patient/{target.patient_id}")
    headers = auth(kind="patient", patient=target.patient_id)
    consent = consent_for(
        ConsentKind.RESEARCH_OPT_OUT, target.patient_id, now=datetime.now(UTC), study_id="s1"
    )
    assert client.post("/fhir/Consent", content=orjson.dumps(consent), headers=headers).status_code == 201
    second_id, second = _export(services)
    events = client.get(f"/fhir/AuditEvent?patient={target.patient_id}&_count=100", headers=headers).json()
    exports_seen = [
        (e["resource"]["outcome"], query)
        for e in events.get("entry", [])
        for query in (
            base64.b64decode(entity["query"]).decode()
            for entity in e["resource"].get("entity", [])
            if "query" in entity
        )
        if "study=s1" in query
    ]
    assert (mine in {p["id"] for p in first["Patient"]}, mine in {p["id"] for p in second["Patient"]}) == (
        True,
        False,
    )
    # One entry per export, naming the study and the export: a permit, then the refusal after the opt-out.
    assert sorted(exports_seen) == sorted(
        [("0", f"study=s1&export={first_id}"), ("4", f"study=s1&export={second_id}")]
    )


def test_linkage_attack_recovers_no_identity(services: Services, population: list[Member]) -> None:
    """With every NIR and birth date (not the study key), hashing or matching recovers 0 identities."""
    export_id, out = _export(services)
    parts = services.exports.index(RESEARCHER, export_id)
    blob = b"".join(services.exports.part(RESEARCHER, export_id, n) for n, _, _ in parts)
    guesses: set[str] = set()
    for member in population:
        for text in (member.nir, member.nir[:13], member.patient_id):
            guesses.add(text)
            for algorithm in ("sha1", "sha256", "md5"):
                guesses.add(hashlib.new(algorithm, text.encode()).hexdigest())
    assert [g for g in guesses if g.encode() in blob] == []
    assert [p for p in out["Patient"] if "birthDate" in p or "identifier" in p or "address" in p] == []
    # Matching the released quasi-identifiers against the whole population singles nobody out.
    level = services.exports.status(RESEARCHER, export_id).summary["level"]  # type: ignore[index]
    today = datetime.now(UTC).date()
    known = [
        generalise(
            traits_of(
                {
                    "birthDate": m.birth_date.isoformat(),
                    "gender": m.gender,
                    "address": [{"postalCode": m.postcode}],
                }
            ),
            level,
            today,
        ).key
        for m in population
    ]
    recovered = sum(1 for p in out["Patient"] if known.count(_qi(p)) == 1)
    assert (recovered, min(known.count(_qi(p)) for p in out["Patient"]) >= 5) == (0, True)


def test_every_export_is_k_anonymous_and_a_rare_patient_is_hidden(
    client: TestClient, auth: Mint, services: Services, population: list[Member]
) -> None:
    """Every class of the export holds ≥ k patients; a crafted centenarian from Guyane is generalised or suppressed."""
    rare = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:carnet:test", "value": "rare-1"}],
        "gender": "other",
        "birthDate": "1921-02-03",
        "address": [{"postalCode": "97300", "city": "Cayenne"}],
    }
    created = client.post(
        "/fhir/Patient",
        content=orjson.dumps(rare),
        headers=auth(kind="patient", identifier="urn:carnet:test|rare-1"),
    )
    assert created.status_code == 201, created.text[:300]
    rare_id = created.json()["id"]
    _, out = _export(services)
    classes = Counter(_qi(p) for p in out["Patient"])
    assert min(classes.values()) >= 5
    exported = {p["id"]: _qi(p) for p in out["Patient"]}
    mine = exported.get(pseudonym(_study_key(services), f"Patient/{rare_id}"))
    assert mine is None or (mine[0], mine[1]) != ("105-109", "other")


def test_bad_input_is_refused_and_nothing_is_exported(services: Services) -> None:
    """Unknown, unapproved, expired studies and parameters outside the study's scope are 4xx; no export is recorded."""
    approved_study(services, "past", period={"start": "2020-01-01", "end": "2021-01-01"})
    services.studies.register(ADMIN, "waiting", registration())
    approved_study(services, "narrow", data={"types": ["Observation"], "codes": ["http://loinc.org|29463-7"]})
    cases: list[tuple[type[Exception], str, dict[str, Any]]] = [
        (NotFound, "nope", {}),
        (AccessDenied, "waiting", {}),
        (AccessDenied, "past", {}),
        (InvalidRequest, "narrow", {"types": "Condition"}),
        (InvalidRequest, "narrow", {"type_filters": ["Condition?code=http://loinc.org|1"]}),
        (InvalidRequest, "narrow", {"type_filters": ["Observation?code=http://loinc.org|8480-6"]}),
        (InvalidRequest, "narrow", {"since": "yesterday"}),
        (InvalidRequest, "narrow", {"output_format": "text/csv"}),
    ]
    for error, study_id, params in cases:
        with pytest.raises(error):
            services.research.start(RESEARCHER, study_id, **params)
    with pytest.raises(AccessDenied):
        services.research.start(DPO, "narrow")
    with services.store.session() as session:
        assert session._c.execute(select(func.count()).select_from(exports)).scalar_one() == 0


def test_budget_is_spent_then_questions_are_refused(services: Services, population: list[Member]) -> None:
    """Questions spend ε from the study's budget, the ledger records each, and one past it is refused."""
    question = parse_question({"kind": "count", "epsilon": 0.3})
    answers = [services.research_queries.ask(RESEARCHER, "s1", question) for _ in range(3)]
    with pytest.raises(AccessDenied) as refused:
        services.research_queries.ask(RESEARCHER, "s1", question)
    ledger = services.research_queries.ledger("s1")
    histogram = parse_question(
        {"kind": "histogram", "by": "sex", "categories": ["female", "male"], "epsilon": 0.1}
    )
    split = services.research_queries.ask(RESEARCHER, "s1", histogram)
    assert refused.value.reasons == ("privacy-budget-spent",)
    assert [round(r.epsilon, 6) for r in services.research_queries.ledger("s1")] == [0.3, 0.3, 0.3, 0.1]
    assert (len(ledger), [a.answer.epsilon for a in answers], split.answer.categories) == (
        3,
        [0.3, 0.3, 0.3],
        ("female", "male", "*"),
    )


def test_a_withdrawn_study_exports_nothing_and_its_key_is_destroyed(services: Services) -> None:
    """The DPO withdraws a study: no export starts, and its pseudonym key can never be opened again."""
    approved_study(services)
    withdrawn = services.studies.withdraw(DPO, "s1")
    with pytest.raises(AccessDenied) as refused:
        services.research.start(RESEARCHER, "s1")
    with pytest.raises(RecordShredded):
        _study_key(services)
    with pytest.raises(AccessDenied):
        services.studies.withdraw(RESEARCHER, "s1")
    assert (withdrawn.status.value, refused.value.reasons) == ("withdrawn", ("study-not-approved",))


def test_no_exported_code_singles_out_fewer_than_k_patients(
    services: Services, population: list[Member]
) -> None:
    """Every code that leaves (a condition, a vaccine, a measure, a medicine) is held by at least k exported patients."""
    _, out = _export(services)
    holders: dict[str, set[str]] = {}
    for resource_type, resources in out.items():
        for resource in resources:
            if resource_type == "Patient":
                continue
            subject = (resource.get("subject") or resource.get("patient") or {}).get("reference")
            for token in concept_tokens(resource):
                holders.setdefault(token, set()).add(str(subject))
    assert holders
    assert {token: len(who) for token, who in holders.items() if len(who) < 5} == {}


def test_a_unique_rare_condition_is_generalised_or_removed(
    client: TestClient, auth: Mint, services: Services
) -> None:
    """Rare codes are quasi-identifiers: a unique ICD-10 subcode leaves as its category, a unique category stays home."""
    approved_study(services, privacy={"k": 5, "maxSuppression": 0.0})
    members = load(client, auth, 10, choose=False)
    icd10 = "http://hl7.org/fhir/sid/icd-10"

    def condition(member: Member, code: str, display: str) -> None:
        resource = {
            "resourceType": "Condition",
            "subject": {"reference": f"Patient/{member.patient_id}"},
            "code": {"coding": [{"system": icd10, "code": code, "display": display}]},
            "recordedDate": "2025-03-04",
        }
        headers = auth(kind="patient", patient=member.patient_id)
        created = client.post("/fhir/Condition", content=orjson.dumps(resource), headers=headers)
        assert created.status_code == 201, created.text[:300]

    rare = members[0]
    condition(rare, "E11.65", "Diabète de type 2 avec hyperglycémie")  # only this patient: E11.65
    condition(rare, "Q87.4", "Syndrome de Marfan")  # only this patient, and nobody else in Q87
    for member in members[1:6]:
        condition(member, "E11.9", "Diabète de type 2 sans complication")
    export_id, out = _export(services)
    key = _study_key(services)
    mine = f"Patient/{pseudonym(key, f'Patient/{rare.patient_id}')}"
    assert mine.split("/")[1] in {p["id"] for p in out["Patient"]}  # generalised, not suppressed
    codings = [
        (resource["subject"]["reference"], coding)
        for resource in out.get("Condition", [])
        for coding in resource["code"]["coding"]
    ]
    left = {c["code"] for _, c in codings if c["system"] == icd10}
    assert left.isdisjoint({"E11.65", "Q87.4", "Q87"})
    assert {"system": icd10, "code": "E11"} in [c for who, c in codings if who == mine]
    assert {c["code"] for who, c in codings if who != mine and c["system"] == icd10} >= {"E11"}
    holders: dict[str, set[str]] = {}
    for resource_type, resources in out.items():
        for resource in resources:
            subject = (resource.get("subject") or resource.get("patient") or {}).get("reference")
            for token in concept_tokens(resource) if resource_type != "Patient" else ():
                holders.setdefault(token, set()).add(str(subject))
    assert {token: len(who) for token, who in holders.items() if len(who) < 5} == {}
    summary = services.exports.status(RESEARCHER, export_id).summary or {}
    assert (summary["codesGeneralised"] >= 1, summary["codesRemoved"] >= 1) == (True, True)


def test_export_walks_records_by_keyset_never_offset(
    client: TestClient, auth: Mint, services: Services
) -> None:
    """Every statement of a study's export pages records by id (keyset), none skips rows by OFFSET.

    (SQLite's dialect writes ``LIMIT ? OFFSET ?`` for every LIMIT, with an offset of 0: no scan.)
    """
    approved_study(services, privacy={"k": 2, "maxSuppression": 0.0})
    load(client, auth, 6, choose=False)
    statements: list[tuple[str, Any]] = []

    def seen(_conn: object, _cursor: object, statement: str, parameters: Any, *_: object) -> None:
        statements.append((statement, parameters))

    event.listen(services.store.engine, "before_cursor_execute", seen)
    try:
        _export(services)
    finally:
        event.remove(services.store.engine, "before_cursor_execute", seen)
    assert [s for s, _ in statements if "patient_keys.patient_id >" in s]
    skipping = [
        (s, p)
        for s, p in statements
        if re.search(r"\bOFFSET\b", s, re.IGNORECASE) and not re.search(r"OFFSET \?$", s.strip())
    ] + [(s, p) for s, p in statements if s.strip().endswith("OFFSET ?") and list(p)[-1] != 0]
    assert skipping == []


def test_type_filter_and_since_narrow_the_export_and_cancelling_keeps_nothing(
    client: TestClient, auth: Mint, services: Services
) -> None:
    """_typeFilter keeps the asked codes only, _since the resources changed since; an export cancelled mid-run keeps no file."""
    weight = "http://loinc.org|29463-7"
    approved_study(
        services,
        data={"types": ["Observation", "Condition"], "codes": [weight, "http://loinc.org|8480-6"]},
        privacy={"k": 2, "maxSuppression": 0.0},
    )
    load(client, auth, 6, choose=False)
    _, filtered = _export(services, type_filters=[f"Observation?code={weight}"])
    observations = filtered.get("Observation", [])
    assert observations
    assert {t for o in observations for t in concept_tokens(o)} == {weight}
    assert "Condition" not in filtered  # no code of the study's list is a Condition's
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    _, later = _export(services, since=tomorrow)
    assert set(later) == {"Patient"}
    # The study's own date range bounds the resources' clinical dates (before the shift).
    approved_study(
        services,
        "old",
        data={"types": ["Observation", "Condition"], "until": "1900-12-31"},
        privacy={"k": 2, "maxSuppression": 0.0},
    )
    approved_study(
        services, "all", data={"types": ["Observation", "Condition"]}, privacy={"k": 2, "maxSuppression": 0.0}
    )
    _, old = _export(services, "old")
    _, every = _export(services, "all")
    assert (set(old), {"Observation", "Condition"} <= set(every)) == ({"Patient"}, True)

    job = services.research.start(RESEARCHER, "s1")
    progress = services.exports.progress
    calls: list[str] = []

    def cancel_midway(export_id: str, note: str) -> bool:
        calls.append(note)
        if len(calls) == 2:
            services.exports.cancel(RESEARCHER, export_id)
        return progress(export_id, note)

    services.exports.progress = cancel_midway  # type: ignore[method-assign]
    done = services.research.run(RESEARCHER, job.export_id)
    assert (done.status, len(calls)) == (ExportStatus.CANCELLED, 2)
    with services.store.session() as session:
        parts = session._c.execute(
            select(func.count()).select_from(export_parts).where(export_parts.c.export_id == job.export_id)
        ).scalar_one()
    assert parts == 0
    with pytest.raises(NotFound):
        services.exports.part(RESEARCHER, job.export_id, 0)
