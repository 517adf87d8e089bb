"""The pod networking of a DPU cluster in the twin: Multus, the SR-IOV device plugin (scalable functions),
DPF's forked ovs-cni and nv-ipam's CNI, plus the bit of kubelet and DaemonSet controller that service pods need.

One `CniWorld` per DPU-cluster store. What it does, in the order a real DPU does it:

- SR-IOV device plugin: every DPU node that joined advertises `nvidia.com/bf_sf` (the SFs `configure-sfs.sh`
  created, `PF_TOTAL_SF` of them) in its Node's capacity and allocatable.
- DaemonSet controller: a DaemonSet whose pod template carries the Multus networks annotation gets one Pod
  per matching Node (template nodeSelector and required node affinity), named `<ds>-<suffix>`, owned by it.
- kubelet admission: a Pod with the annotation and a `spec.nodeName` takes as many SFs as it requests
  (container requests of `nvidia.com/bf_sf`, else one per network whose NetworkAttachmentDefinition names that
  resource). Not enough free SFs -> the Pod fails with `UnexpectedAdmissionError`, as the device manager does.
- CNI ADD, per network of the annotation in order (Multus): the NetworkAttachmentDefinition (`<ns>/<name>`,
  default the Pod's namespace) gives the plugin. `ovs` (ovs-cni): the SF representor `en3f0pf0sf<N>` becomes a
  port on the NAD's bridge with `ofport_request` = FNV-1a-32(name) & 0xFF, Interface external_ids `iface-id`,
  `dpf-id=<podNs>/<podName>/<ifName>`, Port external_ids `contNetns`, `contIface`,
  `owner=ovs-cni.network.kubevirt.io`; on br-hbn also the patch pair `p<rep>brhbn` (`hbn_rep_ofport`,
  `hbn_netdev`) <-> `p<rep>brsfc` on br-sfc (`iface-id=<rep>`, `dpf-id=<ifName>`). An `_sf`/`_if` interface
  without an SF fails as ovs-cni does ("interface is SF but deviceID is not set."). `ipam: nv-ipam`: the lowest
  free address of this node's block of the pool named by the network's `cni-args.poolNames[0]` (type
  `poolType`, default ippool; no cni-args: the pool named like the network), never the gateway nor an excluded
  address, unless `cni-args.allocateDefaultGateway` asks for the node's gateway itself (with
  `allocateDefaultGateway` on in the params). Any failure undoes the attempt and the kubelet retries after `retry`.
- Success: annotation `k8s.v1.cni.cncf.io/network-status` (Multus' JSON), phase Running, Ready.
- Pod deleted: CNI DEL (ports and patches removed, addresses and SFs released).

HBN's data-plane agent (nl2doca's DAL, which reads `hbn_rep_ofport`) is stood in for by two flows per
service port on br-hbn that pair the representor with its br-sfc patch (priority 100, cookie
`HBN_PAIR_COOKIE`), so a packet entering br-hbn from br-sfc reaches exactly that service interface and back.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import simpy
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from dpf_core.api.external import (
    ANNOTATION_MULTUS_NETWORKS,
    CIDRPool,
    DaemonSet,
    IPPool,
    NetworkAttachmentDefinition,
    Node,
    Pod,
)
from dpf_core.api.meta import NodeSelector
from dpf_core.controllers.ipam_injector import (
    CNI_ARG_ALLOCATE_DEFAULT_GATEWAY,
    CNI_ARG_POOL_NAMES,
    CNI_ARG_POOL_TYPE,
    POOL_TYPE_CIDRPOOL,
    POOL_TYPE_IPPOOL,
    NetworkAnnotationError,
    parse_networks,
)
from dpf_core.controllers.nvipam import usable_addresses
from dpf_core.controllers.sfc import HBN_BRIDGE, OVS_CNI_OWNER, SFC_BRIDGE
from dpf_core.errors import ApiError
from dpf_core.runtime import rfc3339
from dpf_core.store.memory import MemoryStore
from dpf_core.store.protocol import WatchEvent
from dpf_core.store.selectors import node_selector_matches

from .durations import Seconds
from .ovs import Datapath, OvsError

SF_RESOURCE = "nvidia.com/bf_sf"
ANNOTATION_RESOURCE_NAME = "k8s.v1.cni.cncf.io/resourceName"
ANNOTATION_NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"
SF_REP_PREFIX = "en3f0pf0sf"
HBN_PAIR_COOKIE = 0x4842_4E00  # "HBN\0": the stand-in for nl2doca's pairing, never a chain's cookie
HBN_PAIR_PRIORITY = 100
NV_IPAM = "nv-ipam"


class CniParams(BaseModel):
    """Scenario `models.serviceChain.cni` (camelCase or snake_case)."""

    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)

    sf_per_node: int = 20  # PF_TOTAL_SF of the default flavor
    sandbox_delay: Seconds = 2.0  # pod scheduled -> first CNI ADD (image pull, sandbox)
    retry: Seconds = 10.0  # kubelet's retry of a failed sandbox
    # Expand annotated DaemonSets into Pods; unless set, off when the services attachment (whose kubelet model
    # is the DaemonSet controller) is there too.
    daemon_sets: bool = True
    # nv-ipam's cni-arg `allocateDefaultGateway: true` gives the interface the pool's gateway for its node (HBN's
    # ip_pf2dpu2: the DPU is the hosts' gateway). Off ignores the argument (a what-if: the pre-session-5 model).
    allocate_default_gateway: bool = True


class CniError(RuntimeError):
    pass


def fnv1a_32(text: str) -> int:
    h = 0x811C9DC5
    for byte in text.encode():
        h ^= byte
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def ofport_request_for(name: str) -> int | None:
    """ovs-cni's `hash(intfName)`: FNV-1a-32 truncated to uint8; 0 means "no request" to OVS."""
    return (fnv1a_32(name) & 0xFF) or None


@dataclass(frozen=True)
class NetConf:
    """The parts of a NetworkAttachmentDefinition's CNI config the models act on."""

    type: str
    bridge: str = ""
    interface_type: str = ""
    ipam: str = ""
    resource_name: str = ""
    mtu: int = 0

    @classmethod
    def of(cls, nad: NetworkAttachmentDefinition) -> NetConf:
        try:
            config = json.loads(nad.spec.config or "{}")
        except json.JSONDecodeError as e:
            raise CniError(f"net-attach-def {nad.namespace}/{nad.name}: invalid config: {e}") from e
        if not isinstance(config, dict):
            raise CniError(f"net-attach-def {nad.namespace}/{nad.name}: config is not an object")
        ipam = config.get("ipam") or {}
        return cls(
            type=str(config.get("type", "")),
            bridge=str(config.get("bridge", "")),
            interface_type=str(config.get("interface_type", "")),
            ipam=str(ipam.get("type", "")) if isinstance(ipam, dict) else "",
            resource_name=nad.metadata.annotations.get(ANNOTATION_RESOURCE_NAME, ""),
            mtu=int(config.get("mtu") or 0),
        )


def dpu_networking_nads(namespace: str, mtu: int = 1500) -> list[NetworkAttachmentDefinition]:
    """What the dpu-networking chart's multus component installs (mybrsfc, mybrhbn, iprequest)."""

    def nad(name: str, config: dict[str, Any], resource: bool) -> NetworkAttachmentDefinition:
        annotations = {ANNOTATION_RESOURCE_NAME: SF_RESOURCE} if resource else {}
        return NetworkAttachmentDefinition.model_validate({
            "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
            "spec": {"config": json.dumps({"cniVersion": "0.4.0", **config})},
        })

    return [
        nad("mybrsfc", {"type": "ovs", "bridge": SFC_BRIDGE, "mtu": mtu, "interface_type": "dpdk",
                        "ipam": {"type": NV_IPAM}}, True),
        nad("mybrhbn", {"type": "ovs", "mtu": mtu, "bridge": HBN_BRIDGE, "interface_type": "dpdk"}, True),
        nad("iprequest", {"type": "dummy", "ipam": {"type": NV_IPAM}}, False),
    ]


@dataclass
class Lease:
    pool_type: str
    pool: str
    address: str  # "10.0.120.4/29"
    gateway: str | None


@dataclass
class Attachment:
    """One network of a Pod after CNI ADD."""

    network: str  # "<ns>/<name>"
    interface: str
    bridge: str = ""
    port: str = ""
    mac: str = ""
    patches: list[tuple[str, str]] = field(default_factory=list)  # (bridge, port)
    paired: tuple[int, ...] = ()  # br-hbn ofports the pairing flows match on
    lease: Lease | None = None
    # The pool's gateway itself, asked for with cni-args `allocateDefaultGateway` (HBN's ip_pf2dpu2: the pod is
    # the hosts' gateway). Kept apart from `lease`, nv-ipam's dynamic allocation, which never hands it out.
    gateway_lease: Lease | None = None

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.network, "interface": self.interface}
        lease = self.lease or self.gateway_lease
        if lease is not None:
            out["ips"] = [lease.address.split("/")[0]]
            if lease.gateway:
                out["gateway"] = [lease.gateway]
        if self.mac:
            out["mac"] = self.mac
        out["dns"] = {}
        if self.port:
            out["device-info"] = {"type": "ovs", "version": "1.0.0", "ovs": {"bridge": self.bridge, "port": self.port}}
        return out


@dataclass
class PodNet:
    key: str  # "<ns>/<name>"
    uid: str
    node: str
    labels: dict[str, str]
    sfs: list[int] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    running: bool = False


@dataclass
class NodeNet:
    """One DPU node: its Open vSwitch, its free SFs, its nv-ipam leases."""

    name: str
    datapath: Datapath
    free_sfs: list[int]
    leases: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (type, pool, ip) -> "<pod>/<if>"


def _awaiting_sandbox(pod: Pod) -> bool:
    """A pod whose network the CNI has not set up yet. The services attachment's kubelet model may report it
    Running first when its image is cached (its start delay ties with the sandbox's); a real kubelet starts no
    container before CNI ADD, so such a pod still gets its networks rather than running without them."""
    return pod.status.phase in (None, "Pending") or (
        pod.status.phase == "Running" and ANNOTATION_NETWORK_STATUS not in pod.metadata.annotations)


def sf_rep(sfnum: int) -> str:
    return f"{SF_REP_PREFIX}{sfnum}"


def _mac(seed: str) -> str:
    h = fnv1a_32(seed)
    return "02:00:" + ":".join(f"{(h >> s) & 0xFF:02x}" for s in (24, 16, 8, 0))


class CniWorld:
    """Multus + SR-IOV device plugin + ovs-cni + nv-ipam (+ the kubelet and DaemonSet bits) of one DPU cluster."""

    def __init__(self, env: simpy.Environment, now: Callable[[], float], store: MemoryStore, params: CniParams,
                 log: Callable[[str], None] | None = None) -> None:
        self.env = env
        self.now = now
        self.store = store
        self.params = params
        self.log = log or (lambda _text: None)
        self.nodes: dict[str, NodeNet] = {}
        self.pods: dict[str, PodNet] = {}
        self._starting: set[str] = set()
        self._waiting: dict[str, set[str]] = {}  # node -> pods waiting for that node's OVS
        store.subscribe(self._on_pod, [Pod])
        store.subscribe(self._on_daemonset, [DaemonSet])
        store.subscribe(self._on_node, [Node])

    # ---- nodes --------------------------------------------------------------------------------------------

    def add_node(self, name: str, datapath: Datapath) -> NodeNet:
        """A DPU node whose OVS is up: the device plugin registers its SFs; waiting pods go on."""
        node = self.nodes.get(name)
        if node is None or node.datapath is not datapath:
            # A re-provisioned DPU joining again brings a fresh OVS and all its SFs: what the old OS held is gone.
            for key in [k for k, state in self.pods.items() if state.node == name]:
                del self.pods[key]
            node = self.nodes[name] = NodeNet(name, datapath, list(range(self.params.sf_per_node)))
        self._advertise(name)
        for key in sorted(self._waiting.pop(name, set())):
            self._start(key)
        self._sync_all_daemonsets()
        return node

    def _advertise(self, name: str) -> None:
        count = str(self.params.sf_per_node)
        node = self.store.try_get(Node, name)
        if node is None or (node.status.allocatable.get(SF_RESOURCE) == count and node.status.capacity.get(SF_RESOURCE) == count):
            return
        with contextlib.suppress(ApiError):
            self.store.patch(Node, name, None, {"status": {"capacity": {SF_RESOURCE: count},
                                                           "allocatable": {SF_RESOURCE: count}}}, subresource="status")

    def _on_node(self, ev: WatchEvent) -> None:
        if ev.type == "ADDED":
            self._sync_all_daemonsets()

    # ---- DaemonSets --------------------------------------------------------------------------------------

    def _on_daemonset(self, ev: WatchEvent) -> None:
        if ev.type != "DELETED" and self.params.daemon_sets and isinstance(ev.object, DaemonSet):
            self._sync_daemonset(ev.object)

    def _sync_all_daemonsets(self) -> None:
        if self.params.daemon_sets:
            for ds in self.store.list(DaemonSet):
                self._sync_daemonset(ds)

    def _sync_daemonset(self, ds: DaemonSet) -> None:
        template = ds.spec.template
        if ANNOTATION_MULTUS_NETWORKS not in template.metadata.annotations or ds.metadata.deletion_timestamp:
            return
        owned: set[str] = set()
        for pod in self.store.list(Pod, ds.namespace):
            if any(r.uid == ds.metadata.uid for r in pod.metadata.owner_references) and pod.spec.node_name:
                owned.add(pod.spec.node_name)
        spec = template.spec
        affinity = ((spec.affinity or {}).get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution")
        required = NodeSelector.model_validate(affinity) if affinity else None
        for node in sorted(self.store.list(Node), key=lambda n: n.name):
            labels = node.metadata.labels
            if node.name in owned or node.name not in self.nodes:
                continue
            if any(labels.get(k) != v for k, v in spec.node_selector.items()):
                continue
            if not node_selector_matches(required, labels, {"metadata.name": node.name}):
                continue
            body = template.model_dump(by_alias=True, exclude_none=True)
            meta = body.get("metadata") or {}
            pod = Pod.model_validate({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {**meta, "name": f"{ds.name}-{fnv1a_32(node.name) % 0x1000000:06x}",
                             "namespace": ds.namespace,
                             "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": ds.name,
                                                  "uid": ds.metadata.uid, "controller": True,
                                                  "blockOwnerDeletion": True}]},
                "spec": {**(body.get("spec") or {}), "nodeName": node.name},
            })
            with contextlib.suppress(ApiError):
                self.store.create(pod)

    # ---- pods --------------------------------------------------------------------------------------------

    def _on_pod(self, ev: WatchEvent) -> None:
        pod = ev.object
        if not isinstance(pod, Pod):
            return
        key = f"{pod.namespace}/{pod.name}"
        if ev.type == "DELETED":
            self._release(key)
            return
        if ANNOTATION_MULTUS_NETWORKS not in pod.metadata.annotations or not pod.spec.node_name:
            return
        known = self.pods.get(key)
        if known is not None and known.uid != pod.metadata.uid:
            self._release(key)
            known = None
        if known is None and key not in self._starting and _awaiting_sandbox(pod):
            self._start(key)

    def _start(self, key: str) -> None:
        self._starting.add(key)
        self.env.process(self._run_pod(key))

    def _run_pod(self, key: str) -> Generator[Any, Any, None]:
        yield self.env.timeout(self.params.sandbox_delay)
        try:
            ns, _, name = key.partition("/")
            first = True
            while True:
                pod = self.store.try_get(Pod, name, ns)
                if pod is None or pod.metadata.deletion_timestamp is not None or (
                        key not in self.pods and not _awaiting_sandbox(pod)):
                    return
                node_name = pod.spec.node_name or ""
                node = self.nodes.get(node_name)
                if node is None:
                    self._waiting.setdefault(node_name, set()).add(key)
                    return
                state = self.pods.get(key)
                if state is None:
                    state = PodNet(key, pod.metadata.uid or "", node_name, dict(pod.metadata.labels))
                    if not self._admit(pod, node, state):
                        return
                    self.pods[key] = state
                try:
                    self._cni_add(pod, node, state)
                except CniError as e:
                    if first:
                        self.log(f"cni {key}: {e}")
                    first = False
                    self._set_condition(pod, "False", "ContainerCreating", f"failed to create pod sandbox: {e}")
                    yield self.env.timeout(self.params.retry)
                    continue
                self._running(pod, state)
                return
        finally:
            self._starting.discard(key)

    def _requested_sfs(self, pod: Pod, networks: list[dict[str, Any]]) -> int:
        explicit = 0
        for c in pod.spec.containers:
            res = c.resources
            if res is not None:
                value = res.limits.get(SF_RESOURCE, res.requests.get(SF_RESOURCE))
                if value is not None:
                    explicit += int(value)
        if explicit:
            return explicit
        wanted = 0
        for net in networks:
            nad = self._nad(net, pod)
            if nad is not None and NetConf.of(nad).resource_name == SF_RESOURCE:
                wanted += 1
        return wanted

    def _admit(self, pod: Pod, node: NodeNet, state: PodNet) -> bool:
        """The device manager's Allocate at admission: the SFs are the pod's until it is deleted."""
        try:
            networks = parse_networks(pod.metadata.annotations.get(ANNOTATION_MULTUS_NETWORKS, ""), pod.namespace or "default")
            requested = self._requested_sfs(pod, networks)
        except (NetworkAnnotationError, CniError, ValueError):
            requested = 0  # the CNI reports the bad annotation on every attempt
        if requested > len(node.free_sfs):
            message = (f"Allocate failed due to requested number of devices unavailable for {SF_RESOURCE}. "
                       f"Requested: {requested}, Available: {len(node.free_sfs)}, which is unexpected")
            with contextlib.suppress(ApiError):
                self.store.patch(Pod, pod.name, pod.namespace, {"status": {
                    "phase": "Failed", "reason": "UnexpectedAdmissionError", "message": message}}, subresource="status")
            return False
        state.sfs = node.free_sfs[:requested]
        del node.free_sfs[:requested]
        return True

    def _nad(self, net: Mapping[str, Any], pod: Pod) -> NetworkAttachmentDefinition | None:
        return self.store.try_get(NetworkAttachmentDefinition, str(net["name"]), str(net.get("namespace") or pod.namespace))

    def _cni_add(self, pod: Pod, node: NodeNet, state: PodNet) -> None:
        """Multus: every network in order; one failure undoes what this attempt did."""
        self._detach(node, state)
        try:
            networks = parse_networks(pod.metadata.annotations.get(ANNOTATION_MULTUS_NETWORKS, ""), pod.namespace or "default")
        except NetworkAnnotationError as e:
            raise CniError(str(e)) from e
        sfs = iter(state.sfs)
        try:
            for i, net in enumerate(networks):
                nad = self._nad(net, pod)
                ns = str(net.get("namespace") or pod.namespace)
                if nad is None:
                    raise CniError(f"Multus: cannot find a network-attachment-definition ({net['name']}) in namespace ({ns})")
                conf = NetConf.of(nad)
                att = Attachment(network=f"{ns}/{net['name']}", interface=str(net.get("interface") or f"net{i + 1}"))
                state.attachments.append(att)
                if conf.type == "ovs":
                    device = next(sfs, None) if conf.resource_name else None
                    self._ovs_add(pod, node, conf, att, device)
                if conf.ipam == NV_IPAM:
                    lease = self._ipam_add(node, state, att, net)
                    if lease.gateway is not None and lease.address.split("/")[0] == lease.gateway:
                        att.gateway_lease = lease
                    else:
                        att.lease = lease
        except CniError:
            self._detach(node, state)
            raise

    def _ovs_add(self, pod: Pod, node: NodeNet, conf: NetConf, att: Attachment, device: int | None) -> None:
        ifname = att.interface
        if (ifname.endswith("_sf") or ifname.endswith("_if")) and device is None:
            raise CniError("interface is SF but deviceID is not set.")
        bridge = conf.bridge
        dp = node.datapath
        if bridge not in dp.bridges:
            raise CniError(f"failed to find bridge {bridge}")
        host_if = sf_rep(device) if device is not None else f"veth{fnv1a_32(f'{pod.metadata.uid}/{ifname}'):08x}"
        dpf_id = f"{pod.namespace}/{pod.name}/{ifname}"
        for stale_bridge in list(dp.bridges.values()):
            if host_if in stale_bridge.ports:
                stale_bridge.del_port(host_if)
        try:
            dp.bridge(bridge).add_port(
                host_if, conf.interface_type, ofport_request=ofport_request_for(host_if),
                iface_external_ids={"iface-id": "", "dpf-id": dpf_id},
                external_ids={"contNetns": f"/var/run/netns/{pod.metadata.uid}", "contIface": ifname, "owner": OVS_CNI_OWNER},
            )
            att.bridge, att.port, att.mac = bridge, host_if, _mac(dpf_id)
            if bridge == HBN_BRIDGE:
                self._hbn_patch(dp, host_if, ifname, att)
        except OvsError as e:
            raise CniError(str(e)) from e

    def _hbn_patch(self, dp: Datapath, host_if: str, ifname: str, att: Attachment) -> None:
        """CreatePatch(hostIf, contIf, br-hbn, br-sfc), then the DAL stand-in's pairing flows on br-hbn."""
        on_hbn, on_sfc = f"p{host_if}brhbn", f"p{host_if}brsfc"
        owner = {"contNetns": "", "contIface": "", "owner": OVS_CNI_OWNER}
        for bridge, name, peer, ids in (
            (HBN_BRIDGE, on_hbn, on_sfc, {"hbn_rep_ofport": host_if, "hbn_netdev": ifname}),
            (SFC_BRIDGE, on_sfc, on_hbn, {"iface-id": host_if, "dpf-id": ifname}),
        ):
            existing = dp.find_port(name)
            if existing is not None:
                existing[0].del_port(name)
            dp.bridge(bridge).add_port(name, "patch", ofport_request=ofport_request_for(name), iface_external_ids=ids,
                                       external_ids=owner, options={"peer": peer})
            att.patches.append((bridge, name))
        br = dp.bridge(HBN_BRIDGE)
        rep, patch = br.ports[host_if].interface.ofport, br.ports[on_hbn].interface.ofport
        att.paired = (rep, patch)
        dp.add_flows(HBN_BRIDGE, [
            f"cookie={HBN_PAIR_COOKIE:#x},table=0,priority={HBN_PAIR_PRIORITY},in_port={patch},actions=output:{rep}",
            f"cookie={HBN_PAIR_COOKIE:#x},table=0,priority={HBN_PAIR_PRIORITY},in_port={rep},actions=output:{patch}",
        ])

    def _pool(self, pool_type: str, name: str) -> IPPool | CIDRPool | None:
        cls: type[IPPool] | type[CIDRPool] = CIDRPool if pool_type == POOL_TYPE_CIDRPOOL else IPPool
        found = sorted(self.store.list(cls), key=lambda p: (p.namespace or "", p.name))
        return next((p for p in found if p.name == name), None)

    def _ipam_add(self, node: NodeNet, state: PodNet, att: Attachment, net: Mapping[str, Any]) -> Lease:
        """nv-ipam: this node's block of the pool; the lowest address not leased, not the gateway, not excluded.
        With cni-args `allocateDefaultGateway: true` the gateway itself (nv-ipam: "Request to allocate pool's
        default gateway as interface IP address"; the pool must have one, and only one pod of the node gets it)."""
        args = net.get("cni-args") or {}
        names = args.get(CNI_ARG_POOL_NAMES) or [str(net["name"])]
        pool_type = str(args.get(CNI_ARG_POOL_TYPE) or POOL_TYPE_IPPOOL).lower()
        pool_name = str(names[0])
        pool = self._pool(pool_type, pool_name)
        if pool is None:
            raise CniError(f"nv-ipam: failed to get pool config: {pool_type} {pool_name} not found")
        block = pool_block(pool, node.name)
        if block is None:
            raise CniError(f"nv-ipam: no allocation for node {node.name} in {pool_type} {pool_name}")
        first, last, gateway, plen = block
        owner = f"{state.key}/{att.interface}"
        if args.get(CNI_ARG_ALLOCATE_DEFAULT_GATEWAY) is True and self.params.allocate_default_gateway:
            if gateway is None:
                raise CniError(f"nv-ipam: {pool_type} {pool_name} has no gateway for node {node.name}: "
                               f"allocateDefaultGateway can't be used")
            holder = node.leases.setdefault((pool_type, pool_name, gateway), owner)
            if holder != owner:
                raise CniError(f"nv-ipam: gateway {gateway} of {pool_type} {pool_name} is already allocated to {holder}")
            return Lease(pool_type, pool_name, f"{gateway}/{plen}", gateway)
        for addr in usable_addresses(first, last, gateway, pool.spec.exclusions):
            lease_key = (pool_type, pool_name, addr)
            if lease_key not in node.leases:
                node.leases[lease_key] = owner
                return Lease(pool_type, pool_name, f"{addr}/{plen}", gateway)
        raise CniError(f"nv-ipam: no free IP addresses in {pool_type} {pool_name} on node {node.name}")

    def _detach(self, node: NodeNet, state: PodNet) -> None:
        """CNI DEL of every attachment: ports, patches and pairing flows, leases."""
        dp = node.datapath
        for att in state.attachments:
            for bridge, name in [(att.bridge, att.port), *att.patches]:
                if bridge in dp.bridges:
                    dp.bridges[bridge].del_port(name)
            if HBN_BRIDGE in dp.bridges:
                # OVS keeps flows naming deleted ports; the DAL removes its pairing with the port.
                for ofport in att.paired:
                    dp.del_flows(HBN_BRIDGE, f"cookie={HBN_PAIR_COOKIE:#x}/-1,in_port={ofport}")
            for lease in (att.lease, att.gateway_lease):
                if lease is not None:
                    node.leases.pop((lease.pool_type, lease.pool, lease.address.split("/")[0]), None)
        state.attachments = []

    def _release(self, key: str) -> None:
        state = self.pods.pop(key, None)
        if state is None:
            return
        node = self.nodes.get(state.node)
        if node is not None:
            self._detach(node, state)
            node.free_sfs = sorted({*node.free_sfs, *state.sfs})

    def _running(self, pod: Pod, state: PodNet) -> None:
        now = rfc3339(self.now())
        status = [a.status() for a in state.attachments]
        with contextlib.suppress(ApiError):
            self.store.patch(Pod, pod.name, pod.namespace,
                             {"metadata": {"annotations": {ANNOTATION_NETWORK_STATUS: json.dumps(status, indent=1)}}})
            self.store.patch(Pod, pod.name, pod.namespace, {"status": {
                "phase": "Running", "startTime": now,
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
                "containerStatuses": [{"name": c.name, "ready": True, "restartCount": 0, "started": True,
                                       "state": {"running": {"startedAt": now}}} for c in pod.spec.containers],
            }}, subresource="status")
        state.running = True

    def _set_condition(self, pod: Pod, status: str, reason: str, message: str) -> None:
        current = next((c for c in pod.status.conditions if c.type == "Ready"), None)
        if current is not None and current.message == message:
            return
        with contextlib.suppress(ApiError):
            self.store.patch(Pod, pod.name, pod.namespace, {"status": {"conditions": [{
                "type": "Ready", "status": status, "reason": reason, "message": message,
                "lastTransitionTime": rfc3339(self.now())}]}}, subresource="status")

    # ---- lookups for traces and checks ----------------------------------------------------------------------

    def endpoint(self, node: str, bridge: str, port: str) -> tuple[PodNet, Attachment] | None:
        """The pod interface behind an OVS port of a node (its representor), if any."""
        for state in self.pods.values():
            if state.node != node:
                continue
            for att in state.attachments:
                if att.bridge == bridge and att.port == port:
                    return state, att
        return None

    def pod_ports(self, node: str) -> Iterable[tuple[str, str]]:
        """(bridge, port) of every live pod's ports and patches on a node."""
        for state in self.pods.values():
            if state.node == node:
                for att in state.attachments:
                    if att.port:
                        yield att.bridge, att.port
                    yield from att.patches


def pool_block(pool: IPPool | CIDRPool, node: str) -> tuple[str, str, str | None, int] | None:
    """(first, last, gateway, prefix length) of a node's block in a pool, from the pool's status."""
    if isinstance(pool, IPPool):
        net = ipaddress.ip_network(pool.spec.subnet, strict=False)
        for a in pool.status.allocations:
            if a.node_name == node:
                return a.start_ip, a.end_ip, pool.spec.gateway, net.prefixlen
        return None
    for c in pool.status.allocations:
        if c.node_name == node:
            prefix = ipaddress.ip_network(c.prefix, strict=False)
            if prefix.prefixlen >= prefix.max_prefixlen - 1:
                first, last = prefix.network_address, prefix.broadcast_address
            else:
                first, last = prefix.network_address + 1, prefix.broadcast_address - 1
            return str(first), str(last), c.gateway, prefix.prefixlen
    return None


__all__ = [
    "ANNOTATION_NETWORK_STATUS",
    "HBN_PAIR_COOKIE",
    "SF_RESOURCE",
    "Attachment",
    "CniError",
    "CniParams",
    "CniWorld",
    "Lease",
    "NetConf",
    "NodeNet",
    "PodNet",
    "dpu_networking_nads",
    "fnv1a_32",
    "ofport_request_for",
    "pool_block",
    "sf_rep",
]
