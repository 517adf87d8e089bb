"""`dpf-sfc-cni` from the outside: invoked as a runtime (multus) invokes DPF's ovs-cni, with DPF's own network
configuration and the environment libcni's skel checks (containernetworking/cni v1.2.3, the version DPF pins).

Oracles: DPF's NetworkAttachmentDefinition `mybrsfc` (deploy/helm/dpu-networking/charts/multus/templates/
network-attachment-definition.yaml: cniVersion 0.4.0, bridge br-sfc, mtu 1500 from the chart's values), the
forked ovs-cni (third_party/forked/ovs-cni/pkg/plugin/plugin.go CmdAdd/CmdDel, pkg/ovsdb/ovsdb.go
createInterfaceOperation), and libcni (pkg/skel/skel.go getCmdArgsFromEnv, pkg/utils ValidateInterfaceName,
pkg/types/args.go LoadArgs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import Netns, OvsSandbox

PLUGIN = Path(sys.executable).parent / "dpf-sfc-cni"
BR = "br-sfc"
POD_ARGS = "IgnoreUnknown=1;K8S_POD_NAMESPACE=app;K8S_POD_NAME=pod1;K8S_POD_INFRA_CONTAINER_ID=c1"


@dataclass
class Result:
    code: int
    out: dict[str, Any] | None


class Runtime:
    def __init__(self, sandbox: OvsSandbox, cni_path: Path) -> None:
        self.sandbox = sandbox
        self.cni_path = cni_path

    def mybrsfc(self, **extra: Any) -> dict[str, Any]:
        """DPF's NAD config as multus hands it over (name filled from the NAD); `interface_type: dpdk` is left
        out because this OVS has no DPDK, and the OVSDB socket is the sandbox's."""
        return {"cniVersion": "0.4.0", "name": "mybrsfc", "type": "ovs", "bridge": BR, "mtu": 1500,
                "socket_file": str(self.sandbox.db_sock), **extra}

    def invoke(self, command: str, conf: dict[str, Any] | None, env: dict[str, str]) -> Result:
        full = {"PATH": os.environ["PATH"], "CNI_COMMAND": command, **env}
        done = subprocess.run(["ip", "netns", "exec", self.sandbox.netns, str(PLUGIN)],
                              input=json.dumps(conf or {}).encode(), env=full, capture_output=True, timeout=60,
                              check=False)
        text = done.stdout.decode().strip()
        return Result(done.returncode, json.loads(text) if text else None)

    def env(self, netns: str, *, ifname: str = "net1", args: str = POD_ARGS, container: str = "c1") -> dict[str, str]:
        return {"CNI_CONTAINERID": container, "CNI_NETNS": netns, "CNI_IFNAME": ifname, "CNI_ARGS": args,
                "CNI_PATH": str(self.cni_path)}

    def iface(self, name: str, column: str) -> Any:
        return json.loads(self.sandbox.vsctl("--format=json", f"--columns={column}", "list", "Interface",
                                             name))["data"][0][0]


@pytest.fixture
def runtime(ovs_sandbox: OvsSandbox, sfc_cni_path: Path) -> Runtime:
    return Runtime(ovs_sandbox, sfc_cni_path)


@pytest.fixture
def pod() -> Iterator[str]:
    """A pod namespace this test may delete before the runtime's DEL, as a torn-down sandbox is."""
    name = f"dpft9-pod-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def static(address: str) -> dict[str, Any]:
    return {"type": "static", "addresses": [{"address": address}]}


def test_dpfs_mybrsfc_config_gives_the_interface_ovs_cnis_mtu_request(runtime: Runtime, netns: Netns) -> None:
    """ovs-cni's createInterfaceOperation writes `mtu_request` for mtu > 100 (a DPDK port takes its MTU from
    there, not from netlink); the pod end gets the MTU too."""
    r = runtime.invoke("ADD", runtime.mybrsfc(ipam=static("10.20.0.4/24")), runtime.env(f"/var/run/netns/{netns.name}"))
    assert r.code == 0, r.out
    assert r.out is not None and r.out["cniVersion"] == "0.4.0"
    host = r.out["interfaces"][0]["name"]
    assert runtime.iface(host, "mtu_request") == 1500
    assert netns.mtu_of("net1") == 1500


def test_mtu_of_100_or_less_requests_nothing(runtime: Runtime, netns: Netns) -> None:
    r = runtime.invoke("ADD", runtime.mybrsfc(mtu=0, ipam=static("10.20.0.5/24")),
                       runtime.env(f"/var/run/netns/{netns.name}"))
    assert r.code == 0, r.out
    assert r.out is not None
    assert runtime.iface(r.out["interfaces"][0]["name"], "mtu_request") == ["set", []]


def test_without_cni_args_dpf_id_is_slash_ifname(runtime: Runtime, netns: Netns) -> None:
    """CmdAdd: dpfId is `<ns>/<name>` only when CNI_ARGS parse to something, then `+= "/" + ifname`."""
    r = runtime.invoke("ADD", runtime.mybrsfc(ipam=static("10.20.0.6/24")),
                       runtime.env(f"/var/run/netns/{netns.name}", args=""))
    assert r.code == 0, r.out
    assert r.out is not None
    ids = dict(runtime.iface(r.out["interfaces"][0]["name"], "external_ids")[1])
    assert ids == {"dpf-id": "/net1", "iface-id": ""}


def test_unknown_cni_args_without_ignore_unknown_fail_the_add(runtime: Runtime, netns: Netns) -> None:
    """libcni LoadArgs: `ARGS: unknown args ["FOO=bar"]` unless IgnoreUnknown is set; nothing is plugged."""
    r = runtime.invoke("ADD", runtime.mybrsfc(ipam=static("10.20.0.7/24")),
                       runtime.env(f"/var/run/netns/{netns.name}", args="K8S_POD_NAMESPACE=app;FOO=bar"))
    assert r.code == 1 and r.out is not None
    assert r.out["msg"] == 'ARGS: unknown args ["FOO=bar"]'
    assert runtime.sandbox.vsctl("list-ports", BR).split() == []
    # IgnoreUnknown=true is LoadArgs' other spelling of yes.
    ok = runtime.invoke("ADD", runtime.mybrsfc(ipam=static("10.20.0.7/24")),
                        runtime.env(f"/var/run/netns/{netns.name}", args="IgnoreUnknown=true;FOO=bar"))
    assert ok.code == 0, ok.out


def test_a_cni_arg_value_with_an_equals_sign_is_an_invalid_pair(runtime: Runtime, netns: Netns) -> None:
    r = runtime.invoke("ADD", runtime.mybrsfc(), runtime.env(f"/var/run/netns/{netns.name}",
                                                             args="IgnoreUnknown=1;OvnPort=a=b"))
    assert r.code == 1 and r.out is not None and r.out["msg"] == 'ARGS: invalid pair "OvnPort=a=b"'


@pytest.mark.parametrize("command, drop, missing", [
    ("ADD", ("CNI_PATH",), "CNI_PATH"),
    ("ADD", ("CNI_NETNS", "CNI_PATH"), "CNI_NETNS,CNI_PATH"),
    ("DEL", ("CNI_PATH",), "CNI_PATH"),
    ("CHECK", ("CNI_CONTAINERID",), "CNI_CONTAINERID"),
])
def test_missing_environment_is_skels_error(runtime: Runtime, netns: Netns, command: str, drop: tuple[str, ...],
                                            missing: str) -> None:
    env = {k: v for k, v in runtime.env(f"/var/run/netns/{netns.name}").items() if k not in drop}
    r = runtime.invoke(command, runtime.mybrsfc(), env)
    assert r.code == 1 and r.out is not None
    assert (r.out["code"], r.out["msg"]) == (4, f"required env variables [{missing}] missing")


@pytest.mark.parametrize("ifname, msg", [
    ("net/1", "interface name contains / or : or whitespace characters"),
    ("net:1", "interface name contains / or : or whitespace characters"),
    ("net 1", "interface name contains / or : or whitespace characters"),
    ("..", "interface name is . or .."),
    ("a234567890123456", "interface name is too long"),
])
def test_bad_interface_names_are_refused_before_anything_is_made(runtime: Runtime, netns: Netns, ifname: str,
                                                                 msg: str) -> None:
    r = runtime.invoke("ADD", runtime.mybrsfc(ipam=static("10.20.0.8/24")),
                       runtime.env(f"/var/run/netns/{netns.name}", ifname=ifname))
    assert r.code == 1 and r.out is not None
    assert (r.out["code"], r.out["msg"]) == (4, msg)
    assert runtime.sandbox.vsctl("list-ports", BR).split() == []


def test_del_after_the_pod_namespace_is_gone_succeeds_and_cleans_the_port(runtime: Runtime, pod: str) -> None:
    """Runtimes often tear the sandbox's namespace down before (or while) calling DEL; DEL must still succeed and
    must not leave the br-sfc port behind. Repeated DELs succeed too (spec: DEL is idempotent)."""
    path = f"/var/run/netns/{pod}"
    conf = runtime.mybrsfc(ipam=static("10.20.0.9/24"))
    add = runtime.invoke("ADD", conf, runtime.env(path))
    assert add.code == 0, add.out
    subprocess.run(["ip", "netns", "del", pod], check=True)
    conf_with_prev = {**conf, "prevResult": add.out}
    for _ in range(2):
        d = runtime.invoke("DEL", conf_with_prev, runtime.env(path))
        assert (d.code, d.out) == (0, None)
    assert runtime.sandbox.vsctl("list-ports", BR).split() == []


def test_version_answers_without_any_other_environment(runtime: Runtime) -> None:
    r = runtime.invoke("VERSION", {"cniVersion": "0.4.0"}, {})
    assert r.code == 0 and r.out is not None
    assert "0.4.0" in r.out["supportedVersions"] and "1.0.0" in r.out["supportedVersions"]


def test_del_with_the_cni_args_an_add_refused_still_succeeds(runtime: Runtime, netns: Netns) -> None:
    """The refused ADD made nothing (ovs-cni caches no config), so ovs-cni's DEL returns nil before it reads
    CNI_ARGS; a failing DEL would be retried by the runtime forever."""
    env = runtime.env(f"/var/run/netns/{netns.name}", args="K8S_POD_NAMESPACE=app;FOO=bar")
    assert runtime.invoke("ADD", runtime.mybrsfc(), env).code == 1
    d = runtime.invoke("DEL", runtime.mybrsfc(), env)
    assert (d.code, d.out) == (0, None)


def test_incompatible_version_is_skels_message_with_the_details(runtime: Runtime, netns: Netns) -> None:
    """skel's checkVersionAndCall: msg `incompatible CNI versions`, details = version.ErrorIncompatible.Details()."""
    r = runtime.invoke("ADD", runtime.mybrsfc(cniVersion="0.2.0"), runtime.env(f"/var/run/netns/{netns.name}"))
    assert r.code == 1 and r.out is not None
    assert (r.out["code"], r.out["msg"], r.out["details"]) == (
        1, "incompatible CNI versions", 'config is "0.2.0", plugin supports ["0.3.0" "0.3.1" "0.4.0" "1.0.0"]')
