"""The service-chain controllers' cheap write paths: `editable`/`with_metadata` copies that share what a pass
does not edit with the store's read-only snapshot, `write` persisting finalizers, labels and status without
copying the object again, and the set memo treating labels other writers add as no drift."""

from __future__ import annotations

from typing import Any

import pytest
from test_sets import NS, World, vf_set

from dpf_core.api.conditions import set_condition
from dpf_core.api.svc import ServiceInterface
from dpf_core.controllers import mirror
from dpf_core.runtime import ManualClock
from dpf_core.store import MemoryStore


class _Ctx:
    def __init__(self, store: MemoryStore) -> None:
        self.client = store


def _stored(store: MemoryStore) -> ServiceInterface:
    si = ServiceInterface.new(
        "p0-n1", NS, metadata={"name": "p0-n1", "namespace": NS, "labels": {"uplink": "p0"}},
        spec={"node": "n1", "interfaceType": "physical", "physical": {"interfaceName": "p0"}},
    )
    return store.create(si)


@pytest.fixture
def store() -> MemoryStore:
    store = MemoryStore(clock=ManualClock().now, detect_mutation=True)
    return store


def test_editable_owns_finalizers_labels_and_status_and_shares_spec(store: MemoryStore) -> None:
    snap = _stored(store)
    new = mirror.editable(snap)
    assert new.spec is snap.spec  # unedited: shared with the snapshot
    new.metadata.finalizers.append("f")
    new.metadata.labels["x"] = "y"
    set_condition(new.status.conditions, "Ready", "True", "Success", "", "2025-01-01T00:00:00Z", 1)
    again = store.get(ServiceInterface, "p0-n1", NS)
    assert again is snap
    assert (snap.metadata.finalizers, snap.metadata.labels, snap.status.conditions) == ([], {"uplink": "p0"}, [])


def test_write_persists_metadata_then_status_and_leaves_the_snapshot_alone(store: MemoryStore) -> None:
    snap = _stored(store)
    events: list[str] = []
    store.subscribe(lambda ev: events.append(ev.type), [ServiceInterface])
    new = mirror.editable(snap)
    new.metadata.finalizers.append("svc.dpu.nvidia.com/ServiceInterface-finalizer")
    new.metadata.labels["svc.dpu.nvidia.com/service-chain"] = "c1"
    set_condition(new.status.conditions, "Ready", "True", "Success", "", "2025-01-01T00:00:00Z", 1)
    out = mirror.write(_Ctx(store), snap, new)  # type: ignore[arg-type]
    current = store.get(ServiceInterface, "p0-n1", NS)
    assert out is current
    assert current.metadata.finalizers == ["svc.dpu.nvidia.com/ServiceInterface-finalizer"]
    assert current.metadata.labels == {"uplink": "p0", "svc.dpu.nvidia.com/service-chain": "c1"}
    assert [(c.type, c.status) for c in current.status.conditions] == [("Ready", "True")]
    assert events == ["MODIFIED", "MODIFIED"]  # one metadata write, one status write
    assert snap.metadata.finalizers == [] and snap.status.conditions == []
    # The store kept its own copy of the status: editing the pass's object afterwards changes nothing stored.
    new.status.conditions.clear()
    assert store.get(ServiceInterface, "p0-n1", NS).status.conditions


def test_write_with_nothing_changed_writes_nothing(store: MemoryStore) -> None:
    snap = _stored(store)
    events: list[str] = []
    store.subscribe(lambda ev: events.append(ev.type), [ServiceInterface])
    assert mirror.write(_Ctx(store), snap, mirror.editable(snap)) is snap  # type: ignore[arg-type]
    assert events == []


def test_with_metadata_update_keeps_the_snapshot(store: MemoryStore) -> None:
    snap = _stored(store)
    store.update(mirror.with_metadata(snap, labels={**snap.metadata.labels, "a": "b"}))
    assert snap.metadata.labels == {"uplink": "p0"}
    assert store.get(ServiceInterface, "p0-n1", NS).metadata.labels == {"uplink": "p0", "a": "b"}


def _counting_apply(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    applied: list[str] = []
    real = mirror.apply

    def spy(client: Any, desired: Any) -> Any:
        applied.append(desired.name)
        return real(client, desired)

    monkeypatch.setattr(mirror, "apply", spy)
    return applied


def _set_world() -> World:
    w = World({"n1": {"role": "dpu"}, "n2": {"role": "dpu"}})
    w.store.create(vf_set())
    w.run()
    return w


def test_a_label_another_writer_adds_to_a_child_brings_no_reapply(monkeypatch: pytest.MonkeyPatch) -> None:
    w = _set_world()
    applied = _counting_apply(monkeypatch)
    child = w.store.get(ServiceInterface, "vf1-n1", NS)
    # What the SFC agent does to every ServiceInterface of a chain.
    w.store.update(mirror.with_metadata(child, labels={**child.metadata.labels, "svc.dpu.nvidia.com/service-chain": "c"}))
    w.run()
    assert applied == []
    assert w.store.get(ServiceInterface, "vf1-n1", NS).metadata.labels["svc.dpu.nvidia.com/service-chain"] == "c"


def test_a_wanted_label_changed_by_another_writer_is_reapplied(monkeypatch: pytest.MonkeyPatch) -> None:
    w = _set_world()
    applied = _counting_apply(monkeypatch)
    child = w.store.get(ServiceInterface, "vf1-n1", NS)
    w.store.update(mirror.with_metadata(child, labels={**child.metadata.labels, "port": "other", "extra": "1"}))
    w.run()
    assert applied == ["vf1-n1"]
    labels = w.store.get(ServiceInterface, "vf1-n1", NS).metadata.labels
    assert (labels["port"], labels["extra"]) == ("vf1", "1")


def test_a_wanted_annotation_removed_is_reapplied_and_a_foreign_one_is_not(monkeypatch: pytest.MonkeyPatch) -> None:
    w = _set_world()
    applied = _counting_apply(monkeypatch)
    child = w.store.get(ServiceInterface, "vf1-n2", NS)
    w.store.update(mirror.with_metadata(child, annotations={**child.metadata.annotations, "note": "x"}))
    w.run()
    assert applied == []
    child = w.store.get(ServiceInterface, "vf1-n2", NS)
    w.store.update(mirror.with_metadata(child, annotations={"note": "x"}))
    w.run()
    assert applied == ["vf1-n2"]
    assert w.store.get(ServiceInterface, "vf1-n2", NS).metadata.annotations == {"note": "x", "from": "set"}
