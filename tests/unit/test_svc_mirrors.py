"""Host -> DPU-cluster mirrors: DPUServiceInterface, DPUServiceChain, DPUServiceIPAM against two DPU clusters."""

from __future__ import annotations

import base64
from typing import Any

from fakes import FakeClusterClients

from dpf_core.api.conditions import get_condition
from dpf_core.api.external import CIDRPool, IPPool, Namespace, Secret
from dpf_core.api.meta import KubeObject
from dpf_core.api.provisioning import DPUCluster
from dpf_core.api.svc import (
    FINALIZER_DPUSERVICE_CHAIN,
    FINALIZER_DPUSERVICE_INTERFACE,
    FINALIZER_DPUSERVICE_IPAM,
    DPUServiceChain,
    DPUServiceInterface,
    DPUServiceIPAM,
    ServiceChainSet,
    ServiceInterfaceSet,
)
from dpf_core.controllers import dpuservicechain, dpuserviceinterface, dpuserviceipam
from dpf_core.controllers.mirror import AWAITING_DELETION_REQUEUE
from dpf_core.ports import Ports
from dpf_core.runtime import Manager, ManualClock, SyncDriver
from dpf_core.store import MemoryStore

NS = "default"
IPAM_NS = "dpf-operator-system"
DC_NS = "dpu-cplane-tenant1"


class World:
    def __init__(self, clusters: tuple[str, ...] = ("dc1", "dc2")) -> None:
        self.clock = ManualClock()
        self.host = MemoryStore(clock=self.clock.now)
        self.clients = FakeClusterClients()
        self.dpu: dict[str, MemoryStore] = {}
        for name in clusters:
            self.add_cluster(name)
        self.mgr = Manager(self.host, self.clock, ports=Ports(clusters=self.clients))
        for module in (dpuserviceinterface, dpuservicechain, dpuserviceipam):
            self.mgr.add(module.controller())
        self.driver = SyncDriver(self.mgr, record=True)

    def add_cluster(self, name: str) -> MemoryStore:
        kubeconfig = f"kubeconfig of {name}".encode()
        store = MemoryStore(clock=self.clock.now, name=name)
        self.dpu[name] = store
        self.clients.add(kubeconfig, store)
        self.host.create(
            Secret.model_validate(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": f"{name}-admin-kubeconfig", "namespace": DC_NS},
                    "data": {"admin.conf": base64.b64encode(kubeconfig).decode()},
                }
            )
        )
        self.host.create(
            DPUCluster.new(
                name, DC_NS, spec={"type": "static", "version": "v1.30.2", "kubeconfig": f"{name}-admin-kubeconfig"}
            )
        )
        return store

    def run(self, seconds: float = 1) -> int:
        return self.driver.run_for(seconds, max_steps=5000).errors

    def conditions(self, obj: KubeObject) -> dict[str, tuple[str, str]]:
        fresh = self.host.get(type(obj), obj.name, obj.namespace)
        return {c.type: (c.status, c.reason) for c in fresh.status.conditions}  # type: ignore[attr-defined]


def dsi(name: str = "p0", **template: Any) -> DPUServiceInterface:
    return DPUServiceInterface.new(
        name,
        NS,
        spec={
            "template": {
                "metadata": {"labels": {"svc.dpu.nvidia.com/interface": "p0"}, "annotations": {"a": "b"}},
                "spec": {
                    "nodeSelector": {"matchLabels": {"role": "dpu"}},
                    "template": {
                        "metadata": {"labels": {"uplink": "p0"}},
                        "spec": {"interfaceType": "physical", "physical": {"interfaceName": "p0"}},
                    },
                    **template,
                },
            }
        },
    )


def set_ready(store: MemoryStore, cls: type[Any], name: str, namespace: str, status: str) -> None:
    wire = store.get(cls, name, namespace).wire()
    wire.setdefault("status", {})["conditions"] = [
        {"type": "Ready", "status": status, "reason": "Success", "lastTransitionTime": "2025-01-01T00:00:00Z"}
    ]
    store.update_status(cls.model_validate(wire))


def test_interface_mirrored_into_every_cluster_with_template_metadata() -> None:
    w = World()
    w.host.create(dsi())
    assert w.run() == 0
    parent = w.host.get(DPUServiceInterface, "p0", NS)
    assert parent.metadata.finalizers == [FINALIZER_DPUSERVICE_INTERFACE]
    for store in w.dpu.values():
        assert store.try_get(Namespace, NS) is not None
        child = store.get(ServiceInterfaceSet, "p0", NS)
        assert child.metadata.labels == {"svc.dpu.nvidia.com/interface": "p0"}
        assert child.metadata.annotations == {"a": "b"}
        assert child.spec.wire() == parent.spec.template.spec.wire()
    conditions = w.conditions(parent)
    assert conditions["ServiceInterfaceSetReconciled"] == ("True", "Success")
    assert conditions["ServiceInterfaceSetReady"] == ("False", "Pending")
    assert conditions["Ready"] == ("False", "Pending")
    assert parent.status.observed_generation == parent.metadata.generation


def test_interface_ready_follows_the_sets_in_all_clusters() -> None:
    w = World()
    w.host.create(dsi())
    w.run()
    set_ready(w.dpu["dc1"], ServiceInterfaceSet, "p0", NS, "True")
    w.run(15)
    ready = get_condition(w.host.get(DPUServiceInterface, "p0", NS).status.conditions, "ServiceInterfaceSetReady")
    assert ready is not None and ready.status == "False"
    assert "{Cluster: dpu-cplane-tenant1/dc2, Object: default/p0}" in ready.message
    assert "dc1" not in ready.message
    set_ready(w.dpu["dc2"], ServiceInterfaceSet, "p0", NS, "True")
    w.run(15)  # the readiness poll picks it up
    assert w.conditions(dsi())["Ready"] == ("True", "Success")
    # Ready: no more polling.
    assert w.driver.next_ready_at() is None


def test_template_change_is_applied_and_foreign_labels_survive() -> None:
    w = World(("dc1",))
    w.host.create(dsi())
    w.run()
    store = w.dpu["dc1"]
    child = store.get(ServiceInterfaceSet, "p0", NS).deepcopy()
    child.metadata.labels["added-by-someone-else"] = "x"
    store.update(child)
    parent = w.host.get(DPUServiceInterface, "p0", NS).deepcopy()
    parent.spec.template.spec.template.spec.physical.interface_name = "p1"  # type: ignore[union-attr]
    w.host.update(parent)
    w.run()
    child = store.get(ServiceInterfaceSet, "p0", NS)
    assert child.spec.template.spec.physical is not None
    assert child.spec.template.spec.physical.interface_name == "p1"
    assert child.metadata.labels["added-by-someone-else"] == "x"


def test_deletion_waits_for_children_everywhere() -> None:
    w = World()
    w.host.create(dsi())
    w.run()
    # A child that cannot go yet (its own finalizer, as the set controller adds).
    held = w.dpu["dc2"].get(ServiceInterfaceSet, "p0", NS).deepcopy()
    held.metadata.finalizers.append("dpu.nvidia.com/serviceinterfaceset")
    w.dpu["dc2"].update(held)
    w.host.delete(DPUServiceInterface, "p0", NS)
    w.run()
    assert w.dpu["dc1"].try_get(ServiceInterfaceSet, "p0", NS) is None
    parent = w.host.get(DPUServiceInterface, "p0", NS)
    reconciled = get_condition(parent.status.conditions, "ServiceInterfaceSetReconciled")
    assert reconciled is not None
    assert (reconciled.status, reconciled.reason) == ("False", "AwaitingDeletion")
    assert reconciled.message == "1 objects still exist across all DPU clusters"
    w.run(AWAITING_DELETION_REQUEUE)
    assert w.host.try_get(DPUServiceInterface, "p0", NS) is not None  # still waiting, still requeued
    released = w.dpu["dc2"].get(ServiceInterfaceSet, "p0", NS).deepcopy()
    released.metadata.finalizers = []
    w.dpu["dc2"].update(released)
    w.run(AWAITING_DELETION_REQUEUE)
    assert w.host.try_get(DPUServiceInterface, "p0", NS) is None


def test_cluster_without_kubeconfig_fails_the_pass() -> None:
    w = World(("dc1",))
    w.host.create(DPUCluster.new("broken", DC_NS, spec={"type": "static", "version": "v1.30.2"}))
    w.host.create(dsi())
    assert w.run() > 0
    conditions = w.conditions(dsi())
    assert conditions["ServiceInterfaceSetReconciled"] == ("False", "Error")
    assert conditions["Ready"] == ("False", "Pending")


def test_chain_mirrored_as_service_chain_set() -> None:
    w = World(("dc1",))
    chain = DPUServiceChain.new(
        "hbn-to-fabric",
        NS,
        spec={
            "template": {
                "spec": {
                    "template": {
                        "spec": {
                            "switches": [
                                {
                                    "ports": [
                                        {"serviceInterface": {"matchLabels": {"uplink": "p0"}}},
                                        {"serviceInterface": {"matchLabels": {"port": "p0_if"}}},
                                    ]
                                }
                            ]
                        }
                    }
                }
            }
        },
    )
    w.host.create(chain)
    w.run()
    child = w.dpu["dc1"].get(ServiceChainSet, "hbn-to-fabric", NS)
    assert child.spec.wire() == chain.spec.template.spec.wire()
    assert w.host.get(DPUServiceChain, "hbn-to-fabric", NS).metadata.finalizers == [FINALIZER_DPUSERVICE_CHAIN]
    assert w.conditions(chain)["ServiceChainSetReconciled"] == ("True", "Success")
    w.host.delete(DPUServiceChain, "hbn-to-fabric", NS)
    w.run()
    assert w.dpu["dc1"].try_get(ServiceChainSet, "hbn-to-fabric", NS) is None
    assert w.host.try_get(DPUServiceChain, "hbn-to-fabric", NS) is None


def ipam_subnet() -> DPUServiceIPAM:
    return DPUServiceIPAM.new(
        "pool1",
        IPAM_NS,
        spec={
            "metadata": {"labels": {"svc.dpu.nvidia.com/pool": "pool1"}, "annotations": {"note": "x"}},
            "ipv4Subnet": {
                "subnet": "192.168.0.0/20",
                "gateway": "192.168.0.1",
                "perNodeIPCount": 256,
                "routes": [{"dst": "10.0.0.0/8"}],
            },
            "nodeSelector": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "a", "operator": "Exists"}]}]},
        },
    )


def test_ipam_subnet_becomes_ippool_and_ready_follows_allocations() -> None:
    w = World(("dc1",))
    w.host.create(ipam_subnet())
    w.run()
    pool = w.dpu["dc1"].get(IPPool, "pool1", IPAM_NS)
    assert pool.metadata.labels == {
        "svc.dpu.nvidia.com/pool": "pool1",
        "dpu.nvidia.com/dpuserviceipam-name": "pool1",
        "dpu.nvidia.com/dpuserviceipam-namespace": IPAM_NS,
    }
    assert pool.metadata.annotations == {"note": "x"}
    assert pool.spec.wire() == {
        "subnet": "192.168.0.0/20",
        "perNodeBlockSize": 256,
        "gateway": "192.168.0.1",
        "nodeSelector": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "a", "operator": "Exists"}]}]},
        "routes": [{"dst": "10.0.0.0/8"}],
    }
    assert w.host.get(DPUServiceIPAM, "pool1", IPAM_NS).metadata.finalizers == [FINALIZER_DPUSERVICE_IPAM]
    assert w.conditions(ipam_subnet())["DPUIPAMObjectReady"] == ("False", "Pending")
    wire = pool.wire()
    wire["status"] = {"allocations": [{"nodeName": "n1", "startIP": "192.168.0.1", "endIP": "192.168.1.0"}]}
    w.dpu["dc1"].update_status(IPPool.model_validate(wire))
    w.run(15)
    assert w.conditions(ipam_subnet())["Ready"] == ("True", "Success")


def test_ipam_network_becomes_cidrpool_and_removes_the_other_kind() -> None:
    w = World(("dc1",))
    store = w.dpu["dc1"]
    store.create(Namespace.new(IPAM_NS))
    # A leftover IPPool of the same parent (the mode switch the webhook forbids, done behind its back).
    store.create(
        IPPool.new(
            "pool1",
            IPAM_NS,
            metadata={
                "name": "pool1",
                "namespace": IPAM_NS,
                "labels": {
                    "dpu.nvidia.com/dpuserviceipam-name": "pool1",
                    "dpu.nvidia.com/dpuserviceipam-namespace": IPAM_NS,
                },
            },
            spec={"subnet": "10.0.0.0/24", "perNodeBlockSize": 10},
        )
    )
    w.host.create(
        DPUServiceIPAM.new(
            "pool1",
            IPAM_NS,
            spec={
                "ipv4Network": {
                    "network": "10.0.120.0/22",
                    "gatewayIndex": 3,
                    "prefixSize": 29,
                    "exclusions": ["10.0.120.5"],
                    "allocations": {"n2": "10.0.121.0/29", "n1": "10.0.120.8/29"},
                    "defaultGateway": True,
                }
            },
        )
    )
    w.run()
    assert store.try_get(IPPool, "pool1", IPAM_NS) is None
    pool = store.get(CIDRPool, "pool1", IPAM_NS)
    assert pool.spec.wire() == {
        "cidr": "10.0.120.0/22",
        "gatewayIndex": 3,
        "perNodeNetworkPrefix": 29,
        "exclusions": [{"startIP": "10.0.120.5", "endIP": "10.0.120.5"}],
        "staticAllocations": [
            {"nodeName": "n1", "prefix": "10.0.120.8/29"},
            {"nodeName": "n2", "prefix": "10.0.121.0/29"},
        ],
        "defaultGateway": True,
    }
    w.host.delete(DPUServiceIPAM, "pool1", IPAM_NS)
    w.run()
    assert store.try_get(CIDRPool, "pool1", IPAM_NS) is None
    assert w.host.try_get(DPUServiceIPAM, "pool1", IPAM_NS) is None


def test_new_cluster_gets_the_child_without_touching_the_parent() -> None:
    w = World(("dc1",))
    w.host.create(dsi())
    w.run()
    w.add_cluster("dc3")  # the DPUCluster event re-evaluates every mirror
    w.run()
    assert w.dpu["dc3"].try_get(ServiceInterfaceSet, "p0", NS) is not None


def test_host_to_flows_end_to_end_with_the_system_composition() -> None:
    """Host mirrors + DPU-cluster controllers + one node's SFC agent: the chain ends Ready with flows on br-sfc."""
    from test_sfc_agent import FakeOvs

    from dpf_core import system
    from dpf_core.api.external import Node
    from dpf_core.controllers.sfc import chain_cookie

    w = World(("dc1",))
    dpu = w.dpu["dc1"]
    dpu.create(Node.new("n1", metadata={"name": "n1", "labels": {"role": "dpu"}}))
    cluster = Manager(dpu, w.clock, name="dc1")
    for c in system.dpu_cluster_controllers():
        cluster.add(c)
    ovs = FakeOvs()
    agent = Manager(dpu, w.clock, ports=Ports(ovs=ovs), name="n1")
    for c in system.dpu_node_controllers("n1"):
        agent.add(c)
    w.driver.add(cluster)
    w.driver.add(agent)
    w.host.create(dsi())
    w.host.create(
        DPUServiceInterface.new(
            "pf0",
            NS,
            spec={"template": {"spec": {"template": {"metadata": {"labels": {"port": "pf0"}},
                                                     "spec": {"interfaceType": "pf", "pf": {"pfID": 0}}}}}},
        )
    )
    ports = [{"serviceInterface": {"matchLabels": {"uplink": "p0"}}}, {"serviceInterface": {"matchLabels": {"port": "pf0"}}}]
    w.host.create(
        DPUServiceChain.new("c", NS, spec={"template": {"spec": {"template": {"spec": {"switches": [{"ports": ports}]}}}}})
    )
    assert w.run(40) == 0
    for kind, name in ((DPUServiceInterface, "p0"), (DPUServiceInterface, "pf0"), (DPUServiceChain, "c")):
        assert w.conditions(w.host.get(kind, name, NS))["Ready"] == ("True", "Success")
    assert {cookie for cookie, _ in ovs.flows["br-sfc"]} == {chain_cookie(NS, "c-n1")}
    assert len(ovs.flows["br-sfc"]) == 2
