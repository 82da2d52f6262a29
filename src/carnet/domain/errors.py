"""The one exception tree of Carnet.

::

    CarnetError
    ├── ConfigurationError        settings are missing or wrong; start-up stops
    ├── NotFound                  no such resource (or the caller may not know it exists)
    │   └── Gone                  the resource existed and was deleted
    │       └── RecordShredded    the patient's key was destroyed; the record is unreadable
    ├── Conflict                  version mismatch, duplicate, concurrent change
    │   └── PreconditionFailed    If-Match did not match the current version
    ├── InvalidRequest            the request itself is malformed (parameters, ids, body shape)
    │   ├── InvalidResource       the resource does not validate against FHIR R4
    │   ├── UnsupportedSearch     a search parameter or modifier we do not implement
    │   ├── PayloadTooLarge       the body exceeds the configured limit
    │   ├── NotSupported          an interaction this type does not offer (AuditEvent is written by Carnet)
    │   └── FeedMessageError      a feed's message (HL7 v2) cannot be taken: its HL7 error code, AE or AR
    ├── Unauthenticated           no token, or a token that does not verify
    │   ├── SignInRefused         an OpenID provider's answer does not verify (state, nonce, acr…)
    │   └── AppAccessEnded        an app's token was revoked or expired, or its patient's grant ended
    ├── IdentityProviderUnavailable  the OpenID provider cannot be reached or answers nonsense
    ├── RateLimited               too many requests from one principal, address or account
    ├── DeadlineExceeded          the request ran past its time budget and was rolled back
    ├── AccessDenied              the policy refused; carries the decision's reasons
    ├── EnvelopeError             a sealed value did not open (one opaque error for all causes)
    ├── AuditChainError           a journal proof, tree head or checkpoint does not verify
    │   └── WitnessRefused        a witness would not cosign a checkpoint (HTTP status, its size)
    ├── JournalUnavailable        the access journal could not be written: nothing is returned or changed
    └── KeyProviderError          the key provider failed to wrap or unwrap a key

Only ``carnet.api`` turns these into an OperationOutcome and an HTTP status.
Messages name a value and the fix; they never contain patient data.
"""

from __future__ import annotations

from collections.abc import Sequence


class CarnetError(Exception):
    """Base of every error Carnet raises on purpose."""

    #: FHIR OperationOutcome issue code (http://hl7.org/fhir/issue-type).
    code: str = "exception"

    def __init__(self, message: str, *, expression: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.expression = tuple(expression)


class ConfigurationError(CarnetError):
    """Settings are missing or invalid; raised at start-up."""

    code = "invalid"


class NotFound(CarnetError):
    """The resource does not exist, or the caller may not learn that it exists."""

    code = "not-found"


class Gone(NotFound):
    """The resource existed and was deleted."""

    code = "deleted"


class Conflict(CarnetError):
    """The change conflicts with the stored state."""

    code = "conflict"


class PreconditionFailed(Conflict):
    """An ``If-Match`` or ``If-None-Exist`` precondition did not hold."""


class InvalidRequest(CarnetError):
    """The request is malformed."""

    code = "invalid"


class InvalidResource(InvalidRequest):
    """The resource is not valid FHIR R4."""

    code = "structure"


class UnsupportedSearch(InvalidRequest):
    """A search parameter, modifier or prefix that Carnet does not implement."""

    code = "not-supported"


class PayloadTooLarge(InvalidRequest):
    """The request body is larger than the configured limit."""

    code = "too-costly"


class FeedMessageError(InvalidRequest):
    """A feed's message cannot be taken as it is (answered with an HL7 v2 ACK ``AE`` or ``AR``).

    ``hl7_code`` is the error of HL7 table 0357 (``100`` segment sequence … ``207`` application
    error) and ``application_code`` the volet's own (``902`` unknown patient, ``903`` no INS…);
    ``rejected`` means the message itself is refused (``AR``: unsupported type, version, or not
    HL7 at all) rather than its content (``AE``); ``location`` is the ERR-2 (``PID^1^3``).
    """

    code = "invalid"

    def __init__(
        self,
        message: str,
        *,
        hl7_code: str = "207",
        application_code: str | None = None,
        rejected: bool = False,
        location: str = "",
        dead_letter: bool = True,
    ) -> None:
        super().__init__(message)
        self.hl7_code = hl7_code
        self.application_code = application_code
        self.rejected = rejected
        self.location = location
        #: Keep the message as a dead letter for an operator; False when nothing of it may stay
        #: (the patient refused the feed).
        self.dead_letter = dead_letter


class Unauthenticated(CarnetError):
    """The request carries no valid bearer token.

    ``bearer_error`` is the RFC 6750 error code of the ``WWW-Authenticate`` answer:
    ``invalid_token`` for a token that was sent and does not hold, None when none was sent.
    """

    code = "login"

    def __init__(self, message: str, *, bearer_error: str | None = "invalid_token") -> None:
        super().__init__(message)
        self.bearer_error = bearer_error


class AppAccessEnded(Unauthenticated):
    """An app's token no longer holds on its patient's record: revoked, expired, or its grant ended.

    ``reason`` is the journal's (``app-token-revoked``, ``app-token-expired``,
    ``app-not-granted``); ``client_id`` and ``patient_id`` name the app and the record it was
    granted on, so that the attempt is journaled there. ``journaled`` is True once an entry
    was written (the gate journals a refusal it decides itself).
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        client_id: str,
        patient_id: str | None,
        journaled: bool = False,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.client_id = client_id
        self.patient_id = patient_id
        self.journaled = journaled


class SignInRefused(Unauthenticated):
    """An OpenID Connect sign-in was refused: ``reason`` names the check that failed.

    Reasons: ``state`` (unknown, replayed or expired sign-in), ``provider-error`` (the provider
    answered with an error), ``token`` (the code exchange failed: PKCE, redirect URI, replay),
    ``signature``, ``unknown-kid``, ``issuer``, ``audience``, ``expired``, ``nonce``, ``acr``,
    ``userinfo``, ``claims`` (the identity lacks what Carnet needs).
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class IdentityProviderUnavailable(CarnetError):
    """The OpenID provider could not be reached, or its metadata or keys are unusable."""

    code = "transient"


class RateLimited(CarnetError):
    """Too many requests from one principal, client address or account: retry later."""

    code = "throttled"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeadlineExceeded(CarnetError):
    """The request ran past its time budget (``CARNET_REQUEST_SECONDS``); its changes were undone."""

    code = "timeout"


class AccessDenied(CarnetError):
    """The access policy refused the request."""

    code = "forbidden"

    def __init__(self, message: str, *, reasons: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.reasons = tuple(reasons)


class EnvelopeError(CarnetError):
    """A sealed value could not be opened.

    Deliberately opaque: a wrong key, a flipped bit, a moved ciphertext and an
    unknown format version all raise this same error with the same message.
    """

    code = "security"

    def __init__(self) -> None:
        super().__init__("Sealed value could not be opened.")


class JournalUnavailable(CarnetError):
    """The access journal could not be written, so the request did not happen (fail closed)."""

    code = "transient"


class NotSupported(InvalidRequest):
    """The interaction is not offered on this resource type (e.g. writing an AuditEvent)."""

    code = "not-supported"


class AuditChainError(CarnetError):
    """A Merkle proof, tree head or signed checkpoint of the journal does not verify.

    Raised for a proof that does not lead to the expected root, a hash that is not
    32 bytes long, a size or index out of range, and a tree that was rolled back.
    """

    code = "processing"


class WitnessRefused(AuditChainError):
    """A witness refused to cosign a checkpoint (``status``, and for 409 the ``size`` it last cosigned)."""

    def __init__(self, message: str, *, status: int, size: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.size = size


class KeyProviderError(CarnetError):
    """The key provider could not wrap or unwrap a key."""

    code = "security"


class RecordShredded(Gone):
    """The patient's key was destroyed: nothing of this record can be read."""
