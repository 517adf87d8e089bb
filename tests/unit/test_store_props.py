"""Properties of the store over arbitrary sequences of writes (hypothesis)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field

from dpf_core.api.meta import KindInfo, KubeObject, Model
from dpf_core.api.registry import register
from dpf_core.errors import Conflict, NotFound
from dpf_core.store import MemoryStore, WatchEvent

PROPS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class ItemSpec(Model):
    value: int = 0


class ItemStatus(Model):
    seen: int = 0


class Item(KubeObject):
    KIND = KindInfo(group="props.test.dpf.local", version="v1", kind="Item", plural="items", singular="item", dpf=False)
    spec: ItemSpec = Field(default_factory=lambda: ItemSpec())
    status: ItemStatus | None = None


@pytest.fixture(scope="module", autouse=True)
def _kinds(registry_sandbox: None) -> Iterator[None]:
    register(Item)
    yield


NAMES = ["a", "b", "c", "d"]
NAMESPACES = ["n1", "n2"]

op_strategy = st.one_of(
    st.tuples(st.just("create"), st.sampled_from(NAMES), st.sampled_from(NAMESPACES), st.booleans()),
    st.tuples(st.just("update"), st.sampled_from(NAMES), st.sampled_from(NAMESPACES), st.integers(0, 3)),
    st.tuples(st.just("status"), st.sampled_from(NAMES), st.sampled_from(NAMESPACES), st.integers(0, 3)),
    st.tuples(st.just("patch"), st.sampled_from(NAMES), st.sampled_from(NAMESPACES), st.integers(0, 3)),
    st.tuples(st.just("stale"), st.sampled_from(NAMES), st.sampled_from(NAMESPACES), st.integers(0, 3)),
    st.tuples(st.just("delete"), st.sampled_from(NAMES), st.sampled_from(NAMESPACES), st.booleans()),
    st.tuples(st.just("unfinalize"), st.sampled_from(NAMES), st.sampled_from(NAMESPACES), st.booleans()),
    st.tuples(st.just("checkpoint"), st.sampled_from(NAMES), st.sampled_from(NAMESPACES), st.booleans()),
)


def _wire_state(items: list[Item]) -> dict[tuple[str | None, str], dict[str, Any]]:
    return {(o.namespace, o.name): o.wire() for o in items}


def _apply(state: dict[tuple[str | None, str], dict[str, Any]], events: list[WatchEvent]) -> None:
    for ev in events:
        key = (ev.object.namespace, ev.object.name)
        if ev.type == "DELETED":
            state.pop(key)
        else:
            state[key] = ev.object.wire()


@PROPS
@given(st.lists(op_strategy, max_size=40))
def test_write_sequences(ops: list[tuple[str, str, str, Any]]) -> None:
    store = MemoryStore(clock=lambda: 1_700_000_000.0, seed=1)
    events: list[WatchEvent] = []
    store.subscribe(events.append)
    old_copies: dict[tuple[str, str], list[Item]] = {}
    checkpoints: list[tuple[str, dict[tuple[str | None, str], dict[str, Any]]]] = []
    last_rv = 0

    for op, name, ns, arg in ops:
        current = store.try_get(Item, name, ns)
        had_finalizers = current is not None and bool(current.metadata.finalizers)
        result: Item | None = None
        try:
            if op == "create":
                obj = Item.new(name, ns)
                if arg:
                    obj.metadata.finalizers = ["test/hold"]
                result = store.create(obj)
            elif op == "update" and current is not None:
                mine = current.deepcopy()
                mine.spec.value = arg
                result = store.update(mine)
            elif op == "status" and current is not None:
                mine = current.deepcopy()
                mine.status = ItemStatus(seen=arg)
                result = store.update_status(mine)
            elif op == "patch" and current is not None:
                result = store.patch(Item, name, ns, [{"op": "replace", "path": "/spec/value", "value": arg}], "json")
            elif op == "stale":
                # Any copy whose resourceVersion is not the stored one must conflict, whatever it changes.
                stale = [c for c in old_copies.get((ns, name), []) if current is not None and c.metadata.resource_version != current.metadata.resource_version]
                if stale:
                    mine = stale[arg % len(stale)].deepcopy()
                    mine.spec.value = 100 + arg
                    with pytest.raises(Conflict):
                        store.update(mine)
            elif op == "delete" and current is not None:
                store.delete(Item, name, ns)
                if had_finalizers:
                    assert store.exists(Item, name, ns), "an object with finalizers was removed by delete"
            elif op == "unfinalize" and current is not None and current.metadata.finalizers:
                result = store.patch(Item, name, ns, {"metadata": {"finalizers": None}})
            elif op == "checkpoint":
                items, list_rv = store.list_with_rv(Item)
                checkpoints.append((list_rv, _wire_state(items)))
        except Exception as err:  # only the API's own refusals are expected (create of an existing name)
            assert op == "create" and type(err).__name__ == "AlreadyExists", err
        if result is not None:
            result_rv = int(result.metadata.resource_version or 0)
            unchanged = current is not None and result.metadata.resource_version == current.metadata.resource_version
            assert unchanged or result_rv > last_rv, "a committed write did not get a newer resourceVersion"
            old_copies.setdefault((ns, name), []).append(result.deepcopy())
        after = store.try_get(Item, name, ns)
        if had_finalizers and after is None:
            assert op == "unfinalize", f"{op} removed an object that still had finalizers"
        last_rv = int(store.current_resource_version())

    # resourceVersion strictly increases over the committed writes, and every event carries its own.
    rvs = [int(e.object.metadata.resource_version or 0) for e in events]
    assert rvs == sorted(set(rvs))
    assert (rvs[-1] if rvs else 0) == int(store.current_resource_version())
    for e in events:
        if e.type == "DELETED":
            assert not e.object.metadata.finalizers

    # Replaying the watch from any checkpoint onto the list taken there rebuilds today's list.
    fresh = _wire_state(store.list(Item))
    for rv, state in checkpoints:
        replayed = dict(state)
        _apply(replayed, store.events_since(Item, rv))
        assert replayed == fresh
    store.verify_snapshots()


@st.composite
def forests(draw: st.DrawFn) -> tuple[list[list[int]], list[tuple[int, str]]]:
    n = draw(st.integers(1, 9))
    owners = [sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else [] for i in range(n)]
    deletes = draw(
        st.lists(st.tuples(st.integers(0, n - 1), st.sampled_from(["Background", "Foreground", "Orphan"])), min_size=1, max_size=4)
    )
    return owners, deletes


@PROPS
@given(forests())
def test_gc_removes_exactly_the_orphaned_dependents(case: tuple[list[list[int]], list[tuple[int, str]]]) -> None:
    owners, deletes = case
    store = MemoryStore(clock=lambda: 0.0, seed=3)
    objs: list[Item] = []
    for i, own in enumerate(owners):
        refs = [{"apiVersion": Item.KIND.api_version, "kind": "Item", "name": objs[j].name, "uid": objs[j].metadata.uid} for j in own]
        objs.append(store.create(Item.model_validate({"apiVersion": Item.KIND.api_version, "kind": "Item", "metadata": {"name": f"o{i}", "namespace": "n", "ownerReferences": refs}})))

    # The model: a removal drops the reference from each dependent; a dependent left with no reference
    # (that it had through owners, not through orphaning) is collected in turn.
    alive = set(range(len(owners)))
    refs_left = [set(o) for o in owners]
    for target, policy in deletes:
        if target not in alive:
            with pytest.raises(NotFound):
                store.delete(Item, f"o{target}", "n", propagation=policy)  # type: ignore[arg-type]
            continue
        store.delete(Item, f"o{target}", "n", propagation=policy)  # type: ignore[arg-type]
        if policy == "Orphan":
            alive.discard(target)
            for r in refs_left:
                r.discard(target)
            continue
        queue = [target]
        while queue:
            z = queue.pop()
            alive.discard(z)
            for x in sorted(alive):
                if z in refs_left[x]:
                    refs_left[x].discard(z)
                    if not refs_left[x]:
                        queue.append(x)

    assert {int(o.name[1:]) for o in store.list(Item)} == alive
    for o in store.list(Item):
        # No reference to a removed owner survives on a kept dependent.
        assert {int(r.name[1:]) for r in o.metadata.owner_references} == refs_left[int(o.name[1:])]


@PROPS
@given(st.integers(1, 6), st.integers(1, 20))
def test_gone_exactly_when_history_no_longer_covers_the_request(history: int, writes: int) -> None:
    store = MemoryStore(clock=lambda: 0.0, history=history)
    for i in range(writes):
        store.create(Item.new(f"i{i}", "n"))
    oldest_covered = max(0, writes - history)
    for rv in range(1, writes + 1):
        if rv < oldest_covered:
            with pytest.raises(Exception, match=r"too old resource version"):
                store.events_since(Item, str(rv))
        else:
            assert [e.object.name for e in store.events_since(Item, str(rv))] == [f"i{i}" for i in range(rv, writes)]
