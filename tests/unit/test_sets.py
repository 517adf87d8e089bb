"""ServiceInterfaceSet / ServiceChainSet in a DPU cluster: a child per selected Node, real readiness."""

from __future__ import annotations

from typing import Any

from dpf_core.api.conditions import get_condition
from dpf_core.api.external import Node
from dpf_core.api.svc import (
    FINALIZER_SERVICE_CHAIN_SET,
    FINALIZER_SERVICE_INTERFACE_SET,
    ServiceChain,
    ServiceChainSet,
    ServiceInterface,
    ServiceInterfaceSet,
)
from dpf_core.controllers import servicechainset, serviceinterfaceset
from dpf_core.runtime import Manager, ManualClock, SyncDriver
from dpf_core.store import MemoryStore

NS = "default"


class World:
    def __init__(self, nodes: dict[str, dict[str, str]]) -> None:
        self.clock = ManualClock()
        self.store = MemoryStore(clock=self.clock.now, name="dpu-cluster")
        for name, labels in nodes.items():
            self.store.create(Node.new(name, metadata={"name": name, "labels": labels}))
        self.mgr = Manager(self.store, self.clock)
        self.mgr.add(serviceinterfaceset.controller())
        self.mgr.add(servicechainset.controller())
        self.driver = SyncDriver(self.mgr)

    def run(self) -> int:
        return self.driver.run_for(1, max_steps=2000).errors

    def children(self, cls: type[Any]) -> dict[str, Any]:
        return {c.name: c for c in self.store.list(cls, NS)}

    def relabel(self, node: str, labels: dict[str, str]) -> None:
        n = self.store.get(Node, node).deepcopy()
        n.metadata.labels = labels
        self.store.update(n)

    def mark_ready(self, cls: type[Any], name: str, generation: int | None = None) -> None:
        obj = self.store.get(cls, name, NS)
        wire = obj.wire()
        wire["status"] = {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Success",
                    "lastTransitionTime": "2025-01-01T00:00:00Z",
                    "observedGeneration": generation if generation is not None else obj.metadata.generation,
                }
            ]
        }
        self.store.update_status(cls.model_validate(wire))


def vf_set(**extra: Any) -> ServiceInterfaceSet:
    return ServiceInterfaceSet.new(
        "vf1",
        NS,
        metadata={"name": "vf1", "namespace": NS, "annotations": {"from": "set"}},
        spec={
            "nodeSelector": {"matchLabels": {"role": "dpu"}},
            "template": {
                "metadata": {"labels": {"port": "vf1"}, "annotations": {"from": "template"}},
                "spec": {"interfaceType": "vf", "vf": {"vfID": 3, "pfID": 0, "parentInterfaceRef": "pf0"}},
            },
            **extra,
        },
    )


def test_a_child_per_selected_node_with_dpf_labels_and_suffixed_parent() -> None:
    w = World({"n1": {"role": "dpu"}, "n2": {"role": "dpu"}, "host": {}})
    w.store.create(vf_set())
    assert w.run() == 0
    sis = w.store.get(ServiceInterfaceSet, "vf1", NS)
    assert sis.metadata.finalizers == [FINALIZER_SERVICE_INTERFACE_SET]
    children = w.children(ServiceInterface)
    assert sorted(children) == ["vf1-n1", "vf1-n2"]
    child = children["vf1-n1"]
    assert child.spec.node == "n1"
    assert child.spec.vf is not None
    assert (child.spec.vf.vf_id, child.spec.vf.pf_id, child.spec.vf.parent_interface_ref) == (3, 0, "pf0-n1")
    assert child.metadata.labels == {
        "svc.dpu.nvidia.com/serviceinterfaceset-name": "vf1",
        "svc.dpu.nvidia.com/serviceinterfaceset-namespace": NS,
        "svc.dpu.nvidia.com/nodeName": "n1",
        "port": "vf1",
    }
    assert child.metadata.annotations == {"from": "set"}  # the set's, not the template's
    [ref] = child.metadata.owner_references
    assert (ref.kind, ref.name, ref.uid, ref.controller) == ("ServiceInterfaceSet", "vf1", sis.metadata.uid, True)
    assert (sis.status.number_applied, sis.status.number_ready) == (2, 0)
    conditions = {c.type: (c.status, c.reason) for c in sis.status.conditions}
    assert conditions == {
        "Ready": ("False", "Pending"),
        "ServiceInterfacesReconciled": ("True", "Success"),
        "ServiceInterfacesReady": ("False", "Pending"),
    }


def test_service_type_child_gets_the_service_id_label() -> None:
    w = World({"n1": {}})
    w.store.create(
        ServiceInterfaceSet.new(
            "app-eth1",
            NS,
            spec={
                "template": {
                    "spec": {
                        "interfaceType": "service",
                        "service": {"serviceID": "app", "network": "mybrsfc", "interfaceName": "net1"},
                    }
                }
            },
        )
    )
    w.run()
    child = w.store.get(ServiceInterface, "app-eth1-n1", NS)
    assert child.metadata.labels["svc.dpu.nvidia.com/service-id"] == "app"


def test_numbers_and_ready_follow_the_children() -> None:
    w = World({"n1": {"role": "dpu"}, "n2": {"role": "dpu"}})
    w.store.create(vf_set())
    w.run()
    w.mark_ready(ServiceInterface, "vf1-n1")
    w.run()  # the child's status change reaches the set through its ownerReference
    sis = w.store.get(ServiceInterfaceSet, "vf1", NS)
    assert (sis.status.number_applied, sis.status.number_ready) == (2, 1)
    ready = get_condition(sis.status.conditions, "ServiceInterfacesReady")
    assert ready is not None and ready.message == "Objects not ready: default/vf1-n2"
    # A Ready written for an older generation does not count.
    w.mark_ready(ServiceInterface, "vf1-n2", generation=0)
    w.run()
    assert w.store.get(ServiceInterfaceSet, "vf1", NS).status.number_ready == 1
    w.mark_ready(ServiceInterface, "vf1-n2")
    w.run()
    sis = w.store.get(ServiceInterfaceSet, "vf1", NS)
    assert (sis.status.number_applied, sis.status.number_ready) == (2, 2)
    assert {c.type: c.status for c in sis.status.conditions} == {
        "Ready": "True",
        "ServiceInterfacesReconciled": "True",
        "ServiceInterfacesReady": "True",
    }
    assert sis.status.observed_generation == sis.metadata.generation


def test_node_label_changes_add_and_remove_children() -> None:
    w = World({"n1": {"role": "dpu"}, "n2": {}})
    w.store.create(vf_set())
    w.run()
    assert sorted(w.children(ServiceInterface)) == ["vf1-n1"]
    w.relabel("n2", {"role": "dpu"})
    w.run()
    assert sorted(w.children(ServiceInterface)) == ["vf1-n1", "vf1-n2"]
    w.relabel("n1", {})
    w.run()
    assert sorted(w.children(ServiceInterface)) == ["vf1-n2"]
    assert w.store.get(ServiceInterfaceSet, "vf1", NS).status.number_applied == 1


def test_child_labels_added_by_the_sfc_agent_survive_a_pass() -> None:
    w = World({"n1": {}})
    w.store.create(vf_set(nodeSelector=None))
    w.run()
    child = w.store.get(ServiceInterface, "vf1-n1", NS).deepcopy()
    child.metadata.labels["svc.dpu.nvidia.com/service-chain"] = "chain"
    w.store.update(child)
    w.relabel("n1", {"any": "thing"})  # triggers every set
    w.run()
    assert w.store.get(ServiceInterface, "vf1-n1", NS).metadata.labels["svc.dpu.nvidia.com/service-chain"] == "chain"


def test_deleting_the_set_deletes_its_children() -> None:
    w = World({"n1": {"role": "dpu"}, "n2": {"role": "dpu"}})
    w.store.create(vf_set())
    w.run()
    w.store.delete(ServiceInterfaceSet, "vf1", NS)
    w.run()
    assert w.store.try_get(ServiceInterfaceSet, "vf1", NS) is None
    assert w.children(ServiceInterface) == {}


def test_chain_set_children_carry_switches_and_node() -> None:
    w = World({"n1": {}, "n2": {}})
    switches = [
        {
            "ports": [
                {"serviceInterface": {"matchLabels": {"uplink": "p0"}}},
                {"serviceInterface": {"matchLabels": {"port": "vf1"}, "ipam": {"matchLabels": {"pool": "a"}}}},
            ]
        }
    ]
    w.store.create(
        ServiceChainSet.new(
            "chain",
            NS,
            spec={"template": {"metadata": {"labels": {"x": "y"}}, "spec": {"switches": switches}}},
        )
    )
    w.run()
    scs = w.store.get(ServiceChainSet, "chain", NS)
    assert scs.metadata.finalizers == [FINALIZER_SERVICE_CHAIN_SET]
    children = w.children(ServiceChain)
    assert sorted(children) == ["chain-n1", "chain-n2"]
    child = children["chain-n2"]
    assert child.spec.node == "n2"
    assert child.spec.wire()["switches"] == switches
    assert child.metadata.labels == {
        "svc.dpu.nvidia.com/servicechainset-name": "chain",
        "svc.dpu.nvidia.com/servicechainset-namespace": NS,
        "svc.dpu.nvidia.com/nodeName": "n2",
        "x": "y",
    }
    for name in children:
        w.mark_ready(ServiceChain, name)
    w.run()
    scs = w.store.get(ServiceChainSet, "chain", NS)
    assert (scs.status.number_applied, scs.status.number_ready) == (2, 2)
    assert get_condition(scs.status.conditions, "Ready") is not None
    assert {c.type: c.status for c in scs.status.conditions}["ServiceChainsReady"] == "True"
