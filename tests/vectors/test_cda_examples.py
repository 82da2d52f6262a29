"""The published CDA R2 examples parse into the metadata their manifests promise.

ANS CI-SIS examples (French "volets de contenu") and HL7 C-CDA examples, from
``shared/data/external``; each folder's ``manifest.tsv`` gives the expected type code and body.
"""

from __future__ import annotations

import csv
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from carnet.feeds.cda import (
    LOINC,
    BodyLevel,
    ClassCode,
    Code,
    Identifier,
    INSSystem,
    class_code_for,
    parse_cda,
)
from paths import EXTERNAL

ANS = EXTERNAL / "ans-cisis-cda-examples"
CCDA = EXTERNAL / "hl7-ccda-examples"
ANS_LEVELS = {"N1 (nonXMLBody)": BodyLevel.UNSTRUCTURED, "N3 (structuredBody)": BodyLevel.STRUCTURED}
CCDA_LEVELS = {"nonXMLBody": BodyLevel.UNSTRUCTURED, "structuredBody": BodyLevel.STRUCTURED}
# The one example with a malformed date: its serviceEvent high has the offset "-5000".
CCDA_WARNINGS = {
    "documents/General_External_Document_Reference_PROBLEMS_in_Empty_C-CDA_2.1_C-CDAR2.1.xml": (
        "documentationOf[1]/serviceEvent/effectiveTime/high is not an HL7 timestamp "
        "to day precision or finer; it was ignored.",
    ),
}
PARIS_WINTER = timezone(timedelta(hours=1))


def _manifest(folder: Path) -> list[dict[str, str]]:
    path = folder / "manifest.tsv"
    if not path.exists():
        return []
    with path.open(encoding="utf-8", newline="") as lines:
        return list(csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE))


ANS_ROWS = _manifest(ANS)
CCDA_ROWS = _manifest(CCDA)


@pytest.mark.external
@pytest.mark.parametrize(
    ("folder", "rows", "subfolder"), [(ANS, ANS_ROWS, "cda"), (CCDA, CCDA_ROWS, "documents")]
)
def test_every_example_file_is_in_its_manifest(
    folder: Path, rows: list[dict[str, str]], subfolder: str
) -> None:
    """Each example folder holds exactly the files its manifest lists, and at least one."""
    on_disk = sorted(f"{subfolder}/{path.name}" for path in (folder / subfolder).glob("*.xml"))
    assert on_disk == sorted(row["file"] for row in rows)
    assert on_disk


@pytest.mark.external
@pytest.mark.parametrize("row", ANS_ROWS, ids=lambda row: row["file"])
def test_ans_example_parses_to_its_manifest(row: dict[str, str]) -> None:
    """An ANS example has an id, the manifest's type code and level, an INS, an author and a class."""
    document = parse_cda((ANS / row["file"]).read_bytes())

    assert document.id is not None
    assert document.code is not None
    assert (document.code.code, document.code.code_system) == (row["doc_code"], row["doc_code_system"])
    assert document.level == ANS_LEVELS[row["body_level"]]
    assert document.patient is not None
    assert document.patient.identifiers
    assert document.ins is not None
    assert document.ins.root in {INSSystem.NIR, INSSystem.TEST_NIR}
    assert document.authors
    assert document.class_code is not None
    assert document.warnings == ()


@pytest.mark.external
@pytest.mark.parametrize(
    "row",
    [row for row in ANS_ROWS if row["body_level"] == "N1 (nonXMLBody)"],
    ids=lambda row: row["file"],
)
def test_ans_level_1_example_embeds_a_pdf(row: dict[str, str]) -> None:
    """A level 1 ANS example decodes its base64 body to PDF bytes."""
    document = parse_cda((ANS / row["file"]).read_bytes())

    assert document.body is not None
    assert document.body.media_type == "application/pdf"
    assert document.body.representation == "B64"
    assert document.body.content is not None
    assert document.body.content.startswith(b"%PDF")


@pytest.mark.external
@pytest.mark.parametrize("row", CCDA_ROWS, ids=lambda row: row["file"])
def test_ccda_example_parses_without_ins(row: dict[str, str]) -> None:
    """A US C-CDA example parses: id, the manifest's LOINC code and body, a patient id, no INS."""
    document = parse_cda((CCDA / row["file"]).read_bytes())

    assert document.id is not None
    assert document.code is not None
    assert (document.code.code, document.code.code_system) == (row["doc_code_loinc"], LOINC)
    assert document.level == CCDA_LEVELS[row["body"]]
    assert document.patient is not None
    assert document.patient.identifiers
    assert document.ins is None
    assert document.warnings == CCDA_WARNINGS.get(row["file"], ())


@pytest.mark.external
@pytest.mark.parametrize(
    "row", [row for row in CCDA_ROWS if row["body"] == "nonXMLBody"], ids=lambda row: row["file"]
)
def test_ccda_level_1_example_embeds_or_references_its_content(row: dict[str, str]) -> None:
    """A C-CDA level 1 body yields its bytes (a PDF when it says so) or the reference to them."""
    document = parse_cda((CCDA / row["file"]).read_bytes())

    assert document.body is not None
    assert document.body.content is not None or document.body.reference is not None
    if document.body.content is not None and document.body.media_type == "application/pdf":
        assert document.body.content.startswith(b"%PDF")


@pytest.mark.external
def test_level_1_ans_example_header_reads_field_by_field() -> None:
    """The ANS unstructured biology report yields the exact header values it carries."""
    document = parse_cda((ANS / "cda" / "DOC_NON_STRUCTURE_CDA-R2-N1.xml").read_bytes())

    assert document.id == Identifier(root="1.3.6.1.4.1.19376.1.2.20.12345.1.1")
    assert document.set_id == Identifier(root="1.3.6.1.4.1.19376.1.2.20.12345.1")
    assert document.version_number == 1
    assert document.title == "Compte rendu d'examens biologiques"
    assert document.effective_time == datetime(2021, 4, 1, 13, 47, 45, tzinfo=PARIS_WINTER)
    assert document.code == Code(code="11502-2", code_system=LOINC, display_name="CR d'examens biologiques")
    assert document.confidentiality_code is not None
    assert document.confidentiality_code.code == "N"
    assert document.language_code == "fr-FR"
    assert document.ins == Identifier(root=INSSystem.TEST_NIR, extension="279035121518989")
    assert document.patient is not None
    assert document.patient.birth_date == date(1979, 3, 28)
    assert document.patient.gender is not None
    assert document.patient.gender.code == "F"
    assert document.patient.name is not None
    assert document.patient.name.family_name == "PAT-TROIS"
    assert document.patient.name.given_name == "DOMINIQUE MARIE-LOUISE"
    (author,) = document.authors
    assert author.time == datetime(2021, 1, 4, 16, 5, 27, tzinfo=PARIS_WINTER)
    assert author.national_id == "801234534765"
    assert author.rpps == "01234534765"
    assert author.specialty == Code(
        code="G15_10/SM03",
        code_system="1.2.250.1.213.1.1.4.5",
        display_name="Médecin - Biologie médicale (SM)",
    )
    assert author.organization is not None
    assert author.organization.name == "Laboratoire des charmes"
    assert document.custodian is not None
    assert document.custodian.identifiers == (Identifier(root="1.2.250.1.71.4.2.2", extension="1120459876"),)
    assert document.service_period is not None
    assert document.service_period.low == datetime(2021, 1, 4, 13, 47, tzinfo=PARIS_WINTER)
    assert document.service_period.high == datetime(2021, 1, 4, 13, 55, tzinfo=PARIS_WINTER)
    assert document.practice_setting is not None
    assert document.practice_setting.code == "AMBULATOIRE"
    assert document.facility_type is not None
    assert document.facility_type.code == "SA07"
    assert document.class_code == ClassCode.COMPTE_RENDU


@pytest.mark.external
def test_replacing_version_names_its_parent() -> None:
    """A document that replaces another (relatedDocument RPLC) names the parent's id."""
    document = parse_cda((ANS / "cda" / "OPH-BRE_2022.02.xml").read_bytes())

    assert document.version_number == 3
    assert document.replaces == Identifier(
        root="1.2.250.1.213.1.1.9", extension="OPH-BRE_2021.01_20210827_00001_2"
    )


@pytest.mark.parametrize(
    ("type_code", "code_system", "expected"),
    [
        ("11490-0", None, ClassCode.COMPTE_RENDU),  # lettre de liaison
        ("11488-4", LOINC, ClassCode.COMPTE_RENDU),  # consultation
        ("11502-2", LOINC, ClassCode.COMPTE_RENDU),  # CR de biologie
        ("11369-6", LOINC, ClassCode.CERTIFICAT),  # historique des vaccinations: 52 in ASS_X04
        ("60591-5", LOINC, ClassCode.SYNTHESE),  # synthèse du dossier médical
        ("18748-4", LOINC, ClassCode.IMAGERIE),
        ("57833-6", LOINC, ClassCode.PRESCRIPTION),
        ("60593-1", LOINC, ClassCode.DISPENSATION),
        ("18776-5", LOINC, ClassCode.PLAN_DE_SOINS),
        ("80565-5", LOINC, ClassCode.TRAITEMENT_ADMINISTRE),
        ("REMB", "1.2.250.1.213.1.1.4.12", ClassCode.REMBOURSEMENT),
        ("EXPPAT_1", "1.2.250.1.213.1.1.4.12", ClassCode.DOCUMENT_DU_PATIENT),
        ("86531-1", LOINC, ClassCode.GESTION),
        ("CERT_DECL", "1.2.250.1.213.1.1.4.12", ClassCode.CERTIFICAT),
        ("CERT_DECL", LOINC, None),  # right code, wrong system
        ("18842-5", LOINC, None),  # US discharge summary: not a DMP type
        ("FEUILLE-DE-STYLE", None, None),  # class 99, left out on purpose
    ],
)
def test_class_code_follows_the_ans_table(
    type_code: str, code_system: str | None, expected: ClassCode | None
) -> None:
    """class_code_for maps type codes to DMP classes as ASS_X04 does, and unknown ones to None."""
    assert class_code_for(type_code, code_system) == expected
