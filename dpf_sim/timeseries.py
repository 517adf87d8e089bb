"""Time series of a twin run, for the HTML report: DPUs by phase, a Gantt of sampled DPUs, per-phase
durations, controller queue depths and reconcile counts, and link bandwidth use.

The recorder only reads. It listens to store events (`Twin.on_event`) for DPU phases and samples the
controllers' work queues from a SimPy process. Reading never changes what the twin does, so a run with the
recorder attached has the same event log hash as one without.

Memory is bounded whatever the run length: the sampling period starts short and doubles (dropping every
other sample) whenever `max_points` samples are held, so a 2-minute run and a 2-day run both end with
between max_points/2 and max_points points. Counters are cumulative, so rates stay exact across the thinning.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dpf_core.api.provisioning import DPU, DPUPhase
from dpf_core.store.protocol import WatchEvent

if TYPE_CHECKING:
    from .twin import Twin

PHASE_ORDER: tuple[str, ...] = tuple(p.value for p in DPUPhase)
QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)


def phase_rank(phase: str) -> tuple[int, str]:
    return (PHASE_ORDER.index(phase) if phase in PHASE_ORDER else len(PHASE_ORDER), phase)


def quantile(sorted_xs: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), on an already sorted list."""
    n = len(sorted_xs)
    if n == 1:
        return sorted_xs[0]
    pos = q * (n - 1)
    lo = math.floor(pos)
    hi = min(n - 1, lo + 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


@dataclass
class _Sample:
    t: float
    phases: dict[str, int]
    depth: dict[str, int]
    reconciles: dict[str, int]


@dataclass
class GanttRow:
    dpu: str
    spans: list[list[Any]] = field(default_factory=list)  # [phase, start, end or None while open]


class SeriesRecorder:
    """Attach to a Twin before it runs (`attach()`), read `result()` after."""

    def __init__(self, twin: Twin, *, first_period: float = 5.0, max_points: int = 600, gantt_dpus: int = 40) -> None:
        if max_points < 4:
            raise ValueError("max_points must be >= 4")
        self.twin = twin
        self.env = twin.env
        self.period = float(first_period)
        self.max_points = max_points
        self.samples: list[_Sample] = []
        self.by_phase: Counter[str] = Counter()
        self._current: dict[str, tuple[str, float]] = {}
        self.durations: dict[str, list[float]] = {}
        self.gantt: dict[str, GanttRow] = {}
        self._gantt_wanted = self._pick_gantt(gantt_dpus)
        self._attached = False

    def _pick_gantt(self, n: int) -> set[str]:
        """Evenly spaced DPUs across the fleet (every rack shows up), the same ones for every seed."""
        fleet = getattr(self.twin, "fleet", None)
        names = list(fleet.dpus) if fleet is not None else []
        if n <= 0 or not names:
            return set()
        if len(names) <= n:
            return set(names)
        step = len(names) / n
        return {names[int(i * step)] for i in range(n)}

    # --- hooks -------------------------------------------------------------------------------------------
    def attach(self) -> None:
        if self._attached:
            return
        self._attached = True
        self.twin.on_event(self.on_event)
        self.env.process(self._sampler())

    def on_event(self, store: str, ev: WatchEvent) -> None:
        obj = ev.object
        if store != "host" or type(obj) is not DPU:
            return
        now = self.twin.now
        name = f"{obj.metadata.namespace or ''}/{obj.name}"
        prev = self._current.get(name)
        if ev.type == "DELETED":
            if prev is not None:
                self._close(obj.name, prev, now)
                self.by_phase[prev[0]] -= 1
                del self._current[name]
            return
        phase = str(obj.status.phase)
        if prev is not None and prev[0] == phase:
            return
        if prev is not None:
            self._close(obj.name, prev, now)
            self.by_phase[prev[0]] -= 1
        self.by_phase[phase] += 1
        self._current[name] = (phase, now)
        if obj.name in self._gantt_wanted:
            self.gantt.setdefault(obj.name, GanttRow(obj.name)).spans.append([phase, now, None])

    def _close(self, dpu: str, prev: tuple[str, float], now: float) -> None:
        self.durations.setdefault(prev[0], []).append(now - prev[1])
        row = self.gantt.get(dpu)
        if row is not None and row.spans and row.spans[-1][2] is None:
            row.spans[-1][2] = now

    def _sampler(self) -> Generator[Any, Any, None]:
        while True:
            self.sample()
            # Nothing else scheduled: the world is quiet for good, and a timer of ours would only stretch
            # the run's end time.
            if self.env.peek() == math.inf:
                return
            yield self.env.timeout(self.period)

    def sample(self) -> None:
        depth, reconciles = self._controller_counts()
        now = self.twin.now
        snap = _Sample(now, {p: n for p, n in self.by_phase.items() if n > 0}, depth, reconciles)
        if self.samples and self.samples[-1].t == now:
            self.samples[-1] = snap
        else:
            self.samples.append(snap)
        if len(self.samples) >= self.max_points:
            # Keep the first and the latest sample so the series always spans the whole run.
            last = self.samples[-1]
            self.samples = self.samples[::2]
            if self.samples[-1] is not last:
                self.samples.append(last)
            self.period *= 2

    def _controller_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """Queue depth and reconciles so far, summed by controller name: each DPU cluster (and each DPU's node
        agents) runs its own copy of the same controllers. Depth is ready keys plus keys parked for a
        requeue_after or a backoff: in the twin a worker pops a ready key within microseconds of wall time, so
        ready-only depth is almost always zero. The driver keeps these sums as queues and reconciles change,
        so a sample costs one read per name, not one per controller (~3 per DPU with services)."""
        groups = self.twin.driver.controller_totals()
        return ({name: t.queued for name, t in groups.items()},
                {name: t.reconciles for name, t in groups.items()})

    # --- the result ------------------------------------------------------------------------------------
    def result(self) -> dict[str, Any]:
        """Plain data (JSON-able): what report_html draws."""
        self.sample()
        now = self.twin.now
        times = [s.t for s in self.samples]
        phases = sorted({p for s in self.samples for p in s.phases}, key=phase_rank)
        controllers = sorted({c for s in self.samples for c in s.depth})
        gantt = []
        for name in sorted(self.gantt):
            spans = [[p, round(a, 3), round(now if b is None else b, 3)] for p, a, b in self.gantt[name].spans]
            gantt.append({"dpu": name, "spans": spans})
        return {
            "t": [round(t, 3) for t in times],
            "period": self.period,
            "phases": {p: [s.phases.get(p, 0) for s in self.samples] for p in phases},
            "queue_depth": {c: [s.depth.get(c, 0) for s in self.samples] for c in controllers},
            "reconciles": {c: [s.reconciles.get(c, 0) for s in self.samples] for c in controllers},
            "gantt": gantt,
            "phase_durations": self._duration_summary(),
            "links": self._links(times),
        }

    def _duration_summary(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for phase in sorted(self.durations, key=phase_rank):
            xs = sorted(self.durations[phase])
            if not xs:
                continue
            out[phase] = {
                "count": len(xs),
                "q": [round(quantile(xs, q), 3) for q in QUANTILES],
                "mean": round(sum(xs) / len(xs), 3),
                "hist": _histogram(xs),
            }
        return out

    def _links(self, times: list[float]) -> dict[str, Any]:
        """Mean bytes/s of each recorded trunk link over each sample interval (the value at times[k] covers
        (times[k-1], times[k]]), plus capacities. BFB server uplinks always, then the busiest others."""
        net = getattr(self.twin, "net", None)
        if net is None or len(times) < 2:
            return {}
        steps: dict[str, list[tuple[float, float]]] = {}
        for t, link, rate in net.utilisation:
            steps.setdefault(link, []).append((t, rate))
        servers = set(net.fleet.bfb_servers)
        totals: dict[str, float] = {}
        series: dict[str, list[float]] = {}
        for link, changes in steps.items():
            cum = _integrate(changes, times)
            totals[link] = cum[-1]
            series[link] = [0.0] + [
                (cum[k] - cum[k - 1]) / (times[k] - times[k - 1]) if times[k] > times[k - 1] else 0.0
                for k in range(1, len(times))
            ]
        server_links = sorted(lk for lk in series if lk.split("->", 1)[0] in servers)
        others = sorted((lk for lk in series if lk not in server_links), key=lambda lk: (-totals[lk], lk))[:4]
        chosen = [*server_links, *others]
        return {
            lk: {"capacity": net.links[lk].bandwidth, "bytes": round(totals[lk], 1),
                 "rate": [round(x, 1) for x in series[lk]]}
            for lk in chosen if totals[lk] > 0
        }


def _integrate(changes: list[tuple[float, float]], times: list[float]) -> list[float]:
    """Bytes carried by a step function of rate (value from each change time on) up to each of `times`."""
    out: list[float] = []
    acc = 0.0
    rate = 0.0
    last = 0.0
    i = 0
    for t in times:
        while i < len(changes) and changes[i][0] <= t:
            ct, cr = changes[i]
            acc += rate * (ct - last)
            last, rate = ct, cr
            i += 1
        out.append(acc + rate * (t - last))
    return out


def _histogram(xs: list[float], bins: int = 20) -> dict[str, Any]:
    lo, hi = xs[0], xs[-1]
    if hi <= lo:
        return {"lo": round(lo, 3), "hi": round(hi, 3), "counts": [len(xs)]}
    width = (hi - lo) / bins
    counts = [0] * bins
    for x in xs:
        counts[min(bins - 1, int((x - lo) / width))] += 1
    return {"lo": round(lo, 3), "hi": round(hi, 3), "counts": counts}
