"""Event recorders: core/v1 Events written through the store, best effort, aggregated like client-go.

client-go's correlator folds identical events (same object, type, reason, message, source) into one Event
whose `count` grows and `lastTimestamp` moves; we keep that, with an LRU of the same size (4096). Its
similar-message aggregation ("(combined from similar events)") and per-object spam filter are left out:
they only change what happens past 10 distinct messages per object per 10 minutes.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dpf_core.errors import AlreadyExists, NotFound

from .types import Clock, EventType, rfc3339

if TYPE_CHECKING:
    from dpf_core.api.meta import KubeObject
    from dpf_core.store.protocol import Client

_log = logging.getLogger("dpf.events")

CACHE_SIZE = 4096


def _default_event_cls() -> type[KubeObject]:
    # Imported late: the API module registers many kinds and is not needed until the first event.
    module = importlib.import_module("dpf_core.api.external")
    event_cls: type[KubeObject] = module.Event
    return event_cls


@dataclass
class _Seen:
    name: str
    namespace: str
    count: int
    first_timestamp: str


class EventRecorder:
    """record.EventRecorder over a store client. Never raises into the caller."""

    def __init__(
        self,
        client: Client,
        clock: Clock,
        component: str,
        *,
        host: str | None = None,
        event_cls: type[KubeObject] | None = None,
    ) -> None:
        self.client = client
        self.clock = clock
        self.component = component
        self.host = host
        self._event_cls = event_cls
        self._seen: OrderedDict[tuple[str, ...], _Seen] = OrderedDict()
        # Names are `<object>.<16 hex>` like client-go's UnixNano suffix, but from a counter seeded by
        # the clock, so twin replays name their events identically.
        self._counter = 0
        self._lock = threading.Lock()
        self.written = 0
        self.failed = 0

    def _cls(self) -> type[KubeObject]:
        if self._event_cls is None:
            self._event_cls = _default_event_cls()
        return self._event_cls

    def _next_name(self, obj_name: str, now: float) -> str:
        self._counter = max(self._counter + 1, int(now * 1e9))
        return f"{obj_name}.{self._counter & 0xFFFFFFFFFFFFFFFF:016x}"

    def event(self, obj: KubeObject, type: EventType, reason: str, message: str) -> None:
        try:
            self._record(obj, type, reason, message)
        except Exception as e:
            # Best effort, as client-go: a failed Event write must never fail the reconcile that sent it.
            self.failed += 1
            _log.debug("dropping event %s %s on %s/%s: %s", type, reason, obj.namespace, obj.name, e)

    def _record(self, obj: KubeObject, type: EventType, reason: str, message: str) -> None:
        meta = obj.metadata
        obj_ns = meta.namespace or ""
        key = (
            self.component,
            self.host or "",
            obj.api_version,
            obj.kind,
            obj_ns,
            meta.name or "",
            meta.uid or "",
            type,
            reason,
            message,
        )
        now = self.clock.now()
        ts = rfc3339(now)
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None:
                seen.count += 1
                self._seen.move_to_end(key)
            else:
                # Cluster-scoped objects' events go to "default", as client-go's makeEvent does.
                seen = _Seen(self._next_name(meta.name or "", now), obj_ns or "default", 1, ts)
                self._seen[key] = seen
                if len(self._seen) > CACHE_SIZE:
                    self._seen.popitem(last=False)
            name, ns, count, first = seen.name, seen.namespace, seen.count, seen.first_timestamp
        cls = self._cls()
        if count > 1:
            try:
                self.client.patch(cls, name, ns, {"count": count, "lastTimestamp": ts}, "merge")
                self.written += 1
                return
            except NotFound:
                pass  # someone deleted it (TTL, kubectl): recreate it with the running count
        involved: dict[str, Any] = {"apiVersion": obj.api_version, "kind": obj.kind, "name": meta.name or ""}
        if meta.namespace:
            involved["namespace"] = meta.namespace
        if meta.uid:
            involved["uid"] = meta.uid
        source: dict[str, Any] = {"component": self.component}
        if self.host:
            source["host"] = self.host
        wire: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": type,
            "count": count,
            "firstTimestamp": first,
            "lastTimestamp": ts,
            "source": source,
            "reportingComponent": self.component,
        }
        event = cls.model_validate(wire)
        for _ in range(3):
            try:
                self.client.create(event)
                self.written += 1
                return
            except AlreadyExists:
                # Another recorder (another component, same object, same instant) took the name.
                with self._lock:
                    seen.name = self._next_name(meta.name or "", now)
                    name = seen.name
                event.metadata.name = name


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    api_version: str
    kind: str
    namespace: str | None
    name: str
    type: str
    reason: str
    message: str
    time: float | None


class MemoryRecorder:
    """Keeps events in a list (tests) or only counts them (`keep=False`, for fleet-scale runs)."""

    def __init__(self, clock: Clock | None = None, *, keep: bool = True) -> None:
        self.clock = clock
        self.keep = keep
        self.events: list[RecordedEvent] = []
        self.counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def event(self, obj: KubeObject, type: EventType, reason: str, message: str) -> None:
        with self._lock:
            self.counts[(type, reason)] += 1
            if self.keep:
                t = self.clock.now() if self.clock is not None else None
                meta = obj.metadata
                self.events.append(
                    RecordedEvent(obj.api_version, obj.kind, meta.namespace, meta.name or "", type, reason, message, t)
                )

    def reasons(self) -> list[str]:
        return [e.reason for e in self.events]

    def total(self) -> int:
        return sum(self.counts.values())


class NullRecorder:
    def event(self, obj: KubeObject, type: EventType, reason: str, message: str) -> None:
        return None
