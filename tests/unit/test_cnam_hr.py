"""The reimbursement history (CNAM-HR CDA volet) read into dated lines, and its synthetic generator.

A hand-written document laid out as the CI-SIS example ``CNAM-HR_2022.01.xml`` is read into
exactly its lines; malformed ones are refused with :class:`InvalidResource`; the documents
``carnet generate --cnam-hr`` writes are read back line for line against their own narrative
tables and cover the 24 months before their date.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import date

import pytest
from lxml import etree

from carnet.domain.errors import InvalidResource
from carnet.feeds.cda import Code, parse_cda
from carnet.feeds.cnam_hr import (
    ATC3_SYSTEM,
    CIP_SYSTEM,
    SECTION_CODES,
    LineKind,
    ReimbursementLine,
    is_cnam_hr,
    read_if_cnam_hr,
    read_reimbursements,
)
from carnet.services.reimbursements import Dispensed, Timeline, TimelineLine, recent_dispensations
from carnet.synthetic import generate_population
from carnet.synthetic.timestamps import add_months

NS = {"h": "urn:hl7-org:v3"}
GHS = "1.2.250.1.215.200.3.1"
NGAP = "1.2.250.1.215.200.3.3"

_EMPTY = '<component><section><code code="{code}" codeSystem="2.16.840.1.113883.6.1"/><text/></section></component>'

_MEDICINE = """<entry><substanceAdministration classCode="SBADM" moodCode="EVN">
  <consumable><manufacturedProduct><manufacturedMaterial>
    <code><originalText>LUDEAL</originalText>
      <translation code="3400935673220" displayName="LUDEAL CPR3/21" codeSystem="1.2.250.1.215.200.1.1.1"/>
      <translation code="G03" displayName="HORMONES SEXUELLES" codeSystem="1.2.250.1.215.200.1.2.1"/>
      <translation><translation code="1949" displayName="LEVONORGESTREL" codeSystem="1.2.250.1.215.200.1.3.1"/></translation>
    </code>
    <name>LUDEAL CPR3/21</name>
  </manufacturedMaterial></manufacturedProduct></consumable>
  <entryRelationship typeCode="REFR"><supply classCode="SPLY" moodCode="EVN">
    <quantity value="1"/>
    <performer typeCode="PRF"><time value="20190526"/><assignedEntity><id nullFlavor="UNK"/>
      <representedOrganization><name>CLINIQUE SAINTE GENEVIEVE</name></representedOrganization>
    </assignedEntity></performer>
    <author><time value="20190526"/><assignedAuthor><id root="1.2.250.1.71.4.2.1" extension="697121458706"/>
      <assignedPerson><name><suffix>DR</suffix><given>Antoine</given><family>DUPONT</family></name></assignedPerson>
      <representedOrganization><name>CLINIQUE SAINTE GENEVIEVE</name></representedOrganization>
    </assignedAuthor></author>
  </supply></entryRelationship>
</substanceAdministration></entry>"""

_STAY = """<entry><encounter classCode="ENC" moodCode="EVN">
  <code code="IMP" displayName="Hospitalisation" codeSystem="2.16.840.1.113883.5.4">
    <qualifier><value code="1940" displayName="Interventions majeures sur l'intestin grele" codeSystem="1.2.250.1.215.200.3.1"/></qualifier>
  </code>
  <effectiveTime><low value="20190515"/><high value="20190530"/></effectiveTime>
  <performer><assignedEntity><representedOrganization><name>CLINIQUE SAINTE GENEVIEVE</name></representedOrganization></assignedEntity></performer>
</encounter></entry>"""

_ACT = """<entry><procedure classCode="PROC" moodCode="EVN">
  <code code="G" displayName="CONSULTATION MEDECINE GENERALE" codeSystem="1.2.250.1.215.200.3.3"/>
  <effectiveTime value="20190711"/>
  <performer><assignedEntity><assignedPerson><name><suffix>DR</suffix><given>Laure</given><family>MARIGNY</family></name></assignedPerson>
    <representedOrganization><name>CENTRE DE SANTE SAINT MARTIN</name></representedOrganization></assignedEntity></performer>
</procedure></entry>"""


def _document(*, medicine: str = _MEDICINE, leave_out: str | None = None) -> bytes:
    """A CNAM-HR document with one medicine, one stay and one care act; other sections empty."""
    sections = [
        '<component><section><code code="55112-7" codeSystem="2.16.840.1.113883.6.1"/>'
        "<title>Usage et Responsabilités</title><text>Fournies à titre informatif.</text></section></component>"
    ]
    for code in SECTION_CODES:
        if code == leave_out:
            continue
        if code == "10160-0":
            sections.append(_EMPTY.replace("<text/>", medicine).format(code=code))
        elif code == "46240-8":
            sections.append(_EMPTY.replace("<text/>", _STAY).format(code=code))
        elif code == "67803-7":
            acts = (
                '<component><section><code code="29554-3" codeSystem="2.16.840.1.113883.6.1">'
                '<translation code="67803-7" codeSystem="2.16.840.1.113883.6.1"/></code>'
            )
            sections.append(acts + _ACT + "</section></component>")
        else:
            sections.append(_EMPTY.format(code=code))
    return (
        '<?xml version="1.0" encoding="UTF-8"?><ClinicalDocument xmlns="urn:hl7-org:v3">'
        '<templateId root="1.2.250.1.213.1.1.1.36" extension="2022.01"/><id root="1.2.3.4.5"/>'
        '<code code="REMB" codeSystem="1.2.250.1.213.1.1.4.12"/>'
        '<documentationOf><serviceEvent><effectiveTime><low value="20170801"/><high value="20190801"/>'
        "</effectiveTime></serviceEvent></documentationOf>"
        "<component><structuredBody>" + "".join(sections) + "</structuredBody></component></ClinicalDocument>"
    ).encode()


def test_a_cnam_hr_document_is_read_into_exactly_its_lines() -> None:
    """The medicine, the stay and the act of a hand-written CNAM-HR come back with every field, oldest first."""
    history = read_reimbursements(_document())
    assert history.period_start == date(2017, 8, 1)
    assert history.period_end == date(2019, 8, 1)
    assert history.disclaimer == "Fournies à titre informatif."
    assert history.lines == (
        ReimbursementLine(
            kind=LineKind.STAY,
            start=date(2019, 5, 15),
            end=date(2019, 5, 30),
            label="Interventions majeures sur l'intestin grele",
            codes=(
                Code(
                    code="1940", code_system=GHS, display_name="Interventions majeures sur l'intestin grele"
                ),
                Code(code="IMP", code_system="2.16.840.1.113883.5.4", display_name="Hospitalisation"),
            ),
            performer="CLINIQUE SAINTE GENEVIEVE",
        ),
        ReimbursementLine(
            kind=LineKind.MEDICINE,
            start=date(2019, 5, 26),
            label="LUDEAL CPR3/21",
            codes=(
                Code(code="3400935673220", code_system=CIP_SYSTEM, display_name="LUDEAL CPR3/21"),
                Code(code="G03", code_system=ATC3_SYSTEM, display_name="HORMONES SEXUELLES"),
                Code(code="1949", code_system="1.2.250.1.215.200.1.3.1", display_name="LEVONORGESTREL"),
            ),
            quantity="1",
            prescriber="DR Antoine DUPONT (CLINIQUE SAINTE GENEVIEVE)",
            performer="CLINIQUE SAINTE GENEVIEVE",
        ),
        ReimbursementLine(
            kind=LineKind.CARE,
            start=date(2019, 7, 11),
            label="CONSULTATION MEDECINE GENERALE",
            codes=(Code(code="G", code_system=NGAP, display_name="CONSULTATION MEDECINE GENERALE"),),
            performer="CENTRE DE SANTE SAINT MARTIN",
        ),
    )
    assert history.lines[1].code_in(ATC3_SYSTEM) == "G03"
    assert is_cnam_hr(parse_cda(_document()))


@pytest.mark.parametrize(
    ("document", "words"),
    [
        (_document(leave_out="11369-6"), "11369-6"),
        (
            _document(
                medicine=_MEDICINE.replace('<time value="20190526"/><assignedEntity>', "<assignedEntity>")
            ),
            "no date",
        ),
        (
            _document(medicine=_MEDICINE.replace('codeSystem="1.2.250.1.215.200.1.1.1"', 'codeSystem="9.9"')),
            "CIP",
        ),
        (
            _document(
                medicine=_MEDICINE.replace("<name>LUDEAL CPR3/21</name>", "").replace(
                    'displayName="LUDEAL CPR3/21" ', ""
                )
            ),
            "no label",
        ),
        (
            _document()
            .replace(b"<structuredBody>", b"<nonXMLBody>")
            .replace(b"</structuredBody>", b"</nonXMLBody>"),
            "structuredBody",
        ),
    ],
    ids=["section-missing", "medicine-undated", "medicine-without-cip", "no-label", "no-structured-body"],
)
def test_a_malformed_cnam_hr_document_is_refused(document: bytes, words: str) -> None:
    """A missing section, an undated, uncoded or unlabelled entry, or no structured body raise InvalidResource."""
    with pytest.raises(InvalidResource) as raised:
        read_reimbursements(document)
    assert words in raised.value.message


def _histories(patients: int, seed: int) -> Iterator[bytes]:
    for item in generate_population(patients, seed, cnam_hr=True):
        binaries = {entry["fullUrl"]: entry["resource"] for entry in item.bundle["entry"]}
        for entry in item.bundle["entry"]:
            resource = entry["resource"]
            if (
                resource["resourceType"] == "DocumentReference"
                and resource["type"]["coding"][0]["code"] == "REMB"
            ):
                binary = binaries[resource["content"][0]["attachment"]["url"]]
                yield base64.b64decode(binary["data"])


def test_generated_histories_read_back_line_for_line_against_their_tables() -> None:
    """Every coded entry of a generated CNAM-HR matches its narrative table row (date and label), section by section."""
    for raw in _histories(4, seed=11):
        history = read_reimbursements(raw)
        root = etree.fromstring(raw)
        rows = 0
        for code, kind in SECTION_CODES.items():
            section = root.xpath(
                f".//h:section[h:code/@code='{code}' or h:code/h:translation/@code='{code}']", namespaces=NS
            )[0]
            table = [
                [cell.text for cell in row] for row in section.iterfind("h:text/h:table/h:tbody/h:tr", NS)
            ]
            lines = sorted(
                (line for line in history.lines if line.kind is kind),
                key=lambda line: (line.start, line.label),
            )
            assert len(lines) == len(table) == len(section.findall("h:entry", NS))
            expected = sorted((row[0].split(" - ")[0], row[1].upper()) for row in table)
            assert sorted((line.start.strftime("%d/%m/%Y"), line.label.upper()) for line in lines) == expected
            rows += len(table)
        assert rows == len(history.lines) > 0
        assert all(line.code_in(CIP_SYSTEM) for line in history.lines if line.kind is LineKind.MEDICINE)


def test_generated_histories_cover_24_months() -> None:
    """A generated history covers the 24 months before its date, its lines fall inside, and together they fill every month."""
    months: set[tuple[int, int]] = set()
    for raw in _histories(6, seed=11):
        history = read_reimbursements(raw)
        assert history.period_start is not None
        assert history.period_end is not None
        assert add_months(history.period_end, -24) == history.period_start
        assert all(history.period_start <= line.start <= history.period_end for line in history.lines)
        months |= {(line.start.year, line.start.month) for line in history.lines}
        start = history.period_start
    wanted = {(add_months(start, n).year, add_months(start, n).month) for n in range(25)}
    assert wanted - months == set()


def test_the_generator_is_deterministic_for_a_seed() -> None:
    """The same seed gives the same CNAM-HR bytes; another seed gives other ones."""
    assert list(_histories(2, seed=5)) == list(_histories(2, seed=5))
    assert list(_histories(1, seed=5)) != list(_histories(1, seed=6))


def test_recent_dispensations_keep_the_three_months_before_the_latest_one_per_medicine() -> None:
    """Reimbursed lines and MedicationDispenses within 92 days of the latest are listed once per medicine, newest first."""

    def medicine(label: str, day: date) -> TimelineLine:
        line = ReimbursementLine(kind=LineKind.MEDICINE, start=day, label=label, performer="PHARMACIE A")
        return TimelineLine(line=line, document_id="d")

    stay = ReimbursementLine(kind=LineKind.STAY, start=date(2024, 6, 1), label="SEJOUR")
    timeline = Timeline(
        lines=(
            medicine("RAMIPRIL 5 MG", date(2024, 5, 20)),
            medicine("RAMIPRIL 5 MG", date(2024, 4, 20)),
            medicine("OLD DRUG", date(2024, 1, 1)),
            TimelineLine(line=stay, document_id="d"),
        ),
        documents=1,
    )
    dispenses = [
        {
            "resourceType": "MedicationDispense",
            "status": "completed",
            "medicationCodeableConcept": {"coding": [{"display": "AMOXICILLINE 1 G"}]},
            "whenHandedOver": "2024-06-10T10:00:00+02:00",
            "performer": [{"actor": {"display": "PHARMACIE B"}}],
        },
        {
            "resourceType": "MedicationDispense",
            "status": "cancelled",
            "medicationCodeableConcept": {"text": "X"},
            "whenHandedOver": "2024-06-11",
        },
    ]
    assert recent_dispensations(timeline, dispenses) == [
        Dispensed(
            label="AMOXICILLINE 1 G",
            last=date(2024, 6, 10),
            times=1,
            performer="PHARMACIE B",
            source="pharmacy",
        ),
        Dispensed(
            label="RAMIPRIL 5 MG", last=date(2024, 5, 20), times=2, performer="PHARMACIE A", source="insurer"
        ),
    ]
    assert recent_dispensations(Timeline(lines=(), documents=0), []) == []


def test_only_a_structured_reimbursement_history_is_read() -> None:
    """read_if_cnam_hr reads a CNAM-HR and returns None for a CDA of another volet or a level 1 REMB."""
    assert read_if_cnam_hr(_document()) is not None
    other = _document().replace(b'root="1.2.250.1.213.1.1.1.36"', b'root="1.2.250.1.213.1.1.1.55"')
    assert read_if_cnam_hr(other.replace(b'code="REMB"', b'code="11502-2"')) is None
    level_1 = other.replace(b"<structuredBody>", b"<nonXMLBody>").replace(
        b"</structuredBody>", b"</nonXMLBody>"
    )
    assert read_if_cnam_hr(level_1) is None
    with pytest.raises(InvalidResource):
        read_if_cnam_hr(_document(leave_out="26436-6"))
