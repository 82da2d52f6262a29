"""Legal representatives (représentants légaux): who may act for which record, and why.

A parent of a minor, a guardian under a tutelle, or a relative under an habilitation familiale
acts for a record without being its holder. Each such link is a row of the registry
(``representations``, ``carnet.store.representations``), created by a **verification step**
done by someone who checked the documents (a birth certificate, the judge's decision): the
operator's ``carnet patient represent add``. The representative is then known by one of
their sign-in identities (:func:`record_key`, :func:`account_key`):

- ``record:<id>`` — they hold a record of their own here (their INS was given at the desk): any
  sign-in to that record (OpenID provider, built-in account) carries the link;
- ``oidc:<hash>`` — their account at the patients' OpenID provider, bound when they claim the
  link with the one-time **claim code** the desk handed them (:data:`CLAIM_LIFETIME`, stored as
  its SHA-256 only), so a representative without a record of their own signs in too;
- ``account:rep-<id>`` — on an instance without that provider, a built-in account of a
  representative without a record (:func:`representative_account`): the claim code typed on the
  built-in enrolment page binds the link to the account its passkey then opens.

Adding, claiming and removing a link are entries of the represented record's journal (action
``represent-add`` / ``represent-claim`` / ``represent-remove``, resource type ``Representation``),
written in the same transaction as the change: the patient sees who represents them, since
when and on what basis (``/patient/representatives``). The representative's name is sealed
with the represented record's key. What a representative then reads is decided by the policy
(rules ``representative-basis``, ``invisible-to-representatives``), never here.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from carnet.domain.errors import InvalidResource, NotFound, SignInRefused
from carnet.domain.journal import Entry
from carnet.domain.principal import Principal
from carnet.services.caller import current_caller
from carnet.services.journal import Journal
from carnet.services.ports import Cipher, RepresentationLink, Store
from carnet.services.vault import Vault

#: The legal bases of a representation: parental authority, a guardianship (tutelle) decided by
#: a judge, an habilitation familiale decided by a judge.
BASES = ("parent", "tutelle", "habilitation-familiale")
CLAIM_LIFETIME = timedelta(days=3)
_CLAIM = "code:"


def record_key(patient_id: str) -> str:
    """The representative key of a person who holds the record ``patient_id``."""
    return f"record:{patient_id}"


def account_key(subject_hash: str) -> str:
    """The representative key of a patients' OpenID provider account (``identity_links``' hash)."""
    return f"oidc:{subject_hash}"


#: The prefix of a representative's built-in account id (an account bound to no record).
REPRESENTATIVE_ACCOUNT = "rep-"


def representative_account() -> str:
    """A new built-in account id for a representative without a record (its key is ``account:<id>``)."""
    return REPRESENTATIVE_ACCOUNT + secrets.token_hex(16)


def is_person_key(subject: str) -> bool:
    """Whether a sign-in subject is itself a registry key (a provider account, a representative's account)."""
    return subject.startswith(("oidc:", f"account:{REPRESENTATIVE_ACCOUNT}"))


def _claim_key(code: str) -> str:
    folded = code.replace("-", "").replace(" ", "").upper()
    return _CLAIM + hashlib.sha256(f"carnet-represent\0{folded}".encode()).hexdigest()


def _draw_code() -> str:
    raw = "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(16))
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


@dataclass(frozen=True, slots=True, kw_only=True)
class Representative:
    """One link as the represented record's holder reads it."""

    link_id: str
    basis: str
    name: str
    since: datetime
    #: Not claimed yet (the representative has not signed in with the claim code).
    pending: bool


class Representations:
    """The registry of legal representatives (one transaction per use case)."""

    def __init__(
        self,
        *,
        store: Store,
        vault: Vault,
        cipher: Cipher,
        journal: Journal,
        clock: Callable[[], datetime],
        new_id: Callable[[], str],
    ) -> None:
        self._store = store
        self._vault = vault
        self._cipher = cipher
        self._journal = journal
        self._clock = clock
        self._new_id = new_id

    def add(
        self,
        patient_id: str,
        *,
        basis: str,
        name: str,
        by: Principal,
        representative_record: str | None = None,
    ) -> tuple[str, str | None]:
        """Register a representative of ``patient_id``; return the link id and its claim code (or None).

        With ``representative_record`` (the record the representative holds here), the link
        applies at their next sign-in; without, a one-time claim code is drawn for them.

        Raises:
            InvalidResource: an unknown basis, an empty name, or a record representing itself.
            RecordShredded: either record does not exist or was erased.
        """
        if basis not in BASES:
            raise InvalidResource(f"The legal basis {basis!r} is not one of {', '.join(BASES)}.")
        name = " ".join(name.split())[:200]
        if not name:
            raise InvalidResource("Give the representative's name.")
        if representative_record == patient_id:
            raise InvalidResource("A record's holder does not represent themself.")
        now = self._clock()
        code = None if representative_record else _draw_code()
        link_id = self._new_id()
        with self._store.session(write=True) as session:
            key = self._vault.key(session, patient_id, now)
            if representative_record:
                self._vault.key(session, representative_record, now)  # it exists and is not erased
            session.add_representation(
                RepresentationLink(
                    patient_id=patient_id,
                    link_id=link_id,
                    representative_key=record_key(representative_record)
                    if representative_record
                    else _claim_key(code or ""),
                    basis=basis,
                    details=self._cipher.seal(key, name.encode(), _bound(patient_id, link_id)),
                    created_at=now,
                    expires_at=None if representative_record else now + CLAIM_LIFETIME,
                )
            )
            entry = _entry(now, patient_id, by, "represent-add", link_id, basis)
            self._journal.append(session, [(key, entry)])
        return link_id, code

    def claim(self, code: str, representative_key: str, *, by: Principal) -> str:
        """Bind the link of a claim code to the signed-in representative; return the record represented.

        Raises:
            SignInRefused: ``represent-code`` — unknown, already claimed or expired.
        """
        now = self._clock()
        with self._store.session(write=True) as session:
            found = session.representations_by(_claim_key(code)) if code.strip() else []
            link = next((f for f in found if f.expires_at is not None and f.expires_at > now), None)
            if link is None or not session.bind_representation(link, representative_key):
                raise SignInRefused(
                    "This representation code is unknown, used or expired.", reason="represent-code"
                )
            key = self._vault.key(session, link.patient_id, now)
            entry = _entry(now, link.patient_id, by, "represent-claim", link.link_id, link.basis)
            self._journal.append(session, [(key, entry)])
        return link.patient_id

    def pending(self, code: str) -> str:
        """The record a live claim code is for, without spending it.

        Raises:
            SignInRefused: ``represent-code`` — unknown, already claimed or expired.
        """
        now = self._clock()
        with self._store.session() as session:
            found = session.representations_by(_claim_key(code)) if code.strip() else []
        link = next((f for f in found if f.expires_at is not None and f.expires_at > now), None)
        if link is None:
            raise SignInRefused(
                "This representation code is unknown, used or expired.", reason="represent-code"
            )
        return link.patient_id

    def remove(self, patient_id: str, link_id: str, *, by: Principal) -> None:
        """End one representation link (the representative keeps their session until it ends).

        Raises:
            NotFound: no such link on this record.
        """
        now = self._clock()
        with self._store.session(write=True) as session:
            links = {link.link_id: link for link in session.representations_of(patient_id)}
            if link_id not in links or not session.remove_representation(patient_id, link_id):
                raise NotFound(f"Representation/{link_id} is not known.")
            key = self._vault.key(session, patient_id, now)
            entry = _entry(now, patient_id, by, "represent-remove", link_id, links[link_id].basis)
            self._journal.append(session, [(key, entry)])

    def of_record(self, patient_id: str) -> list[Representative]:
        """The representatives of one record, oldest first (its holder's view, and the operator's)."""
        now = self._clock()
        with self._store.session() as session:
            links = session.representations_of(patient_id)
            key = self._vault.key(session, patient_id, now) if links else b""
        return [
            Representative(
                link_id=link.link_id,
                basis=link.basis,
                name=self._cipher.unseal(key, link.details, _bound(patient_id, link.link_id)).decode(),
                since=link.created_at,
                pending=link.representative_key.startswith(_CLAIM),
            )
            for link in links
        ]

    def represented_by(self, keys: Iterable[str]) -> list[str]:
        """The records that the person signing in with any of ``keys`` represents, by id."""
        found: set[str] = set()
        with self._store.session() as session:
            for key in keys:
                found.update(link.patient_id for link in session.representations_by(key))
        return sorted(found)


def _bound(patient_id: str, link_id: str) -> bytes:
    return f"representation\0{patient_id}\0{link_id}".encode()


def _entry(now: datetime, patient_id: str, by: Principal, action: str, link_id: str, basis: str) -> Entry:
    caller = current_caller()
    return Entry(
        recorded=now,
        patient_id=patient_id,
        actor_kind=by.kind.value,
        actor_id=by.subject,
        actor_display=by.display,
        action=action,
        resource_type="Representation",
        targets=(f"Representation/{link_id}",),
        reasons=(f"basis:{basis}",),
        client=caller.client if caller is not None else None,
        client_address=caller.address if caller is not None else None,
    )
