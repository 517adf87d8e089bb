"""scenarios/operator-config.yaml (components, pause, staged deletion), plus the rendered values: MTUs, pull
secrets, chart, as the DPU components' DPUServices carry them while the config lives."""

from __future__ import annotations

from pathlib import Path

import yaml
from services_helpers import SCENARIOS, run

from dpf_core.api.external import Application, Pod
from dpf_core.api.operator import DPFOperatorConfig
from dpf_core.api.svc import DPUService
from dpf_sim.twin import Twin, TwinConfig

NS = "dpf-operator-system"


def test_operator_config_scenario() -> None:
    runner = run("operator-config.yaml")
    assert runner.twin.host.list(DPFOperatorConfig) == []


def test_system_components_carry_mtus_pull_secrets_and_the_networking_chart() -> None:
    sc = yaml.safe_load((SCENARIOS / "operator-config.yaml").read_text())
    samples = Path(__file__).resolve().parents[2] / "samples" / "provisioning.yaml"
    twin = Twin(TwinConfig(seed=1, fleet={"racks": 1, "hosts_per_rack": 1}, keep_log=False, attachments=("services",),
                           models={"charts": sc["models"]["charts"]}))
    docs = list(yaml.safe_load_all(samples.read_text()))
    for d in docs:
        if d["kind"] == "DPFOperatorConfig":
            d["spec"]["networking"] = {"controlPlaneMTU": 1450, "highSpeedMTU": 9000}
            d["spec"]["multus"] = {"image": "registry.example.com/multus:v9"}
    twin.apply(docs)
    twin.run(1800)
    flannel = twin.host.get(DPUService, "flannel", NS)
    values = flannel.spec.helm_chart.values or {}
    assert values["flannel"]["enabled"] is True and values["flannel"]["flannel"]["mtu"] == "1450"
    assert values["flannel"]["imagePullSecrets"] == [{"name": "dpf-pull-secret"}]
    source = flannel.spec.helm_chart.source
    assert (source.repo_url, source.chart, source.version) == ("oci://ghcr.io/nvidia/dpf-system-helm", "dpu-networking", "v24.10.0")
    multus = twin.host.get(DPUService, "multus", NS).spec.helm_chart.values or {}
    assert multus["multus"]["mtu"] == "9000"
    assert multus["multus"]["image"] == {"repository": "registry.example.com/multus", "tag": "v9"}
    # ArgoCD rendered the image override into the DPU cluster's pods.
    store = twin.dpu_cluster_store("dpu-cplane-tenant1", "dpu-cplane-tenant1")
    assert store is not None
    images = {c.image for p in store.list(Pod, NS) for c in p.spec.containers if p.metadata.labels.get("app.kubernetes.io/name") == "multus"}
    assert images == {"registry.example.com/multus:v9"}
    assert {a.name for a in twin.host.list(Application, NS)} >= {"dpu-cplane-tenant1-multus", "dpu-cplane-tenant1-flannel"}
