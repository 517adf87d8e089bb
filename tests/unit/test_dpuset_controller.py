"""DPUSet controller: DPUs per node and index, labels, unselected nodes, strategies, statistics, watches."""

from __future__ import annotations

from typing import Any

import pytest

from dpf_core.api.external import Node
from dpf_core.api.meta import Condition
from dpf_core.api.provisioning import (
    DPU,
    DPU_HOST_IP_LABEL,
    DPU_PCI_ADDRESS_LABEL,
    DPU_PF_NAME_LABEL,
    DPUSET_FINALIZER,
    DPUSET_NAME_LABEL,
    DPUSET_NAMESPACE_LABEL,
    ClusterSpec,
    DPUFlavor,
    DPUPhase,
    DPUSet,
)
from dpf_core.controllers import dpuset
from dpf_core.controllers.dpuset import dpu_indices, dpu_statistics, max_unavailable
from dpf_core.runtime import Manager, ManualClock, MemoryRecorder, Request, SyncDriver
from dpf_core.store import MemoryStore

NS = "dpf-operator-system"
PCI0 = "feature.node.kubernetes.io/dpu-0-pci-address"
PF0 = "feature.node.kubernetes.io/dpu-0-pf0-name"
PCI1 = "feature.node.kubernetes.io/dpu-1-pci-address"


def node(name: str, labels: dict[str, str] | None = None, ip: str | None = "10.0.0.1") -> Node:
    lbl = {PCI0: "0000-04-00", PF0: "ens1f0np0", "role": "worker"} if labels is None else labels
    status: dict[str, Any] = {"addresses": [{"type": "Hostname", "address": name}]}
    if ip:
        status["addresses"].append({"type": "InternalIP", "address": ip})
    return Node.model_validate({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": lbl}, "status": status})


def dpu_set(name: str = "set", *, strategy: dict[str, Any] | None = None, **spec: Any) -> DPUSet:
    template = spec.pop("template", {})
    body: dict[str, Any] = {
        "nodeSelector": {"matchLabels": {"role": "worker"}},
        "dpuTemplate": {
            "annotations": {"provisioning.dpu.nvidia.com/host-power-cycle-required": "false"},
            "spec": {"bfb": {"name": "bfb-a"}, "dpuFlavor": "flavor-a", **template},
        },
        **spec,
    }
    if strategy is not None:
        body["strategy"] = strategy
    return DPUSet.model_validate(
        {"apiVersion": DPUSet.KIND.api_version, "kind": "DPUSet", "metadata": {"name": name, "namespace": NS, "labels": {"team": "x"}}, "spec": body}
    )


class World:
    def __init__(self) -> None:
        self.clock = ManualClock()
        self.store = MemoryStore(clock=self.clock.now)
        self.recorder = MemoryRecorder(self.clock)
        self.mgr = Manager(self.store, self.clock, recorder_factory=lambda _: self.recorder)
        self.controller = self.mgr.add(dpuset.controller())
        self.driver = SyncDriver(self.mgr)

    def add_node(self, n: Node) -> None:
        # Node status is a subresource: create drops it, as the API server does.
        created = self.store.create(n).deepcopy()
        created.status = n.status
        self.store.update_status(created)

    def run(self) -> int:
        stats = self.driver.run_until_idle(max_steps=500)
        assert stats.stopped == "idle"  # no periodic requeue in DPF's DPUSet controller
        return stats.errors

    def dpus(self) -> dict[str, DPU]:
        return {d.name: d for d in self.store.list(DPU, NS)}

    def set_dpu_status(self, name: str, phase: DPUPhase, ready: str | None) -> None:
        d = self.store.get(DPU, name, NS).deepcopy()
        d.status.phase = phase
        if ready is not None:
            d.status.conditions = [_cond(ready)]
        self.store.update_status(d)

    def edit_set(self, fn: Any, name: str = "set") -> None:
        s = self.store.get(DPUSet, name, NS).deepcopy()
        fn(s)
        self.store.update(s)


def _cond(status: str) -> Condition:
    return Condition.model_validate(
        {"type": "Ready", "status": status, "reason": "DPUNodeReady", "lastTransitionTime": "2025-01-01T00:00:00Z"}
    )


@pytest.fixture
def world() -> World:
    return World()


# --- pure helpers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "total", "expected"),
    [("10%", 200, 20), ("10%", 5, 1), (0, 5, 1), (300, 200, 200), (None, 5, 1), ("100%", 3, 3), ("25%", 10, 3), ("10%", 0, 1)],
)
def test_max_unavailable_scales_rounds_up_and_clamps(value: Any, total: int, expected: int) -> None:
    assert max_unavailable(value, total) == expected


def test_dpu_indices_from_selector_or_default() -> None:
    labels = {PCI0: "0000-04-00", PCI1: "0000-05-00", PF0: "p0"}
    assert dpu_indices({}, labels) == [0]
    assert dpu_indices({}, {PCI1: "0000-05-00"}) == []
    assert dpu_indices({PCI1: "0000-05-00"}, labels) == [1]
    assert dpu_indices({PCI0: "0000-04-00", PCI1: "0000-05-00"}, labels) == [0, 1]
    assert dpu_indices({PCI1: "0000-99-00"}, labels) == []  # value must match
    assert dpu_indices({"role": "worker"}, {"role": "worker", PCI0: "x"}) == []  # not a DPU index key


def test_dpu_statistics_skips_node_effect_and_rebooting() -> None:
    def d(phase: DPUPhase) -> DPU:
        x = DPU.new("d", NS, spec={"nodeName": "n", "bfb": "b"})
        x.status.phase = phase
        return x

    phases = [DPUPhase.READY, DPUPhase.READY, DPUPhase.NODE_EFFECT, DPUPhase.REBOOTING, DPUPhase.ERROR, DPUPhase.INITIALIZING]
    assert dpu_statistics(d(p) for p in phases) == {"Ready": 2, "Error": 1, "Initializing": 1}


# --- the controller -------------------------------------------------------------------------------------


def test_creates_a_dpu_per_selected_node_with_labels_owner_and_spec(world: World) -> None:
    world.add_node(node("worker1", ip="10.0.0.11"))
    world.add_node(node("worker2", ip="10.0.0.12"))
    world.add_node(node("control", labels={PCI0: "0000-04-00"}))  # not selected
    world.store.create(dpu_set(template={"cluster": {"nodeLabels": {"dpu": "yes"}}, "automaticNodeReboot": False}))
    assert world.run() == 0

    s = world.store.get(DPUSet, "set", NS)
    assert DPUSET_FINALIZER in s.metadata.finalizers
    dpus = world.dpus()
    assert sorted(dpus) == ["worker1-0000-04-00", "worker2-0000-04-00"]
    d = dpus["worker1-0000-04-00"]
    assert d.metadata.labels == {
        DPUSET_NAME_LABEL: "set",
        DPUSET_NAMESPACE_LABEL: NS,
        "team": "x",
        DPU_PCI_ADDRESS_LABEL: "0000-04-00",
        DPU_PF_NAME_LABEL: "ens1f0np0",
        DPU_HOST_IP_LABEL: "10.0.0.11",
    }
    assert d.metadata.annotations == {"provisioning.dpu.nvidia.com/host-power-cycle-required": "false"}
    [ref] = d.metadata.owner_references
    assert (ref.kind, ref.name, ref.uid, ref.controller) == ("DPUSet", "set", s.metadata.uid, True)
    assert d.spec.node_name == "worker1" and d.spec.bfb == "bfb-a" and d.spec.dpu_flavor == "flavor-a"
    assert d.spec.cluster.node_labels == {"dpu": "yes"} and d.spec.automatic_node_reboot is False
    assert d.spec.node_effect.drain is not None and d.spec.node_effect.drain.automatic_node_reboot
    assert world.recorder.reasons() == ["SuccessfulCreate", "SuccessfulCreate"]
    assert s.status.dpu_statistics == {"Initializing": 2}


def test_dpu_selector_creates_one_dpu_per_index(world: World) -> None:
    world.add_node(node("w1", labels={"role": "worker", PCI0: "0000-04-00", PCI1: "0000-05-00"}))
    world.store.create(dpu_set(dpuSelector={PCI0: "0000-04-00", PCI1: "0000-05-00"}))
    assert world.run() == 0
    assert sorted(world.dpus()) == ["w1-0000-04-00", "w1-0000-05-00"]
    # A DPU deleted by hand is recreated, even though its node still has another DPU.
    world.store.delete(DPU, "w1-0000-05-00", NS)
    world.run()
    assert sorted(world.dpus()) == ["w1-0000-04-00", "w1-0000-05-00"]


def test_missing_pci_label_is_failed_create_without_blocking_others(world: World) -> None:
    pf1 = "feature.node.kubernetes.io/dpu-1-pf0-name"
    world.add_node(node("bad", labels={"role": "worker", pf1: "p1"}))
    world.add_node(node("good", labels={"role": "worker", PCI1: "0000-05-00", pf1: "p1"}))
    world.store.create(dpu_set(dpuSelector={pf1: "p1"}))
    errors = world.driver.run_for(1, max_steps=50).errors
    assert errors >= 1
    assert sorted(world.dpus()) == ["good-0000-05-00"]
    failed = [e for e in world.recorder.events if e.reason == "FailedCreate"]
    assert failed and failed[0].type == "Warning" and "lack of pci address" in failed[0].message


def test_unselected_node_loses_its_dpu_and_a_newly_labelled_node_gains_one(world: World) -> None:
    world.add_node(node("w1"))
    world.add_node(node("w2", labels={PCI0: "0000-04-00"}))
    world.store.create(dpu_set())
    world.run()
    assert sorted(world.dpus()) == ["w1-0000-04-00"]

    n2 = world.store.get(Node, "w2").deepcopy()
    n2.metadata.labels["role"] = "worker"
    world.store.update(n2)
    world.run()
    assert sorted(world.dpus()) == ["w1-0000-04-00", "w2-0000-04-00"]

    n1 = world.store.get(Node, "w1").deepcopy()
    del n1.metadata.labels["role"]
    world.store.update(n1)
    world.run()
    assert sorted(world.dpus()) == ["w2-0000-04-00"]
    deleted = [e for e in world.recorder.events if e.reason == "SuccessfulDelete"]
    assert [e.message for e in deleted] == [f"Delete DPU: ({NS}/w1-0000-04-00) from node w1"]


def test_recreate_never_replaces_dpus_on_template_change(world: World) -> None:
    for i in range(3):
        world.add_node(node(f"w{i}"))
    world.store.create(dpu_set())
    world.run()
    before = {n: d.metadata.uid for n, d in world.dpus().items()}

    def new_bfb(s: DPUSet) -> None:
        s.spec.dpu_template.spec.bfb.name = "bfb-b"

    world.edit_set(new_bfb)
    world.run()
    after = world.dpus()
    assert {n: d.metadata.uid for n, d in after.items()} == before
    assert {d.spec.bfb for d in after.values()} == {"bfb-a"}


def _rolling_world(world: World, n: int, max_unavailable: Any) -> None:
    for i in range(n):
        world.add_node(node(f"w{i}"))
    world.store.create(dpu_set(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": max_unavailable}}))
    world.run()
    for name in world.dpus():
        world.set_dpu_status(name, DPUPhase.READY, "True")
    world.run()


def _roll_to_bfb_b(world: World) -> None:
    def new_bfb(s: DPUSet) -> None:
        s.spec.dpu_template.spec.bfb.name = "bfb-b"

    world.edit_set(new_bfb)
    world.run()


@pytest.mark.parametrize(("max_unavailable", "per_wave"), [(1, 1), (2, 2), ("40%", 2), ("10%", 1), ("100%", 5)])
def test_rolling_update_replaces_within_the_budget(world: World, max_unavailable: Any, per_wave: int) -> None:
    _rolling_world(world, 5, max_unavailable)
    _roll_to_bfb_b(world)
    dpus = world.dpus()
    assert len(dpus) == 5  # each deleted DPU is recreated at once (no DPU controller/finalizer here)
    new = sorted(n for n, d in dpus.items() if d.spec.bfb == "bfb-b")
    assert len(new) == per_wave
    # Replacements are not Ready yet: the budget stays used up.
    world.run()
    assert sum(d.spec.bfb == "bfb-b" for d in world.dpus().values()) == per_wave
    # Once they are Ready, the next wave goes.
    for name in new:
        world.set_dpu_status(name, DPUPhase.READY, "True")
    world.run()
    assert sum(d.spec.bfb == "bfb-b" for d in world.dpus().values()) == min(5, 2 * per_wave)


def test_rolling_update_replaces_unavailable_dpus_regardless_of_budget(world: World) -> None:
    _rolling_world(world, 4, 1)
    world.set_dpu_status("w0-0000-04-00", DPUPhase.ERROR, "False")
    world.set_dpu_status("w1-0000-04-00", DPUPhase.ERROR, None)
    d1 = world.store.get(DPU, "w1-0000-04-00", NS).deepcopy()
    d1.status.conditions = []
    world.store.update_status(d1)
    _roll_to_bfb_b(world)
    bfbs = {n: d.spec.bfb for n, d in world.dpus().items()}
    # The two unavailable DPUs are replaced; the budget (1) is already spent by them, so no Ready one goes.
    assert bfbs == {"w0-0000-04-00": "bfb-b", "w1-0000-04-00": "bfb-b", "w2-0000-04-00": "bfb-a", "w3-0000-04-00": "bfb-a"}


def test_flavor_change_rolls_too(world: World) -> None:
    _rolling_world(world, 2, 1)

    def new_flavor(s: DPUSet) -> None:
        s.spec.dpu_template.spec.dpu_flavor = "flavor-b"

    world.edit_set(new_flavor)
    world.run()
    assert sorted(d.spec.dpu_flavor or "" for d in world.dpus().values()) == ["flavor-a", "flavor-b"]


def test_template_node_labels_are_merged_into_dpus(world: World) -> None:
    _rolling_world(world, 2, 1)
    d = world.store.get(DPU, "w0-0000-04-00", NS).deepcopy()
    d.spec.cluster.node_labels["provisioning.dpu.nvidia.com/host"] = "w0"
    world.store.update(d)

    def labels(s: DPUSet) -> None:
        s.spec.dpu_template.spec.cluster = ClusterSpec(node_labels={"zone": "a"})

    uids = {n: x.metadata.uid for n, x in world.dpus().items()}
    world.edit_set(labels)
    world.run()
    dpus = world.dpus()
    assert {n: x.metadata.uid for n, x in dpus.items()} == uids  # patched, not recreated
    assert dpus["w0-0000-04-00"].spec.cluster.node_labels == {"provisioning.dpu.nvidia.com/host": "w0", "zone": "a"}
    assert dpus["w1-0000-04-00"].spec.cluster.node_labels == {"zone": "a"}


def test_statistics_follow_dpu_phases(world: World) -> None:
    for i in range(4):
        world.add_node(node(f"w{i}"))
    world.store.create(dpu_set())
    world.run()
    world.set_dpu_status("w0-0000-04-00", DPUPhase.READY, "True")
    world.set_dpu_status("w1-0000-04-00", DPUPhase.OS_INSTALLING, None)
    world.set_dpu_status("w2-0000-04-00", DPUPhase.REBOOTING, None)
    world.run()
    assert world.store.get(DPUSet, "set", NS).status.dpu_statistics == {"Ready": 1, "OS Installing": 1, "Initializing": 1}


def test_statistics_written_only_when_changed(world: World) -> None:
    world.add_node(node("w0"))
    world.store.create(dpu_set())
    world.run()
    rv = world.store.get(DPUSet, "set", NS).metadata.resource_version
    world.controller.enqueue(Request(NS, "set"))
    world.run()
    assert world.store.get(DPUSet, "set", NS).metadata.resource_version == rv


def test_deletion_drops_finalizer_and_dpus_go_by_garbage_collection(world: World) -> None:
    world.add_node(node("w0"))
    world.store.create(dpu_set())
    world.run()
    world.store.delete(DPUSet, "set", NS)
    world.run()
    assert world.store.try_get(DPUSet, "set", NS) is None
    assert world.dpus() == {}


def test_flavor_event_enqueues_only_sets_using_it(world: World) -> None:
    world.store.create(dpu_set("uses-a"))
    other = dpu_set("uses-b")
    other.spec.dpu_template.spec.dpu_flavor = "flavor-b"
    world.store.create(other)
    world.run()
    world.store.create(DPUFlavor.new("flavor-a", NS))
    stats = world.driver.run_until_idle()
    assert stats.steps == 1
    assert world.controller.metrics()["reconciles"] == 5  # 2 finalizer passes + 2 passes + the flavor's one set
