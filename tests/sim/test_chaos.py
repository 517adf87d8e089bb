"""Chaos runs: scenarios/chaos.yaml on a small fleet for many seeds, and the chaos pieces themselves.

CI budget: the shipped scenario is 500 DPUs with 40 faults and a DPUService churn (4 services, 6 updates, 2
deletions); here every seed runs the same file (same timeline, schedule and churn generators, expectations) on
12 hosts in 2 racks with 8 faults and a churn of 2 services, 3 updates, 1 deletion.
`dpf run scenarios/chaos.yaml --seed N` runs the full-size fleet; benchmarks/chaos_seeds.py runs many seeds
(docs/reliability.md).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dpf_core.api.external import LABEL_ARGOCD_INSTANCE, Application, DaemonSet, Node
from dpf_core.api.meta import LabelSelector
from dpf_core.api.provisioning import (
    DPU,
    DPUSET_NAME_LABEL,
    DPUSET_NAMESPACE_LABEL,
    DPUSet,
    scaled_value_from_int_or_percent,
)
from dpf_core.api.svc import DPUService
from dpf_core.store.protocol import WatchEvent
from dpf_sim.chaos import RolloutBudget, churn_plan, run_summary, services_why_not, shrink
from dpf_sim.faults import ChurnParams
from dpf_sim.runner import Runner, RunResult, run_scenario
from dpf_sim.scenario import InvariantSpec, LoadedScenario, load_scenario, load_scenario_text
from dpf_sim.twin import Twin, TwinConfig

CHAOS = Path(__file__).resolve().parents[2] / "scenarios" / "chaos.yaml"
CI_SEEDS = range(1, 21)
SMALL_FLEET = {"racks": 2, "hostsPerRack": 6}
SMALL_FAULTS = 8
SMALL_CHURN = {"services": 2, "updates": 3, "deletes": 1}


def small(loaded: LoadedScenario, fleet: dict[str, Any] | None = None, count: int = SMALL_FAULTS) -> LoadedScenario:
    """The chaos scenario on a smaller fleet with fewer faults and less churn; everything else unchanged."""
    return shrink(loaded, dict(fleet or SMALL_FLEET), count, SMALL_CHURN)


def run_seed(seed: int, fleet: dict[str, Any] | None = None, count: int = SMALL_FAULTS) -> RunResult:
    return run_scenario(small(load_scenario(CHAOS), fleet, count), seed=seed, progress=False)


@pytest.mark.parametrize("seed", CI_SEEDS)
def test_the_fleet_converges_after_random_faults(seed: int) -> None:
    result = run_seed(seed)
    failures = [f"{o.name}: {o.detail}" for o in result.failures]
    assert result.passed, "\n".join(failures)
    names = {o.name for o in result.outcomes}
    assert {"converged", "rollout-budget", "nothing-lost", "flash-matches-spec"} <= names
    converged = next(o for o in result.outcomes if o.name == "converged")
    assert "DPUService(s) Ready and deployed as specified" in converged.detail


# --- the churn --------------------------------------------------------------------------------------------

CHARTS = [
    {"repoURL": "https://charts.example.com/chaos", "chart": "node-agent", "version": v,
     "workloads": [{"name": "agent", "image": f"registry.example.com/node-agent:{v}"}]}
    for v in ("1.0.0", "1.1.0")
]


def services_twin(seed: int = 1) -> Twin:
    return Twin(TwinConfig(seed=seed, keep_log=False, fleet={"racks": 1, "hosts_per_rack": 2},
                           attachments=("services",), models={"charts": CHARTS}))


def test_the_churn_is_drawn_from_the_seed_and_every_action_fits_its_service_lifetime() -> None:
    twin = services_twin()
    params = ChurnParams(services=5, updates=12, deletes=3)
    plan = churn_plan(twin, params, 3600.0, twin.streams.get("chaos/churn"))
    again = churn_plan(twin, params, 3600.0, services_twin().streams.get("chaos/churn"))
    other = churn_plan(twin, params, 3600.0, services_twin(seed=2).streams.get("chaos/churn"))
    assert plan == again
    assert plan != other
    ops = [a["op"] for _, a in plan]
    assert (ops.count("create"), ops.count("update"), ops.count("delete")) == (5, 12, 3)
    born: dict[str, float] = {}
    dead: set[str] = set()
    for at, action in plan:
        assert 0.0 <= at <= 3600.0
        name = action["name"]
        if action["op"] == "create":
            assert at <= 1800.0 and name not in born
            assert action["manifest"]["spec"]["helmChart"]["source"]["version"] in ("1.0.0", "1.1.0")
            born[name] = at
            continue
        assert name in born and name not in dead, f"{action['op']} of {name} outside its lifetime"
        if action["op"] == "delete":
            dead.add(name)
        else:
            version = action["patch"]["spec"]["helmChart"].get("source", {}).get("version")
            assert version in (None, "1.0.0", "1.1.0")


def test_churn_without_the_services_attachment_is_refused() -> None:
    from dpf_sim.faults import FaultError, inject

    twin = Twin(TwinConfig(fleet={"racks": 1, "hosts_per_rack": 1}, keep_log=False))
    with pytest.raises(FaultError, match="services attachment"):
        inject(twin, {"type": "chaos", "count": 1, "churn": {"services": 1}})


MINI = """
name: mini-churn
seed: 4
fleet: {racks: 1, hostsPerRack: 2}
keepLog: false
recordEvents: false
attachments: [services]
models:
  services: {serviceChainControllers: false}
  charts:
    - {repoURL: "https://charts.example.com/chaos", chart: node-agent, version: 1.0.0,
       workloads: [{name: agent, image: "registry.example.com/node-agent:1.0.0"}]}
    - {repoURL: "https://charts.example.com/chaos", chart: node-agent, version: 1.1.0,
       workloads: [{name: agent, image: "registry.example.com/node-agent:1.1.0"},
                   {name: collector, kind: Deployment, image: "registry.example.com/collector:1.1.0"}]}
timeline:
  - at: 0s
    apply: {file: manifests/base.yaml}
  - at: 0s
    patch:
      kind: DPFOperatorConfig
      namespace: dpf-operator-system
      name: dpfoperatorconfig
      patch: {spec: {flannel: {disable: true}, multus: {disable: true}, sriovDevicePlugin: {disable: true},
                     ovsCNI: {disable: true}, nvipam: {disable: true}, sfcController: {disable: true},
                     serviceSetController: {disable: true}, ovsHelper: {disable: true}}}
  - at: 0s
    apply:
      manifests:
        - apiVersion: provisioning.dpu.nvidia.com/v1alpha1
          kind: DPUSet
          metadata: {name: dpuset, namespace: dpf-operator-system}
          spec:
            nodeSelector: {matchLabels: {feature.node.kubernetes.io/dpu-enabled: "true"}}
            dpuTemplate: {spec: {dpuFlavor: dpf-provisioning-hbn-ovn, bfb: {name: bf-bundle}}}
  - at: 0s
    fault: {type: chaos, count: 3, over: 1h, maxDuration: 5m, types: [controlPlaneDown, apiBrownout, controllerCrash],
            churn: {services: 3, updates: 4, deletes: 1}}
  - at: 75m
    name: faults-over
    fault: {type: clearFaults}
expect:
  - invariant: {name: converged, type: "dpf_sim.chaos:Converged", after: faults-over, within: 2h}
"""


def mini_run() -> Runner:
    loaded = load_scenario_text(MINI, CHAOS.parent / "mini-churn.yaml")
    runner = Runner(loaded, progress=False, series=False)
    runner.result = runner.run()  # type: ignore[attr-defined]
    return runner


def test_service_faults_and_churn_converge_and_leftovers_are_named() -> None:
    runner = mini_run()
    result: RunResult = runner.result  # type: ignore[attr-defined]
    assert result.passed, [o.detail for o in result.failures]
    twin = runner.twin
    summary = run_summary(twin, result.outcomes)
    assert summary["churn"]["create"] == 3 and summary["churn"]["delete"] == 1
    assert summary["dpuservices"] == summary["dpuservices_ready"] == 2
    assert set(summary["faults_by_type"]) <= {"controlPlaneDown", "apiBrownout", "controllerCrash"}
    assert services_why_not(twin) == {}
    # What the check reports when a deletion left something behind, or a service drifts from its spec.
    store = next(iter(twin.dpu_clusters.values()))
    live = store.list(DaemonSet)[0]
    orphan = live.deepcopy()
    orphan.metadata = orphan.metadata.model_copy(update={"name": "orphan-agent", "uid": None, "resource_version": None,
                                                         "labels": {LABEL_ARGOCD_INSTANCE: "gone-app"}})
    store.create(orphan)
    svc = twin.host.list(DPUService)[0]
    app = twin.host.list(Application)[0]
    twin.host.patch(DPUService, svc.name, svc.namespace, {"spec": {"helmChart": {"values": {"labels": {"x": "y"}}}}})
    why = services_why_not(twin)
    assert why[f"DaemonSet {orphan.namespace}/orphan-agent in {next(iter(twin.dpu_clusters))}"] == \
        "left behind by deleted Application gone-app"
    assert any(k.startswith(f"DPUService {svc.namespace}/{svc.name}") or k == f"Application {app.namespace}/{app.name}"
               for k in why)


def test_controller_crash_restarts_the_dpuservice_manager() -> None:
    from dpf_sim.faults import inject

    twin = services_twin()
    services: Any = twin.services  # type: ignore[attr-defined]
    old = services.manager
    rec = inject(twin, {"type": "controllerCrash", "manager": "dpuservice", "downtime": 30})
    assert id(old) in twin.faults.crashed  # type: ignore[attr-defined]
    assert services.manager is old  # nothing runs the DPUService controllers during the downtime
    twin.run(60)
    assert rec.ended is not None
    assert services.manager is not old and services.manager in twin.driver.managers
    assert [c.name for c in services.manager.controllers] == [c.name for c in old.controllers]


# --- rolloutBudget ------------------------------------------------------------------------------------------

NS = "dpf-operator-system"
NS2 = "tenant"  # DPUs labelled for a DPUSet of NS while living elsewhere: counted as DPF lists them (not at all)


class FakeHost:
    """The reads rolloutBudget makes of the host store, over dicts the test edits before each event (every node
    exists, with the labels in `node_labels`)."""

    def __init__(self) -> None:
        self.dpus: dict[tuple[str, str], DPU] = {}
        self.sets: dict[tuple[str, str], DPUSet] = {}
        self.node_labels: dict[str, dict[str, str]] = {}

    def list(self, cls: type[Any], namespace: str | None = None) -> list[Any]:
        if cls is not DPU:
            return []
        return [d for (ns, _), d in sorted(self.dpus.items()) if namespace in (None, ns)]

    def try_get(self, cls: type[Any], name: str, namespace: str | None) -> Any:
        if cls is Node:
            return Node.model_validate({"apiVersion": "v1", "kind": "Node",
                                        "metadata": {"name": name, "labels": self.node_labels.get(name, {})}})
        return self.sets.get((namespace or "", name)) if cls is DPUSet else None


class Recording(RolloutBudget):
    """Keeps every violation (the real one stops at the first) so whole event streams can be compared."""

    def __init__(self) -> None:
        super().__init__(InvariantSpec(name="rollout-budget", type="rolloutBudget"))
        self.messages: list[str] = []

    def violate(self, message: str, offending: Any = ()) -> None:
        self.messages.append(message)


class FullScan(Recording):
    """rolloutBudget as it was before the counts: every update deletion lists the set and scans it."""

    def selected(self, ds: DPUSet, node_name: str) -> bool:
        assert self.twin is not None
        node = self.twin.host.try_get(Node, node_name, None)
        sel = ds.spec.node_selector
        return node is not None and (sel is None or all(node.metadata.labels.get(k) == v for k, v in sel.match_labels.items()))

    def on_event(self, store: str, ev: WatchEvent) -> None:
        self.events += 1
        new, old = ev.object, ev.old
        if ev.type != "MODIFIED" or not isinstance(new, DPU) or not isinstance(old, DPU):
            return
        if old.metadata.deletion_timestamp is not None or new.metadata.deletion_timestamp is None or not ready(old):
            return
        assert self.twin is not None
        name = new.metadata.labels.get(DPUSET_NAME_LABEL)
        if not name:
            return
        ds = self.twin.host.try_get(DPUSet, name, new.metadata.labels.get(DPUSET_NAMESPACE_LABEL) or new.namespace)
        if ds is None or ds.spec.strategy is None or ds.spec.strategy.type != "RollingUpdate":
            return
        tmpl = ds.spec.dpu_template.spec
        if tmpl.bfb.name in (None, new.spec.bfb) and tmpl.dpu_flavor == new.spec.dpu_flavor:
            return
        if not self.selected(ds, new.spec.node_name):
            return
        self.decisions += 1
        members = [d for d in self.twin.host.list(DPU, ds.namespace)
                   if d.metadata.labels.get(DPUSET_NAME_LABEL) == ds.name and d.name != new.name]
        # A Node not selected that still holds a DPU being deleted leaves total; each of its DPUs counts -1.
        off = {d.spec.node_name for d in members if d.metadata.deletion_timestamp is not None
               and d.spec.node_name != new.spec.node_name and not self.selected(ds, d.spec.node_name)}
        # The base is the set's DPUs (the deleted one included), not its Nodes: a Node may hold one DPU per index.
        total = len(members) + 1 - sum(1 for d in members if d.spec.node_name in off)
        unavailable = sum(1 for d in members if d.metadata.deletion_timestamp is not None or not ready(d))
        unavailable -= sum(1 for d in members if d.spec.node_name in off)
        ru = ds.spec.strategy.rolling_update
        scaled = scaled_value_from_int_or_percent(ru.max_unavailable if ru is not None else None, total, True)
        budget = 1 if scaled <= 0 else min(scaled, total)
        if unavailable >= budget:
            self.violate(f"DPUSet {ds.namespace}/{ds.name} deleted Ready DPU {new.name} for an update with "
                         f"{unavailable} of {total} already unavailable (maxUnavailable allows {budget})")


def ready(dpu: DPU) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in dpu.status.conditions)


def budget_dpu(name: str, node: str, *, ready: bool = True, deleting: bool = False, bfb: str = "old",
               dpuset: str | None = "ds", namespace: str = NS) -> DPU:
    md: dict[str, Any] = {"name": name, "namespace": namespace, "labels": {}}
    if dpuset:
        md["labels"] = {DPUSET_NAME_LABEL: dpuset, DPUSET_NAMESPACE_LABEL: NS}
    if deleting:
        md["deletionTimestamp"] = "2025-01-01T00:00:00Z"
        md["finalizers"] = ["provisioning.dpu.nvidia.com/dpu-protection"]
    cond = {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": "2025-01-01T00:00:00Z",
            "reason": "x"}
    return DPU.model_validate({"apiVersion": DPU.KIND.api_version, "kind": "DPU", "metadata": md,
                               "spec": {"nodeName": node, "bfb": bfb, "dpuFlavor": "flavor"},
                               "status": {"phase": "Ready" if ready else "Initializing", "conditions": [cond]}})


def budget_set(max_unavailable: int | str, name: str = "ds", strategy: str = "RollingUpdate") -> DPUSet:
    spec: dict[str, Any] = {"strategy": {"type": strategy},
                            "dpuTemplate": {"spec": {"bfb": {"name": "new"}, "dpuFlavor": "flavor"}}}
    if strategy == "RollingUpdate":
        spec["strategy"]["rollingUpdate"] = {"maxUnavailable": max_unavailable}
    return DPUSet.model_validate({"apiVersion": DPUSet.KIND.api_version, "kind": "DPUSet",
                                  "metadata": {"name": name, "namespace": NS}, "spec": spec})


def budget_twin(host: FakeHost) -> Any:
    return SimpleNamespace(host=host, now=0.0, log=SimpleNamespace(recent=lambda n: []))


def commit(host: FakeHost, checks: Sequence[RolloutBudget], etype: str, dpu: DPU) -> None:
    """Write `dpu` to the fake store, then deliver the event (the store is never ahead of its events)."""
    key = (dpu.namespace or "", dpu.name)
    old = host.dpus.get(key)
    if etype == "DELETED":
        del host.dpus[key]
    else:
        host.dpus[key] = dpu
    for check in checks:
        check.on_event("host", WatchEvent(etype, dpu, old))  # type: ignore[arg-type]


def selected_pool_a() -> tuple[FakeHost, RolloutBudget]:
    """A set of 4 Ready DPUs, maxUnavailable 1, selecting Nodes labelled pool=a (all 4 are, until a test relabels)."""
    host = FakeHost()
    ds = budget_set(1)
    ds.spec.node_selector = LabelSelector(match_labels={"pool": "a"})
    host.sets[(NS, "ds")] = ds
    host.node_labels = {f"n{i}": {"pool": "a"} for i in range(4)}
    inv = RolloutBudget(InvariantSpec(name="rollout-budget", type="rolloutBudget"))
    inv.bind(budget_twin(host))
    inv.activate([])
    for i in range(4):
        commit(host, [inv], "ADDED", budget_dpu(f"d{i}", f"n{i}"))
    return host, inv


def test_rollout_budget_leaves_out_dpus_whose_node_left_the_selector() -> None:
    # DPF deletes the DPUs of deselected nodes before it rolls, without spending the budget.
    host, inv = selected_pool_a()
    commit(host, [inv], "MODIFIED", budget_dpu("d0", "n0", ready=False))
    host.node_labels["n1"] = {"pool": "b"}
    commit(host, [inv], "MODIFIED", budget_dpu("d1", "n1", deleting=True))
    assert inv.decisions == 0 and inv.passed is None
    commit(host, [inv], "MODIFIED", budget_dpu("d2", "n2", deleting=True))
    assert inv.decisions == 1 and inv.passed is False  # n2 is still selected: an update past the budget


def test_rollout_budget_nets_out_dpus_still_deleting_from_deselected_nodes() -> None:
    # DPF's total - len(dpus) + #unavailable, unclamped: 2 selected nodes - 4 DPUs + 2 deleting = 0.
    host, inv = selected_pool_a()
    host.node_labels["n0"] = host.node_labels["n1"] = {"pool": "b"}
    commit(host, [inv], "MODIFIED", budget_dpu("d0", "n0", deleting=True))
    commit(host, [inv], "MODIFIED", budget_dpu("d1", "n1", ready=False, deleting=True))
    commit(host, [inv], "MODIFIED", budget_dpu("d2", "n2", deleting=True))
    assert inv.decisions == 1 and inv.passed is None  # 0 < 1: DPF deletes it in the same pass
    commit(host, [inv], "MODIFIED", budget_dpu("d3", "n3", deleting=True))
    assert inv.decisions == 2 and inv.passed is False
    assert "deleted Ready DPU d3 for an update with 1 of 2 already unavailable (maxUnavailable allows 1)" in inv.detail


def test_rollout_budget_flags_an_update_deletion_past_max_unavailable() -> None:
    outcomes = {}
    for max_u in (1, "50%"):
        host = FakeHost()
        host.sets[(NS, "ds")] = budget_set(max_u)
        inv = RolloutBudget(InvariantSpec(name="rollout-budget", type="rolloutBudget"))
        inv.bind(budget_twin(host))
        inv.activate([])
        fleet = [budget_dpu(f"d{i}", f"n{i}") for i in range(4)]
        for d in fleet:
            commit(host, [inv], "ADDED", d)
        commit(host, [inv], "MODIFIED", budget_dpu("d0", "n0", ready=False))
        assert inv.counts(NS, "ds") == (1, 4)
        # Replacing the DPU that is down spends no budget, nor does deleting one already on the template's BFB.
        commit(host, [inv], "MODIFIED", budget_dpu("d0", "n0", ready=False, deleting=True))
        commit(host, [inv], "ADDED", budget_dpu("d9", "n9", bfb="new"))
        commit(host, [inv], "MODIFIED", budget_dpu("d9", "n9", bfb="new", deleting=True))
        assert inv.passed is None and inv.decisions == 0
        commit(host, [inv], "MODIFIED", budget_dpu("d1", "n1", deleting=True))
        assert inv.decisions == 1
        outcomes[max_u] = (inv.passed, inv.detail)
    # d0 and d9 are being deleted: 2 of 5 nodes unavailable when d1 goes; 1 allows 1, 50% of 5 allows 3.
    assert outcomes[1][0] is False
    assert "deleted Ready DPU d1 for an update with 2 of 5 already unavailable (maxUnavailable allows 1)" in outcomes[1][1]
    assert outcomes["50%"] == (None, "")


def random_event(rng: random.Random, host: FakeHost) -> tuple[str, DPU]:
    """One random step of a DPU's life over a few nodes and sets (some DPUs outside the DPUSet's namespace)."""
    ns, name = rng.choice([(NS, f"d{i}") for i in range(10)] + [(NS2, "d1"), (NS2, "x")])
    nodes = [f"n{i}" for i in range(6)]
    cur = host.dpus.get((ns, name))
    if cur is None:
        return "ADDED", budget_dpu(name, rng.choice(nodes), ready=rng.random() < 0.7, bfb=rng.choice(("old", "new")),
                                   dpuset=rng.choice(("ds", "ds", "ds", "other", None)), namespace=ns,
                                   deleting=rng.random() < 0.05)
    up, deleting, owner = ready(cur), cur.metadata.deletion_timestamp is not None, cur.metadata.labels.get(DPUSET_NAME_LABEL)
    node = cur.spec.node_name
    op = rng.random()
    if op < 0.15:
        return "DELETED", cur
    if op < 0.45:
        deleting = True
    elif op < 0.75:
        up = not up
    elif op < 0.9:
        node = rng.choice(nodes)
    else:
        owner = rng.choice(("ds", "other", None))
    return "MODIFIED", budget_dpu(name, node, ready=up, deleting=deleting, bfb=cur.spec.bfb, dpuset=owner, namespace=ns)


def full_counts(host: FakeHost, namespace: str, name: str) -> tuple[int, int]:
    members = [d for d in host.list(DPU, namespace) if d.metadata.labels.get(DPUSET_NAME_LABEL) == name]
    return (sum(1 for d in members if d.metadata.deletion_timestamp is not None or not ready(d)),
            len({d.spec.node_name for d in members}))


def test_rollout_budget_counts_match_a_full_scan_and_it_flags_what_the_scan_flagged() -> None:
    decisions = flagged = 0
    for seed in range(40):
        rng = random.Random(seed)
        host = FakeHost()
        host.sets[(NS, "ds")] = budget_set(rng.choice((1, 2, "25%", "50%", 0)))
        if seed % 2:  # a selector over nodes relabelled as the stream goes
            host.sets[(NS, "ds")].spec.node_selector = LabelSelector(match_labels={"pool": "a"})
            host.node_labels = {f"n{i}": {"pool": rng.choice("aab")} for i in range(6)}
        host.sets[(NS, "other")] = budget_set("34%", name="other")
        scan, counted, late = FullScan(), Recording(), Recording()
        for c in (scan, counted, late):
            c.bind(budget_twin(host))
        scan.activate([])
        counted.activate([])
        checks: list[Recording] = [scan, counted]
        for i in range(120):
            if i == 60:  # activated mid-stream: starts from the store's contents
                late.activate([])
                checks.append(late)
            if host.node_labels and rng.random() < 0.05:
                host.node_labels[f"n{rng.randrange(6)}"] = {"pool": rng.choice("ab")}
            commit(host, checks, *random_event(rng, host))
            for check in checks[1:]:
                for ns in (NS, NS2):
                    for name in ("ds", "other"):
                        assert check.counts(ns, name) == full_counts(host, ns, name), (seed, i, ns, name)
        assert counted.messages == scan.messages, seed
        assert counted.decisions == scan.decisions, seed
        assert late.messages == scan.messages[len(scan.messages) - len(late.messages):], seed
        decisions += scan.decisions
        flagged += len(scan.messages)
    assert decisions > 100 and 10 < flagged < decisions  # both verdicts were exercised
