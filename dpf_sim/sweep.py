"""Parameter sweeps: the cartesian product of parameter values, R seeded replications of each, run in
parallel on a local process pool or on a Dask distributed cluster; a tidy table (CSV + Parquet, one row per
run) and an HTML report.

Parameter paths (`--param PATH=V1,V2,...`):

- a scenario field by dotted path with list indices, in the file's own spelling:
  `fleet.hosts`, `fleet.bfbServerUplink`, `models.blueField.flashRate`, `cost.reconcile`,
  `timeline[1].apply.manifests[0].spec.strategy.rollingUpdate.maxUnavailable`.
  Missing mapping keys are created (`models.bfbServer.maxRate` on a scenario with no `models`); a fleet key
  replaces its other spelling (`fleet.hostsPerRack` replaces `hosts_per_rack`). A key with dots goes in
  quotes: `fleet["some.key"]`.
- a manifest by kind and name, wherever the timeline applies it (inline or from a `file:`):
  `DPUSet[dpuset].spec.strategy.rollingUpdate.maxUnavailable`, or `DPUSet[dpf-operator-system/dpuset]...`.
  Every applied manifest of that kind and name is changed; none is an error.

Values are YAML scalars (`5` is a number, `5%` and `10Gbit/s` are strings); `PATH=[a, b]` takes a YAML list.

Replication r of every point runs with seed `base + r` (base = the scenario's seed or --seed): points share
their random streams (common random numbers), so a difference between points is the parameter's, not luck's.
"""

from __future__ import annotations

import copy
import csv
import itertools
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dpf_core.api.kubeyaml import read_text

from .scenario import LoadedScenario, ScenarioError, load_scenario_text

PathPart = str | int


class SweepError(Exception):
    """A bad --param or a scenario the sweep cannot build; the message says which and why."""


# --- parameters -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KindRef:
    kind: str
    name: str
    namespace: str | None = None


@dataclass(frozen=True)
class Param:
    path: str
    values: tuple[Any, ...]
    target: KindRef | None
    parts: tuple[PathPart, ...]


_TOKEN = re.compile(r"""\.?(?:(?P<key>[A-Za-z_][\w-]*)|\[(?P<idx>-?\d+)\]|\[(?P<q>"[^"]*"|'[^']*')\]|\[(?P<ref>[^\]]+)\])""")


def parse_path(path: str) -> tuple[KindRef | None, tuple[PathPart, ...]]:
    """`a.b[2].c` -> (None, ("a", "b", 2, "c")); `DPUSet[ns/name].spec.x` -> (KindRef, ("spec", "x"))."""
    parts: list[PathPart] = []
    target: KindRef | None = None
    pos = 0
    text = path.strip()
    if not text:
        raise SweepError("empty parameter path")
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or (pos == 0 and m.group(0).startswith(".")):
            raise SweepError(f"parameter path {path!r}: cannot read from {text[pos:]!r} (write a.b[0].c or Kind[name].spec.x)")
        if m.group("key") is not None:
            parts.append(m.group("key"))
        elif m.group("idx") is not None:
            parts.append(int(m.group("idx")))
        elif m.group("q") is not None:
            parts.append(m.group("q")[1:-1])
        else:
            ref = m.group("ref").strip()
            if len(parts) != 1 or target is not None or not isinstance(parts[0], str) or not parts[0][:1].isupper():
                raise SweepError(f"parameter path {path!r}: [{ref}] names an object only right after its Kind, "
                                 "as in DPUSet[dpuset].spec...")
            ns, _, name = ref.rpartition("/")
            target = KindRef(str(parts.pop()), name, ns or None)
        pos = m.end()
    if target is not None and not parts:
        raise SweepError(f"parameter path {path!r}: which field of {target.kind}[{target.name}]?")
    return target, tuple(parts)


def parse_values(text: str) -> list[Any]:
    text = text.strip()
    try:
        if text.startswith("["):
            values = yaml.safe_load(text)
            if not isinstance(values, list):
                raise SweepError(f"values {text!r}: not a YAML list")
        else:
            values = [yaml.safe_load(v.strip()) if v.strip() else "" for v in text.split(",")]
    except yaml.YAMLError as e:
        raise SweepError(f"values {text!r}: not YAML: {getattr(e, 'problem', None) or e}") from None
    if not values:
        raise SweepError("no values given")
    if len({json.dumps(v, sort_keys=True, default=str) for v in values}) != len(values):
        raise SweepError(f"values {text!r}: a value is listed twice")
    return values


def parse_param(spec: str) -> Param:
    path, sep, values = spec.partition("=")
    if not sep or not path.strip():
        raise SweepError(f"--param {spec!r}: write PATH=V1,V2,...")
    target, parts = parse_path(path)
    try:
        parsed = parse_values(values)
    except SweepError as e:
        raise SweepError(f"--param {path.strip()}: {e}") from None
    return Param(path.strip(), tuple(parsed), target, parts)


# --- applying a point to a scenario ---------------------------------------------------------------------


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def set_path(root: Any, parts: Sequence[PathPart], value: Any, *, where: str) -> None:
    """Set `value` at `parts` inside `root` (dicts and lists), creating missing mapping keys."""
    node = root
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        shown = (where + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts[: i + 1])).lstrip(".")
        if isinstance(part, int):
            if not isinstance(node, list):
                raise SweepError(f"{shown}: [{part}] needs a list, found {type(node).__name__}")
            if not -len(node) <= part < len(node):
                raise SweepError(f"{shown}: no item {part} (the list has {len(node)})")
            if last:
                node[part] = value
            else:
                node = node[part]
            continue
        if not isinstance(node, dict):
            raise SweepError(f"{shown}: .{part} needs a mapping, found {type(node).__name__}")
        key = part
        if part not in node and i == 1 and parts[0] == "fleet":
            # The fleet takes camelCase or snake_case; replace the spelling the file used.
            key = next((k for k in node if isinstance(k, str) and _snake(k) == _snake(part)), part)
        if last:
            node[key] = value
        else:
            if node.get(key) is None:
                node[key] = [] if isinstance(parts[i + 1], int) else {}
            node = node[key]


def _matches(doc: Mapping[str, Any], ref: KindRef) -> bool:
    md = doc.get("metadata") or {}
    if str(doc.get("kind", "")).lower() != ref.kind.lower() or md.get("name") != ref.name:
        return False
    return ref.namespace is None or md.get("namespace", "default") == ref.namespace


@dataclass
class Base:
    """The scenario as a sweep needs it: the file's raw data (to re-validate each point) and where it lives."""

    raw: dict[str, Any]
    path: Path | None
    base_dir: Path
    loaded: LoadedScenario

    @classmethod
    def load(cls, path: str | Path) -> Base:
        p = Path(path)
        try:
            text = read_text(p)
        except OSError as e:
            raise ScenarioError([f"{p}: cannot read: {e.strerror or e}"]) from None
        loaded = load_scenario_text(text, path=p)  # every problem of the file itself, with lines
        raw = yaml.safe_load(text) or {}
        return cls(raw, p, p.parent, loaded)


def build_point(base: Base, params: Sequence[Param], values: Sequence[Any]) -> LoadedScenario:
    """The scenario of one parameter point, validated as `dpf run` would validate it."""
    raw = copy.deepcopy(base.raw)
    label = f"{base.path or '<scenario>'} with " + ", ".join(f"{p.path}={v}" for p, v in zip(params, values, strict=True))
    try:
        for p, v in zip(params, values, strict=True):
            if p.target is None:
                set_path(raw, p.parts, v, where="")
    except SweepError as e:
        raise SweepError(f"{label}: {e}") from None
    try:
        # The original file's line numbers: the point's text is re-dumped YAML, which the user never saw.
        loaded = load_scenario_text(yaml.safe_dump(raw, sort_keys=False), path=base.path, base_dir=base.base_dir,
                                    lines=base.loaded.lines)
    except ScenarioError as e:
        raise SweepError(f"{label}: invalid scenario:\n  " + "\n  ".join(e.problems)) from None
    try:
        for p, v in zip(params, values, strict=True):
            if p.target is not None:
                _set_in_manifests(loaded, p, v)
    except SweepError as e:
        raise SweepError(f"{base.path or '<scenario>'}: {e}") from None
    _check_manifests(loaded, label)
    return loaded


def _set_in_manifests(loaded: LoadedScenario, p: Param, value: Any) -> None:
    assert p.target is not None
    hits = 0
    for i, docs in loaded.manifests.items():
        for j, doc in enumerate(docs):
            if _matches(doc, p.target):
                new = copy.deepcopy(doc)
                set_path(new, p.parts, value, where=f"{p.target.kind}[{p.target.name}]")
                docs[j] = new
                hits += 1
        loaded.manifests[i] = docs
    if hits == 0:
        ns = f"{p.target.namespace}/" if p.target.namespace else ""
        raise SweepError(f"{p.path}: no {p.target.kind} named {ns}{p.target.name} is applied in the timeline")


def _check_manifests(loaded: LoadedScenario, label: str) -> None:
    from dpf_core.api import admission
    from dpf_core.errors import ApiError, Invalid

    problems: list[str] = []
    for docs in loaded.manifests.values():
        for doc in docs:
            try:
                admission.decode(doc)
            except Invalid as e:
                problems += [f"{doc.get('kind')} {doc.get('metadata', {}).get('name')}: {c.field}: {c.message}" for c in e.causes]
            except ApiError as e:
                problems.append(e.message)
    if problems:
        raise SweepError(f"{label}: invalid manifest(s):\n  " + "\n  ".join(problems))


# --- jobs -------------------------------------------------------------------------------------------------


@dataclass
class Job:
    run: int
    point: int
    replication: int
    seed: int
    params: dict[str, Any]
    loaded: LoadedScenario
    until: float | None = None
    keep_progress: bool = False


def run_job(job: Job) -> dict[str, Any]:
    """Run one scenario point with one seed; return its row (plus `_progress` when asked). Top level and
    pure data in, pure data out, so process pools and Dask workers can ship it."""
    from .runner import run_scenario

    started = time.perf_counter()
    result = run_scenario(job.loaded, seed=job.seed, until=job.until, progress=False)
    row = row_of(job, result.report)
    row["worker_seconds"] = round(time.perf_counter() - started, 3)
    if job.keep_progress:
        ts = result.report.get("timeseries") or {}
        row["_progress"] = {"t": ts.get("t", []), "ready": ts.get("phases", {}).get("Ready", [0] * len(ts.get("t", [])))}
    return row


def row_of(job: Job, rep: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"run": job.run, "point": job.point, "replication": job.replication, "seed": job.seed}
    row.update(job.params)
    failed = [e["name"] for e in rep.get("expectations", []) if not e.get("passed")]
    row.update({
        "passed": bool(rep.get("passed")),
        "failed": ";".join(failed),
        "stopped_by": rep.get("stopped_by"),
        "makespan": rep.get("makespan"),
    })
    for name, a in sorted((rep.get("awaits") or {}).items()):
        row[f"await.{name}.at"] = a.get("at") if a.get("passed") else None
        row[f"await.{name}.seconds"] = a.get("seconds") if a.get("passed") else None
    ttr = rep.get("dpu_time_to_ready") or {}
    row.update({
        "sim_seconds": rep.get("sim_seconds"),
        "wall_seconds": rep.get("wall_seconds"),
        "events": rep.get("events"),
        "reconciles": (rep.get("reconciles") or {}).get("total"),
        "store_writes": (rep.get("store_calls") or {}).get("writes"),
        "event_log_sha256": rep.get("event_log_sha256"),
        "dpus_ready": (rep.get("dpus_by_phase") or {}).get("Ready", 0),
        "time_to_ready.p50": ttr.get("p50"),
        "time_to_ready.p90": ttr.get("p90"),
        "time_to_ready.max": ttr.get("max"),
    })
    for phase, pct in sorted((rep.get("dpu_phase_durations") or {}).items()):
        key = phase.replace(" ", "")
        row[f"phase.{key}.p50"] = pct.get("p50")
        row[f"phase.{key}.p90"] = pct.get("p90")
    links = (rep.get("timeseries") or {}).get("links") or {}
    for lk, v in links.items():
        src = lk.split("->", 1)[0]
        if src.startswith("bfb-server-"):
            cap = v["capacity"] or math.nan
            row[f"link.{src}.gib"] = round(v["bytes"] / 2**30, 3)
            row[f"link.{src}.peak_util"] = round(max(v["rate"], default=0.0) / cap, 4)
    return row


# --- execution --------------------------------------------------------------------------------------------


def execute(jobs: Sequence[Job], *, workers: int = 1, dask: Any = None,
            on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run the jobs: inline (workers <= 1), on a local process pool, or on Dask (`dask` = a scheduler
    address, or a distributed Client). Rows come back in run order."""
    rows: list[dict[str, Any]] = []

    def got(row: dict[str, Any]) -> None:
        rows.append(row)
        if on_row is not None:
            on_row(row)

    if dask is not None:
        _execute_dask(jobs, dask, got)
    elif workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            got(run_job(job))
    else:
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            futures = [pool.submit(run_job, j) for j in jobs]
            for fut in as_completed(futures):
                got(fut.result())
    rows.sort(key=lambda r: int(r["run"]))
    return rows


def _execute_dask(jobs: Sequence[Job], dask: Any, got: Callable[[dict[str, Any]], None]) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError as e:  # pragma: no cover - the sweep extra is missing
        raise SweepError('--dask needs dask.distributed: pip install "dpf-twin[sweep]"') from e
    own = not isinstance(dask, Client)
    client = Client(dask, timeout="20s") if own else dask  # type: ignore[no-untyped-call]
    try:
        # pure=False: two jobs are never "the same computation" to Dask, even with equal inputs.
        futures = client.map(run_job, list(jobs), pure=False)
        for _fut, row in as_completed(futures, with_results=True):  # type: ignore[no-untyped-call]
            got(row)
    finally:
        if own:
            client.close()


# --- the sweep ----------------------------------------------------------------------------------------------


@dataclass
class SweepResult:
    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    meta: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)


def plan(base: Base, params: Sequence[Param], replications: int, *, seed: int | None = None,
         until: float | None = None) -> list[Job]:
    if replications < 1:
        raise SweepError("--replications must be >= 1")
    paths = [p.path for p in params]
    if len(set(paths)) != len(paths):
        raise SweepError("a parameter path is given twice")
    first = base.loaded.scenario.seed if seed is None else seed
    jobs: list[Job] = []
    bad: list[str] = []
    for point, values in enumerate(itertools.product(*(p.values for p in params))):
        try:
            loaded = build_point(base, params, values)
        except SweepError as e:
            # Every bad point at once, as a scenario lists every bad field: one edit fixes the command line.
            bad.append(str(e))
            continue
        for r in range(replications):
            jobs.append(Job(len(jobs), point, r, first + r, dict(zip(paths, values, strict=True)), loaded, until,
                            keep_progress=r == 0))
    if bad:
        raise SweepError("\n".join(bad))
    return jobs


def _mean_ci(xs: Sequence[float]) -> tuple[float, float, float]:
    from .report_html import mean_ci

    return mean_ci(xs)


def summarise(rows: Sequence[Mapping[str, Any]], params: Sequence[Param]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    points: dict[int, list[Mapping[str, Any]]] = {}
    for r in rows:
        points.setdefault(int(r["point"]), []).append(r)
    for point, rs in sorted(points.items()):
        spans = [float(r["makespan"]) for r in rs if r.get("makespan") is not None]
        m, lo, hi = _mean_ci(spans)
        out.append({
            "point": point,
            "params": {p.path: rs[0][p.path] for p in params},
            "runs": len(rs),
            "passed": sum(1 for r in rs if r.get("passed")),
            "makespan_mean": None if math.isnan(m) else round(m, 3),
            "makespan_ci_low": None if math.isnan(lo) else round(lo, 3),
            "makespan_ci_high": None if math.isnan(hi) else round(hi, 3),
            "makespan_min": min(spans) if spans else None,
            "makespan_max": max(spans) if spans else None,
        })
    return out


def columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    cols: list[str] = []
    seen: set[str] = set()
    for r in rows:
        for k in r:
            if k not in seen and not k.startswith("_"):
                seen.add(k)
                cols.append(k)
    return cols


def tidy(rows: Sequence[Mapping[str, Any]], params: Sequence[Param]) -> list[dict[str, Any]]:
    """Rows with one type per column: a parameter whose values mix numbers and text becomes text."""
    cols = columns(rows)
    mixed = {p.path for p in params if len({type(v).__name__ for v in p.values}) > 1 or any(isinstance(v, (dict, list)) for v in p.values)}
    out = []
    for r in rows:
        row = {c: r.get(c) for c in cols}
        for c in mixed:
            row[c] = json.dumps(row[c]) if isinstance(row[c], (dict, list)) else str(row[c])
        out.append(row)
    return out


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    cols = columns(rows)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: "" if r.get(c) is None else r.get(c) for c in cols})


def write_parquet(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    cols = columns(rows)
    table = pa.Table.from_pylist([{c: r.get(c) for c in cols} for r in rows])
    pq.write_table(table, path)


def sweep(scenario: str | Path, params: Sequence[Param], *, replications: int = 1, workers: int = 1,
          dask: Any = None, out: Path | None = None, seed: int | None = None, until: float | None = None,
          on_row: Callable[[dict[str, Any]], None] | None = None) -> SweepResult:
    if not params:
        raise SweepError("give at least one --param PATH=V1,V2,...")
    base = Base.load(scenario)
    jobs = plan(base, params, replications, seed=seed, until=until)
    if out is not None:
        # Before the runs, not after: an --out that cannot hold the results must not cost the sweep.
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SweepError(f"--out {out}: cannot create the output directory: {e.strerror or e}") from None
    started = time.perf_counter()
    raw_rows = execute(jobs, workers=workers, dask=dask, on_row=on_row)
    wall = time.perf_counter() - started
    rows = tidy(raw_rows, params)
    summary = summarise(rows, params)
    first = base.loaded.scenario.seed if seed is None else seed
    meta: dict[str, Any] = {
        "scenario": base.loaded.name,
        "file": str(base.path) if base.path is not None else None,
        "params": [[p.path, list(p.values)] for p in params],
        "replications": replications,
        "seeds": f"{first}..{first + replications - 1}" if replications > 1 else str(first),
        "runs": len(rows),
        "wall_seconds": round(wall, 3),
        "executor": "dask" if dask is not None else ("process pool" if workers > 1 else "inline"),
        "workers": workers,
        "await_metrics": sorted(c for c in columns(rows) if c.startswith("await.") and c.endswith(".seconds")),
    }
    result = SweepResult(rows, summary, meta)
    if out is not None:
        result.files = write_outputs(out, result, params, raw_rows)
    return result


def _label(point: Mapping[str, Any], params: Sequence[Param]) -> str:
    return ", ".join(f"{p.path.rsplit('.', 1)[-1]}={point[p.path]}" for p in params)


def write_outputs(out: Path, result: SweepResult, params: Sequence[Param], raw_rows: Iterable[Mapping[str, Any]]) -> dict[str, Path]:
    from .report_html import render_sweep

    out.mkdir(parents=True, exist_ok=True)
    files = {"csv": out / "runs.csv", "parquet": out / "runs.parquet", "html": out / "sweep.html", "json": out / "sweep.json"}
    write_csv(files["csv"], result.rows)
    try:
        write_parquet(files["parquet"], result.rows)
    except ImportError as e:
        raise SweepError(f'writing {files["parquet"]} needs pyarrow: pip install "dpf-twin[sweep]" ({e})') from e
    curves = [(_label(r, params), list(r["_progress"]["t"]), list(r["_progress"]["ready"]))
              for r in raw_rows if r.get("_progress") is not None]
    files["html"].write_text(render_sweep(result.meta, result.rows, result.summary, curves))
    files["json"].write_text(json.dumps({"meta": result.meta, "summary": result.summary}, indent=2, default=str) + "\n")
    return files


# --- the command -------------------------------------------------------------------------------------------


@dataclass
class CommandOutput:
    code: int
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)


def sweep_command(scenario: Path, param_specs: Sequence[str], *, replications: int = 1, workers: int | None = None,
                  dask: str | None = None, out: Path | None = None, seed: int | None = None, until: str | None = None,
                  quiet: bool = False, echo: Callable[[str], None] | None = None) -> CommandOutput:
    """`dpf sweep`: exit 0 when every run ran (failed expectations are results, listed per point), 2 for a
    bad parameter or scenario."""
    from .scenario import parse_duration

    try:
        params = [parse_param(s) for s in param_specs]
        until_s = parse_duration(until) if until is not None else None
    except (SweepError, ValueError) as e:
        return CommandOutput(2, err=[str(e)])
    n = workers if workers is not None else (os.cpu_count() or 1)
    target = out if out is not None else Path("out") / f"sweep-{scenario.stem}"
    done = [0]

    def progress(row: dict[str, Any]) -> None:
        done[0] += 1
        if echo is not None and not quiet:
            ps = ", ".join(f"{p.path}={row[p.path]}" for p in params)
            span = row.get("makespan")
            echo(f"  [{done[0]}] {ps} seed {row['seed']}: {'passed' if row['passed'] else 'FAILED ' + row['failed']}, "
                 f"makespan {'-' if span is None else f'{span:.0f}s'} ({row['worker_seconds']:.1f}s wall)")

    try:
        result = sweep(scenario, params, replications=replications, workers=n, dask=dask, out=target, seed=seed,
                       until=until_s, on_row=progress)
    except ScenarioError as e:
        return CommandOutput(2, err=[*e.problems, f"{scenario}: invalid scenario ({len(e.problems)} problem(s))"])
    except SweepError as e:
        return CommandOutput(2, err=[str(e)])
    except OSError as e:
        # Dask's "Timed out trying to connect to tcp://...", or an output file that cannot be written: both
        # messages name their target.
        return CommandOutput(2, err=[f"dpf sweep: {e}"])
    res = CommandOutput(0)
    m = result.meta
    res.out.append(f"sweep {m['scenario']}: {m['runs']} runs on {m['executor']} in {m['wall_seconds']:.1f}s wall")
    for s in result.summary:
        ps = ", ".join(f"{k}={v}" for k, v in s["params"].items())
        mean = s["makespan_mean"]
        ci = "" if mean is None else f" (95% CI {s['makespan_ci_low']:.0f}..{s['makespan_ci_high']:.0f})"
        res.out.append(f"  {ps}: {s['passed']}/{s['runs']} passed, makespan "
                       f"{'-' if mean is None else f'{mean:.0f}s'}{ci}")
    for key in ("csv", "parquet", "html"):
        res.out.append(f"{key}: {result.files[key]}")
    return res
