"""scenarios/dpudeployment.yaml, plus the version plumbing: a template change is a new version on the
DPUService, the DPUSet's node labels, the DPU nodes and the DaemonSet's node affinity, and nothing else moves."""

from __future__ import annotations

from services_helpers import DPU_CLUSTER, run

from dpf_core.api.external import DaemonSet, Node
from dpf_core.api.provisioning import DPU, DPUSet
from dpf_core.api.svc import ANNOTATION_DPUSERVICE_VERSION, DPUService, DPUServiceChain

NS = "dpf-operator-system"
HBN_KEY = "svc.dpu.nvidia.com/dpuservice-hbn-version"
FW_KEY = "svc.dpu.nvidia.com/dpuservice-firewall-version"


def test_dpudeployment_scenario_rolls_out_a_new_version() -> None:
    runner = run("dpudeployment.yaml")
    twin = runner.twin
    hbn = twin.host.get(DPUService, "example-hbn", NS)
    fw = twin.host.get(DPUService, "example-firewall", NS)
    hbn_v, fw_v = hbn.metadata.annotations[ANNOTATION_DPUSERVICE_VERSION], fw.metadata.annotations[ANNOTATION_DPUSERVICE_VERSION]
    assert hbn_v.startswith("v-") and fw_v.startswith("v-") and hbn_v != fw_v
    assert "placeholder-for-version" not in str(twin.host.get(DPUSet, "example-dpuset1", NS).wire())
    labels = twin.host.get(DPUSet, "example-dpuset1", NS).spec.dpu_template.spec.cluster.node_labels  # type: ignore[union-attr]
    assert labels[HBN_KEY] == hbn_v and labels[FW_KEY] == fw_v
    chain = twin.host.get(DPUServiceChain, "example", NS)
    assert labels["svc.dpu.nvidia.com/dpuservicechain-version"] == chain.metadata.annotations["dpuservicechain.nvidia.com/version"]
    # Every DPU node carries the versions the services now select on.
    store = twin.stores()[DPU_CLUSTER]
    for node in store.list(Node):
        assert node.metadata.labels[HBN_KEY] == hbn_v
        assert node.metadata.labels[FW_KEY] == fw_v
    ds = next(d for d in store.list(DaemonSet, NS) if d.name.endswith("doca-hbn"))
    terms = ds.spec.template.spec.affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]  # type: ignore[index]
    assert {"key": HBN_KEY, "operator": "In", "values": [hbn_v]} in terms[0]["matchExpressions"]
    # The DPUs were relabelled, not reprovisioned: each was flashed once.
    assert len(twin.host.list(DPU)) == 2
    assert all(bf.installs == 1 for bf in twin.bluefields.dpus.values())
