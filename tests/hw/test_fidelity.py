"""`dpf fidelity`: the twin's OVS model against a real ovs-vswitchd. The CI-sized run must find zero mismatches,
and the comparison must be able to see a difference at all (a model broken on purpose is caught)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

DPF = Path(sys.executable).parent / "dpf"


def _need_ovs(require_real_rule: Callable[[str, bool, str], None]) -> None:
    from dpf_hw.fidelity_real import available

    ok, why = available()
    require_real_rule("a real Open vSwitch for dpf fidelity", ok, why)


def test_dpf_fidelity_small_run_has_zero_mismatches(require_real_rule: Callable[[str, bool, str], None]) -> None:
    _need_ovs(require_real_rule)
    done = subprocess.run([str(DPF), "fidelity", "--topologies", "3", "--probes", "200", "--seed", "7"],
                          capture_output=True, text=True, timeout=300, check=False)
    summary = done.stdout.strip().splitlines()[-1]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    m = re.search(r"(\d+) topologies, (\d+) probes .* (\d+) deliveries, (\d+) drops\), (\d+)/(\d+) chains ready, "
                  r"(\d+) flows and (\d+) ports compared, 0 mismatches", summary)
    assert m is not None, summary
    topologies, probes, deliveries, drops, ready, chains, flows, ports = map(int, m.groups())
    assert (topologies, probes) == (3, 200)
    assert ready == chains > 0  # every chain was programmed on both switches
    assert deliveries > probes and 0 < drops < probes  # traffic flowed, and some of it was (rightly) dropped
    assert flows > 0 and ports > 0


def test_a_model_that_floods_past_the_local_port_is_caught(require_real_rule: Callable[[str, bool, str], None],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _need_ovs(require_real_rule)
    from dpf_cli.fidelity import run_fidelity
    from dpf_sim.ovs.datapath import Bridge

    def without_local(self: Bridge) -> list[int]:
        return [p for p in self.ofports() if p != 0xFFFE]

    monkeypatch.setattr(Bridge, "bundle_order", without_local)
    report = run_fidelity(2, 150, seed=3)
    assert report.code == 1
    traces = [m for m in report.mismatches if m.what == "trace"]
    assert traces and all(":br-" in m.real for m in traces)  # real OVS floods to the bridge's LOCAL port too


def test_a_requested_ofport_held_by_an_automatic_port_is_taken_over(
        require_real_rule: Callable[[str, bool, str], None]) -> None:
    """ovs-cni's ofport_request (a hash byte) often names a number OVS already gave another port: OVS then
    renumbers that port (bridge_delete_or_reconfigure_ports). Model and real switch, step by step."""
    _need_ovs(require_real_rule)
    import time

    from dpf_hw.fidelity_real import real_switch
    from dpf_sim.fidelity import SimSwitch, normalise_ports

    with real_switch() as real:
        sim = SimSwitch(now=time.monotonic)
        for sw in (sim, real):
            sw.add_bridge("br-sfc", "secure")
            sw.ovs.ensure_port("br-sfc", "p0", "dpdk")  # automatic: 1
            sw.ovs.ensure_port("br-sfc", "pf0hpf", "dpdk")  # automatic: 2
            sw.ovs.ensure_port("br-sfc", "sfa", "internal", ofport_request=1)  # takes 1 from p0
            sw.ovs.ensure_port("br-sfc", "sfb", "internal", ofport_request=1)  # conflict: sfa keeps 1
        got = {r["name"]: r["ofport"] for r in real.ports("br-sfc")}
        assert got == {"sfa": 1, "pf0hpf": 2, "p0": 4, "sfb": 5}  # 3 was sfa's passing number, freed just now
        assert normalise_ports(sim.ports("br-sfc")) == normalise_ports(real.ports("br-sfc"))


def test_a_model_that_forgets_learned_flows_is_caught(require_real_rule: Callable[[str, bool, str], None],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _need_ovs(require_real_rule)
    from dpf_cli.fidelity import run_fidelity
    from dpf_sim.ovs import trace

    def without_side_effects(dp: object, bridge: str, in_port: str, packet: object, **kw: object) -> object:
        return trace(dp, bridge, in_port, packet, side_effects=False)  # type: ignore[arg-type]

    monkeypatch.setattr("dpf_sim.fidelity.trace", without_side_effects)
    report = run_fidelity(1, 120, seed=5)
    flows = [m for m in report.mismatches if m.what == "flows" and "after probes" in m.where]
    assert flows, "learned flows on real OVS must show up as missing from the twin"
    assert all(m.sim == "-" and "idle_timeout=10" in m.real for m in flows)


# --- the datapath-action reader (pure) -----------------------------------------------------------------------


def test_datapath_actions_replay_into_deliveries() -> None:
    from dpf_hw.fidelity_real import interpret, split_actions

    assert split_actions("3,push_vlan(vid=10,pcp=0),clone(set(eth(src=00:00:00:00:00:77)),4),5") == [
        "3", "push_vlan(vid=10,pcp=0)", "clone(set(eth(src=00:00:00:00:00:77)),4)", "5"]
    odp = {3: ("br-sfc", "p0"), 4: ("br-ovn", "br-ovn"), 5: ("br-sfc", "pf0hpf")}
    pkt = {"eth_src": "0a:58:0a:00:00:01", "eth_dst": "0a:58:0a:00:00:02", "vlan": None, "ip_src": "10.0.0.1",
           "ip_dst": "10.0.0.2", "ip_proto": 6, "tp_src": 1000, "tp_dst": 80}
    out = interpret("3,push_vlan(vid=10,pcp=0),clone(set(eth(src=00:00:00:00:00:77)),set(ipv4(dst=1.2.3.4)),4),"
                    "set(tcp(dst=8080)),5,pop_vlan,3", pkt, odp)
    assert out == (
        ("br-sfc", "p0", "0a:58:0a:00:00:01", "0a:58:0a:00:00:02", None, 0, "10.0.0.1", "10.0.0.2", 1000, 80),
        ("br-ovn", "br-ovn", "00:00:00:00:00:77", "0a:58:0a:00:00:02", 10, 0, "10.0.0.1", "1.2.3.4", 1000, 80),
        ("br-sfc", "pf0hpf", "0a:58:0a:00:00:01", "0a:58:0a:00:00:02", 10, 0, "10.0.0.1", "10.0.0.2", 1000, 8080),
        ("br-sfc", "p0", "0a:58:0a:00:00:01", "0a:58:0a:00:00:02", None, 0, "10.0.0.1", "10.0.0.2", 1000, 8080),
    )
    assert interpret("drop", pkt, odp) == ()
    with pytest.raises(RuntimeError, match="not understood"):
        interpret("ct(commit),3", pkt, odp)
    with pytest.raises(RuntimeError, match="not in dpif/show"):
        interpret("9", pkt, odp)


def test_flow_string_spells_each_protocol_as_ofproto_trace_needs() -> None:
    from dpf_hw.fidelity_real import flow_string

    base = {"eth_src": "02:00:00:00:00:01", "eth_dst": "02:00:00:00:00:02", "vlan": 5}
    assert flow_string(3, {**base, "ip_src": "10.0.0.1", "ip_dst": "10.0.0.2", "ip_proto": 17, "tp_src": 1,
                           "tp_dst": 53}) == (
        "in_port=3,dl_src=02:00:00:00:00:01,dl_dst=02:00:00:00:00:02,vlan_tci=0x1005,dl_type=0x0800,"
        "nw_src=10.0.0.1,nw_dst=10.0.0.2,nw_proto=17,udp_src=1,udp_dst=53")
    assert flow_string(1, {**base, "vlan": None, "eth_type": 0x88B5}).endswith("dl_type=0x88b5")
    assert flow_string(1, {**base, "ip_src": "10.0.0.1", "ip_dst": "10.0.0.2", "ip_proto": 1, "tp_src": 8,
                           "tp_dst": 0}).endswith("nw_proto=1,icmp_type=8,icmp_code=0")


def test_topologies_are_seeded_and_cover_every_interface_type() -> None:
    from dpf_sim.fidelity import generate, topology_digest

    assert topology_digest(generate(4, 11)) == topology_digest(generate(4, 11))
    assert topology_digest(generate(4, 11)) != topology_digest(generate(4, 12))
    kinds = {spec["interfaceType"] for i in range(30) for _, _, spec in generate(i, 1).service_interfaces}
    assert kinds == {"physical", "pf", "vf", "ovn", "service", "vlan"}
    flows = " ".join(f for i in range(30) for fl in generate(i, 1).decorations.values() for f in fl)
    for action in ("mod_vlan_vid", "pop_vlan", "push_vlan", "resubmit(,", "goto_table", "load:", "move:",
                   "mod_nw_dst", "NORMAL", "actions=drop"):
        assert action in flows
