"""A hospital system sends ORU/MDM over MLLP (real TCP) and HTTP: documents appear, are replaced and deleted.

Messages are made by ``carnet.synthetic.hl7v2`` around CDA documents of ``carnet.synthetic``;
the record is read back by its patient through the FHIR API.
"""

from __future__ import annotations

import array
import asyncio
import base64
import copy
import functools
import os
import re
import socket
import threading
import time
from datetime import UTC, datetime
from typing import Any

import hl7
import hl7.mllp
import pytest
from sqlalchemy import event
from starlette.testclient import TestClient

from carnet.api.app import Services, start_mllp
from carnet.domain.consent import FEED_SYSTEM, ConsentKind, consent_for
from carnet.domain.errors import InvalidResource
from carnet.domain.feeds import FeedKind, feed_principal
from carnet.domain.policy import AccessMode
from carnet.domain.validation import validate
from carnet.feeds import mllp
from carnet.feeds.cda import class_code_for, parse_cda
from carnet.feeds.cda_metadata import document_reference_from_cda
from carnet.synthetic import generate_population
from carnet.synthetic.hl7v2 import SendingSystem, hl7v2_message
from event_loops import run_to_end
from minting import Mint

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
VISIBILITY = "urn:oid:1.2.250.1.213.1.1.4.13"


@functools.cache
def _cda() -> bytes:
    """A generated CDA (a consultation report, class 10) naming a test INS."""
    patient = next(iter(generate_population(1, seed=21, documents_per_patient=1)))
    for entry in patient.bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Binary" and resource["contentType"] == "text/xml":
            return base64.b64decode(resource["data"])
    raise AssertionError("no CDA generated")


def _document_id(cda: bytes) -> bytes:
    """The ``<id root=… />`` element of a CDA document."""
    found = re.search(rb'<id root="([0-9.]+)" />', cda)
    assert found is not None
    return found.group(0)


def _another(cda: bytes, root: str) -> bytes:
    """Another document like ``cda``: the same content under the id ``root``."""
    return cda.replace(_document_id(cda), b'<id root="%s" />' % root.encode(), 1)


def _replacing(parent: bytes, root: str = "2.25.987654321987654321") -> bytes:
    """A new version of ``parent``: another id (``root``), and relatedDocument RPLC naming the parent."""
    parent_id = _document_id(parent)
    child = _another(parent, root)
    related = b'<relatedDocument typeCode="RPLC"><parentDocument>%s</parentDocument></relatedDocument>'
    return child.replace(b"<component>", related % parent_id + b"<component>", 1)


def _ins(raw: bytes) -> tuple[str, str]:
    ins = parse_cda(raw).ins
    assert ins is not None
    assert ins.extension is not None
    return ins.root, ins.extension


def _class(raw: bytes) -> str:
    code = parse_cda(raw).code
    assert code is not None
    return str(class_code_for(code.code, code.code_system))


def _message(cda: bytes, control_id: str, **options: Any) -> bytes:
    options.setdefault("sent_at", NOW)
    return hl7v2_message(
        cda,
        ins=_ins(cda),
        type_code="11488-4",
        type_label="CR de consultation",
        control_id=control_id,
        **options,
    )


class Hospital:
    """One patient's record and a registered HL7 v2 feed for its documents' class."""

    def __init__(
        self, client: TestClient, services: Services, auth: Mint, *, classes: frozenset[str] | None = None
    ):
        self.client, self.services = client, services
        cda = _cda()
        system, value = _ins(cda)
        headers = auth(kind="patient", identifier=f"urn:oid:{system}|{value}")
        patient = {"resourceType": "Patient", "identifier": [{"system": f"urn:oid:{system}", "value": value}]}
        opened = client.post("/fhir/Patient", json=patient, headers=headers)
        assert opened.status_code == 201, opened.text
        self.patient_id = opened.json()["id"]
        self.patient = auth(kind="patient", patient=self.patient_id)
        registered = services.feeds.add(
            "hopital-a",
            name="Hôpital A",
            kind=FeedKind.HL7V2,
            classes=classes or frozenset({_class(cda)}),
            sender=f"{SendingSystem().application}^{SendingSystem().facility}",
        )
        self.secret = registered.secret

    def documents(self) -> list[dict[str, Any]]:
        """The patient's DocumentReferences, every status."""
        found = self.client.get(f"/fhir/DocumentReference?patient={self.patient_id}", headers=self.patient)
        assert found.status_code == 200, found.text
        return [e["resource"] for e in found.json().get("entry", [])]

    def post(self, message: bytes) -> tuple[int, hl7.Message]:
        """Send one message to the HTTP endpoint; return the status and the parsed ACK."""
        answer = self.client.post(
            "/feeds/hopital-a/hl7v2",
            content=message,
            headers={"Authorization": f"Bearer {self.secret}", "Content-Type": "application/hl7-v2"},
        )
        return answer.status_code, hl7.parse(answer.content.decode("utf-8", "replace").split("\rMSH")[0])


def _exchange(services: Services, messages: list[bytes]) -> list[bytes]:
    """Start the MLLP listener on a free port, send the messages on one TCP connection, return the frames."""

    async def run() -> list[bytes]:
        server = await start_mllp(services, feed_id="hopital-a", host="127.0.0.1", port=0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await mllp.send("127.0.0.1", port, messages)
        finally:
            server.close()
            await server.wait_closed()

    return run_to_end(run())


def _msa(frame: bytes) -> tuple[str, str]:
    parsed = hl7.parse(frame.decode("utf-8", "replace"))
    return str(parsed.segment("MSA")[1]), str(parsed.segment("MSA")[2])


def test_mllp_initial_replace_delete_over_tcp(client: TestClient, services: Services, auth: Mint) -> None:
    """Over one MLLP connection: ORU initial → stored; MDM^T10 replace → old superseded; ORU delete → gone; each ACKed AA."""
    hospital = Hospital(client, services, auth)
    parent = _cda()
    child = _replacing(parent)
    frames = _exchange(
        services,
        [
            _message(parent, "M1"),
            _message(child, "M2", kind="MDM", action="replace"),
        ],
    )
    assert [_msa(f) for f in frames] == [("AA", "M1"), ("AA", "M2")]
    documents = hospital.documents()
    assert sorted(d["status"] for d in documents) == ["current", "superseded"]
    current = next(d for d in documents if d["status"] == "current")
    assert current["relatesTo"][0]["code"] == "replaces"
    assert any(a.get("identifier", {}).get("value") == "hopital-a" for a in current["author"])
    frames = _exchange(services, [_message(child, "M3", action="delete")])
    assert [_msa(f) for f in frames] == [("AA", "M3")]
    assert [d["status"] for d in hospital.documents()] == ["superseded"]


def test_independent_mllp_client_gets_its_ack(client: TestClient, services: Services, auth: Mint) -> None:
    """python-hl7's own MLLP client (another implementation of the framing) sends an ORU and reads AA."""
    Hospital(client, services, auth)

    async def run() -> str:
        server = await start_mllp(services, feed_id="hopital-a", host="127.0.0.1", port=0)
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await hl7.mllp.open_hl7_connection(
                "127.0.0.1", port, encoding="utf-8", limit=10_000_000
            )
            writer.writemessage(hl7.parse(_message(_cda(), "PY-1").decode()))
            await writer.drain()
            ack = await asyncio.wait_for(reader.readmessage(), 30)
            writer.close()
            return str(ack.segment("MSA")[1]) + "|" + str(ack.segment("MSA")[2])
        finally:
            server.close()
            await server.wait_closed()

    assert run_to_end(run()) == "AA|PY-1"


def test_worker_listeners_share_the_mllp_port(client: TestClient, services: Services, auth: Mint) -> None:
    """Two listeners on one port (as each worker of carnet serve --workers N starts, SO_REUSEPORT):
    both bind, and messages sent on several connections at once are each ACKed AA and stored once.
    Without reuse_port the second listener cannot bind."""
    hospital = Hospital(client, services, auth)
    parent_id = re.search(rb'<id root="([0-9.]+)" />', _cda())
    assert parent_id is not None
    documents = [
        _cda().replace(parent_id.group(0), b'<id root="2.25.%d" />' % (555_000 + n), 1) for n in range(6)
    ]

    async def run() -> tuple[list[list[bytes]], bool]:
        first = await start_mllp(services, feed_id="hopital-a", host="127.0.0.1", port=0, reuse_port=True)
        port = first.sockets[0].getsockname()[1]
        second = await start_mllp(services, feed_id="hopital-a", host="127.0.0.1", port=port, reuse_port=True)
        try:
            await start_mllp(services, feed_id="hopital-a", host="127.0.0.1", port=port)
            alone = True
        except OSError:
            alone = False
        try:
            sent = (mllp.send("127.0.0.1", port, [_message(cda, f"W{n}")]) for n, cda in enumerate(documents))
            return list(await asyncio.gather(*sent)), alone
        finally:
            for server in (first, second):
                server.close()
                await server.wait_closed()

    replies, alone = run_to_end(run())
    assert not alone
    assert sorted(_msa(frames[0]) for frames in replies) == [("AA", f"W{n}") for n in range(6)]
    assert len(hospital.documents()) == 6


async def _settled(*listeners: mllp.Listener, connections: int) -> tuple[int, ...]:
    """Each listener's connections once they hold ``connections`` between them (2 s at most)."""
    deadline = time.monotonic() + 2
    while sum(listener.connections for listener in listeners) < connections and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return tuple(listener.connections for listener in listeners)


async def _ack(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, message: bytes) -> bytes:
    """Send one message on an open connection and return its ACK frame."""
    writer.write(mllp.frame(message))
    await writer.drain()
    return await anext(mllp.read_frames(reader, max_bytes=1 << 20))


def test_worker_listeners_even_out_their_connections(
    client: TestClient, services: Services, auth: Mint
) -> None:
    """Two listeners of one port (two workers of carnet serve) hold eight connections four and four
    however the kernel handed them out: here every connection reaches the first (the second
    listens on another loopback address), which passes every other one to the second over the
    balance's Unix socket; each passed connection is served whole (its message ACKed AA, stored).
    Without the balance the first would hold all eight."""
    hospital = Hospital(client, services, auth)
    parent_id = re.search(rb'<id root="([0-9.]+)" />', _cda())
    assert parent_id is not None
    documents = [
        _cda().replace(parent_id.group(0), b'<id root="2.25.%d" />' % (556_000 + n), 1) for n in range(8)
    ]

    async def run() -> tuple[tuple[int, ...], int, int, list[bytes]]:
        first = await start_mllp(services, feed_id="hopital-a", host="127.0.0.1", port=0, reuse_port=True)
        port = first.sockets[0].getsockname()[1]
        second = await start_mllp(services, feed_id="hopital-a", host="127.0.0.2", port=port, reuse_port=True)
        assert first.balance is not None
        assert second.balance is not None
        opened = [await asyncio.open_connection("127.0.0.1", port) for _ in documents]
        try:
            held = await _settled(first, second, connections=len(documents))
            acks = [
                await _ack(reader, writer, _message(cda, f"E{n}"))
                for n, ((reader, writer), cda) in enumerate(zip(opened, documents, strict=True))
            ]
            return held, first.balance.handed_off, second.balance.handed_over, acks
        finally:
            for _, writer in opened:
                writer.close()
            for server in (first, second):
                server.close()
                await server.wait_closed()

    held, handed_off, handed_over, acks = run_to_end(run())
    assert held == (4, 4)
    assert handed_off == handed_over == 4
    assert [_msa(ack) for ack in acks] == [("AA", f"E{n}") for n in range(8)]
    assert len(hospital.documents()) == 8


def test_balance_strikes_a_listener_that_is_gone_and_refuses_foreign_descriptors(
    client: TestClient, services: Services, auth: Mint, caplog: pytest.LogCaptureFixture
) -> None:
    """A listener left in the balance's table by a process that died (its inbox gone) is struck
    out and the connection meant for it is served where it was accepted; a descriptor sent to a
    listener's inbox that is not a TCP connection to its port (a pipe here) is closed, never served."""
    hospital = Hospital(client, services, auth)

    async def run() -> tuple[int, bool, int, bytes]:
        listener = await start_mllp(services, feed_id="hopital-a", host="127.0.0.1", port=0, reuse_port=True)
        balance = listener.balance
        assert balance is not None
        ghost = 0x5EED
        with balance._table() as table:  # a slot whose process lives (ours) but whose inbox is gone
            free = next(index for index, slot in enumerate(table) if slot[2] == 0)
            table[free] = [os.getpid(), 0, ghost]
        port = listener.sockets[0].getsockname()[1]
        opened = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        read_end, write_end = os.pipe()
        try:
            held = (await _settled(listener, connections=2))[0]
            with balance._table() as table:
                struck = all(slot[2] != ghost for slot in table)
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
                rights = array.array("i", [read_end])
                sender.sendmsg(
                    [b"c"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)], 0, mllp._address(balance.token)
                )
            await asyncio.sleep(0.2)
            reader, writer = opened[1]
            return held, struck, balance.handed_over, await _ack(reader, writer, _message(_cda(), "G1"))
        finally:
            os.close(read_end)
            os.close(write_end)
            for _, writer in opened:
                writer.close()
            listener.close()
            await listener.wait_closed()

    with caplog.at_level("WARNING", logger="carnet.mllp"):
        held, struck, handed_over, ack = run_to_end(run())
    assert held == 2
    assert struck
    assert handed_over == 0
    assert "not a connection to this port was refused" in caplog.text
    assert _msa(ack) == ("AA", "G1")
    assert len(hospital.documents()) == 1


def test_resent_message_stores_one_document(client: TestClient, services: Services, auth: Mint) -> None:
    """The same ORU sent twice (HTTP) is ACKed AA twice and stored once."""
    hospital = Hospital(client, services, auth)
    message = _message(_cda(), "R1")
    assert hospital.post(message)[0] == 200
    status, ack = hospital.post(message)
    assert status == 200
    assert str(ack.segment("MSA")[1]) == "AA"
    assert len(hospital.documents()) == 1


def test_a_reused_msh10_names_a_new_message_when_its_content_differs(
    client: TestClient, services: Services, auth: Mint
) -> None:
    """Initial, replace and delete under one MSH-10 (as the ANS examples send them) are each applied; a resend is not."""
    hospital = Hospital(client, services, auth)
    parent = _cda()
    child = _replacing(parent)
    initial = _message(parent, "015")
    frames = _exchange(
        services,
        [
            initial,
            initial,  # sent again as it was
            _message(child, "015", kind="MDM", action="replace"),
        ],
    )
    assert [_msa(f) for f in frames] == [("AA", "015")] * 3
    assert frames[1] == frames[0]  # the resend gets the first answer again
    assert sorted(d["status"] for d in hospital.documents()) == ["current", "superseded"]
    frames = _exchange(services, [_message(child, "015", action="delete")])
    assert [_msa(f) for f in frames] == [("AA", "015")]
    assert [d["status"] for d in hospital.documents()] == ["superseded"]


def test_metadata_obx_become_labels_and_destdmp_n_stores_nothing(
    client: TestClient, services: Services, auth: Mint
) -> None:
    """MASQUE_PS=Y labels the document; DESTDMP=N is acknowledged and stores nothing; ZAM answers ACK_RECEPTION=Y."""
    hospital = Hospital(client, services, auth)
    answer = client.post(
        "/feeds/hopital-a/hl7v2",
        content=_message(_cda(), "F1", flags={"MASQUE_PS": True, "ACK_RECEPTION": True}),
        headers={"Authorization": f"Bearer {hospital.secret}", "Content-Type": "application/hl7-v2"},
    )
    assert answer.status_code == 200
    assert b"ZAM^Z01^ZAM_Z01" in answer.content
    assert b"ACK_RECEPTION_DMP" in answer.content
    (document,) = hospital.documents()
    labels = {c["code"] for label in document["securityLabel"] for c in label["coding"]}
    assert "MASQUE_PS" in labels
    other = _replacing(_cda()).replace(b"RPLC", b"XFRM")
    status, ack = hospital.post(_message(other, "F2", flags={"DESTDMP": False}))
    assert status == 200
    assert str(ack.segment("MSA")[1]) == "AA"
    assert len(hospital.documents()) == 1


def test_refusals_are_application_errors_with_their_code(
    client: TestClient, services: Services, auth: Mint
) -> None:
    """Unknown patient (902), INS not PID-3's (904), another sender (AR), a class not registered (AE), bad secret (401)."""
    hospital = Hospital(client, services, auth)
    cda = _cda()
    system, value = _ins(cda)
    stranger = cda.replace(value.encode(), b"199999999999999")
    status, ack = hospital.post(
        hl7v2_message(
            stranger,
            ins=(system, "199999999999999"),
            type_code="11488-4",
            type_label="CR",
            control_id="E1",
            sent_at=NOW,
        )
    )
    assert (status, str(ack.segment("MSA")[1]), ack["ERR.F5.R1.C1"]) == (422, "AE", "902")
    status, ack = hospital.post(
        hl7v2_message(
            cda, ins=(system, "123"), type_code="11488-4", type_label="CR", control_id="E2", sent_at=NOW
        )
    )
    assert (status, ack["ERR.F5.R1.C1"]) == (422, "904")
    other_sender = _message(cda, "E3", sender=SendingSystem(application="AUTRE"))
    status, ack = hospital.post(other_sender)
    assert (status, str(ack.segment("MSA")[1])) == (400, "AR")
    wrong = client.post(
        "/feeds/hopital-a/hl7v2",
        content=_message(cda, "E4"),
        headers={"Authorization": "Bearer nope", "Content-Type": "application/hl7-v2"},
    )
    assert wrong.status_code == 401
    assert hospital.documents() == []


def test_replacing_or_deleting_an_unknown_document_is_an_unknown_key_error(
    client: TestClient, services: Services, auth: Mint
) -> None:
    """A replacement or deletion naming a document the record does not hold: AE, ERR-2 OBX^1^5, ERR-3 204 (unknown key)."""
    hospital = Hospital(client, services, auth)
    parent = _cda()
    for message in (
        _message(_replacing(parent), "U1", kind="MDM", action="replace"),
        _message(parent, "U2", action="delete"),
    ):
        status, ack = hospital.post(message)
        assert (status, str(ack.segment("MSA")[1])) == (422, "AE"), ack
        assert (str(ack.segment("ERR")[2]), ack["ERR.F3.R1.C1"]) == ("OBX^1^5", "204")
    assert hospital.documents() == []


def test_class_not_registered_is_refused(client: TestClient, services: Services, auth: Mint) -> None:
    """A feed registered for class 60 only gets AE for a class-10 report, and the record holds nothing."""
    hospital = Hospital(client, services, auth, classes=frozenset({"60"}))
    status, ack = hospital.post(_message(_cda(), "C1"))
    assert (status, str(ack.segment("MSA")[1])) == (422, "AE")
    assert hospital.documents() == []


def test_generated_messages_are_taken(client: TestClient, services: Services, auth: Mint) -> None:
    """Messages of `carnet generate --hl7v2` (ORU and MDM in turn) for a generated patient are all ACKed AA over MLLP."""
    from carnet.synthetic.hl7v2 import messages_for

    patient = next(iter(generate_population(1, seed=21, documents_per_patient=4)))
    hospital = Hospital(
        client, services, auth, classes=frozenset({"10", "11", "31", "42", "43", "44", "45", "52", "60"})
    )
    messages = [m for _, m in messages_for(patient.bundle, sent_at=NOW, prefix="G")]
    frames = _exchange(services, messages)
    assert [_msa(f)[0] for f in frames] == ["AA"] * len(messages)
    assert len(hospital.documents()) == len(messages)


def _outbox_count(services: Services, patient_id: str) -> int:
    with services.store.session() as session:
        return len(session.outbox_messages(patient_id))


def test_the_next_document_notice_follows_a_preference_just_changed(
    client: TestClient, services: Services, auth: Mint
) -> None:
    """New-document notices turned off, then on, through the API apply to the very next feed document."""
    hospital = Hospital(client, services, auth)
    before = _outbox_count(services, hospital.patient_id)

    def choose(new_document: bool) -> None:
        chosen = {
            "resourceType": "Parameters",
            "parameter": [{"name": "new-document", "valueBoolean": new_document}],
        }
        put = client.put(
            f"/fhir/Patient/{hospital.patient_id}/$notification-preferences",
            json=chosen,
            headers=hospital.patient,
        )
        assert put.status_code == 200, put.text

    def receive(number: int) -> int:
        receipt = services.hl7v2.receive(
            "hopital-a", _message(_another(_cda(), f"2.25.4242{number}"), f"P{number}")
        )
        assert receipt.outcome == "stored", receipt.ack
        return _outbox_count(services, hospital.patient_id) - before

    assert receive(1) == 1  # notified, and the preferences it followed are now remembered
    choose(False)
    assert receive(2) == 1
    choose(True)
    assert receive(3) == 2


def _named_in_journal(client: TestClient, hospital: Hospital, reference: str) -> bool:
    found = client.get(
        f"/fhir/AuditEvent?patient={hospital.patient_id}&_count=1000", headers=hospital.patient
    )
    assert found.status_code == 200, found.text
    return reference in found.text


def test_invisible_to_patient_sends_no_notice_and_the_journal_does_not_name_it(
    client: TestClient, services: Services, auth: Mint
) -> None:
    """INVISIBLE_PATIENT: no new-document notice, no AuditEvent naming it for the patient; once lifted, the journal names it."""
    hospital = Hospital(client, services, auth)
    before = _outbox_count(services, hospital.patient_id)
    receipt = services.hl7v2.receive("hopital-a", _message(_cda(), "V1", flags={"INVISIBLE_PATIENT": True}))
    assert receipt.error is None
    hidden = receipt.document_id
    assert hidden is not None
    assert _outbox_count(services, hospital.patient_id) == before
    assert hospital.documents() == []
    assert not _named_in_journal(client, hospital, f"DocumentReference/{hidden}")
    # The DPO's view keeps the entry (who, when, how) — the entry exists, it only does not name it.
    visible = services.hl7v2.receive(
        "hopital-a", _message(_replacing(_cda()).replace(b"RPLC", b"XFRM"), "V2")
    )
    assert _outbox_count(services, hospital.patient_id) == before + 1
    assert _named_in_journal(client, hospital, f"DocumentReference/{visible.document_id}")
    # The sending professional (PRT SB, an author) lifts the label: the journal names it again.
    rpps = SendingSystem().rpps
    consent = consent_for(ConsentKind.AUTHORISATION, hospital.patient_id, rpps, now=datetime.now(UTC))
    assert client.post("/fhir/Consent", json=consent, headers=hospital.patient).status_code == 201
    author = auth(kind="professional", idnps=rpps, profession="10", specialty="SM54")
    url = f"/fhir/DocumentReference/{hidden}"
    document = client.get(url, headers=author).json()
    document["securityLabel"] = [
        label
        for label in document["securityLabel"]
        if not any(c.get("code") == "INVISIBLE_PATIENT" for c in label["coding"])
    ]
    assert client.put(url, json=document, headers=author).status_code == 200
    assert _named_in_journal(client, hospital, f"DocumentReference/{hidden}")


def test_a_burst_of_messages_shares_one_commit_each_acknowledged_once_durable(
    client: TestClient, services: Services, auth: Mint
) -> None:
    """Three messages queued while a commit is in progress share the next one (SQLite; on PostgreSQL
    each is its own transaction): a document, the same message resent (answered as the first,
    stored once) and a broken one (dead-lettered alone)."""
    hospital = Hospital(client, services, auth)
    group = services.records.gate.write_group
    started, release = threading.Event(), threading.Event()

    def hold(_session: object) -> None:
        started.set()
        assert release.wait(timeout=20)

    leader = threading.Thread(target=group.run, args=(hold,))
    leader.start()
    assert started.wait(timeout=20)
    batches, units = group.batches, group.units
    message = _message(_cda(), "BURST-1")
    sent = [message, message, b"MSH|^~\\&|not a message\rPID|1"]
    receipts: dict[int, Any] = {}

    def send(index: int) -> None:
        receipts[index] = services.hl7v2.receive("hopital-a", sent[index])

    threads = []
    for index in range(len(sent)):  # queued in this order (on PostgreSQL: taken one after the other)
        threads.append(threading.Thread(target=send, args=(index,)))
        threads[-1].start()
        deadline = time.monotonic() + 20
        while (group.pending if services.store.single_writer else len(receipts)) < index + 1:
            assert time.monotonic() < deadline, "the message never queued"
            time.sleep(0.005)
    if services.store.single_writer:
        assert receipts == {}  # nothing is acknowledged before its commit
    release.set()
    for thread in [leader, *threads]:
        thread.join(timeout=60)
    # SQLite: the held batch, then the three messages in one transaction; PostgreSQL: one each.
    assert (group.batches - batches, group.units - units) == (
        (2, 4) if services.store.single_writer else (4, 4)
    )
    assert (receipts[0].outcome, receipts[1].outcome, receipts[2].outcome) == (
        "stored",
        "duplicate",
        "refused",
    )
    assert receipts[1].ack == receipts[0].ack
    assert _msa(receipts[0].ack)[0] == "AA"
    assert [d["status"] for d in hospital.documents()] == ["current"]
    assert len(services.hl7v2.dead_letters()) == 1


def _addressed_to(services: Services, patient_id: str) -> list[str | None]:
    notifier = services.records.gate.notifier
    with services.store.session() as session:
        return [notifier.open_message(session, m).to for m in session.outbox_messages(patient_id)]


def test_a_feeds_new_document_notice_goes_to_the_patients_current_address(
    client: TestClient, services: Services, auth: Mint
) -> None:
    """The notice's address comes from the Patient the policy read in the same call, and a changed
    address is the one the next document's notice goes to (nothing kept across calls)."""
    hospital = Hospital(client, services, auth)
    url = f"/fhir/Patient/{hospital.patient_id}"

    def address(email: str) -> None:
        patient = client.get(url, headers=hospital.patient).json()
        patient["telecom"] = [{"system": "email", "value": email}]
        assert client.put(url, json=patient, headers=hospital.patient).status_code == 200

    address("avant@example.org")
    assert services.hl7v2.receive("hopital-a", _message(_cda(), "ADDR-1")).outcome == "stored"
    assert _addressed_to(services, hospital.patient_id) == ["avant@example.org"]
    address("apres@example.org")
    second = _replacing(_cda()).replace(b"RPLC", b"XFRM")
    assert services.hl7v2.receive("hopital-a", _message(second, "ADDR-2")).outcome == "stored"
    assert sorted(_addressed_to(services, hospital.patient_id)) == ["apres@example.org", "avant@example.org"]


def test_a_messages_answer_is_remembered_in_one_statement_the_last_one_winning(services: Services) -> None:
    """Remembering a message's answer is one upsert: a second answer (a declined offer) replaces the first, keeping its digest."""
    seen: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        seen.append(statement)

    engine = services.store.engine
    with services.store.session(write=True) as session:
        session.record_message("hopital-a", "M1", "pending", b"first", NOW, b"d" * 32)
    event.listen(engine, "before_cursor_execute", note)
    try:
        with services.store.session(write=True) as session:
            session.record_message("hopital-a", "M1", "declined", b"second", NOW)
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert len([s for s in seen if "feed_messages" in s]) == 1, seen
    with services.store.session() as session:
        assert session.message_ack("hopital-a", "M1") == ("declined", b"second", b"d" * 32)
        assert session.message_ack("hopital-a", "M2") is None


def test_publishing_leaves_the_document_handed_to_it_as_it_was(
    client: TestClient, services: Services, auth: Mint
) -> None:
    """A feed's replacement is stored with its Binary and its parent's id; the document handed to publish is unchanged."""
    hospital = Hospital(client, services, auth)
    first = _cda()
    assert hospital.post(_message(first, "P1"))[0] == 200
    (parent,) = hospital.documents()
    replacing = _replacing(first)
    draft = document_reference_from_cda(parse_cda(replacing), replacing, patient_id=hospital.patient_id)
    draft["author"] = [{"type": "Device", "identifier": {"system": FEED_SYSTEM, "value": "hopital-a"}}]
    draft["relatesTo"] = [{"code": "replaces", "target": {"identifier": parent["masterIdentifier"]}}]
    sent = copy.deepcopy(draft)
    feed = services.feeds.get("hopital-a")
    records = services.records.records(feed_principal(feed), mode=AccessMode.FEED)
    stored = records.publish(draft).stored.resource or {}
    assert draft == sent
    assert stored["relatesTo"][0]["target"] == {"reference": f"DocumentReference/{parent['id']}"}
    attachment = stored["content"][0]["attachment"]
    assert attachment["url"].startswith("Binary/")
    assert "data" not in attachment
    assert attachment["size"] == len(replacing)


def test_a_feeds_document_is_validated_once_and_an_invalid_one_refused(
    client: TestClient, services: Services, auth: Mint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Publishing validates the DocumentReference once (before its Binary is made), and still refuses an invalid one."""
    from carnet.services import documents, writes

    hospital = Hospital(client, services, auth)
    validated: list[str] = []

    def counting(resource: Any) -> None:
        validated.append(str(resource.get("resourceType")))
        validate(resource)

    monkeypatch.setattr(documents, "validate", counting)
    monkeypatch.setattr(writes, "validate", counting)
    cda = _cda()
    draft = document_reference_from_cda(parse_cda(cda), cda, patient_id=hospital.patient_id)
    draft["author"] = [{"type": "Device", "identifier": {"system": FEED_SYSTEM, "value": "hopital-a"}}]
    records = services.records.records(feed_principal(services.feeds.get("hopital-a")), mode=AccessMode.FEED)
    assert records.publish(draft).created
    assert validated.count("DocumentReference") == 1
    with pytest.raises(InvalidResource):
        records.publish({**draft, "date": "yesterday"})


def test_a_messages_document_is_checked_before_its_transaction(
    client: TestClient, services: Services, auth: Mint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DocumentReference built from a message is checked when the message is read, not in its write.

    Inside the transaction (SQLite's writer lock) only what it adds is validated: the feed among
    the authors, what a replacement replaces. A draft that fails the early check is checked again
    there and refused as before (``test_refusals_are_application_errors_with_their_code``).
    """
    from carnet.services import documents

    hospital = Hospital(client, services, auth)

    def inside(document: Any) -> None:
        raise AssertionError("the whole document was checked again in the write transaction")

    monkeypatch.setattr(documents, "check_publishable", inside)
    first = _cda()
    status, ack = hospital.post(_message(first, "C1"))
    assert (status, str(ack.segment("MSA")[1])) == (200, "AA")
    status, ack = hospital.post(_message(_replacing(first), "C2", kind="MDM", action="replace"))
    assert (status, str(ack.segment("MSA")[1])) == (200, "AA")
    current = [d for d in hospital.documents() if d["status"] == "current"]
    assert len(current) == 1
    assert current[0]["relatesTo"][0]["code"] == "replaces"
    assert any(a.get("identifier", {}).get("system") == FEED_SYSTEM for a in current[0]["author"])


# -- several documents in one message (an ORU's level 1 and level 3 CDA of one report) ---------------


def _level3(cda: bytes, root: str = "2.25.3333") -> bytes:
    """The same report under its own id, as the level 3 CDA beside a level 1 (here: the same body)."""
    return _another(cda, root)


def _err(ack: hl7.Message) -> tuple[str, str, str]:
    return str(ack.segment("MSA")[1]), str(ack.segment("ERR")[2]), ack["ERR.F3.R1.C1"]


def _feed_entries(client: TestClient, hospital: Hospital) -> list[str]:
    """The outcome (AuditEvent.outcome) of each journal entry of the feed's calls on the record."""
    found = client.get(
        f"/fhir/AuditEvent?patient={hospital.patient_id}&_count=1000", headers=hospital.patient
    )
    assert found.status_code == 200, found.text
    events = [e["resource"] for e in found.json().get("entry", [])]
    return [str(e.get("outcome")) for e in events if "hopital-a" in str(e.get("agent"))]


def test_an_oru_with_two_documents_over_mllp_is_stored_replaced_and_deleted_together(
    client: TestClient, services: Services, auth: Mint
) -> None:
    """ORU with a level 1 and a level 3 CDA over a real MLLP connection: both stored (AA), the resend
    (and the same documents under a new MSH-10) store nothing again; then a replacement and a
    deletion carrying both act on both."""
    hospital = Hospital(client, services, auth)
    level1, level3 = _cda(), _level3(_cda())
    initial = _message(level1, "N1", second=level3)
    frames = _exchange(services, [initial, initial, _message(level1, "N1-again", second=level3)])
    assert [_msa(f) for f in frames] == [("AA", "N1"), ("AA", "N1"), ("AA", "N1-again")]
    assert frames[1] == frames[0]  # the resend gets the first answer; under a new MSH-10, each uniqueId once
    documents = hospital.documents()
    assert [d["status"] for d in documents] == ["current", "current"]
    ids = {d["masterIdentifier"]["value"] for d in documents}
    assert len(ids) == 2
    frames = _exchange(
        services,
        [
            _message(
                _replacing(level1, "2.25.41"), "N2", action="replace", second=_replacing(level3, "2.25.43")
            )
        ],
    )
    assert [_msa(f) for f in frames] == [("AA", "N2")]
    documents = hospital.documents()
    assert sorted(d["status"] for d in documents) == ["current", "current", "superseded", "superseded"]
    replaced = {d["relatesTo"][0]["target"]["reference"] for d in documents if d["status"] == "current"}
    assert replaced == {f"DocumentReference/{d['id']}" for d in documents if d["status"] == "superseded"}
    frames = _exchange(
        services,
        [
            _message(
                _replacing(level1, "2.25.41"), "N3", action="delete", second=_replacing(level3, "2.25.43")
            )
        ],
    )
    assert [_msa(f) for f in frames] == [("AA", "N3")]
    assert [d["status"] for d in hospital.documents()] == ["superseded", "superseded"]


def test_one_bad_document_of_two_stores_nothing_and_the_ack_names_its_obx(
    client: TestClient, services: Services, auth: Mint
) -> None:
    """The second document another patient's (904), of a class the feed may not write (refused by the
    policy after the first was written), or replacing a document the record does not hold (204): AE at
    OBX^2^5, nothing of the message stored, the policy's refusal still in the journal."""
    hospital = Hospital(client, services, auth)
    level1 = _cda()
    _, value = _ins(level1)
    stranger = _level3(level1).replace(value.encode(), b"199999999999999")
    status, ack = hospital.post(_message(level1, "B1", second=stranger))
    assert (status, *_err(ack), ack["ERR.F5.R1.C1"]) == (422, "AE", "OBX^2^5", "207", "904")
    assert hospital.documents() == []
    journal = _feed_entries(client, hospital)
    other_class = _level3(level1).replace(b'code="11488-4"', b'code="18748-4"', 1)
    status, ack = hospital.post(_message(level1, "B2", second=other_class))
    assert (status, *_err(ack)) == (422, "AE", "OBX^2^5", "207")
    assert hospital.documents() == []
    # The policy's refusal of the second document is journaled; the first document's write is undone.
    assert len(_feed_entries(client, hospital)) == len(journal) + 1
    assert sorted(_feed_entries(client, hospital)) == sorted([*journal, "4"])
    assert hospital.post(_message(level1, "B3", second=_level3(level1)))[0] == 200
    before = sorted((d["id"], d["status"]) for d in hospital.documents())
    status, ack = hospital.post(
        _message(
            _replacing(level1, "2.25.51"),
            "B4",
            action="replace",
            second=_replacing(_level3(level1, "2.25.404"), "2.25.53"),
        )
    )
    assert (status, *_err(ack)) == (422, "AE", "OBX^2^5", "204")
    assert sorted((d["id"], d["status"]) for d in hospital.documents()) == before
    assert len(services.hl7v2.dead_letters()) == 3
    resent = hospital.post(_message(level1, "B2", second=other_class))
    assert (resent[0], *_err(resent[1])) == (422, "AE", "OBX^2^5", "207")  # taken afresh: refused again
    assert [d["status"] for d in hospital.documents()] == ["current", "current"]


def test_metadata_apply_to_both_documents_and_one_zam_answers_the_message(
    client: TestClient, services: Services, auth: Mint
) -> None:
    """MASQUE_PS labels both documents and one ZAM per message lists both; INVISIBLE_PATIENT sends
    no notice for either; DESTDMP=N stores neither."""
    hospital = Hospital(client, services, auth)
    receipt = services.hl7v2.receive(
        "hopital-a",
        _message(_cda(), "D1", second=_level3(_cda()), flags={"MASQUE_PS": True, "ACK_RECEPTION": True}),
    )
    assert (receipt.outcome, len(receipt.document_ids)) == ("stored", 2)
    assert receipt.business is not None
    zam = hl7.parse(receipt.business.decode())
    assert [str(s[3][0][0]) for s in zam.segments("OBX")] == ["ACK_RECEPTION_DMP", "11488-4", "11488-4"]
    assert (zam["OBX1.F4.R1.C1"], zam["OBX1.F5.R1.C1"]) == ("D1", "Y")
    documents = hospital.documents()
    assert sorted(d["id"] for d in documents) == sorted(receipt.document_ids)
    for document in documents:
        assert "MASQUE_PS" in {c["code"] for label in document["securityLabel"] for c in label["coding"]}
    before = _outbox_count(services, hospital.patient_id)
    hidden = services.hl7v2.receive(
        "hopital-a",
        _message(
            _another(_cda(), "2.25.71"),
            "D2",
            second=_level3(_cda(), "2.25.73"),
            flags={"INVISIBLE_PATIENT": True},
        ),
    )
    assert (hidden.outcome, len(hidden.document_ids)) == ("stored", 2)
    assert _outbox_count(services, hospital.patient_id) == before
    assert len(hospital.documents()) == 2
    skipped = services.hl7v2.receive(
        "hopital-a",
        _message(
            _another(_cda(), "2.25.61"), "D3", second=_level3(_cda(), "2.25.63"), flags={"DESTDMP": False}
        ),
    )
    assert (skipped.outcome, skipped.document_ids, _msa(skipped.ack)[0]) == ("not-for-record", (), "AA")
    assert len(hospital.documents()) == 2


def test_a_two_document_message_gives_the_patient_one_new_document_notice(
    client: TestClient, services: Services, auth: Mint
) -> None:
    """The level 1 and level 3 CDA of one report are one piece of news: one notice, two documents."""
    hospital = Hospital(client, services, auth)
    before = _outbox_count(services, hospital.patient_id)
    receipt = services.hl7v2.receive("hopital-a", _message(_cda(), "N1", second=_level3(_cda())))
    assert (receipt.outcome, len(receipt.document_ids)) == ("stored", 2)
    assert _outbox_count(services, hospital.patient_id) == before + 1
    single = services.hl7v2.receive("hopital-a", _message(_another(_cda(), "2.25.81"), "N2"))
    assert (single.outcome, len(single.document_ids)) == ("stored", 1)
    assert _outbox_count(services, hospital.patient_id) == before + 2
