"""DPFOperatorConfig: the singleton, system components (host workloads, DPU DPUServices with chart, values,
MTUs, pull secrets), disabling, pause, readiness and the staged deletion."""

from __future__ import annotations

from typing import Any

from svc_world import OP_NS, World

from dpf_core.api.conditions import get_condition
from dpf_core.api.external import DaemonSet, Deployment, Secret
from dpf_core.api.operator import DPFOperatorConfig
from dpf_core.api.provisioning import BFB, DPUFlavor, DPUSet
from dpf_core.api.svc import DPUService, DPUServiceChain
from dpf_core.controllers import operator_config
from dpf_core.controllers.operator_config import parse_helm_chart

DPU_COMPONENTS = {"flannel", "multus", "sriov-device-plugin", "ovs-cni", "nvidia-k8s-ipam", "sfc-controller",
                  "servicechainset-controller", "ovs-helper"}


def world(**spec: Any) -> World:
    w = World(operator_config.controller(), clusters=0, operator_config=False)
    w.host.create(Secret.new("pull", OP_NS))
    w.host.create(Secret.new("stale", OP_NS, metadata={"name": "stale", "namespace": OP_NS,
                                                       "labels": {"dpu.nvidia.com/image-pull-secret": ""}}))
    w.host.create(DPFOperatorConfig.new("dpfoperatorconfig", OP_NS, spec={
        "provisioningController": {"bfbPVCName": "bfb-pvc"}, "imagePullSecrets": ["pull"],
        "networking": {"controlPlaneMTU": 1400, "highSpeedMTU": 9000}, **spec}))
    return w


def cond(w: World, type: str) -> tuple[str, str, str]:
    c = get_condition(w.host.get(DPFOperatorConfig, "dpfoperatorconfig", OP_NS).status.conditions, type)
    assert c is not None
    return c.status, c.reason, c.message


def test_parse_helm_chart() -> None:
    assert parse_helm_chart("oci://ghcr.io/nvidia/charts/dpu-networking:v1.2") == ("oci://ghcr.io/nvidia/charts", "dpu-networking", "v1.2")


def test_only_the_configured_singleton_is_reconciled() -> None:
    w = World(operator_config.controller(), clusters=0, operator_config=False)
    w.host.create(DPFOperatorConfig.new("dpfoperatorconfig", "other-ns", spec={"provisioningController": {"bfbPVCName": "p"}}))
    w.run()
    assert w.host.get(DPFOperatorConfig, "dpfoperatorconfig", "other-ns").metadata.finalizers == []
    assert w.host.list(DPUService) == []


def test_components_are_deployed() -> None:
    w = world(flannel={"helmChart": "https://charts.example.com/flannel:1.0"},
              multus={"image": "registry.example.com/multus:v9"}, staticClusterManager={})
    assert w.run() == 0
    services = {s.name: s for s in w.host.list(DPUService, OP_NS)}
    assert set(services) == DPU_COMPONENTS
    multus = services["multus"]
    src = multus.spec.helm_chart.source
    assert (src.repo_url, src.chart, src.version) == ("oci://ghcr.io/nvidia/dpf-system-helm", "dpu-networking", "v24.10.0")
    assert multus.spec.helm_chart.values == {"multus": {"enabled": True, "mtu": "9000", "imagePullSecrets": [{"name": "pull"}],
                                                        "image": {"repository": "registry.example.com/multus", "tag": "v9"}}}
    assert multus.metadata.labels["dpu.nvidia.com/component"] == "multus"
    flannel = services["flannel"]
    assert (flannel.spec.helm_chart.source.repo_url, flannel.spec.helm_chart.source.chart) == ("https://charts.example.com", "flannel")
    assert (flannel.spec.helm_chart.values or {})["flannel"]["flannel"]["mtu"] == "1400"
    deployments = {d.name for d in w.host.list(Deployment, OP_NS)}
    assert deployments == {"provisioning-controller", "dpuservice-controller", "kamaji-cluster-manager", "static-cluster-manager"}
    assert [d.name for d in w.host.list(DaemonSet, OP_NS)] == ["dpudetector"]
    args = w.host.get(Deployment, "provisioning-controller", OP_NS).spec.template.spec.containers[0].model_dump()["args"]
    assert "--bfb-pvc=bfb-pvc" in args and "--image-pull-secrets=pull" in args
    # Pull secrets: the configured one labelled, a stale label removed.
    assert "dpu.nvidia.com/image-pull-secret" in w.host.get(Secret, "pull", OP_NS).metadata.labels
    assert "dpu.nvidia.com/image-pull-secret" not in w.host.get(Secret, "stale", OP_NS).metadata.labels
    assert cond(w, "SystemComponentsReconciled")[0] == "True"
    assert cond(w, "SystemComponentsReady")[0] == "False"


def test_disabling_a_component_deletes_it_and_the_static_manager_is_off_by_default() -> None:
    w = world()
    w.run()
    assert w.host.try_get(Deployment, "static-cluster-manager", OP_NS) is None
    w.host.patch(DPFOperatorConfig, "dpfoperatorconfig", OP_NS, {"spec": {"multus": {"disable": True}}})
    w.run()
    assert w.host.try_get(DPUService, "multus", OP_NS) is None
    assert w.host.try_get(DPUService, "flannel", OP_NS) is not None


def test_paused_config_changes_nothing() -> None:
    w = world()
    w.run()
    w.host.patch(DPFOperatorConfig, "dpfoperatorconfig", OP_NS, {"spec": {"overrides": {"paused": True}, "multus": {"disable": True}}})
    w.run()
    assert w.host.try_get(DPUService, "multus", OP_NS) is not None
    w.host.patch(DPFOperatorConfig, "dpfoperatorconfig", OP_NS, {"spec": {"overrides": {"paused": False}}})
    w.run()
    assert w.host.try_get(DPUService, "multus", OP_NS) is None


def test_ready_when_every_component_is_ready() -> None:
    w = world()
    w.run()
    for d in w.host.list(Deployment, OP_NS):
        w.host.patch(Deployment, d.name, OP_NS, {"status": {"readyReplicas": 1}}, subresource="status")
    for d in w.host.list(DaemonSet, OP_NS):
        w.host.patch(DaemonSet, d.name, OP_NS, {"status": {"desiredNumberScheduled": 2, "numberReady": 2}}, subresource="status")
    ready = {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Success",
                                        "lastTransitionTime": "2025-01-01T00:00:00Z"}]}}
    services = w.host.list(DPUService, OP_NS)
    for s in services[:-1]:
        w.host.patch(DPUService, s.name, OP_NS, ready, subresource="status")
    w.run()
    status, _, message = cond(w, "SystemComponentsReady")
    assert status == "False" and f"DPUService {OP_NS}/{services[-1].name}" in message
    w.host.patch(DPUService, services[-1].name, OP_NS, ready, subresource="status")
    w.run()
    assert cond(w, "Ready")[:2] == ("True", "Success")


def test_deletion_goes_stage_by_stage_and_components_last() -> None:
    w = world()
    w.run()
    chain = DPUServiceChain.new("chain", "default", metadata={"name": "chain", "namespace": "default", "finalizers": ["test/hold"]},
                                spec={"template": {"spec": {"template": {"spec": {"switches": [{"ports": [
                                    {"serviceInterface": {"matchLabels": {"a": "b"}}}]}]}}}}})
    w.host.create(chain)
    w.host.create(DPUService.new("user", "default", spec={"helmChart": {"source": {"repoURL": "https://x.example", "version": "1"}}}))
    w.host.create(BFB.new("bfb", OP_NS, spec={"url": "http://x.example/a.bfb"}))
    w.host.create(DPUSet.new("set", OP_NS, spec={}))
    w.host.delete(DPFOperatorConfig, "dpfoperatorconfig", OP_NS)
    w.run(30)
    # Stage 2 (the chain) blocks stage 3 and 4; the system components are untouched.
    assert w.host.get(DPUServiceChain, "chain", "default").metadata.deletion_timestamp is not None
    assert w.host.try_get(DPUService, "user", "default") is not None
    assert w.host.try_get(BFB, "bfb", OP_NS) is not None
    assert "DPUServiceChain default/chain" in cond(w, "SystemComponentsReconciled")[2]
    released = w.host.get(DPUServiceChain, "chain", "default").deepcopy()
    released.metadata.finalizers = []
    w.host.update(released)
    w.run(60)
    for cls, name, ns in ((DPUService, "user", "default"), (BFB, "bfb", OP_NS), (DPUSet, "set", OP_NS),
                          (DPUService, "multus", OP_NS), (Deployment, "provisioning-controller", OP_NS),
                          (DPFOperatorConfig, "dpfoperatorconfig", OP_NS)):
        assert w.host.try_get(cls, name, ns) is None, (cls.KIND.kind, name)


def test_the_provisioning_controller_ships_the_default_dpu_flavor() -> None:
    w = world()
    assert w.run() == 0
    flavor = w.host.get(DPUFlavor, operator_config.DEFAULT_DPU_FLAVOR, OP_NS)
    assert flavor.spec.bfcfg_parameters == ["UPDATE_ATF_UEFI=yes", "UPDATE_DPU_OS=yes", "WITH_NIC_FW_UPDATE=yes"]
    script = flavor.spec.ovs.raw_config_script if flavor.spec.ovs is not None else ""
    assert "_ovs-vsctl set Port p0 external_ids:dpf-type=physical" in script
    assert script.rstrip().endswith("_ovs-vsctl set Interface pf0hpf type=dpdk")
    assert [f.path for f in flavor.spec.config_files] == [
        "/etc/mellanox/mlnx-bf.conf", "/etc/mellanox/mlnx-ovs.conf", "/etc/mellanox/mlnx-sf.conf"]


def test_a_users_flavor_of_that_name_is_kept_and_a_disabled_provisioning_controller_ships_none() -> None:
    w = world()
    mine = DPUFlavor.new(operator_config.DEFAULT_DPU_FLAVOR, OP_NS, spec={"bfcfgParameters": ["MINE=1"]})
    w.host.create(mine)
    w.run()
    assert w.host.get(DPUFlavor, operator_config.DEFAULT_DPU_FLAVOR, OP_NS).spec.bfcfg_parameters == ["MINE=1"]

    off = world(provisioningController={"bfbPVCName": "bfb-pvc", "disable": True})
    off.run()
    assert off.host.list(DPUFlavor) == []


def test_a_pull_secret_created_later_is_labelled_and_other_secrets_do_not_wake_the_operator() -> None:
    w = World(operator_config.controller(), clusters=0, operator_config=False)
    w.host.create(DPFOperatorConfig.new("dpfoperatorconfig", OP_NS, spec={
        "provisioningController": {"bfbPVCName": "bfb-pvc"}, "imagePullSecrets": ["late"]}))
    w.run()
    assert cond(w, "ImagePullSecretsReconciled")[0] == "True"  # a missing one is skipped (docs/differences.md)
    ctl = w.driver.managers[0].controllers[0]
    before = ctl.reconciles
    for i in range(5):
        w.host.create(Secret.new(f"dpu-bootstrap-{i}", OP_NS))  # what provisioning puts in the namespace
    w.run()
    assert ctl.reconciles == before
    w.host.create(Secret.new("late", OP_NS))
    w.run()
    assert "dpu.nvidia.com/image-pull-secret" in w.host.get(Secret, "late", OP_NS).metadata.labels
    assert ctl.reconciles > before
