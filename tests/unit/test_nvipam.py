"""NVIPAM's IPPool/CIDRPool allocation and the Pod IPAM injector, in one DPU cluster."""

from __future__ import annotations

import ipaddress
import itertools
import json
from typing import Any

from dpf_core.api.external import CIDRPool, IPPool, Node, Pod
from dpf_core.api.svc import ServiceChain, ServiceInterface
from dpf_core.controllers import ipam_injector, nvipam
from dpf_core.runtime import Manager, ManualClock, MemoryRecorder, SyncDriver
from dpf_core.store import MemoryStore

NS = "dpf-operator-system"


class World:
    def __init__(self, nodes: int | list[str] = 3, labels: dict[str, str] | None = None) -> None:
        self.clock = ManualClock()
        self.store = MemoryStore(clock=self.clock.now, name="dpu-cluster")
        self.recorder = MemoryRecorder()
        names = [f"n{i:03d}" for i in range(1, nodes + 1)] if isinstance(nodes, int) else nodes
        for name in names:
            self.add_node(name, labels or {})
        self.mgr = Manager(self.store, self.clock, lambda component: self.recorder)
        for c in nvipam.controllers():
            self.mgr.add(c)
        self.mgr.add(ipam_injector.controller())
        self.driver = SyncDriver(self.mgr)

    def add_node(self, name: str, labels: dict[str, str] | None = None) -> None:
        self.store.create(Node.new(name, metadata={"name": name, "labels": labels or {}}))

    def run(self, seconds: float = 1) -> int:
        return self.driver.run_for(seconds, max_steps=5000).errors

    def ippool(self, name: str = "pool") -> dict[str, tuple[str, str]]:
        pool = self.store.get(IPPool, name, NS)
        return {a.node_name: (a.start_ip, a.end_ip) for a in pool.status.allocations}

    def cidrpool(self, name: str = "pool") -> dict[str, tuple[str, str | None]]:
        pool = self.store.get(CIDRPool, name, NS)
        return {a.node_name: (a.prefix, a.gateway) for a in pool.status.allocations}


def ippool(subnet: str = "192.168.0.0/24", block: int = 10, **spec: Any) -> IPPool:
    return IPPool.new("pool", NS, spec={"subnet": subnet, "perNodeBlockSize": block, "gateway": "192.168.0.1", **spec})


def cidrpool(cidr: str = "10.0.120.0/22", prefix: int = 29, **spec: Any) -> CIDRPool:
    return CIDRPool.new("pool", NS, spec={"cidr": cidr, "perNodeNetworkPrefix": prefix, "gatewayIndex": 3, **spec})


def test_ippool_contiguous_blocks_from_the_first_host_address() -> None:
    w = World(3)
    w.store.create(ippool())
    w.run()
    assert w.ippool() == {
        "n001": ("192.168.0.1", "192.168.0.10"),
        "n002": ("192.168.0.11", "192.168.0.20"),
        "n003": ("192.168.0.21", "192.168.0.30"),
    }
    # The shared gateway is part of the first block; the node daemon never hands it out.
    usable = nvipam.usable_addresses("192.168.0.1", "192.168.0.10", "192.168.0.1")
    assert usable[0] == "192.168.0.2" and len(usable) == 9


def test_ippool_allocations_never_move_and_freed_blocks_are_reused() -> None:
    w = World(["b", "d"])
    w.store.create(ippool())
    w.run()
    before = w.ippool()
    w.add_node("a")  # sorts first, must not push the others around
    w.run()
    after = w.ippool()
    assert after["b"] == before["b"] and after["d"] == before["d"]
    assert after["a"] == ("192.168.0.21", "192.168.0.30")
    w.store.delete(Node, "b")
    w.run()
    assert "b" not in w.ippool()
    w.add_node("c")
    w.run()
    assert w.ippool()["c"] == before["b"]


def test_ippool_node_selector_exclusions_and_exhaustion() -> None:
    w = World(["x", "y", "z"], labels={"role": "dpu"})
    w.add_node("host")
    selector = {"nodeSelectorTerms": [{"matchExpressions": [{"key": "role", "operator": "In", "values": ["dpu"]}]}]}
    w.store.create(
        ippool(
            subnet="192.168.0.0/28",
            block=5,
            nodeSelector=selector,
            exclusions=[{"startIP": "192.168.0.1", "endIP": "192.168.0.5"}],
        )
    )
    w.run()
    # /28: hosts .1-.14; the first block is wholly excluded, the second fits, a third would pass .14.
    assert w.ippool() == {"x": ("192.168.0.6", "192.168.0.10")}
    # NVIPAM: one Warning per node left without a block, in name order, none for the selected-out host.
    warnings = sorted({(e.type, e.reason, e.message) for e in w.recorder.events if e.type == "Warning"})
    assert warnings == [
        ("Warning", "NoFreeRanges", "failed to allocate IPs on Node: y"),
        ("Warning", "NoFreeRanges", "failed to allocate IPs on Node: z"),
    ]
    first = [e.message for e in w.recorder.events if e.reason == "NoFreeRanges"][:2]
    assert first == ["failed to allocate IPs on Node: y", "failed to allocate IPs on Node: z"]


def test_cidrpool_per_node_prefix_and_gateway_index() -> None:
    w = World(3)
    w.store.create(cidrpool())
    w.run()
    assert w.cidrpool() == {
        "n001": ("10.0.120.0/29", "10.0.120.3"),
        "n002": ("10.0.120.8/29", "10.0.120.11"),
        "n003": ("10.0.120.16/29", "10.0.120.19"),
    }


def test_cidrpool_exhausted_warns_once_per_node_without_a_prefix() -> None:
    w = World(["c", "a", "d", "b"])
    # Four /30s, one reserved for no node: three nodes fit, "d" (last by name) is left over.
    w.store.create(cidrpool(cidr="10.0.120.0/28", prefix=30, staticAllocations=[{"prefix": "10.0.120.4/30"}]))
    w.run()
    assert sorted(w.cidrpool()) == ["a", "b", "c"]
    events = {(e.kind, e.name, e.type, e.reason, e.message) for e in w.recorder.events if e.type == "Warning"}
    # NVIPAM's message, typo included.
    assert events == {("CIDRPool", "pool", "Warning", "NoFreePrefixes",
                       "failed to allocated prefix for Node: d, no free prefixes")}


def test_cidrpool_static_allocations_exclusions_and_point_to_point() -> None:
    w = World(["a", "b", "c"])
    w.store.create(
        cidrpool(
            staticAllocations=[
                {"nodeName": "c", "prefix": "10.0.120.0/29", "gateway": "10.0.120.6"},
                {"prefix": "10.0.120.8/29"},  # reserved for nobody
            ],
            exclusions=[{"startIP": "10.0.120.16", "endIP": "10.0.120.23"}],
        )
    )
    w.run()
    assert w.cidrpool() == {
        "a": ("10.0.120.24/29", "10.0.120.27"),
        "b": ("10.0.120.32/29", "10.0.120.35"),
        "c": ("10.0.120.0/29", "10.0.120.6"),
    }
    p2p = World(["a", "b"])
    p2p.store.create(cidrpool(cidr="10.0.0.0/30", prefix=31))
    p2p.run()
    assert p2p.cidrpool() == {"a": ("10.0.0.0/31", None), "b": ("10.0.0.2/31", None)}


def test_hundred_nodes_no_overlap_and_growth_keeps_allocations() -> None:
    w = World(100)
    w.store.create(cidrpool(cidr="10.0.0.0/16", prefix=24))
    w.store.create(IPPool.new("flat", NS, spec={"subnet": "172.16.0.0/16", "perNodeBlockSize": 50, "gateway": "172.16.0.1"}))
    w.run()
    cidr = w.cidrpool()
    flat = w.ippool("flat")
    assert len(cidr) == len(flat) == 100
    nets = [ipaddress.ip_network(p) for p, _ in cidr.values()]
    assert all(not a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])
    assert all(gw == str(ipaddress.ip_network(p).network_address + 3) for p, gw in cidr.values())
    ranges = sorted((int(ipaddress.ip_address(s)), int(ipaddress.ip_address(e))) for s, e in flat.values())
    assert all(prev[1] < nxt[0] for prev, nxt in itertools.pairwise(ranges))
    for i in range(101, 111):
        w.add_node(f"n{i:03d}")
    w.run()
    grown = w.cidrpool()
    assert len(grown) == 110
    assert all(grown[n] == cidr[n] for n in cidr)


# --- the Pod IPAM injector ----------------------------------------------------------------------------------


def _chain_setup(w: World, ipam: dict[str, Any] | None) -> None:
    w.store.create(
        ServiceInterface.new(
            "app-net1-n001",
            NS,
            metadata={"name": "app-net1-n001", "namespace": NS, "labels": {"svc": "app-net1"}},
            spec={
                "node": "n001",
                "interfaceType": "service",
                "service": {"serviceID": "app", "network": "mybrsfc", "interfaceName": "net1"},
            },
        )
    )
    port: dict[str, Any] = {"serviceInterface": {"matchLabels": {"svc": "app-net1"}}}
    if ipam is not None:
        port["serviceInterface"]["ipam"] = ipam
    w.store.create(ServiceChain.new("chain-n001", NS, spec={"node": "n001", "switches": [{"ports": [port]}]}))


def _pod(networks: str, node: str = "n001") -> Pod:
    return Pod.new(
        "app-pod",
        NS,
        metadata={
            "name": "app-pod",
            "namespace": NS,
            "labels": {"svc.dpu.nvidia.com/service": "app"},
            "annotations": {"k8s.v1.cni.cncf.io/networks": networks},
        },
        spec={"nodeName": node, "containers": [{"name": "c"}]},
    )


def test_injector_sets_cni_args_from_the_chain_port_ipam() -> None:
    w = World(1)
    w.store.create(
        CIDRPool.new(
            "pool1",
            NS,
            metadata={"name": "pool1", "namespace": NS, "labels": {"pool": "one"}},
            spec={"cidr": "10.0.0.0/16", "perNodeNetworkPrefix": 24, "gatewayIndex": 1},
        )
    )
    _chain_setup(w, {"matchLabels": {"pool": "one"}, "defaultGateway": True})
    w.store.create(_pod("dpf-operator-system/mybrsfc@net1,other@net2"))
    w.run()
    networks = json.loads(w.store.get(Pod, "app-pod", NS).metadata.annotations["k8s.v1.cni.cncf.io/networks"])
    assert networks == [
        {
            "name": "mybrsfc",
            "namespace": NS,
            "interface": "net1",
            "cni-args": {"allocateDefaultGateway": True, "poolNames": ["pool1"], "poolType": "cidrpool"},
        },
        {"name": "other", "namespace": NS, "interface": "net2", "cni-args": None},
    ]


def test_injector_prefers_an_ippool_and_waits_for_pools() -> None:
    w = World(1)
    _chain_setup(w, {"matchLabels": {"pool": "one"}})
    w.store.create(_pod('[{"name":"mybrsfc","interface":"net1"}]'))
    w.run()
    assert "cni-args" not in w.store.get(Pod, "app-pod", NS).metadata.annotations["k8s.v1.cni.cncf.io/networks"]
    for kind in (CIDRPool, IPPool):
        spec = (
            {"cidr": "10.0.0.0/16", "perNodeNetworkPrefix": 24}
            if kind is CIDRPool
            else {"subnet": "10.1.0.0/16", "perNodeBlockSize": 10}
        )
        w.store.create(kind.new("p", NS, metadata={"name": "p", "namespace": NS, "labels": {"pool": "one"}}, spec=spec))
    w.run(30)  # the 30 s retry
    [network] = json.loads(w.store.get(Pod, "app-pod", NS).metadata.annotations["k8s.v1.cni.cncf.io/networks"])
    assert network["cni-args"] == {"allocateDefaultGateway": False, "poolNames": ["p"], "poolType": "ippool"}


def test_injector_leaves_ports_without_ipam_and_running_pods_alone() -> None:
    w = World(1)
    _chain_setup(w, None)
    w.store.create(_pod("mybrsfc@net1"))
    w.run()
    assert w.store.get(Pod, "app-pod", NS).metadata.annotations["k8s.v1.cni.cncf.io/networks"] == "mybrsfc@net1"

    w = World(1)
    w.store.create(IPPool.new("p", NS, metadata={"name": "p", "namespace": NS, "labels": {"pool": "one"}},
                              spec={"subnet": "10.1.0.0/16", "perNodeBlockSize": 10}))
    _chain_setup(w, {"matchLabels": {"pool": "one"}})
    w.store.create(_pod("mybrsfc@net1"))
    running = w.store.get(Pod, "app-pod", NS).deepcopy()
    running.status.phase = "Running"  # the status is the kubelet's: written after create
    w.store.update_status(running)
    w.run()
    assert w.store.get(Pod, "app-pod", NS).metadata.annotations["k8s.v1.cni.cncf.io/networks"] == "mybrsfc@net1"
