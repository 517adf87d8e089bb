"""Day-2 changes on a RUNNING service deployment, each a scenario on 3 provisioned hosts
(`scenarios_unseen_svc_3/`): a DPUService's chart and values changed, a DPUServiceChain edited in place, a
DPUServiceInterface deleted under a chain and re-created, DPUServiceIPAMs too small for the nodes and then
enlarged, the DPUs re-provisioned under services and chains, and a DPUDeployment's service version bumped.

Where an await can only see the end state, the tests read what happened in between from a record of the host's
DPUService / DPUDeployment events, or from a run cut short before a later step.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from services_helpers import before_step, quiet_logging  # noqa: F401 (quiet_logging is a fixture)

from dpf_core.api.external import Application, CIDRPool, Event, IPPool, Node, Pod
from dpf_core.api.meta import KubeObject
from dpf_core.api.provisioning import DPU
from dpf_core.api.svc import (
    DPUDeployment,
    DPUService,
    DPUServiceInterface,
    DPUServiceIPAM,
    DPUServiceTemplate,
    ServiceChain,
    ServiceChainSet,
    ServiceInterface,
)
from dpf_core.controllers.sfc import chain_cookie
from dpf_core.store.protocol import WatchEvent
from dpf_sim.cni import ANNOTATION_NETWORK_STATUS
from dpf_sim.runner import Runner, RunResult
from dpf_sim.scenario import load_scenario

HERE = Path(__file__).resolve().parent / "scenarios_unseen_svc_3"
CLUSTER = "dpu-cplane-tenant1/dpu-cplane-tenant1"
OPERATOR_NS = "dpf-operator-system"
NODES = FIRST, SECOND, THIRD = tuple(f"worker-0-{i}-0000-04-00" for i in range(3))
_PORT_REF = re.compile(r"(?:in_port=|output:)(\d+)")


pytestmark = pytest.mark.usefixtures("quiet_logging")


class History:
    """(sim time, condition type -> (status, message)) of one host object, one entry per change of them."""

    def __init__(self, runner: Runner, kind: type[KubeObject], name: str) -> None:
        self.entries: list[tuple[float, dict[str, tuple[str, str]]]] = []
        self._env = runner.twin.env
        self._name = name
        runner.twin.host.subscribe(self._seen, [kind])

    def _seen(self, ev: WatchEvent) -> None:
        if ev.type == "DELETED" or ev.object.name != self._name:
            return
        status = getattr(ev.object, "status", None)
        conds = {c.type: (c.status, c.message or "") for c in getattr(status, "conditions", [])}
        if not self.entries or self.entries[-1][1] != conds:
            self.entries.append((float(self._env.now), conds))

    def between(self, start: float, end: float) -> list[dict[str, tuple[str, str]]]:
        """The conditions in effect at `start`, then every change until `end`."""
        earlier = [c for t, c in self.entries if t < start]
        return earlier[-1:] + [c for t, c in self.entries if start <= t < end]


def _load(name: str, before: str | None = None) -> Runner:
    """The scenario; with `before`, only the steps ahead of that step and the awaits and traces that do not wait
    for it or a later one (the run then ends once they are decided: a trace keeps it going until its time)."""
    loaded = load_scenario(HERE / f"{name}.yaml")
    if before is not None:
        loaded = before_step(loaded, before)
    return Runner(loaded, progress=False, series=False)


def _run(runner: Runner) -> RunResult:
    result = runner.run()
    assert result.passed, "\n".join(f"{o.name}: {o.detail}" for o in result.failures)
    return result


def _detail(result: RunResult, name: str) -> str:
    return next(o.detail for o in result.outcomes if o.name == name)


def _pods(runner: Runner, service: str) -> dict[str, Pod]:
    return {p.spec.node_name or "": p for p in runner.twin.stores()[CLUSTER].list(Pod)
            if p.metadata.labels.get("svc.dpu.nvidia.com/service") == service}


def _datapath(runner: Runner, node: str) -> Any:
    return runner.twin.servicechain.nodes[(CLUSTER, node)].datapath  # type: ignore[attr-defined]


def _chain_flows(runner: Runner, node: str, chain: str) -> list[str]:
    """The priority-20 flows the SFC agent wrote for `<chain>-<node>` (learned ones left out)."""
    cookie = chain_cookie(OPERATOR_NS, f"{chain}-{node}")
    return [f for f in _datapath(runner, node).dump_flows("br-sfc", stats=False, cookie=cookie) if "priority=20" in f]


def _ofport(runner: Runner, node: str, port: str) -> int:
    return int(next(p["ofport"] for p in _datapath(runner, node).ports("br-sfc") if p["name"] == port))


def _in_port(flow: str) -> int:
    m = re.search(r"in_port=(\d+)", flow)
    assert m is not None, flow
    return int(m.group(1))


def _sf_of(runner: Runner, node: str, service: str) -> str:
    """The br-sfc port the CNI made for the service's pod on `node` (Interface dpf-id `<ns>/<pod>/<ifname>`)."""
    pod = _pods(runner, service)[node]
    return str(next(p["name"] for p in _datapath(runner, node).ports("br-sfc")
                    if p["external_ids"].get("dpf-id", "").startswith(f"{OPERATOR_NS}/{pod.name}/")))


def _assert_switch_clean(runner: Runner, node: str) -> None:
    """No flow on br-sfc names an ofport that is no longer on the bridge, and the stale sweep finds nothing."""
    dp = _datapath(runner, node)
    live = {int(p["ofport"]) for p in dp.ports("br-sfc") if p["ofport"] is not None}
    named = {int(m) for f in dp.dump_flows("br-sfc", stats=False) for m in _PORT_REF.findall(f)}
    assert named <= live, (node, named - live)
    assert runner.twin.servicechain.ovs_leftovers(CLUSTER, node) == []  # type: ignore[attr-defined]


def _ready_moves(entries: list[dict[str, tuple[str, str]]]) -> list[str]:
    """The Ready / ApplicationsReady story of a DPUService, consecutive repeats dropped."""
    out: list[str] = []
    for conds in entries:
        ready = conds.get("Ready", ("", ""))[0]
        apps = conds.get("ApplicationsReady", ("", ""))
        step = f"Ready={ready}"
        if apps[0] == "False":
            m = re.search(r"\(Sync: \w*, Health: \w*\)", apps[1])
            step += f" {m.group(0) if m else apps[1]}"
        if not out or out[-1] != step:
            out.append(step)
    return out


# --- 1. chart version and helm values changed -------------------------------------------------------------


def test_chart_and_values_changes_replace_the_pods_and_the_service_goes_through_argo_states() -> None:
    runner = _load("service-upgrade")
    history = History(runner, DPUService, "fw")
    result = _run(runner)
    # ArgoCD's refresh sees the changed source at once (OutOfSync), the automated sync applies it and the
    # DaemonSet rolls (Progressing), then everything is Healthy again; DPF's Ready follows ApplicationsReady.
    expected = ["Ready=True", "Ready=False (Sync: OutOfSync, Health: Healthy)",
                "Ready=False (Sync: Synced, Health: Progressing)", "Ready=True"]
    assert _ready_moves(history.between(40 * 60, 50 * 60)) == expected
    assert _ready_moves(history.between(50 * 60, 60 * 60)) == expected
    host = runner.twin.host
    app = host.get(Application, "dpu-cplane-tenant1-fw", OPERATOR_NS)
    source = app.wire()["spec"]["source"]
    assert source["targetRevision"] == "1.0.1"
    values = source["helm"]["valuesObject"]
    # The user's values merged with the computed serviceDaemonSet block (the Multus network of net1 kept).
    assert values["mode"] == "inline" and values["image"] == {"repository": "example.com/fw", "tag": "1.0.1-hotfix"}
    networks = json.loads(values["serviceDaemonSet"]["annotations"]["k8s.v1.cni.cncf.io/networks"])
    assert networks == [{"name": "mybrsfc", "interface": "net1", "cni-args": None}]  # no omitempty in multus v4.0.2
    assert app.wire()["status"]["sync"] == {"status": "Synced", "revision": "1.0.1"}
    pods = _pods(runner, "fw")
    assert sorted(pods) == list(NODES)
    for node, pod in pods.items():
        assert pod.status.phase == "Running"
        assert pod.metadata.labels["chart"] == "fw-1.0.1"
        assert pod.spec.containers[0].image == "example.com/fw:1.0.1-hotfix"
        # Re-created for the values change: the chain's flows now name this pod's SF port and nothing older.
        flows = _chain_flows(runner, node, "p0-to-fw")
        assert {_in_port(f) for f in flows} == {_ofport(runner, node, "p0"), _ofport(runner, node, _sf_of(runner, node, "fw"))}
        _assert_switch_clean(runner, node)
    assert "as expected on 3 node(s)" in _detail(result, "p0-to-new-fw")
    svc = host.get(DPUService, "fw", OPERATOR_NS)
    assert svc.status.observed_generation == svc.metadata.generation == 3


# --- 2. DPUServiceChain edited in place ---------------------------------------------------------------------


def test_moving_a_chain_port_adds_the_new_flows_and_keeps_the_old_ports_flow_as_dpf_does() -> None:
    runner = _load("chain-edit", before="add-switch")
    _run(runner)
    store = runner.twin.stores()[CLUSTER]
    chain_set = store.get(ServiceChainSet, "p0-to-fw", OPERATOR_NS)
    ports = chain_set.wire()["spec"]["template"]["spec"]["switches"][0]["ports"]
    assert ports[0]["serviceInterface"]["matchLabels"] == {"uplink": "p1"}
    for node in NODES:
        sc = store.get(ServiceChain, f"p0-to-fw-{node}", OPERATOR_NS)
        assert sc.wire()["spec"]["switches"][0]["ports"][0]["serviceInterface"]["matchLabels"] == {"uplink": "p1"}
        p0, p1, sf = (_ofport(runner, node, port) for port in ("p0", "p1", _sf_of(runner, node, "fw")))
        flows = {_in_port(f): f for f in _chain_flows(runner, node, "p0-to-fw")}
        # `ovs-ofctl --bundle add-flows` under the same cookie: the SF's flow (same match) now outputs to p1,
        # p1's flow is new, and p0's flow stays: DPF never deletes the flows of a chain that still exists.
        assert set(flows) == {p0, p1, sf}
        assert flows[sf].endswith(f"output:{p1}") and flows[p1].endswith(f"output:{sf}")
        assert flows[p0].endswith(f"output:{sf}")
        # The label DPF put on p0's ServiceInterface stays too (it is only removed when the chain goes).
        si = store.get(ServiceInterface, f"p0-{node}", OPERATOR_NS)
        assert si.metadata.labels.get("svc.dpu.nvidia.com/service-chain") == f"p0-to-fw-{node}"


def test_chain_edits_follow_into_every_dpu_cluster_and_a_deleted_chain_leaves_no_cookie() -> None:
    runner = _load("chain-edit", before="delete-first-chain")
    result = _run(runner)
    for name in ("p1-to-fw-after-move", "p0-to-vf3-after-add-switch", "vf4-to-pf1"):
        assert "as expected on 3 node(s)" in _detail(result, name)
    store = runner.twin.stores()[CLUSTER]
    for node in NODES:
        sc = store.get(ServiceChain, f"p0-to-fw-{node}", OPERATOR_NS)
        assert [len(s["ports"]) for s in sc.wire()["spec"]["switches"]] == [2, 2]
        p0, vf3 = _ofport(runner, node, "p0"), _ofport(runner, node, "pf0vf3")
        # The added switch reused p0's match: its flow now floods to VF 3 only.
        flows = {_in_port(f): f for f in _chain_flows(runner, node, "p0-to-fw")}
        assert flows[p0].endswith(f"output:{vf3}")
        assert len(_chain_flows(runner, node, "p0-to-fw")) == 4
        assert len(_chain_flows(runner, node, "vf4-to-pf1")) == 2
    # Then the first chain is deleted (the full run): its cookie leaves every switch, the new chain stays.
    runner = _load("chain-edit")
    result = _run(runner)
    assert "clean at" in _detail(result, "first-chain-swept")
    store = runner.twin.stores()[CLUSTER]
    for node in NODES:
        assert _chain_flows(runner, node, "p0-to-fw") == []
        assert len(_chain_flows(runner, node, "vf4-to-pf1")) == 2
        assert not [si.name for si in store.list(ServiceInterface, OPERATOR_NS)
                    if si.metadata.labels.get("svc.dpu.nvidia.com/service-chain") == f"p0-to-fw-{node}"]
        _assert_switch_clean(runner, node)


# --- 3. DPUServiceInterface deleted under a chain, then re-created ---------------------------------------------


def test_deleting_a_named_service_interface_breaks_service_and_chain_but_keeps_pods_and_flows() -> None:
    runner = _load("interface-recreate", before="recreate-interface")
    result = _run(runner)
    host = runner.twin.host
    assert host.try_get(DPUServiceInterface, "fw-net1", OPERATOR_NS) is None
    svc = host.get(DPUService, "fw", OPERATOR_NS)
    conds = {c.type: c for c in svc.status.conditions}
    assert (conds["DPUServiceInterfaceReconciled"].status, conds["DPUServiceInterfaceReconciled"].reason) == ("False", "Error")
    # DPF's message: the prefix it adds, then the API server's NotFound for the Get.
    assert conds["DPUServiceInterfaceReconciled"].message == (
        'Unable to reconcile interfaces for dpuserviceinterfaces.svc.dpu.nvidia.com "fw-net1" not found')
    assert conds["Ready"].status == "False"
    # The pass stopped before the Applications: the one there is left as it was, and so are the pods.
    assert host.try_get(Application, "dpu-cplane-tenant1-fw", OPERATOR_NS) is not None
    assert len(_pods(runner, "fw")) == 3
    store = runner.twin.stores()[CLUSTER]
    for node in NODES:
        sc = store.get(ServiceChain, f"p0-to-fw-{node}", OPERATOR_NS)
        ready = next(c for c in sc.status.conditions if c.type == "Ready")
        assert ready.status == "False" and "no serviceInterface" in (ready.message or "")
        # The agent aborts the pass: the flows it wrote before stay and still carry p0 to the pod.
        assert len(_chain_flows(runner, node, "p0-to-fw")) == 2
        assert len(_chain_flows(runner, node, "p1-to-vf3")) == 2
    assert "as expected on 3 node(s)" in _detail(result, "p0-to-fw-while-missing")


def test_recreating_the_interface_restores_consumer_children_and_chain() -> None:
    runner = _load("interface-recreate")
    history = History(runner, DPUService, "fw")
    result = _run(runner)
    host = runner.twin.host
    dsi = host.get(DPUServiceInterface, "fw-net1", OPERATOR_NS)
    assert dsi.metadata.annotations["dpu.nvidia.com/consumed-by"] == "fw"
    svc = host.get(DPUService, "fw", OPERATOR_NS)
    assert {c.type: c.status for c in svc.status.conditions}["Ready"] == "True"
    # Ready again within seconds of the re-create, and never Ready while the interface was missing.
    missing = history.between(40 * 60 + 1, 45 * 60)
    assert missing and all(c["Ready"][0] == "False" for c in missing)
    store = runner.twin.stores()[CLUSTER]
    for node in NODES:
        si = store.get(ServiceInterface, f"fw-net1-{node}", OPERATOR_NS)
        assert si.metadata.labels["svc.dpu.nvidia.com/service-chain"] == f"p0-to-fw-{node}"
        _assert_switch_clean(runner, node)
    for name in ("p0-to-fw-after-recreate", "p1-to-vf3-untouched"):
        assert "as expected on 3 node(s)" in _detail(result, name)


# --- 4. DPUServiceIPAM too small for the nodes, then enlarged --------------------------------------------------


def test_a_pool_too_small_for_the_nodes_leaves_the_last_node_without_a_block() -> None:
    runner = _load("ipam-too-small", before="enlarge")
    _run(runner)
    store = runner.twin.stores()[CLUSTER]
    pool = store.get(IPPool, "small-subnet", OPERATOR_NS)
    assert [(a.node_name, a.start_ip, a.end_ip) for a in pool.status.allocations] == [
        (FIRST, "10.50.0.1", "10.50.0.6"), (SECOND, "10.50.0.7", "10.50.0.12")]
    cidr = store.get(CIDRPool, "small-net", OPERATOR_NS)
    assert [(a.node_name, a.prefix, a.gateway) for a in cidr.status.allocations] == [
        (FIRST, "10.60.0.0/30", "10.60.0.1"), (SECOND, "10.60.0.4/30", "10.60.0.5")]
    # NVIPAM's events: one Warning per node left without a block, on its pool, its words (typo included).
    warnings = sorted((e.wire()["involvedObject"]["kind"], e.wire()["involvedObject"]["name"], e.reason, e.message)
                      for e in store.list(Event) if e.type == "Warning")
    assert warnings == [
        ("CIDRPool", "small-net", "NoFreePrefixes", f"failed to allocated prefix for Node: {THIRD}, no free prefixes"),
        ("IPPool", "small-subnet", "NoFreeRanges", f"failed to allocate IPs on Node: {THIRD}"),
    ]
    # DPF's DPUServiceIPAM only asks for allocations to be non-empty: both say Ready.
    for ipam in runner.twin.host.list(DPUServiceIPAM, OPERATOR_NS):
        assert {c.type: c.status for c in ipam.status.conditions}["DPUIPAMObjectReady"] == "True"
    pods = _pods(runner, "fw")
    assert {n: p.status.phase for n, p in pods.items()} == {FIRST: "Running", SECOND: "Running", THIRD: "Pending"}
    waiting = next(c for c in pods[THIRD].status.conditions if c.type == "Ready")
    assert waiting.reason == "ContainerCreating" and THIRD in (waiting.message or "")
    svc = runner.twin.host.get(DPUService, "fw", OPERATOR_NS)
    apps = next(c for c in svc.status.conditions if c.type == "ApplicationsReady")
    assert apps.status == "False" and "Health: Progressing" in (apps.message or "")


def test_enlarging_the_pools_gives_the_last_node_a_block_without_moving_the_others() -> None:
    runner = _load("ipam-too-small")
    result = _run(runner)
    store = runner.twin.stores()[CLUSTER]
    pool = store.get(IPPool, "small-subnet", OPERATOR_NS)
    assert pool.wire()["spec"]["subnet"] == "10.50.0.0/27"
    assert [(a.node_name, a.start_ip, a.end_ip) for a in pool.status.allocations] == [
        (FIRST, "10.50.0.1", "10.50.0.6"), (SECOND, "10.50.0.7", "10.50.0.12"), (THIRD, "10.50.0.13", "10.50.0.18")]
    cidr = store.get(CIDRPool, "small-net", OPERATOR_NS)
    assert [(a.node_name, a.prefix) for a in cidr.status.allocations] == [
        (FIRST, "10.60.0.0/30"), (SECOND, "10.60.0.4/30"), (THIRD, "10.60.0.8/30")]
    pods = _pods(runner, "fw")
    third = {n["interface"]: n for n in json.loads(pods[THIRD].metadata.annotations[ANNOTATION_NETWORK_STATUS])}
    assert third["ip_net"]["ips"] == ["10.60.0.10"] and third["net1"]["ips"] == ["10.50.0.13"]
    # Both pools: a block per node each, and fw's two addresses (net1, ip_net) per node.
    assert "6 block(s), 6 pod address(es)" in _detail(result, "sound-ipam")


# --- 5. DPUs re-provisioned under running services and chains ---------------------------------------------------


def test_reprovisioned_dpus_come_back_with_services_and_chains_and_nothing_from_before() -> None:
    runner = _load("reprovision-under-services")
    result = _run(runner)
    host = runner.twin.host
    assert sorted((d.name, d.spec.bfb) for d in host.list(DPU, OPERATOR_NS)) == [(n, "bf-bundle-2") for n in NODES]
    # From the event log: `<t> <store> <ADDED|DELETED> <Kind> <name> ...` in the DPU cluster after the change.
    moves = [(float(t), what, kind, name) for t, store, what, kind, name, *_ in
             (line.split() for line in runner.twin.log.lines)
             if store == CLUSTER and what in ("ADDED", "DELETED") and float(t) >= 41 * 60]
    node_moves = [(what, name) for _, what, kind, name in moves if kind == "Node"]
    # One DPU at a time (maxUnavailable 1): each Node leaves and rejoins before the next one leaves.
    assert [what for what, _ in node_moves] == ["DELETED", "ADDED"] * 3
    assert sorted(name for what, name in node_moves if what == "DELETED") == list(NODES)
    assert all(node_moves[i][1] == node_moves[i + 1][1] for i in range(0, 6, 2))
    # Every node's ServiceChains and ServiceInterfaces went with its Node and came back with it.
    for kind, count in (("ServiceChain", 2), ("ServiceInterface", 4)):
        for what in ("DELETED", "ADDED"):
            assert len([1 for _, w, k, _ in moves if k == kind and w == what]) == count * 3, (kind, what)
    pods = _pods(runner, "fw")
    assert sorted(pods) == list(NODES)
    # Each pod is the one created after its node rejoined.
    rejoined = {name: t for t, what, kind, name in moves if kind == "Node" and what == "ADDED"}
    for node, pod in pods.items():
        created = [t for t, what, kind, name in moves if kind == "Pod" and what == "ADDED" and name.endswith(pod.name)]
        assert created and created[-1] >= rejoined[node]
    store = runner.twin.stores()[CLUSTER]
    assert len(store.list(ServiceInterface, OPERATOR_NS)) == 12
    pool = store.get(IPPool, "fw-pool", OPERATOR_NS)
    assert sorted(a.node_name for a in pool.status.allocations) == list(NODES)
    for node in NODES:
        assert len(_chain_flows(runner, node, "p0-to-fw")) == 2
        assert len(_chain_flows(runner, node, "p1-to-vf3")) == 2
        _assert_switch_clean(runner, node)
    for name in ("p0-to-fw-after", "p1-to-vf3-after"):
        assert "as expected on 3 node(s)" in _detail(result, name)
    assert "held" in _detail(result, "budget")


# --- 6. DPUDeployment service version bumped ---------------------------------------------------------------------


def test_dpudeployment_version_bump_updates_the_service_in_place_and_rolls_the_pods() -> None:
    runner = _load("dpudeployment-bump")
    service = History(runner, DPUService, "fw-deploy-fw")
    deployment = History(runner, DPUDeployment, "fw-deploy")
    versions: list[str] = []

    def version_seen(ev: WatchEvent) -> None:
        if ev.object.name == "fw-deploy-fw" and ev.type != "DELETED":
            v = ev.object.metadata.annotations.get("dpuservice.nvidia.com/version", "")
            if not versions or versions[-1] != v:
                versions.append(v)

    runner.twin.host.subscribe(version_seen, [DPUService])
    result = _run(runner)
    host = runner.twin.host
    # Three versions: the first, the new template, the new configuration values; the same DPUService object.
    assert len(versions) == 3 and len(set(versions)) == 3
    svc = host.get(DPUService, "fw-deploy-fw", OPERATOR_NS)
    assert svc.wire()["spec"]["helmChart"]["source"]["version"] == "1.0.1"
    assert svc.wire()["spec"]["helmChart"]["values"]["image"]["tag"] == "1.0.1-strict"
    for start in (41 * 60, 50 * 60):
        moves = _ready_moves(service.between(start, start + 9 * 60))
        assert moves[0] == "Ready=True" and moves[-1] == "Ready=True"
        assert "Ready=False (Sync: Synced, Health: Progressing)" in moves
        assert any(c.get("Ready", ("",))[0] == "False" for c in deployment.between(start, start + 9 * 60))
    app = host.get(Application, "dpu-cplane-tenant1-fw-deploy-fw", OPERATOR_NS)
    assert app.wire()["spec"]["source"]["targetRevision"] == "1.0.1"
    pods = _pods(runner, "dpudeployment_fw-deploy_fw")
    assert sorted(pods) == list(NODES)
    assert {p.spec.containers[0].image for p in pods.values()} == {"example.com/fw:1.0.1-strict"}
    # The DPU nodes carry the last version; none was re-flashed (one DPU object each, never deleted).
    store = runner.twin.stores()[CLUSTER]
    labelled = {n.name: n.metadata.labels.get("svc.dpu.nvidia.com/dpuservice-fw-version") for n in store.list(Node)}
    assert labelled == dict.fromkeys(NODES, versions[-1])
    assert not [line for line in runner.twin.log.lines if " DELETED DPU " in line]
    # The old template was released and could go; the new one is held.
    assert host.try_get(DPUServiceTemplate, "fw", OPERATOR_NS) is None
    held = host.get(DPUServiceTemplate, "fw-v2", OPERATOR_NS)
    assert "dpu.nvidia.com/dpudeployment" in held.metadata.finalizers
    for name in NODES:
        _assert_switch_clean(runner, name)
    assert "as expected on 3 node(s)" in _detail(result, "p0-to-fw-after-values")
