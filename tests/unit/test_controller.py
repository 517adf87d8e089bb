"""Controller, Manager and drivers: mapping events to requests and applying results like controller-runtime."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from pydantic import Field

from dpf_core.api.meta import KindInfo, KubeObject, OwnerReference
from dpf_core.runtime import (
    DEFAULT_EPOCH,
    Context,
    Controller,
    Manager,
    ManualClock,
    MemoryRecorder,
    Request,
    RequeueAfterError,
    Result,
    SyncDriver,
    TerminalError,
    ThreadedDriver,
    WallClock,
    Watch,
    all_of,
    by_label,
    from_object,
    generation_changed,
    labels_changed,
    own,
    owner,
    parse_rfc3339,
    rfc3339,
)
from dpf_core.store.memory import MemoryStore
from dpf_core.store.protocol import EventType, WatchEvent


class Parent(KubeObject):
    KIND: ClassVar[KindInfo] = KindInfo(
        group="test.dpu.nvidia.com", version="v1alpha1", kind="Parent", plural="parents", singular="parent"
    )
    spec: dict[str, Any] = Field(default_factory=dict)
    status: dict[str, Any] = Field(default_factory=dict)


class Child(KubeObject):
    KIND: ClassVar[KindInfo] = KindInfo(
        group="test.dpu.nvidia.com", version="v1alpha1", kind="Child", plural="children", singular="child"
    )
    spec: dict[str, Any] = Field(default_factory=dict)


class Box(KubeObject):
    """A cluster-scoped kind (like Node)."""

    KIND: ClassVar[KindInfo] = KindInfo(
        group="", version="v1", kind="Box", plural="boxes", singular="box", namespaced=False
    )
    spec: dict[str, Any] = Field(default_factory=dict)


def new_store(clock: ManualClock | None = None) -> MemoryStore:
    return MemoryStore(clock.now if clock is not None else None)


def parent(name: str, ns: str = "dpf", **labels: str) -> Parent:
    p = Parent.new(name, ns)
    p.metadata.labels.update(labels)
    return p


def child_of(name: str, owner_name: str, ns: str = "dpf", controller: bool = True, kind: str = "Parent") -> Child:
    c = Child.new(name, ns)
    c.metadata.owner_references.append(
        OwnerReference(
            api_version="test.dpu.nvidia.com/v1alpha1", kind=kind, name=owner_name, uid="u", controller=controller
        )
    )
    return c


def noop(ctx: Context, req: Request) -> Result:
    return Result()


# -- time helpers --------------------------------------------------------------------------------------


def test_rfc3339_matches_metav1_time_and_round_trips() -> None:
    assert rfc3339(DEFAULT_EPOCH) == "2025-01-01T00:00:00Z"
    assert rfc3339(DEFAULT_EPOCH + 59.999) == "2025-01-01T00:00:59Z"  # truncated, as Go formats
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert parse_rfc3339("2025-01-01T00:00:59Z") == DEFAULT_EPOCH + 59
    assert parse_rfc3339("2025-01-01T01:00:00+01:00") == DEFAULT_EPOCH
    assert parse_rfc3339("2025-01-01T00:00:00.250000Z") == DEFAULT_EPOCH + 0.25
    for t in (0.0, 951782400.0, DEFAULT_EPOCH + 86399):
        assert parse_rfc3339(rfc3339(t)) == t
    with pytest.raises(ValueError):
        parse_rfc3339("yesterday")
    with pytest.raises(ValueError):
        parse_rfc3339("2025-01-01T00:00:00")


def test_manual_clock_never_runs_backwards() -> None:
    c = ManualClock()
    assert c.now() == DEFAULT_EPOCH
    c.advance(1.5)
    c.set(DEFAULT_EPOCH + 10)
    assert c.now() == DEFAULT_EPOCH + 10
    with pytest.raises(ValueError):
        c.set(DEFAULT_EPOCH)
    with pytest.raises(ValueError):
        c.advance(-1)


def test_requests_sort_with_and_without_namespace() -> None:
    reqs = [Request("b", "x"), Request(None, "z"), Request("a", "y")]
    assert sorted(reqs) == [Request(None, "z"), Request("a", "y"), Request("b", "x")]
    assert str(Request("ns", "n")) == "ns/n" and str(Request(None, "n")) == "n"


# -- mappers and predicates ----------------------------------------------------------------------------


def test_own_mapper_maps_every_event_type_to_the_object() -> None:
    p = parent("p1")
    ev_types: tuple[EventType, ...] = ("ADDED", "MODIFIED", "DELETED")
    for ev_type in ev_types:
        assert list(own()(WatchEvent(ev_type, p))) == [Request("dpf", "p1")]
    assert list(own()(WatchEvent("ADDED", Box.new("b")))) == [Request(None, "b")]


def test_owner_mapper_follows_the_controller_reference_of_that_kind() -> None:
    m = owner(Parent)
    assert list(m(WatchEvent("ADDED", child_of("c1", "p1")))) == [Request("dpf", "p1")]
    assert list(m(WatchEvent("ADDED", child_of("c1", "p1", controller=False)))) == []
    assert list(m(WatchEvent("ADDED", child_of("c1", "p1", kind="Other")))) == []
    assert list(owner(Parent, controller_only=False)(WatchEvent("ADDED", child_of("c1", "p1", controller=False)))) == [
        Request("dpf", "p1")
    ]
    # An update that moves the child to another owner enqueues both owners.
    moved = WatchEvent("MODIFIED", child_of("c1", "p2"), old=child_of("c1", "p1"))
    assert list(m(moved)) == [Request("dpf", "p2"), Request("dpf", "p1")]


def test_owner_mapper_for_a_cluster_scoped_owner_has_no_namespace() -> None:
    c = Child.new("c", "dpf")
    c.metadata.owner_references.append(
        OwnerReference(api_version="v1", kind="Box", name="b1", uid="u", controller=True)
    )
    assert list(owner(Box)(WatchEvent("ADDED", c))) == [Request(None, "b1")]


def test_label_mapper() -> None:
    m = by_label("dpu.nvidia.com/owned-by-name", "dpu.nvidia.com/owned-by-namespace")
    c = Child.new("c", "dpf-child")
    assert list(m(WatchEvent("ADDED", c))) == []
    c.metadata.labels["dpu.nvidia.com/owned-by-name"] = "p1"
    assert list(m(WatchEvent("ADDED", c))) == [Request("dpf-child", "p1")]
    c.metadata.labels["dpu.nvidia.com/owned-by-namespace"] = "other"
    assert list(m(WatchEvent("ADDED", c))) == [Request("other", "p1")]
    assert list(by_label("dpu.nvidia.com/owned-by-name", cluster_scoped=True)(WatchEvent("ADDED", c))) == [
        Request(None, "p1")
    ]


def test_all_of_mapper_lists_every_target() -> None:
    store = new_store()
    store.create(parent("p1"))
    store.create(parent("p2", ns="other"))
    m = all_of(Parent, store.list)
    assert sorted(m(WatchEvent("MODIFIED", Box.new("node1")))) == [Request("dpf", "p1"), Request("other", "p2")]


def test_from_object_mapper_maps_both_sides_of_an_update() -> None:
    m = from_object(lambda o: [Request(None, o.metadata.labels.get("box", ""))])
    old, new = parent("p", box="b1"), parent("p", box="b2")
    assert list(m(WatchEvent("MODIFIED", new, old))) == [Request(None, "b2"), Request(None, "b1")]


def test_predicates() -> None:
    old = parent("p")
    old.metadata.generation = 1
    new = old.deepcopy()
    new.metadata.resource_version = "9"
    assert generation_changed(WatchEvent("ADDED", new))
    assert not generation_changed(WatchEvent("MODIFIED", new, old))
    new.metadata.generation = 2
    assert generation_changed(WatchEvent("MODIFIED", new, old))
    assert not labels_changed(WatchEvent("MODIFIED", new, old))
    new.metadata.labels["x"] = "y"
    assert labels_changed(WatchEvent("MODIFIED", new, old))


def test_controller_routes_by_kind_and_filters_by_predicate() -> None:
    c = Controller(
        "parents",
        noop,
        Parent,
        watches=[Watch(Child, owner(Parent))],
        for_predicate=generation_changed,
    )
    p = parent("p1")
    p.metadata.generation = 1
    assert c.handle_event(WatchEvent("ADDED", p)) == 1
    same_gen = p.deepcopy()
    assert c.handle_event(WatchEvent("MODIFIED", same_gen, p)) == 0  # status-only update filtered
    assert c.handle_event(WatchEvent("ADDED", child_of("c", "p2"))) == 1
    assert c.handle_event(WatchEvent("ADDED", Box.new("b"))) == 0  # not watched
    assert c.handle_event(WatchEvent("BOOKMARK", p)) == 0
    assert c.queue.ready_keys() == [Request("dpf", "p1"), Request("dpf", "p2")]
    m = c.metrics()
    assert m["events"] == 3 and m["events_filtered"] == 1


def test_a_failing_mapper_never_fails_the_write_that_triggered_it() -> None:
    store = new_store()

    def broken(ev: WatchEvent) -> list[Request]:
        raise KeyError("bug in mapper")

    mgr = Manager(store, ManualClock())
    c = mgr.add(Controller("c", noop, Parent, watches=[Watch(Child, broken)]))
    mgr.start()
    store.create(child_of("c1", "p1"))  # would raise out of the store's delivery otherwise
    store.create(parent("p1"))
    assert c.queue.ready_keys() == [Request("dpf", "p1")]
    assert c.metrics()["mapper_errors"] == 1


# -- applying results ----------------------------------------------------------------------------------


class Scripted:
    """A reconciler that plays back a list of outcomes (Result or exception) per call."""

    def __init__(self, script: list[Result | Exception]) -> None:
        self.script = list(script)
        self.calls: list[tuple[float, Request]] = []

    def reconcile(self, ctx: Context, req: Request) -> Result:
        self.calls.append((ctx.clock.now(), req))
        step = self.script.pop(0) if self.script else Result()
        if isinstance(step, Exception):
            raise step
        return step


def make(
    script: list[Result | Exception], clock: ManualClock, **kw: Any
) -> tuple[Controller, Callable[[Controller], Context]]:
    c = Controller("ctl", Scripted(script), Parent, **kw)
    ctx = Context(client=new_store(), clock=clock, recorder=MemoryRecorder(), controller="ctl")
    return c, lambda _c: ctx


def test_error_backs_off_and_success_forgets() -> None:
    clock = ManualClock(0.0)
    c, ctx = make([RuntimeError("boom"), RuntimeError("boom"), Result()], clock)
    r = Request("dpf", "p")
    c.enqueue(r)
    o1 = c.process_next(ctx, 0.0)
    assert o1 is not None and isinstance(o1.error, RuntimeError) and o1.action == "rate_limited"
    assert o1.requeue_at == pytest.approx(0.005)
    assert c.process_next(ctx, 0.004) is None
    o2 = c.process_next(ctx, 0.005)
    assert o2 is not None and o2.requeue_at == pytest.approx(0.015)
    assert c.queue.num_requeues(r) == 2
    o3 = c.process_next(ctx, 0.015)
    assert o3 is not None and o3.error is None and o3.action == "forget"
    assert c.queue.num_requeues(r) == 0
    assert c.idle()
    m = c.metrics()
    assert (m["reconciles"], m["errors"], m["success"]) == (3, 2, 1)
    assert [o.seq for o in (o1, o2, o3)] == [1, 2, 3]


def test_requeue_after_forgets_backoff_and_requeue_is_rate_limited() -> None:
    clock = ManualClock(0.0)
    c, ctx = make(
        [
            RuntimeError("x"),
            RuntimeError("x"),
            Result(requeue_after=30.0),
            Result(requeue=True),
            Result(requeue=True, requeue_after=2.0),
        ],
        clock,
    )
    r = Request("dpf", "p")
    c.enqueue(r)
    c.process_next(ctx, 0.0)
    c.process_next(ctx, 0.005)
    o = c.process_next(ctx, 0.015)
    assert o is not None and o.action == "requeue_after" and o.requeue_at == pytest.approx(30.015)
    assert c.queue.num_requeues(r) == 0
    o = c.process_next(ctx, 30.015)
    assert o is not None and o.action == "rate_limited" and o.requeue_at == pytest.approx(30.02)
    o = c.process_next(ctx, 30.02)
    # requeue_after wins over requeue.
    assert o is not None and o.action == "requeue_after" and o.requeue_at == pytest.approx(32.02)
    m = c.metrics()
    assert m["requeues"] == 1 and m["requeue_after"] == 2


def test_requeue_after_error_and_terminal_error() -> None:
    clock = ManualClock(0.0)
    c, ctx = make([RequeueAfterError(5.0, "dms unreachable"), TerminalError("bad spec")], clock)
    r = Request("dpf", "p")
    c.enqueue(r)
    o = c.process_next(ctx, 0.0)
    assert o is not None and o.error is not None and o.action == "requeue_after" and o.requeue_at == 5.0
    assert c.queue.num_requeues(r) == 0
    o = c.process_next(ctx, 5.0)
    assert o is not None and o.action == "terminal"
    assert c.idle()
    assert c.metrics()["errors"] == 2


def test_returning_none_counts_as_done() -> None:
    c = Controller("ctl", lambda ctx, req: None, Parent)
    ctx = Context(client=new_store(), clock=ManualClock(0.0), recorder=MemoryRecorder())
    c.enqueue(Request("dpf", "p"))
    o = c.process_next(lambda _c: ctx, 0.0)
    assert o is not None and o.result == Result() and o.action == "forget"


@pytest.mark.parametrize("max_concurrent", [1, 3])
def test_concurrency_limit_is_respected_across_split_steps(max_concurrent: int) -> None:
    clock = ManualClock(0.0)
    wakes: list[int] = []
    c, ctx = make([], clock, max_concurrent=max_concurrent, on_ready=lambda: wakes.append(1))
    for i in range(5):
        c.enqueue(Request("dpf", f"p{i}"))
    popped = []
    while (req := c.pop(0.0)) is not None:
        popped.append(req)
    assert len(popped) == max_concurrent == c.in_flight
    assert c.metrics()["in_flight"] == max_concurrent
    assert not c.has_ready()
    # Runs happen "in parallel" (the twin yields a cost timeout between run and finish).
    runs = [c.run(ctx(c), req, 0.0) for req in popped]
    wakes.clear()
    c.finish(runs[0], 1.0)
    assert c.in_flight == max_concurrent - 1
    assert wakes, "a freed slot with ready keys must wake a worker"
    assert c.pop(1.0) == Request("dpf", f"p{max_concurrent}")
    assert c.pop(1.0) is None
    for d in runs[1:]:
        c.finish(d, 1.0)


def test_same_key_is_never_in_flight_twice() -> None:
    clock = ManualClock(0.0)
    c, ctx = make([], clock, max_concurrent=3)
    r = Request("dpf", "p")
    c.enqueue(r)
    assert c.pop(0.0) == r
    c.enqueue(r)  # an event arrives mid-reconcile
    assert c.pop(0.0) is None
    c.finish(c.run(ctx(c), r, 0.0), 0.0)
    assert c.pop(0.0) == r


# -- manager and sync driver end to end ----------------------------------------------------------------


class ParentReconciler:
    """Creates one owned Child per Parent; fails on the first two passes of 'flaky'; polls every 60s."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str]] = []
        self.failures = {"flaky": 2}

    def reconcile(self, ctx: Context, req: Request) -> Result:
        self.calls.append((ctx.clock.now(), req.name))
        p = ctx.client.try_get(Parent, req.name, req.namespace)
        if p is None:
            return Result()
        if self.failures.get(req.name, 0) > 0:
            self.failures[req.name] -= 1
            raise RuntimeError("transient")
        if ctx.client.try_get(Child, req.name, req.namespace) is None:
            child = Child.new(req.name, req.namespace)
            child.metadata.owner_references.append(
                OwnerReference(
                    api_version=Parent.KIND.api_version,
                    kind="Parent",
                    name=p.name,
                    uid=p.metadata.uid or "",
                    controller=True,
                )
            )
            ctx.client.create(child)
            ctx.recorder.event(p, "Normal", "SuccessfulCreate", f"Created Child {req.name}")
            return Result()
        if p.status.get("phase") != "Ready":
            p = p.deepcopy()
            p.status["phase"] = "Ready"
            p.status["since"] = ctx.timestamp()
            ctx.client.update_status(p)
        return Result(requeue_after=60.0)


def test_sync_driver_runs_to_quiescence_on_virtual_time() -> None:
    clock = ManualClock()
    store = new_store(clock)
    recorder = MemoryRecorder(clock)
    mgr = Manager(store, clock, recorder_factory=lambda component: recorder)
    rec = ParentReconciler()
    mgr.add(Controller("parent", rec, Parent, watches=[Watch(Child, owner(Parent))]))
    store.create(parent("before-start"))  # picked up by the initial list
    driver = SyncDriver(mgr, record=True)
    driver.start()
    store.create(parent("flaky"))
    t0 = clock.now()
    stats = driver.run_until_idle(until=t0 + 100.0)
    assert stats.stopped == "until" and clock.now() == t0 + 100.0
    assert stats.errors == 2
    flaky = [t - t0 for t, n in rec.calls if n == "flaky"]
    # 2 failures with 5ms/10ms backoff, create child; the child's event -> set Ready; that status
    # update's own event -> nothing to do, poll in 60s.
    assert flaky == pytest.approx([0.0, 0.005, 0.015, 0.015, 0.015, 60.015], abs=1e-6)
    assert store.get(Parent, "flaky", "dpf").status == {"phase": "Ready", "since": rfc3339(t0)}
    assert recorder.reasons() == ["SuccessfulCreate", "SuccessfulCreate"]
    assert [o.request.name for o in stats.outcomes][:3] == ["before-start", "flaky", "before-start"]


def test_sync_driver_is_deterministic() -> None:
    def run() -> list[tuple[float, str]]:
        clock = ManualClock()
        store = new_store(clock)
        mgr = Manager(store, clock)
        rec = ParentReconciler()
        mgr.add(Controller("parent", rec, Parent, watches=[Watch(Child, owner(Parent))]))
        for name in ("c", "a", "flaky", "b"):
            store.create(parent(name))
        SyncDriver(mgr).run_until_idle(until=clock.now() + 200)
        return rec.calls

    assert run() == run()


def test_sync_driver_idles_without_periodic_work_and_stops_at_max_steps() -> None:
    clock = ManualClock()
    store = new_store(clock)
    mgr = Manager(store, clock)
    mgr.add(Controller("noop", noop, Parent))
    store.create(parent("p"))
    stats = SyncDriver(mgr).run_until_idle()
    assert stats.stopped == "idle" and stats.steps == 1 and clock.now() == DEFAULT_EPOCH

    mgr2 = Manager(new_store(), ManualClock())
    mgr2.add(Controller("spin", lambda ctx, req: Result(requeue=True), None))
    mgr2.controller("spin").enqueue(Request(None, "x"))
    stats = SyncDriver(mgr2).run_until_idle(max_steps=10)
    assert stats.stopped == "max_steps" and stats.steps == 10


def test_manager_routes_each_kind_only_to_its_watchers_and_other_stores() -> None:
    host, dpu_cluster = new_store(), new_store()
    clock = ManualClock()
    mgr = Manager(host, clock)
    seen: dict[str, list[Request]] = {"parents": [], "boxes": []}

    def recorder_of(name: str) -> Callable[[Context, Request], Result]:
        def fn(ctx: Context, req: Request) -> Result:
            seen[name].append(req)
            return Result()

        return fn

    mgr.add(Controller("parents", recorder_of("parents"), Parent))
    # Boxes in the DPU cluster re-evaluate every Parent in the host cluster.
    mgr.add(
        Controller("boxes", recorder_of("boxes"), Box, watches=[Watch(Box, all_of(Parent, host.list), source="dpu")])
    )
    mgr.watch_store(dpu_cluster, "dpu")
    mgr.start()
    host.create(parent("p1"))
    driver = SyncDriver(mgr)
    driver.run_until_idle()
    assert seen == {"parents": [Request("dpf", "p1")], "boxes": []}
    dpu_cluster.create(Box.new("node-a"))
    host.create(Box.new("host-box"))
    driver.run_until_idle()
    # The host's Box goes to the Box watch on the host; the DPU cluster's Box maps to all Parents.
    assert seen["boxes"] == [Request("dpf", "p1"), Request(None, "host-box")]
    assert seen["parents"] == [Request("dpf", "p1")]
    with pytest.raises(RuntimeError):
        mgr.add(Controller("late", noop, Parent))
    mgr.stop()
    host.create(parent("after-stop"))
    dpu_cluster.create(Box.new("node-b"))
    assert all(c.idle() for c in mgr.controllers)


def test_manager_builds_one_context_per_controller() -> None:
    clock = ManualClock()
    store = new_store(clock)
    recorders: list[str] = []

    def factory(component: str) -> MemoryRecorder:
        recorders.append(component)
        return MemoryRecorder()

    mgr = Manager(store, clock, recorder_factory=factory, ports={"dms": object()})
    c = mgr.add(Controller("dpu", noop, Parent))
    ctx = mgr.context_for(c)
    assert ctx is mgr.context_for(c)
    assert (ctx.controller, ctx.client, ctx.clock, recorders) == ("dpu", store, clock, ["dpu"])
    assert "dms" in ctx.ports
    with pytest.raises(ValueError):
        mgr.add(Controller("dpu", noop, Parent))


# -- threaded driver -----------------------------------------------------------------------------------


def test_threaded_driver_reconciles_on_the_wall_clock() -> None:
    store = new_store()
    lock = threading.Lock()
    active = 0
    peak = 0
    calls: list[str] = []

    def slow(ctx: Context, req: Request) -> Result:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
            first = req.name not in calls
            calls.append(req.name)
        time.sleep(0.02)
        with lock:
            active -= 1
        # Each key polls once more after 50 ms of wall time.
        return Result(requeue_after=0.05) if first else Result()

    mgr = Manager(store, WallClock())
    mgr.add(Controller("slow", slow, Parent, max_concurrent=2))
    for i in range(4):
        store.create(parent(f"p{i}"))
    driver = ThreadedDriver(mgr)
    t0 = time.monotonic()
    with driver:
        # An event arriving while workers sleep wakes them through on_ready.
        store.create(parent("late"))
        assert driver.wait_idle(timeout=2.0, settle=0.1)
    elapsed = time.monotonic() - t0
    assert sorted(calls) == sorted([f"p{i}" for i in range(4)] * 2 + ["late", "late"])
    assert peak == 2
    assert driver.reconciles == 10 and driver.errors == 0
    assert elapsed < 1.5


def test_threaded_driver_wakes_for_a_delayed_key_and_counts_errors() -> None:
    store = new_store()
    times: list[float] = []

    def failing_once(ctx: Context, req: Request) -> Result:
        times.append(time.monotonic())
        if len(times) == 1:
            raise RuntimeError("first pass fails")
        return Result()

    mgr = Manager(store, WallClock())
    mgr.add(Controller("f", failing_once, Parent))
    driver = ThreadedDriver(mgr, serialize=True)
    driver.start()
    try:
        mgr.controller("f").enqueue_after(Request("dpf", "p"), 0.05, time.time())
        deadline = time.monotonic() + 2.0
        while len(times) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        driver.stop()
    assert len(times) == 2 and driver.errors == 1
    assert 0.004 <= times[1] - times[0] < 0.5


# -- a SimPy driver needs only the public pieces ----------------------------------------------------------


def test_a_simpy_driver_can_be_written_from_the_public_api() -> None:
    import simpy

    env = simpy.Environment()

    class SimClock:
        def now(self) -> float:
            return DEFAULT_EPOCH + float(env.now)

    clock = SimClock()
    store = new_store()
    calls: list[tuple[float, str]] = []

    def reconcile(ctx: Context, req: Request) -> Result:
        calls.append((ctx.clock.now() - DEFAULT_EPOCH, req.name))
        return Result(requeue_after=10.0) if len([c for c in calls if c[1] == req.name]) == 1 else Result()

    mgr = Manager(store, clock)
    c = mgr.add(Controller("sim", reconcile, Parent, max_concurrent=2))
    wake: list[Any] = [env.event()]

    def on_ready() -> None:
        if not wake[0].triggered:
            wake[0].succeed()

    c.on_ready = on_ready

    def worker() -> Any:
        ctx = mgr.context_for(c)
        while True:
            req = c.pop(clock.now())
            if req is None:
                if wake[0].triggered:
                    wake[0] = env.event()
                t = c.next_ready_at()
                yield wake[0] if t is None else (wake[0] | env.timeout(max(0.0, t - clock.now())))
                continue
            done = c.run(ctx, req)
            yield env.timeout(1.0)  # the virtual cost of a reconcile
            c.finish(done, clock.now())

    mgr.start()
    env.process(worker())
    env.process(worker())

    def user() -> Any:
        yield env.timeout(3.0)
        for name in ("a", "b", "c"):
            store.create(parent(name))

    env.process(user())
    env.run(until=40)
    # Two workers: a and b start at t=3, c waits for a free worker (t=4); each polls once 10s after finishing.
    assert calls == [(3.0, "a"), (3.0, "b"), (4.0, "c"), (14.0, "a"), (14.0, "b"), (15.0, "c")]
    assert c.idle()
