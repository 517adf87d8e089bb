"""The scenario runner: timeline timing, awaits, invariants stopping the run, the report, `dpf run`.

The twin may or may not run controllers; these tests act on objects no controller changes in ways that
matter here (labels, Secrets, status patches observed at the moment they are made), so they hold either way.
"""

from __future__ import annotations

import io
import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from typer.testing import CliRunner

from dpf_cli.main import app
from dpf_core.api.external import Node, Secret
from dpf_core.api.provisioning import DPU, DPUSET_NAME_LABEL, DPUSET_NAMESPACE_LABEL, DPUSet
from dpf_core.store.protocol import WatchEvent
from dpf_sim.expect import (
    AwaitCheck,
    Check,
    Invariant,
    MaxUnavailable,
    SingleFlash,
    make_await,
    register_invariant,
    unregister_invariant,
)
from dpf_sim.runner import PhaseTracker, Runner, percentiles, run_scenario
from dpf_sim.scenario import AwaitSpec, InvariantSpec, LoadedScenario, ScenarioError, load_scenario
from dpf_sim.twin import Twin

NS = "dpf-operator-system"
BFB = f"""\
apiVersion: provisioning.dpu.nvidia.com/v1alpha1
kind: BFB
metadata: {{name: bf-bundle, namespace: {NS}}}
spec: {{url: "http://bfb.example/bf-bundle-2.9.1.bfb"}}
"""


def scenario(tmp_path: Path, text: str) -> LoadedScenario:
    (tmp_path / "bfb.yaml").write_text(BFB)
    path = tmp_path / "scenario.yaml"
    path.write_text(textwrap.dedent(text))
    return load_scenario(path)


def lines_at(twin: Twin, needle: str) -> list[str]:
    """The time stamps of event log lines containing `needle`."""
    return [line.split(" ", 1)[0] for line in twin.log.lines if needle in line]


BASIC = f"""\
    name: basic
    seed: 11
    timeline:
      - at: 5m
        name: label
        patch: {{kind: BFB, namespace: {NS}, name: bf-bundle, patch: {{metadata: {{labels: {{stage: done}}}}}}}}
      - at: 0s
        apply: {{file: bfb.yaml}}
      - at: 2m
        apply:
          manifests:
            - {{apiVersion: v1, kind: Secret, metadata: {{name: s1, namespace: {NS}}}}}
      - at: 3m
        patch: {{kind: BFB, namespace: {NS}, name: bf-bundle, subresource: status, patch: {{status: {{phase: Error}}}}}}
      - at: 4m
        delete: {{kind: Secret, namespace: {NS}, name: s1}}
    expect:
      - await: {{name: labelled, kind: BFB, namespace: {NS}, selector: stage=done, count: 1, within: 10m}}
      - await: {{name: two-secrets, kind: Secret, namespace: {NS}, names: [s1, s2], within: 150s}}
"""


def test_timeline_steps_run_at_their_times_in_time_order(tmp_path: Path) -> None:
    runner = Runner(scenario(tmp_path, BASIC), progress=False)
    result = runner.run()
    twin = runner.twin
    assert lines_at(twin, f"ADDED BFB {NS}/bf-bundle") == ["0.000"]
    assert lines_at(twin, f"ADDED Secret {NS}/s1") == ["120.000"]
    # The status patch is observed as written, whatever a BFB controller does next.
    assert any(line.startswith("180.000 host MODIFIED BFB") and "phase=Error" in line for line in twin.log.lines)
    assert lines_at(twin, f"DELETED Secret {NS}/s1") == ["240.000"]
    steps = [line for line in twin.log.lines if " scenario step " in line]
    assert [s.split(" ")[0] for s in steps] == ["0.000", "120.000", "180.000", "240.000", "300.000"]
    assert steps[-1].endswith(f"scenario step 0 (label): patch BFB {NS}/bf-bundle")
    assert result.report["sim_seconds"] == 300.0  # ends once every await is decided and the last step ran


def test_an_await_passes_and_another_misses_its_deadline(tmp_path: Path) -> None:
    result = run_scenario(scenario(tmp_path, BASIC), progress=False)
    by_name = {o.name: o for o in result.outcomes}
    assert by_name["labelled"].passed
    assert "reached at t=300.0s" in by_name["labelled"].detail
    missed = by_name["two-secrets"]
    assert not missed.passed
    assert "not reached within 150s" in missed.detail
    assert missed.offending == ["s2 (missing)"]
    assert not result.passed and result.report["passed"] is False
    assert result.report["stopped_by"] == "all expectations decided"


def test_a_refused_step_is_a_failed_expectation_not_a_crash(tmp_path: Path) -> None:
    loaded = scenario(tmp_path, f"""\
        timeline:
          - at: 10s
            delete: {{kind: BFB, namespace: {NS}, name: nothing-here}}
          - at: 20s
            patch: {{kind: BFB, namespace: {NS}, name: nothing-here, patch: {{metadata: {{labels: {{a: b}}}}}}}}
          - at: 30s
            apply: {{file: bfb.yaml}}
        """)
    result = run_scenario(loaded, progress=False)
    failed = {o.name: o.detail for o in result.failures}
    assert set(failed) == {"step 0", "step 1"}
    assert failed["step 0"].startswith("step 0 failed: ") and "not found" in failed["step 0"]
    assert result.report["sim_seconds"] == 30.0  # the later step still ran


def test_until_ends_the_run_and_undecided_awaits_fail(tmp_path: Path) -> None:
    loaded = scenario(tmp_path, f"""\
        until: 30s
        timeline: [{{at: 0s, apply: {{file: bfb.yaml}}}}]
        expect:
          - await: {{name: never, kind: Secret, namespace: {NS}, names: [x], within: 1h}}
        """)
    result = run_scenario(loaded, progress=False)
    (o,) = [x for x in result.outcomes if not x.name.startswith("always:")]
    assert not o.passed and "not reached when the run ended at t=30.0s" in o.detail
    assert result.report["stopped_by"] == "until 30s" and result.report["sim_seconds"] == 30.0
    overridden = run_scenario(loaded, until=10.0, progress=False)
    assert overridden.report["sim_seconds"] == 10.0


class _NoBadSecrets(Invariant):
    kinds = (Secret,)

    def on_event(self, store: str, ev: WatchEvent) -> None:
        self.events += 1
        if ev.type != "DELETED" and ev.object.metadata.labels.get("bad") == "true":
            self.violate("a Secret is labelled bad", [ev.object.name])


@pytest.fixture
def no_bad_secrets() -> Iterator[None]:
    register_invariant("testNoBadSecrets")(_NoBadSecrets)
    yield
    unregister_invariant("testNoBadSecrets")


def test_a_violated_invariant_stops_the_run_with_history(tmp_path: Path, no_bad_secrets: None) -> None:
    loaded = scenario(tmp_path, f"""\
        timeline:
          - at: 0s
            apply:
              manifests: [{{apiVersion: v1, kind: Secret, metadata: {{name: s, namespace: {NS}}}}}]
          - at: 2m
            patch: {{kind: Secret, namespace: {NS}, name: s, patch: {{metadata: {{labels: {{bad: "true"}}}}}}}}
          - at: 20m
            apply: {{file: bfb.yaml}}
        expect:
          - invariant: {{name: clean, type: testNoBadSecrets}}
          - await: {{name: slow, kind: Secret, namespace: {NS}, names: [never], within: 1h}}
        """)
    result = run_scenario(loaded, progress=False)
    report = result.report
    assert report["sim_seconds"] == 120.0
    assert report["stopped_by"] == "invariant clean violated"
    clean = next(o for o in result.outcomes if o.name == "clean")
    assert not clean.passed
    assert clean.detail == "violated at t=120.0s: a Secret is labelled bad: s"
    assert clean.offending == ["s"]
    assert any("scenario step 1: patch Secret" in line for line in clean.history)
    assert clean.history[-1].startswith("120.000 host MODIFIED Secret")
    entry = next(e for e in report["expectations"] if e["name"] == "clean")
    assert entry["history"] == clean.history
    # The await never got its chance: the run ended first, and says so.
    slow = next(o for o in result.outcomes if o.name == "slow")
    assert not slow.passed and "run ended at t=120.0s" in slow.detail


def test_no_leftovers_tracks_objects_owned_by_what_the_step_deleted(tmp_path: Path) -> None:
    loaded = scenario(tmp_path, f"""\
        timeline:
          - at: 1m
            name: remove
            delete: {{kind: Secret, namespace: {NS}, name: owner}}
        expect:
          - invariant: {{name: clean-up, type: noLeftovers, after: remove, within: 5m, params: {{kinds: [BFB]}}}}
        """)
    runner = Runner(loaded, progress=False)
    owner = runner.twin.host.create(Secret.new("owner", NS))
    ref = {"apiVersion": "v1", "kind": "Secret", "name": "owner", "uid": owner.metadata.uid}
    runner.twin.host.create(Secret.new("free", NS, metadata={"name": "free", "namespace": NS, "ownerReferences": [ref]}))
    runner.twin.host.create(Secret.new("held", NS, metadata={
        "name": "held", "namespace": NS, "ownerReferences": [ref], "finalizers": ["example.com/hold"]}))
    result = runner.run()
    (o,) = [x for x in result.outcomes if not x.name.startswith("always:")]
    assert not o.passed
    assert o.offending == [f"Secret {NS}/held"]
    assert o.detail.startswith("1 object(s) left 300s after the step")
    assert result.report["sim_seconds"] == 360.0
    # Without the finalizer the garbage collector takes everything and the check passes at once.
    runner = Runner(loaded, progress=False)
    owner = runner.twin.host.create(Secret.new("owner", NS))
    ref["uid"] = owner.metadata.uid
    runner.twin.host.create(Secret.new("free", NS, metadata={"name": "free", "namespace": NS, "ownerReferences": [ref]}))
    result = runner.run()
    assert result.passed and result.report["sim_seconds"] == 60.0


def test_same_seed_same_event_log_hash(tmp_path: Path) -> None:
    loaded = scenario(tmp_path, BASIC)
    a = run_scenario(loaded, progress=False).report
    b = run_scenario(loaded, progress=False).report
    assert a["event_log_sha256"] == b["event_log_sha256"] and a["events"] == b["events"] > 0
    assert a["seed"] == 11 and run_scenario(loaded, seed=12, progress=False).report["seed"] == 12
    for key in ("scenario", "seed", "sim_seconds", "wall_seconds", "speedup", "events", "reconciles", "store_calls",
                "dpu_phase_durations", "dpus_by_phase", "expectations", "event_log_sha256"):
        assert key in a
    assert [e["name"] for e in a["expectations"] if not e["name"].startswith("always:")] == ["labelled", "two-secrets"]
    json.dumps(a)


def test_progress_bar_is_drawn_when_asked(tmp_path: Path) -> None:
    stream = io.StringIO()
    run_scenario(scenario(tmp_path, BASIC), progress=True, stream=stream)
    text = stream.getvalue()
    assert text.startswith("\r") and text.endswith("\n")
    assert "t=0:05:00" in text and "events" in text
    quiet = io.StringIO()
    run_scenario(scenario(tmp_path, BASIC), progress=False, stream=quiet)
    assert quiet.getvalue() == ""


# --- DPU phases ----------------------------------------------------------------------------------------------


def dpu(name: str, node: str = "n0", phase: str = "Initializing", ready: bool | None = None, dpuset: str | None = "ds",
        deleting: bool = False) -> DPU:
    md: dict[str, Any] = {"name": name, "namespace": NS, "labels": {}}
    if dpuset:
        md["labels"] = {DPUSET_NAME_LABEL: dpuset, DPUSET_NAMESPACE_LABEL: NS}
    if deleting:
        md["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    status: dict[str, Any] = {"phase": phase}
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False",
                                 "lastTransitionTime": "2025-01-01T00:00:00Z", "reason": "x"}]
    return DPU.model_validate({"apiVersion": DPU.KIND.api_version, "kind": "DPU", "metadata": md,
                               "spec": {"nodeName": node, "bfb": "bf-bundle"}, "status": status})


def test_phase_tracker_counts_phases_and_durations() -> None:
    t = PhaseTracker()
    t.on_event(WatchEvent("ADDED", dpu("a")), 0.0)
    t.on_event(WatchEvent("ADDED", dpu("b")), 0.0)
    t.on_event(WatchEvent("MODIFIED", dpu("a", phase="Pending")), 10.0)
    t.on_event(WatchEvent("MODIFIED", dpu("a", phase="Pending")), 12.0)  # no phase change: no new sample
    t.on_event(WatchEvent("MODIFIED", dpu("a", phase="Ready")), 30.0)
    t.on_event(WatchEvent("MODIFIED", dpu("b", phase="Ready")), 40.0)
    assert t.snapshot() == {"Ready": 2}
    assert t.durations == {"Initializing": [10.0, 40.0], "Pending": [20.0]}
    assert sorted(t.time_to_ready) == [30.0, 40.0]
    t.on_event(WatchEvent("DELETED", dpu("a", phase="Ready")), 50.0)
    assert t.snapshot() == {"Ready": 1} and t.durations["Ready"] == [20.0]


def test_percentiles_are_nearest_rank() -> None:
    assert percentiles([]) == {"count": 0}
    got = percentiles([float(x) for x in range(1, 101)])
    assert got == {"count": 100, "p50": 50.0, "p90": 90.0, "p99": 99.0, "max": 100.0}


def test_await_condition_fields_and_counts_are_incremental() -> None:
    def check(**spec: Any) -> AwaitCheck:
        c = make_await(AwaitSpec.model_validate({"name": "a", "kind": "DPU", "within": 60, **spec}))
        c.bind(Twin())
        c.activate([])
        return c

    new = check(condition="Ready=True", fields={"spec.bfb": "bf-2"}, count=">=2")
    feed(new, ("ADDED", dpu("d0", ready=True)), ("ADDED", dpu("d1", ready=True)))  # old BFB: out of scope
    assert new.passed is None and not new.in_scope
    d2 = dpu("d2", ready=True)
    d2.spec.bfb = "bf-2"
    d3 = dpu("d3", ready=False)
    d3.spec.bfb = "bf-2"
    feed(new, ("ADDED", d2), ("ADDED", d3))
    assert new.passed is None and new.satisfied == {(NS, "d2")}
    d3.status.conditions[0].status = "True"
    feed(new, ("MODIFIED", d3))
    assert new.passed is True and "2 object(s)" in new.detail
    # "all" needs every object in scope at that moment; a deletion takes one out of scope.
    every = check(phase="Ready", namespace=NS)
    feed(every, ("ADDED", dpu("d1")), ("ADDED", dpu("d0", phase="Ready")))
    assert every.passed is None and every.in_scope == {(NS, "d0"), (NS, "d1")}
    feed(every, ("DELETED", dpu("d1")))
    assert every.passed is True
    exact = check(phase="Error", count=0)
    assert exact.passed is True  # nothing in Error: reached at once


# --- invariants fed directly --------------------------------------------------------------------------------


def node(name: str, role: str = "dpu") -> Node:
    return Node.model_validate({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"role": role}}})


def dpuset(max_unavailable: int | str, strategy: str = "RollingUpdate") -> DPUSet:
    spec: dict[str, Any] = {"nodeSelector": {"matchLabels": {"role": "dpu"}}, "strategy": {"type": strategy}}
    if strategy == "RollingUpdate":
        spec["strategy"]["rollingUpdate"] = {"maxUnavailable": max_unavailable}
    return DPUSet.model_validate({"apiVersion": DPUSet.KIND.api_version, "kind": "DPUSet",
                                  "metadata": {"name": "ds", "namespace": NS}, "spec": spec})


def feed(inv: Check, *events: tuple[str, Any]) -> None:
    for etype, obj in events:
        inv.on_event("host", WatchEvent(etype, obj))  # type: ignore[arg-type]


def max_unavailable(max_u: int | str, strategy: str = "RollingUpdate", nodes: int = 4) -> MaxUnavailable:
    inv = MaxUnavailable(InvariantSpec(name="budget", type="maxUnavailable"))
    inv.bind(Twin())
    inv.activate([])
    feed(inv, *[("ADDED", node(f"n{i}")) for i in range(nodes)], ("ADDED", node("other", role="x")),
         ("ADDED", dpuset(max_u, strategy)))
    return inv


def test_max_unavailable_counts_only_dpus_that_were_ready() -> None:
    inv = max_unavailable("25%")  # 25% of 4 selected nodes -> 1
    # A first rollout: DPUs that never were Ready are free to be down or deleted.
    feed(inv, *[("ADDED", dpu(f"d{i}", f"n{i}", ready=False)) for i in range(4)])
    feed(inv, ("DELETED", dpu("d3", "n3", ready=False)), ("ADDED", dpu("d3", "n3", ready=False)))
    assert inv.passed is None
    feed(inv, *[("MODIFIED", dpu(f"d{i}", f"n{i}", phase="Ready", ready=True)) for i in range(4)])
    feed(inv, ("MODIFIED", dpu("d0", "n0", ready=False)))  # one down: within budget
    assert inv.passed is None
    feed(inv, ("MODIFIED", dpu("d0", "n0", phase="Ready", ready=True)))
    feed(inv, ("MODIFIED", dpu("d1", "n1", ready=True, deleting=True)), ("DELETED", dpu("d1", "n1", ready=True)))
    assert inv.passed is None  # deleting, then gone: still one
    feed(inv, ("MODIFIED", dpu("d2", "n2", ready=False)))
    assert inv.passed is False
    assert "2 DPUs unavailable" in inv.detail and "allows 1 of 4 node(s)" in inv.detail
    assert inv.offending == [f"{NS}/d1 (gone, node n1)", f"{NS}/d2 (not Ready, node n2)"]


def test_max_unavailable_budget_scales_and_ignores_recreate_and_deselected_nodes() -> None:
    inv = max_unavailable(2)
    feed(inv, *[("ADDED", dpu(f"d{i}", f"n{i}", phase="Ready", ready=True)) for i in range(4)])
    feed(inv, ("DELETED", dpu("d0", "n0")), ("DELETED", dpu("d1", "n1")))
    assert inv.passed is None
    # n2 leaves the selection: its DPU going away is not a rollout casualty.
    feed(inv, ("MODIFIED", node("n2", role="x")), ("DELETED", dpu("d2", "n2")))
    assert inv.passed is None
    recreate = max_unavailable(1, strategy="Recreate")
    feed(recreate, *[("ADDED", dpu(f"d{i}", f"n{i}", ready=True)) for i in range(4)])
    feed(recreate, *[("DELETED", dpu(f"d{i}", f"n{i}")) for i in range(4)])
    assert recreate.passed is None
    ten = max_unavailable("15%", nodes=10)
    assert ten.budget(ten.sets[(NS, "ds")]) == 2  # 1.5 rounded up
    tiny = max_unavailable("1%", nodes=3)
    assert tiny.budget(tiny.sets[(NS, "ds")]) == 1


def test_single_flash_uses_the_bluefield_models() -> None:
    spec = InvariantSpec(name="one-flash", type="singleFlash")
    with pytest.raises(ScenarioError, match="singleFlash is unavailable"):
        SingleFlash(spec).bind(SimpleNamespace())  # type: ignore[arg-type]
    twin = Twin()
    blue = {"d0": SimpleNamespace(name="d0", max_flashing=1), "d1": SimpleNamespace(name="d1", max_flashing=1)}
    cast(Any, twin).bluefields = SimpleNamespace(dpus=blue)
    inv = SingleFlash(spec)
    inv.bind(twin)
    inv.activate([])
    feed(inv, ("MODIFIED", dpu("d0")))
    assert inv.passed is None
    blue["d1"].max_flashing = 2
    feed(inv, ("MODIFIED", dpu("d0")))
    assert inv.passed is None  # d1's object has not changed yet...
    inv.finish()  # ...but the end-of-run sweep finds it
    assert inv.passed is False and inv.offending == ["d1 (2 concurrent flashes)"]


# --- the command ----------------------------------------------------------------------------------------------

PASSING = f"""\
    timeline: [{{at: 0s, apply: {{file: bfb.yaml}}}}]
    expect:
      - await: {{name: exists, kind: BFB, namespace: {NS}, names: [bf-bundle], within: 1m}}
"""
FAILING = f"""\
    timeline: [{{at: 0s, apply: {{file: bfb.yaml}}}}]
    expect:
      - await: {{name: missing, kind: BFB, namespace: {NS}, names: [other], within: 1m}}
"""


def test_dpf_run_exit_codes_and_report(tmp_path: Path) -> None:
    cli = CliRunner()
    scenario(tmp_path, PASSING)
    path = tmp_path / "scenario.yaml"
    report = tmp_path / "out" / "report.json"
    ok = cli.invoke(app, ["run", str(path), "--report", str(report), "--seed", "5"])
    assert ok.exit_code == 0, ok.output
    assert "PASS exists" in ok.output
    data = json.loads(report.read_text())
    assert data["seed"] == 5 and data["passed"] is True and data["expectations"][0]["passed"] is True

    path.write_text(textwrap.dedent(FAILING))
    bad = cli.invoke(app, ["run", str(path), "--quiet"])
    assert bad.exit_code == 1
    assert "FAIL missing" in bad.output and "offending: other (missing)" in bad.output
    assert "PASS" not in bad.output  # --quiet lists failures only

    path.write_text("timeline:\n  - at: soon\n    apply: {file: bfb.yaml}\n")
    invalid = cli.invoke(app, ["run", str(path)])
    assert invalid.exit_code == 2
    assert f'{path}:2: timeline[0].at: invalid duration "soon"' in invalid.output

    assert cli.invoke(app, ["run", str(path), "--until", "whenever"]).exit_code == 2


def test_dpf_scenario_schema_prints_json_schema() -> None:
    out = CliRunner().invoke(app, ["scenario", "schema"])
    assert out.exit_code == 0
    schema = json.loads(out.output)
    assert schema["title"] == "dpf-twin scenario" and "timeline" in schema["properties"]
