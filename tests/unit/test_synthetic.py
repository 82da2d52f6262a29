"""The synthetic population: valid INS, valid FHIR R4, CI-SIS CDA documents, stable for a seed."""

from __future__ import annotations

import base64
import hashlib
import random
import statistics
from collections import Counter
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from lxml import etree

from carnet.feeds.cda import BodyLevel, class_code_for, parse_cda
from carnet.feeds.cda_metadata import document_reference_from_cda
from carnet.synthetic import (
    DEFAULT_AS_OF,
    PatientBundle,
    compute_nir_key,
    generate_population,
    generate_professionals,
    validate_nir,
)
from carnet.synthetic.identifiers import is_luhn_valid
from carnet.synthetic.patient import draw_person
from carnet.synthetic.profile import draw_profile
from carnet.synthetic.timestamps import age_on

HL7 = "{urn:hl7-org:v3}"
NS = {"h": "urn:hl7-org:v3"}
CLASS_SYSTEM = "urn:oid:1.2.250.1.213.1.1.4.1"
INS_SYSTEM = "urn:oid:1.2.250.1.213.1.4.10"
IDNPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
PROFESSIONS = {"10", "21", "40", "50", "60", "70"}

Resource = dict[str, Any]


@pytest.fixture(scope="module")
def population() -> list[PatientBundle]:
    """Twelve patients with one document of each of the nine kinds."""
    return list(generate_population(12, seed=2026, documents_per_patient=9))


@pytest.fixture(scope="module")
def ten_thousand() -> list[Any]:
    """The identities of the first ten thousand patients of seed 1."""
    return people(10_000, seed=1)


def resources(population: list[PatientBundle], resource_type: str | None = None) -> Iterator[Resource]:
    """Yield the resources of every bundle, of one type if given."""
    for patient in population:
        for entry in patient.bundle["entry"]:
            if resource_type is None or entry["resource"]["resourceType"] == resource_type:
                yield entry["resource"]


def binaries(patient: PatientBundle) -> dict[str, bytes]:
    """Map each Binary's fullUrl to its decoded bytes."""
    return {
        entry["fullUrl"]: base64.b64decode(entry["resource"]["data"])
        for entry in patient.bundle["entry"]
        if entry["resource"]["resourceType"] == "Binary"
    }


def cda_documents(population: list[PatientBundle]) -> Iterator[tuple[PatientBundle, bytes]]:
    """Yield every CDA document of the population with its patient."""
    for patient in population:
        for entry in patient.bundle["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] == "Binary" and resource["contentType"] == "text/xml":
                yield patient, base64.b64decode(resource["data"])


def people(count: int, seed: int) -> list[Any]:
    """Draw ``count`` patients' identities the way the population does, without their records."""
    taken: set[str] = set()
    return [
        draw_person(random.Random(f"carnet.synthetic/{seed}/patient/{i}"), DEFAULT_AS_OF, taken)
        for i in range(count)
    ]


# INS (NIR).

KNOWN_GOOD_NIRS = [
    "279035121518989",  # the ANS test INS of the CI-SIS example documents
    "180017505600103",
    "255081416802538",
    "184127645108946",
    "185052A00412356",  # Corse-du-Sud: 2A counts as 19 for the key
    "292082B03304513",  # Haute-Corse: 2B counts as 18
]

KNOWN_BAD_NIRS = [
    "279035121518988",  # wrong key
    "185052A00412355",  # wrong key with 2A
    "292082B03304514",  # wrong key with 2B
    "185052a00412356",  # lower-case Corsica
    "185052C00412356",  # no such department
    "27903512151898",  # 14 characters
    "2790351215189890",  # 16 characters
    "2 79 03 51 215 189 89",  # spaces
    "279135121518989",  # month 13
    "579035121518989",  # no such sex digit
    "279035121500038",  # order 000
    "",
]


def test_generated_nirs_are_valid_unique_and_match_the_traits(ten_thousand: list[Any]) -> None:
    """Ten thousand generated NIRs pass the key check, are unique, and encode sex and birth month."""
    nirs = [person.nir for person in ten_thousand]
    assert all(validate_nir(nir) for nir in nirs)
    assert len(set(nirs)) == len(nirs)
    for person in ten_thousand:
        assert person.nir[0] == ("1" if person.sex == "male" else "2")
        assert person.nir[1:5] == person.birth_date.strftime("%y%m")
        assert person.nir[5:10] == person.birthplace


def test_generated_nirs_include_corsica_and_births_abroad(ten_thousand: list[Any]) -> None:
    """Among ten thousand patients some are born in Corsica (2A, 2B, 20 before 1976) and abroad (99)."""
    places = Counter(person.nir[5:7] for person in ten_thousand)
    assert places["2A"] > 0
    assert places["2B"] > 0
    assert places["99"] > 0


@pytest.mark.parametrize("nir", KNOWN_GOOD_NIRS)
def test_known_good_nirs_validate(nir: str) -> None:
    """A NIR with the right key validates, Corsican ones included."""
    assert validate_nir(nir) is True


@pytest.mark.parametrize("nir", KNOWN_BAD_NIRS)
def test_known_bad_nirs_do_not_validate(nir: str) -> None:
    """A NIR with a wrong key, length, month, sex digit, order or department does not validate."""
    assert validate_nir(nir) is False


@pytest.mark.parametrize(("body", "offset"), [("185052A004123", 1_000_000), ("292082B033045", 2_000_000)])
def test_corsican_key_agrees_with_the_legacy_rule(body: str, offset: int) -> None:
    """The 2A→19 / 2B→18 rule gives the key of the older rule: read 20 and subtract 1 or 2 million."""
    legacy = int(body[:5] + "20" + body[7:]) - offset
    assert compute_nir_key(body) == f"{97 - legacy % 97:02d}"


# Determinism.


def test_same_seed_gives_identical_bytes() -> None:
    """Two runs with the same seed serialize to the same bytes."""
    first = [patient.to_json() for patient in generate_population(3, seed=42)]
    second = [patient.to_json() for patient in generate_population(3, seed=42)]
    assert first == second


def test_another_seed_gives_other_patients() -> None:
    """Another seed gives other bytes and other INS."""
    first = list(generate_population(3, seed=42))
    second = list(generate_population(3, seed=43))
    assert [p.to_json() for p in first] != [p.to_json() for p in second]
    assert {p.ins for p in first}.isdisjoint({p.ins for p in second})


def test_a_larger_population_starts_with_the_smaller_one() -> None:
    """Patient i is the same whatever the population size."""
    small = [patient.to_json() for patient in generate_population(2, seed=7, documents_per_patient=2)]
    large = [patient.to_json() for patient in generate_population(4, seed=7, documents_per_patient=2)]
    assert large[:2] == small


# FHIR.


def test_every_resource_and_bundle_validates_against_fhir_r4(population: list[PatientBundle]) -> None:
    """Every resource, and every bundle as a whole, validates with the fhir.resources R4B models."""
    for resource in resources(population):
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    for patient in population:
        get_fhir_model_class("Bundle").model_validate(patient.bundle)


def test_bundles_are_transactions_of_posts_with_urn_uuids(population: list[PatientBundle]) -> None:
    """Every entry is POST <Type> with a unique urn:uuid fullUrl."""
    for patient in population:
        assert patient.bundle["type"] == "transaction"
        full_urls = [entry["fullUrl"] for entry in patient.bundle["entry"]]
        assert len(set(full_urls)) == len(full_urls)
        for entry in patient.bundle["entry"]:
            assert entry["fullUrl"].startswith("urn:uuid:")
            assert entry["request"]["method"] == "POST"
            assert entry["request"]["url"] == entry["resource"]["resourceType"]


def test_every_reference_resolves_inside_its_bundle(population: list[PatientBundle]) -> None:
    """Each bundle is loadable on its own: every reference is the fullUrl of one of its entries."""

    def references(value: Any) -> Iterator[str]:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "reference":
                    yield item
                else:
                    yield from references(item)
        elif isinstance(value, list):
            for item in value:
                yield from references(item)

    for patient in population:
        full_urls = {entry["fullUrl"] for entry in patient.bundle["entry"]}
        found = set(references(patient.bundle))
        assert found
        assert found <= full_urls


def test_patient_carries_the_ins_and_traits(population: list[PatientBundle]) -> None:
    """The Patient has the test INS, the birth name and first given name, sex and birth date."""
    for patient in population:
        resource = next(resources([patient], "Patient"))
        identifiers = {(i["system"], i["value"]) for i in resource["identifier"]}
        assert patient.ins in identifiers
        assert patient.ins[0] == INS_SYSTEM
        assert validate_nir(patient.ins[1])
        official = next(name for name in resource["name"] if name["use"] == "official")
        assert (official["family"], official["given"][0]) == (patient.family, patient.given)
        assert resource["gender"] == patient.gender
        assert resource["birthDate"] == patient.birth_date.isoformat()
        assert patient.patient_url == next(
            e["fullUrl"] for e in patient.bundle["entry"] if e["resource"]["resourceType"] == "Patient"
        )


def test_professionals_have_rpps_profession_and_specialty(population: list[PatientBundle]) -> None:
    """Practitioners carry 8 + an 11-digit RPPS starting with 10; roles carry TRE_G15 and TRE_R38."""
    practitioners = list(resources(population, "Practitioner"))
    assert practitioners
    for practitioner in practitioners:
        idnps = next(i["value"] for i in practitioner["identifier"] if i["system"] == IDNPS_SYSTEM)
        rpps = idnps[1:]
        assert idnps[0] == "8"
        assert len(rpps) == 11
        assert rpps.startswith("10")
        assert is_luhn_valid(rpps)
    for role in resources(population, "PractitionerRole"):
        profession = role["code"][0]["coding"][0]
        assert profession["system"].endswith("TRE-G15-ProfessionSante")
        assert profession["code"] in PROFESSIONS
        if profession["code"] == "10":
            specialty = role["specialty"][0]["coding"][0]
            assert specialty["system"].endswith("TRE-R38-SpecialiteOrdinale")
            assert specialty["code"].startswith("SM")


def test_pool_has_every_profession() -> None:
    """The default pool has physicians, pharmacists, nurses, midwives, dentists and physiotherapists."""
    pool = generate_professionals(seed=1)
    assert {p.profession for p in pool.professionals} == PROFESSIONS
    assert len({p.rpps for p in pool.professionals}) == len(pool.professionals)


def test_vital_signs_and_glycaemia_series_are_coded(population: list[PatientBundle]) -> None:
    """Blood pressure is the 85354-9 panel of 8480-6 and 8462-4; glycaemia is a laboratory series."""
    observations = list(resources(population, "Observation"))
    categories = {o["category"][0]["coding"][0]["code"] for o in observations}
    assert categories == {"vital-signs", "laboratory"}
    codes = Counter(o["code"]["coding"][0]["code"] for o in observations)
    assert {"29463-7", "8302-2", "85354-9", "15074-8"} <= set(codes)
    for observation in observations:
        if observation["code"]["coding"][0]["code"] == "85354-9":
            components = [c["code"]["coding"][0]["code"] for c in observation["component"]]
            assert components == ["8480-6", "8462-4"]
            systolic, diastolic = (c["valueQuantity"]["value"] for c in observation["component"])
            assert systolic > diastolic
    series = Counter()
    for patient in population:
        for observation in resources([patient], "Observation"):
            if observation["code"]["coding"][0]["code"] == "15074-8":
                series[patient.ins] += 1
    assert max(series.values()) >= 3


def test_profile_resources_are_present(population: list[PatientBundle]) -> None:
    """The population has allergies, treatments, vaccinations, problems and trusted persons."""
    types = Counter(resource["resourceType"] for resource in resources(population))
    for resource_type in (
        "AllergyIntolerance",
        "MedicationStatement",
        "Immunization",
        "Condition",
        "RelatedPerson",
    ):
        assert types[resource_type] > 0
    roles = {
        related["relationship"][0]["coding"][0]["code"] for related in resources(population, "RelatedPerson")
    }
    assert "NOK" in roles


def test_an_allergy_keeps_the_drug_off_the_treatments() -> None:
    """A patient allergic to penicillins or amoxicillin is never given amoxicillin (ATC J01CA04)."""
    pool = generate_professionals(seed=3)
    allergic = 0
    for person in people(400, seed=3):
        profile = draw_profile(random.Random(person.nir), person, pool, DEFAULT_AS_OF)
        if any(a.allergen.snomed in ("764146007", "372687004") for a in profile.allergies):
            allergic += 1
            assert all(t.drug.atc != "J01CA04" for t in profile.treatments)
    assert allergic > 0


# Documents.


def test_every_dmp_class_appears_for_every_patient(population: list[PatientBundle]) -> None:
    """Each patient has a document of classes 10, 31, 42, 43, 52, 60 and 90."""
    for patient in population:
        classes = {
            reference["category"][0]["coding"][0]["code"]
            for reference in resources([patient], "DocumentReference")
            if reference["category"][0]["coding"][0]["system"] == CLASS_SYSTEM
        }
        assert classes == {"10", "31", "42", "43", "52", "60", "90"}


def test_default_documents_are_eight_one_of_each_professional_kind() -> None:
    """By default a patient gets 8 documents: every class but the patient's own (90)."""
    patient = next(generate_population(1, seed=5))
    references = list(resources([patient], "DocumentReference"))
    types = {r["type"]["coding"][0]["code"] for r in references}
    assert len(references) == 8
    assert types == {"11488-4", "57833-6", "60593-1", "11502-2", "11369-6", "18748-4", "11490-0", "REMB"}


def test_more_documents_repeat_the_kinds_with_distinct_ids() -> None:
    """Twenty documents repeat the nine kinds, each with its own master identifier."""
    patient = next(generate_population(1, seed=6, documents_per_patient=20))
    references = list(resources([patient], "DocumentReference"))
    assert len(references) == 20
    assert len({r["masterIdentifier"]["value"] for r in references}) == 20


def test_type_and_class_agree_with_the_ans_table(population: list[PatientBundle]) -> None:
    """Each document's type maps to its class in ASS_X04, as the CDA feed reads it."""
    systems = {
        "http://loinc.org": "2.16.840.1.113883.6.1",
        "urn:oid:1.2.250.1.213.1.1.4.12": "1.2.250.1.213.1.1.4.12",
    }
    for reference in resources(population, "DocumentReference"):
        type_coding = reference["type"]["coding"][0]
        expected = class_code_for(type_coding["code"], systems[type_coding["system"]])
        assert expected is not None
        assert reference["category"][0]["coding"][0]["code"] == expected.value


def test_document_reference_metadata(population: list[PatientBundle]) -> None:
    """DocumentReferences are current, N, dated, authored, and give the period and the place of care."""
    for reference in resources(population, "DocumentReference"):
        assert reference["status"] == "current"
        assert reference["securityLabel"][0]["coding"][0]["code"] == "N"
        assert reference["masterIdentifier"]["value"].startswith("urn:oid:2.25.")
        assert reference["author"][0]["reference"].startswith("urn:uuid:")
        assert reference["date"]
        context = reference["context"]
        assert context["period"]["start"] <= context["period"]["end"]
        assert context["facilityType"]["coding"][0]["code"]
        if reference["category"][0]["coding"][0]["code"] != "90":
            assert context["practiceSetting"]["coding"][0]["code"] in ("AMBULATOIRE", "ETABLISSEMENT")


def test_binary_hash_size_and_url_match(population: list[PatientBundle]) -> None:
    """The attachment points at a Binary of the bundle whose bytes have its size and SHA-1 hash."""
    for patient in population:
        content = binaries(patient)
        for reference in resources([patient], "DocumentReference"):
            attachment = reference["content"][0]["attachment"]
            data = content[attachment["url"]]
            assert attachment["size"] == len(data)
            assert attachment["hash"] == base64.b64encode(
                hashlib.sha1(data, usedforsecurity=False).digest()
            ).decode("ascii")


def test_cda_documents_are_well_formed_with_a_french_header(population: list[PatientBundle]) -> None:
    """Every CDA is well-formed XML: ClinicalDocument, realm FR, typeId, templates, N, fr-FR, INS, RPPS."""
    count = 0
    for patient, data in cda_documents(population):
        root = etree.fromstring(data)
        count += 1
        assert root.tag == HL7 + "ClinicalDocument"
        assert root.find("h:realmCode", NS).get("code") == "FR"
        assert root.find("h:typeId", NS).get("extension") == "POCD_HD000040"
        templates = {t.get("root") for t in root.findall("h:templateId", NS)}
        assert {"2.16.840.1.113883.2.8.2.1", "1.2.250.1.213.1.1.1.1"} <= templates
        assert root.find("h:id", NS).get("root").startswith("2.25.")
        assert root.find("h:title", NS).text
        assert root.find("h:effectiveTime", NS).get("value")
        assert root.find("h:confidentialityCode", NS).get("code") == "N"
        assert root.find("h:languageCode", NS).get("code") == "fr-FR"
        ins = root.find("h:recordTarget/h:patientRole/h:id", NS)
        assert (ins.get("root"), ins.get("extension")) == ("1.2.250.1.213.1.4.10", patient.ins[1])
        assert root.find("h:custodian", NS) is not None
        assert root.find("h:documentationOf/h:serviceEvent", NS) is not None
        author = root.find("h:author/h:assignedAuthor/h:id", NS)
        if root.find("h:code", NS).get("code") != "REMB":
            assert author.get("root") == "1.2.250.1.71.4.2.1"
            assert author.get("extension").startswith("810")
    assert count == 8 * len(population)


def test_level_1_documents_embed_a_pdf(population: list[PatientBundle]) -> None:
    """A level-1 CDA's nonXMLBody is a base64 PDF; the patient's own document is a plain PDF."""
    for _, data in cda_documents(population):
        body = etree.fromstring(data).find("h:component/h:nonXMLBody/h:text", NS)
        if body is not None:
            assert body.get("mediaType") == "application/pdf"
            assert body.get("representation") == "B64"
            pdf = base64.b64decode(body.text)
            assert pdf.startswith(b"%PDF-")
            assert pdf.rstrip().endswith(b"%%EOF")
    for resource in resources(population, "Binary"):
        if resource["contentType"] == "application/pdf":
            assert base64.b64decode(resource["data"]).startswith(b"%PDF-")


def test_level_3_documents_have_sections_with_narrative_tables(population: list[PatientBundle]) -> None:
    """The lab report and the vaccination history are level 3: coded sections with tables."""
    level_3 = Counter()
    for _, data in cda_documents(population):
        root = etree.fromstring(data)
        sections = root.findall("h:component/h:structuredBody/h:component/h:section", NS)
        if not sections:
            continue
        level_3[root.find("h:code", NS).get("code")] += 1
        assert all(section.find("h:title", NS).text for section in sections)
        assert all(section.find("h:code", NS).get("code") for section in sections)
        assert root.find(".//h:section/h:text/h:table/h:thead/h:tr/h:th", NS) is not None
    assert level_3 == {"11502-2": len(population), "11369-6": len(population)}


def test_cda_documents_parse_with_the_cda_feed(population: list[PatientBundle]) -> None:
    """The CDA feed reads every document without warning: INS, class, level, place and setting."""
    for patient, data in cda_documents(population):
        document = parse_cda(data)
        assert document.warnings == ()
        assert document.ins is not None
        assert (document.ins.root, document.ins.extension) == ("1.2.250.1.213.1.4.10", patient.ins[1])
        assert document.class_code is not None
        assert document.facility_type is not None
        assert document.practice_setting is not None
        if document.level is BodyLevel.UNSTRUCTURED:
            assert document.body is not None
            assert document.body.content is not None
            assert document.body.content.startswith(b"%PDF-")


def test_metadata_agree_with_what_the_cda_feed_derives(population: list[PatientBundle]) -> None:
    """The DocumentReference says what the CDA feed reads in the document's own header."""
    keys = ("masterIdentifier", "type", "category", "date", "securityLabel")
    for patient in population:
        content = binaries(patient)
        for reference in resources([patient], "DocumentReference"):
            attachment = reference["content"][0]["attachment"]
            if attachment["contentType"] != "text/xml":
                continue
            raw = content[attachment["url"]]
            derived = document_reference_from_cda(parse_cda(raw), raw, patient_id="p")
            for key in keys:
                assert _codes(reference[key]) == _codes(derived[key]), key
            assert _codes(reference["content"][0]["format"]) == _codes(derived["content"][0]["format"])
            for key in ("facilityType", "practiceSetting"):
                assert _codes(reference["context"][key]) == _codes(derived["context"][key]), key


def _codes(value: Any) -> Any:
    """Drop the displays, which the two sides may word differently, from a FHIR value."""
    if isinstance(value, dict):
        return {key: _codes(item) for key, item in value.items() if key != "display"}
    if isinstance(value, list):
        return [_codes(item) for item in value]
    return value


def test_master_identifier_is_the_cda_document_id(population: list[PatientBundle]) -> None:
    """masterIdentifier is urn:oid: + the CDA id/@root of the document it points at."""
    for patient in population:
        content = binaries(patient)
        for reference in resources([patient], "DocumentReference"):
            attachment = reference["content"][0]["attachment"]
            if attachment["contentType"] != "text/xml":
                continue
            root = etree.fromstring(content[attachment["url"]])
            assert reference["masterIdentifier"]["value"] == "urn:oid:" + root.find("h:id", NS).get("root")


def test_pdf_padding_reaches_the_requested_size() -> None:
    """With pdf_bytes, every PDF (embedded or plain) is at least that big and at most a few percent more."""
    patient = next(generate_population(1, seed=8, documents_per_patient=9, pdf_bytes=30_000))
    sizes = []
    for data in binaries(patient).values():
        if data.startswith(b"%PDF-"):
            sizes.append(len(data))
            continue
        body = etree.fromstring(data).find("h:component/h:nonXMLBody/h:text", NS)
        if body is not None:
            sizes.append(len(base64.b64decode(body.text)))
    assert len(sizes) == 7
    assert all(30_000 <= size <= 31_500 for size in sizes)


# Population.


def test_age_and_sex_follow_the_french_pyramid() -> None:
    """Over 2,000 patients the shares of women, children, over-65s and over-80s are close to France's."""
    drawn = people(2_000, seed=11)
    ages = [age_on(person.birth_date, DEFAULT_AS_OF) for person in drawn]
    women = sum(person.sex == "female" for person in drawn) / len(drawn)
    assert 0.48 <= women <= 0.56
    assert 0.17 <= sum(age < 18 for age in ages) / len(ages) <= 0.25
    assert 0.17 <= sum(age >= 65 for age in ages) / len(ages) <= 0.26
    assert 0.04 <= sum(age >= 80 for age in ages) / len(ages) <= 0.09
    assert 38 <= statistics.mean(ages) <= 46
    assert min(ages) >= 0
    assert max(ages) <= 104
    assert all(person.birth_date <= DEFAULT_AS_OF for person in drawn)


def test_fifty_patients_generate_with_distinct_ins() -> None:
    """Fifty patients with default documents generate, each with its own INS and eight documents."""
    patients = list(generate_population(50, seed=9))
    assert len({patient.ins for patient in patients}) == 50
    assert all(
        sum(e["resource"]["resourceType"] == "DocumentReference" for e in p.bundle["entry"]) == 8
        for p in patients
    )


def test_records_are_dated_as_of_the_given_day() -> None:
    """Nothing in a record is dated after as_of."""
    as_of = date(2023, 6, 30)
    patient = next(generate_population(1, seed=12, documents_per_patient=9, as_of=as_of))
    for reference in resources([patient], "DocumentReference"):
        assert reference["date"][:10] <= as_of.isoformat()
    for observation in resources([patient], "Observation"):
        assert observation["effectiveDateTime"][:10] <= as_of.isoformat()
    assert patient.birth_date <= as_of


@pytest.mark.parametrize(
    "arguments",
    [
        {"patients": -1, "seed": 1},
        {"patients": 1, "seed": 1, "documents_per_patient": -1},
        {"patients": 1, "seed": 1, "pdf_bytes": 0},
        {"patients": 1, "seed": 1, "professionals": 3},
    ],
)
def test_bad_arguments_raise(arguments: dict[str, int]) -> None:
    """Negative counts, a non-positive PDF size or a pool too small raise ValueError, before any patient."""
    with pytest.raises(ValueError, match=r"."):
        generate_population(**arguments)
