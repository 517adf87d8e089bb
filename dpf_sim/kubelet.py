"""The twin's kubelets, scheduler and workload controllers for one cluster store (a DPU cluster, or the host).

- Nodes: a DPU node's allocatable is its flavor's dpuResources minus systemReservedResources (given by the
  composition through `allocatable_for`); a node without allocatable is not resource-limited.
- DaemonSets: one pod per Ready Node matching the pod template's nodeSelector / required node affinity whose
  NoSchedule/NoExecute taints are tolerated; a template change replaces the pods (new revision hash); pods of
  nodes no longer selected go.
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
from dpf_core.api.meta import KubeObject
from dpf_core.api.quantity import format_quantity, parse_quantity
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
        self._owned_by: dict[str, list[Pod]] | None = None  # during a pass: controller uid -> pods
        self._desired: dict[tuple[str, int | None], int] = {}  # during a pass: DaemonSet (uid, generation) -> nodes
        # A pass visits every node and pod of the cluster, and passes come every sync_delay while nodes join, so a
        # 1,000-node DPU cluster paid O(cluster) per joining node. Stored snapshots never change in place: what a
        # pass derived from one snapshot holds while the store still returns that same object.
        self._alloc_ok: dict[str, Node] = {}  # node -> the snapshot seen to carry every allocatable it needs
        self._selected: dict[str, tuple[str, dict[str, tuple[Node, bool]]]] = {}  # DaemonSet uid -> (revision, node -> (snapshot, runs a pod there))
        self._pod_changes = 0  # Pod events seen: the owner index below holds while this stays put
        self._owner_index: tuple[int, dict[str, list[Pod]]] | None = None
        self._wake = env.event()
        self.passes = 0
        store.subscribe(self._on_event, [DaemonSet, Deployment, Node, Pod])
        env.process(self._loop())
        self.poke()

    def poke(self) -> None:
        if not self._wake.triggered:
            self._wake.succeed()

    def _on_event(self, ev: WatchEvent) -> None:
        if isinstance(ev.object, Pod):
            self._pod_changes += 1
        elif ev.type == "DELETED":
            if isinstance(ev.object, DaemonSet):
                self._selected.pop(ev.object.metadata.uid or "", None)
            elif isinstance(ev.object, Node):
                self._alloc_ok.pop(ev.object.name, None)
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
        nodes = sorted(self.store.list(Node), key=lambda n: n.name)
        for n in nodes:
            self._ensure_allocatable(n)
        nodes = sorted(self.store.list(Node), key=lambda n: n.name)
        try:
            # A workload's sync touches only its own pods, so one scan of the pods serves the whole phase; the
            # scheduler then binds pods, so the status phase scans again.
            self._owned_by = self._index_owned()
            for ds in sorted(self.store.list(DaemonSet), key=lambda o: (o.namespace or "", o.name)):
                if ds.metadata.deletion_timestamp is None:
                    self._sync_daemonset(ds, nodes)
            for dep in sorted(self.store.list(Deployment), key=lambda o: (o.namespace or "", o.name)):
                if dep.metadata.deletion_timestamp is None:
                    self._sync_deployment(dep, nodes)
            self._owned_by = None
            self._bind_pending(nodes)
            self._owned_by = self._index_owned()
            for ds in self.store.list(DaemonSet):
                self._daemonset_status(ds, nodes)
            for dep in self.store.list(Deployment):
                self._deployment_status(dep)
        finally:
            self._owned_by = None
            self._desired.clear()

    def _ensure_allocatable(self, node: Node) -> None:
        """Adds the composition's resources a Node lacks. Another model may have advertised its own first (the
        SR-IOV device plugin's `nvidia.com/bf_sf`, dpf_sim.cni), so presence of any allocatable is no proof; the
        answer is kept per node, as a pass visits every node and asking costs a DPU and a DPUFlavor lookup."""
        if self.allocatable_for is None:
            return
        if self._alloc_ok.get(node.name) is node:
            return
        alloc = self._allocatable.get(node.name)
        if alloc is None:
            alloc = self.allocatable_for(node.name)
            if alloc is None:
                return
            self._allocatable[node.name] = alloc
        missing = {k: v for k, v in alloc.items() if k not in node.status.allocatable}
        if not missing:
            self._alloc_ok[node.name] = node
        else:
            self.store.patch(Node, node.name, None, {"status": {"allocatable": missing, "capacity": missing}},
                             subresource="status")

    def _index_owned(self) -> dict[str, list[Pod]]:
        """Pods by the uid of their controller, each list in name order (readers never edit it: kept for as
        long as no Pod event arrives)."""
        kept = self._owner_index
        if kept is not None and kept[0] == self._pod_changes:
            return kept[1]
        index: dict[str, list[Pod]] = {}
        for p in self.store.list(Pod):
            for r in p.metadata.owner_references:
                if r.controller:
                    index.setdefault(r.uid, []).append(p)
        for pods in index.values():
            pods.sort(key=lambda p: p.name)
        self._owner_index = (self._pod_changes, index)
        return index

    def _owned(self, owner: KubeObject) -> list[Pod]:
        uid = owner.metadata.uid
        if self._owned_by is not None:
            return [p for p in self._owned_by.get(uid or "", ()) if p.namespace == owner.namespace]
        return sorted((p for p in self.store.list(Pod, owner.namespace)
                       if any(r.uid == uid and r.controller for r in p.metadata.owner_references)),
                      key=lambda p: p.name)

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
        free: dict[str, Resources | None] = {n.name: allocatable_of(n) for n in nodes}
        for p in self.store.list(Pod):
            if not p.spec.node_name or not _pod_active(p):
                continue
            left = free.get(p.spec.node_name)
            if left is None:
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

    def _sync_daemonset(self, ds: DaemonSet, nodes: list[Node]) -> None:
        template = ds.model_dump(by_alias=True)["spec"].get("template") or {}
        pod_spec = template.get("spec") or {}
        revision = content_hash(template)
        uid = ds.metadata.uid or ""
        kept = self._selected.get(uid)
        if kept is None or kept[0] != revision or len(kept[1]) > len(nodes) + 64:  # (nodes that left, dropped)
            kept = self._selected[uid] = (revision, {})
        seen = kept[1]
        wanted: set[str] = set()
        for n in nodes:
            hit = seen.get(n.name)
            if hit is not None and hit[0] is n:
                runs = hit[1]
            else:
                runs = (n.is_ready() and not n.spec.unschedulable and node_selected(pod_spec, n)
                        and tolerated(pod_spec, n))
                seen[n.name] = (n, runs)
            if runs:
                wanted.add(n.name)
        self._desired[(ds.metadata.uid or "", ds.metadata.generation)] = len(wanted)
        have: dict[str, Pod] = {}
        for p in self._owned(ds):
            node = p.spec.node_name or p.metadata.annotations.get(TARGET_NODE_ANNOTATION)
            stale = p.metadata.labels.get(REVISION_LABEL) != revision or node not in wanted or node in have
            if stale:
                if p.metadata.deletion_timestamp is None:
                    with contextlib.suppress(ApiError):
                        self.store.delete(Pod, p.name, p.namespace)
                continue
            if node is not None:
                have[node] = p
        missing = sorted(wanted - set(have))
        if not missing:
            return  # every wanted node has its pod: no need to add up what the nodes have left
        free = self._free(nodes)
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

    def _sync_deployment(self, dep: Deployment, nodes: list[Node]) -> None:
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

    def _bind_pending(self, nodes: list[Node]) -> None:
        """The scheduler: every unbound pod goes to a fitting node (its DaemonSet node, else the least loaded)."""
        by_name = {n.name: n for n in nodes}
        # A kubelet that runs no pods itself (the host's: ClusterWorld runs the DMS and hostnetwork pods) schedules
        # only its workloads' pods; binding a DMS pod here reset it to Pending behind ClusterWorld's back and left
        # its DPU in DMS Deployment for good (chaos seeds 147 and 242).
        unbound = [p for p in self.store.list(Pod) if not p.spec.node_name and _pod_active(p)
                   and (self.run_pods or _workload_pod(p))]
        if not unbound:
            return
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
                candidates = [n for n in among if n.is_ready() and not n.spec.unschedulable
                              and node_selected(spec, n) and tolerated(spec, n)]
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
    def _daemonset_status(self, ds: DaemonSet, nodes: list[Node]) -> None:
        template = ds.model_dump(by_alias=True)["spec"].get("template") or {}
        pod_spec = template.get("spec") or {}
        revision = content_hash(template)
        desired = self._desired.get((ds.metadata.uid or "", ds.metadata.generation))
        if desired is None:
            desired = sum(1 for n in nodes if n.is_ready() and not n.spec.unschedulable
                          and node_selected(pod_spec, n) and tolerated(pod_spec, n))
        pods = [p for p in self._owned(ds) if _pod_active(p)]
        scheduled = [p for p in pods if p.spec.node_name]
        ready = [p for p in scheduled if _pod_ready(p)]
        updated = [p for p in scheduled if p.metadata.labels.get(REVISION_LABEL) == revision]
        status = {"desiredNumberScheduled": desired, "currentNumberScheduled": len(scheduled),
                  "numberReady": len(ready), "numberAvailable": len(ready), "updatedNumberScheduled": len(updated),
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
