"""DPUSet controller (provisioning manager): one DPU per selected Node's DPU, rolled when the template changes.

One pass, as DPF's: deleting -> drop the finalizer (the DPUs go by ownerReference garbage collection);
add the finalizer (return); create the DPUs missing on selected Nodes; delete the DPUs of Nodes no longer
selected; with RollingUpdate, merge template nodeLabels into every DPU and delete outdated DPUs (bfb or
flavor changed) within the maxUnavailable budget (their replacements are created by a later pass, once
they are gone); write `dpuStatistics` if it changed. No periodic requeue: DPU, Node and DPUFlavor events
drive it.

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

import re
from collections.abc import Iterable, Mapping

from dpf_core.api.external import Node
from dpf_core.api.meta import IntOrString, KubeObject, OwnerReference
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


# --- the reconciler -----------------------------------------------------------------------------------


class DPUSetReconciler:
    def __init__(self, options: ProvisioningOptions | None = None) -> None:
        self.options = options or ProvisioningOptions()

    def reconcile(self, ctx: Context, req: Request) -> Result:
        dpu_set = ctx.client.try_get(DPUSet, req.name, req.namespace)
        if dpu_set is None:
            return DONE
        if dpu_set.metadata.deletion_timestamp is not None:
            return finalize(ctx, dpu_set)
        if DPUSET_FINALIZER not in dpu_set.metadata.finalizers:
            protected = dpu_set.deepcopy()
            protected.metadata.finalizers.append(DPUSET_FINALIZER)
            ctx.client.update(protected)
            return DONE

        nodes = selected_nodes(ctx, dpu_set)
        errors = create_missing(ctx, dpu_set, nodes)
        delete_unselected(ctx, dpu_set, nodes)
        dpus = owned_dpus(ctx, dpu_set)
        if strategy_type(dpu_set) == ROLLING_UPDATE_STRATEGY_TYPE:
            total = sum(len(dpu_indices(dpu_set.spec.dpu_selector, n.metadata.labels)) for n in nodes.values())
            roll(ctx, dpu_set, dpus, total)
        update_statistics(ctx, dpu_set, dpus)
        if errors:
            raise DPUSetError("; ".join(errors))
        return DONE


def finalize(ctx: Context, dpu_set: DPUSet) -> Result:
    if DPUSET_FINALIZER in dpu_set.metadata.finalizers:
        released = dpu_set.deepcopy()
        released.metadata.finalizers = [f for f in released.metadata.finalizers if f != DPUSET_FINALIZER]
        ctx.client.update(released)
    return DONE


def strategy_type(dpu_set: DPUSet) -> str:
    strategy = dpu_set.spec.strategy
    return strategy.type if strategy is not None else "Recreate"


def selected_nodes(ctx: Context, dpu_set: DPUSet) -> dict[str, Node]:
    selector = dpu_set.spec.node_selector
    nodes = ctx.client.list(Node, label_selector=selector) if selector is not None else ctx.client.list(Node)
    return {n.name: n for n in nodes}


def owned_dpus(ctx: Context, dpu_set: DPUSet) -> list[DPU]:
    selector = {DPUSET_NAME_LABEL: dpu_set.name, DPUSET_NAMESPACE_LABEL: dpu_set.namespace or ""}
    return sorted(ctx.client.list(DPU, dpu_set.namespace, label_selector=selector), key=lambda d: d.name)


def _ref(obj: KubeObject) -> str:
    return f"{obj.namespace}/{obj.name}"


def create_missing(ctx: Context, dpu_set: DPUSet, nodes: Mapping[str, Node]) -> list[str]:
    existing = {d.name for d in owned_dpus(ctx, dpu_set)}
    errors: list[str] = []
    for node_name in sorted(nodes):
        node = nodes[node_name]
        for index in dpu_indices(dpu_set.spec.dpu_selector, node.metadata.labels):
            pci = node.metadata.labels.get(dpu_pci_address_label(index))
            if pci and dpu_name(node.name, pci) in existing:
                # Cheap check first: building the desired DPU is the expensive part of a pass, and a pass
                # runs on every event of every owned DPU.
                continue
            try:
                dpu = desired_dpu(dpu_set, node, index)
                if dpu.name in existing:
                    continue
                created = ctx.client.create(dpu)
            except Exception as e:
                msg = f"failed to created DPU index {index} on node {node_name} {e}"
                ctx.recorder.event(dpu_set, "Warning", EventReason.FAILED_CREATE, msg)
                errors.append(msg)
                continue
            existing.add(created.name)
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


def delete_unselected(ctx: Context, dpu_set: DPUSet, nodes: Mapping[str, Node]) -> None:
    for dpu in owned_dpus(ctx, dpu_set):
        if dpu.spec.node_name in nodes or dpu.metadata.deletion_timestamp is not None:
            continue
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


def roll(ctx: Context, dpu_set: DPUSet, dpus: list[DPU], total: int) -> None:
    strategy = dpu_set.spec.strategy
    rolling = strategy.rolling_update if strategy is not None else None
    budget = max_unavailable(rolling.max_unavailable if rolling is not None else None, total)
    unavailable = max(0, total - len(dpus)) + sum(1 for d in dpus if is_unavailable(d))
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


def update_statistics(ctx: Context, dpu_set: DPUSet, dpus: Iterable[DPU]) -> None:
    stats = dpu_statistics(dpus)
    if stats == dpu_set.status.dpu_statistics:
        return
    counted = dpu_set.deepcopy()
    counted.status.dpu_statistics = stats
    ctx.client.update_status(counted)


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

        def all_sets(obj: KubeObject) -> list[Request]:
            return [Request.of(s) for s in cell.dpu_sets()]

        def sets_using_flavor(obj: KubeObject) -> list[Request]:
            return [Request.of(s) for s in cell.dpu_sets() if s.spec.dpu_template.spec.dpu_flavor == obj.name]

        super().__init__(
            NAME,
            DPUSetReconciler(options),
            DPUSet,
            watches=[
                Watch(DPU, owner(DPUSet)),
                Watch(Node, from_object(all_sets), labels_changed),
                Watch(DPUFlavor, from_object(sets_using_flavor)),
            ],
        )

    def start(self, lister: Lister, listers: dict[str | None, Lister] | None = None) -> None:
        self._cell.lister = lister
        super().start(lister, listers)


def controller(options: ProvisioningOptions | None = None) -> Controller:
    """DPF's watches: DPUSet; owned DPUs; Node label changes -> every DPUSet; DPUFlavor -> the sets naming it."""
    return _DPUSetController(_ListerCell(), options)
