"""The service-chain world of the twin: an attachment (`TwinConfig.attachments = ("servicechain",)`).

What it wires, with the composition lists of dpf_core.system:
- the host: the DPUServiceInterface / DPUServiceChain / DPUServiceIPAM mirrors, in a Manager of their own
  (the twin's provisioning Manager is already running);
- every DPU cluster, when its store appears: a Manager with the servicechainset-controller, NVIPAM and the
  Pod IPAM injector; the dpu-networking NetworkAttachmentDefinitions (mybrsfc, mybrhbn, iprequest); the pod
  networking models of dpf_sim.cni;
- every DPU node, when it joins: its Open vSwitch model as the DPUFlavor's OVS script and the ovs-cni marker
  leave it (br-sfc netdev/secure with the uplinks p0 and p1 as `dpf-type=physical` dpdk ports; br-ovn with
  pf0hpf; br-hbn), and a Manager running that node's SFC agent over `ModelOvs`.

Scenario parameters live under `models.serviceChain` (ServiceChainParams). `preProvisioned` skips the
provisioning flow: a static DPUCluster, its kubeconfig Secret and Ready DPU Nodes exist from t=0, so a
100-node IPAM experiment costs no BFB flashing.

`ServiceChainWorld.trace()` injects a packet at a port (or a pod's interface) of a node and says where it
went, naming pods behind the ports it left from.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from dpf_core import system
from dpf_core.api.external import NetworkAttachmentDefinition, Node, Pod
from dpf_core.api.meta import KubeObject
from dpf_core.api.svc import ServiceChain, ServiceInterface
from dpf_core.controllers import sfc
from dpf_core.controllers.options import SfcOptions
from dpf_core.errors import AlreadyExists
from dpf_core.ports import Ports
from dpf_core.runtime import EventRecorder, Manager, rfc3339
from dpf_core.store.memory import MemoryStore
from dpf_core.store.protocol import Client, Listener, WatchEvent
from dpf_core.store.selectors import compile_label_selector

from .cni import CniParams, CniWorld, dpu_networking_nads
from .durations import Seconds
from .ovs import (
    FLOWS,
    Change,
    Datapath,
    FlowMod,
    FlowParseError,
    ModelOvs,
    OvsError,
    Packet,
    TraceResult,
    parse_flows_file,
    send,
    trace,
)
from .ovs.flows import Learn

if TYPE_CHECKING:
    from .twin import Twin

OVN_HOST_PORT = "pf0hpf"

# As TWIN_POLLS for the DPU controller (dpf_sim/twin.py): DPF's agent re-applies every programmed chain every
# 5 s, which changes nothing once a chain is wired. The twin wakes a node's chains when what that re-apply
# reacts to changes: the node's OVS (ports, ofports, external_ids, flows lost or overwritten, a restart:
# `Datapath.listeners`) and the ServiceInterfaces / Pods a chain resolves through (the agent's own watches),
# so the re-apply of a programmed chain runs at this backstop period instead (docs/models.md). A chain that
# failed still retries at DPF's 5 s. `models.serviceChain.chainRequeue: 5s` restores DPF's period.
TWIN_SFC_POLLS = {"chain_requeue": 600.0}


class PreProvisioned(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)

    cluster: str = "dpu-cplane-tenant1/dpu-cplane-tenant1"  # "<namespace>/<name>" of a static DPUCluster
    nodes: int = Field(ge=1, le=1000)
    name_prefix: str = "dpu-node-"
    labels: dict[str, str] = Field(default_factory=dict)
    version: str = "v1.30.2"


class LeftoverOvs(BaseModel):
    """OVS state an earlier deployment left on every DPU's br-sfc (say, an sfc-controller that died before it
    cleaned up): only the SFC agent's stale sweep removes it."""

    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)

    ports: list[str] = Field(default_factory=list)
    flows: list[str] = Field(default_factory=list)


class ServiceChainParams(BaseModel):
    """Scenario `models.serviceChain`."""

    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)

    physical_ports: list[str] = Field(default_factory=lambda: ["p0", "p1"])
    ovn: bool = True
    stale_period: Seconds = sfc.STALE_REMOVAL_PERIOD
    # The SFC agent's re-apply of a programmed chain (DPF: every 5 s). The twin wakes a node's chains when
    # anything that re-apply would react to changes (TWIN_SFC_POLLS), so the period is only a backstop.
    chain_requeue: Seconds = Field(default=TWIN_SFC_POLLS["chain_requeue"], gt=0)
    network_attachments: bool = True
    nad_namespace: str = "dpf-operator-system"
    mtu: int = 1500
    cni: CniParams = Field(default_factory=CniParams)
    pre_provisioned: PreProvisioned | None = None
    leftovers: LeftoverOvs = Field(default_factory=LeftoverOvs)


def dpu_datapath(twin_now: Any, node: str, params: ServiceChainParams) -> Datapath:
    """A DPU's OVS after the flavor's OVS script (`add-br br-sfc`, datapath_type=netdev, fail_mode=secure,
    `add-port br-sfc p0`, type dpdk, Port `external_ids:dpf-type=physical`; br-ovn with pf0hpf) and the
    ovs-cni marker (br-hbn)."""
    dp = Datapath(now=twin_now, name=node)
    br_sfc = dp.add_br(sfc.SFC_BRIDGE, datapath_type="netdev", fail_mode="secure")
    for port in params.physical_ports:
        br_sfc.add_port(port, sfc.IFACE_TYPE_DPDK, external_ids={sfc.EXTERNAL_ID_DPF_TYPE: sfc.DPF_TYPE_PHYSICAL})
    if params.ovn:
        dp.add_br(sfc.OVN_BRIDGE, datapath_type="netdev").add_port(OVN_HOST_PORT, sfc.IFACE_TYPE_DPDK)
    dp.add_br(sfc.HBN_BRIDGE, datapath_type="netdev")
    for port in params.leftovers.ports:
        br_sfc.add_port(port, sfc.IFACE_TYPE_DPDK)
    if params.leftovers.flows:
        dp.add_flows(sfc.SFC_BRIDGE, list(params.leftovers.flows))
    return dp


class _NameLookups(dict[str, int]):
    """A bridge's port names as a flow parse sees them, noting whether it looked any up: a parse that did not
    (every port a number, as the SFC agent writes them) holds whatever ports the bridge has."""

    asked = False

    def __contains__(self, key: object) -> bool:
        self.asked = True
        return super().__contains__(key)

    def __getitem__(self, key: str) -> int:
        self.asked = True
        return super().__getitem__(key)


# A chain's flows name its cookie (FNV-1a of `<ns>/<name>`, so every chain's differs) and nothing else that
# differs between nodes of one DPU cluster (the flavor gives every node the same ofports): the text with its
# cookie replaced by this stand-in is parsed once per shape, not once per chain.
_COOKIE_TOKEN = re.compile(r"\bcookie=(0x[0-9a-fA-F]+|\d+)(?=[,)\s]|$)")
_COOKIE_STAND_IN = 0x5EED5EED5EED5EED
_U64_MAX = (1 << 64) - 1


def cookie_template(flows: Iterable[str]) -> tuple[tuple[str, ...], int] | None:
    """`flows` with every unmasked `cookie=<n>` replaced by the stand-in, and that one cookie; None when the
    lines name no cookie, or more than one, or one out of range (their own parse must say so)."""
    found: set[int] = set()

    def stand_in(m: re.Match[str]) -> str:
        found.add(int(m.group(1), 0))
        return f"cookie={_COOKIE_STAND_IN}"

    template = tuple(_COOKIE_TOKEN.sub(stand_in, line) for line in flows)
    if len(found) != 1:
        return None
    cookie = found.pop()
    return (template, cookie) if cookie <= _U64_MAX else None


def with_cookie(mods: Iterable[FlowMod], cookie: int, text: str) -> list[FlowMod]:
    """The flow mods of a cookie template as `text` (the bundle's own lines) parses: the stand-in put back in
    the flow's cookie and its learn actions' (the only places a `cookie=` token lands)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    out: list[FlowMod] = []
    for fm, line in zip(mods, lines, strict=True):
        actions = [
            dataclasses.replace(a, cookie=cookie) if isinstance(a, Learn) and a.cookie == _COOKIE_STAND_IN else a
            for a in fm.actions
        ]
        flow_cookie = cookie if fm.cookie == _COOKIE_STAND_IN else fm.cookie
        out.append(dataclasses.replace(fm, cookie=flow_cookie, actions=actions, text=line))
    return out


class ParsedOnceOvs(ModelOvs):
    """ModelOvs that parses a bundle's text once per shape. The SFC agent sends the same flows on every pass,
    and a chain's flows differ from the same chain's on another node only in the cookie; parsing them is the
    twin's cost, not the switch's, so a bundle whose text differs from one already parsed only in its one
    cookie applies that parse's flow mods with its own cookie (OFPFC_ADD as before). A parse that resolved
    port names is reused only while the bridge has the same names. `shared`: one cache for many switches
    (a DPU cluster's nodes)."""

    def __init__(self, datapath: Datapath, shared: dict[Any, Any] | None = None) -> None:
        super().__init__(datapath)
        self._parsed: dict[Any, tuple[list[FlowMod], dict[str, int] | None]] = {} if shared is None else shared

    def add_flows_bundle(self, bridge: str, flows: list[str]) -> None:
        br = self.datapath.bridge(bridge)
        text = "\n".join(flows)
        templated = cookie_template(flows)
        mods = self._parse(br, bridge, templated[0]) if templated is not None else None
        if mods is not None and templated is not None:
            mods = with_cookie(mods, templated[1], text)
        else:
            # Also where the template did not parse: the error then names the line as the agent wrote it.
            mods = self._parse(br, bridge, tuple(flows))
            if mods is None:
                try:
                    parse_flows_file(text, port_names=br.port_names())
                except FlowParseError as e:
                    raise OvsError(f"{bridge}: {e}") from e
                raise OvsError(f"{bridge}: flows did not parse")  # unreachable: the same text failed above
        with self.datapath.mute():  # as ModelOvs: the agent restoring its own flows is no change to wake it on
            for fm in mods:
                br.add(fm)

    def _parse(self, br: Any, bridge: str, lines: tuple[str, ...]) -> list[FlowMod] | None:
        """Datapath.add_flows' bundle: every line parsed first; one bad line and nothing changes (None)."""
        key = (bridge, lines)
        cached = self._parsed.get(key)
        if cached is not None and (cached[1] is None or cached[1] == br.port_names()):
            return cached[0]
        names = _NameLookups(br.port_names())
        try:
            mods = parse_flows_file("\n".join(lines), port_names=names)
        except FlowParseError:
            return None
        if len(self._parsed) > 256:
            self._parsed.clear()
        self._parsed[key] = (mods, dict(names) if names.asked else None)
        return mods


# The kinds a node agent takes only for its own node (`spec.node`; a Pod's `spec.nodeName`): its controllers'
# predicates and mappers drop the rest.
NODE_SCOPED_KINDS: tuple[type[KubeObject], ...] = (ServiceInterface, ServiceChain, Pod)


def _node_of(obj: KubeObject | None) -> str | None:
    spec = getattr(obj, "spec", None)
    if isinstance(obj, Pod):
        return getattr(spec, "node_name", None)
    return getattr(spec, "node", None)


class NodeEventRouter:
    """One subscription per DPU-cluster store for the node-scoped kinds, handing each event to the agent of the
    node it names. Every agent subscribing to the store itself would cost every event one delivery per node
    (1,000 per DPU cluster), all but one dropped by the agents' predicates."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self._by_node: dict[str | None, list[tuple[Listener, frozenset[type[KubeObject]]]]] = {}
        store.subscribe(self._route, list(NODE_SCOPED_KINDS))

    def _route(self, ev: WatchEvent) -> None:
        node = _node_of(ev.object)
        # An object moved off a node is news there too (it leaves that agent's tables and wakes its chains),
        # as every agent's own watch would see it.
        former = _node_of(ev.old) if ev.old is not None else node
        error: Exception | None = None
        for target in (node,) if former == node else (node, former):
            for listener, kinds in list(self._by_node.get(target, ())):
                if type(ev.object) not in kinds:
                    continue
                try:
                    listener(ev)
                except Exception as e:  # as the store does: the other listeners still get the event
                    error = error or e
        if error is not None:
            raise error

    def client_for(self, node: str) -> Client:
        return cast(Client, NodeAgentClient(self, node))

    def subscribe(self, node: str, listener: Listener, kinds: Iterable[type[KubeObject]] | None) -> Callable[[], None]:
        wanted = list(kinds) if kinds is not None else None
        routed = frozenset(k for k in wanted or () if k in NODE_SCOPED_KINDS)
        rest = None if wanted is None else [k for k in wanted if k not in NODE_SCOPED_KINDS]
        undo: list[Callable[[], None]] = []
        if routed:
            entry = (listener, routed)
            self._by_node.setdefault(node, []).append(entry)

            def unroute() -> None:
                entries = self._by_node.get(node, [])
                if entry in entries:
                    entries.remove(entry)

            undo.append(unroute)
        if rest is None or rest:
            undo.append(self.store.subscribe(listener, rest))

        def unsubscribe() -> None:
            for u in undo:
                u()

        return unsubscribe


class NodeAgentClient:
    """The DPU-cluster store as one node agent's Manager holds it: every call goes to the store, except that
    its watch on the node-scoped kinds goes through the cluster's NodeEventRouter."""

    def __init__(self, router: NodeEventRouter, node: str) -> None:
        self._router = router
        self._node = node

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._router.store, name)
        setattr(self, name, value)  # bound once: reconciles call through this client on every store access
        return value

    def subscribe(self, listener: Listener, kinds: Iterable[type[KubeObject]] | None = None) -> Callable[[], None]:
        return self._router.subscribe(self._node, listener, kinds)


@dataclass(frozen=True)
class Endpoint:
    """Where a packet enters or leaves a node: an OVS port, and the pod interface behind it if there is one."""

    bridge: str
    port: str
    pod: str | None = None  # "<namespace>/<name>"
    interface: str | None = None
    labels: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        if self.pod is not None:
            return f"pod {self.pod} {self.interface} ({self.bridge}:{self.port})"
        return f"{self.bridge}:{self.port}"


@dataclass
class NodeTrace:
    cluster: str
    node: str
    source: Endpoint
    result: TraceResult
    deliveries: list[Endpoint] = field(default_factory=list)


@dataclass
class ClusterNet:
    name: str
    store: MemoryStore
    manager: Manager
    cni: CniWorld
    router: NodeEventRouter | None = None  # made when the first node joins, where its agent would subscribe
    flow_parses: dict[Any, Any] = field(default_factory=dict)  # ParsedOnceOvs' cache, shared by the nodes


@dataclass
class DpuNode:
    cluster: str
    name: str
    datapath: Datapath
    ovs: ModelOvs
    manager: Manager


class ServiceChainWorld:
    def __init__(self, twin: Twin, params: ServiceChainParams) -> None:
        self.twin = twin
        self.params = params
        self.clusters: dict[str, ClusterNet] = {}
        self.nodes: dict[tuple[str, str], DpuNode] = {}
        self.host_manager = Manager(twin.host, twin.clock, self._recorder(twin.host), twin.ports, name="dpuservicechain")
        for c in system.service_chain_host_controllers():
            self.host_manager.add(c)
        twin.driver.add(self.host_manager)
        for name, store in sorted(twin.dpu_clusters.items()):
            self._cluster_created(name, store)
        twin.cluster_created.append(self._cluster_created)
        twin.dpu_joined.append(self._dpu_joined)

    def _recorder(self, store: MemoryStore) -> Any:
        def factory(component: str) -> Any:
            if self.twin.config.record_events:
                return EventRecorder(store, self.twin.clock, component)
            return self.twin.recorded

        return factory

    def _log(self, text: str) -> None:
        self.twin.log.write(self.twin.now, text)

    # ---- hooks -------------------------------------------------------------------------------------------

    def _cluster_created(self, name: str, store: MemoryStore) -> None:
        if name in self.clusters:
            return
        manager = Manager(store, self.twin.clock, self._recorder(store), Ports(), name=f"servicechainset/{name}")
        for c in system.dpu_cluster_controllers():
            manager.add(c)
        cni_params = self.params.cni
        if "daemon_sets" not in cni_params.model_fields_set and any(
                a.rpartition(".")[2] == "services" for a in self.twin.config.attachments):
            # The services attachment's kubelet model is the cluster's DaemonSet controller: a second one here
            # made pods of its own that the kubelet then deleted as strangers (a churn of one pod per node).
            cni_params = cni_params.model_copy(update={"daemon_sets": False})
        cni = CniWorld(self.twin.env, lambda: self.twin.clock.now(), store, cni_params,
                       log=lambda text: self._log(f"{name} {text}"))
        self.clusters[name] = ClusterNet(name, store, manager, cni)
        if self.params.network_attachments:
            for nad in dpu_networking_nads(self.params.nad_namespace, self.params.mtu):
                if store.try_get(NetworkAttachmentDefinition, nad.name, nad.namespace) is None:
                    with contextlib.suppress(AlreadyExists):
                        store.create(nad)
        self.twin.driver.add(manager)

    def _dpu_joined(self, cluster: str, node: str) -> None:
        net = self.clusters.get(cluster)
        if net is None:
            return
        old = self.nodes.pop((cluster, node), None)
        if old is not None:
            # The Node was deleted and joined again: a re-provisioned DPU (fresh OS, OVS as the flavor's script
            # leaves it, a new SFC agent pod). The old agent goes with the old OS.
            self.twin.driver.stop(old.manager)
        dp = dpu_datapath(lambda: float(self.twin.env.now), node, self.params)
        ovs = ParsedOnceOvs(dp, net.flow_parses)
        if net.router is None:
            net.router = NodeEventRouter(net.store)
        manager = Manager(net.router.client_for(node), self.twin.clock, self._recorder(net.store), Ports(ovs=ovs),
                          name=f"sfc/{node}")
        # The production composition with the twin's periods: chains are woken, not re-applied every 5 s.
        options = SfcOptions(chain_requeue=self.params.chain_requeue, stale_removal_period=self.params.stale_period,
                             status_writes_wake=False)
        for c in system.dpu_node_controllers(node, options=options):
            manager.add(c)
        self.nodes[(cluster, node)] = DpuNode(cluster, node, dp, ovs, manager)
        dp.listeners.append(self._ovs_listener(cluster, node))
        self.twin.driver.add(manager)
        net.cni.add_node(node, dp)

    def _ovs_listener(self, cluster: str, node: str) -> Callable[[Change], None]:
        def changed(change: Change) -> None:
            # The chains read ports on every bridge they look up and write flows on br-sfc only: other
            # bridges' flows (the CNI's br-hbn pair flows) are nothing a chain re-apply would restore.
            if change.what == FLOWS and change.bridge != sfc.SFC_BRIDGE:
                return
            self.wake_chains(cluster, node, dpf_ids=change.dpf_ids, cookies=change.cookies)

        return changed

    def wake_chains(self, cluster: str, node: str, *, dpf_ids: Iterable[str] | None = None,
                    cookies: Iterable[int] | None = None) -> int:
        """Enqueue a DPU node's ServiceChains now: what the SFC agent's 5 s re-apply would notice a little
        later after the node's OVS changed under them. All of them, or only those owning one of `cookies` or
        selecting the ServiceInterface behind one of `dpf_ids` (sfc.NodeObjects.chain_requests). The datapath's
        listener calls this; a fault editing OVS state behind the model's verbs should too. Returns how many."""
        dpu = self.nodes.get((cluster, node))
        if dpu is None:
            return 0
        controller = dpu.manager.controller(sfc.NAME_SERVICE_CHAIN)
        return sfc.wake_node_chains(controller, dpf_ids=dpf_ids, cookies=cookies)

    @property
    def ovs(self) -> dict[str, Datapath]:
        """Every DPU node's Open vSwitch by node (= DPU) name (dpf_sim.faults' ovsRestart)."""
        return {node: n.datapath for (_, node), n in sorted(self.nodes.items())}

    # ---- pre-provisioned clusters -----------------------------------------------------------------------

    def pre_provision(self, spec: PreProvisioned) -> None:
        """A static DPUCluster whose DPU nodes are already joined (what provisioning leaves behind)."""
        from .cluster import _ready_node, register_node

        ns, _, name = spec.cluster.rpartition("/")
        ns = ns or "default"
        cluster = f"{ns}/{name}"
        secret = f"{name}-admin-kubeconfig"
        self.twin.apply([
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret, "namespace": ns}, "type": "Opaque",
             "data": {"admin.conf": base64.b64encode(self.twin.world.admin_kubeconfig(cluster)).decode()}},
            {"apiVersion": "provisioning.dpu.nvidia.com/v1alpha1", "kind": "DPUCluster",
             "metadata": {"name": name, "namespace": ns},
             "spec": {"type": "static", "maxNodes": max(spec.nodes, 1), "version": spec.version, "kubeconfig": secret}},
        ])
        store = self.twin.dpu_clusters.get(cluster) or self.twin.new_store(cluster)
        width = max(3, len(str(spec.nodes)))
        now = rfc3339(self.twin.clock.now())
        for i in range(1, spec.nodes + 1):
            node = f"{spec.name_prefix}{i:0{width}d}"
            if store.try_get(Node, node) is None:
                register_node(store, _ready_node(node, {"kubernetes.io/hostname": node, **spec.labels}, now,
                                                 f"192.168.{100 + i // 250}.{i % 250 + 1}"))
            for hook in list(self.twin.dpu_joined):
                hook(cluster, node)

    # ---- observing the data plane ----------------------------------------------------------------------

    def node_names(self, cluster: str) -> list[str]:
        return sorted(n for c, n in self.nodes if c == cluster)

    def resolve(self, cluster: str, node: str, *, port: str | None = None, bridge: str | None = None,
                pod: dict[str, str] | str | None = None, namespace: str | None = None,
                interface: str | None = None) -> Endpoint:
        """A port by name (optionally on a given bridge), or the port of a pod's interface on that node."""
        dpu = self.nodes[(cluster, node)]
        if pod is None:
            if port is None:
                raise LookupError("an endpoint names a port or a pod")
            for br in dpu.datapath.bridges.values():
                if (bridge is None or br.name == bridge) and port in br.ports:
                    return self._endpoint(cluster, node, br.name, port)
            raise LookupError(f"no port {port}" + (f" on {bridge}" if bridge else ""))
        cni = self.clusters[cluster].cni
        matcher = compile_label_selector(pod) if isinstance(pod, dict) else None
        found: list[Endpoint] = []
        for state in cni.pods.values():
            ns, _, pname = state.key.partition("/")
            if state.node != node or (namespace is not None and ns != namespace):
                continue
            if matcher is not None and not matcher.matches(state.labels):
                continue
            if isinstance(pod, str) and pname != pod and state.key != pod:
                continue
            for att in state.attachments:
                if att.port and (interface is None or att.interface == interface):
                    found.append(self._endpoint(cluster, node, att.bridge, att.port))
        if len(found) != 1:
            raise LookupError(f"{len(found)} pod interfaces match pod {pod} interface {interface} on {node}")
        return found[0]

    def _endpoint(self, cluster: str, node: str, bridge: str, port: str) -> Endpoint:
        behind = self.clusters[cluster].cni.endpoint(node, bridge, port)
        if behind is None:
            return Endpoint(bridge, port)
        state, att = behind
        return Endpoint(bridge, port, state.key, att.interface, tuple(sorted(state.labels.items())))

    def trace(self, cluster: str, node: str, source: Endpoint, packet: Packet, *, side_effects: bool = True) -> NodeTrace:
        """A packet arriving at `source` of `node` now: `send` (counters, learning) or a side-effect-free trace."""
        dp = self.nodes[(cluster, node)].datapath
        if side_effects:
            result = send(dp, source.bridge, source.port, packet)
        else:
            result = trace(dp, source.bridge, source.port, packet, side_effects=False)
        deliveries = [self._endpoint(cluster, node, d.bridge, d.port) for d in result.outputs]
        return NodeTrace(cluster, node, source, result, deliveries)

    def ovs_leftovers(self, cluster: str, node: str) -> list[str]:
        """What the stale sweep exists to remove: br-sfc flows whose cookie is no ServiceChain of this node
        (learned ones included), and ports no ServiceInterface, live pod or the flavor accounts for."""
        net = self.clusters[cluster]
        dpu = self.nodes[(cluster, node)]
        chains = {sfc.chain_cookie(c.namespace, c.name) for c in net.store.list(ServiceChain) if c.spec.node == node}
        problems = [f"flow {line.strip()}" for line in dpu.datapath.dump_flows(sfc.SFC_BRIDGE, stats=False)
                    if "actions=" in line and next(iter(sfc.flow_cookies([line])), 0) not in chains]
        interfaces = [si for si in net.store.list(ServiceInterface) if si.spec.node == node]
        produced = {(sfc.SFC_BRIDGE, sfc.produced_port(si)) for si in interfaces}
        if any(si.spec.interface_type == "ovn" for si in interfaces):
            produced.add((sfc.OVN_BRIDGE, sfc.OVN_PATCH))
        produced |= set(net.cni.pod_ports(node))
        for bridge in (sfc.SFC_BRIDGE, sfc.OVN_BRIDGE):
            br = dpu.datapath.bridges.get(bridge)
            if br is None:
                continue
            for name, port in br.ports.items():
                if name == bridge or (bridge, name) in produced:
                    continue
                if port.external_ids.get(sfc.EXTERNAL_ID_DPF_TYPE) == sfc.DPF_TYPE_PHYSICAL:
                    continue
                if bridge == sfc.OVN_BRIDGE and name == OVN_HOST_PORT and self.params.ovn:
                    continue
                problems.append(f"port {bridge}:{name}")
        return problems


def attach(twin: Twin) -> ServiceChainWorld:
    params = ServiceChainParams.model_validate(twin.config.models.get("serviceChain", {}))
    world = ServiceChainWorld(twin, params)
    twin.servicechain = world  # type: ignore[attr-defined]
    if params.pre_provisioned is not None:
        world.pre_provision(params.pre_provisioned)
    return world


__all__ = [
    "TWIN_SFC_POLLS",
    "ClusterNet",
    "DpuNode",
    "Endpoint",
    "LeftoverOvs",
    "NodeTrace",
    "ParsedOnceOvs",
    "PreProvisioned",
    "ServiceChainParams",
    "ServiceChainWorld",
    "attach",
    "dpu_datapath",
]
