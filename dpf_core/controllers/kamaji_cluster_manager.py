"""The Kamaji cluster manager (binary `kamaji-cluster-manager`): a DPU cluster as a Kamaji TenantControlPlane.

For a `kamaji` DPUCluster `<dc>`: a NodePort Service `<dc>` reserves the API server's node port, then a
TenantControlPlane `<dc>` is created on the control-plane nodes with that port; `Created` stays False
(ClusterNotReady) until Kamaji reports the control plane's Kubernetes version Ready, then turns True and
`<dc>-admin-kubeconfig` (written by Kamaji) becomes `spec.kubeconfig`. With a keepalived endpoint, a
ConfigMap + DaemonSet `<dc>-keepalived` float the VIP over the control-plane nodes (`KeepalivedReady`).
Clean-up is left to ownerReferences.

Who allocates the node port: the API server, when the Service is created. A store without a NodePort
allocator (the MemoryStore) leaves it 0 and this manager reports "missing NodePort for kube-apiserver"
(rate-limited retry) until something fills it, exactly as DPF does in the pass that creates the Service.

Difference from DPF: DPF maps DaemonSet events to DPUClusters by an ownerReference apiVersion that never
matches ("cluster-manager.dpu.nvidia.com"), so keepalived DaemonSet events never reach it; we map them by
the DPUCluster ownerReference.
"""

from __future__ import annotations

from typing import Any

from dpf_core.api.external import (
    LABEL_KAMAJI_NAME,
    LABEL_KAMAJI_TENANT,
    TCP_VERSION_READY,
    ConfigMap,
    DaemonSet,
    Service,
    TenantControlPlane,
)
from dpf_core.api.meta import OwnerReference
from dpf_core.api.provisioning import (
    DPU_CLUSTER_LABEL,
    ClusterType,
    DPUCluster,
    DPUClusterConditionReason,
    DPUClusterConditionType,
)
from dpf_core.errors import AlreadyExists
from dpf_core.runtime import Context, Controller, Watch, own, owner

from .dpucluster import ClusterCondition, ClusterManagerReconciler
from .options import ProvisioningOptions

NAME = "kamaji-cluster-manager"
FIELD_MANAGER = "kamaji-cluster-manager"

API_SERVER_PORT_NAME = "kube-apiserver"
API_SERVER_PORT = 6443
TCP_REPLICAS = 3
DATA_STORE = "default"
KEEPALIVED_IMAGE = "osixia/keepalived:2.0.20"
KEEPALIVED_INIT_IMAGE = "alpine:3.20.3"
KEEPALIVED_CONF_TEMPLATE_KEY = "keepalived.conf.tmpl"
NODE_ROLE_MASTER = "node-role.kubernetes.io/master"
NODE_ROLE_CONTROL_PLANE = "node-role.kubernetes.io/control-plane"


class MissingNodePort(Exception):
    pass


def admin_kubeconfig_name(dc: DPUCluster) -> str:
    return f"{dc.name}-admin-kubeconfig"


def keepalived_name(dc: DPUCluster) -> str:
    return f"{dc.name}-keepalived"


def _control_plane_tolerations() -> list[dict[str, Any]]:
    return [{"key": k, "operator": "Exists", "effect": "NoSchedule"} for k in (NODE_ROLE_MASTER, NODE_ROLE_CONTROL_PLANE)]


def _control_plane_affinity() -> dict[str, Any]:
    # Two terms: either role label will do (terms are ORed).
    terms = [{"matchExpressions": [{"key": k, "operator": "Exists"}]} for k in (NODE_ROLE_MASTER, NODE_ROLE_CONTROL_PLANE)]
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}


def _owner_ref(dc: DPUCluster, *, controller: bool) -> dict[str, Any]:
    return OwnerReference(
        api_version=DPUCluster.KIND.api_version,
        kind=DPUCluster.KIND.kind,
        name=dc.name,
        uid=dc.metadata.uid or "",
        controller=True if controller else None,
        block_owner_deletion=True if controller else None,
    ).wire()


def expected_service(dc: DPUCluster) -> Service:
    """Only there to get a node port allocated; Kamaji takes the Service over once the TCP exists."""
    return Service.model_validate(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": dc.name, "namespace": dc.namespace},
            "spec": {
                "type": "NodePort",
                "ports": [{"name": API_SERVER_PORT_NAME, "protocol": "TCP", "port": API_SERVER_PORT}],
                "selector": {LABEL_KAMAJI_NAME: dc.name},
            },
        }
    )


def _requests(cpu: str, memory: str) -> dict[str, Any]:
    return {"requests": {"cpu": cpu, "memory": memory}}


def expected_tenant_control_plane(dc: DPUCluster, node_port: int) -> TenantControlPlane:
    tenant = {LABEL_KAMAJI_TENANT: dc.name}
    spec: dict[str, Any] = {
        "dataStore": DATA_STORE,
        "controlPlane": {
            "deployment": {
                "replicas": TCP_REPLICAS,
                "affinity": _control_plane_affinity(),
                "tolerations": _control_plane_tolerations(),
                "additionalMetadata": {"labels": dict(tenant)},
                "resources": {
                    "apiServer": _requests("250m", "512Mi"),
                    "controllerManager": _requests("125m", "256Mi"),
                    "scheduler": _requests("125m", "256Mi"),
                },
            },
            "service": {"serviceType": "NodePort", "additionalMetadata": {"labels": dict(tenant)}},
        },
        "kubernetes": {
            "version": dc.spec.version,
            "kubelet": {"cgroupfs": "systemd"},
            "admissionControllers": ["ResourceQuota", "LimitRanger"],
        },
        "addons": {"coreDNS": {}, "kubeProxy": {}},
    }
    endpoint = dc.spec.cluster_endpoint
    if endpoint is not None and endpoint.keepalived is not None:
        spec["networkProfile"] = {"address": endpoint.keepalived.vip, "port": node_port}
    return TenantControlPlane.model_validate(
        {
            "apiVersion": TenantControlPlane.KIND.api_version,
            "kind": TenantControlPlane.KIND.kind,
            "metadata": {
                "name": dc.name,
                "namespace": dc.namespace,
                "labels": {**tenant, DPU_CLUSTER_LABEL: dc.name},
                "ownerReferences": [_owner_ref(dc, controller=False)],
            },
            "spec": spec,
        }
    )


def _api_server_node_port(svc: Service | None) -> int:
    if svc is None:
        return 0
    for p in svc.spec.ports:
        if p.name == API_SERVER_PORT_NAME and p.node_port:
            return p.node_port
    return 0


# The VRRP config each keepalived pod renders for its node: the node's IP's last octet is its priority, and
# a node whose API server port stops answering gives the VIP up.
_KEEPALIVED_CONF = """\
vrrp_script chk-control-plane {
  script "/usr/bin/curl -k https://NODE_IP:NODE_PORT"
  interval 2
  rise 3
  fall 2
  weight 0
}

vrrp_instance dpu-cluster-control-plane {
  state BACKUP
  interface INTERFACE
  virtual_router_id VIRTUAL_ROUTER_ID
  priority PRIORITY
  virtual_ipaddress {
    VIRTUAL_IP
  }
  track_script {
    chk-control-plane
  }
}
"""

_RENDER_CONF = (
    'PRIORITY="$(echo "${NODE_IP}" | cut -d. -f4)"\n'
    'sed -e "s/INTERFACE/${INTERFACE}/g" -e "s/VIRTUAL_ROUTER_ID/${VIRTUAL_ROUTER_ID}/g" '
    '-e "s/PRIORITY/${PRIORITY}/g" -e "s/NODE_PORT/${NODE_PORT}/g" -e "s/VIRTUAL_IP/${VIRTUAL_IP}/g" '
    '-e "s/NODE_IP/${NODE_IP}/g" /conf-template/keepalived.conf.tmpl > /conf/keepalived.conf\n'
)


def expected_keepalived(dc: DPUCluster, node_port: int) -> tuple[ConfigMap, DaemonSet]:
    endpoint = dc.spec.cluster_endpoint
    assert endpoint is not None and endpoint.keepalived is not None
    k = endpoint.keepalived
    name = keepalived_name(dc)
    meta = {"name": name, "namespace": dc.namespace, "ownerReferences": [_owner_ref(dc, controller=True)]}
    config_map = ConfigMap.model_validate(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {KEEPALIVED_CONF_TEMPLATE_KEY: _KEEPALIVED_CONF}}
    )
    selector = {"app.kubernetes.io/name": name}
    env = [
        {"name": "NODE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
        {"name": "INTERFACE", "value": k.interface},
        {"name": "VIRTUAL_ROUTER_ID", "value": str(k.virtual_router_id)},
        {"name": "NODE_PORT", "value": str(node_port)},
        {"name": "VIRTUAL_IP", "value": k.vip},
    ]
    pod_spec: dict[str, Any] = {
        "hostNetwork": True,
        "dnsPolicy": "ClusterFirstWithHostNet",
        "restartPolicy": "Always",
        "tolerations": _control_plane_tolerations(),
        "affinity": _control_plane_affinity(),
        "initContainers": [
            {
                "name": "create-conf",
                "image": KEEPALIVED_INIT_IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "command": ["/bin/sh", "-c", _RENDER_CONF],
                "env": env,
                "volumeMounts": [
                    {"name": "conf-template", "mountPath": "/conf-template", "readOnly": True},
                    {"name": "conf", "mountPath": "/conf"},
                ],
            }
        ],
        "containers": [
            {
                "name": "keepalived",
                "image": KEEPALIVED_IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "resources": {"requests": {"cpu": "5m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
                "securityContext": {"privileged": True},
                "volumeMounts": [{"name": "conf", "mountPath": "/usr/local/etc/keepalived"}],
            }
        ],
        "volumes": [
            {"name": "conf", "emptyDir": {"sizeLimit": "50Mi"}},
            {"name": "conf-template", "configMap": {"name": name, "defaultMode": 420}},
        ],
    }
    if k.node_selector:
        pod_spec["nodeSelector"] = dict(k.node_selector)
    daemon_set = DaemonSet.model_validate(
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": meta,
            "spec": {
                "selector": {"matchLabels": selector},
                "template": {"metadata": {"labels": selector}, "spec": pod_spec},
            },
        }
    )
    return config_map, daemon_set


class KamajiClusterHandler:
    def type(self) -> str:
        return ClusterType.KAMAJI.value

    def reconcile_cluster(self, ctx: Context, dc: DPUCluster) -> tuple[str, list[ClusterCondition]]:
        node_port, created = self.reconcile_kamaji(ctx, dc)
        conditions = [created]
        keepalived = self.reconcile_keepalived(ctx, dc, node_port)
        if keepalived is not None:
            conditions.append(keepalived)
        return (admin_kubeconfig_name(dc) if created.error is None else ""), conditions

    def reconcile_kamaji(self, ctx: Context, dc: DPUCluster) -> tuple[int, ClusterCondition]:
        svc = ctx.client.try_get(Service, dc.name, dc.namespace)
        tcp = ctx.client.try_get(TenantControlPlane, dc.name, dc.namespace)
        if svc is None and tcp is None:
            svc = ctx.client.create(expected_service(dc))
        if tcp is None:
            node_port = _api_server_node_port(svc)
            if node_port == 0:
                raise MissingNodePort("missing NodePort for kube-apiserver")
            tcp = ctx.client.create(expected_tenant_control_plane(dc, node_port))
        else:
            profile = tcp.spec.network_profile
            node_port = (profile.port or 0) if profile is not None else 0
        if tcp.version_status() != TCP_VERSION_READY:
            return node_port, ClusterCondition(
                DPUClusterConditionType.CREATED, DPUClusterConditionReason.CLUSTER_NOT_READY, error="creating cluster"
            )
        return node_port, ClusterCondition(DPUClusterConditionType.CREATED, DPUClusterConditionReason.CREATED)

    def reconcile_keepalived(self, ctx: Context, dc: DPUCluster, node_port: int) -> ClusterCondition | None:
        endpoint = dc.spec.cluster_endpoint
        if endpoint is None or endpoint.keepalived is None or node_port == 0:
            return None
        deployed = ClusterCondition(DPUClusterConditionType.KEEPALIVED_READY, DPUClusterConditionReason.DEPLOYED)
        if ctx.client.try_get(DaemonSet, keepalived_name(dc), dc.namespace) is not None:
            return deployed
        for obj in expected_keepalived(dc, node_port):
            try:
                ctx.client.create(obj)
            except AlreadyExists:
                # DPF server-side-applies: a leftover object (say the ConfigMap of a half-done pass) is overwritten.
                current = ctx.client.get(type(obj), obj.name, obj.namespace)
                obj.metadata.resource_version = current.metadata.resource_version
                ctx.client.update(obj)
        return deployed

    def clean_up_cluster(self, ctx: Context, dc: DPUCluster) -> bool:
        return True


def controller(options: ProvisioningOptions | None = None) -> Controller:
    """DPUClusters; their TenantControlPlane (same name); their keepalived DaemonSet (ownerReference)."""
    return Controller(
        NAME,
        ClusterManagerReconciler(KamajiClusterHandler()),
        DPUCluster,
        watches=[Watch(TenantControlPlane, own()), Watch(DaemonSet, owner(DPUCluster))],
    )
