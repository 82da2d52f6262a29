"""A store made before erasure shares and the sealed outbox kind upgrades in place (migrations 0004, 0006)."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from sqlalchemy import inspect, text

from carnet.api.app import build_services
from carnet.crypto.aead import AESGCMCipher
from carnet.crypto.local_provider import LocalKeyProvider
from carnet.domain.principal import ActorKind, Principal
from carnet.settings import Settings
from carnet.store.engine import alembic_config, make_engine

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def test_store_from_revision_0003_upgrades_and_its_keys_split(settings: Settings) -> None:
    """Keys wrapped whole before 0004 still open after the upgrade; one rotation gives each a share."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.effective_database_url)
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0003")
    keys = LocalKeyProvider(settings.key_dir)
    record_key = AESGCMCipher().generate_key()
    wrapped = keys.wrap(record_key)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO patient_keys (patient_id, kek_id, wrapped_key, status, created_at) "
                "VALUES ('old-record', :k, :w, 'open', :t)"
            ),
            {"k": wrapped.kek_id, "w": wrapped.blob, "t": NOW},
        )
        connection.execute(
            text(
                "INSERT INTO outbox (patient_id, message_id, created_at, event, sealed, status, attempts, "
                "next_attempt_at) VALUES ('old-record', 'm1', :t, 'break-glass', :s, 'pending', 0, :t)"
            ),
            {"t": NOW, "s": b"\x01sealed"},
        )
    engine.dispose()

    services = build_services(settings)  # migrates to the newest revision
    try:
        columns = {c["name"] for c in inspect(services.store.engine).get_columns("outbox")}
        assert "event" not in columns
        with services.store.session() as session:
            assert [m.message_id for m in session.outbox_messages("old-record")] == ["m1"]
            assert services.records.vault.key(session, "old-record", NOW) == record_key
            stored = session.get_key("old-record")
        assert stored is not None
        assert stored.wrapped is not None
        assert stored.wrapped.share_id is None
        services.key_service.rotate(Principal(kind=ActorKind.ADMIN, subject="admin:test"))
        with services.store.session() as session:
            stored = session.get_key("old-record")
            assert services.records.vault.key(session, "old-record", NOW) == record_key
        assert stored is not None
        assert stored.wrapped is not None
        assert stored.wrapped.share_id is not None
    finally:
        services.store.engine.dispose()
