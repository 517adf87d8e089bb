"""OVSDB-ish state and OpenFlow tables of one Open vSwitch instance (one DPU's `ovs-vswitchd`).

Time is whatever `now()` returns (seconds, simulated); OVS keeps rule times in milliseconds, so do we.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .flows import (
    OFPP_LOCAL,
    OFPP_MAX,
    OFPTT_ALL,
    UINT64_MAX,
    Action,
    FlowMod,
    FlowParseError,
    Match,
    format_actions,
    parse_flow,
    parse_flows_file,
)


class OvsError(RuntimeError):
    """What ovs-vsctl/ovs-ofctl would report as a failure (no such bridge, bad flow, ...)."""


# OVS hands out automatic numbers only from the lower half of the port space (the upper half is for
# controllers), and does not reuse a number freed less than an hour ago (stale flows may still name it).
_AUTO_PORT_LIMIT = 32768
_PORT_REUSE_AFTER_MS = 60 * 60 * 1000
# NORMAL's MAC learning table entries age out after 300 s (other_config:mac-aging-time default).
MAC_AGING_S = 300.0
# A standalone bridge's visible flow, parsed once: every bridge of every DPU starts with it, and Bridge.add
# copies a FlowMod's match and action list (the actions are frozen), so one parse serves them all.
_STANDALONE_FLOW = parse_flow("priority=0,actions=NORMAL")

# What a change listener is told changed on a bridge (Datapath.listeners).
PORTS = "ports"  # a Port/Interface row came or went, an ofport moved, an external_ids/options key was added
FLOWS = "flows"  # an OpenFlow rule was deleted, flushed or replaced by one that acts differently
RESTART = "restart"  # ovs-vswitchd restarted: both of the above, on every bridge



@dataclass(frozen=True)
class Change:
    """What changed on one bridge. `dpf_ids`: the `dpf-id` external_ids of the interfaces whose rows came, went
    or moved (an interface without one counts as ""); `cookies`: of the rules deleted or overwritten. None: not
    narrowed down (a restart, a fail-mode flush, a bridge coming or going)."""

    bridge: str
    what: str
    dpf_ids: frozenset[str] | None = None
    cookies: frozenset[int] | None = None


ChangeListener = Callable[[Change], None]


def _dpf_ids(*ports: Port) -> frozenset[str]:
    return frozenset(p.interface.external_ids.get("dpf-id", "") for p in ports)


@dataclass
class Interface:
    name: str
    type: str = ""  # "" = system; internal, dpdk, patch, vxlan, ...
    ofport: int = -1
    ofport_request: int | None = None
    external_ids: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)


@dataclass
class Port:
    name: str
    interface: Interface
    external_ids: dict[str, str] = field(default_factory=dict)


@dataclass
class Rule:
    table: int
    priority: int
    match: Match
    actions: list[Action]
    cookie: int = 0
    idle_timeout: int = 0
    hard_timeout: int = 0
    created_ms: int = 0
    modified_ms: int = 0  # hard_timeout counts from here; a learn refresh moves it
    used_ms: int = 0  # idle_timeout counts from here; only packets hitting the rule move it
    n_packets: int = 0
    n_bytes: int = 0
    seq: int = 0  # insertion order, to break priority ties deterministically

    def identity(self) -> tuple[int, int, frozenset[tuple[str, int, int]]]:
        return self.table, self.priority, self.match.identity()

    def format(self, now_ms: int, *, stats: bool = True) -> str:
        """One `ovs-ofctl -O OpenFlow13 dump-flows` line (ofputil_flow_stats_format), with the leading space."""
        parts: list[str] = []
        if stats or self.cookie:
            parts.append(f"cookie={self.cookie:#x}, ")
        if stats:
            parts.append(f"duration={_duration(now_ms - self.created_ms)}, ")
        if stats or self.table:
            parts.append(f"table={self.table}, ")
        if stats:
            parts.append(f"n_packets={self.n_packets}, n_bytes={self.n_bytes}, ")
        if self.idle_timeout:
            parts.append(f"idle_timeout={self.idle_timeout}, ")
        if self.hard_timeout:
            parts.append(f"hard_timeout={self.hard_timeout}, ")
        match = self.match.format(self.priority)
        if match:
            parts.append(match + " ")
        parts.append("actions=" + format_actions(self.actions))
        return " " + "".join(parts)


def _differs(old: Rule, new: Rule) -> bool:
    """Whether an OFPFC_ADD over `old` changed what the rule does (a re-sent identical flow does not)."""
    return (old.cookie != new.cookie or old.idle_timeout != new.idle_timeout or old.hard_timeout != new.hard_timeout
            or old.actions != new.actions)


def _duration(ms: int) -> str:
    sec, frac = divmod(max(ms, 0), 1000)
    return f"{sec}.{frac:03d}s" if frac else f"{sec}s"


@dataclass
class MacEntry:
    port: int
    learned_at: float


class Bridge:
    def __init__(self, name: str, switch: Datapath, *, datapath_type: str = "", fail_mode: str = "") -> None:
        self.name = name
        self.switch = switch
        self.datapath_type = datapath_type
        self.fail_mode = ""
        self.external_ids: dict[str, str] = {}
        self.ports: dict[str, Port] = {}
        self.rules: list[Rule] = []
        self.macs: dict[tuple[int, int], MacEntry] = {}  # (vlan, mac) -> port, NORMAL's learning table
        self._alloc_port_no = 0
        self._port_usage: dict[int, int] = {}  # ofport -> ms it was freed (absent = never used)
        self._seq = 0
        local = Interface(name, "internal", OFPP_LOCAL)
        self.ports[name] = Port(name, local)
        self.set_fail_mode(fail_mode, _initial=True)

    # ------------------------------------------------------------------------------------------- OVSDB rows
    def set_fail_mode(self, fail_mode: str, *, _initial: bool = False) -> None:
        """Without a controller, a standalone bridge carries a visible `priority=0 actions=NORMAL` flow and a
        secure one carries nothing, so table misses drop. Changing the mode flushes every flow (connmgr)."""
        if fail_mode not in ("", "standalone", "secure"):
            raise OvsError(f"{fail_mode}: fail_mode must be standalone or secure")
        old_effective = "secure" if _initial else self.effective_fail_mode
        self.fail_mode = fail_mode
        if _initial or old_effective != self.effective_fail_mode:
            flushed = bool(self.rules)
            self.rules.clear()
            if self.effective_fail_mode == "standalone":
                self.add(_STANDALONE_FLOW)
            if flushed and not _initial:
                self.switch.changed(Change(self.name, FLOWS))

    @property
    def effective_fail_mode(self) -> str:
        return self.fail_mode or "standalone"

    def interfaces(self) -> list[Interface]:
        return [p.interface for p in self.ports.values()]

    def port_by_ofport(self, ofport: int) -> Port | None:
        for p in self.ports.values():
            if p.interface.ofport == ofport:
                return p
        return None

    def port_names(self) -> dict[str, int]:
        return {p.name: p.interface.ofport for p in self.ports.values() if p.interface.ofport >= 0}

    def ofports(self) -> list[int]:
        return sorted(p.interface.ofport for p in self.ports.values() if p.interface.ofport >= 0)

    def bundle_order(self) -> list[int]:
        """Ports in the order ovs-vswitchd keeps its bundles (xbridge->xbundles): creation order, the bridge's
        LOCAL port first. NORMAL floods in this order (checked against real OVS by `dpf fidelity`)."""
        return [p.interface.ofport for p in self.ports.values() if p.interface.ofport >= 0]

    def _alloc_ofport(self, request: int | None) -> int:
        """alloc_ofp_port(): the requested number if free, else the next number after the last one handed out,
        skipping numbers in use and (for an hour) recently freed ones."""
        in_use = {p.interface.ofport for p in self.ports.values()}
        if request is not None and 1 <= request < OFPP_MAX and request not in in_use:
            self._port_usage.pop(request, None)
            return request
        now_ms = self.switch.now_ms()
        end = self._alloc_port_no
        lru_port, lru = 0, None
        while True:
            self._alloc_port_no += 1
            if self._alloc_port_no >= _AUTO_PORT_LIMIT:
                self._alloc_port_no = 1
            n = self._alloc_port_no
            if n not in in_use:
                freed = self._port_usage.get(n)
                if freed is None:
                    return n
                if freed < now_ms - _PORT_REUSE_AFTER_MS:
                    del self._port_usage[n]
                    return n
                if lru is None or freed < lru:
                    lru, lru_port = freed, n
            if n == end or (end == 0 and n == _AUTO_PORT_LIMIT - 1):
                if lru_port:
                    self._port_usage.pop(lru_port, None)
                    return lru_port
                raise OvsError(f"{self.name}: no free OpenFlow port numbers")

    def add_port(self, name: str, iface_type: str = "", *, ofport_request: int | None = None,
                 external_ids: Mapping[str, str] | None = None, iface_external_ids: Mapping[str, str] | None = None,
                 options: Mapping[str, str] | None = None) -> Port:
        if self.switch.find_port(name) is not None:
            raise OvsError(f"cannot create a port named {name} because a port named {name} already exists")
        iface = Interface(name, iface_type, ofport_request=ofport_request,
                          external_ids=dict(iface_external_ids or {}), options=dict(options or {}))
        if iface_type == "patch" and "peer" not in iface.options:
            # ovs-vswitchd refuses a patch interface without a peer; the row exists but gets no ofport.
            iface.ofport = -1
            victim = None
        else:
            iface.ofport = self._alloc_ofport(ofport_request)
            victim = self._request_victim(ofport_request)
        port = Port(name, iface, dict(external_ids or {}))
        self.ports[name] = port
        if victim is not None:
            self._renumber(port, victim)
        else:
            self.switch.changed(Change(self.name, PORTS, _dpf_ids(port)))
        return port

    def _request_victim(self, request: int | None) -> Port | None:
        """The port holding the number a new interface requested, when that port did not request it itself."""
        if request is None or not 1 <= request < OFPP_MAX:
            return None
        holder = self.port_by_ofport(request)
        if holder is None or holder.interface.ofport == OFPP_LOCAL or holder.interface.ofport_request == request:
            return None  # free (already granted), or a conflict of two requests: the holder keeps it
        return holder

    def _renumber(self, port: Port, victim: Port) -> None:
        """bridge_delete_or_reconfigure_ports(): an interface whose ofport_request is held by a port that never
        requested it first gets an automatic number; on the next reconfiguration both are deleted (their numbers
        freed now) and added back, the requester with its number, the victim with a fresh automatic one (the
        next after the last handed out: freed numbers are not reused within the hour). Both come back as new
        bundles, so they move to the end of the flood order; MAC entries on the victim's old number go."""
        now = self.switch.now_ms()
        for p in (port, victim):
            self._port_usage[p.interface.ofport] = now
            stale = [k for k, e in self.macs.items() if e.port == p.interface.ofport]
            for k in stale:
                del self.macs[k]
            p.interface.ofport = -1
        port.interface.ofport = self._alloc_ofport(port.interface.ofport_request)
        victim.interface.ofport = self._alloc_ofport(victim.interface.ofport_request)
        for p in (port, victim):
            self.ports[p.name] = self.ports.pop(p.name)
        self.switch.changed(Change(self.name, PORTS, _dpf_ids(port, victim)))

    def del_port(self, name: str) -> bool:
        port = self.ports.pop(name, None)
        if port is None:
            return False
        if port.interface.ofport > 0:
            self._port_usage[port.interface.ofport] = self.switch.now_ms()
        stale = [k for k, e in self.macs.items() if e.port == port.interface.ofport]
        for k in stale:
            del self.macs[k]
        self.switch.changed(Change(self.name, PORTS, _dpf_ids(port)))
        return True

    # -------------------------------------------------------------------------------------------- flow table
    def expire(self) -> None:
        """rule_expire(): hard timeout from the last modification, idle timeout from the last packet."""
        now = self.switch.now_ms()
        self.rules = [r for r in self.rules
                      if not (r.hard_timeout and now > r.modified_ms + r.hard_timeout * 1000)
                      and not (r.idle_timeout and now > r.used_ms + r.idle_timeout * 1000)]

    def find(self, table: int, priority: int, match: Match) -> Rule | None:
        ident = (table, priority, match.identity())
        for r in self.rules:
            if r.identity() == ident:
                return r
        return None

    def add(self, fm: FlowMod) -> Rule:
        """OFPFC_ADD: an identical match+priority in the table is replaced. The replacement keeps the old
        counters and idle clock (no reset_counts) and the old cookie when the new flow names none."""
        self.expire()
        now = self.switch.now_ms()
        old = self.find(fm.table, fm.priority, fm.match)
        self._seq += 1
        rule = Rule(fm.table, fm.priority, fm.match.copy(), list(fm.actions), fm.cookie, fm.idle_timeout,
                    fm.hard_timeout, now, now, now, seq=self._seq)
        if old is not None:
            if not fm.cookie_set:
                rule.cookie = old.cookie
            rule.n_packets, rule.n_bytes, rule.used_ms = old.n_packets, old.n_bytes, old.used_ms
            rule.seq = old.seq
            self.rules[self.rules.index(old)] = rule
            if self.switch.listeners and not self.switch.muted and _differs(old, rule):
                self.switch.changed(Change(self.name, FLOWS, cookies=frozenset((old.cookie,))))
        else:
            self.rules.append(rule)
        return rule

    def learn(self, table: int, priority: int, match: Match, actions: list[Action], *, cookie: int,
              idle_timeout: int, hard_timeout: int) -> tuple[Rule, str]:
        """A learn action's OFPFC_MODIFY_STRICT. Returns the rule and what happened: `added`, `refreshed`
        (identical rule: only its modified time moves, so hard_timeout restarts but idle_timeout does not) or
        `modified` (same match, different actions/cookie/timeouts: replaced, counters and created time kept)."""
        self.expire()
        now = self.switch.now_ms()
        old = self.find(table, priority, match)
        if old is not None:
            same = (old.idle_timeout == idle_timeout and old.hard_timeout == hard_timeout
                    and old.cookie == cookie and format_actions(old.actions) == format_actions(actions))
            if same:
                old.modified_ms = now
                return old, "refreshed"
            rule = Rule(table, priority, match.copy(), list(actions), cookie, old.idle_timeout, old.hard_timeout,
                        old.created_ms, now, old.used_ms, old.n_packets, old.n_bytes, old.seq)
            self.rules[self.rules.index(old)] = rule
            return rule, "modified"
        self._seq += 1
        rule = Rule(table, priority, match.copy(), list(actions), cookie, idle_timeout, hard_timeout,
                    now, now, now, seq=self._seq)
        self.rules.append(rule)
        return rule, "added"

    def delete(self, fm: FlowMod, *, strict: bool = False) -> int:
        """del-flows: loose deletes every rule the given match covers, --strict only the identical
        match+priority; both filtered by table (default all) and cookie/mask."""
        self.expire()
        keep: list[Rule] = []
        gone: set[int] = set()
        n = 0
        for r in self.rules:
            hit = ((fm.table == OFPTT_ALL or r.table == fm.table)
                   and (r.cookie & fm.cookie_mask) == (fm.cookie & fm.cookie_mask))
            if hit:
                hit = (r.priority == fm.priority and r.match.identity() == fm.match.identity()) if strict \
                    else fm.match.covers(r.match)
            if hit:
                n += 1
                gone.add(r.cookie)
            else:
                keep.append(r)
        self.rules = keep
        if n:
            self.switch.changed(Change(self.name, FLOWS, cookies=frozenset(gone)))
        return n

    def lookup(self, table: int, flow: dict[str, int]) -> Rule | None:
        best: Rule | None = None
        for r in self.rules:
            if r.table == table and r.match.matches(flow) and (
                    best is None or r.priority > best.priority or (r.priority == best.priority and r.seq < best.seq)):
                best = r
        return best

    def sorted_rules(self) -> list[Rule]:
        return sorted(self.rules, key=lambda r: (r.table, -r.priority, r.seq))

    def dump_flows(self, *, stats: bool = True, table: int | None = None, cookie: int | None = None) -> list[str]:
        self.expire()
        now = self.switch.now_ms()
        return [r.format(now, stats=stats) for r in self.sorted_rules()
                if (table is None or r.table == table) and (cookie is None or r.cookie == cookie)]


class Datapath:
    """One Open vSwitch: its bridges (OVSDB) and their OpenFlow tables. `now()` is the simulated clock."""

    def __init__(self, now: Callable[[], float], name: str = "ovs") -> None:
        self.now = now
        self.name = name
        self.bridges: dict[str, Bridge] = {}
        self.external_ids: dict[str, str] = {}
        # Called with a Change (PORTS | FLOWS | RESTART) after a change an OVSDB monitor or a flow-table watcher
        # would see. Learned flows coming and going (traffic), rule expiry and re-sent identical flows are not
        # changes: the twin wakes the SFC agent on these and nothing the agent's re-apply restores moves then.
        self.listeners: list[ChangeListener] = []
        self.muted = 0

    def now_ms(self) -> int:
        return round(self.now() * 1000)

    def changed(self, change: Change) -> None:
        if self.muted or not self.listeners:
            return
        for listener in list(self.listeners):
            listener(change)

    @contextlib.contextmanager
    def mute(self) -> Iterator[None]:
        """No FLOWS/PORTS calls inside: for a writer that restores its own state (the SFC agent's bundle), whose
        replacing the flows of another writer must not wake that writer to replace them back at once."""
        self.muted += 1
        try:
            yield
        finally:
            self.muted -= 1

    # -------------------------------------------------------------------------------------- ovs-vsctl verbs
    def restart(self, keep_port: Callable[[Bridge, Port], bool]) -> tuple[int, int]:
        """ovs-vswitchd restarting: every OpenFlow flow is gone (a bridge comes back with only its fail-mode
        default) and so is the MAC table; ports `keep_port` rejects are gone too. Returns (flows, ports) lost."""
        flows = ports = 0
        with self.mute():
            for br in self.bridges.values():
                flows += sum(1 for r in br.rules
                             if not (r.priority == 0 and r.cookie == 0 and br.effective_fail_mode == "standalone"))
                br.macs.clear()
                br.set_fail_mode(br.fail_mode, _initial=True)
                for name, port in list(br.ports.items()):
                    if name != br.name and not keep_port(br, port):
                        br.del_port(name)
                        ports += 1
        # keep_port may also have edited the rows it kept (the agent's external_ids on the uplinks).
        for name in list(self.bridges):
            self.changed(Change(name, RESTART))
        return flows, ports

    def add_br(self, name: str, *, datapath_type: str = "", fail_mode: str = "",
               external_ids: Mapping[str, str] | None = None, may_exist: bool = False) -> Bridge:
        if name in self.bridges:
            if may_exist:
                return self.bridges[name]
            raise OvsError(f"cannot create a bridge named {name} because a bridge named {name} already exists")
        if self.find_port(name) is not None:
            raise OvsError(f"cannot create a bridge named {name} because a port named {name} already exists")
        br = Bridge(name, self, datapath_type=datapath_type, fail_mode=fail_mode)
        br.external_ids.update(external_ids or {})
        self.bridges[name] = br
        self.changed(Change(name, PORTS))
        return br

    def del_br(self, name: str) -> None:
        if self.bridges.pop(name, None) is None:
            raise OvsError(f"no bridge named {name}")
        self.changed(Change(name, RESTART))

    def bridge(self, name: str) -> Bridge:
        br = self.bridges.get(name)
        if br is None:
            raise OvsError(f"no bridge named {name}")
        return br

    def find_port(self, name: str) -> tuple[Bridge, Port] | None:
        for br in self.bridges.values():
            if name in br.ports:
                return br, br.ports[name]
        return None

    def find_interfaces(self, **external_ids: str) -> list[tuple[Bridge, Interface]]:
        """`ovs-vsctl find Interface external_ids:k=v`: every interface carrying all the given ids."""
        out = []
        for br in self.bridges.values():
            for iface in br.interfaces():
                if all(iface.external_ids.get(k) == v for k, v in external_ids.items()):
                    out.append((br, iface))
        return out

    def patch_peer(self, br: Bridge, iface: Interface) -> tuple[Bridge, Interface] | None:
        """A working patch pair: both ends are patch interfaces naming each other as `options:peer`."""
        if iface.type != "patch":
            return None
        peer_name = iface.options.get("peer")
        found = self.find_port(peer_name) if peer_name else None
        if found is None:
            return None
        peer_br, peer_port = found
        peer = peer_port.interface
        if peer.type != "patch" or peer.options.get("peer") != iface.name or peer.ofport < 0:
            return None
        return peer_br, peer

    def ports(self, bridge: str) -> list[dict[str, Any]]:
        br = self.bridge(bridge)
        return [{
            "bridge": br.name,
            "name": p.name,
            "type": p.interface.type,
            "ofport": p.interface.ofport,
            "ofport_request": p.interface.ofport_request,
            "external_ids": dict(p.interface.external_ids),
            "port_external_ids": dict(p.external_ids),
            "options": dict(p.interface.options),
        } for p in br.ports.values()]

    # ------------------------------------------------------------------------------------- ovs-ofctl verbs
    def add_flow(self, bridge: str, text: str) -> Rule:
        br = self.bridge(bridge)
        return br.add(parse_flow(text, port_names=br.port_names()))

    def add_flows(self, bridge: str, text: str | list[str]) -> list[Rule]:
        """`ovs-ofctl --bundle add-flows`: every line parsed and checked first; one bad line and nothing changes."""
        br = self.bridge(bridge)
        body = text if isinstance(text, str) else "\n".join(text)
        try:
            mods = parse_flows_file(body, port_names=br.port_names())
        except FlowParseError as e:
            raise OvsError(f"{bridge}: {e}") from e
        return [br.add(fm) for fm in mods]

    def del_flows(self, bridge: str, text: str = "", *, strict: bool = False) -> int:
        br = self.bridge(bridge)
        try:
            fm = parse_flow(text, command="del_strict" if strict else "del", port_names=br.port_names())
        except FlowParseError as e:
            raise OvsError(f"{bridge}: {e}") from e
        return br.delete(fm, strict=strict)

    def del_flows_cookie(self, bridge: str, cookie: int) -> int:
        return self.del_flows(bridge, f"cookie={cookie & UINT64_MAX:#x}/-1")

    def dump_flows(self, bridge: str, *, stats: bool = True, table: int | None = None,
                   cookie: int | None = None) -> list[str]:
        return self.bridge(bridge).dump_flows(stats=stats, table=table, cookie=cookie)

