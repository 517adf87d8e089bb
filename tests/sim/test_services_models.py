"""The twin's ArgoCD and kubelet models on their own: chart rendering, Degraded on a missing chart, prune and
self-heal, DaemonSet/Deployment scheduling, allocatable and Pending pods that do not fit."""

from __future__ import annotations

import random
from typing import Any

import simpy

from dpf_core.api.external import Application, AppProject, DaemonSet, Deployment, Node, Pod
from dpf_core.store.memory import MemoryStore
from dpf_sim.argocd import ArgoCD, Chart, ChartCatalogue, render
from dpf_sim.cluster import register_node
from dpf_sim.engine import SimClock
from dpf_sim.kubelet import Kubelet

CHART = Chart.model_validate({"repoURL": "oci://charts.example.com/x", "chart": "app", "version": "1.0", "workloads": [
    {"name": "agent", "image": "agent:1", "resources": {"cpu": "1"}},
    {"name": "api", "kind": "Deployment", "image": "api:1", "replicas": 2, "resources": {"cpu": "500m"}},
    {"name": "extra", "image": "extra:1", "valuesKey": "extra"},
]})


def node(name: str, labels: dict[str, str] | None = None, cpu: str | None = None) -> Node:
    status: dict[str, Any] = {"conditions": [{"type": "Ready", "status": "True"}]}
    if cpu is not None:
        status["allocatable"] = {"cpu": cpu}
    return Node.model_validate({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}},
                                "status": status})


def test_render_applies_values() -> None:
    objs = render(CHART, "dc-app", "rel", "ns", {
        "image": {"repository": "mirror/agent", "tag": "2"}, "replicas": 3, "resources": {"cpu": "2"},
        "labels": {"tier": "x"}, "extra": {"enabled": True},
        "serviceDaemonSet": {"labels": {"svc": "s"}, "annotations": {"a": "b"},
                             "nodeSelector": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "k", "operator": "Exists"}]}]}}})
    by_name = {o.name: o for o in objs}
    assert set(by_name) == {"rel-agent", "rel-api", "rel-extra"}
    ds = by_name["rel-agent"]
    assert isinstance(ds, DaemonSet)
    pod = ds.spec.template
    assert pod.metadata.labels["svc"] == "s" and pod.metadata.labels["tier"] == "x" and pod.metadata.annotations == {"a": "b"}
    assert pod.spec.containers[0].image == "mirror/agent:2"
    assert pod.spec.containers[0].resources is not None and pod.spec.containers[0].resources.requests == {"cpu": "2"}
    assert pod.spec.affinity is not None and "nodeAffinity" in pod.spec.affinity
    assert ds.metadata.labels["argocd.argoproj.io/instance"] == "dc-app"
    dep = by_name["rel-api"]
    assert isinstance(dep, Deployment) and dep.spec.replicas == 3
    assert dep.spec.template.metadata.labels.get("svc") is None  # serviceDaemonSet shapes DaemonSets only
    assert {o.name for o in render(CHART, "a", "rel", "ns", {})} == {"rel-agent", "rel-api"}  # extra not enabled


def kube(nodes: list[Node]) -> tuple[simpy.Environment, MemoryStore, Kubelet]:
    env = simpy.Environment()
    clock = SimClock(env, 1735689600.0)
    store = MemoryStore(clock.now, name="dpu")
    for n in nodes:
        register_node(store, n)
    k = Kubelet(env, store, clock, random.Random(1))
    return env, store, k


def test_daemonset_per_matching_node_and_pending_when_it_does_not_fit() -> None:
    env, store, _ = kube([node("a", {"role": "dpu"}, cpu="2"), node("b", {"role": "dpu"}, cpu="500m"), node("c")])
    objs = render(CHART, "app", "rel", "ns", {"nodeSelector": {"role": "dpu"}, "replicas": 4})
    for o in objs:
        store.create(o)
    env.run(until=60)
    pods = {p.spec.node_name or p.name: p for p in store.list(Pod, "ns") if p.metadata.labels["app.kubernetes.io/name"] == "agent"}
    assert pods["a"].status.phase == "Running"
    pending = [p for p in store.list(Pod, "ns") if p.metadata.labels["app.kubernetes.io/name"] == "agent" and not p.spec.node_name]
    assert len(pending) == 1 and pending[0].status.phase == "Pending"
    sched = next(c for c in pending[0].status.conditions if c.type == "PodScheduled")
    assert (sched.status, sched.reason) == ("False", "Unschedulable") and "Insufficient cpu" in (sched.message or "")
    ds = store.get(DaemonSet, "rel-agent", "ns")
    assert (ds.status.desired_number_scheduled, ds.status.number_ready) == (2, 1)
    # The api Deployment's 4 x 500m: two fit on a (1 cpu left after the agent), one on b, one stays Pending.
    api = [p for p in store.list(Pod, "ns") if p.metadata.labels["app.kubernetes.io/name"] == "api"]
    assert sorted(p.spec.node_name or "" for p in api) == ["", "a", "a", "b"]
    assert store.get(Deployment, "rel-api", "ns").status.ready_replicas == 3


def test_allocatable_from_the_composition_and_daemonset_rollout() -> None:
    env = simpy.Environment()
    clock = SimClock(env, 1735689600.0)
    store = MemoryStore(clock.now, name="dpu")
    register_node(store, node("dpu-1"))
    Kubelet(env, store, clock, random.Random(1), allocatable_for=lambda n: {"cpu": "14", "memory": "28Gi"})
    env.run(until=5)
    assert store.get(Node, "dpu-1").status.allocatable == {"cpu": "14", "memory": "28Gi"}
    ds = render(CHART, "app", "rel", "ns", {})[0]
    store.create(ds)
    env.run(until=60)
    first = store.list(Pod, "ns")
    assert [p.status.phase for p in first] == ["Running"]
    live = store.get(DaemonSet, "rel-agent", "ns").deepcopy()
    live.spec.template.spec.containers[0].image = "agent:2"
    store.update(live)
    env.run(until=120)
    pods = store.list(Pod, "ns")
    assert len(pods) == 1 and pods[0].spec.containers[0].image == "agent:2" and pods[0].status.phase == "Running"
    assert pods[0].name != first[0].name


def argo_world(charts: list[Chart]) -> tuple[simpy.Environment, MemoryStore, MemoryStore, ArgoCD]:
    env = simpy.Environment()
    clock = SimClock(env, 1735689600.0)
    host = MemoryStore(clock.now, name="host")
    dpu = MemoryStore(clock.now, name="ns/dc")
    register_node(dpu, node("dpu-1"))
    Kubelet(env, dpu, clock, random.Random(2))
    argo = ArgoCD(env, host, lambda: {"host": host, "ns/dc": dpu}, clock, random.Random(3), ChartCatalogue(charts))
    argo.watch_store("ns/dc", dpu)
    import base64

    def b(s: str) -> str:
        return base64.b64encode(s.encode()).decode()

    from dpf_core.api.external import Secret
    host.create(Secret.new("ns-dc", "argo", metadata={"name": "ns-dc", "namespace": "argo",
                                                      "labels": {"argocd.argoproj.io/secret-type": "cluster"}},
                           data={"name": b("dc"), "server": b("twin://ns/dc")}))
    host.create(AppProject.new("proj", "argo"))
    return env, host, dpu, argo


def application(version: str = "1.0") -> Application:
    return Application.new("dc-app", "argo", metadata={"name": "dc-app", "namespace": "argo",
                                                       "finalizers": ["resources-finalizer.argocd.argoproj.io"]}, spec={
        "project": "proj", "destination": {"name": "dc", "namespace": "apps"},
        "source": {"repoURL": "charts.example.com/x", "chart": "app", "targetRevision": version}})


def test_argocd_syncs_heals_prunes_and_deletes() -> None:
    v2 = Chart.model_validate({**CHART.model_dump(by_alias=True), "version": "2.0", "workloads": [CHART.workloads[0].model_dump()]})
    env, host, dpu, _ = argo_world([CHART, v2])
    host.create(application())
    env.run(until=120)
    app = host.get(Application, "dc-app", "argo")
    assert app.is_synced_and_healthy()
    assert {o.name for o in dpu.list(DaemonSet, "apps")} == {"dc-app-agent"}  # the release defaults to the app name
    assert len(dpu.list(Pod, "apps")) == 3
    # Self-heal: a deleted workload comes back.
    name = dpu.list(DaemonSet, "apps")[0].name
    dpu.delete(DaemonSet, name, "apps")
    env.run(until=180)
    assert dpu.try_get(DaemonSet, name, "apps") is not None
    # Prune: version 2.0 of the chart has no api Deployment.
    host.patch(Application, "dc-app", "argo", {"spec": {"source": {"targetRevision": "2.0"}}})
    env.run(until=200)
    assert dpu.list(Deployment, "apps") == [] and len(dpu.list(DaemonSet, "apps")) == 1
    assert host.get(Application, "dc-app", "argo").status.sync.revision == "2.0"  # type: ignore[union-attr]
    # Delete: the resources finalizer removes the workloads first.
    host.delete(Application, "dc-app", "argo")
    env.run(until=260)
    assert host.try_get(Application, "dc-app", "argo") is None
    assert dpu.list(DaemonSet, "apps") == [] and dpu.list(Deployment, "apps") == []


def test_missing_chart_is_degraded_with_a_clear_message() -> None:
    env, host, _, _ = argo_world([CHART])
    host.create(application(version="9.9"))
    env.run(until=60)
    app = host.get(Application, "dc-app", "argo")
    assert app.status.health is not None and app.status.health.status == "Degraded"
    assert "version 9.9 not found" in (app.status.health.message or "")
    assert app.status.conditions[0]["type"] == "ComparisonError"


def test_daemonset_pods_of_nodes_whose_name_hashes_collide_both_run() -> None:
    """worker-0-14-... and worker-0-324-... share the 5-hex node hash of a DaemonSet pod's name; before the
    salt, the second node's create failed with AlreadyExists on every pass and it never got its pod."""
    from dpf_core.controllers.svc_common import content_hash

    names = ["worker-0-14-0000-04-00", "worker-0-324-0000-04-00"]
    assert content_hash(names[0], length=5) == content_hash(names[1], length=5)
    env, store, _ = kube([node(n, cpu="4") for n in names])
    for o in render(CHART, "app", "rel", "ns", {}):
        store.create(o)
    env.run(until=60)
    agents = [p for p in store.list(Pod, "ns") if p.metadata.labels["app.kubernetes.io/name"] == "agent"]
    assert sorted(p.spec.node_name or "" for p in agents) == names
    assert all(p.status.phase == "Running" for p in agents)
    assert store.get(DaemonSet, "rel-agent", "ns").status.number_ready == 2
    # Stable: a later pass keeps both pods (neither is taken for the other node's).
    before = {p.name: p.metadata.uid for p in agents}
    store.create(node("extra", cpu="4"))
    env.run(until=120)
    after = {p.name: p.metadata.uid for p in store.list(Pod, "ns") if p.spec.node_name in names
             and p.metadata.labels["app.kubernetes.io/name"] == "agent"}
    assert after == before
