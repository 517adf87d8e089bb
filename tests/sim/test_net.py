"""Bandwidth sharing: max-min fairness, exact completion times, faults, counters, scale."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest
import simpy

from dpf_sim.fleet import FleetSpec, build_fleet
from dpf_sim.net import Network, Transfer, TransferCancelled

GBPS10 = 1.25e9  # 10 Gbit/s in bytes/s: the default BFB server uplink


def make(record: Any = "trunks", **spec: Any) -> tuple[simpy.Environment, Network]:
    env = simpy.Environment()
    return env, Network(env, build_fleet(FleetSpec(**spec)), record=record)


def at(env: simpy.Environment, t: float, fn: Any) -> None:
    def proc() -> Generator[Any, Any, None]:
        yield env.timeout(t)
        fn()

    env.process(proc())


def test_one_flow_runs_at_the_bottleneck_rate() -> None:
    env, net = make(racks=1, hosts_per_rack=1)
    t = net.transfer("bfb-server-0", "worker-0-0", 2 * GBPS10)
    env.run()
    assert t.ok and t.finished == pytest.approx(2.0)


def test_two_flows_on_one_link_each_get_half() -> None:
    env, net = make(racks=1, hosts_per_rack=2)
    a = net.transfer("bfb-server-0", "worker-0-0", GBPS10)
    b = net.transfer("bfb-server-0", "worker-0-1", GBPS10)
    env.run(until=0.5)
    assert a.rate == pytest.approx(GBPS10 / 2)
    assert b.rate == pytest.approx(GBPS10 / 2)
    env.run()
    assert a.finished == pytest.approx(2.0)
    assert b.finished == pytest.approx(2.0)


def test_the_survivor_speeds_up_when_the_other_flow_ends() -> None:
    env, net = make(racks=1, hosts_per_rack=2)
    small = net.transfer("bfb-server-0", "worker-0-0", GBPS10)
    big = net.transfer("bfb-server-0", "worker-0-1", 2 * GBPS10)
    env.run()
    # Both at half until t=2 (small done, big half done), then big alone at full rate for 1 s.
    assert small.finished == pytest.approx(2.0)
    assert big.finished == pytest.approx(3.0)


def test_a_late_starter_takes_its_share_from_then_on() -> None:
    env, net = make(racks=1, hosts_per_rack=2)
    first = net.transfer("bfb-server-0", "worker-0-0", 2 * GBPS10)
    late: list[Transfer] = []
    at(env, 1.0, lambda: late.append(net.transfer("bfb-server-0", "worker-0-1", GBPS10 / 2)))
    env.run()
    # first: 1 s alone (1.25e9 B), then half rate; late needs 0.625e9 at half rate -> 1 s -> t=2;
    # first then has 2.5e9 - 1.25e9 - 0.625e9 = 0.625e9 left at full rate -> t=2.5.
    assert late[0].finished == pytest.approx(2.0)
    assert first.finished == pytest.approx(2.5)


def test_a_flow_bottlenecked_elsewhere_leaves_the_rest_to_the_other() -> None:
    # worker-0-0's DPU link is 1 Gbit/s: the flow into the DPU can never use its half of the server uplink,
    # so max-min gives the other flow everything that is left, not half.
    env, net = make(racks=1, hosts_per_rack=2, dpu_link="1Gbit/s")
    slow = net.transfer("bfb-server-0", "worker-0-0-0000-04-00", 1.25e8)
    fast = net.transfer("bfb-server-0", "worker-0-1", 1.125e9)
    env.run(until=0.1)
    assert slow.rate == pytest.approx(1.25e8)
    assert fast.rate == pytest.approx(GBPS10 - 1.25e8)
    env.run()
    assert slow.finished == pytest.approx(1.0)
    assert fast.finished == pytest.approx(1.0)


def test_a_rate_cap_is_a_private_bottleneck() -> None:
    env, net = make(racks=1, hosts_per_rack=2)
    capped = net.transfer("bfb-server-0", "worker-0-0", 2.5e8, max_rate=2.5e8)
    free = net.transfer("bfb-server-0", "worker-0-1", 1.0e9)
    env.run(until=0.1)
    assert capped.rate == pytest.approx(2.5e8)
    assert free.rate == pytest.approx(1.0e9)
    env.run()
    assert capped.finished == pytest.approx(1.0)
    assert free.finished == pytest.approx(1.0)


def test_max_min_on_a_chain_of_bottlenecks() -> None:
    # Server uplink 6 Gbit/s (7.5e8 B/s), ToR uplinks 4 Gbit/s (5e8 B/s). Three flows into rack 0 are held
    # to 5e8/3 by their ToR; the one flow into rack 1 gets the server's remainder, 7.5e8 - 5e8 = 2.5e8,
    # more than an equal split of the server link (7.5e8/4) would give it.
    env, net = make(racks=2, hosts_per_rack=3, tor_uplink="4Gbit/s", bfb_server_uplink="6Gbit/s")
    rack0 = [net.transfer("bfb-server-0", f"worker-0-{i}", 1e9) for i in range(3)]
    other = net.transfer("bfb-server-0", "worker-1-0", 1e9)
    env.run(until=0.01)
    for t in rack0:
        assert t.rate == pytest.approx(5e8 / 3)
    assert other.rate == pytest.approx(2.5e8)


def test_link_down_stalls_the_flow_and_up_resumes_it() -> None:
    env, net = make(racks=1, hosts_per_rack=1)
    t = net.transfer("bfb-server-0", "worker-0-0", 2 * GBPS10)
    at(env, 1.0, lambda: net.set_link(("core", "tor-0"), up=False))
    at(env, 3.0, lambda: net.set_link(("core", "tor-0"), up=True))
    env.run(until=2.0)
    assert t.rate == 0.0
    assert t.transferred == pytest.approx(GBPS10)
    assert not t.triggered
    env.run()
    assert t.finished == pytest.approx(4.0)


def test_a_flow_stays_stalled_while_the_link_is_down() -> None:
    env, net = make(racks=1, hosts_per_rack=1)
    net.set_link("core->tor-0", up=False)
    t = net.transfer("bfb-server-0", "worker-0-0", GBPS10)
    env.run(until=1000)
    assert not t.triggered and t.transferred == 0.0


def test_degraded_link_runs_at_its_factor() -> None:
    env, net = make(racks=1, hosts_per_rack=1)
    net.set_link(("bfb-server-0", "core"), factor=0.5)
    t = net.transfer("bfb-server-0", "worker-0-0", GBPS10)
    env.run()
    assert t.finished == pytest.approx(2.0)


def test_links_are_full_duplex() -> None:
    env, net = make(racks=1, hosts_per_rack=1)
    down = net.transfer("bfb-server-0", "worker-0-0", GBPS10)
    up = net.transfer("worker-0-0", "bfb-server-0", GBPS10)
    env.run()
    assert down.finished == pytest.approx(1.0) and up.finished == pytest.approx(1.0)


def test_cancel_gives_the_bandwidth_back() -> None:
    env, net = make(racks=1, hosts_per_rack=2)
    a = net.transfer("bfb-server-0", "worker-0-0", 2 * GBPS10)
    b = net.transfer("bfb-server-0", "worker-0-1", 2 * GBPS10)
    at(env, 2.0, lambda: net.cancel(b))
    env.run()
    assert b.cancelled and not b.ok and isinstance(b.value, TransferCancelled)
    assert b.transferred == pytest.approx(GBPS10)
    # a: 2 s at half (1.25e9), then 1.25e9 alone at full rate -> t=3.
    assert a.finished == pytest.approx(3.0)
    assert net.cancelled == 1 and net.completed == 1


def test_zero_bytes_and_local_copies_are_instant() -> None:
    _env, net = make(racks=1, hosts_per_rack=1)
    assert net.transfer("bfb-server-0", "worker-0-0", 0).triggered
    assert net.transfer("worker-0-0", "worker-0-0", 10**9).triggered


def test_byte_counters_and_utilisation_series() -> None:
    env, net = make("all", racks=1, hosts_per_rack=2)
    net.transfer("bfb-server-0", "worker-0-0", GBPS10)
    net.transfer("bfb-server-0", "worker-0-1", 2 * GBPS10)
    env.run()
    counters = net.link_bytes()
    assert counters["bfb-server-0->core"] == pytest.approx(3 * GBPS10)
    assert counters["tor-0->worker-0-0"] == pytest.approx(GBPS10)
    assert counters["tor-0->worker-0-1"] == pytest.approx(2 * GBPS10)
    assert "core->bfb-server-0" not in counters
    server = [(t, r) for t, link, r in net.utilisation if link == "bfb-server-0->core"]
    assert server[0][0] == 0.0 and server[0][1] == pytest.approx(GBPS10)
    assert server[-1][0] == pytest.approx(3.0) and server[-1][1] == 0.0
    w0 = [(t, r) for t, link, r in net.utilisation if link == "tor-0->worker-0-0"]
    assert [t for t, _ in w0] == pytest.approx([0.0, 2.0]) and [r for _, r in w0] == pytest.approx([GBPS10 / 2, 0.0])


def test_default_series_covers_trunk_links_only() -> None:
    env, net = make(racks=1, hosts_per_rack=1)
    net.transfer("bfb-server-0", "worker-0-0-0000-04-00", GBPS10)
    env.run()
    assert {link for _, link, _ in net.utilisation} == {"bfb-server-0->core", "core->tor-0"}
    assert net.link_bytes()["worker-0-0->worker-0-0-0000-04-00"] == pytest.approx(GBPS10)


def test_simultaneous_starts_are_one_recompute() -> None:
    env, net = make(racks=1, hosts_per_rack=4)
    for i in range(4):
        net.transfer("bfb-server-0", f"worker-0-{i}", GBPS10)
    env.run()
    # One recompute for the four starts, one for the four simultaneous completions.
    assert net.recomputes == 2
    assert net.completed == 4


def test_hundreds_of_concurrent_flows_and_thousands_of_transfers() -> None:
    env, net = make(racks=10, hosts_per_rack=30)
    hosts = list(net.fleet.hosts)
    size = 1e8
    done: list[float] = []

    def client(i: int) -> Generator[Any, Any, None]:
        yield env.timeout(i * 0.001)
        for _ in range(3):
            t = net.transfer("bfb-server-0", hosts[i], size)
            yield t
            done.append(env.now)

    for i in range(len(hosts)):
        env.process(client(i))
    env.run()
    assert len(done) == 3 * len(hosts)
    assert net.max_concurrent >= 300
    # The server uplink is the only bottleneck and never idles: the last byte arrives when the total would
    # at full rate (plus the 0.3 s of staggered starts at most).
    total = 3 * len(hosts) * size
    assert max(done) == pytest.approx(total / GBPS10, abs=0.5)
    assert net.link_bytes()["bfb-server-0->core"] == pytest.approx(total)
