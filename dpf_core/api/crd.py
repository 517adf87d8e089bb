"""CustomResourceDefinition manifests generated from the pydantic models.

The schema is walked from the model's type annotations (not from pydantic's JSON Schema, which is full of
$ref and anyOf-with-null) so the result is a structural schema the API server accepts as is:

- every node has a `type`, except int-or-string nodes, which carry `x-kubernetes-int-or-string` and the
  two-branch anyOf Kubernetes allows;
- Optional fields are simply not `required`; free-form values get `x-kubernetes-preserve-unknown-fields`;
- constraints (pattern, bounds, lengths, item counts) and scalar defaults come from the fields;
- an object-valued CRD default is declared on the field as `json_schema_extra={"default": {...}}`, because
  a `default_factory` is often only a convenience for Python callers, not a CRD default;
- `WithJsonSchema(...)` on a type replaces the generated node (resource.Quantity uses it).
"""

from __future__ import annotations

import copy
import datetime
import enum
import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import yaml
from pydantic import BaseModel, WithJsonSchema
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python

from . import registry
from .meta import KubeObject

_Schema = dict[str, Any]

_SCALARS: dict[type, str] = {str: "string", bool: "boolean", int: "integer", float: "number"}
_CONSTRAINTS = ("pattern", "ge", "le", "gt", "lt", "min_length", "max_length", "multiple_of")


def _description(text: str | None) -> str | None:
    return inspect.cleandoc(text) if text else None


def _model_doc(cls: type[BaseModel]) -> str | None:
    # __doc__ is inherited by attribute lookup; only a class's own docstring describes it.
    return _description(cls.__dict__.get("__doc__"))


def _is_none(tp: Any) -> bool:
    return tp is None or tp is type(None)


def _split_annotated(tp: Any) -> tuple[Any, list[Any]]:
    """Strip (nested) Annotated; return the bare type and its metadata, FieldInfos flattened."""
    metadata: list[Any] = []
    while typing.get_origin(tp) is typing.Annotated:
        args = typing.get_args(tp)
        tp = args[0]
        for m in args[1:]:
            if isinstance(m, FieldInfo):
                metadata.extend(m.metadata)
                metadata.append(m)
            else:
                metadata.append(m)
    return tp, metadata


def _apply_constraints(node: _Schema, metadata: Sequence[Any]) -> None:
    kind = node.get("type")
    for m in metadata:
        if isinstance(m, FieldInfo):
            if m.description and "description" not in node:
                node["description"] = _description(m.description)
            continue
        for attr in _CONSTRAINTS:
            value = getattr(m, attr, None)
            if value is None:
                continue
            if attr == "pattern":
                node["pattern"] = value if isinstance(value, str) else value.pattern
            elif attr == "ge":
                node["minimum"] = value
            elif attr == "le":
                node["maximum"] = value
            elif attr == "gt":
                node["minimum"], node["exclusiveMinimum"] = value, True
            elif attr == "lt":
                node["maximum"], node["exclusiveMaximum"] = value, True
            elif attr == "multiple_of":
                node["multipleOf"] = value
            elif attr in ("min_length", "max_length"):
                bound = "min" if attr == "min_length" else "max"
                suffix = {"array": "Items", "object": "Properties"}.get(str(kind), "Length")
                node[f"{bound}{suffix}"] = value


def _literal_schema(values: tuple[Any, ...]) -> _Schema:
    plain = [v.value if isinstance(v, enum.Enum) else v for v in values]
    kinds = {_SCALARS.get(type(v), "string") for v in plain}
    return {"type": kinds.pop() if len(kinds) == 1 else "string", "enum": plain}


def _preserve() -> _Schema:
    return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


class _Walker:
    def __init__(self) -> None:
        self._stack: list[type[BaseModel]] = []

    def type_schema(self, tp: Any, metadata: Sequence[Any] = ()) -> _Schema:
        tp, inner = _split_annotated(tp)
        metadata = [*inner, *metadata]
        for m in metadata:
            if isinstance(m, WithJsonSchema) and m.json_schema is not None:
                return copy.deepcopy(dict(m.json_schema))
        node = self._bare(tp)
        _apply_constraints(node, metadata)
        return node

    def _bare(self, tp: Any) -> _Schema:
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if tp is Any or tp is object:
            return _preserve()
        if origin is Literal:
            return _literal_schema(args)
        if origin in (typing.Union, types.UnionType):
            return self._union([a for a in args if not _is_none(a)])
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return _literal_schema(tuple(tp))
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            return self.model_schema(tp)
        if tp in _SCALARS:
            return {"type": _SCALARS[tp]}
        if tp is datetime.datetime:
            return {"type": "string", "format": "date-time"}
        if tp is datetime.date:
            return {"type": "string", "format": "date"}
        container = origin or tp
        if isinstance(container, type) and issubclass(container, Mapping):
            value = args[1] if len(args) == 2 else Any
            if _split_annotated(value)[0] is Any:
                return _preserve()
            return {"type": "object", "additionalProperties": self.type_schema(value)}
        if isinstance(container, type) and issubclass(container, (list, tuple, set, frozenset, Sequence)) and container is not str:
            item = args[0] if args else Any
            return {"type": "array", "items": self.type_schema(item)}
        raise TypeError(f"cannot render {tp!r} as an OpenAPI schema")

    def _union(self, members: list[Any]) -> _Schema:
        if len(members) == 1:
            return self.type_schema(members[0])
        bare = {_split_annotated(m)[0] for m in members}
        if bare == {int, str}:
            return {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}
        if all(isinstance(b, type) and issubclass(b, BaseModel) for b in bare):
            # A structural schema has one shape per node: the union of the members' properties.
            merged: _Schema = {"type": "object", "properties": {}}
            for b in bare:
                merged["properties"].update(self.model_schema(b).get("properties", {}))
            return merged
        schemas = [self.type_schema(m) for m in members]
        kinds = {s.get("type") for s in schemas}
        if len(kinds) == 1 and None not in kinds:
            return schemas[0]
        return _preserve()

    def model_schema(self, cls: type[BaseModel]) -> _Schema:
        node: _Schema = {"type": "object"}
        doc = _model_doc(cls)
        if doc:
            node["description"] = doc
        if cls in self._stack:
            # OpenAPI in a CRD cannot recurse: below the first repetition the value is kept as is.
            node["x-kubernetes-preserve-unknown-fields"] = True
            return node
        self._stack.append(cls)
        try:
            properties: _Schema = {}
            required: list[str] = []
            for name, field in cls.model_fields.items():
                if field.exclude is True:
                    continue
                wire = field.serialization_alias or field.alias or name
                properties[wire] = self.field_schema(field)
                if field.is_required():
                    required.append(wire)
        finally:
            self._stack.pop()
        if properties:
            node["properties"] = dict(sorted(properties.items()))
        if required:
            node["required"] = sorted(required)
        if cls.model_config.get("extra") == "allow":
            node["x-kubernetes-preserve-unknown-fields"] = True
        rules = cls.__dict__.get("CEL_RULES")
        if rules:
            node["x-kubernetes-validations"] = [{"message": message, "rule": rule} for rule, message in rules]
        return node

    def field_schema(self, field: FieldInfo) -> _Schema:
        node = self.type_schema(field.annotation, field.metadata)
        if field.description:
            node["description"] = _description(field.description)
        default = _crd_default(field)
        if default is not None:
            node["default"] = default
        extra = field.json_schema_extra
        if isinstance(extra, dict):
            node.update(copy.deepcopy(to_jsonable_python(extra)))
        return node


def _crd_default(field: FieldInfo) -> Any:
    """Plain defaults only; factories are Python conveniences unless declared via json_schema_extra."""
    if field.default is PydanticUndefined or field.default is None or field.default_factory is not None:
        return None
    value = to_jsonable_python(field.default, by_alias=True, exclude_none=True)
    return None if value in ({}, []) else value


def openapi_schema(cls: type[KubeObject]) -> dict[str, Any]:
    """The structural openAPIV3Schema of a kind, as its CRD carries it."""
    walker = _Walker()
    root = walker.model_schema(cls)
    properties = root.setdefault("properties", {})
    properties["apiVersion"] = {
        "type": "string",
        "description": "APIVersion defines the versioned schema of this representation of an object.",
    }
    properties["kind"] = {"type": "string", "description": "Kind is a string value representing the REST resource."}
    properties["metadata"] = {"type": "object", "description": "Standard object's metadata."}
    for part, state in (("spec", "desired"), ("status", "observed")):
        if part in properties and not properties[part].get("description"):
            properties[part]["description"] = f"The {state} state of the {cls.KIND.kind}."
    root["properties"] = dict(sorted(properties.items()))
    required = [r for r in root.get("required", []) if r not in ("apiVersion", "kind", "metadata")]
    if required:
        root["required"] = required
    else:
        root.pop("required", None)
    _add_transition_rules(root, registry.hooks_for(cls).immutable_rules)
    return root


def _add_transition_rules(root: _Schema, rules: Mapping[str, tuple[str, str]]) -> None:
    """Immutability as DPF's CRDs state it: an x-kubernetes-validations transition rule on the field itself,
    so a real API server holding these CRDs refuses the change as the twin's admission does."""
    for path, (rule, message) in rules.items():
        node: _Schema | None = root
        for part in path.rstrip("?").split("."):
            node = node.get("properties", {}).get(part) if node is not None else None
        if node is None:
            raise ValueError(f"immutable rule on {path!r}: no such field in the schema")
        node.setdefault("x-kubernetes-validations", []).append({"message": message, "rule": rule})


_AGE_COLUMN = {"jsonPath": ".metadata.creationTimestamp", "name": "Age", "type": "date"}


def _printer_columns(cls: type[KubeObject]) -> list[dict[str, Any]]:
    columns = [c.model_dump(by_alias=True, exclude_none=True) for c in cls.KIND.printer_columns]
    if columns and not any(c["name"] == "Age" for c in columns):
        columns.append(dict(_AGE_COLUMN))
    return columns


def render_crd(cls: type[KubeObject]) -> dict[str, Any]:
    """The apiextensions.k8s.io/v1 CustomResourceDefinition of a kind."""
    info = cls.KIND
    names: dict[str, Any] = {
        "kind": info.kind,
        "listKind": f"{info.kind}List",
        "plural": info.plural,
        "singular": info.singular,
    }
    if info.short_names:
        names["shortNames"] = list(info.short_names)
    if info.categories:
        names["categories"] = list(info.categories)
    version: dict[str, Any] = {
        "name": info.version,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": openapi_schema(cls)},
    }
    if info.status_subresource:
        version["subresources"] = {"status": {}}
    columns = _printer_columns(cls)
    if columns:
        version["additionalPrinterColumns"] = columns
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{info.plural}.{info.group}",
            "annotations": {"helm.sh/resource-policy": "keep"},
        },
        "spec": {
            "group": info.group,
            "names": names,
            "scope": "Namespaced" if info.namespaced else "Cluster",
            "versions": [version],
        },
    }


def render_all() -> list[dict[str, Any]]:
    """CRDs of every registered DPF kind (external kinds are only modelled, never installed by us)."""
    return [render_crd(cls) for cls in registry.dpf_kinds()]


_BaseDumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _NoAliasDumper(_BaseDumper):  # type: ignore[valid-type,misc]
    # Anchors/aliases are legal YAML but unreadable in a CRD and rejected by some tools.
    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(crds: Sequence[Mapping[str, Any]]) -> str:
    """A multi-document YAML stream, ready for `kubectl apply -f`."""
    return yaml.dump_all(
        [dict(c) for c in crds], Dumper=_NoAliasDumper, sort_keys=False, explicit_start=True, allow_unicode=True
    )
