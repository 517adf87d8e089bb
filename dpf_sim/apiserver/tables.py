"""Server-side printing for `kubectl get` (Accept: application/json;as=Table;v=v1;g=meta.k8s.io).

Columns come from the kind's printer columns (a CRD's additionalPrinterColumns), evaluated with the small
JSONPath subset CRDs use (`.a.b`, `[n]`, `[*]`, `[?(@.k=='v')]`). Ages are measured on the twin's clock,
because every timestamp the twin writes is simulated time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from dpf_core.api.crd import _printer_columns
from dpf_core.api.meta import KubeObject

_NAME_COLUMN = {"name": "Name", "type": "string", "format": "name", "priority": 0,
                "description": "Name must be unique within a namespace."}
_AGE = {"jsonPath": ".metadata.creationTimestamp", "name": "Age", "type": "date"}
# What the real API server prints for the core kinds we serve (a subset of its columns).
_CORE_COLUMNS: dict[str, list[dict[str, Any]]] = {
    "Pod": [{"name": "Status", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Node", "type": "string", "jsonPath": ".spec.nodeName", "priority": 1}],
    "Node": [{"name": "Status", "type": "string", "jsonPath": ".status.conditions[?(@.type=='Ready')].type"},
             {"name": "Version", "type": "string", "jsonPath": ".status.nodeInfo.kubeletVersion"}],
    "Namespace": [{"name": "Status", "type": "string", "jsonPath": ".status.phase"}],
    "Secret": [{"name": "Type", "type": "string", "jsonPath": ".type"}],
    "Event": [{"name": "Type", "type": "string", "jsonPath": ".type"},
              {"name": "Reason", "type": "string", "jsonPath": ".reason"},
              {"name": "Object", "type": "string", "jsonPath": ".involvedObject.name"},
              {"name": "Message", "type": "string", "jsonPath": ".message"}],
}

_TOKEN = re.compile(r"""\.([A-Za-z0-9_\-/]+)|\[(\d+|\*)\]|\[\?\(@\.([A-Za-z0-9_.\-]+)\s*==\s*['"]([^'"]*)['"]\)\]""")


def columns(cls: type[KubeObject]) -> list[dict[str, Any]]:
    if cls.KIND.group == "apiextensions.k8s.io":
        # The API server's CRD table shows when a definition was created, and no age beside it.
        return [c.model_dump(by_alias=True, exclude_none=True) for c in cls.KIND.printer_columns]
    cols = list(_CORE_COLUMNS.get(cls.KIND.kind, [])) if cls.KIND.group == "" else _printer_columns(cls)
    if not any(c["name"] == "Age" for c in cols):
        cols.append(dict(_AGE))
    return cols


def jsonpath(doc: Any, path: str) -> list[Any]:
    """All values `path` selects in `doc` (empty when nothing matches)."""
    nodes = [doc]
    pos = 0
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            return []
        pos = m.end()
        key, index, fkey, fval = m.groups()
        nxt: list[Any] = []
        for n in nodes:
            if key is not None:
                if isinstance(n, dict) and key in n:
                    nxt.append(n[key])
            elif index is not None:
                if isinstance(n, list):
                    if index == "*":
                        nxt.extend(n)
                    elif int(index) < len(n):
                        nxt.append(n[int(index)])
            elif isinstance(n, list):
                for item in n:
                    have: Any = item
                    for part in fkey.split("."):
                        have = have.get(part) if isinstance(have, dict) else None
                    if isinstance(have, bool):
                        have = str(have).lower()
                    if have is not None and str(have) == fval:
                        nxt.append(item)
        nodes = nxt
    return nodes


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration."""
    if seconds < -1:
        return "<invalid>"
    s = int(max(seconds, 0))
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = s // 3600
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    d = h // 24
    if h < 24 * 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if h < 24 * 365 * 2:
        return f"{d}d"
    y = d // 365
    if h < 24 * 365 * 8:
        return f"{y}y{d % 365}d" if d % 365 else f"{y}y"
    return f"{y}y"


def _cell(col: dict[str, Any], wire: dict[str, Any], now: float, parse_time: Callable[[str], float]) -> Any:
    values = jsonpath(wire, col["jsonPath"])
    if not values:
        return None
    if col.get("type") == "date":
        try:
            return human_duration(now - parse_time(str(values[0])))
        except ValueError:
            return str(values[0])
    if len(values) > 1:
        return ",".join(str(v) for v in values)
    v = values[0]
    if col.get("type") == "integer" and isinstance(v, int):
        return v
    if isinstance(v, dict | list):
        import json

        return json.dumps(v, separators=(",", ":"))
    return v


def definitions(cls: type[KubeObject]) -> list[dict[str, Any]]:
    out = [dict(_NAME_COLUMN)]
    for c in columns(cls):
        out.append({"name": c["name"], "type": c.get("type", "string"), "format": c.get("format", ""),
                    "description": c.get("description", ""), "priority": c.get("priority", 0)})
    return out


def row(cls: type[KubeObject], wire: dict[str, Any], now: float, parse_time: Callable[[str], float], include: str) -> dict[str, Any]:
    md = wire.get("metadata") or {}
    cells = [md.get("name", "")] + [_cell(c, wire, now, parse_time) for c in columns(cls)]
    r: dict[str, Any] = {"cells": cells}
    if include == "Object":
        r["object"] = wire
    elif include != "None":
        r["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": md}
    return r


def table(cls: type[KubeObject], wires: list[dict[str, Any]], now: float, parse_time: Callable[[str], float],
          include: str = "Metadata", metadata: dict[str, Any] | None = None, headers: bool = True) -> dict[str, Any]:
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata or {},
        "columnDefinitions": definitions(cls) if headers else [],
        "rows": [row(cls, w, now, parse_time, include) for w in wires],
    }


def wants_table(accept: str) -> bool:
    for part in accept.split(","):
        p = part.replace(" ", "")
        if "as=Table" in p and "g=meta.k8s.io" in p and ("v=v1" in p or "v=v1beta1" in p):
            return True
        if p.split(";")[0] in ("application/json", "*/*", "application/yaml"):
            return False
    return False
