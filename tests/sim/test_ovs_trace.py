"""Packets through the OVS model: every match field and action executed, patch ports, learn, DPF's chain."""

from __future__ import annotations

from typing import Any

import pytest

from dpf_sim.ovs import Datapath, ModelOvs, Packet, TraceResult, send, trace


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def dp(clock: Clock) -> Datapath:
    d = Datapath(clock)
    br = d.add_br("br0", fail_mode="secure")
    for n in ("a", "b", "c"):
        br.add_port(n)  # ofports 1, 2, 3
    return d


def flows(dp: Datapath, *lines: str) -> None:
    dp.add_flows("br0", list(lines))


def go(dp: Datapath, in_port: int = 1, **pkt: Any) -> TraceResult:
    return trace(dp, "br0", in_port, Packet(**pkt))


IP: dict[str, Any] = {"ip_src": "10.0.0.1", "ip_dst": "10.0.0.2", "ip_proto": 6, "tp_src": 1234, "tp_dst": 80}


# (flow match, packet that matches, packet that does not) -- the hit rule sends to port 2.
MATCH_CASES = [
    ("in_port=1", {}, {"_in_port": 3}),
    ("dl_src=00:00:00:00:00:01", {"eth_src": "00:00:00:00:00:01"}, {"eth_src": "00:00:00:00:00:02"}),
    ("dl_src=02:00:00:00:00:00/02:00:00:00:00:00", {"eth_src": "02:00:00:00:00:09"}, {"eth_src": "00:00:00:00:00:09"}),
    ("dl_dst=00:00:00:00:00:02", {"eth_dst": "00:00:00:00:00:02"}, {"eth_dst": "00:00:00:00:00:03"}),
    ("dl_dst=01:00:00:00:00:00/01:00:00:00:00:00", {"eth_dst": "ff:ff:ff:ff:ff:ff"}, {"eth_dst": "00:00:00:00:00:03"}),
    ("dl_type=0x88cc", {"eth_type": 0x88CC}, {"eth_type": 0x0806}),
    ("dl_vlan=100", {"vlan": 100}, {"vlan": 101}),
    ("dl_vlan=0xffff", {}, {"vlan": 5}),
    ("dl_vlan_pcp=5", {"vlan": 1, "vlan_pcp": 5}, {"vlan": 1, "vlan_pcp": 4}),
    ("vlan_tci=0x1000/0x1000", {"vlan": 7}, {}),
    ("ip", IP, {}),
    ("arp", {"eth_type": 0x0806}, IP),
    ("ip,nw_src=10.0.0.1", IP, {**IP, "ip_src": "10.0.0.9"}),
    ("ip,nw_src=10.0.0.0/24", {**IP, "ip_src": "10.0.0.77"}, {**IP, "ip_src": "10.0.1.1"}),
    ("ip,nw_dst=10.0.0.2", IP, {**IP, "ip_dst": "10.0.0.3"}),
    ("ip,nw_dst=10.0.0.0/255.255.0.255", {**IP, "ip_dst": "10.0.9.0"}, {**IP, "ip_dst": "10.1.0.0"}),
    ("ip,nw_proto=6", IP, {**IP, "ip_proto": 17}),
    ("tcp", IP, {**IP, "ip_proto": 17}),
    ("udp", {**IP, "ip_proto": 17}, IP),
    ("icmp", {**IP, "ip_proto": 1}, IP),
    ("tcp,tp_src=1234", IP, {**IP, "tp_src": 1235}),
    ("tcp,tp_dst=80", IP, {**IP, "tp_dst": 443}),
    ("tcp,tp_dst=0x50/0xfff0", {**IP, "tp_dst": 0x5F}, {**IP, "tp_dst": 0x60}),
]


@pytest.mark.parametrize(("match", "hit", "miss"), MATCH_CASES, ids=[c[0] for c in MATCH_CASES])
def test_each_match_field_hits_and_misses(dp: Datapath, match: str, hit: dict[str, Any],
                                          miss: dict[str, Any]) -> None:
    flows(dp, f"priority=10,{match},actions=output:2")
    hit, miss = dict(hit), dict(miss)
    hit_port = int(hit.pop("_in_port", 1))
    miss_port = int(miss.pop("_in_port", 1))
    assert go(dp, hit_port, **hit).output_ports == ["b"]
    r = go(dp, miss_port, **miss)
    assert r.dropped and r.drop_reason is not None and "no match" in r.drop_reason


@pytest.mark.parametrize("reg", ["reg0", "reg7", "metadata"])
def test_register_and_metadata_match(dp: Datapath, reg: str) -> None:
    dst = "OXM_OF_METADATA[]" if reg == "metadata" else f"NXM_NX_REG{reg[-1]}[]"
    flows(dp, "in_port=1,actions=load:5->" + dst + ",resubmit(,1)",
          "in_port=2,actions=load:6->" + dst + ",resubmit(,1)",
          f"table=1,{reg}=5,actions=output:3")
    assert go(dp, 1).output_ports == ["c"]
    assert go(dp, 2).dropped


def test_output_to_in_port_is_suppressed_unless_in_port_action(dp: Datapath) -> None:
    flows(dp, "in_port=1,actions=output:1,output:2", "in_port=2,actions=in_port")
    r = go(dp, 1)
    assert r.output_ports == ["b"] and any("input port" in n for n in r.notes)
    assert go(dp, 2).output_ports == ["b"]


def test_output_reg_in_port(dp: Datapath) -> None:
    flows(dp, "in_port=1,actions=load:3->NXM_NX_REG0[0..15],output:NXM_NX_REG0[0..15]",
          "in_port=2,actions=output:NXM_OF_IN_PORT[]")
    assert go(dp, 1).output_ports == ["c"]
    assert go(dp, 2).dropped  # output to the packet's own in_port via a register is suppressed too


def test_output_to_nonexistent_port_is_noted(dp: Datapath) -> None:
    flows(dp, "actions=output:42")
    r = go(dp)
    assert r.dropped and any("nonexistent" in n for n in r.notes)


def test_explicit_drop_reason(dp: Datapath) -> None:
    flows(dp, "priority=9,in_port=1,actions=drop")
    r = go(dp)
    assert r.dropped and r.drop_reason is not None and r.drop_reason.startswith("explicit drop")
    assert r.hits[0].priority == 9 and r.hits[0].actions == "drop"


def test_highest_priority_wins(dp: Datapath) -> None:
    flows(dp, "priority=1,actions=output:2", "priority=2,in_port=1,actions=output:3")
    assert go(dp).output_ports == ["c"]
    assert go(dp, 2).dropped  # the priority-1 flow outputs to port 2, which is this packet's in_port
    assert go(dp, 3).output_ports == ["b"]


def test_resubmit_table_and_port(dp: Datapath) -> None:
    flows(dp, "in_port=1,actions=resubmit(,1),resubmit(3,2)",
          "table=1,in_port=1,actions=output:2",
          "table=2,in_port=3,actions=output:3",  # looked up as if from port 3, but the packet's in_port stays 1
          "in_port=2,actions=resubmit:3", "in_port=3,actions=output:1")
    r = go(dp, 1)
    assert r.output_ports == ["b", "c"] and [(h.table, h.priority) for h in r.hits] == [(0, 32768), (1, 32768), (2, 32768)]
    assert go(dp, 2).output_ports == ["a"]


def test_goto_table(dp: Datapath) -> None:
    flows(dp, "in_port=1,actions=mod_dl_dst:00:00:00:00:00:99,goto_table:5",
          "table=5,dl_dst=00:00:00:00:00:99,actions=output:2")
    r = go(dp)
    assert r.output_ports == ["b"] and r.outputs[0].packet.eth_dst == "00:00:00:00:00:99"


def test_resubmit_loop_hits_depth_limit_and_drops(dp: Datapath) -> None:
    flows(dp, "in_port=1,actions=output:2,resubmit(,0)")
    r = go(dp)
    assert r.error == "Recursion too deep" and r.dropped and r.drop_reason is not None
    assert "translation failed" in r.drop_reason and len(r.hits) == 65


def test_load_into_l4_field_needs_the_protocol_in_the_match(dp: Datapath) -> None:
    with pytest.raises(Exception, match="OFPBAC_MATCH_INCONSISTENT"):
        flows(dp, "ip,actions=load:0x1bb->NXM_OF_TCP_DST[]")


def test_set_field_load_move_rewrites(dp: Datapath) -> None:
    flows(dp, "in_port=1,tcp,actions=set_field:00:00:00:00:00:aa->eth_src,set_field:10.9.9.9->ip_dst,"
              "move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],load:0x1bb->NXM_OF_TCP_DST[],output:2")
    r = go(dp, **IP)
    out = r.outputs[0].packet
    assert (out.eth_src, out.eth_dst, out.ip_dst, out.tp_dst) == ("00:00:00:00:00:aa", "00:00:00:00:00:aa", "10.9.9.9", 443)
    assert r.rewrites["ip_dst"] == ("10.0.0.2", "10.9.9.9")


def test_mod_dl_and_mod_nw(dp: Datapath) -> None:
    flows(dp, "ip,in_port=1,actions=mod_dl_src:00:00:00:00:00:01,mod_dl_dst:00:00:00:00:00:02,"
              "mod_nw_src:1.1.1.1,mod_nw_dst:2.2.2.2,output:2")
    out = go(dp, **IP).outputs[0].packet
    assert (out.eth_src, out.eth_dst, out.ip_src, out.ip_dst) == ("00:00:00:00:00:01", "00:00:00:00:00:02",
                                                                  "1.1.1.1", "2.2.2.2")
    assert go(dp, eth_type=0x0806).dropped  # the ip match keeps ARP out


def test_vlan_push_mod_pop(dp: Datapath) -> None:
    flows(dp, "in_port=1,actions=mod_vlan_vid:100,output:2",
          "in_port=2,dl_vlan=100,actions=strip_vlan,output:3",
          "in_port=3,actions=push_vlan:0x8100,output:1")
    assert go(dp, 1).outputs[0].packet.vlan == 100
    assert go(dp, 1, vlan=7).outputs[0].packet.vlan == 100  # rewrites the existing tag, no second push
    out = go(dp, 2, vlan=100).outputs[0].packet
    assert out.vlan is None
    pushed = go(dp, 3).outputs[0].packet
    assert pushed.vlan == 0 and go(dp, 3, vlan=9, vlan_pcp=2).outputs[0].packet.vlan == 9  # new tag copies the old


def test_normal_learns_macs_and_floods_unknown(dp: Datapath) -> None:
    flows(dp, "actions=NORMAL")
    r = send(dp, "br0", 1, Packet(eth_src="00:00:00:00:00:0a", eth_dst="00:00:00:00:00:0b"))
    assert r.output_ports == ["br0", "b", "c"]
    send(dp, "br0", 2, Packet(eth_src="00:00:00:00:00:0b", eth_dst="00:00:00:00:00:0a"))
    assert go(dp, 1, eth_src="00:00:00:00:00:0a", eth_dst="00:00:00:00:00:0b").output_ports == ["b"]


def test_patch_port_continues_in_peer_bridge_table_0(dp: Datapath) -> None:
    ovn = dp.add_br("br-ovn", fail_mode="secure")
    ovn.add_port("pf0hpf", "dpdk")
    ovn.add_port("puplinkbrovn", "patch", options={"peer": "puplinkbrsfc"})
    dp.bridge("br0").add_port("puplinkbrsfc", "patch", options={"peer": "puplinkbrovn"})
    peer_port = ovn.ports["puplinkbrovn"].interface.ofport
    flows(dp, "in_port=1,actions=load:7->NXM_NX_REG0[],output:4,output:2")
    dp.add_flows("br-ovn", [f"in_port={peer_port},reg0=0,actions=mod_dl_dst:00:00:00:00:00:77,output:1"])
    r = go(dp)
    assert [(d.bridge, d.port) for d in r.outputs] == [("br-ovn", "pf0hpf"), ("br0", "b")]
    assert r.outputs[0].packet.eth_dst == "00:00:00:00:00:77"
    assert r.outputs[1].packet.eth_dst == "ff:ff:ff:ff:ff:ff"  # the peer's rewrite does not leak back
    assert [h.bridge for h in r.hits] == ["br0", "br-ovn"]
    assert 'bridge("br-ovn")' in r.render()


def test_patch_without_matching_peer_goes_nowhere(dp: Datapath) -> None:
    dp.bridge("br0").add_port("lonely", "patch", options={"peer": "missing"})
    flows(dp, "in_port=1,actions=output:4")
    r = go(dp)
    assert r.dropped and any("no working peer" in n for n in r.notes)


def test_trace_without_side_effects_does_not_learn(dp: Datapath) -> None:
    flows(dp, "in_port=1,actions=learn(table=0,in_port=2,dl_dst=dl_src,output:NXM_OF_IN_PORT[]),output:2")
    r = trace(dp, "br0", 1, Packet(), side_effects=False)
    assert r.learned == [] and "suppressing side effects" in r.render()
    assert len(dp.dump_flows("br0")) == 1


def test_learn_load_and_field_copy(dp: Datapath) -> None:
    flows(dp, "in_port=1,actions=learn(table=3,priority=9,hard_timeout=4,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],"
              "load:NXM_OF_IN_PORT[]->NXM_NX_REG1[0..15],load:0x2a->NXM_NX_REG2[]),output:2")
    r = go(dp, eth_src="00:00:00:00:00:05")
    assert r.learned == [" table=3, hard_timeout=4, priority=9,dl_dst=00:00:00:00:00:05 "
                         "actions=load:0x1->NXM_NX_REG1[0..15],load:0x2a->NXM_NX_REG2[]"]


def test_send_updates_counters_trace_does_not(dp: Datapath) -> None:
    flows(dp, "in_port=1,actions=output:2")
    trace(dp, "br0", 1, Packet(size=100))
    assert "n_packets=0, n_bytes=0" in dp.dump_flows("br0")[0]
    send(dp, "br0", 1, Packet(size=100))
    send(dp, "br0", "a", Packet(size=60))
    assert "n_packets=2, n_bytes=160" in dp.dump_flows("br0")[0]


# ------------------------------------------------------------------------------------ DPF's service chain (5.2)
COOKIE = 0x24592FC503504D3


def chain_flows(ports: list[int]) -> list[str]:
    out = []
    for a in ports:
        others = [b for b in ports if b != a]
        learns = ",".join(f"learn(cookie={COOKIE},idle_timeout=10,table=0,priority=30,in_port={b},dl_dst=dl_src,"
                          "output:NXM_OF_IN_PORT[])" for b in others)
        out.append(f"cookie={COOKIE}, table=0, priority=20, in_port={a} actions={learns},"
                   + ",".join(f"output:{b}" for b in others))
    return out


def test_dpf_chain_floods_learns_replies_and_expires(dp: Datapath, clock: Clock) -> None:
    ModelOvs(dp).add_flows_bundle("br0", chain_flows([1, 2, 3]))
    mac_a, mac_b = "00:00:00:00:00:0a", "00:00:00:00:00:0b"

    first = send(dp, "br0", 1, Packet(eth_src=mac_a, eth_dst="ff:ff:ff:ff:ff:ff"))
    assert first.output_ports == ["b", "c"]
    assert first.learned == [
        f" cookie={COOKIE:#x}, idle_timeout=10, priority=30,in_port=2,dl_dst={mac_a} actions=output:1",
        f" cookie={COOKIE:#x}, idle_timeout=10, priority=30,in_port=3,dl_dst={mac_a} actions=output:1",
    ]
    assert f" cookie={COOKIE:#x}, duration=0s, table=0, n_packets=0, n_bytes=0, idle_timeout=10, " \
           f"priority=30,in_port=2,dl_dst={mac_a} actions=output:1" in dp.dump_flows("br0")

    clock.t = 4.0
    reply = send(dp, "br0", 2, Packet(eth_src=mac_b, eth_dst=mac_a))
    assert reply.output_ports == ["a"]
    assert (reply.hits[0].priority, reply.hits[0].cookie) == (30, COOKIE)

    # Idle for more than 10 s after the last hit: the learned entry is gone and the reply floods again.
    clock.t = 14.0
    assert any("n_packets=1, n_bytes=64, idle_timeout=10, priority=30,in_port=2,dl_dst=" + mac_a in f
               for f in dp.dump_flows("br0"))
    clock.t = 14.01
    flooded = send(dp, "br0", 2, Packet(eth_src=mac_b, eth_dst=mac_a))
    assert flooded.output_ports == ["a", "c"]
    assert flooded.hits[0].priority == 20


def test_learned_flow_idles_out_from_creation_when_unused(dp: Datapath, clock: Clock) -> None:
    ModelOvs(dp).add_flows_bundle("br0", chain_flows([1, 2]))
    send(dp, "br0", 1, Packet(eth_src="00:00:00:00:00:0a"))
    clock.t = 10.0
    assert len(dp.dump_flows("br0")) == 3
    clock.t = 10.001
    assert len(dp.dump_flows("br0")) == 2
