"""Issue #9 at process level: `kill -9` the operator while DPUs are in OS Installing, start it again, and every
DPU still reaches Ready with exactly one flash of the BFB per DPU.

The same harness as test_operator_e2e.py (`dpf serve --no-controllers --dms-dir`, the operator as a separate
process with the real adapters). The kill comes once every DPU's DMS model has started flashing (the
`/debug/twin/bluefields` probe of `dpf serve` counts `flashesStarted`, completed `installs` and `boots` per
DPU); the restart only once every BlueField has booted the image the dead task activated (default 2-3 minute
boot, at SPEED x real time). That is the hard case: RebootStatus says "not active, success", exactly as
before any install. The DPU controller's install-started annotation tells it an install was under way, and
gNOI OS.Verify over the real gRPC client tells it the DPU runs `<bfb>;<dpu>.cfg`: it adopts that install
instead of installing and activating the BFB a second time. (A restart while the reboot still runs is
adopted through RebootStatus; the unit and twin crash tests cover it.)

Real-component rule: kubectl, the kubernetes client, kopf and grpc are required; a missing one skips with
the reason, and fails under DPF_REQUIRE_REAL=1.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def _harness() -> ModuleType:
    """test_operator_e2e.py's helpers, loaded under a private name (tests/e2e is no package)."""
    path = Path(__file__).with_name("test_operator_e2e.py")
    spec = importlib.util.spec_from_file_location("_dpf_operator_e2e_harness", path)
    assert spec is not None and spec.loader is not None
    module = sys.modules.get(spec.name)
    if module is None:
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
        spec.loader.exec_module(module)
    return module


h = _harness()
KUBECTL: Path = h.KUBECTL
REPO: Path = h.REPO
NS: str = h.NS
HOSTS = 3
SPEED = 20.0

pytestmark = [pytest.mark.real, pytest.mark.slow]


@dataclass
class CrashWorld:
    tmp: Path
    kubeconfig: Path
    serve: Any  # test_operator_e2e.Proc
    dms_dir: Path
    bfb_dir: Path
    operators: list[Any]

    @property
    def operator(self) -> Any:
        return self.operators[-1]

    def kubectl(self, *args: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "HOME": str(self.tmp), "KUBECONFIG": str(self.kubeconfig)}
        done = subprocess.run([str(KUBECTL), *args], capture_output=True, text=True, env=env, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {done.returncode}:\n{done.stderr}{done.stdout}\n"
                                 f"{self.logs()}")
        return done

    def phases(self) -> dict[str, str]:
        done = self.kubectl("get", "dpus.provisioning.dpu.nvidia.com", "-A", "-o", "json", check=False)
        if done.returncode != 0:
            return {}
        return {d["metadata"]["name"]: d.get("status", {}).get("phase", "") for d in json.loads(done.stdout)["items"]}

    def bluefields(self) -> dict[str, dict[str, Any]]:
        """Per-DPU install counts of the twin's BlueField models."""
        done = self.kubectl("get", "--raw", "/debug/twin/bluefields")
        out: dict[str, dict[str, Any]] = json.loads(done.stdout)
        return out

    def start_operator(self) -> Any:
        n = len(self.operators)
        proc = h.start(
            ["operator", "--kubeconfig", str(self.kubeconfig), "--controllers", "provisioning",
             "--metrics-port", "0", "--liveness", f"http://127.0.0.1:{h.free_port()}/healthz",
             "--bfb-dir", str(self.bfb_dir), "--dms-tls-dir", str(self.dms_dir),
             "--dms-address", (self.dms_dir / "address").read_text().strip()],
            self.tmp / f"operator-{n}.log",
            env={"CLOUD_INIT_TIMEOUT": "1"},
        )
        self.operators.append(proc)
        return proc

    def logs(self) -> str:
        parts = [f"--- operator-{i} log tail:\n{p.tail(15)}" for i, p in enumerate(self.operators)]
        return "\n".join([*parts, f"--- serve log tail:\n{self.serve.tail(10)}"])


@pytest.fixture(scope="module")
def crash_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrashWorld]:
    h.require_real("kubectl", KUBECTL.exists() and os.access(KUBECTL, os.X_OK), f"{KUBECTL} is missing")
    for module in ("kubernetes", "kopf", "grpc"):
        h.require_real(module, *h._importable(module))
    tmp = tmp_path_factory.mktemp("operator-crash")
    www = tmp / "www"
    www.mkdir()
    bfb_server, bfb_url = h._serve_bfb(www)
    scenario = tmp / "fleet.yaml"
    scenario.write_text(f"name: operator-crash\nseed: 7\nfleet:\n  racks: 1\n  hosts_per_rack: {HOSTS}\n")
    kubeconfig = tmp / "twin.kubeconfig"
    dms_dir = tmp / "dms"
    serve = h.start(["serve", str(scenario), "--no-controllers", "--port", str(h.free_port()), "--kubeconfig-out",
                     str(kubeconfig), "--speed", str(SPEED), "--dms-dir", str(dms_dir)], tmp / "serve.log")
    w = CrashWorld(tmp, kubeconfig, serve, dms_dir, tmp / "bfb", [])
    try:
        h.wait_until("dpf serve to write its kubeconfig and DMS endpoint",
                     lambda: serve.proc.poll() is None and kubeconfig.exists() and (dms_dir / "address").exists(),
                     30, lambda: serve.tail(), every=0.1)
        (tmp / "provisioning.yaml").write_text(
            (REPO / "samples" / "provisioning.yaml").read_text().replace(h.BFB_URL_IN_SAMPLES, bfb_url))
        yield w
    finally:
        for p in w.operators:
            p.stop()
        serve.stop()
        bfb_server.shutdown()
        bfb_server.server_close()


def test_operator_killed_mid_install_resumes_without_a_second_flash(crash_world: CrashWorld) -> None:
    w = crash_world
    first = w.start_operator()
    w.kubectl("apply", "-f", str(w.tmp / "provisioning.yaml"))

    # Every DPU is in OS Installing and its BlueField has started flashing what the install task activated.
    def mid_install() -> bool:
        phases = w.phases()
        if len(phases) != HOSTS or set(phases.values()) != {"OS Installing"}:
            return False
        return all(bf["flashesStarted"] >= 1 for bf in w.bluefields().values())

    h.wait_until("every DPU to be flashing in OS Installing", mid_install, 90,
                 lambda: f"phases: {w.phases()}\n{w.bluefields()}\n{w.logs()}", every=0.2)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    assert first.proc.returncode == -signal.SIGKILL
    assert {bf["flashesStarted"] for bf in w.bluefields().values()} == {1}

    # No operator while every BlueField finishes flashing and boots the activated install (boot 2-3 min
    # simulated, 6-9 s wall): the restarted controller can only tell it from "never activated" by OS.Verify.
    def booted() -> bool:
        return all(bf["state"] == "Running" and bf["boots"] >= 1 and bf["installs"] == 1
                   for bf in w.bluefields().values())

    h.wait_until("every BlueField to boot its new install while the operator is down", booted, 60,
                 lambda: f"{w.bluefields()}\n{w.logs()}", every=0.5)
    assert set(w.phases().values()) == {"OS Installing"}

    second = w.start_operator()
    h.wait_until(f"{HOSTS} DPUs to be Ready after the restart",
                 lambda: len(p := w.phases()) == HOSTS and set(p.values()) == {"Ready"}, 120,
                 lambda: f"phases: {w.phases()}\n{w.bluefields()}\n{w.logs()}", every=1.0)
    assert second.proc.poll() is None, f"the restarted operator died:\n{w.logs()}"

    # One flash per DPU: the restarted controller adopted the install OS.Verify reported running.
    counts = w.bluefields()
    assert {name: (bf["flashesStarted"], bf["installs"]) for name, bf in counts.items()} == {
        name: (1, 1) for name in counts
    }, f"an install ran twice after the restart: {counts}"
    assert all(bf["maxFlashing"] == 1 for bf in counts.values())
    # The restart is visible on the DPU: the install-started annotation was taken over (attempt 2).
    done = w.kubectl("get", "dpus.provisioning.dpu.nvidia.com", "-n", NS, "-o", "json")
    attempts = {d["metadata"]["name"]: json.loads(d["metadata"]["annotations"]["provisioning.dpu.nvidia.com/install-started"])
                for d in json.loads(done.stdout)["items"]}
    assert {a["attempt"] for a in attempts.values()} == {2}, attempts
