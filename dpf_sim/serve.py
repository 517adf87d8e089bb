"""`dpf serve`: run a scenario's twin at a multiple of real time and serve every one of its clusters over
the Kubernetes API, so kubectl, the kubernetes client and the operator attach to it as to a real cluster.

Threads: the main thread paces the SimPy clock (a slice of simulated time per tick, holding the twin's
lock), the API server runs its event loop on another thread and takes the same lock for every store call.
So an HTTP client always sees the twin between two simulation steps, and a write it makes is seen by the
controllers at the simulated time it was made.

Kubeconfigs: the host's goes to `--kubeconfig-out`; each DPU cluster's, once Kamaji has created it, next to
it as `<stem>-<namespace>-<name><suffix>`. While serving, the kubeconfig Secrets the twin writes for DPU
clusters name the served URL too (`ClusterWorld.kubeconfig_hook`), with a `twin-cluster` extension that
lets the twin's own cluster clients find the store behind that URL.

DMS (`--dms-dir DIR`): every BlueField's DMS model is served over real gRPC with mTLS on one loopback port
(dpf_sim.dmsgrpc), its RPCs run as SimPy processes through the SAME pacer that advances the twin, so there
is one clock. DIR gets `address` (host:port), `ca.crt` (the CA of the server certificate) and a client
certificate the server trusts (`tls.crt`, `tls.key`): `dpf operator --dms-tls-dir DIR --dms-address
$(cat DIR/address)`.

`pods/exec` in a DMS pod answers the commands DPF runs there from the host models: `cat /proc/uptime`
(the host's uptime divided by `speed`: the operator compares it with wall-clock time since DMSRunning),
`bf-slr.sh <pci> <cmd> arm|host` (the host's warm reboot) and `ipmitool chassis power cycle|reset`.

`/debug/twin/bluefields` and `/debug/twin/hosts` (JSON, behind the API's token) show per-DPU install and
flash counts and per-host reboots, so a test can tell whether an install ran twice.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import simpy
import yaml

from dpf_core.api.external import Namespace, Pod
from dpf_core.errors import ApiError
from dpf_core.ports.ops import OpError, PowerCycle, WarmReboot
from dpf_core.store.memory import DEFAULT_HISTORY, MemoryStore

from .apiserver import (
    HOST,
    ApiServer,
    ExecResult,
    ServerConfig,
    ServerThread,
    ServingCert,
    TokenAuthority,
    cluster_path,
    crds,
    self_signed,
)
from .cluster import TWIN_CLUSTER_EXTENSION
from .runner import build_config
from .scenario import LoadedScenario, load_scenario
from .tasks import Executor
from .twin import Twin, resolve_kind

log = logging.getLogger("dpf_sim.serve")

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# DPF's Helm chart is installed with --create-namespace into dpf-operator-system: on a real host cluster it is
# there before any DPF object is, and kubectl reports a missing object in it, not a missing namespace.
OPERATOR_NAMESPACES = ("dpf-operator-system",)
TICK = 0.05  # wall seconds between pacer wake-ups when nothing is due
SLICE = 0.05  # wall seconds the pacer may hold the lock before letting HTTP requests in


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 6443
    speed: float = 1.0
    controllers: bool = True
    tls: bool = True
    kubeconfig_out: Path = Path("dpf-twin.kubeconfig")
    until: float | None = None  # simulated seconds; None = until interrupted
    timeline: bool = True
    dms_dir: Path | None = None  # serve the DMS models over gRPC and describe the endpoint here
    # NamespaceLifecycle's 404 for content (from API clients) in a namespace that does not exist, as in a real
    # cluster; `dpf serve --allow-missing-namespaces` turns it off for manifests written for a lenient twin.
    require_namespace: bool = True


class Pacer:
    """Keeps the twin's simulated clock at `speed` x the wall time elapsed since `start()`."""

    def __init__(self, env: simpy.Environment, lock: threading.RLock, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.env = env
        self.lock = lock
        self.speed = speed
        self._poke = threading.Event()
        self._base_wall = time.monotonic()
        self._base_sim = float(env.now)
        self.errors: list[BaseException] = []

    def run_process(self, body: Callable[[], Generator[Any, Any, Any]], is_active: Callable[[], bool],
                    timeout: float | None) -> Any:
        """Run `body` as a SimPy process and wait for it on the calling thread (a gRPC or API worker): the
        DMS server's pacer interface, so this loop stays the only thing advancing the environment."""
        from .dmsgrpc import run_sim_process

        return run_sim_process(self.env, self.lock, body, is_active, timeout, wake=self.poke)

    def poke(self) -> None:
        """Something happened outside the simulation (an API write): run what it made due without waiting."""
        self._poke.set()

    def target(self) -> float:
        return self._base_sim + (time.monotonic() - self._base_wall) * self.speed

    def advance(self, target: float) -> None:
        """Run every event due up to `target` (or as many as fit in one slice), then move the clock there."""
        env = self.env
        deadline = time.monotonic() + SLICE
        with self.lock:
            while env.peek() <= target:
                try:
                    env.step()
                except simpy.core.EmptySchedule:
                    break
                except Exception as e:  # a model or controller bug: keep the server up, say what broke
                    log.exception("the twin raised at t=%.3f", env.now)
                    self.errors.append(e)
                if time.monotonic() > deadline:
                    return  # behind real time: let waiting requests in, catch up on the next tick
            if target > env.now:
                env.run(until=target)

    def run(self, stop: threading.Event, until: float | None = None) -> None:
        self._base_wall = time.monotonic()
        self._base_sim = float(self.env.now)
        while not stop.is_set():
            target = self.target()
            if until is not None and target >= until:
                self.advance(until)
                return
            self.advance(target)
            nxt = self.env.peek()
            wait = TICK if math.isinf(nxt) else min(TICK, max(0.0, (nxt - self.target()) / self.speed))
            self._poke.wait(wait)
            self._poke.clear()


def kubeconfig(name: str, server: str, token: str, ca: ServingCert | None, extra_clusters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    cluster: dict[str, Any] = {"server": server}
    if ca is not None:
        cluster["certificate-authority-data"] = ca.ca_data
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [*(extra_clusters or []), {"name": name, "cluster": cluster}],
        "users": [{"name": f"{name}-admin", "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin", "namespace": "default"}}],
        "current-context": name,
    }


def context_name(cluster: str) -> str:
    return "dpf-twin" if cluster == HOST else "dpf-twin-" + cluster.replace("/", "-")


class ServedTwin:
    """A scenario's twin plus its API server, tokens, kubeconfigs and pacer."""

    def __init__(self, loaded: LoadedScenario, options: ServeOptions, out: TextIO | None = None) -> None:
        self.loaded = loaded
        self.options = options
        self.out = out if out is not None else sys.stdout
        self.lock = threading.RLock()
        self.authority = TokenAuthority()
        self.cert: ServingCert | None = self_signed((options.host, "127.0.0.1", "localhost")) if options.tls else None
        self.thread: ServerThread | None = None
        self.kubeconfigs: dict[str, Path] = {}
        # Served clients resume watches from resourceVersions: the apiserver-sized watch history.
        self.twin = Twin(dataclasses.replace(build_config(loaded), watch_history=DEFAULT_HISTORY))
        self.twin.world.kubeconfig_hook = self._secret_kubeconfig
        services = getattr(self.twin, "services", None)
        if services is not None:
            # The twin's ArgoCD finds a destination cluster by its Argo cluster Secret's server; served, that is
            # our URL of the cluster, so every served URL names its store too.
            services.argocd.stores = self._stores_by_url
        self._stopped: set[int] = set()
        self._stop_controllers()
        self.pacer = Pacer(self.twin.env, self.lock, options.speed)
        self.server = ApiServer(self.twin.stores, lock=self.lock, now=self.twin.clock.now, authority=self.authority,
                                config=ServerConfig(require_namespace=options.require_namespace), poke=self.pacer.poke, pod_exec=self._pod_exec,
                                debug={"bluefields": self._debug_bluefields, "hosts": self._debug_hosts})
        self.dms: Any = None  # dpf_sim.dmsgrpc.DmsGrpcServer when --dms-dir
        self._exec = Executor()
        self.twin.hosts.register(self._exec)
        self.twin.cluster_created.append(self._cluster_created)
        for cluster, store in self.twin.stores().items():
            self._system_namespaces(store, OPERATOR_NAMESPACES if cluster == HOST else ())
        if options.timeline and loaded.scenario.timeline:
            self.twin.env.process(self._timeline())

    # ---- URLs and kubeconfigs ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        scheme = "https" if self.cert is not None else "http"
        port = self.thread.port if self.thread is not None else self.options.port
        return f"{scheme}://{self.options.host}:{port}"

    def server_url(self, cluster: str) -> str:
        return self.url + cluster_path(cluster)

    def _stores_by_url(self) -> dict[str, MemoryStore]:
        stores = self.twin.stores()
        return {**stores, **{self.server_url(name): store for name, store in stores.items()}}

    def kubeconfig(self, cluster: str) -> dict[str, Any]:
        return kubeconfig(context_name(cluster), self.server_url(cluster), self.authority.issue(cluster), self.cert)

    def _secret_kubeconfig(self, cluster: str) -> bytes:
        doc = kubeconfig(context_name(cluster), self.server_url(cluster), self.authority.issue(cluster), self.cert)
        # kubectl and the kubernetes clients ignore cluster extensions; the twin's cluster clients read it.
        doc["clusters"][0]["cluster"]["extensions"] = [{"name": TWIN_CLUSTER_EXTENSION, "extension": {"cluster": cluster}}]
        return yaml.safe_dump(doc, sort_keys=False).encode()

    def kubeconfig_path(self, cluster: str) -> Path:
        base = self.options.kubeconfig_out
        if cluster == HOST:
            return base
        return base.with_name(f"{base.stem}-{cluster.replace('/', '-')}{base.suffix}")

    def _write_kubeconfig(self, cluster: str) -> Path:
        path = self.kubeconfig_path(cluster)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(yaml.safe_dump(self.kubeconfig(cluster), sort_keys=False))
        tmp.chmod(0o600)
        tmp.replace(path)  # readers never see half a file
        self.kubeconfigs[cluster] = path
        return path

    def _stop_controllers(self) -> None:
        """Without controllers the operator under test hosts them; the twin keeps only the world around DPF.
        Attachments add managers as DPU clusters appear (their per-cluster controllers), so this runs again then."""
        if self.options.controllers:
            return
        for manager in list(self.twin.driver.managers):
            if id(manager) not in self._stopped:
                self._stopped.add(id(manager))
                self.twin.driver.stop(manager)

    def _cluster_created(self, name: str, store: MemoryStore) -> None:
        self._stop_controllers()
        self._system_namespaces(store)
        if self.thread is not None:
            path = self._write_kubeconfig(name)
            self._say(f"DPU cluster {name} served at {self.server_url(name)} (kubeconfig {path})")

    @staticmethod
    def _system_namespaces(store: MemoryStore, extra: tuple[str, ...] = ()) -> None:
        for ns in SYSTEM_NAMESPACES + extra:
            if store.try_get(Namespace, ns) is None:
                store.create(Namespace.model_validate({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
                with contextlib.suppress(ApiError):
                    store.patch(Namespace, ns, None, {"status": {"phase": "Active"}}, subresource="status")

    def _say(self, line: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.out.write(line + "\n")
            self.out.flush()

    # ---- pods/exec in DMS pods ----------------------------------------------------------------------------

    def _pod_exec(self, cluster: str, namespace: str, pod: str, _container: str, argv: list[str]) -> ExecResult:
        """A command in a pod, answered by the host models (runs on an API worker thread, lock not held)."""
        if cluster != HOST or not pod.endswith("-dms"):
            return _exec_failed(126, f"the twin runs no {argv[0]!r} in pod {namespace}/{pod}")
        with self.lock:
            host = self._dms_host(namespace, pod)
            if host is None:
                return _exec_failed(1, f"pod {namespace}/{pod} belongs to no DPU of the fleet")
            if not self.twin.hosts.is_up(host):
                # The kubelet of a host that is down answers nothing; the API server reports the error.
                return _exec_failed(1, f"error dialing backend: dial tcp {host}:10250: connect: no route to host")
        op = _host_op(host, argv)
        if isinstance(op, ExecResult):
            return op
        if op is None:
            with self.lock:
                uptime = self.twin.hosts.uptime(host)
            if uptime is None:
                return _exec_failed(1, f"host {host} is down")
            wall = uptime / self.options.speed
            return ExecResult(0, stdout=f"{wall:.2f} {wall * 2:.2f}\n")
        try:
            self.pacer.run_process(lambda: self._exec(op), lambda: True, EXEC_TIMEOUT)
        except OpError as e:
            return _exec_failed(1, f"{' '.join(argv)}: {e}")
        return ExecResult(0)

    def _dms_host(self, namespace: str, pod: str) -> str | None:
        obj = self.twin.host.try_get(Pod, pod, namespace)
        if obj is None:
            return None
        dpu = next((r.name for r in obj.metadata.owner_references if r.kind == "DPU"), pod.removesuffix("-dms"))
        # The BlueField at the DPU's node and PCI label, whatever the DPU object is called (`obj-dpu-dms`).
        bf = self.twin.bluefields.dpus.get(self.twin.dpu_names.bluefield_of(dpu))
        return bf.host if bf is not None else None

    # ---- debug probes ----------------------------------------------------------------------------------------

    def _debug_bluefields(self) -> dict[str, Any]:
        return {name: {"installs": bf.installs, "flashesStarted": bf.flashes_started, "maxFlashing": bf.max_flashing,
                       "installedVersion": bf.installed_version, "state": str(bf.state), "boots": bf.boots,
                       "host": bf.host, "history": [[round(t, 3), what] for t, what in bf.history[-20:]]}
                for name, bf in sorted(self.twin.bluefields.dpus.items())}

    def _debug_hosts(self) -> dict[str, Any]:
        return {name: {"up": h.up, "reboots": h.reboots, "warmReboots": h.warm_reboots, "powerCycles": h.power_cycles}
                for name, h in sorted(self.twin.hosts.hosts.items())}

    # ---- the DMS endpoint ------------------------------------------------------------------------------------

    def _start_dms(self, directory: Path) -> None:
        try:
            from .dmsgrpc import DmsGrpcServer, issue_dms_pki
        except ImportError as e:
            raise ValueError(f"--dms-dir needs grpc and cryptography ({e}); pip install -e '.[hw]'") from None
        pki = issue_dms_pki(self.options.host)
        self.dms = DmsGrpcServer(self.twin.bluefields, pki.server_tls(), host=self.options.host, pacer=self.pacer).start()
        directory.mkdir(parents=True, exist_ok=True)
        # The address goes last: its presence says the rest is complete.
        for name, data, mode in (("ca.crt", pki.ca_cert, 0o644), ("tls.crt", pki.client_cert, 0o644),
                                 ("tls.key", pki.client_key, 0o600), ("address", f"{self.dms.address}\n".encode(), 0o644)):
            tmp = directory / f".{name}.tmp"
            tmp.write_bytes(data)
            tmp.chmod(mode)
            tmp.replace(directory / name)

    # ---- the scenario timeline -------------------------------------------------------------------------------

    def _timeline(self) -> Generator[Any, Any, None]:
        steps = self.loaded.scenario.timeline
        env = self.twin.env
        for i in sorted(range(len(steps)), key=lambda k: (steps[k].at, k)):
            step = steps[i]
            if step.at > env.now:
                yield env.timeout(step.at - env.now)
            try:
                if step.apply is not None:
                    # One document at a time, as `dpf run` and kubectl do: a refused one names its file:line and
                    # the rest are still applied.
                    for k, doc in enumerate(self.loaded.manifests.get(i, [])):
                        try:
                            self.twin.apply([doc], store=step.store)
                        except ApiError as e:
                            origin = self.loaded.manifest_origin(i, k)
                            self._say(f"timeline {self.loaded.step_label(i)} failed: "
                                      f"{origin + ': ' if origin else ''}{e.message}")
                elif step.patch is not None:
                    p = step.patch
                    self.twin.stores()[p.store].patch(resolve_kind(p.kind), p.name, p.namespace, p.patch, p.type, p.subresource)
                elif step.delete is not None:
                    d = step.delete
                    self.twin.stores()[d.store].delete(resolve_kind(d.kind), d.name, d.namespace)
                elif step.power_cycle is not None:
                    self.twin.power_cycle(step.power_cycle.host)
                elif step.fault is not None:
                    self.twin.inject(step.fault)
            except (ApiError, LookupError, ValueError, TypeError, NotImplementedError) as e:
                self._say(f"timeline {self.loaded.step_label(i)} failed: {getattr(e, 'message', e)}")

    # ---- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> str:
        ctx = self.cert.server_context() if self.cert is not None else None
        self.thread = ServerThread(self.server, self.options.host, self.options.port, ctx)
        self.thread.start()
        with self.lock:
            clusters = list(self.twin.stores())
        for name in clusters:
            self._write_kubeconfig(name)
        if self.options.dms_dir is not None:
            self._start_dms(self.options.dms_dir)
        return self.url

    def run(self, stop: threading.Event) -> None:
        self.pacer.run(stop, self.options.until)

    def stop(self) -> None:
        if self.dms is not None:
            self.dms.stop(0)
        if self.thread is not None:
            self.thread.stop()


def serve(scenario: Path, options: ServeOptions, out: TextIO | None = None) -> int:
    """The body of `dpf serve`: blocks until SIGINT/SIGTERM (or `options.until`); returns the exit code."""
    stream = out if out is not None else sys.stdout
    loaded = load_scenario(scenario)
    served = ServedTwin(loaded, options, stream)
    with served.lock:
        crds.install(served.twin.host)  # here, not in ServedTwin: in-process users keep the core's registry as is
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        url = served.start()
        fleet = len(served.twin.fleet.hosts)
        served._say(f"serving twin {loaded.name} ({fleet} hosts) at {url}, x{options.speed:g} real time"
                    + ("" if options.controllers else ", controllers off"))
        served._say(f"kubeconfig: {served.kubeconfig_path(HOST)}")
        if served.dms is not None:
            served._say(f"DMS (gRPC, mTLS) at {served.dms.address}; client TLS in {options.dms_dir}")
        served.run(stop)
    finally:
        served.stop()
        for s, h in previous.items():
            signal.signal(s, h)
    return 1 if served.pacer.errors else 0


EXEC_TIMEOUT = 600.0  # wall seconds a reboot command may take before the exec fails


def _exec_failed(code: int, message: str) -> ExecResult:
    return ExecResult(code, stderr=message + "\n", message=message)


def _host_op(host: str, argv: list[str]) -> WarmReboot | PowerCycle | ExecResult | None:
    """The host op a DMS-pod command is (None = `cat /proc/uptime`), or the failed ExecResult."""
    if argv == ["cat", "/proc/uptime"]:
        return None
    if argv and argv[0].rsplit("/", 1)[-1] == "bf-slr.sh":
        if len(argv) != 4 or argv[3] not in ("arm", "host"):
            return _exec_failed(2, "usage: bf-slr.sh <pci> <cycle|reset|skip> <arm|host>")
        if argv[3] == "arm":
            # The model's warm reboot is ARM reset + wait for System Off + host reboot in one op; the
            # `host` call runs it, so the host does not go down between DPF's two execs.
            return ExecResult(0)
        return WarmReboot(node=host, pci_address=argv[1], command=argv[2])
    if argv[:3] == ["ipmitool", "chassis", "power"] and len(argv) == 4:
        return PowerCycle(node=host, command=argv[3])
    return _exec_failed(127, f"{argv[0] if argv else ''}: command not found")


def secret_server(secret_data: dict[str, str]) -> str | None:
    """The served URL in a DPU-cluster kubeconfig Secret's `admin.conf` (its current context's server)."""
    try:
        doc = yaml.safe_load(base64.b64decode(secret_data["admin.conf"]))
        current = doc["current-context"]
        ctx = next(c["context"] for c in doc["contexts"] if c["name"] == current)
        return str(next(c["cluster"]["server"] for c in doc["clusters"] if c["name"] == ctx["cluster"]))
    except (KeyError, StopIteration, TypeError, ValueError, yaml.YAMLError):
        return None
