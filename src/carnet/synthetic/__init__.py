"""Synthetic French patients for demos, tests and benchmarks, as FHIR R4 transaction bundles.

::

    from carnet.synthetic import generate_population

    for patient in generate_population(100, seed=42):
        patient.bundle      # a FHIR R4 transaction Bundle (dict), loadable on its own
        patient.ins         # ("urn:oid:1.2.250.1.213.1.4.10", "279035121518989")
        patient.to_json()   # the same bundle as bytes, identical for the same seed

Everything is drawn from ``random.Random`` seeded by the caller: names and traits of the French
population, a test INS (NIR with its key), a medical profile, and documents of every DMP class as
DocumentReference + Binary pairs holding CDA R2 documents (level 1 with a PDF, or level 3). None of
it describes a real person; phone numbers are in the ranges reserved for fiction.
"""

from __future__ import annotations

from carnet.synthetic.documents import KINDS, DocumentKind, Format, class_of, format_of
from carnet.synthetic.nir import compute_nir_key, make_nir, validate_nir
from carnet.synthetic.population import DEFAULT_AS_OF, PatientBundle, generate_population
from carnet.synthetic.professionals import Discipline, Pool, Professional, generate_professionals

__all__ = [
    "DEFAULT_AS_OF",
    "KINDS",
    "Discipline",
    "DocumentKind",
    "Format",
    "PatientBundle",
    "Pool",
    "Professional",
    "class_of",
    "compute_nir_key",
    "format_of",
    "generate_population",
    "generate_professionals",
    "make_nir",
    "validate_nir",
]
