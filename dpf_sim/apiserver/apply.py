"""Field ownership (metadata.managedFields) and server-side apply.

The granularity: maps are walked key by key (labels, annotations, spec sub-structs), everything else is a
leaf, lists included. DPF's CRDs declare no list-type/map-keys, so the API server treats their lists as
atomic too; built-in lists with merge keys (containers) are coarser here than in a real cluster.

- An update (create, PUT, merge/JSON patch) by manager M makes M the owner of every field it changed and
  takes those fields from everyone else (operation "Update").
- An apply by M (operation "Apply") sets the fields of its configuration. A field whose value would change
  and that another manager owns is a conflict (409 with one cause per field) unless `force`, which takes it
  over. Fields M applied before and omits now are removed, unless another manager still owns them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dpf_core.errors import Conflict
from dpf_core.store.patch import deep_copy, json_equal

Path = tuple[str, ...]
Owners = dict[tuple[str, str, str], set[Path]]  # (manager, operation, subresource) -> fields

# Server-owned metadata never appears in managedFields.
_SYSTEM_META = frozenset({
    "name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
    "deletionGracePeriodSeconds", "managedFields", "selfLink", "generateName",
})


class ApplyConflict(Conflict):
    """409 naming every field another manager owns, as Status details.causes (reason FieldManagerConflict)."""

    def __init__(self, conflicts: list[tuple[str, str]], *, kind: str, name: str, group: str) -> None:
        self.conflicts = conflicts
        n = len(conflicts)
        super().__init__(
            f"Apply failed with {n} conflict{'s' if n > 1 else ''}: "
            + "; ".join(f'conflict with "{m}": .{f}' for m, f in conflicts),
            kind=kind, name=name, group=group,
        )

    def to_status(self) -> dict[str, object]:
        status = super().to_status()
        details = dict(status["details"])  # type: ignore[call-overload]
        details["causes"] = [{"reason": "FieldManagerConflict", "message": f'conflict with "{m}"', "field": f".{f}"}
                             for m, f in self.conflicts]
        status["details"] = details
        return status


class _Missing:
    pass


MISSING: Any = _Missing()


def leaves(obj: Mapping[str, Any], *, status: bool | None) -> set[Path]:
    """The fields an object sets. status=None: all; True: only status; False: all but status."""
    out: set[Path] = set()
    for k, v in obj.items():
        if k in ("apiVersion", "kind"):
            continue
        if status is True and k != "status":
            continue
        if status is False and k == "status":
            continue
        if k == "metadata" and isinstance(v, Mapping):
            for mk, mv in v.items():
                if mk not in _SYSTEM_META:
                    _walk(mv, ("metadata", mk), out)
            continue
        _walk(v, (k,), out)
    return out


def _walk(v: Any, path: Path, out: set[Path]) -> None:
    if isinstance(v, Mapping):
        # An empty map sets nothing: `data: {}` in an apply configuration claims no field.
        for k, sub in v.items():
            _walk(sub, (*path, k), out)
    else:
        out.add(path)


def get(obj: Any, path: Path) -> Any:
    node = obj
    for p in path:
        if not isinstance(node, Mapping) or p not in node:
            return MISSING
        node = node[p]
    return node


def _set(obj: dict[str, Any], path: Path, value: Any) -> None:
    node = obj
    for p in path[:-1]:
        nxt = node.get(p)
        if not isinstance(nxt, dict):
            nxt = node[p] = {}
        node = nxt
    node[path[-1]] = deep_copy(value)


def _delete(obj: dict[str, Any], path: Path) -> None:
    """Remove a field, then the maps it leaves empty (never a top-level section)."""
    trail: list[dict[str, Any]] = []
    node: Any = obj
    for p in path[:-1]:
        if not isinstance(node, dict) or p not in node:
            return
        trail.append(node)
        node = node[p]
    if isinstance(node, dict):
        node.pop(path[-1], None)
    for depth in range(len(path) - 2, 0, -1):
        parent = trail[depth]
        child = parent.get(path[depth])
        if isinstance(child, dict) and not child:
            del parent[path[depth]]
        else:
            break


def _overlaps(a: Path, b: Path) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def encode(paths: Iterable[Path]) -> dict[str, Any]:
    """FieldsV1: {"f:spec": {"f:replicas": {}}}."""
    root: dict[str, Any] = {}
    for path in sorted(paths):
        node = root
        for p in path:
            node = node.setdefault(f"f:{p}", {})
    return root


def decode(fields: Mapping[str, Any] | None) -> set[Path]:
    out: set[Path] = set()

    def walk(node: Mapping[str, Any], path: Path) -> None:
        children = [(k, v) for k, v in node.items() if isinstance(k, str) and k.startswith("f:")]
        if not children and path:
            out.add(path)
            return
        for k, v in children:
            walk(v if isinstance(v, Mapping) else {}, (*path, k[2:]))

    if fields:
        walk(fields, ())
    return out


def owners_of(obj: Mapping[str, Any]) -> Owners:
    owners: Owners = {}
    for e in (obj.get("metadata") or {}).get("managedFields") or []:
        key = (str(e.get("manager") or ""), str(e.get("operation") or "Update"), str(e.get("subresource") or ""))
        owners.setdefault(key, set()).update(decode(e.get("fieldsV1")))
    return owners


def render(owners: Owners, api_version: str, now: str, previous: Mapping[str, Any]) -> list[dict[str, Any]]:
    """managedFields entries; an entry whose fields did not change keeps its time."""
    before = {(str(e.get("manager") or ""), str(e.get("operation") or "Update"), str(e.get("subresource") or "")): e
              for e in (previous.get("metadata") or {}).get("managedFields") or []}
    out = []
    for key in sorted(owners, key=lambda k: (k[1] != "Apply", k[0], k[2])):
        paths = owners[key]
        if not paths:
            continue
        manager, operation, sub = key
        fields = encode(paths)
        old = before.get(key)
        time = old.get("time", now) if old is not None and old.get("fieldsV1") == fields else now
        entry: dict[str, Any] = {"manager": manager, "operation": operation, "apiVersion": api_version, "time": time,
                                 "fieldsType": "FieldsV1", "fieldsV1": fields}
        if sub:
            entry["subresource"] = sub
        out.append(entry)
    return out


def changed(old: Mapping[str, Any], new: Mapping[str, Any], *, status: bool | None) -> set[Path]:
    """Fields set in `new` whose value differs from `old` (added or changed), and fields removed."""
    a, b = leaves(old, status=status), leaves(new, status=status)
    out = {p for p in b if not json_equal(get(old, p), get(new, p))}
    out |= a - b
    return out


def record_update(old: Mapping[str, Any] | None, new: dict[str, Any], manager: str, subresource: str, now: str) -> None:
    """Set new.metadata.managedFields after an update (or create, old=None) by `manager`."""
    status = True if subresource == "status" else None
    owners = owners_of(old) if old is not None else {}
    touched = leaves(new, status=status) if old is None else changed(old, new, status=status)
    if touched:
        present = leaves(new, status=status)
        for paths in owners.values():
            paths.difference_update({p for p in paths if any(_overlaps(p, t) for t in touched)})
        mine = owners.setdefault((manager, "Update", subresource), set())
        mine.update(p for p in present if any(_overlaps(p, t) for t in touched))
    new.setdefault("metadata", {})["managedFields"] = render(owners, str(new.get("apiVersion", "")), now, old or {})


def apply(live: Mapping[str, Any] | None, config: Mapping[str, Any], manager: str, *, force: bool, subresource: str,
          now: str, kind: str, name: str, group: str) -> dict[str, Any]:
    """The object after `manager` applies `config` to `live` (None: the object does not exist yet)."""
    applied = leaves(config, status=True if subresource == "status" else None)
    if live is None:
        new: dict[str, Any] = deep_copy(dict(config))
        new.setdefault("metadata", {}).pop("managedFields", None)
        owners: Owners = {(manager, "Apply", subresource): applied}
        new["metadata"]["managedFields"] = render(owners, str(new.get("apiVersion", "")), now, {})
        return new
    owners = owners_of(live)
    me = (manager, "Apply", subresource)
    conflicts: list[tuple[str, Path]] = []
    for key, paths in owners.items():
        if key == me or key[2] != subresource:
            continue
        for p in sorted(paths):
            for q in applied:
                if _overlaps(p, q) and not json_equal(get(live, q), get(config, q)):
                    conflicts.append((key[0], q))
    if conflicts and not force:
        lines = sorted({(m, ".".join(p)) for m, p in conflicts})
        raise ApplyConflict(lines, kind=kind, name=name, group=group)
    new = deep_copy(dict(live))
    assert isinstance(new, dict)
    others = set().union(*(p for k, p in owners.items() if k != me)) if owners else set()
    for p in owners.get(me, set()) - applied:
        if p not in others and not any(_overlaps(p, q) for q in applied):
            _delete(new, p)
    for p in applied:
        _set(new, p, get(config, p))
    if force:
        taken = {q for _, q in conflicts}
        for key, paths in owners.items():
            if key != me:
                paths.difference_update({p for p in paths if any(_overlaps(p, q) for q in taken)})
    owners[me] = applied
    new.setdefault("metadata", {})["managedFields"] = render(owners, str(new.get("apiVersion", "")), now, live)
    return new
