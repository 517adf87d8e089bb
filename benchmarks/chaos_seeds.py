"""Chaos seeds A..B in a process pool: scenarios/chaos.yaml (or another chaos file) once per seed, one JSON
line per seed as it finishes, and a summary (JSON + CSV) at the end.

    .venv/bin/python benchmarks/chaos_seeds.py 1 500 --workers 2 --out results/chaos-500
    .venv/bin/python benchmarks/chaos_seeds.py 1 20 --fleet racks=2,hostsPerRack=6 --faults 8 \
        --churn services=2,updates=3,deletes=1                                      # the CI subset

Writes <out>/seeds.jsonl (appended per seed: a killed run keeps what finished; `--resume` skips those seeds),
<out>/seeds.csv (one row per seed) and <out>/summary.json: seeds run, passed and converged counts, faults
injected by kind, DPUs by phase, DPUs in Error by (reason, explaining fault), unexplained Errors, DPUServices
Ready, churn actions, objects lost, failures by seed, wall time. Exit status 1 when any seed failed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SCENARIO = ROOT / "scenarios" / "chaos.yaml"


def parse_fleet(text: str | None) -> dict[str, Any] | None:
    """"racks=2,hostsPerRack=6" -> {"racks": 2, "hostsPerRack": 6} (also --churn)."""
    if not text:
        return None
    out: dict[str, Any] = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        if not key or not value:
            raise SystemExit(f"--fleet: expected key=value[,key=value], got {part!r}")
        out[key.strip()] = int(value) if value.strip().isdigit() else value.strip()
    return out


def run_one(scenario: str, seed: int, fleet: dict[str, Any] | None, faults: int | None,
            churn: dict[str, Any] | None = None) -> dict[str, Any]:
    """One seed in a worker process (imports here: the parent never builds a twin)."""
    import logging

    logging.disable(logging.CRITICAL)  # reconcile errors under faults are expected; the summary has the verdict
    from dpf_sim.chaos import run_summary, shrink
    from dpf_sim.runner import Runner
    from dpf_sim.scenario import load_scenario

    started = time.perf_counter()
    try:
        runner = Runner(shrink(load_scenario(Path(scenario)), fleet, faults, churn), seed=seed, progress=False, series=False)
        result = runner.run()
        row = run_summary(runner.twin, result.outcomes)
        row.update(sim_seconds=result.report.get("sim_seconds"), events=result.report.get("events"))
    except Exception as e:  # a crash is a result too: the table must show it, the pool must go on
        row = {"passed": False, "converged": False, "crashed": f"{type(e).__name__}: {e}"}
    row["seed"] = seed
    row["wall_seconds"] = round(time.perf_counter() - started, 3)
    return row


def summarize(rows: list[dict[str, Any]], wall: float, args: argparse.Namespace) -> dict[str, Any]:
    faults: Counter[str] = Counter()
    phases: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    churn: Counter[str] = Counter()
    for r in rows:
        faults.update(r.get("faults_by_type") or {})
        phases.update(r.get("dpus_by_phase") or {})
        for e in r.get("dpu_errors") or []:
            errors[f"{e['reason']} <- {e['fault'] or 'UNEXPLAINED'}"] += 1
        for k, v in (r.get("churn") or {}).items():
            if isinstance(v, int):
                churn[k] += v
    failed = sorted((r for r in rows if not r.get("passed")), key=lambda r: r["seed"])
    return {
        "scenario": str(args.scenario),
        "fleet": parse_fleet(args.fleet) or "as in the file",
        "faults_per_seed": args.faults if args.faults is not None else "as in the file",
        "churn": parse_fleet(args.churn) or "as in the file",
        "seeds_run": len(rows),
        "seeds": [min((r["seed"] for r in rows), default=None), max((r["seed"] for r in rows), default=None)],
        "passed": sum(1 for r in rows if r.get("passed")),
        "converged": sum(1 for r in rows if r.get("converged")),
        "crashed": sum(1 for r in rows if r.get("crashed")),
        "faults_injected": sum(faults.values()),
        "faults_by_type": dict(sorted(faults.items())),
        "dpus_by_phase": dict(sorted(phases.items())),
        "dpu_errors_by_reason_and_fault": dict(errors.most_common()),
        "dpu_errors_unexplained": sum(r.get("dpu_errors_unexplained", 0) for r in rows),
        "dpuservices_ready": sum(r.get("dpuservices_ready", 0) for r in rows),
        "dpuservices": sum(r.get("dpuservices", 0) for r in rows),
        "churn_actions": dict(sorted(churn.items())),
        "objects_lost": sum(r.get("objects_lost", 0) for r in rows),
        "failed_seeds": [{"seed": r["seed"], "failures": r.get("failures") or [r.get("crashed")]} for r in failed],
        "wall_seconds": round(wall, 1),
        "seed_wall_seconds": {"sum": round(sum(r["wall_seconds"] for r in rows), 1),
                              "max": max((r["wall_seconds"] for r in rows), default=0)},
        "workers": args.workers,
    }


CSV_FIELDS = ("seed", "passed", "converged", "faults_injected", "dpus_ready", "dpus_error", "dpu_errors_unexplained",
              "dpuservices", "dpuservices_ready", "objects_lost", "sim_seconds", "events", "wall_seconds", "failure")


def csv_row(r: dict[str, Any]) -> dict[str, Any]:
    phases = r.get("dpus_by_phase") or {}
    return {"seed": r["seed"], "passed": r.get("passed"), "converged": r.get("converged"),
            "faults_injected": r.get("faults_injected"), "dpus_ready": phases.get("Ready", 0),
            "dpus_error": phases.get("Error", 0), "dpu_errors_unexplained": r.get("dpu_errors_unexplained"),
            "dpuservices": r.get("dpuservices"), "dpuservices_ready": r.get("dpuservices_ready"),
            "objects_lost": r.get("objects_lost"), "sim_seconds": r.get("sim_seconds"), "events": r.get("events"),
            "wall_seconds": r["wall_seconds"],
            "failure": r.get("crashed") or "; ".join(r.get("failures") or [])[:300]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("first", type=int, help="first seed")
    ap.add_argument("last", type=int, help="last seed (inclusive)")
    ap.add_argument("--scenario", type=Path, default=DEFAULT_SCENARIO)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--fleet", help='override the fleet, e.g. "racks=2,hostsPerRack=6" (default: the file\'s)')
    ap.add_argument("--faults", type=int, help="faults per seed (default: the file's chaos step count)")
    ap.add_argument("--churn", help='override the churn, e.g. "services=2,updates=3,deletes=1" (default: the file\'s)')
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "chaos-seeds")
    ap.add_argument("--resume", action="store_true", help="skip seeds already in <out>/seeds.jsonl")
    args = ap.parse_args(argv)
    if args.last < args.first:
        raise SystemExit("last seed < first seed")
    fleet = parse_fleet(args.fleet)
    args.out.mkdir(parents=True, exist_ok=True)
    jsonl = args.out / "seeds.jsonl"
    rows: list[dict[str, Any]] = []
    if args.resume and jsonl.exists():
        rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    elif jsonl.exists():
        jsonl.unlink()
    done = {r["seed"] for r in rows}
    todo = [s for s in range(args.first, args.last + 1) if s not in done]
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool, jsonl.open("a") as out:
        pending: set[Future[dict[str, Any]]] = {pool.submit(run_one, str(args.scenario), s, fleet, args.faults,
                                                            parse_fleet(args.churn))
                                                for s in todo}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                row = fut.result()
                rows.append(row)
                out.write(json.dumps(row, sort_keys=True) + "\n")
                out.flush()
                verdict = "ok" if row.get("passed") else "FAILED"
                print(f"seed {row['seed']}: {verdict} ({row['wall_seconds']:.0f}s, {row.get('faults_injected', 0)} "
                      f"faults) [{len(rows)}/{len(todo) + len(done)}]", file=sys.stderr, flush=True)
    rows.sort(key=lambda r: r["seed"])
    summary = summarize(rows, time.perf_counter() - started, args)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    with (args.out / "seeds.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow(csv_row(r))
    print(json.dumps({k: summary[k] for k in ("seeds_run", "passed", "converged", "faults_injected",
                                              "dpu_errors_unexplained", "objects_lost", "wall_seconds")}))
    return 0 if summary["passed"] == summary["seeds_run"] else 1


if __name__ == "__main__":
    sys.exit(main())
