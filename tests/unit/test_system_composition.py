"""The composition: the cluster managers are their own processes, deployed per the DPFOperatorConfig.

First dpf_core.system's pure answers, then the real operator (dpf_hw.operator) against a MemoryStore behind a
watch shell that, like kopf, hands the store's events to the operator's EventFeed from a thread of its own.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dpf_core import system
from dpf_core.api.meta import KubeObject
from dpf_core.api.operator import DPFOperatorConfig
from dpf_core.api.provisioning import DPUCLUSTER_FINALIZER_CLEAN_UP, DPUCluster
from dpf_core.store import MemoryStore
from dpf_core.store.protocol import WatchEvent

OP_NS = "dpf-operator-system"
KAMAJI = "kamaji-cluster-manager"
STATIC = "static-cluster-manager"


def config(name: str = "dpfoperatorconfig", namespace: str = OP_NS, **spec: Any) -> DPFOperatorConfig:
    return DPFOperatorConfig.new(name, namespace, spec={"provisioningController": {"bfbPVCName": "bfb-pvc"}, **spec})


# --- dpf_core.system ------------------------------------------------------------------------------------


def test_provisioning_manager_has_no_cluster_manager() -> None:
    assert [c.name for c in system.provisioning_controllers()] == ["bfb", "dpuset", "dpu", "dpucluster"]


def test_each_cluster_manager_is_its_own_set_named_after_its_deployment() -> None:
    assert system.CLUSTER_MANAGER_NAMES == (KAMAJI, STATIC)
    assert [c.name for c in system.cluster_manager_controllers(KAMAJI)] == [KAMAJI]
    assert [c.name for c in system.cluster_manager_controllers(STATIC)] == [STATIC]
    with pytest.raises(ValueError, match="unknown cluster manager 'rancher'"):
        system.cluster_manager_controllers("rancher")


def test_host_composition_takes_the_deployed_cluster_managers() -> None:
    everything = [c.name for c in system.host_controllers()]
    assert len(everything) == len(set(everything))
    assert {KAMAJI, STATIC} <= set(everything)
    only_kamaji = [c.name for c in system.host_controllers(cluster_managers=(KAMAJI,))]
    assert KAMAJI in only_kamaji and STATIC not in only_kamaji
    assert set(everything) - set(only_kamaji) == {STATIC}


@pytest.mark.parametrize(
    ("spec", "deployed"),
    [
        ({}, (KAMAJI,)),  # DPF's defaults: Kamaji on, static off unless configured
        ({"kamajiClusterManager": {"disable": False}}, (KAMAJI,)),
        ({"staticClusterManager": {}}, (KAMAJI, STATIC)),
        ({"staticClusterManager": {"disable": True}}, (KAMAJI,)),
        ({"kamajiClusterManager": {"disable": True}, "staticClusterManager": {"disable": False}}, (STATIC,)),
        ({"kamajiClusterManager": {"disable": True}}, ()),
    ],
)
def test_deployed_cluster_managers_follow_the_config(spec: dict[str, Any], deployed: tuple[str, ...]) -> None:
    assert system.deployed_cluster_managers(config(**spec)) == deployed


def test_without_a_config_both_cluster_managers_run() -> None:
    assert system.deployed_cluster_managers(None) == (KAMAJI, STATIC)


def test_only_the_live_singleton_changes_the_deployment() -> None:
    static_on = config(staticClusterManager={})
    assert system.operator_config_change(WatchEvent("ADDED", static_on)) == (KAMAJI, STATIC)
    assert system.operator_config_change(WatchEvent("MODIFIED", config(), static_on)) == (KAMAJI,)
    assert system.operator_config_change(WatchEvent("DELETED", static_on)) is None
    assert system.operator_config_change(WatchEvent("ADDED", config(namespace="elsewhere"))) is None
    assert system.operator_config_change(WatchEvent("ADDED", config(name="another"))) is None
    paused = config(staticClusterManager={}, overrides={"paused": True})
    assert system.operator_config_change(WatchEvent("MODIFIED", paused)) is None
    assert not system.counts_as_operator_config(paused)
    assert system.counts_as_operator_config(config(namespace="elsewhere"), namespace="elsewhere")
    assert system.operator_config_change(WatchEvent("ADDED", DPUCluster.new("c", "ns", spec={
        "type": "static", "version": "v1.30.2", "maxNodes": 1}))) is None


# --- the real operator ------------------------------------------------------------------------------------


class KubeLike:
    """A MemoryStore seen as the operator sees a kube API: no in-process subscription (the watch shell feeds
    events), and a `/version` endpoint for the start-up wait."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        if name == "subscribe":
            raise AttributeError(name)
        return getattr(self._store, name)

    def request(self, method: str, path: str) -> dict[str, str]:
        return {"gitVersion": "v1.30.2"}


class WatchShell:
    """What kopf does for the operator: every change of a watched kind reaches `EventFeed.feed` as a raw
    watch event, on the shell's own thread."""

    def __init__(self, store: MemoryStore, feed: Callable[[type[KubeObject], str, dict[str, Any]], object],
                 kinds: list[type[KubeObject]]) -> None:
        self._events: queue.Queue[WatchEvent | None] = queue.Queue()
        self._feed = feed
        self._unsubscribe = store.subscribe(self._events.put, kinds)
        self._thread = threading.Thread(target=self._run, name="test-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (ev := self._events.get()) is not None:
            self._feed(type(ev.object), ev.type, ev.object.wire())

    def close(self) -> None:
        self._unsubscribe()
        self._events.put(None)
        self._thread.join(5.0)


def wait_for(what: str, check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class World:
    def __init__(self, store: MemoryStore, operator: Any, shell: WatchShell) -> None:
        self.store = store
        self.operator = operator
        self.shell = shell

    def cluster(self, name: str, type_: str) -> DPUCluster:
        return self.store.create(DPUCluster.new(name, name, spec={"type": type_, "version": "v1.30.2", "maxNodes": 4}))

    def finalizers(self, name: str) -> list[str]:
        return list(self.store.get(DPUCluster, name, name).metadata.finalizers)

    def managed(self, name: str) -> bool:
        return DPUCLUSTER_FINALIZER_CLEAN_UP in self.finalizers(name)

    def running(self) -> set[str]:
        return set(self.operator.cluster_managers)

    def apply(self, cfg: DPFOperatorConfig) -> None:
        current = self.store.try_get(DPFOperatorConfig, cfg.name, cfg.namespace)
        if current is None:
            self.store.create(cfg)
            return
        changed = current.deepcopy()
        changed.spec = cfg.spec
        self.store.update(changed)


@pytest.fixture
def start_operator() -> Iterator[Callable[..., World]]:
    pytest.importorskip("kubernetes", reason="dpf_hw.operator needs the kubernetes client (pip install .[hw])")
    from fakes import fake_ports

    from dpf_hw.operator import Operator, OperatorConfig

    worlds: list[World] = []

    def start(store: MemoryStore | None = None, controllers: tuple[str, ...] = ("provisioning",)) -> World:
        store = MemoryStore() if store is None else store
        op = Operator(OperatorConfig(controllers=controllers, metrics_port=None, liveness=None),
                      client=KubeLike(store), ports=fake_ports())  # type: ignore[arg-type]
        shell = WatchShell(store, op.feed.feed, op.watched_kinds())
        op.start()
        world = World(store, op, shell)
        worlds.append(world)
        return world

    yield start
    for w in worlds:
        w.shell.close()
        w.operator.stop()


def test_operator_without_a_config_runs_both_cluster_managers(start_operator: Callable[..., World]) -> None:
    w = start_operator()
    assert w.running() == {KAMAJI, STATIC}
    w.cluster("static-a", "static")
    w.cluster("kamaji-a", "kamaji")
    wait_for("both DPUClusters taken by their manager", lambda: w.managed("static-a") and w.managed("kamaji-a"))
    # Each manager is a process of its own: not in the provisioning manager, with workers of its own.
    assert {c.name for c in w.operator.manager.controllers}.isdisjoint({KAMAJI, STATIC})
    assert {c.name for c in w.operator.metrics.controllers} >= {"dpucluster", KAMAJI, STATIC}


def test_operator_reads_the_config_at_start_static_off_by_default(start_operator: Callable[..., World]) -> None:
    store = MemoryStore()
    store.create(config())
    w = start_operator(store)
    assert w.running() == {KAMAJI}
    w.cluster("static-a", "static")
    w.cluster("kamaji-a", "kamaji")
    wait_for("the Kamaji DPUCluster taken by its manager", lambda: w.managed("kamaji-a"))
    # The provisioning manager's DPUCluster controller saw the static one too; no manager took it.
    wait_for("the provisioning manager to reach the static DPUCluster",
             lambda: w.store.get(DPUCluster, "static-a", "static-a").status.phase is not None)
    assert not w.managed("static-a")


def test_operator_follows_config_changes_without_a_restart(start_operator: Callable[..., World]) -> None:
    store = MemoryStore()
    store.create(config())
    w = start_operator(store)
    w.cluster("static-a", "static")
    wait_for("the provisioning manager to reach the static DPUCluster",
             lambda: w.store.get(DPUCluster, "static-a", "static-a").status.phase is not None)
    assert not w.managed("static-a")

    w.apply(config(staticClusterManager={}))
    wait_for("static-cluster-manager deployed", lambda: w.running() == {KAMAJI, STATIC})
    wait_for("the static DPUCluster taken by the new manager", lambda: w.managed("static-a"))

    w.apply(config(kamajiClusterManager={"disable": True}, staticClusterManager={}))
    wait_for("kamaji-cluster-manager pruned", lambda: w.running() == {STATIC})
    w.cluster("kamaji-b", "kamaji")
    w.cluster("static-b", "static")
    wait_for("the new static DPUCluster taken", lambda: w.managed("static-b"))
    wait_for("the provisioning manager to reach the Kamaji DPUCluster",
             lambda: w.store.get(DPUCluster, "kamaji-b", "kamaji-b").status.phase is not None)
    assert not w.managed("kamaji-b")
    assert KAMAJI not in {c.name for c in w.operator.metrics.controllers}


def test_paused_deleted_and_foreign_configs_change_nothing(start_operator: Callable[..., World]) -> None:
    store = MemoryStore()
    store.create(config(staticClusterManager={}))
    w = start_operator(store)
    assert w.running() == {KAMAJI, STATIC}

    store.create(config(namespace="elsewhere", kamajiClusterManager={"disable": True}))
    w.apply(config(kamajiClusterManager={"disable": True}, overrides={"paused": True}))
    live = w.store.get(DPFOperatorConfig, "dpfoperatorconfig", OP_NS)
    w.store.delete(DPFOperatorConfig, live.name, live.namespace)
    # A later change that does count proves the earlier events were all seen (one deployer, in order).
    w.cluster("static-a", "static")
    wait_for("the static DPUCluster taken", lambda: w.managed("static-a"))
    w.store.create(config(name="another"))
    time.sleep(0.2)
    assert w.running() == {KAMAJI, STATIC}


def test_paused_config_at_start_is_like_none(start_operator: Callable[..., World]) -> None:
    store = MemoryStore()
    store.create(config(kamajiClusterManager={"disable": True}, overrides={"paused": True}))
    w = start_operator(store)
    assert w.running() == {KAMAJI, STATIC}


def test_cluster_managers_are_watched_from_the_start_and_stop_with_the_operator(
    start_operator: Callable[..., World],
) -> None:
    from dpf_core.api.external import TenantControlPlane

    store = MemoryStore()
    store.create(config(kamajiClusterManager={"disable": True}))
    w = start_operator(store)
    assert w.running() == set()
    # Kamaji may be deployed later: its kinds and the config are watched even while nothing runs.
    kinds = w.operator.watched_kinds()
    assert {DPFOperatorConfig, DPUCluster, TenantControlPlane} <= set(kinds)
    w.apply(config(staticClusterManager={}))
    wait_for("both deployed", lambda: w.running() == {KAMAJI, STATIC})
    processes = list(w.operator.cluster_managers.values())
    w.operator.stop()
    assert w.running() == set()
    assert all(not p.driver._threads for p in processes)


def test_dpu_cluster_operator_hosts_no_cluster_manager(start_operator: Callable[..., World]) -> None:
    store = MemoryStore()
    w = start_operator(store, controllers=("dpucluster",))
    assert w.running() == set()
    assert DPFOperatorConfig not in w.operator.watched_kinds()
    store.create(config(staticClusterManager={}))
    time.sleep(0.1)
    assert w.running() == set()
