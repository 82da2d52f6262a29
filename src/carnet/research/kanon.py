"""k-anonymity of an export: generalise the quasi-identifiers until every class holds k patients.

The quasi-identifiers of a patient are their age, sex and area (the postcode's département).
A ladder of generalisations goes from the finest to the coarsest::

    level 0: age in 5-year bands, sex, département (first two digits of the postcode)
    level 1: age in 10-year bands, sex, département
    level 2: age in 10-year bands, sex, first digit of the postcode
    level 3: age in 20-year bands, sex, no area
    level 4: age in 20-year bands, no sex, no area
    level 5: nothing (every patient in one class)

:class:`Ladder` counts the classes of every level in one pass over the cohort — memory bounded
by the number of classes, not of patients — and :meth:`Ladder.level` picks the finest level at
which the patients in classes smaller than k are at most the allowed share; those are suppressed.
:func:`check` verifies k on what is actually released, before release.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date

from carnet.domain.errors import AccessDenied

LEVELS = 6
#: (age band width, keep sex, postcode digits kept) of each level; width 0: no age.
_LADDER: tuple[tuple[int, bool, int], ...] = (
    (5, True, 2),
    (10, True, 2),
    (10, True, 1),
    (20, True, 0),
    (20, False, 0),
    (0, False, 0),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Traits:
    """What the quasi-identifiers are computed from (never exported as such)."""

    birth_date: date | None
    sex: str | None
    postcode: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class QuasiIdentifiers:
    """One patient's generalised quasi-identifiers (``*`` where generalised away)."""

    age: str
    sex: str
    area: str

    @property
    def key(self) -> tuple[str, str, str]:
        """The equivalence class."""
        return (self.age, self.sex, self.area)


def traits_of(patient: Mapping[str, object]) -> Traits:
    """Read the traits of a FHIR Patient (birth date, gender, first postcode)."""
    birth: date | None = None
    raw = patient.get("birthDate")
    if isinstance(raw, str):
        try:
            birth = date.fromisoformat(raw[:10]) if len(raw) >= 10 else date(int(raw[:4]), 7, 1)
        except ValueError:
            birth = None
    sex = patient.get("gender")
    postcode = None
    addresses = patient.get("address")
    if isinstance(addresses, list):
        for address in addresses:
            code = address.get("postalCode") if isinstance(address, dict) else None
            if isinstance(code, str) and code[:2].isalnum():
                postcode = code
                break
    return Traits(birth_date=birth, sex=sex if isinstance(sex, str) else None, postcode=postcode)


def generalise(traits: Traits, level: int, today: date) -> QuasiIdentifiers:
    """Return the quasi-identifiers of ``traits`` at one level of the ladder."""
    width, keep_sex, digits = _LADDER[level]
    age = "*"
    if width and traits.birth_date is not None:
        years = today.year - traits.birth_date.year
        years -= (today.month, today.day) < (traits.birth_date.month, traits.birth_date.day)
        low = max(0, years) // width * width
        age = f"{low}-{low + width - 1}"
    sex = (traits.sex or "unknown") if keep_sex else "*"
    area = (traits.postcode or "")[:digits] or "*" if digits else "*"
    return QuasiIdentifiers(age=age, sex=sex, area=area)


@dataclass(slots=True)
class Ladder:
    """The class sizes of every level of the ladder, counted over a cohort."""

    today: date
    counts: list[Counter[tuple[str, str, str]]] = field(
        default_factory=lambda: [Counter() for _ in range(LEVELS)]
    )
    patients: int = 0

    def add(self, traits: Traits) -> None:
        """Count one patient of the cohort at every level."""
        self.patients += 1
        for level in range(LEVELS):
            self.counts[level][generalise(traits, level, self.today).key] += 1

    def suppressed(self, level: int, k: int) -> int:
        """How many patients are in classes smaller than ``k`` at ``level``."""
        return sum(n for n in self.counts[level].values() if n < k)

    def level(self, k: int, max_suppression: float) -> int:
        """Return the finest level whose suppression stays within ``max_suppression`` of the cohort."""
        allowed = max_suppression * self.patients
        for level in range(LEVELS):
            if self.suppressed(level, k) <= allowed:
                return level
        return LEVELS - 1

    def releasable(self, qi: QuasiIdentifiers, level: int, k: int) -> bool:
        """Tell whether a patient's class at ``level`` holds at least ``k`` patients."""
        return self.counts[level][qi.key] >= k


def k_of(classes: Iterable[int]) -> int:
    """Return the k an export achieves: its smallest non-empty class (0 for an empty export)."""
    sizes = [n for n in classes if n > 0]
    return min(sizes) if sizes else 0


def check(released: Counter[tuple[str, str, str]], k: int) -> None:
    """Verify, before release, that every released class holds at least ``k`` patients.

    Raises:
        AccessDenied: a class is smaller than k (``k-anonymity-not-met``); nothing may be released.
    """
    achieved = k_of(released.values())
    if released and achieved < k:
        raise AccessDenied(
            f"The export reaches k = {achieved}, below the study's k = {k}; it is not released.",
            reasons=("k-anonymity-not-met",),
        )
