"""Controller: watches -> mappers -> work queue -> reconcile -> result applied to the queue.

Everything between "an event arrived" and "a result was applied to the queue" lives here and is shared
by every driver. A driver only decides *when* to call `pop` / `run` / `finish` (or `process_next`, all
three at once) and how to wait; the SimPy driver yields a cost timeout between `run` and `finish`, which
is why in-flight accounting spans the three steps.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from mypy_extensions import mypyc_attr

from dpf_core.api.meta import KubeObject
from dpf_core.store.protocol import WatchEvent

from .types import DONE, Context, Reconciler, Request, RequeueAfterError, Result, TerminalError
from .workqueue import QueueTotals, RateLimiter, WorkQueue

Mapper = Callable[[WatchEvent], Iterable[Request]]
Predicate = Callable[[WatchEvent], bool]
Lister = Callable[[type[KubeObject]], Iterable[KubeObject]]
ReconcileFn = Callable[[Context, Request], "Result | None"]

_log = logging.getLogger("dpf.runtime")


# -- mappers (handler.EventHandler's Python cousins) ------------------------------------------------


def _objects(ev: WatchEvent) -> tuple[KubeObject, ...]:
    # controller-runtime maps both sides of an update, so a parent losing a child hears about it too.
    if ev.old is not None and ev.type == "MODIFIED":
        return (ev.object, ev.old)
    return (ev.object,)


class own:
    """handler.EnqueueRequestForObject: the object's own request."""

    __slots__ = ()

    def __call__(self, ev: WatchEvent) -> Iterable[Request]:
        meta = ev.object.metadata
        return (Request(meta.namespace or None, meta.name or ""),)

    def __repr__(self) -> str:
        return "own()"


_groups: dict[str, str] = {}


def _group_of(api_version: str) -> str:
    group = _groups.get(api_version)
    if group is None:
        group = _groups[api_version] = api_version.rpartition("/")[0]
    return group


class owner:
    """handler.EnqueueRequestForOwner(OnlyControllerOwner): the controller ownerReference of `owner_kind`.

    The owner's request takes the dependent's namespace (ownerReferences never cross namespaces).
    `controller_only=False` follows every ownerReference of that kind instead.
    """

    __slots__ = ("controller_only", "group", "kind", "namespaced")

    def __init__(self, owner_kind: type[KubeObject], *, controller_only: bool = True) -> None:
        info = owner_kind.KIND
        self.group = info.group
        self.kind = info.kind
        self.namespaced = info.namespaced
        self.controller_only = controller_only

    def __call__(self, ev: WatchEvent) -> Iterable[Request]:
        out: list[Request] = []
        kind, group, controller_only = self.kind, self.group, self.controller_only
        for obj in _objects(ev):
            md = obj.metadata
            refs = md.owner_references
            if not refs:
                continue
            ns = (md.namespace or None) if self.namespaced else None
            for ref in refs:
                if ref.kind != kind or (controller_only and not ref.controller) or _group_of(ref.api_version) != group:
                    continue
                req = Request(ns, ref.name)
                if req not in out:
                    out.append(req)
        return out

    def __repr__(self) -> str:
        return f"owner({self.kind}.{self.group})"


class by_label:
    """Labels on the object name its parent (e.g. DPF's `...-name` / `...-namespace` owned-by labels).

    Without `namespace_label` (or when that label is absent) the object's own namespace is used, and
    `cluster_scoped=True` yields requests without a namespace.
    """

    __slots__ = ("cluster_scoped", "name_label", "namespace_label")

    def __init__(self, name_label: str, namespace_label: str | None = None, *, cluster_scoped: bool = False) -> None:
        self.name_label = name_label
        self.namespace_label = namespace_label
        self.cluster_scoped = cluster_scoped

    def __call__(self, ev: WatchEvent) -> Iterable[Request]:
        out: list[Request] = []
        for obj in _objects(ev):
            labels = obj.metadata.labels
            name = labels.get(self.name_label)
            if not name:
                continue
            if self.cluster_scoped:
                ns: str | None = None
            elif self.namespace_label is not None and labels.get(self.namespace_label):
                ns = labels[self.namespace_label]
            else:
                ns = obj.metadata.namespace or None
            req = Request(ns, name)
            if req not in out:
                out.append(req)
        return out

    def __repr__(self) -> str:
        return f"by_label({self.name_label!r}, {self.namespace_label!r})"


class all_of:
    """Every object of `target_kind` (e.g. a Node label change re-evaluates every DPUSet)."""

    __slots__ = ("lister", "target_kind")

    def __init__(self, target_kind: type[KubeObject], lister: Lister) -> None:
        self.target_kind = target_kind
        self.lister = lister

    def __call__(self, ev: WatchEvent) -> Iterable[Request]:
        return [Request(o.metadata.namespace or None, o.metadata.name or "") for o in self.lister(self.target_kind)]

    def __repr__(self) -> str:
        return f"all_of({self.target_kind.KIND.kind})"


class from_object:
    """handler.EnqueueRequestsFromMapFunc: a function of one object, applied to both sides of an update."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[KubeObject], Iterable[Request]]) -> None:
        self.fn = fn

    def __call__(self, ev: WatchEvent) -> Iterable[Request]:
        # Ordered and deduplicated in O(n): a map function may return thousands of requests (every DPU
        # without a cluster), and a list membership test made that quadratic.
        out: dict[Request, None] = {}
        for obj in _objects(ev):
            for req in self.fn(obj):
                out[req] = None
        return list(out)


# -- predicates -------------------------------------------------------------------------------------


def generation_changed(ev: WatchEvent) -> bool:
    """predicate.GenerationChangedPredicate: updates pass only when metadata.generation moved (spec edits)."""
    if ev.type != "MODIFIED" or ev.old is None:
        return True
    return ev.old.metadata.generation != ev.object.metadata.generation


def labels_changed(ev: WatchEvent) -> bool:
    if ev.type != "MODIFIED" or ev.old is None:
        return True
    return ev.old.metadata.labels != ev.object.metadata.labels


def annotations_changed(ev: WatchEvent) -> bool:
    if ev.type != "MODIFIED" or ev.old is None:
        return True
    return ev.old.metadata.annotations != ev.object.metadata.annotations


def resource_version_changed(ev: WatchEvent) -> bool:
    """predicate.ResourceVersionChangedPredicate: drops resync-style updates that changed nothing."""
    if ev.type != "MODIFIED" or ev.old is None:
        return True
    return ev.old.metadata.resource_version != ev.object.metadata.resource_version


def deletion_started(ev: WatchEvent) -> bool:
    """Passes the update that set deletionTimestamp (and creates/deletes)."""
    if ev.type != "MODIFIED" or ev.old is None:
        return True
    return ev.old.metadata.deletion_timestamp is None and ev.object.metadata.deletion_timestamp is not None


def event_types(*types: str) -> Predicate:
    wanted = frozenset(types)

    def pred(ev: WatchEvent) -> bool:
        return ev.type in wanted

    return pred


def any_of(*preds: Predicate) -> Predicate:
    def pred(ev: WatchEvent) -> bool:
        return any(p(ev) for p in preds)

    return pred


def every(*preds: Predicate) -> Predicate:
    def pred(ev: WatchEvent) -> bool:
        return all(p(ev) for p in preds)

    return pred


def negate(p: Predicate) -> Predicate:
    def pred(ev: WatchEvent) -> bool:
        return not p(ev)

    return pred


# -- the controller ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Watch:
    """A source: events of `kind` (from the manager's store, or the store registered as `source`) mapped to requests."""

    kind: type[KubeObject]
    mapper: Mapper
    predicate: Predicate | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class Reconciled:
    """What `run` produced, not yet applied to the queue."""

    request: Request
    result: Result
    error: BaseException | None
    started: float  # clock time at pop
    duration: float  # wall seconds the reconcile itself took (perf_counter)


@dataclass(frozen=True, slots=True)
class ProcessOutcome:
    """One finished pass, as applied to the queue. `seq` orders a controller's passes."""

    controller: str
    seq: int
    request: Request
    result: Result
    error: BaseException | None
    # "forget" | "requeue_after" | "rate_limited" | "terminal"
    action: str
    requeue_at: float | None
    started: float
    finished: float
    duration: float


class _NoLock:
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_LOCK = _NoLock()


@mypyc_attr(allow_interpreted_subclasses=True)
class ControllerTotals(QueueTotals):
    """Running sums over the controllers sharing this object (`Controller.use_totals`): how many there are,
    keys queued in their work queues (`Controller.queued` summed) and reconciles run (`Controller.reconciles`
    summed). The twin's time series groups controllers by name; a sample reads one of these per name instead
    of visiting every controller (~3 per DPU with services). Not locked, like QueueTotals."""

    __slots__ = ("members", "reconciles")

    def __init__(self) -> None:
        super().__init__()
        self.members = 0
        self.reconciles = 0


# Compiled (dpf_core.compiled): controllers with their own watch plumbing subclass it.
@mypyc_attr(allow_interpreted_subclasses=True)
class Controller:
    """One reconciler, its work queue and its watches. Holds no thread and no timer.

    `on_ready` is called (under the controller's lock) whenever a key becomes ready to pop, a slot frees
    while keys are ready, or a delayed key is scheduled earlier than before.
    """

    def __init__(
        self,
        name: str,
        reconciler: Reconciler | ReconcileFn,
        for_kind: type[KubeObject] | None,
        watches: Iterable[Watch] = (),
        max_concurrent: int = 1,
        *,
        for_predicate: Predicate | None = None,
        rate_limiter: RateLimiter[Request] | None = None,
        on_ready: Callable[[], None] | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be >= 1")
        self.name = name
        # Not isinstance against a runtime-checkable Protocol: compiled code cannot define one.
        method: ReconcileFn | None = getattr(reconciler, "reconcile", None)
        self._reconcile: ReconcileFn = method if method is not None else cast(ReconcileFn, reconciler)
        self.reconciler = reconciler
        self.for_kind = for_kind
        self.max_concurrent = max_concurrent
        self.log = log or _log.getChild(name)
        all_watches: list[Watch] = []
        if for_kind is not None:
            all_watches.append(Watch(for_kind, own(), for_predicate))
        all_watches.extend(watches)
        self.watches: tuple[Watch, ...] = tuple(all_watches)
        self._by_kind: dict[tuple[str | None, type[KubeObject]], list[Watch]] = {}
        for w in self.watches:
            self._by_kind.setdefault((w.source, w.kind), []).append(w)
        self.totals = ControllerTotals()
        self.totals.members = 1
        self.queue: WorkQueue[Request] = WorkQueue(rate_limiter, name=name, totals=self.totals)
        self._on_ready: Callable[[], None] | None = None
        self.on_ready = on_ready
        # A driver running workers on threads installs a real lock; single-threaded drivers pay nothing.
        self.lock: Any = _NO_LOCK
        self.in_flight = 0
        self._seq = 0
        self._reconciles = 0
        self._errors = 0
        self._requeues = 0
        self._requeue_after = 0
        self._terminal = 0
        self._successes = 0
        self._events = 0
        self._dropped_events = 0
        self._mapper_errors = 0
        self._duration_total = 0.0
        self._duration_max = 0.0
        self.started = False

    def __repr__(self) -> str:
        return f"Controller({self.name!r}, depth={len(self.queue)}, in_flight={self.in_flight})"

    @property
    def on_ready(self) -> Callable[[], None] | None:
        return self._on_ready

    @on_ready.setter
    def on_ready(self, hook: Callable[[], None] | None) -> None:
        # The queue calls the driver's hook itself: a wake is on every add, so no relay through the controller.
        self._on_ready = hook
        self.queue.notify = hook

    def _wake(self) -> None:
        if self._on_ready is not None:
            self._on_ready()

    def watched(self) -> list[tuple[str | None, type[KubeObject]]]:
        """(source, kind) pairs this controller listens to, in declaration order."""
        return list(self._by_kind)

    # -- feeding the queue ---------------------------------------------------------------------------

    def handle_event(self, ev: WatchEvent, source: str | None = None) -> int:
        """Map one watch event to requests and enqueue them; returns how many requests it produced."""
        if ev.type == "BOOKMARK":
            return 0
        watches = self._by_kind.get((source, type(ev.object)))
        if not watches:
            return 0
        if self.lock is _NO_LOCK:
            return self._handle(ev, watches)
        with self.lock:
            return self._handle(ev, watches)

    def _handle(self, ev: WatchEvent, watches: list[Watch]) -> int:
        n = 0
        self._events += 1
        add = self.queue.add
        for w in watches:
            try:
                if w.predicate is not None and not w.predicate(ev):
                    self._dropped_events += 1
                    continue
                reqs = w.mapper(ev)
                if type(reqs) is not list and type(reqs) is not tuple:
                    # A lazy mapper runs to the end before anything is enqueued, so a failure enqueues nothing.
                    reqs = list(reqs)
            except Exception:
                # Events are delivered inside someone else's store write: a bug here must not fail it.
                self._mapper_errors += 1
                self.log.exception("watch %r of %s failed on %s %s", w.mapper, self.name, ev.type, ev.object.name)
                continue
            for req in reqs:
                add(req)
            n += len(reqs)
        return n

    def enqueue(self, req: Request) -> None:
        with self.lock:
            self.queue.add(req)

    def enqueue_after(self, req: Request, delay: float, now: float) -> None:
        with self.lock:
            self.queue.add_after(req, delay, now)

    def start(self, lister: Lister, listers: dict[str | None, Lister] | None = None) -> None:
        """The informers' initial list: every existing object of every watched kind arrives as ADDED.

        `listers` supplies the lister for watches on other stores (keyed by source name).
        """
        self.started = True
        for source, kind in self._by_kind:
            src_lister = lister if source is None else (listers or {}).get(source)
            if src_lister is None:
                continue
            for obj in list(src_lister(kind)):
                self.handle_event(WatchEvent("ADDED", obj), source)

    # -- processing, in three steps ----------------------------------------------------------------

    def pop(self, now: float) -> Request | None:
        """Take the next ready request, or None if nothing is ready or max_concurrent passes are in flight."""
        with self.lock:
            if self.in_flight >= self.max_concurrent:
                return None
            req = self.queue.pop_ready(now)
            if req is not None:
                self.in_flight += 1
            return req

    def run(self, ctx: Context, req: Request, now: float | None = None) -> Reconciled:
        """Call reconcile; an exception is captured, never propagated. Touches no queue state."""
        started = ctx.clock.now() if now is None else now
        t0 = time.perf_counter()
        try:
            result = self._reconcile(ctx, req)
            error: BaseException | None = None
        except Exception as e:
            result = None
            error = e
        duration = time.perf_counter() - t0
        return Reconciled(req, result if result is not None else DONE, error, started, duration)

    def finish(self, done: Reconciled, now: float) -> ProcessOutcome:
        """Apply a pass's result to the queue exactly like controller-runtime's reconcileHandler."""
        req, result, error = done.request, done.result, done.error
        queue = self.queue
        with self.lock:
            if error is not None:
                self._errors += 1
                if isinstance(error, RequeueAfterError) and error.requeue_after > 0:
                    queue.forget(req)
                    queue.add_after(req, error.requeue_after, now)
                    action = "requeue_after"
                elif isinstance(error, TerminalError):
                    self._terminal += 1
                    queue.forget(req)
                    action = "terminal"
                else:
                    queue.add_rate_limited(req, now)
                    action = "rate_limited"
            elif result.requeue_after is not None and result.requeue_after > 0:
                # forget first: a periodic poll must not inherit an earlier failure's backoff.
                queue.forget(req)
                queue.add_after(req, result.requeue_after, now)
                self._requeue_after += 1
                action = "requeue_after"
            elif result.requeue:
                queue.add_rate_limited(req, now)
                self._requeues += 1
                action = "rate_limited"
            else:
                queue.forget(req)
                self._successes += 1
                action = "forget"
            # Earliest wins in the delaying queue, so report when the key will really come back.
            requeue_at = queue.ready_at(req) if action in ("requeue_after", "rate_limited") else None
            queue.done(req)
            self.in_flight -= 1
            self._reconciles += 1
            self.totals.reconciles += 1
            self._duration_total += done.duration
            if done.duration > self._duration_max:
                self._duration_max = done.duration
            self._seq += 1
            seq = self._seq
            if self.in_flight == self.max_concurrent - 1 and len(queue) and self._on_ready is not None:
                # A worker may be sleeping on the concurrency limit rather than on an empty queue.
                self._on_ready()
        if error is not None:
            self._log_error(req, error, action)
        return ProcessOutcome(self.name, seq, req, result, error, action, requeue_at, done.started, now, done.duration)

    def _log_error(self, req: Request, error: BaseException, action: str) -> None:
        # A reconcile error is retried with backoff, so it is a warning; the traceback only when debugging.
        if self.log.isEnabledFor(logging.WARNING):
            self.log.warning(
                "Reconciler error controller=%s request=%s action=%s: %s",
                self.name,
                req,
                action,
                error,
                exc_info=(type(error), error, error.__traceback__) if self.log.isEnabledFor(logging.DEBUG) else None,
            )

    def process_next(self, ctx_factory: Callable[[Controller], Context], now: float) -> ProcessOutcome | None:
        """pop + run + finish at one instant (SyncDriver, benchmarks); None if nothing was ready."""
        req = self.pop(now)
        if req is None:
            return None
        try:
            done = self.run(ctx_factory(self), req, now)
        except BaseException:
            # Only a BaseException (KeyboardInterrupt, a SimPy-style kill) gets here: give the slot back.
            with self.lock:
                self.queue.done(req)
                self.in_flight -= 1
            raise
        return self.finish(done, now)

    # -- scheduling introspection ------------------------------------------------------------------

    def has_ready(self) -> bool:
        return bool(len(self.queue)) and self.in_flight < self.max_concurrent

    def next_ready_at(self) -> float | None:
        with self.lock:
            return self.queue.next_ready_at()

    def idle(self) -> bool:
        return self.in_flight == 0 and self.queue.idle()

    @property
    def reconciles(self) -> int:
        """Reconciles run so far (metrics()["reconciles"] without building the whole dict: the twin's
        recorder reads it from every controller, tens of thousands with services on a 10k fleet, each sample)."""
        return self._reconciles

    @property
    def queued(self) -> int:
        """Keys ready plus keys parked for a requeue_after or a backoff."""
        return self.queue.queued

    def use_totals(self, totals: ControllerTotals | None = None) -> None:
        """Count this controller in `totals` from now on (a private one when None), moving its queued keys and
        reconciles out of the sums it counted in, so every group's sums stay those of its current members."""
        new = totals if totals is not None else ControllerTotals()
        with self.lock:
            old = self.totals
            if new is old:
                return
            old.members -= 1
            old.reconciles -= self._reconciles
            new.members += 1
            new.reconciles += self._reconciles
            self.queue.use_totals(new)
            self.totals = new

    def metrics(self) -> dict[str, float | int | str]:
        q = self.queue.metrics()
        mean = self._duration_total / self._reconciles if self._reconciles else 0.0
        return {
            "controller": self.name,
            "reconciles": self._reconciles,
            "success": self._successes,
            "errors": self._errors,
            "terminal_errors": self._terminal,
            "requeues": self._requeues,
            "requeue_after": self._requeue_after,
            "events": self._events,
            "events_filtered": self._dropped_events,
            "mapper_errors": self._mapper_errors,
            "queue_depth": q["depth"],
            "queue_max_depth": q["max_depth"],
            "queue_waiting": q["waiting"],
            "queue_adds": q["adds"],
            "queue_retries": q["retries"],
            "in_flight": self.in_flight,
            "reconcile_seconds_total": self._duration_total,
            "reconcile_seconds_max": self._duration_max,
            "reconcile_seconds_mean": mean,
        }
