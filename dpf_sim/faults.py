"""The fault catalogue: named, schedulable faults with targets and durations, injected into a running twin.

A scenario step `fault: {type: dmsUnreachable, dpus: [worker-0-0-0000-04-00], duration: 10m}` calls
`Twin.inject`, which lands in `inject()` here: the parameters are validated, the fault starts at once and a
SimPy process clears it `duration` seconds later (faults without a duration are one-shot, or last until
the run ends). Every fault is recorded (`FaultRecord`) so an expectation can tell an Error the fault
explains from a bug (dpf_sim.chaos).

The faults act on the world, never on the controllers' code: a DMS that refuses connections, a BlueField
that hangs while booting, an API server answering 503, a manager whose watch subscription is gone, a
controller process that died with everything it held in memory. What the controllers do about it is the
point of the exercise; docs/reliability.md lists, per fault, what they do.

Errors that a fault makes up itself (a refused dial, a 503) carry its marker `injected <type>#<id>` in their
message, so the message on the DPU condition names the fault that caused it.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, ValidationError, model_validator

from dpf_core.api.external import Node, TenantControlPlane
from dpf_core.api.meta import Model
from dpf_core.api.provisioning import BFB
from dpf_core.errors import ApiError, ServiceUnavailable, TooManyRequests
from dpf_core.ports.ops import DmsTarget, OpError, OsActivate
from dpf_core.runtime import Manager, rfc3339

from .durations import parse_rate
from .models.bfbserver import BfbFault
from .models.bluefield import DpuState
from .scenario import Seconds

if TYPE_CHECKING:
    from .twin import Twin


class FaultError(ValueError):
    """A fault the twin cannot inject (bad parameters, unknown target). A ValueError, so the scenario
    runner reports the step as failed instead of crashing the run."""


# --- records ------------------------------------------------------------------------------------------------


@dataclass
class FaultRecord:
    """One injected fault: what, when, on what, and which DPU Errors it may explain."""

    id: int
    type: str
    started: float
    params: dict[str, Any]
    ends: float | None = None  # scheduled end (None: one-shot, or until the run ends)
    ended: float | None = None
    dpus: frozenset[str] | None = None  # DPUs it can affect; None = any DPU
    reasons: frozenset[str] = frozenset()  # DPU condition reasons of the Errors it can cause
    patterns: tuple[str, ...] = ()  # message fragments of those Errors the models write (no marker)
    bfb_urls: frozenset[str] = frozenset()  # BFB faults: the URLs served badly
    note: str = ""

    @property
    def marker(self) -> str:
        return f"injected {self.type}#{self.id}"

    @property
    def active(self) -> bool:
        return self.ended is None

    def explains(self, dpu: str, reason: str, message: str) -> bool:
        """Could this fault have put DPU `dpu` in Error with this condition reason and message?"""
        if self.marker in message:
            return True
        if self.dpus is not None and dpu not in self.dpus:
            return False
        if reason not in self.reasons:
            return False
        return not self.patterns or any(p in message for p in self.patterns)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "type": self.type, "started": round(self.started, 3)}
        if self.ended is not None:
            out["ended"] = round(self.ended, 3)
        if self.dpus is not None:
            out["dpus"] = sorted(self.dpus)
        if self.note:
            out["note"] = self.note
        return out


INSTALLATION_FAILED = "InstallationFailed"
# The conditions a brownout can leave False in an Error (a failed write in Ready, a failed pod create...).
ANY_REASON: frozenset[str] = frozenset()


# --- parameters ---------------------------------------------------------------------------------------------


class FaultParams(Model):
    type: str
    name: str | None = None
    duration: Seconds | None = Field(default=None, description="how long the fault lasts; none = one-shot / for good")


class DpuTargets(FaultParams):
    """`dpus: [names]` or `dpus: all`; `count: N` picks N of them with the run's fault stream."""

    dpus: list[str] | Literal["all"] = "all"
    count: int | None = Field(default=None, ge=1)


class DmsSlowParams(DpuTargets):
    delay: Seconds = 30.0


RPCS: dict[str, str] = {
    "GnmiSetMode": "GnmiSetMode", "gNMI.Set": "GnmiSetMode",
    "OsInstall": "OsInstall", "OS.Install": "OsInstall",
    "OsActivate": "OsActivate", "OS.Activate": "OsActivate",
    "RebootStatus": "RebootStatusOp", "RebootStatusOp": "RebootStatusOp", "System.RebootStatus": "RebootStatusOp",
}


class DmsRpcParams(DpuTargets):
    rpc: str
    code: str = "Internal"

    @model_validator(mode="after")
    def _rpc(self) -> DmsRpcParams:
        if self.rpc not in RPCS:
            raise ValueError(f"unknown rpc {self.rpc!r} (one of {', '.join(sorted(RPCS))})")
        return self


class BfbParams(FaultParams):
    """A BFB by `url`, or by `bfb` ("name" or "namespace/name" of a BFB object in the host cluster)."""

    url: str | None = None
    bfb: str | None = None
    rate: str = "1MiB/s"  # bfbSlow

    @model_validator(mode="after")
    def _one(self) -> BfbParams:
        if (self.url is None) == (self.bfb is None):
            raise ValueError("give exactly one of url, bfb")
        return self


class LinkParams(FaultParams):
    """A link by id ("a->b", both directions), by its two ends, a host's uplink, or a rack's ToR uplink."""

    link: str | None = None
    between: list[str] | None = Field(default=None, min_length=2, max_length=2)
    host: str | None = None
    rack: int | None = Field(default=None, ge=0)
    factor: float = Field(default=0.1, ge=0, le=1)  # linkDegraded

    @model_validator(mode="after")
    def _one(self) -> LinkParams:
        given = [k for k in ("link", "between", "host", "rack") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of link, between, host, rack")
        return self


class BrownoutParams(FaultParams):
    store: str = Field(default="host", description='"host", "<ns>/<name>" of a DPU cluster, or "dpuClusters"')
    latency: Seconds = 0.0
    error_rate: float = Field(default=0.5, ge=0, le=1)
    code: Literal[429, 500, 503] = 503


class ManagerParams(FaultParams):
    manager: str | None = Field(default=None, description="a Manager of the twin by name; default all (watchDrop) "
                                                          "or provisioning (controllerCrash)")


class CrashParams(ManagerParams):
    downtime: Seconds = 30.0


class ClusterParams(FaultParams):
    cluster: str | None = Field(default=None, description='"<ns>/<name>"; default every DPU cluster')


class ChurnParams(Model):
    """DPUServices created, updated and deleted while the faults run (dpf_sim.chaos.churn_plan)."""

    services: int = Field(default=4, ge=0, description="DPUServices created, in the first half of `over`")
    updates: int = Field(default=6, ge=0, description="helm values or chart version changes of a live one")
    deletes: int = Field(default=2, ge=0, description="of the created ones deleted before `over` ends")
    namespace: str = "chaos-services"


class ChaosParams(FaultParams):
    """A random schedule of faults drawn from the run's seed (dpf_sim.chaos.schedule)."""

    count: int = Field(default=10, ge=0)
    over: Seconds = Field(default=3600.0, description="faults start within this long after the step")
    max_duration: Seconds = 900.0
    types: list[str] | None = None
    protect_bfbs: list[str] = Field(default_factory=list, description="BFB names no BFB fault may target")
    churn: ChurnParams | None = Field(default=None, description="DPUService churn drawn from the seed alongside "
                                                                "(needs the services attachment)")


# --- the injector -------------------------------------------------------------------------------------------


class Injector:
    """The twin's fault state: records, the guards it installed, the fault random stream."""

    def __init__(self, twin: Twin) -> None:
        self.twin = twin
        self.env = twin.env
        self.rng = twin.streams.get("faults")
        self.records: list[FaultRecord] = []
        self.active: list[Fault] = []
        self._guards: dict[str, GuardedClient] = {}
        self._op_guard: OpGuard | None = None
        self._dms_guard: DmsGuard | None = None
        self._clusters_guard: ClustersGuard | None = None
        self._cost_guard: LatencyCost | None = None
        self._join_guard: Callable[[Any], bool | None] | None = None
        self.owed_latency = 0.0
        self.denied_joins: set[str] = set()  # DPU clusters whose control plane is down
        self.corrupt: list[BfbCorrupt] = []  # corrupt files on the share, checked at every activation
        self.crashed: set[int] = set()  # id() of stopped managers
        self.counts: dict[str, int] = {}

    # --- bookkeeping ----------------------------------------------------------------------------------------
    def record(self, ftype: str, params: Mapping[str, Any], duration: float | None) -> FaultRecord:
        now = float(self.env.now)
        rec = FaultRecord(len(self.records) + 1, ftype, now, dict(params),
                          ends=now + duration if duration is not None else None)
        self.records.append(rec)
        self.counts[ftype] = self.counts.get(ftype, 0) + 1
        return rec

    def explaining(self, dpu: str, reason: str, message: str) -> FaultRecord | None:
        for rec in self.records:
            if rec.explains(dpu, reason, message):
                return rec
        return None

    def log(self, text: str) -> None:
        self.twin.log.write(self.env.now, f"fault {text}")

    # --- targets ------------------------------------------------------------------------------------------
    def pick_dpus(self, p: DpuTargets, known: Mapping[str, Any] | None = None) -> list[str]:
        """`known`: the names to pick from (default the fleet's BlueFields)."""
        known = self.twin.bluefields.dpus if known is None else known
        if p.dpus == "all":
            names = sorted(known)
        else:
            missing = [d for d in p.dpus if d not in known]
            if missing:
                raise FaultError(f"no DPU {', '.join(missing)} in the fleet")
            names = list(p.dpus)
        if p.count is not None and p.count < len(names):
            names = sorted(self.rng.sample(names, p.count))
        return names

    def managers(self, name: str | None) -> list[Manager]:
        live = [m for m in self.twin.driver.managers if id(m) not in self.crashed]
        chosen = [m for m in live if name is None or m.name == name]
        if not chosen:
            have = ", ".join(sorted({m.name for m in live})) or "none"
            raise FaultError(f"no running manager {name!r} (have: {have})")
        return chosen

    def dpu_cluster_of(self, dpu: str) -> str | None:
        d = self.twin.dpu_names.find(dpu)
        if d is not None and d.spec.cluster.name:
            return f"{d.spec.cluster.namespace or d.namespace}/{d.spec.cluster.name}"
        return None

    # --- guards (installed once, pass-through while no fault is active) ----------------------------------
    def guard(self, store: str) -> GuardedClient:
        g = self._guards.get(store)
        if g is not None:
            return g
        stores = self.twin.stores()
        if store not in stores:
            raise FaultError(f'no store "{store}" (have: {", ".join(sorted(stores))})')
        g = self._guards[store] = GuardedClient(stores[store], self)
        if store == "host":
            for m in self.twin.driver.managers:
                self.wrap_manager(m)
        elif self._clusters_guard is None:
            ports = self.twin.ports
            raw = ports.clusters
            self._clusters_guard = ClustersGuard(raw, self)
            ports.clusters = self._clusters_guard
            # The DPUService controllers reach the DPU clusters through their own Ports (services attachment),
            # and ArgoCD syncs into them: both must meet the same API server as the provisioning controllers.
            services = getattr(self.twin, "services", None)
            if services is not None:
                if getattr(services.ports, "clusters", None) is raw:
                    services.ports.clusters = self._clusters_guard
                services.argocd.reach = lambda name, st: self._guards.get(name, st)
        if self._cost_guard is None:
            self._cost_guard = LatencyCost(self.twin.driver.cost, self)
            self.twin.driver.cost = self._cost_guard  # type: ignore[assignment]  # duck-typed CostModel
        return g

    def wrap_manager(self, manager: Manager) -> None:
        """Point a manager's controllers at the guarded host client (the Manager keeps the raw store for
        its subscription and initial list, which the fault models separately)."""
        g = self._guards.get("host")
        if g is None or manager.client is not self.twin.host:
            return
        for c in manager.controllers:
            manager.context_for(c).client = g

    def op_guard(self) -> OpGuard:
        if self._op_guard is None:
            tasks: Any = self.twin.tasks
            self._op_guard = OpGuard(tasks.executor, self)
            tasks.executor = self._op_guard
            self._dms_guard = DmsGuard(self.twin.ports.dms, self)
            self.twin.ports.dms = self._dms_guard
        return self._op_guard

    def join_guard(self) -> None:
        if self._join_guard is not None:
            return
        bluefields = self.twin.bluefields
        inner = bluefields.on_booted

        def on_booted(bf: Any) -> bool | None:
            cluster = self.dpu_cluster_of(bf.name)
            if cluster is not None and cluster in self.denied_joins:
                return False  # kubeadm join cannot reach the API server: retried every 5 s
            return inner(bf) if inner is not None else None

        self._join_guard = on_booted
        bluefields.on_booted = on_booted

    def wake_ready(self, stores: list[str]) -> None:
        """Enqueue the Ready DPUs whose Ready-phase check calls these stores' API servers: all of them for the
        host's, a DPU cluster's own DPUs for a DPU cluster's. A failing or recovering API server raises no
        watch event; the check would otherwise see it only on its next `ready_poll`, which the twin keeps long
        because every other thing that check looks at wakes the DPU by itself."""
        names = self.twin.dpu_names
        targets = names.ready() if "host" in stores else names.ready([s for s in stores if s != "host"])
        for name in targets:
            self.twin.wake_dpu(name)

    def recheck_while(self, fault: Fault, stores: list[str]) -> None:
        """Wake the Ready DPUs of `stores` now and every READY_RECHECK while `fault` lasts: a partial brownout
        is sampled by the Ready check as often as the twin's former 300 s poll sampled it."""
        self.wake_ready(stores)

        def recheck() -> Generator[Any, Any, None]:
            while True:
                yield self.env.timeout(READY_RECHECK)
                if fault.record.ended is not None or fault not in self.active:
                    return
                self.wake_ready(stores)

        self.env.process(recheck())

    def drain_latency(self) -> float:
        owed, self.owed_latency = self.owed_latency, 0.0
        return owed


# How often a fault that fails API calls re-wakes the Ready DPUs it affects: the twin's Ready poll before
# faults woke them (TWIN_POLLS), so what a brownout does to Ready DPUs did not change with the longer poll.
READY_RECHECK = 300.0


class GuardedClient:
    """The store as the controllers reach it through a browned-out API server: each call may cost extra
    virtual time (charged to the reconcile) and may fail with 429/500/503."""

    def __init__(self, inner: Any, injector: Injector) -> None:
        self.inner = inner
        self.injector = injector
        self.faults: list[BrownoutFault] = []
        self.calls = 0
        self.failed = 0

    def _gate(self) -> None:
        for f in self.faults:
            self.calls += 1
            if f.latency:
                self.injector.owed_latency += f.latency
            if f.error_rate >= 1.0 or (f.error_rate > 0 and self.injector.rng.random() < f.error_rate):
                self.failed += 1
                f.errors += 1
                raise f.error()

    def get(self, *a: Any, **kw: Any) -> Any:
        self._gate()
        return self.inner.get(*a, **kw)

    def try_get(self, *a: Any, **kw: Any) -> Any:
        self._gate()
        return self.inner.try_get(*a, **kw)

    def list(self, *a: Any, **kw: Any) -> Any:
        self._gate()
        return self.inner.list(*a, **kw)

    def create(self, *a: Any, **kw: Any) -> Any:
        self._gate()
        return self.inner.create(*a, **kw)

    def update(self, *a: Any, **kw: Any) -> Any:
        self._gate()
        return self.inner.update(*a, **kw)

    def update_status(self, *a: Any, **kw: Any) -> Any:
        self._gate()
        return self.inner.update_status(*a, **kw)

    def patch(self, *a: Any, **kw: Any) -> Any:
        self._gate()
        return self.inner.patch(*a, **kw)

    def delete(self, *a: Any, **kw: Any) -> Any:
        self._gate()
        return self.inner.delete(*a, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class ClustersGuard:
    """ClusterClients: a DPU cluster's client comes back guarded when a fault targets that cluster."""

    def __init__(self, inner: Any, injector: Injector) -> None:
        self.inner = inner
        self.injector = injector

    def for_kubeconfig(self, kubeconfig: bytes) -> Any:
        client = self.inner.for_kubeconfig(kubeconfig)
        if client is None:
            return None
        for name, store in self.injector.twin.dpu_clusters.items():
            if store is client:
                g = self.injector._guards.get(name)
                return g if g is not None else client
        return client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class LatencyCost:
    """The driver's CostModel plus the API latency the last reconcile's calls owed."""

    def __init__(self, inner: Any, injector: Injector) -> None:
        self.inner = inner
        self.injector = injector

    def cost(self, controller: str, writes: int) -> float:
        return float(self.inner.cost(controller, writes)) + self.injector.drain_latency()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _dpu_of_op(op: Any) -> str | None:
    target = getattr(op, "target", None)
    if isinstance(target, DmsTarget):
        return target.dpu.rsplit("/", 1)[-1]
    return None


class OpGuard:
    """Wraps the twin's op executor: DMS faults act on the ops addressed to their DPUs."""

    def __init__(self, inner: Callable[[Any], Generator[Any, Any, Any]], injector: Injector) -> None:
        self.inner = inner
        self.injector = injector

    def __call__(self, op: Any) -> Generator[Any, Any, Any]:
        return self._run(op)

    def _run(self, op: Any) -> Generator[Any, Any, Any]:
        dpu = _dpu_of_op(op)
        faults = [f for f in self.injector.active if isinstance(f, DmsFault) and dpu in f.targets] if dpu else []
        for f in faults:
            yield from f.before(op)
        result = yield from self.inner(op)
        for f in faults:
            f.after(op, dpu or "")
        if dpu and isinstance(op, OsActivate) and not op.no_reboot:
            for corrupt in self.injector.corrupt:
                corrupt.flashed(dpu, op.version.split(";")[0])
        return result


class DmsGuard:
    """The Dms port: the inline dial fails for a DPU whose DMS is unreachable."""

    def __init__(self, inner: Any, injector: Injector) -> None:
        self.inner = inner
        self.injector = injector

    def reachable(self, address: str) -> bool:
        bfs = self.injector.twin.bluefields.dpus
        for f in self.injector.active:
            if isinstance(f, DmsUnreachable) and any(bfs[d].dms_address == address for d in f.targets):
                return False
        return bool(self.inner.reachable(address))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


# --- the faults ---------------------------------------------------------------------------------------------


class Fault:
    """One fault instance: `start` now, `stop` when its duration is over (or never)."""

    params_model: ClassVar[type[FaultParams]] = FaultParams
    summary: ClassVar[str] = ""
    lasting: ClassVar[bool] = True  # False: done once started (nothing to clear)

    def __init__(self, injector: Injector, params: FaultParams, record: FaultRecord) -> None:
        self.injector = injector
        self.twin = injector.twin
        self.params = params
        self.record = record

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class DmsFault(Fault):
    params_model: ClassVar[type[FaultParams]] = DpuTargets
    targets: set[str]

    def start(self) -> None:
        assert isinstance(self.params, DpuTargets)
        self.targets = set(self.injector.pick_dpus(self.params))
        self.record.dpus = frozenset(self.targets)
        self.record.reasons = frozenset({INSTALLATION_FAILED})
        self.injector.op_guard()

    def before(self, op: Any) -> Generator[Any, Any, None]:
        return
        yield

    def after(self, op: Any, dpu: str) -> None:
        pass


class DmsUnreachable(DmsFault):
    summary = "the DMS of the target DPUs refuses connections (inline dial and every RPC)"

    def before(self, op: Any) -> Generator[Any, Any, None]:
        raise OpError(f"dial {op.target.address}: connection refused ({self.record.marker})", "Unavailable")
        yield


class DmsSlow(DmsFault):
    params_model = DmsSlowParams
    summary = "every DMS RPC to the target DPUs waits `delay` first"

    def before(self, op: Any) -> Generator[Any, Any, None]:
        assert isinstance(self.params, DmsSlowParams)
        yield self.twin.env.timeout(self.params.delay)


class DmsRpcFailure(DmsFault):
    params_model = DmsRpcParams
    summary = "one DMS RPC (`rpc`) fails with status `code` on the target DPUs"

    def before(self, op: Any) -> Generator[Any, Any, None]:
        assert isinstance(self.params, DmsRpcParams)
        if type(op).__name__ == RPCS[self.params.rpc]:
            raise OpError(f"rpc error: code = {self.params.code} desc = {self.params.rpc} failed ({self.record.marker})",
                          self.params.code)
        return
        yield


class FlashFailure(DmsFault):
    summary = "a flash started on a target DPU fails: the DPU does not boot, RebootStatus says STATUS_FAILURE"

    def start(self) -> None:
        super().start()
        self.record.patterns = ("reboot failure",)

    def after(self, op: Any, dpu: str) -> None:
        if isinstance(op, OsActivate) and not op.no_reboot:
            self.twin.bluefields.get(dpu).boot_fault = "fail"
            self.injector.log(f"{self.record.marker}: flash of {dpu} will fail")


WATCHDOG_RECHECK = 5.0  # s between the BMC watchdog's looks at a host still down


class DpuHang(Fault):
    params_model = DpuTargets
    summary = ("the next boot of each target DPU hangs (RebootStatus stays active); when the fault clears, the BMC "
               "watchdog power-cycles the hosts of DPUs still hung")

    def start(self) -> None:
        assert isinstance(self.params, DpuTargets)
        self.targets = self.injector.pick_dpus(self.params)
        self.record.dpus = frozenset(self.targets)
        self.record.reasons = frozenset({INSTALLATION_FAILED})
        self.record.patterns = ("timed out", "deadline", "DPU Hung", "connection refused")
        for d in self.targets:
            self.twin.bluefields.get(d).boot_fault = "hang"
        self.cycled = False
        self.twin.env.process(self._kubelet())

    def _kubelet(self) -> Generator[Any, Any, None]:
        """A hung DPU's kubelet posts no status: its Node goes NotReady (node-monitor-grace-period 40 s) until
        the DPU is back and joined. The twin's Nodes do not follow DPU liveness by themselves."""
        silent: set[str] = set()
        pending = set(self.targets)
        while pending:
            yield self.twin.env.timeout(NODE_GRACE)
            for d in sorted(pending):
                bf = self.twin.bluefields.get(d)
                if bf.state == DpuState.HUNG and d not in silent and _set_node_ready(self, d, False):
                    silent.add(d)
                elif d in silent and bf.joined:
                    _set_node_ready(self, d, True)
                    silent.discard(d)
                    pending.discard(d)
                elif d not in silent and self.record.ended is not None and bf.boot_fault is None:
                    pending.discard(d)

    def stop(self) -> None:
        cycled: set[str] = set()
        for d in self.targets:
            bf = self.twin.bluefields.get(d)
            if bf.boot_fault == "hang":
                bf.boot_fault = None
            elif bf.state == DpuState.HUNG and bf.host not in cycled:
                cycled.add(bf.host)
                self.twin.env.process(self._watchdog(bf.host, d))

    def _watchdog(self, host: str, dpu: str) -> Generator[Any, Any, None]:
        """Power-cycle the host of a DPU still hung. A host in its own reboot is waited for first: its return
        does not reset the DPU (the reset was at its start), so a DPU that hung then would stay hung for good
        (chaos seed 242)."""
        hosts = self.twin.hosts
        while not hosts.is_up(host):
            yield self.twin.env.timeout(WATCHDOG_RECHECK)
        if self.twin.bluefields.get(dpu).state != DpuState.HUNG:
            return
        rng = self.twin.streams.get(f"powercycle/{host}")
        hosts.reboot(host, hosts.params.power_cycle_time.sample(rng), power_cycle=True)
        self.injector.log(f"{self.record.marker}: watchdog power-cycles {host} ({dpu} hung)")


class BfbServerFault(Fault):
    params_model = BfbParams

    def fault(self) -> BfbFault:
        raise NotImplementedError

    def start(self) -> None:
        assert isinstance(self.params, BfbParams)
        self.url = self._url(self.params)
        self.record.bfb_urls = frozenset({self.url})
        self.record.dpus = frozenset()  # a BFB fault never puts a DPU in Error; DPUs wait on the BFB
        self.twin.bfb_servers.set_fault(self.url, self.fault())

    def _url(self, p: BfbParams) -> str:
        if p.url is not None:
            return p.url
        assert p.bfb is not None
        ns, _, name = p.bfb.rpartition("/")
        for b in self.twin.host.list(BFB, ns or None):
            if b.name == name:
                return str(b.spec.url)
        raise FaultError(f"no BFB {p.bfb} in the host cluster")

    def stop(self) -> None:
        self.twin.bfb_servers.set_fault(self.url, None)


class BfbNotFound(BfbServerFault):
    summary = "the BFB server answers 404 for the URL"

    def fault(self) -> BfbFault:
        return BfbFault(not_found=True)


class BfbSlow(BfbServerFault):
    summary = "the BFB server serves the URL at most at `rate`"

    def fault(self) -> BfbFault:
        assert isinstance(self.params, BfbParams)
        return BfbFault(max_rate=parse_rate(self.params.rate))


class BfbCorrupt(BfbServerFault):
    summary = ("the bytes of the URL arrive but their sha256 is not the catalogue's; DPF checks no checksum, so "
               "the BFB turns Ready and every DPU flashed with the corrupt file fails to boot")

    def fault(self) -> BfbFault:
        return BfbFault(corrupt=True)

    def start(self) -> None:
        super().start()
        self.record.dpus = frozenset()
        self.record.reasons = frozenset({INSTALLATION_FAILED})
        self.record.patterns = ("reboot failure",)
        self.bad_sha = hashlib.sha256(f"corrupt:{self.url}".encode()).hexdigest()
        self.injector.op_guard()
        # The corrupt file stays on the share after the fault clears: keep watching flashes for good.
        self.injector.corrupt.append(self)

    def flashed(self, dpu: str, version: str) -> None:
        bf = self.twin.bluefields.get(dpu)
        image = bf.staged.get(version)
        if image is not None and image.sha256 == self.bad_sha:
            bf.boot_fault = "fail"
            self.record.dpus = (self.record.dpus or frozenset()) | {dpu}
            self.injector.log(f"{self.record.marker}: {dpu} flashes a corrupt {version}")


class LinkFault(Fault):
    params_model = LinkParams

    def start(self) -> None:
        assert isinstance(self.params, LinkParams)
        net = self.twin.net
        self.link = self._resolve(self.params)
        net.set_link(self.link, **self._set())
        # An install streams the BFB share -> DPU; one crossing this link can time out under the DMS deadline.
        fleet = self.twin.fleet
        a, _, b = self.link.partition("->")
        both = {self.link, f"{b}->{a}"}
        self.record.dpus = frozenset(d for d in fleet.dpus if both & set(fleet.path(fleet.bfb_share, d)))
        self.record.reasons = frozenset({INSTALLATION_FAILED})
        self.record.patterns = ("deadline exceeded",)

    def _set(self) -> dict[str, Any]:
        raise NotImplementedError

    def _resolve(self, p: LinkParams) -> str:
        fleet = self.twin.fleet
        try:
            if p.link is not None:
                link = p.link
            elif p.between is not None:
                link = f"{p.between[0]}->{p.between[1]}"
            elif p.host is not None:
                link = fleet.path(p.host, "core")[0]
            else:
                tor = f"tor-{p.rack}"
                link = fleet.path(tor, "core")[0]
        except Exception as e:  # networkx raises its own errors for unknown nodes
            raise FaultError(f"cannot resolve the link: {e}") from None
        if link not in set(fleet.links()):
            raise FaultError(f"no link {link!r} in the fleet")
        return link

    def stop(self) -> None:
        self.twin.net.set_link(self.link, up=True, factor=1.0)


class LinkDown(LinkFault):
    summary = "a link carries nothing (flows stall, keeping their progress)"

    def _set(self) -> dict[str, Any]:
        return {"up": False}


class LinkDegraded(LinkFault):
    summary = "a link runs at `factor` of its bandwidth"

    def _set(self) -> dict[str, Any]:
        assert isinstance(self.params, LinkParams)
        return {"factor": self.params.factor}


class BrownoutFault(Fault):
    params_model = BrownoutParams
    summary = "the API server of a store answers slowly (`latency` per call) and fails `errorRate` of the calls"
    latency = 0.0
    error_rate = 0.0

    def start(self) -> None:
        assert isinstance(self.params, BrownoutParams)
        self.latency = self.params.latency
        self.error_rate = self.params.error_rate
        self.code = self.params.code
        self.errors = 0
        self.record.dpus = None  # any DPU, recognised by the marker in the message
        self.stores = self._stores(self.params.store)
        self.guards = [self.injector.guard(s) for s in self.stores]
        for g in self.guards:
            g.faults.append(self)
        self.injector.recheck_while(self, self.stores)

    def _stores(self, store: str) -> list[str]:
        if store == "dpuClusters":
            return sorted(self.twin.dpu_clusters)
        return [store]

    def error(self) -> ApiError:
        m = self.record.marker
        if self.code == 429:
            return TooManyRequests(f"the server has received too many requests and has asked us to try again later ({m})")
        if self.code == 500:
            return ApiError(f"an error on the server has prevented the request from succeeding ({m})")
        return ServiceUnavailable(f"the server is currently unable to handle the request ({m})")

    def stop(self) -> None:
        for g in self.guards:
            if self in g.faults:
                g.faults.remove(self)
        self.record.note = f"{self.errors} call(s) failed"
        self.injector.wake_ready(self.stores)


class WatchDrop(Fault):
    params_model = ManagerParams
    summary = ("the managers' watch streams are cut: no event reaches the controllers until the fault clears, "
               "then the informers re-list (what client-go does after a 410 Gone)")

    def start(self) -> None:
        assert isinstance(self.params, ManagerParams)
        self.managers = self.injector.managers(self.params.manager)
        for m in self.managers:
            m.stop()
            m.started = False
        self.record.dpus = frozenset()

    def stop(self) -> None:
        for m in self.managers:
            if id(m) not in self.injector.crashed and not m.started:
                m.start()


class ControllerCrash(Fault):
    params_model = CrashParams
    summary = ("the controller process dies (queues, caches, running tasks: all in-memory state lost) and a fresh "
               "one from the same composition starts `downtime` later, rebuilding from the store alone")

    def start(self) -> None:
        assert isinstance(self.params, CrashParams)
        name = self.params.manager or "provisioning"
        restartable = ["provisioning"] + (["dpuservice"] if getattr(self.twin, "services", None) is not None else [])
        if name not in restartable:
            raise FaultError(f"controllerCrash: the twin can restart only the {' or '.join(restartable)} "
                             f"manager, not {name!r}")
        self.name = name
        (old,) = self.injector.managers(name)
        self.twin.driver.stop(old)
        self.injector.crashed.add(id(old))
        self.record.dpus = frozenset()
        if name == "dpuservice":
            return  # its controllers keep no tasks: everything they track is in the stores
        # The install/reboot/download tasks ran inside the process (goroutines in DPF): gone with it. What they
        # started on the hardware (a flash, a host reboot) goes on.
        tasks: Any = self.twin.tasks
        lost = list(tasks.keys())
        for key in lost:
            tasks.forget(key)
        self.record.note = f"{len(lost)} task(s) lost"

    def stop(self) -> None:
        if self.name == "dpuservice":
            services: Any = self.twin.services  # type: ignore[attr-defined]  # set by the services attachment
            fresh = services.build_manager()
            services.manager = fresh
        else:
            fresh = self.twin.build_provisioning_manager()
            self.twin.manager = fresh
        self.injector.wrap_manager(fresh)
        self.twin.driver.add(fresh)
        self.injector.log(f"{self.record.marker}: {self.name} manager restarted")


class ControlPlaneDown(Fault):
    params_model = ClusterParams
    summary = ("a DPU cluster's API server is gone: every call to it fails (connection refused), kubeadm joins "
               "retry, Kamaji reports the TenantControlPlane NotReady")

    def start(self) -> None:
        assert isinstance(self.params, ClusterParams)
        clusters = [self.params.cluster] if self.params.cluster else sorted(self.twin.dpu_clusters)
        self.clusters = clusters
        self.errors = 0
        self.latency = 0.0
        self.error_rate = 1.0
        self.guards = [self.injector.guard(c) for c in clusters]
        for g in self.guards:
            g.faults.append(self)  # type: ignore[arg-type]
        self.injector.join_guard()
        self.injector.denied_joins.update(clusters)
        self.record.dpus = None
        for c in clusters:
            self._tcp(c, "NotReady")
        self.injector.recheck_while(self, clusters)

    def error(self) -> ApiError:
        return ServiceUnavailable(f"dial tcp: connect: connection refused ({self.record.marker})")

    def _tcp(self, cluster: str, status: str) -> None:
        ns, _, name = cluster.partition("/")
        tcp = self.twin.host.try_get(TenantControlPlane, name, ns)
        if tcp is None:
            return
        version = (tcp.model_dump(by_alias=True).get("status") or {}).get("kubernetesResources", {}).get("version", {})
        self.twin.host.patch(TenantControlPlane, name, ns, {"status": {"kubernetesResources": {"version": {
            **version, "status": status}}}}, subresource="status")

    def stop(self) -> None:
        for g in self.guards:
            if self in g.faults:  # type: ignore[comparison-overlap]
                g.faults.remove(self)  # type: ignore[arg-type]
        self.injector.denied_joins.difference_update(self.clusters)
        for c in self.clusters:
            self._tcp(c, "Ready")
        self.injector.wake_ready(self.clusters)


class NodeNotReady(Fault):
    params_model = DpuTargets
    summary = "the kubelet of the target DPUs stops posting Ready: their Nodes in the DPU cluster turn NotReady"

    def start(self) -> None:
        assert isinstance(self.params, DpuTargets)
        self.targets = self.injector.pick_dpus(self.params)
        self.record.dpus = frozenset(self.targets)
        self.record.reasons = frozenset({"DPUNodeNotReady"})
        self.affected = [d for d in self.targets if _set_node_ready(self, d, False)]
        self.record.note = f"{len(self.affected)} Node(s) set NotReady"

    def stop(self) -> None:
        for d in self.affected:
            _set_node_ready(self, d, True)


NODE_GRACE = 40.0  # kube-controller-manager's node-monitor-grace-period


def _set_node_ready(fault: Fault, dpu: str, ready: bool) -> bool:
    """Set the Ready condition of DPU `dpu`'s Node in its DPU cluster; False when there is no such Node."""
    twin = fault.twin
    cluster = fault.injector.dpu_cluster_of(dpu)
    store = twin.dpu_clusters.get(cluster or "")
    if store is None or store.try_get(Node, dpu) is None:
        return False
    now = rfc3339(twin.clock.now())
    cond = ({"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"}
            if ready else {"type": "Ready", "status": "False", "reason": "NodeStatusUnknown",
                           "message": f"Kubelet stopped posting node status ({fault.record.marker})"})
    store.patch(Node, dpu, None, {"status": {"conditions": [{**cond, "lastHeartbeatTime": now,
                                                             "lastTransitionTime": now}]}}, subresource="status")
    return True


class OvsRestart(Fault):
    params_model = DpuTargets
    summary = "Open vSwitch on the target DPUs restarts: flows and ports lost, the SFC agent must restore them"
    lasting = False

    def start(self) -> None:
        assert isinstance(self.params, DpuTargets)
        if importlib.util.find_spec("dpf_sim.servicechain") is None:
            raise FaultError("ovsRestart needs the service-chain twin (dpf_sim/servicechain.py with per-node OVS "
                             "models), which this tree does not have yet")
        world = getattr(self.twin, "servicechain", None)
        datapaths = getattr(world, "ovs", None)
        if not isinstance(datapaths, Mapping):
            raise FaultError("ovsRestart: the service-chain twin exposes no per-node OVS models (twin.servicechain.ovs)")
        # DPU nodes by name: the fleet's DPUs once they joined, or a service-chain twin's pre-provisioned nodes.
        targets = self.injector.pick_dpus(self.params, datapaths)
        self.record.dpus = frozenset()
        for d in targets:
            dp = datapaths.get(d)
            if dp is None:
                continue  # not (yet) a DPU node: nothing runs OVS flows there
            flows, ports = dp.restart(_survives_ovs_restart)
            self.injector.log(f"{self.record.marker}: OVS on {d} restarted, {flows} flow(s) and {ports} port(s) lost")


def _survives_ovs_restart(br: Any, port: Any) -> bool:
    """What an OVS restart keeps (the database comes back as the DPUFlavor's OVS script and the pods left it):
    the script's ports (the uplinks, br-ovn's host port), without what the SFC agent wrote on them, and the
    pods' ports (ovs-cni's, `contNetns` on the Port), which no reconcile would add back without restarting the
    pods. The SFC agent's own ports (Interface `dpf-id=<ns>/<ServiceInterface>`) and every flow are lost: the
    agent must restore them on its next passes (20 s for interfaces, its flow period for flows)."""
    if "contNetns" in port.external_ids:
        return True
    if port.external_ids.get("dpf-type") == "physical":
        port.interface.external_ids.pop("dpf-id", None)
        return True
    return "dpf-id" not in port.interface.external_ids


class Chaos(Fault):
    params_model = ChaosParams
    summary = "a random schedule of the other faults, drawn from the run's seed (dpf_sim.chaos)"
    lasting = False

    def start(self) -> None:
        from .chaos import schedule, start_churn

        assert isinstance(self.params, ChaosParams)
        plan = schedule(self.twin, self.params, self.injector.twin.streams.get("chaos"))
        churn = start_churn(self.twin, self.params, self.record.marker) if self.params.churn is not None else []
        self.record.dpus = frozenset()
        self.record.note = f"{len(plan)} fault(s) scheduled" + (f", {len(churn)} churn action(s)" if churn else "")
        env = self.twin.env
        for delay, spec in plan:
            env.process(self._later(delay, spec))

    def _later(self, delay: float, spec: dict[str, Any]) -> Generator[Any, Any, None]:
        from .chaos import resolve_any_bfb

        assert isinstance(self.params, ChaosParams)
        yield self.twin.env.timeout(delay)
        resolved = resolve_any_bfb(self.twin, spec, self.params.protect_bfbs, self.twin.streams.get("chaos/bfb"))
        if resolved is None:
            self.injector.log(f"{self.record.marker}: skipped {spec.get('type')}: no BFB to target")
            return
        try:
            inject(self.twin, resolved)
        except FaultError as e:  # a target that vanished since the plan was drawn: skip, say so
            self.injector.log(f"{self.record.marker}: skipped {spec.get('type')}: {e}")


class ClearFaults(Fault):
    summary = "clears every active fault now (a scenario's \"faults are over\" step)"
    lasting = False

    def start(self) -> None:
        self.record.dpus = frozenset()
        clear_all(self.twin)


FAULTS: dict[str, type[Fault]] = {
    "dmsUnreachable": DmsUnreachable,
    "dmsSlow": DmsSlow,
    "dmsRpcFailure": DmsRpcFailure,
    "flashFailure": FlashFailure,
    "dpuHang": DpuHang,
    "bfbNotFound": BfbNotFound,
    "bfbSlow": BfbSlow,
    "bfbCorrupt": BfbCorrupt,
    "linkDown": LinkDown,
    "linkDegraded": LinkDegraded,
    "apiBrownout": BrownoutFault,
    "watchDrop": WatchDrop,
    "controllerCrash": ControllerCrash,
    "controlPlaneDown": ControlPlaneDown,
    "nodeNotReady": NodeNotReady,
    "ovsRestart": OvsRestart,
    "chaos": Chaos,
    "clearFaults": ClearFaults,
}


def fault_types() -> list[str]:
    return sorted(FAULTS)


def parse(raw: Mapping[str, Any]) -> tuple[type[Fault], FaultParams]:
    """Validate a fault mapping; FaultError lists every problem as `<field>: <message>`."""
    if not isinstance(raw, Mapping):
        raise FaultError(f"a fault is a mapping, not a {type(raw).__name__}")
    ftype = raw.get("type")
    cls = FAULTS.get(ftype) if isinstance(ftype, str) else None
    if cls is None:
        raise FaultError(f"unknown fault type {ftype!r} (one of {', '.join(fault_types())})")
    try:
        params = cls.params_model.model_validate(dict(raw))
    except ValidationError as err:
        problems = []
        for e in err.errors(include_url=False):
            where = ".".join(str(p) for p in e["loc"]) or "<fault>"
            msg = "unknown field" if e["type"] == "extra_forbidden" else str(e["msg"]).removeprefix("Value error, ")
            problems.append(f"{where}: {msg}")
        raise FaultError(f"fault {ftype}: " + "; ".join(problems)) from None
    return cls, params


def check_fault(raw: Mapping[str, Any]) -> list[str]:
    """Load-time problems of a fault step (for the scenario loader): [] when it parses."""
    try:
        parse(raw)
    except FaultError as e:
        return [str(e)]
    return []


def injector(twin: Twin) -> Injector:
    inj: Injector | None = getattr(twin, "faults", None)
    if inj is None:
        inj = Injector(twin)
        twin.faults = inj  # type: ignore[attr-defined]
    return inj


def inject(twin: Twin, raw: Mapping[str, Any]) -> FaultRecord:
    """Start the fault `raw` now; clear it after its duration. Returns its record."""
    cls, params = parse(raw)
    inj = injector(twin)
    twin.bluefields.disturb_all(quiet=False)  # no more skipped RebootStatus polls: faults see each one
    duration = params.downtime if isinstance(params, CrashParams) else params.duration
    rec = inj.record(str(params.type), params.model_dump(by_alias=True, exclude_none=True), duration)
    fault = cls(inj, params, rec)
    try:
        fault.start()
    except FaultError:
        inj.records.remove(rec)
        inj.counts[rec.type] -= 1
        raise
    inj.log(f"{rec.marker} started {rec.params}")
    if not cls.lasting:
        rec.ended = rec.started
        return rec
    inj.active.append(fault)
    if duration is not None:
        twin.env.process(_clear_after(inj, fault, duration))
    return rec


def _clear_after(inj: Injector, fault: Fault, duration: float) -> Generator[Any, Any, None]:
    yield inj.env.timeout(duration)
    if fault.record.ended is not None:
        return  # cleared early (clearFaults)
    fault.stop()
    fault.record.ended = float(inj.env.now)
    if fault in inj.active:
        inj.active.remove(fault)
    inj.log(f"{fault.record.marker} cleared" + (f" ({fault.record.note})" if fault.record.note else ""))


def clear_all(twin: Twin) -> None:
    """Clear every active fault now (a test's teardown, or a scenario's "faults over" step). A chaos step's
    faults not started yet still start later."""
    inj = injector(twin)
    for fault in list(inj.active):
        if fault.record.ended is not None:
            continue
        fault.stop()
        fault.record.ended = float(inj.env.now)
        inj.active.remove(fault)


def describe_catalogue() -> list[tuple[str, str]]:
    return [(name, cls.summary) for name, cls in sorted(FAULTS.items())]


def stats(twin: Twin) -> dict[str, Any]:
    inj: Injector | None = getattr(twin, "faults", None)
    if inj is None:
        return {"injected": 0, "by_type": {}}
    return {"injected": len(inj.records), "by_type": dict(sorted(inj.counts.items())),
            "records": [r.as_dict() for r in inj.records]}
