"""The service-chain world of the twin on a few pre-provisioned DPU nodes: the OVS each DPU starts with, the
SFC CNI / Multus / SR-IOV device plugin / nv-ipam models, packet traces and the checks built on them."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from dpf_core.api.external import CIDRPool, NetworkAttachmentDefinition, Node, Pod
from dpf_core.api.svc import ServiceChain
from dpf_core.controllers import sfc
from dpf_sim.cni import ANNOTATION_NETWORK_STATUS, HBN_PAIR_COOKIE, SF_RESOURCE, fnv1a_32, ofport_request_for
from dpf_sim.expect import IpamAllocations, OvsClean, TraceCheck
from dpf_sim.ovs import Packet
from dpf_sim.scenario import InvariantSpec, ScenarioError, TraceSpec, load_scenario, load_scenario_text
from dpf_sim.servicechain import ServiceChainWorld
from dpf_sim.twin import Twin, TwinConfig

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
CLUSTER = "dpu-cplane-tenant1/dpu-cplane-tenant1"
NS = "dpf-operator-system"
HBN = {"svc.dpu.nvidia.com/service": "doca-hbn"}


def _hbn_manifests() -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """(host objects, the HBN DaemonSet) exactly as the HBN scenario applies them."""
    loaded = load_scenario(SCENARIOS / "service-chain-hbn.yaml")
    steps = loaded.scenario.timeline
    host = next(i for i, s in enumerate(steps) if s.name == "services")
    ds = next(i for i, s in enumerate(steps) if s.store == CLUSTER)
    host_docs: list[Mapping[str, Any]] = [*loaded.manifests[host]]
    ds_docs: list[Mapping[str, Any]] = [*loaded.manifests[ds]]
    return host_docs, ds_docs


def _twin(nodes: int = 2, **params: Any) -> Twin:
    models = {"serviceChain": {"preProvisioned": {"nodes": nodes}, **params}}
    return Twin(TwinConfig(seed=1, keep_log=False, record_events=False, attachments=("servicechain",), models=models))


def _world(twin: Twin) -> ServiceChainWorld:
    world = getattr(twin, "servicechain", None)
    assert isinstance(world, ServiceChainWorld)
    return world


@pytest.fixture(scope="module")
def hbn() -> Twin:
    """Two DPUs with the HBN + OVN chains programmed and HBN running."""
    return _hbn_twin()


def _pod(twin: Twin, node: str) -> Pod:
    store = twin.dpu_clusters[CLUSTER]
    return next(p for p in store.list(Pod, NS) if p.spec.node_name == node)


# --- the DPU's OVS and the device plugin ---------------------------------------------------------------------


def test_a_joined_dpu_has_the_flavor_bridges_and_advertises_its_sfs() -> None:
    twin = _twin(1)
    dp = _world(twin).nodes[(CLUSTER, "dpu-node-001")].datapath
    sfc_br = dp.bridges["br-sfc"]
    assert (sfc_br.datapath_type, sfc_br.fail_mode) == ("netdev", "secure")
    assert sfc_br.rules == []  # secure: no NORMAL flow, misses drop
    for uplink in ("p0", "p1"):
        port = sfc_br.ports[uplink]
        assert port.interface.type == "dpdk" and port.external_ids == {"dpf-type": "physical"}
    assert "pf0hpf" in dp.bridges["br-ovn"].ports and dp.bridges["br-ovn"].datapath_type == "netdev"
    assert "br-hbn" in dp.bridges
    node = twin.dpu_clusters[CLUSTER].get(Node, "dpu-node-001")
    assert node.status.allocatable[SF_RESOURCE] == "20" and node.status.capacity[SF_RESOURCE] == "20"
    # The multus component's NetworkAttachmentDefinitions exist in the DPU cluster.
    nads = {n.name for n in twin.dpu_clusters[CLUSTER].list(NetworkAttachmentDefinition, NS)}
    assert nads == {"mybrsfc", "mybrhbn", "iprequest"}


def test_ovs_cni_ofport_request_is_fnv1a_32_truncated_to_a_byte() -> None:
    assert fnv1a_32("") == 0x811C9DC5
    assert fnv1a_32("a") == 0xE40C292C
    assert ofport_request_for("a") == 0x2C
    assert ofport_request_for("en3f0pf0sf0") == fnv1a_32("en3f0pf0sf0") & 0xFF


# --- CNI ---------------------------------------------------------------------------------------------------


def test_hbn_pod_gets_sfs_ports_patches_and_addresses(hbn: Twin) -> None:
    world = _world(hbn)
    pod = _pod(hbn, "dpu-node-001")
    assert pod.status.phase == "Running"
    net = world.clusters[CLUSTER].cni
    assert net.nodes["dpu-node-001"].free_sfs == list(range(3, 20))  # the pod requested 3 SFs
    dp = world.nodes[(CLUSTER, "dpu-node-001")].datapath
    rep = dp.bridges["br-hbn"].ports["en3f0pf0sf0"]
    assert rep.interface.external_ids["dpf-id"] == f"{NS}/{pod.name}/p0_if"
    assert rep.external_ids["owner"] == sfc.OVS_CNI_OWNER and rep.external_ids["contIface"] == "p0_if"
    assert rep.interface.ofport_request == ofport_request_for("en3f0pf0sf0")
    assert rep.interface.ofport == ofport_request_for("en3f0pf0sf0")  # free, so honoured
    on_hbn = dp.bridges["br-hbn"].ports["pen3f0pf0sf0brhbn"].interface
    on_sfc = dp.bridges["br-sfc"].ports["pen3f0pf0sf0brsfc"].interface
    assert on_hbn.external_ids == {"hbn_rep_ofport": "en3f0pf0sf0", "hbn_netdev": "p0_if"}
    assert on_sfc.external_ids == {"iface-id": "en3f0pf0sf0", "dpf-id": "p0_if"}
    assert (on_hbn.options["peer"], on_sfc.options["peer"]) == ("pen3f0pf0sf0brsfc", "pen3f0pf0sf0brhbn")
    status = {n["interface"]: n for n in json.loads(pod.metadata.annotations[ANNOTATION_NETWORK_STATUS])}
    assert set(status) == {"ip_lo", "ip_pf2dpu2", "p0_if", "p1_if", "pf2dpu2_if"}
    # pool1: a /29 per node, gateway index 3; HBN's ip_pf2dpu2 asks for it (allocateDefaultGateway): the pod is the
    # hosts' gateway.
    pool = hbn.dpu_clusters[CLUSTER].get(CIDRPool, "pool1", NS)
    mine = next(a for a in pool.status.allocations if a.node_name == "dpu-node-001")
    assert status["ip_pf2dpu2"]["gateway"] == [mine.gateway]
    import ipaddress

    address = ipaddress.ip_address(status["ip_pf2dpu2"]["ips"][0])
    assert address in ipaddress.ip_network(mine.prefix) and str(address) == mine.gateway


def test_sfc_agent_resolves_service_ports_through_the_hbn_patch(hbn: Twin) -> None:
    dp = _world(hbn).nodes[(CLUSTER, "dpu-node-001")].datapath
    patch = dp.bridges["br-sfc"].ports["pen3f0pf0sf0brsfc"].interface.ofport
    p0 = dp.bridges["br-sfc"].ports["p0"].interface.ofport
    chain = sfc.chain_cookie(NS, "hbn-to-fabric-dpu-node-001")
    flows = dp.dump_flows("br-sfc", stats=False)
    assert any(f"cookie={chain:#x}" in f and f"in_port={p0} " in f and f"output:{patch}" in f for f in flows)
    sc = hbn.dpu_clusters[CLUSTER].get(ServiceChain, "hbn-to-fabric-dpu-node-001", NS)
    assert [(c.type, c.status) for c in sc.status.conditions] == [("Ready", "True")]


def test_admission_fails_a_pod_asking_for_more_sfs_than_are_free(hbn: Twin) -> None:
    store = hbn.dpu_clusters[CLUSTER]
    store.create(Pod.model_validate({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "greedy", "namespace": NS,
                     "annotations": {"k8s.v1.cni.cncf.io/networks": '[{"name": "mybrsfc", "interface": "x_sf"}]'}},
        "spec": {"nodeName": "dpu-node-002", "containers": [
            {"name": "c", "resources": {"requests": {SF_RESOURCE: 18}, "limits": {SF_RESOURCE: 18}}}]},
    }))
    hbn.run(hbn.now + 5)
    pod = store.get(Pod, "greedy", NS)
    assert pod.status.phase == "Failed"
    dumped = pod.model_dump(by_alias=True)["status"]
    assert dumped["reason"] == "UnexpectedAdmissionError"
    assert "Requested: 18, Available: 17" in dumped["message"]
    assert _world(hbn).clusters[CLUSTER].cni.nodes["dpu-node-002"].free_sfs == list(range(3, 20))


def test_missing_attachment_definition_is_retried_until_it_exists() -> None:
    twin = _twin(1, networkAttachments=False)
    store = twin.dpu_clusters[CLUSTER]

    def pod(name: str, interface: str) -> None:
        store.create(Pod.model_validate({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS,
                         "annotations": {"k8s.v1.cni.cncf.io/networks": json.dumps([{"name": "mybrsfc",
                                                                                     "interface": interface}])}},
            "spec": {"nodeName": "dpu-node-001", "containers": [{"name": "c"}]},
        }))

    def message(name: str) -> str:
        return store.get(Pod, name, NS).status.conditions[0].message or ""

    pod("early", "app_sf")
    twin.run(15)
    assert store.get(Pod, "early", NS).status.phase is None  # still Pending
    assert "cannot find a network-attachment-definition (mybrsfc) in namespace (dpf-operator-system)" in message("early")
    from dpf_sim.cni import dpu_networking_nads

    nad = next(n for n in dpu_networking_nads(NS) if n.name == "mybrsfc").deepcopy()
    config = json.loads(nad.spec.config or "{}")
    del config["ipam"]  # no pool for these pods: the port alone
    nad.spec.config = json.dumps(config)
    store.create(nad)
    twin.run(30)
    # Admitted before the NAD existed, the pod was given no SF, and ovs-cni refuses an `_sf` interface without one.
    assert message("early") == "failed to create pod sandbox: interface is SF but deviceID is not set."
    pod("late", "app_sf")
    twin.run(40)
    assert store.get(Pod, "late", NS).status.phase == "Running"
    port = _world(twin).nodes[(CLUSTER, "dpu-node-001")].datapath.bridges["br-sfc"].ports["en3f0pf0sf0"]
    assert port.interface.external_ids["dpf-id"] == f"{NS}/late/app_sf"


def test_pod_deletion_removes_its_ports_and_frees_its_sfs_and_addresses() -> None:
    twin = _twin(1)
    host, ds = _hbn_manifests()
    twin.apply(host)
    twin.apply(ds, store=CLUSTER)
    twin.run(30)
    net = _world(twin).clusters[CLUSTER].cni
    dp = _world(twin).nodes[(CLUSTER, "dpu-node-001")].datapath
    assert net.nodes["dpu-node-001"].leases and "en3f0pf0sf1" in dp.bridges["br-hbn"].ports
    pod = _pod(twin, "dpu-node-001")
    twin.delete("DaemonSet", "doca-hbn", NS, store=CLUSTER)
    twin.run(31)
    assert twin.dpu_clusters[CLUSTER].try_get(Pod, pod.name, NS) is None  # garbage-collected with its DaemonSet
    assert net.nodes["dpu-node-001"].leases == {}
    assert net.nodes["dpu-node-001"].free_sfs == list(range(20))
    assert [p for p in dp.bridges["br-hbn"].ports if p != "br-hbn"] == []
    assert not [p for p in dp.bridges["br-sfc"].ports if p.startswith("pen3f0pf0sf")]
    assert not [r for r in dp.bridges["br-hbn"].rules if r.cookie == HBN_PAIR_COOKIE]


def test_pod_ipam_injector_picks_the_chain_port_pool_for_a_mybrsfc_interface() -> None:
    """A service on br-sfc whose chain port names an IPAM pool: the injector writes cni-args, nv-ipam
    hands out an address of that pool (an IPPool here: shared gateway)."""
    twin = _twin(1)
    twin.apply([
        {"apiVersion": "svc.dpu.nvidia.com/v1alpha1", "kind": "DPUServiceIPAM",
         "metadata": {"name": "fw-pool", "namespace": NS},
         "spec": {"metadata": {"labels": {"pool": "fw"}},
                  "ipv4Subnet": {"subnet": "10.9.0.0/24", "gateway": "10.9.0.1", "perNodeIPCount": 8}}},
        {"apiVersion": "svc.dpu.nvidia.com/v1alpha1", "kind": "DPUServiceInterface",
         "metadata": {"name": "fw-in", "namespace": NS},
         "spec": {"template": {"spec": {"template": {
             "metadata": {"labels": {"svc.dpu.nvidia.com/service": "fw", "svc.dpu.nvidia.com/interface": "in"}},
             "spec": {"interfaceType": "service",
                      "service": {"serviceID": "fw", "network": "mybrsfc", "interfaceName": "in_sf"}}}}}}},
        {"apiVersion": "svc.dpu.nvidia.com/v1alpha1", "kind": "DPUServiceChain",
         "metadata": {"name": "fw", "namespace": NS},
         "spec": {"template": {"spec": {"template": {"spec": {"switches": [{"ports": [
             {"serviceInterface": {"matchLabels": {"uplink": "p0"}}},
             {"serviceInterface": {"matchLabels": {"svc.dpu.nvidia.com/service": "fw",
                                                   "svc.dpu.nvidia.com/interface": "in"},
                                   "ipam": {"matchLabels": {"pool": "fw"}, "defaultGateway": True}}},
         ]}]}}}}}},
        {"apiVersion": "svc.dpu.nvidia.com/v1alpha1", "kind": "DPUServiceInterface",
         "metadata": {"name": "p0", "namespace": NS},
         "spec": {"template": {"spec": {"template": {"metadata": {"labels": {"uplink": "p0"}},
                                                     "spec": {"interfaceType": "physical",
                                                              "physical": {"interfaceName": "p0"}}}}}}},
    ])
    twin.run(10)
    store = twin.dpu_clusters[CLUSTER]
    store.create(Pod.model_validate({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "fw-0", "namespace": NS, "labels": {"svc.dpu.nvidia.com/service": "fw"},
                     "annotations": {"k8s.v1.cni.cncf.io/networks": '[{"name": "mybrsfc", "interface": "in_sf"}]'}},
        "spec": {"nodeName": "dpu-node-001", "containers": [{"name": "c"}]},
    }))
    twin.run(60)
    pod = store.get(Pod, "fw-0", NS)
    assert pod.status.phase == "Running"
    networks = json.loads(pod.metadata.annotations["k8s.v1.cni.cncf.io/networks"])
    assert networks[0]["cni-args"] == {"allocateDefaultGateway": True, "poolNames": ["fw-pool"], "poolType": "ippool"}
    status = json.loads(pod.metadata.annotations[ANNOTATION_NETWORK_STATUS])[0]
    assert status["ips"] == ["10.9.0.1"] and status["gateway"] == ["10.9.0.1"]  # it asked for its node's gateway
    # The chain joins p0 and the pod's port on br-sfc: a packet from p0 reaches the firewall's in_sf.
    world = _world(twin)
    trace = world.trace(CLUSTER, "dpu-node-001", world.resolve(CLUSTER, "dpu-node-001", port="p0"), Packet())
    assert [(d.pod, d.interface) for d in trace.deliveries] == [(f"{NS}/fw-0", "in_sf")]


# --- traces --------------------------------------------------------------------------------------------------


def _trace_spec(**raw: Any) -> TraceSpec:
    return TraceSpec.model_validate({"name": "t", **raw})


def _judge(twin: Twin, spec: TraceSpec, node: str = "dpu-node-001") -> list[str]:
    check = TraceCheck(spec)
    check.bind(twin)
    world = _world(twin)
    src = spec.from_
    source = world.resolve(CLUSTER, node, port=src.port, bridge=src.bridge, pod=src.pod, interface=src.interface,
                           namespace=src.namespace)
    return check.judge(world.trace(CLUSTER, node, source, Packet(**spec.packet.model_dump(by_alias=False)),
                                   side_effects=False))


def test_trace_verdicts_name_where_the_packet_really_went(hbn: Twin) -> None:
    ok = _trace_spec(**{"from": "p0", "expect": {"to": [{"pod": HBN, "interface": "p0_if"}], "via": ["hbn-to-fabric"],
                                                 "rewrites": {}}})
    assert _judge(hbn, ok) == []
    wrong = _trace_spec(**{"from": "p0", "expect": {"to": ["p1"], "via": ["ovn-to-hbn"]}})
    problems = _judge(hbn, wrong)
    assert problems[0].startswith("went to pod dpf-operator-system/doca-hbn-") and "missing p1" in problems[0]
    assert problems[1] == "no flow of chain ovn-to-hbn was hit"
    drop = _trace_spec(**{"from": "p0", "expect": {"drop": True}})
    assert _judge(hbn, drop)[0].startswith("expected a drop, left through pod")
    # Nothing on br-sfc joins p1 to ovn: a packet for the host from the fabric's second uplink goes to HBN only.
    leak = _trace_spec(**{"from": "br-sfc:p1", "expect": {"to": [{"pod": HBN, "interface": "p1_if"}]}})
    assert _judge(hbn, leak) == []


def test_trace_check_runs_on_every_node_at_its_time_and_renders_the_path(hbn: Twin) -> None:
    spec = _trace_spec(**{"from": {"pod": HBN, "interface": "pf2dpu2_if"},
                          "expect": {"to": ["pf0hpf", "br-ovn"], "via": ["ovn-to-hbn"]}})
    check = TraceCheck(spec)
    check.bind(hbn)
    check.on_decided = lambda c: None
    check.activate([])
    hbn.run(hbn.now + 1)
    assert check.passed is True, check.detail
    assert "as expected on 2 node(s)" in check.detail
    text = "\n".join(check.lines)
    assert "[2 node(s): dpu-node-001, dpu-node-002]" in text
    assert "(ServiceChain ovn-to-hbn-dpu-node-001)" in text and "(HBN pairing)" in text
    assert "out: br-ovn:pf0hpf" in text


def test_trace_needs_the_servicechain_attachment() -> None:
    check = TraceCheck(_trace_spec(**{"from": "p0", "expect": {"drop": True}}))
    with pytest.raises(ScenarioError, match="needs the servicechain attachment"):
        check.bind(Twin(TwinConfig(keep_log=False)))


def test_trace_expectations_are_validated_with_lines() -> None:
    text = """
attachments: [servicechain]
expect:
  - trace: {name: a, from: {port: p0, pod: x}, expect: {drop: true}}
  - trace: {name: b, from: p0, packet: {ethSrc: "not-a-mac"}, expect: {}}
  - trace: {name: c, from: p0}
"""
    with pytest.raises(ScenarioError) as err:
        load_scenario_text(text)
    problems = "\n".join(err.value.problems)
    assert "<scenario>:4: expect[0].trace.from: give exactly one of port, pod" in problems
    assert '<scenario>:5: expect[1].trace.packet.ethSrc: invalid MAC address "not-a-mac"' in problems
    assert "<scenario>:6: expect[2].trace.expect: required field" in problems


# --- OVS leftovers and IPAM --------------------------------------------------------------------------------


def test_leftover_ovs_state_is_flagged_until_the_stale_sweep_removes_it() -> None:
    twin = _twin(1, leftovers={"ports": ["pf0vf9"], "flows": ["cookie=0xdead,priority=10,in_port=1,actions=output:2"]},
                 stalePeriod=20)
    check = OvsClean(InvariantSpec(name="clean", type="ovsClean", after=0, within=60))
    check.bind(twin)
    assert sorted(check.leftovers()) == [
        "dpu-node-001: flow cookie=0xdead, priority=10,in_port=1 actions=output:2",
        "dpu-node-001: port br-sfc:pf0vf9",
    ]
    check.on_decided = lambda c: None
    check.activate([])
    twin.run(19)
    assert check.passed is None  # the sweep (every 20 s here) has not run yet
    twin.run(30)
    assert check.passed is True and check.leftovers() == []


def test_ipam_invariant_catches_overlaps_bad_gateways_and_moves() -> None:
    inv = IpamAllocations(InvariantSpec(name="ipam", type="ipamAllocations"))
    inv.twin = _twin(1)
    inv.on_decided = lambda c: None

    def pool(allocations: list[dict[str, str]]) -> Any:
        from dpf_core.store.protocol import WatchEvent

        obj = CIDRPool.model_validate({
            "apiVersion": "nv-ipam.nvidia.com/v1alpha1", "kind": "CIDRPool",
            "metadata": {"name": "p", "namespace": NS},
            "spec": {"cidr": "10.0.0.0/24", "perNodeNetworkPrefix": 29, "gatewayIndex": 1},
            "status": {"allocations": allocations}})
        return WatchEvent("MODIFIED", obj)

    inv.on_event(CLUSTER, pool([{"nodeName": "a", "prefix": "10.0.0.0/29", "gateway": "10.0.0.1"},
                                {"nodeName": "b", "prefix": "10.0.0.8/29", "gateway": "10.0.0.9"}]))
    assert inv.passed is None
    inv.on_event(CLUSTER, pool([{"nodeName": "a", "prefix": "10.0.0.16/29", "gateway": "10.0.0.17"},
                                {"nodeName": "b", "prefix": "10.0.0.8/29", "gateway": "10.0.0.9"}]))
    assert inv.passed is False and "a: moved from 10.0.0.0/29 to 10.0.0.16/29" in inv.offending
    for bad, why in (
        ([{"nodeName": "a", "prefix": "10.0.0.0/29", "gateway": "10.0.0.1"},
          {"nodeName": "b", "prefix": "10.0.0.0/29", "gateway": "10.0.0.1"}], "a and b overlap"),
        ([{"nodeName": "a", "prefix": "10.0.0.0/29", "gateway": "10.0.0.2"}], "a: gateway 10.0.0.2 in 10.0.0.0/29, expected 10.0.0.1"),
    ):
        fresh = IpamAllocations(InvariantSpec(name="ipam", type="ipamAllocations"))
        fresh.twin = inv.twin
        fresh.on_event(CLUSTER, pool(bad))
        assert fresh.passed is False and why in fresh.offending


def test_ovs_restart_loses_flows_and_agent_ports_and_the_sfc_agent_restores_them() -> None:
    """The catalogue's ovsRestart on a DPU node: every flow and the SFC agent's ServiceInterface ports are
    gone at once; the agent puts back exactly what was there on its next passes; pod ports survive."""
    twin = _twin(2)
    host, ds = _hbn_manifests()
    twin.run(1)
    twin.apply(host)
    twin.apply(ds, store=CLUSTER)
    twin.run(30)
    node = "dpu-node-001"
    dp = _world(twin).ovs[node]

    def state() -> tuple[list[str], dict[str, list[str]], list[str]]:
        # Re-added ports may get other ofports, so flows are compared by cookie and priority.
        flows = sorted(re.sub(r"(in_port=|output:)\d+", r"\1N", line) for line in dp.dump_flows("br-sfc", stats=False))
        ports = {br: sorted(p["name"] for p in dp.ports(br)) for br in sorted(dp.bridges)}
        ids = sorted(i.external_ids.get("dpf-id", "") for br in dp.bridges.values() for i in br.interfaces())
        return flows, ports, ids

    before = state()
    assert before[0], "the chains programmed flows on br-sfc"
    pod_ports = [name for name in before[1]["br-sfc"] if name.startswith(("p0_if", "p1_if"))]
    twin.inject({"type": "ovsRestart", "dpus": [node]})
    lost_flows, lost_ports, _ = state()
    assert lost_flows == []
    assert set(lost_ports["br-sfc"]) < set(before[1]["br-sfc"])  # the agent's ports are gone ...
    assert all(p in lost_ports["br-sfc"] for p in pod_ports)  # ... pods' ports are not
    twin.run(twin.now + 60)
    assert state() == before


# --- the twin's chain re-apply: a backstop period, and wakes on what the re-apply would notice ---------------


def _chain_passes(twin: Twin, node: str) -> int:
    manager = _world(twin).nodes[(CLUSTER, node)].manager
    return int(manager.controller(sfc.NAME_SERVICE_CHAIN).metrics()["reconciles"])


def _hbn_twin(**params: Any) -> Twin:
    twin = _twin(2, **params)
    host, ds = _hbn_manifests()
    twin.run(1)
    twin.apply(host)
    twin.apply(ds, store=CLUSTER)
    twin.run(30)
    return twin


def _chain_lines(twin: Twin, node: str, chain: str) -> list[str]:
    dp = _world(twin).ovs[node]
    return dp.dump_flows("br-sfc", stats=False, cookie=sfc.chain_cookie(NS, f"{chain}-{node}"))


def test_programmed_chains_wait_for_a_change_instead_of_a_5_s_re_apply() -> None:
    twin = _hbn_twin()
    node = "dpu-node-001"
    assert _world(twin).params.chain_requeue == 600.0
    passes = _chain_passes(twin, node)
    twin.run(twin.now + 120)
    assert _chain_passes(twin, node) == passes  # DPF would have re-applied both chains 24 times each

    dpf = _hbn_twin(chainRequeue="5s")
    passes = _chain_passes(dpf, node)
    dpf.run(dpf.now + 120)
    assert _chain_passes(dpf, node) - passes == 2 * 24


def test_a_lost_or_overwritten_chain_flow_is_restored_at_once() -> None:
    twin = _hbn_twin()
    node = "dpu-node-001"
    dp = _world(twin).ovs[node]
    good = _chain_lines(twin, node, "hbn-to-fabric")
    other = _chain_lines(twin, node, "ovn-to-hbn")
    passes = _chain_passes(twin, node)
    # Someone deletes the chain's flows by cookie: only that chain is woken, and it puts them back.
    dp.del_flows_cookie("br-sfc", sfc.chain_cookie(NS, f"hbn-to-fabric-{node}"))
    assert _chain_lines(twin, node, "hbn-to-fabric") == []
    twin.run(twin.now + 1)
    assert _chain_lines(twin, node, "hbn-to-fabric") == good
    assert _chain_passes(twin, node) == passes + 1
    # Someone overwrites one of its flows (same match and priority) with a drop.
    in_port = dp.bridges["br-sfc"].ports["p0"].interface.ofport
    dp.add_flow("br-sfc", f"table=0,priority=20,in_port={in_port},actions=drop")
    assert _chain_lines(twin, node, "hbn-to-fabric") != good
    twin.run(twin.now + 1)
    assert _chain_lines(twin, node, "hbn-to-fabric") == good
    assert _chain_lines(twin, node, "ovn-to-hbn") == other


def test_a_member_port_moving_to_another_ofport_reprograms_its_chain() -> None:
    twin = _hbn_twin()
    node = "dpu-node-001"
    dp = _world(twin).ovs[node]
    old = dp.bridges["br-sfc"].ports["p1"]
    # The uplink comes back under a new number (as the OVS helper's re-add of a dpdk port may do).
    dp.bridges["br-sfc"].del_port("p1")
    twin.run(twin.now + 1)
    sc = twin.dpu_clusters[CLUSTER].get(ServiceChain, f"hbn-to-fabric-{node}", NS)
    assert [(c.status, c.reason) for c in sc.status.conditions] == [("False", "Pending")]
    readded = dp.bridges["br-sfc"].add_port("p1", "dpdk", external_ids=dict(old.external_ids),
                                            iface_external_ids=dict(old.interface.external_ids))
    assert readded.interface.ofport != old.interface.ofport
    twin.run(twin.now + 6)  # a chain that failed retries at DPF's 5 s, woken or not
    assert any(f"in_port={readded.interface.ofport} " in line for line in _chain_lines(twin, node, "hbn-to-fabric"))
    sc = twin.dpu_clusters[CLUSTER].get(ServiceChain, f"hbn-to-fabric-{node}", NS)
    assert [(c.status, c.reason) for c in sc.status.conditions] == [("True", "Success")]


def test_a_second_interface_matching_a_member_selector_wakes_its_chain() -> None:
    from dpf_core.api.svc import ServiceInterface

    twin = _hbn_twin()
    node = "dpu-node-001"
    store = twin.dpu_clusters[CLUSTER]
    passes = _chain_passes(twin, node)
    # Only an object appears (its uplink port is already on the switch, so OVS does not change).
    store.create(ServiceInterface.new("extra-p0", NS, metadata={"name": "extra-p0", "namespace": NS,
                                                                "labels": {"uplink": "p0"}},
                                      spec={"node": node, "interfaceType": "physical",
                                            "physical": {"interfaceName": "p0"}}))
    twin.run(twin.now + 1)
    sc = store.get(ServiceChain, f"hbn-to-fabric-{node}", NS)
    assert [(c.status, c.reason) for c in sc.status.conditions] == [("False", "Pending")]
    assert "expected only one serviceInterface" in sc.status.conditions[0].message
    assert _chain_passes(twin, node) == passes + 1  # ovn-to-hbn selects no uplink: not woken
