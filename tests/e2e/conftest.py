"""Fixtures for the end-to-end suites: a `dpf serve` process, kubectl, the kubernetes client.

Real-component rule (as tests/hw): a test needing something this machine lacks (kubectl, the kubernetes
package) SKIPS with the reason, and FAILS under DPF_REQUIRE_REAL=1, so CI can never pass by skipping.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from real_rule import require_real

KUBECTL = Path("/usr/bin/kubectl")
REPO = Path(__file__).resolve().parents[2]




def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    """A running `dpf serve` process."""

    proc: subprocess.Popen[str]
    kubeconfig: Path
    home: Path
    log: Path

    def kubeconfig_of(self, cluster: str) -> Path:
        return self.kubeconfig.with_name(f"{self.kubeconfig.stem}-{cluster.replace('/', '-')}{self.kubeconfig.suffix}")

    def kubectl(self, *args: str, kubeconfig: Path | None = None, check: bool = True, timeout: float = 60.0,
                stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "HOME": str(self.home), "KUBECONFIG": str(kubeconfig or self.kubeconfig)}
        done = subprocess.run([str(KUBECTL), *args], capture_output=True, text=True, env=env, timeout=timeout, input=stdin,
                              check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {done.returncode}:\n{done.stderr}{done.stdout}\n"
                                 f"server log tail:\n{self.log_tail()}")
        return done

    def kubectl_popen(self, *args: str) -> subprocess.Popen[str]:
        env = {**os.environ, "HOME": str(self.home), "KUBECONFIG": str(self.kubeconfig)}
        return subprocess.Popen([str(KUBECTL), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def watch(self, *args: str) -> Watch:
        """`kubectl <args>` (a -w command) whose output lines are collected as they come."""
        return Watch(self.kubectl_popen(*args))

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text().splitlines()[-n:])
        except OSError:
            return ""


class Watch:
    """A running `kubectl get -w`. Tests wait for a row of the initial list before changing anything: until then
    kubectl may not be watching yet, and a change made earlier would show up as ADDED instead of MODIFIED."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, what: str, row: Callable[[list[str]], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(row(line.split()) for line in list(self.lines)):
            if time.monotonic() > deadline or not self._reader.is_alive():
                stderr = self.proc.stderr.read() if self.proc.poll() is not None and self.proc.stderr else ""
                raise AssertionError(f"kubectl watch: no {what} within {timeout:.0f}s; rows {self.lines} {stderr}")
            time.sleep(0.05)

    def stop(self) -> list[str]:
        self.proc.terminate()
        self.proc.wait(10)
        self._reader.join(10)
        return list(self.lines)


def start_serve(tmp: Path, scenario: Path, *extra: str, speed: float = 300.0) -> Served:
    port = free_port()
    kubeconfig = tmp / "twin.kubeconfig"
    log = tmp / "serve.log"
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    out = log.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dpf_cli.main", "serve", str(scenario), "--port", str(port), "--kubeconfig-out", str(kubeconfig),
         "--speed", str(speed), *extra],
        stdout=out, stderr=subprocess.STDOUT, text=True, cwd=REPO,
    )
    served = Served(proc, kubeconfig, home, log)
    deadline = time.monotonic() + 30
    while not kubeconfig.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_serve(served)
            raise RuntimeError(f"dpf serve did not come up (exit {proc.returncode}):\n{served.log_tail()}")
        time.sleep(0.05)
    return served


def stop_serve(served: Served) -> None:
    if served.proc.poll() is None:
        served.proc.send_signal(signal.SIGTERM)
        try:
            served.proc.wait(10)
        except subprocess.TimeoutExpired:
            served.proc.kill()
            served.proc.wait(5)


@pytest.fixture
def kubectl_available() -> None:
    require_real("kubectl", KUBECTL.exists() and os.access(KUBECTL, os.X_OK), f"{KUBECTL} is missing")


@pytest.fixture
def kubernetes_client_available() -> None:
    try:
        import kubernetes  # noqa: F401
    except ImportError as e:
        require_real("the kubernetes python client", False, f"{e}; pip install -e '.[hw]'")


@pytest.fixture(scope="module")
def served_twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`dpf serve` of a two-host fleet, controllers on, nothing applied yet, 300x real time."""
    require_real("kubectl", KUBECTL.exists() and shutil.which(str(KUBECTL)) is not None, f"{KUBECTL} is missing")
    tmp = tmp_path_factory.mktemp("serve")
    scenario = tmp / "fleet.yaml"
    scenario.write_text("name: e2e-fleet\nseed: 3\nfleet:\n  racks: 1\n  hosts_per_rack: 2\n")
    served = start_serve(tmp, scenario)
    try:
        yield served
    finally:
        stop_serve(served)
