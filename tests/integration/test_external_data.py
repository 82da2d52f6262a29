"""The external FHIR data (Synthea bundles, HL7 R4 examples) is stored and read back unchanged.

Equal means equal modulo ``id`` and the server-set ``meta.versionId``/``meta.lastUpdated``; the
rest of ``meta`` is kept, decimals keep their digits. The default run takes a deterministic
subset of the Synthea bundles; ``-m slow`` takes all of them.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest
from starlette.testclient import TestClient

from carnet.settings import Settings
from minting import Mint
from records import (
    HL7_EXAMPLES,
    body_of,
    differences,
    everything_differences,
    identifier_tokens,
    is_outcome,
    load,
    open_record,
    point_patients_at,
    post,
    post_example,
    round_trip_differences,
    spread,
    storable_examples,
    store_synthea,
    synthea_bundles,
)

#: Every test here reads the corpus: deselected, with one line in the summary, when it is absent.
pytestmark = pytest.mark.external

#: Synthea bundles stored in the default run (the slow run stores all of them).
DEFAULT_BUNDLES = {"sqlite": 25, "postgres": 5}

#: The transaction and batch Bundles among the HL7 examples.
EXAMPLE_BUNDLES = (
    "Bundle-bundle-transaction.json",
    "Bundle-xds.json",
    "Bundle-hla-1.json",
    "Bundle-bundle-request-medsallergies.json",
    "Bundle-bundle-request-simplesummary.json",
)


def _backend(settings: Settings) -> str:
    return "postgres" if settings.database_url.startswith("postgresql") else "sqlite"


def _store_and_compare(client: TestClient, auth: Mint, count: int | None) -> None:
    paths = synthea_bundles()
    assert len(paths) == 100
    chosen = paths if count is None else spread(paths, count)
    problems: list[str] = []
    resources = 0
    for path in chosen:
        stored = store_synthea(client, auth, path)
        resources += len(stored.expected)
        problems += everything_differences(client, stored)
    assert problems[:20] == []
    assert resources == sum(len(load(p)["entry"]) for p in chosen)


def test_comparison_sees_every_kind_of_change() -> None:
    """The comparison used below notices changed digits, types, keys and list lengths."""
    sent = {"a": Decimal("1.50"), "b": [1, 2], "c": True, "d": "x"}
    assert differences(sent, {"a": Decimal("1.50"), "b": [1, 2], "c": True, "d": "x"}) == []
    assert differences(sent, {**sent, "a": Decimal("1.5")}) != []
    assert differences(sent, {**sent, "c": 1}) != []
    assert differences(sent, {**sent, "b": [1]}) != []
    assert differences(sent, {k: v for k, v in sent.items() if k != "d"}) != []
    assert differences(sent, {**sent, "e": 0}) != []


def test_synthea_bundles_round_trip(client: TestClient, auth: Mint, settings: Settings) -> None:
    """Synthea bundles (a spread subset) come back from $everything as they were sent."""
    _store_and_compare(client, auth, DEFAULT_BUNDLES[_backend(settings)])


@pytest.mark.slow
def test_every_synthea_bundle_round_trips(client: TestClient, auth: Mint) -> None:
    """All 100 Synthea bundles come back from $everything as they were sent."""
    _store_and_compare(client, auth, None)


def test_hl7_examples_round_trip(client: TestClient, auth: Mint) -> None:
    """Every storable HL7 example round-trips, except clinical ones citing no local Patient (422) and AuditEvents (405)."""
    paths = storable_examples()
    taken: set[str] = set()
    outcomes: Counter[str] = Counter()
    problems: list[str] = []
    added: list[str] = []
    for path in paths:
        posted = post_example(client, auth, path, taken)
        response = posted.response
        if posted.identifier_added:
            added.append(posted.name)
        if posted.is_journal:
            outcomes["journal"] += 1
            if response.status_code != 405 or not is_outcome(response):
                problems.append(f"{posted.name}: expected 405, got {response.status_code}")
            continue
        if posted.must_be_refused:
            outcomes["refused"] += 1
            if response.status_code != 422 or not is_outcome(response):
                problems.append(
                    f"{posted.name}: expected 422, got {response.status_code} {response.text[:200]}"
                )
            continue
        if response.status_code != 201:
            problems.append(f"{posted.name}: {response.status_code} {response.text[:300]}")
            continue
        created = body_of(response)
        read = client.get(f"/fhir/{posted.resource_type}/{created['id']}", headers=posted.headers)
        assert read.status_code == 200, read.text
        problems += [f"{posted.name}: {d}" for d in round_trip_differences(posted.sent, body_of(read))]
        problems += [
            f"{posted.name} (create reply): {d}" for d in round_trip_differences(posted.sent, created)
        ]
        outcomes["stored"] += 1
    assert problems == []
    assert outcomes["stored"] + outcomes["refused"] + outcomes["journal"] == len(paths)
    assert outcomes["journal"] > 0  # the AuditEvent examples: only Carnet's journal writes AuditEvents
    # Refusals are the exception: a clinical example without its patient (apgar scores of a
    # contained newborn, login AuditEvents, a List of patients, absolute references elsewhere).
    assert outcomes["refused"] < len(paths) // 5
    # Identifiers added to open a record: three Patient examples have none with a system, and
    # Patient-mom's only one is the SSN that Patient-genetics-example1 already opened a record with.
    assert sorted(added) == [
        "Patient-ihe-pcd.json",
        "Patient-infant-mom.json",
        "Patient-mom.json",
        "Patient-newborn.json",
    ]


def test_decimal_example_keeps_every_digit(client: TestClient, auth: Mint) -> None:
    """The HL7 decimal example (1.0, 1.00, 1E-22, -1.000000000000000000E+245…) keeps its digits."""
    patient_id, headers = open_record(client, auth)
    example = load(HL7_EXAMPLES / "Observation-decimal.json")
    sent = {**example, "subject": {"reference": f"Patient/{patient_id}"}}
    created = post(client, "/fhir/Observation", sent, headers)
    assert created.status_code == 201, created.text
    read = client.get(f"/fhir/Observation/{body_of(created)['id']}", headers=headers)
    assert round_trip_differences(sent, body_of(read)) == []
    values = [str(c["valueQuantity"]["value"]) for c in body_of(read)["component"]]
    assert values == [str(c["valueQuantity"]["value"]) for c in example["component"]]
    assert "1.00" in values
    assert b"-1.000000000000000000E+245" in read.content


@pytest.mark.parametrize("name", EXAMPLE_BUNDLES)
def test_example_bundles_succeed_or_fail_clearly(client: TestClient, auth: Mint, name: str) -> None:
    """The HL7 transaction and batch Bundles get a 2xx or a 4xx OperationOutcome, never a 5xx."""
    bundle = load(HL7_EXAMPLES / name)
    patients = [
        e["resource"]
        for e in bundle.get("entry", [])
        if (e.get("resource") or {}).get("resourceType") == "Patient"
    ]
    tokens = [t for p in patients for t in identifier_tokens(p)]
    if tokens:
        headers = auth(kind="patient", identifier=tokens[0])
    else:
        patient_id, headers = open_record(client, auth)
        bundle = point_patients_at(bundle, patient_id)
    response = post(client, "/fhir", bundle, headers)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert is_outcome(response), response.text
        assert body_of(response)["issue"][0]["diagnostics"].startswith("Entry "), response.text
        return
    reply = body_of(response)
    assert reply["type"] == f"{bundle['type']}-response"
    assert len(reply["entry"]) == len(bundle["entry"])
    for index, entry in enumerate(reply["entry"]):
        status = int(entry["response"]["status"].split()[0])
        assert status < 500, entry
        if status >= 400:
            diagnostics = entry["response"]["outcome"]["issue"][0]["diagnostics"]
            assert diagnostics.startswith(f"Entry {index}: "), diagnostics
