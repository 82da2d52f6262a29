"""Rare codes as quasi-identifiers: generalise a code held by fewer than k patients, or remove it.

A code that few patients of an export carry (a rare disease, an unusual medicine) singles them
out as surely as a birth date. Each code of a resource's concept (its ``code``, ``vaccineCode``,
``medicationCodeableConcept`` or ``type``: :func:`carnet.research.deidentify.concept_tokens`;
not its ``category``, a classifier of a few values) is released as the finest level of its code system's hierarchy that at least k released patients hold:

- **ICD-10 / CIM-10**: the code (``E11.65``), then its three-character category (``E11``);
- **ATC**: the code (``A10BA02``, level 5), then levels 4 (``A10BA``), 3 (``A10B``), 2 (``A10``)
  and 1 (``A``);
- any other system (SNOMED CT, LOINC, CIP…), whose hierarchy is not known here: the code only.

When a rare code leaves as a coarser level, every code under that level leaves as it too, so
that the coarser code is held by all the patients under it. A code none of whose levels
reaches k is removed (the coding; the resource with it when no other coding of its concept
is left). :class:`CodeCounts` counts, for the patients an export releases, how many hold each
level of each code (memory bounded by the codes, never by the patients); :meth:`CodeCounts.released`
says what each code becomes; :func:`check` verifies on what was actually written, before
release, that every code that left is held by at least k released patients.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from carnet.domain.errors import AccessDenied

ICD10_SYSTEMS = frozenset(
    {
        "http://hl7.org/fhir/sid/icd-10",
        "http://hl7.org/fhir/sid/icd-10-cm",
        "http://hl7.org/fhir/sid/icd-10-fr",
        "https://smt.esante.gouv.fr/terminologie-cim-10/",
        "urn:oid:2.16.840.1.113883.6.3",
        "urn:oid:1.2.250.1.213.2.3.2",
    }
)
ATC_SYSTEMS = frozenset({"http://www.whocc.no/atc", "urn:oid:2.16.840.1.113883.6.73"})
#: The lengths of the ATC levels 4, 3, 2 and 1 (a full code, level 5, has 7 characters).
_ATC_LEVELS = (5, 4, 3, 1)


@lru_cache(maxsize=8192)
def ladder(token: str) -> tuple[str, ...]:
    """Return a code (``system|code``) and its coarser levels, finest first."""
    system, _, code = token.rpartition("|")
    if system in ICD10_SYSTEMS:
        bare = code.replace(".", "")
        if len(bare) > 3 and bare[:3].isalnum():
            return (token, f"{system}|{bare[:3]}")
    elif system in ATC_SYSTEMS:
        return (token, *(f"{system}|{code[:n]}" for n in _ATC_LEVELS if n < len(code)))
    return (token,)


@dataclass(slots=True)
class CodeCounts:
    """How many released patients hold each code as such, and each level of each code."""

    #: Patients holding the code as it is written.
    literal: Counter[str] = field(default_factory=Counter)
    #: Patients holding the code or any finer code under it.
    holders: Counter[str] = field(default_factory=Counter)

    def add(self, tokens: Iterable[str]) -> None:
        """Count one released patient holding ``tokens`` (each code and level counted once per patient)."""
        held = set(tokens)
        self.literal.update(held)
        self.holders.update({level for token in held for level in ladder(token)})

    def released(self, k: int) -> dict[str, str | None]:
        """Map each code that cannot leave as it is to its generalisation, or to None (removed).

        A code fewer than k patients hold makes its finest level that k patients hold a
        *collapse point*: every code under that level leaves as that level, so the coarser code
        written is held by all the patients under it (``holders``), never by the rare one alone.
        A rare code with no such level is removed.
        """
        rare = {token for token, n in self.literal.items() if n < k}
        collapse = set()
        for token in rare:
            point = next((level for level in ladder(token)[1:] if self.holders[level] >= k), None)
            if point is not None:
                collapse.add(point)
        out: dict[str, str | None] = {}
        for token in self.literal:
            levels = ladder(token)
            coarsest = next((level for level in reversed(levels) if level in collapse), None)
            if coarsest is not None:
                if coarsest != token:
                    out[token] = coarsest
            elif token in rare:
                out[token] = None
        return out


def check(holders: Mapping[str, int], k: int) -> None:
    """Verify, before release, that every code written is held by at least ``k`` released patients.

    Raises:
        AccessDenied: a code singles out fewer than k patients (``k-anonymity-not-met``).
    """
    rare = sorted(token for token, n in holders.items() if 0 < n < k)
    if rare:
        raise AccessDenied(
            f"{len(rare)} code(s) of the export are held by fewer than k = {k} patients; it is not released.",
            reasons=("k-anonymity-not-met",),
        )
