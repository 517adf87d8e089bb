"""OVSDB rows, flow tables, bundles, deletes and dump-flows of the OVS model; the core port over it."""

from __future__ import annotations

import pytest

from dpf_core.ports import Ovs
from dpf_sim.ovs import Datapath, ModelOvs, OvsError, Packet, send


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def dp(clock: Clock) -> Datapath:
    d = Datapath(clock)
    br = d.add_br("br-sfc", datapath_type="netdev", fail_mode="secure")
    br.add_port("p0", "dpdk", external_ids={"dpf-type": "physical"})
    br.add_port("pf0hpf", "dpdk")
    return d


def test_bridge_rows_and_local_port(dp: Datapath) -> None:
    br = dp.bridge("br-sfc")
    assert (br.datapath_type, br.fail_mode) == ("netdev", "secure")
    rows = {r["name"]: r for r in dp.ports("br-sfc")}
    assert rows["br-sfc"]["ofport"] == 65534 and rows["br-sfc"]["type"] == "internal"
    assert rows["p0"]["ofport"] == 1 and rows["p0"]["port_external_ids"] == {"dpf-type": "physical"}
    with pytest.raises(OvsError, match="no bridge named br-x"):
        dp.bridge("br-x")
    with pytest.raises(OvsError, match="already exists"):
        dp.add_br("br-sfc")
    with pytest.raises(OvsError, match="port named p0 already exists"):
        dp.bridge("br-sfc").add_port("p0")


def test_ofport_request_honoured_else_next_free(dp: Datapath) -> None:
    br = dp.bridge("br-sfc")
    assert br.add_port("svc", "dpdk", ofport_request=200).interface.ofport == 200
    assert br.add_port("vf", "dpdk").interface.ofport == 3
    # A request for a number in use falls back to automatic allocation.
    assert br.add_port("clash", "dpdk", ofport_request=200).interface.ofport == 4


def test_freed_ofport_not_reused_within_an_hour(dp: Datapath, clock: Clock) -> None:
    br = dp.bridge("br-sfc")
    br.del_port("pf0hpf")  # frees 2
    assert br.add_port("a").interface.ofport == 3
    clock.t += 3601
    br.del_port("a")
    # 2 was freed more than an hour ago: usable again once the allocator wraps to it; 4 comes first.
    assert br.add_port("b").interface.ofport == 4
    assert br.add_port("c", ofport_request=2).interface.ofport == 2


def test_fail_mode_standalone_has_visible_normal_flow_secure_has_none(clock: Clock) -> None:
    d = Datapath(clock)
    sa = d.add_br("br-a")
    assert d.dump_flows("br-a", stats=False) == [" priority=0 actions=NORMAL"]
    assert d.dump_flows("br-a")[0] == " cookie=0x0, duration=0s, table=0, n_packets=0, n_bytes=0, priority=0 actions=NORMAL"
    sa.add_port("a1")
    sa.add_port("a2")
    assert send(d, "br-a", "a1", Packet()).output_ports == ["br-a", "a2"]  # flooded incl. LOCAL
    sa.set_fail_mode("secure")
    assert d.dump_flows("br-a") == []
    r = send(d, "br-a", "a1", Packet())
    assert r.dropped and r.drop_reason is not None and "no match" in r.drop_reason and "secure" in r.drop_reason
    sa.set_fail_mode("standalone")
    assert d.dump_flows("br-a", stats=False) == [" priority=0 actions=NORMAL"]


def test_same_match_and_priority_replaces_keeping_counters(dp: Datapath, clock: Clock) -> None:
    dp.add_flow("br-sfc", "cookie=0x7,priority=5,in_port=1,actions=output:2")
    send(dp, "br-sfc", 1, Packet())
    clock.t += 3
    dp.add_flow("br-sfc", "priority=5,in_port=1,actions=drop")  # no cookie named: the old one stays
    dp.add_flow("br-sfc", "priority=6,in_port=1,actions=drop")  # other priority: a new flow
    assert dp.dump_flows("br-sfc") == [
        " cookie=0x0, duration=0s, table=0, n_packets=0, n_bytes=0, priority=6,in_port=1 actions=drop",
        " cookie=0x7, duration=0s, table=0, n_packets=1, n_bytes=64, priority=5,in_port=1 actions=drop",
    ]


def test_bundle_is_atomic_and_names_the_line(dp: Datapath) -> None:
    ovs = ModelOvs(dp)
    ovs.add_flows_bundle("br-sfc", ["priority=1,actions=drop"])
    with pytest.raises(OvsError) as e:
        ovs.add_flows_bundle("br-sfc", ["priority=2,in_port=1,actions=output:2", "priority=3,tp_dst=80,actions=drop"])
    assert "line 2" in str(e.value) and "tp_dst" in str(e.value)
    assert dp.dump_flows("br-sfc", stats=False) == [" priority=1 actions=drop"]


def test_del_flows_cookie_removes_every_table_and_learned_flows(dp: Datapath) -> None:
    c = 0xFEEDFACECAFEBEEF
    dp.add_flows("br-sfc", [
        f"cookie={c},table=0,priority=20,in_port=1,actions=learn(cookie={c},idle_timeout=10,table=0,priority=30,"
        "in_port=2,dl_dst=dl_src,output:NXM_OF_IN_PORT[]),output:2",
        f"cookie={c},table=1,priority=1,actions=drop",
        "cookie=0x1,table=0,priority=1,actions=drop",
    ])
    send(dp, "br-sfc", 1, Packet(eth_src="00:00:00:00:00:0a"))
    assert len(dp.dump_flows("br-sfc", cookie=c)) == 3
    ModelOvs(dp).del_flows_cookie("br-sfc", c)
    assert dp.dump_flows("br-sfc", stats=False) == [" cookie=0x1, priority=1 actions=drop"]


def test_del_flows_loose_and_strict(dp: Datapath) -> None:
    dp.add_flows("br-sfc", ["priority=5,in_port=1,actions=drop", "priority=6,in_port=1,dl_src=00:00:00:00:00:01,actions=drop",
                            "table=1,priority=5,in_port=1,actions=drop", "priority=5,in_port=2,actions=drop"])
    # --strict without table= looks in every table; the more specific priority-6 flow is not identical.
    assert dp.del_flows("br-sfc", "in_port=1,priority=5", strict=True) == 2
    assert dp.del_flows("br-sfc", "table=0,in_port=1") == 1  # loose: covers the more specific flow
    assert dp.dump_flows("br-sfc", stats=False) == [" priority=5,in_port=2 actions=drop"]
    assert dp.del_flows("br-sfc") == 1  # everything that is left


def test_dump_flows_text_with_stats_timeouts_and_durations(dp: Datapath, clock: Clock) -> None:
    dp.add_flow("br-sfc", "cookie=0x24592fc503504d3,table=2,priority=20,idle_timeout=10,hard_timeout=60,"
                           "in_port=1,actions=output:2")
    clock.t += 1.25
    assert dp.dump_flows("br-sfc") == [
        " cookie=0x24592fc503504d3, duration=1.250s, table=2, n_packets=0, n_bytes=0, idle_timeout=10, "
        "hard_timeout=60, priority=20,in_port=1 actions=output:2"]
    assert dp.dump_flows("br-sfc", stats=False) == [
        " cookie=0x24592fc503504d3, table=2, idle_timeout=10, hard_timeout=60, priority=20,in_port=1 actions=output:2"]


def test_hard_timeout_expires_in_simulated_time(dp: Datapath, clock: Clock) -> None:
    dp.add_flow("br-sfc", "hard_timeout=5,in_port=1,actions=output:2")
    clock.t += 5
    assert len(dp.dump_flows("br-sfc")) == 1  # expiry is strictly after the timeout
    clock.t += 0.001
    assert dp.dump_flows("br-sfc") == []


def test_model_ovs_satisfies_the_core_port_and_keeps_existing_keys(dp: Datapath) -> None:
    ovs: Ovs = ModelOvs(dp)
    ovs.ensure_port("br-sfc", "pf0vf0", "dpdk", iface_external_ids={"dpf-id": "ns/a"}, ofport_request=9)
    ovs.ensure_port("br-sfc", "pf0vf0", "dpdk", iface_external_ids={"dpf-id": "ns/b", "x": "1"},
                    port_external_ids={"p": "q"})
    row = {r["name"]: r for r in ovs.ports("br-sfc")}["pf0vf0"]
    assert row["ofport"] == 9 and row["external_ids"] == {"dpf-id": "ns/a", "x": "1"}
    assert row["port_external_ids"] == {"p": "q"}
    ovs.delete_port("br-sfc", "pf0vf0")
    ovs.delete_port("br-sfc", "pf0vf0")  # tolerant of absence
    ovs.delete_port("br-gone", "x")
    assert "pf0vf0" not in {r["name"] for r in ovs.ports("br-sfc")}
    with pytest.raises(OvsError):
        ovs.ensure_port("br-gone", "x", "dpdk")
    assert ovs.dump_flows("br-sfc") == []


def test_find_interfaces_by_external_ids(dp: Datapath) -> None:
    dp.bridge("br-sfc").add_port("pf0vf1", "dpdk", iface_external_ids={"dpf-id": "ns/si"})
    found = dp.find_interfaces(**{"dpf-id": "ns/si"})
    assert [(b.name, i.name, i.ofport) for b, i in found] == [("br-sfc", "pf0vf1", 3)]
