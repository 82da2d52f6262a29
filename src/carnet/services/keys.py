"""Key management use cases: rotate the key-encryption key, shred one patient's record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from carnet.domain.errors import AccessDenied, InvalidRequest, NotFound
from carnet.domain.policy import NO_GRANTS, AccessRequest, Action, Profile, Target, decide
from carnet.domain.principal import Principal
from carnet.domain.resources import is_valid_id
from carnet.services.ports import KeyProvider, Store

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
        self, *, store: Store, keys: KeyProvider, profile: Profile, clock: Callable[[], datetime]
    ) -> None:
        self._store = store
        self._keys = keys
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
                rows = session.keys_not_under(kek_id, batch)
                for row in rows:
                    if row.wrapped is None:
                        continue
                    rewrapped = self._keys.wrap(self._keys.unwrap(row.wrapped))
                    if session.rewrap_key(row.patient_id, row.wrapped.kek_id, rewrapped):
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

    def shred(self, actor: Principal, patient_id: str) -> None:
        """Destroy one patient's key: nothing of that record can be opened afterwards.

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
            session.shred_key(patient_id, self._clock())
