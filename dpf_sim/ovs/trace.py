"""Packets through the model's OpenFlow pipeline: `ofproto/trace` for the twin.

Semantics follow ofproto-dpif-xlate: tables are looked up from 0; resubmit/goto run another lookup (the resubmit
in_port applies to that lookup only); output to the packet's own in_port is skipped unless the `in_port` action
is used; output to a patch port continues in the peer bridge's table 0 with in_port = the peer and registers and
metadata cleared, and the packet is restored afterwards; depth is capped at 64 and the resubmit count at 4096
(then translation fails and the packet is dropped). Learned flows are installed once the translation finishes,
because a translation sees the tables as they were when it started.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .datapath import MAC_AGING_S, Bridge, Datapath, MacEntry, OvsError, Rule
from .flows import (
    ETH_TYPE_IP,
    OFPP_ALL,
    OFPP_CONTROLLER,
    OFPP_FLOOD,
    OFPP_IN_PORT,
    OFPP_LOCAL,
    OFPP_MAX,
    OFPP_NORMAL,
    OFPTT_ALL,
    VLAN_CFI,
    VLAN_VID_MASK,
    Action,
    Flow,
    GotoTable,
    Learn,
    Match,
    Output,
    OutputReg,
    PopVlan,
    PushVlan,
    RegLoad,
    RegMove,
    Resubmit,
    SetField,
    SetVlanVid,
    format_actions,
    format_ipv4,
    format_mac,
    format_port,
    new_flow,
    parse_ipv4,
    parse_mac,
)

MAX_DEPTH = 64
MAX_RESUBMITS = MAX_DEPTH * MAX_DEPTH


@dataclass(frozen=True)
class Packet:
    """The header fields the model matches on. `eth_type` defaults to IPv4 when any IP field is given."""

    eth_src: str = "00:00:00:00:00:01"
    eth_dst: str = "ff:ff:ff:ff:ff:ff"
    eth_type: int | None = None
    vlan: int | None = None
    vlan_pcp: int = 0
    ip_src: str | None = None
    ip_dst: str | None = None
    ip_proto: int | None = None
    tp_src: int = 0
    tp_dst: int = 0
    size: int = 64

    def to_flow(self, in_port: int) -> Flow:
        flow = new_flow()
        flow["in_port"] = in_port
        flow["dl_src"] = parse_mac(self.eth_src)
        flow["dl_dst"] = parse_mac(self.eth_dst)
        has_ip = self.ip_src is not None or self.ip_dst is not None or self.ip_proto is not None
        flow["dl_type"] = self.eth_type if self.eth_type is not None else (ETH_TYPE_IP if has_ip else 0)
        if self.vlan is not None:
            flow["vlan_tci"] = VLAN_CFI | (self.vlan_pcp << 13) | (self.vlan & VLAN_VID_MASK)
        if flow["dl_type"] == ETH_TYPE_IP:
            flow["nw_src"] = parse_ipv4(self.ip_src or "0.0.0.0")
            flow["nw_dst"] = parse_ipv4(self.ip_dst or "0.0.0.0")
            flow["nw_proto"] = self.ip_proto or 0
            if flow["nw_proto"] in (1, 6, 17, 132):
                flow["tp_src"], flow["tp_dst"] = self.tp_src, self.tp_dst
        return flow

    @classmethod
    def from_flow(cls, flow: Flow, size: int) -> Packet:
        tci = flow["vlan_tci"]
        ip = flow["dl_type"] == ETH_TYPE_IP
        return cls(
            eth_src=format_mac(flow["dl_src"]), eth_dst=format_mac(flow["dl_dst"]), eth_type=flow["dl_type"],
            vlan=(tci & VLAN_VID_MASK) if tci & VLAN_CFI else None, vlan_pcp=(tci >> 13) & 7 if tci & VLAN_CFI else 0,
            ip_src=format_ipv4(flow["nw_src"]) if ip else None, ip_dst=format_ipv4(flow["nw_dst"]) if ip else None,
            ip_proto=flow["nw_proto"] if ip else None, tp_src=flow["tp_src"], tp_dst=flow["tp_dst"], size=size)


@dataclass(frozen=True)
class RuleHit:
    bridge: str
    table: int
    priority: int
    cookie: int
    match: str
    actions: str


@dataclass(frozen=True)
class Delivery:
    """The packet leaving through a port, as it looked at that moment."""

    bridge: str
    ofport: int
    port: str
    packet: Packet


@dataclass
class TraceResult:
    bridge: str
    in_port: int
    packet: Packet
    final: Packet
    hits: list[RuleHit] = field(default_factory=list)
    outputs: list[Delivery] = field(default_factory=list)
    learned: list[str] = field(default_factory=list)  # the learned flows, as dump-flows --no-stats prints them
    notes: list[str] = field(default_factory=list)
    drop_reason: str | None = None
    error: str | None = None
    lines: list[str] = field(default_factory=list)
    flow_text: str = ""
    final_text: str = ""

    @property
    def dropped(self) -> bool:
        return not self.outputs

    @property
    def output_ports(self) -> list[str]:
        return [d.port for d in self.outputs]

    @property
    def output_ofports(self) -> list[int]:
        return [d.ofport for d in self.outputs]

    @property
    def rewrites(self) -> dict[str, tuple[object, object]]:
        """Header fields the pipeline changed on the packet as it ends in the first bridge."""
        before, after = self.packet, self.final
        names = ("eth_src", "eth_dst", "vlan", "vlan_pcp", "ip_src", "ip_dst", "tp_src", "tp_dst")
        return {n: (getattr(before, n), getattr(after, n)) for n in names if getattr(before, n) != getattr(after, n)}

    def render(self) -> str:
        """Text shaped like `ovs-appctl ofproto/trace` (no megaflow; datapath actions name OpenFlow ports)."""
        out = [f"Flow: {self.flow_text}", ""]
        out.extend(self.lines)
        out.append("")
        out.append(f"Final flow: {'unchanged' if self.final_text == self.flow_text else self.final_text}")
        acts = ",".join(str(d.ofport) for d in self.outputs) if self.outputs else "drop"
        out.append(f"Datapath actions: {acts}")
        if self.error:
            out.append(f"Translation failed ({self.error}), packet is dropped.")
        return "\n".join(out) + "\n"


def flow_text(flow: Flow) -> str:
    """A flow_format()-like one-liner of the fields the model carries."""
    parts = [f"in_port={format_port(flow['in_port'])}", f"vlan_tci=0x{flow['vlan_tci']:04x}",
             f"dl_src={format_mac(flow['dl_src'])}", f"dl_dst={format_mac(flow['dl_dst'])}",
             f"dl_type=0x{flow['dl_type']:04x}"]
    regs = [f"reg{i}={flow[f'reg{i}']:#x}" for i in range(8) if flow[f"reg{i}"]]
    if flow["metadata"]:
        regs.insert(0, f"metadata={flow['metadata']:#x}")
    if flow["dl_type"] == ETH_TYPE_IP:
        parts += [f"nw_src={format_ipv4(flow['nw_src'])}", f"nw_dst={format_ipv4(flow['nw_dst'])}",
                  f"nw_proto={flow['nw_proto']}"]
        if flow["nw_proto"] in (6, 17, 132):
            parts += [f"tp_src={flow['tp_src']}", f"tp_dst={flow['tp_dst']}"]
    return ",".join(regs + parts)


@dataclass
class _PendingLearn:
    bridge: Bridge
    learn: Learn
    match: Match
    actions: list[Action]


class _Xlate:
    def __init__(self, dp: Datapath, *, side_effects: bool, stats: bool, size: int) -> None:
        self.dp = dp
        self.side_effects = side_effects
        self.stats = stats
        self.size = size
        self.depth = 0
        self.resubmits = 0
        self.error: str | None = None
        self.hits: list[RuleHit] = []
        self.outputs: list[Delivery] = []
        self.notes: list[str] = []
        self.reasons: list[str] = []
        self.lines: list[str] = []
        self.learns: list[_PendingLearn] = []

    def say(self, indent: int, text: str) -> None:
        self.lines.append(" " * indent + text)

    def bridge_header(self, br: Bridge, indent: int) -> None:
        title = f'bridge("{br.name}")'
        self.say(indent, title)
        self.say(indent, "-" * len(title))

    # ------------------------------------------------------------------------------------------ table lookups
    def table_action(self, br: Bridge, flow: Flow, table: int, lookup_port: int, cur_table: int,
                     indent: int) -> None:
        """xlate_table_action(): resource checks, then a lookup with the given in_port."""
        if self.error:
            return
        if self.depth >= MAX_DEPTH:
            self.fail(indent, f"over max translation depth {MAX_DEPTH}", "Recursion too deep")
            return
        if self.resubmits >= MAX_RESUBMITS:
            self.fail(indent, f"over {MAX_RESUBMITS} resubmit actions", "Too many resubmits")
            return
        self.resubmits += 1
        self.run_table(br, flow, table, lookup_port, indent, deepens=table <= cur_table)

    def fail(self, indent: int, report: str, error: str) -> None:
        self.say(indent, f">>>> {report} <<<<")
        self.error = error

    def run_table(self, br: Bridge, flow: Flow, table: int, lookup_port: int, indent: int, *, deepens: bool) -> None:
        saved_port = flow["in_port"]
        flow["in_port"] = lookup_port
        rule = br.lookup(table, flow)
        flow["in_port"] = saved_port
        if rule is None:
            self.say(indent, f"{table:2d}. No match.")
            self.say(indent + 4, "drop")
            self.reasons.append(f"no match in bridge {br.name} table {table} (fail_mode={br.effective_fail_mode})")
            return
        match = rule.match.format()
        head = f"{table:2d}. {match + ', ' if match else ''}priority {rule.priority}"
        if rule.cookie:
            head += f", cookie {rule.cookie:#x}"
        self.say(indent, head)
        self.hits.append(RuleHit(br.name, table, rule.priority, rule.cookie, match, format_actions(rule.actions)))
        if self.stats:
            rule.n_packets += 1
            rule.n_bytes += self.size
            rule.used_ms = self.dp.now_ms()
        if not rule.actions:
            self.say(indent + 4, "drop")
            self.reasons.append(f"explicit drop in bridge {br.name} table {table} priority {rule.priority}")
            return
        if deepens:
            self.depth += 1
        try:
            self.run_actions(br, flow, rule, table, indent + 4)
        finally:
            if deepens:
                self.depth -= 1

    # ---------------------------------------------------------------------------------------------- actions
    def run_actions(self, br: Bridge, flow: Flow, rule: Rule, table: int, indent: int) -> None:
        for a in rule.actions:
            if self.error:
                return
            self.say(indent, a.text())
            self.run_action(br, flow, a, table, indent)

    def run_action(self, br: Bridge, flow: Flow, a: Action, table: int, indent: int) -> None:
        if isinstance(a, Output):
            self.output(br, flow, a.port, indent)
        elif isinstance(a, OutputReg):
            self.output(br, flow, a.src.read(flow), indent)
        elif isinstance(a, Resubmit):
            port = flow["in_port"] if a.in_port == OFPP_IN_PORT else a.in_port
            target = table if a.table == OFPTT_ALL else a.table
            self.table_action(br, flow, target, port, table, indent + 4)
        elif isinstance(a, GotoTable):
            self.table_action(br, flow, a.table, flow["in_port"], table, indent)
        elif isinstance(a, SetField):
            if a.via == "vlan_vid":
                if flow["vlan_tci"] & VLAN_CFI:
                    flow["vlan_tci"] = (flow["vlan_tci"] & ~VLAN_VID_MASK) | (a.value & VLAN_VID_MASK)
            elif a.dst.field.prereq == "l3" and flow["dl_type"] != ETH_TYPE_IP:
                pass  # mod_nw_* on a non-IP packet is a no-op
            else:
                a.dst.write(flow, a.value)
        elif isinstance(a, RegLoad):
            a.dst.write(flow, a.value)
        elif isinstance(a, RegMove):
            a.dst.write(flow, a.src.read(flow))
        elif isinstance(a, PushVlan):
            self.push_vlan(flow)
        elif isinstance(a, PopVlan):
            flow["vlan_tci"], flow["vlan_tci1"] = flow["vlan_tci1"], 0
        elif isinstance(a, SetVlanVid):
            if not flow["vlan_tci"] & VLAN_CFI:
                self.push_vlan(flow)
            flow["vlan_tci"] = (flow["vlan_tci"] & ~VLAN_VID_MASK) | a.vid
        elif isinstance(a, Learn):
            match, actions = a.execute(flow)
            learned = Rule(a.table, a.priority, match, actions, a.cookie, a.idle_timeout, a.hard_timeout)
            detail = f"table={a.table} {match.format()} priority={a.priority}"
            if a.cookie:
                detail += f" cookie={a.cookie:#x}"
            if a.idle_timeout:
                detail += f" idle={a.idle_timeout}"
            if a.hard_timeout:
                detail += f" hard={a.hard_timeout}"
            self.say(indent + 1, f"-> {detail} actions={format_actions(actions)}")
            if self.side_effects:
                self.learns.append(_PendingLearn(br, a, learned.match, actions))
            else:
                self.say(indent + 1, ">> suppressing side effects, so learn action ignored")

    @staticmethod
    def push_vlan(flow: Flow) -> None:
        # The new outer tag copies the existing one's VID and PCP (OpenFlow push semantics), or starts at zero.
        flow["vlan_tci1"] = flow["vlan_tci"]
        flow["vlan_tci"] = VLAN_CFI | (flow["vlan_tci"] & ~VLAN_CFI & 0xFFFF)

    def output(self, br: Bridge, flow: Flow, port: int, indent: int) -> None:
        in_port = flow["in_port"]
        if port == OFPP_NORMAL:
            self.normal(br, flow, indent)
            return
        if port in (OFPP_FLOOD, OFPP_ALL):
            for n in br.ofports():
                if n != in_port:
                    self.deliver(br, flow, n, indent)
            return
        if port == OFPP_CONTROLLER:
            self.say(indent + 1, ">> no controller connected, packet-in dropped")
            return
        if port == OFPP_IN_PORT:
            self.deliver(br, flow, in_port, indent)
            return
        if port == in_port:
            self.say(indent + 1, ">> skipping output to input port")
            self.notes.append(f"skipping output to input port {port} in bridge {br.name}")
            return
        self.deliver(br, flow, port, indent)

    def deliver(self, br: Bridge, flow: Flow, ofport: int, indent: int) -> None:
        port = br.port_by_ofport(ofport)
        if port is None or (ofport >= OFPP_MAX and ofport != OFPP_LOCAL):
            self.say(indent + 1, ">> Nonexistent output port")
            self.notes.append(f"nonexistent output port {ofport} in bridge {br.name}")
            return
        if port.interface.type == "patch":
            peer = self.dp.patch_peer(br, port.interface)
            if peer is None:
                self.say(indent + 1, ">> patch port has no working peer")
                self.notes.append(f"patch port {port.name} in bridge {br.name} has no working peer")
                return
            peer_br, peer_iface = peer
            saved = dict(flow)
            flow["in_port"] = peer_iface.ofport
            flow["metadata"] = 0
            for i in range(8):
                flow[f"reg{i}"] = 0
            self.say(indent, "")
            self.bridge_header(peer_br, indent)
            self.table_action(peer_br, flow, 0, peer_iface.ofport, 0xFF, indent)
            flow.clear()
            flow.update(saved)
            return
        self.outputs.append(Delivery(br.name, ofport, port.name, Packet.from_flow(flow, self.size)))

    def normal(self, br: Bridge, flow: Flow, indent: int) -> None:
        """OFPP_NORMAL: a MAC-learning switch over the bridge's ports (every port a trunk)."""
        now = self.dp.now()
        vlan = flow["vlan_tci"] & VLAN_VID_MASK if flow["vlan_tci"] & VLAN_CFI else 0
        src, dst, in_port = flow["dl_src"], flow["dl_dst"], flow["in_port"]
        for key in [k for k, e in br.macs.items() if now - e.learned_at > MAC_AGING_S]:
            del br.macs[key]
        if self.side_effects and not (src >> 40) & 1:
            entry = br.macs.get((vlan, src))
            if entry is None or entry.port != in_port:
                name = _port_name(br, in_port)
                self.say(indent + 1, f"-> learned that {format_mac(src)} is on port {name} in VLAN {vlan}")
            br.macs[(vlan, src)] = MacEntry(in_port, now)
        entry = None if (dst >> 40) & 1 else br.macs.get((vlan, dst))
        if entry is None:
            self.say(indent + 1, "-> no learned MAC for destination, flooding")
            for n in br.bundle_order():
                if n != in_port:
                    self.deliver(br, flow, n, indent)
            return
        if entry.port == in_port:
            self.say(indent + 1, "-> learned port is input port, dropping")
            self.reasons.append(f"NORMAL: learned port for {format_mac(dst)} is the input port")
            return
        self.say(indent + 1, "-> forwarding to learned port")
        self.deliver(br, flow, entry.port, indent)


def _port_name(br: Bridge, ofport: int) -> str:
    port = br.port_by_ofport(ofport)
    return port.name if port else str(ofport)


def _resolve_in_port(br: Bridge, in_port: int | str) -> int:
    if isinstance(in_port, int):
        return in_port
    if in_port in br.ports:
        return br.ports[in_port].interface.ofport
    if in_port.isdigit():
        return int(in_port)
    raise OvsError(f"{br.name}: no port named {in_port}")


def trace(dp: Datapath, bridge: str, in_port: int | str, packet: Packet, *, side_effects: bool = True,
          stats: bool = False) -> TraceResult:
    """Run `packet` arriving on `in_port` of `bridge` through the tables. With side_effects (the default, as
    `ofproto/trace ... -generate` and real traffic behave) learn actions and NORMAL's MAC learning change state;
    stats=True also credits n_packets/n_bytes and the idle clock of every rule hit (that is `send`)."""
    br = dp.bridge(bridge)
    for b in dp.bridges.values():
        b.expire()
    port_no = _resolve_in_port(br, in_port)
    flow = packet.to_flow(port_no)
    x = _Xlate(dp, side_effects=side_effects, stats=stats, size=packet.size)
    x.bridge_header(br, 0)
    initial = flow_text(flow)
    x.run_table(br, flow, 0, port_no, 0, deepens=False)
    learned: list[str] = []
    for p in x.learns:
        rule, _ = p.bridge.learn(p.learn.table, p.learn.priority, p.match, p.actions, cookie=p.learn.cookie,
                                 idle_timeout=p.learn.idle_timeout, hard_timeout=p.learn.hard_timeout)
        learned.append(rule.format(dp.now_ms(), stats=False))
    outputs = [] if x.error else x.outputs
    result = TraceResult(bridge=br.name, in_port=port_no, packet=packet, final=Packet.from_flow(flow, packet.size),
                         hits=x.hits, outputs=outputs, learned=learned, notes=x.notes, error=x.error, lines=x.lines,
                         flow_text=initial, final_text=flow_text(flow))
    if not outputs:
        if x.error:
            result.drop_reason = f"translation failed: {x.error}"
        elif x.reasons:
            result.drop_reason = x.reasons[0]
        else:
            result.drop_reason = "no output action"
    return result


def send(dp: Datapath, bridge: str, in_port: int | str, packet: Packet) -> TraceResult:
    """A real packet: trace with side effects and counters."""
    return trace(dp, bridge, in_port, packet, side_effects=True, stats=True)


__all__ = ["MAX_DEPTH", "MAX_RESUBMITS", "Delivery", "Packet", "RuleHit", "TraceResult", "flow_text", "send", "trace"]
