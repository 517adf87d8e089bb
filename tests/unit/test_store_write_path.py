"""The store's write path after its per-write costs were cut: the fast copies give what pydantic's copies
give, share_copy decides exactly as before, and the store's contract (private snapshots, untouched caller
arguments, resourceVersion/generation, event order to listeners) holds."""

from __future__ import annotations

import copy
import gc
from typing import Any

import pytest
from pydantic import BaseModel

from dpf_core.api import conditions as cond
from dpf_core.api import registry
from dpf_core.api.external import Pod, PodStatus
from dpf_core.api.meta import Condition, Model, ObjectMeta, shallow_copy, share_copy
from dpf_core.api.provisioning import DPU, DPUPhase, DPUStatus
from dpf_core.store import compact as compact_mod
from dpf_core.store.compact import SharedFieldsSet, compact
from dpf_core.store.memory import MemoryStore
from dpf_core.store.protocol import WatchEvent

registry.load_all()

_ATOMS = (str, int, float, bool, type(None))


# ---- the reference share_copy: the algorithm as it was before the single-pass rewrite -------------------


def _ref_fresh(v: Any, old: Any) -> bool:
    if isinstance(v, BaseModel) and type(old) is type(v):
        od = old.__dict__
        for k, x in v.__dict__.items():
            if isinstance(x, _ATOMS):
                continue
            o = od.get(k)
            if x is o or (isinstance(x, list) and isinstance(o, list) and not _ref_fresh(x, o)):
                return False
        return True
    if isinstance(v, list) and isinstance(old, list):
        ids = {id(x) for x in old}
        return not any(id(x) in ids for x in v)
    return True


def _ref_share_copy(new: Any, old: Any) -> Any:
    if new is old or isinstance(new, _ATOMS):
        return new
    if isinstance(new, BaseModel):
        if _ref_fresh(new, old):
            return new.clone() if isinstance(new, Model) else new.model_copy(deep=True)
        od = old.__dict__
        out = type(new).__new__(type(new))
        object.__setattr__(out, "__dict__", {k: _ref_share_copy(x, od.get(k)) for k, x in new.__dict__.items()})
        object.__setattr__(out, "__pydantic_fields_set__", set(new.__pydantic_fields_set__))
        extra = new.__pydantic_extra__
        object.__setattr__(out, "__pydantic_extra__", None if extra is None else copy.deepcopy(extra))
        object.__setattr__(out, "__pydantic_private__", None)
        return out
    if isinstance(new, list):
        shared = {id(x) for x in old} if isinstance(old, list) else set()
        return [x if id(x) in shared else _ref_share_copy(x, None) for x in new]
    if isinstance(new, dict):
        src = old if isinstance(old, dict) else {}
        return {k: _ref_share_copy(x, src.get(k)) for k, x in new.items()}
    return copy.deepcopy(new)


def _shape(out: Any, old: Any, new: Any) -> Any:
    """What a copy is made of, part by part: shared with `old`, the writer's own object (a leak), or a copy
    (with its type, fields set and extra), so two copies can be compared for every decision share_copy made."""
    if isinstance(out, _ATOMS):
        return ("atom", type(out), out)
    tag = "old" if out is old else "new!" if out is new else "copy"
    if isinstance(out, BaseModel):
        od = old.__dict__ if type(old) is type(out) else {}
        nd = new.__dict__ if type(new) is type(out) else {}
        return (tag, type(out), sorted(out.__pydantic_fields_set__), out.__pydantic_extra__,
                {k: _shape(v, od.get(k), nd.get(k)) for k, v in out.__dict__.items()})
    if isinstance(out, list):
        olds = {id(x): x for x in old} if isinstance(old, list) else {}
        news = new if isinstance(new, list) and len(new) == len(out) else [None] * len(out)
        return (tag, [_shape(x, olds.get(id(x)), n) for x, n in zip(out, news, strict=True)])
    if isinstance(out, dict):
        src = old if isinstance(old, dict) else {}
        nsrc = new if isinstance(new, dict) else {}
        return (tag, {k: _shape(v, src.get(k), nsrc.get(k)) for k, v in out.items()})
    return (tag, type(out), out)


def _dpu_status(n: int) -> DPUStatus:
    d = DPU.new("d", "ns", spec={"nodeName": "n1", "bfb": "bf", "cluster": {"name": "c", "namespace": "c"}})
    for i in range(n):
        cond.set_condition(d.status.conditions, f"T{i}", "True", "R", "m", "t0")
    return d.status


def _pod() -> Pod:
    return Pod.model_validate({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"containers": [{"name": "c", "image": "i", "env": [{"name": "A", "value": "1"}]}],
                 "tolerations": [{"key": "k", "operator": "Exists"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}], "hostIP": "10.0.0.1"},
    })


def _cases() -> list[tuple[str, Any, Any]]:
    old = _dpu_status(4)
    cow = old.model_copy(update={"conditions": list(old.conditions)})
    cond.set_condition(cow.conditions, "T1", "False", "Err", "boom", "t1", copy_on_write=True)
    phase_only = old.model_copy(update={"phase": DPUPhase.READY})
    appended = old.model_copy(update={"conditions": [*old.conditions, Condition(type="X", status="True", reason="R",
                                                                                last_transition_time="t")]})
    fresh = old.clone()
    # Set-but-None fields: a clone (dump + validate) leaves them unset, a walk would keep them set.
    explicit = DPUStatus(phase=DPUPhase.READY, bfb_version=None, conditions=[c.clone() for c in old.conditions])
    other_type = Condition(type="T0", status="True", reason="R", last_transition_time="t0")
    pod = _pod()
    pod_status = pod.status.model_copy(update={"conditions": list(pod.status.conditions), "phase": "Succeeded"})
    pod_spec = pod.spec.model_copy(update={"containers": [pod.spec.containers[0].clone()]})
    validated = PodStatus.model_validate({**pod.status.wire(), "phase": "Failed"})
    return [
        ("copy-on-write condition", cow, old),
        ("phase only, conditions list shared", phase_only, old),
        ("appended condition", appended, old),
        ("nothing shared", fresh, old),
        ("no old", fresh, None),
        ("nothing shared, None set explicitly", explicit, old),
        ("old of another type", fresh, other_type),
        ("open model status, conditions shared", pod_status, pod.status),
        ("open model spec, a container cloned", pod_spec, pod.spec),
        ("freshly validated status", validated, pod.status),
        ("the snapshot itself", old, old),
        ("a list", list(cow.conditions), old.conditions),
        ("a dict", {"a": cow, "b": old}, {"a": old, "b": old}),
    ]


@pytest.mark.parametrize(("name", "new", "old"), _cases(), ids=[c[0] for c in _cases()])
def test_share_copy_decides_as_the_reference(name: str, new: Any, old: Any) -> None:
    out, ref = share_copy(new, old), _ref_share_copy(new, old)
    assert out == ref
    assert _shape(out, old, new) == _shape(ref, old, new)
    assert "'new!'" not in repr(_shape(out, old, new)) or new is old  # nothing of the writer's is kept


# ---- shallow_copy is model_copy ------------------------------------------------------------------------------


def _same_copy(a: BaseModel, b: BaseModel, src: BaseModel) -> None:
    assert type(a) is type(b)
    assert a.__dict__ == b.__dict__ and all(a.__dict__[k] is b.__dict__[k] for k in a.__dict__)
    assert a.__pydantic_fields_set__ == b.__pydantic_fields_set__ and type(b.__pydantic_fields_set__) is set
    assert b.__pydantic_fields_set__ is not src.__pydantic_fields_set__
    assert a.__pydantic_extra__ == b.__pydantic_extra__ and a.__pydantic_private__ == b.__pydantic_private__
    if src.__pydantic_extra__ is not None:
        assert b.__pydantic_extra__ is not src.__pydantic_extra__


@pytest.mark.parametrize("update", [None, {}, {"metadata": ObjectMeta(name="x")}, {"status": None, "kind": "Pod"}])
def test_shallow_copy_is_model_copy(update: dict[str, Any] | None) -> None:
    pod = _pod()
    pod.__pydantic_extra__ = {"unknownField": {"a": 1}}
    _same_copy(pod.model_copy(update=update), shallow_copy(pod, update), pod)
    meta = pod.metadata
    _same_copy(meta.model_copy(update=update and {"name": "y"}), shallow_copy(meta, update and {"name": "y"}), meta)


def test_shallow_copy_of_a_compacted_snapshot_owns_a_plain_fields_set() -> None:
    d = DPU.new("d", "ns", spec={"nodeName": "n1", "bfb": "bf", "cluster": {"name": "c", "namespace": "c"}})
    compact(d)
    assert type(d.__pydantic_fields_set__) is SharedFieldsSet
    c = shallow_copy(d, {"status": DPUStatus.model_validate({})})
    assert type(c.__pydantic_fields_set__) is set and "status" in c.__pydantic_fields_set__
    c.__pydantic_fields_set__.add("spec")
    assert c.__pydantic_fields_set__ is not d.__pydantic_fields_set__


def test_shallow_copy_sends_unknown_keys_to_model_copy() -> None:
    pod = _pod()
    out = shallow_copy(pod, {"notAField": 1})
    assert out.__pydantic_extra__ == {"notAField": 1} and pod.__pydantic_extra__ in ({}, None)


# ---- the store's contract on the cheaper paths ---------------------------------------------------------------


def _new_dpu(name: str) -> DPU:
    return DPU.new(name, "ns", spec={"nodeName": "n1", "bfb": "bf", "cluster": {"name": "c", "namespace": "c"}})


def test_creates_never_share_a_status_with_each_other_or_keep_the_callers_object() -> None:
    store = MemoryStore(lambda: 0.0)
    mine = _new_dpu("a")
    mine.status.phase = DPUPhase.READY  # dropped: status is a subresource
    a = store.create(mine)
    b = store.create(_new_dpu("b"))
    assert a.status is not b.status and a.status == b.status == DPUStatus.model_validate({})
    assert a.status.phase == DPUPhase.INITIALIZING and mine.status.phase == DPUPhase.READY
    assert mine.metadata.resource_version is None and mine.metadata.uid is None
    assert a.metadata is not mine.metadata and a.spec is not mine.spec
    # A third create after the first two were written to still starts from the default.
    s = a.status.model_copy(update={"phase": DPUPhase.ERROR})
    store.update_status(a.with_status(s))
    assert store.create(_new_dpu("c")).status == DPUStatus.model_validate({})


def test_status_write_commits_a_new_snapshot_and_leaves_the_old_one_untouched() -> None:
    store = MemoryStore(lambda: 0.0)
    before = store.create(_new_dpu("a"))
    s = before.status.model_copy(update={"conditions": list(before.status.conditions)})
    cond.set_condition(s.conditions, "Ready", "True", "R", "m", "t1", copy_on_write=True)
    after = store.update_status(before.with_status(s))
    assert int(after.metadata.resource_version or 0) == int(before.metadata.resource_version or 0) + 1
    assert after.metadata.generation == before.metadata.generation == 1
    assert before.status.conditions == [] and before.metadata.resource_version == "1"
    assert after.spec is before.spec and after.status is not s and after.status.conditions[0] is not s.conditions[0]
    assert "resource_version" in after.metadata.__pydantic_fields_set__
    # The same status again (or the very object) is no write: same snapshot, no new resourceVersion.
    assert store.update_status(after.with_status(after.status)) is after
    assert store.update_status(after.with_status(after.status.clone())) is after
    assert store.current_resource_version() == after.metadata.resource_version


def test_update_with_the_spec_of_the_snapshot_or_an_equal_one_keeps_the_generation() -> None:
    store = MemoryStore(lambda: 0.0)
    v1 = store.create(_new_dpu("a"))
    shared = v1.model_copy(update={"metadata": v1.metadata.model_copy(update={"labels": {"x": "1"}})})
    v2 = store.update(shared)
    assert v2.metadata.generation == 1 and v2.metadata.labels == {"x": "1"}
    equal = v2.deepcopy()
    equal.metadata.labels["x"] = "2"
    v3 = store.update(equal)
    assert v3.metadata.generation == 1
    changed = v3.deepcopy()
    changed.spec.bfb = "other"
    assert store.update(changed).metadata.generation == 2
    assert v1.metadata.labels == {} and v2.metadata.labels == {"x": "1"}


def test_listener_routes_follow_subscriptions_made_during_delivery() -> None:
    store = MemoryStore(lambda: 0.0)
    seen: dict[str, list[tuple[str, str]]] = {"all": [], "dpus": [], "late": []}

    def note(who: str) -> Any:
        return lambda ev: seen[who].append((ev.type, ev.object.kind + "/" + ev.object.name))

    unsub_dpus = store.subscribe(note("dpus"), [DPU])

    def first(ev: WatchEvent) -> None:
        note("all")(ev)
        if ev.object.name == "a" and ev.type == "ADDED":
            unsub_dpus()  # this event still reaches it (it was subscribed when delivery began), later ones not
            store.subscribe(note("late"))
            store.create(_new_dpu("b"))  # queued behind the current event

    store.subscribe(first)
    store.create(_new_dpu("a"))
    store.create(_pod())
    assert seen["all"] == [("ADDED", "DPU/a"), ("ADDED", "DPU/b"), ("ADDED", "Pod/p")]
    assert seen["dpus"] == [("ADDED", "DPU/a")]
    assert seen["late"] == [("ADDED", "DPU/b"), ("ADDED", "Pod/p")]


def test_kind_filtered_listeners_get_only_their_kinds_in_commit_order() -> None:
    store = MemoryStore(lambda: 0.0)
    got: list[str] = []
    store.subscribe(lambda ev: got.append(f"{ev.type} {ev.object.name}"), [Pod])
    store.create(_new_dpu("a"))
    p = store.create(_pod())
    store.update_status(p.with_status(p.status.model_copy(update={"phase": "Succeeded"})))
    store.delete(Pod, "p", "ns")
    assert got == ["ADDED p", "MODIFIED p", "DELETED p"]


def test_a_dead_canonical_entry_is_not_found_and_is_replaced() -> None:
    def leaf() -> Condition:
        return Condition(type="Dead", status="True", reason="Gone", last_transition_time="t-dead")

    a = _dpu_status(0)
    a.conditions.append(leaf())
    holder = DPU.new("x", "ns", spec={"nodeName": "n1", "bfb": "bf", "cluster": {"name": "c", "namespace": "c"}})
    holder.status = a
    compact(holder)
    first = holder.status.conditions[0]
    del holder, a
    del first
    gc.collect()
    b = DPU.new("y", "ns", spec={"nodeName": "n1", "bfb": "bf", "cluster": {"name": "c", "namespace": "c"}})
    b.status.conditions.append(leaf())
    mine = b.status.conditions[0]
    compact(b)
    assert b.status.conditions[0] is mine  # nothing alive to share: it became the canonical one
    c = DPU.new("z", "ns", spec={"nodeName": "n1", "bfb": "bf", "cluster": {"name": "c", "namespace": "c"}})
    c.status.conditions.append(leaf())
    compact(c)
    assert c.status.conditions[0] is mine
    assert compact_mod._CANON_REFS is vars(compact_mod._CANON)["data"]
