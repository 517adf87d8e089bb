"""The set controllers' memo of children found equal to what the set wants (`SetReconciler._applied`): a pass
skips only children whose set inputs and compared fields did not change, so every way a child or its set
can drift still brings the child back, and a quiet pass writes nothing."""

from __future__ import annotations

from typing import Any

from test_sets import NS, World, vf_set

from dpf_core.api.svc import ServiceInterface, ServiceInterfaceSet
from dpf_core.controllers import serviceinterfaceset


def _world() -> World:
    w = World({"n1": {"role": "dpu"}, "n2": {"role": "dpu"}})
    w.store.create(vf_set())
    w.run()
    assert sorted(w.children(ServiceInterface)) == ["vf1-n1", "vf1-n2"]
    return w


def _kick(w: World) -> None:
    """A child event that changes nothing the set applies: a status write, which re-queues the set."""
    w.mark_ready(ServiceInterface, "vf1-n2")
    w.run()


def _child(w: World, name: str = "vf1-n1") -> Any:
    return w.store.get(ServiceInterface, name, NS)


def _set_reconciler(w: World) -> serviceinterfaceset.ServiceInterfaceSetReconciler:
    r = w.mgr.controller(serviceinterfaceset.NAME).reconciler
    assert isinstance(r, serviceinterfaceset.ServiceInterfaceSetReconciler)
    return r


def test_a_quiet_pass_rewrites_no_child() -> None:
    w = _world()
    before = {n: c.metadata.resource_version for n, c in w.children(ServiceInterface).items()}
    _kick(w)
    after = {n: c.metadata.resource_version for n, c in w.children(ServiceInterface).items()}
    assert after["vf1-n1"] == before["vf1-n1"]
    assert set(_set_reconciler(w)._applied[(NS, "vf1")]) == {"n1", "n2"}


def test_a_child_spec_edited_by_someone_else_is_restored() -> None:
    w = _world()
    edited = _child(w).deepcopy()
    edited.spec.vf.vf_id = 9
    w.store.update(edited)
    _kick(w)
    assert _child(w).spec.vf.vf_id == 3


def test_a_removed_label_annotation_or_owner_reference_is_restored() -> None:
    w = _world()
    edited = _child(w).deepcopy()
    edited.metadata.labels.pop("port")
    edited.metadata.annotations.pop("from")
    edited.metadata.owner_references = []
    w.store.update(edited)
    _kick(w)
    child = _child(w)
    assert child.metadata.labels["port"] == "vf1"
    assert child.metadata.annotations["from"] == "set"
    assert [r.name for r in child.metadata.owner_references] == ["vf1"]


def test_a_deleted_and_recreated_child_is_brought_back_to_the_set() -> None:
    w = _world()
    stranger = _child(w).deepcopy()
    w.store.delete(ServiceInterface, "vf1-n1", NS)
    # Someone else's object of the same name, same metadata and generation (1), another spec: only its uid
    # tells it from the child the memo holds.
    stranger.metadata.resource_version = None
    stranger.metadata.uid = None
    stranger.spec.vf.vf_id = 9
    created = w.store.create(stranger)
    assert created.metadata.generation == 1
    _kick(w)
    assert _child(w).spec.vf.vf_id == 3


def test_set_spec_and_annotation_changes_reach_every_child() -> None:
    w = _world()
    s = w.store.get(ServiceInterfaceSet, "vf1", NS).deepcopy()
    s.spec.template.spec.vf.vf_id = 5
    w.store.update(s)
    w.run()
    assert {c.spec.vf.vf_id for c in w.children(ServiceInterface).values()} == {5}
    s = w.store.get(ServiceInterfaceSet, "vf1", NS).deepcopy()
    s.metadata.annotations["from"] = "set-v2"
    w.store.update(s)
    w.run()
    assert {c.metadata.annotations["from"] for c in w.children(ServiceInterface).values()} == {"set-v2"}


def test_a_deleted_set_forgets_its_children() -> None:
    w = _world()
    w.store.delete(ServiceInterfaceSet, "vf1", NS)
    w.run()
    assert (NS, "vf1") not in _set_reconciler(w)._applied
    assert w.children(ServiceInterface) == {}
