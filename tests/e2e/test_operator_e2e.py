"""End to end: the production operator provisions the twin's fleet over the wire.

`dpf serve --no-controllers` runs only the world (hosts, BlueFields, kubelet, Kamaji, the DMS models served
over real gRPC with mTLS); `dpf operator` runs as a separate process against its kubeconfig with the real
adapters: the kube store client, kopf watches, BFB download over HTTP from a local server, DMS over gRPC.
The test applies the real DPF manifests of samples/ with kubectl, waits for every DPU to be Ready (and
for a DPUService to be Ready when this build has the DPUService controllers), checks the operator's
metrics and liveness endpoints, then deletes everything and sees finalizers run and objects disappear.

What it needs from `dpf serve` (see docs/operations.md): `--dms-dir DIR`, where the served DMS endpoint is
described (`address` = host:port, `ca.crt` = CA of the server certificate, `tls.crt`/`tls.key` = a client
certificate the server trusts), and `pods/exec` of `cat /proc/uptime` / `bf-slr.sh` / `ipmitool` in DMS
pods answered by the host models.

Real-component rule: kubectl, the kubernetes client, kopf and grpc are required; a missing one skips with
the reason, and fails under DPF_REQUIRE_REAL=1.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from real_rule import require_real

KUBECTL = Path("/usr/bin/kubectl")
REPO = Path(__file__).resolve().parents[2]
NS = "dpf-operator-system"
HOSTS = 2
SPEED = 50.0
BFB_URL_IN_SAMPLES = "http://bfb-server.dpf.example/bf-bundle-2.9.1-19_24.11_ubuntu-22.04_prod.bfb"

pytestmark = [pytest.mark.real, pytest.mark.slow]


def _importable(module: str) -> tuple[bool, str]:
    try:
        __import__(module)
    except ImportError as e:
        return False, f"python package {module!r} missing ({e}); pip install -e '.[hw]'"
    return True, ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(what: str, check: Callable[[], Any], timeout: float, describe: Callable[[], str] = lambda: "",
               every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{describe()}")
        time.sleep(every)


@dataclass
class Proc:
    proc: subprocess.Popen[str]
    log: Path

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text().splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start(args: list[str], log: Path, env: dict[str, str] | None = None) -> Proc:
    out = log.open("w")
    proc = subprocess.Popen([sys.executable, "-m", "dpf_cli.main", *args], stdout=out, stderr=subprocess.STDOUT,
                            text=True, cwd=REPO, env={**os.environ, **(env or {})})
    return Proc(proc, log)


@dataclass
class World:
    tmp: Path
    kubeconfig: Path
    serve: Proc
    operator: Proc
    bfb_dir: Path
    metrics_url: str
    liveness_url: str

    def kubectl(self, *args: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "HOME": str(self.tmp), "KUBECONFIG": str(self.kubeconfig)}
        done = subprocess.run([str(KUBECTL), *args], capture_output=True, text=True, env=env, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {done.returncode}:\n{done.stderr}{done.stdout}\n"
                                 f"{self.logs()}")
        return done

    def objects(self, resource: str) -> list[dict[str, Any]]:
        done = self.kubectl("get", resource, "-A", "-o", "json", check=False)
        if done.returncode != 0:
            return []
        items: list[dict[str, Any]] = json.loads(done.stdout).get("items", [])
        return items

    def logs(self) -> str:
        return f"--- operator log tail:\n{self.operator.tail()}\n--- serve log tail:\n{self.serve.tail(15)}"


def _serve_bfb(directory: Path) -> tuple[ThreadingHTTPServer, str]:
    image = directory / "bf-bundle.bfb"
    image.write_bytes(os.urandom(256 * 1024))
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(directory)))
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/bf-bundle.bfb"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def _dpuservice_controllers_built() -> bool:
    from dpf_core import system

    return any(hasattr(system, f) for f in ("dpuservice_controllers", "dpu_service_controllers"))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    require_real("kubectl", KUBECTL.exists() and os.access(KUBECTL, os.X_OK), f"{KUBECTL} is missing")
    for module in ("kubernetes", "kopf", "grpc"):
        require_real(module, *_importable(module))
    helptext = subprocess.run([sys.executable, "-m", "dpf_cli.main", "serve", "--help"], capture_output=True, text=True,
                              cwd=REPO, check=False, env={**os.environ, "COLUMNS": "200"}).stdout
    require_real("the twin's DMS over gRPC in `dpf serve`", "--dms-dir" in helptext,
                 "`dpf serve` has no --dms-dir to publish its DMS endpoint and client TLS material")

    tmp = tmp_path_factory.mktemp("operator-e2e")
    www = tmp / "www"
    www.mkdir()
    bfb_server, bfb_url = _serve_bfb(www)
    scenario = tmp / "fleet.yaml"
    scenario.write_text(fleet_scenario("operator-e2e", HOSTS))
    kubeconfig = tmp / "twin.kubeconfig"
    dms_dir = tmp / "dms"
    serve = start(["serve", str(scenario), "--no-controllers", "--port", str(free_port()), "--kubeconfig-out",
                   str(kubeconfig), "--speed", str(SPEED), "--dms-dir", str(dms_dir)], tmp / "serve.log")
    operator: Proc | None = None
    try:
        wait_until("dpf serve to write its kubeconfig and DMS endpoint",
                   lambda: serve.proc.poll() is None and kubeconfig.exists() and (dms_dir / "address").exists()
                   and (dms_dir / "tls.key").exists(), 30, lambda: serve.tail(), every=0.1)
        metrics_port, liveness_port = free_port(), free_port()
        bfb_dir = tmp / "bfb"
        operator = start(
            ["operator", "--kubeconfig", str(kubeconfig), "--controllers", "provisioning,servicechain,dpuservice",
             "--metrics-port", str(metrics_port), "--liveness", f"http://127.0.0.1:{liveness_port}/healthz",
             "--bfb-dir", str(bfb_dir), "--dms-tls-dir", str(dms_dir),
             "--dms-address", (dms_dir / "address").read_text().strip()],
            tmp / "operator.log",
            # DPF's CLOUD_INIT_TIMEOUT (90 s after the DPU rebooted); the twin's BlueField is ready at once.
            env={"CLOUD_INIT_TIMEOUT": "1"},
        )
        w = World(tmp, kubeconfig, serve, operator, bfb_dir, f"http://127.0.0.1:{metrics_port}/metrics",
                  f"http://127.0.0.1:{liveness_port}/healthz")
        wait_until("the operator's liveness endpoint", lambda: operator.proc.poll() is None and _get(w.liveness_url),
                   60, w.logs)
        manifests = tmp / "provisioning.yaml"
        manifests.write_text((REPO / "samples" / "provisioning.yaml").read_text().replace(BFB_URL_IN_SAMPLES, bfb_url))
        yield w
    finally:
        if operator is not None:
            operator.stop()
        serve.stop()
        bfb_server.shutdown()
        bfb_server.server_close()


def fleet_scenario(name: str, hosts: int) -> str:
    """The served world: a rack of `hosts`, and (for the DPUService part) ArgoCD, kubelets and the chart of the
    sample DPUService; the controllers of the `services` attachment are off with the rest (--no-controllers)."""
    return (f"name: {name}\nseed: 5\nfleet:\n  racks: 1\n  hosts_per_rack: {hosts}\nattachments: [services]\n"
            "models:\n  charts:\n    - repoURL: https://helm.ngc.nvidia.com/nvidia/doca\n      chart: doca-hbn\n"
            "      version: 1.0.1\n      workloads:\n        - {name: doca-hbn, image: 'nvcr.io/nvidia/doca/doca_hbn:2.4.1',"
            " resources: {cpu: 500m, memory: 1Gi}}\n")


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return str(r.read().decode())
    except OSError:
        return None


def _phases(w: World) -> dict[str, str]:
    return {d["metadata"]["name"]: d.get("status", {}).get("phase", "") for d in w.objects("dpus.provisioning.dpu.nvidia.com")}


def test_operator_provisions_the_fleet_then_cleans_up(world: World) -> None:
    w = world
    w.kubectl("apply", "-f", str(w.tmp / "provisioning.yaml"))

    # Every DPU of the fleet, created by the operator's DPUSet controller, walks all phases to Ready.
    wait_until(f"{HOSTS} DPUs to be Ready", lambda: len(p := _phases(w)) == HOSTS and set(p.values()) == {"Ready"},
               100, lambda: f"phases: {_phases(w)}\n{w.logs()}", every=1.0)
    w.kubectl("wait", "--for=condition=Ready", "dpu", "--all", "-n", NS, "--timeout=10s")
    bfbs = w.objects("bfbs.provisioning.dpu.nvidia.com")
    assert [b["status"]["phase"] for b in bfbs] == ["Ready"]
    assert (w.bfb_dir / f"{NS}-bf-bundle.bfb").exists(), "the BFB was downloaded over HTTP into the BFB directory"

    if _dpuservice_controllers_built():
        w.kubectl("apply", "-f", str(REPO / "samples" / "services.yaml"))
        w.kubectl("wait", "--for=condition=Ready", "dpuservice/doca-hbn", "-n", NS, "--timeout=60s", timeout=70)

    # The operator's own endpoints: reconciles counted per controller, the liveness probe reports them.
    metrics = _get(w.metrics_url) or ""
    assert 'controller_runtime_reconcile_total{controller="dpu",result=' in metrics
    assert 'workqueue_depth{name="dpu"}' in metrics
    probe = json.loads(_get(w.liveness_url) or "{}")
    assert probe["controllers"]["reconciles"] > 0

    # Delete in the order the webhooks demand; finalizers run in the operator and everything disappears.
    if _dpuservice_controllers_built():
        w.kubectl("delete", "-f", str(REPO / "samples" / "services.yaml"), "--wait=false")
    w.kubectl("delete", "dpuset", "--all", "-n", NS, "--wait=false")
    wait_until("DPUs to be deleted", lambda: not w.objects("dpus.provisioning.dpu.nvidia.com"), 60,
               lambda: f"phases: {_phases(w)}\n{w.logs()}")
    w.kubectl("delete", "-f", str(w.tmp / "provisioning.yaml"), "--ignore-not-found", "--wait=false")
    leftovers = ("bfbs.provisioning.dpu.nvidia.com,dpuclusters.provisioning.dpu.nvidia.com,"
                 "dpusets.provisioning.dpu.nvidia.com,dpuflavors.provisioning.dpu.nvidia.com")
    wait_until("every provisioning object to be gone", lambda: not w.objects(leftovers), 60,
               lambda: f"left: {[o['metadata']['name'] for o in w.objects(leftovers)]}\n{w.logs()}")
    pods = [p["metadata"]["name"] for p in w.objects("pods") if p["metadata"]["name"].endswith(("-dms", "-hostnetwork"))]
    assert pods == [], f"DMS/hostnetwork pods left behind: {pods}"
    assert not (w.bfb_dir / f"{NS}-bf-bundle.bfb").exists(), "the BFB controller removes the file on deletion"
    assert w.operator.proc.poll() is None, f"the operator died:\n{w.logs()}"
