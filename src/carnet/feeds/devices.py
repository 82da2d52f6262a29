"""Device measures as the ANS « Mesures de santé » FHIR IG defines them: read, check, and key them.

Two kinds of transaction Bundle (``ansforge/IG-fhir-mesures-de-sante``):

- **the measures flux** (``MesBundleFluxAlimentation``): exactly one Observation (``POST
  Observation``) of one of the twelve profiles below, and at most one device (``POST Device``,
  profile PhdDevice) that it may reference (``Observation.device``);
- **the biology flux** (``MesBundleFluxAlimentationBiologie``): one DiagnosticReport and at most
  one Observation of each biology profile; total and HDL cholesterol come together
  (invariants ``mesures-inv-1`` and ``-2``).

Each Observation is checked against its profile: its LOINC (or TAASIP) code, a UCUM unit among
those the profile allows, a value within what a living person can measure (ranges below: wide on
purpose, they catch unit mix-ups and typing errors, not illness), a status, the patient, and when.
A blood pressure carries both the systolic (8480-6) and diastolic (8462-4) components, diastolic
below systolic. Anything else is an :class:`InvalidResource` naming the element (FHIRPath).

Each accepted Observation gets a stable identifier (:data:`MEASURE_ID_SYSTEM`): a hash of the
patient, code, time, values and device, so the same measure sent twice (a device retrying) is
stored once (conditional create, :mod:`carnet.services.measures`).

The module is pure: it reads dicts and returns dicts; the intake that writes them is
:mod:`carnet.services.measures`.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from carnet.domain.errors import InvalidResource

__all__ = [
    "BIOLOGY_BUNDLE",
    "BIOLOGY_PROFILES",
    "MEASURES_BUNDLE",
    "MEASURE_ID_SYSTEM",
    "MEASURE_PROFILES",
    "MeasureBundle",
    "MeasureProfile",
    "is_measure_bundle",
    "measure_labels",
    "measure_type",
    "measure_types",
    "read_measure_bundle",
]

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
TAASIP = "https://mos.esante.gouv.fr/NOS/TRE_R308-TAASIP/FHIR/TRE-R308-TAASIP"
VITAL_SIGNS = "vital-signs"
MEASURE_ID_SYSTEM = "https://carnet.health/fhir/NamingSystem/device-measure"
"""The identifier Carnet gives each device measure (a hash of what it says), for deduplication."""
#: The bundles' profiles (by id: any canonical base ending in ``StructureDefinition/<id>``).
MEASURES_BUNDLE = "mesures-bundle-flux-alimentation"
BIOLOGY_BUNDLE = "mesures-bundle-flux-alimentation-biologie"
_STATUSES = frozenset({"preliminary", "final", "amended", "corrected"})


@dataclass(frozen=True, slots=True, kw_only=True)
class MeasureProfile:
    """One Observation profile: its codes, units with their plausible ranges, components, category."""

    profile: str
    label: str
    codes: frozenset[tuple[str, str]]
    units: Mapping[str, tuple[float, float]]
    vital_sign: bool = True
    components: Mapping[str, tuple[str, Mapping[str, tuple[float, float]]]] | None = None


def _p(
    profile: str,
    label: str,
    codes: Sequence[tuple[str, str]],
    units: Mapping[str, tuple[float, float]],
    *,
    vital_sign: bool = True,
    components: Mapping[str, tuple[str, Mapping[str, tuple[float, float]]]] | None = None,
) -> MeasureProfile:
    return MeasureProfile(
        profile=profile,
        label=label,
        codes=frozenset(codes),
        units=units,
        vital_sign=vital_sign,
        components=components,
    )


#: The twelve profiles of the measures flux (and the respiratory rate, new in the repository).
MEASURE_PROFILES: tuple[MeasureProfile, ...] = (
    _p("mesures-fr-observation-bmi", "Body mass index", [(LOINC, "39156-5")], {"kg/m2": (5, 150)}),
    _p(
        "mesures-fr-observation-bodyheight",
        "Body height",
        [(LOINC, "8302-2")],
        {"cm": (20, 280), "m": (0.2, 2.8), "[in_i]": (8, 110)},
    ),
    _p(
        "mesures-fr-observation-body-temperature",
        "Body temperature",
        [(LOINC, "8310-5")],
        {"Cel": (25, 45), "[degF]": (77, 113)},
    ),
    _p(
        "mesures-fr-observation-body-weight",
        "Body weight",
        [(LOINC, "29463-7")],
        {"kg": (0.2, 700), "g": (200, 700000), "[lb_av]": (0.5, 1500)},
    ),
    _p(
        "mesures-fr-observation-bp",
        "Blood pressure",
        [(LOINC, "85354-9")],
        {},
        components={
            "8480-6": ("Systolic", {"mm[Hg]": (40, 300)}),
            "8462-4": ("Diastolic", {"mm[Hg]": (20, 200)}),
        },
    ),
    _p("mesures-fr-observation-heartrate", "Heart rate", [(LOINC, "8867-4")], {"/min": (20, 350)}),
    _p(
        "mesures-observation-glucose",
        "Glucose",
        [(LOINC, "2345-7"), (LOINC, "4548-4"), (TAASIP, "MED-969"), (TAASIP, "MED-972")],
        {"mg/dL": (10, 1000), "mmol/L": (0.5, 55), "%": (2, 20)},
    ),
    _p("mesures-observation-head-circumference", "Head circumference", [(LOINC, "9843-4")], {"cm": (10, 80)}),
    _p("mesures-observation-pain-severity", "Pain severity", [(LOINC, "72514-3")], {"1": (0, 10)}),
    _p(
        "mesures-observation-steps-by-day",
        "Steps by day",
        [(LOINC, "41950-7")],
        {"1/(24.h)": (0, 200000), "/d": (0, 200000)},
    ),
    _p(
        "mesures-observation-waist-circumference",
        "Waist circumference",
        [(LOINC, "8280-0")],
        {"cm": (20, 300)},
    ),
    _p(
        "mesures-fr-observation-oxygen-sat",
        "Oxygen saturation",
        [(LOINC, "2708-6"), (LOINC, "59408-5")],
        {"%": (50, 100)},
    ),
    _p("mesures-fr-observation-resp-rate", "Respiratory rate", [(LOINC, "9279-1")], {"/min": (2, 100)}),
)
#: The Observation profiles of the biology flux.
BIOLOGY_PROFILES: tuple[MeasureProfile, ...] = (
    _p(
        "mesures-observation-glucose",
        "Glucose",
        [(LOINC, "2345-7")],
        {"mg/dL": (10, 1000), "mmol/L": (0.5, 55)},
    ),
    _p("mesures-observation-hba1c", "HbA1c", [(LOINC, "4548-4")], {"%": (2, 20)}, vital_sign=False),
    _p(
        "mesures-observation-cholesterol-total",
        "Total cholesterol",
        [(LOINC, "2093-3")],
        {"mmol/L": (0.5, 30)},
        vital_sign=False,
    ),
    _p(
        "mesures-observation-cholesterol-hdl",
        "HDL cholesterol",
        [(LOINC, "2085-9")],
        {"mmol/L": (0.1, 6)},
        vital_sign=False,
    ),
    _p(
        "mesures-observation-cholesterol-ldl",
        "LDL cholesterol",
        [(LOINC, "2089-1"), (LOINC, "13457-7")],
        {"mmol/L": (0.1, 20)},
        vital_sign=False,
    ),
    _p(
        "mesures-observation-cholesterol-trigly",
        "Triglycerides",
        [(LOINC, "2571-8")],
        {"mmol/L": (0.1, 60)},
        vital_sign=False,
    ),
    _p(
        "mesures-observation-cholesterol-ratio",
        "Total/HDL cholesterol ratio",
        [(LOINC, "9830-1")],
        {"{ratio}": (0.5, 30), "1": (0.5, 30)},
        vital_sign=False,
    ),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class MeasureBundle:
    """A checked measures or biology Bundle, ready to store.

    ``entries`` are the Bundle's entries (resources copied, each Observation carrying its
    :data:`MEASURE_ID_SYSTEM` identifier); ``profiles`` the profile of each Observation, in order;
    ``devices`` the indexes of the Device entries.
    """

    kind: str
    entries: tuple[dict[str, Any], ...]
    profiles: tuple[MeasureProfile, ...]
    devices: tuple[int, ...]


def measure_type(profile: MeasureProfile) -> str:
    """The measure type a device feed is registered for: the profile's LOINC code (its first, sorted)."""
    return min(code for system, code in profile.codes if system == LOINC)


def measure_labels() -> dict[str, str]:
    """Each measure type's name in English (``85354-9`` → ``Blood pressure``), as the portal shows it."""
    return {measure_type(p): p.label for p in (*MEASURE_PROFILES, *BIOLOGY_PROFILES)}


def measure_types() -> frozenset[str]:
    """Every measure type of the flux and the biology flux (``carnet feeds add --kind measures --classes``)."""
    return frozenset(measure_type(p) for p in (*MEASURE_PROFILES, *BIOLOGY_PROFILES))


def _profiles_of(resource: Mapping[str, Any]) -> list[str]:
    meta = resource.get("meta")
    profiles = meta.get("profile") if isinstance(meta, dict) else None
    return [p for p in profiles if isinstance(p, str)] if isinstance(profiles, list) else []


def _claims(resource: Mapping[str, Any], profile_id: str) -> bool:
    return any(p.rstrip("/").endswith(f"StructureDefinition/{profile_id}") for p in _profiles_of(resource))


def is_measure_bundle(bundle: Mapping[str, Any]) -> bool:
    """Tell whether a Bundle claims the measures or the biology flux profile (``meta.profile``)."""
    return bundle.get("resourceType") == "Bundle" and (
        _claims(bundle, MEASURES_BUNDLE) or _claims(bundle, BIOLOGY_BUNDLE)
    )


def _fail(message: str, path: str) -> InvalidResource:
    return InvalidResource(message, expression=(path,))


def read_measure_bundle(bundle: Mapping[str, Any]) -> MeasureBundle:
    """Check a measures or biology Bundle against its profiles; return it keyed for deduplication.

    Raises:
        InvalidResource: not a transaction of the flux's shape, or an Observation outside its profile.
    """
    biology = _claims(bundle, BIOLOGY_BUNDLE)
    if bundle.get("type") != "transaction":
        raise _fail("A measures Bundle is a transaction (Bundle.type = transaction).", "Bundle.type")
    raw = bundle.get("entry")
    if not isinstance(raw, list) or not raw:
        raise _fail(
            "A measures Bundle has entries: one Observation, and optionally its Device.", "Bundle.entry"
        )
    entries: list[dict[str, Any]] = []
    observations: list[int] = []
    devices: list[int] = []
    reports: list[int] = []
    for index, entry in enumerate(raw):
        path = f"Bundle.entry[{index}]"
        resource = entry.get("resource") if isinstance(entry, dict) else None
        request = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or not isinstance(request, dict):
            raise _fail("Each entry has a resource and a request.", path)
        kind = resource.get("resourceType")
        allowed = ("Observation", "DiagnosticReport") if biology else ("Observation", "Device")
        if kind not in allowed:
            raise _fail(
                f"A {'biology' if biology else 'measures'} Bundle carries only {' and '.join(allowed)}.", path
            )
        if request.get("method") != "POST" or request.get("url") != kind:
            raise _fail(
                f"Each entry is POSTed to its type: request.method POST, request.url {kind}.",
                f"{path}.request",
            )
        entries.append({**entry, "resource": copy.deepcopy(resource)})
        {"Observation": observations, "Device": devices, "DiagnosticReport": reports}[kind].append(index)
    if biology:
        if len(reports) != 1:
            raise _fail("A biology Bundle carries exactly one DiagnosticReport.", "Bundle.entry")
        if not observations:
            raise _fail("A biology Bundle carries at least one result (Observation).", "Bundle.entry")
    elif len(observations) != 1 or len(devices) > 1:
        raise _fail(
            "A measures Bundle carries exactly one Observation and at most one Device.", "Bundle.entry"
        )
    table = BIOLOGY_PROFILES if biology else MEASURE_PROFILES
    profiles: list[MeasureProfile] = []
    for index in observations:
        resource = entries[index]["resource"]
        profile = _check_observation(resource, table, f"Bundle.entry[{index}].resource", biology=biology)
        if any(p.profile == profile.profile for p in profiles):
            raise _fail(f"A biology Bundle carries at most one {profile.label}.", f"Bundle.entry[{index}]")
        profiles.append(profile)
        device = _device_key(resource, entries, devices)
        resource.setdefault("identifier", []).append(
            {"system": MEASURE_ID_SYSTEM, "value": _measure_key(resource, device)}
        )
    if biology:
        names = {p.profile for p in profiles}
        if ("mesures-observation-cholesterol-total" in names) != (
            "mesures-observation-cholesterol-hdl" in names
        ):
            raise _fail(
                "Total and HDL cholesterol come together (mesures-inv-1, mesures-inv-2).", "Bundle.entry"
            )
    return MeasureBundle(
        kind="biology" if biology else "measures",
        entries=tuple(entries),
        profiles=tuple(profiles),
        devices=tuple(devices),
    )


def _codings(concept: object) -> list[tuple[str, str]]:
    codings = concept.get("coding") if isinstance(concept, dict) else None
    out = []
    for coding in codings if isinstance(codings, list) else []:
        if isinstance(coding, dict) and isinstance(coding.get("code"), str):
            out.append((str(coding.get("system", "")), coding["code"]))
    return out


def _check_observation(
    resource: dict[str, Any], table: Sequence[MeasureProfile], path: str, *, biology: bool
) -> MeasureProfile:
    """Find the profile an Observation's code names and check the Observation against it."""
    codes = set(_codings(resource.get("code")))
    profile = next((p for p in table if p.codes & codes), None)
    if profile is None:
        kinds = "biology results" if biology else "measures"
        raise _fail(
            f"Observation.code is not one of the {kinds} of the Mesures de santé profiles.", f"{path}.code"
        )
    if resource.get("status") not in _STATUSES:
        raise _fail("Observation.status is final, preliminary, amended or corrected.", f"{path}.status")
    subject = resource.get("subject")
    if not isinstance(subject, dict) or not isinstance(subject.get("reference"), str):
        raise _fail("Observation.subject references the patient.", f"{path}.subject")
    if not isinstance(resource.get("effectiveDateTime"), str) and not isinstance(
        resource.get("effectivePeriod"), dict
    ):
        raise _fail("Observation.effective[x] says when the measure was taken.", f"{path}.effective")
    if profile.vital_sign and (
        "http://terminology.hl7.org/CodeSystem/observation-category",
        VITAL_SIGNS,
    ) not in {(s, c) for concept in resource.get("category") or [] for s, c in _codings(concept)}:
        raise _fail("Observation.category is vital-signs for this profile.", f"{path}.category")
    if profile.components is not None:
        _check_components(resource, profile, path)
    elif "dataAbsentReason" not in resource:
        _check_quantity(resource.get("valueQuantity"), profile.units, f"{path}.valueQuantity", profile.label)
    return profile


def _check_quantity(
    quantity: object, units: Mapping[str, tuple[float, float]], path: str, label: str
) -> float:
    if not isinstance(quantity, dict):
        raise _fail(f"{label}: the value is a Quantity (valueQuantity).", path)
    if quantity.get("system") != UCUM:
        raise _fail(f"{label}: the unit is a UCUM code (system {UCUM}).", f"{path}.system")
    unit = quantity.get("code")
    if not isinstance(unit, str) or unit not in units:
        raise _fail(f"{label}: the unit {str(unit)[:20]!r} is not one of {', '.join(units)}.", f"{path}.code")
    value = quantity.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise _fail(f"{label}: the value is a number.", f"{path}.value")
    low, high = units[unit]
    if not low <= value <= high:
        raise _fail(
            f"{label}: {value} {unit} is outside what can be measured ({low}–{high} {unit}).", f"{path}.value"
        )
    return float(value)


def _check_components(resource: Mapping[str, Any], profile: MeasureProfile, path: str) -> None:
    components = profile.components or {}
    found: dict[str, float] = {}
    for index, component in enumerate(resource.get("component") or []):
        codes = {c for s, c in _codings((component or {}).get("code")) if s == LOINC}
        for code, (label, units) in components.items():
            if code in codes and "dataAbsentReason" not in component:
                found[code] = _check_quantity(
                    component.get("valueQuantity"), units, f"{path}.component[{index}].valueQuantity", label
                )
    missing = [label for code, (label, _) in components.items() if code not in found]
    if missing:
        raise _fail(
            f"{profile.label}: the {' and '.join(missing).lower()} component is missing.", f"{path}.component"
        )
    if found["8462-4"] >= found["8480-6"]:
        raise _fail("Blood pressure: the diastolic value is below the systolic value.", f"{path}.component")


def _device_key(
    resource: Mapping[str, Any], entries: Sequence[Mapping[str, Any]], devices: Sequence[int]
) -> str:
    """What names the device of a measure: its first identifier, else its serial number, else nothing."""
    for index in devices:
        device = entries[index]["resource"]
        for identifier in device.get("identifier") or []:
            if isinstance(identifier, dict) and identifier.get("value"):
                return f"{identifier.get('system', '')}|{identifier['value']}"
        if isinstance(device.get("serialNumber"), str):
            return f"serial|{device['serialNumber']}"
    return ""


def _measure_key(resource: Mapping[str, Any], device: str) -> str:
    """A stable hash of what a measure says: patient, code, time, values, device."""
    said = {
        "subject": (resource.get("subject") or {}).get("reference"),
        "code": sorted(_codings(resource.get("code"))),
        "effective": resource.get("effectiveDateTime") or resource.get("effectivePeriod"),
        "value": resource.get("valueQuantity"),
        "components": [
            (sorted(_codings(c.get("code"))), c.get("valueQuantity")) for c in resource.get("component") or []
        ],
        "device": device,
    }
    return hashlib.sha256(json.dumps(said, sort_keys=True, default=str).encode()).hexdigest()[:40]
