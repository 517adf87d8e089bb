"""Session 5's services-path fast paths, each against the path it replaced on varied inputs:

- the SFC agent's Ready write builds only a new status (`sfc._ready_status` + `_write_status`) instead of
  copying the object (`mirror.editable` + `sfc._set_ready` + `mirror.write`);
- `sfc.NodeObjects` keeps its tables in key order (the programmed chains apart) until they change;
- `sfc.OvsView` reads OVS on its first lookup and builds a `PortRow` only for what a lookup returns;
- `mirror.with_metadata` / `editable` / `write` copy with `shallow_copy` instead of `model_copy`;
- the twin kubelet's `allocatable_of` parses one allocatable shape once.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from fractions import Fraction
from types import SimpleNamespace
from typing import Any, cast

import pytest

from dpf_core.api.conditions import TYPE_READY
from dpf_core.api.external import Node
from dpf_core.api.meta import Condition
from dpf_core.api.svc import ServiceChain, ServiceInterface
from dpf_core.controllers import mirror, sfc
from dpf_core.runtime import Context, Request
from dpf_core.store import MemoryStore
from dpf_core.store.protocol import WatchEvent
from dpf_sim import kubelet

NS = "default"
NODE = "dpu-n1"
NOW = "2026-11-28T00:00:00Z"
LATER = "2026-11-28T00:00:05Z"
OUTCOMES: list[tuple[Any, str, str]] = [
    ("True", "Success", ""),
    ("False", "Pending", "failed to find matching interface"),
    ("False", "Error", "failed to add flows: refused"),
    ("Unknown", "Pending", ""),
]


def _chain(name: str, labels: list[dict[str, str]], node: str = NODE, generation: int = 1) -> ServiceChain:
    sc = ServiceChain.new(
        name, NS,
        spec={"node": node, "switches": [{"ports": [{"serviceInterface": {"matchLabels": m}} for m in labels]}]},
    )
    sc.metadata.generation = generation
    return sc


def _si(name: str, labels: dict[str, str], node: str = NODE, generation: int = 1) -> ServiceInterface:
    si = ServiceInterface.new(
        name, NS, metadata={"name": name, "namespace": NS, "labels": labels},
        spec={"node": node, "interfaceType": "pf", "pf": {"pfID": 0}},
    )
    si.metadata.generation = generation
    return si


def _with_conditions(obj: Any, rng: random.Random) -> None:
    """A status as earlier passes may have left it: Ready or not, other conditions around it, stale generations."""
    conditions: list[Condition] = []
    for ctype in rng.sample(["Other", TYPE_READY, "Extra"], rng.randint(0, 3)):
        status, reason, message = rng.choice(OUTCOMES)
        conditions.append(Condition(type=ctype, status=status, reason=reason, message=message,
                                    last_transition_time=NOW, observed_generation=rng.choice([None, 1, 2])))
    obj.status.conditions = conditions
    obj.status.observed_generation = rng.choice([None, 1, 2])


# --- the Ready write ------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(40))
def test_ready_status_equals_set_ready_on_a_copy_and_leaves_the_snapshot_alone(seed: int) -> None:
    rng = random.Random(seed)
    obj: Any = rng.choice([_chain("c", [{"a": "1"}]), _si("s", {"a": "1"})])
    obj.metadata.generation = rng.choice([1, 2])
    _with_conditions(obj, rng)
    before = obj.wire()
    status, reason, message = rng.choice(OUTCOMES)

    old = mirror.editable(obj)
    sfc._set_ready(old, status, reason, message, LATER)
    new = sfc._ready_status(obj, status, reason, message, LATER)

    assert new.model_dump(by_alias=True) == old.status.model_dump(by_alias=True)
    assert obj.wire() == before  # the snapshot's conditions were copied before being edited, never edited
    assert (new == obj.status) == sfc._ready_as(obj, status, reason, message)


def _store_with(obj: Any) -> tuple[MemoryStore, Any]:
    store = MemoryStore(name="dpu-cluster")
    stored = store.create(obj)
    if obj.status.conditions or obj.status.observed_generation is not None:
        stored = store.update_status(stored.with_status(obj.status.model_copy(deep=True)))
    return store, stored


@pytest.mark.parametrize("finalize", [False, True])
@pytest.mark.parametrize("seed", range(12))
def test_new_write_path_stores_what_mirror_write_stores(seed: int, finalize: bool) -> None:
    """The same store calls, in the same order, with the same results (resourceVersions included)."""
    rng = random.Random(seed)
    template: Any = rng.choice([_si("s", {"a": "1"}), _chain("c", [{"a": "1"}])])
    _with_conditions(template, rng)
    outcome = rng.choice(OUTCOMES)
    results = []
    for path in ("old", "new"):
        store, snap = _store_with(template.deepcopy())
        ctx = cast(Context, SimpleNamespace(client=store))
        events: list[WatchEvent] = []
        store.subscribe(events.append)
        if path == "old":
            new = mirror.editable(snap)
            if finalize:
                new.metadata.finalizers.append(sfc.FINALIZER_SERVICE_INTERFACE)
            sfc._set_ready(new, *outcome, LATER)
            mirror.write(ctx, snap, new)
        else:
            current = snap
            if finalize:
                current = store.update(sfc.with_metadata(
                    snap, finalizers=[*snap.metadata.finalizers, sfc.FINALIZER_SERVICE_INTERFACE],
                    labels=dict(snap.metadata.labels)))
            sfc._write_status(ctx, current, sfc._ready_status(snap, *outcome, LATER))
        stored = store.get(type(snap), snap.name, NS)
        results.append((stored.wire(), [(e.type, e.object.metadata.resource_version) for e in events]))
    assert results[0] == results[1]


# --- NodeObjects' ordered views ------------------------------------------------------------------------


def _programmed(sc: ServiceChain) -> ServiceChain:
    out = sc.deepcopy()
    sfc._set_ready(out, "True", "Success", "", NOW)
    return out


@pytest.mark.parametrize("seed", range(10))
def test_node_objects_views_equal_sorting_the_tables_after_any_feed(seed: int) -> None:
    rng = random.Random(seed)
    objects = sfc.NodeObjects(NODE)
    objects.interfaces_live = objects.chains_live = True
    label_sets = [{"port": "a"}, {"port": "b"}, {"uplink": "p0"}]
    for rv in range(1, 81):
        name = f"o{rng.randint(0, 5)}"
        node = rng.choice([NODE, NODE, "dpu-n2"])
        etype = rng.choice(["ADDED", "MODIFIED", "MODIFIED", "DELETED"])
        obj: Any
        if rng.random() < 0.5:
            obj = _si(name, dict(rng.choice(label_sets)), node)
            obj.metadata.resource_version = str(rv)
            objects.on_interface(WatchEvent(etype, obj, None))
        else:
            obj = _chain(name, [rng.choice(label_sets), rng.choice(label_sets)], node)
            if rng.random() < 0.6:
                obj = _programmed(obj)
            obj.metadata.resource_version = str(rv)
            objects.on_chain(WatchEvent(etype, obj, None))
        if rng.random() < 0.05:
            objects.reset(rng.choice([ServiceInterface, ServiceChain]))
            objects.interfaces_live = objects.chains_live = True
        with objects.lock:
            assert objects._interfaces_in_order() == sorted(objects.interfaces.items())
            assert objects._programmed_in_order() == sorted(
                (k, sc) for k, sc in objects.chains.items() if sfc._programmed(sc))
        every = [Request(ns or None, n) for (ns, n), sc in sorted(objects.chains.items()) if sfc._programmed(sc)]
        assert objects.chain_requests() == every
        # A ServiceInterface appearing wakes the programmed chains of its namespace whose ports select it.
        probe = _si("probe", dict(rng.choice(label_sets)))
        woken = objects.chains_for_interface(WatchEvent("ADDED", probe, None))
        assert woken == [r for r in every if sfc._selects_any(objects.chains[(NS, r.name)], [probe.metadata.labels])]


# --- OvsView -------------------------------------------------------------------------------------------


class _EagerView:
    """The view as it was: every row of every bridge as a PortRow, read when built."""

    def __init__(self, ovs: Any, bridges: tuple[str, ...]) -> None:
        self.rows: dict[str, list[sfc.PortRow]] = {}
        for bridge in bridges:
            try:
                self.rows[bridge] = [sfc.PortRow.of(r) for r in ovs.ports(bridge)]
            except Exception:
                if bridge == sfc.SFC_BRIDGE:
                    raise
                self.rows[bridge] = []

    def find(self, bridge: str, name: str) -> sfc.PortRow | None:
        return next((r for r in self.rows.get(bridge, ()) if r.name == name), None)

    def ofport_of(self, key: str) -> int:
        matches = [(b, r) for b, rows in self.rows.items() for r in rows
                   if r.iface_external_ids.get(sfc.EXTERNAL_ID_DPF_ID) == key]
        if len(matches) != 1:
            raise LookupError(f"failed to find matching interface with external_ids :map[dpf-id:{key}]")
        bridge, row = matches[0]
        if bridge != sfc.SFC_BRIDGE:
            patch = f"p{row.name}brsfc"
            found = self.find(sfc.SFC_BRIDGE, patch)
            if found is None:
                raise LookupError(f"port {row.name} or {patch} not found in {sfc.SFC_BRIDGE}")
            row = found
        if row.ofport is None or row.ofport < 0:
            raise LookupError(f"interface {row.name} Ofport is nil")
        return row.ofport


class _RowsOvs:
    def __init__(self, bridges: Mapping[str, list[dict[str, Any]]]) -> None:
        self.bridges = bridges
        self.reads = 0

    def ports(self, bridge: str) -> list[dict[str, Any]]:
        self.reads += 1
        if bridge not in self.bridges:
            raise KeyError(bridge)
        return [dict(r) for r in self.bridges[bridge]]


def _row(rng: random.Random, name: str, key: str | None) -> dict[str, Any]:
    """The row spellings the agent accepts: Interface ids apart or merged, ofport int / numeric str / none."""
    ids = {sfc.EXTERNAL_ID_DPF_ID: key} if key is not None else {}
    row: dict[str, Any] = {"name": name, "ofport": rng.choice([1, 7, "12", -1, None, "x", 30])}
    style = rng.randrange(4)
    if style == 0:
        row["iface_external_ids"] = ids
        row["port_external_ids"] = {"dpf-type": "physical"} if rng.random() < 0.3 else {}
    elif style == 1:
        row["interface_external_ids"] = list(ids.items())  # pairs, as a raw OVSDB map reads
    elif style == 2:
        row["external_ids"] = ids
    else:
        row["external_ids"] = {}
        row["iface_external_ids"] = None if key is None else ids
    return row


@pytest.mark.parametrize("seed", range(30))
def test_lazy_ovs_view_answers_as_the_eager_one(seed: int) -> None:
    rng = random.Random(seed)
    keys = [f"{NS}/si-{i}" for i in range(4)]
    bridges: dict[str, list[dict[str, Any]]] = {sfc.SFC_BRIDGE: [], sfc.HBN_BRIDGE: []}
    for i in range(rng.randint(0, 6)):
        bridges[sfc.SFC_BRIDGE].append(_row(rng, f"port{i}", rng.choice([*keys, None])))
    for i in range(rng.randint(0, 3)):
        name = f"hbn{i}"
        bridges[sfc.HBN_BRIDGE].append(_row(rng, name, rng.choice([*keys, None])))
        if rng.random() < 0.7:
            bridges[sfc.SFC_BRIDGE].append(_row(rng, f"p{name}brsfc", None))
    if rng.random() < 0.2:
        del bridges[sfc.HBN_BRIDGE]  # not an HBN setup
    ovs = _RowsOvs(bridges)
    lookup = (sfc.SFC_BRIDGE, sfc.HBN_BRIDGE)
    lazy, eager = sfc.OvsView(cast(Any, ovs), lookup), _EagerView(ovs, lookup)
    for key in [*keys, "elsewhere/none"]:
        answers = []
        for view in (eager, lazy):
            try:
                answers.append(view.ofport_of(key))
            except LookupError as e:
                answers.append(str(e))
        assert answers[0] == answers[1]
    for name in ["port0", "port3", "phbn0brsfc", "absent"]:
        assert lazy.find(sfc.SFC_BRIDGE, name) == eager.find(sfc.SFC_BRIDGE, name)
    assert lazy.rows == eager.rows


def test_ovs_view_reads_nothing_until_asked_and_each_bridge_once() -> None:
    ovs = _RowsOvs({sfc.SFC_BRIDGE: [{"name": "p0", "ofport": 1, "iface_external_ids": {"dpf-id": "ns/a"}}]})
    view = sfc.OvsView(cast(Any, ovs), (sfc.SFC_BRIDGE, sfc.HBN_BRIDGE))
    assert ovs.reads == 0
    assert view.ofport_of("ns/a") == 1
    view.find(sfc.SFC_BRIDGE, "p0")
    assert ovs.reads == 2  # br-sfc, and br-hbn (absent here) once


def test_ovs_view_without_br_sfc_still_raises() -> None:
    view = sfc.OvsView(cast(Any, _RowsOvs({})), (sfc.SFC_BRIDGE,))
    with pytest.raises(KeyError):
        view.ofport_of("ns/a")


# --- mirror's copies -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(10))
def test_with_metadata_and_editable_equal_model_copy_and_share_the_rest(seed: int) -> None:
    rng = random.Random(seed)
    si = _si("s", {"a": str(seed)})
    si.metadata.finalizers = ["f"] * rng.randint(0, 2)
    _with_conditions(si, rng)
    before = si.wire()
    changes = rng.choice([{"labels": {"b": "2"}}, {"finalizers": ["x"]}, {"labels": {}, "finalizers": []}])
    fast = mirror.with_metadata(si, **changes)
    slow = si.model_copy(update={"metadata": si.metadata.model_copy(update=changes)})
    assert fast.wire() == slow.wire()
    assert fast.spec is si.spec and fast.metadata is not si.metadata
    ed = mirror.editable(si)
    ed.metadata.labels["new"] = "1"
    ed.metadata.finalizers.append("g")
    ed.status.conditions.clear()
    assert si.wire() == before  # editable's own parts are copies


# --- the kubelet's allocatable ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "allocatable",
    [{}, {"cpu": "14", "memory": "28Gi"}, {"cpu": "500m", "nvidia.com/bf_sf": 4}, {"memory": "1.5Gi", "cpu": 2}],
)
def test_allocatable_of_parses_as_before_and_hands_out_its_own_dict(allocatable: dict[str, Any]) -> None:
    node = Node.new("n1", status={"allocatable": allocatable})
    expected = None if not allocatable else {
        k: kubelet.parse_quantity(v if isinstance(v, int) else str(v)) for k, v in allocatable.items()
    }
    first = kubelet.allocatable_of(node)
    assert first == expected and (first is None or list(first) == list(allocatable))
    if first is not None:
        for k in first:
            first[k] -= Fraction(1)  # a pass subtracting its pods' requests
        assert kubelet.allocatable_of(node) == expected
