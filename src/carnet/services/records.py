"""The record service: every read and write of FHIR resources, for one principal.

:class:`RecordService` holds the shared adapters and builds, for each principal, a
:class:`Records`: the gate (:mod:`carnet.services.record_gate`: policy and journal), the core reads and writes
(:mod:`carnet.services.record_core`), documents (:mod:`carnet.services.documents`), the access
journal's view (:mod:`carnet.services.journal_view`) and Bundles (:mod:`carnet.services.bundles`).
Routes never touch storage; they call this.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime

from carnet.domain.policy import (
    AccessMode,
    Profile,
)
from carnet.domain.principal import ActorKind, Principal
from carnet.services.bundles import BundleAccess
from carnet.services.documents import DocumentAccess
from carnet.services.journal import Journal
from carnet.services.journal_view import JournalView
from carnet.services.notifications import Notifier
from carnet.services.ports import Store
from carnet.services.record_types import (
    EntryRequest,
    EntryResponse,
    SearchResult,
    Stored,
    WriteResult,
    instant,
    parse_etag,
)
from carnet.services.vault import Vault

Clock = Callable[[], datetime]
NewId = Callable[[], str]

__all__ = [
    "EntryRequest",
    "EntryResponse",
    "RecordService",
    "Records",
    "SearchResult",
    "Stored",
    "WriteResult",
    "instant",
    "parse_etag",
]


class RecordService:
    """Builds the per-principal record access; holds the shared adapters."""

    def __init__(
        self,
        *,
        store: Store,
        vault: Vault,
        profile: Profile,
        clock: Clock,
        new_id: NewId,
        journal: Journal,
        notifier: Notifier | None = None,
    ) -> None:
        self.store = store
        self.vault = vault
        self.profile = profile
        self.clock = clock
        self.new_id = new_id
        self.journal = journal
        self.notifier = notifier or Notifier(vault=vault, clock=clock, new_id=new_id)

    def resolve(self, principal: Principal) -> Principal:
        """Attach the record a patient holds, found by the identifier in their token."""
        if principal.kind is not ActorKind.PATIENT or principal.patient_id or principal.identifier is None:
            return principal
        with self.store.session() as session:
            ident = principal.identifier
            found = session.find_identities(
                self.vault.identity_hash(session, "sc", ident.system, ident.value, now=self.clock())
            )
        return dataclasses.replace(principal, patient_id=found[0]) if found else principal

    def records(
        self,
        principal: Principal,
        *,
        mode: AccessMode = AccessMode.NORMAL,
        justification: str | None = None,
        confirmed_by: str | None = None,
    ) -> Records:
        """Return the record access of one principal, in one access mode."""
        return Records(self, principal, mode=mode, justification=justification, confirmed_by=confirmed_by)


class Records(JournalView, BundleAccess, DocumentAccess):
    """Everything one principal may do with records; each call is one transaction."""
