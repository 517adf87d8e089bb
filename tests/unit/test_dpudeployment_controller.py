"""DPUDeployment: dependencies, resource fitting, the children with REAL versions, rollout of a changed
template as a new version, and ordered deletion."""

from __future__ import annotations

from typing import Any

from svc_world import World

from dpf_core.api.conditions import get_condition
from dpf_core.api.provisioning import BFB, DPUFlavor, DPUSet
from dpf_core.api.svc import (
    DPUDeployment,
    DPUService,
    DPUServiceChain,
    DPUServiceConfiguration,
    DPUServiceInterface,
    DPUServiceTemplate,
)
from dpf_core.controllers import dpudeployment
from dpf_core.controllers.dpudeployment import chain_version, fitting_problems, service_version

NS = "dpf-operator-system"
OWNED = "svc.dpu.nvidia.com/owned-by-dpudeployment"


def template(name: str, values: dict[str, Any] | None = None, resources: dict[str, Any] | None = None) -> DPUServiceTemplate:
    return DPUServiceTemplate.new(name, NS, spec={
        "deploymentServiceName": name,
        "helmChart": {"source": {"repoURL": "https://charts.example.com", "chart": name, "version": "1.0.0"},
                      "values": values or {"a": 1, "b": {"c": 1}}},
        "resourceRequirements": resources or {"cpu": "1"}})


def configuration(name: str, interfaces: list[str] | None = None, **sc: Any) -> DPUServiceConfiguration:
    spec: dict[str, Any] = {"deploymentServiceName": name,
                            "serviceConfiguration": {"helmChart": {"values": {"b": {"d": 2}}}, **sc}}
    if interfaces:
        spec["interfaces"] = [{"name": i, "network": "mybrsfc"} for i in interfaces]
    return DPUServiceConfiguration.new(name, NS, spec=spec)


def deployment() -> DPUDeployment:
    return DPUDeployment.new("example", NS, spec={
        "dpus": {"bfb": "bf-bundle", "flavor": "flavor",
                 "dpuSets": [{"nameSuffix": "set1", "nodeSelector": {"matchLabels": {"dpu": "yes"}},
                              "dpuAnnotations": {"note": "x"}}]},
        "services": {"hbn": {"serviceTemplate": "hbn", "serviceConfiguration": "hbn"},
                     "fw": {"serviceTemplate": "fw", "serviceConfiguration": "fw"}},
        "serviceChains": [{"ports": [{"service": {"name": "hbn", "interface": "p0_if"}},
                                     {"serviceInterface": {"matchLabels": {"uplink": "p0"}}}]}],
    })


def world(*, flavor_cpu: str = "8", with_deps: bool = True) -> World:
    w = World(dpudeployment.controller(), operator_config=False)
    if with_deps:
        w.apply(BFB.new("bf-bundle", NS, spec={"url": "http://example.com/b.bfb"}))
        w.apply(DPUFlavor.new("flavor", NS, spec={"dpuResources": {"cpu": flavor_cpu}, "systemReservedResources": {"cpu": "2"}}))
        w.apply(template("hbn"))
        w.apply(configuration("hbn", ["p0_if", "pf2dpu2_if"]))
        w.apply(template("fw"))
        w.apply(configuration("fw", deployInCluster=False))
    w.apply(deployment())
    return w


def cond(w: World, type: str) -> tuple[str, str, str]:
    c = get_condition(w.host.get(DPUDeployment, "example", NS).status.conditions, type)
    assert c is not None
    return c.status, c.reason, c.message


def test_fitting_and_versions_are_pure_functions() -> None:
    flavor = DPUFlavor.new("f", NS, spec={"dpuResources": {"cpu": "4", "memory": "8Gi"}, "systemReservedResources": {"cpu": "1"}})
    assert fitting_problems(flavor, [template("a", resources={"cpu": "2"}), template("b", resources={"cpu": "1"})]) == []
    problems = fitting_problems(flavor, [template("a", resources={"cpu": "3500m", "memory": "1Gi", "gpu": "1"})])
    assert problems == ["cpu: 500m", "gpu: 1"]
    assert fitting_problems(DPUFlavor.new("f", NS, spec={}), [template("a", resources={"cpu": "99"})]) == []
    a, c = template("a"), configuration("a")
    assert service_version(a, c) == service_version(a.deepcopy(), c.deepcopy())
    assert service_version(a, c) != service_version(template("a", values={"a": 2}), c)
    assert service_version(a, c) != service_version(a, configuration("a", ["x"]))
    assert chain_version(deployment()).startswith("v-")


def test_missing_dependencies_are_pending() -> None:
    w = world(with_deps=False)
    w.run()
    status, reason, message = cond(w, "PrerequisitesReady")
    assert (status, reason) == ("False", "Pending") and "BFB dpf-operator-system/bf-bundle" in message
    assert w.host.list(DPUService, NS) == [] and w.host.list(DPUSet, NS) == []


def test_resources_that_do_not_fit_fail_and_create_nothing() -> None:
    w = world(flavor_cpu="3")
    w.run()
    status, reason, message = cond(w, "ResourceFittingReady")
    assert (status, reason) == ("False", "Failure") and message.endswith("Additional resources needed: [cpu: 1]")
    assert cond(w, "Ready")[1] == "Failure"
    assert w.host.list(DPUService, NS) == []


def test_children_with_real_versions() -> None:
    w = world()
    assert w.run() == 0
    dep = w.host.get(DPUDeployment, "example", NS)
    v_hbn = service_version(w.host.get(DPUServiceTemplate, "hbn", NS), w.host.get(DPUServiceConfiguration, "hbn", NS))
    v_chain = chain_version(dep)
    # Dependencies are marked.
    for cls, name in ((BFB, "bf-bundle"), (DPUFlavor, "flavor"), (DPUServiceTemplate, "hbn"), (DPUServiceConfiguration, "fw")):
        o = w.host.get(cls, name, NS)
        assert o.metadata.labels["dpu.nvidia.com/consumed-by-dpudeployment-name"] == "example"
        assert "dpu.nvidia.com/dpudeployment" in o.metadata.finalizers
    # DPUService: template values under configuration values, service ID, interfaces, version, selector.
    svc = w.host.get(DPUService, "example-hbn", NS)
    assert svc.spec.helm_chart.values == {"a": 1, "b": {"c": 1, "d": 2}}
    assert svc.spec.service_id == "dpudeployment_example_hbn"
    assert svc.spec.interfaces == ["example-hbn-p0-if", "example-hbn-pf2dpu2-if"]
    assert svc.metadata.annotations["dpuservice.nvidia.com/version"] == v_hbn
    assert svc.metadata.labels[OWNED] == f"{NS}_example"
    assert svc.metadata.owner_references[0].name == "example" and svc.metadata.owner_references[0].controller
    assert svc.spec.service_daemon_set is not None and svc.spec.service_daemon_set.node_selector is not None
    exprs = svc.spec.service_daemon_set.node_selector.node_selector_terms[0].match_expressions
    assert [(e.key, e.values) for e in exprs] == [("svc.dpu.nvidia.com/dpuservice-hbn-version", [v_hbn]),
                                                  (OWNED, [f"{NS}_example"])]
    # DPUServiceInterface per configuration interface.
    dsi = w.host.get(DPUServiceInterface, "example-hbn-p0-if", NS)
    inner = dsi.spec.template.spec.template
    assert inner.spec.service is not None and inner.spec.service.service_id == "dpudeployment_example_hbn"
    assert inner.metadata is not None and inner.metadata.labels["svc.dpu.nvidia.com/interface"] == "p0_if"
    assert dsi.spec.template.spec.node_selector is not None
    assert dsi.spec.template.spec.node_selector.match_expressions[0].values == [v_hbn]
    # The chain: service ports become label matches, serviceInterface ports are copied.
    chain = w.host.get(DPUServiceChain, "example", NS)
    ports = chain.spec.template.spec.template.spec.switches[0].ports
    assert ports[0].service_interface.match_labels == {"svc.dpu.nvidia.com/service": "dpudeployment_example_hbn",
                                                       "svc.dpu.nvidia.com/interface": "p0_if"}
    assert ports[1].service_interface.match_labels == {"uplink": "p0"}
    assert chain.metadata.annotations["dpuservicechain.nvidia.com/version"] == v_chain
    # The DPUSet labels its DPUs' nodes with every version.
    ds = w.host.get(DPUSet, "example-set1", NS)
    assert ds.spec.strategy is not None and ds.spec.strategy.type == "RollingUpdate"
    assert ds.spec.dpu_template.annotations == {"note": "x"}
    assert ds.spec.dpu_template.spec.bfb.name == "bf-bundle" and ds.spec.dpu_template.spec.dpu_flavor == "flavor"
    labels = ds.spec.dpu_template.spec.cluster.node_labels if ds.spec.dpu_template.spec.cluster else {}
    assert labels[OWNED] == f"{NS}_example"
    assert labels["svc.dpu.nvidia.com/dpuservice-hbn-version"] == v_hbn
    assert labels["svc.dpu.nvidia.com/dpuservicechain-version"] == v_chain
    assert "placeholder-for-version" not in str([o.wire() for o in w.host.list(DPUService, NS)])
    assert cond(w, "DPUSetsReady")[0] == "True"
    assert cond(w, "DPUServicesReady")[0] == "False"  # children not Ready yet


def test_changed_template_rolls_out_as_a_new_version() -> None:
    w = world()
    w.run()
    before_hbn = w.host.get(DPUService, "example-hbn", NS).metadata.annotations["dpuservice.nvidia.com/version"]
    before_fw = w.host.get(DPUService, "example-fw", NS).metadata.annotations["dpuservice.nvidia.com/version"]
    before_set = w.host.get(DPUSet, "example-set1", NS)
    w.host.patch(DPUServiceTemplate, "hbn", NS, {"spec": {"helmChart": {"values": {"a": 2}}}})
    w.run()
    after = w.host.get(DPUService, "example-hbn", NS)
    v = after.metadata.annotations["dpuservice.nvidia.com/version"]
    assert v != before_hbn and after.spec.helm_chart.values == {"a": 2, "b": {"c": 1, "d": 2}}
    assert w.host.get(DPUService, "example-fw", NS).metadata.annotations["dpuservice.nvidia.com/version"] == before_fw
    ds = w.host.get(DPUSet, "example-set1", NS)
    assert ds.metadata.uid == before_set.metadata.uid  # patched, not recreated
    assert ds.spec.dpu_template.spec.cluster is not None
    assert ds.spec.dpu_template.spec.cluster.node_labels["svc.dpu.nvidia.com/dpuservice-hbn-version"] == v
    sel = w.host.get(DPUServiceInterface, "example-hbn-p0-if", NS).spec.template.spec.node_selector
    assert sel is not None and sel.match_expressions[0].values == [v]


def test_children_readiness_is_summarized() -> None:
    w = world()
    w.run()
    ready = {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Success",
                                        "lastTransitionTime": "2025-01-01T00:00:00Z"}]}}
    for cls in (DPUService, DPUServiceChain, DPUServiceInterface):
        for o in w.host.list(cls, NS):
            w.host.patch(cls, o.name, NS, ready, subresource="status")
    w.run()
    assert cond(w, "Ready")[:2] == ("True", "Success")


def test_deletion_removes_services_before_dpusets_then_releases_dependencies() -> None:
    w = world()
    w.run()
    # A DPUService still finalizing holds the DPUSets back.
    svc = w.host.get(DPUService, "example-hbn", NS).deepcopy()
    svc.metadata.finalizers = ["test/hold"]
    w.host.update(svc)
    w.host.delete(DPUDeployment, "example", NS)
    w.run()
    assert w.host.try_get(DPUSet, "example-set1", NS) is not None
    assert w.host.list(DPUServiceChain, NS) == []
    assert cond(w, "DPUServicesReconciled")[1] == "AwaitingDeletion"
    held = w.host.get(DPUService, "example-hbn", NS).deepcopy()
    held.metadata.finalizers = []
    w.host.update(held)
    w.run(25)
    assert w.host.try_get(DPUDeployment, "example", NS) is None
    assert w.host.list(DPUSet, NS) == []
    bfb = w.host.get(BFB, "bf-bundle", NS)
    assert "dpu.nvidia.com/dpudeployment" not in bfb.metadata.finalizers
    assert "dpu.nvidia.com/consumed-by-dpudeployment-name" not in bfb.metadata.labels
