"""The patient's choices as the policy reads them: authorisations, blocks, oppositions, feeds.

Built from the Consent resources of a record by :mod:`carnet.domain.consent`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType


class AuthorisationStatus(StrEnum):
    """The state of a patient's authorisation of a professional."""

    VALID = "valid"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True, kw_only=True)
class Authorisation:
    """A professional the patient authorised, possibly until a given instant (inclusive)."""

    status: AuthorisationStatus = AuthorisationStatus.VALID
    until: datetime | None = None

    def is_valid(self, now: datetime) -> bool:
        """Return True if the authorisation holds at ``now`` (an ``until`` in the past expires it)."""
        return self.status is AuthorisationStatus.VALID and (self.until is None or now <= self.until)


_NO_AUTHORISATIONS: Mapping[str, Authorisation] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class AppGrant:
    """What the patient let one app do: the SMART scopes granted, possibly until an instant (inclusive)."""

    scopes: frozenset[str]
    until: datetime | None = None
    consent_id: str | None = None

    def is_valid(self, now: datetime) -> bool:
        """Return True if the grant holds at ``now``."""
        return self.until is None or now <= self.until


_NO_APPS: Mapping[str, AppGrant] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class Grants:
    """The patient's choices, read from their Consent resources (see ``carnet.domain.consent``).

    Professionals and feeds are named by id: ``authorisations`` (idNat_PS → authorisation),
    ``blocked`` (professionals refused everything), ``treating`` (médecins traitants and those
    given the same rights), ``occupational_consent`` (médecins du travail the worker expressly
    allowed). ``refused_feeds`` and ``accepted_feeds`` hold feed ids or classCodes. ``apps``
    maps the client id of each app the patient connected to what they granted it.
    """

    authorisations: Mapping[str, Authorisation] = field(default_factory=lambda: _NO_AUTHORISATIONS)
    blocked: frozenset[str] = frozenset()
    treating: frozenset[str] = frozenset()
    opposes_break_glass: bool = False
    opposes_regulation: bool = False
    refused_feeds: frozenset[str] = frozenset()
    accepted_feeds: frozenset[str] = frozenset()
    #: Feeds (ids or classCodes) whose documents wait for the patient's decision ("ask me first").
    asked_feeds: frozenset[str] = frozenset()
    occupational_consent: frozenset[str] = frozenset()
    research_opt_out: bool = False
    research_opt_in: bool = False
    #: Studies (by id) the patient opted out of, and opted in to, one by one.
    research_opted_out: frozenset[str] = frozenset()
    research_opted_in: frozenset[str] = frozenset()
    apps: Mapping[str, AppGrant] = field(default_factory=lambda: _NO_APPS)


NO_GRANTS = Grants()
