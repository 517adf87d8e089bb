"""Event recorders: core/v1 Events aggregated like client-go's correlator, best effort, deterministic names."""

from __future__ import annotations

from typing import Any

import pytest

from dpf_core.api.external import Event
from dpf_core.api.meta import KubeObject
from dpf_core.errors import AlreadyExists, NotFound, ServiceUnavailable
from dpf_core.runtime import DEFAULT_EPOCH, EventRecorder, ManualClock, MemoryRecorder, NullRecorder, rfc3339
from dpf_core.store.memory import MemoryStore


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        elif v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


class EventSink:
    """A store stand-in holding Events by (namespace, name); can be told to fail."""

    def __init__(self) -> None:
        self.events: dict[tuple[str | None, str], KubeObject] = {}
        self.fail_with: Exception | None = None
        self.creates = 0
        self.patches = 0

    def create(self, obj: KubeObject) -> KubeObject:
        if self.fail_with is not None:
            raise self.fail_with
        key = (obj.metadata.namespace, obj.name)
        if key in self.events:
            raise AlreadyExists(f"{obj.name} exists")
        self.creates += 1
        self.events[key] = obj.deepcopy()
        return self.events[key]

    def patch(
        self,
        cls: type[KubeObject],
        name: str,
        namespace: str | None,
        patch: Any,
        patch_type: str = "merge",
        subresource: str | None = None,
    ) -> KubeObject:
        if self.fail_with is not None:
            raise self.fail_with
        cur = self.events.get((namespace, name))
        if cur is None:
            raise NotFound(f"{name} not found")
        self.patches += 1
        self.events[(namespace, name)] = cls.model_validate(_merge(cur.wire(), patch))
        return self.events[(namespace, name)]

    def only(self) -> dict[str, Any]:
        assert len(self.events) == 1
        return next(iter(self.events.values())).wire()


def pod(name: str = "dpu-0", ns: str | None = "dpf-operator-system") -> Event:
    # Any kind works as the involved object; an Event is a handy KubeObject with a real apiVersion.
    obj = Event.new(name, ns)
    obj.metadata.uid = "1111-2222"
    return obj


def test_event_is_written_as_core_v1_event() -> None:
    sink, clock = EventSink(), ManualClock()
    rec = EventRecorder(sink, clock, "dpu-controller")  # type: ignore[arg-type]
    rec.event(pod(), "Warning", "FailedCreate", "no pci address label")
    ev = sink.only()
    assert ev["metadata"] == {"name": f"dpu-0.{int(DEFAULT_EPOCH * 1e9):016x}", "namespace": "dpf-operator-system"}
    assert ev["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Event",
        "name": "dpu-0",
        "namespace": "dpf-operator-system",
        "uid": "1111-2222",
    }
    assert (ev["type"], ev["reason"], ev["message"], ev["count"]) == (
        "Warning",
        "FailedCreate",
        "no pci address label",
        1,
    )
    assert ev["firstTimestamp"] == ev["lastTimestamp"] == "2025-01-01T00:00:00Z"
    assert ev["source"] == {"component": "dpu-controller"} and ev["reportingComponent"] == "dpu-controller"
    assert len(ev["metadata"]["name"].rpartition(".")[2]) == 16


def test_identical_events_aggregate_by_count_and_last_timestamp() -> None:
    sink, clock = EventSink(), ManualClock()
    rec = EventRecorder(sink, clock, "bfb-controller")  # type: ignore[arg-type]
    for _ in range(3):
        rec.event(pod(), "Normal", "SuccessfulDownload", "done")
        clock.advance(10)
    ev = sink.only()
    assert ev["count"] == 3
    assert ev["firstTimestamp"] == rfc3339(DEFAULT_EPOCH)
    assert ev["lastTimestamp"] == rfc3339(DEFAULT_EPOCH + 20)
    assert (sink.creates, sink.patches) == (1, 2)
    # A different message, type, reason or object is its own Event.
    rec.event(pod(), "Normal", "SuccessfulDownload", "done again")
    rec.event(pod(), "Warning", "SuccessfulDownload", "done")
    rec.event(pod("dpu-1"), "Normal", "SuccessfulDownload", "done")
    assert len(sink.events) == 4


def test_names_are_unique_and_deterministic() -> None:
    def run() -> list[str]:
        sink, clock = EventSink(), ManualClock()
        rec = EventRecorder(sink, clock, "c")  # type: ignore[arg-type]
        for i in range(5):
            rec.event(pod(), "Normal", "R", f"m{i}")  # same instant, five events
        return [name for _, name in sink.events]

    names = run()
    assert len(set(names)) == 5
    assert names == run()


def test_cluster_scoped_objects_get_events_in_default() -> None:
    sink = EventSink()
    EventRecorder(sink, ManualClock(), "c").event(pod("node1", None), "Normal", "R", "m")  # type: ignore[arg-type]
    ev = sink.only()
    assert ev["metadata"]["namespace"] == "default"
    assert "namespace" not in ev["involvedObject"]


def test_deleted_aggregate_is_recreated_with_the_running_count() -> None:
    sink, clock = EventSink(), ManualClock()
    rec = EventRecorder(sink, clock, "c")  # type: ignore[arg-type]
    rec.event(pod(), "Normal", "R", "m")
    sink.events.clear()
    clock.advance(5)
    rec.event(pod(), "Normal", "R", "m")
    ev = sink.only()
    assert (
        ev["count"] == 2
        and ev["firstTimestamp"] == rfc3339(DEFAULT_EPOCH)
        and ev["lastTimestamp"] == rfc3339(DEFAULT_EPOCH + 5)
    )


def test_name_taken_by_another_recorder_moves_to_the_next_name() -> None:
    sink, clock = EventSink(), ManualClock()
    EventRecorder(sink, clock, "a").event(pod(), "Normal", "R", "from a")  # type: ignore[arg-type]
    EventRecorder(sink, clock, "b").event(pod(), "Normal", "R", "from b")  # type: ignore[arg-type]
    assert len(sink.events) == 2


@pytest.mark.parametrize("error", [ServiceUnavailable("apiserver down"), RuntimeError("bug in sink")])
def test_write_failures_never_reach_the_caller(error: Exception) -> None:
    sink = EventSink()
    sink.fail_with = error
    rec = EventRecorder(sink, ManualClock(), "c")  # type: ignore[arg-type]
    rec.event(pod(), "Warning", "R", "m")
    assert rec.failed == 1 and rec.written == 0 and not sink.events
    sink.fail_with = None
    rec.event(pod(), "Warning", "R", "m")
    assert rec.written == 1


def test_memory_and_null_recorders() -> None:
    clock = ManualClock()
    mem = MemoryRecorder(clock)
    mem.event(pod(), "Normal", "Created", "x")
    clock.advance(1)
    mem.event(pod("b", "ns"), "Warning", "Failed", "y")
    assert mem.reasons() == ["Created", "Failed"]
    assert (mem.events[1].namespace, mem.events[1].name, mem.events[1].time) == ("ns", "b", DEFAULT_EPOCH + 1)
    counting = MemoryRecorder(keep=False)
    for _ in range(1000):
        counting.event(pod(), "Normal", "Created", "x")
    assert counting.events == [] and counting.counts[("Normal", "Created")] == 1000 and counting.total() == 1000
    NullRecorder().event(pod(), "Normal", "R", "m")


def test_events_aggregate_in_a_memory_store() -> None:
    clock = ManualClock()
    store = MemoryStore(clock.now)
    rec = EventRecorder(store, clock, "dpuset-controller")
    for _ in range(4):
        rec.event(pod(), "Warning", "FailedCreate", "no pci label")
        clock.advance(1)
    (ev,) = store.list(Event, "dpf-operator-system")
    assert (ev.count, ev.first_timestamp, ev.last_timestamp) == (4, rfc3339(DEFAULT_EPOCH), rfc3339(DEFAULT_EPOCH + 3))
    assert ev.involved_object.name == "dpu-0" and ev.source is not None and ev.source.component == "dpuset-controller"
    assert rec.written == 4 and rec.failed == 0
