"""Drivers pump controllers' queues. Two live in core, both pure stdlib:

- `SyncDriver`: one thread, a ManualClock. Pops ready keys round-robin across controllers in a fixed
  order, and when nothing is ready jumps the clock to the earliest delayed key. Deterministic.
- `ThreadedDriver`: the wall clock. `max_concurrent` worker threads per controller, woken by the
  controller's `on_ready` hook and by condition-wait timeouts for delayed keys.

The SimPy driver (dpf_sim) uses the same public pieces: `Controller.on_ready` to succeed a wake event,
`pop(now)` / `run(ctx, req, now)` / `finish(done, now)` with a cost timeout between run and finish,
`next_ready_at()` to sleep until the next delayed key, `Manager.context_for` for the Context.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from .controller import Controller, ProcessOutcome
from .manager import Manager
from .types import ManualClock

OutcomeHook = Callable[[ProcessOutcome], None]

_log = logging.getLogger("dpf.runtime.driver")


def _pairs(managers: Iterable[Manager]) -> list[tuple[Manager, Controller]]:
    return [(m, c) for m in managers for c in m.controllers]


@dataclass
class RunStats:
    steps: int
    stopped: Literal["idle", "until", "max_steps"]
    now: float
    errors: int = 0
    outcomes: list[ProcessOutcome] = field(default_factory=list)


class SyncDriver:
    """Run every controller of some managers to quiescence on a ManualClock."""

    def __init__(
        self,
        *managers: Manager,
        clock: ManualClock | None = None,
        on_outcome: OutcomeHook | None = None,
        record: bool = False,
    ) -> None:
        if clock is None:
            if not managers or not isinstance(managers[0].clock, ManualClock):
                raise ValueError("SyncDriver needs a ManualClock (pass clock= or give the managers one)")
            clock = managers[0].clock
        self.clock = clock
        self.managers = list(managers)
        self.on_outcome = on_outcome
        self.record = record

    def add(self, manager: Manager) -> None:
        self.managers.append(manager)

    def start(self) -> None:
        for m in self.managers:
            m.start()

    def step(self) -> list[ProcessOutcome]:
        """One round: at most one ready key per controller, in manager/controller order, at the current time."""
        self.start()
        out: list[ProcessOutcome] = []
        for m, c in _pairs(self.managers):
            o = c.process_next(m.context_for, self.clock.now())
            if o is not None:
                out.append(o)
                if self.on_outcome is not None:
                    self.on_outcome(o)
        return out

    def next_ready_at(self) -> float | None:
        times = [t for _, c in _pairs(self.managers) if (t := c.next_ready_at()) is not None]
        return min(times) if times else None

    def run_until_idle(self, until: float | None = None, max_steps: int = 100_000) -> RunStats:
        """Process until no key is ready or waiting, or the next one falls due after `until` (the clock
        then stands at `until`), or `max_steps` reconciles ran. A periodic requeue never idles: bound it."""
        self.start()
        pairs = _pairs(self.managers)
        clock = self.clock
        stats = RunStats(0, "idle", clock.now())
        while True:
            if until is not None and clock.now() > until:
                stats.stopped = "until"
                break
            progressed = False
            for m, c in pairs:
                if stats.steps >= max_steps:
                    stats.stopped = "max_steps"
                    stats.now = clock.now()
                    return stats
                o = c.process_next(m.context_for, clock.now())
                if o is None:
                    continue
                progressed = True
                stats.steps += 1
                if o.error is not None:
                    stats.errors += 1
                if self.record:
                    stats.outcomes.append(o)
                if self.on_outcome is not None:
                    self.on_outcome(o)
            if progressed:
                continue
            t = self.next_ready_at()
            if t is None:
                stats.stopped = "idle"
                break
            if until is not None and t > until:
                clock.set(max(clock.now(), until))
                stats.stopped = "until"
                break
            clock.set(max(clock.now(), t))
        stats.now = clock.now()
        return stats

    def run_for(self, seconds: float, max_steps: int = 100_000) -> RunStats:
        """Let `seconds` of virtual time pass; the clock ends exactly there unless max_steps stops it first."""
        until = self.clock.now() + seconds
        stats = self.run_until_idle(until=until, max_steps=max_steps)
        if stats.stopped == "idle":
            self.clock.set(max(self.clock.now(), until))
            stats.now = until
        return stats


class ThreadedDriver:
    """Wall-clock workers: `max_concurrent` threads per controller.

    `serialize=True` runs one reconcile at a time across all controllers (for stores that are not
    thread-safe, like the in-process MemoryStore); queueing and waiting stay per controller.
    """

    def __init__(
        self,
        *managers: Manager,
        on_outcome: OutcomeHook | None = None,
        serialize: bool = False,
        name: str = "dpf",
    ) -> None:
        self.managers = list(managers)
        self.on_outcome = on_outcome
        self.name = name
        self._serial: threading.Lock | None = threading.Lock() if serialize else None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conds: list[threading.Condition] = []
        self.errors = 0
        self.reconciles = 0
        self._count_lock = threading.Lock()

    def start(self) -> None:
        if self._threads:
            return
        pairs = _pairs(self.managers)
        for _, c in pairs:
            # Install the lock before the initial list so events and workers never race on the queue.
            cond = threading.Condition(threading.RLock())
            c.lock = cond
            c.on_ready = self._waker(cond)
            self._conds.append(cond)
        for m in self.managers:
            m.start()
        for m, c in pairs:
            for i in range(c.max_concurrent):
                t = threading.Thread(target=self._worker, args=(m, c), name=f"{self.name}-{c.name}-{i}", daemon=True)
                self._threads.append(t)
                t.start()

    @staticmethod
    def _waker(cond: threading.Condition) -> Callable[[], None]:
        def wake() -> None:
            # Re-entrant: the controller usually holds the lock already, a direct queue user may not.
            with cond:
                cond.notify_all()

        return wake

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        for cond in self._conds:
            with cond:
                cond.notify_all()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._threads.clear()

    def __enter__(self) -> ThreadedDriver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _worker(self, m: Manager, c: Controller) -> None:
        clock = m.clock
        cond: threading.Condition = c.lock
        ctx = m.context_for(c)
        while not self._stopping.is_set():
            with cond:
                req = c.pop(clock.now())
                if req is None:
                    t = c.queue.next_ready_at()
                    # Woken early by on_ready (a key became ready or an earlier delay was scheduled).
                    cond.wait(None if t is None else max(0.0, t - clock.now()))
                    continue
            try:
                if self._serial is not None:
                    with self._serial:
                        done = c.run(ctx, req, clock.now())
                else:
                    done = c.run(ctx, req, clock.now())
            except BaseException:
                # run() captures every Exception; this is an interpreter-level exit: free the key and slot.
                _log.exception("worker %s interrupted on %s", c.name, req)
                with cond:
                    c.queue.done(req)
                    c.in_flight -= 1
                continue
            try:
                outcome = c.finish(done, clock.now())
            except Exception:
                _log.exception("worker %s failed to apply the result for %s", c.name, req)
                continue
            with self._count_lock:
                self.reconciles += 1
                if outcome.error is not None:
                    self.errors += 1
            if self.on_outcome is not None:
                try:
                    self.on_outcome(outcome)
                except Exception:
                    _log.exception("on_outcome hook failed")

    def busy(self) -> bool:
        """Some controller has a ready key or a pass in flight (delayed keys do not count)."""
        for _, c in _pairs(self.managers):
            with c.lock:
                if c.in_flight or len(c.queue):
                    return True
        return False

    def wait_idle(self, timeout: float = 5.0, settle: float = 0.0) -> bool:
        """Block until nothing is ready or in flight (and stays so for `settle` seconds); False on timeout."""
        deadline = time.monotonic() + timeout
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            if self.busy():
                quiet_since = None
            else:
                now = time.monotonic()
                if quiet_since is None:
                    quiet_since = now
                if now - quiet_since >= settle:
                    return True
            time.sleep(0.001)
        return False
