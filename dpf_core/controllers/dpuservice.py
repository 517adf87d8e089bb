"""DPUService -> ArgoCD: one Application per DPU cluster (or one in-cluster Application), plus what they need.

One pass (DPF's dpuservice controller; the Ready summary and status are written on every pass):
1. exactly one DPFOperatorConfig (its namespace hosts the Argo objects); every DPUCluster (no health filter);
2. paused -> annotate the Applications `argocd.argoproj.io/skip-reconcile: "true"` and stop (a deletion waits
   until the service is resumed);
3. deleting -> delete the Applications; `ApplicationsReconciled` False AwaitingDeletion and requeue 30 s while
   any remain; then clear `dpu.nvidia.com/consumed-by` on the interfaces, delete the mirrored image pull
   secrets when no live DPUService is left in the namespace, drop the finalizer;
4. interfaces: each must be a `service` DPUServiceInterface with this serviceID, consumed by nobody else; mark
   it consumed and merge Multus network entries into serviceDaemonSet.annotations (existing entries win);
5. prerequisites: the namespace in every target cluster, Argo cluster Secrets, the two AppProjects, and the
   image pull secrets of the namespace mirrored into every DPU cluster (orphans deleted);
6. Applications: values = deep-merge(user values, {"serviceDaemonSet": computed}) with computed winning,
   updated only when the spec differs or the Application was paused;
7. `ApplicationsReady`: every Application Synced + Healthy and as many Applications as targets.

Differences from DPF (docs/differences.md): step 7 counts ONE target for a deployInCluster service (DPF compares
with the number of DPU clusters, so such a service is only Ready when exactly one DPU cluster exists).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from dpf_core.api.conditions import (
    REASON_AWAITING_DELETION,
    REASON_ERROR,
    REASON_PENDING,
    REASON_SUCCESS,
    set_condition,
)
from dpf_core.api.external import (
    ANNOTATION_ARGOCD_SKIP_RECONCILE,
    ANNOTATION_MULTUS_NETWORKS,
    ARGOCD_APP_PROJECT_DPU,
    ARGOCD_APP_PROJECT_HOST,
    ARGOCD_IN_CLUSTER,
    FINALIZER_ARGOCD_RESOURCES,
    LABEL_ARGOCD_SECRET_TYPE,
    SECRET_TYPE_OPAQUE,
    Application,
    AppProject,
    Secret,
)
from dpf_core.api.meta import KubeObject
from dpf_core.api.provisioning import DPUCluster
from dpf_core.api.svc import (
    ANNOTATION_DPUSERVICE_INTERFACE_CONSUMED_BY,
    CONDITION_APPLICATION_PREREQS_RECONCILED,
    CONDITION_APPLICATIONS_READY,
    CONDITION_APPLICATIONS_RECONCILED,
    CONDITION_DPUSERVICE_INTERFACE_RECONCILED,
    CONDITION_READY,
    FINALIZER_DPUSERVICE,
    INTERFACE_TYPE_SERVICE,
    LABEL_DPF_COMPONENT,
    LABEL_DPF_IMAGE_PULL_SECRET,
    LABEL_DPF_SERVICE_ID,
    LABEL_DPU_CLUSTER,
    LABEL_DPUSERVICE_NAME,
    LABEL_DPUSERVICE_NAMESPACE,
    DPUService,
    DPUServiceInterface,
)
from dpf_core.errors import NotFound
from dpf_core.runtime import DONE, Context, Controller, Request, Result, Watch, by_label, from_object
from dpf_core.store.protocol import Client

from .mirror import ListerCell, ListerController, apply, ensure_namespace
from .reconcile_base import ERROR_OCCURRED, StatusReconciler, phase
from .svc_common import b64, cluster_access, deep_merge, operator_config

# multus-cni v4.0.2 NetworkSelectionElement's JSON fields in struct order: DPF decodes the user's networks annotation
# into that struct and marshals it back, so the rendered annotation has this key order, only these keys, the
# omitempty ones left out when empty, and map values (cni-args) with sorted keys, as encoding/json writes them.
# `cni-args` has no omitempty in v4.0.2: an entry without it is written `"cni-args":null` (DPF's own nad and
# pod-ipam-injector tests expect exactly that).
_NSE_FIELDS = ("name", "namespace", "ips", "mac", "infiniband-guid", "interface", "interfaceRequest", "portMappings",
               "bandwidth", "deviceID", "cni-args", "default-route")
_NSE_BY_FOLDED = {f.lower(): f for f in _NSE_FIELDS}
_NSE_POINTERS = frozenset({"bandwidth", "cni-args", "default-route"})  # nil is their only empty value
_NSE_NOT_OMITTED = frozenset({"name", "cni-args"})


def _go_json_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _go_json_value(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_go_json_value(v) for v in value]
    return value


def _nse_empty(key: str, value: Any) -> bool:
    if key in _NSE_POINTERS:
        return value is None
    return value is None or value == "" or value == []


def network_selection_element(entry: dict[str, Any]) -> dict[str, Any]:
    """One networks-annotation entry as DPF's json round trip through NetworkSelectionElement leaves it (keys
    matched case-insensitively, as encoding/json does; unknown keys dropped; `name` and `cni-args` always
    written, a missing name as Go's "", a missing cni-args as null)."""
    fields: dict[str, Any] = {}
    for key, value in entry.items():
        canonical = key if key in _NSE_FIELDS else _NSE_BY_FOLDED.get(key.lower())
        if canonical is not None:
            fields[canonical] = value
    out: dict[str, Any] = {}
    for key in _NSE_FIELDS:
        value = fields.get(key)
        if key == "name":
            out[key] = value or ""
        elif not _nse_empty(key, value):
            out[key] = _go_json_value(value)
        elif key in _NSE_NOT_OMITTED:
            out[key] = None
    return out


def go_json_marshal(value: Any) -> str:
    """encoding/json.Marshal's text: compact, UTF-8 kept as is, `<`, `>`, `&`, U+2028 and U+2029 escaped (these
    can only occur inside strings, so replacing them in the dump is safe)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                          ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


_GO_JSON_KINDS = {dict: "object", list: "array", str: "string", bool: "bool", int: "number", float: "number"}


def _existing_networks(raw: str) -> list[dict[str, Any]]:
    """nad.go's json.Unmarshal of the user's annotation into []NetworkSelectionElement, failing with DPF's text
    (the decode error itself is Python's for bad JSON, encoding/json's for a value of the wrong kind)."""
    try:
        parsed = json.loads(raw)
        if not isinstance(parsed, list):
            raise ValueError(f"json: cannot unmarshal {_GO_JSON_KINDS.get(type(parsed), 'null')} into Go value of "
                             "type []types.NetworkSelectionElement")
        for e in parsed:
            if e is not None and not isinstance(e, dict):
                raise ValueError(f"json: cannot unmarshal {_GO_JSON_KINDS[type(e)]} into Go value of type "
                                 "types.NetworkSelectionElement")
    except ValueError as e:
        raise ValueError(f"failed to unmarshal existing networks: {e}, expected format is a list of objects") from e
    # A JSON null element decodes to the struct's zero value.
    return [network_selection_element(e or {}) for e in parsed]


def merge_networks(wanted: list[dict[str, Any]], existing: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """DPF's mergeIntoSlice: an entry already in the annotation for a DPUServiceInterface's interface takes
    precedence field by field (its non-empty fields win), the remaining interfaces are added, and the whole list
    is sorted by (name, interface)."""
    by_interface = {str(e.get("interface", "")): e for e in wanted}
    result: list[dict[str, Any]] = []
    for e in existing:
        ours = by_interface.pop(str(e.get("interface", "")), None)
        if ours is None:
            result.append(e)
        else:
            combined = {**ours, **{k: v for k, v in e.items() if not _nse_empty(k, v)}}
            result.append(network_selection_element(combined))
    result.extend(by_interface.values())
    result.sort(key=lambda e: (str(e.get("name", "")), str(e.get("interface", ""))))
    return result


NAME = "dpuservice"
COMPONENT = "dpuservice-manager"
AWAITING_DELETION_REQUEUE = 30.0

CONDITIONS = (
    CONDITION_READY,
    CONDITION_APPLICATION_PREREQS_RECONCILED,
    CONDITION_APPLICATIONS_RECONCILED,
    CONDITION_APPLICATIONS_READY,
    CONDITION_DPUSERVICE_INTERFACE_RECONCILED,
)


class Target:
    """Where an Application of the service goes: a DPU cluster or the host ("in-cluster")."""

    __slots__ = ("client", "cluster", "name")

    def __init__(self, name: str, client: Client, cluster: DPUCluster | None) -> None:
        self.name = name
        self.client = client
        self.cluster = cluster


def argo_cluster_secret_name(dc: DPUCluster) -> str:
    return f"{dc.namespace}-{dc.name}"


def application_name(cluster: str, service: str) -> str:
    return f"{cluster}-{service}"


def service_labels(svc: DPUService) -> dict[str, str]:
    return {LABEL_DPUSERVICE_NAME: svc.name, LABEL_DPUSERVICE_NAMESPACE: svc.namespace or ""}


def project_of(svc: DPUService) -> str:
    return ARGOCD_APP_PROJECT_HOST if svc.spec.should_deploy_in_cluster() else ARGOCD_APP_PROJECT_DPU


class DPUServiceReconciler(StatusReconciler[DPUService]):
    # Not the FinalizerReconciler pass: the operator config is read and a paused service handled before the
    # deletion and finalizer checks.
    KIND = DPUService
    CONDITIONS = CONDITIONS
    FINALIZER = FINALIZER_DPUSERVICE

    # --- targets ----------------------------------------------------------------------------------------
    def _clusters(self, ctx: Context) -> list[DPUCluster]:
        return sorted(ctx.client.list(DPUCluster), key=lambda c: (c.namespace or "", c.name))

    def _targets(self, ctx: Context, svc: DPUService) -> list[Target]:
        if svc.spec.should_deploy_in_cluster():
            return [Target(ARGOCD_IN_CLUSTER, ctx.client, None)]
        from .dpucluster import cluster_client

        return [Target(dc.name, cluster_client(ctx, dc), dc) for dc in self._clusters(ctx)]

    # --- the flow ---------------------------------------------------------------------------------------
    def run(self, ctx: Context, obj: DPUService, new: DPUService, now: str) -> Result:
        conds = new.status.conditions
        try:
            config = operator_config(ctx)
        except Exception as e:
            # Failure only: success is this condition's own step, further down.
            set_condition(conds, CONDITION_APPLICATION_PREREQS_RECONCILED, "False", REASON_ERROR,
                          f"{ERROR_OCCURRED}{e}", now)
            raise
        argo_ns = config.namespace or "default"
        if new.spec.is_paused():
            self._pause(ctx, new, argo_ns)
            return DONE
        if obj.metadata.deletion_timestamp is not None:
            return self._reconcile_delete(ctx, new, argo_ns, now)
        if FINALIZER_DPUSERVICE not in new.metadata.finalizers:
            new.metadata.finalizers.append(FINALIZER_DPUSERVICE)
            return DONE

        with phase(conds, CONDITION_DPUSERVICE_INTERFACE_RECONCILED, now, "Unable to reconcile interfaces for "):
            sds = self._reconcile_interfaces(ctx, new)
        with phase(conds, CONDITION_APPLICATION_PREREQS_RECONCILED, now, "Unable to reconcile application prereq for "):
            targets = self._targets(ctx, new)
            self._reconcile_prereqs(ctx, new, targets, argo_ns)
        with phase(conds, CONDITION_APPLICATIONS_RECONCILED, now, "Unable to reconcile Applications: "):
            for target in targets:
                self._ensure_application(ctx, new, sds, target.name, argo_ns)
        return DONE

    def _applications(self, ctx: Context, svc: DPUService) -> list[Application]:
        return sorted(ctx.client.list(Application, label_selector=service_labels(svc)), key=lambda a: a.name)

    def _pause(self, ctx: Context, svc: DPUService, argo_ns: str) -> None:
        for app in self._applications(ctx, svc):
            if app.metadata.annotations.get(ANNOTATION_ARGOCD_SKIP_RECONCILE) == "true":
                continue
            paused = app.deepcopy()
            paused.metadata.annotations[ANNOTATION_ARGOCD_SKIP_RECONCILE] = "true"
            ctx.client.update(paused)

    # --- interfaces -------------------------------------------------------------------------------------
    def _reconcile_interfaces(self, ctx: Context, svc: DPUService) -> dict[str, Any]:
        """Mark the interfaces consumed; the serviceDaemonSet values with the Multus networks merged in."""
        sds = svc.spec.service_daemon_set
        computed: dict[str, Any] = sds.wire() if sds is not None else {}
        if not svc.spec.interfaces:
            return computed
        wanted: list[dict[str, str]] = []
        for name in svc.spec.interfaces:
            # The API server's NotFound, as DPF's Get returns it into the condition message.
            dsi = ctx.client.get(DPUServiceInterface, name, svc.namespace)
            spec = dsi.spec.template.spec.template.spec
            if spec.interface_type != INTERFACE_TYPE_SERVICE or spec.service is None:
                raise ValueError(f"wrong service definition in DPUServiceInterface {name}")
            # Admission requires serviceID with interfaces; DPF still skips the check when it is unset.
            if svc.spec.service_id is not None and spec.service.service_id != svc.spec.service_id:
                raise ValueError(f"conflicting ServiceID in DPUServiceInterface {name}")
            # DPF writes the bare DPUService name: interface and service share the namespace.
            consumer = dsi.metadata.annotations.get(ANNOTATION_DPUSERVICE_INTERFACE_CONSUMED_BY)
            me = svc.name
            if consumer not in (None, me):
                raise ValueError(f"dpuServiceInterface {name} is in use by another DPUService")
            if consumer is None:
                marked = dsi.deepcopy()
                marked.metadata.annotations[ANNOTATION_DPUSERVICE_INTERFACE_CONSUMED_BY] = me
                ctx.client.update(marked)
            network = spec.service.network
            ns, _, net = network.rpartition("/")
            entry = {"name": net, "interface": spec.service.interface_name}
            if ns:
                entry["namespace"] = ns
            wanted.append(network_selection_element(entry))
        annotations = dict(computed.get("annotations") or {})
        existing: list[dict[str, Any]] = []
        raw = annotations.get(ANNOTATION_MULTUS_NETWORKS)
        if raw:
            existing = _existing_networks(raw)
        merged = merge_networks(wanted, existing)
        annotations[ANNOTATION_MULTUS_NETWORKS] = go_json_marshal(merged)
        computed["annotations"] = annotations
        return computed

    # --- prerequisites ----------------------------------------------------------------------------------
    def _reconcile_prereqs(self, ctx: Context, svc: DPUService, targets: list[Target], argo_ns: str) -> None:
        namespace = svc.namespace or "default"
        for target in targets:
            ensure_namespace(target.client, namespace)
        config = operator_config(ctx)
        clusters = self._clusters(ctx)
        for dc in clusters:
            self._ensure_argo_secret(ctx, dc, argo_ns, config)
        self._ensure_projects(ctx, clusters, argo_ns)
        self._mirror_pull_secrets(ctx, namespace, clusters)

    def _ensure_argo_secret(self, ctx: Context, dc: DPUCluster, argo_ns: str, config: KubeObject) -> None:
        access = cluster_access(ctx, dc)
        tls = {k: b64(v) for k, v in (("caData", access.ca_data), ("keyData", access.key_data),
                                      ("certData", access.cert_data)) if v}
        name = argo_cluster_secret_name(dc)
        desired = Secret.new(
            name, argo_ns, type=SECRET_TYPE_OPAQUE,
            metadata={"name": name, "namespace": argo_ns,
                      "labels": {LABEL_ARGOCD_SECRET_TYPE: "cluster", LABEL_DPU_CLUSTER: name,
                                 LABEL_DPF_COMPONENT: COMPONENT},
                      "ownerReferences": [config.controller_ref().model_dump(by_alias=True, exclude_none=True)]},
            data={"name": b64(access.cluster_name), "server": b64(access.server),
                  "config": b64(json.dumps({"tlsClientConfig": tls}, separators=(",", ":")))},
        )
        existing = ctx.client.try_get(Secret, name, argo_ns)
        if existing is None:
            with contextlib.suppress(Exception):
                ctx.client.create(desired)
            return
        if existing.data != desired.data or existing.metadata.labels != {**existing.metadata.labels,
                                                                         **desired.metadata.labels}:
            updated = existing.deepcopy()
            updated.data = dict(desired.data)
            updated.metadata.labels = {**existing.metadata.labels, **desired.metadata.labels}
            ctx.client.update(updated)

    def _ensure_projects(self, ctx: Context, clusters: list[DPUCluster], argo_ns: str) -> None:
        for name, destinations in (
            (ARGOCD_APP_PROJECT_DPU, [{"name": dc.name, "namespace": "*"} for dc in clusters]),
            (ARGOCD_APP_PROJECT_HOST, [{"name": ARGOCD_IN_CLUSTER, "namespace": "*"}]),
        ):
            apply(ctx.client, AppProject.new(
                name, argo_ns,
                metadata={"name": name, "namespace": argo_ns, "labels": {LABEL_DPF_COMPONENT: COMPONENT}},
                spec={"sourceRepos": ["*"], "destinations": destinations, "description": "Installing DPU Services",
                      "clusterResourceWhitelist": [{"group": "*", "kind": "*"}]},
            ))

    def _mirror_pull_secrets(self, ctx: Context, namespace: str, clusters: list[DPUCluster]) -> None:
        from .dpucluster import cluster_client

        wanted = {s.name: s for s in ctx.client.list(Secret, namespace, label_selector={LABEL_DPF_IMAGE_PULL_SECRET: ""})}
        for dc in clusters:
            client = cluster_client(ctx, dc)
            if wanted:
                ensure_namespace(client, namespace)
            for name, source in wanted.items():
                # DPF copies the Secret's labels (not only the marker), data, type and immutability.
                copy = Secret.new(name, namespace, type=source.type, data=dict(source.data), immutable=source.immutable,
                                  metadata={"name": name, "namespace": namespace,
                                            "labels": dict(source.metadata.labels)})
                existing = client.try_get(Secret, name, namespace)
                if existing is None:
                    client.create(copy)
                elif (existing.data != copy.data or existing.type != copy.type
                      or any(existing.metadata.labels.get(k) != v for k, v in copy.metadata.labels.items())):
                    updated = existing.deepcopy()
                    updated.data, updated.type = dict(copy.data), copy.type
                    updated.metadata.labels = {**existing.metadata.labels, **copy.metadata.labels}
                    client.update(updated)
            for orphan in client.list(Secret, namespace, label_selector={LABEL_DPF_IMAGE_PULL_SECRET: ""}):
                if orphan.name not in wanted:
                    with contextlib.suppress(NotFound):
                        client.delete(Secret, orphan.name, namespace)

    # --- Applications -----------------------------------------------------------------------------------
    def _ensure_application(self, ctx: Context, svc: DPUService, sds: dict[str, Any], cluster: str,
                            argo_ns: str) -> None:
        desired = desired_application(svc, sds, cluster, argo_ns)
        existing = ctx.client.try_get(Application, desired.name, argo_ns)
        if existing is None:
            ctx.client.create(desired)
            return
        paused = existing.metadata.annotations.get(ANNOTATION_ARGOCD_SKIP_RECONCILE) == "true"
        if existing.spec.wire() == desired.spec.wire() and not paused:
            return
        updated = existing.deepcopy()
        updated.spec = desired.spec
        updated.metadata.annotations.pop(ANNOTATION_ARGOCD_SKIP_RECONCILE, None)
        ctx.client.update(updated)

    # --- deletion ---------------------------------------------------------------------------------------
    def _reconcile_delete(self, ctx: Context, new: DPUService, argo_ns: str, now: str) -> Result:
        apps = self._applications(ctx, new)
        for app in apps:
            if app.metadata.deletion_timestamp is None:
                with contextlib.suppress(NotFound):
                    ctx.client.delete(Application, app.name, app.namespace)
        apps = self._applications(ctx, new)
        if apps:
            names = ", ".join(f"{a.namespace}/{a.name}.argoproj.io" for a in apps)
            set_condition(new.status.conditions, CONDITION_APPLICATIONS_RECONCILED, "False", REASON_AWAITING_DELETION,
                          f"The following applications are awaiting deletion: {names}", now)
            return Result(requeue_after=AWAITING_DELETION_REQUEUE)
        me = new.name
        for name in new.spec.interfaces or []:
            dsi = ctx.client.try_get(DPUServiceInterface, name, new.namespace)
            if dsi is not None and dsi.metadata.annotations.get(ANNOTATION_DPUSERVICE_INTERFACE_CONSUMED_BY) == me:
                freed = dsi.deepcopy()
                del freed.metadata.annotations[ANNOTATION_DPUSERVICE_INTERFACE_CONSUMED_BY]
                ctx.client.update(freed)
        others = [s for s in ctx.client.list(DPUService, new.namespace)
                  if s.name != new.name and s.metadata.deletion_timestamp is None]
        if not others:
            from .dpucluster import cluster_client

            for dc in self._clusters(ctx):
                with contextlib.suppress(Exception):
                    client = cluster_client(ctx, dc)
                    for s in client.list(Secret, new.namespace, label_selector={LABEL_DPF_IMAGE_PULL_SECRET: ""}):
                        with contextlib.suppress(NotFound):
                            client.delete(Secret, s.name, s.namespace)
        new.metadata.finalizers = [f for f in new.metadata.finalizers if f != FINALIZER_DPUSERVICE]
        return DONE

    # --- readiness --------------------------------------------------------------------------------------
    def summarize(self, ctx: Context, obj: DPUService, new: DPUService, now: str) -> Exception | None:
        try:
            self._summary(ctx, new, now)
        except Exception as e:
            set_condition(new.status.conditions, CONDITION_APPLICATIONS_READY, "False", REASON_PENDING,
                          f"{ERROR_OCCURRED}{e}", now)
            # Retried like any reconcile error: an Application that is already Synced and Healthy sends no
            # event, so a failed read here (an API brownout) would otherwise stand for good (chaos seed 335).
            return e
        return None

    def _summary(self, ctx: Context, new: DPUService, now: str) -> bool:
        conds = new.status.conditions
        apps = self._applications(ctx, new)
        expected = 1 if new.spec.should_deploy_in_cluster() else len(self._clusters(ctx))
        unready: list[str] = []
        for app in apps:
            if app.is_synced_and_healthy():
                continue
            sync = app.status.sync.status if app.status.sync else ""
            health = app.status.health.status if app.status.health and app.status.health.status else ""
            if not sync and not health:
                unready.append("Application is not yet deployed.")
                continue
            unready.append(f"Application is not ready (Sync: {sync}, Health: {health}). Run 'kubectl describe "
                           f"application {app.name} -n {app.namespace}' for details.")
        if unready or len(apps) != expected:
            set_condition(conds, CONDITION_APPLICATIONS_READY, "False", REASON_PENDING, ", ".join(unready), now)
            return False
        set_condition(conds, CONDITION_APPLICATIONS_READY, "True", REASON_SUCCESS, "", now)
        return True


def service_values(svc: DPUService, sds: dict[str, Any]) -> dict[str, Any]:
    """User values with the computed serviceDaemonSet block merged over them (computed wins)."""
    computed = dict(sds)
    if svc.spec.service_id:
        computed["labels"] = {**(computed.get("labels") or {}), LABEL_DPF_SERVICE_ID: svc.spec.service_id}
    return deep_merge(svc.spec.helm_chart.values or {}, {"serviceDaemonSet": computed})


def desired_application(svc: DPUService, sds: dict[str, Any], cluster: str, argo_ns: str) -> Application:
    source = svc.spec.helm_chart.source
    helm: dict[str, Any] = {"valuesObject": service_values(svc, sds)}
    if source.release_name:
        helm["releaseName"] = source.release_name
    src: dict[str, Any] = {"repoURL": source.get_argo_repo_url(), "targetRevision": source.version, "helm": helm}
    if source.chart:
        src["chart"] = source.chart
    if source.path:
        src["path"] = source.path
    name = application_name(cluster, svc.name)
    return Application.new(
        name, argo_ns,
        metadata={"name": name, "namespace": argo_ns,
                  "labels": {LABEL_DPU_CLUSTER: cluster, **service_labels(svc), LABEL_DPF_COMPONENT: COMPONENT},
                  "finalizers": [FINALIZER_ARGOCD_RESOURCES]},
        spec={"source": src, "project": project_of(svc),
              "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
              "destination": {"name": cluster, "namespace": svc.namespace}},
    )


def controller() -> Controller:
    cell = ListerCell()

    def by_interface(obj: KubeObject) -> list[Request]:
        if cell.lister is None:
            return []
        return sorted(Request.of(s) for s in cell.lister(DPUService)
                      if isinstance(s, DPUService) and s.namespace == obj.namespace and obj.name in (s.spec.interfaces or []))

    def by_namespace(obj: KubeObject) -> list[Request]:
        if cell.lister is None or LABEL_DPF_IMAGE_PULL_SECRET not in obj.metadata.labels:
            return []
        return sorted(Request.of(s) for s in cell.lister(DPUService) if s.namespace == obj.namespace)

    return ListerController(
        NAME, DPUServiceReconciler(), DPUService,
        [
            Watch(Application, by_label(LABEL_DPUSERVICE_NAME, LABEL_DPUSERVICE_NAMESPACE)),
            Watch(DPUServiceInterface, from_object(by_interface)),
            Watch(DPUCluster, cell.mapper_all(DPUService)),
            Watch(Secret, from_object(by_namespace)),
        ],
        cell=cell,
    )
