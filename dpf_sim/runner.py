"""The scenario runner: builds the Twin a scenario describes, plays its timeline on simulated time, keeps
its expectations up to date from store events, and writes the report.

The run ends at `until`, or as soon as the last timeline step ran and every await (and leftover check) is
decided, or when an invariant breaks, whichever comes first. Timeline steps run as one SimPy process, in
time order (ties in file order). A step that the API refuses is not a crash: it becomes a failed
expectation `step N failed: <why>` (a refused manifest's `<file>:<line>: <why>`), the way `kubectl apply`
reports and carries on.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
import traceback
from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, TextIO

from pydantic import ValidationError

from dpf_core.api.meta import KubeObject
from dpf_core.api.provisioning import DPU, DPUPhase
from dpf_core.errors import ApiError
from dpf_core.store.protocol import WatchEvent

from .engine import CostModel, release_free_memory
from .expect import HISTORY_LINES, Check, Outcome, make_await, make_invariant, make_trace
from .scenario import FieldPath, LoadedScenario, ScenarioError, Step, fleet_config, format_path, to_wire
from .timeseries import SeriesRecorder
from .twin import Twin, TwinConfig, resolve_kind

PROGRESS_INTERVAL = 0.2  # seconds of wall time between redraws


# --- DPU phases -----------------------------------------------------------------------------------------------


class PhaseTracker:
    """DPUs by phase right now, and how long DPUs stayed in each phase, from the DPU events alone."""

    def __init__(self) -> None:
        self.by_phase: Counter[str] = Counter()
        self._current: dict[tuple[str, str], tuple[str, float]] = {}
        self._created: dict[tuple[str, str], float] = {}
        self.durations: dict[str, list[float]] = {}
        self.time_to_ready: list[float] = []

    def on_event(self, ev: WatchEvent, now: float) -> None:
        obj = ev.object
        assert isinstance(obj, DPU)
        key = (obj.metadata.namespace or "", obj.name)
        phase = str(obj.status.phase)
        prev = self._current.get(key)
        if ev.type == "DELETED":
            if prev is not None:
                self._close(prev, now)
                self.by_phase[prev[0]] -= 1
                del self._current[key]
            self._created.pop(key, None)
            return
        if prev is None:
            self._current[key] = (phase, now)
            self._created[key] = now
            self.by_phase[phase] += 1
        elif prev[0] != phase:
            self._close(prev, now)
            self.by_phase[prev[0]] -= 1
            self.by_phase[phase] += 1
            self._current[key] = (phase, now)
        if phase == DPUPhase.READY and key in self._created:
            self.time_to_ready.append(now - self._created.pop(key))

    def _close(self, prev: tuple[str, float], now: float) -> None:
        self.durations.setdefault(prev[0], []).append(now - prev[1])

    def snapshot(self) -> dict[str, int]:
        """Phases in DPF's healthy order first, then anything else; zero counts left out."""
        order = {p.value: i for i, p in enumerate(DPUPhase)}
        return {p: n for p, n in sorted(self.by_phase.items(), key=lambda x: (order.get(x[0], 99), x[0])) if n > 0}


def percentiles(values: list[float]) -> dict[str, float | int]:
    """count, p50, p90, p99 (nearest rank) and max, in seconds."""
    xs = sorted(values)
    n = len(xs)
    if n == 0:
        return {"count": 0}

    def rank(q: float) -> float:
        return round(xs[min(n - 1, max(0, math.ceil(q * n) - 1))], 3)

    return {"count": n, "p50": rank(0.5), "p90": rank(0.9), "p99": rank(0.99), "max": round(xs[-1], 3)}


# --- progress -------------------------------------------------------------------------------------------------


def fmt_sim(t: float) -> str:
    s = int(t)
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """One redrawn status line on a terminal: simulated time, a bar towards the expected end, DPUs by phase."""

    def __init__(self, stream: TextIO, end_hint: float | None) -> None:
        self.stream = stream
        self.end_hint = end_hint
        self._last = 0.0
        self._drawn = False

    def due(self) -> bool:
        wall = time.monotonic()
        if wall - self._last < PROGRESS_INTERVAL:
            return False
        self._last = wall
        return True

    def draw(self, now: float, phases: dict[str, int], events: int) -> None:
        width = shutil.get_terminal_size((100, 20)).columns
        bar = ""
        if self.end_hint:
            frac = min(1.0, now / self.end_hint)
            filled = int(frac * 20)
            bar = f" [{'#' * filled}{'.' * (20 - filled)}] {frac * 100:3.0f}%"
        dpus = " ".join(f"{p}:{n}" for p, n in phases.items()) or "no DPUs"
        line = f"t={fmt_sim(now)}{bar} | {dpus} | {events} events"
        self.stream.write("\r" + line[: width - 1].ljust(width - 1))
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()


# --- the run --------------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    report: dict[str, Any]
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outcomes)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.passed]


# Store events between two malloc trims (engine.release_free_memory): ~41 in a 100k-DPU run, none below ~1k DPUs.
TRIM_EVERY_MASK = (1 << 16) - 1

# No watch resumes from a resourceVersion in a run (see TwinConfig.watch_history); serve restores the default.
# Each kept event pins an old snapshot: 1,024 per store was ~1.8 KB per DPU at 100k DPUs (101 stores).
RUN_WATCH_HISTORY = 16


def build_config(loaded: LoadedScenario, seed: int | None = None) -> TwinConfig:
    sc = loaded.scenario
    cost = CostModel()
    if sc.cost is not None:
        cost = CostModel(reconcile=sc.cost.reconcile, per_write=sc.cost.per_write, per_controller=dict(sc.cost.per_controller))
    return TwinConfig(
        seed=sc.seed if seed is None else seed,
        epoch=sc.epoch,
        cost=cost,
        keep_log=sc.keep_log,
        fleet=fleet_config(sc.fleet),
        models=dict(sc.models),
        record_events=sc.record_events,
        attachments=tuple(sc.attachments),
        watch_history=RUN_WATCH_HISTORY,
    )


class Runner:
    def __init__(
        self,
        loaded: LoadedScenario,
        *,
        seed: int | None = None,
        until: float | None = None,
        progress: bool | None = None,
        stream: TextIO | None = None,
        series: bool = True,
    ) -> None:
        self.loaded = loaded
        self.scenario = loaded.scenario
        self.config = build_config(loaded, seed)
        self.until = until if until is not None else self.scenario.until
        self.stream = stream if stream is not None else sys.stderr
        self.show_progress = self.stream.isatty() if progress is None else progress
        try:
            self.twin = Twin(self.config)
        except ValidationError as e:
            # The composition validates model parameters (and the fleet, checked at load time already).
            where = loaded.where(("models",) if self.scenario.models else ("fleet",))
            raise ScenarioError([
                f"{where}: the twin rejected the scenario: {e.title}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                for err in e.errors(include_url=False)
            ]) from None
        except (ValueError, TypeError, KeyError) as e:
            where = loaded.where(("models",) if self.scenario.models else ("fleet",))
            raise ScenarioError([f"{where}: the twin rejected the scenario: {e}"]) from None
        self.env = self.twin.env
        self.phases = PhaseTracker()
        self.checks: list[Check] = []
        self._after: dict[int, list[Check]] = {}
        self._routes: dict[tuple[str | None, type[KubeObject] | None], list[Check]] = {}
        # The four routes an event of (store, kind) takes, merged once per pair (cleared when a check activates).
        self._merged: dict[tuple[str, type[KubeObject]], tuple[Check, ...]] = {}
        self._stop = self.env.event()
        self.stopped_by = ""
        self.steps_done = not self.scenario.timeline
        self.step_failures: list[Outcome] = []
        self.crash: Outcome | None = None
        self.writes_by_store: Counter[str] = Counter()
        self.events = 0
        self._progress = Progress(self.stream, self._end_hint()) if self.show_progress else None
        # When each expectation was decided (simulated seconds), for the makespan and sweeps.
        self.decided_at: dict[str, float] = {}
        self.series = SeriesRecorder(self.twin) if series else None
        self._build_checks()

    # --- setup ---------------------------------------------------------------------------------------------
    def _build_checks(self) -> None:
        for exp in self.scenario.expect:
            if exp.await_ is not None:
                check: Check = make_await(exp.await_)
            elif exp.trace is not None:
                check = make_trace(exp.trace)
            else:
                assert exp.invariant is not None
                check = make_invariant(exp.invariant)
            check.bind(self.twin)
            check.on_decided = self._decided
            self.checks.append(check)
            if check.after is None:
                continue
            self._after.setdefault(self.loaded.step_index(check.after), []).append(check)
        # Issue #9's invariants hold in every scenario, declared or not (no object lost, finalizers removed,
        # flashes match the spec, rollout budget, no overlapping IPAM).
        from .chaos import always_on_specs

        for spec in always_on_specs(self.scenario):
            check = make_invariant(spec)
            check.bind(self.twin)
            check.on_decided = self._decided
            self.checks.append(check)

    def _end_hint(self) -> float | None:
        if self.until is not None:
            return self.until
        ends = [s.at for s in self.scenario.timeline]
        for exp in self.scenario.expect:
            spec = exp.spec
            start = self.scenario.timeline[self.loaded.step_index(spec.after)].at if spec.after is not None else 0.0
            if spec.within is not None:
                ends.append(start + spec.within)
            elif exp.trace is not None:
                ends.append(start + exp.trace.at)
        return max(ends) if ends else None

    def _activate(self, check: Check, deleted: list[tuple[str, KubeObject]]) -> None:
        kinds: tuple[type[KubeObject] | None, ...] = check.kinds if check.kinds is not None else (None,)
        for cls in kinds:
            self._routes.setdefault((check.store, cls), []).append(check)
        self._merged.clear()
        check.activate(deleted)
        if check.within is not None and not check.decided:
            self.env.process(self._deadline(check, check.within))

    def _deadline(self, check: Check, within: float) -> Generator[Any, Any, None]:
        yield self.env.timeout(within)
        if not check.decided:
            check.on_deadline()

    # --- events --------------------------------------------------------------------------------------------
    def _on_event(self, store: str, ev: WatchEvent) -> None:
        self.events += 1
        self.writes_by_store[store] += 1
        obj = ev.object
        cls = type(obj)
        if cls is DPU and store == "host":
            self.phases.on_event(ev, float(self.env.now))
        merged = self._merged.get((store, cls))
        if merged is None:
            routes = self._routes
            merged = self._merged[(store, cls)] = tuple(
                c for key in ((store, cls), (None, cls), (store, None), (None, None)) for c in routes.get(key, ()))
        for check in merged:
            if check.passed is None:  # not decided
                check.on_event(store, ev)
        if self._progress is not None and self.events & 63 == 0 and self._progress.due():
            self._progress.draw(self.twin.now, self.phases.snapshot(), self.twin.log.count)
        if self.events & TRIM_EVERY_MASK == 0:
            release_free_memory()

    def _decided(self, check: Check) -> None:
        self.decided_at.setdefault(check.name, self.twin.now)
        if check.passed is False and check.stops_run:
            self._end(f"invariant {check.name} violated")
        else:
            self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self.steps_done and all(c.decided for c in self.checks if c.blocking):
            self._end("all expectations decided")

    def _end(self, why: str) -> None:
        if not self._stop.triggered:
            self.stopped_by = why
            self._stop.succeed()

    # --- timeline ------------------------------------------------------------------------------------------
    def _timeline(self) -> Generator[Any, Any, None]:
        steps = self.scenario.timeline
        for i in sorted(range(len(steps)), key=lambda k: (steps[k].at, k)):
            delay = steps[i].at - self.env.now
            if delay > 0:
                yield self.env.timeout(delay)
            deleted = self._do_step(i, steps[i])
            for check in self._after.get(i, []):
                self._activate(check, deleted)
        self.steps_done = True
        self._maybe_finish()

    def _do_step(self, i: int, step: Step) -> list[tuple[str, KubeObject]]:
        label = self.loaded.step_label(i)
        self.twin.log.write(self.env.now, f"scenario {label}: {self._describe(i, step)}")
        errors: list[str] = []
        deleted: list[tuple[str, KubeObject]] = []
        try:
            if step.apply is not None:
                self._store(step.store)  # an unknown store is one failure, not a bare KeyError per document
                for k, doc in enumerate(self.loaded.manifests.get(i, [])):
                    try:
                        self.twin.apply([doc], store=step.store)
                    except ApiError as e:
                        # The document's own file:line, as an invalid scenario's problems carry them.
                        origin = self.loaded.manifest_origin(i, k)
                        errors.append(f"{origin}: {e.message}" if origin else e.message)
            elif step.patch is not None:
                p = step.patch
                self._store(p.store).patch(resolve_kind(p.kind), p.name, p.namespace, p.patch, p.type, p.subresource)
            elif step.delete is not None:
                d = step.delete
                cls = resolve_kind(d.kind)
                store = self._store(d.store)
                before = store.try_get(cls, d.name, d.namespace)
                store.delete(cls, d.name, d.namespace)
                if before is not None:
                    deleted.append((d.store, before))
            elif step.power_cycle is not None:
                self.twin.power_cycle(step.power_cycle.host)
            elif step.fault is not None:
                inject = getattr(self.twin, "inject", None)
                if inject is None:
                    raise NotImplementedError("fault injection not available")
                inject(step.fault)
        except ApiError as e:
            errors.append(self._at_step(i, step, e.message))
        except (NotImplementedError, LookupError, ValueError, TypeError) as e:
            # str(KeyError("x")) is the repr "'x'"; its argument is the message.
            text = str(e.args[0]) if isinstance(e, KeyError) and len(e.args) == 1 else str(e)
            errors.append(self._at_step(i, step, text or type(e).__name__))
        if errors:
            self.step_failures.append(Outcome(label, False, f"{label} failed: " + "; ".join(errors)))
        return deleted

    def _at_step(self, i: int, step: Step, message: str) -> str:
        """`<file>:<line>: timeline[i].<field>: message`, as a load-time problem reads (a refused apply names
        its document's line instead, so only an unknown store reaches here from an apply)."""
        key = "store" if step.apply is not None else to_wire(step.action)
        if ("timeline", i, key) not in self.loaded.lines and ("timeline", i, step.action) in self.loaded.lines:
            key = step.action  # the file's own spelling (power_cycle)
        path: FieldPath = ("timeline", i, key)
        return f"{self.loaded.where(path)}: {format_path(path)}: {message}"

    def _store(self, name: str) -> Any:
        stores = self.twin.stores()
        if name not in stores:
            raise LookupError(f'no store "{name}" (have: {", ".join(sorted(stores))})')
        return stores[name]

    def _describe(self, i: int, step: Step) -> str:
        if step.apply is not None:
            return f"apply {len(self.loaded.manifests.get(i, []))} object(s)"
        if step.patch is not None:
            return f"patch {step.patch.kind} {step.patch.namespace or ''}/{step.patch.name}"
        if step.delete is not None:
            return f"delete {step.delete.kind} {step.delete.namespace or ''}/{step.delete.name}"
        if step.power_cycle is not None:
            return f"power-cycle {step.power_cycle.host}"
        return f"fault {step.fault}"

    # --- run -----------------------------------------------------------------------------------------------
    def run(self) -> RunResult:
        started = time.perf_counter()
        self.twin.on_event(self._on_event)
        if self.series is not None:
            self.series.attach()
        for check in self.checks:
            if check.after is None:
                self._activate(check, [])
        self.env.process(self._timeline())
        if self.until is not None:
            self.env.process(self._until(self.until))
        if self._progress is not None:
            self.env.process(self._ticker())
        self._maybe_finish()
        try:
            if not self._stop.triggered or self._stop.callbacks is not None:
                self.env.run(until=self._stop)
        except Exception as e:  # a bug in a controller or model: report it with the history, do not lose the run
            self.stopped_by = "the twin raised an exception"
            tb = traceback.format_exception(type(e), e, e.__traceback__)
            self.crash = Outcome("twin", False, f"the twin raised {type(e).__name__}: {e}",
                                 history=[*self.twin.log.recent(HISTORY_LINES), "".join(tb[-3:]).rstrip()])
        wall = time.perf_counter() - started
        for check in self.checks:
            if check.active:
                check.finish()
            elif not check.decided:
                check.fail(f"never started: step {check.after} did not run before the run ended")
        if self._progress is not None:
            self._progress.draw(self.twin.now, self.phases.snapshot(), self.twin.log.count)
            self._progress.close()
        outcomes = [c.outcome() for c in self.checks] + self.step_failures + ([self.crash] if self.crash else [])
        return RunResult(self._report(wall, outcomes), outcomes)

    def _until(self, until: float) -> Generator[Any, Any, None]:
        yield self.env.timeout(until)
        self._end(f"until {until:g}s")

    def _ticker(self) -> Generator[Any, Any, None]:
        # Reconciles that write nothing raise no store event; the ticker keeps the bar moving through them.
        period = max(1.0, (self._end_hint() or 0.0) / 2000)
        while True:
            yield self.env.timeout(period)
            assert self._progress is not None
            if self._progress.due():
                self._progress.draw(self.twin.now, self.phases.snapshot(), self.twin.log.count)

    def _report(self, wall: float, outcomes: list[Outcome]) -> dict[str, Any]:
        metrics = self.twin.metrics()
        controllers = metrics.get("controllers", {})
        sim = self.twin.now
        return {
            "scenario": self.loaded.name,
            "file": str(self.loaded.path) if self.loaded.path is not None else None,
            "seed": self.config.seed,
            "passed": all(o.passed for o in outcomes),
            "stopped_by": self.stopped_by or "no more events",
            "sim_seconds": round(sim, 3),
            "wall_seconds": round(wall, 3),
            "speedup": round(sim / wall, 1) if wall > 0 else None,
            "events": self.twin.log.count,
            "reconciles": {
                "total": metrics.get("reconciles", 0),
                "by_controller": {name: m.get("reconciles", 0) for name, m in sorted(controllers.items())},
            },
            "store_calls": {"writes": sum(self.writes_by_store.values()), "writes_by_store": dict(sorted(self.writes_by_store.items()))},
            "dpu_phase_durations": {p: percentiles(v) for p, v in sorted(self.phases.durations.items())},
            "dpu_time_to_ready": percentiles(self.phases.time_to_ready),
            "dpus_by_phase": self.phases.snapshot(),
            "expectations": [o.as_dict() for o in outcomes],
            "controllers": controllers,
            "event_log_sha256": self.twin.log.sha256,
            **self._timing(),
            **({"timeseries": self.series.result()} if self.series is not None else {}),
        }

    def _timing(self) -> dict[str, Any]:
        """`makespan`: the time the last await passed (None unless every await passed); `awaits`: per await,
        when it was decided and how long after it started (its `after` step, or t=0) that was."""
        awaits: dict[str, dict[str, Any]] = {}
        for check in self.checks:
            if not check.blocking:
                continue
            at = self.decided_at.get(check.name, self.twin.now if check.decided else None)
            started = getattr(check, "started", None)
            awaits[check.name] = {
                "passed": bool(check.passed),
                "at": None if at is None else round(at, 3),
                "seconds": None if at is None or started is None else round(at - started, 3),
            }
        ok = bool(awaits) and all(a["passed"] for a in awaits.values())
        return {"makespan": max(a["at"] for a in awaits.values()) if ok else None, "awaits": awaits}


def run_scenario(
    loaded: LoadedScenario,
    *,
    seed: int | None = None,
    until: float | None = None,
    progress: bool | None = None,
    stream: TextIO | None = None,
    series: bool = True,
) -> RunResult:
    return Runner(loaded, seed=seed, until=until, progress=progress, stream=stream, series=series).run()
