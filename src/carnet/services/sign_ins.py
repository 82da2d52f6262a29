"""Sign-ins in the access journal: each one, accepted or refused, is an entry of the directory's log.

A sign-in names no record yet, so its entry is sealed with the key of the reserved
``_directory`` record (``carnet.services.vault``) and read in the DPO's view of the journal;
``action`` is ``login``, ``resource_type`` ``Session``, ``decision`` ``permit`` or ``deny``,
``reasons`` the check that refused it (``oidc:nonce``, ``oidc:acr``…, see
``carnet.domain.errors.SignInRefused``) or how it was accepted (``oidc:<issuer>``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from carnet.domain.journal import Entry
from carnet.services.caller import current_caller
from carnet.services.journal import Journal
from carnet.services.ports import Store
from carnet.services.vault import DIRECTORY, Vault


class SignInJournal:
    """Journal sign-in attempts (one transaction each)."""

    def __init__(
        self, *, store: Store, vault: Vault, journal: Journal, clock: Callable[[], datetime]
    ) -> None:
        self._store = store
        self._vault = vault
        self._journal = journal
        self._clock = clock

    def record(
        self,
        *,
        actor_kind: str,
        actor_id: str,
        accepted: bool,
        reason: str,
        actor_display: str | None = None,
        actor_profession: str | None = None,
        actor_structure: str | None = None,
        actor_structure_name: str | None = None,
        outcome: str = "ok",
    ) -> None:
        """Append one sign-in entry (``actor_id`` is ``unknown`` when the identity did not verify).

        ``actor_structure`` is the structure a professional chose to act for at sign-in.
        """
        caller = current_caller()
        now = self._clock()
        entry = Entry(
            recorded=now,
            patient_id=DIRECTORY,
            actor_kind=actor_kind,
            actor_id=actor_id,
            actor_display=actor_display,
            actor_profession=actor_profession,
            actor_structure=actor_structure,
            actor_structure_name=actor_structure_name,
            action="login",
            resource_type="Session",
            decision="permit" if accepted else "deny",
            outcome=outcome,
            reasons=(reason,),
            client=caller.client if caller is not None else None,
            client_address=caller.address if caller is not None else None,
        )
        with self._store.session(write=True) as session:
            key = self._vault.key(session, DIRECTORY, now)
            self._journal.append(session, [(key, entry)])

    def recent(self, limit: int = 100) -> list[Entry]:
        """The latest sign-in entries, newest first (the DPO's view; the tests read them)."""
        now = self._clock()
        with self._store.session() as session:
            key = self._vault.key(session, DIRECTORY, now)
            rows = session.journal_of(DIRECTORY, limit=limit)
            opened = [self._journal.open(key, row).entry for row in rows]
        return [entry for entry in opened if entry.action == "login"]
