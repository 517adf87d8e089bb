"""store.compact: committed snapshots share their fields sets, and no copy or edit can leak through the sharing."""

from __future__ import annotations

import copy
import pickle
import typing
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from dpf_core.api import conditions as cond
from dpf_core.api import registry
from dpf_core.api.external import Pod
from dpf_core.api.meta import Condition, Model
from dpf_core.api.provisioning import DPU, DPUStatus
from dpf_core.store.compact import SharedFieldsSet, compact
from dpf_core.store.memory import MemoryStore


def _dpu(name: str, **spec: Any) -> DPU:
    d = DPU.new(name, "dpf", spec={"nodeName": "n1", "bfb": "bf", "cluster": {"name": "c", "namespace": "c"}, **spec})
    for i in range(3):
        cond.set_condition(d.status.conditions, f"T{i}", "True", "R", "m", "t0")
    return d


def _pod(name: str) -> Pod:
    return Pod.model_validate(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "dpf", "labels": {"app": "dms"}},
            "spec": {
                "nodeName": "n1",
                "containers": [{"name": "c", "image": "dms:1", "env": [{"name": "A", "value": "1"}]}],
                "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
            },
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
        }
    )


def _models(m: Any) -> Iterator[BaseModel]:
    if isinstance(m, BaseModel):
        yield m
        for v in m.__dict__.values():
            yield from _models(v)
    elif isinstance(m, list | tuple):
        for v in m:
            yield from _models(v)
    elif isinstance(m, dict):
        for v in m.values():
            yield from _models(v)


def _sets(m: BaseModel) -> list[set[str]]:
    return [x.__pydantic_fields_set__ for x in _models(m)]


def _frozen_sets(m: BaseModel) -> list[frozenset[str]]:
    return [frozenset(s) for s in _sets(m)]


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore(lambda: 0.0)


def _stored_dpu(store: MemoryStore, name: str) -> DPU:
    """Created, then its conditions written through the status subresource (create drops status)."""
    created = store.create(_dpu(name))
    return store.update_status(created.with_status(_dpu(name).status))


def test_stored_objects_share_one_set_per_distinct_field_names(store: MemoryStore) -> None:
    a = _stored_dpu(store, "a")
    b = _stored_dpu(store, "b")
    assert len(a.status.conditions) == 3
    assert all(type(s) is SharedFieldsSet for s in _sets(a) + _sets(b))
    assert a.metadata.__pydantic_fields_set__ is b.metadata.__pydantic_fields_set__
    assert a.status.conditions[0].__pydantic_fields_set__ is b.status.conditions[2].__pydantic_fields_set__
    # Different names stay different sets: the spec is not the metadata's set.
    assert a.spec.__pydantic_fields_set__ != a.metadata.__pydantic_fields_set__


def test_open_models_and_pods_are_compacted_too(store: MemoryStore) -> None:
    p = store.create(_pod("p1"))
    q = store.create(_pod("p2"))
    assert all(type(s) is SharedFieldsSet for s in _sets(p))
    assert p.spec.tolerations[0].__pydantic_fields_set__ is q.spec.tolerations[0].__pydantic_fields_set__
    assert p.spec.containers[0].__pydantic_fields_set__ is q.spec.containers[0].__pydantic_fields_set__


def test_exclude_unset_dumps_do_not_change() -> None:
    # Two instances of one class with different explicitly-set fields must keep their own answers.
    explicit = Condition.model_validate(
        {"type": "A", "status": "True", "lastTransitionTime": "t", "reason": "r", "message": ""}
    )
    implicit = Condition.model_validate({"type": "A", "status": "True", "lastTransitionTime": "t", "reason": "r"})
    dpu = _dpu("a")
    pod = _pod("p")
    objs: list[BaseModel] = [explicit, implicit, dpu, pod]
    before = [o.model_dump(exclude_unset=True) for o in objs]
    json_before = [o.model_dump_json(exclude_unset=True, by_alias=True) for o in objs]
    for o in objs:
        compact(o)
    assert [o.model_dump(exclude_unset=True) for o in objs] == before
    assert [o.model_dump_json(exclude_unset=True, by_alias=True) for o in objs] == json_before
    assert "message" in before[0] and "message" not in before[1]
    assert explicit.__pydantic_fields_set__ is not implicit.__pydantic_fields_set__


def test_exclude_unset_of_a_stored_object_is_what_it_was_before_sharing(store: MemoryStore) -> None:
    stored = _stored_dpu(store, "a")
    unshared = stored.model_copy(deep=True)  # plain sets, same names
    assert all(type(s) is set for s in _sets(unshared))
    assert stored.model_dump(exclude_unset=True) == unshared.model_dump(exclude_unset=True)


@pytest.mark.parametrize(
    "make_copy",
    [
        pytest.param(lambda o: o.deepcopy(), id="deepcopy"),
        pytest.param(lambda o: o.clone(), id="clone"),
        pytest.param(lambda o: o.model_copy(), id="model_copy"),
        pytest.param(lambda o: o.model_copy(deep=True), id="model_copy_deep"),
        pytest.param(lambda o: o.model_copy(update={"kind": "DPU"}), id="model_copy_update"),
        pytest.param(lambda o: o.model_copy(update={"kind": "DPU"}, deep=True), id="model_copy_update_deep"),
        pytest.param(copy.copy, id="copy.copy"),
        pytest.param(copy.deepcopy, id="copy.deepcopy"),
        pytest.param(lambda o: pickle.loads(pickle.dumps(o)), id="pickle"),
    ],
)
def test_a_copy_of_a_stored_object_owns_its_sets(store: MemoryStore, make_copy: Any) -> None:
    stored = _stored_dpu(store, "a")
    sibling = _stored_dpu(store, "b")
    snap_sets, sib_sets = _frozen_sets(stored), _frozen_sets(sibling)
    wire = stored.wire()
    mine = make_copy(stored)
    assert type(mine.__pydantic_fields_set__) is set
    # Edit the copy's own top-level and a nested part it owns (a shallow copy owns only its top level).
    mine.api_version = mine.api_version
    mine.__pydantic_fields_set__.discard("api_version")
    mine.__pydantic_fields_set__.add("api_version")
    mine.__pydantic_fields_set__.add("an-extra-name")
    if mine.status is not stored.status:
        assert type(mine.status.__pydantic_fields_set__) is set
        mine.status.phase = "Error"
        mine.status.__pydantic_fields_set__.add("an-extra-name")
    assert _frozen_sets(stored) == snap_sets and _frozen_sets(sibling) == sib_sets
    assert "an-extra-name" not in stored.__pydantic_fields_set__
    assert stored.wire() == wire and store.get(DPU, "a", "dpf").wire() == wire


def test_revalidation_cannot_change_a_shared_set() -> None:
    class Always(Model):
        model_config = ConfigDict(revalidate_instances="always")
        type: str
        reason: str = ""

    class Holder(Model):
        items: list[Always]

    a = Always(type="x")
    compact(a)
    shared = a.__pydantic_fields_set__
    h = Holder(items=[a])
    # pydantic-core hands the revalidated instance the same set object (it does so for plain sets too, where
    # an edit of the copy then leaks into the original); a shared set ignores the edit instead.
    assert h.items[0] is not a
    h.items[0].reason = "edited"
    assert shared == {"type"} and a.__pydantic_fields_set__ is shared and a.reason == ""


def test_no_kind_revalidates_instances() -> None:
    """What keeps the case above theoretical: every model reachable from a registered kind keeps pydantic's
    default (`never`), under which validation keeps a given instance as it is."""
    registry.load_all()
    seen: set[type[BaseModel]] = set()
    todo: list[type[BaseModel]] = list(registry.all_kinds())
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        assert cls.model_config.get("revalidate_instances", "never") == "never", cls
        for f in cls.model_fields.values():
            todo.extend(t for t in _model_types(f.annotation) if t not in seen)
    assert len(seen) > 50


def _model_types(tp: Any) -> Iterator[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        yield tp
    for a in typing.get_args(tp):
        yield from _model_types(a)


def test_stored_instances_put_into_a_writers_object_stay_shared_and_read_only() -> None:
    # Without revalidation (every kind here) pydantic keeps the instance itself, set and all: a writer that
    # puts a stored condition into its own status shares it read-only, as it shares every snapshot part.
    c = Condition.model_validate({"type": "A", "status": "True", "lastTransitionTime": "t", "reason": "r"})
    compact(c)
    status = DPUStatus(conditions=[c])
    assert status.conditions[0] is c and type(c.__pydantic_fields_set__) is SharedFieldsSet
    mine = status.clone()
    mine.conditions[0].message = "edited"
    assert type(mine.conditions[0].__pydantic_fields_set__) is set and "message" not in c.__pydantic_fields_set__


def test_an_in_place_edit_of_a_snapshot_does_not_reach_its_siblings() -> None:
    s = MemoryStore(lambda: 0.0, detect_mutation=False)
    a = _stored_dpu(s, "a")
    b = _stored_dpu(s, "b")
    before = _frozen_sets(b)
    # A contract violation (the mutation detector's business): setting a field never set before.
    assert "dpu_flavor" not in a.spec.__pydantic_fields_set__
    a.spec.dpu_flavor = "edited"
    a.metadata.__pydantic_fields_set__.update({"x"})
    a.metadata.__pydantic_fields_set__ |= {"y"}
    a.metadata.__pydantic_fields_set__.discard("name")
    a.metadata.__pydantic_fields_set__.clear()
    assert _frozen_sets(b) == before
    assert "dpu_flavor" not in b.spec.__pydantic_fields_set__
    assert s.get(DPU, "a", "dpf").spec.dpu_flavor == "edited"


def test_shared_set_operations_return_plain_sets() -> None:
    s = SharedFieldsSet({"a", "b"})
    for derived in (s | {"c"}, s - {"a"}, s & {"a"}, s ^ {"a"}, s.copy(), copy.copy(s), copy.deepcopy(s)):
        assert type(derived) is set
    assert s == {"a", "b"} and {"a", "b"} == s
    s.add("z")
    s.remove("a")
    with pytest.raises(KeyError):
        s.remove("nope")
    with pytest.raises(KeyError):
        s.pop()
    s.intersection_update({"a"})
    s.difference_update({"a"})
    s.symmetric_difference_update({"a"})
    s &= {"q"}
    s -= {"a"}
    s ^= {"a"}
    assert s == {"a", "b"}


def test_status_writes_compact_only_what_is_new(store: MemoryStore) -> None:
    _stored_dpu(store, "a")
    cur = store.get(DPU, "a", "dpf")
    mine = cur.status.model_copy(update={"conditions": list(cur.status.conditions)})
    cond.set_condition(mine.conditions, "T1", "False", "Err", "x", "t1", copy_on_write=True)
    after = store.update_status(cur.with_status(mine))
    assert after.spec is cur.spec  # shared with the previous snapshot, already compacted
    assert after.status.conditions[0] is cur.status.conditions[0]
    new_cond = after.status.conditions[1]
    assert new_cond is not cur.status.conditions[1]
    assert type(new_cond.__pydantic_fields_set__) is SharedFieldsSet
    assert new_cond.__pydantic_fields_set__ is cur.status.conditions[1].__pydantic_fields_set__
    assert all(type(s) is SharedFieldsSet for s in _sets(after))
    # The writer's own object is never compacted: it stays editable with its own sets.
    assert type(mine.conditions[1].__pydantic_fields_set__) is set


def test_updates_patches_and_deletion_marks_are_compacted(store: MemoryStore) -> None:
    store.create(_dpu("a"))
    mine = store.get(DPU, "a", "dpf").deepcopy()
    mine.metadata.labels["x"] = "1"
    mine.metadata.finalizers.append("test/hold")
    updated = store.update(mine)
    assert all(type(s) is SharedFieldsSet for s in _sets(updated))
    assert type(mine.metadata.__pydantic_fields_set__) is set
    patched = store.patch(DPU, "a", "dpf", {"metadata": {"labels": {"y": "2"}}})
    assert all(type(s) is SharedFieldsSet for s in _sets(patched))
    patched_json = store.patch(DPU, "a", "dpf", [{"op": "add", "path": "/metadata/labels/z", "value": "3"}], "json")
    assert all(type(s) is SharedFieldsSet for s in _sets(patched_json))
    store.delete(DPU, "a", "dpf")
    marked = store.get(DPU, "a", "dpf")
    assert marked.metadata.deletion_timestamp is not None
    assert all(type(s) is SharedFieldsSet for s in _sets(marked))
    # The next writer copies the marked snapshot and edits it as usual.
    last = marked.deepcopy()
    last.metadata.finalizers = []
    store.update(last)
    assert store.try_get(DPU, "a", "dpf") is None


# ---- equal nested models are stored once -------------------------------------------------------------------


def test_equal_nested_models_of_different_objects_are_one_instance(store: MemoryStore) -> None:
    p1 = store.create(_pod("p1"))
    p2 = store.create(_pod("p2"))
    assert p1.spec.containers[0] is p2.spec.containers[0]
    assert p1.spec.tolerations[0] is p2.spec.tolerations[0]
    assert p1.spec.containers[0].env[0] == {"name": "A", "value": "1"}  # type: ignore[attr-defined]
    other = _pod("p3")
    other.spec.containers[0].image = "dms:2"
    p3 = store.create(other)
    assert p3.spec.containers[0] is not p1.spec.containers[0] and p3.spec.containers[0].image == "dms:2"
    assert p3.spec.tolerations[0] is p1.spec.tolerations[0]
    # The sections themselves (metadata, spec, status) are each object's own.
    assert p1.spec is not p2.spec and p1.metadata is not p2.metadata


def test_values_equal_in_python_but_of_other_types_are_not_merged(store: MemoryStore) -> None:
    made = []
    for i, v in enumerate([1, True, 1.0, "1"]):
        p = _pod(f"p{i}")
        p.spec.containers[0].__pydantic_extra__["x"] = v  # type: ignore[index]
        made.append(store.create(p))
    assert len({id(p.spec.containers[0]) for p in made}) == 4
    assert [p.spec.containers[0].wire()["x"] for p in made] == [1, True, 1.0, "1"]
    assert [type(p.spec.containers[0].x) for p in made] == [int, bool, float, str]  # type: ignore[attr-defined]


def test_models_with_other_explicitly_set_fields_are_not_merged() -> None:
    a, b = _dpu("a"), _dpu("b")
    a.status.conditions[0] = Condition.model_validate(
        {"type": "T0", "status": "True", "lastTransitionTime": "t0", "reason": "R", "message": "m"}
    )
    b.status.conditions[0] = Condition.model_construct(
        type="T0", status="True", last_transition_time="t0", reason="R", message="m", observed_generation=None
    )
    b.status.conditions[0].__pydantic_fields_set__.discard("message")
    assert a.status.conditions[0] == b.status.conditions[0]
    compact(a)
    compact(b)
    assert a.status.conditions[0] is not b.status.conditions[0]
    assert "message" in a.status.conditions[0].model_dump(exclude_unset=True)
    assert "message" not in b.status.conditions[0].model_dump(exclude_unset=True)
    assert a.status.conditions[1] is b.status.conditions[1]


def test_a_copy_edited_by_a_writer_leaves_the_shared_instance_alone(store: MemoryStore) -> None:
    p1 = store.create(_pod("p1"))
    p2 = store.create(_pod("p2"))
    mine = p1.deepcopy()
    mine.spec.tolerations[0].key = "edited"
    mine.spec.containers[0].image = "dms:9"
    mine.metadata.resource_version = None
    updated = store.update(mine)
    assert updated.spec.containers[0].image == "dms:9"
    assert p2.spec.tolerations[0].key == "k" and p2.spec.containers[0].image == "dms:1"
    assert store.get(Pod, "p2", "dpf").wire() == p2.wire()


def test_a_shared_instance_lives_only_as_long_as_a_snapshot_holds_it(store: MemoryStore) -> None:
    import gc
    import weakref

    store.create(_pod("p1"))
    store.create(_pod("p2"))
    ref = weakref.ref(store.get(Pod, "p1", "dpf").spec.containers[0])
    store.delete(Pod, "p1", "dpf")
    gc.collect()
    assert ref() is not None  # p2 still holds it
    store.delete(Pod, "p2", "dpf")
    store._history.clear()  # the watch history holds the deleted snapshots too
    gc.collect()
    assert ref() is None


# --- session 6: key-sharing __dict__s and shared read-only empties ---------------------------------------


def _combined_dict_size(d: dict[str, Any]) -> int:
    return __import__("sys").getsizeof({k: v for k, v in d.items()})


def test_stored_models_hold_the_same_fields_in_the_same_order(store: MemoryStore) -> None:
    source = _pod("p")
    stored = store.create(_pod("p"))
    fresh = Pod.model_validate(stored.model_dump(by_alias=True))
    for a, b in zip(_models(stored), _models(fresh), strict=True):
        assert type(a) is type(b)
        assert list(a.__dict__) == list(b.__dict__)
        assert a.__dict__ == b.__dict__
    assert stored.spec == source.spec and source.spec == stored.spec  # create drops status
    assert stored.model_dump() == fresh.model_dump()
    assert stored.model_dump_json() == fresh.model_dump_json()


def test_a_stored_metadata_dict_shares_its_keys_with_its_class(store: MemoryStore) -> None:
    import tracemalloc

    objs = [_pod(f"p{i}") for i in range(200)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    plain = [dict(o.metadata.__dict__) for o in objs]  # what pydantic builds: one key table per dict
    combined = tracemalloc.get_traced_memory()[0] - before
    stored = [store.create(o) for o in objs]
    before = tracemalloc.get_traced_memory()[0]
    shared = []
    for s in stored:
        twin = object.__new__(type(s.metadata))
        for k, v in s.metadata.__dict__.items():
            object.__setattr__(twin, k, v)
        shared.append(twin.__dict__)
    split = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(plain) == len(shared) == 200
    # The stored dicts are key-sharing like `shared` (a dict copy of one keeps sharing; a combined one does not).
    assert split < combined * 0.8
    for s in stored:
        assert len(s.metadata.__dict__) == len(type(s.metadata).model_fields)


def test_empty_collections_of_stored_objects_are_one_read_only_instance(store: MemoryStore) -> None:
    from dpf_core.api.meta import EMPTY_DICT, EMPTY_LIST

    a, b = store.create(_pod("a")), store.create(_pod("b"))
    assert a.metadata.annotations is EMPTY_DICT and b.metadata.annotations is EMPTY_DICT
    assert a.metadata.finalizers is EMPTY_LIST and b.metadata.owner_references is EMPTY_LIST
    assert a.metadata.annotations == {} and a.metadata.finalizers == []
    for edit in (
        lambda: a.metadata.annotations.__setitem__("k", "v"),
        lambda: a.metadata.annotations.update(k="v"),
        lambda: a.metadata.annotations.setdefault("k", "v"),
        lambda: a.metadata.finalizers.append("f"),
        lambda: a.metadata.finalizers.extend(["f"]),
        lambda: a.metadata.finalizers.insert(0, "f"),
    ):
        with pytest.raises(TypeError, match="read-only"):
            edit()
    assert b.metadata.annotations == {} and b.metadata.finalizers == []
    # Every copy is plain and editable.
    for make in (lambda: a.deepcopy(), lambda: a.model_copy(deep=True), lambda: copy.deepcopy(a), lambda: pickle.loads(pickle.dumps(a))):
        c = make()
        assert type(c.metadata.annotations) is dict and type(c.metadata.finalizers) is list
        c.metadata.annotations["k"] = "v"
        c.metadata.finalizers.append("f")
    assert type(copy.copy(a.metadata.annotations)) is dict and type(a.metadata.finalizers.copy()) is list
    assert a.wire()["metadata"] == _pod("a").wire()["metadata"] | {k: v for k, v in a.wire()["metadata"].items() if k in ("uid", "resourceVersion", "creationTimestamp", "generation")}
    assert a.metadata.annotations | {"k": "v"} == {"k": "v"} and list.__add__(a.metadata.finalizers, ["f"]) == ["f"]


def test_open_models_share_the_empty_extra(store: MemoryStore) -> None:
    from dpf_core.api.meta import EMPTY_DICT

    p = store.create(_pod("a"))
    assert p.__pydantic_extra__ is EMPTY_DICT
    c = p.model_copy()
    assert type(c.__pydantic_extra__) is dict
    c.__pydantic_extra__["x"] = 1
    assert p.__pydantic_extra__ == {}


def test_a_label_carried_by_one_object_is_indexed_without_a_set(store: MemoryStore) -> None:
    a, b = _pod("a"), _pod("b")
    a.metadata.labels["host"] = "h1"
    b.metadata.labels["host"] = "h2"
    store.create(a)
    store.create(b)
    t = next(t for t in store._tables.values() if t.cls is Pod)
    assert t.by_label["host"] == {"h1": ("dpf", "a"), "h2": ("dpf", "b")}  # one Key each
    assert t.by_label["app"]["dms"] == {("dpf", "a"), ("dpf", "b")}

    def names(sel: str) -> list[str]:
        return [p.name for p in store.list(Pod, "dpf", label_selector=sel)]

    assert names("host=h1") == ["a"] and names("host in (h1,h2)") == ["a", "b"] and names("host") == ["a", "b"]
    moved = store.get(Pod, "b", "dpf").deepcopy()
    moved.metadata.labels["host"] = "h1"
    store.update(moved)
    assert t.by_label["host"] == {"h1": {("dpf", "a"), ("dpf", "b")}}
    assert names("host=h1") == ["a", "b"] and names("host=h2") == []
    store.delete(Pod, "a", "dpf")
    assert names("host=h1") == ["b"]
    store.delete(Pod, "b", "dpf")
    assert "host" not in t.by_label and names("host") == []
