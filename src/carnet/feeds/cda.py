"""Parse HL7 CDA R2 documents (French CI-SIS flavour) into typed metadata, safely.

Wire format: an HL7 CDA R2 ``ClinicalDocument`` in the ``urn:hl7-org:v3`` namespace, encoded in
UTF-8 (the CI-SIS requires it). Level 1 documents carry a ``nonXMLBody`` (usually a base64 PDF),
level 3 documents a ``structuredBody``. Only the header is read into :class:`CDADocument`, plus the
embedded content of a level 1 body; the structured body is left to the record's own readers.

Safety, in the order the checks run:

1. more than ``max_bytes`` bytes → :class:`PayloadTooLarge`; no byte is parsed;
2. the bytes are screened before any parser sees them: ``<!DOCTYPE`` anywhere (XXE and
   billion-laughs attacks both need one) or a declared encoding other than UTF-8 →
   :class:`InvalidResource`;
3. lxml parses with entities unresolved, no DTD loaded, no network, no huge-tree mode, and a
   resolver that answers every external fetch with nothing; comments and processing
   instructions (``<?xml-stylesheet?>``…) are dropped;
4. a document that still carries a DTD, a root other than ``{urn:hl7-org:v3}ClinicalDocument``
   or XML that is not well-formed → :class:`InvalidResource`; libxml2's limits (a text node over
   10,000,000 characters, nesting deeper than 256) → :class:`PayloadTooLarge`.

Reading the header never raises: an absent element gives ``None`` (or an empty tuple), and a
malformed date or version gives ``None`` plus a line in :attr:`CDADocument.warnings`. Warnings
name the element, never its value, since values are patient data.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from enum import IntEnum, StrEnum
from functools import cache
from importlib import resources

from lxml import etree

from carnet.domain.documents import strict_base64
from carnet.domain.errors import InvalidResource, PayloadTooLarge

__all__ = [
    "DEFAULT_MAX_BYTES",
    "HL7_NAMESPACE",
    "LOINC",
    "PS_NATIONAL_ID_ROOT",
    "Author",
    "BodyLevel",
    "CDADocument",
    "ClassCode",
    "Code",
    "INSSystem",
    "Identifier",
    "NamePart",
    "Organization",
    "Patient",
    "Period",
    "PersonName",
    "UnstructuredBody",
    "class_code_for",
    "codes_of",
    "parse_cda",
    "parse_timestamp",
    "parse_tree",
]

HL7_NAMESPACE = "urn:hl7-org:v3"
LOINC = "2.16.840.1.113883.6.1"
PS_NATIONAL_ID_ROOT = "1.2.250.1.71.4.2.1"
"""OID of the professionals' national identifier (idNat_PS): ``8`` + RPPS, ``0`` + ADELI…"""

DEFAULT_MAX_BYTES = 20_000_000

_NS = {"h": HL7_NAMESPACE}
_ROOT_TAG = f"{{{HL7_NAMESPACE}}}ClinicalDocument"


class INSSystem(StrEnum):
    """OIDs under which a patient's INS (Identifiant National de Santé) is issued."""

    NIR = "1.2.250.1.213.1.4.8"
    NIA = "1.2.250.1.213.1.4.9"
    TEST_NIR = "1.2.250.1.213.1.4.10"
    DEMO_NIR = "1.2.250.1.213.1.4.11"


class ClassCode(StrEnum):
    """DMP document classes (classCode, JDV_J06-XdsClassCode-CISIS)."""

    COMPTE_RENDU = "10"
    SYNTHESE = "11"
    IMAGERIE = "31"
    PRESCRIPTION = "42"
    DISPENSATION = "43"
    PLAN_DE_SOINS = "44"
    TRAITEMENT_ADMINISTRE = "45"
    CERTIFICAT = "52"
    REMBOURSEMENT = "60"
    DOCUMENT_DU_PATIENT = "90"
    GESTION = "95"


class BodyLevel(IntEnum):
    """CDA body level: 1 is a ``nonXMLBody``, 3 a ``structuredBody``."""

    UNSTRUCTURED = 1
    STRUCTURED = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class Identifier:
    """An HL7 instance identifier (II): an OID or UUID ``root`` and an optional ``extension``."""

    root: str
    extension: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Code:
    """An HL7 coded value (CD/CE): code, code system OID and display name."""

    code: str
    code_system: str | None = None
    display_name: str | None = None


def codes_of(elements: Iterable[etree._Element | None]) -> tuple[Code, ...]:
    """The coded values of CD elements (``code``, ``codeSystem``, ``displayName``), in order, once each.

    Elements that are None or carry no ``code`` are skipped.
    """
    found: list[Code] = []
    for element in elements:
        if element is None or not element.get("code"):
            continue
        code = Code(
            code=str(element.get("code")),
            code_system=element.get("codeSystem"),
            display_name=element.get("displayName"),
        )
        if code not in found:
            found.append(code)
    return tuple(found)


@dataclass(frozen=True, slots=True, kw_only=True)
class NamePart:
    """One family or given name; French documents qualify them ``BR`` (birth) or ``CL`` (used)."""

    value: str
    qualifier: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PersonName:
    """An HL7 person name (PN), its parts in document order."""

    family: tuple[NamePart, ...] = ()
    given: tuple[NamePart, ...] = ()
    prefix: tuple[str, ...] = ()
    suffix: tuple[str, ...] = ()

    @property
    def family_name(self) -> str | None:
        """The birth family name (nom de naissance) if qualified, else the first family name."""
        return _preferred(self.family, ("BR", None))

    @property
    def given_name(self) -> str | None:
        """The unqualified given names (prénoms de naissance), else the first given name."""
        return _preferred(self.given, (None, "BR"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Organization:
    """An organisation: its identifiers (FINESS, SIRET… under their OIDs) and name."""

    identifiers: tuple[Identifier, ...] = ()
    name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Patient:
    """The record target: identifiers, name, birth date and administrative gender."""

    identifiers: tuple[Identifier, ...] = ()
    name: PersonName | None = None
    birth_date: date | None = None
    gender: Code | None = None

    @property
    def ins(self) -> Identifier | None:
        """The INS identifier (NIR, then NIA, then test and demo NIR) that has an extension."""
        for system in INSSystem:
            for identifier in self.identifiers:
                if identifier.root == system and identifier.extension:
                    return identifier
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Author:
    """One author: when, who (idNat_PS, name), profession/specialty and organisation."""

    time: datetime | None = None
    identifiers: tuple[Identifier, ...] = ()
    name: PersonName | None = None
    function_code: Code | None = None
    specialty: Code | None = None
    """``assignedAuthor/code``: profession and specialty (XDS authorSpecialty)."""
    organization: Organization | None = None
    device: str | None = None
    """``assignedAuthoringDevice/softwareName`` when software, not a person, is the author."""

    @property
    def national_id(self) -> str | None:
        """The idNat_PS: the extension of the id under ``1.2.250.1.71.4.2.1``."""
        for identifier in self.identifiers:
            if identifier.root == PS_NATIONAL_ID_ROOT and identifier.extension:
                return identifier.extension
        return None

    @property
    def rpps(self) -> str | None:
        """The 11-digit RPPS number, when the idNat_PS is ``8`` followed by it."""
        national_id = self.national_id
        if national_id and len(national_id) == 12 and national_id.startswith("8") and national_id.isdigit():
            return national_id[1:]
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Period:
    """A time interval (IVL_TS); either end may be unknown."""

    low: datetime | None = None
    high: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UnstructuredBody:
    """A level 1 ``nonXMLBody``: media type, and the content decoded or referenced."""

    media_type: str | None = None
    representation: str = "TXT"
    content: bytes | None = field(default=None, repr=False)
    """The embedded bytes: base64-decoded for ``B64``, the UTF-8 text for ``TXT``."""
    reference: str | None = None
    """``text/reference/@value`` when the content lives outside the document."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CDADocument:
    """The header metadata of one CDA R2 document, and its level 1 content if any."""

    id: Identifier | None = None
    set_id: Identifier | None = None
    version_number: int | None = None
    replaces: Identifier | None = None
    """``relatedDocument[@typeCode='RPLC']/parentDocument/id``: the version this one supersedes."""
    template_ids: tuple[Identifier, ...] = ()
    code: Code | None = None
    """The document type (XDS typeCode), a LOINC code or an ANS code."""
    title: str | None = None
    effective_time: datetime | None = None
    confidentiality_code: Code | None = None
    language_code: str | None = None
    patient: Patient | None = None
    authors: tuple[Author, ...] = ()
    custodian: Organization | None = None
    service_period: Period | None = None
    """Earliest ``low`` and latest ``high`` over ``documentationOf/serviceEvent/effectiveTime``."""
    practice_setting: Code | None = None
    """``standardIndustryClassCode`` of the first service event performer's organisation."""
    facility_type: Code | None = None
    """``componentOf/encompassingEncounter/location/healthCareFacility/code``."""
    level: BodyLevel | None = None
    body: UnstructuredBody | None = None
    warnings: tuple[str, ...] = ()

    @property
    def ins(self) -> Identifier | None:
        """The patient's INS identifier, if the document carries one."""
        return self.patient.ins if self.patient else None

    @property
    def class_code(self) -> ClassCode | None:
        """The DMP classCode that the document type maps to, if any."""
        return class_code_for(self.code.code, self.code.code_system) if self.code else None


def parse_cda(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> CDADocument:
    """Parse a CDA R2 document's bytes into its header metadata, refusing anything unsafe.

    Raises:
        PayloadTooLarge: ``data`` is over ``max_bytes``, or exceeds the XML parser's limits.
        InvalidResource: the bytes are empty, carry a DOCTYPE, are not UTF-8, are not well-formed
            XML, have a root other than an HL7 v3 ``ClinicalDocument``, or embed invalid base64.
    """
    root = parse_tree(data, max_bytes=max_bytes)
    warnings: list[str] = []
    return _read_document(root, warnings)


def parse_tree(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> etree._Element:
    """Parse a CDA document's bytes into its ``ClinicalDocument`` element, with the same safety.

    For readers of a structured body (``carnet.feeds.cnam_hr``); raises as :func:`parse_cda`.
    """
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            f"The CDA document is {len(data)} bytes, over the {max_bytes}-byte limit; "
            "send a smaller document or raise the limit."
        )
    if not data or data.isspace():
        raise InvalidResource("The CDA document is empty; send the XML of a ClinicalDocument.")
    _screen(data)
    return _parse_xml(data)


def class_code_for(type_code: str, code_system: str | None = None) -> ClassCode | None:
    """Map a document type code to its DMP classCode (ANS table ASS_X04), or ``None``.

    Give ``code_system`` to require the code's system to match the table's as well.
    """
    entry = _class_table().get(type_code)
    if entry is None or (code_system is not None and code_system != entry[0]):
        return None
    return entry[1]


# Parsing --------------------------------------------------------------------------------------

_BOMS_NOT_UTF8 = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_UTF8_NAMES = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
_XML_DECLARATION_ENCODING = re.compile(
    rb"<\?xml[ \t\r\n][^>]*?encoding[ \t\r\n]*=[ \t\r\n]*[\"']([A-Za-z0-9._-]{1,40})[\"']"
)


def _screen(data: bytes) -> None:
    """Refuse a DOCTYPE or a non-UTF-8 encoding before any XML parser reads the bytes.

    The parser is told the bytes are UTF-8, so it sees exactly these bytes, and XML only knows
    the upper-case ``<!DOCTYPE``. Looking for it anywhere, rather than in the prolog alone, also
    refuses one inside a comment: a small price for a check that runs at memory speed.
    """
    if data.startswith(_BOMS_NOT_UTF8):
        raise InvalidResource(
            "The CDA document is UTF-16 or UTF-32 encoded; CDA documents must be UTF-8, "
            "so re-encode it as UTF-8 and resend it."
        )
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    declaration = _XML_DECLARATION_ENCODING.match(data, start)
    if declaration and declaration.group(1).decode("ascii").lower() not in _UTF8_NAMES:
        raise InvalidResource(
            f"The CDA document declares encoding {declaration.group(1).decode('ascii')!r}; "
            "CDA documents must be UTF-8, so re-encode it as UTF-8 and resend it."
        )
    if b"<!DOCTYPE" in data:
        _refuse_doctype()


def _refuse_doctype() -> None:
    raise InvalidResource(
        "The CDA document contains a DOCTYPE declaration, which Carnet refuses because it "
        "enables entity attacks; remove the DOCTYPE (CDA R2 needs none) and resend it."
    )


class _NothingResolver(etree.Resolver):
    """Answer every request for an external resource with an empty document.

    The parser options already forbid such fetches; this is the second lock on the door.
    """

    # lxml calls resolve(url, public_id, context); lxml-stubs 0.5 forgets the context.
    def resolve(self, system_url: str, public_id: str, context: object) -> object:  # type: ignore[override]
        return self.resolve_string("", context, base_url=None)


def _parser() -> etree.XMLParser:
    # A parser per call: lxml parsers keep state and must not be shared between threads.
    parser = etree.XMLParser(
        encoding="utf-8",
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        attribute_defaults=False,
        huge_tree=False,
        recover=False,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )
    parser.resolvers.add(_NothingResolver())
    return parser


def _parse_xml(data: bytes) -> etree._Element:
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        # lxml sets XMLSyntaxError.code to libxml2's error number; lxml-stubs 0.5 omits it.
        if exc.code == etree.ErrorTypes.ERR_RESOURCE_LIMIT:  # type: ignore[attr-defined]
            raise PayloadTooLarge(
                "The CDA document exceeds the XML parser's safety limits (a text node over "
                "10,000,000 characters or nesting deeper than 256 elements); shrink the embedded "
                "content or split the document."
            ) from exc
        line, column = exc.position
        raise InvalidResource(
            f"The CDA document is not well-formed XML (line {line}, column {column}); "
            "fix the XML and resend it."
        ) from exc
    docinfo = root.getroottree().docinfo
    # libxml2 records every DOCTYPE, even an empty one, as an internal subset.
    if docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        _refuse_doctype()
    if root.tag != _ROOT_TAG:
        raise InvalidResource(
            "The root element is not an HL7 v3 ClinicalDocument (namespace urn:hl7-org:v3); "
            "send a CDA R2 document."
        )
    return root


# Reading the header ---------------------------------------------------------------------------


def _read_document(root: etree._Element, warnings: list[str]) -> CDADocument:
    level, body = _read_body(root)
    return CDADocument(
        id=_identifier(root.find("h:id", _NS)),
        set_id=_identifier(root.find("h:setId", _NS)),
        version_number=_version_number(root.find("h:versionNumber", _NS), warnings),
        replaces=_identifier(root.find("h:relatedDocument[@typeCode='RPLC']/h:parentDocument/h:id", _NS)),
        template_ids=_identifiers(root.findall("h:templateId", _NS)),
        code=_code(root.find("h:code", _NS)),
        title=_text(root.find("h:title", _NS)),
        effective_time=_timestamp(root.find("h:effectiveTime", _NS), "effectiveTime", warnings),
        confidentiality_code=_code(root.find("h:confidentialityCode", _NS)),
        language_code=_attribute(root.find("h:languageCode", _NS), "code"),
        patient=_read_patient(root.find("h:recordTarget/h:patientRole", _NS), warnings),
        authors=tuple(
            _read_author(author, f"author[{position}]", warnings)
            for position, author in enumerate(root.findall("h:author", _NS), start=1)
        ),
        custodian=_organization(
            root.find("h:custodian/h:assignedCustodian/h:representedCustodianOrganization", _NS)
        ),
        service_period=_service_period(root, warnings),
        practice_setting=_code(
            root.find(
                "h:documentationOf/h:serviceEvent/h:performer/h:assignedEntity"
                "/h:representedOrganization/h:standardIndustryClassCode",
                _NS,
            )
        ),
        facility_type=_code(
            root.find("h:componentOf/h:encompassingEncounter/h:location/h:healthCareFacility/h:code", _NS)
        ),
        level=level,
        body=body,
        warnings=tuple(warnings),
    )


def _read_patient(role: etree._Element | None, warnings: list[str]) -> Patient | None:
    if role is None:
        return None
    identifiers = _identifiers(role.findall("h:id", _NS))
    person = role.find("h:patient", _NS)
    if person is None:
        return Patient(identifiers=identifiers)
    birth = _timestamp(
        person.find("h:birthTime", _NS), "recordTarget/patientRole/patient/birthTime", warnings
    )
    return Patient(
        identifiers=identifiers,
        name=_name(person.find("h:name", _NS)),
        birth_date=birth.date() if birth else None,
        gender=_code(person.find("h:administrativeGenderCode", _NS)),
    )


def _read_author(author: etree._Element, where: str, warnings: list[str]) -> Author:
    time = _timestamp(author.find("h:time", _NS), f"{where}/time", warnings)
    function_code = _code(author.find("h:functionCode", _NS))
    assigned = author.find("h:assignedAuthor", _NS)
    if assigned is None:
        return Author(time=time, function_code=function_code)
    return Author(
        time=time,
        identifiers=_identifiers(assigned.findall("h:id", _NS)),
        name=_name(assigned.find("h:assignedPerson/h:name", _NS)),
        function_code=function_code,
        specialty=_code(assigned.find("h:code", _NS)),
        organization=_organization(assigned.find("h:representedOrganization", _NS)),
        device=_text(assigned.find("h:assignedAuthoringDevice/h:softwareName", _NS)),
    )


def _service_period(root: etree._Element, warnings: list[str]) -> Period | None:
    lows: list[datetime] = []
    highs: list[datetime] = []
    events = root.findall("h:documentationOf/h:serviceEvent/h:effectiveTime", _NS)
    for position, interval in enumerate(events, start=1):
        where = f"documentationOf[{position}]/serviceEvent/effectiveTime"
        point = _timestamp(interval, where, warnings)  # an effectiveTime/@value is a one-moment interval
        low = _timestamp(interval.find("h:low", _NS), f"{where}/low", warnings) or point
        high = _timestamp(interval.find("h:high", _NS), f"{where}/high", warnings) or point
        if low:
            lows.append(low)
        if high:
            highs.append(high)
    if not lows and not highs:
        return None
    return Period(
        low=min(lows, key=_comparable) if lows else None,
        high=max(highs, key=_comparable) if highs else None,
    )


def _comparable(moment: datetime) -> datetime:
    # Timestamps without an offset are compared as if in UTC; they are returned unchanged.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _read_body(root: etree._Element) -> tuple[BodyLevel | None, UnstructuredBody | None]:
    if root.find("h:component/h:structuredBody", _NS) is not None:
        return BodyLevel.STRUCTURED, None
    body = root.find("h:component/h:nonXMLBody", _NS)
    if body is None:
        return None, None
    text = body.find("h:text", _NS)
    if text is None:
        return BodyLevel.UNSTRUCTURED, UnstructuredBody()
    representation = (text.get("representation") or "TXT").strip().upper()
    content: bytes | None = None
    if representation == "B64":
        content = _base64(text.text or "")
    elif text.text and text.text.strip():
        content = text.text.strip().encode("utf-8")
    return BodyLevel.UNSTRUCTURED, UnstructuredBody(
        media_type=_attribute(text, "mediaType"),
        representation=representation,
        content=content,
        reference=_attribute(text.find("h:reference", _NS), "value"),
    )


def _base64(text: str) -> bytes | None:
    if not text or text.isspace():
        return None
    try:
        return strict_base64(text)
    except ValueError as exc:  # binascii.Error, or characters outside ASCII
        raise InvalidResource(
            "The nonXMLBody text is not valid base64; re-encode the embedded document and resend it.",
            expression=("ClinicalDocument.component.nonXMLBody.text",),
        ) from exc


# HL7 data types -------------------------------------------------------------------------------

# TS: YYYYMMDD[HH[MM[SS[.S+]]]][+/-ZZZZ]. Coarser values (a year, a month) are legal HL7 but do
# not make a datetime, so they are reported as warnings rather than invented into a day.
_TIMESTAMP = re.compile(
    r"(\d{4})(\d{2})(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,6}))?)?)?)?(?:([+-])(\d{2})(\d{2}))?",
    re.ASCII,
)


def parse_timestamp(value: str) -> datetime | None:
    """Read an HL7 TS value to day precision or finer; ``None`` when it is not one."""
    match = _TIMESTAMP.fullmatch(value.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, sign, tz_hours, tz_minutes = match.groups()
    tz: timezone | None = None
    try:
        if sign:
            offset = timedelta(hours=int(tz_hours), minutes=int(tz_minutes))
            tz = timezone(-offset if sign == "-" else offset)
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0").ljust(6, "0")),
            tzinfo=tz,
        )
    except ValueError:  # month 13, hour 25, offset of a day or more…
        return None


def _timestamp(element: etree._Element | None, where: str, warnings: list[str]) -> datetime | None:
    value = _attribute(element, "value")
    if value is None:
        return None
    moment = parse_timestamp(value)
    if moment is None:
        warnings.append(f"{where} is not an HL7 timestamp to day precision or finer; it was ignored.")
    return moment


def _version_number(element: etree._Element | None, warnings: list[str]) -> int | None:
    value = _attribute(element, "value")
    if value is None:
        return None
    if value.isascii() and value.isdigit() and len(value) <= 9 and int(value) > 0:
        return int(value)
    warnings.append("versionNumber is not a positive integer; it was ignored.")
    return None


def _attribute(element: etree._Element | None, name: str) -> str | None:
    if element is None:
        return None
    value = (element.get(name) or "").strip()
    return value or None


def _text(element: etree._Element | None) -> str | None:
    if element is None:
        return None
    return " ".join("".join(str(piece) for piece in element.itertext()).split()) or None


def _identifier(element: etree._Element | None) -> Identifier | None:
    root = _attribute(element, "root")
    if root is None:  # a nullFlavor, or no id at all
        return None
    return Identifier(root=root, extension=_attribute(element, "extension"))


def _identifiers(elements: Iterable[etree._Element]) -> tuple[Identifier, ...]:
    return tuple(identifier for element in elements if (identifier := _identifier(element)))


def _code(element: etree._Element | None) -> Code | None:
    code = _attribute(element, "code")
    if code is None:
        return None
    return Code(
        code=code,
        code_system=_attribute(element, "codeSystem"),
        display_name=_attribute(element, "displayName"),
    )


def _organization(element: etree._Element | None) -> Organization | None:
    if element is None:
        return None
    return Organization(
        identifiers=_identifiers(element.findall("h:id", _NS)),
        name=_text(element.find("h:name", _NS)),
    )


def _name(element: etree._Element | None) -> PersonName | None:
    if element is None:
        return None

    def parts(tag: str) -> tuple[NamePart, ...]:
        return tuple(
            NamePart(value=value, qualifier=_attribute(part, "qualifier"))
            for part in element.findall(f"h:{tag}", _NS)
            if (value := _text(part))
        )

    def texts(tag: str) -> tuple[str, ...]:
        return tuple(value for part in element.findall(f"h:{tag}", _NS) if (value := _text(part)))

    name = PersonName(
        family=parts("family"), given=parts("given"), prefix=texts("prefix"), suffix=texts("suffix")
    )
    return name if name.family or name.given else None


def _preferred(parts: tuple[NamePart, ...], qualifiers: tuple[str | None, ...]) -> str | None:
    for qualifier in qualifiers:
        for part in parts:
            if part.qualifier == qualifier:
                return part.value
    return parts[0].value if parts else None


# The classCode table --------------------------------------------------------------------------


@cache
def _class_table() -> dict[str, tuple[str, ClassCode]]:
    raw = json.loads(resources.files("carnet.feeds").joinpath("cda_classes.json").read_text("utf-8"))
    return {row["code"]: (row["codeSystem"], ClassCode(row["classCode"])) for row in raw["mappings"]}
