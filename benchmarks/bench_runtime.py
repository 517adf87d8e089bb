"""Runtime throughput: no-op reconciles through Controller + queue, and raw work queue operations.

Run: .venv/bin/pytest -q benchmarks/bench_runtime.py --benchmark-only
Each benchmark reports a rate in extra_info (ops/s, computed from the fastest round) and checks the target.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dpf_core.api.meta import KindInfo, KubeObject
from dpf_core.runtime import (
    Context,
    Controller,
    Manager,
    ManualClock,
    NullRecorder,
    Request,
    Result,
    SyncDriver,
    WorkQueue,
)

N = 20_000
RECONCILE_TARGET = 20_000.0  # reconciles/s
QUEUE_TARGET = 100_000.0  # queue ops/s


class Thing(KubeObject):
    KIND = KindInfo(group="bench.dpu.nvidia.com", version="v1", kind="Thing", plural="things", singular="thing")


_DONE = Result()
_KEYS = [Request("dpf", f"dpu-{i:05d}") for i in range(N)]


def _noop(ctx: Context, req: Request) -> Result:
    return _DONE


def _rate(benchmark: Any, ops: int, name: str) -> float:
    rate = float(ops / benchmark.stats.stats.min)
    benchmark.extra_info[name] = round(rate)
    print(f"\n{name}: {rate:,.0f}/s")
    return rate


def _context() -> Callable[[Controller], Context]:
    ctx = Context(client=None, clock=ManualClock(), recorder=NullRecorder(), controller="bench")  # type: ignore[arg-type]
    return lambda _c: ctx


def test_noop_reconcile_throughput(benchmark: Any) -> None:
    factory = _context()

    def setup() -> tuple[tuple[Controller], dict[str, Any]]:
        c = Controller("bench", _noop, Thing)
        for k in _KEYS:
            c.enqueue(k)
        return (c,), {}

    def run(c: Controller) -> None:
        process = c.process_next
        n = 0
        while process(factory, 0.0) is not None:
            n += 1
        assert n == N

    benchmark.pedantic(run, setup=setup, rounds=10, iterations=1)
    assert _rate(benchmark, N, "reconciles_per_s") >= RECONCILE_TARGET


def test_sync_driver_requeue_after_throughput(benchmark: Any) -> None:
    """Every key polls again 5s later: add_after + clock jumps through the SyncDriver."""

    def poll(ctx: Context, req: Request) -> Result:
        return Result(requeue_after=5.0)

    def setup() -> tuple[tuple[SyncDriver, float], dict[str, Any]]:
        clock = ManualClock()
        mgr = Manager(None, clock)  # type: ignore[arg-type]
        c = mgr.add(Controller("poll", poll, None))
        mgr.started = True  # no store to list from: keys come straight in
        for k in _KEYS[:5000]:
            c.enqueue(k)
        return (SyncDriver(mgr), clock.now() + 12.0), {}

    def run(driver: SyncDriver, until: float) -> None:
        stats = driver.run_until_idle(until=until)
        assert stats.steps == 15_000

    benchmark.pedantic(run, setup=setup, rounds=5, iterations=1)
    assert _rate(benchmark, 15_000, "driver_reconciles_per_s") >= RECONCILE_TARGET


def test_workqueue_add_pop_throughput(benchmark: Any) -> None:
    def setup() -> tuple[tuple[WorkQueue[Request]], dict[str, Any]]:
        return (WorkQueue(),), {}

    def run(q: WorkQueue[Request]) -> None:
        add, pop, done = q.add, q.pop_ready, q.done
        for k in _KEYS:
            add(k)
            add(k)  # deduplicated
        while (key := pop(0.0)) is not None:
            done(key)

    benchmark.pedantic(run, setup=setup, rounds=10, iterations=1)
    # 2 adds + pop + done per key.
    assert _rate(benchmark, 4 * N, "queue_ops_per_s") >= QUEUE_TARGET


def test_workqueue_delayed_throughput(benchmark: Any) -> None:
    def setup() -> tuple[tuple[WorkQueue[Request]], dict[str, Any]]:
        return (WorkQueue(),), {}

    def run(q: WorkQueue[Request]) -> None:
        for i, k in enumerate(_KEYS):
            q.add_after(k, 1.0 + (i * 7919 % N) / N, 0.0)
        for i, k in enumerate(_KEYS):
            q.add_after(k, 0.5 + (i % 100) / 1000, 0.0)  # earlier: replaces, leaves a stale entry
        while (key := q.pop_ready(10.0)) is not None:
            q.done(key)

    benchmark.pedantic(run, setup=setup, rounds=10, iterations=1)
    # 2 add_after + pop + done per key.
    assert _rate(benchmark, 4 * N, "delayed_queue_ops_per_s") >= QUEUE_TARGET
