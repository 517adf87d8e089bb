"""The network's per-change work does not grow with the fleet, and the shortcuts give exactly what the full
computations give: tree paths equal networkx's shortest paths, the incremental utilisation record equals a scan
of every recorded link."""

from __future__ import annotations

import itertools
import random
from collections.abc import Generator
from typing import Any

import networkx as nx
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from dpf_sim.fleet import FleetSpec, build_fleet
from dpf_sim.net import Network, Transfer


class ScanningNetwork(Network):
    """The record as it was: every recorded link's aggregate rate recomputed on every change."""

    def _record(self, now: float) -> None:
        old = self._recorded_rate
        rates: dict[int, float] = {}
        for i in self._recorded_ids:
            on = self._on_link.get(i)
            if on:
                rate = sum(n * b.rate for b, n in on.items())
                if rate > 0:
                    rates[i] = rate
        for i in sorted(i for i in old.keys() | rates.keys() if old.get(i, 0.0) != rates.get(i, 0.0)):
            rate = rates.get(i, 0.0)
            self._states[i].rate = rate
            self.utilisation.append((now, self._names[i], rate))
        self._recorded_rate = rates
        self._rec_dirty.clear()


def test_tree_paths_are_the_shortest_paths_between_every_pair() -> None:
    fleet = build_fleet(FleetSpec(racks=3, hosts=13, bfb_servers=2, dpus_per_host=2))
    nodes = sorted(fleet.graph.nodes)
    for a in nodes:
        for b in nodes:
            want = nx.shortest_path(fleet.graph, a, b)
            assert fleet.path(a, b) == tuple(f"{x}->{y}" for x, y in itertools.pairwise(want))


def test_a_path_to_an_unknown_node_is_refused() -> None:
    fleet = build_fleet(FleetSpec())
    with pytest.raises(KeyError, match="no node 'nowhere'"):
        fleet.path("bfb-server-0", "nowhere")


def _workload(net: Network, env: simpy.Environment, seed: int, hosts: list[str]) -> None:
    rng = random.Random(seed)

    def one(delay: float, host: str, size: float, cap: float | None) -> Generator[Any, Any, None]:
        yield env.timeout(delay)
        t: Transfer = net.transfer("bfb-server-0", host, size, max_rate=cap)
        if rng.random() < 0.2:
            yield env.timeout(rng.uniform(0.1, 2.0))
            net.cancel(t)
        else:
            yield t

    def faults() -> Generator[Any, Any, None]:
        for _ in range(4):
            yield env.timeout(rng.uniform(0.5, 3.0))
            link = ("core", f"tor-{rng.randrange(3)}")
            net.set_link(link, factor=rng.choice([0.1, 0.5, 1.0]))

    for _ in range(60):
        cap = rng.choice([None, 2e8, 5e8, 2e7])
        env.process(one(rng.choice([0.0, 0.0, rng.uniform(0, 8)]), rng.choice(hosts), rng.uniform(1e8, 3e9), cap))
    env.process(faults())


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_the_incremental_record_equals_a_scan_of_every_recorded_link(seed: int) -> None:
    spec = FleetSpec(racks=3, hosts=12, bfb_server_uplink="10Gbit/s", tor_uplink="4Gbit/s")
    runs = []
    for cls in (Network, ScanningNetwork):
        env = simpy.Environment()
        net = cls(env, build_fleet(spec), record="all")
        _workload(net, env, seed, sorted(net.fleet.hosts))
        env.run()
        runs.append((list(net.utilisation), [s.rate for s in net._states], net.completed, net.cancelled))
    assert runs[0] == runs[1]
    assert runs[0][0], "the workload moved bytes"


def test_a_flow_start_touches_only_the_links_it_changes() -> None:
    # 40 racks, one flow per rack at a capped rate: each start re-records its own rack's links, not all 40.
    env = simpy.Environment()
    net = Network(env, build_fleet(FleetSpec(racks=40, hosts=80)), record="trunks")
    for r in range(40):
        net.transfer("bfb-server-0", f"worker-{r}-0", 1e9, max_rate=1e7)
        env.run(until=env.now + 1)
    # per start: the server's uplink and the rack's ToR downlink changed (2 samples), nothing else
    assert len(net.utilisation) == 2 * 40
    assert {link for _, link, _ in net.utilisation} == (
        {"bfb-server-0->core"} | {f"core->tor-{r}" for r in range(40)})
