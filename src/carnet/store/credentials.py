"""The SQL side of built-in patient accounts (SQLite and PostgreSQL): one row per credential."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, select, update

from carnet.services.ports import PatientCredential
from carnet.store.connected import Connected, utc
from carnet.store.tables import patient_credentials as table


def _credential(row: object) -> PatientCredential:
    expires = getattr(row, "expires_at", None)
    return PatientCredential(
        patient_id=str(getattr(row, "patient_id", "")),
        credential_key=str(getattr(row, "credential_key", "")),
        kind=str(getattr(row, "kind", "")),
        secret=bytes(getattr(row, "secret", b"")),
        sign_count=int(getattr(row, "sign_count", 0)),
        expires_at=utc(expires) if expires is not None else None,
        created_at=utc(created) if (created := getattr(row, "created_at", None)) is not None else None,
    )


class CredentialSessionMixin(Connected):
    """Patients' credentials; mixed into :class:`carnet.store.repository.SQLStoreSession`."""

    def add_patient_credential(self, credential: PatientCredential, now: datetime) -> None:
        """Store one credential (its key is unique per record)."""
        self._c.execute(
            insert(table).values(
                patient_id=credential.patient_id,
                credential_key=credential.credential_key,
                kind=credential.kind,
                secret=credential.secret,
                sign_count=credential.sign_count,
                created_at=now,
                expires_at=credential.expires_at,
            )
        )

    def find_patient_credential(self, kind: str, credential_key: str) -> PatientCredential | None:
        """Return the credential of this kind and key, whatever its record, or None."""
        row = self._c.execute(
            select(table).where(table.c.kind == kind, table.c.credential_key == credential_key)
        ).first()
        return None if row is None else _credential(row)

    def patient_credentials(self, patient_id: str, kind: str) -> list[PatientCredential]:
        """Return a record's credentials of one kind."""
        rows = self._c.execute(
            select(table).where(table.c.patient_id == patient_id, table.c.kind == kind)
        ).all()
        return [_credential(r) for r in rows]

    def take_patient_credential(self, patient_id: str, kind: str, credential_key: str) -> bool:
        """Delete a one-time credential; True only for the one transaction that deleted it."""
        done = self._c.execute(
            delete(table).where(
                table.c.patient_id == patient_id,
                table.c.kind == kind,
                table.c.credential_key == credential_key,
            )
        )
        return bool(done.rowcount)

    def forget_patient_credentials(self, patient_id: str, kind: str) -> None:
        """Delete all of a record's credentials of one kind (new recovery codes replace the old)."""
        self._c.execute(delete(table).where(table.c.patient_id == patient_id, table.c.kind == kind))

    def count_patient_credential(self, patient_id: str, credential_key: str, sign_count: int) -> None:
        """Record a passkey's new signature counter."""
        self._c.execute(
            update(table)
            .where(table.c.patient_id == patient_id, table.c.credential_key == credential_key)
            .values(sign_count=sign_count)
        )
