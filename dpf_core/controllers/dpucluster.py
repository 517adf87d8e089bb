"""DPUCluster controller of the provisioning manager: the owner of `status.phase`.

The cluster managers (kamaji / static) create the cluster and set `Created` (and `KeepalivedReady`); this
controller moves Pending -> Creating, and once every non-Ready condition is True (Created among them)
health-checks the cluster through its admin kubeconfig: Ready (`Ready` True HealthCheckPassed) or NotReady
(`Ready` False HealthCheckFailed, error returned for a rate-limited retry). Healthy: Pending -> Creating -> Ready.

The health check is "a client for the kubeconfig can list Nodes" (DPF asks the server version): the
ClusterClients port hands back a store Client, which has no version call.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Protocol

from dpf_core.api.conditions import set_condition
from dpf_core.api.external import Node, Secret
from dpf_core.api.meta import ConditionStatus
from dpf_core.api.provisioning import (
    DPUCLUSTER_FINALIZER_CLEAN_UP,
    DPUCLUSTER_FINALIZER_INTERNAL_CLEAN_UP,
    DPUCluster,
    DPUClusterConditionReason,
    DPUClusterConditionType,
    DPUClusterPhase,
)
from dpf_core.ports import ClusterClients
from dpf_core.runtime import DONE, Context, Controller, Request, Result
from dpf_core.store.protocol import Client

from .options import ProvisioningOptions

NAME = "dpucluster"
KUBECONFIG_KEY = "admin.conf"


class HealthCheckFailed(Exception):
    pass


def kubeconfig_bytes(ctx: Context, dc: DPUCluster) -> bytes:
    """The admin kubeconfig of a DPU cluster: Secret `spec.kubeconfig` in its namespace, key `admin.conf`."""
    if not dc.spec.kubeconfig:
        raise HealthCheckFailed("spec.kubeconfig is empty")
    secret = ctx.client.try_get(Secret, dc.spec.kubeconfig, dc.namespace)
    if secret is None:
        raise HealthCheckFailed(f'secret "{dc.namespace}/{dc.spec.kubeconfig}" not found')
    if KUBECONFIG_KEY in secret.data:
        try:
            return base64.b64decode(secret.data[KUBECONFIG_KEY], validate=True)
        except (binascii.Error, ValueError) as e:
            raise HealthCheckFailed(f"secret {dc.spec.kubeconfig}: {KUBECONFIG_KEY} is not base64: {e}") from e
    # No `stringData` branch: the API server folds it into `data` and never returns it.
    raise HealthCheckFailed(f"secret {dc.spec.kubeconfig} has no {KUBECONFIG_KEY} key")


def cluster_client(ctx: Context, dc: DPUCluster) -> Client:
    clients: ClusterClients | None = getattr(ctx.ports, "clusters", None)
    if clients is None:
        raise RuntimeError(f"{ctx.controller or NAME}: no ClusterClients port supplied")
    client = clients.for_kubeconfig(kubeconfig_bytes(ctx, dc))
    if client is None:
        raise HealthCheckFailed(f"cannot build a client from secret {dc.spec.kubeconfig}")
    return client


def health_check(ctx: Context, dc: DPUCluster) -> None:
    client = cluster_client(ctx, dc)
    try:
        client.list(Node)
    except Exception as e:
        raise HealthCheckFailed(str(e) or type(e).__name__) from e


def created_and_conditions_true(dc: DPUCluster) -> bool:
    """Every condition but Ready is True, and Created is among them."""
    created = False
    for c in dc.status.conditions:
        if c.type == DPUClusterConditionType.READY:
            continue
        if c.status != "True":
            return False
        if c.type == DPUClusterConditionType.CREATED:
            created = True
    return created


class DPUClusterReconciler:
    def __init__(self, options: ProvisioningOptions | None = None) -> None:
        self.options = options or ProvisioningOptions()

    def reconcile(self, ctx: Context, req: Request) -> Result:
        dc = ctx.client.try_get(DPUCluster, req.name, req.namespace)
        if dc is None:
            return DONE
        if dc.metadata.deletion_timestamp is not None:
            return deleting(ctx, dc)
        if DPUCLUSTER_FINALIZER_INTERNAL_CLEAN_UP not in dc.metadata.finalizers:
            protected = dc.deepcopy()
            protected.metadata.finalizers.append(DPUCLUSTER_FINALIZER_INTERNAL_CLEAN_UP)
            dc = ctx.client.update(protected)
        if dc.status.phase == DPUClusterPhase.PENDING:
            return pending(ctx, dc)
        return check(ctx, dc)


def deleting(ctx: Context, dc: DPUCluster) -> Result:
    # The DPU controller's allocator forgets the cluster with the object; no kubeconfig file is kept here.
    if DPUCLUSTER_FINALIZER_INTERNAL_CLEAN_UP in dc.metadata.finalizers:
        released = dc.deepcopy()
        released.metadata.finalizers = [
            f for f in released.metadata.finalizers if f != DPUCLUSTER_FINALIZER_INTERNAL_CLEAN_UP
        ]
        ctx.client.update(released)
    return DONE


def pending(ctx: Context, dc: DPUCluster) -> Result:
    creating = dc.deepcopy()
    creating.status.phase = DPUClusterPhase.CREATING
    ctx.client.update_status(creating)
    ctx.log.info("DPUCluster %s/%s: start creating cluster", dc.namespace, dc.name)
    return DONE


def check(ctx: Context, dc: DPUCluster) -> Result:
    """Creating/Ready/NotReady: health-check a created cluster; a cluster that stopped being created is NotReady."""
    new = dc.deepcopy()
    failure: HealthCheckFailed | None = None
    if created_and_conditions_true(dc):
        try:
            health_check(ctx, dc)
        except HealthCheckFailed as e:
            failure = e
        now = ctx.timestamp()
        if failure is None:
            set_condition(
                new.status.conditions, DPUClusterConditionType.READY, "True",
                DPUClusterConditionReason.HEALTH_CHECK_PASSED, "", now,
            )
            new.status.phase = DPUClusterPhase.READY
        else:
            set_condition(
                new.status.conditions, DPUClusterConditionType.READY, "False",
                DPUClusterConditionReason.HEALTH_CHECK_FAILED, str(failure), now,
            )
            new.status.phase = DPUClusterPhase.NOT_READY
    elif dc.status.phase in (DPUClusterPhase.READY, DPUClusterPhase.NOT_READY):
        new.status.phase = DPUClusterPhase.NOT_READY
    if new.status != dc.status:
        ctx.client.update_status(new)
    if failure is not None:
        raise HealthCheckFailed(f"health check failed, err: {failure}")
    return DONE


# --- the cluster managers' common reconciler (DPF's internal/clustermanager/controller) ----------------


class ClusterHandler(Protocol):
    """One cluster type's create/delete logic, as a cluster-manager binary plugs it in."""

    def type(self) -> str: ...

    def reconcile_cluster(self, ctx: Context, dc: DPUCluster) -> tuple[str, list[ClusterCondition]]:
        """(kubeconfig Secret name or "", conditions to set). Raising reports an error after nothing is written."""
        ...

    def clean_up_cluster(self, ctx: Context, dc: DPUCluster) -> bool:
        """True once everything the handler made is gone."""
        ...


@dataclass(frozen=True)
class ClusterCondition:
    """cutil.NewCondition: True with `message`, or False with the error as message."""

    type: str
    reason: str
    error: str | None = None
    message: str = ""

    @property
    def status(self) -> ConditionStatus:
        return "False" if self.error is not None else "True"


class ClusterManagerReconciler:
    """Skips other cluster types and stale resourceVersions; deletion -> handler clean-up then finalizer
    `cluster-manager-clean-up`; in Creating/Ready/NotReady the handler runs, its kubeconfig name is written
    to an empty `spec.kubeconfig` and its conditions are set."""

    def __init__(self, handler: ClusterHandler) -> None:
        self.handler = handler
        self._seen_rv: dict[Request, int] = {}

    def _stale(self, req: Request, dc: DPUCluster) -> bool:
        try:
            rv = int(dc.metadata.resource_version or "0")
        except ValueError:
            return False
        if rv < self._seen_rv.get(req, 0):
            return True
        self._seen_rv[req] = rv
        return False

    def reconcile(self, ctx: Context, req: Request) -> Result:
        dc = ctx.client.try_get(DPUCluster, req.name, req.namespace)
        if dc is None:
            self._seen_rv.pop(req, None)
            return DONE
        if self._stale(req, dc) or dc.spec.type != self.handler.type():
            return DONE
        if dc.metadata.deletion_timestamp is not None:
            if DPUCLUSTER_FINALIZER_CLEAN_UP in dc.metadata.finalizers and self.handler.clean_up_cluster(ctx, dc):
                released = dc.deepcopy()
                released.metadata.finalizers = [
                    f for f in released.metadata.finalizers if f != DPUCLUSTER_FINALIZER_CLEAN_UP
                ]
                ctx.client.update(released)
            return DONE
        if DPUCLUSTER_FINALIZER_CLEAN_UP not in dc.metadata.finalizers:
            protected = dc.deepcopy()
            protected.metadata.finalizers.append(DPUCLUSTER_FINALIZER_CLEAN_UP)
            dc = ctx.client.update(protected)
        if dc.status.phase not in _MANAGED_PHASES:
            return DONE
        kubeconfig, conditions = self.handler.reconcile_cluster(ctx, dc)
        # The kubeconfig goes first: Created True tells everyone it can be used.
        if kubeconfig and not dc.spec.kubeconfig:
            with_kubeconfig = dc.deepcopy()
            with_kubeconfig.spec.kubeconfig = kubeconfig
            dc = ctx.client.update(with_kubeconfig)
        new = dc.deepcopy()
        now = ctx.timestamp()
        changed = False
        for c in conditions:
            message = c.error if c.error is not None else c.message
            changed = set_condition(new.status.conditions, c.type, c.status, c.reason, message, now) or changed
        if changed:
            ctx.client.update_status(new)
        return DONE


_MANAGED_PHASES = frozenset({DPUClusterPhase.CREATING, DPUClusterPhase.READY, DPUClusterPhase.NOT_READY})


def controller(options: ProvisioningOptions | None = None) -> Controller:
    """DPF watches DPUClusters only: the cluster managers' condition writes are what move it."""
    return Controller(NAME, DPUClusterReconciler(options), DPUCluster)
