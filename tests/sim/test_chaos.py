"""Chaos runs: scenarios/chaos.yaml on a small fleet for many seeds, and the chaos invariants themselves.

CI budget: the shipped scenario is 500 DPUs with 40 faults; here every seed runs the same file (same timeline,
same schedule generator, same expectations) on 12 hosts in 2 racks with 8 faults, so 20 seeds take about a
minute and a half. `dpf run scenarios/chaos.yaml --seed N` runs the full-size fleet (docs/reliability.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dpf_sim.runner import RunResult, run_scenario
from dpf_sim.scenario import LoadedScenario, load_scenario

CHAOS = Path(__file__).resolve().parents[2] / "scenarios" / "chaos.yaml"
CI_SEEDS = range(1, 21)
SMALL_FLEET = {"racks": 2, "hostsPerRack": 6}
SMALL_FAULTS = 8


def small(loaded: LoadedScenario, fleet: dict[str, Any] | None = None, count: int = SMALL_FAULTS) -> LoadedScenario:
    """The chaos scenario on a smaller fleet with fewer faults; everything else unchanged."""
    sc = loaded.scenario
    timeline = [s.model_copy(update={"fault": {**s.fault, "count": count}})
                if s.fault is not None and s.fault.get("type") == "chaos" else s for s in sc.timeline]
    loaded.scenario = sc.model_copy(update={"fleet": dict(fleet or SMALL_FLEET), "timeline": timeline})
    return loaded


def run_seed(seed: int, fleet: dict[str, Any] | None = None, count: int = SMALL_FAULTS) -> RunResult:
    return run_scenario(small(load_scenario(CHAOS), fleet, count), seed=seed, progress=False)


@pytest.mark.parametrize("seed", CI_SEEDS)
def test_the_fleet_converges_after_random_faults(seed: int) -> None:
    result = run_seed(seed)
    failures = [f"{o.name}: {o.detail}" for o in result.failures]
    assert result.passed, "\n".join(failures)
    names = {o.name for o in result.outcomes}
    assert {"converged", "rollout-budget", "nothing-lost", "flash-matches-spec"} <= names
