"""DPUSet day-2 changes while a RollingUpdate is in progress, each checked against DPF's dpuset controller
(internal/provisioning/controllers/dpuset/dpuset_controller.go) and its webhook (vdpuset.kb.io):

1. maxUnavailable raised and lowered mid-rollout: every pass reads the value in force.
2. the BFB changed twice (A -> B -> C) before the first rollout ends.
3. the DPUFlavor name and the template's metadata changed: what is outdated, what is only patched, what waits.
4. the nodeSelector narrowed and widened mid-rollout.
5. RollingUpdate -> Recreate mid-rollout, maxUnavailable 0 / "0%", and back.
6. a host joining mid-rollout.

DPF's rule, checked at every deletion the DPUSet makes (`Decisions`): a Ready DPU is deleted for an update
(spec.bfb or spec.dpuFlavor differs from the template) only while total - #DPUs + #unavailable < maxUnavailable,
with total = selected Nodes, maxUnavailable scaled on total (percent rounded up) and clamped to [1, total].
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dpf_core.api.external import Node, NodeMaintenance
from dpf_core.api.meta import IntOrString
from dpf_core.api.provisioning import DPU, DPUSET_NAME_LABEL, DPUSET_NAMESPACE_LABEL, DPUSet
from dpf_core.controllers.dpuset import max_unavailable
from dpf_core.store.protocol import WatchEvent
from dpf_core.store.selectors import compile_label_selector
from dpf_sim.expect import MaxUnavailable, find_bluefields
from dpf_sim.runner import Runner, RunResult
from dpf_sim.scenario import InvariantSpec, load_scenario

HERE = Path(__file__).resolve().parent / "scenarios_unseen_4"
NS = "dpf-operator-system"
CLUSTER = "dpu-cplane-tenant1/dpu-cplane-tenant1"
# Steps whose deliverable is the API refusing them; everything else in those scenarios must hold.
REFUSED = {
    "template-metadata": ["step 3 (edit-flavor)"],
    "strategy-switch": ["step 5 (back-with-zero)", "step 6 (back-with-zero-percent)"],
}


# --- recording ---------------------------------------------------------------------------------------------


def _ready(dpu: DPU) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in dpu.status.conditions)


@dataclass(frozen=True)
class Decision:
    """One deletion started on a DPU of the set, with DPF's count of unavailable DPUs just before it."""

    t: float
    dpu: str
    node: str
    was_ready: bool
    outdated: bool
    selected: bool
    unavailable_before: int
    total: int
    max_unavailable: IntOrString | None
    budget: int


class Record:
    """Per DPU name: the (uid, bfb, flavor) of each incarnation, its phases, deletions and the decisions."""

    def __init__(self, runner: Runner, peak_from: float = 0.0) -> None:
        self.runner = runner
        self.peak_from = peak_from
        self.incarnations: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
        self.phases: dict[tuple[str, str], list[str]] = defaultdict(list)  # (name, uid) -> phases in order
        self.created_at: dict[str, list[float]] = defaultdict(list)
        self.decisions: list[Decision] = []
        # str(maxUnavailable in force) -> highest DPF count from `peak_from` on
        self.peak: dict[str, int] = defaultdict(int)
        self.first_ready: dict[str, float] = {}
        runner.twin.on_event(self._on)

    @property
    def now(self) -> float:
        return float(self.runner.twin.now)

    def _on(self, store: str, ev: WatchEvent) -> None:
        o = ev.object
        if store != "host" or not isinstance(o, DPU):
            return
        uid = o.metadata.uid or ""
        if ev.type == "ADDED":
            self.incarnations[o.name].append((uid, o.spec.bfb, o.spec.dpu_flavor or ""))
            self.created_at[o.name].append(self.now)
        if ev.type != "DELETED":
            if _ready(o):
                self.first_ready.setdefault(o.name, self.now)
            seen = self.phases[(o.name, uid)]
            phase = str(o.status.phase or "Initializing")
            if not seen or seen[-1] != phase:
                seen.append(phase)
        old = ev.old
        started = (ev.type == "MODIFIED" and isinstance(old, DPU) and old.metadata.deletion_timestamp is None
                   and o.metadata.deletion_timestamp is not None)
        ds = self.runner.twin.host.try_get(DPUSet, "dpuset", NS)
        if ds is None:
            return
        count, total, selected = self._dpf_count(ds)
        strategy = ds.spec.strategy
        value = strategy.rolling_update.max_unavailable if strategy and strategy.rolling_update else None
        if strategy is not None and strategy.type == "RollingUpdate" and self.now >= self.peak_from:
            self.peak[str(value)] = max(self.peak[str(value)], count)
        if not started:
            return
        assert isinstance(old, DPU)
        tmpl = ds.spec.dpu_template.spec
        was_ready = _ready(old)
        self.decisions.append(Decision(
            t=self.now, dpu=o.name, node=o.spec.node_name, was_ready=was_ready,
            outdated=o.spec.bfb != tmpl.bfb.name or o.spec.dpu_flavor != tmpl.dpu_flavor,
            selected=o.spec.node_name in selected,
            # The deletion just made it unavailable: before it, one less if it was Ready.
            unavailable_before=count - (1 if was_ready else 0), total=total,
            max_unavailable=value, budget=max_unavailable(value, total)))

    def _dpf_count(self, ds: DPUSet) -> tuple[int, int, set[str]]:
        """DPF's rolloutRolling count over the store as it is now: total - len(dpuMap) + #unavailable."""
        host = self.runner.twin.host
        sel = ds.spec.node_selector
        matcher = compile_label_selector(sel) if sel is not None else None
        selected = {n.name for n in host.list(Node) if matcher is None or matcher.matches(n.metadata.labels)}
        dpus = [d for d in host.list(DPU, NS) if d.metadata.labels.get(DPUSET_NAME_LABEL) == ds.name]
        by_node = {d.spec.node_name for d in dpus}
        down = sum(1 for d in dpus if d.metadata.deletion_timestamp is not None or not _ready(d))
        return len(selected) - len(by_node) + down, len(selected), selected

    def flashes(self, name: str) -> int:
        return int(find_bluefields(self.runner.twin).dpus[name].flashes_started)

    def bfbs(self, name: str) -> list[str]:
        return [bfb for _, bfb, _ in self.incarnations[name]]

    def installs(self, name: str) -> int:
        """Incarnations of `name` that reached OS Installing: each flashes its BFB exactly once."""
        return sum(1 for uid, _, _ in self.incarnations[name] if "OS Installing" in self.phases[(name, uid)])

    def update_decisions(self) -> list[Decision]:
        return [d for d in self.decisions if d.selected and d.outdated]


_RUNS: dict[str, tuple[Runner, Record, RunResult]] = {}


def run(name: str) -> tuple[Runner, Record]:
    """The scenario's run (once per test session: the tests below only read it) with its record; every
    expectation held but the REFUSED steps."""
    if name not in _RUNS:
        runner = Runner(load_scenario(HERE / f"{name}.yaml"), progress=False)
        named = {step.name for step in runner.scenario.timeline}
        record = Record(runner, step_time(runner, "roll") if "roll" in named else 0.0)
        _RUNS[name] = (runner, record, runner.run())
    runner, record, result = _RUNS[name]
    failed = sorted(o.name for o in result.failures)
    assert failed == REFUSED.get(name, []), [o.as_dict() for o in result.failures]
    return runner, record


def failures(name: str) -> dict[str, str]:
    run(name)
    return {o.name: o.detail for o in _RUNS[name][2].failures}


def step_time(runner: Runner, name: str) -> float:
    for step in runner.scenario.timeline:
        if step.name == name:
            return float(step.at)
    raise KeyError(name)


def assert_dpf_budget_rule(record: Record) -> None:
    """Every update deletion of a Ready DPU started below the budget in force; unavailable ones went anyway."""
    for d in record.update_decisions():
        if d.was_ready:
            assert d.unavailable_before < d.budget, d


@pytest.mark.parametrize("path", sorted(HERE.glob("*.yaml")), ids=lambda p: p.stem)
def test_scenario_holds(path: Path) -> None:
    run(path.stem)


# --- 1. maxUnavailable changed mid-rollout -----------------------------------------------------------------


def test_the_budget_follows_max_unavailable_as_it_is_changed() -> None:
    runner, record = run("budget-change")
    raise_at, percent_at = step_time(runner, "raise"), step_time(runner, "percent")
    updates = [d for d in record.update_decisions() if d.was_ready]
    assert len(updates) == 10  # each DPU replaced once
    assert_dpf_budget_rule(record)
    first = [d for d in updates if d.t < raise_at]
    second = [d for d in updates if raise_at <= d.t < percent_at]
    third = [d for d in updates if d.t >= percent_at]
    assert first and second and third
    # maxUnavailable 1: one at a time; 3: raised to three at once the moment it changed; "20%" of 10: two.
    assert {(d.max_unavailable, d.budget, d.unavailable_before) for d in first} == {(1, 1, 0)}
    assert {(d.max_unavailable, d.budget) for d in second} == {(3, 3)}
    assert max(d.unavailable_before for d in second) == 2
    assert [d.t for d in second][:2] == [raise_at, raise_at]  # two more deleted by the pass the edit caused
    assert {(d.max_unavailable, d.budget) for d in third} == {("20%", 2)}
    assert max(d.unavailable_before for d in third) == 1
    assert record.peak["1"] == 1 and record.peak["3"] == 3
    # Lowered below what was already unavailable: nothing recalled, no new deletion until the count fell.
    assert record.peak["20%"] == 3
    assert min(d.t for d in third) > percent_at
    host = runner.twin.host
    assert sorted((d.spec.bfb, _ready(d)) for d in host.list(DPU)) == [("bf-bundle-2", True)] * 10


def test_max_unavailable_invariant_uses_the_value_in_force() -> None:
    """3 unavailable is fine under 3; lowering to "20%" (2 of 10) while 3 are down is not a violation (DPF
    recalls nothing); one more going down while over the new budget is."""
    inv = MaxUnavailable(InvariantSpec(name="b", type="maxUnavailable"))

    def feed(obj: Any) -> None:
        inv.on_event("host", WatchEvent("MODIFIED", obj))

    for i in range(10):
        feed(Node.model_validate({"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"n{i}", "labels": {"g": "x"}}}))
    feed(_dpuset(3))
    for i in range(10):
        feed(_dpu(i, ready=True))
    for i in range(3):
        feed(_dpu(i, ready=True, deleting=True))
    assert inv.passed is None
    feed(_dpuset("20%"))
    assert inv.passed is None
    feed(_dpu(0, ready=False))  # back, not Ready yet: still 3 down, the count did not grow
    feed(_dpu(0, ready=True))  # 2 down
    assert inv.passed is None
    feed(_dpu(9, ready=False))  # 3 down under a budget of 2
    assert inv.passed is False
    assert "3 DPUs unavailable, maxUnavailable '20%' allows 2 of 10 node(s)" in inv.outcome().detail


def _dpuset(value: IntOrString) -> DPUSet:
    return DPUSet.model_validate({
        "apiVersion": "provisioning.dpu.nvidia.com/v1alpha1", "kind": "DPUSet",
        "metadata": {"name": "dpuset", "namespace": NS},
        "spec": {"nodeSelector": {"matchLabels": {"g": "x"}},
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": value}},
                 "dpuTemplate": {"spec": {"bfb": {"name": "b"}}}}})


def _dpu(i: int, ready: bool, deleting: bool = False) -> DPU:
    meta: dict[str, Any] = {"name": f"d{i}", "namespace": NS,
                            "labels": {DPUSET_NAME_LABEL: "dpuset", DPUSET_NAMESPACE_LABEL: NS}}
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T00:00:00Z"
        meta["finalizers"] = ["provisioning.dpu.nvidia.com/dpu-protection"]
    cond = {"type": "Ready", "status": "True" if ready else "False", "reason": "x", "message": "",
            "lastTransitionTime": "2025-01-01T00:00:00Z"}
    return DPU.model_validate({"apiVersion": "provisioning.dpu.nvidia.com/v1alpha1", "kind": "DPU", "metadata": meta,
                               "spec": {"nodeName": f"n{i}", "bfb": "b"}, "status": {"conditions": [cond]}})


# --- 2. BFB changed twice -----------------------------------------------------------------------------------


def test_bfb_changed_twice_every_dpu_ends_on_the_last_one_and_b_is_replaced_again() -> None:
    runner, record = run("bfb-twice")
    to_c = step_time(runner, "to-c")
    names = sorted(record.incarnations)
    assert len(names) == 8
    host = runner.twin.host
    assert sorted((d.spec.bfb, _ready(d)) for d in host.list(DPU)) == [("bf-bundle-c", True)] * 8
    assert_dpf_budget_rule(record)
    ready_on_b = []
    for name in names:
        bfbs = record.bfbs(name)
        assert bfbs[0] == "bf-bundle" and bfbs[-1] == "bf-bundle-c", (name, bfbs)
        # One flash per incarnation that reached OS Installing, never two at once (singleFlash held).
        assert record.flashes(name) == record.installs(name), name
        bf = find_bluefields(runner.twin).dpus[name]
        assert bf.max_flashing == 1 and "-bf-bundle-c.bfb;" in bf.flashed_version, (name, bf.flashed_version)
        if "bf-bundle-b" in bfbs:
            uid_b = record.incarnations[name][bfbs.index("bf-bundle-b")][0]
            if "Ready" in record.phases[(name, uid_b)]:
                ready_on_b.append(name)
                assert record.flashes(name) == 3  # A, B, then C again
    # Some DPUs made it to B before C was set, some were caught on the way (deleted at once: not Ready),
    # some never left A; the ones caught on the way went without waiting for the budget.
    assert ready_on_b
    caught = [d for d in record.decisions if d.t == to_c and not d.was_ready]
    assert caught and all(d.outdated for d in caught)
    assert {n for n in names if record.bfbs(n) == ["bf-bundle", "bf-bundle-c"]}
    assert max(record.flashes(n) for n in names) == 3


# --- 3. DPUFlavor and template metadata ---------------------------------------------------------------------


def test_flavor_change_is_an_update_and_metadata_reaches_only_new_dpus() -> None:
    runner, record = run("flavor-mid-rollout")
    edit = step_time(runner, "edit")
    host = runner.twin.host
    final = host.list(DPU, NS)
    assert sorted((d.spec.bfb, d.spec.dpu_flavor) for d in final) == [("bf-bundle-2", "hbn-ovn-v2")] * 6
    assert_dpf_budget_rule(record)
    # The two Ready on the new BFB with the old flavor at the edit were outdated again by the flavor name alone.
    twice = [n for n in record.incarnations for uid, b, f in record.incarnations[n]
             if (b, f) == ("bf-bundle-2", "dpf-provisioning-hbn-ovn") and "Ready" in record.phases[(n, uid)]]
    assert len(twice) == 2
    for n in twice:
        assert record.incarnations[n][-1][1:] == ("bf-bundle-2", "hbn-ovn-v2")
        assert record.flashes(n) == 3
        assert [d.t >= edit for d in record.decisions if d.dpu == n] == [False, True]
    for d in final:
        # Created after the edit: the template annotation and the DPUSet's label came with it.
        assert record.created_at[d.name][-1] >= edit
        assert d.metadata.annotations.get("example.com/owner") == "team-b"
        assert d.metadata.labels.get("rollout") == "second"
        assert d.spec.cluster.node_labels.get("tier") == "gold"
    cluster = runner.twin.dpu_clusters[CLUSTER]
    assert sorted(n.name for n in cluster.list(Node) if n.metadata.labels.get("tier") == "gold") == sorted(
        d.name for d in final)


def test_template_metadata_alone_replaces_nothing() -> None:
    runner, record = run("template-metadata")
    host = runner.twin.host
    deleted = step_time(runner, "del")
    # Only the DPU the user deleted was ever replaced; nothing the DPUSet did was a deletion.
    assert record.decisions == [d for d in record.decisions if d.dpu == "worker-0-0-0000-04-00" and d.t == deleted]
    assert {n: len(v) for n, v in record.incarnations.items()} == {
        "worker-0-0-0000-04-00": 2, "worker-0-1-0000-04-00": 1, "worker-0-2-0000-04-00": 1, "worker-0-3-0000-04-00": 1}
    for d in host.list(DPU, NS):
        # nodeLabels merged in place into every DPU (DPF's needUpdate patch).
        assert d.spec.cluster.node_labels.get("tier") == "gold"
        if d.name == "worker-0-0-0000-04-00":
            assert d.metadata.annotations["example.com/owner"] == "team-b"
            assert d.metadata.labels.get("team") == "b"
            assert d.spec.node_effect.no_effect is True and d.spec.node_effect.taint is None
            assert d.spec.automatic_node_reboot is False
        else:
            # What DPF neither compares nor patches stays as the DPU was created.
            assert d.metadata.annotations["example.com/owner"] == "team-a"
            assert "team" not in d.metadata.labels
            assert d.spec.node_effect.taint is not None and d.spec.node_effect.taint.key == "dpu"
            assert d.spec.automatic_node_reboot is True
    # The recreated DPU's host got no taint (noEffect now), the others' taints were lifted when they got Ready.
    assert not [n.name for n in host.list(Node) if any(t.key == "dpu" for t in n.spec.taints)]
    cluster = runner.twin.dpu_clusters[CLUSTER]
    assert sorted(n.name for n in cluster.list(Node) if n.metadata.labels.get("tier") == "gold") == sorted(
        d.name for d in host.list(DPU, NS))


def test_editing_the_dpuflavor_itself_is_refused() -> None:
    [(name, detail)] = failures("template-metadata").items()
    assert name == "step 3 (edit-flavor)"
    assert ('DPUFlavor.provisioning.dpu.nvidia.com "dpf-provisioning-hbn-ovn" is invalid: spec: Invalid value: '
            '"object": DPUFlavor spec is immutable') in detail


# --- 4. nodeSelector narrowed and widened -------------------------------------------------------------------


def test_narrowed_selector_deletes_pool_a_at_once_and_widened_brings_it_back_on_the_new_bfb() -> None:
    runner, record = run("selector-narrow-widen")
    narrow, widen = step_time(runner, "narrow"), step_time(runner, "widen")
    pool_a = [f"worker-0-{i}-0000-04-00" for i in range(4)]
    pool_b = [f"worker-1-{i}-0000-04-00" for i in range(4)]
    deselected = [d for d in record.decisions if not d.selected]
    # All four deleted by the pass the edit caused, whatever the budget (2) and their state: two Ready on the
    # old BFB, two mid-replacement on the new one.
    assert sorted(d.dpu for d in deselected) == pool_a
    assert {d.t for d in deselected} == {narrow}
    assert sorted(d.was_ready for d in deselected) == [False, False, True, True]
    assert_dpf_budget_rule(record)
    # Pool b rolled with the whole budget (2 at once) from the narrowing on; nothing in pool a was rolled after.
    after = [d for d in record.update_decisions() if d.t >= narrow]
    assert sorted(d.dpu for d in after) == pool_b and max(d.unavailable_before for d in after) == 1
    assert [d.t for d in after][:2] == [narrow] * 2
    for name in pool_a:
        # Back after the widening, created straight from the template as it is then: one more flash, new BFB.
        assert record.bfbs(name)[-1] == "bf-bundle-2"
        assert record.created_at[name][-1] >= widen
        assert record.flashes(name) == record.installs(name)
    for name in pool_b:
        assert record.bfbs(name) == ["bf-bundle", "bf-bundle-2"]
    host = runner.twin.host
    assert sorted((d.spec.bfb, _ready(d)) for d in host.list(DPU, NS)) == [("bf-bundle-2", True)] * 8


def test_deselected_dpus_are_gone_and_undrained_before_the_widening() -> None:
    runner = Runner(load_scenario(HERE / "selector-narrow-widen.yaml"), progress=False)
    narrow, widen = step_time(runner, "narrow"), step_time(runner, "widen")
    seen: dict[str, Any] = {}

    def look(store: str, ev: WatchEvent) -> None:
        host, now = runner.twin.host, runner.twin.now
        state = (sorted(d.name for d in host.list(DPU, NS)), sorted(m.name for m in host.list(NodeMaintenance)))
        if now < narrow:
            seen["at-narrow"] = state
        elif now < widen:
            seen["before-widen"] = state

    runner.twin.on_event(look)
    assert runner.run().passed
    # The two DPUs being replaced in pool a held their hosts drained when the selector was narrowed ...
    assert seen["at-narrow"][1] == ["worker-0-0", "worker-0-1"]
    # ... and by the widening pool a had no DPU and no drain left.
    dpus, maintenances = seen["before-widen"]
    assert dpus == [f"worker-1-{i}-0000-04-00" for i in range(4)]
    assert not [m for m in maintenances if m.startswith("worker-0-")]


def test_pool_b_rolls_in_the_narrowing_pass_while_pool_a_is_still_being_deleted() -> None:
    """DPF's count is total - len(dpus) + #unavailable, not clamped at 0: each pool-a DPU still being deleted
    is one DPU over the 4 selected Nodes and one unavailable, so it nets out and pool b gets its whole budget
    (2) in the very pass that deleted pool a, before any pool-a DPU is gone."""
    runner = Runner(load_scenario(HERE / "selector-narrow-widen.yaml"), progress=False)
    narrow = step_time(runner, "narrow")
    pool_a = [f"worker-0-{i}-0000-04-00" for i in range(4)]
    started: list[tuple[float, str, list[str], int]] = []

    def look(store: str, ev: WatchEvent) -> None:
        o, old = ev.object, ev.old
        if (store != "host" or not isinstance(o, DPU) or not isinstance(old, DPU) or not o.name.startswith("worker-1-")
                or old.metadata.deletion_timestamp is not None or o.metadata.deletion_timestamp is None):
            return
        dpus = [d for d in runner.twin.host.list(DPU, NS) if d.name != o.name]
        going = sorted(d.name for d in dpus if d.name in pool_a)
        down = sum(1 for d in dpus if d.metadata.deletion_timestamp is not None or not _ready(d))
        nodes = {d.spec.node_name for d in dpus} | {o.spec.node_name}
        started.append((float(runner.twin.now), o.name, going, 4 - len(nodes) + down))  # 4 selected Nodes

    runner.twin.on_event(look)
    assert runner.run().passed
    first_two = started[:2]
    assert [(t, name) for t, name, _, _ in first_two] == [
        (narrow, "worker-1-0-0000-04-00"), (narrow, "worker-1-1-0000-04-00")]
    # All of pool a still there (being deleted), and DPF's count below maxUnavailable 2 at each start.
    assert [going for _, _, going, _ in first_two] == [pool_a, pool_a]
    assert [count for _, _, _, count in first_two] == [0, 1]


# --- 5. RollingUpdate -> Recreate, maxUnavailable 0 ---------------------------------------------------------


def test_recreate_mid_rollout_stops_replacing_but_recreates_what_was_deleted() -> None:
    runner, record = run("strategy-switch")
    recreate, resume = step_time(runner, "recreate"), step_time(runner, "resume")
    during = [d for d in record.decisions if recreate <= d.t < resume]
    assert during == []  # Recreate deletes nothing
    before = [d for d in record.decisions if d.t < recreate]
    assert len(before) == 2 and all(d.was_ready and d.outdated for d in before)
    # The two deleted before the switch came back from the template of the moment: the new BFB.
    for d in before:
        assert record.bfbs(d.dpu) == ["bf-bundle", "bf-bundle-2"]
        assert record.created_at[d.dpu][-1] < resume
    after = [d for d in record.decisions if d.t >= resume]
    assert len(after) == 4 and {(d.max_unavailable, d.budget) for d in after} == {("50%", 3)}
    assert [d.t for d in after][:3] == [resume] * 3  # 3 of the 4 at once, the fourth when one is back
    assert_dpf_budget_rule(record)
    ds = runner.twin.host.get(DPUSet, "dpuset", NS)
    assert ds.spec.strategy is not None and ds.spec.strategy.type == "RollingUpdate"
    assert ds.spec.strategy.rolling_update is not None and ds.spec.strategy.rolling_update.max_unavailable == "50%"


def test_max_unavailable_zero_is_kept_under_recreate_and_refused_for_rolling_update() -> None:
    refused = failures("strategy-switch")
    assert sorted(refused) == REFUSED["strategy-switch"]
    assert refused["step 5 (back-with-zero)"].endswith(
        'admission webhook "vdpuset.kb.io" denied the request: '
        'DPUSet.provisioning.dpu.nvidia.com "dpuset" is invalid: spec.strategy.rollingUpdate.maxUnavailable: '
        'Invalid value: 0: '
        "the value range of maxUnavailable must be greater 0")
    assert refused["step 6 (back-with-zero-percent)"].endswith(
        "the value range of maxUnavailable must be greater than 0% and less than or equal to 100%")
    # Step 4 (maxUnavailable 0 while Recreate) went through: vdpuset only checks it for RollingUpdate.
    assert "step 4 (zero)" not in refused


@pytest.mark.parametrize(("value", "total"), [(0, 6), ("0%", 6), (None, 6), ("1%", 6), (0, 0)])
def test_a_zero_budget_that_got_past_the_webhook_still_rolls_one_at_a_time(value: IntOrString | None, total: int) -> None:
    # DPF's rolloutRolling: scaled <= 0 -> 1, so a set created before the webhook ran (or with it off) never deadlocks.
    assert max_unavailable(value, total) == 1


# --- 6. a host joins mid-rollout ----------------------------------------------------------------------------


def test_a_host_joining_mid_rollout_gets_the_new_bfb_directly_and_holds_the_budget() -> None:
    runner, record = run("new-host")
    join = step_time(runner, "join")
    new = "worker-0-5-0000-04-00"
    assert record.bfbs(new) == ["bf-bundle-2"] and record.created_at[new] == [join]
    assert record.flashes(new) == 1
    assert_dpf_budget_rule(record)
    # While it provisioned (not Ready: unavailable), maxUnavailable 1 let no Ready DPU be replaced.
    ready_at = record.first_ready[new]
    assert not [d for d in record.update_decisions() if d.was_ready and join <= d.t < ready_at]
    assert [d for d in record.update_decisions() if d.t >= ready_at]  # the rollout went on afterwards
    host = runner.twin.host
    assert sorted((d.spec.bfb, _ready(d)) for d in host.list(DPU, NS)) == [("bf-bundle-2", True)] * 6
