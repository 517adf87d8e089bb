"""Fixtures that start the real thing: Open vSwitch daemons, a network namespace, an HTTP server, a sysfs tree.

Real-component rule: a test needing a component this machine lacks SKIPS with the reason, and FAILS with a
clear message when DPF_REQUIRE_REAL=1 (CI), so a CI run can never pass by skipping. `require_real` is that
rule; every fixture below that needs something real goes through it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from real_rule import require_real

OVS_SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
OVS_TOOLS = ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl", "ovs-appctl")
_netns_counter = itertools.count()




@pytest.fixture
def require_real_rule() -> Callable[[str, bool, str], None]:
    """`require_real` for tests of the rule itself (tests/hw is no package, so no import of this module)."""
    return require_real


def _importable(module: str) -> tuple[bool, str]:
    try:
        __import__(module)
    except ImportError as e:
        return False, f"python package {module!r} missing ({e}); pip install -e '.[hw]'"
    return True, ""


def _run(*cmd: str, env: dict[str, str] | None = None, timeout: float = 10.0) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); its state letter says it is gone.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def stop_pid(pid: int, timeout: float = 5.0) -> None:
    """SIGTERM, wait, then SIGKILL: only this pid, never a name match."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.02)
    if _pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# --- Open vSwitch ----------------------------------------------------------------------------------------
@dataclass
class OvsSandbox:
    """ovsdb-server + ovs-vswitchd living entirely in `directory` (db, sockets, pids, logs). ovs-vswitchd runs
    in its own network namespace `netns`: the userspace datapath makes a tap device per internal port (and
    `ovs-netdev`), which outlive the daemon and would collide with any other OVS on the host."""

    directory: Path
    netns: str
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def db_sock(self) -> Path:
        return self.directory / "db.sock"

    @property
    def db(self) -> str:
        return f"unix:{self.db_sock}"

    @property
    def rundir(self) -> str:
        return str(self.directory)

    def env(self) -> dict[str, str]:
        d = str(self.directory)
        return {**os.environ, "OVS_RUNDIR": d, "OVS_DBDIR": d, "OVS_LOGDIR": d, "OVS_SYSCONFDIR": d}

    def vsctl(self, *args: str) -> str:
        """Cross-check through a second, independent client."""
        return _run("ovs-vsctl", f"--db={self.db}", "--timeout=5", *args, env=self.env())

    def ofctl(self, *args: str) -> str:
        return _run("ovs-ofctl", "-O", "OpenFlow13", *args, env=self.env())

    def mgmt(self, bridge: str) -> str:
        return f"unix:{self.directory / bridge}.mgmt"

    def log_tail(self, lines: int = 20) -> str:
        out = []
        for name in ("ovsdb-server.log", "ovs-vswitchd.log"):
            with contextlib.suppress(OSError):
                out += (self.directory / name).read_text().splitlines()[-lines:]
        return "\n".join(out)

    def start(self) -> None:
        d = self.directory
        env = self.env()
        _run("ovsdb-tool", "create", str(d / "conf.db"), str(OVS_SCHEMA), env=env)
        _run("ovsdb-server", str(d / "conf.db"), f"--remote=punix:{self.db_sock}", f"--pidfile={d / 'ovsdb-server.pid'}",
             f"--log-file={d / 'ovsdb-server.log'}", f"--unixctl={d / 'ovsdb-server.ctl'}", "--no-chdir", "--detach",
             env=env)
        self.pids["ovsdb-server"] = int((d / "ovsdb-server.pid").read_text())
        self.vsctl("--no-wait", "init")
        _run("ip", "netns", "add", self.netns)
        _run("ip", "netns", "exec", self.netns, "ovs-vswitchd", self.db, f"--pidfile={d / 'ovs-vswitchd.pid'}", f"--log-file={d / 'ovs-vswitchd.log'}",
             f"--unixctl={d / 'ovs-vswitchd.ctl'}", "--no-chdir", "--detach", env=env)
        self.pids["ovs-vswitchd"] = int((d / "ovs-vswitchd.pid").read_text())

    def stop(self) -> None:
        for name in ("ovs-vswitchd", "ovsdb-server"):
            pid = self.pids.pop(name, None)
            if pid is not None:
                stop_pid(pid)
        with contextlib.suppress(RuntimeError, OSError):
            _run("ip", "netns", "del", self.netns)


def ovs_available() -> tuple[bool, str]:
    missing = [t for t in OVS_TOOLS if shutil.which(t) is None]
    if missing:
        return False, f"{', '.join(missing)} not on PATH (apt-get install openvswitch-switch)"
    if not OVS_SCHEMA.exists():
        return False, f"{OVS_SCHEMA} missing"
    ok, why = netns_available()
    if not ok:
        return False, f"ovs-vswitchd runs in its own network namespace, which {why}"
    return _importable("ovsdbapp")


@pytest.fixture
def ovs_sandbox() -> Iterator[OvsSandbox]:
    ok, why = ovs_available()
    require_real("Open vSwitch (ovsdb-server + ovs-vswitchd)", ok, why)
    # A short path: unix socket paths (`<dir>/br-sfc.mgmt`) must stay under 108 bytes.
    sandbox = OvsSandbox(Path(tempfile.mkdtemp(prefix="dpf-ovs-")), f"dpf-ovs-{os.getpid()}-{next(_netns_counter)}")
    try:
        try:
            sandbox.start()
        except (RuntimeError, OSError, ValueError) as e:
            sandbox.stop()
            require_real("Open vSwitch daemons", False, f"could not start: {e}\n{sandbox.log_tail()}")
        yield sandbox
    finally:
        sandbox.stop()
        shutil.rmtree(sandbox.directory, ignore_errors=True)


@pytest.fixture
def ovs_adapter(ovs_sandbox: OvsSandbox) -> Iterator[Any]:
    from dpf_hw.ovs import OvsdbOvs

    adapter = OvsdbOvs(ovs_sandbox.db, rundir=ovs_sandbox.rundir)
    try:
        yield adapter
    finally:
        adapter.close()


@pytest.fixture
def sfc_cni_path(ovs_sandbox: OvsSandbox, tmp_path: Path) -> Path:
    """What a node gives the dpf-sfc-cni plugin: a userspace br-sfc in the sandbox's OVS and an (empty) CNI_PATH
    directory, which is returned. Fails under DPF_REQUIRE_REAL=1 when the console script is not installed."""
    plugin = Path(sys.executable).parent / "dpf-sfc-cni"
    require_real("the dpf-sfc-cni executable", plugin.exists(), f"{plugin} missing: `pip install -e .` installs the console script")
    ovs_sandbox.vsctl("add-br", "br-sfc", "--", "set", "Bridge", "br-sfc", "datapath_type=netdev", "fail_mode=secure")
    cni_path = tmp_path / "cni-bin"
    cni_path.mkdir()
    return cni_path


# --- network namespaces ----------------------------------------------------------------------------------


@dataclass
class Netns:
    name: str

    def ip(self, *args: str) -> str:
        return _run("ip", "-n", self.name, *args)

    def veth(self, a: str, b: str) -> None:
        self.ip("link", "add", a, "type", "veth", "peer", "name", b)

    def link(self, name: str) -> str:
        return self.ip("-d", "link", "show", "dev", name)

    def master_of(self, name: str) -> str | None:
        m = re.search(r"\bmaster (\S+)", self.link(name))
        return m.group(1) if m else None

    def mtu_of(self, name: str) -> int:
        m = re.search(r"\bmtu (\d+)", self.link(name))
        assert m is not None
        return int(m.group(1))


def netns_available() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "needs root (network namespaces, netlink writes)"
    if shutil.which("ip") is None:
        return False, "iproute2 `ip` not on PATH"
    return _importable("pyroute2")


@pytest.fixture
def netns() -> Iterator[Netns]:
    ok, why = netns_available()
    require_real("a network namespace", ok, why)
    ns = Netns(f"dpft-{os.getpid()}-{next(_netns_counter)}")
    try:
        _run("ip", "netns", "add", ns.name)
    except (RuntimeError, OSError) as e:
        require_real("a network namespace", False, str(e))
    try:
        ns.ip("link", "set", "lo", "up")
        yield ns
    finally:
        with contextlib.suppress(RuntimeError, OSError):
            _run("ip", "netns", "del", ns.name)


# --- a fake sysfs ----------------------------------------------------------------------------------------
@dataclass
class FakeSysfs:
    """A temp dir laid out like /sys for PCI functions: `bus/pci/devices/<addr>/{vendor,device,sriov_numvfs,
    sriov_totalvfs,net/<netdev>/,virtfn0/net/<vf netdev>/,infiniband/<ibdev>/board_id}`."""

    root: Path

    @property
    def devices(self) -> Path:
        return self.root / "bus" / "pci" / "devices"

    def function(self, address: str, *, vendor: str = "0x15b3", device: str = "0xa2dc", netdevs: tuple[str, ...] = (),
                 num_vfs: int | None = None, total_vfs: int = 16, vf0: str | None = None,
                 board_id: str | None = None) -> Path:
        d = self.devices / address
        d.mkdir(parents=True, exist_ok=True)
        (d / "vendor").write_text(f"{vendor}\n")
        (d / "device").write_text(f"{device}\n")
        for name in netdevs:
            (d / "net" / name).mkdir(parents=True, exist_ok=True)
        if num_vfs is not None:
            (d / "sriov_numvfs").write_text(f"{num_vfs}\n")
            (d / "sriov_totalvfs").write_text(f"{total_vfs}\n")
        if vf0 is not None:
            (d / "virtfn0" / "net" / vf0).mkdir(parents=True, exist_ok=True)
        if board_id is not None:
            (d / "infiniband" / "mlx5_0").mkdir(parents=True, exist_ok=True)
            (d / "infiniband" / "mlx5_0" / "board_id").write_text(f"{board_id}\n")
        return d


@pytest.fixture
def fake_sysfs(tmp_path: Path) -> FakeSysfs:
    root = tmp_path / "sys"
    (root / "bus" / "pci" / "devices").mkdir(parents=True)
    return FakeSysfs(root)


# --- a local HTTP server ---------------------------------------------------------------------------------
@dataclass
class Served:
    path: str
    range: str | None
    if_range: str | None
    status: int


@dataclass
class BfbHttpServer:
    """127.0.0.1, stdlib http.server. `files[path] = bytes`; Range and If-Range supported; unknown paths 404.
    `cut[path] = n`: the next GET of `path` announces the full length, sends n bytes and closes (once)."""

    base: str
    files: dict[str, bytes] = field(default_factory=dict)
    cut: dict[str, int] = field(default_factory=dict)
    etag: str = '"v1"'
    served: list[Served] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


def _handler(state: BfbHttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:
            path = self.path
            body = state.files.get(path)
            rng, if_range = self.headers.get("Range"), self.headers.get("If-Range")
            if body is None:
                state.served.append(Served(path, rng, if_range, 404))
                self.send_error(404, "Not Found")
                return
            start = 0
            m = re.fullmatch(r"bytes=(\d+)-", rng or "")
            if m and (if_range is None or if_range == state.etag):
                start = int(m.group(1))
                if start >= len(body):
                    state.served.append(Served(path, rng, if_range, 416))
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
            status = 206 if start else 200
            state.served.append(Served(path, rng, if_range, status))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body) - start))
            self.send_header("ETag", state.etag)
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.end_headers()
            limit = state.cut.pop(path, None)
            if limit is not None:
                self.wfile.write(body[start:start + limit])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body[start:])

    return Handler


@pytest.fixture
def http_server() -> Iterator[BfbHttpServer]:
    state = BfbHttpServer(base="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def refused_url() -> Callable[[str], str]:
    """A URL on a 127.0.0.1 port nothing listens on (bound, then closed)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return lambda path: f"http://127.0.0.1:{port}{path}"
