"""The always-on `noObjectLost` invariant, driven by hand-made watch events: each of its three rules fails on
exactly the history that breaks it, and a clean life (create, edit, delete through finalizers, recreate)
passes."""

from __future__ import annotations

from typing import cast

from dpf_core.api.external import ConfigMap
from dpf_core.api.provisioning import DPU, DPUSET_NAME_LABEL, DPUSET_NAMESPACE_LABEL
from dpf_core.store.memory import MemoryStore
from dpf_core.store.protocol import WatchEvent
from dpf_sim.chaos import NoObjectLost
from dpf_sim.scenario import InvariantSpec
from dpf_sim.twin import Twin

NS = "dpf-operator-system"


class _Log:
    def recent(self, n: int) -> list[str]:
        return ["0.000 host ADDED ConfigMap"][:n]


class _Twin:
    """What the check reads from a twin: its stores (empty at activation), the time and the log's tail."""

    now = 12.0
    log = _Log()

    def stores(self) -> dict[str, MemoryStore]:
        return {"host": MemoryStore(name="host")}


def _check() -> NoObjectLost:
    check = NoObjectLost(InvariantSpec(name="lost", type="noObjectLost"))
    check.twin = cast(Twin, _Twin())
    check.activate([])
    return check


def _cm(name: str, uid: str, finalizers: list[str] | None = None) -> ConfigMap:
    cm = ConfigMap.new(name, NS)
    cm.metadata.uid = uid
    cm.metadata.finalizers = finalizers or []
    return cm


def _dpu(name: str, node: str, uid: str = "", dpuset: str = "dpuset") -> DPU:
    dpu = DPU.new(name, NS, spec={"nodeName": node, "bfb": "bf-bundle"})
    dpu.metadata.uid = uid or f"uid-{name}"
    dpu.metadata.labels = {DPUSET_NAME_LABEL: dpuset, DPUSET_NAMESPACE_LABEL: NS}
    return dpu


def test_a_clean_life_holds() -> None:
    c = _check()
    a = _cm("a", "u1", ["f"])
    c.on_event("host", WatchEvent("ADDED", a))
    c.on_event("host", WatchEvent("MODIFIED", a, a))
    gone = _cm("a", "u1", [])
    c.on_event("host", WatchEvent("DELETED", gone, a))  # the finalizer was removed first
    c.on_event("host", WatchEvent("ADDED", _cm("a", "u2")))  # a new object under the old name
    c.on_event("dpu-cplane-tenant1/dpu-cplane-tenant1", WatchEvent("ADDED", _cm("a", "u3")))  # another store
    c.finish()
    assert c.passed is True and c.events == 5


def test_a_name_created_twice_without_a_delete_fails() -> None:
    c = _check()
    c.on_event("host", WatchEvent("ADDED", _cm("a", "u1")))
    c.on_event("host", WatchEvent("ADDED", _cm("a", "u2")))
    assert c.passed is False
    assert "created twice" in c.detail and c.offending == [f"ConfigMap {NS}/a"]


def test_an_object_vanishing_with_finalizers_fails() -> None:
    c = _check()
    held = _cm("a", "u1", ["dpu.nvidia.com/finalizer"])
    c.on_event("host", WatchEvent("ADDED", held))
    c.on_event("host", WatchEvent("DELETED", held, held))
    assert c.passed is False and "vanished while it still had finalizers" in c.detail
    assert "dpu.nvidia.com/finalizer" in c.offending[0]


def test_two_live_dpus_of_one_dpuset_on_one_node_fail() -> None:
    c = _check()
    c.on_event("host", WatchEvent("ADDED", _dpu("d1", "worker-1")))
    c.on_event("host", WatchEvent("ADDED", _dpu("d2", "worker-2")))
    # d1 deleted, then its replacement on the same node: never two at once.
    c.on_event("host", WatchEvent("DELETED", _dpu("d1", "worker-1")))
    c.on_event("host", WatchEvent("ADDED", _dpu("d1b", "worker-1")))
    # Another DPUSet may have a DPU on the same node.
    c.on_event("host", WatchEvent("ADDED", _dpu("o1", "worker-1", dpuset="other")))
    assert c.passed is None
    c.on_event("host", WatchEvent("ADDED", _dpu("d3", "worker-2")))
    assert c.passed is False
    assert c.detail.startswith("violated at t=12.0s: DPUSet") and "has 2 live DPUs on node worker-2" in c.detail
    assert c.offending == [f"{NS}/d2", f"{NS}/d3"]


def test_a_dpu_moving_off_a_node_frees_it() -> None:
    c = _check()
    c.on_event("host", WatchEvent("ADDED", _dpu("d1", "worker-1")))
    moved = _dpu("d1", "worker-1")
    moved.spec.node_name = "worker-9"  # nodeName is immutable in the API; the check must still follow it
    c.on_event("host", WatchEvent("MODIFIED", moved))
    c.on_event("host", WatchEvent("ADDED", _dpu("d2", "worker-1")))
    terminating = _dpu("d2", "worker-1")
    terminating.metadata.deletion_timestamp = "2025-01-01T00:00:00Z"
    c.on_event("host", WatchEvent("MODIFIED", terminating))  # a terminating DPU no longer counts
    c.on_event("host", WatchEvent("ADDED", _dpu("d3", "worker-1")))
    c.finish()
    assert c.passed is True
    assert c.by_node[((NS, "dpuset"), "worker-1")] == [(NS, "d3")]
