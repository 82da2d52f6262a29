"""A fast acceptance check for FHIR R4 resources, derived from the ``fhir.resources`` R4B models.

Validating with the models costs ~0.3 ms per Synthea resource: each nested element is a pydantic
model whose Python validators walk every one of its fields. :func:`accepts` walks the submitted
JSON instead, with a plan read once per model class from the same models: the fields by JSON
name, list or single, primitive or complex, the required ones and the choice groups
(``value[x]``). Each primitive value is checked by the model's own pydantic validator for that
field's type, and a value once accepted for a type is remembered (codes, systems and units
repeat across a Bundle).

It only ever says *yes* or *not sure*: ``True`` when every rule the models apply holds, ``False``
as soon as anything is unusual (an unknown or ``_`` element, a ``null``, an empty list or object,
a contained resource, a class with validators of its own…). :func:`carnet.domain.validation.validate`
then asks the models, whose verdict and messages stand. A resource this check accepts is one
the models accept (``tests/property/test_validation_fast.py`` compares the two on the Synthea
and HL7 examples and on mutations of them).
"""

from __future__ import annotations

import importlib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pydantic import TypeAdapter, ValidationError

#: Primitive values up to this length are remembered once accepted (a narrative's XHTML is not).
_REMEMBERED = 100
#: How many accepted primitive values each type keeps before starting over.
_MEMORY = 2_000
#: The validators every model has (fhir_core's base): the plan does what they do.
_BASE_VALIDATORS = {"reject_null_complex_elements", "validate_after_model_construction"}


@dataclass
class _Primitive:
    """A primitive type's validator and the values it accepted."""

    adapter: TypeAdapter[Any]
    accepted: set[tuple[type, Any]] = field(default_factory=set)

    def check(self, value: Any) -> bool:
        key = (type(value), value)
        try:
            if key in self.accepted:
                return True
        except TypeError:  # an unhashable value: not a JSON primitive
            return False
        try:
            self.adapter.validate_python(value)
        except (ValidationError, ValueError, TypeError):
            return False
        if isinstance(value, str) and len(value) > _REMEMBERED:
            return True
        if len(self.accepted) >= _MEMORY:
            self.accepted.clear()
        self.accepted.add(key)
        return True


@dataclass(frozen=True)
class _Element:
    """One field of a model: its JSON name, list or not, and its primitive check or complex plan."""

    is_list: bool
    primitive: _Primitive | None
    complex_type: Any  # the model class of a complex element (its plan is looked up lazily)
    resources: str | None = None  # a contained resource: the prefix of its model by resourceType


@dataclass(frozen=True)
class _Plan:
    """What a model class requires of a JSON object; ``usable`` False: always ask the model."""

    usable: bool
    elements: dict[str, _Element]
    required: tuple[str, ...]
    choices: tuple[tuple[tuple[str, ...], bool], ...]  # (the JSON names of a group, required)


def accepts(resource: Mapping[str, Any]) -> bool:
    """True when the R4B model of ``resource["resourceType"]`` certainly accepts it; False: not sure."""
    from fhir.resources.R4B import get_fhir_model_class

    resource_type = resource.get("resourceType")
    try:
        model = get_fhir_model_class(str(resource_type))
    except (KeyError, ValueError, ImportError):
        return False
    body = {k: v for k, v in resource.items() if k != "resourceType"}
    try:
        return _object(_plan(model), body)
    except RecursionError:
        return False


def _object(plan: _Plan, data: Mapping[str, Any]) -> bool:
    if not plan.usable or not data:
        return False
    elements = plan.elements
    for name, value in data.items():
        element = elements.get(name)
        if element is None or value is None:
            return False
        items: Sequence[Any]
        if element.is_list:
            if type(value) is not list or not value:
                return False
            items = value
        else:
            if type(value) is list:
                return False
            items = (value,)
        primitive = element.primitive
        if primitive is not None:
            accepted = primitive.accepted
            for item in items:
                if type(item) is str and (str, item) in accepted:
                    continue  # most values: a code, system or unit met before
                if item is None or not primitive.check(item):
                    return False
            continue
        if element.resources is not None:
            for item in items:
                if type(item) is not dict:
                    return False
                kind = item.get("resourceType")
                inner = _resource_plan(element.resources, kind) if type(kind) is str else None
                body = {k: v for k, v in item.items() if k != "resourceType"}
                if inner is None or not _object(inner, body):
                    return False
            continue
        inner = _plan(element.complex_type)
        for item in items:
            if type(item) is not dict or not _object(inner, item):
                return False
    for name in plan.required:
        if name not in data:
            return False
    for group, required in plan.choices:
        present = sum(1 for name in group if name in data)
        if present > 1 or (required and present == 0):
            return False
    return True


def _unwrap(annotation: Any) -> tuple[Any, bool] | None:
    """The item type of a field and whether it is a list; None: a shape the plan does not know."""
    is_list = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Union or origin is types.UnionType:
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return None
            annotation = args[0]
        elif origin in (list, typing.List):  # noqa: UP006 - the models say typing.List
            if is_list:
                return None
            is_list = True
            annotation = typing.get_args(annotation)[0]
        else:
            return annotation, is_list


@cache
def _adapter(annotation: Any) -> _Primitive:
    return _Primitive(TypeAdapter(annotation))


@cache
def _resource_plan(prefix: str, resource_type: Any) -> _Plan | None:
    """The plan of a contained resource's own model (chosen by its resourceType, as the models do)."""
    from fhir_core.constraints import FHIR_TYPES_MAPS

    path = FHIR_TYPES_MAPS.get(f"{prefix}{resource_type}Type")
    if not isinstance(path, str):
        return None
    module, _, name = path.rpartition(".")
    model = getattr(importlib.import_module(module), name)
    if not model.has_resource_base() or model.__resource_type__ != resource_type:
        return None
    return _plan(model)


@cache
def _plan(model: Any) -> _Plan:
    """Read a model class's fields once (cached per class)."""
    from fhir_core.types import FhirBase, FhirElementOrResourceBase

    unusable = _Plan(False, {}, (), ())
    decorators = model.__pydantic_decorators__
    if set(decorators.model_validators) - _BASE_VALIDATORS or decorators.field_validators:
        return unusable
    elements: dict[str, _Element] = {}
    for name, info in model.model_fields.items():
        alias = info.alias or name
        if name.endswith("__ext") or name == "fhir_comments" or alias.startswith("_"):
            continue  # primitive extensions ("_status"), comments: not planned, the model decides
        shape = _unwrap(info.annotation)
        if shape is None or info.metadata:
            return unusable
        item, is_list = shape
        if isinstance(item, type) and issubclass(item, FhirBase):
            if issubclass(item, FhirElementOrResourceBase):
                if item.get_model_klass().__name__ != "Resource":
                    continue  # Element-typed elements: not planned, the model decides
                elements[alias] = _Element(is_list, None, None, item._prefix)
                continue
            elements[alias] = _Element(is_list, None, item.get_model_klass())
        else:
            primitive = _adapter(info.annotation if not is_list else item)
            elements[alias] = _Element(is_list, primitive, None)
    sample = model.model_construct()
    aliases = {name: (info.alias or name) for name, info in model.model_fields.items()}
    required = [aliases[n] for n, info in model.model_fields.items() if info.is_required()]
    required += [aliases[name] for name, _ in sample.get_required_fields()]
    choices = []
    for names in sample.get_one_of_many_fields().values():
        first = model.model_fields[names[0]].json_schema_extra or {}
        choices.append((tuple(aliases[n] for n in names), first.get("one_of_many_required") is True))
    if any(name not in elements for name in required):
        return unusable
    return _Plan(True, elements, tuple(dict.fromkeys(required)), tuple(choices))
