"""Identifiers minted from a seeded random generator: UUIDs, OIDs, RPPS, SIRET, FINESS.

Nothing here calls ``uuid4`` or the clock: every value comes from the ``random.Random`` passed
in, so a population is the same for the same seed on every machine.
"""

from __future__ import annotations

import random
import uuid


def new_uuid(rng: random.Random) -> str:
    """Draw a version-4 UUID from ``rng`` and return it in canonical text form."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def urn_uuid(value: str) -> str:
    """Return ``urn:uuid:<value>``, the form of ``fullUrl`` and of references inside a bundle."""
    return f"urn:uuid:{value}"


def oid_from_uuid(value: str) -> str:
    """Turn a UUID into an OID under the ``2.25`` arc (ITU-T X.667), usable as a CDA ``id/@root``.

    The arc needs no registration, so synthetic documents carry globally unique ids without
    borrowing a producer's OID.
    """
    return f"2.25.{uuid.UUID(value).int}"


def luhn_digit(digits: str) -> str:
    """Return the Luhn check digit that makes ``digits + check`` pass the Luhn test."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def is_luhn_valid(digits: str) -> bool:
    """Tell whether a digit string passes the Luhn test (RPPS, SIREN and SIRET use it)."""
    return digits.isdigit() and luhn_digit(digits[:-1]) == digits[-1]


def new_rpps(rng: random.Random) -> str:
    """Draw an RPPS number: 11 digits, starting with ``10``, the last a Luhn check digit."""
    body = "10" + "".join(rng.choice("0123456789") for _ in range(8))
    return body + luhn_digit(body)


def new_siret(rng: random.Random) -> str:
    """Draw a SIRET: a Luhn-valid 9-digit SIREN, then a 5-digit NIC making all 14 Luhn-valid."""
    siren_body = str(rng.randint(10_000_000, 99_999_999))
    siren = siren_body + luhn_digit(siren_body)
    nic_body = f"{rng.randint(1, 9999):04d}"
    return siren + nic_body + luhn_digit(siren + nic_body)


def new_finess(rng: random.Random, department: str) -> str:
    """Draw a 9-character FINESS number for an establishment in ``department``.

    A FINESS starts with the department (``2A``/``2B`` for Corsica, ``97`` for overseas) and ends
    with a check digit; here it is the Luhn digit of the first eight characters, Corsican letters
    read as ``0``.
    """
    prefix = department[:2]
    body = prefix + "".join(rng.choice("0123456789") for _ in range(6))
    return body + luhn_digit(body.replace("A", "0").replace("B", "0"))
