"""The twin's ArgoCD: Applications in the host cluster synced into their destination cluster from a chart catalogue.

No Helm templating: a scenario declares a chart catalogue, each chart (repoURL, chart or path, version) naming
the workloads it renders (DaemonSets / Deployments with an image and resource requests). Values shape them:

- `valuesKey` on a workload scopes its values to `values[valuesKey]` and renders it only when that block says
  `enabled: true` (how DPF's dpu-networking chart switches its sub-charts);
- in scope: `image: {repository, tag}`, `replicas`, `resources` (a requests map, or `{requests: ...}`),
  `labels` (pod labels), `nodeSelector` (a map);
- the DPUService block `serviceDaemonSet` (values root) shapes DaemonSets: `labels` and `annotations` on the
  pods, `nodeSelector` (corev1 NodeSelector) as required node affinity, `updateStrategy`.

Sync (automated, prune + self-heal): a change of the Application or of any workload it tracks schedules a sync
after `syncDelay`: resolve the destination (`in-cluster` = host; else the Argo cluster Secret naming it), look the
chart up, apply the rendered workloads (tracking label `argocd.argoproj.io/instance=<app>`), delete tracked
workloads no longer rendered, then write sync (Synced at the chart version) and health (Healthy when every
workload is fully ready, else Progressing). A chart missing from the catalogue (or an unknown destination or
project) leaves the Application Degraded with a ComparisonError condition saying why, as a failed fetch does.
A change of the Application's source or destination is seen by ArgoCD's refresh at once: an Application that was
Synced turns OutOfSync (health unchanged) until the automated sync, `syncDelay` later, applies it.
`argocd.argoproj.io/skip-reconcile: "true"` stops all of it. Deleting an Application with the resources
finalizer deletes its workloads first.

With `deleted_control_planes_unreachable`, a Kamaji DPU cluster whose TenantControlPlane was deleted has no API
server any more, while its Argo cluster
Secret (owned by the DPFOperatorConfig) stays: ArgoCD still finds the destination but cannot reach it, so a sync
ends in a ComparisonError and an Application being deleted keeps its resources finalizer (ArgoCD retries the
cascade; the user removes the finalizer by hand). Only a destination that is unknown altogether lets it go.
"""

from __future__ import annotations

import base64
import contextlib
import json
import random
from collections.abc import Callable, Generator, Mapping
from typing import Any, Literal

import simpy
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from dpf_core.api.external import (
    ANNOTATION_ARGOCD_SKIP_RECONCILE,
    ARGOCD_IN_CLUSTER,
    FINALIZER_ARGOCD_RESOURCES,
    LABEL_ARGOCD_INSTANCE,
    LABEL_ARGOCD_SECRET_TYPE,
    Application,
    AppProject,
    DaemonSet,
    Deployment,
    Namespace,
    Secret,
    TenantControlPlane,
)
from dpf_core.api.meta import KubeObject
from dpf_core.api.svc import LABEL_DPU_CLUSTER
from dpf_core.errors import AlreadyExists, ApiError, ServiceUnavailable
from dpf_core.runtime import rfc3339
from dpf_core.store.memory import MemoryStore
from dpf_core.store.protocol import WatchEvent

from .durations import Duration
from .engine import SimClock

WORKLOAD_KINDS: tuple[type[KubeObject], ...] = (DaemonSet, Deployment)


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)


class ChartWorkload(_Wire):
    """One workload a chart renders."""

    name: str
    kind: Literal["DaemonSet", "Deployment"] = "DaemonSet"
    image: str
    replicas: int = Field(default=1, ge=0)
    resources: dict[str, int | str] = Field(default_factory=dict, description="container resource requests")
    labels: dict[str, str] = Field(default_factory=dict)
    values_key: str | None = Field(default=None, description="values block scoping this workload; needs enabled: true")


class Chart(_Wire):
    repo_url: str = Field(alias="repoURL")
    chart: str | None = None
    # A chart in a Git repository is named by its directory (DPUService helmChart.source.path, ArgoCD's
    # source.path); several charts of one repository share repoURL and version.
    path: str | None = None
    version: str
    workloads: list[ChartWorkload] = Field(default_factory=list)


class ArgoParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sync_delay: Duration = Duration.of("3s")
    # A sync the destination's API server failed is compared again on ArgoCD's reconciliation timeout.
    resync: Duration = Duration.of("180s")
    # A Kamaji DPU cluster whose TenantControlPlane is deleted has no API server: ArgoCD cannot reach it. Off by
    # default for now: the twin's DPFOperatorConfig teardown deletes the DPUClusters before the system
    # DPUServices (docs/differences.md), whose Applications would then wait for a hand-removed finalizer.
    deleted_control_planes_unreachable: bool = False


def _norm(url: str) -> str:
    return url.removeprefix("oci://").rstrip("/")


def _chart_key(repo_url: str, chart: str | None, path: str | None, version: str | None) -> tuple[str, str, str]:
    # ArgoCD reads `chart` for a Helm repository and `path` for a Git one; a Helm chart's name wins when both are
    # given, so a source that also carries a path still finds its Helm chart.
    name = f"chart:{chart}" if chart else f"path:{(path or '').strip('/')}"
    return _norm(repo_url), name, version or ""


class ChartCatalogue:
    def __init__(self, charts: list[Chart]) -> None:
        self.charts = {_chart_key(c.repo_url, c.chart, c.path, c.version): c for c in charts}

    @classmethod
    def from_config(cls, raw: list[Mapping[str, Any]] | None) -> ChartCatalogue:
        return cls([Chart.model_validate(c) for c in raw or []])

    def find(self, repo_url: str, chart: str | None, version: str | None, path: str | None = None) -> Chart | None:
        return self.charts.get(_chart_key(repo_url, chart, path, version))


def _scope(values: Mapping[str, Any], key: str | None) -> Mapping[str, Any] | None:
    if key is None:
        return values
    node: Any = values
    for part in key.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    if not isinstance(node, Mapping) or not node.get("enabled"):
        return None
    return node


def render(chart: Chart, app: str, release: str, namespace: str, values: Mapping[str, Any]) -> list[KubeObject]:
    """The workloads of `chart` for these values, named `<release>-<workload>`."""
    sds = values.get("serviceDaemonSet") if isinstance(values.get("serviceDaemonSet"), Mapping) else {}
    out: list[KubeObject] = []
    for w in chart.workloads:
        scope = _scope(values, w.values_key)
        if scope is None:
            continue
        image = w.image
        img = scope.get("image")
        if isinstance(img, Mapping) and img.get("repository"):
            image = f"{img['repository']}:{img.get('tag') or 'latest'}"
        res = scope.get("resources")
        requests: dict[str, Any] = dict(w.resources)
        if isinstance(res, Mapping):
            inner = res.get("requests")
            requests.update(inner if isinstance(inner, Mapping) else res)
        name = f"{release}-{w.name}"
        selector = {"app.kubernetes.io/name": w.name, "app.kubernetes.io/instance": release}
        pod_labels = {**w.labels, **dict(scope.get("labels") or {}), **selector}
        pod_annotations: dict[str, str] = {}
        pod_spec: dict[str, Any] = {
            "containers": [{"name": w.name, "image": image, "resources": {"requests": requests}}],
        }
        if isinstance(scope.get("nodeSelector"), Mapping):
            pod_spec["nodeSelector"] = dict(scope["nodeSelector"])
        spec: dict[str, Any] = {"selector": {"matchLabels": selector}}
        if w.kind == "DaemonSet" and sds:
            pod_labels.update(sds.get("labels") or {})
            pod_annotations.update(sds.get("annotations") or {})
            if sds.get("nodeSelector"):
                pod_spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": sds["nodeSelector"]}}
            if sds.get("updateStrategy"):
                spec["updateStrategy"] = sds["updateStrategy"]
        spec["template"] = {"metadata": {"labels": pod_labels, "annotations": pod_annotations}, "spec": pod_spec}
        meta = {"name": name, "namespace": namespace, "labels": {**selector, LABEL_ARGOCD_INSTANCE: app}}
        if w.kind == "Deployment":
            replicas = scope.get("replicas", w.replicas)
            out.append(Deployment.model_validate({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
                                                  "spec": {**spec, "replicas": int(replicas)}}))
        else:
            out.append(DaemonSet.model_validate({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta,
                                                 "spec": spec}))
    return out


def workload_healthy(obj: KubeObject) -> bool:
    st = obj.model_dump(by_alias=True, exclude_none=True).get("status") or {}
    if st.get("observedGeneration") != obj.metadata.generation:
        return False
    if isinstance(obj, Deployment):
        want = obj.spec.replicas if obj.spec.replicas is not None else 1
        return int(st.get("readyReplicas") or 0) >= want and int(st.get("updatedReplicas") or 0) >= want
    desired = int(st.get("desiredNumberScheduled") or 0)
    return int(st.get("numberReady") or 0) == desired and int(st.get("updatedNumberScheduled") or 0) == desired


def _norm_status(status: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if k != "reconciledAt" and v not in (None, [], {})}


class SyncError(Exception):
    pass


def compared_to(app: Application) -> str:
    """The source and destination a comparison is made against (ArgoCD's status.sync.comparedTo)."""
    spec = app.spec.wire()
    return json.dumps({"source": spec.get("source"), "destination": spec.get("destination")}, sort_keys=True)


class ArgoCD:
    """ArgoCD's application controller over the twin's stores."""

    def __init__(self, env: simpy.Environment, host: MemoryStore, stores: Callable[[], dict[str, MemoryStore]],
                 clock: SimClock, rng: random.Random, catalogue: ChartCatalogue, params: ArgoParams | None = None) -> None:
        self.env = env
        self.host = host
        self.stores = stores
        self.clock = clock
        self.rng = rng
        self.catalogue = catalogue
        self.params = params or ArgoParams()
        self._scheduled: set[tuple[str, str]] = set()
        # What each Application's last comparison saw (status.sync.comparedTo, kept here rather than on the
        # wire so the statuses the twin has always written stay as they were).
        self._compared: dict[tuple[str, str], str] = {}
        self.syncs = 0
        self.failed_syncs = 0
        # How ArgoCD reaches a destination store (name, store) -> client: faults put a browned-out API server
        # in between (dpf_sim.faults); None = directly.
        self.reach: Callable[[str, MemoryStore], Any] | None = None
        # Stores of Kamaji DPU clusters whose TenantControlPlane was deleted: their API server is gone.
        self.down: set[str] = set()
        host.subscribe(self._on_application, [Application])
        host.subscribe(self._on_control_plane, [TenantControlPlane])
        self.watch_store("host", host)

    def watch_store(self, name: str, store: MemoryStore) -> None:
        store.subscribe(self._on_workload, list(WORKLOAD_KINDS))

    # --- events -----------------------------------------------------------------------------------------
    def _on_application(self, ev: WatchEvent) -> None:
        key = (ev.object.namespace or "", ev.object.name)
        if ev.type == "DELETED":
            self._compared.pop(key, None)
            return
        app = ev.object
        if (isinstance(app, Application) and key in self._compared and self._compared[key] != compared_to(app)
                and app.status.sync is not None and app.status.sync.status == "Synced"):
            # Written from a process, not from inside the store's notification.
            self.env.process(self._refresh(key))
        self.schedule(*key)

    def _refresh(self, key: tuple[str, str]) -> Generator[Any, Any, None]:
        """ArgoCD's refresh of a changed Application: the live state no longer matches the new source."""
        yield self.env.timeout(0)
        app = self.host.try_get(Application, key[1], key[0])
        if (app is None or app.metadata.deletion_timestamp is not None or app.status.sync is None
                or app.status.sync.status != "Synced"
                or app.metadata.annotations.get(ANNOTATION_ARGOCD_SKIP_RECONCILE) == "true"):
            return
        current = compared_to(app)
        if self._compared.get(key) == current:
            return
        self._compared[key] = current
        was = app.status.health
        health = was.status if was is not None and was.status else "Healthy"
        message = (was.message or "") if was is not None else ""
        self._status(app, "OutOfSync", health, message, list(app.status.conditions), list(app.status.resources),
                     revision=app.status.sync.revision)

    def _on_control_plane(self, ev: WatchEvent) -> None:
        key = f"{ev.object.namespace}/{ev.object.name}"
        if ev.type == "DELETED":
            self.down.add(key)
        else:
            self.down.discard(key)

    def _on_workload(self, ev: WatchEvent) -> None:
        app = ev.object.metadata.labels.get(LABEL_ARGOCD_INSTANCE)
        if not app:
            return
        for a in self.host.list(Application):
            if a.name == app:
                self.schedule(a.namespace or "", a.name)

    def schedule(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        if key in self._scheduled:
            return
        self._scheduled.add(key)
        self.env.process(self._later(key))

    def _later(self, key: tuple[str, str], delay: float | None = None) -> Generator[Any, Any, None]:
        yield self.env.timeout(self.params.sync_delay.sample(self.rng) if delay is None else delay)
        self._scheduled.discard(key)
        try:
            self.sync(*key)
        except ApiError as e:
            self.failed_syncs += 1
            self._unreachable(key, e)
            if key not in self._scheduled:
                self._scheduled.add(key)
                self.env.process(self._later(key, self.params.resync.sample(self.rng)))

    def _unreachable(self, key: tuple[str, str], err: ApiError) -> None:
        """What ArgoCD shows while it cannot compare an Application with its cluster."""
        app = self.host.try_get(Application, key[1], key[0])
        if app is None:
            return
        health = app.status.health.status if app.status.health and app.status.health.status else "Unknown"
        if app.metadata.deletion_timestamp is not None:
            # The cascade failed: ArgoCD keeps the last compared state and says why the finalizer stays.
            sync = app.status.sync.status if app.status.sync and app.status.sync.status else "Unknown"
            self._status(app, sync, health, "", [{"type": "DeletionError", "message": str(err)}],
                         list(app.status.resources), revision=app.status.sync.revision if app.status.sync else None)
            return
        message = f"Failed to load live state: {err}"
        self._status(app, "Unknown", health, "", [{"type": "ComparisonError", "message": message}],
                     list(app.status.resources))

    # --- destination ------------------------------------------------------------------------------------
    def destination(self, app: Application) -> MemoryStore:
        dest = app.spec.destination
        if dest.name == ARGOCD_IN_CLUSTER or dest.server == "https://kubernetes.default.svc":
            return self.host
        stores = self.stores()
        for s in self.host.list(Secret, app.namespace, label_selector={LABEL_ARGOCD_SECRET_TYPE: "cluster"}):
            data = {k: base64.b64decode(v).decode() for k, v in s.data.items()}
            server = data.get("server", "")
            store_name = server.removeprefix("twin://")
            # The twin's kubeconfigs name their cluster entry `<ns>/<name>`, Kamaji's name it after the
            # DPUCluster: accept either, as long as the Secret points at a twin store.
            names = {data.get("name"), s.metadata.labels.get(LABEL_DPU_CLUSTER), store_name.rpartition("/")[2]}
            if dest.name in names and store_name in stores:
                if store_name in self.down and self.params.deleted_control_planes_unreachable:
                    raise ServiceUnavailable(f"dial tcp {data.get('server', store_name)}: connect: connection refused "
                                             f"(the control plane of {store_name} is gone)")
                store = stores[store_name]
                return self.reach(store_name, store) if self.reach is not None else store
        raise SyncError(f"there are no clusters with this name: {dest.name}")

    # --- sync -------------------------------------------------------------------------------------------
    def tracked(self, store: MemoryStore, app: str) -> list[KubeObject]:
        out: list[KubeObject] = []
        for cls in WORKLOAD_KINDS:
            out.extend(store.list(cls, label_selector={LABEL_ARGOCD_INSTANCE: app}))
        return out

    def sync(self, namespace: str, name: str) -> None:
        app = self.host.try_get(Application, name, namespace)
        if app is None:
            return
        if app.metadata.annotations.get(ANNOTATION_ARGOCD_SKIP_RECONCILE) == "true":
            return
        self.syncs += 1
        if app.metadata.deletion_timestamp is not None:
            self._delete(app)
            return
        try:
            project = self.host.try_get(AppProject, app.spec.project, namespace)
            if project is None:
                raise SyncError(f"Application referencing project {app.spec.project} which does not exist")
            store = self.destination(app)
            source = app.spec.source
            if source is None:
                raise SyncError("application has no source")
            chart = self.catalogue.find(source.repo_url, source.chart, source.target_revision, source.path)
            if chart is None:
                raise SyncError(
                    f"Failed to load target state: failed to generate manifest for source 1 of 1: rpc error: "
                    f"chart {source.chart or source.path or ''!s} version {source.target_revision} not found in "
                    f"repository {source.repo_url} (not in the twin's chart catalogue)")
            helm = source.helm
            values = (helm.values_object if helm is not None else None) or {}
            release = (helm.release_name if helm is not None else None) or app.name
            target_ns = app.spec.destination.namespace or "default"
            desired = render(chart, app.name, release, target_ns, values)
        except SyncError as e:
            self._status(app, "Unknown", "Degraded", str(e), [{"type": "ComparisonError", "message": str(e)}], [])
            return
        if store.try_get(Namespace, target_ns) is None:
            with contextlib.suppress(AlreadyExists):
                store.create(Namespace.new(target_ns))
        wanted = {(type(o).__name__, o.namespace, o.name) for o in desired}
        for obj in desired:
            self._apply(store, obj)
        for obj in self.tracked(store, app.name):
            if (type(obj).__name__, obj.namespace, obj.name) not in wanted and obj.metadata.deletion_timestamp is None:
                with contextlib.suppress(ApiError):
                    store.delete(type(obj), obj.name, obj.namespace)
        live = [store.try_get(type(o), o.name, o.namespace) for o in desired]
        healthy = all(o is not None and workload_healthy(o) for o in live)
        resources = [{"group": "apps", "version": "v1", "kind": type(o).__name__, "namespace": o.namespace,
                      "name": o.name, "status": "Synced"} for o in desired]
        self._compared[(namespace, name)] = compared_to(app)
        self._status(app, "Synced", "Healthy" if healthy else "Progressing", "", [], resources,
                     revision=source.target_revision)

    def _apply(self, store: MemoryStore, obj: KubeObject) -> None:
        cls = type(obj)
        existing = store.try_get(cls, obj.name, obj.namespace)
        if existing is None:
            with contextlib.suppress(AlreadyExists):
                store.create(obj)
            return
        want_spec = obj.spec.wire()  # type: ignore[attr-defined]
        have = existing.model_dump(by_alias=True, exclude_none=True)
        if have.get("spec") == want_spec and all(existing.metadata.labels.get(k) == v for k, v in obj.metadata.labels.items()):
            return
        updated = existing.deepcopy()
        updated.metadata.labels = {**existing.metadata.labels, **obj.metadata.labels}
        updated.spec = obj.spec.model_copy(deep=True)  # type: ignore[attr-defined]
        store.update(updated)

    def _status(self, app: Application, sync: str, health: str, message: str, conditions: list[dict[str, Any]],
                resources: list[dict[str, Any]], revision: str | None = None) -> None:
        status: dict[str, Any] = {"sync": {"status": sync}, "health": {"status": health}, "resources": resources,
                                  "conditions": conditions}
        if revision is not None:
            status["sync"]["revision"] = revision
        if message:
            status["health"]["message"] = message
        have = app.model_dump(by_alias=True, exclude_none=True).get("status") or {}
        if _norm_status(have) == _norm_status(status):
            return
        status["reconciledAt"] = rfc3339(self.clock.now())
        with contextlib.suppress(ApiError):
            self.host.patch(Application, app.name, app.namespace, {"status": status})

    def _delete(self, app: Application) -> None:
        if FINALIZER_ARGOCD_RESOURCES in app.metadata.finalizers:
            try:
                store = self.destination(app)
            except SyncError:
                store = None
            if store is not None:
                left = self.tracked(store, app.name)
                for obj in left:
                    if obj.metadata.deletion_timestamp is None:
                        with contextlib.suppress(ApiError):
                            store.delete(type(obj), obj.name, obj.namespace)
                if self.tracked(store, app.name):
                    self.schedule(app.namespace or "", app.name)
                    return
        released = app.deepcopy()
        released.metadata.finalizers = [f for f in released.metadata.finalizers if f != FINALIZER_ARGOCD_RESOURCES]
        with contextlib.suppress(ApiError):
            self.host.update(released)
