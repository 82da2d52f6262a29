"""The authorisation matrix (data): which DMP classCodes each profession reads (arrêté 26/10/2023)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType
from typing import Any

from carnet.domain.access import Target
from carnet.domain.errors import ConfigurationError

#: DMP document classes (classCode, TRE_A03-ClasseDocument).
CLASS_CODES = frozenset({"10", "11", "31", "42", "43", "44", "45", "52", "60", "90", "95"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Matrix:
    """The authorisation matrix: which DMP classCodes each profession (or profession/specialty) reads.

    ``rows`` maps ``"<TRE_G15>"`` or ``"<TRE_G15>/<TRE_R38>"`` to classCodes; a specialty row,
    when present, replaces the profession's row. ``resource_classes`` gives the classCode of
    resource types that are not documents (a MedicationDispense is a dispensation, ``43``);
    ``document_types`` are the types whose reads need :class:`DocumentFacts`.
    """

    version: str
    source: str
    rows: Mapping[str, frozenset[str]]
    resource_classes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    document_types: frozenset[str] = frozenset()

    def classes_for(self, profession: str | None, specialty: str | None) -> frozenset[str]:
        """Return the classCodes a profession (with its specialty) may read; none if unknown."""
        if profession is None:
            return frozenset()
        if specialty is not None and f"{profession}/{specialty}" in self.rows:
            return self.rows[f"{profession}/{specialty}"]
        return self.rows.get(profession, frozenset())

    def class_of(self, target: Target) -> str | None:
        """Return the classCode of what ``target`` touches: its facts, else its resource type's."""
        if target.document is not None and target.document.class_code is not None:
            return target.document.class_code
        return self.resource_classes.get(target.resource_type)


def _class_codes(value: object, where: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(c, str) and c in CLASS_CODES for c in value):
        raise ConfigurationError(
            f"{where} must be a list of DMP classCodes ({', '.join(sorted(CLASS_CODES))})."
        )
    return frozenset(value)


def load_matrix(data: Mapping[str, Any]) -> Matrix:
    """Build a :class:`Matrix` from its JSON form (docs/policy.md shows it).

    ``{"version": str, "source": str, "rows": {key: {"classes": [classCode…], …}},
    "resource_classes": {resource type: classCode}, "document_types": [resource type…]}``;
    other members of a row (``label``, ``confirmed``) document it and are not read.

    Raises:
        ConfigurationError: a member is missing or of the wrong shape, or names an unknown classCode.
    """
    version, source, rows = data.get("version"), data.get("source"), data.get("rows")
    classes, types = data.get("resource_classes", {}), data.get("document_types", [])
    if not (
        isinstance(version, str)
        and isinstance(source, str)
        and isinstance(rows, dict)
        and all(isinstance(row, dict) for row in rows.values())
        and isinstance(classes, dict)
        and isinstance(types, list)
        and all(isinstance(t, str) for t in types)
    ):
        raise ConfigurationError(
            "The matrix needs a string version and source, an object of row objects, an object "
            "resource_classes and a list of document_types; see docs/policy.md."
        )
    parsed = {key: _class_codes(row.get("classes"), f"Matrix row {key!r}") for key, row in rows.items()}
    _class_codes(list(classes.values()), "The values of resource_classes")
    return Matrix(
        version=version,
        source=source,
        rows=MappingProxyType(parsed),
        resource_classes=MappingProxyType(dict(classes)),
        document_types=frozenset(types),
    )


#: The matrix shipped with Carnet (``carnet/domain/matrix.json``), loaded once.
MATRIX = load_matrix(json.loads(resources.files("carnet.domain").joinpath("matrix.json").read_text("utf-8")))
