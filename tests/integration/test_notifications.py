"""Notifications end to end: the outbox, a real SMTP server in-process, the preferences API."""

from __future__ import annotations

import base64
import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from starlette.testclient import TestClient

from carnet.api.app import Services, new_id
from carnet.domain.policy import AccessMode
from carnet.domain.principal import ActorKind, Principal
from carnet.notify.worker import DeliveryWorker
from carnet.services.notifications import (
    LEASE,
    Notice,
    NoticeEvent,
    NoticeMode,
    Notifier,
    OutboxMessage,
    OutboxStatus,
    Preferences,
)
from carnet.settings import Settings
from carnet.testing import FixedClock
from minting import Mint
from smtp_sink import Mailbox, free_port

INS = "urn:oid:1.2.250.1.213.1.4.10"
CLASS = "urn:oid:1.2.250.1.213.1.1.4.1"
IDNPS = "810001234567"
EMAIL = "alice.martin@example.org"
SENDER = "carnet@carnet.example.fr"
BASE_URL = "https://carnet.example.fr/fhir"
#: 1 December 2026, 14:30 UTC: 15 h 30 in Paris (winter time, UTC+1).
WINTER = datetime(2026, 12, 1, 14, 30, tzinfo=UTC)
#: 14 July 2026, 08:05 UTC: 10:05 in Paris (summer time, UTC+2).
SUMMER = datetime(2026, 7, 14, 8, 5, tzinfo=UTC)
#: What a clinical document of the record holds; no message may ever contain it.
CLINICAL_TITLE = "Zorglub hepatic biopsy report"
CLINICAL_CODE = "ZGL-4711"
CLINICAL_TEXT = "adenocarcinome Zorglub stade IV"


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    """A running SMTP server on a free port."""
    box = Mailbox(free_port())
    box.start()
    yield box
    box.stop()


def smtp_settings(settings: Settings, port: int) -> Settings:
    """The test settings, delivering to the SMTP server on ``port``."""
    return dataclasses.replace(
        settings, smtp_host="127.0.0.1", smtp_port=port, smtp_from=SENDER, base_url=BASE_URL
    )


def notifier_of(services: Services, enqueued_at: datetime = WINTER) -> Notifier:
    """The notifier, wired as the composition roots wire it, enqueueing at ``enqueued_at``."""
    return Notifier(vault=services.records.vault, clock=FixedClock(enqueued_at), new_id=new_id)


def worker_of(services: Services, settings: Settings, port: int) -> DeliveryWorker:
    """A delivery worker sending to the SMTP server on ``port``."""
    return DeliveryWorker(
        store=services.store, notifier=notifier_of(services), settings=smtp_settings(settings, port)
    )


def open_record(
    client: TestClient, auth: Mint, *, email: str | None = EMAIL, nir: str = "2840312345678"
) -> str:
    """Create a patient's record (with an e-mail address in Patient.telecom); return its id."""
    patient: dict[str, Any] = {"resourceType": "Patient", "identifier": [{"system": INS, "value": nir}]}
    if email:
        patient["telecom"] = [{"system": "phone", "value": "0612345678"}, {"system": "email", "value": email}]
    response = client.post(
        "/fhir/Patient", json=patient, headers=auth(kind="patient", identifier=f"{INS}|{nir}")
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def add_clinical_document(client: TestClient, auth: Mint, patient_id: str) -> None:
    """Add a document with a distinctive title, code and content to the record."""
    body = {
        "resourceType": "DocumentReference",
        "status": "current",
        "type": {"coding": [{"system": "urn:carnet:test", "code": CLINICAL_CODE, "display": CLINICAL_TITLE}]},
        "category": [{"coding": [{"system": CLASS, "code": "10"}]}],
        "subject": {"reference": f"Patient/{patient_id}"},
        "description": CLINICAL_TITLE,
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "title": CLINICAL_TITLE,
                    "data": base64.b64encode(CLINICAL_TEXT.encode()).decode(),
                }
            }
        ],
    }
    response = client.post(
        "/fhir/DocumentReference", json=body, headers=auth(kind="patient", patient=patient_id)
    )
    assert response.status_code == 201, response.text


def physician(**overrides: Any) -> Principal:
    """A general practitioner, as a verified token describes them."""
    fields: dict[str, Any] = {
        "kind": ActorKind.PROFESSIONAL,
        "subject": f"rpps:{IDNPS}",
        "display": "Dr Jeanne Durand",
        "profession": "10",
        "specialty": "SM54",
        "professional_id": IDNPS,
    }
    return Principal(**(fields | overrides))


def notice(
    patient_id: str,
    event: NoticeEvent = NoticeEvent.BREAK_GLASS,
    *,
    at: datetime = WINTER,
    mode: AccessMode = AccessMode.BREAK_GLASS,
    actor: Principal | None = None,
) -> Notice:
    """The notice of an event on a record, caused by the physician by default."""
    return Notice.of(event, actor or physician(), patient_id=patient_id, at=at, mode=mode)


def enqueue(services: Services, item: Notice, enqueued_at: datetime = WINTER) -> bool:
    """Enqueue a notice in a write transaction, as a use case does with its event."""
    with services.store.session(write=True) as session:
        key = services.records.vault.key(session, item.patient_id, datetime.now(UTC))
        return notifier_of(services, enqueued_at).notify(session, key, item)


def choose(services: Services, patient_id: str, prefs: Preferences) -> None:
    """Store a record's preferences directly."""
    with services.store.session(write=True) as session:
        key = services.records.vault.key(session, patient_id, datetime.now(UTC))
        notifier_of(services).set_preferences(session, key, patient_id, prefs)


def outbox(services: Services, patient_id: str) -> list[OutboxMessage]:
    """A record's outbox messages."""
    with services.store.session() as session:
        return session.outbox_messages(patient_id)


def text_of(message: EmailMessage) -> str:
    """The plain-text body of a message."""
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())  # type: ignore[attr-defined]


def every_text(raw: bytes) -> str:
    """The raw message and every decoded part of it, for searching."""
    parsed = message_from_bytes(raw, _class=EmailMessage, policy=policy.default)  # type: ignore[misc]
    parts = [raw.decode("utf-8", "replace"), str(parsed["Subject"])]
    parts += [str(part.get_content()) for part in parsed.walk() if not part.is_multipart()]
    return "\n".join(parts)


# -- delivery -------------------------------------------------------------------------------------


def test_notice_is_delivered_saying_who_when_and_mode(
    client: TestClient, auth: Mint, services: Services, settings: Settings, mailbox: Mailbox
) -> None:
    """A break-glass notice reaches the patient's address in French: who, when (Paris time), mode, link."""
    patient_id = open_record(client, auth)
    assert enqueue(services, notice(patient_id)) is True
    [queued] = outbox(services, patient_id)
    assert queued.status is OutboxStatus.PENDING

    delivered = worker_of(services, settings, mailbox.port).run_once(WINTER)

    assert delivered == 1
    [(mail_from, rcpt_tos, _)] = mailbox.sink.received
    assert (mail_from, rcpt_tos) == (SENDER, [EMAIL])
    [message] = mailbox.sink.messages()
    assert message["From"] == SENDER
    assert message["To"] == EMAIL
    assert message["Subject"] == "Carnet : accès en urgence (bris de glace) à votre dossier médical"
    assert message["Message-ID"] == f"<notice.{queued.message_id}@carnet.example.fr>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Content-Language"] == "fr"
    body = text_of(message)
    assert "Qui : Dr Jeanne Durand, médecin" in body
    assert f"Identifiant : {IDNPS}" in body
    assert "Quand : le 1er décembre 2026 à 15 h 30 (heure de Paris)" in body
    assert "Mode d'accès : urgence (bris de glace)" in body
    assert "justification" in body
    assert "https://carnet.example.fr/patient/access" in body
    assert message.get_body(preferencelist=("html",)) is not None
    [sent] = outbox(services, patient_id)
    assert (sent.status, sent.attempts, sent.delivered_at) == (OutboxStatus.DELIVERED, 1, WINTER)


def test_notice_in_english(
    client: TestClient, auth: Mint, services: Services, settings: Settings, mailbox: Mailbox
) -> None:
    """A patient who chose English gets the notice in English, in Paris summer time."""
    patient_id = open_record(client, auth)
    choose(services, patient_id, Preferences(language="en"))
    regulator = physician(display="Dr Paul Roux", professional_id="810007777777", samu_regulator=True)
    enqueue(
        services,
        notice(patient_id, NoticeEvent.REGULATION, at=SUMMER, mode=AccessMode.REGULATION, actor=regulator),
    )

    assert worker_of(services, settings, mailbox.port).run_once(WINTER) == 1

    [message] = mailbox.sink.messages()
    assert message["Subject"] == "Carnet: SAMU emergency-line access to your medical record"
    assert message["Content-Language"] == "en"
    body = text_of(message)
    assert "Who: Dr Paul Roux, physician" in body
    assert "Identifier: 810007777777" in body
    assert "When: 14 July 2026 at 10:05 (Paris time)" in body
    assert "Access mode: SAMU emergency line (centre 15)" in body


def test_professions_and_other_actors_in_words(
    client: TestClient, auth: Mint, services: Services, settings: Settings, mailbox: Mailbox
) -> None:
    """Professions are named in words (unknown codes generically) and a feed is named as a service."""
    patient_id = open_record(client, auth)
    nurse = physician(display="Marc Petit", profession="60", professional_id="810002222222")
    unknown = physician(display=None, profession="99", professional_id="810003333333")
    lab = Principal(
        kind=ActorKind.FEED, subject="feed:lab", feed_id="lab-bio-77", display="Laboratoire Bio 77"
    )
    enqueue(services, notice(patient_id, NoticeEvent.NEW_PROFESSIONAL, mode=AccessMode.NORMAL, actor=nurse))
    enqueue(services, notice(patient_id, NoticeEvent.NEW_PROFESSIONAL, mode=AccessMode.NORMAL, actor=unknown))
    enqueue(services, notice(patient_id, NoticeEvent.NEW_DOCUMENT, mode=AccessMode.FEED, actor=lab))

    assert worker_of(services, settings, mailbox.port).run_once(WINTER) == 3

    bodies = sorted(text_of(m) for m in mailbox.sink.messages())
    assert any("Qui : Marc Petit, infirmier ou infirmière" in b for b in bodies)
    assert any("Qui : Professionnel de santé" in b and "810003333333" in b for b in bodies)
    assert any("Qui : le service connecté « Laboratoire Bio 77 »" in b and "lab-bio-77" in b for b in bodies)
    assert all("Mode d'accès : accès habituel" in b for b in bodies)


def test_break_glass_notifies_even_with_every_preference_off(
    client: TestClient, auth: Mint, services: Services, settings: Settings, mailbox: Mailbox
) -> None:
    """Break-glass and regulation are delivered even when the patient turned every notice off."""
    patient_id = open_record(client, auth)
    choose(services, patient_id, Preferences(new_document=False, new_professional=False, masked_access=False))

    assert enqueue(services, notice(patient_id, NoticeEvent.BREAK_GLASS)) is True
    assert enqueue(services, notice(patient_id, NoticeEvent.REGULATION, mode=AccessMode.REGULATION)) is True
    assert enqueue(services, notice(patient_id, NoticeEvent.MASKED_ACCESS, mode=AccessMode.TREATING)) is False

    assert worker_of(services, settings, mailbox.port).run_once(WINTER) == 2
    assert sorted(m["Subject"] for m in mailbox.sink.messages()) == [
        "Carnet : accès du SAMU (régulation) à votre dossier médical",
        "Carnet : accès en urgence (bris de glace) à votre dossier médical",
    ]


def test_preference_off_enqueues_nothing(client: TestClient, auth: Mint, services: Services) -> None:
    """With new-document notices off, a new document enqueues nothing; the other events still do."""
    patient_id = open_record(client, auth)
    choose(services, patient_id, Preferences(new_document=False))

    assert enqueue(services, notice(patient_id, NoticeEvent.NEW_DOCUMENT, mode=AccessMode.NORMAL)) is False
    assert outbox(services, patient_id) == []
    assert enqueue(services, notice(patient_id, NoticeEvent.NEW_PROFESSIONAL, mode=AccessMode.NORMAL)) is True
    with services.store.session() as session:
        kinds = [
            notifier_of(services).open_message(session, m).notice.event for m in outbox(services, patient_id)
        ]
    assert kinds == [NoticeEvent.NEW_PROFESSIONAL]  # the kind is only in the sealed payload


def test_notice_rolls_back_with_its_event(client: TestClient, auth: Mint, services: Services) -> None:
    """A notice enqueued in a transaction that fails is not kept: it exists only with its event."""
    patient_id = open_record(client, auth)

    class EventFailed(Exception):
        """The event's own write failed after the notice was enqueued."""

    def event_that_fails() -> None:
        with services.store.session(write=True) as session:
            key = services.records.vault.key(session, patient_id, datetime.now(UTC))
            assert notifier_of(services).notify(session, key, notice(patient_id)) is True
            raise EventFailed

    with pytest.raises(EventFailed):
        event_that_fails()

    assert outbox(services, patient_id) == []


def test_email_override_and_no_address(
    client: TestClient, auth: Mint, services: Services, settings: Settings, mailbox: Mailbox
) -> None:
    """The preference's address wins over Patient.telecom; without any address the notice is kept unsent."""
    with_override = open_record(client, auth, nir="2840312345678")
    without = open_record(client, auth, email=None, nir="1750512345679")
    choose(services, with_override, Preferences(email="alice@proton.example"))
    enqueue(services, notice(with_override))
    assert enqueue(services, notice(without)) is True

    assert worker_of(services, settings, mailbox.port).run_once(WINTER) == 1

    assert [rcpt for _, rcpt, _ in mailbox.sink.received] == [["alice@proton.example"]]
    [kept] = outbox(services, without)
    assert (kept.status, kept.attempts) == (OutboxStatus.NO_ADDRESS, 0)


def test_server_down_retries_with_backoff_and_loses_nothing(
    client: TestClient, auth: Mint, services: Services, settings: Settings
) -> None:
    """While the SMTP server is down the notice waits 1, then 2 minutes…; it is delivered once it is back."""
    patient_id = open_record(client, auth)
    enqueue(services, notice(patient_id))
    box = Mailbox(free_port())  # nothing listens there yet
    worker = worker_of(services, settings, box.port)

    assert worker.run_once(WINTER) == 0
    [waiting] = outbox(services, patient_id)
    assert (waiting.status, waiting.attempts) == (OutboxStatus.PENDING, 1)
    assert waiting.next_attempt_at == WINTER + timedelta(minutes=1)
    assert (
        waiting.last_error == "A session with the mail server could not be opened (ConnectionRefusedError)."
    )

    assert worker.run_once(WINTER + timedelta(seconds=59)) == 0  # not due yet: no attempt
    assert outbox(services, patient_id)[0].attempts == 1

    second = WINTER + timedelta(minutes=1)
    assert worker.run_once(second) == 0
    [waiting] = outbox(services, patient_id)
    assert (waiting.status, waiting.attempts) == (OutboxStatus.PENDING, 2)
    assert waiting.next_attempt_at == second + timedelta(minutes=2)

    box.start()
    try:
        assert worker.run_once(second + timedelta(minutes=2)) == 1
    finally:
        box.stop()
    assert len(box.sink.received) == 1
    [sent] = outbox(services, patient_id)
    assert (sent.status, sent.attempts, sent.last_error) == (OutboxStatus.DELIVERED, 3, None)


def test_login_to_the_mail_server(
    client: TestClient, auth: Mint, services: Services, settings: Settings
) -> None:
    """The worker logs in when a user is set; a wrong password keeps the notice waiting, not lost."""
    patient_id = open_record(client, auth)
    enqueue(services, notice(patient_id))
    box = Mailbox(free_port())
    box.start(login=("carnet", "s3cret"))
    try:
        wrong = dataclasses.replace(
            smtp_settings(settings, box.port), smtp_user="carnet", smtp_password="nope"
        )
        refused = DeliveryWorker(store=services.store, notifier=notifier_of(services), settings=wrong)
        assert refused.run_once(WINTER) == 0
        [waiting] = outbox(services, patient_id)
        assert waiting.status is OutboxStatus.PENDING
        assert (
            waiting.last_error
            == "A session with the mail server could not be opened (SMTPAuthenticationError)."
        )

        right = dataclasses.replace(wrong, smtp_password="s3cret")
        worker = DeliveryWorker(store=services.store, notifier=notifier_of(services), settings=right)
        assert worker.run_once(WINTER + timedelta(minutes=1)) == 1
    finally:
        box.stop()
    assert [rcpt for _, rcpt, _ in box.sink.received] == [[EMAIL]]
    assert box.sink.authenticated == [True]


def test_refused_recipient_is_failed_and_kept(
    client: TestClient, auth: Mint, services: Services, settings: Settings, mailbox: Mailbox
) -> None:
    """A permanent refusal (5xx) of the address gives the notice up as failed, kept in the outbox."""
    patient_id = open_record(client, auth)
    mailbox.sink.refuse.add(EMAIL)
    enqueue(services, notice(patient_id))

    assert worker_of(services, settings, mailbox.port).run_once(WINTER) == 0

    [given_up] = outbox(services, patient_id)
    assert given_up.status is OutboxStatus.FAILED
    assert given_up.last_error == "The mail server refused the recipient (SMTP 550)."
    assert EMAIL not in (given_up.last_error or "")
    assert mailbox.sink.received == []


def test_crashed_worker_claim_is_delivered_after_its_lease(
    client: TestClient, auth: Mint, services: Services, settings: Settings, mailbox: Mailbox
) -> None:
    """A worker that died after claiming holds the notice only until its lease expires; the next run sends it."""
    patient_id = open_record(client, auth)
    enqueue(services, notice(patient_id))
    with services.store.session(write=True) as session:  # claimed, then the worker "crashed"
        [claimed] = session.claim_outbox(WINTER, lease=LEASE, limit=10)
    assert claimed.status is OutboxStatus.SENDING
    worker = worker_of(services, settings, mailbox.port)

    assert worker.run_once(WINTER + LEASE - timedelta(seconds=1)) == 0  # still leased: not sent twice
    assert mailbox.sink.received == []
    assert worker.run_once(WINTER + LEASE) == 1

    assert len(mailbox.sink.received) == 1
    [sent] = outbox(services, patient_id)
    assert (sent.status, sent.attempts) == (OutboxStatus.DELIVERED, 2)


def test_two_claimers_never_get_the_same_notice(client: TestClient, auth: Mint, services: Services) -> None:
    """Two workers claiming at the same moment share the due notices without overlap."""
    patient_id = open_record(client, auth)
    for _ in range(5):
        enqueue(services, notice(patient_id))
    with services.store.session(write=True) as session:
        first = session.claim_outbox(WINTER, lease=LEASE, limit=3)
    with services.store.session(write=True) as session:
        second = session.claim_outbox(WINTER, lease=LEASE, limit=10)
        counts = session.count_outbox()

    assert (len(first), len(second)) == (3, 2)
    assert {m.message_id for m in first}.isdisjoint(m.message_id for m in second)
    assert counts[OutboxStatus.SENDING] == 5


def test_shredded_record_notice_is_dropped_never_sent(
    client: TestClient, auth: Mint, services: Services, settings: Settings, mailbox: Mailbox
) -> None:
    """A notice whose record was erased before delivery is marked dropped and never sent."""
    patient_id = open_record(client, auth)
    enqueue(services, notice(patient_id))
    admin = Principal(kind=ActorKind.ADMIN, subject="cli:test")
    services.key_service.shred(admin, patient_id)

    assert worker_of(services, settings, mailbox.port).run_once(WINTER) == 0

    assert mailbox.sink.received == []
    [dropped] = outbox(services, patient_id)
    assert dropped.status is OutboxStatus.DROPPED


def test_no_smtp_host_leaves_notices_waiting(
    client: TestClient, auth: Mint, services: Services, settings: Settings
) -> None:
    """Without CARNET_SMTP_HOST the worker claims nothing: the notices wait, unchanged."""
    patient_id = open_record(client, auth)
    enqueue(services, notice(patient_id))
    worker = DeliveryWorker(store=services.store, notifier=notifier_of(services), settings=settings)

    assert worker.run_once(WINTER) == 0

    [waiting] = outbox(services, patient_id)
    assert (waiting.status, waiting.attempts) == (OutboxStatus.PENDING, 0)


def test_messages_never_contain_clinical_content(
    client: TestClient, auth: Mint, services: Services, settings: Settings, mailbox: Mailbox
) -> None:
    """No notice of any event carries the title, code or content of the record's documents."""
    patient_id = open_record(client, auth)
    add_clinical_document(client, auth, patient_id)
    for event, mode in (
        (NoticeEvent.BREAK_GLASS, AccessMode.BREAK_GLASS),
        (NoticeEvent.REGULATION, AccessMode.REGULATION),
        (NoticeEvent.NEW_DOCUMENT, AccessMode.PATIENT),
        (NoticeEvent.NEW_PROFESSIONAL, AccessMode.NORMAL),
        (NoticeEvent.MASKED_ACCESS, AccessMode.TREATING),
    ):
        for language in ("fr", "en"):
            choose(services, patient_id, Preferences(language=language))
            assert enqueue(services, notice(patient_id, event, mode=mode)) is True

    assert worker_of(services, settings, mailbox.port).run_once(WINTER) == 10

    assert len(mailbox.sink.received) == 10
    for _, _, raw in mailbox.sink.received:
        searched = every_text(raw)
        for secret in (CLINICAL_TITLE, CLINICAL_CODE, CLINICAL_TEXT, "Zorglub"):
            assert secret not in searched
    with services.store.session() as session:
        sealed = b"".join(m.sealed for m in session.outbox_messages(patient_id))
    assert EMAIL.encode() not in sealed  # the address itself is sealed in the outbox


def test_worker_thread_delivers_until_stopped(
    client: TestClient, auth: Mint, services: Services, settings: Settings, mailbox: Mailbox
) -> None:
    """The worker started in a thread (as `carnet serve` runs it) delivers due notices and stops on request."""
    patient_id = open_record(client, auth)
    enqueue(services, notice(patient_id), enqueued_at=datetime.now(UTC) - timedelta(minutes=1))
    halt = worker_of(services, settings, mailbox.port).start()
    try:
        deadline = time.monotonic() + 60  # a generous deadline for an event, not a timing
        while not mailbox.sink.received and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        halt()

    assert len(mailbox.sink.received) == 1
    assert outbox(services, patient_id)[0].status is OutboxStatus.DELIVERED


def test_notice_modes_follow_access_modes() -> None:
    """A notice states break-glass and regulation modes plainly; any other mode reads as normal."""
    modes = {
        mode: Notice.of(NoticeEvent.NEW_DOCUMENT, physician(), patient_id="p", at=WINTER, mode=mode).mode
        for mode in AccessMode
    }
    assert modes[AccessMode.BREAK_GLASS] is NoticeMode.BREAK_GLASS
    assert modes[AccessMode.REGULATION] is NoticeMode.REGULATION
    assert {m for a, m in modes.items() if a not in (AccessMode.BREAK_GLASS, AccessMode.REGULATION)} == {
        NoticeMode.NORMAL
    }


def test_worker_command_delivers_once(
    client: TestClient, auth: Mint, services: Services, settings: Settings, mailbox: Mailbox
) -> None:
    """`carnet worker --once` delivers the waiting notices and reports the outbox."""
    patient_id = open_record(client, auth)
    enqueue(services, notice(patient_id), enqueued_at=datetime.now(UTC) - timedelta(minutes=1))
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith("CARNET_") or k.startswith("CARNET_TEST_")
    }
    env = {
        **clean,
        "CARNET_DATA_DIR": str(settings.data_dir),
        "CARNET_KEY_DIR": str(settings.key_dir),
        "CARNET_DATABASE_URL": settings.database_url,
        "CARNET_SMTP_HOST": "127.0.0.1",
        "CARNET_SMTP_PORT": str(mailbox.port),
        "CARNET_SMTP_FROM": SENDER,
    }

    done = subprocess.run(
        [sys.executable, "-m", "carnet", "worker", "--once"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    assert "Delivered 1 notice(s); outbox: 1 delivered." in done.stderr
    assert [rcpt for _, rcpt, _ in mailbox.sink.received] == [[EMAIL]]


# -- the preferences API ----------------------------------------------------------------------------

PREFS = "/fhir/Patient/{}/$notification-preferences"


def parameters(**values: Any) -> dict[str, Any]:
    """A Parameters resource from preference values."""
    keys = {bool: "valueBoolean", str: "valueString"}
    entries = []
    for name, value in values.items():
        key = "valueCode" if name == "language" else keys[type(value)]
        entries.append({"name": name.replace("_", "-"), key: value})
    return {"resourceType": "Parameters", "parameter": entries}


def test_preferences_round_trip(client: TestClient, auth: Mint, services: Services) -> None:
    """The patient reads the defaults, replaces them, and reads back what they chose; it takes effect."""
    patient_id = open_record(client, auth)
    headers = auth(kind="patient", patient=patient_id)

    defaults = client.get(PREFS.format(patient_id), headers=headers)
    assert defaults.status_code == 200, defaults.text
    assert defaults.json() == parameters(
        new_document=True, new_professional=True, masked_access=True, language="fr"
    )

    chosen = parameters(new_document=False, masked_access=True, language="en", email="alice@proton.example")
    put = client.put(PREFS.format(patient_id), json=chosen, headers=headers)
    assert put.status_code == 200, put.text
    expected = parameters(
        new_document=False,
        new_professional=True,
        masked_access=True,
        language="en",
        email="alice@proton.example",
    )
    assert put.json() == expected
    assert client.get(PREFS.format(patient_id), headers=headers).json() == expected
    assert enqueue(services, notice(patient_id, NoticeEvent.NEW_DOCUMENT, mode=AccessMode.NORMAL)) is False


def test_representative_manages_preferences(client: TestClient, auth: Mint) -> None:
    """A legal representative of the patient reads and changes the preferences."""
    patient_id = open_record(client, auth)
    headers = auth(kind="representative", represents=[patient_id])

    put = client.put(PREFS.format(patient_id), json=parameters(new_professional=False), headers=headers)

    assert put.status_code == 200, put.text
    got = client.get(PREFS.format(patient_id), headers=headers).json()
    assert {"name": "new-professional", "valueBoolean": False} in got["parameter"]


def test_preferences_of_another_record_answer_as_unknown(client: TestClient, auth: Mint) -> None:
    """Another patient, a professional or a stranger representative get the 404 of an unknown record."""
    patient_id = open_record(client, auth, nir="2840312345678")
    other_id = open_record(client, auth, nir="1750512345679")
    unknown = client.get(PREFS.format("no-such-record"), headers=auth(kind="patient", patient=other_id))
    assert unknown.status_code == 404
    callers = (
        auth(kind="patient", patient=other_id),
        auth(kind="professional", idnps=IDNPS, profession="10", specialty="SM54"),
        auth(kind="representative", represents=[other_id]),
    )
    for headers in callers:
        got = client.get(PREFS.format(patient_id), headers=headers)
        put = client.put(PREFS.format(patient_id), json=parameters(new_document=False), headers=headers)
        assert (got.status_code, put.status_code) == (404, 404)
        # The same answer as for a record that does not exist, but for the id it names.
        assert got.text == put.text == unknown.text.replace("no-such-record", patient_id)
    assert client.get(PREFS.format(patient_id)).status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"resourceType": "Patient"},
        {"resourceType": "Parameters", "parameter": {"name": "language"}},
        {"resourceType": "Parameters", "parameter": [{"name": "sms", "valueBoolean": True}]},
        {"resourceType": "Parameters", "parameter": [{"name": "new-document", "valueString": "yes"}]},
        {"resourceType": "Parameters", "parameter": [{"name": "new-document", "valueBoolean": 1}]},
        {"resourceType": "Parameters", "parameter": [{"name": "language", "valueCode": "de"}]},
        {"resourceType": "Parameters", "parameter": [{"name": "email", "valueString": "not an address"}]},
        {
            "resourceType": "Parameters",
            "parameter": [{"name": "email", "valueString": "a@b.fr\r\nBcc: x@y.fr"}],
        },
        {"resourceType": "Parameters", "parameter": ["language"]},
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "new-document", "valueBoolean": True},
                {"name": "new-document", "valueBoolean": False},
            ],
        },
        {
            "resourceType": "Parameters",
            "parameter": [{"name": "language", "valueCode": "fr", "valueString": "fr"}],
        },
    ],
)
def test_bad_preferences_are_refused(client: TestClient, auth: Mint, body: dict[str, Any]) -> None:
    """Malformed Parameters are refused with a 400 OperationOutcome and change nothing."""
    patient_id = open_record(client, auth)
    headers = auth(kind="patient", patient=patient_id)

    response = client.put(PREFS.format(patient_id), json=body, headers=headers)

    assert response.status_code == 400, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    assert client.get(PREFS.format(patient_id), headers=headers).json() == parameters(
        new_document=True, new_professional=True, masked_access=True, language="fr"
    )


def test_preferences_body_that_is_not_json_is_refused(client: TestClient, auth: Mint) -> None:
    """A body that is not JSON is a 400 OperationOutcome, never a 500."""
    patient_id = open_record(client, auth)
    headers = auth(kind="patient", patient=patient_id)

    response = client.put(PREFS.format(patient_id), content=b"{not json", headers=headers)

    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


def test_a_first_access_and_a_checkpoint_are_told_apart_from_the_next_on_every_backend(
    services: Services,
) -> None:
    """The store says "first" once per professional and record, and stores a checkpoint size once (PostgreSQL too)."""
    now = datetime.now(UTC)
    with services.store.session(write=True) as session:
        assert session.add_journal_actor("record-1", b"\x01" * 32) is True
    with services.store.session(write=True) as session:
        assert session.add_journal_actor("record-1", b"\x01" * 32) is False
        assert session.add_journal_actor("record-2", b"\x01" * 32) is True
    with services.store.session(write=True) as session:
        assert session.put_checkpoint(0, 7, now, b"note") is True
    with services.store.session(write=True) as session:
        assert session.put_checkpoint(0, 7, now, b"other") is False
