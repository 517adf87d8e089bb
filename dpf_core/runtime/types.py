"""The runtime's small vocabulary: Request, Result, Clock, Context, Reconciler, Recorder, timestamps.

Nothing here knows whether time is virtual. A reconcile reads time only from `ctx.clock.now()` (epoch
seconds), so the twin's objects carry simulated time and a replay writes byte-identical timestamps.
"""

from __future__ import annotations

import calendar
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from dpf_core.api.meta import KubeObject
    from dpf_core.store.protocol import Client

# 2025-01-01T00:00:00Z: a ManualClock starts here so a twin's timestamps read like real ones.
DEFAULT_EPOCH = 1735689600.0

EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True, slots=True)
class Request:
    """types.NamespacedName: what a reconcile is asked to look at. `namespace` is None for cluster-scoped kinds.

    Ordering treats a missing namespace as "" so cluster-scoped and namespaced requests sort together
    (a plain dataclass order would fail comparing None with str).
    """

    namespace: str | None
    name: str

    @classmethod
    def of(cls, obj: KubeObject) -> Request:
        return cls(obj.metadata.namespace or None, obj.metadata.name or "")

    def _sort_key(self) -> tuple[str, str]:
        return (self.namespace or "", self.name)

    def __lt__(self, other: Request) -> bool:
        return self._sort_key() < other._sort_key()

    def __le__(self, other: Request) -> bool:
        return self._sort_key() <= other._sort_key()

    def __gt__(self, other: Request) -> bool:
        return self._sort_key() > other._sort_key()

    def __ge__(self, other: Request) -> bool:
        return self._sort_key() >= other._sort_key()

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True, slots=True)
class Result:
    """reconcile.Result. `requeue_after` > 0 wins over `requeue` (controller-runtime's order)."""

    requeue: bool = False
    requeue_after: float | None = None


DONE = Result()


class RequeueAfterError(Exception):
    """Report an error AND ask for a fixed delay instead of the rate-limited backoff.

    client-go semantics stay intact for plain exceptions (rate limited). DPF controllers sometimes want
    both: the failure counted, logged and returned in the outcome, yet the next pass at a known time
    (e.g. "poll again in 5s" while a DMS is unreachable). The queue does forget + add_after.
    """

    def __init__(self, requeue_after: float, cause: BaseException | str = "") -> None:
        self.requeue_after = float(requeue_after)
        self.cause = cause
        super().__init__(str(cause) if cause else f"requeue after {requeue_after}s")


class TerminalError(Exception):
    """reconcile.TerminalError: counted and logged as an error, but never retried (forget, no requeue)."""


class Clock(Protocol):
    def now(self) -> float:
        """Epoch seconds."""
        ...


class WallClock:
    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told to: tests and the SyncDriver. Time never runs backwards."""

    def __init__(self, start: float = DEFAULT_EPOCH) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"cannot move a clock backwards ({seconds}s)")
        self._now += seconds
        return self._now

    def set(self, t: float) -> float:
        if t < self._now:
            raise ValueError(f"cannot move a clock backwards (from {self._now} to {t})")
        self._now = float(t)
        return self._now


# Formatting runs on every condition write; most writes in a pass share one second, so the last
# second formatted is kept (one tuple, so a thread never sees a second paired with another's text).
_last: tuple[int, str] = (-(2**62), "")


def rfc3339(t: float) -> str:
    """metav1.Time on the wire: UTC, whole seconds (Go truncates the fraction), "Z" suffix."""
    global _last
    s = math.floor(t)
    last = _last
    if last[0] == s:
        return last[1]
    tm = time.gmtime(s)
    text = f"{tm.tm_year:04d}-{tm.tm_mon:02d}-{tm.tm_mday:02d}T{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}Z"
    _last = (s, text)
    return text


def parse_rfc3339(s: str) -> float:
    """Epoch seconds from an RFC 3339 timestamp (metav1.Time, or MicroTime with a fraction / an offset)."""
    if len(s) == 20 and s[19] == "Z" and s[4] == "-" and s[10] == "T":
        # The form we write ourselves: no datetime object needed.
        return float(
            calendar.timegm(
                (int(s[0:4]), int(s[5:7]), int(s[8:10]), int(s[11:13]), int(s[14:16]), int(s[17:19]), 0, 0, 0)
            )
        )
    try:
        dt = datetime.fromisoformat(s)
    except ValueError as e:
        raise ValueError(f"not an RFC 3339 timestamp: {s!r}") from e
    if dt.tzinfo is None:
        raise ValueError(f"RFC 3339 timestamp without a zone: {s!r}")
    return dt.timestamp()


@runtime_checkable
class Recorder(Protocol):
    """record.EventRecorder: best effort, never raises into a reconcile."""

    def event(self, obj: KubeObject, type: EventType, reason: str, message: str) -> None: ...


@dataclass
class Context:
    """Everything a reconcile may touch. One per controller, shared by all its passes (it holds no request state)."""

    client: Client
    clock: Clock
    recorder: Recorder
    ports: Any = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("dpf.runtime"))
    controller: str = ""

    def now(self) -> float:
        return self.clock.now()

    def timestamp(self) -> str:
        """Now as metav1.Time, for conditions' lastTransitionTime and friends."""
        return rfc3339(self.clock.now())


class Reconciler(Protocol):
    def reconcile(self, ctx: Context, req: Request) -> Result | None:
        """Bring the world one step closer to `req`'s spec. Raising is an error (rate-limited retry)."""
        ...
