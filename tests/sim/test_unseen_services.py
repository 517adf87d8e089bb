"""DPF's own service-side manifests, applied unchanged, in scenarios nobody tuned the twin for.

`scenarios_unseen_svc/manifests/` holds copies of DPF v24.10.0-rc.6 files (the HBN + OVN and HBN-only user
guides, deploy/dpuservices, test/objects/application) with only the guides' envsubst placeholders filled. The
scenarios run them on 3-4 provisioned hosts with the services and servicechain attachments together.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from services_helpers import quiet_logging  # noqa: F401 (a fixture)

from dpf_core.api import admission, registry
from dpf_core.api.external import Node, Pod
from dpf_core.errors import Invalid
from dpf_core.store.memory import MemoryStore
from dpf_sim.runner import Runner, RunResult
from dpf_sim.scenario import load_scenario

HERE = Path(__file__).resolve().parent / "scenarios_unseen_svc"
MANIFESTS = HERE / "manifests"
DPU_CLUSTER = "dpu-cplane-tenant1/dpu-cplane-tenant1"
DPF_GROUPS = ("svc.dpu.nvidia.com/", "provisioning.dpu.nvidia.com/", "operator.dpu.nvidia.com/")


pytestmark = pytest.mark.usefixtures("quiet_logging")


def _run(name: str) -> tuple[Runner, RunResult]:
    runner = Runner(load_scenario(HERE / f"{name}.yaml"), progress=False, series=False)
    result = runner.run()
    assert result.passed, "\n".join(f"{o.name}: {o.detail}" for o in result.failures)
    return runner, result


def _dpf_documents() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(MANIFESTS.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and str(doc.get("apiVersion", "")).startswith(DPF_GROUPS):
                out.append((str(path.relative_to(MANIFESTS)), doc))
    return out


def test_every_dpf_manifest_copied_from_the_guides_and_samples_decodes() -> None:
    registry.load_all()
    docs = _dpf_documents()
    kinds = {d["kind"] for _, d in docs}
    assert {"DPUService", "DPUServiceInterface", "DPUServiceChain", "DPUServiceIPAM", "DPUDeployment",
            "DPUServiceTemplate", "DPUServiceConfiguration", "DPUServiceCredentialRequest"} <= kinds
    for where, doc in docs:
        obj = admission.decode(doc)
        assert obj.metadata.name == doc["metadata"]["name"].strip(), where


@pytest.mark.parametrize("sample", ["dpuserviceipam_subnet.yaml", "dpuserviceipam_cidr.yaml"])
def test_ipam_samples_are_refused_outside_the_operator_namespace_naming_the_field(sample: str) -> None:
    registry.load_all()
    raw = yaml.safe_load((MANIFESTS / "test-objects/application" / sample).read_text())
    store = MemoryStore()
    # test/objects has no namespace: kubectl puts it in `default`, which DPF's IPAM webhook refuses.
    with pytest.raises(Invalid) as err:
        admission.admit_create({**raw, "metadata": {**raw["metadata"], "namespace": "default"}}, store)
    assert "metadata.namespace" in str(err.value) and "dpf-operator-system" in str(err.value)
    ok = admission.admit_create({**raw, "metadata": {**raw["metadata"], "namespace": "dpf-operator-system"}}, store)
    assert ok.metadata.name == "pool1"


def test_hbn_ovn_guide_runs_hbn_from_its_dpuservice_behind_both_chains() -> None:
    runner, _ = _run("hbn-ovn-guide")
    store = runner.twin.stores()[DPU_CLUSTER]
    nodes = store.list(Node)
    assert len(nodes) == 4
    # A DPU node without flavor dpuResources still reports a BlueField's cpu and memory next to the SFs.
    for n in nodes:
        assert {"cpu", "memory", "nvidia.com/bf_sf"} <= set(n.status.allocatable)
    hbn = [p for p in store.list(Pod) if p.metadata.labels.get("svc.dpu.nvidia.com/service") == "doca-hbn"]
    assert len(hbn) == 4 and {p.status.phase for p in hbn} == {"Running"}
    networks = json.loads(hbn[0].metadata.annotations["k8s.v1.cni.cncf.io/networks"])
    # The guide's two iprequest entries, then one Multus entry per DPUServiceInterface the controller added.
    assert [(n["name"], n["interface"]) for n in networks] == [
        ("iprequest", "ip_lo"), ("iprequest", "ip_pf2dpu2"),
        ("mybrhbn", "p0_if"), ("mybrhbn", "p1_if"), ("mybrhbn", "pf2dpu2_if")]
    assert "k8s.v1.cni.cncf.io/network-status" in hbn[0].metadata.annotations


def test_dpudeployment_guide_survives_a_version_change_a_scale_down_and_up_and_deletion() -> None:
    runner, result = _run("dpudeployment-guide")
    detail = {o.name: o.detail for o in result.outcomes}
    # The DPU that left and joined again (same name) got a fresh OVS, its SFs advertised again, HBN's pod
    # wired by the CNI and every node's chain Ready: the fabric reaches HBN on all three.
    assert "as expected on 3 node(s)" in detail["p0-to-hbn-after-scale-up"]
    assert "3 object(s)" in detail["scaled-up-chains"]
    assert "nothing left" in detail["all-gone"]
    store = runner.twin.stores()[DPU_CLUSTER]
    assert not [p for p in store.list(Pod) if "ovn-hbn" in p.name]
