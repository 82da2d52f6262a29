"""A pharmacy's dispensation CDA (FR-Dispensation-medicaments / FR-Traitement-dispense): generated, read, refused when malformed."""

from __future__ import annotations

import base64
import functools

import pytest

from carnet.domain.errors import InvalidResource
from carnet.feeds.cnam_hr import ATC3_SYSTEM, CIP_SYSTEM
from carnet.feeds.dispensation import ATC_SYSTEM, read_dispensation, read_if_dispensation
from carnet.synthetic import generate_population


@functools.cache
def dispensation(seed: int = 5) -> bytes:
    """The structured dispensation document ``carnet generate --dispensations`` writes for one patient."""
    patient = next(iter(generate_population(1, seed=seed, documents_per_patient=8, dispensations=True)))
    for entry in patient.bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Binary" and resource["contentType"] == "text/xml":
            raw = base64.b64decode(resource["data"])
            if b'code="60590-7"' in raw:
                return raw
    raise AssertionError("no structured dispensation generated")


def test_generated_dispensation_reads_into_coded_medicines() -> None:
    """Each FR-Traitement-dispense entry: the medicine (CIP13, ATC, ATC3 group), the day, the boxes, the pharmacy."""
    items = read_dispensation(dispensation())
    assert items
    for item in items:
        cip = item.code_in(CIP_SYSTEM)
        assert cip is not None
        assert len(cip) == 13
        assert cip.startswith("34009")
        assert item.code_in(ATC_SYSTEM) is not None
        assert item.code_in(ATC3_SYSTEM) == item.code_in(ATC_SYSTEM)[:3]  # type: ignore[index]
        assert item.quantity.split()[0].isdigit()
        assert item.quantity.endswith("boite")
        assert item.pharmacy
        assert item.label.isupper()


def test_the_same_seed_gives_the_same_bytes() -> None:
    """Deterministic for a seed, different for another."""
    assert dispensation(5) == dispensation.__wrapped__(5)
    assert dispensation(5) != dispensation(6)


def test_a_document_without_the_dispense_section_is_not_read() -> None:
    """A level 1 dispensation (the default generator's PDF in CDA) is stored as any document: nothing to read."""
    patient = next(iter(generate_population(1, seed=5, documents_per_patient=8)))
    level_1 = [
        base64.b64decode(e["resource"]["data"])
        for e in patient.bundle["entry"]
        if e["resource"]["resourceType"] == "Binary" and e["resource"]["contentType"] == "text/xml"
    ]
    assert level_1
    assert all(read_if_dispensation(raw) is None for raw in level_1)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (f'codeSystem="{CIP_SYSTEM}"'.encode(), b'codeSystem="1.2.3"', "CIP"),
        (b'<quantity value="', b'<quantity nope="', "quantity"),
        (b' value="20', b' nope="20', "date"),  # effectiveTime and performer/time
    ],
)
def test_a_malformed_entry_is_refused_naming_the_entry_never_a_value(
    old: bytes, new: bytes, message: str
) -> None:
    """No CIP/UCD, no quantity, no date: InvalidResource naming section and entry, not the medicine."""
    raw = dispensation()
    body_at = raw.index(b"<structuredBody")
    broken = raw[:body_at] + raw[body_at:].replace(old, new)
    with pytest.raises(InvalidResource, match=message) as caught:
        read_dispensation(broken)
    assert "entry 1" in caught.value.message
    assert read_dispensation(raw)[0].label not in caught.value.message


def test_a_dispense_section_without_entries_is_refused() -> None:
    """The section is there but holds no FR-Traitement-dispense: refused."""
    raw = dispensation()
    start = raw.index(b"<entry>")
    end = raw.rindex(b"</entry>") + len(b"</entry>")
    with pytest.raises(InvalidResource, match="no FR-Traitement-dispense"):
        read_dispensation(raw[:start] + raw[end:])
