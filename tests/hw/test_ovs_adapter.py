"""The Ovs adapter against a real ovsdb-server + ovs-vswitchd (userspace datapath), cross-checked with
ovs-vsctl / ovs-ofctl as a second client.

Deviation from a BlueField: DPF's br-sfc ports are `dpdk` interfaces, which need DPDK in ovs-vswitchd; here
they are `internal` ports of the netdev datapath with the same names and external_ids (the adapter passes the
type through untouched, so on a DPU the same call makes a dpdk port)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest

from dpf_core.ports.ops import OpError

if TYPE_CHECKING:
    from conftest import OvsSandbox

BR = "br-sfc"


def fnv1a_64(text: str) -> int:
    h = 0xCBF29CE484222325
    for byte in text.encode():
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def chain_flows(cookie: int, ofports: list[int]) -> list[str]:
    """DPF's flows of one switch of a ServiceChain (facts 5.2): flood to the other members, learn the reverse."""
    flows = []
    for a in ofports:
        others = [b for b in ofports if b != a]
        learns = ",".join(
            f"learn(cookie={cookie},idle_timeout=10,table=0,priority=30,in_port={b},dl_dst=dl_src,output:NXM_OF_IN_PORT[])"
            for b in others)
        outputs = "".join(f",output:{b}" for b in others)
        flows.append(f"cookie={cookie},table=0,priority=20,in_port={a} actions={learns}{outputs}")
    return flows


def ofport(ovs: Any, name: str) -> int:
    port = next(p for p in ovs.ports(BR) if p["name"] == name)
    assert isinstance(port["ofport"], int) and port["ofport"] > 0
    return int(port["ofport"])


@pytest.fixture
def sfc(ovs_adapter: Any, ovs_sandbox: OvsSandbox) -> Any:
    ovs_adapter.ensure_bridge(BR, datapath_type="netdev", fail_mode="secure")
    for i, name in enumerate(["p0", "pf0hpf", "pf0vf0"], start=1):
        ovs_adapter.ensure_port(BR, name, "internal", ofport_request=i,
                                iface_external_ids={"dpf-id": f"ns/si-{name}"})
    return ovs_adapter


def test_br_sfc_is_a_netdev_bridge_in_secure_fail_mode(ovs_adapter: Any, ovs_sandbox: OvsSandbox) -> None:
    ovs_adapter.ensure_bridge(BR, datapath_type="netdev", fail_mode="secure")
    ovs_adapter.ensure_bridge(BR, datapath_type="netdev", fail_mode="secure")  # idempotent
    assert ovs_sandbox.vsctl("list-br").split() == [BR]
    assert ovs_sandbox.vsctl("get", "Bridge", BR, "datapath_type").strip() == "netdev"
    assert ovs_sandbox.vsctl("get-fail-mode", BR).strip() == "secure"
    assert ovs_adapter.bridge(BR)["fail_mode"] == "secure"
    assert ovs_adapter.bridge("br-none") is None
    assert ovs_adapter.ports(BR) == []  # the bridge's local port is not one of "its ports"


def test_ports_of_dpf_kinds_with_external_ids_round_trip(ovs_adapter: Any, ovs_sandbox: OvsSandbox) -> None:
    ovs_adapter.ensure_bridge(BR)
    ovs_adapter.ensure_bridge("br-ovn")
    # physical uplink: Port external_ids dpf-type=physical; pf and vf representors: Interface dpf-id
    ovs_adapter.ensure_port(BR, "p0", "internal", iface_external_ids={"dpf-id": "dpf/p0"},
                            port_external_ids={"dpf-type": "physical"})
    ovs_adapter.ensure_port(BR, "pf0hpf", "internal", iface_external_ids={"dpf-id": "dpf/pf0"})
    ovs_adapter.ensure_port(BR, "pf0vf3", "internal", iface_external_ids={"dpf-id": "dpf/vf3"}, ofport_request=42)
    # ovn: a patch pair across br-sfc and br-ovn
    ovs_adapter.ensure_port(BR, "puplinkbrsfc", "patch", options={"peer": "puplinkbrovn"},
                            iface_external_ids={"dpf-id": "dpf/ovn"})
    ovs_adapter.ensure_port("br-ovn", "puplinkbrovn", "patch", options={"peer": "puplinkbrsfc"})
    # a service port as ovs-cni makes it (owner exempts it from the stale sweep)
    ovs_adapter.ensure_port(BR, "sf-pod1", "internal", port_external_ids={
        "owner": "ovs-cni.network.kubevirt.io", "contNetns": "/var/run/netns/x", "contIface": "net1"},
        iface_external_ids={"dpf-id": "app/pod1/net1", "iface-id": "pod1"})

    ports = {p["name"]: p for p in ovs_adapter.ports(BR)}
    assert sorted(ports) == ["p0", "pf0hpf", "pf0vf3", "puplinkbrsfc", "sf-pod1"]
    assert ports["p0"]["port_external_ids"] == {"dpf-type": "physical"}
    assert ports["p0"]["iface_external_ids"] == {"dpf-id": "dpf/p0"}
    assert ports["pf0vf3"]["ofport_request"] == 42 and ports["pf0vf3"]["ofport"] == 42
    assert ports["puplinkbrsfc"]["type"] == "patch" and ports["puplinkbrsfc"]["options"] == {"peer": "puplinkbrovn"}
    assert ports["sf-pod1"]["port_external_ids"]["owner"] == "ovs-cni.network.kubevirt.io"
    assert ports["sf-pod1"]["iface_external_ids"] == {"dpf-id": "app/pod1/net1", "iface-id": "pod1"}
    # The same rows seen through ovs-vsctl, another client.
    assert ovs_sandbox.vsctl("get", "Interface", "pf0hpf", "external_ids:dpf-id").strip() == '"dpf/pf0"'
    assert ovs_sandbox.vsctl("get", "Interface", "pf0vf3", "type").strip() == "internal"
    assert ovs_sandbox.vsctl("get", "Port", "p0", "external_ids:dpf-type").strip() == "physical"
    assert ovs_sandbox.vsctl("list-ports", "br-ovn").split() == ["puplinkbrovn"]


def test_existing_port_is_kept_and_external_ids_are_map_inserts(ovs_adapter: Any, ovs_sandbox: OvsSandbox) -> None:
    ovs_adapter.ensure_bridge(BR)
    ovs_adapter.ensure_port(BR, "pf0vf0", "internal", iface_external_ids={"dpf-id": "ns/a"})
    uuid = ovs_sandbox.vsctl("get", "Port", "pf0vf0", "_uuid").strip()
    # Second call: no re-create, no type change, existing keys keep their values, new keys are added.
    ovs_adapter.ensure_port(BR, "pf0vf0", "patch", iface_external_ids={"dpf-id": "ns/b", "extra": "1"})
    assert ovs_sandbox.vsctl("get", "Port", "pf0vf0", "_uuid").strip() == uuid
    (port,) = ovs_adapter.ports(BR)
    assert port["type"] == "internal"
    assert port["iface_external_ids"] == {"dpf-id": "ns/a", "extra": "1"}


def test_delete_port_removes_rows_and_tolerates_absence(ovs_adapter: Any, ovs_sandbox: OvsSandbox) -> None:
    ovs_adapter.ensure_bridge(BR)
    ovs_adapter.ensure_port(BR, "pf0vf0", "internal")
    ovs_adapter.ensure_port(BR, "pf0vf1", "internal")
    ovs_adapter.delete_port(BR, "pf0vf0")
    ovs_adapter.delete_port(BR, "pf0vf0")
    assert [p["name"] for p in ovs_adapter.ports(BR)] == ["pf0vf1"]
    assert "pf0vf0" not in ovs_sandbox.vsctl("--columns=name", "list", "Interface")


def test_bundle_of_chain_flows_with_learn_then_dump(sfc: Any, ovs_sandbox: OvsSandbox) -> None:
    ports = [ofport(sfc, n) for n in ("p0", "pf0hpf", "pf0vf0")]
    assert ports == [1, 2, 3]
    cookie = fnv1a_64("ns/chain-a")
    sfc.add_flows_bundle(BR, chain_flows(cookie, ports))
    flows = sfc.dump_flows(BR)
    assert len(flows) == 3
    for line, a in zip(sorted(flows, key=lambda f: int(re.search(r"in_port=(\d+)", f).group(1))), ports, strict=True):  # type: ignore[union-attr]
        assert f"cookie={cookie:#x}," in line and "priority=20" in line and f"in_port={a} " in line
        for b in (p for p in ports if p != a):
            # OVS prints learn's `dl_dst=dl_src` in its NXM spelling.
            assert (f"learn(table=0,idle_timeout=10,priority=30,cookie={cookie:#x},in_port={b},"
                    "NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],output:NXM_OF_IN_PORT[])") in line
            assert f"output:{b}" in line
    # Re-running the same bundle (the agent does every 5 s) replaces, never duplicates.
    sfc.add_flows_bundle(BR, chain_flows(cookie, ports))
    assert len(sfc.dump_flows(BR)) == 3
    # A packet from p0 is flooded to the two others and teaches the reverse entry (learn really ran).
    trace = _trace(ovs_sandbox, "in_port=1,dl_src=00:00:00:00:00:01,dl_dst=ff:ff:ff:ff:ff:ff")
    assert "output:2" in trace and "output:3" in trace
    # ofproto/trace has no side effects; a real packet-out through the pipeline runs the learn actions.
    frame = "ffffffffffff" + "000000000001" + "88b5" + "00" * 46
    ovs_sandbox.ofctl("packet-out", ovs_sandbox.mgmt(BR), f"in_port=1 packet={frame} actions=table")
    learned = [f for f in sfc.dump_flows(BR, no_stats=True) if ", priority=30," in f]
    assert sorted(learned) == [
        f"cookie={cookie:#x}, idle_timeout=10, priority=30,in_port=2,dl_dst=00:00:00:00:00:01 actions=output:1",
        f"cookie={cookie:#x}, idle_timeout=10, priority=30,in_port=3,dl_dst=00:00:00:00:00:01 actions=output:1",
    ]
    # The learned entries carry the chain's cookie, so deleting the chain takes them too.
    sfc.del_flows_cookie(BR, cookie)
    assert sfc.dump_flows(BR) == []


def _trace(sandbox: OvsSandbox, flow: str) -> str:
    import subprocess

    done = subprocess.run(["ovs-appctl", f"--target={sandbox.directory / 'ovs-vswitchd.ctl'}", "ofproto/trace", BR, flow],
                          capture_output=True, text=True, timeout=10, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_del_flows_by_cookie_removes_exactly_that_chain(sfc: Any) -> None:
    ports = [ofport(sfc, n) for n in ("p0", "pf0hpf", "pf0vf0")]
    a, b = fnv1a_64("ns/chain-a"), fnv1a_64("ns/chain-b")
    sfc.add_flows_bundle(BR, chain_flows(a, ports[:2]))
    sfc.add_flows_bundle(BR, [f.replace("priority=20", "priority=21") for f in chain_flows(b, ports[1:])])
    assert len(sfc.dump_flows(BR)) == 4
    sfc.del_flows_cookie(BR, a)
    remaining = sfc.dump_flows(BR, no_stats=True)
    assert len(remaining) == 2 and all(f"cookie={b:#x}" in f for f in remaining)
    sfc.del_flows_cookie(BR, a)  # nothing left with that cookie: still fine
    assert len(sfc.dump_flows(BR)) == 2


@pytest.mark.parametrize("bad", [
    "table=0,priority=7,in_port=nosuchport actions=output:1",  # ovs-ofctl refuses to parse it
    "table=0,priority=7,in_port=1 actions=group:77",  # parses; the switch rejects it inside the bundle
])
def test_a_bad_flow_in_the_bundle_applies_nothing(sfc: Any, bad: str) -> None:
    ports = [ofport(sfc, n) for n in ("p0", "pf0hpf")]
    before = sfc.dump_flows(BR, no_stats=True)
    good = chain_flows(fnv1a_64("ns/c"), ports)
    with pytest.raises(OpError) as e:
        sfc.add_flows_bundle(BR, [good[0], bad, good[1]])
    assert e.value.reason == "OvsError" and "add-flows" in str(e.value)
    assert sfc.dump_flows(BR, no_stats=True) == before == []


def test_openflow_on_a_missing_bridge_is_an_ovs_error(ovs_adapter: Any) -> None:
    with pytest.raises(OpError, match="br-nope"):
        ovs_adapter.dump_flows("br-nope")


def test_a_wrong_ovsdb_socket_fails_at_wiring_time(tmp_path: Any) -> None:
    from dpf_hw.ovs import OvsdbOvs  # ovsdbapp is a declared dependency ([hw]), not a component to skip on

    with pytest.raises(OpError, match=r"connect to OVSDB unix:.*Could not retrieve schema"):
        OvsdbOvs(f"unix:{tmp_path}/db.sock")
