"""The twin's half of `dpf fidelity`: random service-chain topologies, programming them through the SFC node agent
(the core controllers, unchanged) into any `Ovs`, the twin's switch and its traces, and the comparison.

A topology is plain data: bridges, the ports the DPUFlavor script and ovs-cni make (physical uplink, service pods'
SF ports, HBN patch pairs), ServiceInterfaces of every type (physical, pf, vf, ovn, service, vlan), Pods, and
ServiceChains with several switches and IPAM blocks, plus hand-written "decoration" flows the chains do not make
(VLAN push/pop, resubmits with and without an in_port, goto_table, registers, header rewrites, NORMAL, drops, a
resubmit loop) so the pipeline features the model claims are exercised too. Probes are packets and packet
sequences (a packet, then its reply from where it went, so `learn` matters) between the hosts behind each port.

Everything a comparison sees is normalised into plain tuples so the real half (dpf_hw.fidelity_real) produces the
same shapes without importing the twin.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from dpf_core.api.external import Pod
from dpf_core.api.svc import ServiceChain, ServiceInterface
from dpf_core.controllers import sfc
from dpf_core.ports import Ovs, Ports
from dpf_core.runtime import Manager, ManualClock, SyncDriver
from dpf_core.store import MemoryStore

from .ovs import Datapath, ModelOvs, Packet, trace

NODE = "dpu-fidelity"
NAMESPACE = "fidelity"
SFC, OVN, HBN = sfc.SFC_BRIDGE, sfc.OVN_BRIDGE, sfc.HBN_BRIDGE
OWNER_IDS = {"owner": sfc.OVS_CNI_OWNER}
PORT_LABEL = "fidelity.dpu.nvidia.com/port"
POOL_LABEL = "fidelity.dpu.nvidia.com/pool"
DECORATION_COOKIE = 0xDEC0
PROGRAM_SECONDS = 6.0  # one ServiceChain requeue (5 s) after the first pass, so late-resolving ports get flows
ETH_BROADCAST = "ff:ff:ff:ff:ff:ff"
ETH_TYPE_EXPERIMENTAL = 0x88B5  # IEEE local experimental: a non-IP frame nothing in OVS treats specially
IP_PROTOS = {"tcp": 6, "udp": 17, "icmp": 1}

# One delivery as both halves report it: (bridge, port, eth_src, eth_dst, vlan vid or None, vlan pcp,
# ip_src, ip_dst, tp_src, tp_dst). A probe's observation is the tuple of its deliveries; () is a drop.
Delivery = tuple[str, str, str, str, int | None, int, str | None, str | None, int, int]
PortState = tuple[str, str, int | None, int | None, tuple[tuple[str, str], ...], tuple[tuple[str, str], ...],
                  tuple[tuple[str, str], ...]]


def fnv1a_32(text: str) -> int:
    h = 0x811C9DC5
    for byte in text.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


# --- topology ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BasePort:
    """A port made outside the SFC agent: by the DPUFlavor's OVS script or by ovs-cni at a pod's CNI ADD."""

    bridge: str
    name: str
    type: str = "dpdk"
    iface_external_ids: Mapping[str, str] = field(default_factory=dict)
    port_external_ids: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, str] = field(default_factory=dict)
    ofport_request: int | None = None


@dataclass(frozen=True)
class Host:
    """A MAC/IP that lives behind an OVS port (a VM behind a VF, a pod's interface, the uplink's far side)."""

    mac: str
    ip: str


@dataclass
class Topology:
    index: int
    seed: int
    bridges: list[tuple[str, str]] = field(default_factory=list)  # (name, fail_mode)
    base_ports: list[BasePort] = field(default_factory=list)
    service_interfaces: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    pods: list[tuple[str, str]] = field(default_factory=list)  # (pod name, serviceID)
    chains: list[tuple[str, list[list[dict[str, Any]]]]] = field(default_factory=list)
    decorations: dict[str, list[str]] = field(default_factory=dict)
    hosts: dict[tuple[str, str], list[Host]] = field(default_factory=dict)  # (bridge, port) -> hosts
    vlans: list[int] = field(default_factory=list)

    def describe(self) -> str:
        kinds = sorted({str(spec["interfaceType"]) for _, _, spec in self.service_interfaces})
        switches = sum(len(s) for _, s in self.chains)
        return (f"{len(self.service_interfaces)} interfaces ({','.join(kinds)}), {len(self.chains)} chains, "
                f"{switches} switches, {sum(len(f) for f in self.decorations.values())} extra flows")


class _Names:
    def __init__(self) -> None:
        self.used: set[str] = set()

    def take(self, name: str) -> str:
        if name in self.used:
            raise ValueError(name)
        self.used.add(name)
        return name


def generate(index: int, seed: int) -> Topology:
    """One random topology; the same (index, seed) always gives the same one."""
    rng = random.Random(f"fidelity/{seed}/{index}")
    topo = Topology(index, seed)
    topo.bridges = [(SFC, "secure"), (OVN, "standalone")]
    with_hbn = rng.random() < 0.5
    if with_hbn:
        topo.bridges.append((HBN, "secure"))
    # The DPUFlavor's OVS script: the uplink on br-sfc, and ports on br-ovn for the ovn side of the patch.
    topo.base_ports.append(BasePort(SFC, "p0", port_external_ids={"dpf-type": "physical"}))
    for k in range(rng.randint(1, 2)):
        topo.base_ports.append(BasePort(OVN, f"ovnp{k}", type="internal"))

    sis: list[tuple[str, str, str]] = []  # (si name, bridge of its port, OVS port name)

    def add_si(name: str, spec: dict[str, Any], bridge: str, port: str) -> None:
        topo.service_interfaces.append((name, {PORT_LABEL: name}, spec))
        sis.append((name, bridge, port))

    add_si("uplink-p0", {"interfaceType": "physical", "physical": {"interfaceName": "p0"}}, SFC, "p0")
    if rng.random() < 0.5:
        add_si("uplink-p1", {"interfaceType": "physical", "physical": {"interfaceName": "p1"}}, SFC, "p1")
    for pf in sorted(rng.sample([0, 1], rng.randint(1, 2))):
        add_si(f"pf{pf}", {"interfaceType": "pf", "pf": {"pfID": pf}}, SFC, f"pf{pf}hpf")
    for vf in sorted(rng.sample(range(8), rng.randint(1, 4))):
        pf = rng.randint(0, 1)
        add_si(f"vf{pf}-{vf}", {"interfaceType": "vf", "vf": {"pfID": pf, "vfID": vf, "parentInterfaceRef": f"pf{pf}"}},
               SFC, f"pf{pf}vf{vf}")
    if rng.random() < 0.6:
        add_si("ovn", {"interfaceType": "ovn"}, SFC, sfc.OVN_PATCH_PEER)
    for k in range(rng.randint(1, 3)):
        pod, service_id = f"app{k}-{rng.randrange(16**4):04x}", f"svc{k}"
        sf = f"sf{fnv1a_32(f'{index}/{pod}') & 0xFFFFFF:06x}"
        topo.pods.append((pod, service_id))
        topo.base_ports.append(BasePort(
            SFC, sf, iface_external_ids={"iface-id": "", "dpf-id": f"{NAMESPACE}/{pod}/net1"},
            port_external_ids={"contNetns": f"/var/run/netns/{pod}", "contIface": "net1", **OWNER_IDS},
            ofport_request=(fnv1a_32(sf) & 0xFF) or None))
        add_si(f"svc{k}", {"interfaceType": "service",
                           "service": {"serviceID": service_id, "network": "mybrsfc", "interfaceName": "net1"}},
               SFC, sf)
    if with_hbn:
        pod, sf = "hbn-0", "sfhbn0"
        topo.pods.append((pod, "hbn"))
        topo.base_ports += [
            BasePort(HBN, sf, iface_external_ids={"iface-id": "", "dpf-id": f"{NAMESPACE}/{pod}/p0_if"},
                     port_external_ids={"contNetns": f"/var/run/netns/{pod}", "contIface": "p0_if", **OWNER_IDS},
                     ofport_request=(fnv1a_32(sf) & 0xFF) or None),
            BasePort(HBN, f"p{sf}brhbn", type="patch", options={"peer": f"p{sf}brsfc"},
                     iface_external_ids={"hbn_rep_ofport": sf, "hbn_netdev": "p0_if"}),
            BasePort(SFC, f"p{sf}brsfc", type="patch", options={"peer": f"p{sf}brhbn"},
                     iface_external_ids={"iface-id": sf, "dpf-id": "p0_if"}, port_external_ids=dict(OWNER_IDS)),
        ]
        add_si("hbn", {"interfaceType": "service",
                       "service": {"serviceID": "hbn", "network": "mybrhbn", "interfaceName": "p0_if"}},
               SFC, f"p{sf}brsfc")
        topo.decorations[HBN] = [f"cookie={DECORATION_COOKIE:#x}, table=0, priority=1 actions=NORMAL"]
    if rng.random() < 0.3:  # skipped by the agent (out of DPF's MVP scope), so never a chain member
        topo.service_interfaces.append(("vlan10", {PORT_LABEL: "vlan10"},
                                        {"interfaceType": "vlan", "vlan": {"vlanID": 10, "parentInterfaceRef": "p0"}}))

    # Chains: the interfaces shuffled into 1-3 chains of 1-2 switches, each chain its own IPAM block.
    members = list(sis)
    rng.shuffle(members)
    n_chains = min(len(members) // 2, rng.randint(1, 3)) or 1
    cuts = sorted(rng.sample(range(1, len(members)), n_chains - 1)) if n_chains > 1 else []
    groups = [members[a:b] for a, b in zip([0, *cuts], [*cuts, len(members)], strict=True)]
    for k, group in enumerate(groups):
        switches: list[list[dict[str, Any]]] = []
        split = rng.randint(1, len(group) - 1) if len(group) >= 4 and rng.random() < 0.5 else len(group)
        for part in (group[:split], group[split:]):
            if part:
                switches.append([{"serviceInterface": {"matchLabels": {PORT_LABEL: si},
                                                       "ipam": {"matchLabels": {POOL_LABEL: f"pool{k}"},
                                                                "defaultGateway": rng.random() < 0.5}}}
                                 for si, _, _ in part])
        topo.chains.append((f"chain{k}", switches))
        for j, (_, bridge, port) in enumerate(group):
            hosts = []
            for h in range(rng.randint(1, 2)):
                ip = f"10.{index % 250}.{k}.{10 + 2 * j + h}"
                hosts.append(Host(_mac_for_ip(ip), ip))
            topo.hosts[(bridge, port)] = hosts
    # Hosts behind the ports the chains do not name: the br-ovn side and the HBN pod's own port.
    for bp in topo.base_ports:
        if bp.type != "patch" and (bp.bridge, bp.name) not in topo.hosts:
            ip = f"10.251.{index % 250}.{len(topo.hosts) + 1}"
            topo.hosts[(bp.bridge, bp.name)] = [Host(_mac_for_ip(ip), ip)]
    topo.vlans = sorted(rng.sample(range(2, 4000), 3))
    topo.decorations[SFC] = _decorations(rng, topo, [port for _, b, port in sis if b == SFC])
    return topo


def _mac_for_ip(ip: str) -> str:
    return "0a:58:" + ":".join(f"{int(o):02x}" for o in ip.split("."))


def _decorations(rng: random.Random, topo: Topology, ports: list[str]) -> list[str]:
    """Flows beyond the chains' own: every action the model claims, in shapes an OpenFlow 1.3 switch accepts."""
    c = f"cookie={DECORATION_COOKIE:#x}"
    out: list[str] = []

    def pick(n: int) -> list[str]:
        return rng.sample(ports, n) if len(ports) >= n else []

    def host(port: str) -> Host:
        return topo.hosts.get((SFC, port), [Host("0a:58:0a:fe:00:01", "10.254.0.1")])[0]

    v1, v2, v3 = topo.vlans
    makers: list[Callable[[], list[str]]] = []

    def vlan_push() -> list[str]:
        a, b = pick(2) or ["p0", "p0"]
        return [f"{c}, table=0, priority=25, in_port={a},ip,nw_dst={host(b).ip} actions=mod_vlan_vid:{v1},resubmit(,1)",
                f"{c}, table=1, priority=10, dl_vlan={v1} actions=output:{b}"]

    def vlan_pop() -> list[str]:
        a, b = pick(2) or ["p0", "p0"]
        return [f"{c}, table=0, priority=26, in_port={a},dl_vlan={v2} actions=pop_vlan,resubmit(,2)",
                f"{c}, table=2, priority=5 actions=output:{b},push_vlan:0x8100,set_field:{4096 + v3}->vlan_vid,"
                f"output:{a}"]

    def rewrite() -> list[str]:
        a, b = pick(2) or ["p0", "p0"]
        return [f"{c}, table=0, priority=24, in_port={a},tcp,tp_dst=80 actions=mod_dl_dst:{host(b).mac},"
                f"mod_nw_dst:{host(b).ip},set_field:8080->tcp_dst,mod_dl_src:02:00:00:00:00:01,output:{b}"]

    def resubmit_in_port() -> list[str]:
        a, b = pick(2) or ["p0", "p0"]
        return [f"{c}, table=0, priority=23, in_port={a},udp,tp_dst=53 actions=resubmit({b},0)"]

    def goto_regs() -> list[str]:
        a, b, d = pick(3) or ["p0", "p0", "p0"]
        return [f"{c}, table=0, priority=22, in_port={a},icmp actions=load:0x5->NXM_NX_REG0[0..7],goto_table:3",
                f"{c}, table=3, priority=10, reg0=0x5 actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],output:{b},"
                f"output:{d}",
                f"{c}, table=3, priority=1 actions=drop"]

    def drop() -> list[str]:
        [a] = pick(1) or ["p0"]
        return [f"{c}, table=0, priority=40, in_port={a},tcp,tp_dst=22 actions=drop"]

    def normal() -> list[str]:
        [a] = pick(1) or ["p0"]
        return [f"{c}, table=0, priority=21, in_port={a},dl_dst={ETH_BROADCAST} actions=NORMAL"]

    def loop() -> list[str]:
        [a] = pick(1) or ["p0"]
        return [f"{c}, table=0, priority=39, in_port={a},dl_type={ETH_TYPE_EXPERIMENTAL:#06x},"
                f"dl_dst=02:ff:ff:ff:ff:01 actions=resubmit(,5)",
                f"{c}, table=5, priority=1 actions=resubmit(,5)"]

    makers = [vlan_push, vlan_pop, rewrite, resubmit_in_port, goto_regs, drop, normal, loop]
    for make in rng.sample(makers, rng.randint(3, len(makers))):
        out += make()
    return out


# --- programming ---------------------------------------------------------------------------------------------


class Switch(Protocol):
    """What the comparison needs of one Open vSwitch, twin or real."""

    @property
    def ovs(self) -> Ovs: ...

    def add_bridge(self, name: str, fail_mode: str) -> None: ...

    def ports(self, bridge: str) -> list[dict[str, Any]]: ...

    def flows(self, bridge: str) -> list[str]: ...

    def trace(self, bridge: str, in_port: str, packet: Mapping[str, Any]) -> tuple[Delivery, ...]: ...


@dataclass
class Programmed:
    store: MemoryStore
    errors: list[str]


def program(topo: Topology, switch: Switch, seconds: float = PROGRAM_SECONDS) -> Programmed:
    """What happens on a DPU: the flavor script's bridges and ports, ovs-cni's pod ports, then the SFC agent (the
    core's own controllers, on a SyncDriver) turning ServiceInterfaces and ServiceChains into ports and flows;
    finally the decoration flows, as one bundle per bridge. Errors are collected, not raised: a flow one side
    refuses and the other accepts is itself a finding."""
    errors: list[str] = []
    for name, fail_mode in topo.bridges:
        switch.add_bridge(name, fail_mode)
    for bp in topo.base_ports:
        switch.ovs.ensure_port(bp.bridge, bp.name, bp.type, iface_external_ids=dict(bp.iface_external_ids),
                               port_external_ids=dict(bp.port_external_ids), options=dict(bp.options),
                               ofport_request=bp.ofport_request)
    clock = ManualClock()
    store = MemoryStore(clock=clock.now, name=f"fidelity-{topo.index}")
    mgr = Manager(store, clock, ports=Ports(ovs=switch.ovs))
    for c in sfc.controllers(NODE, lookup_bridges=[b for b, _ in topo.bridges if b != OVN]):
        mgr.add(c)
    for name, labels, spec in topo.service_interfaces:
        store.create(ServiceInterface.new(name, NAMESPACE, metadata={"name": name, "namespace": NAMESPACE,
                                                                     "labels": labels},
                                          spec={"node": NODE, **spec}))
    for pod, service_id in topo.pods:
        store.create(Pod.new(pod, NAMESPACE, metadata={"name": pod, "namespace": NAMESPACE,
                                                       "labels": {"svc.dpu.nvidia.com/service": service_id}},
                             spec={"nodeName": NODE, "containers": [{"name": "app"}]}))
    for name, switches in topo.chains:
        store.create(ServiceChain.new(name, NAMESPACE, spec={"node": NODE, "switches": [{"ports": p} for p in switches]}))
    stats = SyncDriver(mgr, clock=clock).run_for(seconds, max_steps=10_000)
    if stats.errors:
        errors.append(f"{stats.errors} reconcile errors")
    for bridge, flows in topo.decorations.items():
        try:
            switch.ovs.add_flows_bundle(bridge, flows)
        except Exception as e:
            errors.append(f"{bridge} decorations refused: {first_line(e)}")
    return Programmed(store, errors)


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# --- probes --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One packet entering `bridge` at `in_port`; `reply` sends the answer back from where it went first."""

    bridge: str
    in_port: str
    packet: Mapping[str, Any]
    reply: bool = False


def packet_fields(eth_src: str, eth_dst: str, *, vlan: int | None = None, ip_src: str | None = None,
                  ip_dst: str | None = None, proto: str | None = None, tp_src: int = 0, tp_dst: int = 0) -> dict[str, Any]:
    return {"eth_src": eth_src, "eth_dst": eth_dst, "vlan": vlan, "ip_src": ip_src, "ip_dst": ip_dst,
            "ip_proto": IP_PROTOS[proto] if proto else None, "tp_src": tp_src, "tp_dst": tp_dst}


def probes(topo: Topology, count: int, rng: random.Random) -> list[Probe]:
    """`count` packets: about a third are request/reply pairs. Destinations are mostly hosts of the same chain,
    some broadcast, some unknown; a few are VLAN-tagged, non-IP, or aimed at the decorations' matches."""
    entries = sorted(topo.hosts)
    all_hosts = [(k, h) for k in entries for h in topo.hosts[k]]
    out: list[Probe] = []
    while len(out) < count:
        bridge, port = rng.choice(entries)
        src = rng.choice(topo.hosts[(bridge, port)])
        roll = rng.random()
        if roll < 0.6:
            _, dst = rng.choice(all_hosts)
        elif roll < 0.75:
            dst = Host(ETH_BROADCAST, "10.255.255.255")
        elif roll < 0.85:
            dst = Host("02:ff:ff:ff:ff:01", "10.253.0.1")
        else:
            dst = Host(f"02:00:00:{rng.randrange(256):02x}:{rng.randrange(256):02x}:{rng.randrange(256):02x}",
                       f"10.252.{rng.randrange(256)}.{rng.randrange(1, 255)}")
        vlan = rng.choice([*topo.vlans, rng.randrange(2, 4000)]) if rng.random() < 0.15 else None
        kind = rng.choice(["tcp", "tcp", "udp", "icmp", "ip", "l2"])
        if kind == "l2":
            pkt = packet_fields(src.mac, dst.mac, vlan=vlan)
            pkt["eth_type"] = ETH_TYPE_EXPERIMENTAL
        elif kind == "ip":
            pkt = packet_fields(src.mac, dst.mac, vlan=vlan, ip_src=src.ip, ip_dst=dst.ip)
        elif kind == "icmp":
            pkt = packet_fields(src.mac, dst.mac, vlan=vlan, ip_src=src.ip, ip_dst=dst.ip, proto="icmp", tp_src=8)
        else:
            tp_dst = rng.choice([80, 22, 53, 443, rng.randrange(1, 65536)])
            pkt = packet_fields(src.mac, dst.mac, vlan=vlan, ip_src=src.ip, ip_dst=dst.ip, proto=kind,
                                tp_src=rng.randrange(1024, 65536), tp_dst=tp_dst)
        out.append(Probe(bridge, port, pkt, reply=rng.random() < 0.35 and len(out) + 1 < count))
        if out[-1].reply:
            out.append(Probe(bridge, port, reply_of(pkt), reply=False))  # the in_port is decided at run time
    return out[:count]


def reply_of(pkt: Mapping[str, Any]) -> dict[str, Any]:
    r = dict(pkt)
    r["eth_src"], r["eth_dst"] = pkt["eth_dst"], pkt["eth_src"]
    r["ip_src"], r["ip_dst"] = pkt["ip_dst"], pkt["ip_src"]
    r["tp_src"], r["tp_dst"] = pkt["tp_dst"], pkt["tp_src"]
    if pkt.get("ip_proto") == 1:
        r["tp_src"], r["tp_dst"] = 0, 0  # echo reply
    if r["eth_src"] == ETH_BROADCAST:
        r["eth_src"] = "02:00:00:00:00:fe"  # nobody answers from a broadcast address
    return r


def run_paired(sim: Switch, real: Switch, plan: Sequence[Probe]) -> list[tuple[Probe, tuple[Delivery, ...],
                                                                               tuple[Delivery, ...]]]:
    """Each probe through both switches, one right after the other so their clocks (idle timeouts) stay together.
    A reply enters where its request first left in the twin (or where the request came from, if dropped)."""
    out: list[tuple[Probe, tuple[Delivery, ...], tuple[Delivery, ...]]] = []
    previous: tuple[Delivery, ...] = ()
    after_request = False
    for p in plan:
        probe = p
        if after_request and previous:
            probe = Probe(previous[0][0], previous[0][1], p.packet)
        seen_sim = sim.trace(probe.bridge, probe.in_port, probe.packet)
        seen_real = real.trace(probe.bridge, probe.in_port, probe.packet)
        out.append((probe, seen_sim, seen_real))
        previous, after_request = seen_sim, p.reply
    return out


# --- the twin's switch ------------------------------------------------------------------------------------------


class SimSwitch:
    """The model of one DPU's Open vSwitch. `now` is shared with the real run so idle timeouts line up."""

    def __init__(self, now: Callable[[], float]) -> None:
        self.datapath = Datapath(now=now)
        self.ovs = ModelOvs(self.datapath)

    def add_bridge(self, name: str, fail_mode: str) -> None:
        self.datapath.add_br(name, datapath_type="netdev", fail_mode=fail_mode)

    def ports(self, bridge: str) -> list[dict[str, Any]]:
        return [r for r in self.datapath.ports(bridge) if r["name"] != bridge]  # OVSDB lists no LOCAL port

    def flows(self, bridge: str) -> list[str]:
        return sorted(line.strip() for line in self.datapath.dump_flows(bridge, stats=False))

    def trace(self, bridge: str, in_port: str, packet: Mapping[str, Any]) -> tuple[Delivery, ...]:
        pkt = Packet(eth_src=packet["eth_src"], eth_dst=packet["eth_dst"], eth_type=packet.get("eth_type"),
                     vlan=packet.get("vlan"), ip_src=packet.get("ip_src"), ip_dst=packet.get("ip_dst"),
                     ip_proto=packet.get("ip_proto"), tp_src=packet.get("tp_src", 0), tp_dst=packet.get("tp_dst", 0))
        # ofproto/trace -generate: learn and NORMAL's MAC learning take effect, rule counters do not move.
        result = trace(self.datapath, bridge, in_port, pkt, side_effects=True, stats=False)
        return tuple((d.bridge, d.port, d.packet.eth_src, d.packet.eth_dst, d.packet.vlan,
                      d.packet.vlan_pcp if d.packet.vlan is not None else 0, d.packet.ip_src, d.packet.ip_dst,
                      d.packet.tp_src if d.packet.ip_proto in (1, 6, 17) else 0,
                      d.packet.tp_dst if d.packet.ip_proto in (1, 6, 17) else 0) for d in result.outputs)


# --- normalisation and comparison ----------------------------------------------------------------------------

# Interface types the real switch stands in for (no DPDK on a test host: a `dpdk` port is an `internal` one).
STAND_IN_TYPES = {"dpdk": "internal"}


def normalise_ports(rows: Iterable[Mapping[str, Any]]) -> list[PortState]:
    out: list[PortState] = []
    for r in rows:
        iface = r.get("iface_external_ids", r.get("external_ids")) or {}
        kind = str(r.get("type") or "")
        ofport = r.get("ofport")
        out.append((str(r["name"]), STAND_IN_TYPES.get(kind, kind),
                    int(ofport) if isinstance(ofport, int) and ofport >= 0 else None,
                    r.get("ofport_request"), tuple(sorted(dict(iface).items())),
                    tuple(sorted(dict(r.get("port_external_ids") or {}).items())),
                    tuple(sorted(dict(r.get("options") or {}).items()))))
    return sorted(out)


@dataclass
class Mismatch:
    topology: int
    what: str  # program | ports | flows | trace
    where: str
    sim: str
    real: str


def diff_lines(sim: Sequence[str], real: Sequence[str]) -> tuple[list[str], list[str]]:
    """Lines only the twin has, lines only real OVS has (multisets)."""
    rest = list(real)
    only_sim = []
    for line in sim:
        if line in rest:
            rest.remove(line)
        else:
            only_sim.append(line)
    return only_sim, rest


def compare_state(topo: Topology, sim: Switch, real: Switch, stage: str) -> list[Mismatch]:
    out: list[Mismatch] = []
    for bridge, _ in topo.bridges:
        s_ports, r_ports = normalise_ports(sim.ports(bridge)), normalise_ports(real.ports(bridge))
        if s_ports != r_ports:
            only_s, only_r = diff_lines([repr(p) for p in s_ports], [repr(p) for p in r_ports])
            out.append(Mismatch(topo.index, "ports", f"{stage} {bridge}", "; ".join(only_s) or "-",
                                "; ".join(only_r) or "-"))
        only_s, only_r = diff_lines(sim.flows(bridge), real.flows(bridge))
        for line in only_s:
            out.append(Mismatch(topo.index, "flows", f"{stage} {bridge}", line, "-"))
        for line in only_r:
            out.append(Mismatch(topo.index, "flows", f"{stage} {bridge}", "-", line))
    return out


def format_packet(bridge: str, in_port: str, pkt: Mapping[str, Any]) -> str:
    parts = [f"{bridge}:{in_port}", f"{pkt['eth_src']}>{pkt['eth_dst']}"]
    if pkt.get("vlan") is not None:
        parts.append(f"vlan {pkt['vlan']}")
    if pkt.get("ip_src"):
        proto = {1: "icmp", 6: "tcp", 17: "udp"}.get(pkt.get("ip_proto") or 0, "ip")
        ports = f":{pkt.get('tp_src', 0)}>{pkt.get('tp_dst', 0)}" if proto in ("tcp", "udp") else ""
        parts.append(f"{proto} {pkt['ip_src']}>{pkt['ip_dst']}{ports}")
    elif pkt.get("eth_type"):
        parts.append(f"eth_type {pkt['eth_type']:#06x}")
    return " ".join(parts)


def format_deliveries(ds: Sequence[Delivery]) -> str:
    if not ds:
        return "drop"
    out = []
    for b, port, src, dst, vid, pcp, ip_src, ip_dst, tp_src, tp_dst in ds:
        text = f"{b}:{port} {src}>{dst}"
        if vid is not None:
            text += f" vlan {vid}/{pcp}"
        if ip_src is not None:
            text += f" {ip_src}>{ip_dst}"
            if tp_src or tp_dst:
                text += f" {tp_src}>{tp_dst}"
        out.append(text)
    return ", ".join(out)


def topology_digest(topo: Topology) -> str:
    """A short fingerprint, so a report names exactly which topology a seed made."""
    text = repr((topo.bridges, topo.base_ports, topo.service_interfaces, topo.pods, topo.chains, topo.decorations))
    return hashlib.sha256(text.encode()).hexdigest()[:10]


__all__ = [
    "Delivery",
    "Mismatch",
    "PortState",
    "Probe",
    "SimSwitch",
    "Switch",
    "Topology",
    "compare_state",
    "format_deliveries",
    "format_packet",
    "generate",
    "normalise_ports",
    "probes",
    "program",
    "run_paired",
    "topology_digest",
]
