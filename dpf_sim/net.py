"""Bandwidth sharing on the fleet graph: concurrent transfers share every link on their path max-min fairly.

Fluid model, event driven. Rates are recomputed by progressive filling whenever the set of flows or a link
changes (a flow starts, ends or is cancelled; a link goes down, comes up or is degraded); between two such
events every rate is constant, so the next completion is known exactly. One timer is armed for the earliest
predicted completion; a recompute bumps `version`, which turns every armed timer stale (a stale timer fires
and does nothing), so no timer ever has to be cancelled. Starts in one instant are batched into one recompute.

Scale (10,000 concurrent BFB pushes): the work per change must not grow with the number of flows.
- A link that can never be a bottleneck is left out of the filling: every flow on it has a rate cap (the
  rshim rate) and the caps together fit in the link (a host's or DPU's own link, a ToR uplink of a rack
  that cannot saturate it). Its share is at least the average remaining cap of its flows, so some cap or
  other link always freezes those flows first; the allocation is exactly the same without it.
- Flows with the same remaining links and the same cap are interchangeable, so max-min gives them the same
  rate: they form one bundle. A bundle has a service clock `served` (bytes each member received since the
  bundle formed) and a heap of its members' finishing clocks; a member's remaining bytes are its finishing
  clock minus `served`. Progressive filling runs over bundles weighted by their sizes, so a start or finish
  costs O(bundles x path length + log flows), and all fleet-wide installs behind one server are one bundle.
- A link's byte counter is kept as (bytes of departed flows + a per-flow offset) + sum over bundles of
  members on the link x the bundle's clock, so it is exact without touching every link on every change.

Progressive filling with a lazy heap: a link's fair share (remaining capacity / unfrozen flows) only grows as
flows freeze elsewhere, so a popped share that is out of date is pushed back with its current value; a
per-flow rate cap (`max_rate`, e.g. the rshim push rate or a slow server) is a private bottleneck in a second
heap.
"""

from __future__ import annotations

import heapq
import itertools
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import simpy

from .fleet import Fleet, link_id


class TransferCancelled(Exception):
    pass


class _Bundle:
    """Flows with the same non-dominated links and the same cap: they always share one rate."""

    __slots__ = ("heap", "key", "links", "max_rate", "members", "prev_rate", "rate", "rec", "served")

    def __init__(self, key: tuple[tuple[int, ...], float | None]) -> None:
        self.key = key
        self.links, self.max_rate = key
        self.members: dict[int, Transfer] = {}
        self.rate = 0.0
        self.prev_rate = 0.0  # the rate before the last recompute
        self.served = 0.0
        self.heap: list[tuple[float, int, Transfer]] = []
        self.rec: dict[int, int] = {}  # recorded link -> members on it


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
        self.started: float = env.now
        self.finished: float | None = None
        self.cancelled = False
        self._res: list[int] = []
        self._bundle: _Bundle | None = None
        self._finish_at = 0.0  # the bundle clock value at which the last byte arrives
        self._joined_at = 0.0  # the bundle clock value when the flow joined its bundle
        self._final_remaining = float(size)

    @property
    def remaining(self) -> float:
        """Bytes still to move, as of the network's last accounting (every change and every completion)."""
        b = self._bundle
        if b is None:
            return self._final_remaining
        left = self._finish_at - b.served
        return left if left > 0 else 0.0

    @property
    def rate(self) -> float:
        b = self._bundle
        return b.rate if b is not None else 0.0

    @property
    def transferred(self) -> float:
        return self.size - self.remaining

    def __repr__(self) -> str:
        return f"Transfer({self.ident} {self.src}->{self.dst} {self.transferred:.0f}/{self.size:.0f}B @{self.rate:.0f}B/s)"


@dataclass(slots=True)
class LinkState:
    bandwidth: float
    up: bool = True
    factor: float = 1.0
    bytes: float = 0.0  # carried so far: current as of the last link_bytes() call
    rate: float = 0.0  # aggregate bytes/s: current for recorded links, and for all as of link_bytes()

    @property
    def capacity(self) -> float:
        return self.bandwidth * self.factor if self.up else 0.0


Recording = Literal["none", "trunks", "all"]


class Utilisation:
    """The recorded `(time, link, bytes/s)` changes, as two float arrays and the links' own name strings: a
    tuple of two floats per change cost ~110 bytes, here ~24 (a 100k fleet records ~5 changes per DPU).
    Reads like the list of tuples it replaces (iteration, len, indexing, ==)."""

    __slots__ = ("_links", "_rates", "_times")

    def __init__(self) -> None:
        self._times = array("d")
        self._links: list[str] = []
        self._rates = array("d")

    def append(self, change: tuple[float, str, float]) -> None:
        t, link, rate = change
        self._times.append(t)
        self._links.append(link)
        self._rates.append(rate)

    def __len__(self) -> int:
        return len(self._links)

    def __iter__(self) -> Iterator[tuple[float, str, float]]:
        return zip(self._times, self._links, self._rates, strict=True)

    def __getitem__(self, i: int) -> tuple[float, str, float]:
        return (self._times[i], self._links[i], self._rates[i])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Utilisation):
            return self._times == other._times and self._links == other._links and self._rates == other._rates
        if isinstance(other, list):
            return list(self) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Utilisation({list(self)!r})"


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
        self.utilisation = Utilisation()
        self.version = 0
        self.completed = 0
        self.cancelled = 0
        self.max_concurrent = 0
        self.recomputes = 0
        self._ids = itertools.count(1)
        self._seq = itertools.count()
        self._active: dict[int, Transfer] = {}
        n = len(names)
        self._link_flows: dict[int, dict[int, Transfer]] = {}
        # Dominance bookkeeping: sum of caps and number of uncapped flows per link.
        self._cap_sum = [0.0] * n
        self._uncapped = [0] * n
        self._dominated = [False] * n
        self._touched: set[int] = set()
        self._bundles: dict[tuple[tuple[int, ...], float | None], _Bundle] = {}
        # Per link: members of each bundle on it, and the byte offset (see the module docstring).
        self._on_link: dict[int, dict[_Bundle, int]] = {}
        self._offset = [0.0] * n
        self._recorded_ids = [i for i, r in enumerate(self._recorded) if r]
        self._recorded_rate: dict[int, float] = {}
        # Recorded links whose bundles' member counts changed since the last recompute: with the links of the
        # bundles whose rate changed, the only links whose aggregate rate can have changed.
        self._rec_dirty: set[int] = set()
        self._last = env.now
        self._dirty = False

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
            t._final_remaining = 0.0
            self.completed += 1
            t.succeed(t)
            return t
        self._advance()
        t._res = [self._index[lid] for lid in links]
        self._active[t.ident] = t
        for i in t._res:
            flows = self._link_flows.get(i)
            if flows is None:
                flows = self._link_flows[i] = {}
            flows[t.ident] = t
            if max_rate is None:
                self._uncapped[i] += 1
            else:
                self._cap_sum[i] += max_rate
            self._touched.add(i)
        self._join(t, 0.0)
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
            i = self._index[lid]
            self._capacity[i] = state.capacity
            self._touched.add(i)
        self._mark_dirty()

    def active(self) -> list[Transfer]:
        return list(self._active.values())

    def link_bytes(self) -> dict[str, float]:
        """Bytes each link has carried so far (links that carried nothing are left out)."""
        self._advance()
        for i, state in enumerate(self._states):
            on = self._on_link.get(i)
            total = self._offset[i]
            rate = 0.0
            if on:
                for b, n in on.items():
                    total += n * b.served
                    rate += n * b.rate
            state.bytes = total
            state.rate = rate
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
        """Move every bundle's clock on by what its members received since the last event."""
        now = self.env.now
        dt = now - self._last
        if dt <= 0:
            return
        self._last = now
        for b in self._bundles.values():
            if b.rate > 0:
                b.served += b.rate * dt

    def _key(self, t: Transfer) -> tuple[tuple[int, ...], float | None]:
        dominated = self._dominated
        return (tuple(i for i in t._res if not dominated[i]), t.max_rate)

    def _join(self, t: Transfer, already: float) -> None:
        """Put `t` (with `already` bytes moved) in the bundle its links and cap say."""
        key = self._key(t)
        b = self._bundles.get(key)
        if b is None:
            b = self._bundles[key] = _Bundle(key)
        b.members[t.ident] = t
        t._bundle = b
        t._joined_at = b.served
        t._finish_at = b.served + (t.size - already)
        heapq.heappush(b.heap, (t._finish_at, next(self._seq), t))
        shift = already - b.served
        offset, on_link, recorded = self._offset, self._on_link, self._recorded
        for i in t._res:
            offset[i] += shift
            on = on_link.get(i)
            if on is None:
                on = on_link[i] = {}
            on[b] = on.get(b, 0) + 1
            if recorded[i]:
                b.rec[i] = b.rec.get(i, 0) + 1
                self._rec_dirty.add(i)

    def _leave(self, t: Transfer) -> float:
        """Take `t` out of its bundle; returns the bytes it moved."""
        b = t._bundle
        assert b is not None
        left = t._finish_at - b.served
        t._final_remaining = left if left > 0 else 0.0
        moved = t.size - t._final_remaining
        del b.members[t.ident]
        t._bundle = None
        # The flow's bytes so far become part of the links' fixed offsets.
        served, offset, on_link, recorded = b.served, self._offset, self._on_link, self._recorded
        for i in t._res:
            offset[i] += served
            if recorded[i]:
                m = b.rec[i] - 1
                if m:
                    b.rec[i] = m
                else:
                    del b.rec[i]
                self._rec_dirty.add(i)
            on = on_link[i]
            n = on[b] - 1
            if n:
                on[b] = n
            else:
                del on[b]
                if not on:
                    del on_link[i]
        if not b.members:
            del self._bundles[b.key]
        return moved

    def _remove(self, t: Transfer) -> None:
        del self._active[t.ident]
        self._leave(t)
        for i in t._res:
            flows = self._link_flows[i]
            del flows[t.ident]
            if not flows:
                del self._link_flows[i]
            if t.max_rate is None:
                self._uncapped[i] -= 1
            else:
                self._cap_sum[i] -= t.max_rate
                if i not in self._link_flows:
                    self._cap_sum[i] = 0.0  # no drift from adding and subtracting floats
            self._touched.add(i)

    def _redominate(self) -> None:
        """Re-decide dominance of the links whose flows or capacity changed; re-bundle flows on flips."""
        moved: dict[int, Transfer] = {}
        for i in self._touched:
            flows = self._link_flows.get(i)
            cap = self._capacity[i]
            dominated = bool(flows) and self._uncapped[i] == 0 and cap > 0 and cap >= self._cap_sum[i] * (1 + 1e-9)
            if dominated != self._dominated[i]:
                self._dominated[i] = dominated
                if flows:
                    moved.update(flows)
        self._touched.clear()
        for ident in sorted(moved):
            t = moved[ident]
            b = t._bundle
            if b is None or self._key(t) == b.key:
                continue
            self._join(t, self._leave(t))

    def _reallocate(self) -> None:
        self._advance()
        self._dirty = False
        self.recomputes += 1
        now = self.env.now
        if self._touched:
            self._redominate()

        bundles = self._bundles
        count: dict[int, int] = {}
        link_bundles: dict[int, list[_Bundle]] = {}
        caps: list[tuple[float, int, _Bundle]] = []
        for b in bundles.values():
            n = len(b.members)
            for i in b.links:
                count[i] = count.get(i, 0) + n
                lb = link_bundles.get(i)
                if lb is None:
                    link_bundles[i] = [b]
                else:
                    lb.append(b)
            if b.max_rate is not None:
                caps.append((b.max_rate, id(b), b))
            b.prev_rate = b.rate
            b.rate = -1.0  # not frozen yet
        # Remaining capacity of the links in the filling only: a copy of every link's would cost O(fleet) per change.
        capacity = self._capacity
        cap = {i: capacity[i] for i in count}
        heap = [(cap[i] / n, i) for i, n in count.items()]
        heapq.heapify(heap)
        heapq.heapify(caps)
        unfrozen = len(bundles)

        while unfrozen and (heap or caps):
            if caps and (not heap or caps[0][0] <= heap[0][0]):
                # A cap below every link's (possibly stale, so lower-bound) share is binding: freeze at it.
                rate, _, b = heapq.heappop(caps)
                if b.rate >= 0:
                    continue
                b.rate = rate
                unfrozen -= 1
                n = len(b.members)
                for j in b.links:
                    c = cap[j] - rate * n
                    cap[j] = c if c > 0 else 0.0
                    count[j] -= n
                continue
            share, i = heapq.heappop(heap)
            n_i = count[i]
            if n_i == 0:
                continue
            current = cap[i] / n_i
            if current > share * (1 + 1e-12) + 1e-12:
                heapq.heappush(heap, (current, i))
                continue
            for b in link_bundles[i]:
                if b.rate >= 0:
                    continue
                b.rate = current
                unfrozen -= 1
                n = len(b.members)
                for j in b.links:
                    if j != i:
                        c = cap[j] - current * n
                        cap[j] = c if c > 0 else 0.0
                        count[j] -= n
            count[i] = 0
        for b in bundles.values():
            if b.rate < 0:
                b.rate = 0.0  # no constraint at all cannot happen with links or caps; stay safe

        self._record(now)
        self.version += 1
        nxt = self._next_completion()
        if nxt < float("inf"):
            timer = self.env.timeout(nxt)
            version = self.version
            timer.callbacks.append(lambda _ev: self._on_timer(version))

    def _record(self, now: float) -> None:
        """Append the recorded links whose aggregate rate changed, in link-name order (a replay must be
        byte-identical). Only links whose bundles changed members or rate can have changed: scanning every
        recorded link instead cost O(racks) per flow start or end, O(fleet^2) over a rollout."""
        dirty = self._rec_dirty
        for b in self._bundles.values():
            if b.rate != b.prev_rate and b.rec:
                dirty.update(b.rec)
        if not dirty:
            return
        old = self._recorded_rate
        on_link = self._on_link
        states, names = self._states, self._names
        for i in sorted(dirty):  # link ids are indexes into the sorted link names
            on = on_link.get(i)
            rate = sum(n * b.rate for b, n in on.items()) if on else 0.0
            if rate <= 0:
                rate = 0.0
            if old.get(i, 0.0) != rate:
                states[i].rate = rate
                self.utilisation.append((now, names[i], rate))
                if rate > 0:
                    old[i] = rate
                else:
                    del old[i]
        dirty.clear()

    @staticmethod
    def _top(b: _Bundle) -> tuple[float, int, Transfer] | None:
        heap = b.heap
        while heap:
            entry = heap[0]
            t = entry[2]
            if t._bundle is b and t._finish_at == entry[0]:
                return entry
            heapq.heappop(heap)  # a member that left (finished, cancelled or re-bundled)
        return None

    def _next_completion(self) -> float:
        nxt = float("inf")
        for b in self._bundles.values():
            if b.rate <= 0:
                continue
            top = self._top(b)
            if top is not None:
                dt = (top[0] - b.served) / b.rate
                if dt < nxt:
                    nxt = dt if dt > 0 else 0.0
        return nxt

    def _on_timer(self, version: int) -> None:
        if version != self.version:
            return  # a recompute since this timer was armed re-predicted every completion
        self._advance()
        done: list[Transfer] = []
        for b in list(self._bundles.values()):
            rate = b.rate
            while True:
                top = self._top(b)
                if top is None:
                    break
                t = top[2]
                left = top[0] - b.served
                if left <= max(1e-9 * t.size, 1e-6) or (rate > 0 and left / rate <= 1e-9):
                    heapq.heappop(b.heap)
                    done.append(t)
                    self._remove(t)
                else:
                    break
        # Start order, as the flows were kept before bundles existed: waiters resume in a stable order.
        done.sort(key=lambda x: x.ident)
        for t in done:
            t._final_remaining = 0.0
            t.finished = self.env.now
            self.completed += 1
            t.succeed(t)
        # Deferred to the end of this instant: the waiters resumed by these completions often start their
        # next transfer right now, and one recompute then covers both.
        self._mark_dirty()
