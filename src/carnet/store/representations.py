"""The SQL side of the legal representatives' registry (SQLite and PostgreSQL): one row per link."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update

from carnet.services.ports import RepresentationLink
from carnet.store.connected import Connected, utc
from carnet.store.tables import representations as table


def _link(row: Any) -> RepresentationLink:
    return RepresentationLink(
        patient_id=str(row.patient_id),
        link_id=str(row.link_id),
        representative_key=str(row.representative_key),
        basis=str(row.basis),
        details=bytes(row.details),
        created_at=utc(row.created_at),
        expires_at=utc(row.expires_at) if row.expires_at is not None else None,
    )


class RepresentationSessionMixin(Connected):
    """Representation links; mixed into :class:`carnet.store.repository.SQLStoreSession`."""

    def add_representation(self, link: RepresentationLink) -> None:
        """Store one representation link."""
        self._c.execute(
            insert(table).values(
                patient_id=link.patient_id,
                link_id=link.link_id,
                representative_key=link.representative_key,
                basis=link.basis,
                details=link.details,
                created_at=link.created_at,
                expires_at=link.expires_at,
            )
        )

    def representations_of(self, patient_id: str) -> list[RepresentationLink]:
        """Return the links of one represented record, oldest first."""
        rows = self._c.execute(
            select(table).where(table.c.patient_id == patient_id).order_by(table.c.created_at)
        ).all()
        return [_link(r) for r in rows]

    def representations_by(self, representative_key: str) -> list[RepresentationLink]:
        """Return the links of one representative key, whatever the record."""
        rows = self._c.execute(select(table).where(table.c.representative_key == representative_key)).all()
        return [_link(r) for r in rows]

    def bind_representation(self, link: RepresentationLink, representative_key: str) -> bool:
        """Give a pending link its representative; True only for the transaction that did."""
        done = self._c.execute(
            update(table)
            .where(
                table.c.patient_id == link.patient_id,
                table.c.link_id == link.link_id,
                table.c.representative_key == link.representative_key,
            )
            .values(representative_key=representative_key, expires_at=None)
        )
        return bool(done.rowcount)

    def remove_representation(self, patient_id: str, link_id: str) -> bool:
        """Delete one link; True when it existed."""
        done = self._c.execute(
            delete(table).where(table.c.patient_id == patient_id, table.c.link_id == link_id)
        )
        return bool(done.rowcount)
