"""HL7 v2 messages carrying CDA documents, as the ANS volet "transmission de documents CDA en HL7v2" says.

What a CREATEUR (hospital or lab system) sends, and what Carnet, as the GESTIONNAIRE, reads:

=========================  ==================  ==================  ======  ======
Flow                       ORU (HL7 v2.5)      MDM (HL7 v2.6)      OBX-11  ORC-1
=========================  ==================  ==================  ======  ======
initial send               ``ORU^R01^ORU_R01``  ``MDM^T02^MDM_T02``  ``F``   ``NW``
replace                    ``ORU^R01``          ``MDM^T10^MDM_T02``  ``C``   ``RO``
delete                     ``ORU^R01``          ``MDM^T04^MDM_T02``  ``D``   ``CA``
=========================  ==================  ==================  ======  ======

A message whose ORC-1, OBX-11 and MDM event disagree is rejected. Each CDA travels in an ``ED``
OBX (``OBX-5 = ^TEXT^XML^Base64^<data>``, ``text`` for MDM): an ORU carries one or two (the same
report as a level 1 and a level 3 CDA, each with its own id), an MDM one (the volet's "Profils
des messages"); the metadata OBXs and the PRT apply to every document of the message. The patient is named by INS in
PID-3 (``<matricule>^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS``; NIA …4.9, test …4.10 and
…4.11) and must be the CDA's ``recordTarget``; the metadata OBXs (OBX-3 of table ``MetaDMPMSS``,
value ``Y``/``N``) ``MASQUE_PS``, ``INVISIBLE_PATIENT``, ``INVISIBLE_REP_LEGAUX``,
``CONNEXION_SECRETE``, ``DESTDMP`` and ``ACK_RECEPTION`` are read; the ``PRT`` segment
``SB^Send by`` (pre-adopted from v2.9) names the sending professional (PRT-5, RPPS OID
1.2.250.1.71.4.2.1) and structure (PRT-8, OID 1.2.250.1.71.4.2.2).

Parsing is lenient where senders differ: segments may end with CR, CRLF or LF; MSH-18 says
``UNICODE UTF-8`` or ``8859/15`` (a message without it is read as UTF-8, else ISO 8859-15; one
that declares 8859/15 but is valid non-ASCII UTF-8 is read as UTF-8);
segments the volet pre-adopts (PRT, ZAM) are read by position; base64 may be split by spaces or
line breaks. Only the segments and fields read are split, by the delimiters MSH-1 and MSH-2
declare, and the values read are unescaped by the ``hl7`` library (python-hl7).

Every message gets a technical acknowledgement (:func:`acknowledgement`): ``ACK^<event>^ACK``
with MSA-1 ``AA`` (accepted), ``AE`` (its content is in error) or ``AR`` (the message is
rejected: not HL7, an inconsistent action, a sender other than the feed's), and an ERR segment
naming the error (HL7 table 0357, and the volet's application codes 900–905 in ERR-5). As the
volet's own example answers an unknown MSH-12 (``MSA|AE`` with ``ERR||MSH^1^12|203``), and as
it defines AE as "the message contains errors" and AR as "rejected for a circumstantial reason,
may be sent again later", an unsupported type, event, version or MSH-18 is answered ``AE``. The business acknowledgement
``ZAM^Z01^ZAM_Z01`` (:func:`business_ack`) answers a message that asked for it (``ACK_RECEPTION=Y``).
"""

from __future__ import annotations

import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import hl7
import pybase64

from carnet.domain.errors import FeedMessageError

__all__ = [
    "INS_OIDS",
    "Action",
    "Document",
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
#: id, then skipped; the fields after the last read are not split off). MSH is kept whole.
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
#: How many documents a message carries at most: an ORU "une ou deux instances de documents
#: CDA-R2" (a level 1 and a level 3 of the same report), an MDM "un seul document".
_MOST_DOCUMENTS = {"ORU": 2, "MDM": 1}


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
class Document:
    """One document OBX of a message: which OBX (``OBX^<obx>`` in an ERR), its typeCode, its CDA."""

    obx: int
    """The OBX's occurrence in the message (1 for the first OBX)."""
    type_code: str
    """OBX-3: the document's typeCode (LOINC)."""
    cda: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class DocumentMessage:
    """One ORU or MDM message, read: its action, patient, documents and metadata."""

    header: Header
    action: Action
    ins: tuple[tuple[str, str], ...]
    """The INS of PID-3 as ``(authority OID, value)``, in message order."""
    documents: tuple[Document, ...]
    """Every document OBX, in message order (one or two; the action applies to each)."""
    flags: Flags
    sender: Sender | None
    document_id: str | None = None
    """TXA-12 (MDM): the unique id of the document."""
    parent_id: str | None = None
    """TXA-13 (MDM replace): the unique id of the document replaced."""

    @property
    def cda(self) -> bytes:
        """The first document's CDA."""
        return self.documents[0].cda

    @property
    def type_code(self) -> str:
        """The first document's typeCode."""
        return self.documents[0].type_code


def decode(raw: bytes) -> tuple[str, str]:
    """Return a message's text with CR segment ends, and the codec MSH-18 names.

    Raises:
        FeedMessageError: not an HL7 v2 message (no MSH first), or an unknown MSH-18.
    """
    body = raw.strip(b"\x0b\x1c\r\n ")
    if b"\n" in body:  # CRLF or LF segment ends (two passes over the document saved when CR alone)
        body = body.replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    lines = body.split(b"\r")
    blank = any(not line or line.isspace() for line in lines)
    if blank:
        lines = [line for line in lines if line and not line.isspace()]
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
            location="MSH^1^18",
        )
    if blank:
        body = b"\r".join(lines)
    if encoding is None:
        try:
            return body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            return body.decode("iso-8859-15"), "iso-8859-15"
    if encoding != "utf-8" and not body.isascii():
        # Senders (the ANS's own examples among them) declare 8859/15 and write UTF-8: text that
        # is valid UTF-8 and not ASCII is that (ISO 8859-15 text almost never is valid UTF-8).
        # The ACK still answers in the charset MSH-18 declares.
        try:
            return body.decode("utf-8"), encoding
        except UnicodeDecodeError:
            pass
    try:
        return body.decode(encoding), encoding
    except UnicodeDecodeError:
        raise FeedMessageError(
            f"The message is not valid {declared} text, as MSH-18 says it is.",
            hl7_code="102",
            rejected=True,
            location="MSH^1^18",
        ) from None


@dataclass(frozen=True, slots=True)
class _Message:
    """A message split into the fields of the segments this module reads (nothing deeper yet).

    ``segments`` maps a segment id to its occurrences, each the list of its fields' text indexed
    by field number (index 0 the segment id; for MSH, index 1 is MSH-1, the field separator, as
    in python-hl7). Repetitions, components and subcomponents are split only when a value is read
    (:func:`_get`), and python-hl7 unescapes the values read: a message's reading then costs a
    few string splits instead of a container for every field, component and subcomponent of it.
    """

    segments: dict[str, list[list[str]]]
    repetition: str
    component: str
    subcomponent: str
    escape: str
    escapes: hl7.Message
    """An empty python-hl7 message with this message's delimiters: what unescapes its values."""


def _delimiters(first: str) -> tuple[str, str, str, str, str]:
    """The field, component, repetition, escape and subcomponent delimiters MSH-1 and MSH-2 declare.

    As python-hl7 reads them: a delimiter MSH-2 leaves out is the standard one.
    """
    field = first[3:4] if first.startswith("MSH") and len(first) > 3 else "|"
    declared = first[4:].split(field, 1)[0] if field else ""
    defaults = "^~\\&"
    component, repetition, escape, subcomponent = (
        declared[i] if len(declared) > i else defaults[i] for i in range(4)
    )
    return field, component, repetition, escape, subcomponent


def _parse(text: str) -> _Message:
    """Split a message into the fields of the segments this module reads.

    Every segment must start with a segment id; those this module never reads (PV1, OBR, NTE…)
    are skipped after that check, and so are the fields after the last one read of a segment
    (PID-5 onwards: names, addresses…). MSH is kept whole. A document's base64 in OBX-5 is one
    field: it is copied once by the split, never walked character by character in Python.

    Raises:
        FeedMessageError: a line that does not start with a segment id (``100``, rejected).
    """
    first = text.partition("\r")[0]
    field, component, repetition, escape, subcomponent = _delimiters(first)
    segments: dict[str, list[list[str]]] = {}
    for line in _split(text, "\r"):
        end = line.find(field)
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
        if name == "MSH":
            # MSH-1 is the separator itself, so MSH-n is at index n as in every other segment.
            fields = ["MSH", field, *line[4:].split(field)] if end >= 0 else ["MSH"]
        elif last is None:
            fields = _split(line, field)
        else:
            fields = _split(line, field, last + 1)[: last + 1]
        segments.setdefault(name, []).append(fields)
    separators = "\r" + field + repetition + component + subcomponent
    return _Message(
        segments=segments,
        repetition=repetition,
        component=component,
        subcomponent=subcomponent,
        escape=escape,
        escapes=hl7.Message("\r", esc=escape, separators=separators),
    )


def _split(text: str, delimiter: str, maxsplit: int = -1) -> list[str]:
    """``text.split(delimiter, maxsplit)`` for a one-character delimiter, by ``find``.

    A message holding one character outside ASCII (an accented name) is a non-ASCII string,
    which ``str.split`` walks character by character: ~240 µs for a 133 KB message on this
    machine, where ``find`` (memchr) and slicing take ~45 µs.
    """
    if len(delimiter) != 1 or text.isascii():
        return text.split(delimiter, maxsplit)
    parts: list[str] = []
    find = text.find
    start = 0
    while maxsplit < 0 or len(parts) < maxsplit:
        end = find(delimiter, start)
        if end < 0:
            break
        parts.append(text[start:end])
        start = end + 1
    parts.append(text[start:])
    return parts


def _get(
    message: _Message, segment: str, occurrence: int, field: int, rep: int = 1, comp: int = 1, sub: int = 1
) -> str:
    """One value, unescaped and stripped; empty where the message has nothing (1-based positions).

    As python-hl7's ``extract_field`` reads it: a value with fewer levels than asked is the
    value when the positions left are 1 (``PID-3.1`` of a PID-3 without components), and empty
    otherwise or when a position is past the last one.
    """
    occurrences = message.segments.get(segment)
    if occurrences is None or occurrence > len(occurrences):
        return ""
    fields = occurrences[occurrence - 1]
    if field >= len(fields):
        return ""
    value = fields[field]
    for position, delimiter in (
        (rep, message.repetition),
        (comp, message.component),
        (sub, message.subcomponent),
    ):
        if position == 1:
            value = value.partition(delimiter)[0]
            continue
        parts = _split(value, delimiter, position)
        if position > len(parts):
            return ""
        value = parts[position - 1]
    # Unescaping walks the whole value: only when it holds an escape (never a base64 document).
    if message.escape in value:
        value = str(message.escapes.unescape(value))
    return value.strip()


def _count(message: _Message, segment: str) -> int:
    """How many times a segment (of those read) occurs."""
    return len(message.segments.get(segment, ()))


def _header(message: _Message, encoding: str) -> Header:
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


def content_digest(raw: bytes) -> bytes:
    """SHA-256 of what a message says after its MSH segment.

    Two messages under one MSH-10 with the same digest are one message sent again (a sender that
    resends may stamp a new MSH-7: MSH is left out); another digest is another message that
    reused the MSH-10.
    """
    body = raw.strip(b"\x0b\x1c\r\n ")
    ends = [i for i in (body.find(b"\r"), body.find(b"\n")) if i >= 0]
    return hashlib.sha256(body[min(ends) :] if ends else b"").digest()


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
            location="MSH^1^9",
        )
    event = header.event.upper()
    if (kind == "ORU" and event != "R01") or (kind == "MDM" and event not in _MDM_EVENTS):
        raise FeedMessageError(
            f"Event {event[:10]!r} is not taken for {kind}; send ORU^R01 or MDM^T02, T10 or T04.",
            hl7_code="201",
            location="MSH^1^9^2",
        )
    if not header.version.startswith(_VERSIONS[kind]):
        raise FeedMessageError(
            f"{kind} is sent in HL7 v{_VERSIONS[kind]} (MSH-12), not {header.version[:10]!r}.",
            hl7_code="203",
            location="MSH^1^12",
        )
    found = _document_obxs(message)
    status = _get(message, "OBX", found[0], 11).upper()
    action = _action(message, kind, event, status, found[0])
    if len(found) > _MOST_DOCUMENTS[kind]:
        raise FeedMessageError(
            f"{kind} carries {len(found)} documents; the volet allows "
            + ("one or two (a level 1 and a level 3 CDA of the same report)." if kind == "ORU" else "one."),
            hl7_code="100",
            location=f"OBX^{found[_MOST_DOCUMENTS[kind]]}",
        )
    return DocumentMessage(
        header=header,
        action=action,
        ins=_ins(message),
        documents=tuple(_document(message, obx, status) for obx in found),
        flags=_flags(message),
        sender=_sender(message),
        document_id=_get(message, "TXA", 1, 12) or None if kind == "MDM" else None,
        parent_id=_get(message, "TXA", 1, 13) or None if kind == "MDM" else None,
    )


def _document_obxs(message: _Message) -> list[int]:
    """Return the occurrences of the OBXs that carry a document (OBX-2 ED of XML, not metadata)."""
    found = [
        index
        for index in range(1, _count(message, "OBX") + 1)
        if (
            _get(message, "OBX", index, 2).upper() == "ED"
            and _get(message, "OBX", index, 3, 1, 3) != _META_TABLE
        )
        and _get(message, "OBX", index, 5, 1, 3).upper() == "XML"
    ]
    if found:
        return found
    raise FeedMessageError(
        "The message carries no CDA document: the first OBX of type ED must hold ^TEXT^XML^Base64^<document>.",
        hl7_code="101",
        location="OBX^1^5",
    )


def _document(message: _Message, obx: int, status: str) -> Document:
    """Read one document OBX, whose OBX-11 must be the first document's.

    Raises:
        FeedMessageError: another OBX-11 (``AR``), no base64 or no XML in OBX-5.5 (``AE``).
    """
    own = _get(message, "OBX", obx, 11).upper()
    if own != status:
        raise FeedMessageError(
            f"OBX-11 {own[:4]!r} of this document is not the first document's {status!r}: "
            "the documents of one message are sent, replaced or deleted together.",
            hl7_code="207",
            rejected=True,  # an inconsistent combination, as ORC-1 against OBX-11
            location=f"OBX^{obx}^11",
        )
    cda = _base64(_get(message, "OBX", obx, 5, 1, 5), f"OBX^{obx}^5^5")
    if not _is_xml(cda):
        raise FeedMessageError(
            "The base64 in OBX-5.5 decodes to no XML document; OBX-5 must carry the base64 "
            "of a CDA ClinicalDocument.",
            hl7_code="102",
            location=f"OBX^{obx}^5^5",
        )
    return Document(obx=obx, type_code=_get(message, "OBX", obx, 3), cda=cda)


def _action(message: _Message, kind: str, event: str, status: str, obx: int) -> Action:
    """The action that OBX-11 (of the document OBX ``obx``), ORC-1 and the MDM event agree on.

    Raises:
        FeedMessageError: an unknown OBX-11, or a disagreement.
    """
    action = _BY_STATUS.get(status)
    if action is None:
        raise FeedMessageError(
            f"OBX-11 {status[:4]!r} is not F (initial), C (replace) or D (delete).",
            hl7_code="103",
            location=f"OBX^{obx}^11",
        )
    order = _get(message, "ORC", 1, 1).upper() if _count(message, "ORC") else ""
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


def _strict_base64(text: str) -> bytes:
    """The bytes of base64 text, empty when it is not base64 (strict: no regex pass needed).

    pybase64's SIMD decoder, validating as binascii's strict mode does (the same alphabet,
    padding and errors): ~8 µs instead of ~320 µs for a 133 KB document on this machine.
    """
    try:
        return pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return b""


def _is_xml(document: bytes) -> bool:
    """Whether decoded bytes start as an XML document does (after a byte order mark and blanks).

    Looks at the first bytes only: a base64 sentence instead of a CDA (as in some published
    examples) is told apart here, with the field to blame, before any XML parser runs.
    """
    head = document[:64].lstrip(b"\xef\xbb\xbf\xfe\xff\x00 \t\r\n")
    return head.startswith(b"<")


def _base64(data: str, where: str) -> bytes:
    # Base64 split by spaces or line breaks is joined (one more pass over the document) only
    # when the strict read of it as it came fails.
    decoded = _strict_base64(data) or _strict_base64("".join(data.split()))
    if not decoded:
        raise FeedMessageError(
            "The document in OBX-5.5 is not base64 (or is empty).", hl7_code="102", location=where
        )
    return decoded


def _ins(message: _Message) -> tuple[tuple[str, str], ...]:
    """The INS repetitions of PID-3 (the first 20): ``(authority OID, value)``."""
    pid = message.segments.get("PID")
    if not pid or len(pid[0]) <= 3:
        return ()
    found: list[tuple[str, str]] = []
    for rep in range(1, min(pid[0][3].count(message.repetition) + 1, 20) + 1):
        value = _get(message, "PID", 1, 3, rep, 1)
        oid = _get(message, "PID", 1, 3, rep, 4, 2)
        if value and oid in INS_OIDS:
            found.append((oid, value))
    return tuple(found)


def _flags(message: _Message) -> Flags:
    values: dict[str, bool] = {}
    for index in range(1, _count(message, "OBX") + 1):
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


def _sender(message: _Message) -> Sender | None:
    """The PRT whose PRT-4 is ``SB`` (Send by)."""
    for index in range(1, _count(message, "PRT") + 1):
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
    header: Header, *, control_id: str, now: datetime, stored: bool, document_types: Sequence[str]
) -> bytes:
    """Build the ZAM^Z01^ZAM_Z01 business acknowledgement of reception in the record.

    One per message, as the volet's "accusé de réception de(s) document(s) par le DMP": OBX-3
    ``ACK_RECEPTION_DMP`` (table AckMetierZAM), OBX-4 the message's MSH-10, is ``Y`` when its
    documents are in the record, ``N`` when they are not (refused by the patient, or not for the
    record); then one OBX per document, by its type.
    """
    answer = "Y" if stored else "N"
    segments = [
        _reply_header(header, "ZAM^Z01^ZAM_Z01", control_id, now, "2.6"),
        f"MSA|AA|{_escape(header.control_id)}",
        f"OBX|1|CE|ACK_RECEPTION_DMP^Accusé de réception DMP^AckMetierZAM|{_escape(header.control_id)}|"
        f"{answer}^^expandedYes-NoIndicator||||||F|||{_timestamp(now)}",
    ]
    segments += [
        f"OBX|{n}|CE|{_escape(kind)}^^LN||{answer}^^expandedYes-NoIndicator||||||F"
        for n, kind in enumerate(document_types, start=2)
    ]
    return ("\r".join(segments) + "\r").encode(header.encoding, "replace")
