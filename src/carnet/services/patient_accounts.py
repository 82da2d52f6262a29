"""Built-in patient accounts, for a Carnet without a patient OpenID provider (docs/portals.md).

The **identity-verification step** happens at the desk: someone who checked the patient's
identity document runs ``carnet patient enrol --ins …``, which prints a one-time enrolment code
(:data:`ENROLMENT_LIFETIME`, stored as its SHA-256 only). With it, the patient creates a passkey
(``carnet.auth.passkeys``); the code is spent in the same transaction, and ten one-time recovery
codes are drawn, shown once and stored as SHA-256 hashes. A TOTP secret (``pyotp``, RFC 6238)
can be added as a fallback; it is sealed with the record's own key, so erasing the record
erases it too. Every credential is a row of ``patient_credentials`` (``carnet.store.credentials``).

Every change to a record's sign-in means — the enrolment, a passkey added or removed, recovery
codes drawn again, TOTP set up or removed — is an entry of that record's journal (resource type
``Credential``, action :data:`ENROLLED`, :data:`PASSKEY_ADDED`…), written in the same transaction.
A record always keeps one way in besides its recovery codes: the last passkey goes only while a
TOTP app is set up, and the TOTP app only while a passkey remains.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

import pyotp

from carnet.domain.errors import Conflict, NotFound, SignInRefused
from carnet.domain.journal import Entry
from carnet.services.caller import current_caller
from carnet.services.journal import Journal
from carnet.services.ports import Cipher, PatientCredential, Store, StoreSession
from carnet.services.vault import Vault

ENROLMENT_LIFETIME = timedelta(days=3)
RECOVERY_CODES = 10
ENROLMENT, PASSKEY, RECOVERY, TOTP = "enrolment", "passkey", "recovery", "totp"
#: The record's journal entries of changes to its sign-in means (resource type ``Credential``).
ENROLLED = "credential-enrol"
PASSKEY_ADDED, PASSKEY_REMOVED = "credential-passkey-add", "credential-passkey-remove"
RECOVERY_RENEWED = "credential-recovery"
TOTP_ADDED, TOTP_REMOVED = "credential-totp-add", "credential-totp-remove"
TOTP_KEY = "totp"


def code_hash(kind: str, code: str) -> str:
    """The stored form of a one-time code (normalised: no spaces or dashes, upper case)."""
    folded = code.replace("-", "").replace(" ", "").upper()
    return hashlib.sha256(f"carnet-{kind}\0{folded}".encode()).hexdigest()


def passkey_key(credential_id: str) -> str:
    """The stored key of a passkey: a fixed-length hash of its id (ids may be long, and case matters)."""
    return "passkey:" + hashlib.sha256(f"carnet-passkey\0{credential_id}".encode()).hexdigest()


def _draw_code() -> str:
    raw = "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(16))
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


class PatientAccounts:
    """Enrolment codes, passkeys, recovery codes and TOTP of built-in patient accounts."""

    def __init__(
        self, *, store: Store, vault: Vault, cipher: Cipher, journal: Journal, clock: Callable[[], datetime]
    ) -> None:
        self._store = store
        self._vault = vault
        self._cipher = cipher
        self._journal = journal
        self._clock = clock

    def _journaled(self, session: StoreSession, patient_id: str, action: str, now: datetime) -> None:
        """Append the record's journal entry of a change to its sign-in means (same transaction)."""
        caller = current_caller()
        entry = Entry(
            recorded=now,
            patient_id=patient_id,
            actor_kind="patient",
            actor_id=f"account:{patient_id}",
            action=action,
            resource_type="Credential",
            mode="patient",
            client=caller.client if caller is not None else None,
            client_address=caller.address if caller is not None else None,
        )
        self._journal.append(session, [(self._vault.key(session, patient_id, now), entry)])

    def issue_enrolment(self, patient_id: str) -> str:
        """Draw a one-time enrolment code for a record whose holder's identity was checked."""
        code = _draw_code()
        now = self._clock()
        with self._store.session(write=True) as session:
            self._vault.key(session, patient_id, now)  # the record exists and is not erased
            session.add_patient_credential(
                PatientCredential(
                    patient_id=patient_id,
                    credential_key=code_hash(ENROLMENT, code),
                    kind=ENROLMENT,
                    secret=b"",
                    expires_at=now + ENROLMENT_LIFETIME,
                ),
                now,
            )
        return code

    def enrolment_record(self, code: str) -> str:
        """The record a live enrolment code opens (not spent yet).

        Raises:
            SignInRefused: ``enrolment-code`` — unknown, spent or expired.
        """
        with self._store.session() as session:
            found = session.find_patient_credential(ENROLMENT, code_hash(ENROLMENT, code))
        if found is None or found.expires_at is None or found.expires_at <= self._clock():
            raise SignInRefused("This enrolment code is unknown, used or expired.", reason="enrolment-code")
        return found.patient_id

    def enrol_passkey(self, code: str, credential_id: str, public_key: bytes, sign_count: int) -> list[str]:
        """Spend the enrolment code, store the passkey, and return fresh recovery codes (shown once).

        Raises:
            SignInRefused: ``enrolment-code`` (spent meanwhile), ``passkey`` (already registered).
        """
        patient_id = self.enrolment_record(code)
        now = self._clock()
        codes = [_draw_code() for _ in range(RECOVERY_CODES)]
        with self._store.session(write=True) as session:
            if not session.take_patient_credential(patient_id, ENROLMENT, code_hash(ENROLMENT, code)):
                raise SignInRefused("This enrolment code was just used.", reason="enrolment-code")
            _add_passkey(session, patient_id, credential_id, public_key, sign_count, now)
            self._replace_recovery(session, patient_id, codes, now)
            self._journaled(session, patient_id, ENROLLED, now)
        return codes

    def enrol_representative(
        self, account_id: str, credential_id: str, public_key: bytes, sign_count: int
    ) -> list[str]:
        """Store the first passkey of a representative's account (no record) and return its recovery codes.

        The account holds no record, so nothing is journaled here: the claim of its link, just
        before, is the represented record's journal entry (``represent-claim``).

        Raises:
            SignInRefused: ``passkey`` — this passkey is already registered.
        """
        now = self._clock()
        codes = [_draw_code() for _ in range(RECOVERY_CODES)]
        with self._store.session(write=True) as session:
            _add_passkey(session, account_id, credential_id, public_key, sign_count, now)
            self._replace_recovery(session, account_id, codes, now)
        return codes

    def _replace_recovery(
        self, session: StoreSession, patient_id: str, codes: list[str], now: datetime
    ) -> None:
        session.forget_patient_credentials(patient_id, RECOVERY)
        for code in codes:
            session.add_patient_credential(
                PatientCredential(
                    patient_id=patient_id, credential_key=code_hash(RECOVERY, code), kind=RECOVERY, secret=b""
                ),
                now,
            )

    def new_recovery_codes(self, patient_id: str) -> list[str]:
        """Replace a record's recovery codes with fresh ones (the old ones stop working)."""
        codes = [_draw_code() for _ in range(RECOVERY_CODES)]
        now = self._clock()
        with self._store.session(write=True) as session:
            self._replace_recovery(session, patient_id, codes, now)
            self._journaled(session, patient_id, RECOVERY_RENEWED, now)
        return codes

    def passkey(self, credential_id: str) -> PatientCredential:
        """The registered passkey of this id.

        Raises:
            SignInRefused: ``passkey`` — no such passkey.
        """
        with self._store.session() as session:
            found = (
                session.find_patient_credential(PASSKEY, passkey_key(credential_id))
                if credential_id
                else None
            )
        if found is None:
            raise SignInRefused("This passkey is not registered here.", reason="passkey")
        return found

    def passkey_used(self, credential: PatientCredential, sign_count: int) -> None:
        """Record the counter of a passkey that just signed in."""
        with self._store.session(write=True) as session:
            session.count_patient_credential(credential.patient_id, credential.credential_key, sign_count)

    def use_recovery_code(self, patient_id: str, code: str) -> None:
        """Spend one recovery code of a record.

        Raises:
            SignInRefused: ``recovery-code`` — not one of the record's unused codes.
        """
        with self._store.session(write=True) as session:
            if not session.take_patient_credential(patient_id, RECOVERY, code_hash(RECOVERY, code)):
                raise SignInRefused(
                    "This recovery code is wrong or was already used.", reason="recovery-code"
                )

    def new_totp_secret(self) -> str:
        """A fresh TOTP secret (base32), to show the patient before they confirm it."""
        return pyotp.random_base32()

    def enrol_totp(self, patient_id: str, secret: str, code: str) -> None:
        """Keep ``secret`` as the record's TOTP once the patient typed a code it gives.

        Raises:
            SignInRefused: ``totp`` — the code is not the current one.
        """
        if not pyotp.TOTP(secret).verify(code.strip(), for_time=self._clock(), valid_window=1):
            raise SignInRefused("This code is not the one your app shows now.", reason="totp")
        now = self._clock()
        with self._store.session(write=True) as session:
            key = self._vault.key(session, patient_id, now)
            sealed = self._cipher.seal(key, secret.encode(), f"totp\0{patient_id}".encode())
            session.forget_patient_credentials(patient_id, TOTP)
            session.add_patient_credential(
                PatientCredential(patient_id=patient_id, credential_key=TOTP_KEY, kind=TOTP, secret=sealed),
                now,
            )
            self._journaled(session, patient_id, TOTP_ADDED, now)

    def check_totp(self, patient_id: str, code: str) -> None:
        """Check a TOTP code of a record; a code, once accepted, is not accepted again.

        Raises:
            SignInRefused: ``totp`` — no TOTP set up, a wrong code, or a code already used.
        """
        now = self._clock()
        with self._store.session(write=True) as session:
            found = session.patient_credentials(patient_id, TOTP)
            if not found:
                raise SignInRefused("This code is not the one your app shows now.", reason="totp")
            key = self._vault.key(session, patient_id, now)
            secret = self._cipher.unseal(key, found[0].secret, f"totp\0{patient_id}".encode()).decode()
            totp = pyotp.TOTP(secret)
            step = int(now.timestamp()) // totp.interval
            matched = next(
                (
                    s
                    for s in (step - 1, step, step + 1)
                    if hmac.compare_digest(totp.at(s * totp.interval), code.strip())
                ),
                None,
            )
            if matched is None or matched <= found[0].sign_count:
                raise SignInRefused("This code is not the one your app shows now.", reason="totp")
            session.count_patient_credential(patient_id, TOTP_KEY, matched)

    # -- managing one's sign-in means (the signed-in patient) -----------------------------------

    def means(self, patient_id: str) -> tuple[list[PatientCredential], bool, int]:
        """A record's passkeys, whether TOTP is set up, and how many recovery codes are unused."""
        with self._store.session() as session:
            passkeys = session.patient_credentials(patient_id, PASSKEY)
            totp = bool(session.patient_credentials(patient_id, TOTP))
            recovery = len(session.patient_credentials(patient_id, RECOVERY))
        return sorted(passkeys, key=lambda p: p.credential_key), totp, recovery

    def add_passkey(self, patient_id: str, credential_id: str, public_key: bytes, sign_count: int) -> None:
        """Register one more passkey for a signed-in patient.

        Raises:
            SignInRefused: ``passkey`` — this passkey is already registered.
        """
        now = self._clock()
        with self._store.session(write=True) as session:
            _add_passkey(session, patient_id, credential_id, public_key, sign_count, now)
            self._journaled(session, patient_id, PASSKEY_ADDED, now)

    def remove_passkey(self, patient_id: str, credential_key: str) -> None:
        """Remove one of a record's passkeys, never its last way in.

        Raises:
            NotFound: no such passkey on this record.
            Conflict: it is the last passkey and no TOTP app is set up.
        """
        now = self._clock()
        with self._store.session(write=True) as session:
            passkeys = {p.credential_key for p in session.patient_credentials(patient_id, PASSKEY)}
            if credential_key not in passkeys:
                raise NotFound("This passkey is not one of this record's.")
            if len(passkeys) == 1 and not session.patient_credentials(patient_id, TOTP):
                raise Conflict("This is your last way to sign in: add another passkey or an app first.")
            session.take_patient_credential(patient_id, PASSKEY, credential_key)
            self._journaled(session, patient_id, PASSKEY_REMOVED, now)

    def remove_totp(self, patient_id: str) -> None:
        """Remove a record's TOTP app, never its last way in.

        Raises:
            NotFound: no TOTP app is set up.
            Conflict: no passkey remains.
        """
        now = self._clock()
        with self._store.session(write=True) as session:
            if not session.patient_credentials(patient_id, TOTP):
                raise NotFound("No authenticator app is set up.")
            if not session.patient_credentials(patient_id, PASSKEY):
                raise Conflict("This is your last way to sign in: add a passkey first.")
            session.forget_patient_credentials(patient_id, TOTP)
            self._journaled(session, patient_id, TOTP_REMOVED, now)


def _add_passkey(
    session: StoreSession, owner: str, credential_id: str, public_key: bytes, sign_count: int, now: datetime
) -> None:
    """Store one passkey for ``owner`` (a record, or a representative's account).

    Raises:
        SignInRefused: ``passkey`` — this passkey is already registered.
    """
    if session.find_patient_credential(PASSKEY, passkey_key(credential_id)) is not None:
        raise SignInRefused("This passkey is already registered.", reason="passkey")
    session.add_patient_credential(
        PatientCredential(
            patient_id=owner,
            credential_key=passkey_key(credential_id),
            kind=PASSKEY,
            secret=public_key,
            sign_count=sign_count,
        ),
        now,
    )
