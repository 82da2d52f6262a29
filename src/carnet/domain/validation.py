"""Validate resources against FHIR R4 with the ``fhir.resources`` R4B models.

The R4B models accept R4 content (checked on all Synthea and HL7 R4 examples); types that
exist only in R4 are listed in ``resources.UNSUPPORTED_TYPES``. The model is used to
validate only: the stored JSON is the submitted JSON, so nothing is rewritten.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import Any

from pydantic import ValidationError

from carnet.domain.errors import InvalidResource
from carnet.domain.resources import SUPPORTED_TYPES

#: How the model library names a Python type in a message ("got type <class 'decimal.Decimal'>").
_PYTHON_CLASS = re.compile(r"(?:type )?<class '(?:[\w.]+\.)?(\w+)'>")
_JSON_NAMES = {
    "str": "a string",
    "int": "a number",
    "float": "a number",
    "Decimal": "a number",
    "bool": "a boolean",
    "dict": "an object",
    "list": "an array",
    "NoneType": "null",
}


def _plain(message: str) -> str:
    """Say Python types in JSON's words: the client sent JSON and never sees our class paths."""
    return _PYTHON_CLASS.sub(lambda m: _JSON_NAMES.get(m.group(1), "a value"), message)


@cache
def _model(resource_type: str) -> Any:
    from fhir.resources.R4B import get_fhir_model_class

    return get_fhir_model_class(resource_type)


def validate(resource: Mapping[str, Any]) -> None:
    """Check that ``resource`` is a valid FHIR R4 resource of a supported type.

    Raises:
        InvalidResource: the first problems found, with their element paths.
    """
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or resource_type not in SUPPORTED_TYPES:
        shown = str(resource_type)[:64]
        raise InvalidResource(
            f"resourceType {shown!r} is not a resource type this server stores; see /fhir/metadata.",
            expression=("resourceType",),
        )
    try:
        _model(resource_type).model_validate(dict(resource))
    except ValidationError as exc:
        problems = exc.errors(include_url=False, include_input=False)[:5]
        where = [".".join(str(p) for p in e["loc"]) or resource_type for e in problems]
        detail = "; ".join(f"{w}: {_plain(e['msg'])}" for w, e in zip(where, problems, strict=True))
        raise InvalidResource(
            f"{resource_type} is not valid FHIR R4: {detail[:600]}", expression=where
        ) from None
    except (ValueError, TypeError) as exc:
        raise InvalidResource(f"{resource_type} is not valid FHIR R4: {_plain(str(exc))[:300]}") from None
