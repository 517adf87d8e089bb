"""`dpf-sfc-cni`: a CNI plugin (spec 1.0) that plugs a pod's interface into br-sfc, as DPF's forked ovs-cni does
for service interfaces (facts 5.1).

A container runtime runs it with `CNI_COMMAND` (ADD, DEL, CHECK, VERSION), `CNI_CONTAINERID`, `CNI_NETNS`,
`CNI_IFNAME`, `CNI_ARGS` and `CNI_PATH` in the environment and the network configuration JSON on stdin. Success
prints the result JSON on stdout and exits 0; failure prints `{"cniVersion", "code", "msg", "details"}` on stdout
and exits 1 (a plugin's exit code only says "failed"; the code field says why).

On ADD:
- the pod's interface: on a BlueField an SF representor; here a veth pair stands in. The pair is made in the
  plugin's namespace (where ovs-vswitchd runs); one end, with tx checksum offload off (the userspace datapath
  does not complete offloaded checksums), is moved into the pod's namespace and renamed to CNI_IFNAME; the
  host end `sfc<8 hex of sha256(containerID/ifname)>` stays and becomes a br-sfc port;
- OVSDB rows as ovs-cni writes them: Interface external_ids `iface-id=<OvnPort arg>`,
  `dpf-id=<K8S_POD_NAMESPACE>/<K8S_POD_NAME>/<ifname>` (`/<ifname>` when CNI_ARGS is empty), `mtu_request` when
  the config's `mtu` is over 100; Port external_ids `contNetns`, `contIface`,
  `owner=ovs-cni.network.kubevirt.io`; `ofport_request` from the config, else FNV-1a-32(port name) & 0xFF (a
  hash of 0 requests nothing: OVSDB's ofport_request starts at 1, where Go would write an invalid 0);
- the IP: from `prevResult` (a chained plugin already ran IPAM) or from the `ipam` section, delegated to the
  plugin named by `ipam.type` in CNI_PATH; `static` is also built in when no such executable exists. As
  ovs-cni, the container MAC becomes 0a:58:<IPv4 octets> unless a MAC arg is given; addresses and routes are
  configured in the pod's namespace.
A second ADD for the same container and interface replaces what the first made (ovs-cni removes a port it
already manages). DEL removes the port, both veth ends and the IPAM allocation, and succeeds when any of them is
already gone. CHECK verifies prevResult against the namespace and OVSDB.

The environment is checked as libcni's skel checks it (which CNI_* each command needs, the interface name
rules, skel's messages); CNI_ARGS as LoadArgs reads them into ovs-cni's EnvArgs (IgnoreUnknown, MAC, OvnPort,
K8S_POD_NAMESPACE, K8S_POD_NAME; anything else needs IgnoreUnknown=1/true).

Configuration keys are ovs-cni's: `bridge` (default br-sfc), `socket_file` (OVSDB, default
unix:/var/run/openvswitch/db.sock; a bare path means a unix socket), `ofport_request`, `interface_type` (the
OVSDB Interface type; "" = a system device such as the veth), `mtu`.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

SPEC_VERSION = "1.0.0"
SUPPORTED_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]
DEFAULT_BRIDGE = "br-sfc"
DEFAULT_SOCKET = "unix:/var/run/openvswitch/db.sock"
OVS_CNI_OWNER = "ovs-cni.network.kubevirt.io"
HOST_PREFIX = "sfc"

# CNI spec 1.0 well-known error codes.
ERR_INCOMPATIBLE_VERSION = 1
ERR_UNSUPPORTED_FIELD = 2
ERR_UNKNOWN_CONTAINER = 3
ERR_INVALID_ENV = 4
ERR_IO = 5
ERR_DECODE = 6
ERR_INVALID_CONFIG = 7
ERR_TRY_AGAIN = 11
# libcni's skel reports any error a plugin returns without a code as ErrInternal; ovs-cni's own errors (bad
# CNI_ARGS among them) reach the runtime so.
ERR_INTERNAL = 999
# Plugin-specific (100+).
ERR_OVS = 100
ERR_NETLINK = 101
ERR_IPAM = 102
ERR_CHECK = 103

AF_INET = 2


class CniError(Exception):
    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def json(self, cni_version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out


def fnv1a_32(text: str) -> int:
    """Go's hash/fnv New32a over the UTF-8 bytes."""
    h = 0x811C9DC5
    for byte in text.encode():
        h ^= byte
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def ofport_request_for(port: str) -> int:
    """ovs-cni's default `ofport_request`: uint8(FNV-1a-32(name))."""
    return fnv1a_32(port) & 0xFF


def host_ifname(container_id: str, ifname: str) -> str:
    """The host end's name: stable per (container, interface) so a repeated ADD or a DEL without a netns finds it,
    and short enough for IFNAMSIZ (15)."""
    return HOST_PREFIX + hashlib.sha256(f"{container_id}/{ifname}".encode()).hexdigest()[:8]


def mac_for_ip(ip: str) -> str:
    """ovs-cni's IPAddrToHWAddr: 0a:58 and the four IPv4 octets (IPv6: the first bytes of a sha256)."""
    addr = ipaddress.ip_address(ip)
    tail = addr.packed if addr.version == 4 else hashlib.sha256(str(addr).encode()).digest()[:4]
    return ":".join(f"{b:02x}" for b in (0x0A, 0x58, *tail))


# --- request -----------------------------------------------------------------------------------------------


@dataclass
class Request:
    command: str
    container_id: str
    netns: str
    ifname: str
    args: dict[str, str]
    path: list[str]
    config: dict[str, Any]
    raw: bytes
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def cni_version(self) -> str:
        return str(self.config.get("cniVersion") or SPEC_VERSION)

    @property
    def bridge(self) -> str:
        return str(self.config.get("bridge") or DEFAULT_BRIDGE)

    @property
    def socket(self) -> str:
        sock = str(self.config.get("socket_file") or DEFAULT_SOCKET)
        return sock if ":" in sock else f"unix:{sock}"

    @property
    def rundir(self) -> str:
        return os.path.dirname(self.socket.split(":", 1)[1])

    @property
    def dpf_id(self) -> str:
        # ovs-cni's CmdAdd starts from `<ns>/<name>` only when CNI_ARGS is non-empty, then appends "/<ifname>".
        pod = f"{self.args.get('K8S_POD_NAMESPACE', '')}/{self.args.get('K8S_POD_NAME', '')}" \
            if self.env.get("CNI_ARGS") else ""
        return f"{pod}/{self.ifname}"

    @property
    def host_ifname(self) -> str:
        return host_ifname(self.container_id, self.ifname)


# The CNI_ARGS keys ovs-cni's EnvArgs declares (libcni's CommonArgs brings IgnoreUnknown).
KNOWN_ARGS = ("IgnoreUnknown", "MAC", "OvnPort", "K8S_POD_NAMESPACE", "K8S_POD_NAME")


def _go_quote(text: str) -> str:
    return json.dumps(text)


def parse_cni_args(text: str, *, strict: bool = True) -> dict[str, str]:
    """CNI_ARGS as libcni's LoadArgs reads them into ovs-cni's EnvArgs: `K=V` pairs split on ';', exactly one
    '=' each, keys matched case-sensitively; keys ovs-cni does not declare are an error unless IgnoreUnknown
    is 1/true. Unknown pairs are kept (they do no harm and help diagnostics)."""
    out: dict[str, str] = {}
    if not text:
        return out
    unknown: list[str] = []
    for pair in text.split(";"):
        kv = pair.split("=")
        if len(kv) != 2:
            if not strict:
                continue
            raise CniError(ERR_INTERNAL, f"ARGS: invalid pair {_go_quote(pair)}")
        key, value = kv
        if key not in KNOWN_ARGS:
            unknown.append(pair)
        out[key] = value
    ignore = out.get("IgnoreUnknown", "")
    if not strict:
        return out
    if ignore.lower() not in ("", "1", "true", "0", "false"):
        raise CniError(ERR_INTERNAL, f"ARGS: error parsing value of pair {_go_quote('IgnoreUnknown=' + ignore)}: "
                                     f"boolean unmarshal error: invalid value {_go_quote(ignore)}")
    if unknown and ignore.lower() not in ("1", "true"):
        raise CniError(ERR_INTERNAL, f"ARGS: unknown args [{' '.join(map(_go_quote, unknown))}]")
    return out


# libcni's skel: which CNI_* variables each command needs, in the order it checks them.
REQUIRED_ENV = (("CNI_CONTAINERID", ("ADD", "CHECK", "DEL")), ("CNI_NETNS", ("ADD", "CHECK")),
                ("CNI_IFNAME", ("ADD", "CHECK", "DEL")), ("CNI_PATH", ("ADD", "CHECK", "DEL")))
MAX_IFNAME = 15


def validate_ifname(name: str) -> None:
    """libcni's ValidateInterfaceName, with its messages."""
    if not name:
        raise CniError(ERR_INVALID_ENV, "interface name is empty")
    if len(name) > MAX_IFNAME:
        raise CniError(ERR_INVALID_ENV, "interface name is too long",
                       f"interface name should be less than {MAX_IFNAME + 1} characters")
    if name in (".", ".."):
        raise CniError(ERR_INVALID_ENV, "interface name is . or ..")
    if any(c in "/:" or c.isspace() for c in name):
        raise CniError(ERR_INVALID_ENV, "interface name contains / or : or whitespace characters")


def check_environment(env: Mapping[str, str], command: str) -> None:
    missing = []
    for name, needed_by in REQUIRED_ENV:
        value = env.get(name, "")
        if not value:
            if command in needed_by:
                missing.append(name)
        elif name == "CNI_IFNAME" and command in needed_by:
            validate_ifname(value)
    if missing:
        raise CniError(ERR_INVALID_ENV, f"required env variables [{','.join(missing)}] missing")


def _version_tuple(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in v.split("."))
    except ValueError:
        raise CniError(ERR_INCOMPATIBLE_VERSION, f"invalid cniVersion {v!r}") from None


def read_request(env: Mapping[str, str], stdin: bytes) -> Request:
    command = env.get("CNI_COMMAND", "")
    if not command:
        raise CniError(ERR_INVALID_ENV, "required env variables [CNI_COMMAND] missing")
    check_environment(env, command)
    if command not in ("ADD", "DEL", "CHECK", "VERSION"):
        raise CniError(ERR_INVALID_ENV, f"unknown CNI_COMMAND: {command}")
    try:
        config = json.loads(stdin or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CniError(ERR_DECODE, "failed to decode the network configuration", str(e)) from None
    if not isinstance(config, dict):
        raise CniError(ERR_DECODE, "the network configuration is not a JSON object")
    version = str(config.get("cniVersion") or "")
    if command != "VERSION":
        if not version:
            raise CniError(ERR_INVALID_CONFIG, "cniVersion is required")
        if version not in SUPPORTED_VERSIONS:
            # skel's checkVersionAndCall: the short message, and version.ErrorIncompatible's Details.
            raise CniError(ERR_INCOMPATIBLE_VERSION, "incompatible CNI versions",
                           f"config is {_go_quote(version)}, plugin supports "
                           f"[{' '.join(map(_go_quote, SUPPORTED_VERSIONS))}]")
        if command == "CHECK" and _version_tuple(version) < (0, 4, 0):
            raise CniError(ERR_INCOMPATIBLE_VERSION, "config version does not allow CHECK")  # skel's words
        if not isinstance(config.get("name"), str) or not config.get("name"):
            raise CniError(ERR_INVALID_CONFIG, "missing network name")  # skel's validateConfig
        for key, kind in (("type", str),):
            if not isinstance(config.get(key), kind) or not config.get(key):
                raise CniError(ERR_INVALID_CONFIG, f"network configuration field {key!r} is required")
        if "ipam" in config and not isinstance(config["ipam"], dict):
            raise CniError(ERR_INVALID_CONFIG, "ipam must be an object")
        for key in ("mtu", "ofport_request"):
            if key in config and not (isinstance(config[key], int) and config[key] >= 0):
                raise CniError(ERR_INVALID_CONFIG, f"{key} must be a non-negative integer")
        if config.get("vlan") is not None or config.get("trunk"):
            raise CniError(ERR_UNSUPPORTED_FIELD, "vlan/trunk ports are not supported on br-sfc")
    return Request(
        command=command,
        container_id=env.get("CNI_CONTAINERID", ""),
        netns=env.get("CNI_NETNS", ""),
        ifname=env.get("CNI_IFNAME", ""),
        # DEL reads them leniently: an ADD refused for its CNI_ARGS made nothing, and ovs-cni's DEL then finds
        # no cached config and succeeds; an error here would have the runtime retry the DEL forever.
        args=parse_cni_args(env.get("CNI_ARGS", ""), strict=command in ("ADD", "CHECK")) if command != "VERSION"
        else {},
        path=[p for p in env.get("CNI_PATH", "").split(":") if p],
        config=config,
        raw=stdin,
        env=env,
    )


# --- IPAM ---------------------------------------------------------------------------------------------------


def find_plugin(name: str, path: list[str]) -> str | None:
    for d in path:
        candidate = os.path.join(d, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def delegate(req: Request, command: str) -> dict[str, Any] | None:
    """Run the IPAM plugin of `ipam.type` as libcni's invoke.DelegateAdd/Del does: same env, CNI_COMMAND set,
    the same config on stdin. None when no such executable is on CNI_PATH."""
    ipam_type = str(req.config["ipam"].get("type") or "")
    exe = find_plugin(ipam_type, req.path)
    if exe is None:
        return None
    env = {**req.env, "CNI_COMMAND": command}
    try:
        done = subprocess.run([exe], input=req.raw, env=env, capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CniError(ERR_IPAM, f"failed to run IPAM plugin {ipam_type!r}", str(e)) from None
    out = done.stdout.decode(errors="replace").strip()
    if done.returncode != 0:
        try:
            err = json.loads(out)
            code, msg = int(err.get("code", ERR_IPAM)), str(err.get("msg", out))
            details = str(err.get("details", ""))
        except (json.JSONDecodeError, AttributeError, ValueError):
            code, msg, details = ERR_IPAM, out or done.stderr.decode(errors="replace").strip(), ""
        raise CniError(code, f"IPAM plugin {ipam_type!r}: {msg}", details)
    if command != "ADD":
        return {}
    try:
        result = json.loads(out)
    except json.JSONDecodeError as e:
        raise CniError(ERR_IPAM, f"IPAM plugin {ipam_type!r} printed no JSON result", str(e)) from None
    if not isinstance(result, dict):
        raise CniError(ERR_IPAM, f"IPAM plugin {ipam_type!r} printed no JSON object")
    return result


def static_ipam(req: Request) -> dict[str, Any]:
    """The reference `static` IPAM plugin's result: `ipam.addresses` (also `IP` in CNI_ARGS), routes, dns."""
    ipam = req.config["ipam"]
    addresses: list[dict[str, Any]] = list(ipam.get("addresses") or [])
    if req.args.get("IP"):
        addresses += [{"address": a} for a in req.args["IP"].split(",")]
    ips: list[dict[str, Any]] = []
    for a in addresses:
        try:
            iface = ipaddress.ip_interface(str(a.get("address")))
            gateway = str(ipaddress.ip_address(a["gateway"])) if a.get("gateway") else None
        except (ValueError, TypeError) as e:
            raise CniError(ERR_INVALID_CONFIG, f"static IPAM: invalid address {a!r}", str(e)) from None
        if iface.network.prefixlen == iface.max_prefixlen and iface.version == 4 and "/" not in str(a["address"]):
            raise CniError(ERR_INVALID_CONFIG, f"static IPAM: address {a['address']!r} needs a prefix length")
        ip: dict[str, Any] = {"address": str(iface)}
        if gateway:
            ip["gateway"] = gateway
        ips.append(ip)
    if not ips:
        raise CniError(ERR_INVALID_CONFIG, "static IPAM: no addresses configured")
    result: dict[str, Any] = {"cniVersion": req.cni_version, "ips": ips}
    if ipam.get("routes"):
        result["routes"] = list(ipam["routes"])
    if ipam.get("dns"):
        result["dns"] = dict(ipam["dns"])
    return result


def ipam_add(req: Request) -> dict[str, Any]:
    prev = req.config.get("prevResult")
    if isinstance(prev, dict) and prev.get("ips"):
        return prev
    ipam = req.config.get("ipam")
    if not ipam or not ipam.get("type"):
        return {}
    result = delegate(req, "ADD")
    if result is None:
        if ipam["type"] != "static":
            raise CniError(ERR_INVALID_CONFIG, f"failed to find IPAM plugin {ipam['type']!r} in path {req.path}")
        result = static_ipam(req)
    if not result.get("ips"):
        raise CniError(ERR_IPAM, "IPAM plugin returned missing IP config")
    return result


def ipam_del(req: Request) -> None:
    ipam = req.config.get("ipam")
    if ipam and ipam.get("type"):
        delegate(req, "DEL")  # the built-in static keeps no state


# --- netlink ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def netlink(netns: str | None = None) -> Iterator[Any]:
    from pyroute2 import IPRoute

    try:
        ipr = IPRoute(netns=netns) if netns else IPRoute()
    except Exception as e:
        raise CniError(ERR_UNKNOWN_CONTAINER if netns else ERR_NETLINK,
                       f"failed to open netns {netns!r}" if netns else "netlink", str(e)) from None
    try:
        yield ipr
    except CniError:
        raise
    except Exception as e:
        raise CniError(ERR_NETLINK, f"netlink{' in ' + netns if netns else ''}: {e}") from None
    finally:
        ipr.close()


def _index(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def _mac(ipr: Any, index: int) -> str:
    return str(ipr.get_links(index)[0].get_attr("IFLA_ADDRESS"))


def netns_exists(netns: str) -> bool:
    return bool(netns) and os.path.exists(netns)


def disable_tx_checksum(ifname: str) -> None:
    """ethtool -K <ifname> tx off, in the caller's namespace. ovs-vswitchd's userspace datapath reads the host end
    through AF_PACKET and never completes a checksum the sender's kernel left to "hardware" (CHECKSUM_PARTIAL), so
    without this the receiving pod drops every UDP/TCP segment as corrupt (TSO goes off with it)."""
    import ctypes
    import fcntl
    import socket
    import struct

    siocethtool, ethtool_stxcsum = 0x8946, 0x17
    value = ctypes.create_string_buffer(struct.pack("II", ethtool_stxcsum, 0))
    ifr = struct.pack("16sP", ifname.encode(), ctypes.addressof(value))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            fcntl.ioctl(sock.fileno(), siocethtool, ifr)
        except OSError as e:
            raise CniError(ERR_NETLINK, f"failed to turn off tx checksum offload on {ifname}", str(e)) from None


def setup_veth(req: Request, mac: str | None, mtu: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The veth pair, made here (where ovs-vswitchd runs): the container end gets its offloads set, is moved into
    the pod's namespace, renamed to CNI_IFNAME and brought up; the host end stays and comes up."""
    host = req.host_ifname
    temp = "tmp" + host[len(HOST_PREFIX):]
    with netlink(req.netns) as cipr:
        if _index(cipr, req.ifname) is not None:
            raise CniError(ERR_NETLINK, f"container interface {req.ifname!r} already exists in {req.netns}")
    with netlink() as ipr:
        for stale in (host, temp):
            idx = _index(ipr, stale)
            if idx is not None:
                ipr.link("del", index=idx)
        kwargs: dict[str, Any] = {"ifname": host, "kind": "veth", "peer": {"ifname": temp}}
        ipr.link("add", **kwargs)
        hidx, tidx = _index(ipr, host), _index(ipr, temp)
        assert hidx is not None and tidx is not None
        if mtu:
            ipr.link("set", index=hidx, mtu=mtu)
            ipr.link("set", index=tidx, mtu=mtu)
        try:
            disable_tx_checksum(temp)
            ipr.link("set", index=tidx, net_ns_fd=req.netns)
        except Exception:
            ipr.link("del", index=hidx)
            raise
        ipr.link("set", index=hidx, state="up")
        host_mac = _mac(ipr, hidx)
    with netlink(req.netns) as cipr:
        cidx = _index(cipr, temp)
        if cidx is None:
            raise CniError(ERR_NETLINK, f"interface {temp!r} did not arrive in {req.netns}")
        settings: dict[str, Any] = {"ifname": req.ifname}
        if mac:
            settings["address"] = mac
        cipr.link("set", index=cidx, **settings)
        cipr.link("set", index=cidx, state="up")
        cont_mac = _mac(cipr, cidx)
    return {"name": host, "mac": host_mac}, {"name": req.ifname, "mac": cont_mac, "sandbox": req.netns}


def configure_ips(req: Request, ips: list[dict[str, Any]], routes: list[dict[str, Any]]) -> None:
    with netlink(req.netns) as cipr:
        idx = _index(cipr, req.ifname)
        if idx is None:
            raise CniError(ERR_NETLINK, f"container interface {req.ifname!r} not found in {req.netns}")
        gateways: dict[int, str] = {}
        for ip in ips:
            iface = ipaddress.ip_interface(ip["address"])
            cipr.addr("add", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen)
            if ip.get("gateway"):
                gateways.setdefault(iface.version, str(ip["gateway"]))
        for route in routes:
            dst = ipaddress.ip_network(route["dst"], strict=False)
            gw = route.get("gw") or gateways.get(dst.version)
            spec: dict[str, Any] = {"dst": str(dst.network_address), "dst_len": dst.prefixlen, "oif": idx}
            if gw:
                spec["gateway"] = str(gw)
            cipr.route("replace", **spec)


def delete_link(name: str, netns: str | None = None) -> bool:
    if netns is not None and not netns_exists(netns):
        return False
    with netlink(netns) as ipr:
        idx = _index(ipr, name)
        if idx is None:
            return False
        ipr.link("del", index=idx)
        return True


# --- OVS ----------------------------------------------------------------------------------------------------


def open_ovs(req: Request) -> Any:
    from dpf_hw.ovs import OvsdbOvs

    try:
        return OvsdbOvs(req.socket, rundir=req.rundir, timeout=10.0)
    except Exception as e:
        raise CniError(ERR_TRY_AGAIN, f"cannot connect to OVSDB at {req.socket}", str(e)) from None


def owned_ports(ovs: Any, req: Request) -> list[dict[str, Any]]:
    """The ports this (container, interface) owns: by the Port external_ids ovs-cni writes, or by our host name."""
    try:
        rows = ovs.ports(req.bridge)
    except Exception as e:
        raise CniError(ERR_OVS, f"cannot list ports of {req.bridge}", str(e)) from None
    out = []
    for row in rows:
        ids = row.get("port_external_ids") or {}
        mine = ids.get("owner") == OVS_CNI_OWNER and ids.get("contIface") == req.ifname and (
            (req.netns and ids.get("contNetns") == req.netns) or row["name"] == req.host_ifname)
        if mine or row["name"] == req.host_ifname:
            out.append(row)
    return out


def attach(ovs: Any, req: Request, host: str) -> None:
    request = int(req.config.get("ofport_request") or 0) or ofport_request_for(host)
    try:
        ovs.ensure_port(
            req.bridge, host, str(req.config.get("interface_type") or ""),
            iface_external_ids={"iface-id": req.args.get("OvnPort", ""), "dpf-id": req.dpf_id},
            port_external_ids={"contNetns": req.netns, "contIface": req.ifname, "owner": OVS_CNI_OWNER},
            ofport_request=request or None,
        )
        mtu = int(req.config.get("mtu") or 0)
        if mtu > 100:
            # ovs-cni's createInterfaceOperation: a DPDK port (DPF's `interface_type: dpdk`) takes its MTU from
            # mtu_request, not from netlink.
            ovs.api.db_set("Interface", host, ("mtu_request", mtu)).execute(check_error=True)
    except Exception as e:
        raise CniError(ERR_OVS, f"failed to attach {host} to {req.bridge}", str(e)) from None


# --- commands -----------------------------------------------------------------------------------------------


def _ips_for(result: Mapping[str, Any], ifname: str) -> list[dict[str, Any]]:
    """The IPs of a prevResult or IPAM result that belong on `ifname` (no interface index = all of them)."""
    interfaces = result.get("interfaces") or []
    out = []
    for ip in result.get("ips") or []:
        i = ip.get("interface")
        if i is None or (isinstance(i, int) and 0 <= i < len(interfaces) and interfaces[i].get("name") == ifname):
            out.append(dict(ip))
    return out


def versioned(result: dict[str, Any], version: str) -> dict[str, Any]:
    """Results before 1.0.0 carry an IP `version` field."""
    out = {**result, "cniVersion": version}
    if _version_tuple(version) < (1, 0, 0):
        out["ips"] = [{**ip, "version": "6" if ":" in ip["address"] else "4"} for ip in result.get("ips", [])]
    return out


def cmd_add(req: Request) -> dict[str, Any]:
    if not netns_exists(req.netns):
        raise CniError(ERR_UNKNOWN_CONTAINER, f"network namespace {req.netns!r} does not exist")
    ovs = open_ovs(req)
    try:
        # A repeated ADD: remove what the previous one made, as ovs-cni removes a port it already manages.
        for row in owned_ports(ovs, req):
            ovs.delete_port(req.bridge, row["name"])
        delete_link(req.host_ifname)
        delete_link(req.ifname, req.netns)

        ipam = ipam_add(req)
        ips = _ips_for(ipam, req.ifname)
        mac = req.args.get("MAC") or (req.config.get("runtimeConfig") or {}).get("mac")
        if not mac and ips:
            mac = mac_for_ip(str(ipaddress.ip_interface(ips[0]["address"]).ip))
        try:
            host, cont = setup_veth(req, mac, int(req.config.get("mtu") or 0))
            attach(ovs, req, host["name"])
            configure_ips(req, ips, list(ipam.get("routes") or []))
        except Exception:
            with contextlib.suppress(Exception):
                ovs.delete_port(req.bridge, req.host_ifname)
            with contextlib.suppress(Exception):
                delete_link(req.host_ifname)
            if ipam is not req.config.get("prevResult"):
                with contextlib.suppress(Exception):
                    ipam_del(req)
            raise
    finally:
        ovs.close()

    prev = req.config.get("prevResult") if isinstance(req.config.get("prevResult"), dict) else None
    interfaces: list[dict[str, Any]] = [dict(i) for i in (prev or {}).get("interfaces") or []]
    interfaces += [host, cont]
    cont_index = len(interfaces) - 1
    result: dict[str, Any] = {"cniVersion": req.cni_version, "interfaces": interfaces,
                              "ips": [{**ip, "interface": cont_index} for ip in ips]}
    routes = ipam.get("routes") or (prev or {}).get("routes")
    if routes:
        result["routes"] = routes
    dns = ipam.get("dns") or (prev or {}).get("dns")
    if dns:
        result["dns"] = dns
    return versioned(result, req.cni_version)


def cmd_del(req: Request) -> None:
    """Everything is best effort except an unreachable OVSDB: a runtime retries DEL until it succeeds, and a port
    left behind would keep its ofport and external_ids on br-sfc."""
    ipam_del(req)
    ovs = open_ovs(req)
    try:
        for row in owned_ports(ovs, req):
            try:
                ovs.delete_port(req.bridge, row["name"])
            except Exception as e:
                raise CniError(ERR_OVS, f"failed to delete port {row['name']} from {req.bridge}", str(e)) from None
    finally:
        ovs.close()
    delete_link(req.host_ifname)
    if req.netns:
        delete_link(req.ifname, req.netns)


def cmd_check(req: Request) -> None:
    prev = req.config.get("prevResult")
    if not isinstance(prev, dict):
        raise CniError(ERR_INVALID_CONFIG, "required prevResult missing")
    if not netns_exists(req.netns):
        raise CniError(ERR_UNKNOWN_CONTAINER, f"network namespace {req.netns!r} does not exist")
    ipam = req.config.get("ipam")
    if ipam and ipam.get("type"):
        delegate(req, "CHECK")
    interfaces = prev.get("interfaces") or []
    cont = next((i for i in interfaces if i.get("name") == req.ifname and i.get("sandbox") == req.netns), None)
    if cont is None:
        raise CniError(ERR_CHECK, f"prevResult has no interface {req.ifname!r} in sandbox {req.netns!r}")
    host = next((i for i in interfaces if i.get("name") == req.host_ifname), None)
    with netlink(req.netns) as cipr:
        idx = _index(cipr, req.ifname)
        if idx is None:
            raise CniError(ERR_CHECK, f"interface {req.ifname!r} not found in {req.netns}")
        mac = _mac(cipr, idx)
        if cont.get("mac") and cont["mac"].lower() != mac.lower():
            raise CniError(ERR_CHECK, f"interface {req.ifname!r} has MAC {mac}, prevResult says {cont['mac']}")
        have = {f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in cipr.get_addr(index=idx)}
    for ip in _ips_for(prev, req.ifname):
        want = str(ipaddress.ip_interface(ip["address"]))
        if want not in have:
            raise CniError(ERR_CHECK, f"interface {req.ifname!r} lacks address {want}")
    with netlink() as ipr:
        if host is not None and _index(ipr, host["name"]) is None:
            raise CniError(ERR_CHECK, f"host interface {host['name']!r} not found")
    ovs = open_ovs(req)
    try:
        rows = owned_ports(ovs, req)
    finally:
        ovs.close()
    if not rows:
        raise CniError(ERR_CHECK, f"no port for {req.netns}/{req.ifname} on {req.bridge}")
    row = rows[0]
    if row["iface_external_ids"].get("dpf-id") != req.dpf_id:
        raise CniError(ERR_CHECK, f"port {row['name']} has dpf-id {row['iface_external_ids'].get('dpf-id')!r}, "
                                  f"expected {req.dpf_id!r}")
    if row.get("ofport") is None or row["ofport"] < 0:
        raise CniError(ERR_CHECK, f"port {row['name']} has no OpenFlow port (ovs-vswitchd could not open it)")


def run(env: Mapping[str, str], stdin: bytes) -> tuple[int, dict[str, Any] | None]:
    """One invocation: (exit code, JSON to print or None)."""
    version = SPEC_VERSION
    try:
        with contextlib.suppress(Exception):
            version = str(json.loads(stdin or b"{}").get("cniVersion") or SPEC_VERSION)
        req = read_request(env, stdin)
        if req.command == "VERSION":
            return 0, {"cniVersion": version if version in SUPPORTED_VERSIONS else SPEC_VERSION,
                       "supportedVersions": SUPPORTED_VERSIONS}
        if req.command == "ADD":
            return 0, cmd_add(req)
        if req.command == "DEL":
            cmd_del(req)
        else:
            cmd_check(req)
        return 0, None
    except CniError as e:
        return 1, e.json(version)
    except Exception as e:  # never a Python traceback on stdout: the runtime parses it
        return 1, CniError(ERR_IO, f"{type(e).__name__}: {e}").json(version)


def main() -> None:
    if not os.environ.get("CNI_COMMAND"):
        sys.stderr.write(f"dpf-sfc-cni: DPF service-function-chaining CNI plugin, CNI spec {SUPPORTED_VERSIONS}\n")
        sys.exit(0 if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help") else 1)
    code, out = run(os.environ, sys.stdin.buffer.read())
    if out is not None:
        sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    sys.exit(code)


if __name__ == "__main__":
    main()
