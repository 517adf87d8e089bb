"""The SFC agent's node-local index (`sfc.NodeObjects`): what it answers must equal the label-selected store
list filtered by node (DPF's read) under any sequence of creates, relabels, node moves and deletes, whether
the watch delivers every event (production) or only the node's own (the twin's NodeEventRouter)."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any, cast

import pytest
from test_sfc_agent import NODE, NS, World, _chain_world

from dpf_core.api.svc import ServiceChain, ServiceInterface
from dpf_core.controllers import sfc
from dpf_core.runtime import Context
from dpf_core.store import MemoryStore
from dpf_core.store.protocol import WatchEvent

OTHER = "dpu-n2"
LABELS = [{"port": "a"}, {"port": "b"}, {"uplink": "p0"}, {"port": "a", "x": "1"}]


def _listed(store: MemoryStore, namespace: str | None, labels: dict[str, str] | None) -> list[str]:
    return [
        si.name
        for si in store.list(ServiceInterface, namespace, label_selector=labels)
        if si.spec.node == NODE
    ]


def _indexed(objects: sfc.NodeObjects, ctx: Context, namespace: str | None, labels: dict[str, str] | None) -> list[str]:
    found = objects.interfaces_on_node(ctx, namespace, labels)
    assert found is not None
    return [si.name for si in found]


def _si(name: str, ns: str, node: str, labels: dict[str, str]) -> ServiceInterface:
    return ServiceInterface.new(
        name, ns, metadata={"name": name, "namespace": ns, "labels": labels},
        spec={"node": node, "interfaceType": "pf", "pf": {"pfID": 0}},
    )


@pytest.mark.parametrize("routed", [False, True], ids=["every-event", "own-node-events"])
@pytest.mark.parametrize("seed", range(3))
def test_index_equals_the_node_filtered_store_list(seed: int, routed: bool) -> None:
    rng = random.Random(seed)
    store = MemoryStore(name="dpu-cluster")
    objects = sfc.NodeObjects(NODE)

    def feed(ev: WatchEvent) -> None:
        # The twin's router hands an agent only events whose object is on its node now.
        if not routed or ev.object.spec.node == NODE:  # type: ignore[attr-defined]
            objects.on_interface(ev)

    store.subscribe(feed, [ServiceInterface])
    objects.interfaces_live = True
    ctx = cast(Context, SimpleNamespace(client=store))
    names = [f"si-{i}" for i in range(8)]
    for _ in range(60):
        name, ns = rng.choice(names), rng.choice([NS, "other-ns"])
        current = store.try_get(ServiceInterface, name, ns)
        op = rng.random()
        if current is None:
            store.create(_si(name, ns, rng.choice([NODE, OTHER]), dict(rng.choice(LABELS))))
        elif op < 0.35:
            moved = current.deepcopy()
            moved.spec.node = OTHER if current.spec.node == NODE else NODE
            store.update(moved)
        elif op < 0.7:
            relabelled = current.deepcopy()
            relabelled.metadata.labels = dict(rng.choice(LABELS))
            store.update(relabelled)
        else:
            store.delete(ServiceInterface, name, ns)
        for namespace in (NS, "other-ns", None):
            for labels in [None, *LABELS]:
                assert _indexed(objects, ctx, namespace, labels) == _listed(store, namespace, labels)
    if not routed:
        # Every event delivered: nothing off this node is held at all.
        assert all(si.spec.node == NODE for si in objects.interfaces.values())


def test_not_live_means_no_answer() -> None:
    objects = sfc.NodeObjects(NODE)
    ctx = cast(Context, SimpleNamespace(client=MemoryStore(name="c")))
    assert objects.interfaces_on_node(ctx, NS, {"port": "a"}) is None
    assert objects.chain_cookies(ctx) is None


def test_an_older_replayed_copy_does_not_replace_a_newer_one() -> None:
    store = MemoryStore(name="c")
    objects = sfc.NodeObjects(NODE)
    first = store.create(_si("a", NS, NODE, {"port": "a"}))
    relabelled = first.deepcopy()
    relabelled.metadata.labels = {"port": "b"}
    second = store.update(relabelled)
    objects.on_interface(WatchEvent("ADDED", second))
    objects.on_interface(WatchEvent("ADDED", first))
    assert objects.interfaces[(NS, "a")].metadata.labels == {"port": "b"}


def test_chain_cookies_are_the_live_chains_of_this_node() -> None:
    store = MemoryStore(name="c")
    objects = sfc.NodeObjects(NODE)
    store.subscribe(objects.on_chain, [ServiceChain])
    objects.chains_live = True
    ctx = cast(Context, SimpleNamespace(client=store))
    for name, node in (("mine", NODE), ("theirs", OTHER)):
        store.create(ServiceChain.new(name, NS, spec={"node": node, "switches": [{"ports": [{"serviceInterface": {"matchLabels": {"port": "a"}}}]}]}))
    assert objects.chain_cookies(ctx) == {sfc.chain_cookie(NS, "mine")}
    store.delete(ServiceChain, "mine", NS)
    assert objects.chain_cookies(ctx) == set()


# --- through the agent's controllers --------------------------------------------------------------------


def test_a_member_moved_to_another_node_no_longer_resolves() -> None:
    w = _chain_world()
    w.chain("chain", [[{"uplink": "p0"}, {"port": "pf0"}]])
    w.run()
    assert w.ready(ServiceChain, "chain") == ("True", "Success")
    moved = w.store.get(ServiceInterface, "pf0", NS).deepcopy()
    moved.spec.node = OTHER
    w.store.update(moved)
    w.run(5)
    assert w.ready(ServiceChain, "chain") == ("False", "Pending")


def test_stale_sweep_keeps_a_cookie_of_another_nodes_chain() -> None:
    """The shortcut (every cookie is one of this node's chains) must not change what the sweep removes: a
    cookie of a chain on another node is kept, as DPF's list of every chain keeps it."""
    w = _chain_world()
    w.chain("chain", [[{"uplink": "p0"}, {"port": "pf0"}]])
    w.chain("elsewhere", [[{"uplink": "p0"}]], node=OTHER)
    w.run()
    theirs = sfc.chain_cookie(NS, "elsewhere")
    w.ovs.flows["br-sfc"].append((theirs, f"cookie={theirs}, table=0, priority=20, in_port=1 actions=drop"))
    w.ovs.flows["br-sfc"].append((778, "cookie=778, table=0, priority=20, in_port=1 actions=drop"))
    w.run(61)
    assert {c for c, _ in w.ovs.flows["br-sfc"]} == {sfc.chain_cookie(NS, "chain"), theirs}


def test_stale_sweep_sees_ports_of_interfaces_created_after_start() -> None:
    w: Any = World()
    w.run()
    w.si("pf1", {"interfaceType": "pf", "pf": {"pfID": 1}})
    w.run(61)
    assert "pf1hpf" in w.ovs.bridges["br-sfc"]
    w.store.delete(ServiceInterface, "pf1", NS)
    w.run(61)
    assert "pf1hpf" not in w.ovs.bridges["br-sfc"]
