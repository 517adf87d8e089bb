"""DPF's "HBN only" user guide end to end on the twin (`scenarios_unseen_svc/hbn-only-guide.yaml`): its 02 and 04
manifests applied unchanged (envsubst placeholders filled) in the guide's order on 5 hosts, then the DPUService
and both chains deleted. The tests check what a platform engineer following the guide would: every DPU Ready with
the DPUSet's taint on its host only while it provisioned, HBN Running on every DPU node with its three iprequest
networks resolved against the guide's cidrpools, each DPU's br-sfc wiring p0, p1 and both host PFs to HBN's ports,
and nothing of the service or the chains left behind afterwards.

What the awaits cannot see (objects at a moment the run has moved past) is read from a run cut short before the
deletion, or from watchers on the host store.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from services_helpers import before_step, quiet_logging  # noqa: F401 (quiet_logging is a fixture)

from dpf_core.api import admission, registry
from dpf_core.api.external import Application, CIDRPool, Node, Pod, Secret
from dpf_core.api.provisioning import DPU
from dpf_core.api.svc import (
    DPUService,
    DPUServiceChain,
    DPUServiceInterface,
    DPUServiceIPAM,
    ServiceChain,
    ServiceChainSet,
    ServiceInterface,
)
from dpf_core.controllers.sfc import chain_cookie
from dpf_core.store.protocol import WatchEvent
from dpf_sim.cni import ANNOTATION_NETWORK_STATUS
from dpf_sim.runner import Runner, RunResult
from dpf_sim.scenario import load_scenario

HERE = Path(__file__).resolve().parent / "scenarios_unseen_svc"
GUIDE = HERE / "manifests" / "hbn_only"
CLUSTER = "dpu-cplane-tenant1/dpu-cplane-tenant1"
OPERATOR_NS = "dpf-operator-system"
HOSTS = tuple(f"worker-0-{i}" for i in range(5))
NODES = tuple(f"{h}-0000-04-00" for h in HOSTS)
TAINT = {"key": "dpu", "value": "provisioning", "effect": "NoSchedule"}
# (chain, uplink or host PF port on br-sfc, HBN's interface in its pod) as the guide's two chains pair them.
WIRING = (("hbn-to-fabric", "p0", "p0_if"), ("hbn-to-fabric", "p1", "p1_if"),
          ("host-to-hbn", "pf0hpf", "pf0hpf_if"), ("host-to-hbn", "pf1hpf", "pf1hpf_if"))
_FLOW = re.compile(r"priority=20,in_port=(\d+) actions=learn\(.*\),output:(\d+)$")


pytestmark = pytest.mark.usefixtures("quiet_logging")


@dataclass
class HostHistory:
    """Sim times at which each host Node gained / lost the DPUSet's taint, and each DPU's phase changes."""

    taint_added: dict[str, list[float]] = field(default_factory=dict)
    taint_removed: dict[str, list[float]] = field(default_factory=dict)
    phases: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    _tainted: set[str] = field(default_factory=set)


def _watch(runner: Runner) -> HostHistory:
    history = HostHistory()
    env = runner.twin.env

    def seen(ev: WatchEvent) -> None:
        obj, now = ev.object, float(env.now)
        if isinstance(obj, Node):
            has = any(t.wire() == TAINT for t in obj.spec.taints) and ev.type != "DELETED"
            if has and obj.name not in history._tainted:
                history._tainted.add(obj.name)
                history.taint_added.setdefault(obj.name, []).append(now)
            elif not has and obj.name in history._tainted:
                history._tainted.discard(obj.name)
                history.taint_removed.setdefault(obj.name, []).append(now)
        elif isinstance(obj, DPU) and obj.status.phase is not None:
            moves = history.phases.setdefault(obj.name, [])
            if not moves or moves[-1][1] != str(obj.status.phase):
                moves.append((now, str(obj.status.phase)))

    runner.twin.host.subscribe(seen, [Node, DPU])
    return history


def _run(before: str | None = None) -> tuple[Runner, RunResult, HostHistory]:
    loaded = load_scenario(HERE / "hbn-only-guide.yaml")
    if before is not None:
        loaded = before_step(loaded, before)
    runner = Runner(loaded, progress=False, series=False)
    history = _watch(runner)
    result = runner.run()
    assert result.passed, "\n".join(f"{o.name}: {o.detail}" for o in result.failures)
    return runner, result, history


@pytest.fixture(scope="module")
def running() -> tuple[Runner, RunResult, HostHistory]:
    """The guide up to (not including) the deletion step: services and chains running."""
    logging.disable(logging.ERROR)
    try:
        return _run(before="remove-service")
    finally:
        logging.disable(logging.NOTSET)


@pytest.fixture(scope="module")
def finished() -> tuple[Runner, RunResult]:
    logging.disable(logging.ERROR)
    try:
        runner, result, _ = _run()
        return runner, result
    finally:
        logging.disable(logging.NOTSET)


def _hbn_pods(runner: Runner) -> dict[str, Pod]:
    return {p.spec.node_name or "": p for p in runner.twin.stores()[CLUSTER].list(Pod)
            if p.metadata.labels.get("svc.dpu.nvidia.com/service") == "doca-hbn"}


def _datapath(runner: Runner, node: str) -> Any:
    return runner.twin.servicechain.nodes[(CLUSTER, node)].datapath  # type: ignore[attr-defined]


def _detail(result: RunResult, name: str) -> str:
    return next(o.detail for o in result.outcomes if o.name == name)


# --- the manifests ----------------------------------------------------------------------------------------------


def test_the_guide_manifests_are_all_there_placeholders_filled_and_decode() -> None:
    registry.load_all()
    files = sorted(str(p.relative_to(GUIDE)) for p in GUIDE.rglob("*.yaml"))
    assert files == [
        "02-dpf-system-installation/dpucluster.yaml", "02-dpf-system-installation/operatorconfig.yaml",
        *(f"04-dpuservice-installation/{n}.yaml" for n in (
            "bfb", "dpuset", "hbn-chain", "hbn-dpuflavor", "hbn-dpuservice", "hbn-ifaces", "hbn-ipam",
            "hbn-loopback-ipam", "physical-ifaces")),
    ]
    kinds: dict[str, int] = {}
    for name in files:
        text = (GUIDE / name).read_text()
        # envsubst's $VARS are filled; the flavor's OVS script keeps its own shell "$@".
        assert not re.search(r"\$\{?[A-Z][A-Z0-9_]*", text), name
        for doc in yaml.safe_load_all(text):
            obj = admission.decode(doc)
            kinds[obj.kind] = kinds.get(obj.kind, 0) + 1
    assert kinds == {"DPUCluster": 1, "DPFOperatorConfig": 1, "BFB": 1, "DPUSet": 1, "DPUFlavor": 1,
                     "DPUService": 1, "DPUServiceInterface": 8, "DPUServiceChain": 2, "DPUServiceIPAM": 3}


# --- provisioning -----------------------------------------------------------------------------------------------


def test_every_dpu_provisions_with_the_taint_on_its_host_only_while_it_provisions(
    running: tuple[Runner, RunResult, HostHistory],
) -> None:
    runner, result, history = running
    host = runner.twin.host
    dpus = {d.spec.node_name: d for d in host.list(DPU, OPERATOR_NS)}
    assert sorted(dpus) == list(HOSTS)
    assert {str(d.status.phase) for d in dpus.values()} == {"Ready"}
    assert {d.spec.dpu_flavor for d in dpus.values()} == {"dpf-provisioning-hbn"}
    for h in HOSTS:
        name = dpus[h].name
        ready_at = next(t for t, phase in history.phases[name] if phase == "Ready")
        effect_at = next(t for t, phase in history.phases[name] if phase == "Node Effect")
        # DPF's Node Effect phase adds the taint before the install; the Ready phase removes it, once.
        assert len(history.taint_added[h]) == 1 and len(history.taint_removed[h]) == 1, h
        assert effect_at <= history.taint_added[h][0] < ready_at <= history.taint_removed[h][0], h
        assert not host.get(Node, h).spec.taints
    # All five provisioned together: maxUnavailable 10% bounds replacements, not the first creation.
    added = [history.taint_added[h][0] for h in HOSTS]
    removed = [history.taint_removed[h][0] for h in HOSTS]
    assert max(added) < min(removed)
    assert "5 object(s)" in _detail(result, "dpu-nodes")
    nodes = runner.twin.stores()[CLUSTER].list(Node)
    assert sorted(n.name for n in nodes) == list(NODES)
    # The HBN flavor's nvconfig (PF_TOTAL_SF=20) is what the node advertises as SFs.
    assert {n.status.allocatable["nvidia.com/bf_sf"] for n in nodes} == {"20"}


def test_the_pull_secret_is_labelled_by_the_operator_and_copied_into_the_dpu_cluster(
    running: tuple[Runner, RunResult, HostHistory],
) -> None:
    runner, _, _ = running
    # `kubectl create secret docker-registry` makes no label; DPFOperatorConfig.imagePullSecrets names it.
    secret = runner.twin.host.get(Secret, "dpf-pull-secret", OPERATOR_NS)
    assert secret.metadata.labels == {"dpu.nvidia.com/image-pull-secret": ""}
    copy = runner.twin.stores()[CLUSTER].get(Secret, "dpf-pull-secret", OPERATOR_NS)
    assert copy.type == "kubernetes.io/dockerconfigjson" and copy.data == secret.data


# --- the HBN service --------------------------------------------------------------------------------------------


def test_hbn_runs_on_every_dpu_node_from_one_application_with_the_guide_values(
    running: tuple[Runner, RunResult, HostHistory],
) -> None:
    runner, _, _ = running
    host = runner.twin.host
    svc = host.get(DPUService, "doca-hbn", OPERATOR_NS)
    assert {c.type: c.status for c in svc.status.conditions} == {
        "Ready": "True", "ApplicationPrereqsReconciled": "True", "ApplicationsReconciled": "True",
        "ApplicationsReady": "True", "DPUServiceInterfaceReconciled": "True"}
    for name in ("p0-sf", "p1-sf", "host-pf0-sf", "host-pf1-sf"):
        assert host.get(DPUServiceInterface, name, OPERATOR_NS).metadata.annotations == {
            "dpu.nvidia.com/consumed-by": "doca-hbn"}
    for name in ("p0", "p1", "host-pf0-rep", "host-pf1-rep"):
        assert not host.get(DPUServiceInterface, name, OPERATOR_NS).metadata.annotations
    app = host.get(Application, "dpu-cplane-tenant1-doca-hbn", OPERATOR_NS)
    source = app.wire()["spec"]["source"]
    assert (source["repoURL"], source["chart"], source["targetRevision"]) == (
        "https://helm.ngc.nvidia.com/nvidia/doca", "doca-hbn", "1.0.1")
    values = source["helm"]["valuesObject"]
    guide = yaml.safe_load((GUIDE / "04-dpuservice-installation/hbn-dpuservice.yaml").read_text())
    # The chart values reach ArgoCD untouched (HBN renders startupYAMLJ2 itself), next to the computed block.
    assert {k: v for k, v in values.items() if k != "serviceDaemonSet"} == guide["spec"]["helmChart"]["values"]
    assert values["serviceDaemonSet"]["labels"] == {"svc.dpu.nvidia.com/service": "doca-hbn"}
    pods = _hbn_pods(runner)
    assert sorted(pods) == list(NODES)
    for pod in pods.values():
        assert pod.status.phase == "Running"
        requests = pod.wire()["spec"]["containers"][0]["resources"]["requests"]
        assert requests == {"memory": "6Gi", "nvidia.com/bf_sf": 4}


def test_hbn_networks_resolve_against_the_cidrpools_per_node(running: tuple[Runner, RunResult, HostHistory]) -> None:
    runner, _, _ = running
    store = runner.twin.stores()[CLUSTER]
    pools = {p.name: p for p in store.list(CIDRPool, OPERATOR_NS)}
    assert pools["pool1"].wire()["spec"] == {"cidr": "10.0.121.0/24", "gatewayIndex": 2, "perNodeNetworkPrefix": 29}
    assert pools["loopback"].wire()["spec"] == {"cidr": "11.0.0.0/24", "perNodeNetworkPrefix": 32}
    # One /29 per node in name order, its gateway at index 2; one /32 per node for the loopback, no gateway.
    assert [(a.node_name, a.prefix, a.gateway) for a in pools["pool2"].status.allocations] == [
        (n, f"10.0.122.{8 * i}/29", f"10.0.122.{8 * i + 2}") for i, n in enumerate(NODES)]
    assert [(a.node_name, a.prefix, a.gateway) for a in pools["loopback"].status.allocations] == [
        (n, f"11.0.0.{i}/32", None) for i, n in enumerate(NODES)]
    ipams = runner.twin.host.list(DPUServiceIPAM, OPERATOR_NS)
    assert sorted(i.name for i in ipams) == ["loopback", "pool1", "pool2"]
    for ipam in ipams:
        assert any(c.type == "DPUIPAMObjectReady" and c.status == "True" for c in ipam.status.conditions)
    for i, node in enumerate(NODES):
        pod = _hbn_pods(runner)[node]
        requested = json.loads(pod.metadata.annotations["k8s.v1.cni.cncf.io/networks"])
        # The guide's three iprequest entries, then one mybrhbn entry per DPUServiceInterface, sorted as DPF does.
        assert [(n["name"], n["interface"]) for n in requested] == [
            ("iprequest", "ip_lo"), ("iprequest", "ip_pf0hpf"), ("iprequest", "ip_pf1hpf"),
            ("mybrhbn", "p0_if"), ("mybrhbn", "p1_if"), ("mybrhbn", "pf0hpf_if"), ("mybrhbn", "pf1hpf_if")]
        status = {n["interface"]: n for n in json.loads(pod.metadata.annotations[ANNOTATION_NETWORK_STATUS])}
        assert status["ip_lo"]["ips"] == [f"11.0.0.{i}"] and "gateway" not in status["ip_lo"]
        # allocateDefaultGateway: the interface gets its node's gateway itself (HBN's SVI address).
        for itf, net in (("ip_pf0hpf", "10.0.121"), ("ip_pf1hpf", "10.0.122")):
            gateway = f"{net}.{8 * i + 2}"
            assert (status[itf]["ips"], status[itf]["gateway"]) == ([gateway], [gateway]), (node, itf)
        for itf in ("p0_if", "p1_if", "pf0hpf_if", "pf1hpf_if"):
            assert status[itf]["name"] == f"{OPERATOR_NS}/mybrhbn"
            assert status[itf]["device-info"]["ovs"]["bridge"] == "br-hbn"


# --- the chains -------------------------------------------------------------------------------------------------


def _ofport(dp: Any, bridge: str, name: str) -> int:
    return int(next(p["ofport"] for p in dp.ports(bridge) if p["name"] == name))


def _hbn_port_on_br_sfc(dp: Any, pod: Pod, interface: str) -> str:
    """The br-sfc end of HBN's interface: its SF on br-hbn (dpf-id `<ns>/<pod>/<ifname>`) patched as p<sf>brsfc."""
    key = f"{pod.namespace}/{pod.name}/{interface}"
    sf = next(p["name"] for p in dp.ports("br-hbn") if p["external_ids"].get("dpf-id") == key)
    return f"p{sf}brsfc"


def test_each_dpu_br_sfc_wires_uplinks_and_host_pfs_to_hbn(running: tuple[Runner, RunResult, HostHistory]) -> None:
    runner, result, _ = running
    store = runner.twin.stores()[CLUSTER]
    assert sorted(s.name for s in store.list(ServiceChainSet, OPERATOR_NS)) == ["hbn-to-fabric", "host-to-hbn"]
    chains = store.list(ServiceChain, OPERATOR_NS)
    assert sorted(c.name for c in chains) == sorted(f"{c}-{n}" for c in ("hbn-to-fabric", "host-to-hbn") for n in NODES)
    assert all(c.status.conditions[0].status == "True" for c in chains)
    interfaces = store.list(ServiceInterface, OPERATOR_NS)
    assert len(interfaces) == 40 and all(si.status.conditions[0].status == "True" for si in interfaces)
    for dsc in runner.twin.host.list(DPUServiceChain, OPERATOR_NS):
        # `nodeSelector:` null in the guide: the chain goes to every DPU node.
        assert dsc.spec.template.spec.node_selector is None
        assert {c.type: c.status for c in dsc.status.conditions}["Ready"] == "True"
    pods = _hbn_pods(runner)
    for node in NODES:
        dp = _datapath(runner, node)
        # The HBN flavor leaves p0 on br-sfc; the SFC agent added p1 and both host PF representors.
        assert {"p0", "p1", "pf0hpf", "pf1hpf"} <= {p["name"] for p in dp.ports("br-sfc")}
        assert "br-ovn" not in dp.bridges
        uplinks = [p for p in dp.ports("br-sfc") if p["name"] in ("p0", "p1")]
        assert [p["port_external_ids"].get("dpf-type") for p in uplinks] == ["physical", "physical"]
        for chain in ("hbn-to-fabric", "host-to-hbn"):
            cookie = chain_cookie(OPERATOR_NS, f"{chain}-{node}")
            flows = [f for f in dp.dump_flows("br-sfc", stats=False, cookie=cookie) if "priority=20" in f]
            pairs = set()
            for flow in flows:
                m = _FLOW.search(flow)
                assert m is not None, flow
                pairs.add((int(m.group(1)), int(m.group(2))))
            want = set()
            for wired_chain, port, interface in WIRING:
                if wired_chain != chain:
                    continue
                a = _ofport(dp, "br-sfc", port)
                b = _ofport(dp, "br-sfc", _hbn_port_on_br_sfc(dp, pods[node], interface))
                want |= {(a, b), (b, a)}
            # Each switch of two ports is one flow each way, nothing else under the chain's cookie.
            assert pairs == want and len(flows) == 4, (node, chain, flows)
    # A packet from each end reaches the other on all five DPUs (traces in the scenario).
    for name in ("p0-to-hbn", "p1-to-hbn", "host-pf0-to-hbn", "host-pf1-to-hbn", "hbn-to-p0", "hbn-to-host-pf1"):
        assert "as expected on 5 node(s)" in _detail(result, name), name


# --- deletion ---------------------------------------------------------------------------------------------------


def test_deleting_the_service_and_the_chains_leaves_nothing_of_them(finished: tuple[Runner, RunResult]) -> None:
    runner, result = finished
    for name in ("service-gone", "hbn-pods-gone", "fabric-chain-gone", "host-chain-gone", "chains-gone"):
        assert next(o.passed for o in result.outcomes if o.name == name), name
    host = runner.twin.host
    store = runner.twin.stores()[CLUSTER]
    assert host.try_get(DPUService, "doca-hbn", OPERATOR_NS) is None
    assert host.try_get(Application, "dpu-cplane-tenant1-doca-hbn", OPERATOR_NS) is None
    assert not _hbn_pods(runner)
    # The interfaces are free again, the user's DPUServiceInterfaces and IPAMs stay (the guide deletes neither).
    dsis = host.list(DPUServiceInterface, OPERATOR_NS)
    assert len(dsis) == 8 and not any(d.metadata.annotations for d in dsis)
    assert sorted(p.name for p in store.list(CIDRPool, OPERATOR_NS)) == ["loopback", "pool1", "pool2"]
    assert not host.list(DPUServiceChain) and not store.list(ServiceChainSet) and not store.list(ServiceChain)
    interfaces = store.list(ServiceInterface, OPERATOR_NS)
    assert len(interfaces) == 40
    assert not [si.name for si in interfaces if "svc.dpu.nvidia.com/service-chain" in si.metadata.labels]
    for node in NODES:
        dp = _datapath(runner, node)
        # No flow, no HBN port: only the four ports the ServiceInterfaces still own (and the bridge's own).
        assert dp.dump_flows("br-sfc", stats=False) == []
        assert sorted(p["name"] for p in dp.ports("br-sfc")) == ["br-sfc", "p0", "p1", "pf0hpf", "pf1hpf"]
        assert [p["name"] for p in dp.ports("br-hbn")] == ["br-hbn"]
        assert runner.twin.servicechain.ovs_leftovers(CLUSTER, node) == []  # type: ignore[attr-defined]
