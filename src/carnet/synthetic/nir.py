"""The NIR (numéro d'inscription au répertoire), the number behind the INS.

A NIR has 15 characters::

    S YY MM DDCCC OOO KK
    │ │  │  │     │   └── control key, 97 - (first 13 characters as a number mod 97)
    │ │  │  │     └────── order number of the birth in the commune that month (001-999)
    │ │  │  └──────────── birthplace: INSEE code of the commune (department + commune), or
    │ │  │                99 + INSEE country code for people born abroad
    │ │  └─────────────── month of birth (01-12; 20-42 or 50-99 when the civil record has none)
    │ └────────────────── last two digits of the year of birth
    └──────────────────── 1 man, 2 woman (3, 4, 7, 8: temporary numbers)

Corsica has been ``2A`` (Corse-du-Sud) and ``2B`` (Haute-Corse) since 1976 (``20`` before);
for the key, ``2A`` counts as ``19`` and ``2B`` as ``18``.
"""

from __future__ import annotations

import re

_NIR = re.compile(
    r"(?P<sex>[123478])"
    r"(?P<year>\d{2})"
    r"(?P<month>0[1-9]|1[0-2]|[2-3]\d|4[0-2]|[5-9]\d)"
    r"(?P<place>\d{2}|2A|2B)\d{3}"
    r"(?P<order>\d{3})"
    r"(?P<key>\d{2})"
)


def compute_nir_key(body: str) -> str:
    """Return the two-digit control key of the first 13 characters of a NIR.

    Raises:
        ValueError: ``body`` is not 13 characters of digits (``2A``/``2B`` allowed at 6-7).
    """
    if len(body) != 13:
        raise ValueError(f"A NIR body has 13 characters, got {len(body)}; pass the NIR without its key.")
    numeric = body[:5] + body[5:7].replace("2A", "19").replace("2B", "18") + body[7:]
    if not numeric.isdigit():
        raise ValueError("A NIR body holds digits only (2A or 2B for Corsica); remove other characters.")
    return f"{97 - int(numeric) % 97:02d}"


def make_nir(*, sex_digit: int, year: int, month: int, place: str, order: int) -> str:
    """Assemble a NIR from its parts and append its key.

    ``place`` is the 5-character INSEE code of the birth commune (``2A004``, ``97411``) or
    ``99`` + country code.

    Raises:
        ValueError: a part is out of range.
    """
    if sex_digit not in (1, 2, 3, 4, 7, 8) or not 1 <= order <= 999 or len(place) != 5:
        raise ValueError("NIR parts out of range: sex digit 1-4/7/8, order 1-999, place of 5 characters.")
    body = f"{sex_digit}{year % 100:02d}{month:02d}{place}{order:03d}"
    return body + compute_nir_key(body)


def validate_nir(nir: str) -> bool:
    """Tell whether ``nir`` is a well-formed NIR whose control key is right.

    Only the canonical 15-character form is accepted: no spaces, upper-case ``2A``/``2B``.
    """
    match = _NIR.fullmatch(nir)
    if match is None or match["order"] == "000":
        return False
    return compute_nir_key(nir[:13]) == match["key"]
