"""The DPU detector's `PciInventory` port on a real host: sysfs PCI functions + br-dpu via netlink.

Reads `<sysfs root>/bus/pci/devices/*` (DPF's detector mounts the host's sysfs at `/host-sys`): each function's
`vendor` and `device` files; for BlueField functions (vendor 15b3, device a2d6/a2dc) also the PF0 netdev
(the first name under `<bus:dev>.0/net/`, as DPF takes it) and the PSID.

PSID layout (DPF runs `mstflint -d <bus:dev>.0 q` and parses `PSID:`; we read files instead, no tools in the
pod), first found wins:
1. `<sysfs root>/bus/pci/devices/<bus:dev>.0/infiniband/<ibdev>/board_id`: the mlx5 RDMA driver publishes the
   PSID there whenever mlx5_ib is loaded;
2. `<psid_dir>/<domain:bus:dev>.0`: a one-line file (e.g. `MT_0000000375`), for hosts without mlx5_ib, written
   by whoever may run mstflint there (an init container, a host script). `psid_dir` is optional.

`oob_bridge_configured` is DPF's oob.go: `br-dpu` exists and is a bridge, and it holds at least one IPv4
default route in the main table, every one of them with a metric above 2.
"""

from __future__ import annotations

import os
from pathlib import Path

from dpf_core.controllers.dpu_detector import DPU_DEVICE_IDS, MELLANOX_VENDOR, PciDevice

from .netlink import DEFAULT_SYSFS, Netlink, netdevs_of, pci_devices_dir, read_hex_id

OOB_BRIDGE = "br-dpu"
LOWEST_METRIC = 2


class SysfsPciInventory:
    """dpf_core.controllers.dpu_detector.PciInventory for the host this runs on."""

    def __init__(self, sysfs_root: str | os.PathLike[str] = DEFAULT_SYSFS, *, netns: str | None = None,
                 psid_dir: str | os.PathLike[str] | None = None, bridge: str = OOB_BRIDGE) -> None:
        self.devices_dir = pci_devices_dir(sysfs_root)
        self.psid_dir = Path(psid_dir) if psid_dir is not None else None
        self.bridge = bridge
        self.nl = Netlink(netns)

    def close(self) -> None:
        self.nl.close()

    def devices(self) -> list[PciDevice]:
        try:
            entries = sorted(p.name for p in self.devices_dir.iterdir())
        except FileNotFoundError:
            return []
        found: list[PciDevice] = []
        for address in entries:
            function = self.devices_dir / address
            vendor, device = read_hex_id(function / "vendor"), read_hex_id(function / "device")
            if vendor is None or device is None:
                continue  # a function vanishing mid-walk (hot unplug) is not an error
            if vendor != MELLANOX_VENDOR or device not in DPU_DEVICE_IDS:
                found.append(PciDevice(address, vendor, device))
                continue
            pf0 = self._pf0_address(address)
            names = netdevs_of(self.devices_dir / pf0)
            found.append(PciDevice(address, vendor, device, pf0_name=names[0] if names else None, psid=self.psid(pf0)))
        return found

    @staticmethod
    def _pf0_address(address: str) -> str:
        device, dot, _ = address.rpartition(".")
        return f"{device}.0" if dot else address

    def psid(self, pf0_address: str) -> str | None:
        ib = self.devices_dir / pf0_address / "infiniband"
        try:
            ibdevs = sorted(ib.iterdir())
        except (FileNotFoundError, NotADirectoryError):
            ibdevs = []
        for ibdev in ibdevs:
            value = _read_line(ibdev / "board_id")
            if value:
                return value
        if self.psid_dir is not None:
            return _read_line(self.psid_dir / pf0_address)
        return None

    def oob_bridge_configured(self) -> bool:
        index = self.nl.index(self.bridge)
        if index is None or self.nl.kind(index) != "bridge":
            return False
        metrics = self.nl.default_route_metrics(index)
        return bool(metrics) and all(m > LOWEST_METRIC for m in metrics)


def _read_line(path: Path) -> str | None:
    try:
        value = path.read_text().strip()
    except OSError:
        return None
    return value.splitlines()[0].strip() if value else None
