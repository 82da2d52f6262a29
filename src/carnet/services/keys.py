"""Key management use cases: rotate the key-encryption key, shred one patient's record, and
re-apply erasures to a database restored from a backup taken before them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from carnet.domain.errors import AccessDenied, InvalidRequest, NotFound
from carnet.domain.keys import WrappedKey
from carnet.domain.policy import NO_GRANTS, AccessRequest, Action, Profile, Target, decide
from carnet.domain.principal import Principal
from carnet.domain.resources import is_valid_id
from carnet.services.ports import ErasureShares, KeyProvider, Store
from carnet.services.vault import split_and_wrap

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class RotationReport:
    """What a rotation did."""

    kek_id: str
    rewrapped: int
    resumed: bool
    retired: tuple[str, ...]


class KeyService:
    """Key operations, allowed by the policy to administrators only."""

    def __init__(
        self,
        *,
        store: Store,
        keys: KeyProvider,
        shares: ErasureShares,
        profile: Profile,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._keys = keys
        self._shares = shares
        self._profile = profile
        self._clock = clock

    def _check(self, actor: Principal, action: Action, patient_id: str | None) -> None:
        request = AccessRequest(
            actor=actor, action=action, target=Target(patient_id=patient_id, resource_type="Patient")
        )
        decision = decide(request, NO_GRANTS, self._profile, self._clock())
        if not decision.allowed:
            raise AccessDenied("Only an administrator manages keys.", reasons=decision.reasons)

    def rotate(
        self, actor: Principal, *, batch: int = 200, progress: Progress | None = None
    ) -> RotationReport:
        """Re-wrap every patient key under a new KEK, then retire the old KEKs.

        A key still wrapped whole (stored before erasure shares existed) is split with a new
        share on the way, so one rotation after upgrading makes every record's shred final.

        Resumable: if keys are still wrapped under an older KEK (an interrupted rotation), the
        rotation continues under the current KEK instead of starting another. Each batch is
        its own transaction, so a kill loses at most one uncommitted batch, never a key.

        Retirement is one rotation behind: a request that wrapped a new patient key just before
        the new KEK appeared may commit after the last batch, so the KEK that was current when
        this run started is kept (and re-wrapped away from by the next run); only KEKs older
        than it, with no key left under them, are destroyed.
        """
        self._check(actor, Action.KEYS_ROTATE, None)
        with self._store.session() as session:
            pending = session.keys_not_under(self._keys.current_kek_id(), 1)
            total = session.count_keys()
        resumed = bool(pending)
        kek_id = self._keys.current_kek_id() if resumed else self._keys.new_kek()
        done = 0
        while True:
            with self._store.session(write=True) as session:
                rows = session.keys_not_under(kek_id, batch, or_without_share=True)
                for row in rows:
                    if row.wrapped is not None and session.rewrap_key(
                        row.patient_id, row.wrapped, self._rewrap(row.wrapped)
                    ):
                        done += 1
            if progress is not None:
                progress(done, total)
            if len(rows) < batch:
                break
        held = self._keys.kek_ids()
        previous = [k for k in held if k < kek_id][-1:]
        with self._store.session() as session:
            clean = not session.keys_not_under(kek_id, 1)
        retired = tuple(k for k in held if k != kek_id and k not in previous) if clean else ()
        for old in retired:
            self._keys.retire(old)
        return RotationReport(kek_id=kek_id, rewrapped=done, resumed=resumed, retired=retired)

    def _rewrap(self, wrapped: WrappedKey) -> WrappedKey:
        """Wrap a stored key again under the current KEK, splitting it if it has no share yet."""
        if wrapped.share_id is None:
            return split_and_wrap(self._keys, self._shares, self._keys.unwrap(wrapped))
        # The blob holds ``key xor share``: it moves to the new KEK as it is, the share stays.
        return replace(self._keys.wrap(self._keys.unwrap(wrapped)), share_id=wrapped.share_id)

    def shred(self, actor: Principal, patient_id: str) -> None:
        """Destroy one patient's key: nothing of that record can be opened afterwards.

        The erasure share is destroyed first, then the wrapped key row: a crash in between
        leaves a record that no longer opens and a shred to run again, never the reverse.
        Database backups taken before keep the wrapped key but not the share: restored with
        the current key directory, the record stays erased (see :meth:`reapply_erasures`).

        Raises:
            NotFound: no such record. AccessDenied: not an administrator.
        """
        if not is_valid_id(patient_id):
            raise InvalidRequest(f"{patient_id[:70]!r} is not a patient id.")
        self._check(actor, Action.PATIENT_SHRED, patient_id)
        with self._store.session(write=True) as session:
            stored = session.get_key(patient_id)
            if stored is None:
                raise NotFound(f"Patient/{patient_id} has no record here.")
            if stored.wrapped is not None and stored.wrapped.share_id is not None:
                self._shares.destroy(stored.wrapped.share_id)
            session.shred_key(patient_id, self._clock())

    def reapply_erasures(
        self, actor: Principal, *, batch: int = 500, progress: Progress | None = None
    ) -> int:
        """Mark shredded every record whose share is gone (a database restored from a backup).

        Such a record already fails to open; this also drops its wrapped key and its search
        indexes, as the shred did, so that the restored database matches the erasures made
        since the backup. Return how many records were erased again.
        """
        self._check(actor, Action.KEYS_ROTATE, None)
        with self._store.session() as session:
            total = session.count_keys()
        erased = seen = 0
        after = ""
        while True:
            with self._store.session(write=True) as session:
                rows = session.live_keys(after, batch)
                for row in rows:
                    share_id = None if row.wrapped is None else row.wrapped.share_id
                    if share_id is not None and self._shares.get(share_id) is None:
                        session.shred_key(row.patient_id, self._clock())
                        erased += 1
            seen += len(rows)
            if progress is not None:
                progress(seen, total)
            if len(rows) < batch:
                return erased
            after = rows[-1].patient_id
