"""The twin's kubelets, scheduler and workload controllers for one cluster store (a DPU cluster, or the host).

- Nodes: a DPU node's allocatable is its flavor's dpuResources minus systemReservedResources (given by the
  composition through `allocatable_for`); a node without allocatable is not resource-limited.
- DaemonSets: one pod per Ready Node matching the pod template's nodeSelector / required node affinity whose
  NoSchedule/NoExecute taints are tolerated; pods of nodes no longer selected go. A template change (new revision
  hash) follows `spec.updateStrategy` as Kubernetes does: RollingUpdate (the default, maxUnavailable 1, no surge)
  replaces pods while fewer than maxUnavailable desired nodes lack an available pod, OnDelete waits for deletions.
- Deployments: `replicas` pods on the least-loaded fitting nodes; a template change replaces them.
- Scheduling: a pod whose requests do not fit the node's free allocatable stays Pending with condition
  PodScheduled False `Unschedulable` and a message naming the short resources; it is retried on every change.
- Pods: bound pods pull their images (once per node and image) and start, then report Running and Ready.
  With a CNI model on the cluster (`network_gate`), a pod carrying the Multus networks annotation starts its
  containers only once the CNI has set up its networks (annotation `k8s.v1.cni.cncf.io/network-status`): a
  real kubelet starts no container before the sandbox's CNI ADD succeeded, so such a pod stays Pending while
  its networks fail (a missing pool, no free SF) instead of running without them.
- Workload status (desired/current/ready/updated, observedGeneration) follows the pods.

All of it runs as one SimPy process per store, woken by the store's events and debounced by `sync_delay`, so
a burst of changes costs one pass. Each pass is idempotent: it writes only what differs.
"""

from __future__ import annotations

import contextlib
import functools
import random
from collections.abc import Callable, Generator, Iterable, Mapping
from fractions import Fraction
from typing import Any

import simpy
from pydantic import BaseModel, ConfigDict

from dpf_core.api.external import ANNOTATION_MULTUS_NETWORKS, DaemonSet, Deployment, Node, Pod
from dpf_core.api.meta import IntOrString, KubeObject
from dpf_core.api.quantity import format_quantity, parse_quantity
from dpf_core.controllers.dpuset import max_unavailable as max_unavailable_of
from dpf_core.controllers.svc_common import content_hash
from dpf_core.errors import ApiError
from dpf_core.runtime import rfc3339
from dpf_core.store.memory import MemoryStore
from dpf_core.store.protocol import WatchEvent

from .durations import Duration
from .engine import SimClock

REVISION_LABEL = "controller-revision-hash"
TEMPLATE_HASH_LABEL = "pod-template-hash"
TARGET_NODE_ANNOTATION = "twin.dpf/target-node"  # a DaemonSet pod's node while it cannot be bound
ANNOTATION_NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"  # Multus' result of the sandbox's CNI ADD

Resources = dict[str, Fraction]


class KubeletParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    image_pull: Duration = Duration.of("8s")
    container_start: Duration = Duration.of("2s")
    sync_delay: Duration = Duration.of("500ms")


# --- matching ---------------------------------------------------------------------------------------------


def _expr_matches(expr: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, op, values = expr.get("key", ""), expr.get("operator", ""), list(expr.get("values") or [])
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    return False


def node_selected(pod_spec: Mapping[str, Any], node: Node) -> bool:
    """The pod template's nodeSelector and required node affinity (terms ORed, expressions ANDed)."""
    labels = node.metadata.labels
    for k, v in (pod_spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms")
    if terms:
        fields = {"metadata.name": node.name}
        return any(all(_expr_matches(e, labels) for e in (t.get("matchExpressions") or []))
                   and all(_expr_matches(e, fields) for e in (t.get("matchFields") or [])) for t in terms)
    return True


def pinned_nodes(pod_spec: Mapping[str, Any]) -> set[str] | None:
    """The nodes a pod's required affinity names with `matchFields metadata.name In` in every term (how DPF
    pins a DMS pod to its host), else None: the scheduler then looks at those nodes only."""
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    names: set[str] = set()
    for t in required.get("nodeSelectorTerms") or []:
        pins = [set(e.get("values") or []) for e in (t.get("matchFields") or [])
                if e.get("key") == "metadata.name" and e.get("operator") == "In"]
        if not pins:
            return None
        names |= set.intersection(*pins)
    return names if required.get("nodeSelectorTerms") else None


def tolerated(pod_spec: Mapping[str, Any], node: Node) -> bool:
    tolerations = pod_spec.get("tolerations") or []
    for taint in node.spec.taints:
        if taint.effect not in ("NoSchedule", "NoExecute"):
            continue
        ok = False
        for t in tolerations:
            if t.get("effect") and t.get("effect") != taint.effect:
                continue
            if (t.get("operator") == "Exists" and (not t.get("key") or t.get("key") == taint.key)) or (t.get("key") == taint.key and (t.get("value") or "") == (taint.value or "")):
                ok = True
            if ok:
                break
        if not ok:
            return False
    return True


def pod_requests(pod_spec: Mapping[str, Any]) -> Resources:
    total: Resources = {}
    for c in pod_spec.get("containers") or []:
        for name, q in (((c.get("resources") or {}).get("requests")) or {}).items():
            total[name] = total.get(name, Fraction(0)) + parse_quantity(q if isinstance(q, int) else str(q))
    return total


def allocatable_of(node: Node) -> Resources | None:
    allocatable = node.status.allocatable
    if not allocatable:
        return None
    try:
        parsed = _parsed_allocatable(tuple(allocatable.items()))
    except TypeError:  # an unhashable quantity: parsed as it comes
        return {k: parse_quantity(v if isinstance(v, int) else str(v)) for k, v in allocatable.items()}
    return dict(parsed)  # the caller's own: a pass subtracts its pods' requests from it


@functools.lru_cache(maxsize=1024)
def _parsed_allocatable(items: tuple[tuple[str, Any], ...]) -> Resources:
    # A pass parses every node's allocatable, and a DPU cluster's nodes mostly advertise the same few.
    return {k: parse_quantity(v if isinstance(v, int) else str(v)) for k, v in items}


def shortfall(requests: Resources, free: Resources | None) -> list[str]:
    if free is None:
        return []
    return [name for name, q in sorted(requests.items()) if q > free.get(name, Fraction(0))]


def _pod_active(p: Pod) -> bool:
    return p.metadata.deletion_timestamp is None and p.status.phase not in ("Succeeded", "Failed")


def _workload_pod(p: Pod) -> bool:
    return any(r.controller and r.kind in ("DaemonSet", "Deployment") for r in p.metadata.owner_references)


def _pod_ready(p: Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in p.status.conditions)


def _matters(ev: WatchEvent) -> bool:
    """Could this event change what a pass does? Pods no workload owns (DMS pods, static pods) and Node
    updates that leave scheduling alone (heartbeats, annotations) cannot: a host cluster sees many of both."""
    obj, old = ev.object, ev.old
    if isinstance(obj, Pod):
        return _workload_pod(obj)
    if isinstance(obj, Node) and ev.type == "MODIFIED" and isinstance(old, Node):
        return (obj.metadata.labels != old.metadata.labels or obj.spec.taints != old.spec.taints
                or obj.spec.unschedulable != old.spec.unschedulable or obj.is_ready() != old.is_ready()
                or obj.status.allocatable != old.status.allocatable)
    return True


def _controllers(p: Pod) -> list[tuple[str, str]]:
    """(uid, namespace) of the pod's controllers (one, unless the pod is malformed)."""
    return [(r.uid, p.metadata.namespace or "") for r in p.metadata.owner_references if r.controller]


def _runs_here(pod_spec: Mapping[str, Any], n: Node) -> bool:
    """A pod of `pod_spec` may go to `n`: Ready, schedulable, selected and every NoSchedule/NoExecute taint tolerated."""
    return n.is_ready() and not n.spec.unschedulable and node_selected(pod_spec, n) and tolerated(pod_spec, n)


def _slot(p: Pod) -> str | None:
    """The node a DaemonSet pod is for: bound, or the node it waits for while it cannot be bound."""
    return p.spec.node_name or p.metadata.annotations.get(TARGET_NODE_ANNOTATION)


class _Tally:
    """Status counts of one controller's pods: scheduled and ready ones, and scheduled ones by revision label."""

    __slots__ = ("active", "ready", "revisions", "scheduled")

    def __init__(self) -> None:
        self.active = 0
        self.scheduled = 0
        self.ready = 0
        self.revisions: dict[str | None, int] = {}

    def count(self, p: Pod, sign: int) -> None:
        if not _pod_active(p):
            return
        self.active += sign
        if not p.spec.node_name:
            return
        self.scheduled += sign
        if _pod_ready(p):
            self.ready += sign
        rev = p.metadata.labels.get(REVISION_LABEL)
        self.revisions[rev] = self.revisions.get(rev, 0) + sign


class _DaemonSetState:
    """What the last completed sync of a DaemonSet (at one template revision) left: the nodes that want its pod
    and the nodes to look at again (a node or one of the DaemonSet's pods changed there, or the node still
    lacked its pod). A sync looks only at those: on every other node nothing it reads has changed since a sync
    that left it alone."""

    __slots__ = ("old", "ready", "revision", "touched", "wanted")

    def __init__(self, revision: str, wanted: set[str]) -> None:
        self.revision = revision
        self.wanted = wanted
        self.touched: set[str | None] = set()
        self.old: dict[str, Pod] = {}  # wanted node -> the previous revision's pod a rolling update still keeps
        self.ready: set[str] = set()  # wanted nodes whose pod is Ready (available): the rest count as unavailable


def _update_strategy(ds: DaemonSet) -> tuple[str, IntOrString | None]:
    """(type, maxUnavailable) of `spec.updateStrategy`; Kubernetes' defaults: RollingUpdate, maxUnavailable 1."""
    raw = ds.spec.update_strategy or {}
    kind = str(raw.get("type") or "RollingUpdate")
    rolling = raw.get("rollingUpdate") or {}
    value = rolling.get("maxUnavailable", 1) if isinstance(rolling, Mapping) else 1
    return kind, value if isinstance(value, int | str) else 1


class Kubelet:
    """Kubelets + kube-scheduler + the DaemonSet and Deployment controllers of one cluster store."""

    def __init__(self, env: simpy.Environment, store: MemoryStore, clock: SimClock, rng: random.Random,
                 params: KubeletParams | None = None, *, run_pods: bool = True,
                 allocatable_for: Callable[[str], dict[str, Any] | None] | None = None, name: str = "",
                 network_gate: bool = False) -> None:
        self.env = env
        self.store = store
        self.clock = clock
        self.rng = rng
        self.params = params or KubeletParams()
        self.run_pods = run_pods
        self.allocatable_for = allocatable_for
        self.name = name or store.name
        self._pulled: set[tuple[str, str]] = set()
        self._running: set[str] = set()
        self.network_gate = network_gate
        self._awaiting_network: set[str] = set()  # pods whose containers wait for their CNI ADD
        self._allocatable: dict[str, dict[str, Any]] = {}  # node -> what allocatable_for gave it
        self._requests: dict[str, Resources] = {}  # pod uid -> its containers' requests
        self._desired: dict[tuple[str, int | None], int] = {}  # during a pass: DaemonSet (uid, generation) -> nodes
        # Passes come every sync_delay while anything changes, and a pass that re-read every node and pod cost
        # O(cluster) each: the host's dpudetector DaemonSet over a 10k-host fleet made a services run quadratic.
        # So the pods are indexed from the store's events (by controller and node, by node, unbound), a
        # DaemonSet's sync looks again only at the nodes something happened to since its last sync, and its
        # status counts are kept per pod event. Stored snapshots never change in place, so what a pass derived
        # from one holds while the store still returns that same object.
        self._unchecked: set[str] = {n.name for n in store.list(Node)}  # nodes whose allocatable to check
        self._pass_nodes: list[Node] | None = None
        self._owner_pods: dict[tuple[str, str], dict[str | None, dict[str, Pod]]] = {}  # (controller uid, ns) -> node -> name -> pod
        self._node_pods: dict[str, dict[tuple[str, str], Pod]] = {}  # spec.nodeName -> (ns, name) -> pod
        self._unbound: dict[tuple[str, str], Pod] = {}  # active pods without spec.nodeName that _bind_pending binds
        self._tallies: dict[tuple[str, str], _Tally] = {}  # (controller uid, ns) -> status counts of its pods
        self._ds_state: dict[str, _DaemonSetState] = {}  # DaemonSet uid -> what its last completed sync left
        self._pods: dict[tuple[str, str], Pod] = {}  # (ns, name) -> the snapshot the indexes hold
        for pod in store.list(Pod):
            self._index_pod(pod.metadata.namespace or "", pod.name, pod)
        self._wake = env.event()
        self.passes = 0
        store.subscribe(self._on_event, [DaemonSet, Deployment, Node, Pod])
        env.process(self._loop())
        self.poke()

    def poke(self) -> None:
        if not self._wake.triggered:
            self._wake.succeed()

    def _on_event(self, ev: WatchEvent) -> None:
        obj = ev.object
        if isinstance(obj, Pod):
            self._index_pod(obj.metadata.namespace or "", obj.name, None if ev.type == "DELETED" else obj)
        elif isinstance(obj, Node):
            for st in self._ds_state.values():
                st.touched.add(obj.name)
            if ev.type == "DELETED":
                self._unchecked.discard(obj.name)
            else:
                self._unchecked.add(obj.name)
        elif isinstance(obj, DaemonSet) and ev.type == "DELETED":
            self._ds_state.pop(obj.metadata.uid or "", None)
        if isinstance(ev.object, Pod) and self.run_pods and ev.type != "DELETED":
            pod = ev.object
            key = f"{pod.namespace}/{pod.name}"
            if pod.spec.node_name and key not in self._running and pod.status.phase in (None, "Pending"):
                self._running.add(key)
                self.env.process(self._run_pod(pod.namespace or "", pod.name, pod.spec.node_name))
            elif key in self._awaiting_network and ANNOTATION_NETWORK_STATUS in pod.metadata.annotations:
                self._awaiting_network.discard(key)
                self.env.process(self._networked(pod.namespace or "", pod.name))
        if isinstance(ev.object, Pod) and ev.type == "DELETED":
            self._running.discard(f"{ev.object.namespace}/{ev.object.name}")
            self._awaiting_network.discard(f"{ev.object.namespace}/{ev.object.name}")
            self._requests.pop(ev.object.metadata.uid or "", None)
        if _matters(ev):
            self.poke()

    def _loop(self) -> Generator[Any, Any, None]:
        while True:
            yield self._wake
            yield self.env.timeout(self.params.sync_delay.sample(self.rng))
            self._wake = self.env.event()
            self.passes += 1
            with contextlib.suppress(ApiError):
                self.sync()

    # --- one pass ---------------------------------------------------------------------------------------
    def sync(self) -> None:
        if self.allocatable_for is not None and self._unchecked:
            live = self.store.try_get
            for name in sorted(self._unchecked):  # name order, as a pass over every node patches them
                n = live(Node, name)
                if n is None or self._ensure_allocatable(n):
                    self._unchecked.discard(name)
        self._pass_nodes = None
        try:
            for ds in self.store.list(DaemonSet):  # in (namespace, name) order
                if ds.metadata.deletion_timestamp is None:
                    self._sync_daemonset(ds)
            for dep in self.store.list(Deployment):
                if dep.metadata.deletion_timestamp is None:
                    self._sync_deployment(dep)
            self._bind_pending()
            for ds in self.store.list(DaemonSet):
                self._daemonset_status(ds)
            for dep in self.store.list(Deployment):
                self._deployment_status(dep)
        finally:
            self._desired.clear()
            self._pass_nodes = None

    def _nodes(self) -> list[Node]:
        """Every node, in name order, listed once a pass and only when a step needs them all."""
        if self._pass_nodes is None:
            self._pass_nodes = self.store.list(Node)
        return self._pass_nodes

    def _ensure_allocatable(self, node: Node) -> bool:
        """Adds the composition's resources a Node lacks. Another model may have advertised its own first (the
        SR-IOV device plugin's `nvidia.com/bf_sf`, dpf_sim.cni), so presence of any allocatable is no proof; the
        answer is kept per node, as a pass visits every node and asking costs a DPU and a DPUFlavor lookup."""
        if self.allocatable_for is None:
            return True
        alloc = self._allocatable.get(node.name)
        if alloc is None:
            alloc = self.allocatable_for(node.name)
            if alloc is None:
                return False  # not known yet: asked again next pass
            self._allocatable[node.name] = alloc
        missing = {k: v for k, v in alloc.items() if k not in node.status.allocatable}
        if missing:
            self.store.patch(Node, node.name, None, {"status": {"allocatable": missing, "capacity": missing}},
                             subresource="status")
        return True  # the patched node comes back as an event and is checked again

    def _index_pod(self, ns: str, name: str, new: Pod | None) -> None:
        """Move a pod's entries from the snapshot the indexes hold to `new` (None: the pod is gone)."""
        key = (ns, name)
        old = self._pods.pop(key, None)
        if new is not None:
            self._pods[key] = new
        if old is not None:
            node = old.spec.node_name
            if node:
                on = self._node_pods.get(node)
                if on is not None:
                    on.pop(key, None)
                    if not on:
                        del self._node_pods[node]
            self._unbound.pop(key, None)
            for owner in _controllers(old):
                by_node = self._owner_pods.get(owner)
                if by_node is not None:
                    slot = _slot(old)
                    bucket = by_node.get(slot)
                    if bucket is not None:
                        bucket.pop(name, None)
                        if not bucket:
                            del by_node[slot]
                    if not by_node:
                        del self._owner_pods[owner]
                    self._touch(owner, slot)
                tally = self._tallies.get(owner)
                if tally is not None:
                    tally.count(old, -1)
        if new is not None:
            node = new.spec.node_name
            if node:
                self._node_pods.setdefault(node, {})[key] = new
            elif _pod_active(new) and (self.run_pods or _workload_pod(new)):
                # Only what this kubelet's scheduler binds (see _bind_pending): the host's thousands of
                # unbound DMS and hostnetwork pods were filtered out again on every pass.
                self._unbound[key] = new
            for owner in _controllers(new):
                slot = _slot(new)
                self._owner_pods.setdefault(owner, {}).setdefault(slot, {})[name] = new
                self._touch(owner, slot)
                self._tallies.setdefault(owner, _Tally()).count(new, 1)

    def _touch(self, owner: tuple[str, str], node: str | None) -> None:
        st = self._ds_state.get(owner[0])
        if st is not None:
            st.touched.add(node)

    def _owned(self, owner: KubeObject) -> list[Pod]:
        """The pods `owner` controls (in its namespace), in name order."""
        by_node = self._owner_pods.get((owner.metadata.uid or "", owner.metadata.namespace or ""))
        if not by_node:
            return []
        return sorted((p for bucket in by_node.values() for p in bucket.values()), key=lambda p: p.name)

    def _requests_of(self, p: Pod) -> Resources:
        """A pod's requests, parsed once per pod: a pass adds up every bound pod's, and containers' requests
        never change after creation."""
        uid = p.metadata.uid or ""
        got = self._requests.get(uid)
        if got is None:
            got = pod_requests(p.model_dump(by_alias=True)["spec"])
            if uid:
                self._requests[uid] = got
        return got

    def _free(self, nodes: Iterable[Node]) -> dict[str, Resources | None]:
        """What each node has left: its allocatable minus the requests of the active pods bound to it (exact
        fractions: the order pods are added up in does not matter)."""
        free: dict[str, Resources | None] = {n.name: allocatable_of(n) for n in nodes}
        for node, left in free.items():
            if left is None:
                continue
            for p in self._node_pods.get(node, {}).values():
                if not _pod_active(p):
                    continue
                for k, q in self._requests_of(p).items():
                    left[k] = left.get(k, Fraction(0)) - q
        return free

    def _new_pod(self, owner: KubeObject, name: str, template: dict[str, Any], labels: dict[str, str],
                 node: str | None, target: str | None) -> None:
        meta = dict(template.get("metadata") or {})
        spec = dict(template.get("spec") or {})
        annotations = dict(meta.get("annotations") or {})
        if target is not None:
            annotations[TARGET_NODE_ANNOTATION] = target
        if node is not None:
            spec["nodeName"] = node
        ref = owner.controller_ref().model_dump(by_alias=True, exclude_none=True)
        pod = Pod.model_validate({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": name, "namespace": owner.namespace, "labels": {**(meta.get("labels") or {}), **labels},
            "annotations": annotations, "ownerReferences": [ref]}, "spec": spec})
        with contextlib.suppress(ApiError):
            self.store.create(pod)
            self._set_pending(pod, node is None, [])

    def _set_pending(self, pod: Pod, unschedulable: bool, short: list[str], total_nodes: int = 1) -> None:
        now = rfc3339(self.clock.now())
        if unschedulable:
            what = ", ".join(f"Insufficient {r}" for r in short) or "node(s) didn't match Pod's node affinity/selector"
            cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                    "message": f"0/{total_nodes} nodes are available: {what}.", "lastTransitionTime": now}
        else:
            cond = {"type": "PodScheduled", "status": "True", "lastTransitionTime": now}
        with contextlib.suppress(ApiError):
            self.store.patch(Pod, pod.name, pod.namespace, {"status": {"phase": "Pending", "conditions": [cond]}},
                             subresource="status")

    def _sync_daemonset(self, ds: DaemonSet) -> None:
        template = ds.model_dump(by_alias=True)["spec"].get("template") or {}
        pod_spec = template.get("spec") or {}
        revision = content_hash(template)
        uid = ds.metadata.uid or ""
        st = self._ds_state.get(uid)
        if st is None or st.revision != revision:
            # Every node and pod: the first sync, or the template changed.
            st = self._ds_state[uid] = _DaemonSetState(revision, set())
            full = True
        else:
            full = False
        # What happens from here on (this sync's own writes included) is for the next sync to look at.
        touched, st.touched = st.touched, set()
        try:
            self._sync_daemonset_nodes(ds, template, pod_spec, revision, st, None if full else touched)
        except BaseException:
            st.touched |= touched  # nothing looked at is lost
            if full:
                self._ds_state.pop(uid, None)
            raise

    def _sync_daemonset_nodes(self, ds: DaemonSet, template: dict[str, Any], pod_spec: dict[str, Any], revision: str,
                              st: _DaemonSetState, touched: set[str | None] | None) -> None:
        """A DaemonSet's sync over every node (`touched` None) or over the nodes in `touched` only."""
        by_node = self._owner_pods.get((ds.metadata.uid or "", ds.namespace or ""), {})
        wanted = st.wanted
        look: Iterable[str | None]
        if touched is None:
            wanted.clear()
            wanted.update(n.name for n in self._nodes() if _runs_here(pod_spec, n))
            look = list(by_node)
            missing_from: Iterable[str] = wanted
        else:
            live = self.store.try_get
            for name in touched:
                if name is None:
                    continue
                n = live(Node, name)
                if n is not None and _runs_here(pod_spec, n):
                    wanted.add(name)
                else:
                    wanted.discard(name)
            look = touched
            missing_from = [n for n in touched if n is not None and n in wanted]
        self._desired[(ds.metadata.uid or "", ds.metadata.generation)] = len(wanted)
        strategy, max_unavailable = _update_strategy(ds)
        if touched is None:
            st.old.clear()
            st.ready.clear()
        else:
            for node in touched:
                if node is not None:
                    st.old.pop(node, None)
                    st.ready.discard(node)
        # The pods on the nodes looked at, in name order, as a sync over every pod meets them.
        pods = sorted((p for node in look for p in by_node.get(node, {}).values()), key=lambda p: p.name)
        have: dict[str, Pod] = {}
        for p in pods:
            node = _slot(p)
            current = p.metadata.labels.get(REVISION_LABEL) == revision
            if node is not None and node in wanted and node not in have and (current or (
                    p.metadata.deletion_timestamp is None and strategy in ("RollingUpdate", "OnDelete"))):
                # Its node's pod: the current revision's, or the previous one's while the update strategy keeps it.
                have[node] = p
                if not current:
                    st.old[node] = p
                if p.metadata.deletion_timestamp is None and _pod_ready(p):
                    st.ready.add(node)
                continue
            if p.metadata.deletion_timestamp is None:
                self._delete_pod(p, st, node)
        if strategy == "RollingUpdate" and st.old:
            # Kubernetes' DaemonSet rolling update (maxSurge 0): an old pod that is not available goes at once;
            # an available one only while fewer than maxUnavailable (of the desired nodes) are unavailable.
            budget = max_unavailable_of(max_unavailable, len(wanted))
            unavailable = len(wanted) - len(st.ready)
            for node in sorted(st.old):
                if node in st.ready:
                    if unavailable >= budget:
                        continue
                    unavailable += 1
                    st.ready.discard(node)
                old = st.old.pop(node)
                have.pop(node, None)
                self._delete_pod(old, st, node)
                missing_from = [*missing_from, node]
        missing = sorted({n for n in missing_from if n not in have})
        if missing:
            # Looked at again next time: a create can fail, a pod that does not fit waits for a later pass.
            st.touched.update(missing)
            self._create_daemon_pods(ds, template, pod_spec, revision, missing)

    def _delete_pod(self, p: Pod, st: _DaemonSetState, node: str | None) -> None:
        try:
            self.store.delete(Pod, p.name, p.namespace)
        except ApiError:
            st.touched.add(node)  # retried next sync, as a sync over every pod would

    def _create_daemon_pods(self, ds: DaemonSet, template: dict[str, Any], pod_spec: dict[str, Any], revision: str,
                            missing: list[str]) -> None:
        live = self.store.try_get
        free = self._free([n for n in (live(Node, name) for name in missing) if n is not None])
        requests = pod_requests(pod_spec)
        for node in missing:
            short = shortfall(requests, free.get(node))
            name = self._daemon_pod_name(ds, node, revision)
            if short:
                self._new_pod(ds, name, template, {REVISION_LABEL: revision}, None, node)
                pod = self.store.try_get(Pod, name, ds.namespace)
                if pod is not None:
                    self._set_pending(pod, True, short)
                continue
            left = free.get(node)
            if left is not None:
                for k, q in requests.items():
                    left[k] = left.get(k, Fraction(0)) - q
            self._new_pod(ds, name, template, {REVISION_LABEL: revision}, node, None)

    def _daemon_pod_name(self, ds: DaemonSet, node: str, revision: str) -> str:
        """`<ds>-<5 hex of the node>-<5 of the revision>`, stable per node. Five hex digits collide between
        nodes (two of 400 DPU names already do): a name held by another node's pod is salted until free, so
        every node gets its pod (the DaemonSet controller's generateName would retry with a fresh suffix)."""
        salt = 0
        while True:
            suffix = content_hash(node, length=5) if salt == 0 else content_hash(node, salt, length=5)
            name = f"{ds.name}-{suffix}-{revision[:5]}"
            held = self.store.try_get(Pod, name, ds.namespace)
            if held is None:
                return name
            if (held.spec.node_name or held.metadata.annotations.get(TARGET_NODE_ANNOTATION)) == node:
                return name  # this node's own (a terminating one: the create fails and a later pass retries)
            salt += 1

    def _sync_deployment(self, dep: Deployment) -> None:
        template = dep.model_dump(by_alias=True)["spec"].get("template") or {}
        revision = content_hash(template)
        replicas = dep.spec.replicas if dep.spec.replicas is not None else 1
        current: list[Pod] = []
        for p in self._owned(dep):
            if p.metadata.deletion_timestamp is not None:
                continue
            if p.metadata.labels.get(TEMPLATE_HASH_LABEL) != revision or len(current) >= replicas:
                with contextlib.suppress(ApiError):
                    self.store.delete(Pod, p.name, p.namespace)
                continue
            current.append(p)
        taken = {p.name for p in current}
        i = 0
        while len(current) < replicas:
            name = f"{dep.name}-{revision[:8]}-{i}"
            i += 1
            if name in taken:
                continue
            self._new_pod(dep, name, template, {TEMPLATE_HASH_LABEL: revision}, None, None)
            pod = self.store.try_get(Pod, name, dep.namespace)
            if pod is None:
                break
            current.append(pod)

    def _bind_pending(self) -> None:
        """The scheduler: every unbound pod goes to a fitting node (its DaemonSet node, else the least loaded)."""
        # A kubelet that runs no pods itself (the host's: ClusterWorld runs the DMS and hostnetwork pods) schedules
        # only its workloads' pods; binding a DMS pod here reset it to Pending behind ClusterWorld's back and left
        # its DPU in DMS Deployment for good (chaos seeds 147 and 242).
        unbound = list(self._unbound.values())
        if not unbound:
            return
        nodes = self._nodes()
        by_name = {n.name: n for n in nodes}
        # What the nodes have left and how many pods they run, added up once a pass and kept current as this
        # pass binds pods (a pod that stays Pending changes neither): a pass with pods pending on a big
        # cluster no longer re-adds every pod per pending pod.
        free = self._free(nodes)
        load = {n.name: 0 for n in nodes}
        for p in self.store.list(Pod):
            if p.spec.node_name in load and _pod_active(p):
                load[p.spec.node_name] += 1
        for pod in sorted(unbound, key=lambda p: (p.namespace or "", p.name)):
            spec = pod.model_dump(by_alias=True)["spec"]
            requests = pod_requests(spec)
            target = pod.metadata.annotations.get(TARGET_NODE_ANNOTATION)
            if target is not None:
                candidates = [by_name[target]] if target in by_name else []
            else:
                pinned = pinned_nodes(spec)
                among = nodes if pinned is None else [by_name[n] for n in sorted(pinned) if n in by_name]
                candidates = [n for n in among if _runs_here(spec, n)]
            fitting = [n for n in candidates if not shortfall(requests, free.get(n.name))]
            if not fitting:
                short = sorted({r for n in candidates for r in shortfall(requests, free.get(n.name))})
                cond = next((c for c in pod.status.conditions if c.type == "PodScheduled"), None)
                if cond is None or cond.status != "False" or not short:
                    self._set_pending(pod, True, short, max(len(nodes), 1))
                continue
            chosen = min(fitting, key=lambda n: (load[n.name], n.name))
            bound = pod.deepcopy()
            bound.spec.node_name = chosen.name
            with contextlib.suppress(ApiError):
                self.store.update(bound)
                load[chosen.name] += 1
                left = free.get(chosen.name)
                if left is not None:
                    for k, q in requests.items():
                        left[k] = left.get(k, Fraction(0)) - q
                self._set_pending(bound, False, [])

    # --- pods -------------------------------------------------------------------------------------------
    def _run_pod(self, ns: str, name: str, node: str) -> Generator[Any, Any, None]:
        pod = self.store.try_get(Pod, name, ns)
        if pod is None:
            return
        images = [c.image or "" for c in pod.spec.containers]
        for image in images:
            if (node, image) not in self._pulled:
                yield self.env.timeout(self.params.image_pull.sample(self.rng))
                self._pulled.add((node, image))
        yield self.env.timeout(self.params.container_start.sample(self.rng))
        pod = self.store.try_get(Pod, name, ns)
        if pod is None or pod.metadata.deletion_timestamp is not None:
            return
        if self._network_pending(pod):
            # Its containers start when the CNI writes network-status (_on_event).
            self._awaiting_network.add(f"{ns}/{name}")
            return
        self._start_containers(pod)

    def _networked(self, ns: str, name: str) -> Generator[Any, Any, None]:
        # Not from inside the store's event dispatch: a write there would reorder the other watchers' events.
        yield self.env.timeout(0)
        pod = self.store.try_get(Pod, name, ns)
        if pod is not None:
            self._start_containers(pod)

    def _network_pending(self, pod: Pod) -> bool:
        annotations = pod.metadata.annotations
        return (self.network_gate and ANNOTATION_MULTUS_NETWORKS in annotations
                and ANNOTATION_NETWORK_STATUS not in annotations)

    def _start_containers(self, pod: Pod) -> None:
        ns, name = pod.namespace or "", pod.name
        if pod.metadata.deletion_timestamp is not None:
            return
        now = rfc3339(self.clock.now())
        status = {
            "phase": "Running", "hostIP": "192.168.100.2", "podIP": _pod_ip(f"{self.name}/{ns}/{name}"),
            "startTime": now,
            "conditions": [{"type": t, "status": "True", "lastTransitionTime": now}
                           for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
            "containerStatuses": [{"name": c.name, "ready": True, "restartCount": 0, "image": c.image or "",
                                   "started": True, "state": {"running": {"startedAt": now}}} for c in pod.spec.containers],
        }
        with contextlib.suppress(ApiError):
            self.store.patch(Pod, name, ns, {"status": status}, subresource="status")

    # --- workload status --------------------------------------------------------------------------------
    def _daemonset_status(self, ds: DaemonSet) -> None:
        template = ds.model_dump(by_alias=True)["spec"].get("template") or {}
        pod_spec = template.get("spec") or {}
        revision = content_hash(template)
        desired = self._desired.get((ds.metadata.uid or "", ds.metadata.generation))
        if desired is None:
            desired = sum(1 for n in self._nodes() if _runs_here(pod_spec, n))
        tally = self._tallies.get((ds.metadata.uid or "", ds.namespace or "")) or _Tally()
        scheduled, ready, updated = tally.scheduled, tally.ready, tally.revisions.get(revision, 0)
        status = {"desiredNumberScheduled": desired, "currentNumberScheduled": scheduled,
                  "numberReady": ready, "numberAvailable": ready, "updatedNumberScheduled": updated,
                  "numberMisscheduled": 0, "observedGeneration": ds.metadata.generation}
        self._write_status(ds, status)

    def _deployment_status(self, dep: Deployment) -> None:
        template = dep.model_dump(by_alias=True)["spec"].get("template") or {}
        revision = content_hash(template)
        pods = [p for p in self._owned(dep) if _pod_active(p)]
        ready = [p for p in pods if _pod_ready(p)]
        updated = [p for p in pods if p.metadata.labels.get(TEMPLATE_HASH_LABEL) == revision]
        replicas = dep.spec.replicas if dep.spec.replicas is not None else 1
        available = len(ready) >= replicas
        current = next((c for c in dep.status.conditions if c.type == "Available"), None)
        ltt = current.last_transition_time if current is not None and (current.status == "True") == available else None
        status = {"replicas": len(pods), "readyReplicas": len(ready), "availableReplicas": len(ready),
                  "updatedReplicas": len(updated), "unavailableReplicas": max(replicas - len(ready), 0),
                  "observedGeneration": dep.metadata.generation,
                  "conditions": [{"type": "Available", "status": "True" if available else "False",
                                  "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                                  "lastTransitionTime": ltt or rfc3339(self.clock.now())}]}
        self._write_status(dep, status)

    def _write_status(self, obj: KubeObject, status: dict[str, Any]) -> None:
        have = obj.model_dump(by_alias=True, exclude_none=True).get("status") or {}
        if all(have.get(k) == v for k, v in status.items()):
            return
        with contextlib.suppress(ApiError):
            self.store.patch(type(obj), obj.name, obj.namespace, {"status": status}, subresource="status")


def _pod_ip(key: str) -> str:
    n = int(content_hash(key, length=6), 16)
    return f"10.{244 + (n >> 16) % 8}.{(n >> 8) & 255}.{n & 255}"


def format_resources(r: Resources) -> dict[str, str]:
    return {k: format_quantity(v) for k, v in r.items()}
