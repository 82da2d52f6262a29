"""The study registry: an administrator registers a study, the DPO approves it (DESIGN §8).

Each study gets its own 256-bit key, created by the cipher and kept like a record key under the
reserved id ``_study-<id>`` (wrapped by the key provider's KEK with an erasure share, re-wrapped
by ``carnet keys rotate``); it keys the study's pseudonyms and date shifts and never leaves
Carnet. Withdrawing a study destroys its key: its pseudonyms can never be computed again.
Who may register and approve is the policy's rule ``study-registry``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import cast

from carnet.domain.errors import AccessDenied, NotFound
from carnet.domain.policy import NO_GRANTS, AccessRequest, Action, Profile, Target, decide
from carnet.domain.principal import Principal
from carnet.research.study import Study, StudyStatus, parse_study
from carnet.services.ports import Store, StoreSession
from carnet.services.research_ports import ResearchSession, StoredStudy
from carnet.services.vault import Vault

Clock = Callable[[], datetime]


def study_key_id(study_id: str) -> str:
    """The reserved record id under which a study's key is kept."""
    return f"_study-{study_id}"


def research(session: StoreSession) -> ResearchSession:
    """The research tables of a store transaction (the SQL session implements both interfaces)."""
    return cast(ResearchSession, session)


class StudyRegistry:
    """The registered studies of this server."""

    def __init__(self, *, store: Store, vault: Vault, profile: Profile, clock: Clock) -> None:
        self._store = store
        self._vault = vault
        self._profile = profile
        self._clock = clock

    def _check(self, actor: Principal, action: Action) -> None:
        request = AccessRequest(
            actor=actor, action=action, target=Target(patient_id=None, resource_type="ResearchStudy")
        )
        decision = decide(request, NO_GRANTS, self._profile, self._clock())
        if not decision.allowed:
            raise AccessDenied(
                "Administrators register studies and the DPO approves them.", reasons=decision.reasons
            )

    def register(self, actor: Principal, study_id: str, registration: object) -> Study:
        """Register a study (an administrator) and create its key.

        Raises:
            AccessDenied: not an administrator. InvalidRequest: a bad registration. Conflict: the id is taken.
        """
        self._check(actor, Action.STUDY_REGISTER)
        study = parse_study(registration, study_id=study_id, registered_by=actor.subject)
        now = self._clock()
        with self._store.session(write=True) as session:
            research(session).add_study(StoredStudy(study=study, created_at=now))
            self._vault.create_key(session, study_key_id(study_id), now)
        return study

    def approve(self, actor: Principal, study_id: str) -> Study:
        """Approve a registered study (the DPO).

        Raises:
            AccessDenied: not the DPO. NotFound: no such study. InvalidRequest: not waiting for approval.
        """
        self._check(actor, Action.STUDY_APPROVE)
        with self._store.session(write=True) as session:
            study = self._get(session, study_id).approved(actor.subject)
            research(session).update_study(study)
        return study

    def withdraw(self, actor: Principal, study_id: str) -> Study:
        """Withdraw a study (the DPO) and destroy its key: nothing more is exported for it.

        Raises:
            AccessDenied: not the DPO. NotFound: no such study.
        """
        self._check(actor, Action.STUDY_APPROVE)
        with self._store.session(write=True) as session:
            study = replace(self._get(session, study_id), status=StudyStatus.WITHDRAWN)
            research(session).update_study(study)
            stored = session.get_key(study_key_id(study_id))
            if stored is not None and stored.wrapped is not None and stored.wrapped.share_id is not None:
                self._vault.shares.destroy(stored.wrapped.share_id)
            session.shred_key(study_key_id(study_id), self._clock())
        return study

    def get(self, study_id: str) -> Study:
        """Return a registered study.

        Raises:
            NotFound: no such study.
        """
        with self._store.session() as session:
            return self._get(session, study_id)

    def list(self) -> list[Study]:
        """Return every registered study, by id."""
        with self._store.session() as session:
            return [stored.study for stored in research(session).studies()]

    @staticmethod
    def _get(session: StoreSession, study_id: str) -> Study:
        stored = research(session).study(study_id)
        if stored is None:
            raise NotFound(f"ResearchStudy/{study_id[:64]} is not registered.")
        return stored.study
