"""Shared by the services scenario tests: run a scenario file of scenarios/ and return the runner; cut a
scenario short before one of its steps."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from dpf_sim.runner import Runner, RunResult
from dpf_sim.scenario import LoadedScenario, load_scenario

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


def before_step(loaded: LoadedScenario, step: str) -> LoadedScenario:
    """Only the steps ahead of `step`, and the awaits and traces that do not wait for it or a later one (a run
    of the result ends once they are decided; a trace keeps it going until its time)."""
    scenario = loaded.scenario
    cut = next(s.at for s in scenario.timeline if s.name == step)
    # The steps are in time order, so the kept ones keep their indices (the loader's manifests are by index).
    steps = [s for s in scenario.timeline if s.at < cut]
    kept = {s.name for s in steps}
    expect = [e for e in scenario.expect
              if (spec := e.await_ or e.trace) is not None and (spec.after is None or spec.after in kept)]
    return dataclasses.replace(loaded, scenario=scenario.model_copy(update={"timeline": steps, "expect": expect}))


def run_passing(path: Path, *, before: str | None = None) -> tuple[Runner, RunResult]:
    """The scenario file at `path` run to its end, every expectation passed; with `before`, only the steps ahead
    of that step and the awaits that do not wait for it or a later one."""
    loaded = load_scenario(path)
    if before is not None:
        loaded = before_step(loaded, before)
    runner = Runner(loaded, progress=False, series=False)
    result = runner.run()
    assert result.passed, "\n".join(f"{o.name}: {o.detail}" for o in result.failures)
    return runner, result


@pytest.fixture
def quiet_logging() -> Iterator[None]:
    """The SFC agents log every chain pass that waits for a pod or misses an interface: a day-2 scenario's
    verdicts are what counts. Use with `pytestmark = pytest.mark.usefixtures("quiet_logging")`."""
    logging.disable(logging.ERROR)
    yield
    logging.disable(logging.NOTSET)
