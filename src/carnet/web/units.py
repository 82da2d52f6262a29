"""Numbers and units as people read them: ``5,73 mmol/L`` in French, ``mmHg`` rather than ``mm[Hg]``.

FHIR quantities carry UCUM codes (``mm[Hg]``, ``Cel``, ``/min``, ``kg/m2``), which are for
machines; :func:`unit_text` shows the usual symbol instead. :func:`number` writes a decimal
with the language's separator (a comma in French), without trailing zeros.
"""

from __future__ import annotations

from decimal import Decimal

__all__ = ["number", "unit_text"]

#: UCUM codes whose usual written symbol differs from the code.
_SYMBOLS = {
    "mm[Hg]": "mmHg",
    "Cel": "°C",
    "[degF]": "°F",
    "kg/m2": "kg/m²",
    "m2": "m²",
    "/min": "/min",
    "{beats}/min": "/min",
    "{breaths}/min": "/min",
    "10*9/L": "10⁹/L",
    "10*12/L": "10¹²/L",
    "10*3/uL": "10³/µL",
    "ug": "µg",
    "ug/L": "µg/L",
    "umol/L": "µmol/L",
    "uL": "µL",
    "[iU]/L": "UI/L",
    "[iU]": "UI",
    "[in_i]": "in",
    "[lb_av]": "lb",
    "s": "s",
    "min": "min",
    "h": "h",
}


def unit_text(unit: str | None) -> str:
    """Return the symbol people write for a UCUM unit (``mm[Hg]`` → ``mmHg``), else the unit as is."""
    if not unit:
        return ""
    return _SYMBOLS.get(unit, unit)


def number(value: float | int | Decimal | str | None, language: str, *, places: int = 2) -> str:
    """Write a number with at most ``places`` decimals, no trailing zero, a comma in French (``5,73``)."""
    if value is None or value == "":
        return "—"
    try:
        exact = Decimal(str(value))
    except ArithmeticError:
        return str(value)
    if not exact.is_finite():
        return str(value)
    text = f"{round(exact, places):f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    return text.replace(".", ",") if language == "fr" else text
