"""What the services scenario pays per DPU while the fleet provisions, kept to what it models: the host's
kubelet model schedules only workload pods, so the host's unbound DMS and hostnetwork pods (one each per DPU,
run by ClusterWorld) are not looked at again on every pass; every OVS bridge of every DPU starts with the
standalone NORMAL flow from one parse, and each bridge still owns its own copy of it; the SFC agent's stale
sweep (every period, on every DPU node) reads two keys of each br-sfc row without building a PortRow, and
removes exactly what it removed before, whichever way the Ovs port spells its rows."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Mapping
from types import SimpleNamespace
from typing import Any, cast

import pytest
import simpy

from dpf_core.api.external import Deployment, Node, Pod
from dpf_core.api.svc import ServiceInterface
from dpf_core.controllers import sfc
from dpf_core.runtime import Context
from dpf_core.store.memory import MemoryStore
from dpf_sim import kubelet as kubelet_module
from dpf_sim.cluster import register_node
from dpf_sim.engine import SimClock
from dpf_sim.kubelet import Kubelet
from dpf_sim.ovs import Datapath, ModelOvs

HOSTS = 40


def _node(name: str) -> Node:
    return Node.model_validate({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                                "status": {"conditions": [{"type": "Ready", "status": "True"}]}})


def _dms_pod(i: int) -> Pod:
    """A DPU's DMS pod as the DPU controller makes it: owned by the DPU (no workload), no nodeName."""
    return Pod.model_validate({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": f"dpu-{i}-dms", "namespace": "dpf-operator-system",
        "ownerReferences": [{"apiVersion": "provisioning.dpu.nvidia.com/v1alpha1", "kind": "DPU",
                             "name": f"dpu-{i}", "uid": f"uid-dpu-{i}", "controller": True}]},
        "spec": {"containers": [{"name": "dms", "image": "dms:1"}]}})


def _deployment() -> Deployment:
    return Deployment.model_validate({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {
        "name": "controller", "namespace": "dpf-operator-system"}, "spec": {"replicas": 1, "template": {
            "metadata": {"labels": {"app": "controller"}},
            "spec": {"containers": [{"name": "manager", "image": "controller:1"}]}}}})


class _Counted:
    """Counts the kubelet's workload-ownership checks (`_workload_pod`) while installed."""

    def __init__(self) -> None:
        self.calls = 0
        self._real = kubelet_module._workload_pod

    def __call__(self, p: Pod) -> bool:
        self.calls += 1
        return self._real(p)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Counted]:
    c = _Counted()
    monkeypatch.setattr(kubelet_module, "_workload_pod", c)
    yield c


def _host(run_pods: bool) -> tuple[simpy.Environment, MemoryStore, Kubelet]:
    env = simpy.Environment()
    clock = SimClock(env, 1735689600.0)
    store = MemoryStore(clock.now, name="host")
    for i in range(HOSTS):
        register_node(store, _node(f"host-{i:02d}"))
        store.create(_dms_pod(i))
    k = Kubelet(env, store, clock, random.Random(1), run_pods=run_pods, name="host")
    return env, store, k


def _relabel_every_node(env: simpy.Environment, store: MemoryStore, until: float) -> None:
    """A label change per node (what a rollout does to hosts): each wakes a pass."""
    for n in store.list(Node):
        live = n.deepcopy()
        live.metadata.labels["touched"] = str(until)
        store.update(live)
        env.run(until=env.now + 2)
    env.run(until=until)


def test_a_host_kubelet_schedules_its_workloads_and_leaves_dms_pods_to_the_cluster_world(counted: _Counted) -> None:
    env, store, k = _host(run_pods=False)
    store.create(_deployment())
    env.run(until=60)
    pods = {p.name: p for p in store.list(Pod, "dpf-operator-system")}
    workload = [p for name, p in pods.items() if name.startswith("controller-")]
    assert len(workload) == 1 and workload[0].spec.node_name is not None
    assert workload[0].status.phase == "Pending"  # bound; ClusterWorld (not this kubelet) runs host pods
    dms = [p for name, p in pods.items() if name.endswith("-dms")]
    assert len(dms) == HOSTS
    assert all(p.spec.node_name is None and p.status.phase is None and not p.status.conditions for p in dms)

    # Passes keep coming while hosts change; the DMS pods are not checked again on any of them.
    passes, calls = k.passes, counted.calls
    _relabel_every_node(env, store, 300)
    assert k.passes - passes >= 5
    assert counted.calls - calls < HOSTS, "every pass re-checked the host's unbound DMS pods"
    assert all(p.spec.node_name is None for p in store.list(Pod, "dpf-operator-system") if p.name.endswith("-dms"))


def test_a_dpu_cluster_kubelet_still_schedules_an_unowned_pod() -> None:
    env, store, _ = _host(run_pods=True)
    env.run(until=60)
    dms = [p for p in store.list(Pod, "dpf-operator-system") if p.name.endswith("-dms")]
    assert len(dms) == HOSTS
    assert all(p.spec.node_name is not None and p.status.phase == "Running" for p in dms)


def test_a_pod_that_loses_its_workload_owner_leaves_the_host_schedulers_queue(counted: _Counted) -> None:
    env, store, k = _host(run_pods=False)
    # An unbound workload pod that cannot be placed (no node matches): the host kubelet keeps it Pending.
    owner: dict[str, Any] = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gone", "uid": "uid-gone",
                             "controller": True}
    store.create(Pod.model_validate({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "orphan", "namespace": "dpf-operator-system", "ownerReferences": [owner]},
        "spec": {"nodeSelector": {"nowhere": "true"}, "containers": [{"name": "c", "image": "c:1"}]}}))
    env.run(until=30)
    pod = store.get(Pod, "orphan", "dpf-operator-system")
    assert pod.spec.node_name is None and pod.status.phase == "Pending"
    assert [c.reason for c in pod.status.conditions if c.type == "PodScheduled"] == ["Unschedulable"]
    # Orphaned (ownerReference removed, as garbage collection's orphan policy does): no longer this kubelet's.
    live = pod.deepcopy()
    live.metadata.owner_references = []
    store.update(live)
    assert ("dpf-operator-system", "orphan") not in k._unbound
    writes = store.get(Pod, "orphan", "dpf-operator-system").metadata.resource_version
    _relabel_every_node(env, store, 200)
    assert store.get(Pod, "orphan", "dpf-operator-system").metadata.resource_version == writes


def _standalone(dp: Datapath, bridge: str) -> list[str]:
    return dp.dump_flows(bridge, stats=False)


def test_every_bridge_starts_with_its_own_standalone_normal_flow() -> None:
    t = [100.0]
    a, b = Datapath(lambda: t[0], "a"), Datapath(lambda: t[0], "b")
    for dp in (a, b):
        dp.add_br("br-sfc")
        dp.add_br("br-hbn")
    assert _standalone(a, "br-sfc") == _standalone(b, "br-hbn") == [" priority=0 actions=NORMAL"]

    # Replacing one bridge's priority-0 flow (same match) leaves every other bridge's as it was.
    a.add_flow("br-sfc", "priority=0,actions=drop")
    assert _standalone(a, "br-sfc") == [" priority=0 actions=drop"]
    assert _standalone(a, "br-hbn") == _standalone(b, "br-sfc") == [" priority=0 actions=NORMAL"]

    # Secure drops it; back to standalone brings it again (connmgr's flush and re-add).
    br = b.bridge("br-sfc")
    br.set_fail_mode("secure")
    assert _standalone(b, "br-sfc") == []
    t[0] = 130.0
    br.set_fail_mode("standalone")
    assert _standalone(b, "br-sfc") == [" priority=0 actions=NORMAL"]
    assert [r.created_ms for r in br.rules] == [130_000]


def _interface(name: str, node: str, uplink: str) -> ServiceInterface:
    return ServiceInterface.model_validate({
        "apiVersion": "svc.dpu.nvidia.com/v1alpha1", "kind": "ServiceInterface",
        "metadata": {"name": name, "namespace": "dpf-operator-system"},
        "spec": {"node": node, "interfaceType": "physical", "physical": {"interfaceName": uplink}}})


class _MergedRowsOvs(ModelOvs):
    """An Ovs port whose rows carry one merged `external_ids` map (no port/interface split), as a port over
    `ovs-vsctl list Port` alone would: the sweep must read the same keys from it."""

    def ports(self, bridge: str) -> list[dict[str, Any]]:
        out = []
        for row in super().ports(bridge):
            # The model's `external_ids` is the Interface row's; the Port row's come on top.
            merged: Mapping[str, str] = {**row["external_ids"], **row["port_external_ids"]}
            out.append({"name": row["name"], "ofport": row["ofport"], "type": row["type"], "external_ids": merged})
        return out


@pytest.mark.parametrize("port_cls", [ModelOvs, _MergedRowsOvs])
def test_the_stale_sweep_removes_only_ports_nothing_accounts_for(port_cls: type[ModelOvs]) -> None:
    store = MemoryStore(lambda: 0.0, name="dpu-cluster")
    store.create(_interface("p0-dpu-a", "dpu-a", "p0"))
    store.create(_interface("p1-dpu-b", "dpu-b", "p1"))  # another node's: p1 here is nobody's
    dp = Datapath(lambda: 100.0)
    br = dp.add_br(sfc.SFC_BRIDGE, datapath_type="netdev", fail_mode="secure")
    br.add_port("p0", "dpdk")
    br.add_port("p1", "dpdk")
    br.add_port("pf1hpf", "dpdk", external_ids={sfc.EXTERNAL_ID_DPF_TYPE: sfc.DPF_TYPE_PHYSICAL})
    br.add_port("pod-veth", "system", external_ids={sfc.EXTERNAL_ID_OWNER: sfc.OVS_CNI_OWNER})
    br.add_port("left-over", "dpdk", iface_external_ids={sfc.EXTERNAL_ID_OWNER: sfc.OVS_CNI_OWNER})
    ovs = port_cls(dp)
    ctx = cast(Context, SimpleNamespace(client=store, log=logging.getLogger("test.stale")))
    removed = sfc.StaleObjectRemover("dpu-a").remove_stale_ports(ctx, ovs)
    if port_cls is ModelOvs:
        # The owner key on the Interface row only is no claim on the Port: it goes.
        assert removed == ["p1", "left-over"]
        assert sorted(r["name"] for r in ovs.ports(sfc.SFC_BRIDGE)) == ["br-sfc", "p0", "pf1hpf", "pod-veth"]
    else:
        # Merged rows show the Interface's owner key as the Port's (PortRow.of's reading): it stays.
        assert removed == ["p1"]
        assert sorted(r["name"] for r in ovs.ports(sfc.SFC_BRIDGE)) == [
            "br-sfc", "left-over", "p0", "pf1hpf", "pod-veth"]
    assert sfc.StaleObjectRemover("dpu-a").remove_stale_ports(ctx, ovs) == []
