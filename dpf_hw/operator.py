"""The production operator: the core controllers on the wall clock, against a real Kubernetes API.

kopf is only the shell: it logs in, watches every kind the hosted controllers watch, serves the liveness
endpoint and stops cleanly on signals. Its event handlers do one thing: turn the raw watch event into a
core `WatchEvent` (decoded with our models, `old` from the last version seen) and hand it to
`Manager.dispatch`. From there on everything is the core runtime, exactly as in the twin: the same mappers
and predicates, the same rate-limited work queues, reconciles run by `ThreadedDriver` worker threads
(MaxConcurrentReconciles 1 per controller, as in DPF). No kopf handler ever reconciles, patches or adds a
finalizer, so kopf writes nothing to the objects.

One process talks to one API server, like each DPF binary: `--controllers provisioning,servicechain` (and
`dpuservice` when the core has it) against the host cluster; `dpucluster` against a DPU cluster (the
servicechainset controller, NVIPAM, the IPAM injector); `--node NAME` adds the SFC node agent of that DPU,
against its DPU cluster, on the local Open vSwitch.

The cluster managers are not part of the provisioning set: in DPF each is a Deployment of its own that the
dpf-operator creates or prunes from the DPFOperatorConfig. An operator running `provisioning` stands in for
that: it reads the singleton `dpf-operator-system/dpfoperatorconfig` at start and hosts `kamaji-cluster-manager`
unless disabled and `static-cluster-manager` only when configured (both while no config exists, as the twin),
each as its own Manager with its own workers; a later change of the config (not paused, not deleted) starts or
stops them without a restart, as the operator would create or prune the Deployments.

Ports of the host controllers: Tasks = `ThreadTasks` running the core task procedures with real op
handlers (DMS over gRPC with mTLS, BFB HTTP download into the BFB directory, host reboots exec'd in the DMS
pod); BfbStore = the BFB directory; Dms = a TCP dial; HostExec = `cat /proc/uptime` exec'd in the DMS pod;
ClusterClients = kube clients from the DPU clusters' kubeconfig Secrets.

Observability: structured JSON logs (one object per line), Prometheus text exposition on
`--metrics-port` (controller-runtime's metric names: reconcile totals by result, errors, a reconcile-time
histogram, work-queue depth; plus task and API-request counters), kopf's liveness endpoint.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from dpf_core.api import registry
from dpf_core.api.external import Pod, Secret
from dpf_core.api.meta import KubeObject
from dpf_core.api.operator import DPFOperatorConfig
from dpf_core.api.provisioning import DPU
from dpf_core.controllers.options import ProvisioningOptions
from dpf_core.errors import ApiError
from dpf_core.ports import Ports, TaskStatus
from dpf_core.ports.ops import DmsTarget, OpError, PowerCycle, WarmReboot
from dpf_core.runtime import Controller, EventRecorder, Manager, ProcessOutcome, Request, ThreadedDriver, WallClock
from dpf_core.store.protocol import EventType, WatchEvent

from .kube import KubeClient, KubeClusterClients, decode

log = logging.getLogger("dpf.operator")

OPERATOR_NAMESPACE = "dpf-operator-system"
DMS_CLIENT_SECRET = "dpf-provisioning-client-secret"
DEFAULT_LIVENESS = "http://0.0.0.0:8080/healthz"
DEFAULT_METRICS_PORT = 8081
DEFAULT_BFB_DIR = "/bfb"

# Which core composition each `--controllers` word selects (dpf_core.system function names). Sets whose
# function the core does not have yet are skipped with a message, not an error.
CONTROLLER_SETS: dict[str, tuple[str, ...]] = {
    "provisioning": ("provisioning_controllers",),
    "dpuservice": ("dpuservice_controllers", "dpu_service_controllers"),
    "servicechain": ("service_chain_host_controllers",),
    "dpucluster": ("dpu_cluster_controllers",),
}
HOST_SETS = frozenset({"provisioning", "dpuservice", "servicechain"})

# Task key prefix -> controller to wake when the task ends (DPF's 5 s poll would notice a little later).
TASK_OWNERS = {"download": "bfb", "install": "dpu", "reboot": "dpu", "powercycle": "dpu"}


# --- controller sets ---------------------------------------------------------------------------------


@dataclass
class Selection:
    controllers: list[Controller] = field(default_factory=list)
    sets: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    # The host composition's cluster managers, hosted per the DPFOperatorConfig (with `provisioning`).
    cluster_managers: bool = False


def select_controllers(names: Iterable[str], options: ProvisioningOptions | None = None) -> Selection:
    """The controllers of the named sets from dpf_core.system; unknown or not-yet-built sets are skipped."""
    from dpf_core import system

    out = Selection()
    for raw in names:
        name = raw.strip().lower()
        if not name or name in out.sets:
            continue
        functions = CONTROLLER_SETS.get(name)
        if functions is None:
            out.skipped.append(f"unknown controller set {name!r} (known: {', '.join(CONTROLLER_SETS)})")
            continue
        factory = next((getattr(system, f) for f in functions if hasattr(system, f)), None)
        if factory is None:
            out.skipped.append(f"controller set {name!r} is not available in this build "
                               f"(dpf_core.system has no {' / '.join(functions)}())")
            continue
        made = factory(options) if name == "provisioning" else factory()
        if name == "provisioning" and hasattr(system, "CLUSTER_MANAGERS"):
            out.cluster_managers = True
        out.controllers.extend(made)
        out.sets.append(name)
    return out


# --- watch shell: kopf events -> core WatchEvents ------------------------------------------------------


class EventFeed:
    """Turns raw watch events into core WatchEvents for `Manager.dispatch`, remembering the last version
    of each object so MODIFIED/DELETED events carry `old` (GenerationChanged and friends need it)."""

    def __init__(self, dispatch: Callable[[WatchEvent], None]) -> None:
        self.dispatch = dispatch
        self._last: dict[tuple[type[KubeObject], str, str], KubeObject] = {}
        self._lock = threading.Lock()
        self.events = 0
        self.undecodable = 0

    def feed(self, cls: type[KubeObject], raw_type: str | None, body: Mapping[str, Any]) -> WatchEvent | None:
        try:
            obj = decode(cls, body)
        except ApiError as e:
            self.undecodable += 1
            log.warning("dropping a %s watch event: %s", cls.KIND.kind, e)
            return None
        key = (cls, obj.metadata.namespace or "", obj.metadata.name or "")
        with self._lock:
            if raw_type == "DELETED":
                old = self._last.pop(key, None)
                ev_type: EventType = "DELETED"
            else:
                old = self._last.get(key)
                if old is not None and old.metadata.resource_version == obj.metadata.resource_version:
                    return None  # a relist of what we already delivered
                self._last[key] = obj
                # kopf reports the initial listing with type None; a watch restart relists as ADDED.
                ev_type = "ADDED" if old is None else "MODIFIED"
        ev = WatchEvent(ev_type, obj, old)
        self.events += 1
        self.dispatch(ev)
        return ev


# --- ports -------------------------------------------------------------------------------------------


ExecFn = Callable[[str, str, str, Sequence[str]], str]


def kube_exec(client: KubeClient, timeout: float = 60.0) -> ExecFn:
    """DPF's RemoteExec: run a command in a pod's (default) container, return stdout; non-zero exit raises."""

    def run(namespace: str, pod: str, container: str, command: Sequence[str]) -> str:
        from kubernetes import client as k8s
        from kubernetes.stream import stream

        # `stream` swaps the ApiClient's `request` for a websocket dialer while it runs: on the shared client,
        # every other thread's API call in that window would try to upgrade to a websocket. One per exec.
        api: Any = k8s.ApiClient(client.api.configuration)
        core = k8s.CoreV1Api(api)
        kwargs: dict[str, Any] = {"command": list(command), "stderr": True, "stdin": False, "stdout": True,
                                  "tty": False, "_preload_content": False}
        if container:
            kwargs["container"] = container
        try:
            resp = stream(core.connect_get_namespaced_pod_exec, pod, namespace, **kwargs)
        finally:
            api.close()
        out: list[str] = []
        err: list[str] = []
        deadline = time.monotonic() + timeout
        while resp.is_open() and time.monotonic() < deadline:
            resp.update(timeout=1)
            if resp.peek_stdout():
                out.append(resp.read_stdout())
            if resp.peek_stderr():
                err.append(resp.read_stderr())
        code = resp.returncode if not resp.is_open() else None
        resp.close()
        if code is None:
            raise OpError(f"exec {' '.join(command)} in {namespace}/{pod}: no answer within {timeout:.0f}s",
                          "DeadlineExceeded")
        if code != 0:
            raise OpError(f"exec {' '.join(command)} in {namespace}/{pod} exited {code}: {''.join(err).strip()}",
                          "ExecFailed")
        return "".join(out)

    return run


class DmsPodExec:
    """Commands DPF runs in a DPU's DMS pod `<dpu>-dms`: the host's uptime (the HostExec port) and the host
    reboots (the WarmReboot / PowerCycle ops of the reboot tasks)."""

    def __init__(self, client: KubeClient, exec_fn: ExecFn | None = None) -> None:
        self.client = client
        self.exec = exec_fn or kube_exec(client)

    def dms_pod(self, node: str) -> tuple[str, str]:
        """(namespace, pod) of the DMS pod serving host `node`: the pod of a DPU on that node."""
        for dpu in self.client.list(DPU):
            if dpu.spec.node_name != node:
                continue
            name = f"{dpu.name}-dms"
            if self.client.try_get(Pod, name, dpu.namespace) is not None:
                return dpu.namespace or "", name
        raise OpError(f"no DMS pod found for host {node}", "NotFound")

    # HostExec port
    def uptime(self, node: str) -> float | None:
        try:
            ns, pod = self.dms_pod(node)
            text = self.exec(ns, pod, "", ["cat", "/proc/uptime"])
        except (OpError, ApiError, OSError) as e:
            log.info("cannot read the uptime of host %s: %s", node, e)
            return None
        except Exception as e:  # the websocket layer raises its own types; a failed exec means "rebooting"
            log.info("cannot read the uptime of host %s: %s: %s", node, type(e).__name__, e)
            return None
        fields = text.split()
        if len(fields) != 2:
            log.info("uptime of host %s incorrect: %r", node, text)
            return None
        try:
            return float(fields[0])
        except ValueError:
            return None

    # ops
    def _run(self, node: str, command: Sequence[str]) -> str:
        ns, pod = self.dms_pod(node)
        try:
            return self.exec(ns, pod, "", command)
        except OpError:
            raise
        except Exception as e:
            raise OpError(f"exec {' '.join(command)} in {ns}/{pod}: {type(e).__name__}: {e}", "ExecFailed") from None

    def warm_reboot(self, op: WarmReboot) -> None:
        # DPF: shut the ARM down first, then reboot the host through the BlueField's system-level reset.
        self._run(op.node, ["bf-slr.sh", op.pci_address, op.command, "arm"])
        self._run(op.node, ["bf-slr.sh", op.pci_address, op.command, "host"])

    def power_cycle(self, op: PowerCycle) -> None:
        self._run(op.node, ["ipmitool", "chassis", "power", op.command])

    def register(self, handlers: Any) -> None:
        handlers.register(WarmReboot, self.warm_reboot)
        handlers.register(PowerCycle, self.power_cycle)


def _secret_bytes(secret: Secret) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for k, v in secret.data.items():
        try:
            out[k] = base64.b64decode(v)
        except ValueError:
            continue
    return out


class DmsTlsSource:
    """mTLS material per DPU. With `tls_dir` (files ca.crt, tls.crt, tls.key) every DPU uses it; otherwise
    DPF's trust: client Secret `dpf-provisioning-client-secret` in the DPU's namespace, root CA = `ca.crt`
    of the DPU's `<dpu>-server-secret`."""

    def __init__(self, client: KubeClient, tls_dir: str | Path | None = None) -> None:
        self.client = client
        self.tls_dir = Path(tls_dir) if tls_dir else None

    def __call__(self, target: DmsTarget) -> Any:
        from .dms import DmsTls

        if self.tls_dir is not None:
            d = self.tls_dir
            try:
                return DmsTls(root_ca=(d / "ca.crt").read_bytes(), client_key=(d / "tls.key").read_bytes(),
                              client_cert=(d / "tls.crt").read_bytes())
            except OSError as e:
                raise OpError(f"DMS TLS material in {d}: {e}", "TLSError") from None
        ns, _, name = target.dpu.partition("/")
        try:
            client_secret = self.client.try_get(Secret, DMS_CLIENT_SECRET, ns)
            server_secret = self.client.try_get(Secret, f"{name}-server-secret", ns)
        except ApiError as e:
            raise OpError(f"reading DMS TLS secrets of {target.dpu}: {e}", "Unavailable") from None
        if client_secret is None:
            raise OpError(f"Secret {ns}/{DMS_CLIENT_SECRET} not found", "TLSError")
        if server_secret is None:
            raise OpError(f"Secret {ns}/{name}-server-secret not found", "TLSError")
        return DmsTls.from_secrets(_secret_bytes(client_secret), _secret_bytes(server_secret))


# --- metrics -----------------------------------------------------------------------------------------


RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    """Prometheus text exposition (format 0.0.4) written by hand: counters from every finished pass, the
    rest read from `Controller.metrics()` at scrape time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._results: dict[tuple[str, str], int] = {}
        self._hist: dict[str, list[int]] = {}
        self._sum: dict[str, float] = {}
        self._count: dict[str, int] = {}
        self.controllers: list[Controller] = []
        self.tasks: Any = None
        self.clients: list[KubeClient] = []
        self.feed: EventFeed | None = None

    def observe(self, outcome: ProcessOutcome) -> None:
        if outcome.error is not None:
            result = "error"
        elif outcome.action == "requeue_after":
            result = "requeue_after"
        elif outcome.action == "rate_limited":
            result = "requeue"
        else:
            result = "success"
        with self._lock:
            key = (outcome.controller, result)
            self._results[key] = self._results.get(key, 0) + 1
            buckets = self._hist.setdefault(outcome.controller, [0] * len(RECONCILE_BUCKETS))
            for i, bound in enumerate(RECONCILE_BUCKETS):
                if outcome.duration <= bound:
                    buckets[i] += 1
            self._sum[outcome.controller] = self._sum.get(outcome.controller, 0.0) + outcome.duration
            self._count[outcome.controller] = self._count.get(outcome.controller, 0) + 1

    def render(self) -> str:
        lines: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")

        with self._lock:
            results = dict(self._results)
            hist = {k: list(v) for k, v in self._hist.items()}
            sums, counts = dict(self._sum), dict(self._count)
        family("controller_runtime_reconcile_total", "counter", "Total number of reconciliations per controller.")
        for (ctrl, result), n in sorted(results.items()):
            lines.append(f'controller_runtime_reconcile_total{{controller="{_label(ctrl)}",result="{result}"}} {n}')
        family("controller_runtime_reconcile_errors_total", "counter", "Total number of reconciliation errors per controller.")
        for c in self.controllers:
            m = c.metrics()
            lines.append(f'controller_runtime_reconcile_errors_total{{controller="{_label(c.name)}"}} {m["errors"]}')
        family("controller_runtime_reconcile_time_seconds", "histogram", "Length of time per reconciliation per controller.")
        for ctrl in sorted(hist):
            lab = _label(ctrl)
            for bound, n in zip(RECONCILE_BUCKETS, hist[ctrl], strict=True):
                lines.append(f'controller_runtime_reconcile_time_seconds_bucket{{controller="{lab}",le="{bound}"}} {n}')
            lines.append(f'controller_runtime_reconcile_time_seconds_bucket{{controller="{lab}",le="+Inf"}} {counts[ctrl]}')
            lines.append(f'controller_runtime_reconcile_time_seconds_sum{{controller="{lab}"}} {sums[ctrl]}')
            lines.append(f'controller_runtime_reconcile_time_seconds_count{{controller="{lab}"}} {counts[ctrl]}')
        gauges = (
            ("workqueue_depth", "queue_depth", "Current depth of the work queue (ready keys)."),
            ("workqueue_waiting", "queue_waiting", "Keys waiting for a delayed requeue."),
            ("controller_runtime_active_workers", "in_flight", "Reconciles in flight per controller."),
        )
        for metric, key, help_text in gauges:
            family(metric, "gauge", help_text)
            for c in self.controllers:
                label = "name" if metric.startswith("workqueue") else "controller"
                lines.append(f'{metric}{{{label}="{_label(c.name)}"}} {c.metrics()[key]}')
        family("workqueue_adds_total", "counter", "Total number of adds handled by the work queue.")
        for c in self.controllers:
            lines.append(f'workqueue_adds_total{{name="{_label(c.name)}"}} {c.metrics()["queue_adds"]}')
        family("workqueue_retries_total", "counter", "Total number of rate-limited retries.")
        for c in self.controllers:
            lines.append(f'workqueue_retries_total{{name="{_label(c.name)}"}} {c.metrics()["queue_retries"]}')
        if self.tasks is not None:
            family("dpf_tasks_running", "gauge", "Long operations (downloads, installs, reboots) running now.")
            lines.append(f"dpf_tasks_running {len(self.tasks.running())}")
            family("dpf_tasks_started_total", "counter", "Long operations started.")
            lines.append(f"dpf_tasks_started_total {self.tasks.started}")
        family("dpf_kube_requests_total", "counter", "Requests sent to the Kubernetes API.")
        for cl in self.clients:
            lines.append(f'dpf_kube_requests_total{{client="{_label(cl.name)}"}} {cl.requests}')
        if self.feed is not None:
            family("dpf_watch_events_total", "counter", "Watch events handed to the controllers.")
            lines.append(f"dpf_watch_events_total {self.feed.events}")
        return "\n".join(lines) + "\n"


def serve_metrics(metrics: Metrics, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """GET /metrics on a daemon thread; returns the server (its `server_address` has the bound port)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = metrics.render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="dpf-metrics", daemon=True).start()
    return server


# --- logs ------------------------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, plus exc when there is a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("controller", "request", "object"):
            if hasattr(record, key):
                out[key] = getattr(record, key)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(fmt: str = "json", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # kopf's own per-object chatter would drown the controllers' logs.
    logging.getLogger("kopf").setLevel(max(level, logging.WARNING))
    # The kube client's connection retries are reported once, as our own error, not per attempt.
    logging.getLogger("urllib3").setLevel(logging.ERROR)


# --- the operator ------------------------------------------------------------------------------------


class ClusterManagerProcess:
    """One cluster manager (a Deployment of its own in DPF): its Manager and its own workers, so stopping it
    leaves the provisioning manager's queues alone. Events that arrive while it starts are kept and handed
    over after its initial list (the kube watch shell has no subscription to close that gap)."""

    def __init__(self, name: str, manager: Manager, driver: ThreadedDriver) -> None:
        self.name = name
        self.manager = manager
        self.driver = driver
        self._lock = threading.Lock()
        self._early: list[WatchEvent] | None = []

    def dispatch(self, ev: WatchEvent) -> None:
        with self._lock:
            if self._early is not None:
                self._early.append(ev)
                return
        self.manager.dispatch(ev)

    def start(self) -> None:
        self.driver.start()
        with self._lock:
            early, self._early = self._early or [], None
        for ev in early:
            self.manager.dispatch(ev)

    def stop(self) -> None:
        with self._lock:
            self._early = None
        self.driver.stop()
        self.manager.stop()


@dataclass
class OperatorConfig:
    kubeconfig: str | None = None
    controllers: tuple[str, ...] = ("provisioning",)
    node: str | None = None
    metrics_port: int | None = DEFAULT_METRICS_PORT
    liveness: str | None = DEFAULT_LIVENESS
    namespace: str = OPERATOR_NAMESPACE
    bfb_dir: str = DEFAULT_BFB_DIR
    dms_tls_dir: str | None = None
    dms_address: str | None = None  # dial every DMS here (the twin serves all DPUs on one port)
    ovsdb: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


class Operator:
    def __init__(self, config: OperatorConfig, *, client: KubeClient | None = None, ports: Ports | None = None) -> None:
        registry.load_all()
        self.config = config
        self.client = client or KubeClient.from_kubeconfig(Path(config.kubeconfig) if config.kubeconfig else None)
        self.options = ProvisioningOptions(operator_namespace=config.namespace, **config.options)
        self.selection = select_controllers(config.controllers, self.options)
        for message in self.selection.skipped:
            log.warning("skipping: %s", message)
        controllers = list(self.selection.controllers)
        if config.node:
            from dpf_core import system

            controllers.extend(system.dpu_node_controllers(config.node))
        if not controllers:
            raise ValueError("nothing to run: no known controller set selected and no --node given")
        self.metrics = Metrics()
        self._closers: list[Callable[[], None]] = []
        self.tasks: Any = None
        self.ports = ports or self._ports()
        clock = WallClock()

        def recorder(component: str) -> EventRecorder:
            return EventRecorder(self.client, clock, component)

        self.clock = clock
        self.recorder = recorder
        self.manager = Manager(self.client, clock, recorder, self.ports, name="dpf-operator")
        for c in controllers:
            self.manager.add(c)
        # Hosted cluster managers by Deployment name; replaced whole (never mutated) so the watch thread can
        # read it without a lock while the deployer thread starts and stops processes.
        self.cluster_managers: dict[str, ClusterManagerProcess] = {}
        self._deploy_lock = threading.Lock()
        self._deploy_cond = threading.Condition()
        self._deploy_wanted: tuple[str, ...] | None = None
        self._deploy_stopping = False
        self._deployer: threading.Thread | None = None
        self.feed = EventFeed(self._dispatch)
        self.driver = ThreadedDriver(self.manager, on_outcome=self.metrics.observe, name="dpf")
        self.metrics.controllers = list(self.manager.controllers)
        self.metrics.clients = [self.client]
        self.metrics.feed = self.feed
        self.metrics.tasks = self.tasks
        self.metrics_server: ThreadingHTTPServer | None = None

    # --- wiring -------------------------------------------------------------------------------------
    def _needs_host_ports(self) -> bool:
        return any(s in HOST_SETS for s in self.selection.sets)

    def _ports(self) -> Ports:
        ports = Ports()
        if self._needs_host_ports():
            from .bfb import DirectoryBfbStore, HttpBfbDownloader
            from .dms import DmsClient
            from .executor import OpHandlers, ThreadTasks, cancellation

            handlers = OpHandlers()
            override = self.config.dms_address
            dial: Callable[[DmsTarget], str] | None = (lambda _t: override) if override else None
            dms = DmsClient(DmsTlsSource(self.client, self.config.dms_tls_dir), self.config.bfb_dir, dial=dial,
                            cancellation=cancellation)
            dms.register(handlers)
            HttpBfbDownloader(self.config.bfb_dir).register(handlers)
            pod_exec = DmsPodExec(self.client)
            pod_exec.register(handlers)
            self.tasks = ThreadTasks(handlers, on_done=self._task_done, name="dpf-task")
            clusters = KubeClusterClients()
            ports = Ports(tasks=self.tasks, bfb_store=DirectoryBfbStore(self.config.bfb_dir),
                          dms=_DialDms(dms, self.config.dms_address), host_exec=pod_exec, clusters=clusters)
            self._closers += [dms.close, clusters.close, self.tasks.shutdown]
        if self.config.node:
            from .ovs import OvsdbOvs

            ovs = OvsdbOvs(self.config.ovsdb) if self.config.ovsdb else OvsdbOvs()
            ports.ovs = ovs
            self._closers.append(ovs.close)
        return ports

    def _task_done(self, key: str, _status: TaskStatus) -> None:
        kind, _, rest = key.partition("/")
        ns, _, name = rest.partition("/")
        target = TASK_OWNERS.get(kind)
        if target is None or not name:
            return
        with contextlib.suppress(KeyError):  # that controller is not hosted by this process
            self.manager.controller(target).enqueue(Request(ns or None, name))

    def watched_kinds(self) -> list[type[KubeObject]]:
        """The kinds to watch, known before kopf starts: those of every cluster manager that may be deployed
        later, and the DPFOperatorConfig that decides it, are watched from the start."""
        controllers = list(self.manager.controllers)
        if self.selection.cluster_managers:
            from dpf_core import system

            for name in system.CLUSTER_MANAGER_NAMES:
                controllers += system.cluster_manager_controllers(name, self.options)
        seen: list[type[KubeObject]] = []
        for c in controllers:
            for source, kind in c.watched():
                if source is None and kind not in seen:
                    seen.append(kind)
        if self.selection.cluster_managers and DPFOperatorConfig not in seen:
            seen.append(DPFOperatorConfig)
        return seen

    def _dispatch(self, ev: WatchEvent) -> None:
        self.manager.dispatch(ev)
        for process in self.cluster_managers.values():
            process.dispatch(ev)
        if self.selection.cluster_managers and isinstance(ev.object, DPFOperatorConfig):
            from dpf_core import system

            wanted = system.operator_config_change(ev)
            if wanted is not None:
                self._request_cluster_managers(wanted)

    # --- cluster managers: the Deployments the operator creates and prunes ----------------------------
    def initial_cluster_managers(self) -> tuple[str, ...]:
        """What to host at start: per the DPFOperatorConfig singleton on the host cluster (both while there is
        none, or it is paused, or it cannot be read: the watch corrects that as soon as it lists the config)."""
        from dpf_core import system
        from dpf_core.controllers.operator_config import OperatorOptions

        wanted = OperatorOptions()
        try:
            config = self.client.try_get(DPFOperatorConfig, wanted.config_name, wanted.config_namespace)
        except ApiError as e:
            log.warning("cannot read DPFOperatorConfig %s/%s, running both cluster managers until it is listed: %s",
                        wanted.config_namespace, wanted.config_name, e)
            config = None
        if config is not None and not system.counts_as_operator_config(config):
            config = None
        return system.deployed_cluster_managers(config)

    def deploy_cluster_managers(self, wanted: Sequence[str]) -> None:
        """Start the wanted cluster managers that are not running and stop the running ones no longer wanted.
        A stopped manager's writes (conditions, its clean-up finalizer) stay, as after DPF prunes it."""
        from dpf_core import system

        with self._deploy_lock:
            running = dict(self.cluster_managers)
            for name in system.CLUSTER_MANAGER_NAMES:
                process = running.get(name)
                if name in wanted and process is None:
                    manager = Manager(self.client, self.clock, self.recorder, self.ports, name=name)
                    for c in system.cluster_manager_controllers(name, self.options):
                        manager.add(c)
                    process = ClusterManagerProcess(name, manager, ThreadedDriver(
                        manager, on_outcome=self.metrics.observe, name=name))
                    running[name] = process
                    self.cluster_managers = dict(running)
                    process.start()
                    log.info("cluster manager %s started (DPFOperatorConfig)", name)
                elif name not in wanted and process is not None:
                    del running[name]
                    self.cluster_managers = dict(running)
                    process.stop()
                    log.info("cluster manager %s stopped (DPFOperatorConfig)", name)
            self.metrics.controllers = [*self.manager.controllers,
                                        *(c for p in running.values() for c in p.manager.controllers)]

    def _request_cluster_managers(self, wanted: tuple[str, ...]) -> None:
        # Starting lists objects and stopping joins workers: not on the watch thread; only the latest wish counts.
        with self._deploy_cond:
            self._deploy_wanted = wanted
            self._deploy_cond.notify_all()

    def _deploy_loop(self) -> None:
        while True:
            with self._deploy_cond:
                while self._deploy_wanted is None and not self._deploy_stopping:
                    self._deploy_cond.wait()
                if self._deploy_stopping:
                    return
                wanted, self._deploy_wanted = self._deploy_wanted, None
            try:
                self.deploy_cluster_managers(wanted or ())
            except Exception:
                log.exception("deploying the cluster managers %s failed", ", ".join(wanted or ()) or "(none)")

    # --- lifecycle ----------------------------------------------------------------------------------
    def wait_for_api(self, timeout: float = 120.0) -> None:
        """The initial list needs the API server: wait for it (a pod may start before its API is reachable)."""
        deadline = time.monotonic() + timeout
        delay = 0.5
        while True:
            try:
                self.client.request("GET", "/version")
                return
            except ApiError as e:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("waiting for the API server %s: %s", self.client.host, e.message.splitlines()[0])
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def start(self) -> None:
        """Start the workers (their initial list included) and the metrics endpoint; kopf comes after."""
        self.wait_for_api()
        if self.config.metrics_port is not None:
            self.metrics_server = serve_metrics(self.metrics, self.config.metrics_port)
            log.info("metrics on :%d/metrics", self.metrics_server.server_address[1])
        self.driver.start()
        log.info("controllers started: %s", ", ".join(c.name for c in self.manager.controllers))
        if self.selection.cluster_managers:
            self.deploy_cluster_managers(self.initial_cluster_managers())
            self._deploy_stopping = False
            self._deployer = threading.Thread(target=self._deploy_loop, name="dpf-cluster-managers", daemon=True)
            self._deployer.start()

    def stop(self) -> None:
        if self._deployer is not None:
            with self._deploy_cond:
                self._deploy_stopping = True
                self._deploy_cond.notify_all()
            self._deployer.join(10.0)
            self._deployer = None
        self.deploy_cluster_managers(())
        self.driver.stop()
        for close in reversed(self._closers):
            try:
                close()
            except Exception:
                log.exception("shutdown step failed")
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()

    def kopf_registry(self) -> Any:
        import kopf

        reg = kopf.OperatorRegistry()
        cfg = self.client.api.configuration

        @kopf.on.startup(registry=reg)
        def _settings(settings: Any, **_: Any) -> None:
            # Single replica per cluster (DPF runs one), no kopf annotations, no kopf-posted events,
            # no CRD scanning (our CRDs are installed before the operator starts).
            settings.peering.standalone = True
            settings.posting.enabled = False
            settings.scanning.disabled = True
            settings.watching.server_timeout = 300
            settings.watching.client_timeout = 330
            settings.networking.request_timeout = 30

        @kopf.on.login(registry=reg)
        def _login(**_: Any) -> Any:
            token = str((cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken") or "")
            scheme, _sep, value = token.partition(" ")
            return kopf.ConnectionInfo(
                server=cfg.host,
                ca_path=cfg.ssl_ca_cert or None,
                insecure=not cfg.verify_ssl,
                certificate_path=cfg.cert_file or None,
                private_key_path=cfg.key_file or None,
                scheme=scheme if value else None,
                token=value or None,
            )

        @kopf.on.probe(id="controllers", registry=reg)
        def _probe(**_: Any) -> dict[str, Any]:
            drivers = [self.driver, *(p.driver for p in self.cluster_managers.values())]
            return {"reconciles": sum(d.reconciles for d in drivers), "errors": sum(d.errors for d in drivers),
                    "events": self.feed.events, "cluster_managers": sorted(self.cluster_managers)}

        for cls in self.watched_kinds():
            info = cls.KIND

            def handler(event: Mapping[str, Any], _cls: type[KubeObject] = cls, **_: Any) -> None:
                body = event.get("object")
                if isinstance(body, Mapping):
                    self.feed.feed(_cls, event.get("type"), body)

            kopf.on.event(group=info.group, version=info.version, plural=info.plural, registry=reg,
                          id=f"feed-{info.plural}.{info.group or 'core'}")(handler)
        return reg

    def run(self, stop_flag: threading.Event | None = None, ready_flag: threading.Event | None = None) -> None:
        """Block until stopped (a signal or `stop_flag`)."""
        import kopf

        self.start()
        try:
            asyncio.run(kopf.operator(registry=self.kopf_registry(), clusterwide=True, standalone=True,
                                      liveness_endpoint=self.config.liveness, stop_flag=stop_flag,
                                      ready_flag=ready_flag))
        finally:
            self.stop()


class _DialDms:
    """dpf_core.ports.Dms: the TCP dial, to the override address when all DMSes sit behind one port."""

    def __init__(self, dms: Any, address: str | None) -> None:
        self.dms = dms
        self.address = address

    def reachable(self, address: str) -> bool:
        return bool(self.dms.reachable(self.address or address))


def run_operator(config: OperatorConfig, *, log_format: str = "json", verbose: bool = False) -> None:
    configure_logging(log_format, logging.DEBUG if verbose else logging.INFO)
    if os.environ.get("DPF_OPERATOR_NAMESPACE"):
        config.namespace = os.environ["DPF_OPERATOR_NAMESPACE"]
    if os.environ.get("CLOUD_INIT_TIMEOUT"):
        # DPF's provisioning manager reads the same variable (seconds to wait after the DPU rebooted).
        config.options.setdefault("cloud_init_timeout", float(os.environ["CLOUD_INIT_TIMEOUT"]))
    Operator(config).run()
