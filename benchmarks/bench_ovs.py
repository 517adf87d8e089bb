"""Programming 1,000 service chains into a real ovs-vswitchd: OpenFlow bundles versus one `ovs-ofctl add-flow` per
flow.

Each chain is one switch of three members, so three flows (DPF's flood + learn flows, text from the core's
`chain_flows`, cookie FNV-1a-64 of the chain's name): 3,000 flows in all. Three ways:
- `bundle_per_chain`: what the SFC agent does, one `ovs-ofctl --bundle add-flows` per chain (OvsdbOvs adapter);
- `one_bundle`: every chain's flows in one bundle (the floor: one process, one transaction);
- `add_flow_each`: one `ovs-ofctl add-flow` process per flow.
Every variant starts from an empty table and must leave exactly 3,000 flows.

Run: .venv/bin/pytest -q -s benchmarks/bench_ovs.py --benchmark-only  (needs root and openvswitch-switch; the
ratios are printed and stored in each benchmark's extra_info)
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from dpf_core.controllers.sfc import chain_cookie, chain_flows

CHAINS = 1000
MEMBERS = 3
BR = "br-sfc"
RESULTS: dict[str, float] = {}


@pytest.fixture(scope="module")
def switch() -> Iterator[Any]:
    from dpf_hw.fidelity_real import available, real_switch

    ok, why = available()
    if not ok:
        pytest.skip(f"needs a real Open vSwitch: {why}")
    with real_switch() as sw:
        sw.add_bridge(BR, "secure")
        yield sw


def all_flows() -> list[list[str]]:
    return [chain_flows(chain_cookie("bench", f"chain-{i}"), [str(MEMBERS * i + k + 1) for k in range(MEMBERS)])
            for i in range(CHAINS)]


def _target(sw: Any) -> str:
    return f"unix:{sw.daemons.directory / BR}.mgmt"


def _clear(sw: Any) -> None:
    subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "del-flows", _target(sw)], check=True)


def _count(sw: Any) -> int:
    return len(sw.flows(BR))


def _run(benchmark: Any, sw: Any, name: str, program: Any) -> None:
    started: list[float] = []

    def setup() -> None:
        _clear(sw)
        started.append(time.perf_counter())

    benchmark.pedantic(program, setup=setup, rounds=1, iterations=1)
    assert _count(sw) == CHAINS * MEMBERS
    RESULTS[name] = benchmark.stats.stats.mean
    benchmark.extra_info["flows"] = CHAINS * MEMBERS
    benchmark.extra_info["flows_per_second"] = round(CHAINS * MEMBERS / RESULTS[name])


def test_bundle_per_chain(benchmark: Any, switch: Any) -> None:
    flows = all_flows()

    def program() -> None:
        for chain in flows:
            switch.adapter.add_flows_bundle(BR, chain)

    _run(benchmark, switch, "bundle_per_chain", program)


def test_one_bundle(benchmark: Any, switch: Any) -> None:
    flows = [f for chain in all_flows() for f in chain]
    _run(benchmark, switch, "one_bundle", lambda: switch.adapter.add_flows_bundle(BR, flows))


def test_add_flow_each(benchmark: Any, switch: Any) -> None:
    flows = [f for chain in all_flows() for f in chain]
    target = _target(switch)

    def program() -> None:
        for f in flows:
            subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "-t", "5", "add-flow", target, f], check=True)

    _run(benchmark, switch, "add_flow_each", program)
    if {"bundle_per_chain", "one_bundle"} <= RESULTS.keys():
        per_flow = RESULTS["add_flow_each"]
        benchmark.extra_info["ratio_vs_bundle_per_chain"] = round(per_flow / RESULTS["bundle_per_chain"], 2)
        benchmark.extra_info["ratio_vs_one_bundle"] = round(per_flow / RESULTS["one_bundle"], 1)
        print(f"\n{CHAINS} chains ({CHAINS * MEMBERS} flows): add-flow per flow {per_flow:.2f}s, "
              f"bundle per chain {RESULTS['bundle_per_chain']:.2f}s "
              f"({per_flow / RESULTS['bundle_per_chain']:.2f}x faster), one bundle {RESULTS['one_bundle']:.3f}s "
              f"({per_flow / RESULTS['one_bundle']:.0f}x faster)")
