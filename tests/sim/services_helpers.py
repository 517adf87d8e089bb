"""Shared by the services scenario tests: run a scenario file of scenarios/ and return the runner."""

from __future__ import annotations

import logging
from pathlib import Path

from dpf_sim.runner import Runner
from dpf_sim.scenario import load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
DPU_CLUSTER = "dpu-cplane-tenant1/dpu-cplane-tenant1"


def run(name: str) -> Runner:
    # The DPUService controller logs every pass that finds a DPU cluster still being created (as DPF does).
    logging.getLogger("dpf").setLevel(logging.CRITICAL)
    runner = Runner(load_scenario(SCENARIOS / name), progress=False)
    result = runner.run()
    failed = [f"{o.name}: {o.detail}" for o in result.outcomes if not o.passed]
    assert not failed, "\n".join(failed)
    return runner
