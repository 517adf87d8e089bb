"""The twin's per-event paths kept cheap without changing a result: the event log's batched hash, `describe`,
the idle worker's wait (a relay instead of an AnyOf per wait) and the controller's wake hook."""

from __future__ import annotations

import hashlib
from collections.abc import Generator
from typing import Any

import simpy

from dpf_core.api.external import Node, Pod, Secret
from dpf_core.api.provisioning import BFB, DPU, DPUPhase
from dpf_core.runtime import Controller, Manager, Request
from dpf_core.store.memory import MemoryStore
from dpf_core.store.protocol import WatchEvent
from dpf_sim.engine import EventLog, SimClock, SimDriver, describe


def _reference_describe(ev: WatchEvent) -> str:
    # The text the log has always carried (the sha of every recorded run depends on it).
    o = ev.object
    md = o.metadata
    phase = ""
    status = getattr(o, "status", None)
    if status is not None and getattr(status, "phase", None):
        phase = f" phase={status.phase}"
    where = f"{md.namespace}/{md.name}" if md.namespace else str(md.name)
    return f"{ev.type} {o.kind} {where} rv={md.resource_version}{phase}"


def test_the_log_hash_is_the_hash_of_every_line_however_it_is_batched() -> None:
    texts = [f"host MODIFIED DPU ns/d{i} rv={i}" for i in range(1_300)]
    times = [i // 7 * 0.5 for i in range(len(texts))]  # runs of lines at one instant, as a reconcile writes
    expected = hashlib.sha256("".join(f"{t:.3f} {x}\n" for t, x in zip(times, texts, strict=True)).encode())
    for keep in (True, False):
        log = EventLog(keep=keep, tail=10)
        for i, (t, x) in enumerate(zip(times, texts, strict=True)):
            log.write(t, x)
            if i == 700:
                # reading the digest mid-run flushes, and writing on afterwards still hashes everything
                partial = hashlib.sha256("".join(f"{t:.3f} {x}\n" for t, x in zip(times[:701], texts[:701],
                                                                                  strict=True)).encode())
                assert log.sha256 == partial.hexdigest()
        assert log.sha256 == expected.hexdigest()
        assert log.count == len(texts)
        assert log.recent(2) == [f"{times[-2]:.3f} {texts[-2]}", f"{times[-1]:.3f} {texts[-1]}"]
    assert EventLog().sha256 == hashlib.sha256().hexdigest()


def test_describe_says_what_it_always_said_for_closed_open_and_status_less_kinds() -> None:
    store = MemoryStore(lambda: 1_700_000_000.0)
    seen: list[WatchEvent] = []
    store.subscribe(seen.append)
    store.create(Secret.new("kubeconfig", "ns"))
    store.create(Node.new("worker-1"))
    pod = store.create(Pod.new("dms", "ns"))
    store.create(BFB.new("bf", "ns", spec={"url": "http://x/a.bfb"}))
    dpu = store.create(DPU.new("dpu-1", "ns", spec={"nodeName": "worker-1", "bfb": "bf"}))
    st = dpu.deepcopy()
    st.status.phase = DPUPhase.OS_INSTALLING
    store.update_status(st)
    pst = pod.deepcopy()
    pst.status.phase = "Running"
    store.update_status(pst)
    store.delete(Secret, "kubeconfig", "ns")
    assert len(seen) >= 7
    for ev in seen:
        assert describe(ev) == _reference_describe(ev)
    texts = [describe(ev) for ev in seen]
    assert any(t.endswith("phase=OS Installing") for t in texts)
    assert any(t.startswith("MODIFIED Pod ns/dms") and t.endswith("phase=Running") for t in texts)
    assert any(t.startswith("ADDED Node worker-1 rv=") for t in texts)
    assert any(t.startswith("DELETED Secret ns/kubeconfig rv=") for t in texts)


def _any_of_worker(env: simpy.Environment, wake: list[simpy.Event], delay: float, log: list[Any]) -> Generator[Any, Any, None]:
    yield wake[0] | env.timeout(delay)
    log.append(("worker", env.now))


def test_an_idle_worker_resumes_where_the_any_of_it_replaces_did() -> None:
    """Same instant, same place among that instant's events, whether the wake or the timer comes first."""

    def run(use_driver: bool, wake_at: float, timer: float) -> list[Any]:
        env = simpy.Environment()
        log: list[Any] = []
        wake = [env.event()]

        def others() -> Generator[Any, Any, None]:
            for i in range(3):
                yield env.timeout(0)
                log.append(("other", i, env.now))

        def waker() -> Generator[Any, Any, None]:
            yield env.timeout(wake_at)
            wake[0].succeed()
            env.process(others())

        if use_driver:
            from dpf_sim import engine

            def worker() -> Generator[Any, Any, None]:
                relay = engine._Relay(env)
                assert wake[0].callbacks is not None
                wake[0].callbacks.append(relay.fire)
                t = env.timeout(timer)
                assert t.callbacks is not None
                t.callbacks.append(relay.fire)
                yield relay
                log.append(("worker", env.now))

            env.process(worker())
        else:
            env.process(_any_of_worker(env, wake, timer, log))
        env.process(waker())
        env.run()
        return log

    for wake_at, timer in ((1.0, 5.0), (5.0, 1.0), (2.0, 2.0)):
        assert run(True, wake_at, timer) == run(False, wake_at, timer)


def test_a_controller_wakes_the_driver_straight_from_its_queue() -> None:
    env = simpy.Environment()
    clock = SimClock(env, 0.0)
    store = MemoryStore(clock.now)
    seen: list[tuple[float, Request]] = []

    def reconcile(ctx: Any, req: Request) -> None:
        seen.append((env.now, req))

    c = Controller("pods", reconcile, Pod)
    manager = Manager(store, clock)
    manager.add(c)
    driver = SimDriver(env, clock)
    driver.add(manager)
    assert c.queue.notify is c.on_ready is not None
    store.create(Pod.new("a", "ns"))
    env.run(until=1.0)

    def later() -> Generator[Any, Any, None]:
        yield env.timeout(3.0)
        c.enqueue_after(Request("ns", "b"), 2.0, clock.now())
        yield env.timeout(0.5)
        store.create(Pod.new("c", "ns"))

    env.process(later())
    env.run(until=20.0)
    assert [(round(t, 3), r.name) for t, r in seen] == [(0.0, "a"), (4.5, "c"), (6.0, "b")]
    c.on_ready = None
    assert c.queue.notify is None


def test_a_controller_added_after_a_stopped_one_was_dropped_still_runs() -> None:
    """The driver keeps stopped controllers and per-manager counts by the objects themselves: keyed by id(), a
    new controller allocated where a stopped, garbage-collected one lived inherited its "stopped" mark (and a new
    manager its predecessor's item counts), so whether it ever ran depended on the memory allocator."""
    import gc

    env = simpy.Environment()
    clock = SimClock(env, 0.0)
    driver = SimDriver(env, clock)
    stopped_ids: set[int] = set()
    crashed = []
    for i in range(50):
        m = Manager(MemoryStore(clock.now), clock, name=f"crashed-{i}")
        c = Controller("pods", lambda ctx, req: None, Pod)
        m.add(c)
        driver.add(m)
        crashed.append(m)
        stopped_ids.add(id(c))
        del c
    for m in crashed:
        driver.stop(m)
        driver.managers.remove(m)  # pruned, as the twin drops a disabled component's manager
    env.run(until=1.0)  # the stopped workers end
    driver.controller_totals()  # the time series notices the pruned managers and lets them go
    del crashed, m
    gc.collect()
    ran: list[str] = []
    fresh: list[Controller] = []
    for i in range(50):
        store = MemoryStore(clock.now)
        m = Manager(store, clock, name=f"new-{i}")
        c = Controller("pods", lambda ctx, req, i=i: ran.append(f"{i}/{req.name}"), Pod)
        m.add(c)
        driver.add(m)
        fresh.append(c)
        store.create(Pod.new("p", "ns"))
    env.run(until=2.0)
    assert sorted(ran) == sorted(f"{i}/p" for i in range(50))
