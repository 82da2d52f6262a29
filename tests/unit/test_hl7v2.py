"""HL7 v2 messages of the ANS volet "CDA en HL7v2": what Carnet reads, what it answers.

Messages come from ``carnet.synthetic.hl7v2`` (written from the volet, apart from the reader);
the external corpus's HL7 v2 samples check that any input ends in an ACK, never a crash.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
from datetime import UTC, datetime
from pathlib import Path

import hl7
import pytest

from carnet.domain.errors import FeedMessageError
from carnet.feeds.hl7v2 import (
    _READ_FIELDS,
    Action,
    _get,
    _parse,
    _split,
    acknowledgement,
    business_ack,
    content_digest,
    parse_message,
    read_header,
)
from carnet.synthetic.hl7v2 import SendingSystem, hl7v2_message
from paths import EXTERNAL

NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
INS = ("1.2.250.1.213.1.4.10", "284031234567890")
CDA = '<ClinicalDocument xmlns="urn:hl7-org:v3"><title>Compte rendu — Léa</title></ClinicalDocument>'.encode()


def _message(**options: object) -> bytes:
    defaults: dict[str, object] = {
        "ins": INS,
        "type_code": "11502-2",
        "type_label": "CR d'examens biologiques",
        "control_id": "MSG-1",
        "sent_at": NOW,
    }
    return hl7v2_message(CDA, **{**defaults, **options})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "action", "encoding", "line_end"),
    list(
        itertools.product(
            ("ORU", "MDM"), ("initial", "replace", "delete"), ("utf-8", "iso-8859-15"), ("\r", "\r\n", "\n")
        )
    ),
)
def test_every_flow_encoding_and_line_end_reads_the_same(
    kind: str, action: str, encoding: str, line_end: str
) -> None:
    """ORU and MDM, initial/replace/delete, UTF-8 and 8859/15, CR/CRLF/LF: the same document, action and INS."""
    message = parse_message(
        _message(kind=kind, action=action, encoding=encoding, line_end=line_end, family_name="LÉON")
    )
    assert message.cda == CDA
    assert message.action is Action(action)
    assert message.ins == (INS,)
    assert message.type_code == "11502-2"
    assert message.header.version == ("2.5" if kind == "ORU" else "2.6")
    assert message.header.encoding == encoding


def test_metadata_obx_and_sender_are_read() -> None:
    """MASQUE_PS, INVISIBLE_PATIENT, INVISIBLE_REP_LEGAUX, CONNEXION_SECRETE, DESTDMP, ACK_RECEPTION and PRT SB."""
    flags = {"MASQUE_PS": True, "INVISIBLE_PATIENT": True, "INVISIBLE_REP_LEGAUX": True}
    read = parse_message(
        _message(flags={**flags, "CONNEXION_SECRETE": True, "DESTDMP": False, "ACK_RECEPTION": True})
    )
    assert read.flags.masked_from_professionals
    assert read.flags.invisible_to_patient
    assert read.flags.invisible_to_representatives
    assert read.flags.secret_connection
    assert not read.flags.for_record
    assert read.flags.reception_ack
    plain = parse_message(_message())
    assert (
        plain.flags.masked_from_professionals,
        plain.flags.invisible_to_patient,
        plain.flags.for_record,
    ) == (
        False,
        False,
        True,
    )
    assert plain.sender is not None
    assert plain.sender.national_id == SendingSystem().rpps
    assert plain.sender.organisation == "Hôpital A"
    assert plain.sender.organisation_id == SendingSystem().finess


@pytest.mark.parametrize(
    ("before", "after", "code", "rejected"),
    [
        (b"ORC|NW", b"ORC|CA", "207", True),  # ORC-1 says delete, OBX-11 says initial
        (b"||||||F\r", b"||||||X\r", "103", False),  # OBX-11 unknown
        (b"|2.5|", b"|2.3|", "203", False),  # ORU in another version
        (b"ORU^R01^ORU_R01", b"ADT^A01^ADT_A01", "200", False),
        (b"ORU^R01^ORU_R01", b"ORU^R30^ORU_R30", "201", False),
        (b"^Base64^", b"^Base64^!!", "102", False),
        (b"UNICODE UTF-8", b"EBCDIC", "203", False),
    ],
)
def test_inconsistent_or_unsupported_messages_are_refused(
    before: bytes, after: bytes, code: str, rejected: bool
) -> None:
    """Disagreeing ORC-1/OBX-11, unknown statuses, versions, types, events, base64 and charsets are refused with their code."""
    raw = _message()
    assert before in raw
    with pytest.raises(FeedMessageError) as refused:
        parse_message(raw.replace(before, after, 1))
    assert refused.value.hl7_code == code
    assert refused.value.rejected is rejected


def test_mdm_event_must_match_the_document_status() -> None:
    """An MDM^T04 (delete) whose OBX-11 says F (initial) is rejected."""
    raw = _message(kind="MDM").replace(b"MDM^T02^MDM_T02", b"MDM^T04^MDM_T02").replace(b"EVN|T02", b"EVN|T04")
    with pytest.raises(FeedMessageError, match="T04"):
        parse_message(raw)


def test_acknowledgements_name_the_message_and_the_error() -> None:
    """AA echoes MSH-10 and swaps the applications; AE and AR carry an ERR with the 0357 code; ZAM says Y."""
    message = parse_message(_message(control_id="CTRL-42"))
    ack = hl7.parse(acknowledgement(message.header, control_id="A1", now=NOW).decode().replace("\r", "\r"))
    assert str(ack.segment("MSA")[1]) == "AA"
    assert str(ack.segment("MSA")[2]) == "CTRL-42"
    assert str(ack.segment("MSH")[3]) == "CARNET"
    assert str(ack.segment("MSH")[5]) == SendingSystem().application
    assert str(ack.segment("MSH")[9]) == "ACK^R01^ACK"
    error = FeedMessageError("No record carries this INS.", application_code="902", location="PID^1^3")
    refused = hl7.parse(acknowledgement(message.header, control_id="A2", now=NOW, error=error).decode())
    assert str(refused.segment("MSA")[1]) == "AE"
    assert refused["ERR.F3.R1.C1"] == "207"
    assert refused["ERR.F5.R1.C1"] == "902"
    rejected = acknowledgement(
        read_header(b"not hl7"), control_id="A3", now=NOW, error=FeedMessageError("x", rejected=True)
    )
    assert b"MSA|AR|" in rejected
    zam = hl7.parse(
        business_ack(
            message.header, control_id="Z1", now=NOW, stored=True, document_types=["11502-2"]
        ).decode()
    )
    assert str(zam.segment("MSH")[9]) == "ZAM^Z01^ZAM_Z01"
    assert zam["OBX1.F3.R1.C1"] == "ACK_RECEPTION_DMP"
    assert zam["OBX1.F5.R1.C1"] == "Y"
    assert zam["OBX1.F4.R1.C1"] == "CTRL-42"  # the volet: OBX-4 names the message that carried the documents
    assert zam["OBX2.F3.R1.C1"] == "11502-2"


def test_acknowledgement_is_encoded_like_the_message() -> None:
    """A message in 8859/15 is answered in 8859/15 (MSH-18 says so)."""
    message = parse_message(_message(encoding="iso-8859-15"))
    ack = acknowledgement(message.header, control_id="A", now=NOW, error=FeedMessageError("Hôpital inconnu"))
    assert b"8859/15" in ack
    assert "Hôpital".encode("iso-8859-15") in ack


def _external_samples() -> list[Path]:
    folders = [
        EXTERNAL / "python-hl7-test-samples" / "messages",
        EXTERNAL / "ms-fhir-converter-hl7v2-samples" / "messages",
    ]
    return sorted(p for folder in folders if folder.is_dir() for p in folder.iterdir() if p.suffix == ".hl7")


@pytest.mark.external
def test_external_samples_end_in_an_acknowledgement_never_a_crash() -> None:
    """Every HL7 v2 sample of the corpus (ADT, ORU 2.4, batches, broken files) is refused with AE/AR, never raises otherwise."""
    samples = _external_samples()
    assert len(samples) >= 150
    codes = set()
    for path in samples:
        raw = path.read_bytes()
        with pytest.raises(FeedMessageError) as refused:
            parse_message(raw)
        ack = acknowledgement(read_header(raw), control_id="X", now=NOW, error=refused.value)
        assert ack.startswith(b"MSH|")
        codes.add(refused.value.hl7_code)
        for cut in (len(raw) // 3, len(raw) // 2):  # truncated anywhere: still an answer
            with contextlib.suppress(FeedMessageError):
                parse_message(raw[:cut])
    assert "200" in codes  # ADT and others are not taken here


def test_a_large_document_is_read_whole_beside_segments_not_read() -> None:
    """A ~150 KB CDA (one field, split off once) comes back byte for byte, its base64 split
    over spaces too; segments Carnet does not read (NTE, Z-segments) are skipped, a line that is
    no segment is still refused."""
    large = CDA.replace(b"</title>", b"</title><text>" + "é0123456789".encode() * 13_000 + b"</text>")
    raw = hl7v2_message(large, ins=INS, type_code="11502-2", type_label="CR", control_id="BIG-1", sent_at=NOW)
    with_extra = raw.replace(b"\rOBX|1|", b"\rNTE|1||Note ^ libre\rZBE|1|x\rOBX|1|", 1)
    message = parse_message(with_extra)
    assert message.cda == large
    assert message.header.control_id == "BIG-1"
    assert message.ins == (INS,)
    head, _, tail = with_extra.partition(b"^Base64^")
    data, _, rest = tail.partition(b"|")
    spaced = head + b"^Base64^" + b" ".join(data[i : i + 76] for i in range(0, len(data), 76)) + b"|" + rest
    assert parse_message(spaced).cda == large
    with pytest.raises(FeedMessageError) as refused:
        parse_message(with_extra.replace(b"\rZBE|1|x", b"\rzbe|1|x"))
    assert refused.value.hl7_code == "100"


def test_fields_after_the_last_read_and_long_runs_anywhere_change_nothing_read() -> None:
    """PID's names and addresses, OBX-12 onwards (never split) and long delimiter-free runs in
    any field (the last one at the message's very end) leave what is read as it was."""
    large = CDA.replace(b"</title>", b"</title><text>" + b"x" * 9_000 + b"</text>")
    raw = hl7v2_message(large, ins=INS, type_code="11502-2", type_label="CR", control_id="CUT-1", sent_at=NOW)
    plain = parse_message(raw)
    long_name = b"N" * 5_000
    changed = raw.replace(b"\rPID|", b"\rPID|", 1)
    pid_start = changed.index(b"\rPID|") + 1
    pid_end = changed.index(b"\r", pid_start)
    pid = changed[pid_start:pid_end].split(b"|")
    pid[5] = long_name + b"^Jeanne"  # PID-5, not read: cut
    pid += [b"", b"after^the^last", long_name]
    changed = changed[:pid_start] + b"|".join(pid) + changed[pid_end:]
    changed = changed.replace(b"||||||F", b"||||||F|" + b"Z" * 3_000 + b"|more^fields", 1)
    changed = changed.rstrip(b"\r\n\x1c") + b"\rOBX|99|ST|NOTE^Note^L||" + b"Y" * 4_000
    message = parse_message(changed)
    assert message.cda == large
    assert message.ins == plain.ins == (INS,)
    assert message.header == plain.header
    assert message.flags == plain.flags
    assert message.sender == plain.sender


@pytest.mark.parametrize(
    "text",
    [
        # escapes of every delimiter, highlighting and line breaks; repetitions; a subcomponent
        "MSH|^~\\&|APP\\T\\1|FAC|R|R|20261206||ORU^R01^ORU_R01|C\\F\\1|P|2.5\r"
        "PID|||A\\S\\1^^^AUTH&1.2.3&ISO^INS~B2^^^X&4.5&ISO^PI~~C3||N\\H\\am\\N\\e\r"
        "OBX|1|ED|11502-2^CR^LN||^TEXT^XML^Base64^QUJD|||||| F \rOBX|2|CE|MASQUE_PS^M^MetaDMPMSS||Y^^x\r"
        "PRT||UC||SB^Send by|81^MARTIN^Claire^^^^^^ASIP&1.2.250.1.71.4.2.1&ISO|||H\\.br\\A^^^^^S&9&ISO^F^^^75",
        # other delimiters declared by MSH-1 and MSH-2, and an escape of each
        "MSH#:*/%#APP#FAC#R#R#20261206##MDM:T02:MDM_T02#C1#P#2.6\r"
        "PID###X/F/Y:::A%1.2%ISO:INS*Z:::B%3%ISO:PI##N\r"
        "TXA#1#CR####################ID/S/1#PARENT",
        # fewer encoding characters than four: the standard ones stand in
        "MSH|^~|APP|FAC|R|R|20261206||ORU^R01|C1|P|2.5\rORC|NW\\S\\X",
    ],
)
def test_values_read_as_python_hl7_reads_them(text: str) -> None:
    """Every position of a field read (repetition, component, subcomponent) holds what python-hl7's
    own parse and ``extract_field`` give, unescaped once and stripped."""
    ours = _parse(text)
    library = hl7.parse(text)
    checked, seen = 0, collections.Counter[str]()
    for segment in library:
        name = str(segment[0])
        seen[name] += 1
        for field, rep, comp, sub in itertools.product(range(1, 14), range(1, 4), range(1, 11), range(1, 3)):
            if (name == "MSH" and field < 3) or field > (_READ_FIELDS[name] or 99):
                continue  # the delimiters themselves and the fields never read
            try:
                expected = str(segment.extract_field(1, field, rep, comp, sub)).strip()
            except IndexError:
                expected = ""
            assert _get(ours, name, seen[name], field, rep, comp, sub) == expected, (
                name,
                field,
                rep,
                comp,
                sub,
            )
            checked += 1
    assert checked > 500


@pytest.mark.parametrize("text", ["", "a", "|", "||", "a|b", "é|b||c|", "|é|", "abc", "é" * 3, "éa|b|c|d|e"])
@pytest.mark.parametrize("maxsplit", [-1, 0, 1, 2, 5])
def test_split_by_find_is_str_split(text: str, maxsplit: int) -> None:
    """The find-based split of a non-ASCII message gives what ``str.split`` gives, for any maxsplit."""
    assert _split(text, "|", maxsplit) == text.split("|", maxsplit)


def test_a_message_with_accents_reads_as_its_ascii_twin() -> None:
    """A message holding accented names reads its fields, document and INS as the same message in ASCII."""
    accented = _message().replace(b"DUPONT", "DUPONT-HÉLÈNE-ŒUVRE-Ĥ".encode())  # Ĥ: past Latin-1
    plain = _message().replace(b"DUPONT", b"DUPONT-HELENE-OEUVRE-H")
    plain = plain.replace("ô".encode(), b"o").replace("é".encode(), b"e")
    assert plain.isascii()
    read, twin = parse_message(accented), parse_message(plain)
    assert (read.cda, read.ins, read.action, read.type_code) == (
        twin.cda,
        twin.ins,
        twin.action,
        twin.type_code,
    )
    assert read.header.control_id == twin.header.control_id


def test_a_message_digest_leaves_msh_out_and_follows_the_rest() -> None:
    """The content digest ignores MSH (a resend's new MSH-7) and changes with any other segment."""
    first = b"MSH|^~\\&|A|B|C|D|20261207090000||ORU^R01^ORU_R01|015|P|2.5\rPID|||1\rOBX|1|ED|x||^TEXT^XML^Base64^QQ==\r"
    resent = first.replace(b"20261207090000", b"20261207091500")
    other = first.replace(b"PID|||1", b"PID|||2")
    assert content_digest(first) == content_digest(resent) == content_digest(b"\x0b" + resent + b"\x1c\r")
    assert content_digest(first) != content_digest(other)
    assert content_digest(first.replace(b"\r", b"\n")) != content_digest(b"MSH|^~\\&|A")


LEVEL3 = b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>Niveau 3</title></ClinicalDocument>'


@pytest.mark.parametrize("action", ["initial", "replace", "delete"])
def test_an_oru_carries_a_level_1_and_a_level_3_document(action: str) -> None:
    """Both document OBXs are read, in message order, each with its OBX; the metadata OBXs after them are read too."""
    message = parse_message(_message(action=action, second=LEVEL3, flags={"MASQUE_PS": True}))
    assert [(d.obx, d.cda, d.type_code) for d in message.documents] == [
        (1, CDA, "11502-2"),
        (2, LEVEL3, "11502-2"),
    ]
    assert message.action is Action(action)
    assert message.flags.masked_from_professionals


def test_documents_beyond_what_the_volet_allows_or_disagreeing_are_refused_at_their_obx() -> None:
    """A second document in an MDM, a third in an ORU: AE at that OBX; OBX-11 of the second unlike the
    first: AR at OBX^2^11; the second's base64 not XML: AE at OBX^2^5^5."""
    with pytest.raises(FeedMessageError) as mdm:
        parse_message(_message(kind="MDM", second=LEVEL3))
    assert (mdm.value.location, mdm.value.rejected) == ("OBX^2", False)
    third = _message(second=LEVEL3).replace(
        b"\rOBX|3|", b"\rOBX|3|ED|11502-2^^LN||^TEXT^XML^Base64^PGEvPg==\rOBX|3|", 1
    )
    with pytest.raises(FeedMessageError) as oru:
        parse_message(third)
    assert (oru.value.location, oru.value.rejected) == ("OBX^3", False)
    mixed = _message(second=LEVEL3).replace(b"||||||F\rOBX|3|", b"||||||C\rOBX|3|", 1)
    with pytest.raises(FeedMessageError) as status:
        parse_message(mixed)
    assert (status.value.location, status.value.rejected) == ("OBX^2^11", True)
    with pytest.raises(FeedMessageError) as text:
        parse_message(_message(second=b"une phrase, pas un CDA"))
    assert (text.value.location, text.value.hl7_code) == ("OBX^2^5^5", "102")
