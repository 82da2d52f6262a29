"""The SQL side of record keys: wrapped keys, their erasure share ids, rotation and shredding."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from carnet.domain.errors import Conflict
from carnet.domain.keys import WrappedKey
from carnet.services.ports import StoredKey
from carnet.store.connected import Connected, first_plain
from carnet.store.tables import identities, patient_keys, search_tokens

KEY_COLUMNS = (
    patient_keys.c.patient_id,
    patient_keys.c.kek_id,
    patient_keys.c.wrapped_key,
    patient_keys.c.share_id,
    patient_keys.c.status,
)
_GET_KEY = select(*KEY_COLUMNS).where(patient_keys.c.patient_id == bindparam("p"))
_LIVE = patient_keys.c.wrapped_key.is_not(None)


def stored_key(row: Sequence[Any]) -> StoredKey:
    """A key row (the columns of ``KEY_COLUMNS``) as a ``StoredKey``."""
    wrapped = None if row[2] is None else WrappedKey(kek_id=row[1], blob=row[2], share_id=row[3])
    return StoredKey(patient_id=row[0], wrapped=wrapped, status=row[4])


class KeySessionMixin(Connected):
    """Record keys; mixed into :class:`carnet.store.repository.SQLStoreSession`."""

    def get_key(self, patient_id: str) -> StoredKey | None:
        """Return the patient's stored key row (read with the resource a read located, if it was)."""
        known = self._key_rows.get(patient_id)
        if known is not None:
            return known
        row = first_plain(self._c, _GET_KEY, {"p": patient_id})
        return None if row is None else stored_key(row)

    def put_key(self, patient_id: str, wrapped: WrappedKey, now: datetime) -> None:
        """Store a new patient's wrapped key.

        Raises:
            Conflict: the record already has a key.
        """
        self._key_rows.clear()
        try:
            self._c.execute(
                insert(patient_keys).values(
                    patient_id=patient_id,
                    kek_id=wrapped.kek_id,
                    wrapped_key=wrapped.blob,
                    share_id=wrapped.share_id,
                    status="open",
                    created_at=now,
                )
            )
        except IntegrityError:
            raise Conflict(f"Record {patient_id} already has a key.") from None

    def rewrap_key(self, patient_id: str, old: WrappedKey, wrapped: WrappedKey) -> bool:
        """Replace a wrapped key (and its share id) if it is still ``old``; tell whether it was."""
        self._key_rows.clear()
        result = self._c.execute(
            update(patient_keys)
            .where(
                patient_keys.c.patient_id == patient_id,
                patient_keys.c.kek_id == old.kek_id,
                patient_keys.c.wrapped_key == old.blob,
            )
            .values(kek_id=wrapped.kek_id, wrapped_key=wrapped.blob, share_id=wrapped.share_id)
        )
        return result.rowcount == 1

    def keys_not_under(self, kek_id: str, limit: int, *, or_without_share: bool = False) -> list[StoredKey]:
        """Return up to ``limit`` live keys wrapped under another KEK (or, if asked, with no share)."""
        condition = patient_keys.c.kek_id != kek_id
        if or_without_share:
            condition = or_(condition, patient_keys.c.share_id.is_(None))
        rows = self._c.execute(
            select(*KEY_COLUMNS).where(condition, _LIVE).order_by(patient_keys.c.patient_id).limit(limit)
        ).all()
        return [stored_key(row) for row in rows]

    def live_keys(self, after: str, limit: int) -> list[StoredKey]:
        """Return up to ``limit`` live keys of records whose id sorts after ``after``."""
        rows = self._c.execute(
            select(*KEY_COLUMNS)
            .where(_LIVE, patient_keys.c.patient_id > after)
            .order_by(patient_keys.c.patient_id)
            .limit(limit)
        ).all()
        return [stored_key(row) for row in rows]

    def count_keys(self) -> int:
        """Count live patient keys."""
        counted = self._c.execute(select(func.count()).select_from(patient_keys).where(_LIVE)).scalar_one()
        return int(counted)

    def shred_key(self, patient_id: str, now: datetime) -> None:
        """Destroy the wrapped key and the search indexes of a patient."""
        self._key_rows.clear()
        self._c.execute(
            update(patient_keys)
            .where(patient_keys.c.patient_id == patient_id)
            .values(wrapped_key=None, share_id=None, status="shredded", shredded_at=now)
        )
        self._c.execute(delete(search_tokens).where(search_tokens.c.patient_id == patient_id))
        self._c.execute(delete(identities).where(identities.c.patient_id == patient_id))
