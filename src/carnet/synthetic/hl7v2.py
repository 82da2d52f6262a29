"""Synthetic HL7 v2 messages of the ANS volet "transmission de documents CDA en HL7v2".

Built from the volet's message profiles, independently of Carnet's reader (``carnet.feeds.hl7v2``),
so that the tests check one against the other: ``ORU^R01^ORU_R01`` (v2.5) and
``MDM^T02|T10|T04^MDM_T02`` (v2.6) with the CDA base64-encoded in the first OBX
(``^TEXT^XML^Base64^…``, ``text`` for MDM; an ORU may carry a second document, the same report
as a level 3 CDA, in the OBX after the PRT), ORC-1 / OBX-11 / event for initial, replace and
delete, the INS in PID-3, PRT ``SB^Send by`` and the metadata OBXs of table MetaDMPMSS.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

#: action → (OBX-11, ORC-1, MDM event).
ACTIONS = {"initial": ("F", "NW", "T02"), "replace": ("C", "RO", "T10"), "delete": ("D", "CA", "T04")}
INS_NAMES = {
    "1.2.250.1.213.1.4.8": "ASIP-SANTE-INS-NIR",
    "1.2.250.1.213.1.4.9": "ASIP-SANTE-INS-NIA",
    "1.2.250.1.213.1.4.10": "ASIP-SANTE-INS-NIR-TEST",
    "1.2.250.1.213.1.4.11": "ASIP-SANTE-INS-NIR-DEMO",
}
#: The metadata OBXs in the volet's order, with their labels.
METADATA = (
    ("MASQUE_PS", "Masqué aux professionnels de Santé"),
    ("INVISIBLE_PATIENT", "Document Non Visible par le patient"),
    ("INVISIBLE_REP_LEGAUX", "Non visible par les représentants Légaux du patient"),
    ("CONNEXION_SECRETE", "Connexion Secrete"),
    ("MODIF_CONF_CODE", "Modification Confidentiality Code"),
    ("DESTDMP", "Destinataire DMP"),
    ("DESTMSSANTEPS", "Destinataire (Professionnel de Santé, organisation ou BAL applicative)"),
    ("DESTMSSANTEPAT", "Destinataire Patient"),
    ("ACK_RECEPTION", "Accusé de réception"),
)
DEFAULT_FLAGS = {"DESTDMP": True}


@dataclass(frozen=True, slots=True, kw_only=True)
class SendingSystem:
    """Who sends: MSH-3/MSH-4, and the PRT SB professional (RPPS) and structure (FINESS)."""

    application: str = "DPI-HOPITAL"
    facility: str = "HOPITAL-A"
    rpps: str = "810001234567"
    family_name: str = "MARTIN"
    given_name: str = "Claire"
    structure: str = "Hôpital A"
    finess: str = "750000001"


def _escape(value: str) -> str:
    return value.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\").replace("&", "\\T\\")


def hl7v2_message(
    cda: bytes,
    *,
    ins: tuple[str, str],
    type_code: str,
    type_label: str,
    control_id: str,
    sent_at: datetime,
    kind: str = "ORU",
    action: str = "initial",
    flags: Mapping[str, bool] | None = None,
    sender: SendingSystem | None = None,
    encoding: str = "utf-8",
    line_end: str = "\r",
    family_name: str = "DUPONT",
    given_name: str = "Jeanne",
    birth_date: str = "19840312",
    document_id: str | None = None,
    parent_id: str | None = None,
    second: bytes | None = None,
) -> bytes:
    """Return one ORU^R01 (v2.5) or MDM (v2.6) message carrying ``cda``, encoded as asked.

    ``ins`` is ``(authority OID, value)``; ``flags`` the metadata OBXs (``{"MASQUE_PS": True}``);
    ``encoding`` ``utf-8`` or ``iso-8859-15`` (MSH-18 says which); ``line_end`` the segment end;
    ``second`` another document of the same action, in its own OBX after the PRT (as the volet's
    ORU carries a level 1 and a level 3 CDA of one report).
    """
    status, order, event = ACTIONS[action]
    system = sender or SendingSystem()
    version = "2.5" if kind == "ORU" else "2.6"
    message_type = "ORU^R01^ORU_R01" if kind == "ORU" else f"MDM^{event}^MDM_T02"
    charset = "UNICODE UTF-8" if encoding == "utf-8" else "8859/15"
    stamp = sent_at.strftime("%Y%m%d%H%M%S")
    oid, value = ins
    segments = [
        f"MSH|^~\\&|{system.application}|{system.facility}|CARNET|CARNET|{stamp}||{message_type}|{control_id}|P|"
        f"{version}|||||FRA|{charset}|||2.1^CISIS_CDA_HL7_V2",
        f"PID|||{value}^^^{INS_NAMES.get(oid, 'INS')}&{oid}&ISO^INS||{_escape(family_name)}^{_escape(given_name)}^^^^^L||"
        f"{birth_date}|F|||||||||||||||||||||||VALI",
        "PV1|1|O",
    ]
    if kind == "MDM":
        segments.insert(1, f"EVN|{event}|{stamp}")
    segments.append(f"ORC|{order}|||||||||||||||||||||{_escape(system.structure)}")
    if kind == "ORU":
        segments.append(f"OBR|1|||{type_code}^{_escape(type_label)}^LN|||{stamp}")
    else:
        txa_parent = parent_id or ""
        segments.append(
            f"TXA|1|{type_code}|TEXT||||{stamp}|||||{document_id or ''}|{txa_parent}||||"
            f"{'LA' if action != 'delete' else 'DO'}"
        )
    text = "TEXT" if kind == "ORU" else "text"
    data = base64.b64encode(cda).decode()
    segments.append(f"OBX|1|ED|{type_code}^{_escape(type_label)}^LN||^{text}^XML^Base64^{data}||||||{status}")
    segments.append(
        f"PRT||UC||SB^Send by^participation|{system.rpps}^{_escape(system.family_name)}^{_escape(system.given_name)}"
        f"^^^^^^ASIP-SANTE-PS&1.2.250.1.71.4.2.1&ISO^D^^^RPPS|||{_escape(system.structure)}^^^^^"
        f"ASIP-SANTE-ST&1.2.250.1.71.4.2.2&ISO^FINEG^^^{system.finess}"
    )
    if second is not None:
        data = base64.b64encode(second).decode()
        segments.append(
            f"OBX|2|ED|{type_code}^{_escape(type_label)}^LN||^{text}^XML^Base64^{data}||||||{status}"
        )
    chosen = {**DEFAULT_FLAGS, **(flags or {})}
    value_type = "CE" if kind == "ORU" else "CWE"
    for index, (code, label) in enumerate(METADATA, start=2 if second is None else 3):
        answer = "Y" if chosen.get(code, False) else "N"
        segments.append(
            f"OBX|{index}|{value_type}|{code}^{_escape(label)}^MetaDMPMSS||{answer}^^expandedYes-NoIndicator||||||F"
        )
    return (line_end.join(segments) + line_end).encode(encoding)


def messages_for(
    bundle: Mapping[str, Any],
    *,
    sent_at: datetime,
    prefix: str,
    kinds: tuple[str, ...] = ("ORU", "MDM"),
) -> list[tuple[str, bytes]]:
    """Return one initial-send message per CDA document of a generated patient's Bundle.

    Messages alternate between ``kinds``; each is named ``<prefix>-<n>`` (its control id too).
    """
    entries = [e for e in bundle.get("entry", []) if isinstance(e, dict)]
    binaries = {
        e.get("fullUrl"): e["resource"]
        for e in entries
        if e["resource"]["resourceType"] == "Binary" and e["resource"].get("contentType") == "text/xml"
    }
    patient = next(e["resource"] for e in entries if e["resource"]["resourceType"] == "Patient")
    ins = next(
        i for i in patient["identifier"] if str(i.get("system", "")).removeprefix("urn:oid:") in INS_NAMES
    )
    name = (patient.get("name") or [{}])[0]
    out: list[tuple[str, bytes]] = []
    for entry in entries:
        resource = entry["resource"]
        if resource["resourceType"] != "DocumentReference":
            continue
        binary = binaries.get(resource["content"][0]["attachment"].get("url"))
        if binary is None:
            continue
        coding = resource["type"]["coding"][0]
        control_id = f"{prefix}-{len(out) + 1}"
        out.append(
            (
                control_id,
                hl7v2_message(
                    base64.b64decode(binary["data"]),
                    ins=(ins["system"].removeprefix("urn:oid:"), ins["value"]),
                    type_code=coding["code"],
                    type_label=coding.get("display", coding["code"]),
                    control_id=control_id,
                    sent_at=sent_at,
                    kind=kinds[len(out) % len(kinds)],
                    family_name=str(name.get("family", "")),
                    given_name=" ".join(name.get("given", [])),
                    birth_date=str(patient.get("birthDate", "")).replace("-", ""),
                ),
            )
        )
    return out
