"""MemoryStore: an in-process API server storage layer with Kubernetes semantics.

Reads return the stored objects themselves (shared read-only snapshots, as client-go listers do); that is
what makes a get cost a dict lookup. Every write goes through admission, which hands back a private copy;
that copy is what gets stored, so no caller ever holds a reference into the store it could edit.

What follows the API server (apiserver's generic registry + the CRD strategy + the garbage collector):
- one resourceVersion counter for the whole store, bumped by every committed write, deletes included;
  a write that changes nothing commits nothing (no new resourceVersion, no event), as etcd3's
  GuaranteedUpdate skips identical bytes;
- generation 1 on create, +1 when anything outside metadata (and status, with a status subresource)
  changes, and +1 when deletion starts (markAsDeleting);
- with a status subresource, create and update drop status changes and update_status keeps everything
  but status;
- finalizers hold a deleted object (deletionTimestamp + deletionGracePeriodSeconds 0) until an update
  empties them; no new finalizer once deletion started;
- the garbage collector's attemptToDeleteItem / processDeletingDependentsItem, run synchronously after
  each removal: Background, Foreground (`foregroundDeletion` + blockOwnerDeletion) and Orphan.
"""

from __future__ import annotations

import bisect
import builtins
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

from mypy_extensions import mypyc_attr
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from dpf_core.api import admission, registry
from dpf_core.api.meta import KubeObject, ObjectMeta, shallow_copy, share_copy
from dpf_core.errors import (
    AlreadyExists,
    ApiError,
    BadRequest,
    Conflict,
    FieldCause,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    ResourceVersionTooLarge,
)

from .compact import compact
from .patch import PatchError, json_patch, load_patch, merge_patch
from .protocol import EventType, Listener, PatchType, Propagation, Selector, WatchEvent
from .selectors import (
    EVERYTHING,
    FieldMatcher,
    LabelMatcher,
    compile_field_selector,
    compile_label_selector,
    dns1123_label_errors,
    dns1123_subdomain_errors,
    label_value_errors,
    qualified_name_errors,
)

T = TypeVar("T", bound=KubeObject)

FOREGROUND_DELETION = "foregroundDeletion"
ORPHAN = "orphan"
MUTATION_DETECTOR_ENV = "DPF_MUTATION_DETECTOR"
DEFAULT_HISTORY = 100_000

_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_GENERATE_SUFFIX = 5
_MAX_GENERATED_PREFIX = 63 - _GENERATE_SUFFIX
_CONFLICT_TAIL = "the object has been modified; please apply your changes to the latest version and try again"

# (namespace or "" for cluster-scoped, name). Declared variable-length on purpose: compiled (dpf_core.compiled), a
# fixed-size tuple is an unboxed value boxed anew wherever it is stored, one tuple object per index an object is in.
Key = tuple[str, ...]


@mypyc_attr(native_class=False)
class SnapshotMutated(RuntimeError):
    """A shared snapshot returned by the store was edited in place (caught by the mutation detector)."""


@dataclass(eq=False, slots=True)
class _View:
    """Keys in (namespace, name) order and their objects at the same positions: an unfiltered list is one
    list copy instead of a dict lookup per object (10x at 100k objects)."""

    keys: list[Key]
    objs: list[KubeObject]

    def insert(self, key: Key, obj: KubeObject) -> None:
        i = bisect.bisect_left(self.keys, key)
        self.keys.insert(i, key)
        self.objs.insert(i, obj)

    def remove(self, key: Key) -> None:
        i = bisect.bisect_left(self.keys, key)
        if i < len(self.keys) and self.keys[i] == key:
            del self.keys[i]
            del self.objs[i]

    def replace(self, key: Key, obj: KubeObject) -> None:
        i = bisect.bisect_left(self.keys, key)
        if i < len(self.keys) and self.keys[i] == key:
            self.objs[i] = obj



Posting = set[Key] | Key


def _post(by_label: dict[str, dict[str, Posting]], k: str, v: str, key: Key) -> None:
    by_value = by_label.get(k)
    if by_value is None:
        by_label[k] = {v: key}
        return
    have = by_value.get(v)
    if have is None:
        by_value[v] = key
    elif isinstance(have, set):
        have.add(key)
    elif have != key:
        by_value[v] = {have, key}


@dataclass(eq=False)
class _Table:
    """One kind: the objects plus the indexes a list needs."""

    cls: type[KubeObject]
    group_kind: str
    resource: str  # "plural.group", how API errors name the kind
    namespaced: bool
    status_subresource: bool
    has_status: bool
    # Fields that count for generation: everything but apiVersion/kind/metadata (and status with a subresource).
    spec_fields: tuple[str, ...]
    objs: dict[Key, KubeObject] = field(default_factory=dict)
    by_ns: dict[str, set[Key]] = field(default_factory=dict)
    # label key -> value -> the objects carrying it: one Key while only one does (a Node's hostname; a 1-set is
    # 216 bytes, ~65 MB at 100k DPUs), a set from the second on.
    by_label: dict[str, dict[str, Posting]] = field(default_factory=dict)
    # Sorted views, built by the first list and then kept in order with bisect (None = not built yet).
    view_all: _View | None = None
    view_ns: dict[str, _View] = field(default_factory=dict)
    frozen: dict[Key, str] = field(default_factory=dict)  # mutation detector: snapshot JSON at commit
    status_field: FieldInfo | None = None
    # The status a create starts from (status subresource): built once, only ever read (admission copies
    # the object it admits), so every create does not run the default factory's validation again.
    status_default: Any = None


_last_stamp: tuple[int, str] = (-1, "")


def _rfc3339(epoch: float) -> str:
    global _last_stamp
    sec = int(epoch // 1)
    if _last_stamp[0] != sec:  # bursts of writes share a second; formatting is most of a write's clock cost
        _last_stamp = (sec, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sec)))
    return _last_stamp[1]


def _uuid4(bits: int) -> str:
    """uuid.UUID(int=bits, version=4) as a string, without building the UUID object."""
    bits = (bits & ~(0xF000 << 64)) | (0x4000 << 64)
    bits = (bits & ~(0xC000 << 48)) | (0x8000 << 48)
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# Labels repeat across a fleet (the same dozen keys and values on thousands of objects): validate each once.
_VALID_LABELS: set[tuple[str, str]] = set()
_VALID_KEYS: set[str] = set()
_VALID_NAMESPACES: set[str] = set()
_VALID_CACHE_LIMIT = 65_536


def _remember(cache: set[Any], item: Any) -> None:
    if len(cache) >= _VALID_CACHE_LIMIT:
        cache.clear()
    cache.add(item)


def _assign(model: BaseModel, name: str, value: Any) -> None:
    """`model.name = value` on a private model we just built (what pydantic's __setattr__ does for a plain
    field without validate_assignment, minus its handler lookup)."""
    model.__dict__[name] = value
    model.__pydantic_fields_set__.add(name)


def _null_in_list(value: Any, in_list: bool = False) -> bool:
    """Whether a JSON value holds a null inside a list (a null directly in an object deletes a key)."""
    if value is None:
        return in_list
    if isinstance(value, Mapping):
        return any(_null_in_list(v, in_list) for v in value.values())
    if isinstance(value, list):
        return any(_null_in_list(v, True) for v in value)
    return False


def _force(model: BaseModel, values: Mapping[str, Any]) -> None:
    """Set fields on a private model we just built; pydantic's __setattr__ costs more than the write itself."""
    d = model.__dict__
    for k, v in values.items():
        if d.get(k) != v:
            d[k] = v
            model.__pydantic_fields_set__.add(k)


# Compiled (dpf_core.compiled): tests subclass it to inject faults. No weak references to a store (a native
# class has no slot for them).
@mypyc_attr(allow_interpreted_subclasses=True)
class MemoryStore:
    """The object store of one cluster (the host, or one DPU cluster in the twin)."""

    def __init__(
        self,
        clock: Callable[[], float] | None = None,
        *,
        name: str = "host",
        seed: int = 0,
        history: int = DEFAULT_HISTORY,
        detect_mutation: bool | None = None,
        require_namespace: bool = False,
    ) -> None:
        self.name = name
        self._clock = clock or time.time
        self._rng = random.Random(seed)
        self.detect_mutation = (
            detect_mutation if detect_mutation is not None else os.environ.get(MUTATION_DETECTOR_ENV, "") not in ("", "0", "false")
        )
        self.require_namespace = require_namespace
        self._rv = 0
        self._tables: dict[str, _Table] = {}
        self._by_cls: dict[type[KubeObject], _Table] = {}
        self._by_uid: dict[str, tuple[_Table, Key]] = {}
        self._dependents: dict[str, set[str]] = {}  # owner uid -> dependent uids
        if history < 1:
            raise ValueError("history must keep at least one event")
        self._history: deque[tuple[int, str, str, WatchEvent]] = deque(maxlen=history)
        self._evicted_rv = 0  # newest resourceVersion no longer in the history
        self._listeners: list[tuple[Listener, frozenset[str] | None]] = []
        # Per group/kind, the listeners an event of it goes to (in subscription order), rebuilt after any
        # (un)subscribe: delivery used to test every listener's kinds for every event.
        self._routes: dict[str, tuple[Listener, ...]] = {}
        self._pending: deque[tuple[str, WatchEvent]] = deque()
        self._depth = 0
        # Writes (and lists, which walk the indexes) are serialized, so a threaded driver or the twin API
        # server may share one store; gets are single dict lookups and take no lock.
        self._lock = threading.RLock()
        self._delivering = False
        self._gc_queue: deque[tuple[Literal["attempt", "owner"], str]] = deque()
        self._gc_running = False

    # ---- tables ----------------------------------------------------------------------------------------

    def _table(self, cls: type[KubeObject]) -> _Table:
        t = self._by_cls.get(cls)
        if t is not None:
            return t
        info = getattr(cls, "KIND", None)
        if info is None:
            raise TypeError(f"{cls.__name__} has no KIND: only KubeObject kinds can be stored")
        t = self._tables.get(info.group_kind)
        if t is None:
            has_status = "status" in cls.model_fields
            skip = {"api_version", "kind", "metadata"}
            if info.status_subresource:
                skip.add("status")
            t = _Table(
                cls=cls,
                group_kind=info.group_kind,
                resource=f"{info.plural}.{info.group}" if info.group else info.plural,
                namespaced=info.namespaced,
                status_subresource=info.status_subresource and has_status,
                has_status=has_status,
                spec_fields=tuple(f for f in cls.model_fields if f not in skip),
                status_field=cls.model_fields.get("status"),
            )
            self._tables[info.group_kind] = t
        self._by_cls[cls] = t
        return t

    def _key(self, t: _Table, name: str, namespace: str | None) -> Key:
        return ((namespace or "") if t.namespaced else "", name)

    def _not_found(self, t: _Table, name: str) -> NotFound:
        info = t.cls.KIND
        return NotFound(f'{t.resource} "{name}" not found', kind=info.kind, name=name, group=info.group)

    def _conflict(self, t: _Table, name: str, why: str = _CONFLICT_TAIL) -> Conflict:
        info = t.cls.KIND
        return Conflict(f'Operation cannot be fulfilled on {t.resource} "{name}": {why}', kind=info.kind, name=name, group=info.group)

    # ---- the mutation detector ---------------------------------------------------------------------------

    def _freeze(self, t: _Table, key: Key, obj: KubeObject) -> None:
        if self.detect_mutation:
            t.frozen[key] = obj.model_dump_json()

    def _verify(self, t: _Table, key: Key, obj: KubeObject) -> None:
        frozen = t.frozen.get(key)
        if frozen is not None and obj.model_dump_json() != frozen:
            ns, name = key
            where = f"{ns}/{name}" if ns else name
            raise SnapshotMutated(
                f'{t.cls.KIND.kind} "{where}" in store "{self.name}" was modified in place: objects returned by the '
                "store are shared read-only snapshots; call .deepcopy() and edit the copy"
            )

    def verify_snapshots(self) -> None:
        """Check every stored snapshot against its JSON at commit time (a full sweep; tests call it at the end)."""
        if not self.detect_mutation:
            return
        for t in self._tables.values():
            for key, obj in t.objs.items():
                self._verify(t, key, obj)

    # ---- indexes -----------------------------------------------------------------------------------------

    def _index_add(self, t: _Table, key: Key, obj: KubeObject) -> None:
        t.objs[key] = obj
        ns = key[0]
        t.by_ns.setdefault(ns, set()).add(key)
        for k, v in obj.metadata.labels.items():
            _post(t.by_label, k, v, key)
        if t.view_all is not None:
            t.view_all.insert(key, obj)
        view = t.view_ns.get(ns)
        if view is not None:
            view.insert(key, obj)
        uid = obj.metadata.uid or ""
        self._by_uid[uid] = (t, key)
        for ref in obj.metadata.owner_references:
            self._dependents.setdefault(ref.uid, set()).add(uid)

    def _index_remove(self, t: _Table, key: Key, obj: KubeObject) -> None:
        del t.objs[key]
        t.frozen.pop(key, None)
        ns = key[0]
        keys = t.by_ns.get(ns)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del t.by_ns[ns]
        self._unindex_labels(t, key, obj.metadata.labels)
        if t.view_all is not None:
            t.view_all.remove(key)
        view = t.view_ns.get(ns)
        if view is not None:
            view.remove(key)
        uid = obj.metadata.uid or ""
        self._by_uid.pop(uid, None)
        self._unindex_owners(uid, obj)

    def _unindex_labels(self, t: _Table, key: Key, labels: Mapping[str, str]) -> None:
        for k, v in labels.items():
            by_value = t.by_label.get(k)
            if by_value is None:
                continue
            keys = by_value.get(v)
            if keys is None:
                continue
            if isinstance(keys, set):
                keys.discard(key)
                if keys:
                    continue
            elif keys != key:
                continue
            del by_value[v]
            if not by_value:
                del t.by_label[k]

    def _unindex_owners(self, uid: str, obj: KubeObject) -> None:
        for ref in obj.metadata.owner_references:
            deps = self._dependents.get(ref.uid)
            if deps is not None:
                deps.discard(uid)
                if not deps:
                    del self._dependents[ref.uid]

    def _set_obj(self, t: _Table, key: Key, new: KubeObject) -> None:
        t.objs[key] = new
        if t.view_all is not None:
            t.view_all.replace(key, new)
        view = t.view_ns.get(key[0])
        if view is not None:
            view.replace(key, new)

    def _index_replace(self, t: _Table, key: Key, old: KubeObject, new: KubeObject) -> None:
        self._set_obj(t, key, new)
        om, nm = old.metadata, new.metadata
        if om.labels is not nm.labels and om.labels != nm.labels:
            self._unindex_labels(t, key, om.labels)
            for k, v in nm.labels.items():
                _post(t.by_label, k, v, key)
        if om.owner_references is not nm.owner_references and om.owner_references != nm.owner_references:
            uid = new.metadata.uid or ""
            self._unindex_owners(uid, old)
            for ref in new.metadata.owner_references:
                self._dependents.setdefault(ref.uid, set()).add(uid)

    # ---- operations and event delivery ---------------------------------------------------------------------

    def _enter(self) -> None:
        """Start one client call: serialized with other threads (a contextmanager costs more than many writes)."""
        self._lock.acquire()
        self._depth += 1

    def _exit(self) -> None:
        """End one client call; its events go out when the outermost call ends."""
        try:
            self._depth -= 1
            if self._depth == 0 and self._pending and not self._delivering:
                self._deliver()
        finally:
            self._lock.release()

    def _deliver(self) -> None:
        """Hand events to listeners in commit order; writes made by a listener queue behind the current event."""
        self._delivering = True
        error: BaseException | None = None
        try:
            pending, routes = self._pending, self._routes
            while pending:
                gk, ev = pending.popleft()
                route = routes.get(gk)
                if route is None:
                    route = routes[gk] = tuple(f for f, kinds in self._listeners if kinds is None or gk in kinds)
                for listener in route:
                    try:
                        listener(ev)
                    except Exception as e:  # keep delivering to the others, then report the first failure
                        if error is None:
                            error = e
        finally:
            self._delivering = False
        if error is not None:
            raise error

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _emit(self, rv: int, t: _Table, ns: str, etype: EventType, obj: KubeObject, old: KubeObject | None) -> None:
        ev = WatchEvent(etype, obj, old)
        hist = self._history
        if len(hist) == hist.maxlen:
            self._evicted_rv = hist[0][0]
        hist.append((rv, t.group_kind, ns, ev))
        if self._listeners:
            self._pending.append((t.group_kind, ev))

    def subscribe(self, listener: Listener, kinds: Iterable[type[KubeObject]] | None = None) -> Callable[[], None]:
        """Deliver every committed change (of `kinds`, or all) to `listener`, synchronously and in order."""
        entry = (listener, frozenset(k.KIND.group_kind for k in kinds) if kinds is not None else None)
        self._listeners.append(entry)
        self._routes.clear()

        def unsubscribe() -> None:
            if entry in self._listeners:
                self._listeners.remove(entry)
                self._routes.clear()

        return unsubscribe

    # ---- reads ----------------------------------------------------------------------------------------------

    def get(self, cls: type[T], name: str, namespace: str | None = None) -> T:
        t = self._by_cls.get(cls) or self._table(cls)
        key = ((namespace or "") if t.namespaced else "", name)
        obj = t.objs.get(key)
        if obj is None:
            raise self._not_found(t, name)
        if self.detect_mutation:
            self._verify(t, key, obj)
        return cast(T, obj)

    def try_get(self, cls: type[T], name: str, namespace: str | None = None) -> T | None:
        t = self._by_cls.get(cls) or self._table(cls)
        key = ((namespace or "") if t.namespaced else "", name)
        obj = t.objs.get(key)
        if obj is not None and self.detect_mutation:
            self._verify(t, key, obj)
        return cast("T | None", obj)

    def exists(self, cls: type[KubeObject], name: str, namespace: str | None = None) -> bool:
        t = self._by_cls.get(cls) or self._table(cls)
        return ((namespace or "") if t.namespaced else "", name) in t.objs

    def count(self, cls: type[KubeObject], namespace: str | None = None) -> int:
        t = self._by_cls.get(cls) or self._table(cls)
        if namespace is None or not t.namespaced:
            return len(t.objs)
        return len(t.by_ns.get(namespace, ()))

    def _view(self, t: _Table, namespace: str | None) -> _View:
        if namespace is None:
            if t.view_all is None:
                keys = sorted(t.objs)
                t.view_all = _View(keys, [t.objs[k] for k in keys])
            return t.view_all
        view = t.view_ns.get(namespace)
        if view is None:
            keys = sorted(t.by_ns.get(namespace, ()))
            view = t.view_ns[namespace] = _View(keys, [t.objs[k] for k in keys])
        return view

    def _sorted_keys(self, t: _Table, namespace: str | None) -> list[Key]:
        return self._view(t, namespace).keys

    def _candidates(self, t: _Table, matcher: LabelMatcher) -> set[Key] | None:
        """The smallest posting list answering one of the selector's terms (None = no term narrows)."""
        best: list[set[Key]] | None = None
        best_size = -1
        for key, values in matcher.index_terms():
            by_value = t.by_label.get(key)
            if by_value is None:
                return set()
            if values is None:
                postings = [p if isinstance(p, set) else {p} for p in by_value.values()]
            else:
                postings = [p if isinstance(p, set) else {p} for v in values if (p := by_value.get(v)) is not None]
            size = sum(len(p) for p in postings)
            if size == 0:
                return set()
            if best is None or size < best_size:
                best, best_size = postings, size
        if best is None:
            return None
        if len(best) == 1:
            return best[0]
        out: set[Key] = set()
        for p in best:
            out |= p
        return out

    def list(
        self,
        cls: type[T],
        namespace: str | None = None,
        label_selector: Selector | LabelMatcher | None = None,
        field_selector: Mapping[str, str] | str | None = None,
    ) -> builtins.list[T]:
        """Objects of a kind, sorted by (namespace, name); label-selected lists read the label index."""
        with self._lock:
            return self._list(cls, namespace, label_selector, field_selector)

    def _list(
        self,
        cls: type[T],
        namespace: str | None,
        label_selector: Selector | LabelMatcher | None,
        field_selector: Mapping[str, str] | str | None,
    ) -> builtins.list[T]:
        t = self._by_cls.get(cls) or self._table(cls)
        ns = namespace if (namespace and t.namespaced) else None
        matcher = compile_label_selector(label_selector) if label_selector is not None else EVERYTHING
        fields: FieldMatcher | None = compile_field_selector(field_selector) if field_selector is not None else None
        objs = t.objs
        if fields is not None:
            pinned_ns = fields.equal_value("metadata.namespace")
            pinned_name = fields.equal_value("metadata.name")
            if pinned_ns is not None and t.namespaced:
                if ns is not None and ns != pinned_ns:
                    return []
                ns = pinned_ns
            if pinned_name is not None and (ns is not None or not t.namespaced):
                one = objs.get((ns or "", pinned_name))
                found: Iterable[KubeObject] = [] if one is None else [one]
            else:
                found = self._select(t, ns, matcher)
        else:
            found = self._select(t, ns, matcher)
        # Comprehensions over prepared lists: a big list is dominated by per-item interpreter overhead.
        if matcher.requirements:
            match = matcher.matches
            found = (o for o in found if match(o.metadata.labels))
        if fields is not None:
            out = [o for o in found if fields.matches(o)]
        else:
            out = list(found)  # a copy: the view itself changes with the next write
        if self.detect_mutation:
            for obj in out:
                self._verify(t, self._key(t, obj.name, obj.namespace), obj)
        return cast("list[T]", out)

    def _select(self, t: _Table, ns: str | None, matcher: LabelMatcher) -> Iterable[KubeObject]:
        """Candidates in order: the smallest label posting list, else the (namespace's) sorted view."""
        if matcher.requirements:
            cand = self._candidates(t, matcher)
            if cand is not None:
                if ns is not None:
                    in_ns = t.by_ns.get(ns)
                    if not in_ns:
                        return []
                    if len(in_ns) >= len(cand):
                        return map(t.objs.__getitem__, sorted(k for k in cand if k[0] == ns))
                    return self._view(t, ns).objs
                return map(t.objs.__getitem__, sorted(cand))
        return self._view(t, ns).objs

    def list_with_rv(
        self,
        cls: type[T],
        namespace: str | None = None,
        label_selector: Selector | LabelMatcher | None = None,
        field_selector: Mapping[str, str] | str | None = None,
    ) -> tuple[builtins.list[T], str]:
        """A list plus the resourceVersion it reflects, to start a watch from (list-then-watch)."""
        with self._lock:
            return self._list(cls, namespace, label_selector, field_selector), str(self._rv)

    def current_resource_version(self) -> str:
        return str(self._rv)

    def kinds(self) -> builtins.list[type[KubeObject]]:
        """Kinds that have objects in this store, by group/kind."""
        return [t.cls for _, t in sorted(self._tables.items()) if t.objs]

    def all_objects(self) -> builtins.list[KubeObject]:
        """Every object, kind by kind (by group/kind), then by (namespace, name)."""
        with self._lock:
            return [o for _, t in sorted(self._tables.items()) for o in self._view(t, None).objs]

    def events_since(self, kind_cls: type[KubeObject], resource_version: str, namespace: str | None = None) -> builtins.list[WatchEvent]:
        """The events of a kind after `resource_version`, in commit order (a watch's replay).

        "" and "0" mean "from any point": synthetic ADDED events for the current objects, like a watch
        without a resourceVersion. Older than the retained history -> Gone (410), as from the watch cache.
        """
        t = self._table(kind_cls)
        ns = namespace if (namespace and t.namespaced) else None
        if resource_version in ("", "0"):
            return [WatchEvent("ADDED", o) for o in self.list(kind_cls, ns)]
        try:
            since = int(resource_version)
        except ValueError:
            raise BadRequest(f'invalid resource version: "{resource_version}"') from None
        if since < 0:
            raise BadRequest(f'invalid resource version: "{resource_version}"')
        if since < self._evicted_rv:
            raise Gone(f"too old resource version: {since} ({self._evicted_rv + 1})")
        if since > self._rv:
            raise ResourceVersionTooLarge(f"Too large resource version: {since}, current: {self._rv}")
        out: builtins.list[WatchEvent] = []
        gk = t.group_kind
        for rv, egk, ens, ev in reversed(self._history):
            if rv <= since:
                break
            if egk == gk and (ns is None or ens == ns):
                out.append(ev)
        out.reverse()
        return out

    # ---- validation shared by create and update -----------------------------------------------------------

    def _scope_causes(self, t: _Table, meta: ObjectMeta) -> builtins.list[FieldCause]:
        if t.namespaced:
            if not meta.namespace:
                return [FieldCause("metadata.namespace", "Required value", "FieldValueRequired")]
            if meta.namespace in _VALID_NAMESPACES:
                return []
            errs = dns1123_label_errors(meta.namespace)
            if not errs:
                _remember(_VALID_NAMESPACES, meta.namespace)
            return [FieldCause("metadata.namespace", f'Invalid value: "{meta.namespace}": {e}') for e in errs]
        if meta.namespace:
            return [FieldCause("metadata.namespace", "Forbidden: not allowed on this type", "FieldValueForbidden")]
        return []

    def _meta_causes(self, meta: ObjectMeta, old: ObjectMeta | None) -> builtins.list[FieldCause]:
        causes: builtins.list[FieldCause] = []
        if old is None or meta.labels != old.labels:
            for k, v in meta.labels.items():
                if (k, v) in _VALID_LABELS:
                    continue
                bad = [FieldCause("metadata.labels", f'Invalid value: "{k}": {e}') for e in qualified_name_errors(k)]
                bad += [FieldCause("metadata.labels", f'Invalid value: "{v}": {e}') for e in label_value_errors(v)]
                if bad:
                    causes.extend(bad)
                else:
                    _remember(_VALID_LABELS, (k, v))
        if old is None or meta.annotations != old.annotations:
            for k in meta.annotations:
                if k in _VALID_KEYS:
                    continue
                bad = [FieldCause("metadata.annotations", f'Invalid value: "{k}": {e}') for e in qualified_name_errors(k)]
                if bad:
                    causes.extend(bad)
                else:
                    _remember(_VALID_KEYS, k)
        if old is None or meta.owner_references != old.owner_references:
            controllers = [r for r in meta.owner_references if r.controller]
            if len(controllers) > 1:
                causes.append(
                    FieldCause(
                        "metadata.ownerReferences",
                        "Invalid value: Only one reference can have Controller set to true. Found \"true\" in references for "
                        + " and ".join(f"{r.kind}/{r.name}" for r in controllers),
                    )
                )
            for i, r in enumerate(meta.owner_references):
                if not r.uid:
                    causes.append(FieldCause(f"metadata.ownerReferences[{i}].uid", "Invalid value: \"\": uid must not be empty"))
        if old is not None and old.deletion_timestamp is not None:
            added = [f for f in meta.finalizers if f not in old.finalizers]
            if added:
                causes.append(
                    FieldCause(
                        "metadata.finalizers",
                        f"Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added}",
                        "FieldValueForbidden",
                    )
                )
        seen: set[str] = set()
        for f in meta.finalizers:
            if f in seen:
                causes.append(FieldCause("metadata.finalizers", f'Duplicate value: "{f}"', "FieldValueDuplicate"))
            seen.add(f)
        return causes

    def _name_causes(self, t: _Table, meta: ObjectMeta, generated: bool) -> builtins.list[FieldCause]:
        name = meta.name or ""
        if generated:
            prefix = meta.generate_name or ""
            # As validation.NameIsDNSSubdomain(prefix=true): a prefix may end in '-' or '.'.
            errs = dns1123_subdomain_errors(prefix + "a" if prefix else prefix)
            return [FieldCause("metadata.generateName", f'Invalid value: "{prefix}": {e}') for e in errs]
        if not name:
            return [FieldCause("metadata.name", "Required value: name or generateName is required", "FieldValueRequired")]
        is_namespace = t.cls.KIND.group == "" and t.cls.KIND.kind == "Namespace"
        errs = dns1123_label_errors(name) if is_namespace else dns1123_subdomain_errors(name)
        return [FieldCause("metadata.name", f'Invalid value: "{name}": {e}') for e in errs]

    def _check_namespace_exists(self, namespace: str) -> None:
        if not self.require_namespace:
            return
        ns_cls = registry.lookup("v1", "Namespace")
        if ns_cls is None:
            return  # no Namespace kind registered: nothing to enforce against
        ns_obj = self._by_cls.get(ns_cls) or self._table(ns_cls)
        obj = ns_obj.objs.get(("", namespace))
        if obj is None:
            raise NotFound(f'namespaces "{namespace}" not found', kind="Namespace", name=namespace)
        if obj.metadata.deletion_timestamp is not None:
            raise Forbidden(
                f"unable to create new content in namespace {namespace} because it is being terminated",
                kind="Namespace",
                name=namespace,
            )

    def _status_default(self, t: _Table, obj: KubeObject) -> Any:
        f = t.status_field
        if f is None or f.is_required():
            return getattr(obj, "status", None)
        if t.status_default is None:
            t.status_default = f.get_default(call_default_factory=True)
        return t.status_default

    # ---- create -----------------------------------------------------------------------------------------

    def _generate_name(self, t: _Table, prefix: str, namespace: str) -> str:
        base = prefix[:_MAX_GENERATED_PREFIX]
        for _ in range(8):
            name = base + "".join(self._rng.choice(_GENERATE_ALPHABET) for _ in range(_GENERATE_SUFFIX))
            if (namespace, name) not in t.objs:
                return name
        raise AlreadyExists(f'{t.resource} "{base}" already exists: could not generate a free name', kind=t.cls.KIND.kind)

    def _new_uid(self) -> str:
        return _uuid4(self._rng.getrandbits(128))

    def create(self, obj: T) -> T:
        """Admit and store a new object; returns the stored snapshot (uid, resourceVersion, generation set)."""
        self._enter()
        try:
            return self._create(obj)
        finally:
            self._exit()

    def _create(self, obj: T) -> T:
        if not isinstance(obj, KubeObject):
            raise TypeError(f"create() takes a KubeObject, not {type(obj).__name__}")
        t = self._table(type(obj))
        meta = obj.metadata
        info = t.cls.KIND
        ident = meta.name or meta.generate_name or ""
        if meta.resource_version:
            raise BadRequest("resourceVersion should not be set on objects to be created", kind=info.kind, name=ident)
        generated = not meta.name and bool(meta.generate_name)
        causes = self._scope_causes(t, meta) + self._name_causes(t, meta, generated)
        if causes:
            # ValidateObjectMeta reports every bad metadata field at once: bad labels too, not only the name.
            raise Invalid(info.kind, ident, causes + self._meta_causes(meta, None), group=info.group)
        ns = meta.namespace or ""
        if t.namespaced:
            self._check_namespace_exists(ns)
        name = self._generate_name(t, meta.generate_name or "", ns) if generated else (meta.name or "")
        system = {
            "name": name,
            "uid": self._new_uid(),
            "creation_timestamp": _rfc3339(self._clock()),
            "generation": 1,
            "resource_version": None,
            "deletion_timestamp": None,
            "deletion_grace_period_seconds": None,
        }
        update: dict[str, Any] = {"metadata": shallow_copy(meta, system)}
        if t.status_subresource:
            update["status"] = self._status_default(t, obj)
        admitted = admission.admit_create(shallow_copy(obj, update), reader=self)
        m = admitted.metadata
        # Mutating admission may not move the object or forge the fields the server owns.
        _force(m, system)
        _force(m, {"namespace": meta.namespace if t.namespaced else None})
        causes = self._meta_causes(m, None)
        if causes:
            raise Invalid(info.kind, name, causes, group=info.group)
        key = (ns if t.namespaced else "", name)
        if key in t.objs:
            raise AlreadyExists(f'{t.resource} "{name}" already exists', kind=info.kind, name=name, group=info.group)
        rv = self._next_rv()
        _assign(m, "resource_version", str(rv))
        compact(admitted)
        self._index_add(t, key, admitted)
        self._freeze(t, key, admitted)
        self._emit(rv, t, key[0], "ADDED", admitted, None)
        return cast(T, admitted)

    # ---- update ----------------------------------------------------------------------------------------------

    def update(self, obj: T) -> T:
        """Replace an object (optimistic concurrency on metadata.resourceVersion; status kept with a subresource)."""
        self._enter()
        try:
            return self._update(obj, status_only=False, check_identity=True)
        finally:
            self._exit()

    def update_status(self, obj: T) -> T:
        """Write the status subresource: only `status` of `obj` is taken."""
        self._enter()
        try:
            return self._update(obj, status_only=True, check_identity=True)
        finally:
            self._exit()

    def _stored(self, t: _Table, obj: KubeObject) -> tuple[Key, KubeObject]:
        meta = obj.metadata
        info = t.cls.KIND
        causes = self._scope_causes(t, meta)
        if not meta.name:
            causes.append(FieldCause("metadata.name", "Required value: name is required", "FieldValueRequired"))
        if causes:
            raise Invalid(info.kind, meta.name or "", causes, group=info.group)
        key = self._key(t, meta.name or "", meta.namespace)
        old = t.objs.get(key)
        if old is None:
            raise self._not_found(t, key[1])
        if self.detect_mutation:
            self._verify(t, key, old)
        return key, old

    def _preconditions(self, t: _Table, key: Key, old: KubeObject, rv: str | None, uid: str | None) -> None:
        if rv and rv != old.metadata.resource_version:
            raise self._conflict(t, key[1])
        if uid and uid != old.metadata.uid:
            raise self._conflict(t, key[1], f"Precondition failed: UID in precondition: {uid}, UID in object meta: {old.metadata.uid}")

    def _update(
        self, obj: T, *, status_only: bool, check_identity: bool, private: bool = False, own_status: bool = False
    ) -> T:
        """`private`: `obj` is the store's own (a patch result), not the caller's. `own_status`: its status is
        also final as it is, validated and round-trip stable, so a status write stores it without a copy."""
        t = self._table(type(obj))
        key, old = self._stored(t, obj)
        if check_identity and obj is old:
            raise TypeError(
                f"{'update_status' if status_only else 'update'}() was given the store's own snapshot of "
                f'{t.cls.KIND.kind} "{key[1]}": snapshots are shared and read-only, call .deepcopy() and update the copy'
            )
        self._preconditions(t, key, old, obj.metadata.resource_version, obj.metadata.uid)
        if status_only:
            if not t.status_subresource:
                raise NotFound(f"the server could not find the requested resource ({t.resource}/status)", kind=t.cls.KIND.kind, name=key[1])
            # The status endpoint keeps everything but status (apiserver's PrepareForUpdate for /status). Only
            # status is new: the snapshot shares spec (read-only like every snapshot) with the one it replaces
            # and gets its own metadata, so a status write costs a copy of the status, not of the object.
            status = obj.__dict__.get("status")
            before = old.__dict__.get("status")
            if status is before or status == before:
                return cast(T, old)  # nothing changed: no write, no resourceVersion, no event
            if not own_status:
                status = share_copy(status, before)
            admitted = shallow_copy(old, {"metadata": shallow_copy(old.metadata), "status": status})
        else:
            om = old.metadata
            system = {
                "uid": om.uid,
                "creation_timestamp": om.creation_timestamp,
                "deletion_timestamp": om.deletion_timestamp,
                "deletion_grace_period_seconds": om.deletion_grace_period_seconds,
                "generation": om.generation,
                "resource_version": om.resource_version,
            }
            update: dict[str, Any] = {"metadata": shallow_copy(obj.metadata, system)}
            if t.status_subresource:
                update["status"] = old.__dict__.get("status")
            admitted = admission.admit_update(shallow_copy(obj, update), old, reader=self, copy=not private)
            m = admitted.metadata
            _force(m, system)
            _force(m, {"name": om.name, "namespace": om.namespace})
            causes = self._meta_causes(m, om)
            if causes:
                info = t.cls.KIND
                raise Invalid(info.kind, key[1], causes, group=info.group)
        return cast(T, self._commit_update(t, key, old, admitted, status_only=status_only))

    def _spec_changed(self, t: _Table, new: KubeObject, old: KubeObject) -> bool:
        nd, od = new.__dict__, old.__dict__
        for f in t.spec_fields:
            a, b = nd[f], od[f]
            if a is not b and a != b:
                return True
        return (new.__pydantic_extra__ or {}) != (old.__pydantic_extra__ or {})

    def _commit_update(
        self, t: _Table, key: Key, old: KubeObject, new: KubeObject, *, status_only: bool = False
    ) -> KubeObject:
        """Store an admitted replacement (system metadata already carried over from `old`). A status-only
        replacement is known to differ (its status was compared) and shares spec with `old`."""
        m = new.metadata
        if not status_only and new == old:
            return old  # nothing changed: no write, no resourceVersion, no event
        if not status_only and self._spec_changed(t, new, old):
            _assign(m, "generation", (old.metadata.generation or 0) + 1)
        rv = self._next_rv()
        _assign(m, "resource_version", str(rv))
        if m.deletion_timestamp is not None and not m.finalizers:
            self._remove(t, key, old, new, rv)
            return new
        compact(new)
        self._index_replace(t, key, old, new)
        self._freeze(t, key, new)
        self._emit(rv, t, key[0], "MODIFIED", new, old)
        self._owner_refs_changed(old, new)
        return new

    def _owner_refs_changed(self, old: KubeObject, new: KubeObject) -> None:
        if old.metadata.owner_references is new.metadata.owner_references:
            return  # a status write, or metadata whose references were carried over
        before = {r.uid: r.block_owner_deletion for r in old.metadata.owner_references}
        after = {r.uid: r.block_owner_deletion for r in new.metadata.owner_references}
        if before == after:
            return
        # An owner in foreground deletion may be waiting on this dependent's blockOwnerDeletion reference.
        for uid in sorted(before):
            if after.get(uid) != before[uid]:
                self._gc_queue.append(("owner", uid))
        self._run_gc()

    # ---- patch -------------------------------------------------------------------------------------------

    def patch(
        self,
        cls: type[T],
        name: str,
        namespace: str | None,
        patch: Any,
        patch_type: PatchType = "merge",
        subresource: Literal["status"] | None = None,
    ) -> T:
        """Merge ("strategic" = merge, see patch.py) or JSON patch; metadata.resourceVersion in it is a precondition."""
        self._enter()
        try:
            return self._patch(cls, name, namespace, patch, patch_type, subresource)
        finally:
            self._exit()

    def _patch(
        self, cls: type[T], name: str, namespace: str | None, patch: Any, patch_type: str, subresource: str | None
    ) -> T:
        t = self._table(cls)
        info = cls.KIND
        key = self._key(t, name, namespace)
        old = t.objs.get(key)
        if old is None:
            raise self._not_found(t, name)
        if self.detect_mutation:
            self._verify(t, key, old)
        if subresource not in (None, "status"):
            raise NotFound(f"the server could not find the requested resource ({t.resource}/{subresource})", kind=info.kind, name=name)
        if patch_type in ("merge", "strategic"):
            by_section = self._merge_by_section(old, patch)
            if by_section is not None:
                status_only = subresource == "status"
                # The merged status was validated from a dict the store built (the stored status's dump
                # merged with a copy of the patch): the copy a status write makes of a caller's status would
                # give it back unchanged, except for a null inside a list the patch brings in (an unknown
                # field's null the validated model keeps and the copy's dump drops).
                own = status_only and not _null_in_list(patch.get("status"))
                return cast(
                    T,
                    self._update(by_section, status_only=status_only, check_identity=False, private=True, own_status=own),
                )
        base = old.wire()
        try:
            doc = load_patch(patch)
            if patch_type in ("merge", "strategic"):
                if not isinstance(doc, Mapping):
                    raise PatchError("a merge patch must be a JSON object", malformed=True)
                patched = merge_patch(base, doc)
            elif patch_type == "json":
                patched = json_patch(base, doc, in_place=True)
            else:
                raise BadRequest(f"unsupported patch type {patch_type!r} (merge, json, strategic)", kind=info.kind, name=name)
        except PatchError as e:
            if e.malformed:
                raise BadRequest(e.message, kind=info.kind, name=name, group=info.group) from None
            raise Invalid(info.kind, name, [FieldCause(e.path or "<root>", e.message)], group=info.group) from None
        if not isinstance(patched, dict):
            raise BadRequest("the patched object is not a JSON object", kind=info.kind, name=name)
        if patched.get("apiVersion") != info.api_version or patched.get("kind") != info.kind:
            raise BadRequest(f"the patch may not change apiVersion/kind of {t.resource} \"{name}\"", kind=info.kind, name=name)
        pmeta = patched.get("metadata")
        if not isinstance(pmeta, dict):
            raise BadRequest("the patched object has no metadata", kind=info.kind, name=name)
        if pmeta.get("name") != name or (t.namespaced and pmeta.get("namespace") != (namespace or None)):
            raise BadRequest(
                f"the name of the object ({pmeta.get('name')}) does not match the name on the URL ({name})", kind=info.kind, name=name
            )
        new = admission.decode(patched, cls)
        return cast(T, self._update(new, status_only=subresource == "status", check_identity=False, private=True))

    _SECTIONS = frozenset({"metadata", "spec", "status"})

    def _merge_by_section(self, old: KubeObject, patch: Any) -> KubeObject | None:
        """A merge patch of metadata/spec/status applied section by section: only the sections it names are
        dumped, merged and validated; the others stay shared with `old` (read-only, as every snapshot).
        Same result as patching the whole document. None sends the patch down the general path, which also
        words every error, so this path never has to: any doubt (defaulters that edit in place, a renamed
        object, an invalid section) is a None."""
        cls = type(old)
        if not isinstance(patch, Mapping) or not patch or not patch.keys() <= self._SECTIONS:
            return None
        if registry.hooks_for(cls).default:
            return None  # defaulters edit the admitted object in place: it must share nothing
        update: dict[str, Any] = {}
        for section, change in patch.items():
            current = getattr(old, section, None)
            field = cls.__pydantic_fields__.get(section)
            if not isinstance(change, Mapping) or not isinstance(current, BaseModel) or field is None:
                return None
            sub = type(current)
            if field.annotation is not sub:
                return None
            try:
                merged = merge_patch(current.model_dump(mode="json", by_alias=True, exclude_none=True), change)
                if section == "metadata" and (
                    merged.get("name") != old.metadata.name or merged.get("namespace") != old.metadata.namespace
                ):
                    return None
                update[section] = sub.model_validate(admission.prune_nulls(merged, sub))
            except (PatchError, ValidationError):
                return None
        return shallow_copy(old, update)

    # ---- delete and garbage collection -----------------------------------------------------------------------

    def delete(
        self,
        cls: type[T],
        name: str,
        namespace: str | None = None,
        propagation: Propagation = "Background",
        *,
        uid: str | None = None,
        resource_version: str | None = None,
    ) -> None:
        """Delete (or start deleting, with finalizers) an object; `uid`/`resource_version` are preconditions."""
        self._enter()
        try:
            t = self._table(cls)
            key = self._key(t, name, namespace)
            old = t.objs.get(key)
            if old is None:
                raise self._not_found(t, name)
            if self.detect_mutation:
                self._verify(t, key, old)
            if uid or resource_version:
                self._preconditions(t, key, old, resource_version, uid)
            self._delete(t, key, old, propagation)
        finally:
            self._exit()

    def _delete(self, t: _Table, key: Key, old: KubeObject, propagation: Propagation) -> None:
        if old.metadata.deletion_timestamp is not None:
            return  # already being deleted: the second request changes nothing
        admission.admit_delete(old, reader=self)
        if propagation not in ("Background", "Foreground", "Orphan"):
            raise BadRequest(f'unsupported propagationPolicy "{propagation}"', kind=t.cls.KIND.kind, name=key[1])
        uid = old.metadata.uid or ""
        if propagation == "Orphan":
            for dep_uid in sorted(self._dependents.get(uid, ())):
                self._drop_owner_refs(dep_uid, {uid})
            old = t.objs[key]
        finalizers = list(old.metadata.finalizers)
        if propagation == "Foreground" and FOREGROUND_DELETION not in finalizers:
            finalizers.append(FOREGROUND_DELETION)
        if not finalizers:
            rv = self._next_rv()
            final = old.model_copy(update={"metadata": old.metadata.model_copy(update={"resource_version": str(rv)})})
            self._remove(t, key, old, final, rv)
            return
        om = old.metadata
        meta = om.model_copy(
            update={
                "deletion_timestamp": _rfc3339(self._clock()),
                "deletion_grace_period_seconds": 0,
                "finalizers": finalizers,
                # markAsDeleting: controllers see a deletion as a generation change.
                "generation": om.generation + 1 if om.generation else om.generation,
            }
        )
        new = old.model_copy(update={"metadata": meta})
        rv = self._next_rv()
        meta.resource_version = str(rv)
        compact(new)
        self._set_obj(t, key, new)
        self._freeze(t, key, new)
        self._emit(rv, t, key[0], "MODIFIED", new, old)
        if FOREGROUND_DELETION in finalizers:
            # graphBuilder: an owner entering foreground deletion queues all its dependents, then itself.
            for dep_uid in sorted(self._dependents.get(uid, ())):
                self._gc_queue.append(("attempt", dep_uid))
            self._gc_queue.append(("owner", uid))
            self._run_gc()

    def _remove(self, t: _Table, key: Key, old: KubeObject, final: KubeObject, rv: int) -> None:
        self._index_remove(t, key, old)
        self._emit(rv, t, key[0], "DELETED", final, old)
        uid = old.metadata.uid or ""
        for dep_uid in sorted(self._dependents.get(uid, ())):
            self._gc_queue.append(("attempt", dep_uid))
        for ref in old.metadata.owner_references:
            self._gc_queue.append(("owner", ref.uid))
        self._run_gc()

    def _run_gc(self) -> None:
        """Drain the collector's queue; nested removals queue behind the current item (no deep recursion)."""
        if self._gc_running:
            return
        self._gc_running = True
        try:
            while self._gc_queue:
                what, uid = self._gc_queue.popleft()
                try:
                    if what == "attempt":
                        self._attempt_to_delete(uid)
                    else:
                        self._process_deleting_dependents(uid)
                except ApiError:
                    # A webhook refused the collector; the real one retries forever, here the object just stays.
                    continue
        finally:
            self._gc_running = False

    def _lookup_uid(self, uid: str) -> tuple[_Table, Key, KubeObject] | None:
        loc = self._by_uid.get(uid)
        if loc is None:
            return None
        t, key = loc
        return t, key, t.objs[key]

    def _attempt_to_delete(self, uid: str) -> None:
        found = self._lookup_uid(uid)
        if found is None:
            return
        t, key, item = found
        m = item.metadata
        if m.deletion_timestamp is not None:
            if FOREGROUND_DELETION in m.finalizers:
                self._process_deleting_dependents(uid)
            return
        refs = m.owner_references
        if not refs:
            return
        solid: builtins.list[str] = []
        gone: set[str] = set()  # dangling or waiting for its dependents' deletion
        waiting = False
        for ref in refs:
            owner = self._lookup_uid(ref.uid)
            if owner is None:
                gone.add(ref.uid)
            elif owner[2].metadata.deletion_timestamp is not None and FOREGROUND_DELETION in owner[2].metadata.finalizers:
                gone.add(ref.uid)
                waiting = True
            else:
                solid.append(ref.uid)
        if solid:
            if gone:
                self._drop_owner_refs(uid, gone)
            return
        if waiting and self._dependents.get(uid):
            policy: Propagation = "Foreground"
        elif ORPHAN in m.finalizers:
            policy = "Orphan"
        elif FOREGROUND_DELETION in m.finalizers:
            policy = "Foreground"
        else:
            policy = "Background"
        self._delete(t, key, item, policy)

    def _process_deleting_dependents(self, uid: str) -> None:
        found = self._lookup_uid(uid)
        if found is None:
            return
        _, _, owner = found
        om = owner.metadata
        if om.deletion_timestamp is None or FOREGROUND_DELETION not in om.finalizers:
            return
        blocking: builtins.list[tuple[str, KubeObject]] = []
        for dep_uid in sorted(self._dependents.get(uid, ())):
            dep = self._lookup_uid(dep_uid)
            if dep is not None and any(r.uid == uid and r.block_owner_deletion for r in dep[2].metadata.owner_references):
                blocking.append((dep_uid, dep[2]))
        if not blocking:
            # The collector's own patch, through admission like any other client's.
            new = owner.deepcopy()
            new.metadata.finalizers = [f for f in om.finalizers if f != FOREGROUND_DELETION]
            new.metadata.resource_version = None
            self._update(new, status_only=False, check_identity=False)
            return
        for dep_uid, dep_obj in blocking:
            if dep_obj.metadata.deletion_timestamp is None:
                self._gc_queue.append(("attempt", dep_uid))

    def _drop_owner_refs(self, uid: str, owners: set[str]) -> None:
        """The collector's patch removing references to owners that are gone (or orphaning dependents)."""
        found = self._lookup_uid(uid)
        if found is None:
            return
        item = found[2]
        new = item.deepcopy()
        new.metadata.owner_references = [r for r in new.metadata.owner_references if r.uid not in owners]
        new.metadata.resource_version = None
        self._update(new, status_only=False, check_identity=False)

    # ---- helpers for tests, reports and invariants --------------------------------------------------------

    def snapshot(self) -> dict[str, dict[Key, dict[str, Any]]]:
        """The wire form of everything, by group/kind and key (for comparisons in tests and reports)."""
        return {gk: {k: t.objs[k].wire() for k in self._sorted_keys(t, None)} for gk, t in sorted(self._tables.items())}

    def __len__(self) -> int:
        return sum(len(t.objs) for t in self._tables.values())

    def __repr__(self) -> str:
        return f"MemoryStore(name={self.name!r}, objects={len(self)}, resourceVersion={self._rv})"

