"""Chaos: random fault schedules drawn from the seed, the convergence expectation, and the always-on invariants.

- `schedule()` draws the faults of a `chaos` fault step (dpf_sim.faults.Chaos) from the run's `chaos` stream:
  the same seed gives the same schedule, any fleet size.
- `churn_plan()` draws the DPUService churn of a chaos step (`churn:`, with the services attachment) from the
  `chaos/churn` stream: DPUServices created, their helm values or chart version changed, some deleted, all
  while the faults run. `start_churn()` plays it; `twin.churn` (a `Churn`) keeps what happened.
- `converged` (an expectation, after the step that ends the faults, within a deadline): every DPU of the fleet
  exists once and is Ready on its DPUSet's BFB, or is in Error with a reason an injected fault explains, or
  waits on a BFB that an injected BFB fault put in Error. With the services attachment also: every DPUService
  Ready at its generation, its Applications matching it and Synced + Healthy, the DPU clusters running exactly
  what they render; nothing left of a deleted DPUService (no Application, no workload, no finalizer).
- Invariants meant to hold in every scenario, after every event: `noObjectLost`, `finalizersRemoved`,
  `flashMatchesSpec`, `rolloutBudget`, `noOverlappingIpam` (plus expect.py's `singleFlash` and
  `maxUnavailable`), and two that cost nothing without their attachment: `ovsSwept` (servicechain: no stale
  br-sfc flow or port outlives the SFC agent's sweep period) and `applicationsMatch` (services: every ArgoCD
  Application matches its DPUService, and none outlives it, past a grace derived from the controller's
  requeue and ArgoCD's sync delays). `always_on_specs()` lists them for the runner.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import Field

from dpf_core.api.external import LABEL_ARGOCD_INSTANCE, Application, CIDRPool, DaemonSet, Deployment, IPPool, Node
from dpf_core.api.meta import KubeObject, Model
from dpf_core.api.provisioning import (
    BFB,
    DPU,
    DPU_PCI_ADDRESS_LABEL,
    DPUSET_NAME_LABEL,
    DPUSET_NAMESPACE_LABEL,
    BFBPhase,
    DPUPhase,
    DPUSet,
)
from dpf_core.api.svc import LABEL_DPUSERVICE_NAME, LABEL_DPUSERVICE_NAMESPACE, DPUService
from dpf_core.controllers.dpuset import max_unavailable
from dpf_core.errors import ApiError
from dpf_core.store.protocol import WatchEvent
from dpf_core.store.selectors import compile_label_selector

from .durations import Duration
from .expect import Check, Invariant, ObjKey, obj_key, register_invariant, show_key
from .scenario import InvariantSpec, LoadedScenario, Scenario

if TYPE_CHECKING:
    from .faults import ChaosParams, ChurnParams, FaultRecord
    from .services import Services
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
SERVICE_MANAGERS = ("provisioning", "dpuservice")  # the processes controllerCrash kills with services on


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
    # With the services attachment the API faults also aim at what DPUServices need: the DPU clusters' API
    # servers and the dpuservice controllers' process.
    services_on = getattr(twin, "services", None) is not None
    brownout_stores = ("host", "dpuClusters") if services_on else ("host", "host", "dpuClusters")
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
            spec["store"] = rng.choice(brownout_stores)
            spec["latency"] = round(rng.uniform(0.0, 0.5), 3)
            spec["errorRate"] = round(rng.uniform(0.05, 0.6), 3)
            spec["code"] = rng.choice((429, 500, 503))
        elif ftype == "controllerCrash":
            del spec["duration"]
            spec["downtime"] = round(rng.uniform(5.0, 120.0), 3)
            if services_on:
                spec["manager"] = rng.choice(SERVICE_MANAGERS)
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


# --- service churn ------------------------------------------------------------------------------------------

ChurnAction = dict[str, Any]  # {"op": "create"|"update"|"delete", "name": ..., plus "manifest" or "patch"}


def _chart_versions(services: Services) -> list[tuple[str, str, list[str]]]:
    """(repoURL, chart, [versions]) of the catalogue, in a stable order (the plan must not depend on dict order)."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for chart in services.catalogue.charts.values():
        grouped.setdefault((chart.repo_url, chart.chart or ""), []).append(chart.version)
    return [(repo, chart, sorted(versions)) for (repo, chart), versions in sorted(grouped.items())]


def churn_plan(twin: Twin, churn: ChurnParams, over: float, rng: random.Random) -> list[tuple[float, ChurnAction]]:
    """The churn as (delay after the chaos step, action), sorted by delay. Services are created in the first
    half of `over` (on a random chart and version of the catalogue), each update lands while its service
    lives (a values change, or another version of its chart when there is one), deletions fall after the
    service's creation and before `over`; nothing is recreated under a deleted name."""
    from .faults import FaultError

    services: Services | None = getattr(twin, "services", None)
    if services is None:
        raise FaultError("chaos churn needs the services attachment (attachments: [services])")
    charts = _chart_versions(services)
    if not charts and churn.services:
        raise FaultError("chaos churn needs a chart catalogue (models.charts)")
    plan: list[tuple[float, ChurnAction]] = []
    born: dict[str, float] = {}
    chart_of: dict[str, tuple[str, str, list[str]]] = {}
    for i in range(churn.services):
        name = f"chaos-svc-{i}"
        at = round(rng.uniform(0.0, over / 2), 3)
        repo, chart, versions = chart_of[name] = rng.choice(charts)
        born[name] = at
        manifest = {
            "apiVersion": "svc.dpu.nvidia.com/v1alpha1", "kind": "DPUService",
            "metadata": {"name": name, "namespace": churn.namespace},
            "spec": {"helmChart": {"source": {"repoURL": repo, "chart": chart, "version": rng.choice(versions)},
                                   "values": {"labels": {"release": "r0"}}}},
        }
        plan.append((at, {"op": "create", "name": name, "manifest": manifest}))
    names = sorted(born)
    dies: dict[str, float] = {}
    for name in sorted(rng.sample(names, min(churn.deletes, len(names)))):
        dies[name] = round(rng.uniform(born[name], over), 3)
        plan.append((dies[name], {"op": "delete", "name": name}))
    for n in range(churn.updates):
        if not names:
            break
        name = rng.choice(names)
        at = round(rng.uniform(born[name], dies.get(name, over)), 3)
        _, _, versions = chart_of[name]
        if len(versions) > 1 and rng.random() < 0.5:
            patch: dict[str, Any] = {"spec": {"helmChart": {"source": {"version": rng.choice(versions)}}}}
        else:
            patch = {"spec": {"helmChart": {"values": {"labels": {"release": f"r{n + 1}"}}}}}
        plan.append((at, {"op": "update", "name": name, "patch": patch}))
    order = {"create": 0, "update": 1, "delete": 2}  # at one instant a service is born before it changes or dies
    plan.sort(key=lambda x: (x[0], order[x[1]["op"]], x[1]["name"]))
    return plan


class Churn:
    """What the chaos step's churn did, on `twin.churn`: counts and the names it created and deleted."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.counts: dict[str, int] = {"create": 0, "update": 0, "delete": 0, "failed": 0}
        self.created: list[str] = []
        self.deleted: list[str] = []
        self.failures: list[str] = []

    def as_dict(self) -> dict[str, Any]:
        return {"namespace": self.namespace, **self.counts, "deleted": list(self.deleted),
                **({"failures": list(self.failures)} if self.failures else {})}


def start_churn(twin: Twin, params: ChaosParams, marker: str) -> list[tuple[float, ChurnAction]]:
    """Draw the chaos step's churn and start playing it (user actions at their times, past any fault: a
    person re-runs kubectl until it works, so they go to the store directly)."""
    assert params.churn is not None
    plan = churn_plan(twin, params.churn, params.over, twin.streams.get("chaos/churn"))
    churn = Churn(params.churn.namespace)
    twin.churn = churn  # type: ignore[attr-defined]
    for delay, action in plan:
        twin.env.process(_play(twin, churn, delay, action, marker))
    return plan


def _play(twin: Twin, churn: Churn, delay: float, action: ChurnAction, marker: str) -> Any:
    yield twin.env.timeout(delay)
    op, name, ns = action["op"], action["name"], churn.namespace
    try:
        if op == "create":
            twin.apply([action["manifest"]])
            churn.created.append(name)
        elif op == "update":
            twin.host.patch(DPUService, name, ns, action["patch"], "merge")
        else:
            twin.host.delete(DPUService, name, ns)
            churn.deleted.append(name)
    except ApiError as e:
        churn.counts["failed"] += 1
        churn.failures.append(f"{op} {ns}/{name}: {e}")
        twin.log.write(twin.env.now, f"churn {marker}: {op} DPUService {ns}/{name} failed: {e}")
        return
    churn.counts[op] += 1
    twin.log.write(twin.env.now, f"churn {marker}: {op} DPUService {ns}/{name}")


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


SERVICE_KINDS: tuple[type[KubeObject], ...] = (DPUService, Application, DaemonSet, Deployment)


def services_why_not(twin: Any) -> dict[str, str]:
    """What keeps the DPUService world from having converged ({} = converged), keyed by the object:

    - every DPUService is Ready at its current generation, has one Application per DPU cluster, each of them
      matching it (chart version, values) and Synced + Healthy at that version;
    - each DPU cluster runs exactly the workloads those Applications render, all of them fully rolled out;
    - nothing is left of a deleted DPUService: no DPUService still deleting (finalizers), no Application
      labelled for a DPUService that is gone, no workload of an Application that is gone."""
    from dpf_core.api.provisioning import DPUCluster
    from dpf_core.controllers.dpuservice import service_values

    from .argocd import SyncError, render, workload_healthy

    services: Services = twin.services
    host = twin.host
    out: dict[str, str] = {}
    clusters = len(host.list(DPUCluster))
    live: dict[tuple[str, str], DPUService] = {}
    for svc in host.list(DPUService):
        key = f"DPUService {svc.namespace}/{svc.name}"
        if svc.metadata.deletion_timestamp is not None:
            out[key] = f"still deleting (finalizers {list(svc.metadata.finalizers)})"
            continue
        live[(svc.namespace or "", svc.name)] = svc
        ready = next((c for c in svc.status.conditions if c.type == "Ready"), None)
        if ready is None or ready.status != "True":
            out[key] = f"Ready={ready.status if ready else 'missing'} ({ready.reason if ready else ''}: " \
                       f"{ready.message if ready else ''})"
            continue
        if svc.status.observed_generation != svc.metadata.generation:
            out[key] = f"status is of generation {svc.status.observed_generation}, spec is {svc.metadata.generation}"
            continue
        apps = host.list(Application, label_selector={LABEL_DPUSERVICE_NAME: svc.name,
                                                      LABEL_DPUSERVICE_NAMESPACE: svc.namespace or ""})
        want_apps = 1 if svc.spec.should_deploy_in_cluster() else clusters
        if len(apps) != want_apps:
            out[key] = f"{len(apps)} Application(s), expected {want_apps}"
        source = svc.spec.helm_chart.source
        for app in apps:
            akey = f"Application {app.namespace}/{app.name}"
            src = app.spec.source
            helm = src.helm if src is not None else None
            values = (helm.values_object if helm is not None else None) or {}
            sds = values.get("serviceDaemonSet") if isinstance(values.get("serviceDaemonSet"), dict) else {}
            if src is None or src.target_revision != source.version or values != service_values(svc, sds or {}):
                out[akey] = f"does not match DPUService {svc.namespace}/{svc.name} (version " \
                            f"{src.target_revision if src else None}, want {source.version})"
                continue
            sync = app.status.sync
            if not app.is_synced_and_healthy() or sync is None or sync.revision != source.version:
                out[akey] = f"not Synced + Healthy at {source.version} (sync {sync.status if sync else None} at " \
                            f"{sync.revision if sync else None}, health " \
                            f"{app.status.health.status if app.status.health else None})"
                continue
            try:
                store = services.argocd.destination(app)
                chart = services.catalogue.find(src.repo_url, src.chart, src.target_revision, src.path)
            except SyncError as e:
                out[akey] = str(e)
                continue
            if chart is None:
                out[akey] = f"chart {src.chart or src.path} {src.target_revision} not in the catalogue"
                continue
            release = (helm.release_name if helm is not None else None) or app.name
            rendered = render(chart, app.name, release, app.spec.destination.namespace or "default", values)
            for obj in rendered:
                have = store.try_get(type(obj), obj.name, obj.namespace)
                wkey = f"{obj.kind} {obj.namespace}/{obj.name} of {app.name}"
                if have is None:
                    out[wkey] = "missing"
                elif have.spec.wire() != obj.spec.wire():  # type: ignore[attr-defined]
                    out[wkey] = "spec differs from what its Application renders"
                elif not workload_healthy(have):
                    out[wkey] = "not fully rolled out"
    app_names: set[str] = set()
    for app in host.list(Application):
        app_names.add(app.name)
        owner = app.metadata.labels.get(LABEL_DPUSERVICE_NAME)
        if owner is not None and (app.metadata.labels.get(LABEL_DPUSERVICE_NAMESPACE) or "", owner) not in live:
            out[f"Application {app.namespace}/{app.name}"] = f"left behind by deleted DPUService {owner}"
    for name, store in sorted(twin.dpu_clusters.items()):
        for cls in (DaemonSet, Deployment):
            for w in store.list(cls):
                inst = w.metadata.labels.get(LABEL_ARGOCD_INSTANCE)
                if inst and inst not in app_names:
                    out[f"{cls.KIND.kind} {w.namespace}/{w.name} in {name}"] = f"left behind by deleted Application {inst}"
    return out


@register_invariant("converged")
class Converged(Check):
    """After the faults: every DPU settled (Ready on its DPUSet's BFB, or an explained Error, or waiting on a
    BFB an injected fault broke), and exactly the expected number of DPUs. Passes when that first holds;
    fails at the deadline listing the DPUs that did not settle."""

    blocking = True
    kinds: tuple[type[KubeObject], ...] | None = (DPU, DPUSet, BFB)

    def __init__(self, spec: InvariantSpec) -> None:
        super().__init__(spec.name, spec.after, spec.within)
        self.params = ConvergedParams.model_validate(spec.params)
        self.expected = 0
        self.unsettled: dict[ObjKey, str] = {}
        self.present: set[ObjKey] = set()
        self.started = 0.0
        self.services: Services | None = None
        self.services_unsettled: dict[str, str] = {}
        self.services_checked = 0

    def bind(self, twin: Twin) -> None:
        super().bind(twin)
        self.expected = self.params.dpus if self.params.dpus is not None else len(twin.fleet.dpus)
        self.services = getattr(twin, "services", None)
        if self.services is not None:
            # The DPU clusters' workloads too: a deleted service's DaemonSet going away may be the last change.
            self.kinds = (DPU, DPUSet, BFB, *SERVICE_KINDS)
            self.store = None

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
        budget = max_unavailable(ru.max_unavailable if ru is not None else None, len(members))
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
        elif isinstance(ev.object, SERVICE_KINDS):
            pass  # looked at by _evaluate once the DPUs have settled (a handful of services, cheap)
        elif store == "host":
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
        if self.passed is not None or self.unsettled or len(self.present) != self.expected:
            return
        if self.services is not None:
            self.services_unsettled = services_why_not(self.twin)
            self.services_checked += 1
            if self.services_unsettled:
                return
        self.succeed(f"{len(self.present)} DPU(s) settled at t={self.now:.1f}s "
                     f"({self.now - self.started:.1f}s after the faults); {self._summary()}")

    def _summary(self) -> str:
        assert self.twin is not None
        errors = sum(1 for d in self.twin.host.list(DPU, self.params.namespace) if d.status.phase == DPUPhase.ERROR)
        injected = sum(1 for r in _records(self.twin) if r.type not in META_FAULTS)
        out = f"{errors} in an explained Error, {injected} fault(s) injected"
        if self.services is not None:
            ready = len(self.twin.host.list(DPUService))
            churn: Churn | None = getattr(self.twin, "churn", None)
            did = (f" (churn: {churn.counts['create']} created, {churn.counts['update']} updated, "
                   f"{churn.counts['delete']} deleted)") if churn is not None else ""
            out += f"; {ready} DPUService(s) Ready and deployed as specified, nothing left of deleted ones{did}"
        return out

    def _report(self, why: str) -> None:
        self._rescan()
        self.services_unsettled = {}
        if not self.unsettled and len(self.present) == self.expected:
            self._evaluate()
            if self.passed is not None:
                return
        count = "" if len(self.present) == self.expected else f"{len(self.present)} DPU(s), expected {self.expected}; "
        offending = [f"{show_key(k)}: {v}" for k, v in sorted(self.unsettled.items())]
        offending += [f"{k}: {v}" for k, v in sorted(self.services_unsettled.items())]
        services = f", {len(self.services_unsettled)} service object(s) unsettled" if self.services_unsettled else ""
        self.fail(f"not converged {why}: {count}{len(self.unsettled)} DPU(s) unsettled{services}", offending,
                  history=True)

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
        # (store, kind, namespace) -> {name: uid}, and per DPU (store, namespace) -> {name: (dpuset, node)};
        # nested so that an object costs one dict entry, not a 4-tuple key (~0.9 KB less per DPU at 100k).
        self.uids: dict[tuple[str, str, str], dict[str, str]] = {}
        self.dpu_node: dict[tuple[str, str], dict[str, tuple[ObjKey, str]]] = {}
        self.by_node: dict[tuple[ObjKey, str], list[ObjKey]] = {}  # (dpuset, "node pci") -> its live DPUs
        self._set_keys: dict[ObjKey, ObjKey] = {}

    def activate(self, deleted: list[tuple[str, KubeObject]]) -> None:
        super().activate(deleted)
        assert self.twin is not None
        for name, st in self.twin.stores().items():
            for obj in st.all_objects():
                md = obj.metadata
                self._names(name, obj)[md.name or ""] = md.uid or ""
                if isinstance(obj, DPU):
                    self._dpu(name, obj, gone=False)

    def _names(self, store: str, obj: KubeObject) -> dict[str, str]:
        group = (store, obj.kind, obj.metadata.namespace or "")
        names = self.uids.get(group)
        if names is None:
            names = self.uids[group] = {}
        return names

    def on_event(self, store: str, ev: WatchEvent) -> None:
        self.events += 1
        obj = ev.object
        md = obj.metadata
        names = self._names(store, obj)
        name = md.name or ""
        uid = md.uid or ""
        if ev.type == "ADDED":
            held = names.get(name)
            if held is not None and held != uid:
                self.violate("an object was created twice without a delete in between", [_show4(_key4(store, obj))])
                return
            names[name] = uid
        elif ev.type == "DELETED":
            before = ev.old if ev.old is not None else obj
            if before.metadata.finalizers and md.finalizers:
                self.violate("an object vanished while it still had finalizers",
                             [f"{_show4(_key4(store, obj))} finalizers={list(md.finalizers)}"])
                return
            names.pop(name, None)
        else:
            names.setdefault(name, uid)
        if isinstance(obj, DPU):
            self._dpu(store, obj, gone=ev.type == "DELETED")

    def _dpu(self, store: str, dpu: DPU, gone: bool) -> None:
        ns = dpu.namespace or ""
        name = dpu.name
        placed = self.dpu_node.get((store, ns))
        if placed is None:
            placed = self.dpu_node[(store, ns)] = {}
        prev = placed.pop(name, None)
        if prev is not None:
            live = self.by_node.get(prev)
            if live is not None:
                live[:] = [k for k in live if k[1] != name or k[0] != ns]
                if not live:
                    del self.by_node[prev]
        owner = dpu.metadata.labels.get(DPUSET_NAME_LABEL)
        if gone or not owner or dpu.metadata.deletion_timestamp is not None:
            return
        set_key = (dpu.metadata.labels.get(DPUSET_NAMESPACE_LABEL) or ns, owner)
        set_key = self._set_keys.setdefault(set_key, set_key)
        pci = dpu.metadata.labels.get(DPU_PCI_ADDRESS_LABEL)
        slot = (set_key, f"{dpu.spec.node_name} {pci}" if pci else dpu.spec.node_name)
        live = self.by_node.get(slot)
        if live is None:
            live = self.by_node[slot] = []
        key = obj_key(dpu)
        if key not in live:
            live.append(key)
        placed[name] = slot
        if len(live) > 1:
            where = f"node {dpu.spec.node_name}" + (f" PCI address {pci}" if pci else "")
            self.violate(f"DPUSet {show_key(set_key)} has {len(live)} live DPUs on {where}",
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
        obj = ev.object
        if ev.type == "DELETED":
            self.since.pop(_key4(store, obj), None)
        elif obj.metadata.deletion_timestamp is not None:
            self._mark(_key4(store, obj))
        if self.heap:
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
        found = self.twin.dpu_names.find(dpu)
        objs = [found] if found is not None else []
        if not objs:
            self.violate("a DPU was flashed with no DPU object", [f"{dpu} flashed {version}"])
            return
        obj = objs[0]
        bfb = self.twin.host.try_get(BFB, obj.spec.bfb, obj.namespace)
        want = bfb.spec.file_name if bfb is not None else None
        if want != version:
            self.violate("a DPU was flashed with a BFB other than its spec",
                         [f"{dpu}: flashed {version}, spec.bfb {obj.spec.bfb} is {want or 'missing'}"])


@dataclass
class _SetMembers:
    """The DPUs labelled for one DPUSet, as rolloutBudget counts them."""

    nodes: dict[str, int]  # node -> live DPU objects on it (any state)
    # node -> DPUs being deleted on it: where a Node the set no longer selects can still hold DPUs at a
    # decision (DPF deletes those DPUs before it rolls).
    deleting: dict[str, int]
    unavailable: int = 0  # being deleted or not Ready
    # Live DPU objects in all: the budget's base. A dpuSelector naming two DPU indices gives a Node two DPUs,
    # and the DPUSet controller scales maxUnavailable on DPUs, not Nodes (docs/differences.md).
    count: int = 0


def _unavailable(dpu: DPU) -> bool:
    return dpu.metadata.deletion_timestamp is not None or not any(
        c.type == "Ready" and c.status == "True" for c in dpu.status.conditions)


@register_invariant("rolloutBudget")
class RolloutBudget(Invariant):
    """maxUnavailable as a rule about the DPUSet controller's decisions, so it holds whatever faults do to
    the fleet: a RollingUpdate DPUSet deletes a Ready DPU for an update only while fewer than maxUnavailable
    of its DPUs are unavailable (DPF's rolloutRolling; a DPU already unavailable may always be replaced).
    Unavailable is DPF's `total - len(dpus) + #unavailable`, unclamped, over the set's DPUs (total counts
    DPUs, not Nodes, as our DPUSet controller does: a Node holds one per DPU index the dpuSelector names):
    a DPU not Ready or being deleted counts +1, a DPU on a Node the set no longer selects -1 (so one
    still being deleted there nets out). A selected Node without a DPU is left out of the count and of
    total alike, which lowers the count at least as much as the budget: the check stays sound.

    The counts come from the DPU events themselves (per DPUSet: DPUs per node, unavailable DPUs, nodes with
    DPUs being deleted), so a decision costs O(DPUs being deleted): listing the set on every update deletion
    made this invariant most of a 5,000-host rollout's CPU. A deselected Node's DPUs are looked for only
    among those being deleted: DPF's pass deletes them before it rolls."""

    kinds = (DPU,)

    def __init__(self, spec: InvariantSpec) -> None:
        super().__init__(spec)
        _NoParams.model_validate(spec.params)
        self.decisions = 0
        # A set is keyed by the DPU's own namespace and its DPUSet name label: the DPUs DPF lists for it.
        self.sets: dict[ObjKey, _SetMembers] = {}
        self.members: dict[ObjKey, tuple[ObjKey, str, bool, bool]] = {}  # dpu -> (set, node, unavailable, deleting)

    def activate(self, deleted: list[tuple[str, KubeObject]]) -> None:
        super().activate(deleted)
        assert self.twin is not None
        for dpu in self.twin.host.list(DPU):
            self._track(dpu, gone=False)

    def counts(self, namespace: str, name: str) -> tuple[int, int]:
        """(unavailable DPUs, distinct nodes) of the DPUs labelled for DPUSet `name` in `namespace`."""
        members = self.sets.get((namespace, name))
        return (members.unavailable, len(members.nodes)) if members is not None else (0, 0)

    def _track(self, dpu: DPU, gone: bool) -> None:
        key = obj_key(dpu)
        owner = dpu.metadata.labels.get(DPUSET_NAME_LABEL)
        entry = None if gone or not owner else (
            (key[0], owner), dpu.spec.node_name, _unavailable(dpu), dpu.metadata.deletion_timestamp is not None)
        if entry is not None and self.members.get(key) == entry:
            return  # counted already as it is (most DPU events change neither node, set nor availability)
        prev = self.members.pop(key, None)
        if prev is not None:
            set_key, node, down, going = prev
            members = self.sets[set_key]
            left = members.nodes[node] - 1
            if left:
                members.nodes[node] = left
            else:
                del members.nodes[node]
            members.unavailable -= down
            members.count -= 1
            if going:
                left = members.deleting[node] - 1
                if left:
                    members.deleting[node] = left
                else:
                    del members.deleting[node]
            if not members.nodes:
                del self.sets[set_key]
        if entry is None:
            return
        set_key, node, down, going = entry
        joined = self.sets.get(set_key)
        if joined is None:
            joined = self.sets[set_key] = _SetMembers({}, {})
        joined.nodes[node] = joined.nodes.get(node, 0) + 1
        joined.unavailable += down
        joined.count += 1
        if going:
            joined.deleting[node] = joined.deleting.get(node, 0) + 1
        self.members[key] = entry

    def on_event(self, store: str, ev: WatchEvent) -> None:
        self.events += 1
        new, old = ev.object, ev.old
        if not isinstance(new, DPU):
            return
        self._track(new, gone=ev.type == "DELETED")
        if ev.type != "MODIFIED" or not isinstance(old, DPU):
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
        matcher = compile_label_selector(ds.spec.node_selector) if ds.spec.node_selector is not None else None

        def selected(node_name: str) -> bool:
            assert self.twin is not None
            node = self.twin.host.try_get(Node, node_name, None)
            return node is not None and (matcher is None or matcher.matches(node.metadata.labels))

        if not selected(new.spec.node_name):
            return  # its node left the selector: DPF deletes it before the rollout, spending no budget
        self.decisions += 1
        # Counted as the controller lists them, per DPU (a Node may hold one per DPU index): the set's DPUs but
        # the deleted one (by name), whose slot still counts in the total.
        set_key = (ds.namespace or "", ds.name)
        members = self.sets.get(set_key)
        nodes = members.nodes if members is not None else {}
        unavailable = members.unavailable if members is not None else 0
        total = members.count if members is not None else 0
        skipped = self.members.get((set_key[0], new.name))
        if skipped is not None and skipped[0] == set_key:
            unavailable -= skipped[2]
        else:
            total += 1
        if members is not None:
            for node_name in members.deleting:
                if node_name != new.spec.node_name and not selected(node_name):
                    total -= nodes[node_name]
                    unavailable -= nodes[node_name]
        ru = ds.spec.strategy.rolling_update
        budget = max_unavailable(ru.max_unavailable if ru is not None else None, total)
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


# --- always-on: OVS swept, Applications match ---------------------------------------------------------------


@dataclass(frozen=True)
class FaultWindow:
    """Where the injected faults a check cares about stand now."""

    active: bool  # one of them is on
    active_until: float | None  # the latest scheduled end of those on (None: none on, or one until cleared)
    quiet_from: float  # when the last of them ended (-inf: none did)
    storm: float  # how long the run of overlapping ones that ended at `quiet_from` lasted


def fault_window(twin: Any, affects: Callable[[FaultRecord], bool]) -> FaultWindow:
    """The injected faults `affects` picks, as they stand now; overlapping ones that ended count as one storm."""
    active = False
    until: float | None = None
    open_ended = False
    spans: list[tuple[float, float]] = []
    for rec in _records(twin):
        if rec.type in META_FAULTS or not affects(rec):
            continue
        if rec.ended is None:
            active = True
            if rec.ends is None:
                open_ended = True
            else:
                until = rec.ends if until is None else max(until, rec.ends)
        else:
            spans.append((rec.started, rec.ended))
    if not spans:
        return FaultWindow(active, None if open_ended else until, -math.inf, 0.0)
    spans.sort()
    start, end = spans[0]
    for s, e in spans[1:]:
        if s > end:
            start, end = s, e  # a gap: a new storm starts
        else:
            end = max(end, e)
    return FaultWindow(active, None if open_ended else until, end, end - start)


def _upper(d: Duration) -> float:
    """The longest a model's duration can draw: its max, its high bound, or four means for an unbounded one."""
    if d.max is not None:
        return float(d.max)
    if d.dist == "constant":
        return float(d.value or 0.0)
    if d.high is not None:
        return float(d.high)
    return 4 * d.expected


# ovsSwept --------------------------------------------------------------------------------------------------


class OvsSweptParams(Model):
    slack: float | None = Field(default=None, ge=0, description="seconds past one sweep period a leftover may stay; "
                                                                "default max(5 s, a tenth of the period)")
    every: float | None = Field(default=None, gt=0, description="seconds between scans; default half the sweep period")
    max_nodes: int = Field(default=2000, ge=1, description="DPU nodes looked at per scan, round robin past that")


def _expired(rule: Any, now_ms: int) -> bool:
    # Bridge.expire()'s test, without purging: a check must not change what a later packet trace meets.
    return bool((rule.hard_timeout and now_ms > rule.modified_ms + rule.hard_timeout * 1000)
                or (rule.idle_timeout and now_ms > rule.used_ms + rule.idle_timeout * 1000))


class StaleIndex:
    """One DPU cluster's view for the stale computation, built once per scan: the chain cookies and the ports
    accounted for, by node (ServiceChainWorld.ovs_leftovers' rules, without listing the cluster per node)."""

    def __init__(self, world: Any, cluster: str) -> None:
        from dpf_core.api.svc import INTERFACE_TYPE_OVN, ServiceChain, ServiceInterface
        from dpf_core.controllers import sfc

        net = world.clusters[cluster]
        self.cookies: dict[str | None, set[int]] = {}
        for chain in net.store.list(ServiceChain):
            self.cookies.setdefault(chain.spec.node, set()).add(sfc.chain_cookie(chain.namespace, chain.name))
        self.accounted: dict[str | None, set[tuple[str, str]]] = {}
        for si in net.store.list(ServiceInterface):
            ports = self.accounted.setdefault(si.spec.node, set())
            ports.add((sfc.SFC_BRIDGE, sfc.produced_port(si)))
            if si.spec.interface_type == INTERFACE_TYPE_OVN:
                ports.add((sfc.OVN_BRIDGE, sfc.OVN_PATCH))
        for state in net.cni.pods.values():
            ports = self.accounted.setdefault(state.node, set())
            for att in state.attachments:
                if att.port:
                    ports.add((att.bridge, att.port))
                ports.update(att.patches)


def node_leftovers(datapath: Any, node: str, index: StaleIndex, ovn_host_port: str | None) -> list[str]:
    """What the SFC agent's stale sweep exists to remove from one DPU, worded as ServiceChainWorld.ovs_leftovers
    words it: br-sfc flows whose cookie is no ServiceChain of the node (learned ones included, expired ones
    not), br-sfc / br-ovn ports no ServiceInterface, live pod or the flavor accounts for."""
    from dpf_core.controllers import sfc

    out: list[str] = []
    cookies = index.cookies.get(node, set())
    br = datapath.bridges.get(sfc.SFC_BRIDGE)
    if br is not None:
        now_ms = datapath.now_ms()
        for rule in br.rules:
            if rule.cookie not in cookies and not _expired(rule, now_ms):
                out.append(f"flow {rule.format(now_ms, stats=False).strip()}")
    accounted = index.accounted.get(node, set())
    for bridge in (sfc.SFC_BRIDGE, sfc.OVN_BRIDGE):
        br = datapath.bridges.get(bridge)
        if br is None:
            continue
        for name, port in br.ports.items():
            if name == bridge or (bridge, name) in accounted:
                continue
            if port.external_ids.get(sfc.EXTERNAL_ID_DPF_TYPE) == sfc.DPF_TYPE_PHYSICAL:
                continue
            if bridge == sfc.OVN_BRIDGE and name == ovn_host_port:
                continue
            out.append(f"port {bridge}:{name}")
    return out


def _stops_sweep(cluster: str) -> Callable[[FaultRecord], bool]:
    """Faults under which a DPU cluster's SFC agents cannot sweep: their watches cut (watchDrop of every
    manager or of an `sfc/<node>` one), or their API server failing the List the sweep starts with."""

    def affects(rec: FaultRecord) -> bool:
        p = rec.params
        if rec.type == "watchDrop":
            manager = p.get("manager")
            return manager is None or str(manager).startswith("sfc/")
        if rec.type == "controlPlaneDown":
            return p.get("cluster") in (None, cluster)
        if rec.type == "apiBrownout":
            return p.get("store", "host") in ("dpuClusters", cluster)
        return False

    return affects


@register_invariant("ovsSwept")
class OvsSwept(Invariant):
    """After a sweep period no stale flow or port: on every DPU node's OVS, a br-sfc flow whose cookie is no
    ServiceChain of that node, or a br-sfc / br-ovn port nothing accounts for (the servicechain model's stale
    rules), may exist, but for no longer than one `stale_period` of the SFC agent (DPF's
    `--stale-flows-removal-period`) plus `slack` since a scan first saw it. OVS raises no store event, so it
    scans every `every` seconds; while a fault that stops the sweep is on (`_stops_sweep`) nothing is late, and
    after it the period counts from its end. Without the servicechain attachment it does nothing at all."""

    kinds: tuple[type[KubeObject], ...] | None = ()
    store = None

    def __init__(self, spec: InvariantSpec) -> None:
        super().__init__(spec)
        self.params = OvsSweptParams.model_validate(spec.params)
        self.world: Any = None
        self.period = 0.0
        self.slack = 0.0
        self.every = 0.0
        self.first_seen: dict[tuple[str, str, str], float] = {}  # (cluster, node, leftover) -> first scan saw it
        self.scans = 0
        self.looked = 0  # node visits, for the cost
        self.longest = 0.0  # the longest a swept leftover was seen for
        self.leftovers = 0  # leftovers seen over the run
        self._cursor = 0

    def bind(self, twin: Twin) -> None:
        super().bind(twin)
        self.world = getattr(twin, "servicechain", None)
        if self.world is None:
            return
        self.period = float(self.world.params.stale_period)
        self.slack = self.params.slack if self.params.slack is not None else max(5.0, self.period / 10)
        self.every = self.params.every if self.params.every is not None else max(1.0, self.period / 2)

    def activate(self, deleted: list[tuple[str, KubeObject]]) -> None:
        super().activate(deleted)
        if self.world is not None and self.twin is not None:
            self.twin.env.process(self._loop())

    def _loop(self) -> Any:
        assert self.twin is not None
        while self.passed is None:
            due = self.scan()
            # A scan just past the earliest deadline too: otherwise a leftover could outlive it by a scan interval.
            wait = self.every if due is None else min(self.every, max(due - self.now, 0.0) + 0.001)
            yield self.twin.env.timeout(wait)

    def _chosen(self) -> list[tuple[str, str]]:
        nodes = sorted(self.world.nodes)
        cap = self.params.max_nodes
        if len(nodes) <= cap:
            return nodes
        start = self._cursor % len(nodes)
        picked = nodes[start:start + cap]
        picked += nodes[:cap - len(picked)]
        self._cursor = start + cap
        owing = {(c, n) for c, n, _ in self.first_seen}  # a node with a leftover is looked at every scan
        return sorted(set(picked) | owing)

    def scan(self) -> float | None:
        """Look at the DPU nodes now; fail if a leftover outlived the sweep period. Returns the next deadline."""
        from .servicechain import OVN_HOST_PORT

        if self.world is None or self.passed is not None:
            return None
        self.scans += 1
        self.events += 1
        now = self.now
        chosen = self._chosen()
        indexes: dict[str, StaleIndex] = {}
        seen: dict[tuple[str, str, str], float] = {}
        host_port = OVN_HOST_PORT if self.world.params.ovn else None
        for cluster, node in chosen:
            dpu = self.world.nodes.get((cluster, node))
            if dpu is None or cluster not in self.world.clusters:
                continue
            index = indexes.get(cluster)
            if index is None:
                index = indexes[cluster] = StaleIndex(self.world, cluster)
            self.looked += 1
            for item in node_leftovers(dpu.datapath, node, index, host_port):
                key = (cluster, node, item)
                seen[key] = self.first_seen.get(key, now)
        looked_at = set(chosen)
        for key in [k for k in self.first_seen if (k[0], k[1]) in looked_at and k not in seen]:
            self.longest = max(self.longest, now - self.first_seen.pop(key))
        self.leftovers += sum(1 for k in seen if k not in self.first_seen)
        self.first_seen.update(seen)
        return self._judge()

    def _judge(self) -> float | None:
        if not self.first_seen:
            return None
        due = math.inf
        windows: dict[str, FaultWindow] = {}
        late: list[str] = []
        limit = self.period + self.slack
        for (cluster, node, item), since in sorted(self.first_seen.items(), key=lambda x: (x[1], x[0])):
            w = windows.get(cluster)
            if w is None:
                w = windows[cluster] = fault_window(self.twin, _stops_sweep(cluster))
            if w.active:
                if w.active_until is not None:
                    due = min(due, max(since, w.active_until) + limit)
                continue
            start = max(since, w.quiet_from)
            due = min(due, start + limit)
            if self.now - start > limit:
                after = f", counted from t={w.quiet_from:.1f}s when a fault stopping the sweep ended" \
                    if w.quiet_from > since else ""
                late.append(f"{node} ({cluster}): {item} (there since t={since:.1f}s{after})")
        if late:
            self.violate(f"{len(late)} stale OVS flow(s)/port(s) outlived the SFC agent's sweep period "
                         f"({self.period:g}s + {self.slack:g}s slack)", late)
        return due if due < math.inf else None

    def finish(self) -> None:
        if self.passed is None and self.world is None:
            self.succeed("nothing to check: no servicechain attachment")
        if self.passed is None:
            self.scan()
        if self.passed is None:
            self.succeed(f"held over {self.scans} scan(s) of {len(self.world.nodes)} DPU node(s) "
                         f"({self.looked} node visits): " + (
                             f"{self.leftovers} leftover(s) seen, each gone within {self.longest:.1f}s of the "
                             "first scan that saw it" if self.leftovers else "no leftover seen"))
        super().finish()


# applicationsMatch ------------------------------------------------------------------------------------------


class ApplicationsMatchParams(Model):
    grace: float | None = Field(default=None, gt=0, description="seconds an Application may differ from its "
                                                                "DPUService; default application_grace()")


def application_grace(services: Services) -> float:
    """How long the DPUService controller and ArgoCD may take, with no fault on, to bring an Application in
    line with its DPUService or to remove it after the DPUService is deleted:

    - the dpuservice controller: one requeue of its own (AWAITING_DELETION_REQUEUE, 30 s, the longest it waits
      between passes when nothing fails; a spec change is picked up at once, by its watch);
    - ArgoCD: a sync to delete the workloads, one more to release its resources finalizer (2 x `syncDelay`),
      and one reconciliation timeout (`resync`, 180 s) for a sync that failed in between.

    With the defaults: 30 + 2 x 3 + 180 = 216 s."""
    from dpf_core.controllers.dpuservice import AWAITING_DELETION_REQUEUE

    argo = services.argocd.params
    return AWAITING_DELETION_REQUEUE + 2 * _upper(argo.sync_delay) + _upper(argo.resync)


def disturbs_services(rec: FaultRecord) -> bool:
    """Faults that hold the DPUService controller or ArgoCD back: an API server failing (the host's, a DPU
    cluster's: prerequisites, syncs and deletions fail), or the dpuservice controllers' process stopped or
    deaf (controllerCrash / watchDrop of it, or of every manager)."""
    if rec.type in ("apiBrownout", "controlPlaneDown"):
        return True
    manager = rec.params.get("manager")
    if rec.type == "watchDrop":
        return manager in (None, "dpuservice")
    return rec.type == "controllerCrash" and manager == "dpuservice"


def application_drift(app: Application, svc: DPUService) -> list[str]:
    """How an Application differs from what its DPUService says (DPF's dpuservice controller: source =
    the helm chart's repoURL (OCI scheme dropped) / chart / path / version / releaseName; values = the user's
    values with the computed `serviceDaemonSet` block merged over them; destination = the DPU cluster the
    Application is named and labelled for, or in-cluster, in the service's namespace; the project). The Multus
    networks annotation of a service with interfaces comes from its DPUServiceInterfaces, whose own changes
    this does not follow: it is taken from the Application."""
    from dpf_core.api.external import ANNOTATION_MULTUS_NETWORKS, ARGOCD_IN_CLUSTER
    from dpf_core.api.svc import LABEL_DPU_CLUSTER
    from dpf_core.controllers.dpuservice import application_name, project_of, service_values

    out: list[str] = []
    want = svc.spec.helm_chart.source
    src = app.spec.source
    if src is None:
        return ["spec.source missing"]
    for what, have, wanted in (("repoURL", src.repo_url, want.get_argo_repo_url()), ("chart", src.chart, want.chart),
                               ("path", src.path, want.path), ("targetRevision", src.target_revision, want.version),
                               ("helm.releaseName", src.helm.release_name if src.helm else None, want.release_name)):
        if (have or None) != (wanted or None):
            out.append(f"{what} {have!r}, DPUService says {wanted!r}")
    values = (src.helm.values_object if src.helm is not None else None) or {}
    sds = svc.spec.service_daemon_set
    computed: dict[str, Any] = sds.wire() if sds is not None else {}
    if svc.spec.interfaces:
        have_sds = values.get("serviceDaemonSet")
        have_ann = have_sds.get("annotations") if isinstance(have_sds, dict) else None
        networks = have_ann.get(ANNOTATION_MULTUS_NETWORKS) if isinstance(have_ann, dict) else None
        if networks is not None:
            computed["annotations"] = {**(computed.get("annotations") or {}), ANNOTATION_MULTUS_NETWORKS: networks}
    wanted_values = service_values(svc, computed)
    if values != wanted_values:
        keys = sorted(k for k in set(values) | set(wanted_values) if values.get(k) != wanted_values.get(k))
        out.append(f"helm values differ under {', '.join(keys)}")
    dest = app.spec.destination
    cluster = ARGOCD_IN_CLUSTER if svc.spec.should_deploy_in_cluster() else app.metadata.labels.get(LABEL_DPU_CLUSTER)
    if cluster == ARGOCD_IN_CLUSTER and not svc.spec.should_deploy_in_cluster():
        cluster = None  # a DPU-cluster service has no in-cluster Application
    if dest.name != cluster or cluster is None or app.name != application_name(cluster, svc.name):
        out.append(f"destination {dest.name!r} of Application {app.name}, DPUService deploys to "
                   f"{cluster or 'a DPU cluster'!r}")
    if (dest.namespace or None) != (svc.namespace or None):
        out.append(f"destination namespace {dest.namespace!r}, DPUService's is {svc.namespace!r}")
    if app.spec.project != project_of(svc):
        out.append(f"project {app.spec.project!r}, want {project_of(svc)!r}")
    return out


def _reports_error(svc: DPUService) -> bool:
    """The controller said, for this very generation, that it could not reconcile the Applications: a
    prerequisite, interface or Application condition False with reason Error."""
    from dpf_core.api.conditions import REASON_ERROR
    from dpf_core.api.svc import (
        CONDITION_APPLICATION_PREREQS_RECONCILED,
        CONDITION_APPLICATIONS_RECONCILED,
        CONDITION_DPUSERVICE_INTERFACE_RECONCILED,
    )

    if svc.status.observed_generation != svc.metadata.generation:
        return False
    wanted = (CONDITION_APPLICATION_PREREQS_RECONCILED, CONDITION_APPLICATIONS_RECONCILED,
              CONDITION_DPUSERVICE_INTERFACE_RECONCILED)
    return any(c.type in wanted and c.status == "False" and c.reason == REASON_ERROR for c in svc.status.conditions)


@dataclass
class _Drift:
    service: ObjKey
    why: str
    since: float
    gone: bool  # the DPUService is deleted or being deleted: the Application must go


@register_invariant("applicationsMatch")
class ApplicationsMatch(Invariant):
    """Every ArgoCD Application of a DPUService (labelled with its name and namespace) matches the DPUService's
    current spec (`application_drift`), and none outlives its DPUService: once the DPUService is being deleted
    or gone its Applications are gone too. Either may be untrue for `grace` seconds (`application_grace`), counted
    from the latest of: the Application starting to differ, the DPUService's last spec change or deletion, and the
    end of the faults that hold the controller or ArgoCD back (`disturbs_services`) plus the backoff their
    failures built up (the storm's length, at most the work queue's 1000 s). Nothing is late while such a fault
    is on. Not a drift: a paused DPUService's Applications (DPF holds them back, and a paused deletion waits),
    an Application being deleted while its DPUService lives, and a DPUService whose status reports for its current
    generation that the controller could not reconcile (a condition False with reason Error: the user sees why);
    the clock starts when that ends. Event-driven on DPUService and Application events, with a timer at the next
    deadline. Without the services attachment it does nothing at all."""

    kinds: tuple[type[KubeObject], ...] | None = (DPUService, Application)

    def __init__(self, spec: InvariantSpec) -> None:
        super().__init__(spec)
        self.params = ApplicationsMatchParams.model_validate(spec.params)
        self.services: Services | None = None
        self.grace = 0.0
        self.changed: dict[ObjKey, float] = {}  # DPUService -> its last spec change / deletion
        self.state: dict[ObjKey, tuple[int | None, bool]] = {}  # DPUService -> (generation, deleting)
        self.apps_of: dict[ObjKey, set[ObjKey]] = {}
        self.service_of: dict[ObjKey, ObjKey] = {}
        self.drifts: dict[ObjKey, _Drift] = {}
        self.evaluated = 0
        self.drifted = 0  # drifts seen (and cleared in time)
        self.longest = 0.0  # the longest a cleared drift lasted
        self._wake_at = math.inf

    def bind(self, twin: Twin) -> None:
        super().bind(twin)
        self.services = getattr(twin, "services", None)
        if self.services is None:
            self.kinds = ()
            return
        self.grace = self.params.grace if self.params.grace is not None else application_grace(self.services)

    def activate(self, deleted: list[tuple[str, KubeObject]]) -> None:
        super().activate(deleted)
        if self.services is None:
            return
        assert self.twin is not None
        for svc in self.twin.host.list(DPUService):
            key = obj_key(svc)
            self.changed[key] = self.now
            self.state[key] = (svc.metadata.generation, svc.metadata.deletion_timestamp is not None)
        for app in self.twin.host.list(Application):
            self._application(app, gone=False)
        self._check()

    def on_event(self, store: str, ev: WatchEvent) -> None:
        self.events += 1
        obj = ev.object
        if isinstance(obj, DPUService):
            self._service(obj, gone=ev.type == "DELETED")
        elif isinstance(obj, Application):
            self._application(obj, gone=ev.type == "DELETED")
        self._check()

    def _service(self, svc: DPUService, gone: bool) -> None:
        assert self.twin is not None
        key = obj_key(svc)
        state = (svc.metadata.generation, svc.metadata.deletion_timestamp is not None)
        if gone:
            self.state.pop(key, None)
            self.changed[key] = self.now
        elif self.state.get(key) != state:
            self.state[key] = state
            self.changed[key] = self.now
        for app_key in sorted(self.apps_of.get(key, ())):
            app = self.twin.host.try_get(Application, app_key[1], app_key[0] or None)
            if app is not None:
                self._evaluate(app_key, app)

    def _application(self, app: Application, gone: bool) -> None:
        key = obj_key(app)
        labels = app.metadata.labels
        name = labels.get(LABEL_DPUSERVICE_NAME)
        owner = (labels.get(LABEL_DPUSERVICE_NAMESPACE) or "", name) if name and not gone else None
        before = self.service_of.get(key)
        if before is not None and before != owner:
            self.apps_of.get(before, set()).discard(key)
            del self.service_of[key]
        if owner is None:
            self.drifts.pop(key, None)
            return
        self.service_of[key] = owner
        self.apps_of.setdefault(owner, set()).add(key)
        self._evaluate(key, app)

    def _evaluate(self, key: ObjKey, app: Application) -> None:
        assert self.twin is not None
        self.evaluated += 1
        owner = self.service_of[key]
        svc = self.twin.host.try_get(DPUService, owner[1], owner[0] or None)
        gone = svc is None or svc.metadata.deletion_timestamp is not None
        why: str | None
        if svc is None:
            why = f"outlives its DPUService {show_key(owner)} (deleted)"
        elif svc.spec.is_paused():
            why = None
        elif gone:
            why = f"outlives its DPUService {show_key(owner)} (being deleted)"
        elif app.metadata.deletion_timestamp is not None or _reports_error(svc):
            why = None
        else:
            drift = application_drift(app, svc)
            why = f"differs from DPUService {show_key(owner)}: {'; '.join(drift)}" if drift else None
        if why is None:
            cleared = self.drifts.pop(key, None)
            if cleared is not None:
                self.longest = max(self.longest, self.now - cleared.since)
            return
        d = self.drifts.get(key)
        if d is None or d.gone != gone:
            self.drifted += 1
            self.drifts[key] = _Drift(owner, why, self.now, gone)
        else:
            d.why = why

    def _check(self) -> None:
        if not self.drifts or self.passed is not None:
            return
        w = fault_window(self.twin, disturbs_services)
        if w.active:
            if w.active_until is not None:
                self._arm(w.active_until)
            return  # an open-ended fault: the next event (or finish) looks again
        from dpf_core.runtime.workqueue import DEFAULT_MAX_DELAY

        quiet = w.quiet_from + min(DEFAULT_MAX_DELAY, w.storm)
        late: list[str] = []
        soonest = math.inf
        for key, d in sorted(self.drifts.items()):
            start = max(d.since, self.changed.get(d.service, d.since), quiet)
            due = start + self.grace
            if self.now > due:
                late.append(f"Application {show_key(key)} {d.why} (since t={d.since:.1f}s, due t={due:.1f}s)")
            else:
                soonest = min(soonest, due)
        if late:
            self.violate(f"{len(late)} Application(s) did not match their DPUService within {self.grace:g}s", late)
        elif soonest < math.inf:
            self._arm(soonest)

    def _arm(self, at: float) -> None:
        if at >= self._wake_at or self.twin is None:
            return
        self._wake_at = at
        self.twin.env.process(self._wake(at))

    def _wake(self, at: float) -> Any:
        assert self.twin is not None
        yield self.twin.env.timeout(max(0.0, at - self.now) + 0.001)  # just past the deadline
        if self._wake_at == at:
            self._wake_at = math.inf
        self._check()

    def finish(self) -> None:
        if self.passed is None and self.services is None:
            self.succeed("nothing to check: no services attachment")
        if self.passed is None:
            self._check()
        if self.passed is None:
            self.succeed(f"held over {self.events} event(s): {self.evaluated} Application evaluation(s), "
                         f"{self.drifted} drift(s) cleared in time (grace {self.grace:g}s, longest "
                         f"{self.longest:.1f}s)")
        super().finish()


# Invariants that hold in any scenario (with or without faults). maxUnavailable is left out: its outcome
# form counts DPUs a fault took down, which no controller can prevent; rolloutBudget checks the decision.
ALWAYS_ON: tuple[str, ...] = ("noObjectLost", "finalizersRemoved", "flashMatchesSpec", "rolloutBudget",
                              "noOverlappingIpam", "singleFlash", "ovsSwept", "applicationsMatch")


def always_on_specs(scenario: Scenario) -> list[InvariantSpec]:
    """The always-on invariants a scenario does not already declare (by type), named `always:<type>`."""
    declared = {e.invariant.type for e in scenario.expect if e.invariant is not None}
    return [InvariantSpec(name=f"always:{t}", type=t) for t in ALWAYS_ON if t not in declared]


# --- multi-seed runs ----------------------------------------------------------------------------------------


def shrink(loaded: LoadedScenario, fleet: dict[str, Any] | None = None, count: int | None = None,
           churn: dict[str, Any] | None = None) -> LoadedScenario:
    """The same chaos scenario on another fleet, with another fault count and/or churn (merged over the
    file's); CI runs it small. The timeline, schedule generator and expectations are unchanged."""
    sc = loaded.scenario
    update: dict[str, Any] = {}
    if fleet is not None:
        update["fleet"] = dict(fleet)
    if count is not None or churn is not None:
        def step(fault: dict[str, Any]) -> dict[str, Any]:
            out = {**fault, "count": count} if count is not None else dict(fault)
            if churn is not None and out.get("churn") is not None:
                out["churn"] = {**out["churn"], **churn}
            return out

        update["timeline"] = [s.model_copy(update={"fault": step(s.fault)})
                              if s.fault is not None and s.fault.get("type") == "chaos" else s for s in sc.timeline]
    if update:
        loaded.scenario = sc.model_copy(update=update)
    return loaded


def run_summary(twin: Twin, outcomes: Iterable[Any]) -> dict[str, Any]:
    """One seed's figures for a multi-seed table: faults by kind, churn, DPUs Ready / in Error (with the
    reason and the fault that explains it), DPUServices, objects lost, failed expectations."""
    from .faults import stats

    inj = getattr(twin, "faults", None)
    phases: dict[str, int] = {}
    errors: list[dict[str, str]] = []
    for d in twin.host.list(DPU):
        phase = str(d.status.phase or "")
        phases[phase] = phases.get(phase, 0) + 1
        if d.status.phase == DPUPhase.ERROR:
            reason, message = dpu_error_reason(d)
            rec = inj.explaining(d.name, reason, message) if inj is not None else None
            errors.append({"dpu": d.name, "reason": reason, "fault": rec.type if rec is not None else "",
                           "message": message[:200]})
    faults = stats(twin)
    by_type = {k: v for k, v in faults.get("by_type", {}).items() if k not in META_FAULTS}
    failed = [o for o in outcomes if not o.passed]
    lost = next((o for o in failed if o.name in ("nothing-lost", "always:noObjectLost")), None)
    churn: Churn | None = getattr(twin, "churn", None)
    services = list(twin.host.list(DPUService)) if getattr(twin, "services", None) is not None else []
    return {
        "passed": not failed,
        "converged": not any(o.name == "converged" for o in failed),
        "faults_injected": sum(by_type.values()),
        "faults_by_type": by_type,
        "dpus_by_phase": dict(sorted(phases.items())),
        "dpu_errors": errors,
        "dpu_errors_unexplained": sum(1 for e in errors if not e["fault"]),
        "dpuservices": len(services),
        "dpuservices_ready": sum(1 for s in services if any(c.type == "Ready" and c.status == "True"
                                                             for c in s.status.conditions)),
        "churn": churn.as_dict() if churn is not None else None,
        "objects_lost": 0 if lost is None else max(1, len(lost.offending)),
        "failures": [f"{o.name}: {o.detail[:500]}" for o in failed],
    }
