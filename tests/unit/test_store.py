"""MemoryStore semantics, exercised on small test kinds so the store is tested generically."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import Field

from dpf_core.api.meta import KindInfo, KubeObject, LabelSelector, Model, StrList
from dpf_core.api.registry import Hooks, Reader, register
from dpf_core.errors import AlreadyExists, BadRequest, Conflict, FieldCause, Forbidden, Gone, Invalid, NotFound
from dpf_core.store import FOREGROUND_DELETION, MemoryStore, ResourceVersionTooLarge, SnapshotMutated, WatchEvent

GROUP = "store.test.dpf.local"


class WidgetSpec(Model):
    size: int = 1
    color: str | None = None
    flavor: str | None = None
    items: StrList


class WidgetStatus(Model):
    phase: str = "Pending"
    ready: bool = False


class Widget(KubeObject):
    KIND = KindInfo(group=GROUP, version="v1", kind="Widget", plural="widgets", singular="widget", dpf=False)
    spec: WidgetSpec = Field(default_factory=lambda: WidgetSpec.model_validate({}))
    status: WidgetStatus | None = None


class Gadget(KubeObject):
    """Cluster-scoped."""

    KIND = KindInfo(
        group=GROUP, version="v1", kind="Gadget", plural="gadgets", singular="gadget", namespaced=False, dpf=False
    )
    spec: WidgetSpec = Field(default_factory=lambda: WidgetSpec.model_validate({}))
    status: WidgetStatus | None = None


class Plain(KubeObject):
    """No status subresource: status is part of the main resource."""

    KIND = KindInfo(
        group=GROUP, version="v1", kind="Plain", plural="plains", singular="plain", status_subresource=False, dpf=False
    )
    spec: WidgetSpec = Field(default_factory=lambda: WidgetSpec.model_validate({}))
    status: WidgetStatus | None = None


class Namespace(KubeObject):
    KIND = KindInfo(
        group="", version="v1", kind="Namespace", plural="namespaces", singular="namespace", namespaced=False, dpf=False
    )


def _default_color(obj: KubeObject) -> None:
    assert isinstance(obj, Widget)
    if obj.spec.color is None:
        obj.spec.color = "blue"


def _max_size(obj: KubeObject, reader: Reader) -> list[FieldCause]:
    assert isinstance(obj, Widget)
    return [FieldCause("spec.size", f"Invalid value: {obj.spec.size}: must be <= 100")] if obj.spec.size > 100 else []


def _no_shrink(new: KubeObject, old: KubeObject, reader: Reader) -> list[FieldCause]:
    assert isinstance(new, Widget) and isinstance(old, Widget)
    return [FieldCause("spec.size", "Invalid value: may not shrink")] if new.spec.size < old.spec.size else []


def _protected(obj: KubeObject, reader: Reader) -> str | None:
    return "widget is protected" if obj.metadata.labels.get("protected") == "true" else None


WIDGET_HOOKS = Hooks(
    default=[_default_color],
    validate_create=[_max_size],
    validate_update=[lambda new, old, reader: _max_size(new, reader), _no_shrink],
    validate_delete=[_protected],
    immutable=["spec.flavor?"],
    webhook="vwidget.example.com",
)


@pytest.fixture(scope="module", autouse=True)
def _kinds(registry_sandbox: None) -> Iterator[None]:
    register(Widget, WIDGET_HOOKS)
    register(Gadget)
    register(Plain)
    register(Namespace)
    yield


@pytest.fixture
def store(clock: Any) -> MemoryStore:
    return MemoryStore(clock=clock, seed=7)


def widget(name: str, ns: str = "default", **fields: Any) -> Widget:
    return Widget.new(name, ns, **fields)


def owner_ref(obj: KubeObject, *, block: bool | None = None, controller: bool | None = None) -> dict[str, Any]:
    return {
        "apiVersion": obj.api_version,
        "kind": obj.kind,
        "name": obj.name,
        "uid": obj.metadata.uid,
        "blockOwnerDeletion": block,
        "controller": controller,
    }


def child(name: str, *owners: dict[str, Any], finalizers: list[str] | None = None, ns: str = "default") -> Widget:
    return Widget.model_validate(
        {
            "apiVersion": Widget.KIND.api_version,
            "kind": "Widget",
            "metadata": {
                "name": name,
                "namespace": ns,
                "ownerReferences": list(owners),
                "finalizers": finalizers or [],
            },
        }
    )


def record(store: MemoryStore, kinds: list[type[KubeObject]] | None = None) -> list[WatchEvent]:
    events: list[WatchEvent] = []
    store.subscribe(events.append, kinds)
    return events


UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


# ---- create -----------------------------------------------------------------------------------------------


class TestCreate:
    def test_create_fills_server_fields_and_keeps_the_callers_object(self, store: MemoryStore) -> None:
        w = widget("a")
        created = store.create(w)
        m = created.metadata
        assert UUID4.match(m.uid or "")
        assert m.resource_version == "1"
        assert m.generation == 1
        assert m.creation_timestamp == "2023-11-14T22:13:20Z"
        assert created.spec.color == "blue"  # defaulted by the kind's admission
        assert w.metadata.uid is None and w.spec.color is None and created is not w

    def test_uids_and_generated_names_replay_with_the_seed(self, clock: Any) -> None:
        def run(seed: int) -> list[tuple[str, str]]:
            s = MemoryStore(clock=clock, seed=seed)
            out = []
            for _ in range(3):
                o = s.create(
                    Widget.model_validate(
                        {
                            "apiVersion": Widget.KIND.api_version,
                            "kind": "Widget",
                            "metadata": {"generateName": "w-", "namespace": "default"},
                        }
                    )
                )
                out.append((o.name, o.metadata.uid or ""))
            return out

        assert run(1) == run(1)
        assert run(1) != run(2)

    def test_generate_name(self, store: MemoryStore) -> None:
        raw = {
            "apiVersion": Widget.KIND.api_version,
            "kind": "Widget",
            "metadata": {"generateName": "dpu-", "namespace": "default"},
        }
        o = store.create(Widget.model_validate(raw))
        assert re.fullmatch(r"dpu-[bcdfghjklmnpqrstvwxz2456789]{5}", o.name)
        raw["metadata"]["generateName"] = "x" * 70  # type: ignore[index]
        long = store.create(Widget.model_validate(raw))
        assert len(long.name) == 63 and long.name.startswith("x" * 58)

    def test_resource_version_on_create_is_a_bad_request(self, store: MemoryStore) -> None:
        w = widget("a")
        w.metadata.resource_version = "5"
        with pytest.raises(BadRequest, match=r"resourceVersion should not be set on objects to be created"):
            store.create(w)

    @pytest.mark.parametrize("name", ["Upper", "-lead", "trail-", "a_b", "x" * 254])
    def test_invalid_names(self, store: MemoryStore, name: str) -> None:
        with pytest.raises(Invalid) as e:
            store.create(widget(name))
        assert e.value.causes[0].field == "metadata.name"

    def test_dotted_name_is_a_valid_subdomain(self, store: MemoryStore) -> None:
        assert store.create(widget("a.b-c.9")).name == "a.b-c.9"

    def test_name_required(self, store: MemoryStore) -> None:
        with pytest.raises(Invalid, match=r"name or generateName is required"):
            store.create(widget(""))

    def test_scope(self, store: MemoryStore) -> None:
        with pytest.raises(Invalid, match=r"metadata.namespace: Required value"):
            store.create(Widget.new("a"))
        with pytest.raises(Invalid, match=r"metadata.namespace: Forbidden: not allowed on this type"):
            store.create(Gadget.new("g", "default"))
        assert store.create(Gadget.new("g")).namespace is None

    def test_already_exists(self, store: MemoryStore) -> None:
        store.create(widget("a"))
        with pytest.raises(AlreadyExists, match=r'widgets.store.test.dpf.local "a" already exists'):
            store.create(widget("a"))
        store.create(widget("a", "other"))  # same name, other namespace

    def test_status_is_dropped_on_create_with_a_status_subresource(self, store: MemoryStore) -> None:
        w = store.create(widget("a", status={"phase": "Ready"}))
        assert w.status is None
        p = store.create(Plain.new("p", "default", status={"phase": "Ready"}))
        assert p.status is not None and p.status.phase == "Ready"

    def test_admission_errors(self, store: MemoryStore) -> None:
        with pytest.raises(Invalid) as e:
            store.create(widget("a", spec={"size": 101}))
        assert e.value.causes == [FieldCause("spec.size", "Invalid value: 101: must be <= 100")]
        assert not store.exists(Widget, "a", "default")
        assert store.current_resource_version() == "0"

    def test_labels_are_validated(self, store: MemoryStore) -> None:
        bad = widget("a")
        bad.metadata.labels = {"ok": "has space"}
        with pytest.raises(Invalid, match=r"metadata.labels"):
            store.create(bad)

    def test_a_bad_name_and_bad_labels_are_reported_together(self, store: MemoryStore) -> None:
        bad = widget("Bad_Name")
        bad.metadata.labels = {"ok": "has space"}
        bad.metadata.annotations = {"no good/key/x": "v"}
        with pytest.raises(Invalid) as e:
            store.create(bad)
        assert list(dict.fromkeys(c.field for c in e.value.causes)) == ["metadata.name", "metadata.labels",
                                                                         "metadata.annotations"]
        assert not store.exists(Widget, "Bad_Name", "default")

    def test_only_one_controller_reference(self, store: MemoryStore) -> None:
        a, b = store.create(widget("a")), store.create(widget("b"))
        with pytest.raises(Invalid, match=r"Only one reference can have Controller set to true"):
            store.create(child("c", owner_ref(a, controller=True), owner_ref(b, controller=True)))


class TestNamespaces:
    def test_required_namespace(self, clock: Any) -> None:
        s = MemoryStore(clock=clock, require_namespace=True)
        with pytest.raises(NotFound, match=r'namespaces "default" not found'):
            s.create(widget("a"))
        s.create(Namespace.new("default"))
        s.create(widget("a"))
        s.create(Gadget.new("g"))  # cluster-scoped kinds need no namespace

    def test_terminating_namespace_refuses_new_content(self, clock: Any) -> None:
        s = MemoryStore(clock=clock, require_namespace=True)
        ns = Namespace.new("team")
        ns.metadata.finalizers = ["kubernetes"]
        s.create(ns)
        s.delete(Namespace, "team")
        with pytest.raises(Forbidden, match=r"being terminated"):
            s.create(widget("a", "team"))

    def test_namespace_names_are_labels(self, store: MemoryStore) -> None:
        with pytest.raises(Invalid, match=r"RFC 1123 label"):
            store.create(Namespace.new("a.b"))

    def test_without_a_namespace_kind_nothing_is_enforced(self, clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        from dpf_core.api import registry

        monkeypatch.setattr(registry, "lookup", lambda api_version, kind: None)
        s = MemoryStore(clock=clock, require_namespace=True)
        assert s.create(widget("a", "nowhere")).namespace == "nowhere"


# ---- reads -----------------------------------------------------------------------------------------------


class TestReads:
    def test_get_returns_the_shared_snapshot(self, store: MemoryStore) -> None:
        created = store.create(widget("a"))
        assert store.get(Widget, "a", "default") is created
        assert store.list(Widget)[0] is created

    def test_not_found(self, store: MemoryStore) -> None:
        with pytest.raises(NotFound, match=r'widgets.store.test.dpf.local "x" not found'):
            store.get(Widget, "x", "default")
        assert store.try_get(Widget, "x", "default") is None
        assert not store.exists(Widget, "x", "default")
        store.create(widget("x"))
        assert store.try_get(Widget, "x", "other") is None  # namespaces are separate

    def test_list_order_namespace_and_count(self, store: MemoryStore) -> None:
        for ns, name in [("b", "z"), ("a", "y"), ("b", "a"), ("a", "b")]:
            store.create(widget(name, ns))
        assert [(o.namespace, o.name) for o in store.list(Widget)] == [("a", "b"), ("a", "y"), ("b", "a"), ("b", "z")]
        assert [o.name for o in store.list(Widget, "b")] == ["a", "z"]
        store.delete(Widget, "a", "b")
        store.create(widget("m", "b"))
        assert [o.name for o in store.list(Widget, "b")] == ["m", "z"]
        assert [(o.namespace, o.name) for o in store.list(Widget)] == [("a", "b"), ("a", "y"), ("b", "m"), ("b", "z")]
        assert store.count(Widget) == 4 and store.count(Widget, "a") == 2 and store.count(Gadget) == 0

    def test_lists_see_every_write_after_the_sorted_view_is_built(self, store: MemoryStore) -> None:
        store.create(widget("a", metadata={"name": "a", "namespace": "default", "finalizers": ["x/f"]}))
        store.create(widget("b"))
        assert [o.spec.size for o in store.list(Widget)] == [1, 1] and len(store.list(Widget, "default")) == 2
        w = store.get(Widget, "b", "default").deepcopy()
        w.spec.size = 5
        store.update(w)
        store.delete(Widget, "a", "default")
        for listed in (store.list(Widget), store.list(Widget, "default")):
            assert [o.spec.size for o in listed] == [1, 5]
            assert listed[0].metadata.deletion_timestamp is not None
            assert [o.metadata.resource_version for o in listed] == [store.get(Widget, n, "default").metadata.resource_version for n in "ab"]

    def test_label_selectors(self, store: MemoryStore) -> None:
        for i in range(6):
            w = widget(f"w{i}")
            w.metadata.labels = {"tier": ["web", "db", "cache"][i % 3], "idx": str(i)}
            if i % 2:
                w.metadata.labels["odd"] = "yes"
            store.create(w)

        def names(sel: Any, ns: str | None = None) -> list[str]:
            return [o.name for o in store.list(Widget, ns, label_selector=sel)]

        assert names("tier=web") == ["w0", "w3"]
        assert names({"tier": "db"}) == ["w1", "w4"]
        assert names("tier in (web,db),odd") == ["w1", "w3"]
        assert names("tier notin (web),!odd") == ["w2", "w4"]
        assert names("tier!=cache") == ["w0", "w1", "w3", "w4"]
        assert names("idx>3") == ["w4", "w5"]
        assert names(
            LabelSelector.model_validate({"matchExpressions": [{"key": "odd", "operator": "DoesNotExist"}]})
        ) == ["w0", "w2", "w4"]
        assert names("tier=nope") == []
        assert names("missing=x") == []
        assert names("tier=web", "other") == []
        assert names(LabelSelector()) == [f"w{i}" for i in range(6)]
        with pytest.raises(BadRequest):
            names("tier in ()")

    def test_label_index_follows_updates_and_deletes(self, store: MemoryStore) -> None:
        w = store.create(widget("a", metadata={"name": "a", "namespace": "default", "labels": {"x": "1"}})).deepcopy()
        w.metadata.labels = {"x": "2"}
        store.update(w)
        assert store.list(Widget, label_selector="x=1") == []
        assert [o.name for o in store.list(Widget, label_selector="x=2")] == ["a"]
        store.delete(Widget, "a", "default")
        assert store.list(Widget, label_selector="x") == []

    def test_field_selectors(self, store: MemoryStore) -> None:
        for ns, name in [("a", "x"), ("b", "x"), ("b", "y")]:
            store.create(widget(name, ns))
        assert [(o.namespace, o.name) for o in store.list(Widget, field_selector={"metadata.name": "x"})] == [
            ("a", "x"),
            ("b", "x"),
        ]
        assert [o.name for o in store.list(Widget, field_selector="metadata.namespace=b,metadata.name!=x")] == ["y"]
        assert [o.name for o in store.list(Widget, "a", field_selector={"metadata.name": "x"})] == ["x"]
        assert store.list(Widget, "a", field_selector={"metadata.namespace": "b"}) == []
        with pytest.raises(BadRequest, match=r"field label not supported: spec.size"):
            store.list(Widget, field_selector={"spec.size": "1"})

    def test_kinds_all_objects_and_list_with_rv(self, store: MemoryStore) -> None:
        store.create(widget("a"))
        store.create(Gadget.new("g"))
        assert store.kinds() == [Gadget, Widget]
        assert [o.kind for o in store.all_objects()] == ["Gadget", "Widget"]
        items, rv = store.list_with_rv(Widget)
        assert [o.name for o in items] == ["a"] and rv == "2"


# ---- update ----------------------------------------------------------------------------------------------


class TestUpdate:
    def test_stale_update_conflicts_and_empty_rv_is_unconditional(self, store: MemoryStore) -> None:
        first = store.create(widget("a")).deepcopy()
        second = first.deepcopy()
        first.spec.size = 2
        store.update(first)
        second.spec.size = 3
        with pytest.raises(
            Conflict,
            match=r"the object has been modified; please apply your changes to the latest version and try again",
        ):
            store.update(second)
        second.metadata.resource_version = None
        assert store.update(second).spec.size == 3

    def test_snapshot_passed_back_is_a_programming_error(self, store: MemoryStore) -> None:
        w = store.create(widget("a"))
        with pytest.raises(TypeError, match=r"\.deepcopy\(\)"):
            store.update(w)
        with pytest.raises(TypeError, match=r"\.deepcopy\(\)"):
            store.update_status(w)

    def test_generation_tracks_spec_only(self, store: MemoryStore) -> None:
        w = store.create(widget("a")).deepcopy()
        w.metadata.labels = {"x": "y"}
        w = store.update(w).deepcopy()
        assert w.metadata.generation == 1 and w.metadata.resource_version == "2"
        w.spec.size = 5
        w = store.update(w).deepcopy()
        assert w.metadata.generation == 2
        w.status = WidgetStatus(phase="Ready")
        assert store.update_status(w).metadata.generation == 2

    def test_status_changes_bump_generation_without_a_subresource(self, store: MemoryStore) -> None:
        p = store.create(Plain.new("p", "default")).deepcopy()
        p.status = WidgetStatus(phase="Ready")
        updated = store.update(p)
        assert updated.status == WidgetStatus(phase="Ready") and updated.metadata.generation == 2
        with pytest.raises(NotFound, match=r"plains.store.test.dpf.local/status"):
            store.update_status(updated.deepcopy())

    def test_update_keeps_status_and_update_status_keeps_the_rest(self, store: MemoryStore) -> None:
        w = store.create(widget("a")).deepcopy()
        w.status = WidgetStatus(phase="Ready")
        w = store.update_status(w).deepcopy()
        w.status = WidgetStatus(phase="Failed")
        w.spec.size = 9
        w = store.update(w).deepcopy()
        assert w.status == WidgetStatus(phase="Ready") and w.spec.size == 9
        w.status = WidgetStatus(phase="Done")
        w.spec.size = 50
        w.metadata.labels = {"sneaky": "1"}
        w = store.update_status(w)
        assert w.status == WidgetStatus(phase="Done") and w.spec.size == 9 and w.metadata.labels == {}

    def test_no_op_update_commits_nothing(self, store: MemoryStore) -> None:
        w = store.create(widget("a"))
        events = record(store)
        same = store.update(w.deepcopy())
        assert same is w and store.current_resource_version() == "1" and events == []
        assert store.update_status(w.deepcopy()) is w

    def test_server_fields_cannot_be_forged(self, store: MemoryStore) -> None:
        w = store.create(widget("a"))
        forged = w.deepcopy()
        forged.metadata.creation_timestamp = "2000-01-01T00:00:00Z"
        forged.metadata.generation = 42
        forged.metadata.deletion_timestamp = "2000-01-01T00:00:00Z"
        forged.spec.size = 2
        out = store.update(forged)
        assert out.metadata.creation_timestamp == w.metadata.creation_timestamp
        assert out.metadata.generation == 2 and out.metadata.deletion_timestamp is None

    def test_uid_precondition(self, store: MemoryStore) -> None:
        old = store.create(widget("a")).deepcopy()
        store.delete(Widget, "a", "default")
        store.create(widget("a"))
        old.metadata.resource_version = None
        with pytest.raises(Conflict, match=r"Precondition failed: UID in precondition"):
            store.update(old)

    def test_update_missing_object(self, store: MemoryStore) -> None:
        with pytest.raises(NotFound):
            store.update(widget("nope"))

    def test_update_admission(self, store: MemoryStore) -> None:
        w = store.create(widget("a", spec={"size": 5, "flavor": "vanilla"})).deepcopy()
        w.spec.size = 4
        with pytest.raises(Invalid, match=r"may not shrink"):
            store.update(w)
        w.spec.size = 6
        w.spec.flavor = "chocolate"
        with pytest.raises(Invalid, match=r"spec.flavor: Invalid value: field is immutable once set"):
            store.update(w)
        w.spec.flavor = "vanilla"
        assert store.update(w).spec.size == 6


# ---- finalizers and deletion -----------------------------------------------------------------------------


class TestFinalizers:
    def test_delete_without_finalizers_removes(self, store: MemoryStore) -> None:
        store.create(widget("a"))
        events = record(store)
        store.delete(Widget, "a", "default")
        assert not store.exists(Widget, "a", "default")
        assert [(e.type, e.object.metadata.resource_version) for e in events] == [("DELETED", "2")]
        with pytest.raises(NotFound):
            store.delete(Widget, "a", "default")

    def test_finalizers_hold_the_object(self, store: MemoryStore, clock: Any) -> None:
        store.create(widget("a", metadata={"name": "a", "namespace": "default", "finalizers": ["x/one", "x/two"]}))
        clock.advance(30)
        store.delete(Widget, "a", "default")
        held = store.get(Widget, "a", "default")
        assert held.metadata.deletion_timestamp == "2023-11-14T22:13:50Z"
        assert held.metadata.deletion_grace_period_seconds == 0
        assert held.metadata.generation == 2
        rv = store.current_resource_version()
        store.delete(Widget, "a", "default")  # already deleting: no-op
        assert store.current_resource_version() == rv

        w = held.deepcopy()
        w.metadata.finalizers = ["x/one", "x/two", "x/three"]
        with pytest.raises(Invalid, match=r"no new finalizers can be added if the object is being deleted"):
            store.update(w)
        w.metadata.finalizers = ["x/two"]
        assert store.update(w).metadata.finalizers == ["x/two"]
        events = record(store)
        store.patch(Widget, "a", "default", {"metadata": {"finalizers": None}})
        assert not store.exists(Widget, "a", "default")
        assert [e.type for e in events] == ["DELETED"]

    def test_delete_admission(self, store: MemoryStore) -> None:
        store.create(widget("a", metadata={"name": "a", "namespace": "default", "labels": {"protected": "true"}}))
        with pytest.raises(Forbidden, match=r'^admission webhook "vwidget.example.com" denied the request: widget is protected$'):
            store.delete(Widget, "a", "default")
        assert store.exists(Widget, "a", "default")

    def test_delete_preconditions(self, store: MemoryStore) -> None:
        store.create(widget("a"))
        with pytest.raises(Conflict):
            store.delete(Widget, "a", "default", resource_version="99")
        with pytest.raises(Conflict):
            store.delete(Widget, "a", "default", uid="not-it")
        store.delete(Widget, "a", "default", resource_version="1")


# ---- garbage collection ---------------------------------------------------------------------------------


class TestGarbageCollection:
    def test_background_cascades_recursively(self, store: MemoryStore) -> None:
        root = store.create(widget("root"))
        mid = store.create(child("mid", owner_ref(root)))
        store.create(child("leaf", owner_ref(mid)))
        store.create(child("held", owner_ref(mid), finalizers=["x/keep"]))
        bystander = store.create(widget("bystander"))
        store.delete(Widget, "root", "default")
        names = [o.name for o in store.list(Widget)]
        assert names == ["bystander", "held"]
        assert store.get(Widget, "held", "default").metadata.deletion_timestamp is not None
        assert store.get(Widget, "bystander", "default") is bystander

    def test_dependent_with_a_live_owner_survives_and_loses_the_dangling_ref(self, store: MemoryStore) -> None:
        a, b = store.create(widget("a")), store.create(widget("b"))
        store.create(child("c", owner_ref(a), owner_ref(b)))
        store.delete(Widget, "a", "default")
        c = store.get(Widget, "c", "default")
        assert [r.uid for r in c.metadata.owner_references] == [b.metadata.uid]
        store.delete(Widget, "b", "default")
        assert not store.exists(Widget, "c", "default")

    def test_owner_with_finalizers_keeps_dependents_until_removed(self, store: MemoryStore) -> None:
        owner = store.create(widget("o", metadata={"name": "o", "namespace": "default", "finalizers": ["x/f"]}))
        store.create(child("c", owner_ref(owner)))
        store.delete(Widget, "o", "default")
        assert store.exists(Widget, "c", "default")
        store.patch(Widget, "o", "default", [{"op": "remove", "path": "/metadata/finalizers"}], "json")
        assert store.list(Widget) == []

    def test_gc_matches_owners_by_uid(self, store: MemoryStore) -> None:
        owner = store.create(widget("o"))
        ref = owner_ref(owner)
        ref["uid"] = "00000000-0000-4000-8000-000000000000"
        store.create(child("c", ref))
        store.delete(Widget, "o", "default")
        assert store.exists(Widget, "c", "default")  # its owner (by uid) never existed: not this one's dependent

    def test_cross_kind_and_cluster_scoped_owner(self, store: MemoryStore) -> None:
        g = store.create(Gadget.new("g"))
        store.create(child("c", owner_ref(g)))
        store.delete(Gadget, "g")
        assert not store.exists(Widget, "c", "default")

    def test_foreground_waits_for_blocking_dependents(self, store: MemoryStore) -> None:
        owner = store.create(widget("o"))
        store.create(child("blocker", owner_ref(owner, block=True), finalizers=["x/slow"]))
        store.create(child("loose", owner_ref(owner), finalizers=["x/slow"]))
        store.create(child("quick", owner_ref(owner, block=True)))
        events = record(store)
        store.delete(Widget, "o", "default", propagation="Foreground")
        o = store.get(Widget, "o", "default")
        assert FOREGROUND_DELETION in o.metadata.finalizers and o.metadata.deletion_timestamp is not None
        assert not store.exists(Widget, "quick", "default")
        assert store.get(Widget, "blocker", "default").metadata.deletion_timestamp is not None
        assert store.get(Widget, "loose", "default").metadata.deletion_timestamp is not None
        assert (events[0].type, events[0].object.name) == ("MODIFIED", "o")

        store.patch(Widget, "blocker", "default", {"metadata": {"finalizers": None}})
        assert not store.exists(Widget, "o", "default")  # the non-blocking dependent does not hold it
        assert store.exists(Widget, "loose", "default")

    def test_foreground_without_dependents_removes_at_once(self, store: MemoryStore) -> None:
        store.create(widget("o"))
        store.delete(Widget, "o", "default", propagation="Foreground")
        assert not store.exists(Widget, "o", "default")

    def test_foreground_releases_when_blocking_ref_is_dropped(self, store: MemoryStore) -> None:
        owner = store.create(widget("o"))
        other = store.create(widget("other"))
        store.create(child("c", owner_ref(owner, block=True), owner_ref(other), finalizers=["x/f"]))
        store.delete(Widget, "o", "default", propagation="Foreground")
        # c has a live owner, so the collector only drops its reference to o; then o is free to go.
        assert not store.exists(Widget, "o", "default")
        c = store.get(Widget, "c", "default")
        assert [r.name for r in c.metadata.owner_references] == ["other"] and c.metadata.deletion_timestamp is None

    def test_orphan_keeps_dependents_without_the_reference(self, store: MemoryStore) -> None:
        owner = store.create(widget("o"))
        store.create(child("c", owner_ref(owner)))
        store.delete(Widget, "o", "default", propagation="Orphan")
        assert not store.exists(Widget, "o", "default")
        assert store.get(Widget, "c", "default").metadata.owner_references == []


# ---- patch -----------------------------------------------------------------------------------------------


class TestPatch:
    def test_merge_patch(self, store: MemoryStore) -> None:
        store.create(widget("a", metadata={"name": "a", "namespace": "default", "labels": {"x": "1", "y": "2"}}))
        out = store.patch(Widget, "a", "default", {"metadata": {"labels": {"x": None, "z": "3"}}, "spec": {"size": 4}})
        assert out.metadata.labels == {"y": "2", "z": "3"} and out.spec.size == 4 and out.metadata.generation == 2
        assert store.patch(Widget, "a", "default", '{"spec": {"items": ["p"]}}', "strategic").spec.items == ["p"]

    def test_json_patch_and_failed_test(self, store: MemoryStore) -> None:
        store.create(widget("a", spec={"items": ["a", "b"]}))
        out = store.patch(
            Widget,
            "a",
            "default",
            [{"op": "add", "path": "/spec/items/-", "value": "c"}, {"op": "test", "path": "/spec/size", "value": 1}],
            "json",
        )
        assert out.spec.items == ["a", "b", "c"]
        with pytest.raises(Invalid) as e:
            store.patch(
                Widget,
                "a",
                "default",
                [{"op": "replace", "path": "/spec/size", "value": 9}, {"op": "test", "path": "/spec/size", "value": 1}],
                "json",
            )
        assert e.value.causes[0].field == "/spec/size"
        assert store.get(Widget, "a", "default").spec.size == 1  # all or nothing
        with pytest.raises(BadRequest):
            store.patch(Widget, "a", "default", [{"op": "frobnicate", "path": "/x"}], "json")
        with pytest.raises(Invalid):
            store.patch(Widget, "a", "default", [{"op": "remove", "path": "/spec/missing"}], "json")

    def test_patch_to_an_invalid_object(self, store: MemoryStore) -> None:
        store.create(widget("a"))
        with pytest.raises(Invalid) as e:
            store.patch(Widget, "a", "default", {"spec": {"size": "big", "bogus": 1}})
        assert {c.field for c in e.value.causes} == {"spec.size", "spec.bogus"}
        with pytest.raises(Invalid, match=r"must be <= 100"):
            store.patch(Widget, "a", "default", {"spec": {"size": 1000}})

    def test_resource_version_in_a_patch_is_a_precondition(self, store: MemoryStore) -> None:
        store.create(widget("a"))
        with pytest.raises(Conflict):
            store.patch(Widget, "a", "default", {"metadata": {"resourceVersion": "999"}, "spec": {"size": 2}})
        assert (
            store.patch(Widget, "a", "default", {"metadata": {"resourceVersion": "1"}, "spec": {"size": 2}}).spec.size
            == 2
        )

    def test_status_subresource_patch(self, store: MemoryStore) -> None:
        store.create(widget("a"))
        out = store.patch(
            Widget, "a", "default", {"status": {"phase": "Ready"}, "spec": {"size": 7}}, subresource="status"
        )
        assert out.status == WidgetStatus(phase="Ready") and out.spec.size == 1
        out = store.patch(Widget, "a", "default", {"status": {"phase": "Lost"}})
        assert out.status == WidgetStatus(phase="Ready")

    def test_patch_cannot_rename_and_no_op_patch_commits_nothing(self, store: MemoryStore) -> None:
        store.create(widget("a"))
        with pytest.raises(BadRequest, match=r"does not match the name"):
            store.patch(Widget, "a", "default", {"metadata": {"name": "b"}})
        assert store.patch(Widget, "a", "default", {"spec": {"size": 1}}).metadata.resource_version == "1"
        with pytest.raises(NotFound):
            store.patch(Widget, "zz", "default", {})


# ---- watch -----------------------------------------------------------------------------------------------


class TestWatch:
    def test_events_in_commit_order_with_old_objects(self, store: MemoryStore) -> None:
        events = record(store)
        gadgets = record(store, [Gadget])
        w = store.create(widget("a")).deepcopy()
        w.spec.size = 2
        store.update(w)
        store.create(Gadget.new("g"))
        store.delete(Widget, "a", "default")
        assert [(e.type, e.object.kind, e.object.metadata.resource_version) for e in events] == [
            ("ADDED", "Widget", "1"),
            ("MODIFIED", "Widget", "2"),
            ("ADDED", "Gadget", "3"),
            ("DELETED", "Widget", "4"),
        ]
        assert events[0].old is None
        assert events[1].old is not None and events[1].old.spec.size == 1  # type: ignore[attr-defined]
        assert [e.object.name for e in gadgets] == ["g"]

    def test_unsubscribe(self, store: MemoryStore) -> None:
        events: list[WatchEvent] = []
        stop = store.subscribe(events.append)
        store.create(widget("a"))
        stop()
        store.create(widget("b"))
        assert len(events) == 1

    def test_writes_from_a_listener_are_delivered_after_the_current_event(self, store: MemoryStore) -> None:
        seen: list[str] = []

        def react(ev: WatchEvent) -> None:
            seen.append(f"{ev.type}:{ev.object.name}")
            if ev.type == "ADDED" and ev.object.name == "a":
                store.create(widget("from-listener"))

        other: list[str] = []
        store.subscribe(react)
        store.subscribe(lambda ev: other.append(f"{ev.type}:{ev.object.name}"))
        store.create(widget("a"))
        assert seen == other == ["ADDED:a", "ADDED:from-listener"]

    def test_cascade_events_are_all_delivered_in_order(self, store: MemoryStore) -> None:
        root = store.create(widget("root"))
        store.create(child("c", owner_ref(root)))
        events = record(store)
        store.delete(Widget, "root", "default")
        rvs = [int(e.object.metadata.resource_version or 0) for e in events]
        assert [(e.type, e.object.name) for e in events] == [("DELETED", "root"), ("DELETED", "c")] and rvs == sorted(
            rvs
        )

    def test_events_since(self, store: MemoryStore) -> None:
        store.create(widget("a"))
        _, rv = store.list_with_rv(Widget)
        store.create(widget("b", "other"))
        store.create(Gadget.new("g"))
        store.delete(Widget, "a", "default")
        assert [(e.type, e.object.name) for e in store.events_since(Widget, rv)] == [("ADDED", "b"), ("DELETED", "a")]
        assert [e.object.name for e in store.events_since(Widget, rv, "other")] == ["b"]
        assert store.events_since(Widget, store.current_resource_version()) == []
        assert [(e.type, e.object.name) for e in store.events_since(Widget, "0")] == [("ADDED", "b")]
        with pytest.raises(ResourceVersionTooLarge):
            store.events_since(Widget, "100")
        with pytest.raises(BadRequest):
            store.events_since(Widget, "abc")

    def test_gone_when_older_than_history(self, clock: Any) -> None:
        s = MemoryStore(clock=clock, history=3)
        for i in range(5):
            s.create(widget(f"w{i}"))
        assert [e.object.name for e in s.events_since(Widget, "2")] == ["w2", "w3", "w4"]
        with pytest.raises(Gone, match=r"too old resource version"):
            s.events_since(Widget, "1")


# ---- mutation detector -----------------------------------------------------------------------------------


class TestMutationDetector:
    def test_in_place_edit_is_caught_with_the_name(self, store: MemoryStore) -> None:
        assert store.detect_mutation  # tests/conftest.py turns it on
        w = store.create(widget("a"))
        w.spec.size = 50
        with pytest.raises(SnapshotMutated, match=r'Widget "default/a" in store "host" was modified in place'):
            store.get(Widget, "a", "default")
        with pytest.raises(SnapshotMutated):
            store.verify_snapshots()

    def test_caught_on_write_too(self, store: MemoryStore) -> None:
        obj = widget("a")
        obj.metadata.labels["app"] = "x"
        w = store.create(obj)
        w.metadata.labels["oops"] = "1"
        with pytest.raises(SnapshotMutated):
            store.patch(Widget, "a", "default", {"spec": {"size": 3}})

    def test_an_empty_collection_of_a_snapshot_refuses_edits(self, store: MemoryStore) -> None:
        # Every stored object shares one empty dict/list (compact.py): an edit would reach all of them.
        w = store.create(widget("a"))
        with pytest.raises(TypeError, match="read-only"):
            w.metadata.labels["oops"] = "1"
        with pytest.raises(TypeError, match="read-only"):
            w.metadata.finalizers.append("x")
        copy = w.deepcopy()
        copy.metadata.labels["ok"] = "1"
        copy.metadata.finalizers.append("x")
        assert store.update(copy).metadata.labels == {"ok": "1"}
        assert store.get(Widget, "a", "default").metadata.finalizers == ["x"]

    def test_off_means_no_checks(self, clock: Any) -> None:
        s = MemoryStore(clock=clock, detect_mutation=False)
        w = s.create(widget("a"))
        w.spec.size = 50
        assert s.get(Widget, "a", "default").spec.size == 50
