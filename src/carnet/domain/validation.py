"""Validate resources against FHIR R4 with the ``fhir.resources`` R4B models.

The R4B models accept R4 content (checked on all Synthea and HL7 R4 examples); types that
exist only in R4 are listed in ``resources.UNSUPPORTED_TYPES``. The model is used to
validate only: the stored JSON is the submitted JSON, so nothing is rewritten. A resource the
quick check derived from the same models accepts (:mod:`carnet.domain.validation_fast`, ~15×
cheaper) is not walked by the models again; everything else is, and their messages stand.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import Any

from pydantic import ValidationError

from carnet.domain.documents import REMEMBERED_BASE64, decode_base64
from carnet.domain.errors import InvalidResource
from carnet.domain.resources import SUPPORTED_TYPES
from carnet.domain.validation_fast import accepts

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
    light, large = _without_large_data(resource)
    for element, data in large:
        decode_base64(data, element)  # once: its later readers find it decoded
    if accepts(light):
        return  # the models would accept it too; anything unusual is theirs to judge below
    try:
        _model(resource_type).model_validate(light)
    except ValidationError as exc:
        problems = exc.errors(include_url=False, include_input=False)[:5]
        where = [".".join(str(p) for p in e["loc"]) or resource_type for e in problems]
        detail = "; ".join(f"{w}: {_plain(e['msg'])}" for w, e in zip(where, problems, strict=True))
        raise InvalidResource(
            f"{resource_type} is not valid FHIR R4: {detail[:600]}", expression=where
        ) from None
    except (ValueError, TypeError) as exc:
        raise InvalidResource(f"{resource_type} is not valid FHIR R4: {_plain(str(exc))[:300]}") from None
    except KeyError:  # fhir_core looks an inner resource's type up without checking that it exists
        raise InvalidResource(
            f"{resource_type} is not valid FHIR R4: a resource inside it (contained) has an unknown resourceType."
        ) from None


#: What the model sees instead of a large base64 value already checked by ``decode_base64``.
_PLACEHOLDER = "AAAA"


def _without_large_data(resource: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """A copy of a Binary or DocumentReference whose large base64 data the model need not walk.

    The model would decode each value again (and a Simplified Publish validates the same
    document several times); such values are checked once by :func:`decode_base64` instead.
    Returns the copy and the ``(element path, value)`` of each value set aside.
    """
    light = dict(resource)
    large: list[tuple[str, str]] = []
    resource_type = light.get("resourceType")
    if resource_type == "Binary":
        data = light.get("data")
        if isinstance(data, str) and len(data) >= REMEMBERED_BASE64:
            large.append(("Binary.data", data))
            light["data"] = _PLACEHOLDER
    elif resource_type == "DocumentReference" and isinstance(light.get("content"), list):
        contents = list(light["content"])
        for index, content in enumerate(contents):
            attachment = content.get("attachment") if isinstance(content, dict) else None
            data = attachment.get("data") if isinstance(attachment, dict) else None
            if isinstance(data, str) and len(data) >= REMEMBERED_BASE64 and isinstance(attachment, dict):
                large.append((f"DocumentReference.content[{index}].attachment.data", data))
                contents[index] = {**content, "attachment": {**attachment, "data": _PLACEHOLDER}}
        light["content"] = contents
    return light, large
