"""Per-study keyed pseudonyms and date shifts (HMAC-SHA-256 under the study's key).

A study's key is 32 random bytes held by the key provider (wrapped by its KEK, like a record
key) and never leaves Carnet: the export carries only ``HMAC-SHA-256(study key, label)``, so
that nobody can recompute a pseudonym from an identifier (no plain hash of the NIR, unlike a
SHA-1 of it), and two studies — two keys — cannot link their pseudonyms. The same key gives
each patient a stable shift of every date of their record, between ``-max_days`` and
``+max_days``, so intervals within one record are kept and the calendar dates are not.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

KEY_SIZE = 32


def _mac(study_key: bytes, purpose: str, value: str) -> bytes:
    if len(study_key) != KEY_SIZE:
        raise ValueError("A study key is 32 bytes.")
    return hmac.new(study_key, f"{purpose}\x00{value}".encode(), hashlib.sha256).digest()


def pseudonym(study_key: bytes, value: str) -> str:
    """Return the study's pseudonym of ``value`` (a FHIR id, ``Type/id`` or a record id).

    Wire format: the first 20 bytes of the HMAC, base32 lowercase without padding (32
    characters, a valid FHIR id).
    """
    return base64.b32encode(_mac(study_key, "pseudonym", value)[:20]).decode().lower()


def date_shift(study_key: bytes, patient_id: str, max_days: int) -> int:
    """Return the number of days every date of one patient's record moves, in ``[-max_days, max_days]``."""
    if max_days <= 0:
        return 0
    draw = int.from_bytes(_mac(study_key, "date-shift", patient_id)[:8], "big")
    return draw % (2 * max_days + 1) - max_days
