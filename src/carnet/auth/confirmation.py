"""The second professional's own confirmation of a break-glass access (the ``sovereign`` profile).

A free-text "confirmed by" naming anyone is not a confirmation. The confirming professional,
signed in with their own session or token, asks Carnet for a **confirmation token** naming the
professional they confirm for; the one who breaks the glass presents it (the API's
``X-Carnet-Confirmation`` header, the portal's confirmation field). The token is a JWT (HS256,
joserfc) under a key only this server holds, ``<key dir>/confirmation.key`` (32 random bytes,
0600, created on first use)::

    iss   carnet-confirmation
    sub   the confirming professional's idNat_PS   name, profession   who they are
    for   the idNat_PS of the professional confirmed for
    iat, exp  valid CONFIRMATION_SECONDS (five minutes)

It proves that an authenticated professional, other than the requester, confirmed this
requester's emergency access just now; the journal records both identities (the entry's actor
and ``confirmed_by``).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from carnet.domain.errors import AccessDenied
from carnet.domain.principal import ActorKind, Principal

ISSUER = "carnet-confirmation"
CONFIRMATION_SECONDS = 300
KEY_FILE = "confirmation.key"
#: The refusal reason a bad confirmation gives (the policy's own is ``!break-glass-confirmation-missing``).
INVALID = "!break-glass-confirmation-invalid"


def confirmation_key(key_dir: Path) -> OctKey:
    """Return the confirmation-signing key, creating ``<key_dir>/confirmation.key`` (0600) on first use."""
    key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = key_dir / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return OctKey.import_key(bytes.fromhex(path.read_text(encoding="ascii").strip()))
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(secrets.token_hex(32))
    return OctKey.import_key(bytes.fromhex(path.read_text(encoding="ascii").strip()))


@dataclass(frozen=True, slots=True, kw_only=True)
class Confirmer:
    """The professional whose confirmation verified."""

    professional_id: str
    display: str | None


def issue_confirmation(key: OctKey, confirmer: Principal, requester_id: str, *, now: float) -> str:
    """Sign a confirmation by ``confirmer`` for the professional ``requester_id``.

    Raises:
        AccessDenied: the confirmer is not a professional with an idNat_PS, or confirms for themself.
    """
    if confirmer.kind is not ActorKind.PROFESSIONAL or not confirmer.professional_id:
        raise AccessDenied("Only a professional may confirm an emergency access.", reasons=[INVALID])
    requester_id = requester_id.strip()
    if not requester_id.isalnum() or not 6 <= len(requester_id) <= 20:
        raise AccessDenied(
            "Give the national identifier (idNat_PS) of the professional you confirm for.", reasons=[INVALID]
        )
    if requester_id == confirmer.professional_id:
        raise AccessDenied("A professional cannot confirm their own emergency access.", reasons=[INVALID])
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": confirmer.professional_id,
        "for": requester_id,
        "iat": int(now),
        "exp": int(now) + CONFIRMATION_SECONDS,
    }
    if confirmer.display:
        claims["name"] = confirmer.display
    if confirmer.profession:
        claims["profession"] = confirmer.profession
    return jwt.encode({"alg": "HS256"}, claims, key)


def verify_confirmation(key: OctKey, token: str, requester: Principal, *, now: float) -> Confirmer:
    """Check a confirmation presented by ``requester``; return who confirmed.

    Raises:
        AccessDenied: forged, expired, for another professional, or by the requester themself.
    """
    try:
        claims = dict(jwt.decode(token.strip(), key, algorithms=["HS256"]).claims)
    except (JoseError, ValueError, UnicodeError):
        raise AccessDenied(
            "The confirmation does not verify; ask your colleague for a new one.", reasons=[INVALID]
        ) from None
    exp, confirmer = claims.get("exp"), claims.get("sub")
    if claims.get("iss") != ISSUER or not isinstance(exp, int) or not isinstance(confirmer, str):
        raise AccessDenied(
            "The confirmation does not verify; ask your colleague for a new one.", reasons=[INVALID]
        )
    if exp < now:
        raise AccessDenied(
            "The confirmation has expired (five minutes); ask your colleague for a new one.",
            reasons=[INVALID],
        )
    if claims.get("for") != requester.professional_id:
        raise AccessDenied("This confirmation was given to another professional.", reasons=[INVALID])
    if confirmer == requester.professional_id:
        raise AccessDenied("A professional cannot confirm their own emergency access.", reasons=[INVALID])
    name = claims.get("name")
    return Confirmer(professional_id=confirmer, display=name if isinstance(name, str) else None)
