"""Search parameter parsing and FHIR date semantics."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from carnet.domain.errors import InvalidRequest, UnsupportedSearch
from carnet.domain.search import (
    DateRange,
    Prefix,
    TokenValue,
    _compare,
    index_tokens,
    parse_date,
    parse_search,
)


def _utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("2024", _utc(2024, 1, 1), _utc(2025, 1, 1)),
        ("2024-12", _utc(2024, 12, 1), _utc(2025, 1, 1)),
        ("2024-02-29", _utc(2024, 2, 29), _utc(2024, 3, 1)),
        ("2024-02-29T10:00:00+02:00", _utc(2024, 2, 29, 8), _utc(2024, 2, 29, 8, 0, 1)),
        ("2024-02-29T10:00Z", _utc(2024, 2, 29, 10), _utc(2024, 2, 29, 10, 1)),
    ],
)
def test_date_precision_gives_a_range(text: str, low: datetime, high: datetime) -> None:
    """A FHIR date covers the whole range its precision implies."""
    assert parse_date(text) == DateRange(low=low, high=high)


@pytest.mark.parametrize("text", ["2024-13", "2023-02-29", "yesterday", "24-01-01", ""])
def test_bad_dates_are_refused(text: str) -> None:
    """A value that is not a calendar date is a clear InvalidRequest."""
    with pytest.raises(InvalidRequest):
        parse_date(text)


@pytest.mark.parametrize(
    ("prefix", "target", "expected"),
    [
        (Prefix.EQ, "2024-01-15", True),
        (Prefix.NE, "2024-01-15", False),
        (Prefix.GT, "2024-02-01", True),
        (Prefix.LT, "2023-12-31", True),
        (Prefix.GE, "2024-01-01", True),
        (Prefix.LE, "2024-01-31", True),
        (Prefix.SA, "2024-02-01", True),
        (Prefix.EB, "2023-12-31", True),
        (Prefix.SA, "2024-01-31", False),
    ],
)
def test_prefixes_against_a_month(prefix: Prefix, target: str, expected: bool) -> None:
    """Each prefix compares a target day with the search month 2024-01 as FHIR defines."""
    assert _compare(prefix, parse_date(target), parse_date("2024-01")) is expected


def test_parse_tokens_dates_and_results() -> None:
    """A query is parsed into typed clauses."""
    query = parse_search(
        "Observation",
        [("patient", "Patient/p1"), ("code", "http://loinc.org|1,|2,3"), ("date", "ge2024"), ("_count", "5")],
    )
    assert query.patient_id == "p1"
    assert query.tokens[0].values == (
        TokenValue(system="http://loinc.org", code="1"),
        TokenValue(system="", code="2"),
        TokenValue(system=None, code="3"),
    )
    assert query.dates[0].prefix is Prefix.GE
    assert query.count == 5


def test_unknown_parameter_is_refused_or_listed() -> None:
    """Unknown parameters raise, or are listed as ignored when lenient."""
    with pytest.raises(UnsupportedSearch, match="colour"):
        parse_search("Observation", [("colour", "red")])
    assert parse_search("Observation", [("colour", "red")], lenient=True).ignored == ("colour",)


def test_modifiers_are_refused() -> None:
    """Modifiers like :text or :not are not implemented and say so."""
    with pytest.raises(UnsupportedSearch, match=":not"):
        parse_search("Observation", [("code:not", "1")])


def test_index_tokens_cover_codings_and_identifiers() -> None:
    """A resource is indexed by code alone, system|code and system, for each coding."""
    tokens = index_tokens(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
            "identifier": [{"system": "urn:lab", "value": "A1"}],
        }
    )
    assert ("code", ("c", "29463-7")) in tokens
    assert ("code", ("sc", "http://loinc.org", "29463-7")) in tokens
    assert ("code", ("s", "http://loinc.org")) in tokens
    assert ("status", ("c", "final")) in tokens
    assert ("identifier", ("sc", "urn:lab", "A1")) in tokens
