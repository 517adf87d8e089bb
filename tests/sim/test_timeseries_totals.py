"""The time series reads running totals kept by the driver instead of visiting every controller at each sample.

The oracle is the full walk the recorder did before (every controller of every listed manager, summed by name):
each test checks the totals against it at every sample, or after every operation."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Generator
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from services_helpers import SCENARIOS

from dpf_core.runtime import DONE, Controller, Request, RequeueAfterError, Result
from dpf_core.runtime.controller import ControllerTotals
from dpf_core.runtime.workqueue import QueueTotals, WorkQueue
from dpf_sim.engine import SimDriver
from dpf_sim.runner import Runner
from dpf_sim.scenario import load_scenario
from dpf_sim.timeseries import SeriesRecorder


def full_walk(driver: SimDriver) -> tuple[dict[str, int], dict[str, int]]:
    """What SeriesRecorder.sample computed before the totals: one visit per controller."""
    depth: Counter[str] = Counter()
    reconciles: Counter[str] = Counter()
    for manager in driver.managers:
        for c in manager.controllers:
            depth[c.name] += c.queued
            reconciles[c.name] += c.reconciles
    return dict(depth), dict(reconciles)


class CheckedRecorder(SeriesRecorder):
    """A recorder that checks each sample it takes against the full walk."""

    def __init__(self, twin: Any, **kw: Any) -> None:
        super().__init__(twin, **kw)
        self.checked = 0
        self.busiest_depth = 0
        self.shared_names: set[str] = set()

    def sample(self) -> None:
        depth, reconciles = full_walk(self.twin.driver)
        super().sample()
        got = self.samples[-1]
        assert got.depth == depth, f"t={got.t}"
        assert got.reconciles == reconciles, f"t={got.t}"
        self.checked += 1
        self.busiest_depth = max(self.busiest_depth, *depth.values(), 0)
        self.shared_names |= {n for n, t in self.twin.driver.controller_totals().items() if t.members > 1}


def _runner(name: str, *, first_period: float) -> tuple[Runner, CheckedRecorder]:
    logging.getLogger("dpf").setLevel(logging.CRITICAL)
    runner = Runner(load_scenario(SCENARIOS / name), progress=False, series=False)
    rec = CheckedRecorder(runner.twin, first_period=first_period, max_points=64)
    runner.series = rec
    return runner, rec


def test_service_chain_series_equal_the_full_walk_at_every_sample() -> None:
    runner, rec = _runner("service-chain-hbn.yaml", first_period=1.0)
    result = runner.run()
    assert all(o.passed for o in result.outcomes)
    # Not vacuous: per-DPU node agents (one copy per DPU) were summed, and queues were non-empty when sampled.
    assert rec.checked > 100
    assert rec.shared_names
    assert rec.busiest_depth > 0
    ts = result.report["timeseries"]
    depth, reconciles = full_walk(runner.twin.driver)
    # A series of a name no listed controller has any more (the pruned static-cluster-manager here) ends at 0.
    assert {c: v[-1] for c, v in ts["reconciles"].items()} == {c: 0 for c in ts["reconciles"]} | reconciles
    assert {c: v[-1] for c, v in ts["queue_depth"].items()} == {c: 0 for c in ts["queue_depth"]} | depth
    # The operator config's pruning was exercised: a manager sampled while listed left the list.
    assert "static-cluster-manager" in ts["reconciles"]
    assert "static-cluster-manager" not in runner.twin.driver.controller_totals()


def test_managers_stopped_pruned_and_restarted_keep_the_series_equal_to_the_full_walk() -> None:
    """A crashed process stays listed (its controllers still count), a pruned Deployment's manager is taken out
    of the list directly as the twin does, and a fresh one is added: the sums follow each."""
    runner, rec = _runner("dpuservice-lifecycle.yaml", first_period=5.0)
    twin = runner.twin
    driver = twin.driver
    services: Any = twin.services  # type: ignore[attr-defined]  # set by the services attachment
    seen: dict[str, Any] = {}

    def churn() -> Generator[Any, Any, None]:
        yield twin.env.timeout(85 * 60)  # the service is being rolled out by now
        old = services.manager
        seen["before"] = driver.controller_totals()["dpuservice"].reconciles
        driver.stop(old)  # crashed: still listed, its reconciles still counted
        yield twin.env.timeout(30)
        rec.sample()
        driver.managers.remove(old)  # pruned, as Twin._cluster_managers_config does
        rec.sample()
        seen["gone"] = "dpuservice" not in driver.controller_totals()
        yield twin.env.timeout(30)
        fresh = services.build_manager()
        services.manager = fresh
        driver.add(fresh)
        rec.sample()

    twin.env.process(churn())
    runner.run()
    assert seen["before"] > 0
    assert seen["gone"]
    assert driver.controller_totals()["dpuservice"].members == 1
    assert rec.checked > 20


def _ops() -> st.SearchStrategy[list[tuple[str, int, int, float]]]:
    op = st.tuples(st.sampled_from(["add", "after", "limited", "pop", "done", "forget", "move"]),
                   st.integers(0, 2), st.integers(0, 5), st.floats(0.0, 3.0))
    return st.lists(op, max_size=80)


@settings(max_examples=150, deadline=None)
@given(_ops())
def test_shared_queue_totals_follow_every_change(ops: list[tuple[str, int, int, float]]) -> None:
    shared, other = QueueTotals(), QueueTotals()
    queues: list[WorkQueue[int]] = [WorkQueue(totals=shared), WorkQueue(totals=shared), WorkQueue()]
    processing: list[list[int]] = [[], [], []]
    now = 0.0
    for name, qi, key, x in ops:
        q = queues[qi]
        now += x / 4
        if name == "add":
            q.add(key)
        elif name == "after":
            q.add_after(key, x, now)
        elif name == "limited":
            q.add_rate_limited(key, now)
        elif name == "pop":
            got = q.pop_ready(now)
            if got is not None:
                processing[qi].append(got)
        elif name == "done" and processing[qi]:
            q.done(processing[qi].pop(0))
        elif name == "forget":
            q.forget(key)
        elif name == "move":
            q.use_totals(other if q.totals is shared else shared)
        for counted in (shared, other):
            assert counted.queued == sum(w.queued for w in queues if w.totals is counted)
        if queues[2].totals not in (shared, other):
            assert queues[2].totals.queued == queues[2].queued


def _controller(name: str, results: list[Result | Exception]) -> Controller:
    def reconcile(_ctx: Any, _req: Request) -> Result:
        out = results.pop(0) if results else DONE
        if isinstance(out, Exception):
            raise out
        return out

    return Controller(name, reconcile, None)


def test_controller_totals_count_reconciles_and_move_with_the_controller() -> None:
    group = ControllerTotals()
    a = _controller("agent", [RequeueAfterError(10.0), RuntimeError("boom")])
    b = _controller("agent", [])
    for c in (a, b):
        c.use_totals(group)
    assert group.members == 2
    for i in range(3):
        a.enqueue(Request(None, f"k{i}"))
    b.enqueue(Request(None, "k0"))
    assert group.queued == 4

    def ctx(_c: Controller) -> Any:
        return None

    a.process_next(ctx, 0.0)  # requeue_after: the key waits, still queued
    a.process_next(ctx, 0.0)  # error: backed off, still queued
    a.process_next(ctx, 0.0)  # done
    b.process_next(ctx, 0.0)
    assert (group.reconciles, group.queued) == (4, 2)
    assert group.queued == a.queued + b.queued
    assert group.reconciles == a.reconciles + b.reconciles

    a.use_totals(None)  # leaves the group: its counts go with it
    assert (group.members, group.reconciles, group.queued) == (1, 1, 0)
    assert (a.totals.members, a.totals.reconciles, a.totals.queued) == (1, 3, 2)
    a.use_totals(a.totals)  # already there: nothing moves
    assert (a.totals.members, a.totals.reconciles) == (1, 3)


def test_driver_totals_group_by_name_and_drop_unlisted_names() -> None:
    import simpy

    from dpf_core.runtime import Manager
    from dpf_core.store.memory import MemoryStore
    from dpf_sim.engine import SimClock

    env = simpy.Environment()
    clock = SimClock(env)
    driver = SimDriver(env, clock)
    managers = []
    for i in range(3):
        m = Manager(MemoryStore(), clock, name=f"m{i}")
        m.add(_controller("agent", []))
        m.add(_controller(f"own-{i}", []))
        driver.add(m)
        managers.append(m)
    managers[0].controller("agent").enqueue(Request(None, "x"))
    managers[1].controller("agent").enqueue(Request(None, "y"))
    assert {n: t.queued for n, t in driver.controller_totals().items()} == full_walk(driver)[0]
    assert driver.controller_totals()["agent"].queued == 2
    driver.managers.remove(managers[1])
    totals = driver.controller_totals()
    assert "own-1" not in totals
    assert (totals["agent"].members, totals["agent"].queued) == (2, 1)
    env.run(until=1)
    assert {n: t.reconciles for n, t in driver.controller_totals().items()} == full_walk(driver)[1]
    assert driver.controller_totals()["agent"].reconciles == 1
