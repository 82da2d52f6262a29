"""The insurer's reimbursement history as a structured CNAM-HR CDA document (volet REMB, class 60).

Built as the CI-SIS example ``CNAM-HR_2022.01.xml`` lays it out: the generic CI-SIS header
(:func:`carnet.synthetic.cda.build_cda`, author ``ALIM_AM``, custodian the Assurance Maladie,
``serviceEvent`` the 24 months covered) with the volet's template ``1.2.250.1.213.1.1.1.36``, and
the eight sections, each a narrative table plus coded entries:

- the disclaimer "Usage et Responsabilités" (55112-7);
- medicines (10160-0): one dispensation a month of each chronic treatment running in the window,
  and acute ones after about half the visits; CIP13 (``1.2.250.1.215.200.1.1.1``) and ATC level 3
  (``…1.2.1``) translations, the active component (``…1.3.1``), prescriber, pharmacy, quantity;
- vaccinations (11369-6) of the window; medical devices (46264-8), LPP codes, for some patients;
- stays (46240-8), GHS codes (``1.2.250.1.215.200.3.1``); care acts (29554-3 + 67803-7, NGAP
  ``…3.3``) for the visits; radiology (18726-0, CCAM ``…3.4``) for some; biology (26436-6, NABM)
  for the lab results.

The CIP13, component and GHS codes are synthetic (right shape, EAN-13 key for the CIP); the ATC
groups are the drugs' real ones. Everything is drawn from the patient's profile and ``ctx.rng``,
so the same seed gives the same bytes.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from datetime import date, timedelta

from carnet.synthetic.cda import NAMESPACE, DocumentCode, build_cda
from carnet.synthetic.clinical import Drug
from carnet.synthetic.reports import Context, write_reimbursements
from carnet.synthetic.timestamps import add_months, french_date

CNAM_HR_TEMPLATE = "1.2.250.1.213.1.1.1.36"
CIP = "1.2.250.1.215.200.1.1.1"
ATC3 = "1.2.250.1.215.200.1.2.1"
ACTIVE_COMPONENT = "1.2.250.1.215.200.1.3.1"
GHS = "1.2.250.1.215.200.3.1"
NGAP = "1.2.250.1.215.200.3.3"
CCAM = "1.2.250.1.215.200.3.4"
NABM = "1.2.250.1.213.2.46"
LPP = "1.2.250.1.215.200.1.4"
LOINC = "2.16.840.1.113883.6.1"
LOINC_BIOLOGY = {
    "4548-4": ("1577", "HEMOGLOBINE GLYQUEE (HBA1C)"),
    "2093-3": ("0580", "CHOLESTEROL TOTAL"),
    "2160-0": ("0592", "CREATININE"),
    "718-7": ("1104", "HEMOGRAMME"),
}
"""LOINC code of a lab result → (NABM code, label) the insurer reimbursed; others are a generic line."""

DISCLAIMER = (
    "Les données affichées sont le reflet des informations issues des procédures de remboursement "
    "ou de prise en charge détenues par l'Assurance Maladie pour la période de soins référencée. "
    "Elles sont fournies à titre purement informatif et leur exhaustivité ne peut être garantie."
)

ATC3_GROUPS = {
    "A02": "MEDICAMENTS POUR LES TROUBLES DE L'ACIDITE",
    "A10": "MEDICAMENTS DU DIABETE",
    "B01": "ANTITHROMBOTIQUES",
    "C03": "DIURETIQUES",
    "C07": "BETABLOQUANTS",
    "C08": "INHIBITEURS CALCIQUES",
    "C09": "MEDICAMENTS AGISSANT SUR LE SYSTEME RENINE-ANGIOTENSINE",
    "C10": "AGENTS MODIFIANT LES LIPIDES",
    "G04": "MEDICAMENTS UROLOGIQUES",
    "J01": "ANTIBACTERIENS A USAGE SYSTEMIQUE",
    "L02": "THERAPEUTIQUE ENDOCRINE",
    "M05": "MEDICAMENTS POUR LE TRAITEMENT DES DESORDRES OSSEUX",
    "N02": "ANALGESIQUES",
    "N05": "PSYCHOLEPTIQUES",
    "N06": "PSYCHOANALEPTIQUES",
    "R06": "ANTIHISTAMINIQUES A USAGE SYSTEMIQUE",
}
_ACUTE = (
    Drug("N02BE01", "PARACÉTAMOL 1 g, comprimé", "1 comprimé jusqu'à 3 fois par jour"),
    Drug("J01CA04", "AMOXICILLINE 1 g, comprimé dispersible", "1 comprimé matin et soir pendant 6 jours"),
    Drug("R06AX27", "DESLORATADINE 5 mg, comprimé pelliculé", "1 comprimé par jour"),
)
_DEVICES = (
    ("1188523", "BANDELETTES D'AUTOSURVEILLANCE GLYCEMIQUE"),
    ("2192345", "ORTHESE DE GENOU"),
    ("1105380", "PANSEMENTS HYDROCOLLOIDES"),
    ("2190520", "CHAUSSURES THERAPEUTIQUES"),
)
_RADIOLOGY = (("ZBQK002", "RADIOGRAPHIE DU THORAX"), ("QEQK004", "MAMMOGRAPHIE BILATERALE"))

REMB = DocumentCode(
    code="REMB",
    code_system="1.2.250.1.213.1.1.4.12",
    code_system_name="TRE_A05-TypeDocComplementaire",
    display="Données de remboursement",
)


@dataclass(frozen=True, slots=True)
class _Line:
    day: date
    end: date | None
    label: str
    cells: tuple[str, ...]
    entry: ET.Element


def build_cnam_hr(ctx: Context, rank: int, *, document_uuid: str, set_uuid: str) -> bytes:
    """Return a CNAM-HR document covering the 24 months before the history's date, in UTF-8."""
    report = write_reimbursements(ctx, rank)
    day = report.created.date()
    since = add_months(day, -24)
    header = replace(report, sections=())
    xml = build_cda(
        document_uuid=document_uuid,
        set_uuid=set_uuid,
        code=REMB,
        report=header,
        person=ctx.person,
        pdf=None,
        model_templates=(CNAM_HR_TEMPLATE,),
    )
    ET.register_namespace("", NAMESPACE)
    root = ET.fromstring(xml)  # noqa: S314 -- the bytes build_cda just wrote, not outside input
    body = root.find(f"{{{NAMESPACE}}}component/{{{NAMESPACE}}}structuredBody")
    assert body is not None  # build_cda writes one when no PDF is given
    disclaimer = _section(body, "55112-7", "Usage et Responsabilités")
    ET.SubElement(disclaimer, f"{{{NAMESPACE}}}text").text = DISCLAIMER
    for code, title, header_row, lines in (
        (
            "10160-0",
            "Médicaments",
            ("Date de délivrance", "Médicament", "Groupe", "Prescrit par", "Délivré par", "Quantité"),
            _medicines(ctx, since, day),
        ),
        ("11369-6", "Vaccinations", ("Date", "Vaccin", "Réalisé par"), _vaccinations(ctx, since, day)),
        (
            "46264-8",
            "Dispositifs médicaux",
            ("Date", "Dispositif", "Délivré par", "Quantité"),
            _devices(ctx, since, day),
        ),
        ("46240-8", "Séjours", ("Période", "Nature du séjour", "Établissement"), _stays(ctx, since, day)),
        ("67803-7", "Soins médicaux et dentaires", ("Date", "Acte", "Réalisé par"), _care(ctx, since, day)),
        ("18726-0", "Radiologie", ("Date", "Acte", "Réalisé par"), _radiology(ctx, since, day)),
        ("26436-6", "Biologie", ("Date", "Acte", "Réalisé par"), _biology(ctx, since, day)),
    ):
        section = _section(body, code, title)
        _table(section, header_row, lines)
        for line in lines:
            ET.SubElement(section, f"{{{NAMESPACE}}}entry").append(line.entry)
    written: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return written


def _el(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{NAMESPACE}}}{tag}", attributes)
    if text is not None:
        element.text = text
    return element


def _new(tag: str, **attributes: str) -> ET.Element:
    return ET.Element(f"{{{NAMESPACE}}}{tag}", attributes)


def _ts(day: date) -> str:
    return day.strftime("%Y%m%d")


def _section(body: ET.Element, code: str, title: str) -> ET.Element:
    section = _el(_el(body, "component"), "section")
    if code == "67803-7":  # the acts sections: LOINC 29554-3 "Actes", translated to the list's code
        coded = _el(section, "code", code="29554-3", displayName="Actes", codeSystem=LOINC)
        _el(coded, "translation", code=code, displayName=title, codeSystem=LOINC)
    else:
        _el(section, "code", code=code, displayName=title, codeSystem=LOINC)
    _el(section, "title", title)
    return section


def _table(section: ET.Element, header: tuple[str, ...], lines: list[_Line]) -> None:
    text = _el(section, "text")
    if not lines:
        _el(text, "paragraph", "Aucune donnée de remboursement sur la période.")
        return
    table = _el(text, "table", border="0")
    row = _el(_el(table, "thead"), "tr")
    for cell in header:
        _el(row, "th", cell)
    body = _el(table, "tbody")
    for line in lines:
        row = _el(body, "tr")
        for cell in line.cells:
            _el(row, "td", cell)


def cip13(label: str) -> str:
    """A synthetic CIP13 for a presentation: ``34009`` + 7 digits + the EAN-13 key."""
    digits = "34009" + str(int(hashlib.sha256(label.encode()).hexdigest(), 16) % 10_000_000).zfill(7)
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(digits))
    return digits + str((10 - total % 10) % 10)


def _component_code(label: str) -> str:
    return str(int(hashlib.sha256(("ca/" + label).encode()).hexdigest(), 16) % 9000 + 1000)


def _dispensation(
    drug: Drug, day: date, prescriber: str, organization: str, pharmacy: str, quantity: int
) -> _Line:
    act = _new("substanceAdministration", classCode="SBADM", moodCode="EVN")
    _el(act, "templateId", root="1.2.250.1.213.1.1.3.42")
    _el(act, "statusCode", code="completed")
    material = _el(_el(_el(act, "consumable"), "manufacturedProduct"), "manufacturedMaterial")
    code = _el(material, "code")
    _el(code, "translation", code=cip13(drug.label), displayName=drug.label.upper(), codeSystem=CIP)
    group = ATC3_GROUPS.get(drug.atc[:3], f"GROUPE ATC {drug.atc[:3]}")
    _el(code, "translation", code=drug.atc[:3], displayName=group, codeSystem=ATC3)
    substance = drug.label.split(" ")[0].upper()
    _el(
        _el(code, "translation"),
        "translation",
        code=_component_code(substance),
        displayName=substance,
        codeSystem=ACTIVE_COMPONENT,
    )
    _el(material, "name", drug.label.upper())
    supply = _el(_el(act, "entryRelationship", typeCode="REFR"), "supply", classCode="SPLY", moodCode="EVN")
    _el(supply, "quantity", value=str(quantity))
    performer = _el(supply, "performer", typeCode="PRF")
    _el(performer, "time", value=_ts(day))
    _el(_el(_el(performer, "assignedEntity"), "representedOrganization"), "name", pharmacy)
    author = _el(_el(supply, "author"), "assignedAuthor")
    _el(_el(_el(author, "assignedPerson"), "name"), "family", prescriber)
    _el(_el(author, "representedOrganization"), "name", organization)
    cells = (french_date(day), drug.label.upper(), group, prescriber, pharmacy, str(quantity))
    return _Line(day, None, drug.label, cells, act)


def _medicines(ctx: Context, since: date, day: date) -> list[_Line]:
    pharmacy = ctx.profile.pharmacist.organization.name
    lines: list[_Line] = []
    for treatment in ctx.profile.treatments:
        first = max(treatment.start, since)
        last = min(treatment.end or day, day)
        moment = first
        while moment <= last:
            who = treatment.prescriber
            lines.append(
                _dispensation(treatment.drug, moment, who.display_name, who.organization.name, pharmacy, 1)
            )
            moment += timedelta(days=ctx.rng.randint(27, 33))
    for visit in ctx.profile.visits:
        visited = visit.moment.date()
        if since <= visited <= day and ctx.rng.random() < 0.5:
            who = visit.professional
            drug = ctx.rng.choice(_ACUTE)
            lines.append(
                _dispensation(
                    drug, visited, who.display_name, who.organization.name, pharmacy, ctx.rng.randint(1, 2)
                )
            )
    return sorted(lines, key=lambda line: line.day, reverse=True)


def _dated(tag: str, day: date, end: date | None = None) -> ET.Element:
    act = _new(tag, classCode={"procedure": "PROC", "encounter": "ENC"}.get(tag, "SPLY"), moodCode="EVN")
    _el(act, "statusCode", code="completed")
    if end is None:
        _el(act, "effectiveTime", value=_ts(day))
    else:
        period = _el(act, "effectiveTime")
        _el(period, "low", value=_ts(day))
        _el(period, "high", value=_ts(end))
    return act


def _performed(act: ET.Element, who: str, organization: str | None = None) -> None:
    entity = _el(_el(act, "performer"), "assignedEntity")
    if organization is not None:
        _el(_el(entity, "assignedPerson"), "name", who)
        _el(_el(entity, "representedOrganization"), "name", organization)
    else:
        _el(_el(entity, "representedOrganization"), "name", who)


def _vaccinations(ctx: Context, since: date, day: date) -> list[_Line]:
    lines: list[_Line] = []
    for vaccination in ctx.profile.vaccinations:
        if not since <= vaccination.day <= day:
            continue
        act = _new("substanceAdministration", classCode="SBADM", moodCode="EVN")
        _el(act, "statusCode", code="completed")
        _el(act, "effectiveTime", value=_ts(vaccination.day))
        material = _el(_el(_el(act, "consumable"), "manufacturedProduct"), "manufacturedMaterial")
        _el(
            _el(material, "code"),
            "translation",
            code=cip13(vaccination.dose.product),
            displayName=vaccination.dose.product,
            codeSystem=CIP,
        )
        _el(material, "name", vaccination.dose.product)
        who = vaccination.performer.display_name
        _performed(act, who, vaccination.performer.organization.name)
        cells = (french_date(vaccination.day), vaccination.dose.product, who)
        lines.append(_Line(vaccination.day, None, vaccination.dose.product, cells, act))
    return sorted(lines, key=lambda line: line.day, reverse=True)


def _devices(ctx: Context, since: date, day: date) -> list[_Line]:
    diabetic = any(t.drug.atc.startswith("A10") for t in ctx.profile.treatments)
    count = 4 if diabetic else ctx.rng.choice((0, 0, 1, 2))
    pharmacy = ctx.profile.pharmacist.organization.name
    lines: list[_Line] = []
    for _ in range(count):
        code, label = _DEVICES[0] if diabetic else ctx.rng.choice(_DEVICES[1:])
        moment = since + timedelta(days=ctx.rng.randint(0, (day - since).days))
        act = _dated("supply", moment)
        _el(act, "quantity", value="1")
        product = _el(_el(act, "product"), "manufacturedProduct")
        material = _el(product, "manufacturedMaterial")
        _el(material, "code", code=code, displayName=label, codeSystem=LPP)
        _el(material, "name", label)
        _performed(act, pharmacy)
        lines.append(_Line(moment, None, label, (french_date(moment), label, pharmacy, "1"), act))
    return sorted(lines, key=lambda line: line.day, reverse=True)


def _stays(ctx: Context, since: date, day: date) -> list[_Line]:
    lines: list[_Line] = []
    for stay in ctx.profile.stays:
        if not since <= stay.discharged <= day:
            continue
        act = _dated("encounter", stay.admitted, stay.discharged)
        code = _el(act, "code", code="IMP", displayName="Hospitalisation", codeSystem="2.16.840.1.113883.5.4")
        ghs = str(int(hashlib.sha256(stay.episode.icd10.encode()).hexdigest(), 16) % 8000 + 1000)
        label = stay.episode.display.upper()
        _el(_el(code, "qualifier"), "value", code=ghs, displayName=label, codeSystem=GHS)
        where = stay.physician.organization.name
        _performed(act, where)
        period = f"{french_date(stay.admitted)} - {french_date(stay.discharged)}"
        lines.append(_Line(stay.admitted, stay.discharged, label, (period, label, where), act))
    return sorted(lines, key=lambda line: line.day, reverse=True)


def _procedure(day: date, code: str, label: str, system: str, who: str, organization: str | None) -> _Line:
    act = _dated("procedure", day)
    _el(act, "code", code=code, displayName=label, codeSystem=system)
    _performed(act, who, organization)
    return _Line(day, None, label, (french_date(day), label, who), act)


def _care(ctx: Context, since: date, day: date) -> list[_Line]:
    lines: list[_Line] = []
    for visit in ctx.profile.visits:
        visited = visit.moment.date()
        if since <= visited <= day:
            who = visit.professional
            general = who.specialty in ("SM54", None)
            code, label = (
                ("G", "CONSULTATION MEDECINE GENERALE") if general else ("APC", "AVIS PONCTUEL DE CONSULTANT")
            )
            lines.append(_procedure(visited, code, label, NGAP, who.display_name, who.organization.name))
    return sorted(lines, key=lambda line: line.day, reverse=True)


def _radiology(ctx: Context, since: date, day: date) -> list[_Line]:
    lines: list[_Line] = []
    for _ in range(ctx.rng.choice((0, 1, 1, 2))):
        moment = since + timedelta(days=ctx.rng.randint(0, (day - since).days))
        code, label = ctx.rng.choice(_RADIOLOGY)
        lines.append(_procedure(moment, code, label, CCAM, "CABINET DE RADIOLOGIE", None))
    return sorted(lines, key=lambda line: line.day, reverse=True)


def _biology(ctx: Context, since: date, day: date) -> list[_Line]:
    lines: list[_Line] = []
    seen: set[tuple[date, str]] = set()
    for result in ctx.profile.labs:
        moment = result.moment.date()
        code, label = LOINC_BIOLOGY.get(result.loinc, ("9105", "FORFAIT PRE-ANALYTIQUE"))
        if not since <= moment <= day or (moment, code) in seen:
            continue
        seen.add((moment, code))
        organization = result.biologist.organization.name
        lines.append(_procedure(moment, code, label, NABM, organization, None))
    return sorted(lines, key=lambda line: line.day, reverse=True)
