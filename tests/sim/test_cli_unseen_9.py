"""`dpf run` as a user meets it (issue 3's contract, docs/scenarios.md): exit 0 / 1 / 2, which expectations failed
and the offending objects, `--seed`, `--until`, `--report` (issue 3's fields), `--html`, and seeds against the
event log hash. Scenarios from tests/sim/scenarios_unseen_9, each run cut short with --until to stay fast."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dpf_cli.main import app

HERE = Path(__file__).resolve().parent / "scenarios_unseen_9"
ROUNDING = HERE / "percent-rounding.yaml"


def dpf(*args: str | Path) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert "Traceback" not in res.output
    return res.exit_code, res.stdout, res.stderr


def report(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    assert isinstance(data, dict)
    return data


def test_a_passing_run_exits_0_and_reports_every_field_issue_3_lists(tmp_path: Path) -> None:
    out, html = tmp_path / "r.json", tmp_path / "r.html"
    code, stdout, _ = dpf("run", ROUNDING, "--report", out, "--html", html, "--quiet")
    assert code == 0, stdout
    r = report(out)
    for key in ("scenario", "seed", "sim_seconds", "wall_seconds", "speedup", "events", "reconciles", "store_calls",
                "dpu_phase_durations", "expectations", "event_log_sha256"):
        assert key in r, key
    assert r["scenario"] == "percent-rounding" and r["seed"] == 17 and r["passed"] is True
    reconciles = r["reconciles"]
    assert isinstance(reconciles, dict) and reconciles["by_controller"]["provisioning/dpuset"] > 0
    expectations = r["expectations"]
    assert isinstance(expectations, list)
    assert {e["name"] for e in expectations} >= {"ready", "rolled", "stats", "budget", "one-flash"}
    assert all(set(e) >= {"name", "passed", "detail"} and e["passed"] for e in expectations)
    durations = r["dpu_phase_durations"]
    assert isinstance(durations, dict) and set(durations["OS Installing"]) >= {"count", "p50", "p90", "p99", "max"}
    assert html.read_text().lstrip().lower().startswith("<!doctype html")


def test_a_failing_run_exits_1_naming_the_failures_and_offending_objects(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    code, stdout, _ = dpf("run", ROUNDING, "--until", "20m", "--report", out, "--quiet")
    assert code == 1
    assert "FAIL ready:" in stdout and "offending: dpf-operator-system/worker-0-" in stdout
    assert "FAIL rolled: never started" in stdout
    r = report(out)
    assert r["sim_seconds"] == 1200.0 and r["passed"] is False
    failed = {e["name"]: e for e in r["expectations"] if not e["passed"]}
    assert set(failed) == {"ready", "rolled", "stats"}
    assert failed["ready"]["offending"]


def test_same_seed_same_hash_and_another_seed_another(tmp_path: Path) -> None:
    shas = []
    for i, seed in enumerate(("5", "5", "6")):
        out = tmp_path / f"r{i}.json"
        code, _, _ = dpf("run", HERE / "reboot-annotations.yaml", "--seed", seed, "--until", "15m", "--report", out,
                         "--quiet")
        assert code == 1  # cut short: the awaits are not reached by 15m
        r = report(out)
        assert r["seed"] == int(seed)
        shas.append(r["event_log_sha256"])
    assert shas[0] == shas[1] != shas[2]


def test_a_bad_until_or_seed_on_the_command_line_is_a_usage_error() -> None:
    code, _, stderr = dpf("run", ROUNDING, "--until", "soon")
    assert code == 2 and 'invalid duration "soon"' in stderr
    code, _, _ = dpf("run", ROUNDING, "--seed", "seven")
    assert code == 2


def test_every_problem_is_listed_with_its_line_duplicate_names_included(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent("""\
        timeline:
          - {at: 1m, name: roll, delete: {kind: DPU, name: a, namespace: x}}
          - {at: 2m, name: roll, delete: {kind: Widget, name: b, namespace: x}}
          - at: 3m
            fault: {type: dmsUnreachable, dpus: [x], duration: forever}
        expect:
          - await: {name: x, kind: BFB, within: 1m}
          - await: {name: x, kind: DPU, phase: Readyy, within: 2m, after: nope}
        """))
    code, _, stderr = dpf("run", path)
    assert code == 2
    lines = [ln for ln in stderr.splitlines() if ln.startswith(f"{path}:")]
    assert lines[:-1] == [
        f'{path}:3: timeline[1].name: step name "roll" is used twice (first by timeline[0])',
        f'{path}:3: timeline[1].delete.kind: the server doesn\'t have a resource type "Widget"',
        f'{path}:5: timeline[2].fault: fault dmsUnreachable: duration: invalid duration "forever" (write e.g. 90s, '
        "5m, 1h30m, or seconds)",
        f'{path}:8: expect[1].await.name: expectation name "x" is used twice (first by expect[0])',
        f'{path}:8: expect[1].await.after: no timeline step named "nope"',
        f'{path}:8: expect[1].await.phase: DPU has no phase "Readyy" (one of "Initializing", "Node Effect", '
        '"Pending", "DMS Deployment", "OS Installing", "Rebooting", "Host Network Configuration", '
        '"DPU Cluster Config", "Ready", "Error", "Deleting")',
    ]
    assert lines[-1] == f"{path}: invalid scenario (6 problem(s))"


def test_a_manifest_error_inside_a_step_names_the_document_line_and_field(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(textwrap.dedent("""\
        apiVersion: provisioning.dpu.nvidia.com/v1alpha1
        kind: BFB
        metadata: {name: ok, namespace: dpf-operator-system}
        spec: {url: "http://x/ok.bfb"}
        ---
        apiVersion: provisioning.dpu.nvidia.com/v1alpha1
        kind: DPUSet
        metadata: {name: s, namespace: dpf-operator-system}
        spec:
          dpuTemplate:
            metadata: {annotations: {a: b}}
            spec: {bfb: {name: ok}}
        """))
    path = tmp_path / "s.yaml"
    path.write_text("timeline:\n  - at: 0s\n    apply: {file: m.yaml}\n")
    code, _, stderr = dpf("run", path)
    assert code == 2
    assert (f"{path}:3: timeline[0].apply.file: manifest {tmp_path / 'm.yaml'}: document 2 (line 11): "
            'spec.dpuTemplate.metadata: unknown field "spec.dpuTemplate.metadata"') in stderr


def test_kind_takes_kubectls_resource_dot_group_forms(tmp_path: Path) -> None:
    """docs/scenarios.md: `kind` is spelled as kubectl takes it; kubectl takes `dpusets.provisioning.dpu.nvidia.com`
    and `DPUSet.provisioning.dpu.nvidia.com` (resource or kind, then the group)."""
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent("""\
        timeline:
          - {at: 1m, delete: {kind: dpusets.provisioning.dpu.nvidia.com, name: a, namespace: x}}
          - {at: 1m, delete: {kind: DPUSet.provisioning.dpu.nvidia.com, name: a, namespace: x}}
          - {at: 1m, delete: {kind: dpusets.v1alpha1.provisioning.dpu.nvidia.com, name: a, namespace: x}}
        expect:
          - await: {name: a, kind: dpus.provisioning.dpu.nvidia.com, within: 2m}
        """))
    code, stdout, stderr = dpf("run", path, "--quiet")
    assert "resource type" not in stderr
    assert code == 1 and "FAIL a:" in stdout  # valid, and no DPU ever exists


def test_resolve_kind_takes_qualified_names_and_checks_the_group() -> None:
    from dpf_core.api.external import Pod
    from dpf_core.api.provisioning import DPUSet
    from dpf_core.errors import NotFound
    from dpf_sim.twin import resolve_kind

    for spelled in ("dpusets.provisioning.dpu.nvidia.com", "DPUSet.provisioning.dpu.nvidia.com",
                    "dpuset.v1alpha1.provisioning.dpu.nvidia.com", "DPUSet", "dpusets"):
        assert resolve_kind(spelled) is DPUSet, spelled
    assert resolve_kind("pods") is Pod
    for wrong in ("dpusets.svc.dpu.nvidia.com", "dpusets.v1.provisioning.dpu.nvidia.com", "dpusets.apps"):
        with pytest.raises(NotFound, match="resource type"):
            resolve_kind(wrong)
