"""dpudetector: the DaemonSet on every host that finds its BlueFields and labels its Node (every 60 s).

DPF's detector walks `/sys/bus/pci/devices`, writes an NFD features file and lets node-feature-discovery turn
it into `feature.node.kubernetes.io/...` labels; NFD's NodeFeatureRule `dpu-detection-rule` adds
`dpu-enabled=true` for PCI vendor 15b3 device a2d6/a2dc. Here both steps are one: `detect_labels` computes
the labels from the host's PCI inventory (a port) and the reconciler makes the Node carry exactly those
(stale DPU labels go, as NFD drops features no longer in the file).

Labels: `dpu-<i>-pci-address=0000-04-00` (index = discovery order of the PCI devices), `dpu-<i>-pf0-name=<netdev of
function .0>`, `dpu-<i>-ps-id=<PSID>` (when PSID collection is on), `dpu-oob-bridge-configured=""` when br-dpu is a
bridge holding a default route with a metric above 2.

Difference from DPF: DPF's detector matches device ids only; we also require vendor 15b3, as the NFD rule does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from dpf_core.api.external import Node
from dpf_core.api.provisioning import (
    DPU_ENABLED_LABEL,
    DPU_OOB_BRIDGE_CONFIGURED_LABEL,
    NFD_LABEL_PREFIX,
    dpu_pci_address_label,
    dpu_pf0_name_label,
    dpu_ps_id_label,
)
from dpf_core.runtime import DONE, Context, Controller, Request, Result, Watch, own
from dpf_core.runtime.controller import labels_changed
from dpf_core.store.protocol import WatchEvent

from .options import ProvisioningOptions

NAME = "dpudetector"
INTERVAL = 60.0  # the detector's ticker

MELLANOX_VENDOR = "15b3"
BLUEFIELD3_DEVICE = "a2dc"  # MT43244 BlueField-3 integrated ConnectX-7
BLUEFIELD2_DEVICE = "a2d6"  # MT42822 BlueField-2 integrated ConnectX-6 Dx
DPU_DEVICE_IDS = frozenset({BLUEFIELD3_DEVICE, BLUEFIELD2_DEVICE})

# The Node labels this detector owns (and therefore removes when they stop being true).
_OWNED_LABEL = re.compile(
    "^" + re.escape(NFD_LABEL_PREFIX) + r"dpu-(enabled|oob-bridge-configured|\d+-(pci-address|pf0-name|ps-id))$"
)


@dataclass(frozen=True)
class PciDevice:
    """One PCI function as sysfs shows it."""

    pci_address: str  # "0000:04:00.0"
    vendor: str  # "15b3" (a leading "0x" is accepted)
    device: str  # "a2dc"
    pf0_name: str | None = None  # the netdev of function .0 of this device, e.g. "ens1f0np0"
    psid: str | None = None  # from `mstflint -d <bus:dev.0> q`, e.g. "MT_0000000375"


class PciInventory(Protocol):
    """What the detector reads on its host: sysfs PCI devices and the br-dpu state (netlink)."""

    def devices(self) -> list[PciDevice]: ...

    def oob_bridge_configured(self) -> bool:
        """br-dpu exists, is a bridge, and holds an IPv4 default route whose metric is above 2."""
        ...


def _hex_id(value: str) -> str:
    v = value.strip().lower()
    return v[2:] if v.startswith("0x") else v


def label_pci_address(pci_address: str) -> str:
    """`0000:04:00.1` -> `0000-04-00` (the device, not the function; label values may not hold ':')."""
    device, _, _ = pci_address.rpartition(".")
    return (device or pci_address).replace(":", "-")


def detect_labels(inventory: PciInventory, *, collect_psid: bool = True) -> dict[str, str]:
    """The DPU labels of a host's Node, from its inventory. Pure: reads the port, writes nothing."""
    labels: dict[str, str] = {}
    found: dict[str, int] = {}
    pf0_names: dict[str, str] = {}
    psids: dict[str, str] = {}
    for dev in sorted(inventory.devices(), key=lambda d: d.pci_address):
        if _hex_id(dev.vendor) != MELLANOX_VENDOR or _hex_id(dev.device) not in DPU_DEVICE_IDS:
            continue
        addr = label_pci_address(dev.pci_address)
        if addr not in found:
            found[addr] = len(found)
        if dev.pf0_name and (addr not in pf0_names or dev.pci_address.endswith(".0")):
            pf0_names[addr] = dev.pf0_name
        if dev.psid and addr not in psids:
            psids[addr] = dev.psid
    if found:
        labels[DPU_ENABLED_LABEL] = "true"
    for addr, index in found.items():
        labels[dpu_pci_address_label(index)] = addr
        if addr in pf0_names:
            labels[dpu_pf0_name_label(index)] = pf0_names[addr]
        if collect_psid and addr in psids:
            labels[dpu_ps_id_label(index)] = psids[addr]
    if inventory.oob_bridge_configured():
        labels[DPU_OOB_BRIDGE_CONFIGURED_LABEL] = ""
    return labels


def label_patch(current: dict[str, str], desired: dict[str, str]) -> dict[str, str | None]:
    """A merge patch of `metadata.labels` making the detector-owned labels exactly `desired`."""
    patch: dict[str, str | None] = {k: v for k, v in desired.items() if current.get(k) != v}
    for k in current:
        if k not in desired and _OWNED_LABEL.match(k):
            patch[k] = None
    return patch


InventoryFor = Callable[[str], "PciInventory | None"]


class DPUDetectorReconciler:
    """Labels Nodes from their host's inventory. `inventory_for(node)` is None for a Node with no detector pod."""

    def __init__(self, inventory_for: InventoryFor, *, collect_psid: bool = True, interval: float = INTERVAL) -> None:
        self.inventory_for = inventory_for
        self.collect_psid = collect_psid
        self.interval = interval

    def reconcile(self, ctx: Context, req: Request) -> Result:
        node = ctx.client.try_get(Node, req.name)
        if node is None:
            return DONE
        inventory = self.inventory_for(node.name)
        if inventory is None:
            return DONE
        patch = label_patch(dict(node.metadata.labels), detect_labels(inventory, collect_psid=self.collect_psid))
        if patch:
            ctx.client.patch(Node, node.name, None, {"metadata": {"labels": patch}})
        return Result(requeue_after=self.interval)


def _watched(node_name: str | None) -> Callable[[WatchEvent], bool]:
    """New Nodes and label edits (someone removing a DPU label gets it back at once); status heartbeats are
    left to the 60 s loop. A per-host detector hears only its own Node."""

    def pred(ev: WatchEvent) -> bool:
        return (node_name is None or ev.object.name == node_name) and labels_changed(ev)

    return pred


def controller(
    options: ProvisioningOptions | None = None,
    *,
    node_name: str | None = None,
    inventory: PciInventory | None = None,
    inventory_for: InventoryFor | None = None,
    collect_psid: bool = True,
) -> Controller:
    """The detector of one host (`node_name` + its `inventory`, as the DaemonSet pod runs), or of many hosts
    at once (`inventory_for(node)`, as the twin runs it)."""
    if inventory_for is None:
        if inventory is None or node_name is None:
            raise ValueError("dpu_detector.controller needs node_name and inventory, or inventory_for")
        one, mine = inventory, node_name

        def single(name: str) -> PciInventory | None:
            return one if name == mine else None

        inventory_for = single
    return Controller(
        NAME,
        DPUDetectorReconciler(inventory_for, collect_psid=collect_psid),
        None,
        watches=[Watch(Node, own(), _watched(node_name))],
    )


