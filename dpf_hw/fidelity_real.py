"""The real-OVS half of `dpf fidelity`: an ovs-vswitchd of our own (userspace datapath), the core `Ovs` port over
it, and `ofproto/trace` read back into plain data the comparison can hold against the twin's trace.

Nothing here knows the twin: results are plain tuples and dicts (the twin-side comparison lives in dpf_cli).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dpf_hw.ovs import OvsdbOvs

OVS_SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
OVS_TOOLS = ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl", "ovs-appctl", "ip")

# This machine's ovs-vswitchd has no DPDK: a `dpdk` interface fails to open and never gets an ofport. The
# netdev datapath's `internal` port (a tap) is the stand-in, the way a veth stands in for an SF representor.
STAND_IN_TYPES: dict[str, str] = {"dpdk": "internal"}


class StandInOvs:
    """The core `Ovs` port over `OvsdbOvs`, with interface types this machine cannot open swapped for their
    stand-ins. Everything else (names, external_ids, options, ofport_request, flows) passes through untouched, so
    the controller driving it is exactly the one that drives a DPU."""

    def __init__(self, ovs: OvsdbOvs, stand_in: Mapping[str, str] | None = None, *, settle: float = 0.0) -> None:
        self.ovs = ovs
        self.stand_in = dict(STAND_IN_TYPES if stand_in is None else stand_in)
        self.settle = settle

    def ensure_port(self, bridge: str, port: str, iface_type: str, *, iface_external_ids: Mapping[str, str] | None = None,
                    port_external_ids: Mapping[str, str] | None = None, options: Mapping[str, str] | None = None,
                    ofport_request: int | None = None) -> None:
        self.ovs.ensure_port(bridge, port, self.stand_in.get(iface_type, iface_type),
                             iface_external_ids=iface_external_ids, port_external_ids=port_external_ids,
                             options=options, ofport_request=ofport_request)
        if self.settle:
            self._wait_ofport(bridge, port)

    def _wait_ofport(self, bridge: str, port: str) -> None:
        """Wait (up to `settle` seconds) until ovs-vswitchd has taken the port in and is done with it: every port on
        the bridge has its ofport column set, and the new port holds its requested number unless a port that
        requested the same number holds it. (A request held by an automatically numbered port is granted one
        reconfiguration later, by deleting and re-adding both.) One port at a time also keeps ovs-vswitchd's
        bundles in creation order, the order NORMAL floods in."""
        deadline = time.monotonic() + self.settle
        while time.monotonic() < deadline:
            rows = self.ovs.ports(bridge)
            row = next((r for r in rows if r["name"] == port), None)
            if row is None:
                return
            if all(r["ofport"] is not None for r in rows):
                want = row["ofport_request"]
                if want is None or row["ofport"] in (want, -1):
                    return
                holder = next((r for r in rows if r["ofport"] == want), None)
                if holder is not None and holder["ofport_request"] == want:
                    return
            time.sleep(0.002)

    def delete_port(self, bridge: str, port: str) -> None:
        self.ovs.delete_port(bridge, port)

    def ports(self, bridge: str) -> list[dict[str, Any]]:
        return self.ovs.ports(bridge)

    def add_flows_bundle(self, bridge: str, flows: list[str]) -> None:
        self.ovs.add_flows_bundle(bridge, flows)

    def del_flows_cookie(self, bridge: str, cookie: int) -> None:
        self.ovs.del_flows_cookie(bridge, cookie)

    def dump_flows(self, bridge: str) -> list[str]:
        return self.ovs.dump_flows(bridge)


# --- the daemons ------------------------------------------------------------------------------------------------


def available() -> tuple[bool, str]:
    """Can this machine run a private ovs-vswitchd? (binaries, schema, root for its network namespace)"""
    missing = [t for t in OVS_TOOLS if shutil.which(t) is None]
    if missing:
        return False, f"{', '.join(missing)} not on PATH (apt-get install openvswitch-switch iproute2)"
    if not OVS_SCHEMA.exists():
        return False, f"{OVS_SCHEMA} missing"
    if os.geteuid() != 0:
        return False, "ovs-vswitchd runs in a network namespace of its own, which needs root"
    return True, ""


def _run(*cmd: str, env: Mapping[str, str] | None = None, timeout: float = 15.0) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, env=dict(env) if env else None, timeout=timeout,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


class OvsDaemons:
    """ovsdb-server + ovs-vswitchd (userspace datapath) living in a temp dir, ovs-vswitchd in its own network
    namespace so its tap devices never meet another OVS on the host. Stopped by pid, never by name."""

    def __init__(self) -> None:
        # Short: `<dir>/<bridge>.mgmt` must fit a unix socket path (108 bytes).
        self.directory = Path(tempfile.mkdtemp(prefix="dpf-fid-"))
        self.netns = f"dpf-fid-{os.getpid()}-{self.directory.name[-6:]}"
        self.pids: dict[str, int] = {}

    @property
    def db(self) -> str:
        return f"unix:{self.directory / 'db.sock'}"

    @property
    def ctl(self) -> str:
        return str(self.directory / "ovs-vswitchd.ctl")

    def env(self) -> dict[str, str]:
        d = str(self.directory)
        return {**os.environ, "OVS_RUNDIR": d, "OVS_DBDIR": d, "OVS_LOGDIR": d, "OVS_SYSCONFDIR": d}

    def start(self) -> None:
        d, env = self.directory, self.env()
        _run("ovsdb-tool", "create", str(d / "conf.db"), str(OVS_SCHEMA), env=env)
        _run("ovsdb-server", str(d / "conf.db"), f"--remote=punix:{d / 'db.sock'}", f"--pidfile={d / 'ovsdb-server.pid'}",
             f"--log-file={d / 'ovsdb-server.log'}", f"--unixctl={d / 'ovsdb-server.ctl'}", "--no-chdir", "--detach",
             env=env)
        self.pids["ovsdb-server"] = int((d / "ovsdb-server.pid").read_text())
        _run("ovs-vsctl", f"--db={self.db}", "--timeout=10", "--no-wait", "init", env=env)
        _run("ip", "netns", "add", self.netns)
        _run("ip", "netns", "exec", self.netns, "ovs-vswitchd", self.db, f"--pidfile={d / 'ovs-vswitchd.pid'}",
             f"--log-file={d / 'ovs-vswitchd.log'}", f"--unixctl={self.ctl}", "--no-chdir", "--detach", env=env)
        self.pids["ovs-vswitchd"] = int((d / "ovs-vswitchd.pid").read_text())

    def stop(self) -> None:
        for name in ("ovs-vswitchd", "ovsdb-server"):
            pid = self.pids.pop(name, None)
            if pid is None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.02)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(RuntimeError, OSError):
            _run("ip", "netns", "del", self.netns)
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> OvsDaemons:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Appctl:
    """`ovs-appctl` to ovs-vswitchd: the JSON-RPC unixctl client of the `ovs` package (one connection, about a
    millisecond a call), or the ovs-appctl binary when that package is missing."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._client: Any = None
        with contextlib.suppress(ImportError):
            from ovs.unixctl.client import UnixctlClient

            error, client = UnixctlClient.create(target)
            if not error:
                self._client = client

    def __call__(self, command: str, *args: str) -> str:
        if self._client is not None:
            error, reply_error, reply = self._client.transact(command, list(args))
            if error:
                raise RuntimeError(f"ovs-appctl {command}: {os.strerror(error)}")
            if reply_error is not None:
                raise RuntimeError(f"ovs-appctl {command}: {str(reply_error).strip()}")
            return str(reply)
        return _run("ovs-appctl", "-t", self.target, command, *args)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


# --- the switch as the comparison sees it -------------------------------------------------------------------

Delivery = tuple[str, str, str, str, "int | None", int, "str | None", "str | None", int, int]
_DP_LINE = re.compile(r"^Datapath actions: (.*)$", re.M)
_PORT_LINE = re.compile(r"^\s{4}(\S+) (\d+)/(\d+|none):", re.M)
_BRIDGE_LINE = re.compile(r"^\s{2}(\S+):$", re.M)
OFPP_LOCAL = 65534


class RealSwitch:
    """A real ovs-vswitchd behind the same small interface as the twin's switch: bridges, the core `Ovs` port
    (with interface stand-ins), port rows, `dump-flows --no-stats` lines, and `ofproto/trace -generate` read
    back into deliveries (output port + the packet's headers as they left)."""

    def __init__(self, daemons: OvsDaemons) -> None:
        self.daemons = daemons
        self.adapter = OvsdbOvs(daemons.db, rundir=str(daemons.directory))
        self.ovs = StandInOvs(self.adapter, settle=5.0)
        self.appctl = Appctl(daemons.ctl)
        self.bridges: list[str] = []
        self._ofports: dict[str, dict[str, int]] = {}
        self._odp: dict[int, tuple[str, str]] | None = None

    def close(self) -> None:
        self.appctl.close()
        self.adapter.close()

    def reset(self) -> None:
        """Every bridge gone: the next topology starts from fresh bridges (ofport numbering, MAC tables, flows)."""
        for bridge in self.bridges:
            self.adapter.delete_bridge(bridge)
        self.bridges = []
        self._ofports.clear()
        self._odp = None

    def add_bridge(self, name: str, fail_mode: str) -> None:
        self.adapter.ensure_bridge(name, datapath_type="netdev", fail_mode=fail_mode)
        self.bridges.append(name)

    def ports(self, bridge: str) -> list[dict[str, Any]]:
        return self.adapter.ports(bridge)

    def flows(self, bridge: str) -> list[str]:
        out = _run("ovs-ofctl", "-O", "OpenFlow13", "--no-stats", "--no-names", "dump-flows",
                   f"unix:{self.daemons.directory / bridge}.mgmt")
        return sorted(line.strip() for line in out.splitlines() if "actions=" in line)

    # --- tracing ----------------------------------------------------------------------------------------------
    def _ofport(self, bridge: str, name: str) -> int:
        if name == bridge:
            return OFPP_LOCAL
        if bridge not in self._ofports:
            self._ofports[bridge] = {r["name"]: r["ofport"] for r in self.adapter.ports(bridge)
                                     if isinstance(r["ofport"], int) and r["ofport"] > 0}
        try:
            return self._ofports[bridge][name]
        except KeyError:
            raise LookupError(f"{bridge} has no port {name} with an OpenFlow number") from None

    def _odp_ports(self) -> dict[int, tuple[str, str]]:
        """Datapath port number -> (bridge, port name), from `dpif/show`."""
        if self._odp is None:
            text = self.appctl("dpif/show")
            odp: dict[int, tuple[str, str]] = {}
            bridge = ""
            for line in text.splitlines():
                m = re.match(r"^\s{2}(\S+):$", line)
                if m:
                    bridge = m.group(1)
                    continue
                m = re.match(r"^\s{4}(\S+) (\d+)/(\d+):", line)
                if m:
                    odp[int(m.group(3))] = (bridge, m.group(1))
            self._odp = odp
        return self._odp

    def trace(self, bridge: str, in_port: str, packet: Mapping[str, Any]) -> tuple[Delivery, ...]:
        flow = flow_string(self._ofport(bridge, in_port), packet)
        text = self.appctl("ofproto/trace", bridge, flow, "-generate")
        found = _DP_LINE.findall(text)
        if not found:
            raise RuntimeError(f"ofproto/trace printed no datapath actions:\n{text}")
        return interpret(found[-1].strip(), packet, self._odp_ports())


def flow_string(ofport: int, pkt: Mapping[str, Any]) -> str:
    """The packet in ofproto/trace's flow syntax."""
    parts = [f"in_port={ofport}", f"dl_src={pkt['eth_src']}", f"dl_dst={pkt['eth_dst']}"]
    if pkt.get("vlan") is not None:
        parts.append(f"vlan_tci={0x1000 | int(pkt['vlan']):#06x}")
    proto = pkt.get("ip_proto")
    if pkt.get("ip_src") is not None:
        parts += ["dl_type=0x0800", f"nw_src={pkt['ip_src']}", f"nw_dst={pkt['ip_dst']}", f"nw_proto={proto or 0}"]
        if proto in (6, 17):
            l4 = "tcp" if proto == 6 else "udp"  # tp_src is tcp_src, whose prerequisite is tcp
            parts += [f"{l4}_src={pkt.get('tp_src', 0)}", f"{l4}_dst={pkt.get('tp_dst', 0)}"]
        elif proto == 1:
            parts += [f"icmp_type={pkt.get('tp_src', 0)}", f"icmp_code={pkt.get('tp_dst', 0)}"]
    else:
        parts.append(f"dl_type={int(pkt.get('eth_type') or 0):#06x}")
    return ",".join(parts)


def split_actions(text: str) -> list[str]:
    """Top-level comma split of a datapath action list (commas inside parentheses belong to the action)."""
    out: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "," and depth == 0:
            out.append("".join(cur))
            cur = []
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur.append(ch)
    if cur:
        out.append("".join(cur))
    return [a.strip() for a in out if a.strip()]


def _kv(text: str) -> dict[str, str]:
    return {k: v.split("/")[0] for k, _, v in (p.partition("=") for p in text.split(",")) if k}


def interpret(actions: str, pkt: Mapping[str, Any], odp: Mapping[int, tuple[str, str]]) -> tuple[Delivery, ...]:
    """Replay datapath actions on the packet's headers: every output records the port and the headers then."""
    state: dict[str, Any] = {
        "eth_src": pkt["eth_src"], "eth_dst": pkt["eth_dst"],
        "vlans": [] if pkt.get("vlan") is None else [(int(pkt["vlan"]), 0)],
        "ip_src": pkt.get("ip_src"), "ip_dst": pkt.get("ip_dst"),
        "tp_src": pkt.get("tp_src", 0), "tp_dst": pkt.get("tp_dst", 0),
    }
    l4 = pkt.get("ip_proto") in (1, 6, 17)
    out: list[Delivery] = []

    def run(acts: list[str], st: dict[str, Any]) -> None:
        for a in acts:
            if a == "drop":
                continue
            if a.isdigit():
                if int(a) not in odp:
                    raise RuntimeError(f"datapath port {a} is not in dpif/show")
                bridge, port = odp[int(a)]
                vid, pcp = st["vlans"][0] if st["vlans"] else (None, 0)
                out.append((bridge, port, st["eth_src"], st["eth_dst"], vid, pcp, st["ip_src"], st["ip_dst"],
                            st["tp_src"] if l4 else 0, st["tp_dst"] if l4 else 0))
            elif a.startswith("push_vlan(") and a.endswith(")"):
                kv = _kv(a[len("push_vlan("):-1])
                st["vlans"].insert(0, (int(kv["vid"]), int(kv.get("pcp", "0"))))
            elif a == "pop_vlan":
                if st["vlans"]:
                    st["vlans"].pop(0)
            elif a.startswith("clone(") and a.endswith(")"):
                run(split_actions(a[len("clone("):-1]), {**st, "vlans": list(st["vlans"])})
            elif a.startswith("set(") and a.endswith(")"):
                inner = a[len("set("):-1]
                name, _, rest = inner.partition("(")
                kv = _kv(rest.rstrip(")"))
                if name == "eth":
                    st["eth_src"] = kv.get("src", st["eth_src"])
                    st["eth_dst"] = kv.get("dst", st["eth_dst"])
                elif name == "ipv4":
                    st["ip_src"] = str(ipaddress.IPv4Address(kv["src"])) if "src" in kv else st["ip_src"]
                    st["ip_dst"] = str(ipaddress.IPv4Address(kv["dst"])) if "dst" in kv else st["ip_dst"]
                elif name in ("tcp", "udp"):
                    st["tp_src"] = int(kv.get("src", st["tp_src"]))
                    st["tp_dst"] = int(kv.get("dst", st["tp_dst"]))
                elif name == "icmp":
                    st["tp_src"] = int(kv.get("type", st["tp_src"]))
                    st["tp_dst"] = int(kv.get("code", st["tp_dst"]))
                else:
                    raise RuntimeError(f"datapath action {a} is not understood")
            else:
                raise RuntimeError(f"datapath action {a} is not understood")

    run(split_actions(actions), state)
    return tuple(out)


@contextlib.contextmanager
def real_switch() -> Iterator[RealSwitch]:
    """Daemons started, a RealSwitch on them; all stopped on exit."""
    with OvsDaemons() as daemons:
        switch = RealSwitch(daemons)
        try:
            yield switch
        finally:
            switch.close()
