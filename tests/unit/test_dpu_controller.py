"""DPU controller: every phase of DPF's DPU state machine on a MemoryStore, a ManualClock and fake ports.

The test plays kubelet, the maintenance operator and the DPU cluster: it moves pod phases, marks the
NodeMaintenance Ready, registers the DPU's Node, and changes host uptimes when the host "rebooted".
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml
from fakes import FakeBfbStore, FakeDms, FakeHostExec, FakeTasks, OpScript, PatchableStore, fake_ports

from dpf_core.api.external import Node, NodeMaintenance, Pod, Secret
from dpf_core.api.operator import DPFOperatorConfig
from dpf_core.api.provisioning import (
    BFB,
    BFB_VERSION_NODE_LABEL,
    DPU,
    DPU_FINALIZER,
    DPU_OOB_BRIDGE_CONFIGURED_LABEL,
    DPU_PCI_ADDRESS_LABEL,
    HOST_NODE_LABEL,
    HOST_POWER_CYCLE_REQUIRED_ANNOTATION,
    POWERCYCLE_COMMAND_ANNOTATION,
    REBOOT_COMMAND_ANNOTATION,
    BFBPhase,
    DPUCluster,
    DPUClusterPhase,
    DPUFlavor,
    DPUPhase,
)
from dpf_core.controllers import dpu as dpu_controller
from dpf_core.controllers.bfcfg import user_data_of
from dpf_core.controllers.dpu_tasks import (
    INSTALL_STARTED_ANNOTATION,
    RebootType,
    host_reboot_command,
    install_task_key,
    parse_install_started,
    runs_activation,
)
from dpf_core.errors import ServiceUnavailable
from dpf_core.ports import Ports
from dpf_core.ports.ops import (
    GnmiSetMode,
    OpError,
    OsActivate,
    OsInstall,
    OsVerify,
    OsVerifyResult,
    PowerCycle,
    RebootStatusOp,
    RebootStatusResult,
    Sleep,
    WarmReboot,
)
from dpf_core.runtime import Manager, ManualClock, MemoryRecorder, SyncDriver
from dpf_core.store import MemoryStore

NS = "dpf-operator-system"
HOST = "worker1"
DPU_NAME = "worker1-0000-04-00"
BFB_URL = "http://bfb.example/bf-bundle-2.9.1-19_24.11_ubuntu-22.04_prod.bfb"
KUBECONFIG = b"""apiVersion: v1
kind: Config
clusters:
- name: dc1
  cluster:
    server: https://10.0.0.100:6443
users:
- name: admin
  user: {token: x}
contexts:
- name: admin@dc1
  context: {cluster: dc1, user: admin}
current-context: admin@dc1
"""


class World:
    def __init__(self, *, autorun: bool = True, script: OpScript | None = None, max_nodes: int = 1000,
                 cluster_ready: bool = True) -> None:
        self.clock = ManualClock()
        self.host = PatchableStore(self.clock.now, name="host")  # brownout tests replace its reads
        self.dpu_cluster = MemoryStore(self.clock.now, name="dpu-cluster")
        self.script = script or OpScript()
        self.ports: Ports = fake_ports(handler=self.script, autorun=autorun, dpu_cluster=self.dpu_cluster,
                                       now=self.clock.now)
        self.recorder = MemoryRecorder(self.clock)
        self.manager = self._manager()
        self.driver = SyncDriver(self.manager)
        self._seed(max_nodes, cluster_ready)

    def _manager(self) -> Manager:
        m = Manager(self.host, self.clock, recorder_factory=lambda _: self.recorder, ports=self.ports)
        m.add(dpu_controller.controller())
        return m

    def restart_controller(self) -> None:
        """A new reconciler (fresh allocator, no memory) on the same store and the same world (ports)."""
        self.manager.stop()
        self.manager = self._manager()
        self.driver = SyncDriver(self.manager)

    # -- ports, typed ----------------------------------------------------------------------------------
    @property
    def tasks(self) -> FakeTasks:
        assert isinstance(self.ports.tasks, FakeTasks)
        return self.ports.tasks

    @property
    def files(self) -> FakeBfbStore:
        assert isinstance(self.ports.bfb_store, FakeBfbStore)
        return self.ports.bfb_store

    @property
    def hosts(self) -> FakeHostExec:
        assert isinstance(self.ports.host_exec, FakeHostExec)
        return self.ports.host_exec

    @property
    def dms(self) -> FakeDms:
        assert isinstance(self.ports.dms, FakeDms)
        return self.ports.dms

    # -- seed ------------------------------------------------------------------------------------------
    def _seed(self, max_nodes: int, cluster_ready: bool) -> None:
        node = self.host.create(
            Node.model_validate(
                {"apiVersion": "v1", "kind": "Node", "metadata": {"name": HOST, "labels": {DPU_OOB_BRIDGE_CONFIGURED_LABEL: ""}}}
            )
        ).deepcopy()
        node.status = type(node.status).model_validate({"addresses": [{"type": "InternalIP", "address": "10.0.0.11"}]})
        self.host.update_status(node)
        bfb = self.host.create(BFB.new("bf-bundle", NS, spec={"url": BFB_URL})).deepcopy()
        bfb.status.phase = BFBPhase.READY
        self.host.update_status(bfb)
        self.host.create(
            Secret.new("dc1-admin-kubeconfig", NS, data={"admin.conf": base64.b64encode(KUBECONFIG).decode()})
        )
        self.add_cluster("dc1", max_nodes=max_nodes, ready=cluster_ready)

    def add_cluster(self, name: str, *, max_nodes: int = 1000, ready: bool = True) -> None:
        dc = self.host.create(
            DPUCluster.new(name, NS, spec={"type": "static", "version": "v1.30.2", "maxNodes": max_nodes,
                                           "kubeconfig": "dc1-admin-kubeconfig"})
        )
        assert dc.status.phase == DPUClusterPhase.PENDING
        if ready:
            self.set_cluster_phase(name, DPUClusterPhase.READY)

    def set_cluster_phase(self, name: str, phase: DPUClusterPhase) -> None:
        dc = self.host.get(DPUCluster, name, NS).deepcopy()
        dc.status.phase = phase
        self.host.update_status(dc)

    def add_dpu(self, name: str = DPU_NAME, node: str = HOST, *, annotations: dict[str, str] | None = None,
                **spec: Any) -> None:
        body = {"nodeName": node, "bfb": "bf-bundle", **spec}
        dpu = DPU.new(name, NS, spec=body)
        dpu.metadata.labels[DPU_PCI_ADDRESS_LABEL] = "0000-04-00"
        dpu.metadata.annotations.update(annotations or {})
        self.host.create(dpu)

    def add_flavor(self, name: str, **spec: Any) -> None:
        self.host.create(DPUFlavor.new(name, NS, spec=spec))

    def annotate_host(self, **annotations: str) -> None:
        node = self.host.get(Node, HOST).deepcopy()
        node.metadata.annotations.update(annotations)
        self.host.update(node)

    # -- playing the rest of the world ---------------------------------------------------------------
    def run(self, seconds: float = 1.0) -> None:
        self.driver.run_for(seconds)

    def dpu(self, name: str = DPU_NAME) -> DPU:
        return self.host.get(DPU, name, NS)

    def cond(self, type: str, name: str = DPU_NAME) -> tuple[str, str, str]:
        for c in self.dpu(name).status.conditions:
            if c.type == type:
                return c.status, c.reason, c.message
        raise AssertionError(f"no {type} condition on {name}: {self.dpu(name).status.conditions}")

    def pod(self, name: str) -> Pod | None:
        return self.host.try_get(Pod, name, NS)

    def set_pod(self, name: str, phase: str, *, ip: str | None = None, ready: bool | None = None,
                **status: Any) -> None:
        pod = self.host.get(Pod, name, NS).deepcopy()
        wire: dict[str, Any] = {"phase": phase, **status}
        if ip:
            wire["podIP"] = ip
        if ready is not None:
            wire["containerStatuses"] = [{"name": pod.spec.containers[0].name, "ready": ready}]
        pod.status = type(pod.status).model_validate(wire)
        self.host.update_status(pod)

    def nm_ready(self, name: str = HOST) -> None:
        nm = self.host.get(NodeMaintenance, name, NS).deepcopy()
        nm.status = type(nm.status).model_validate(
            {"conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
                             "lastTransitionTime": "2025-01-01T00:00:00Z"}]}
        )
        self.host.update_status(nm)

    def dpu_node(self, name: str = DPU_NAME, *, ready: bool = True) -> None:
        status = {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
        node = self.dpu_cluster.try_get(Node, name)
        if node is None:
            # Status is a subresource: the kubelet registers the Node, then reports its conditions.
            node = self.dpu_cluster.create(Node.new(name))
        edited = node.deepcopy()
        edited.status = type(edited.status).model_validate(status)
        self.dpu_cluster.update_status(edited)
        self.run(6)  # the DPU cluster is not watched: the 5 s poll notices

    def reboot_host(self, uptime: float = 1.0) -> None:
        """The host came back `uptime` seconds ago (after DMS started)."""
        self.clock.advance(30)
        self.hosts.uptimes[HOST] = uptime
        self.run(6)

    # -- the road, step by step ------------------------------------------------------------------------
    def to_dms_deployment(self) -> None:
        self.run()
        if self.dpu().spec.node_effect.drain is not None:
            assert self.dpu().status.phase == DPUPhase.NODE_EFFECT
            self.nm_ready()
            self.run()
        assert self.dpu().status.phase == DPUPhase.DMS_DEPLOYMENT

    def to_os_installing(self) -> None:
        self.to_dms_deployment()
        self.set_pod(f"{DPU_NAME}-dms", "Running", ip="10.0.0.11")
        self.run()

    def to_rebooting(self) -> None:
        self.to_os_installing()
        self.run()
        assert self.dpu().status.phase == DPUPhase.REBOOTING, self.dpu().status

    def to_ready(self) -> None:
        self.to_rebooting()
        self.reboot_host()
        assert self.dpu().status.phase == DPUPhase.HOST_NETWORK_CONFIGURATION
        self.set_pod(f"{DPU_NAME}-hostnetwork", "Running", ready=True)
        self.run()
        assert self.dpu().status.phase == DPUPhase.DPU_CLUSTER_CONFIG
        self.dpu_node()
        assert self.dpu().status.phase == DPUPhase.READY


@pytest.fixture
def world() -> World:
    return World()


# --- the healthy road ----------------------------------------------------------------------------------


def test_healthy_path_from_initializing_to_ready_with_every_condition(world: World) -> None:
    world.add_flavor("flavor", nvconfig=[{"parameters": ["NUM_OF_VFS=46", "PF_TOTAL_SF=20"]}])
    world.add_dpu(dpuFlavor="flavor")
    world.run()
    dpu = world.dpu()
    assert DPU_FINALIZER in dpu.metadata.finalizers
    assert (dpu.spec.cluster.name, dpu.spec.cluster.namespace) == ("dc1", NS)
    assert dpu.status.phase == DPUPhase.NODE_EFFECT
    assert world.cond("Initialized") == ("True", "Initialized", "")

    # Default node effect: drain through a NodeMaintenance owned by the DPU.
    nm = world.host.get(NodeMaintenance, HOST, NS)
    assert nm.spec.requestor_id == "dpu.nvidia.com"
    assert nm.spec.additional_requestors == ["provisioning.dpu.nvidia.com"]
    assert nm.spec.drain_spec is not None and nm.spec.drain_spec.force and nm.spec.drain_spec.delete_empty_dir
    assert nm.metadata.owner_references[0].name == DPU_NAME and nm.metadata.owner_references[0].controller
    world.run(20)
    assert world.dpu().status.phase == DPUPhase.NODE_EFFECT
    world.nm_ready()
    world.run()
    assert world.cond("NodeEffectReady") == ("True", "NodeEffectReady", "")
    assert world.cond("BFBReady") == ("True", "BFBReady", "")
    assert world.dpu().status.phase == DPUPhase.DMS_DEPLOYMENT

    # DMS pod + its server secret.
    pod = world.pod(f"{DPU_NAME}-dms")
    assert pod is not None
    assert pod.spec.host_network is True
    assert pod.metadata.owner_references[0].controller and pod.metadata.owner_references[0].kind == "DPU"
    args = " ".join(pod.spec.containers[0].model_extra["args"])  # type: ignore[index]
    assert "-target_pci 04:00" in args and "-exec_timeout 900" in args and "-bind_address 0.0.0.0:9339" in args
    assert [c.name for c in pod.spec.init_containers] == ["rshim-preflight", "devlink-grace-period"]
    terms = pod.spec.affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]  # type: ignore[index]
    assert terms["nodeSelectorTerms"][0]["matchFields"][0]["values"] == [HOST]
    assert {(t.key, t.effect) for t in pod.spec.tolerations} >= {
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    }
    assert world.host.try_get(Secret, f"{DPU_NAME}-server-secret", NS) is not None

    world.set_pod(f"{DPU_NAME}-dms", "Running", ip="10.0.0.11")
    world.run()
    assert world.dms.dialed[-1] == "10.0.0.11:9339"
    assert world.cond("DMSRunning") == ("True", "DMSRunning", "")
    world.run()
    dpu = world.dpu()
    assert dpu.status.phase == DPUPhase.REBOOTING
    assert world.cond("OSInstalled") == ("True", "OSInstalled", "DPU is rebooting")
    assert dpu.spec.cluster.node_labels == {
        BFB_VERSION_NODE_LABEL: "bf-bundle-2.9.1-19_24.11_ubuntu-22.04_prod",
        HOST_NODE_LABEL: HOST,
    }
    started = parse_install_started(dpu.metadata.annotations[INSTALL_STARTED_ANNOTATION])
    assert started is not None and started["bfb"] == f"{NS}-bf-bundle.bfb" and started["attempt"] == 1

    # The install ran DPF's steps in DPF's order.
    kinds = [type(op) for op in world.script.seen if not isinstance(op, WarmReboot)]
    assert kinds == [GnmiSetMode, OsInstall, OsInstall, OsActivate, Sleep, RebootStatusOp, Sleep]
    installs = world.script.of_type(OsInstall)
    assert installs[0].version == f"{NS}-bf-bundle.bfb"
    assert installs[1].version == f"{DPU_NAME}.cfg" and installs[1].content == world.files.files[f"{DPU_NAME}.cfg"]
    assert world.script.of_type(OsActivate)[0].version == f"{NS}-bf-bundle.bfb;{DPU_NAME}.cfg"
    assert [s.seconds for s in world.script.of_type(Sleep)] == [3.0, 90.0]
    assert "kubeadm join 10.0.0.100:6443 --token" in user_data_of(world.files.files[f"{DPU_NAME}.cfg"])
    assert world.dpu_cluster.list(Secret, "kube-system")[0].type == "bootstrap.kubernetes.io/token"

    # Warm reboot (drain with automaticNodeReboot, no annotations): bf-slr with "reset".
    reboots = world.script.of_type(WarmReboot)
    assert reboots == [WarmReboot(node=HOST, pci_address="04:00", command="reset")]
    world.run(20)
    assert world.cond("Rebooted")[0] == "True"
    assert world.dpu().status.phase == DPUPhase.REBOOTING  # until the host's uptime shows the reboot
    assert len(world.script.of_type(WarmReboot)) == 1

    world.reboot_host()
    assert world.dpu().status.phase == DPUPhase.HOST_NETWORK_CONFIGURATION
    hn = world.pod(f"{DPU_NAME}-hostnetwork")
    assert hn is not None
    env = {e["name"]: e["value"] for e in hn.spec.containers[0].model_extra["env"]}  # type: ignore[index]
    assert env == {"device_pci_address": "0000:04:00", "num_of_vfs": "46", "vf_mtu": "1500"}

    world.set_pod(f"{DPU_NAME}-hostnetwork", "Running", ready=True)
    world.run()
    assert world.cond("HostNetworkReady") == ("True", "HostNetworkReady", "waiting for dpu joining cluster")
    assert world.dpu().status.phase == DPUPhase.DPU_CLUSTER_CONFIG

    world.dpu_node(ready=False)
    assert world.dpu().status.phase == DPUPhase.DPU_CLUSTER_CONFIG
    world.dpu_node(ready=True)
    node = world.dpu_cluster.get(Node, DPU_NAME)
    assert node.metadata.labels[HOST_NODE_LABEL] == HOST
    assert world.dpu().status.phase == DPUPhase.READY
    world.run(6)
    assert world.cond("Ready") == ("True", "DPUNodeReady", "")
    # Ready lifts the drain.
    assert world.host.try_get(NodeMaintenance, HOST, NS) is None
    assert world.dpu().status.phase == DPUPhase.READY


def test_default_flavorless_dpu_and_operator_config_mtu(world: World) -> None:
    world.host.create(
        DPFOperatorConfig.new(
            "dpfoperatorconfig", NS,
            spec={"provisioningController": {"bfbPVCName": "bfb-pvc"}, "networking": {"highSpeedMTU": 9000}},
        )
    )
    world.add_dpu(nodeEffect={"noEffect": True})
    world.to_rebooting()
    world.reboot_host()
    hn = world.pod(f"{DPU_NAME}-hostnetwork")
    assert hn is not None
    env = {e["name"]: e["value"] for e in hn.spec.containers[0].model_extra["env"]}  # type: ignore[index]
    assert env["num_of_vfs"] == "16" and env["vf_mtu"] == "9000"


# --- node effects --------------------------------------------------------------------------------------


def test_taint_is_added_while_provisioning_and_removed_when_ready(world: World) -> None:
    world.add_dpu(nodeEffect={"taint": {"key": "dpu", "value": "provisioning", "effect": "NoSchedule"}})
    world.run()
    assert [t.key for t in world.host.get(Node, HOST).spec.taints] == ["dpu"]
    assert world.dpu().status.phase == DPUPhase.DMS_DEPLOYMENT
    pod = world.pod(f"{DPU_NAME}-dms")
    assert pod is not None
    assert any(t.key == "dpu" and t.operator == "Equal" and t.value == "provisioning" for t in pod.spec.tolerations)
    world.to_ready()
    world.run(6)
    assert world.host.get(Node, HOST).spec.taints == []


def test_custom_label_is_added_and_stays_after_ready(world: World) -> None:
    world.add_dpu(nodeEffect={"customLabel": {"dpu.example/provisioning": "true"}})
    world.run()
    assert world.host.get(Node, HOST).metadata.labels["dpu.example/provisioning"] == "true"
    world.to_ready()
    world.run(6)
    assert world.host.get(Node, HOST).metadata.labels["dpu.example/provisioning"] == "true"


def test_custom_label_is_removed_in_error(world: World) -> None:
    world.add_dpu(nodeEffect={"customLabel": {"dpu.example/provisioning": "true"}})
    world.to_dms_deployment()
    world.set_pod(f"{DPU_NAME}-dms", "Failed")
    world.run()
    assert world.dpu().status.phase == DPUPhase.ERROR
    assert "dpu.example/provisioning" not in world.host.get(Node, HOST).metadata.labels


def test_no_effect_touches_nothing(world: World) -> None:
    world.add_dpu(nodeEffect={"noEffect": True})
    world.run()
    node = world.host.get(Node, HOST)
    assert node.spec.taints == [] and set(node.metadata.labels) == {DPU_OOB_BRIDGE_CONFIGURED_LABEL}
    assert world.host.list(NodeMaintenance) == []
    assert world.cond("NodeEffectReady")[0] == "True"


def test_drain_adopts_an_existing_node_maintenance_and_adds_the_requestor(world: World) -> None:
    world.host.create(
        NodeMaintenance.model_validate(
            {"apiVersion": "maintenance.nvidia.com/v1alpha1", "kind": "NodeMaintenance",
             "metadata": {"name": HOST, "namespace": NS},
             "spec": {"nodeName": HOST, "requestorID": "someone.else"}}
        )
    )
    world.add_dpu()
    world.run()
    nm = world.host.get(NodeMaintenance, HOST, NS)
    assert nm.spec.requestor_id == "someone.else"
    assert nm.spec.additional_requestors == ["provisioning.dpu.nvidia.com"]


# --- Initializing, Pending, DMS --------------------------------------------------------------------------


def test_initializing_waits_for_the_oob_bridge_label_and_a_ready_cluster() -> None:
    world = World(cluster_ready=False)
    node = world.host.get(Node, HOST).deepcopy()
    node.metadata.labels.clear()
    world.host.update(node)
    world.add_dpu()
    world.run()
    assert world.cond("Initialized") == ("False", "DPUOOBBridgeNotConfigured", "DPU OOB bridge is not configured")

    node = world.host.get(Node, HOST).deepcopy()
    node.metadata.labels[DPU_OOB_BRIDGE_CONFIGURED_LABEL] = ""
    world.host.update(node)
    world.run(6)
    status, reason, message = world.cond("Initialized")
    assert (status, reason) == ("False", "DPUClusterNotReady") and "not ready" in message
    assert world.dpu().spec.cluster.name is None

    world.set_cluster_phase("dc1", DPUClusterPhase.READY)
    world.run()  # the Ready DPUCluster's event wakes the unassigned DPU at once
    assert world.dpu().spec.cluster.name == "dc1"
    assert world.dpu().status.phase != DPUPhase.INITIALIZING


def test_allocator_fills_clusters_in_name_order_and_respects_max_nodes() -> None:
    world = World(max_nodes=1)
    world.add_cluster("dc0", ready=True, max_nodes=1)
    for n in ("dpu-a", "dpu-b", "dpu-c"):
        world.add_dpu(n, nodeEffect={"noEffect": True})
    world.run()
    assigned = sorted((world.dpu(n).spec.cluster.name or "-") for n in ("dpu-a", "dpu-b", "dpu-c"))
    # dc0 sorts first and is full after one DPU; DPF would stop there, we go on to dc1 (docs/differences.md).
    assert assigned == ["-", "dc0", "dc1"]
    waiting = next(n for n in ("dpu-a", "dpu-b", "dpu-c") if world.dpu(n).spec.cluster.name is None)
    assert world.cond("Initialized", waiting)[1] == "DPUClusterNotReady"
    assert "dc0 is full" in world.cond("Initialized", waiting)[2]  # the first cluster's reason, as DPF says

    # A restarted controller counts both clusters' members from the store.
    world.restart_controller()
    world.run(6)
    assert world.dpu(waiting).spec.cluster.name is None


def test_allocator_skips_a_cluster_that_is_not_ready() -> None:
    world = World()
    world.add_cluster("dc0", ready=False)
    world.add_dpu(nodeEffect={"noEffect": True})
    world.run()
    assert world.dpu().spec.cluster.name == "dc1"


def test_pending_reports_a_missing_bfb() -> None:
    world = World()
    world.add_dpu(nodeEffect={"noEffect": True}, bfb="nope")
    world.run()
    status, reason, message = world.cond("BFBReady")
    assert (status, reason) == ("False", "GetBFBFailed") and "nope" in message
    assert world.dpu().status.phase == DPUPhase.PENDING


def test_dms_pod_failure_is_terminal(world: World) -> None:
    world.add_dpu(nodeEffect={"noEffect": True})
    world.to_dms_deployment()
    world.set_pod(f"{DPU_NAME}-dms", "Failed")
    world.run(30)
    assert world.dpu().status.phase == DPUPhase.ERROR
    assert world.cond("DMSRunning") == ("False", "DMSPodFailed", "DMS Pod Failed")


def test_dms_pod_that_never_runs_times_out(world: World) -> None:
    world.add_dpu(nodeEffect={"noEffect": True})
    world.to_dms_deployment()
    world.set_pod(f"{DPU_NAME}-dms", "Unknown")
    world.run(200)
    assert world.dpu().status.phase == DPUPhase.DMS_DEPLOYMENT
    world.run(120)
    assert world.dpu().status.phase == DPUPhase.ERROR
    assert world.cond("DMSRunning")[1] == "DMSPodTimedout"


def test_dms_running_but_unreachable_waits(world: World) -> None:
    world.add_dpu(nodeEffect={"noEffect": True})
    world.to_dms_deployment()
    world.dms.unreachable.add("10.0.0.11:9339")
    world.set_pod(f"{DPU_NAME}-dms", "Running", ip="10.0.0.11")
    world.run(20)
    assert world.dpu().status.phase == DPUPhase.DMS_DEPLOYMENT
    world.dms.unreachable.clear()
    world.run(6)
    assert world.dpu().status.phase in (DPUPhase.OS_INSTALLING, DPUPhase.REBOOTING)


def test_host_rshim_is_reported_from_the_init_container(world: World) -> None:
    world.add_dpu(nodeEffect={"noEffect": True})
    world.to_dms_deployment()
    message = "rshim is installed on host which is not supported. Please remove the rshim package from the host"
    world.set_pod(
        f"{DPU_NAME}-dms",
        "Pending",
        containerStatuses=[{"name": "dms", "state": {"waiting": {"reason": "PodInitializing"}}}],
        initContainerStatuses=[{"name": "rshim-preflight", "restartCount": 1,
                                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                                "lastState": {"terminated": {"exitCode": 1, "message": message}}}],
    )
    world.run()
    status, reason, text = world.cond("DMSRunning")
    assert (status, reason) == ("False", "ExistingRshimInstallDetected")
    assert message in text
    assert world.dpu().status.phase == DPUPhase.DMS_DEPLOYMENT


# --- OS install ------------------------------------------------------------------------------------------


def test_bfcfg_over_128k_fails_the_install(world: World) -> None:
    world.add_flavor("huge", configFiles=[{"path": "/etc/big", "operation": "override", "raw": "x" * 140_000,
                                           "permissions": "0644"}])
    world.add_dpu(nodeEffect={"noEffect": True}, dpuFlavor="huge")
    world.to_os_installing()
    world.run(6)
    assert world.dpu().status.phase == DPUPhase.ERROR
    status, reason, message = world.cond("OSInstalled")
    assert (status, reason) == ("False", "InstallationFailed")
    assert "exceeds the maximum limit (131072)" in message
    assert world.script.of_type(OsActivate) == []
    assert world.tasks.keys() == []  # forgotten once reported


def test_activate_is_retried_then_succeeds() -> None:
    script = OpScript().on(OsActivate, OpError("busy"), OpError("busy again"), None)
    world = World(script=script)
    world.add_dpu(nodeEffect={"noEffect": True})
    world.to_rebooting()
    assert len(script.of_type(OsActivate)) == 3


def test_activate_gives_up_after_ten_attempts() -> None:
    script = OpScript().on(OsActivate, OpError("nope"))
    world = World(script=script)
    world.add_dpu(nodeEffect={"noEffect": True})
    world.to_os_installing()
    world.run(6)
    assert len(script.of_type(OsActivate)) == 10
    assert world.dpu().status.phase == DPUPhase.ERROR
    assert "after 10 attempts" in world.cond("OSInstalled")[2]


def test_reboot_status_is_polled_until_done_and_a_failure_fails_the_install() -> None:
    script = OpScript().on(
        RebootStatusOp,
        RebootStatusResult(active=True, status="STATUS_UNKNOWN"),
        RebootStatusResult(active=True, status="STATUS_UNKNOWN"),
        RebootStatusResult(active=False, status="STATUS_FAILURE", message="boot loop"),
    )
    world = World(script=script)
    world.add_dpu(nodeEffect={"noEffect": True})
    world.to_os_installing()
    world.run(6)
    assert len(script.of_type(RebootStatusOp)) == 3
    assert world.cond("OSInstalled") == ("False", "InstallationFailed", "reboot failure: boot loop")


def test_missing_flavor_fails_the_install_after_the_bfb_went_over(world: World) -> None:
    world.add_dpu(nodeEffect={"noEffect": True}, dpuFlavor="ghost")
    world.to_os_installing()
    world.run(6)
    assert world.dpu().status.phase == DPUPhase.ERROR
    assert '"ghost" not found' in world.cond("OSInstalled")[2]
    assert [type(op) for op in world.script.seen] == [GnmiSetMode, OsInstall]


def test_restarted_controller_mid_install_does_not_start_a_second_install() -> None:
    world = World(autorun=False)
    world.add_dpu(nodeEffect={"noEffect": True})
    world.to_os_installing()
    world.run(20)
    key = install_task_key(NS, DPU_NAME)
    assert world.tasks.started == [key] and world.tasks.running() == [key]

    world.restart_controller()
    world.run(20)
    assert world.tasks.started == [key]
    assert world.dpu().status.phase == DPUPhase.OS_INSTALLING

    world.tasks.run(key)
    world.run(6)  # a finished task is noticed by the 5 s poll
    assert world.dpu().status.phase == DPUPhase.REBOOTING
    assert world.tasks.started.count(key) == 1


def test_install_lost_with_the_controller_is_started_again_and_recorded() -> None:
    world = World(autorun=False)
    world.add_dpu(nodeEffect={"noEffect": True})
    world.to_os_installing()
    key = install_task_key(NS, DPU_NAME)
    assert world.tasks.running() == [key]

    # A production restart: the process (and its task threads) are gone, only the store remains.
    world.ports.tasks = FakeTasks(world.script, autorun=False)
    world.restart_controller()
    world.run()
    assert world.tasks.started == [key]
    started = parse_install_started(world.dpu().metadata.annotations[INSTALL_STARTED_ANNOTATION])
    assert started is not None and started["attempt"] == 2
    assert "InstallRestarted" in world.recorder.reasons()
    world.tasks.run(key)
    world.run(6)
    assert world.dpu().status.phase == DPUPhase.REBOOTING


BFB_FILE = f"{NS}-bf-bundle.bfb"
CFG = f"{DPU_NAME}.cfg"
ACTIVATED = f"{BFB_FILE};{CFG}"


def _killed_after_activate(script: OpScript, *, cfg_written: bool = True) -> World:
    """An install whose task died with the process after it activated: bf.cfg is on the PVC (the task writes
    it right before OS.Activate), then a new process starts the controller on the same store and world."""
    world = World(autorun=False, script=script)
    world.add_dpu(nodeEffect={"noEffect": True})
    world.to_os_installing()
    assert world.tasks.running() == [install_task_key(NS, DPU_NAME)]
    if cfg_written:
        world.files.write(CFG, b"#bf.cfg of the first attempt\n")
    world.ports.tasks = FakeTasks(script, autorun=False)
    world.restart_controller()
    world.run()
    return world


def _resume(world: World) -> list[type]:
    key = install_task_key(NS, DPU_NAME)
    assert world.tasks.started == [key]
    world.tasks.run(key)
    world.run(6)
    return [type(op) for op in world.script.seen]


def test_resume_after_the_reboot_finished_adopts_the_install_os_verify_reports() -> None:
    script = OpScript().on(OsVerify, OsVerifyResult(version=ACTIVATED))
    world = _killed_after_activate(script)
    assert _resume(world) == [RebootStatusOp, OsVerify, Sleep]
    assert [s.seconds for s in script.of_type(Sleep)] == [90.0]  # DPF's cloud-init wait, as after RebootStatus
    assert world.dpu().status.phase == DPUPhase.REBOOTING
    assert world.cond("OSInstalled") == ("True", "OSInstalled", "DPU is rebooting")
    started = parse_install_started(world.dpu().metadata.annotations[INSTALL_STARTED_ANNOTATION])
    assert started is not None and started["attempt"] == 2


def test_resume_while_the_reboot_runs_waits_for_it_without_os_verify() -> None:
    active = RebootStatusResult(active=True, status="STATUS_UNKNOWN")
    script = OpScript().on(RebootStatusOp, active, active, RebootStatusResult(active=False, status="STATUS_SUCCESS"))
    world = _killed_after_activate(script)
    assert _resume(world) == [RebootStatusOp, Sleep, RebootStatusOp, Sleep, RebootStatusOp, Sleep]
    assert world.dpu().status.phase == DPUPhase.REBOOTING


@pytest.mark.parametrize(
    "verify",
    [
        OsVerifyResult(version="bf-bundle-2.7.0.bfb;worker1-0000-04-00.cfg"),  # another BFB runs
        OsVerifyResult(version=ACTIVATED, activation_fail_message="failed to boot, fell back"),
        OpError("OS.Verify: UNIMPLEMENTED", "Unimplemented"),  # a DMS without Verify
        OpError("OS.Verify: DMS unavailable", "Unavailable"),
    ],
    ids=["other-version", "activation-failed", "unimplemented", "unavailable"],
)
def test_resume_installs_again_unless_os_verify_reports_this_install(verify: Any) -> None:
    script = OpScript().on(OsVerify, verify)
    world = _killed_after_activate(script)
    assert _resume(world) == [RebootStatusOp, OsVerify, GnmiSetMode, OsInstall, OsInstall, OsActivate, Sleep,
                              RebootStatusOp, Sleep]
    assert script.of_type(OsActivate)[0].version == ACTIVATED
    assert world.dpu().status.phase == DPUPhase.REBOOTING


def test_resume_without_the_first_attempts_bfcfg_installs_again_without_asking() -> None:
    # No bf.cfg: the dead task never got to OS.Activate, so whatever the DPU runs is not this install (a DPU
    # re-created with the same BFB would otherwise adopt its predecessor's OS and stale join data).
    script = OpScript().on(OsVerify, OsVerifyResult(version=ACTIVATED))
    world = _killed_after_activate(script, cfg_written=False)
    assert _resume(world)[:3] == [RebootStatusOp, GnmiSetMode, OsInstall]
    assert script.of_type(OsVerify) == [] and len(script.of_type(OsActivate)) == 1


def test_resume_after_a_failed_reboot_installs_again_without_asking() -> None:
    script = OpScript().on(RebootStatusOp, RebootStatusResult(active=False, status="STATUS_FAILURE", message="x"),
                           RebootStatusResult(active=False, status="STATUS_SUCCESS"))
    script.on(OsVerify, OsVerifyResult(version=ACTIVATED))
    world = _killed_after_activate(script)
    assert _resume(world)[:2] == [RebootStatusOp, GnmiSetMode]
    assert script.of_type(OsVerify) == [] and len(script.of_type(OsActivate)) == 1


@pytest.mark.parametrize(
    ("version", "fail", "expected"),
    [(ACTIVATED, "", True), (BFB_FILE, "", True), (ACTIVATED, "boot failed", False), ("", "", False),
     (f"{BFB_FILE};other.cfg", "", False), (f"{CFG};{BFB_FILE}", "", False)],
)
def test_runs_activation_matches_the_activate_version_or_the_bare_bfb(version: str, fail: str, expected: bool) -> None:
    assert runs_activation(OsVerifyResult(version, fail), BFB_FILE, CFG) is expected


def test_deletion_waits_for_a_running_install() -> None:
    world = World(autorun=False)
    world.add_dpu(nodeEffect={"noEffect": True})
    world.to_os_installing()
    world.host.delete(DPU, DPU_NAME, NS)
    world.run(20)
    assert world.dpu().status.phase == DPUPhase.OS_INSTALLING
    world.tasks.run()
    world.run(20)
    assert world.host.try_get(DPU, DPU_NAME, NS) is None


# --- reboots ---------------------------------------------------------------------------------------------


def test_manual_reboot_is_awaited_without_automatic_reboot(world: World) -> None:
    world.add_dpu(nodeEffect={"noEffect": True}, automaticNodeReboot=False)
    world.to_rebooting()
    world.run(20)
    assert world.cond("Rebooted") == ("False", "WaitingForManualPowerCycleOrReboot", "")
    assert world.script.of_type(WarmReboot) == [] and world.script.of_type(PowerCycle) == []
    world.reboot_host()
    assert world.dpu().status.phase == DPUPhase.HOST_NETWORK_CONFIGURATION
    assert world.cond("Rebooted")[0] == "True"


def test_skip_reboot_advances_at_once_and_bfcfg_reboots_the_dpu(world: World) -> None:
    world.annotate_host(**{REBOOT_COMMAND_ANNOTATION: "skip"})
    world.add_flavor("grub", grub={"kernelParameters": ["hugepages=3072"]})
    world.add_dpu(nodeEffect={"noEffect": True}, dpuFlavor="grub")
    world.to_os_installing()
    world.run(2)
    assert world.cond("OSInstalled")[0] == "True" and world.cond("Rebooted")[0] == "True"
    assert world.dpu().status.phase == DPUPhase.HOST_NETWORK_CONFIGURATION
    assert world.script.of_type(WarmReboot) == []
    user_data = yaml.safe_load(user_data_of(world.files.files[f"{DPU_NAME}.cfg"]))
    restart = next(f for f in user_data["write_files"] if f["path"] == "/opt/dpf/restart.sh")
    assert restart["content"].splitlines()[-2:] == ["update-grub", "reboot"]


def test_warm_reboot_uses_the_node_reboot_command(world: World) -> None:
    world.annotate_host(**{REBOOT_COMMAND_ANNOTATION: "cycle"})
    world.add_dpu(nodeEffect={"noEffect": True})
    world.to_rebooting()
    world.run(20)
    assert world.script.of_type(WarmReboot) == [WarmReboot(node=HOST, pci_address="04:00", command="cycle")]


def test_power_cycle_runs_once_while_waiting_and_again_only_after_a_failure() -> None:
    script = OpScript().on(PowerCycle, OpError("ipmi timeout"), None)
    world = World(script=script)
    world.annotate_host(**{POWERCYCLE_COMMAND_ANNOTATION: "reset"})
    world.add_dpu(nodeEffect={"noEffect": True}, annotations={HOST_POWER_CYCLE_REQUIRED_ANNOTATION: "true"})
    world.to_rebooting()
    world.run(60)
    cycles = script.of_type(PowerCycle)
    assert cycles == [PowerCycle(node=HOST, command="reset")] * 2  # failed once, re-issued once, then waited
    assert world.dpu().status.phase == DPUPhase.REBOOTING
    world.reboot_host()
    assert world.dpu().status.phase == DPUPhase.HOST_NETWORK_CONFIGURATION
    assert world.tasks.keys() == []


def test_failed_warm_reboot_is_an_error() -> None:
    script = OpScript().on(WarmReboot, OpError("System Off never seen"))
    world = World(script=script)
    world.add_dpu(nodeEffect={"noEffect": True})
    world.to_rebooting()
    world.run(6)
    assert world.dpu().status.phase == DPUPhase.ERROR
    assert world.cond("OSInstalled") == ("False", "InstallationFailed", "System Off never seen")


def test_invalid_reboot_annotation_is_rejected() -> None:
    with pytest.raises(ValueError, match="supported values"):
        host_reboot_command({REBOOT_COMMAND_ANNOTATION: "halt"}, {})
    assert host_reboot_command({}, {HOST_POWER_CYCLE_REQUIRED_ANNOTATION: "notabool"}) == ("reset", RebootType.WARM_REBOOT)
    assert host_reboot_command({}, {HOST_POWER_CYCLE_REQUIRED_ANNOTATION: "1"}) == ("cycle", RebootType.POWER_CYCLE)


# --- Ready ------------------------------------------------------------------------------------------------


def test_dpu_node_not_ready_sets_ready_false_but_keeps_the_phase(world: World) -> None:
    world.add_dpu(nodeEffect={"noEffect": True})
    world.to_ready()
    world.dpu_node(ready=False)
    assert world.dpu().status.phase == DPUPhase.READY
    assert world.cond("Ready") == ("False", "DPUNodeNotReady", f"DPU Node {DPU_NAME} is not Ready")
    world.dpu_node(ready=True)
    assert world.cond("Ready") == ("True", "DPUNodeReady", "")


def test_ready_recreates_missing_pods_and_relabels_the_node(world: World) -> None:
    world.add_dpu(nodeEffect={"noEffect": True})
    world.to_ready()
    world.host.delete(Pod, f"{DPU_NAME}-dms", NS)
    node = world.dpu_cluster.get(Node, DPU_NAME).deepcopy()
    node.metadata.labels.pop(HOST_NODE_LABEL)
    world.dpu_cluster.update(node)
    world.run(6)
    assert world.pod(f"{DPU_NAME}-dms") is not None
    world.run(12)
    assert world.dpu_cluster.get(Node, DPU_NAME).metadata.labels[HOST_NODE_LABEL] == HOST
    assert world.dpu().status.phase == DPUPhase.READY


def test_ready_rides_out_an_api_server_brownout_instead_of_erroring(world: World) -> None:
    """DPF's Ready phase turns any error while checking its pods into a terminal Error; a 503 from an
    overloaded API server is retried instead (docs/differences.md)."""
    world.add_dpu(nodeEffect={"noEffect": True})
    world.to_ready()
    real_try_get = world.host.try_get

    def browned_out(cls: Any, name: str, namespace: str | None = None) -> Any:
        if cls is Pod:
            raise ServiceUnavailable("the server is currently unable to handle the request")
        return real_try_get(cls, name, namespace)

    world.host.try_get = browned_out  # type: ignore[method-assign]
    world.run(12)
    assert world.dpu().status.phase == DPUPhase.READY
    assert world.cond("Ready")[:2] == ("False", "DPUNodeNotReady")
    world.host.try_get = real_try_get  # type: ignore[method-assign]
    world.run(400)
    assert world.dpu().status.phase == DPUPhase.READY and world.cond("Ready")[0] == "True"


# --- deletion ----------------------------------------------------------------------------------------------


def test_deletion_cleans_up_everything_then_drops_the_finalizer(world: World) -> None:
    world.add_dpu()
    world.to_ready()
    world.run(6)
    assert world.files.exists(f"{DPU_NAME}.cfg")
    world.host.delete(DPU, DPU_NAME, NS)
    world.run(20)
    assert world.host.try_get(DPU, DPU_NAME, NS) is None
    assert world.pod(f"{DPU_NAME}-dms") is None and world.pod(f"{DPU_NAME}-hostnetwork") is None
    assert world.host.try_get(Secret, f"{DPU_NAME}-server-secret", NS) is None
    assert not world.files.exists(f"{DPU_NAME}.cfg")
    assert world.dpu_cluster.try_get(Node, DPU_NAME) is None
    assert world.host.list(NodeMaintenance) == []
    assert world.tasks.keys() == []


def test_deletion_frees_the_cluster_seat() -> None:
    world = World(max_nodes=1)
    world.add_dpu("dpu-a", nodeEffect={"noEffect": True})
    world.run()
    world.add_dpu("dpu-b", nodeEffect={"noEffect": True})
    world.run(6)
    assert world.dpu("dpu-b").spec.cluster.name is None
    world.host.delete(DPU, "dpu-a", NS)
    world.run(20)
    assert world.host.try_get(DPU, "dpu-a", NS) is None
    assert world.dpu("dpu-b").spec.cluster.name == "dc1"


def test_error_in_ready_when_a_pod_cannot_be_recreated(world: World) -> None:
    world.add_dpu(nodeEffect={"noEffect": True})
    world.to_ready()
    world.host.delete(Pod, f"{DPU_NAME}-dms", NS)
    node = world.host.get(Node, HOST).deepcopy()
    node.status.addresses = []
    world.host.update_status(node)
    world.run(6)
    assert world.dpu().status.phase == DPUPhase.ERROR
    assert world.cond("Ready")[:2] == ("False", "DPUNodeNotReady")


def test_no_task_is_left_behind_after_ready(world: World) -> None:
    world.add_dpu(nodeEffect={"noEffect": True})
    world.to_ready()
    assert world.tasks.keys() == []
    assert world.tasks.forgotten == [install_task_key(NS, DPU_NAME), f"reboot/{NS}/{DPU_NAME}"]
