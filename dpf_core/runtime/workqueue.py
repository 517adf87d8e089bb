"""A passive rate-limiting delaying work queue with client-go's semantics.

It owns no thread and no timer: whoever drives it passes `now` in and asks `next_ready_at()` when to
look again. That is what lets the same queue run under SimPy's virtual clock and on the wall clock.

Semantics kept from k8s.io/client-go/util/workqueue:
- A key waiting in the ready FIFO is not added twice (the `dirty` set).
- A key being processed that is added again is marked dirty and goes back to the FIFO at `done()`, so one
  key is never reconciled by two workers at once.
- `add_after`: the earliest ready time wins; a later request for a key already waiting is dropped. A
  waiting entry is independent of the FIFO, exactly like client-go: if the key is also added directly and
  processed, the waiting entry still fires later (one more pass).
- `add_rate_limited`: per-item exponential backoff (5 ms doubling to 1000 s); `forget` resets it.

Order is deterministic: ready keys FIFO, delayed keys by (ready_at, insertion sequence).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar

from mypy_extensions import mypyc_attr

K = TypeVar("K", bound=Hashable)
K_contra = TypeVar("K_contra", bound=Hashable, contravariant=True)

DEFAULT_BASE_DELAY = 0.005
DEFAULT_MAX_DELAY = 1000.0
DEFAULT_QPS = 10.0
DEFAULT_BURST = 100


class RateLimiter(Protocol[K_contra]):
    def when(self, key: K_contra, now: float) -> float:
        """Seconds to wait before `key` may be retried; counts one more failure."""
        ...

    def forget(self, key: K_contra) -> None: ...

    def num_requeues(self, key: K_contra) -> int: ...


class ItemExponentialFailureRateLimiter(Generic[K]):
    """base * 2^failures, capped at max_delay (client-go's ItemExponentialFailureRateLimiter)."""

    __slots__ = ("_base", "_failures", "_max")

    def __init__(self, base_delay: float = DEFAULT_BASE_DELAY, max_delay: float = DEFAULT_MAX_DELAY) -> None:
        self._base = base_delay
        self._max = max_delay
        self._failures: dict[K, int] = {}

    def when(self, key: K, now: float) -> float:
        exp = self._failures.get(key, 0)
        self._failures[key] = exp + 1
        # 2**exp would grow without bound on a key failing forever; past 2^62 the cap applies anyway.
        if exp >= 62:
            return self._max
        return min(self._base * (1 << exp), self._max)

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)

    def num_requeues(self, key: K) -> int:
        return self._failures.get(key, 0)


class BucketRateLimiter(Generic[K]):
    """An overall token bucket (golang.org/x/time/rate Reserve().Delay()): qps refill, `burst` capacity.

    Time comes from the caller, so the bucket refills on virtual time in the twin.
    """

    __slots__ = ("_burst", "_last", "_qps", "_tokens")

    def __init__(self, qps: float = DEFAULT_QPS, burst: int = DEFAULT_BURST) -> None:
        self._qps = qps
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last: float | None = None

    def when(self, key: K, now: float) -> float:
        if self._last is not None and now > self._last:
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._qps)
        if self._last is None or now > self._last:
            self._last = now
        # A reservation always succeeds; a negative balance is the wait for the token it borrowed.
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self._qps

    def forget(self, key: K) -> None:
        return None

    def num_requeues(self, key: K) -> int:
        return 0


class MaxOfRateLimiter(Generic[K]):
    """The longest wait any of the limiters asks for (client-go's MaxOfRateLimiter)."""

    __slots__ = ("_limiters",)

    def __init__(self, *limiters: RateLimiter[K]) -> None:
        if not limiters:
            raise ValueError("MaxOfRateLimiter needs at least one limiter")
        self._limiters = limiters

    def when(self, key: K, now: float) -> float:
        return max(limiter.when(key, now) for limiter in self._limiters)

    def forget(self, key: K) -> None:
        for limiter in self._limiters:
            limiter.forget(key)

    def num_requeues(self, key: K) -> int:
        return max(limiter.num_requeues(key) for limiter in self._limiters)


def default_controller_rate_limiter(*, with_bucket: bool = False) -> RateLimiter[K]:
    """client-go's DefaultControllerRateLimiter, minus the bucket unless asked for.

    The real default is MaxOf(per-item 5ms..1000s, bucket 10 qps burst 100). The bucket is off by default
    here because it is shared by every key of a controller: in a fleet-scale twin run it turns thousands
    of independent DPU failures into one 10/s trickle, which measures the limiter, not the controllers.
    Pass `with_bucket=True` to reproduce production retry pacing exactly.
    """
    per_item: ItemExponentialFailureRateLimiter[K] = ItemExponentialFailureRateLimiter()
    if not with_bucket:
        return per_item
    bucket: BucketRateLimiter[K] = BucketRateLimiter()
    return MaxOfRateLimiter(per_item, bucket)


@mypyc_attr(allow_interpreted_subclasses=True)  # compiled (dpf_core.compiled); ControllerTotals extends it
class QueueTotals:
    """A running sum of `queued` over every queue that shares this object (`WorkQueue.use_totals`).

    A twin samples the depth of tens of thousands of queues (a DPU cluster's node agents, ~3 per DPU) grouped
    by controller name; kept up to date on every change, a group's depth costs one read, not one per queue.
    Not locked: queues sharing one must be driven from one thread (the SimPy driver).
    """

    __slots__ = ("queued",)

    def __init__(self) -> None:
        self.queued = 0


class WorkQueue(Generic[K]):
    """client-go's rate-limiting delaying queue, passive: every time-dependent call takes `now`.

    `notify` (optional) is called whenever a key becomes ready to pop or a delayed key is scheduled
    earlier than the earliest one before: the hook a driver uses to wake a sleeping worker. Spurious
    calls are possible and harmless.
    """

    __slots__ = (
        "_adds",
        "_dirty",
        "_heap",
        "_limiter",
        "_max_depth",
        "_processing",
        "_queue",
        "_retries",
        "_seq",
        "_waiting",
        "name",
        "notify",
        "totals",
    )

    def __init__(
        self,
        rate_limiter: RateLimiter[K] | None = None,
        name: str = "",
        notify: Callable[[], None] | None = None,
        totals: QueueTotals | None = None,
    ) -> None:
        self.name = name
        self.notify = notify
        # Follows len(_queue) + len(_waiting) at every change below: a private one unless shared.
        self.totals = totals if totals is not None else QueueTotals()
        self._limiter: RateLimiter[K] = (
            rate_limiter if rate_limiter is not None else ItemExponentialFailureRateLimiter()
        )
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        # The live delayed entry per key; heap entries that do not match it are stale and skipped lazily.
        self._waiting: dict[K, tuple[float, int]] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._seq = 0
        self._adds = 0
        self._retries = 0
        self._max_depth = 0

    # -- the basic queue --------------------------------------------------------------------------

    def add(self, key: K) -> None:
        if key in self._dirty:
            return
        self._dirty.add(key)
        self._adds += 1
        if key in self._processing:
            return
        self._queue.append(key)
        self.totals.queued += 1
        if len(self._queue) > self._max_depth:
            self._max_depth = len(self._queue)
        if self.notify is not None:
            self.notify()

    def pop_ready(self, now: float) -> K | None:
        """The next ready key (delayed keys whose time has come join the FIFO first), now being processed."""
        promoted = self._promote(now) if self._heap else False
        if not self._queue:
            return None
        key = self._queue.popleft()
        self.totals.queued -= 1
        self._processing.add(key)
        self._dirty.discard(key)
        if promoted and self._queue and self.notify is not None:
            # More keys fell due than this caller takes: other sleeping workers may have work.
            self.notify()
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self.totals.queued += 1
            if len(self._queue) > self._max_depth:
                self._max_depth = len(self._queue)
            if self.notify is not None:
                self.notify()

    # -- the delaying queue -----------------------------------------------------------------------

    def add_after(self, key: K, delay: float, now: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        ready_at = now + delay
        current = self._waiting.get(key)
        if current is not None and current[0] <= ready_at:
            return
        head = self.next_ready_at()
        self._seq += 1
        if current is None:
            self.totals.queued += 1  # an earlier time for a waiting key replaces its entry
        self._waiting[key] = (ready_at, self._seq)
        heapq.heappush(self._heap, (ready_at, self._seq, key))
        if len(self._heap) > 1024 and len(self._heap) > 4 * len(self._waiting):
            self._compact()
        if (head is None or ready_at < head) and self.notify is not None:
            self.notify()

    def next_ready_at(self) -> float | None:
        """When the earliest delayed key falls due (None if none waits). Keys already in the FIFO are not
        counted: `pop_ready` hands those out."""
        heap = self._heap
        waiting = self._waiting
        while heap:
            ready_at, seq, key = heap[0]
            live = waiting.get(key)
            if live is not None and live[1] == seq:
                return ready_at
            heapq.heappop(heap)
        return None

    def _promote(self, now: float) -> bool:
        heap = self._heap
        waiting = self._waiting
        promoted = False
        before = len(self._queue) + len(waiting)
        while heap and heap[0][0] <= now:
            _, seq, key = heapq.heappop(heap)
            live = waiting.get(key)
            if live is None or live[1] != seq:
                continue
            del waiting[key]
            promoted = True
            if key in self._dirty:
                continue
            self._dirty.add(key)
            self._adds += 1
            if key not in self._processing:
                self._queue.append(key)
        # A key falling due leaves the waiting set and joins the FIFO unless already dirty there: -1 or 0 each.
        self.totals.queued += len(self._queue) + len(waiting) - before
        if len(self._queue) > self._max_depth:
            self._max_depth = len(self._queue)
        return promoted

    def _compact(self) -> None:
        self._heap = [(ready_at, seq, key) for key, (ready_at, seq) in self._waiting.items()]
        heapq.heapify(self._heap)

    # -- the rate-limiting queue ------------------------------------------------------------------

    def add_rate_limited(self, key: K, now: float) -> None:
        self._retries += 1
        self.add_after(key, self._limiter.when(key, now), now)

    def forget(self, key: K) -> None:
        self._limiter.forget(key)

    def num_requeues(self, key: K) -> int:
        return self._limiter.num_requeues(key)

    # -- introspection ----------------------------------------------------------------------------

    def __len__(self) -> int:
        """Keys ready to pop (client-go's Len)."""
        return len(self._queue)

    def use_totals(self, totals: QueueTotals) -> None:
        """Count this queue in `totals` from now on, taking what it holds out of the sums it counted in."""
        n = len(self._queue) + len(self._waiting)
        self.totals.queued -= n
        totals.queued += n
        self.totals = totals

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def queued(self) -> int:
        """Ready keys plus keys waiting for a delay (len + waiting in one call)."""
        return len(self._queue) + len(self._waiting)

    @property
    def processing(self) -> int:
        return len(self._processing)

    def is_processing(self, key: K) -> bool:
        return key in self._processing

    def is_pending(self, key: K) -> bool:
        """Ready, marked dirty while processing, or waiting for a delay."""
        return key in self._dirty or key in self._waiting

    def ready_at(self, key: K) -> float | None:
        """When `key`'s delayed entry falls due (None if it has none)."""
        live = self._waiting.get(key)
        return live[0] if live is not None else None

    def ready_keys(self) -> list[K]:
        return list(self._queue)

    def idle(self) -> bool:
        return not self._queue and not self._processing and not self._waiting

    def metrics(self) -> dict[str, int]:
        return {
            "depth": len(self._queue),
            "max_depth": self._max_depth,
            "waiting": len(self._waiting),
            "processing": len(self._processing),
            "adds": self._adds,
            "retries": self._retries,
        }
