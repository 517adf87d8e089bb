"""DPUService -> ArgoCD: prerequisites in every DPU cluster, one Application per cluster (or in-cluster),
values merge, interfaces, pause/resume, readiness (deployInCluster fixed) and deletion."""

from __future__ import annotations

import base64
import json
from typing import Any

from svc_world import OP_NS, World

from dpf_core.api.conditions import get_condition
from dpf_core.api.external import Application, AppProject, Namespace, Secret
from dpf_core.api.operator import DPFOperatorConfig
from dpf_core.api.svc import DPUService, DPUServiceInterface
from dpf_core.controllers import dpuservice

NS = "application"


def service(name: str = "guestbook", **spec: Any) -> DPUService:
    body: dict[str, Any] = {"helmChart": {"source": {"repoURL": "oci://registry.example.com/charts", "chart": "guestbook",
                                                     "version": "0.1.0"},
                                          "values": {"replicas": 2, "serviceDaemonSet": {"labels": {
                                              "mine": "x", "svc.dpu.nvidia.com/service": "user"}}}}}
    body.update(spec)
    return DPUService.new(name, NS, spec=body)


def cond(obj: Any, type: str) -> tuple[str, str, str]:
    c = get_condition(obj.status.conditions, type)
    assert c is not None, type
    return c.status, c.reason, c.message


def mark_app(w: World, name: str, sync: str = "Synced", health: str = "Healthy") -> None:
    w.host.patch(Application, name, OP_NS, {"status": {"sync": {"status": sync}, "health": {"status": health}}})


def test_needs_exactly_one_operator_config() -> None:
    w = World(dpuservice.controller(), operator_config=False)
    w.apply(service())
    assert w.run() > 0
    status, reason, message = cond(w.host.get(DPUService, "guestbook", NS), "ApplicationPrereqsReconciled")
    assert (status, reason) == ("False", "Error") and "DPFOperatorConfig" in message
    assert w.host.list(Application) == []


def test_prerequisites_and_one_application_per_dpu_cluster() -> None:
    w = World(dpuservice.controller(), clusters=2)
    w.host.create(Secret.new("pull", NS, metadata={"name": "pull", "namespace": NS,
                                                   "labels": {"dpu.nvidia.com/image-pull-secret": ""}}, data={"x": "eQ=="}))
    w.dpu["dc1"].create(Namespace.new(NS))
    w.dpu["dc1"].create(Secret.new("orphan", NS, metadata={"name": "orphan", "namespace": NS,
                                                           "labels": {"dpu.nvidia.com/image-pull-secret": ""}}))
    w.apply(service(serviceID="gb"))
    assert w.run() == 0
    for dc in ("dc1", "dc2"):
        assert w.dpu[dc].try_get(Namespace, NS) is not None
        assert w.dpu[dc].get(Secret, "pull", NS).data == {"x": "eQ=="}
        argo = w.host.get(Secret, f"dpu-cplane-{dc}", OP_NS)
        assert argo.metadata.labels["argocd.argoproj.io/secret-type"] == "cluster"
        assert base64.b64decode(argo.data["server"]) == f"https://{dc}.example:6443".encode()
        config = json.loads(base64.b64decode(argo.data["config"]))
        assert base64.b64decode(config["tlsClientConfig"]["caData"]) == f"ca-{dc}".encode()
        assert argo.metadata.owner_references[0].kind == "DPFOperatorConfig"
    assert w.dpu["dc1"].try_get(Secret, "orphan", NS) is None
    projects = {p.name: p for p in w.host.list(AppProject, OP_NS)}
    assert [d.name for d in projects["doca-platform-project-dpu"].spec.destinations] == ["dc1", "dc2"]
    assert [d.name for d in projects["doca-platform-project-host"].spec.destinations] == ["in-cluster"]
    apps = {a.name: a for a in w.host.list(Application, OP_NS)}
    assert set(apps) == {"dc1-guestbook", "dc2-guestbook"}
    app = apps["dc1-guestbook"]
    assert app.metadata.finalizers == ["resources-finalizer.argocd.argoproj.io"]
    assert app.metadata.labels == {"dpu.nvidia.com/cluster": "dc1", "dpu.nvidia.com/dpuservice-name": "guestbook",
                                   "dpu.nvidia.com/dpuservice-namespace": NS, "dpu.nvidia.com/component": "dpuservice-manager"}
    spec = app.spec
    assert spec.project == "doca-platform-project-dpu"
    assert (spec.destination.name, spec.destination.namespace) == ("dc1", NS)
    assert spec.source is not None and spec.source.repo_url == "registry.example.com/charts"  # oci:// stripped
    assert spec.source.target_revision == "0.1.0" and spec.source.chart == "guestbook"
    assert spec.sync_policy is not None and spec.sync_policy.automated is not None
    assert spec.sync_policy.automated.prune and spec.sync_policy.automated.self_heal
    values = spec.source.helm.values_object if spec.source.helm else None
    # The computed serviceDaemonSet block is merged over the user's: computed wins where both set a key.
    assert values == {"replicas": 2, "serviceDaemonSet": {"labels": {"mine": "x", "svc.dpu.nvidia.com/service": "gb"}}}
    status, _, _ = cond(w.host.get(DPUService, "guestbook", NS), "ApplicationsReconciled")
    assert status == "True"


def test_ready_only_when_every_application_is_synced_and_healthy() -> None:
    w = World(dpuservice.controller(), clusters=2)
    w.apply(service())
    w.run()
    assert cond(w.host.get(DPUService, "guestbook", NS), "Ready")[0] == "False"
    mark_app(w, "dc1-guestbook")
    mark_app(w, "dc2-guestbook", health="Progressing")
    w.run()
    status, reason, message = cond(w.host.get(DPUService, "guestbook", NS), "ApplicationsReady")
    assert (status, reason) == ("False", "Pending") and "Health: Progressing" in message
    mark_app(w, "dc2-guestbook")
    w.run()
    svc = w.host.get(DPUService, "guestbook", NS)
    assert cond(svc, "Ready")[:2] == ("True", "Success")
    assert svc.status.observed_generation == svc.metadata.generation


def test_deploy_in_cluster_is_ready_with_several_dpu_clusters() -> None:
    w = World(dpuservice.controller(), clusters=2)
    w.apply(service(deployInCluster=True))
    w.run()
    apps = w.host.list(Application, OP_NS)
    assert [a.name for a in apps] == ["in-cluster-guestbook"]
    assert apps[0].spec.project == "doca-platform-project-host" and apps[0].spec.destination.name == "in-cluster"
    assert w.dpu["dc1"].try_get(Namespace, NS) is None  # the host gets the namespace, not the DPU clusters
    mark_app(w, "in-cluster-guestbook")
    w.run()
    assert cond(w.host.get(DPUService, "guestbook", NS), "Ready")[0] == "True"


def test_spec_change_updates_the_applications() -> None:
    w = World(dpuservice.controller())
    w.apply(service())
    w.run()
    w.host.patch(DPUService, "guestbook", NS, {"spec": {"helmChart": {"source": {"version": "0.2.0"}}}})
    w.run()
    app = w.host.get(Application, "dc1-guestbook", OP_NS)
    assert app.spec.source is not None and app.spec.source.target_revision == "0.2.0"


def test_paused_service_holds_its_applications_until_resumed() -> None:
    w = World(dpuservice.controller())
    w.apply(service())
    w.run()
    w.host.patch(DPUService, "guestbook", NS, {"spec": {"paused": True}})
    w.run()
    w.host.patch(DPUService, "guestbook", NS, {"spec": {"helmChart": {"source": {"version": "0.3.0"}}}})
    w.run()
    app = w.host.get(Application, "dc1-guestbook", OP_NS)
    assert app.metadata.annotations["argocd.argoproj.io/skip-reconcile"] == "true"
    assert app.spec.source is not None and app.spec.source.target_revision == "0.1.0"
    w.host.patch(DPUService, "guestbook", NS, {"spec": {"paused": False}})
    w.run()
    app = w.host.get(Application, "dc1-guestbook", OP_NS)
    assert "argocd.argoproj.io/skip-reconcile" not in app.metadata.annotations
    assert app.spec.source is not None and app.spec.source.target_revision == "0.3.0"


def interface(name: str, service_id: str = "gb", itype: str = "service") -> DPUServiceInterface:
    spec: dict[str, Any] = {"interfaceType": itype}
    if itype == "service":
        spec["service"] = {"serviceID": service_id, "network": "dpf-operator-system/mybrsfc", "interfaceName": name}
    else:
        spec["physical"] = {"interfaceName": name}
    return DPUServiceInterface.new(name, NS, spec={"template": {"spec": {"template": {"spec": spec}}}})


def test_interfaces_are_consumed_and_become_multus_networks() -> None:
    w = World(dpuservice.controller())
    w.apply(interface("p1"))
    w.apply(interface("p0"))
    existing = json.dumps([{"name": "iprequest", "interface": "ip_lo"}])
    w.apply(service(serviceID="gb", interfaces=["p1", "p0"],
                    serviceDaemonSet={"annotations": {"k8s.v1.cni.cncf.io/networks": existing}}))
    assert w.run() == 0
    for n in ("p0", "p1"):
        dsi = w.host.get(DPUServiceInterface, n, NS)
        assert dsi.metadata.annotations["dpu.nvidia.com/consumed-by"] == "guestbook"  # DPF writes the bare name
    app = w.host.get(Application, "dc1-guestbook", OP_NS)
    values = app.spec.source.helm.values_object if app.spec.source and app.spec.source.helm else {}
    assert values is not None
    nets = json.loads(values["serviceDaemonSet"]["annotations"]["k8s.v1.cni.cncf.io/networks"])
    assert nets == [{"name": "iprequest", "interface": "ip_lo", "cni-args": None},
                    {"name": "mybrsfc", "interface": "p0", "namespace": "dpf-operator-system", "cni-args": None},
                    {"name": "mybrsfc", "interface": "p1", "namespace": "dpf-operator-system", "cni-args": None}]


def test_interface_consumed_by_another_service_or_of_the_wrong_type_is_refused() -> None:
    w = World(dpuservice.controller())
    w.apply(interface("p0"))
    w.apply(interface("up", itype="physical"))
    w.apply(service("first", serviceID="gb", interfaces=["p0"]))
    w.run()
    w.apply(service("second", serviceID="gb", interfaces=["p0"]))
    w.apply(service("third", serviceID="gb", interfaces=["up"]))
    w.apply(interface("p1", service_id="other"))
    w.apply(service("fourth", serviceID="gb", interfaces=["p1"]))
    assert w.run() > 0
    # DPF's reconcileInterfaces errors, behind the condition's "Unable to reconcile interfaces for " prefix.
    assert cond(w.host.get(DPUService, "second", NS), "DPUServiceInterfaceReconciled") == (
        "False", "Error", "Unable to reconcile interfaces for dpuServiceInterface p0 is in use by another DPUService")
    assert cond(w.host.get(DPUService, "third", NS), "DPUServiceInterfaceReconciled")[2] == (
        "Unable to reconcile interfaces for wrong service definition in DPUServiceInterface up")
    assert cond(w.host.get(DPUService, "fourth", NS), "DPUServiceInterfaceReconciled")[2] == (
        "Unable to reconcile interfaces for conflicting ServiceID in DPUServiceInterface p1")
    assert w.host.try_get(Application, "dc1-second", OP_NS) is None


def test_deletion_waits_for_the_applications_then_cleans_up() -> None:
    w = World(dpuservice.controller())
    w.host.create(Secret.new("pull", NS, metadata={"name": "pull", "namespace": NS,
                                                   "labels": {"dpu.nvidia.com/image-pull-secret": ""}}))
    w.apply(interface("p0"))
    w.apply(service(serviceID="gb", interfaces=["p0"]))
    w.run()
    w.host.delete(DPUService, "guestbook", NS)
    w.run()
    svc = w.host.get(DPUService, "guestbook", NS)
    status, reason, message = cond(svc, "ApplicationsReconciled")
    assert (status, reason) == ("False", "AwaitingDeletion") and "dc1-guestbook" in message
    assert cond(svc, "Ready")[1] == "AwaitingDeletion"
    # ArgoCD deletes the app's resources, then drops its finalizer.
    app = w.host.get(Application, "dc1-guestbook", OP_NS).deepcopy()
    app.metadata.finalizers = []
    w.host.update(app)
    w.run(31)
    assert w.host.try_get(DPUService, "guestbook", NS) is None
    assert "dpu.nvidia.com/consumed-by" not in w.host.get(DPUServiceInterface, "p0", NS).metadata.annotations
    assert w.dpu["dc1"].try_get(Secret, "pull", NS) is None


def test_operator_config_namespace_hosts_the_argo_objects() -> None:
    w = World(dpuservice.controller(), operator_config=False)
    w.host.create(DPFOperatorConfig.new("dpfoperatorconfig", "elsewhere", spec={"provisioningController": {"bfbPVCName": "p"}}))
    w.apply(service())
    w.run()
    assert [a.namespace for a in w.host.list(Application)] == ["elsewhere"]


def test_a_failed_readiness_read_is_retried_not_left_standing() -> None:
    """An API error while reading the Applications for ApplicationsReady must come back: once the Applications
    are Synced and Healthy nothing else sends an event (found by chaos seed 335)."""
    from dpf_core.errors import ServiceUnavailable

    w = World(dpuservice.controller(), clusters=1)
    w.apply(service())
    w.run()
    mark_app(w, "dc1-guestbook")
    real_list = w.host.list
    failing = {"on": True}

    def browned_out(cls: Any, *a: Any, **kw: Any) -> Any:
        if cls is Application and failing["on"]:
            raise ServiceUnavailable("the server is currently unable to handle the request")
        return real_list(cls, *a, **kw)

    w.host.list = browned_out  # type: ignore[method-assign]
    w.run(5)
    assert "Error occurred" in cond(w.host.get(DPUService, "guestbook", NS), "ApplicationsReady")[2]
    failing["on"] = False
    w.run(60)  # the retry's backoff, with no event in between
    assert cond(w.host.get(DPUService, "guestbook", NS), "Ready")[:2] == ("True", "Success")
