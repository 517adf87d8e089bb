"""The service-chain scenarios pass in the twin, and `dpf run` shows their packet traces."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dpf_cli.run import EXIT_OK, run_command
from dpf_sim.runner import RunResult, run_scenario
from dpf_sim.scenario import load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def _run(name: str) -> RunResult:
    result = run_scenario(load_scenario(SCENARIOS / f"{name}.yaml"), progress=False, series=False)
    failures = "\n".join(f"{o.name}: {o.detail}" for o in result.failures)
    assert result.passed, failures
    return result


def _detail(result: RunResult, name: str) -> str:
    return next(o.detail for o in result.outcomes if o.name == name)


def test_hbn_ovn_chains_on_50_provisioned_dpus_carry_packets_both_ways() -> None:
    result = _run("service-chain-hbn")
    assert result.report["dpus_by_phase"] == {"Ready": 50}
    traces = ["p0-to-hbn", "hbn-to-p0", "p1-to-hbn", "hbn-to-p1", "ovn-to-hbn", "hbn-to-ovn"]
    for name in traces:
        assert "as expected on 50 node(s)" in _detail(result, name)
    # The answers took the learned (priority 30) flows: the way back is known, not flooded.
    back = next(o for o in result.outcomes if o.name == "hbn-to-p0")
    assert any(" priority 30 " in line for line in back.lines)
    assert "100 pod address(es)" in _detail(result, "sound-ipam")


def test_cleanup_leaves_no_stale_cookie_nor_orphan_port_after_the_sweep() -> None:
    result = _run("service-chain-cleanup")
    clean = _detail(result, "no-stale-flows-or-ports")
    at = float(re.search(r"clean at t=([\d.]+)s", clean).group(1))  # type: ignore[union-attr]
    # The leftovers each DPU started with go only with the agent's first sweep, 60 s after it started.
    assert at >= 60.0
    assert "nothing left" in _detail(result, "mirrors-gone")


def test_ipam_on_100_nodes_grows_pools_without_moving_allocations() -> None:
    result = _run("ipam-100-nodes")
    assert "300 block(s), 300 pod address(es)" in _detail(result, "sound-allocations")
    assert "100 Pod in phase Running" in _detail(result, "all-pods-running")


@pytest.mark.parametrize("quiet", [False, True])
def test_dpf_run_prints_trace_results_readably(quiet: bool) -> None:
    out = run_command(SCENARIOS / "service-chain-cleanup.yaml", quiet=quiet)
    assert out.code == EXIT_OK, out.out + out.err
    text = "\n".join(out.out)
    if quiet:
        assert "path on" not in text and text.endswith("service-chain-cleanup: PASSED")
        return
    assert "PASS fabric-to-hbn: as expected on 10 node(s) at t=35.0s: br-sfc:p0 -> " in text
    assert "ok   pod interface p0_if  [10 node(s): dpu-node-001, dpu-node-002, dpu-node-003 (+7)]" in text
    assert "(ServiceChain hbn-to-fabric-dpu-node-001): in_port=1 -> learn(...),output:" in text
    assert "dropped: no match in bridge br-sfc table 0 (fail_mode=secure)" in text
