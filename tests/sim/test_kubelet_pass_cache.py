"""The kubelet model keeps what a pass derived from a stored snapshot (a node's DaemonSet eligibility, a node's
allocatable check, the pods-by-owner index) while the store returns that same snapshot: every change to a node or
a pod must still be seen by the next pass, exactly as a pass that recomputes everything."""

from __future__ import annotations

import random
from typing import Any

import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from dpf_core.api.external import DaemonSet, Node, Pod
from dpf_core.store.memory import MemoryStore
from dpf_sim.argocd import Chart, render
from dpf_sim.cluster import register_node
from dpf_sim.engine import SimClock
from dpf_sim.kubelet import Kubelet

CHART = Chart.model_validate({"repoURL": "oci://charts.example.com/x", "chart": "app", "version": "1.0", "workloads": [
    {"name": "agent", "image": "agent:1", "resources": {"cpu": "1"}},
]})


def node(name: str, labels: dict[str, str]) -> Node:
    return Node.model_validate({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
                                "status": {"conditions": [{"type": "Ready", "status": "True"}]}})


def cluster(n: int = 6, **kw: Any) -> tuple[simpy.Environment, MemoryStore, Kubelet]:
    env = simpy.Environment()
    clock = SimClock(env, 1735689600.0)
    store = MemoryStore(clock.now, name="dpu")
    for i in range(n):
        register_node(store, node(f"dpu-{i}", {"role": "dpu"}))
    k = Kubelet(env, store, clock, random.Random(1), **kw)
    for o in render(CHART, "app", "rel", "ns", {"nodeSelector": {"role": "dpu"}}):
        store.create(o)
    env.run(until=60)
    return env, store, k


def running_on(store: MemoryStore) -> list[str]:
    return sorted(p.spec.node_name or "" for p in store.list(Pod, "ns")
                  if p.metadata.deletion_timestamp is None and p.status.phase == "Running")


def edit(store: MemoryStore, name: str, fn: Any) -> None:
    live = store.get(Node, name).deepcopy()
    fn(live)
    store.update(live)


def test_a_node_losing_its_label_loses_its_pod_and_gets_it_back_with_the_label() -> None:
    env, store, _ = cluster()
    assert running_on(store) == [f"dpu-{i}" for i in range(6)]
    edit(store, "dpu-2", lambda n: n.metadata.labels.pop("role"))
    env.run(until=120)
    assert running_on(store) == ["dpu-0", "dpu-1", "dpu-3", "dpu-4", "dpu-5"]
    edit(store, "dpu-2", lambda n: n.metadata.labels.update(role="dpu"))
    env.run(until=180)
    assert running_on(store) == [f"dpu-{i}" for i in range(6)]
    assert store.get(DaemonSet, "rel-agent", "ns").status.desired_number_scheduled == 6


def test_a_node_going_not_ready_or_unschedulable_is_seen_by_the_next_pass() -> None:
    env, store, _ = cluster()
    edit(store, "dpu-0", lambda n: setattr(n.spec, "unschedulable", True))

    live = store.get(Node, "dpu-5").deepcopy()
    live.status.conditions[0].status = "False"
    store.update_status(live)
    env.run(until=120)
    assert running_on(store) == ["dpu-1", "dpu-2", "dpu-3", "dpu-4"]
    assert store.get(DaemonSet, "rel-agent", "ns").status.desired_number_scheduled == 4


def test_a_deleted_node_is_forgotten_and_a_new_one_of_the_same_name_is_checked_afresh() -> None:
    env, store, k = cluster()
    store.delete(Node, "dpu-3")
    env.run(until=120)
    assert "dpu-3" not in running_on(store)
    assert "dpu-3" not in k._unchecked
    register_node(store, node("dpu-3", {"role": "other"}))
    env.run(until=180)
    assert "dpu-3" not in running_on(store)
    edit(store, "dpu-3", lambda n: n.metadata.labels.update(role="dpu"))
    env.run(until=240)
    assert "dpu-3" in running_on(store)


def test_a_template_change_recomputes_every_node_for_the_new_revision() -> None:
    env, store, k = cluster()
    uid = store.get(DaemonSet, "rel-agent", "ns").metadata.uid or ""
    first_revision = k._ds_state[uid].revision
    live = store.get(DaemonSet, "rel-agent", "ns").deepcopy()
    live.spec.template.spec.node_selector = {"role": "none"}
    store.update(live)
    env.run(until=120)
    assert running_on(store) == []
    assert k._ds_state[uid].revision != first_revision
    store.delete(DaemonSet, "rel-agent", "ns")
    env.run(until=180)
    assert uid not in k._ds_state


def test_allocatable_removed_from_a_node_is_put_back() -> None:
    env, store, _ = cluster(allocatable_for=lambda n: {"cpu": "8"})
    assert store.get(Node, "dpu-1").status.allocatable == {"cpu": "8"}

    def strip(n: Node) -> None:
        n.status.allocatable = {}
        n.status.capacity = {}

    live = store.get(Node, "dpu-1").deepcopy()
    strip(live)
    store.update_status(live)
    env.run(until=120)
    assert store.get(Node, "dpu-1").status.allocatable == {"cpu": "8"}


def test_a_stray_pod_of_the_daemonset_on_a_served_node_is_removed() -> None:
    # The owner index is kept between passes while no Pod event arrives: a new pod is an event, so the next pass
    # sees two pods for one node and deletes the newcomer, as a pass that re-lists every pod does.
    env, store, _ = cluster()
    mine = next(p for p in store.list(Pod, "ns") if p.spec.node_name == "dpu-4")
    stray = mine.deepcopy()
    stray.metadata = stray.metadata.model_copy(update={"name": "rel-agent-zzzzz-stray", "uid": None,
                                                       "resource_version": None, "creation_timestamp": None})
    stray.status = type(stray.status)()
    store.create(stray)
    env.run(until=120)
    left = [p.name for p in store.list(Pod, "ns") if p.spec.node_name == "dpu-4" and p.metadata.deletion_timestamp is None]
    assert len(left) == 1


class FullPassKubelet(Kubelet):
    """Every DaemonSet sync looks at every node and pod (what each sync did before syncs kept their state)."""

    def sync(self) -> None:
        self._ds_state.clear()
        super().sync()


def _churn(kubelet_cls: type[Kubelet], seed: int) -> list[str]:
    """A cluster whose nodes and pods change at random; the store's every event, in order."""
    env = simpy.Environment()
    clock = SimClock(env, 1735689600.0)
    store = MemoryStore(clock.now, name="dpu")
    log: list[str] = []
    store.subscribe(lambda ev: log.append(f"{env.now:.3f} {ev.type} {ev.object.kind} {ev.object.name} "
                                          f"{ev.object.model_dump_json(exclude={'metadata'})}"))
    rng = random.Random(seed)
    for i in range(8):
        register_node(store, node(f"dpu-{i}", {"role": rng.choice(["dpu", "dpu", "other"])}))
    kubelet_cls(env, store, clock, random.Random(1), allocatable_for=lambda n: {"cpu": "3"})
    for o in render(CHART, "app", "rel", "ns", {"nodeSelector": {"role": "dpu"}}):
        store.create(o)

    def chaos() -> Any:
        for step in range(40):
            yield env.timeout(rng.choice([0.2, 1.0, 7.0]))
            name = f"dpu-{rng.randrange(9)}"
            live = store.try_get(Node, name)
            what = rng.randrange(7)
            if live is None:
                register_node(store, node(name, {"role": "dpu"}))
                continue
            n = live.deepcopy()
            if what == 0:
                n.metadata.labels["role"] = rng.choice(["dpu", "other"])
                store.update(n)
            elif what == 1:
                from dpf_core.api.meta import Taint
                n.spec.taints = [] if n.spec.taints else [Taint(key="maintenance", effect="NoSchedule")]
                store.update(n)
            elif what == 2:
                n.spec.unschedulable = not n.spec.unschedulable
                store.update(n)
            elif what == 3:
                n.status.conditions[0].status = "False" if n.status.conditions[0].status == "True" else "True"
                store.update_status(n)
            elif what == 4:
                store.delete(Node, name)
            elif what == 5:
                pods = [p for p in store.list(Pod, "ns") if p.metadata.deletion_timestamp is None]
                if pods:
                    victim = rng.choice(pods)
                    store.delete(Pod, victim.name, victim.namespace)
            elif step % 13 == 6:
                ds = store.get(DaemonSet, "rel-agent", "ns").deepcopy()
                ds.spec.template.spec.containers[0].image = f"agent:{step}"
                store.update(ds)

    env.process(chaos())
    env.run(until=400)
    return log


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 100_000))
def test_syncs_that_look_only_at_changed_nodes_write_exactly_what_full_syncs_write(seed: int) -> None:
    kept = _churn(Kubelet, seed)
    full = _churn(FullPassKubelet, seed)
    assert kept == full
    assert any(" ADDED Pod " in line for line in kept)


def _ready_nodes(store: MemoryStore) -> set[str]:
    return {p.spec.node_name or "" for p in store.list(Pod, "ns") if p.metadata.deletion_timestamp is None
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions)}


def _roll(strategy: dict[str, Any] | None) -> tuple[int, set[str], MemoryStore, simpy.Environment]:
    """6 nodes running the DaemonSet, then a new image: the most nodes without a Ready pod at once, and the
    images the pods end with."""
    env, store, _ = cluster()
    live = store.get(DaemonSet, "rel-agent", "ns").deepcopy()
    live.spec.template.spec.containers[0].image = "agent:2"
    live.spec.update_strategy = strategy
    worst = 0

    def watch(ev: Any) -> None:
        nonlocal worst
        worst = max(worst, 6 - len(_ready_nodes(store)))

    store.subscribe(watch, [Pod])
    store.update(live)
    env.run(until=600)
    images = {p.spec.containers[0].image or "" for p in store.list(Pod, "ns") if p.metadata.deletion_timestamp is None}
    return worst, images, store, env


def test_a_template_change_rolls_one_node_at_a_time_by_default() -> None:
    worst, images, store, _ = _roll(None)
    assert worst == 1
    assert images == {"agent:2"} and len(_ready_nodes(store)) == 6
    assert store.get(DaemonSet, "rel-agent", "ns").status.updated_number_scheduled == 6


def test_max_unavailable_as_a_percent_of_the_desired_nodes() -> None:
    worst, images, _, _ = _roll({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "50%"}})
    assert worst == 3
    assert images == {"agent:2"}


def test_on_delete_keeps_the_old_pods_until_they_are_deleted() -> None:
    worst, images, store, env = _roll({"type": "OnDelete"})
    assert worst == 0 and images == {"agent:1"}
    assert store.get(DaemonSet, "rel-agent", "ns").status.updated_number_scheduled == 0
    victim = next(p for p in store.list(Pod, "ns") if p.spec.node_name == "dpu-2")
    store.delete(Pod, victim.name, victim.namespace)
    env.run(until=700)
    on = {p.spec.node_name: p.spec.containers[0].image for p in store.list(Pod, "ns")}
    assert on["dpu-2"] == "agent:2" and sorted(set(on.values())) == ["agent:1", "agent:2"]
