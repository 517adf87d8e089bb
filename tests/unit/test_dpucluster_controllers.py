"""DPUCluster phase owner + static and Kamaji cluster managers, run together as in a host cluster."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from dpf_core.api.external import ConfigMap, DaemonSet, Node, Secret, Service, TenantControlPlane
from dpf_core.api.provisioning import (
    DPUCLUSTER_FINALIZER_CLEAN_UP,
    DPUCLUSTER_FINALIZER_INTERNAL_CLEAN_UP,
    DPUCluster,
    DPUClusterPhase,
)
from dpf_core.controllers import dpucluster, kamaji_cluster_manager, static_cluster_manager
from dpf_core.ports import Ports
from dpf_core.runtime import Manager, ManualClock, Request, SyncDriver
from dpf_core.store import MemoryStore
from dpf_core.store.protocol import Client

NS = "dpu-cplane-tenant1"
KUBECONFIG = b"apiVersion: v1\nkind: Config\nclusters: [{name: dpu, cluster: {server: https://10.0.0.100:31000}}]\n"


class FakeClusterClients:
    """Every well-formed kubeconfig reaches the same DPU cluster store (or none while it is `down`)."""

    def __init__(self) -> None:
        self.dpu_cluster = MemoryStore(name="dpu-cluster")
        self.down = False
        self.seen: list[bytes] = []

    def for_kubeconfig(self, kubeconfig: bytes) -> Client | None:
        self.seen.append(kubeconfig)
        return None if self.down else self.dpu_cluster


class World:
    def __init__(self, *, managers: tuple[str, ...] = ("static", "kamaji")) -> None:
        self.clock = ManualClock()
        self.store = MemoryStore(clock=self.clock.now)
        self.clients = FakeClusterClients()
        self.mgr = Manager(self.store, self.clock, ports=Ports(clusters=self.clients))
        self.mgr.add(dpucluster.controller())
        if "static" in managers:
            self.mgr.add(static_cluster_manager.controller())
        if "kamaji" in managers:
            self.mgr.add(kamaji_cluster_manager.controller())
        self.driver = SyncDriver(self.mgr, record=True)

    def run(self, seconds: float = 1) -> int:
        return self.driver.run_for(seconds, max_steps=2000).errors

    def dc(self, name: str = "dc") -> DPUCluster:
        return self.store.get(DPUCluster, name, NS)

    def conditions(self, name: str = "dc") -> dict[str, tuple[str, str]]:
        return {c.type: (c.status, c.reason) for c in self.dc(name).status.conditions}

    def kubeconfig_secret(self, name: str) -> None:
        self.store.create(
            Secret.model_validate(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": name, "namespace": NS},
                    "data": {"admin.conf": base64.b64encode(KUBECONFIG).decode()},
                }
            )
        )


def cluster(type_: str, name: str = "dc", **spec: Any) -> DPUCluster:
    return DPUCluster.new(name, NS, spec={"type": type_, "version": "v1.30.2", "maxNodes": 10, **spec})


# --- static -------------------------------------------------------------------------------------------


def test_static_cluster_pending_creating_ready() -> None:
    w = World()
    w.kubeconfig_secret("static-kubeconfig")
    w.store.create(cluster("static", kubeconfig="static-kubeconfig"))
    assert w.run() == 0
    dc = w.dc()
    assert dc.status.phase == DPUClusterPhase.READY
    assert w.conditions() == {"Created": ("True", "Created"), "Ready": ("True", "HealthCheckPassed")}
    assert set(dc.metadata.finalizers) == {DPUCLUSTER_FINALIZER_CLEAN_UP, DPUCLUSTER_FINALIZER_INTERNAL_CLEAN_UP}
    assert w.clients.seen[-1] == KUBECONFIG
    assert w.driver.next_ready_at() is None  # nothing periodic: events move DPUClusters
    rv = dc.metadata.resource_version
    for c in w.mgr.controllers:
        c.enqueue(Request(NS, "dc"))
    assert w.run() == 0
    assert w.dc().metadata.resource_version == rv  # a pass that changes nothing writes nothing


def test_static_cluster_without_kubeconfig_stays_creating() -> None:
    w = World()
    w.store.create(cluster("static"))
    assert w.run() == 0
    dc = w.dc()
    assert dc.status.phase == DPUClusterPhase.CREATING
    [created] = dc.status.conditions
    assert (created.type, created.status, created.reason, created.message) == (
        "Created", "False", "EmptyKubeconfig", "spec.kubeconfig is empty",
    )


def test_health_check_failure_is_not_ready_and_recovers() -> None:
    w = World()
    w.clients.down = True
    w.kubeconfig_secret("static-kubeconfig")
    w.store.create(cluster("static", kubeconfig="static-kubeconfig"))
    assert w.run(2) > 0  # the failed health check is returned as an error (rate-limited retry)
    assert w.dc().status.phase == DPUClusterPhase.NOT_READY
    assert w.conditions()["Ready"] == ("False", "HealthCheckFailed")
    w.clients.down = False
    w.run(5)
    assert w.dc().status.phase == DPUClusterPhase.READY
    assert w.conditions()["Ready"] == ("True", "HealthCheckPassed")


def test_ready_cluster_whose_condition_drops_goes_not_ready() -> None:
    w = World(managers=())
    w.kubeconfig_secret("k")
    w.store.create(cluster("vendor/custom", kubeconfig="k"))
    w.run()
    assert w.dc().status.phase == DPUClusterPhase.CREATING  # no manager for this type: no Created
    dc = w.dc().deepcopy()
    dc.status.conditions = [_condition("Created", "True"), _condition("Extra", "True")]
    w.store.update_status(dc)
    w.run()
    assert w.dc().status.phase == DPUClusterPhase.READY
    dc = w.dc().deepcopy()
    dc.status.conditions = [c if c.type != "Extra" else _condition("Extra", "False") for c in dc.status.conditions]
    w.store.update_status(dc)
    w.run()
    assert w.dc().status.phase == DPUClusterPhase.NOT_READY


def _condition(type_: str, status: str) -> Any:
    from dpf_core.api.meta import Condition

    return Condition.model_validate(
        {"type": type_, "status": status, "reason": type_, "lastTransitionTime": "2025-01-01T00:00:00Z"}
    )


def test_managers_ignore_other_cluster_types() -> None:
    w = World(managers=("static",))
    w.store.create(cluster("kamaji"))
    w.run()
    dc = w.dc()
    assert dc.metadata.finalizers == [DPUCLUSTER_FINALIZER_INTERNAL_CLEAN_UP]
    assert dc.status.conditions == [] and dc.status.phase == DPUClusterPhase.CREATING


def test_deletion_drops_both_finalizers() -> None:
    w = World()
    w.kubeconfig_secret("k")
    w.store.create(cluster("static", kubeconfig="k"))
    w.run()
    w.store.delete(DPUCluster, "dc", NS)
    w.run()
    assert w.store.try_get(DPUCluster, "dc", NS) is None


# --- kamaji -------------------------------------------------------------------------------------------

KEEPALIVED = {"keepalived": {"vip": "10.0.0.100", "virtualRouterID": 126, "interface": "br-ex", "nodeSelector": {"cp": "yes"}}}


def _allocate_node_port(w: World, port: int = 31000) -> None:
    """What the API server does on Service create (the MemoryStore has no NodePort allocator)."""
    svc = w.store.get(Service, "dc", NS).deepcopy()
    svc.spec.ports[0].node_port = port
    w.store.update(svc)


def _tcp_becomes_ready(w: World) -> None:
    """What Kamaji does: the control plane comes up and its admin kubeconfig Secret is written."""
    w.kubeconfig_secret("dc-admin-kubeconfig")
    w.store.patch(
        TenantControlPlane, "dc", NS,
        {"status": {"kubernetesResources": {"version": {"version": "v1.30.2", "status": "Ready"}}}},
        subresource="status",
    )


def test_kamaji_cluster_end_to_end() -> None:
    w = World()
    w.store.create(cluster("kamaji", clusterEndpoint=KEEPALIVED))
    assert w.run() > 0  # "missing NodePort for kube-apiserver" until the port is allocated
    svc = w.store.get(Service, "dc", NS)
    assert svc.spec.type == "NodePort" and svc.spec.selector == {"kamaji.clastix.io/name": "dc"}
    assert [(p.name, p.port, p.protocol) for p in svc.spec.ports] == [("kube-apiserver", 6443, "TCP")]
    assert w.store.try_get(TenantControlPlane, "dc", NS) is None

    _allocate_node_port(w)
    w.run(60)
    tcp = w.store.get(TenantControlPlane, "dc", NS)
    dc = w.dc()
    assert tcp.metadata.labels == {"tenant.clastix.io": "dc", "dpu.nvidia.com/cluster": "dc"}
    assert [(r.kind, r.name, r.uid) for r in tcp.metadata.owner_references] == [("DPUCluster", "dc", dc.metadata.uid)]
    assert tcp.spec.data_store == "default"
    assert tcp.spec.control_plane.deployment is not None and tcp.spec.control_plane.deployment["replicas"] == 3
    assert tcp.spec.control_plane.deployment["resources"]["apiServer"]["requests"] == {"cpu": "250m", "memory": "512Mi"}
    assert tcp.spec.control_plane.service.service_type == "NodePort"
    assert tcp.spec.kubernetes.version == "v1.30.2" and tcp.spec.kubernetes.kubelet.cgroupfs == "systemd"
    assert tcp.spec.kubernetes.admission_controllers == ["ResourceQuota", "LimitRanger"]
    assert tcp.spec.network_profile is not None
    assert (tcp.spec.network_profile.address, tcp.spec.network_profile.port) == ("10.0.0.100", 31000)
    assert w.conditions() == {"Created": ("False", "ClusterNotReady"), "KeepalivedReady": ("True", "Deployed")}
    assert dc.status.phase == DPUClusterPhase.CREATING and dc.spec.kubeconfig is None

    ds = w.store.get(DaemonSet, "dc-keepalived", NS)
    cm = w.store.get(ConfigMap, "dc-keepalived", NS)
    pod = ds.spec.template.spec
    assert pod.host_network is True and pod.node_selector == {"cp": "yes"}
    assert pod.containers[0].image == "osixia/keepalived:2.0.20"
    env = {e["name"]: e.get("value") for e in pod.init_containers[0].model_extra["env"]}  # type: ignore[index]
    assert env["NODE_PORT"] == "31000" and env["VIRTUAL_ROUTER_ID"] == "126" and env["VIRTUAL_IP"] == "10.0.0.100"
    assert "state BACKUP" in cm.data["keepalived.conf.tmpl"]
    assert [r.controller for r in ds.metadata.owner_references] == [True]

    _tcp_becomes_ready(w)  # the TCP watch brings the manager back
    w.run(5)
    dc = w.dc()
    assert dc.spec.kubeconfig == "dc-admin-kubeconfig"
    assert w.conditions() == {
        "Created": ("True", "Created"),
        "KeepalivedReady": ("True", "Deployed"),
        "Ready": ("True", "HealthCheckPassed"),
    }
    assert dc.status.phase == DPUClusterPhase.READY


def test_kamaji_without_keepalived_has_no_keepalived_objects() -> None:
    w = World()
    w.store.create(cluster("kamaji"))
    w.run()
    _allocate_node_port(w)
    w.run(60)
    tcp = w.store.get(TenantControlPlane, "dc", NS)
    assert tcp.spec.network_profile is None
    assert w.store.list(DaemonSet, NS) == [] and w.store.list(ConfigMap, NS) == []
    _tcp_becomes_ready(w)
    w.run(5)
    assert w.conditions() == {"Created": ("True", "Created"), "Ready": ("True", "HealthCheckPassed")}


def test_kamaji_does_not_overwrite_a_user_kubeconfig() -> None:
    w = World()
    w.kubeconfig_secret("mine")
    w.store.create(cluster("kamaji", kubeconfig="mine"))
    w.run()
    _allocate_node_port(w)
    w.run(60)
    _tcp_becomes_ready(w)
    w.run(5)
    assert w.dc().spec.kubeconfig == "mine" and w.dc().status.phase == DPUClusterPhase.READY


def test_kamaji_cluster_deletion_garbage_collects_the_control_plane() -> None:
    w = World()
    w.store.create(cluster("kamaji", clusterEndpoint=KEEPALIVED))
    w.run()
    _allocate_node_port(w)
    w.run(60)
    w.store.delete(DPUCluster, "dc", NS)
    w.run()
    assert w.store.try_get(DPUCluster, "dc", NS) is None
    assert w.store.try_get(TenantControlPlane, "dc", NS) is None
    assert w.store.try_get(DaemonSet, "dc-keepalived", NS) is None


@pytest.mark.parametrize("broken", ["no-secret", "no-key"])
def test_bad_kubeconfig_secret_fails_the_health_check(broken: str) -> None:
    w = World()
    if broken == "no-key":
        w.store.create(Secret.model_validate({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "k", "namespace": NS}, "data": {"other": "eA=="}}))
    w.store.create(cluster("static", kubeconfig="k"))
    w.run()
    assert w.dc().status.phase == DPUClusterPhase.NOT_READY
    ready = next(c for c in w.dc().status.conditions if c.type == "Ready")
    assert ready.reason == "HealthCheckFailed" and "k" in ready.message
    assert w.store.list(Node) == []  # nothing leaked into the host cluster
