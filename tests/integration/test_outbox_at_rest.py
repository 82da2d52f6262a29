"""The outbox keeps the kind of each notice sealed: no `break-glass` or `regulation` in clear
(issue 11, item 6), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text
from starlette.testclient import TestClient

from carnet.api.app import Services, new_id
from carnet.domain.principal import ActorKind, Principal
from carnet.services.notifications import Notice, NoticeEvent, NoticeMode, Notifier
from minting import Mint
from records import open_record

WHEN = datetime(2026, 12, 1, 14, 30, tzinfo=UTC)
PHYSICIAN = Principal(
    kind=ActorKind.PROFESSIONAL,
    subject="rpps:810001234567",
    display="Dr Jeanne Durand",
    profession="10",
    specialty="SM54",
    professional_id="810001234567",
)
#: Every word that would tell an operator what happened, in the spellings the code uses.
TELLTALES = [e.value for e in NoticeEvent] + [m.value for m in NoticeMode] + ["break_glass", "bris"]


def test_outbox_rows_hold_no_event_kind_in_clear(client: TestClient, auth: Mint, services: Services) -> None:
    """Every column of every outbox row, as stored, is free of event kinds and modes; the kinds still open."""
    patient_id, _ = open_record(
        client, auth, telecom=[{"system": "email", "value": "alice.martin@example.org"}]
    )
    notifier = Notifier(vault=services.records.vault, clock=lambda: WHEN, new_id=new_id)
    modes = {NoticeEvent.BREAK_GLASS: NoticeMode.BREAK_GLASS, NoticeEvent.REGULATION: NoticeMode.REGULATION}
    with services.store.session(write=True) as session:
        key = services.records.vault.key(session, patient_id, datetime.now(UTC))
        for event in NoticeEvent:
            notice = Notice.of(
                event, PHYSICIAN, patient_id=patient_id, at=WHEN, mode=modes.get(event, NoticeMode.NORMAL)
            )
            if event is NoticeEvent.PATIENT_MESSAGE:  # to a professional's address, not by preference
                notifier.notify_address(session, key, notice, to="dr.durand@mssante.example", language="fr")
            else:
                assert notifier.notify(session, key, notice)
    with services.store.engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM outbox WHERE patient_id = :p"), {"p": patient_id}).all()
    assert len(rows) == len(NoticeEvent)
    stored = " ".join(
        bytes(value).decode("latin-1") if isinstance(value, bytes | memoryview) else str(value)
        for row in rows
        for value in row
    ).lower()
    assert [word for word in TELLTALES if word in stored] == []
    with services.store.session() as session:
        opened = {
            notifier.open_message(session, message).notice.event
            for message in session.outbox_messages(patient_id)
        }
    assert opened == set(NoticeEvent)
