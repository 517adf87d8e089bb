"""What a Ready DPU's pass checks and no watch of DPF's reports is woken by the twin, so the twin's hour-long Ready
poll (TWIN_POLLS) never hides it: the node-effect taint put back on the host Node, and the DPUCluster changing
under Ready DPUs (its kubeconfig Secret; `spec.kubeconfig` itself is immutable). Faults that break or mend an API server have their own wakes (test_faults.py)."""

from __future__ import annotations

from pathlib import Path

import yaml

from dpf_core.api.external import Node, Secret
from dpf_core.api.meta import Taint
from dpf_core.api.provisioning import DPU, DPUCluster
from dpf_sim.twin import Twin, TwinConfig

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "provisioning.yaml"
MANIFESTS = list(yaml.safe_load_all(SAMPLES.read_text()))
NS = "dpf-operator-system"
D0 = "worker-0-0-0000-04-00"
CLUSTER_NS = CLUSTER = "dpu-cplane-tenant1"


def ready_twin() -> Twin:
    twin = Twin(TwinConfig(seed=1, fleet={"racks": 1, "hosts_per_rack": 2}, keep_log=False))
    twin.apply(MANIFESTS)
    twin.run(1800)
    assert {str(d.status.phase) for d in twin.host.list(DPU)} == {"Ready"}
    assert twin.options.ready_poll >= 3600  # anything seen below within seconds was woken, not polled
    return twin


def dpu_passes(twin: Twin) -> int:
    assert twin.manager is not None
    return int(next(c for c in twin.manager.controllers if c.name == "dpu").metrics()["reconciles"])


def ready_condition(twin: Twin, name: str) -> tuple[str, str]:
    d = twin.host.get(DPU, name, NS)
    c = next(c for c in d.status.conditions if c.type == "Ready")
    return c.status, c.reason


def test_a_node_effect_taint_put_back_on_a_ready_dpus_host_is_lifted_at_once() -> None:
    twin = ready_twin()
    host = twin.host.get(DPU, D0, NS).spec.node_name
    node = twin.host.get(Node, host).deepcopy()
    assert all(t.key != "dpu" for t in node.spec.taints)
    node.spec.taints.append(Taint(key="dpu", value="provisioning", effect="NoSchedule"))
    twin.host.update(node)
    twin.run(1805)
    assert all(t.key != "dpu" for t in twin.host.get(Node, host).spec.taints)


def test_an_unrelated_host_node_change_wakes_no_ready_dpu() -> None:
    twin = ready_twin()
    host = twin.host.get(DPU, D0, NS).spec.node_name
    before = dpu_passes(twin)
    node = twin.host.get(Node, host).deepcopy()
    node.metadata.labels["team"] = "blue"
    twin.host.update(node)
    twin.run(1805)
    assert dpu_passes(twin) == before


def test_a_dpu_clusters_kubeconfig_secret_deleted_is_seen_by_its_ready_dpus_at_once() -> None:
    twin = ready_twin()
    dc = twin.host.get(DPUCluster, CLUSTER, CLUSTER_NS)
    twin.host.delete(Secret, dc.spec.kubeconfig, CLUSTER_NS)
    twin.run(1801)
    assert ready_condition(twin, D0) == ("False", "DPUClusterClientGetError")
