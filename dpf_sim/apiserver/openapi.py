"""`/openapi/v2` and `/openapi/v3` built from the same structural schemas `dpf crds` renders.

kubectl reads these for three things: `kubectl explain` (v3 schemas tagged with
x-kubernetes-group-version-kind), whether the server validates fields itself (a PATCH operation carrying the
`fieldValidation` query parameter: then kubectl sends `fieldValidation=Strict` and leaves validation to us),
and, failing that, client-side validation from v2. `prune` is the server half of field validation: it drops
the fields a schema does not declare (CRD pruning) and names them, so Strict can refuse them.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

from dpf_core.api.crd import openapi_schema
from dpf_core.api.meta import KubeObject

from . import discovery

_QUERY_PARAMS = ("dryRun", "fieldManager", "fieldValidation", "force", "pretty")
_LIST_PARAMS = ("allowWatchBookmarks", "continue", "fieldSelector", "labelSelector", "limit", "resourceVersion",
                "resourceVersionMatch", "sendInitialEvents", "timeoutSeconds", "watch")


def schema_name(cls: type[KubeObject]) -> str:
    """Definition names as the real API server spells them: io.k8s.api.core.v1.Pod, com.nvidia.dpu.provisioning.v1alpha1.DPU."""
    info = cls.KIND
    if info.group in discovery.BUILTIN_GROUPS:
        return f"io.k8s.api.{info.group.split('.')[0] or 'core'}.{info.version}.{info.kind}"
    return ".".join(reversed(info.group.split("."))) + f".{info.version}.{info.kind}"


def _gvk(cls: type[KubeObject]) -> dict[str, str]:
    return {"group": cls.KIND.group, "version": cls.KIND.version, "kind": cls.KIND.kind}


@functools.cache
def kind_schema(cls: type[KubeObject]) -> dict[str, Any]:
    schema = openapi_schema(cls)
    schema["x-kubernetes-group-version-kind"] = [_gvk(cls)]
    return schema


def _list_schema(cls: type[KubeObject], ref: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "items": {"type": "array", "items": {"$ref": ref}},
        },
        "x-kubernetes-group-version-kind": [{**_gvk(cls), "kind": f"{cls.KIND.kind}List"}],
    }


def _prefix(cls: type[KubeObject]) -> str:
    info = cls.KIND
    return f"/apis/{info.group}/{info.version}" if info.group else f"/api/{info.version}"


def _paths(cls: type[KubeObject], ref: str, v3: bool) -> dict[str, Any]:
    info = cls.KIND
    base = _prefix(cls)
    coll = f"{base}/namespaces/{{namespace}}/{info.plural}" if info.namespaced else f"{base}/{info.plural}"
    item = f"{coll}/{{name}}"

    def params(names: tuple[str, ...], path: tuple[str, ...]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for p in path:
            out.append({"name": p, "in": "path", "required": True, **({"schema": {"type": "string"}} if v3 else {"type": "string"})})
        for q in names:
            out.append({"name": q, "in": "query", "uniqueItems": True, **({"schema": {"type": "string"}} if v3 else {"type": "string"})})
        return out

    def op(verb: str, action: str, query: tuple[str, ...], path: tuple[str, ...], body: bool = False) -> dict[str, Any]:
        o: dict[str, Any] = {
            "operationId": f"{verb}{info.kind}",
            "tags": [info.group or "core"],
            "parameters": params(query, path),
            "responses": ({"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": ref}}}}} if v3
                          else {"200": {"description": "OK", "schema": {"$ref": ref}}}),
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": _gvk(cls),
        }
        if body:
            if v3:
                o["requestBody"] = {"content": {"application/json": {"schema": {"$ref": ref}}}, "required": True}
            else:
                o["parameters"].append({"name": "body", "in": "body", "required": True, "schema": {"$ref": ref}})
        return o

    ns = ("namespace",) if info.namespaced else ()
    paths: dict[str, Any] = {
        coll: {"get": op("list", "list", _LIST_PARAMS, ns), "post": op("create", "post", _QUERY_PARAMS, ns, body=True),
               "delete": op("deletecollection", "deletecollection", ("labelSelector", "fieldSelector"), ns)},
        item: {"get": op("read", "get", ("pretty",), (*ns, "name")),
               "put": op("replace", "put", _QUERY_PARAMS, (*ns, "name"), body=True),
               "patch": op("patch", "patch", _QUERY_PARAMS, (*ns, "name"), body=True),
               "delete": op("delete", "delete", ("dryRun", "propagationPolicy"), (*ns, "name"))},
    }
    if info.status_subresource and "status" in cls.model_fields:
        paths[f"{item}/status"] = {"get": op("readStatus", "get", (), (*ns, "name")),
                                   "put": op("replaceStatus", "put", _QUERY_PARAMS, (*ns, "name"), body=True),
                                   "patch": op("patchStatus", "patch", _QUERY_PARAMS, (*ns, "name"), body=True)}
    return paths


def _info() -> dict[str, str]:
    return {"title": "Kubernetes", "version": discovery.VERSION_INFO["gitVersion"]}


@functools.cache
def v3_group_version(group: str, version: str) -> dict[str, Any] | None:
    classes = discovery.by_group_version().get((group, version))
    if not classes:
        return None
    schemas: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    for cls in classes:
        name = schema_name(cls)
        ref = f"#/components/schemas/{name}"
        schemas[name] = kind_schema(cls)
        schemas[f"{name}List"] = _list_schema(cls, ref)
        paths.update(_paths(cls, ref, v3=True))
    return {"openapi": "3.0.0", "info": _info(), "paths": dict(sorted(paths.items())),
            "components": {"schemas": dict(sorted(schemas.items()))}}


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def v3_hash(group: str, version: str) -> str:
    doc = v3_group_version(group, version)
    return hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:64].upper()


def v3_root() -> dict[str, Any]:
    """The index: one relative URL per group-version, with a content hash kubectl caches by."""
    return {"paths": {_gv_path(g, v): {"serverRelativeURL": f"/openapi/v3/{_gv_path(g, v)}?hash={v3_hash(g, v)}"}
                      for g, v in sorted(discovery.by_group_version())}}


def v3_for_path(path: str) -> dict[str, Any] | None:
    """`api/v1` or `apis/<group>/<version>` -> its document."""
    parts = path.strip("/").split("/")
    if len(parts) == 2 and parts[0] == "api":
        return v3_group_version("", parts[1])
    if len(parts) == 3 and parts[0] == "apis":
        return v3_group_version(parts[1], parts[2])
    return None


@functools.cache
def v2() -> dict[str, Any]:
    definitions: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    for cls in discovery.kinds():
        name = schema_name(cls)
        ref = f"#/definitions/{name}"
        definitions[name] = kind_schema(cls)
        definitions[f"{name}List"] = _list_schema(cls, ref)
        paths.update(_paths(cls, ref, v3=False))
    return {"swagger": "2.0", "info": _info(), "paths": dict(sorted(paths.items())), "definitions": dict(sorted(definitions.items()))}


# ---- field pruning -------------------------------------------------------------------------------------------

_SKIP_ROOT = frozenset({"apiVersion", "kind", "metadata"})


def prune(raw: dict[str, Any], cls: type[KubeObject]) -> tuple[dict[str, Any], list[str]]:
    """A copy of `raw` without the fields the kind's schema does not declare, and their paths (".spec.foo")."""
    unknown: list[str] = []
    out = _prune(raw, kind_schema(cls), "", unknown, root=True)
    return out, unknown


def _prune(value: Any, schema: dict[str, Any], path: str, unknown: list[str], *, root: bool = False) -> Any:
    if isinstance(value, dict):
        if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
            return value
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        if props is None and isinstance(extra, dict):
            return {k: _prune(v, extra, f"{path}.{k}", unknown) for k, v in value.items()}
        if props is None:
            return value
        keep_unknown = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        out: dict[str, Any] = {}
        for k, v in value.items():
            if root and k in _SKIP_ROOT:
                out[k] = v
            elif k in props:
                out[k] = _prune(v, props[k], f"{path}.{k}", unknown)
            elif keep_unknown:
                out[k] = v
            else:
                unknown.append(f"{path}.{k}")
        return out
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            return [_prune(v, items, f"{path}[{i}]", unknown) for i, v in enumerate(value)]
    return value
