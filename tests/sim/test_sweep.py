"""Sweeps: parameter paths, points built from a scenario, runs on a local process pool and on a Dask
LocalCluster, the tidy table (CSV + Parquet) and the HTML report; the time-series recorder behind reports."""

from __future__ import annotations

import csv
import itertools
import re
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dpf_cli.main import app
from dpf_sim.report_html import mean_ci, render_run
from dpf_sim.runner import run_scenario
from dpf_sim.scenario import load_scenario
from dpf_sim.sweep import (
    Base,
    KindRef,
    SweepError,
    build_point,
    execute,
    parse_param,
    parse_path,
    parse_values,
    plan,
    set_path,
    sweep,
)

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples" / "provisioning.yaml"


def tiny(tmp_path: Path, hosts: int = 2) -> Path:
    """The quickstart on a couple of hosts: every DPU Ready in about 21 simulated minutes, ~1 s wall."""
    path = tmp_path / "tiny.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: tiny
        seed: 3
        fleet: {{racks: 1, hosts_per_rack: {hosts}}}
        keepLog: false
        timeline:
          - at: 0s
            apply: {{file: {SAMPLES}}}
        expect:
          - await: {{name: ready, kind: DPU, phase: Ready, within: 1h}}
        """))
    return path


# --- paths and values ----------------------------------------------------------------------------------


def test_parse_path_fields_lists_quoted_keys_and_kind_refs() -> None:
    assert parse_path("fleet.hosts") == (None, ("fleet", "hosts"))
    assert parse_path("timeline[1].apply.manifests[0].spec.x") == (None, ("timeline", 1, "apply", "manifests", 0, "spec", "x"))
    assert parse_path('fleet["a.b/c"]') == (None, ("fleet", "a.b/c"))
    assert parse_path("DPUSet[dpuset].spec.strategy.rollingUpdate.maxUnavailable") == (
        KindRef("DPUSet", "dpuset"), ("spec", "strategy", "rollingUpdate", "maxUnavailable"))
    assert parse_path("DPUSet[ns/d].spec")[0] == KindRef("DPUSet", "d", "ns")
    for bad in ("", ".fleet", "fleet..x", "fleet[dpuset].x", "DPUSet[x]", "a.DPUSet[x].spec", "fleet.hosts!"):
        with pytest.raises(SweepError):
            parse_path(bad)


def test_values_are_yaml_scalars_or_a_yaml_list() -> None:
    assert parse_values("1000,5000") == [1000, 5000]
    assert parse_values("5%, 10%") == ["5%", "10%"]
    assert parse_values("10Gbit/s,25Gbit/s") == ["10Gbit/s", "25Gbit/s"]
    assert parse_values("[1, {a: 2}]") == [1, {"a": 2}]
    with pytest.raises(SweepError, match="twice"):
        parse_values("1,1")
    with pytest.raises(SweepError, match="PATH=V1"):
        parse_param("fleet.hosts")


def test_set_path_creates_mappings_replaces_fleet_spelling_and_checks_lists() -> None:
    raw: dict[str, object] = {"fleet": {"hosts_per_rack": 8}, "timeline": [{"at": 0}]}
    set_path(raw, ("fleet", "hostsPerRack"), 2, where="")
    assert raw["fleet"] == {"hosts_per_rack": 2}
    set_path(raw, ("models", "bfbServer", "maxRate"), "1Gbit/s", where="")
    assert raw["models"] == {"bfbServer": {"maxRate": "1Gbit/s"}}
    with pytest.raises(SweepError, match=r"timeline\[3\]: no item 3"):
        set_path(raw, ("timeline", 3, "at"), 1, where="")
    with pytest.raises(SweepError, match="needs a list"):
        set_path(raw, ("fleet", 0), 1, where="")


# --- points ------------------------------------------------------------------------------------------------


def test_point_changes_a_manifest_from_a_file_by_kind_and_name(tmp_path: Path) -> None:
    base = Base.load(tiny(tmp_path))
    p = parse_param("DPUSet[dpf-operator-system/dpuset].spec.strategy.rollingUpdate.maxUnavailable=5%,1")
    loaded = build_point(base, [p], ["5%"])
    dpusets = [d for docs in loaded.manifests.values() for d in docs if d["kind"] == "DPUSet"]
    assert [d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] for d in dpusets] == ["5%"]
    # The base scenario's manifests are untouched: each point gets its own copy.
    again = [d for docs in base.loaded.manifests.values() for d in docs if d["kind"] == "DPUSet"]
    assert again[0]["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == "10%"
    with pytest.raises(SweepError, match="no DPUSet named nope"):
        build_point(base, [parse_param("DPUSet[nope].spec.x=1")], [1])


def test_point_is_validated_like_dpf_run(tmp_path: Path) -> None:
    base = Base.load(tiny(tmp_path))
    with pytest.raises(SweepError, match="hosts_per_rack"):
        build_point(base, [parse_param("fleet.hostsPerRack=-1")], [-1])
    with pytest.raises(SweepError, match="maxUnavailable"):
        build_point(base, [parse_param("DPUSet[dpuset].spec.strategy.rollingUpdate.maxUnavailable=x")], [{"a": 1}])
    loaded = build_point(base, [parse_param("expect[0].await.within=2h")], ["2h"])
    assert loaded.scenario.expect[0].await_ is not None and loaded.scenario.expect[0].await_.within == 7200


def test_plan_is_the_cartesian_product_with_seeded_replications(tmp_path: Path) -> None:
    base = Base.load(tiny(tmp_path))
    params = [parse_param("fleet.hostsPerRack=1,2"), parse_param("cost.reconcile=0.002,0.01,0.05")]
    jobs = plan(base, params, 2)
    assert len(jobs) == 12
    assert {(j.params["fleet.hostsPerRack"], j.params["cost.reconcile"]) for j in jobs} == {
        (h, c) for h in (1, 2) for c in (0.002, 0.01, 0.05)}
    assert sorted({j.seed for j in jobs}) == [3, 4]  # the scenario's seed, then +1
    assert [j.run for j in jobs] == list(range(12))
    assert sum(j.keep_progress for j in jobs) == 6  # replication 0 of each point feeds the progress plot
    with pytest.raises(SweepError, match="replications"):
        plan(base, params, 0)


# --- running -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    tmp = tmp_path_factory.mktemp("sweep")
    params = [parse_param("fleet.hostsPerRack=1,2")]
    result = sweep(tiny(tmp), params, replications=2, workers=2, out=tmp / "out")
    return tmp, result


def test_local_pool_runs_every_point_and_replication(pool_sweep: tuple[Path, object]) -> None:
    _, result = pool_sweep
    rows = result.rows  # type: ignore[attr-defined]
    assert [r["run"] for r in rows] == [0, 1, 2, 3]
    assert [(r["fleet.hostsPerRack"], r["seed"]) for r in rows] == [(1, 3), (1, 4), (2, 3), (2, 4)]
    assert all(r["passed"] for r in rows)
    assert [r["dpus_ready"] for r in rows] == [1, 1, 2, 2]
    for r in rows:
        # makespan = when the only await passed: DPF's install takes well over 10 simulated minutes
        assert r["makespan"] == r["await.ready.at"] and 600 < r["makespan"] < 3600
        assert r["link.bfb-server-0.gib"] == pytest.approx(1.5 * r["dpus_ready"], rel=0.01)
    # Different seeds draw different boot and reboot times.
    assert rows[0]["event_log_sha256"] != rows[1]["event_log_sha256"]
    summary = result.summary  # type: ignore[attr-defined]
    assert [s["runs"] for s in summary] == [2, 2] and [s["passed"] for s in summary] == [2, 2]
    assert summary[0]["makespan_ci_low"] <= summary[0]["makespan_mean"] <= summary[0]["makespan_ci_high"]


def test_a_run_replays_bit_for_bit_inline(pool_sweep: tuple[Path, object], tmp_path: Path) -> None:
    tmp, result = pool_sweep
    jobs = plan(Base.load(tmp / "tiny.yaml"), [parse_param("fleet.hostsPerRack=1,2")], 2)
    row = execute([jobs[3]], workers=1)[0]
    assert row["event_log_sha256"] == result.rows[3]["event_log_sha256"]  # type: ignore[attr-defined]
    assert row["makespan"] == result.rows[3]["makespan"]  # type: ignore[attr-defined]


def test_outputs_csv_parquet_and_html(pool_sweep: tuple[Path, object]) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    tmp, result = pool_sweep
    out = tmp / "out"
    with (out / "runs.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 4 and table[2]["fleet.hostsPerRack"] == "2" and float(table[2]["makespan"]) > 600
    parquet = pq.read_table(out / "runs.parquet")
    assert parquet.num_rows == 4
    assert parquet.column("fleet.hostsPerRack").to_pylist() == [1, 1, 2, 2]
    assert parquet.column("makespan").to_pylist() == [r["makespan"] for r in result.rows]  # type: ignore[attr-defined]
    assert "_progress" not in parquet.column_names
    page = (out / "sweep.html").read_text()
    assert 'data-plot="sweep-0"' in page and 'data-plot="sweep-progress"' in page
    assert "<script src" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    # The band is drawn: a filled path per line, and one point marker per parameter value.
    assert len(re.findall(r'<path d="M[^"]+ Z" fill="#[0-9A-F]{6}" fill-opacity="0.18"', page)) >= 2
    assert page.count("<circle") >= 4


def test_dask_local_cluster_gives_the_same_rows(pool_sweep: tuple[Path, object]) -> None:
    distributed = pytest.importorskip("distributed")
    tmp, result = pool_sweep
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        res = sweep(tmp / "tiny.yaml", [parse_param("fleet.hostsPerRack=1,2")], replications=2,
                    dask=cluster.scheduler_address)
    assert res.meta["executor"] == "dask"
    assert [r["event_log_sha256"] for r in res.rows] == [r["event_log_sha256"] for r in result.rows]  # type: ignore[attr-defined]


def test_mean_ci() -> None:
    m, _lo, hi = mean_ci([10.0, 12.0, 14.0])
    assert m == 12.0 and hi - m == pytest.approx(4.303 * 2 / 3**0.5)
    assert mean_ci([5.0]) == (5.0, 5.0, 5.0)
    assert all(x != x for x in mean_ci([]))  # NaN


# --- the recorder and the run report -------------------------------------------------------------------


def test_series_recorder_reads_only_and_covers_the_run(tmp_path: Path) -> None:
    loaded = load_scenario(tiny(tmp_path, hosts=3))
    plain = run_scenario(loaded, series=False, progress=False).report
    rep = run_scenario(loaded, progress=False).report
    assert rep["event_log_sha256"] == plain["event_log_sha256"] and rep["sim_seconds"] == plain["sim_seconds"]
    ts = rep["timeseries"]
    assert ts["t"][0] == 0.0 and ts["t"][-1] == rep["sim_seconds"] and ts["t"] == sorted(ts["t"])
    assert ts["phases"]["Ready"][-1] == 3
    assert all(sum(v[k] for v in ts["phases"].values()) <= 3 for k in range(len(ts["t"])))
    assert {"dpu", "bfb", "dpuset"} <= set(ts["reconciles"])
    assert ts["reconciles"]["dpu"][-1] == rep["reconciles"]["by_controller"]["provisioning/dpu"]
    for row in ts["gantt"]:
        spans = row["spans"]
        assert spans[-1][0] == "Ready" and spans[-1][2] == rep["sim_seconds"]
        assert all(a[2] == b[1] for a, b in itertools.pairwise(spans))  # contiguous
    link = ts["links"]["bfb-server-0->core"]
    assert link["bytes"] == pytest.approx(3 * 1.5 * 2**30, rel=0.01)
    assert 0 < max(link["rate"]) <= link["capacity"] * 1.0001
    assert ts["phase_durations"]["OS Installing"]["count"] == 3
    page = render_run(rep)
    for name in ("phases", "gantt", "links", "durations", "queue-depth", "reconcile-rate"):
        assert f'data-plot="{name}"' in page


def test_recorder_thins_long_runs_to_a_bounded_number_of_points(tmp_path: Path) -> None:
    from dpf_sim.runner import Runner
    from dpf_sim.timeseries import SeriesRecorder

    runner = Runner(load_scenario(tiny(tmp_path, hosts=1)), progress=False, series=False)
    rec = SeriesRecorder(runner.twin, first_period=1.0, max_points=16)
    runner.series = rec
    rep = runner.run().report
    ts = rep["timeseries"]
    assert 8 <= len(ts["t"]) <= 16 and ts["period"] > 1.0
    assert ts["t"][-1] == rep["sim_seconds"]


# --- the commands ------------------------------------------------------------------------------------------


def test_dpf_sweep_bad_param_exits_2(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["sweep", str(tiny(tmp_path)), "--param", "DPUSet[x].spec.y=1", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "no DPUSet named x" in res.output


def test_dpf_run_html(tmp_path: Path) -> None:
    html = tmp_path / "r" / "run.html"
    res = CliRunner().invoke(app, ["run", str(tiny(tmp_path, hosts=1)), "--quiet", "--html", str(html)])
    assert res.exit_code == 0, res.output
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 6
    assert f"html: {html}" in res.output
