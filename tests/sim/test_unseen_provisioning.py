"""Provisioning scenarios written the way a DPF platform engineer would write them from DPF's docs and fixtures,
not from this project's shipped scenarios: each file under scenarios_unseen/ must pass, and the details its awaits
cannot see (condition reasons, messages, what is left behind) are checked here on the finished twin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from dpf_core.api.external import Node, NodeMaintenance, Pod
from dpf_core.api.provisioning import DPU, DPUCluster, DPUFlavor, DPUPhase, DPUSet
from dpf_sim.runner import Runner, run_scenario
from dpf_sim.scenario import ScenarioError, load_scenario, load_scenario_text

HERE = Path(__file__).resolve().parent / "scenarios_unseen"
BASE = Path(__file__).resolve().parents[2] / "scenarios" / "manifests" / "base.yaml"
NS = "dpf-operator-system"


def finished(name: str) -> Runner:
    runner = Runner(load_scenario(HERE / f"{name}.yaml"), progress=False)
    result = runner.run()
    assert result.passed, [o.as_dict() for o in result.failures]
    return runner


def conditions(dpu: DPU) -> dict[str, tuple[str, str, str]]:
    return {c.type: (c.status, c.reason, c.message) for c in dpu.status.conditions}


@pytest.mark.parametrize("path", sorted(HERE.glob("*.yaml")), ids=lambda p: p.stem)
def test_unseen_scenario_passes(path: Path) -> None:
    result = run_scenario(load_scenario(path), progress=False)
    assert result.passed, [o.as_dict() for o in result.failures]


# --- manifests as kubectl reads them ---------------------------------------------------------------------


def test_unquoted_pci_label_value_in_a_dpuselector_is_a_string() -> None:
    """`0000-04-00` unquoted matches YAML 1.1's timestamp rule; kubectl (go-yaml v2) keeps it a string, and
    PyYAML used to crash building the date "year 0". The DPUSet below is the shape DPF's docs show."""
    text = f"""
name: pci-selector
fleet: {{racks: 1, hostsPerRack: 1, dpusPerHost: 2}}
epoch: 2025-03-01T00:00:00Z
timeline:
  - at: 0s
    apply:
      manifests:
        - apiVersion: provisioning.dpu.nvidia.com/v1alpha1
          kind: DPUSet
          metadata: {{name: second-dpu, namespace: {NS}, labels: {{since: 2024-11-03}}}}
          spec:
            dpuSelector:
              feature.node.kubernetes.io/dpu-1-pci-address: 0000-05-00
            dpuTemplate: {{spec: {{bfb: {{name: bf-bundle}}}}}}
expect:
  - await: {{name: created, kind: DPU, names: [worker-0-0-0000-05-00], within: 1m}}
"""
    loaded = load_scenario_text(text)
    [step] = loaded.scenario.timeline
    [doc] = step.sources()[0].manifests or []
    assert doc["spec"]["dpuSelector"] == {"feature.node.kubernetes.io/dpu-1-pci-address": "0000-05-00"}
    assert doc["metadata"]["labels"] == {"since": "2024-11-03"}
    assert loaded.scenario.epoch == "2025-03-01T00:00:00Z"
    result = run_scenario(loaded, progress=False)
    assert result.passed, [o.as_dict() for o in result.failures]


def test_await_fields_take_a_map_key_and_non_string_values() -> None:
    text = """
name: fields
fleet: {racks: 1, hostsPerRack: 1}
timeline: [{at: 0s, apply: {manifests: []}}]
expect:
  - await: {name: a, kind: DPUSet, fields: {status.dpuStatistics.Ready: 2}, within: 1m}
  - await: {name: b, kind: DPU, fields: {spec.automaticNodeReboot: true, metadata.labels.provisioning.dpu.nvidia.com/host: h}, within: 1m}
  - await: {name: c, kind: DPU, fields: {spec.bfb.name: x}, within: 1m}
"""
    with pytest.raises(ScenarioError) as err:
        load_scenario_text(text)
    # Only the walk into a plain string is wrong: map keys and int/bool values are fine.
    assert len(err.value.problems) == 1 and "expect[2]" in err.value.problems[0] and "spec.bfb.name" in err.value.problems[0]


# --- scenario details --------------------------------------------------------------------------------------


def test_two_sets_split_by_node_and_dpu_selectors() -> None:
    runner = finished("two-sets")
    runner.twin.run(runner.env.now + 300)
    host = runner.twin.host
    by_set = {s.name: s.status.dpu_statistics for s in host.list(DPUSet)}
    assert by_set == {"set-a": {"Ready": 2}, "set-b": {"Ready": 2}}
    for dpu in host.list(DPU):
        index = "0000-04-00" if dpu.metadata.labels["provisioning.dpu.nvidia.com/dpuset-name"] == "set-a" else "0000-05-00"
        assert dpu.name.endswith(index)
        assert dpu.metadata.labels["provisioning.dpu.nvidia.com/dpu-pciAddress"] == index
    # The taint of set-a went once its DPUs were Ready; set-b had none.
    assert all(not n.spec.taints for n in host.list(Node))


def test_node_label_added_and_removed() -> None:
    runner = finished("labels")
    host = runner.twin.host
    assert sorted(d.name for d in host.list(DPU)) == ["worker-0-1-0000-04-00", "worker-0-2-0000-04-00"]
    cluster = runner.twin.dpu_clusters["dpu-cplane-tenant1/dpu-cplane-tenant1"]
    assert sorted(n.name for n in cluster.list(Node)) == ["worker-0-1-0000-04-00", "worker-0-2-0000-04-00"]
    # The unselected host's DPU took its pods and its taint with it.
    assert not [p for p in host.list(Pod) if p.name.startswith("worker-0-0-")]
    assert not host.get(Node, "worker-0-0").spec.taints


def test_dpuset_deleted_mid_install_leaves_nothing() -> None:
    runner = finished("midinstall")
    host = runner.twin.host
    assert host.list(DPU) == [] and host.list(DPUSet) == [] and host.list(NodeMaintenance) == []
    assert all(not n.spec.unschedulable for n in host.list(Node) if hasattr(n.spec, "unschedulable"))


def test_manual_reboot_waits_with_dpf_reason() -> None:
    runner = Runner(load_scenario(HERE / "manual.yaml"), progress=False, until=45 * 60)
    runner.run()
    host = runner.twin.host
    for name in ("worker-0-0-0000-04-00", "worker-0-2-0000-04-00"):
        dpu = host.get(DPU, name, NS)
        assert dpu.status.phase == DPUPhase.REBOOTING
        assert conditions(dpu)["Rebooted"][:2] == ("False", "WaitingForManualPowerCycleOrReboot")
    # spec.automaticNodeReboot false does not stop the default drain effect's own automaticNodeReboot.
    assert host.get(DPU, "worker-0-1-0000-04-00", NS).status.phase == DPUPhase.READY


def test_max_nodes_reached() -> None:
    runner = finished("maxnodes")
    host = runner.twin.host
    waiting = [d for d in host.list(DPU) if d.status.phase == DPUPhase.INITIALIZING]
    assert len(waiting) == 2
    for dpu in waiting:
        assert conditions(dpu)["Initialized"] == (
            "False", "DPUClusterNotReady", "cluster dpu-cplane-tenant1/dpu-cplane-tenant1 is full, max node: 2")
        assert dpu.spec.cluster is None or not dpu.spec.cluster.name
    # Deleting a Ready DPU frees its slot: one of the waiting DPUs (or the DPUSet's replacement) takes it.
    ready = sorted(d.name for d in host.list(DPU) if d.status.phase == DPUPhase.READY)
    runner.twin.delete("DPU", ready[0], NS)
    runner.twin.run(runner.env.now + 40 * 60)
    phases = sorted(str(d.status.phase) for d in host.list(DPU))
    assert phases == ["Initializing", "Initializing", "Ready", "Ready"], phases
    assert ready[1] in {d.name for d in host.list(DPU) if d.status.phase == DPUPhase.READY}


def test_static_cluster_from_dpf_fixtures() -> None:
    """DPF's e2e fixtures as they are: a static DPUCluster whose kubeconfig Secret names a real https server
    and a DPUSet naming the default flavor, which DPF's operator installs (the fixtures do not ship it)."""
    runner = finished("static")
    host = runner.twin.host
    dc = host.get(DPUCluster, "dpu-cluster-0", NS)
    assert dc.status.phase == "Ready"
    assert host.get(DPUFlavor, "dpf-provisioning-hbn-ovn", NS).spec.nvconfig[0].parameters[-2] == "NUM_OF_VFS=46"
    store = runner.twin.dpu_clusters[f"{NS}/dpu-cluster-0"]
    assert sorted(n.name for n in store.list(Node)) == ["worker-0-0-0000-04-00", "worker-0-1-0000-04-00"]


def test_static_cluster_without_reachable_kubeconfig_stays_not_ready() -> None:
    """A Secret with no admin.conf stands nothing up: the DPUCluster stays NotReady, naming the Secret."""
    text = f"""
name: static-broken
fleet: {{racks: 1, hostsPerRack: 1}}
timeline:
  - at: 0s
    apply:
      manifests:
        - {{apiVersion: v1, kind: Secret, metadata: {{name: kc, namespace: {NS}}}, data: {{other: eA==}}}}
        - apiVersion: provisioning.dpu.nvidia.com/v1alpha1
          kind: DPUCluster
          metadata: {{name: c, namespace: {NS}}}
          spec: {{type: static, version: v1.30.2, kubeconfig: kc}}
expect:
  - await: {{name: not-ready, kind: DPUCluster, phase: NotReady, within: 2m}}
"""
    runner = Runner(load_scenario_text(text), progress=False)
    assert runner.run().passed
    dc = runner.twin.host.get(DPUCluster, "c", NS)
    ready = next(c for c in dc.status.conditions if c.type == "Ready")
    assert ready.reason == "HealthCheckFailed" and "kc" in ready.message
    assert f"{NS}/c" not in runner.twin.dpu_clusters


def test_user_flavor_of_the_default_name_is_kept() -> None:
    """The operator's default flavor never replaces one the user applied first (base.yaml ships its own)."""
    text = f"""
name: own-flavor
fleet: {{racks: 1, hostsPerRack: 1}}
timeline:
  - at: 0s
    apply: {{file: {BASE}}}
  - at: 0s
    apply:
      manifests:
        - apiVersion: provisioning.dpu.nvidia.com/v1alpha1
          kind: DPUFlavor
          metadata: {{name: mine, namespace: {NS}}}
          spec: {{bfcfgParameters: [UPDATE_DPU_OS=yes]}}
expect:
  - await: {{name: flavors, kind: DPUFlavor, count: 2, within: 1m}}
"""
    runner = Runner(load_scenario_text(text), progress=False)
    assert runner.run().passed
    runner.twin.run(60)
    flavor = runner.twin.host.get(DPUFlavor, "dpf-provisioning-hbn-ovn", NS)
    assert flavor.metadata.generation == 1 and flavor.spec.ovs is None  # base.yaml's, untouched


def test_bfcfg_over_128k_fails_the_install_and_a_custom_flavor_provisions() -> None:
    huge = {"apiVersion": "provisioning.dpu.nvidia.com/v1alpha1", "kind": "DPUFlavor",
            "metadata": {"name": "huge", "namespace": NS},
            "spec": {"configFiles": [{"path": "/etc/huge.conf", "operation": "append", "permissions": "0600",
                                      "raw": "y" * 140_000}]}}
    mine = {"apiVersion": "provisioning.dpu.nvidia.com/v1alpha1", "kind": "DPUFlavor",
            "metadata": {"name": "lean", "namespace": NS},
            "spec": {"grub": {"kernelParameters": ["console=hvc0", "hugepagesz=1G", "hugepages=4"]},
                     "nvconfig": [{"parameters": ["SRIOV_EN=1", "NUM_OF_VFS=8"]}],
                     "containerdConfig": {"registryEndpoint": "https://registry.lab.example:5000"},
                     "dpuResources": {"cpu": "16", "memory": "32Gi"},
                     "systemReservedResources": {"cpu": "2", "memory": "4Gi"}}}

    def dpuset(name: str, flavor: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
        template: dict[str, Any] = {"spec": {"dpuFlavor": flavor, "bfb": {"name": "bf-bundle"},
                                             "nodeEffect": {"customLabel": {"dpu.example/state": "provisioning"}}}}
        if annotations:
            template["annotations"] = annotations
        return {"apiVersion": "provisioning.dpu.nvidia.com/v1alpha1", "kind": "DPUSet",
                "metadata": {"name": name, "namespace": NS},
                "spec": {"nodeSelector": {"matchLabels": {"g": name}}, "dpuTemplate": template}}

    scenario = {
        "name": "flavors", "seed": 13, "fleet": {"racks": 1, "hostsPerRack": 2},
        "timeline": [
            {"at": "0s", "apply": {"file": str(BASE)}},
            {"at": "0s", "patch": {"kind": "Node", "name": "worker-0-0", "patch": {"metadata": {"labels": {"g": "big"}}}}},
            {"at": "0s", "patch": {"kind": "Node", "name": "worker-0-1", "patch": {"metadata": {"labels": {"g": "lean"}}}}},
            {"at": "1s", "apply": {"manifests": [
                huge, mine, dpuset("big", "huge"),
                dpuset("lean", "lean", {"provisioning.dpu.nvidia.com/host-power-cycle-required": "true"})]}},
        ],
        "expect": [
            {"await": {"name": "failed", "kind": "DPU", "names": ["worker-0-0-0000-04-00"], "phase": "Error", "within": "40m"}},
            {"await": {"name": "lean-ready", "kind": "DPU", "names": ["worker-0-1-0000-04-00"], "phase": "Ready",
                       "within": "40m"}},
        ],
    }
    runner = Runner(load_scenario_text(yaml.safe_dump(scenario)), progress=False)
    result = runner.run()
    assert result.passed, [o.as_dict() for o in result.failures]
    host = runner.twin.host
    failed = host.get(DPU, "worker-0-0-0000-04-00", NS)
    status, reason, message = conditions(failed)["OSInstalled"]
    assert (status, reason) == ("False", "InstallationFailed")
    assert message.startswith("bf.cfg for worker-0-0-0000-04-00 size (") and message.endswith("exceeds the maximum limit (131072)")
    # Error releases the node effect, customLabel included; Ready keeps it (DPF never removes it there).
    assert "dpu.example/state" not in host.get(Node, "worker-0-0").metadata.labels
    assert host.get(Node, "worker-0-1").metadata.labels.get("dpu.example/state") == "provisioning"


def test_kubeconfig_secret_with_string_data() -> None:
    """A static cluster's Secret written with stringData (what people type by hand) works the same."""
    kubeconfig = yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "admin@lab",
        "clusters": [{"name": "lab", "cluster": {"server": "https://192.0.2.10:6443"}}],
        "users": [{"name": "admin", "user": {"token": "t"}}],
        "contexts": [{"name": "admin@lab", "context": {"cluster": "lab", "user": "admin"}}]})
    text = yaml.safe_dump({
        "name": "static-stringdata", "fleet": {"racks": 1, "hostsPerRack": 1},
        "timeline": [{"at": "0s", "apply": {"manifests": [
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "lab-kubeconfig", "namespace": "lab"},
             "stringData": {"admin.conf": kubeconfig}},
            {"apiVersion": "provisioning.dpu.nvidia.com/v1alpha1", "kind": "DPUCluster",
             "metadata": {"name": "lab", "namespace": "lab"},
             "spec": {"type": "static", "maxNodes": 10, "version": "v1.30.2", "kubeconfig": "lab-kubeconfig"}}]}}],
        "expect": [{"await": {"name": "ready", "kind": "DPUCluster", "phase": "Ready", "within": "2m"}}],
    })
    runner = Runner(load_scenario_text(text), progress=False)
    result = runner.run()
    assert result.passed, [o.as_dict() for o in result.failures]
    assert "lab/lab" in runner.twin.dpu_clusters
