"""The SFC node agent against a small in-test Ovs: ports by interface type, chain flows, cleanup and the sweep."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from dpf_core.api.external import Pod
from dpf_core.api.meta import Condition
from dpf_core.api.svc import FINALIZER_SERVICE_INTERFACE, ServiceChain, ServiceInterface
from dpf_core.controllers import sfc
from dpf_core.controllers.options import SfcOptions
from dpf_core.ports import Ports
from dpf_core.runtime import Manager, ManualClock, Request, SyncDriver
from dpf_core.store import MemoryStore
from dpf_core.store.protocol import WatchEvent

NS = "default"
NODE = "dpu-n1"


class FakeOvs:
    """Bridges of rows (ofport = lowest free from 1) and flows kept as (cookie, text)."""

    def __init__(self, bridges: tuple[str, ...] = ("br-sfc", "br-ovn")) -> None:
        self.bridges: dict[str, dict[str, dict[str, Any]]] = {b: {} for b in bridges}
        self.flows: dict[str, list[tuple[int, str]]] = {b: [] for b in bridges}
        self.bundles: list[tuple[str, list[str]]] = []
        self.deleted_cookies: list[int] = []
        self.fail_bundles = False

    def ensure_port(
        self,
        bridge: str,
        port: str,
        iface_type: str,
        *,
        iface_external_ids: Mapping[str, str] | None = None,
        port_external_ids: Mapping[str, str] | None = None,
        options: Mapping[str, str] | None = None,
        ofport_request: int | None = None,
    ) -> None:
        rows = self.bridges[bridge]
        row = rows.get(port)
        if row is None:
            used = {r["ofport"] for b in self.bridges.values() for r in b.values()}
            ofport = ofport_request or next(i for i in range(1, 65280) if i not in used)
            row = rows[port] = {
                "name": port, "type": iface_type, "ofport": ofport,
                "iface_external_ids": {}, "port_external_ids": {}, "options": {},
            }
        row["iface_external_ids"].update(iface_external_ids or {})
        row["port_external_ids"].update(port_external_ids or {})
        row["options"].update(options or {})

    def delete_port(self, bridge: str, port: str) -> None:
        del self.bridges[bridge][port]

    def ports(self, bridge: str) -> list[dict[str, Any]]:
        if bridge not in self.bridges:
            raise KeyError(f"no bridge {bridge}")
        return [dict(r) for r in self.bridges[bridge].values()]

    def add_flows_bundle(self, bridge: str, flows: list[str]) -> None:
        if self.fail_bundles:
            raise RuntimeError("ovs-ofctl: connection refused")
        self.bundles.append((bridge, list(flows)))
        kept = [f for f in self.flows[bridge] if f[1] not in flows]
        self.flows[bridge] = kept + [(int(f.split(",")[0].removeprefix("cookie=")), f) for f in flows]

    def del_flows_cookie(self, bridge: str, cookie: int) -> None:
        self.deleted_cookies.append(cookie)
        self.flows[bridge] = [f for f in self.flows[bridge] if f[0] != cookie]

    def dump_flows(self, bridge: str) -> list[str]:
        return ["NXST_FLOW reply (xid=0x4):"] + [
            f" cookie={hex(c)}, duration=1.0s, table=0, n_packets=0, n_bytes=0, priority=20 actions=drop"
            for c, _ in self.flows[bridge]
        ]

    def ofport(self, bridge: str, port: str) -> int:
        return int(self.bridges[bridge][port]["ofport"])


class World:
    def __init__(self, ovs: FakeOvs | None = None, options: SfcOptions | None = None) -> None:
        self.clock = ManualClock()
        self.store = MemoryStore(clock=self.clock.now, name="dpu-cluster")
        self.ovs = ovs or FakeOvs()
        # The physical uplink the DPUFlavor's OVS script creates.
        self.ovs.ensure_port("br-sfc", "p0", "dpdk", port_external_ids={"dpf-type": "physical"})
        self.mgr = Manager(self.store, self.clock, ports=Ports(ovs=self.ovs))
        for c in sfc.controllers(NODE, stale_period=60, options=options):
            self.mgr.add(c)
        self.driver = SyncDriver(self.mgr)

    def run(self, seconds: float = 1) -> int:
        return self.driver.run_for(seconds, max_steps=5000).errors

    def si(self, name: str, spec: dict[str, Any], labels: dict[str, str] | None = None, node: str = NODE) -> None:
        self.store.create(
            ServiceInterface.new(
                name, NS, metadata={"name": name, "namespace": NS, "labels": labels or {}}, spec={"node": node, **spec}
            )
        )

    def chain(self, name: str, switches: list[list[dict[str, str]]], node: str = NODE) -> None:
        spec = {
            "node": node,
            "switches": [{"ports": [{"serviceInterface": {"matchLabels": m}} for m in sw]} for sw in switches],
        }
        self.store.create(ServiceChain.new(name, NS, spec=spec))

    def ready(self, cls: type[Any], name: str) -> tuple[str, str]:
        obj = self.store.get(cls, name, NS)
        [c] = [c for c in obj.status.conditions if c.type == "Ready"]
        assert c.observed_generation == obj.metadata.generation
        return c.status, c.reason


def test_fnv1a_64_matches_go_hash_fnv() -> None:
    assert sfc.fnv1a_64("") == 0xCBF29CE484222325
    assert sfc.fnv1a_64("a") == 0xAF63DC4C8601EC8C
    assert sfc.fnv1a_64("foobar") == 0x85944171F73967E8
    assert sfc.chain_cookie("default", "chain") == sfc.fnv1a_64("default/chain")


def test_chain_flows_text_is_dpfs() -> None:
    c = 42
    assert sfc.chain_flows(c, ["5"]) == []
    assert sfc.chain_flows(c, ["5", "7", "9"]) == [
        "cookie=42, table=0, priority=20, in_port=5 actions="
        "learn(cookie=42,idle_timeout=10,table=0,priority=30,in_port=7,dl_dst=dl_src,output:NXM_OF_IN_PORT[]),"
        "learn(cookie=42,idle_timeout=10,table=0,priority=30,in_port=9,dl_dst=dl_src,output:NXM_OF_IN_PORT[]),"
        "output:7,output:9",
        "cookie=42, table=0, priority=20, in_port=7 actions="
        "learn(cookie=42,idle_timeout=10,table=0,priority=30,in_port=5,dl_dst=dl_src,output:NXM_OF_IN_PORT[]),"
        "learn(cookie=42,idle_timeout=10,table=0,priority=30,in_port=9,dl_dst=dl_src,output:NXM_OF_IN_PORT[]),"
        "output:5,output:9",
        "cookie=42, table=0, priority=20, in_port=9 actions="
        "learn(cookie=42,idle_timeout=10,table=0,priority=30,in_port=5,dl_dst=dl_src,output:NXM_OF_IN_PORT[]),"
        "learn(cookie=42,idle_timeout=10,table=0,priority=30,in_port=7,dl_dst=dl_src,output:NXM_OF_IN_PORT[]),"
        "output:5,output:7",
    ]


def test_service_interfaces_become_ports_by_type() -> None:
    w = World()
    w.si("phys", {"interfaceType": "physical", "physical": {"interfaceName": "p1"}})
    w.si("pf", {"interfaceType": "pf", "pf": {"pfID": 0}})
    w.si("vf", {"interfaceType": "vf", "vf": {"pfID": 1, "vfID": 3, "parentInterfaceRef": "pf"}})
    w.si("ovn", {"interfaceType": "ovn"})
    w.si("vlan", {"interfaceType": "vlan", "vlan": {"vlanID": 10, "parentInterfaceRef": "p1"}})
    w.si("other-node", {"interfaceType": "pf", "pf": {"pfID": 1}}, node="dpu-n2")
    assert w.run() == 0
    sfc_ports = w.ovs.bridges["br-sfc"]
    assert sorted(sfc_ports) == ["p0", "p1", "pf0hpf", "pf1vf3", "puplinkbrsfc"]
    assert sfc_ports["p1"]["iface_external_ids"] == {"dpf-id": "default/phys"}
    assert sfc_ports["p1"]["port_external_ids"] == {"dpf-type": "physical"}
    assert (sfc_ports["pf0hpf"]["type"], sfc_ports["pf0hpf"]["iface_external_ids"]) == ("dpdk", {"dpf-id": "default/pf"})
    assert sfc_ports["pf1vf3"]["port_external_ids"] == {}
    peer = sfc_ports["puplinkbrsfc"]
    assert (peer["type"], peer["options"], peer["iface_external_ids"]) == (
        "patch", {"peer": "puplinkbrovn"}, {"dpf-id": "default/ovn"},
    )
    assert w.ovs.bridges["br-ovn"]["puplinkbrovn"]["options"] == {"peer": "puplinkbrsfc"}
    for name in ("phys", "pf", "vf", "ovn"):
        si = w.store.get(ServiceInterface, name, NS)
        assert si.metadata.finalizers == [FINALIZER_SERVICE_INTERFACE]
        assert w.ready(ServiceInterface, name) == ("True", "Success")
    assert w.ready(ServiceInterface, "vlan") == ("False", "Failure")
    assert w.store.get(ServiceInterface, "other-node", NS).metadata.finalizers == []


def test_deleting_a_service_interface_removes_its_ports() -> None:
    w = World()
    w.si("ovn", {"interfaceType": "ovn"})
    w.si("vf", {"interfaceType": "vf", "vf": {"pfID": 0, "vfID": 1, "parentInterfaceRef": "pf"}})
    w.run()
    w.store.delete(ServiceInterface, "ovn", NS)
    w.store.delete(ServiceInterface, "vf", NS)
    w.run()
    assert w.store.list(ServiceInterface, NS) == []
    assert sorted(w.ovs.bridges["br-sfc"]) == ["p0"]
    assert w.ovs.bridges["br-ovn"] == {}


def _chain_world(options: SfcOptions | None = None) -> World:
    w = World(options=options)
    w.si("p0", {"interfaceType": "physical", "physical": {"interfaceName": "p0"}}, labels={"uplink": "p0"})
    w.si("pf0", {"interfaceType": "pf", "pf": {"pfID": 0}}, labels={"port": "pf0"})
    w.si("vf1", {"interfaceType": "vf", "vf": {"pfID": 0, "vfID": 1, "parentInterfaceRef": "pf0"}}, labels={"port": "vf1"})
    w.si("p0-other", {"interfaceType": "physical", "physical": {"interfaceName": "p0"}}, labels={"uplink": "p0"}, node="n2")
    return w


def test_chain_programs_one_bundle_per_switch_and_labels_members() -> None:
    w = _chain_world()
    w.chain("chain", [[{"uplink": "p0"}, {"port": "pf0"}, {"port": "vf1"}], [{"port": "vf1"}]])
    assert w.run() == 0
    cookie = sfc.chain_cookie(NS, "chain")
    ports = [str(w.ovs.ofport("br-sfc", p)) for p in ("p0", "pf0hpf", "pf0vf1")]
    [(bridge, flows), *_] = w.ovs.bundles
    assert bridge == "br-sfc"
    assert flows == sfc.chain_flows(cookie, ports)  # the one-port switch programs nothing
    assert {c for c, _ in w.ovs.flows["br-sfc"]} == {cookie}
    for name in ("p0", "pf0", "vf1"):
        assert w.store.get(ServiceInterface, name, NS).metadata.labels["svc.dpu.nvidia.com/service-chain"] == "chain"
    assert "svc.dpu.nvidia.com/service-chain" not in w.store.get(ServiceInterface, "p0-other", NS).metadata.labels
    assert w.ready(ServiceChain, "chain") == ("True", "Success")
    before = len(w.ovs.bundles)
    w.run(5)
    assert len(w.ovs.bundles) > before  # re-applied every 5 s, as DPF does


def test_chain_waits_for_missing_members_and_reports_it() -> None:
    w = _chain_world()
    w.chain("chain", [[{"uplink": "p0"}, {"port": "missing"}]])
    w.run()
    assert w.ovs.bundles == []
    status, reason = w.ready(ServiceChain, "chain")
    assert (status, reason) == ("False", "Pending")
    msg = w.store.get(ServiceChain, "chain", NS).status.conditions[0].message
    assert "no serviceInterface in namespace(default) matching labels(map[port:missing])" in msg
    w.si("late", {"interfaceType": "pf", "pf": {"pfID": 1}}, labels={"port": "missing"})
    w.run(5)
    assert w.ready(ServiceChain, "chain") == ("True", "Success")


def test_flow_errors_are_reported_and_retried() -> None:
    w = _chain_world()
    w.ovs.fail_bundles = True
    w.chain("chain", [[{"uplink": "p0"}, {"port": "pf0"}]])
    w.run()
    assert w.ready(ServiceChain, "chain") == ("False", "Error")
    w.ovs.fail_bundles = False
    w.run(5)
    assert w.ready(ServiceChain, "chain") == ("True", "Success")


def test_deleted_chain_loses_flows_and_labels() -> None:
    w = _chain_world()
    w.chain("chain", [[{"uplink": "p0"}, {"port": "pf0"}]])
    w.run()
    w.store.delete(ServiceChain, "chain", NS)
    w.run()
    assert w.ovs.flows["br-sfc"] == []
    assert w.ovs.deleted_cookies == [sfc.chain_cookie(NS, "chain")]
    for name in ("p0", "pf0"):
        assert "svc.dpu.nvidia.com/service-chain" not in w.store.get(ServiceInterface, name, NS).metadata.labels


def test_service_ports_resolve_through_the_pod_and_hbn_patch_port() -> None:
    w = World(FakeOvs(("br-sfc", "br-ovn", "br-hbn")))
    w.si("p0", {"interfaceType": "physical", "physical": {"interfaceName": "p0"}}, labels={"uplink": "p0"})
    w.si(
        "app",
        {"interfaceType": "service", "service": {"serviceID": "app", "network": "mybrsfc", "interfaceName": "net1"}},
        labels={"svc": "app"},
    )
    w.si(
        "hbn",
        {"interfaceType": "service", "service": {"serviceID": "hbn", "network": "mybrhbn", "interfaceName": "p0_if"}},
        labels={"svc": "hbn"},
    )
    for name, sid in (("app-pod", "app"), ("hbn-pod", "hbn"), ("app-elsewhere", "app")):
        w.store.create(
            Pod.new(
                name, NS,
                metadata={"name": name, "namespace": NS, "labels": {"svc.dpu.nvidia.com/service": sid}},
                spec={"nodeName": NODE if name != "app-elsewhere" else "n2", "containers": [{"name": "c"}]},
            )
        )
    # What ovs-cni creates: the SF port on br-sfc, and for HBN the SF on br-hbn with a br-sfc patch end.
    owner = {"owner": "ovs-cni.network.kubevirt.io"}
    w.ovs.ensure_port("br-sfc", "en3f0pf0sf1", "dpdk", iface_external_ids={"dpf-id": "default/app-pod/net1"},
                      port_external_ids=owner)
    w.ovs.ensure_port("br-hbn", "en3f0pf0sf2", "dpdk", iface_external_ids={"dpf-id": "default/hbn-pod/p0_if"},
                      port_external_ids=owner)
    w.ovs.ensure_port("br-sfc", "pen3f0pf0sf2brsfc", "patch", iface_external_ids={"dpf-id": "p0_if"},
                      port_external_ids=owner)
    w.chain("chain", [[{"uplink": "p0"}, {"svc": "app"}, {"svc": "hbn"}]])
    assert w.run(6) == 0  # a pass that ran before the p0 interface was tagged retries 5 s later
    cookie = sfc.chain_cookie(NS, "chain")
    ports = [str(w.ovs.ofport("br-sfc", p)) for p in ("p0", "en3f0pf0sf1", "pen3f0pf0sf2brsfc")]
    assert w.ovs.bundles[-1] == ("br-sfc", sfc.chain_flows(cookie, ports))
    assert w.ready(ServiceInterface, "app") == ("True", "Success")  # the CNI's port is there
    assert w.ready(ServiceInterface, "hbn") == ("True", "Success")


def test_service_interface_without_pod_port_is_pending() -> None:
    w = World()
    w.si("app", {"interfaceType": "service", "service": {"serviceID": "app", "network": "n", "interfaceName": "net1"}})
    w.run()
    assert w.ready(ServiceInterface, "app") == ("False", "Pending")
    assert w.store.get(ServiceInterface, "app", NS).metadata.finalizers == [FINALIZER_SERVICE_INTERFACE]


def test_stale_sweep_every_minute_removes_foreign_cookies_and_orphan_ports() -> None:
    w = _chain_world()
    w.chain("chain", [[{"uplink": "p0"}, {"port": "pf0"}]])
    w.run()
    w.ovs.flows["br-sfc"].append((777, "cookie=777, table=0, priority=20, in_port=1 actions=drop"))
    w.ovs.ensure_port("br-sfc", "pf1vf9", "dpdk", iface_external_ids={"dpf-id": "default/gone"})
    w.ovs.ensure_port("br-sfc", "en3f0pf0sf9", "dpdk", port_external_ids={"owner": "ovs-cni.network.kubevirt.io"})
    w.ovs.ensure_port("br-sfc", "p1", "dpdk", port_external_ids={"dpf-type": "physical"})
    w.ovs.ensure_port("br-sfc", "br-sfc", "internal")
    w.run(30)
    assert 777 in {c for c, _ in w.ovs.flows["br-sfc"]}  # not yet: the ticker fires after a minute
    w.run(31)
    assert {c for c, _ in w.ovs.flows["br-sfc"]} == {sfc.chain_cookie(NS, "chain")}
    assert sorted(w.ovs.bridges["br-sfc"]) == ["br-sfc", "en3f0pf0sf9", "p0", "p1", "pf0hpf", "pf0vf1"]


@pytest.mark.parametrize(
    ("lines", "cookies"),
    [
        ([" cookie=0x2a, duration=1s, table=0, priority=20,in_port=1 actions=output:2"], {42}),
        (["cookie=42, table=0, priority=20, in_port=1 actions=output:2"], {42}),
        ([" duration=1s, table=0, priority=0 actions=drop", "NXST_FLOW reply (xid=0x4):"], {0}),
    ],
)
def test_flow_cookies_parse_dump_flows_text(lines: list[str], cookies: set[int]) -> None:
    assert sfc.flow_cookies(lines) == cookies


# --- the re-apply period and what wakes a programmed chain instead ----------------------------------------------


def _passes(w: World) -> int:
    return int(w.mgr.controller(sfc.NAME_SERVICE_CHAIN).metrics()["reconciles"])


def test_a_programmed_chain_re_applies_at_chain_requeue_and_a_failed_one_retries_at_5_s() -> None:
    w = _chain_world(SfcOptions(chain_requeue=600.0, status_writes_wake=False))
    w.run()  # the members' ports first: this in-test Ovs wakes no chain when they appear
    w.chain("chain", [[{"uplink": "p0"}, {"port": "pf0"}]])
    w.chain("waiting", [[{"uplink": "p0"}, {"port": "missing"}]])
    w.run()
    assert w.ready(ServiceChain, "chain") == ("True", "Success")
    assert w.ready(ServiceChain, "waiting") == ("False", "Pending")
    bundles = len(w.ovs.bundles)
    w.run(60)
    assert len(w.ovs.bundles) == bundles  # no re-apply inside the 600 s period
    passes = _passes(w)
    w.run(20)
    assert _passes(w) - passes == 4  # only "waiting", every 5 s: its own status writes wake nothing
    w.run(600)
    assert len(w.ovs.bundles) == bundles + 1  # the backstop


@pytest.mark.parametrize("status_writes_wake", [True, False])
def test_a_chain_failed_while_its_members_were_wired_retries_on_its_status_write_or_after_5_s(
    status_writes_wake: bool,
) -> None:
    w = _chain_world(SfcOptions(status_writes_wake=status_writes_wake))
    w.chain("chain", [[{"uplink": "p0"}, {"port": "pf0"}]])  # with its members: its first pass finds no port
    w.run(1)
    if status_writes_wake:  # the Pending write woke it once more, after the ports came
        assert w.ready(ServiceChain, "chain") == ("True", "Success")
        return
    assert w.ready(ServiceChain, "chain") == ("False", "Pending")  # as DPF's agent: nothing until its retry
    w.run(4.5)
    assert w.ready(ServiceChain, "chain") == ("True", "Success")


def test_dpfs_period_re_applies_every_5_s() -> None:
    w = _chain_world()
    w.chain("chain", [[{"uplink": "p0"}, {"port": "pf0"}]])
    w.run()
    bundles = len(w.ovs.bundles)
    w.run(20)
    assert len(w.ovs.bundles) - bundles == 4


def _sc(name: str, selectors: list[dict[str, str]], *, programmed: bool = True) -> ServiceChain:
    sc = ServiceChain.new(name, NS, spec={"node": NODE, "switches": [
        {"ports": [{"serviceInterface": {"matchLabels": m}} for m in selectors]}]})
    sc.metadata.generation = 1
    if programmed:
        sc.status.observed_generation = 1
        sc.status.conditions = [Condition(type="Ready", status="True", reason="Success", message="",
                                          last_transition_time="2025-01-01T00:00:00Z", observed_generation=1)]
    return sc


def _si(name: str, labels: dict[str, str], *, generation: int = 1, spec: dict[str, Any] | None = None) -> ServiceInterface:
    si = ServiceInterface.new(name, NS, metadata={"name": name, "namespace": NS, "labels": labels},
                              spec={"node": NODE, **(spec or {"interfaceType": "pf", "pf": {"pfID": 0}})})
    si.metadata.generation = generation
    return si


def _objects() -> sfc.NodeObjects:
    objects = sfc.NodeObjects(NODE)
    objects.on_chain(WatchEvent("ADDED", _sc("a", [{"uplink": "p0"}, {"port": "pf0"}])))
    objects.on_chain(WatchEvent("ADDED", _sc("b", [{"port": "vf1"}, {"svc": "app"}])))
    objects.on_chain(WatchEvent("ADDED", _sc("pending", [{"port": "pf0"}], programmed=False)))
    for si in (_si("pf0", {"port": "pf0"}), _si("vf1", {"port": "vf1"}),
               _si("app", {"svc": "app"}, spec={"interfaceType": "service", "service": {
                   "serviceID": "app", "network": "mybrsfc", "interfaceName": "net1"}})):
        objects.on_interface(WatchEvent("ADDED", si))
    return objects


def _names(reqs: list[Request]) -> list[str]:
    return [r.name for r in reqs]


def test_interface_events_wake_the_programmed_chains_that_select_it() -> None:
    objects = _objects()
    old = _si("pf0", {"port": "pf0"})
    assert _names(objects.chains_for_interface(WatchEvent("ADDED", old))) == ["a"]  # "pending" retries anyway
    assert _names(objects.chains_for_interface(WatchEvent("DELETED", old))) == ["a"]
    # A status write or the chain's own label: every selector matches as before.
    labelled = _si("pf0", {"port": "pf0", "svc.dpu.nvidia.com/service-chain": "a"})
    assert objects.chains_for_interface(WatchEvent("MODIFIED", labelled, old)) == []
    # Relabelled into b's selector and out of a's.
    moved = _si("pf0", {"port": "vf1"})
    assert _names(objects.chains_for_interface(WatchEvent("MODIFIED", moved, old))) == ["a", "b"]
    # A spec change (another port) concerns the chains selecting it.
    respec = _si("pf0", {"port": "pf0"}, generation=2, spec={"interfaceType": "pf", "pf": {"pfID": 1}})
    assert _names(objects.chains_for_interface(WatchEvent("MODIFIED", respec, old))) == ["a"]
    elsewhere = _si("x", {"port": "pf0"})
    elsewhere.spec.node = "n2"
    assert objects.chains_for_interface(WatchEvent("ADDED", elsewhere)) == []


def test_pod_events_wake_chains_only_for_a_service_interface_s_pod_here() -> None:
    objects = _objects()

    def pod(labels: dict[str, str], node: str = NODE) -> Pod:
        return Pod.new("p", NS, metadata={"name": "p", "namespace": NS, "labels": labels},
                       spec={"nodeName": node, "containers": [{"name": "c"}]})

    app = pod({"svc.dpu.nvidia.com/service": "app"})
    assert _names(objects.chains_for_pod(WatchEvent("ADDED", app))) == ["a", "b"]
    assert objects.chains_for_pod(WatchEvent("MODIFIED", app, app)) == []  # status only
    assert objects.chains_for_pod(WatchEvent("ADDED", pod({"svc.dpu.nvidia.com/service": "other"}))) == []
    assert objects.chains_for_pod(WatchEvent("ADDED", pod({"svc.dpu.nvidia.com/service": "app"}, "n2"))) == []
    assert objects.chains_for_pod(WatchEvent("ADDED", pod({}))) == []


def test_ovs_changes_wake_the_chains_they_concern() -> None:
    objects = _objects()
    assert _names(objects.chain_requests()) == ["a", "b"]
    assert _names(objects.chain_requests(cookies=[sfc.chain_cookie(NS, "b")])) == ["b"]
    assert _names(objects.chain_requests(dpf_ids=[f"{NS}/vf1"])) == ["b"]
    assert _names(objects.chain_requests(dpf_ids=[""])) == []  # an interface without dpf-id is no member
    assert _names(objects.chain_requests(dpf_ids=[f"{NS}/pod/net1"])) == ["a", "b"]  # a pod's: not narrowed
    assert _names(objects.chain_requests(dpf_ids=[f"{NS}/unknown"])) == ["a", "b"]
