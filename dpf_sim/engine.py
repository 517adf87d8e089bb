"""The twin's engine: a SimPy environment, a virtual clock for the runtime, controller workers as SimPy
processes, a cost model, and an event log whose hash is stable for a seed.

Workers pump the core runtime's passive queues exactly as the production driver does on threads: pop a
ready request, run the reconcile, charge its virtual cost, finish. Nothing here changes what a reconcile
does; it only decides when it runs.
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import sys
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import simpy

from dpf_core.runtime import DEFAULT_EPOCH, Controller, Manager, ProcessOutcome, rfc3339
from dpf_core.runtime.controller import ControllerTotals
from dpf_core.store.protocol import WatchEvent


class SimClock:
    """The runtime's Clock on SimPy time: epoch seconds = `epoch` + env.now."""

    def __init__(self, env: simpy.Environment, epoch: float = DEFAULT_EPOCH) -> None:
        self.env = env
        self.epoch = epoch

    def now(self) -> float:
        return self.epoch + float(self.env.now)


# DPF's DPUSet pass walks every Node and every DPU of the set from the informer cache (facts 2.2): about
# 5 us an object in Go, so ~100 ms a pass at 10,000 DPUs. Our pass reads an index instead, but the twin
# charges what DPF's would cost, so DPU events coalesce in the work queue as they do in a busy controller.
DEFAULT_PER_ITEM: dict[str, float] = {"dpuset": 5e-6}


@dataclass
class CostModel:
    """Virtual seconds a controller's work costs. A reconcile costs `reconcile` plus `per_write` for each
    store write it made, plus `per_item` for each object of the kinds it watches in its own store (the
    lists a list-heavy reconcile walks); per-controller overrides by name. Zero cost is allowed (a
    reconcile then takes no simulated time, as when the API server and controller are far faster than
    the hardware)."""

    reconcile: float = 0.002
    per_write: float = 0.003
    per_controller: dict[str, float] = field(default_factory=dict)
    per_item: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_PER_ITEM))

    def cost(self, controller: str, writes: int) -> float:
        return self.per_controller.get(controller, self.reconcile) + self.per_write * writes

    def item_cost(self, controller: str, items: int) -> float:
        return self.per_item.get(controller, 0.0) * items


# A fleet run allocates millions of short-lived objects (store snapshots, events, SimPy events) next to a
# few million long-lived ones; with the default gen-0 threshold (700) the collector rescans the young
# survivors thousands of times. Raised, collection costs a quarter of the run less; results are unchanged.
GC_THRESHOLD = (50_000, 20, 100)


def tune_gc() -> None:
    """Raise the cyclic collector's thresholds for a simulation process (never lowers them)."""
    current = gc.get_threshold()
    if current[0] < GC_THRESHOLD[0]:
        gc.set_threshold(*(max(a, b) for a, b in zip(current, GC_THRESHOLD, strict=True)))


def _malloc_trim() -> Callable[[], object] | None:
    """glibc's malloc_trim(0), or None where there is no glibc (musl, macOS)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        trim: Callable[[int], object] = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return lambda: trim(0)


_TRIM = _malloc_trim()


def release_free_memory() -> None:
    """Hand the heap's free pages back to the OS. Objects over 512 bytes (most model `__dict__`s) come from malloc,
    and a fleet run frees millions of short-lived ones between the long-lived snapshots: glibc keeps those pages
    resident until trimmed. Trimmed now and then, peak RSS is ~3% lower at 5k DPUs; results are unchanged."""
    if _TRIM is not None:
        _TRIM()


class EventLog:
    """Every committed store change and notable model event, one line each, hashed as it is written.

    The hash covers the text of every line in order, so two runs with the same seed produce the same
    sha256 byte for byte. Lines are kept only when asked (a 100k-DPU run would hold millions).

    Lines reach the hash in batches (`_BATCH` lines joined, one encode and one update): sha256 of the same
    bytes in the same order is the same digest however they are split, and `sha256` flushes first."""

    _BATCH = 512

    def __init__(self, keep: bool = True, tail: int = 200) -> None:
        self._sha = hashlib.sha256()
        self.keep = keep
        self.lines: list[str] = []
        self.count = 0
        self._tail: list[str] = []
        self._tail_size = tail
        self._unhashed: list[str] = []
        # Many lines share one instant (a reconcile's writes, a burst of events): format it once.
        self._t: float | None = None
        self._prefix = ""

    def write(self, t: float, text: str) -> None:
        if t != self._t:
            self._t = t
            self._prefix = f"{t:.3f} "
        line = self._prefix + text
        self.count += 1
        unhashed = self._unhashed
        unhashed.append(line)
        if len(unhashed) >= self._BATCH:
            self._flush()
        if self.keep:
            self.lines.append(line)
        else:
            tail = self._tail
            tail.append(line)
            if len(tail) > 2 * self._tail_size:
                del tail[: self._tail_size]

    def _flush(self) -> None:
        unhashed = self._unhashed
        if unhashed:
            unhashed.append("")  # every line ends with a newline, the last one too
            self._sha.update("\n".join(unhashed).encode())
            unhashed.clear()

    def recent(self, n: int = 50) -> list[str]:
        return (self.lines if self.keep else self._tail)[-n:]

    @property
    def sha256(self) -> str:
        self._flush()
        return self._sha.hexdigest()


# How `describe` finds a kind's phase: the kinds DPF defines forbid extra fields, so whether
# `status.phase` exists is a property of the class; open (external) kinds keep the attribute lookups.
_NO_PHASE, _PHASE_FIELD, _PHASE_LOOKUP = 0, 1, 2
_phase_modes: dict[type[Any], int] = {}


def _phase_mode(cls: type[Any]) -> int:
    fields = getattr(cls, "model_fields", None)
    config = getattr(cls, "model_config", None)
    if fields is None or config is None or config.get("extra") != "forbid":
        return _PHASE_LOOKUP
    status = fields.get("status")
    if status is None:
        return _PHASE_LOOKUP if hasattr(cls, "status") else _NO_PHASE
    ann = status.annotation
    ann_fields = getattr(ann, "model_fields", None)
    ann_config = getattr(ann, "model_config", None)
    if not isinstance(ann, type) or ann_fields is None or ann_config is None or ann_config.get("extra") != "forbid":
        return _PHASE_LOOKUP
    if "phase" in ann_fields:
        return _PHASE_FIELD
    return _PHASE_LOOKUP if hasattr(ann, "phase") else _NO_PHASE


def describe(ev: WatchEvent) -> str:
    o = ev.object
    md = o.metadata
    cls = type(o)
    mode = _phase_modes.get(cls)
    if mode is None:
        mode = _phase_modes[cls] = _phase_mode(cls)
    phase = ""
    if mode:
        status = getattr(o, "status", None) if mode == _PHASE_LOOKUP else o.status  # type: ignore[attr-defined]
        if status is not None:
            value = getattr(status, "phase", None) if mode == _PHASE_LOOKUP else status.phase
            if value:
                phase = f" phase={value}"
    ns = md.namespace
    where = f"{ns}/{md.name}" if ns else str(md.name)
    return f"{ev.type} {o.kind} {where} rv={md.resource_version}{phase}"


class _Waker:
    """A controller's `on_ready` hook: succeeds the event its idle worker waits on (at most once)."""

    __slots__ = ("event",)

    def __init__(self, event: simpy.Event) -> None:
        self.event = event

    def __call__(self) -> None:
        ev = self.event
        if not ev.triggered:
            ev.succeed()


class _Relay(simpy.Event):
    """What an idle worker waits on when it also has a timer: the first of its wake event and its timeout
    succeeds it. `wake | timeout` (an AnyOf) did the same with a value nobody reads, built per wait; the
    relay is scheduled at the same point the AnyOf was (one step after the first of the two), so the
    worker resumes in the same order among the events of that instant."""

    def fire(self, _event: simpy.Event) -> None:
        if not self.triggered:
            self.succeed()


class SimDriver:
    """Runs the controllers of some Managers as SimPy processes (max_concurrent workers each)."""

    def __init__(
        self,
        env: simpy.Environment,
        clock: SimClock,
        cost: CostModel | None = None,
        on_outcome: Callable[[Controller, ProcessOutcome], None] | None = None,
    ) -> None:
        self.env = env
        self.clock = clock
        self.cost = cost or CostModel()
        self.on_outcome = on_outcome
        self.managers: list[Manager] = []
        self.reconciles = 0
        # Keyed by the controllers and managers themselves, never by id(): a stopped controller's or pruned
        # manager's address is reused by a later one once it is collected, which then inherited the "stopped"
        # mark or the item counts (tests/sim/test_engine_event_path.py). They stay referenced here instead.
        self._wakes: dict[Controller, _Waker] = {}
        self._writes = 0
        self._stopped: set[Controller] = set()
        # Objects per kind in each manager's store, for controllers charged per item (see CostModel).
        self._counts: dict[Manager, dict[type[Any], int]] = {}
        self._counted_kinds: dict[Controller, tuple[type[Any], ...]] = {}
        # Running sums per controller name over the controllers of `managers` (see `controller_totals`), and
        # the managers counted in them.
        self._totals: dict[str, ControllerTotals] = {}
        self._totalled: dict[int, Manager] = {}

    def count_write(self, _ev: WatchEvent | None = None) -> None:
        self._writes += 1

    def add(self, manager: Manager) -> None:
        self.managers.append(manager)
        self._total(manager)
        for c in manager.controllers:
            waker = self._wakes[c] = _Waker(self.env.event())
            c.on_ready = waker
            if self.cost.per_item.get(c.name):
                self._count_items(manager, c)
        manager.start()
        for c in manager.controllers:
            for _ in range(c.max_concurrent):
                self.env.process(self._worker(manager, c))

    def _total(self, manager: Manager) -> None:
        self._totalled[id(manager)] = manager
        for c in manager.controllers:
            totals = self._totals.get(c.name)
            if totals is None:
                totals = self._totals[c.name] = ControllerTotals()
            c.use_totals(totals)

    def controller_totals(self) -> dict[str, ControllerTotals]:
        """Queued keys and reconciles summed by controller name over the controllers of every manager in
        `managers` (stopped ones too, as long as they are listed); names no listed controller has are left out.
        A manager taken out of `managers` directly (the twin prunes a Deployment's) is noticed by the count."""
        managers = self.managers
        if len(managers) != len(self._totalled):
            listed = {id(m): m for m in managers}
            for key, m in list(self._totalled.items()):
                if key not in listed:
                    del self._totalled[key]
                    for c in m.controllers:
                        c.use_totals(None)
            for key, m in listed.items():
                if key not in self._totalled:
                    self._total(m)
        return {name: t for name, t in self._totals.items() if t.members > 0}

    def stop(self, manager: Manager) -> None:
        """Stop a manager's workers (a crashed controller process): its queues are dropped with it."""
        manager.stop()
        for c in manager.controllers:
            self._stopped.add(c)
            self._wake(c)

    def _count_items(self, manager: Manager, c: Controller) -> None:
        kinds = tuple(kind for source, kind in c.watched() if source is None)
        self._counted_kinds[c] = kinds
        counts = self._counts.get(manager)
        subscribe = getattr(manager.client, "subscribe", None)
        if counts is None:
            counts = self._counts[manager] = {}
        new = [k for k in kinds if k not in counts]
        if not new or subscribe is None:
            return
        for k in new:
            counts[k] = len(manager.client.list(k))

        def count(ev: WatchEvent) -> None:
            if ev.type == "ADDED":
                counts[type(ev.object)] += 1
            elif ev.type == "DELETED":
                counts[type(ev.object)] -= 1

        subscribe(count, new)

    def items(self, manager: Manager, c: Controller) -> int:
        """Objects of the kinds `c` watches in its manager's store (0 unless charged per item)."""
        kinds = self._counted_kinds.get(c)
        if not kinds:
            return 0
        counts = self._counts[manager]
        return sum(counts.get(k, 0) for k in kinds)

    def _wake(self, c: Controller) -> None:
        waker = self._wakes.get(c)
        if waker is not None:
            waker()

    def _worker(self, manager: Manager, c: Controller) -> Generator[Any, Any, None]:
        ctx = manager.context_for(c)
        key = c
        env = self.env
        clock = self.clock
        waker = self._wakes[key]
        stopped = self._stopped
        while key not in stopped:
            now = clock.now()
            req = c.pop(now)
            if req is None:
                wake = waker.event
                if wake.triggered:
                    wake = waker.event = env.event()
                t = c.next_ready_at()
                if t is None:
                    yield wake
                    continue
                relay = _Relay(env)
                fire = relay.fire
                callbacks = wake.callbacks
                assert callbacks is not None
                callbacks.append(fire)
                timer = env.timeout(max(0.0, t - now))
                assert timer.callbacks is not None
                timer.callbacks.append(fire)
                yield relay
                # As the AnyOf did once triggered: no hook left on a wake event that has not fired (the
                # timer's goes with the timer).
                callbacks = wake.callbacks
                if callbacks and fire in callbacks:
                    callbacks.remove(fire)
                continue
            before = self._writes
            done = c.run(ctx, req, now)
            self.reconciles += 1
            cost = self.cost.cost(c.name, self._writes - before)
            if key in self._counted_kinds:
                cost += self.cost.item_cost(c.name, self.items(manager, c))
            if cost > 0:
                yield env.timeout(cost)
            outcome = c.finish(done, clock.now())
            if self.on_outcome is not None:
                self.on_outcome(c, outcome)


def timestamp(clock: SimClock) -> str:
    return rfc3339(clock.now())
