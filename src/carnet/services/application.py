"""The application as its adapters see it: the one public object the portals and the API use.

The composition root (``carnet.api.app.build_services``) wires the store, the key provider and
the services into one object; the adapters (the portals of ``carnet.web``, the FHIR routes of
``carnet.api``) reach the use cases through it and never import each other's internals
(import-linter contracts in ``pyproject.toml``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol

from carnet.services.apps import AppService
from carnet.services.feed_inbox import FeedInbox
from carnet.services.feed_intake import HL7v2Intake
from carnet.services.feed_registry import FeedRegistry
from carnet.services.identity_links import IdentityLinks
from carnet.services.journal import Journal
from carnet.services.keys import KeyService
from carnet.services.notifications import NotificationStore
from carnet.services.patient_accounts import PatientAccounts
from carnet.services.portal_sessions import PortalSessions
from carnet.services.ports import KeyProvider, Store
from carnet.services.records import RecordService
from carnet.services.representations import Representations
from carnet.services.research_studies import StudyRegistry
from carnet.services.sign_ins import SignInJournal
from carnet.settings import Settings

__all__ = ["Application", "ApplicationStore"]


class ApplicationStore(Store, Protocol):
    """The store as the application holds it: records, journal and the notifications' outbox."""

    def session(
        self, *, write: bool = False, committed: Callable[[], None] | None = None
    ) -> AbstractContextManager[NotificationStore]:
        """Open one transaction, committed when the block exits without error (``Store.session``)."""
        ...


class Application(Protocol):
    """Everything wired once per process, as the adapters use it (read-only)."""

    @property
    def settings(self) -> Settings:
        """The settings the process started with."""

    @property
    def store(self) -> ApplicationStore:
        """The store (a port: SQLite or PostgreSQL behind it)."""

    @property
    def keys(self) -> KeyProvider:
        """The key provider wrapping the record keys."""

    @property
    def records(self) -> RecordService:
        """Every read and write of records, for one principal at a time, and the use cases' access."""

    @property
    def key_service(self) -> KeyService:
        """Key rotation and shredding (administrators)."""

    @property
    def journal(self) -> Journal:
        """The access journal: entries, tree heads, checkpoints."""

    @property
    def portal_sessions(self) -> PortalSessions:
        """The portal sessions, kept server-side behind an opaque cookie."""

    @property
    def feeds(self) -> FeedRegistry:
        """The registry of feeds (systems that write into records)."""

    @property
    def sign_ins(self) -> SignInJournal:
        """The journal of sign-ins, accepted and refused."""

    @property
    def representations(self) -> Representations:
        """The registry of legal representatives (who acts for which record)."""

    @property
    def identity_links(self) -> IdentityLinks:
        """The links between patients' provider accounts and their records."""

    @property
    def patient_accounts(self) -> PatientAccounts:
        """Built-in patient accounts: enrolment codes, passkeys, recovery codes, TOTP."""

    @property
    def studies(self) -> StudyRegistry:
        """The registry of research studies."""

    @property
    def hl7v2(self) -> HL7v2Intake:
        """HL7 v2 messages of the feeds, taken into the records (MLLP and HTTP)."""

    @property
    def apps(self) -> AppService:
        """The apps connected by SMART on FHIR: registry, tokens, the patient's grants."""

    @property
    def feed_inbox(self) -> FeedInbox:
        """The patients' feed choices and the documents waiting for their decision."""
