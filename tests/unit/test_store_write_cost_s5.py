"""Session 5, the cost of one store write: each shortcut gives what the path it skips gives.

- `same_data` is strict: two values it calls the same dump alike (1, 1.0 and True differ; so do key orders).
- An update whose spec or status is an equal rebuild of the stored one (an edit of a deep copy) takes the
  stored part: the result is the full path's (`admit_update(..., full=True)`, pydantic's round trip of the
  whole object) in every value, type and error.
- A status merge patch stores the status it validated without copying it again: the same snapshots,
  resourceVersions and watch events as a store that copies it (the reference), on random patches.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from dpf_core.api import admission
from dpf_core.api.external import Node, Pod
from dpf_core.api.meta import Condition, KubeObject, same_data
from dpf_core.api.provisioning import DPU
from dpf_core.api.svc import ServiceInterface
from dpf_core.errors import ApiError
from dpf_core.store import memory
from dpf_core.store.memory import MemoryStore
from dpf_core.store.protocol import WatchEvent

NS = "dpf"
OWNER = {"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "u-1", "controller": True, "blockOwnerDeletion": True}


def _cond(t: str, status: str = "True", **kw: Any) -> Condition:
    return Condition.model_validate({"type": t, "status": status, "lastTransitionTime": "2025-01-01T00:00:00Z",
                                     "reason": "R", **kw})


# ---- same_data ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (1, 1, True),
        (1, 1.0, False),
        (1, True, False),
        ("1", 1, False),
        ([1, 2], [1, 2], True),
        ([1, 2], (1, 2), False),
        ([1, 2], [1, 2, 3], False),
        ({"a": 1, "b": 2}, {"a": 1, "b": 2}, True),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, False),  # another key order dumps another document
        ({"a": [1.0]}, {"a": [1]}, False),
        ({"a": None}, {"a": None}, True),
        (float("nan"), float("nan"), False),
        (_cond("Ready"), _cond("Ready"), True),
        (_cond("Ready"), _cond("Ready", message="m"), False),
        (_cond("Ready"), _cond("Ready", observedGeneration=1), False),
    ],
)
def test_same_data_is_strict(a: Any, b: Any, same: bool) -> None:
    assert same_data(a, b) is same
    assert same_data(b, a) is same


def test_same_data_tells_extra_fields_and_their_types_apart() -> None:
    def pod(extra: Any) -> Pod:
        return Pod.model_validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                                   "spec": {"containers": [{"name": "c", "x": extra}]}})

    assert same_data(pod(1), pod(1))
    assert not same_data(pod(1), pod(1.0))
    assert not same_data(pod({"k": 1}), pod({"k": True}))
    # The same data dumps the same: what the shortcut relies on.
    for a, b in [(pod(1), pod(1)), (pod([{"a": 1}]), pod([{"a": 1}]))]:
        assert same_data(a, b) and a.model_dump(exclude_none=True) == b.model_dump(exclude_none=True)


def test_same_data_implies_equal_dumps_on_random_models() -> None:
    rng = random.Random(5)
    values: list[Any] = [0, 1, 1.0, True, False, "", "x", None, [], [1], {"a": 1}, {"a": 1.0}]
    for _ in range(300):
        def conds() -> list[Condition]:
            return [_cond(rng.choice(["A", "B"]), rng.choice(["True", "False"]),
                          message=rng.choice(["", "m"])) for _ in range(rng.randrange(3))]

        x = rng.choice(values)
        y = x if rng.random() < 0.5 else rng.choice(values)
        a = Pod.model_validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                                "spec": {"containers": [{"name": "c", "x": x}]}})
        b = Pod.model_validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                                "spec": {"containers": [{"name": "c", "x": y}]}})
        if same_data(a, b):
            assert a.model_dump(exclude_none=True) == b.model_dump(exclude_none=True)
            assert a.model_dump_json() == b.model_dump_json()
        c1, c2 = conds(), conds()
        if same_data(c1, c2):
            assert [c.model_dump_json() for c in c1] == [c.model_dump_json() for c in c2]


# ---- updates with an equal spec or status --------------------------------------------------------------------


def _stored(cls: type[KubeObject], doc: dict[str, Any]) -> tuple[MemoryStore, Any]:
    store = MemoryStore(lambda: 1_700_000_000.0, seed=3)
    namespace = None if cls is Node else NS
    name = "n1" if cls is Node else "obj"
    obj = cls.model_validate({"apiVersion": cls.KIND.api_version, "kind": cls.KIND.kind, **doc,
                              "metadata": {"name": name, "namespace": namespace, **doc.get("metadata", {})}})
    return store, store.create(obj)


DOCS: list[tuple[type[KubeObject], dict[str, Any]]] = [
    (DPU, {"metadata": {"labels": {"a": "1"}, "ownerReferences": [OWNER]},
           "spec": {"nodeName": "n1", "bfb": "bf", "pciAddress": "", "cluster": {"nodeLabels": {"x": "y"}}}}),
    (ServiceInterface, {"metadata": {"labels": {"uplink": "p0"}},
                        "spec": {"node": "n1", "interfaceType": "vf", "vf": {"vfID": 1, "pfID": 0, "parentInterfaceRef": "p0"}}}),
    (Pod, {"metadata": {"labels": {"app": "x"}},
           "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i", "x": 1, "env": [{"name": "A", "value": "1"}]}]}}),
    (Node, {"metadata": {"labels": {"kubernetes.io/hostname": "n1"}}, "spec": {"taints": []},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
]


def _edits(rng: random.Random, obj: Any) -> Any:
    """A deep copy of `obj` with a random mix of edits: metadata only (spec and status stay equal), an equal
    value of another type, a reordered map, a real change, an invalid assignment."""
    new = obj.deepcopy()
    new.metadata.labels[f"k{rng.randrange(3)}"] = "v"
    what = rng.randrange(7)
    spec = new.spec
    if what == 1 and isinstance(new, Pod):
        new.spec.containers[0].__pydantic_extra__["x"] = 1.0  # equal to 1, not the same data
    elif what == 2 and isinstance(new, DPU):
        new.spec.cluster.node_labels = {"z": "w", **new.spec.cluster.node_labels}
    elif what == 3 and isinstance(new, DPU):
        new.spec.bfb = "other"
    elif what == 4 and isinstance(new, ServiceInterface):
        new.spec.node = "n2"
    elif what == 5 and isinstance(new, Pod):
        new.spec.node_name = 5  # type: ignore[assignment]  # an invalid edit the round trip catches
    elif what == 6 and isinstance(new, Node):
        new.spec.unschedulable = True
    assert spec is new.spec
    return new


def _outcome(fn: Any) -> Any:
    try:
        return "ok", fn()
    except (ApiError, ValidationError) as e:
        return "error", f"{type(e).__name__}: {e}"


@pytest.mark.parametrize(("cls", "doc"), DOCS, ids=lambda v: getattr(v, "__name__", ""))
def test_update_with_an_equal_part_is_the_full_paths(cls: type[KubeObject], doc: dict[str, Any]) -> None:
    rng = random.Random(cls.__name__)
    store, old = _stored(cls, doc)
    for _ in range(60):
        new = _edits(rng, old)
        fast = _outcome(lambda new=new: admission.admit_update(new, old, reader=store))
        full = _outcome(lambda new=new: admission.admit_update(new, old, reader=store, full=True))
        assert fast[0] == full[0]
        if fast[0] == "error":
            assert fast[1] == full[1]
            continue
        a, b = fast[1], full[1]
        assert same_data(a, b) and a == b and a.wire() == b.wire()
        for section in ("spec", "status"):
            mine, stored = getattr(a, section, None), getattr(old, section, None)
            if isinstance(mine, BaseModel) and same_data(getattr(new, section), stored):
                # The shortcut took the stored part (an empty one the dump leaves out is defaulted anew).
                assert mine is stored or section not in a.wire()
        assert a.metadata is not old.metadata and a is not new


def test_store_update_after_a_deepcopy_keeps_the_stored_spec_and_stamps_only_its_own_metadata() -> None:
    store, old = _stored(*DOCS[0])
    rv = old.metadata.resource_version
    edited = old.deepcopy()
    edited.metadata.finalizers.append("f/x")
    new = store.update(edited)
    assert new.spec is old.spec and new.metadata.generation == old.metadata.generation
    assert old.metadata.resource_version == rv and old.metadata.finalizers == []
    assert int(new.metadata.resource_version) == int(rv) + 1


# ---- status merge patches ---------------------------------------------------------------------------------------


def _random_status_patch(rng: random.Random) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if rng.random() < 0.6:
        status["phase"] = rng.choice(["Pending", "Running", "Failed"])
    if rng.random() < 0.5:
        status["conditions"] = [
            {"type": rng.choice(["Ready", "PodScheduled"]), "status": rng.choice(["True", "False"]),
             "lastTransitionTime": f"2025-01-01T00:00:{rng.randrange(60):02d}Z",
             **({"extra": rng.choice([None, 1, 1.0, "x"])} if rng.random() < 0.3 else {})}
            for _ in range(rng.randrange(3))
        ]
    if rng.random() < 0.3:
        status["podIP"] = rng.choice([None, "10.0.0.1", "10.0.0.2"])
    if rng.random() < 0.2:
        status["unknownField"] = rng.choice([None, 1, 1.0, True, {"a": [1, None]}, [None]])
    if rng.random() < 0.1:
        status["phase"] = 7  # invalid: both stores answer Invalid with the same causes
    return {"status": status}


def _run(patches: list[dict[str, Any]], *, reference: bool, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    with monkeypatch.context() as m:
        if reference:
            m.setattr(memory, "_null_in_list", lambda *a, **k: True)  # every status patch copies its status
        store = MemoryStore(lambda: 1_700_000_000.0, seed=1)
        events: list[WatchEvent] = []
        store.subscribe(events.append)
        pod = Pod.model_validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": NS},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}})
        store.create(pod)
        out: list[Any] = []
        for patch in patches:
            try:
                got = store.patch(Pod, "p", NS, patch, subresource="status")
                out.append(("ok", got.metadata.resource_version, got.model_dump(), got.model_dump_json()))
            except ApiError as e:
                out.append(("error", type(e).__name__, str(e), [(c.field, c.message) for c in getattr(e, "causes", [])]))
        out.append([(ev.type, ev.object.model_dump_json(), ev.old.model_dump_json() if ev.old else None) for ev in events])
        out.append(store.snapshot())
        return out


def test_status_merge_patches_store_the_same_as_the_copying_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(11)
    patches = [_random_status_patch(rng) for _ in range(300)]
    fast = _run(patches, reference=False, monkeypatch=monkeypatch)
    ref = _run(patches, reference=True, monkeypatch=monkeypatch)
    assert len(fast) == len(ref)
    for a, b in zip(fast, ref, strict=True):
        assert a == b
    kinds = {o[0] for o in fast[:-2]}
    assert kinds == {"ok", "error"}  # both outcomes were exercised


def test_a_status_patch_stores_its_validated_status_and_shares_nothing_with_the_patch() -> None:
    store = MemoryStore(lambda: 1_700_000_000.0)
    store.create(Pod.model_validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": NS},
                                     "spec": {"containers": [{"name": "c"}]}}))
    payload = {"hostIP": "10.0.0.9", "podIPs": [{"ip": "10.0.0.9"}], "custom": {"k": ["v"]}}
    got = store.patch(Pod, "p", NS, {"status": payload}, subresource="status")
    payload["custom"]["k"].append("edited")  # the caller edits its patch afterwards
    payload["podIPs"][0]["ip"] = "edited"
    stored = store.get(Pod, "p", NS)
    assert stored is got
    assert stored.wire()["status"]["custom"] == {"k": ["v"]}
    assert stored.wire()["status"]["podIPs"] == [{"ip": "10.0.0.9"}]


@pytest.mark.parametrize(
    ("value", "found"),
    [(None, False), ({"a": None}, False), ([None], True), ({"a": [1, {"b": None}]}, True), ({"a": [{"b": 1}]}, False)],
)
def test_null_in_list(value: Any, found: bool) -> None:
    assert memory._null_in_list(value) is found
