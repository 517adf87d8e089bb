"""The SFC controller: DPF's node agent on every DPU (DaemonSet `sfc-controller`, env `SFC_NODE_NAME`), talking
to the DPU's Open vSwitch through the `Ovs` port.

Three loops, as in DPF:
- ServiceInterface (this node's only): ports on br-sfc by interface type (physical `<interfaceName>` with
  Port `dpf-type=physical`; pf `pf<pfID>hpf`; vf `pf<pfID>vf<vfID>`; ovn: the patch pair `puplinkbrovn` on
  br-ovn <-> `puplinkbrsfc` on br-sfc), Interface `dpf-id=<ns>/<name>`; vlan is skipped; service ports are the
  CNI's. Finalizer `svc.dpu.nvidia.com/ServiceInterface-finalizer`; requeue 20 s ok / 5 s error.
- ServiceChain (this node's only): every port resolved to an ofport through the `dpf-id` of its
  ServiceInterface (service type: of the Pod on this node carrying the serviceID), the ServiceInterface
  labelled `svc.dpu.nvidia.com/service-chain=<chain>`, then per switch one bundle of flows (facts 5.2) under
  cookie FNV-1a-64(`<ns>/<name>`); gone -> labels removed, flows deleted by cookie. Requeue 5 s always
  (`SfcOptions`: a world that wakes programmed chains on what the re-apply reacts to may lengthen it for them).
- The stale object remover, every 60 s: flows whose cookie is no existing chain's, br-sfc ports no
  ServiceInterface produces (CNI-owned and physical ports exempt).

Our extension: ServiceInterface and ServiceChain get a `Ready` condition (with observedGeneration) once their
ports / flows are programmed; DPF leaves their status empty. With `SfcOptions.status_writes_wake` off (the
twin) those writes do not wake the controllers that made them (an update that moves neither spec, deletion nor
finalizers is dropped), so passes are DPF's. The chain controller also watches ServiceInterfaces and Pods and
wakes the programmed chains a change concerns.

Differences from DPF (for docs/differences.md):
- ovn deletion removes `puplinkbrovn` from br-ovn (DPF asks br-sfc for both patch ports, so it stays).
- The stale port sweep keeps the ports of this node's ServiceInterfaces only (DPF: of every node's, so an
  orphan whose name another node still uses is never swept).
- A port already gone is not deleted again (DPF relies on the OVSDB delete tolerating absence).

The `Ovs` port's `ports(bridge)` rows are read as dicts with `name`, `ofport`, `type`, `options` and the
external_ids of the Interface (`iface_external_ids`, or `external_ids` as the twin's model names it) and of
the Port (`port_external_ids`); without a separate Port map `external_ids` stands for both.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dpf_core.api.conditions import (
    REASON_ERROR,
    REASON_FAILURE,
    REASON_PENDING,
    REASON_SUCCESS,
    TYPE_READY,
    set_condition,
)
from dpf_core.api.external import Pod
from dpf_core.api.meta import ConditionStatus, KubeObject, shallow_copy
from dpf_core.api.svc import (
    FINALIZER_SERVICE_INTERFACE,
    INTERFACE_TYPE_OVN,
    INTERFACE_TYPE_PF,
    INTERFACE_TYPE_PHYSICAL,
    INTERFACE_TYPE_SERVICE,
    INTERFACE_TYPE_VF,
    INTERFACE_TYPE_VLAN,
    LABEL_DPF_SERVICE_ID,
    LABEL_SERVICE_CHAIN,
    ServiceChain,
    ServiceIfc,
    ServiceInterface,
)
from dpf_core.ports import Ovs
from dpf_core.runtime import DONE, Context, Controller, Lister, Request, Result, Watch
from dpf_core.store.protocol import WatchEvent
from dpf_core.store.selectors import compile_label_selector

from .mirror import with_metadata
from .options import SfcOptions
from .svc_common import go_map

NAME = "sfc"
NAME_SERVICE_INTERFACE = "sfc-serviceinterface"
NAME_SERVICE_CHAIN = "sfc-servicechain"
NAME_STALE_OBJECT_REMOVER = "sfc-stale-object-remover"

SFC_BRIDGE = "br-sfc"
OVN_BRIDGE = "br-ovn"
HBN_BRIDGE = "br-hbn"
OVN_PATCH = "puplinkbrovn"
OVN_PATCH_PEER = "puplinkbrsfc"
EXTERNAL_ID_DPF_ID = "dpf-id"
EXTERNAL_ID_DPF_TYPE = "dpf-type"
DPF_TYPE_PHYSICAL = "physical"
EXTERNAL_ID_OWNER = "owner"
OVS_CNI_OWNER = "ovs-cni.network.kubevirt.io"
IFACE_TYPE_DPDK = "dpdk"
IFACE_TYPE_PATCH = "patch"

REQUEUE_SUCCESS = 20.0
REQUEUE_ERROR = 5.0
REQUEUE_FLOWS = 5.0
STALE_REMOVAL_PERIOD = 60.0  # `--stale-flows-removal-period`

_FNV64_OFFSET = 0xCBF29CE484222325
_FNV64_PRIME = 0x100000001B3
_U64 = (1 << 64) - 1
_COOKIE = re.compile(r"\bcookie=(0x[0-9a-fA-F]+|\d+)")


def fnv1a_64(text: str) -> int:
    """Go's hash/fnv New64a over the UTF-8 bytes: the chain's OpenFlow cookie."""
    h = _FNV64_OFFSET
    for byte in text.encode():
        h ^= byte
        h = (h * _FNV64_PRIME) & _U64
    return h


@functools.lru_cache(maxsize=65536)
def chain_cookie(namespace: str | None, name: str) -> int:
    # Pure and asked for every chain of the cluster on every stale sweep of every node: computed once.
    return fnv1a_64(f"{namespace or ''}/{name}")


def chain_flows(cookie: int, ports: Sequence[str]) -> list[str]:
    """One switch's flows, in DPF's text: per member A, flood to every other member B and learn the way back
    (a priority-30 `dl_dst=<src mac>` flow out of A, 10 s idle). Fewer than two members: no flows."""
    if len(ports) < 2:
        return []
    flows: list[str] = []
    for i, a in enumerate(ports):
        others = [b for j, b in enumerate(ports) if j != i]
        learn = ",".join(
            f"learn(cookie={cookie},idle_timeout=10,table=0,priority=30,in_port={b},dl_dst=dl_src,output:NXM_OF_IN_PORT[])"
            for b in others
        )
        outputs = ",".join(f"output:{b}" for b in others)
        flows.append(f"cookie={cookie}, table=0, priority=20, in_port={a} actions={learn},{outputs}")
    return flows


def port_name(si: ServiceInterface) -> str:
    """FigureOutName: the br-sfc port a ServiceInterface stands for ("" for vlan, service and ovn)."""
    spec = si.spec
    if spec.interface_type == INTERFACE_TYPE_PHYSICAL and spec.physical is not None:
        return spec.physical.interface_name
    if spec.interface_type == INTERFACE_TYPE_PF and spec.pf is not None:
        return f"pf{spec.pf.pf_id}hpf"
    if spec.interface_type == INTERFACE_TYPE_VF and spec.vf is not None:
        return f"pf{spec.vf.pf_id}vf{spec.vf.vf_id}"
    return ""


def produced_port(si: ServiceInterface) -> str:
    """The br-sfc port a ServiceInterface produces, as the stale sweep counts it (ovn: the br-sfc patch end)."""
    return OVN_PATCH_PEER if si.spec.interface_type == INTERFACE_TYPE_OVN else port_name(si)


def dpf_id(obj: KubeObject) -> str:
    return f"{obj.namespace}/{obj.name}"


# --- reading the Ovs port ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PortRow:
    name: str
    ofport: int | None = None
    type: str = ""
    iface_external_ids: Mapping[str, str] = field(default_factory=dict)
    port_external_ids: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> PortRow:
        # Every chain pass reads every row of the bridges it looks up: no generator, no str() of an int ofport.
        merged = row.get("external_ids") or {}
        if "iface_external_ids" in row:
            iface = row["iface_external_ids"] or {}
        elif "interface_external_ids" in row:
            iface = row["interface_external_ids"] or {}
        else:
            iface = merged
        port = row.get("port_external_ids", merged) or {}
        ofport = row.get("ofport")
        if type(ofport) is not int:
            ofport = int(ofport) if isinstance(ofport, int | str) and str(ofport).lstrip("-").isdigit() else None
        return cls(str(row.get("name", "")), ofport, str(row.get("type") or ""), dict(iface), dict(port))


def _ovs(ctx: Context) -> Ovs:
    ovs: Ovs | None = getattr(ctx.ports, "ovs", None)
    if ovs is None:
        raise RuntimeError(f"{ctx.controller or NAME}: no Ovs port supplied")
    return ovs


def _iface_ids(row: Mapping[str, Any]) -> Mapping[str, str]:
    """`PortRow.of(row).iface_external_ids` without building the row."""
    if "iface_external_ids" in row:
        ids = row["iface_external_ids"] or {}
    elif "interface_external_ids" in row:
        ids = row["interface_external_ids"] or {}
    else:
        ids = row.get("external_ids") or {}
    return ids if type(ids) is dict else dict(ids)


def _port_ids(row: Mapping[str, Any]) -> Mapping[str, str]:
    """`PortRow.of(row).port_external_ids` without building the row: the stale sweep reads two keys of every
    br-sfc row every period on every DPU node."""
    merged = row.get("external_ids") or {}
    return row.get("port_external_ids", merged) or {}


class OvsView:
    """The rows of a few bridges, read once per pass, on the pass's first lookup (as DPF asks OVS only once
    it has the ServiceInterface: a chain pass that finds none reads nothing). A `PortRow` is built only for
    the rows a lookup returns: a chain pass asks for a few of every row it reads."""

    def __init__(self, ovs: Ovs, bridges: Iterable[str]) -> None:
        self._ovs = ovs
        self._bridges = tuple(bridges)
        self._raw: dict[str, list[Mapping[str, Any]]] | None = None

    def _read(self) -> dict[str, list[Mapping[str, Any]]]:
        raw = self._raw
        if raw is None:
            raw = {}
            for bridge in self._bridges:
                try:
                    raw[bridge] = list(self._ovs.ports(bridge))
                except Exception:
                    if bridge == SFC_BRIDGE:
                        raise
                    raw[bridge] = []  # br-hbn exists only in HBN setups
            self._raw = raw
        return raw

    @property
    def rows(self) -> dict[str, list[PortRow]]:
        return {bridge: [PortRow.of(r) for r in rows] for bridge, rows in self._read().items()}

    def find(self, bridge: str, name: str) -> PortRow | None:
        for row in self._read().get(bridge, ()):
            if str(row.get("name", "")) == name:
                return PortRow.of(row)
        return None

    def ofport_of(self, key: str) -> int:
        """findInterface: the unique Interface with `dpf-id=<key>`; on br-sfc its ofport, elsewhere the ofport of
        the br-sfc patch port `p<name>brsfc`."""
        matches = [
            (bridge, raw)
            for bridge, rows in self._read().items()
            for raw in rows
            if _iface_ids(raw).get(EXTERNAL_ID_DPF_ID) == key
        ]
        if len(matches) != 1:
            raise LookupError(f"failed to find matching interface with external_ids :map[{EXTERNAL_ID_DPF_ID}:{key}]")
        bridge, raw = matches[0]
        row = PortRow.of(raw)
        if bridge != SFC_BRIDGE:
            patch = f"p{row.name}brsfc"
            found = self.find(SFC_BRIDGE, patch)
            if found is None:
                raise LookupError(f"port {row.name} or {patch} not found in {SFC_BRIDGE}")
            row = found
        if row.ofport is None or row.ofport < 0:
            raise LookupError(f"interface {row.name} Ofport is nil")
        return row.ofport


# --- status (our extension) --------------------------------------------------------------------------------


def _set_ready(obj: ServiceInterface | ServiceChain, status: ConditionStatus, reason: str, message: str, now: str) -> None:
    generation = obj.metadata.generation
    set_condition(obj.status.conditions, TYPE_READY, status, reason, message, now, generation)
    obj.status.observed_generation = generation


def _ready_status(obj: ServiceInterface | ServiceChain, status: ConditionStatus, reason: str, message: str, now: str) -> Any:
    """`obj.status` as `_set_ready` leaves it, built without copying `obj` (a store snapshot): a new status and
    conditions list; the Ready condition, when it changes, is an edited copy, the others stay shared with the
    snapshot (read-only), so the store's status write copies only what moved. Every pass that writes its Ready
    paid a copy of the object's metadata and of its whole status before."""
    generation = obj.metadata.generation
    conditions = list(obj.status.conditions)
    set_condition(conditions, TYPE_READY, status, reason, message, now, generation, copy_on_write=True)
    return shallow_copy(obj.status, {"conditions": conditions, "observed_generation": generation})


def _write_status(ctx: Context, current: ServiceInterface | ServiceChain, status: Any) -> None:
    """`mirror.write` of a pass that changed only the status: the status subresource, when it changed."""
    if status != current.status:
        ctx.client.update_status(shallow_copy(current, {"status": status}))


def _ready_as(obj: ServiceInterface | ServiceChain, status: ConditionStatus, reason: str, message: str) -> bool:
    """Whether `_set_ready` with these values would leave `obj`'s status as it is (then a pass has nothing
    to write, and needs no copy of the object)."""
    generation = obj.metadata.generation
    if obj.status.observed_generation != generation:
        return False
    for c in obj.status.conditions:
        if c.type == TYPE_READY:
            return (
                c.status == status
                and c.reason == reason
                and c.message == message
                and c.observed_generation == generation
            )
    return False


def _on_node(node_name: str, *, status_writes_wake: bool = True) -> Any:
    def pred(ev: WatchEvent) -> bool:
        spec = getattr(ev.object, "spec", None)
        if getattr(spec, "node", None) != node_name:
            return False
        return status_writes_wake or _spec_or_lifecycle_changed(ev)

    return pred


def _pod_for_service(ctx: Context, namespace: str | None, service_id: str, node_name: str) -> Pod:
    pods = [
        p
        for p in ctx.client.list(Pod, namespace, label_selector={LABEL_DPF_SERVICE_ID: service_id})
        if p.spec.node_name == node_name
    ]
    labels = {LABEL_DPF_SERVICE_ID: service_id}
    if not pods:
        raise LookupError(f"no pod in namespace({namespace}) matching labels({go_map(labels)}) on node({node_name}) found")
    if len(pods) > 1:
        raise LookupError(
            f"expected only one pod in namespace({namespace}) to match labels({go_map(labels)}) on node({node_name}). "
            f"found {len(pods)}"
        )
    return pods[0]


def interface_key(ctx: Context, si: ServiceInterface, namespace: str | None, node_name: str) -> str:
    """The `dpf-id` a ServiceInterface's OVS interface carries (service type: the Pod's interface)."""
    if si.spec.interface_type != INTERFACE_TYPE_SERVICE:
        return dpf_id(si)
    service = si.spec.service
    if service is None or not service.interface_name:
        raise LookupError("empty interface name for serviceInterface of type service")
    pod = _pod_for_service(ctx, namespace, service.service_id, node_name)
    return f"{pod.namespace}/{pod.name}/{service.interface_name}"


@functools.lru_cache(maxsize=4096)
def _port_selector(match_labels: tuple[tuple[str, str], ...]) -> Any:
    # A chain port's matchLabels, compiled once: every ServiceInterface event of a node tests each of its chains.
    return compile_label_selector(dict(match_labels))


def _matcher(ifc: ServiceIfc) -> Any:
    return _port_selector(tuple(sorted(ifc.match_labels.items())))


def _programmed(sc: ServiceChain) -> bool:
    """Ready for its current spec: its last pass programmed its flows."""
    generation = sc.metadata.generation
    if sc.status.observed_generation != generation:
        return False
    return any(
        c.type == TYPE_READY and c.status == "True" and c.observed_generation == generation
        for c in sc.status.conditions
    )


def _selects_any(sc: ServiceChain, labels: Sequence[Mapping[str, str]]) -> bool:
    for switch in sc.spec.switches:
        for port in switch.ports:
            matcher = _matcher(port.service_interface)
            if any(matcher.matches(lbl) for lbl in labels):
                return True
    return False


def _spec_or_lifecycle_changed(ev: WatchEvent) -> bool:
    """False for an update that moved neither spec, deletion nor finalizers: our own Ready writes (DPF writes
    no status, so its agent is never woken by one) and labels, which the ServiceInterface and ServiceChain
    passes do not read from their own object."""
    if ev.type != "MODIFIED" or ev.old is None:
        return True
    old, new = ev.old.metadata, ev.object.metadata
    return (
        old.generation != new.generation
        or old.deletion_timestamp != new.deletion_timestamp
        or old.finalizers != new.finalizers
    )


# --- the node's objects, kept by the agent's watches ------------------------------------------------------
#
# DPF's agent lists the whole cluster's ServiceInterfaces by label for every port of every chain, every 5 s
# (and every ServiceChain and ServiceInterface on every stale sweep), then keeps this node's: O(cluster) per
# chain pass, O(nodes^2) per DPU cluster. The agent's own watches keep this node's objects here instead, so a
# lookup walks the handful on this node. What a lookup returns is re-read from the store by name, so an object
# whose `spec.node` moved elsewhere (an event this node may never see: the twin routes events by the new node)
# drops out, and the result is what the label-selected list filtered by node gives.


def _rv_newer_or_same(old: KubeObject, new: KubeObject) -> bool:
    """False only for a replayed (initial list) copy older than the one held."""
    a, b = old.metadata.resource_version, new.metadata.resource_version
    if a and b and a.isdigit() and b.isdigit():
        return int(b) >= int(a)
    return True


_ObjKey = tuple[str, str]  # (namespace, name)


class NodeObjects:
    """This node's ServiceInterfaces and ServiceChains as the agent's watches last delivered them.

    A kind's table is `live` once its controller started (the informers' initial list went through the
    watch); until then readers fall back to store lists. Mappers may run on the store's thread and lookups on
    a worker's: tables are read and written under `lock`, never held across a store call."""

    def __init__(self, node_name: str) -> None:
        self.node_name = node_name
        self.lock = threading.RLock()
        self.interfaces: dict[_ObjKey, ServiceInterface] = {}
        self.chains: dict[_ObjKey, ServiceChain] = {}
        self.interfaces_live = False
        self.chains_live = False
        # The tables in key order (chains: the programmed ones only), kept until the table changes: every
        # ServiceInterface event and chain lookup of the node walks them in that order, and they change far
        # less often than they are read. The tables are written through `_feed` and `reset` only.
        self._sorted_interfaces: list[tuple[_ObjKey, ServiceInterface]] | None = None
        self._programmed_chains: list[tuple[_ObjKey, ServiceChain]] | None = None

    def reset(self, kind: type[KubeObject]) -> None:
        with self.lock:
            if kind is ServiceInterface:
                self.interfaces.clear()
                self.interfaces_live = False
                self._sorted_interfaces = None
            else:
                self.chains.clear()
                self.chains_live = False
                self._programmed_chains = None

    def _interfaces_in_order(self) -> list[tuple[_ObjKey, ServiceInterface]]:
        """`sorted(self.interfaces.items())`; call under `lock`."""
        view = self._sorted_interfaces
        if view is None:
            view = self._sorted_interfaces = sorted(self.interfaces.items())
        return view

    def _programmed_in_order(self) -> list[tuple[_ObjKey, ServiceChain]]:
        """The programmed chains (`_programmed`) in key order; call under `lock`."""
        view = self._programmed_chains
        if view is None:
            view = self._programmed_chains = sorted((k, sc) for k, sc in self.chains.items() if _programmed(sc))
        return view

    def _feed(self, table: dict[_ObjKey, Any], ev: WatchEvent) -> None:
        obj = ev.object
        key = (obj.metadata.namespace or "", obj.name)
        with self.lock:
            if ev.type == "DELETED" or getattr(obj.spec, "node", None) != self.node_name:  # type: ignore[attr-defined]
                if table.pop(key, None) is not None:
                    self._changed(table)
                return
            prev = table.get(key)
            if prev is not None and not _rv_newer_or_same(prev, obj):
                return
            table[key] = obj
            self._changed(table)

    def _changed(self, table: dict[_ObjKey, Any]) -> None:
        if table is self.interfaces:
            self._sorted_interfaces = None
        else:
            self._programmed_chains = None

    # -- watch mappers that enqueue nothing --
    def on_interface(self, ev: WatchEvent) -> list[Request]:
        if isinstance(ev.object, ServiceInterface):
            self._feed(self.interfaces, ev)
        return []

    def on_chain(self, ev: WatchEvent) -> list[Request]:
        if isinstance(ev.object, ServiceChain):
            self._feed(self.chains, ev)
        return []

    # -- reads --
    def interfaces_on_node(
        self, ctx: Context, namespace: str | None, labels: Mapping[str, str] | None = None
    ) -> list[ServiceInterface] | None:
        """This node's ServiceInterfaces (in `namespace`, matching `labels`) by name, as the store holds them
        now; None while the table is not live."""
        matcher = _port_selector(tuple(sorted(labels.items()))) if labels is not None else None
        with self.lock:
            if not self.interfaces_live:
                return None
            candidates = [
                (key, si)
                for key, si in self._interfaces_in_order()
                if (namespace is None or key[0] == namespace)
                and (matcher is None or matcher.matches(si.metadata.labels))
            ]
        found: list[ServiceInterface] = []
        for (ns, name), _cached in candidates:
            current = ctx.client.try_get(ServiceInterface, name, ns or None)
            if current is None or current.spec.node != self.node_name:
                continue
            if matcher is None or matcher.matches(current.metadata.labels):
                found.append(current)
        return found

    def chain_requests(
        self, *, dpf_ids: Iterable[str] | None = None, cookies: Iterable[int] | None = None
    ) -> list[Request]:
        """This node's programmed ServiceChains, in name order: all of them, or those an OVS change could
        concern: the ones owning one of `cookies`, and the ones whose ports select the ServiceInterface behind
        one of `dpf_ids` (an id that names no ServiceInterface here, such as a pod interface's, concerns them
        all; an interface without one, "", none: a chain finds its members by `dpf-id`)."""
        with self.lock:
            chains = self._programmed_in_order()
            if dpf_ids is None and cookies is None:
                return [Request(ns or None, name) for (ns, name), _ in chains]
            wanted = set(cookies or ())
            selected: list[Mapping[str, str]] = []
            for key in dpf_ids or ():
                if not key:
                    continue
                ns, sep, name = key.partition("/")
                si = self.interfaces.get((ns, name)) if sep and "/" not in name else None
                if si is None:
                    return [Request(ns or None, name) for (ns, name), _ in chains]
                selected.append(si.metadata.labels)
        woken: list[Request] = []
        for (ns, name), sc in chains:
            if chain_cookie(ns or None, name) in wanted or (selected and _selects_any(sc, selected)):
                woken.append(Request(ns or None, name))
        return woken

    # -- watch mappers that wake this node's chains --
    #
    # DPF re-applies every chain every 5 s and so notices, a little later, whatever moved under it. Here a
    # programmed chain is also woken by the change itself, so a world that also wakes it on OVS changes
    # (`wake_node_chains`) can re-apply a programmed chain far less often (SfcOptions.chain_requeue). A chain
    # that is not programmed retries every `chain_retry` (DPF's 5 s) whatever happens and is not woken: a
    # wake in the middle of its members being wired would only fail it again with another message (a write).

    def chains_for_interface(self, ev: WatchEvent) -> list[Request]:
        """A ServiceInterface change a chain pass would see: one appearing or going, its spec moving (another
        port, another key) or its labels moving in or out of a chain port's selector. Status writes and the
        chain's own `service-chain` label leave every match as it was and wake nothing."""
        new = ev.object
        if not isinstance(new, ServiceInterface):
            return []
        old = ev.old if isinstance(ev.old, ServiceInterface) else None
        spec_moved = (
            ev.type != "MODIFIED" or old is None
            or old.metadata.generation != new.metadata.generation or old.spec.node != new.spec.node
        )
        if not spec_moved and old is not None and old.metadata.labels == new.metadata.labels:
            return []
        namespace = new.metadata.namespace or ""
        sides = [si.metadata.labels for si in (old, new) if si is not None and si.spec.node == self.node_name]
        if not sides:
            return []
        with self.lock:
            chains = [(key, sc) for key, sc in self._programmed_in_order() if key[0] == namespace]
        woken: list[Request] = []
        for (ns, name), sc in chains:
            for switch in sc.spec.switches:
                hit = False
                for port in switch.ports:
                    matcher = _matcher(port.service_interface)
                    matches = [matcher.matches(labels) for labels in sides]
                    if (spec_moved and any(matches)) or len(set(matches)) > 1:
                        hit = True
                        break
                if hit:
                    woken.append(Request(ns or None, name))
                    break
        return woken

    def chains_for_pod(self, ev: WatchEvent) -> list[Request]:
        """A Pod carrying a serviceID of one of this node's `service` ServiceInterfaces appearing, going, moving
        here or relabelled: the chain's key for that port (`<podNs>/<podName>/<interface>`) may have changed."""
        pod = ev.object
        if not isinstance(pod, Pod):
            return []
        old = ev.old if isinstance(ev.old, Pod) else None
        if (
            ev.type == "MODIFIED" and old is not None
            and old.metadata.labels == pod.metadata.labels and old.spec.node_name == pod.spec.node_name
        ):
            return []
        ids = {
            p.metadata.labels.get(LABEL_DPF_SERVICE_ID)
            for p in (old, pod)
            if p is not None and p.spec.node_name == self.node_name
        }
        ids.discard(None)
        if not ids:
            return []
        with self.lock:
            wanted = any(
                si.spec.interface_type == INTERFACE_TYPE_SERVICE
                and si.spec.service is not None
                and si.spec.service.service_id in ids
                for si in self.interfaces.values()
            )
        return self.chain_requests() if wanted else []

    def chain_cookies(self, ctx: Context) -> set[int] | None:
        """The cookies of this node's ServiceChains that still exist; None while the table is not live."""
        with self.lock:
            if not self.chains_live:
                return None
            keys = sorted(self.chains)
        return {
            chain_cookie(ns or None, name)
            for ns, name in keys
            if ctx.client.try_get(ServiceChain, name, ns or None) is not None
        }


class _FeedingController(Controller):
    """A controller one of whose watches feeds a `NodeObjects` table: the table is cleared before the
    informers' initial list and live after it."""

    def __init__(self, *args: Any, objects: NodeObjects, kind: type[KubeObject], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._objects = objects
        self._kind = kind

    def start(self, lister: Lister, listers: dict[str | None, Lister] | None = None) -> None:
        self._objects.reset(self._kind)
        super().start(lister, listers)
        with self._objects.lock:
            if self._kind is ServiceInterface:
                self._objects.interfaces_live = True
            else:
                self._objects.chains_live = True


# --- ServiceInterface -------------------------------------------------------------------------------------


class ServiceInterfaceReconciler:
    def __init__(self, node_name: str, *, lookup_bridges: Sequence[str] = (SFC_BRIDGE, HBN_BRIDGE)) -> None:
        self.node_name = node_name
        self.lookup_bridges = tuple(lookup_bridges)

    def reconcile(self, ctx: Context, req: Request) -> Result:
        si = ctx.client.try_get(ServiceInterface, req.name, req.namespace)
        if si is None:
            return DONE
        if si.spec.node is None:
            return Result(requeue_after=REQUEUE_SUCCESS)
        if si.spec.node != self.node_name:
            return DONE
        ovs = _ovs(ctx)
        if si.metadata.deletion_timestamp is not None:
            try:
                delete_interfaces(ovs, si)
                if FINALIZER_SERVICE_INTERFACE in si.metadata.finalizers:
                    kept = [f for f in si.metadata.finalizers if f != FINALIZER_SERVICE_INTERFACE]
                    ctx.client.update(with_metadata(si, finalizers=kept))
            except Exception as e:
                ctx.log.error("ServiceInterface %s: failed to delete interfaces from OVS: %s", req, e)
                return Result(requeue_after=REQUEUE_ERROR)
            return Result(requeue_after=REQUEUE_SUCCESS)

        now = ctx.timestamp()
        requeue = REQUEUE_SUCCESS
        finalize = False
        try:
            add_interfaces(ovs, si)
        except Exception as e:
            ctx.log.info("ServiceInterface %s: failed to add interfaces to OVS: %s", req, e)
            outcome: tuple[ConditionStatus, str, str] = ("False", REASON_ERROR, f"failed to add port: {e}")
            requeue = REQUEUE_ERROR
        else:
            finalize = FINALIZER_SERVICE_INTERFACE not in si.metadata.finalizers
            outcome = self._readiness(ctx, ovs, si)
        if not finalize and _ready_as(si, *outcome):
            return Result(requeue_after=requeue)  # nothing to write: no copy either
        status = _ready_status(si, outcome[0], outcome[1], outcome[2], now)
        try:
            current = si
            if finalize:  # as mirror.write: metadata first, then the status subresource
                current = ctx.client.update(
                    with_metadata(si, finalizers=[*si.metadata.finalizers, FINALIZER_SERVICE_INTERFACE],
                                  labels=dict(si.metadata.labels))
                )
            _write_status(ctx, current, status)
        except Exception as e:
            ctx.log.error("ServiceInterface %s: failed to write: %s", req, e)
            return Result(requeue_after=REQUEUE_ERROR)
        return Result(requeue_after=requeue)

    def _readiness(self, ctx: Context, ovs: Ovs, si: ServiceInterface) -> tuple[ConditionStatus, str, str]:
        kind = si.spec.interface_type
        if kind == INTERFACE_TYPE_VLAN:
            return "False", REASON_FAILURE, "interfaceType vlan is not supported"
        if kind != INTERFACE_TYPE_SERVICE:
            return "True", REASON_SUCCESS, ""
        # A service port is the CNI's: ready once the Pod's interface is on the switch.
        try:
            key = interface_key(ctx, si, si.namespace, self.node_name)
            OvsView(ovs, self.lookup_bridges).ofport_of(key)
        except LookupError as e:
            return "False", REASON_PENDING, str(e)
        return "True", REASON_SUCCESS, ""


def _has_port(ovs: Ovs, bridge: str, name: str) -> bool:
    return any(PortRow.of(r).name == name for r in ovs.ports(bridge))


def add_interfaces(ovs: Ovs, si: ServiceInterface) -> None:
    """AddInterfacesToOvs: ensure_port keeps an existing row and merges the external_ids/options maps."""
    ids = {EXTERNAL_ID_DPF_ID: dpf_id(si)}
    if si.spec.interface_type == INTERFACE_TYPE_OVN:
        ovs.ensure_port(OVN_BRIDGE, OVN_PATCH, IFACE_TYPE_PATCH, options={"peer": OVN_PATCH_PEER})
        ovs.ensure_port(
            SFC_BRIDGE, OVN_PATCH_PEER, IFACE_TYPE_PATCH, iface_external_ids=ids, options={"peer": OVN_PATCH}
        )
        return
    name = port_name(si)
    if not name:
        return
    port_ids = {EXTERNAL_ID_DPF_TYPE: DPF_TYPE_PHYSICAL} if si.spec.interface_type == INTERFACE_TYPE_PHYSICAL else None
    ovs.ensure_port(SFC_BRIDGE, name, IFACE_TYPE_DPDK, iface_external_ids=ids, port_external_ids=port_ids)


def delete_interfaces(ovs: Ovs, si: ServiceInterface) -> None:
    if si.spec.interface_type == INTERFACE_TYPE_OVN:
        targets = [(OVN_BRIDGE, OVN_PATCH), (SFC_BRIDGE, OVN_PATCH_PEER)]
    else:
        name = port_name(si)
        targets = [(SFC_BRIDGE, name)] if name else []
    for bridge, name in targets:
        if _has_port(ovs, bridge, name):
            ovs.delete_port(bridge, name)


# --- ServiceChain -----------------------------------------------------------------------------------------


class ServiceChainReconciler:
    def __init__(
        self,
        node_name: str,
        *,
        lookup_bridges: Sequence[str] = (SFC_BRIDGE, HBN_BRIDGE),
        objects: NodeObjects | None = None,
        options: SfcOptions | None = None,
    ) -> None:
        self.node_name = node_name
        self.lookup_bridges = tuple(lookup_bridges)
        self.objects = objects
        self.options = options or SfcOptions()

    def reconcile(self, ctx: Context, req: Request) -> Result:
        cookie = chain_cookie(req.namespace, req.name)
        ovs = _ovs(ctx)
        sc = ctx.client.try_get(ServiceChain, req.name, req.namespace)
        if sc is None:
            try:
                self._remove_chain_labels(ctx, req)
                ovs.del_flows_cookie(SFC_BRIDGE, cookie)
            except Exception as e:
                ctx.log.error("ServiceChain %s: cleanup failed: %s", req, e)
                return Result(requeue_after=self.options.chain_retry)
            return DONE
        if sc.spec.node != self.node_name:
            return DONE

        now = ctx.timestamp()
        outcome: tuple[ConditionStatus, str, str]
        try:
            switches = self._resolve(ctx, ovs, sc)
        except Exception as e:
            ctx.log.error("ServiceChain %s: failed to get interface: %s", req, e)
            outcome = ("False", REASON_PENDING, str(e))
        else:
            try:
                for ports in switches:
                    flows = chain_flows(cookie, [str(p) for p in ports])
                    if flows:
                        ovs.add_flows_bundle(SFC_BRIDGE, flows)
            except Exception as e:
                ctx.log.error("ServiceChain %s: failed to add flows: %s", req, e)
                outcome = ("False", REASON_ERROR, f"failed to add flows: {e}")
            else:
                outcome = ("True", REASON_SUCCESS, "")
        # A programmed chain is re-applied every `chain_requeue` (DPF: 5 s, like a failed pass); a failed pass
        # retries at `chain_retry` whatever the world wakes, since a refused API call raises no event.
        requeue = self.options.chain_requeue if outcome[0] == "True" else self.options.chain_retry
        if _ready_as(sc, *outcome):
            return Result(requeue_after=requeue)  # the re-apply of a programmed chain writes nothing
        try:
            _write_status(ctx, sc, _ready_status(sc, outcome[0], outcome[1], outcome[2], now))
        except Exception as e:
            ctx.log.error("ServiceChain %s: failed to write status: %s", req, e)
            return Result(requeue_after=self.options.chain_retry)
        return Result(requeue_after=requeue)

    def service_interface(self, ctx: Context, namespace: str | None, ifc: ServiceIfc) -> ServiceInterface:
        """The unique ServiceInterface on this node in the chain's namespace matching the port's labels."""
        labels = ifc.match_labels
        indexed = self.objects.interfaces_on_node(ctx, namespace, labels) if self.objects is not None else None
        found = (
            indexed
            if indexed is not None
            else [
                si
                for si in ctx.client.list(ServiceInterface, namespace, label_selector=labels)
                if si.spec.node == self.node_name
            ]
        )
        if not found:
            raise LookupError(
                f"no serviceInterface in namespace({namespace}) matching labels({go_map(labels)}) on node({self.node_name}) found"
            )
        if len(found) > 1:
            raise LookupError(
                f"expected only one serviceInterface in namespace({namespace}) to match labels({go_map(labels)}) on "
                f"node({self.node_name}). found {len(found)}"
            )
        return found[0]

    def _resolve(self, ctx: Context, ovs: Ovs, sc: ServiceChain) -> list[list[int]]:
        """Every switch's member ofports, labelling each ServiceInterface with the chain on the way."""
        view = OvsView(ovs, self.lookup_bridges)
        switches: list[list[int]] = []
        for switch in sc.spec.switches:
            ports: list[int] = []
            for port in switch.ports:
                si = self.service_interface(ctx, sc.namespace, port.service_interface)
                ports.append(view.ofport_of(interface_key(ctx, si, sc.namespace, self.node_name)))
                if si.metadata.labels.get(LABEL_SERVICE_CHAIN) != sc.name:
                    ctx.client.update(with_metadata(si, labels={**si.metadata.labels, LABEL_SERVICE_CHAIN: sc.name}))
            switches.append(ports)
        return switches

    def _remove_chain_labels(self, ctx: Context, req: Request) -> None:
        selector = {LABEL_SERVICE_CHAIN: req.name}
        indexed = self.objects.interfaces_on_node(ctx, req.namespace, selector) if self.objects is not None else None
        found = indexed if indexed is not None else ctx.client.list(ServiceInterface, req.namespace, label_selector=selector)
        for si in found:
            if si.spec.node != self.node_name:
                continue
            labels = {k: v for k, v in si.metadata.labels.items() if k != LABEL_SERVICE_CHAIN}
            ctx.client.update(with_metadata(si, labels=labels))


# --- stale object remover -----------------------------------------------------------------------------------


def flow_cookies(lines: Iterable[str]) -> set[int]:
    """Cookies in `ovs-ofctl dump-flows` text (hex `0x..` as printed, or decimal); a flow without one is 0."""
    cookies: set[int] = set()
    for line in lines:
        text = line.strip()
        if not text or "actions=" not in text:
            continue  # headers such as "NXST_FLOW reply"
        m = _COOKIE.search(text)
        cookies.add(int(m.group(1), 0) if m is not None else 0)
    return cookies


STALE_REQUEST = Request(None, "stale-object-remover")


class StaleObjectRemover:
    """A ticker: the first pass only arms it, then every `period` it sweeps flows and ports."""

    def __init__(
        self, node_name: str, period: float = STALE_REMOVAL_PERIOD, *, objects: NodeObjects | None = None
    ) -> None:
        self.node_name = node_name
        self.period = period
        self.objects = objects
        self._armed = False

    def reconcile(self, ctx: Context, req: Request) -> Result:
        if not self._armed:
            self._armed = True
            return Result(requeue_after=self.period)
        ovs = _ovs(ctx)
        for sweep in (self.remove_stale_flows, self.remove_stale_ports):
            try:
                sweep(ctx, ovs)
            except Exception as e:
                ctx.log.error("failed to %s: %s", sweep.__name__.replace("_", " "), e)
        return Result(requeue_after=self.period)

    def remove_stale_flows(self, ctx: Context, ovs: Ovs) -> list[int]:
        current = flow_cookies(ovs.dump_flows(SFC_BRIDGE))
        # Every cookie on the switch being one of this node's live chains' (the usual case) already means
        # nothing is stale; only otherwise is every chain of the cluster listed, as DPF does on every sweep.
        own = self.objects.chain_cookies(ctx) if self.objects is not None else None
        if own is not None and current <= own:
            return []
        desired = {chain_cookie(sc.namespace, sc.name) for sc in ctx.client.list(ServiceChain)}
        removed = sorted(current - desired)
        for cookie in removed:
            ctx.log.info("remove cookie=%d/-1", cookie)
            ovs.del_flows_cookie(SFC_BRIDGE, cookie)
        return removed

    def remove_stale_ports(self, ctx: Context, ovs: Ovs) -> list[str]:
        indexed = self.objects.interfaces_on_node(ctx, None) if self.objects is not None else None
        mine = indexed if indexed is not None else ctx.client.list(ServiceInterface)
        desired = {produced_port(si) for si in mine if si.spec.node == self.node_name}
        removed: list[str] = []
        for row in ovs.ports(SFC_BRIDGE):
            name = str(row.get("name", ""))
            if name == SFC_BRIDGE or name in desired:
                continue
            ids = _port_ids(row)
            if ids.get(EXTERNAL_ID_OWNER) == OVS_CNI_OWNER or ids.get(EXTERNAL_ID_DPF_TYPE) == DPF_TYPE_PHYSICAL:
                continue
            ovs.delete_port(SFC_BRIDGE, name)
            ctx.log.info("deleted OVS port with name: %s", name)
            removed.append(name)
        return removed


class _TickerController(Controller):
    """A controller with no watched kind: its one request is queued when it starts."""

    def start(self, lister: Lister, listers: dict[str | None, Lister] | None = None) -> None:
        super().start(lister, listers)
        self.enqueue(STALE_REQUEST)


def wake_node_chains(
    controller: Controller, *, dpf_ids: Iterable[str] | None = None, cookies: Iterable[int] | None = None
) -> int:
    """Enqueue the node's ServiceChains an OVS change concerns (`NodeObjects.chain_requests`; all without
    `dpf_ids`/`cookies`) on the ServiceChain controller of `controllers()`: what the node's OVS changing under
    the chains calls for, ahead of the periodic re-apply. Returns how many."""
    reconciler = controller.reconciler
    objects = reconciler.objects if isinstance(reconciler, ServiceChainReconciler) else None
    if objects is None:
        return 0
    requests = objects.chain_requests(dpf_ids=dpf_ids, cookies=cookies)
    for req in requests:
        controller.enqueue(req)
    return len(requests)


def controllers(
    node_name: str,
    *,
    lookup_bridges: Sequence[str] = (SFC_BRIDGE, HBN_BRIDGE),
    stale_period: float | None = None,
    options: SfcOptions | None = None,
) -> list[Controller]:
    """The agent of one DPU node: ServiceInterface, ServiceChain and the stale object remover, sharing the
    node's objects (`NodeObjects`) that the first two controllers' watches keep. `stale_period`, when given,
    overrides `options.stale_removal_period`."""
    opts = options or SfcOptions()
    if stale_period is not None:
        opts = dataclasses.replace(opts, stale_removal_period=stale_period)
    on_node = _on_node(node_name, status_writes_wake=opts.status_writes_wake)
    objects = NodeObjects(node_name)
    return [
        _FeedingController(
            NAME_SERVICE_INTERFACE,
            ServiceInterfaceReconciler(node_name, lookup_bridges=lookup_bridges),
            ServiceInterface,
            [Watch(ServiceInterface, objects.on_interface)],
            for_predicate=on_node,
            objects=objects,
            kind=ServiceInterface,
        ),
        _FeedingController(
            NAME_SERVICE_CHAIN,
            ServiceChainReconciler(node_name, lookup_bridges=lookup_bridges, objects=objects, options=opts),
            ServiceChain,
            [
                Watch(ServiceChain, objects.on_chain),
                Watch(ServiceInterface, objects.chains_for_interface),
                Watch(Pod, objects.chains_for_pod),
            ],
            for_predicate=on_node,
            objects=objects,
            kind=ServiceChain,
        ),
        _TickerController(
            NAME_STALE_OBJECT_REMOVER,
            StaleObjectRemover(node_name, opts.stale_removal_period, objects=objects),
            None,
        ),
    ]
