"""Hostile and broken CDA inputs are refused with the right Carnet error, in a blink.

The XXE and DTD tests point their external references at a FIFO: a parser that tried to open it
would block, so a thread that is still running after the parse proves the file was touched.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from carnet.domain.errors import CarnetError, InvalidResource, PayloadTooLarge
from carnet.feeds import cda
from carnet.feeds.cda import (
    DEFAULT_MAX_BYTES,
    BodyLevel,
    CDADocument,
    Identifier,
    parse_cda,
    parse_timestamp,
)

#: Seconds of this process's CPU time (not wall-clock time, which a loaded CI runner stretches):
#: refusing an entity attack takes microseconds, expanding one would take far more.
BLINK = 0.5
HEAD = b'<?xml version="1.0" encoding="UTF-8"?>\n'
OPEN = b'<ClinicalDocument xmlns="urn:hl7-org:v3">'
CLOSE = b"</ClinicalDocument>"

XXE_PASSWD = (
    HEAD
    + b'<!DOCTYPE ClinicalDocument [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    + OPEN
    + b"<title>&xxe;</title>"
    + CLOSE
)
BILLION_LAUGHS = (
    HEAD
    + b"""<!DOCTYPE ClinicalDocument [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
"""
    + OPEN
    + b"<title>&lol9;</title>"
    + CLOSE
)
# Each reaches for {url} a different way: general entity, parameter entity, external DTD.
EXTERNAL_REFERENCES = {
    "general-entity": '<!DOCTYPE ClinicalDocument [<!ENTITY xxe SYSTEM "{url}">]>'
    '<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&xxe;</title></ClinicalDocument>',
    "parameter-entity": '<!DOCTYPE ClinicalDocument [<!ENTITY % ext SYSTEM "{url}"> %ext;]>'
    '<ClinicalDocument xmlns="urn:hl7-org:v3"/>',
    "external-dtd": '<!DOCTYPE ClinicalDocument SYSTEM "{url}"><ClinicalDocument xmlns="urn:hl7-org:v3"/>',
}
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX-only")


def _refused(data: bytes, error: type[CarnetError], *, max_bytes: int = DEFAULT_MAX_BYTES) -> CarnetError:
    started = time.process_time()
    with pytest.raises(error) as caught:
        parse_cda(data, max_bytes=max_bytes)
    assert time.process_time() - started < BLINK
    return caught.value


def _parse_beside_fifo(fifo: Path, data: bytes) -> Exception | CDADocument:
    """Parse in a thread; fail the test if the parser opens ``fifo`` (and so blocks on it)."""
    outcome: list[Exception | CDADocument] = []

    def parse() -> None:
        try:
            outcome.append(parse_cda(data))
        except Exception as exc:
            outcome.append(exc)

    worker = threading.Thread(target=parse, daemon=True)
    worker.start()
    worker.join(timeout=2)
    if worker.is_alive():
        # The parser is stuck opening the FIFO for reading: open the other end to free it.
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(timeout=2)
        pytest.fail("the parser opened the external reference")
    return outcome[0]


def test_xxe_to_etc_passwd_is_refused() -> None:
    """An external entity aimed at /etc/passwd is refused, and nothing of the file leaks."""
    error = _refused(XXE_PASSWD, InvalidResource)

    assert "DOCTYPE" in error.message
    assert "root:" not in error.message


def test_billion_laughs_is_refused_in_a_blink() -> None:
    """Nested entity expansion is refused before any entity is expanded."""
    error = _refused(BILLION_LAUGHS, InvalidResource)

    assert "DOCTYPE" in error.message


@needs_fifo
@pytest.mark.parametrize("template", EXTERNAL_REFERENCES.values(), ids=EXTERNAL_REFERENCES.keys())
def test_external_reference_is_refused_without_opening_it(tmp_path: Path, template: str) -> None:
    """An external entity or DTD is refused and its target is never opened."""
    fifo = tmp_path / "secret"
    os.mkfifo(fifo)

    outcome = _parse_beside_fifo(fifo, template.format(url=fifo.as_uri()).encode())

    assert isinstance(outcome, InvalidResource)


@needs_fifo
@pytest.mark.parametrize("template", EXTERNAL_REFERENCES.values(), ids=EXTERNAL_REFERENCES.keys())
def test_parser_alone_never_opens_external_references(
    tmp_path: Path, template: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the byte screen switched off, the hardened parser still opens nothing and refuses the DTD."""
    monkeypatch.setattr(cda, "_screen", lambda data: None)
    fifo = tmp_path / "secret"
    os.mkfifo(fifo)

    outcome = _parse_beside_fifo(fifo, template.format(url=fifo.as_uri()).encode())

    assert isinstance(outcome, InvalidResource)


@pytest.mark.parametrize(
    "data",
    [
        HEAD + b"<!-- <a> -->\n<?xml-stylesheet href='x.xsl'?>\n<!DOCTYPE ClinicalDocument>" + OPEN + CLOSE,
        b"\xef\xbb\xbf" + HEAD + b"<!DOCTYPE ClinicalDocument>" + OPEN + CLOSE,
        b"  <!doctype ClinicalDocument>" + OPEN + CLOSE,
        HEAD + OPEN + b"<!-- <!DOCTYPE ClinicalDocument> -->" + CLOSE,
    ],
    ids=["after-comment-and-pi", "after-bom", "lowercase", "inside-a-comment"],
)
def test_doctype_anywhere_is_refused(data: bytes) -> None:
    """A DOCTYPE behind comments, PIs or a BOM, in lower case, or even commented out is refused."""
    _refused(data, InvalidResource)


@pytest.mark.parametrize(
    "data",
    [
        b"<ClinicalDocument/>",
        b'<html xmlns="http://www.w3.org/1999/xhtml"/>',
        b'<Observation xmlns="urn:hl7-org:v3"/>',
        b'<Bundle xmlns="http://hl7.org/fhir"/>',
    ],
    ids=["no-namespace", "xhtml", "other-hl7-root", "fhir"],
)
def test_wrong_root_is_refused(data: bytes) -> None:
    """Only a ClinicalDocument in the urn:hl7-org:v3 namespace is accepted."""
    error = _refused(data, InvalidResource)

    assert "ClinicalDocument" in error.message


@pytest.mark.parametrize(
    "data",
    [
        HEAD + OPEN + b"<title>Compte rendu",
        HEAD + OPEN + b"<title>Compte rendu</titel>" + CLOSE,
        HEAD + OPEN + b"<title>&nbsp;</title>" + CLOSE,
        HEAD + OPEN + CLOSE + OPEN + CLOSE,
        HEAD + OPEN + b'<id root="1.2" root="1.3"/>' + CLOSE,
    ],
    ids=["truncated", "mismatched-tag", "undefined-entity", "two-roots", "duplicate-attribute"],
)
def test_not_well_formed_xml_is_refused(data: bytes) -> None:
    """Truncated or otherwise not well-formed XML is refused with its position."""
    error = _refused(data, InvalidResource)

    assert "not well-formed" in error.message
    assert "line" in error.message


def test_oversize_is_refused_before_parsing() -> None:
    """Bytes over the limit are refused whatever they contain."""
    _refused(OPEN + CLOSE + b" " * 100, PayloadTooLarge, max_bytes=100)


def test_default_limit_is_twenty_megabytes() -> None:
    """The default limit refuses 20,000,001 bytes."""
    error = _refused(b" " * 20_000_001, PayloadTooLarge)

    assert "20000000" in error.message


def test_huge_text_node_is_refused() -> None:
    """A text node over libxml2's 10,000,000-character limit is refused, not parsed in huge mode."""
    _refused(OPEN + b"<title>" + b"A" * 10_000_001 + b"</title>" + CLOSE, PayloadTooLarge)


def test_deep_nesting_is_refused() -> None:
    """Nesting deeper than libxml2's 256-element limit is refused."""
    _refused(OPEN + b"<x>" * 300 + b"</x>" * 300 + CLOSE, PayloadTooLarge)


@pytest.mark.parametrize(
    "data",
    [
        bytes(range(256)),
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        b"\xff\xfe\xfd\xfc garbage \x80\x81",
        HEAD + OPEN + "<title>Clé</title>".encode("latin-1") + CLOSE,
        "<?xml version='1.0'?><ClinicalDocument xmlns='urn:hl7-org:v3'/>".encode("utf-16"),
        b'<?xml version="1.0" encoding="ISO-8859-1"?>' + OPEN + CLOSE,
    ],
    ids=["all-bytes", "png", "high-bytes", "latin-1-declared-utf-8", "utf-16", "declared-latin-1"],
)
def test_non_utf8_bytes_are_refused(data: bytes) -> None:
    """Binary garbage and documents that are not UTF-8 are refused."""
    _refused(data, InvalidResource)


@pytest.mark.parametrize("data", [b"", b"  \n\t"], ids=["empty", "blank"])
def test_empty_input_is_refused(data: bytes) -> None:
    """An empty or blank file is refused."""
    error = _refused(data, InvalidResource)

    assert "empty" in error.message


def test_invalid_base64_body_is_refused() -> None:
    """A level 1 body whose base64 does not decode is refused rather than stored half-read."""
    body = b'<component><nonXMLBody><text mediaType="application/pdf" representation="B64">JVBER!i0x</text>'
    _refused(OPEN + body + b"</nonXMLBody></component>" + CLOSE, InvalidResource)


@pytest.mark.parametrize("separator", ["", "\n", "\r\n  "], ids=["one-line", "lf", "crlf-indented"])
def test_a_base64_body_decodes_whole_or_wrapped(separator: str) -> None:
    """A level 1 body's base64 gives the same content on one line or wrapped at 76 characters."""
    content = os.urandom(6_000)
    text = base64.b64encode(content).decode()
    wrapped = separator.join(text[i : i + 76] for i in range(0, len(text), 76))
    body = f'<component><nonXMLBody><text mediaType="application/pdf" representation="B64">{wrapped}</text>'
    document = parse_cda(OPEN + body.encode() + b"</nonXMLBody></component>" + CLOSE)

    assert document.body is not None
    assert document.body.content == content


@pytest.mark.parametrize("text", ["QQ", "QQ==QQ==", "QU\u00e9D", "QU-D", "=QQ="], ids=str)
def test_a_base64_body_with_bad_padding_or_characters_is_refused(text: str) -> None:
    """A level 1 body with bad padding, data after it or characters outside the alphabet is refused."""
    body = f'<component><nonXMLBody><text mediaType="application/pdf" representation="B64">{text}</text>'
    _refused(OPEN + body.encode() + b"</nonXMLBody></component>" + CLOSE, InvalidResource)


def test_processing_instructions_and_comments_are_ignored() -> None:
    """A stylesheet instruction and comments do not stop the document from parsing."""
    data = HEAD + b'<?xml-stylesheet type="text/xsl" href="../FeuilleDeStyle/CDA-FO.xsl"?>\n<!-- x -->'
    document = parse_cda(data + OPEN + b"<title>CR<!-- y --> de biologie</title>" + CLOSE)

    assert document.title == "CR de biologie"


def test_bare_clinical_document_reads_as_all_absent() -> None:
    """A ClinicalDocument with no header elements parses with every field absent."""
    assert parse_cda(OPEN + CLOSE) == CDADocument()


def test_null_flavored_values_read_as_absent() -> None:
    """Ids and codes carrying a nullFlavor instead of a value read as None."""
    document = parse_cda(OPEN + b'<id nullFlavor="NI"/><code nullFlavor="UNK"/><setId root=""/>' + CLOSE)

    assert (document.id, document.code, document.set_id) == (None, None, None)


def test_malformed_dates_become_warnings_without_their_values() -> None:
    """Malformed dates and versions read as None, each noted in warnings that never echo the value."""
    header = (
        b'<effectiveTime value="2021-04-01"/><versionNumber value="deux"/>'
        b'<recordTarget><patientRole><id root="1.2.250.1.213.1.4.8" extension="279035121518989"/>'
        b'<patient><birthTime value="1979"/></patient></patientRole></recordTarget>'
        b'<author><time value="20211301"/></author>'
    )
    document = parse_cda(OPEN + header + CLOSE)

    assert document.effective_time is None
    assert document.version_number is None
    assert document.patient is not None
    assert document.patient.birth_date is None
    assert document.authors[0].time is None
    assert document.ins == Identifier(root="1.2.250.1.213.1.4.8", extension="279035121518989")
    assert [warning.split(" ")[0] for warning in document.warnings] == [
        "versionNumber",
        "effectiveTime",
        "recordTarget/patientRole/patient/birthTime",
        "author[1]/time",
    ]
    assert not any(
        value in " ".join(document.warnings) for value in ("2021-04-01", "deux", "1979", "20211301")
    )


def test_level_1_text_body_yields_its_utf8_bytes() -> None:
    """A plain-text level 1 body yields its text as UTF-8 bytes."""
    body = b'<component><nonXMLBody><text mediaType="text/plain">Ecchymose \xc3\xa0 surveiller</text>'
    document = parse_cda(OPEN + body + b"</nonXMLBody></component>" + CLOSE)

    assert document.level == BodyLevel.UNSTRUCTURED
    assert document.body is not None
    assert document.body.content == "Ecchymose à surveiller".encode()


PARIS_WINTER = timezone(timedelta(hours=1))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20210401134745+0100", datetime(2021, 4, 1, 13, 47, 45, tzinfo=PARIS_WINTER)),
        ("202101040735+0100", datetime(2021, 1, 4, 7, 35, tzinfo=PARIS_WINTER)),
        ("20050329224411-0500", datetime(2005, 3, 29, 22, 44, 11, tzinfo=timezone(-timedelta(hours=5)))),
        ("20210401134745.25", datetime(2021, 4, 1, 13, 47, 45, 250_000)),
        ("20210401", datetime(2021, 4, 1)),
        ("2021", None),
        ("202104", None),
        ("20210230", None),
        ("20150722230000-5000", None),
        ("2021-04-01T13:47:45Z", None),
        ("", None),
    ],
)
def test_hl7_timestamps_read_to_day_precision_or_finer(value: str, expected: datetime | None) -> None:
    """HL7 TS values read to datetimes with their offset; coarser or impossible ones to None."""
    assert parse_timestamp(value) == expected


def test_birth_time_reads_as_a_date() -> None:
    """birthTime becomes a date, whatever precision it is given in."""
    header = (
        b'<recordTarget><patientRole><patient><birthTime value="197903281200"/></patient>'
        b"</patientRole></recordTarget>"
    )
    document = parse_cda(OPEN + header + CLOSE)

    assert document.patient is not None
    assert document.patient.birth_date == date(1979, 3, 28)
