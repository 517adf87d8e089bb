"""Fleet provisioning through the whole controller core in the twin: 1,000 and 10,000 DPUs from empty to Ready.

Run: .venv/bin/pytest -q benchmarks/bench_fleet.py --benchmark-only
     .venv/bin/python benchmarks/bench_fleet.py scenarios/fleet-10k.yaml   # one run, numbers printed as JSON

Each benchmark runs the shipped scenario (scenarios/provision-fleet-1000.yaml, scenarios/fleet-10k.yaml) and
records in extra_info what docs/performance.md reports: wall and CPU seconds, simulated seconds, speedup,
reconciles (total and per controller), events, peak RSS. The scenario must pass (every DPU Ready, no DPU
flashed twice at once); timings are never asserted (issue 3's target, fleet-10k <= 60 s wall, is read off
the numbers).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dpf_sim.runner import run_scenario
from dpf_sim.scenario import load_scenario

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


def run_fleet(path: Path) -> dict[str, Any]:
    """Run one scenario; the report's key numbers plus CPU seconds and peak RSS of this process."""
    loaded = load_scenario(path)
    cpu = time.process_time()
    result = run_scenario(loaded, progress=False)
    cpu = time.process_time() - cpu
    report = result.report
    failures = [o.detail for o in result.failures]
    assert not failures, failures
    return {
        "scenario": report["scenario"],
        "wall_seconds": report["wall_seconds"],
        "cpu_seconds": round(cpu, 3),
        "sim_seconds": report["sim_seconds"],
        "speedup": report["speedup"],
        "reconciles": report["reconciles"]["total"],
        "reconciles_by_controller": report["reconciles"]["by_controller"],
        "events": report["events"],
        "dpus_by_phase": report["dpus_by_phase"],
        "time_to_ready": report["dpu_time_to_ready"],
        # ru_maxrss is KiB on Linux; the high-water mark of the whole process, so the 10k round is run last.
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "event_log_sha256": report["event_log_sha256"],
    }


def _bench(benchmark: Any, name: str, dpus: int, rounds: int) -> None:
    numbers: dict[str, Any] = {}

    def once() -> None:
        numbers.update(run_fleet(SCENARIOS / name))

    benchmark.pedantic(once, rounds=rounds, iterations=1)
    benchmark.extra_info.update(numbers)
    assert numbers["dpus_by_phase"] == {"Ready": dpus}


@pytest.mark.benchmark(group="fleet")
def test_provision_fleet_1000(benchmark: Any) -> None:
    _bench(benchmark, "provision-fleet-1000.yaml", 1000, rounds=1)


@pytest.mark.benchmark(group="fleet")
def test_fleet_10k(benchmark: Any) -> None:
    _bench(benchmark, "fleet-10k.yaml", 10_000, rounds=1)


if __name__ == "__main__":
    for arg in sys.argv[1:] or [str(SCENARIOS / "provision-fleet-1000.yaml")]:
        print(json.dumps(run_fleet(Path(arg)), indent=1))
