"""HL7 v2 messages shaped like the ANS's published examples of the volet "CDA en HL7v2".

The messages here are synthetic (our own values) but keep what the ANS examples do that the
generator of ``carnet.synthetic.hl7v2`` does not: LF segment ends, MSH-18 ``8859/15`` with
accents, MSH-21 profile, EVN/PV1/OBR/TXA segments, ``^text^XML^Base64^`` in lower case, PRT-4
``SB^^participation``, metadata OBXs of type CWE, an ED OBX (mail body) with ``^text^^Base64^``.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import hl7
import pytest

from carnet.domain.errors import FeedMessageError
from carnet.feeds.hl7v2 import Action, acknowledgement, parse_message, read_header

NOW = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)
INS = ("1.2.250.1.213.1.4.10", "180127512345678")
CDA = (
    '<?xml version="1.0" encoding="UTF-8"?><ClinicalDocument xmlns="urn:hl7-org:v3">'
    "<title>Échographie rénale</title></ClinicalDocument>"
).encode()


def _mdm(document: bytes = CDA, *, event: str = "T02", status: str = "F", order: str = "NW") -> bytes:
    """An MDM^T02/T10/T04 laid out as the ANS examples lay it out, in ISO 8859-15 with LF ends."""
    encoded = base64.b64encode(document).decode()
    mail = base64.b64encode(b"Bonjour, voici le compte rendu.").decode()
    segments = [
        f"MSH|^~\\&|DPI-Z|Clinique-Z|PFI-Z|Clinique-Z|202612070400||MDM^{event}^MDM_T02|C-77|P|2.6|||||FRA"
        "|8859/15|||2.1^CISIS_CDA_HL7_V2",
        "EVN||20261207035900|||ADM^ACCUEIL^Zoé^^^^^^SIH&1.2.250.1.999&ISO^U^^^RI|20261207035900",
        f"PID|||{INS[1]}^^^ASIP-SANTE-INS-NIR&{INS[0]}&ISO^INS^^20200101~99887766^^^SIH-Z&1.2.250.1.999.1&ISO^PI"
        "||MARTIN^Hélène^Hélène^^^^L||19800127|F|||3 rue des Lilas^^LYON^^69003^FRA^H",
        "PV1|1|O|UFRADIO||||||||||||||||77001^^^SIH-Z&1.2.250.1.999.2&ISO^VN^^20261207",
        f"ORC|{order}|",
        "OBR|1|||18748-4^CR d'imagerie médicale^LN|",
        "TXA|1|18748-4|TEXT|202612070355||||||||1.2.250.1.999.3.77^Clinique-Z|||||AU|||||10003456789",
        f"OBX|1|ED|18748-4^CR d'imagerie médicale^LN||^text^XML^Base64^{encoded}||||||{status}|",
        "PRT||UC||SB^^participation|10003456789^LEROY^Anne^^^^^^ASIP-SANTE-PS&1.2.250.1.71.4.2.1&ISO^D^^^RPPS"
        "|||Clinique-Z^^^^^ASIP-SANTE-ST&1.2.250.1.71.4.2.2&ISO^FINEG^^^690001234",
        "OBX|2|CWE|MASQUE_PS^Masqué aux professionnels de Santé^MetaDMPMSS||N^^expandedYes-NoIndicator||||||F|",
        "OBX|3|CWE|INVISIBLE_PATIENT^Document Non Visible par le patient^MetaDMPMSS||Y^^expandedYes-NoIndicator"
        "||||||F|",
        "OBX|4|CWE|DESTDMP^Destinataire DMP^MetaDMPMSS||Y^^expandedYes-NoIndicator||||||F|",
        f"OBX|5|ED|CORPSMAIL_PS^Corps du mail pour un PS^MetaDMPMSS||^text^^Base64^{mail}||||||F|",
    ]
    return ("\n".join(segments) + "\n").encode("iso-8859-15")


def test_a_message_laid_out_as_the_ans_examples_is_read() -> None:
    """LF ends, 8859/15, EVN/PV1/TXA, lower-case ^text^XML^, PRT SB^^participation: document, INS, flags, sender."""
    message = parse_message(_mdm())
    assert message.action is Action.INITIAL
    assert message.cda == CDA
    assert message.ins == (INS,)
    assert message.header.encoding == "iso-8859-15"
    assert message.flags.invisible_to_patient
    assert message.flags.for_record
    assert message.sender is not None
    assert message.sender.national_id == "10003456789"
    assert message.document_id == "1.2.250.1.999.3.77"


def test_base64_of_a_sentence_instead_of_a_cda_is_a_data_type_error_at_obx_5() -> None:
    """OBX-5 whose base64 decodes to plain text, not XML: AE, ERR-2 OBX^1^5^5, ERR-3 102 (not an internal error)."""
    raw = _mdm(b"Compte rendu au format CDA")
    with pytest.raises(FeedMessageError) as raised:
        parse_message(raw)
    error = raised.value
    assert (error.hl7_code, error.location, error.rejected) == ("102", "OBX^1^5^5", False)
    ack = hl7.parse(
        acknowledgement(read_header(raw), control_id="A1", now=NOW, error=error).decode("iso-8859-15")
    )
    assert str(ack.segment("MSA")[1]) == "AE"
    assert str(ack.segment("MSA")[2]) == "C-77"
    assert str(ack.segment("MSH")[9]) == "ACK^T02^ACK"
    assert str(ack.segment("ERR")[2]) == "OBX^1^5^5"
    assert ack["ERR.F3.R1.C1"] == "102"


@pytest.mark.parametrize("prefix", [b"", b"\xef\xbb\xbf", b"\n  "])
def test_a_cda_after_a_byte_order_mark_or_blanks_is_still_xml(prefix: bytes) -> None:
    """A CDA that starts with a UTF-8 byte order mark or blank lines is taken as XML."""
    assert parse_message(_mdm(prefix + CDA)).cda == prefix + CDA


def test_an_unknown_version_is_answered_ae_203_at_msh_12_as_the_volet_example() -> None:
    """An MDM in HL7 v2.4: AE (not AR) with ERR-2 MSH^1^12 and ERR-3 203, as the volet's example ACK says."""
    raw = _mdm().replace(b"|P|2.6|", b"|P|2.4|", 1)
    with pytest.raises(FeedMessageError) as raised:
        parse_message(raw)
    ack = hl7.parse(
        acknowledgement(read_header(raw), control_id="A2", now=NOW, error=raised.value).decode("iso-8859-15")
    )
    assert str(ack.segment("MSA")[1]) == "AE"
    assert str(ack.segment("ERR")[2]) == "MSH^1^12"
    assert ack["ERR.F3.R1.C1"] == "203"
    assert str(ack.segment("ERR")[4]) == "E"


def test_a_message_declaring_8859_15_but_written_in_utf_8_keeps_its_accents() -> None:
    """MSH-18 8859/15 over UTF-8 bytes (as the ANS example files are): PRT names read as written, the ACK in 8859/15."""
    raw = _mdm().decode("iso-8859-15").replace("LEROY^Anne", "LEROY^Anne-Hélène").encode("utf-8")
    message = parse_message(raw)
    assert message.sender is not None
    assert message.sender.given_name == "Anne-Hélène"
    assert message.header.encoding == "iso-8859-15"
    assert acknowledgement(message.header, control_id="A3", now=NOW).endswith(b"MSA|AA|C-77\r")


def test_a_message_in_iso_8859_15_as_declared_keeps_its_accents() -> None:
    """MSH-18 8859/15 over ISO 8859-15 bytes: the same names, not taken for UTF-8."""
    raw = _mdm().replace(b"LEROY^Anne", "LEROY^Anne-Hélène".encode("iso-8859-15"))
    message = parse_message(raw)
    assert message.sender is not None
    assert message.sender.given_name == "Anne-Hélène"


def _oru_n1_n3(level1: bytes, level3: bytes, *, status: str = "F", order: str = "NW") -> bytes:
    """An ORU laid out as the ANS's ``message_ORU_CR_Bio_*_N1_N3`` examples: the level 1 CDA in OBX 1,
    its PRTs (SB, two RCT, REPLY), the level 3 CDA in OBX 2, then the metadata OBXs (CE) and a mail body."""
    one, three = (base64.b64encode(d).decode() for d in (level1, level3))
    mail = base64.b64encode("Cher confrère, voici le compte rendu.".encode()).decode()
    rpps = "ASIP-SANTE-PS&1.2.250.1.71.4.2.1&ISO^D^^^RPPS"
    segments = [
        "MSH|^~\\&|SGL-Z|labo-z|PFI-Z|Organisation-Z|202612070400||ORU^R01^ORU_R01|C-91|P|2.5|||||FRA"
        "|UNICODE UTF-8|||2.1^CISIS_CDA_HL7_V2",
        f"PID|||{INS[1]}^^^ASIP-SANTE-INS-NIR&{INS[0]}&ISO^INS^^20200101||MARTIN^Hélène^^^^^L||19800127|F",
        "PV1|1|I|UFNEPH",
        f"ORC|{order}|2001^Nephro|3001-E1^labo-z",
        "OBR|1|2001^Nephro|3001-E1^labo-z|11502-2^CR d'examens biologiques^LN|||||||||||||||||||||F",
        f"OBX|1|ED|11502-2^CR d'examens biologiques^LN||^TEXT^XML^Base64^{one}||||||{status}|",
        f"PRT||UC||SB^^HL70912|10003456789^LEROY^Anne^^^^^^{rpps}|||labo-z^^^^^ASIP-SANTE-ST"
        "&1.2.250.1.71.4.2.2&ISO^FINEG^^^690001234",
        f"PRT||UC||RCT^^HL70912|10009876543^PETIT^Marc^^^^^^{rpps}||||||||||^^X.400^marc.petit@test.mssante.fr",
        f"PRT||UC||RCT^^HL70912|{INS[1]}^MARTIN^Hélène^^^^^^^L^^^INS||||||||||^^X.400^patient@test.mssante.fr",
        "PRT||UC||REPLY^^HL70912|||||||||||^^X.400^marc.petit@test.mssante.fr",
        f"OBX|2|ED|11502-2^CR d'examens biologiques^LN||^TEXT^XML^Base64^{three}||||||{status}|",
        "OBX|3|CE|MASQUE_PS^Masqué aux professionnels de Santé^MetaDMPMSS||Y^^HL70136||||||F|",
        "OBX|4|CE|INVISIBLE_PATIENT^Document Non Visible par le patient^MetaDMPMSS||N^^HL70136||||||F|",
        "OBX|5|CE|DESTDMP^Destinataire DMP^MetaDMPMSS||Y^^HL70136||||||F|",
        "OBX|6|CE|ACK_RECEPTION^Accusé de réception^MetaDMPMSS||Y^^HL70136||||||F|",
        f"OBX|7|ED|CORPSMAIL_PS^Corps du mail pour un PS^MetaDMPMSS||^TEXT^^Base64^{mail}||||||F|",
    ]
    return ("\n".join(segments) + "\n").encode()


@pytest.mark.parametrize(
    ("status", "order", "action"), [("F", "NW", "initial"), ("C", "RO", "replace"), ("D", "CA", "delete")]
)
def test_an_oru_laid_out_as_the_ans_n1_n3_examples_carries_two_documents(
    status: str, order: str, action: str
) -> None:
    """Both CDAs are read (the PRTs between them, the mail body's ED OBX not a document), with the
    metadata (common to both) and the PRT SB sender."""
    level3 = CDA.replace(b"<title>", b"<title>Niveau 3 ")
    message = parse_message(_oru_n1_n3(CDA, level3, status=status, order=order))
    assert message.action is Action(action)
    assert [(d.obx, d.cda) for d in message.documents] == [(1, CDA), (2, level3)]
    assert message.flags.masked_from_professionals
    assert message.flags.reception_ack
    assert message.sender is not None
    assert message.sender.national_id == "10003456789"
