"""OpenFlow flow text: fields, matches, actions, `ovs-ofctl` parsing and printing.

The vocabulary is Open vSwitch's own (ovs-fields(7), ovs-actions(7), ovs-ofctl(8)). Printing follows what
`ovs-ofctl -O OpenFlow13 dump-flows` shows: the switch keeps abstract actions and re-encodes them as OpenFlow 1.3
on the way out, so `mod_dl_src` comes back as `set_field:..->eth_src` and `strip_vlan` as `pop_vlan`, while
Nicira extensions (`load`, `move`, `learn`, `resubmit`) keep their own spelling.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

# Reserved OpenFlow port numbers (OpenFlow 1.0 16-bit space, as OVS keeps them internally).
OFPP_MAX = 0xFF00
OFPP_IN_PORT = 0xFFF8
OFPP_TABLE = 0xFFF9
OFPP_NORMAL = 0xFFFA
OFPP_FLOOD = 0xFFFB
OFPP_ALL = 0xFFFC
OFPP_CONTROLLER = 0xFFFD
OFPP_LOCAL = 0xFFFE
OFPP_NONE = 0xFFFF

RESERVED_PORTS: dict[str, int] = {
    "IN_PORT": OFPP_IN_PORT,
    "TABLE": OFPP_TABLE,
    "NORMAL": OFPP_NORMAL,
    "FLOOD": OFPP_FLOOD,
    "ALL": OFPP_ALL,
    "CONTROLLER": OFPP_CONTROLLER,
    "LOCAL": OFPP_LOCAL,
    "NONE": OFPP_NONE,
    "ANY": OFPP_NONE,
}
_RESERVED_NAMES = {v: k for k, v in RESERVED_PORTS.items() if k != "ANY"}

OFP_DEFAULT_PRIORITY = 0x8000
OFPTT_ALL = 255
UINT64_MAX = (1 << 64) - 1

ETH_TYPE_IP = 0x0800
ETH_TYPE_ARP = 0x0806
ETH_TYPE_RARP = 0x8035
ETH_TYPE_IPV6 = 0x86DD
ETH_TYPE_VLAN = 0x8100
ETH_TYPE_VLAN_8021AD = 0x88A8
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_SCTP = 132

VLAN_CFI = 0x1000
VLAN_VID_MASK = 0x0FFF
VLAN_PCP_MASK = 0xE000


class FlowParseError(ValueError):
    """A flow (or an action in it) that `ovs-ofctl` or the switch would refuse. `line` is 1-based when the flow came
    from a multi-line bundle file."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message if line is None else f"line {line}: {message}")
        self.message = message
        self.line = line


# ---------------------------------------------------------------------------------------------------------- fields

@dataclass(frozen=True)
class FieldDef:
    """One OVS field. `key` is the storage slot in a flow; several names may share one slot as in OVS's struct flow
    (tcp_src and udp_src are both `tp_src`)."""

    key: str
    name: str  # the meta-flow name, printed by set_field and learn immediates
    nxm: str  # the NXM/OXM name, printed in subfields (`NXM_OF_ETH_SRC[]`)
    bits: int
    fmt: str  # port | mac | ipv4 | dec | hex
    prereq: str = ""  # "" | ip | l3 (ip, ipv6 or arp) | tcp | udp | l4 (tcp, udp or sctp)
    maskable: bool = True
    writable: bool = True

    @property
    def all_ones(self) -> int:
        return (1 << self.bits) - 1


_FIELDS: list[FieldDef] = [
    FieldDef("in_port", "in_port", "NXM_OF_IN_PORT", 16, "port", maskable=False),
    FieldDef("dl_src", "eth_src", "NXM_OF_ETH_SRC", 48, "mac"),
    FieldDef("dl_dst", "eth_dst", "NXM_OF_ETH_DST", 48, "mac"),
    FieldDef("dl_type", "eth_type", "NXM_OF_ETH_TYPE", 16, "hex", maskable=False, writable=False),
    FieldDef("vlan_tci", "vlan_tci", "NXM_OF_VLAN_TCI", 16, "hex"),
    FieldDef("nw_src", "ip_src", "NXM_OF_IP_SRC", 32, "ipv4", prereq="l3"),
    FieldDef("nw_dst", "ip_dst", "NXM_OF_IP_DST", 32, "ipv4", prereq="l3"),
    FieldDef("nw_proto", "nw_proto", "NXM_OF_IP_PROTO", 8, "dec", prereq="l3", maskable=False, writable=False),
    FieldDef("tp_src", "tcp_src", "NXM_OF_TCP_SRC", 16, "dec", prereq="tcp"),
    FieldDef("tp_dst", "tcp_dst", "NXM_OF_TCP_DST", 16, "dec", prereq="tcp"),
    FieldDef("tp_src", "udp_src", "NXM_OF_UDP_SRC", 16, "dec", prereq="udp"),
    FieldDef("tp_dst", "udp_dst", "NXM_OF_UDP_DST", 16, "dec", prereq="udp"),
    FieldDef("metadata", "metadata", "OXM_OF_METADATA", 64, "hex"),
    *(FieldDef(f"reg{i}", f"reg{i}", f"NXM_NX_REG{i}", 32, "hex") for i in range(8)),
]

FIELDS_BY_NAME: dict[str, FieldDef] = {}
for _f in _FIELDS:
    FIELDS_BY_NAME[_f.name] = _f
    FIELDS_BY_NAME[_f.nxm] = _f
_ALIASES = {
    "dl_src": "eth_src", "dl_dst": "eth_dst", "dl_type": "eth_type", "nw_src": "ip_src", "nw_dst": "ip_dst",
    "ip_proto": "nw_proto",
}
for _alias, _target in _ALIASES.items():
    FIELDS_BY_NAME[_alias] = FIELDS_BY_NAME[_target]
# tp_src/tp_dst are the transport-agnostic spellings: OVS stores tcp/udp/sctp ports in one slot.
FIELDS_BY_NAME["tp_src"] = FieldDef("tp_src", "tcp_src", "NXM_OF_TCP_SRC", 16, "dec", prereq="l4")
FIELDS_BY_NAME["tp_dst"] = FieldDef("tp_dst", "tcp_dst", "NXM_OF_TCP_DST", 16, "dec", prereq="l4")
# The canonical definition of each slot, used when printing a match or a learned spec.
SLOT_FIELD: dict[str, FieldDef] = {}
for _f in _FIELDS:
    SLOT_FIELD.setdefault(_f.key, _f)

FLOW_KEYS: tuple[str, ...] = tuple(SLOT_FIELD)
Flow = dict[str, int]


def new_flow() -> Flow:
    flow = dict.fromkeys(FLOW_KEYS, 0)
    flow["vlan_tci1"] = 0  # the inner tag once push_vlan stacks a second one; never matched on here
    return flow


# ------------------------------------------------------------------------------------------------- value parsing

def parse_int(text: str, what: str = "value") -> int:
    """C strtoull(.., 0): 0x hex, leading-zero octal, else decimal."""
    t = text.strip()
    try:
        if t.lower().startswith("0x"):
            return int(t, 16)
        if len(t) > 1 and t.startswith("0") and t.isdigit():
            return int(t, 8)
        return int(t, 10)
    except ValueError:
        raise FlowParseError(f"{text}: invalid numeric format for {what}") from None


def parse_mac(text: str) -> int:
    parts = text.split(":")
    if len(parts) != 6 or not all(re.fullmatch(r"[0-9a-fA-F]{1,2}", p) for p in parts):
        raise FlowParseError(f"{text}: invalid Ethernet address")
    value = 0
    for p in parts:
        value = (value << 8) | int(p, 16)
    return value


def format_mac(value: int) -> str:
    return ":".join(f"{(value >> s) & 0xFF:02x}" for s in range(40, -8, -8))


def parse_ipv4(text: str) -> int:
    try:
        return int(ipaddress.IPv4Address(text))
    except ValueError:
        raise FlowParseError(f"{text}: could not convert to IP address") from None


def format_ipv4(value: int) -> str:
    return str(ipaddress.IPv4Address(value))


def hexfmt(value: int) -> str:
    """C's %#x: `0` for zero, else `0x..`."""
    return "0" if value == 0 else f"{value:#x}"


def parse_port(text: str, port_names: Mapping[str, int] | None = None) -> int:
    """ofputil_port_from_string: a number, a reserved name (any case) or a port name of the bridge."""
    t = text.strip()
    if re.fullmatch(r"\d+|0[xX][0-9a-fA-F]+", t):
        n = parse_int(t, "port")
        if n < OFPP_MAX or n in _RESERVED_NAMES:
            return n
        raise FlowParseError(f"port {n} is outside the supported range 0 through {OFPP_MAX - 1:d} or {OFPP_MAX:#x} through 0xffff")
    if t.upper() in RESERVED_PORTS:
        return RESERVED_PORTS[t.upper()]
    if port_names and t in port_names:
        return port_names[t]
    raise FlowParseError(f"{text}: port name unknown")


def format_port(port: int) -> str:
    return _RESERVED_NAMES.get(port, str(port))


def parse_field_value(f: FieldDef, text: str, port_names: Mapping[str, int] | None = None) -> tuple[int, int]:
    """mf_parse: a value and an optional `/mask` in the field's syntax. Returns (value & mask, mask)."""
    value_text, slash, mask_text = text.partition("/")
    if slash and not f.maskable:
        raise FlowParseError(f"{f.name}: field does not support masking")
    if f.fmt == "port":
        return parse_port(value_text, port_names), f.all_ones
    if f.fmt == "mac":
        value = parse_mac(value_text)
        mask = parse_mac(mask_text) if slash else f.all_ones
    elif f.fmt == "ipv4":
        value = parse_ipv4(value_text)
        if not slash:
            mask = f.all_ones
        elif "." in mask_text:
            mask = parse_ipv4(mask_text)
        else:
            n = parse_int(mask_text, "prefix length")
            if not 0 <= n <= 32:
                raise FlowParseError(f"{text}: network prefix bits not between 0 and 32")
            mask = (f.all_ones << (32 - n)) & f.all_ones
    else:
        value = parse_int(value_text, f.name)
        mask = parse_int(mask_text, f.name) if slash else f.all_ones
    if value > f.all_ones or mask > f.all_ones:
        raise FlowParseError(f"{text}: value too large for {f.bits}-bit field {f.name}")
    return value & mask, mask


def format_field_value(f: FieldDef, value: int) -> str:
    """mf_format without a mask."""
    if f.fmt == "port":
        return format_port(value)
    if f.fmt == "mac":
        return format_mac(value)
    if f.fmt == "ipv4":
        return format_ipv4(value)
    if f.fmt == "dec":
        return str(value)
    return hexfmt(value)


# ------------------------------------------------------------------------------------------------------ subfields

@dataclass(frozen=True)
class Subfield:
    """`NXM_NX_REG0[0..15]`, `NXM_OF_ETH_SRC[]`, `dl_src` (whole field)."""

    field: FieldDef
    ofs: int
    n_bits: int

    @property
    def mask(self) -> int:
        return ((1 << self.n_bits) - 1) << self.ofs

    def read(self, flow: Flow) -> int:
        return (flow[self.field.key] >> self.ofs) & ((1 << self.n_bits) - 1)

    def write(self, flow: Flow, value: int) -> None:
        key = self.field.key
        flow[key] = (flow[key] & ~self.mask) | ((value << self.ofs) & self.mask)

    def whole(self) -> bool:
        return self.ofs == 0 and self.n_bits == self.field.bits

    def text(self) -> str:
        """mf_format_subfield: the NXM name and the bit range."""
        if self.whole():
            rng = "[]"
        elif self.n_bits == 1:
            rng = f"[{self.ofs}]"
        else:
            rng = f"[{self.ofs}..{self.ofs + self.n_bits - 1}]"
        return self.field.nxm + rng


def parse_subfield(text: str) -> Subfield:
    m = re.fullmatch(r"\s*([A-Za-z0-9_]+)(?:\[(\d*)(?:\.\.(\d+))?\])?\s*", text)
    if not m:
        raise FlowParseError(f"{text}: syntax error parsing subfield")
    f = FIELDS_BY_NAME.get(m.group(1))
    if f is None:
        raise FlowParseError(f"{text}: unknown field `{m.group(1)}'")
    start, end = m.group(2), m.group(3)
    if not start:
        if end is not None:
            raise FlowParseError(f"{text}: syntax error parsing subfield")
        return Subfield(f, 0, f.bits)
    ofs = int(start)
    last = int(end) if end is not None else ofs
    if last < ofs:
        raise FlowParseError(f"{text}: starting bit {ofs} is after ending bit {last}")
    if last >= f.bits:
        raise FlowParseError(f"{text}: {f.name} has {f.bits} bits but bit {last} was requested")
    return Subfield(f, ofs, last - ofs + 1)


# ---------------------------------------------------------------------------------------------------------- match

@dataclass
class Match:
    """Masked values per flow slot; a packet matches when `flow[k] & mask == value` for every slot."""

    fields: dict[str, tuple[int, int]] = field(default_factory=dict)

    def set(self, key: str, value: int, mask: int) -> None:
        if mask == 0:
            self.fields.pop(key, None)
        else:
            self.fields[key] = (value & mask, mask)

    def set_bits(self, key: str, value: int, mask: int) -> None:
        """Merge `mask` bits into whatever is already matched on `key` (dl_vlan + dl_vlan_pcp, learn subfields)."""
        old_value, old_mask = self.fields.get(key, (0, 0))
        self.set(key, (old_value & ~mask) | (value & mask), old_mask | mask)

    def value(self, key: str) -> int | None:
        """The value when `key` is matched exactly-ish (any mask), else None."""
        entry = self.fields.get(key)
        return None if entry is None else entry[0]

    def exact(self, key: str) -> int | None:
        entry = self.fields.get(key)
        if entry is None or entry[1] != SLOT_FIELD[key].all_ones:
            return None
        return entry[0]

    def matches(self, flow: Flow) -> bool:
        return all((flow[k] & m) == v for k, (v, m) in self.fields.items())

    def identity(self) -> frozenset[tuple[str, int, int]]:
        return frozenset((k, v, m) for k, (v, m) in self.fields.items())

    def covers(self, other: Match) -> bool:
        """True when every packet `other` matches is matched by self (OVS's loose delete/modify criteria)."""
        for k, (v, m) in self.fields.items():
            ov, om = other.fields.get(k, (0, 0))
            if (om & m) != m or (ov & m) != v:
                return False
        return True

    def has_vlan(self) -> bool:
        entry = self.fields.get("vlan_tci")
        return entry is not None and bool(entry[1] & VLAN_CFI) and bool(entry[0] & VLAN_CFI)

    def format(self, priority: int = OFP_DEFAULT_PRIORITY) -> str:
        """match_format(): OVS's fixed field order, protocol shorthands, and `priority=` unless the default."""
        out: list[str] = []
        if priority != OFP_DEFAULT_PRIORITY:
            out.append(f"priority={priority}")
        f = self.fields
        dl_type = f["dl_type"][0] if "dl_type" in f else None
        skip_type = skip_proto = False
        if dl_type is not None:
            skip_type = True
            proto = f["nw_proto"][0] if "nw_proto" in f else None
            if dl_type == ETH_TYPE_IP:
                names = {IPPROTO_ICMP: "icmp", IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp", IPPROTO_SCTP: "sctp"}
                if proto is not None and proto in names:
                    out.append(names[proto])
                    skip_proto = True
                else:
                    out.append("ip")
            elif dl_type == ETH_TYPE_IPV6:
                names6 = {58: "icmp6", IPPROTO_TCP: "tcp6", IPPROTO_UDP: "udp6", IPPROTO_SCTP: "sctp6"}
                if proto is not None and proto in names6:
                    out.append(names6[proto])
                    skip_proto = True
                else:
                    out.append("ipv6")
            elif dl_type == ETH_TYPE_ARP:
                out.append("arp")
            elif dl_type == ETH_TYPE_RARP:
                out.append("rarp")
            else:
                skip_type = False
        for i in range(8):
            _put_uint_masked(out, f"reg{i}", f.get(f"reg{i}"), 32)
        _put_uint_masked(out, "metadata", f.get("metadata"), 64)
        if "in_port" in f:
            out.append(f"in_port={format_port(f['in_port'][0])}")
        if "vlan_tci" in f:
            out.append(_format_vlan(*f["vlan_tci"]))
        _put_eth_masked(out, "dl_src", f.get("dl_src"))
        _put_eth_masked(out, "dl_dst", f.get("dl_dst"))
        if not skip_type and dl_type is not None:
            out.append(f"dl_type=0x{dl_type:04x}")
        arp = dl_type in (ETH_TYPE_ARP, ETH_TYPE_RARP)
        _put_ip_masked(out, "arp_spa" if arp else "nw_src", f.get("nw_src"))
        _put_ip_masked(out, "arp_tpa" if arp else "nw_dst", f.get("nw_dst"))
        if not skip_proto and "nw_proto" in f:
            out.append(f"{'arp_op' if arp else 'nw_proto'}={f['nw_proto'][0]}")
        icmp = dl_type == ETH_TYPE_IP and "nw_proto" in f and f["nw_proto"][0] == IPPROTO_ICMP
        _put_be16_masked(out, "icmp_type" if icmp else "tp_src", f.get("tp_src"))
        _put_be16_masked(out, "icmp_code" if icmp else "tp_dst", f.get("tp_dst"))
        return ",".join(out)

    def copy(self) -> Match:
        return Match(dict(self.fields))


def _put_uint_masked(out: list[str], name: str, entry: tuple[int, int] | None, bits: int) -> None:
    if entry is None:
        return
    value, mask = entry
    text = f"{name}={hexfmt(value)}"
    if mask != (1 << bits) - 1:
        text += f"/{hexfmt(mask)}"
    out.append(text)


def _put_eth_masked(out: list[str], name: str, entry: tuple[int, int] | None) -> None:
    if entry is None:
        return
    value, mask = entry
    text = f"{name}={format_mac(value)}"
    if mask != (1 << 48) - 1:
        text += f"/{format_mac(mask)}"
    out.append(text)


def _put_ip_masked(out: list[str], name: str, entry: tuple[int, int] | None) -> None:
    if entry is None:
        return
    value, mask = entry
    text = f"{name}={format_ipv4(value)}"
    if mask != 0xFFFFFFFF:
        bits = bin(mask).count("1")
        cidr = mask == (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF
        text += f"/{bits}" if cidr else f"/{format_ipv4(mask)}"
    out.append(text)


def _put_be16_masked(out: list[str], name: str, entry: tuple[int, int] | None) -> None:
    if entry is None:
        return
    value, mask = entry
    out.append(f"{name}={value}" if mask == 0xFFFF else f"{name}={value:#x}/{mask:#x}")


def _format_vlan(value: int, mask: int) -> str:
    vid_mask, pcp_mask, cfi = mask & VLAN_VID_MASK, mask & VLAN_PCP_MASK, mask & VLAN_CFI
    if (cfi and value & VLAN_CFI and vid_mask in (0, VLAN_VID_MASK) and pcp_mask in (0, VLAN_PCP_MASK)
            and (vid_mask or pcp_mask)):
        parts = []
        if vid_mask:
            parts.append(f"dl_vlan={value & VLAN_VID_MASK}")
        if pcp_mask:
            parts.append(f"dl_vlan_pcp={(value >> 13) & 7}")
        return ",".join(parts)
    if mask == 0xFFFF:
        return f"vlan_tci=0x{value:04x}"
    return f"vlan_tci=0x{value:04x}/0x{mask:04x}"


# -------------------------------------------------------------------------------------------------------- actions

@dataclass(frozen=True)
class Output:
    port: int

    def text(self) -> str:
        return f"output:{self.port}" if self.port < OFPP_MAX else format_port(self.port)


@dataclass(frozen=True)
class OutputReg:
    src: Subfield

    def text(self) -> str:
        return f"output:{self.src.text()}"


@dataclass(frozen=True)
class Resubmit:
    in_port: int  # OFPP_IN_PORT = keep the packet's
    table: int  # OFPTT_ALL = the current table

    def text(self) -> str:
        if self.in_port != OFPP_IN_PORT and self.table == OFPTT_ALL:
            return f"resubmit:{format_port(self.in_port)}"
        port = "" if self.in_port == OFPP_IN_PORT else format_port(self.in_port)
        table = "" if self.table == OFPTT_ALL else str(self.table)
        return f"resubmit({port},{table})"


@dataclass(frozen=True)
class GotoTable:
    table: int

    def text(self) -> str:
        return f"goto_table:{self.table}"


@dataclass(frozen=True)
class SetField:
    """Whole-field writes. `via` keeps how the user wrote it because OF1.3 re-encoding differs: set_field and
    mod_* come back as `set_field:`, load (a Nicira reg_load) comes back as `load:`."""

    dst: Subfield
    value: int
    via: str = "set_field"  # set_field | load | mod

    def text(self) -> str:
        if self.via == "load":
            return f"load:{hexfmt(self.value)}->{self.dst.text()}"
        if self.via == "vlan_vid":
            return f"set_field:{self.value}->vlan_vid"
        return f"set_field:{format_field_value(self.dst.field, self.value)}->{self.dst.field.name}"


@dataclass(frozen=True)
class RegMove:
    src: Subfield
    dst: Subfield

    def text(self) -> str:
        return f"move:{self.src.text()}->{self.dst.text()}"


@dataclass(frozen=True)
class PushVlan:
    ethertype: int = ETH_TYPE_VLAN

    def text(self) -> str:
        return f"push_vlan:{self.ethertype:#x}"


@dataclass(frozen=True)
class PopVlan:
    def text(self) -> str:
        return "pop_vlan"  # strip_vlan is OF1.0's name; OF1.3 encodes both as POP_VLAN


@dataclass(frozen=True)
class SetVlanVid:
    """mod_vlan_vid: pushes a tag when the packet has none (OVS's push_vlan_if_needed)."""

    vid: int
    flow_has_vlan: bool = False

    def text(self) -> str:
        # OF1.3 has no SET_VLAN_VID: it goes out as [push_vlan,] set_field of the VID with OFPVID_PRESENT.
        vid = f"set_field:{self.vid | VLAN_CFI}->vlan_vid"
        return vid if self.flow_has_vlan else f"push_vlan:{ETH_TYPE_VLAN:#x},{vid}"


@dataclass(frozen=True)
class LearnSpec:
    kind: str  # match | load | output
    dst: Subfield | None
    src: Subfield | None = None
    imm: int | None = None

    def text(self) -> str:
        if self.kind == "match":
            assert self.dst is not None
            if self.src is None:
                assert self.imm is not None
                if self.dst.whole():
                    return f"{self.dst.field.name}={format_field_value(self.dst.field, self.imm)}"
                return f"{self.dst.text()}={hexfmt(self.imm)}"
            if self.src.field.nxm == self.dst.field.nxm and self.src.ofs == self.dst.ofs:
                return self.dst.text()
            return f"{self.dst.text()}={self.src.text()}"
        if self.kind == "load":
            assert self.dst is not None
            src = hexfmt(self.imm or 0) if self.src is None else self.src.text()
            return f"load:{src}->{self.dst.text()}"
        assert self.src is not None
        return f"output:{self.src.text()}"


@dataclass(frozen=True)
class Learn:
    table: int = 1
    priority: int = OFP_DEFAULT_PRIORITY
    idle_timeout: int = 0
    hard_timeout: int = 0
    cookie: int = 0
    specs: tuple[LearnSpec, ...] = ()

    def text(self) -> str:
        parts = [f"learn(table={self.table}"]
        if self.idle_timeout:
            parts.append(f"idle_timeout={self.idle_timeout}")
        if self.hard_timeout:
            parts.append(f"hard_timeout={self.hard_timeout}")
        if self.priority != OFP_DEFAULT_PRIORITY:
            parts.append(f"priority={self.priority}")
        if self.cookie:
            parts.append(f"cookie={self.cookie:#x}")
        parts.extend(s.text() for s in self.specs)
        return ",".join(parts) + ")"

    def execute(self, flow: Flow) -> tuple[Match, list[Action]]:
        """learn_execute(): the match and actions of the flow this packet teaches."""
        match = Match()
        actions: list[Action] = []
        for spec in self.specs:
            if spec.src is not None:
                value = spec.src.read(flow)
            else:
                value = spec.imm or 0
            if spec.kind == "match":
                assert spec.dst is not None
                match.set_bits(spec.dst.field.key, value << spec.dst.ofs, spec.dst.mask)
            elif spec.kind == "load":
                assert spec.dst is not None
                actions.append(SetField(spec.dst, value, via="load") if spec.dst.whole()
                               else RegLoad(spec.dst, value))
            else:
                # Only values that fit an OpenFlow port become an output; anything else teaches no action.
                if value <= 0xFFFF and (value < OFPP_MAX or value in (OFPP_IN_PORT, OFPP_FLOOD, OFPP_LOCAL, OFPP_ALL)):
                    actions.append(Output(value))
        return match, actions


@dataclass(frozen=True)
class RegLoad:
    """`load:` into part of a field (a Nicira reg_load; OF1.3 keeps it as NXAST_REG_LOAD)."""

    dst: Subfield
    value: int

    def text(self) -> str:
        return f"load:{hexfmt(self.value)}->{self.dst.text()}"


Action = Output | OutputReg | Resubmit | GotoTable | SetField | RegLoad | RegMove | PushVlan | PopVlan | SetVlanVid | Learn


def format_actions(actions: list[Action] | tuple[Action, ...]) -> str:
    return ",".join(a.text() for a in actions) if actions else "drop"


# ------------------------------------------------------------------------------------------------------ tokenizer

_PARENS = re.compile(r"[()]")
_SPACE_OR_COMMA = re.compile(r"[, \t\r\n]*")
_KEY_END = re.compile(r"[:=(, \t\r\n]")


@functools.cache
def _value_stop(delims: str) -> re.Pattern[str]:
    return re.compile("[" + re.escape(delims) + "(]")


def _parse_value_len(s: str, start: int, delims: str) -> int:
    """The end of a value starting at `start`: the first of `delims` outside parentheses (or the end). The
    scans are regex searches, not a Python loop per character: every flow the twin parses goes through here."""
    stop = _value_stop(delims)
    end = len(s)
    n = start
    while n < end:
        m = stop.search(s, n)
        if m is None:
            return end
        n = m.start()
        if s[n] in delims:
            return n
        level = 0  # a parenthesised group, nested groups included; unbalanced runs to the end
        while True:
            p = _PARENS.search(s, n)
            if p is None:
                return end
            n = p.end()
            level += 1 if p.group() == "(" else -1
            if level <= 0:
                break
    return n


def key_values(text: str) -> Iterator[tuple[str, str]]:
    """ofputil_parse_key_value: `k=v`, `k:v`, `k(v)` or a bare key, separated by commas or white space."""
    i = 0
    s = text
    length = len(s)
    while True:
        i = _SPACE_OR_COMMA.match(s, i).end()  # type: ignore[union-attr]  # `*` always matches
        if i >= length:
            return
        m = _KEY_END.search(s, i)
        j = m.start() if m is not None else length
        key = s[i:j]
        delim = s[j] if j < length else ""
        i = j + (1 if delim else 0)
        if delim in (":", "="):
            end = _parse_value_len(s, i, ", \t\r\n")
        elif delim == "(":
            end = _parse_value_len(s, i, ")")
            # "(x)->y" (move/load into a subfield written after a parenthesis) continues past the ')'.
            if end < length and s[end] == ")" and s[end + 1:end + 3] == "->":
                end = _parse_value_len(s, end, ", \t\r\n")
        else:
            yield key, ""
            continue
        value = s[i:end]
        i = end + (1 if end < length else 0)
        yield key, value


# --------------------------------------------------------------------------------------------------- flow parsing

_PROTOCOLS: dict[str, tuple[int, int | None]] = {
    "ip": (ETH_TYPE_IP, None), "ipv4": (ETH_TYPE_IP, None), "ip4": (ETH_TYPE_IP, None),
    "arp": (ETH_TYPE_ARP, None), "rarp": (ETH_TYPE_RARP, None),
    "icmp": (ETH_TYPE_IP, IPPROTO_ICMP), "tcp": (ETH_TYPE_IP, IPPROTO_TCP), "udp": (ETH_TYPE_IP, IPPROTO_UDP),
    "sctp": (ETH_TYPE_IP, IPPROTO_SCTP), "ipv6": (ETH_TYPE_IPV6, None), "ip6": (ETH_TYPE_IPV6, None),
}


@dataclass
class FlowMod:
    """One parsed line: what add-flow(s)/del-flows would send."""

    table: int = 0
    priority: int = OFP_DEFAULT_PRIORITY
    cookie: int = 0
    cookie_set: bool = False
    cookie_mask: int = 0
    idle_timeout: int = 0
    hard_timeout: int = 0
    match: Match = field(default_factory=Match)
    actions: list[Action] = field(default_factory=list)
    text: str = ""


def _u16(value: str, name: str) -> int:
    n = parse_int(value, name)
    if not 0 <= n <= 0xFFFF:
        raise FlowParseError(f"invalid {name} \"{value}\"")
    return n


def parse_flow(text: str, *, command: str = "add", port_names: Mapping[str, int] | None = None) -> FlowMod:
    """Parse one flow as ovs-ofctl does for `add-flow` (command="add") or `del-flows` (command="del", or
    "del_strict" for --strict, where the priority is part of the identity)."""
    fm = FlowMod(table=0 if command == "add" else OFPTT_ALL, text=text.strip())
    string = text
    act_str: str | None = None
    if command == "add":
        pos = string.find("action")
        if pos < 0:
            raise FlowParseError("must specify an action")
        eq = string.find("=", pos)
        if eq < 0:
            raise FlowParseError("must specify an action")
        act_str = string[eq + 1:]
        string = string[:pos]
    prereqs: dict[str, str] = {}  # slot -> the prerequisite of the name it was matched by
    for name, value in key_values(string):
        if name in _PROTOCOLS:
            dl_type, proto = _PROTOCOLS[name]
            fm.match.set("dl_type", dl_type, 0xFFFF)
            if proto is not None:
                fm.match.set("nw_proto", proto, 0xFF)
        elif name in ("dl_vlan", "dl_vlan_pcp"):
            if not value:
                raise FlowParseError(f"field {name} missing value")
            _set_vlan(fm.match, name, value)
        elif name in FIELDS_BY_NAME:
            f = FIELDS_BY_NAME[name]
            v, m = parse_field_value(f, value or "0/0", port_names) if value else (0, 0)
            fm.match.set(f.key, v, m)
            prereqs[f.key] = f.prereq
        elif name in ("send_flow_rem", "check_overlap", "reset_counts", "no_packet_counts", "no_byte_counts"):
            raise FlowParseError(f"{name}: flag not modelled by the twin")
        else:
            if not value:
                raise FlowParseError(f"field {name} missing value")
            if name == "table":
                t = parse_int(value, "table")
                if not 0 <= t <= 255:
                    raise FlowParseError(f"unknown table \"{value}\"")
                fm.table = t
            elif name == "priority" and command in ("add", "del_strict"):
                fm.priority = _u16(value, "priority")
            elif name == "idle_timeout" and command == "add":
                fm.idle_timeout = _u16(value, "idle_timeout")
            elif name == "hard_timeout" and command == "add":
                fm.hard_timeout = _u16(value, "hard_timeout")
            elif name == "cookie":
                value_text, slash, mask_text = value.partition("/")
                if slash:
                    if command == "add":
                        raise FlowParseError("flow additions cannot use a cookie mask")
                    fm.cookie = parse_int(value_text, "cookie") & UINT64_MAX
                    fm.cookie_mask = parse_int(mask_text, "cookie") & UINT64_MAX if mask_text != "-1" else UINT64_MAX
                else:
                    if command != "add":
                        raise FlowParseError(
                            f"cannot set cookie (to match on a cookie, specify a mask, e.g. cookie={value}/-1)")
                    n = parse_int(value, "cookie")
                    if not 0 <= n <= UINT64_MAX:
                        raise FlowParseError(f"{value}: cookie out of range")
                    fm.cookie = n
                    fm.cookie_set = True
            elif name in ("duration", "n_packets", "n_bytes", "idle_age", "hard_age"):
                pass  # dump-flows output fed back in, as ovs-ofctl allows
            else:
                raise FlowParseError(f"unknown keyword {name}")
    check_prereqs(fm.match, prereqs)
    if act_str is not None:
        fm.actions = parse_actions(act_str, port_names)
        check_actions(fm.actions, fm.match, fm.table)
    return fm


def _set_vlan(match: Match, name: str, value: str) -> None:
    n = parse_int(value, name)
    if name == "dl_vlan":
        if n == 0xFFFF:  # OFP10_VLAN_NONE: only packets without an 802.1Q header
            match.set("vlan_tci", 0, 0xFFFF)
            return
        if n > VLAN_VID_MASK:
            raise FlowParseError(f"{value}: invalid VLAN VID for dl_vlan")
        match.set_bits("vlan_tci", n | VLAN_CFI, VLAN_VID_MASK | VLAN_CFI)
    else:
        if n > 7:
            raise FlowParseError(f"{value}: invalid VLAN PCP for dl_vlan_pcp")
        match.set_bits("vlan_tci", (n << 13) | VLAN_CFI, VLAN_PCP_MASK | VLAN_CFI)


def check_prereqs(match: Match, named: Mapping[str, str] | None = None) -> None:
    """The prerequisites OVS enforces when an OXM/NXM match arrives (OFPBMC_BAD_PREREQ): an OpenFlow 1.3+
    switch rejects the flow; it does not silently widen it as OpenFlow 1.0 normalisation would."""
    dl_type = match.exact("dl_type")
    proto = match.exact("nw_proto")
    for key in match.fields:
        f = SLOT_FIELD[key]
        prereq = (named or {}).get(key, f.prereq)
        ok = True
        if prereq == "l3":
            ok = dl_type in (ETH_TYPE_IP, ETH_TYPE_IPV6, ETH_TYPE_ARP, ETH_TYPE_RARP)
            if key in ("nw_src", "nw_dst"):
                ok = dl_type in (ETH_TYPE_IP, ETH_TYPE_ARP, ETH_TYPE_RARP)
        elif prereq == "tcp":
            ok = dl_type in (ETH_TYPE_IP, ETH_TYPE_IPV6) and proto == IPPROTO_TCP
        elif prereq == "udp":
            ok = dl_type in (ETH_TYPE_IP, ETH_TYPE_IPV6) and proto == IPPROTO_UDP
        elif prereq == "l4":
            ok = dl_type in (ETH_TYPE_IP, ETH_TYPE_IPV6) and proto in (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP)
        if not ok:
            need = {"l3": "dl_type=0x0800 (ip) or arp", "tcp": "tcp", "udp": "udp",
                    "l4": "nw_proto=6, 17 or 132 (tcp, udp, sctp) with ip"}[prereq]
            raise FlowParseError(f"{key}: prerequisites not met, needs {need} (OFPBMC_BAD_PREREQ)")


def _field_for_write(name: str) -> FieldDef:
    f = FIELDS_BY_NAME.get(name)
    if f is None:
        raise FlowParseError(f"{name} is not a valid OXM field name")
    if not f.writable:
        raise FlowParseError(f"{name} is read-only")
    return f


def _mac_action(key: str, value: str) -> SetField:
    f = FIELDS_BY_NAME[key]
    return SetField(Subfield(f, 0, f.bits), parse_mac(value), via="mod")


def _ip_action(key: str, value: str) -> SetField:
    f = FIELDS_BY_NAME[key]
    return SetField(Subfield(f, 0, f.bits), parse_ipv4(value), via="mod")


def parse_actions(text: str, port_names: Mapping[str, int] | None = None) -> list[Action]:
    """ofpacts_parse_instructions for the subset the model executes; anything else is refused by name."""
    actions: list[Action] = []
    drop = False
    goto: GotoTable | None = None
    for key, value in key_values(text):
        lkey = key.lower()
        if goto is not None:
            raise FlowParseError(f"instruction {lkey} may not follow instruction goto_table")
        if lkey == "drop":
            drop = True
        elif lkey == "output":
            try:
                actions.append(Output(parse_port(value, port_names)))
            except FlowParseError:
                try:
                    actions.append(OutputReg(parse_subfield(value)))
                except FlowParseError:
                    raise FlowParseError(f"{value}: output to unknown port") from None
        elif lkey in ("normal", "in_port", "flood", "all", "local", "controller") and not value:
            actions.append(Output(RESERVED_PORTS[key.upper()]))
        elif re.fullmatch(r"\d+", key) and not value:
            actions.append(Output(parse_port(key)))
        elif lkey == "resubmit":
            actions.append(_parse_resubmit(value, port_names))
        elif lkey == "goto_table":
            goto = GotoTable(_table(value))
            actions.append(goto)
        elif lkey == "set_field":
            actions.append(_parse_set_field(value, port_names))
        elif lkey == "load":
            actions.append(_parse_load(value))
        elif lkey == "move":
            src_text, arrow, dst_text = value.partition("->")
            if not arrow:
                raise FlowParseError(f"{value}: missing `->' following source")
            src, dst = parse_subfield(src_text), parse_subfield(dst_text)
            if src.n_bits != dst.n_bits:
                raise FlowParseError(
                    f"{value}: source field is {src.n_bits} bits wide but destination is {dst.n_bits} bits wide")
            if not dst.field.writable:
                raise FlowParseError(f"{dst.field.name} is read-only")
            actions.append(RegMove(src, dst))
        elif lkey in ("mod_dl_src", "mod_dl_dst"):
            actions.append(_mac_action("dl_src" if lkey == "mod_dl_src" else "dl_dst", value))
        elif lkey in ("mod_nw_src", "mod_nw_dst"):
            actions.append(_ip_action("nw_src" if lkey == "mod_nw_src" else "nw_dst", value))
        elif lkey == "push_vlan":
            ethertype = parse_int(value, "ethertype")
            if ethertype not in (ETH_TYPE_VLAN, ETH_TYPE_VLAN_8021AD):
                raise FlowParseError(f"{value}: not a valid VLAN ethertype")
            actions.append(PushVlan(ethertype))
        elif lkey in ("pop_vlan", "strip_vlan"):
            actions.append(PopVlan())
        elif lkey == "mod_vlan_vid":
            vid = parse_int(value, "VLAN VID")
            if vid & ~VLAN_VID_MASK:
                raise FlowParseError(f"{value}: not a valid VLAN VID")
            actions.append(SetVlanVid(vid))
        elif lkey == "learn":
            actions.append(parse_learn(value, port_names))
        else:
            raise FlowParseError(f"unknown action {key}")
    if drop and actions:
        raise FlowParseError("\"drop\" must not be accompanied by any other action or instruction")
    return actions


def _table(value: str) -> int:
    t = parse_int(value, "table")
    if not 0 <= t <= 254:
        raise FlowParseError(f"unknown table \"{value}\"")
    return t


def _parse_resubmit(value: str, port_names: Mapping[str, int] | None) -> Resubmit:
    if "," not in value:
        return Resubmit(parse_port(value, port_names), OFPTT_ALL)
    port_text, _, rest = value.partition(",")
    table_text = rest.split(",")[0].strip()
    port = parse_port(port_text, port_names) if port_text.strip() else OFPP_IN_PORT
    table = _table(table_text) if table_text else OFPTT_ALL
    if port == OFPP_IN_PORT and table == OFPTT_ALL:
        raise FlowParseError("at least one \"in_port\" or \"table\" must be specified on resubmit")
    return Resubmit(port, table)


def _parse_set_field(value: str, port_names: Mapping[str, int] | None) -> SetField:
    value_text, arrow, key = value.rpartition("->")
    if not arrow:
        raise FlowParseError(f"{value}: missing `->'")
    if not key:
        raise FlowParseError(f"{value}: missing field name following `->'")
    if key == "vlan_vid":
        vid = parse_int(value_text, "vlan_vid")
        if vid & ~(VLAN_VID_MASK | VLAN_CFI):
            raise FlowParseError(f"{value_text} is not a valid value for field vlan_vid")
        return SetField(Subfield(FIELDS_BY_NAME["vlan_tci"], 0, 13), vid | VLAN_CFI, via="vlan_vid")
    f = _field_for_write(key)
    v, m = parse_field_value(f, value_text, port_names)
    if m != f.all_ones:
        raise FlowParseError(f"{value}: masked set_field is not modelled by the twin")
    return SetField(Subfield(f, 0, f.bits), v, via="set_field")


def _parse_load(value: str) -> SetField | RegLoad:
    value_text, arrow, dst_text = value.partition("->")
    if not arrow:
        raise FlowParseError(f"{value}: missing `->'")
    dst = parse_subfield(dst_text)
    if not dst.field.writable:
        raise FlowParseError(f"{dst.field.name} is read-only")
    n = parse_int(value_text, "load value")
    if n >> dst.n_bits:
        raise FlowParseError(f"{value}: value {hexfmt(n)} does not fit into {dst.n_bits} bits")
    return SetField(dst, n, via="load") if dst.whole() else RegLoad(dst, n)


def parse_learn(text: str, port_names: Mapping[str, int] | None = None) -> Learn:
    """learn_parse(): defaults table=1, priority=32768, no timeouts, cookie 0."""
    table, priority, idle, hard, cookie = 1, OFP_DEFAULT_PRIORITY, 0, 0, 0
    specs: list[LearnSpec] = []
    orig = text
    for name, value in key_values(text):
        if name == "table":
            table = parse_int(value, "table")
            if table == 255 or not 0 <= table <= 254:
                raise FlowParseError(f"{orig}: table id {table} not valid for `learn' action")
        elif name == "priority":
            priority = _u16(value, "priority")
        elif name == "idle_timeout":
            idle = _u16(value, "idle_timeout")
        elif name == "hard_timeout":
            hard = _u16(value, "hard_timeout")
        elif name == "cookie":
            cookie = parse_int(value, "cookie") & UINT64_MAX
        elif name == "load":
            specs.append(_learn_load(orig, value))
        elif name == "output":
            specs.append(LearnSpec("output", None, src=parse_subfield(value)))
        else:
            specs.append(_learn_match(orig, name, value, port_names))
    return Learn(table, priority, idle, hard, cookie, tuple(specs))


def _learn_match(orig: str, name: str, value: str, port_names: Mapping[str, int] | None) -> LearnSpec:
    try:
        dst = parse_subfield(name)
    except FlowParseError:
        raise FlowParseError(f"{orig}: unknown keyword {name}") from None
    if not value:
        return LearnSpec("match", dst, src=dst)
    try:
        src = parse_subfield(value)
    except FlowParseError as sub_err:
        try:
            if dst.whole():
                imm, _ = parse_field_value(dst.field, value, port_names)
            else:
                imm = parse_int(value)
                if imm >> dst.n_bits:
                    raise FlowParseError(f"{orig}: value {hexfmt(imm)} does not fit into {dst.n_bits} bits")
        except FlowParseError as imm_err:
            raise FlowParseError(
                f"{orig}: {name} value {value} cannot be parsed as a subfield ({sub_err.message}) or an immediate "
                f"value ({imm_err.message})") from None
        return LearnSpec("match", dst, imm=imm)
    if src.n_bits != dst.n_bits:
        raise FlowParseError(f"{orig}: bit widths of {name} ({dst.n_bits}) and {value} ({src.n_bits}) differ")
    return LearnSpec("match", dst, src=src)


def _learn_load(orig: str, value: str) -> LearnSpec:
    src_text, arrow, dst_text = value.partition("->")
    if not arrow:
        raise FlowParseError(f"load: missing `->' in `{value}'")
    if not src_text:
        raise FlowParseError(f"load: missing source before `->' in `{value}'")
    dst = parse_subfield(dst_text)
    if re.fullmatch(r"(0[xX][0-9a-fA-F]+|\d+)", src_text.strip()):
        imm = parse_int(src_text)
        if imm >> dst.n_bits:
            raise FlowParseError(f"{value}: value does not fit into {dst.n_bits} bits")
        return LearnSpec("load", dst, imm=imm)
    src = parse_subfield(src_text)
    if src.n_bits != dst.n_bits:
        raise FlowParseError(f"{orig}: source field is {src.n_bits} bits wide but destination is {dst.n_bits} bits wide")
    return LearnSpec("load", dst, src=src)


def check_actions(actions: list[Action], match: Match, table: int) -> None:
    """ofpacts_check as an OpenFlow 1.3+ switch applies it: goto_table only forward, and actions whose effect
    depends on a header the match does not guarantee are inconsistent (OF1.0 alone could express them)."""
    has_vlan = match.has_vlan()
    inconsistent = "actions are invalid with specified match (OFPBAC_MATCH_INCONSISTENT)"
    for i, a in enumerate(actions):
        if isinstance(a, GotoTable):
            if table != OFPTT_ALL and a.table <= table:
                raise FlowParseError(f"goto_table:{a.table} must go to a later table than {table} (OFPBRC_BAD_TABLE_ID)")
        elif isinstance(a, SetField):
            if a.via == "vlan_vid" and not has_vlan:
                raise FlowParseError(inconsistent)
            if a.via != "vlan_vid" and a.dst.field.prereq in ("l3", "tcp", "udp", "l4"):
                probe = match.copy()
                probe.set(a.dst.field.key, 0, a.dst.mask)
                try:
                    check_prereqs(probe, {a.dst.field.key: a.dst.field.prereq})
                except FlowParseError:
                    raise FlowParseError(inconsistent) from None
            if a.dst.field.key == "vlan_tci" and a.via != "vlan_vid":
                has_vlan = bool(a.value & VLAN_CFI)
        elif isinstance(a, PopVlan):
            if not has_vlan:
                raise FlowParseError(inconsistent)
            has_vlan = False
        elif isinstance(a, PushVlan):
            has_vlan = True
        elif isinstance(a, SetVlanVid):
            actions[i] = SetVlanVid(a.vid, flow_has_vlan=has_vlan)
            has_vlan = True
        elif isinstance(a, Learn):
            for spec in a.specs:
                if spec.src is not None and spec.src.field.prereq:
                    probe = match.copy()
                    probe.set(spec.src.field.key, 0, spec.src.mask)
                    try:
                        check_prereqs(probe)
                    except FlowParseError:
                        raise FlowParseError(f"{a.text()}: source field {spec.src.text()} prerequisites not met "
                                             "by the flow's match") from None


def parse_flows_file(text: str, *, command: str = "add",
                     port_names: Mapping[str, int] | None = None) -> list[FlowMod]:
    """add-flows FILE: one flow per line, `#` comments and blank lines skipped; the first bad line aborts."""
    out: list[FlowMod] = []
    for n, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            out.append(parse_flow(stripped, command=command, port_names=port_names))
        except FlowParseError as e:
            raise FlowParseError(e.message, line=n) from None
    return out


Clock = Callable[[], float]
