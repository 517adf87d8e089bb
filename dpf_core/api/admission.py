"""Admission: the path every write takes in every store (MemoryStore, twin API server, operator checks).

decode (schema, as the CRD's OpenAPI validation would) -> default (mutating webhooks + CRD defaults)
-> validate (validating webhooks, CEL rules, immutability). All bad fields of an object are collected into
one `Invalid` with wire paths, the way the API server reports them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from dpf_core.errors import BadRequest, FieldCause, Forbidden, Invalid, denied_by

from . import registry
from .meta import KubeObject, same_data
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


# pydantic's bound errors -> (ctx key, kube-openapi's wording): `<path> in body should be <wording> <bound>`.
_BOUNDS = {
    "greater_than_equal": ("ge", "greater than or equal to"),
    "less_than_equal": ("le", "less than or equal to"),
    "greater_than": ("gt", "greater than"),
    "less_than": ("lt", "less than"),
}


def _supported(expected: str) -> str:
    """pydantic lists a Literal's values as `'a', 'b' or 'c'`; field.NotSupported quotes each and joins them
    with commas: `"a", "b", "c"`."""
    values = re.findall(r"'((?:[^'\\]|\\.)*)'", expected)
    return ", ".join(json.dumps(v) for v in values) if values else expected


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
            expected = _supported(str(e.get("ctx", {}).get("expected", "")))
            cause = FieldCause(dotted, f"Unsupported value: {_fmt_value(node)}: supported values: {expected}", "FieldValueNotSupported")
        elif etype == "string_pattern_mismatch":
            pattern = e.get("ctx", {}).get("pattern", "")
            cause = FieldCause(dotted, f"Invalid value: {_fmt_value(node)}: {dotted} in body should match '{pattern}'")
        elif etype in _BOUNDS:
            bound = e.get("ctx", {}).get(_BOUNDS[etype][0])
            cause = FieldCause(dotted, f"Invalid value: {_fmt_value(node)}: {dotted} in body should be {_BOUNDS[etype][1]} {bound}")
        elif etype == "string_too_short":
            n = e.get("ctx", {}).get("min_length")
            cause = FieldCause(dotted, f"Invalid value: {_fmt_value(node)}: {dotted} in body should be at least {n} chars long")
        elif etype == "string_too_long":
            n = e.get("ctx", {}).get("max_length")
            cause = FieldCause(dotted, f"Too long: may not be longer than {n}", "FieldValueTooLong")
        elif etype == "too_short":
            n = e.get("ctx", {}).get("min_length")
            cause = FieldCause(dotted, f"Invalid value: {_fmt_value(node)}: {dotted} in body should have at least {n} items")
        elif etype == "too_long":
            n = e.get("ctx", {}).get("max_length")
            actual = len(node) if found and isinstance(node, (list, dict)) else e.get("ctx", {}).get("actual_length")
            cause = FieldCause(dotted, f"Too many: {actual}: must have at most {n} items", "FieldValueTooMany")
        elif etype == "cel":
            # The API server names a failed x-kubernetes-validations rule's value by its schema type, not
            # its content; every CEL rule of DPF's CRDs sits on an object.
            cause = FieldCause(dotted, f'Invalid value: "object": {e["msg"]}')
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


def _field_name(cls: type[BaseModel], part: str) -> str | None:
    """The attribute a wire path step names on `cls`: a field name first, then an alias (as the API's
    paths spell them). Cached per class: every update of every kind asks it for each immutable path."""
    key = (cls, part)
    try:
        return _FIELD_NAMES[key]
    except KeyError:
        pass
    fields = cls.model_fields
    name = part if part in fields else next((n for n, f in fields.items() if f.alias == part), None)
    _FIELD_NAMES[key] = name
    return name


_FIELD_NAMES: dict[tuple[type[BaseModel], str], str | None] = {}


def _typed_get(obj: Any, parts: tuple[str, ...]) -> Any:
    """The value at a wire path, read from the typed object (field aliases or names); _MISSING when the
    path does not map onto fields (extra keys, lists)."""
    node = obj
    for part in parts:
        if isinstance(node, BaseModel):
            name = _field_name(type(node), part)
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


def _typed_pair(old: Any, new: Any, parts: tuple[str, ...]) -> tuple[Any, Any] | None:
    """The typed values at a wire path in `old` and `new`, walked together; None as soon as both walks
    reach the same object (a part shared with the stored snapshot): everything below it is the same, on
    the wire too, so the path cannot have changed."""
    a, b = old, new
    for i, part in enumerate(parts):
        if a is b:
            return None
        if isinstance(a, BaseModel) and isinstance(b, BaseModel) and type(a) is type(b):
            name = _field_name(type(a), part)
            if name is None:
                return _MISSING, _MISSING
            a, b = getattr(a, name), getattr(b, name)
        else:
            rest = parts[i:]
            return _typed_get(a, rest), _typed_get(b, rest)
    return None if a is b else (a, b)


def _unset(value: Any) -> bool:
    """A typed value whose wire form is absent or empty (what a `?` path counts as not yet set): None is
    dropped from the wire (exclude_none), "" stays "", an empty dict/list is dropped or stays empty."""
    return value is None or (type(value) in (str, dict, list) and not value)


def _immutability(
    new: KubeObject, old: KubeObject, paths: list[str], rules: Mapping[str, tuple[str, str]] | None = None
) -> list[FieldCause]:
    if not paths:
        return []
    # Equal typed values dump equal, so only a path whose typed values differ needs the wire comparison
    # (None against an empty default and the like): no full dump of both objects on every update. A `?`
    # path that was unset in `old` can take any value, whatever the wire says about the new one.
    changed = []
    for p in paths:
        once_set = p.endswith("?")
        pair = _typed_pair(old, new, _split_path(p))
        if pair is None:
            continue
        before, after = pair
        if once_set and before is not _MISSING and _unset(before):
            continue
        if before is _MISSING or after is _MISSING or before != after:
            changed.append(p)
    if not changed:
        return []
    return _immutability_on_wire(new, old, changed, rules)


def _split_path(p: str) -> tuple[str, ...]:
    parts = _PATHS.get(p)
    if parts is None:
        parts = _PATHS[p] = tuple(p.rstrip("?").split("."))
    return parts


_PATHS: dict[str, tuple[str, ...]] = {}


def _immutability_reference(
    new: KubeObject, old: KubeObject, paths: list[str], rules: Mapping[str, tuple[str, str]] | None = None
) -> list[FieldCause]:
    """`_immutability` without its shortcuts (typed values compared whole, then the wire where they differ):
    the reference the shortcuts must agree with."""
    changed = []
    for p in paths:
        parts = _split_path(p)
        before, after = _typed_get(old, parts), _typed_get(new, parts)
        if before is _MISSING or after is _MISSING or before != after:
            changed.append(p)
    return _immutability_on_wire(new, old, changed, rules) if changed else []


_OPENAPI_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"), (dict, "object"), (list, "array"),
)


def _openapi_type(value: Any) -> str:
    """The schema type the API server names as the value of a failed CEL rule (`Invalid value: "object"`)."""
    for tp, name in _OPENAPI_TYPES:
        if isinstance(value, tp):
            return name
    return "object"


def _immutability_on_wire(
    new: KubeObject, old: KubeObject, paths: list[str], rules: Mapping[str, tuple[str, str]] | None = None
) -> list[FieldCause]:
    """The API server's comparison, on the wire forms of both objects. A path with a CRD transition rule is
    reported the way the API server reports a failed x-kubernetes-validations rule: the schema type as the
    value, the rule's message as the detail."""
    nw, ow = new.wire(), old.wire()
    causes = []
    for p in paths:
        once_set = p.endswith("?")
        path = p.rstrip("?")
        before, after = _get_path(ow, path), _get_path(nw, path)
        if once_set and before in (None, "", {}, []):
            continue
        if before != after:
            rule = rules.get(p) if rules else None
            if rule is not None:
                shown = _openapi_type(after if after is not None else before)
                causes.append(FieldCause(path, f'Invalid value: "{shown}": {rule[1]}', "FieldValueInvalid"))
                continue
            causes.append(FieldCause(path, "Invalid value: field is immutable" + (" once set" if once_set else ""), "FieldValueInvalid"))
    return causes


def _raise_if(obj: KubeObject, causes: list[FieldCause], webhook: str = "") -> None:
    if causes:
        name = obj.name or obj.metadata.generate_name or ""
        raise Invalid(obj.kind, name, causes, group=obj.KIND.group, webhook=webhook)


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
    _raise_if(o, causes, hooks.webhook)
    return o


def _shareable(cls: type[KubeObject]) -> tuple[tuple[str, str, type[BaseModel], Any], ...]:
    """The top-level fields of `cls` a copy may take over from the stored snapshot as they are: one model
    (or None) with nothing that would treat an instance differently from its dumped form (no validators
    on the kind or the field, no constraints, not left out of dumps, a sub-model that never revalidates
    instances). Cached per kind."""
    cached = _SHAREABLE.get(cls)
    if cached is not None:
        return cached
    out: list[tuple[str, str, type[BaseModel], Any]] = []
    decorators = cls.__pydantic_decorators__
    if not (decorators.validators or decorators.field_validators or decorators.root_validators or decorators.model_validators):
        for name, info in cls.model_fields.items():
            ann = info.annotation
            members = [a for a in get_args(ann) if a is not type(None)] if get_args(ann) else [ann]
            sub = members[0] if len(members) == 1 else None
            if (
                isinstance(sub, type)
                and issubclass(sub, BaseModel)
                and not info.metadata
                and info.discriminator is None
                and not info.exclude
                and sub.model_config.get("revalidate_instances", "never") == "never"
                and (sub is ann or ann == sub | None)
            ):
                out.append((name, info.alias or name, sub, info.exclude_if))
    result = _SHAREABLE[cls] = tuple(out)
    return result


_SHAREABLE: dict[type[KubeObject], tuple[tuple[str, str, type[BaseModel], Any], ...]] = {}


def _private_copy(new: KubeObject, old: KubeObject, *, equal: bool = True) -> KubeObject:
    """What `new.deepcopy()` (dump + validate) gives, without copying and revalidating the top-level parts
    `new` shares with `old` (the same object: the status the store carries over, the spec of a
    metadata-only write). `old` is a stored snapshot, read-only and admitted before, so its parts are their
    own dump-and-validate result and may stay shared, as a status write already shares spec. Validation
    takes an instance of a field's model as it is, so the rest is dumped and validated exactly as in the
    full copy, with the kind's own rules (model validators still see the shared part). Any error: the full
    copy runs, so the error raised is its own."""
    cls = type(new)
    if type(old) is not cls:
        return new.deepcopy()
    mine, theirs = new.__dict__, old.__dict__
    shared: dict[str, tuple[str, Any]] = {}
    left_out: list[str] = []
    for name, alias, sub, exclude_if in _shareable(cls):
        value = mine.get(name)
        stored = theirs.get(name)
        if value is None or type(value) is not sub:
            continue
        # A part the writer took from the snapshot, or rebuilt equal to it (an edit of a deep copy leaves
        # spec and status equal): its round trip is the stored part's, so the stored part is taken. Never
        # metadata: the store stamps resourceVersion and generation into the admitted object's own.
        if value is stored or (equal and name != "metadata" and type(stored) is sub and same_data(value, stored)):
            if exclude_if is not None and exclude_if(value):
                left_out.append(name)  # the dump leaves it out and validation defaults it: let it
            else:
                shared[name] = (alias, stored)
    if not shared and not left_out:
        return new.deepcopy()
    data = new.model_dump(exclude_none=True, exclude={*shared, *left_out})
    for alias, value in shared.values():
        data[alias] = value
    try:
        return cls.model_validate(data)
    except ValidationError:
        return new.deepcopy()


def admit_update(
    new: KubeObject | Mapping[str, Any], old: KubeObject, reader: Reader, *, copy: bool = True, full: bool = False
) -> KubeObject:
    """Decode, default and validate a replacement of `old` (a stored snapshot). Returns a private object the
    caller may store: parts `new` shares with `old` stay shared (snapshots are read-only), the rest is
    copied. `full=True` copies everything by pydantic's round trip and compares immutable paths without
    shortcuts: the reference path the shortcuts must match (tests)."""
    o = _as_object(new)
    hooks = registry.hooks_for(type(o))
    if copy and isinstance(new, KubeObject):
        # Defaulters edit the admitted object in place: it must share nothing with the snapshot.
        o = o.deepcopy() if full or hooks.default else _private_copy(o, old)
    for d in hooks.default:
        d(o)
    if full:
        causes = _immutability_reference(o, old, hooks.immutable, hooks.immutable_rules)
    else:
        causes = _immutability(o, old, hooks.immutable, hooks.immutable_rules)
    # The API server's own validation refuses before any validating webhook is called, as in a cluster.
    _raise_if(o, causes)
    for v in hooks.validate_update:
        causes.extend(v(o, old, reader))
    _raise_if(o, causes, hooks.webhook)
    return o


def admit_delete(old: KubeObject, reader: Reader) -> None:
    """DPF's delete checks answer a plain error, which controller-runtime turns into a 403 denial."""
    hooks = registry.hooks_for(type(old))
    for v in hooks.validate_delete:
        message = v(old, reader)
        if message:
            raise Forbidden(denied_by(hooks.webhook, message), kind=old.kind, name=old.name, group=old.KIND.group)


def admit_status_update(new: KubeObject | Mapping[str, Any], *, copy: bool = True) -> KubeObject:
    """A write to the status subresource: schema only. DPF's webhooks are registered for the main
    resource, not `<plural>/status`, so they do not run here (as in a real cluster)."""
    o = _as_object(new)
    return o.deepcopy() if copy and isinstance(new, KubeObject) else o
