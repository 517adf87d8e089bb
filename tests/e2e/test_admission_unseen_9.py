"""Acceptance (session 9): admission and the rendered CRDs, checked against DPF's CRDs and the API server's
wording rather than our own fixtures.

Oracles: DPF v24.10 CRDs (config/*/crd/bases: x-kubernetes-validations rules and their messages, enums,
minimum/maximum), apiextensions-apiserver (a failed CEL rule is `<path>: Invalid value: "object": <message>`),
kube-openapi (`<path> in body should be greater than or equal to N`), field.NotSupported (`supported values:
"a", "b"`). The rendered CRDs' validation rules are compared with the (path, message) pairs recorded from
DPF's CRDs in dpf_crd_validations.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dpf_core.api import admission, registry
from dpf_core.api.crd import render_all
from dpf_core.api.provisioning import DPU, DPUCluster
from dpf_core.errors import Invalid
from dpf_core.store.memory import MemoryStore

registry.load_all()

HERE = Path(__file__).resolve().parent
NS = "dpf-operator-system"


def _causes(raw: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(Invalid) as err:
        admission.admit_create(raw, MemoryStore())
    return {c.field: c.message for c in err.value.causes}


# ---- CEL rules: the value shown is the schema type, not the object -----------------------------------------------


def test_a_broken_cel_rule_names_the_schema_type_as_the_value() -> None:
    got = _causes({
        "apiVersion": "svc.dpu.nvidia.com/v1alpha1", "kind": "DPUService", "metadata": {"name": "s", "namespace": NS},
        "spec": {"interfaces": ["p0-sf"], "helmChart": {"source": {"repoURL": "https://h.example/c", "version": "1"}}},
    })
    assert got == {"spec": 'Invalid value: "object": serviceID must be provided when interfaces are provided'}


def test_every_port_breaking_the_dpudeployment_rule_is_listed() -> None:
    port = {"serviceInterface": {"matchLabels": {"uplink": "p0"}}, "service": {"name": "hbn", "interface": "p0_if"}}
    got = _causes({
        "apiVersion": "svc.dpu.nvidia.com/v1alpha1", "kind": "DPUDeployment", "metadata": {"name": "d", "namespace": NS},
        "spec": {"dpus": {"bfb": "b", "flavor": "f"}, "services": {"hbn": {"serviceTemplate": "t", "serviceConfiguration": "c"}},
                 "serviceChains": [{"ports": [port, {}]}]},
    })
    message = 'Invalid value: "object": either service or serviceInterface must be specified'
    assert got == {"spec.serviceChains[0].ports[0]": message, "spec.serviceChains[0].ports[1]": message}


# ---- immutability: DPF's transition rules and their messages -----------------------------------------------------


def _stored(store: MemoryStore, raw: dict[str, Any]) -> Any:
    return store.create(admission.admit_create(raw, store))


def test_bfb_and_dpuflavor_specs_are_refused_with_their_crd_messages() -> None:
    store = MemoryStore()
    bfb = _stored(store, {"apiVersion": "provisioning.dpu.nvidia.com/v1alpha1", "kind": "BFB",
                          "metadata": {"name": "b", "namespace": NS}, "spec": {"url": "https://x.example/a.bfb"}})
    edited = bfb.deepcopy()
    edited.spec.url = "https://x.example/b.bfb"
    with pytest.raises(Invalid) as err:
        admission.admit_update(edited, bfb, store)
    assert [(c.field, c.message) for c in err.value.causes] == [("spec", 'Invalid value: "object": Value is immutable')]

    flavor = _stored(store, {"apiVersion": "provisioning.dpu.nvidia.com/v1alpha1", "kind": "DPUFlavor",
                             "metadata": {"name": "f", "namespace": NS}, "spec": {"bfcfgParameters": ["A=1"]}})
    edited_flavor = flavor.deepcopy()
    edited_flavor.spec.bfcfg_parameters = ["A=2"]
    with pytest.raises(Invalid) as err:
        admission.admit_update(edited_flavor, flavor, store)
    assert [(c.field, c.message) for c in err.value.causes] == [
        ("spec", 'Invalid value: "object": DPUFlavor spec is immutable')
    ]


def test_dpu_node_name_and_dpucluster_kubeconfig_name_the_string_type() -> None:
    store = MemoryStore()
    dpu = DPU.new("d", NS, spec={"bfb": "b", "nodeName": "worker-1"})
    stored = store.create(admission.admit_create(dpu, store))
    moved = stored.deepcopy()
    moved.spec.node_name = "worker-2"
    with pytest.raises(Invalid) as err:
        admission.admit_update(moved, stored, store)
    assert ("spec.nodeName", 'Invalid value: "string": Value is immutable') in [(c.field, c.message) for c in err.value.causes]

    cluster = DPUCluster.new("c", NS, spec={"type": "kamaji", "version": "v1.30.2", "kubeconfig": "c-admin-kubeconfig"})
    stored_cluster = store.create(admission.admit_create(cluster, store))
    other = stored_cluster.deepcopy()
    other.spec.kubeconfig = "other"
    with pytest.raises(Invalid) as err:
        admission.admit_update(other, stored_cluster, store)
    assert [(c.field, c.message) for c in err.value.causes] == [
        ("spec.kubeconfig", 'Invalid value: "string": kubeconfig is immutable')
    ]


def test_the_reference_path_reports_the_same_immutability_causes() -> None:
    store = MemoryStore()
    bfb = _stored(store, {"apiVersion": "provisioning.dpu.nvidia.com/v1alpha1", "kind": "BFB",
                          "metadata": {"name": "b", "namespace": NS}, "spec": {"url": "https://x.example/a.bfb"}})
    edited = bfb.deepcopy()
    edited.spec.file_name = "other.bfb"
    causes = []
    for full in (False, True):
        with pytest.raises(Invalid) as err:
            admission.admit_update(edited, bfb, store, full=full)
        causes.append([(c.field, c.message) for c in err.value.causes])
    assert causes[0] == causes[1] == [("spec", 'Invalid value: "object": Value is immutable')]


# ---- schema wording: bounds and enums as kube-openapi / field.NotSupported word them ------------------------------


def test_bounds_use_kube_openapi_wording_for_every_bad_field() -> None:
    got = _causes({
        "apiVersion": "provisioning.dpu.nvidia.com/v1alpha1", "kind": "DPUCluster",
        "metadata": {"name": "c", "namespace": NS},
        "spec": {"type": "kamaji", "version": "v1.30.2", "maxNodes": 0,
                 "clusterEndpoint": {"keepalived": {"interface": "br-ex", "vip": "10.0.0.5", "virtualRouterID": 300}}},
    })
    assert got == {
        "spec.maxNodes": "Invalid value: 0: spec.maxNodes in body should be greater than or equal to 1",
        "spec.clusterEndpoint.keepalived.virtualRouterID": "Invalid value: 300: "
        "spec.clusterEndpoint.keepalived.virtualRouterID in body should be less than or equal to 255",
    }


def test_an_enum_lists_its_supported_values_quoted_and_comma_separated() -> None:
    got = _causes({
        "apiVersion": "provisioning.dpu.nvidia.com/v1alpha1", "kind": "DPUSet", "metadata": {"name": "s", "namespace": NS},
        "spec": {"strategy": {"type": "Sideways"}, "dpuTemplate": {"spec": {"bfb": {"name": "b"}}}},
    })
    assert got["spec.strategy.type"] == 'Unsupported value: "Sideways": supported values: "Recreate", "RollingUpdate"'


def test_a_too_short_string_reads_as_the_api_server_says_it() -> None:
    got = _causes({
        "apiVersion": "svc.dpu.nvidia.com/v1alpha1", "kind": "DPUService", "metadata": {"name": "s", "namespace": NS},
        "spec": {"helmChart": {"source": {"repoURL": "https://h.example/c", "version": ""}}},
    })
    assert got == {
        "spec.helmChart.source.version": 'Invalid value: "": spec.helmChart.source.version in body should be at least 1 chars long'
    }


# ---- rendered CRDs carry DPF's x-kubernetes-validations ---------------------------------------------------------


def _rules(node: Any, path: str, out: set[tuple[str, str, str]]) -> None:
    if not isinstance(node, dict):
        return
    for r in node.get("x-kubernetes-validations", []):
        out.add((path, r["message"], r["rule"]))
    for key, child in node.get("properties", {}).items():
        _rules(child, f"{path}.{key}" if path else key, out)
    if "items" in node:
        _rules(node["items"], f"{path}[]", out)


def _ours() -> dict[str, set[tuple[str, str, str]]]:
    found: dict[str, set[tuple[str, str, str]]] = {}
    for doc in render_all():
        rules: set[tuple[str, str, str]] = set()
        _rules(doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"], "", rules)
        found[doc["metadata"]["name"]] = rules
    return found


def test_immutability_rules_are_in_the_rendered_crds_with_dpfs_rule_and_message() -> None:
    ours = _ours()
    assert ("spec", "Value is immutable", "self == oldSelf") in ours["bfbs.provisioning.dpu.nvidia.com"]
    assert ("spec", "DPUFlavor spec is immutable", "self == oldSelf") in ours["dpuflavors.provisioning.dpu.nvidia.com"]
    assert ("spec.kubeconfig", "kubeconfig is immutable", 'oldSelf==""||self==oldSelf') in ours[
        "dpuclusters.provisioning.dpu.nvidia.com"]
    assert {p for p, _, _ in ours["dpus.provisioning.dpu.nvidia.com"]} == {
        "spec.nodeName", "spec.pciAddress", "spec.cluster.name", "spec.cluster.namespace"}
    assert ("spec", "serviceID must be provided when interfaces are provided") in {
        (p, m) for p, m, _ in ours["dpuservices.svc.dpu.nvidia.com"]}
    assert ("spec.serviceChains[].ports[]", "either service or serviceInterface must be specified") in {
        (p, m) for p, m, _ in ours["dpudeployments.svc.dpu.nvidia.com"]}


def test_rendered_crds_carry_the_same_validation_messages_at_the_same_paths_as_dpfs() -> None:
    """Every x-kubernetes-validations (path, message) of DPF's 17 CRDs, as recorded from DPF v24.10.0-rc.6's
    config/*/crd/bases in dpf_crd_validations.json (facts, not the CRDs), is in ours and nothing else is."""
    facts = json.loads((HERE / "dpf_crd_validations.json").read_text())["crds"]
    ours = _ours()
    assert len(facts) >= 17
    for name, theirs in facts.items():
        assert {(p, m) for p, m, _ in ours[name]} == {(p, m) for p, m in theirs}, name


# ---- NamespaceLifecycle at the API server ---------------------------------------------------------------------


def test_namespace_lifecycle_refuses_missing_and_terminating_namespaces() -> None:
    from dpf_core.api.external import Namespace
    from dpf_core.api.provisioning import BFB
    from dpf_core.errors import Forbidden, NotFound
    from dpf_sim.apiserver.handlers import _namespace_lifecycle

    store = MemoryStore()
    with pytest.raises(NotFound, match=r'^namespaces "nowhere" not found$'):
        _namespace_lifecycle(store, BFB, "b", "nowhere", required=True)
    _namespace_lifecycle(store, BFB, "b", "nowhere", required=False)  # the twin's default: accepted
    ns = Namespace.new("team")
    ns.metadata.finalizers = ["kubernetes"]
    store.create(ns)
    _namespace_lifecycle(store, BFB, "b", "team", required=True)
    store.delete(Namespace, "team")
    with pytest.raises(Forbidden, match=r'^bfbs.provisioning.dpu.nvidia.com "b" is forbidden: unable to create new '
                       r"content in namespace team because it is being terminated$"):
        _namespace_lifecycle(store, BFB, "b", "team", required=False)
