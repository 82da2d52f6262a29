"""Built-in patient accounts, for a Carnet without a patient OpenID provider (docs/portals.md).

The **identity-verification step** happens at the desk: someone who checked the patient's
identity document runs ``carnet patient enrol --ins …``, which prints a one-time enrolment code
(:data:`ENROLMENT_LIFETIME`, stored as its SHA-256 only). With it, the patient creates a passkey
(``carnet.auth.passkeys``); the code is spent in the same transaction, and ten one-time recovery
codes are drawn, shown once and stored as SHA-256 hashes. A TOTP secret (``pyotp``, RFC 6238)
can be added as a fallback; it is sealed with the record's own key, so erasing the record
erases it too. Every credential is a row of ``patient_credentials`` (``carnet.store.credentials``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

import pyotp

from carnet.domain.errors import SignInRefused
from carnet.services.ports import Cipher, PatientCredential, Store, StoreSession
from carnet.services.vault import Vault

ENROLMENT_LIFETIME = timedelta(days=3)
RECOVERY_CODES = 10
ENROLMENT, PASSKEY, RECOVERY, TOTP = "enrolment", "passkey", "recovery", "totp"
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

    def __init__(self, *, store: Store, vault: Vault, cipher: Cipher, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._vault = vault
        self._cipher = cipher
        self._clock = clock

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
            if session.find_patient_credential(PASSKEY, passkey_key(credential_id)) is not None:
                raise SignInRefused("This passkey is already registered.", reason="passkey")
            session.add_patient_credential(
                PatientCredential(
                    patient_id=patient_id,
                    credential_key=passkey_key(credential_id),
                    kind=PASSKEY,
                    secret=public_key,
                    sign_count=sign_count,
                ),
                now,
            )
            self._replace_recovery(session, patient_id, codes, now)
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
        with self._store.session(write=True) as session:
            self._replace_recovery(session, patient_id, codes, self._clock())
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
