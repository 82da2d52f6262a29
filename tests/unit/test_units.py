"""Numbers and units as people read them: French decimal commas, UCUM codes shown as symbols."""

from __future__ import annotations

from decimal import Decimal

from carnet.web.units import number, unit_text


def test_french_numbers_take_a_comma_and_lose_trailing_zeros() -> None:
    """5.73 is 5,73 in French and 5.73 in English; 139.0 is 139; a stored "1.50" is 1,5."""
    assert [number(v, "fr") for v in (5.73, 139.0, Decimal("1.50"), 56.7)] == ["5,73", "139", "1,5", "56,7"]
    assert [number(v, "en") for v in (5.73, 139.0, Decimal("1.50"), 56.7)] == ["5.73", "139", "1.5", "56.7"]


def test_numbers_round_to_the_places_asked_and_never_fail() -> None:
    """Floating noise is rounded away; text that is no number comes back as it was; None is a dash."""
    assert number(0.1 + 0.2, "fr") == "0,3"
    assert number(4.96, "fr", places=1) == "5"
    assert number("n/a", "fr") == "n/a"
    assert number(None, "en") == "—"
    assert number(float("nan"), "en") == "nan"


def test_ucum_codes_are_shown_as_their_symbols() -> None:
    """mm[Hg] reads mmHg, Cel °C, kg/m2 kg/m²; a unit already readable is left alone."""
    assert [unit_text(u) for u in ("mm[Hg]", "Cel", "kg/m2", "mmol/L", "", None)] == [
        "mmHg",
        "°C",
        "kg/m²",
        "mmol/L",
        "",
        "",
    ]
