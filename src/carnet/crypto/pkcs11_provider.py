"""Key provider keeping key-encryption keys (KEKs) inside a PKCS#11 token (an HSM; SoftHSM2 in tests).

The token is found by its label, never by slot id (slot ids change when tokens are added or the
module restarts). Each KEK is an AES-256 secret key stored in the token, created sensitive and
non-extractable so that its value never leaves the token::

    label                 kek id
    carnet-kek-000001     pkcs11:000001
    carnet-kek-000002     pkcs11:000002    <- current: the highest number wraps new keys

Patient keys are wrapped with ``CKM_AES_KEY_WRAP`` (RFC 3394, the same algorithm as
``LocalKeyProvider``): the 32-byte patient key is imported as a temporary, extractable session
object, wrapped by the KEK inside the token, and destroyed. Unwrapping imports the blob into a
temporary session object, reads its value and destroys it. The 40-byte blob is stored beside the
KEK id in ``WrappedKey``.

One logged-in read/write session serves every call, guarded by a lock: the module is initialised
without locking callbacks (``C_Initialize(NULL)``), so it may assume one caller at a time.
Creating a KEK (:meth:`PKCS11KeyProvider.new_kek`, or the first start on an empty token) is an
administrative step: run it from one process at a time, or two processes may both create the
same label.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import TracebackType
from typing import Any, Protocol

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11.exceptions import (
    MultipleTokensReturned,
    NoSuchToken,
    PinIncorrect,
    PinInvalid,
    PinLenRange,
    PinLocked,
    PKCS11Error,
)

from carnet.crypto.aead import KEY_SIZE
from carnet.domain.errors import KeyProviderError
from carnet.domain.keys import WrappedKey

_ID_PREFIX = "pkcs11:"
_LABEL_PREFIX = "carnet-kek-"
_ID = re.compile(r"pkcs11:(\d{6,})", re.ASCII)
_LABEL = re.compile(r"carnet-kek-(\d{6,})", re.ASCII)
_KEK_BITS = 256

# Attributes of the temporary session objects holding a patient key: never stored in the token,
# extractable (so that it can be wrapped, or read back after unwrapping) and usable for nothing else.
_NO_USE: dict[Attribute, Any] = {
    Attribute.ENCRYPT: False,
    Attribute.DECRYPT: False,
    Attribute.SIGN: False,
    Attribute.VERIFY: False,
    Attribute.WRAP: False,
    Attribute.UNWRAP: False,
    Attribute.DERIVE: False,
}
_SESSION_KEY: dict[Attribute, Any] = {
    **_NO_USE,
    Attribute.TOKEN: False,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: False,
    Attribute.EXTRACTABLE: True,
}


class _KEK(Protocol):
    """What the provider needs from a KEK object of python-pkcs11 (a key with both wrap mixins)."""

    def wrap_key(
        self, key: pkcs11.Key, mechanism: Mechanism | None = None, mechanism_param: bytes | None = None
    ) -> bytes: ...

    def unwrap_key(
        self,
        object_class: ObjectClass,
        key_type: KeyType,
        key_data: bytes,
        id: bytes | None = None,
        label: str | None = None,
        mechanism: Mechanism | None = None,
        mechanism_param: bytes | None = None,
        store: bool = False,
        capabilities: MechanismFlag | None = None,
        template: dict[Attribute, Any] | None = None,
    ) -> pkcs11.Key: ...

    def get_attributes(self, keys: list[Attribute]) -> dict[Attribute, Any]: ...

    def destroy(self) -> None: ...


def _kek_id(number: int) -> str:
    return f"{_ID_PREFIX}{number:06d}"


def _label(number: int) -> str:
    return f"{_LABEL_PREFIX}{number:06d}"


def _number(kek_id: str) -> int:
    match = _ID.fullmatch(kek_id)
    if match is None or _kek_id(int(match.group(1))) != kek_id:
        raise KeyProviderError(f"Key-encryption key id {kek_id!r} is not a PKCS#11 key id.")
    return int(match.group(1))


class PKCS11KeyProvider:
    """KEKs held in a PKCS#11 token found by label; they never leave the token."""

    name = "pkcs11"

    def __init__(self, module_path: str, token_label: str, user_pin: str) -> None:
        """Open a logged-in session on the token labelled ``token_label``; create the first KEK if none.

        Raises:
            KeyProviderError: the module does not load, no single token has that label, the PIN
                is refused, or the token fails.
        """
        self._lock = threading.Lock()
        self._token_label = token_label
        self._session: pkcs11.Session | None = None
        try:
            lib = pkcs11.lib(module_path)
        except PKCS11Error:
            raise KeyProviderError(
                f"PKCS#11 module {module_path} could not be loaded; check the module path."
            ) from None
        try:
            token = lib.get_token(token_label=token_label)
        except NoSuchToken:
            raise KeyProviderError(
                f"No PKCS#11 token is labelled {token_label!r}; check the label or initialise the token."
            ) from None
        except MultipleTokensReturned:
            raise KeyProviderError(
                f"More than one PKCS#11 token is labelled {token_label!r}; give each token its own label."
            ) from None
        except PKCS11Error as exc:
            raise self._failure("be found", exc) from None
        try:
            self._session = token.open(rw=True, user_pin=user_pin)
        except (PinIncorrect, PinInvalid, PinLenRange):
            raise KeyProviderError(
                f"PKCS#11 token {token_label!r} refused the user PIN; check the configured PIN."
            ) from None
        except PinLocked:
            raise KeyProviderError(
                f"User PIN of PKCS#11 token {token_label!r} is locked; ask its security officer to reset it."
            ) from None
        except PKCS11Error as exc:
            raise self._failure("open a session", exc) from None
        try:
            if not self.kek_ids():
                self.new_kek()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> PKCS11KeyProvider:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the session (logging out of the token); later calls raise ``KeyProviderError``."""
        with self._lock:
            session, self._session = self._session, None
            if session is not None:
                # A session that fails to close is gone all the same; nothing is left to release.
                with suppress(PKCS11Error):
                    session.close()

    def _failure(self, action: str, exc: PKCS11Error) -> KeyProviderError:
        # The PKCS#11 error class names the cause (e.g. DeviceRemoved) and never holds key material.
        return KeyProviderError(
            f"PKCS#11 token {self._token_label!r} could not {action} ({type(exc).__name__}); "
            "check the token and the module's log."
        )

    @contextmanager
    def _token(self, action: str) -> Iterator[pkcs11.Session]:
        """Hold the lock and the session; turn any PKCS#11 error into ``KeyProviderError``."""
        with self._lock:
            if self._session is None:
                raise KeyProviderError("The PKCS#11 key provider is closed; open a new one.")
            try:
                yield self._session
            except PKCS11Error as exc:
                raise self._failure(action, exc) from None

    def _keks(self, session: pkcs11.Session) -> dict[int, pkcs11.Object]:
        """Return the token's KEK objects by number."""
        found: dict[int, pkcs11.Object] = {}
        for obj in session.get_objects(
            {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES}
        ):
            label = obj[Attribute.LABEL]
            match = _LABEL.fullmatch(label)
            if match is None or _label(int(match.group(1))) != label:
                continue
            number = int(match.group(1))
            if number in found:
                raise KeyProviderError(
                    f"PKCS#11 token {self._token_label!r} holds two keys labelled {_label(number)}; "
                    "remove the duplicate."
                )
            found[number] = obj
        return found

    def _kek(self, session: pkcs11.Session, number: int, kek_id: str) -> pkcs11.Object:
        """Return the KEK with this number, found by its label."""
        found = list(
            session.get_objects(
                {
                    Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.KEY_TYPE: KeyType.AES,
                    Attribute.LABEL: _label(number),
                }
            )
        )
        if not found:
            raise KeyProviderError(f"Key-encryption key {kek_id} is not in the PKCS#11 token.")
        if len(found) > 1:
            raise KeyProviderError(
                f"PKCS#11 token {self._token_label!r} holds two keys labelled {_label(number)}; "
                "remove the duplicate."
            )
        return found[0]

    def _current(self, keks: dict[int, pkcs11.Object]) -> int:
        """Return the number of the current KEK (the highest)."""
        if not keks:
            raise KeyProviderError(
                f"PKCS#11 token {self._token_label!r} holds no key-encryption key; run new_kek to create one."
            )
        return max(keks)

    def _usable(self, number: int, obj: pkcs11.Object) -> _KEK:
        """Check that a KEK found by label can wrap and cannot leave the token."""
        if not isinstance(obj, pkcs11.WrapMixin) or not isinstance(obj, pkcs11.UnwrapMixin):
            raise KeyProviderError(f"Key {_label(number)} in the token cannot wrap keys; replace it.")
        attributes = obj.get_attributes([Attribute.EXTRACTABLE, Attribute.SENSITIVE, Attribute.VALUE_LEN])
        if attributes[Attribute.EXTRACTABLE] or not attributes[Attribute.SENSITIVE]:
            raise KeyProviderError(
                f"Key {_label(number)} in the token is extractable; replace it with a non-extractable key."
            )
        if attributes[Attribute.VALUE_LEN] != KEY_SIZE:
            raise KeyProviderError(f"Key {_label(number)} in the token is not AES-256; replace it.")
        return obj

    def current_kek_id(self) -> str:
        """Return the id of the KEK that wraps new keys (the highest-numbered one in the token)."""
        with self._token("list its keys") as session:
            return _kek_id(self._current(self._keks(session)))

    def wrap(self, key: bytes) -> WrappedKey:
        """Wrap a 32-byte ``key`` under the current KEK, inside the token.

        Raises:
            KeyProviderError: the key is not 32 bytes, or the token fails.
        """
        if len(key) != KEY_SIZE:
            raise KeyProviderError(f"Only {KEY_SIZE}-byte keys can be wrapped; pass a patient key.")
        with self._token("wrap a key") as session:
            keks = self._keks(session)
            number = self._current(keks)
            kek = self._usable(number, keks[number])
            temporary = session.create_object(
                {
                    **_SESSION_KEY,
                    Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.KEY_TYPE: KeyType.AES,
                    Attribute.VALUE: key,
                }
            )
            try:
                if not isinstance(temporary, pkcs11.Key):
                    raise KeyProviderError("The PKCS#11 token did not import the key as a secret key.")
                blob = kek.wrap_key(temporary, mechanism=Mechanism.AES_KEY_WRAP)
            finally:
                temporary.destroy()
        return WrappedKey(kek_id=_kek_id(number), blob=blob)

    def unwrap(self, wrapped: WrappedKey) -> bytes:
        """Unwrap a key inside the token and return its 32 bytes.

        Raises:
            KeyProviderError: unknown or retired KEK, a blob that does not unwrap, or a token failure.
        """
        number = _number(wrapped.kek_id)
        with self._token("unwrap a key") as session:
            kek = self._usable(number, self._kek(session, number, wrapped.kek_id))
            try:
                unwrapped = kek.unwrap_key(
                    ObjectClass.SECRET_KEY,
                    KeyType.AES,
                    wrapped.blob,
                    mechanism=Mechanism.AES_KEY_WRAP,
                    store=False,
                    capabilities=MechanismFlag(0),
                    template={**_SESSION_KEY},
                )
            except PKCS11Error:
                # One opaque error whatever the token said (bad integrity check, bad length…).
                raise KeyProviderError("Wrapped key does not unwrap under its key-encryption key.") from None
            try:
                value = unwrapped[Attribute.VALUE]
            finally:
                unwrapped.destroy()
        if not isinstance(value, bytes) or len(value) != KEY_SIZE:
            raise KeyProviderError("Wrapped key does not unwrap under its key-encryption key.")
        return value

    def new_kek(self) -> str:
        """Create a non-extractable AES-256 KEK in the token, make it current and return its id."""
        with self._token("create a key") as session:
            number = max(self._keks(session), default=0) + 1
            session.generate_key(
                KeyType.AES,
                _KEK_BITS,
                label=_label(number),
                store=True,
                capabilities=MechanismFlag.WRAP | MechanismFlag.UNWRAP,
                template={
                    Attribute.PRIVATE: True,
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    # Nobody may relabel it (which would change the current KEK) or widen its use.
                    Attribute.MODIFIABLE: False,
                },
            )
        return _kek_id(number)

    def kek_ids(self) -> list[str]:
        """List every KEK the token holds, oldest first."""
        with self._token("list its keys") as session:
            return [_kek_id(number) for number in sorted(self._keks(session))]

    def retire(self, kek_id: str) -> None:
        """Destroy an old KEK in the token (after no key is wrapped under it any more).

        Retiring a KEK that is already gone does nothing, as with ``LocalKeyProvider``.

        Raises:
            KeyProviderError: ``kek_id`` is the current KEK or not a PKCS#11 id, or the token fails.
        """
        number = _number(kek_id)
        with self._token("destroy a key") as session:
            keks = self._keks(session)
            if number == max(keks, default=0):
                raise KeyProviderError("The current key-encryption key cannot be retired.")
            if number in keks:
                keks[number].destroy()
