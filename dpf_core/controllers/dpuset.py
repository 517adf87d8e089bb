"""DPUSet controller (provisioning manager): one DPU per selected Node's DPU, rolled when the template changes.

One pass, as DPF's: deleting -> drop the finalizer (the DPUs go by ownerReference garbage collection);
add the finalizer (return); create the DPUs missing on selected Nodes; delete the DPUs of Nodes no longer
selected; with RollingUpdate, merge template nodeLabels into every DPU and delete outdated DPUs (bfb or
flavor changed) within the maxUnavailable budget (their replacements are created by a later pass, once
they are gone); write `dpuStatistics` if it changed. No periodic requeue: DPU, Node and DPUFlavor events
drive it.

A pass reads a cache index the controller's watches keep (`DPUSetIndex`, see below) instead of listing
every Node and DPU, so it costs O(what changed) while doing exactly what DPF's O(N) loops do.

Differences from DPF (for docs/differences.md):
- DPF keys a set's DPUs by node, so a Node whose DPUs are all present is skipped and a Node with two DPUs
  gets the second only when it had none; we create each missing (node, DPU index) DPU by name.
- DPF counts `total` as the selected Nodes, so a selected Node without a DPU label holds one unit of the
  rolling budget forever; we count the DPUs the set should have (selected Node x DPU index).
- A DPU creation error stops DPF's pass; we record it (event FailedCreate), carry on with the other Nodes
  and return the error at the end of the pass (rate-limited retry).
- DPUs already being deleted are not deleted (and announced) again on every pass.
"""

from __future__ import annotations

import heapq
import re
import threading
from collections.abc import Iterable, Mapping

from dpf_core.api.external import Node
from dpf_core.api.meta import IntOrString, KubeObject, OwnerReference, shallow_copy
from dpf_core.api.provisioning import (
    DPU,
    DPU_HOST_IP_LABEL,
    DPU_INDEX_LABEL_PATTERN,
    DPU_PCI_ADDRESS_LABEL,
    DPU_PF_NAME_LABEL,
    DPUSET_FINALIZER,
    DPUSET_NAME_LABEL,
    DPUSET_NAMESPACE_LABEL,
    ROLLING_UPDATE_STRATEGY_TYPE,
    DPUConditionType,
    DPUFlavor,
    DPUPhase,
    DPUSet,
    EventReason,
    dpu_pci_address_label,
    dpu_pf0_name_label,
    scaled_value_from_int_or_percent,
)
from dpf_core.runtime import DONE, Context, Controller, Lister, Request, Result, Watch, from_object, owner
from dpf_core.runtime.controller import labels_changed
from dpf_core.store.protocol import WatchEvent
from dpf_core.store.selectors import LabelMatcher, compile_label_selector

from .options import ProvisioningOptions

NAME = "dpuset"

_INDEX_KEY = re.compile(DPU_INDEX_LABEL_PATTERN)
_INDEX = re.compile(r"dpu-(\d+)-")

# `dpuStatistics` leaves out the two phases DPF's switch forgets.
_UNCOUNTED_PHASES = frozenset({DPUPhase.NODE_EFFECT, DPUPhase.REBOOTING})


class DPUSetError(Exception):
    """Some DPUs could not be created or deleted this pass; the pass did everything else."""


# --- pure helpers -------------------------------------------------------------------------------------


def dpu_indices(dpu_selector: Mapping[str, str], node_labels: Mapping[str, str]) -> list[int]:
    """The DPU indices of a Node a set wants: every dpuSelector entry `feature.node.kubernetes.io/dpu-<i>-*`
    the Node carries with the same value; without a dpuSelector, DPU 0 if the Node has its PCI address."""
    if not dpu_selector:
        return [0] if dpu_pci_address_label(0) in node_labels else []
    found: set[int] = set()
    for key, value in dpu_selector.items():
        if node_labels.get(key) != value or not _INDEX_KEY.match(key):
            continue
        m = _INDEX.search(key)
        if m is not None:
            found.add(int(m.group(1)))
    return sorted(found)


def max_unavailable(value: IntOrString | None, total: int) -> int:
    """The rolling budget: an int, or a percentage of `total` rounded up; nil is 0; then clamped to [1, total]
    (checked in DPF's order, so a set with no DPUs still gets 1)."""
    scaled = scaled_value_from_int_or_percent(value, total, True)
    if scaled <= 0:
        return 1
    return min(scaled, total)


def is_unavailable(dpu: DPU) -> bool:
    """Not Ready (condition missing or False) or on its way out."""
    if dpu.metadata.deletion_timestamp is not None:
        return True
    for c in dpu.status.conditions:
        if c.type == DPUConditionType.READY:
            return c.status == "False"
    return True


def dpu_statistics(dpus: Iterable[DPU]) -> dict[str, int]:
    stats: dict[str, int] = {}
    for dpu in dpus:
        phase = dpu.status.phase or DPUPhase.INITIALIZING
        if phase in _UNCOUNTED_PHASES:
            continue
        stats[str(phase)] = stats.get(str(phase), 0) + 1
    return stats


def _host_ip(node: Node) -> str | None:
    for address in node.status.addresses:
        if address.type == "InternalIP":
            return address.address
    return None


def dpu_name(node_name: str, pci_address_label: str) -> str:
    return f"{node_name.lower()}-{pci_address_label}"


def _template_node_labels(dpu_set: DPUSet) -> dict[str, str]:
    cluster = dpu_set.spec.dpu_template.spec.cluster
    return dict(cluster.node_labels) if cluster is not None else {}


def desired_dpu(dpu_set: DPUSet, node: Node, index: int) -> DPU:
    """The DPU a set creates for DPU `index` of `node`. Raises ValueError when the Node lacks its labels."""
    node_labels = node.metadata.labels
    labels = {DPUSET_NAME_LABEL: dpu_set.name, DPUSET_NAMESPACE_LABEL: dpu_set.namespace or ""}
    labels.update(dpu_set.metadata.labels)
    pci_key, pf_key = dpu_pci_address_label(index), dpu_pf0_name_label(index)
    for key, target in ((pci_key, DPU_PCI_ADDRESS_LABEL), (pf_key, DPU_PF_NAME_LABEL)):
        if key in node_labels:
            if not node_labels[key]:
                raise ValueError(f"the label of {key} on node {node.name} is empty")
            labels[target] = node_labels[key]
    host_ip = _host_ip(node)
    if host_ip is not None:
        labels[DPU_HOST_IP_LABEL] = host_ip
    if DPU_PCI_ADDRESS_LABEL not in labels:
        raise ValueError(f"DPU on node {node.name} cannot be created due to lack of pci address of dpu")
    template = dpu_set.spec.dpu_template
    spec = template.spec
    return DPU.model_validate(
        {
            "apiVersion": DPU.KIND.api_version,
            "kind": DPU.KIND.kind,
            "metadata": {
                "name": dpu_name(node.name, labels[DPU_PCI_ADDRESS_LABEL]),
                "namespace": dpu_set.namespace,
                "labels": labels,
                "annotations": dict(template.annotations),
                "ownerReferences": [_controller_ref(dpu_set).wire()],
            },
            "spec": {
                "nodeName": node.name,
                "bfb": spec.bfb.name or "",
                "nodeEffect": spec.node_effect.wire(),
                "cluster": {"nodeLabels": _template_node_labels(dpu_set)},
                "dpuFlavor": spec.dpu_flavor,
                "automaticNodeReboot": spec.automatic_node_reboot,
            },
        }
    )


def _controller_ref(dpu_set: DPUSet) -> OwnerReference:
    return dpu_set.controller_ref()


# --- the index: per-DPUSet aggregates kept by the watches --------------------------------------------
#
# A pass used to list the set's Nodes and DPUs (several times) and loop over all of them on every event of
# every owned DPU: O(N) per event, O(N^2) for a fleet coming up. controller-runtime answers that with a cache
# index; here the controller's own watches keep, per DPUSet, exactly what a pass needs (the DPUs it would
# create, delete, patch or roll, the unavailable ones and the phase counts), so a pass costs O(what changed).
# The watches see every DPU and Node event synchronously in commit order, and the informers' initial list
# at start, so the index always equals what a list of the store would give; a view is rebuilt from the
# cached objects (O(N), once) when its DPUSet's generation or uid differs from the one it was built for.

_Slot = tuple[str, int]  # (node name, DPU index)
_Key = tuple[str, str]  # (namespace, DPUSet name)


def _owner_key(dpu: DPU) -> _Key | None:
    """The set whose label selector picks this DPU: its name label, with the namespace label naming its own namespace."""
    labels = dpu.metadata.labels
    name = labels.get(DPUSET_NAME_LABEL)
    ns = dpu.metadata.namespace or ""
    if name is None or labels.get(DPUSET_NAMESPACE_LABEL) != ns:
        return None
    return (ns, name)


def _newer_or_same(old: KubeObject, new: KubeObject) -> bool:
    """False only for a replayed (initial list) copy older than what the cache holds."""
    a, b = old.metadata.resource_version, new.metadata.resource_version
    if a and b and a.isdigit() and b.isdigit():
        return int(b) >= int(a)
    return True


class SetView:
    """What one pass of one DPUSet needs, for the spec of generation `generation`. Not thread-safe by itself:
    the index mutates it under its lock."""

    def __init__(self, dpu_set: DPUSet) -> None:
        spec = dpu_set.spec
        self.uid = dpu_set.metadata.uid
        self.generation = dpu_set.metadata.generation
        selector = spec.node_selector
        self._matcher: LabelMatcher | None = compile_label_selector(selector) if selector is not None else None
        self._dpu_selector = dict(spec.dpu_selector)
        self._bfb = spec.dpu_template.spec.bfb.name or ""
        self._flavor = spec.dpu_template.spec.dpu_flavor
        self._node_labels = _template_node_labels(dpu_set)
        # Selected Nodes (a selected Node without DPU labels is still selected: its DPUs stay) and the slots
        # the set wants on each, with the DPU name the slot's PCI label gives (None: label missing or empty).
        self.nodes: dict[str, Node] = {}
        self._slots: dict[str, tuple[tuple[int, str | None], ...]] = {}
        self.total = 0
        # Tuples, not sets: a Node holds one or two DPUs and a DPU name one slot (a 1-set is 216 bytes; ~40 MB
        # at 100k DPUs).
        self._expected: dict[str, tuple[_Slot, ...]] = {}
        self.missing: set[_Slot] = set()
        # Owned DPUs (the set's label selector) and their aggregates.
        self.dpus: dict[str, DPU] = {}
        self._by_node: dict[str, tuple[str, ...]] = {}
        self.unselected: set[str] = set()
        # Every owned DPU on a Node not selected, being deleted or not: DPF's `total - len(dpus)` counts
        # each of them -1 (see before_roll).
        self.off: set[str] = set()
        self.unavailable: set[str] = set()
        self.unmerged: set[str] = set()
        self.outdated: set[str] = set()
        self.phases: dict[str, int] = {}

    def current(self, dpu_set: DPUSet) -> bool:
        return self.uid == dpu_set.metadata.uid and self.generation == dpu_set.metadata.generation

    # -- DPUs --
    def add_dpu(self, dpu: DPU) -> None:
        name = dpu.name
        self.dpus[name] = dpu
        node = dpu.spec.node_name
        on_node = self._by_node.get(node, ())
        if name not in on_node:
            self._by_node[node] = (*on_node, name)
        deleting = dpu.metadata.deletion_timestamp is not None
        if is_unavailable(dpu):
            self.unavailable.add(name)
        if node not in self.nodes:
            self.off.add(name)
        if not deleting:
            if node not in self.nodes:
                self.unselected.add(name)
            have = dpu.spec.cluster.node_labels
            if any(have.get(k) != v for k, v in self._node_labels.items()):
                self.unmerged.add(name)
            if dpu.spec.bfb != self._bfb or dpu.spec.dpu_flavor != self._flavor:
                self.outdated.add(name)
        phase = dpu.status.phase or DPUPhase.INITIALIZING
        if phase not in _UNCOUNTED_PHASES:
            key = str(phase)
            self.phases[key] = self.phases.get(key, 0) + 1
        for slot in self._expected.get(name, ()):
            self.missing.discard(slot)

    def remove_dpu(self, dpu: DPU) -> None:
        name = dpu.name
        if self.dpus.pop(name, None) is None:
            return
        node = dpu.spec.node_name
        on_node = self._by_node.get(node)
        if on_node is not None:
            rest = tuple(n for n in on_node if n != name)
            if rest:
                self._by_node[node] = rest
            else:
                del self._by_node[node]
        self.unselected.discard(name)
        self.off.discard(name)
        self.unavailable.discard(name)
        self.unmerged.discard(name)
        self.outdated.discard(name)
        phase = dpu.status.phase or DPUPhase.INITIALIZING
        if phase not in _UNCOUNTED_PHASES:
            key = str(phase)
            left = self.phases.get(key, 0) - 1
            if left > 0:
                self.phases[key] = left
            else:
                self.phases.pop(key, None)
        self.missing.update(self._expected.get(name, ()))

    # -- Nodes --
    def set_node(self, name: str, node: Node | None) -> None:
        """A Node appeared, changed or went away: redo its slots and its DPUs' selection."""
        was_selected = name in self.nodes
        for index, expected in self._slots.pop(name, ()):
            self.total -= 1
            self.missing.discard((name, index))
            if expected is not None:
                slots = tuple(s for s in self._expected[expected] if s != (name, index))
                if slots:
                    self._expected[expected] = slots
                else:
                    del self._expected[expected]
        self.nodes.pop(name, None)
        selected = node is not None and (self._matcher is None or self._matcher.matches(node.metadata.labels))
        if node is not None and selected:
            self.nodes[name] = node
            labels = node.metadata.labels
            slots_of_node: list[tuple[int, str | None]] = []
            for index in dpu_indices(self._dpu_selector, labels):
                pci = labels.get(dpu_pci_address_label(index))
                expected = dpu_name(name, pci) if pci else None
                slots_of_node.append((index, expected))
                self.total += 1
                if expected is not None:
                    have = self._expected.get(expected, ())
                    if (name, index) not in have:
                        self._expected[expected] = (*have, (name, index))
                if expected is None or expected not in self.dpus:
                    self.missing.add((name, index))
            self._slots[name] = tuple(slots_of_node)
        if selected != was_selected:
            for dpu_name_ in self._by_node.get(name, ()):
                dpu = self.dpus[dpu_name_]
                if selected:
                    self.unselected.discard(dpu_name_)
                    self.off.discard(dpu_name_)
                else:
                    self.off.add(dpu_name_)
                    if dpu.metadata.deletion_timestamp is None:
                        self.unselected.add(dpu_name_)


def build_view(dpu_set: DPUSet, nodes: Iterable[Node], dpus: Iterable[DPU]) -> SetView:
    view = SetView(dpu_set)
    for n in nodes:
        view.set_node(n.name, n)
    for d in dpus:
        view.add_dpu(d)
    return view


class DPUSetIndex:
    """Per-DPUSet views over cached Nodes and DPUs, fed by the controller's watches.

    `live` once the controller started (its initial list went through the watches); until then a pass
    builds a throwaway view from store lists. Mappers and passes may run on different threads: views are
    mutated and snapshotted under `lock`, never held across a store call (the store delivers events to the
    mappers under its own lock)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.live = False
        self._nodes: dict[str, Node] = {}
        self._dpus: dict[tuple[str, str], DPU] = {}
        self._owned: dict[_Key, dict[str, DPU]] = {}
        self._views: dict[_Key, SetView] = {}

    def reset(self) -> None:
        with self.lock:
            self.live = False
            self._nodes.clear()
            self._dpus.clear()
            self._owned.clear()
            self._views.clear()

    def view(self, dpu_set: DPUSet) -> SetView:
        """The set's live view; rebuilt from the cache when cold or built for another generation."""
        key = (dpu_set.metadata.namespace or "", dpu_set.name)
        with self.lock:
            view = self._views.get(key)
            if view is None or not view.current(dpu_set):
                view = build_view(dpu_set, self._nodes.values(), self._owned.get(key, {}).values())
                self._views[key] = view
            return view

    def forget(self, namespace: str, name: str) -> None:
        with self.lock:
            self._views.pop((namespace, name), None)

    # -- watches (mappers that enqueue nothing) --
    def on_dpu(self, ev: WatchEvent) -> list[Request]:
        dpu = ev.object
        if not isinstance(dpu, DPU):
            return []
        key = (dpu.metadata.namespace or "", dpu.name)
        with self.lock:
            prev = self._dpus.get(key)
            if ev.type == "DELETED":
                if prev is None:
                    return []
                del self._dpus[key]
                self._drop(prev)
                return []
            if prev is not None:
                if not _newer_or_same(prev, dpu):
                    return []
                self._drop(prev)
            self._dpus[key] = dpu
            owner_key = _owner_key(dpu)
            if owner_key is not None:
                self._owned.setdefault(owner_key, {})[dpu.name] = dpu
                view = self._views.get(owner_key)
                if view is not None:
                    view.add_dpu(dpu)
        return []

    def _drop(self, prev: DPU) -> None:
        owner_key = _owner_key(prev)
        if owner_key is None:
            return
        owned = self._owned.get(owner_key)
        if owned is not None:
            owned.pop(prev.name, None)
            if not owned:
                del self._owned[owner_key]
        view = self._views.get(owner_key)
        if view is not None:
            view.remove_dpu(prev)

    def on_node(self, ev: WatchEvent) -> list[Request]:
        node = ev.object
        if not isinstance(node, Node):
            return []
        name = node.name
        with self.lock:
            prev = self._nodes.get(name)
            if ev.type == "DELETED":
                if prev is None:
                    return []
                del self._nodes[name]
                current: Node | None = None
            else:
                if prev is not None and not _newer_or_same(prev, node):
                    return []
                self._nodes[name] = node
                current = node
            for view in self._views.values():
                view.set_node(name, current)
        return []


# --- the reconciler -----------------------------------------------------------------------------------


class DPUSetReconciler:
    def __init__(self, options: ProvisioningOptions | None = None, index: DPUSetIndex | None = None) -> None:
        self.options = options or ProvisioningOptions()
        self.index = index

    def reconcile(self, ctx: Context, req: Request) -> Result:
        dpu_set = ctx.client.try_get(DPUSet, req.name, req.namespace)
        if dpu_set is None:
            if self.index is not None:
                self.index.forget(req.namespace or "", req.name)
            return DONE
        if dpu_set.metadata.deletion_timestamp is not None:
            if self.index is not None:
                self.index.forget(req.namespace or "", req.name)
            return finalize(ctx, dpu_set)
        if DPUSET_FINALIZER not in dpu_set.metadata.finalizers:
            protected = dpu_set.deepcopy()
            protected.metadata.finalizers.append(DPUSET_FINALIZER)
            ctx.client.update(protected)
            return DONE

        views = _Views(ctx, dpu_set, self.index)
        errors = create_missing(ctx, dpu_set, views)
        delete_unselected(ctx, dpu_set, views)
        stats, candidates, total, unavailable = views.before_roll()
        if strategy_type(dpu_set) == ROLLING_UPDATE_STRATEGY_TYPE:
            roll(ctx, dpu_set, candidates, total, unavailable)
        update_statistics(ctx, dpu_set, stats)
        if errors:
            raise DPUSetError("; ".join(errors))
        return DONE


class _Views:
    """The view a pass reads at each step: the live one (the index follows the pass's own writes as they
    commit), or without a live index a fresh one from store lists at each point where DPF lists."""

    def __init__(self, ctx: Context, dpu_set: DPUSet, index: DPUSetIndex | None) -> None:
        self._ctx = ctx
        self._set = dpu_set
        self._index = index if index is not None and index.live else None
        self._nodes: list[Node] | None = None
        self.lock: threading.RLock | _NoLock = index.lock if self._index is not None and index is not None else _NO_LOCK

    def now(self) -> SetView:
        if self._index is not None:
            return self._index.view(self._set)
        if self._nodes is None:
            selector = self._set.spec.node_selector
            client = self._ctx.client
            self._nodes = client.list(Node, label_selector=selector) if selector is not None else client.list(Node)
        return build_view(self._set, self._nodes, owned_dpus(self._ctx, self._set))

    def before_roll(self) -> tuple[dict[str, int], list[DPU], int, int]:
        """DPF's `dpus` list after creating and deleting: the phase counts, the DPUs a roll would touch (name
        order), the wanted total and DPF's unavailable count."""
        view = self.now()
        with self.lock:
            stats = {k: view.phases[k] for k in sorted(view.phases)}
            # DPF's `total - len(dpus) + #unavailable`, unclamped, per slot: a slot without its DPU is +1, a
            # DPU on a Node no longer selected -1. So a DPU still being deleted from a deselected Node (+1
            # unavailable, -1) holds none of the remaining Nodes' budget, and the count may go below 0.
            unavailable = len(view.missing) - len(view.off) + len(view.unavailable)
            # Only the DPUs roll() can act on: every one with labels to merge, every outdated unavailable one
            # (deleted whatever the budget), and of the outdated available ones the first `room` by name (the
            # loop deletes those and then has no budget left). Handing it every outdated DPU made each pass of
            # a long rollout O(set size): 83% of a 5,000-host rollout's CPU.
            strategy = self._set.spec.strategy
            rolling = strategy.rolling_update if strategy is not None else None
            budget = max_unavailable(rolling.max_unavailable if rolling is not None else None, view.total)
            names = view.unmerged | (view.outdated & view.unavailable)
            room = budget - unavailable
            if room > 0:
                names |= set(heapq.nsmallest(room, view.outdated - view.unavailable))
            candidates = [view.dpus[n] for n in sorted(names)]
            return stats, candidates, view.total, unavailable


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_LOCK = _NoLock()


def finalize(ctx: Context, dpu_set: DPUSet) -> Result:
    if DPUSET_FINALIZER in dpu_set.metadata.finalizers:
        released = dpu_set.deepcopy()
        released.metadata.finalizers = [f for f in released.metadata.finalizers if f != DPUSET_FINALIZER]
        ctx.client.update(released)
    return DONE


def strategy_type(dpu_set: DPUSet) -> str:
    strategy = dpu_set.spec.strategy
    return strategy.type if strategy is not None else "Recreate"


def owned_dpus(ctx: Context, dpu_set: DPUSet) -> list[DPU]:
    selector = {DPUSET_NAME_LABEL: dpu_set.name, DPUSET_NAMESPACE_LABEL: dpu_set.namespace or ""}
    return sorted(ctx.client.list(DPU, dpu_set.namespace, label_selector=selector), key=lambda d: d.name)


def _ref(obj: KubeObject) -> str:
    return f"{obj.namespace}/{obj.name}"


def create_missing(ctx: Context, dpu_set: DPUSet, views: _Views) -> list[str]:
    """DPF's loop over selected Nodes and their DPU indices, over just the slots without their DPU (the view
    leaves out slots whose PCI label names an existing DPU, which DPF's loop skips)."""
    view = views.now()
    with views.lock:
        slots = sorted(view.missing)
        todo = [(view.nodes[node_name], index) for node_name, index in slots]
    created_names: set[str] = set()
    errors: list[str] = []
    for node, index in todo:
        try:
            dpu = desired_dpu(dpu_set, node, index)
            if dpu.name in created_names or dpu.name in view.dpus:
                continue
            created = ctx.client.create(dpu)
        except Exception as e:
            msg = f"failed to created DPU index {index} on node {node.name} {e}"
            ctx.recorder.event(dpu_set, "Warning", EventReason.FAILED_CREATE, msg)
            errors.append(msg)
            continue
        created_names.add(created.name)
        ctx.recorder.event(dpu_set, "Normal", EventReason.SUCCESSFUL_CREATE, f"Created DPU: ({_ref(created)})")
    return errors


def _delete(ctx: Context, dpu_set: DPUSet, dpu: DPU) -> None:
    ctx.client.delete(DPU, dpu.name, dpu.namespace)
    ctx.recorder.event(
        dpu_set,
        "Normal",
        EventReason.SUCCESSFUL_DELETE,
        f"Delete DPU: ({_ref(dpu)}) from node {dpu.spec.node_name}",
    )


def delete_unselected(ctx: Context, dpu_set: DPUSet, views: _Views) -> None:
    view = views.now()
    with views.lock:
        doomed = [view.dpus[n] for n in sorted(view.unselected)]
    for dpu in doomed:
        _delete(ctx, dpu_set, dpu)


def merge_node_labels(ctx: Context, dpu_set: DPUSet, dpu: DPU) -> None:
    """Template nodeLabels the DPU lacks are merged into its spec.cluster.nodeLabels (never removed)."""
    wanted = _template_node_labels(dpu_set)
    have = dpu.spec.cluster.node_labels
    if all(have.get(k) == v for k, v in wanted.items()):
        return
    ctx.client.patch(DPU, dpu.name, dpu.namespace, {"spec": {"cluster": {"nodeLabels": wanted}}})


def needs_update(dpu_set: DPUSet, dpu: DPU) -> bool:
    spec = dpu_set.spec.dpu_template.spec
    return dpu.spec.bfb != (spec.bfb.name or "") or dpu.spec.dpu_flavor != spec.dpu_flavor


def roll(ctx: Context, dpu_set: DPUSet, dpus: list[DPU], total: int, unavailable: int) -> None:
    """DPF's per-DPU loop; `dpus` holds the ones it acts on (labels to merge or template changed), by name,
    and `unavailable` counts over all the set's DPUs."""
    strategy = dpu_set.spec.strategy
    rolling = strategy.rolling_update if strategy is not None else None
    budget = max_unavailable(rolling.max_unavailable if rolling is not None else None, total)
    for dpu in dpus:
        if dpu.metadata.deletion_timestamp is not None:
            continue
        merge_node_labels(ctx, dpu_set, dpu)
        if not needs_update(dpu_set, dpu):
            continue
        if is_unavailable(dpu):
            _delete(ctx, dpu_set, dpu)
        elif unavailable < budget:
            _delete(ctx, dpu_set, dpu)
            unavailable += 1


def update_statistics(ctx: Context, dpu_set: DPUSet, stats: dict[str, int]) -> None:
    if stats == dpu_set.status.dpu_statistics:
        return
    status = shallow_copy(dpu_set.status, {"dpu_statistics": stats})
    ctx.client.update_status(dpu_set.with_status(status))


# --- watches ------------------------------------------------------------------------------------------


class _ListerCell:
    """The manager's lister, known only when the controller starts (mappers are built before that)."""

    def __init__(self) -> None:
        self.lister: Lister | None = None

    def dpu_sets(self) -> list[DPUSet]:
        if self.lister is None:
            raise RuntimeError(f"{NAME}: a watch fired before the controller started")
        return [s for s in self.lister(DPUSet) if isinstance(s, DPUSet)]


class _DPUSetController(Controller):
    def __init__(self, cell: _ListerCell, options: ProvisioningOptions | None) -> None:
        self._cell = cell
        self.index = DPUSetIndex()

        def all_sets(obj: KubeObject) -> list[Request]:
            return [Request.of(s) for s in cell.dpu_sets()]

        def sets_using_flavor(obj: KubeObject) -> list[Request]:
            return [Request.of(s) for s in cell.dpu_sets() if s.spec.dpu_template.spec.dpu_flavor == obj.name]

        super().__init__(
            NAME,
            DPUSetReconciler(options, self.index),
            DPUSet,
            watches=[
                Watch(DPU, owner(DPUSet)),
                Watch(Node, from_object(all_sets), labels_changed),
                Watch(DPUFlavor, from_object(sets_using_flavor)),
                # The index's own feeds: every event (status and address changes too), nothing enqueued.
                Watch(DPU, self.index.on_dpu),
                Watch(Node, self.index.on_node),
            ],
        )

    def start(self, lister: Lister, listers: dict[str | None, Lister] | None = None) -> None:
        self._cell.lister = lister
        self.index.reset()
        super().start(lister, listers)
        self.index.live = True


def controller(options: ProvisioningOptions | None = None) -> Controller:
    """DPF's watches: DPUSet; owned DPUs; Node label changes -> every DPUSet; DPUFlavor -> the sets naming it."""
    return _DPUSetController(_ListerCell(), options)
