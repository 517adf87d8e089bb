"""Chaos: random fault schedules drawn from the seed, the convergence expectation, and the always-on invariants.

- `schedule()` draws the faults of a `chaos` fault step (dpf_sim.faults.Chaos) from the run's `chaos` stream:
  the same seed gives the same schedule, any fleet size.
- `converged` (an expectation, after the step that ends the faults, within a deadline): every DPU of the fleet
  exists once and is Ready on its DPUSet's BFB, or is in Error with a reason an injected fault explains, or
  waits on a BFB that an injected BFB fault put in Error.
- Invariants meant to hold in every scenario, after every event: `noObjectLost`, `finalizersRemoved`,
  `flashMatchesSpec`, `rolloutBudget`, `noOverlappingIpam` (plus expect.py's `singleFlash` and
  `maxUnavailable`). `always_on_specs()` lists them for the runner.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import math
import random
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pydantic import Field

from dpf_core.api.external import CIDRPool, IPPool
from dpf_core.api.meta import KubeObject, Model
from dpf_core.api.provisioning import (
    BFB,
    DPU,
    DPUSET_NAME_LABEL,
    DPUSET_NAMESPACE_LABEL,
    BFBPhase,
    DPUPhase,
    DPUSet,
    scaled_value_from_int_or_percent,
)
from dpf_core.store.protocol import WatchEvent

from .expect import Check, Invariant, ObjKey, obj_key, register_invariant, show_key
from .scenario import InvariantSpec, Scenario

if TYPE_CHECKING:
    from .faults import ChaosParams, FaultRecord
    from .twin import Twin


# --- the schedule -------------------------------------------------------------------------------------------

# What a chaos step draws from by default. ovsRestart joins when the service-chain twin exists.
DEFAULT_TYPES = (
    "dmsUnreachable", "dmsSlow", "dmsRpcFailure", "flashFailure", "dpuHang", "bfbNotFound", "bfbSlow",
    "bfbCorrupt", "linkDown", "linkDegraded", "apiBrownout", "watchDrop", "controllerCrash",
    "controlPlaneDown", "nodeNotReady",
)
RPCS = ("GnmiSetMode", "OsInstall", "OsActivate", "RebootStatus")
ANY_BFB = "*"  # resolved when the fault starts: a BFB that exists then
ROLLOUT_PENDING = "Ready on BFB "  # the why_not() of a DPU the rollout has not replaced yet
META_FAULTS = frozenset({"chaos", "clearFaults"})  # schedule faults, break nothing themselves


def schedule(twin: Twin, params: ChaosParams, rng: random.Random) -> list[tuple[float, dict[str, Any]]]:
    """`count` faults as (delay after the chaos step, fault mapping), sorted by delay.

    Targets are drawn here from the fleet (DPUs, hosts, racks); BFB faults pick a BFB when they start
    (the upgrade's BFB may not exist yet). Up to 2% of the fleet (at least one DPU) per DPU fault."""
    from .faults import FAULTS, fault_types

    types = list(params.types) if params.types else list(DEFAULT_TYPES)
    unknown = [t for t in types if t not in FAULTS or t == "chaos"]
    if unknown:
        from .faults import FaultError

        raise FaultError(f"chaos: unknown fault type(s) {', '.join(unknown)} (one of {', '.join(fault_types())})")
    dpus = sorted(twin.fleet.dpus)
    hosts = sorted(twin.fleet.hosts)
    racks = len(twin.fleet.tors)
    per_fault = max(1, math.ceil(0.02 * len(dpus)))
    plan: list[tuple[float, dict[str, Any]]] = []
    for _ in range(params.count):
        ftype = rng.choice(types)
        at = round(rng.uniform(0.0, params.over), 3)
        duration = round(rng.uniform(min(60.0, params.max_duration), params.max_duration), 3)
        spec: dict[str, Any] = {"type": ftype, "duration": duration}
        if ftype in ("dmsUnreachable", "dmsSlow", "dmsRpcFailure", "flashFailure", "dpuHang", "nodeNotReady"):
            spec["dpus"] = sorted(rng.sample(dpus, rng.randint(1, per_fault)))
        if ftype == "dmsSlow":
            spec["delay"] = round(rng.uniform(5.0, 120.0), 3)
        elif ftype == "dmsRpcFailure":
            spec["rpc"] = rng.choice(RPCS)
            spec["code"] = rng.choice(("Internal", "Unavailable", "DeadlineExceeded"))
        elif ftype in ("bfbNotFound", "bfbSlow", "bfbCorrupt"):
            spec["bfb"] = ANY_BFB
            if ftype == "bfbSlow":
                spec["rate"] = rng.choice(("1MiB/s", "5MiB/s", "20MiB/s"))
        elif ftype in ("linkDown", "linkDegraded"):
            if rng.random() < 0.7 or racks < 1:
                spec["host"] = rng.choice(hosts)
            else:
                spec["rack"] = rng.randrange(racks)
            if ftype == "linkDegraded":
                spec["factor"] = round(rng.uniform(0.01, 0.5), 3)
        elif ftype == "apiBrownout":
            spec["store"] = rng.choice(("host", "host", "dpuClusters"))
            spec["latency"] = round(rng.uniform(0.0, 0.5), 3)
            spec["errorRate"] = round(rng.uniform(0.05, 0.6), 3)
            spec["code"] = rng.choice((429, 500, 503))
        elif ftype == "controllerCrash":
            del spec["duration"]
            spec["downtime"] = round(rng.uniform(5.0, 120.0), 3)
        plan.append((at, spec))
    plan.sort(key=lambda x: x[0])
    return plan


def resolve_any_bfb(twin: Twin, spec: dict[str, Any], protect: Iterable[str], rng: random.Random) -> dict[str, Any] | None:
    """A `bfb: "*"` fault -> a concrete BFB existing now (None when there is none to pick)."""
    if spec.get("bfb") != ANY_BFB:
        return spec
    protected = set(protect)
    names = sorted(f"{b.namespace}/{b.name}" for b in twin.host.list(BFB) if b.name not in protected)
    if not names:
        return None
    return {**spec, "bfb": rng.choice(names)}


# --- convergence --------------------------------------------------------------------------------------------


class ConvergedParams(Model):
    dpus: int | None = Field(default=None, description="how many DPUs must exist; default one per DPU of the fleet")
    namespace: str | None = None


def dpu_error_reason(dpu: DPU) -> tuple[str, str]:
    """The (reason, message) of the condition that put a DPU in Error: the False condition set last."""
    best: tuple[str, str, str] | None = None
    for c in dpu.status.conditions:
        if c.status == "False" and c.type != "Ready":
            t = c.last_transition_time or ""
            if best is None or t >= best[0]:
                best = (t, c.reason or "", c.message or "")
    if best is None:
        for c in dpu.status.conditions:
            if c.type == "Ready" and c.status == "False":
                return c.reason or "", c.message or ""
        return "", ""
    return best[1], best[2]


def _records(twin: Any) -> list[FaultRecord]:
    inj = getattr(twin, "faults", None)
    return list(inj.records) if inj is not None else []


@register_invariant("converged")
class Converged(Check):
    """After the faults: every DPU settled (Ready on its DPUSet's BFB, or an explained Error, or waiting on a
    BFB an injected fault broke), and exactly the expected number of DPUs. Passes when that first holds;
    fails at the deadline listing the DPUs that did not settle."""

    blocking = True
    kinds = (DPU, DPUSet, BFB)

    def __init__(self, spec: InvariantSpec) -> None:
        super().__init__(spec.name, spec.after, spec.within)
        self.params = ConvergedParams.model_validate(spec.params)
        self.expected = 0
        self.unsettled: dict[ObjKey, str] = {}
        self.present: set[ObjKey] = set()
        self.started = 0.0

    def bind(self, twin: Twin) -> None:
        super().bind(twin)
        self.expected = self.params.dpus if self.params.dpus is not None else len(twin.fleet.dpus)

    def activate(self, deleted: list[tuple[str, KubeObject]]) -> None:
        super().activate(deleted)
        self.started = self.now
        self._rescan()
        self._evaluate()

    def _rescan(self) -> None:
        assert self.twin is not None
        self.unsettled.clear()
        self.present.clear()
        for d in self.twin.host.list(DPU, self.params.namespace):
            self._update(d, gone=False)

    def _template_bfb(self, dpu: DPU) -> str | None:
        assert self.twin is not None
        name = dpu.metadata.labels.get(DPUSET_NAME_LABEL)
        if not name:
            return None
        ns = dpu.metadata.labels.get(DPUSET_NAMESPACE_LABEL) or dpu.namespace
        ds = self.twin.host.try_get(DPUSet, name, ns)
        return ds.spec.dpu_template.spec.bfb.name if ds is not None else None

    def why_not(self, dpu: DPU) -> str | None:
        """None when the DPU is settled, else what is wrong with it."""
        assert self.twin is not None
        phase = dpu.status.phase
        if dpu.metadata.deletion_timestamp is not None:
            return "deleting"
        if phase == DPUPhase.READY:
            ready = any(c.type == "Ready" and c.status == "True" for c in dpu.status.conditions)
            if not ready:
                return "phase Ready but Ready condition not True"
            want = self._template_bfb(dpu)
            if want is not None and dpu.spec.bfb != want and not self._broken_by_fault(want, dpu.namespace):
                halted = self._rollout_halted(dpu)
                if halted is None:
                    return f"{ROLLOUT_PENDING}{dpu.spec.bfb}, DPUSet wants {want}"
            return None
        if phase == DPUPhase.ERROR:
            reason, message = dpu_error_reason(dpu)
            for rec in _records(self.twin):
                if rec.explains(dpu.name, reason, message):
                    return None
            return f"Error {reason}: {message} (no injected fault explains it)"
        if self._broken_by_fault(dpu.spec.bfb, dpu.namespace):
            return None
        return f"phase {phase}"

    def _rollout_halted(self, dpu: DPU) -> str | None:
        """Why the DPUSet's RollingUpdate may not replace `dpu` (its budget is spent on DPUs that are down for
        good, each settled by itself), or None. DPF halts a rollout like this by design."""
        assert self.twin is not None
        labels = dpu.metadata.labels
        name = labels.get(DPUSET_NAME_LABEL)
        ns = labels.get(DPUSET_NAMESPACE_LABEL) or dpu.namespace
        ds = self.twin.host.try_get(DPUSet, name or "", ns) if name else None
        if ds is None or ds.spec.strategy is None or ds.spec.strategy.type != "RollingUpdate":
            return None
        members = [d for d in self.twin.host.list(DPU, dpu.namespace) if d.metadata.labels.get(DPUSET_NAME_LABEL) == name]
        down = [d for d in members if d.metadata.deletion_timestamp is not None
                or not any(c.type == "Ready" and c.status == "True" for c in d.status.conditions)]
        if any(self.why_not(d) is not None for d in down):
            return None  # something is still moving
        ru = ds.spec.strategy.rolling_update
        scaled = scaled_value_from_int_or_percent(ru.max_unavailable if ru is not None else None, len(members), True)
        budget = 1 if scaled <= 0 else min(scaled, len(members))
        if len(down) >= budget:
            return f"{len(down)} DPU(s) down for good >= maxUnavailable {budget}"
        return None

    def _broken_by_fault(self, bfb_name: str, namespace: str | None) -> bool:
        """A BFB in Error whose URL an injected BFB fault served badly: a rollout to it stalls by design."""
        assert self.twin is not None
        bfb = self.twin.host.try_get(BFB, bfb_name, namespace)
        if bfb is None or bfb.status.phase != BFBPhase.ERROR:
            return False
        return any(bfb.spec.url in rec.bfb_urls for rec in _records(self.twin))

    def _update(self, dpu: DPU, gone: bool) -> None:
        key = obj_key(dpu)
        if gone:
            self.present.discard(key)
            self.unsettled.pop(key, None)
            return
        self.present.add(key)
        why = self.why_not(dpu)
        if why is None:
            self.unsettled.pop(key, None)
        else:
            self.unsettled[key] = why

    def on_event(self, store: str, ev: WatchEvent) -> None:
        if isinstance(ev.object, DPU):
            if self.params.namespace is None or ev.object.namespace == self.params.namespace:
                self._update(ev.object, ev.type == "DELETED")
                self._recheck_rollout()
        else:
            self._rescan()  # a DPUSet's template or a BFB's phase changed: rare, recheck everything
        self._evaluate()

    def _recheck_rollout(self) -> None:
        """DPUs waiting for a rollout settle when another DPU's state halts it: look at those again."""
        assert self.twin is not None
        waiting = [k for k, why in self.unsettled.items() if why.startswith(ROLLOUT_PENDING)]
        for key in waiting:
            obj = self.twin.host.try_get(DPU, key[1], key[0] or None)
            if obj is not None:
                self._update(obj, gone=False)

    def _evaluate(self) -> None:
        if self.passed is None and not self.unsettled and len(self.present) == self.expected:
            self.succeed(f"{len(self.present)} DPU(s) settled at t={self.now:.1f}s "
                         f"({self.now - self.started:.1f}s after the faults); {self._summary()}")

    def _summary(self) -> str:
        assert self.twin is not None
        errors = sum(1 for d in self.twin.host.list(DPU, self.params.namespace) if d.status.phase == DPUPhase.ERROR)
        injected = sum(1 for r in _records(self.twin) if r.type not in META_FAULTS)
        return f"{errors} in an explained Error, {injected} fault(s) injected"

    def _report(self, why: str) -> None:
        self._rescan()
        if not self.unsettled and len(self.present) == self.expected:
            self._evaluate()
            return
        count = "" if len(self.present) == self.expected else f"{len(self.present)} DPU(s), expected {self.expected}; "
        self.fail(f"not converged {why}: {count}{len(self.unsettled)} unsettled",
                  [f"{show_key(k)}: {v}" for k, v in sorted(self.unsettled.items())], history=True)

    def on_deadline(self) -> None:
        if self.passed is None:
            self._report(f"within {self.within:g}s")

    def finish(self) -> None:
        if self.passed is None:
            self._report(f"when the run ended at t={self.now:.1f}s")


# --- always-on invariants -----------------------------------------------------------------------------------


class _NoParams(Model):
    pass


Key4 = tuple[str, str, str, str]  # (store, kind, namespace, name)


def _key4(store: str, obj: KubeObject) -> Key4:
    return (store, obj.kind, obj.metadata.namespace or "", obj.metadata.name or "")


def _show4(k: Key4) -> str:
    where = f" in {k[0]}" if k[0] != "host" else ""
    return f"{k[1]} {k[2] + '/' if k[2] else ''}{k[3]}{where}"


@register_invariant("noObjectLost")
class NoObjectLost(Invariant):
    """No object lost or duplicated, in any store: an object never vanishes while it still holds finalizers
    (only a deletion that went through them may remove it), no name is created twice without a delete in
    between, and a DPUSet never has two live DPUs on one node."""

    kinds = None
    store = None

    def __init__(self, spec: InvariantSpec) -> None:
        super().__init__(spec)
        _NoParams.model_validate(spec.params)
        self.uids: dict[Key4, str] = {}
        self.dpu_node: dict[tuple[str, ObjKey], tuple[ObjKey, str]] = {}  # (store, dpu) -> (dpuset, node)
        self.by_node: dict[tuple[ObjKey, str], set[ObjKey]] = {}

    def activate(self, deleted: list[tuple[str, KubeObject]]) -> None:
        super().activate(deleted)
        assert self.twin is not None
        for name, st in self.twin.stores().items():
            for obj in st.all_objects():
                self.uids[_key4(name, obj)] = obj.metadata.uid or ""
                if isinstance(obj, DPU):
                    self._dpu(name, obj, gone=False)

    def on_event(self, store: str, ev: WatchEvent) -> None:
        self.events += 1
        obj = ev.object
        key = _key4(store, obj)
        uid = obj.metadata.uid or ""
        if ev.type == "ADDED":
            held = self.uids.get(key)
            if held is not None and held != uid:
                self.violate("an object was created twice without a delete in between", [_show4(key)])
                return
            self.uids[key] = uid
        elif ev.type == "DELETED":
            before = ev.old if ev.old is not None else obj
            if before.metadata.finalizers and obj.metadata.finalizers:
                self.violate("an object vanished while it still had finalizers",
                             [f"{_show4(key)} finalizers={list(obj.metadata.finalizers)}"])
                return
            self.uids.pop(key, None)
        else:
            self.uids.setdefault(key, uid)
        if isinstance(obj, DPU):
            self._dpu(store, obj, gone=ev.type == "DELETED")

    def _dpu(self, store: str, dpu: DPU, gone: bool) -> None:
        key = (store, obj_key(dpu))
        prev = self.dpu_node.pop(key, None)
        if prev is not None:
            self.by_node.get(prev, set()).discard(key[1])
        owner = dpu.metadata.labels.get(DPUSET_NAME_LABEL)
        if gone or not owner or dpu.metadata.deletion_timestamp is not None:
            return
        set_key = (dpu.metadata.labels.get(DPUSET_NAMESPACE_LABEL) or dpu.namespace or "", owner)
        slot = (set_key, dpu.spec.node_name)
        live = self.by_node.setdefault(slot, set())
        live.add(key[1])
        self.dpu_node[key] = slot
        if len(live) > 1:
            self.violate(f"DPUSet {show_key(set_key)} has {len(live)} live DPUs on node {dpu.spec.node_name}",
                         sorted(show_key(k) for k in live))


class FinalizersParams(Model):
    within: float = Field(default=3600.0, gt=0, description="seconds a deleted object may keep its finalizers")


@register_invariant("finalizersRemoved")
class FinalizersRemoved(Invariant):
    """Finalizers are eventually removed after deletion: no object keeps a deletionTimestamp longer than
    `params.within` (default 1 h) of simulated time."""

    kinds = None
    store = None

    def __init__(self, spec: InvariantSpec) -> None:
        super().__init__(spec)
        self.limit = FinalizersParams.model_validate(spec.params).within
        self.since: dict[Key4, float] = {}
        self.heap: list[tuple[float, Key4]] = []

    def activate(self, deleted: list[tuple[str, KubeObject]]) -> None:
        super().activate(deleted)
        assert self.twin is not None
        for name, st in self.twin.stores().items():
            for obj in st.all_objects():
                if obj.metadata.deletion_timestamp is not None:
                    self._mark(_key4(name, obj))

    def _mark(self, key: Key4) -> None:
        if key not in self.since:
            self.since[key] = self.now
            heapq.heappush(self.heap, (self.now, key))

    def on_event(self, store: str, ev: WatchEvent) -> None:
        self.events += 1
        key = _key4(store, ev.object)
        if ev.type == "DELETED":
            self.since.pop(key, None)
        elif ev.object.metadata.deletion_timestamp is not None:
            self._mark(key)
        self._expire()

    def _expire(self) -> None:
        while self.heap:
            t, key = self.heap[0]
            if self.since.get(key) != t:
                heapq.heappop(self.heap)  # deleted (or re-marked) since
                continue
            if self.now - t <= self.limit:
                return
            stuck = [f"{_show4(k)} (deleting since t={s:.1f}s)" for k, s in sorted(self.since.items(), key=lambda x: x[1])
                     if self.now - s > self.limit]
            self.violate(f"object(s) kept their finalizers more than {self.limit:g}s after deletion", stuck)
            return

    def finish(self) -> None:
        if self.passed is None:
            self._expire()
        super().finish()


@register_invariant("flashMatchesSpec")
class FlashMatchesSpec(Invariant):
    """No DPU is flashed with a BFB other than its spec: checked at the instant a flash starts (a hook on
    the BlueField model), against the DPU object's `spec.bfb` BFB `fileName`."""

    kinds: tuple[type[KubeObject], ...] = ()

    def __init__(self, spec: InvariantSpec) -> None:
        super().__init__(spec)
        _NoParams.model_validate(spec.params)
        self.flashes = 0

    def bind(self, twin: Twin) -> None:
        super().bind(twin)
        bluefields = twin.bluefields
        inner: Callable[..., None] = bluefields.reboot

        def reboot(dpu: str, flash: tuple[str, str | None] | None = None) -> None:
            bf = bluefields.dpus.get(dpu)
            effective = flash if flash is not None else (bf.pending_activation if bf is not None else None)
            if effective is not None and self.active:
                self._check(dpu, effective[0])
            inner(dpu, flash)

        bluefields.reboot = reboot  # type: ignore[method-assign]

    def _check(self, dpu: str, version: str) -> None:
        assert self.twin is not None
        self.flashes += 1
        self.events += 1
        objs = [d for d in self.twin.host.list(DPU) if d.name == dpu]
        if not objs:
            self.violate("a DPU was flashed with no DPU object", [f"{dpu} flashed {version}"])
            return
        obj = objs[0]
        bfb = self.twin.host.try_get(BFB, obj.spec.bfb, obj.namespace)
        want = bfb.spec.file_name if bfb is not None else None
        if want != version:
            self.violate("a DPU was flashed with a BFB other than its spec",
                         [f"{dpu}: flashed {version}, spec.bfb {obj.spec.bfb} is {want or 'missing'}"])


@register_invariant("rolloutBudget")
class RolloutBudget(Invariant):
    """maxUnavailable as a rule about the DPUSet controller's decisions, so it holds whatever faults do to
    the fleet: a RollingUpdate DPUSet deletes a Ready DPU for an update only while fewer than maxUnavailable
    of its DPUs are unavailable (DPF's rolloutRolling; a DPU already unavailable may always be replaced).
    Unavailable = missing for a selected node, not Ready, or being deleted, counted as DPF counts them."""

    kinds = (DPU,)

    def __init__(self, spec: InvariantSpec) -> None:
        super().__init__(spec)
        _NoParams.model_validate(spec.params)
        self.decisions = 0

    def on_event(self, store: str, ev: WatchEvent) -> None:
        self.events += 1
        new, old = ev.object, ev.old
        if ev.type != "MODIFIED" or not isinstance(new, DPU) or not isinstance(old, DPU):
            return
        if old.metadata.deletion_timestamp is not None or new.metadata.deletion_timestamp is None:
            return
        if not any(c.type == "Ready" and c.status == "True" for c in old.status.conditions):
            return  # an unavailable DPU is replaced without spending the budget
        assert self.twin is not None
        name = new.metadata.labels.get(DPUSET_NAME_LABEL)
        if not name:
            return
        ds = self.twin.host.try_get(DPUSet, name, new.metadata.labels.get(DPUSET_NAMESPACE_LABEL) or new.namespace)
        if ds is None or ds.metadata.deletion_timestamp is not None or ds.spec.strategy is None:
            return
        if ds.spec.strategy.type != "RollingUpdate":
            return
        tmpl = ds.spec.dpu_template.spec
        if tmpl.bfb.name in (None, new.spec.bfb) and tmpl.dpu_flavor == new.spec.dpu_flavor:
            return  # not an update deletion (node deselected, user delete)
        self.decisions += 1
        members = [d for d in self.twin.host.list(DPU, ds.namespace)
                   if d.metadata.labels.get(DPUSET_NAME_LABEL) == ds.name and d.name != new.name]
        nodes = {d.spec.node_name for d in members} | {new.spec.node_name}
        total = len(nodes)
        unavailable = sum(1 for d in members if d.metadata.deletion_timestamp is not None
                          or not any(c.type == "Ready" and c.status == "True" for c in d.status.conditions))
        ru = ds.spec.strategy.rolling_update
        scaled = scaled_value_from_int_or_percent(ru.max_unavailable if ru is not None else None, total, True)
        budget = 1 if scaled <= 0 else min(scaled, total)
        if unavailable >= budget:
            self.violate(f"DPUSet {ds.namespace}/{ds.name} deleted Ready DPU {new.name} for an update with "
                         f"{unavailable} of {total} already unavailable (maxUnavailable allows {budget})")


@register_invariant("noOverlappingIpam")
class NoOverlappingIpam(Invariant):
    """No two allocations of an NVIPAM IPPool (IP ranges) or CIDRPool (per-node prefixes) overlap."""

    kinds = (IPPool, CIDRPool)
    store = None

    def __init__(self, spec: InvariantSpec) -> None:
        super().__init__(spec)
        _NoParams.model_validate(spec.params)

    def on_event(self, store: str, ev: WatchEvent) -> None:
        self.events += 1
        if ev.type == "DELETED":
            return
        obj = ev.object
        spans: list[tuple[int, int, str]] = []
        try:
            if isinstance(obj, IPPool):
                for rng in obj.status.allocations:
                    lo, hi = int(ipaddress.ip_address(rng.start_ip)), int(ipaddress.ip_address(rng.end_ip))
                    spans.append((lo, hi, f"{rng.node_name} {rng.start_ip}-{rng.end_ip}"))
            elif isinstance(obj, CIDRPool):
                for cidr in obj.status.allocations:
                    net = ipaddress.ip_network(cidr.prefix, strict=False)
                    spans.append((int(net.network_address), int(net.broadcast_address), f"{cidr.node_name} {cidr.prefix}"))
        except ValueError as e:
            self.violate(f"{obj.kind} {obj.namespace}/{obj.name} has an unparsable allocation: {e}")
            return
        spans.sort()
        for (_, hi, first), (lo2, _, second) in itertools.pairwise(spans):
            if lo2 <= hi:
                self.violate(f"{obj.kind} {obj.namespace}/{obj.name} has overlapping allocations", [first, second])
                return


# Invariants that hold in any scenario (with or without faults). maxUnavailable is left out: its outcome
# form counts DPUs a fault took down, which no controller can prevent; rolloutBudget checks the decision.
ALWAYS_ON: tuple[str, ...] = ("noObjectLost", "finalizersRemoved", "flashMatchesSpec", "rolloutBudget",
                              "noOverlappingIpam", "singleFlash")


def always_on_specs(scenario: Scenario) -> list[InvariantSpec]:
    """The always-on invariants a scenario does not already declare (by type), named `always:<type>`."""
    declared = {e.invariant.type for e in scenario.expect if e.invariant is not None}
    return [InvariantSpec(name=f"always:{t}", type=t) for t in ALWAYS_ON if t not in declared]
