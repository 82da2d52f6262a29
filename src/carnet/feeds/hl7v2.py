"""HL7 v2 messages carrying CDA documents, as the ANS volet "transmission de documents CDA en HL7v2" says.

What a CREATEUR (hospital or lab system) sends, and what Carnet, as the GESTIONNAIRE, reads:

=========================  ==================  ==================  ======  ======
Flow                       ORU (HL7 v2.5)      MDM (HL7 v2.6)      OBX-11  ORC-1
=========================  ==================  ==================  ======  ======
initial send               ``ORU^R01^ORU_R01``  ``MDM^T02^MDM_T02``  ``F``   ``NW``
replace                    ``ORU^R01``          ``MDM^T10^MDM_T02``  ``C``   ``RO``
delete                     ``ORU^R01``          ``MDM^T04^MDM_T02``  ``D``   ``CA``
=========================  ==================  ==================  ======  ======

A message whose ORC-1, OBX-11 and MDM event disagree is rejected. The CDA travels in the first
``ED`` OBX (``OBX-5 = ^TEXT^XML^Base64^<data>``, ``text`` for MDM); the patient is named by INS in
PID-3 (``<matricule>^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS``; NIA …4.9, test …4.10 and
…4.11) and must be the CDA's ``recordTarget``; the metadata OBXs (OBX-3 of table ``MetaDMPMSS``,
value ``Y``/``N``) ``MASQUE_PS``, ``INVISIBLE_PATIENT``, ``INVISIBLE_REP_LEGAUX``,
``CONNEXION_SECRETE``, ``DESTDMP`` and ``ACK_RECEPTION`` are read; the ``PRT`` segment
``SB^Send by`` (pre-adopted from v2.9) names the sending professional (PRT-5, RPPS OID
1.2.250.1.71.4.2.1) and structure (PRT-8, OID 1.2.250.1.71.4.2.2).

Parsing is lenient where senders differ: segments may end with CR, CRLF or LF; MSH-18 says
``UNICODE UTF-8`` or ``8859/15`` (a message without it is read as UTF-8, else ISO 8859-15);
segments the volet pre-adopts (PRT, ZAM) are read by position; base64 may be split by spaces or
line breaks. Fields are read with the ``hl7`` library (python-hl7).

Every message gets a technical acknowledgement (:func:`acknowledgement`): ``ACK^<event>^ACK``
with MSA-1 ``AA`` (accepted), ``AE`` (its content is in error) or ``AR`` (the message is
rejected: not HL7, unsupported type or version), and an ERR segment naming the error (HL7 table
0357, and the volet's application codes 900–905 in ERR-5). The business acknowledgement
``ZAM^Z01^ZAM_Z01`` (:func:`business_ack`) answers a message that asked for it (``ACK_RECEPTION=Y``).
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import hl7

from carnet.domain.errors import FeedMessageError

__all__ = [
    "INS_OIDS",
    "Action",
    "DocumentMessage",
    "Flags",
    "Header",
    "Sender",
    "acknowledgement",
    "business_ack",
    "decode",
    "parse_message",
    "read_header",
]

#: The INS authorities of PID-3: INS-NIR, INS-NIA, and their test and demonstration roots.
INS_OIDS = frozenset(
    {"1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.9", "1.2.250.1.213.1.4.10", "1.2.250.1.213.1.4.11"}
)
RPPS_OID = "1.2.250.1.71.4.2.1"
STRUCTURE_OID = "1.2.250.1.71.4.2.2"
_META_TABLE = "MetaDMPMSS"
_CHARSETS = {"UNICODE UTF-8": "utf-8", "UTF-8": "utf-8", "8859/15": "iso-8859-15", "8859/1": "iso-8859-1"}
_MSH18 = {"utf-8": "UNICODE UTF-8", "iso-8859-15": "8859/15", "iso-8859-1": "8859/1"}
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")
#: The segments read, each with the last field read of it (the others are checked for a segment
#: id, then skipped; the fields after the last read are cut before python-hl7 splits them, since
#: the library builds a container for every field, empty or not). MSH is kept whole.
_READ_FIELDS: dict[str, int | None] = {"MSH": None, "PID": 3, "ORC": 1, "OBX": 11, "PRT": 8, "TXA": 13}


class Action(StrEnum):
    """What a message does to its document."""

    INITIAL = "initial"
    REPLACE = "replace"
    DELETE = "delete"


#: OBX-11 and ORC-1 of each action, and the MDM event that carries it.
_BY_STATUS = {"F": Action.INITIAL, "C": Action.REPLACE, "D": Action.DELETE}
_ORDER_CONTROL = {Action.INITIAL: "NW", Action.REPLACE: "RO", Action.DELETE: "CA"}
_MDM_EVENTS = {"T02": Action.INITIAL, "T10": Action.REPLACE, "T04": Action.DELETE}
_VERSIONS = {"ORU": "2.5", "MDM": "2.6"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Header:
    """What MSH says: who sends to whom, which message, how it is encoded."""

    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    message_type: str
    event: str
    control_id: str
    processing_id: str
    version: str
    encoding: str
    """The Python codec of the message's characters (``utf-8`` or ``iso-8859-15``)."""

    @property
    def sender(self) -> str:
        """``MSH-3^MSH-4``, as a feed's registered sender is written."""
        return f"{self.sending_application}^{self.sending_facility}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Flags:
    """The metadata OBXs (table MetaDMPMSS); ``None`` where the message does not say."""

    masked_from_professionals: bool = False
    """``MASQUE_PS``: masqué aux professionnels de santé."""
    invisible_to_patient: bool = False
    """``INVISIBLE_PATIENT``: non visible par le patient."""
    invisible_to_representatives: bool = False
    """``INVISIBLE_REP_LEGAUX``: non visible par les représentants légaux."""
    secret_connection: bool = False
    """``CONNEXION_SECRETE``: a minor's document hidden from the representatives."""
    for_record: bool = True
    """``DESTDMP``: the document is for the patient's record (``N``: not for it)."""
    reception_ack: bool = False
    """``ACK_RECEPTION``: the sender wants a business acknowledgement (ZAM)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Sender:
    """The PRT ``SB^Send by``: the professional (RPPS) and the structure that send the document."""

    national_id: str | None
    family_name: str | None
    given_name: str | None
    organisation: str | None
    organisation_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class DocumentMessage:
    """One ORU or MDM message, read: its action, patient, document and metadata."""

    header: Header
    action: Action
    ins: tuple[tuple[str, str], ...]
    """The INS of PID-3 as ``(authority OID, value)``, in message order."""
    type_code: str
    """OBX-3: the document's typeCode (LOINC)."""
    cda: bytes
    flags: Flags
    sender: Sender | None
    document_id: str | None = None
    """TXA-12 (MDM): the unique id of the document."""
    parent_id: str | None = None
    """TXA-13 (MDM replace): the unique id of the document replaced."""


def decode(raw: bytes) -> tuple[str, str]:
    """Return a message's text with CR segment ends, and the codec MSH-18 names.

    Raises:
        FeedMessageError: not an HL7 v2 message (no MSH first), or an unknown MSH-18.
    """
    body = raw.strip(b"\x0b\x1c\r\n ").replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    lines = [line for line in body.split(b"\r") if line and not line.isspace()]
    if not lines or not lines[0].startswith(b"MSH") or len(lines[0]) < 8:
        raise FeedMessageError(
            "The message does not start with an MSH segment; send one HL7 v2 message.",
            hl7_code="100",
            rejected=True,
            location="MSH",
        )
    separator = lines[0][3:4]
    fields = lines[0].split(separator)
    declared = fields[17].decode("ascii", "replace").strip().upper() if len(fields) > 17 else ""
    encoding = _CHARSETS.get(declared)
    if declared and encoding is None:
        raise FeedMessageError(
            f"MSH-18 {declared[:20]!r} is not a character set this server reads; use UNICODE UTF-8 or 8859/15.",
            hl7_code="203",
            rejected=True,
            location="MSH^1^18",
        )
    body = b"\r".join(lines)
    if encoding is None:
        try:
            return body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            return body.decode("iso-8859-15"), "iso-8859-15"
    try:
        return body.decode(encoding), encoding
    except UnicodeDecodeError:
        raise FeedMessageError(
            f"The message is not valid {declared} text, as MSH-18 says it is.",
            hl7_code="102",
            rejected=True,
            location="MSH^1^18",
        ) from None


#: A value at least this long with no delimiter in it (a document's base64) is lifted out of the
#: text before python-hl7 splits it, and put back when read: the library then builds its
#: containers over a few hundred bytes instead of copying the document through every level.
_LARGE = 2048
#: What stands in a lifted value's place (control characters no HL7 value carries).
_LIFTED = "\x01carnet-lifted-"


def _lift(text: str) -> tuple[str, list[str]]:
    """Replace each long delimiter-free run of ``text`` by a short placeholder; return both.

    The runs are found from the delimiters' positions (``str.find``, in C), not by a pattern
    tried at each of the document's characters.
    """
    if len(text) < _LARGE or not text.startswith("MSH") or len(text) < 8:
        return text, []
    cuts: list[int] = []
    for delimiter in set(text[3:8] + "\r"):
        at = text.find(delimiter)
        while at >= 0:
            cuts.append(at)
            at = text.find(delimiter, at + 1)
    cuts.sort()
    cuts.append(len(text))
    lifted: list[str] = []
    pieces: list[str] = []
    start = 0  # where the text not yet copied starts
    previous = -1
    for cut in cuts:
        if cut - previous - 1 >= _LARGE:
            pieces.append(text[start : previous + 1])
            lifted.append(text[previous + 1 : cut])
            pieces.append(f"{_LIFTED}{len(lifted) - 1}\x01")
            start = cut
        previous = cut
    if not lifted:
        return text, []
    pieces.append(text[start:])
    return "".join(pieces), lifted


def _field_end(line: str, separator: str, last: int) -> int:
    """Where field ``last`` of a segment ends (the separator after it), or -1 if it is the end."""
    at = -1
    for _ in range(last + 1):
        at = line.find(separator, at + 1)
        if at < 0:
            return -1
    return at


def _parse(text: str) -> hl7.Message:
    """Parse a message with python-hl7: only the segments this module reads, large values lifted.

    Every segment must start with a segment id; those this module never reads (PV1, OBR, NTE…)
    are not handed to the library, whose containers cost the most of a message's reading, nor
    are the fields after the last one read of a segment (PID-5 onwards: names, addresses…).
    MSH is kept whole.
    """
    separator = text[3:4] if text.startswith("MSH") and len(text) > 8 else "|"
    kept = []
    for line in text.split("\r"):
        end = line.find(separator)
        name = line if end < 0 else line[:end]
        if not _SEGMENT_ID.fullmatch(name):
            raise FeedMessageError(
                f"A segment starts with {name[:10]!r}, not a segment id; end each segment with CR.",
                hl7_code="100",
                rejected=True,
            )
        if name not in _READ_FIELDS:
            continue
        last = _READ_FIELDS[name]
        cut = _field_end(line, separator, last) if last is not None else -1
        if cut >= 0:
            line = line[:cut]
        kept.append(line)
    lifted_text, lifted = _lift("\r".join(kept))
    try:
        message = hl7.parse(lifted_text)
    except (hl7.ParseException, ValueError, IndexError) as exc:
        raise FeedMessageError(
            f"The message is not HL7 v2 ({type(exc).__name__}); check its separators.",
            hl7_code="100",
            rejected=True,
        ) from None
    message.carnet_lifted = lifted
    return message


def _get(
    message: hl7.Message, segment: str, occurrence: int, field: int, rep: int = 1, comp: int = 1, sub: int = 1
) -> str:
    """One value, unescaped; empty where the message has nothing (1-based positions)."""
    segments = _segments_of(message).get(segment, [])
    if occurrence > len(segments):
        return ""
    try:
        value = segments[occurrence - 1].extract_field(1, field, rep, comp, sub)
    except (IndexError, KeyError):
        return ""
    if not value:
        return ""
    text = str(value)
    if text.startswith(_LIFTED):
        return _restored(message, text).strip()
    # Unescaping walks the whole value: only when it holds an escape (never a base64 document).
    return (str(message.unescape(text)) if message.esc in text else text).strip()


def _restored(message: hl7.Message, text: str) -> str:
    """The value a placeholder stands for (a lifted value holds no delimiter, so no escape)."""
    lifted: list[str] = getattr(message, "carnet_lifted", [])
    index = text[len(_LIFTED) :].split("\x01", 1)[0]
    return lifted[int(index)] if index.isdigit() and int(index) < len(lifted) else ""


def _segments_of(message: hl7.Message) -> dict[str, list[hl7.Segment]]:
    """The message's segments by id, indexed once (python-hl7 scans them all at each lookup)."""
    index: dict[str, list[hl7.Segment]] | None = getattr(message, "carnet_segments", None)
    if index is None:
        index = {}
        for segment in message:
            index.setdefault(str(segment[0]), []).append(segment)
        message.carnet_segments = index
    return index


def _header(message: hl7.Message, encoding: str) -> Header:
    def msh(field: int, comp: int = 1) -> str:
        return _get(message, "MSH", 1, field, 1, comp)

    return Header(
        sending_application=msh(3),
        sending_facility=msh(4),
        receiving_application=msh(5),
        receiving_facility=msh(6),
        message_type=msh(9, 1),
        event=msh(9, 2),
        control_id=msh(10),
        processing_id=msh(11),
        version=msh(12),
        encoding=encoding,
    )


def read_header(raw: bytes) -> Header | None:
    """Read what MSH says, however broken the rest is (None when even MSH cannot be read)."""
    try:
        text, encoding = decode(raw)
        first = text.split("\r", 1)[0]
        return _header(_parse(first), encoding)
    except FeedMessageError:
        return None


def parse_message(raw: bytes) -> DocumentMessage:
    """Read an ORU^R01 or MDM^T02/T10/T04 message of the volet.

    Raises:
        FeedMessageError: not HL7, an unsupported type, event or version (rejected, ``AR``), or
            content in error (``AE``): no document, bad base64, inconsistent action, no INS.
    """
    text, encoding = decode(raw)
    message = _parse(text)
    header = _header(message, encoding)
    if not header.control_id:
        raise FeedMessageError(
            "MSH-10 (message control id) is empty.", hl7_code="101", rejected=True, location="MSH^1^10"
        )
    kind = header.message_type.upper()
    if kind not in _VERSIONS:
        raise FeedMessageError(
            f"Message type {kind[:10]!r} is not taken here; send ORU^R01 or MDM^T02/T10/T04.",
            hl7_code="200",
            rejected=True,
            location="MSH^1^9",
        )
    event = header.event.upper()
    if (kind == "ORU" and event != "R01") or (kind == "MDM" and event not in _MDM_EVENTS):
        raise FeedMessageError(
            f"Event {event[:10]!r} is not taken for {kind}; send ORU^R01 or MDM^T02, T10 or T04.",
            hl7_code="201",
            rejected=True,
            location="MSH^1^9^2",
        )
    if not header.version.startswith(_VERSIONS[kind]):
        raise FeedMessageError(
            f"{kind} is sent in HL7 v{_VERSIONS[kind]} (MSH-12), not {header.version[:10]!r}.",
            hl7_code="203",
            rejected=True,
            location="MSH^1^12",
        )
    document_obx = _document_obx(message)
    status = _get(message, "OBX", document_obx, 11).upper()
    action = _action(message, kind, event, status)
    data = _get(message, "OBX", document_obx, 5, 1, 5)
    cda = _base64(data, f"OBX^{document_obx}^5^5")
    return DocumentMessage(
        header=header,
        action=action,
        ins=_ins(message),
        type_code=_get(message, "OBX", document_obx, 3),
        cda=cda,
        flags=_flags(message),
        sender=_sender(message),
        document_id=_get(message, "TXA", 1, 12) or None if kind == "MDM" else None,
        parent_id=_get(message, "TXA", 1, 13) or None if kind == "MDM" else None,
    )


def _document_obx(message: hl7.Message) -> int:
    """Return the occurrence of the first OBX that carries a document (OBX-2 ED, not metadata)."""
    for index, _ in enumerate(_segments_of(message).get("OBX", []), start=1):
        if (
            _get(message, "OBX", index, 2).upper() == "ED"
            and _get(message, "OBX", index, 3, 1, 3) != _META_TABLE
        ) and _get(message, "OBX", index, 5, 1, 3).upper() == "XML":
            return index
    raise FeedMessageError(
        "The message carries no CDA document: the first OBX of type ED must hold ^TEXT^XML^Base64^<document>.",
        hl7_code="101",
        location="OBX^1^5",
    )


def _has(message: hl7.Message, segment: str) -> bool:
    return segment in _segments_of(message)


def _action(message: hl7.Message, kind: str, event: str, status: str) -> Action:
    """The action that OBX-11, ORC-1 and the MDM event agree on.

    Raises:
        FeedMessageError: an unknown OBX-11, or a disagreement.
    """
    action = _BY_STATUS.get(status)
    if action is None:
        raise FeedMessageError(
            f"OBX-11 {status[:4]!r} is not F (initial), C (replace) or D (delete).",
            hl7_code="103",
            location="OBX^1^11",
        )
    order = _get(message, "ORC", 1, 1).upper() if _has(message, "ORC") else ""
    if (kind == "ORU" or order) and order != _ORDER_CONTROL[action]:
        raise FeedMessageError(
            f"ORC-1 {order[:4] or '(empty)'!r} does not match OBX-11 {status!r}: "
            f"{_ORDER_CONTROL[action]} goes with {status}.",
            hl7_code="207",
            rejected=True,  # the volet: the GESTIONNAIRE rejects inconsistent combinations
            location="ORC^1^1",
        )
    if kind == "MDM" and _MDM_EVENTS[event] is not action:
        raise FeedMessageError(
            f"MDM^{event} does not match OBX-11 {status!r} (T02 with F, T10 with C, T04 with D).",
            hl7_code="207",
            rejected=True,
            location="MSH^1^9^2",
        )
    return action


def _base64(data: str, where: str) -> bytes:
    compact = "".join(data.split())
    try:
        # strict_mode refuses non-alphabet characters and bad padding without a regex pass.
        decoded = binascii.a2b_base64(compact, strict_mode=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if not decoded:
        raise FeedMessageError(
            "The document in OBX-5.5 is not base64 (or is empty).", hl7_code="102", location=where
        )
    return decoded


def _ins(message: hl7.Message) -> tuple[tuple[str, str], ...]:
    """The INS repetitions of PID-3: ``(authority OID, value)``."""
    if not _has(message, "PID"):
        return ()
    found: list[tuple[str, str]] = []
    rep = 1
    while rep <= 20:
        try:
            _segments_of(message)["PID"][0].extract_field(1, 3, rep, 1, 1)
        except (IndexError, KeyError):
            break
        value = _get(message, "PID", 1, 3, rep, 1)
        oid = _get(message, "PID", 1, 3, rep, 4, 2)
        if value and oid in INS_OIDS:
            found.append((oid, value))
        rep += 1
    return tuple(found)


def _flags(message: hl7.Message) -> Flags:
    values: dict[str, bool] = {}
    for index, _ in enumerate(_segments_of(message).get("OBX", []), start=1):
        code = _get(message, "OBX", index, 3).upper()
        answer = _get(message, "OBX", index, 5).upper()
        if answer in ("Y", "N"):
            values[code] = answer == "Y"
    return Flags(
        masked_from_professionals=values.get("MASQUE_PS", False),
        invisible_to_patient=values.get("INVISIBLE_PATIENT", False),
        invisible_to_representatives=values.get("INVISIBLE_REP_LEGAUX", False),
        secret_connection=values.get("CONNEXION_SECRETE", False),
        for_record=values.get("DESTDMP", True),
        reception_ack=values.get("ACK_RECEPTION", False),
    )


def _sender(message: hl7.Message) -> Sender | None:
    """The PRT whose PRT-4 is ``SB`` (Send by)."""
    if not _has(message, "PRT"):
        return None
    for index, _ in enumerate(_segments_of(message).get("PRT", []), start=1):
        if _get(message, "PRT", index, 4).upper() != "SB":
            continue
        person_oid = _get(message, "PRT", index, 5, 1, 9, 2)
        person = _get(message, "PRT", index, 5)
        org_id = _get(message, "PRT", index, 8, 1, 10)
        return Sender(
            national_id=person if person and person_oid in ("", RPPS_OID) else None,
            family_name=_get(message, "PRT", index, 5, 1, 2) or None,
            given_name=_get(message, "PRT", index, 5, 1, 3) or None,
            organisation=_get(message, "PRT", index, 8) or None,
            organisation_id=org_id or None,
        )
    return None


# -- acknowledgements --------------------------------------------------------------------------


def _timestamp(now: datetime) -> str:
    return now.strftime("%Y%m%d%H%M%S")


def _escape(value: str) -> str:
    """Escape HL7 delimiters in a value we write (``|^~\\&``)."""
    out = value.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\")
    return out.replace("~", "\\R\\").replace("&", "\\T\\").replace("\r", " ").replace("\n", " ")


def _reply_header(
    header: Header | None, message_type: str, control_id: str, now: datetime, version: str
) -> str:
    encoding = header.encoding if header else "utf-8"
    fields = [
        "MSH",
        "^~\\&",
        _escape(header.receiving_application if header else "") or "CARNET",
        _escape(header.receiving_facility if header else ""),
        _escape(header.sending_application if header else ""),
        _escape(header.sending_facility if header else ""),
        _timestamp(now),
        "",
        message_type,
        control_id,
        (header.processing_id if header and header.processing_id else "P")[:1],
        version,
        "",
        "",
        "",
        "",
        "FRA",
        _MSH18[encoding],
    ]
    return "|".join(fields)


def acknowledgement(
    header: Header | None, *, control_id: str, now: datetime, error: FeedMessageError | None = None
) -> bytes:
    """Build the technical ACK of a message: ``AA``, or ``AE``/``AR`` with its ERR.

    ``header`` is the message's (None when not even MSH could be read: the ACK then names no
    application). The ACK is encoded like the message.
    """
    event = header.event if header and header.event else "R01"
    version = header.version if header and header.version in ("2.5", "2.6") else "2.5"
    code = "AA" if error is None else ("AR" if error.rejected else "AE")
    segments = [
        _reply_header(header, f"ACK^{_escape(event)[:3]}^ACK", control_id, now, version),
        f"MSA|{code}|{_escape(header.control_id if header else '')}",
    ]
    if error is not None:
        application = (
            f"{error.application_code}^{_escape(error.message)[:200]}" if error.application_code else ""
        )
        segments.append(
            # ERR-2 is a location (ERL) such as MSH^1^12, written as it is; ERR-3 the 0357 code.
            f"ERR||{re.sub(r'[^A-Z0-9^]', '', error.location)}"
            f"|{error.hl7_code}^{_ERROR_NAMES.get(error.hl7_code, 'Application error')}^HL70357"
            f"|E|{application}|||{_escape(error.message)[:250]}"
        )
    encoding = header.encoding if header else "utf-8"
    return ("\r".join(segments) + "\r").encode(encoding, "replace")


_ERROR_NAMES = {
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "199": "Other HL7 Error",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "207": "Application internal error",
}


def business_ack(
    header: Header, *, control_id: str, now: datetime, stored: bool, document_type: str
) -> bytes:
    """Build the ZAM^Z01^ZAM_Z01 business acknowledgement of reception in the record.

    OBX-3 ``ACK_RECEPTION_DMP`` (table AckMetierZAM) is ``Y`` when the document is in the
    record, ``N`` when it is not (refused by the patient, or not for the record).
    """
    segments = [
        _reply_header(header, "ZAM^Z01^ZAM_Z01", control_id, now, "2.6"),
        f"MSA|AA|{_escape(header.control_id)}",
        f"OBX|1|CE|ACK_RECEPTION_DMP^Accusé de réception DMP^AckMetierZAM||{'Y' if stored else 'N'}"
        f"^^expandedYes-NoIndicator||||||F|||{_timestamp(now)}",
        f"OBX|2|CE|{_escape(document_type)}^^LN||{'Y' if stored else 'N'}^^expandedYes-NoIndicator||||||F",
    ]
    return ("\r".join(segments) + "\r").encode(header.encoding, "replace")
