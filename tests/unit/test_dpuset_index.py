"""The DPUSet controller's cache index: its views always equal a view built from store lists, and a pass over
the index does exactly what a pass over fresh lists does (same writes in the same order, same events)."""

from __future__ import annotations

import contextlib
from typing import Any

from fakes import PatchableStore
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dpf_core.api.external import Node
from dpf_core.api.meta import Condition
from dpf_core.api.provisioning import (
    DPU,
    DPUSET_FINALIZER,
    ClusterSpec,
    DPUPhase,
    DPUSet,
    DPUSetStrategy,
    dpu_pci_address_label,
)
from dpf_core.controllers import dpuset
from dpf_core.controllers.dpuset import SetView, build_view, owned_dpus
from dpf_core.errors import NotFound
from dpf_core.runtime import DONE, Context, Manager, ManualClock, MemoryRecorder, Request, Result, SyncDriver
from dpf_core.store import MemoryStore

NS = "dpf-operator-system"
PCI0 = "feature.node.kubernetes.io/dpu-0-pci-address"
PCI1 = "feature.node.kubernetes.io/dpu-1-pci-address"
HOLD = "test.dpf.local/hold"
PROPS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reference_reconcile(ctx: Context, req: Request) -> Result:
    """The pass as first written (lists and loops over every Node and DPU, facts 2.2): the oracle."""
    s = ctx.client.try_get(DPUSet, req.name, req.namespace)
    if s is None:
        return DONE
    if s.metadata.deletion_timestamp is not None:
        return dpuset.finalize(ctx, s)
    if DPUSET_FINALIZER not in s.metadata.finalizers:
        protected = s.deepcopy()
        protected.metadata.finalizers.append(DPUSET_FINALIZER)
        ctx.client.update(protected)
        return DONE
    selector = s.spec.node_selector
    nodes = {n.name: n for n in (ctx.client.list(Node, label_selector=selector) if selector is not None else ctx.client.list(Node))}
    existing = {d.name for d in owned_dpus(ctx, s)}
    errors: list[str] = []
    for node_name in sorted(nodes):
        n = nodes[node_name]
        for index in dpuset.dpu_indices(s.spec.dpu_selector, n.metadata.labels):
            try:
                dpu = dpuset.desired_dpu(s, n, index)
                if dpu.name in existing:
                    continue
                created = ctx.client.create(dpu)
            except Exception as e:
                msg = f"failed to created DPU index {index} on node {node_name} {e}"
                ctx.recorder.event(s, "Warning", "FailedCreate", msg)
                errors.append(msg)
                continue
            existing.add(created.name)
            ctx.recorder.event(s, "Normal", "SuccessfulCreate", f"Created DPU: ({NS}/{created.name})")
    for d in owned_dpus(ctx, s):
        if d.spec.node_name not in nodes and d.metadata.deletion_timestamp is None:
            dpuset._delete(ctx, s, d)
    dpus = owned_dpus(ctx, s)
    if dpuset.strategy_type(s) == "RollingUpdate":
        total = sum(len(dpuset.dpu_indices(s.spec.dpu_selector, n.metadata.labels)) for n in nodes.values())
        rolling = s.spec.strategy.rolling_update if s.spec.strategy is not None else None
        budget = dpuset.max_unavailable(rolling.max_unavailable if rolling is not None else None, total)
        # DPF's total - len(dpus) + #unavailable, unclamped, with our per-DPU slots: a slot whose DPU does not
        # exist counts +1, a DPU on a Node not selected -1, a DPU on a selected Node 0.
        names = {d.name for d in dpus}
        missing = 0
        for n in nodes.values():
            for index in dpuset.dpu_indices(s.spec.dpu_selector, n.metadata.labels):
                pci = n.metadata.labels.get(dpu_pci_address_label(index))
                missing += not pci or dpuset.dpu_name(n.name, pci) not in names
        off = sum(1 for d in dpus if d.spec.node_name not in nodes)
        unavailable = missing - off + sum(1 for d in dpus if dpuset.is_unavailable(d))
        for d in dpus:
            if d.metadata.deletion_timestamp is not None:
                continue
            dpuset.merge_node_labels(ctx, s, d)
            if not dpuset.needs_update(s, d):
                continue
            if dpuset.is_unavailable(d):
                dpuset._delete(ctx, s, d)
            elif unavailable < budget:
                dpuset._delete(ctx, s, d)
                unavailable += 1
    dpuset.update_statistics(ctx, s, dpuset.dpu_statistics(dpus))
    if errors:
        raise dpuset.DPUSetError("; ".join(errors))
    return DONE


class World:
    """A store and the DPUSet controller. `live=False`: passes read store lists instead of the index;
    `reference=True`: passes run the oracle above."""

    def __init__(self, live: bool, reference: bool = False) -> None:
        self.clock = ManualClock()
        self.store = PatchableStore(clock=self.clock.now, seed=7)  # a test counts its lists
        self.recorder = MemoryRecorder(self.clock)
        self.mgr = Manager(self.store, self.clock, recorder_factory=lambda _: self.recorder)
        self.controller = self.mgr.add(dpuset.controller())
        self.driver = SyncDriver(self.mgr)
        self.driver.start()
        self.index: dpuset.DPUSetIndex = self.controller.index  # type: ignore[attr-defined]
        self.index.live = live
        if reference:
            self.controller._reconcile = reference_reconcile

    def run(self) -> None:
        self.driver.run_for(30, max_steps=400)

    def snapshot(self) -> list[Any]:
        """Everything a pass could have written, resourceVersions included (same writes, same order)."""
        out: list[Any] = [(d.name, d.metadata.resource_version, d.metadata.uid, d.wire()["spec"], d.metadata.labels,
                           d.metadata.deletion_timestamp) for d in self.store.list(DPU)]
        out += [(s.name, s.metadata.resource_version, s.status.dpu_statistics) for s in self.store.list(DPUSet)]
        out += [(e.reason, e.message) for e in self.recorder.events]
        return out


def _node(name: str, labels: dict[str, str]) -> Node:
    return Node.model_validate({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
                                "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}})


def _set(name: str) -> DPUSet:
    return DPUSet.model_validate({
        "apiVersion": DPUSet.KIND.api_version, "kind": "DPUSet", "metadata": {"name": name, "namespace": NS},
        "spec": {
            "nodeSelector": {"matchLabels": {"role": "worker"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "dpuTemplate": {"spec": {"bfb": {"name": "bfb-a"}, "dpuFlavor": "flavor-a"}},
        },
    })


NODE_LABELS = st.sampled_from([
    {"role": "worker", PCI0: "0000-04-00"},
    {"role": "worker", PCI0: "0000-04-00", PCI1: "0000-05-00"},
    {"role": "worker", PCI1: "0000-05-00"},
    {"role": "worker", PCI0: ""},
    {"role": "worker"},
    {PCI0: "0000-04-00"},
    {"role": "other", PCI0: "0000-04-00"},
])
SET_EDITS = st.sampled_from(["bfb-b", "bfb-a", "flavor-b", "labels", "selector-any", "selector-worker", "dpu-1",
                             "dpu-none", "recreate", "budget-2"])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("node"), st.integers(0, 3), NODE_LABELS),
        st.tuples(st.just("drop-node"), st.integers(0, 3), st.none()),
        st.tuples(st.just("status"), st.integers(0, 9), st.sampled_from(["Ready", "Error", "Rebooting", "Pending-none"])),
        st.tuples(st.just("status"), st.integers(0, 9), st.just("Ready")),
        st.tuples(st.just("hold"), st.integers(0, 9), st.booleans()),
        st.tuples(st.just("delete-dpu"), st.integers(0, 9), st.none()),
        st.tuples(st.just("edit"), st.just("a"), SET_EDITS),
        st.tuples(st.just("edit"), st.just("a"), st.sampled_from(["bfb-b", "bfb-a", "flavor-b"])),
        st.tuples(st.just("edit"), st.just("b"), SET_EDITS),
        st.tuples(st.just("delete-set"), st.sampled_from(["a", "b"]), st.none()),
        st.tuples(st.just("create-set"), st.sampled_from(["a", "b"]), st.none()),
    ),
    min_size=1,
    max_size=14,
)


def _nth_dpu(store: MemoryStore, i: int) -> DPU | None:
    dpus = store.list(DPU, NS)
    return dpus[i % len(dpus)] if dpus else None


def _edit(s: DPUSet, edit: str) -> None:
    spec = s.spec
    tmpl = spec.dpu_template.spec
    if edit.startswith("bfb-"):
        tmpl.bfb.name = edit
    elif edit == "flavor-b":
        tmpl.dpu_flavor = "flavor-b"
    elif edit == "labels":
        tmpl.cluster = ClusterSpec(node_labels={"zone": "a"})
    elif edit == "selector-any":
        spec.node_selector = None
    elif edit == "selector-worker":
        spec.node_selector = _set("x").spec.node_selector
    elif edit == "dpu-1":
        spec.dpu_selector = {PCI1: "0000-05-00"}
    elif edit == "dpu-none":
        spec.dpu_selector = {}
    elif edit == "recreate":
        spec.strategy = DPUSetStrategy.model_validate({"type": "Recreate"})
    elif edit == "budget-2":
        spec.strategy = DPUSetStrategy.model_validate({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}})


def apply(world: World, op: tuple[str, Any, Any]) -> None:
    kind, arg, value = op
    store = world.store
    if kind == "node":
        name = f"w{arg}"
        current = store.try_get(Node, name)
        if current is None:
            store.create(_node(name, value))
        else:
            edited = current.deepcopy()
            edited.metadata.labels = dict(value)
            store.update(edited)
    elif kind == "drop-node":
        if store.try_get(Node, f"w{arg}") is not None:
            store.delete(Node, f"w{arg}")
    elif kind == "status":
        d = _nth_dpu(store, arg)
        if d is not None:
            d = d.deepcopy()
            if value == "Pending-none":
                d.status.phase, d.status.conditions = DPUPhase.PENDING, []
            else:
                d.status.phase = DPUPhase(value)
                d.status.conditions = [Condition.model_validate({
                    "type": "Ready", "status": "True" if value == "Ready" else "False", "reason": "x",
                    "lastTransitionTime": "2025-01-01T00:00:00Z"})]
            store.update_status(d)
    elif kind == "hold":
        d = _nth_dpu(store, arg)
        if d is not None:
            d = d.deepcopy()
            d.metadata.finalizers = [HOLD] if value else []
            store.update(d)
    elif kind == "delete-dpu":
        d = _nth_dpu(store, arg)
        if d is not None and d.metadata.deletion_timestamp is None:
            store.delete(DPU, d.name, NS)
    elif kind == "edit":
        s = store.try_get(DPUSet, arg, NS)
        if s is not None and s.metadata.deletion_timestamp is None:
            s = s.deepcopy()
            _edit(s, value)
            store.update(s)
    elif kind == "delete-set":
        with contextlib.suppress(NotFound):
            store.delete(DPUSet, arg, NS)
    elif kind == "create-set" and store.try_get(DPUSet, arg, NS) is None:
        store.create(_set(arg))


def _fields(view: SetView) -> dict[str, Any]:
    return {
        "nodes": sorted(view.nodes), "total": view.total, "missing": sorted(view.missing), "dpus": sorted(view.dpus),
        "unselected": sorted(view.unselected), "off": sorted(view.off), "unavailable": sorted(view.unavailable),
        "unmerged": sorted(view.unmerged), "outdated": sorted(view.outdated), "phases": view.phases,
    }


def _ctx(world: World) -> Context:
    return world.mgr.context_for(world.controller)


def assert_views_match_lists(world: World) -> None:
    for s in world.store.list(DPUSet):
        live = world.index.view(s)
        selector = s.spec.node_selector
        nodes = world.store.list(Node, label_selector=selector) if selector is not None else world.store.list(Node)
        fresh = build_view(s, nodes, owned_dpus(_ctx(world), s))
        assert _fields(live) == _fields(fresh), s.name


def _three_ready(w: World, hold: bool = False) -> None:
    """Set "a" over three worker nodes, every DPU Ready (and, with `hold`, kept by a finalizer when deleted)."""
    for i in range(3):
        w.store.create(_node(f"w{i}", {"role": "worker", PCI0: "0000-04-00"}))
    w.store.create(_set("a"))
    w.run()
    for i in range(3):
        apply(w, ("status", i, "Ready"))
        if hold:
            apply(w, ("hold", i, True))
    w.run()


@PROPS
@example([("edit", "a", "bfb-b"), ("status", 0, "Ready"), ("hold", 1, True), ("edit", "a", "labels"),
          ("node", 2, {"role": "other"}), ("delete-dpu", 1, None), ("edit", "a", "flavor-b")])
@given(OPS)
def test_index_pass_equals_list_pass_and_views_equal_lists(ops: list[tuple[str, Any, Any]]) -> None:
    worlds = indexed, listed, reference = World(live=True), World(live=False), World(live=False, reference=True)
    for w in worlds:
        _three_ready(w)
    for op in ops:
        for w in worlds:
            apply(w, op)
            w.run()
        assert indexed.snapshot() == reference.snapshot()
        assert listed.snapshot() == reference.snapshot()
        assert_views_match_lists(indexed)


def test_restarted_controller_rebuilds_its_index_from_the_initial_list() -> None:
    first = World(live=True)
    for i in range(3):
        first.store.create(_node(f"w{i}", {"role": "worker", PCI0: "0000-04-00"}))
    first.store.create(_set("a"))
    first.run()
    first.mgr.stop()
    # A new manager over the same store (a restarted operator) starts cold: its index comes from the list.
    mgr = Manager(first.store, first.clock, recorder_factory=lambda _: first.recorder)
    c = mgr.add(dpuset.controller())
    driver = SyncDriver(mgr)
    driver.start()
    index: dpuset.DPUSetIndex = c.index  # type: ignore[attr-defined]
    assert index.live
    s = first.store.get(DPUSet, "a", NS)
    assert sorted(index.view(s).dpus) == ["w0-0000-04-00", "w1-0000-04-00", "w2-0000-04-00"]
    assert not index.view(s).missing
    first.store.delete(DPU, "w1-0000-04-00", NS)
    driver.run_for(1)
    assert sorted(d.name for d in first.store.list(DPU, NS)) == ["w0-0000-04-00", "w1-0000-04-00", "w2-0000-04-00"]


def test_a_steady_state_pass_reads_no_list() -> None:
    world = World(live=True)
    for i in range(20):
        world.store.create(_node(f"w{i}", {"role": "worker", PCI0: "0000-04-00"}))
    world.store.create(_set("a"))
    world.run()
    calls: list[str] = []
    real_list = world.store.list

    def counting_list(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0].KIND.kind)
        return real_list(*args, **kwargs)

    world.store.list = counting_list  # type: ignore[method-assign]
    d = world.store.get(DPU, "w3-0000-04-00", NS).deepcopy()
    d.status.phase = DPUPhase.PENDING
    world.store.update_status(d)
    world.run()
    assert int(world.controller.metrics()["reconciles"]) > 0
    assert "DPU" not in calls and "Node" not in calls
    assert world.store.get(DPUSet, "a", NS).status.dpu_statistics == {"Initializing": 19, "Pending": 1}


def test_a_dpu_still_deleting_from_a_deselected_node_holds_no_budget() -> None:
    """DPF's rolloutRolling counts total - len(dpus) + #unavailable without clamping at 0: the DPU going from
    a Node the selector dropped is one DPU too many and one unavailable, so it nets out and the remaining
    Nodes roll at once (clamped, it held the whole budget of 1 until its finalizer was released)."""
    for live in (True, False):
        world = World(live=live)
        _three_ready(world, hold=True)
        apply(world, ("node", 0, {"role": "other", PCI0: "0000-04-00"}))
        world.run()
        going = world.store.get(DPU, "w0-0000-04-00", NS)
        assert going.metadata.deletion_timestamp is not None  # held by its finalizer
        apply(world, ("edit", "a", "bfb-b"))
        world.run()
        deleting = sorted(d.name for d in world.store.list(DPU, NS) if d.metadata.deletion_timestamp is not None)
        # 2 selected slots - 3 DPUs + 1 unavailable = 0 < maxUnavailable 1: one replacement, not two.
        assert deleting == ["w0-0000-04-00", "w1-0000-04-00"], live
