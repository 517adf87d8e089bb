"""Admission: the path every write takes in every store (MemoryStore, twin API server, operator checks).

decode (schema, as the CRD's OpenAPI validation would) -> default (mutating webhooks + CRD defaults)
-> validate (validating webhooks, CEL rules, immutability). All bad fields of an object are collected into
one `Invalid` with wire paths, the way the API server reports them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from dpf_core.errors import BadRequest, FieldCause, Forbidden, Invalid

from . import registry
from .meta import KubeObject
from .registry import Reader


def _fmt_value(v: Any) -> str:
    try:
        text = json.dumps(v, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(v)
    return text if len(text) <= 120 else text[:117] + "..."


def _walk(raw: Any, loc: tuple[int | str, ...]) -> tuple[list[str], Any, bool]:
    """Follow a pydantic loc through the raw input; keep only the steps that exist in it.

    Union members and validator names show up in pydantic's loc ("int", "function-after[...]"); the
    steps that really name input keys/indices are the ones that resolve in the raw data.
    """
    path: list[str] = []
    node = raw
    found = True
    for step in loc:
        if isinstance(node, Mapping) and isinstance(step, str) and step in node:
            path.append(step)
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
            path[-1:] = [f"{path[-1]}[{step}]"] if path else [f"[{step}]"]
            node = node[step]
        elif isinstance(node, Mapping) and isinstance(step, str) and not step.startswith(("function-", "json-or-python")) and step not in ("int", "str", "bool", "float", "list", "dict") and not step.startswith("literal["):
            # A key the input lacks: a missing required field (or an unknown one reported by name).
            path.append(step)
            found = False
            break
        else:
            continue
    return path, node, found


def causes_from_validation_error(err: ValidationError, raw: Mapping[str, Any]) -> list[FieldCause]:
    merged: dict[str, FieldCause] = {}
    order: list[str] = []
    for e in err.errors(include_url=False):
        path, node, found = _walk(raw, tuple(e["loc"]))
        dotted = ".".join(path) or "<root>"
        etype = e["type"]
        if etype == "missing":
            cause = FieldCause(dotted, "Required value", "FieldValueRequired")
        elif etype == "extra_forbidden":
            cause = FieldCause(dotted, f'unknown field "{dotted}"', "FieldValueNotSupported")
        elif etype in ("literal_error", "enum"):
            expected = e.get("ctx", {}).get("expected", "")
            cause = FieldCause(dotted, f"Unsupported value: {_fmt_value(node)}: supported values: {expected}", "FieldValueNotSupported")
        elif etype == "string_pattern_mismatch":
            pattern = e.get("ctx", {}).get("pattern", "")
            cause = FieldCause(dotted, f"Invalid value: {_fmt_value(node)}: {dotted} in body should match '{pattern}'")
        elif etype in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
            cause = FieldCause(dotted, f"Invalid value: {_fmt_value(node)}: {dotted} in body {e['msg'].lower()}")
        elif etype in ("too_short", "too_long", "string_too_short", "string_too_long"):
            cause = FieldCause(dotted, f"Invalid value: {_fmt_value(node) if found else ''}: {e['msg']}", "FieldValueTooLong" if "long" in etype else "FieldValueInvalid")
        else:
            cause = FieldCause(dotted, f"Invalid value: {_fmt_value(node) if found else 'null'}: {e['msg']}")
        if dotted in merged:
            # Several union members failed on the same field: one cause, both reasons.
            prev = merged[dotted]
            if cause.message not in prev.message:
                merged[dotted] = FieldCause(dotted, f"{prev.message}; or {cause.message.split(': ', 2)[-1]}", prev.reason)
        else:
            merged[dotted] = cause
            order.append(dotted)
    return [merged[k] for k in order]


def _ident(raw: Mapping[str, Any]) -> tuple[str, str]:
    md = raw.get("metadata")
    name = ""
    if isinstance(md, Mapping):
        name = str(md.get("name") or md.get("generateName") or "")
    return str(raw.get("kind") or "Object"), name


def model_for(raw: Mapping[str, Any]) -> type[KubeObject]:
    registry.load_all()
    api_version, kind = raw.get("apiVersion"), raw.get("kind")
    if not isinstance(api_version, str) or not api_version or not isinstance(kind, str) or not kind:
        k, n = _ident(raw)
        causes = []
        if not isinstance(api_version, str) or not api_version:
            causes.append(FieldCause("apiVersion", "Required value", "FieldValueRequired"))
        if not isinstance(kind, str) or not kind:
            causes.append(FieldCause("kind", "Required value", "FieldValueRequired"))
        raise Invalid(k, n, causes)
    cls = registry.lookup(api_version, kind)
    if cls is None:
        raise BadRequest(f'no matches for kind "{kind}" in version "{api_version}"', kind=kind)
    return cls


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds (directly, in a list, or optional), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _field_models(cls: type[BaseModel]) -> dict[str, type[BaseModel] | None]:
    cached = _FIELD_MODELS.get(cls)
    if cached is None:
        cached = {}
        for name, info in cls.model_fields.items():
            sub = _model_in(info.annotation)
            cached[info.alias or name] = sub
            cached[name] = sub
        _FIELD_MODELS[cls] = cached
    return cached


_FIELD_MODELS: dict[type[BaseModel], dict[str, type[BaseModel] | None]] = {}


def prune_nulls(value: Any, cls: type[BaseModel]) -> Any:
    """Drop `null` entries of schema fields, as the API server prunes nulls of non-nullable fields before
    defaulting. Free-form objects (Helm values, x-kubernetes-preserve-unknown-fields) keep their nulls:
    Helm reads a null value as "remove this key"."""
    if not isinstance(value, Mapping):
        return value
    fields = _field_models(cls)
    out: dict[str, Any] = {}
    for k, v in value.items():
        if v is None and k in fields:
            continue
        sub = fields.get(k)
        if sub is not None:
            if isinstance(v, list):
                v = [prune_nulls(item, sub) for item in v]
            elif isinstance(v, Mapping):
                v = prune_nulls(v, sub)
        out[k] = v
    return out


def decode(raw: Mapping[str, Any], cls: type[KubeObject] | None = None) -> KubeObject:
    """Schema validation: the raw manifest -> its typed model, or Invalid listing every bad field."""
    if not isinstance(raw, Mapping):
        raise BadRequest(f"object must be a mapping, got {type(raw).__name__}")
    cls = cls or model_for(raw)
    raw = prune_nulls(raw, cls)
    try:
        return cls.model_validate(raw)
    except ValidationError as err:
        kind, name = _ident(raw)
        raise Invalid(kind, name, causes_from_validation_error(err, raw), group=cls.KIND.group) from None


def _get_path(d: Mapping[str, Any], dotted: str) -> Any:
    node: Any = d
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


_MISSING: Any = object()


def _typed_get(obj: Any, dotted: str) -> Any:
    """The value at a wire path, read from the typed object (field aliases or names); _MISSING when the
    path does not map onto fields (extra keys, lists)."""
    node = obj
    for part in dotted.split("."):
        if isinstance(node, BaseModel):
            fields = type(node).model_fields
            name = part if part in fields else next((n for n, f in fields.items() if f.alias == part), None)
            if name is None:
                return _MISSING
            node = getattr(node, name)
        elif isinstance(node, Mapping):
            node = node.get(part, _MISSING)
            if node is _MISSING:
                return _MISSING
        else:
            return None if node is None else _MISSING
    return node


def _immutability(new: KubeObject, old: KubeObject, paths: list[str]) -> list[FieldCause]:
    if not paths:
        return []
    # Equal typed values dump equal, so only a path whose typed values differ needs the wire comparison
    # (None against an empty default and the like): no full dump of both objects on every update.
    changed = []
    for p in paths:
        before, after = _typed_get(old, p.rstrip("?")), _typed_get(new, p.rstrip("?"))
        if before is _MISSING or after is _MISSING or before != after:
            changed.append(p)
    if not changed:
        return []
    nw, ow = new.wire(), old.wire()
    causes = []
    for p in changed:
        once_set = p.endswith("?")
        path = p.rstrip("?")
        before, after = _get_path(ow, path), _get_path(nw, path)
        if once_set and before in (None, "", {}, []):
            continue
        if before != after:
            causes.append(FieldCause(path, "Invalid value: field is immutable" + (" once set" if once_set else ""), "FieldValueInvalid"))
    return causes


def _raise_if(obj: KubeObject, causes: list[FieldCause]) -> None:
    if causes:
        raise Invalid(obj.kind, obj.name or obj.metadata.generate_name or "", causes, group=obj.KIND.group)


def _as_object(obj: KubeObject | Mapping[str, Any]) -> KubeObject:
    return obj if isinstance(obj, KubeObject) else decode(obj)


def default(obj: KubeObject) -> KubeObject:
    for d in registry.hooks_for(type(obj)).default:
        d(obj)
    return obj


def admit_create(obj: KubeObject | Mapping[str, Any], reader: Reader, *, copy: bool = True) -> KubeObject:
    """Decode, default and validate a new object. Returns a private object the caller may store
    (`copy=False` when the caller already holds a private one, e.g. a freshly decoded patch result)."""
    o = _as_object(obj)
    if copy and isinstance(obj, KubeObject):
        o = o.deepcopy()
    hooks = registry.hooks_for(type(o))
    for d in hooks.default:
        d(o)
    causes: list[FieldCause] = []
    for v in hooks.validate_create:
        causes.extend(v(o, reader))
    _raise_if(o, causes)
    return o


def admit_update(new: KubeObject | Mapping[str, Any], old: KubeObject, reader: Reader, *, copy: bool = True) -> KubeObject:
    o = _as_object(new)
    if copy and isinstance(new, KubeObject):
        o = o.deepcopy()
    hooks = registry.hooks_for(type(o))
    for d in hooks.default:
        d(o)
    causes = _immutability(o, old, hooks.immutable)
    for v in hooks.validate_update:
        causes.extend(v(o, old, reader))
    _raise_if(o, causes)
    return o


def admit_delete(old: KubeObject, reader: Reader) -> None:
    for v in registry.hooks_for(type(old)).validate_delete:
        message = v(old, reader)
        if message:
            raise Forbidden(
                f'admission webhook denied the request: {message}', kind=old.kind, name=old.name, group=old.KIND.group
            )


def admit_status_update(new: KubeObject | Mapping[str, Any], *, copy: bool = True) -> KubeObject:
    """A write to the status subresource: schema only. DPF's webhooks are registered for the main
    resource, not `<plural>/status`, so they do not run here (as in a real cluster)."""
    o = _as_object(new)
    return o.deepcopy() if copy and isinstance(new, KubeObject) else o
