"""DPF's DPUServiceIPAM and DPUServiceCredentialRequest guides run from the outside (`scenarios_unseen_svc_9/`):
the guides' manifests copied unchanged under `manifests/` (the IPAM guide's service objects also in a copy with
only `namespace: dpf-operator-system` added), scenarios written from docs/scenarios.md alone. What the awaits
cannot see (annotations, allocations, flows, condition texts, token times) is checked here.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from services_helpers import before_step, quiet_logging, run_passing  # noqa: F401 (quiet_logging is a fixture)

from dpf_core.api import admission, registry
from dpf_core.api.external import IPPool, Pod, Secret, ServiceAccount
from dpf_core.api.provisioning import DPUSet
from dpf_core.api.svc import DPUDeployment, DPUService, DPUServiceCredentialRequest, DPUServiceIPAM
from dpf_core.controllers.credential_request import secret_data
from dpf_core.controllers.dpudeployment import fitting_problems
from dpf_core.controllers.sfc import chain_cookie
from dpf_core.errors import ApiError
from dpf_core.runtime import parse_rfc3339
from dpf_core.store.memory import MemoryStore
from dpf_core.store.protocol import WatchEvent
from dpf_sim.argocd import Chart, ChartCatalogue
from dpf_sim.cni import ANNOTATION_NETWORK_STATUS
from dpf_sim.runner import Runner, RunResult
from dpf_sim.scenario import load_scenario

HERE = Path(__file__).resolve().parent / "scenarios_unseen_svc_9"
IPAM_GUIDE = HERE / "manifests" / "dpuserviceipam"
CRED_GUIDE = HERE / "manifests" / "credential_request"
CLUSTER = "dpu-cplane-tenant1/dpu-cplane-tenant1"
OPERATOR_NS = "dpf-operator-system"
NODES = tuple(f"worker-0-{i}-0000-04-00" for i in range(3))
SERVICES = ("producer", "consumer")

pytestmark = pytest.mark.usefixtures("quiet_logging")


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _run(name: str, *, before: str | None = None) -> tuple[Runner, RunResult]:
    return run_passing(HERE / f"{name}.yaml", before=before)


def _service_pods(runner: Runner) -> dict[tuple[str, str], Pod]:
    """(service, node) -> its pod in the DPU cluster."""
    out: dict[tuple[str, str], Pod] = {}
    for p in runner.twin.stores()[CLUSTER].list(Pod, OPERATOR_NS):
        service = p.metadata.labels.get("svc.dpu.nvidia.com/service")
        if service in SERVICES:
            out[(service, p.spec.node_name or "")] = p
    return out


# --- the DPUServiceIPAM guide -----------------------------------------------------------------------------------


def test_the_guide_ipam_outside_the_operator_namespace_is_refused_as_its_limitations_say() -> None:
    registry.load_all()
    (raw,) = _docs(IPAM_GUIDE / "example-pool1-ipv4subnet.yaml")
    assert "namespace" not in raw["metadata"]  # unchanged: kubectl would put it in `default`
    raw["metadata"]["namespace"] = "default"
    with pytest.raises(ApiError) as err:
        admission.admit_create(raw, MemoryStore())
    assert "currently only 'dpf-operator-system' namespace is supported" in str(err.value)


def test_switching_the_guide_ipam_from_subnet_to_network_mode_is_refused_by_the_webhook() -> None:
    """The guide says a mode switch replaces the pool; DPF's webhook (dpuserviceipam_webhook.go) forbids it."""
    registry.load_all()
    (subnet,) = _docs(IPAM_GUIDE / "example-pool1-ipv4subnet.yaml")
    (network,) = _docs(IPAM_GUIDE / "example-pool1-ipv4network.yaml")
    for raw in (subnet, network):
        raw["metadata"]["namespace"] = OPERATOR_NS
    store = MemoryStore()
    old = admission.admit_create(subnet, store)
    assert isinstance(old, DPUServiceIPAM)
    store.create(old)
    stored = store.get(DPUServiceIPAM, "example-pool1", OPERATOR_NS)
    # What `kubectl apply` of the second example sends: ipv4Subnet dropped (last-applied), ipv4Network added.
    new = admission.decode({**network, "metadata": {**network["metadata"],
                                                    "resourceVersion": stored.metadata.resource_version}})
    with pytest.raises(ApiError) as err:
        admission.admit_update(new, stored, store)
    assert "transitioning from ipv4subnet to ipv4network and vice versa is currently not supported" in str(err.value)


def test_a_catalogue_tells_apart_git_charts_of_one_repository_by_path() -> None:
    """The guide's services name their charts by `path` in one repository at one version (a Git source)."""
    catalogue = ChartCatalogue.from_config([
        {"repoURL": "https://example.com/charts", "path": "producer", "version": "v0.0.1",
         "workloads": [{"name": "producer", "image": "p"}]},
        {"repoURL": "https://example.com/charts", "path": "consumer", "version": "v0.0.1",
         "workloads": [{"name": "consumer", "image": "c"}]},
        {"repoURL": "oci://example.com/charts", "chart": "producer", "version": "v0.0.1",
         "workloads": [{"name": "helm-producer", "image": "h"}]},
    ])

    def workload(found: Chart | None) -> str:
        assert found is not None
        return found.workloads[0].name

    assert workload(catalogue.find("https://example.com/charts", None, "v0.0.1", "producer")) == "producer"
    assert workload(catalogue.find("https://example.com/charts", None, "v0.0.1", "consumer")) == "consumer"
    # A Helm repository's chart name wins over a path the source may also carry.
    assert workload(catalogue.find("oci://example.com/charts", "producer", "v0.0.1", "ignored")) == "helm-producer"
    assert catalogue.find("https://example.com/charts", None, "v0.0.1", "other") is None
    assert catalogue.find("https://example.com/charts", None, "v0.0.1") is None


@pytest.fixture(scope="module")
def ipam_before_fix() -> Runner:
    # Module-scoped, so the function-scoped quiet_logging fixture does not cover it.
    logging.disable(logging.ERROR)
    try:
        return _run("ipam-guide", before="fix-chain")[0]
    finally:
        logging.disable(logging.NOTSET)


@pytest.fixture(scope="module")
def ipam_guide() -> Runner:
    logging.disable(logging.ERROR)
    try:
        return _run("ipam-guide")[0]
    finally:
        logging.disable(logging.NOTSET)


def test_the_subnet_pool_is_cut_in_256_address_chunks_per_node_sharing_one_gateway(ipam_guide: Runner) -> None:
    pool = ipam_guide.twin.stores()[CLUSTER].get(IPPool, "example-pool1", OPERATOR_NS)
    assert (pool.spec.subnet, pool.spec.per_node_block_size, pool.spec.gateway) == ("192.168.0.0/20", 256, "192.168.0.1")
    assert pool.metadata.labels.get("svc.dpu.nvidia.com/pool") == "example-pool1"
    blocks = {a.node_name: (ipaddress.IPv4Address(a.start_ip), ipaddress.IPv4Address(a.end_ip))
              for a in pool.status.allocations}
    assert set(blocks) == set(NODES)
    for start, end in blocks.values():
        assert int(end) - int(start) + 1 == 256
        assert start in ipaddress.ip_network("192.168.0.0/20") and end in ipaddress.ip_network("192.168.0.0/20")
    spans = sorted(blocks.values())
    assert all(a[1] < b[0] for a, b in itertools.pairwise(spans)), spans


def test_a_chain_naming_no_existing_pool_leaves_the_pods_without_an_address(ipam_before_fix: Runner) -> None:
    """The guide's chain asks for `svc.dpu.nvidia.com/pool: pool1`; the IPAM is labelled example-pool1. DPF's
    pod-ipam-injector finds no IPPool/CIDRPool, requeues and leaves the annotation alone: no pod starts."""
    pods = _service_pods(ipam_before_fix)
    assert set(pods) == {(s, n) for s in SERVICES for n in NODES}
    for pod in pods.values():
        assert pod.status.phase == "Pending"
        networks = json.loads(pod.metadata.annotations["k8s.v1.cni.cncf.io/networks"])
        assert [n["interface"] for n in networks] == ["app-iface"]
        assert not networks[0].get("cni-args"), networks
        assert ANNOTATION_NETWORK_STATUS not in pod.metadata.annotations


def test_after_the_label_fix_every_node_runs_both_services_with_an_address_of_its_chunk(ipam_guide: Runner) -> None:
    store = ipam_guide.twin.stores()[CLUSTER]
    pool = store.get(IPPool, "example-pool1", OPERATOR_NS)
    blocks = {a.node_name: (ipaddress.IPv4Address(a.start_ip), ipaddress.IPv4Address(a.end_ip))
              for a in pool.status.allocations}
    pods = _service_pods(ipam_guide)
    assert set(pods) == {(s, n) for s in SERVICES for n in NODES}
    seen: set[str] = set()
    for (_service, node), pod in pods.items():
        assert pod.status.phase == "Running"
        networks = json.loads(pod.metadata.annotations["k8s.v1.cni.cncf.io/networks"])
        assert networks[0]["cni-args"] == {"allocateDefaultGateway": False, "poolNames": ["example-pool1"],
                                           "poolType": "ippool"}
        (status,) = [s for s in json.loads(pod.metadata.annotations[ANNOTATION_NETWORK_STATUS])
                     if s.get("interface") == "app-iface"]
        (ip,) = status["ips"]
        assert status["gateway"] == ["192.168.0.1"]
        start, end = blocks[node]
        assert start <= ipaddress.IPv4Address(ip) <= end and ip != "192.168.0.1"
        seen.add(ip)
    assert len(seen) == len(pods)


def test_the_chain_puts_producer_and_consumer_on_one_switch_on_every_node(ipam_guide: Runner) -> None:
    pods = _service_pods(ipam_guide)
    for node in NODES:
        dp = ipam_guide.twin.servicechain.nodes[(CLUSTER, node)].datapath  # type: ignore[attr-defined]
        ports = {p["external_ids"].get("dpf-id", ""): int(p["ofport"]) for p in dp.ports("br-sfc")}
        ofport = {s: ports[f"{OPERATOR_NS}/{pods[(s, node)].name}/app-iface"] for s in SERVICES}
        cookie = chain_cookie(OPERATOR_NS, f"producer-consumer-{node}")
        flows = [f for f in dp.dump_flows("br-sfc", stats=False, cookie=cookie) if "priority=20" in f]
        assert flows, node
        text = "\n".join(flows)
        for s in SERVICES:
            assert f"in_port={ofport[s]}" in text, (node, s, flows)


# --- the DPUServiceCredentialRequest guide ----------------------------------------------------------------------


class CredentialHistory:
    """Every (time, conditions, expirationTimestamp, issuedAt) of the guide's request, one entry per change."""

    def __init__(self, runner: Runner) -> None:
        self.entries: list[tuple[float, dict[str, tuple[str, str]], str | None, str | None]] = []
        self._env = runner.twin.env
        runner.twin.host.subscribe(self._seen, [DPUServiceCredentialRequest])

    def _seen(self, ev: WatchEvent) -> None:
        if ev.type == "DELETED":
            return
        obj = ev.object
        assert isinstance(obj, DPUServiceCredentialRequest)
        conds = {c.type: (str(c.status), c.message or "") for c in obj.status.conditions}
        entry = (float(self._env.now), conds, obj.status.expiration_timestamp, obj.status.issued_at)
        if not self.entries or self.entries[-1][1:] != entry[1:]:
            self.entries.append(entry)


@pytest.fixture(scope="module")
def credential_guide() -> tuple[Runner, CredentialHistory]:
    loaded = before_step(load_scenario(HERE / "credential-guide.yaml"), "cluster-gone")
    runner = Runner(loaded, progress=False, series=False)
    history = CredentialHistory(runner)
    result = runner.run()
    assert result.passed, "\n".join(f"{o.name}: {o.detail}" for o in result.failures)
    return runner, history


def test_a_request_for_a_missing_cluster_says_so_in_dpf_words_and_is_retried(
        credential_guide: tuple[Runner, CredentialHistory]) -> None:
    _runner, history = credential_guide
    failing = [c for t, c, _e, _i in history.entries if t < 600 and "ServiceAccountReconciled" in c]
    assert failing
    status, message = failing[-1]["ServiceAccountReconciled"]
    assert status == "False"
    # DPF: fmt.Errorf("error while getting DPU cluster %v: %w", name, <the API server's NotFound>)
    assert message == ('Error occurred: error while getting DPU cluster dpu-cplane-tenant1: '
                       'dpuclusters.provisioning.dpu.nvidia.com "dpu-cplane-tenant1" not found')
    assert failing[-1]["Ready"][0] == "False"
    ready_at = next(t for t, c, _e, _i in history.entries if c.get("Ready", ("",))[0] == "True")
    assert 600 < ready_at < 600 + 30 * 60


def test_the_guide_secret_is_a_kubeconfig_for_the_service_account_in_the_dpu_cluster(
        credential_guide: tuple[Runner, CredentialHistory]) -> None:
    runner, _history = credential_guide
    twin = runner.twin
    sa = twin.stores()["default/dpu-cplane-tenant1"].get(ServiceAccount, "dpu-01-sa", "default")
    assert sa.automount_service_account_token is False
    assert twin.host.try_get(ServiceAccount, "dpu-01-sa", "default") is None
    secret = twin.host.get(Secret, "dpu-01-credential", "default")
    assert secret.type == "Opaque" and secret.metadata.labels == {"dpuservice": "dpu-01"}
    data = secret_data(secret)
    assert set(data) == {"kubeconfig"}
    cfg = yaml.safe_load(data["kubeconfig"])
    assert cfg["current-context"] == "dpu-01-sa"
    (ctx,) = cfg["contexts"]
    assert ctx["name"] == "dpu-01-sa" and ctx["context"]["user"] == "dpu-01-sa"
    assert ctx["context"]["namespace"] == "default"
    assert twin.services.tokens.valid(cfg["users"][0]["user"]["token"])  # type: ignore[attr-defined]
    obj = twin.host.get(DPUServiceCredentialRequest, "dpu-01-credential-request", "default")
    assert obj.status.target_cluster == "default/dpu-cplane-tenant1"
    assert obj.status.service_account == "default/dpu-01-sa" and obj.status.secret == "default/dpu-01-credential"


def test_tokens_are_refreshed_at_80_percent_and_a_new_duration_takes_effect_at_once(
        credential_guide: tuple[Runner, CredentialHistory]) -> None:
    _runner, history = credential_guide
    epoch = parse_rfc3339("2025-01-01T00:00:00Z")
    issued: list[tuple[float, float, float]] = []  # (seen at, issuedAt, ttl)
    for t, _c, exp, iat in history.entries:
        if exp and iat and (not issued or parse_rfc3339(iat) - epoch != issued[-1][1]):
            issued.append((t, parse_rfc3339(iat) - epoch, parse_rfc3339(exp) - parse_rfc3339(iat)))
    before = [i for i in issued if i[0] < 3 * 3600]
    after = [i for i in issued if i[0] >= 3 * 3600]
    assert all(ttl == 3600 for _t, _i, ttl in before)
    gaps = [b[1] - a[1] for a, b in itertools.pairwise(before)]
    assert len(gaps) >= 2 and all(0.8 * 3600 - 10 <= g <= 0.8 * 3600 + 10 for g in gaps), gaps
    assert after and after[0][2] == 7200 and 3 * 3600 <= after[0][1] < 3 * 3600 + 60, after


def test_deleting_the_request_after_its_cluster_releases_it_and_deletes_the_secret() -> None:
    runner, _result = _run("credential-guide")
    assert runner.twin.host.try_get(DPUServiceCredentialRequest, "dpu-01-credential-request", "default") is None
    assert runner.twin.host.try_get(Secret, "dpu-01-credential", "default") is None


# --- the DPUDeployment guide: resource fitting --------------------------------------------------------------------


DEPLOYMENT_GUIDE = HERE / "manifests" / "dpudeployment"


def test_the_guide_services_fit_the_guide_flavor() -> None:
    registry.load_all()
    templates = [admission.decode(d) for d in _docs(DEPLOYMENT_GUIDE / "dpuservicetemplates.yaml")]
    (flavor,) = [admission.decode(d) for d in _docs(DEPLOYMENT_GUIDE / "dpuflavor.yaml")]
    assert fitting_problems(flavor, templates) == []  # type: ignore[arg-type]


def test_a_flavor_too_small_for_the_guide_services_fails_fitting_with_dpf_message() -> None:
    runner, _result = _run("dpudeployment-fit")
    host = runner.twin.host
    dep = host.get(DPUDeployment, "producer-consumer", "customer-namespace")
    fit = next(c for c in dep.status.conditions if c.type == "ResourceFittingReady")
    assert (fit.status, fit.reason) == ("False", "Failure")
    # dpudeployment_controller.go verifyResourceFitting + GetAllocatableResources: the missing amounts, `%v` of a
    # []string ("name: quantity"), wrapped in conditions' "Error occurred: %s".
    assert fit.message == ("Error occurred: there are not enough resources for DPUServices to fit in this "
                           "DPUDeployment:  Additional resources needed: [cpu: 1 memory: 2Gi nvidia.com/sf: 1]")
    assert host.list(DPUService, "customer-namespace") == []
    assert host.list(DPUSet, "customer-namespace") == []


def test_the_converged_check_finds_charts_named_by_path(ipam_guide: Runner) -> None:
    """The chaos `Converged` invariant looks each Application's chart up as ArgoCD does: the guide's services name
    theirs by `helmChart.source.path`, so nothing may be reported missing from the catalogue."""
    from dpf_sim.chaos import services_why_not

    why = services_why_not(ipam_guide.twin)
    assert not [w for w in why.values() if "not in the catalogue" in w], why
    assert not [k for k in why if k.startswith("DPUService ")], why
