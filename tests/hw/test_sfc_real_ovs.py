"""The SFC node agent (the unchanged core controller, dpf_core.controllers.sfc) driving a real Open vSwitch
through the production adapter (dpf_hw.ovs.OvsdbOvs): br-sfc ports from ServiceInterfaces, chain flows from a
ServiceChain, traffic through them traced by ovs-vswitchd itself, cleanup, and the stale sweep.

`dpdk` interfaces need a DPDK-enabled ovs-vswitchd; this one has none, so `StandInOvs` turns them into
`internal` ports of the netdev datapath (same names, external_ids and ofport handling)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest

from dpf_core.api.external import Pod
from dpf_core.api.svc import FINALIZER_SERVICE_INTERFACE, LABEL_SERVICE_CHAIN, ServiceChain, ServiceInterface
from dpf_core.controllers import sfc
from dpf_core.ports import Ports
from dpf_core.runtime import Manager, ManualClock, SyncDriver
from dpf_core.store import MemoryStore

if TYPE_CHECKING:
    from conftest import OvsSandbox

NS = "default"
NODE = "dpu-n1"
BR = "br-sfc"


class Agent:
    """One DPU node: a DPU-cluster store, the SFC agent's three controllers, and the real OVS behind them."""

    def __init__(self, adapter: Any, sandbox: OvsSandbox) -> None:
        from dpf_hw.fidelity_real import StandInOvs

        self.sandbox = sandbox
        self.adapter = adapter
        # What the DPUFlavor's OVS script sets up before the agent starts (facts 5).
        adapter.ensure_bridge(BR, datapath_type="netdev", fail_mode="secure")
        adapter.ensure_bridge("br-ovn", datapath_type="netdev", fail_mode="standalone")
        self.ovs = StandInOvs(adapter)
        self.ovs.ensure_port(BR, "p0", "dpdk", port_external_ids={"dpf-type": "physical"})
        self.clock = ManualClock()
        self.store = MemoryStore(clock=self.clock.now, name="dpu-cluster")
        self.mgr = Manager(self.store, self.clock, ports=Ports(ovs=self.ovs))
        for c in sfc.controllers(NODE, stale_period=60):
            self.mgr.add(c)
        self.driver = SyncDriver(self.mgr)

    def run(self, seconds: float = 1) -> int:
        return self.driver.run_for(seconds, max_steps=5000).errors

    def si(self, name: str, spec: dict[str, Any], labels: dict[str, str] | None = None, node: str = NODE) -> None:
        self.store.create(ServiceInterface.new(
            name, NS, metadata={"name": name, "namespace": NS, "labels": labels or {}}, spec={"node": node, **spec}))

    def chain(self, name: str, switches: list[list[dict[str, str]]]) -> None:
        spec = {"node": NODE,
                "switches": [{"ports": [{"serviceInterface": {"matchLabels": m}} for m in sw]} for sw in switches]}
        self.store.create(ServiceChain.new(name, NS, spec=spec))

    def ready(self, cls: type[Any], name: str) -> tuple[str, str]:
        obj = self.store.get(cls, name, NS)
        [c] = [c for c in obj.status.conditions if c.type == "Ready"]
        return c.status, c.reason

    # --- what ovs-vswitchd itself says ------------------------------------------------------------------------
    def vsctl_ports(self, bridge: str = BR) -> list[str]:
        return sorted(self.sandbox.vsctl("list-ports", bridge).split())

    def ofport(self, name: str) -> int:
        return int(self.sandbox.vsctl("get", "Interface", name, "ofport").strip())

    def flows(self) -> list[str]:
        out = self.sandbox.ofctl("--no-stats", "dump-flows", self.sandbox.mgmt(BR))
        return sorted(line.strip() for line in out.splitlines() if "actions=" in line)

    def trace(self, in_port: int, src: str, dst: str) -> list[int]:
        """OpenFlow ports a packet leaves by, per ovs-vswitchd's own translation (-generate: learn takes effect)."""
        out = self.sandbox_appctl("ofproto/trace", BR, f"in_port={in_port},dl_src={src},dl_dst={dst}", "-generate")
        [actions] = re.findall(r"^Datapath actions: (.*)$", out, re.M)
        if actions == "drop":
            return []
        odp_to_of = self.odp_ports()
        return [odp_to_of[int(a)] for a in actions.split(",")]

    def odp_ports(self) -> dict[int, int]:
        out = self.sandbox_appctl("dpif/show")
        return {int(odp): int(of) for of, odp in re.findall(r"^\s+\S+ (\d+)/(\d+):", out, re.M)}

    def sandbox_appctl(self, *args: str) -> str:
        import subprocess

        done = subprocess.run(["ovs-appctl", "-t", f"{self.sandbox.directory}/ovs-vswitchd.ctl", *args],
                              capture_output=True, text=True, timeout=10, check=True)
        return done.stdout


@pytest.fixture
def agent(ovs_adapter: Any, ovs_sandbox: OvsSandbox) -> Agent:
    return Agent(ovs_adapter, ovs_sandbox)


def test_service_interfaces_become_real_br_sfc_ports(agent: Agent) -> None:
    agent.si("phys", {"interfaceType": "physical", "physical": {"interfaceName": "p1"}})
    agent.si("pf", {"interfaceType": "pf", "pf": {"pfID": 0}})
    agent.si("vf", {"interfaceType": "vf", "vf": {"pfID": 1, "vfID": 3, "parentInterfaceRef": "pf"}})
    agent.si("ovn", {"interfaceType": "ovn"})
    agent.si("vlan", {"interfaceType": "vlan", "vlan": {"vlanID": 10, "parentInterfaceRef": "p1"}})
    agent.si("elsewhere", {"interfaceType": "pf", "pf": {"pfID": 1}}, node="dpu-n2")
    assert agent.run() == 0

    assert agent.vsctl_ports() == ["p0", "p1", "pf0hpf", "pf1vf3", "puplinkbrsfc"]
    assert agent.vsctl_ports("br-ovn") == ["puplinkbrovn"]
    sb = agent.sandbox
    assert sb.vsctl("get", "Interface", "pf0hpf", "external_ids:dpf-id").strip() == '"default/pf"'
    assert sb.vsctl("get", "Interface", "pf1vf3", "external_ids:dpf-id").strip() == '"default/vf"'
    assert sb.vsctl("get", "Port", "p1", "external_ids:dpf-type").strip() == "physical"
    assert sb.vsctl("get", "Interface", "puplinkbrsfc", "type").strip() == "patch"
    assert sb.vsctl("get", "Interface", "puplinkbrsfc", "options:peer").strip() == "puplinkbrovn"
    assert sb.vsctl("get", "Interface", "puplinkbrovn", "options:peer").strip() == "puplinkbrsfc"
    # ovs-vswitchd opened every port: each has a real OpenFlow number (a failed interface would show -1).
    for name in ("p1", "pf0hpf", "pf1vf3", "puplinkbrsfc"):
        assert agent.ofport(name) > 0
    for name in ("phys", "pf", "vf", "ovn"):
        assert agent.store.get(ServiceInterface, name, NS).metadata.finalizers == [FINALIZER_SERVICE_INTERFACE]
        assert agent.ready(ServiceInterface, name) == ("True", "Success")
    assert agent.ready(ServiceInterface, "vlan") == ("False", "Failure")

    agent.store.delete(ServiceInterface, "ovn", NS)
    agent.store.delete(ServiceInterface, "vf", NS)
    assert agent.run() == 0
    assert agent.vsctl_ports() == ["p0", "p1", "pf0hpf"]
    assert agent.vsctl_ports("br-ovn") == []
    assert {si.name for si in agent.store.list(ServiceInterface, NS)} == {"phys", "pf", "vlan", "elsewhere"}


def _members(agent: Agent) -> None:
    agent.si("p0", {"interfaceType": "physical", "physical": {"interfaceName": "p0"}}, labels={"uplink": "p0"})
    agent.si("pf0", {"interfaceType": "pf", "pf": {"pfID": 0}}, labels={"port": "pf0"})
    agent.si("vf1", {"interfaceType": "vf", "vf": {"pfID": 0, "vfID": 1, "parentInterfaceRef": "pf0"}},
             labels={"port": "vf1"})


def test_chain_flows_on_real_ovs_flood_then_learn_the_way_back(agent: Agent) -> None:
    _members(agent)
    agent.chain("chain", [[{"uplink": "p0"}, {"port": "pf0"}, {"port": "vf1"}]])
    assert agent.run(2) == 0
    assert agent.ready(ServiceChain, "chain") == ("True", "Success")
    p0, pf0, vf1 = (agent.ofport(n) for n in ("p0", "pf0hpf", "pf0vf1"))
    cookie = sfc.chain_cookie(NS, "chain")
    flows = agent.flows()
    assert len(flows) == 3
    assert all(f.startswith(f"cookie={cookie:#x}, priority=20,in_port=") for f in flows)
    line = next(f for f in flows if f"in_port={p0} " in f)
    assert line.endswith(f"output:{pf0},output:{vf1}")
    assert (f"learn(table=0,idle_timeout=10,priority=30,cookie={cookie:#x},in_port={pf0},"
            "NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],output:NXM_OF_IN_PORT[])") in line
    for name in ("p0", "pf0", "vf1"):
        assert agent.store.get(ServiceInterface, name, NS).metadata.labels[LABEL_SERVICE_CHAIN] == "chain"

    a, b = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
    # Unknown destination: flooded to the other members. The reply then takes the learned way back only.
    assert sorted(agent.trace(p0, a, b)) == sorted([pf0, vf1])
    assert agent.trace(vf1, b, a) == [p0]
    assert any(f"priority=30,in_port={vf1},dl_dst={a} actions=output:{p0}" in f for f in agent.flows())
    # A port outside the chain has no flow: br-sfc is fail_mode=secure, so its traffic drops.
    agent.si("pf1", {"interfaceType": "pf", "pf": {"pfID": 1}}, labels={"port": "pf1"})
    assert agent.run() == 0
    assert agent.trace(agent.ofport("pf1hpf"), a, b) == []

    agent.store.delete(ServiceChain, "chain", NS)
    assert agent.run() == 0
    assert agent.flows() == []  # chain and learned flows share the cookie
    for name in ("p0", "pf0", "vf1"):
        assert LABEL_SERVICE_CHAIN not in agent.store.get(ServiceInterface, name, NS).metadata.labels


def test_chain_through_a_service_pod_port_and_pending_until_it_exists(agent: Agent) -> None:
    _members(agent)
    agent.si("app", {"interfaceType": "service",
                     "service": {"serviceID": "app", "network": "mybrsfc", "interfaceName": "net1"}},
             labels={"svc": "app"})
    agent.store.create(Pod.new("app-pod", NS, metadata={
        "name": "app-pod", "namespace": NS, "labels": {"svc.dpu.nvidia.com/service": "app"}},
        spec={"nodeName": NODE, "containers": [{"name": "c"}]}))
    agent.chain("chain", [[{"port": "pf0"}, {"svc": "app"}]])
    agent.run()
    assert agent.ready(ServiceChain, "chain") == ("False", "Pending")
    assert agent.flows() == []
    # What ovs-cni (dpf-sfc-cni here) makes at the pod's CNI ADD.
    agent.ovs.ensure_port(BR, "sfapp1", "internal", iface_external_ids={"dpf-id": "default/app-pod/net1"},
                          port_external_ids={"owner": "ovs-cni.network.kubevirt.io"})
    assert agent.run(6) == 0
    assert agent.ready(ServiceChain, "chain") == ("True", "Success")
    assert agent.ready(ServiceInterface, "app") == ("True", "Success")
    pf0, app = agent.ofport("pf0hpf"), agent.ofport("sfapp1")
    assert agent.trace(pf0, "02:00:00:00:00:01", "02:00:00:00:00:02") == [app]


def test_stale_sweep_removes_foreign_flows_and_orphan_ports_on_real_ovs(agent: Agent) -> None:
    _members(agent)
    agent.chain("chain", [[{"uplink": "p0"}, {"port": "pf0"}]])
    assert agent.run() == 0
    adapter = agent.adapter
    adapter.add_flows_bundle(BR, ["cookie=777, table=0, priority=20, in_port=99 actions=drop"])
    agent.ovs.ensure_port(BR, "pf1vf9", "dpdk", iface_external_ids={"dpf-id": "default/gone"})  # orphan
    agent.ovs.ensure_port(BR, "sfpod9", "dpdk", port_external_ids={"owner": "ovs-cni.network.kubevirt.io"})
    agent.ovs.ensure_port(BR, "p1", "dpdk", port_external_ids={"dpf-type": "physical"})
    agent.run(30)
    assert any(f.startswith("cookie=0x309,") for f in agent.flows())  # the ticker fires after a minute
    assert "pf1vf9" in agent.vsctl_ports()
    agent.run(31)
    cookie = sfc.chain_cookie(NS, "chain")
    assert {f.split(",")[0] for f in agent.flows()} == {f"cookie={cookie:#x}"}
    assert agent.vsctl_ports() == ["p0", "p1", "pf0hpf", "pf0vf1", "sfpod9"]
