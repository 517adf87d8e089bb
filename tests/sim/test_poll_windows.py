"""AwaitReboot in the twin: polls skipped while their answer cannot differ must change nothing.

The BlueField model waits out a run of RebootStatus polls that read before the DPU's flash or boot step ends
as one event. The claim is exactness: the same polls at the same times with the same answers as running them
one by one, so the same event log byte for byte, also when something disturbs a window (a host power cycle
mid-flash and mid-boot, a DMS fault while DPUs poll).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dpf_core.ports.dispatch import inline_composites
from dpf_core.ports.ops import AwaitReboot, DmsTarget, RebootStatusOp, RebootStatusResult, Sleep
from dpf_sim.runner import Runner
from dpf_sim.scenario import load_scenario_text

SAMPLES = Path(__file__).resolve().parents[2] / "samples"

# In the quickstart fleet (seed 1) the first DPU flashes from ~178 s to ~690 s and boots until ~825 s.
SCENARIO = f"""
name: poll-windows
seed: 1
fleet:
  racks: 1
  hosts_per_rack: 8
keepLog: true
{{models}}
timeline:
  - at: 0s
    apply:
      file: {SAMPLES / "provisioning.yaml"}
  - at: 400s
    power_cycle:
      host: worker-0-1
  - at: 750s
    power_cycle:
      host: worker-0-2
{{extra}}
expect:
  - await:
      name: settled
      kind: DPU
      phase: Ready
      count: {{ready}}
      within: 3h
"""

DMS_FAULT = """  - at: 500s
    fault:
      type: dmsSlow
      dpus: [worker-0-3-0000-04-00]
      delay: 5
      duration: 200
"""


def run(text: str, coalesce: bool) -> tuple[dict[str, Any], Runner]:
    runner = Runner(load_scenario_text(text), progress=False)
    runner.twin.bluefields.coalesce_polls = coalesce
    result = runner.run()
    return result.report, runner


# A random DMS latency: the window draws the polls' latencies ahead and a disturbance hands back the unused ones.
RANDOM_LATENCY = """models:
  blueField:
    dms_latency: {dist: uniform, low: 10ms, high: 90ms}"""


@pytest.mark.parametrize(("extra", "models"), [("", ""), (DMS_FAULT, ""), ("", RANDOM_LATENCY), (DMS_FAULT, RANDOM_LATENCY)],
                         ids=["power-cycles", "power-cycles-and-dms-fault", "random-latency", "random-latency-and-dms-fault"])
def test_skipping_polls_gives_the_same_run_as_polling_one_by_one(extra: str, models: str) -> None:
    text = SCENARIO.replace("{extra}", extra).replace("{ready}", "8").replace("{models}", models)
    skipped, world = run(text, coalesce=True)
    polled, reference = run(text, coalesce=False)
    assert world.twin.bluefields.polls_skipped > 500  # the windows really ran (until the fault, if any)
    assert reference.twin.bluefields.polls_skipped == 0
    assert world.twin.bluefields.windows_disturbed >= 2  # both power cycles cut a window short
    assert skipped["event_log_sha256"] == polled["event_log_sha256"]
    assert skipped["sim_seconds"] == polled["sim_seconds"]
    # Every poll still counts as a DMS call, skipped or not.
    assert world.twin.bluefields.ops == reference.twin.bluefields.ops
    assert skipped["expectations"] == polled["expectations"]
    # The power-cycled DPUs saw their DMS go away mid-install in both runs alike.
    installs = {n: b.installs for n, b in world.twin.bluefields.dpus.items()}
    assert installs == {n: b.installs for n, b in reference.twin.bluefields.dpus.items()}


def test_expansion_is_the_reference_loop() -> None:
    """Any world without a native handler runs AwaitReboot as Sleep + RebootStatus until not active."""
    target = DmsTarget(dpu="ns/d", address="10.0.0.1:9339", pci_address="0000:04:00")
    answers = [RebootStatusResult(True, "STATUS_UNKNOWN")] * 3 + [RebootStatusResult(False, "STATUS_SUCCESS")]

    def procedure() -> Any:
        result = yield AwaitReboot(target, interval=3.0, budget=1800.0)
        return result

    proc = inline_composites(procedure())
    ops: list[Any] = []
    send: Any = None
    it = iter(answers)
    try:
        while True:
            op = proc.send(send)
            ops.append(op)
            send = next(it) if isinstance(op, RebootStatusOp) else None
    except StopIteration as stop:
        assert stop.value == answers[-1]
    assert ops == [Sleep(3.0), RebootStatusOp(target)] * 4


def test_expansion_stops_at_the_budget_without_a_clock() -> None:
    target = DmsTarget(dpu="ns/d", address="10.0.0.1:9339", pci_address="0000:04:00")

    def procedure() -> Any:
        return (yield AwaitReboot(target, interval=3.0, budget=7.0))

    proc = inline_composites(procedure())
    polls = 0
    send: Any = None
    try:
        while True:
            op = proc.send(send)
            if isinstance(op, RebootStatusOp):
                polls += 1
                send = RebootStatusResult(True, "STATUS_UNKNOWN")
            else:
                send = None
    except StopIteration as stop:
        assert stop.value is None  # the budget ran out: the procedure reports the timeout
    assert polls == 3  # checks at 0, 3, 6 pass; 9 > 7 stops before a fourth sleep
