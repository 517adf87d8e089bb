"""Bandwidth sharing on the fleet graph: concurrent transfers share every link on their path max-min fairly.

Fluid model, event driven. Rates are recomputed by progressive filling whenever the set of flows or a link
changes (a flow starts, ends or is cancelled; a link goes down, comes up or is degraded); between two such
events every rate is constant, so the next completion is known exactly. One timer is armed for the earliest
predicted completion; a recompute bumps `version`, which turns every armed timer stale (a stale timer fires
and does nothing), so no timer ever has to be cancelled. Starts in one instant are batched into one recompute.

Progressive filling with a lazy heap: a link's fair share (remaining capacity / unfrozen flows) only grows as
flows freeze elsewhere, so a popped share that is out of date is pushed back with its current value. Cost per
recompute is O(F * path length * log L) over integer link indices fixed at build time; a per-flow rate cap
(`max_rate`, e.g. the rshim push rate or a slow server) is a private bottleneck in a second heap.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from typing import Any, Literal

import simpy

from .fleet import Fleet, link_id


class TransferCancelled(Exception):
    pass


class Transfer(simpy.Event):
    """One flow of bytes; an event that succeeds (value: itself) once the last byte arrived."""

    def __init__(self, env: simpy.Environment, ident: int, src: str, dst: str, size: float,
                 links: tuple[str, ...], max_rate: float | None, tag: str) -> None:
        super().__init__(env)
        self.ident = ident
        self.src = src
        self.dst = dst
        self.size = float(size)
        self.links = links
        self.max_rate = max_rate
        self.tag = tag
        self.remaining = float(size)
        self.rate = 0.0
        self.started: float = env.now
        self.finished: float | None = None
        self.cancelled = False
        self._res: list[int] = []
        self._epoch = -1

    @property
    def transferred(self) -> float:
        return self.size - self.remaining

    def __repr__(self) -> str:
        return f"Transfer({self.ident} {self.src}->{self.dst} {self.transferred:.0f}/{self.size:.0f}B @{self.rate:.0f}B/s)"


@dataclass
class LinkState:
    bandwidth: float
    up: bool = True
    factor: float = 1.0
    bytes: float = 0.0  # carried so far (fluid: accrued at the aggregate rate)
    rate: float = 0.0  # aggregate bytes/s right now

    @property
    def capacity(self) -> float:
        return self.bandwidth * self.factor if self.up else 0.0


Recording = Literal["none", "trunks", "all"]


class Network:
    """Transfers over a Fleet's links.

    `record` chooses the links whose utilisation time series (time, link, bytes/s at each change) is kept:
    "trunks" (default) = links between switches and servers, the ones a fleet-wide report plots; "all" adds
    every host and DPU link (one sample per flow change per link: large for big fleets); "none".
    """

    def __init__(self, env: simpy.Environment, fleet: Fleet, *, record: Recording = "trunks") -> None:
        self.env = env
        self.fleet = fleet
        names = fleet.links()
        self.links: dict[str, LinkState] = {lid: LinkState(fleet.bandwidth(lid)) for lid in names}
        self._names = names
        self._index = {lid: i for i, lid in enumerate(names)}
        self._states = [self.links[lid] for lid in names]
        self._capacity = [s.capacity for s in self._states]
        leaf = {"host", "dpu"}
        self._recorded = [
            record == "all" or (record == "trunks" and not {fleet.kind(n) for n in lid.split("->", 1)} & leaf)
            for lid in names
        ]
        self.utilisation: list[tuple[float, str, float]] = []
        self.version = 0
        self.completed = 0
        self.cancelled = 0
        self.max_concurrent = 0
        self.recomputes = 0
        self._ids = itertools.count(1)
        self._active: dict[int, Transfer] = {}
        self._capped: dict[int, Transfer] = {}
        self._link_flows: dict[int, dict[int, Transfer]] = {}
        self._last = env.now
        self._dirty = False
        self._busy: dict[int, float] = {}  # link index -> aggregate rate, links carrying something

    # --- public API -----------------------------------------------------------------------------------
    def transfer(self, src: str, dst: str, nbytes: float, *, max_rate: float | None = None, tag: str = "") -> Transfer:
        """Start moving `nbytes` from `src` to `dst` now; yield the returned event to wait for the last byte."""
        if nbytes < 0:
            raise ValueError(f"cannot transfer {nbytes} bytes")
        if max_rate is not None and max_rate <= 0:
            raise ValueError(f"max_rate must be > 0, not {max_rate}")
        links = self.fleet.path(src, dst)
        t = Transfer(self.env, next(self._ids), src, dst, nbytes, links, max_rate, tag)
        if nbytes == 0 or (not links and max_rate is None):
            # Nothing to share: a local copy or an empty file is instantaneous in a fluid model.
            t.finished = self.env.now
            self.completed += 1
            t.succeed(t)
            return t
        t._res = [self._index[lid] for lid in links]
        self._active[t.ident] = t
        if max_rate is not None:
            self._capped[t.ident] = t
        for i in t._res:
            flows = self._link_flows.get(i)
            if flows is None:
                flows = self._link_flows[i] = {}
            flows[t.ident] = t
        self.max_concurrent = max(self.max_concurrent, len(self._active))
        self._mark_dirty()
        return t

    def cancel(self, t: Transfer) -> None:
        """Abort a transfer (its task was cancelled): its bandwidth goes back to the others at once."""
        if t.ident not in self._active:
            return
        self._advance()
        self._remove(t)
        t.cancelled = True
        t.finished = self.env.now
        self.cancelled += 1
        t.fail(TransferCancelled(f"transfer {t.src}->{t.dst} cancelled"))
        t.defused = True
        self._mark_dirty()

    def set_link(self, link: str | tuple[str, str], *, up: bool | None = None, factor: float | None = None,
                 both_directions: bool = True) -> None:
        """Fault injection: take a link down (its flows stall, keeping their progress), bring it up, or
        degrade it to `factor` of its bandwidth. A node pair addresses both directions unless told otherwise."""
        if factor is not None and factor < 0:
            raise ValueError(f"bandwidth factor must be >= 0, not {factor}")
        ids = self._resolve(link, both_directions)
        self._advance()
        for lid in ids:
            state = self.links[lid]
            if up is not None:
                state.up = up
            if factor is not None:
                state.factor = factor
            self._capacity[self._index[lid]] = state.capacity
        self._mark_dirty()

    def active(self) -> list[Transfer]:
        return list(self._active.values())

    def link_bytes(self) -> dict[str, float]:
        """Bytes each link has carried so far (links that carried nothing are left out)."""
        self._advance()
        return {lid: s.bytes for lid, s in sorted(self.links.items()) if s.bytes > 0}

    def path(self, src: str, dst: str) -> tuple[str, ...]:
        return self.fleet.path(src, dst)

    # --- the fluid model --------------------------------------------------------------------------------
    def _resolve(self, link: str | tuple[str, str], both: bool) -> list[str]:
        if isinstance(link, tuple):
            a, b = link
            ids = [link_id(a, b)] + ([link_id(b, a)] if both else [])
        else:
            ids = [link]
            if both and "->" in link:
                a, b = link.split("->", 1)
                ids.append(link_id(b, a))
        for lid in ids:
            if lid not in self.links:
                raise KeyError(f"no link {lid!r} in the fleet")
        return ids

    def _mark_dirty(self) -> None:
        if not self._dirty:
            self._dirty = True
            ev = self.env.timeout(0)
            ev.callbacks.append(self._on_dirty)

    def _on_dirty(self, _ev: Any) -> None:
        if self._dirty:
            self._reallocate()

    def _advance(self) -> None:
        """Account bytes moved since the last event at the rates in force since then."""
        now = self.env.now
        dt = now - self._last
        if dt <= 0:
            return
        self._last = now
        for t in self._active.values():
            if t.rate > 0:
                rem = t.remaining - t.rate * dt
                t.remaining = rem if rem > 0 else 0.0
        states = self._states
        for i, rate in self._busy.items():
            states[i].bytes += rate * dt

    def _remove(self, t: Transfer) -> None:
        del self._active[t.ident]
        self._capped.pop(t.ident, None)
        for i in t._res:
            flows = self._link_flows[i]
            del flows[t.ident]
            if not flows:
                del self._link_flows[i]

    def _reallocate(self) -> None:
        self._advance()
        self._dirty = False
        self.recomputes += 1
        epoch = self.recomputes
        now = self.env.now

        link_flows = self._link_flows
        cap = self._capacity[:]
        count = [0] * len(cap)
        total = [0.0] * len(cap)
        heap: list[tuple[float, int]] = []
        for i, flows in link_flows.items():
            n = len(flows)
            count[i] = n
            heap.append((cap[i] / n, i))
        heapq.heapify(heap)
        caps = [(t.max_rate or 0.0, t.ident, t) for t in self._capped.values()]
        heapq.heapify(caps)
        nxt = float("inf")

        while heap or caps:
            if caps and (not heap or caps[0][0] <= heap[0][0]):
                # A cap below every link's (possibly stale, so lower-bound) share is binding: freeze at it.
                rate, _, t = heapq.heappop(caps)
                if t._epoch == epoch:
                    continue
                t._epoch = epoch
                t.rate = rate
                if rate > 0 and t.remaining / rate < nxt:
                    nxt = t.remaining / rate
                for j in t._res:
                    total[j] += rate
                    c = cap[j] - rate
                    cap[j] = c if c > 0 else 0.0
                    count[j] -= 1
                continue
            share, i = heapq.heappop(heap)
            n = count[i]
            if n == 0:
                continue
            current = cap[i] / n
            if current > share * (1 + 1e-12) + 1e-12:
                heapq.heappush(heap, (current, i))
                continue
            for t in link_flows[i].values():
                if t._epoch == epoch:
                    continue
                t._epoch = epoch
                t.rate = current
                if current > 0 and t.remaining / current < nxt:
                    nxt = t.remaining / current
                for j in t._res:
                    total[j] += current
                    if j != i:
                        c = cap[j] - current
                        cap[j] = c if c > 0 else 0.0
                        count[j] -= 1
            count[i] = 0

        old = self._busy
        busy = {i: total[i] for i in link_flows if total[i] > 0}
        changed = [i for i in old.keys() | busy.keys() if old.get(i, 0.0) != busy.get(i, 0.0)]
        if changed:
            # Sorted by link name: set order follows hashing and a replay must be byte-identical.
            changed.sort()
            states, names, recorded = self._states, self._names, self._recorded
            for i in changed:
                rate = busy.get(i, 0.0)
                states[i].rate = rate
                if recorded[i]:
                    self.utilisation.append((now, names[i], rate))
        self._busy = busy

        self.version += 1
        if nxt < float("inf"):
            timer = self.env.timeout(nxt)
            version = self.version
            timer.callbacks.append(lambda _ev: self._on_timer(version))

    def _on_timer(self, version: int) -> None:
        if version != self.version:
            return  # a recompute since this timer was armed re-predicted every completion
        self._advance()
        done = [t for t in self._active.values() if t.remaining <= max(1e-9 * t.size, 1e-6)
                or (t.rate > 0 and t.remaining / t.rate <= 1e-9)]
        for t in done:
            self._remove(t)
            t.remaining = 0.0
            t.rate = 0.0
            t.finished = self.env.now
            self.completed += 1
            t.succeed(t)
        # Deferred to the end of this instant: the waiters resumed by these completions often start their
        # next transfer right now, and one recompute then covers both.
        self._mark_dirty()
