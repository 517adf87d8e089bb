"""Chaos runs: scenarios/chaos.yaml on a small fleet for many seeds, and the chaos pieces themselves.

CI budget: the shipped scenario is 500 DPUs with 40 faults and a DPUService churn (4 services, 6 updates, 2
deletions); here every seed runs the same file (same timeline, schedule and churn generators, expectations) on
12 hosts in 2 racks with 8 faults and a churn of 2 services, 3 updates, 1 deletion.
`dpf run scenarios/chaos.yaml --seed N` runs the full-size fleet; benchmarks/chaos_seeds.py runs many seeds
(docs/reliability.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dpf_core.api.external import LABEL_ARGOCD_INSTANCE, Application, DaemonSet
from dpf_core.api.svc import DPUService
from dpf_sim.chaos import churn_plan, run_summary, services_why_not, shrink
from dpf_sim.faults import ChurnParams
from dpf_sim.runner import Runner, RunResult, run_scenario
from dpf_sim.scenario import LoadedScenario, load_scenario, load_scenario_text
from dpf_sim.twin import Twin, TwinConfig

CHAOS = Path(__file__).resolve().parents[2] / "scenarios" / "chaos.yaml"
CI_SEEDS = range(1, 21)
SMALL_FLEET = {"racks": 2, "hostsPerRack": 6}
SMALL_FAULTS = 8
SMALL_CHURN = {"services": 2, "updates": 3, "deletes": 1}


def small(loaded: LoadedScenario, fleet: dict[str, Any] | None = None, count: int = SMALL_FAULTS) -> LoadedScenario:
    """The chaos scenario on a smaller fleet with fewer faults and less churn; everything else unchanged."""
    return shrink(loaded, dict(fleet or SMALL_FLEET), count, SMALL_CHURN)


def run_seed(seed: int, fleet: dict[str, Any] | None = None, count: int = SMALL_FAULTS) -> RunResult:
    return run_scenario(small(load_scenario(CHAOS), fleet, count), seed=seed, progress=False)


@pytest.mark.parametrize("seed", CI_SEEDS)
def test_the_fleet_converges_after_random_faults(seed: int) -> None:
    result = run_seed(seed)
    failures = [f"{o.name}: {o.detail}" for o in result.failures]
    assert result.passed, "\n".join(failures)
    names = {o.name for o in result.outcomes}
    assert {"converged", "rollout-budget", "nothing-lost", "flash-matches-spec"} <= names
    converged = next(o for o in result.outcomes if o.name == "converged")
    assert "DPUService(s) Ready and deployed as specified" in converged.detail


# --- the churn --------------------------------------------------------------------------------------------

CHARTS = [
    {"repoURL": "https://charts.example.com/chaos", "chart": "node-agent", "version": v,
     "workloads": [{"name": "agent", "image": f"registry.example.com/node-agent:{v}"}]}
    for v in ("1.0.0", "1.1.0")
]


def services_twin(seed: int = 1) -> Twin:
    return Twin(TwinConfig(seed=seed, keep_log=False, fleet={"racks": 1, "hosts_per_rack": 2},
                           attachments=("services",), models={"charts": CHARTS}))


def test_the_churn_is_drawn_from_the_seed_and_every_action_fits_its_service_lifetime() -> None:
    twin = services_twin()
    params = ChurnParams(services=5, updates=12, deletes=3)
    plan = churn_plan(twin, params, 3600.0, twin.streams.get("chaos/churn"))
    again = churn_plan(twin, params, 3600.0, services_twin().streams.get("chaos/churn"))
    other = churn_plan(twin, params, 3600.0, services_twin(seed=2).streams.get("chaos/churn"))
    assert plan == again
    assert plan != other
    ops = [a["op"] for _, a in plan]
    assert (ops.count("create"), ops.count("update"), ops.count("delete")) == (5, 12, 3)
    born: dict[str, float] = {}
    dead: set[str] = set()
    for at, action in plan:
        assert 0.0 <= at <= 3600.0
        name = action["name"]
        if action["op"] == "create":
            assert at <= 1800.0 and name not in born
            assert action["manifest"]["spec"]["helmChart"]["source"]["version"] in ("1.0.0", "1.1.0")
            born[name] = at
            continue
        assert name in born and name not in dead, f"{action['op']} of {name} outside its lifetime"
        if action["op"] == "delete":
            dead.add(name)
        else:
            version = action["patch"]["spec"]["helmChart"].get("source", {}).get("version")
            assert version in (None, "1.0.0", "1.1.0")


def test_churn_without_the_services_attachment_is_refused() -> None:
    from dpf_sim.faults import FaultError, inject

    twin = Twin(TwinConfig(fleet={"racks": 1, "hosts_per_rack": 1}, keep_log=False))
    with pytest.raises(FaultError, match="services attachment"):
        inject(twin, {"type": "chaos", "count": 1, "churn": {"services": 1}})


MINI = """
name: mini-churn
seed: 4
fleet: {racks: 1, hostsPerRack: 2}
keepLog: false
recordEvents: false
attachments: [services]
models:
  services: {serviceChainControllers: false}
  charts:
    - {repoURL: "https://charts.example.com/chaos", chart: node-agent, version: 1.0.0,
       workloads: [{name: agent, image: "registry.example.com/node-agent:1.0.0"}]}
    - {repoURL: "https://charts.example.com/chaos", chart: node-agent, version: 1.1.0,
       workloads: [{name: agent, image: "registry.example.com/node-agent:1.1.0"},
                   {name: collector, kind: Deployment, image: "registry.example.com/collector:1.1.0"}]}
timeline:
  - at: 0s
    apply: {file: manifests/base.yaml}
  - at: 0s
    patch:
      kind: DPFOperatorConfig
      namespace: dpf-operator-system
      name: dpfoperatorconfig
      patch: {spec: {flannel: {disable: true}, multus: {disable: true}, sriovDevicePlugin: {disable: true},
                     ovsCNI: {disable: true}, nvipam: {disable: true}, sfcController: {disable: true},
                     serviceSetController: {disable: true}, ovsHelper: {disable: true}}}
  - at: 0s
    apply:
      manifests:
        - apiVersion: provisioning.dpu.nvidia.com/v1alpha1
          kind: DPUSet
          metadata: {name: dpuset, namespace: dpf-operator-system}
          spec:
            nodeSelector: {matchLabels: {feature.node.kubernetes.io/dpu-enabled: "true"}}
            dpuTemplate: {spec: {dpuFlavor: dpf-provisioning-hbn-ovn, bfb: {name: bf-bundle}}}
  - at: 0s
    fault: {type: chaos, count: 3, over: 1h, maxDuration: 5m, types: [controlPlaneDown, apiBrownout, controllerCrash],
            churn: {services: 3, updates: 4, deletes: 1}}
  - at: 75m
    name: faults-over
    fault: {type: clearFaults}
expect:
  - invariant: {name: converged, type: "dpf_sim.chaos:Converged", after: faults-over, within: 2h}
"""


def mini_run() -> Runner:
    loaded = load_scenario_text(MINI, CHAOS.parent / "mini-churn.yaml")
    runner = Runner(loaded, progress=False, series=False)
    runner.result = runner.run()  # type: ignore[attr-defined]
    return runner


def test_service_faults_and_churn_converge_and_leftovers_are_named() -> None:
    runner = mini_run()
    result: RunResult = runner.result  # type: ignore[attr-defined]
    assert result.passed, [o.detail for o in result.failures]
    twin = runner.twin
    summary = run_summary(twin, result.outcomes)
    assert summary["churn"]["create"] == 3 and summary["churn"]["delete"] == 1
    assert summary["dpuservices"] == summary["dpuservices_ready"] == 2
    assert set(summary["faults_by_type"]) <= {"controlPlaneDown", "apiBrownout", "controllerCrash"}
    assert services_why_not(twin) == {}
    # What the check reports when a deletion left something behind, or a service drifts from its spec.
    store = next(iter(twin.dpu_clusters.values()))
    live = store.list(DaemonSet)[0]
    orphan = live.deepcopy()
    orphan.metadata = orphan.metadata.model_copy(update={"name": "orphan-agent", "uid": None, "resource_version": None,
                                                         "labels": {LABEL_ARGOCD_INSTANCE: "gone-app"}})
    store.create(orphan)
    svc = twin.host.list(DPUService)[0]
    app = twin.host.list(Application)[0]
    twin.host.patch(DPUService, svc.name, svc.namespace, {"spec": {"helmChart": {"values": {"labels": {"x": "y"}}}}})
    why = services_why_not(twin)
    assert why[f"DaemonSet {orphan.namespace}/orphan-agent in {next(iter(twin.dpu_clusters))}"] == \
        "left behind by deleted Application gone-app"
    assert any(k.startswith(f"DPUService {svc.namespace}/{svc.name}") or k == f"Application {app.namespace}/{app.name}"
               for k in why)


def test_controller_crash_restarts_the_dpuservice_manager() -> None:
    from dpf_sim.faults import inject

    twin = services_twin()
    services: Any = twin.services  # type: ignore[attr-defined]
    old = services.manager
    rec = inject(twin, {"type": "controllerCrash", "manager": "dpuservice", "downtime": 30})
    assert id(old) in twin.faults.crashed  # type: ignore[attr-defined]
    assert services.manager is old  # nothing runs the DPUService controllers during the downtime
    twin.run(60)
    assert rec.ended is not None
    assert services.manager is not old and services.manager in twin.driver.managers
    assert [c.name for c in services.manager.controllers] == [c.name for c in old.controllers]
