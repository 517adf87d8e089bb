"""`dpf-sfc-cni` invoked exactly as a container runtime invokes a CNI plugin: the installed executable, CNI_*
variables in the environment, the network configuration on stdin, the result (or error) JSON on stdout.

The runtime's "host" here is the OVS sandbox's network namespace (that is where ovs-vswitchd runs and where the
host end of the pod's veth must live), so the plugin is started inside it with `ip netns exec`, as a runtime on
the DPU starts it in the root namespace next to ovs-vswitchd. Pods are real network namespaces."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import Netns, OvsSandbox

PLUGIN = Path(sys.executable).parent / "dpf-sfc-cni"
BR = "br-sfc"


@dataclass
class Invocation:
    code: int
    out: dict[str, Any] | None
    stderr: str


class Runtime:
    """What containerd/CRI-O do with a CNI plugin, minus the pods."""

    def __init__(self, sandbox: OvsSandbox, cni_path: Path) -> None:
        self.sandbox = sandbox
        self.cni_path = cni_path

    def conf(self, **extra: Any) -> dict[str, Any]:
        return {"cniVersion": "1.0.0", "name": "mybrsfc", "type": "dpf-sfc-cni", "bridge": BR,
                "socket_file": str(self.sandbox.db_sock), **extra}

    def invoke(self, command: str, conf: dict[str, Any] | None, *, container: str = "c1", netns: str | None = "",
               ifname: str = "net1", args: str = "IgnoreUnknown=1;K8S_POD_NAMESPACE=app;K8S_POD_NAME=pod1",
               raw: bytes | None = None, env: dict[str, str] | None = None) -> Invocation:
        e = {"PATH": os.environ["PATH"], "CNI_COMMAND": command, "CNI_CONTAINERID": container,
             "CNI_IFNAME": ifname, "CNI_ARGS": args, "CNI_PATH": str(self.cni_path)}
        if netns is not None:
            e["CNI_NETNS"] = netns
        e.update(env or {})
        stdin = raw if raw is not None else json.dumps(conf or {}).encode()
        done = subprocess.run(["ip", "netns", "exec", self.sandbox.netns, str(PLUGIN)], input=stdin, env=e,
                              capture_output=True, timeout=60, check=False)
        text = done.stdout.decode().strip()
        return Invocation(done.returncode, json.loads(text) if text else None, done.stderr.decode())

    def in_sandbox(self, *cmd: str) -> str:
        return subprocess.run(["ip", "netns", "exec", self.sandbox.netns, *cmd], capture_output=True, text=True,
                              timeout=10, check=True).stdout


@pytest.fixture
def runtime(ovs_sandbox: OvsSandbox, sfc_cni_path: Path) -> Runtime:
    return Runtime(ovs_sandbox, sfc_cni_path)


def netns_path(ns: Netns) -> str:
    return f"/var/run/netns/{ns.name}"


@pytest.fixture
def pod2() -> Any:
    """A second pod namespace (the conftest `netns` fixture gives one)."""
    name = f"dpft-pod2-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield type("Pod", (), {"name": name})()
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def port_row(sandbox: OvsSandbox, name: str) -> dict[str, str]:
    cols = ("name", "external_ids", "ofport_request", "ofport", "type")
    out = sandbox.vsctl("--format=json", f"--columns={','.join(cols)}", "list", "Interface", name)
    [row] = json.loads(out)["data"]
    return dict(zip(cols, [json.dumps(v) for v in row], strict=True))


def test_version_lists_supported_versions(runtime: Runtime) -> None:
    r = runtime.invoke("VERSION", {"cniVersion": "1.0.0"})
    assert r.code == 0
    assert r.out == {"cniVersion": "1.0.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]}


def test_add_plugs_the_pod_into_br_sfc_with_dpf_ids_and_the_static_ip(runtime: Runtime, netns: Netns) -> None:
    from dpf_hw.cni import fnv1a_32, host_ifname

    conf = runtime.conf(ipam={"type": "static", "addresses": [{"address": "10.10.0.5/24", "gateway": "10.10.0.1"}],
                              "routes": [{"dst": "0.0.0.0/0"}]})
    r = runtime.invoke("ADD", conf, netns=netns_path(netns), args="IgnoreUnknown=1;K8S_POD_NAMESPACE=app;"
                       "K8S_POD_NAME=pod1;K8S_POD_INFRA_CONTAINER_ID=c1;OvnPort=app_pod1")
    assert r.code == 0, r.out
    assert r.out is not None
    host = host_ifname("c1", "net1")
    assert r.out["cniVersion"] == "1.0.0"
    assert [i["name"] for i in r.out["interfaces"]] == [host, "net1"]
    assert r.out["interfaces"][1]["sandbox"] == netns_path(netns)
    assert r.out["interfaces"][1]["mac"] == "0a:58:0a:0a:00:05"  # ovs-cni's MAC from the IPv4 address
    assert r.out["ips"] == [{"address": "10.10.0.5/24", "gateway": "10.10.0.1", "interface": 1}]
    assert r.out["routes"] == [{"dst": "0.0.0.0/0"}]

    # The pod's namespace: the interface, renamed, up, addressed, with the default route via the gateway.
    link = netns.link("net1")
    assert "0a:58:0a:0a:00:05" in link and ",UP," in link.split(">")[0] + ","
    assert "inet 10.10.0.5/24" in netns.ip("addr", "show", "dev", "net1")
    assert "default via 10.10.0.1 dev net1" in netns.ip("route")
    # The host end: in ovs-vswitchd's namespace, a br-sfc port with ovs-cni's OVSDB rows.
    assert runtime.sandbox.vsctl("port-to-br", host).strip() == BR
    iface = port_row(runtime.sandbox, host)
    ids = dict(json.loads(iface["external_ids"])[1])
    assert ids == {"dpf-id": "app/pod1/net1", "iface-id": "app_pod1"}
    assert json.loads(iface["ofport_request"]) == fnv1a_32(host) & 0xFF
    assert json.loads(iface["ofport"]) == fnv1a_32(host) & 0xFF  # free, so granted
    port_ids = runtime.sandbox.vsctl("get", "Port", host, "external_ids")
    assert f'contIface=net1, contNetns="{netns_path(netns)}", owner=ovs-cni.network.kubevirt.io' in port_ids

    # CHECK with the result as prevResult passes; a tampered prevResult is reported.
    chk = runtime.conf(ipam=conf["ipam"], prevResult=r.out)
    assert runtime.invoke("CHECK", chk, netns=netns_path(netns)).code == 0
    bad = json.loads(json.dumps(r.out))
    bad["ips"][0]["address"] = "10.10.0.6/24"
    fail = runtime.invoke("CHECK", runtime.conf(prevResult=bad), netns=netns_path(netns))
    assert fail.code == 1 and fail.out is not None
    assert fail.out["code"] == 103 and "lacks address 10.10.0.6/24" in fail.out["msg"]

    # DEL removes port and both veth ends; a second DEL (and a DEL without a netns) still succeeds.
    for netns_arg in (netns_path(netns), netns_path(netns), ""):
        d = runtime.invoke("DEL", conf, netns=netns_arg)
        assert (d.code, d.out) == (0, None)
    assert runtime.sandbox.vsctl("list-ports", BR).split() == []
    assert "net1" not in netns.ip("link")
    assert host not in runtime.in_sandbox("ip", "link")
    fail = runtime.invoke("CHECK", runtime.conf(prevResult=r.out), netns=netns_path(netns))
    assert fail.code == 1


RECEIVE = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("192.168.7.2", 9999))
s.settimeout(20)
data, (src, _) = s.recvfrom(100)
print(data.decode(), "from", src)
"""
SEND = """
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(40):
    s.sendto(b"hello", ("192.168.7.2", 9999))
    time.sleep(0.05)
"""


def test_ip_from_prev_result_and_traffic_through_chain_flows(runtime: Runtime, netns: Netns, pod2: Any) -> None:
    """Two pods plugged in (one IP from a chained prevResult, one from static IPAM), then DPF's chain flows
    between their ports: a real ping crosses the userspace datapath."""
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "net1", "sandbox": netns_path(netns)}],
            "ips": [{"address": "192.168.7.1/24", "interface": 0}]}
    a = runtime.invoke("ADD", runtime.conf(prevResult=prev), netns=netns_path(netns), container="ca")
    assert a.code == 0, a.out
    assert a.out is not None and a.out["ips"] == [{"address": "192.168.7.1/24", "interface": 2}]
    b = runtime.invoke("ADD", runtime.conf(ipam={"type": "static", "addresses": [{"address": "192.168.7.2/24"}]}),
                       netns=f"/var/run/netns/{pod2.name}", container="cb",
                       args="K8S_POD_NAMESPACE=app;K8S_POD_NAME=pod2")
    assert b.code == 0, b.out
    assert b.out is not None
    ha, hb = a.out["interfaces"][1]["name"], b.out["interfaces"][0]["name"]
    pa = int(runtime.sandbox.vsctl("get", "Interface", ha, "ofport"))
    pb = int(runtime.sandbox.vsctl("get", "Interface", hb, "ofport"))
    assert pa > 0 and pb > 0

    from dpf_core.controllers.sfc import chain_flows

    flows = chain_flows(7, [str(pa), str(pb)])
    (runtime.cni_path / "flows.txt").write_text("\n".join(flows) + "\n")
    runtime.sandbox.ofctl("--bundle", "add-flows", runtime.sandbox.mgmt(BR), str(runtime.cni_path / "flows.txt"))
    # Real traffic: ARP and a UDP datagram from pod1 to pod2 through br-sfc's userspace datapath.
    receiver = subprocess.Popen(["ip", "netns", "exec", pod2.name, sys.executable, "-c", RECEIVE],
                                stdout=subprocess.PIPE, text=True)
    try:
        subprocess.run(["ip", "netns", "exec", netns.name, sys.executable, "-c", SEND], timeout=30, check=True)
        got, _ = receiver.communicate(timeout=30)
    finally:
        if receiver.poll() is None:
            receiver.kill()
    assert got.strip() == "hello from 192.168.7.1"
    dump = runtime.sandbox.ofctl("dump-flows", runtime.sandbox.mgmt(BR))
    learned = [ln for ln in dump.splitlines() if "idle_timeout=10, priority=30," in ln]
    assert len(learned) == 2  # the learn actions saw both MACs
    assert all(int(m) > 0 for m in re.findall(r"n_packets=(\d+)", dump))


def test_delegated_ipam_plugin_is_run_from_cni_path(runtime: Runtime, netns: Netns) -> None:
    """A fake IPAM plugin on CNI_PATH records each call (command, container, stdin) and hands out an address."""
    log = runtime.cni_path / "calls.log"
    fake = runtime.cni_path / "fake-ipam"
    fake.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import json, os, sys
        conf = json.load(sys.stdin)
        with open({str(log)!r}, "a") as f:
            f.write(json.dumps([os.environ["CNI_COMMAND"], os.environ["CNI_CONTAINERID"], conf["ipam"]["pool"]]) + "\\n")
        if os.environ["CNI_COMMAND"] == "ADD":
            if conf["ipam"]["pool"] == "empty":
                print(json.dumps({{"cniVersion": "1.0.0", "code": 11, "msg": "pool exhausted"}}))
                sys.exit(1)
            print(json.dumps({{"cniVersion": "1.0.0", "ips": [{{"address": "172.16.3.9/16", "gateway": "172.16.0.1"}}]}}))
        """))
    fake.chmod(0o755)
    conf = runtime.conf(ipam={"type": "fake-ipam", "pool": "p1"})
    r = runtime.invoke("ADD", conf, netns=netns_path(netns))
    assert r.code == 0, r.out
    assert r.out is not None and r.out["ips"] == [{"address": "172.16.3.9/16", "gateway": "172.16.0.1", "interface": 1}]
    assert "inet 172.16.3.9/16" in netns.ip("addr", "show", "dev", "net1")
    assert runtime.invoke("DEL", conf, netns=netns_path(netns)).code == 0
    calls = [json.loads(ln) for ln in log.read_text().splitlines()]
    assert calls == [["ADD", "c1", "p1"], ["DEL", "c1", "p1"]]

    # The IPAM plugin's own error comes back with its code; nothing is left plugged in.
    r = runtime.invoke("ADD", runtime.conf(ipam={"type": "fake-ipam", "pool": "empty"}), netns=netns_path(netns))
    assert r.code == 1 and r.out is not None
    assert (r.out["code"], r.out["msg"]) == (11, "IPAM plugin 'fake-ipam': pool exhausted")
    assert runtime.sandbox.vsctl("list-ports", BR).split() == []
    assert "net1" not in netns.ip("link")


def test_repeated_add_replaces_the_first(runtime: Runtime, netns: Netns) -> None:
    conf = runtime.conf(ipam={"type": "static", "addresses": [{"address": "10.0.0.9/24"}]})
    first = runtime.invoke("ADD", conf, netns=netns_path(netns))
    second = runtime.invoke("ADD", conf, netns=netns_path(netns))
    assert first.code == second.code == 0
    assert first.out is not None and second.out is not None
    assert first.out["ips"] == second.out["ips"]
    assert first.out["interfaces"][1] == second.out["interfaces"][1]  # the host end is a new veth, new MAC
    assert first.out["interfaces"][0]["name"] == second.out["interfaces"][0]["name"]
    assert len(runtime.sandbox.vsctl("list-ports", BR).split()) == 1
    assert netns.ip("-4", "addr", "show", "dev", "net1").count("inet ") == 1


@pytest.mark.parametrize(("command", "conf", "env", "code", "msg"), [
    ("ADD", {"cniVersion": "9.9.9", "name": "n", "type": "dpf-sfc-cni"}, {}, 1, "incompatible CNI versions"),
    ("ADD", None, {"CNI_CONTAINERID": ""}, 4, "CNI_CONTAINERID"),
    ("ADD", {"cniVersion": "1.0.0", "type": "dpf-sfc-cni"}, {}, 7, "missing network name"),
    ("ADD", {"cniVersion": "1.0.0", "name": "n", "type": "x", "vlan": 10}, {}, 2, "vlan"),
    ("ADD", None, {"CNI_NETNS": "/var/run/netns/no-such-pod"}, 3, "does not exist"),
    ("ADD", {"cniVersion": "1.0.0", "name": "n", "type": "x", "ipam": {"type": "nope"}}, {}, 7,
     "failed to find IPAM plugin 'nope'"),
    ("CHECK", {"cniVersion": "0.3.1", "name": "n", "type": "x"}, {}, 1, "config version does not allow CHECK"),
    ("CHECK", None, {}, 7, "prevResult missing"),
    ("BOGUS", None, {}, 4, "unknown CNI_COMMAND"),
])
def test_errors_are_cni_error_json(runtime: Runtime, netns: Netns, command: str, conf: dict[str, Any] | None,
                                   env: dict[str, str], code: int, msg: str) -> None:
    full = runtime.conf() if conf is None else {"socket_file": str(runtime.sandbox.db_sock), **conf}
    r = runtime.invoke(command, full, netns=netns_path(netns), env=env)
    assert r.code == 1
    assert r.out is not None and r.out["code"] == code and msg in r.out["msg"], r.out
    assert "cniVersion" in r.out


def test_undecodable_config_and_unreachable_ovsdb(runtime: Runtime, netns: Netns) -> None:
    r = runtime.invoke("ADD", None, netns=netns_path(netns), raw=b"{not json")
    assert r.code == 1 and r.out is not None and r.out["code"] == 6
    r = runtime.invoke("ADD", runtime.conf(socket_file="/nonexistent/db.sock"), netns=netns_path(netns))
    assert r.code == 1 and r.out is not None and r.out["code"] == 11  # try again later
    assert "net1" not in netns.ip("link")


def test_old_result_versions_carry_the_ip_version(runtime: Runtime, netns: Netns) -> None:
    conf = runtime.conf(cniVersion="0.4.0", ipam={"type": "static", "addresses": [{"address": "10.3.0.2/24"}]})
    r = runtime.invoke("ADD", conf, netns=netns_path(netns))
    assert r.code == 0 and r.out is not None
    assert r.out["cniVersion"] == "0.4.0"
    assert r.out["ips"] == [{"address": "10.3.0.2/24", "interface": 1, "version": "4"}]
