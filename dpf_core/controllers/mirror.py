"""What the service-chain controllers share, so the three host mirrors and the two DPU-cluster sets are one
flow each, not five copies.

Host -> DPU-cluster mirrors (DPF's internal/dpuservicechain): DPUServiceInterface, DPUServiceChain and
DPUServiceIPAM each keep one child of the same name and namespace in EVERY DPUCluster (clusterSelector is
ignored, as in DPF). One pass:
1. pre-create the kind's conditions (Unknown/Pending);
2. deleting -> delete the children in every cluster; while any remain `*Reconciled` False AwaitingDeletion and
   requeue 30 s; once gone drop the finalizer;
3. no finalizer -> add it and return;
4. for every cluster: ensure the namespace, apply the child; `*Reconciled` True, or False/Error and the error
   is returned (rate-limited retry);
5. always (DPF's deferred summary): `*Ready` from the children's readiness, `Ready` summarized, status written
   only when it changed, with `observedGeneration`.

DPU-cluster sets (DPF's internal/servicechainset): ServiceInterfaceSet / ServiceChainSet keep a child
`<set>-<node>` per selected DPU-cluster Node and delete the children of Nodes no longer selected.

Differences from DPF (for docs/differences.md):
- "Apply" is create-or-update: labels and annotations of the desired child are merged over the existing ones
  (keys other writers added, e.g. the SFC agent's `svc.dpu.nvidia.com/service-chain`, survive), spec and
  ownerReferences are replaced. A label dropped from a template therefore stays on existing children (SSA's
  managed fields would remove it).
- The mirrors requeue every READY_POLL seconds while their `*Ready` condition is not True: DPF re-reads the
  children only when something else triggers a pass, so its `*Ready` can stay stale (its own TODO says so).
- The mirrors also react to DPUCluster events (DPF: TenantControlPlane metadata events only, which static
  clusters never produce).
- Sets: `numberApplied` = children that exist, `numberReady` = children whose `Ready` is True for their
  current generation, `*Ready` True only when every child is ready. DPF always writes numberApplied 1,
  never numberReady and always `*Ready` True.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, Generic, TypeVar, cast

from dpf_core.api.conditions import (
    REASON_AWAITING_DELETION,
    REASON_ERROR,
    REASON_PENDING,
    REASON_SUCCESS,
    TYPE_READY,
    get_condition,
    init_conditions,
    list_names,
    set_condition,
    summarize_ready,
)
from dpf_core.api.external import Namespace, Node, TenantControlPlane
from dpf_core.api.meta import Condition, KubeObject, shallow_copy
from dpf_core.api.provisioning import DPUCluster
from dpf_core.errors import AlreadyExists, NotFound
from dpf_core.runtime import DONE, Context, Controller, Lister, Request, Result, Watch, labels_changed, owner
from dpf_core.store.protocol import Client

from .dpucluster import cluster_client

T = TypeVar("T", bound=KubeObject)
P = TypeVar("P", bound=KubeObject)

AWAITING_DELETION_REQUEUE = 30.0
# Our extension: how often a mirror re-reads its children while they are not all ready.
READY_POLL = 10.0


# --- generic object helpers ---------------------------------------------------------------------------


def status_of(obj: KubeObject) -> Any:
    """The `status` of a kind that has one (every kind these controllers write status on)."""
    return obj.status  # type: ignore[attr-defined]


def apply(client: Client, desired: T) -> T:
    """Create `desired`, or bring the existing object to it: labels/annotations merged over the existing ones,
    spec and ownerReferences replaced. No write when nothing differs."""
    cls = type(desired)
    existing = client.try_get(cls, desired.name, desired.namespace)
    if existing is None:
        try:
            return client.create(desired)
        except AlreadyExists:
            existing = client.get(cls, desired.name, desired.namespace)
    updated = existing.deepcopy()
    meta = updated.metadata
    meta.labels = {**existing.metadata.labels, **desired.metadata.labels}
    meta.annotations = {**existing.metadata.annotations, **desired.metadata.annotations}
    if desired.metadata.owner_references:
        meta.owner_references = [r.model_copy() for r in desired.metadata.owner_references]
    if hasattr(desired, "spec"):
        updated.spec = desired.spec.model_copy(deep=True)  # type: ignore[attr-defined]
    if updated.wire() == existing.wire():
        return existing
    return client.update(updated)


def same_applied_fields(
    current: KubeObject,
    verified: KubeObject,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> bool:
    """Whether `apply` of the desired object that `verified` was found equal to would leave `current` as it
    is: the same object (uid), spec (a spec change bumps the generation) and ownerReferences as `verified`,
    and the desired `labels`/`annotations` still among its own (apply merges them over the existing ones, so
    keys other writers added since, such as the SFC agent's chain label, change nothing). Without `labels`/
    `annotations`: `verified`'s own, compared whole."""
    if current is verified:
        return True
    a, b = current.metadata, verified.metadata
    if not (
        bool(a.uid)
        and a.generation is not None
        and a.uid == b.uid
        and a.generation == b.generation
        and a.owner_references == b.owner_references
    ):
        return False
    if labels is None:
        if a.labels != b.labels:
            return False
    elif not _contains(a.labels, labels):
        return False
    if annotations is None:
        return a.annotations == b.annotations
    return _contains(a.annotations, annotations)


def _contains(have: dict[str, str], want: dict[str, str]) -> bool:
    return all(have.get(k) == v for k, v in want.items())


def ensure_namespace(client: Client, namespace: str) -> None:
    """utils.EnsureNamespace: create it when it does not exist (never deleted again, as in DPF)."""
    if client.try_get(Namespace, namespace) is not None:
        return
    with contextlib.suppress(AlreadyExists):
        client.create(Namespace.new(namespace))


def delete_if_exists(client: Client, cls: type[KubeObject], name: str, namespace: str | None) -> None:
    with contextlib.suppress(NotFound):
        client.delete(cls, name, namespace)


def remove_finalizer(ctx: Context, obj: T, finalizer: str) -> None:
    if finalizer not in obj.metadata.finalizers:
        return
    released = obj.deepcopy()
    released.metadata.finalizers = [f for f in released.metadata.finalizers if f != finalizer]
    ctx.client.update(released)


def with_metadata(obj: T, **changes: Any) -> T:
    """`obj` (a store snapshot) with `changes` to its metadata, for `client.update` only: everything else
    stays shared with the read-only snapshot, since a store copies what it admits (MemoryStore's admission,
    a real API server's JSON) and never edits its argument. `changes` must be the caller's own values."""
    return shallow_copy(obj, {"metadata": shallow_copy(obj.metadata, changes)})


def editable(obj: T) -> T:
    """A copy of `obj` (a store snapshot) for a pass that edits only its finalizers, labels and status and
    persists them with `write`: those are its own, the rest (spec) stays shared with the read-only snapshot.
    A whole deep copy per pass costs more than the pass's writes."""
    meta = obj.metadata
    update: dict[str, Any] = {
        "metadata": shallow_copy(meta, {"finalizers": list(meta.finalizers), "labels": dict(meta.labels)})
    }
    status = getattr(obj, "status", None)
    if status is not None:
        update["status"] = status.clone()
    return shallow_copy(obj, update)


def write(ctx: Context, original: T, new: T) -> T:
    """Persist `new` against `original` as DPF's patch helper does: metadata (finalizers, labels) first, then the
    status subresource, each only when it changed. Only those parts of `new` are read; the store copies them,
    so `new` needs no copying (status writes share the rest with the snapshot, `KubeObject.with_status`)."""
    current = original
    if new.metadata.finalizers != original.metadata.finalizers or new.metadata.labels != original.metadata.labels:
        meta_only = with_metadata(original, finalizers=list(new.metadata.finalizers), labels=dict(new.metadata.labels))
        current = ctx.client.update(meta_only)
        if current.metadata.deletion_timestamp is not None and not current.metadata.finalizers:
            return current  # gone: no status to write
    status = status_of(new)
    if status != status_of(current):
        current = ctx.client.update_status(shallow_copy(current, {"status": status}))  # = with_status
    return current


def is_ready(conditions: Sequence[Condition], generation: int | None = None) -> bool:
    """`Ready` True; with a generation, only when the condition was written for it (not a stale True)."""
    c = get_condition(conditions, TYPE_READY)
    if c is None or c.status != "True":
        return False
    return generation is None or c.observed_generation is None or c.observed_generation == generation


# --- watches with a lister known only at start ----------------------------------------------------------


class ListerCell:
    """The manager's lister, handed over when the controller starts (watch mappers are built before)."""

    def __init__(self) -> None:
        self.lister: Lister | None = None

    def all(self, kind: type[KubeObject]) -> list[Request]:
        if self.lister is None:
            return []
        return sorted(Request.of(o) for o in self.lister(kind))

    def mapper_all(self, kind: type[KubeObject]) -> Callable[[Any], Iterable[Request]]:
        """A watch mapper: any event -> every object of `kind`."""

        def mapper(ev: Any) -> Iterable[Request]:
            return self.all(kind)

        return mapper


class ListerController(Controller):
    """A Controller whose watch mappers need the manager's lister (`ListerCell`)."""

    def __init__(self, *args: Any, cell: ListerCell, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cell = cell

    def start(self, lister: Lister, listers: dict[str | None, Lister] | None = None) -> None:
        self.cell.lister = lister
        super().start(lister, listers)


# --- host -> DPU-cluster mirrors ------------------------------------------------------------------------


class ClusterTarget:
    """One DPU cluster a mirror writes to."""

    __slots__ = ("client", "cluster")

    def __init__(self, cluster: DPUCluster, client: Client) -> None:
        self.cluster = cluster
        self.client = client

    def __str__(self) -> str:
        return f"{self.cluster.namespace}/{self.cluster.name}"


def dpu_clusters(ctx: Context) -> list[ClusterTarget]:
    """dpucluster.GetConfigs + Client: every DPUCluster (no health filter); one without a usable kubeconfig
    fails the pass, as in DPF."""
    clusters = sorted(ctx.client.list(DPUCluster), key=lambda c: (c.namespace or "", c.name))
    return [ClusterTarget(dc, cluster_client(ctx, dc)) for dc in clusters]


class MirrorReconciler(ABC, Generic[P]):
    """DPF's objectsInDPUClustersReconciler flow; subclasses say what the child is."""

    KIND: ClassVar[type[KubeObject]]
    CONDITIONS: ClassVar[tuple[str, ...]]
    RECONCILED: ClassVar[str]
    READY: ClassVar[str]
    FINALIZER: ClassVar[str]

    # -- what a subclass provides -------------------------------------------------------------------------
    @abstractmethod
    def apply_children(self, client: Client, parent: P) -> None:
        """Create or update the child(ren) of `parent` in one DPU cluster."""

    @abstractmethod
    def children(self, client: Client, parent: P) -> list[KubeObject]:
        """The children of `parent` that exist in one DPU cluster."""

    @abstractmethod
    def delete_children(self, client: Client, parent: P) -> None:
        """Delete the children of `parent` in one DPU cluster (absent ones are fine)."""

    @abstractmethod
    def child_ready(self, child: KubeObject) -> bool: ...

    # -- the flow -----------------------------------------------------------------------------------------
    def reconcile(self, ctx: Context, req: Request) -> Result:
        found = ctx.client.try_get(self.KIND, req.name, req.namespace)
        if found is None:
            return DONE
        obj = cast(P, found)
        new = obj.deepcopy()
        status = status_of(new)
        now = ctx.timestamp()
        init_conditions(status.conditions, self.CONDITIONS, now)
        error: Exception | None = None
        result = DONE
        try:
            if obj.metadata.deletion_timestamp is not None:
                result = self._reconcile_delete(ctx, new, now)
            elif self.FINALIZER not in obj.metadata.finalizers:
                new.metadata.finalizers.append(self.FINALIZER)
            else:
                self._reconcile_children(ctx, new, now)
        except Exception as e:
            error = e
        if not (obj.metadata.deletion_timestamp is not None and self.FINALIZER not in new.metadata.finalizers):
            ready = self._update_summary(ctx, new, now)
            if error is None and result == DONE and not ready and self.FINALIZER in obj.metadata.finalizers:
                result = Result(requeue_after=READY_POLL)
        write(ctx, obj, new)
        if error is not None:
            raise error
        return result

    def _reconcile_children(self, ctx: Context, new: P, now: str) -> None:
        status = status_of(new)
        try:
            for target in dpu_clusters(ctx):
                ensure_namespace(target.client, new.namespace or "default")
                self.apply_children(target.client, new)
        except Exception as e:
            set_condition(status.conditions, self.RECONCILED, "False", REASON_ERROR, f"Error occurred: {e}", now)
            raise
        set_condition(status.conditions, self.RECONCILED, "True", REASON_SUCCESS, "", now)

    def _reconcile_delete(self, ctx: Context, new: P, now: str) -> Result:
        remaining = 0
        for target in dpu_clusters(ctx):
            self.delete_children(target.client, new)
            remaining += len(self.children(target.client, new))
        if remaining > 0:
            message = f"{remaining} objects still exist across all DPU clusters"
            set_condition(status_of(new).conditions, self.RECONCILED, "False", REASON_AWAITING_DELETION, message, now)
            ctx.log.info("Requeueing because %s", message)
            return Result(requeue_after=AWAITING_DELETION_REQUEUE)
        new.metadata.finalizers = [f for f in new.metadata.finalizers if f != self.FINALIZER]
        return DONE

    def _update_summary(self, ctx: Context, new: P, now: str) -> bool:
        """`*Ready` from every cluster's children, then the Ready summary. Returns `*Ready`."""
        status = status_of(new)
        ready = False
        try:
            unready: list[str] = []
            for target in dpu_clusters(ctx):
                found = self.children(target.client, new)
                if not found:
                    raise NotFound(f"no {self.KIND.KIND.kind} child {new.namespace}/{new.name} in cluster {target}")
                for child in found:
                    if not self.child_ready(child):
                        unready.append(
                            f"{{Cluster: {target}, Object: {child.namespace}/{child.name}}}"
                        )
        except Exception as e:
            set_condition(status.conditions, self.READY, "False", REASON_PENDING, f"Error occurred: {e}", now)
        else:
            if unready:
                message = f"Objects not ready: {list_names(unready)}"
                set_condition(status.conditions, self.READY, "False", REASON_PENDING, message, now)
            else:
                set_condition(status.conditions, self.READY, "True", REASON_SUCCESS, "", now)
                ready = True
        summarize_ready(status.conditions, self.CONDITIONS, now)
        status.observed_generation = new.metadata.generation
        return ready


class SetMirrorReconciler(MirrorReconciler[P]):
    """A host object whose child is one set of the same name and namespace in every DPU cluster:
    labels/annotations from `spec.template.metadata`, spec = `spec.template.spec` (DPUServiceInterface ->
    ServiceInterfaceSet, DPUServiceChain -> ServiceChainSet)."""

    CHILD: ClassVar[type[KubeObject]]

    def desired_child(self, parent: P) -> KubeObject:
        template = parent.spec.template  # type: ignore[attr-defined]
        meta = template.metadata
        return self.CHILD.model_validate(
            {
                "apiVersion": self.CHILD.KIND.api_version,
                "kind": self.CHILD.KIND.kind,
                "metadata": {
                    "name": parent.name,
                    "namespace": parent.namespace,
                    "labels": dict(meta.labels) if meta is not None else {},
                    "annotations": dict(meta.annotations) if meta is not None else {},
                },
                "spec": template.spec.wire(),
            }
        )

    def apply_children(self, client: Client, parent: P) -> None:
        apply(client, self.desired_child(parent))

    def children(self, client: Client, parent: P) -> list[KubeObject]:
        found = client.try_get(self.CHILD, parent.name, parent.namespace)
        return [found] if found is not None else []

    def delete_children(self, client: Client, parent: P) -> None:
        delete_if_exists(client, self.CHILD, parent.name, parent.namespace)

    def child_ready(self, child: KubeObject) -> bool:
        return isinstance(child, self.CHILD) and is_ready(child.status.conditions)  # type: ignore[attr-defined]


def mirror_controller(name: str, reconciler: MirrorReconciler[Any], *, watch_clusters: bool = True) -> Controller:
    """Own object; DPUCluster and TenantControlPlane events re-evaluate every object of the kind."""
    cell = ListerCell()
    kind = reconciler.KIND
    watches: list[Watch] = []
    if watch_clusters:
        watches = [Watch(TenantControlPlane, cell.mapper_all(kind)), Watch(DPUCluster, cell.mapper_all(kind))]
    return ListerController(name, reconciler, kind, watches, cell=cell)


# --- DPU-cluster sets -------------------------------------------------------------------------------------


# (the set's inputs, the child as last found equal to the desired one, the desired labels, annotations)
_Applied = tuple[tuple[Any, ...], KubeObject, dict[str, str], dict[str, str]]


class SetReconciler(ABC, Generic[P]):
    """DPF's serviceSetReconciler flow: a child `<set>-<node>` per selected Node of the DPU cluster."""

    KIND: ClassVar[type[KubeObject]]
    CHILD_KIND: ClassVar[type[KubeObject]]
    CONDITIONS: ClassVar[tuple[str, ...]]
    RECONCILED: ClassVar[str]
    READY: ClassVar[str]
    FINALIZER: ClassVar[str]
    NAME_LABEL: ClassVar[str]
    NAMESPACE_LABEL: ClassVar[str]

    @abstractmethod
    def desired_child(self, parent: P, node_name: str) -> KubeObject:
        """The child for one Node, as the set wants it."""

    @abstractmethod
    def node_selector(self, parent: P) -> Any:
        """The set's `spec.nodeSelector` (a LabelSelector, None = every Node)."""

    @staticmethod
    def child_name(parent: KubeObject, node_name: str) -> str:
        return f"{parent.name}-{node_name}"

    @classmethod
    def child_object(cls, parent: KubeObject, node_name: str, labels: dict[str, str], spec: dict[str, Any]) -> KubeObject:
        """The child `<set>-<node>`: annotations copied from the SET (not its template, as DPF does), a
        controller ownerReference to the set."""
        return cls.CHILD_KIND.model_validate(
            {
                "apiVersion": cls.CHILD_KIND.KIND.api_version,
                "kind": cls.CHILD_KIND.KIND.kind,
                "metadata": {
                    "name": cls.child_name(parent, node_name),
                    "namespace": parent.namespace,
                    "labels": labels,
                    "annotations": dict(parent.metadata.annotations),
                    "ownerReferences": [parent.controller_ref().wire()],
                },
                "spec": spec,
            }
        )

    def __init__(self) -> None:
        # Per set: node -> the set's inputs, the child as a pass last found it equal to what the set wants, and
        # the labels/annotations the set wanted on it. While neither the set's inputs nor what `apply` compares
        # of the child (its spec, seen through its generation, ownerReferences, and the wanted labels and
        # annotations still on it) changed since, an apply would write nothing, so a pass builds and applies
        # only the children whose input changed instead of every child on every child event (O(nodes^2) per
        # cluster while a set converges). Labels other writers add (the SFC agent's chain label on every
        # ServiceInterface) are no such change. The held child is the store's current snapshot.
        self._applied: dict[tuple[str, str], dict[str, _Applied]] = {}

    @staticmethod
    def inputs(parent: KubeObject) -> tuple[Any, ...]:
        """What a desired child is built from besides the node name: the set's identity (controller
        ownerReference), annotations and spec."""
        return (
            parent.name,
            parent.namespace,
            parent.metadata.uid,
            parent.metadata.generation,
            tuple(sorted(parent.metadata.annotations.items())),
            parent.spec.model_dump_json(),  # type: ignore[attr-defined]
        )

    def children(self, client: Client, parent: KubeObject) -> list[KubeObject]:
        selector = {self.NAME_LABEL: parent.name, self.NAMESPACE_LABEL: parent.namespace or ""}
        return sorted(client.list(self.CHILD_KIND, parent.namespace, label_selector=selector), key=lambda o: o.name)

    def reconcile(self, ctx: Context, req: Request) -> Result:
        found = ctx.client.try_get(self.KIND, req.name, req.namespace)
        if found is None:
            return DONE
        obj = cast(P, found)
        new = obj.deepcopy()
        status = status_of(new)
        now = ctx.timestamp()
        init_conditions(status.conditions, self.CONDITIONS, now)
        if obj.metadata.deletion_timestamp is not None:
            self._applied.pop((req.namespace or "", req.name), None)
            for child in self.children(ctx.client, obj):
                if child.metadata.deletion_timestamp is None:
                    delete_if_exists(ctx.client, self.CHILD_KIND, child.name, child.namespace)
            remove_finalizer(ctx, obj, self.FINALIZER)
            return DONE
        error: Exception | None = None
        if self.FINALIZER not in obj.metadata.finalizers:
            new.metadata.finalizers.append(self.FINALIZER)
        else:
            try:
                self._reconcile_set(ctx, obj)
            except Exception as e:
                error = e
                message = f"Error occurred: {e}"
                set_condition(status.conditions, self.RECONCILED, "False", REASON_ERROR, message, now)
            else:
                set_condition(status.conditions, self.RECONCILED, "True", REASON_SUCCESS, "", now)
        summary_error = self._update_summary(ctx, new, now)
        write(ctx, obj, new)
        # A failed read of the children is retried too: no child event may come to bring the set back.
        failure = error or summary_error
        if failure is not None:
            raise failure
        return DONE

    def _reconcile_set(self, ctx: Context, parent: P) -> None:
        selector = self.node_selector(parent)
        nodes = ctx.client.list(Node, label_selector=selector) if selector is not None else ctx.client.list(Node)
        selected = {n.name for n in nodes}
        key = (parent.namespace or "", parent.name)
        inputs = self.inputs(parent)
        before = self._applied.get(key, {})
        applied: dict[str, _Applied] = {}
        self._applied[key] = applied
        for node_name in sorted(selected):
            seen = before.get(node_name)
            if seen is not None and seen[0] == inputs:
                current = ctx.client.try_get(self.CHILD_KIND, self.child_name(parent, node_name), parent.namespace)
                if current is not None and same_applied_fields(current, seen[1], seen[2], seen[3]):
                    applied[node_name] = (inputs, current, seen[2], seen[3])
                    continue
            desired = self.desired_child(parent, node_name)
            meta = desired.metadata
            applied[node_name] = (inputs, apply(ctx.client, desired), dict(meta.labels), dict(meta.annotations))
        for child in self.children(ctx.client, parent):
            node = getattr(child.spec, "node", None)  # type: ignore[attr-defined]
            if node in selected or child.metadata.deletion_timestamp is not None:
                continue
            delete_if_exists(ctx.client, self.CHILD_KIND, child.name, child.namespace)
            ctx.log.info("Child is deleted nodename=%s child=%s/%s", node, child.namespace, child.name)

    def _update_summary(self, ctx: Context, new: P, now: str) -> Exception | None:
        """`Ready` from the children; the error when they could not be read (the caller retries)."""
        status = status_of(new)
        failure: Exception | None = None
        try:
            children = [c for c in self.children(ctx.client, new) if c.metadata.deletion_timestamp is None]
        except Exception as e:
            set_condition(status.conditions, self.READY, "False", REASON_PENDING, f"Error occurred: {e}", now)
            failure = e
        else:
            unready = [
                f"{c.namespace}/{c.name}"
                for c in children
                if not is_ready(status_of(c).conditions, c.metadata.generation)
            ]
            status.number_applied = len(children)
            status.number_ready = len(children) - len(unready)
            if unready:
                message = f"Objects not ready: {list_names(unready)}"
                set_condition(status.conditions, self.READY, "False", REASON_PENDING, message, now)
            else:
                set_condition(status.conditions, self.READY, "True", REASON_SUCCESS, "", now)
        summarize_ready(status.conditions, self.CONDITIONS, now)
        status.observed_generation = new.metadata.generation
        return failure


def set_controller(name: str, reconciler: SetReconciler[Any]) -> Controller:
    """DPF's watches: the set; its children (controller ownerReference); Node label changes -> every set."""
    cell = ListerCell()
    kind = reconciler.KIND
    return ListerController(
        name,
        reconciler,
        kind,
        [
            Watch(reconciler.CHILD_KIND, owner(kind)),
            Watch(Node, cell.mapper_all(kind), labels_changed),
        ],
        cell=cell,
    )
