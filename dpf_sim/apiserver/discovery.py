"""Discovery documents: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/<group>/<version>`, and the aggregated
form (apidiscovery.k8s.io/v2) that kubectl 1.30+ asks for first.

Every registered kind is served: DPF's CRDs and the external kinds the controllers touch. The served set is
the registry at request time, so the documents never disagree with what the handlers accept.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from typing import Any

from dpf_core.api import registry
from dpf_core.api.meta import KubeObject

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
STATUS_VERBS = ["get", "patch", "update"]
AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
# Groups a real API server compiles in (strategic merge patch works on them; on CRDs it is a 415).
BUILTIN_GROUPS = frozenset({"", "apps", "coordination.k8s.io", "batch", "policy", "rbac.authorization.k8s.io"})
# A group's preference order in /apis (kubectl resolves short names in this order): the core first.
_PRIORITY = {"": 0, "apps": 1, "coordination.k8s.io": 2}

VERSION_INFO = {
    "major": "1",
    "minor": "30",
    "gitVersion": "v1.30.2-dpf-twin",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.22.4",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def kinds() -> list[type[KubeObject]]:
    return registry.all_kinds()


def by_group_version() -> dict[tuple[str, str], list[type[KubeObject]]]:
    out: dict[tuple[str, str], list[type[KubeObject]]] = defaultdict(list)
    for cls in kinds():
        out[(cls.KIND.group, cls.KIND.version)].append(cls)
    return dict(out)


def groups() -> list[tuple[str, list[str]]]:
    """(group, versions) for every named group, core excluded, in preference order."""
    versions: dict[str, set[str]] = defaultdict(set)
    for group, version in by_group_version():
        if group:
            versions[group].add(version)
    return [(g, sorted(versions[g])) for g in sorted(versions, key=lambda g: (_PRIORITY.get(g, 10), g))]


def resolve(group: str, version: str, plural: str) -> type[KubeObject] | None:
    for cls in by_group_version().get((group, version), []):
        if cls.KIND.plural == plural:
            return cls
    return None


def _resource(cls: type[KubeObject]) -> dict[str, Any]:
    info = cls.KIND
    r: dict[str, Any] = {
        "name": info.plural,
        "singularName": info.singular,
        "namespaced": info.namespaced,
        "kind": info.kind,
        "verbs": VERBS,
        "storageVersionHash": _hash(info.group_kind + "/" + info.version),
    }
    if info.short_names:
        r["shortNames"] = list(info.short_names)
    if info.categories:
        r["categories"] = list(info.categories)
    return r


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _group_doc(group: str, versions: list[str]) -> dict[str, Any]:
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": gvs, "preferredVersion": gvs[-1]}


def api_group_list() -> dict[str, Any]:
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group_doc(g, vs) for g, vs in groups()]}


def api_group(group: str) -> dict[str, Any] | None:
    for g, vs in groups():
        if g == group:
            return {"kind": "APIGroup", "apiVersion": "v1", **_group_doc(g, vs)}
    return None


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    classes = by_group_version().get((group, version))
    if not classes:
        return None
    resources: list[dict[str, Any]] = []
    for cls in sorted(classes, key=lambda c: c.KIND.plural):
        resources.append(_resource(cls))
        if cls.KIND.status_subresource and "status" in cls.model_fields:
            resources.append({"name": f"{cls.KIND.plural}/status", "singularName": "", "namespaced": cls.KIND.namespaced,
                              "kind": cls.KIND.kind, "verbs": STATUS_VERBS})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources}


def _aggregated_resource(cls: type[KubeObject]) -> dict[str, Any]:
    info = cls.KIND
    kind = {"group": info.group, "version": info.version, "kind": info.kind}
    r: dict[str, Any] = {
        "resource": info.plural,
        "responseKind": kind,
        "scope": "Namespaced" if info.namespaced else "Cluster",
        "singularResource": info.singular,
        "verbs": VERBS,
    }
    if info.short_names:
        r["shortNames"] = list(info.short_names)
    if info.categories:
        r["categories"] = list(info.categories)
    if info.status_subresource and "status" in cls.model_fields:
        r["subresources"] = [{"subresource": "status", "responseKind": kind, "verbs": STATUS_VERBS}]
    return r


def aggregated(legacy: bool, content_type: str = AGGREGATED_V2) -> dict[str, Any]:
    """APIGroupDiscoveryList for `/api` (legacy=True: the core group) or `/apis` (every named group)."""
    table = by_group_version()
    names = [""] if legacy else [g for g, _ in groups()]
    items = []
    for g in names:
        versions = sorted({v for (gg, v) in table if gg == g}, reverse=True)
        if not versions:
            continue
        items.append({
            "metadata": {"name": g, "creationTimestamp": None},
            "versions": [{"version": v, "freshness": "Current",
                          "resources": [_aggregated_resource(c) for c in sorted(table[(g, v)], key=lambda c: c.KIND.plural)]}
                         for v in versions],
        })
    api_version = "apidiscovery.k8s.io/v2beta1" if "v2beta1" in content_type else "apidiscovery.k8s.io/v2"
    return {"kind": "APIGroupDiscoveryList", "apiVersion": api_version, "metadata": {}, "items": items}


def wants_aggregated(accept: str) -> str | None:
    """The aggregated content type the client takes first, if it asked for one."""
    for part in accept.split(","):
        media = part.strip().replace(" ", "")
        if "as=APIGroupDiscoveryList" in media and "g=apidiscovery.k8s.io" in media:
            if "v=v2beta1" in media:
                return AGGREGATED_V2BETA1
            if "v=v2" in media:
                return AGGREGATED_V2
        if media.split(";")[0] in ("application/json", "*/*") and "as=" not in media:
            return None
    return None


def etag(doc: dict[str, Any]) -> str:
    return '"' + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32] + '"'
