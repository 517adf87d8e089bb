"""`dpf run` and `dpf scenario schema`: the bodies behind the commands (main.py only parses and prints).

Exit codes of `dpf run`: 0 every expectation held, 1 any failed (listed with the offending objects),
2 the scenario itself is invalid (file, line and field in each message).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2


@dataclass
class CommandOutput:
    code: int
    out: list[str] = field(default_factory=list)  # stdout
    err: list[str] = field(default_factory=list)  # stderr


def schema_text() -> str:
    from dpf_sim.scenario import json_schema

    return json.dumps(json_schema(), indent=2)


def run_command(
    scenario: Path,
    *,
    seed: int | None = None,
    report: Path | None = None,
    until: str | None = None,
    quiet: bool = False,
) -> CommandOutput:
    from dpf_sim.runner import run_scenario
    from dpf_sim.scenario import ScenarioError, load_scenario, parse_duration

    until_s: float | None = None
    if until is not None:
        try:
            until_s = parse_duration(until)
        except ValueError as e:
            return CommandOutput(EXIT_INVALID, err=[f"--until: {e}"])
    try:
        loaded = load_scenario(scenario)
        result = run_scenario(loaded, seed=seed, until=until_s, progress=False if quiet else None)
    except ScenarioError as e:
        return CommandOutput(EXIT_INVALID, err=[*e.problems, f"{scenario}: invalid scenario ({len(e.problems)} problem(s))"])
    rep = result.report
    out = CommandOutput(EXIT_OK if result.passed else EXIT_FAILED)
    written = False
    if report is not None:
        try:
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(json.dumps(rep, indent=2) + "\n")
            written = True
        except OSError as e:
            out.err.append(f"cannot write report {report}: {e.strerror or e}")
            out.code = max(out.code, EXIT_FAILED)
    verdict = "PASSED" if result.passed else "FAILED"
    if not quiet:
        out.out.append(f"scenario {rep['scenario']} (seed {rep['seed']}): {verdict}, stopped: {rep['stopped_by']}")
        speed = f", x{rep['speedup']:g}" if rep.get("speedup") else ""
        out.out.append(
            f"  {_sim(rep['sim_seconds'])} simulated in {rep['wall_seconds']:.2f}s wall{speed}; "
            f"{rep['events']} events, {rep['reconciles']['total']} reconciles"
        )
        if rep["dpus_by_phase"]:
            out.out.append("  DPUs: " + ", ".join(f"{p} {n}" for p, n in rep["dpus_by_phase"].items()))
    for o in result.outcomes:
        if o.passed and quiet:
            continue
        out.out.append(f"  {'PASS' if o.passed else 'FAIL'} {o.name}: {o.summary or o.detail}")
        if not quiet:
            out.out.extend(f"      {line}" for line in o.lines)  # e.g. a packet trace's outcome and path
        if not o.passed:
            out.out.extend(f"      offending: {x}" for x in o.offending)
            if o.history:
                out.out.append("      last events:")
                out.out.extend(f"        {line}" for line in o.history)
    if quiet:
        failed = len(result.failures)
        out.out.append(f"{rep['scenario']}: {verdict}" + (f" ({failed} failed)" if failed else ""))
    if written:
        out.out.append(f"report: {report}")
    return out


def _sim(seconds: float) -> str:
    s = int(seconds)
    h, m, sec = s // 3600, s % 3600 // 60, s % 60
    return (f"{h}h" if h else "") + (f"{m}m" if m or h else "") + f"{sec}s"
