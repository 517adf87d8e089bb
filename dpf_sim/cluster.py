"""The twin's stand-ins for what runs around DPF in a real cluster: kubelets, Kamaji, the maintenance
operator, and the DPU-cluster join. Each reacts to store events and acts after a modelled delay, so the core
controllers see exactly the objects a real cluster would show them."""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Callable, Generator
from typing import Any

import simpy
import yaml
from pydantic import BaseModel, ConfigDict

from dpf_core.api.external import Node, NodeMaintenance, Pod, PodStatus, Secret, Service, TenantControlPlane
from dpf_core.api.operator import DPFOperatorConfig
from dpf_core.api.provisioning import ClusterType, DPUCluster, DPUFlavor
from dpf_core.controllers.hostnetwork import hostnetwork_step
from dpf_core.controllers.operator_config import DEFAULT_DPU_FLAVOR, default_dpu_flavor
from dpf_core.errors import ApiError
from dpf_core.runtime import rfc3339
from dpf_core.store.memory import MemoryStore
from dpf_core.store.patch import merge_patch
from dpf_core.store.protocol import Client, WatchEvent

from .durations import Duration
from .engine import SimClock
from .lookup import DpuNames
from .models.bluefield import BlueField, BlueFields, dms_exec_timeout
from .models.host import Hosts
from .worldports import SimHostNetwork

TWIN_SCHEME = "twin://"
# A kubeconfig cluster extension naming the twin store a served URL belongs to, so a kubeconfig whose server
# is the twin API server's https URL (what kubectl and the operator dial) still resolves in the twin.
TWIN_CLUSTER_EXTENSION = "twin-cluster"
HOSTNETWORK_LOOP = 5.0
# The operator applies a component's manifests on its first reconcile of the DPFOperatorConfig; fixed (no
# random draw), so runs that bring their own flavor replay the same numbers.
OPERATOR_APPLY = 5.0


class ClusterParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    image_pull: Duration = Duration.of("10s")
    kamaji_ready: Duration = Duration.of("90s")
    drain: Duration = Duration.of("30s")
    node_ready: Duration = Duration.of("20s")


def kubeconfig_for(cluster: str) -> bytes:
    """An admin.conf whose server names a twin store; ClusterClients resolves it."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": f"{TWIN_SCHEME}{cluster}"}}],
        "users": [{"name": "admin", "user": {"token": f"twin-admin-{cluster}"}}],
        "contexts": [{"name": "admin@" + cluster, "context": {"cluster": cluster, "user": "admin"}}],
        "current-context": "admin@" + cluster,
    }
    return yaml.safe_dump(doc).encode()


class SimClusterClients:
    """dpf_core.ports.ClusterClients: a kubeconfig whose current context's cluster is `twin://<ns>/<name>`
    (or carries the `twin-cluster` extension naming `<ns>/<name>`) reaches that DPU cluster's store; one
    naming the server of a user-brought static cluster reaches the store standing in for it."""

    def __init__(self, stores: dict[str, MemoryStore], user_servers: dict[str, str] | None = None) -> None:
        self.stores = stores
        # The API server URL of each DPU cluster a user brought (a static DPUCluster's kubeconfig naming a server
        # the twin does not serve), by the name of the store standing in for it (ClusterWorld fills it in).
        self.user_servers = user_servers if user_servers is not None else {}
        # Controllers hand over the Secret's bytes on every pass; parse each kubeconfig once.
        self._servers: dict[bytes, str | None] = {}
        self._urls: dict[bytes, str | None] = {}

    def for_kubeconfig(self, kubeconfig: bytes) -> Client | None:
        if kubeconfig not in self._servers:
            self._servers[kubeconfig] = twin_cluster_of(kubeconfig)
        server = self._servers[kubeconfig]
        if server is not None:
            return self.stores.get(server)
        if kubeconfig not in self._urls:
            self._urls[kubeconfig] = kubeconfig_server(kubeconfig)
        url = self._urls[kubeconfig]
        if url is None:
            return None
        return next((self.stores[name] for name, server in self.user_servers.items() if server == url and name in self.stores), None)


def _current_cluster(kubeconfig: bytes) -> dict[str, Any] | None:
    """The cluster entry of a kubeconfig's current context (the first cluster when it names no context)."""
    try:
        doc = yaml.safe_load(kubeconfig)
        clusters = {c["name"]: c.get("cluster") or {} for c in doc.get("clusters") or []}
        current = doc.get("current-context")
        if current:
            ctx = next((c.get("context") or {} for c in doc.get("contexts") or [] if c.get("name") == current), None)
            return None if ctx is None else clusters.get(ctx.get("cluster"))
        if doc.get("clusters"):
            return dict(doc["clusters"][0].get("cluster") or {})
    except (yaml.YAMLError, AttributeError, KeyError, TypeError):
        return None
    return None


def kubeconfig_server(kubeconfig: bytes) -> str | None:
    """The API server URL a kubeconfig's current context dials."""
    entry = _current_cluster(kubeconfig)
    server = entry.get("server") if isinstance(entry, dict) else None
    return str(server) if server else None


def twin_cluster_of(kubeconfig: bytes) -> str | None:
    """The twin store a kubeconfig points at: its current context's cluster (the first cluster when it
    names no context), by the `twin-cluster` extension or a `twin://` server; None when it is not the twin's."""
    entry = _current_cluster(kubeconfig)
    try:
        if entry is None:
            return None
        for ext in entry.get("extensions") or []:
            if ext.get("name") == TWIN_CLUSTER_EXTENSION:
                value = ext.get("extension")
                name = value.get("cluster") if isinstance(value, dict) else value
                return str(name) if name else None
        server = str(entry.get("server") or "")
    except (yaml.YAMLError, AttributeError, KeyError, TypeError):
        return None
    if not server.startswith(TWIN_SCHEME):
        return None
    return server[len(TWIN_SCHEME):]


def _ready_node(name: str, labels: dict[str, str], now: str, address: str) -> Node:
    return Node.model_validate({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
                            "lastHeartbeatTime": now, "lastTransitionTime": now}],
            "addresses": [{"type": "InternalIP", "address": address}],
        },
    })


def register_node(store: MemoryStore, node: Node) -> None:
    """A kubelet registers its Node, then posts its status (the create drops status, as the API server does)."""
    created = store.create(node)
    if node.status.model_dump(by_alias=True, exclude_none=True):
        # Typed: the status subresource takes the status alone (the kubelet's first status post).
        store.update_status(created.with_status(node.status.clone()))


class ClusterWorld:
    """Wires the around-DPF actors to the host store and the DPU-cluster stores."""

    def __init__(self, env: simpy.Environment, clock: SimClock, host: MemoryStore, dpu_clusters: dict[str, MemoryStore],
                 new_store: Any, bluefields: BlueFields, hosts: Hosts, params: ClusterParams, rng: Any,
                 dpu_names: DpuNames | None = None, user_servers: dict[str, str] | None = None) -> None:
        self.env = env
        self.user_servers = user_servers if user_servers is not None else {}  # shared with SimClusterClients
        self.clock = clock
        self.host = host
        self.dpu_clusters = dpu_clusters
        self.new_store = new_store
        self.bluefields = bluefields
        self.hosts = hosts
        self.params = params
        self.rng = rng
        self._node_ports = 30000
        self._pod_ips = 0
        self._pods_started: set[str] = set()
        # "<ns>/<pod>" -> (BlueField, address) of the DMS pods serving: the DPU object that owned the pod may
        # be gone by the time the pod is.
        self._dms_pods: dict[str, tuple[str, str]] = {}
        self._dpus = dpu_names or DpuNames(host)
        self.dpu_joined: list[Any] = []
        # What Kamaji writes into `<cluster>-admin-kubeconfig`: `kubeconfig_for` unless something serves the
        # twin (dpf serve renders kubeconfigs naming its API server).
        self.kubeconfig_hook: Callable[[str], bytes] | None = None
        host.subscribe(self._on_host_event, [Pod, Service, TenantControlPlane, NodeMaintenance])
        host.subscribe(self._on_static_cluster_event, [DPUCluster, Secret])
        host.subscribe(self._on_operator_config, [DPFOperatorConfig])
        bluefields.on_booted = self._on_dpu_booted

    def admin_kubeconfig(self, cluster: str) -> bytes:
        """The `admin.conf` of DPU cluster `cluster` as the twin publishes it."""
        return (self.kubeconfig_hook or kubeconfig_for)(cluster)

    def register_host_nodes(self) -> None:
        for i, (name, rec) in enumerate(sorted(self.hosts.fleet.hosts.items())):
            register_node(self.host, _ready_node(name, dict(rec.labels), rfc3339(self.clock.now()), f"10.0.{i // 250}.{i % 250 + 1}"))

    # ---- host-cluster events --------------------------------------------------------------------------

    def _on_host_event(self, ev: WatchEvent) -> None:
        o = ev.object
        if ev.type == "DELETED":
            if isinstance(o, Pod):
                key = f"{o.namespace}/{o.name}"
                self._pods_started.discard(key)
                serving = self._dms_pods.pop(key, None)
                # Only the DMS this pod ran: another DPU object's pod may serve that BlueField by now.
                if serving is not None and self.bluefields.dpus[serving[0]].dms_address == serving[1]:
                    self.bluefields.mark_dms_running(serving[0], None, running=False)
            return
        if isinstance(o, Pod) and ev.type == "ADDED":
            key = f"{o.namespace}/{o.name}"
            if key not in self._pods_started:
                self._pods_started.add(key)
                self.env.process(self._run_pod(o.namespace or "", o.name))
        elif isinstance(o, Service) and ev.type == "ADDED":
            self._assign_node_ports(o)
        elif isinstance(o, TenantControlPlane) and ev.type == "ADDED":
            self.env.process(self._kamaji(o.namespace or "", o.name))
        elif isinstance(o, NodeMaintenance) and ev.type == "ADDED":
            self.env.process(self._drain(o.namespace or "", o.name))

    def _on_operator_config(self, ev: WatchEvent) -> None:
        """The DPF operator's provisioning-controller component includes the default DPUFlavor
        `dpf-provisioning-hbn-ovn` in the operator namespace, so DPF's own DPUSet fixtures (which name it
        and do not ship it) provision. The twin runs no operator in a provisioning run: this stands in."""
        o = ev.object
        if ev.type != "ADDED" or not isinstance(o, DPFOperatorConfig):
            return
        paused = o.spec.overrides is not None and o.spec.overrides.paused
        if paused or o.spec.provisioning_controller.disable:
            return
        self.env.process(self._apply_default_flavor(o.namespace or "default"))

    def _apply_default_flavor(self, ns: str) -> Generator[Any, Any, None]:
        yield self.env.timeout(OPERATOR_APPLY)
        if self.host.try_get(DPUFlavor, DEFAULT_DPU_FLAVOR, ns) is not None:
            return  # the user's own flavor of that name wins (the operator controller does the same)
        with contextlib.suppress(ApiError):
            self.host.create(default_dpu_flavor(ns))

    def _on_static_cluster_event(self, ev: WatchEvent) -> None:
        """A static DPUCluster is one the user built: its kubeconfig Secret names a running API server. When
        that server is none the twin serves, the twin stands up the user's cluster as a store named after
        the DPUCluster (`<namespace>/<name>`), so DPF's health check and the DPUs' kubeadm join reach it."""
        if ev.type == "DELETED":
            return
        o = ev.object
        if isinstance(o, DPUCluster):
            clusters = [o]
        elif isinstance(o, Secret):
            clusters = [dc for dc in self.host.list(DPUCluster, o.namespace) if dc.spec.kubeconfig == o.name]
        else:
            return
        for dc in clusters:
            if dc.spec.type == ClusterType.STATIC.value and dc.spec.kubeconfig and not dc.metadata.deletion_timestamp:
                self._bring_user_cluster(dc)

    def _bring_user_cluster(self, dc: DPUCluster) -> None:
        secret = self.host.try_get(Secret, dc.spec.kubeconfig or "", dc.namespace)
        if secret is None:
            return
        # Only data: a written stringData is in it by now (admission folds it in, as the API server does).
        if "admin.conf" not in secret.data:
            return
        try:
            kubeconfig = base64.b64decode(secret.data["admin.conf"], validate=True)
        except (binascii.Error, ValueError):
            return
        if twin_cluster_of(kubeconfig) is not None:
            return  # a twin-served cluster (pre-provisioned, or served by `dpf serve`): nothing to stand up
        url = kubeconfig_server(kubeconfig)
        if url is None:
            return
        cluster = f"{dc.namespace}/{dc.name}"
        store = self.dpu_clusters.get(cluster)
        if store is None:
            store = self.new_store(cluster)
        self.user_servers[cluster] = url

    def _dpu_of(self, pod: Pod) -> str | None:
        for ref in pod.metadata.owner_references:
            if ref.kind == "DPU":
                return ref.name
        return None

    def _assign_node_ports(self, svc: Service) -> None:
        spec = svc.model_dump(by_alias=True).get("spec") or {}
        if spec.get("type") != "NodePort":
            return
        ports = []
        for p in spec.get("ports") or []:
            if not p.get("nodePort"):
                self._node_ports += 1
                p = {**p, "nodePort": self._node_ports}
            ports.append(p)
        self.host.patch(Service, svc.name, svc.namespace, {"spec": {"ports": ports}})

    def _run_pod(self, ns: str, name: str) -> Generator[Any, Any, None]:
        yield self.env.timeout(self.params.image_pull.sample(self.rng))
        pod = self.host.try_get(Pod, name, ns)
        if pod is None or pod.metadata.deletion_timestamp:
            return
        dpu = self._dpu_of(pod)
        self._pod_ips += 1
        ip = f"10.{128 + (self._pod_ips >> 16) % 64}.{(self._pod_ips >> 8) & 255}.{self._pod_ips & 255}"
        now = rfc3339(self.clock.now())
        hostnetwork = name.endswith("-hostnetwork")
        status = {
            "phase": "Running", "podIP": ip, "hostIP": ip, "startTime": now,
            "conditions": [{"type": "Ready", "status": "False" if hostnetwork else "True", "lastTransitionTime": now}],
            "containerStatuses": [{"name": c.name, "ready": not hostnetwork, "restartCount": 0,
                                   "image": c.image, "imageID": "", "started": True,
                                   "state": {"running": {"startedAt": now}}}
                                  for c in pod.spec.containers],
        }
        self._patch_pod_status(ns, name, status)
        if dpu is None:
            return
        # The pod works on the BlueField at its DPU's PCI-address label on the DPU's node, whatever the DPU
        # object is called (DPF renders `-target_pci` and `device_pci_address` from that label).
        bluefield = self._dpus.bluefield_of(dpu)
        if bluefield not in self.bluefields.dpus:
            return
        if name.endswith("-dms"):
            # dmsd runs with the timeout its pod passes (`-exec_timeout`, from the provisioning controller's
            # `--dms-timeout`), so a DMS keeps the one it started with when DPF's flag changes later.
            command_line = [str(part) for c in pod.spec.containers
                            for key in ("command", "args") for part in (c.model_extra or {}).get(key) or []]
            address = f"{ip}:9339"
            self._dms_pods[f"{ns}/{name}"] = (bluefield, address)
            self.bluefields.mark_dms_running(bluefield, address, exec_timeout=dms_exec_timeout(command_line))
        elif hostnetwork:
            yield from self._hostnetwork_agent(ns, name, bluefield)

    def _patch_pod_status(self, ns: str, name: str, status: dict[str, Any]) -> None:
        """The kubelet's status patch: merged into the pod's status and written through the status subresource
        (a typed write of the status alone, not a patch of the whole pod through admission)."""
        pod = self.host.try_get(Pod, name, ns)
        if pod is None:
            return
        current = pod.status.model_dump(by_alias=True, exclude_none=True)
        if any(v is None or isinstance(v, dict) for v in status.values()):
            merged = merge_patch(current, status)
        else:
            # Only whole values replaced (what the kubelet sends): the merge is a key update; the fresh lists
            # need no copy, validation builds the status from them.
            merged = {**current, **status}
        with contextlib.suppress(ApiError):
            self.host.update_status(pod.with_status(PodStatus.model_validate(merged)))

    def _hostnetwork_agent(self, ns: str, name: str, bluefield: str) -> Generator[Any, Any, None]:
        """The `<dpu>-hostnetwork` pod: the core's host network step every 5 s until configured."""
        bf: BlueField = self.bluefields.get(bluefield)
        port = SimHostNetwork(self.hosts, bf.host)
        pod = self.host.try_get(Pod, name, ns)
        env = {}
        if pod is not None:
            for c in pod.spec.containers:
                for e in (c.model_extra or {}).get("env") or []:
                    env[e.get("name")] = e.get("value")
        num_vfs = int(env.get("num_of_vfs") or 16)
        mtu = int(env.get("vf_mtu") or 1500)
        pci = bf.record.pci_address
        while True:
            pod = self.host.try_get(Pod, name, ns)
            if pod is None or pod.metadata.deletion_timestamp:
                return
            if self.hosts.is_up(bf.host) and hostnetwork_step(port, pci, num_vfs, mtu):
                break
            yield self.env.timeout(HOSTNETWORK_LOOP)
        now = rfc3339(self.clock.now())
        containers = [{**c.model_dump(by_alias=True), "ready": True} for c in pod.status.container_statuses]
        self._patch_pod_status(ns, name, {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
                                          "containerStatuses": containers})

    def _kamaji(self, ns: str, name: str) -> Generator[Any, Any, None]:
        """Kamaji: the TenantControlPlane becomes a new API server (a store), then reports Ready."""
        yield self.env.timeout(self.params.kamaji_ready.sample(self.rng))
        tcp = self.host.try_get(TenantControlPlane, name, ns)
        if tcp is None:
            return
        cluster = f"{ns}/{name}"
        if cluster not in self.dpu_clusters:
            self.new_store(cluster)  # registers itself in dpu_clusters and runs the cluster_created hooks
        secret = f"{name}-admin-kubeconfig"
        if self.host.try_get(Secret, secret, ns) is None:
            # Kamaji owns what it generates for a TenantControlPlane: the kubeconfig goes with it.
            owner = {"apiVersion": tcp.api_version, "kind": tcp.kind, "name": tcp.name, "uid": tcp.metadata.uid,
                     "controller": True, "blockOwnerDeletion": True}
            self.host.create(Secret.model_validate({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": secret, "namespace": ns, "ownerReferences": [owner]},
                "type": "Opaque", "data": {"admin.conf": _b64(self.admin_kubeconfig(cluster))},
            }))
        version = (tcp.model_dump(by_alias=True).get("spec") or {}).get("kubernetes", {}).get("version", "v1.30.2")
        try:
            self.host.patch(TenantControlPlane, name, ns, {"status": {"kubernetesResources": {"version": {
                "status": "Ready", "version": version}}, "kubeconfig": {"admin": {"secretName": secret}}}},
                subresource="status")
        except ApiError:
            self.host.patch(TenantControlPlane, name, ns, {"status": {"kubernetesResources": {"version": {
                "status": "Ready", "version": version}}}})

    def _drain(self, ns: str, name: str) -> Generator[Any, Any, None]:
        """The maintenance operator: cordon, drain, then Ready."""
        yield self.env.timeout(self.params.drain.sample(self.rng))
        nm = self.host.try_get(NodeMaintenance, name, ns)
        if nm is None:
            return
        now = rfc3339(self.clock.now())
        self.host.patch(NodeMaintenance, name, ns, {"status": {"conditions": [
            {"type": "Ready", "status": "True", "reason": "Ready", "message": "Maintenance completed", "lastTransitionTime": now}]}},
            subresource="status")

    # ---- DPU side -------------------------------------------------------------------------------------

    def _on_dpu_booted(self, bf: BlueField) -> bool:
        """kubeadm join: the DPU's Node appears in the DPU cluster its DPU object was assigned to, named after
        the DPU object (bf.cfg sets the hostname to util.GenerateNodeName(dpu), i.e. dpu.Name)."""
        dpu = self._dpus.find(bf.name)
        if dpu is None or dpu.spec.cluster is None or not dpu.spec.cluster.name:
            return False
        store = self.dpu_clusters.get(f"{dpu.spec.cluster.namespace or dpu.namespace}/{dpu.spec.cluster.name}")
        if store is None:
            return False
        node = dpu.name
        if store.try_get(Node, node) is None:
            register_node(store, _ready_node(node, {"kubernetes.io/hostname": node}, rfc3339(self.clock.now()), "192.168.100.2"))
            for hook in self.dpu_joined:
                hook(f"{dpu.spec.cluster.namespace or dpu.namespace}/{dpu.spec.cluster.name}", node)
        return True


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
