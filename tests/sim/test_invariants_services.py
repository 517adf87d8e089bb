"""The always-on invariants of the service worlds (dpf_sim.chaos): `ovsSwept` (no stale br-sfc flow or port
outlives the SFC agent's sweep period) and `applicationsMatch` (every ArgoCD Application matches its
DPUService, and none outlives it, past a grace). Each holds on a healthy run and fails on a planted violation:
a stale flow the agent never sweeps, an Application changed behind the controller's back, an Application
left behind by a deletion ArgoCD does not finish."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from dpf_core.api.external import FINALIZER_ARGOCD_RESOURCES, Application
from dpf_core.api.svc import DPUService
from dpf_core.controllers import sfc
from dpf_core.controllers.dpuservice import desired_application
from dpf_sim.chaos import (
    ALWAYS_ON,
    ApplicationsMatch,
    OvsSwept,
    StaleIndex,
    application_drift,
    application_grace,
    disturbs_services,
    fault_window,
    node_leftovers,
)
from dpf_sim.expect import make_invariant
from dpf_sim.faults import FaultRecord, inject
from dpf_sim.runner import Runner, RunResult
from dpf_sim.scenario import InvariantSpec, load_scenario_text
from dpf_sim.twin import Twin, TwinConfig

HERE = Path(__file__).resolve().parents[2] / "scenarios" / "invariants-test.yaml"
CLUSTER = "dpu-cplane-tenant1/dpu-cplane-tenant1"
STALE = "cookie=0xbad,table=0,priority=7,in_port=1,actions=drop"


@pytest.fixture(autouse=True)
def _quiet() -> None:
    logging.getLogger("dpf").setLevel(logging.CRITICAL)


def outcome(result: RunResult, name: str) -> Any:
    return next(o for o in result.outcomes if o.name == name)


def until(text: str, end: float) -> str:
    """The scenario with a last step at `end` and an await on it: a run ends once its awaits are decided."""
    return text + f"""  - at: {end}s
    name: end
    apply:
      manifests:
        - {{apiVersion: v1, kind: Namespace, metadata: {{name: run-end}}}}
expect:
  - await: {{name: run-end, kind: Namespace, names: [run-end], after: end, within: 10s}}
"""


# --- ovsSwept -----------------------------------------------------------------------------------------------

CHAIN_WORLD = """
name: ovs-swept
seed: 5
keepLog: false
recordEvents: false
attachments: [servicechain]
models:
  serviceChain:
    stalePeriod: 20s
    preProvisioned: {cluster: dpu-cplane-tenant1/dpu-cplane-tenant1, nodes: 2}
timeline:
  - at: 5s
    apply:
      manifests:
        - apiVersion: svc.dpu.nvidia.com/v1alpha1
          kind: DPUServiceInterface
          metadata: {name: vf1, namespace: dpf-operator-system}
          spec: {template: {spec: {template: {metadata: {labels: {port: vf1}},
                 spec: {interfaceType: vf, vf: {pfID: 0, vfID: 1, parentInterfaceRef: p0}}}}}}
        - apiVersion: svc.dpu.nvidia.com/v1alpha1
          kind: DPUServiceInterface
          metadata: {name: vf2, namespace: dpf-operator-system}
          spec: {template: {spec: {template: {metadata: {labels: {port: vf2}},
                 spec: {interfaceType: vf, vf: {pfID: 0, vfID: 2, parentInterfaceRef: p0}}}}}}
        - apiVersion: svc.dpu.nvidia.com/v1alpha1
          kind: DPUServiceChain
          metadata: {name: vf-pair, namespace: dpf-operator-system}
          spec: {template: {spec: {template: {spec: {switches: [{ports: [
                 {serviceInterface: {matchLabels: {port: vf1}}}, {serviceInterface: {matchLabels: {port: vf2}}}]}]}}}}}
"""


def chain_runner(end: float, plant_at: float | None = 15.0) -> Runner:
    """Two pre-provisioned DPU nodes with a VF chain; at `plant_at` a flow under a cookie no ServiceChain has
    and a port nothing produces appear on the first node's br-sfc (what a dead sfc-controller leaves)."""
    runner = Runner(load_scenario_text(until(CHAIN_WORLD, end), HERE), progress=False, series=False)
    twin = runner.twin

    def plant(when: float) -> Any:
        yield twin.env.timeout(when)
        dp = twin.servicechain.nodes[(CLUSTER, first_node(twin))].datapath  # type: ignore[attr-defined]
        dp.add_flows(sfc.SFC_BRIDGE, [STALE])
        dp.bridge(sfc.SFC_BRIDGE).add_port("pf0vf7", sfc.IFACE_TYPE_DPDK)

    if plant_at is not None:
        twin.env.process(plant(plant_at))
    return runner


def first_node(twin: Twin) -> str:
    world: Any = twin.servicechain  # type: ignore[attr-defined]
    return str(sorted(n for _, n in world.nodes)[0])


def no_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent's stale object remover keeps ticking but removes nothing."""
    monkeypatch.setattr(sfc.StaleObjectRemover, "remove_stale_flows", lambda self, ctx, ovs: [])
    monkeypatch.setattr(sfc.StaleObjectRemover, "remove_stale_ports", lambda self, ctx, ovs: [])


def test_ovs_swept_holds_while_the_agent_sweeps_what_was_planted() -> None:
    runner = chain_runner(end=120.0)
    result = runner.run()
    assert result.passed, [o.detail for o in result.failures]
    swept = outcome(result, "always:ovsSwept")
    assert "scan(s) of 2 DPU node(s)" in swept.detail and "2 leftover(s) seen" in swept.detail
    world: Any = runner.twin.servicechain  # type: ignore[attr-defined]
    node = first_node(runner.twin)
    assert world.ovs_leftovers(CLUSTER, node) == []
    flows = world.nodes[(CLUSTER, node)].datapath.dump_flows(sfc.SFC_BRIDGE, stats=False)
    assert flows and all("0xbad" not in f for f in flows)  # the chain's flows stayed, the planted one went


def test_ovs_swept_fails_when_the_sweep_never_removes_the_stale_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    no_sweep(monkeypatch)
    runner = chain_runner(end=300.0)
    result = runner.run()
    swept = outcome(result, "always:ovsSwept")
    assert not swept.passed
    node = first_node(runner.twin)
    assert any(o.startswith(f"{node} ({CLUSTER}): flow cookie=0xbad") and "there since t=" in o
               for o in swept.offending), swept.offending
    assert any(o.startswith(f"{node} ({CLUSTER}): port br-sfc:pf0vf7") for o in swept.offending)
    assert "sweep period (20s + 5s slack)" in swept.detail
    # Planted at 15 s, first seen by the scan at 20 s: late after 20 + 25 s, caught by a scan just then.
    assert runner.decided_at["always:ovsSwept"] == pytest.approx(45.0, abs=0.01)
    assert runner.stopped_by == "invariant always:ovsSwept violated"


def test_ovs_swept_counts_the_period_from_the_end_of_a_fault_that_stops_the_agents(
        monkeypatch: pytest.MonkeyPatch) -> None:
    no_sweep(monkeypatch)
    runner = chain_runner(end=400.0)
    twin = runner.twin

    def drop_watches() -> Any:
        yield twin.env.timeout(10.0)
        inject(twin, {"type": "watchDrop", "duration": 100})

    twin.env.process(drop_watches())
    result = runner.run()
    swept = outcome(result, "always:ovsSwept")
    assert not swept.passed
    assert "counted from t=110.0s when a fault stopping the sweep ended" in " ".join(swept.offending)
    assert runner.decided_at["always:ovsSwept"] == pytest.approx(135.0, abs=0.01)  # just past 110 + 25 s


def test_the_indexed_stale_computation_agrees_with_the_world_s_own() -> None:
    runner = chain_runner(end=18.0)  # planted, not swept yet
    runner.run()
    world: Any = runner.twin.servicechain  # type: ignore[attr-defined]
    index = StaleIndex(world, CLUSTER)
    for node in world.node_names(CLUSTER):
        mine = node_leftovers(world.nodes[(CLUSTER, node)].datapath, node, index, "pf0hpf")
        assert sorted(mine) == sorted(world.ovs_leftovers(CLUSTER, node))
    planted = node_leftovers(world.nodes[(CLUSTER, first_node(runner.twin))].datapath, first_node(runner.twin),
                             index, "pf0hpf")
    assert len(planted) == 2 and any("cookie=0xbad" in p for p in planted)


def test_without_their_attachment_both_invariants_cost_nothing() -> None:
    twin = Twin(TwinConfig(fleet={"racks": 1, "hosts_per_rack": 1}, keep_log=False))
    for kind in ("ovsSwept", "applicationsMatch"):
        assert kind in ALWAYS_ON
        check = make_invariant(InvariantSpec(name=f"always:{kind}", type=kind))
        assert isinstance(check, OvsSwept | ApplicationsMatch)
        check.bind(twin)
        assert check.kinds == ()  # the runner routes it no event
        queued = len(twin.env._queue)
        check.activate([])
        assert len(twin.env._queue) == queued  # and it starts no process
        check.finish()
        assert check.passed and "nothing to check" in check.detail


# --- applicationsMatch --------------------------------------------------------------------------------------

SERVICE_WORLD = """
name: applications-match
seed: 3
fleet: {racks: 1, hostsPerRack: 1}
keepLog: false
recordEvents: false
attachments: [services]
models:
  services: {serviceChainControllers: false}
  charts:
    - {repoURL: "https://charts.example.com/demo", chart: web, version: 1.0.0,
       workloads: [{name: web, kind: Deployment, image: "registry.example.com/web:1.0.0"}]}
    - {repoURL: "https://charts.example.com/demo", chart: web, version: 1.1.0,
       workloads: [{name: web, kind: Deployment, image: "registry.example.com/web:1.1.0"}]}
timeline:
  - at: 0s
    apply:
      manifests:
        - apiVersion: operator.dpu.nvidia.com/v1alpha1
          kind: DPFOperatorConfig
          metadata: {name: dpfoperatorconfig, namespace: dpf-operator-system}
          spec:
            provisioningController: {bfbPVCName: bfb-pvc}
            flannel: {disable: true}
            multus: {disable: true}
            sriovDevicePlugin: {disable: true}
            ovsCNI: {disable: true}
            nvipam: {disable: true}
            sfcController: {disable: true}
            serviceSetController: {disable: true}
            ovsHelper: {disable: true}
        - apiVersion: svc.dpu.nvidia.com/v1alpha1
          kind: DPUService
          metadata: {name: web, namespace: demo}
          spec:
            deployInCluster: true
            helmChart:
              source: {repoURL: "https://charts.example.com/demo", chart: web, version: 1.0.0}
              values: {labels: {release: r0}}
  - at: 2m
    name: update
    patch: {kind: DPUService, namespace: demo, name: web, patch: {spec: {helmChart: {source: {version: 1.1.0}}}}}
"""
APP = ("dpf-operator-system", "in-cluster-web")


def service_runner(end: float) -> Runner:
    return Runner(load_scenario_text(until(SERVICE_WORLD, end), HERE), progress=False, series=False)


def at(runner: Runner, when: float, action: Any) -> None:
    def later() -> Any:
        yield runner.twin.env.timeout(when)
        action(runner.twin)

    runner.twin.env.process(later())


def app_of(twin: Twin) -> Application | None:
    return twin.host.try_get(Application, APP[1], APP[0])


def test_applications_follow_their_dpuservice_through_an_update_a_manual_edit_and_the_deletion() -> None:
    runner = service_runner(end=900.0)
    # An edit behind the controller's back is put right by it: a drift, not a violation.
    at(runner, 200.0, lambda t: t.host.patch(Application, APP[1], APP[0],
                                             {"spec": {"source": {"targetRevision": "9.9.9"}}}))
    at(runner, 400.0, lambda t: t.host.delete(DPUService, "web", "demo"))
    result = runner.run()
    assert result.passed, [o.detail for o in result.failures]
    check = next(c for c in runner.checks if c.name == "always:applicationsMatch")
    assert isinstance(check, ApplicationsMatch)
    assert check.grace == 216.0
    assert check.drifted >= 3  # the update, the edit, the deletion
    assert app_of(runner.twin) is None and runner.twin.host.try_get(DPUService, "web", "demo") is None


def stop_dpuservice_controller(twin: Twin) -> None:
    services: Any = twin.services  # type: ignore[attr-defined]
    twin.driver.stop(services.manager)


def test_an_application_edited_behind_the_controllers_back_fails_after_the_grace() -> None:
    runner = service_runner(end=900.0)
    at(runner, 200.0, stop_dpuservice_controller)
    at(runner, 210.0, lambda t: t.host.patch(Application, APP[1], APP[0],
                                             {"spec": {"source": {"targetRevision": "9.9.9",
                                                                  "helm": {"valuesObject": {"x": 1}}}}}))
    result = runner.run()
    check = outcome(result, "always:applicationsMatch")
    assert not check.passed
    assert runner.decided_at["always:applicationsMatch"] == pytest.approx(210.0 + 216.0, abs=0.01)
    (line,) = check.offending
    assert line.startswith(f"Application {APP[0]}/{APP[1]} differs from DPUService demo/web")
    assert "targetRevision '9.9.9', DPUService says '1.1.0'" in line and "helm values differ under x" in line


def test_a_dpuservice_change_the_stopped_controller_never_applies_fails_after_the_grace() -> None:
    runner = service_runner(end=900.0)
    at(runner, 100.0, stop_dpuservice_controller)  # before the 2 m update
    result = runner.run()
    check = outcome(result, "always:applicationsMatch")
    assert not check.passed
    assert runner.decided_at["always:applicationsMatch"] == pytest.approx(120.0 + 216.0, abs=0.01)
    assert "targetRevision '1.0.0', DPUService says '1.1.0'" in check.offending[0]


@pytest.mark.parametrize("force", [False, True], ids=["being-deleted", "gone"])
def test_an_application_left_behind_by_a_deleted_dpuservice_fails_after_the_grace(
        monkeypatch: pytest.MonkeyPatch, force: bool) -> None:
    from dpf_sim import argocd

    monkeypatch.setattr(argocd.ArgoCD, "_delete", lambda self, app: None)  # its finalizer is never released
    runner = service_runner(end=1200.0)
    at(runner, 300.0, lambda t: t.host.delete(DPUService, "web", "demo"))
    if force:  # someone strips the DPUService's finalizer: the DPUService goes, its Application stays
        at(runner, 320.0, lambda t: t.host.patch(DPUService, "web", "demo", {"metadata": {"finalizers": None}}))
    result = runner.run()
    check = outcome(result, "always:applicationsMatch")
    assert not check.passed
    left = app_of(runner.twin)
    assert left is not None and FINALIZER_ARGOCD_RESOURCES in left.metadata.finalizers
    (line,) = check.offending
    assert line.startswith(f"Application {APP[0]}/{APP[1]} outlives its DPUService demo/web")
    assert ("(deleted)" if force else "(being deleted)") in line
    assert runner.decided_at["always:applicationsMatch"] == pytest.approx((320.0 if force else 300.0) + 216.0, abs=0.01)


def test_a_fault_that_stops_the_controller_delays_the_deadline_to_its_end() -> None:
    runner = service_runner(end=1500.0)
    # The dpuservice process is down for 10 min from 100 s: the 2 m update reaches the Application only after
    # the restart, far beyond the grace, and that is not a violation.
    at(runner, 100.0, lambda t: inject(t, {"type": "controllerCrash", "manager": "dpuservice", "downtime": 600}))
    seen: list[str | None] = []
    at(runner, 650.0, lambda t: seen.append(app_of(t).spec.source.target_revision))  # type: ignore[union-attr]
    result = runner.run()
    assert result.passed, [o.detail for o in result.failures]
    assert seen == ["1.0.0"]
    app = app_of(runner.twin)
    assert app is not None and app.spec.source is not None and app.spec.source.target_revision == "1.1.0"


def test_application_drift_names_each_field_the_controller_owns() -> None:
    svc = DPUService.model_validate({
        "apiVersion": "svc.dpu.nvidia.com/v1alpha1", "kind": "DPUService",
        "metadata": {"name": "web", "namespace": "demo", "generation": 1},
        "spec": {"helmChart": {"source": {"repoURL": "oci://registry.example.com/charts", "chart": "web",
                                          "version": "1.0.0", "releaseName": "w"},
                               "values": {"a": {"b": 1}}},
                 "serviceDaemonSet": {"labels": {"tier": "edge"}}, "serviceID": "web-svc"},
    })
    app = desired_application(svc, svc.spec.service_daemon_set.wire(), "dpu-cplane-tenant1",  # type: ignore[union-attr]
                              "dpf-operator-system")
    assert application_drift(app, svc) == []

    def drift(patch: dict[str, Any]) -> list[str]:
        wire = app.wire()
        spec = wire["spec"]
        for path, value in patch.items():
            node = spec
            *parents, leaf = path.split(".")
            for p in parents:
                node = node[p]
            node[leaf] = value
        return application_drift(Application.model_validate(wire), svc)

    assert drift({"source.targetRevision": "2.0.0"}) == ["targetRevision '2.0.0', DPUService says '1.0.0'"]
    assert drift({"source.repoURL": "oci://registry.example.com/charts"}) == [
        "repoURL 'oci://registry.example.com/charts', DPUService says 'registry.example.com/charts'"]
    assert drift({"source.helm.releaseName": "other"}) == ["helm.releaseName 'other', DPUService says 'w'"]
    assert drift({"source.helm.valuesObject": {"a": {"b": 2}}}) == ["helm values differ under a, serviceDaemonSet"]
    assert drift({"destination.name": "dpu-cplane-tenant2"}) == [
        "destination 'dpu-cplane-tenant2' of Application dpu-cplane-tenant1-web, DPUService deploys to "
        "'dpu-cplane-tenant1'"]
    assert drift({"destination.namespace": "other"}) == ["destination namespace 'other', DPUService's is 'demo'"]
    assert drift({"project": "default"}) == ["project 'default', want 'doca-platform-project-dpu'"]


def test_fault_windows_merge_overlapping_faults_into_one_storm() -> None:
    def rec(i: int, ftype: str, start: float, end: float | None, ends: float | None = None,
            **params: Any) -> FaultRecord:
        return FaultRecord(i, ftype, start, {"type": ftype, **params}, ends=ends, ended=end)

    class Inj:
        records = [rec(1, "apiBrownout", 100, 300, store="host"), rec(2, "controlPlaneDown", 250, 400),
                   rec(3, "dmsSlow", 500, 900), rec(4, "watchDrop", 1000, 1010, manager="provisioning")]

    class FakeTwin:
        faults = Inj()

    w = fault_window(FakeTwin(), disturbs_services)
    assert (w.active, w.quiet_from, w.storm) == (False, 400, 300)  # dmsSlow and a provisioning watchDrop don't count
    Inj.records.append(rec(5, "controllerCrash", 1100, None, ends=1160, manager="dpuservice"))
    w = fault_window(FakeTwin(), disturbs_services)
    assert (w.active, w.active_until) == (True, 1160)


def test_the_grace_is_derived_from_the_models() -> None:
    twin = Twin(TwinConfig(fleet={"racks": 1, "hosts_per_rack": 1}, keep_log=False, attachments=("services",),
                           models={"services": {"argocd": {"sync_delay": {"dist": "uniform", "low": 1, "high": 10},
                                                           "resync": "60s"}}}))
    assert application_grace(twin.services) == 30 + 2 * 10 + 60  # type: ignore[attr-defined]
