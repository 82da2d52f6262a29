"""Device measures of the ANS « Mesures de santé » IG: the flux's shape, each profile's codes, units and ranges, the measure key."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from carnet.domain.errors import InvalidResource
from carnet.feeds.devices import (
    MEASURE_ID_SYSTEM,
    MEASURE_PROFILES,
    is_measure_bundle,
    read_measure_bundle,
)

IG = "https://interop.esante.gouv.fr/ig/fhir/mesures/StructureDefinition"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
VITALS = [
    {
        "coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}
        ]
    }
]


def observation(code: str, value: Any = None, unit: str = "", **extra: Any) -> dict[str, Any]:
    """A measure Observation of one LOINC code, with a UCUM quantity."""
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": VITALS,
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-12-01T08:00:00+01:00",
        "device": {"reference": "urn:uuid:dev-1"},
    }
    if value is not None:
        resource["valueQuantity"] = {"value": value, "unit": unit, "system": UCUM, "code": unit}
    resource.update(extra)
    return resource


def blood_pressure(systolic: Any = 128, diastolic: Any = 82) -> dict[str, Any]:
    """A blood-pressure panel with its two components."""
    return observation(
        "85354-9",
        component=[
            {
                "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                "valueQuantity": {"value": systolic, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
            },
            {
                "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                "valueQuantity": {"value": diastolic, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
            },
        ],
    )


def flux(
    resource: dict[str, Any], *, device: bool = True, profile: str = "mesures-bundle-flux-alimentation"
) -> dict[str, Any]:
    """A measures-flux transaction Bundle: the Observation, and a PhdDevice."""
    entries = [
        {
            "fullUrl": "urn:uuid:obs-1",
            "resource": resource,
            "request": {"method": "POST", "url": "Observation"},
        }
    ]
    if device:
        entries.append(
            {
                "fullUrl": "urn:uuid:dev-1",
                "resource": {
                    "resourceType": "Device",
                    "identifier": [
                        {
                            "system": "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680",
                            "value": "00-1B-2C-FF-FE-3D-4E-5F",
                        }
                    ],
                    "patient": {"reference": "Patient/p1"},
                },
                "request": {"method": "POST", "url": "Device"},
            }
        )
    return {
        "resourceType": "Bundle",
        "meta": {"profile": [f"{IG}/{profile}"]},
        "type": "transaction",
        "entry": entries,
    }


def test_twelve_profiles_of_the_flux_plus_respiratory_rate() -> None:
    """The flux knows the IG's twelve Observation profiles (oxygen saturation included) and the new respiratory rate."""
    names = {p.profile for p in MEASURE_PROFILES}
    assert len(names) == 13
    assert "mesures-fr-observation-oxygen-sat" in names
    assert "mesures-fr-observation-resp-rate" in names


@pytest.mark.parametrize(
    ("code", "value", "unit"),
    [
        ("39156-5", 23.4, "kg/m2"),
        ("8302-2", 172, "cm"),
        ("8310-5", Decimal("37.2"), "Cel"),
        ("29463-7", 71.5, "kg"),
        ("8867-4", 64, "/min"),
        ("2345-7", 98, "mg/dL"),
        ("9843-4", 35, "cm"),
        ("72514-3", 3, "1"),
        ("41950-7", 8042, "1/(24.h)"),
        ("8280-0", 88, "cm"),
        ("2708-6", 97, "%"),
        ("9279-1", 16, "/min"),
    ],
)
def test_each_profile_accepts_a_plausible_measure(code: str, value: Any, unit: str) -> None:
    """A measure of each profile, in an allowed unit and range, is accepted and keyed."""
    checked = read_measure_bundle(flux(observation(code, value, unit)))
    identifiers = checked.entries[0]["resource"]["identifier"]
    assert [i["system"] for i in identifiers] == [MEASURE_ID_SYSTEM]
    assert checked.devices == (1,)


@pytest.mark.parametrize(
    ("resource", "path"),
    [
        (observation("2708-6", 130, "%"), "valueQuantity.value"),  # SpO2 over 100 %
        (observation("2708-6", 97, "mg/dL"), "valueQuantity.code"),  # a unit of another measure
        (
            observation("29463-7", 71.5, "kg") | {"valueQuantity": {"value": 71.5, "code": "kg"}},
            "valueQuantity.system",
        ),
        (observation("29463-7", "heavy", "kg"), "valueQuantity.value"),
        (observation("1234-5", 1, "kg"), "code"),  # not a measure of the IG
        (observation("8867-4", 60, "/min") | {"status": "registered"}, "status"),
        (observation("8867-4", 60, "/min") | {"category": []}, "category"),
        ({k: v for k, v in observation("8867-4", 60, "/min").items() if k != "subject"}, "subject"),
        (
            {k: v for k, v in observation("8867-4", 60, "/min").items() if k != "effectiveDateTime"},
            "effective",
        ),
        (blood_pressure(diastolic=140), "component"),  # diastolic above systolic
        (blood_pressure(systolic=400), "component[0].valueQuantity.value"),
        (observation("85354-9"), "component"),  # a panel without its components
    ],
)
def test_a_measure_outside_its_profile_is_refused_naming_the_element(
    resource: dict[str, Any], path: str
) -> None:
    """Wrong unit, value out of range, unknown code, missing patient or time: InvalidResource at that element."""
    with pytest.raises(InvalidResource) as raised:
        read_measure_bundle(flux(resource))
    assert raised.value.expression == (f"Bundle.entry[0].resource.{path}",)


def test_the_flux_shape_is_enforced() -> None:
    """One Observation, at most one Device, POSTed to their type, in a transaction."""
    bundle = flux(observation("8867-4", 60, "/min"))
    with pytest.raises(InvalidResource):
        read_measure_bundle({**bundle, "type": "batch"})
    two = copy.deepcopy(bundle)
    two["entry"].append(copy.deepcopy(two["entry"][0]))
    with pytest.raises(InvalidResource):
        read_measure_bundle(two)
    put = copy.deepcopy(bundle)
    put["entry"][0]["request"] = {"method": "PUT", "url": "Observation/x"}
    with pytest.raises(InvalidResource):
        read_measure_bundle(put)
    other = copy.deepcopy(bundle)
    other["entry"][1]["resource"] = {"resourceType": "DocumentReference"}
    other["entry"][1]["request"]["url"] = "DocumentReference"
    with pytest.raises(InvalidResource):
        read_measure_bundle(other)


def test_the_same_measure_gets_the_same_key_and_a_different_one_another() -> None:
    """The key is stable across sends and changes with the value, the time or the patient."""

    def key(resource: dict[str, Any]) -> str:
        return str(read_measure_bundle(flux(resource)).entries[0]["resource"]["identifier"][-1]["value"])

    first = key(blood_pressure())
    assert key(blood_pressure()) == first
    assert key(blood_pressure(systolic=129)) != first
    assert key(blood_pressure() | {"effectiveDateTime": "2026-12-01T09:00:00+01:00"}) != first
    assert key(blood_pressure() | {"subject": {"reference": "Patient/p2"}}) != first


def test_biology_flux_needs_its_report_and_pairs_total_with_hdl() -> None:
    """The biology flux carries one DiagnosticReport; total and HDL cholesterol come together."""

    def lab(code: str, value: float) -> dict[str, Any]:
        return observation(code, value, "mmol/L", category=[])

    report = {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "24331-1"}]},
    }
    entries = [
        {"resource": lab("2093-3", 5.2), "request": {"method": "POST", "url": "Observation"}},
        {"resource": lab("2085-9", 1.4), "request": {"method": "POST", "url": "Observation"}},
        {"resource": report, "request": {"method": "POST", "url": "DiagnosticReport"}},
    ]
    bundle = {
        "resourceType": "Bundle",
        "meta": {"profile": [f"{IG}/mesures-bundle-flux-alimentation-biologie"]},
        "type": "transaction",
        "entry": entries,
    }
    assert is_measure_bundle(bundle)
    assert read_measure_bundle(bundle).kind == "biology"
    with pytest.raises(InvalidResource, match="Total and HDL"):
        read_measure_bundle({**bundle, "entry": [entries[0], entries[2]]})
    with pytest.raises(InvalidResource, match="DiagnosticReport"):
        read_measure_bundle({**bundle, "entry": entries[:2]})
    with pytest.raises(InvalidResource):
        read_measure_bundle(
            {
                **bundle,
                "entry": [{"resource": lab("2093-3", 95.0), "request": entries[0]["request"]}, *entries[1:]],
            }
        )


def test_only_bundles_claiming_the_flux_are_measure_bundles() -> None:
    """A plain transaction is not taken for a measures Bundle."""
    assert is_measure_bundle(flux(observation("8867-4", 60, "/min")))
    assert not is_measure_bundle({"resourceType": "Bundle", "type": "transaction", "entry": []})
