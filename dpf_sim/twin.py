"""The twin: one simulated world (fleet, models, stores) with the core controllers running on SimPy time.

`Twin` is what the scenario runner, `dpf run`, `dpf serve` and the tests drive. It owns the SimPy
environment, the host cluster's store, one store per DPU cluster, the models, and the SimDriver that runs
the core controllers. User actions (apply, patch, delete, power-cycle) are plain method calls made at the
current simulated time; `run(until)` advances time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import simpy

from dpf_core.api import admission, registry
from dpf_core.api.external import Node, Secret
from dpf_core.api.meta import KubeObject
from dpf_core.api.provisioning import DPUCluster
from dpf_core.errors import NotFound
from dpf_core.runtime import DEFAULT_EPOCH, parse_rfc3339
from dpf_core.store.memory import DEFAULT_HISTORY, MemoryStore
from dpf_core.store.protocol import PatchType, WatchEvent

from .engine import CostModel, EventLog, SimClock, SimDriver, describe, tune_gc
from .lookup import DpuNames


@dataclass
class TwinConfig:
    seed: int = 0
    epoch: str = "2025-01-01T00:00:00Z"
    cost: CostModel = field(default_factory=CostModel)
    keep_log: bool = True
    # Fleet and model parameters (dpf_sim.fleet.FleetSpec, model overrides) as plain data; the composition
    # validates them.
    fleet: dict[str, Any] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)
    # Write core/v1 Events into the stores (off for scale runs: they are counted either way).
    record_events: bool = True
    # Extra worlds wired in after the provisioning composition: modules of dpf_sim with `attach(twin)`.
    attachments: tuple[str, ...] = ()
    # Events each store keeps for watches that resume from a resourceVersion (the apiserver's watch cache).
    # Only `dpf serve`'s clients resume; a run's controllers are fed directly, so runs keep a short history
    # (each kept event holds two object versions: at fleet scale the default was most of the memory).
    watch_history: int = DEFAULT_HISTORY


# The twin wakes a DPU when what it waits for happens (task done, host up, its DPU-cluster Node changed), so
# these waits need no 5 s poll; phases advance at the same simulated time (docs/models.md).
# Initializing is woken by a Ready DPUCluster (the DPU controller's watch) and by a freed slot (the twin).
# Ready is woken by the faults that break or mend an API server (dpf_sim/faults.py): a failing API raises no event.
TWIN_POLLS = {"task_poll": 600.0, "reboot_wait_poll": 600.0, "ready_poll": 3600.0, "init_poll": 600.0}


def resolve_kind(kind: str) -> type[KubeObject]:
    """A kind as users write it: "DPU", "dpus", "dpu" (short name), "provisioning.dpu.nvidia.com/v1alpha1/DPU",
    or kubectl's qualified forms "dpus.provisioning.dpu.nvidia.com", "DPU.provisioning.dpu.nvidia.com" and
    "dpus.v1alpha1.provisioning.dpu.nvidia.com" (resource or kind, then [version.]group)."""
    registry.load_all()
    if "/" in kind:
        api_version, _, k = kind.rpartition("/")
        cls = registry.lookup(api_version, k)
        if cls is not None:
            return cls
    wanted, dot, qualifier = kind.lower().partition(".")
    for cls in registry.all_kinds():
        info = cls.KIND
        if wanted not in (info.kind.lower(), info.plural, info.singular, *info.short_names):
            continue
        if dot and qualifier not in (info.group, f"{info.version}.{info.group}"):
            continue
        # DPF's kinds win over external ones of the same name.
        return cls
    raise NotFound(f'the server doesn\'t have a resource type "{kind}"')


class Twin:
    def __init__(self, config: TwinConfig | None = None) -> None:
        tune_gc()
        self.config = config or TwinConfig()
        self.env = simpy.Environment()
        epoch = parse_rfc3339(self.config.epoch) if self.config.epoch else DEFAULT_EPOCH
        self.clock = SimClock(self.env, epoch)
        self.log = EventLog(keep=self.config.keep_log)
        self.driver = SimDriver(self.env, self.clock, self.config.cost)
        # Before the first store: each store's observer holds this list.
        self._listeners: list[Callable[[str, WatchEvent], None]] = []
        self.host = self.new_store("host")
        self.dpu_names = DpuNames(self.host)
        self.dpu_names.on_slot_freed.append(self._wake_unassigned)
        self.dpu_clusters: dict[str, MemoryStore] = {}
        self.user_servers: dict[str, str] = {}  # DPU-cluster store name -> the user-brought API server it stands in for
        # Hooks for attachments: a DPU cluster's store was created; a DPU joined its DPU cluster (its
        # node agents can start).
        self.cluster_created: list[Callable[[str, MemoryStore], None]] = []
        self.dpu_joined: list[Callable[[str, str], None]] = []
        self._compose()
        import importlib

        for name in self.config.attachments:
            importlib.import_module(name if "." in name else f"dpf_sim.{name}").attach(self)

    # ---- stores ------------------------------------------------------------------------------------

    def new_store(self, name: str) -> MemoryStore:
        seed = self.config.seed * 1_000_003 + sum(name.encode())
        store = MemoryStore(self.clock.now, name=name, seed=seed, history=self.config.watch_history)
        store.subscribe(self._observer(name))
        if name != "host":
            from dpf_core.api.external import Node

            # A DPU's Node changing in its DPU cluster wakes the DPU (the DPU controller polls it in DPF).
            store.subscribe(self._dpu_cluster_node, [Node])
            self.dpu_clusters[name] = store
            for hook in self.cluster_created:
                hook(name, store)
        return store

    def _observer(self, store_name: str) -> Callable[[WatchEvent], None]:
        driver, log, env, listeners = self.driver, self.log, self.env, self._listeners
        prefix = f"{store_name} "

        def observe(ev: WatchEvent) -> None:
            driver.count_write(ev)
            log.write(env.now, prefix + describe(ev))
            for listener in listeners:
                listener(store_name, ev)

        return observe

    def on_event(self, listener: Callable[[str, WatchEvent], None]) -> None:
        """Every committed change in every store of the twin, as (store name, event), in commit order."""
        self._listeners.append(listener)

    def stores(self) -> dict[str, MemoryStore]:
        return {"host": self.host, **self.dpu_clusters}

    def dpu_cluster_store(self, namespace: str, name: str) -> MemoryStore | None:
        return self.dpu_clusters.get(f"{namespace}/{name}")

    # ---- user actions ------------------------------------------------------------------------------

    def apply(self, manifests: list[Mapping[str, Any]], store: str = "host") -> list[KubeObject]:
        """kubectl apply: create what is new, merge-patch what exists (admission runs either way)."""
        target = self.stores()[store]
        out: list[KubeObject] = []
        for raw in manifests:
            cls = admission.model_for(raw)
            md = raw.get("metadata") or {}
            name, ns = md.get("name"), md.get("namespace")
            if cls.KIND.namespaced and not ns:
                ns = "default"
                raw = {**raw, "metadata": {**md, "namespace": ns}}
            existing = target.try_get(cls, name, ns) if isinstance(name, str) and name else None
            if existing is None:
                out.append(target.create(admission.decode(raw, cls)))
            else:
                body = {k: v for k, v in raw.items() if k not in ("status",)}
                out.append(target.patch(cls, existing.name, ns, body, "merge"))
        return out

    def patch(self, kind: str, name: str, namespace: str | None, patch: Any, patch_type: PatchType = "merge",
              store: str = "host") -> KubeObject:
        return self.stores()[store].patch(resolve_kind(kind), name, namespace, patch, patch_type)

    def delete(self, kind: str, name: str, namespace: str | None, store: str = "host") -> None:
        self.stores()[store].delete(resolve_kind(kind), name, namespace)

    # ---- time --------------------------------------------------------------------------------------

    @property
    def now(self) -> float:
        return float(self.env.now)

    def run(self, until: float) -> None:
        """Advance simulated time to `until` seconds since the start."""
        if until > self.env.now:
            self.env.run(until=until)

    def metrics(self) -> dict[str, Any]:
        per_controller: dict[str, Any] = {}
        for m in self.driver.managers:
            for c in m.controllers:
                per_controller[f"{m.name}/{c.name}"] = c.metrics()
        return {
            "reconciles": self.driver.reconciles,
            "store_writes": sum(1 for _ in ()) + self.log.count,
            "controllers": per_controller,
        }

    # ---- composition -------------------------------------------------------------------------------

    def _compose(self) -> None:
        """Wire models, ports and the core controllers (the same composition the operator hosts)."""
        from dpf_core.api.provisioning import BFB
        from dpf_core.controllers import bfb, dpu, dpucluster, dpuset
        from dpf_core.controllers.options import ProvisioningOptions
        from dpf_core.ports import Ports
        from dpf_core.runtime import EventRecorder, Manager, MemoryRecorder

        from .cluster import ClusterParams, ClusterWorld, SimClusterClients
        from .fleet import FleetSpec, build_fleet
        from .models.bfbserver import BfbDirectory, BfbServerParams, BfbServers
        from .models.bluefield import BlueFieldParams, BlueFields
        from .models.host import HostParams, Hosts
        from .net import Network
        from .rng import Streams
        from .tasks import Executor, SimTasks
        from .worldports import SimBfbStore, SimDms, SimHostExec

        models = dict(self.config.models)
        self.streams = Streams(self.config.seed)
        self.fleet = build_fleet(FleetSpec.model_validate(self.config.fleet))
        self.dpu_names.set_locator(self._bluefield_at)
        self.net = Network(self.env, self.fleet)
        self.bfb_dir = BfbDirectory()
        self.bfb_servers = BfbServers(self.env, self.net, self.bfb_dir, BfbServerParams.model_validate(models.get("bfbServer", {})),
                                      self.streams)
        self.serve_any_bfb = bool(models.get("serveAnyBfb", True))
        self.bluefields = BlueFields(self.env, self.net, self.bfb_dir, BlueFieldParams.model_validate(models.get("blueField", {})),
                                     self.streams)
        self.hosts = Hosts(self.env, self.bluefields, HostParams.model_validate(models.get("host", {})), self.streams)
        executor = Executor()
        self.bluefields.register(executor)
        self.hosts.register(executor)
        executor.register(_download_op_type(), self.bfb_servers.download)
        self.manager: Manager | None = None
        self.tasks = SimTasks(self.env, executor, epoch=self.clock.epoch, on_done=self._task_done)
        # AwaitReboot's polls go through the executor in force (fault guards wrap it).
        self.bluefields.poll = lambda op: self.tasks.executor(op)
        self.world = ClusterWorld(self.env, self.clock, self.host, self.dpu_clusters, self.new_store, self.bluefields, self.hosts,
                                  ClusterParams.model_validate(models.get("cluster", {})), self.streams.get("cluster"),
                                  dpu_names=self.dpu_names, user_servers=self.user_servers)
        self.world.dpu_joined = self.dpu_joined
        self.world.register_host_nodes()
        if self.serve_any_bfb:
            self.host.subscribe(self._serve_bfb, [BFB])
        from dpf_core.api.external import Node

        # Initializing also waits for the host Node's OOB-bridge label (DPF notices on its 5 s poll).
        self.host.subscribe(self._host_node, [Node])
        self.host.subscribe(self._kubeconfig_changed, [Secret])
        self.ports = Ports(tasks=self.tasks, bfb_store=SimBfbStore(self.bfb_dir, self.env), dms=SimDms(self.bluefields),
                           host_exec=SimHostExec(self.hosts), clusters=SimClusterClients(self.dpu_clusters, self.user_servers))
        provisioning = dict(models.get("provisioning", {}))
        self.options = ProvisioningOptions(**{**TWIN_POLLS, **provisioning})
        # The operator renders the provisioning controller's `--dms-timeout` from the DPFOperatorConfig and
        # restarts it with the new flag; the twin's provisioning manager follows the config the same way,
        # unless the scenario pins `models.provisioning.dms_timeout` (then that wins).
        if "dms_timeout" not in provisioning:
            from dpf_core.api.operator import DPFOperatorConfig

            self.host.subscribe(self._operator_config, [DPFOperatorConfig])
        self.hosts.on_up = self._host_up
        self.recorded = MemoryRecorder(keep=False)

        def recorder(component: str) -> Any:
            return EventRecorder(self.host, self.clock, component) if self.config.record_events else self.recorded

        def build_manager() -> Manager:
            manager = Manager(self.host, self.clock, recorder, self.ports, name="provisioning")
            for module in (bfb, dpuset, dpu, dpucluster):
                manager.add(module.controller(self.options))
            return manager

        # Fresh reconcilers from the same composition: what a restarted controller process builds
        # (dpf_sim.faults' controllerCrash).
        self.build_provisioning_manager = build_manager
        self.manager = build_manager()
        self.driver.add(self.manager)
        # DPF's cluster managers are binaries of their own, deployed (or not) by the operator from the
        # DPFOperatorConfig: one Manager each, named after its Deployment. Until a DPFOperatorConfig says
        # otherwise the twin stands in for an operator that runs both (docs/differences.md).
        from dpf_core import system

        self._cluster_manager_modules = system.CLUSTER_MANAGER_NAMES
        self._recorder = recorder
        self.cluster_managers: dict[str, Manager] = {}
        for name in self._cluster_manager_modules:
            self._start_cluster_manager(name)
        from dpf_core.api.operator import DPFOperatorConfig

        self.host.subscribe(self._cluster_managers_config, [DPFOperatorConfig])

    def _start_cluster_manager(self, name: str) -> None:
        from dpf_core import system
        from dpf_core.runtime import Manager

        manager = Manager(self.host, self.clock, self._recorder, self.ports, name=name)
        for controller in system.cluster_manager_controllers(name, self.options):
            manager.add(controller)
        self.driver.add(manager)
        faults: Any = getattr(self, "faults", None)
        if faults is not None:
            faults.wrap_manager(manager)  # an API fault already running reaches the new process too
        self.cluster_managers[name] = manager

    def _cluster_managers_config(self, ev: WatchEvent) -> None:
        """The operator deploys `kamaji-cluster-manager` unless `kamajiClusterManager.disable`, and
        `static-cluster-manager` only when `staticClusterManager` is configured and not disabled
        (DPF's inventory defaults); removing a component deletes its Deployment. A paused config, another
        object than the singleton and a deleted config change nothing (the twin keeps its provisioning
        controllers running after a deletion too). The real operator decides the same way (dpf_core/system.py)."""
        from dpf_core import system

        enabled = system.operator_config_change(ev)
        if enabled is None:
            return
        for name in self._cluster_manager_modules:
            running = self.cluster_managers.get(name)
            if name in enabled and running is None:
                self._start_cluster_manager(name)
            elif name not in enabled and running is not None:
                # Its Deployment is pruned: the process and its queues are gone. What it already wrote
                # (conditions, its clean-up finalizer) stays, as in DPF.
                del self.cluster_managers[name]
                self.driver.stop(running)
                self.driver.managers.remove(running)

    def _operator_config(self, ev: WatchEvent) -> None:
        """The provisioning controller's `--dms-timeout` as the operator renders it from the configured
        DPFOperatorConfig. DPF's restart keeps nothing the twin's controllers need to lose for this (what they
        track is in the stores, DMS pods are not recreated), so the running reconcilers take the new options
        in place: DMS pods created from now on carry the new `-exec_timeout`, running ones keep theirs."""
        from dataclasses import replace

        from dpf_core import system
        from dpf_core.api.operator import PROVISIONING_CONTROLLER_NAME, DPFOperatorConfig
        from dpf_core.controllers import operator_config

        config = ev.object
        wanted = operator_config.OperatorOptions()
        if ev.type == "DELETED" or not system.counts_as_operator_config(config) or not isinstance(config, DPFOperatorConfig):
            return  # the operator reconciles only its singleton, and nothing while paused
        workload = operator_config.OperatorConfigReconciler(wanted).render_host_workload(
            config, PROVISIONING_CONTROLLER_NAME)
        args = workload.wire()["spec"]["template"]["spec"]["containers"][0]["args"]
        flag = next((a.partition("=")[2] for a in args if a.startswith("--dms-timeout=")), None)
        if flag is None or int(flag) == self.options.dms_timeout:
            return
        old = self.options
        self.options = replace(old, dms_timeout=int(flag))
        # build_provisioning_manager reads self.options, so a later restart (controllerCrash) keeps the flag too.
        for c in self.manager.controllers if self.manager is not None else ():
            reconciler: Any = c.reconciler
            if getattr(reconciler, "options", None) is old:
                reconciler.options = self.options

    def wake_dpu(self, name: str) -> None:
        """Enqueue the DPU named `name` (what DPF's 5 s poll would notice a little later)."""
        ns = self.dpu_names.namespace(name)
        if ns is not None and self.manager is not None:
            from dpf_core.runtime import Request

            self.manager.controller("dpu").enqueue(Request(ns, name))

    def _host_node(self, ev: WatchEvent) -> None:
        host = self.fleet.hosts.get(ev.object.name)
        if ev.type == "MODIFIED" and host is not None:
            node = ev.object
            taints = {t.key for t in node.spec.taints} if isinstance(node, Node) else set()
            for bf in host.dpus:
                for name in self.dpu_names.on_bluefield(bf.name):
                    if name in self.dpu_names.unassigned:
                        self.wake_dpu(name)
                    elif taints and self.dpu_names.is_ready(name):
                        # A Ready DPU lifts its node-effect taint in its Ready pass: one put back (by hand, by
                        # another tool) is seen now, not at the twin's hour-long Ready poll.
                        dpu = self.dpu_names.find(name)
                        effect = dpu.spec.node_effect.taint if dpu is not None else None
                        if effect is not None and effect.key in taints:
                            self.wake_dpu(name)

    def _kubeconfig_changed(self, ev: WatchEvent) -> None:
        """A DPUCluster's kubeconfig Secret changed or went (rotated, deleted): its Ready DPUs build their
        DPU-cluster client from it in the Ready pass, so they look now, not at the hour-long poll. (The
        DPUCluster's `spec.kubeconfig` is immutable once set: the Secret is what can change.)"""
        secret = ev.object
        if ev.type == "ADDED":
            return
        clusters = [f"{dc.namespace}/{dc.name}" for dc in self.host.list(DPUCluster, secret.namespace)
                    if dc.spec.kubeconfig == secret.name]
        for name in self.dpu_names.ready(clusters) if clusters else ():
            self.wake_dpu(name)

    def _wake_unassigned(self) -> None:
        for name in sorted(self.dpu_names.unassigned):
            self.wake_dpu(name)

    def _host_up(self, host: Any) -> None:
        for d in self.fleet.hosts[host.name].dpus:
            for name in self.dpu_names.on_bluefield(d.name):
                self.wake_dpu(name)

    def _bluefield_at(self, node: str, pci_address: str) -> str | None:
        """The BlueField a DPU object provisions: the one at its PCI-address label on its node, as DPF's DMS
        pod finds it (`-target_pci` on `spec.nodeName`)."""
        rec = self.fleet.dpu_at(node, pci_address)
        return None if rec is None else rec.name

    def _dpu_cluster_node(self, ev: WatchEvent) -> None:
        self.wake_dpu(ev.object.name)

    def _serve_bfb(self, ev: WatchEvent) -> None:
        if ev.type == "ADDED":
            url = getattr(getattr(ev.object, "spec", None), "url", None)
            if url and url not in self.bfb_servers.catalogue:
                self.bfb_servers.add(url)

    def _task_done(self, key: str, status: Any) -> None:
        """A finished task wakes its owner at once (DPF's 5 s poll would find it a little later)."""
        kind, _, rest = key.partition("/")
        ns, _, name = rest.partition("/")
        if self.manager is None or not name:
            return
        from dpf_core.runtime import Request

        target = {"download": "bfb", "install": "dpu", "reboot": "dpu", "powercycle": "dpu"}.get(kind)
        if target is not None:
            self.manager.controller(target).enqueue(Request(ns, name))

    def inject(self, fault: Mapping[str, Any]) -> Any:
        """Start a fault (a scenario `fault:` step) now; dpf_sim.faults has the catalogue."""
        from .faults import inject

        return inject(self, fault)

    def power_cycle(self, host: str) -> None:
        self.hosts.reboot(host, self.hosts.params.power_cycle_time.sample(self.streams.get(f"powercycle/{host}")), power_cycle=True)


def _download_op_type() -> type:
    from dpf_core.ports.ops import DownloadBfb

    return DownloadBfb
