"""DPUService and service-chain cases round 1 (test_unseen_services.py) did not reach, each a scenario on 3
provisioned hosts (`scenarios_unseen_svc/`): a deployInCluster service, both DPUServiceIPAM modes in a run, DPF's
test/objects chain samples with a nodeSelector, and deletions in unguided orders. What the awaits cannot see
(objects at a moment the run has moved past) is read from a run cut short before a later step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from services_helpers import quiet_logging, run_passing  # noqa: F401 (quiet_logging is a fixture)

from dpf_core.api.external import Application, AppProject, IPPool, Namespace, Node, Pod
from dpf_core.api.svc import DPUService, DPUServiceInterface, ServiceChain, ServiceInterface
from dpf_sim.cni import ANNOTATION_NETWORK_STATUS
from dpf_sim.runner import Runner, RunResult

HERE = Path(__file__).resolve().parent / "scenarios_unseen_svc"
CLUSTER = "dpu-cplane-tenant1/dpu-cplane-tenant1"
OPERATOR_NS = "dpf-operator-system"
FIRST, SECOND, THIRD = (f"worker-0-{i}-0000-04-00" for i in range(3))


pytestmark = pytest.mark.usefixtures("quiet_logging")


def _run(name: str, *, before: str | None = None) -> tuple[Runner, RunResult]:
    return run_passing(HERE / f"{name}.yaml", before=before)


def _networks(pod: Pod) -> dict[str, dict[str, Any]]:
    return {n["interface"]: n for n in json.loads(pod.metadata.annotations[ANNOTATION_NETWORK_STATUS])}


def _service_pods(runner: Runner, service: str) -> dict[str, Pod]:
    return {p.spec.node_name or "": p for p in runner.twin.stores()[CLUSTER].list(Pod)
            if p.metadata.labels.get("svc.dpu.nvidia.com/service") == service}


# --- 1. deployInCluster ---------------------------------------------------------------------------------------


def test_deploy_in_cluster_service_gets_one_host_application_and_runs_on_the_host_nodes() -> None:
    runner, _ = _run("deploy-in-cluster", before="remove")
    host = runner.twin.host
    app = host.get(Application, "in-cluster-host-agent", OPERATOR_NS)
    assert (app.spec.destination.name, app.spec.destination.namespace) == ("in-cluster", "host-tools")
    assert app.spec.project == "doca-platform-project-host"
    project = host.get(AppProject, "doca-platform-project-host", OPERATOR_NS)
    assert project.wire()["spec"]["destinations"] == [{"name": "in-cluster", "namespace": "*"}]
    # One Application for the host service (none per DPU cluster), one per DPU cluster for the other.
    assert sorted(a.name for a in host.list(Application, OPERATOR_NS)
                  if a.metadata.labels.get("dpu.nvidia.com/dpuservice-name") in ("host-agent", "doca-telemetry-service")) \
        == ["dpu-cplane-tenant1-doca-telemetry-service", "in-cluster-host-agent"]
    # The DaemonSet's pods on every host node, the Deployment's two anywhere on the host; nothing in the DPU
    # cluster, not even the namespace (no pull secrets to copy there).
    pods = [p for p in host.list(Pod, "host-tools") if p.status.phase == "Running"]
    host_nodes = {n.name for n in host.list(Node)}
    daemon = sorted(p.spec.node_name or "" for p in pods if p.metadata.labels.get("app.kubernetes.io/name") == "host-agent")
    assert daemon == sorted(host_nodes) and len(daemon) == 3
    assert {p.spec.node_name for p in pods} <= host_nodes
    dpu = runner.twin.stores()[CLUSTER]
    assert dpu.try_get(Namespace, "host-tools") is None
    assert not [p for p in dpu.list(Pod) if "host-agent" in p.name]
    svc = host.get(DPUService, "host-agent", "host-tools")
    assert {c.type: c.status for c in svc.status.conditions} == {
        "Ready": "True", "ApplicationPrereqsReconciled": "True", "ApplicationsReconciled": "True",
        "ApplicationsReady": "True", "DPUServiceInterfaceReconciled": "True"}


def test_deploy_in_cluster_service_deletion_removes_application_and_host_workloads() -> None:
    runner, result = _run("deploy-in-cluster")
    detail = {o.name: o.detail for o in result.outcomes}
    assert "nothing left" in detail["host-side-gone"]
    # The DPU-side service is untouched by it.
    assert runner.twin.host.try_get(Application, "dpu-cplane-tenant1-doca-telemetry-service", OPERATOR_NS) is not None


# --- 2. DPUServiceIPAM modes ----------------------------------------------------------------------------------


def test_ipam_modes_render_pools_and_pods_take_addresses_from_their_node_blocks() -> None:
    runner, _ = _run("ipam-modes", before="delete-net-pool")
    store = runner.twin.stores()[CLUSTER]
    pool = store.get(IPPool, "subnet-pool", OPERATOR_NS)
    assert pool.wire()["spec"] == {"subnet": "10.10.0.0/24", "perNodeBlockSize": 16, "gateway": "10.10.0.1",
                                   "defaultGateway": True, "routes": [{"dst": "10.20.0.0/16"}]}
    assert pool.metadata.labels == {"svc.dpu.nvidia.com/pool": "subnet-pool",
                                    "dpu.nvidia.com/dpuserviceipam-name": "subnet-pool",
                                    "dpu.nvidia.com/dpuserviceipam-namespace": OPERATOR_NS}
    # Contiguous blocks of 16 from the first host address, one per node in name order.
    assert [(a.node_name, a.start_ip, a.end_ip) for a in pool.status.allocations] == [
        (FIRST, "10.10.0.1", "10.10.0.16"), (SECOND, "10.10.0.17", "10.10.0.32"), (THIRD, "10.10.0.33", "10.10.0.48")]
    pods = _service_pods(runner, "fw")
    assert sorted(pods) == [FIRST, SECOND, THIRD]
    first, third = _networks(pods[FIRST]), _networks(pods[THIRD])
    # ipv4Subnet: the shared gateway is skipped, the next free addresses go to ip_sub, then net1 (whose pool the
    # IPAM injector took from the chain port's ipam matchLabels).
    assert (first["ip_sub"]["ips"], first["ip_sub"]["gateway"]) == (["10.10.0.2"], ["10.10.0.1"])
    assert first["net1"]["ips"] == ["10.10.0.3"] and third["net1"]["ips"] == ["10.10.0.34"]
    net1 = json.loads(pods[FIRST].metadata.annotations["k8s.v1.cni.cncf.io/networks"])
    # The injector writes back multus' parsed entries: the pod's namespace is filled in.
    assert {"name": "mybrsfc", "namespace": OPERATOR_NS, "interface": "net1", "cni-args": {
        "allocateDefaultGateway": False, "poolNames": ["subnet-pool"], "poolType": "ippool"}} in net1
    # ipv4Network: a /28 per node with its own gateway at index 1; 10.30.0.2 is excluded, so the first dynamic
    # address is .3; allocateDefaultGateway hands the pod the gateway itself.
    assert (first["ip_net"]["ips"], first["ip_net"]["gateway"]) == (["10.30.0.3"], ["10.30.0.1"])
    assert first["ip_gw"]["ips"] == ["10.30.0.1"]
    assert _networks(pods[SECOND])["ip_net"]["ips"] == ["10.30.0.19"]  # .17 gateway, .18 excluded
    assert third["ip_net"]["ips"] == ["10.30.0.34"] and third["ip_gw"]["ips"] == ["10.30.0.33"]


def test_deleting_an_ipam_in_use_keeps_the_addresses_but_new_pods_cannot_start() -> None:
    runner, result = _run("ipam-modes")
    detail = {o.name: o.detail for o in result.outcomes}
    assert "3 object(s)" in detail["fw-pods-keep-running"]
    store = runner.twin.stores()[CLUSTER]
    assert [p.name for p in store.list(IPPool)] == ["subnet-pool"]
    pods = _service_pods(runner, "fw")
    assert len(pods) == 3
    new = [pod for pod in pods.values() if pod.metadata.labels.get("revision") == "2"]
    # RollingUpdate, maxUnavailable 1: one node's pod replaced, and the rollout stops while that one cannot start.
    assert len(new) == 1
    assert sorted(p.status.phase or "" for p in pods.values() if p not in new) == ["Running", "Running"]
    for pod in new:
        # The kubelet model holds the containers until CNI ADD succeeds: Pending, the CNI's error on Ready.
        assert pod.status.phase == "Pending" and ANNOTATION_NETWORK_STATUS not in pod.metadata.annotations
        ready = next(c for c in pod.status.conditions if c.type == "Ready")
        assert (ready.status, ready.reason) == ("False", "ContainerCreating")
        assert "cidrpool net-pool not found" in (ready.message or "")
    svc = runner.twin.host.get(DPUService, "fw", OPERATOR_NS)
    apps_ready = next(c for c in svc.status.conditions if c.type == "ApplicationsReady")
    assert apps_ready.status == "False" and "Health: Progressing" in (apps_ready.message or "")


# --- 3. nodeSelector on interface and chain sets ----------------------------------------------------------------


def test_node_selector_sets_follow_the_node_label() -> None:
    runner, result = _run("node-selector-chain")
    assert all(o.passed for o in result.outcomes)
    store = runner.twin.stores()[CLUSTER]
    left = {si.name: si for si in store.list(ServiceInterface, "default")}
    assert sorted(left) == sorted(f"{n}-{THIRD}" for n in ("net1-service", "p0-fw", "pf0", "pf0-vf2"))
    # vf parentInterfaceRef names the parent's child on the same node.
    assert left[f"pf0-vf2-{THIRD}"].wire()["spec"]["vf"]["parentInterfaceRef"] == f"pf0-{THIRD}"
    assert left[f"net1-service-{THIRD}"].metadata.labels["svc.dpu.nvidia.com/service-id"] == "my-service"
    assert [c.name for c in store.list(ServiceChain, "default")] == [f"svc-chain-test-{THIRD}"]
    world = runner.twin.servicechain  # type: ignore[attr-defined]
    unlabelled = world.nodes[(CLUSTER, FIRST)].datapath.bridges["br-sfc"].ports
    labelled = world.nodes[(CLUSTER, THIRD)].datapath.bridges["br-sfc"].ports
    never = world.nodes[(CLUSTER, SECOND)].datapath.bridges["br-sfc"].ports
    assert "pf0vf2" in labelled and "pf0vf2" not in unlabelled and "pf0vf2" not in never
    # DPF's DeleteInterfacesFromOvs removes a physical interface's port by name: the uplink p0 leaves br-sfc of
    # the node that lost the label (the flavor's script put it there; nothing adds it back).
    assert "p0" in labelled and "p0" in never and "p0" not in unlabelled


# --- 4. deletion orders -----------------------------------------------------------------------------------------


def test_deletion_orders_chain_first_named_interface_and_service_of_a_gone_cluster() -> None:
    runner, result = _run("deletion-order")
    detail = {o.name: o.detail for o in result.outcomes}
    assert "3 object(s)" in detail["p1-chain-broken"]
    store = runner.twin.stores()[CLUSTER]
    # The first chain's label left its interfaces, its cookie left the switches; the second chain keeps its
    # ServiceChains and, as DPF's agent aborts a pass that misses a member, its flows.
    for si in store.list(ServiceInterface, OPERATOR_NS):
        assert not si.metadata.labels.get("svc.dpu.nvidia.com/service-chain", "").startswith("p0-to-fw")
    dp = runner.twin.servicechain.nodes[(CLUSTER, FIRST)].datapath  # type: ignore[attr-defined]
    assert "p1" not in dp.bridges["br-sfc"].ports and "pf0vf3" in dp.bridges["br-sfc"].ports
    assert len(dp.dump_flows("br-sfc")) == 2
    # The service of the deleted cluster went only after the user released its Application.
    gone = [line for line in runner.twin.log.lines if "DELETED DPUService dpf-operator-system/fw " in line]
    released = [line for line in runner.twin.log.lines if "(release-application)" in line]
    assert len(gone) == 1 and len(released) == 1
    assert float(gone[0].split()[0]) >= float(released[0].split()[0]) == 48 * 60
    # Freed: its interface is no longer marked consumed.
    dsi = runner.twin.host.get(DPUServiceInterface, "fw-net1", OPERATOR_NS)
    assert "dpu.nvidia.com/consumed-by" not in dsi.metadata.annotations


def test_a_service_being_deleted_while_its_cluster_is_unreachable_waits_for_the_application() -> None:
    runner, _ = _run("deletion-order", before="release-application")
    svc = runner.twin.host.get(DPUService, "fw", OPERATOR_NS)
    assert svc.metadata.deletion_timestamp is not None
    cond = next(c for c in svc.status.conditions if c.type == "ApplicationsReconciled")
    assert (cond.status, cond.reason) == ("False", "AwaitingDeletion")
    assert "dpf-operator-system/dpu-cplane-tenant1-fw.argoproj.io" in cond.message
    app = runner.twin.host.get(Application, "dpu-cplane-tenant1-fw", OPERATOR_NS)
    assert app.metadata.deletion_timestamp is not None
    assert app.metadata.finalizers == ["resources-finalizer.argocd.argoproj.io"]
    # ArgoCD tried and could not reach the cluster: the workloads there were never touched.
    assert any(c.get("type") == "DeletionError" and "connection refused" in c.get("message", "")
               for c in app.wire()["status"]["conditions"])
    assert len([p for p in runner.twin.stores()[CLUSTER].list(Pod) if "fw-fw" in p.name]) == 3

    # Still consumed while it waits; DPF writes the bare DPUService name (same namespace).
    dsi = runner.twin.host.get(DPUServiceInterface, "fw-net1", OPERATOR_NS)
    assert dsi.metadata.annotations["dpu.nvidia.com/consumed-by"] == "fw"
