"""The `HostNetwork` port on a real host: sysfs for SR-IOV, netlink (pyroute2) for br-dpu and VF0.

What DPF's hostnetwork.sh does, step by step, without a shell:
- `sriov_numvfs` of a PF is read and written under `<sysfs root>/bus/pci/devices/<pf>/` (the script goes
  through `/sys/class/net/<pf netdev>/device/`, the same file);
- VF0 is the netdev under `<pf>/virtfn0/net/*`;
- enslaving puts VF0 into `br-dpu`, sets its MTU and brings it up; doing it again changes nothing.

The sysfs root is configurable (a test tree, or `/host-sys` in a pod mounting the host's sysfs) and all
netlink work happens in one network namespace (None = the caller's own). Difference from DPF: the script
waits for an operator-made br-dpu; `ensure_bridge` can also create it (for a host whose bootstrap is ours),
and `enslave_vf0` finds or creates it rather than failing when asked out of order.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute

from dpf_core.ports.ops import OpError

log = logging.getLogger(__name__)

AF_INET = 2
MAIN_TABLE = 254
DEFAULT_SYSFS = "/sys"


class NetlinkError(OpError):
    def __init__(self, message: str) -> None:
        super().__init__(message, "NetlinkError")


def pci_devices_dir(sysfs_root: str | os.PathLike[str]) -> Path:
    return Path(sysfs_root) / "bus" / "pci" / "devices"


def netdevs_of(function_dir: Path) -> list[str]:
    """The netdev names under a PCI function's `net/` directory, sorted (Go's ReadDir order, as DPF reads)."""
    try:
        return sorted(p.name for p in (function_dir / "net").iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def read_hex_id(path: Path) -> str | None:
    """A sysfs `vendor` / `device` file (`0x15b3`) as bare lowercase hex, None when unreadable."""
    try:
        value = path.read_text().strip().lower()
    except OSError:
        return None
    return value[2:] if value.startswith("0x") else value


class Netlink:
    """One pyroute2 socket in one namespace, shared under a lock (pyroute2 sockets are not thread-safe)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._ipr: IPRoute | None = None
        self._lock = threading.RLock()

    @contextlib.contextmanager
    def session(self) -> Iterator[IPRoute]:
        with self._lock:
            if self._ipr is None:
                self._ipr = IPRoute(netns=self.netns) if self.netns else IPRoute()
            try:
                yield self._ipr
            except OpError:
                raise
            except Exception as e:
                where = f" in netns {self.netns}" if self.netns else ""
                raise NetlinkError(f"netlink{where}: {e}") from e

    def close(self) -> None:
        with self._lock:
            if self._ipr is not None:
                self._ipr.close()
                self._ipr = None

    # --- reads --------------------------------------------------------------------------------------
    def index(self, name: str) -> int | None:
        with self.session() as ipr:
            found = ipr.link_lookup(ifname=name)
        return int(found[0]) if found else None

    def link(self, index: int) -> Any:
        with self.session() as ipr:
            return ipr.get_links(index)[0]

    def kind(self, index: int) -> str | None:
        info = self.link(index).get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
        return str(info) if info else None

    def ipv4_addresses(self, index: int) -> list[str]:
        with self.session() as ipr:
            return [str(a.get("IFA_ADDRESS")) for a in ipr.get_addr(index=index, family=AF_INET)]

    def default_route_metrics(self, index: int) -> list[int]:
        """Metrics of the main table's IPv4 default routes leaving through link `index` (no metric = 0)."""
        with self.session() as ipr:
            routes = ipr.get_routes(family=AF_INET, table=MAIN_TABLE)
        return [int(r.get("RTA_PRIORITY") or 0) for r in routes
                if r["dst_len"] == 0 and r.get("RTA_OIF") == index]


class NetlinkHostNetwork:
    """dpf_core.ports.HostNetwork for the host this runs on (the `<dpu>-hostnetwork` pod's view)."""

    def __init__(self, sysfs_root: str | os.PathLike[str] = DEFAULT_SYSFS, *, netns: str | None = None) -> None:
        self.devices = pci_devices_dir(sysfs_root)
        self.nl = Netlink(netns)

    def close(self) -> None:
        self.nl.close()

    # --- sysfs --------------------------------------------------------------------------------------
    def _function(self, pci_address: str) -> Path:
        return self.devices / pci_address

    def num_vfs(self, pci_address: str) -> int:
        """Raises OSError when the function does not exist (the core then leaves that PF alone)."""
        return int((self._function(pci_address) / "sriov_numvfs").read_text().strip() or "0")

    def set_num_vfs(self, pci_address: str, count: int) -> None:
        # The kernel refuses N -> M with both non-zero; the core only ever writes from 0, so no reset to 0 here.
        with open(self._function(pci_address) / "sriov_numvfs", "w") as f:
            f.write(f"{int(count)}\n")

    def device_id(self, pci_address: str) -> str | None:
        """The function's PCI device id (`a2dc`); the core uses it for DPF's PF1 check."""
        return read_hex_id(self._function(pci_address) / "device")

    def pf_netdev(self, pci_address: str) -> str | None:
        names = netdevs_of(self._function(pci_address))
        return names[0] if names else None

    def vf0_netdev(self, pci_address: str) -> str | None:
        names = netdevs_of(self._function(pci_address) / "virtfn0")
        return names[0] if names else None

    # --- netlink ------------------------------------------------------------------------------------
    def bridge_has_ipv4(self, bridge: str) -> bool:
        index = self.nl.index(bridge)
        return index is not None and bool(self.nl.ipv4_addresses(index))

    def ensure_bridge(self, bridge: str, ipv4: str | None = None) -> int:
        """Find or create Linux bridge `bridge`, up; `ipv4` (CIDR) is added when the bridge lacks it."""
        index = self.nl.index(bridge)
        with self.nl.session() as ipr:
            if index is None:
                ipr.link("add", ifname=bridge, kind="bridge")
                index = int(ipr.link_lookup(ifname=bridge)[0])
            elif self.nl.kind(index) != "bridge":
                raise NetlinkError(f"interface {bridge} is not a bridge")
            if ipv4 is not None:
                iface = ipaddress.IPv4Interface(ipv4)
                if str(iface.ip) not in self.nl.ipv4_addresses(index):
                    ipr.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
            ipr.link("set", index=index, state="up")
        return index

    def enslave_vf0(self, pci_address: str, bridge: str, mtu: int) -> None:
        vf = self.vf0_netdev(pci_address)
        if vf is None:
            # As DPF's script: VFs can take a moment to appear after sriov_numvfs is written; the next
            # pass (vf0_enslaved is still False) tries again.
            log.warning("no VF0 netdev under %s/virtfn0/net yet", self._function(pci_address))
            return
        vf_index = self.nl.index(vf)
        if vf_index is None:
            raise NetlinkError(f"VF0 {vf} of {pci_address} is in sysfs but not in this network namespace")
        bridge_index = self.ensure_bridge(bridge)
        with self.nl.session() as ipr:
            link = self.nl.link(vf_index)
            if link.get("IFLA_MASTER") != bridge_index:
                ipr.link("set", index=vf_index, master=bridge_index)
            if link.get("IFLA_MTU") != mtu:
                ipr.link("set", index=vf_index, mtu=mtu)
            ipr.link("set", index=vf_index, state="up")

    def vf0_enslaved(self, pci_address: str, bridge: str) -> bool:
        vf = self.vf0_netdev(pci_address)
        if vf is None:
            return False
        vf_index, bridge_index = self.nl.index(vf), self.nl.index(bridge)
        if vf_index is None or bridge_index is None:
            return False
        return bool(self.nl.link(vf_index).get("IFLA_MASTER") == bridge_index)

    def release_vf0(self, pci_address: str, bridge: str) -> None:
        """The script's exit trap: take VF0 out of the bridge (nothing to do when it is not in it)."""
        if not self.vf0_enslaved(pci_address, bridge):
            return
        vf = self.vf0_netdev(pci_address)
        vf_index = self.nl.index(vf) if vf else None
        if vf_index is not None:
            with self.nl.session() as ipr:
                ipr.link("set", index=vf_index, master=0)
